/* ops/ops.h -- the backend: one table (`struct ops`) per device kind that owns memory, element
 * types and the order of execution as well as the kernels (ggml-backend style).
 *
 * - Memory: every buffer of the model, the optimizer, the KV cache, the Titans state and the rec
 *   model comes from `alloc` (zeroed) and goes back through `free`; model code never calls
 *   calloc, memcpy or memset on such buffers itself but `memset`, `copy`, `copy2d`, `upload`
 *   and `download`. On the CPU these are libc calls; on the GPU, cudaMalloc and copies on the
 *   compute stream. `synchronize` waits for everything issued so far.
 * - Types: a `struct hw_buf` knows its element type (dtype.h). Parameters, gradients and AdamW
 *   moments are fp32 master copies; activations and GEMM inputs may become bf16 where the
 *   backend supports it.
 * - Kernels: one slot per op, with the same contract on every backend; the contracts (shapes,
 *   accumulate or overwrite, aliasing) are documented in each family's header (matmul.h,
 *   gemm.h, norm.h, rope.h, attention.h, act.h, xent.h, embed.h, adamw.h, moh.h). Pointers
 *   are the backend's memory unless a contract says HOST.
 * - Capabilities: `supports(cap)` says which op groups a backend has, so a layer kind that
 *   needs something the backend lacks is refused at start-up with one line
 *   (ops_require), never in the middle of a step.
 * The CPU table (ops_cpu.c) is the default and the oracle every other backend is tested
 * against. No code outside ops/ calls a *_cpu kernel or cblas directly. */
#ifndef HW_OPS_H
#define HW_OPS_H

#include "dtype.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

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

/* The two streams of a backend (ops->event_*): compute runs every op; comm carries the staging
 * copies of the collectives so that they can overlap compute. */
enum ops_stream {
    OPS_STREAM_COMPUTE,
    OPS_STREAM_COMM,
};

struct attn_block;
struct moh_spec;
struct moh_state;
struct moh_heads;

/* Op groups a backend may lack (ops->supports). Layer kinds and the models name the groups
 * they need; ops_require checks them when the model is built. */
enum ops_cap {
    OPS_CAP_CORE,        /* GEMM fp32, norms, RoPE, dense/GQA attention, MLP, xent, AdamW */
    OPS_CAP_ATTN_S2,     /* S2 block-sparse attention patterns */
    OPS_CAP_ATTN_MOH,    /* MoH router and gates, selected-row attention */
    OPS_CAP_ATTN_SEG,    /* packed-sequence segment masks */
    OPS_CAP_ATTN_RING,   /* attention blocks at absolute positions (ring context parallelism) */
    OPS_CAP_ATTN_PREFIX, /* persistent key/value prefix (Titans MAG/MAC) */
    OPS_CAP_DECODE,      /* KV-cache decoding steps (dense, S2, steered) */
    OPS_CAP_TITANS,      /* the Titans memory's kernels (titans_ops.h) */
    OPS_CAP_REC,         /* the rec model's kernels (rec_ops.h) */
    OPS_CAP_F64,         /* fp64 GEMM and row scatters (the rec model, gradient checks) */
    OPS_CAP_BF16,        /* bf16 GEMM inputs with fp32 accumulation */
    OPS_CAP_BF16_TRAIN,  /* train.precision: bf16 through set_precision (see below) */
    OPS_CAPS
};

extern const char *const ops_cap_names[OPS_CAPS];

struct titans_ops; /* titans_ops.h */
struct rec_ops;    /* rec_ops.h */

struct ops {
    const char *name; /* "cpu", "cuda": the value of run.backend */
    enum backend kind;

    /* ---- memory ---------------------------------------------------------------------- */
    void *(*alloc)(size_t bytes); /* zeroed; dies naming the size on failure; 0 bytes ok */
    void (*free)(void *p);        /* NULL: no-op */
    void (*memset)(void *dst, int value, size_t bytes);
    void (*copy)(void *dst, const void *src, size_t bytes); /* within the backend's memory */
    /* rows of row_bytes from src (row stride lds bytes) to dst (stride ldd bytes) */
    void (*copy2d)(void *dst, size_t ldd, const void *src, size_t lds, size_t rows,
                   size_t row_bytes);
    void (*memset2d)(void *dst, size_t ldd, int value, size_t rows, size_t row_bytes);
    void (*upload)(void *dst, const void *host, size_t bytes);   /* host -> backend */
    void (*download)(void *host, const void *src, size_t bytes); /* backend -> host */
    void (*synchronize)(void);
    int (*supports)(enum ops_cap cap);
    /* Order across streams: an event marks the point reached by one stream's issued work;
     * event_wait makes a stream wait for it, event_sync the host. copy_async copies between
     * host and backend memory (either direction) on a stream and returns at once; host_alloc
     * gives host memory the copies can overlap with (pinned on the GPU). On the CPU everything is
     * synchronous: events are tokens and copy_async is memcpy. */
    void *(*event_new)(void);
    void (*event_free)(void *ev);
    void (*event_record)(void *ev, enum ops_stream s);
    void (*event_wait)(enum ops_stream s, void *ev);
    void (*event_sync)(void *ev);
    void (*copy_async)(void *dst, const void *src, size_t bytes, enum ops_stream s);
    void *(*host_alloc)(size_t bytes); /* zeroed; dies naming the size on failure */
    void (*host_free)(void *p);

    /* ---- GEMM ------------------------------------------------------------------------ */
    void (*matmul_forward)(float *out, const float *inp, const float *w, int N, int K, int M,
                           float beta);
    void (*matmul_backward)(float *dinp, float *dw, const float *dout, const float *inp,
                            const float *w, int N, int K, int M, float beta_dinp);
    void (*gemm)(enum hw_dtype ab, enum hw_dtype c, int ta, int tb, int m, int n, int k,
                 double alpha, const void *A, size_t lda, const void *B, size_t ldb, double beta,
                 void *C, size_t ldc);

    /* ---- norms, positions, activations -------------------------------------------------- */
    void (*rmsnorm_forward)(float *out, float *rstd, const float *inp, const float *w, int N, int C,
                            float eps);
    void (*rmsnorm_backward)(float *dinp, float *dw, const float *dout, const float *inp,
                             const float *w, const float *rstd, int N, int C);
    void (*rope_forward)(float *x, const float *cos_t, const float *sin_t, int B, int T,
                         int n_heads, int hd, int ld, const int32_t *pos);
    void (*rope_backward)(float *dx, const float *cos_t, const float *sin_t, int B, int T,
                          int n_heads, int hd, int ld, const int32_t *pos);
    void (*swiglu_forward)(float *out, const float *h, int N, int F);
    void (*swiglu_backward)(float *dh, const float *dout, const float *h, int N, int F);
    void (*gelu_forward)(float *out, const float *h, int N, int F);
    void (*gelu_backward)(float *dh, const float *dout, const float *h, int N, int F);
    void (*residual_add)(float *out, const float *a, const float *b, int64_t n);
    void (*sigmoid_gate_forward)(float *out, const float *y, const float *u, int64_t n);
    void (*sigmoid_gate_backward)(float *dy, float *du, const float *dout, const float *y,
                                  const float *u, int64_t n);

    /* ---- attention --------------------------------------------------------------------- */
    void (*attention_forward)(float *out, float *lse, const float *qkv, const struct attn_shape *s);
    void (*attention_backward)(float *dqkv, const float *dout, const float *out, const float *lse,
                               const float *qkv, const struct attn_shape *s);
    void (*attention_block_forward)(float *out, float *lse, const struct attn_block *a, int merge);
    void (*attention_block_backward)(float *dq, float *dk, float *dv, int lddq, int lddkv,
                                     const float *dout, const float *out, const float *lse,
                                     const struct attn_block *a);
    void (*attention_prefix_forward)(float *out, float *lse, const float *qkv, const int32_t *qpos,
                                     const struct attn_shape *s);
    void (*attention_prefix_backward)(float *dq, int lddq, const float *dout, const float *out,
                                      const float *lse, const float *qkv, const int32_t *qpos,
                                      const struct attn_shape *s);
    void (*attention_decode)(float *out, const float *q, const float *kc, const float *vc,
                             int n_ctx, int ld_kv, int H, int Hkv, int hd, float *scratch);
    void (*attention_decode_steer)(float *out, const float *q, const float *kc, const float *vc,
                                   int n_ctx, int ld_kv, int H, int Hkv, int hd, float *scratch,
                                   const uint8_t *user, float alpha);

    /* ---- Mixture-of-Head router and gates (moh.h) ------------------------------------------ */
    void (*moh_router_forward)(const struct moh_spec *s, int N, struct moh_state *st);
    void (*moh_router_backward)(const struct moh_spec *s, int N, const struct moh_state *st,
                                const float *dG, float bal_scale, const double *fsum, double n,
                                float *dzr, float *dzs, float *dzh);
    void (*moh_balance_sums)(const struct moh_spec *s, int N, const struct moh_state *st,
                             double *psum, double *fsum);
    void (*moh_gate_forward)(float *dst, const float *att, const float *G, int N,
                             const struct moh_heads *hh);
    void (*moh_gate_backward)(float *datt, float *dG, const float *att, const float *G, int N,
                              const struct moh_heads *hh);
    void (*moh_qnorm_forward)(float *qraw, const float *qkv, int ld, int N, int E, int hs,
                              const struct moh_heads *hh);
    void (*moh_qnorm_backward)(float *dqkv, const float *dz, const float *qraw, const float *qkv,
                               int ld, int N, int E, int hs, const struct moh_heads *hh);
    void (*moh_select_rows)(int32_t *idx, int32_t *off, const struct moh_spec *s,
                            const int32_t *sel, int B, int T, const struct moh_heads *hh);

    /* ---- loss, embeddings, gathers ---------------------------------------------------------- */
    double (*xent_forward_backward)(float *logits, float *losses, const int32_t *targets, int N,
                                    int V, float dscale, int ignore_index);
    void (*embed_forward)(float *out, const int32_t *tok, const float *wte, int N, int C, int V);
    void (*embed_backward)(float *dwte, const float *dout, const int32_t *tok, int N, int C, int V);
    /* dst[ids[i]] += (float) src[i] row by row (fp64 rows, the rec model's table scatter) */
    void (*rows_scatter_add_f64)(float *dst, const int32_t *ids, int n, int dim, const double *src);

    /* ---- optimizer ------------------------------------------------------------------------ */
    void (*adamw_update)(float *p, float *m, float *v, const float *g, size_t n, float lr, float b1,
                         float b2, float eps, float wd, int t, float grad_scale);
    double (*sumsq)(const float *x, size_t n); /* result on the HOST, deterministic */

    /* ---- precision (train.precision) ---------------------------------------------------- */
    /* HW_F32 (the default) or, where supports(OPS_CAP_BF16_TRAIN), HW_BF16: from then on the
     * dense layers (matmul_*), the general GEMM's fp32 products and the attention kernels'
     * tile products (Q K^T, P V and the backward's, with P and dS rounded as flash attention
     * does) take bf16 inputs, rounded to nearest even, and accumulate and write fp32, as bf16
     * tensor cores do. Returns the previous setting. */
    enum hw_dtype (*set_precision)(enum hw_dtype t);
    enum hw_dtype (*precision)(void);

    /* ---- placement -------------------------------------------------------------------- */
    /* Bind this process to its device before its first allocation: local_rank is its index
     * among the local_size ranks of its node (MPI shared-memory split), so node ranks take the
     * visible GPUs in turn (more ranks than GPUs share them). Writes what it chose into desc
     * (one line: the layout table names every rank's device). */
    void (*select_device)(int local_rank, int local_size, char *desc, size_t n);
    /* Bytes of backend memory held now (alloc minus free; host_alloc is not counted) and the
     * most held at once since the last reset (reset: the peak starts again from now). Either
     * pointer may be NULL. Thread-safe. */
    void (*mem_stats)(size_t *in_use, size_t *peak, int reset);
    /* The measured rate (FLOP/s) of this backend's dense GEMM in the current precision, for
     * MFU: the best of square products timed for about `seconds`; *what names it ("sgemm",
     * "cuBLASLt bf16"). */
    double (*gemm_peak)(double seconds, const char **what);

    /* ---- the Titans memory's kernels (titans_ops.h; OPS_CAP_TITANS) ------------------- */
    const struct titans_ops *titans;
    /* ---- the rec model's kernels (rec_ops.h; OPS_CAP_REC) ------------------------------ */
    const struct rec_ops *rec;
};

/* The table for a backend. A build without it dies with a rebuild hint. */
const struct ops *ops_for(enum backend b);
/* The table named by run.backend ("cpu", "cuda"), or NULL for an unknown name; *why gets one
 * line when the name is known but this build or machine cannot provide it. */
const struct ops *ops_by_name(const char *name, const char **why);
/* 0 when o has every group in caps[0..n); else HW_ECONFIG with one line in err naming `who`
 * (a layer, a model), the backend and the missing group. */
int ops_require(const struct ops *o, const enum ops_cap *caps, int n, const char *who, char *err);

/* A buffer from a backend that knows its element type. Zeroed on allocation. */
struct hw_buf {
    void *data;
    size_t n; /* elements */
    enum hw_dtype type;
    const struct ops *be;
};
/* Allocate n elements of type t (n == 0 gives a valid, empty buffer); returns data. */
void *hw_buf_alloc(struct hw_buf *b, const struct ops *o, enum hw_dtype t, size_t n);
/* Free and zero (a zeroed or already freed buffer is a no-op). */
void hw_buf_free(struct hw_buf *b);
static inline size_t hw_buf_bytes(const struct hw_buf *b) {
    return b->n * hw_dtype_size(b->type);
}
/* Zero the whole buffer. */
void hw_buf_zero(struct hw_buf *b);

/* Threads used by our kernels and OpenBLAS; 0 = all cores. Returns the count in effect. */
int ops_set_threads(int n);
/* Threads of OpenBLAS alone. OpenBLAS splits a product across its threads and a row's result
 * depends on the split, so results that must not depend on the machine's rank/thread layout
 * (evaluation scores) use one BLAS thread per rank. */
void ops_set_blas_threads(int n);

/* Best measured single-precision GEMM rate of this machine with the current thread count, in
 * FLOP/s (square sgemm through OpenBLAS for about `seconds`). The denominator of MFU. */
double ops_sgemm_peak(double seconds);

#ifdef __cplusplus
}
#endif

#endif /* HW_OPS_H */
