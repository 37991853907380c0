/* ops/act.h -- MLP activations.
 * SwiGLU (Shazeer 2020): h (N, 2F) = [gate | up], out (N, F) = silu(gate) * up.
 * GELU, tanh approximation (Hendrycks & Gimpel 2016): h (N, F), out (N, F).
 * Backwards overwrite dh. */
#ifndef HW_ACT_H
#define HW_ACT_H

#ifdef __cplusplus
extern "C" {
#endif

void swiglu_forward_cpu(float *out, const float *h, int N, int F);
void swiglu_backward_cpu(float *dh, const float *dout, const float *h, int N, int F);
void gelu_forward_cpu(float *out, const float *h, int N, int F);
void gelu_backward_cpu(float *dh, const float *dout, const float *h, int N, int F);

#ifdef HW_CUDA /* same contracts; every pointer is a device pointer (ops/<family>_cuda.cu) */
void swiglu_forward_cuda(float *out, const float *h, int N, int F);
void swiglu_backward_cuda(float *dh, const float *dout, const float *h, int N, int F);
void gelu_forward_cuda(float *out, const float *h, int N, int F);
void gelu_backward_cuda(float *dh, const float *dout, const float *h, int N, int F);
#endif /* HW_CUDA */

#ifdef __cplusplus
}
#endif

#endif /* HW_ACT_H */
