/* ops/attention.h -- causal multi-head attention with grouped K/V heads, computed in tiles
 * (FlashAttention-2 style online softmax, Dao 2023): memory is linear in T, the (T, T) score
 * matrix is never formed. Q/K/V are read in place from the fused projection buffer
 * qkv (B, T, ld_qkv) laid out as [q heads | k heads | v heads], each head hd wide.
 * out: (B, T, H*hd); lse: (B, H, T) log-sum-exp of each query row, saved for the backward. */
#ifndef HW_ATTENTION_H
#define HW_ATTENTION_H

#include "ops.h"

#define ATTN_TILE 64

void attention_forward_cpu(float *out, float *lse, const float *qkv, const struct attn_shape *s);
/* Overwrites the q, k and v columns of dqkv (all B*T rows). */
void attention_backward_cpu(float *dqkv, const float *dout, const float *out, const float *lse,
                            const float *qkv, const struct attn_shape *s);

/* One query position against a KV cache (sampling). q: (H*hd) at the current position;
 * kc, vc: (n_ctx, ld_kv) rows holding Hkv heads of hd; out: (H*hd). scratch: n_ctx floats. */
void attention_decode_cpu(float *out, const float *q, const float *kc, const float *vc, int n_ctx,
                          int ld_kv, int H, int Hkv, int hd, float *scratch);

#endif /* HW_ATTENTION_H */
