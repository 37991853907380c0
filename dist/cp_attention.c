/* dist/cp_attention.c -- ring and Ulysses context-parallel attention (see cp_attention.h). */
#include "cp_attention.h"

#include "../core/check.h"
#include "../ops/attention.h"
#include "../ops/s2.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Scratch from the backend, grown on demand. */
static float *need(const struct ops *o, float **p, size_t *cap, size_t n) {
    if (n > *cap) {
        o->free(*p);
        *p = o->alloc(sizeof(float) * n);
        *cap = n;
    }
    return *p;
}

void cp_work_free(const struct ops *o, struct cp_work *w) {
    if (!o) {
        HW_ASSERT(!w->a && !w->b && !w->c && !w->pos);
        return;
    }
    o->free(w->a);
    o->free(w->b);
    o->free(w->c);
    o->free(w->pos);
    memset(w, 0, sizeof(*w));
}

void cp_positions(int32_t *pos, int T_local, int cp, int rank) {
    const int c = T_local / 2;
    for (int t = 0; t < T_local; t++)
        pos[t] = t < c ? rank * c + t : (2 * cp - 1 - rank) * c + (t - c);
}

/* The positions of every context rank's rows, rank k's at [k * T_local, (k + 1) * T_local), in
 * backend memory: computed on the host and uploaded once per call, so that a device backend's
 * attention kernels read them where they run. */
static const int32_t *ring_positions(const struct ops *o, struct cp_work *w, int T_local, int cp) {
    const size_t n = (size_t)T_local * (size_t)cp;
    if (n > w->cap_pos) {
        o->free(w->pos);
        w->pos = o->alloc(sizeof(int32_t) * n);
        w->cap_pos = n;
    }
    int32_t *h = HW_MALLOC(sizeof(int32_t) * n);
    for (int k = 0; k < cp; k++)
        cp_positions(h + (size_t)k * T_local, T_local, cp, k);
    o->upload(w->pos, h, sizeof(int32_t) * n);
    free(h);
    return w->pos;
}

size_t cp_ctx_floats(const struct dist *d, const struct attn_shape *s) {
    if (d->cp <= 1 || !d->ulysses)
        return 0;
    const size_t T = (size_t)s->T * d->cp, Hu = (size_t)s->H / d->cp, Hkvu = (size_t)s->Hkv / d->cp;
    const size_t Du = (Hu + 2 * Hkvu) * s->hd;
    return (size_t)s->B * T * (Du + Hu * s->hd + Hu);
}

void cp_ctx_carve(struct cp_attn_ctx *ctx, float *mem, const struct dist *d,
                  const struct attn_shape *s) {
    memset(ctx, 0, sizeof(*ctx));
    if (d->cp <= 1 || !d->ulysses)
        return;
    const size_t T = (size_t)s->T * d->cp, Hu = (size_t)s->H / d->cp, Hkvu = (size_t)s->Hkv / d->cp;
    const size_t Du = (Hu + 2 * Hkvu) * s->hd;
    ctx->u_qkv = mem;
    ctx->u_out = mem + (size_t)s->B * T * Du;
    ctx->u_lse = ctx->u_out + (size_t)s->B * T * Hu * s->hd;
}

/* Local queries (all of qkv's rows) against one K/V block kv (k and v adjacent, row stride
 * ldkv) at positions kpos, carrying the shape's sparsity (S2, MoH selection). */
static struct attn_block kv_block(const float *qkv, const float *kv, int ldkv, const int32_t *qpos,
                                  const int32_t *kpos, const struct attn_shape *s) {
    const size_t KD = (size_t)s->Hkv * s->hd;
    struct attn_block a = {.q = qkv,
                           .k = kv,
                           .v = kv + KD,
                           .ldq = s->ld_qkv,
                           .ldkv = ldkv,
                           .qpos = qpos,
                           .kpos = kpos,
                           .B = s->B,
                           .Tq = s->T,
                           .Tk = s->T,
                           .H = s->H,
                           .Hkv = s->Hkv,
                           .hd = s->hd,
                           .s2 = s->s2,
                           .head0 = s->head0,
                           .qsel = s->qsel,
                           .qsel_off = s->qsel_off};
    return a;
}

/* ------------------------------------------------------------------------------------------ */
/* ring */

static void ring_forward(const struct ops *o, struct dist *d, float *out, float *lse,
                         const float *qkv, const struct attn_shape *s, struct cp_work *w) {
    const int cp = d->cp, r = d->cp_rank, Tl = s->T, ld = s->ld_qkv;
    const size_t HD = (size_t)s->H * s->hd, KD = (size_t)s->Hkv * s->hd;
    const size_t rows = (size_t)s->B * Tl, blk = rows * 2 * KD;
    float *cur = need(o, &w->a, &w->cap_a, blk), *nxt = need(o, &w->b, &w->cap_b, blk);
    const int32_t *pos = ring_positions(o, w, Tl, cp), *qpos = pos + (size_t)r * Tl;
    /* k and v are adjacent columns of qkv */
    o->copy2d(cur, sizeof(float) * 2 * KD, qkv + HD, sizeof(float) * ld, rows,
              sizeof(float) * 2 * KD);
    for (int step = 0; step < cp; step++) {
        const int owner = ((r - step) % cp + cp) % cp;
        if (step + 1 < cp)
            dist_cp_isendrecv(d, cur, nxt, blk);
        const int32_t *kpos = pos + (size_t)owner * Tl;
        struct attn_block a = kv_block(qkv, cur, (int)(2 * KD), qpos, kpos, s);
        o->attention_block_forward(out, lse, &a, step > 0);
        if (step + 1 < cp) {
            dist_cp_wait(d);
            float *t = cur;
            cur = nxt;
            nxt = t;
        }
    }
    o->attention_prefix_forward(out, lse, qkv, qpos, s); /* on every rank: its own queries */
}

static void ring_backward(const struct ops *o, struct dist *d, float *dqkv, const float *dout,
                          const float *out, const float *lse, const float *qkv,
                          const struct attn_shape *s, struct cp_work *w) {
    const int cp = d->cp, r = d->cp_rank, Tl = s->T, ld = s->ld_qkv;
    const size_t HD = (size_t)s->H * s->hd, KD = (size_t)s->Hkv * s->hd;
    const size_t rows = (size_t)s->B * Tl, W4 = 4 * KD, blk = rows * W4;
    float *cur = need(o, &w->a, &w->cap_a, blk), *nxt = need(o, &w->b, &w->cap_b, blk);
    const int32_t *pos = ring_positions(o, w, Tl, cp), *qpos = pos + (size_t)r * Tl;
    o->copy2d(cur, sizeof(float) * W4, qkv + HD, sizeof(float) * ld, rows, sizeof(float) * 2 * KD);
    o->memset2d(cur + 2 * KD, sizeof(float) * W4, 0, rows, sizeof(float) * 2 * KD);
    o->memset2d(dqkv, sizeof(float) * ld, 0, rows, sizeof(float) * HD);
    for (int step = 0; step < cp; step++) {
        const int owner = ((r - step) % cp + cp) % cp;
        const int32_t *kpos = pos + (size_t)owner * Tl;
        struct attn_block a = kv_block(qkv, cur, (int)W4, qpos, kpos, s);
        o->attention_block_backward(dqkv, cur + 2 * KD, cur + 3 * KD, ld, (int)W4, dout, out, lse,
                                    &a);
        /* pass the block (with its accumulated dK/dV) on; after cp passes it is home again */
        dist_cp_sendrecv(d, cur, nxt, blk);
        float *t = cur;
        cur = nxt;
        nxt = t;
    }
    o->copy2d(dqkv + HD, sizeof(float) * ld, cur + 2 * KD, sizeof(float) * W4, rows,
              sizeof(float) * 2 * KD);
    o->attention_prefix_backward(dqkv, ld, dout, out, lse, qkv, qpos, s);
}

/* ------------------------------------------------------------------------------------------ */
/* S2 with the ring: only the K/V chunks our heads' pattern reaches are fetched, point to point;
 * the others are neither received nor multiplied (ALGORITHMS.md §5.4). Whether rank a needs
 * rank b's chunk depends only on the positions and the (shared) head slice, so both sides
 * know it without asking. */

/* needs[o]: this rank's queries see some key of rank o; by[o]: rank o's queries see ours */
static void s2_needs(const struct dist *d, const struct attn_shape *s, int *needs, int *by) {
    const int cp = d->cp, r = d->cp_rank, Tl = s->T, group = s->H / s->Hkv;
    const int g0 = s->head0 / group, g1 = (s->head0 + s->H) / group;
    int32_t *a = HW_MALLOC(sizeof(int32_t) * 2 * (size_t)Tl), *b = a + Tl;
    cp_positions(a, Tl, cp, r);
    for (int o = 0; o < cp; o++) {
        cp_positions(b, Tl, cp, o);
        needs[o] = o == r || s2_any_visible(s->s2, g0, g1, a, Tl, b, Tl);
        by[o] = o == r || s2_any_visible(s->s2, g0, g1, b, Tl, a, Tl);
    }
    free(a);
}

/* Fetch the K/V chunks this rank needs into w->a (one slot per context rank; ours first). */
static float *s2_fetch(const struct ops *o, struct dist *d, const float *qkv,
                       const struct attn_shape *s, const int *needs, const int *by,
                       struct cp_work *w) {
    const int cp = d->cp, r = d->cp_rank;
    const size_t HD = (size_t)s->H * s->hd, KD = (size_t)s->Hkv * s->hd;
    const size_t rows = (size_t)s->B * s->T, blk = rows * 2 * KD;
    float *kvs = need(o, &w->a, &w->cap_a, blk * (size_t)cp);
    float *mine = kvs + blk * (size_t)r;
    o->copy2d(mine, sizeof(float) * 2 * KD, qkv + HD, sizeof(float) * s->ld_qkv, rows,
              sizeof(float) * 2 * KD);
    const float *snd[64];
    float *rcv[64];
    HW_ASSERT(cp <= 64);
    for (int k = 0; k < cp; k++) {
        snd[k] = by[k] ? mine : NULL;
        rcv[k] = needs[k] ? kvs + blk * (size_t)k : NULL;
    }
    dist_cp_exchange(d, snd, rcv, blk);
    return kvs;
}

static void s2_ring_forward(const struct ops *o, struct dist *d, float *out, float *lse,
                            const float *qkv, const struct attn_shape *s, struct cp_work *w) {
    const int cp = d->cp, r = d->cp_rank, Tl = s->T;
    const size_t KD = (size_t)s->Hkv * s->hd, blk = (size_t)s->B * Tl * 2 * KD;
    int needs[64], by[64];
    s2_needs(d, s, needs, by);
    float *kvs = s2_fetch(o, d, qkv, s, needs, by, w);
    const int32_t *pos = ring_positions(o, w, Tl, cp), *qpos = pos + (size_t)r * Tl;
    for (int step = 0, first = 1; step < cp; step++) {
        const int src = ((r - step) % cp + cp) % cp; /* the ring's order */
        if (!needs[src])
            continue;
        const int32_t *kpos = pos + (size_t)src * Tl;
        struct attn_block a = kv_block(qkv, kvs + blk * (size_t)src, (int)(2 * KD), qpos, kpos, s);
        o->attention_block_forward(out, lse, &a, !first);
        first = 0;
    }
    o->attention_prefix_forward(out, lse, qkv, qpos, s);
}

static void s2_ring_backward(const struct ops *o, struct dist *d, float *dqkv, const float *dout,
                             const float *out, const float *lse, const float *qkv,
                             const struct attn_shape *s, struct cp_work *w) {
    const int cp = d->cp, r = d->cp_rank, Tl = s->T, ld = s->ld_qkv;
    const size_t HD = (size_t)s->H * s->hd, KD = (size_t)s->Hkv * s->hd;
    const size_t rows = (size_t)s->B * Tl, blk = rows * 2 * KD;
    int needs[64], by[64];
    s2_needs(d, s, needs, by);
    float *kvs = s2_fetch(o, d, qkv, s, needs, by, w);
    /* dK/dV per chunk we attended to (ours included), then sent back to their owners */
    float *dkv = need(o, &w->b, &w->cap_b, blk * (size_t)cp);
    float *back = need(o, &w->c, &w->cap_c, blk * (size_t)cp);
    const int32_t *pos = ring_positions(o, w, Tl, cp), *qpos = pos + (size_t)r * Tl;
    o->memset2d(dqkv, sizeof(float) * ld, 0, rows, sizeof(float) * HD);
    for (int step = 0; step < cp; step++) {
        const int src = ((r - step) % cp + cp) % cp;
        if (!needs[src])
            continue;
        float *dk = dkv + blk * (size_t)src;
        o->memset(dk, 0, sizeof(float) * blk);
        const int32_t *kpos = pos + (size_t)src * Tl;
        struct attn_block a = kv_block(qkv, kvs + blk * (size_t)src, (int)(2 * KD), qpos, kpos, s);
        o->attention_block_backward(dqkv, dk, dk + KD, ld, (int)(2 * KD), dout, out, lse, &a);
    }
    const float *snd[64];
    float *rcv[64];
    for (int k = 0; k < cp; k++) {
        snd[k] = needs[k] ? dkv + blk * (size_t)k : NULL;
        rcv[k] = by[k] ? back + blk * (size_t)k : NULL;
    }
    dist_cp_exchange(d, snd, rcv, blk);
    /* our dK/dV: our own part, then the returned parts in the ring's order */
    o->copy(back + blk * (size_t)r, dkv + blk * (size_t)r, sizeof(float) * blk);
    /* summed in a dense buffer (dkv is sent and free again), then placed into the k|v
     * columns: one add a part, not one a row (a device launch each on a GPU) */
    float *sum = dkv;
    o->memset(sum, 0, sizeof(float) * blk);
    for (int step = 0; step < cp; step++) {
        const int src = (r + step) % cp;
        if (by[src])
            o->residual_add(sum, sum, back + blk * (size_t)src, (int64_t)blk);
    }
    o->copy2d(dqkv + HD, sizeof(float) * ld, sum, sizeof(float) * 2 * KD, rows,
              sizeof(float) * 2 * KD);
    o->attention_prefix_backward(dqkv, ld, dout, out, lse, qkv, qpos, s);
}

/* ------------------------------------------------------------------------------------------ */
/* Ulysses: all-to-all between (local tokens, local heads) and (all tokens, heads / cp) */

struct uly {
    int cp, B, Tl, T, hd, Hu, Hkvu, H, Hkv;
    size_t HD, KD, Du, HDu;
};

static struct uly uly_shape(const struct dist *d, const struct attn_shape *s) {
    struct uly u = {.cp = d->cp,
                    .B = s->B,
                    .Tl = s->T,
                    .T = s->T * d->cp,
                    .hd = s->hd,
                    .Hu = s->H / d->cp,
                    .Hkvu = s->Hkv / d->cp,
                    .H = s->H,
                    .Hkv = s->Hkv};
    u.HD = (size_t)u.H * u.hd;
    u.KD = (size_t)u.Hkv * u.hd;
    u.Du = (size_t)(u.Hu + 2 * u.Hkvu) * u.hd;
    u.HDu = (size_t)u.Hu * u.hd;
    return u;
}

/* The persistent prefix of head slice j: its kv heads' columns (the gradient slices of the
 * context ranks are disjoint; the data x context gradient all-reduce sums them). */
static void uly_prefix(struct attn_shape *us, const struct attn_shape *s, const struct uly *u,
                       int j) {
    if (s->np <= 0)
        return;
    const size_t off = (size_t)j * u->Hkvu * u->hd;
    us->np = s->np;
    us->ld_p = s->ld_p;
    us->pk = s->pk + off;
    us->pv = s->pv + off;
    us->dpk = s->dpk ? s->dpk + off : NULL;
    us->dpv = s->dpv ? s->dpv + off : NULL;
}

/* local qkv rows (stride ld) -> the Du columns of head slice j (rows of stride Du), and back */
static void pack_qkv(const struct ops *o, float *dst, const float *qkv, size_t ld, size_t rows,
                     const struct uly *u, int j) {
    const size_t qd = u->HDu, kd = (size_t)u->Hkvu * u->hd, F = sizeof(float);
    o->copy2d(dst, u->Du * F, qkv + j * qd, ld * F, rows, qd * F);
    o->copy2d(dst + qd, u->Du * F, qkv + u->HD + j * kd, ld * F, rows, kd * F);
    o->copy2d(dst + qd + kd, u->Du * F, qkv + u->HD + u->KD + j * kd, ld * F, rows, kd * F);
}

static void unpack_qkv(const struct ops *o, float *qkv, size_t ld, const float *src, size_t rows,
                       const struct uly *u, int j) {
    const size_t qd = u->HDu, kd = (size_t)u->Hkvu * u->hd, F = sizeof(float);
    o->copy2d(qkv + j * qd, ld * F, src, u->Du * F, rows, qd * F);
    o->copy2d(qkv + u->HD + j * kd, ld * F, src + qd, u->Du * F, rows, kd * F);
    o->copy2d(qkv + u->HD + u->KD + j * kd, ld * F, src + qd + kd, u->Du * F, rows, kd * F);
}

/* The rows of rank j's tokens between its local order (B, Tl: zig-zag chunk j, then chunk
 * 2cp-1-j, as cp_positions) and the global order (B, T), width floats a row: to_global copies
 * local -> global, else back. Two contiguous copies a sequence (one device copy each on a GPU,
 * not one a row). */
static void zigzag_rows(const struct ops *o, float *global, float *local, const struct uly *u,
                        int j, size_t width, int to_global) {
    const int c = u->Tl / 2;
    for (int b = 0; b < u->B; b++)
        for (int half = 0; half < 2; half++) {
            const int p0 = half ? (2 * u->cp - 1 - j) * c : j * c, n = half ? u->Tl - c : c;
            float *g = global + ((size_t)b * u->T + (size_t)p0) * width;
            float *l = local + ((size_t)b * u->Tl + (size_t)(half ? c : 0)) * width;
            if (to_global)
                o->copy(g, l, sizeof(float) * (size_t)n * width);
            else
                o->copy(l, g, sizeof(float) * (size_t)n * width);
        }
}

/* local (B, Tl, width*cp-sliced) <-> global (B, T, width): the block for rank j holds, for
 * every local token, slice j; the receiver scatters block j into the positions of rank j. */
static void ulysses_forward(const struct ops *o, struct dist *d, float *out, const float *qkv,
                            const struct attn_shape *s, struct cp_attn_ctx *ctx,
                            struct cp_work *w) {
    const struct uly u = uly_shape(d, s);
    const size_t rows = (size_t)u.B * u.Tl, ld = (size_t)s->ld_qkv;
    float *snd = need(o, &w->a, &w->cap_a, rows * u.Du * u.cp);
    float *rcv = need(o, &w->b, &w->cap_b, rows * u.Du * u.cp);
    for (int j = 0; j < u.cp; j++)
        pack_qkv(o, snd + (size_t)j * rows * u.Du, qkv, ld, rows, &u, j);
    dist_cp_alltoall(d, snd, rcv, rows * u.Du);
    for (int j = 0; j < u.cp; j++)
        zigzag_rows(o, ctx->u_qkv, rcv + (size_t)j * rows * u.Du, &u, j, u.Du, 1);
    /* MoH query selection is per local token and is not carried over the all-to-all: the
     * heads run densely here and the gates zero the unselected outputs afterwards */
    struct attn_shape us = {.B = u.B,
                            .T = u.T,
                            .H = u.Hu,
                            .Hkv = u.Hkvu,
                            .hd = u.hd,
                            .ld_qkv = (int)u.Du,
                            .s2 = s->s2,
                            .head0 = s->head0 + d->cp_rank * u.Hu};
    uly_prefix(&us, s, &u, d->cp_rank);
    o->attention_forward(ctx->u_out, ctx->u_lse, ctx->u_qkv, &us);
    /* back: rank j gets, for its tokens, our head slice */
    for (int j = 0; j < u.cp; j++)
        zigzag_rows(o, ctx->u_out, snd + (size_t)j * rows * u.HDu, &u, j, u.HDu, 0);
    dist_cp_alltoall(d, snd, rcv, rows * u.HDu);
    for (int j = 0; j < u.cp; j++)
        o->copy2d(out + j * u.HDu, u.HD * sizeof(float), rcv + (size_t)j * rows * u.HDu,
                  u.HDu * sizeof(float), rows, u.HDu * sizeof(float));
}

static void ulysses_backward(const struct ops *o, struct dist *d, float *dqkv, const float *dout,
                             const struct attn_shape *s, struct cp_attn_ctx *ctx,
                             struct cp_work *w) {
    const struct uly u = uly_shape(d, s);
    const size_t rows = (size_t)u.B * u.Tl, ld = (size_t)s->ld_qkv;
    float *snd = need(o, &w->a, &w->cap_a, rows * u.Du * u.cp);
    float *rcv = need(o, &w->b, &w->cap_b, rows * u.Du * u.cp);
    float *ubuf = need(o, &w->c, &w->cap_c, (size_t)u.B * u.T * (u.HDu + u.Du));
    float *u_dout = ubuf, *u_dqkv = ubuf + (size_t)u.B * u.T * u.HDu;
    for (int j = 0; j < u.cp; j++)
        o->copy2d(snd + (size_t)j * rows * u.HDu, u.HDu * sizeof(float), dout + j * u.HDu,
                  u.HD * sizeof(float), rows, u.HDu * sizeof(float));
    dist_cp_alltoall(d, snd, rcv, rows * u.HDu);
    for (int j = 0; j < u.cp; j++)
        zigzag_rows(o, u_dout, rcv + (size_t)j * rows * u.HDu, &u, j, u.HDu, 1);
    /* MoH query selection is per local token and is not carried over the all-to-all: the
     * heads run densely here and the gates zero the unselected outputs afterwards */
    struct attn_shape us = {.B = u.B,
                            .T = u.T,
                            .H = u.Hu,
                            .Hkv = u.Hkvu,
                            .hd = u.hd,
                            .ld_qkv = (int)u.Du,
                            .s2 = s->s2,
                            .head0 = s->head0 + d->cp_rank * u.Hu};
    uly_prefix(&us, s, &u, d->cp_rank);
    o->attention_backward(u_dqkv, u_dout, ctx->u_out, ctx->u_lse, ctx->u_qkv, &us);
    for (int j = 0; j < u.cp; j++)
        zigzag_rows(o, u_dqkv, snd + (size_t)j * rows * u.Du, &u, j, u.Du, 0);
    dist_cp_alltoall(d, snd, rcv, rows * u.Du);
    for (int j = 0; j < u.cp; j++)
        unpack_qkv(o, dqkv, ld, rcv + (size_t)j * rows * u.Du, rows, &u, j);
}

/* ------------------------------------------------------------------------------------------ */

void cp_attention_forward(const struct ops *o, struct dist *d, float *out, float *lse,
                          const float *qkv, const struct attn_shape *s, struct cp_attn_ctx *ctx,
                          struct cp_work *w) {
    if (d->ulysses)
        ulysses_forward(o, d, out, qkv, s, ctx, w);
    else if (s->s2)
        s2_ring_forward(o, d, out, lse, qkv, s, w);
    else
        ring_forward(o, d, out, lse, qkv, s, w);
}

void cp_attention_backward(const struct ops *o, struct dist *d, float *dqkv, const float *dout,
                           const float *out, const float *lse, const float *qkv,
                           const struct attn_shape *s, struct cp_attn_ctx *ctx, struct cp_work *w) {
    if (d->ulysses)
        ulysses_backward(o, d, dqkv, dout, s, ctx, w);
    else if (s->s2)
        s2_ring_backward(o, d, dqkv, dout, out, lse, qkv, s, w);
    else
        ring_backward(o, d, dqkv, dout, out, lse, qkv, s, w);
}
