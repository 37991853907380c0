/* model/layer.h -- layer kinds: every attention or memory variant of a transformer block is one
 * `struct layer_kind` of function pointers in its own file (layer_mha.c, layer_moh.c,
 * layer_mal.c, layer_mag.c, layer_memory.c, layer_mac.c), chosen per layer from the config
 * through the registry below, like eval/tasks.c chooses evaluation tasks.
 *
 * The trunk (model/gpt.c) runs every block the same way and knows no kind:
 *     kind->pre_forward(x)            optional: a sublayer before the block (MAL's memory)
 *     n1 = RMSNorm(x)                 the block's attention norm
 *     br = kind->forward(n1)          the mixer branch, complete over the head ranks
 *     x  = x + br;  x = x + MLP(RMSNorm(x))
 * and the backward in reverse (kind->backward turns d br into d n1, complete over the head
 * ranks; kind->pre_backward undoes pre_forward). The feature state (projections, routers,
 * tapes, KV caches) lives in the kind's own state, not in struct gpt; collectives happen only
 * inside model/parallel.h's helpers.
 *
 * Adding a kind: write its file with the table below, register it (layer_kind_register, or a
 * line in layer.c's built-in list with a config name), and name it in model.attention.layers or
 * model.memory.layers. */
#ifndef HW_LAYER_H
#define HW_LAYER_H

#include "../ops/ops.h"

#include <stddef.h>
#include <stdint.h>

struct gpt;
struct layer;
struct param_table;
struct attn;

/* What a decode step hands a layer: nb packed rows, row i being sequence rows[i] at position
 * pos[rows[i]] (the tokens before it are cached). */
struct decode_rows {
    int nb;
    const int *rows;
    const int *pos;      /* (B) positions filled per sequence */
    const int32_t *tok;  /* (nb) the tokens fed (backend memory) */
    const int32_t *rpos; /* (nb) the position of each packed row (backend memory) */
    const uint8_t *user; /* (B, max_T) PASTA flags: 1 = user content (trunk-owned) */
    int max_T;
    float steer_alpha; /* 1: plain attention */
    float *scratch;    /* at least (max_T + 64) floats, shared */
};

/* Cache sizes a layer reports (KV floats held, a dense cache's, most rows per head held). */
struct cache_stats {
    size_t floats, floats_dense, rows_peak;
};

struct layer_kind {
    const char *name;
    /* op groups this layer needs from the backend (checked at build, ops_require) */
    int (*caps)(const struct layer *ly, enum ops_cap *caps);
    /* parameter tensors: part 0 right after the block's attention norm, part 1 after its MLP
     * (the checkpoint table order); bind takes the views once the block is allocated */
    void (*params)(struct layer *ly, struct param_table *t, int part);
    void (*bind)(struct layer *ly);
    /* optional: overwrite the default N(0, std) init of the kind's tensors */
    void (*init_weights)(struct layer *ly, uint64_t seed);
    /* activations for micro-batches of (B, T) local tokens (called again when they change) */
    void (*alloc)(struct layer *ly, int B, int T);
    void (*free)(struct layer *ly);
    /* optional sublayer before the block: x updated in place (and its backward) */
    void (*pre_forward)(struct layer *ly, float *x);
    void (*pre_backward)(struct layer *ly, float *dx);
    /* br (N, C) = the branch of n1 (N, C); want_grad: training (keep what backward needs) */
    void (*forward)(struct layer *ly, const float *n1, float *br, int want_grad);
    /* dn1 (N, C) = d loss / d n1 given dbr = d loss / d br (overwritten, complete) */
    void (*backward)(struct layer *ly, const float *dbr, float *dn1);
    /* decoding: a cache for B sequences of up to max_T positions, reset of sequence b, one
     * step (x: the rows before the block for pre_decode, updated in place; n1 -> br) */
    void *(*cache_init)(struct layer *ly, int B, int max_T, struct cache_stats *st);
    void (*cache_reset)(struct layer *ly, void *cache, int b);
    void (*cache_free)(struct layer *ly, void *cache);
    void (*pre_decode)(struct layer *ly, void *cache, const struct decode_rows *r, float *x);
    void (*decode)(struct layer *ly, void *cache, const struct decode_rows *r, const float *n1,
                   float *br, struct cache_stats *st);
    /* optional: per-head token usage since the last reset (H doubles), NULL when not tracked */
    const double *(*head_usage)(const struct layer *ly);
    void (*stats_reset)(struct layer *ly);
    /* optional: the layer's attention activations (probes and tests): rotated qkv rows
     * (N, ld) and the attention output (N, Hl*hd) */
    const float *(*attn_qkv)(const struct layer *ly, int *ld);
    const float *(*attn_out)(const struct layer *ly);
    /* optional: the attention machinery of an attention kind (model/attn.h), for the memory
     * kinds that wrap one (MAG gives it its persistent rows) */
    struct attn *(*attention)(struct layer *ly);
};

/* One block's mixer: its kind and the kind's state. */
struct layer {
    const struct layer_kind *kind;
    struct gpt *m;
    int l;       /* block index */
    int inner;   /* memory kinds around an attention: the attention kind's id */
    void *state; /* the kind's */
};

/* The registry. Built-in ids; registered kinds follow. */
enum {
    LK_MHA,    /* dense / GQA attention (S2 and segments are kernel options) */
    LK_MOH,    /* Mixture-of-Head attention */
    LK_MAL,    /* Titans memory as a layer before the attention */
    LK_MAG,    /* Titans memory gating the attention */
    LK_MEMORY, /* Titans memory replacing the attention */
    LK_MAC,    /* Titans memory as the attention's context */
    LK_BUILTIN
};
#define LAYER_KINDS_MAX 32

const struct layer_kind *layer_kind_get(int id);
/* The id of the kind named `name`, or -1. */
int layer_kind_find(const char *name);
/* Add a kind (a test's, a plugin's); returns its id. */
int layer_kind_register(const struct layer_kind *k);
/* Names of the kinds of one family for messages ("mha, moh"): attention (0) or memory (1). */
void layer_kind_names(int memory, char *out, size_t n);

/* ---- shared by the kinds ----------------------------------------------------------------------
 */

/* A parameter table under construction (model/gpt.c owns the storage). Adds a tensor of global
 * shape (rows, cols) (cols 0: 1-D) named "blocks.<l>.<suffix>", split over the head ranks along
 * shard_dim (-1: replicated), with weight decay and init std (0: ones). Returns its index. */
int layer_param(struct layer *ly, struct param_table *t, const char *suffix, int64_t rows,
                int64_t cols, int shard_dim, int decay, float std);
/* Index of the layer's tensor "blocks.<l>.<suffix>" (dies when absent). */
int layer_param_index(const struct layer *ly, const char *suffix);

#endif /* HW_LAYER_H */
