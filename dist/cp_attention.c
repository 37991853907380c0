/* dist/cp_attention.c -- ring and Ulysses context-parallel attention (see cp_attention.h). */
#include "cp_attention.h"

#include "../core/check.h"
#include "../ops/attention.h"
#include "../ops/s2.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static float *need(float **p, size_t *cap, size_t n) {
    if (n > *cap) {
        free(*p);
        *p = HW_MALLOC(sizeof(float) * n);
        *cap = n;
    }
    return *p;
}

void cp_work_free(struct cp_work *w) {
    free(w->a);
    free(w->b);
    free(w->c);
    memset(w, 0, sizeof(*w));
}

void cp_positions(int32_t *pos, int T_local, int cp, int rank) {
    const int c = T_local / 2;
    for (int t = 0; t < T_local; t++)
        pos[t] = t < c ? rank * c + t : (2 * cp - 1 - rank) * c + (t - c);
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

static void ring_forward(struct dist *d, float *out, float *lse, const float *qkv,
                         const struct attn_shape *s, struct cp_work *w) {
    const int cp = d->cp, r = d->cp_rank, Tl = s->T, ld = s->ld_qkv;
    const size_t HD = (size_t)s->H * s->hd, KD = (size_t)s->Hkv * s->hd;
    const size_t rows = (size_t)s->B * Tl, blk = rows * 2 * KD;
    float *cur = need(&w->a, &w->cap_a, blk), *nxt = need(&w->b, &w->cap_b, blk);
    int32_t *qpos = HW_MALLOC(sizeof(int32_t) * 2 * (size_t)Tl), *kpos = qpos + Tl;
    cp_positions(qpos, Tl, cp, r);
    for (size_t i = 0; i < rows; i++) /* k and v are adjacent columns of qkv */
        memcpy(cur + i * 2 * KD, qkv + i * ld + HD, sizeof(float) * 2 * KD);
    for (int step = 0; step < cp; step++) {
        const int owner = ((r - step) % cp + cp) % cp;
        if (step + 1 < cp)
            dist_cp_isendrecv(d, cur, nxt, blk);
        cp_positions(kpos, Tl, cp, owner);
        struct attn_block a = kv_block(qkv, cur, (int)(2 * KD), qpos, kpos, s);
        attention_block_forward_cpu(out, lse, &a, step > 0);
        if (step + 1 < cp) {
            dist_cp_wait(d);
            float *t = cur;
            cur = nxt;
            nxt = t;
        }
    }
    attention_prefix_forward_cpu(out, lse, qkv, qpos, s); /* on every rank: its own queries */
    free(qpos);
}

static void ring_backward(struct dist *d, float *dqkv, const float *dout, const float *out,
                          const float *lse, const float *qkv, const struct attn_shape *s,
                          struct cp_work *w) {
    const int cp = d->cp, r = d->cp_rank, Tl = s->T, ld = s->ld_qkv;
    const size_t HD = (size_t)s->H * s->hd, KD = (size_t)s->Hkv * s->hd;
    const size_t rows = (size_t)s->B * Tl, W4 = 4 * KD, blk = rows * W4;
    float *cur = need(&w->a, &w->cap_a, blk), *nxt = need(&w->b, &w->cap_b, blk);
    int32_t *qpos = HW_MALLOC(sizeof(int32_t) * 2 * (size_t)Tl), *kpos = qpos + Tl;
    cp_positions(qpos, Tl, cp, r);
    for (size_t i = 0; i < rows; i++) {
        memcpy(cur + i * W4, qkv + i * ld + HD, sizeof(float) * 2 * KD);
        memset(cur + i * W4 + 2 * KD, 0, sizeof(float) * 2 * KD);
        memset(dqkv + i * ld, 0, sizeof(float) * HD);
    }
    for (int step = 0; step < cp; step++) {
        const int owner = ((r - step) % cp + cp) % cp;
        cp_positions(kpos, Tl, cp, owner);
        struct attn_block a = kv_block(qkv, cur, (int)W4, qpos, kpos, s);
        attention_block_backward_cpu(dqkv, cur + 2 * KD, cur + 3 * KD, ld, (int)W4, dout, out, lse,
                                     &a);
        /* pass the block (with its accumulated dK/dV) on; after cp passes it is home again */
        dist_cp_sendrecv(d, cur, nxt, blk);
        float *t = cur;
        cur = nxt;
        nxt = t;
    }
    for (size_t i = 0; i < rows; i++)
        memcpy(dqkv + i * ld + HD, cur + i * W4 + 2 * KD, sizeof(float) * 2 * KD);
    attention_prefix_backward_cpu(dqkv, ld, dout, out, lse, qkv, qpos, s);
    free(qpos);
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
static float *s2_fetch(struct dist *d, const float *qkv, const struct attn_shape *s,
                       const int *needs, const int *by, struct cp_work *w) {
    const int cp = d->cp, r = d->cp_rank;
    const size_t HD = (size_t)s->H * s->hd, KD = (size_t)s->Hkv * s->hd;
    const size_t rows = (size_t)s->B * s->T, blk = rows * 2 * KD;
    float *kvs = need(&w->a, &w->cap_a, blk * (size_t)cp);
    float *mine = kvs + blk * (size_t)r;
    for (size_t i = 0; i < rows; i++)
        memcpy(mine + i * 2 * KD, qkv + i * s->ld_qkv + HD, sizeof(float) * 2 * KD);
    const float *snd[64];
    float *rcv[64];
    HW_ASSERT(cp <= 64);
    for (int o = 0; o < cp; o++) {
        snd[o] = by[o] ? mine : NULL;
        rcv[o] = needs[o] ? kvs + blk * (size_t)o : NULL;
    }
    dist_cp_exchange(d, snd, rcv, blk);
    return kvs;
}

static void s2_ring_forward(struct dist *d, float *out, float *lse, const float *qkv,
                            const struct attn_shape *s, struct cp_work *w) {
    const int cp = d->cp, r = d->cp_rank, Tl = s->T;
    const size_t KD = (size_t)s->Hkv * s->hd, blk = (size_t)s->B * Tl * 2 * KD;
    int needs[64], by[64];
    s2_needs(d, s, needs, by);
    float *kvs = s2_fetch(d, qkv, s, needs, by, w);
    int32_t *qpos = HW_MALLOC(sizeof(int32_t) * 2 * (size_t)Tl), *kpos = qpos + Tl;
    cp_positions(qpos, Tl, cp, r);
    for (int step = 0, first = 1; step < cp; step++) {
        const int o = ((r - step) % cp + cp) % cp; /* the ring's order */
        if (!needs[o])
            continue;
        cp_positions(kpos, Tl, cp, o);
        struct attn_block a = kv_block(qkv, kvs + blk * (size_t)o, (int)(2 * KD), qpos, kpos, s);
        attention_block_forward_cpu(out, lse, &a, !first);
        first = 0;
    }
    attention_prefix_forward_cpu(out, lse, qkv, qpos, s);
    free(qpos);
}

static void s2_ring_backward(struct dist *d, float *dqkv, const float *dout, const float *out,
                             const float *lse, const float *qkv, const struct attn_shape *s,
                             struct cp_work *w) {
    const int cp = d->cp, r = d->cp_rank, Tl = s->T, ld = s->ld_qkv;
    const size_t HD = (size_t)s->H * s->hd, KD = (size_t)s->Hkv * s->hd;
    const size_t rows = (size_t)s->B * Tl, blk = rows * 2 * KD;
    int needs[64], by[64];
    s2_needs(d, s, needs, by);
    float *kvs = s2_fetch(d, qkv, s, needs, by, w);
    /* dK/dV per chunk we attended to (ours included), then sent back to their owners */
    float *dkv = need(&w->b, &w->cap_b, blk * (size_t)cp);
    float *back = need(&w->c, &w->cap_c, blk * (size_t)cp);
    int32_t *qpos = HW_MALLOC(sizeof(int32_t) * 2 * (size_t)Tl), *kpos = qpos + Tl;
    cp_positions(qpos, Tl, cp, r);
    for (size_t i = 0; i < rows; i++)
        memset(dqkv + i * ld, 0, sizeof(float) * HD);
    for (int step = 0; step < cp; step++) {
        const int o = ((r - step) % cp + cp) % cp;
        if (!needs[o])
            continue;
        float *dk = dkv + blk * (size_t)o;
        memset(dk, 0, sizeof(float) * blk);
        cp_positions(kpos, Tl, cp, o);
        struct attn_block a = kv_block(qkv, kvs + blk * (size_t)o, (int)(2 * KD), qpos, kpos, s);
        attention_block_backward_cpu(dqkv, dk, dk + KD, ld, (int)(2 * KD), dout, out, lse, &a);
    }
    const float *snd[64];
    float *rcv[64];
    for (int o = 0; o < cp; o++) {
        snd[o] = needs[o] ? dkv + blk * (size_t)o : NULL;
        rcv[o] = by[o] ? back + blk * (size_t)o : NULL;
    }
    dist_cp_exchange(d, snd, rcv, blk);
    /* our dK/dV: our own part, then the returned parts in the ring's order */
    memcpy(back + blk * (size_t)r, dkv + blk * (size_t)r, sizeof(float) * blk);
    for (size_t i = 0; i < rows; i++)
        memset(dqkv + i * ld + HD, 0, sizeof(float) * 2 * KD);
    for (int step = 0; step < cp; step++) {
        const int o = (r + step) % cp;
        if (!by[o])
            continue;
        const float *src = back + blk * (size_t)o;
        for (size_t i = 0; i < rows; i++) {
            float *dst = dqkv + i * ld + HD;
            const float *x = src + i * 2 * KD;
            for (size_t j = 0; j < 2 * KD; j++)
                dst[j] += x[j];
        }
    }
    attention_prefix_backward_cpu(dqkv, ld, dout, out, lse, qkv, qpos, s);
    free(qpos);
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

/* local qkv row (ld columns) -> the Du columns of head slice j */
static void pack_qkv_row(float *dst, const float *row, const struct uly *u, int j) {
    const size_t qd = u->HDu, kd = (size_t)u->Hkvu * u->hd;
    memcpy(dst, row + j * qd, sizeof(float) * qd);
    memcpy(dst + qd, row + u->HD + j * kd, sizeof(float) * kd);
    memcpy(dst + qd + kd, row + u->HD + u->KD + j * kd, sizeof(float) * kd);
}

static void unpack_qkv_row(float *row, const float *src, const struct uly *u, int j) {
    const size_t qd = u->HDu, kd = (size_t)u->Hkvu * u->hd;
    memcpy(row + j * qd, src, sizeof(float) * qd);
    memcpy(row + u->HD + j * kd, src + qd, sizeof(float) * kd);
    memcpy(row + u->HD + u->KD + j * kd, src + qd + kd, sizeof(float) * kd);
}

/* local (B, Tl, width*cp-sliced) <-> global (B, T, width): the block for rank j holds, for
 * every local token, slice j; the receiver scatters block j into the positions of rank j. */
static void ulysses_forward(struct dist *d, float *out, const float *qkv,
                            const struct attn_shape *s, struct cp_attn_ctx *ctx,
                            struct cp_work *w) {
    const struct uly u = uly_shape(d, s);
    const size_t rows = (size_t)u.B * u.Tl, ld = (size_t)s->ld_qkv;
    float *snd = need(&w->a, &w->cap_a, rows * u.Du * u.cp);
    float *rcv = need(&w->b, &w->cap_b, rows * u.Du * u.cp);
    int32_t *pos = HW_MALLOC(sizeof(int32_t) * (size_t)u.Tl);
    for (int j = 0; j < u.cp; j++)
        for (size_t i = 0; i < rows; i++)
            pack_qkv_row(snd + ((size_t)j * rows + i) * u.Du, qkv + i * ld, &u, j);
    dist_cp_alltoall(d, snd, rcv, rows * u.Du);
    for (int j = 0; j < u.cp; j++) {
        cp_positions(pos, u.Tl, u.cp, j);
        for (int b = 0; b < u.B; b++)
            for (int t = 0; t < u.Tl; t++)
                memcpy(ctx->u_qkv + ((size_t)b * u.T + pos[t]) * u.Du,
                       rcv + ((size_t)j * rows + (size_t)b * u.Tl + t) * u.Du,
                       sizeof(float) * u.Du);
    }
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
    attention_forward_cpu(ctx->u_out, ctx->u_lse, ctx->u_qkv, &us);
    /* back: rank j gets, for its tokens, our head slice */
    for (int j = 0; j < u.cp; j++) {
        cp_positions(pos, u.Tl, u.cp, j);
        for (int b = 0; b < u.B; b++)
            for (int t = 0; t < u.Tl; t++)
                memcpy(snd + ((size_t)j * rows + (size_t)b * u.Tl + t) * u.HDu,
                       ctx->u_out + ((size_t)b * u.T + pos[t]) * u.HDu, sizeof(float) * u.HDu);
    }
    dist_cp_alltoall(d, snd, rcv, rows * u.HDu);
    for (int j = 0; j < u.cp; j++)
        for (size_t i = 0; i < rows; i++)
            memcpy(out + i * u.HD + j * u.HDu, rcv + ((size_t)j * rows + i) * u.HDu,
                   sizeof(float) * u.HDu);
    free(pos);
}

static void ulysses_backward(struct dist *d, float *dqkv, const float *dout,
                             const struct attn_shape *s, struct cp_attn_ctx *ctx,
                             struct cp_work *w) {
    const struct uly u = uly_shape(d, s);
    const size_t rows = (size_t)u.B * u.Tl, ld = (size_t)s->ld_qkv;
    float *snd = need(&w->a, &w->cap_a, rows * u.Du * u.cp);
    float *rcv = need(&w->b, &w->cap_b, rows * u.Du * u.cp);
    float *ubuf = need(&w->c, &w->cap_c, (size_t)u.B * u.T * (u.HDu + u.Du));
    float *u_dout = ubuf, *u_dqkv = ubuf + (size_t)u.B * u.T * u.HDu;
    int32_t *pos = HW_MALLOC(sizeof(int32_t) * (size_t)u.Tl);
    for (int j = 0; j < u.cp; j++)
        for (size_t i = 0; i < rows; i++)
            memcpy(snd + ((size_t)j * rows + i) * u.HDu, dout + i * u.HD + j * u.HDu,
                   sizeof(float) * u.HDu);
    dist_cp_alltoall(d, snd, rcv, rows * u.HDu);
    for (int j = 0; j < u.cp; j++) {
        cp_positions(pos, u.Tl, u.cp, j);
        for (int b = 0; b < u.B; b++)
            for (int t = 0; t < u.Tl; t++)
                memcpy(u_dout + ((size_t)b * u.T + pos[t]) * u.HDu,
                       rcv + ((size_t)j * rows + (size_t)b * u.Tl + t) * u.HDu,
                       sizeof(float) * u.HDu);
    }
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
    attention_backward_cpu(u_dqkv, u_dout, ctx->u_out, ctx->u_lse, ctx->u_qkv, &us);
    for (int j = 0; j < u.cp; j++) {
        cp_positions(pos, u.Tl, u.cp, j);
        for (int b = 0; b < u.B; b++)
            for (int t = 0; t < u.Tl; t++)
                memcpy(snd + ((size_t)j * rows + (size_t)b * u.Tl + t) * u.Du,
                       u_dqkv + ((size_t)b * u.T + pos[t]) * u.Du, sizeof(float) * u.Du);
    }
    dist_cp_alltoall(d, snd, rcv, rows * u.Du);
    for (int j = 0; j < u.cp; j++)
        for (size_t i = 0; i < rows; i++)
            unpack_qkv_row(dqkv + i * ld, rcv + ((size_t)j * rows + i) * u.Du, &u, j);
    free(pos);
}

/* ------------------------------------------------------------------------------------------ */

void cp_attention_forward(struct dist *d, float *out, float *lse, const float *qkv,
                          const struct attn_shape *s, struct cp_attn_ctx *ctx, struct cp_work *w) {
    if (d->ulysses)
        ulysses_forward(d, out, qkv, s, ctx, w);
    else if (s->s2)
        s2_ring_forward(d, out, lse, qkv, s, w);
    else
        ring_forward(d, out, lse, qkv, s, w);
}

void cp_attention_backward(struct dist *d, float *dqkv, const float *dout, const float *out,
                           const float *lse, const float *qkv, const struct attn_shape *s,
                           struct cp_attn_ctx *ctx, struct cp_work *w) {
    if (d->ulysses)
        ulysses_backward(d, dqkv, dout, s, ctx, w);
    else if (s->s2)
        s2_ring_backward(d, dqkv, dout, out, lse, qkv, s, w);
    else
        ring_backward(d, dqkv, dout, out, lse, qkv, s, w);
}
