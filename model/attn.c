/* model/attn.c -- the attention machinery of the attention kinds (see attn.h). */
#include "attn.h"

#include "../core/check.h"
#include "../ops/moh.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void attn_init(struct attn *a, struct layer *ly) {
    struct gpt *m = ly->m;
    const struct gpt_config *c = &m->c;
    memset(a, 0, sizeof(*a));
    a->m = m;
    a->l = ly->l;
    a->HD = m->Hl * c->hd;
    a->kvw = m->Hkvl * c->hd;
    a->D = a->HD + 2 * a->kvw;
    a->s2 = c->s2[ly->l];
    if (a->s2)
        s2_init(&a->pat, c->s2_block, c->s2_local, c->s2_vert, c->s2_offset, c->s2_dense, c->H,
                c->Hkv);
    a->dare = c->dare && ly->l == 0;
}

void attn_params(struct layer *ly, struct param_table *t) {
    const struct gpt_config *c = &ly->m->c;
    const float std = c->init_std, std_out = c->init_std / sqrtf(2.0f * (float)c->L);
    layer_param(ly, t, "attn.wq", (int64_t)c->H * c->hd, c->C, 0, 1, std);
    layer_param(ly, t, "attn.wk", (int64_t)c->Hkv * c->hd, c->C, 0, 1, std);
    layer_param(ly, t, "attn.wv", (int64_t)c->Hkv * c->hd, c->C, 0, 1, std);
    layer_param(ly, t, "attn.wo", c->C, (int64_t)c->H * c->hd, 1, 1, std_out);
}

void attn_bind(struct attn *a, struct layer *ly) {
    struct gpt *m = ly->m;
    a->w_qkv =
        linear_of(&m->params[layer_param_index(ly, "attn.wq")], 3, m->param_mem, m->grad_mem);
    a->w_o = linear_of(&m->params[layer_param_index(ly, "attn.wo")], 1, m->param_mem, m->grad_mem);
}

int attn_caps(const struct attn *a, enum ops_cap *caps) {
    int n = 0;
    caps[n++] = OPS_CAP_CORE;
    if (a->s2)
        caps[n++] = OPS_CAP_ATTN_S2;
    if (a->np)
        caps[n++] = OPS_CAP_ATTN_PREFIX;
    if (a->m->tp.cp > 1)
        caps[n++] = OPS_CAP_ATTN_RING;
    return n;
}

void attn_free(struct attn *a) {
    if (!a->m)
        return;
    const struct ops *o = a->m->ops;
    if (!a->qkv_shared)
        o->free(a->qkv);
    a->qkv_shared = 0;
    o->free(a->att);
    o->free(a->lse);
    o->free(a->cp_mem);
    o->free(a->pq);
    o->free(a->dpq);
    o->free(a->pdP);
    o->free(a->ppos);
    o->free(a->xa);
    a->qkv = a->att = a->lse = a->cp_mem = a->pq = a->dpq = a->pdP = a->xa = NULL;
    a->ppos = NULL;
    a->B = a->T = 0;
}

/* Positions 0..np-1 of the persistent rows (backend memory), made once. */
static void prefix_positions(struct attn *a) {
    if (a->ppos || !a->np)
        return;
    int32_t *p = HW_MALLOC(sizeof(int32_t) * (size_t)a->np);
    for (int i = 0; i < a->np; i++)
        p[i] = i;
    a->ppos = a->m->ops->alloc(sizeof(int32_t) * (size_t)a->np);
    a->m->ops->upload(a->ppos, p, sizeof(int32_t) * (size_t)a->np);
    free(p);
}

void attn_alloc(struct attn *a, int B, int T) {
    struct gpt *m = a->m;
    const struct ops *o = m->ops;
    const struct gpt_config *c = &m->c;
    const size_t N = (size_t)B * T, C = (size_t)c->C;
    gpt_scratch_need(m, GPT_SCR_DATT, N * a->HD);
    gpt_scratch_need(m, GPT_SCR_DQKV, N * a->D);
    const int share = m->recompute == GPT_RECOMPUTE_ATTENTION;
    if (share)
        gpt_scratch_need(m, GPT_SCR_QKV, N * a->D);
    if (a->att && a->B == B && a->T == T && a->qkv_shared == share)
        return;
    attn_free(a);
    a->B = B;
    a->T = T;
    a->qkv_shared = share; /* the buffer is found at each use: the scratch may move */
    a->qkv = share ? NULL : o->alloc(sizeof(float) * N * a->D);
    a->att = o->alloc(sizeof(float) * N * a->HD);
    a->lse = o->alloc(sizeof(float) * (size_t)B * m->Hl * T);
    memset(&a->cpx, 0, sizeof(a->cpx));
    if (m->tp.cp > 1) {
        struct attn_shape as = {
            .B = B, .T = T, .H = m->Hl, .Hkv = m->Hkvl, .hd = c->hd, .ld_qkv = a->D};
        size_t per = cp_ctx_floats(m->tp.d, &as);
        if (per) {
            a->cp_mem = o->alloc(sizeof(float) * per);
            cp_ctx_carve(&a->cpx, a->cp_mem, m->tp.d, &as);
        }
    }
    if (a->np) {
        a->pq = o->alloc(sizeof(float) * (size_t)a->np * a->D);
        a->dpq = o->alloc(sizeof(float) * (size_t)a->np * a->D);
        a->pdP = o->alloc(sizeof(float) * (size_t)a->np * C);
        prefix_positions(a);
    }
    if (a->dare) {
        a->xa = o->alloc(sizeof(float) * (3 * N * C + N + N * a->D));
        a->na = a->xa + N * C;
        a->dxa = a->na + N * C;
        a->rstda = a->dxa + N * C;
        a->qkva = a->rstda + N;
    }
}

/* The kernels' description of this layer's attention over the current (B, T). */
static struct attn_shape shape(const struct attn *a) {
    const struct gpt *m = a->m;
    struct attn_shape as = {.B = a->B,
                            .T = a->T,
                            .H = m->Hl,
                            .Hkv = m->Hkvl,
                            .hd = m->c.hd,
                            .ld_qkv = a->D,
                            .seg = m->seg ? m->seg_buf : NULL};
    HW_ASSERT(!m->seg || m->tp.cp == 1);
    if (a->np) {
        as.np = a->np;
        as.ld_p = a->D;
        as.pk = a->pq + a->HD;
        as.pv = a->pq + a->HD + a->kvw;
        as.dpk = a->dpq + a->HD;
        as.dpv = a->dpq + a->HD + a->kvw;
    }
    if (a->s2) {
        as.s2 = &a->pat;
        as.head0 = m->tp.hp_rank * m->Hl;
    }
    as.qsel = a->qsel;
    as.qsel_off = a->qsel_off;
    return as;
}

/* Let in-flight gradient buckets move between kernels (no-op without overlap). */
static void progress(const struct attn *a) {
    gpt_progress(a->m);
}

/* q|k|v rows from n1 (DARE: q and k from the attention table's rows in qkva), then RoPE: the
 * forward's, and the backward's refill under train.recompute: attention. */
static void qkv_project(struct attn *a, const float *n1) {
    struct gpt *m = a->m;
    const struct ops *o = m->ops;
    const struct gpt_config *c = &m->c;
    const int B = a->B, T = a->T, N = B * T, D = a->D, HD = a->HD;
    linear_forward(&m->tp, &a->w_qkv, a->qkv, n1, N, 0.0f);
    if (a->dare) /* Q and K from the attention table */
        o->copy2d(a->qkv, sizeof(float) * D, a->qkva, sizeof(float) * D, (size_t)N,
                  sizeof(float) * ((size_t)HD + a->kvw));
    o->rope_forward(a->qkv, m->rope_cos, m->rope_sin, B, T, m->Hl, c->hd, D, m->pos);
    o->rope_forward(a->qkv + HD, m->rope_cos, m->rope_sin, B, T, m->Hkvl, c->hd, D, m->pos);
}

void attn_forward(struct attn *a, const float *n1, float *br, int want_grad) {
    struct gpt *m = a->m;
    const struct ops *o = m->ops;
    const struct gpt_config *c = &m->c;
    const int B = a->B, T = a->T, N = B * T, D = a->D, HD = a->HD, C = c->C;
    a->n1 = n1;
    if (a->qkv_shared)
        a->qkv = gpt_scratch(m, GPT_SCR_QKV);
    if (a->dare) { /* the attention table's rows: normed and projected */
        o->embed_forward(a->xa, m->tokens, m->w.wte_attn, N, C, m->c.V);
        o->rmsnorm_forward(a->na, a->rstda, a->xa, m->w.blocks[a->l].attn_norm, N, C, c->eps);
        linear_forward(&m->tp, &a->w_qkv, a->qkva, a->na, N, 0.0f);
    }
    qkv_project(a, n1);
    if (a->router)
        a->router->route(a, want_grad);
    if (a->np) { /* the persistent rows' keys and values, every query sees them */
        linear_forward(&m->tp, &a->w_qkv, a->pq, a->P, a->np, 0.0f);
        o->rope_forward(a->pq + HD, m->rope_cos, m->rope_sin, 1, a->np, m->Hkvl, c->hd, D, a->ppos);
    }
    struct attn_shape as = shape(a);
    par_attention_forward(&m->tp, a->att, a->lse, a->qkv, &as, &a->cpx);
    if (a->router) {
        float *gated = gpt_scratch(m, GPT_SCR_DATT);
        a->router->gate(a, gated, a->att);
        linear_forward(&m->tp, &a->w_o, br, gated, N, 0.0f);
    } else {
        linear_forward(&m->tp, &a->w_o, br, a->att, N, 0.0f);
    }
}

void attn_backward(struct attn *a, const float *dbr, float *dn1) {
    struct gpt *m = a->m;
    const struct ops *o = m->ops;
    const struct gpt_config *c = &m->c;
    const int B = a->B, T = a->T, N = B * T, D = a->D, HD = a->HD, C = c->C;
    const size_t NC = (size_t)N * C;
    float *datt = gpt_scratch(m, GPT_SCR_DATT), *dqkv = gpt_scratch(m, GPT_SCR_DQKV);
    if (a->qkv_shared) { /* the shared rows hold the last layer's: this layer's again */
        a->qkv = gpt_scratch(m, GPT_SCR_QKV);
        if (a->l + 1 < c->L)
            qkv_project(a, a->n1);
    }
    struct attn_shape as = shape(a);
    if (a->router) {
        a->router->gate(a, dqkv, a->att); /* the gated input of Wo, again */
        linear_backward(&m->tp, &a->w_o, datt, dbr, dqkv, N, 0.0f);
        a->router->gate_backward(a, datt);
    } else {
        linear_backward(&m->tp, &a->w_o, datt, dbr, a->att, N, 0.0f);
    }
    progress(a);
    par_attention_backward(&m->tp, dqkv, datt, a->att, a->lse, a->qkv, &as, &a->cpx);
    if (a->np) { /* the persistent rows: RoPE back, then into Wqkv and P */
        o->rope_backward(a->dpq + HD, m->rope_cos, m->rope_sin, 1, a->np, m->Hkvl, c->hd, D,
                         a->ppos);
        linear_backward(&m->tp, &a->w_qkv, a->pdP, a->dpq, a->P, a->np, 0.0f);
        o->residual_add(a->dP, a->dP, a->pdP, (int64_t)a->np * C);
        o->memset(a->dpq, 0, sizeof(float) * (size_t)a->np * D); /* the kernels accumulate */
    }
    if (a->router && a->router->qnorm_backward)
        a->router->qnorm_backward(a, dqkv);
    o->rope_backward(dqkv, m->rope_cos, m->rope_sin, B, T, m->Hl, c->hd, D, m->pos);
    o->rope_backward(dqkv + HD, m->rope_cos, m->rope_sin, B, T, m->Hkvl, c->hd, D, m->pos);
    progress(a);
    if (a->dare) { /* Q, K gradients go to the attention table, V's stay */
        const size_t QK = (size_t)HD + a->kvw, F = sizeof(float);
        o->copy2d(a->qkva, D * F, dqkv, D * F, (size_t)N, QK * F);
        o->memset2d(a->qkva + QK, D * F, 0, (size_t)N, (D - QK) * F);
        o->memset2d(dqkv, D * F, 0, (size_t)N, QK * F);
        linear_backward(&m->tp, &a->w_qkv, a->dxa, a->qkva, a->na, N, 0.0f);
        o->memset(a->na, 0, sizeof(float) * NC);
        o->rmsnorm_backward(a->na, m->g.blocks[a->l].attn_norm, a->dxa, a->xa,
                            m->w.blocks[a->l].attn_norm, a->rstda, N, C);
        o->embed_backward(m->g.wte_attn, a->na, m->tokens, N, C, m->c.V);
    }
    linear_backward(&m->tp, &a->w_qkv, dn1, dqkv, a->n1, N, 0.0f);
    progress(a);
    if (a->router && a->router->router_backward)
        a->router->router_backward(a, dn1);
}

/* ---- decoding -------------------------------------------------------------------------------- */

struct attn_cache {
    int B, max_T, pre; /* pre: persistent rows before position 0 (MAG) */
    float *k, *v;      /* dense: (B, pre + max_T, kvw) */
    /* S2: slot b*Hkv + g holds s2n rows (of hd) at positions s2pos (host) */
    float **s2k, **s2v;
    int32_t **s2pos;
    int *s2n, *s2cap;
    float *qkv, *att, *pq, *qkva, *xa; /* (B, D), (B, HD), (np, D), (B, D), (2B, C) */
    float *rstd;                       /* (B) */
    uint8_t *user_rows;                /* (max_T + pre) host scratch: kept rows' flags */
    uint8_t *user_d;                   /* the flags a steered step reads (backend) */
    float *gate_d;                     /* (H) the router's gates of one token (backend) */
    void *rc;                          /* the router's decode state */
};

void *attn_cache_init(struct attn *a, int B, int max_T, struct cache_stats *st) {
    struct gpt *m = a->m;
    const struct ops *o = m->ops;
    const struct gpt_config *c = &m->c;
    HW_ASSERT(m->tp.hp == 1 && m->tp.cp == 1); /* decoding runs on one rank with the whole model */
    struct attn_cache *k = HW_CALLOC(1, sizeof(*k));
    const size_t kvw = (size_t)a->kvw, Bs = (size_t)B;
    k->B = B;
    k->max_T = max_T;
    k->pre = a->np;
    prefix_positions(a);
    const size_t rows = (size_t)k->pre + max_T; /* per sequence */
    st->floats_dense += 2 * Bs * max_T * kvw;
    if (!a->s2) {
        k->k = o->alloc(sizeof(float) * Bs * rows * kvw);
        k->v = o->alloc(sizeof(float) * Bs * rows * kvw);
        st->floats += 2 * Bs * rows * kvw;
    } else {
        const size_t slots = Bs * c->Hkv;
        k->s2k = HW_CALLOC(slots, sizeof(float *));
        k->s2v = HW_CALLOC(slots, sizeof(float *));
        k->s2pos = HW_CALLOC(slots, sizeof(int32_t *));
        k->s2n = HW_CALLOC(slots, sizeof(int));
        k->s2cap = HW_CALLOC(slots, sizeof(int));
        const struct s2_pattern *p = &a->pat;
        const int nblk = (max_T + p->block - 1) / p->block;
        for (int b = 0; b < B; b++)
            for (int g = 0; g < c->Hkv; g++) {
                /* the blocks kept for the last query block: the count never falls as the query
                 * block advances (a block leaving the window is replaced) */
                int cap = 0;
                for (int kb = 0; kb < nblk; kb++)
                    cap += s2_active(p, g, nblk - 1, kb) * p->block;
                cap = (cap > max_T ? max_T : cap) + a->np;
                const size_t sl = (size_t)b * c->Hkv + g;
                k->s2cap[sl] = cap;
                k->s2k[sl] = o->alloc(sizeof(float) * (size_t)cap * c->hd);
                k->s2v[sl] = o->alloc(sizeof(float) * (size_t)cap * c->hd);
                k->s2pos[sl] = HW_CALLOC((size_t)cap, sizeof(int32_t));
                st->floats += 2 * (size_t)cap * c->hd;
            }
    }
    k->qkv = o->alloc(sizeof(float) * Bs * a->D);
    k->att = o->alloc(sizeof(float) * Bs * a->HD);
    k->pq = o->alloc(sizeof(float) * ((size_t)a->np * a->D + 1));
    k->rstd = o->alloc(sizeof(float) * Bs);
    if (a->dare) {
        k->xa = o->alloc(sizeof(float) * 2 * Bs * c->C);
        k->qkva = o->alloc(sizeof(float) * Bs * a->D);
    }
    k->user_rows = HW_CALLOC(rows + 1, 1);
    k->user_d = o->alloc(rows + 1);
    k->gate_d = o->alloc(sizeof(float) * (size_t)c->H);
    if (a->router)
        k->rc = a->router->decode_init(a);
    return k;
}

void attn_cache_reset(struct attn *a, void *cache, int b) {
    struct attn_cache *k = cache;
    if (k->s2n)
        for (int g = 0; g < a->m->c.Hkv; g++)
            k->s2n[(size_t)b * a->m->c.Hkv + g] = 0;
}

void attn_cache_free(struct attn *a, void *cache) {
    struct attn_cache *k = cache;
    if (!k)
        return;
    const struct ops *o = a->m->ops;
    if (k->s2k)
        for (size_t sl = 0; sl < (size_t)k->B * a->m->c.Hkv; sl++) {
            o->free(k->s2k[sl]);
            o->free(k->s2v[sl]);
            free(k->s2pos[sl]);
        }
    free(k->s2k);
    free(k->s2v);
    free(k->s2pos);
    free(k->s2n);
    free(k->s2cap);
    o->free(k->k);
    o->free(k->v);
    o->free(k->qkv);
    o->free(k->att);
    o->free(k->pq);
    o->free(k->rstd);
    o->free(k->xa);
    o->free(k->qkva);
    o->free(k->gate_d);
    free(k->user_rows);
    o->free(k->user_d);
    if (a->router)
        a->router->decode_free(a, k->rc);
    free(k);
}

/* Scale one head's output row by its gate. */
static void scale_head(const struct attn *a, float *oh, const float *gate_d, int h) {
    const struct gpt_config *c = &a->m->c;
    const struct moh_heads hh = {.Hl = 1, .h0 = h, .H = c->H, .hd = c->hd};
    a->m->ops->moh_gate_forward(oh, oh, gate_d, 1, &hh);
}

/* Attention of one decoded token over n cached rows (stride ld, kv heads side by side): every
 * head, or with router gates only the selected heads, scaled by their gates; with PASTA
 * steering the rows whose user flag is 0 are down-weighted. */
static void decode_heads(struct attn *a, struct attn_cache *k, const struct decode_rows *r,
                         float *att, const float *q, const float *kc, const float *vc, int n,
                         int ld, const uint8_t *user, const float *gate) {
    const struct gpt_config *c = &a->m->c;
    const struct ops *o = a->m->ops;
    const int steer = r->steer_alpha != 1.0f;
    if (!gate) {
        if (steer)
            o->attention_decode_steer(att, q, kc, vc, n, ld, c->H, c->Hkv, c->hd, r->scratch, user,
                                      r->steer_alpha);
        else
            o->attention_decode(att, q, kc, vc, n, ld, c->H, c->Hkv, c->hd, r->scratch);
        return;
    }
    for (int h = 0; h < c->H; h++) {
        float *oh = att + (size_t)h * c->hd;
        const size_t kvo = (size_t)(h / (c->H / c->Hkv)) * c->hd;
        if (gate[h] == 0.0f) {
            o->memset(oh, 0, sizeof(float) * c->hd);
            continue;
        }
        if (steer)
            o->attention_decode_steer(oh, q + (size_t)h * c->hd, kc + kvo, vc + kvo, n, ld, 1, 1,
                                      c->hd, r->scratch, user, r->steer_alpha);
        else
            o->attention_decode(oh, q + (size_t)h * c->hd, kc + kvo, vc + kvo, n, ld, 1, 1, c->hd,
                                r->scratch);
        scale_head(a, oh, k->gate_d, h);
    }
}

/* S2 layer: append this position's K/V to each kv head's compact cache (evicting the blocks
 * the pattern no longer needs when a new block starts), then attend every query head (or the
 * routed ones) over its kv head's kept rows. */
static void decode_s2(struct attn *a, struct attn_cache *k, const struct decode_rows *r, int b,
                      int pos, const float *q, float *att, const float *gate,
                      struct cache_stats *st) {
    const struct gpt_config *c = &a->m->c;
    const struct ops *o = a->m->ops;
    const struct s2_pattern *p = &a->pat;
    const int hd = c->hd, HD = c->H * hd, kvw = c->Hkv * hd, group = c->H / c->Hkv;
    const size_t F = sizeof(float);
    size_t rows = 0;
    for (int g = 0; g < c->Hkv; g++) {
        const size_t sl = (size_t)b * c->Hkv + g;
        float *kc = k->s2k[sl], *vc = k->s2v[sl];
        int32_t *kp = k->s2pos[sl];
        int n = k->s2n[sl];
        if (pos % p->block == 0) {
            const int64_t qb = pos / p->block;
            int keep = 0;
            for (int j = 0; j < n; j++) {
                const int64_t kb = kp[j] / p->block;
                if (kp[j] >= 0 && !(qb - kb < p->local || s2_vert(p, g, kb)))
                    continue; /* persistent rows (negative positions) stay */
                if (keep != j) {
                    o->copy(kc + (size_t)keep * hd, kc + (size_t)j * hd, F * hd);
                    o->copy(vc + (size_t)keep * hd, vc + (size_t)j * hd, F * hd);
                    kp[keep] = kp[j];
                }
                keep++;
            }
            n = keep;
        }
        HW_ASSERT(n < k->s2cap[sl]);
        o->copy(kc + (size_t)n * hd, q + HD + (size_t)g * hd, F * hd);
        o->copy(vc + (size_t)n * hd, q + HD + kvw + (size_t)g * hd, F * hd);
        kp[n++] = pos;
        k->s2n[sl] = n;
        rows += (size_t)n;
        /* PASTA: the user flags of the kept rows */
        const uint8_t *user = k->user_d;
        if (r->steer_alpha != 1.0f) {
            for (int j = 0; j < n; j++)
                k->user_rows[j] = kp[j] < 0 || r->user[(size_t)b * r->max_T + kp[j]];
            o->upload(k->user_d, k->user_rows, (size_t)n);
        }
        for (int h = g * group; h < (g + 1) * group; h++) {
            float *oh = att + (size_t)h * hd;
            if (gate && gate[h] == 0.0f) {
                o->memset(oh, 0, F * hd);
                continue;
            }
            if (r->steer_alpha != 1.0f)
                o->attention_decode_steer(oh, q + (size_t)h * hd, kc, vc, n, hd, 1, 1, hd,
                                          r->scratch, user, r->steer_alpha);
            else
                o->attention_decode(oh, q + (size_t)h * hd, kc, vc, n, hd, 1, 1, hd, r->scratch);
            if (gate)
                scale_head(a, oh, k->gate_d, h);
        }
    }
    st->rows_peak = rows > st->rows_peak ? rows : st->rows_peak;
}

/* A new sequence in slot b: the persistent rows lead its cache (dense: the pre rows before
 * position 0; S2: rows at positions -np..-1 that are never evicted). */
static void decode_prefix(struct attn *a, struct attn_cache *k, int b) {
    const struct gpt *m = a->m;
    const struct gpt_config *c = &m->c;
    const struct ops *o = m->ops;
    const int np = a->np, D = a->D, HD = a->HD, kvw = a->kvw;
    const size_t F = sizeof(float);
    float *pq = k->pq;
    o->matmul_forward(pq, a->P, a->w_qkv.w, np, c->C, D, 0.0f);
    o->rope_forward(pq + HD, m->rope_cos, m->rope_sin, 1, np, c->Hkv, c->hd, D, a->ppos);
    if (!a->s2) {
        const size_t slot = (size_t)b * (size_t)(k->pre + k->max_T);
        o->copy2d(k->k + (slot + (size_t)(k->pre - np)) * kvw, kvw * F, pq + HD, D * F, (size_t)np,
                  kvw * F);
        o->copy2d(k->v + (slot + (size_t)(k->pre - np)) * kvw, kvw * F, pq + HD + kvw, D * F,
                  (size_t)np, kvw * F);
        return;
    }
    for (int g = 0; g < c->Hkv; g++) {
        const size_t sl = (size_t)b * c->Hkv + g;
        o->copy2d(k->s2k[sl], c->hd * F, pq + HD + (size_t)g * c->hd, D * F, (size_t)np, c->hd * F);
        o->copy2d(k->s2v[sl], c->hd * F, pq + HD + kvw + (size_t)g * c->hd, D * F, (size_t)np,
                  c->hd * F);
        for (int i = 0; i < np; i++)
            k->s2pos[sl][i] = i - np;
        k->s2n[sl] = np;
    }
}

void attn_decode(struct attn *a, void *cache, const struct decode_rows *r, const float *n1,
                 float *br, struct cache_stats *st) {
    struct gpt *m = a->m;
    const struct gpt_config *c = &m->c;
    const struct ops *o = m->ops;
    struct attn_cache *k = cache;
    const int nb = r->nb, C = c->C, D = a->D, HD = a->HD, kvw = a->kvw;
    const size_t F = sizeof(float);
    gpt_rows_matmul(o, k->qkv, n1, a->w_qkv.w, nb, C, D);
    if (a->dare) {
        float *na = k->xa + (size_t)nb * C;
        o->embed_forward(k->xa, r->tok, m->w.wte_attn, nb, C, m->c.V);
        o->rmsnorm_forward(na, k->rstd, k->xa, m->w.blocks[a->l].attn_norm, nb, C, c->eps);
        gpt_rows_matmul(o, k->qkva, na, a->w_qkv.w, nb, C, D);
        o->copy2d(k->qkv, D * F, k->qkva, D * F, (size_t)nb, (size_t)(HD + kvw) * F);
    }
    for (int i = 0; i < nb; i++) {
        const int b = r->rows[i], pos = r->pos[b];
        float *q = k->qkv + (size_t)i * D, *att = k->att + (size_t)i * HD;
        if (pos == 0 && a->np)
            decode_prefix(a, k, b);
        o->rope_forward(q, m->rope_cos, m->rope_sin, 1, 1, c->H, c->hd, D, r->rpos + i);
        o->rope_forward(q + HD, m->rope_cos, m->rope_sin, 1, 1, c->Hkv, c->hd, D, r->rpos + i);
        const float *gate =
            a->router ? a->router->decode_gates(a, k->rc, n1 + (size_t)i * C, q) : NULL;
        if (gate)
            o->upload(k->gate_d, gate, sizeof(float) * (size_t)c->H);
        if (a->s2) {
            decode_s2(a, k, r, b, pos, q, att, gate, st);
            continue;
        }
        const size_t slot = (size_t)b * (size_t)(k->pre + k->max_T);
        float *kc = k->k + (slot + (size_t)k->pre) * kvw;
        float *vc = k->v + (slot + (size_t)k->pre) * kvw;
        o->copy(kc + (size_t)pos * kvw, q + HD, F * (size_t)kvw);
        o->copy(vc + (size_t)pos * kvw, q + HD + kvw, F * (size_t)kvw);
        const int np = a->np;
        if (r->steer_alpha != 1.0f) { /* persistent rows are never steered */
            memset(k->user_rows, 1, (size_t)np);
            memcpy(k->user_rows + np, r->user + (size_t)b * r->max_T, (size_t)pos + 1);
            o->upload(k->user_d, k->user_rows, (size_t)(np + pos + 1));
        }
        const uint8_t *user = k->user_d;
        decode_heads(a, k, r, att, q, kc - (size_t)np * kvw, vc - (size_t)np * kvw, pos + 1 + np,
                     kvw, user, gate);
    }
    gpt_rows_matmul(o, br, k->att, a->w_o.w, nb, HD, C);
}

/* ---- the layer-kind glue of attention kinds (their state is a struct attn) ----------------------
 */

struct attn *attn_of(struct layer *ly) {
    return ly->state;
}

void attn_kind_create(struct layer *ly) {
    struct attn *a = HW_CALLOC(1, sizeof(*a));
    attn_init(a, ly);
    ly->state = a;
}

int attn_kind_caps(const struct layer *ly, enum ops_cap *caps) {
    return attn_caps(ly->state, caps);
}

void attn_kind_params(struct layer *ly, struct param_table *t, int part) {
    if (!ly->state)
        attn_kind_create(ly);
    if (part == 0)
        attn_params(ly, t);
}

void attn_kind_bind(struct layer *ly) {
    attn_bind(ly->state, ly);
}

void attn_kind_alloc(struct layer *ly, int B, int T) {
    attn_alloc(ly->state, B, T);
}

void attn_kind_free(struct layer *ly) {
    if (ly->state)
        attn_free(ly->state);
    free(ly->state);
    ly->state = NULL;
}

void attn_kind_forward(struct layer *ly, const float *n1, float *br, int want_grad) {
    attn_forward(ly->state, n1, br, want_grad);
}

void attn_kind_backward(struct layer *ly, const float *dbr, float *dn1) {
    attn_backward(ly->state, dbr, dn1);
}

void *attn_kind_cache_init(struct layer *ly, int B, int max_T, struct cache_stats *st) {
    return attn_cache_init(ly->state, B, max_T, st);
}

void attn_kind_cache_reset(struct layer *ly, void *cache, int b) {
    attn_cache_reset(ly->state, cache, b);
}

void attn_kind_cache_free(struct layer *ly, void *cache) {
    attn_cache_free(ly->state, cache);
}

void attn_kind_decode(struct layer *ly, void *cache, const struct decode_rows *r, const float *n1,
                      float *br, struct cache_stats *st) {
    attn_decode(ly->state, cache, r, n1, br, st);
}

const float *attn_kind_qkv(const struct layer *ly, int *ld) {
    const struct attn *a = ly->state;
    *ld = a->D;
    return a->qkv;
}

const float *attn_kind_out(const struct layer *ly) {
    const struct attn *a = ly->state;
    return a->att;
}
