/* model/parallel.c -- parallel layers over the rank grid (see parallel.h). */
#include "parallel.h"

#include "../core/check.h"

#include <stdlib.h>
#include <string.h>

void tp_init(struct tp *tp, struct dist *d, const struct ops *ops, struct cp_work *work) {
    memset(tp, 0, sizeof(*tp));
    tp->d = d && d->world > 1 ? d : NULL;
    tp->ops = ops;
    tp->hp = tp->d ? d->hp : 1;
    tp->hp_rank = tp->d ? d->hp_rank : 0;
    tp->cp = tp->d ? d->cp : 1;
    tp->cp_rank = tp->d ? d->cp_rank : 0;
    tp->work = work;
}

/* the head-group all-reduce every helper below is made of */
static void hp_allreduce(const struct tp *tp, float *x, size_t n) {
    if (tp->d && tp->hp > 1)
        dist_allreduce_f32(tp->d, DIST_HP, x, n, DIST_KIND_HP_REDUCE);
}

struct linear linear_of(const struct param *params, int n, const float *w, float *g) {
    struct linear l = {.w = w + params[0].offset,
                       .g = g ? g + params[0].offset : NULL,
                       .K = (int)params[0].shape[1],
                       .M = 0,
                       .shard_dim = params[0].shard_dim};
    for (int i = 0; i < n; i++) {
        const struct param *p = &params[i];
        HW_ASSERT(p->ndim == 2 && p->shape[1] == l.K && p->shard_dim == l.shard_dim);
        HW_ASSERT(p->offset == params[0].offset + (size_t)l.M * (size_t)l.K); /* stacked */
        l.M += (int)p->shape[0];
    }
    return l;
}

void linear_forward(const struct tp *tp, const struct linear *l, float *out, const float *in, int N,
                    float beta) {
    tp->ops->matmul_forward(out, in, l->w, N, l->K, l->M, beta);
    if (l->shard_dim == 1) /* row-parallel: partial sums over the input features */
        hp_allreduce(tp, out, (size_t)N * l->M);
}

void linear_backward(const struct tp *tp, const struct linear *l, float *din, const float *dout,
                     const float *in, int N, float beta_din) {
    tp->ops->matmul_backward(din, l->g, dout, in, l->w, N, l->K, l->M, beta_din);
    if (din && l->shard_dim == 0) /* column-parallel: partial input gradients */
        hp_allreduce(tp, din, (size_t)N * l->K);
}

void par_reduce_output(const struct tp *tp, const struct param *w_out, float *x, size_t n) {
    if (w_out->shard_dim >= 0)
        hp_allreduce(tp, x, n);
}

void par_reduce_input_grad(const struct tp *tp, const struct param *w_in, float *dx, size_t n) {
    if (w_in->shard_dim >= 0)
        hp_allreduce(tp, dx, n);
}

void par_gather_heads(const struct tp *tp, float *x, size_t n) {
    hp_allreduce(tp, x, n); /* each rank filled its heads' entries, zeros elsewhere */
}

void par_batch_sum(const struct tp *tp, double *v, int n) {
    if (tp->d)
        dist_allreduce_group_doubles(tp->d, DIST_DPCP, v, n);
}

int par_batch_ranks(const struct tp *tp) {
    return tp->d ? dist_group_size(tp->d, DIST_DPCP) : 1;
}

void par_attention_forward(const struct tp *tp, float *out, float *lse, const float *qkv,
                           const struct attn_shape *s, struct cp_attn_ctx *ctx) {
    if (tp->cp > 1)
        cp_attention_forward(tp->ops, tp->d, out, lse, qkv, s, ctx, tp->work);
    else
        tp->ops->attention_forward(out, lse, qkv, s);
}

void par_attention_backward(const struct tp *tp, float *dqkv, const float *dout, const float *out,
                            const float *lse, const float *qkv, const struct attn_shape *s,
                            struct cp_attn_ctx *ctx) {
    if (tp->cp > 1)
        cp_attention_backward(tp->ops, tp->d, dqkv, dout, out, lse, qkv, s, ctx, tp->work);
    else
        tp->ops->attention_backward(dqkv, dout, out, lse, qkv, s);
}

void par_progress(const struct tp *tp) {
    if (tp->d)
        dist_grad_progress(tp->d);
}

/* ---- the chain over the context ranks ---------------------------------------------------------
 * One process: one piece per sequence. Under context parallelism, context rank r holds zig-zag
 * chunks r (rows [0, Tc)) and 2cp-1-r (rows [Tc, 2Tc)) of every sequence. The recurrence runs
 * over the 2cp chunks in sequence order: chunk r on rank r (message from rank r-1), ..., chunk
 * cp-1 then chunk cp both on rank cp-1, then chunk 2cp-1-r on rank r (from rank r+1), ending on
 * rank 0. The backward runs the chain in reverse with the adjoints. Pipelined over the B local
 * sequences: phase 1 runs the first chunks of all sequences (the messages flow up the ranks, so
 * rank r works on sequence b while rank r+1 works on b-1), phase 2 the second chunks (flowing
 * down); the backward runs the two phases in the other order. */

static void cp_msg(const struct tp *tp, float *buf, size_t n, int other, int sending) {
    const float **send = HW_CALLOC((size_t)tp->cp, sizeof(*send));
    float **recv = HW_CALLOC((size_t)tp->cp, sizeof(*recv));
    if (sending)
        send[other] = buf;
    else
        recv[other] = buf;
    dist_cp_exchange(tp->d, send, recv, n);
    free(send);
    free(recv);
}

void par_chain_forward(const struct tp *tp, const struct par_chain *c, par_piece_fn fwd,
                       void *ctx) {
    const size_t n = c->nmsg;
    if (c->np == 1) {
        for (int b = 0; b < c->B; b++)
            fwd(ctx, b, 0, NULL, c->msg + (size_t)b * n);
        return;
    }
    const int r = tp->cp_rank, R = tp->cp;
    for (int b = 0; b < c->B; b++) { /* phase 1: chunk r, from rank r-1 */
        float *keep = c->msg + (size_t)b * n;
        if (r > 0)
            cp_msg(tp, c->in, n, r - 1, 0);
        fwd(ctx, b, 0, r ? c->in : NULL, keep);
        if (r + 1 < R)
            cp_msg(tp, keep, n, r + 1, 1);
    }
    for (int b = 0; b < c->B; b++) { /* phase 2: chunk 2cp-1-r, from rank r+1 (or chunk cp-1) */
        float *out = c->msg + (size_t)b * n;
        if (r + 1 < R)
            cp_msg(tp, c->in, n, r + 1, 0);
        else
            memcpy(c->in, out, sizeof(float) * n);
        fwd(ctx, b, 1, c->in, out);
        if (r > 0)
            cp_msg(tp, out, n, r - 1, 1);
    }
}

void par_chain_backward(const struct tp *tp, const struct par_chain *c, par_piece_fn bwd,
                        void *ctx) {
    const size_t n = c->nmsg;
    if (c->np == 1) {
        for (int b = 0; b < c->B; b++)
            bwd(ctx, b, 0, NULL, NULL);
        return;
    }
    const int r = tp->cp_rank, R = tp->cp;
    for (int b = 0; b < c->B; b++) { /* second chunks: adjoints from rank r-1, none after the end */
        float *keep = c->msg + (size_t)b * n;
        if (r > 0)
            cp_msg(tp, c->in, n, r - 1, 0);
        bwd(ctx, b, 1, r > 0 ? c->in : NULL, keep);
        if (r + 1 < R)
            cp_msg(tp, keep, n, r + 1, 1);
    }
    for (int b = 0; b < c->B; b++) { /* first chunks: from rank r+1, or this rank's second chunk */
        float *out = c->msg + (size_t)b * n;
        if (r + 1 < R)
            cp_msg(tp, c->in, n, r + 1, 0);
        else
            memcpy(c->in, out, sizeof(float) * n);
        bwd(ctx, b, 0, c->in, r ? out : NULL);
        if (r > 0)
            cp_msg(tp, out, n, r - 1, 1);
    }
}
