/* ops/titans_cuda.cu -- the Titans memory's kernels on the GPU (titans_ops.h), fp32 only: the
 * elementwise ones one thread per element in grid-stride loops, row reductions one warp per row,
 * the conv one thread per output (its sums in the CPU's order), the scans one thread per weight
 * (sequential over the chunks), the reverse of a TTT batch's state steps and the clamp one block
 * (block reductions). Each element follows the CPU's formula (titans_cpu_body.h) term for term;
 * sums over rows or features are reordered, and an element may round differently by an ulp or
 * so (nvcc fuses multiply-adds; the device's expf/erff are not glibc's): the tests compare with
 * tolerances. Everything runs on the compute stream. */
#include "adamw.h" /* sumsq_cuda: the non-finite check */
#include "cuda_common.cuh"
#include "titans_ops.h"

#include <math.h>

#define TT_THREADS 256
#define TT_MAX_L   8 /* TITANS_MAX_DEPTH */

// ----------------------------------------------------------------------------------------------
// device helpers

__device__ __forceinline__ float tt_sig(float z) {
    return 1.0f / (1.0f + expf(-z));
}
__device__ __forceinline__ float tt_npdf(float h) {
    return 0.39894228040143267794f * expf(-0.5f * h * h);
}
__device__ __forceinline__ float tt_gelu(float h) {
    return 0.5f * h * (1.0f + erff(h * 0.70710678118654752440f));
}
__device__ __forceinline__ float tt_gelu1(float h) {
    return 0.5f * (1.0f + erff(h * 0.70710678118654752440f)) + h * tt_npdf(h);
}
__device__ __forceinline__ float tt_gelu2(float h) {
    return tt_npdf(h) * (2.0f - h * h);
}

#define GRID_LOOP(i, n)                                                                            \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n);                        \
         i += (size_t)gridDim.x * blockDim.x)

// ----------------------------------------------------------------------------------------------
// CUDA kernels

__global__ void tt_unary_kernel(int op, size_t n, const float *x, float *y) {
    GRID_LOOP(i, n) {
        float v = op == TT_ONE ? 0.0f : x[i];
        switch (op) {
        case TT_GELU:
            y[i] = tt_gelu(v);
            break;
        case TT_SIGMOID:
            y[i] = tt_sig(v);
            break;
        case TT_SILU:
            y[i] = v * tt_sig(v);
            break;
        case TT_NEG:
            y[i] = -v;
            break;
        default:
            y[i] = 1.0f;
            break;
        }
    }
}

__global__ void tt_mul_gelu1_kernel(size_t n, const float *u, const float *h, float *r, int acc) {
    GRID_LOOP(i, n) {
        float v = u[i] * tt_gelu1(h[i]);
        r[i] = acc ? r[i] + v : v;
    }
}

__global__ void tt_gelu2_rev_kernel(size_t n, const float *h, const float *rb, float *u,
                                    float *hb) {
    GRID_LOOP(i, n) {
        float hv = h[i], r = rb[i];
        hb[i] += r * u[i] * tt_gelu2(hv);
        u[i] = r * tt_gelu1(hv);
    }
}

__global__ void tt_silu_bwd_kernel(size_t n, const float *z, float *a) {
    GRID_LOOP(i, n) {
        float sg = tt_sig(z[i]);
        a[i] *= sg * (1.0f + z[i] * (1.0f - sg));
    }
}

__global__ void tt_gate_fwd_kernel(size_t n, int H, float scale, const float *b, float *z) {
    GRID_LOOP(i, n) {
        float v = z[i];
        z[i] = scale * tt_sig(b ? v + b[i % H] : v);
    }
}

__global__ void tt_gate_bwd_kernel(size_t n, float scale, const float *val, const float *gb,
                                   float *zb) {
    GRID_LOOP(i, n) {
        float s = val[i] / scale;
        zb[i] = gb[i] * scale * s * (1.0f - s);
    }
}

__global__ void tt_resid_kernel(size_t n, int D, float f, const float *th, const float *p,
                                const float *v, float *r) {
    GRID_LOOP(i, n) {
        float ft = f * th[i / D];
        r[i] = ft * (p[i] - v[i]);
    }
}

/* one block per row */
__global__ void tt_resid_rev_kernel(int D, float f, const float *th, const float *p, const float *v,
                                    const float *rb, float *hb, float *dv, size_t lddv, float *dth,
                                    size_t lddth) {
    const size_t row = blockIdx.x, o = row * (size_t)D;
    const float ft = f * th[row];
    float tb = 0.0f;
    for (int j = threadIdx.x; j < D; j += blockDim.x) {
        float g = rb[o + j];
        tb += (p[o + j] - v[o + j]) * g;
        hb[o + j] += ft * g;
        dv[row * lddv + j] -= ft * g;
    }
    tb = hw_block_sum(tb);
    if (threadIdx.x == 0)
        dth[row * lddth] += f * tb;
}

/* one thread per output (t, j); the taps in the CPU's order */
__global__ void tt_conv_fwd_kernel(int n, int C, int K, const float *z, const float *cw,
                                   float *out) {
    GRID_LOOP(i, (size_t)n * C) {
        size_t t = i / C, j = i % C;
        float o = 0.0f;
        for (int sl = 0; sl < K; sl++)
            o += cw[(size_t)sl * C + j] * z[(t + K - 1 - sl) * C + j];
        out[i] = o;
    }
}

/* dz row zr gets the taps (i = zr - (K-1) + sl) in increasing i, as the CPU adds them */
__global__ void tt_conv_bwd_dz_kernel(int n, int C, int K, const float *cw, const float *a,
                                      float *dz) {
    GRID_LOOP(idx, (size_t)(n + K - 1) * C) {
        long zr = (long)(idx / C);
        size_t j = idx % C;
        float s = dz[idx];
        for (int sl = 0; sl < K; sl++) {
            long i = zr - (K - 1) + sl;
            if (i >= 0 && i < n)
                s += cw[(size_t)sl * C + j] * a[(size_t)i * C + j];
        }
        dz[idx] = s;
    }
}

/* dcw (sl, j) sums over the rows in order */
__global__ void tt_conv_bwd_dcw_kernel(int n, int C, int K, const float *z, const float *a,
                                       float *dcw) {
    GRID_LOOP(idx, (size_t)K * C) {
        size_t sl = idx / C, j = idx % C;
        float s = dcw[idx];
        for (int i = 0; i < n; i++)
            s += z[((size_t)i + K - 1 - sl) * C + j] * a[(size_t)i * C + j];
        dcw[idx] = s;
    }
}

/* one warp per row */
/* rows handed out to warps in a grid-stride loop (the loop test is the same for a warp's lanes,
 * so the shuffles always run with the whole warp) */
#define WARP_ROWS(row, rows)                                                                       \
    for (size_t row = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) / 32; row < (size_t)(rows);  \
         row += (size_t)gridDim.x * blockDim.x / 32)

__global__ void tt_l2n_fwd_kernel(int rows, int D, float *x, float *nrm) {
    const int lane = threadIdx.x % 32;
    WARP_ROWS(row, rows) {
        float *r = x + row * D, s = 0.0f;
        for (int j = lane; j < D; j += 32)
            s += r[j] * r[j];
        s = sqrtf(hw_warp_sum(s));
        if (lane == 0)
            nrm[row] = s;
        float inv = 1.0f / (s > 1e-6f ? s : 1e-6f);
        for (int j = lane; j < D; j += 32)
            r[j] *= inv;
    }
}

__global__ void tt_l2n_bwd_kernel(int rows, int D, const float *post, const float *nrm, float *a) {
    const int lane = threadIdx.x % 32;
    WARP_ROWS(row, rows) {
        size_t o = row * D;
        float nv = nrm[row];
        if (nv <= 1e-6f) { /* clamped: a plain scale (the same branch for the whole warp) */
            for (int j = lane; j < D; j += 32)
                a[o + j] /= 1e-6f;
            continue;
        }
        float pr = 0.0f;
        for (int j = lane; j < D; j += 32)
            pr += post[o + j] * a[o + j];
        pr = hw_warp_sum(pr);
        for (int j = lane; j < D; j += 32)
            a[o + j] = (a[o + j] - post[o + j] * pr) / nv;
    }
}

/* one thread per (group, column): the rows in order */
__global__ void tt_group_sum_kernel(int groups, int rpg, int w, const float *x, float *out,
                                    int mode) {
    GRID_LOOP(idx, (size_t)groups * w) {
        size_t g = idx / w, j = idx % w;
        float s = mode == TT_SUM_ACC ? out[idx] : 0.0f;
        for (int r = 0; r < rpg; r++)
            s += x[(g * rpg + r) * w + j];
        out[idx] = mode == TT_SUM_MEAN ? s / (float)rpg : s;
    }
}

__global__ void tt_group_expand_kernel(int groups, int rpg, int w, const float *src, float *dst,
                                       int mode) {
    GRID_LOOP(idx, (size_t)groups * rpg * w) {
        size_t i = idx / w, j = idx % w;
        float s = src[(i / rpg) * w + j];
        dst[idx] = mode == TT_EXP_SET ? s : dst[idx] + s / (float)rpg;
    }
}

__global__ void tt_head_scale_kernel(size_t n, int D, const float *g, const float *x, float *y) {
    GRID_LOOP(i, n) {
        y[i] = g[i / D] * x[i];
    }
}

__global__ void tt_row_dot_kernel(int rows, int D, const float *a, const float *b, float *out) {
    const int lane = threadIdx.x % 32;
    WARP_ROWS(row, rows) {
        float s = 0.0f;
        for (int j = lane; j < D; j += 32)
            s += a[row * D + j] * b[row * D + j];
        s = hw_warp_sum(s);
        if (lane == 0)
            out[row] = s;
    }
}

__global__ void tt_add2d_kernel(int rows, int cols, float *dst, size_t ldd, const float *src,
                                size_t lds) {
    GRID_LOOP(idx, (size_t)rows * cols) {
        size_t i = idx / cols, j = idx % cols;
        dst[i * ldd + j] += src[i * lds + j];
    }
}

/* one thread per weight j, sequential over the n rows: the plain recurrence (the CPU associates
 * it in blocks for n >= 8; the same value up to rounding) */
__global__ void tt_scan_kernel(int n, size_t P, const float *a, size_t lda, int one_minus,
                               const float *x, size_t ldx, const float *prev, float *h,
                               size_t ldh) {
    GRID_LOOP(j, P) {
        float hp = prev ? prev[j] : 0.0f;
        for (int i = 0; i < n; i++) {
            float ai = one_minus ? 1.0f - a[(size_t)i * lda] : a[(size_t)i * lda];
            float v = (i > 0 || prev ? ai * hp : 0.0f) + x[(size_t)i * ldx + j];
            h[(size_t)i * ldh + j] = v;
            hp = v;
        }
    }
}

/* one block: the chunk steps of a TTT batch in reverse (titans_ops.h) */
__global__ void __launch_bounds__(1024)
    tt_states_rev_kernel(int m, size_t P, size_t ld, float *Wb, const float *W, const float *S,
                         const float *eta, const float *alpha, size_t lda, float *Sb, float *Gb,
                         float *deta, float *dal) {
    for (int r = m; r > 0; r--) {
        size_t gi = (size_t)(r - 1) * lda;
        float *Wbn = Wb + (size_t)r * ld, *Wbp = Wbn - ld;
        const float *Wp = W + (size_t)(r - 1) * ld, *Sp = S + (size_t)(r - 1) * ld;
        const float al = alpha[gi], et = eta[gi];
        float s = 0.0f;
        for (size_t j = threadIdx.x; j < P; j += blockDim.x)
            s += Wbn[j] * Wp[j];
        s = hw_block_sum(s);
        if (threadIdx.x == 0)
            dal[gi] = -s;
        float e = 0.0f;
        for (size_t j = threadIdx.x; j < P; j += blockDim.x) {
            float wb = Wbn[j];
            Wbp[j] += (1.0f - al) * wb;
            float sb = Sb[j] + wb;
            e += sb * Sp[j];
            Gb[(size_t)(r - 1) * P + j] = -sb;
            Sb[j] = sb * et;
        }
        e = hw_block_sum(e);
        if (threadIdx.x == 0)
            deta[gi] = e;
    }
}

struct tt_clamp_args {
    int L;
    size_t off[TT_MAX_L], numel[TT_MAX_L];
};

/* one block per tensor */
__global__ void __launch_bounds__(512)
    tt_clamp_kernel(struct tt_clamp_args c, float m, float *G, float *Gb, int bwd) {
    const int l = blockIdx.x;
    float *g = G + c.off[l];
    const size_t e = c.numel[l];
    float ss = 0.0f;
    for (size_t i = threadIdx.x; i < e; i += blockDim.x)
        ss += g[i] * g[i];
    const float nrm = sqrtf(hw_block_sum(ss));
    float s = 1.0f, ds = 0.0f;
    if (nrm > m) {
        ds = -m / (nrm * nrm);
        s = m / nrm;
    }
    if (!bwd) {
        for (size_t i = threadIdx.x; i < e; i += blockDim.x)
            g[i] *= s;
        return;
    }
    float *gb = Gb + c.off[l], d = 0.0f;
    for (size_t i = threadIdx.x; i < e; i += blockDim.x)
        d += g[i] * gb[i];
    d = hw_block_sum(d);
    const float k = nrm > 0.0f ? ds / nrm * d : 0.0f;
    for (size_t i = threadIdx.x; i < e; i += blockDim.x)
        gb[i] = s * gb[i] + k * g[i];
}

// ----------------------------------------------------------------------------------------------
// kernel launchers

static void f32_only(enum hw_dtype t) {
    if (t != HW_F32)
        hw_die_at(__FILE__, __LINE__, "titans kernels on the GPU: fp32 only (asked for %s)",
                  hw_dtype_name(t));
}
static cudaStream_t st(void) {
    return cuda_ctx()->stream;
}
#define LAUNCH1D(kernel, n, ...)                                                                   \
    do {                                                                                           \
        if ((n) > 0) {                                                                             \
            kernel<<<hw_grid1d((n), TT_THREADS), TT_THREADS, 0, st()>>>(__VA_ARGS__);              \
            HW_CHECK_LAUNCH();                                                                     \
        }                                                                                          \
    } while (0)
#define F(p)  ((float *)(p))
#define CF(p) ((const float *)(p))

static void cuda_unary(enum hw_dtype t, enum titans_unary op, size_t n, const void *x, void *y) {
    f32_only(t);
    LAUNCH1D(tt_unary_kernel, n, (int)op, n, CF(x), F(y));
}
static void cuda_mul_gelu1(enum hw_dtype t, size_t n, const void *u, const void *h, void *r,
                           int acc) {
    f32_only(t);
    LAUNCH1D(tt_mul_gelu1_kernel, n, n, CF(u), CF(h), F(r), acc);
}
static void cuda_gelu2_rev(enum hw_dtype t, size_t n, const void *h, const void *rb, void *u,
                           void *hb) {
    f32_only(t);
    LAUNCH1D(tt_gelu2_rev_kernel, n, n, CF(h), CF(rb), F(u), F(hb));
}
static void cuda_silu_bwd(enum hw_dtype t, size_t n, const void *z, void *a) {
    f32_only(t);
    LAUNCH1D(tt_silu_bwd_kernel, n, n, CF(z), F(a));
}
static void cuda_gate_fwd(enum hw_dtype t, int n, int H, double scale, const void *b, void *z) {
    f32_only(t);
    size_t e = (size_t)n * H;
    LAUNCH1D(tt_gate_fwd_kernel, e, e, H, (float)scale, CF(b), F(z));
}
static void cuda_gate_bwd(enum hw_dtype t, size_t n, double scale, const void *val, const void *gb,
                          void *zb) {
    f32_only(t);
    LAUNCH1D(tt_gate_bwd_kernel, n, n, (float)scale, CF(val), CF(gb), F(zb));
}
static void cuda_resid(enum hw_dtype t, int rows, int D, double f, const void *th, const void *p,
                       const void *v, void *r) {
    f32_only(t);
    size_t e = (size_t)rows * D;
    LAUNCH1D(tt_resid_kernel, e, e, D, (float)f, CF(th), CF(p), CF(v), F(r));
}
static void cuda_resid_rev(enum hw_dtype t, int rows, int D, double f, const void *th,
                           const void *p, const void *v, const void *rb, void *hb, void *dv,
                           size_t lddv, void *dth, size_t lddth) {
    f32_only(t);
    if (rows <= 0)
        return;
    int threads = D >= 128 ? 128 : 32;
    tt_resid_rev_kernel<<<rows, threads, 0, st()>>>(D, (float)f, CF(th), CF(p), CF(v), CF(rb),
                                                    F(hb), F(dv), lddv, F(dth), lddth);
    HW_CHECK_LAUNCH();
}
static void cuda_conv_fwd(enum hw_dtype t, int n, int C, int K, const void *z, const void *cw,
                          void *out) {
    f32_only(t);
    size_t e = (size_t)n * C;
    LAUNCH1D(tt_conv_fwd_kernel, e, n, C, K, CF(z), CF(cw), F(out));
}
static void cuda_conv_bwd(enum hw_dtype t, int n, int C, int K, const void *z, const void *cw,
                          const void *a, void *dz, void *dcw) {
    f32_only(t);
    size_t ez = (size_t)(n + K - 1) * C, ec = (size_t)K * C;
    LAUNCH1D(tt_conv_bwd_dz_kernel, ez, n, C, K, CF(cw), CF(a), F(dz));
    LAUNCH1D(tt_conv_bwd_dcw_kernel, ec, n, C, K, CF(z), CF(a), F(dcw));
}
static void cuda_l2n_fwd(enum hw_dtype t, int rows, int D, void *x, void *nrm) {
    f32_only(t);
    size_t th = (size_t)rows * 32;
    LAUNCH1D(tt_l2n_fwd_kernel, th, rows, D, F(x), F(nrm));
}
static void cuda_l2n_bwd(enum hw_dtype t, int rows, int D, const void *post, const void *nrm,
                         void *a) {
    f32_only(t);
    size_t th = (size_t)rows * 32;
    LAUNCH1D(tt_l2n_bwd_kernel, th, rows, D, CF(post), CF(nrm), F(a));
}
static void cuda_group_sum(enum hw_dtype t, int groups, int rpg, int w, const void *x, void *out,
                           enum titans_sum mode) {
    f32_only(t);
    size_t e = (size_t)groups * w;
    LAUNCH1D(tt_group_sum_kernel, e, groups, rpg, w, CF(x), F(out), (int)mode);
}
static void cuda_group_expand(enum hw_dtype t, int groups, int rpg, int w, const void *src,
                              void *dst, enum titans_expand mode) {
    f32_only(t);
    size_t e = (size_t)groups * rpg * w;
    LAUNCH1D(tt_group_expand_kernel, e, groups, rpg, w, CF(src), F(dst), (int)mode);
}
static void cuda_head_scale(enum hw_dtype t, int N, int H, int D, const void *g, const void *x,
                            void *y) {
    f32_only(t);
    size_t e = (size_t)N * H * D;
    LAUNCH1D(tt_head_scale_kernel, e, e, D, CF(g), CF(x), F(y));
}
static void cuda_row_dot(enum hw_dtype t, int rows, int D, const void *a, const void *b,
                         void *out) {
    f32_only(t);
    size_t th = (size_t)rows * 32;
    LAUNCH1D(tt_row_dot_kernel, th, rows, D, CF(a), CF(b), F(out));
}
static void cuda_add2d(enum hw_dtype t, int rows, int cols, void *dst, size_t ldd, const void *src,
                       size_t lds) {
    f32_only(t);
    size_t e = (size_t)rows * cols;
    LAUNCH1D(tt_add2d_kernel, e, rows, cols, F(dst), ldd, CF(src), lds);
}
static void cuda_scan(enum hw_dtype t, int n, size_t P, const void *a, size_t lda, int one_minus,
                      const void *x, size_t ldx, const void *prev, void *h, size_t ldh) {
    f32_only(t);
    if (n <= 0)
        return;
    LAUNCH1D(tt_scan_kernel, P, n, P, CF(a), lda, one_minus, CF(x), ldx, CF(prev), F(h), ldh);
}
static void cuda_states_rev(enum hw_dtype t, int m, size_t P, size_t ld, void *Wb, const void *W,
                            const void *S, const void *eta, const void *alpha, size_t lda, void *Sb,
                            void *Gb, void *deta, void *dal) {
    f32_only(t);
    if (m <= 0)
        return;
    tt_states_rev_kernel<<<1, 1024, 0, st()>>>(m, P, ld, F(Wb), CF(W), CF(S), CF(eta), CF(alpha),
                                               lda, F(Sb), F(Gb), F(deta), F(dal));
    HW_CHECK_LAUNCH();
}
static void cuda_clamp(enum hw_dtype t, int L, const size_t *off, const size_t *numel, double m,
                       void *G, void *Gb, int bwd) {
    f32_only(t);
    HW_CUDA_ASSERT(L >= 1 && L <= TT_MAX_L);
    struct tt_clamp_args c;
    c.L = L;
    for (int l = 0; l < L; l++) {
        c.off[l] = off[l];
        c.numel[l] = numel[l];
    }
    tt_clamp_kernel<<<L, 512, 0, st()>>>(c, (float)m, F(G), F(Gb), bwd);
    HW_CHECK_LAUNCH();
}
static int cuda_nonfinite(enum hw_dtype t, size_t n, const void *x) {
    f32_only(t);
    /* a sum of squares in fp64 stays finite for finite fp32 inputs */
    return !isfinite(sumsq_cuda(CF(x), n));
}

extern "C" const struct titans_ops titans_ops_cuda = {
    /* .unary = */ cuda_unary,
    /* .mul_gelu1 = */ cuda_mul_gelu1,
    /* .gelu2_rev = */ cuda_gelu2_rev,
    /* .silu_bwd = */ cuda_silu_bwd,
    /* .gate_fwd = */ cuda_gate_fwd,
    /* .gate_bwd = */ cuda_gate_bwd,
    /* .resid = */ cuda_resid,
    /* .resid_rev = */ cuda_resid_rev,
    /* .conv_fwd = */ cuda_conv_fwd,
    /* .conv_bwd = */ cuda_conv_bwd,
    /* .l2n_fwd = */ cuda_l2n_fwd,
    /* .l2n_bwd = */ cuda_l2n_bwd,
    /* .group_sum = */ cuda_group_sum,
    /* .group_expand = */ cuda_group_expand,
    /* .head_scale = */ cuda_head_scale,
    /* .row_dot = */ cuda_row_dot,
    /* .add2d = */ cuda_add2d,
    /* .scan = */ cuda_scan,
    /* .states_rev = */ cuda_states_rev,
    /* .clamp = */ cuda_clamp,
    /* .nonfinite = */ cuda_nonfinite,
};
