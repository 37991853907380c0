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

#include <stdint.h>

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

#endif /* HW_ATTENTION_H */
