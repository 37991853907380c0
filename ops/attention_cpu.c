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

void attention_forward_cpu(float *out, float *lse, const float *qkv, const struct attn_shape *s) {
    const int B = s->B, T = s->T, H = s->H, Hkv = s->Hkv, hd = s->hd, ld = s->ld_qkv;
    const int group = H / Hkv, ldo = H * hd;
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
                const float *qb = qkv + (size_t)b * T * ld + (size_t)h * hd;
                const float *kb = qkv + (size_t)b * T * ld + (size_t)(H + kvh) * hd;
                const float *vb = qkv + (size_t)b * T * ld + (size_t)(H + Hkv + kvh) * hd;
                for (int i0 = 0; i0 < T; i0 += BQ) {
                    const int nq = T - i0 < BQ ? T - i0 : BQ;
                    for (int r = 0; r < nq; r++) {
                        m[r] = -INFINITY;
                        l[r] = 0.0f;
                    }
                    memset(O, 0, sizeof(float) * nq * hd);
                    for (int j0 = 0; j0 < i0 + nq; j0 += BK) {
                        const int nk = T - j0 < BK ? T - j0 : BK;
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hd, scale,
                                    qb + (size_t)i0 * ld, ld, kb + (size_t)j0 * ld, ld, 0.0f, S,
                                    BK);
                        for (int r = 0; r < nq; r++) {
                            float *sr = S + r * BK;
                            int cmax = i0 + r - j0 + 1;
                            if (cmax > nk)
                                cmax = nk;
                            float mx = m[r];
                            for (int c = 0; c < cmax; c++)
                                mx = sr[c] > mx ? sr[c] : mx;
                            float alpha = expf(m[r] - mx), sum = 0.0f;
                            for (int c = 0; c < cmax; c++) {
                                sr[c] = expf(sr[c] - mx);
                                sum += sr[c];
                            }
                            for (int c = cmax < 0 ? 0 : cmax; c < nk; c++)
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
                                    BK, vb + (size_t)j0 * ld, ld, 1.0f, O, hd);
                    }
                    for (int r = 0; r < nq; r++) {
                        float inv = 1.0f / l[r];
                        float *dst = out + ((size_t)b * T + i0 + r) * ldo + (size_t)h * hd;
                        for (int d = 0; d < hd; d++)
                            dst[d] = O[(size_t)r * hd + d] * inv;
                        lse[((size_t)b * H + h) * T + i0 + r] = m[r] + logf(l[r]);
                    }
                }
            }
        free(S);
        free(O);
    }
}

void attention_backward_cpu(float *dqkv, const float *dout, const float *out, const float *lse,
                            const float *qkv, const struct attn_shape *s) {
    const int B = s->B, T = s->T, H = s->H, Hkv = s->Hkv, hd = s->hd, ld = s->ld_qkv;
    const int group = H / Hkv, ldo = H * hd;
    const float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel
    {
        float *P = HW_MALLOC(sizeof(float) * BQ * BK);
        float *dP = HW_MALLOC(sizeof(float) * BQ * BK);
        float *D = HW_MALLOC(sizeof(float) * (size_t)T);
#pragma omp for schedule(static) collapse(2)
        for (int b = 0; b < B; b++)
            for (int kvh = 0; kvh < Hkv; kvh++) {
                const size_t row0 = (size_t)b * T;
                const float *kb = qkv + row0 * ld + (size_t)(H + kvh) * hd;
                const float *vb = qkv + row0 * ld + (size_t)(H + Hkv + kvh) * hd;
                float *dkb = dqkv + row0 * ld + (size_t)(H + kvh) * hd;
                float *dvb = dqkv + row0 * ld + (size_t)(H + Hkv + kvh) * hd;
                for (int t = 0; t < T; t++) {
                    memset(dkb + (size_t)t * ld, 0, sizeof(float) * hd);
                    memset(dvb + (size_t)t * ld, 0, sizeof(float) * hd);
                }
                for (int h = kvh * group; h < (kvh + 1) * group; h++) {
                    const float *qb = qkv + row0 * ld + (size_t)h * hd;
                    float *dqb = dqkv + row0 * ld + (size_t)h * hd;
                    const float *ob = out + row0 * ldo + (size_t)h * hd;
                    const float *dob = dout + row0 * ldo + (size_t)h * hd;
                    const float *lb = lse + ((size_t)b * H + h) * T;
                    for (int t = 0; t < T; t++) {
                        float acc = 0.0f;
                        for (int d = 0; d < hd; d++)
                            acc += dob[(size_t)t * ldo + d] * ob[(size_t)t * ldo + d];
                        D[t] = acc;
                        memset(dqb + (size_t)t * ld, 0, sizeof(float) * hd);
                    }
                    for (int i0 = 0; i0 < T; i0 += BQ) {
                        const int nq = T - i0 < BQ ? T - i0 : BQ;
                        for (int j0 = 0; j0 < i0 + nq; j0 += BK) {
                            const int nk = T - j0 < BK ? T - j0 : BK;
                            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hd, scale,
                                        qb + (size_t)i0 * ld, ld, kb + (size_t)j0 * ld, ld, 0.0f, P,
                                        BK);
                            for (int r = 0; r < nq; r++) {
                                float *pr = P + r * BK;
                                int cmax = i0 + r - j0 + 1;
                                if (cmax > nk)
                                    cmax = nk;
                                const float L = lb[i0 + r];
                                for (int c = 0; c < cmax; c++)
                                    pr[c] = expf(pr[c] - L);
                                for (int c = cmax < 0 ? 0 : cmax; c < nk; c++)
                                    pr[c] = 0.0f;
                            }
                            /* dV_j += P^T dO_i */
                            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hd, nq, 1.0f,
                                        P, BK, dob + (size_t)i0 * ldo, ldo, 1.0f,
                                        dvb + (size_t)j0 * ld, ld);
                            /* dP = dO_i V_j^T */
                            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hd, 1.0f,
                                        dob + (size_t)i0 * ldo, ldo, vb + (size_t)j0 * ld, ld, 0.0f,
                                        dP, BK);
                            /* dS = P (dP - D) * scale, stored in dP */
                            for (int r = 0; r < nq; r++) {
                                const float Dr = D[i0 + r];
                                float *pr = P + r * BK, *dpr = dP + r * BK;
                                for (int c = 0; c < nk; c++)
                                    dpr[c] = pr[c] * (dpr[c] - Dr) * scale;
                            }
                            /* dQ_i += dS K_j; dK_j += dS^T Q_i */
                            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hd, nk, 1.0f,
                                        dP, BK, kb + (size_t)j0 * ld, ld, 1.0f,
                                        dqb + (size_t)i0 * ld, ld);
                            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hd, nq, 1.0f,
                                        dP, BK, qb + (size_t)i0 * ld, ld, 1.0f,
                                        dkb + (size_t)j0 * ld, ld);
                        }
                    }
                }
            }
        free(P);
        free(dP);
        free(D);
    }
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
