/* model/gpt_mac.c -- Titans memory-as-context layers (paper Eq. 21-25, docs/titans.md "MAC"):
 * the forward, the backward and decoding of a `mac` layer's attention branch.
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
 * gpt_memory_chain_* (context ranks hand over (W, S) and the conv histories of n1 and y). */
#include "gpt_memory_impl.h"

#include "../core/check.h"
#include "../ops/attention.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int qkv_w(const struct gpt *m) {
    return (m->Hl + 2 * m->Hkvl) * m->c.hd;
}

static struct titans_tape_f *mac_tape(struct gpt_memory *s, int j, int b, int g, int which) {
    return &s->mtape[(((size_t)j * s->B + b) * s->nseg + g) * 2 + which];
}

void gpt_mac_alloc(struct gpt *m) {
    struct gpt_memory *s = m->mem;
    const struct gpt_config *gc = &m->c;
    const int Cs = gc->mem_seg, Np = gc->mem_np, C = gc->C, D = qkv_w(m), Tp = s->T / s->np;
    HW_ASSERT(Cs > 0 && (s->np == 1 || Tp % Cs == 0)); /* cfg rule under context parallelism */
    s->nseg = s->np * ((Tp + Cs - 1) / Cs);
    s->mtape = HW_CALLOC((size_t)s->n * s->B * s->nseg * 2, sizeof(*s->mtape));
    const struct titans_cfg tc = gpt_memory_local_cfg(m);
    for (int l = 0; l < gc->L; l++)
        for (int i = 0; gc->mem[l] == GPT_MEM_MAC && i < s->B * s->nseg * 2; i++)
            if (titans_tape_init_f(&s->mtape[(size_t)s->slot[l] * s->B * s->nseg * 2 + i], &tc, Cs))
                HW_DIE("model.memory: %s", titans_cfg_error(&tc));
    const size_t NC = (size_t)s->B * s->T * C;
    s->h = mem_floats((size_t)s->n * NC);
    s->kv1 = mem_floats((size_t)s->n * s->B * s->nseg * (size_t)(Np + Cs) * D);
    s->pqkv = mem_floats((size_t)Np * D);
    s->spos = HW_CALLOC((size_t)Cs, sizeof(int32_t));
    s->mpos = HW_CALLOC((size_t)s->T, sizeof(int32_t));
    for (int i = 0; i < Cs; i++)
        s->spos[i] = Np + i;
    s->dym = mem_floats(NC);
    s->dh = mem_floats((size_t)(Np > Cs ? Np : Cs) * C);
    s->dkv1 = mem_floats((size_t)(Np + Cs) * D);
    struct titans_layout lo;
    titans_layout(&tc, &lo);
    for (int i = 0; i < 5; i++)
        s->dW[i] = mem_floats((size_t)tc.H * lo.P);
}

void gpt_mac_free(struct gpt_memory *s) {
    if (!s->mtape)
        return;
    for (int i = 0; i < s->n * s->B * s->nseg * 2; i++)
        if (s->mtape[i].nmax)
            titans_tape_free_f(&s->mtape[i]);
    free(s->mtape);
    free(s->h);
    free(s->kv1);
    free(s->pqkv);
    free(s->spos);
    free(s->mpos);
    free(s->dym);
    free(s->dh);
    free(s->dkv1);
    for (int i = 0; i < 5; i++)
        free(s->dW[i]);
    s->mtape = NULL;
}

/* The two key blocks of segment rows [row, row + n) of layer l: [P | h] and the x rows. */
static void mac_blocks(const struct gpt *m, int l, const float *kv, size_t row, int n,
                       struct attn_block *b1, struct attn_block *b2) {
    const struct gpt_memory *s = m->mem;
    const int D = qkv_w(m), HD = m->Hl * m->c.hd, kvw = m->Hkvl * m->c.hd, Np = m->c.mem_np;
    const float *qkv = m->acts[l].qkv + row * D;
    *b1 = (struct attn_block){.q = qkv,
                              .k = kv + HD,
                              .v = kv + HD + kvw,
                              .ldq = D,
                              .ldkv = D,
                              .qpos = s->spos,
                              .kpos = s->ppos,
                              .B = 1,
                              .Tq = n,
                              .Tk = Np + n,
                              .H = m->Hl,
                              .Hkv = m->Hkvl,
                              .hd = m->c.hd};
    *b2 = *b1;
    b2->k = qkv + HD;
    b2->v = qkv + HD + kvw;
    b2->kpos = s->spos;
    b2->Tk = n;
}

static void mac_piece_forward(struct gpt *m, int l, int b, int p, const float *in, float *out) {
    struct gpt_memory *s = m->mem;
    const struct gpt_config *c = &m->c;
    const struct ops *o = m->ops;
    const struct titans_cfg tc = gpt_memory_local_cfg(m);
    const struct gpt_layer *w = &m->w.layers[l];
    struct gpt_layer_acts *a = &m->acts[l];
    const float *par = w->mem;
    const int C = c->C, D = qkv_w(m), HD = m->Hl * c->hd, Np = c->mem_np, Cs = c->mem_seg;
    const int Tp = s->T / s->np, nsp = s->nseg / s->np, j = s->slot[l];
    const size_t NC = (size_t)s->B * s->T * C,
                 HP = (size_t)tc.H * s->mtape[((size_t)j * s->B * s->nseg) * 2].lo.P;
    const size_t K1 = tc.conv > 0 ? (size_t)tc.conv - 1 : 0;
    const float *n1 = a->n1;
    float *h = s->h + j * NC, *y = s->y + j * NC, *u = s->u + j * NC;
    float *yn = s->nrm + j * NC, *rstd = s->rstd + j * NC / C; /* the store's normed input */
    float *W = s->W, *S = s->S, *Wn = s->Wo, *Sn = s->So;
    const float *hn1 = NULL, *hy = NULL;
    if (in) {
        memcpy(W, in, sizeof(float) * HP);
        memcpy(S, in + HP, sizeof(float) * HP);
        hn1 = in + 2 * HP;
        hy = hn1 + K1 * C;
    } else {
        titans_state_init_f(&tc, par, W, S);
    }
    for (int k = 0; k < nsp; k++) {
        const int n = Tp - k * Cs < Cs ? Tp - k * Cs : Cs, g = p * nsp + k;
        const size_t row = (size_t)b * s->T + (size_t)p * Tp + (size_t)k * Cs;
        titans_read_f(mac_tape(s, j, b, g, 0), par, W, k ? n1 + (row - K1) * C : hn1, n1 + row * C,
                      n, h + row * C);
        gpt_memory_hp_sum(m, h + row * C, (size_t)n * C);
        float *kv = s->kv1 + (((size_t)j * s->B + b) * s->nseg + g) * (size_t)(Np + Cs) * D;
        memcpy(kv, s->pqkv, sizeof(float) * (size_t)Np * D);
        o->matmul_forward(kv + (size_t)Np * D, h + row * C, w->wqkv, n, C, D, 0.0f);
        o->rope_forward(kv + (size_t)Np * D + HD, m->rope_cos, m->rope_sin, 1, n, m->Hkvl, c->hd, D,
                        s->spos);
        struct attn_block b1, b2;
        mac_blocks(m, l, kv, row, n, &b1, &b2);
        float *att = a->att + row * HD, *lse = a->lse + row * m->Hl;
        o->attention_block_forward(att, lse, &b1, 0);
        o->attention_block_forward(att, lse, &b2, 1);
        o->matmul_forward(y + row * C, att, w->wo, n, HD, C, 0.0f);
        gpt_memory_attn_hp_sum(m, y + row * C, (size_t)n * C);
        o->rmsnorm_forward(yn + row * C, rstd + row, y + row * C, w->mem_norm, n, C, c->eps);
        titans_forward_f(mac_tape(s, j, b, g, 1), par, W, S, k ? yn + (row - K1) * C : hy,
                         yn + row * C, n, u + row * C, Wn, Sn);
        gpt_memory_hp_sum(m, u + row * C, (size_t)n * C);
        float *t = W;
        W = Wn, Wn = t;
        t = S, S = Sn, Sn = t;
    }
    memcpy(out, W, sizeof(float) * HP);
    memcpy(out + HP, S, sizeof(float) * HP);
    if ((size_t)Tp >= K1) { /* the conv histories of the next piece */
        const size_t last = (size_t)b * s->T + (size_t)p * Tp + (size_t)Tp - K1;
        memcpy(out + 2 * HP, n1 + last * C, sizeof(float) * K1 * C);
        memcpy(out + 2 * HP + K1 * C, yn + last * C, sizeof(float) * K1 * C);
    }
}

static void mac_piece_backward(struct gpt *m, int l, int b, int p, const float *din, float *dout) {
    struct gpt_memory *s = m->mem;
    const struct gpt_config *c = &m->c;
    const struct ops *o = m->ops;
    const struct titans_cfg tc = gpt_memory_local_cfg(m);
    const struct gpt_layer *w = &m->w.layers[l];
    struct gpt_layer *g = &m->g.layers[l];
    const struct gpt_layer_acts *a = &m->acts[l];
    const float *par = w->mem;
    float *dpar = g->mem;
    const int C = c->C, D = qkv_w(m), HD = m->Hl * c->hd, kvw = m->Hkvl * c->hd;
    const int Np = c->mem_np, Cs = c->mem_seg, Tp = s->T / s->np, nsp = s->nseg / s->np;
    const int j = s->slot[l];
    const size_t NC = (size_t)s->B * s->T * C,
                 HP = (size_t)tc.H * s->mtape[((size_t)j * s->B * s->nseg) * 2].lo.P;
    const size_t K1 = tc.conv > 0 ? (size_t)tc.conv - 1 : 0;
    const float *h = s->h + j * NC;
    if (din) { /* the successor read this piece's last K-1 rows of n1 and y as conv history */
        const size_t last = ((size_t)b * s->T + (size_t)p * Tp + (size_t)Tp - K1) * C;
        for (size_t i = 0; i < K1 * C; i++) {
            s->dn1[last + i] += din[2 * HP + i];
            s->dym[last + i] += din[2 * HP + K1 * C + i];
        }
    }
    if (dout)
        memset(dout, 0, sizeof(float) * s->nmsg); /* the backward accumulates the histories' */
    const float *aW = din, *aS = din ? din + HP : NULL; /* adjoint of the state after segment k */
    int cur = 0;
    for (int k = nsp - 1; k >= 0; k--) {
        const int n = Tp - k * Cs < Cs ? Tp - k * Cs : Cs, gi = p * nsp + k;
        const size_t row = (size_t)b * s->T + (size_t)p * Tp + (size_t)k * Cs;
        float *dW = s->dW[2 * cur], *dS = s->dW[2 * cur + 1];
        /* the store of y: adjoints of y (partial over memory heads) and of the incoming state */
        titans_backward_f(
            mac_tape(s, j, b, gi, 1), par, s->du + row * C, aW, aS, dpar, s->dym + row * C,
            k ? s->dym + (row - K1) * C : (dout ? dout + 2 * HP + K1 * C : NULL), dW, dS);
        gpt_memory_hp_sum(m, s->dym + row * C, (size_t)n * C);
        float *dy = s->dy + row * C; /* += the store norm's backward */
        o->rmsnorm_backward(dy, g->mem_norm, s->dym + row * C, s->y + j * NC + row * C, w->mem_norm,
                            s->rstd + j * NC / C + row, n, C);
        /* y = Wo att; the attention over [P | h] and the x rows */
        float *datt = m->datt + row * HD;
        const float *att = a->att + row * HD, *lse = a->lse + row * m->Hl;
        o->matmul_backward(datt, g->wo, dy, att, w->wo, n, HD, C, 0.0f);
        const float *kv = s->kv1 + (((size_t)j * s->B + b) * s->nseg + gi) * (size_t)(Np + Cs) * D;
        struct attn_block b1, b2;
        mac_blocks(m, l, kv, row, n, &b1, &b2);
        memset(s->dkv1, 0, sizeof(float) * (size_t)(Np + n) * D);
        float *dq = m->dqkv + row * D;
        o->attention_block_backward(dq, s->dkv1 + HD, s->dkv1 + HD + kvw, D, D, datt, att, lse,
                                    &b1);
        o->attention_block_backward(dq, dq + HD, dq + HD + kvw, D, D, datt, att, lse, &b2);
        for (size_t i = 0; i < (size_t)Np * D; i++) /* RoPE is undone once, at the end */
            s->dpq[i] += s->dkv1[i];
        float *dkh = s->dkv1 + (size_t)Np * D;
        o->rope_backward(dkh + HD, m->rope_cos, m->rope_sin, 1, n, m->Hkvl, c->hd, D, s->spos);
        o->matmul_backward(s->dh, g->wqkv, dkh, h + row * C, w->wqkv, n, C, D, 0.0f);
        gpt_memory_attn_hp_sum(m, s->dh, (size_t)n * C);
        /* the read h = M*_W(n1): adjoints of n1 (partial) and of W */
        titans_read_backward_f(mac_tape(s, j, b, gi, 0), par, s->dh, dpar, s->dn1 + row * C,
                               k ? s->dn1 + (row - K1) * C : (dout ? dout + 2 * HP : NULL),
                               s->dW[4]);
        for (size_t i = 0; i < HP; i++)
            dW[i] += s->dW[4][i];
        aW = dW, aS = dS;
        cur ^= 1;
    }
    if (dout) {
        memcpy(dout, aW, sizeof(float) * HP);
        memcpy(dout + HP, aS, sizeof(float) * HP);
    } else {
        titans_state_init_backward_f(&tc, aW, dpar);
    }
}

void gpt_mac_forward(struct gpt *m, int l, const float *n1, float *dn) {
    struct gpt_memory *s = m->mem;
    const struct gpt_config *c = &m->c;
    const struct ops *o = m->ops;
    const struct gpt_layer *w = &m->w.layers[l];
    struct gpt_layer_acts *a = &m->acts[l];
    const int N = s->B * s->T, C = c->C, D = qkv_w(m), HD = m->Hl * c->hd, Np = c->mem_np;
    const size_t NC = (size_t)N * C, j = (size_t)s->slot[l];
    for (int t = 0; t < s->T; t++) /* zig-zag chunks start on segment boundaries */
        s->mpos[t] = Np + m->pos[t] % c->mem_seg;
    o->matmul_forward(a->qkv, n1, w->wqkv, N, C, D, 0.0f);
    o->rope_forward(a->qkv, m->rope_cos, m->rope_sin, s->B, s->T, m->Hl, c->hd, D, s->mpos);
    o->rope_forward(a->qkv + HD, m->rope_cos, m->rope_sin, s->B, s->T, m->Hkvl, c->hd, D, s->mpos);
    if (Np) {
        o->matmul_forward(s->pqkv, w->mem_persist, w->wqkv, Np, C, D, 0.0f);
        o->rope_forward(s->pqkv + HD, m->rope_cos, m->rope_sin, 1, Np, m->Hkvl, c->hd, D, s->ppos);
    }
    gpt_memory_chain_forward(m, l, mac_piece_forward);
    const float *y = s->y + j * NC, *u = s->u + j * NC;
    for (size_t i = 0; i < NC; i++)
        dn[i] = y[i] * mem_sigmoid(u[i]);
    for (size_t i = 0; i < NC && !s->warned; i++)
        if (!isfinite(u[i])) {
            const int b = (int)(i / ((size_t)s->T * C)), t = (int)(i / C % (size_t)s->T);
            fprintf(stderr,
                    "headwise: memory of layer %d (mac): NaN/Inf in its output (sequence %d, "
                    "local token %d); lower model.memory.max_lr or set "
                    "model.memory.max_grad_norm\n",
                    l, b, t);
            s->warned = 1;
        }
}

void gpt_mac_backward(struct gpt *m, int l, const float *dx) {
    struct gpt_memory *s = m->mem;
    const struct gpt_config *c = &m->c;
    const struct ops *o = m->ops;
    const struct gpt_layer *w = &m->w.layers[l];
    struct gpt_layer *g = &m->g.layers[l];
    const struct gpt_layer_acts *a = &m->acts[l];
    const int N = s->B * s->T, C = c->C, D = qkv_w(m), HD = m->Hl * c->hd, Np = c->mem_np;
    const size_t NC = (size_t)N * C, j = (size_t)s->slot[l];
    const float *y = s->y + j * NC, *u = s->u + j * NC;
    for (size_t i = 0; i < NC; i++) {
        const float gt = mem_sigmoid(u[i]);
        s->dy[i] = dx[i] * gt;
        s->du[i] = dx[i] * y[i] * gt * (1.0f - gt);
    }
    memset(s->dym, 0, sizeof(float) * NC);
    memset(s->dn1, 0, sizeof(float) * NC);
    memset(m->dqkv, 0, sizeof(float) * (size_t)N * D);
    memset(s->dpq, 0, sizeof(float) * (size_t)Np * D);
    gpt_memory_chain_backward(m, l, mac_piece_backward);
    gpt_memory_hp_sum(m, s->dn1, NC); /* the reads' partial input gradients */
    o->rope_backward(m->dqkv, m->rope_cos, m->rope_sin, s->B, s->T, m->Hl, c->hd, D, s->mpos);
    o->rope_backward(m->dqkv + HD, m->rope_cos, m->rope_sin, s->B, s->T, m->Hkvl, c->hd, D,
                     s->mpos);
    o->matmul_backward(s->dym, g->wqkv, m->dqkv, a->n1, w->wqkv, N, C, D, 0.0f);
    gpt_memory_attn_hp_sum(m, s->dym, NC);
    o->residual_add(s->dn1, s->dn1, s->dym, (int64_t)NC);
    if (Np) {
        o->rope_backward(s->dpq + HD, m->rope_cos, m->rope_sin, 1, Np, m->Hkvl, c->hd, D, s->ppos);
        o->matmul_backward(s->dh, g->wqkv, s->dpq, w->mem_persist, w->wqkv, Np, C, D, 0.0f);
        gpt_memory_attn_hp_sum(m, s->dh, (size_t)Np * C);
        o->residual_add(g->mem_persist, g->mem_persist, s->dh, (int64_t)Np * C);
        memset(s->dpq, 0, sizeof(float) * (size_t)Np * D); /* MAG layers accumulate into it */
    }
}

/* ---- decoding ------------------------------------------------------------------------------ */

void gpt_mac_kv_init(const struct gpt *m, struct gpt_memory_kv *k) {
    const struct gpt_config *c = &m->c;
    int any = 0;
    for (int l = 0; l < c->L; l++)
        if (c->mem[l] == GPT_MEM_MAC) {
            k->is_mac[k->slot[l]] = 1;
            any = 1;
        }
    if (!any)
        return;
    struct titans_layout lo;
    titans_layout(&c->mem_cfg, &lo);
    k->C = c->C;
    k->K1 = c->mem_cfg.conv > 0 ? c->mem_cfg.conv - 1 : 0;
    k->Np = c->mem_np;
    k->seg = c->mem_seg;
    k->kvw = c->Hkv * c->hd;
    const size_t nsl = (size_t)k->n * k->B, rows = (size_t)k->Np + 2 * (size_t)k->seg;
    k->mw = mem_floats(nsl * c->mem_cfg.H * lo.P);
    k->mhist = mem_floats(nsl * (size_t)k->K1 * k->C);
    k->mk = mem_floats(nsl * rows * k->kvw);
    k->mv = mem_floats(nsl * rows * k->kvw);
    k->mn = HW_CALLOC(nsl, sizeof(int));
    k->mrow = mem_floats((size_t)k->C + rows); /* a retrieved row, then the attention scratch */
    k->mq = mem_floats((size_t)(c->H + 2 * c->Hkv) * c->hd);
    HW_ASSERT(titans_tape_init_f(&k->rtape, &c->mem_cfg, 1) == 0);
}

void gpt_mac_kv_reset(struct gpt_memory_kv *k, int j, int b) {
    const size_t sl = (size_t)j * k->B + b;
    memset(k->mhist + sl * k->K1 * k->C, 0, sizeof(float) * (size_t)k->K1 * k->C);
    k->mn[sl] = 0;
}

void gpt_mac_kv_free(struct gpt_memory_kv *k) {
    if (!k->mw)
        return;
    free(k->mw);
    free(k->mhist);
    free(k->mk);
    free(k->mv);
    free(k->mn);
    free(k->mrow);
    free(k->mq);
    titans_tape_free_f(&k->rtape);
}

/* Append row r of the projection q (width D) to the K/V cache rows kc/vc at position p. */
static void cache_kv(const struct gpt *m, float *q, int p, float *kc, float *vc) {
    const struct gpt_config *c = &m->c;
    const int HD = c->H * c->hd, kvw = c->Hkv * c->hd, D = HD + 2 * kvw;
    m->ops->rope_forward(q + HD, m->rope_cos, m->rope_sin, 1, 1, c->Hkv, c->hd, D, &p);
    memcpy(kc, q + HD, sizeof(float) * kvw);
    memcpy(vc, q + HD + kvw, sizeof(float) * kvw);
}

void gpt_mac_decode_attn(struct gpt *m, struct gpt_memory_kv *k, int l, int nb, const int *rows,
                         const int *pos, const float *n1, float *qkv, float *att) {
    const struct gpt_config *c = &m->c;
    const struct ops *o = m->ops;
    const struct gpt_layer *w = &m->w.layers[l];
    const int j = k->slot[l], C = c->C, HD = c->H * c->hd, kvw = k->kvw, D = HD + 2 * kvw;
    const size_t rows_max = (size_t)k->Np + 2 * (size_t)k->seg;
    struct titans_layout lo;
    titans_layout(&c->mem_cfg, &lo);
    const size_t HP = (size_t)c->mem_cfg.H * lo.P, K1 = (size_t)k->K1;
    for (int i = 0; i < nb; i++) {
        const int b = rows[i], jj = pos[b] % k->seg;
        const size_t sl = (size_t)j * k->B + b;
        float *kc = k->mk + sl * rows_max * kvw, *vc = k->mv + sl * rows_max * kvw;
        float *mw = k->mw + sl * HP, *hist = k->mhist + sl * K1 * C;
        if (jj == 0) { /* a new segment: read the state after the previous ones; P's K/V */
            memcpy(mw, k->dec[sl].W, sizeof(float) * HP);
            for (int r = 0; r < k->Np; r++) {
                o->matmul_forward(k->mq, w->mem_persist + (size_t)r * C, w->wqkv, 1, C, D, 0.0f);
                cache_kv(m, k->mq, r, kc + (size_t)r * kvw, vc + (size_t)r * kvw);
            }
            k->mn[sl] = k->Np;
        }
        const float *x = n1 + (size_t)i * C;
        titans_read_f(&k->rtape, k->par[j], mw, hist, x, 1, k->mrow);
        if (K1) {
            memmove(hist, hist + C, sizeof(float) * (K1 - 1) * C);
            memcpy(hist + (K1 - 1) * C, x, sizeof(float) * C);
        }
        const int p = k->Np + jj;
        int n = k->mn[sl];
        HW_ASSERT((size_t)n + 2 <= rows_max);
        o->matmul_forward(k->mq, k->mrow, w->wqkv, 1, C, D, 0.0f);
        cache_kv(m, k->mq, p, kc + (size_t)n * kvw, vc + (size_t)n * kvw);
        n++;
        float *q = qkv + (size_t)i * D;
        o->rope_forward(q, m->rope_cos, m->rope_sin, 1, 1, c->H, c->hd, D, &p);
        cache_kv(m, q, p, kc + (size_t)n * kvw, vc + (size_t)n * kvw);
        n++;
        k->mn[sl] = n;
        o->attention_decode(att + (size_t)i * HD, q, kc, vc, n, kvw, c->H, c->Hkv, c->hd,
                            k->mrow + C);
    }
}
