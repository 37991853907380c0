/* ops/gemm.h -- the general matrix product, for layers that are not nn.Linear shaped (the
 * Titans memory's per-head MLPs and their second-order backward, the rec model's fp64 MLP):
 *   C (m x n, row stride ldc) = alpha op(A) op(B) + beta C,   row-major,
 *   op(A) = A (m x k, stride lda) or, with ta, A^T where A is (k x m);
 *   op(B) = B (k x n, stride ldb) or, with tb, B^T where B is (n x k).
 * Types: ab is the type of A and B, c the type of C: (F32, F32), (F64, F64), and on backends
 * that support it (BF16, F32) or (BF16, BF16) with fp32 accumulation. beta == 0 overwrites C
 * (NaNs in C are not propagated); k == 0 scales C by beta; m or n == 0 does nothing. */
#ifndef HW_GEMM_H
#define HW_GEMM_H

#include "dtype.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

void gemm_cpu(enum hw_dtype ab, enum hw_dtype c, int ta, int tb, int m, int n, int k, double alpha,
              const void *A, size_t lda, const void *B, size_t ldb, double beta, void *C,
              size_t ldc);

#ifdef HW_CUDA
void gemm_cuda(enum hw_dtype ab, enum hw_dtype c, int ta, int tb, int m, int n, int k, double alpha,
               const void *A, size_t lda, const void *B, size_t ldb, double beta, void *C,
               size_t ldc);
#endif

#ifdef __cplusplus
}
#endif

#endif /* HW_GEMM_H */
