/* model/model_cfg.c -- the `model` section: its keys (defaults, ranges, docs), the values derived
 * from it, and the cross-field rules that protect the model's code: head shapes (RoPE pairs,
 * grouped K/V), head and context sharding of the attention and MLP, the layer kinds' options
 * (MoH routing, S2 patterns, Titans memory and MAC segments), the embedding kinds and the rec
 * family's grid and GSU (see model_cfg.h). Other sections' values are read by key path. */
#include "model_cfg.h"

#include "../core/check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const rope_scaling_vals[] = {"none", "llama3", NULL};
static const char *const mlp_vals[] = {"swiglu", "gelu", NULL};
static const char *const family_vals[] = {"gpt", "rec", NULL};
static const char *const emb_vals[] = {"twin", "dare", "twin_proj", NULL};
static const char *const attn_vals[] = {"mha", "moh", NULL};
static const char *const router_vals[] = {"learned", "qnorm", NULL};
static const char *const sparsity_vals[] = {"none", "s2", NULL};
static const char *const kappa_vals[] = {"mean", "sum", NULL};

#define CFG_S   struct cfg_model
#define CFG_SEC model
static const struct cfg_key keys[] = {
    CFG_INT(d_model, 128, 8, 65536, "model width C"),
    CFG_INT(n_layers, 4, 1, 1024, "transformer blocks L"),
    CFG_INT(n_heads, 4, 1, 1024, "query heads H"),
    CFG_INT(n_kv_heads, 0, 0, 1024, "key/value heads (grouped-query attention); 0 = n_heads"),
    CFG_INT(vocab, 0, 0, 16777216, "vocabulary size; 0 = take it from the tokenizer"),
    CFG_INT(d_ff, 0, 0, 1048576,
            "MLP hidden width; 0 = derived: 4C for gelu, 8C/3 rounded up to a multiple of 64 for "
            "swiglu"),
    CFG_INT(max_seq, 1024, 2, 1048576, "longest sequence the model supports (RoPE table size)"),
    CFG_ENUM(mlp, "swiglu", mlp_vals, "MLP type"),
    CFG_BOOL(tied_embeddings, 1, "the LM head shares the token embedding matrix"),
    CFG_DBL(rope_theta, 10000.0, 0.0, 1, INFINITY, 1, "RoPE base frequency"),
    CFG_ENUM(rope_scaling.kind, "none", rope_scaling_vals,
             "RoPE frequency scaling: none, or llama3 (LLaMA 3.1's: long wavelengths divided by "
             "factor, short ones kept, the band between interpolated)"),
    CFG_DBL(rope_scaling.factor, 8.0, 1.0, 0, 1e6, 0, "llama3: divisor of the long wavelengths"),
    CFG_DBL(rope_scaling.low_freq_factor, 1.0, 0.0, 1, 1e6, 0,
            "llama3: wavelengths above original_max_seq / low_freq_factor are scaled"),
    CFG_DBL(rope_scaling.high_freq_factor, 4.0, 0.0, 1, 1e6, 0,
            "llama3: wavelengths below original_max_seq / high_freq_factor are kept"),
    CFG_INT(rope_scaling.original_max_seq, 8192, 1, 1 << 24,
            "llama3: the context length the model was pretrained with"),
    CFG_DBL(norm_eps, 1e-5, 0.0, 1, 1.0, 1, "epsilon of the normalisation layers"),
    CFG_DBL(init_std, 0.02, 0.0, 1, 1.0, 0,
            "std of the weight init; output projections are scaled by 1/sqrt(2L)"),
    CFG_ENUM(attention.kind, "mha", attn_vals,
             "attention of every layer: mha (multi-head) or moh (Mixture-of-Head)"),
    CFG_LIST(attention.layers,
             "per-layer attention kinds (mha|moh), repeated when shorter than n_layers "
             "([mha, moh] alternates); [] = attention.kind everywhere"),
    CFG_INT(moh.shared_heads, 2, 0, 1024, "MoH: heads 0..h_s-1 are shared (always active)"),
    CFG_INT(moh.top_k, 2, 0, 1024,
            "MoH: routed heads each token selects among the other n_heads - shared_heads; 0 = all "
            "heads shared, softly re-weighted (needs shared_heads = n_heads)"),
    CFG_ENUM(moh.router, "learned", router_vals,
             "MoH router: learned (W_r, W_s, W_h, the reference code's two-stage gates) or qnorm "
             "(parameter-free query-norm router of the LLaMA3 variant, binary gates, "
             "straight-through gradient)"),
    CFG_BOOL(moh.paper_literal, 0,
             "MoH: the paper's unscaled gates (no top-k renormalisation, no k, h_s, 2 factors)"),
    CFG_DBL(moh.balance_coef, 0.01, 0.0, 0, 1e6, 0,
            "MoH: weight of the load-balance loss E*sum_i P_i f_i, averaged over MoH layers"),
    CFG_ENUM(sparsity.kind, "none", sparsity_vals,
             "none: dense causal attention; s2: per-head local window + strided far blocks"),
    CFG_INT(sparsity.block, 64, 16, 4096, "S2 block size in tokens (a power of two)"),
    CFG_INT(sparsity.local_blocks, 16, 1, 1000000,
            "S2 local window in blocks, the current block included"),
    CFG_INT(sparsity.vert_stride, 8, 1, 1000000,
            "S2 vertical stride V: a head sees every V-th far block; 1 = dense"),
    CFG_INT(sparsity.head_offset, 0, 0, 1000000, "S2 head sliding offset o"),
    CFG_INT(sparsity.dense_heads, 0, 0, 1024, "S2: the last this many key/value heads are dense"),
    CFG_LIST(sparsity.dense_layers, "S2: indices of layers that stay dense"),
    CFG_INT(
        sparsity.dense_every, 0, 0, 1024,
        "S2: layer l (0-based) is dense when (l+1) % dense_every == 0 (Phi-3-small: 2); 0 = off"),
    CFG_LIST(memory.layers,
             "Titans memory per layer (none|mal|mag|mac|memory), repeated when shorter than "
             "n_layers: mal = memory sublayer before attention, mag = attention output gated by "
             "sigmoid(memory), mac = memory as context (segment attention over persistent tokens, "
             "retrieved memory and the segment), memory = the memory replaces attention; [] = none "
             "(docs/titans.md)"),
    CFG_INT(memory.heads, 2, 1, 1024, "memory heads H_m"),
    CFG_INT(memory.head_dim, 0, 0, 4096, "memory head width d_m; 0 = d_model / heads"),
    CFG_INT(memory.depth, 2, 1, 8, "memory MLP depth L_M; 1 = linear matrix memory"),
    CFG_INT(memory.hidden, 0, 0, 65536, "hidden width of the memory MLP; 0 = 4 head_dim"),
    CFG_INT(memory.chunk, 4, 1, 65536,
            "store chunk c: momentum/decay gates and weight snapshots per c tokens"),
    CFG_INT(memory.ttt_batch, 0, 0, 1048576,
            "TTT batch b (a multiple of chunk): gradients at the batch's starting weights; "
            "0 = one batch per sequence (model.max_seq rounded up to chunk), or, when any layer "
            "is mac, one batch per segment for every memory layer (model.memory.segment)"),
    CFG_INT(memory.conv, 0, 0, 64, "width of the depthwise causal conv on q/k/v; 0 = none"),
    CFG_INT(
        memory.segment, 64, 1, 1048576,
        "mac: segment length C (attention is causal inside a segment; a multiple of ttt_batch)"),
    CFG_INT(memory.persistent, 4, 0, 4096,
            "persistent tokens N_p of mac and mag layers, seen by every query of their attention"),
    CFG_DBL(memory.max_lr, 0.1, 0.0, 1, 1e3, 0, "inner learning rate theta = max_lr * sigmoid"),
    CFG_DBL(memory.max_grad_norm, 0.0, 0.0, 0, 1e9, 0,
            "clamp of each surprise tensor's norm (per chunk, per weight matrix): norms at or "
            "below pass unchanged, larger ones are scaled down to it; 0 = off"),
    CFG_ENUM(memory.kappa, "mean", kappa_vals,
             "inner loss: mean (1/d_m, the reference) or sum (the paper) of squared errors"),
    CFG_BOOL(memory.theta_per_chunk, 0, "theta from the chunk mean instead of per token"),
    CFG_BOOL(memory.gate, 1, "retrieve gate sigmoid(x w_g) per memory head"),
    CFG_BOOL(memory.recompute, 0,
             "keep only TTT-batch boundary states; the backward recomputes the rest"),
    CFG_ENUM(family, "gpt", family_vals,
             "gpt: the decoder-only language model; rec: the DARE/TWIN recommendation model "
             "(docs/rec.md)"),
    CFG_ENUM(embedding, "twin", emb_vals,
             "twin: one table set for attention and representation; dare: separate attention and "
             "representation tables; twin_proj (rec only): shared tables with linear projections")};

/* ---- derived values ----------------------------------------------------------------------------
 */

int cfg_layer_moh(const struct cfg_model *m, int l) {
    const struct cfg_list *ls = &m->attention.layers;
    const char *k = ls->n ? ls->item[l % ls->n] : m->attention.kind;
    return !strcmp(k, "moh");
}

int cfg_layer_memory(const struct cfg_model *m, int l) {
    const struct cfg_list *ls = &m->memory.layers;
    if (!ls->n)
        return 0;
    const char *k = ls->item[l % ls->n];
    return !strcmp(k, "mal")      ? 1
           : !strcmp(k, "mag")    ? 2
           : !strcmp(k, "memory") ? 3
           : !strcmp(k, "mac")    ? 4
                                  : 0;
}

int cfg_layer_s2(const struct cfg_model *m, int l) {
    if (strcmp(m->sparsity.kind, "s2"))
        return 0;
    if (m->sparsity.dense_every && (l + 1) % m->sparsity.dense_every == 0)
        return 0;
    for (int i = 0; i < m->sparsity.dense_layers.n; i++)
        if (atoi(m->sparsity.dense_layers.item[i]) == l)
            return 0;
    return 1;
}

int cfg_kv_heads(const struct cfg_model *m) {
    return m->n_kv_heads ? m->n_kv_heads : m->n_heads;
}

int cfg_d_ff(const struct cfg_model *m) {
    if (m->d_ff)
        return m->d_ff;
    if (!strcmp(m->mlp, "gelu"))
        return 4 * m->d_model;
    return ((8 * m->d_model / 3 + 63) / 64) * 64;
}

/* ---- rules
 * ----------------------------------------------------------------------------------------- */

/* model.memory rules of memory-as-context layers. */
static int validate_mac(const struct cfg_check *chk, const struct cfg_model *m, char *err) {
    const struct cfg_memory *me = &m->memory;
    char a[200];
    int any = 0;
    for (int l = 0; l < m->n_layers; l++) {
        if (cfg_layer_memory(m, l) != 4)
            continue;
        any = 1;
        if (cfg_layer_moh(m, l)) {
            snprintf(a, sizeof(a),
                     "layer %d is mac (its attention is the segment attention) and moh; give it "
                     "mha in model.attention.layers",
                     l);
            return cfg_rule_error(chk, "model.memory.layers", "model.attention.layers", a, a, err);
        }
    }
    if (!any)
        return 0;
    if (me->ttt_batch && me->segment % me->ttt_batch) {
        snprintf(a, sizeof(a), "mac segment %d is not a multiple of ttt_batch %d", me->segment,
                 me->ttt_batch);
        return cfg_rule_error(chk, "model.memory.segment", "model.memory.ttt_batch", a, a, err);
    }
    if (me->segment % me->chunk || me->segment < me->conv - 1) {
        snprintf(a, sizeof(a), "mac segment %d must be a multiple of chunk %d and >= conv - 1 (%d)",
                 me->segment, me->chunk, me->conv - 1);
        return cfg_rule_error(chk, "model.memory.segment", "model.memory.chunk", a, a, err);
    }
    if (me->persistent + me->segment > m->max_seq) {
        snprintf(a, sizeof(a), "mac persistent %d + segment %d exceed model.max_seq %d",
                 me->persistent, me->segment, m->max_seq);
        return cfg_rule_error(chk, "model.memory.segment", "model.max_seq", a, a, err);
    }
    const int ctx = cfg_int(chk, "dist.context"), zz = cfg_int(chk, "train.seq_len") / (2 * ctx);
    if (ctx > 1 && zz % me->segment) {
        snprintf(a, sizeof(a),
                 "mac layers under dist.context %d need zig-zag chunks of %d tokens to be a "
                 "multiple of model.memory.segment %d",
                 ctx, zz, me->segment);
        return cfg_rule_error(chk, "dist.context", "model.memory.segment", a, a, err);
    }
    return 0;
}

/* model.memory rules (Titans layers). */
static int validate_memory(const struct cfg_check *chk, const struct cfg_model *m, char *err) {
    const struct cfg_memory *me = &m->memory;
    char a[160];
    int any = 0;
    for (int i = 0; i < me->layers.n; i++) {
        const char *it = me->layers.item[i];
        if (strcmp(it, "none") && strcmp(it, "mal") && strcmp(it, "mag") && strcmp(it, "memory") &&
            strcmp(it, "mac")) {
            snprintf(a, sizeof(a), "item %d is '%.40s'; expected none, mal, mag, mac or memory",
                     i + 1, it);
            return cfg_rule_error(chk, "model.memory.layers", "model.memory.layers", a, a, err);
        }
    }
    for (int l = 0; l < m->n_layers; l++)
        any |= cfg_layer_memory(m, l) != 0;
    if (!any)
        return 0;
    if (strcmp(m->family, "gpt")) {
        snprintf(a, sizeof(a), "memory layers exist only for model.family gpt");
        return cfg_rule_error(chk, "model.memory.layers", "model.family", a, a, err);
    }
    const int ctx = cfg_int(chk, "dist.context"), zz = cfg_int(chk, "train.seq_len") / (2 * ctx);
    if (ctx > 1 && (me->ttt_batch == 0 || zz % me->ttt_batch || zz < me->conv - 1)) {
        snprintf(a, sizeof(a),
                 "memory layers under dist.context %d need zig-zag chunks of %d tokens to be a "
                 "multiple of a nonzero model.memory.ttt_batch (and >= conv - 1)",
                 ctx, zz);
        return cfg_rule_error(chk, "dist.context", "model.memory.ttt_batch", a, a, err);
    }
    if (me->ttt_batch % me->chunk) {
        snprintf(a, sizeof(a), "ttt_batch %d is not a multiple of chunk %d", me->ttt_batch,
                 me->chunk);
        return cfg_rule_error(chk, "model.memory.ttt_batch", "model.memory.chunk", a, a, err);
    }
    if (!me->head_dim && m->d_model % me->heads) {
        snprintf(a, sizeof(a), "d_model %d is not divisible by %d memory heads (set head_dim)",
                 m->d_model, me->heads);
        return cfg_rule_error(chk, "model.memory.heads", "model.memory.head_dim", a, a, err);
    }
    if (!strcmp(m->embedding, "dare") && cfg_layer_memory(m, 0) >= 3) {
        snprintf(a, sizeof(a), "layer 0 is %s, but dare feeds its attention",
                 cfg_layer_memory(m, 0) == 3 ? "memory-only" : "mac");
        return cfg_rule_error(chk, "model.memory.layers", "model.embedding", a, a, err);
    }
    return validate_mac(chk, m, err);
}

static int validate(const struct cfg_check *chk, char *err) {
    const struct cfg_model *m = cfg_section_of(chk, "model");
    const int heads = cfg_int(chk, "dist.heads"), ctx = cfg_int(chk, "dist.context");
    const int seq_len = cfg_int(chk, "train.seq_len");
    char a[128];

    if (m->d_model % m->n_heads) {
        snprintf(a, sizeof(a), "d_model %d is not divisible by n_heads %d", m->d_model, m->n_heads);
        return cfg_rule_error(chk, "model.n_heads", "model.d_model", a, a, err);
    }
    if (!strcmp(m->rope_scaling.kind, "llama3") &&
        !(m->rope_scaling.high_freq_factor > m->rope_scaling.low_freq_factor)) {
        snprintf(a, sizeof(a), "high_freq_factor %g is not above low_freq_factor %g",
                 m->rope_scaling.high_freq_factor, m->rope_scaling.low_freq_factor);
        return cfg_rule_error(chk, "model.rope_scaling.high_freq_factor",
                              "model.rope_scaling.low_freq_factor", a, a, err);
    }
    if (m->n_kv_heads > m->n_heads) {
        snprintf(a, sizeof(a), "n_kv_heads %d is larger than n_heads %d", m->n_kv_heads,
                 m->n_heads);
        return cfg_rule_error(chk, "model.n_kv_heads", "model.n_heads", a, a, err);
    }
    if (m->n_kv_heads && m->n_heads % m->n_kv_heads) {
        snprintf(a, sizeof(a), "n_heads %d is not divisible by n_kv_heads %d", m->n_heads,
                 m->n_kv_heads);
        return cfg_rule_error(chk, "model.n_kv_heads", "model.n_heads", a, a, err);
    }
    if ((m->d_model / m->n_heads) % 2) {
        snprintf(a, sizeof(a), "head dim d_model/n_heads = %d/%d = %d is odd; RoPE needs it even",
                 m->d_model, m->n_heads, m->d_model / m->n_heads);
        return cfg_rule_error(chk, "model.n_heads", "model.d_model", a, a, err);
    }
    /* head parallelism splits the heads and the MLP columns */
    const int kv = cfg_kv_heads(m), ff = cfg_d_ff(m);
    if (m->n_heads % heads || kv % heads) {
        snprintf(a, sizeof(a), "%d head-parallel ranks do not divide n_heads %d and n_kv_heads %d",
                 heads, m->n_heads, kv);
        return cfg_rule_error(chk, "dist.heads", "model.n_heads", a, a, err);
    }
    if (ff % heads) {
        snprintf(a, sizeof(a), "%d head-parallel ranks do not divide the MLP width %d", heads, ff);
        return cfg_rule_error(chk, "dist.heads", "model.d_ff", a, a, err);
    }
    int any_moh = 0, any_s2 = 0;
    for (int i = 0; i < m->attention.layers.n; i++) {
        const char *it = m->attention.layers.item[i];
        if (strcmp(it, "mha") && strcmp(it, "moh")) {
            snprintf(a, sizeof(a), "item %d is '%.40s'; expected mha or moh", i + 1, it);
            return cfg_rule_error(chk, "model.attention.layers", "model.attention.layers", a, a,
                                  err);
        }
    }
    for (int l = 0; l < m->n_layers; l++) {
        any_moh |= cfg_layer_moh(m, l);
        any_s2 |= cfg_layer_s2(m, l);
    }
    const struct cfg_moh *h = &m->moh;
    if (any_moh && h->shared_heads + h->top_k > m->n_heads) {
        snprintf(a, sizeof(a), "shared_heads %d + top_k %d exceed n_heads %d", h->shared_heads,
                 h->top_k, m->n_heads);
        return cfg_rule_error(chk, "model.moh.top_k", "model.moh.shared_heads", a, a, err);
    }
    if (any_moh && h->top_k == 0 && h->shared_heads != m->n_heads) {
        snprintf(a, sizeof(a), "top_k 0 (all heads shared) needs shared_heads = n_heads %d, not %d",
                 m->n_heads, h->shared_heads);
        return cfg_rule_error(chk, "model.moh.shared_heads", "model.moh.top_k", a, a, err);
    }
    if (any_moh && !strcmp(h->router, "qnorm") && (h->top_k < 1 || h->paper_literal)) {
        snprintf(a, sizeof(a), "the qnorm router needs top_k >= 1 and paper_literal false");
        return cfg_rule_error(chk, "model.moh.router", "model.moh.top_k", a, a, err);
    }
    const struct cfg_sparsity *sp = &m->sparsity;
    if (sp->block & (sp->block - 1)) {
        snprintf(a, sizeof(a), "%d is not a power of two", sp->block);
        return cfg_rule_error(chk, "model.sparsity.block", "model.sparsity.block", a, a, err);
    }
    if (sp->dense_heads > kv) {
        snprintf(a, sizeof(a), "%d is more than the %d key/value heads", sp->dense_heads, kv);
        return cfg_rule_error(chk, "model.sparsity.dense_heads", "model.n_heads", a, a, err);
    }
    for (int i = 0; i < sp->dense_layers.n; i++) {
        const char *it = sp->dense_layers.item[i];
        char *end;
        long v = strtol(it, &end, 10);
        if (!*it || *end || v < 0 || v >= m->n_layers) {
            snprintf(a, sizeof(a), "item %d is '%.40s'; expected a layer index 0..%d", i + 1, it,
                     m->n_layers - 1);
            return cfg_rule_error(chk, "model.sparsity.dense_layers", "model.n_layers", a, a, err);
        }
    }
    if (any_s2 && ctx > 1 && (seq_len / (2 * ctx)) % sp->block) {
        snprintf(a, sizeof(a), "zig-zag chunks of %d tokens are not a multiple of the S2 block %d",
                 seq_len / (2 * ctx), sp->block);
        return cfg_rule_error(chk, "dist.context", "model.sparsity.block", a, a, err);
    }
    if (!strcmp(cfg_string(chk, "dist.context_mode"), "ulysses") &&
        ((m->n_heads / heads) % ctx || (kv / heads) % ctx)) {
        snprintf(a, sizeof(a),
                 "ulysses needs the %d query and %d key/value heads of each head-parallel rank "
                 "to divide by %d context ranks",
                 m->n_heads / heads, kv / heads, ctx);
        return cfg_rule_error(chk, "dist.context", "dist.context_mode", a, a, err);
    }
    if (!strcmp(m->family, "rec") && (ctx > 1 || heads > 1)) {
        snprintf(a, sizeof(a),
                 "model.family rec is data-parallel with sharded tables; it needs "
                 "dist.context 1 and dist.heads 1");
        return cfg_rule_error(chk, "dist.context", "model.family", a, a, err);
    }
    if (!strcmp(m->family, "gpt") && !strcmp(m->embedding, "twin_proj")) {
        snprintf(a, sizeof(a), "twin_proj exists only for model.family rec");
        return cfg_rule_error(chk, "model.embedding", "model.family", a, a, err);
    }
    if (validate_memory(chk, m, err))
        return HW_ECONFIG;
    if (cfg_int(chk, "rec.top_k") > cfg_int(chk, "rec.max_len")) {
        snprintf(a, sizeof(a), "rec.top_k %d exceeds rec.max_len %d", cfg_int(chk, "rec.top_k"),
                 cfg_int(chk, "rec.max_len"));
        return cfg_rule_error(chk, "rec.top_k", "rec.max_len", a, a, err);
    }
    return 0;
}

static const char *const rules_doc[] = {
    "`model.d_model` is divisible by `model.n_heads`.",
    "`model.rope_scaling.high_freq_factor` > `model.rope_scaling.low_freq_factor` (llama3).",
    "`model.n_kv_heads`, when nonzero, is at most `model.n_heads` and divides it.",
    "The head dimension `model.d_model / model.n_heads` is even (RoPE rotates pairs).",
    "`model.n_heads`, the key/value heads and the MLP width are divisible by `dist.heads`.",
    "`model.attention.layers` items are `mha` or `moh`.",
    "MoH layers: `model.moh.shared_heads + model.moh.top_k` <= `model.n_heads`; `top_k: 0` needs "
    "`shared_heads` = `n_heads`; the qnorm router needs `top_k` >= 1 and is not paper_literal.",
    "`model.sparsity.block` is a power of two; `model.sparsity.dense_heads` <= the key/value "
    "heads; `model.sparsity.dense_layers` are layer indices.",
    "S2 with `dist.context` > 1: the zig-zag chunk `train.seq_len / (2 * dist.context)` is a "
    "multiple of `model.sparsity.block`.",
    "With `dist.context_mode: ulysses`, the heads of each head-parallel rank (query and "
    "key/value) are divisible by `dist.context`.",
    "`model.family: rec` needs `dist.context: 1` and `dist.heads: 1`.",
    "`model.embedding: twin_proj` needs `model.family: rec`.",
    "`model.memory.layers` items are none, mal, mag, mac or memory; with memory layers: "
    "`model.family: gpt`, `model.memory.ttt_batch` a multiple of `model.memory.chunk`; with "
    "`dist.context` > 1 the zig-zag chunk `train.seq_len / (2 * dist.context)` is a multiple of a "
    "nonzero `model.memory.ttt_batch` and at least `model.memory.conv - 1`, "
    "`model.memory.head_dim` set or `d_model` divisible by "
    "`model.memory.heads`, and with `model.embedding: dare` layer 0 is not `memory` or `mac`.",
    "`mac` layers: not `moh`; `model.memory.segment` a multiple of `chunk` and of a nonzero "
    "`ttt_batch` (0: the TTT batch is the segment), at least `conv - 1`, and "
    "`persistent + segment <= model.max_seq`; with `dist.context` > 1 the zig-zag chunk is a "
    "multiple of `segment`.",
    "`rec.top_k` <= `rec.max_len`.",
};

const struct cfg_section cfg_section_model = {
    .name = "model",
    .keys = keys,
    .n_keys = (int)(sizeof(keys) / sizeof(keys[0])),
    .validate = validate,
    .rules_doc = rules_doc,
    .n_rules = (int)(sizeof(rules_doc) / sizeof(rules_doc[0])),
};
