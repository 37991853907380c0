/* ops/gemm_cpu.c -- the general matrix product on OpenBLAS (see gemm.h): fp32 through
 * cblas_sgemm (operands rounded to bf16 first under train.precision: bf16, precision_cpu.h),
 * fp64 through cblas_dgemm; bf16 is not a CPU buffer type (ops_supports says so). */
#include "gemm.h"

#include "../core/check.h"
#include "precision_cpu.h"

#include <cblas.h>

void gemm_cpu(enum hw_dtype ab, enum hw_dtype c, int ta, int tb, int m, int n, int k, double alpha,
              const void *A, size_t lda, const void *B, size_t ldb, double beta, void *C,
              size_t ldc) {
    if (m <= 0 || n <= 0)
        return;
    if (ab == HW_F32 && c == HW_F32) {
        float *Cf = C;
        if (k <= 0) {
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                    Cf[(size_t)i * ldc + j] =
                        beta == 0.0 ? 0.0f : (float)beta * Cf[(size_t)i * ldc + j];
            return;
        }
        if (cpu_bf16_inputs) { /* stored as (k x m) when transposed, else (m x k); B alike */
            A = cpu_bf16_rows(0, A, (size_t)(ta ? k : m), (size_t)(ta ? m : k), lda);
            lda = (size_t)(ta ? m : k);
            B = cpu_bf16_rows(1, B, (size_t)(tb ? n : k), (size_t)(tb ? k : n), ldb);
            ldb = (size_t)(tb ? k : n);
        }
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    m, n, k, (float)alpha, A, (int)lda, B, (int)ldb, (float)beta, Cf, (int)ldc);
        return;
    }
    if (ab == HW_F64 && c == HW_F64) {
        double *Cd = C;
        if (k <= 0) {
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                    Cd[(size_t)i * ldc + j] = beta == 0.0 ? 0.0 : beta * Cd[(size_t)i * ldc + j];
            return;
        }
        cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    m, n, k, alpha, A, (int)lda, B, (int)ldb, beta, Cd, (int)ldc);
        return;
    }
    HW_DIE("gemm: %s x %s -> %s is not a CPU type combination (fp32 or fp64)", hw_dtype_name(ab),
           hw_dtype_name(ab), hw_dtype_name(c));
}
