/* bench/titans_bench.c -- throughput of the Titans memory module's float path (model/titans.h):
 * forward and forward+backward tokens/s on one sequence for a few configurations around the
 * reference's train_mac.py defaults (d 384, 4 memory heads x 64, MLP depth 2, chunk 4, TTT batch
 * 128), plus the tape size (every chunk's weights are kept). Usage: titans_bench [N] [reps]. */
#include "../model/titans.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void run(int N, int reps, int depth, int c, int b, int rc) {
    struct titans_cfg cf;
    titans_cfg_default(&cf, 384, 4, 64);
    cf.depth = depth;
    cf.hidden = 256;
    cf.c = c;
    cf.b = b;
    cf.max_lr = 0.1;
    cf.max_grad_norm = 1;
    cf.conv = 4;
    cf.recompute = rc;
    struct titans_layout lo;
    titans_layout(&cf, &lo);
    size_t HP = (size_t)cf.H * lo.P, nx = (size_t)N * cf.d;
    float *par = malloc(4 * lo.total), *x = malloc(4 * nx), *out = malloc(4 * nx);
    float *dpar = calloc(lo.total, 4), *dx = calloc(nx, 4), *W = malloc(4 * HP);
    float *S = malloc(4 * HP), *dW = malloc(4 * HP), *dS = malloc(4 * HP);
    unsigned s = 1;
    for (size_t i = 0; i < lo.total; i++)
        s = s * 1664525u + 1013904223u, par[i] = 0.05f * ((float)(s >> 8) / 8388608.0f - 1);
    for (size_t i = 0; i < nx; i++)
        s = s * 1664525u + 1013904223u, x[i] = (float)(s >> 8) / 8388608.0f - 1;
    struct titans_tape_f t;
    titans_tape_init_f(&t, &cf, N);
    titans_state_init_f(&cf, par, W, S);
    titans_forward_f(&t, par, W, S, NULL, x, N, out, NULL, NULL); /* warm-up */
    double t0 = now_();
    for (int r = 0; r < reps; r++)
        titans_forward_f(&t, par, W, S, NULL, x, N, out, NULL, NULL);
    double tf = (now_() - t0) / reps;
    t0 = now_();
    for (int r = 0; r < reps; r++) {
        titans_forward_f(&t, par, W, S, NULL, x, N, out, NULL, NULL);
        titans_backward_f(&t, par, out, NULL, NULL, dpar, dx, NULL, dW, dS);
    }
    double tb = (now_() - t0) / reps;
    int ns = rc ? (N / c + b / c - 1) / (b / c) : N / c;
    double tape_mb = 2.0 * (ns + 1) * HP * 4 / 1e6;
    printf("depth %d chunk %3d ttt-batch %3d%s N %5d: fwd %8.0f tok/s  fwd+bwd %8.0f tok/s  "
           "(W,S) kept %.1f MB\n",
           depth, c, b, rc ? " recompute" : "", N, N / tf, N / tb, tape_mb);
    titans_tape_free_f(&t);
    free(par), free(x), free(out), free(dpar), free(dx), free(W), free(S), free(dW), free(dS);
}

int main(int argc, char **argv) {
    int N = argc > 1 ? atoi(argv[1]) : 512, reps = argc > 2 ? atoi(argv[2]) : 3;
    run(N, reps, 1, 4, 128, 0);
    run(N, reps, 2, 4, 128, 0);
    run(N, reps, 2, 4, 128, 1);
    run(N, reps, 2, 16, 128, 0);
    run(N, reps, 2, 1, 128, 0);
    run(N, reps, 2, 4, 4, 0);
    return 0;
}
