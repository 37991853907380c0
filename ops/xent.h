/* ops/xent.h -- softmax cross-entropy fused with its backward.
 * logits: (N, V), overwritten in place by dlogits = (softmax - onehot) * dscale;
 * rows whose target == ignore_index get loss 0 and zero gradient.
 * losses: (N) per-row loss (required). Returns the sum of the per-row losses, accumulated in
 * double in row order (deterministic). */
#ifndef HW_XENT_H
#define HW_XENT_H

#include <stdint.h>

#define XENT_IGNORE (-1)

double xent_forward_backward_cpu(float *logits, float *losses, const int32_t *targets, int N, int V,
                                 float dscale, int ignore_index);
/* Forward only: per-row losses, logits left untouched. Returns the sum. */
double xent_forward_cpu(float *losses, const float *logits, const int32_t *targets, int N, int V,
                        int ignore_index);

#endif /* HW_XENT_H */
