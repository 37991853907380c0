/* ops/attention_cuda.cu -- the CUDA twins of ops/attention_cpu.c: FlashAttention-2 style tiled
 * attention in fp32 (whole-sequence forward/backward, ring-attention blocks with absolute
 * positions and log-sum-exp merge, the persistent prefix, KV-cache decode with and without PASTA
 * steering). Same contracts as the _cpu functions in attention.h; which pointers live on the
 * device is documented there (every tensor and index array; the s2_pattern struct is read on the
 * host and passed to the kernels by value).
 *
 * Layout of the work (one CTA of 256 threads per tile, 64 x 64 tiles, fp32 FMA, no tensor
 * cores: correctness first, speed is the cuDNN path's job):
 *  - forward: a CTA owns 64 query rows of one (batch, head) (the MoH-selected rows when qsel is
 *    set) and walks the key tiles up to the causal limit with an online softmax;
 *  - backward: D = rowsum(dout * out) first; then a CTA per (batch, kv head, 64 keys) owns dK/dV
 *    of those keys and loops over the query heads of its group and their query tiles, and a
 *    second CTA per (batch, head, 64 queries) owns dQ and loops over the key tiles (P and dS are
 *    recomputed from q, k and lse). Every output element has exactly one writer, so there are no
 *    atomics and results are bit-identical run to run; the prefix gradients, which every batch
 *    row touches, go through per-batch partials summed in batch order.
 * Visibility is decided per (query, key) pair (position, segment, S2 block rule) and equals the
 * CPU kernel's tile rules whenever the attention.h contracts hold; a key tile no query of the
 * query tile may see is skipped without loading it. */
#include "cuda_common.cuh"
#include "cuda_ctx.h"

extern "C" {
#include "ops.h"
}
#include "attention.h"
#include "s2.h"

#include <climits>
#include <math.h>

namespace {

constexpr int BQ = 64;  /* query rows per tile */
constexpr int BK = 64;  /* keys per tile */
constexpr int NT = 256; /* threads per CTA: a 16 x 16 grid, each thread a 4 x 4 micro-tile */
constexpr int LP = BK + 1;

/* One attention problem on the device: the queries of (b, h) against the keys/values of
 * (b, h / group), with the sparsity of attn_block / attn_shape. Every pointer is a device
 * pointer; s2 is held by value. */
struct attn_job {
    const float *q, *k, *v;
    long long q_bs, kv_bs; /* batch strides in floats (kv_bs = 0: one prefix shared by all b) */
    int ldq, ldkv;
    const int32_t *qpos, *kpos; /* (Tq), (Tk); NULL: position = index + *_off */
    int qpos_off, kpos_off;
    int B, Tq, Tk, H, Hkv, hd;
    int use_s2;
    struct s2_pattern s2;
    int head0;
    const int32_t *qsel, *qsel_off; /* MoH rows of (b, h), or NULL */
    const int32_t *qseg, *kseg;     /* (B, Tq), (B, Tk) segment ids, or NULL */
    int rnd; /* train.precision bf16: q, k, v, dO tiles and P, dS rounded to bf16 (RNE) */
};

/* round to the nearest bf16 (ties to even), kept as float: a bf16 tile product in fp32 */
__device__ __forceinline__ float bfr(float x) {
    return __bfloat162float(__float2bfloat16_rn(x));
}

/* Per-row facts of a query tile and a key tile, shared by the CTA. Invalid rows carry positions
 * no pair can satisfy (query INT_MIN, key INT_MAX), so the mask needs no bounds checks. */
struct qmeta {
    int t[BQ];   /* row index in the Tq rows, -1 past the end */
    int pos[BQ]; /* absolute position */
    int seg[BQ];
    int blk[BQ]; /* S2 block of the position */
    float L[BQ]; /* backward: lse of the row */
    float D[BQ]; /* backward: rowsum(dout * out) */
};
struct kmeta {
    int row[BK]; /* key index in the Tk keys, -1 past the end */
    int pos[BK];
    int seg[BK];
    int blk[BK];
    int vert[BK]; /* S2: the key's block is strided for this kv head (or the head is dense) */
};

__device__ __forceinline__ int job_rows(const attn_job &a, int b, int h, const int32_t **idx) {
    if (!a.qsel) {
        *idx = nullptr;
        return a.Tq;
    }
    const int o0 = a.qsel_off[b * a.H + h];
    *idx = a.qsel + o0;
    return a.qsel_off[b * a.H + h + 1] - o0;
}

/* s2_vert of s2.h on the device (same integer arithmetic) */
__device__ __forceinline__ int s2_vert_dev(const struct s2_pattern &p, int g, long long kb) {
    return g >= p.n_kv - p.dense || (kb + (long long)g * p.step + p.offset) % p.vert == 0;
}

/* Global kv head of local kv head kvh for the S2 pattern (as kv_side_of in attention_cpu.c). */
__device__ __forceinline__ int s2_group_head(const attn_job &a, int kvh) {
    return a.use_s2 ? (a.head0 + kvh * (a.H / a.Hkv)) / a.s2.group : 0;
}

/* Row r of the query tile starting at list index i0 (n rows in the list). Threads r < BQ. */
__device__ __forceinline__ void load_qmeta(qmeta &qm, const attn_job &a, int b, int i0, int n,
                                           const int32_t *idx, int r, const float *lrow,
                                           const float *drow) {
    const int i = i0 + r;
    int t = -1, pos = INT_MIN, seg = 0, blk = 0;
    float L = 0.0f, D = 0.0f;
    if (i < n) {
        t = idx ? idx[i] : i;
        pos = a.qpos ? a.qpos[t] : t + a.qpos_off;
        seg = a.qseg ? a.qseg[(long long)b * a.Tq + t] : 0;
        blk = a.use_s2 ? pos / a.s2.block : 0;
        if (lrow)
            L = lrow[t];
        if (drow)
            D = drow[t];
    }
    qm.t[r] = t;
    qm.pos[r] = pos;
    qm.seg[r] = seg;
    qm.blk[r] = blk;
    qm.L[r] = L;
    qm.D[r] = D;
}

/* Key c of the key tile starting at j0. Threads c < BK. */
__device__ __forceinline__ void load_kmeta(kmeta &km, const attn_job &a, int b, int j0, int g,
                                           int c) {
    const int j = j0 + c;
    int row = -1, pos = INT_MAX, seg = 0, blk = 0, vert = 1;
    if (j < a.Tk) {
        row = j;
        pos = a.kpos ? a.kpos[j] : j + a.kpos_off;
        seg = a.kseg ? a.kseg[(long long)b * a.Tk + j] : 0;
        if (a.use_s2) {
            blk = pos / a.s2.block;
            vert = s2_vert_dev(a.s2, g, blk);
        }
    }
    km.row[c] = row;
    km.pos[c] = pos;
    km.seg[c] = seg;
    km.blk[c] = blk;
    km.vert[c] = vert;
}

/* Query at tile row r sees key at tile column c: causal by position, same segment, and the S2
 * block rule (strided block, or inside the local window of the query's block). */
__device__ __forceinline__ bool pair_visible(const attn_job &a, const qmeta &qm, const kmeta &km,
                                             int r, int c) {
    if (km.pos[c] > qm.pos[r])
        return false;
    if (a.qseg && km.seg[c] != qm.seg[r])
        return false;
    if (a.use_s2 && !km.vert[c] && qm.blk[r] - km.blk[c] >= a.s2.local)
        return false;
    return true;
}

/* Copy 64 rows (row indices in rows[], -1 = zero row) of hd floats starting at base (row stride
 * ld) into dst with row stride LDS, zero-padded to HDP columns. Consecutive threads read
 * consecutive columns of a row. */
template <int HDP, int LDS>
__device__ __forceinline__ void load_rows(float *dst, const float *base, long long ld,
                                          const int *rows, int hd, int rnd) {
    for (int e = threadIdx.x; e < 64 * HDP; e += NT) {
        const int r = e / HDP, d = e % HDP, t = rows[r];
        const float v = (t >= 0 && d < hd) ? base[(long long)t * ld + d] : 0.0f;
        dst[r * LDS + d] = rnd ? bfr(v) : v;
    }
}

/* 16-byte shared-memory read (rows are padded to a multiple of 4 floats, so every row and every
 * d % 4 == 0 column is 16-byte aligned) and a 4-term FMA chain in d order. */
__device__ __forceinline__ float4 ld4(const float *p) {
    return *reinterpret_cast<const float4 *>(p);
}
__device__ __forceinline__ float dot4(float4 a, float4 b, float acc) {
    acc = fmaf(a.x, b.x, acc);
    acc = fmaf(a.y, b.y, acc);
    acc = fmaf(a.z, b.z, acc);
    return fmaf(a.w, b.w, acc);
}

/* Sum / max over the 16 lanes that share a tile row (lanes differ in the low 4 bits). The xor
 * tree is fixed, so the result does not depend on timing. */
__device__ __forceinline__ float row16_sum(float v) {
#pragma unroll
    for (int o = 8; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float row16_max(float v) {
#pragma unroll
    for (int o = 8; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* ------------------------------------------------------------------------------------------ */
/* CUDA kernels */

/* Forward: grid (ceil(Tq / BQ), H, B). out (B, Tq, H*hd), lse (B, H, Tq). */
template <int HDP>
__global__ void __launch_bounds__(NT)
    attn_fwd_kernel(float *out, float *lse, const attn_job a, int merge, float scale) {
    constexpr int LD = HDP + 4, NJ = HDP / 16;
    extern __shared__ float4 smem4[]; /* float4: the base is 16-byte aligned for ld4 */
    float *smem = reinterpret_cast<float *>(smem4);
    float *Qs = smem;          /* BQ x LD */
    float *Ks = Qs + BQ * LD;  /* BK x LD */
    float *Vs = Ks + BK * LD;  /* BK x HDP */
    float *Ps = Vs + BK * HDP; /* BQ x LP */
    __shared__ qmeta qm;
    __shared__ kmeta km;

    /* the last query tiles see the most keys: start them first (shorter tail) */
    const int b = blockIdx.z, h = blockIdx.y, i0 = (gridDim.x - 1 - blockIdx.x) * BQ;
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    const int kvh = h / (a.H / a.Hkv), g = s2_group_head(a, kvh);
    const int32_t *idx;
    const int n = job_rows(a, b, h, &idx);
    if (i0 >= n)
        return; /* uniform over the CTA */
    const long long ldo = (long long)a.H * a.hd;
    float *ob = out + (long long)b * a.Tq * ldo + (long long)h * a.hd;
    float *lb = lse + ((long long)b * a.H + h) * a.Tq;

    if (tid < BQ)
        load_qmeta(qm, a, b, i0, n, idx, tid, nullptr, nullptr);
    __syncthreads();
    load_rows<HDP, LD>(Qs, a.q + (long long)b * a.q_bs + (long long)h * a.hd, a.ldq, qm.t, a.hd,
              a.rnd);
    int qmax = INT_MIN;
    for (int r = 0; r < BQ; r++)
        qmax = max(qmax, qm.pos[r]);

    float o[4][NJ], m[4], l[4];
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int t = qm.t[ty + 16 * i];
        m[i] = -INFINITY;
        l[i] = 0.0f;
#pragma unroll
        for (int jj = 0; jj < NJ; jj++)
            o[i][jj] = 0.0f;
        if (merge && t >= 0 && lb[t] > -INFINITY) {
            /* resume the online softmax from the normalised state */
            m[i] = lb[t];
            l[i] = 1.0f;
#pragma unroll
            for (int jj = 0; jj < NJ; jj++) {
                const int d = tx + 16 * jj;
                o[i][jj] = d < a.hd ? ob[(long long)t * ldo + d] : 0.0f;
            }
        }
    }

    for (int j0 = 0; j0 < a.Tk; j0 += BK) {
        __syncthreads(); /* the previous tile's K, V, P and key facts are no longer read */
        if (tid < BK)
            load_kmeta(km, a, b, j0, g, tid);
        __syncthreads();
        if (km.pos[0] > qmax)
            break; /* keys are in increasing position: nothing further is visible */
        bool vis[4][4];
        int any = 0;
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) {
                vis[i][j] = pair_visible(a, qm, km, ty + 16 * i, tx + 16 * j);
                any |= vis[i][j];
            }
        if (!__syncthreads_or(any))
            continue; /* S2 / segments: no query of the tile sees this key tile */
        const long long kvoff = (long long)b * a.kv_bs + (long long)kvh * a.hd;
        load_rows<HDP, LD>(Ks, a.k + kvoff, a.ldkv, km.row, a.hd, a.rnd);
        load_rows<HDP, HDP>(Vs, a.v + kvoff, a.ldkv, km.row, a.hd, a.rnd);
        __syncthreads();

        float s[4][4];
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++)
                s[i][j] = 0.0f;
#pragma unroll 2
        for (int d = 0; d < HDP; d += 4) {
            float4 qv[4], kv[4];
#pragma unroll
            for (int i = 0; i < 4; i++)
                qv[i] = ld4(Qs + (ty + 16 * i) * LD + d);
#pragma unroll
            for (int j = 0; j < 4; j++)
                kv[j] = ld4(Ks + (tx + 16 * j) * LD + d);
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++)
                    s[i][j] = dot4(qv[i], kv[j], s[i][j]);
        }

#pragma unroll
        for (int i = 0; i < 4; i++) {
            float tm = -INFINITY;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                s[i][j] *= scale;
                if (vis[i][j])
                    tm = fmaxf(tm, s[i][j]);
            }
            tm = row16_max(tm); /* the same on the 16 lanes of the row */
            /* a row that sees no key of this tile keeps its state (exp(-inf - -inf) is NaN) */
            const bool upd = tm > -INFINITY;
            const float mx = upd ? fmaxf(m[i], tm) : m[i];
            float p[4], sum = 0.0f;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                p[j] = (upd && vis[i][j]) ? expf(s[i][j] - mx) : 0.0f;
                sum += p[j];
            }
            sum = row16_sum(sum);
            if (upd) {
                const float alpha = expf(m[i] - mx); /* 0 when m was -inf */
                l[i] = l[i] * alpha + sum;
                m[i] = mx;
#pragma unroll
                for (int jj = 0; jj < NJ; jj++)
                    o[i][jj] *= alpha;
            }
#pragma unroll
            for (int j = 0; j < 4; j++)
                Ps[(ty + 16 * i) * LP + tx + 16 * j] = a.rnd ? bfr(p[j]) : p[j];
        }
        __syncthreads();
#pragma unroll 4
        for (int c = 0; c < BK; c++) {
            float pv[4];
#pragma unroll
            for (int i = 0; i < 4; i++)
                pv[i] = Ps[(ty + 16 * i) * LP + c];
#pragma unroll
            for (int jj = 0; jj < NJ; jj++) {
                const float vv = Vs[c * HDP + tx + 16 * jj];
#pragma unroll
                for (int i = 0; i < 4; i++)
                    o[i][jj] = fmaf(pv[i], vv, o[i][jj]);
            }
        }
    }

#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int t = qm.t[ty + 16 * i];
        if (t < 0)
            continue;
        float *dst = ob + (long long)t * ldo;
        if (l[i] > 0.0f) {
            const float inv = 1.0f / l[i];
#pragma unroll
            for (int jj = 0; jj < NJ; jj++) {
                const int d = tx + 16 * jj;
                if (d < a.hd)
                    dst[d] = o[i][jj] * inv;
            }
            if (tx == 0)
                lb[t] = m[i] + logf(l[i]);
        } else {
#pragma unroll
            for (int jj = 0; jj < NJ; jj++) {
                const int d = tx + 16 * jj;
                if (d < a.hd)
                    dst[d] = 0.0f;
            }
            if (tx == 0)
                lb[t] = -INFINITY;
        }
    }
}

/* The 4 x 4 micro-tile of S = scale * Q K^T and dP = dO V^T of thread (ty, tx), then
 * P = exp(S - L) and dS = P (dP - D) scale on visible pairs (0 elsewhere). */
template <int HDP>
__device__ __forceinline__ void p_ds_tile(float p[4][4], float ds[4][4], const float *Qs,
                                          const float *dOs, const float *Ks, const float *Vs,
                                          const qmeta &qm, const bool vis[4][4], float scale,
                                          int rnd) {
    constexpr int LD = HDP + 4;
    const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
    float s[4][4], dp[4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) {
            s[i][j] = 0.0f;
            dp[i][j] = 0.0f;
        }
    for (int d = 0; d < HDP; d += 4) {
        float4 qv[4], gv[4], kv[4], vv[4];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            qv[i] = ld4(Qs + (ty + 16 * i) * LD + d);
            gv[i] = ld4(dOs + (ty + 16 * i) * LD + d);
        }
#pragma unroll
        for (int j = 0; j < 4; j++) {
            kv[j] = ld4(Ks + (tx + 16 * j) * LD + d);
            vv[j] = ld4(Vs + (tx + 16 * j) * LD + d);
        }
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) {
                s[i][j] = dot4(qv[i], kv[j], s[i][j]);
                dp[i][j] = dot4(gv[i], vv[j], dp[i][j]);
            }
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int r = ty + 16 * i;
        const float L = qm.L[r], D = qm.D[r];
#pragma unroll
        for (int j = 0; j < 4; j++) {
            /* a visible pair has a finite lse; the guard keeps exp(x - -inf) out anyway */
            p[i][j] = (vis[i][j] && L > -INFINITY) ? expf(s[i][j] * scale - L) : 0.0f;
            if (rnd) /* as the CPU's bf16 tiles: dS from the rounded P, then rounded itself */
                p[i][j] = bfr(p[i][j]);
            ds[i][j] = p[i][j] * (dp[i][j] - D) * scale;
            if (rnd)
                ds[i][j] = bfr(ds[i][j]);
        }
    }
}

/* dK/dV: grid (ceil(Tk / BK), Hkv, B); ACCUMULATES into dk/dv (rows of stride lddkv, batch stride
 * dkv_bs, kv head column kvh*hd). dout (B, Tq, H*hd); lse, Dv (B, H, Tq). */
template <int HDP>
__global__ void __launch_bounds__(NT)
    attn_bwd_kv_kernel(float *dk, float *dv, int lddkv, long long dkv_bs, const float *dout,
                       const float *lse, const float *Dv, const attn_job a, float scale) {
    constexpr int LD = HDP + 4, NJ = HDP / 16;
    extern __shared__ float4 smem4[]; /* float4: the base is 16-byte aligned for ld4 */
    float *smem = reinterpret_cast<float *>(smem4);
    float *Ks = smem;          /* BK x LD */
    float *Vs = Ks + BK * LD;  /* BK x LD */
    float *Qs = Vs + BK * LD;  /* BQ x LD */
    float *dOs = Qs + BQ * LD; /* BQ x LD */
    float *Ps = dOs + BQ * LD; /* BQ x LP */
    float *dSs = Ps + BQ * LP; /* BQ x LP */
    __shared__ qmeta qm;
    __shared__ kmeta km;

    const int b = blockIdx.z, kvh = blockIdx.y, j0 = blockIdx.x * BK;
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    const int group = a.H / a.Hkv, g = s2_group_head(a, kvh);
    const long long ldo = (long long)a.H * a.hd;

    if (tid < BK)
        load_kmeta(km, a, b, j0, g, tid);
    __syncthreads();
    const long long kvoff = (long long)b * a.kv_bs + (long long)kvh * a.hd;
    load_rows<HDP, LD>(Ks, a.k + kvoff, a.ldkv, km.row, a.hd, a.rnd);
    load_rows<HDP, LD>(Vs, a.v + kvoff, a.ldkv, km.row, a.hd, a.rnd);
    /* Query rows come in increasing position, so the rows that may see this key tile form one
     * run: none before the tile's first key (causal), and with S2, when the tile holds no strided
     * block, none at or past the end of the local window of its last block. */
    int qlimit = INT_MAX;
    if (a.use_s2) {
        int anyv = 0, kbmax = INT_MIN;
        for (int c = 0; c < BK; c++)
            if (km.row[c] >= 0) {
                anyv |= km.vert[c];
                kbmax = max(kbmax, km.blk[c]);
            }
        if (!anyv)
            qlimit = (kbmax + a.s2.local) * a.s2.block;
    }
    const int istart =
        (!a.qsel && !a.qpos) ? max(0, km.pos[0] - a.qpos_off) / BQ * BQ : 0; /* rows = positions */

    float dka[4][NJ], dva[4][NJ];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int jj = 0; jj < NJ; jj++) {
            dka[i][jj] = 0.0f;
            dva[i][jj] = 0.0f;
        }

    for (int h = kvh * group; h < (kvh + 1) * group; h++) {
        const int32_t *idx;
        const int n = job_rows(a, b, h, &idx);
        const float *lrow = lse + ((long long)b * a.H + h) * a.Tq;
        const float *drow = Dv + ((long long)b * a.H + h) * a.Tq;
        const float *dob = dout + (long long)b * a.Tq * ldo + (long long)h * a.hd;
        const float *qb = a.q + (long long)b * a.q_bs + (long long)h * a.hd;
        for (int i0 = istart; i0 < n; i0 += BQ) {
            __syncthreads(); /* the previous query tile is no longer read */
            if (tid < BQ)
                load_qmeta(qm, a, b, i0, n, idx, tid, nullptr, nullptr);
            __syncthreads();
            if (qm.pos[0] >= qlimit)
                break; /* past the local window of every key block of the tile */
            bool vis[4][4];
            int any = 0;
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    vis[i][j] = pair_visible(a, qm, km, ty + 16 * i, tx + 16 * j);
                    any |= vis[i][j];
                }
            if (!__syncthreads_or(any))
                continue;
            if (tid < BQ) { /* only for tiles that are computed: skipping stays cheap */
                const int t = qm.t[tid];
                qm.L[tid] = t >= 0 ? lrow[t] : 0.0f;
                qm.D[tid] = t >= 0 ? drow[t] : 0.0f;
            }
            load_rows<HDP, LD>(Qs, qb, a.ldq, qm.t, a.hd, a.rnd);
            load_rows<HDP, LD>(dOs, dob, ldo, qm.t, a.hd, a.rnd);
            __syncthreads();
            float p[4][4], ds[4][4];
            p_ds_tile<HDP>(p, ds, Qs, dOs, Ks, Vs, qm, vis, scale, a.rnd);
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    Ps[(ty + 16 * i) * LP + tx + 16 * j] = p[i][j];
                    dSs[(ty + 16 * i) * LP + tx + 16 * j] = ds[i][j];
                }
            __syncthreads();
            /* dV_c += sum_r P[r][c] dO_r;  dK_c += sum_r dS[r][c] Q_r  (this thread: keys
             * ty + 16 i, columns tx + 16 jj) */
#pragma unroll 2
            for (int r = 0; r < BQ; r++) {
                float pk[4], sk[4];
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    pk[i] = Ps[r * LP + ty + 16 * i];
                    sk[i] = dSs[r * LP + ty + 16 * i];
                }
#pragma unroll
                for (int jj = 0; jj < NJ; jj++) {
                    const float gv = dOs[r * LD + tx + 16 * jj];
                    const float qv = Qs[r * LD + tx + 16 * jj];
#pragma unroll
                    for (int i = 0; i < 4; i++) {
                        dva[i][jj] = fmaf(pk[i], gv, dva[i][jj]);
                        dka[i][jj] = fmaf(sk[i], qv, dka[i][jj]);
                    }
                }
            }
        }
    }

#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int j = km.row[ty + 16 * i];
        if (j < 0)
            continue;
        const long long o = (long long)b * dkv_bs + (long long)j * lddkv + (long long)kvh * a.hd;
#pragma unroll
        for (int jj = 0; jj < NJ; jj++) {
            const int d = tx + 16 * jj;
            if (d < a.hd) {
                dk[o + d] += dka[i][jj];
                dv[o + d] += dva[i][jj];
            }
        }
    }
}

/* dQ: grid (ceil(Tq / BQ), H, B); ACCUMULATES into dq (rows of stride lddq, batch stride
 * Tq*lddq, head column h*hd). */
template <int HDP>
__global__ void __launch_bounds__(NT)
    attn_bwd_q_kernel(float *dq, int lddq, const float *dout, const float *lse, const float *Dv,
                      const attn_job a, float scale) {
    constexpr int LD = HDP + 4, NJ = HDP / 16;
    extern __shared__ float4 smem4[]; /* float4: the base is 16-byte aligned for ld4 */
    float *smem = reinterpret_cast<float *>(smem4);
    float *Qs = smem;          /* BQ x LD */
    float *dOs = Qs + BQ * LD; /* BQ x LD */
    float *Ks = dOs + BQ * LD; /* BK x LD */
    float *Vs = Ks + BK * LD;  /* BK x LD */
    float *dSs = Vs + BK * LD; /* BQ x LP */
    __shared__ qmeta qm;
    __shared__ kmeta km;

    const int b = blockIdx.z, h = blockIdx.y, i0 = (gridDim.x - 1 - blockIdx.x) * BQ;
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    const int kvh = h / (a.H / a.Hkv), g = s2_group_head(a, kvh);
    const int32_t *idx;
    const int n = job_rows(a, b, h, &idx);
    if (i0 >= n)
        return;
    const long long ldo = (long long)a.H * a.hd;
    const float *lrow = lse + ((long long)b * a.H + h) * a.Tq;
    const float *drow = Dv + ((long long)b * a.H + h) * a.Tq;

    if (tid < BQ)
        load_qmeta(qm, a, b, i0, n, idx, tid, lrow, drow);
    __syncthreads();
    load_rows<HDP, LD>(Qs, a.q + (long long)b * a.q_bs + (long long)h * a.hd, a.ldq, qm.t, a.hd,
              a.rnd);
    load_rows<HDP, LD>(dOs, dout + (long long)b * a.Tq * ldo + (long long)h * a.hd, ldo, qm.t,
                       a.hd, a.rnd);
    int qmax = INT_MIN;
    for (int r = 0; r < BQ; r++)
        qmax = max(qmax, qm.pos[r]);

    float dqa[4][NJ];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int jj = 0; jj < NJ; jj++)
            dqa[i][jj] = 0.0f;

    for (int j0 = 0; j0 < a.Tk; j0 += BK) {
        __syncthreads();
        if (tid < BK)
            load_kmeta(km, a, b, j0, g, tid);
        __syncthreads();
        if (km.pos[0] > qmax)
            break;
        bool vis[4][4];
        int any = 0;
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) {
                vis[i][j] = pair_visible(a, qm, km, ty + 16 * i, tx + 16 * j);
                any |= vis[i][j];
            }
        if (!__syncthreads_or(any))
            continue;
        const long long kvoff = (long long)b * a.kv_bs + (long long)kvh * a.hd;
        load_rows<HDP, LD>(Ks, a.k + kvoff, a.ldkv, km.row, a.hd, a.rnd);
        load_rows<HDP, LD>(Vs, a.v + kvoff, a.ldkv, km.row, a.hd, a.rnd);
        __syncthreads();
        float p[4][4], ds[4][4];
        p_ds_tile<HDP>(p, ds, Qs, dOs, Ks, Vs, qm, vis, scale, a.rnd);
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++)
                dSs[(ty + 16 * i) * LP + tx + 16 * j] = ds[i][j];
        __syncthreads();
#pragma unroll 4
        for (int c = 0; c < BK; c++) {
            float sv[4];
#pragma unroll
            for (int i = 0; i < 4; i++)
                sv[i] = dSs[(ty + 16 * i) * LP + c];
#pragma unroll
            for (int jj = 0; jj < NJ; jj++) {
                const float kv = Ks[c * LD + tx + 16 * jj];
#pragma unroll
                for (int i = 0; i < 4; i++)
                    dqa[i][jj] = fmaf(sv[i], kv, dqa[i][jj]);
            }
        }
    }

    float *dqb = dq + (long long)b * a.Tq * lddq + (long long)h * a.hd;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int t = qm.t[ty + 16 * i];
        if (t < 0)
            continue;
#pragma unroll
        for (int jj = 0; jj < NJ; jj++) {
            const int d = tx + 16 * jj;
            if (d < a.hd)
                dqb[(long long)t * lddq + d] += dqa[i][jj];
        }
    }
}

/* D[b, h, t] = sum_d dout[b, t, h*hd + d] * out[b, t, h*hd + d]: one warp per (b, t, h). */
__global__ void attn_rowdot_kernel(float *D, const float *dout, const float *out, int B, int T,
                                   int H, int hd, int rnd) {
    const long long w = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (w >= (long long)B * T * H)
        return; /* whole warps leave together */
    const int h = (int)(w % H);
    const long long bt = w / H;
    const int t = (int)(bt % T), b = (int)(bt / T);
    const long long o = bt * H * hd + (long long)h * hd;
    float acc = 0.0f;
    for (int d = lane; d < hd; d += 32)
        acc = fmaf(rnd ? bfr(dout[o + d]) : dout[o + d], out[o + d], acc); /* dO as the tiles see it */
#pragma unroll
    for (int s = 16; s > 0; s >>= 1)
        acc += __shfl_xor_sync(0xffffffffu, acc, s);
    if (lane == 0)
        D[((long long)b * H + h) * T + t] = acc;
}

__global__ void attn_fill_kernel(float *p, long long n, float v) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x)
        p[i] = v;
}

/* dst[j*ld + c] += sum_b part[(b*rows + j)*w + c], b in order. */
__global__ void attn_sum_batches_kernel(float *dst, int ld, const float *part, int B, int rows,
                                        int w) {
    const long long n = (long long)rows * w;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < n;
         e += (long long)gridDim.x * blockDim.x) {
        float acc = 0.0f;
        for (int b = 0; b < B; b++)
            acc += part[(long long)b * n + e];
        dst[(e / w) * ld + e % w] += acc;
    }
}

constexpr int DT = 128; /* decode threads */

/* Fixed-order block reductions over DT threads (warp xor tree, then the warps in order). */
__device__ __forceinline__ float block_max(float v, float *red) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if ((threadIdx.x & 31) == 0)
        red[threadIdx.x >> 5] = v;
    __syncthreads();
    float r = red[0];
    for (int w = 1; w < DT / 32; w++)
        r = fmaxf(r, red[w]);
    __syncthreads();
    return r;
}
__device__ __forceinline__ float block_sum(float v, float *red) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    if ((threadIdx.x & 31) == 0)
        red[threadIdx.x >> 5] = v;
    __syncthreads();
    float r = red[0];
    for (int w = 1; w < DT / 32; w++)
        r += red[w];
    __syncthreads();
    return r;
}

/* One query position against a KV cache: grid H, one CTA per query head, keys in chunks of DT
 * with an online softmax. user != NULL: PASTA, the weight of keys with user[j] == 0 is scaled by
 * alpha before the normalisation. Dynamic shared memory: hd + DT floats. */
__global__ void __launch_bounds__(DT)
    attn_decode_kernel(float *out, const float *q, const float *kc, const float *vc, int n_ctx,
                       int ld_kv, int H, int Hkv, int hd, const uint8_t *user, float alpha,
                       float scale) {
    constexpr int ND = 4; /* hd <= ND * DT */
    extern __shared__ float dsm[];
    float *qs = dsm, *ps = dsm + hd;
    __shared__ float red[DT / 32];
    const int h = blockIdx.x, tid = threadIdx.x;
    const long long kvo = (long long)(h / (H / Hkv)) * hd;
    for (int d = tid; d < hd; d += DT)
        qs[d] = q[(long long)h * hd + d];
    __syncthreads();
    float o[ND] = {0.0f, 0.0f, 0.0f, 0.0f}, m = -INFINITY, l = 0.0f;
    for (int j0 = 0; j0 < n_ctx; j0 += DT) {
        const int j = j0 + tid;
        float s = -INFINITY;
        if (j < n_ctx) {
            const float *kr = kc + (long long)j * ld_kv + kvo;
            float acc = 0.0f;
            for (int d = 0; d < hd; d++)
                acc = fmaf(qs[d], kr[d], acc);
            s = acc * scale;
        }
        const float mx = fmaxf(m, block_max(s, red)); /* finite: key j0 exists */
        float p = j < n_ctx ? expf(s - mx) : 0.0f;
        if (user && j < n_ctx && !user[j])
            p *= alpha;
        ps[tid] = p;
        const float csum = block_sum(p, red); /* its barriers also publish ps */
        const float ar = expf(m - mx);
        l = l * ar + csum;
        m = mx;
        const int cnt = min(DT, n_ctx - j0);
#pragma unroll
        for (int k = 0; k < ND; k++) {
            const int d = tid + k * DT;
            if (d < hd) {
                float acc = o[k] * ar;
                for (int c = 0; c < cnt; c++)
                    acc = fmaf(ps[c], vc[(long long)(j0 + c) * ld_kv + kvo + d], acc);
                o[k] = acc;
            }
        }
        __syncthreads(); /* ps is rewritten by the next chunk */
    }
#pragma unroll
    for (int k = 0; k < ND; k++) {
        const int d = tid + k * DT;
        if (d < hd)
            out[(long long)h * hd + d] = l > 0.0f ? o[k] / l : 0.0f;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* kernel launchers */

size_t fwd_smem(int hdp) {
    return sizeof(float) *
           ((size_t)BQ * (hdp + 4) + (size_t)BK * (hdp + 4) + (size_t)BK * hdp + (size_t)BQ * LP);
}
size_t bwd_kv_smem(int hdp) {
    return sizeof(float) * (4 * (size_t)64 * (hdp + 4) + 2 * (size_t)BQ * LP);
}
size_t bwd_q_smem(int hdp) {
    return sizeof(float) * (4 * (size_t)64 * (hdp + 4) + (size_t)BQ * LP);
}

/* Raise the dynamic shared-memory limit of a kernel once (above 48 KB needs the opt-in). */
template <typename K> void smem_optin(K kernel, size_t bytes, int *done) {
    if (*done)
        return;
    HW_CHECK_CUDA(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    *done = 1;
}

int padded_hd(int hd) {
    HW_CUDA_ASSERT(hd >= 1 && hd <= 128);
    return hd <= 16 ? 16 : hd <= 32 ? 32 : hd <= 64 ? 64 : 128;
}

template <int HDP> void launch_fwd(float *out, float *lse, const attn_job &a, int merge) {
    static int optin;
    const size_t sm = fwd_smem(HDP);
    smem_optin(attn_fwd_kernel<HDP>, sm, &optin);
    dim3 grid(cdiv(a.Tq, BQ), a.H, a.B);
    attn_fwd_kernel<HDP>
        <<<grid, NT, sm, cuda_ctx()->stream>>>(out, lse, a, merge, 1.0f / sqrtf((float)a.hd));
    HW_CHECK_LAUNCH();
}

template <int HDP>
void launch_bwd(float *dq, int lddq, float *dk, float *dv, int lddkv, long long dkv_bs,
                const float *dout, const float *lse, const float *D, const attn_job &a) {
    static int optin_kv, optin_q;
    const float scale = 1.0f / sqrtf((float)a.hd);
    cudaStream_t st = cuda_ctx()->stream;
    if (dk) {
        const size_t sm = bwd_kv_smem(HDP);
        smem_optin(attn_bwd_kv_kernel<HDP>, sm, &optin_kv);
        dim3 grid(cdiv(a.Tk, BK), a.Hkv, a.B);
        attn_bwd_kv_kernel<HDP>
            <<<grid, NT, sm, st>>>(dk, dv, lddkv, dkv_bs, dout, lse, D, a, scale);
        HW_CHECK_LAUNCH();
    }
    if (dq) {
        const size_t sm = bwd_q_smem(HDP);
        smem_optin(attn_bwd_q_kernel<HDP>, sm, &optin_q);
        dim3 grid(cdiv(a.Tq, BQ), a.H, a.B);
        attn_bwd_q_kernel<HDP><<<grid, NT, sm, st>>>(dq, lddq, dout, lse, D, a, scale);
        HW_CHECK_LAUNCH();
    }
}

/* train.precision: bf16 (attention_cuda_set_bf16) */
int g_bf16;

void run_fwd(float *out, float *lse, const attn_job &a0, int merge) {
    attn_job a = a0;
    a.rnd = g_bf16;
    if (a.B <= 0 || a.Tq <= 0 || a.H <= 0)
        return;
    if (a.qsel && !merge) {
        /* rows no token selected: out = 0, lse = -inf; the kernel overwrites the selected ones */
        cudaStream_t st = cuda_ctx()->stream;
        const long long n = (long long)a.B * a.Tq * a.H;
        HW_CHECK_CUDA(cudaMemsetAsync(out, 0, sizeof(float) * (size_t)n * a.hd, st));
        attn_fill_kernel<<<cdiv(n, 256) < 4096 ? cdiv(n, 256) : 4096, 256, 0, st>>>(lse, n,
                                                                                    -INFINITY);
        HW_CHECK_LAUNCH();
    }
    if (a.Tk <= 0) {
        if (!merge && !a.qsel) { /* no keys at all: every row sees nothing */
            cudaStream_t st = cuda_ctx()->stream;
            const long long n = (long long)a.B * a.Tq * a.H;
            HW_CHECK_CUDA(cudaMemsetAsync(out, 0, sizeof(float) * (size_t)n * a.hd, st));
            attn_fill_kernel<<<cdiv(n, 256) < 4096 ? cdiv(n, 256) : 4096, 256, 0, st>>>(lse, n,
                                                                                        -INFINITY);
            HW_CHECK_LAUNCH();
        }
        return;
    }
    switch (padded_hd(a.hd)) {
    case 16:
        launch_fwd<16>(out, lse, a, merge);
        break;
    case 32:
        launch_fwd<32>(out, lse, a, merge);
        break;
    case 64:
        launch_fwd<64>(out, lse, a, merge);
        break;
    default:
        launch_fwd<128>(out, lse, a, merge);
        break;
    }
}

void run_bwd(float *dq, int lddq, float *dk, float *dv, int lddkv, long long dkv_bs,
             const float *dout, const float *lse, const float *D, const attn_job &a0) {
    attn_job a = a0;
    a.rnd = g_bf16;
    if (a.B <= 0 || a.Tq <= 0 || a.Tk <= 0 || a.H <= 0)
        return;
    switch (padded_hd(a.hd)) {
    case 16:
        launch_bwd<16>(dq, lddq, dk, dv, lddkv, dkv_bs, dout, lse, D, a);
        break;
    case 32:
        launch_bwd<32>(dq, lddq, dk, dv, lddkv, dkv_bs, dout, lse, D, a);
        break;
    case 64:
        launch_bwd<64>(dq, lddq, dk, dv, lddkv, dkv_bs, dout, lse, D, a);
        break;
    default:
        launch_bwd<128>(dq, lddq, dk, dv, lddkv, dkv_bs, dout, lse, D, a);
        break;
    }
}

/* D (B, H, T) = rowsum(dout * out) per head. */
void run_rowdot(float *D, const float *dout, const float *out, int B, int T, int H, int hd) {
    const long long warps = (long long)B * T * H;
    if (warps <= 0)
        return;
    attn_rowdot_kernel<<<cdiv(warps * 32, 256), 256, 0, cuda_ctx()->stream>>>(D, dout, out, B, T, H,
                                                                              hd, g_bf16);
    HW_CHECK_LAUNCH();
}

/* Grown-on-demand device scratch (D rows, prefix partials). Only used on the compute stream,
 * so one buffer serves every call in turn; growing waits for the stream before freeing. */
float *g_scratch;
size_t g_scratch_n;

float *scratch(size_t n) {
    if (n > g_scratch_n) {
        struct cuda_ctx *c = cuda_ctx();
        if (g_scratch) {
            HW_CHECK_CUDA(cudaStreamSynchronize(c->stream));
            HW_CHECK_CUDA(cudaFree(g_scratch));
            cuda_mem_note(g_scratch, 0);
        }
        g_scratch = nullptr;
        HW_CHECK_CUDA(cudaMalloc(&g_scratch, sizeof(float) * n));
        cuda_mem_note(g_scratch, sizeof(float) * n);
        g_scratch_n = n;
    }
    return g_scratch;
}

attn_job job_of_block(const struct attn_block *b) {
    attn_job a = {};
    a.q = b->q;
    a.k = b->k;
    a.v = b->v;
    a.ldq = b->ldq;
    a.ldkv = b->ldkv;
    a.q_bs = (long long)b->Tq * b->ldq;
    a.kv_bs = (long long)b->Tk * b->ldkv;
    a.qpos = b->qpos;
    a.kpos = b->kpos;
    a.B = b->B;
    a.Tq = b->Tq;
    a.Tk = b->Tk;
    a.H = b->H;
    a.Hkv = b->Hkv;
    a.hd = b->hd;
    a.use_s2 = b->s2 != nullptr;
    if (b->s2)
        a.s2 = *b->s2;
    a.head0 = b->head0;
    a.qsel = b->qsel;
    a.qsel_off = b->qsel_off;
    a.qseg = b->qseg;
    a.kseg = b->qseg ? b->kseg : nullptr;
    HW_CUDA_ASSERT(a.Hkv > 0 && a.H % a.Hkv == 0);
    HW_CUDA_ASSERT(!b->qseg || b->kseg);
    HW_CUDA_ASSERT(!b->qsel || b->qsel_off);
    return a;
}

/* Whole sequence: positions 0..T-1 on both sides of the fused qkv buffer. */
attn_job job_of_shape(const float *qkv, const struct attn_shape *s) {
    attn_job a = {};
    const long long HD = (long long)s->H * s->hd, KD = (long long)s->Hkv * s->hd;
    a.q = qkv;
    a.k = qkv + HD;
    a.v = qkv + HD + KD;
    a.ldq = a.ldkv = s->ld_qkv;
    a.q_bs = a.kv_bs = (long long)s->T * s->ld_qkv;
    a.B = s->B;
    a.Tq = a.Tk = s->T;
    a.H = s->H;
    a.Hkv = s->Hkv;
    a.hd = s->hd;
    a.use_s2 = s->s2 != nullptr;
    if (s->s2)
        a.s2 = *s->s2;
    a.head0 = s->head0;
    a.qsel = s->qsel;
    a.qsel_off = s->qsel_off;
    a.qseg = a.kseg = s->seg;
    HW_CUDA_ASSERT(a.Hkv > 0 && a.H % a.Hkv == 0);
    HW_CUDA_ASSERT(s->ld_qkv >= (s->H + 2 * s->Hkv) * s->hd);
    return a;
}

/* The prefix as the key block of every batch row's queries: keys at positions -np..-1, no S2,
 * no segments, the same pk/pv for every b. qpos NULL: queries at 0..T-1. */
attn_job job_of_prefix(const float *qkv, const int32_t *qpos, const struct attn_shape *s) {
    attn_job a = {};
    a.q = qkv;
    a.k = s->pk;
    a.v = s->pv;
    a.ldq = s->ld_qkv;
    a.ldkv = s->ld_p;
    a.q_bs = (long long)s->T * s->ld_qkv;
    a.kv_bs = 0;
    a.qpos = qpos;
    a.kpos_off = -s->np;
    a.B = s->B;
    a.Tq = s->T;
    a.Tk = s->np;
    a.H = s->H;
    a.Hkv = s->Hkv;
    a.hd = s->hd;
    a.qsel = s->qsel;
    a.qsel_off = s->qsel_off;
    return a;
}

void prefix_forward(float *out, float *lse, const float *qkv, const int32_t *qpos,
                    const struct attn_shape *s) {
    if (s->np <= 0)
        return;
    HW_CUDA_ASSERT(s->pk && s->pv && s->ld_p >= s->Hkv * s->hd);
    run_fwd(out, lse, job_of_prefix(qkv, qpos, s), 1);
}

/* D: rowsum(dout * out) of the T rows (computed by the caller). part: 2 * B * np * Hkv*hd
 * floats of scratch for the per-batch dpk/dpv partials. */
void prefix_backward(float *dq, int lddq, const float *dout, const float *lse, const float *qkv,
                     const int32_t *qpos, const struct attn_shape *s, const float *D, float *part) {
    if (s->np <= 0)
        return;
    HW_CUDA_ASSERT(s->pk && s->pv && s->dpk && s->dpv && s->ld_p >= s->Hkv * s->hd);
    const attn_job a = job_of_prefix(qkv, qpos, s);
    const int KD = s->Hkv * s->hd;
    const long long pn = (long long)s->B * s->np * KD;
    cudaStream_t st = cuda_ctx()->stream;
    HW_CHECK_CUDA(cudaMemsetAsync(part, 0, sizeof(float) * 2 * (size_t)pn, st));
    run_bwd(dq, lddq, part, part + pn, KD, (long long)s->np * KD, dout, lse, D, a);
    const long long n = (long long)s->np * KD;
    const unsigned blocks = cdiv(n, 256) < 1024 ? cdiv(n, 256) : 1024;
    attn_sum_batches_kernel<<<blocks, 256, 0, st>>>(s->dpk, s->ld_p, part, s->B, s->np, KD);
    HW_CHECK_LAUNCH();
    attn_sum_batches_kernel<<<blocks, 256, 0, st>>>(s->dpv, s->ld_p, part + pn, s->B, s->np, KD);
    HW_CHECK_LAUNCH();
}

void decode(float *out, const float *q, const float *kc, const float *vc, int n_ctx, int ld_kv,
            int H, int Hkv, int hd, const uint8_t *user, float alpha) {
    HW_CUDA_ASSERT(H > 0 && Hkv > 0 && H % Hkv == 0 && hd >= 1 && hd <= 4 * DT);
    const size_t sm = sizeof(float) * ((size_t)hd + DT);
    attn_decode_kernel<<<H, DT, sm, cuda_ctx()->stream>>>(out, q, kc, vc, n_ctx, ld_kv, H, Hkv, hd,
                                                          user, alpha, 1.0f / sqrtf((float)hd));
    HW_CHECK_LAUNCH();
}

} // namespace

/* ------------------------------------------------------------------------------------------ */
/* the attention.h contracts */

extern "C" void attention_cuda_set_bf16(int on) {
    g_bf16 = on;
}

extern "C" void attention_block_forward_cuda(float *out, float *lse, const struct attn_block *a,
                                             int merge) {
    run_fwd(out, lse, job_of_block(a), merge);
}

extern "C" void attention_block_backward_cuda(float *dq, float *dk, float *dv, int lddq, int lddkv,
                                              const float *dout, const float *out, const float *lse,
                                              const struct attn_block *a) {
    const attn_job j = job_of_block(a);
    if (j.B <= 0 || j.Tq <= 0 || j.Tk <= 0)
        return;
    float *D = scratch((size_t)j.B * j.H * j.Tq);
    run_rowdot(D, dout, out, j.B, j.Tq, j.H, j.hd);
    run_bwd(dq, lddq, dk, dv, lddkv, (long long)j.Tk * lddkv, dout, lse, D, j);
}

extern "C" void attention_prefix_forward_cuda(float *out, float *lse, const float *qkv,
                                              const int32_t *qpos, const struct attn_shape *s) {
    prefix_forward(out, lse, qkv, qpos, s);
}

extern "C" void attention_prefix_backward_cuda(float *dq, int lddq, const float *dout,
                                               const float *out, const float *lse, const float *qkv,
                                               const int32_t *qpos, const struct attn_shape *s) {
    if (s->np <= 0 || s->B <= 0 || s->T <= 0)
        return;
    const size_t nD = (size_t)s->B * s->H * s->T;
    const size_t np = (size_t)s->B * s->np * s->Hkv * s->hd;
    float *D = scratch(nD + 2 * np);
    run_rowdot(D, dout, out, s->B, s->T, s->H, s->hd);
    prefix_backward(dq, lddq, dout, lse, qkv, qpos, s, D, D + nD);
}

extern "C" void attention_forward_cuda(float *out, float *lse, const float *qkv,
                                       const struct attn_shape *s) {
    run_fwd(out, lse, job_of_shape(qkv, s), 0);
    prefix_forward(out, lse, qkv, nullptr, s);
}

extern "C" void attention_backward_cuda(float *dqkv, const float *dout, const float *out,
                                        const float *lse, const float *qkv,
                                        const struct attn_shape *s) {
    const attn_job a = job_of_shape(qkv, s);
    if (s->B <= 0 || s->T <= 0)
        return;
    const size_t HD = (size_t)s->H * s->hd, KD = (size_t)s->Hkv * s->hd;
    cudaStream_t st = cuda_ctx()->stream;
    /* the q, k and v columns of every row; columns past them are not ours */
    HW_CHECK_CUDA(cudaMemset2DAsync(dqkv, sizeof(float) * (size_t)s->ld_qkv, 0,
                                    sizeof(float) * (HD + 2 * KD), (size_t)s->B * s->T, st));
    const size_t nD = (size_t)s->B * s->H * s->T;
    const size_t np = s->np > 0 ? (size_t)s->B * s->np * KD : 0;
    float *D = scratch(nD + 2 * np);
    run_rowdot(D, dout, out, s->B, s->T, s->H, s->hd);
    run_bwd(dqkv, s->ld_qkv, dqkv + HD, dqkv + HD + KD, s->ld_qkv, (long long)s->T * s->ld_qkv,
            dout, lse, D, a);
    prefix_backward(dqkv, s->ld_qkv, dout, lse, qkv, nullptr, s, D, D + nD);
}

extern "C" void attention_decode_cuda(float *out, const float *q, const float *kc, const float *vc,
                                      int n_ctx, int ld_kv, int H, int Hkv, int hd,
                                      float *scratch_unused) {
    (void)scratch_unused;
    decode(out, q, kc, vc, n_ctx, ld_kv, H, Hkv, hd, nullptr, 1.0f);
}

extern "C" void attention_decode_steer_cuda(float *out, const float *q, const float *kc,
                                            const float *vc, int n_ctx, int ld_kv, int H, int Hkv,
                                            int hd, float *scratch_unused, const uint8_t *user,
                                            float alpha) {
    (void)scratch_unused;
    decode(out, q, kc, vc, n_ctx, ld_kv, H, Hkv, hd, alpha == 1.0f ? nullptr : user, alpha);
}
