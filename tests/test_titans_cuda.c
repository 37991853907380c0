/* tests/test_titans_cuda.c -- the Titans memory on the CUDA backend against the CPU backend (the
 * oracle): every kernel of ops/titans_ops.h on random inputs with awkward shapes (fp32, max
 * error relative to the largest reference value within 1e-5), then the whole module
 * (model/titans.h) over several configurations -- depth 1 and 2, conv, clamp, theta per chunk,
 * recompute, no gate -- forward (output and end state), backward (every parameter gradient, dx,
 * dxprev, the adjoints of the incoming state), read-only retrieval and token-by-token decoding,
 * within 1e-4. Without a GPU (or a CUDA build) it says it was skipped and exits 77. */
#include "check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef HW_CUDA
#include "../core/check.h"
#include "../core/rng.h"
#include "../model/titans.h"
#include "../ops/cuda_ctx.h"
#include "../ops/ops.h"
#include "../ops/titans_ops.h"

static const struct ops *g_cpu, *g_gpu;

/* a host array and its device copy */
struct buf {
    float *h, *d;
    size_t n;
};

static struct buf mk(size_t n, uint64_t seed, double scale, double shift) {
    struct buf b = {HW_CALLOC(n ? n : 1, sizeof(float)), NULL, n};
    for (size_t i = 0; i < n; i++)
        b.h[i] = seed ? (float)(shift + scale * rng_normal(seed, i)) : 0.0f;
    b.d = g_gpu->alloc(sizeof(float) * (n ? n : 1));
    g_gpu->upload(b.d, b.h, sizeof(float) * n);
    return b;
}

static void rm(struct buf *b) {
    free(b->h);
    g_gpu->free(b->d);
    memset(b, 0, sizeof(*b));
}

/* max |gpu - cpu| / max |cpu| over the array, against tol */
static void cmp_arr(const char *what, const float *dev, const float *ref, size_t n, double tol) {
    float *g = HW_MALLOC(sizeof(float) * (n ? n : 1));
    g_gpu->download(g, dev, sizeof(float) * n);
    double mr = 0, me = 0;
    size_t worst = 0;
    int nonfinite = 0;
    for (size_t i = 0; i < n; i++)
        mr = fmax(mr, fabs((double)ref[i]));
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(g[i]) != !isfinite(ref[i]) || (isinf(ref[i]) && g[i] != ref[i]))
            nonfinite = 1;
        double e = fabs((double)g[i] - ref[i]);
        if (e > me)
            me = e, worst = i;
    }
    double r = me / (mr > 0 ? mr : 1);
    CHECK_MSG(!nonfinite && r <= tol, "%s: rel %.3g > %.0e at [%zu] (gpu %.9g, cpu %.9g)", what, r,
              tol, worst, n ? g[worst] : 0.0, n ? ref[worst] : 0.0);
    printf("  %-44s rel %.2e (tol %.0e)\n", what, r, tol);
    free(g);
}
static void cmp(const char *what, struct buf b, double tol) {
    cmp_arr(what, b.d, b.h, b.n, tol);
}

/* run one kernel call on both sides: X(b) is the side's pointer, K the side's table */
#define BOTH(call)                                                                                 \
    do {                                                                                           \
        for (int side_ = 0; side_ < 2; side_++) {                                                  \
            const struct titans_ops *K = side_ ? g_gpu->titans : g_cpu->titans;                    \
            call;                                                                                  \
        }                                                                                          \
    } while (0)
#define X(b) (side_ ? (void *)(b).d : (void *)(b).h)

static void kernels_unary(void) {
    const size_t n = 10007;
    const float tol = 1e-5f;
    for (int op = TT_GELU; op <= TT_ONE; op++) {
        struct buf x = mk(n, 3, 2.0, 0), y = mk(n, 0, 0, 0);
        BOTH(K->unary(HW_F32, (enum titans_unary)op, n, X(x), X(y)));
        char nm[32];
        snprintf(nm, sizeof nm, "unary %d", op);
        cmp(nm, y, tol);
        rm(&x), rm(&y);
    }
}

static void kernels_activations(void) {
    const size_t n = 10007;
    const float tol = 1e-5f;
    struct buf u = mk(n, 4, 1.0, 0), h = mk(n, 5, 2.0, 0), r = mk(n, 6, 1.0, 0);
    BOTH(K->mul_gelu1(HW_F32, n, X(u), X(h), X(r), 1));
    cmp("mul_gelu1 acc", r, tol);
    BOTH(K->mul_gelu1(HW_F32, n, X(u), X(h), X(r), 0));
    cmp("mul_gelu1", r, tol);
    struct buf hb = mk(n, 7, 1.0, 0);
    BOTH(K->gelu2_rev(HW_F32, n, X(h), X(r), X(u), X(hb)));
    cmp("gelu2_rev u", u, tol);
    cmp("gelu2_rev hb", hb, tol);
    BOTH(K->silu_bwd(HW_F32, n, X(h), X(u)));
    cmp("silu_bwd", u, tol);
    rm(&u), rm(&h), rm(&r), rm(&hb);
}

static void kernels_gates(void) {
    const float tol = 1e-5f;
    const int N = 333, H = 3;
    struct buf z = mk((size_t)N * H, 8, 2.0, 0), b = mk(H, 9, 1.0, 0),
               zb = mk((size_t)N * H, 0, 0, 0);
    struct buf gb = mk((size_t)N * H, 10, 1.0, 0);
    BOTH(K->gate_fwd(HW_F32, N, H, 0.3, X(b), X(z)));
    cmp("gate_fwd", z, tol);
    BOTH(K->gate_bwd(HW_F32, (size_t)N * H, 0.3, X(z), X(gb), X(zb)));
    cmp("gate_bwd", zb, tol);
    BOTH(K->gate_fwd(HW_F32, N, H, 1.0, NULL, X(gb)));
    cmp("gate_fwd (no bias)", gb, tol);
    rm(&z), rm(&b), rm(&zb), rm(&gb);
}

static void kernels_residual(void) {
    const float tol = 1e-5f;
    const int rows = 77, D = 48, ld = 3 * D, Hs = 5;
    struct buf th = mk(rows, 11, 0.2, 0.5), p = mk((size_t)rows * D, 12, 1.0, 0);
    struct buf v = mk((size_t)rows * D, 13, 1.0, 0), r = mk((size_t)rows * D, 0, 0, 0);
    struct buf hb = mk((size_t)rows * D, 14, 1.0, 0), dv = mk((size_t)rows * ld, 15, 1.0, 0);
    struct buf dth = mk((size_t)rows * Hs, 16, 1.0, 0);
    BOTH(K->resid(HW_F32, rows, D, 0.25, X(th), X(p), X(v), X(r)));
    cmp("resid", r, tol);
    BOTH(K->resid_rev(HW_F32, rows, D, 0.25, X(th), X(p), X(v), X(r), X(hb), X(dv), (size_t)ld,
                      X(dth), (size_t)Hs));
    cmp("resid_rev hb", hb, tol);
    cmp("resid_rev dv (strided)", dv, tol);
    cmp("resid_rev dth (strided)", dth, tol);
    rm(&th), rm(&p), rm(&v), rm(&r), rm(&hb), rm(&dv), rm(&dth);
}

static void kernels_conv(void) {
    const float tol = 1e-5f;
    for (int K4 = 1; K4 <= 4; K4 += 3) {
        const int N = 129, C = 40;
        struct buf z = mk((size_t)(N + K4 - 1) * C, 17, 1.0, 0),
                   cw = mk((size_t)K4 * C, 18, 1.0, 0);
        struct buf o = mk((size_t)N * C, 0, 0, 0), dz = mk((size_t)(N + K4 - 1) * C, 19, 0.1, 0);
        struct buf dcw = mk((size_t)K4 * C, 20, 0.1, 0);
        BOTH(K->conv_fwd(HW_F32, N, C, K4, X(z), X(cw), X(o)));
        cmp(K4 == 1 ? "conv_fwd K 1" : "conv_fwd K 4", o, tol);
        BOTH(K->conv_bwd(HW_F32, N, C, K4, X(z), X(cw), X(o), X(dz), X(dcw)));
        cmp(K4 == 1 ? "conv_bwd dz K 1" : "conv_bwd dz K 4", dz, tol);
        cmp(K4 == 1 ? "conv_bwd dcw K 1" : "conv_bwd dcw K 4", dcw, tol);
        rm(&z), rm(&cw), rm(&o), rm(&dz), rm(&dcw);
    }
}

static void kernels_rows(void) {
    const float tol = 1e-5f;
    const int rows = 301, D = 40;
    struct buf x = mk((size_t)rows * D, 21, 1.0, 0), nrm = mk(rows, 0, 0, 0);
    for (int j = 0; j < D; j++) /* a zero row: the 1e-6 floor */
        x.h[5 * D + j] = 0.0f;
    g_gpu->upload(x.d, x.h, sizeof(float) * x.n);
    struct buf a = mk((size_t)rows * D, 22, 1.0, 0);
    for (int j = 0; j < D; j++) /* the zero row's adjoint is scaled by 1e6: keep it ~1 */
        a.h[5 * D + j] *= 1e-6f;
    g_gpu->upload(a.d, a.h, sizeof(float) * a.n);
    BOTH(K->l2n_fwd(HW_F32, rows, D, X(x), X(nrm)));
    cmp("l2n_fwd x", x, tol);
    cmp("l2n_fwd norms", nrm, tol);
    BOTH(K->l2n_bwd(HW_F32, rows, D, X(x), X(nrm), X(a)));
    cmp("l2n_bwd", a, tol);
    /* its own inputs: after l2n_bwd, a is orthogonal to x and <x, a> is rounding noise */
    struct buf ra = mk((size_t)rows * D, 40, 1.0, 0), rb = mk((size_t)rows * D, 41, 1.0, 0);
    struct buf out = mk(rows, 0, 0, 0);
    BOTH(K->row_dot(HW_F32, rows, D, X(ra), X(rb), X(out)));
    cmp("row_dot", out, tol);
    rm(&x), rm(&nrm), rm(&a), rm(&out), rm(&ra), rm(&rb);
}

static void kernels_groups(void) {
    const float tol = 1e-5f;
    const int G = 13, R = 7, W = 33;
    struct buf x = mk((size_t)G * R * W, 23, 1.0, 0), o = mk((size_t)G * W, 24, 1.0, 0);
    const char *names[] = {"group_sum mean", "group_sum set", "group_sum acc"};
    for (int m = TT_SUM_MEAN; m <= TT_SUM_ACC; m++) {
        BOTH(K->group_sum(HW_F32, G, R, W, X(x), X(o), (enum titans_sum)m));
        cmp(names[m], o, tol);
    }
    BOTH(K->group_expand(HW_F32, G, R, W, X(o), X(x), TT_EXP_ADD_DIV));
    cmp("group_expand add/div", x, tol);
    BOTH(K->group_expand(HW_F32, G, R, W, X(o), X(x), TT_EXP_SET));
    cmp("group_expand set", x, tol);
    struct buf g = mk((size_t)G * R, 25, 1.0, 0), y = mk((size_t)G * R * W, 0, 0, 0);
    BOTH(K->head_scale(HW_F32, G, R, W, X(g), X(x), X(y)));
    cmp("head_scale", y, tol);
    BOTH(K->add2d(HW_F32, G, W - 3, X(y), (size_t)W, X(x), (size_t)(R * W)));
    cmp("add2d (strided)", y, tol);
    rm(&x), rm(&o), rm(&g), rm(&y);
}

static void kernels_scans(void) {
    const float tol = 1e-5f;
    for (int om = 0; om < 2; om++) {
        const int N = 37, H = 3;
        const size_t P = 1001, ld = 1003;
        struct buf a = mk((size_t)N * H, 26, 0.05, 0.9), x = mk((size_t)N * P, 27, 1.0, 0);
        struct buf prev = mk(P, 28, 1.0, 0), h = mk((size_t)N * ld, 0, 0, 0);
        BOTH(K->scan(HW_F32, N, P, X(a), (size_t)H, om, X(x), P, X(prev), X(h), ld));
        cmp(om ? "scan (1 - a, strided)" : "scan (strided)", h, tol);
        BOTH(K->scan(HW_F32, N, P, X(a), 1, om, X(x), P, NULL, X(h), ld));
        cmp("scan from 0", h, tol);
        BOTH(K->scan(HW_F32, 1, P, X(a), 1, om, X(x), P, X(prev), X(prev), P)); /* in place */
        cmp("scan in place", prev, tol);
        rm(&a), rm(&x), rm(&prev), rm(&h);
    }
}

static void kernels_states_rev(void) {

    const int m = 9, H = 2;
    const size_t P = 3000, ld = 3100;
    struct buf Wb = mk((size_t)(m + 1) * ld, 29, 1.0, 0), W = mk((size_t)(m + 1) * ld, 30, 1.0, 0);
    struct buf S = mk((size_t)(m + 1) * ld, 31, 1.0, 0), eta = mk((size_t)m * H, 32, 0.05, 0.9);
    struct buf al = mk((size_t)m * H, 33, 0.01, 0.05), Sb = mk(P, 34, 1.0, 0);
    struct buf Gb = mk((size_t)m * P, 0, 0, 0), de = mk((size_t)m * H, 0, 0, 0);
    struct buf da = mk((size_t)m * H, 0, 0, 0);
    BOTH(K->states_rev(HW_F32, m, P, ld, X(Wb), X(W), X(S), X(eta), X(al), (size_t)H, X(Sb), X(Gb),
                       X(de), X(da)));
    cmp("states_rev Wb", Wb, 1e-4);
    cmp("states_rev Sb", Sb, 1e-4);
    cmp("states_rev Gb", Gb, 1e-4);
    cmp("states_rev deta", de, 1e-4);
    cmp("states_rev dalpha", da, 1e-4);
    rm(&Wb), rm(&W), rm(&S), rm(&eta), rm(&al), rm(&Sb), rm(&Gb), rm(&de), rm(&da);
}

static void kernels_clamp(void) {
    const float tol = 1e-5f;
    const size_t off[2] = {0, 600}, numel[2] = {600, 1500};
    /* the first tensor's norm (about 0.5) passes the clamp of 1, the second's (about 12) not */
    struct buf G = mk(2100, 35, 0.02, 0), Gb = mk(2100, 36, 1.0, 0);
    for (size_t i = 600; i < 2100; i++)
        G.h[i] *= 15.0f;
    g_gpu->upload(G.d, G.h, sizeof(float) * G.n);
    BOTH(K->clamp(HW_F32, 2, off, numel, 1.0, X(G), X(Gb), 1));
    cmp("clamp bwd", Gb, tol);
    BOTH(K->clamp(HW_F32, 2, off, numel, 1.0, X(G), NULL, 0));
    cmp("clamp fwd", G, tol);
    float inf = INFINITY;
    CHECK(!g_gpu->titans->nonfinite(HW_F32, G.n, G.d));
    g_gpu->upload(G.d + 1777, &inf, sizeof(float));
    CHECK(g_gpu->titans->nonfinite(HW_F32, G.n, G.d));
    rm(&G), rm(&Gb);
}

static void test_kernels(void) {
    printf("kernels\n");
    kernels_unary();
    kernels_activations();
    kernels_gates();
    kernels_residual();
    kernels_conv();
    kernels_rows();
    kernels_groups();
    kernels_scans();
    kernels_states_rev();
    kernels_clamp();
}

/* ---- the module ----------------------------------------------------------------------------- */

static struct buf mk_from(const float *h, size_t n) {
    struct buf b = mk(n, 0, 0, 0);
    memcpy(b.h, h, sizeof(float) * n);
    g_gpu->upload(b.d, b.h, sizeof(float) * n);
    return b;
}

/* Token-by-token decoding over three chunks: each step's output against the CPU's. */
static void module_decode(const char *name, const struct titans_cfg *cc,
                          const struct titans_cfg *cg, struct buf par, struct buf x, int N) {
    const size_t d = (size_t)cc->d;
    struct titans_dec_f sc, sg;
    CHECK(titans_dec_init_f(&sc, cc, par.h) == 0);
    CHECK(titans_dec_init_f(&sg, cg, par.d) == 0);
    struct buf y = mk(d, 0, 0, 0);
    double worst = 0;
    for (int t = 0; t < 3 * cc->c + 1 && t < N; t++) {
        titans_dec_step_f(&sc, par.h, x.h + (size_t)t * d, y.h);
        titans_dec_step_f(&sg, par.d, x.d + (size_t)t * d, y.d);
        float *g = HW_MALLOC(sizeof(float) * d);
        g_gpu->download(g, y.d, sizeof(float) * d);
        double mr = 0, me = 0;
        for (size_t j = 0; j < d; j++) {
            mr = fmax(mr, fabs((double)y.h[j]));
            double e = fabs((double)g[j] - y.h[j]);
            if (!(e <= me))
                me = e;
        }
        double r = me / (mr > 0 ? mr : 1);
        if (!(r <= worst) || !isfinite(r)) /* a NaN sticks */
            worst = isfinite(r) ? r : INFINITY;
        free(g);
    }
    printf("  %-44s rel %.2e (tol 1e-04)\n", "decode steps", worst);
    CHECK_MSG(worst <= 1e-4, "[%s] decode: rel %.3g", name, worst);
    titans_dec_free_f(&sc);
    titans_dec_free_f(&sg);
    rm(&y);
}

static void module_case(const char *name, struct titans_cfg c, int N) {
    printf("module: %s\n", name);
    struct titans_layout lo;
    titans_layout(&c, &lo);
    const size_t HP = (size_t)c.H * lo.P, d = (size_t)c.d, K1 = c.conv > 0 ? (size_t)c.conv - 1 : 0;
    float *p0 = HW_CALLOC(lo.total, sizeof(float));
    titans_params_init_f(&c, p0, 5);
    for (size_t i = 0; i < lo.total; i++) /* non-trivial gates and taps */
        p0[i] += 0.05f * (float)rng_normal(6, i);
    struct buf par = mk_from(p0, lo.total), x = mk((size_t)N * d, 7, 1.0, 0);
    struct buf xprev = mk(K1 * d + 1, 8, 1.0, 0), out = mk((size_t)N * d, 0, 0, 0);
    struct buf W0 = mk(HP, 0, 0, 0), S0 = mk(HP, 0, 0, 0), Wo = mk(HP, 0, 0, 0),
               So = mk(HP, 0, 0, 0);
    struct titans_cfg cc = c, cg = c;
    cc.ops = g_cpu, cg.ops = g_gpu;
    struct titans_tape_f tc, tg;
    CHECK(titans_tape_init_f(&tc, &cc, N) == 0);
    CHECK(titans_tape_init_f(&tg, &cg, N) == 0);
    titans_state_init_f(&cc, par.h, W0.h, S0.h);
    titans_state_init_f(&cg, par.d, W0.d, S0.d);
    cmp("state init", W0, 0);
    /* S0 = a small momentum so the incoming S matters */
    for (size_t i = 0; i < HP; i++)
        S0.h[i] = 0.01f * (float)rng_normal(9, i);
    g_gpu->upload(S0.d, S0.h, sizeof(float) * HP);
    const float *xp_h = K1 ? xprev.h : NULL, *xp_d = K1 ? xprev.d : NULL;
    titans_forward_f(&tc, par.h, W0.h, S0.h, xp_h, x.h, N, out.h, Wo.h, So.h);
    titans_forward_f(&tg, par.d, W0.d, S0.d, xp_d, x.d, N, out.d, Wo.d, So.d);
    cmp("forward out", out, 1e-4);
    cmp("forward end W", Wo, 1e-4);
    cmp("forward end S", So, 1e-4);
    CHECK(titans_nonfinite_f(&tg) == -1);
    /* backward with every adjoint given */
    struct buf dout = mk((size_t)N * d, 10, 1.0, 0), dWo = mk(HP, 11, 0.1, 0),
               dSo = mk(HP, 12, 0.1, 0);
    struct buf dpar = mk(lo.total, 0, 0, 0), dx = mk((size_t)N * d, 0, 0, 0);
    struct buf dxp = mk(K1 * d + 1, 0, 0, 0), dWi = mk(HP, 0, 0, 0), dSi = mk(HP, 0, 0, 0);
    titans_backward_f(&tc, par.h, dout.h, dWo.h, dSo.h, dpar.h, dx.h, K1 ? dxp.h : NULL, dWi.h,
                      dSi.h);
    titans_backward_f(&tg, par.d, dout.d, dWo.d, dSo.d, dpar.d, dx.d, K1 ? dxp.d : NULL, dWi.d,
                      dSi.d);
    /* per tensor of the flat parameter array */
    const struct {
        const char *n;
        size_t off, len;
    } ts[] = {{"dpar wq", lo.wq, d * c.H * c.D},
              {"dpar wk", lo.wk, d * c.H * c.D},
              {"dpar wv", lo.wv, d * c.H * c.D},
              {"dpar wth/bth", lo.wth, (d + 1) * c.H},
              {"dpar weta/beta", lo.weta, (d + 1) * c.H},
              {"dpar wal/bal", lo.wal, (d + 1) * c.H},
              {"dpar wg", lo.wg, d * c.H},
              {"dpar wo", lo.wo, (size_t)c.H * c.D * d},
              {"dpar conv taps", lo.ck, 3 * (size_t)c.conv * c.H * c.D},
              {"dpar w0", lo.w0, HP}};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        if (ts[i].len)
            cmp_arr(ts[i].n, dpar.d + ts[i].off, dpar.h + ts[i].off, ts[i].len, 1e-4);
    cmp("backward dx", dx, 1e-4);
    if (K1)
        cmp("backward dxprev", dxp, 1e-4);
    cmp("backward dW in", dWi, 1e-4);
    cmp("backward dS in", dSi, 1e-4);
    /* retrieval only at the end state, and its backward */
    titans_read_f(&tc, par.h, Wo.h, xp_h, x.h, N, out.h);
    titans_read_f(&tg, par.d, Wo.d, xp_d, x.d, N, out.d);
    cmp("read out", out, 1e-4);
    g_cpu->memset(dpar.h, 0, sizeof(float) * lo.total);
    g_gpu->memset(dpar.d, 0, sizeof(float) * lo.total);
    titans_read_backward_f(&tc, par.h, dout.h, dpar.h, dx.h, K1 ? dxp.h : NULL, dWi.h);
    titans_read_backward_f(&tg, par.d, dout.d, dpar.d, dx.d, K1 ? dxp.d : NULL, dWi.d);
    cmp("read backward dpar", dpar, 1e-4);
    cmp("read backward dW", dWi, 1e-4);
    module_decode(name, &cc, &cg, par, x, N);
    titans_tape_free_f(&tc);
    titans_tape_free_f(&tg);
    struct buf *bs[] = {&par,  &x,   &xprev, &out,  &W0, &S0,  &Wo,  &So,
                        &dout, &dWo, &dSo,   &dpar, &dx, &dxp, &dWi, &dSi};
    for (size_t i = 0; i < sizeof bs / sizeof bs[0]; i++)
        rm(bs[i]);
    free(p0);
}

static void test_module(void) {
    struct titans_cfg c;
    titans_cfg_default(&c, 48, 2, 16);
    c.hidden = 24, c.c = 4, c.b = 16, c.conv = 3, c.max_grad_norm = 0.5, c.max_lr = 0.5;
    module_case("depth 2, conv 3, clamp, c 4, b 16", c, 72);
    titans_cfg_default(&c, 32, 3, 8);
    c.depth = 1, c.c = 2, c.b = 8, c.theta_per_chunk = 1, c.recompute = 1, c.gate = 0;
    c.kappa = 1.0;
    module_case("depth 1, theta per chunk, recompute, no gate", c, 50);
    titans_cfg_default(&c, 32, 2, 8);
    c.depth = 3, c.hidden = 12, c.c = 1, c.b = 4, c.conv = 2, c.recompute = 1;
    module_case("depth 3, c 1, b 4, conv 2, recompute", c, 29);
}
#endif /* HW_CUDA */

int main(void) {
#ifndef HW_CUDA
    printf("SKIP test_titans_cuda: built without CUDA\n");
    return 77;
#else
    if (cuda_device_count() == 0) {
        printf("SKIP test_titans_cuda: no CUDA device found\n");
        return 77;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    g_cpu = ops_for(BACKEND_CPU);
    g_gpu = ops_for(BACKEND_CUDA);
    test_kernels();
    test_module();
    cuda_ctx_free();
    return check_report("test_titans_cuda");
#endif
}
