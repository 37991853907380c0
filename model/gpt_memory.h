/* model/gpt_memory.h -- Titans memory layers inside the transformer (docs/titans.md): the
 * model.memory config, the parameter tensors of a memory layer, and the hooks that model/gpt.c
 * calls in the forward, the backward and KV decoding. The memory itself is model/titans.h.
 *
 * Per layer kind (model.memory.layers):
 *   mal:    x <- x + M(RMSNorm_mem(x)) before the block (memory as a layer; the attention that
 *           follows may be S2 sliding-window: model.sparsity)
 *   mag:    the attention residual branch a = Wo attn(.) becomes a * sigmoid(M(n1)), n1 the
 *           block's attention-norm output (memory as a gate)
 *   memory: the attention residual branch is M(n1) (the memory replaces attention)
 *   mac:    memory as context (model/gpt_mac.c): per segment of model.memory.segment tokens,
 *           h = M*(n1) read at the segment's incoming state, y = Wo attn over [P | h | segment]
 *           (P the persistent tokens), then M stores y and the branch is y * sigmoid(M(y))
 * M runs per sequence from the learned W0 with the module's chunked parallel training; decoding
 * advances one titans decoder per (layer, sequence), which equals the parallel pass. Under head
 * parallelism the memory heads are split over the head ranks when they divide (the partial
 * outputs and input gradients are summed over the head group), else replicated. */
#ifndef HW_GPT_MEMORY_H
#define HW_GPT_MEMORY_H

#include "gpt.h"

#define GPT_MEM_MAL  1
#define GPT_MEM_MAG  2
#define GPT_MEM_ONLY 3
#define GPT_MEM_MAC  4

/* Fill gc->mem[] and gc->mem_cfg from model.memory (gc->C, gc->L, gc->max_T already set). */
void gpt_memory_config(struct gpt_config *gc, const struct cfg_model *m);
/* Append " mem=..." to a shape signature. */
void gpt_memory_signature(const struct gpt_config *gc, char *out, size_t n);

/* Parameter tensors of layer l (0 when it has no memory): tensor j's name suffix (after
 * "blocks.l."), global shape (cols 0: 1-D), shard dimension over hp head ranks (-1: replicated;
 * the memory heads are split when hp divides them), weight decay and init std (0 = ones). The
 * module's tensors are consecutive, in titans_layout order, so a rank's blocks form the flat
 * array of the module configured with its share of the heads. */
int gpt_memory_n_tensors(const struct gpt_config *gc, int l);
void gpt_memory_tensor(const struct gpt_config *gc, int l, int j, int hp, const char **name,
                       int64_t *rows, int64_t *cols, int *shard, int *decay, float *std);
/* Carve layer l's pointers from its first memory tensor. */
void gpt_memory_carve(const struct gpt_config *gc, int l, struct gpt_layer *y, float *first);
/* Overwrite the memory parameters with the module's init (key from seed and layer). */
void gpt_memory_init_weights(struct gpt *m, uint64_t seed);

/* Tapes and buffers for (B, T) (no-op when unchanged or without memory layers). */
void gpt_memory_alloc(struct gpt *m, int B, int T);
void gpt_memory_free(struct gpt *m);

/* Forward hooks: MAL at the block start (x updated in place); MAG/memory on the attention
 * branch dn (N, C) after its head all-reduce, n1 the attention-norm output. */
void gpt_memory_mal_forward(struct gpt *m, int l, float *x);
void gpt_memory_attn_forward(struct gpt *m, int l, const float *n1, float *dn);
/* Backward hooks. attn_backward: given d(residual branch) dx, runs the memory backward and
 * returns the gradient for the attention's wo output (dx itself for layers without mag/memory;
 * for memory-only layers gpt.c skips the attention and ignores it).
 * add_dn: adds the memory's gradient w.r.t. n1 into dn (after dn's head all-reduce).
 * mal_backward: dx = d(x after the memory sublayer) becomes d(x before it). */
const float *gpt_memory_attn_backward(struct gpt *m, int l, const float *dx);
void gpt_memory_add_dn(struct gpt *m, int l, float *dn);
void gpt_memory_mal_backward(struct gpt *m, int l, float *dx);

/* Persistent tokens on MAG layers' attention (N_p key/value rows every query sees, the paper's
 * SW-Attn*): the rows of layer l (0: none); forward: project them (before the attention);
 * shape: point the attention shape at them and at their gradient; backward (after the
 * attention backward): their gradient into the weights. */
int gpt_memory_prefix_rows(const struct gpt_config *c, int l);
void gpt_memory_prefix_forward(struct gpt *m, int l);
void gpt_memory_prefix_shape(struct gpt *m, int l, struct attn_shape *as);
void gpt_memory_prefix_backward(struct gpt *m, int l);

/* Decoding: one titans decoder per (memory layer, sequence slot). */
struct gpt_memory_kv *gpt_memory_kv_init(const struct gpt *m, int B);
void gpt_memory_kv_reset(struct gpt_memory_kv *k, int b);
void gpt_memory_kv_free(struct gpt_memory_kv *k);
/* MAL on the nb packed rows x (row i is sequence rows[i]); attention branch (mag/memory) on
 * the branch output br given the attention-norm rows n1. */
void gpt_memory_decode_mal(struct gpt *m, struct gpt_memory_kv *k, int l, int nb, const int *rows,
                           float *x);
void gpt_memory_decode_attn(struct gpt *m, struct gpt_memory_kv *k, int l, int nb, const int *rows,
                            const float *n1, float *br);

/* MAC layer l's attention for nb decoded rows (sequence rows[i] at position pos[rows[i]]): n1
 * the attention-norm rows, qkv their projections before RoPE (rotated in place); writes att
 * (nb, H*hd). The store and the gate follow in gpt_memory_decode_attn. */
void gpt_mac_decode_attn(struct gpt *m, struct gpt_memory_kv *k, int l, int nb, const int *rows,
                         const int *pos, const float *n1, float *qkv, float *att);

#endif /* HW_GPT_MEMORY_H */
