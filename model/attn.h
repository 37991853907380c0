/* model/attn.h -- the attention machinery the attention kinds share (layer_mha.c, layer_moh.c,
 * and the attention inside layer_mal.c / layer_mag.c): the fused q|k|v projection, RoPE, the
 * attention through model/parallel.h (local, ring, Ulysses) with its kernel options (S2 block
 * sparsity, packed-segment masks, a persistent key/value prefix), the output projection, and
 * KV-cached decoding. A routed kind adds its router through `struct attn_router`; the model
 * may feed the first layer's queries and keys from a second embedding table (DARE).
 * Not a public header: the trunk sees only layer kinds (layer.h). */
#ifndef HW_ATTN_H
#define HW_ATTN_H

#include "../ops/s2.h"
#include "gpt.h"

struct attn;

/* What a routed attention (MoH) adds: routing after RoPE (gates, selected query rows), the
 * gating of the head outputs before Wo and their backward. */
struct attn_router {
    /* sets as->qsel/qsel_off for the kernels; may read a->qkv (query norms) */
    void (*route)(struct attn *a, int want_grad);
    /* dst (N, Hl*hd) = the gated attention output */
    void (*gate)(struct attn *a, float *dst, const float *att);
    /* datt: d(gated) in, d(att) out; then the router's backward into its logits */
    void (*gate_backward)(struct attn *a, float *datt);
    /* after the attention backward, before RoPE's: d|q| into dqkv (query-norm router) */
    void (*qnorm_backward)(struct attn *a, float *dqkv);
    /* dn1 += the router's input gradient (after the q|k|v input gradient is complete) */
    void (*router_backward)(struct attn *a, float *dn1);
    /* decoding: the gates of one token (NULL: every head on); writes gate (H), zeros for the
     * heads it skips */
    const float *(*decode_gates)(struct attn *a, void *rc, const float *n1, const float *q);
    void *(*decode_init)(struct attn *a);
    void (*decode_free)(struct attn *a, void *rc);
};

struct attn {
    struct gpt *m;
    int l;
    struct linear w_qkv, w_o; /* column-parallel q|k|v, row-parallel output */
    int D, HD, kvw;           /* q|k|v width, query and kv widths of this rank */
    int s2;                   /* S2 block-sparse pattern */
    struct s2_pattern pat;
    int dare; /* Q and K from tok_emb_attn (model.embedding dare, first layer) */
    /* persistent prefix (MAG): np rows P (np, C) projected by this layer's q|k|v; the backward
     * adds the rows' gradient into dP (complete over the head ranks) */
    int np;
    const float *P;
    float *dP;
    const struct attn_router *router;
    void *rstate; /* the router's */
    const int32_t *qsel, *qsel_off;
    /* activations */
    const float *n1; /* the input rows of the last forward (the trunk's) */
    int B, T;
    float *qkv, *att, *lse; /* qkv: this layer's, or the shared GPT_SCR_QKV (qkv_shared) */
    int qkv_shared;         /* train.recompute: attention */
    struct cp_attn_ctx cpx;
    float *cp_mem;
    float *pq, *dpq, *pdP;               /* (np, D), (np, D), (np, C) */
    int32_t *ppos;                       /* (np) positions 0..np-1 of the prefix rows */
    float *xa, *na, *rstda, *dxa, *qkva; /* DARE */
};

/* Build over layer ly's tensors "attn.wq/wk/wv/wo" (added by attn_params). */
void attn_init(struct attn *a, struct layer *ly);
void attn_params(struct layer *ly, struct param_table *t);
void attn_bind(struct attn *a, struct layer *ly);
/* The op groups this attention needs (caps: room for OPS_CAPS). */
int attn_caps(const struct attn *a, enum ops_cap *caps);
void attn_alloc(struct attn *a, int B, int T);
void attn_free(struct attn *a);
/* br (N, C) = Wo attn(n1), complete over the head ranks. */
void attn_forward(struct attn *a, const float *n1, float *br, int want_grad);
/* dn1 = the input gradient given dbr (overwritten, complete). */
void attn_backward(struct attn *a, const float *dbr, float *dn1);

/* decoding */
void *attn_cache_init(struct attn *a, int B, int max_T, struct cache_stats *st);
void attn_cache_reset(struct attn *a, void *cache, int b);
void attn_cache_free(struct attn *a, void *cache);
void attn_decode(struct attn *a, void *cache, const struct decode_rows *r, const float *n1,
                 float *br, struct cache_stats *st);

/* The layer-kind functions of attention kinds, whose state is a struct attn (layer_mha.c uses
 * them as they are; layer_moh.c wraps some). attn_kind_create makes the state (params does it
 * on first use). */
struct attn *attn_of(struct layer *ly);
void attn_kind_create(struct layer *ly);
int attn_kind_caps(const struct layer *ly, enum ops_cap *caps);
void attn_kind_params(struct layer *ly, struct param_table *t, int part);
void attn_kind_bind(struct layer *ly);
void attn_kind_alloc(struct layer *ly, int B, int T);
void attn_kind_free(struct layer *ly);
void attn_kind_forward(struct layer *ly, const float *n1, float *br, int want_grad);
void attn_kind_backward(struct layer *ly, const float *dbr, float *dn1);
void *attn_kind_cache_init(struct layer *ly, int B, int max_T, struct cache_stats *st);
void attn_kind_cache_reset(struct layer *ly, void *cache, int b);
void attn_kind_cache_free(struct layer *ly, void *cache);
void attn_kind_decode(struct layer *ly, void *cache, const struct decode_rows *r, const float *n1,
                      float *br, struct cache_stats *st);
const float *attn_kind_qkv(const struct layer *ly, int *ld);
const float *attn_kind_out(const struct layer *ly);

#endif /* HW_ATTN_H */
