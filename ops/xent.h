/* ops/xent.h -- softmax cross-entropy fused with its backward.
 * logits: (N, V), overwritten in place by dlogits = (softmax - onehot) * dscale;
 * rows whose target == ignore_index get loss 0 and zero gradient.
 * losses: (N) per-row loss (required). Returns the sum of the per-row losses, accumulated in
 * double in row order (deterministic). */
#ifndef HW_XENT_H
#define HW_XENT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define XENT_IGNORE (-1)

double xent_forward_backward_cpu(float *logits, float *losses, const int32_t *targets, int N, int V,
                                 float dscale, int ignore_index);
/* Forward only: per-row losses, logits left untouched. Returns the sum. */
double xent_forward_cpu(float *losses, const float *logits, const int32_t *targets, int N, int V,
                        int ignore_index);

#ifdef HW_CUDA /* same contracts; every pointer is a device pointer (ops/<family>_cuda.cu) */
/* The returned sums are computed on the device in a fixed order and copied to the host (the only
 * host synchronisation of these ops). A target outside [0, V) that is not ignore_index gives a
 * NaN loss for its row. */
double xent_forward_backward_cuda(float *logits, float *losses, const int32_t *targets, int N,
                                  int V, float dscale, int ignore_index);
double xent_forward_cuda(float *losses, const float *logits, const int32_t *targets, int N, int V,
                         int ignore_index);
#endif /* HW_CUDA */

#ifdef __cplusplus
}
#endif

#endif /* HW_XENT_H */
