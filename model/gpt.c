/* model/gpt.c -- the transformer trunk: the config, the parameter table, carving, the forward and
 * backward over the blocks' layer kinds, the heads, and KV-cached decoding (see gpt.h). The
 * trunk knows no layer kind: every block runs pre-sublayer (optional) -> norm -> mixer ->
 * residual -> MLP through the kind's table (layer.h). */
#include "gpt.h"
#include "memory.h"

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
    if (!strcmp(m->rope_scaling.kind, "llama3"))
        gc->rope_scale = (struct rope_scaling){
            m->rope_scaling.factor, m->rope_scaling.low_freq_factor,
            m->rope_scaling.high_freq_factor, (double)m->rope_scaling.original_max_seq};
    gc->eps = (float)m->norm_eps;
    gc->init_std = (float)m->init_std;
    HW_ASSERT(gc->L <= GPT_MAX_LAYERS);
    for (int l = 0; l < gc->L; l++) {
        gc->attn[l] = (unsigned char)(cfg_layer_moh(m, l) ? LK_MOH : LK_MHA);
        gc->s2[l] = (unsigned char)cfg_layer_s2(m, l);
    }
    gc->moh_hs = m->moh.shared_heads;
    gc->moh_k = m->moh.top_k;
    gc->moh_qnorm = !strcmp(m->moh.router, "qnorm");
    gc->moh_literal = m->moh.paper_literal;
    gc->moh_coef = (float)m->moh.balance_coef;
    gc->s2_block = m->sparsity.block;
    gc->s2_local = m->sparsity.local_blocks;
    gc->s2_vert = m->sparsity.vert_stride;
    gc->s2_offset = m->sparsity.head_offset;
    gc->s2_dense = m->sparsity.dense_heads;
    gc->dare = strcmp(m->embedding, "dare") == 0;
    memory_config(gc, m);
}

/* Per-layer flags as text: "x.x." (L <= 64) or a count and a hash. */
static void layer_flags(char *out, size_t n, const unsigned char *f, int L) {
    if (L <= 64) {
        int i = 0;
        for (; i < L && (size_t)i + 1 < n; i++)
            out[i] = f[i] ? 'x' : '.';
        out[i] = '\0';
        return;
    }
    uint64_t h = 1469598103934665603ULL;
    int cnt = 0;
    for (int i = 0; i < L; i++) {
        h = (h ^ f[i]) * 1099511628211ULL;
        cnt += f[i] != 0;
    }
    snprintf(out, n, "%d#%016llx", cnt, (unsigned long long)h);
}

void gpt_config_signature(const struct gpt_config *gc, char *out, size_t n) {
    int k = snprintf(out, n,
                     "d_model=%d n_layers=%d n_heads=%d n_kv_heads=%d d_ff=%d vocab=%d mlp=%s "
                     "tied=%d",
                     gc->C, gc->L, gc->H, gc->Hkv, gc->F, gc->V,
                     gc->mlp == GPT_MLP_GELU ? "gelu" : "swiglu", gc->tied);
    if (gc->n_cls > 0 && k > 0 && (size_t)k < n)
        k += snprintf(out + k, n - (size_t)k, " classes=%d", gc->n_cls);
    if (gc->rope_scale.factor > 0 && k > 0 && (size_t)k < n)
        k += snprintf(out + k, n - (size_t)k, " rope=llama3/%g/%g/%g/%g", gc->rope_scale.factor,
                      gc->rope_scale.low_freq_factor, gc->rope_scale.high_freq_factor,
                      gc->rope_scale.original_max_seq);
    unsigned char moh[GPT_MAX_LAYERS];
    int any_moh = 0, any_s2 = 0, other = 0;
    for (int l = 0; l < gc->L; l++) {
        moh[l] = gc->attn[l] == LK_MOH;
        any_moh |= moh[l];
        any_s2 |= gc->s2[l];
        other |= gc->attn[l] != LK_MHA && gc->attn[l] != LK_MOH;
    }
    char f[72];
    if (any_moh && k > 0 && (size_t)k < n) {
        layer_flags(f, sizeof(f), moh, gc->L);
        k += snprintf(out + k, n - (size_t)k, " moh=%s/hs%d/k%d/%s%s", f, gc->moh_hs, gc->moh_k,
                      gc->moh_qnorm ? "qnorm" : "learned", gc->moh_literal ? "/literal" : "");
    }
    if (any_s2 && k > 0 && (size_t)k < n) {
        layer_flags(f, sizeof(f), gc->s2, gc->L);
        k += snprintf(out + k, n - (size_t)k, " s2=%s/b%d/l%d/v%d/o%d/d%d", f, gc->s2_block,
                      gc->s2_local, gc->s2_vert, gc->s2_offset, gc->s2_dense);
    }
    if (other && k > 0 && (size_t)k < n) { /* registered attention kinds, by name */
        k += snprintf(out + k, n - (size_t)k, " attn=");
        for (int l = 0; l < gc->L && k > 0 && (size_t)k < n; l++)
            k += snprintf(out + k, n - (size_t)k, "%s%s", l ? "," : "",
                          layer_kind_get(gc->attn[l])->name);
    }
    if (gc->dare && k > 0 && (size_t)k < n)
        snprintf(out + k, n - (size_t)k, " embedding=dare");
    memory_signature(gc, out, n);
}

/* local widths (this rank's heads and MLP columns) */
static int fin_width(const struct gpt *m) {
    return m->c.mlp == GPT_MLP_SWIGLU ? 2 * m->Fl : m->Fl;
}

void gpt_rows_matmul(const struct ops *o, float *out, const float *in, const float *w, int nb,
                     int K, int M) {
    for (int i = 0; i < nb; i++)
        o->matmul_forward(out + (size_t)i * M, in + (size_t)i * K, w, 1, K, M, 0.0f);
}

int gpt_qkv_width(const struct gpt *m) {
    return (m->Hl + 2 * m->Hkvl) * m->c.hd;
}

int gpt_add_param(struct param_table *t, const char *name, int64_t r, int64_t cols, int shard_dim,
                  int decay, float std) {
    struct gpt *m = t->m;
    if (m->n_params == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 64;
        m->params = HW_REALLOC(m->params, sizeof(*m->params) * (size_t)t->cap);
    }
    struct param *p = &m->params[m->n_params++];
    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "%s", name);
    p->ndim = cols ? 2 : 1;
    p->gshape[0] = p->shape[0] = r;
    p->gshape[1] = p->shape[1] = cols;
    p->shard_dim = m->tp.hp > 1 ? shard_dim : -1;
    if (p->shard_dim >= 0) {
        HW_ASSERT(p->gshape[p->shard_dim] % m->tp.hp == 0);
        p->shape[p->shard_dim] = p->gshape[p->shard_dim] / m->tp.hp;
        p->goff[p->shard_dim] = p->shape[p->shard_dim] * m->tp.hp_rank;
    }
    p->numel = (size_t)p->shape[0] * (size_t)(cols ? p->shape[1] : 1);
    p->offset = m->num_params;
    p->decay = decay;
    p->init_std = std;
    m->num_params += p->numel;
    return m->n_params - 1;
}

/* The parameter table. Tensors that one GEMM consumes together (wq/wk/wv, w_gate/w_up) are
 * adjacent, so the stacked matrix is a plain view; under head parallelism each holds this
 * rank's rows, so the stack is [local q heads | local k heads | local v heads]. A block's
 * tensors: its attention norm, the mixer's part 0, the MLP, the mixer's part 1. */
static void build_table(struct gpt *m) {
    const struct gpt_config *c = &m->c;
    struct param_table t = {.m = m};
    char nm[64];
    const float std = c->init_std, std_out = c->init_std / sqrtf(2.0f * (float)c->L);
    gpt_add_param(&t, "tok_emb.weight", c->V, c->C, -1, 1, std);
    if (c->dare)
        gpt_add_param(&t, "tok_emb_attn.weight", c->V, c->C, -1, 1, std);
    for (int l = 0; l < c->L; l++) {
        struct layer *ly = &m->layers[l];
#define P(suffix, r, cols, shard, decay, s)                                                        \
    do {                                                                                           \
        snprintf(nm, sizeof(nm), "blocks.%d.%s", l, suffix);                                       \
        gpt_add_param(&t, nm, r, cols, shard, decay, s);                                           \
    } while (0)
        P("attn_norm.weight", c->C, 0, -1, 0, 0.0f);
        ly->kind->params(ly, &t, 0);
        P("mlp_norm.weight", c->C, 0, -1, 0, 0.0f);
        if (c->mlp == GPT_MLP_SWIGLU) {
            P("mlp.w_gate", c->F, c->C, 0, 1, std);
            P("mlp.w_up", c->F, c->C, 0, 1, std);
        } else {
            P("mlp.w_up", c->F, c->C, 0, 1, std);
        }
        P("mlp.w_down", c->C, c->F, 1, 1, std_out);
        ly->kind->params(ly, &t, 1);
#undef P
    }
    gpt_add_param(&t, "final_norm.weight", c->C, 0, -1, 0, 0.0f);
    if (!c->tied)
        gpt_add_param(&t, "lm_head.weight", c->V, c->C, -1, 1, std);
    if (c->n_cls > 0)
        gpt_add_param(&t, "cls_head.weight", c->n_cls, c->C, -1, 1, std);
}

static float *view(const struct gpt *m, float *base, const char *name) {
    const struct param *p = gpt_find_param(m, name);
    HW_ASSERT(p);
    return base + p->offset;
}

/* The trunk's views into the parameter (or gradient) block. */
static void carve(struct gpt *m, struct gpt_weights *w, float *base) {
    const struct gpt_config *c = &m->c;
    char nm[64];
    w->wte = view(m, base, "tok_emb.weight");
    w->wte_attn = c->dare ? view(m, base, "tok_emb_attn.weight") : NULL;
    for (int l = 0; l < c->L; l++) {
        struct gpt_block *y = &w->blocks[l];
        snprintf(nm, sizeof(nm), "blocks.%d.attn_norm.weight", l);
        y->attn_norm = view(m, base, nm);
        snprintf(nm, sizeof(nm), "blocks.%d.mlp_norm.weight", l);
        y->mlp_norm = view(m, base, nm);
        snprintf(nm, sizeof(nm), "blocks.%d.%s", l,
                 c->mlp == GPT_MLP_SWIGLU ? "mlp.w_gate" : "mlp.w_up");
        const struct param *pin = gpt_find_param(m, nm);
        snprintf(nm, sizeof(nm), "blocks.%d.mlp.w_down", l);
        const struct param *pout = gpt_find_param(m, nm);
        HW_ASSERT(pin && pout);
        y->w_in = linear_of(pin, c->mlp == GPT_MLP_SWIGLU ? 2 : 1, m->param_mem, m->grad_mem);
        y->w_out = linear_of(pout, 1, m->param_mem, m->grad_mem);
    }
    w->final_norm = view(m, base, "final_norm.weight");
    w->lm_head = c->tied ? w->wte : view(m, base, "lm_head.weight");
    w->cls_head = c->n_cls > 0 ? view(m, base, "cls_head.weight") : NULL;
}

static void build_blocks(struct gpt *m);

int gpt_build(struct gpt *m, const struct gpt_config *gc, const struct ops *ops, struct dist *d,
              char *err) {
    memset(m, 0, sizeof(*m));
    m->c = *gc;
    m->ops = ops;
    m->c.mem_cfg.ops = ops; /* the Titans module's GEMMs and buffers */
    m->d = d && d->world > 1 ? d : NULL;
    tp_init(&m->tp, m->d, ops, &m->cp_work);
    HW_ASSERT(gc->C == gc->H * gc->hd && gc->H % gc->Hkv == 0 && gc->hd % 2 == 0 && gc->V > 0);
    HW_ASSERT(gc->H % m->tp.hp == 0 && gc->Hkv % m->tp.hp == 0 && gc->F % m->tp.hp == 0);
    m->Hl = gc->H / m->tp.hp;
    m->Hkvl = gc->Hkv / m->tp.hp;
    m->Fl = gc->F / m->tp.hp;
    m->aux_scale = 1.0f;
    /* every block's mixer: the memory kind wrapping or replacing the attention, else the
     * attention kind */
    m->layers = HW_CALLOC((size_t)gc->L, sizeof(*m->layers));
    for (int l = 0; l < gc->L; l++) {
        struct layer *ly = &m->layers[l];
        ly->m = m;
        ly->l = l;
        ly->inner = gc->attn[l];
        ly->kind = layer_kind_get(gc->mem[l] ? gc->mem[l] : gc->attn[l]);
    }
    build_table(m);
    /* refuse a layer the backend cannot run before allocating anything large */
    for (int l = 0; l < gc->L; l++) {
        struct layer *ly = &m->layers[l];
        enum ops_cap caps[OPS_CAPS + 4];
        char who[96];
        snprintf(who, sizeof(who), "layer %d (%s)", l, ly->kind->name);
        int rc = ops_require(ops, caps, ly->kind->caps(ly, caps), who, err);
        if (rc)
            return rc;
    }
    m->param_mem = hw_buf_alloc(&m->pbuf, ops, HW_F32, m->num_params);
    m->grad_mem = hw_buf_alloc(&m->gbuf, ops, HW_F32, m->num_params);
    m->w.blocks = HW_CALLOC((size_t)gc->L, sizeof(struct gpt_block));
    m->g.blocks = HW_CALLOC((size_t)gc->L, sizeof(struct gpt_block));
    carve(m, &m->w, m->param_mem);
    carve(m, &m->g, m->grad_mem);
    for (int l = 0; l < gc->L; l++)
        m->layers[l].kind->bind(&m->layers[l]);
    build_blocks(m);
    const size_t nr = (size_t)gc->max_T * gc->hd / 2;
    float *cs = HW_CALLOC(2 * nr, sizeof(float));
    rope_tables(cs, cs + nr, gc->max_T, gc->hd, gc->rope_theta, &gc->rope_scale);
    m->rope_cos = ops->alloc(sizeof(float) * nr);
    m->rope_sin = ops->alloc(sizeof(float) * nr);
    ops->upload(m->rope_cos, cs, sizeof(float) * nr);
    ops->upload(m->rope_sin, cs + nr, sizeof(float) * nr);
    free(cs);
    return 0;
}

void gpt_init(struct gpt *m, const struct gpt_config *gc, const struct ops *ops, struct dist *d) {
    char err[HW_ERR_LEN];
    if (gpt_build(m, gc, ops, d, err))
        HW_DIE("%s", err);
}

void gpt_init_weights(struct gpt *m, uint64_t seed) {
    for (int i = 0; i < m->n_params; i++) {
        const struct param *p = &m->params[i];
        float *x = HW_MALLOC(sizeof(float) * (p->numel ? p->numel : 1));
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
        m->ops->upload(m->param_mem + p->offset, x, sizeof(float) * p->numel);
        free(x);
    }
    for (int l = 0; l < m->c.L; l++)
        if (m->layers[l].kind->init_weights)
            m->layers[l].kind->init_weights(&m->layers[l], seed);
}

void gpt_scratch_need(struct gpt *m, enum gpt_scratch s, size_t floats) {
    if (floats > m->scratch_n[s])
        m->scratch_n[s] = floats;
}

float *gpt_scratch(const struct gpt *m, enum gpt_scratch s) {
    HW_ASSERT(m->scratch[s]);
    return m->scratch[s];
}

static void free_acts(struct gpt *m) {
    const struct ops *o = m->ops;
    hw_buf_free(&m->act_buf);
    free(m->acts);
    m->acts = NULL;
    o->free(m->tokens);
    o->free(m->targets);
    o->free(m->pos);
    o->free(m->seg_buf);
    free(m->pos_host);
    m->tokens = m->targets = m->pos = m->seg_buf = m->pos_host = NULL;
}

void gpt_alloc_acts(struct gpt *m, int B, int T) {
    const struct gpt_config *c = &m->c;
    const struct ops *o = m->ops;
    HW_ASSERT(T * m->tp.cp <= c->max_T);
    for (int l = 0; l < c->L; l++)
        m->layers[l].kind->alloc(&m->layers[l], B, T);
    for (int s = 0; s < GPT_SCRATCH; s++)
        if (m->scratch_n[s] > m->scratch_cap[s]) {
            o->free(m->scratch[s]);
            m->scratch[s] = o->alloc(sizeof(float) * m->scratch_n[s]);
            m->scratch_cap[s] = m->scratch_n[s];
        }
    if (m->act_buf.data && m->B == B && m->T == T && m->acts_recompute == m->recompute)
        return;
    free_acts(m);
    m->pos_host = HW_MALLOC(sizeof(int32_t) * (size_t)T);
    if (m->tp.cp > 1)
        cp_positions(m->pos_host, T, m->tp.cp, m->tp.cp_rank);
    else
        for (int t = 0; t < T; t++)
            m->pos_host[t] = t;
    m->pos = o->alloc(sizeof(int32_t) * (size_t)T);
    o->upload(m->pos, m->pos_host, sizeof(int32_t) * (size_t)T);
    m->B = B;
    m->T = T;
    m->acts_recompute = m->recompute;
    const size_t N = (size_t)B * T, C = (size_t)c->C, Fin = (size_t)fin_width(m), F = (size_t)m->Fl;
    /* what a block keeps (x_in, x_mid) and what it may share (n1, rstd1, n2, rstd2, h, a) */
    const size_t kept = 2 * N * C, shared = 2 * N * C + 2 * N + N * Fin + N * F;
    const size_t blocks = m->recompute == GPT_RECOMPUTE_BLOCK ? (size_t)c->L * kept + shared
                                                              : (size_t)c->L * (kept + shared);
    const size_t total = blocks + 2 * N * C + N + N * (size_t)c->V + N /* losses */
                         + 3 * N * C + N * Fin + N * F;
    float *p = hw_buf_alloc(&m->act_buf, o, HW_F32, total);
    m->acts = HW_CALLOC((size_t)c->L, sizeof(*m->acts));
    m->tokens = o->alloc(sizeof(int32_t) * N);
    m->targets = o->alloc(sizeof(int32_t) * N);
    m->seg_buf = o->alloc(sizeof(int32_t) * N);
#define TAKE(dst, n)                                                                               \
    do {                                                                                           \
        dst = p;                                                                                   \
        p += (n);                                                                                  \
    } while (0)
    for (int l = 0; l < c->L; l++) {
        struct gpt_block_acts *a = &m->acts[l];
        TAKE(a->x_in, N * C);
        TAKE(a->x_mid, N * C);
        if (m->recompute == GPT_RECOMPUTE_BLOCK && l > 0) { /* block 0's set serves all */
            a->n1 = m->acts[0].n1, a->rstd1 = m->acts[0].rstd1, a->n2 = m->acts[0].n2;
            a->rstd2 = m->acts[0].rstd2, a->h = m->acts[0].h, a->a = m->acts[0].a;
            continue;
        }
        TAKE(a->n1, N * C);
        TAKE(a->rstd1, N);
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
    TAKE(m->br, N * C);
    TAKE(m->dh, N * Fin);
    TAKE(m->da, N * F);
#undef TAKE
    HW_ASSERT((size_t)(p - (float *)m->act_buf.data) == total);
}

void gpt_stats_reset(struct gpt *m) {
    for (int l = 0; l < m->c.L; l++)
        if (m->layers[l].kind->stats_reset)
            m->layers[l].kind->stats_reset(&m->layers[l]);
    m->stat_tokens = 0.0;
}

const double *gpt_head_usage(const struct gpt *m, int l) {
    const struct layer *ly = &m->layers[l];
    return ly->kind->head_usage ? ly->kind->head_usage(ly) : NULL;
}

const float *gpt_attn_qkv(const struct gpt *m, int l, int *ld) {
    const struct layer *ly = &m->layers[l];
    return ly->kind->attn_qkv ? ly->kind->attn_qkv(ly, ld) : NULL;
}

const float *gpt_attn_out(const struct gpt *m, int l) {
    const struct layer *ly = &m->layers[l];
    return ly->kind->attn_out ? ly->kind->attn_out(ly) : NULL;
}

void gpt_free(struct gpt *m) {
    const struct ops *o = m->ops;
    if (!o)
        return;
    for (int l = 0; m->layers && l < m->c.L; l++)
        if (m->layers[l].kind && m->layers[l].state)
            m->layers[l].kind->free(&m->layers[l]);
    free(m->layers);
    free(m->params);
    hw_buf_free(&m->pbuf);
    hw_buf_free(&m->gbuf);
    free(m->w.blocks);
    free(m->g.blocks);
    o->free(m->rope_cos);
    o->free(m->rope_sin);
    free_acts(m);
    for (int s = 0; s < GPT_SCRATCH; s++)
        o->free(m->scratch[s]);
    cp_work_free(o, &m->cp_work);
    free(m->block_off);
    free(m->block_len);
    o->free(m->cls_logits);
    free(m->cls_last);
    free(m->logits_host);
    memset(m, 0, sizeof(*m));
}

void gpt_zero_grad(struct gpt *m) {
    hw_buf_zero(&m->gbuf);
}

struct param_set gpt_param_set(struct gpt *m) {
    struct param_set s = {.be = m->ops,
                          .n = m->n_params,
                          .p = m->params,
                          .numel = m->num_params,
                          .w = m->param_mem,
                          .g = m->grad_mem,
                          .shard_group = DIST_HP};
    return s;
}

const struct param *gpt_find_param(const struct gpt *m, const char *name) {
    const struct param_set s = gpt_param_set((struct gpt *)m);
    return param_find(&s, name);
}

double gpt_flops_per_token(const struct gpt_config *c, int T) {
    /* 6 flops per weight per token (2 forward, 4 backward) over all matmul weights, plus
     * causal attention: QK^T and PV, 2*2*T*hd*H/2 forward per token, x3 with backward. */
    const double qkv = (double)(c->H + 2 * c->Hkv) * c->hd;
    const double fin = c->mlp == GPT_MLP_SWIGLU ? 2.0 * c->F : (double)c->F;
    double n = (double)c->L *
                   (qkv * c->C + (double)c->H * c->hd * c->C + fin * c->C + (double)c->F * c->C) +
               (double)c->V * c->C;
    /* MoH layers compute hs + k of the H heads for each token */
    double attn = 0.0;
    for (int l = 0; l < c->L; l++) {
        double active =
            c->attn[l] == LK_MOH && c->moh_k > 0 ? (double)(c->moh_hs + c->moh_k) / c->H : 1.0;
        attn += 3.0 * 2.0 * T * c->hd * c->H * active;
    }
    return 6.0 * n + attn;
}

void gpt_progress(struct gpt *m) {
    if (m->grad_ready)
        par_progress(&m->tp);
}

static void grads_ready(struct gpt *m, int k) {
    if (m->grad_ready)
        m->grad_ready(m->grad_ready_ctx, k);
}

/* The gradient blocks in backward order (see gpt.h). */
static void build_blocks(struct gpt *m) {
    const struct gpt_config *c = &m->c;
    char nm[64];
    const size_t end = m->num_params, fn = (size_t)(m->w.final_norm - m->param_mem);
    m->n_blocks = c->L + 2;
    m->block_off = HW_MALLOC(sizeof(size_t) * (size_t)m->n_blocks);
    m->block_len = HW_MALLOC(sizeof(size_t) * (size_t)m->n_blocks);
    int k = 0;
    m->block_off[k] = fn;
    m->block_len[k++] = end - fn; /* final norm, untied head, classifier head */
    for (int l = c->L - 1; l >= 0; l--) {
        snprintf(nm, sizeof(nm), "blocks.%d.attn_norm.weight", l);
        const size_t lo = gpt_find_param(m, nm)->offset;
        size_t hi = fn;
        if (l + 1 < c->L) {
            snprintf(nm, sizeof(nm), "blocks.%d.attn_norm.weight", l + 1);
            hi = gpt_find_param(m, nm)->offset;
        }
        m->block_off[k] = lo;
        m->block_len[k++] = hi - lo;
    }
    m->block_off[k] = 0;
    m->block_len[k++] = (size_t)(c->dare ? 2 : 1) * c->V * c->C; /* both tables with DARE */
}

/* ----------------------------------------------------------------------------------------- */
/* forward and backward */

/* The block's MLP input side: n2 = RMSNorm(x_mid), h = n2 W_in, a = act(h) (also the
 * recomputation of train.recompute: block). */
static void mlp_in_forward(struct gpt *m, int l) {
    const struct ops *o = m->ops;
    const struct gpt_config *c = &m->c;
    struct gpt_block_acts *a = &m->acts[l];
    const struct gpt_block *w = &m->w.blocks[l];
    const int N = m->B * m->T;
    o->rmsnorm_forward(a->n2, a->rstd2, a->x_mid, w->mlp_norm, N, c->C, c->eps);
    linear_forward(&m->tp, &w->w_in, a->h, a->n2, N, 0.0f);
    if (c->mlp == GPT_MLP_SWIGLU)
        o->swiglu_forward(a->a, a->h, N, m->Fl);
    else
        o->gelu_forward(a->a, a->h, N, m->Fl);
}

/* Embedding, blocks and the final norm: leaves n_final (B*T, C). */
static void forward_trunk(struct gpt *m, const int32_t *tokens, int B, int T, int want_grad) {
    const struct gpt_config *c = &m->c;
    const struct ops *o = m->ops;
    gpt_alloc_acts(m, B, T);
    const int N = B * T, C = c->C;
    const size_t NC = (size_t)N * C;
    o->upload(m->tokens, tokens, sizeof(int32_t) * (size_t)N);
    if (m->seg)
        o->upload(m->seg_buf, m->seg, sizeof(int32_t) * (size_t)N);
    m->aux_loss = 0.0;
    if (want_grad)
        m->stat_tokens += N * (double)par_batch_ranks(&m->tp);
    o->embed_forward(m->acts[0].x_in, m->tokens, m->w.wte, N, C, m->c.V);
    for (int l = 0; l < c->L; l++) {
        struct layer *ly = &m->layers[l];
        struct gpt_block_acts *a = &m->acts[l];
        const struct gpt_block *w = &m->w.blocks[l];
        float *x_out = l + 1 < c->L ? m->acts[l + 1].x_in : m->x_final;
        if (ly->kind->pre_forward)
            ly->kind->pre_forward(ly, a->x_in);
        o->rmsnorm_forward(a->n1, a->rstd1, a->x_in, w->attn_norm, N, C, c->eps);
        ly->kind->forward(ly, a->n1, m->br, want_grad);
        o->residual_add(a->x_mid, a->x_in, m->br, (int64_t)NC);
        mlp_in_forward(m, l);
        linear_forward(&m->tp, &w->w_out, m->br, a->a, N, 0.0f);
        o->residual_add(x_out, a->x_mid, m->br, (int64_t)NC);
    }
    o->rmsnorm_forward(m->n_final, m->rstd_final, m->x_final, m->w.final_norm, N, C, c->eps);
}

double gpt_forward(struct gpt *m, const int32_t *tokens, const int32_t *targets, int B, int T,
                   float dscale, int want_grad) {
    const struct gpt_config *c = &m->c;
    const struct ops *o = m->ops;
    const int N = B * T;
    forward_trunk(m, tokens, B, T, want_grad);
    o->matmul_forward(m->logits, m->n_final, m->w.lm_head, N, c->C, c->V, 0.0f);
    if (!targets)
        return 0.0;
    o->upload(m->targets, targets, sizeof(int32_t) * (size_t)N);
    return o->xent_forward_backward(m->logits, m->losses, m->targets, N, c->V,
                                    want_grad ? dscale : 0.0f, XENT_IGNORE);
}

const float *gpt_logits(struct gpt *m) {
    if (m->ops->kind == BACKEND_CPU)
        return m->logits;
    const size_t n = (size_t)m->B * m->T * m->c.V;
    m->logits_host = HW_REALLOC(m->logits_host, sizeof(float) * n);
    m->ops->download(m->logits_host, m->logits, sizeof(float) * n);
    return m->logits_host;
}

double gpt_classify(struct gpt *m, const int32_t *tokens, const int32_t *last, const int32_t *label,
                    const unsigned char *allowed, int B, int T, float dscale, int want_grad,
                    int32_t *pred) {
    const struct gpt_config *c = &m->c;
    const struct ops *o = m->ops;
    const int K = c->n_cls, C = c->C;
    HW_ASSERT(K > 0 && m->tp.cp == 1);
    forward_trunk(m, tokens, B, T, want_grad);
    o->free(m->cls_logits);
    free(m->cls_last);
    m->cls_logits = o->alloc(sizeof(float) * (size_t)B * K);
    m->cls_last = HW_MALLOC(sizeof(int32_t) * (size_t)B);
    for (int b = 0; b < B; b++) {
        m->cls_last[b] = last[b];
        o->matmul_forward(m->cls_logits + (size_t)b * K, m->n_final + ((size_t)b * T + last[b]) * C,
                          m->w.cls_head, 1, C, K, 0.0f);
    }
    float *lgs = HW_MALLOC(sizeof(float) * (size_t)B * K);
    o->download(lgs, m->cls_logits, sizeof(float) * (size_t)B * K);
    double total = 0.0;
    for (int b = 0; b < B; b++) {
        float *lg = lgs + (size_t)b * K;
        const unsigned char *ok = allowed + (size_t)b * K;
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
    o->upload(m->cls_logits, lgs, sizeof(float) * (size_t)B * K);
    free(lgs);
    return total;
}

/* From d n_final (in dn) through the final norm, the blocks and the embedding. */
static void backward_trunk(struct gpt *m) {
    const struct gpt_config *c = &m->c;
    const struct ops *o = m->ops;
    const int B = m->B, T = m->T, N = B * T, C = c->C, F = m->Fl;
    const size_t NC = (size_t)N * C;
    o->memset(m->dx, 0, sizeof(float) * NC);
    o->rmsnorm_backward(m->dx, m->g.final_norm, m->dn, m->x_final, m->w.final_norm, m->rstd_final,
                        N, C);
    /* final norm (and an untied head) are done; a tied head is finished with the embedding */
    grads_ready(m, 0);
    for (int l = c->L - 1; l >= 0; l--) {
        struct layer *ly = &m->layers[l];
        struct gpt_block_acts *a = &m->acts[l];
        const struct gpt_block *w = &m->w.blocks[l];
        struct gpt_block *g = &m->g.blocks[l];
        /* recompute: the shared set holds the last block's values; refill it for this one (the
         * mixer reads n1 through the pointer it kept, which is the shared buffer) */
        if (m->acts_recompute == GPT_RECOMPUTE_BLOCK && l + 1 < c->L) {
            o->rmsnorm_forward(a->n1, a->rstd1, a->x_in, w->attn_norm, N, C, c->eps);
            mlp_in_forward(m, l);
        }
        /* MLP residual: dx flows to x_mid unchanged, plus through the MLP */
        linear_backward(&m->tp, &w->w_out, m->da, m->dx, a->a, N, 0.0f);
        gpt_progress(m);
        if (c->mlp == GPT_MLP_SWIGLU)
            o->swiglu_backward(m->dh, m->da, a->h, N, F);
        else
            o->gelu_backward(m->dh, m->da, a->h, N, F);
        linear_backward(&m->tp, &w->w_in, m->dn, m->dh, a->n2, N, 0.0f);
        gpt_progress(m);
        o->rmsnorm_backward(m->dx, g->mlp_norm, m->dn, a->x_mid, w->mlp_norm, a->rstd2, N, C);
        /* mixer residual */
        ly->kind->backward(ly, m->dx, m->dn);
        o->rmsnorm_backward(m->dx, g->attn_norm, m->dn, a->x_in, w->attn_norm, a->rstd1, N, C);
        if (ly->kind->pre_backward)
            ly->kind->pre_backward(ly, m->dx);
        grads_ready(m, c->L - l);
    }
    o->embed_backward(m->g.wte, m->dx, m->tokens, N, C, m->c.V);
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
    m->ops->memset(m->dn, 0, sizeof(float) * (size_t)m->B * T * C);
    for (int b = 0; b < m->B; b++) {
        const size_t row = (size_t)b * T + m->cls_last[b];
        m->ops->matmul_backward(m->dn + row * C, m->g.cls_head, m->cls_logits + (size_t)b * K,
                                m->n_final + row * C, m->w.cls_head, 1, C, K, 0.0f);
    }
    backward_trunk(m);
}

/* ----------------------------------------------------------------------------------------- */
/* decoding with a KV cache */

void gpt_kv_init(struct gpt_kv *kv, struct gpt *m, int B, int max_T) {
    const struct gpt_config *c = &m->c;
    const struct ops *o = m->ops;
    memset(kv, 0, sizeof(*kv));
    HW_ASSERT(B >= 1 && max_T <= c->max_T);
    HW_ASSERT(m->tp.hp == 1 && m->tp.cp == 1); /* decoding runs on one rank with the whole model */
    const enum ops_cap dec = OPS_CAP_DECODE;
    char err[HW_ERR_LEN];
    if (ops_require(o, &dec, 1, "decoding (sample, eval)", err))
        HW_DIE("%s", err);
    kv->m = m;
    kv->B = B;
    kv->max_T = max_T;
    kv->L = c->L;
    kv->n = HW_CALLOC((size_t)B, sizeof(int));
    kv->cache = HW_CALLOC((size_t)c->L, sizeof(void *));
    struct cache_stats st = {0, 0, 0};
    for (int l = 0; l < c->L; l++)
        kv->cache[l] = m->layers[l].kind->cache_init(&m->layers[l], B, max_T, &st);
    kv->floats = st.floats;
    kv->floats_dense = st.floats_dense;
    const size_t Bs = (size_t)B, F = sizeof(float);
    kv->x = o->alloc(F * Bs * c->C);
    kv->buf = o->alloc(F * Bs * c->C);
    kv->tmp = o->alloc(F * Bs * c->C);
    kv->h = o->alloc(F * Bs * fin_width(m));
    kv->a = o->alloc(F * Bs * c->F);
    kv->rstd = o->alloc(F * Bs);
    kv->scratch = o->alloc(F * ((size_t)max_T + 64 + (size_t)c->mem_np + 2 * (size_t)c->mem_seg));
    kv->logits = HW_CALLOC(Bs * c->V, sizeof(float));
    kv->dlogits = o->alloc(F * Bs * c->V);
    kv->rows = HW_CALLOC(Bs, sizeof(int));
    kv->tok = HW_CALLOC(Bs, sizeof(int32_t));
    kv->tok_d = o->alloc(sizeof(int32_t) * Bs);
    kv->rpos = HW_CALLOC(Bs, sizeof(int32_t));
    kv->rpos_d = o->alloc(sizeof(int32_t) * Bs);
    kv->steer_alpha = 1.0f;
    kv->user = HW_CALLOC(Bs * (size_t)max_T, 1);
}

void gpt_kv_reset(struct gpt_kv *kv, int b) {
    struct gpt *m = kv->m;
    kv->n[b] = 0;
    for (int l = 0; l < kv->L; l++)
        m->layers[l].kind->cache_reset(&m->layers[l], kv->cache[l], b);
    memset(kv->user + (size_t)b * kv->max_T, 0, (size_t)kv->max_T);
}

void gpt_kv_free(struct gpt_kv *kv) {
    struct gpt *m = kv->m;
    if (!m)
        return;
    const struct ops *o = m->ops;
    for (int l = 0; l < kv->L; l++)
        m->layers[l].kind->cache_free(&m->layers[l], kv->cache[l]);
    free(kv->cache);
    free(kv->n);
    o->free(kv->x);
    o->free(kv->buf);
    o->free(kv->tmp);
    o->free(kv->h);
    o->free(kv->a);
    o->free(kv->rstd);
    o->free(kv->scratch);
    free(kv->logits);
    o->free(kv->dlogits);
    free(kv->rows);
    free(kv->tok);
    o->free(kv->tok_d);
    free(kv->rpos);
    o->free(kv->rpos_d);
    free(kv->user);
    memset(kv, 0, sizeof(*kv));
}

/* The active sequences are packed into nb rows; attention runs per sequence over its own
 * cache. Every row's arithmetic is independent of the other rows (rows_matmul), so a sequence
 * decodes bit for bit the same alone or in any batch. */
const float *gpt_decode_batch(struct gpt *m, struct gpt_kv *kv, const int32_t *tokens,
                              const int *active) {
    const struct gpt_config *c = &m->c;
    const struct ops *o = m->ops;
    const int C = c->C, Fin = fin_width(m);
    int nb = 0;
    for (int b = 0; b < kv->B; b++)
        if (!active || active[b]) {
            HW_ASSERT(kv->n[b] < kv->max_T && tokens[b] >= 0 && tokens[b] < c->V);
            kv->rows[nb] = b;
            kv->rpos[nb] = kv->n[b];
            kv->tok[nb++] = tokens[b];
        }
    if (nb == 0)
        return kv->logits;
    o->upload(kv->tok_d, kv->tok, sizeof(int32_t) * (size_t)nb);
    o->upload(kv->rpos_d, kv->rpos, sizeof(int32_t) * (size_t)nb);
    const struct decode_rows r = {.nb = nb,
                                  .rows = kv->rows,
                                  .pos = kv->n,
                                  .tok = kv->tok_d,
                                  .rpos = kv->rpos_d,
                                  .user = kv->user,
                                  .max_T = kv->max_T,
                                  .steer_alpha = kv->steer_alpha,
                                  .scratch = kv->scratch};
    o->embed_forward(kv->x, kv->tok_d, m->w.wte, nb, C, m->c.V);
    for (int l = 0; l < c->L; l++) {
        struct layer *ly = &m->layers[l];
        const struct gpt_block *w = &m->w.blocks[l];
        struct cache_stats st = {0, 0, 0};
        if (ly->kind->pre_decode)
            ly->kind->pre_decode(ly, kv->cache[l], &r, kv->x);
        o->rmsnorm_forward(kv->buf, kv->rstd, kv->x, w->attn_norm, nb, C, c->eps);
        ly->kind->decode(ly, kv->cache[l], &r, kv->buf, kv->tmp, &st);
        kv->rows_peak = st.rows_peak > kv->rows_peak ? st.rows_peak : kv->rows_peak;
        o->residual_add(kv->x, kv->x, kv->tmp, (int64_t)nb * C);
        o->rmsnorm_forward(kv->buf, kv->rstd, kv->x, w->mlp_norm, nb, C, c->eps);
        gpt_rows_matmul(o, kv->h, kv->buf, w->w_in.w, nb, C, Fin);
        if (c->mlp == GPT_MLP_SWIGLU)
            o->swiglu_forward(kv->a, kv->h, nb, c->F);
        else
            o->gelu_forward(kv->a, kv->h, nb, c->F);
        gpt_rows_matmul(o, kv->tmp, kv->a, w->w_out.w, nb, c->F, C);
        o->residual_add(kv->x, kv->x, kv->tmp, (int64_t)nb * C);
    }
    o->rmsnorm_forward(kv->buf, kv->rstd, kv->x, m->w.final_norm, nb, C, c->eps);
    /* row i of the packed result is sequence rows[i] */
    gpt_rows_matmul(o, kv->dlogits, kv->buf, m->w.lm_head, nb, C, c->V);
    for (int i = 0; i < nb; i++) {
        const int b = kv->rows[i];
        o->download(kv->logits + (size_t)b * c->V, kv->dlogits + (size_t)i * c->V,
                    sizeof(float) * (size_t)c->V);
    }
    for (int i = 0; i < nb; i++)
        kv->n[kv->rows[i]]++;
    return kv->logits;
}

const float *gpt_decode_step(struct gpt *m, struct gpt_kv *kv, int32_t token) {
    HW_ASSERT(kv->B == 1);
    return gpt_decode_batch(m, kv, &token, NULL);
}
