/* ops/act.h -- MLP activations.
 * SwiGLU (Shazeer 2020): h (N, 2F) = [gate | up], out (N, F) = silu(gate) * up.
 * GELU, tanh approximation (Hendrycks & Gimpel 2016): h (N, F), out (N, F).
 * Backwards overwrite dh. */
#ifndef HW_ACT_H
#define HW_ACT_H

void swiglu_forward_cpu(float *out, const float *h, int N, int F);
void swiglu_backward_cpu(float *dh, const float *dout, const float *h, int N, int F);
void gelu_forward_cpu(float *out, const float *h, int N, int F);
void gelu_backward_cpu(float *dh, const float *dout, const float *h, int N, int F);

#endif /* HW_ACT_H */
