/* model/gpt.c -- the transformer: parameter table, carving, forward, backward, decoding
 * (see gpt.h). */
#include "gpt.h"
#include "gpt_memory.h"

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
    HW_ASSERT(gc->L <= GPT_MAX_LAYERS);
    for (int l = 0; l < gc->L; l++) {
        gc->moh[l] = (unsigned char)cfg_layer_moh(m, l);
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
    gpt_memory_config(gc, m);
}

/* Per-layer flags as text: "M.M." (L <= 64) or a count and a hash. */
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
    int any_moh = 0, any_s2 = 0;
    for (int l = 0; l < gc->L; l++) {
        any_moh |= gc->moh[l];
        any_s2 |= gc->s2[l];
    }
    char f[72];
    if (any_moh && k > 0 && (size_t)k < n) {
        layer_flags(f, sizeof(f), gc->moh, gc->L);
        k += snprintf(out + k, n - (size_t)k, " moh=%s/hs%d/k%d/%s%s", f, gc->moh_hs, gc->moh_k,
                      gc->moh_qnorm ? "qnorm" : "learned", gc->moh_literal ? "/literal" : "");
    }
    if (any_s2 && k > 0 && (size_t)k < n) {
        layer_flags(f, sizeof(f), gc->s2, gc->L);
        k += snprintf(out + k, n - (size_t)k, " s2=%s/b%d/l%d/v%d/o%d/d%d", f, gc->s2_block,
                      gc->s2_local, gc->s2_vert, gc->s2_offset, gc->s2_dense);
    }
    if (gc->dare && k > 0 && (size_t)k < n)
        snprintf(out + k, n - (size_t)k, " embedding=dare");
    gpt_memory_signature(gc, out, n);
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
    struct param *p = &m->params[m->n_params++];
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
    if (c->dare)
        add_param(m, &cap, "tok_emb_attn.weight", c->V, c->C, -1, 1, std);
    for (int l = 0; l < c->L; l++) {
#define P(suffix, r, cols, shard, decay, s)                                                        \
    do {                                                                                           \
        snprintf(nm, sizeof(nm), "blocks.%d.%s", l, suffix);                                       \
        add_param(m, &cap, nm, r, cols, shard, decay, s);                                          \
    } while (0)
        P("attn_norm.weight", c->C, 0, -1, 0, 0.0f);
        if (c->mem[l] != GPT_MEM_ONLY) { /* a memory-only layer has no attention */
            P("attn.wq", (int64_t)c->H * c->hd, c->C, 0, 1, std);
            P("attn.wk", (int64_t)c->Hkv * c->hd, c->C, 0, 1, std);
            P("attn.wv", (int64_t)c->Hkv * c->hd, c->C, 0, 1, std);
            P("attn.wo", c->C, (int64_t)c->H * c->hd, 1, 1, std_out);
        }
        if (c->moh[l]) {
            if (moh_nr(&m->moh) && !m->moh.qnorm)
                P("attn.moh_wr", moh_nr(&m->moh), c->C, -1, 1, std);
            if (moh_ns(&m->moh))
                P("attn.moh_ws", moh_ns(&m->moh), c->C, -1, 1, std);
            if (moh_nh(&m->moh))
                P("attn.moh_wh", moh_nh(&m->moh), c->C, -1, 1, std);
        }
        P("mlp_norm.weight", c->C, 0, -1, 0, 0.0f);
        if (c->mlp == GPT_MLP_SWIGLU) {
            P("mlp.w_gate", c->F, c->C, 0, 1, std);
            P("mlp.w_up", c->F, c->C, 0, 1, std);
        } else {
            P("mlp.w_up", c->F, c->C, 0, 1, std);
        }
        P("mlp.w_down", c->C, c->F, 1, 1, std_out);
        for (int j = 0; j < gpt_memory_n_tensors(c, l); j++) {
            const char *sfx;
            int64_t r, cols;
            int shard, dec;
            float s;
            gpt_memory_tensor(c, l, j, m->hp, &sfx, &r, &cols, &shard, &dec, &s);
            P(sfx, r, cols, shard, dec, s);
        }
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
    w->wte_attn = c->dare ? base + m->params[i++].offset : NULL;
    for (int l = 0; l < c->L; l++) {
        struct gpt_layer *y = &w->layers[l];
        y->attn_norm = base + m->params[i++].offset;
        y->wqkv = y->wo = NULL;
        if (c->mem[l] != GPT_MEM_ONLY) {
            y->wqkv = base + m->params[i].offset;
            i += 3;
            y->wo = base + m->params[i++].offset;
        }
        y->moh_wr = y->moh_ws = y->moh_wh = NULL;
        if (c->moh[l]) {
            if (moh_nr(&m->moh) && !m->moh.qnorm)
                y->moh_wr = base + m->params[i++].offset;
            if (moh_ns(&m->moh))
                y->moh_ws = base + m->params[i++].offset;
            if (moh_nh(&m->moh))
                y->moh_wh = base + m->params[i++].offset;
        }
        y->mlp_norm = base + m->params[i++].offset;
        y->w_in = base + m->params[i].offset;
        i += c->mlp == GPT_MLP_SWIGLU ? 2 : 1;
        y->w_out = base + m->params[i++].offset;
        gpt_memory_carve(c, l, y, i < m->n_params ? base + m->params[i].offset : NULL);
        i += gpt_memory_n_tensors(c, l);
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
    m->c.mem_cfg.ops = ops; /* the Titans module's GEMMs and buffers */
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
    for (int l = 0; l < gc->L; l++)
        m->n_moh += gc->moh[l] != 0;
    if (m->n_moh)
        moh_spec_init(&m->moh, gc->H, gc->moh_hs, gc->moh_k, gc->moh_literal, gc->moh_qnorm);
    for (int l = 0; l < gc->L; l++)
        if (gc->s2[l]) {
            s2_init(&m->s2, gc->s2_block, gc->s2_local, gc->s2_vert, gc->s2_offset, gc->s2_dense,
                    gc->H, gc->Hkv);
            break;
        }
    m->moh_aux_scale = 1.0f;
    m->moh_fsum = HW_CALLOC((size_t)gc->L * gc->H + 1, sizeof(double));
    m->moh_usage = HW_CALLOC((size_t)gc->L * gc->H + 1, sizeof(double));
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
        const struct param *p = &m->params[i];
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
    gpt_memory_init_weights(m, seed);
}

void gpt_alloc_acts(struct gpt *m, int B, int T) {
    const struct gpt_config *c = &m->c;
    HW_ASSERT(T * m->cp <= c->max_T);
    gpt_memory_alloc(m, B, T);
    if (m->act_mem && m->B == B && m->T == T)
        return;
    free(m->act_mem);
    free(m->acts);
    free(m->tokens);
    free(m->pos);
    free(m->cp_ctx);
    free(m->cp_mem);
    free(m->dare_mem);
    m->dare_mem = NULL;
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
    free(m->moh_mem);
    free(m->moh_imem);
    free(m->moh_dG);
    free(m->moh_dz);
    m->moh_mem = NULL;
    m->moh_imem = NULL;
    m->moh_dG = m->moh_dz = NULL;
    if (m->n_moh) {
        const size_t fl = moh_state_floats(&m->moh, (int)N);
        const size_t in =
            moh_state_ints(&m->moh, (int)N) + N * (size_t)m->Hl + (size_t)B * m->Hl + 1;
        m->moh_mem = alloc_floats(fl * (size_t)m->n_moh);
        m->moh_imem = HW_CALLOC(in * (size_t)m->n_moh, sizeof(int32_t));
        m->moh_dG = alloc_floats(N * (size_t)c->H);
        m->moh_dz =
            alloc_floats(N * (size_t)(moh_nr(&m->moh) + moh_ns(&m->moh) + moh_nh(&m->moh) + 1));
        for (int l = 0, j = 0; l < c->L; l++) {
            if (!c->moh[l])
                continue;
            struct gpt_layer_acts *a = &m->acts[l];
            int32_t *ip = m->moh_imem + in * (size_t)j;
            moh_state_carve(&a->moh, &m->moh, (int)N, m->moh_mem + fl * (size_t)j, ip);
            a->qsel = ip + moh_state_ints(&m->moh, (int)N);
            a->qsel_off = a->qsel + N * (size_t)m->Hl;
            j++;
        }
    }
    if (c->dare) {
        m->dare_mem = alloc_floats(3 * N * C + N + N * D);
        m->xa = m->dare_mem;
        m->na = m->xa + N * C;
        m->dxa = m->na + N * C;
        m->rstda = m->dxa + N * C;
        m->qkva = m->rstda + N;
    }
}

void gpt_moh_usage_reset(struct gpt *m) {
    memset(m->moh_usage, 0, sizeof(double) * ((size_t)m->c.L * m->c.H + 1));
    m->moh_usage_tok = 0.0;
}

void gpt_free(struct gpt *m) {
    gpt_memory_free(m);
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
    free(m->dare_mem);
    cp_work_free(m->ops, &m->cp_work);
    free(m->block_off);
    free(m->block_len);
    free(m->cls_logits);
    free(m->cls_last);
    free(m->moh_mem);
    free(m->moh_imem);
    free(m->moh_dG);
    free(m->moh_dz);
    free(m->moh_fsum);
    free(m->moh_usage);
    memset(m, 0, sizeof(*m));
}

void gpt_zero_grad(struct gpt *m) {
    memset(m->grad_mem, 0, sizeof(float) * m->num_params);
}

struct param_set gpt_param_set(struct gpt *m) {
    struct param_set s = {.be = m->ops,
                          .n = m->n_params,
                          .p = m->params,
                          .numel = m->num_params,
                          .w = m->param_mem,
                          .g = m->grad_mem};
    return s;
}

const struct param *gpt_find_param(const struct gpt *m, const char *name) {
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
    /* MoH layers compute hs + k of the H heads for each token */
    double attn = 0.0;
    for (int l = 0; l < c->L; l++) {
        double active = c->moh[l] && c->moh_k > 0 ? (double)(c->moh_hs + c->moh_k) / c->H : 1.0;
        attn += 3.0 * 2.0 * T * c->hd * c->H * active;
    }
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
    m->block_len[k++] = (size_t)(c->dare ? 2 : 1) * c->V * c->C; /* both tables with DARE */
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

/* ----------------------------------------------------------------------------------------- */
/* Mixture-of-Head attention (moh.h) inside the block */

/* Router of MoH layer l: logits from n1 (or the query norms), gates, balance statistics over
 * the global micro-batch, head usage, and each local head's selected token rows. */
static void moh_route(struct gpt *m, int l, int want_grad) {
    const struct gpt_config *c = &m->c;
    const struct moh_spec *sp = &m->moh;
    struct gpt_layer_acts *a = &m->acts[l];
    const struct gpt_layer *w = &m->w.layers[l];
    struct moh_state *st = &a->moh;
    const int B = m->B, T = m->T, N = B * T, C = c->C, H = c->H, hs = sp->hs, k = sp->k;
    const int E = sp->E, hd = c->hd, D = qkv_width(m), h0 = m->hp_rank * m->Hl;
    if (sp->qnorm) {
        /* |q| per routed head; RoPE keeps norms, so the rotated q serves */
        memset(st->qraw, 0, sizeof(float) * (size_t)N * E);
        for (int t = 0; t < N; t++)
            for (int h = 0; h < m->Hl; h++) {
                if (h0 + h < hs)
                    continue;
                const float *q = a->qkv + (size_t)t * D + (size_t)h * hd;
                double ss = 0.0;
                for (int d = 0; d < hd; d++)
                    ss += (double)q[d] * q[d];
                st->qraw[(size_t)t * E + (h0 + h - hs)] = (float)sqrt(ss);
            }
        hp_sum(m, st->qraw, (size_t)N * E);
    } else {
        if (moh_nr(sp))
            m->ops->matmul_forward(st->zr, a->n1, w->moh_wr, N, C, moh_nr(sp), 0.0f);
        if (moh_ns(sp))
            m->ops->matmul_forward(st->zs, a->n1, w->moh_ws, N, C, moh_ns(sp), 0.0f);
        if (moh_nh(sp))
            m->ops->matmul_forward(st->zh, a->n1, w->moh_wh, N, C, moh_nh(sp), 0.0f);
    }
    m->ops->moh_router_forward(sp, N, st);

    /* balance statistics over every token of the global micro-batch (data x context ranks),
     * so that the loss does not depend on the rank grid */
    double *v = HW_CALLOC(2 * (size_t)E + 1, sizeof(double));
    m->ops->moh_balance_sums(sp, N, st, v, v + E);
    v[2 * E] = N;
    if (m->d)
        dist_allreduce_group_doubles(m->d, DIST_DPCP, v, 2 * E + 1);
    double *fsum = m->moh_fsum + (size_t)l * H;
    memcpy(fsum, v + E, sizeof(double) * (size_t)E);
    m->moh_ntok = v[2 * E];
    if (k > 0)
        m->moh_aux += c->moh_coef / m->n_moh * moh_balance_loss(sp, v, v + E, v[2 * E]);
    if (want_grad) {
        double *u = m->moh_usage + (size_t)l * H;
        for (int i = 0; i < H; i++)
            u[i] += i < hs || k == 0 ? v[2 * E] : fsum[i - hs];
    }
    free(v);

    /* rows of each (b, local head): shared heads see every token, routed heads the tokens
     * that selected them */
    int32_t *idx = a->qsel, *off = a->qsel_off;
    int n = 0;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < m->Hl; h++) {
            const int hg = h0 + h;
            off[b * m->Hl + h] = n;
            for (int t = 0; t < T; t++) {
                const size_t row = (size_t)b * T + t;
                int on = hg < hs || k == 0;
                for (int j = 0; j < k && !on; j++)
                    on = st->sel[row * k + j] == hg - hs;
                if (on)
                    idx[n++] = t;
            }
        }
    off[B * m->Hl] = n;
}

/* dst (N, Hl*hd) = att scaled per head by this rank's columns of the gates G (N, H) */
static void moh_gate(const struct gpt *m, float *dst, const float *att, const float *G, int N) {
    const int hd = m->c.hd, HD = m->Hl * hd, H = m->c.H, h0 = m->hp_rank * m->Hl;
    for (int t = 0; t < N; t++)
        for (int h = 0; h < m->Hl; h++) {
            const float g = G[(size_t)t * H + h0 + h];
            const float *x = att + (size_t)t * HD + (size_t)h * hd;
            float *y = dst + (size_t)t * HD + (size_t)h * hd;
            for (int d = 0; d < hd; d++)
                y[d] = g * x[d];
        }
}

/* Backward through the gates: datt holds dL/d(gated att); leaves dL/datt in datt and the
 * router logit gradients in m->moh_dz (zr | zs | zh). */
static void moh_gate_backward(struct gpt *m, int l) {
    const struct gpt_config *c = &m->c;
    const struct moh_spec *sp = &m->moh;
    struct gpt_layer_acts *a = &m->acts[l];
    const int N = m->B * m->T, hd = c->hd, HD = m->Hl * hd, H = c->H, h0 = m->hp_rank * m->Hl;
    float *dG = m->moh_dG;
    memset(dG, 0, sizeof(float) * (size_t)N * H);
    for (int t = 0; t < N; t++)
        for (int h = 0; h < m->Hl; h++) {
            float *dy = m->datt + (size_t)t * HD + (size_t)h * hd;
            const float *x = a->att + (size_t)t * HD + (size_t)h * hd;
            const float g = a->moh.G[(size_t)t * H + h0 + h];
            float acc = 0.0f;
            for (int d = 0; d < hd; d++) {
                acc += dy[d] * x[d];
                dy[d] *= g;
            }
            dG[(size_t)t * H + h0 + h] = acc;
        }
    hp_sum(m, dG, (size_t)N * H);
    const int nr = moh_nr(sp), ns = moh_ns(sp);
    const float bal = sp->k > 0 ? c->moh_coef / m->n_moh * m->moh_aux_scale : 0.0f;
    m->ops->moh_router_backward(sp, N, &a->moh, dG, bal, m->moh_fsum + (size_t)l * H, m->moh_ntok,
                                m->moh_dz, m->moh_dz + (size_t)N * nr,
                                m->moh_dz + (size_t)N * (nr + ns));
}

/* qnorm router: add d|q|/dq to the local routed query heads of dqkv (after the attention
 * backward, before RoPE's). */
static void moh_qnorm_backward(struct gpt *m, int l) {
    const struct moh_spec *sp = &m->moh;
    const struct gpt_layer_acts *a = &m->acts[l];
    const int N = m->B * m->T, hd = m->c.hd, D = qkv_width(m), h0 = m->hp_rank * m->Hl;
    for (int t = 0; t < N; t++)
        for (int h = 0; h < m->Hl; h++) {
            if (h0 + h < sp->hs)
                continue;
            const float dz = m->moh_dz[(size_t)t * sp->E + (h0 + h - sp->hs)];
            const float nrm = a->moh.qraw[(size_t)t * sp->E + (h0 + h - sp->hs)];
            if (dz == 0.0f || nrm <= 0.0f)
                continue;
            const float *q = a->qkv + (size_t)t * D + (size_t)h * hd;
            float *dq = m->dqkv + (size_t)t * D + (size_t)h * hd;
            for (int d = 0; d < hd; d++)
                dq[d] += dz * q[d] / nrm;
        }
}

/* learned router: dn1 += dz W, dW += dz^T n1 (replicated over head ranks: after hp_sum) */
static void moh_router_backward(struct gpt *m, int l) {
    const struct moh_spec *sp = &m->moh;
    const struct gpt_layer_acts *a = &m->acts[l];
    const struct gpt_layer *w = &m->w.layers[l];
    struct gpt_layer *g = &m->g.layers[l];
    const int N = m->B * m->T, C = m->c.C, nr = moh_nr(sp), ns = moh_ns(sp), nh = moh_nh(sp);
    if (sp->qnorm)
        return;
    if (nr)
        m->ops->matmul_backward(m->dn, g->moh_wr, m->moh_dz, a->n1, w->moh_wr, N, C, nr, 1.0f);
    if (ns)
        m->ops->matmul_backward(m->dn, g->moh_ws, m->moh_dz + (size_t)N * nr, a->n1, w->moh_ws, N,
                                C, ns, 1.0f);
    if (nh)
        m->ops->matmul_backward(m->dn, g->moh_wh, m->moh_dz + (size_t)N * (nr + ns), a->n1,
                                w->moh_wh, N, C, nh, 1.0f);
}

static struct attn_shape layer_attn_shape(struct gpt *m, int l) {
    struct attn_shape as = local_attn_shape(m, m->B, m->T);
    if (m->mem)
        gpt_memory_prefix_shape(m, l, &as); /* MAG's persistent tokens */
    if (m->c.s2[l]) {
        as.s2 = &m->s2;
        as.head0 = m->hp_rank * m->Hl;
    }
    if (m->c.moh[l] && m->moh.k > 0) {
        as.qsel = m->acts[l].qsel;
        as.qsel_off = m->acts[l].qsel_off;
    }
    return as;
}

/* Embedding, blocks and the final norm: leaves n_final (B*T, C). */
static void forward_trunk(struct gpt *m, const int32_t *tokens, int B, int T, int want_grad) {
    const struct gpt_config *c = &m->c;
    const struct ops *o = m->ops;
    gpt_alloc_acts(m, B, T);
    const int N = B * T, C = c->C, D = qkv_width(m), HD = m->Hl * c->hd;
    const int Fin = fin_width(m), F = m->Fl;
    const size_t NC = (size_t)N * C;
    memcpy(m->tokens, tokens, sizeof(int32_t) * (size_t)N);
    m->moh_aux = 0.0;
    if (want_grad && m->n_moh)
        m->moh_usage_tok += N * (double)(m->d ? dist_group_size(m->d, DIST_DPCP) : 1);
    o->embed_forward(m->acts[0].x_in, tokens, m->w.wte, N, C);
    for (int l = 0; l < c->L; l++) {
        struct gpt_layer_acts *a = &m->acts[l];
        const struct gpt_layer *w = &m->w.layers[l];
        float *x_out = l + 1 < c->L ? m->acts[l + 1].x_in : m->x_final;
        if (c->mem[l] == GPT_MEM_MAL)
            gpt_memory_mal_forward(m, l, a->x_in);
        o->rmsnorm_forward(a->n1, a->rstd1, a->x_in, w->attn_norm, N, C, c->eps);
        if (c->mem[l] >= GPT_MEM_ONLY)
            goto attn_branch; /* the memory replaces (or runs) the attention (gpt_memory.h) */
        o->matmul_forward(a->qkv, a->n1, w->wqkv, N, C, D, 0.0f);
        if (c->dare && l == 0) { /* Q and K from the attention table */
            const int QK = HD + m->Hkvl * c->hd;
            o->embed_forward(m->xa, tokens, m->w.wte_attn, N, C);
            o->rmsnorm_forward(m->na, m->rstda, m->xa, w->attn_norm, N, C, c->eps);
            o->matmul_forward(m->qkva, m->na, w->wqkv, N, C, D, 0.0f);
            for (int i = 0; i < N; i++)
                memcpy(a->qkv + (size_t)i * D, m->qkva + (size_t)i * D, sizeof(float) * QK);
        }
        o->rope_forward(a->qkv, m->rope_cos, m->rope_sin, B, T, m->Hl, c->hd, D, m->pos);
        o->rope_forward(a->qkv + HD, m->rope_cos, m->rope_sin, B, T, m->Hkvl, c->hd, D, m->pos);
        if (c->moh[l])
            moh_route(m, l, want_grad);
        if (m->mem)
            gpt_memory_prefix_forward(m, l);
        struct attn_shape as = layer_attn_shape(m, l);
        if (m->cp > 1)
            cp_attention_forward(m->ops, m->d, a->att, a->lse, a->qkv, &as, &m->cp_ctx[l],
                                 &m->cp_work);
        else
            o->attention_forward(a->att, a->lse, a->qkv, &as);
        if (c->moh[l]) {
            moh_gate(m, m->datt, a->att, a->moh.G, N);
            o->matmul_forward(m->dn, m->datt, w->wo, N, HD, C, 0.0f);
        } else {
            o->matmul_forward(m->dn, a->att, w->wo, N, HD, C, 0.0f);
        }
        hp_sum(m, m->dn, NC);
    attn_branch:
        if (c->mem[l] >= GPT_MEM_MAG)
            gpt_memory_attn_forward(m, l, a->n1, m->dn);
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
    forward_trunk(m, tokens, B, T, want_grad);
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
    forward_trunk(m, tokens, B, T, want_grad);
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
        struct attn_shape as = layer_attn_shape(m, l);
        const float *dwo = c->mem[l] ? gpt_memory_attn_backward(m, l, m->dx) : m->dx;
        if (c->mem[l] >= GPT_MEM_ONLY) { /* memory-only or MAC: the memory did it all */
            memset(m->dn, 0, sizeof(float) * NC);
            goto attn_input;
        }
        if (c->moh[l]) {
            moh_gate(m, m->dqkv, a->att, a->moh.G, N); /* the gated input of wo, again */
            o->matmul_backward(m->datt, g->wo, dwo, m->dqkv, w->wo, N, HD, C, 0.0f);
            moh_gate_backward(m, l);
        } else {
            o->matmul_backward(m->datt, g->wo, dwo, a->att, w->wo, N, HD, C, 0.0f);
        }
        progress(m);
        if (m->cp > 1)
            cp_attention_backward(m->ops, m->d, m->dqkv, m->datt, a->att, a->lse, a->qkv, &as,
                                  &m->cp_ctx[l], &m->cp_work);
        else
            o->attention_backward(m->dqkv, m->datt, a->att, a->lse, a->qkv, &as);
        if (m->mem)
            gpt_memory_prefix_backward(m, l);
        if (c->moh[l] && m->moh.qnorm)
            moh_qnorm_backward(m, l);
        o->rope_backward(m->dqkv, m->rope_cos, m->rope_sin, B, T, m->Hl, c->hd, D, m->pos);
        o->rope_backward(m->dqkv + HD, m->rope_cos, m->rope_sin, B, T, m->Hkvl, c->hd, D, m->pos);
        progress(m);
        if (c->dare && l == 0) { /* Q, K gradients go to the attention table, V's stay */
            const int QK = HD + m->Hkvl * c->hd;
            for (int i = 0; i < N; i++) {
                float *src = m->dqkv + (size_t)i * D, *dst = m->qkva + (size_t)i * D;
                memcpy(dst, src, sizeof(float) * QK);
                memset(dst + QK, 0, sizeof(float) * (size_t)(D - QK));
                memset(src, 0, sizeof(float) * QK);
            }
            o->matmul_backward(m->dxa, g->wqkv, m->qkva, m->na, w->wqkv, N, C, D, 0.0f);
            hp_sum(m, m->dxa, NC);
            memset(m->na, 0, sizeof(float) * NC);
            o->rmsnorm_backward(m->na, g->attn_norm, m->dxa, m->xa, w->attn_norm, m->rstda, N, C);
            o->embed_backward(m->g.wte_attn, m->na, m->tokens, N, C);
        }
        o->matmul_backward(m->dn, g->wqkv, m->dqkv, a->n1, w->wqkv, N, C, D, 0.0f);
        progress(m);
        hp_sum(m, m->dn, NC);
        if (c->moh[l])
            moh_router_backward(m, l);
    attn_input:
        if (c->mem[l])
            gpt_memory_add_dn(m, l, m->dn);
        o->rmsnorm_backward(m->dx, g->attn_norm, m->dn, a->x_in, w->attn_norm, a->rstd1, N, C);
        if (c->mem[l] == GPT_MEM_MAL)
            gpt_memory_mal_backward(m, l, m->dx);
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
    kv->L = c->L;
    kv->Hkv = c->Hkv;
    kv->n = HW_CALLOC((size_t)B, sizeof(int));
    size_t kvw = (size_t)c->Hkv * c->hd, Bs = (size_t)B;
    int n_dense = 0, n_s2 = 0;
    for (int l = 0; l < c->L; l++)
        c->s2[l] ? n_s2++ : n_dense++;
    /* dense layers are indexed by l in kv->k; S2 layers' rows there are never touched, so
     * only allocate the dense block when some layer is dense */
    for (int l = 0; l < c->L; l++)
        kv->pre = gpt_memory_prefix_rows(c, l) > kv->pre ? gpt_memory_prefix_rows(c, l) : kv->pre;
    const size_t rows = (size_t)kv->pre + max_T; /* per (layer, sequence) */
    kv->k = alloc_floats(n_dense ? (size_t)c->L * Bs * rows * kvw : 1);
    kv->v = alloc_floats(n_dense ? (size_t)c->L * Bs * rows * kvw : 1);
    kv->pq = alloc_floats((size_t)kv->pre * qkv_width(m));
    kv->floats = 2 * (size_t)n_dense * Bs * rows * kvw;
    kv->floats_dense = 2 * (size_t)c->L * Bs * max_T * kvw;
    if (n_s2) {
        const size_t slots = (size_t)c->L * Bs * c->Hkv;
        kv->s2k = HW_CALLOC(slots, sizeof(float *));
        kv->s2v = HW_CALLOC(slots, sizeof(float *));
        kv->s2pos = HW_CALLOC(slots, sizeof(int32_t *));
        kv->s2n = HW_CALLOC(slots, sizeof(int));
        kv->s2cap = HW_CALLOC(slots, sizeof(int));
        const struct s2_pattern *p = &m->s2;
        const int nblk = (max_T + p->block - 1) / p->block;
        for (int l = 0; l < c->L; l++) {
            if (!c->s2[l])
                continue;
            for (int b = 0; b < B; b++)
                for (int g = 0; g < c->Hkv; g++) {
                    /* the blocks kept for the last query block: the count never falls as
                     * the query block advances (a block leaving the window is replaced) */
                    int cap = 0;
                    for (int kb = 0; kb < nblk; kb++)
                        cap += s2_active(p, g, nblk - 1, kb) * p->block;
                    cap = (cap > max_T ? max_T : cap) + gpt_memory_prefix_rows(c, l);
                    const size_t sl = ((size_t)l * Bs + b) * c->Hkv + g;
                    kv->s2cap[sl] = cap;
                    kv->s2k[sl] = alloc_floats((size_t)cap * c->hd);
                    kv->s2v[sl] = alloc_floats((size_t)cap * c->hd);
                    kv->s2pos[sl] = HW_CALLOC((size_t)cap, sizeof(int32_t));
                    kv->floats += 2 * (size_t)cap * c->hd;
                }
        }
    }
    if (m->n_moh) {
        kv->moh_f = alloc_floats(moh_state_floats(&m->moh, 1));
        kv->moh_i = HW_CALLOC(moh_state_ints(&m->moh, 1) + 1, sizeof(int32_t));
        kv->gate = alloc_floats((size_t)c->H);
    }
    kv->x = alloc_floats(Bs * c->C);
    kv->buf = alloc_floats(Bs * c->C);
    kv->tmp = alloc_floats(Bs * c->C);
    kv->qkv = alloc_floats(Bs * qkv_width(m));
    kv->att = alloc_floats(Bs * c->H * c->hd);
    kv->h = alloc_floats(Bs * fin_width(m));
    kv->a = alloc_floats(Bs * c->F);
    kv->rstd = alloc_floats(Bs);
    kv->scratch = alloc_floats(rows + 1);
    kv->logits = alloc_floats(Bs * c->V);
    kv->rows = HW_CALLOC(Bs, sizeof(int));
    kv->tok = HW_CALLOC(Bs, sizeof(int32_t));
    if (c->dare) {
        kv->xa = alloc_floats(2 * Bs * c->C);
        kv->qkva = alloc_floats(Bs * qkv_width(m));
    }
    kv->mem = gpt_memory_kv_init(m, B);
    kv->steer_alpha = 1.0f;
    kv->user = HW_CALLOC(Bs * (size_t)max_T, 1);
    kv->user_rows = HW_CALLOC(rows + 1, 1);
}

void gpt_kv_reset(struct gpt_kv *kv, int b) {
    kv->n[b] = 0;
    gpt_memory_kv_reset(kv->mem, b);
    if (kv->s2n)
        for (size_t sl = 0; sl < (size_t)kv->L * kv->B * kv->Hkv; sl++)
            if ((int)(sl / kv->Hkv % kv->B) == b)
                kv->s2n[sl] = 0;
    memset(kv->user + (size_t)b * kv->max_T, 0, (size_t)kv->max_T);
}

void gpt_kv_free(struct gpt_kv *kv) {
    if (kv->s2k)
        for (size_t sl = 0; sl < (size_t)kv->L * kv->B * kv->Hkv; sl++) {
            free(kv->s2k[sl]);
            free(kv->s2v[sl]);
            free(kv->s2pos[sl]);
        }
    free(kv->s2k);
    free(kv->s2v);
    free(kv->s2pos);
    free(kv->s2n);
    free(kv->s2cap);
    free(kv->moh_f);
    free(kv->moh_i);
    free(kv->gate);
    free(kv->n);
    free(kv->k);
    free(kv->v);
    free(kv->pq);
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
    free(kv->xa);
    free(kv->qkva);
    gpt_memory_kv_free(kv->mem);
    free(kv->user);
    free(kv->user_rows);
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

/* Attention of one decoded token over n cached rows (stride ld, kv heads side by side): every
 * head, or with MoH gates only the selected heads, scaled by their gates; with PASTA steering
 * (kv->steer_alpha != 1) the rows whose user flag is 0 are down-weighted. */
static void decode_heads(const struct gpt *m, struct gpt_kv *kv, float *att, const float *q,
                         const float *kc, const float *vc, int n, int ld, const uint8_t *user,
                         const float *gate) {
    const struct gpt_config *c = &m->c;
    const struct ops *o = m->ops;
    const int steer = kv->steer_alpha != 1.0f;
    if (!gate) {
        if (steer)
            o->attention_decode_steer(att, q, kc, vc, n, ld, c->H, c->Hkv, c->hd, kv->scratch, user,
                                      kv->steer_alpha);
        else
            o->attention_decode(att, q, kc, vc, n, ld, c->H, c->Hkv, c->hd, kv->scratch);
        return;
    }
    /* MoH: only the heads this token selected */
    for (int h = 0; h < c->H; h++) {
        float *oh = att + (size_t)h * c->hd;
        const size_t kvo = (size_t)(h / (c->H / c->Hkv)) * c->hd;
        if (gate[h] == 0.0f) {
            memset(oh, 0, sizeof(float) * c->hd);
            continue;
        }
        if (steer)
            o->attention_decode_steer(oh, q + (size_t)h * c->hd, kc + kvo, vc + kvo, n, ld, 1, 1,
                                      c->hd, kv->scratch, user, kv->steer_alpha);
        else
            o->attention_decode(oh, q + (size_t)h * c->hd, kc + kvo, vc + kvo, n, ld, 1, 1, c->hd,
                                kv->scratch);
        for (int d = 0; d < c->hd; d++)
            oh[d] *= gate[h];
    }
}

/* MoH gates of one decoded token (n1 row x, rotated queries q); NULL-free: kv->gate (H).
 * A head whose gate is exactly 0 is skipped; a selected head with an underflowed gate adds
 * nothing either way. */
static const float *decode_gates(struct gpt *m, struct gpt_kv *kv, int l, const float *x,
                                 const float *q) {
    const struct moh_spec *sp = &m->moh;
    const struct gpt_layer *w = &m->w.layers[l];
    const int C = m->c.C, hd = m->c.hd;
    struct moh_state st;
    moh_state_carve(&st, sp, 1, kv->moh_f, kv->moh_i);
    if (sp->qnorm) {
        for (int i = 0; i < sp->E; i++) {
            const float *qh = q + (size_t)(sp->hs + i) * hd;
            double ss = 0.0;
            for (int d = 0; d < hd; d++)
                ss += (double)qh[d] * qh[d];
            st.qraw[i] = (float)sqrt(ss);
        }
    } else {
        if (moh_nr(sp))
            m->ops->matmul_forward(st.zr, x, w->moh_wr, 1, C, moh_nr(sp), 0.0f);
        if (moh_ns(sp))
            m->ops->matmul_forward(st.zs, x, w->moh_ws, 1, C, moh_ns(sp), 0.0f);
        if (moh_nh(sp))
            m->ops->matmul_forward(st.zh, x, w->moh_wh, 1, C, moh_nh(sp), 0.0f);
    }
    m->ops->moh_router_forward(sp, 1, &st);
    /* mark unselected routed heads with exact zeros (a selected head keeps its gate) */
    for (int i = 0; i < m->c.H; i++)
        kv->gate[i] = st.G[i];
    if (sp->k > 0)
        for (int i = 0; i < sp->E; i++) {
            int on = 0;
            for (int j = 0; j < sp->k; j++)
                on |= st.sel[j] == i;
            if (!on)
                kv->gate[sp->hs + i] = 0.0f;
        }
    return kv->gate;
}

/* S2 layer: append this position's K/V to each kv head's compact cache (evicting the blocks
 * the pattern no longer needs when a new block starts), then attend every query head (or the
 * MoH-selected ones) over its kv head's kept rows. */
static void decode_s2(struct gpt *m, struct gpt_kv *kv, int l, int b, int pos, const float *q,
                      float *att, const float *gate) {
    const struct gpt_config *c = &m->c;
    const struct s2_pattern *p = &m->s2;
    const int hd = c->hd, HD = c->H * hd, kvw = c->Hkv * hd, group = c->H / c->Hkv;
    size_t rows = 0;
    for (int g = 0; g < c->Hkv; g++) {
        const size_t sl = ((size_t)l * kv->B + b) * c->Hkv + g;
        float *kc = kv->s2k[sl], *vc = kv->s2v[sl];
        int32_t *kp = kv->s2pos[sl];
        int n = kv->s2n[sl];
        if (pos % p->block == 0) {
            const int64_t qb = pos / p->block;
            int keep = 0;
            for (int j = 0; j < n; j++) {
                const int64_t kb = kp[j] / p->block;
                if (kp[j] >= 0 && !(qb - kb < p->local || s2_vert(p, g, kb)))
                    continue; /* persistent rows (negative positions) stay */
                if (keep != j) {
                    memcpy(kc + (size_t)keep * hd, kc + (size_t)j * hd, sizeof(float) * hd);
                    memcpy(vc + (size_t)keep * hd, vc + (size_t)j * hd, sizeof(float) * hd);
                    kp[keep] = kp[j];
                }
                keep++;
            }
            n = keep;
        }
        HW_ASSERT(n < kv->s2cap[sl]);
        memcpy(kc + (size_t)n * hd, q + HD + (size_t)g * hd, sizeof(float) * hd);
        memcpy(vc + (size_t)n * hd, q + HD + kvw + (size_t)g * hd, sizeof(float) * hd);
        kp[n++] = pos;
        kv->s2n[sl] = n;
        rows += (size_t)n;
        /* PASTA: the user flags of the kept rows */
        uint8_t *user = kv->user_rows;
        for (int j = 0; j < n && kv->steer_alpha != 1.0f; j++)
            user[j] = kp[j] < 0 || kv->user[(size_t)b * kv->max_T + kp[j]];
        for (int h = g * group; h < (g + 1) * group; h++) {
            float *oh = att + (size_t)h * hd;
            if (gate && gate[h] == 0.0f) {
                memset(oh, 0, sizeof(float) * hd);
                continue;
            }
            if (kv->steer_alpha != 1.0f)
                m->ops->attention_decode_steer(oh, q + (size_t)h * hd, kc, vc, n, hd, 1, 1, hd,
                                               kv->scratch, user, kv->steer_alpha);
            else
                m->ops->attention_decode(oh, q + (size_t)h * hd, kc, vc, n, hd, 1, 1, hd,
                                         kv->scratch);
            if (gate)
                for (int d = 0; d < hd; d++)
                    oh[d] *= gate[h];
        }
    }
    kv->rows_peak = rows > kv->rows_peak ? rows : kv->rows_peak;
}

/* A new sequence in slot b: the persistent rows of MAG layer l lead its cache (dense: the pre
 * rows before position 0; S2: rows at positions -np..-1 that are never evicted). */
static void decode_prefix(struct gpt *m, struct gpt_kv *kv, int l, int b) {
    const struct gpt_config *c = &m->c;
    const int np = gpt_memory_prefix_rows(c, l), D = qkv_width(m), HD = c->H * c->hd;
    const int kvw = c->Hkv * c->hd;
    float *pq = kv->pq;
    m->ops->matmul_forward(pq, m->w.layers[l].mem_persist, m->w.layers[l].wqkv, np, c->C, D, 0.0f);
    for (int r = 0; r < np; r++)
        m->ops->rope_forward(pq + (size_t)r * D + HD, m->rope_cos, m->rope_sin, 1, 1, c->Hkv, c->hd,
                             D, &r);
    if (!c->s2[l]) {
        const size_t slot = ((size_t)l * kv->B + b) * (size_t)(kv->pre + kv->max_T);
        for (int r = 0; r < np; r++) {
            const size_t row = slot + (size_t)(kv->pre - np + r);
            memcpy(kv->k + row * kvw, pq + (size_t)r * D + HD, sizeof(float) * kvw);
            memcpy(kv->v + row * kvw, pq + (size_t)r * D + HD + kvw, sizeof(float) * kvw);
        }
        return;
    }
    for (int g = 0; g < c->Hkv; g++) {
        const size_t sl = ((size_t)l * kv->B + b) * c->Hkv + g;
        for (int r = 0; r < np; r++) {
            memcpy(kv->s2k[sl] + (size_t)r * c->hd, pq + (size_t)r * D + HD + (size_t)g * c->hd,
                   sizeof(float) * c->hd);
            memcpy(kv->s2v[sl] + (size_t)r * c->hd,
                   pq + (size_t)r * D + HD + kvw + (size_t)g * c->hd, sizeof(float) * c->hd);
            kv->s2pos[sl][r] = r - np;
        }
        kv->s2n[sl] = np;
    }
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
        if (c->mem[l] == GPT_MEM_MAL)
            gpt_memory_decode_mal(m, kv->mem, l, nb, kv->rows, kv->x);
        o->rmsnorm_forward(kv->buf, kv->rstd, kv->x, w->attn_norm, nb, C, c->eps);
        if (c->mem[l] == GPT_MEM_ONLY) /* the memory replaces the attention branch */
            goto attn_branch;
        rows_matmul(o, kv->qkv, kv->buf, w->wqkv, nb, C, D);
        if (c->mem[l] == GPT_MEM_MAC) {
            gpt_mac_decode_attn(m, kv->mem, l, nb, kv->rows, kv->n, kv->buf, kv->qkv, kv->att);
            goto attn_out;
        }
        if (c->dare && l == 0) {
            float *na = kv->xa + (size_t)nb * C;
            o->embed_forward(kv->xa, kv->tok, m->w.wte_attn, nb, C);
            o->rmsnorm_forward(na, kv->rstd, kv->xa, w->attn_norm, nb, C, c->eps);
            rows_matmul(o, kv->qkva, na, w->wqkv, nb, C, D);
            for (int i = 0; i < nb; i++)
                memcpy(kv->qkv + (size_t)i * D, kv->qkva + (size_t)i * D,
                       sizeof(float) * (size_t)(HD + kvw));
        }
        for (int i = 0; i < nb; i++) {
            const int b = kv->rows[i], pos = kv->n[b];
            float *q = kv->qkv + (size_t)i * D, *att = kv->att + (size_t)i * HD;
            if (pos == 0 && gpt_memory_prefix_rows(c, l))
                decode_prefix(m, kv, l, b);
            o->rope_forward(q, m->rope_cos, m->rope_sin, 1, 1, c->H, c->hd, D, &pos);
            o->rope_forward(q + HD, m->rope_cos, m->rope_sin, 1, 1, c->Hkv, c->hd, D, &pos);
            const float *gate =
                c->moh[l] ? decode_gates(m, kv, l, kv->buf + (size_t)i * C, q) : NULL;
            if (c->s2[l]) {
                decode_s2(m, kv, l, b, pos, q, att, gate);
                continue;
            }
            const size_t slot = ((size_t)l * kv->B + b) * (size_t)(kv->pre + kv->max_T);
            float *kc = kv->k + (slot + (size_t)kv->pre) * kvw;
            float *vc = kv->v + (slot + (size_t)kv->pre) * kvw;
            memcpy(kc + (size_t)pos * kvw, q + HD, sizeof(float) * (size_t)kvw);
            memcpy(vc + (size_t)pos * kvw, q + HD + kvw, sizeof(float) * (size_t)kvw);
            const int np = gpt_memory_prefix_rows(c, l);
            const uint8_t *user = kv->user + (size_t)b * kv->max_T;
            if (np && kv->steer_alpha != 1.0f) { /* persistent rows are never steered */
                memset(kv->user_rows, 1, (size_t)np);
                memcpy(kv->user_rows + np, user, (size_t)pos + 1);
                user = kv->user_rows;
            }
            decode_heads(m, kv, att, q, kc - (size_t)np * kvw, vc - (size_t)np * kvw, pos + 1 + np,
                         kvw, user, gate);
        }
    attn_out:
        rows_matmul(o, kv->tmp, kv->att, w->wo, nb, HD, C);
    attn_branch:
        if (c->mem[l] >= GPT_MEM_MAG)
            gpt_memory_decode_attn(m, kv->mem, l, nb, kv->rows, kv->buf, kv->tmp);
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
