/* ops/matmul_cpu.c -- dense layers through cblas_sgemm (see matmul.h). */
#include "matmul.h"

#include <cblas.h>

void matmul_forward_cpu(float *out, const float *inp, const float *w, int N, int K, int M,
                        float beta) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, M, K, 1.0f, inp, K, w, K, beta, out, M);
}

void matmul_backward_cpu(float *dinp, float *dw, const float *dout, const float *inp,
                         const float *w, int N, int K, int M, float beta_dinp) {
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, K, M, 1.0f, dout, M, w, K,
                    beta_dinp, dinp, K);
    if (dw)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, M, K, N, 1.0f, dout, M, inp, K, 1.0f,
                    dw, K);
}
