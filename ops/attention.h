/* ops/attention.h -- causal multi-head attention with grouped K/V heads, computed in tiles
 * (FlashAttention-2 style online softmax, Dao 2023): memory is linear in T, the (T, T) score
 * matrix is never formed.
 *
 * The block kernels attend queries to one block of keys/values with absolute positions, so the
 * same code serves one rank (the block is the whole sequence) and context parallelism (ring
 * attention visits the K/V blocks of other ranks and merges partial results by log-sum-exp).
 * Causality is by position: query i sees key j iff kpos[j] <= qpos[i]. Positions must increase
 * within a block.
 *
 * Packed sequences (SFT): with segment ids (qseg/kseg non-NULL), query i also needs
 * kseg[j] == qseg[i], so examples packed into one row never attend to each other. Segment ids
 * must be non-decreasing along each row (every example is one contiguous run). */
#ifndef HW_ATTENTION_H
#define HW_ATTENTION_H

#include "ops.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ATTN_TILE 64

struct attn_block {
    const float *q; /* (B, Tq) rows of stride ldq; query head h at column h*hd */
    const float *k; /* (B, Tk) rows of stride ldkv; kv head g at column g*hd */
    const float *v; /* same layout as k */
    int ldq, ldkv;
    const int32_t *qpos; /* (Tq) absolute positions of the queries */
    const int32_t *kpos; /* (Tk) absolute positions of the keys */
    int B, Tq, Tk, H, Hkv, hd;
    /* optional sparsity (see attn_shape in ops.h): S2 pattern + global index of local query
     * head 0; MoH per-(b, h) query selection over the Tq queries. Unselected rows get out = 0,
     * lse = -inf (merge = 0) and no dq. With S2, key chunks start on block boundaries. */
    const struct s2_pattern *s2;
    int head0;
    const int32_t *qsel, *qsel_off;
    const int32_t *qseg; /* (B, Tq) segment ids of the queries, or NULL: one segment */
    const int32_t *kseg; /* (B, Tk) segment ids of the keys (NULL iff qseg is NULL) */
};

/* out (B, Tq, H*hd) and lse (B, H, Tq). merge = 0: overwrite with this block's attention;
 * merge = 1: out/lse hold the normalised result over earlier blocks and are updated to the
 * result over earlier blocks + this one. Rows that see no key keep lse = -inf, out = 0. */
void attention_block_forward_cpu(float *out, float *lse, const struct attn_block *a, int merge);
/* Given the final out/lse (over all blocks) and dout, ACCUMULATE this block's contribution
 * into dq (rows of stride lddq, same head columns as q), dk and dv (stride lddkv). */
void attention_block_backward_cpu(float *dq, float *dk, float *dv, int lddq, int lddkv,
                                  const float *dout, const float *out, const float *lse,
                                  const struct attn_block *a);

/* The persistent prefix of s (s->np > 0): merge its rows into out/lse of the queries in qkv
 * (B, T rows of stride s->ld_qkv, absolute positions qpos); the backward accumulates dq (stride
 * lddq) and s->dpk/dpv given the final out/lse. Used by the whole-sequence functions below and
 * by context-parallel attention after its own blocks. */
void attention_prefix_forward_cpu(float *out, float *lse, const float *qkv, const int32_t *qpos,
                                  const struct attn_shape *s);
void attention_prefix_backward_cpu(float *dq, int lddq, const float *dout, const float *out,
                                   const float *lse, const float *qkv, const int32_t *qpos,
                                   const struct attn_shape *s);

/* Whole-sequence attention over the fused projection buffer qkv (B, T, ld_qkv) laid out as
 * [q heads | k heads | v heads], positions 0..T-1, then the persistent prefix if any. */
void attention_forward_cpu(float *out, float *lse, const float *qkv, const struct attn_shape *s);
/* Overwrites the q, k and v columns of dqkv (all B*T rows). */
void attention_backward_cpu(float *dqkv, const float *dout, const float *out, const float *lse,
                            const float *qkv, const struct attn_shape *s);

/* One query position against a KV cache (sampling). q: (H*hd) at the current position;
 * kc, vc: (n_ctx, ld_kv) rows holding Hkv heads of hd; out: (H*hd). scratch: n_ctx floats. */
void attention_decode_cpu(float *out, const float *q, const float *kc, const float *vc, int n_ctx,
                          int ld_kv, int H, int Hkv, int hd, float *scratch);

/* attention_decode with PASTA-style steering (Zhang et al. 2023; CSFT paper §2.3): the
 * post-softmax weight of every key j with user[j] == 0 is multiplied by alpha and each head's
 * weights are renormalised (the same as adding log(alpha) to those scores). alpha == 1 gives
 * attention_decode exactly. user: n_ctx flags. */
void attention_decode_steer_cpu(float *out, const float *q, const float *kc, const float *vc,
                                int n_ctx, int ld_kv, int H, int Hkv, int hd, float *scratch,
                                const uint8_t *user, float alpha);

#ifdef HW_CUDA
/* CUDA twins (ops/attention_cuda.cu): the same contracts as the _cpu functions above, fp32, run
 * on the context's compute stream (ops/cuda_ctx.h), deterministic (no floating-point atomics).
 * Every pointer they take is a DEVICE pointer: the tensors, and the index arrays of the structs
 * (attn_block q, k, v, qpos, kpos, qsel, qsel_off, qseg, kseg; attn_shape qsel, qsel_off, seg,
 * pk, pv, dpk, dpv; qpos; user), with one exception: the `s2` member of both structs points to
 * a HOST struct s2_pattern, read when the call is made and passed to the kernels by value. The
 * structs themselves are host memory. Head dim up to 128 (decode: 512). Extras over the CPU
 * contract: attention_prefix_*_cuda accept qpos == NULL for positions 0..T-1, and the decode
 * functions ignore scratch (it may be NULL). A call may grow a device scratch buffer kept
 * between calls (it synchronises the stream only when it grows). */
void attention_block_forward_cuda(float *out, float *lse, const struct attn_block *a, int merge);
void attention_block_backward_cuda(float *dq, float *dk, float *dv, int lddq, int lddkv,
                                   const float *dout, const float *out, const float *lse,
                                   const struct attn_block *a);
void attention_prefix_forward_cuda(float *out, float *lse, const float *qkv, const int32_t *qpos,
                                   const struct attn_shape *s);
void attention_prefix_backward_cuda(float *dq, int lddq, const float *dout, const float *out,
                                    const float *lse, const float *qkv, const int32_t *qpos,
                                    const struct attn_shape *s);
void attention_forward_cuda(float *out, float *lse, const float *qkv, const struct attn_shape *s);
/* train.precision: bf16 (ops_cuda's set_precision): the tile products take bf16-rounded
 * q, k, v, dO, P and dS (the CPU kernels' bf16 mode); accumulation, softmax and lse stay fp32. */
void attention_cuda_set_bf16(int on);
void attention_backward_cuda(float *dqkv, const float *dout, const float *out, const float *lse,
                             const float *qkv, const struct attn_shape *s);
void attention_decode_cuda(float *out, const float *q, const float *kc, const float *vc, int n_ctx,
                           int ld_kv, int H, int Hkv, int hd, float *scratch);
void attention_decode_steer_cuda(float *out, const float *q, const float *kc, const float *vc,
                                 int n_ctx, int ld_kv, int H, int Hkv, int hd, float *scratch,
                                 const uint8_t *user, float alpha);

/* Dense causal attention (GQA allowed) through cuDNN's fused flash attention, built with the
 * cuDNN graph (backend) API (ops/attention_cudnn.cu); execution plans are cached per shape.
 * bf16 tensors are passed as uint16_t (raw bfloat16 bits), all DEVICE pointers:
 *   qkv  (B, T, ld_qkv) bf16, the fused layout of attention_forward_cpu: [q H heads | k Hkv |
 *        v Hkv] of hd each at the start of every row (read through strides, no copies);
 *   out  (B, T, H*hd) bf16;  lse (B, H, T) fp32, natural-log log-sum-exp (headwise's lse);
 *   dout (B, T, H*hd) bf16;  dqkv like qkv: the q, k, v columns are overwritten (bf16).
 * Only s->B, T, H, Hkv, hd, ld_qkv are used; S2, MoH, segments and the prefix are not
 * expressible here (use the _cuda kernels). Requirements: hd % 8 == 0, hd <= 128,
 * ld_qkv % 8 == 0, 16-byte aligned buffers. */
/* 1 when the forward and backward graphs for this shape could be built (and are now cached),
 * 0 otherwise (S2/MoH/segments/prefix set, a layout cuDNN rejects, no engine): use the _cuda
 * kernels then. The first failure is explained once on stderr. */
int attention_cudnn_available(const struct attn_shape *s);
/* 1 when the cached backward plan for this shape is deterministic (no nondeterministic engine
 * was needed); only meaningful after attention_cudnn_available(s) returned 1. */
int attention_cudnn_deterministic(const struct attn_shape *s);
void attention_forward_cudnn(uint16_t *out, float *lse, const uint16_t *qkv,
                             const struct attn_shape *s);
void attention_backward_cudnn(uint16_t *dqkv, const uint16_t *dout, const uint16_t *out,
                              const float *lse, const uint16_t *qkv, const struct attn_shape *s);
/* Element-wise conversions on the compute stream (round to nearest even): n elements. */
void attention_f32_to_bf16_cuda(uint16_t *dst, const float *src, size_t n);
void attention_bf16_to_f32_cuda(float *dst, const uint16_t *src, size_t n);
#endif /* HW_CUDA */

#ifdef __cplusplus
}
#endif

#endif /* HW_ATTENTION_H */
