/* tests/test_ops.c -- every CPU kernel against the naive double reference (tests/ref.h), and
 * every backward against central finite differences of that reference in double. */
#define _POSIX_C_SOURCE 200809L
#include "../core/rng.h"
#include "../ops/act.h"
#include "../ops/adamw.h"
#include "../ops/attention.h"
#include "../ops/embed.h"
#include "../ops/gemm.h"
#include "../ops/matmul.h"
#include "../ops/norm.h"
#include "../ops/ops.h"
#include "../ops/rope.h"
#include "../ops/vexp.h"
#include "../ops/xent.h"
#include "check.h"
#include "ref.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static uint64_t g_key = 42;
static uint64_t g_ctr;

static void fill(float *x, size_t n, double s) {
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(s * rng_normal(g_key, g_ctr++));
}

static double *to_d(const float *x, size_t n) {
    double *d = malloc(sizeof(double) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        d[i] = x[i];
    return d;
}

static double max_abs_diff(const float *a, const double *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        m = d > m ? d : m;
    }
    return m;
}

/* A scalar function of a double vector, for finite differences. */
typedef double (*loss_fn)(const double *x, void *ctx);

/* Compare analytic gradient g (float) with central differences of f at x, on up to `probes`
 * evenly spaced coordinates. Reports the worst relative error. */
static double fd_worst(loss_fn f, void *ctx, double *x, size_t n, const float *g, int probes) {
    double worst = 0;
    size_t step = n / (size_t)probes ? n / (size_t)probes : 1;
    for (size_t i = 0; i < n; i += step) {
        double h = 1e-5 * (fabs(x[i]) > 1 ? fabs(x[i]) : 1), x0 = x[i];
        x[i] = x0 + h;
        double fp = f(x, ctx);
        x[i] = x0 - h;
        double fm = f(x, ctx);
        x[i] = x0;
        double num = (fp - fm) / (2 * h);
        double err = fabs(num - (double)g[i]) / (fabs(num) > 1e-2 ? fabs(num) : 1e-2);
        worst = err > worst ? err : worst;
    }
    return worst;
}

/* ---- matmul ------------------------------------------------------------------------------ */
struct mm_ctx {
    int N, K, M, which; /* which: 0 = d/dinp, 1 = d/dw */
    double *inp, *w, *r;
};
static double mm_loss(const double *x, void *vc) {
    struct mm_ctx *c = vc;
    const double *inp = c->which == 0 ? x : c->inp, *w = c->which == 1 ? x : c->w;
    double *out = malloc(sizeof(double) * (size_t)c->N * c->M), s = 0;
    ref_matmul(out, inp, w, c->N, c->K, c->M);
    for (int i = 0; i < c->N * c->M; i++)
        s += out[i] * c->r[i];
    free(out);
    return s;
}
static void test_matmul(void) {
    int N = 13, K = 17, M = 11;
    float *inp = malloc(4 * N * K), *w = malloc(4 * M * K), *out = malloc(4 * N * M);
    float *r = malloc(4 * N * M), *dinp = calloc(N * K, 4), *dw = calloc(M * K, 4);
    fill(inp, N * K, 1), fill(w, M * K, 1), fill(r, N * M, 1);
    matmul_forward_cpu(out, inp, w, N, K, M, 0.0f);
    struct mm_ctx c = {N, K, M, 0, to_d(inp, N * K), to_d(w, M * K), to_d(r, N * M)};
    double *ref = malloc(sizeof(double) * N * M);
    ref_matmul(ref, c.inp, c.w, N, K, M);
    CHECK(max_abs_diff(out, ref, N * M) < 1e-4);
    matmul_backward_cpu(dinp, dw, r, inp, w, N, K, M, 0.0f);
    CHECK_MSG(fd_worst(mm_loss, &c, c.inp, N * K, dinp, 50) < 1e-4, "matmul dinp");
    c.which = 1;
    CHECK_MSG(fd_worst(mm_loss, &c, c.w, M * K, dw, 50) < 1e-4, "matmul dw");
    /* dw accumulates */
    matmul_backward_cpu(NULL, dw, r, inp, w, N, K, M, 0.0f);
    float *dw1 = calloc(M * K, 4);
    matmul_backward_cpu(NULL, dw1, r, inp, w, N, K, M, 0.0f);
    CHECK_CLOSE(dw[5], 2 * dw1[5], 1e-5);
    free(inp), free(w), free(out), free(r), free(dinp), free(dw), free(dw1), free(ref);
    free(c.inp), free(c.w), free(c.r);
}

/* ---- rmsnorm ----------------------------------------------------------------------------- */
struct rn_ctx {
    int N, C, which;
    double *inp, *w, *r;
};
static double rn_loss(const double *x, void *vc) {
    struct rn_ctx *c = vc;
    double *out = malloc(sizeof(double) * c->N * c->C), s = 0;
    ref_rmsnorm(out, c->which == 0 ? x : c->inp, c->which == 1 ? x : c->w, c->N, c->C, 1e-5);
    for (int i = 0; i < c->N * c->C; i++)
        s += out[i] * c->r[i];
    free(out);
    return s;
}
static void test_rmsnorm(void) {
    int N = 9, C = 24;
    float *inp = malloc(4 * N * C), *w = malloc(4 * C), *out = malloc(4 * N * C),
          *rstd = malloc(4 * N), *r = malloc(4 * N * C), *dinp = calloc(N * C, 4),
          *dw = calloc(C, 4);
    fill(inp, N * C, 2), fill(w, C, 1), fill(r, N * C, 1);
    rmsnorm_forward_cpu(out, rstd, inp, w, N, C, 1e-5f);
    struct rn_ctx c = {N, C, 0, to_d(inp, N * C), to_d(w, C), to_d(r, N * C)};
    double *ref = malloc(sizeof(double) * N * C);
    ref_rmsnorm(ref, c.inp, c.w, N, C, 1e-5);
    CHECK(max_abs_diff(out, ref, N * C) < 1e-5);
    rmsnorm_backward_cpu(dinp, dw, r, inp, w, rstd, N, C);
    CHECK_MSG(fd_worst(rn_loss, &c, c.inp, N * C, dinp, 60) < 1e-3, "rmsnorm dinp");
    c.which = 1;
    CHECK_MSG(fd_worst(rn_loss, &c, c.w, C, dw, C) < 1e-3, "rmsnorm dw");
    free(inp), free(w), free(out), free(rstd), free(r), free(dinp), free(dw), free(ref);
    free(c.inp), free(c.w), free(c.r);
}

/* ---- rope -------------------------------------------------------------------------------- */
struct rope_ctx {
    int B, T, nh, hd, ld;
    double *r;
};
static double rope_loss(const double *x, void *vc) {
    struct rope_ctx *c = vc;
    size_t n = (size_t)c->B * c->T * c->ld;
    double *y = malloc(sizeof(double) * n), s = 0;
    memcpy(y, x, sizeof(double) * n);
    ref_rope(y, c->B, c->T, c->nh, c->hd, c->ld, 3, 10000.0);
    for (size_t i = 0; i < n; i++)
        s += y[i] * c->r[i];
    free(y);
    return s;
}
static void test_rope(void) {
    int B = 2, T = 5, nh = 3, hd = 8, ld = 30, n = B * T * ld, maxT = 16;
    float *x = malloc(4 * n), *r = malloc(4 * n), *ct = malloc(4 * maxT * hd / 2),
          *st = malloc(4 * maxT * hd / 2);
    fill(x, n, 1), fill(r, n, 1);
    rope_tables(ct, st, maxT, hd, 10000.0, NULL);
    struct rope_ctx c = {B, T, nh, hd, ld, to_d(r, n)};
    double *ref = to_d(x, n);
    ref_rope(ref, B, T, nh, hd, ld, 3, 10000.0);
    double *x0 = to_d(x, n);
    const int32_t pos[5] = {3, 4, 5, 6, 7};
    rope_forward_cpu(x, ct, st, B, T, nh, hd, ld, pos);
    CHECK(max_abs_diff(x, ref, n) < 1e-5);
    /* columns past nh*hd are untouched */
    CHECK(x[nh * hd + 1] == (float)x0[nh * hd + 1]);
    memcpy(x, r, 4 * n);
    rope_backward_cpu(x, ct, st, B, T, nh, hd, ld, pos);
    for (int i = 0; i < B * T; i++) /* gradient is zero-propagated identity outside the heads */
        for (int j = nh * hd; j < ld; j++)
            x[i * ld + j] = r[i * ld + j];
    CHECK_MSG(fd_worst(rope_loss, &c, x0, n, x, 80) < 1e-4, "rope backward");
    free(x), free(r), free(ct), free(st), free(c.r), free(ref), free(x0);
}

/* ---- attention --------------------------------------------------------------------------- */
struct att_ctx {
    int B, T, H, Hkv, hd, ld;
    double *r;
};
static double att_loss(const double *x, void *vc) {
    struct att_ctx *c = vc;
    size_t n = (size_t)c->B * c->T * c->H * c->hd;
    double *o = malloc(sizeof(double) * n), s = 0;
    ref_attention(o, x, c->B, c->T, c->H, c->Hkv, c->hd, c->ld);
    for (size_t i = 0; i < n; i++)
        s += o[i] * c->r[i];
    free(o);
    return s;
}
static void test_attention_shape(int B, int T, int H, int Hkv, int hd) {
    int ld = (H + 2 * Hkv) * hd + 3; /* padded rows exercise the stride */
    size_t nq = (size_t)B * T * ld, no = (size_t)B * T * H * hd;
    float *qkv = malloc(4 * nq), *out = malloc(4 * no), *lse = malloc(4 * B * H * T),
          *r = malloc(4 * no), *dqkv = malloc(4 * nq);
    fill(qkv, nq, 1), fill(r, no, 1);
    struct attn_shape s = {.B = B, .T = T, .H = H, .Hkv = Hkv, .hd = hd, .ld_qkv = ld};
    attention_forward_cpu(out, lse, qkv, &s);
    double *dq = to_d(qkv, nq), *ref = malloc(sizeof(double) * no);
    ref_attention(ref, dq, B, T, H, Hkv, hd, ld);
    CHECK_MSG(max_abs_diff(out, ref, no) < 2e-5, "attention fwd B=%d T=%d H=%d Hkv=%d", B, T, H,
              Hkv);
    memset(dqkv, 0, 4 * nq);
    attention_backward_cpu(dqkv, r, out, lse, qkv, &s);
    struct att_ctx c = {B, T, H, Hkv, hd, ld, to_d(r, no)};
    /* only the (H+2Hkv)*hd columns carry gradient; the padding stays 0 in both */
    double worst = fd_worst(att_loss, &c, dq, nq, dqkv, 150);
    CHECK_MSG(worst < 2e-3, "attention bwd T=%d Hkv=%d worst rel err %g", T, Hkv, worst);
    /* decode path: last position of batch 0 against the full forward */
    float *kc = malloc(4 * T * 2 * Hkv * hd), *vc = malloc(4 * T * 2 * Hkv * hd);
    int kvw = Hkv * hd;
    for (int t = 0; t < T; t++) {
        memcpy(kc + t * kvw, qkv + (size_t)t * ld + H * hd, 4 * kvw);
        memcpy(vc + t * kvw, qkv + (size_t)t * ld + (H + Hkv) * hd, 4 * kvw);
    }
    float *od = malloc(4 * H * hd), *scr = malloc(4 * (T + 1));
    attention_decode_cpu(od, qkv + (size_t)(T - 1) * ld, kc, vc, T, kvw, H, Hkv, hd, scr);
    CHECK(max_abs_diff(od, ref + (size_t)(T - 1) * H * hd, H * hd) < 2e-5);
    free(qkv), free(out), free(lse), free(r), free(dqkv), free(dq), free(ref), free(c.r);
    free(kc), free(vc), free(od), free(scr);
}

/* ---- block attention: zig-zag chunks, LSE merges, split backward ------------------------ */
/* The sequence of T = 4c tokens is cut into chunks 0..3; "rank 0" holds chunks {0,3} and "rank 1"
 * holds {1,2} (zig-zag for cp = 2). Attending rank 0's queries to both ranks' K/V blocks in
 * either order and merging must equal whole-sequence attention, and the block backwards must sum
 * to the whole-sequence backward. */
static void test_attention_blocks(void) {
    const int B = 2, c = 9, T = 4 * c, H = 4, Hkv = 2, hd = 8, ld = (H + 2 * Hkv) * hd;
    const int HD = H * hd, KD = Hkv * hd;
    size_t nq = (size_t)B * T * ld, no = (size_t)B * T * HD;
    float *qkv = malloc(4 * nq), *out = malloc(4 * no), *lse = malloc(4 * B * H * T);
    float *dout = malloc(4 * no), *dqkv = malloc(4 * nq);
    fill(qkv, nq, 1), fill(dout, no, 1);
    struct attn_shape s = {.B = B, .T = T, .H = H, .Hkv = Hkv, .hd = hd, .ld_qkv = ld};
    attention_forward_cpu(out, lse, qkv, &s);
    attention_backward_cpu(dqkv, dout, out, lse, qkv, &s);
    /* local (zig-zag) layouts of the two ranks: rank r holds chunks r and 3 - r */
    int32_t pos[2][18];
    float *lq[2], *lout[2], *llse[2], *ldout[2], *ldq[2], *ldkv[2];
    const int Tl = 2 * c;
    for (int r = 0; r < 2; r++) {
        lq[r] = malloc(4 * (size_t)B * Tl * ld);
        ldout[r] = malloc(4 * (size_t)B * Tl * HD);
        lout[r] = malloc(4 * (size_t)B * Tl * HD);
        llse[r] = malloc(4 * (size_t)B * H * Tl);
        ldq[r] = calloc((size_t)B * Tl * ld, 4);
        ldkv[r] = calloc((size_t)B * Tl * ld, 4);
        for (int t = 0; t < Tl; t++)
            pos[r][t] = t < c ? r * c + t : (3 - r) * c + (t - c);
        for (int b = 0; b < B; b++)
            for (int t = 0; t < Tl; t++) {
                memcpy(lq[r] + ((size_t)b * Tl + t) * ld, qkv + ((size_t)b * T + pos[r][t]) * ld,
                       4 * ld);
                memcpy(ldout[r] + ((size_t)b * Tl + t) * HD,
                       dout + ((size_t)b * T + pos[r][t]) * HD, 4 * HD);
            }
    }
    double worst = 0, worst_lse = 0, worst_g = 0;
    for (int r = 0; r < 2; r++)
        for (int order = 0; order < 2; order++) {
            for (int step = 0; step < 2; step++) {
                int owner = order ? 1 - step : step;
                struct attn_block a = {.q = lq[r],
                                       .k = lq[owner] + HD,
                                       .v = lq[owner] + HD + KD,
                                       .ldq = ld,
                                       .ldkv = ld,
                                       .qpos = pos[r],
                                       .kpos = pos[owner],
                                       .B = B,
                                       .Tq = Tl,
                                       .Tk = Tl,
                                       .H = H,
                                       .Hkv = Hkv,
                                       .hd = hd};
                attention_block_forward_cpu(lout[r], llse[r], &a, step > 0);
            }
            for (int b = 0; b < B; b++)
                for (int t = 0; t < Tl; t++) {
                    for (int d = 0; d < HD; d++) {
                        double e = fabs(lout[r][((size_t)b * Tl + t) * HD + d] -
                                        out[((size_t)b * T + pos[r][t]) * HD + d]);
                        worst = e > worst ? e : worst;
                    }
                    for (int h = 0; h < H; h++) {
                        double e = fabs(llse[r][((size_t)b * H + h) * Tl + t] -
                                        lse[((size_t)b * H + h) * T + pos[r][t]]);
                        worst_lse = e > worst_lse ? e : worst_lse;
                    }
                }
        }
    CHECK_MSG(worst < 1e-5 && worst_lse < 1e-5, "block merge: out %g lse %g", worst, worst_lse);
    /* backward: rank r's queries against each K/V block; dK/dV land with the block's owner */
    for (int r = 0; r < 2; r++)
        for (int owner = 0; owner < 2; owner++) {
            struct attn_block a = {.q = lq[r],
                                   .k = lq[owner] + HD,
                                   .v = lq[owner] + HD + KD,
                                   .ldq = ld,
                                   .ldkv = ld,
                                   .qpos = pos[r],
                                   .kpos = pos[owner],
                                   .B = B,
                                   .Tq = Tl,
                                   .Tk = Tl,
                                   .H = H,
                                   .Hkv = Hkv,
                                   .hd = hd};
            attention_block_backward_cpu(ldq[r], ldkv[owner] + HD, ldkv[owner] + HD + KD, ld, ld,
                                         ldout[r], lout[r], llse[r], &a);
        }
    for (int r = 0; r < 2; r++)
        for (int b = 0; b < B; b++)
            for (int t = 0; t < Tl; t++)
                for (int d = 0; d < ld; d++) {
                    float got = d < HD ? ldq[r][((size_t)b * Tl + t) * ld + d]
                                       : ldkv[r][((size_t)b * Tl + t) * ld + d];
                    double e = fabs(got - dqkv[((size_t)b * T + pos[r][t]) * ld + d]);
                    worst_g = e > worst_g ? e : worst_g;
                }
    CHECK_MSG(worst_g < 1e-5, "block backward: max diff %g", worst_g);
    for (int r = 0; r < 2; r++)
        free(lq[r]), free(lout[r]), free(llse[r]), free(ldout[r]), free(ldq[r]), free(ldkv[r]);
    free(qkv), free(out), free(lse), free(dout), free(dqkv);
}

/* ---- activations ------------------------------------------------------------------------- */
struct act_ctx {
    int N, F, kind;
    double *r;
};
static double act_loss(const double *x, void *vc) {
    struct act_ctx *c = vc;
    double *o = malloc(sizeof(double) * c->N * c->F), s = 0;
    if (c->kind == 0)
        ref_swiglu(o, x, c->N, c->F);
    else
        ref_gelu(o, x, c->N, c->F);
    for (int i = 0; i < c->N * c->F; i++)
        s += o[i] * c->r[i];
    free(o);
    return s;
}
static void test_act(int kind) {
    int N = 7, F = 19, nin = kind == 0 ? 2 * F : F;
    float *h = malloc(4 * N * nin), *o = malloc(4 * N * F), *r = malloc(4 * N * F),
          *dh = malloc(4 * N * nin);
    fill(h, N * nin, 2), fill(r, N * F, 1);
    double *hd = to_d(h, N * nin), *ref = malloc(sizeof(double) * N * F);
    struct act_ctx c = {N, F, kind, to_d(r, N * F)};
    if (kind == 0) {
        swiglu_forward_cpu(o, h, N, F);
        ref_swiglu(ref, hd, N, F);
        swiglu_backward_cpu(dh, r, h, N, F);
    } else {
        gelu_forward_cpu(o, h, N, F);
        ref_gelu(ref, hd, N, F);
        gelu_backward_cpu(dh, r, h, N, F);
    }
    CHECK_MSG(max_abs_diff(o, ref, N * F) < 1e-5, "act %d fwd", kind);
    CHECK_MSG(fd_worst(act_loss, &c, hd, N * nin, dh, 100) < 1e-3, "act %d bwd", kind);
    free(h), free(o), free(r), free(dh), free(hd), free(ref), free(c.r);
}

/* ---- cross-entropy ----------------------------------------------------------------------- */
struct xe_ctx {
    int N, V;
    const int32_t *tgt;
};
static double xe_loss(const double *x, void *vc) {
    struct xe_ctx *c = vc;
    return ref_xent(x, c->tgt, c->N, c->V, XENT_IGNORE);
}
static void test_xent(void) {
    int N = 6, V = 37;
    int32_t tgt[6] = {3, 0, XENT_IGNORE, 36, 5, XENT_IGNORE};
    float *lg = malloc(4 * N * V), *losses = malloc(4 * N);
    fill(lg, N * V, 3);
    double *ld = to_d(lg, N * V);
    double want = ref_xent(ld, tgt, N, V, XENT_IGNORE);
    double fwd = xent_forward_cpu(losses, lg, tgt, N, V, XENT_IGNORE);
    CHECK_CLOSE(fwd, want, 1e-5);
    double got = xent_forward_backward_cpu(lg, losses, tgt, N, V, 1.0f, XENT_IGNORE);
    CHECK_CLOSE(got, want, 1e-5);
    CHECK(losses[2] == 0.0f && lg[2 * V + 4] == 0.0f); /* ignored row: no loss, no grad */
    struct xe_ctx c = {N, V, tgt};
    CHECK_MSG(fd_worst(xe_loss, &c, ld, N * V, lg, 120) < 1e-4, "xent bwd");
    free(lg), free(losses), free(ld);
}

/* ---- embedding, adamw -------------------------------------------------------------------- */
static void test_embed_adamw(void) {
    int V = 10, C = 6, N = 5;
    int32_t tok[5] = {3, 1, 3, 9, 0};
    float *wte = malloc(4 * V * C), *out = malloc(4 * N * C), *dw = calloc(V * C, 4);
    fill(wte, V * C, 1);
    embed_forward_cpu(out, tok, wte, N, C, V);
    CHECK(out[2 * C + 4] == wte[3 * C + 4]);
    for (int i = 0; i < N * C; i++)
        out[i] = (float)(i + 1);
    embed_backward_cpu(dw, out, tok, N, C, V);
    CHECK(dw[3 * C + 1] == out[0 * C + 1] + out[2 * C + 1]);
    CHECK(dw[2 * C] == 0.0f);
    /* an id outside the table stops the process (never a heap overflow): in a child */
    for (int which = 0; which < 2; which++) {
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            if (!freopen("/dev/null", "w", stderr))
                _exit(99);
            int32_t bad[2] = {3, which ? -1 : V};
            if (which)
                embed_backward_cpu(dw, out, bad, 2, C, V);
            else
                embed_forward_cpu(out, bad, wte, 2, C, V);
            _exit(0);
        }
        int st = 0;
        CHECK(pid > 0 && waitpid(pid, &st, 0) == pid);
        CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) != 0 && WEXITSTATUS(st) != 99,
                  "embedding with a bad id (%s): status %d", which ? "backward" : "forward", st);
    }
    /* AdamW, two steps against the formula in double */
    float p[3] = {0.5f, -1.0f, 2.0f}, m[3] = {0}, v[3] = {0}, g[3] = {0.1f, -0.2f, 0.3f};
    double pd[3] = {0.5, -1.0, 2.0}, md[3] = {0}, vd[3] = {0};
    for (int t = 1; t <= 2; t++) {
        adamw_update_cpu(p, m, v, g, 3, 0.01f, 0.9f, 0.95f, 1e-8f, 0.1f, t, 0.5f);
        for (int i = 0; i < 3; i++) {
            double gi = g[i] * 0.5;
            md[i] = 0.9 * md[i] + 0.1 * gi;
            vd[i] = 0.95 * vd[i] + 0.05 * gi * gi;
            pd[i] = pd[i] * (1 - 0.01 * 0.1) -
                    0.01 * (md[i] / (1 - pow(0.9, t))) / (sqrt(vd[i] / (1 - pow(0.95, t))) + 1e-8);
        }
    }
    for (int i = 0; i < 3; i++)
        CHECK_CLOSE(p[i], pd[i], 1e-6);
    float big[1000];
    for (int i = 0; i < 1000; i++)
        big[i] = (float)(i % 7) - 3.0f;
    double ss = 0;
    for (int i = 0; i < 1000; i++)
        ss += (double)big[i] * big[i];
    CHECK(sumsq_cpu(big, 1000) == ss);
    free(wte), free(out), free(dw);
}

/* vexpf (ops/vexp.h) against libm's expf: within 2 ulp on a dense sweep of [-87, 88], exact at
 * 0, 0 below -87 and at -inf, and the vectorized loop gives what the scalar call gives. */
static void test_vexp(void) {
    double worst = 0.0;
    float at = 0.0f;
    int n = 0;
    for (float x = -87.0f; x <= 88.0f; x += 0.000731f * (1.0f + fabsf(x)), n++) {
        const float a = vexpf(x), b = expf(x);
        const double ulp = fabs((double)a - b) / (double)(nextafterf(b, INFINITY) - b);
        if (ulp > worst)
            worst = ulp, at = x;
    }
    CHECK_MSG(worst <= 2.0, "vexpf: %.2f ulp from expf at %g (%d points)", worst, at, n);
    CHECK(vexpf(0.0f) == 1.0f);
    CHECK(vexpf(-INFINITY) == 0.0f && vexpf(-90.0f) == 0.0f);
    CHECK(isfinite(vexpf(1000.0f)) && vexpf(1000.0f) == vexpf(88.0f));
    float v[67], w[67];
    for (int i = 0; i < 67; i++)
        v[i] = -20.0f + 0.37f * (float)i;
    for (int i = 0; i < 67; i++)
        w[i] = vexpf(v[i]);
    int same = 1;
    for (int i = 0; i < 67; i++) {
        volatile float x = v[i];
        same &= w[i] == vexpf(x);
    }
    CHECK_MSG(same, "vexpf: the vectorized loop differs from the scalar call");
}

/* The CPU table's streams and events: synchronous, so the staging sequence of a collective
 * (record on compute, wait on comm, copy, sync) leaves the bytes in place at once. */
static void test_streams_cpu(void) {
    const struct ops *o = ops_for(BACKEND_CPU);
    unsigned char *d = o->alloc(64), *h = o->host_alloc(64);
    void *ev = o->event_new();
    CHECK(ev != NULL);
    o->memset(d, 0x5a, 64);
    o->event_record(ev, OPS_STREAM_COMPUTE);
    o->event_wait(OPS_STREAM_COMM, ev);
    o->copy_async(h, d, 64, OPS_STREAM_COMM);
    o->event_sync(ev);
    int same = 1;
    for (int i = 0; i < 64; i++)
        same &= h[i] == 0x5a;
    CHECK(same);
    o->event_free(ev);
    o->host_free(h);
    o->free(d);
}

/* memory accounting (mem_stats) and placement (select_device) */
static void test_mem_stats_cpu(void) {
    const struct ops *o = ops_for(BACKEND_CPU);
    size_t base, peak, now;
    o->mem_stats(&base, &peak, 1);
    CHECK(peak == base);
    void *a = o->alloc(3 << 20), *h = o->host_alloc(1 << 20);
    o->mem_stats(&now, &peak, 0);
    CHECK_MSG(now >= base + (3u << 20) && now < base + (3u << 20) + 65536, "%zu after %zu", now,
              base);
    CHECK(peak == now); /* host_alloc is not backend memory */
    void *b = o->alloc(1 << 20);
    o->free(a);
    o->mem_stats(&now, &peak, 0);
    CHECK_MSG(now < base + (1u << 20) + 65536 && peak >= base + (4u << 20), "now %zu peak %zu", now,
              peak);
    o->mem_stats(NULL, &peak, 1);
    CHECK(peak == now);
    o->free(b);
    o->host_free(h);
    o->mem_stats(&now, NULL, 0);
    CHECK(now == base);
    char desc[32];
    o->select_device(1, 2, desc, sizeof(desc));
    CHECK(!strcmp(desc, "cpu"));
}

/* ---- bf16 inputs (train.precision: bf16) ------------------------------------------------ */
static double *rounded_d(const float *x, size_t n) {
    double *d = malloc(sizeof(double) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        d[i] = hw_bf16_round(x[i]);
    return d;
}
static float bits_f(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}
/* worst |sum_j a(i, j) b(j, l) - got[i L + l]| for a(i, j) = a[i ai + j aj], b(j, l) = b[j bj + l]
 */
static double worst_product(const double *a, int ai, int aj, const double *b, int bj,
                            const float *got, int I, int J, int L) {
    double worst = 0;
    for (int i = 0; i < I; i++)
        for (int l = 0; l < L; l++) {
            double s = 0;
            for (int j = 0; j < J; j++)
                s += a[i * ai + j * aj] * b[j * bj + l];
            worst = fmax(worst, fabs(s - got[i * L + l]));
        }
    return worst;
}

/* bf16 rounding itself and the precision slot */
static void test_bf16_round(void) {
    /* round to nearest even at the 8th significant bit; specials kept */
    CHECK(hw_bf16_round(1.0f) == 1.0f);
    CHECK(hw_bf16_round(bits_f(0x3F808000u)) == 1.0f);                /* tie, even below */
    CHECK(hw_bf16_round(bits_f(0x3F818000u)) == bits_f(0x3F820000u)); /* tie, even above */
    CHECK(hw_bf16_round(bits_f(0x3F808001u)) == bits_f(0x3F810000u)); /* just above the tie */
    CHECK(hw_bf16_round(-bits_f(0x3F808001u)) == -bits_f(0x3F810000u));
    CHECK(isnan(hw_bf16_round(NAN)) && isinf(hw_bf16_round(INFINITY)));
    CHECK(isinf(hw_bf16_round(bits_f(0x7F7FFFFFu)))); /* FLT_MAX rounds past the bf16 max */
    CHECK(isnan(hw_bf16_round(bits_f(0x7F800001u)))); /* a NaN with only low bits stays NaN */

    const struct ops *o = ops_for(BACKEND_CPU);
    CHECK(o->supports(OPS_CAP_BF16_TRAIN) && o->precision() == HW_F32);
    CHECK(o->set_precision(HW_BF16) == HW_F32 && o->precision() == HW_BF16);
    o->set_precision(HW_F32);
}

/* bf16 dense layer and general GEMM: products of the rounded operands, accumulated in fp32 */
static void test_bf16_gemms(void) {
    const struct ops *o = ops_for(BACKEND_CPU);
    o->set_precision(HW_BF16);
    int N = 19, K = 37, M = 23;
    float *inp = malloc(4 * N * K), *w = malloc(4 * M * K), *out = malloc(4 * N * M),
          *dout = malloc(4 * N * M), *dinp = calloc(N * K, 4), *dw = calloc(M * K, 4);
    fill(inp, N * K, 1), fill(w, M * K, 1), fill(dout, N * M, 1);
    double *ri = rounded_d(inp, N * K), *rw = rounded_d(w, M * K), *rd = rounded_d(dout, N * M);
    double *exact = to_d(inp, N * K), *ref = malloc(sizeof(double) * N * M);
    o->matmul_forward(out, inp, w, N, K, M, 0.0f);
    ref_matmul(ref, ri, rw, N, K, M);
    CHECK_MSG(max_abs_diff(out, ref, N * M) < 1e-5, "bf16 matmul fwd off by %g",
              max_abs_diff(out, ref, N * M));
    double *wd = to_d(w, M * K), *ref32 = malloc(sizeof(double) * N * M);
    ref_matmul(ref32, exact, wd, N, K, M);
    CHECK_MSG(max_abs_diff(out, ref32, N * M) > 1e-3, "bf16 matmul rounded nothing");
    o->matmul_backward(dinp, dw, dout, inp, w, N, K, M, 0.0f);
    const double worst_i = worst_product(rd, M, 1, rw, K, dinp, N, M, K); /* dout w */
    const double worst_w = worst_product(rd, 1, M, ri, K, dw, M, N, K);   /* dout^T inp */
    CHECK_MSG(worst_i < 1e-5 && worst_w < 1e-5, "bf16 matmul bwd off by %g / %g", worst_i, worst_w);

    /* general GEMM, both operands transposed and strided: C = A^T B^T, A (K x N) ld K+3... */
    int m = 7, n = 9, k = 11;
    size_t lda = m + 3, ldb = k + 2;
    float *A = malloc(4 * k * lda), *Bm = malloc(4 * n * ldb), *C = malloc(4 * m * n);
    fill(A, k * lda, 1), fill(Bm, n * ldb, 1);
    o->gemm(HW_F32, HW_F32, 1, 1, m, n, k, 1.0, A, lda, Bm, ldb, 0.0, C, n);
    double worst_g = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double a = 0;
            for (int l = 0; l < k; l++)
                a += (double)hw_bf16_round(A[l * lda + i]) * hw_bf16_round(Bm[j * ldb + l]);
            worst_g = fmax(worst_g, fabs(a - C[i * n + j]));
        }
    CHECK_MSG(worst_g < 1e-5, "bf16 gemm off by %g", worst_g);
    o->set_precision(HW_F32);
    free(inp), free(w), free(out), free(dout), free(dinp), free(dw), free(ri), free(rw), free(rd);
    free(exact), free(ref), free(wd), free(ref32), free(A), free(Bm), free(C);
}

/* attention: bf16 q, k, v and P; within bf16 rounding of the exact attention of the rounded
 * inputs, while fp32 mode matches it to fp32 rounding */
static void test_bf16_attention(void) {
    const struct ops *o = ops_for(BACKEND_CPU);
    o->set_precision(HW_BF16);
    int B = 2, T = 70, H = 4, Hkv = 2, hd = 16, ld = (H + 2 * Hkv) * hd + 3;
    size_t nq = (size_t)B * T * ld, no = (size_t)B * T * H * hd;
    float *qkv = malloc(4 * nq), *att = malloc(4 * no), *att32 = malloc(4 * no),
          *lse = malloc(4 * B * H * T), *r = malloc(4 * no), *dq = calloc(nq, 4),
          *dq32 = calloc(nq, 4), *qkvr = malloc(4 * nq);
    fill(qkv, nq, 1), fill(r, no, 1);
    for (size_t i = 0; i < nq; i++)
        qkvr[i] = hw_bf16_round(qkv[i]);
    struct attn_shape sh = {.B = B, .T = T, .H = H, .Hkv = Hkv, .hd = hd, .ld_qkv = ld};
    double *aref = malloc(sizeof(double) * no), *qd = rounded_d(qkv, nq);
    ref_attention(aref, qd, B, T, H, Hkv, hd, ld);
    o->attention_forward(att, lse, qkv, &sh);
    o->attention_backward(dq, r, att, lse, qkv, &sh);
    const double e16 = max_abs_diff(att, aref, no);
    o->set_precision(HW_F32);
    o->attention_forward(att32, lse, qkvr, &sh);
    o->attention_backward(dq32, r, att32, lse, qkvr, &sh);
    const double e32 = max_abs_diff(att32, aref, no);
    CHECK_MSG(e32 < 2e-5 && e16 < 2e-2 && e16 > e32, "bf16 attention: %g (fp32 mode %g)", e16, e32);
    double gmax = 0, gdiff = 0;
    for (size_t i = 0; i < nq; i++) {
        gmax = fmax(gmax, fabs(dq32[i]));
        gdiff = fmax(gdiff, fabs(dq[i] - dq32[i]));
    }
    printf("bf16 attention: out off by %.3g (fp32 mode %.3g), dqkv by %.3g of max %.3g\n", e16, e32,
           gdiff, gmax);
    CHECK_MSG(gdiff > 0 && gdiff < 3e-2 * gmax, "bf16 attention bwd: %g of max %g", gdiff, gmax);
    CHECK(o->precision() == HW_F32);
    free(qkv), free(att), free(att32), free(lse), free(r), free(dq), free(dq32), free(qkvr);
    free(aref), free(qd);
}

int main(void) {
    ops_set_threads(2);
    test_streams_cpu();
    test_mem_stats_cpu();
    test_vexp();
    test_matmul();
    test_rmsnorm();
    test_rope();
    test_attention_shape(2, 70, 4, 4, 8);  /* MHA, T not a multiple of the tile */
    test_attention_shape(1, 130, 4, 2, 8); /* GQA, three tiles */
    test_attention_shape(3, 1, 2, 1, 4);   /* a single position */
    test_attention_blocks();
    test_act(0);
    test_act(1);
    test_xent();
    test_embed_adamw();
    test_bf16_round();
    test_bf16_gemms();
    test_bf16_attention();
    return check_report("test_ops");
}
