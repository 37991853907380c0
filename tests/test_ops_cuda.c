/* tests/test_ops_cuda.c -- every non-attention CUDA op (ops/<family>_cuda.cu) against its CPU
 * version on random inputs with awkward shapes, and twice on the GPU for bit-identical results.
 *
 * Error measure: max_i |gpu_i - cpu_i| / max_i |cpu_i| (the worst error relative to the largest
 * reference value, so tiny entries near cancellation do not dominate); fp32 ops within 1e-5,
 * bf16 GEMMs within 1e-2 of the fp32 CPU result, fp64 within 1e-12, double reductions within
 * 1e-10. A failure prints the op, its shape, the max abs and relative error and the first bad
 * index with both values. Without a device it prints one SKIP line and exits 77. */
#include "check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef HW_CUDA
#include "../core/check.h"
#include "../ops/act.h"
#include "../ops/adamw.h"
#include "../ops/cuda_ctx.h"
#include "../ops/dtype.h"
#include "../ops/embed.h"
#include "../ops/gemm.h"
#include "../ops/matmul.h"
#include "../ops/moh.h"
#include "../ops/norm.h"
#include "../ops/ops.h"
#include "../ops/rope.h"
#include "../ops/xent.h"

#include <cuda_runtime_api.h>
#include <math.h>

#define TOL_F32  1e-5
#define TOL_BF16 1e-2
#define TOL_F64  1e-12
#define TOL_SUM  1e-10

/* ---- host helpers ---------------------------------------------------------------------------- */

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static double urand(void) { /* [0, 1) */
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) * (1.0 / 9007199254740992.0);
}

static float *rand_f32(size_t n, float scale) {
    float *x = HW_MALLOC((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++)
        x[i] = (float)((2.0 * urand() - 1.0) * scale);
    return x;
}

static double *rand_f64(size_t n, double scale) {
    double *x = HW_MALLOC((n ? n : 1) * sizeof(double));
    for (size_t i = 0; i < n; i++)
        x[i] = (2.0 * urand() - 1.0) * scale;
    return x;
}

static int32_t *rand_i32(size_t n, int hi) { /* [0, hi) */
    int32_t *x = HW_MALLOC((n ? n : 1) * sizeof(int32_t));
    for (size_t i = 0; i < n; i++)
        x[i] = (int32_t)(urand() * hi);
    return x;
}

static void *dup_host(const void *p, size_t bytes) {
    void *q = HW_MALLOC(bytes ? bytes : 1);
    memcpy(q, p, bytes);
    return q;
}

/* round to nearest even, as __float2bfloat16 does */
static uint16_t f2bf(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static float bf2f(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint16_t *to_bf16(const float *x, size_t n) {
    uint16_t *y = HW_MALLOC((n ? n : 1) * sizeof(uint16_t));
    for (size_t i = 0; i < n; i++)
        y[i] = f2bf(x[i]);
    return y;
}

static void *dev_from(const void *host, size_t bytes) {
    void *d = cuda_alloc(bytes);
    cuda_upload(d, host, bytes);
    return d;
}

static void *host_from(const void *dev, size_t bytes) {
    void *h = HW_MALLOC(bytes ? bytes : 1);
    cuda_download(h, dev, bytes);
    return h;
}

static double at(const void *p, enum hw_dtype t, size_t i) {
    switch (t) {
    case HW_F32:
        return ((const float *)p)[i];
    case HW_F64:
        return ((const double *)p)[i];
    case HW_BF16:
        return bf2f(((const uint16_t *)p)[i]);
    case HW_I32:
        return ((const int32_t *)p)[i];
    default:
        return NAN;
    }
}

/* ---- checks ------------------------------------------------------------------------------------
 */

static char g_what[256]; /* the op and shape of the current check */
static int g_quick;      /* HW_TEST_QUICK=1: skip the largest cases (compute-sanitizer reruns) */
#define WHAT(...) snprintf(g_what, sizeof(g_what), __VA_ARGS__)

#define EXPECT_CLOSE(name, gpu, gt, ref, rt, n, tol)                                               \
    expect_close(__FILE__, __LINE__, name, gpu, gt, ref, rt, n, tol)
#define EXPECT_SAME(name, a, b, t, n) expect_same(__FILE__, __LINE__, name, a, b, t, n)

/* gpu against ref (see the header for the measure); NaN matches only NaN, inf only itself */
static void expect_close(const char *file, int line, const char *name, const void *gpu,
                         enum hw_dtype gt, const void *ref, enum hw_dtype rt, size_t n,
                         double tol) {
    double max_ref = 0.0, max_err = 0.0;
    size_t worst = 0, first_bad = (size_t)-1, nbad = 0;
    for (size_t i = 0; i < n; i++) {
        double r = at(ref, rt, i);
        if (isfinite(r) && fabs(r) > max_ref)
            max_ref = fabs(r);
    }
    double scale = max_ref > 0.0 ? max_ref : 1.0;
    for (size_t i = 0; i < n; i++) {
        double r = at(ref, rt, i), g = at(gpu, gt, i), err;
        int bad;
        if (isnan(r) || isnan(g) || isinf(r) || isinf(g)) {
            bad = !((isnan(r) && isnan(g)) || r == g);
            err = bad ? INFINITY : 0.0;
        } else {
            err = fabs(g - r);
            bad = err > tol * scale;
        }
        if (err > max_err || (i == 0 && err == 0.0)) {
            max_err = err;
            worst = i;
        }
        if (bad && nbad++ == 0)
            first_bad = i;
    }
    check_total_++;
    if (nbad) {
        check_failed_++;
        fprintf(stderr,
                "%s:%d: FAIL %s [%s]: %zu of %zu values off; max abs err %.4g at [%zu] (gpu "
                "%.9g, cpu %.9g), rel %.4g > tol %.0e (max |cpu| %.6g); first bad [%zu]: gpu "
                "%.9g, cpu %.9g\n",
                file, line, name, g_what, nbad, n, max_err, worst, at(gpu, gt, worst),
                at(ref, rt, worst), max_err / scale, tol, max_ref, first_bad,
                at(gpu, gt, first_bad), at(ref, rt, first_bad));
    } else {
        printf("  ok  %-16s %-58s rel %.2e (tol %.0e)\n", name, g_what, max_err / scale, tol);
    }
    fflush(stdout);
}

/* two GPU runs bit for bit */
static void expect_same(const char *file, int line, const char *name, const void *a, const void *b,
                        enum hw_dtype t, size_t n) {
    size_t es = hw_dtype_size(t);
    check_total_++;
    if (memcmp(a, b, n * es) == 0)
        return;
    size_t i = 0;
    while (i < n && memcmp((const char *)a + i * es, (const char *)b + i * es, es) == 0)
        i++;
    size_t nd = 0;
    for (size_t j = i; j < n; j++)
        nd += memcmp((const char *)a + j * es, (const char *)b + j * es, es) != 0;
    check_failed_++;
    fprintf(stderr,
            "%s:%d: FAIL %s [%s]: not deterministic: %zu of %zu values differ between two runs; "
            "first [%zu]: %.9g vs %.9g\n",
            file, line, name, g_what, nd, n, i, at(a, t, i), at(b, t, i));
}

static void expect_scalar(const char *file, int line, const char *name, double gpu, double ref,
                          double tol) {
    double scale = fabs(ref) > 0.0 ? fabs(ref) : 1.0, err = fabs(gpu - ref);
    check_total_++;
    if (!(err <= tol * scale)) {
        check_failed_++;
        fprintf(stderr,
                "%s:%d: FAIL %s [%s]: gpu %.17g, cpu %.17g, abs err %.4g, rel %.4g > %.0e\n", file,
                line, name, g_what, gpu, ref, err, err / scale, tol);
    } else {
        printf("  ok  %-16s %-58s rel %.2e (tol %.0e)\n", name, g_what, err / scale, tol);
    }
}
#define EXPECT_SCALAR(name, gpu, ref, tol) expect_scalar(__FILE__, __LINE__, name, gpu, ref, tol)

static void expect_same_scalar(const char *file, int line, const char *name, double a, double b) {
    check_total_++;
    if (memcmp(&a, &b, sizeof(a)) != 0) {
        check_failed_++;
        fprintf(stderr, "%s:%d: FAIL %s [%s]: not deterministic: %.17g vs %.17g\n", file, line,
                name, g_what, a, b);
    }
}
#define EXPECT_SAME_SCALAR(name, a, b) expect_same_scalar(__FILE__, __LINE__, name, a, b)

/* ---- GEMMs ----------------------------------------------------------------------------------- */

static void test_matmul(int N, int K, int M, float beta, float beta_dinp) {
    WHAT("N=%d K=%d M=%d beta=%g beta_dinp=%g", N, K, M, beta, beta_dinp);
    size_t nk = (size_t)N * K, mk = (size_t)M * K, nm = (size_t)N * M;
    float *inp = rand_f32(nk, 1), *w = rand_f32(mk, 1), *out0 = rand_f32(nm, 1);
    float *dout = rand_f32(nm, 1), *dinp0 = rand_f32(nk, 1), *dw0 = rand_f32(mk, 1);
    float *out = dup_host(out0, nm * 4), *dinp = dup_host(dinp0, nk * 4),
          *dw = dup_host(dw0, mk * 4);
    matmul_forward_cpu(out, inp, w, N, K, M, beta);
    matmul_backward_cpu(dinp, dw, dout, inp, w, N, K, M, beta_dinp);
    float *g_out[2], *g_dinp[2], *g_dw[2];
    float *d_inp = dev_from(inp, nk * 4), *d_w = dev_from(w, mk * 4),
          *d_dout = dev_from(dout, nm * 4);
    for (int r = 0; r < 2; r++) {
        float *d_out = dev_from(out0, nm * 4), *d_dinp = dev_from(dinp0, nk * 4),
              *d_dw = dev_from(dw0, mk * 4);
        matmul_forward_cuda(d_out, d_inp, d_w, N, K, M, beta);
        matmul_backward_cuda(d_dinp, d_dw, d_dout, d_inp, d_w, N, K, M, beta_dinp);
        g_out[r] = host_from(d_out, nm * 4);
        g_dinp[r] = host_from(d_dinp, nk * 4);
        g_dw[r] = host_from(d_dw, mk * 4);
        cuda_free(d_out);
        cuda_free(d_dinp);
        cuda_free(d_dw);
    }
    EXPECT_CLOSE("matmul_fwd out", g_out[0], HW_F32, out, HW_F32, nm, TOL_F32);
    EXPECT_CLOSE("matmul_bwd dinp", g_dinp[0], HW_F32, dinp, HW_F32, nk, TOL_F32);
    EXPECT_CLOSE("matmul_bwd dw", g_dw[0], HW_F32, dw, HW_F32, mk, TOL_F32);
    EXPECT_SAME("matmul_fwd out", g_out[0], g_out[1], HW_F32, nm);
    EXPECT_SAME("matmul_bwd dinp", g_dinp[0], g_dinp[1], HW_F32, nk);
    EXPECT_SAME("matmul_bwd dw", g_dw[0], g_dw[1], HW_F32, mk);

    /* dinp == NULL skips the input gradient */
    float *d_dw = dev_from(dw0, mk * 4);
    matmul_backward_cuda(NULL, d_dw, d_dout, d_inp, d_w, N, K, M, 0.0f);
    float *h_dw = host_from(d_dw, mk * 4);
    EXPECT_CLOSE("matmul_bwd dw/0", h_dw, HW_F32, dw, HW_F32, mk, TOL_F32);
    cuda_free(d_dw);
    free(h_dw);
    for (int r = 0; r < 2; r++) {
        free(g_out[r]);
        free(g_dinp[r]);
        free(g_dw[r]);
    }
    cuda_free(d_inp);
    cuda_free(d_w);
    cuda_free(d_dout);
    free(inp), free(w), free(out0), free(dout), free(dinp0), free(dw0), free(out), free(dinp),
        free(dw);
}

/* host matrix of `type` from fp32 values (bf16 rounds) */
static void *as_type(const float *x, size_t n, enum hw_dtype t) {
    if (t == HW_F32)
        return dup_host(x, n * 4);
    if (t == HW_BF16)
        return to_bf16(x, n);
    double *d = HW_MALLOC(n * sizeof(double));
    for (size_t i = 0; i < n; i++)
        d[i] = x[i];
    return d;
}

/* the reference: fp64 through gemm_cpu(F64), everything else through gemm_cpu(F32) on the fp32
 * originals (bf16 is compared with the fp32 result) */
static void test_gemm(enum hw_dtype ab, enum hw_dtype ct, int ta, int tb, int m, int n, int k,
                      int pad, double alpha, double beta) {
    WHAT("%s->%s ta=%d tb=%d m=%d n=%d k=%d pad=%d a=%g b=%g", hw_dtype_name(ab), hw_dtype_name(ct),
         ta, tb, m, n, k, pad, alpha, beta);
    size_t lda = (size_t)(ta ? m : k) + pad, ldb = (size_t)(tb ? k : n) + pad,
           ldc = (size_t)n + pad;
    size_t na = (size_t)(ta ? k : m) * lda, nb = (size_t)(tb ? n : k) * ldb, nc = (size_t)m * ldc;
    float *A = rand_f32(na, 1), *B = rand_f32(nb, 1), *C0 = rand_f32(nc, 1);
    if (beta == 0.0) /* beta == 0 must overwrite, never propagate NaN */
        for (size_t i = 0; i < nc; i++)
            C0[i] = NAN;
    if (ct == HW_BF16) /* the reference starts from the same (rounded) C */
        for (size_t i = 0; i < nc; i++)
            C0[i] = bf2f(f2bf(C0[i]));
    enum hw_dtype rt = ab == HW_F64 ? HW_F64 : HW_F32;
    void *ref = as_type(C0, nc, rt), *hA = as_type(A, na, ab), *hB = as_type(B, nb, ab);
    if (rt == HW_F64)
        gemm_cpu(HW_F64, HW_F64, ta, tb, m, n, k, alpha, hA, lda, hB, ldb, beta, ref, ldc);
    else
        gemm_cpu(HW_F32, HW_F32, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, ref, ldc);
    size_t es = hw_dtype_size(ab), cs = hw_dtype_size(ct);
    void *hC0 = as_type(C0, nc, ct), *got[2];
    void *dA = dev_from(hA, na * es), *dB = dev_from(hB, nb * es);
    for (int r = 0; r < 2; r++) {
        void *dC = dev_from(hC0, nc * cs);
        gemm_cuda(ab, ct, ta, tb, m, n, k, alpha, dA, lda, dB, ldb, beta, dC, ldc);
        got[r] = host_from(dC, nc * cs);
        cuda_free(dC);
    }
    double tol = ab == HW_F64 ? TOL_F64 : ab == HW_BF16 ? TOL_BF16 : TOL_F32;
    EXPECT_CLOSE("gemm", got[0], ct, ref, rt, nc, tol);
    EXPECT_SAME("gemm", got[0], got[1], ct, nc);
    cuda_free(dA);
    cuda_free(dB);
    free(got[0]), free(got[1]), free(hC0), free(ref), free(hA), free(hB), free(A), free(B),
        free(C0);
}

/* gelu on the host with act_cpu.c (N rows of F) */
static void gelu_ref(float *out, const float *h, size_t n) {
    gelu_forward_cpu(out, h, 1, (int)n);
}

static void test_matmul_bf16_fwd(int N, int K, int M, enum hw_dtype ot, int with_bias,
                                 int with_gelu) {
    WHAT("N=%d K=%d M=%d out=%s bias=%d gelu=%d", N, K, M, hw_dtype_name(ot), with_bias, with_gelu);
    size_t nk = (size_t)N * K, mk = (size_t)M * K, nm = (size_t)N * M;
    float *inp = rand_f32(nk, 1), *w = rand_f32(mk, 1), *bias = rand_f32(M, 1);
    float *pre = HW_MALLOC(nm * 4), *out = HW_MALLOC(nm * 4);
    if (ot == HW_BF16)
        for (int i = 0; i < M; i++)
            bias[i] = bf2f(f2bf(bias[i]));
    matmul_forward_cpu(pre, inp, w, N, K, M, 0.0f);
    for (size_t i = 0; i < nm && with_bias; i++)
        pre[i] += bias[i % M];
    if (with_gelu)
        gelu_ref(out, pre, nm);
    else
        memcpy(out, pre, nm * 4);
    uint16_t *hi = to_bf16(inp, nk), *hw = to_bf16(w, mk);
    void *hb = as_type(bias, M, ot);
    size_t os = hw_dtype_size(ot);
    void *di = dev_from(hi, nk * 2), *dw = dev_from(hw, mk * 2), *db = dev_from(hb, M * os);
    void *g_out[2], *g_pre[2];
    for (int r = 0; r < 2; r++) {
        void *dout = cuda_alloc(nm * os), *dpre = cuda_alloc(nm * os);
        matmul_forward_bf16_cuda(dout, with_gelu ? dpre : NULL, ot, di, dw, with_bias ? db : NULL,
                                 N, K, M, 0.0f);
        g_out[r] = host_from(dout, nm * os);
        g_pre[r] = host_from(dpre, nm * os);
        cuda_free(dout);
        cuda_free(dpre);
    }
    EXPECT_CLOSE("mm_bf16_fwd out", g_out[0], ot, out, HW_F32, nm, TOL_BF16);
    if (with_gelu)
        EXPECT_CLOSE("mm_bf16_fwd pre", g_pre[0], ot, pre, HW_F32, nm, TOL_BF16);
    EXPECT_SAME("mm_bf16_fwd out", g_out[0], g_out[1], ot, nm);
    if (with_gelu)
        EXPECT_SAME("mm_bf16_fwd pre", g_pre[0], g_pre[1], ot, nm);
    cuda_free(di), cuda_free(dw), cuda_free(db);
    free(g_out[0]), free(g_out[1]), free(g_pre[0]), free(g_pre[1]), free(hi), free(hw), free(hb);
    free(inp), free(w), free(bias), free(pre), free(out);
}

static void test_matmul_bf16_bwd(int N, int K, int M, enum hw_dtype dt, int with_gelu,
                                 float beta_dinp) {
    WHAT("N=%d K=%d M=%d dinp=%s gelu=%d beta_dinp=%g", N, K, M, hw_dtype_name(dt), with_gelu,
         beta_dinp);
    size_t nk = (size_t)N * K, mk = (size_t)M * K, nm = (size_t)N * M;
    float *inp = rand_f32(nk, 1), *w = rand_f32(mk, 1), *dout = rand_f32(nm, 1);
    float *pre = rand_f32(nk, 2), *dinp0 = rand_f32(nk, 1), *dw0 = rand_f32(mk, 1);
    if (dt == HW_BF16)
        for (size_t i = 0; i < nk; i++)
            dinp0[i] = bf2f(f2bf(dinp0[i]));
    float *dinp = dup_host(dinp0, nk * 4), *dw = dup_host(dw0, mk * 4);
    matmul_backward_cpu(dinp, dw, dout, inp, w, N, K, M, beta_dinp);
    if (with_gelu) {
        float *t = dup_host(dinp, nk * 4);
        gelu_backward_cpu(dinp, t, pre, 1, (int)nk);
        free(t);
    }
    uint16_t *hi = to_bf16(inp, nk), *hw = to_bf16(w, mk), *hd = to_bf16(dout, nm);
    size_t ds = hw_dtype_size(dt);
    void *hpre = as_type(pre, nk, dt), *hdinp0 = as_type(dinp0, nk, dt);
    void *di = dev_from(hi, nk * 2), *dwt = dev_from(hw, mk * 2), *ddo = dev_from(hd, nm * 2);
    void *dpre = dev_from(hpre, nk * ds);
    void *g_dinp[2];
    float *g_dw[2];
    for (int r = 0; r < 2; r++) {
        void *ddinp = dev_from(hdinp0, nk * ds);
        float *ddw = dev_from(dw0, mk * 4);
        matmul_backward_bf16_cuda(ddinp, dt, ddw, ddo, di, dwt, with_gelu ? dpre : NULL, N, K, M,
                                  beta_dinp);
        g_dinp[r] = host_from(ddinp, nk * ds);
        g_dw[r] = host_from(ddw, mk * 4);
        cuda_free(ddinp);
        cuda_free(ddw);
    }
    EXPECT_CLOSE("mm_bf16_bwd dinp", g_dinp[0], dt, dinp, HW_F32, nk, TOL_BF16);
    EXPECT_CLOSE("mm_bf16_bwd dw", g_dw[0], HW_F32, dw, HW_F32, mk, TOL_BF16);
    EXPECT_SAME("mm_bf16_bwd dinp", g_dinp[0], g_dinp[1], dt, nk);
    EXPECT_SAME("mm_bf16_bwd dw", g_dw[0], g_dw[1], HW_F32, mk);
    cuda_free(di), cuda_free(dwt), cuda_free(ddo), cuda_free(dpre);
    free(g_dinp[0]), free(g_dinp[1]), free(g_dw[0]), free(g_dw[1]);
    free(hi), free(hw), free(hd), free(hpre), free(hdinp0);
    free(inp), free(w), free(dout), free(pre), free(dinp0), free(dw0), free(dinp), free(dw);
}

/* train.precision: bf16 on both backends: the GPU's rounded-operand products equal the CPU's
 * within fp32 summation error, and differ from the fp32 products (the rounding happened) */
static void test_matmul_precision(int N, int K, int M) {
    WHAT("bf16 precision N=%d K=%d M=%d", N, K, M);
    const struct ops *cpu = ops_for(BACKEND_CPU), *gpu = ops_for(BACKEND_CUDA);
    size_t nk = (size_t)N * K, mk = (size_t)M * K, nm = (size_t)N * M;
    float *inp = rand_f32(nk, 1), *w = rand_f32(mk, 1), *dout = rand_f32(nm, 1);
    float *out = calloc(nm, 4), *out32 = calloc(nm, 4), *dinp = calloc(nk, 4), *dw = calloc(mk, 4);
    matmul_forward_cpu(out32, inp, w, N, K, M, 0.0f);
    cpu->set_precision(HW_BF16);
    matmul_forward_cpu(out, inp, w, N, K, M, 0.0f);
    matmul_backward_cpu(dinp, dw, dout, inp, w, N, K, M, 0.0f);
    cpu->set_precision(HW_F32);
    float *d_inp = dev_from(inp, nk * 4), *d_w = dev_from(w, mk * 4),
          *d_dout = dev_from(dout, nm * 4);
    float *d_out = cuda_alloc(nm * 4), *d_dinp = cuda_alloc(nk * 4), *d_dw = cuda_alloc(mk * 4);
    gpu->set_precision(HW_BF16);
    matmul_forward_cuda(d_out, d_inp, d_w, N, K, M, 0.0f);
    matmul_backward_cuda(d_dinp, d_dw, d_dout, d_inp, d_w, N, K, M, 0.0f);
    gpu->set_precision(HW_F32);
    float *g_out = host_from(d_out, nm * 4), *g_dinp = host_from(d_dinp, nk * 4),
          *g_dw = host_from(d_dw, mk * 4);
    EXPECT_CLOSE("bf16 matmul_fwd out", g_out, HW_F32, out, HW_F32, nm, TOL_F32);
    EXPECT_CLOSE("bf16 matmul_bwd dinp", g_dinp, HW_F32, dinp, HW_F32, nk, TOL_F32);
    EXPECT_CLOSE("bf16 matmul_bwd dw", g_dw, HW_F32, dw, HW_F32, mk, TOL_F32);
    double far = 0.0, mx = 0.0;
    for (size_t i = 0; i < nm; i++) {
        far = fabs((double)g_out[i] - out32[i]) > far ? fabs((double)g_out[i] - out32[i]) : far;
        mx = fabs(out32[i]) > mx ? fabs(out32[i]) : mx;
    }
    EXPECT_SCALAR("bf16 != fp32", far / mx > 1e-4 ? 1.0 : 0.0, 1.0, 0.0);
    cuda_free(d_inp), cuda_free(d_w), cuda_free(d_dout), cuda_free(d_out), cuda_free(d_dinp),
        cuda_free(d_dw);
    free(inp), free(w), free(dout), free(out), free(out32), free(dinp), free(dw);
    free(g_out), free(g_dinp), free(g_dw);
}

static void test_gemms(void) {
    printf("gemm / matmul\n");
    test_matmul(37, 53, 71, 0.0f, 0.0f);
    test_matmul(37, 53, 71, 0.5f, 1.0f);
    test_matmul(1, 7, 3, 1.0f, 0.0f);
    test_matmul(256, 384, 1152, 0.0f, 1.0f);
    test_matmul_precision(37, 53, 71);
    test_matmul_precision(256, 384, 1152);
    const enum hw_dtype ab[4] = {HW_F32, HW_F64, HW_BF16, HW_BF16};
    const enum hw_dtype ct[4] = {HW_F32, HW_F64, HW_F32, HW_BF16};
    for (int p = 0; p < 4; p++)
        for (int t = 0; t < 4; t++) {
            test_gemm(ab[p], ct[p], t & 1, t >> 1, 33, 47, 29, 0, 1.0, 0.0);
            test_gemm(ab[p], ct[p], t & 1, t >> 1, 33, 47, 29, 5, 0.75, 0.5);
        }
    for (int p = 0; p < 4; p++) {
        test_gemm(ab[p], ct[p], 0, 0, 5, 7, 0, 2, 1.0, 0.5); /* k == 0: C = beta C */
        test_gemm(ab[p], ct[p], 0, 0, 5, 7, 0, 2, 1.0, 0.0); /* k == 0, beta 0: zeros, not NaN */
        test_gemm(ab[p], ct[p], 1, 0, 128, 192, 320, 8, 1.0, 1.0);
    }
    test_gemm(HW_F32, HW_F32, 0, 1, 1, 1, 1, 0, 2.0, 0.0);
    test_gemm(HW_BF16, HW_BF16, 0, 1, 256, 1152, 384, 0, 1.0, 0.0);

    /* the bf16 layers: bias and GELU fused (M % 8 == 0) or in the separate pass (M odd) */
    for (int o = 0; o < 2; o++) {
        enum hw_dtype ot = o ? HW_BF16 : HW_F32;
        test_matmul_bf16_fwd(64, 96, 128, ot, 0, 0);
        test_matmul_bf16_fwd(64, 96, 128, ot, 1, 0);
        test_matmul_bf16_fwd(64, 96, 128, ot, 0, 1);
        test_matmul_bf16_fwd(64, 96, 128, ot, 1, 1);
        test_matmul_bf16_fwd(37, 53, 71, ot, 1, 1);
        test_matmul_bf16_fwd(37, 53, 71, ot, 1, 0);
        test_matmul_bf16_bwd(64, 128, 96, ot, 0, 0.0f);
        test_matmul_bf16_bwd(64, 128, 96, ot, 0, 1.0f);
        test_matmul_bf16_bwd(64, 128, 96, ot, 1, 0.0f);
        test_matmul_bf16_bwd(37, 53, 71, ot, 1, 0.0f);
    }
}

/* ---- RMSNorm ------------------------------------------------------------------------------------
 */

static void test_rmsnorm(int N, int C) {
    WHAT("N=%d C=%d", N, C);
    size_t nc = (size_t)N * C;
    float eps = 1e-5f;
    float *x = rand_f32(nc, 2), *w = rand_f32(C, 1), *dy = rand_f32(nc, 1);
    float *dx0 = rand_f32(nc, 1), *dw0 = rand_f32(C, 1);
    float *out = HW_MALLOC(nc * 4), *rstd = HW_MALLOC((size_t)N * 4);
    float *dx = dup_host(dx0, nc * 4), *dw = dup_host(dw0, (size_t)C * 4);
    rmsnorm_forward_cpu(out, rstd, x, w, N, C, eps);
    rmsnorm_backward_cpu(dx, dw, dy, x, w, rstd, N, C);
    if (N > 65536) {
        /* over this many rows the CPU's running float sum per thread drifts by about the tolerance
         * itself; dw is checked against an fp64 sum of the same terms instead */
        for (int c = 0; c < C; c++) {
            double s = 0.0;
            for (int n = 0; n < N; n++)
                s += (double)(dy[(size_t)n * C + c] * x[(size_t)n * C + c] * rstd[n]);
            dw[c] = (float)((double)dw0[c] + s);
        }
        WHAT("N=%d C=%d (dw against fp64)", N, C);
    }
    float *d_x = dev_from(x, nc * 4), *d_w = dev_from(w, C * 4), *d_dy = dev_from(dy, nc * 4);
    float *d_rstd_cpu = dev_from(rstd, (size_t)N * 4);
    float *g_out[2], *g_rstd[2], *g_dx[2], *g_dw[2];
    for (int r = 0; r < 2; r++) {
        float *d_out = cuda_alloc(nc * 4), *d_rstd = cuda_alloc((size_t)N * 4);
        float *d_dx = dev_from(dx0, nc * 4), *d_dw = dev_from(dw0, (size_t)C * 4);
        rmsnorm_forward_cuda(d_out, d_rstd, d_x, d_w, N, C, eps);
        /* the backward from the CPU's rstd: each pass is checked on its own */
        rmsnorm_backward_cuda(d_dx, d_dw, d_dy, d_x, d_w, d_rstd_cpu, N, C);
        g_out[r] = host_from(d_out, nc * 4);
        g_rstd[r] = host_from(d_rstd, (size_t)N * 4);
        g_dx[r] = host_from(d_dx, nc * 4);
        g_dw[r] = host_from(d_dw, (size_t)C * 4);
        cuda_free(d_out), cuda_free(d_rstd), cuda_free(d_dx), cuda_free(d_dw);
    }
    EXPECT_CLOSE("rmsnorm_fwd out", g_out[0], HW_F32, out, HW_F32, nc, TOL_F32);
    EXPECT_CLOSE("rmsnorm_fwd rstd", g_rstd[0], HW_F32, rstd, HW_F32, N, TOL_F32);
    EXPECT_CLOSE("rmsnorm_bwd dinp", g_dx[0], HW_F32, dx, HW_F32, nc, TOL_F32);
    EXPECT_CLOSE("rmsnorm_bwd dw", g_dw[0], HW_F32, dw, HW_F32, C, TOL_F32);
    EXPECT_SAME("rmsnorm_fwd out", g_out[0], g_out[1], HW_F32, nc);
    EXPECT_SAME("rmsnorm_fwd rstd", g_rstd[0], g_rstd[1], HW_F32, N);
    EXPECT_SAME("rmsnorm_bwd dinp", g_dx[0], g_dx[1], HW_F32, nc);
    EXPECT_SAME("rmsnorm_bwd dw", g_dw[0], g_dw[1], HW_F32, C);
    for (int r = 0; r < 2; r++)
        free(g_out[r]), free(g_rstd[r]), free(g_dx[r]), free(g_dw[r]);
    cuda_free(d_x), cuda_free(d_w), cuda_free(d_dy), cuda_free(d_rstd_cpu);
    free(x), free(w), free(dy), free(dx0), free(dw0), free(out), free(rstd), free(dx), free(dw);
}

/* ---- RoPE
 * ----------------------------------------------------------------------------------------- */

static void test_rope(int B, int T, int n_heads, int hd, int ld, int pos0, int pos_step) {
    WHAT("B=%d T=%d heads=%d hd=%d ld=%d pos=%d+%dt", B, T, n_heads, hd, ld, pos0, pos_step);
    int max_T = pos0 + pos_step * (T - 1) + 1, h2 = hd / 2;
    float *ct = HW_MALLOC((size_t)max_T * h2 * 4), *st = HW_MALLOC((size_t)max_T * h2 * 4);
    rope_tables(ct, st, max_T, hd, 10000.0, NULL);
    int32_t *pos = HW_MALLOC((size_t)T * 4);
    for (int t = 0; t < T; t++)
        pos[t] = pos0 + pos_step * t;
    size_t n = (size_t)B * T * ld;
    float *x0 = rand_f32(n, 1), *fwd = dup_host(x0, n * 4), *bwd = dup_host(x0, n * 4);
    rope_forward_cpu(fwd, ct, st, B, T, n_heads, hd, ld, pos);
    rope_backward_cpu(bwd, ct, st, B, T, n_heads, hd, ld, pos);
    float *d_ct = dev_from(ct, (size_t)max_T * h2 * 4),
          *d_st = dev_from(st, (size_t)max_T * h2 * 4);
    int32_t *d_pos = dev_from(pos, (size_t)T * 4);
    float *g_f[2], *g_b[2];
    for (int r = 0; r < 2; r++) {
        float *d_f = dev_from(x0, n * 4), *d_b = dev_from(x0, n * 4);
        rope_forward_cuda(d_f, d_ct, d_st, B, T, n_heads, hd, ld, d_pos);
        rope_backward_cuda(d_b, d_ct, d_st, B, T, n_heads, hd, ld, d_pos);
        g_f[r] = host_from(d_f, n * 4);
        g_b[r] = host_from(d_b, n * 4);
        cuda_free(d_f), cuda_free(d_b);
    }
    /* whole rows: the columns past n_heads * hd must be untouched */
    EXPECT_CLOSE("rope_fwd", g_f[0], HW_F32, fwd, HW_F32, n, TOL_F32);
    EXPECT_CLOSE("rope_bwd", g_b[0], HW_F32, bwd, HW_F32, n, TOL_F32);
    EXPECT_SAME("rope_fwd", g_f[0], g_f[1], HW_F32, n);
    EXPECT_SAME("rope_bwd", g_b[0], g_b[1], HW_F32, n);
    for (int r = 0; r < 2; r++)
        free(g_f[r]), free(g_b[r]);
    cuda_free(d_ct), cuda_free(d_st), cuda_free(d_pos);
    free(ct), free(st), free(pos), free(x0), free(fwd), free(bwd);
}

/* ---- activations ------------------------------------------------------------------------------
 */

static void test_act(int N, int F) {
    WHAT("N=%d F=%d", N, F);
    size_t nf = (size_t)N * F;
    float *h2 = rand_f32(2 * nf, 4), *h = rand_f32(nf, 4), *dy = rand_f32(nf, 1);
    float *garbage = rand_f32(2 * nf, 100); /* backwards overwrite */
    float *sw = HW_MALLOC(nf * 4), *dsw = dup_host(garbage, 2 * nf * 4);
    float *ge = HW_MALLOC(nf * 4), *dge = dup_host(garbage, nf * 4);
    swiglu_forward_cpu(sw, h2, N, F);
    swiglu_backward_cpu(dsw, dy, h2, N, F);
    gelu_forward_cpu(ge, h, N, F);
    gelu_backward_cpu(dge, dy, h, N, F);
    float *d_h2 = dev_from(h2, 2 * nf * 4), *d_h = dev_from(h, nf * 4),
          *d_dy = dev_from(dy, nf * 4);
    float *g[2][4];
    for (int r = 0; r < 2; r++) {
        float *o1 = cuda_alloc(nf * 4), *o2 = dev_from(garbage, 2 * nf * 4);
        float *o3 = cuda_alloc(nf * 4), *o4 = dev_from(garbage, nf * 4);
        swiglu_forward_cuda(o1, d_h2, N, F);
        swiglu_backward_cuda(o2, d_dy, d_h2, N, F);
        gelu_forward_cuda(o3, d_h, N, F);
        gelu_backward_cuda(o4, d_dy, d_h, N, F);
        g[r][0] = host_from(o1, nf * 4);
        g[r][1] = host_from(o2, 2 * nf * 4);
        g[r][2] = host_from(o3, nf * 4);
        g[r][3] = host_from(o4, nf * 4);
        cuda_free(o1), cuda_free(o2), cuda_free(o3), cuda_free(o4);
    }
    EXPECT_CLOSE("swiglu_fwd", g[0][0], HW_F32, sw, HW_F32, nf, TOL_F32);
    EXPECT_CLOSE("swiglu_bwd", g[0][1], HW_F32, dsw, HW_F32, 2 * nf, TOL_F32);
    EXPECT_CLOSE("gelu_fwd", g[0][2], HW_F32, ge, HW_F32, nf, TOL_F32);
    EXPECT_CLOSE("gelu_bwd", g[0][3], HW_F32, dge, HW_F32, nf, TOL_F32);
    EXPECT_SAME("swiglu_fwd", g[0][0], g[1][0], HW_F32, nf);
    EXPECT_SAME("swiglu_bwd", g[0][1], g[1][1], HW_F32, 2 * nf);
    EXPECT_SAME("gelu_fwd", g[0][2], g[1][2], HW_F32, nf);
    EXPECT_SAME("gelu_bwd", g[0][3], g[1][3], HW_F32, nf);
    for (int r = 0; r < 2; r++)
        for (int i = 0; i < 4; i++)
            free(g[r][i]);
    cuda_free(d_h2), cuda_free(d_h), cuda_free(d_dy);
    free(h2), free(h), free(dy), free(garbage), free(sw), free(dsw), free(ge), free(dge);
}

static void test_sigmoid_gate(int64_t n, int alias) {
    WHAT("n=%lld out==y=%d", (long long)n, alias);
    float *y = rand_f32((size_t)n, 2), *u = rand_f32((size_t)n, 6), *dout = rand_f32((size_t)n, 1);
    float *out = HW_MALLOC((size_t)n * 4), *dy = HW_MALLOC((size_t)n * 4);
    float *du = HW_MALLOC((size_t)n * 4);
    sigmoid_gate_forward_cpu(out, y, u, n);
    sigmoid_gate_backward_cpu(dy, du, dout, y, u, n);
    float *d_y = dev_from(y, (size_t)n * 4), *d_u = dev_from(u, (size_t)n * 4);
    float *d_dout = dev_from(dout, (size_t)n * 4), *g[2][3];
    for (int r = 0; r < 2; r++) {
        float *d_out = alias ? dev_from(y, (size_t)n * 4) : cuda_alloc((size_t)n * 4);
        float *d_dy = cuda_alloc((size_t)n * 4), *d_du = cuda_alloc((size_t)n * 4);
        sigmoid_gate_forward_cuda(d_out, alias ? d_out : d_y, d_u, n);
        sigmoid_gate_backward_cuda(d_dy, d_du, d_dout, d_y, d_u, n);
        g[r][0] = host_from(d_out, (size_t)n * 4);
        g[r][1] = host_from(d_dy, (size_t)n * 4);
        g[r][2] = host_from(d_du, (size_t)n * 4);
        cuda_free(d_out), cuda_free(d_dy), cuda_free(d_du);
    }
    EXPECT_CLOSE("sigmoid_gate_fwd", g[0][0], HW_F32, out, HW_F32, (size_t)n, TOL_F32);
    EXPECT_CLOSE("sigmoid_gate dy", g[0][1], HW_F32, dy, HW_F32, (size_t)n, TOL_F32);
    EXPECT_CLOSE("sigmoid_gate du", g[0][2], HW_F32, du, HW_F32, (size_t)n, TOL_F32);
    for (int i = 0; i < 3; i++)
        EXPECT_SAME("sigmoid_gate", g[0][i], g[1][i], HW_F32, (size_t)n);
    for (int r = 0; r < 2; r++)
        for (int i = 0; i < 3; i++)
            free(g[r][i]);
    cuda_free(d_y), cuda_free(d_u), cuda_free(d_dout);
    free(y), free(u), free(dout), free(out), free(dy), free(du);
}

/* ---- cross-entropy ------------------------------------------------------------------------------
 */

static void test_xent(int N, int V, int ignore_index, int n_ignored, float logit_scale) {
    WHAT("N=%d V=%d ignore=%d (%d rows) scale=%g", N, V, ignore_index, n_ignored, logit_scale);
    size_t nv = (size_t)N * V;
    float *logits = rand_f32(nv, logit_scale);
    int32_t *tg = rand_i32(N, V);
    for (int i = 0; i < n_ignored; i++)
        tg[(i * 7 + 3) % N] = ignore_index;
    int live = 0;
    for (int i = 0; i < N; i++)
        live += tg[i] != ignore_index;
    float dscale = 1.0f / (float)(live ? live : 1);
    float *dl = dup_host(logits, nv * 4), *loss = HW_MALLOC((size_t)N * 4);
    float *loss_f = HW_MALLOC((size_t)N * 4);
    double tot = xent_forward_backward_cpu(dl, loss, tg, N, V, dscale, ignore_index);
    double tot_f = xent_forward_cpu(loss_f, logits, tg, N, V, ignore_index);
    int32_t *d_tg = dev_from(tg, (size_t)N * 4);
    float *d_logits = dev_from(logits, nv * 4);
    float *g_dl[2], *g_loss[2], *g_loss_f[2];
    double g_tot[2], g_tot_f[2], g_tot_null = 0.0;
    for (int r = 0; r < 2; r++) {
        float *d_dl = dev_from(logits, nv * 4), *d_loss = cuda_alloc((size_t)N * 4);
        float *d_loss_f = cuda_alloc((size_t)N * 4);
        g_tot[r] = xent_forward_backward_cuda(d_dl, d_loss, d_tg, N, V, dscale, ignore_index);
        g_tot_f[r] = xent_forward_cuda(d_loss_f, d_logits, d_tg, N, V, ignore_index);
        if (r == 0)
            g_tot_null = xent_forward_cuda(NULL, d_logits, d_tg, N, V, ignore_index);
        g_dl[r] = host_from(d_dl, nv * 4);
        g_loss[r] = host_from(d_loss, (size_t)N * 4);
        g_loss_f[r] = host_from(d_loss_f, (size_t)N * 4);
        cuda_free(d_dl), cuda_free(d_loss), cuda_free(d_loss_f);
    }
    /* the forward-only kernel must leave the logits untouched */
    float *after = host_from(d_logits, nv * 4);
    EXPECT_CLOSE("xent dlogits", g_dl[0], HW_F32, dl, HW_F32, nv, TOL_F32);
    EXPECT_CLOSE("xent losses", g_loss[0], HW_F32, loss, HW_F32, N, TOL_F32);
    EXPECT_SCALAR("xent sum", g_tot[0], tot, TOL_F32);
    EXPECT_CLOSE("xent_fwd losses", g_loss_f[0], HW_F32, loss_f, HW_F32, N, TOL_F32);
    EXPECT_SCALAR("xent_fwd sum", g_tot_f[0], tot_f, TOL_F32);
    EXPECT_SCALAR("xent_fwd sum/0", g_tot_null, tot_f, TOL_F32);
    EXPECT_SAME("xent_fwd logits", after, logits, HW_F32, nv);
    EXPECT_SAME("xent dlogits", g_dl[0], g_dl[1], HW_F32, nv);
    EXPECT_SAME("xent losses", g_loss[0], g_loss[1], HW_F32, N);
    EXPECT_SAME_SCALAR("xent sum", g_tot[0], g_tot[1]);
    EXPECT_SAME_SCALAR("xent_fwd sum", g_tot_f[0], g_tot_f[1]);
    for (int r = 0; r < 2; r++)
        free(g_dl[r]), free(g_loss[r]), free(g_loss_f[r]);
    cuda_free(d_tg), cuda_free(d_logits);
    free(after), free(logits), free(tg), free(dl), free(loss), free(loss_f);
}

/* ---- embeddings, scatters, residual --------------------------------------------------------- */

static void test_embed(int N, int C, int V) {
    WHAT("N=%d C=%d V=%d", N, C, V);
    size_t vc = (size_t)V * C, nc = (size_t)N * C;
    float *wte = rand_f32(vc, 1), *dout = rand_f32(nc, 1), *dwte0 = rand_f32(vc, 1);
    int32_t *tok = rand_i32(N, V);
    float *out = HW_MALLOC(nc * 4), *dwte = dup_host(dwte0, vc * 4);
    embed_forward_cpu(out, tok, wte, N, C, V);
    embed_backward_cpu(dwte, dout, tok, N, C, V);
    float *d_wte = dev_from(wte, vc * 4), *d_dout = dev_from(dout, nc * 4);
    int32_t *d_tok = dev_from(tok, (size_t)N * 4);
    float *g_out[2], *g_dw[2];
    for (int r = 0; r < 2; r++) {
        float *d_out = cuda_alloc(nc * 4), *d_dw = dev_from(dwte0, vc * 4);
        embed_forward_cuda(d_out, d_tok, d_wte, N, C, V);
        embed_backward_cuda(d_dw, d_dout, d_tok, N, C, V);
        g_out[r] = host_from(d_out, nc * 4);
        g_dw[r] = host_from(d_dw, vc * 4);
        cuda_free(d_out), cuda_free(d_dw);
    }
    EXPECT_CLOSE("embed_fwd", g_out[0], HW_F32, out, HW_F32, nc, TOL_F32);
    EXPECT_CLOSE("embed_bwd", g_dw[0], HW_F32, dwte, HW_F32, vc, TOL_F32);
    EXPECT_SAME("embed_fwd", g_out[0], g_out[1], HW_F32, nc);
    EXPECT_SAME("embed_bwd", g_dw[0], g_dw[1], HW_F32, vc);
    for (int r = 0; r < 2; r++)
        free(g_out[r]), free(g_dw[r]);
    cuda_free(d_wte), cuda_free(d_dout), cuda_free(d_tok);
    free(wte), free(dout), free(dwte0), free(tok), free(out), free(dwte);
}

static void test_scatter_f64(int n, int dim, int rows) {
    WHAT("n=%d dim=%d rows=%d", n, dim, rows);
    size_t dd = (size_t)rows * dim, nd = (size_t)n * dim;
    float *dst0 = rand_f32(dd, 1), *dst = dup_host(dst0, dd * 4);
    double *src = rand_f64(nd, 1);
    int32_t *ids = rand_i32(n, rows);
    rows_scatter_add_f64_cpu(dst, ids, n, dim, src);
    double *d_src = dev_from(src, nd * 8);
    int32_t *d_ids = dev_from(ids, (size_t)n * 4);
    float *g[2];
    for (int r = 0; r < 2; r++) {
        float *d_dst = dev_from(dst0, dd * 4);
        rows_scatter_add_f64_cuda(d_dst, d_ids, n, dim, d_src);
        g[r] = host_from(d_dst, dd * 4);
        cuda_free(d_dst);
    }
    EXPECT_CLOSE("rows_scatter_f64", g[0], HW_F32, dst, HW_F32, dd, TOL_F32);
    EXPECT_SAME("rows_scatter_f64", g[0], g[1], HW_F32, dd);
    free(g[0]), free(g[1]);
    cuda_free(d_src), cuda_free(d_ids);
    free(dst0), free(dst), free(src), free(ids);
}

/* offset: elements by which a, b, out start past an aligned base (misaligned float4) */
static void test_residual(int64_t n, int offset, int alias) {
    WHAT("n=%lld offset=%d out==a=%d", (long long)n, offset, alias);
    size_t tot = (size_t)n + 4;
    float *a = rand_f32(tot, 1), *b = rand_f32(tot, 1), *o0 = rand_f32(tot, 1);
    float *ref = dup_host(alias ? a : o0, tot * 4);
    residual_add_cpu(ref + offset, (alias ? ref : a) + offset, b + offset, n);
    float *d_b = dev_from(b, tot * 4), *g[2];
    for (int r = 0; r < 2; r++) {
        float *d_a = dev_from(a, tot * 4), *d_o = alias ? d_a : dev_from(o0, tot * 4);
        residual_add_cuda(d_o + offset, d_a + offset, d_b + offset, n);
        g[r] = host_from(d_o, tot * 4);
        cuda_free(d_a);
        if (!alias)
            cuda_free(d_o);
    }
    /* the whole buffer: nothing outside [offset, offset + n) may change */
    EXPECT_CLOSE("residual_add", g[0], HW_F32, ref, HW_F32, tot, TOL_F32);
    EXPECT_SAME("residual_add", g[0], g[1], HW_F32, tot);
    free(g[0]), free(g[1]);
    cuda_free(d_b);
    free(a), free(b), free(o0), free(ref);
}

/* ---- AdamW and sums of squares -------------------------------------------------------------- */

static void test_adamw(size_t n, int offset, int t, float wd, float grad_scale) {
    WHAT("n=%zu offset=%d t=%d wd=%g grad_scale=%g", n, offset, t, wd, grad_scale);
    size_t tot = n + (size_t)offset;
    float *p0 = rand_f32(tot, 1), *m0 = rand_f32(tot, 0.1f), *v0 = rand_f32(tot, 0.01f);
    float *g = rand_f32(tot, 1);
    for (size_t i = 0; i < tot; i++)
        v0[i] = fabsf(v0[i]);
    float *p = dup_host(p0, tot * 4), *m = dup_host(m0, tot * 4), *v = dup_host(v0, tot * 4);
    const float lr = 3e-3f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f;
    adamw_update_cpu(p + offset, m + offset, v + offset, g + offset, n, lr, b1, b2, eps, wd, t,
                     grad_scale);
    float *d_g = dev_from(g, tot * 4), *gp[2], *gm[2], *gv[2];
    for (int r = 0; r < 2; r++) {
        float *d_p = dev_from(p0, tot * 4), *d_m = dev_from(m0, tot * 4),
              *d_v = dev_from(v0, tot * 4);
        adamw_update_cuda(d_p + offset, d_m + offset, d_v + offset, d_g + offset, n, lr, b1, b2,
                          eps, wd, t, grad_scale);
        gp[r] = host_from(d_p, tot * 4);
        gm[r] = host_from(d_m, tot * 4);
        gv[r] = host_from(d_v, tot * 4);
        cuda_free(d_p), cuda_free(d_m), cuda_free(d_v);
    }
    EXPECT_CLOSE("adamw p", gp[0], HW_F32, p, HW_F32, tot, TOL_F32);
    EXPECT_CLOSE("adamw m", gm[0], HW_F32, m, HW_F32, tot, TOL_F32);
    EXPECT_CLOSE("adamw v", gv[0], HW_F32, v, HW_F32, tot, TOL_F32);
    EXPECT_SAME("adamw p", gp[0], gp[1], HW_F32, tot);
    EXPECT_SAME("adamw m", gm[0], gm[1], HW_F32, tot);
    EXPECT_SAME("adamw v", gv[0], gv[1], HW_F32, tot);
    for (int r = 0; r < 2; r++)
        free(gp[r]), free(gm[r]), free(gv[r]);
    cuda_free(d_g);
    free(p0), free(m0), free(v0), free(g), free(p), free(m), free(v);
}

static void test_sumsq(size_t n, int offset) {
    WHAT("n=%zu offset=%d", n, offset);
    float *x = rand_f32(n + (size_t)offset, 3);
    double ref = sumsq_cpu(x + offset, n);
    float *d_x = dev_from(x, (n + (size_t)offset) * 4);
    double g0 = sumsq_cuda(d_x + offset, n), g1 = sumsq_cuda(d_x + offset, n);
    EXPECT_SCALAR("sumsq", g0, ref, TOL_SUM);
    EXPECT_SAME_SCALAR("sumsq", g0, g1);
    cuda_free(d_x);
    free(x);
}

/* ---- Mixture-of-Head router and gates ---------------------------------------------------------
 */

/* One layer's router on N tokens of B sequences: gates forward (from random logits, or from the
 * query norms of random q rows for qnorm), balance sums, backward with the balance term, the
 * gating of a head slice (Hl heads from h0) and its backward, the query norms' backward, the
 * row lists. Each op is compared on the same inputs (the GPU backward and row lists get the CPU
 * router state, so a last-bit difference cannot flip a top-k choice between the two). */
static void test_moh(int B, int T, int H, int hs, int k, int literal, int qnorm, int Hl, int h0,
                     int hd, float bal) {
    WHAT("B=%d T=%d H=%d hs=%d k=%d%s%s Hl=%d h0=%d hd=%d bal=%g", B, T, H, hs, k,
         literal ? " literal" : "", qnorm ? " qnorm" : "", Hl, h0, hd, bal);
    const int N = B * T;
    struct moh_spec sp;
    moh_spec_init(&sp, H, hs, k, literal, qnorm);
    const int E = sp.E, nr = moh_nr(&sp), ns = moh_ns(&sp), nh = moh_nh(&sp);
    const size_t nf = moh_state_floats(&sp, N), ni = moh_state_ints(&sp, N) + 1;
    struct moh_heads hh = {.Hl = Hl, .h0 = h0, .H = H, .hd = hd};
    const int ld = (Hl + 2) * hd + 3; /* q rows of a qkv buffer with room for k, v and a pad */
    float *f = HW_CALLOC(nf, sizeof(float));
    int32_t *iv = HW_CALLOC(ni, sizeof(int32_t));
    struct moh_state st;
    moh_state_carve(&st, &sp, N, f, iv);
    float *qkv = rand_f32((size_t)N * ld, 1);
    if (qnorm) {
        /* raw norms of every routed head (the test plays all head ranks at once) */
        const struct moh_heads all = {.Hl = H, .h0 = 0, .H = H, .hd = 4};
        float *q4 = rand_f32((size_t)N * H * 4, 1);
        moh_qnorm_forward_cpu(st.qraw, q4, H * 4, N, E, hs, &all);
        free(q4);
    } else {
        float *z = rand_f32((size_t)N * (nr + ns + nh), 3);
        memcpy(st.zr, z, sizeof(float) * (size_t)N * nr);
        memcpy(st.zs, z + (size_t)N * nr, sizeof(float) * (size_t)N * ns);
        memcpy(st.zh, z + (size_t)N * (nr + ns), sizeof(float) * (size_t)N * nh);
        free(z);
    }
    float *f_in = dup_host(f, nf * 4); /* the logits (or raw norms) before the forward */
    moh_router_forward_cpu(&sp, N, &st);
    double *psum = HW_CALLOC(2 * (size_t)E + 1, sizeof(double)), *fsum = psum + E;
    moh_balance_sums_cpu(&sp, N, &st, psum, fsum);
    const double ntok = N;
    float *dG = rand_f32((size_t)N * H, 1);
    float *dz = HW_CALLOC((size_t)N * (nr + ns + nh) + 1, sizeof(float));
    moh_router_backward_cpu(&sp, N, &st, dG, bal, fsum, ntok, dz, dz + (size_t)N * nr,
                            dz + (size_t)N * (nr + ns));
    const size_t na = (size_t)N * Hl * hd;
    float *att = rand_f32(na, 1), *datt0 = rand_f32(na, 1), *gated = HW_MALLOC(na * 4);
    float *datt = dup_host(datt0, na * 4), *dGl = HW_MALLOC((size_t)N * H * 4);
    moh_gate_forward_cpu(gated, att, st.G, N, &hh);
    moh_gate_backward_cpu(datt, dGl, att, st.G, N, &hh);
    float *qraw = HW_MALLOC((size_t)N * (E ? E : 1) * 4), *dqkv0 = rand_f32((size_t)N * ld, 1);
    float *dqkv = dup_host(dqkv0, (size_t)N * ld * 4), *dzq = rand_f32((size_t)N * E + 1, 1);
    moh_qnorm_forward_cpu(qraw, qkv, ld, N, E, hs, &hh);
    moh_qnorm_backward_cpu(dqkv, dzq, qraw, qkv, ld, N, E, hs, &hh);
    int32_t *idx = HW_MALLOC((size_t)N * Hl * 4 + 4), *off = HW_MALLOC(((size_t)B * Hl + 1) * 4);
    moh_select_rows_cpu(idx, off, &sp, st.sel, B, T, &hh);

    /* the GPU, twice */
    float *g_f[2], *g_dz[2], *g_gated[2], *g_datt[2], *g_dG[2], *g_qraw[2], *g_dqkv[2];
    int32_t *g_i[2], *g_idx[2], *g_off[2];
    double g_sums[2][2 * 64];
    HW_ASSERT(E <= 64);
    float *d_dG = dev_from(dG, (size_t)N * H * 4), *d_att = dev_from(att, na * 4);
    float *d_qkv = dev_from(qkv, (size_t)N * ld * 4), *d_dzq = dev_from(dzq, (size_t)N * E * 4 + 4);
    float *d_fref = dev_from(f, nf * 4);
    int32_t *d_iref = dev_from(iv, ni * 4);
    struct moh_state dref; /* the CPU router state on the device */
    moh_state_carve(&dref, &sp, N, d_fref, d_iref);
    for (int r = 0; r < 2; r++) {
        float *d_f = dev_from(f_in, nf * 4);
        int32_t *d_i = cuda_alloc(ni * 4);
        struct moh_state ds;
        moh_state_carve(&ds, &sp, N, d_f, d_i);
        moh_router_forward_cuda(&sp, N, &ds);
        memset(g_sums[r], 0, sizeof(g_sums[r]));
        moh_balance_sums_cuda(&sp, N, &dref, g_sums[r], g_sums[r] + E);
        float *d_dz = cuda_alloc(((size_t)N * (nr + ns + nh) + 1) * 4);
        moh_router_backward_cuda(&sp, N, &dref, d_dG, bal, fsum, ntok, d_dz, d_dz + (size_t)N * nr,
                                 d_dz + (size_t)N * (nr + ns));
        float *d_gated = cuda_alloc(na * 4), *d_datt = dev_from(datt0, na * 4);
        float *d_dGl = dev_from(dG, (size_t)N * H * 4); /* garbage the op must clear */
        moh_gate_forward_cuda(d_gated, d_att, dref.G, N, &hh);
        moh_gate_backward_cuda(d_datt, d_dGl, d_att, dref.G, N, &hh);
        float *d_qraw = dev_from(dG, (size_t)N * (E ? E : 1) * 4); /* garbage, E <= H */
        float *d_dqkv = dev_from(dqkv0, (size_t)N * ld * 4);
        moh_qnorm_forward_cuda(d_qraw, d_qkv, ld, N, E, hs, &hh);
        moh_qnorm_backward_cuda(d_dqkv, d_dzq, d_qraw, d_qkv, ld, N, E, hs, &hh);
        int32_t *d_idx = cuda_alloc((size_t)N * Hl * 4 + 4);
        int32_t *d_off = cuda_alloc(((size_t)B * Hl + 1) * 4);
        moh_select_rows_cuda(d_idx, d_off, &sp, dref.sel, B, T, &hh);
        g_f[r] = host_from(d_f, nf * 4);
        g_i[r] = host_from(d_i, ni * 4);
        g_dz[r] = host_from(d_dz, ((size_t)N * (nr + ns + nh) + 1) * 4);
        g_gated[r] = host_from(d_gated, na * 4);
        g_datt[r] = host_from(d_datt, na * 4);
        g_dG[r] = host_from(d_dGl, (size_t)N * H * 4);
        g_qraw[r] = host_from(d_qraw, (size_t)N * E * 4);
        g_dqkv[r] = host_from(d_dqkv, (size_t)N * ld * 4);
        g_off[r] = host_from(d_off, ((size_t)B * Hl + 1) * 4);
        g_idx[r] = host_from(d_idx, (size_t)N * Hl * 4 + 4);
        cuda_free(d_f), cuda_free(d_i), cuda_free(d_dz), cuda_free(d_gated), cuda_free(d_datt);
        cuda_free(d_dGl), cuda_free(d_qraw), cuda_free(d_dqkv), cuda_free(d_idx), cuda_free(d_off);
    }
    struct moh_state gs;
    moh_state_carve(&gs, &sp, N, g_f[0], g_i[0]);
    if (qnorm) {
        EXPECT_CLOSE("moh qnorm z", gs.zr, HW_F32, st.zr, HW_F32, (size_t)N * E, TOL_F32);
        EXPECT_CLOSE("moh qnorm std", gs.qstd, HW_F32, st.qstd, HW_F32, (size_t)N, TOL_F32);
    }
    if (k > 0) {
        EXPECT_CLOSE("moh p", gs.p, HW_F32, st.p, HW_F32, (size_t)N * E, TOL_F32);
        EXPECT_CLOSE("moh sel", gs.sel, HW_I32, st.sel, HW_I32, (size_t)N * k, 0.0);
    }
    if (ns)
        EXPECT_CLOSE("moh ps", gs.ps, HW_F32, st.ps, HW_F32, (size_t)N * ns, TOL_F32);
    if (nh)
        EXPECT_CLOSE("moh a", gs.a, HW_F32, st.a, HW_F32, (size_t)N * nh, TOL_F32);
    EXPECT_CLOSE("moh G", gs.G, HW_F32, st.G, HW_F32, (size_t)N * H, TOL_F32);
    if (k > 0) {
        EXPECT_CLOSE("moh psum", g_sums[0], HW_F64, psum, HW_F64, (size_t)E, TOL_SUM);
        EXPECT_CLOSE("moh fsum", g_sums[0] + E, HW_F64, fsum, HW_F64, (size_t)E, 0.0);
        EXPECT_SAME("moh sums", g_sums[0], g_sums[1], HW_F64, 2 * (size_t)E);
    }
    EXPECT_CLOSE("moh router bwd", g_dz[0], HW_F32, dz, HW_F32, (size_t)N * (nr + ns + nh),
                 TOL_F32);
    EXPECT_CLOSE("moh gate fwd", g_gated[0], HW_F32, gated, HW_F32, na, TOL_F32);
    EXPECT_CLOSE("moh gate datt", g_datt[0], HW_F32, datt, HW_F32, na, TOL_F32);
    EXPECT_CLOSE("moh gate dG", g_dG[0], HW_F32, dGl, HW_F32, (size_t)N * H, TOL_F32);
    if (E > 0) {
        EXPECT_CLOSE("moh qnorm fwd", g_qraw[0], HW_F32, qraw, HW_F32, (size_t)N * E, TOL_F32);
        EXPECT_CLOSE("moh qnorm bwd", g_dqkv[0], HW_F32, dqkv, HW_F32, (size_t)N * ld, TOL_F32);
    }
    EXPECT_CLOSE("moh row offsets", g_off[0], HW_I32, off, HW_I32, (size_t)B * Hl + 1, 0.0);
    EXPECT_CLOSE("moh row lists", g_idx[0], HW_I32, idx, HW_I32, (size_t)off[B * Hl], 0.0);
    EXPECT_SAME("moh router fwd", g_f[0], g_f[1], HW_F32, nf);
    EXPECT_SAME("moh router sel", g_i[0], g_i[1], HW_I32, ni);
    EXPECT_SAME("moh router bwd", g_dz[0], g_dz[1], HW_F32, (size_t)N * (nr + ns + nh));
    EXPECT_SAME("moh gate dG", g_dG[0], g_dG[1], HW_F32, (size_t)N * H);
    EXPECT_SAME("moh qnorm fwd", g_qraw[0], g_qraw[1], HW_F32, (size_t)N * E);
    EXPECT_SAME("moh row lists", g_idx[0], g_idx[1], HW_I32, (size_t)off[B * Hl]);
    for (int r = 0; r < 2; r++) {
        free(g_f[r]), free(g_i[r]), free(g_dz[r]), free(g_gated[r]), free(g_datt[r]);
        free(g_dG[r]), free(g_qraw[r]), free(g_dqkv[r]), free(g_idx[r]), free(g_off[r]);
    }
    cuda_free(d_dG), cuda_free(d_att), cuda_free(d_qkv), cuda_free(d_dzq), cuda_free(d_fref);
    cuda_free(d_iref);
    free(f), free(iv), free(qkv), free(f_in), free(psum), free(dG), free(dz), free(att);
    free(datt0), free(gated), free(datt), free(dGl), free(qraw), free(dqkv0), free(dqkv), free(dzq);
    free(idx), free(off);
}

/* Events order the two streams: bytes set on the compute stream are copied to pinned host memory
 * on the communication stream after an event, and back; run twice. */
static void test_streams(size_t n) {
    WHAT("n=%zu bytes", n);
    const struct ops *o = ops_for(BACKEND_CUDA);
    unsigned char *hb = o->host_alloc(n), *back = HW_MALLOC(n);
    unsigned char *d = o->alloc(n), *d2 = o->alloc(n);
    void *ev = o->event_new(), *ev2 = o->event_new();
    int bad = 0;
    for (int r = 0; r < 2; r++) {
        o->memset(d, 0x3c + r, n); /* compute stream */
        o->event_record(ev, OPS_STREAM_COMPUTE);
        o->event_wait(OPS_STREAM_COMM, ev);
        o->copy_async(hb, d, n, OPS_STREAM_COMM); /* device -> pinned host */
        o->event_record(ev2, OPS_STREAM_COMM);
        o->event_sync(ev2);
        for (size_t i = 0; i < n; i++)
            bad += hb[i] != (unsigned char)(0x3c + r);
        for (size_t i = 0; i < n; i++)
            hb[i] = (unsigned char)(i * 7 + r);
        o->copy_async(d2, hb, n, OPS_STREAM_COMM); /* pinned host -> device */
        o->event_record(ev2, OPS_STREAM_COMM);
        o->event_wait(OPS_STREAM_COMPUTE, ev2);
        o->download(back, d2, n); /* compute stream, after the event */
        for (size_t i = 0; i < n; i++)
            bad += back[i] != (unsigned char)(i * 7 + r);
    }
    check_total_++;
    if (bad) {
        check_failed_++;
        fprintf(stderr, "%s:%d: FAIL streams [%s]: %d bytes wrong\n", __FILE__, __LINE__, g_what,
                bad);
    } else {
        printf("  ok  %-16s %-58s\n", "streams/events", g_what);
    }
    o->event_free(ev), o->event_free(ev2);
    o->free(d), o->free(d2), o->host_free(hb);
    free(back);
}

/* mem_stats counts cuda_alloc's bytes exactly (host_alloc not), and the peak resets */
static void test_mem_stats(void) {
    WHAT("3 MiB + 1 MiB");
    const struct ops *o = ops_for(BACKEND_CUDA);
    size_t base, now, peak, after;
    o->mem_stats(&base, &peak, 1);
    void *a = o->alloc((size_t)3 << 20), *h = o->host_alloc((size_t)1 << 20);
    o->mem_stats(&now, &peak, 0);
    void *b = o->alloc((size_t)1 << 20);
    o->free(a);
    o->mem_stats(&after, NULL, 0);
    size_t peak2;
    o->mem_stats(NULL, &peak2, 1);
    o->free(b), o->host_free(h);
    size_t end;
    o->mem_stats(&end, NULL, 0);
    check_total_++;
    if (now != base + ((size_t)3 << 20) || peak != now || after != base + ((size_t)1 << 20) ||
        peak2 != after || end != base) {
        check_failed_++;
        fprintf(stderr,
                "%s:%d: FAIL mem_stats: base %zu now %zu peak %zu after %zu peak2 %zu end %zu\n",
                __FILE__, __LINE__, base, now, peak, after, peak2, end);
    } else {
        printf("  ok  %-16s %-58s\n", "mem_stats", g_what);
    }
    char desc[128];
    o->select_device(0, 2 * cuda_device_count(), desc, sizeof(desc));
    check_total_++;
    if (strncmp(desc, "cuda:0 ", 7) != 0 || !strchr(desc, '(')) {
        check_failed_++;
        fprintf(stderr, "%s:%d: FAIL select_device: \"%s\"\n", __FILE__, __LINE__, desc);
    } else {
        printf("  ok  %-16s %-58s\n", "select_device", desc);
    }
}

static void print_device(void) {
    struct cudaDeviceProp p;
    int dev = 0, rt = 0, drv = 0;
    cudaGetDevice(&dev);
    if (cudaGetDeviceProperties(&p, dev) != cudaSuccess)
        return;
    cudaRuntimeGetVersion(&rt);
    cudaDriverGetVersion(&drv);
    printf("device %d: %s, sm_%d%d, %d SMs, %.1f GiB; runtime %d, driver %d\n", dev, p.name,
           p.major, p.minor, p.multiProcessorCount, p.totalGlobalMem / 1073741824.0, rt, drv);
}

static void run_all(void) {
    print_device();
    test_gemms();

    printf("rmsnorm\n");
    test_rmsnorm(33, 100);
    test_rmsnorm(64, 768);
    test_rmsnorm(7, 5);
    test_rmsnorm(130, 4100);
    if (!g_quick)
        test_rmsnorm(270001, 3); /* more than 4096 chunks of 64 rows: wider chunks */

    printf("rope\n");
    test_rope(2, 7, 3, 6, 23, 3, 2);
    test_rope(3, 33, 4, 64, 6 * 64 + 3, 0, 1);
    test_rope(1, 5, 2, 128, 256, 1000, 1);

    printf("activations\n");
    test_act(13, 37);
    test_act(64, 1024);
    test_act(3, 100003);
    test_sigmoid_gate(1001, 0);
    test_sigmoid_gate(4099, 1);

    printf("cross-entropy\n");
    test_xent(19, 1000, XENT_IGNORE, 3, 4.0f);
    test_xent(8, 50257, -100, 1, 8.0f);
    test_xent(5, 3, XENT_IGNORE, 0, 1.0f);
    test_xent(64, 8192, XENT_IGNORE, 5, 2.0f);
    test_xent(4, 1000, XENT_IGNORE, 4, 1.0f); /* every row ignored */

    printf("embeddings, scatters, residual\n");
    test_embed(77, 37, 13);
    if (!g_quick)
        test_embed(512, 256, 50257);
    test_embed(1000, 130, 3);
    test_embed(1, 4, 1);
    test_scatter_f64(50, 19, 7);
    test_scatter_f64(300, 64, 1000);
    test_residual(1001, 0, 0);
    test_residual(1001, 0, 1);
    test_residual(1000, 1, 0);
    test_residual(1000, 3, 1);
    test_residual(3, 0, 0);

    printf("Mixture-of-Head router and gates\n");
    test_moh(2, 37, 8, 2, 2, 0, 0, 8, 0, 16, 0.01f);   /* reference form, shared + routed */
    test_moh(3, 33, 8, 2, 3, 1, 0, 4, 4, 24, 0.02f);   /* paper_literal, a head slice */
    test_moh(2, 65, 6, 1, 2, 0, 0, 3, 3, 64, 0.0f);    /* one shared head, no balance */
    test_moh(2, 41, 8, 0, 3, 0, 0, 2, 2, 32, 0.01f);   /* routed only */
    test_moh(1, 50, 4, 4, 0, 0, 0, 4, 0, 16, 0.0f);    /* k = 0: every head shared */
    test_moh(2, 300, 12, 4, 4, 0, 1, 6, 6, 64, 0.01f); /* qnorm router, T past one tile */
    test_moh(1, 7, 5, 1, 1, 0, 1, 5, 0, 8, 0.0f);      /* qnorm, k = 1, odd sizes */

    printf("streams and events\n");
    test_streams(1000);
    test_streams((size_t)64 << 20);
    test_mem_stats();

    printf("adamw, sumsq\n");
    test_adamw(100003, 0, 1, 0.1f, 1.0f);
    test_adamw(100003, 0, 7, 0.1f, 0.7f);
    test_adamw(999, 1, 3, 0.0f, 0.5f); /* a ZeRO-like slice at an odd offset */
    test_sumsq(1, 0);
    test_sumsq(1000, 1);
    test_sumsq(1000003, 0);
    if (!g_quick)
        test_sumsq(20000000, 3); /* more elements than one sweep of the fixed grid */
}
#endif /* HW_CUDA */

int main(void) {
#ifndef HW_CUDA
    printf("SKIP test_ops_cuda: built without CUDA\n");
    return 77;
#else
    if (cuda_device_count() == 0) {
        printf("SKIP test_ops_cuda: no CUDA device found\n");
        return 77;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *q = getenv("HW_TEST_QUICK");
    g_quick = q && atoi(q) == 1;
    run_all();
    cuda_ctx_free();
    return check_report("test_ops_cuda");
#endif
}
