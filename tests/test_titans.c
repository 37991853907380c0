/* tests/test_titans.c -- the Titans memory module (model/titans.h) against the invariants of
 * ALGORITHMS.md §2.8: scans, fixed MLP at theta = alpha = 0, full reset at alpha = 1, the delta
 * rule, the 1-D toy (w2 = 1.5 sequential, 2.5 within a TTT batch, 1.4 with forgetting), chunk
 * chaining and the state hand-off (values and adjoints, 2 and 4 pieces), decoding = parallel,
 * causality, float = double, and central finite differences of every parameter (and dx) through
 * the inner update in double. */
#include "../model/titans.h"
#include "check.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

static unsigned long long rng_ = 88172645463325252ULL;
static double urand(void) { /* uniform [-1, 1) */
    rng_ ^= rng_ << 13;
    rng_ ^= rng_ >> 7;
    rng_ ^= rng_ << 17;
    return (double)(rng_ >> 11) / 9007199254740992.0 * 2 - 1;
}

static double *rand_vec(size_t n, double s) {
    double *v = malloc(sizeof(double) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        v[i] = s * urand();
    return v;
}

static double *rand_params(const struct titans_cfg *c) {
    struct titans_layout lo;
    titans_layout(c, &lo);
    double *p = rand_vec(lo.total, 0.5);
    for (int h = 0; h < c->H; h++) {
        p[lo.bth + h] = 0.3 * urand();
        p[lo.beta + h] = 0.5 + 0.3 * urand();
        p[lo.bal + h] = -1.5 + 0.3 * urand();
    }
    return p;
}

/* M_W(q) by plain loops (row vector times matrices, exact GELU between layers). */
static void naive_mlp(const struct titans_layout *lo, const double *W, const double *q, double *o) {
    double a[256], b[256];
    memcpy(a, q, sizeof(double) * lo->in[0]);
    for (int l = 0; l < lo->L; l++) {
        for (int j = 0; j < lo->out[l]; j++) {
            double s = 0;
            for (int i = 0; i < lo->in[l]; i++)
                s += a[i] * W[lo->off[l] + (size_t)i * lo->out[l] + j];
            b[j] = l + 1 < lo->L ? 0.5 * s * (1 + erf(s / sqrt(2.0))) : s;
        }
        memcpy(a, b, sizeof(double) * lo->out[l]);
    }
    memcpy(o, a, sizeof(double) * lo->out[lo->L - 1]);
}

static void test_scan(void) {
    for (int n = 1; n <= 40; n += 3) {
        size_t P = 5;
        double *a = rand_vec((size_t)n, 1), *x = rand_vec((size_t)n * P, 1), *pv = rand_vec(P, 1);
        double *h1 = calloc((size_t)n * P, sizeof(double)), *h2 = calloc((size_t)n * P, 8);
        titans_scan_seq_d(n, P, a, x, P, pv, h1, P);
        titans_scan_d(n, P, a, x, P, pv, h2, P);
        double e = 0;
        for (size_t i = 0; i < (size_t)n * P; i++)
            e = fmax(e, fabs(h1[i] - h2[i]));
        CHECK_MSG(e < 1e-12, "scan n=%d err %g", n, e);
        /* split: scan(x[:m]); scan(x[m:], prev = last) == full */
        int m = n / 2;
        double *h3 = calloc((size_t)n * P, sizeof(double));
        titans_scan_d(m, P, a, x, P, pv, h3, P);
        titans_scan_d(n - m, P, a + m, x + (size_t)m * P, P, m ? h3 + (size_t)(m - 1) * P : pv,
                      h3 + (size_t)m * P, P);
        e = 0;
        for (size_t i = 0; i < (size_t)n * P; i++)
            e = fmax(e, fabs(h1[i] - h3[i]));
        CHECK_MSG(e < 1e-12, "split scan n=%d err %g", n, e);
        free(a), free(x), free(pv), free(h1), free(h2), free(h3);
    }
}

static struct titans_cfg base_cfg(int depth, int c, int b) {
    struct titans_cfg cf;
    titans_cfg_default(&cf, 5, 2, 3);
    cf.depth = depth;
    cf.hidden = 4;
    cf.c = c;
    cf.b = b;
    cf.max_lr = 0.7;
    return cf;
}

/* theta = alpha = 0: the memory never changes and the module is a fixed MLP of the queries.
 * alpha = 1: W_n = S_n. */
static void test_fixed_and_reset(void) {
    struct titans_cfg cf = base_cfg(2, 2, 4);
    struct titans_layout lo;
    titans_layout(&cf, &lo);
    int N = 10, d = cf.d, H = cf.H, D = cf.D, HD = H * D;
    double *par = rand_params(&cf), *x = rand_vec((size_t)N * d, 1);
    for (int i = 0; i < d * H; i++)
        par[lo.wth + i] = par[lo.wal + i] = 0;
    for (int h = 0; h < H; h++)
        par[lo.bth + h] = par[lo.bal + h] = -1e4;
    struct titans_tape_d t;
    titans_tape_init_d(&t, &cf, N);
    size_t HP = (size_t)H * lo.P;
    double *W = malloc(8 * HP), *S = malloc(8 * HP), *out = malloc(8 * (size_t)N * d);
    titans_state_init_d(&cf, par, W, S);
    titans_forward_d(&t, par, W, S, NULL, x, N, out, NULL, NULL);
    double e = 0;
    for (int n = 0; n <= t.Nc; n++)
        for (size_t i = 0; i < HP; i++)
            e = fmax(e, fabs(t.W[(size_t)n * HP + i] - par[lo.w0 + i]));
    CHECK_MSG(e == 0, "theta=alpha=0 moved the weights by %g", e);
    e = 0;
    for (int i = 0; i < N; i++) {
        double y[64], o;
        for (int h = 0; h < H; h++) {
            naive_mlp(&lo, par + lo.w0 + (size_t)h * lo.P, t.q + (size_t)i * HD + h * D, y + h * D);
            for (int j = 0; j < D; j++)
                y[h * D + j] *= t.g[(size_t)i * H + h];
        }
        for (int j = 0; j < d; j++) {
            o = 0;
            for (int k = 0; k < HD; k++)
                o += y[k] * par[lo.wo + (size_t)k * d + j];
            e = fmax(e, fabs(o - out[(size_t)i * d + j]));
        }
    }
    CHECK_MSG(e < 1e-12, "fixed MLP err %g", e);
    /* alpha = 1 (theta back on): full reset, W_n = S_n */
    for (int h = 0; h < H; h++)
        par[lo.bth + h] = 0, par[lo.bal + h] = 1e4;
    titans_forward_d(&t, par, W, S, NULL, x, N, out, NULL, NULL);
    e = 0;
    double mx = 0;
    for (int n = 1; n <= t.Nc; n++)
        for (size_t i = 0; i < HP; i++) {
            e = fmax(e, fabs(t.W[(size_t)n * HP + i] - t.S[(size_t)n * HP + i]));
            mx = fmax(mx, fabs(t.S[(size_t)n * HP + i]));
        }
    CHECK_MSG(e == 0 && mx > 0, "alpha=1: |W - S| %g, |S| %g", e, mx);
    titans_tape_free_d(&t);
    free(par), free(x), free(W), free(S), free(out);
}

/* The reference's retrieval index: token i reads W_{floor((i+1)/c)}, checked against the tape's
 * per-chunk weights with a naive MLP (c = 3, a trailing incomplete chunk). */
static void test_retrieval_index(void) {
    struct titans_cfg cf = base_cfg(2, 3, 6);
    struct titans_layout lo;
    titans_layout(&cf, &lo);
    int N = 11, d = cf.d, H = cf.H, D = cf.D, HD = H * D;
    size_t HP = (size_t)H * lo.P;
    double *par = rand_params(&cf), *x = rand_vec((size_t)N * d, 1);
    double *W = malloc(8 * HP), *S = malloc(8 * HP), *out = malloc(8 * (size_t)N * d);
    struct titans_tape_d t;
    titans_tape_init_d(&t, &cf, N);
    titans_state_init_d(&cf, par, W, S);
    titans_forward_d(&t, par, W, S, NULL, x, N, out, NULL, NULL);
    double e = 0, ewrong = 0;
    for (int i = 0; i < N; i++)
        for (int h = 0; h < H; h++) {
            double y[16], y2[16];
            int j = (i + 1) / cf.c, jw = i / cf.c;
            naive_mlp(&lo, t.W + (size_t)j * HP + h * lo.P, t.q + (size_t)i * HD + h * D, y);
            naive_mlp(&lo, t.W + (size_t)jw * HP + h * lo.P, t.q + (size_t)i * HD + h * D, y2);
            for (int k = 0; k < D; k++) {
                e = fmax(e, fabs(y[k] - t.m[(size_t)i * HD + h * D + k]));
                ewrong = fmax(ewrong, fabs(y2[k] - t.m[(size_t)i * HD + h * D + k]));
            }
        }
    CHECK_MSG(e < 1e-12, "retrieval index err %g", e);
    CHECK_MSG(ewrong > 1e-6, "floor(i/c) indexing is indistinguishable (%g)", ewrong);
    CHECK(t.Nc == 3);
    titans_tape_free_d(&t);
    free(par), free(x), free(W), free(S), free(out);
}

/* Read-only retrieval at a given state (MAC's h_t = M*_{t-1}(q)): every token reads W (checked
 * with a naive MLP), and FD of every parameter, x, the conv history and W. */
static double read_loss(const struct titans_cfg *cf, const double *par, const double *W,
                        const double *xp, const double *x, int N, const double *R, double *out) {
    struct titans_tape_d t;
    titans_tape_init_d(&t, cf, N);
    titans_read_d(&t, par, W, xp, x, N, out);
    double L = 0;
    for (size_t i = 0; i < (size_t)N * cf->d; i++)
        L += out[i] * R[i];
    titans_tape_free_d(&t);
    return L;
}

static void test_read(void) {
    struct titans_cfg cf = base_cfg(2, 2, 4);
    cf.conv = 3;
    struct titans_layout lo;
    titans_layout(&cf, &lo);
    int N = 7, d = cf.d, H = cf.H, D = cf.D, HD = H * D, K1 = cf.conv - 1;
    size_t HP = (size_t)H * lo.P;
    double *par = rand_params(&cf), *x = rand_vec((size_t)N * d, 1), *W = rand_vec(HP, 0.5);
    double *xp = rand_vec((size_t)K1 * d, 1), *R = rand_vec((size_t)N * d, 1);
    double *out = malloc(8 * (size_t)N * d), *dpar = calloc(lo.total, 8);
    double *dx = calloc((size_t)N * d, 8), *dxp = calloc((size_t)K1 * d, 8), *dW = malloc(8 * HP);
    struct titans_tape_d t;
    titans_tape_init_d(&t, &cf, N);
    titans_read_d(&t, par, W, xp, x, N, out);
    double e = 0;
    for (int i = 0; i < N; i++)
        for (int h = 0; h < H; h++) {
            double y[16];
            naive_mlp(&lo, W + h * lo.P, t.q + (size_t)i * HD + h * D, y);
            for (int k = 0; k < D; k++)
                e = fmax(e, fabs(y[k] - t.m[(size_t)i * HD + h * D + k]));
        }
    CHECK_MSG(e < 1e-12, "read: retrieval err %g", e);
    titans_read_backward_d(&t, par, R, dpar, dx, dxp, dW);
    titans_tape_free_d(&t);
    double eh = 1e-5, w = 0;
    double *arrs[4] = {par, x, xp, W}, *grads[4] = {dpar, dx, dxp, dW};
    size_t lens[4] = {lo.total, (size_t)N * d, (size_t)K1 * d, HP};
    for (int a = 0; a < 4; a++)
        for (size_t i = 0; i < lens[a]; i++) {
            double sv = arrs[a][i];
            arrs[a][i] = sv + eh;
            double lp = read_loss(&cf, par, W, xp, x, N, R, out);
            arrs[a][i] = sv - eh;
            double lm = read_loss(&cf, par, W, xp, x, N, R, out);
            arrs[a][i] = sv;
            double fd = (lp - lm) / (2 * eh);
            w = fmax(w, fabs(fd - grads[a][i]) / fmax(1, fabs(fd)));
        }
    CHECK_MSG(w < 1e-6, "read: FD off by %g", w);
    free(par), free(x), free(W), free(xp), free(R), free(out), free(dpar), free(dx), free(dxp);
    free(dW);
}

/* Linear memory, eta = alpha = 0, c = b = 1: W_t = W_{t-1} - theta_t 2 kappa k^T (k W - v). */
static void test_delta_rule(double kappa_over_D) {
    struct titans_cfg cf = base_cfg(1, 1, 1);
    cf.kappa = kappa_over_D ? 1.0 / cf.D : 1.0;
    struct titans_layout lo;
    titans_layout(&cf, &lo);
    int N = 9, d = cf.d, H = cf.H, D = cf.D, HD = H * D;
    double *par = rand_params(&cf), *x = rand_vec((size_t)N * d, 1);
    for (int i = 0; i < d * H; i++)
        par[lo.weta + i] = par[lo.wal + i] = 0;
    for (int h = 0; h < H; h++)
        par[lo.beta + h] = par[lo.bal + h] = -1e4;
    struct titans_tape_d t;
    titans_tape_init_d(&t, &cf, N);
    size_t HP = (size_t)H * lo.P, P = lo.P;
    double *W = malloc(8 * HP), *S = malloc(8 * HP), *out = malloc(8 * (size_t)N * d);
    titans_state_init_d(&cf, par, W, S);
    titans_forward_d(&t, par, W, S, NULL, x, N, out, NULL, NULL);
    double e = 0;
    for (int i = 0; i < N; i++)
        for (int h = 0; h < H; h++) {
            double *w = W + h * P, err[16];
            const double *k = t.k + (size_t)i * HD + h * D, *v = t.v + (size_t)i * HD + h * D;
            double th = t.th[(size_t)i * H + h];
            for (int j = 0; j < D; j++) {
                err[j] = -v[j];
                for (int a = 0; a < D; a++)
                    err[j] += k[a] * w[a * D + j];
            }
            for (int a = 0; a < D; a++)
                for (int j = 0; j < D; j++)
                    w[a * D + j] -= th * 2 * cf.kappa * k[a] * err[j];
            for (size_t j = 0; j < P; j++)
                e = fmax(e, fabs(w[j] - t.W[(size_t)(i + 1) * HP + h * P + j]));
        }
    CHECK_MSG(e < 1e-12, "delta rule (kappa %g) err %g", cf.kappa, e);
    titans_tape_free_d(&t);
    free(par), free(x), free(W), free(S), free(out);
}

/* d = 1, M(k) = w k, w0 = 0, k = v = 1, theta = eta = 0.5: w2 = 1.5 (b = 1), 2.5 (b = 2),
 * 1.4 (b = 1, alpha = 0.1); token 1 reads w2 at q = 2. */
static void toy(int b, double alpha, double *w2, double *y0, double *y1) {
    struct titans_cfg cf;
    titans_cfg_default(&cf, 1, 1, 1);
    cf.depth = 1;
    cf.c = 1;
    cf.b = b;
    cf.silu = cf.l2norm = cf.gate = 0;
    cf.kappa = 1;
    cf.max_lr = 1;
    struct titans_layout lo;
    titans_layout(&cf, &lo);
    double *par = calloc(lo.total, sizeof(double));
    par[lo.wk] = par[lo.wv] = par[lo.wo] = 1;
    par[lo.wq] = 2;
    par[lo.bal] = alpha > 0 ? log(alpha / (1 - alpha)) : -1e4;
    double x[2] = {1, 1}, out[2], W, S;
    struct titans_tape_d t;
    titans_tape_init_d(&t, &cf, 2);
    titans_state_init_d(&cf, par, &W, &S);
    titans_forward_d(&t, par, &W, &S, NULL, x, 2, out, &W, &S);
    *w2 = W;
    *y0 = out[0];
    *y1 = out[1];
    titans_tape_free_d(&t);
    free(par);
}

static void test_toy(void) {
    double w2, y0, y1;
    toy(1, 0, &w2, &y0, &y1);
    CHECK_CLOSE(w2, 1.5, 1e-12);
    CHECK_CLOSE(y0, 2.0, 1e-12); /* token 0 reads w1 = 1 */
    CHECK_CLOSE(y1, 3.0, 1e-12);
    toy(2, 0, &w2, &y0, &y1);
    CHECK_CLOSE(w2, 2.5, 1e-12);
    CHECK_CLOSE(y1, 5.0, 1e-12);
    toy(1, 0.1, &w2, &y0, &y1);
    CHECK_CLOSE(w2, 1.4, 1e-12);
}

/* loss = <out, R> + <Wout, RW> + <Sout, RS> over one call or pieces chained; returns the loss and
 * fills dpar (+= over pieces, includes W0 via the state init) and dx. */
static double run_pieces(const struct titans_cfg *cf, const double *par, const double *x, int N,
                         int npieces, const double *R, const double *RW, const double *RS,
                         double *out, double *Wf, double *dpar, double *dx) {
    struct titans_layout lo;
    titans_layout(cf, &lo);
    int d = cf->d, len = N / npieces, K1 = cf->conv > 0 ? cf->conv - 1 : 0;
    size_t HP = (size_t)cf->H * lo.P;
    struct titans_tape_d *tp = malloc(sizeof *tp * npieces);
    double *W = malloc(8 * HP * (npieces + 1)), *S = malloc(8 * HP * (npieces + 1));
    titans_state_init_d(cf, par, W, S);
    for (int p = 0; p < npieces; p++) {
        titans_tape_init_d(&tp[p], cf, len);
        /* the conv history of piece p: the K1 inputs before it (p * len >= K1 here) */
        const double *xprev = p ? x + ((size_t)p * len - K1) * d : NULL;
        titans_forward_d(&tp[p], par, W + p * HP, S + p * HP, xprev, x + (size_t)p * len * d, len,
                         out + (size_t)p * len * d, W + (p + 1) * HP, S + (p + 1) * HP);
    }
    double L = 0;
    for (size_t i = 0; i < (size_t)N * d; i++)
        L += out[i] * R[i];
    for (size_t i = 0; i < HP; i++)
        L += W[npieces * HP + i] * RW[i] + S[npieces * HP + i] * RS[i];
    if (Wf)
        memcpy(Wf, W + npieces * HP, 8 * HP);
    if (dpar) {
        double *dW = malloc(8 * HP), *dS = malloc(8 * HP);
        memcpy(dW, RW, 8 * HP);
        memcpy(dS, RS, 8 * HP);
        for (int p = npieces - 1; p >= 0; p--)
            titans_backward_d(&tp[p], par, R + (size_t)p * len * d, dW, dS, dpar,
                              dx ? dx + (size_t)p * len * d : NULL,
                              dx && p ? dx + ((size_t)p * len - K1) * d : NULL, dW, dS);
        titans_state_init_backward_d(cf, dW, dpar);
        free(dW), free(dS);
    }
    for (int p = 0; p < npieces; p++)
        titans_tape_free_d(&tp[p]);
    free(tp), free(W), free(S);
    return L;
}

static void test_fd(struct titans_cfg cf, int N, const char *name) {
    struct titans_layout lo;
    titans_layout(&cf, &lo);
    int d = cf.d;
    size_t HP = (size_t)cf.H * lo.P;
    double *par = rand_params(&cf), *x = rand_vec((size_t)N * d, 1);
    double *R = rand_vec((size_t)N * d, 1), *RW = rand_vec(HP, 0.3), *RS = rand_vec(HP, 0.3);
    double *out = malloc(8 * (size_t)N * d), *dpar = calloc(lo.total, 8);
    double *dx = calloc((size_t)N * d, 8);
    run_pieces(&cf, par, x, N, 1, R, RW, RS, out, NULL, dpar, dx);
    double eh = 1e-6, worst = 0; /* O(h^2) truncation: the conv taps have large curvature */
    size_t worst_i = 0;
    for (size_t i = 0; i < lo.total; i++) {
        double s = par[i];
        par[i] = s + eh;
        double lp = run_pieces(&cf, par, x, N, 1, R, RW, RS, out, NULL, NULL, NULL);
        par[i] = s - eh;
        double lm = run_pieces(&cf, par, x, N, 1, R, RW, RS, out, NULL, NULL, NULL);
        par[i] = s;
        double fd = (lp - lm) / (2 * eh), err = fabs(fd - dpar[i]) / fmax(1, fabs(fd));
        if (err > worst)
            worst = err, worst_i = i;
    }
    CHECK_MSG(worst < 1e-6, "%s: FD of parameter %zu off by %g (wk@%zu bth@%zu w0@%zu)", name,
              worst_i, worst, lo.wk, lo.bth, lo.w0);
    double wx = 0;
    for (size_t i = 0; i < (size_t)N * d; i++) {
        double s = x[i];
        x[i] = s + eh;
        double lp = run_pieces(&cf, par, x, N, 1, R, RW, RS, out, NULL, NULL, NULL);
        x[i] = s - eh;
        double lm = run_pieces(&cf, par, x, N, 1, R, RW, RS, out, NULL, NULL, NULL);
        x[i] = s;
        double fd = (lp - lm) / (2 * eh);
        wx = fmax(wx, fabs(fd - dx[i]) / fmax(1, fabs(fd)));
    }
    CHECK_MSG(wx < 1e-6, "%s: FD of dx off by %g", name, wx);
    /* the check can fail: the gradient of W_K is not zero */
    double nk = 0;
    for (size_t i = 0; i < (size_t)d * cf.H * cf.D; i++)
        nk += fabs(dpar[lo.wk + i]);
    CHECK_MSG(nk > 1e-6, "%s: zero W_K gradient", name);
    free(par), free(x), free(R), free(RW), free(RS), free(out), free(dpar), free(dx);
}

/* One call == 2 and 4 pieces with the (W, S) state handed on: outputs, final state, and the
 * gradients (adjoints handed back). */
static void test_chaining(struct titans_cfg cf, int N, const char *name) {
    struct titans_layout lo;
    titans_layout(&cf, &lo);
    int d = cf.d;
    size_t HP = (size_t)cf.H * lo.P;
    double *par = rand_params(&cf), *x = rand_vec((size_t)N * d, 1);
    double *R = rand_vec((size_t)N * d, 1), *RW = rand_vec(HP, 0.3), *RS = rand_vec(HP, 0.3);
    double *o1 = malloc(8 * (size_t)N * d), *g1 = calloc(lo.total, 8),
           *x1 = calloc((size_t)N * d, 8);
    double *W1 = malloc(8 * HP);
    run_pieces(&cf, par, x, N, 1, R, RW, RS, o1, W1, g1, x1);
    for (int np = 2; np <= 4; np += 2) {
        double *o2 = malloc(8 * (size_t)N * d), *g2 = calloc(lo.total, 8);
        double *x2 = calloc((size_t)N * d, 8), *W2 = malloc(8 * HP), e = 0, eg = 0, ex = 0, ew = 0;
        run_pieces(&cf, par, x, N, np, R, RW, RS, o2, W2, g2, x2);
        for (size_t i = 0; i < (size_t)N * d; i++) {
            e = fmax(e, fabs(o1[i] - o2[i]));
            ex = fmax(ex, fabs(x1[i] - x2[i]));
        }
        for (size_t i = 0; i < lo.total; i++)
            eg = fmax(eg, fabs(g1[i] - g2[i]) / fmax(1, fabs(g1[i])));
        for (size_t i = 0; i < HP; i++)
            ew = fmax(ew, fabs(W1[i] - W2[i]));
        CHECK_MSG(e < 1e-12 && ew < 1e-12, "%s: %d pieces: out %g, state %g", name, np, e, ew);
        CHECK_MSG(eg < 1e-10 && ex < 1e-10, "%s: %d pieces: dpar %g dx %g", name, np, eg, ex);
        free(o2), free(g2), free(x2), free(W2);
    }
    free(par), free(x), free(R), free(RW), free(RS), free(o1), free(g1), free(x1), free(W1);
}

/* Decoding token by token equals the parallel pass (and the float path agrees with double). */
static void test_decode(struct titans_cfg cf, int N, const char *name) {
    struct titans_layout lo;
    titans_layout(&cf, &lo);
    int d = cf.d;
    size_t HP = (size_t)cf.H * lo.P;
    double *par = rand_params(&cf), *x = rand_vec((size_t)N * d, 1);
    double *out = malloc(8 * (size_t)N * d), *W = malloc(8 * HP), *S = malloc(8 * HP);
    struct titans_tape_d t;
    titans_tape_init_d(&t, &cf, N);
    titans_state_init_d(&cf, par, W, S);
    titans_forward_d(&t, par, W, S, NULL, x, N, out, NULL, NULL);
    struct titans_dec_d s;
    titans_dec_init_d(&s, &cf, par);
    double e = 0, o[64];
    for (int i = 0; i < N; i++) {
        titans_dec_step_d(&s, par, x + (size_t)i * d, o);
        for (int j = 0; j < d; j++)
            e = fmax(e, fabs(o[j] - out[(size_t)i * d + j]));
    }
    CHECK_MSG(e < 1e-10, "%s: decode vs parallel %g", name, e);
    /* float path */
    float *pf = malloc(4 * lo.total), *xf = malloc(4 * (size_t)N * d),
          *of = malloc(4 * (size_t)N * d);
    float *Wf = malloc(4 * HP), *Sf = malloc(4 * HP);
    for (size_t i = 0; i < lo.total; i++)
        pf[i] = (float)par[i];
    for (size_t i = 0; i < (size_t)N * d; i++)
        xf[i] = (float)x[i];
    struct titans_tape_f tf;
    titans_tape_init_f(&tf, &cf, N);
    titans_state_init_f(&cf, pf, Wf, Sf);
    titans_forward_f(&tf, pf, Wf, Sf, NULL, xf, N, of, NULL, NULL);
    double ef = 0;
    for (size_t i = 0; i < (size_t)N * d; i++)
        ef = fmax(ef, fabs(of[i] - out[i]));
    CHECK_MSG(ef < 1e-4, "%s: float vs double %g", name, ef);
    /* float backward agrees with double */
    double *R = rand_vec((size_t)N * d, 1), *gd = calloc(lo.total, 8), *dWd = malloc(8 * HP);
    float *Rf = malloc(4 * (size_t)N * d), *gf = calloc(lo.total, 4), *dWf = malloc(4 * HP);
    for (size_t i = 0; i < (size_t)N * d; i++)
        Rf[i] = (float)R[i];
    titans_backward_d(&t, par, R, NULL, NULL, gd, NULL, NULL, dWd, S);
    titans_backward_f(&tf, pf, Rf, NULL, NULL, gf, NULL, NULL, dWf, Sf);
    double eb = 0;
    for (size_t i = 0; i < lo.total; i++)
        eb = fmax(eb, fabs(gf[i] - gd[i]) / fmax(1, fabs(gd[i])));
    CHECK_MSG(eb < 1e-3, "%s: float vs double gradients %g", name, eb);
    CHECK(titans_nonfinite_f(&tf) == -1);
    free(R), free(gd), free(dWd), free(Rf), free(gf), free(dWf);
    titans_tape_free_f(&tf);
    titans_dec_free_d(&s);
    titans_tape_free_d(&t);
    free(pf), free(xf), free(of), free(Wf), free(Sf);
    free(par), free(x), free(out), free(W), free(S);
}

/* Perturbing x_j changes no output before j (and does change some output at or after j). */
static void test_causality(struct titans_cfg cf, int N) {
    struct titans_layout lo;
    titans_layout(&cf, &lo);
    int d = cf.d;
    size_t HP = (size_t)cf.H * lo.P;
    double *par = rand_params(&cf), *x = rand_vec((size_t)N * d, 1);
    double *o1 = malloc(8 * (size_t)N * d), *o2 = malloc(8 * (size_t)N * d);
    double *W = malloc(8 * HP), *S = malloc(8 * HP);
    struct titans_tape_d t;
    titans_tape_init_d(&t, &cf, N);
    titans_state_init_d(&cf, par, W, S);
    titans_forward_d(&t, par, W, S, NULL, x, N, o1, NULL, NULL);
    for (int j = 1; j < N; j += 3) {
        x[(size_t)j * d] += 0.5;
        titans_forward_d(&t, par, W, S, NULL, x, N, o2, NULL, NULL);
        x[(size_t)j * d] -= 0.5;
        double before = 0, after = 0;
        for (int i = 0; i < N; i++)
            for (int k = 0; k < d; k++) {
                double df = fabs(o1[(size_t)i * d + k] - o2[(size_t)i * d + k]);
                if (i < j)
                    before = fmax(before, df);
                else
                    after = fmax(after, df);
            }
        CHECK_MSG(before < 1e-14 && after > 1e-8, "causality j=%d: before %g after %g", j, before,
                  after);
    }
    /* a NaN input poisons the state from the chunk after its own, and is reported there */
    CHECK(titans_nonfinite_d(&t) == -1);
    x[(size_t)5 * d] = NAN;
    titans_forward_d(&t, par, W, S, NULL, x, N, o2, NULL, NULL);
    int bad = 5 / cf.c + 1, mb = cf.b / cf.c; /* recompute: the first stored boundary after */
    if (cf.recompute)
        bad = (bad + mb - 1) / mb * mb < t.Nc ? (bad + mb - 1) / mb * mb : t.Nc;
    CHECK_MSG(titans_nonfinite_d(&t) == bad, "nonfinite at %d, expected %d", titans_nonfinite_d(&t),
              bad);
    titans_tape_free_d(&t);
    free(par), free(x), free(o1), free(o2), free(W), free(S);
}

static void test_cfg_errors(void) {
    struct titans_cfg c = base_cfg(2, 2, 4);
    CHECK(titans_cfg_error(&c) == NULL);
    c.b = 3; /* not a multiple of c */
    CHECK(titans_cfg_error(&c) != NULL);
    c = base_cfg(0, 1, 1);
    CHECK(titans_cfg_error(&c) != NULL);
    c = base_cfg(2, 1, 1);
    c.conv = -1;
    CHECK(titans_cfg_error(&c) != NULL);
    struct titans_tape_d t;
    CHECK(titans_tape_init_d(&t, &c, 4) == -1);
}

/* The default init: deterministic per key, gates as documented, and identity conv taps, so a
 * conv model equals the same model without conv at init. */
static void test_init(void) {
    struct titans_cfg a = base_cfg(2, 2, 4), b = a;
    b.conv = 4;
    struct titans_layout la, lb;
    titans_layout(&a, &la);
    titans_layout(&b, &lb);
    double *pa = malloc(8 * la.total), *pb = malloc(8 * lb.total), *pc = malloc(8 * la.total);
    titans_params_init_d(&a, pa, 7);
    titans_params_init_d(&b, pb, 7);
    titans_params_init_d(&a, pc, 8);
    CHECK(memcmp(pa, pb, 8 * la.wo) == 0 && pa[la.w0] == pb[lb.w0]);
    CHECK(pa[la.w0] != pc[la.w0] && pa[la.wq] != pc[la.wq]);
    CHECK(pa[la.wth] == 0 && pa[la.bth] == -2 && pb[lb.ck] == 1 &&
          pb[lb.ck + (size_t)a.H * a.D] == 0);
    int N = 9, d = a.d;
    size_t HP = (size_t)a.H * la.P;
    double *x = rand_vec((size_t)N * d, 1), *oa = malloc(8 * (size_t)N * d);
    double *ob = malloc(8 * (size_t)N * d), *W = malloc(8 * HP), *S = malloc(8 * HP);
    struct titans_tape_d ta, tb;
    titans_tape_init_d(&ta, &a, N);
    titans_tape_init_d(&tb, &b, N);
    titans_state_init_d(&a, pa, W, S);
    titans_forward_d(&ta, pa, W, S, NULL, x, N, oa, NULL, NULL);
    titans_forward_d(&tb, pb, W, S, NULL, x, N, ob, NULL, NULL);
    double e = 0, mx = 0;
    for (size_t i = 0; i < (size_t)N * d; i++)
        e = fmax(e, fabs(oa[i] - ob[i])), mx = fmax(mx, fabs(oa[i]));
    CHECK_MSG(e < 1e-12 && mx > 1e-6, "identity conv: diff %g (|out| %g)", e, mx);
    titans_tape_free_d(&ta);
    titans_tape_free_d(&tb);
    free(pa), free(pb), free(pc), free(x), free(oa), free(ob), free(W), free(S);
}

/* Parameter gradients then outputs of one run of cf over N tokens (one piece), malloc'd. */
static double *grads_and_outputs(const struct titans_cfg *cf, const struct titans_layout *lo,
                                 const double *par, const double *x, const double *R, int N) {
    const int d = cf->d;
    double *out = malloc(8 * (size_t)N * d), *g = calloc(lo->total, 8);
    double *dx = calloc((size_t)N * d, 8);
    double *RW = calloc((size_t)cf->H * lo->P, 8), *RS = calloc((size_t)cf->H * lo->P, 8);
    run_pieces(cf, par, x, N, 1, R, RW, RS, out, NULL, g, dx);
    double *res = malloc(8 * (lo->total + (size_t)N * d));
    memcpy(res, g, 8 * lo->total);
    memcpy(res + lo->total, out, 8 * (size_t)N * d);
    free(out), free(g), free(dx), free(RW), free(RS);
    return res;
}

/* Heads run in parallel threads; results are bitwise the same for any thread count. */
static void test_threads(void) {
    struct titans_cfg cf = base_cfg(2, 2, 4);
    cf.H = 3;
    cf.max_grad_norm = 1;
    struct titans_layout lo;
    titans_layout(&cf, &lo);
    int N = 16, d = cf.d;
    double *par = rand_params(&cf), *x = rand_vec((size_t)N * d, 1),
           *R = rand_vec((size_t)N * d, 1);
    double *res[2];
    int nt = omp_get_max_threads();
    for (int k = 0; k < 2; k++) {
        omp_set_num_threads(k ? 3 : 1);
        res[k] = grads_and_outputs(&cf, &lo, par, x, R, N);
    }
    omp_set_num_threads(nt);
    CHECK(memcmp(res[0], res[1], 8 * (lo.total + (size_t)N * d)) == 0);
    free(res[0]), free(res[1]), free(par), free(x), free(R);
}

/* The surprise clamp: a threshold above every surprise norm changes nothing, bit for bit (norms
 * below it pass unchanged); a tiny one changes the outputs (it is active). */
static void test_clamp_passes(void) {
    struct titans_cfg cf = base_cfg(2, 2, 4);
    struct titans_layout lo;
    titans_layout(&cf, &lo);
    int N = 16, d = cf.d;
    double *par = rand_params(&cf), *x = rand_vec((size_t)N * d, 1),
           *R = rand_vec((size_t)N * d, 1);
    const double ms[3] = {0.0, 1e9, 1e-4};
    double *res[3];
    for (int k = 0; k < 3; k++) {
        cf.max_grad_norm = ms[k];
        res[k] = grads_and_outputs(&cf, &lo, par, x, R, N);
    }
    const size_t n = lo.total + (size_t)N * d;
    CHECK_MSG(memcmp(res[0], res[1], 8 * n) == 0, "clamp 1e9 changed the results");
    CHECK_MSG(memcmp(res[0], res[2], 8 * n) != 0, "clamp 1e-4 changed nothing");
    free(res[0]), free(res[1]), free(res[2]), free(par), free(x), free(R);
}

/* recompute = 1 keeps only TTT-batch boundary states and recomputes the rest in the backward:
 * outputs, final state and gradients equal the stored mode (1 and 2 pieces), and FD holds. */
static void test_recompute(struct titans_cfg cf, int N, const char *name) {
    struct titans_layout lo;
    titans_layout(&cf, &lo);
    int d = cf.d;
    size_t HP = (size_t)cf.H * lo.P;
    double *par = rand_params(&cf), *x = rand_vec((size_t)N * d, 1);
    double *R = rand_vec((size_t)N * d, 1), *RW = rand_vec(HP, 0.3), *RS = rand_vec(HP, 0.3);
    for (int np = 1; np <= 2; np++) {
        double *o[2], *g[2], *dx[2], *W[2];
        for (int k = 0; k < 2; k++) {
            struct titans_cfg ck = cf;
            ck.recompute = k;
            o[k] = malloc(8 * (size_t)N * d), g[k] = calloc(lo.total, 8);
            dx[k] = calloc((size_t)N * d, 8), W[k] = malloc(8 * HP);
            run_pieces(&ck, par, x, N, np, R, RW, RS, o[k], W[k], g[k], dx[k]);
        }
        double e = 0;
        for (size_t i = 0; i < (size_t)N * d; i++)
            e = fmax(e, fmax(fabs(o[0][i] - o[1][i]), fabs(dx[0][i] - dx[1][i])));
        for (size_t i = 0; i < lo.total; i++)
            e = fmax(e, fabs(g[0][i] - g[1][i]));
        for (size_t i = 0; i < HP; i++)
            e = fmax(e, fabs(W[0][i] - W[1][i]));
        CHECK_MSG(e < 1e-13, "%s: recompute vs stored (%d pieces) %g", name, np, e);
        for (int k = 0; k < 2; k++)
            free(o[k]), free(g[k]), free(dx[k]), free(W[k]);
    }
    free(par), free(x), free(R), free(RW), free(RS);
}

int main(void) {
    test_threads();
    test_init();
    test_cfg_errors();
    test_scan();
    test_fixed_and_reset();
    test_delta_rule(0);
    test_delta_rule(1);
    test_toy();
    test_retrieval_index();
    test_read();

    struct titans_cfg a = base_cfg(2, 2, 4);
    a.max_grad_norm = 0.5;
    test_fd(a, 12, "depth2 c2 b4 clamp");
    struct titans_cfg b = base_cfg(1, 1, 3);
    b.theta_per_chunk = 0;
    test_fd(b, 9, "linear c1 b3");
    struct titans_cfg c3 = base_cfg(3, 3, 3);
    c3.theta_per_chunk = 1;
    c3.gate = 0;
    test_fd(c3, 10, "depth3 c3 theta/chunk nogate tail");
    struct titans_cfg cv = base_cfg(2, 2, 2);
    cv.conv = 4;
    cv.max_grad_norm = 2;
    test_fd(cv, 8, "depth2 c2 b2 conv4");
    struct titans_cfg tc = base_cfg(2, 2, 4);
    tc.max_grad_norm = 1e-4; /* every surprise tensor clamped: the backward of the active branch */
    test_fd(tc, 12, "depth2 c2 b4 clamp active");
    test_clamp_passes();

    test_chaining(a, 16, "depth2 c2 b4 clamp");
    test_chaining(b, 24, "linear c1 b3");
    struct titans_cfg c4 = base_cfg(2, 4, 4);
    c4.theta_per_chunk = 1;
    test_chaining(c4, 32, "depth2 c4 b4 theta/chunk");
    test_chaining(cv, 16, "depth2 c2 b2 conv4");

    test_recompute(a, 16, "depth2 c2 b4 clamp");
    test_recompute(b, 12, "linear c1 b3");
    test_recompute(c4, 32, "depth2 c4 b4 theta/chunk");
    test_recompute(cv, 16, "depth2 c2 b2 conv4");
    struct titans_cfg r8 = base_cfg(2, 2, 8);
    r8.max_grad_norm = 1;
    test_recompute(r8, 20, "depth2 c2 b8 tail");
    r8.recompute = 1;
    test_fd(r8, 10, "recompute depth2 c2 b8");
    test_causality(r8, 14);
    test_decode(a, 13, "depth2 c2 b4");
    test_decode(b, 10, "linear c1 b3");
    test_decode(c4, 14, "depth2 c4 theta/chunk");
    test_decode(cv, 11, "depth2 c2 b2 conv4");
    test_causality(a, 14);
    test_causality(c4, 14);
    test_causality(cv, 14);
    return check_report("test_titans");
}
