/* ops/moh_cuda.cu -- the Mixture-of-Head router and gate ops on the GPU (contracts in moh.h, maths
 * in ALGORITHMS.md §1; the CPU file ops/moh_cpu.c is the oracle).
 *
 * - Router forward and backward: one thread per token. A token's router is a few dozen numbers
 *   (E routed heads, hs shared, 2 head types), so each thread runs the CPU code's loops in the
 *   same order with the same float/double mix; results match the CPU to float rounding (expf's
 *   last bits) and are bit-identical run after run.
 * - Balance sums: one block per routed head, a fixed-order block reduction in double (no
 *   atomics), downloaded and added to the HOST psum/fsum as the contract says.
 * - Gate forward: elementwise. Gate backward and the query norms: one warp per (token, head),
 *   a fixed butterfly reduction.
 * - Row lists: per (sequence, local head) the count of the rows that use the head, an exclusive
 *   scan of the counts, then an ordered compaction (cub::BlockScan over tiles of the sequence),
 *   so idx lists rows ascending exactly as the CPU does. */
#include "cuda_common.cuh"
#include "cuda_ctx.h"

#include <cub/block/block_scan.cuh>

extern "C" {
#include "moh.h"
}

#include <float.h>

/* ---- router forward --------------------------------------------------------------------------
 */

__device__ static void softmax_row(float *out, const float *z, int n) {
    if (n <= 0)
        return;
    float mx = z[0];
    for (int i = 1; i < n; i++)
        mx = z[i] > mx ? z[i] : mx;
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        out[i] = expf(z[i] - mx);
        sum += out[i];
    }
    for (int i = 0; i < n; i++)
        out[i] = (float)(out[i] / sum);
}

/* the k largest of z[0..E), ties to the lowest index, written ascending (the set moh_cpu.c's
 * top_k picks: the first maximum among the heads not yet taken, k times) */
__device__ static void top_k(int32_t *sel, const float *z, int E, int k) {
    for (int r = 0; r < k; r++) {
        int best = -1;
        for (int i = 0; i < E; i++) {
            int taken = 0;
            for (int j = 0; j < r; j++)
                taken |= sel[j] == i;
            if (!taken && (best < 0 || z[i] > z[best]))
                best = i;
        }
        sel[r] = best;
    }
    for (int r = 1; r < k; r++) { /* insertion sort, k is small */
        const int32_t v = sel[r];
        int j = r - 1;
        while (j >= 0 && sel[j] > v) {
            sel[j + 1] = sel[j];
            j--;
        }
        sel[j + 1] = v;
    }
}

__global__ static void router_fwd_kernel(struct moh_spec s, int N, struct moh_state st, int ns,
                                         int nh) {
    const int H = s.H, hs = s.hs, k = s.k, E = s.E;
    for (int t = blockIdx.x * blockDim.x + threadIdx.x; t < N; t += gridDim.x * blockDim.x) {
        float *G = st.G + (size_t)t * H;
        if (s.qnorm) { /* normalise the raw norms by their unbiased std over the routed heads */
            const float *q = st.qraw + (size_t)t * E;
            float *z = st.zr + (size_t)t * E;
            double mean = 0.0, var = 0.0;
            for (int i = 0; i < E; i++)
                mean += q[i];
            mean /= E;
            for (int i = 0; i < E; i++)
                var += (q[i] - mean) * (q[i] - mean);
            const double sd = E > 1 ? sqrt(var / (E - 1)) : 0.0;
            const float inv = sd > 1e-12 ? (float)(1.0 / sd) : 0.0f;
            st.qstd[t] = (float)sd;
            for (int i = 0; i < E; i++)
                z[i] = q[i] * inv;
        }
        if (k == 0) { /* every head shared, softly re-weighted */
            if (ns) {
                float *ps = st.ps + (size_t)t * ns;
                softmax_row(ps, st.zs + (size_t)t * ns, ns);
                for (int i = 0; i < H; i++)
                    G[i] = (s.literal ? 1.0f : (float)H) * ps[i];
            } else {
                for (int i = 0; i < H; i++)
                    G[i] = 1.0f;
            }
            continue;
        }
        const float *zr = st.zr + (size_t)t * E;
        float *p = st.p + (size_t)t * E;
        int32_t *sel = st.sel + (size_t)t * k;
        softmax_row(p, zr, E);
        top_k(sel, zr, E, k);
        for (int i = hs; i < H; i++)
            G[i] = 0.0f;
        if (s.qnorm) {
            for (int i = 0; i < hs; i++)
                G[i] = 1.0f;
            for (int j = 0; j < k; j++)
                G[hs + sel[j]] = 1.0f;
            continue;
        }
        double ssum = 0.0;
        for (int j = 0; j < k; j++)
            ssum += p[sel[j]];
        const float den = ssum > FLT_EPSILON ? (float)ssum : FLT_EPSILON;
        float a1 = 1.0f, a2 = 1.0f;
        if (nh) {
            float *a = st.a + (size_t)t * nh;
            softmax_row(a, st.zh + (size_t)t * nh, 2);
            a1 = (s.literal ? 1.0f : 2.0f) * a[0];
            a2 = (s.literal ? 1.0f : 2.0f) * a[1];
        }
        for (int j = 0; j < k; j++) {
            const int i = sel[j];
            G[hs + i] = a2 * (s.literal ? p[i] : (float)k * p[i] / den);
        }
        if (ns) {
            float *ps = st.ps + (size_t)t * ns;
            softmax_row(ps, st.zs + (size_t)t * ns, ns);
            for (int i = 0; i < hs; i++)
                G[i] = a1 * (s.literal ? 1.0f : (float)hs) * ps[i];
        } else {
            for (int i = 0; i < hs; i++)
                G[i] = a1;
        }
    }
}

extern "C" void moh_router_forward_cuda(const struct moh_spec *s, int N, struct moh_state *st) {
    if (N <= 0)
        return;
    HW_CUDA_ASSERT(s->H <= 1024);
    router_fwd_kernel<<<hw_grid1d((size_t)N, 128), 128, 0, cuda_ctx()->stream>>>(
        *s, N, *st, moh_ns(s), moh_nh(s));
    HW_CHECK_LAUNCH();
}

/* ---- balance sums ----------------------------------------------------------------------------
 */

#define BAL_THREADS 256

/* block i: out[i] = sum_t p[t, i], out[E + i] = tokens that selected i; fixed-order tree */
__global__ static void balance_kernel(double *out, const float *p, const int32_t *sel, int N, int E,
                                      int k) {
    __shared__ double sp[BAL_THREADS], sf[BAL_THREADS];
    const int i = blockIdx.x;
    double ps = 0.0, fs = 0.0;
    for (int t = threadIdx.x; t < N; t += BAL_THREADS) {
        ps += p[(size_t)t * E + i];
        for (int j = 0; j < k; j++)
            fs += sel[(size_t)t * k + j] == i ? 1.0 : 0.0;
    }
    sp[threadIdx.x] = ps;
    sf[threadIdx.x] = fs;
    __syncthreads();
    for (int w = BAL_THREADS / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) {
            sp[threadIdx.x] += sp[threadIdx.x + w];
            sf[threadIdx.x] += sf[threadIdx.x + w];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        out[i] = sp[0];
        out[E + i] = sf[0];
    }
}

extern "C" void moh_balance_sums_cuda(const struct moh_spec *s, int N, const struct moh_state *st,
                                      double *psum, double *fsum) {
    const int E = s->E;
    if (s->k == 0 || E == 0 || N <= 0)
        return;
    HW_CUDA_ASSERT(E <= 1024);
    double *d = (double *)cuda_scratch(sizeof(double) * 2 * (size_t)E);
    balance_kernel<<<E, BAL_THREADS, 0, cuda_ctx()->stream>>>(d, st->p, st->sel, N, E, s->k);
    HW_CHECK_LAUNCH();
    double h[2048];
    cuda_download(h, d, sizeof(double) * 2 * (size_t)E);
    for (int i = 0; i < E; i++) {
        psum[i] += h[i];
        fsum[i] += h[E + i];
    }
}

/* ---- router backward -------------------------------------------------------------------------
 */

/* dz_j = scale p_j (dy_j - sum_i dy_i p_i) with dy given as a function of j */
template <typename DY>
__device__ static void softmax_back_f(float *dz, const float *p, DY dy, int n, float scale) {
    double dot = 0.0;
    for (int i = 0; i < n; i++)
        dot += (double)dy(i) * p[i];
    for (int j = 0; j < n; j++)
        dz[j] = scale * p[j] * (float)(dy(j) - dot);
}

__device__ static int in_sel(const int32_t *sel, int k, int i) {
    for (int j = 0; j < k; j++)
        if (sel[j] == i)
            return 1;
    return 0;
}

/* Token t of the learned router: dzr (routed), dzs (shared) and dzh (head type) from dG. */
__device__ static void learned_bwd(const struct moh_spec &s, const struct moh_state &st, size_t t,
                                   const float *dGt, float *dz, float *dzs, float *dzh, int ns,
                                   int nh) {
    const int hs = s.hs, k = s.k, E = s.E;
    const float *p = st.p + t * E;
    const int32_t *sel = st.sel + t * k;
    float a1 = 1.0f, a2 = 1.0f;
    const float *a = nh ? st.a + t * nh : NULL;
    if (nh) {
        a1 = (s.literal ? 1.0f : 2.0f) * a[0];
        a2 = (s.literal ? 1.0f : 2.0f) * a[1];
    }
    double ssum = 0.0, da2 = 0.0;
    for (int j = 0; j < k; j++)
        ssum += p[sel[j]];
    const float den = ssum > FLT_EPSILON ? (float)ssum : FLT_EPSILON;
    for (int j = 0; j < k; j++) {
        const int i = sel[j];
        const float gr = s.literal ? p[i] : (float)k * p[i] / den;
        da2 += (double)dGt[hs + i] * gr;
    }
    auto dg = [&](int i) { return in_sel(sel, k, i) ? a2 * dGt[hs + i] : 0.0f; };
    if (s.literal) {
        softmax_back_f(dz, p, dg, E, 1.0f);
    } else {
        double dot = 0.0;
        for (int j = 0; j < k; j++)
            dot += (double)(a2 * dGt[hs + sel[j]]) * (p[sel[j]] / den);
        for (int i = 0; i < E; i++)
            dz[i] = 0.0f;
        for (int j = 0; j < k; j++) {
            const int i = sel[j];
            dz[i] = (float)k * (p[i] / den) * (float)(a2 * dGt[hs + i] - dot);
        }
    }
    double da1 = 0.0;
    if (ns) {
        const float *ps = st.ps + t * ns;
        const float sc = s.literal ? 1.0f : (float)hs;
        for (int i = 0; i < hs; i++)
            da1 += (double)dGt[i] * sc * ps[i];
        softmax_back_f(
            dzs + t * ns, ps, [&](int i) { return a1 * dGt[i]; }, ns, sc);
    } else {
        for (int i = 0; i < hs; i++)
            da1 += dGt[i];
    }
    if (nh) {
        const float dav[2] = {(float)da1, (float)da2};
        softmax_back_f(
            dzh + t * nh, a, [&](int i) { return dav[i]; }, 2, s.literal ? 1.0f : 2.0f);
    }
}

/* qnorm: z_i = q_i / sd (unbiased std): dq_j = dz_j / sd - (sum_i dz_i z_i) (q_j - mean) /
 * ((E - 1) sd^2); each j reads only dz_j, so in place */
__device__ static void qnorm_std_bwd(const struct moh_state &st, size_t t, int E, float *dz) {
    const float *q = st.qraw + t * E, *z = st.zr + t * E;
    const double sd = st.qstd[t];
    if (sd > 1e-12) {
        double mean = 0.0, dzz = 0.0;
        for (int i = 0; i < E; i++) {
            mean += q[i];
            dzz += (double)dz[i] * z[i];
        }
        mean /= E;
        for (int j = 0; j < E; j++)
            dz[j] = (float)(dz[j] / sd - dzz * (q[j] - mean) / ((E - 1) * sd * sd));
    } else {
        for (int j = 0; j < E; j++)
            dz[j] = 0.0f;
    }
}

__global__ static void router_bwd_kernel(struct moh_spec s, int N, struct moh_state st,
                                         const float *dG, float bal_scale, const double *fsum,
                                         double n, float *dzr, float *dzs, float *dzh, int ns,
                                         int nh) {
    const int H = s.H, hs = s.hs, k = s.k, E = s.E;
    for (int t = blockIdx.x * blockDim.x + threadIdx.x; t < N; t += gridDim.x * blockDim.x) {
        const float *dGt = dG + (size_t)t * H;
        if (k == 0) {
            if (ns)
                softmax_back_f(
                    dzs + (size_t)t * ns, st.ps + (size_t)t * ns, [&](int i) { return dGt[i]; }, ns,
                    s.literal ? 1.0f : (float)H);
            continue;
        }
        const float *p = st.p + (size_t)t * E;
        const int32_t *sel = st.sel + (size_t)t * k;
        float *dz = dzr + (size_t)t * E;
        if (s.qnorm) {
            /* straight-through on the selected heads (see moh_cpu.c) */
            const int ste = s.ste;
            softmax_back_f(
                dz, p, [&](int i) { return ste && in_sel(sel, k, i) ? dGt[hs + i] : 0.0f; }, E,
                1.0f);
        } else {
            learned_bwd(s, st, (size_t)t, dGt, dz, dzs, dzh, ns, nh);
        }
        if (bal_scale != 0.0f) {
            /* d/dp_i of scale * E * sum_i (P_i f_i), P_i = sum_t p_ti / n; the same float
             * rounding of the per-head term as the CPU */
            auto tb = [&](int i) { return (float)(bal_scale * E * (fsum[i] / n) / n); };
            double dot = 0.0;
            for (int i = 0; i < E; i++)
                dot += (double)tb(i) * p[i];
            for (int i = 0; i < E; i++)
                dz[i] += 1.0f * p[i] * (float)(tb(i) - dot);
        }
        if (s.qnorm)
            qnorm_std_bwd(st, (size_t)t, E, dz);
    }
}

extern "C" void moh_router_backward_cuda(const struct moh_spec *s, int N,
                                         const struct moh_state *st, const float *dG,
                                         float bal_scale, const double *fsum, double n, float *dzr,
                                         float *dzs, float *dzh) {
    if (N <= 0)
        return;
    HW_CUDA_ASSERT(s->H <= 1024);
    double *d_fsum = NULL;
    if (bal_scale != 0.0f && s->E > 0) { /* fsum is a HOST array (moh.h) */
        d_fsum = (double *)cuda_scratch(sizeof(double) * (size_t)s->E);
        cuda_upload(d_fsum, fsum, sizeof(double) * (size_t)s->E);
    }
    router_bwd_kernel<<<hw_grid1d((size_t)N, 128), 128, 0, cuda_ctx()->stream>>>(
        *s, N, *st, dG, d_fsum ? bal_scale : 0.0f, d_fsum, n, dzr, dzs, dzh, moh_ns(s), moh_nh(s));
    HW_CHECK_LAUNCH();
}

/* ---- gates ---------------------------------------------------------------------------------- */

__global__ static void gate_fwd_kernel(float *dst, const float *att, const float *G, long long n,
                                       struct moh_heads hh) {
    const int HD = hh.Hl * hh.hd;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < n;
         e += (long long)gridDim.x * blockDim.x) {
        const long long t = e / HD;
        const int h = (int)(e % HD) / hh.hd;
        dst[e] = G[t * hh.H + hh.h0 + h] * att[e];
    }
}

extern "C" void moh_gate_forward_cuda(float *dst, const float *att, const float *G, int N,
                                      const struct moh_heads *hh) {
    const long long n = (long long)N * hh->Hl * hh->hd;
    if (n <= 0)
        return;
    gate_fwd_kernel<<<hw_grid1d((size_t)n, 256), 256, 0, cuda_ctx()->stream>>>(dst, att, G, n, *hh);
    HW_CHECK_LAUNCH();
}

/* one warp per (token, local head): dG = <datt, att>, datt *= g */
__global__ static void gate_bwd_kernel(float *datt, float *dG, const float *att, const float *G,
                                       int N, struct moh_heads hh) {
    const int lane = threadIdx.x & 31, HD = hh.Hl * hh.hd;
    const long long nw = (long long)N * hh.Hl;
    for (long long w = (blockIdx.x * (long long)blockDim.x + threadIdx.x) >> 5; w < nw;
         w += ((long long)gridDim.x * blockDim.x) >> 5) {
        const long long t = w / hh.Hl;
        const int h = (int)(w % hh.Hl);
        float *dy = datt + t * HD + (size_t)h * hh.hd;
        const float *x = att + t * HD + (size_t)h * hh.hd;
        const float g = G[t * hh.H + hh.h0 + h];
        float acc = 0.0f;
        for (int d = lane; d < hh.hd; d += 32) {
            acc += dy[d] * x[d];
            dy[d] *= g;
        }
        acc = hw_warp_sum(acc);
        if (lane == 0)
            dG[t * hh.H + hh.h0 + h] = acc;
    }
}

extern "C" void moh_gate_backward_cuda(float *datt, float *dG, const float *att, const float *G,
                                       int N, const struct moh_heads *hh) {
    if (N <= 0)
        return;
    cudaStream_t st = cuda_ctx()->stream;
    HW_CHECK_CUDA(cudaMemsetAsync(dG, 0, sizeof(float) * (size_t)N * hh->H, st));
    const size_t threads = (size_t)N * hh->Hl * 32;
    gate_bwd_kernel<<<hw_grid1d(threads, 256), 256, 0, st>>>(datt, dG, att, G, N, *hh);
    HW_CHECK_LAUNCH();
}

/* ---- query-norm router ---------------------------------------------------------------------- */

__global__ static void qnorm_fwd_kernel(float *qraw, const float *qkv, int ld, int N, int E, int hs,
                                        struct moh_heads hh) {
    const int lane = threadIdx.x & 31;
    const long long nw = (long long)N * hh.Hl;
    for (long long w = (blockIdx.x * (long long)blockDim.x + threadIdx.x) >> 5; w < nw;
         w += ((long long)gridDim.x * blockDim.x) >> 5) {
        const long long t = w / hh.Hl;
        const int h = (int)(w % hh.Hl);
        if (hh.h0 + h < hs)
            continue;
        const float *q = qkv + t * ld + (size_t)h * hh.hd;
        double ss = 0.0;
        for (int d = lane; d < hh.hd; d += 32)
            ss += (double)q[d] * q[d];
        ss = hw_warp_sum(ss);
        if (lane == 0)
            qraw[t * E + (hh.h0 + h - hs)] = (float)sqrt(ss);
    }
}

extern "C" void moh_qnorm_forward_cuda(float *qraw, const float *qkv, int ld, int N, int E, int hs,
                                       const struct moh_heads *hh) {
    if (N <= 0 || E <= 0)
        return;
    cudaStream_t st = cuda_ctx()->stream;
    HW_CHECK_CUDA(cudaMemsetAsync(qraw, 0, sizeof(float) * (size_t)N * E, st));
    const size_t threads = (size_t)N * hh->Hl * 32;
    qnorm_fwd_kernel<<<hw_grid1d(threads, 256), 256, 0, st>>>(qraw, qkv, ld, N, E, hs, *hh);
    HW_CHECK_LAUNCH();
}

__global__ static void qnorm_bwd_kernel(float *dqkv, const float *dz, const float *qraw,
                                        const float *qkv, int ld, long long n, int E, int hs,
                                        struct moh_heads hh) {
    const int HD = hh.Hl * hh.hd;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < n;
         e += (long long)gridDim.x * blockDim.x) {
        const long long t = e / HD;
        const int c = (int)(e % HD), h = c / hh.hd;
        if (hh.h0 + h < hs)
            continue;
        const float d = dz[t * E + (hh.h0 + h - hs)];
        const float nrm = qraw[t * E + (hh.h0 + h - hs)];
        if (d == 0.0f || nrm <= 0.0f)
            continue;
        dqkv[t * ld + c] += d * qkv[t * ld + c] / nrm;
    }
}

extern "C" void moh_qnorm_backward_cuda(float *dqkv, const float *dz, const float *qraw,
                                        const float *qkv, int ld, int N, int E, int hs,
                                        const struct moh_heads *hh) {
    const long long n = (long long)N * hh->Hl * hh->hd;
    if (n <= 0 || E <= 0)
        return;
    qnorm_bwd_kernel<<<hw_grid1d((size_t)n, 256), 256, 0, cuda_ctx()->stream>>>(dqkv, dz, qraw, qkv,
                                                                                ld, n, E, hs, *hh);
    HW_CHECK_LAUNCH();
}

/* ---- row lists ------------------------------------------------------------------------------ */

#define SEL_THREADS 256

__device__ static int row_on(const int32_t *sel, size_t row, int k, int hg, int hs) {
    if (hg < hs || k == 0)
        return 1;
    for (int j = 0; j < k; j++)
        if (sel[row * k + j] == hg - hs)
            return 1;
    return 0;
}

/* block (b, h): cnt[b*Hl + h] = rows of sequence b that use local head h */
__global__ static void sel_count_kernel(int32_t *cnt, const int32_t *sel, int T, int k, int hs,
                                        struct moh_heads hh) {
    __shared__ int s[SEL_THREADS];
    const int b = blockIdx.x / hh.Hl, h = blockIdx.x % hh.Hl, hg = hh.h0 + h;
    int c = 0;
    for (int t = threadIdx.x; t < T; t += SEL_THREADS)
        c += row_on(sel, (size_t)b * T + t, k, hg, hs);
    s[threadIdx.x] = c;
    __syncthreads();
    for (int w = SEL_THREADS / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w)
            s[threadIdx.x] += s[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0)
        cnt[blockIdx.x] = s[0];
}

/* off = exclusive scan of cnt (n + 1 entries); n = B * Hl is small, one block */
__global__ static void sel_offsets_kernel(int32_t *off, const int32_t *cnt, int n) {
    typedef cub::BlockScan<int, SEL_THREADS> Scan;
    __shared__ typename Scan::TempStorage tmp;
    __shared__ int carry;
    if (threadIdx.x == 0)
        carry = 0;
    __syncthreads();
    for (int base = 0; base < n; base += SEL_THREADS) {
        const int i = base + threadIdx.x;
        int v = i < n ? cnt[i] : 0, ex, tot;
        Scan(tmp).ExclusiveSum(v, ex, tot);
        if (i < n)
            off[i] = carry + ex;
        __syncthreads();
        if (threadIdx.x == 0)
            carry += tot;
        __syncthreads();
    }
    if (threadIdx.x == 0)
        off[n] = carry;
}

/* block (b, h): the rows that use the head, ascending, from off[b*Hl + h] on */
__global__ static void sel_write_kernel(int32_t *idx, const int32_t *off, const int32_t *sel, int T,
                                        int k, int hs, struct moh_heads hh) {
    typedef cub::BlockScan<int, SEL_THREADS> Scan;
    __shared__ typename Scan::TempStorage tmp;
    __shared__ int carry;
    const int b = blockIdx.x / hh.Hl, h = blockIdx.x % hh.Hl, hg = hh.h0 + h;
    if (threadIdx.x == 0)
        carry = off[blockIdx.x];
    __syncthreads();
    for (int base = 0; base < T; base += SEL_THREADS) {
        const int t = base + threadIdx.x;
        const int on = t < T ? row_on(sel, (size_t)b * T + t, k, hg, hs) : 0;
        int ex, tot;
        Scan(tmp).ExclusiveSum(on, ex, tot);
        if (on)
            idx[carry + ex] = t;
        __syncthreads();
        if (threadIdx.x == 0)
            carry += tot;
        __syncthreads();
    }
}

extern "C" void moh_select_rows_cuda(int32_t *idx, int32_t *off, const struct moh_spec *s,
                                     const int32_t *sel, int B, int T, const struct moh_heads *hh) {
    const int n = B * hh->Hl;
    cudaStream_t st = cuda_ctx()->stream;
    if (n <= 0) {
        HW_CHECK_CUDA(cudaMemsetAsync(off, 0, sizeof(int32_t), st));
        return;
    }
    int32_t *cnt = (int32_t *)cuda_scratch(sizeof(int32_t) * (size_t)n);
    sel_count_kernel<<<n, SEL_THREADS, 0, st>>>(cnt, sel, T, s->k, s->hs, *hh);
    HW_CHECK_LAUNCH();
    sel_offsets_kernel<<<1, SEL_THREADS, 0, st>>>(off, cnt, n);
    HW_CHECK_LAUNCH();
    sel_write_kernel<<<n, SEL_THREADS, 0, st>>>(idx, off, sel, T, s->k, s->hs, *hh);
    HW_CHECK_LAUNCH();
}
