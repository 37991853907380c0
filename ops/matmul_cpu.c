/* ops/matmul_cpu.c -- dense layers through cblas_sgemm (see matmul.h); under
 * train.precision: bf16 the operands are rounded to bf16 first (precision_cpu.h). */
#include "matmul.h"

#include "precision_cpu.h"

#include <cblas.h>

void matmul_forward_cpu(float *out, const float *inp, const float *w, int N, int K, int M,
                        float beta) {
    if (cpu_bf16_inputs) {
        inp = cpu_bf16_rows(0, inp, (size_t)N, (size_t)K, (size_t)K);
        w = cpu_bf16_rows(1, w, (size_t)M, (size_t)K, (size_t)K);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, M, K, 1.0f, inp, K, w, K, beta, out, M);
}

void matmul_backward_cpu(float *dinp, float *dw, const float *dout, const float *inp,
                         const float *w, int N, int K, int M, float beta_dinp) {
    if (cpu_bf16_inputs) {
        dout = cpu_bf16_rows(0, dout, (size_t)N, (size_t)M, (size_t)M);
        if (dinp)
            w = cpu_bf16_rows(1, w, (size_t)M, (size_t)K, (size_t)K);
        if (dw)
            inp = cpu_bf16_rows(2, inp, (size_t)N, (size_t)K, (size_t)K);
    }
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, K, M, 1.0f, dout, M, w, K,
                    beta_dinp, dinp, K);
    if (dw)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, M, K, N, 1.0f, dout, M, inp, K, 1.0f,
                    dw, K);
}
