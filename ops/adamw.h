/* ops/adamw.h -- AdamW (Loshchilov & Hutter 2019) with PyTorch's decoupled decay:
 * p -= lr * wd * p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 * p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps). t is the 1-based step.
 * grad_scale multiplies g first (gradient clipping). Elementwise, so any slice of a tensor
 * (a ZeRO shard) updates exactly as the whole. */
#ifndef HW_ADAMW_H
#define HW_ADAMW_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

void adamw_update_cpu(float *p, float *m, float *v, const float *g, size_t n, float lr, float b1,
                      float b2, float eps, float wd, int t, float grad_scale);
/* Sum of squares in double, deterministic for a fixed thread count. */
double sumsq_cpu(const float *x, size_t n);

#ifdef HW_CUDA /* same contracts; every pointer is a device pointer (ops/<family>_cuda.cu) */
void adamw_update_cuda(float *p, float *m, float *v, const float *g, size_t n, float lr, float b1,
                       float b2, float eps, float wd, int t, float grad_scale);
/* Result on the HOST; per-block double partials summed in a fixed order (deterministic). */
double sumsq_cuda(const float *x, size_t n);
#endif /* HW_CUDA */

#ifdef __cplusplus
}
#endif

#endif /* HW_ADAMW_H */
