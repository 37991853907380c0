/* ops/matmul.h -- dense layers y = x W^T (nn.Linear layout, W is (M, K) row-major) on OpenBLAS.
 * inp: (N, K), w: (M, K), out: (N, M). */
#ifndef HW_MATMUL_H
#define HW_MATMUL_H

/* out = inp w^T + beta out */
void matmul_forward_cpu(float *out, const float *inp, const float *w, int N, int K, int M,
                        float beta);
/* dinp = dout w + beta_dinp dinp (dinp may be NULL to skip); dw += dout^T inp (always accumulates)
 */
void matmul_backward_cpu(float *dinp, float *dw, const float *dout, const float *inp,
                         const float *w, int N, int K, int M, float beta_dinp);

#endif /* HW_MATMUL_H */
