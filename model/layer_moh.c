/* model/layer_moh.c -- the Mixture-of-Head attention kind ("moh", ALGORITHMS.md §1): the
 * attention of model/attn.h plus a router. Heads 0..hs-1 are shared, the other E = H - hs are
 * routed; each token selects top_k routed heads. The gates G (tokens x H) scale each head's
 * output before Wo; a head is computed only for the tokens that selected it (the kernels get
 * per-(sequence, head) row lists). The router's maths are backend ops (ops/moh.h).
 * Balance statistics are taken over the whole global micro-batch (par_batch_sum), so the
 * balance loss coef * mean over MoH layers of E * sum_i P_i f_i does not depend on the grid.
 * Under head parallelism the routers are replicated and each rank applies its slice of the
 * gate columns; the per-head values (query norms, gate gradients) are gathered over the head
 * group. */
#include "attn.h"

#include "../core/check.h"
#include "../ops/moh.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct moh_layer {
    struct moh_spec sp;
    struct moh_heads hh;
    int n_moh; /* MoH layers of the model: the balance loss is their mean */
    float coef;
    struct linear wr, ws, wh; /* router weights (replicated), when present */
    int nr, ns, nh;
    /* activations for (B, T) */
    int B, T;
    float *fmem, *dG, *dz;
    int32_t *imem, *qsel, *qsel_off;
    struct moh_state st;
    double *fsum;  /* (E) global selection counts of the last forward */
    double ntok;   /* global tokens of the last forward */
    double *usage; /* (H) tokens routed to each head since the last reset */
};

/* decoding: the router state of one token and its gates on the host */
struct moh_rc {
    float *f;
    int32_t *i;
    float *G;     /* (H) host copy of the gates */
    int32_t *sel; /* (k) host copy of the selection */
    float *gate;  /* (H) host gates, zeros for skipped heads */
};

static struct moh_layer *R(const struct attn *a) {
    return a->rstate;
}

static void route(struct attn *a, int want_grad) {
    struct gpt *m = a->m;
    const struct ops *o = m->ops;
    struct moh_layer *r = R(a);
    const struct moh_spec *sp = &r->sp;
    struct moh_state *st = &r->st;
    const int B = a->B, T = a->T, N = B * T, H = m->c.H, hs = sp->hs, k = sp->k, E = sp->E;
    if (sp->qnorm) {
        /* |q| per routed head; RoPE keeps norms, so the rotated q serves */
        o->moh_qnorm_forward(st->qraw, a->qkv, a->D, N, E, hs, &r->hh);
        par_gather_heads(&m->tp, st->qraw, (size_t)N * E);
    } else {
        if (r->nr)
            linear_forward(&m->tp, &r->wr, st->zr, a->n1, N, 0.0f);
        if (r->ns)
            linear_forward(&m->tp, &r->ws, st->zs, a->n1, N, 0.0f);
        if (r->nh)
            linear_forward(&m->tp, &r->wh, st->zh, a->n1, N, 0.0f);
    }
    o->moh_router_forward(sp, N, st);
    /* balance statistics over every token of the global micro-batch, so that the loss does not
     * depend on the rank grid */
    double *v = HW_CALLOC(2 * (size_t)E + 1, sizeof(double));
    o->moh_balance_sums(sp, N, st, v, v + E);
    v[2 * E] = N;
    par_batch_sum(&m->tp, v, 2 * E + 1);
    memcpy(r->fsum, v + E, sizeof(double) * (size_t)E);
    r->ntok = v[2 * E];
    if (k > 0)
        m->aux_loss += r->coef / r->n_moh * moh_balance_loss(sp, v, v + E, v[2 * E]);
    if (want_grad)
        for (int i = 0; i < H; i++)
            r->usage[i] += i < hs || k == 0 ? v[2 * E] : r->fsum[i - hs];
    free(v);
    /* rows of each (b, local head): shared heads see every token, routed heads the tokens
     * that selected them */
    o->moh_select_rows(r->qsel, r->qsel_off, sp, st->sel, B, T, &r->hh);
    a->qsel = k > 0 ? r->qsel : NULL;
    a->qsel_off = k > 0 ? r->qsel_off : NULL;
}

static void gate(struct attn *a, float *dst, const float *att) {
    const struct moh_layer *r = R(a);
    a->m->ops->moh_gate_forward(dst, att, r->st.G, a->B * a->T, &r->hh);
}

static void gate_backward(struct attn *a, float *datt) {
    struct gpt *m = a->m;
    const struct ops *o = m->ops;
    struct moh_layer *r = R(a);
    const struct moh_spec *sp = &r->sp;
    const int N = a->B * a->T;
    o->moh_gate_backward(datt, r->dG, a->att, r->st.G, N, &r->hh);
    par_gather_heads(&m->tp, r->dG, (size_t)N * m->c.H);
    const float bal = sp->k > 0 ? r->coef / r->n_moh * m->aux_scale : 0.0f;
    const int nr = moh_nr(sp); /* dz holds zr | zs | zh (qnorm: the raw norms' gradient) */
    o->moh_router_backward(sp, N, &r->st, r->dG, bal, r->fsum, r->ntok, r->dz,
                           r->dz + (size_t)N * nr, r->dz + (size_t)N * (nr + r->ns));
}

static void qnorm_backward(struct attn *a, float *dqkv) {
    const struct moh_layer *r = R(a);
    if (!r->sp.qnorm)
        return;
    a->m->ops->moh_qnorm_backward(dqkv, r->dz, r->st.qraw, a->qkv, a->D, a->B * a->T, r->sp.E,
                                  r->sp.hs, &r->hh);
}

/* learned router: dn1 += dz W, dW += dz^T n1 (replicated weights: no collective) */
static void router_backward(struct attn *a, float *dn1) {
    struct gpt *m = a->m;
    const struct moh_layer *r = R(a);
    const int N = a->B * a->T;
    if (r->sp.qnorm)
        return;
    if (r->nr)
        linear_backward(&m->tp, &r->wr, dn1, r->dz, a->n1, N, 1.0f);
    if (r->ns)
        linear_backward(&m->tp, &r->ws, dn1, r->dz + (size_t)N * r->nr, a->n1, N, 1.0f);
    if (r->nh)
        linear_backward(&m->tp, &r->wh, dn1, r->dz + (size_t)N * (r->nr + r->ns), a->n1, N, 1.0f);
}

static void *decode_init(struct attn *a) {
    const struct moh_layer *r = R(a);
    const struct ops *o = a->m->ops;
    struct moh_rc *c = HW_CALLOC(1, sizeof(*c));
    c->f = o->alloc(sizeof(float) * moh_state_floats(&r->sp, 1));
    c->i = o->alloc(sizeof(int32_t) * (moh_state_ints(&r->sp, 1) + 1));
    c->G = HW_CALLOC((size_t)a->m->c.H, sizeof(float));
    c->sel = HW_CALLOC((size_t)r->sp.k + 1, sizeof(int32_t));
    c->gate = HW_CALLOC((size_t)a->m->c.H, sizeof(float));
    return c;
}

static void decode_free(struct attn *a, void *rc) {
    struct moh_rc *c = rc;
    if (!c)
        return;
    a->m->ops->free(c->f);
    a->m->ops->free(c->i);
    free(c->G);
    free(c->sel);
    free(c->gate);
    free(c);
}

/* Gates of one decoded token (n1 row x, rotated queries q). A head whose gate is exactly 0 is
 * skipped; a selected head with an underflowed gate adds nothing either way. */
static const float *decode_gates(struct attn *a, void *rc, const float *x, const float *q) {
    struct gpt *m = a->m;
    const struct ops *o = m->ops;
    const struct moh_layer *r = R(a);
    const struct moh_spec *sp = &r->sp;
    struct moh_rc *c = rc;
    const int H = m->c.H;
    struct moh_state st;
    moh_state_carve(&st, sp, 1, c->f, c->i);
    if (sp->qnorm) {
        const struct moh_heads hh = {.Hl = H, .h0 = 0, .H = H, .hd = m->c.hd};
        o->moh_qnorm_forward(st.qraw, q, a->D, 1, sp->E, sp->hs, &hh);
    } else {
        if (r->nr)
            o->matmul_forward(st.zr, x, r->wr.w, 1, m->c.C, r->nr, 0.0f);
        if (r->ns)
            o->matmul_forward(st.zs, x, r->ws.w, 1, m->c.C, r->ns, 0.0f);
        if (r->nh)
            o->matmul_forward(st.zh, x, r->wh.w, 1, m->c.C, r->nh, 0.0f);
    }
    o->moh_router_forward(sp, 1, &st);
    /* mark unselected routed heads with exact zeros (a selected head keeps its gate) */
    o->download(c->G, st.G, sizeof(float) * (size_t)H);
    if (sp->k > 0)
        o->download(c->sel, st.sel, sizeof(int32_t) * (size_t)sp->k);
    for (int i = 0; i < H; i++)
        c->gate[i] = c->G[i];
    if (sp->k > 0)
        for (int i = 0; i < sp->E; i++) {
            int on = 0;
            for (int j = 0; j < sp->k; j++)
                on |= c->sel[j] == i;
            if (!on)
                c->gate[sp->hs + i] = 0.0f;
        }
    return c->gate;
}

static const struct attn_router moh_router = {
    .route = route,
    .gate = gate,
    .gate_backward = gate_backward,
    .qnorm_backward = qnorm_backward,
    .router_backward = router_backward,
    .decode_gates = decode_gates,
    .decode_init = decode_init,
    .decode_free = decode_free,
};

/* ---- the kind -----------------------------------------------------------------------------------
 */

static int caps(const struct layer *ly, enum ops_cap *cp) {
    int n = attn_kind_caps(ly, cp);
    cp[n++] = OPS_CAP_ATTN_MOH;
    return n;
}

static void params(struct layer *ly, struct param_table *t, int part) {
    struct gpt *m = ly->m;
    const struct gpt_config *c = &m->c;
    if (!ly->state) {
        attn_kind_create(ly);
        struct attn *a = ly->state;
        struct moh_layer *r = HW_CALLOC(1, sizeof(*r));
        moh_spec_init(&r->sp, c->H, c->moh_hs, c->moh_k, c->moh_literal, c->moh_qnorm);
        r->sp.ste = !c->moh_ste_off;
        r->hh =
            (struct moh_heads){.Hl = m->Hl, .h0 = m->tp.hp_rank * m->Hl, .H = c->H, .hd = c->hd};
        r->coef = c->moh_coef;
        for (int l = 0; l < c->L; l++) /* layers whose MoH attention runs */
            r->n_moh += c->attn[l] == LK_MOH && c->mem[l] != LK_MEMORY && c->mem[l] != LK_MAC;
        r->nr = moh_nr(&r->sp) && !r->sp.qnorm ? moh_nr(&r->sp) : 0;
        r->ns = moh_ns(&r->sp);
        r->nh = moh_nh(&r->sp);
        r->fsum = HW_CALLOC((size_t)r->sp.E + 1, sizeof(double));
        r->usage = HW_CALLOC((size_t)c->H, sizeof(double));
        a->router = &moh_router;
        a->rstate = r;
    }
    if (part != 0)
        return;
    attn_params(ly, t);
    const struct moh_layer *r = R(ly->state);
    if (r->nr)
        layer_param(ly, t, "attn.moh_wr", r->nr, c->C, -1, 1, c->init_std);
    if (r->ns)
        layer_param(ly, t, "attn.moh_ws", r->ns, c->C, -1, 1, c->init_std);
    if (r->nh)
        layer_param(ly, t, "attn.moh_wh", r->nh, c->C, -1, 1, c->init_std);
}

static void bind(struct layer *ly) {
    struct gpt *m = ly->m;
    struct attn *a = ly->state;
    struct moh_layer *r = R(a);
    attn_bind(a, ly);
    if (r->nr)
        r->wr = linear_of(&m->params[layer_param_index(ly, "attn.moh_wr")], 1, m->param_mem,
                          m->grad_mem);
    if (r->ns)
        r->ws = linear_of(&m->params[layer_param_index(ly, "attn.moh_ws")], 1, m->param_mem,
                          m->grad_mem);
    if (r->nh)
        r->wh = linear_of(&m->params[layer_param_index(ly, "attn.moh_wh")], 1, m->param_mem,
                          m->grad_mem);
}

static void router_free(struct attn *a) {
    struct moh_layer *r = R(a);
    const struct ops *o = a->m->ops;
    o->free(r->fmem);
    o->free(r->imem);
    o->free(r->dG);
    o->free(r->dz);
    r->fmem = r->dG = r->dz = NULL;
    r->imem = NULL;
    r->B = r->T = 0;
}

static void alloc(struct layer *ly, int B, int T) {
    struct attn *a = ly->state;
    struct moh_layer *r = R(a);
    const struct ops *o = ly->m->ops;
    attn_alloc(a, B, T);
    if (r->fmem && r->B == B && r->T == T)
        return;
    router_free(a);
    r->B = B;
    r->T = T;
    const int N = B * T, Hl = ly->m->Hl;
    const size_t in = moh_state_ints(&r->sp, N) + (size_t)N * Hl + (size_t)B * Hl + 1;
    r->fmem = o->alloc(sizeof(float) * moh_state_floats(&r->sp, N));
    r->imem = o->alloc(sizeof(int32_t) * in);
    r->dG = o->alloc(sizeof(float) * (size_t)N * ly->m->c.H);
    r->dz = o->alloc(sizeof(float) * (size_t)N * (moh_nr(&r->sp) + r->ns + r->nh + 1));
    moh_state_carve(&r->st, &r->sp, N, r->fmem, r->imem);
    r->qsel = r->imem + moh_state_ints(&r->sp, N);
    r->qsel_off = r->qsel + (size_t)N * Hl;
}

static void free_kind(struct layer *ly) {
    struct attn *a = ly->state;
    if (!a)
        return;
    struct moh_layer *r = R(a);
    if (r) {
        router_free(a);
        free(r->fsum);
        free(r->usage);
        free(r);
    }
    attn_kind_free(ly);
}

static const double *head_usage(const struct layer *ly) {
    return R(ly->state)->usage;
}

static void stats_reset(struct layer *ly) {
    memset(R(ly->state)->usage, 0, sizeof(double) * (size_t)ly->m->c.H);
}

const struct layer_kind layer_kind_moh = {
    .name = "moh",
    .caps = caps,
    .params = params,
    .bind = bind,
    .alloc = alloc,
    .free = free_kind,
    .forward = attn_kind_forward,
    .backward = attn_kind_backward,
    .cache_init = attn_kind_cache_init,
    .cache_reset = attn_kind_cache_reset,
    .cache_free = attn_kind_cache_free,
    .decode = attn_kind_decode,
    .head_usage = head_usage,
    .stats_reset = stats_reset,
    .attn_qkv = attn_kind_qkv,
    .attn_out = attn_kind_out,
    .attention = attn_of,
};
