/* dist/cp_attention.h -- exact causal attention when the sequence is split over the context
 * ranks (ALGORITHMS.md §6). The T tokens are cut into 2*cp chunks and rank r holds chunks r and
 * 2cp-1-r (zig-zag), so every rank has the same causal work.
 *  - ring: K/V blocks travel around the ring; each rank attends its queries to every block and
 *    merges the partial results by log-sum-exp. The backward sends (K, V, dK, dV) around once
 *    more, so each block's dK/dV returns to its owner complete.
 *  - ulysses: an all-to-all turns (local tokens, all local heads) into (all tokens, heads/cp),
 *    attention runs locally, and a second all-to-all turns the output back.
 * Shapes are local: s->T is the rank's T/cp tokens, s->H and s->Hkv its heads (after head
 * parallelism). Both compose with head parallelism because they only touch local heads. */
#ifndef HW_CP_ATTENTION_H
#define HW_CP_ATTENTION_H

#include "../ops/ops.h"
#include "dist.h"

#include <stddef.h>
#include <stdint.h>

/* Per-layer state kept from the forward for the backward (Ulysses only). */
struct cp_attn_ctx {
    float *u_qkv; /* (B, T_global, Du) */
    float *u_out; /* (B, T_global, Hu*hd) */
    float *u_lse; /* (B, Hu, T_global) */
};

/* Grown-on-demand scratch shared by all layers. */
struct cp_work {
    float *a, *b, *c;
    size_t cap_a, cap_b, cap_c;
    int32_t *pos; /* the ring's absolute positions, in backend memory (the kernels read them) */
    size_t cap_pos;
};

/* Absolute positions of the local tokens of context rank `rank` (T_global = T_local * cp). */
void cp_positions(int32_t *pos, int T_local, int cp, int rank);
/* Floats a layer's cp_attn_ctx needs (0 in ring mode). */
size_t cp_ctx_floats(const struct dist *d, const struct attn_shape *s);
/* Carve ctx from mem (cp_ctx_floats floats). */
void cp_ctx_carve(struct cp_attn_ctx *ctx, float *mem, const struct dist *d,
                  const struct attn_shape *s);

/* The kernels run through the backend o (its block, prefix and whole-sequence attention);
 * the scratch comes from it too. */
void cp_attention_forward(const struct ops *o, struct dist *d, float *out, float *lse,
                          const float *qkv, const struct attn_shape *s, struct cp_attn_ctx *ctx,
                          struct cp_work *w);
/* Overwrites the q, k, v columns of dqkv. */
void cp_attention_backward(const struct ops *o, struct dist *d, float *dqkv, const float *dout,
                           const float *out, const float *lse, const float *qkv,
                           const struct attn_shape *s, struct cp_attn_ctx *ctx, struct cp_work *w);
/* o: the backend the scratch came from (NULL only for a scratch never used). */
void cp_work_free(const struct ops *o, struct cp_work *w);

#endif /* HW_CP_ATTENTION_H */
