/* dist/titans_cp.c -- owns the Titans memory's context-parallel state hand-off (see the header):
 * message packing and the blocking forward/backward chain over the context group. */
#include "titans_cp.h"

#include "../core/check.h"
#include "dist.h"

#include <stdlib.h>
#include <string.h>

size_t titans_cp_msg_floats(const struct titans_cfg *c) {
    struct titans_layout lo;
    titans_layout(c, &lo);
    size_t K1 = c->conv > 0 ? (size_t)c->conv - 1 : 0;
    return 2 * (size_t)c->H * lo.P + K1 * (size_t)c->d;
}

/* Send (to = 1) or receive (to = 0) one message with the neighbour rank r+1 / r-1. */
static void exchange_(struct dist *d, float *msg, size_t n, int other, int sending) {
    const float **send = calloc((size_t)d->cp, sizeof *send);
    float **recv = calloc((size_t)d->cp, sizeof *recv);
    HW_ASSERT(send && recv);
    if (sending)
        send[other] = msg;
    else
        recv[other] = msg;
    dist_cp_exchange(d, send, recv, n);
    free(send);
    free(recv);
}

void titans_cp_forward(struct dist *d, struct titans_tape_f *t, const float *par, const float *x,
                       int N, float *out, float *Wout, float *Sout) {
    const struct titans_cfg *c = &t->cfg;
    size_t HP = (size_t)c->H * t->lo.P, K1 = c->conv > 0 ? (size_t)c->conv - 1 : 0;
    size_t n = titans_cp_msg_floats(c);
    int r = d->cp_rank, R = d->cp;
    HW_ASSERT(N % c->b == 0 && (size_t)N >= K1);
    HW_ASSERT(t->lo.ops->kind == BACKEND_CPU); /* the messages are host buffers */
    float *in = calloc(n, sizeof(float)), *msg = calloc(n, sizeof(float));
    HW_ASSERT(in && msg);
    if (r == 0)
        titans_state_init_f(c, par, in, in + HP);
    else
        exchange_(d, in, n, r - 1, 0);
    titans_forward_f(t, par, in, in + HP, r ? in + 2 * HP : NULL, x, N, out, msg, msg + HP);
    memcpy(msg + 2 * HP, x + ((size_t)N - K1) * c->d, sizeof(float) * K1 * c->d);
    if (r + 1 < R)
        exchange_(d, msg, n, r + 1, 1);
    if (Wout)
        memcpy(Wout, msg, sizeof(float) * HP);
    if (Sout)
        memcpy(Sout, msg + HP, sizeof(float) * HP);
    free(in);
    free(msg);
}

void titans_cp_backward(struct dist *d, struct titans_tape_f *t, const float *par,
                        const float *dout, float *dpar, float *dx) {
    const struct titans_cfg *c = &t->cfg;
    size_t HP = (size_t)c->H * t->lo.P, K1 = c->conv > 0 ? (size_t)c->conv - 1 : 0;
    size_t n = titans_cp_msg_floats(c);
    int r = d->cp_rank, R = d->cp, N = t->N;
    float *in = calloc(n, sizeof(float)), *msg = calloc(n, sizeof(float));
    float *dxl = calloc((size_t)N * c->d + 1, sizeof(float));
    HW_ASSERT(in && msg && dxl);
    if (r + 1 < R) /* adjoints of our end state and of our last K-1 inputs */
        exchange_(d, in, n, r + 1, 0);
    for (size_t i = 0; i < K1 * c->d; i++)
        dxl[((size_t)N - K1) * c->d + i] += in[2 * HP + i];
    titans_backward_f(t, par, dout, in, in + HP, dpar, dxl, r ? msg + 2 * HP : NULL, msg, msg + HP);
    if (r == 0)
        titans_state_init_backward_f(c, msg, dpar);
    else
        exchange_(d, msg, n, r - 1, 1);
    if (dx)
        for (size_t i = 0; i < (size_t)N * c->d; i++)
            dx[i] += dxl[i];
    free(in);
    free(msg);
    free(dxl);
}

void titans_cp_forward_mb(struct dist *d, struct titans_tape_f *t, int M, const float *par,
                          const float *x, int N, float *out) {
    size_t n = (size_t)N * (size_t)t[0].cfg.d;
    for (int m = 0; m < M; m++)
        titans_cp_forward(d, &t[m], par, x + (size_t)m * n, N, out + (size_t)m * n, NULL, NULL);
}

void titans_cp_backward_mb(struct dist *d, struct titans_tape_f *t, int M, const float *par,
                           const float *dout, float *dpar, float *dx) {
    size_t n = (size_t)t[0].N * (size_t)t[0].cfg.d;
    for (int m = M - 1; m >= 0; m--)
        titans_cp_backward(d, &t[m], par, dout + (size_t)m * n, dpar,
                           dx ? dx + (size_t)m * n : NULL);
}
