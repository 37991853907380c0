/* ops/act.h -- MLP activations.
 * SwiGLU (Shazeer 2020): h (N, 2F) = [gate | up], out (N, F) = silu(gate) * up.
 * GELU, tanh approximation (Hendrycks & Gimpel 2016): h (N, F), out (N, F).
 * The sigmoid gate of the Titans memory layers.
 * Backwards overwrite dh. */
#ifndef HW_ACT_H
#define HW_ACT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void swiglu_forward_cpu(float *out, const float *h, int N, int F);
void swiglu_backward_cpu(float *dh, const float *dout, const float *h, int N, int F);
void gelu_forward_cpu(float *out, const float *h, int N, int F);
void gelu_backward_cpu(float *dh, const float *dout, const float *h, int N, int F);
/* Titans' sigmoid gate (MAG, MAC): out = y * sigmoid(u) over n elements (out may alias y);
 * the backward writes dy = dout * sigmoid(u) and du = dout * y * s * (1 - s). */
void sigmoid_gate_forward_cpu(float *out, const float *y, const float *u, int64_t n);
void sigmoid_gate_backward_cpu(float *dy, float *du, const float *dout, const float *y,
                               const float *u, int64_t n);

#ifdef HW_CUDA /* same contracts; every pointer is a device pointer (ops/<family>_cuda.cu) */
void swiglu_forward_cuda(float *out, const float *h, int N, int F);
void swiglu_backward_cuda(float *dh, const float *dout, const float *h, int N, int F);
void gelu_forward_cuda(float *out, const float *h, int N, int F);
void gelu_backward_cuda(float *dh, const float *dout, const float *h, int N, int F);
void sigmoid_gate_forward_cuda(float *out, const float *y, const float *u, int64_t n);
void sigmoid_gate_backward_cuda(float *dy, float *du, const float *dout, const float *y,
                                const float *u, int64_t n);
#endif /* HW_CUDA */

#ifdef __cplusplus
}
#endif

#endif /* HW_ACT_H */
