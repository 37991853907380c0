/* model/gpt.c -- the transformer: parameter table, carving, forward, backward, decoding
 * (see gpt.h). */
#include "gpt.h"

#include "../core/check.h"
#include "../core/rng.h"
#include "../ops/embed.h"
#include "../ops/rope.h"
#include "../ops/xent.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void gpt_config_from_cfg(struct gpt_config *gc, const struct cfg_model *m, int vocab) {
    memset(gc, 0, sizeof(*gc));
    gc->C = m->d_model;
    gc->L = m->n_layers;
    gc->H = m->n_heads;
    gc->Hkv = cfg_kv_heads(m);
    gc->hd = m->d_model / m->n_heads;
    gc->F = cfg_d_ff(m);
    gc->V = vocab;
    gc->max_T = m->max_seq;
    gc->mlp = strcmp(m->mlp, "gelu") == 0 ? GPT_MLP_GELU : GPT_MLP_SWIGLU;
    gc->tied = m->tied_embeddings;
    gc->rope_theta = (float)m->rope_theta;
    gc->eps = (float)m->norm_eps;
    gc->init_std = (float)m->init_std;
}

void gpt_config_signature(const struct gpt_config *gc, char *out, size_t n) {
    int k = snprintf(out, n,
                     "d_model=%d n_layers=%d n_heads=%d n_kv_heads=%d d_ff=%d vocab=%d mlp=%s "
                     "tied=%d",
                     gc->C, gc->L, gc->H, gc->Hkv, gc->F, gc->V,
                     gc->mlp == GPT_MLP_GELU ? "gelu" : "swiglu", gc->tied);
    if (gc->n_cls > 0 && k > 0 && (size_t)k < n)
        snprintf(out + k, n - (size_t)k, " classes=%d", gc->n_cls);
}

/* local widths (this rank's heads and MLP columns) */
static int fin_width(const struct gpt *m) {
    return m->c.mlp == GPT_MLP_SWIGLU ? 2 * m->Fl : m->Fl;
}

static int qkv_width(const struct gpt *m) {
    return (m->Hl + 2 * m->Hkvl) * m->c.hd;
}

/* Add a parameter of global shape (r, cols) (cols 0: 1-D), split over the head ranks along
 * shard_dim (-1: replicated). */
static void add_param(struct gpt *m, int *cap, const char *name, int64_t r, int64_t cols,
                      int shard_dim, int decay, float std) {
    if (m->n_params == *cap) {
        *cap = *cap ? 2 * *cap : 64;
        m->params = HW_REALLOC(m->params, sizeof(*m->params) * (size_t)*cap);
    }
    struct gpt_param *p = &m->params[m->n_params++];
    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "%s", name);
    p->ndim = cols ? 2 : 1;
    p->gshape[0] = p->shape[0] = r;
    p->gshape[1] = p->shape[1] = cols;
    p->shard_dim = m->hp > 1 ? shard_dim : -1;
    if (p->shard_dim >= 0) {
        HW_ASSERT(p->gshape[p->shard_dim] % m->hp == 0);
        p->shape[p->shard_dim] = p->gshape[p->shard_dim] / m->hp;
        p->goff[p->shard_dim] = p->shape[p->shard_dim] * m->hp_rank;
    }
    p->numel = (size_t)p->shape[0] * (size_t)(cols ? p->shape[1] : 1);
    p->offset = m->num_params;
    p->decay = decay;
    p->init_std = std;
    m->num_params += p->numel;
}

/* The parameter table. Tensors that one GEMM consumes together (wq/wk/wv, w_gate/w_up) are
 * adjacent, so the stacked matrix is a plain view; under head parallelism each holds this
 * rank's rows, so the stack is [local q heads | local k heads | local v heads]. */
static void build_table(struct gpt *m) {
    const struct gpt_config *c = &m->c;
    int cap = 0;
    char nm[64];
    float std = c->init_std, std_out = c->init_std / sqrtf(2.0f * (float)c->L);
    add_param(m, &cap, "tok_emb.weight", c->V, c->C, -1, 1, std);
    for (int l = 0; l < c->L; l++) {
#define P(suffix, r, cols, shard, decay, s)                                                        \
    do {                                                                                           \
        snprintf(nm, sizeof(nm), "blocks.%d.%s", l, suffix);                                       \
        add_param(m, &cap, nm, r, cols, shard, decay, s);                                          \
    } while (0)
        P("attn_norm.weight", c->C, 0, -1, 0, 0.0f);
        P("attn.wq", (int64_t)c->H * c->hd, c->C, 0, 1, std);
        P("attn.wk", (int64_t)c->Hkv * c->hd, c->C, 0, 1, std);
        P("attn.wv", (int64_t)c->Hkv * c->hd, c->C, 0, 1, std);
        P("attn.wo", c->C, (int64_t)c->H * c->hd, 1, 1, std_out);
        P("mlp_norm.weight", c->C, 0, -1, 0, 0.0f);
        if (c->mlp == GPT_MLP_SWIGLU) {
            P("mlp.w_gate", c->F, c->C, 0, 1, std);
            P("mlp.w_up", c->F, c->C, 0, 1, std);
        } else {
            P("mlp.w_up", c->F, c->C, 0, 1, std);
        }
        P("mlp.w_down", c->C, c->F, 1, 1, std_out);
#undef P
    }
    add_param(m, &cap, "final_norm.weight", c->C, 0, -1, 0, 0.0f);
    if (!c->tied)
        add_param(m, &cap, "lm_head.weight", c->V, c->C, -1, 1, std);
    if (c->n_cls > 0)
        add_param(m, &cap, "cls_head.weight", c->n_cls, c->C, -1, 1, std);
}

static void build_blocks(struct gpt *m);

static void carve(struct gpt *m, struct gpt_weights *w, float *base) {
    const struct gpt_config *c = &m->c;
    int i = 0;
    w->wte = base + m->params[i++].offset;
    for (int l = 0; l < c->L; l++) {
        struct gpt_layer *y = &w->layers[l];
        y->attn_norm = base + m->params[i++].offset;
        y->wqkv = base + m->params[i].offset;
        i += 3;
        y->wo = base + m->params[i++].offset;
        y->mlp_norm = base + m->params[i++].offset;
        y->w_in = base + m->params[i].offset;
        i += c->mlp == GPT_MLP_SWIGLU ? 2 : 1;
        y->w_out = base + m->params[i++].offset;
    }
    w->final_norm = base + m->params[i++].offset;
    w->lm_head = c->tied ? w->wte : base + m->params[i++].offset;
    w->cls_head = c->n_cls > 0 ? base + m->params[i++].offset : NULL;
    HW_ASSERT(i == m->n_params);
}

static float *alloc_floats(size_t n) {
    float *p = HW_CALLOC(n, sizeof(float));
    return p;
}

void gpt_init(struct gpt *m, const struct gpt_config *gc, const struct ops *ops, struct dist *d) {
    memset(m, 0, sizeof(*m));
    m->c = *gc;
    m->ops = ops;
    m->d = d && d->world > 1 ? d : NULL;
    m->hp = m->d ? d->hp : 1;
    m->hp_rank = m->d ? d->hp_rank : 0;
    m->cp = m->d ? d->cp : 1;
    m->cp_rank = m->d ? d->cp_rank : 0;
    HW_ASSERT(gc->C == gc->H * gc->hd && gc->H % gc->Hkv == 0 && gc->hd % 2 == 0 && gc->V > 0);
    HW_ASSERT(gc->H % m->hp == 0 && gc->Hkv % m->hp == 0 && gc->F % m->hp == 0);
    m->Hl = gc->H / m->hp;
    m->Hkvl = gc->Hkv / m->hp;
    m->Fl = gc->F / m->hp;
    build_table(m);
    m->param_mem = alloc_floats(m->num_params);
    m->grad_mem = alloc_floats(m->num_params);
    m->w.layers = HW_CALLOC((size_t)gc->L, sizeof(struct gpt_layer));
    m->g.layers = HW_CALLOC((size_t)gc->L, sizeof(struct gpt_layer));
    carve(m, &m->w, m->param_mem);
    carve(m, &m->g, m->grad_mem);
    build_blocks(m);
    m->rope_cos = alloc_floats((size_t)gc->max_T * gc->hd / 2);
    m->rope_sin = alloc_floats((size_t)gc->max_T * gc->hd / 2);
    rope_tables(m->rope_cos, m->rope_sin, gc->max_T, gc->hd, gc->rope_theta);
}

void gpt_init_weights(struct gpt *m, uint64_t seed) {
    for (int i = 0; i < m->n_params; i++) {
        const struct gpt_param *p = &m->params[i];
        float *x = m->param_mem + p->offset;
        uint64_t key = rng_hash2(seed, rng_hash_str(p->name));
        /* element (r, j) of the local block is element (r + goff0, j + goff1) of the global
         * tensor, whose counter is its global row-major index */
        const int64_t rows = p->shape[0], cols = p->ndim == 2 ? p->shape[1] : 1;
        const int64_t gcols = p->ndim == 2 ? p->gshape[1] : 1;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < cols; j++) {
                uint64_t g = (uint64_t)((r + p->goff[0]) * gcols + j + p->goff[1]);
                x[r * cols + j] =
                    p->init_std == 0.0f ? 1.0f : (float)(p->init_std * rng_normal(key, g));
            }
    }
}

void gpt_alloc_acts(struct gpt *m, int B, int T) {
    const struct gpt_config *c = &m->c;
    HW_ASSERT(T * m->cp <= c->max_T);
    if (m->act_mem && m->B == B && m->T == T)
        return;
    free(m->act_mem);
    free(m->acts);
    free(m->tokens);
    free(m->pos);
    free(m->cp_ctx);
    free(m->cp_mem);
    m->pos = HW_MALLOC(sizeof(int32_t) * (size_t)T);
    if (m->cp > 1)
        cp_positions(m->pos, T, m->cp, m->cp_rank);
    else
        for (int t = 0; t < T; t++)
            m->pos[t] = t;
    m->cp_ctx = HW_CALLOC((size_t)c->L, sizeof(*m->cp_ctx));
    m->cp_mem = NULL;
    if (m->d && m->cp > 1) {
        struct attn_shape as = {
            .B = B, .T = T, .H = m->Hl, .Hkv = m->Hkvl, .hd = c->hd, .ld_qkv = qkv_width(m)};
        size_t per = cp_ctx_floats(m->d, &as);
        if (per) {
            m->cp_mem = alloc_floats(per * (size_t)c->L);
            for (int l = 0; l < c->L; l++)
                cp_ctx_carve(&m->cp_ctx[l], m->cp_mem + per * (size_t)l, m->d, &as);
        }
    }
    m->B = B;
    m->T = T;
    size_t N = (size_t)B * T, C = (size_t)c->C, D = (size_t)qkv_width(m);
    size_t HD = (size_t)m->Hl * c->hd, Fin = (size_t)fin_width(m), F = (size_t)m->Fl;
    size_t per_layer = 4 * N * C + 2 * N + N * D + N * HD + (size_t)B * m->Hl * T + N * Fin + N * F;
    size_t total = (size_t)c->L * per_layer + 2 * N * C + N + N * (size_t)c->V + N /* losses */
                   + 2 * N * C + N * D + N * HD + N * Fin + N * F;
    m->act_mem = alloc_floats(total);
    m->acts = HW_CALLOC((size_t)c->L, sizeof(*m->acts));
    m->tokens = HW_CALLOC(N, sizeof(int32_t));
    float *p = m->act_mem;
#define TAKE(dst, n)                                                                               \
    do {                                                                                           \
        dst = p;                                                                                   \
        p += (n);                                                                                  \
    } while (0)
    for (int l = 0; l < c->L; l++) {
        struct gpt_layer_acts *a = &m->acts[l];
        TAKE(a->x_in, N * C);
        TAKE(a->n1, N * C);
        TAKE(a->rstd1, N);
        TAKE(a->qkv, N * D);
        TAKE(a->att, N * HD);
        TAKE(a->lse, (size_t)B * m->Hl * T);
        TAKE(a->x_mid, N * C);
        TAKE(a->n2, N * C);
        TAKE(a->rstd2, N);
        TAKE(a->h, N * Fin);
        TAKE(a->a, N * F);
    }
    TAKE(m->x_final, N * C);
    TAKE(m->n_final, N * C);
    TAKE(m->rstd_final, N);
    TAKE(m->logits, N * (size_t)c->V);
    TAKE(m->losses, N);
    TAKE(m->dx, N * C);
    TAKE(m->dn, N * C);
    TAKE(m->dqkv, N * D);
    TAKE(m->datt, N * HD);
    TAKE(m->dh, N * Fin);
    TAKE(m->da, N * F);
#undef TAKE
    HW_ASSERT((size_t)(p - m->act_mem) == total);
}

void gpt_free(struct gpt *m) {
    free(m->params);
    free(m->param_mem);
    free(m->grad_mem);
    free(m->w.layers);
    free(m->g.layers);
    free(m->rope_cos);
    free(m->rope_sin);
    free(m->act_mem);
    free(m->acts);
    free(m->tokens);
    free(m->pos);
    free(m->cp_ctx);
    free(m->cp_mem);
    cp_work_free(&m->cp_work);
    free(m->block_off);
    free(m->block_len);
    free(m->cls_logits);
    free(m->cls_last);
    memset(m, 0, sizeof(*m));
}

void gpt_zero_grad(struct gpt *m) {
    memset(m->grad_mem, 0, sizeof(float) * m->num_params);
}

const struct gpt_param *gpt_find_param(const struct gpt *m, const char *name) {
    for (int i = 0; i < m->n_params; i++)
        if (strcmp(m->params[i].name, name) == 0)
            return &m->params[i];
    return NULL;
}

double gpt_flops_per_token(const struct gpt_config *c, int T) {
    /* 6 flops per weight per token (2 forward, 4 backward) over all matmul weights, plus
     * causal attention: QK^T and PV, 2*2*T*hd*H/2 forward per token, x3 with backward. */
    const double qkv = (double)(c->H + 2 * c->Hkv) * c->hd;
    const double fin = c->mlp == GPT_MLP_SWIGLU ? 2.0 * c->F : (double)c->F;
    double n = (double)c->L *
                   (qkv * c->C + (double)c->H * c->hd * c->C + fin * c->C + (double)c->F * c->C) +
               (double)c->V * c->C;
    double attn = (double)c->L * 3.0 * 2.0 * T * c->hd * c->H;
    return 6.0 * n + attn;
}

/* Sum a partial result over the head group (after a row-parallel matmul, or on the input
 * gradient of a column-parallel one). */
static void hp_sum(struct gpt *m, float *x, size_t n) {
    if (m->d && m->hp > 1)
        dist_allreduce_f32(m->d, DIST_HP, x, n, DIST_KIND_HP_REDUCE);
}

/* Let in-flight gradient buckets move: MPI progresses messages only inside MPI calls, so the
 * backward pokes it between kernels. */
static void progress(struct gpt *m) {
    if (m->d && m->grad_ready)
        dist_grad_progress(m->d);
}

static void grads_ready(struct gpt *m, int k) {
    if (m->grad_ready)
        m->grad_ready(m->grad_ready_ctx, k);
}

/* The gradient blocks in backward order (see gpt.h). */
static void build_blocks(struct gpt *m) {
    const struct gpt_config *c = &m->c;
    const size_t end = m->num_params, fn = (size_t)(m->w.final_norm - m->param_mem);
    m->n_blocks = c->L + 2;
    m->block_off = HW_MALLOC(sizeof(size_t) * (size_t)m->n_blocks);
    m->block_len = HW_MALLOC(sizeof(size_t) * (size_t)m->n_blocks);
    int k = 0;
    m->block_off[k] = fn;
    m->block_len[k++] = end - fn; /* final norm, untied head, classifier head */
    for (int l = c->L - 1; l >= 0; l--) {
        size_t lo = (size_t)(m->w.layers[l].attn_norm - m->param_mem);
        size_t hi = l + 1 < c->L ? (size_t)(m->w.layers[l + 1].attn_norm - m->param_mem) : fn;
        m->block_off[k] = lo;
        m->block_len[k++] = hi - lo;
    }
    m->block_off[k] = 0;
    m->block_len[k++] = (size_t)c->V * c->C;
}

static struct attn_shape local_attn_shape(const struct gpt *m, int B, int T) {
    struct attn_shape as = {.B = B,
                            .T = T,
                            .H = m->Hl,
                            .Hkv = m->Hkvl,
                            .hd = m->c.hd,
                            .ld_qkv = qkv_width(m),
                            .seg = m->seg};
    HW_ASSERT(!m->seg || m->cp == 1);
    return as;
}

/* Embedding, blocks and the final norm: leaves n_final (B*T, C). */
static void forward_trunk(struct gpt *m, const int32_t *tokens, int B, int T) {
    const struct gpt_config *c = &m->c;
    const struct ops *o = m->ops;
    gpt_alloc_acts(m, B, T);
    const int N = B * T, C = c->C, D = qkv_width(m), HD = m->Hl * c->hd;
    const int Fin = fin_width(m), F = m->Fl;
    const size_t NC = (size_t)N * C;
    struct attn_shape as = local_attn_shape(m, B, T);
    memcpy(m->tokens, tokens, sizeof(int32_t) * (size_t)N);
    o->embed_forward(m->acts[0].x_in, tokens, m->w.wte, N, C);
    for (int l = 0; l < c->L; l++) {
        struct gpt_layer_acts *a = &m->acts[l];
        const struct gpt_layer *w = &m->w.layers[l];
        float *x_out = l + 1 < c->L ? m->acts[l + 1].x_in : m->x_final;
        o->rmsnorm_forward(a->n1, a->rstd1, a->x_in, w->attn_norm, N, C, c->eps);
        o->matmul_forward(a->qkv, a->n1, w->wqkv, N, C, D, 0.0f);
        o->rope_forward(a->qkv, m->rope_cos, m->rope_sin, B, T, m->Hl, c->hd, D, m->pos);
        o->rope_forward(a->qkv + HD, m->rope_cos, m->rope_sin, B, T, m->Hkvl, c->hd, D, m->pos);
        if (m->cp > 1)
            cp_attention_forward(m->d, a->att, a->lse, a->qkv, &as, &m->cp_ctx[l], &m->cp_work);
        else
            o->attention_forward(a->att, a->lse, a->qkv, &as);
        o->matmul_forward(m->dn, a->att, w->wo, N, HD, C, 0.0f);
        hp_sum(m, m->dn, NC);
        o->residual_add(a->x_mid, a->x_in, m->dn, (int64_t)NC);
        o->rmsnorm_forward(a->n2, a->rstd2, a->x_mid, w->mlp_norm, N, C, c->eps);
        o->matmul_forward(a->h, a->n2, w->w_in, N, C, Fin, 0.0f);
        if (c->mlp == GPT_MLP_SWIGLU)
            o->swiglu_forward(a->a, a->h, N, F);
        else
            o->gelu_forward(a->a, a->h, N, F);
        o->matmul_forward(m->dn, a->a, w->w_out, N, F, C, 0.0f);
        hp_sum(m, m->dn, NC);
        o->residual_add(x_out, a->x_mid, m->dn, (int64_t)NC);
    }
    o->rmsnorm_forward(m->n_final, m->rstd_final, m->x_final, m->w.final_norm, N, C, c->eps);
}

double gpt_forward(struct gpt *m, const int32_t *tokens, const int32_t *targets, int B, int T,
                   float dscale, int want_grad) {
    const struct gpt_config *c = &m->c;
    const struct ops *o = m->ops;
    const int N = B * T;
    forward_trunk(m, tokens, B, T);
    o->matmul_forward(m->logits, m->n_final, m->w.lm_head, N, c->C, c->V, 0.0f);
    if (!targets)
        return 0.0;
    return o->xent_forward_backward(m->logits, m->losses, targets, N, c->V,
                                    want_grad ? dscale : 0.0f, XENT_IGNORE);
}

double gpt_classify(struct gpt *m, const int32_t *tokens, const int32_t *last, const int32_t *label,
                    const unsigned char *allowed, int B, int T, float dscale, int want_grad,
                    int32_t *pred) {
    const struct gpt_config *c = &m->c;
    const int K = c->n_cls, C = c->C;
    HW_ASSERT(K > 0 && m->cp == 1);
    forward_trunk(m, tokens, B, T);
    free(m->cls_logits);
    free(m->cls_last);
    m->cls_logits = alloc_floats((size_t)B * K);
    m->cls_last = HW_MALLOC(sizeof(int32_t) * (size_t)B);
    double total = 0.0;
    for (int b = 0; b < B; b++) {
        const float *h = m->n_final + ((size_t)b * T + last[b]) * C;
        float *lg = m->cls_logits + (size_t)b * K;
        const unsigned char *ok = allowed + (size_t)b * K;
        m->cls_last[b] = last[b];
        m->ops->matmul_forward(lg, h, m->w.cls_head, 1, C, K, 0.0f);
        float mx = -INFINITY;
        int arg = -1;
        for (int k = 0; k < K; k++)
            if (ok[k] && (arg < 0 || lg[k] > mx)) {
                mx = lg[k];
                arg = k;
            }
        if (pred)
            pred[b] = arg;
        double sum = 0.0;
        for (int k = 0; k < K; k++)
            sum += ok[k] ? exp((double)lg[k] - mx) : 0.0;
        const int y = label ? label[b] : -1;
        if (y >= 0)
            total += (double)mx + log(sum) - (double)lg[y];
        /* keep d(loss * dscale)/dlogits for the backward */
        for (int k = 0; k < K; k++) {
            double p = ok[k] ? exp((double)lg[k] - mx) / sum : 0.0;
            lg[k] = y >= 0 && want_grad ? (float)((p - (k == y)) * dscale) : 0.0f;
        }
    }
    return total;
}

/* From d n_final (in dn) through the final norm, the blocks and the embedding. */
static void backward_trunk(struct gpt *m) {
    const struct gpt_config *c = &m->c;
    const struct ops *o = m->ops;
    const int B = m->B, T = m->T, N = B * T, C = c->C, D = qkv_width(m), HD = m->Hl * c->hd;
    const int Fin = fin_width(m), F = m->Fl;
    const size_t NC = (size_t)N * C;
    struct attn_shape as = local_attn_shape(m, B, T);
    memset(m->dx, 0, sizeof(float) * NC);
    o->rmsnorm_backward(m->dx, m->g.final_norm, m->dn, m->x_final, m->w.final_norm, m->rstd_final,
                        N, C);
    /* final norm (and an untied head) are done; a tied head is finished with the embedding */
    grads_ready(m, 0);
    for (int l = c->L - 1; l >= 0; l--) {
        struct gpt_layer_acts *a = &m->acts[l];
        const struct gpt_layer *w = &m->w.layers[l];
        struct gpt_layer *g = &m->g.layers[l];
        /* MLP residual: dx flows to x_mid unchanged, plus through the MLP */
        o->matmul_backward(m->da, g->w_out, m->dx, a->a, w->w_out, N, F, C, 0.0f);
        progress(m);
        if (c->mlp == GPT_MLP_SWIGLU)
            o->swiglu_backward(m->dh, m->da, a->h, N, F);
        else
            o->gelu_backward(m->dh, m->da, a->h, N, F);
        o->matmul_backward(m->dn, g->w_in, m->dh, a->n2, w->w_in, N, C, Fin, 0.0f);
        progress(m);
        hp_sum(m, m->dn, NC);
        o->rmsnorm_backward(m->dx, g->mlp_norm, m->dn, a->x_mid, w->mlp_norm, a->rstd2, N, C);
        /* attention residual */
        o->matmul_backward(m->datt, g->wo, m->dx, a->att, w->wo, N, HD, C, 0.0f);
        progress(m);
        if (m->cp > 1)
            cp_attention_backward(m->d, m->dqkv, m->datt, a->att, a->lse, a->qkv, &as,
                                  &m->cp_ctx[l], &m->cp_work);
        else
            o->attention_backward(m->dqkv, m->datt, a->att, a->lse, a->qkv, &as);
        o->rope_backward(m->dqkv, m->rope_cos, m->rope_sin, B, T, m->Hl, c->hd, D, m->pos);
        o->rope_backward(m->dqkv + HD, m->rope_cos, m->rope_sin, B, T, m->Hkvl, c->hd, D, m->pos);
        progress(m);
        o->matmul_backward(m->dn, g->wqkv, m->dqkv, a->n1, w->wqkv, N, C, D, 0.0f);
        progress(m);
        hp_sum(m, m->dn, NC);
        o->rmsnorm_backward(m->dx, g->attn_norm, m->dn, a->x_in, w->attn_norm, a->rstd1, N, C);
        grads_ready(m, c->L - l);
    }
    o->embed_backward(m->g.wte, m->dx, m->tokens, N, C);
    grads_ready(m, c->L + 1);
}

void gpt_backward(struct gpt *m) {
    const struct gpt_config *c = &m->c;
    const int N = m->B * m->T;
    /* logits -> d n_final (into dn) */
    m->ops->matmul_backward(m->dn, m->g.lm_head, m->logits, m->n_final, m->w.lm_head, N, c->C, c->V,
                            0.0f);
    backward_trunk(m);
}

void gpt_backward_classify(struct gpt *m) {
    const struct gpt_config *c = &m->c;
    const int C = c->C, K = c->n_cls, T = m->T;
    memset(m->dn, 0, sizeof(float) * (size_t)m->B * T * C);
    for (int b = 0; b < m->B; b++) {
        const size_t row = (size_t)b * T + m->cls_last[b];
        m->ops->matmul_backward(m->dn + row * C, m->g.cls_head, m->cls_logits + (size_t)b * K,
                                m->n_final + row * C, m->w.cls_head, 1, C, K, 0.0f);
    }
    backward_trunk(m);
}

/* ----------------------------------------------------------------------------------------- */
/* decoding with a KV cache */

void gpt_kv_init(struct gpt_kv *kv, const struct gpt *m, int B, int max_T) {
    const struct gpt_config *c = &m->c;
    memset(kv, 0, sizeof(*kv));
    HW_ASSERT(B >= 1 && max_T <= c->max_T);
    HW_ASSERT(m->hp == 1 && m->cp == 1); /* decoding runs on one rank with the whole model */
    kv->B = B;
    kv->max_T = max_T;
    kv->n = HW_CALLOC((size_t)B, sizeof(int));
    size_t kvw = (size_t)c->Hkv * c->hd, Bs = (size_t)B;
    kv->k = alloc_floats((size_t)c->L * Bs * max_T * kvw);
    kv->v = alloc_floats((size_t)c->L * Bs * max_T * kvw);
    kv->x = alloc_floats(Bs * c->C);
    kv->buf = alloc_floats(Bs * c->C);
    kv->tmp = alloc_floats(Bs * c->C);
    kv->qkv = alloc_floats(Bs * qkv_width(m));
    kv->att = alloc_floats(Bs * c->H * c->hd);
    kv->h = alloc_floats(Bs * fin_width(m));
    kv->a = alloc_floats(Bs * c->F);
    kv->rstd = alloc_floats(Bs);
    kv->scratch = alloc_floats((size_t)max_T + 1);
    kv->logits = alloc_floats(Bs * c->V);
    kv->rows = HW_CALLOC(Bs, sizeof(int));
    kv->tok = HW_CALLOC(Bs, sizeof(int32_t));
    kv->steer_alpha = 1.0f;
    kv->user = HW_CALLOC(Bs * (size_t)max_T, 1);
}

void gpt_kv_reset(struct gpt_kv *kv, int b) {
    kv->n[b] = 0;
    memset(kv->user + (size_t)b * kv->max_T, 0, (size_t)kv->max_T);
}

void gpt_kv_free(struct gpt_kv *kv) {
    free(kv->n);
    free(kv->k);
    free(kv->v);
    free(kv->x);
    free(kv->buf);
    free(kv->tmp);
    free(kv->qkv);
    free(kv->att);
    free(kv->h);
    free(kv->a);
    free(kv->rstd);
    free(kv->scratch);
    free(kv->logits);
    free(kv->rows);
    free(kv->tok);
    free(kv->user);
    memset(kv, 0, sizeof(*kv));
}

/* out (nb, M) = in (nb, K) w^T one row at a time: OpenBLAS's result for a row depends on how
 * many rows are multiplied together, so decoding row by row makes a sequence's logits (and so
 * greedy outputs and scores) independent of which other sequences share the batch. */
static void rows_matmul(const struct ops *o, float *out, const float *in, const float *w, int nb,
                        int K, int M) {
    for (int i = 0; i < nb; i++)
        o->matmul_forward(out + (size_t)i * M, in + (size_t)i * K, w, 1, K, M, 0.0f);
}

/* The active sequences are packed into nb rows; attention runs per sequence over its own
 * cache. Every row's arithmetic is independent of the other rows (see rows_matmul), so a
 * sequence decodes bit for bit the same alone or in any batch. */
const float *gpt_decode_batch(struct gpt *m, struct gpt_kv *kv, const int32_t *tokens,
                              const int *active) {
    const struct gpt_config *c = &m->c;
    const struct ops *o = m->ops;
    const int C = c->C, D = qkv_width(m), HD = c->H * c->hd, kvw = c->Hkv * c->hd;
    const int Fin = fin_width(m);
    int nb = 0;
    for (int b = 0; b < kv->B; b++)
        if (!active || active[b]) {
            HW_ASSERT(kv->n[b] < kv->max_T && tokens[b] >= 0 && tokens[b] < c->V);
            kv->rows[nb] = b;
            kv->tok[nb++] = tokens[b];
        }
    if (nb == 0)
        return kv->logits;
    o->embed_forward(kv->x, kv->tok, m->w.wte, nb, C);
    for (int l = 0; l < c->L; l++) {
        const struct gpt_layer *w = &m->w.layers[l];
        o->rmsnorm_forward(kv->buf, kv->rstd, kv->x, w->attn_norm, nb, C, c->eps);
        rows_matmul(o, kv->qkv, kv->buf, w->wqkv, nb, C, D);
        for (int i = 0; i < nb; i++) {
            const int b = kv->rows[i], pos = kv->n[b];
            float *q = kv->qkv + (size_t)i * D;
            float *kc = kv->k + (((size_t)l * kv->B + b) * kv->max_T) * kvw;
            float *vc = kv->v + (((size_t)l * kv->B + b) * kv->max_T) * kvw;
            o->rope_forward(q, m->rope_cos, m->rope_sin, 1, 1, c->H, c->hd, D, &pos);
            o->rope_forward(q + HD, m->rope_cos, m->rope_sin, 1, 1, c->Hkv, c->hd, D, &pos);
            memcpy(kc + (size_t)pos * kvw, q + HD, sizeof(float) * (size_t)kvw);
            memcpy(vc + (size_t)pos * kvw, q + HD + kvw, sizeof(float) * (size_t)kvw);
            if (kv->steer_alpha != 1.0f)
                o->attention_decode_steer(kv->att + (size_t)i * HD, q, kc, vc, pos + 1, kvw, c->H,
                                          c->Hkv, c->hd, kv->scratch,
                                          kv->user + (size_t)b * kv->max_T, kv->steer_alpha);
            else
                o->attention_decode(kv->att + (size_t)i * HD, q, kc, vc, pos + 1, kvw, c->H, c->Hkv,
                                    c->hd, kv->scratch);
        }
        rows_matmul(o, kv->tmp, kv->att, w->wo, nb, HD, C);
        o->residual_add(kv->x, kv->x, kv->tmp, (int64_t)nb * C);
        o->rmsnorm_forward(kv->buf, kv->rstd, kv->x, w->mlp_norm, nb, C, c->eps);
        rows_matmul(o, kv->h, kv->buf, w->w_in, nb, C, Fin);
        if (c->mlp == GPT_MLP_SWIGLU)
            o->swiglu_forward(kv->a, kv->h, nb, c->F);
        else
            o->gelu_forward(kv->a, kv->h, nb, c->F);
        rows_matmul(o, kv->tmp, kv->a, w->w_out, nb, c->F, C);
        o->residual_add(kv->x, kv->x, kv->tmp, (int64_t)nb * C);
    }
    o->rmsnorm_forward(kv->buf, kv->rstd, kv->x, m->w.final_norm, nb, C, c->eps);
    /* logits land in the rows of their sequences: row i of the packed result is sequence
     * rows[i]; unpack back to front so no row is overwritten before it is moved */
    rows_matmul(o, kv->logits, kv->buf, m->w.lm_head, nb, C, c->V);
    for (int i = nb - 1; i >= 0; i--) {
        const int b = kv->rows[i];
        if (b != i)
            memcpy(kv->logits + (size_t)b * c->V, kv->logits + (size_t)i * c->V,
                   sizeof(float) * (size_t)c->V);
        kv->n[b]++;
    }
    return kv->logits;
}

const float *gpt_decode_step(struct gpt *m, struct gpt_kv *kv, int32_t token) {
    HW_ASSERT(kv->B == 1);
    return gpt_decode_batch(m, kv, &token, NULL);
}
