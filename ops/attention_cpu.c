/* ops/attention_cpu.c -- tiled causal attention forward/backward on the CPU (see attention.h).
 * Work is split into independent (batch, head) tasks (forward) and (batch, kv-head) tasks
 * (backward, so the heads sharing a K/V head accumulate dK/dV in one task): no atomics, and the
 * result does not depend on the thread count. Tile products go through cblas_sgemm, which runs
 * single-threaded inside our parallel region.
 *
 * Two kinds of sparsity skip work rather than mask it:
 *  - MoH query selection: a (batch, head) task gathers only the query rows whose token chose
 *    the head, runs the tiles over them, and scatters the result back;
 *  - S2 block sparsity: key tiles are cut at the S2 block size, and a key tile that no query
 *    of the query tile may see (outside the local window and not a strided block of this head)
 *    is never multiplied.
 *
 * Under train.precision: bf16 (precision_cpu.h) each block call works on bf16-rounded copies
 * of q, k, v (and dout), and rounds the probabilities P before P V and dV, and dS before dQ and
 * dK, as flash attention does in bf16; softmax statistics stay fp32. */
#include "attention.h"

#include "../core/check.h"
#include "precision_cpu.h"
#include "s2.h"
#include "vexp.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BQ ATTN_TILE
#define BK ATTN_TILE

/* Number of keys among kpos[0..nk) visible from query position qp (kpos increasing). */
static int visible(const int32_t *kpos, int nk, int32_t qp) {
    if (nk == 0 || kpos[0] > qp)
        return 0;
    if (kpos[nk - 1] <= qp)
        return nk;
    int lo = 0, hi = nk; /* kpos[lo] <= qp < kpos[hi] */
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (kpos[mid] <= qp)
            lo = mid;
        else
            hi = mid;
    }
    return lo + 1;
}

/* First key among the visible kseg[0..cmax) of query segment qs: keys of earlier segments come
 * first because segment ids are non-decreasing. */
static int seg_first(const int32_t *kseg, int cmax, int32_t qs) {
    int c = 0;
    while (c < cmax && kseg[c] != qs)
        c++;
    return c;
}

/* The key/value side of one (batch, kv head) task and its sparsity. */
struct kv_side {
    const float *k, *v;
    int ldkv, Tk;
    /* K and V transposed (hd rows of Tk): the tile products Q K^T and dO V^T read them as
     * plain row-major operands, which OpenBLAS multiplies about 1.4x faster than through its
     * transposed path at these sizes (K = hd = 64); vt is NULL in the forward */
    const float *kt, *vt;
    const int32_t *kpos;
    const int32_t *kseg;         /* segment ids of the keys, or NULL */
    const struct s2_pattern *s2; /* NULL: dense causal */
    int g;                       /* global kv head (S2) */
    int bk;                      /* key tile */
};

/* S2: the key tile starting at j0 is a strided block (fully visible up to causality), a block
 * only inside the local window of some queries, or skipped. Returns 0 to skip, 1 when every
 * causal key of the tile is visible, 2 when only rows within the local window see it. */
static int tile_kind(const struct kv_side *kv, int j0, int32_t qfirst) {
    if (!kv->s2)
        return 1;
    const int64_t kb = kv->kpos[j0] / kv->s2->block;
    if (s2_vert(kv->s2, kv->g, kb))
        return 1;
    return qfirst / kv->s2->block - kb < kv->s2->local ? 2 : 0;
}

/* Keys [*cmin, return) of the tile are visible from the query at position qp in segment qs
 * (qs unused without key segments). */
static int row_visible(const struct kv_side *kv, int kind, int j0, int nk, int32_t qp, int32_t qs,
                       int *cmin) {
    *cmin = 0;
    if (kind == 2 && qp / kv->s2->block - kv->kpos[j0] / kv->s2->block >= kv->s2->local)
        return 0;
    const int cmax = visible(kv->kpos + j0, nk, qp);
    if (kv->kseg)
        *cmin = seg_first(kv->kseg + j0, cmax, qs);
    return cmax;
}

/* The first nk columns of nq tile rows (row stride BK) rounded to bf16 in place. */
static void round_tile(float *X, int nq, int nk) {
    for (int r = 0; r < nq; r++)
        for (int c = 0; c < nk; c++)
            X[(size_t)r * BK + c] = hw_bf16_round(X[(size_t)r * BK + c]);
}

/* Attention of nrows queries (rows of q with stride ldq, positions qpos ascending) against one
 * key/value side. out rows have stride ldo; lse is contiguous. merge: see attention.h. */
static void forward_rows(float *out, int ldo, float *lse, const float *q, int ldq,
                         const int32_t *qpos, const int32_t *qseg, int nrows,
                         const struct kv_side *kv, int hd, float scale, int merge, float *S,
                         float *O) {
    float m[BQ], l[BQ];
    for (int i0 = 0; i0 < nrows; i0 += BQ) {
        const int nq = nrows - i0 < BQ ? nrows - i0 : BQ;
        float *ob = out + (size_t)i0 * ldo;
        for (int r = 0; r < nq; r++) {
            float *orow = O + (size_t)r * hd;
            if (merge && lse[i0 + r] > -INFINITY) {
                /* resume the online softmax from the normalised state */
                m[r] = lse[i0 + r];
                l[r] = 1.0f;
                memcpy(orow, ob + (size_t)r * ldo, sizeof(float) * hd);
            } else {
                m[r] = -INFINITY;
                l[r] = 0.0f;
                memset(orow, 0, sizeof(float) * hd);
            }
        }
        const int32_t qlast = qpos[i0 + nq - 1];
        for (int j0 = 0; j0 < kv->Tk && kv->kpos[j0] <= qlast; j0 += kv->bk) {
            const int nk = kv->Tk - j0 < kv->bk ? kv->Tk - j0 : kv->bk;
            const int kind = tile_kind(kv, j0, qpos[i0]);
            if (!kind)
                continue;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, nk, hd, scale,
                        q + (size_t)i0 * ldq, ldq, kv->kt + j0, kv->Tk, 0.0f, S, BK);
            for (int r = 0; r < nq; r++) {
                float *sr = S + r * BK;
                int cmin;
                const int cmax =
                    row_visible(kv, kind, j0, nk, qpos[i0 + r], qseg ? qseg[i0 + r] : 0, &cmin);
                if (cmin >= cmax) {
                    memset(sr, 0, sizeof(float) * nk);
                    continue;
                }
                float mx = m[r];
#pragma omp simd reduction(max : mx)
                for (int c = cmin; c < cmax; c++)
                    mx = sr[c] > mx ? sr[c] : mx;
                float alpha = expf(m[r] - mx), sum = 0.0f; /* exactly 0 from m = -inf */
                for (int c = 0; c < cmin; c++)
                    sr[c] = 0.0f;
                for (int c = cmin; c < cmax; c++)
                    sr[c] = vexpf(sr[c] - mx);
#pragma omp simd reduction(+ : sum)
                for (int c = cmin; c < cmax; c++)
                    sum += sr[c];
                for (int c = cmax; c < nk; c++)
                    sr[c] = 0.0f;
                l[r] = l[r] * alpha + sum;
                m[r] = mx;
                if (alpha != 1.0f) {
                    float *orow = O + (size_t)r * hd;
                    for (int d = 0; d < hd; d++)
                        orow[d] *= alpha;
                }
            }
            if (cpu_bf16_inputs)
                round_tile(S, nq, nk);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hd, nk, 1.0f, S, BK,
                        kv->v + (size_t)j0 * kv->ldkv, kv->ldkv, 1.0f, O, hd);
        }
        for (int r = 0; r < nq; r++) {
            float *dst = ob + (size_t)r * ldo;
            if (l[r] > 0.0f) {
                float inv = 1.0f / l[r];
                for (int d = 0; d < hd; d++)
                    dst[d] = O[(size_t)r * hd + d] * inv;
                lse[i0 + r] = m[r] + logf(l[r]);
            } else {
                memset(dst, 0, sizeof(float) * hd);
                lse[i0 + r] = -INFINITY;
            }
        }
    }
}

/* Backward of forward_rows given the final out/lse; dq rows (stride lddq) and the side's dk,
 * dv (stride lddkv) are accumulated. D[r] = rowsum(dout * out). */
static void backward_rows(float *dq, int lddq, float *dk, float *dv, int lddkv, const float *q,
                          int ldq, const int32_t *qpos, const int32_t *qseg, int nrows,
                          const float *dout, int ldo, const float *lse, const float *D,
                          const struct kv_side *kv, int hd, float scale, float *P, float *dP) {
    for (int i0 = 0; i0 < nrows; i0 += BQ) {
        const int nq = nrows - i0 < BQ ? nrows - i0 : BQ;
        const int32_t qlast = qpos[i0 + nq - 1];
        for (int j0 = 0; j0 < kv->Tk && kv->kpos[j0] <= qlast; j0 += kv->bk) {
            const int nk = kv->Tk - j0 < kv->bk ? kv->Tk - j0 : kv->bk;
            const int kind = tile_kind(kv, j0, qpos[i0]);
            if (!kind)
                continue;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, nk, hd, scale,
                        q + (size_t)i0 * ldq, ldq, kv->kt + j0, kv->Tk, 0.0f, P, BK);
            for (int r = 0; r < nq; r++) {
                float *pr = P + r * BK;
                int cmin;
                const int cmax =
                    row_visible(kv, kind, j0, nk, qpos[i0 + r], qseg ? qseg[i0 + r] : 0, &cmin);
                const float L = lse[i0 + r];
                for (int c = 0; c < cmin && c < cmax; c++)
                    pr[c] = 0.0f;
                for (int c = cmin; c < cmax; c++)
                    pr[c] = vexpf(pr[c] - L);
                for (int c = cmax; c < nk; c++)
                    pr[c] = 0.0f;
            }
            if (cpu_bf16_inputs)
                round_tile(P, nq, nk);
            /* dV_j += P^T dO_i */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hd, nq, 1.0f, P, BK,
                        dout + (size_t)i0 * ldo, ldo, 1.0f, dv + (size_t)j0 * lddkv, lddkv);
            /* dP = dO_i V_j^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, nk, hd, 1.0f,
                        dout + (size_t)i0 * ldo, ldo, kv->vt + j0, kv->Tk, 0.0f, dP, BK);
            /* dS = P (dP - D) * scale, stored in dP */
            for (int r = 0; r < nq; r++) {
                const float Dr = D[i0 + r];
                float *pr = P + r * BK, *dpr = dP + r * BK;
                for (int c = 0; c < nk; c++)
                    dpr[c] = pr[c] * (dpr[c] - Dr) * scale;
            }
            if (cpu_bf16_inputs)
                round_tile(dP, nq, nk);
            /* dQ_i += dS K_j; dK_j += dS^T Q_i */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hd, nk, 1.0f, dP, BK,
                        kv->k + (size_t)j0 * kv->ldkv, kv->ldkv, 1.0f, dq + (size_t)i0 * lddq,
                        lddq);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hd, nq, 1.0f, dP, BK,
                        q + (size_t)i0 * ldq, ldq, 1.0f, dk + (size_t)j0 * lddkv, lddkv);
        }
    }
}

/* dst (hd rows of Tk) = the transpose of src (Tk rows of stride ld, hd columns). */
static void transpose_side(float *dst, const float *src, int ld, int Tk, int hd) {
    for (int j0 = 0; j0 < Tk; j0 += 16)
        for (int d = 0; d < hd; d++) {
            const int j1 = Tk - j0 < 16 ? Tk : j0 + 16;
            for (int j = j0; j < j1; j++)
                dst[(size_t)d * Tk + j] = src[(size_t)j * ld + d];
        }
}

static struct kv_side kv_side_of(const struct attn_block *a, int b, int kvh) {
    struct kv_side kv = {.k = a->k + (size_t)b * a->Tk * a->ldkv + (size_t)kvh * a->hd,
                         .v = a->v + (size_t)b * a->Tk * a->ldkv + (size_t)kvh * a->hd,
                         .ldkv = a->ldkv,
                         .Tk = a->Tk,
                         .kpos = a->kpos,
                         .kseg = a->kseg ? a->kseg + (size_t)b * a->Tk : NULL,
                         .s2 = a->s2,
                         .g = 0,
                         .bk = BK};
    if (a->s2) {
        kv.g = (a->head0 + kvh * (a->H / a->Hkv)) / a->s2->group;
        kv.bk = a->s2->block < BK ? a->s2->block : BK;
    }
    return kv;
}

/* Under bf16 inputs: *r = *a with q, k and v replaced by rounded copies (this thread's scratch
 * slots 0-2, contiguous rows of the heads' columns); returns r, else a. */
static const struct attn_block *bf16_block(const struct attn_block *a, struct attn_block *r) {
    if (!cpu_bf16_inputs)
        return a;
    *r = *a;
    const size_t qc = (size_t)a->H * a->hd, kc = (size_t)a->Hkv * a->hd;
    r->q = cpu_bf16_rows(0, a->q, (size_t)a->B * a->Tq, qc, (size_t)a->ldq);
    r->k = cpu_bf16_rows(1, a->k, (size_t)a->B * a->Tk, kc, (size_t)a->ldkv);
    r->v = cpu_bf16_rows(2, a->v, (size_t)a->B * a->Tk, kc, (size_t)a->ldkv);
    r->ldq = (int)qc;
    r->ldkv = (int)kc;
    return r;
}

void attention_block_forward_cpu(float *out, float *lse, const struct attn_block *a0, int merge) {
    struct attn_block rounded;
    const struct attn_block *a = bf16_block(a0, &rounded);
    const int B = a->B, Tq = a->Tq, H = a->H, hd = a->hd;
    const int group = H / a->Hkv, ldo = H * hd;
    const float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel
    {
        float *S = HW_MALLOC(sizeof(float) * BQ * BK);
        float *O = HW_MALLOC(sizeof(float) * BQ * hd);
        float *kt = HW_MALLOC(sizeof(float) * ((size_t)a->Tk * hd + 1));
        /* gathered rows of a MoH-selected (b, h): q, out, lse, positions */
        float *gq = NULL, *go = NULL, *gl = NULL;
        int32_t *gp = NULL, *gs = NULL;
        if (a->qsel) {
            gq = HW_MALLOC(sizeof(float) * ((size_t)Tq * hd * 2 + Tq + 1));
            go = gq + (size_t)Tq * hd;
            gl = go + (size_t)Tq * hd;
            gp = HW_MALLOC(sizeof(int32_t) * (2 * (size_t)Tq + 1));
            gs = gp + Tq;
        }
#pragma omp for schedule(dynamic) collapse(2)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++) {
                struct kv_side kv = kv_side_of(a, b, h / group);
                transpose_side(kt, kv.k, kv.ldkv, kv.Tk, hd);
                kv.kt = kt;
                const float *qb = a->q + (size_t)b * Tq * a->ldq + (size_t)h * hd;
                float *ob = out + (size_t)b * Tq * ldo + (size_t)h * hd;
                float *lb = lse + ((size_t)b * H + h) * Tq;
                const int32_t *qs = a->qseg ? a->qseg + (size_t)b * Tq : NULL;
                if (!a->qsel) {
                    forward_rows(ob, ldo, lb, qb, a->ldq, a->qpos, qs, Tq, &kv, hd, scale, merge, S,
                                 O);
                    continue;
                }
                const int32_t *idx = a->qsel + a->qsel_off[b * H + h];
                const int n = a->qsel_off[b * H + h + 1] - a->qsel_off[b * H + h];
                if (!merge)
                    for (int t = 0; t < Tq; t++) {
                        memset(ob + (size_t)t * ldo, 0, sizeof(float) * hd);
                        lb[t] = -INFINITY;
                    }
                for (int i = 0; i < n; i++) {
                    memcpy(gq + (size_t)i * hd, qb + (size_t)idx[i] * a->ldq, sizeof(float) * hd);
                    memcpy(go + (size_t)i * hd, ob + (size_t)idx[i] * ldo, sizeof(float) * hd);
                    gl[i] = lb[idx[i]];
                    gp[i] = a->qpos[idx[i]];
                    gs[i] = qs ? qs[idx[i]] : 0;
                }
                forward_rows(go, hd, gl, gq, hd, gp, qs ? gs : NULL, n, &kv, hd, scale, merge, S,
                             O);
                for (int i = 0; i < n; i++) {
                    memcpy(ob + (size_t)idx[i] * ldo, go + (size_t)i * hd, sizeof(float) * hd);
                    lb[idx[i]] = gl[i];
                }
            }
        free(S);
        free(O);
        free(kt);
        free(gq);
        free(gp);
    }
}

void attention_block_backward_cpu(float *dq, float *dk, float *dv, int lddq, int lddkv,
                                  const float *dout, const float *out, const float *lse,
                                  const struct attn_block *a0) {
    struct attn_block rounded;
    const struct attn_block *a = bf16_block(a0, &rounded);
    if (cpu_bf16_inputs) /* (B, Tq, H*hd) contiguous */
        dout = cpu_bf16_rows(3, dout, (size_t)a->B * a->Tq, (size_t)a->H * a->hd,
                             (size_t)a->H * a->hd);
    const int B = a->B, Tq = a->Tq, Tk = a->Tk, H = a->H, Hkv = a->Hkv, hd = a->hd;
    const int group = H / Hkv, ldo = H * hd;
    const float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel
    {
        float *P = HW_MALLOC(sizeof(float) * BQ * BK);
        float *dP = HW_MALLOC(sizeof(float) * BQ * BK);
        float *D = HW_MALLOC(sizeof(float) * (size_t)(Tq ? Tq : 1));
        float *kt = HW_MALLOC(sizeof(float) * (2 * (size_t)Tk * hd + 1)),
              *vt = kt + (size_t)Tk * hd;
        float *gq = NULL, *gdo = NULL, *gdq = NULL, *gl = NULL;
        int32_t *gp = NULL, *gs = NULL;
        if (a->qsel) {
            gq = HW_MALLOC(sizeof(float) * ((size_t)Tq * hd * 3 + Tq + 1));
            gdo = gq + (size_t)Tq * hd;
            gdq = gdo + (size_t)Tq * hd;
            gl = gdq + (size_t)Tq * hd;
            gp = HW_MALLOC(sizeof(int32_t) * (2 * (size_t)Tq + 1));
            gs = gp + Tq;
        }
#pragma omp for schedule(dynamic) collapse(2)
        for (int b = 0; b < B; b++)
            for (int kvh = 0; kvh < Hkv; kvh++) {
                struct kv_side kv = kv_side_of(a, b, kvh);
                transpose_side(kt, kv.k, kv.ldkv, Tk, hd);
                transpose_side(vt, kv.v, kv.ldkv, Tk, hd);
                kv.kt = kt;
                kv.vt = vt;
                float *dkb = dk + (size_t)b * Tk * lddkv + (size_t)kvh * hd;
                float *dvb = dv + (size_t)b * Tk * lddkv + (size_t)kvh * hd;
                for (int h = kvh * group; h < (kvh + 1) * group; h++) {
                    const float *qb = a->q + (size_t)b * Tq * a->ldq + (size_t)h * hd;
                    float *dqb = dq + (size_t)b * Tq * lddq + (size_t)h * hd;
                    const float *ob = out + (size_t)b * Tq * ldo + (size_t)h * hd;
                    const float *dob = dout + (size_t)b * Tq * ldo + (size_t)h * hd;
                    const float *lb = lse + ((size_t)b * H + h) * Tq;
                    const int32_t *qs = a->qseg ? a->qseg + (size_t)b * Tq : NULL;
                    if (!a->qsel) {
                        for (int t = 0; t < Tq; t++) {
                            float acc = 0.0f;
                            for (int d = 0; d < hd; d++)
                                acc += dob[(size_t)t * ldo + d] * ob[(size_t)t * ldo + d];
                            D[t] = acc;
                        }
                        backward_rows(dqb, lddq, dkb, dvb, lddkv, qb, a->ldq, a->qpos, qs, Tq, dob,
                                      ldo, lb, D, &kv, hd, scale, P, dP);
                        continue;
                    }
                    const int32_t *idx = a->qsel + a->qsel_off[b * H + h];
                    const int n = a->qsel_off[b * H + h + 1] - a->qsel_off[b * H + h];
                    for (int i = 0; i < n; i++) {
                        const size_t t = (size_t)idx[i];
                        float acc = 0.0f;
                        for (int d = 0; d < hd; d++)
                            acc += dob[t * ldo + d] * ob[t * ldo + d];
                        D[i] = acc;
                        memcpy(gq + (size_t)i * hd, qb + t * a->ldq, sizeof(float) * hd);
                        memcpy(gdo + (size_t)i * hd, dob + t * ldo, sizeof(float) * hd);
                        memset(gdq + (size_t)i * hd, 0, sizeof(float) * hd);
                        gl[i] = lb[t];
                        gp[i] = a->qpos[t];
                        gs[i] = qs ? qs[t] : 0;
                    }
                    backward_rows(gdq, hd, dkb, dvb, lddkv, gq, hd, gp, qs ? gs : NULL, n, gdo, hd,
                                  gl, D, &kv, hd, scale, P, dP);
                    for (int i = 0; i < n; i++) {
                        float *dst = dqb + (size_t)idx[i] * lddq;
                        for (int d = 0; d < hd; d++)
                            dst[d] += gdq[(size_t)i * hd + d];
                    }
                }
            }
        free(P);
        free(dP);
        free(D);
        free(kt);
        free(gq);
        free(gp);
    }
}

/* The whole sequence as one block: queries and keys at positions 0..T-1 of the fused qkv
 * buffer. The caller frees *pos. */
static struct attn_block whole_block(const float *qkv, const struct attn_shape *s, int32_t **pos) {
    int32_t *p = HW_MALLOC(sizeof(int32_t) * (size_t)(s->T ? s->T : 1));
    for (int t = 0; t < s->T; t++)
        p[t] = t;
    *pos = p;
    const size_t HD = (size_t)s->H * s->hd, KD = (size_t)s->Hkv * s->hd;
    struct attn_block a = {.q = qkv,
                           .k = qkv + HD,
                           .v = qkv + HD + KD,
                           .ldq = s->ld_qkv,
                           .ldkv = s->ld_qkv,
                           .qpos = p,
                           .kpos = p,
                           .B = s->B,
                           .Tq = s->T,
                           .Tk = s->T,
                           .H = s->H,
                           .Hkv = s->Hkv,
                           .hd = s->hd,
                           .s2 = s->s2,
                           .head0 = s->head0,
                           .qsel = s->qsel,
                           .qsel_off = s->qsel_off,
                           .qseg = s->seg,
                           .kseg = s->seg};
    return a;
}

/* The prefix as a key block for sequence b's queries: positions -np..-1 precede every query. */
static struct attn_block prefix_block(const float *qkv, const int32_t *qpos, const int32_t *kpos,
                                      const struct attn_shape *s, int b) {
    struct attn_block a = {.q = qkv + (size_t)b * s->T * s->ld_qkv,
                           .k = s->pk,
                           .v = s->pv,
                           .ldq = s->ld_qkv,
                           .ldkv = s->ld_p,
                           .qpos = qpos,
                           .kpos = kpos,
                           .B = 1,
                           .Tq = s->T,
                           .Tk = s->np,
                           .H = s->H,
                           .Hkv = s->Hkv,
                           .hd = s->hd,
                           .qsel = s->qsel,
                           .qsel_off = s->qsel ? s->qsel_off + (size_t)b * s->H : NULL};
    return a;
}

static int32_t *prefix_positions(int np) {
    int32_t *kpos = HW_MALLOC(sizeof(int32_t) * (size_t)np);
    for (int i = 0; i < np; i++)
        kpos[i] = i - np;
    return kpos;
}

void attention_prefix_forward_cpu(float *out, float *lse, const float *qkv, const int32_t *qpos,
                                  const struct attn_shape *s) {
    if (s->np <= 0)
        return;
    int32_t *kpos = prefix_positions(s->np);
    const size_t HD = (size_t)s->H * s->hd;
    for (int b = 0; b < s->B; b++) {
        struct attn_block a = prefix_block(qkv, qpos, kpos, s, b);
        attention_block_forward_cpu(out + (size_t)b * s->T * HD, lse + (size_t)b * s->H * s->T, &a,
                                    1);
    }
    free(kpos);
}

void attention_prefix_backward_cpu(float *dq, int lddq, const float *dout, const float *out,
                                   const float *lse, const float *qkv, const int32_t *qpos,
                                   const struct attn_shape *s) {
    if (s->np <= 0)
        return;
    int32_t *kpos = prefix_positions(s->np);
    const size_t HD = (size_t)s->H * s->hd, rows = (size_t)s->T;
    for (int b = 0; b < s->B; b++) {
        struct attn_block a = prefix_block(qkv, qpos, kpos, s, b);
        attention_block_backward_cpu(dq + (size_t)b * rows * lddq, s->dpk, s->dpv, lddq, s->ld_p,
                                     dout + (size_t)b * rows * HD, out + (size_t)b * rows * HD,
                                     lse + (size_t)b * s->H * rows, &a);
    }
    free(kpos);
}

void attention_forward_cpu(float *out, float *lse, const float *qkv, const struct attn_shape *s) {
    int32_t *pos;
    struct attn_block a = whole_block(qkv, s, &pos);
    attention_block_forward_cpu(out, lse, &a, 0);
    attention_prefix_forward_cpu(out, lse, qkv, pos, s);
    free(pos);
}

void attention_backward_cpu(float *dqkv, const float *dout, const float *out, const float *lse,
                            const float *qkv, const struct attn_shape *s) {
    int32_t *pos;
    struct attn_block a = whole_block(qkv, s, &pos);
    const size_t HD = (size_t)s->H * s->hd, KD = (size_t)s->Hkv * s->hd;
    for (size_t r = 0; r < (size_t)s->B * s->T; r++)
        memset(dqkv + r * s->ld_qkv, 0, sizeof(float) * (HD + 2 * KD));
    attention_block_backward_cpu(dqkv, dqkv + HD, dqkv + HD + KD, s->ld_qkv, s->ld_qkv, dout, out,
                                 lse, &a);
    attention_prefix_backward_cpu(dqkv, s->ld_qkv, dout, out, lse, qkv, pos, s);
    free(pos);
}

/* One query position against a cache; with user != NULL (PASTA), the weights of positions whose
 * flag is 0 are scaled by alpha before the normalisation. */
static void decode_rows(float *out, const float *q, const float *kc, const float *vc, int n_ctx,
                        int ld_kv, int H, int Hkv, int hd, float *scratch, const uint8_t *user,
                        float alpha) {
    const int group = H / Hkv;
    const float scale = 1.0f / sqrtf((float)hd);
    for (int h = 0; h < H; h++) {
        const float *qh = q + (size_t)h * hd;
        const int kvh = h / group;
        float mx = -INFINITY, sum = 0.0f;
        for (int t = 0; t < n_ctx; t++) {
            const float *k = kc + (size_t)t * ld_kv + (size_t)kvh * hd;
            float s = 0.0f;
            for (int d = 0; d < hd; d++)
                s += qh[d] * k[d];
            scratch[t] = s * scale;
            mx = scratch[t] > mx ? scratch[t] : mx;
        }
        for (int t = 0; t < n_ctx; t++) {
            scratch[t] = expf(scratch[t] - mx);
            if (user && !user[t])
                scratch[t] *= alpha;
            sum += scratch[t];
        }
        float *oh = out + (size_t)h * hd;
        for (int d = 0; d < hd; d++)
            oh[d] = 0.0f;
        for (int t = 0; t < n_ctx; t++) {
            const float *v = vc + (size_t)t * ld_kv + (size_t)kvh * hd;
            float p = scratch[t] / sum;
            for (int d = 0; d < hd; d++)
                oh[d] += p * v[d];
        }
    }
}

void attention_decode_cpu(float *out, const float *q, const float *kc, const float *vc, int n_ctx,
                          int ld_kv, int H, int Hkv, int hd, float *scratch) {
    decode_rows(out, q, kc, vc, n_ctx, ld_kv, H, Hkv, hd, scratch, NULL, 1.0f);
}

void attention_decode_steer_cpu(float *out, const float *q, const float *kc, const float *vc,
                                int n_ctx, int ld_kv, int H, int Hkv, int hd, float *scratch,
                                const uint8_t *user, float alpha) {
    decode_rows(out, q, kc, vc, n_ctx, ld_kv, H, Hkv, hd, scratch, alpha == 1.0f ? NULL : user,
                alpha);
}
