/* model/gpt.h -- the decoder-only transformer: parameter table with stable names, weights,
 * gradients and activations carved from a few allocations, forward/backward built from the ops
 * table, and KV-cached decoding for sampling.
 * Block: x += Wo attn(rope(Wqkv rmsnorm(x))); x += Wdown act(Win rmsnorm(x)).
 * Final: logits = Wlm rmsnorm(x). Cross-entropy ignores targets equal to XENT_IGNORE (-1).
 * Per layer, attention is MHA or Mixture-of-Head (the head outputs are scaled by router gates
 * before Wo, and a head is computed only for the tokens that selected it), and dense causal or
 * S2 block-sparse (model.attention, model.moh, model.sparsity; see moh.h and ops/s2.h).
 * With model.embedding dare (DARE for language models, docs/rec.md) a second table
 * tok_emb_attn gives the first layer's queries and keys, Wq,k rmsnorm(tok_emb_attn[t]), while
 * tok_emb feeds its values and the residual stream; tied tables give the ordinary model.
 *
 * Under a rank grid (struct dist) the model holds only its shard: Megatron-style head
 * parallelism splits wq/wk/wv and w_gate/w_up by rows (heads, MLP columns) and wo/w_down by
 * columns, with one all-reduce after each row-parallel matmul in the forward and one on the
 * input gradient of each column-parallel matmul in the backward; context parallelism gives
 * the rank T/cp zig-zag tokens and runs ring or Ulysses attention across the context group.
 * Norms and embeddings are replicated. Tensor names and global shapes do not change, so
 * checkpoints are grid-independent. */
#ifndef HW_GPT_H
#define HW_GPT_H

#include "../core/cfg.h"
#include "../dist/cp_attention.h"
#include "../dist/dist.h"
#include "../ops/moh.h"
#include "../ops/ops.h"
#include "../ops/s2.h"
#include "param.h"
#include "titans.h"

#include <stddef.h>
#include <stdint.h>

#define GPT_MAX_LAYERS 1024

enum gpt_mlp {
    GPT_MLP_SWIGLU,
    GPT_MLP_GELU,
};

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
    float eps;
    float init_std;
    int n_cls; /* classifier head classes (train.task classify); 0 = none */
    /* per layer: 1 = MoH attention, 1 = S2 block-sparse attention */
    unsigned char moh[GPT_MAX_LAYERS], s2[GPT_MAX_LAYERS];
    int moh_hs, moh_k, moh_qnorm, moh_literal;
    float moh_coef;
    int s2_block, s2_local, s2_vert, s2_offset, s2_dense;
    int dare; /* model.embedding dare: tok_emb_attn feeds Q and K of the first layer */
    /* per layer Titans memory (model.memory, gpt_memory.h): 0 none, GPT_MEM_MAL/MAG/ONLY/MAC */
    unsigned char mem[GPT_MAX_LAYERS];
    struct titans_cfg mem_cfg; /* d = C; b = the TTT batch */
    int mem_seg, mem_np;       /* MAC: segment length, persistent tokens */
};

struct gpt_layer {
    float *attn_norm; /* (C) */
    float *wqkv;      /* (H*hd + 2*Hkv*hd, C): wq, wk, wv stacked */
    float *wo;        /* (C, H*hd) */
    float *mlp_norm;  /* (C) */
    float *w_in;      /* swiglu: (2F, C) = w_gate, w_up stacked; gelu: (F, C) */
    float *w_out;     /* (C, F) */
    /* MoH routers (replicated over head ranks; NULL when absent) */
    float *moh_wr; /* (E, C) routed heads */
    float *moh_ws; /* (ns, C) shared heads */
    float *moh_wh; /* (2, C) head types */
    /* Titans memory layers (gpt_memory.h; NULL when absent) */
    float *mem_norm;    /* (C) MAL: the memory sublayer's input norm */
    float *mem_persist; /* (N_p, C) MAC: persistent memory tokens, or NULL */
    float *mem;         /* the module's flat parameters (titans_layout order) */
};

struct gpt_weights {
    float *wte;        /* (V, C) */
    float *wte_attn;   /* (V, C) DARE attention table, or NULL */
    float *final_norm; /* (C) */
    float *lm_head;    /* (V, C); == wte when tied */
    float *cls_head;   /* (n_cls, C) or NULL */
    struct gpt_layer *layers;
};

struct gpt_layer_acts {
    float *x_in;  /* (N, C) residual stream entering the block */
    float *n1;    /* (N, C) */
    float *rstd1; /* (N) */
    float *qkv;   /* (N, Dqkv), q and k after RoPE */
    float *att;   /* (N, H*hd) */
    float *lse;   /* (B, H, T) */
    float *x_mid; /* (N, C) after the attention residual */
    float *n2;    /* (N, C) */
    float *rstd2; /* (N) */
    float *h;     /* (N, Fin) MLP pre-activation */
    float *a;     /* (N, F) MLP activation */
    /* MoH layers only */
    struct moh_state moh;
    int32_t *qsel, *qsel_off; /* per (b, local head): the token rows that selected it */
};

struct gpt {
    struct gpt_config c; /* global shape */
    const struct ops *ops;
    struct dist *d; /* NULL: one process */
    int hp, hp_rank, cp, cp_rank;
    int Hl, Hkvl, Fl; /* local query heads, kv heads, MLP width */
    int n_params;
    struct param *params;
    size_t num_params;          /* floats in the parameter block */
    float *param_mem;           /* one block, carved by params[] */
    float *grad_mem;            /* same layout */
    struct gpt_weights w, g;    /* views into param_mem / grad_mem */
    float *rope_cos, *rope_sin; /* (max_T, hd/2) */
    /* activations, sized by gpt_alloc_acts */
    int B, T;
    float *act_mem;
    struct gpt_layer_acts *acts;
    float *x_final, *n_final, *rstd_final, *logits, *losses;
    float *dx, *dn, *dqkv, *datt, *dh, *da;
    int32_t *tokens;
    float *cls_logits; /* (B, n_cls) classifier probabilities' gradient after gpt_classify */
    int32_t *cls_last; /* (B) pooled positions of the last gpt_classify */
    int32_t *pos;      /* (T) absolute positions of the local tokens */
    /* (B, T) segment ids of packed examples for the next forward/backward (non-decreasing per
     * row; tokens attend only within their segment), or NULL: one sequence per row. Set by the
     * caller (SFT packing); needs cp == 1. */
    const int32_t *seg;
    struct cp_attn_ctx *cp_ctx; /* (L) Ulysses state per layer */
    float *cp_mem;
    struct cp_work cp_work;
    /* MoH / S2 */
    struct moh_spec moh;
    int n_moh;            /* MoH layers */
    struct s2_pattern s2; /* used by layers with c.s2[l] */
    float *moh_mem;       /* MoH activations of all MoH layers */
    int32_t *moh_imem;
    float *moh_dG, *moh_dz; /* (N, H), (N, nr + ns + nh) backward scratch */
    float moh_aux_scale;    /* gradient scale of the balance loss (1 / micro-batches) */
    double moh_aux;         /* balance loss of the last forward: coef * mean over MoH layers */
    double *moh_fsum;       /* (L, E) global selection counts of the last forward */
    double moh_ntok;        /* global tokens of the last forward */
    double *moh_usage;      /* (L, H) tokens routed to each head, summed since the last reset */
    double moh_usage_tok;   /* tokens counted in moh_usage */
    /* DARE (c.dare): the first layer's attention-path embedding, its norm and Q/K */
    float *dare_mem, *xa, *na, *rstda, *qkva, *dxa;
    /* Gradient blocks in the order the backward finishes them: the final norm (with an untied
     * head), the layers from last to first, the token embedding (with a tied head). Each is a
     * contiguous range of the parameter block. */
    int n_blocks;
    size_t *block_off, *block_len;
    /* called with block k's gradients as soon as the backward has finished them, to overlap
     * the data-parallel all-reduce with the backward */
    void (*grad_ready)(void *ctx, int k);
    void *grad_ready_ctx;
    struct gpt_memory *mem; /* Titans layers' tapes and buffers (gpt_memory.h), or NULL */
};

/* Derive the model shape from the config; vocab comes from the tokenizer. */
void gpt_config_from_cfg(struct gpt_config *gc, const struct cfg_model *m, int vocab);
/* A short text that identifies the shape, compared when resuming ("C=128 L=4 H=4 ..."). */
void gpt_config_signature(const struct gpt_config *gc, char *out, size_t n);

/* Build the parameter table and allocate params + grads (zeroed). d == NULL (or a 1-rank grid)
 * holds the whole model; otherwise this rank's head shard, for context rank d->cp_rank. */
void gpt_init(struct gpt *m, const struct gpt_config *gc, const struct ops *ops, struct dist *d);
/* Initialise weights from (seed, parameter name, element index): the same for any rank grid. */
void gpt_init_weights(struct gpt *m, uint64_t seed);
/* Allocate activations for micro-batches of B local sequences of T local tokens
 * (T * cp <= max_T). */
void gpt_alloc_acts(struct gpt *m, int B, int T);
void gpt_free(struct gpt *m);

/* Forward over local tokens (B, T). With targets, returns this rank's summed loss over
 * non-ignored targets
 * and, when want_grad, leaves d(loss * dscale)/dlogits in m->logits for gpt_backward. */
double gpt_forward(struct gpt *m, const int32_t *tokens, const int32_t *targets, int B, int T,
                   float dscale, int want_grad);
/* Backward of the last gpt_forward(want_grad=1); accumulates into m->grad_mem. */
void gpt_backward(struct gpt *m);

/* Classifier head (n_cls > 0): logits of sequence b are W_cls n_final[b, last[b]], restricted
 * to the classes with allowed[b * n_cls + k] != 0 (others -inf), softmax cross-entropy against
 * label[b]. Writes pred[b] (argmax over the allowed classes, lowest id on ties) when pred is
 * not NULL; with want_grad, keeps d(loss * dscale) for gpt_backward_classify. Returns the summed
 * loss over the B sequences (label < 0: not counted). */
double gpt_classify(struct gpt *m, const int32_t *tokens, const int32_t *last, const int32_t *label,
                    const unsigned char *allowed, int B, int T, float dscale, int want_grad,
                    int32_t *pred);
void gpt_backward_classify(struct gpt *m);
void gpt_zero_grad(struct gpt *m);

/* Head-usage statistics: moh_usage[l*H + h] / moh_usage_tok is the fraction of tokens that
 * used head h of layer l since the last reset (training forwards only). */
void gpt_moh_usage_reset(struct gpt *m);

/* The parameters as the optimizer and checkpoints see them. */
struct param_set gpt_param_set(struct gpt *m);
/* Look up a parameter by name; NULL if absent. */
const struct param *gpt_find_param(const struct gpt *m, const char *name);
/* Model FLOPs per token for forward+backward (6N + attention), for MFU. */
double gpt_flops_per_token(const struct gpt_config *gc, int T);

/* KV cache for incremental decoding of B sequences at once, each at its own position.
 * Dense layers keep every position; S2 layers keep, per (sequence, kv head), only the
 * positions its pattern can still use (the local window of the current block and the strided
 * far blocks), evicting the rest as decoding moves into a new block. */
struct gpt_kv {
    int B, max_T, L, Hkv;
    int *n;       /* (B) positions filled per sequence */
    float *k, *v; /* dense layers: (L, B, max_T, Hkv*hd); the rows of S2 layers are unused */
    /* S2 layers: slot (l*B + b)*Hkv + g holds s2n rows (of hd) at positions s2pos */
    float **s2k, **s2v;
    int32_t **s2pos;
    int *s2n, *s2cap;
    size_t floats, floats_dense; /* K+V floats allocated vs. a dense cache of every layer */
    size_t rows_peak;            /* most K/V rows (per head) held at once, summed over heads */
    float *moh_f, *gate;         /* MoH: router state of one token, its gates (H) */
    int32_t *moh_i;
    float *x, *buf, *tmp, *qkv, *att, *h, *a, *rstd, *scratch;
    float *logits;    /* (B, V): row b holds sequence b's next-token logits after a step */
    float *xa, *qkva; /* DARE: the attention-path embedding and Q/K of the first layer */
    int *rows;
    int32_t *tok;
    struct gpt_memory_kv *mem; /* Titans decoders per (memory layer, sequence), or NULL */
    /* persistent tokens of MAG layers (gpt_memory_prefix_rows): pre rows lead every dense
     * cache slot (and every S2 slot, at negative positions); pq: their projections */
    int pre;
    float *pq;
    /* PASTA steering (inference only): with 0 < steer_alpha < 1, attention to the cached
     * positions p of sequence b with user[b * max_T + p] == 0 is scaled by steer_alpha and
     * renormalised, on every layer and head. steer_alpha = 1 (the default) is plain attention.
     * The caller marks the user-content positions before feeding them. */
    float steer_alpha;
    uint8_t *user;      /* (B, max_T), zeroed by gpt_kv_init and gpt_kv_reset */
    uint8_t *user_rows; /* (max_T) scratch: the flags of an S2 cache's kept rows */
};
void gpt_kv_init(struct gpt_kv *kv, const struct gpt *m, int B, int max_T);
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
