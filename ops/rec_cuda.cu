/* ops/rec_cuda.cu -- the rec model's kernels on the GPU (rec_ops.h), in double: elementwise ones
 * one thread per element in grid-stride loops; column sums and per-row gradient sums one thread
 * per output, adding rows in the CPU's order; GSU scores one warp per (sample, slot); top-K one
 * thread per sample (the CPU's insertion scan); the ESU, its backward and the PReLU slope's sum
 * one block per sample (or one block). Each element follows the CPU's formula (ops/rec_cpu.c);
 * sums over features, slots or elements are reordered, and an element may round differently in
 * its last bits (fused multiply-adds, the device's exp/log). Everything runs on the compute
 * stream. */
#include "adamw.h" /* sumsq_cuda */
#include "cuda_common.cuh"
#include "rec_ops.h"

#include <math.h>

#define RC_THREADS 256

#define GRID_LOOP(i, n)                                                                            \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (size_t)(n);                \
         i += (size_t)gridDim.x * blockDim.x)

__device__ double rc_block_max(double v) {
    __shared__ double part[32];
    __shared__ double total;
    for (int o = 16; o > 0; o >>= 1)
        v = fmax(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();
    if (threadIdx.x % 32 == 0)
        part[threadIdx.x / 32] = v;
    __syncthreads();
    if (threadIdx.x < 32) {
        double s = threadIdx.x < (blockDim.x + 31) / 32 ? part[threadIdx.x] : -INFINITY;
        for (int o = 16; o > 0; o >>= 1)
            s = fmax(s, __shfl_xor_sync(0xffffffffu, s, o));
        if (threadIdx.x == 0)
            total = s;
    }
    __syncthreads();
    return total;
}

// ----------------------------------------------------------------------------------------------
// CUDA kernels

__global__ void rc_to_f64_kernel(size_t n, const float *x, double *y) {
    GRID_LOOP(i, n) {
        y[i] = x[i];
    }
}

__global__ void rc_add_to_f32_kernel(size_t n, const double *x, float *y) {
    GRID_LOOP(i, n) {
        y[i] += (float)x[i];
    }
}

/* one thread per (row, column): rows 0..B-1 are the targets, then the B*L history rows */
__global__ void rc_gather_concat_kernel(int B, int L, const int32_t *tix, const int32_t *hix,
                                        const float *rows, int dim, int off, int D, double *t,
                                        double *h) {
    GRID_LOOP(idx, ((size_t)B + (size_t)B * L) * dim) {
        size_t r = idx / dim, e = idx % dim;
        int ix = r < (size_t)B ? tix[r] : hix[r - B];
        if (ix < 0)
            continue;
        double *dst = r < (size_t)B ? t + r * D : h + (r - B) * D;
        dst[off + e] = rows[(size_t)ix * dim + e];
    }
}

/* one warp per (sample, slot) */
__global__ void rc_scores_kernel(int B, int L, const int32_t *hitem, const double *q,
                                 const double *k, int sem, int Da, double cs, double ct,
                                 double *s) {
    const int lane = threadIdx.x % 32;
    for (size_t r = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) / 32; r < (size_t)B * L;
         r += (size_t)gridDim.x * blockDim.x / 32) {
        if (hitem[r] <= 0) { /* the same branch for the whole warp */
            if (lane == 0)
                s[r] = REC_MASKED;
            continue;
        }
        const double *qb = q + (r / L) * Da, *kr = k + r * Da;
        double a = 0.0, tt = 0.0;
        for (int e = lane; e < Da; e += 32) {
            double p = qb[e] * kr[e];
            if (e < sem)
                a += p;
            else
                tt += p;
        }
        a = hw_warp_sum(a);
        tt = hw_warp_sum(tt);
        if (lane == 0)
            s[r] = a * cs + tt * ct;
    }
}

/* one thread per sample: the CPU's insertion scan (ties keep the lower slot) */
__global__ void rc_topk_kernel(int B, int L, int K, const double *s, int32_t *idx, double *vals) {
    GRID_LOOP(b, B) {
        const double *sb = s + b * L;
        int32_t *ib = idx + b * K;
        double *val = vals + b * K;
        int m = 0;
        for (int j = 0; j < L; j++) {
            double x = sb[j];
            if (m == K && !(x > val[K - 1]))
                continue;
            int p = m < K ? m++ : K - 1;
            while (p > 0 && x > val[p - 1]) {
                val[p] = val[p - 1];
                ib[p] = ib[p - 1];
                p--;
            }
            val[p] = x;
            ib[p] = j;
        }
    }
}

/* one block per sample */
__global__ void rc_esu_kernel(int n, int L, const double *s, const int32_t *slots, const double *v,
                              int R, double *wts, double *hs) {
    const int b = blockIdx.x;
    const double *sb = s + (size_t)b * L;
    const int32_t *sl = slots ? slots + (size_t)b * n : NULL;
    double *wt = wts + (size_t)b * n, *h = hs + (size_t)b * R;
    double mx = -INFINITY;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        double si = sb[sl ? sl[i] : i];
        if (si > REC_MASKED && si > mx)
            mx = si;
    }
    mx = rc_block_max(mx);
    double z = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        double si = sb[sl ? sl[i] : i];
        wt[i] = si > REC_MASKED ? exp(si - mx) : 0.0;
        z += wt[i];
    }
    z = hw_block_sum(z);
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        wt[i] = z > 0 ? wt[i] / z : 0.0;
    __syncthreads();
    const double *vb = v + (size_t)b * L * R;
    for (int e = threadIdx.x; e < R; e += blockDim.x) {
        double acc = 0.0;
        for (int i = 0; i < n; i++)
            if (wt[i] != 0.0)
                acc += wt[i] * vb[(size_t)(sl ? sl[i] : i) * R + e];
        h[e] = acc;
    }
}

__global__ void rc_add_bias_kernel(size_t total, int n, double *y, const double *bias) {
    GRID_LOOP(i, total) {
        y[i] += bias[i % n];
    }
}

/* one thread per column, rows in order */
__global__ void rc_colsum_kernel(int B, int n, const double *x, double *out, int acc) {
    GRID_LOOP(f, n) {
        double s = acc ? out[f] : 0.0;
        for (int b = 0; b < B; b++)
            s += x[(size_t)b * n + f];
        out[f] = s;
    }
}

__global__ void rc_colsum_sq_centered_kernel(int B, int F, const double *z, const double *mean,
                                             double *out) {
    GRID_LOOP(f, F) {
        double s = 0.0;
        for (int b = 0; b < B; b++) {
            double c = z[(size_t)b * F + f] - mean[f];
            s += c * c;
        }
        out[f] = s;
    }
}

__global__ void rc_bn_apply_kernel(size_t total, int F, const double *z, const double *mean,
                                   const double *rstd, const double *g, const double *be,
                                   double *xh, double *y) {
    GRID_LOOP(i, total) {
        size_t f = i % F;
        double v = (z[i] - mean[f]) * rstd[f];
        xh[i] = v;
        y[i] = g[f] * v + be[f];
    }
}

__global__ void rc_bn_bwd_sums_kernel(int B, int F, const double *dx, const double *xh,
                                      const double *g, double *dgam, double *dbet, double *sums) {
    GRID_LOOP(f, F) {
        double dga = dgam[f], dbe = dbet[f], s0 = 0.0, s1 = 0.0;
        for (int b = 0; b < B; b++) {
            size_t i = (size_t)b * F + f;
            dga += dx[i] * xh[i];
            dbe += dx[i];
            double dxh = dx[i] * g[f];
            s0 += dxh;
            s1 += dxh * xh[i];
        }
        dgam[f] = dga;
        dbet[f] = dbe;
        sums[f] = s0;
        sums[F + f] = s1;
    }
}

__global__ void rc_bn_bwd_apply_kernel(size_t total, int F, double *dx, const double *g,
                                       const double *rstd, const double *xh, const double *sums,
                                       double N) {
    GRID_LOOP(i, total) {
        size_t f = i % F;
        double dxh = dx[i] * g[f];
        dx[i] = rstd[f] / N * (N * dxh - sums[f] - xh[i] * sums[F + f]);
    }
}

__global__ void rc_prelu_fwd_kernel(size_t n, const double *a, const double *alpha, double *o) {
    const double al = alpha[0];
    GRID_LOOP(i, n) {
        o[i] = a[i] > 0 ? a[i] : al * a[i];
    }
}

/* one block */
__global__ void __launch_bounds__(1024)
    rc_prelu_bwd_kernel(size_t n, const double *a, const double *alpha, double *dx,
                        double *dalpha) {
    const double al = alpha[0];
    double dal = 0.0;
    for (size_t i = threadIdx.x; i < n; i += blockDim.x) {
        if (a[i] > 0)
            continue;
        dal += a[i] * dx[i];
        dx[i] *= al;
    }
    dal = hw_block_sum(dal);
    if (threadIdx.x == 0)
        dalpha[0] += dal;
}

__global__ void rc_softmax2_kernel(int B, const double *logit, double *q) {
    GRID_LOOP(b, B) {
        double l0 = logit[2 * b], l1 = logit[2 * b + 1], mx = l0 > l1 ? l0 : l1;
        double e0 = exp(l0 - mx), e1 = exp(l1 - mx);
        q[2 * b] = e0 / (e0 + e1);
        q[2 * b + 1] = e1 / (e0 + e1);
    }
}

__global__ void rc_xent2_kernel(int B, const double *q, const float *label, double inv_n,
                                double *loss, double *dlog) {
    GRID_LOOP(b, B) {
        int y = label[b] > 0.5f ? 0 : 1;
        double qy = q[2 * b + y];
        loss[b] = inv_n * log(qy + 1e-8);
        if (dlog) {
            double gy = -inv_n / (qy + 1e-8);
            for (int k = 0; k < 2; k++)
                dlog[2 * b + k] = q[2 * b + k] * ((k == y ? gy : 0.0) - gy * qy);
        }
    }
}

__global__ void rc_features_kernel(int B, int R, const double *t, const double *h, double *z) {
    GRID_LOOP(i, (size_t)B * R) {
        size_t b = i / R, k = i % R;
        double tv = t[i], hv = h[i];
        z[b * 3 * R + k] = tv;
        z[b * 3 * R + R + k] = hv;
        z[b * 3 * R + 2 * R + k] = tv * hv;
    }
}

__global__ void rc_features_bwd_kernel(int B, int R, const double *dz, const double *t,
                                       const double *h, double *dt, double *dh) {
    GRID_LOOP(i, (size_t)B * R) {
        size_t b = i / R, e = i % R;
        const double *zb = dz + b * 3 * R;
        dt[i] += zb[e] + zb[2 * R + e] * h[i];
        dh[i] = zb[R + e] + zb[2 * R + e] * t[i];
    }
}

/* one block per sample; dw (B x n) is scratch */
__global__ void rc_attn_bwd_kernel(int n, int L, const int32_t *slots, const double *wts,
                                   const double *dhs, const double *vr, const double *qa,
                                   const double *ka, int R, int Da, int sem, double cs, double ct,
                                   double *dq, double *dk, double *dvr, double *dws) {
    const int b = blockIdx.x, lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int nw = blockDim.x / 32;
    const double *wt = wts + (size_t)b * n, *dh = dhs + (size_t)b * R;
    const int32_t *sl = slots ? slots + (size_t)b * n : NULL;
    double *dw = dws + (size_t)b * n;
    /* dw_i = <dh, v_slot> (a warp per slot), dv_slot += wt_i dh */
    for (int i = warp; i < n; i += nw) {
        if (wt[i] == 0.0) {
            if (lane == 0)
                dw[i] = 0.0;
            continue;
        }
        int j = sl ? sl[i] : i;
        const double *v = vr + ((size_t)b * L + j) * R;
        double *dv = dvr + ((size_t)b * L + j) * R;
        double s = 0.0;
        for (int e = lane; e < R; e += 32) {
            s += dh[e] * v[e];
            dv[e] += wt[i] * dh[e];
        }
        s = hw_warp_sum(s);
        if (lane == 0)
            dw[i] = s;
    }
    __syncthreads();
    double dot = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        dot += wt[i] * dw[i];
    dot = hw_block_sum(dot);
    const double *q = qa + (size_t)b * Da;
    /* dq: a thread per feature over the slots in order; dk: a warp per slot */
    for (int e = threadIdx.x; e < Da; e += blockDim.x) {
        double c = e < sem ? cs : ct, acc = dq[(size_t)b * Da + e];
        for (int i = 0; i < n; i++) {
            if (wt[i] == 0.0)
                continue;
            double ds = wt[i] * (dw[i] - dot);
            int j = sl ? sl[i] : i;
            acc += ds * c * ka[((size_t)b * L + j) * Da + e];
        }
        dq[(size_t)b * Da + e] = acc;
    }
    for (int i = warp; i < n; i += nw) {
        if (wt[i] == 0.0)
            continue;
        double ds = wt[i] * (dw[i] - dot);
        int j = sl ? sl[i] : i;
        double *dkj = dk + ((size_t)b * L + j) * Da;
        for (int e = lane; e < Da; e += 32)
            dkj[e] += ds * (e < sem ? cs : ct) * q[e];
    }
}

__global__ void rc_axpy_kernel(size_t n, const double *x, double *y) {
    GRID_LOOP(i, n) {
        y[i] += x[i];
    }
}

/* one thread per (unique row, column), occurrences in list order */
__global__ void rc_rows_accum_kernel(int nu, int dim, const int32_t *start, const int32_t *occ,
                                     int B, const double *t, const double *h, int off, int D,
                                     double *acc) {
    GRID_LOOP(idx, (size_t)nu * dim) {
        size_t u = idx / dim, e = idx % dim;
        double a = 0.0;
        for (int o = start[u]; o < start[u + 1]; o++) {
            int r = occ[o];
            const double *src = r < B ? t + (size_t)r * D : h + (size_t)(r - B) * D;
            a += src[off + e];
        }
        acc[idx] = a;
    }
}

__global__ void rc_l2_grad_kernel(size_t n, const float *x, float *g, double c) {
    GRID_LOOP(i, n) {
        g[i] += (float)(c * x[i]);
    }
}

// ----------------------------------------------------------------------------------------------
// kernel launchers

static cudaStream_t st(void) {
    return cuda_ctx()->stream;
}
#define LAUNCH1D(kernel, n, ...)                                                                   \
    do {                                                                                           \
        if ((size_t)(n) > 0) {                                                                     \
            kernel<<<hw_grid1d((size_t)(n), RC_THREADS), RC_THREADS, 0, st()>>>(__VA_ARGS__);      \
            HW_CHECK_LAUNCH();                                                                     \
        }                                                                                          \
    } while (0)

static void cuda_to_f64(size_t n, const float *x, double *y) {
    LAUNCH1D(rc_to_f64_kernel, n, n, x, y);
}
static void cuda_add_to_f32(size_t n, const double *x, float *y) {
    LAUNCH1D(rc_add_to_f32_kernel, n, n, x, y);
}
static void cuda_gather_concat(int B, int L, const int32_t *tix, const int32_t *hix,
                               const float *rows, int dim, int off, int D, double *t, double *h) {
    size_t n = ((size_t)B + (size_t)B * L) * dim;
    LAUNCH1D(rc_gather_concat_kernel, n, B, L, tix, hix, rows, dim, off, D, t, h);
}
static void cuda_scores(int B, int L, const int32_t *hitem, const double *q, const double *k,
                        int sem, int Da, double cs, double ct, double *s) {
    size_t threads = (size_t)B * L * 32;
    LAUNCH1D(rc_scores_kernel, threads, B, L, hitem, q, k, sem, Da, cs, ct, s);
}
static void cuda_topk(int B, int L, int K, const double *s, int32_t *idx) {
    if (B <= 0)
        return;
    double *vals = (double *)cuda_scratch(sizeof(double) * (size_t)B * K);
    rc_topk_kernel<<<hw_grid1d((size_t)B, 128), 128, 0, st()>>>(B, L, K, s, idx, vals);
    HW_CHECK_LAUNCH();
}
static void cuda_esu(int B, int n, int L, const double *s, const int32_t *slots, const double *v,
                     int R, double *wt, double *h) {
    if (B <= 0)
        return;
    rc_esu_kernel<<<B, 128, 0, st()>>>(n, L, s, slots, v, R, wt, h);
    HW_CHECK_LAUNCH();
}
static void cuda_add_bias(int B, int n, double *y, const double *bias) {
    size_t t = (size_t)B * n;
    LAUNCH1D(rc_add_bias_kernel, t, t, n, y, bias);
}
static void cuda_colsum(int B, int n, const double *x, double *out, int acc) {
    LAUNCH1D(rc_colsum_kernel, n, B, n, x, out, acc);
}
static void cuda_colsum_sq_centered(int B, int F, const double *z, const double *mean,
                                    double *out) {
    LAUNCH1D(rc_colsum_sq_centered_kernel, F, B, F, z, mean, out);
}
static void cuda_bn_apply(int B, int F, const double *z, const double *mean, const double *rstd,
                          const double *g, const double *be, double *xh, double *y) {
    size_t t = (size_t)B * F;
    LAUNCH1D(rc_bn_apply_kernel, t, t, F, z, mean, rstd, g, be, xh, y);
}
static void cuda_bn_bwd_sums(int B, int F, const double *dx, const double *xh, const double *g,
                             double *dgam, double *dbet, double *sums) {
    LAUNCH1D(rc_bn_bwd_sums_kernel, F, B, F, dx, xh, g, dgam, dbet, sums);
}
static void cuda_bn_bwd_apply(int B, int F, double *dx, const double *g, const double *rstd,
                              const double *xh, const double *sums, double N) {
    size_t t = (size_t)B * F;
    LAUNCH1D(rc_bn_bwd_apply_kernel, t, t, F, dx, g, rstd, xh, sums, N);
}
static void cuda_prelu_fwd(size_t n, const double *a, const double *alpha, double *o) {
    LAUNCH1D(rc_prelu_fwd_kernel, n, n, a, alpha, o);
}
static void cuda_prelu_bwd(size_t n, const double *a, const double *alpha, double *dx,
                           double *dalpha) {
    rc_prelu_bwd_kernel<<<1, 1024, 0, st()>>>(n, a, alpha, dx, dalpha);
    HW_CHECK_LAUNCH();
}
static void cuda_softmax2(int B, const double *logit, double *q) {
    LAUNCH1D(rc_softmax2_kernel, B, B, logit, q);
}
static void cuda_xent2(int B, const double *q, const float *label, double inv_n, double *loss,
                       double *dlog) {
    LAUNCH1D(rc_xent2_kernel, B, B, q, label, inv_n, loss, dlog);
}
static void cuda_features(int B, int R, const double *t, const double *h, double *z) {
    LAUNCH1D(rc_features_kernel, (size_t)B * R, B, R, t, h, z);
}
static void cuda_features_bwd(int B, int R, const double *dz, const double *t, const double *h,
                              double *dt, double *dh) {
    LAUNCH1D(rc_features_bwd_kernel, (size_t)B * R, B, R, dz, t, h, dt, dh);
}
static void cuda_attn_bwd(int B, int n, int L, const int32_t *slots, const double *wt,
                          const double *dh, const double *vr, const double *qa, const double *ka,
                          int R, int Da, int sem, double cs, double ct, double *dq, double *dk,
                          double *dvr) {
    if (B <= 0 || n <= 0)
        return;
    double *dw = (double *)cuda_scratch(sizeof(double) * (size_t)B * n);
    rc_attn_bwd_kernel<<<B, 256, 0, st()>>>(n, L, slots, wt, dh, vr, qa, ka, R, Da, sem, cs, ct, dq,
                                            dk, dvr, dw);
    HW_CHECK_LAUNCH();
}
static void cuda_axpy(size_t n, const double *x, double *y) {
    LAUNCH1D(rc_axpy_kernel, n, n, x, y);
}
static void cuda_rows_accum(int nu, int dim, const int32_t *start, const int32_t *occ, int B,
                            const double *t, const double *h, int off, int D, double *acc) {
    size_t n = (size_t)nu * dim;
    LAUNCH1D(rc_rows_accum_kernel, n, nu, dim, start, occ, B, t, h, off, D, acc);
}
static double cuda_l2(size_t n, const float *x, float *g, double c, double s0) {
    double s = sumsq_cuda(x, n);
    if (g)
        LAUNCH1D(rc_l2_grad_kernel, n, n, x, g, c);
    return s0 + s;
}

extern "C" const struct rec_ops rec_ops_cuda = {
    /* .to_f64 = */ cuda_to_f64,
    /* .add_to_f32 = */ cuda_add_to_f32,
    /* .gather_concat = */ cuda_gather_concat,
    /* .scores = */ cuda_scores,
    /* .topk = */ cuda_topk,
    /* .esu = */ cuda_esu,
    /* .add_bias = */ cuda_add_bias,
    /* .colsum = */ cuda_colsum,
    /* .colsum_sq_centered = */ cuda_colsum_sq_centered,
    /* .bn_apply = */ cuda_bn_apply,
    /* .bn_bwd_sums = */ cuda_bn_bwd_sums,
    /* .bn_bwd_apply = */ cuda_bn_bwd_apply,
    /* .prelu_fwd = */ cuda_prelu_fwd,
    /* .prelu_bwd = */ cuda_prelu_bwd,
    /* .softmax2 = */ cuda_softmax2,
    /* .xent2 = */ cuda_xent2,
    /* .features = */ cuda_features,
    /* .features_bwd = */ cuda_features_bwd,
    /* .attn_bwd = */ cuda_attn_bwd,
    /* .axpy = */ cuda_axpy,
    /* .rows_accum = */ cuda_rows_accum,
    /* .l2 = */ cuda_l2,
};
