/* ops/attention_cpu.c -- tiled causal attention forward/backward on the CPU (see attention.h).
 * Work is split into independent (batch, head) tasks (forward) and (batch, kv-head) tasks
 * (backward, so the heads sharing a K/V head accumulate dK/dV in one task): no atomics, and the
 * result does not depend on the thread count. Tile products go through cblas_sgemm, which runs
 * single-threaded inside our parallel region. */
#include "attention.h"

#include "../core/check.h"

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
 * first because segment ids are non-decreasing. 0 without segments. */
static int seg_first(const int32_t *kseg, int cmax, int32_t qs) {
    int c = 0;
    if (kseg)
        while (c < cmax && kseg[c] != qs)
            c++;
    return c;
}

void attention_block_forward_cpu(float *out, float *lse, const struct attn_block *a, int merge) {
    const int B = a->B, Tq = a->Tq, Tk = a->Tk, H = a->H, hd = a->hd;
    const int group = H / a->Hkv, ldo = H * hd;
    const float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel
    {
        float *S = HW_MALLOC(sizeof(float) * BQ * BK);
        float *O = HW_MALLOC(sizeof(float) * BQ * hd);
        float m[BQ], l[BQ];

#pragma omp for schedule(static) collapse(2)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++) {
                const int kvh = h / group;
                const float *qb = a->q + (size_t)b * Tq * a->ldq + (size_t)h * hd;
                const float *kb = a->k + (size_t)b * Tk * a->ldkv + (size_t)kvh * hd;
                const float *vb = a->v + (size_t)b * Tk * a->ldkv + (size_t)kvh * hd;
                const int32_t *qs = a->qseg ? a->qseg + (size_t)b * Tq : NULL;
                const int32_t *ks = a->kseg ? a->kseg + (size_t)b * Tk : NULL;
                float *lb = lse + ((size_t)b * H + h) * Tq;
                for (int i0 = 0; i0 < Tq; i0 += BQ) {
                    const int nq = Tq - i0 < BQ ? Tq - i0 : BQ;
                    float *ob = out + ((size_t)b * Tq + i0) * ldo + (size_t)h * hd;
                    for (int r = 0; r < nq; r++) {
                        float *orow = O + (size_t)r * hd;
                        if (merge && lb[i0 + r] > -INFINITY) {
                            /* resume the online softmax from the normalised state */
                            m[r] = lb[i0 + r];
                            l[r] = 1.0f;
                            memcpy(orow, ob + (size_t)r * ldo, sizeof(float) * hd);
                        } else {
                            m[r] = -INFINITY;
                            l[r] = 0.0f;
                            memset(orow, 0, sizeof(float) * hd);
                        }
                    }
                    const int32_t qlast = a->qpos[i0 + nq - 1];
                    for (int j0 = 0; j0 < Tk && a->kpos[j0] <= qlast; j0 += BK) {
                        const int nk = Tk - j0 < BK ? Tk - j0 : BK;
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hd, scale,
                                    qb + (size_t)i0 * a->ldq, a->ldq, kb + (size_t)j0 * a->ldkv,
                                    a->ldkv, 0.0f, S, BK);
                        for (int r = 0; r < nq; r++) {
                            float *sr = S + r * BK;
                            const int cmax = visible(a->kpos + j0, nk, a->qpos[i0 + r]);
                            const int cmin = ks ? seg_first(ks + j0, cmax, qs[i0 + r]) : 0;

                            if (cmin >= cmax) {
                                memset(sr, 0, sizeof(float) * nk);
                                continue;
                            }
                            float mx = m[r];
                            for (int c = cmin; c < cmax; c++)
                                mx = sr[c] > mx ? sr[c] : mx;
                            float alpha = expf(m[r] - mx), sum = 0.0f;
                            for (int c = 0; c < cmin; c++)
                                sr[c] = 0.0f;
                            for (int c = cmin; c < cmax; c++) {
                                sr[c] = expf(sr[c] - mx);
                                sum += sr[c];
                            }
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

                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hd, nk, 1.0f, S,
                                    BK, vb + (size_t)j0 * a->ldkv, a->ldkv, 1.0f, O, hd);
                    }
                    for (int r = 0; r < nq; r++) {
                        float *dst = ob + (size_t)r * ldo;
                        if (l[r] > 0.0f) {
                            float inv = 1.0f / l[r];
                            for (int d = 0; d < hd; d++)
                                dst[d] = O[(size_t)r * hd + d] * inv;
                            lb[i0 + r] = m[r] + logf(l[r]);
                        } else {
                            memset(dst, 0, sizeof(float) * hd);
                            lb[i0 + r] = -INFINITY;
                        }
                    }
                }
            }
        free(S);
        free(O);
    }
}

void attention_block_backward_cpu(float *dq, float *dk, float *dv, int lddq, int lddkv,
                                  const float *dout, const float *out, const float *lse,
                                  const struct attn_block *a) {
    const int B = a->B, Tq = a->Tq, Tk = a->Tk, H = a->H, Hkv = a->Hkv, hd = a->hd;
    const int group = H / Hkv, ldo = H * hd;
    const float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel
    {
        float *P = HW_MALLOC(sizeof(float) * BQ * BK);
        float *dP = HW_MALLOC(sizeof(float) * BQ * BK);
        float *D = HW_MALLOC(sizeof(float) * (size_t)(Tq ? Tq : 1));
#pragma omp for schedule(static) collapse(2)
        for (int b = 0; b < B; b++)
            for (int kvh = 0; kvh < Hkv; kvh++) {
                const float *kb = a->k + (size_t)b * Tk * a->ldkv + (size_t)kvh * hd;
                const float *vb = a->v + (size_t)b * Tk * a->ldkv + (size_t)kvh * hd;
                const int32_t *qs = a->qseg ? a->qseg + (size_t)b * Tq : NULL;
                const int32_t *ks = a->kseg ? a->kseg + (size_t)b * Tk : NULL;
                float *dkb = dk + (size_t)b * Tk * lddkv + (size_t)kvh * hd;
                float *dvb = dv + (size_t)b * Tk * lddkv + (size_t)kvh * hd;
                for (int h = kvh * group; h < (kvh + 1) * group; h++) {
                    const float *qb = a->q + (size_t)b * Tq * a->ldq + (size_t)h * hd;
                    float *dqb = dq + (size_t)b * Tq * lddq + (size_t)h * hd;
                    const float *ob = out + (size_t)b * Tq * ldo + (size_t)h * hd;
                    const float *dob = dout + (size_t)b * Tq * ldo + (size_t)h * hd;
                    const float *lb = lse + ((size_t)b * H + h) * Tq;
                    for (int t = 0; t < Tq; t++) {
                        float acc = 0.0f;
                        for (int d = 0; d < hd; d++)
                            acc += dob[(size_t)t * ldo + d] * ob[(size_t)t * ldo + d];
                        D[t] = acc;
                    }
                    for (int i0 = 0; i0 < Tq; i0 += BQ) {
                        const int nq = Tq - i0 < BQ ? Tq - i0 : BQ;
                        const int32_t qlast = a->qpos[i0 + nq - 1];
                        for (int j0 = 0; j0 < Tk && a->kpos[j0] <= qlast; j0 += BK) {
                            const int nk = Tk - j0 < BK ? Tk - j0 : BK;
                            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hd, scale,
                                        qb + (size_t)i0 * a->ldq, a->ldq, kb + (size_t)j0 * a->ldkv,
                                        a->ldkv, 0.0f, P, BK);
                            for (int r = 0; r < nq; r++) {
                                float *pr = P + r * BK;
                                const int cmax = visible(a->kpos + j0, nk, a->qpos[i0 + r]);
                                const int cmin = ks ? seg_first(ks + j0, cmax, qs[i0 + r]) : 0;
                                const float L = lb[i0 + r];
                                for (int c = 0; c < cmin && c < cmax; c++)
                                    pr[c] = 0.0f;
                                for (int c = cmin; c < cmax; c++)
                                    pr[c] = expf(pr[c] - L);
                                for (int c = cmax; c < nk; c++)
                                    pr[c] = 0.0f;
                            }
                            /* dV_j += P^T dO_i */
                            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hd, nq, 1.0f,
                                        P, BK, dob + (size_t)i0 * ldo, ldo, 1.0f,
                                        dvb + (size_t)j0 * lddkv, lddkv);
                            /* dP = dO_i V_j^T */
                            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hd, 1.0f,
                                        dob + (size_t)i0 * ldo, ldo, vb + (size_t)j0 * a->ldkv,
                                        a->ldkv, 0.0f, dP, BK);
                            /* dS = P (dP - D) * scale, stored in dP */
                            for (int r = 0; r < nq; r++) {
                                const float Dr = D[i0 + r];
                                float *pr = P + r * BK, *dpr = dP + r * BK;
                                for (int c = 0; c < nk; c++)
                                    dpr[c] = pr[c] * (dpr[c] - Dr) * scale;
                            }
                            /* dQ_i += dS K_j; dK_j += dS^T Q_i */
                            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hd, nk, 1.0f,
                                        dP, BK, kb + (size_t)j0 * a->ldkv, a->ldkv, 1.0f,
                                        dqb + (size_t)i0 * lddq, lddq);
                            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hd, nq, 1.0f,
                                        dP, BK, qb + (size_t)i0 * a->ldq, a->ldq, 1.0f,
                                        dkb + (size_t)j0 * lddkv, lddkv);
                        }
                    }
                }
            }
        free(P);
        free(dP);
        free(D);
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
                           .qseg = s->seg,
                           .kseg = s->seg};
    return a;
}

void attention_forward_cpu(float *out, float *lse, const float *qkv, const struct attn_shape *s) {
    int32_t *pos;
    struct attn_block a = whole_block(qkv, s, &pos);
    attention_block_forward_cpu(out, lse, &a, 0);
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
    free(pos);
}

void attention_decode_cpu(float *out, const float *q, const float *kc, const float *vc, int n_ctx,
                          int ld_kv, int H, int Hkv, int hd, float *scratch) {
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

void attention_decode_steer_cpu(float *out, const float *q, const float *kc, const float *vc,
                                int n_ctx, int ld_kv, int H, int Hkv, int hd, float *scratch,
                                const uint8_t *user, float alpha) {
    if (alpha == 1.0f) {
        attention_decode_cpu(out, q, kc, vc, n_ctx, ld_kv, H, Hkv, hd, scratch);
        return;
    }
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
            scratch[t] = expf(scratch[t] - mx) * (user[t] ? 1.0f : alpha);
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
