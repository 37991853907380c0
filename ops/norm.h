/* ops/norm.h -- RMSNorm: out = inp * rstd * w, rstd = 1/sqrt(mean(inp^2) + eps).
 * Reference: Zhang & Sennrich 2019. inp,out: (N, C); w: (C); rstd: (N) saved for backward. */
#ifndef HW_NORM_H
#define HW_NORM_H

#ifdef __cplusplus
extern "C" {
#endif

void rmsnorm_forward_cpu(float *out, float *rstd, const float *inp, const float *w, int N, int C,
                         float eps);
/* dinp and dw accumulate (+=), so the residual stream's gradient needs no extra add; dw sums fixed
 * per-thread partials in a fixed order (deterministic). */
void rmsnorm_backward_cpu(float *dinp, float *dw, const float *dout, const float *inp,
                          const float *w, const float *rstd, int N, int C);

#ifdef HW_CUDA /* same contracts; every pointer is a device pointer (ops/<family>_cuda.cu) */
void rmsnorm_forward_cuda(float *out, float *rstd, const float *inp, const float *w, int N, int C,
                          float eps);
void rmsnorm_backward_cuda(float *dinp, float *dw, const float *dout, const float *inp,
                           const float *w, const float *rstd, int N, int C);
#endif /* HW_CUDA */

#ifdef __cplusplus
}
#endif

#endif /* HW_NORM_H */
