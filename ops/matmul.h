/* ops/matmul.h -- dense layers y = x W^T (nn.Linear layout, W is (M, K) row-major) on OpenBLAS.
 * inp: (N, K), w: (M, K), out: (N, M). */
#ifndef HW_MATMUL_H
#define HW_MATMUL_H

#ifdef __cplusplus
extern "C" {
#endif

/* out = inp w^T + beta out */
void matmul_forward_cpu(float *out, const float *inp, const float *w, int N, int K, int M,
                        float beta);
/* dinp = dout w + beta_dinp dinp (dinp may be NULL to skip); dw += dout^T inp (always accumulates)
 */
void matmul_backward_cpu(float *dinp, float *dw, const float *dout, const float *inp,
                         const float *w, int N, int K, int M, float beta_dinp);

#ifdef HW_CUDA /* every pointer is a device pointer (ops/matmul_cuda.cu, cuBLASLt) */
#include "dtype.h"

/* Same contracts as the _cpu versions: fp32 in, out and accumulation (CUBLAS_COMPUTE_32F). */
void matmul_forward_cuda(float *out, const float *inp, const float *w, int N, int K, int M,
                         float beta);
void matmul_backward_cuda(float *dinp, float *dw, const float *dout, const float *inp,
                          const float *w, int N, int K, int M, float beta_dinp);
/* TF32 tensor cores for the fp32 GEMMs (matmul_*_cuda, gemm_cuda F32): off by default so fp32
 * results stay comparable with the CPU; the environment variable HW_CUDA_TF32=1 turns it on at
 * start-up. Returns the previous setting. */
int matmul_cuda_allow_tf32(int on);
/* train.precision: bf16 (ops_cuda's set_precision): from now on (on = 1) the fp32 entry points
 * above and gemm_cuda's fp32 x fp32 round their operands to bf16 (ties to even) and multiply
 * them as bf16 with fp32 accumulation and an fp32 result. */
void matmul_cuda_set_bf16(int on);
/* The ops gemm_peak slot: the best rate of 4096^3 products in the current precision (fp32, or
 * bf16 inputs with fp32 accumulation), timed with CUDA events for about `seconds`. */
double matmul_cuda_peak(double seconds, const char **what);

/* bf16 dense layers (bf16 inputs, fp32 accumulation). inp: (N, K) bf16, w: (M, K) bf16.
 * out: (N, M) of out_type (HW_F32 or HW_BF16) = act(inp w^T + bias + beta out).
 * bias: (M) of out_type, or NULL. pre_gelu: NULL (no activation), or (N, M) of out_type that
 * receives inp w^T + bias while out gets gelu(pre_gelu) (act.h's tanh GELU; beta must be 0).
 * Bias and GELU run in cuBLASLt's epilogue when it offers one (GELU needs M % 8 == 0), else in a
 * separate elementwise pass. */
void matmul_forward_bf16_cuda(void *out, void *pre_gelu, enum hw_dtype out_type, const void *inp,
                              const void *w, const void *bias, int N, int K, int M, float beta);
/* dinp: (N, K) of dinp_type = dout w + beta_dinp dinp; with pre_gelu ((N, K) of dinp_type: the
 * pre-activation of the GELU that produced inp), dinp is then multiplied by gelu'(pre_gelu)
 * (beta_dinp must be 0). dw: (M, K) fp32 += dout^T inp (always accumulates). dout: (N, M) bf16,
 * inp: (N, K) bf16, w: (M, K) bf16. dinp or dw may be NULL to skip. */
void matmul_backward_bf16_cuda(void *dinp, enum hw_dtype dinp_type, float *dw, const void *dout,
                               const void *inp, const void *w, const void *pre_gelu, int N, int K,
                               int M, float beta_dinp);
#endif /* HW_CUDA */

#ifdef __cplusplus
}
#endif

#endif /* HW_MATMUL_H */
