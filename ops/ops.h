/* ops/ops.h -- the backend seam. Model code calls kernels only through a `struct ops` table, so
 * a CUDA backend (ops_cuda.cu filling the same table with device kernels) slots in without
 * touching model code. Every op family has its own header (matmul.h, norm.h, rope.h,
 * attention.h, act.h, xent.h, embed.h, adamw.h) declaring the *_cpu kernels; contracts
 * (shapes, accumulate-or-overwrite) are documented there. */
#ifndef HW_OPS_H
#define HW_OPS_H

#include <stdint.h>

enum backend {
    BACKEND_CPU,
    BACKEND_CUDA,
};

struct s2_pattern;

struct attn_shape {
    int B, T;   /* batch, sequence */
    int H, Hkv; /* query heads, key/value heads (H % Hkv == 0) */
    int hd;     /* head dim */
    int ld_qkv; /* row stride of the qkv buffer (>= (H + 2 Hkv) hd) */
    /* optional (zero = off): S2 block sparsity with the global index of local query head 0;
     * MoH query selection, the rows of (b, h) being qsel[qsel_off[b*H+h] .. qsel_off[b*H+h+1]) */
    const struct s2_pattern *s2;
    int head0;
    const int32_t *qsel, *qsel_off;
    const int32_t *seg; /* (B, T) segment ids of packed examples (non-decreasing per row), or
                           NULL: one sequence per row; see attention.h */
    /* optional persistent prefix (Titans persistent memory, docs/titans.md): np key/value rows
     * pk, pv (row stride ld_p; Hkv heads of hd, keys already rotated) that every query sees,
     * outside any sparsity pattern or segment; the backward accumulates their gradients into
     * dpk, dpv (same layout) */
    int np, ld_p;
    const float *pk, *pv;
    float *dpk, *dpv;
};

struct attn_block;

struct ops {
    const char *name;
    void (*matmul_forward)(float *out, const float *inp, const float *w, int N, int K, int M,
                           float beta);
    void (*matmul_backward)(float *dinp, float *dw, const float *dout, const float *inp,
                            const float *w, int N, int K, int M, float beta_dinp);
    void (*rmsnorm_forward)(float *out, float *rstd, const float *inp, const float *w, int N, int C,
                            float eps);
    void (*rmsnorm_backward)(float *dinp, float *dw, const float *dout, const float *inp,
                             const float *w, const float *rstd, int N, int C);
    void (*rope_forward)(float *x, const float *cos_t, const float *sin_t, int B, int T,
                         int n_heads, int hd, int ld, const int32_t *pos);
    void (*rope_backward)(float *dx, const float *cos_t, const float *sin_t, int B, int T,
                          int n_heads, int hd, int ld, const int32_t *pos);
    void (*attention_block_forward)(float *out, float *lse, const struct attn_block *a, int merge);
    void (*attention_block_backward)(float *dq, float *dk, float *dv, int lddq, int lddkv,
                                     const float *dout, const float *out, const float *lse,
                                     const struct attn_block *a);
    void (*attention_forward)(float *out, float *lse, const float *qkv, const struct attn_shape *s);
    void (*attention_backward)(float *dqkv, const float *dout, const float *out, const float *lse,
                               const float *qkv, const struct attn_shape *s);
    void (*swiglu_forward)(float *out, const float *h, int N, int F);
    void (*swiglu_backward)(float *dh, const float *dout, const float *h, int N, int F);
    void (*gelu_forward)(float *out, const float *h, int N, int F);
    void (*gelu_backward)(float *dh, const float *dout, const float *h, int N, int F);
    void (*attention_decode)(float *out, const float *q, const float *kc, const float *vc,
                             int n_ctx, int ld_kv, int H, int Hkv, int hd, float *scratch);
    void (*attention_decode_steer)(float *out, const float *q, const float *kc, const float *vc,
                                   int n_ctx, int ld_kv, int H, int Hkv, int hd, float *scratch,
                                   const uint8_t *user, float alpha);
    double (*xent_forward_backward)(float *logits, float *losses, const int32_t *targets, int N,
                                    int V, float dscale, int ignore_index);
    void (*embed_forward)(float *out, const int32_t *tok, const float *wte, int N, int C);
    void (*embed_backward)(float *dwte, const float *dout, const int32_t *tok, int N, int C);
    void (*residual_add)(float *out, const float *a, const float *b, int64_t n);
};

/* The table for a backend. A CPU-only build dies for BACKEND_CUDA with a rebuild hint. */
const struct ops *ops_for(enum backend b);

/* Threads used by our kernels and OpenBLAS; 0 = all cores. Returns the count in effect. */
int ops_set_threads(int n);
/* Threads of OpenBLAS alone. OpenBLAS splits a product across its threads and a row's result
 * depends on the split, so results that must not depend on the machine's rank/thread layout
 * (evaluation scores) use one BLAS thread per rank. */
void ops_set_blas_threads(int n);

/* Best measured single-precision GEMM rate of this machine with the current thread count, in
 * FLOP/s (square sgemm through OpenBLAS for about `seconds`). The denominator of MFU. */
double ops_sgemm_peak(double seconds);

#endif /* HW_OPS_H */
