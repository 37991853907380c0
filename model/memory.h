/* model/memory.h -- the Titans memory inside a transformer block (docs/titans.md), shared by the
 * memory kinds: layer_mal.c (x += M(RMSNorm_mem(x)) before the block), layer_mag.c (the attention
 * branch a becomes a * sigmoid(M(n1))), layer_memory.c (the branch is M(n1)) and layer_mac.c
 * (memory as context). The module itself is model/titans.h; this file owns its tensors in the
 * parameter table (blocks.L.mem.*), their init, the tapes of a forward, the per-sequence chain
 * over the context ranks (model/parallel.h) and the per-sequence decoders.
 *
 * M runs per sequence from the learned W0 with the module's chunked parallel training; decoding
 * advances one titans decoder per (layer, sequence), which equals the parallel pass. Under head
 * parallelism the memory heads are split over the head ranks when they divide (the partial
 * outputs and input gradients are summed by par_reduce_*), else replicated. Not a public
 * header: the trunk sees only layer kinds (layer.h). */
#ifndef HW_MEMORY_H
#define HW_MEMORY_H

#include "gpt.h"

/* Fill gc->mem[] and gc->mem_cfg from model.memory (gc->C, gc->L, gc->max_T already set). */
void memory_config(struct gpt_config *gc, const struct cfg_model *m);
/* Append " mem=..." to a shape signature. */
void memory_signature(const struct gpt_config *gc, char *out, size_t n);

struct mac_state; /* layer_mac.c */

/* One block's memory. */
struct mem {
    struct gpt *m;
    struct layer *ly;
    int kind;             /* LK_MAL, LK_MAG, LK_MEMORY or LK_MAC */
    struct titans_cfg tc; /* this rank's module: its share of the heads, the backend */
    struct titans_layout lo;
    size_t HP, K1; /* state floats (H x P), conv history rows */
    /* tensors (bind): the module's flat parameters and gradient, the memory input norm (MAL,
     * MAC's store), the persistent tokens (MAG, MAC); wq and wo decide the reductions */
    const float *par;
    float *dpar;
    const float *norm_w, *persist_w;
    float *norm_g, *persist_g;
    const struct param *p_wq, *p_wo;
    /* activations for (B, T) */
    int B, T, np;               /* np: pieces per local sequence (2 under context parallelism) */
    struct titans_tape_f *tape; /* (B, np) */
    float *x0, *nrm, *rstd;     /* MAL: input, normed input (N, C), (N); MAC: the store's norm */
    float *u, *y;               /* (N, C) memory outputs; MAG/MAC: the ungated branch */
    float *dn1, *dy, *du;       /* (N, C) backward scratch */
    float *W, *S, *Wo, *So;     /* (H, P) state scratch */
    struct par_chain chain;     /* (W, S) and the conv histories handed along the context ranks */
    int warned;                 /* a NaN/Inf was reported */
    /* the arrays the chain is running on */
    const float *cx, *cdu;
    float *cu, *cdx;
    struct mac_state *mac;
    /* MAL, MAG: the attention the memory wraps (an attention kind of its own) */
    struct layer inner;
    int has_inner;
};

/* Tensors of part 1 (after the block's MLP): the input norm (MAL, MAC), the persistent tokens
 * (MAG, MAC; replicated), the module's tensors in titans_layout order (split by heads when
 * the head ranks divide them). */
void mem_create(struct layer *ly, int kind);
void mem_params(struct mem *s, struct param_table *t);
void mem_bind(struct mem *s);
void mem_init_weights(struct mem *s, uint64_t seed);
void mem_alloc(struct mem *s, int B, int T);
void mem_free(struct mem *s);

/* u = M(x) per sequence from the learned initial state (every sequence starts at W0),
 * complete over the head ranks; reports a NaN/Inf once with the layer and sequence. */
void mem_forward(struct mem *s, const float *x, float *u);
/* dx (N, C) += the VJP of mem_forward for du (dx a zeroed scratch: the sum is complete). */
void mem_backward(struct mem *s, const float *du, float *dx);
/* Report a non-finite memory output once (the trainer stops on the loss with the step). */
void mem_check_finite(struct mem *s, const float *u, const char *what);

/* Decoding: one titans decoder per sequence slot. */
struct mem_cache {
    int B;
    struct titans_dec_f *dec; /* (B) */
    float *nrm, *u, *rstd;    /* one row */
    void *mac;                /* layer_mac.c's decode state */
};
struct mem_cache *mem_cache_init(struct mem *s, int B);
void mem_cache_reset(struct mem *s, struct mem_cache *k, int b);
void mem_cache_free(struct mem *s, struct mem_cache *k);
/* one token of sequence b: u = M(x) with the store */
void mem_decode_step(struct mem *s, struct mem_cache *k, int b, const float *x, float *u);

/* Kinds around an attention kind (MAL, MAG) hand these to the inner kind. */
const double *mem_inner_head_usage(const struct layer *ly);
void mem_inner_stats_reset(struct layer *ly);
const float *mem_inner_attn_qkv(const struct layer *ly, int *ld);
const float *mem_inner_attn_out(const struct layer *ly);

/* MAC (layer_mac.c) */
void mac_alloc(struct mem *s);
void mac_free(struct mem *s);

#endif /* HW_MEMORY_H */
