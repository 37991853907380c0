/* tests/mpi_titans.c -- run under mpirun (2 or 4 ranks): the Titans memory with context
 * parallelism (dist/titans_cp.h: the (W, S) state and conv history handed r-1 -> r, adjoints
 * back) equals one process on the whole sequence: outputs, the final state, dx and the parameter
 * gradients summed over the context group. */
#include "../dist/dist.h"
#include "../dist/titans_cp.h"
#include "check.h"

#include <stdlib.h>
#include <string.h>

static float *rnd(size_t n, float s, unsigned *seed) {
    float *v = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        v[i] = s * ((float)(*seed >> 8) / 8388608.0f - 1.0f);
    }
    return v;
}

static void run(struct dist *d, int depth, int c, int b, int conv) {
    struct titans_cfg cf;
    titans_cfg_default(&cf, 6, 2, 4);
    cf.depth = depth;
    cf.hidden = 8;
    cf.c = c;
    cf.b = b;
    cf.conv = conv;
    cf.max_grad_norm = 1;
    struct titans_layout lo;
    titans_layout(&cf, &lo);
    int R = d->cp, r = d->cp_rank, Nl = 2 * b, N = Nl * R, dd = cf.d;
    size_t HP = (size_t)cf.H * lo.P;
    unsigned seed = 12345;
    float *par = rnd(lo.total, 0.4f, &seed), *x = rnd((size_t)N * dd, 1, &seed);
    float *R_ = rnd((size_t)N * dd, 1, &seed);
    /* reference: one process, the whole sequence */
    struct titans_tape_f t1;
    titans_tape_init_f(&t1, &cf, N);
    float *W = malloc(4 * HP), *S = malloc(4 * HP), *Wr = malloc(4 * HP),
          *out = malloc(4 * (size_t)N * dd);
    float *g1 = calloc(lo.total, 4), *dx1 = calloc((size_t)N * dd, 4), *dW = malloc(4 * HP);
    titans_state_init_f(&cf, par, W, S);
    titans_forward_f(&t1, par, W, S, NULL, x, N, out, Wr, S);
    titans_backward_f(&t1, par, R_, NULL, NULL, g1, dx1, NULL, dW, S);
    titans_state_init_backward_f(&cf, dW, g1);
    /* context parallel */
    struct titans_tape_f t2;
    titans_tape_init_f(&t2, &cf, Nl);
    float *o2 = malloc(4 * (size_t)Nl * dd), *W2 = malloc(4 * HP), *g2 = calloc(lo.total, 4);
    float *dx2 = calloc((size_t)Nl * dd, 4);
    size_t off = (size_t)r * Nl * dd;
    titans_cp_forward(d, &t2, par, x + off, Nl, o2, W2, NULL);
    titans_cp_backward(d, &t2, par, R_ + off, g2, dx2);
    dist_allreduce_f32(d, DIST_CP, g2, lo.total, DIST_KIND_OTHER);
    double eo = 0, ex = 0, eg = 0, ew = 0;
    for (size_t i = 0; i < (size_t)Nl * dd; i++) {
        eo = fmax(eo, fabs(o2[i] - out[off + i]));
        ex = fmax(ex, fabs(dx2[i] - dx1[off + i]) / fmax(1, fabs(dx1[off + i])));
    }
    for (size_t i = 0; i < lo.total; i++)
        eg = fmax(eg, fabs(g2[i] - g1[i]) / fmax(1, fabs(g1[i])));
    if (r == R - 1)
        for (size_t i = 0; i < HP; i++)
            ew = fmax(ew, fabs(W2[i] - Wr[i]));
    CHECK_MSG(eo < 1e-4 && ew < 1e-4, "rank %d depth %d c %d b %d conv %d: out %g state %g", r,
              depth, c, b, conv, eo, ew);
    CHECK_MSG(ex < 1e-3 && eg < 1e-3, "rank %d depth %d c %d b %d conv %d: dx %g dpar %g", r, depth,
              c, b, conv, ex, eg);
    titans_tape_free_f(&t1);
    titans_tape_free_f(&t2);
    free(par), free(x), free(R_), free(W), free(S), free(Wr), free(out), free(g1), free(dx1);
    free(dW), free(o2), free(W2), free(g2), free(dx2);
}

/* M = 3 micro-batches through the pipelined chain, each equal to one process on its sequence;
 * the parameter gradient is the sum over micro-batches. */
static void run_mb(struct dist *d) {
    struct titans_cfg cf;
    titans_cfg_default(&cf, 5, 2, 3);
    cf.c = 2;
    cf.b = 2;
    cf.conv = 2;
    cf.recompute = 1; /* boundary states only on the CP ranks; the reference stores all */
    struct titans_layout lo;
    titans_layout(&cf, &lo);
    int R = d->cp, r = d->cp_rank, M = 3, Nl = 4, N = Nl * R, dd = cf.d;
    size_t HP = (size_t)cf.H * lo.P, sq = (size_t)N * dd, sl = (size_t)Nl * dd;
    unsigned seed = 777;
    float *par = rnd(lo.total, 0.4f, &seed), *x = rnd(M * sq, 1, &seed);
    float *R_ = rnd(M * sq, 1, &seed), *out = malloc(4 * M * sq), *g1 = calloc(lo.total, 4);
    float *dx1 = calloc(M * sq, 4), *W = malloc(4 * HP), *S = malloc(4 * HP), *dW = malloc(4 * HP);
    struct titans_tape_f t1;
    struct titans_cfg cf1 = cf;
    cf1.recompute = 0;
    titans_tape_init_f(&t1, &cf1, N);
    for (int m = 0; m < M; m++) {
        titans_state_init_f(&cf, par, W, S);
        titans_forward_f(&t1, par, W, S, NULL, x + m * sq, N, out + m * sq, NULL, NULL);
        titans_backward_f(&t1, par, R_ + m * sq, NULL, NULL, g1, dx1 + m * sq, NULL, dW, S);
        titans_state_init_backward_f(&cf, dW, g1);
    }
    float *xl = malloc(4 * M * sl), *Rl = malloc(4 * M * sl), *ol = malloc(4 * M * sl);
    float *dxl = calloc(M * sl, 4), *g2 = calloc(lo.total, 4);
    for (int m = 0; m < M; m++) {
        memcpy(xl + m * sl, x + m * sq + (size_t)r * sl, 4 * sl);
        memcpy(Rl + m * sl, R_ + m * sq + (size_t)r * sl, 4 * sl);
    }
    struct titans_tape_f tl[3];
    for (int m = 0; m < M; m++)
        titans_tape_init_f(&tl[m], &cf, Nl);
    titans_cp_forward_mb(d, tl, M, par, xl, Nl, ol);
    titans_cp_backward_mb(d, tl, M, par, Rl, g2, dxl);
    dist_allreduce_f32(d, DIST_CP, g2, lo.total, DIST_KIND_OTHER);
    double eo = 0, ex = 0, eg = 0;
    for (int m = 0; m < M; m++)
        for (size_t i = 0; i < sl; i++) {
            size_t gi = m * sq + (size_t)r * sl + i;
            eo = fmax(eo, fabs(ol[m * sl + i] - out[gi]));
            ex = fmax(ex, fabs(dxl[m * sl + i] - dx1[gi]) / fmax(1, fabs(dx1[gi])));
        }
    for (size_t i = 0; i < lo.total; i++)
        eg = fmax(eg, fabs(g2[i] - g1[i]) / fmax(1, fabs(g1[i])));
    CHECK_MSG(eo < 1e-4 && ex < 1e-3 && eg < 1e-3, "rank %d micro-batches: out %g dx %g dpar %g", r,
              eo, ex, eg);
    for (int m = 0; m < M; m++)
        titans_tape_free_f(&tl[m]);
    titans_tape_free_f(&t1);
    free(par), free(x), free(R_), free(out), free(g1), free(dx1), free(W), free(S), free(dW);
    free(xl), free(Rl), free(ol), free(dxl), free(g2);
}

int main(int argc, char **argv) {
    struct dist d;
    dist_init(&d, &argc, &argv);
    dist_grid_init(&d, 1, d.world, 1, 0);
    run(&d, 2, 2, 4, 0);
    run(&d, 1, 1, 3, 0);
    run(&d, 2, 2, 2, 4);
    run_mb(&d);
    int bad = dist_allreduce_max_int(&d, check_failed_);
    int rc = check_report(d.rank == 0 ? "mpi_titans" : "mpi_titans (rank)");
    dist_finalize(&d);
    return bad ? 1 : rc;
}
