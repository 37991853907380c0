/* model/gpt.h -- the decoder-only transformer: the parameter table with stable names, the trunk
 * (embedding, blocks, final norm, LM or classifier head), forward/backward through the backend,
 * and KV-cached decoding for sampling.
 *
 * Block: x += Wo mixer(RMSNorm(x)); x += Wdown act(Win RMSNorm(x)). Final: logits = Wlm
 * RMSNorm(x). The mixer of every block is a layer kind (layer.h): dense/GQA or Mixture-of-Head
 * attention (S2 block sparsity and packed-segment masks are kernel options), or a Titans memory
 * layer (MAL, MAG, memory-only, MAC). With model.embedding dare, the first block's queries and
 * keys come from a second table (tok_emb_attn) while tok_emb feeds its values and the residual
 * stream. Cross-entropy ignores targets equal to XENT_IGNORE (-1).
 *
 * Under a rank grid (struct dist) the model holds only its shard: the parameter table splits
 * head- and MLP-column-shaped tensors over the head ranks (Megatron style) and context
 * parallelism gives each rank T/cp zig-zag tokens; model/parallel.h places every collective.
 * Tensor names and global shapes do not change, so checkpoints are grid-independent.
 * Every buffer comes from the backend (ops.h); host code reads none of them directly except
 * through gpt_logits and the documented accessors. */
#ifndef HW_GPT_H
#define HW_GPT_H

#include "../dist/cp_attention.h"
#include "../dist/dist.h"
#include "../ops/ops.h"
#include "../ops/rope.h"
#include "layer.h"
#include "model_cfg.h"
#include "parallel.h"
#include "param.h"
#include "titans.h"

#include <stddef.h>
#include <stdint.h>

#define GPT_MAX_LAYERS 1024

enum gpt_mlp {
    GPT_MLP_SWIGLU,
    GPT_MLP_GELU,
};

/* The model's description: the trunk's shape, the mixer kind of every block, and the options
 * of the kinds. Built from the config (gpt_config_from_cfg) or by hand (tests). */
struct gpt_config {
    int C;     /* d_model */
    int L;     /* layers */
    int H;     /* query heads */
    int Hkv;   /* key/value heads */
    int hd;    /* head dim = C / H */
    int F;     /* MLP hidden width */
    int V;     /* vocabulary */
    int max_T; /* RoPE table length */
    enum gpt_mlp mlp;
    int tied; /* LM head shares tok_emb.weight */
    float rope_theta;
    /* RoPE frequency scaling (ops/rope.h); rope_scale.factor 0: none */
    struct rope_scaling rope_scale;
    float eps;
    float init_std;
    int n_cls; /* classifier head classes (train.task classify); 0 = none */
    int dare;  /* model.embedding dare: tok_emb_attn feeds Q and K of the first layer */
    /* per layer: the attention kind (a registry id of layer.h, LK_MHA by default), the memory
     * kind wrapping or replacing it (0: none, else LK_MAL/LK_MAG/LK_MEMORY/LK_MAC) and whether
     * the attention is S2 block-sparse */
    unsigned char attn[GPT_MAX_LAYERS], mem[GPT_MAX_LAYERS], s2[GPT_MAX_LAYERS];
    /* options of the moh kind */
    int moh_hs, moh_k, moh_qnorm, moh_literal;
    float moh_coef;
    int moh_ste_off; /* qnorm: drop the straight-through estimator (tests of the exact part) */
    /* the S2 pattern of sparse layers */
    int s2_block, s2_local, s2_vert, s2_offset, s2_dense;
    /* options of the memory kinds: the module (d = C; b = the TTT batch), MAC's segment
     * length and the persistent tokens of MAC and MAG layers */
    struct titans_cfg mem_cfg;
    int mem_seg, mem_np;
};

/* Trunk weights of one block (views into the parameter or gradient block). */
struct gpt_block {
    float *attn_norm;          /* (C) */
    float *mlp_norm;           /* (C) */
    struct linear w_in, w_out; /* MLP: column-parallel (2F or F, C), row-parallel (C, F) */
};

struct gpt_weights {
    float *wte;        /* (V, C) */
    float *wte_attn;   /* (V, C) DARE attention table, or NULL */
    float *final_norm; /* (C) */
    float *lm_head;    /* (V, C); == wte when tied */
    float *cls_head;   /* (n_cls, C) or NULL */
    struct gpt_block *blocks;
};

/* Trunk activations of one block. */
struct gpt_block_acts {
    float *x_in;  /* (N, C) residual stream entering the block (after pre_forward) */
    float *n1;    /* (N, C) */
    float *rstd1; /* (N) */
    float *x_mid; /* (N, C) after the mixer residual */
    float *n2;    /* (N, C) */
    float *rstd2; /* (N) */
    float *h;     /* (N, Fin) MLP pre-activation */
    float *a;     /* (N, F) MLP activation */
};

enum gpt_recompute { GPT_RECOMPUTE_NONE, GPT_RECOMPUTE_BLOCK, GPT_RECOMPUTE_ATTENTION };

/* Scratch the layers share (sized by the largest request of any layer's alloc). */
enum gpt_scratch {
    GPT_SCR_DATT, /* (N, Hl*hd): attention output gradient, gated outputs */
    GPT_SCR_DQKV, /* (N, Dqkv): projection gradients */
    GPT_SCR_QKV,  /* (N, Dqkv): the q/k/v rows the attention layers share (recompute attention) */
    GPT_SCRATCH
};

/* The parameter table being built (layer_param adds to it). */
struct param_table {
    struct gpt *m;
    int cap;
};
/* Add a tensor of global shape (rows, cols) (cols 0: 1-D) split over the head ranks along
 * shard_dim (-1: replicated); returns its index. */
int gpt_add_param(struct param_table *t, const char *name, int64_t rows, int64_t cols,
                  int shard_dim, int decay, float std);

struct gpt {
    struct gpt_config c; /* global shape */
    const struct ops *ops;
    struct dist *d;   /* NULL: one process */
    struct tp tp;     /* the grid as the parallel layers see it */
    int Hl, Hkvl, Fl; /* local query heads, kv heads, MLP width */
    int n_params;
    struct param *params;
    size_t num_params;          /* floats in the parameter block */
    struct hw_buf pbuf, gbuf;   /* the parameter block and its gradient (fp32 masters) */
    float *param_mem;           /* = pbuf.data, carved by params[] */
    float *grad_mem;            /* = gbuf.data, same layout */
    struct gpt_weights w, g;    /* trunk views into param_mem / grad_mem */
    struct layer *layers;       /* (L) the mixers */
    float *rope_cos, *rope_sin; /* (max_T, hd/2) */
    /* train.recompute (enum gpt_recompute), set before gpt_alloc_acts; every mode gives the
     * same losses bit for bit (same kernels, same inputs):
     * - BLOCK keeps only x_in and x_mid of every block through a training forward; the norms
     *   and the MLP activations live in one set the blocks share, and the backward of each
     *   block recomputes them. The mixer kinds keep their own tapes.
     * - ATTENTION keeps the trunk's activations but not the attention layers' q/k/v
     *   projections: the layers share one buffer (GPT_SCR_QKV) and each attention backward
     *   first recomputes its rows from its kept input (the q/k/v GEMM and RoPE; model/attn.c).
     *   The attention's softmax is never stored in any mode (FlashAttention-style kernels). */
    int recompute;
    /* trunk activations, sized by gpt_alloc_acts */
    int B, T, acts_recompute;
    struct hw_buf act_buf;
    struct gpt_block_acts *acts;
    float *x_final, *n_final, *rstd_final, *logits, *losses;
    float *dx, *dn, *dh, *da, *br;
    int32_t *tokens;   /* (B, T) the tokens of the last forward (backend memory) */
    int32_t *targets;  /* (B, T) their targets (backend memory) */
    int32_t *pos;      /* (T) absolute positions of the local tokens (backend memory) */
    int32_t *pos_host; /* the same on the host */
    float *cls_logits; /* (B, n_cls) classifier probabilities' gradient after gpt_classify */
    int32_t *cls_last; /* (B) pooled positions of the last gpt_classify */
    /* (B, T) segment ids of packed examples for the next forward/backward (non-decreasing per
     * row; tokens attend only within their segment), or NULL: one sequence per row. Set by the
     * caller (SFT packing); needs cp == 1. */
    const int32_t *seg;
    int32_t *seg_buf; /* (B, T) backend copy of seg during a forward/backward, or NULL */
    float *scratch[GPT_SCRATCH];
    size_t scratch_n[GPT_SCRATCH], scratch_cap[GPT_SCRATCH];
    struct cp_work cp_work;
    float *logits_host; /* host mirror for gpt_logits on a device backend */
    /* auxiliary losses and statistics the layers report (MoH's balance loss and head usage) */
    double aux_loss;    /* the auxiliary loss of the last forward (sum over layers) */
    float aux_scale;    /* gradient scale of the auxiliary losses (1 / micro-batches) */
    double stat_tokens; /* global tokens of the training forwards since gpt_stats_reset */
    /* Gradient blocks in the order the backward finishes them: the final norm (with an untied
     * head), the layers from last to first, the token embedding (with a tied head). Each is a
     * contiguous range of the parameter block. */
    int n_blocks;
    size_t *block_off, *block_len;
    /* called with block k's gradients as soon as the backward has finished them, to overlap
     * the data-parallel all-reduce with the backward */
    void (*grad_ready)(void *ctx, int k);
    void *grad_ready_ctx;
};

/* Derive the model shape from the config; vocab comes from the tokenizer. */
void gpt_config_from_cfg(struct gpt_config *gc, const struct cfg_model *m, int vocab);
/* A short text that identifies the shape, compared when resuming ("C=128 L=4 H=4 ..."). */
void gpt_config_signature(const struct gpt_config *gc, char *out, size_t n);

/* Build the layers and the parameter table and allocate params + grads (zeroed) on the
 * backend. d == NULL (or a 1-rank grid) holds the whole model; otherwise this rank's head shard,
 * for context rank d->cp_rank. Returns 0, or HW_ECONFIG with one line in err when a layer needs
 * an op group the backend lacks (nothing is allocated then; gpt_free is still safe). */
int gpt_build(struct gpt *m, const struct gpt_config *gc, const struct ops *ops, struct dist *d,
              char *err);
/* gpt_build that dies on a refusal (tests, tools that chose the CPU backend). */
void gpt_init(struct gpt *m, const struct gpt_config *gc, const struct ops *ops, struct dist *d);
/* Initialise weights from (seed, parameter name, element index): the same for any rank grid. */
void gpt_init_weights(struct gpt *m, uint64_t seed);
/* Allocate activations for micro-batches of B local sequences of T local tokens
 * (T * cp <= max_T). */
void gpt_alloc_acts(struct gpt *m, int B, int T);
void gpt_free(struct gpt *m);

/* Forward over local tokens (B, T). With targets, returns this rank's summed loss over
 * non-ignored targets and, when want_grad, leaves d(loss * dscale)/dlogits in m->logits for
 * gpt_backward. */
double gpt_forward(struct gpt *m, const int32_t *tokens, const int32_t *targets, int B, int T,
                   float dscale, int want_grad);
/* Backward of the last gpt_forward(want_grad=1); accumulates into m->grad_mem. */
void gpt_backward(struct gpt *m);
/* The logits of the last gpt_forward (B*T, V) in host memory. */
const float *gpt_logits(struct gpt *m);

/* Classifier head (n_cls > 0): logits of sequence b are W_cls n_final[b, last[b]], restricted
 * to the classes with allowed[b * n_cls + k] != 0 (others -inf), softmax cross-entropy against
 * label[b]. Writes pred[b] (argmax over the allowed classes, lowest id on ties) when pred is
 * not NULL; with want_grad, keeps d(loss * dscale) for gpt_backward_classify. Returns the summed
 * loss over the B sequences (label < 0: not counted). tokens, last, label, allowed: host. */
double gpt_classify(struct gpt *m, const int32_t *tokens, const int32_t *last, const int32_t *label,
                    const unsigned char *allowed, int B, int T, float dscale, int want_grad,
                    int32_t *pred);
void gpt_backward_classify(struct gpt *m);
void gpt_zero_grad(struct gpt *m);

/* Reset the layers' statistics (MoH head usage) and the token count behind them. */
void gpt_stats_reset(struct gpt *m);
/* Per-head usage of layer l since the last reset: usage[h] / m->stat_tokens is the fraction of
 * tokens that used head h; NULL for layers that do not route. */
const double *gpt_head_usage(const struct gpt *m, int l);
/* The rotated qkv rows (N, *ld) and attention output (N, Hl*hd) of layer l's last forward, in
 * backend memory; NULL for layers without attention. */
const float *gpt_attn_qkv(const struct gpt *m, int l, int *ld);
const float *gpt_attn_out(const struct gpt *m, int l);

/* The parameters as the optimizer and checkpoints see them. */
struct param_set gpt_param_set(struct gpt *m);
/* Look up a parameter by name; NULL if absent. */
const struct param *gpt_find_param(const struct gpt *m, const char *name);
/* Model FLOPs per token for forward+backward (6N + attention), for MFU. */
double gpt_flops_per_token(const struct gpt_config *gc, int T);

/* Let in-flight gradient buckets progress (between kernels of the backward; no-op unless the
 * data-parallel reduction overlaps the backward). */
void gpt_progress(struct gpt *m);
/* A shared scratch buffer of at least the size requested by any layer (gpt_scratch_need, in a
 * layer's alloc). */
void gpt_scratch_need(struct gpt *m, enum gpt_scratch s, size_t floats);
float *gpt_scratch(const struct gpt *m, enum gpt_scratch s);
/* out (nb, M) = in (nb, K) W^T one row at a time: OpenBLAS's result for a row depends on how
 * many rows are multiplied together, so decoding row by row makes a sequence's logits (and so
 * greedy outputs and scores) independent of which other sequences share the batch. */
void gpt_rows_matmul(const struct ops *o, float *out, const float *in, const float *w, int nb,
                     int K, int M);
/* Width of the fused q|k|v projection of this rank: (Hl + 2 Hkvl) hd. */
int gpt_qkv_width(const struct gpt *m);

/* KV cache for incremental decoding of B sequences at once, each at its own position. Every
 * layer keeps its own cache (dense layers every position; S2 layers, per (sequence, kv head),
 * only the positions its pattern can still use; memory layers their decoders). */
struct gpt_kv {
    struct gpt *m; /* the model the cache belongs to */
    int B, max_T, L;
    int *n;                      /* (B) positions filled per sequence */
    void **cache;                /* (L) the layers' caches */
    size_t floats, floats_dense; /* K+V floats allocated vs. a dense cache of every layer */
    size_t rows_peak;            /* most K/V rows (per head) held at once, summed over heads */
    float *x, *buf, *tmp, *h, *a, *rstd, *scratch;
    float *logits;  /* (B, V) host: row b holds sequence b's next-token logits after a step */
    float *dlogits; /* (B, V) backend rows before they are copied out */
    int *rows;
    int32_t *tok, *tok_d;   /* host and backend copies of the packed tokens */
    int32_t *rpos, *rpos_d; /* the positions of the packed rows (host, backend) */
    /* PASTA steering (inference only): with 0 < steer_alpha < 1, attention to the cached
     * positions p of sequence b with user[b * max_T + p] == 0 is scaled by steer_alpha and
     * renormalised, on every layer and head. steer_alpha = 1 (the default) is plain attention.
     * The caller marks the user-content positions before feeding them. */
    float steer_alpha;
    uint8_t *user; /* (B, max_T) host, zeroed by gpt_kv_init and gpt_kv_reset */
};
void gpt_kv_init(struct gpt_kv *kv, struct gpt *m, int B, int max_T);
/* Empty sequence b's cache (start a new sequence in that slot). */
void gpt_kv_reset(struct gpt_kv *kv, int b);
void gpt_kv_free(struct gpt_kv *kv);
/* Feed tokens[b] to every sequence b with active[b] (active == NULL: all) at its position
 * n[b]; returns the logits (B, V), valid in the rows that were active. */
const float *gpt_decode_batch(struct gpt *m, struct gpt_kv *kv, const int32_t *tokens,
                              const int *active);
/* B == 1: feed one token; returns the logits (V) of the next token. */
const float *gpt_decode_step(struct gpt *m, struct gpt_kv *kv, int32_t token);

#endif /* HW_GPT_H */
