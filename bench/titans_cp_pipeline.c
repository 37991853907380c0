/* bench/titans_cp_pipeline.c -- idle time of the Titans memory's context-parallel chain
 * (dist/titans_cp.h), blocking vs pipelined over micro-batches. Run under mpirun; every rank is
 * one context rank holding an N-token slice of each sequence. For each M it times, per rank:
 *   pipelined  titans_cp_forward_mb + titans_cp_backward_mb over M sequences (M = 1: blocking)
 *   sequential titans_cp_forward + titans_cp_backward, one sequence after another (M > 1)
 * Each run starts after a barrier. step wall = until a barrier after the run (the slowest rank,
 * as a training step's gradient all-reduce would wait); own wall = until this rank is done;
 * wait = the time inside the hand-off exchanges (dist_stats CP_RING seconds: every
 * dist_cp_exchange); busy = own wall - wait; idle = 1 - busy / step wall. As a cross-check,
 * "solo" times this rank's titans_forward_f/backward_f calls with no communication (all ranks at
 * once). Model: (R-1)/(M+R-1) pipelined, (R-1)/R blocking and sequential. Rank 0 prints
 * markdown rows (HW_CP_VERBOSE=1: per-rank lines too) and the bytes per hand-off message.
 * "other CPU" is the share of all cores that processes other than the ranks used during a row
 * (/proc/stat busy time minus the ranks' CPU time): the row's noise from other load.
 * Usage: titans_cp_pipeline [N] [reps] [M...] (default 128 5 1 2 4 8). */
#include "../core/check.h"
#define _POSIX_C_SOURCE 200809L
#include "../dist/dist.h"
#include "../dist/titans_cp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* This process's CPU seconds. */
static double cpu_(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Busy CPU seconds of the whole machine so far (all cores; /proc/stat), or 0 if unreadable. */
static double machine_busy_(void) {
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return 0;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n < 8)
        return 0;
    /* user nice system [idle iowait] irq softirq steal */
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}

struct bench {
    struct dist *d;
    struct titans_cfg cf;
    struct titans_layout lo;
    int N, reps;
    double tf, wf; /* the last pipelined run: forward wall and wait */
    float *par, *x, *dout, *out, *dpar, *dx, *W, *S, *W1, *S1, *dW, *dS, *xprev, *dxprev;
    struct titans_tape_f *t; /* Mmax tapes */
};

enum mode { PIPELINED, SEQUENTIAL, SOLO };

/* One fwd+bwd of M sequences in the given mode on this rank. */
static void work_(struct bench *B, enum mode mo, int M) {
    size_t sl = (size_t)B->N * B->cf.d;
    memset(B->dpar, 0, sizeof(float) * B->lo.total);
    memset(B->dx, 0, sizeof(float) * sl * (size_t)M);
    if (mo == PIPELINED) {
        double t0 = now_(), w0 = B->d->stats.seconds[DIST_KIND_CP_RING];
        titans_cp_forward_mb(B->d, B->t, M, B->par, B->x, B->N, B->out);
        B->tf = now_() - t0, B->wf = B->d->stats.seconds[DIST_KIND_CP_RING] - w0;
        titans_cp_backward_mb(B->d, B->t, M, B->par, B->dout, B->dpar, B->dx);
    } else if (mo == SEQUENTIAL) {
        for (int m = 0; m < M; m++) {
            titans_cp_forward(B->d, &B->t[m], B->par, B->x + m * sl, B->N, B->out + m * sl, NULL,
                              NULL);
            titans_cp_backward(B->d, &B->t[m], B->par, B->dout + m * sl, B->dpar, B->dx + m * sl);
        }
    } else { /* the module calls of the chain on this rank, without any exchange */
        float *xp = B->d->cp_rank ? B->xprev : NULL, *dxp = B->d->cp_rank ? B->dxprev : NULL;
        for (int m = 0; m < M; m++) {
            titans_state_init_f(&B->cf, B->par, B->W, B->S);
            titans_forward_f(&B->t[m], B->par, B->W, B->S, xp, B->x + m * sl, B->N, B->out + m * sl,
                             B->W1, B->S1);
        }
        for (int m = M - 1; m >= 0; m--)
            titans_backward_f(&B->t[m], B->par, B->dout + m * sl, B->W1, B->S1, B->dpar,
                              B->dx + m * sl, dxp, B->dW, B->dS);
    }
}

/* Times reps runs (after one warm-up) and keeps the one whose step wall (the slowest rank's) is
 * least, the same run on every rank: the least disturbed by other load. On this rank:
 * v[0] = wall until this rank is done, v[1] = wait (exchange seconds), v[2] = sent bytes,
 * v[3] = step wall (until a barrier after the run: in training the step's gradient all-reduce
 * waits for the slowest rank). */
static double *gather_(struct bench *B, const double *v, int k);

static void time_(struct bench *B, enum mode mo, int M, double v[4]) {
    double *run = calloc((size_t)4 * B->reps, sizeof(double));
    HW_ASSERT(run);
    work_(B, mo, M);
    for (int k = 0; k < B->reps; k++) {
        double *x = run + 4 * k;
        dist_barrier(B->d);
        dist_stats_reset(B->d);
        double t0 = now_();
        work_(B, mo, M);
        x[0] = now_() - t0;
        x[1] = B->d->stats.seconds[DIST_KIND_CP_RING];
        x[2] = B->d->stats.bytes[DIST_KIND_CP_RING];
        dist_barrier(B->d);
        x[3] = now_() - t0;
    }
    double *st = malloc(sizeof(double) * B->reps);
    HW_ASSERT(st);
    for (int k = 0; k < B->reps; k++)
        st[k] = run[4 * k + 3];
    double *all = gather_(B, st, B->reps), best = 1e30;
    int kb = 0;
    for (int k = 0; k < B->reps; k++) {
        double w = 0;
        for (int r = 0; r < B->d->cp; r++)
            w = all[r * B->reps + k] > w ? all[r * B->reps + k] : w;
        if (w < best)
            best = w, kb = k;
    }
    memcpy(v, run + 4 * kb, sizeof(double) * 4);
    free(run), free(st), free(all);
}

/* Every rank's k values, gathered on every rank by a sum of zero-padded arrays. */
static double *gather_(struct bench *B, const double *v, int k) {
    int R = B->d->cp;
    double *all = calloc((size_t)R * k, sizeof(double));
    HW_ASSERT(all);
    memcpy(all + (size_t)B->d->cp_rank * k, v, sizeof(double) * k);
    dist_allreduce_group_doubles(B->d, DIST_CP, all, R * k);
    return all;
}

static void row_(struct bench *B, enum mode mo, int M, double *bytes_sum, long *msgs) {
    int R = B->d->cp;
    double v[8], s[4];
    dist_barrier(B->d);
    double m0 = machine_busy_(), c0 = cpu_(), t0 = now_();
    time_(B, mo, M, v);
    v[5] = B->tf, v[6] = B->wf;
    time_(B, SOLO, M, s);
    v[4] = s[0];
    v[7] = cpu_() - c0;
    dist_barrier(B->d);
    double m1 = machine_busy_(), t1 = now_();
    double *a = gather_(B, v, 8), ours = 0;
    for (int r = 0; r < R; r++)
        ours += a[8 * r + 7];
    double other = (m1 - m0 - ours) / ((t1 - t0) * (double)sysconf(_SC_NPROCESSORS_ONLN));
    if (getenv("HW_CP_VERBOSE") && B->d->rank == 0)
        for (int r = 0; r < R; r++) {
            double *x = a + 8 * r;
            printf("  rank %d M %d %s: own wall %.1f ms, wait %.1f, step wall %.1f, solo %.1f", r,
                   M, mo == PIPELINED ? "pipelined" : "sequential", 1e3 * x[0], 1e3 * x[1],
                   1e3 * x[3], 1e3 * x[4]);
            if (mo == PIPELINED)
                printf("; last forward %.1f, its wait %.1f", 1e3 * x[5], 1e3 * x[6]);
            printf("\n");
        }
    double wall = 0, busy = 0, solo = 0; /* i: step, own end, solo; each max, mean */
    double i[3][2] = {{-1e30, 0}, {-1e30, 0}, {-1e30, 0}};
    for (int r = 0; r < R; r++) {
        double *x = a + 8 * r, w = x[3], bz = x[0] - x[1];
        double id[3] = {1 - bz / w, 1 - bz / x[0], 1 - x[4] / w};
        wall += w / R;
        busy += bz / R;
        solo += x[4] / R;
        for (int k = 0; k < 3; k++) {
            i[k][0] = i[k][0] > id[k] ? i[k][0] : id[k];
            i[k][1] += id[k] / R;
        }
        *bytes_sum += x[2];
    }
    *msgs += 2L * M * (R - 1);
    double model = mo == PIPELINED ? (double)(R - 1) / (M + R - 1) : (double)(R - 1) / R;
    const char *name = mo == SEQUENTIAL ? "sequential" : M == 1 ? "blocking" : "pipelined";
    if (B->d->rank == 0)
        printf("| %d | %d | %s | %.1f | %.1f | %.1f | %.3f / %.3f | %.3f | %.3f / %.3f | %.3f / "
               "%.3f | %.0f%% |\n",
               R, M, name, 1e3 * wall, 1e3 * busy, 1e3 * solo, i[0][0], i[0][1], model, i[1][0],
               i[1][1], i[2][0], i[2][1], 100 * (other > 0 ? other : 0));
    free(a);
}

int main(int argc, char **argv) {
    struct dist d;
    dist_init(&d, &argc, &argv);
    dist_grid_init(&d, 1, d.world, 1, 0);
    struct bench B = {.d = &d};
    B.N = argc > 1 ? atoi(argv[1]) : 128;
    B.reps = argc > 2 ? atoi(argv[2]) : 5;
    int Ms[16] = {1, 2, 4, 8}, nM = 4, Mmax = 0;
    if (argc > 3) {
        nM = 0;
        for (int i = 3; i < argc && nM < 16; i++)
            Ms[nM++] = atoi(argv[i]);
    }
    for (int i = 0; i < nM; i++)
        Mmax = Ms[i] > Mmax ? Ms[i] : Mmax;
    struct titans_cfg *cf = &B.cf;
    titans_cfg_default(cf, 128, 2, 64);
    cf->depth = 2;
    cf->c = 4;
    cf->b = 16;
    cf->conv = 4;
    cf->max_lr = 0.1;
    cf->max_grad_norm = 1;
    titans_layout(cf, &B.lo);
    size_t sl = (size_t)B.N * cf->d, HP = (size_t)cf->H * B.lo.P;
    B.par = malloc(sizeof(float) * B.lo.total);
    B.x = malloc(sizeof(float) * sl * Mmax);
    B.dout = malloc(sizeof(float) * sl * Mmax);
    B.out = malloc(sizeof(float) * sl * Mmax);
    B.dx = malloc(sizeof(float) * sl * Mmax);
    B.dpar = malloc(sizeof(float) * B.lo.total);
    B.W = malloc(sizeof(float) * HP), B.S = malloc(sizeof(float) * HP);
    B.dW = malloc(sizeof(float) * HP), B.dS = malloc(sizeof(float) * HP);
    B.W1 = calloc(HP, sizeof(float)), B.S1 = calloc(HP, sizeof(float));
    B.xprev = calloc((size_t)cf->conv * cf->d, sizeof(float));
    B.dxprev = calloc((size_t)cf->conv * cf->d, sizeof(float));
    titans_params_init_f(cf, B.par, 1);   /* the same parameters on every rank */
    unsigned s = 1 + (unsigned)d.cp_rank; /* each rank's own slices */
    for (size_t i = 0; i < sl * Mmax; i++) {
        s = s * 1664525u + 1013904223u, B.x[i] = (float)(s >> 8) / 8388608.0f - 1;
        s = s * 1664525u + 1013904223u, B.dout[i] = (float)(s >> 8) / 8388608.0f - 1;
    }
    B.t = malloc(sizeof(*B.t) * Mmax);
    for (int m = 0; m < Mmax; m++)
        titans_tape_init_f(&B.t[m], cf, B.N);
    size_t n = titans_cp_msg_floats(cf);
    double formula = 4.0 * (2.0 * cf->H * B.lo.P + (cf->conv - 1.0) * cf->d);
    if (d.rank == 0) {
        printf("titans cp pipeline: R %d, slice N %d tokens, d %d, H %d, D %d, depth %d, hidden "
               "%d, c %d, b %d, conv %d, P %zu; each row: the fastest of %d runs\n",
               d.cp, B.N, cf->d, cf->H, cf->D, cf->depth, cf->hidden, cf->c, cf->b, cf->conv,
               B.lo.P, B.reps);
        printf("| R | M | mode | step wall ms | busy ms | solo ms | idle max / mean | model idle "
               "| idle to own end max / mean | idle (solo busy) max / mean | other CPU |\n"
               "|---|---|---|---|---|---|---|---|---|---|---|\n");
    }
    double bytes_sum = 0;
    long msgs = 0;
    for (int i = 0; i < nM; i++) {
        row_(&B, PIPELINED, Ms[i], &bytes_sum, &msgs);
        if (Ms[i] > 1)
            row_(&B, SEQUENTIAL, Ms[i], &bytes_sum, &msgs);
    }
    if (d.rank == 0)
        printf("bytes per hand-off message: measured %.0f (sent bytes / messages), "
               "titans_cp_msg_floats*4 %zu, formula 4*(2*H*P + (K-1)*d) %.0f\n",
               msgs ? bytes_sum / msgs : 0.0, 4 * n, formula);
    for (int m = 0; m < Mmax; m++)
        titans_tape_free_f(&B.t[m]);
    free(B.t), free(B.par), free(B.x), free(B.dout), free(B.out), free(B.dx), free(B.dpar);
    free(B.W), free(B.S), free(B.W1), free(B.S1), free(B.dW), free(B.dS), free(B.xprev);
    free(B.dxprev);
    dist_finalize(&d);
    return 0;
}
