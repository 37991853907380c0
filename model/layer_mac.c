/* model/layer_mac.c -- Titans memory as context ("mac", paper Eq. 21-25, docs/titans.md "MAC"):
 * the forward, the backward and decoding of a mac layer's branch.
 *
 * The local sequence is cut into segments of C = model.memory.segment tokens. For segment s,
 * with n1 the block's attention-norm rows and (W, S) the memory state after segments < s:
 *   h   = M*_W(n1)                      retrieval only (titans_read): every row reads W
 *   y   = Wo attn(q = x rows; keys/values = [P | h | x rows])    P the persistent tokens
 *   u   = M(RMSNorm(y)), (W, S) <- store of RMSNorm(y)   titans_forward chained from (W, S)
 *   branch = y * sigmoid(u)
 * The attention is causal by position inside the segment: query i sees every persistent token,
 * h_j and x_j for j <= i. (The paper's Fig. 3a shows all of h visible; h_j depends on token j's
 * input, so a full h block would leak the segment's future.) RoPE positions restart per
 * segment: persistent row p at p, h_j and x_j at N_p + j, so every segment is handled alike.
 * u_i reads the memory after the store of the chunks up to i (the module's causal right shift),
 * not after the whole segment, for the same reason. The store reads RMSNorm(y) (weight
 * blocks.L.mem_norm), as the module expects a normed input; y itself is gated.
 * The K/V of the x rows are computed for the whole sequence at once; the rest runs segment by
 * segment (the state of s+1 needs the attention of s), per sequence, in the chain of
 * model/parallel.h (context ranks hand over (W, S) and the conv histories of n1 and y). */
#include "attn.h"
#include "memory.h"

#include "../core/check.h"
#include "../ops/attention.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mac_state {
    struct linear w_qkv, w_o;
    int D, HD, kvw;
    int nseg;                    /* segments per local sequence */
    struct titans_tape_f *mtape; /* (B, nseg, 2): read, store */
    float *qkv, *att, *lse;      /* the attention's activations (N rows) */
    const float *n1;
    float *h;                    /* (N, C) retrieved memory rows */
    float *kv1;                  /* (B, nseg, Np + seg, D) persistent + retrieved rows */
    float *pqkv;                 /* (Np, D) projected persistent tokens */
    int32_t *ppos, *spos, *mpos; /* positions: [P | segment] rows, segment rows, local rows */
    int32_t *mpos_host;
    float *dym, *dh, *dkv1, *dpq; /* backward scratch */
    float *dW[5];                 /* (H, P) adjoint scratch */
};

static struct mem *S(const struct layer *ly) {
    return ly->state;
}

static struct titans_tape_f *mac_tape(struct mem *s, int b, int g, int which) {
    return &s->mac->mtape[(((size_t)b * s->mac->nseg) + g) * 2 + which];
}

void mac_alloc(struct mem *s) {
    struct gpt *m = s->m;
    const struct ops *o = m->ops;
    const struct gpt_config *gc = &m->c;
    struct mac_state *x = s->mac;
    const int Cs = gc->mem_seg, Np = gc->mem_np, C = gc->C, D = x->D, Tp = s->T / s->np;
    const size_t F = sizeof(float), NC = (size_t)s->B * s->T * C, N = (size_t)s->B * s->T;
    HW_ASSERT(Cs > 0 && (s->np == 1 || Tp % Cs == 0)); /* cfg rule under context parallelism */
    x->nseg = s->np * ((Tp + Cs - 1) / Cs);
    x->mtape = HW_CALLOC((size_t)s->B * x->nseg * 2, sizeof(*x->mtape));
    for (int i = 0; i < s->B * x->nseg * 2; i++)
        if (titans_tape_init_f(&x->mtape[i], &s->tc, Cs))
            HW_DIE("model.memory: %s", titans_cfg_error(&s->tc));
    x->qkv = o->alloc(F * N * D);
    x->att = o->alloc(F * N * x->HD);
    x->lse = o->alloc(F * (size_t)s->B * m->Hl * s->T);
    x->h = o->alloc(F * NC);
    x->kv1 = o->alloc(F * (size_t)s->B * x->nseg * (size_t)(Np + Cs) * D);
    x->pqkv = o->alloc(F * ((size_t)Np * D + 1));
    int32_t *p = HW_MALLOC(sizeof(int32_t) * (size_t)(Np + Cs + 1));
    for (int i = 0; i < Np + Cs; i++)
        p[i] = i;
    x->ppos = o->alloc(sizeof(int32_t) * (size_t)(Np + Cs + 1));
    o->upload(x->ppos, p, sizeof(int32_t) * (size_t)(Np + Cs));
    for (int i = 0; i < Cs; i++)
        p[i] = Np + i;
    x->spos = o->alloc(sizeof(int32_t) * (size_t)Cs);
    o->upload(x->spos, p, sizeof(int32_t) * (size_t)Cs);
    free(p);
    x->mpos = o->alloc(sizeof(int32_t) * (size_t)s->T);
    x->mpos_host = HW_MALLOC(sizeof(int32_t) * (size_t)s->T);
    x->dym = o->alloc(F * NC);
    x->dh = o->alloc(F * (size_t)(Np > Cs ? Np : Cs) * C);
    x->dkv1 = o->alloc(F * (size_t)(Np + Cs) * D);
    x->dpq = o->alloc(F * ((size_t)Np * D + 1));
    for (int i = 0; i < 5; i++)
        x->dW[i] = o->alloc(F * s->HP);
    gpt_scratch_need(m, GPT_SCR_DATT, N * x->HD);
    gpt_scratch_need(m, GPT_SCR_DQKV, N * D);
}

void mac_free(struct mem *s) {
    struct mac_state *x = s->mac;
    if (!x || !x->mtape)
        return;
    const struct ops *o = s->m->ops;
    for (int i = 0; i < s->B * x->nseg * 2; i++)
        titans_tape_free_f(&x->mtape[i]);
    free(x->mtape);
    float *bufs[] = {x->qkv, x->att, x->lse, x->h, x->kv1, x->pqkv, x->dym, x->dh, x->dkv1, x->dpq};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++)
        o->free(bufs[i]);
    o->free(x->ppos);
    o->free(x->spos);
    o->free(x->mpos);
    free(x->mpos_host);
    for (int i = 0; i < 5; i++)
        o->free(x->dW[i]);
    x->mtape = NULL;
}

/* The two key blocks of segment rows [row, row + n): [P | h] and the x rows. */
static void mac_blocks(const struct mem *s, const float *kv, size_t row, int n,
                       struct attn_block *b1, struct attn_block *b2) {
    const struct mac_state *x = s->mac;
    const struct gpt *m = s->m;
    const int D = x->D, HD = x->HD, kvw = x->kvw, Np = m->c.mem_np;
    const float *qkv = x->qkv + row * D;
    *b1 = (struct attn_block){.q = qkv,
                              .k = kv + HD,
                              .v = kv + HD + kvw,
                              .ldq = D,
                              .ldkv = D,
                              .qpos = x->spos,
                              .kpos = x->ppos,
                              .B = 1,
                              .Tq = n,
                              .Tk = Np + n,
                              .H = m->Hl,
                              .Hkv = m->Hkvl,
                              .hd = m->c.hd};
    *b2 = *b1;
    b2->k = qkv + HD;
    b2->v = qkv + HD + kvw;
    b2->kpos = x->spos;
    b2->Tk = n;
}

static void piece_forward(void *ctx, int b, int p, const float *in, float *out) {
    struct mem *s = ctx;
    struct mac_state *x = s->mac;
    struct gpt *m = s->m;
    const struct gpt_config *c = &m->c;
    const struct ops *o = m->ops;
    const int C = c->C, D = x->D, HD = x->HD, Np = c->mem_np, Cs = c->mem_seg;
    const int Tp = s->T / s->np, nsp = x->nseg / s->np;
    const size_t HP = s->HP, K1 = s->K1, F = sizeof(float);
    const float *n1 = x->n1;
    float *h = x->h, *y = s->y, *u = s->u;
    float *yn = s->nrm, *rstd = s->rstd; /* the store's normed input */
    float *W = s->W, *Sm = s->S, *Wn = s->Wo, *Sn = s->So;
    const float *hn1 = NULL, *hy = NULL;
    if (in) {
        o->copy(W, in, F * HP);
        o->copy(Sm, in + HP, F * HP);
        hn1 = in + 2 * HP;
        hy = hn1 + K1 * C;
    } else {
        titans_state_init_f(&s->tc, s->par, W, Sm);
    }
    for (int k = 0; k < nsp; k++) {
        const int n = Tp - k * Cs < Cs ? Tp - k * Cs : Cs, g = p * nsp + k;
        const size_t row = (size_t)b * s->T + (size_t)p * Tp + (size_t)k * Cs;
        titans_read_f(mac_tape(s, b, g, 0), s->par, W, k ? n1 + (row - K1) * C : hn1, n1 + row * C,
                      n, h + row * C);
        par_reduce_output(&m->tp, s->p_wo, h + row * C, (size_t)n * C);
        float *kv = x->kv1 + ((size_t)b * x->nseg + g) * (size_t)(Np + Cs) * D;
        o->copy(kv, x->pqkv, F * (size_t)Np * D);
        linear_forward(&m->tp, &x->w_qkv, kv + (size_t)Np * D, h + row * C, n, 0.0f);
        o->rope_forward(kv + (size_t)Np * D + HD, m->rope_cos, m->rope_sin, 1, n, m->Hkvl, c->hd, D,
                        x->spos);
        struct attn_block b1, b2;
        mac_blocks(s, kv, row, n, &b1, &b2);
        float *att = x->att + row * HD, *lse = x->lse + row * m->Hl;
        o->attention_block_forward(att, lse, &b1, 0);
        o->attention_block_forward(att, lse, &b2, 1);
        linear_forward(&m->tp, &x->w_o, y + row * C, att, n, 0.0f);
        o->rmsnorm_forward(yn + row * C, rstd + row, y + row * C, s->norm_w, n, C, c->eps);
        titans_forward_f(mac_tape(s, b, g, 1), s->par, W, Sm, k ? yn + (row - K1) * C : hy,
                         yn + row * C, n, u + row * C, Wn, Sn);
        par_reduce_output(&m->tp, s->p_wo, u + row * C, (size_t)n * C);
        float *t = W;
        W = Wn, Wn = t;
        t = Sm, Sm = Sn, Sn = t;
    }
    o->copy(out, W, F * HP);
    o->copy(out + HP, Sm, F * HP);
    if ((size_t)Tp >= K1) { /* the conv histories of the next piece */
        const size_t last = (size_t)b * s->T + (size_t)p * Tp + (size_t)Tp - K1;
        o->copy(out + 2 * HP, n1 + last * C, F * K1 * C);
        o->copy(out + 2 * HP + K1 * C, yn + last * C, F * K1 * C);
    }
}

static void piece_backward(void *ctx, int b, int p, const float *din, float *dout) {
    struct mem *s = ctx;
    struct mac_state *x = s->mac;
    struct gpt *m = s->m;
    const struct gpt_config *c = &m->c;
    const struct ops *o = m->ops;
    const int C = c->C, D = x->D, HD = x->HD, kvw = x->kvw;
    const int Np = c->mem_np, Cs = c->mem_seg, Tp = s->T / s->np, nsp = x->nseg / s->np;
    const size_t HP = s->HP, K1 = s->K1, F = sizeof(float);
    const float *h = x->h;
    float *datt_all = gpt_scratch(m, GPT_SCR_DATT), *dqkv_all = gpt_scratch(m, GPT_SCR_DQKV);
    if (din) { /* the successor read this piece's last K-1 rows of n1 and y as conv history */
        const size_t last = ((size_t)b * s->T + (size_t)p * Tp + (size_t)Tp - K1) * C;
        o->residual_add(s->dn1 + last, s->dn1 + last, din + 2 * HP, (int64_t)(K1 * C));
        o->residual_add(x->dym + last, x->dym + last, din + 2 * HP + K1 * C, (int64_t)(K1 * C));
    }
    if (dout)
        o->memset(dout, 0, F * s->chain.nmsg); /* the backward accumulates the histories' */
    const float *aW = din, *aS = din ? din + HP : NULL; /* adjoint of the state after segment k */
    int cur = 0;
    for (int k = nsp - 1; k >= 0; k--) {
        const int n = Tp - k * Cs < Cs ? Tp - k * Cs : Cs, gi = p * nsp + k;
        const size_t row = (size_t)b * s->T + (size_t)p * Tp + (size_t)k * Cs;
        float *dW = x->dW[2 * cur], *dS = x->dW[2 * cur + 1];
        /* the store of y: adjoints of y (partial over memory heads) and of the incoming state */
        titans_backward_f(
            mac_tape(s, b, gi, 1), s->par, s->du + row * C, aW, aS, s->dpar, x->dym + row * C,
            k ? x->dym + (row - K1) * C : (dout ? dout + 2 * HP + K1 * C : NULL), dW, dS);
        par_reduce_input_grad(&m->tp, s->p_wq, x->dym + row * C, (size_t)n * C);
        float *dy = s->dy + row * C; /* += the store norm's backward */
        o->rmsnorm_backward(dy, s->norm_g, x->dym + row * C, s->y + row * C, s->norm_w,
                            s->rstd + row, n, C);
        /* y = Wo att; the attention over [P | h] and the x rows */
        float *datt = datt_all + row * HD;
        const float *att = x->att + row * HD, *lse = x->lse + row * m->Hl;
        linear_backward(&m->tp, &x->w_o, datt, dy, att, n, 0.0f);
        const float *kv = x->kv1 + ((size_t)b * x->nseg + gi) * (size_t)(Np + Cs) * D;
        struct attn_block b1, b2;
        mac_blocks(s, kv, row, n, &b1, &b2);
        o->memset(x->dkv1, 0, F * (size_t)(Np + n) * D);
        float *dq = dqkv_all + row * D;
        o->attention_block_backward(dq, x->dkv1 + HD, x->dkv1 + HD + kvw, D, D, datt, att, lse,
                                    &b1);
        o->attention_block_backward(dq, dq + HD, dq + HD + kvw, D, D, datt, att, lse, &b2);
        /* RoPE is undone once, at the end */
        o->residual_add(x->dpq, x->dpq, x->dkv1, (int64_t)Np * D);
        float *dkh = x->dkv1 + (size_t)Np * D;
        o->rope_backward(dkh + HD, m->rope_cos, m->rope_sin, 1, n, m->Hkvl, c->hd, D, x->spos);
        linear_backward(&m->tp, &x->w_qkv, x->dh, dkh, h + row * C, n, 0.0f);
        /* the read h = M*_W(n1): adjoints of n1 (partial) and of W */
        titans_read_backward_f(mac_tape(s, b, gi, 0), s->par, x->dh, s->dpar, s->dn1 + row * C,
                               k ? s->dn1 + (row - K1) * C : (dout ? dout + 2 * HP : NULL),
                               x->dW[4]);
        o->residual_add(dW, dW, x->dW[4], (int64_t)HP);
        aW = dW, aS = dS;
        cur ^= 1;
    }
    if (dout) {
        o->copy(dout, aW, F * HP);
        o->copy(dout + HP, aS, F * HP);
    } else {
        titans_state_init_backward_f(&s->tc, aW, s->dpar);
    }
}

/* ---- the kind
 * ------------------------------------------------------------------------------------ */

static int caps(const struct layer *ly, enum ops_cap *cp) {
    int n = 0;
    cp[n++] = OPS_CAP_CORE;
    cp[n++] = OPS_CAP_ATTN_RING; /* the segment attention runs in attention blocks */
    cp[n++] = OPS_CAP_TITANS;
    (void)ly;
    return n;
}

static void params(struct layer *ly, struct param_table *t, int part) {
    if (!ly->state) {
        mem_create(ly, LK_MAC);
        struct mem *s = S(ly);
        struct gpt *m = ly->m;
        s->mac = HW_CALLOC(1, sizeof(*s->mac));
        s->mac->HD = m->Hl * m->c.hd;
        s->mac->kvw = m->Hkvl * m->c.hd;
        s->mac->D = s->mac->HD + 2 * s->mac->kvw;
    }
    if (part == 0)
        attn_params(ly, t); /* the segment attention's wq, wk, wv, wo */
    else
        mem_params(S(ly), t);
}

static void bind(struct layer *ly) {
    struct mem *s = S(ly);
    struct gpt *m = ly->m;
    s->mac->w_qkv =
        linear_of(&m->params[layer_param_index(ly, "attn.wq")], 3, m->param_mem, m->grad_mem);
    s->mac->w_o =
        linear_of(&m->params[layer_param_index(ly, "attn.wo")], 1, m->param_mem, m->grad_mem);
    mem_bind(s);
}

static void init_weights(struct layer *ly, uint64_t seed) {
    mem_init_weights(S(ly), seed);
}

static void alloc(struct layer *ly, int B, int T) {
    mem_alloc(S(ly), B, T);
}

static void free_kind(struct layer *ly) {
    struct mem *s = S(ly);
    if (!s)
        return;
    mem_free(s);
    free(s->mac);
    free(s);
    ly->state = NULL;
}

static void forward(struct layer *ly, const float *n1, float *br, int want_grad) {
    struct mem *s = S(ly);
    struct mac_state *x = s->mac;
    struct gpt *m = s->m;
    const struct gpt_config *c = &m->c;
    const struct ops *o = m->ops;
    const int N = s->B * s->T, C = c->C, D = x->D, HD = x->HD, Np = c->mem_np;
    (void)want_grad;
    x->n1 = n1;
    for (int t = 0; t < s->T; t++) /* zig-zag chunks start on segment boundaries */
        x->mpos_host[t] = Np + m->pos_host[t] % c->mem_seg;
    o->upload(x->mpos, x->mpos_host, sizeof(int32_t) * (size_t)s->T);
    linear_forward(&m->tp, &x->w_qkv, x->qkv, n1, N, 0.0f);
    o->rope_forward(x->qkv, m->rope_cos, m->rope_sin, s->B, s->T, m->Hl, c->hd, D, x->mpos);
    o->rope_forward(x->qkv + HD, m->rope_cos, m->rope_sin, s->B, s->T, m->Hkvl, c->hd, D, x->mpos);
    if (Np) {
        linear_forward(&m->tp, &x->w_qkv, x->pqkv, s->persist_w, Np, 0.0f);
        o->rope_forward(x->pqkv + HD, m->rope_cos, m->rope_sin, 1, Np, m->Hkvl, c->hd, D, x->ppos);
    }
    par_chain_forward(&m->tp, &s->chain, piece_forward, s);
    o->sigmoid_gate_forward(br, s->y, s->u, (int64_t)N * C);
    mem_check_finite(s, s->u, NULL);
}

static void backward(struct layer *ly, const float *dbr, float *dn1) {
    struct mem *s = S(ly);
    struct mac_state *x = s->mac;
    struct gpt *m = s->m;
    const struct gpt_config *c = &m->c;
    const struct ops *o = m->ops;
    const int N = s->B * s->T, C = c->C, D = x->D, HD = x->HD, Np = c->mem_np;
    const size_t NC = (size_t)N * C, F = sizeof(float);
    float *dqkv = gpt_scratch(m, GPT_SCR_DQKV);
    o->sigmoid_gate_backward(s->dy, s->du, dbr, s->y, s->u, (int64_t)NC);
    o->memset(x->dym, 0, F * NC);
    o->memset(s->dn1, 0, F * NC);
    o->memset(dqkv, 0, F * (size_t)N * D);
    o->memset(x->dpq, 0, F * (size_t)Np * D);
    par_chain_backward(&m->tp, &s->chain, piece_backward, s);
    par_reduce_input_grad(&m->tp, s->p_wq, s->dn1, NC); /* the reads' partial input gradients */
    o->rope_backward(dqkv, m->rope_cos, m->rope_sin, s->B, s->T, m->Hl, c->hd, D, x->mpos);
    o->rope_backward(dqkv + HD, m->rope_cos, m->rope_sin, s->B, s->T, m->Hkvl, c->hd, D, x->mpos);
    linear_backward(&m->tp, &x->w_qkv, x->dym, dqkv, x->n1, N, 0.0f);
    o->residual_add(s->dn1, s->dn1, x->dym, (int64_t)NC);
    if (Np) {
        o->rope_backward(x->dpq + HD, m->rope_cos, m->rope_sin, 1, Np, m->Hkvl, c->hd, D, x->ppos);
        linear_backward(&m->tp, &x->w_qkv, x->dh, x->dpq, s->persist_w, Np, 0.0f);
        o->residual_add(s->persist_g, s->persist_g, x->dh, (int64_t)Np * C);
        o->memset(x->dpq, 0, F * (size_t)Np * D);
    }
    /* the memory did it all: the branch's input gradient is the memory's */
    o->memset(dn1, 0, F * NC);
    o->residual_add(dn1, dn1, s->dn1, (int64_t)NC);
}

/* ---- decoding ----------------------------------------------------------------------------------
 */

/* per sequence: the state read in the current segment, the K-1 last attention-norm rows, the
 * segment's K/V rows ([persistent | h0 x0 h1 x1 ...]) and their count */
struct mac_cache {
    struct mem_cache *mem;
    float *mw, *mhist, *mk, *mv, *mrow, *mq, *qkv, *att;
    int *mn;
    int32_t *ipos;              /* one position (backend) */
    struct titans_tape_f rtape; /* one-token reads */
    size_t rows_max;
};

static void *cache_init(struct layer *ly, int B, int max_T, struct cache_stats *st) {
    struct mem *s = S(ly);
    struct gpt *m = s->m;
    const struct gpt_config *c = &m->c;
    const struct ops *o = m->ops;
    const size_t F = sizeof(float), K1 = s->K1, kvw = (size_t)c->Hkv * c->hd;
    (void)max_T;
    (void)st;
    struct mac_cache *k = HW_CALLOC(1, sizeof(*k));
    k->mem = mem_cache_init(s, B);
    struct titans_layout lo;
    titans_layout(&c->mem_cfg, &lo);
    k->rows_max = (size_t)c->mem_np + 2 * (size_t)c->mem_seg;
    k->mw = o->alloc(F * (size_t)B * c->mem_cfg.H * lo.P);
    k->mhist = o->alloc(F * ((size_t)B * K1 * c->C + 1));
    k->mk = o->alloc(F * (size_t)B * k->rows_max * kvw);
    k->mv = o->alloc(F * (size_t)B * k->rows_max * kvw);
    k->mn = HW_CALLOC((size_t)B, sizeof(int));
    k->mrow = o->alloc(F * ((size_t)c->C + k->rows_max)); /* a retrieved row, then scratch */
    k->mq = o->alloc(F * (size_t)(c->H + 2 * c->Hkv) * c->hd);
    k->qkv = o->alloc(F * (size_t)B * (c->H + 2 * c->Hkv) * c->hd);
    k->att = o->alloc(F * (size_t)B * c->H * c->hd);
    k->ipos = o->alloc(sizeof(int32_t));
    struct titans_cfg tc = c->mem_cfg;
    tc.ops = o;
    HW_ASSERT(titans_tape_init_f(&k->rtape, &tc, 1) == 0);
    return k;
}

static void cache_reset(struct layer *ly, void *cache, int b) {
    struct mem *s = S(ly);
    struct mac_cache *k = cache;
    const size_t C = (size_t)s->m->c.C;
    mem_cache_reset(s, k->mem, b);
    s->m->ops->memset(k->mhist + (size_t)b * s->K1 * C, 0, sizeof(float) * s->K1 * C);
    k->mn[b] = 0;
}

static void cache_free(struct layer *ly, void *cache) {
    struct mem *s = S(ly);
    struct mac_cache *k = cache;
    if (!k)
        return;
    const struct ops *o = s->m->ops;
    mem_cache_free(s, k->mem);
    float *bufs[] = {k->mw, k->mhist, k->mk, k->mv, k->mrow, k->mq, k->qkv, k->att};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++)
        o->free(bufs[i]);
    o->free(k->ipos);
    free(k->mn);
    titans_tape_free_f(&k->rtape);
    free(k);
}

/* RoPE the K part of projection row q at position p and append its K/V to kc/vc. */
static void cache_kv(const struct mem *s, struct mac_cache *k, float *q, int p, float *kc,
                     float *vc) {
    const struct gpt *m = s->m;
    const struct gpt_config *c = &m->c;
    const int HD = c->H * c->hd, kvw = c->Hkv * c->hd, D = HD + 2 * kvw;
    const int32_t pos = p;
    m->ops->upload(k->ipos, &pos, sizeof(pos));
    m->ops->rope_forward(q + HD, m->rope_cos, m->rope_sin, 1, 1, c->Hkv, c->hd, D, k->ipos);
    m->ops->copy(kc, q + HD, sizeof(float) * kvw);
    m->ops->copy(vc, q + HD + kvw, sizeof(float) * kvw);
}

static void decode(struct layer *ly, void *cache, const struct decode_rows *r, const float *n1,
                   float *br, struct cache_stats *st) {
    struct mem *s = S(ly);
    struct mac_state *x = s->mac;
    struct gpt *m = s->m;
    const struct gpt_config *c = &m->c;
    const struct ops *o = m->ops;
    struct mac_cache *k = cache;
    const int C = c->C, HD = c->H * c->hd, kvw = c->Hkv * c->hd, D = HD + 2 * kvw;
    const int Np = c->mem_np, seg = c->mem_seg;
    const size_t HP = (size_t)c->mem_cfg.H * k->rtape.lo.P, K1 = s->K1, F = sizeof(float);
    (void)st;
    gpt_rows_matmul(o, k->qkv, n1, x->w_qkv.w, r->nb, C, D);
    for (int i = 0; i < r->nb; i++) {
        const int b = r->rows[i], jj = r->pos[b] % seg;
        float *kc = k->mk + (size_t)b * k->rows_max * kvw,
              *vc = k->mv + (size_t)b * k->rows_max * kvw;
        float *mw = k->mw + (size_t)b * HP, *hist = k->mhist + (size_t)b * K1 * C;
        if (jj == 0) { /* a new segment: read the state after the previous ones; P's K/V */
            o->copy(mw, k->mem->dec[b].W, F * HP);
            for (int q = 0; q < Np; q++) {
                o->matmul_forward(k->mq, s->persist_w + (size_t)q * C, x->w_qkv.w, 1, C, D, 0.0f);
                cache_kv(s, k, k->mq, q, kc + (size_t)q * kvw, vc + (size_t)q * kvw);
            }
            k->mn[b] = Np;
        }
        const float *xi = n1 + (size_t)i * C;
        titans_read_f(&k->rtape, s->par, mw, hist, xi, 1, k->mrow);
        if (K1) {
            o->copy(hist, hist + C, F * (K1 - 1) * C);
            o->copy(hist + (K1 - 1) * C, xi, F * C);
        }
        const int p = Np + jj;
        int n = k->mn[b];
        HW_ASSERT((size_t)n + 2 <= k->rows_max);
        o->matmul_forward(k->mq, k->mrow, x->w_qkv.w, 1, C, D, 0.0f);
        cache_kv(s, k, k->mq, p, kc + (size_t)n * kvw, vc + (size_t)n * kvw);
        n++;
        float *q = k->qkv + (size_t)i * D;
        const int32_t pp = p;
        o->upload(k->ipos, &pp, sizeof(pp));
        o->rope_forward(q, m->rope_cos, m->rope_sin, 1, 1, c->H, c->hd, D, k->ipos);
        cache_kv(s, k, q, p, kc + (size_t)n * kvw, vc + (size_t)n * kvw);
        n++;
        k->mn[b] = n;
        o->attention_decode(k->att + (size_t)i * HD, q, kc, vc, n, kvw, c->H, c->Hkv, c->hd,
                            k->mrow + C);
    }
    gpt_rows_matmul(o, br, k->att, x->w_o.w, r->nb, HD, C);
    /* MAC stores the normed attention output y and gates y with M(norm(y)) */
    for (int i = 0; i < r->nb; i++) {
        float *bi = br + (size_t)i * C;
        o->rmsnorm_forward(k->mem->nrm, k->mem->rstd, bi, s->norm_w, 1, C, c->eps);
        mem_decode_step(s, k->mem, r->rows[i], k->mem->nrm, k->mem->u);
        o->sigmoid_gate_forward(bi, bi, k->mem->u, C);
    }
}

static const float *attn_qkv(const struct layer *ly, int *ld) {
    const struct mem *s = S(ly);
    *ld = s->mac->D;
    return s->mac->qkv;
}

static const float *attn_out(const struct layer *ly) {
    return S(ly)->mac->att;
}

const struct layer_kind layer_kind_mac = {
    .name = "mac",
    .caps = caps,
    .params = params,
    .bind = bind,
    .init_weights = init_weights,
    .alloc = alloc,
    .free = free_kind,
    .forward = forward,
    .backward = backward,
    .cache_init = cache_init,
    .cache_reset = cache_reset,
    .cache_free = cache_free,
    .decode = decode,
    .attn_qkv = attn_qkv,
    .attn_out = attn_out,
};
