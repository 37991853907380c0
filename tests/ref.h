/* tests/ref.h -- naive double-precision reference implementations of every op and of the whole
 * model's loss, used to check the fast float kernels and, through central finite differences,
 * their backwards. Written for clarity, not speed. */
#ifndef HW_TESTS_REF_H
#define HW_TESTS_REF_H

#include "../model/gpt.h"
#include "../ops/moh.h"
#include "../ops/s2.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* out (N,M) = inp (N,K) w^T, w (M,K) */
static inline void ref_matmul(double *out, const double *inp, const double *w, int N, int K,
                              int M) {
    for (int n = 0; n < N; n++)
        for (int m = 0; m < M; m++) {
            double s = 0;
            for (int k = 0; k < K; k++)
                s += inp[(size_t)n * K + k] * w[(size_t)m * K + k];
            out[(size_t)n * M + m] = s;
        }
}

static inline void ref_rmsnorm(double *out, const double *inp, const double *w, int N, int C,
                               double eps) {
    for (int n = 0; n < N; n++) {
        double ss = 0;
        for (int c = 0; c < C; c++)
            ss += inp[(size_t)n * C + c] * inp[(size_t)n * C + c];
        double r = 1.0 / sqrt(ss / C + eps);
        for (int c = 0; c < C; c++)
            out[(size_t)n * C + c] = inp[(size_t)n * C + c] * r * w[c];
    }
}

static inline void ref_rope(double *x, int B, int T, int nh, int hd, int ld, int pos0,
                            double theta) {
    int h2 = hd / 2;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < nh; h++) {
                double *v = x + ((size_t)b * T + t) * ld + (size_t)h * hd;
                for (int i = 0; i < h2; i++) {
                    double a = (pos0 + t) * pow(theta, -2.0 * i / hd);
                    double x0 = v[i], x1 = v[i + h2];
                    v[i] = x0 * cos(a) - x1 * sin(a);
                    v[i + h2] = x1 * cos(a) + x0 * sin(a);
                }
            }
}

/* causal attention over qkv (B,T,ld) = [q H heads | k Hkv | v Hkv]; out (B,T,H*hd). With s2,
 * key j is visible from query i only where the S2 pattern of kv head (h / group) allows it
 * (an explicit mask: the whole score row is formed, then masked). */
static inline void ref_attention_s2(double *out, const double *qkv, int B, int T, int H, int Hkv,
                                    int hd, int ld, const struct s2_pattern *s2);
static inline void ref_attention(double *out, const double *qkv, int B, int T, int H, int Hkv,
                                 int hd, int ld) {
    ref_attention_s2(out, qkv, B, T, H, Hkv, hd, ld, NULL);
}
static inline void ref_attention_s2(double *out, const double *qkv, int B, int T, int H, int Hkv,
                                    int hd, int ld, const struct s2_pattern *s2) {
    double *p = malloc(sizeof(double) * (size_t)T);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            int kvh = h / (H / Hkv);
            for (int i = 0; i < T; i++) {
                const double *q = qkv + ((size_t)b * T + i) * ld + (size_t)h * hd;
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j <= i; j++) {
                    const double *k = qkv + ((size_t)b * T + j) * ld + (size_t)(H + kvh) * hd;
                    double s = 0;
                    for (int d = 0; d < hd; d++)
                        s += q[d] * k[d];
                    p[j] = s / sqrt((double)hd);
                    mx = p[j] > mx ? p[j] : mx;
                }
                for (int j = 0; j <= i; j++) {
                    p[j] = s2 && !s2_visible(s2, kvh, i, j) ? 0.0 : exp(p[j] - mx);
                    sum += p[j];
                }
                double *o = out + ((size_t)b * T + i) * H * hd + (size_t)h * hd;
                for (int d = 0; d < hd; d++) {
                    double acc = 0;
                    for (int j = 0; j <= i; j++)
                        acc += p[j] / sum *
                               qkv[((size_t)b * T + j) * ld + (size_t)(H + Hkv + kvh) * hd + d];
                    o[d] = acc;
                }
            }
        }
    free(p);
}

static inline double ref_sigmoid(double x) {
    return 1.0 / (1.0 + exp(-x));
}

static inline void ref_swiglu(double *out, const double *h, int N, int F) {
    for (int n = 0; n < N; n++)
        for (int i = 0; i < F; i++) {
            double g = h[(size_t)n * 2 * F + i], u = h[(size_t)n * 2 * F + F + i];
            out[(size_t)n * F + i] = g * ref_sigmoid(g) * u;
        }
}

static inline void ref_gelu(double *out, const double *h, int N, int F) {
    for (size_t i = 0; i < (size_t)N * F; i++) {
        double x = h[i];
        out[i] = 0.5 * x * (1 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
    }
}

static inline double ref_xent(const double *logits, const int32_t *tgt, int N, int V, int ignore) {
    double total = 0;
    for (int n = 0; n < N; n++) {
        if (tgt[n] == ignore)
            continue;
        const double *r = logits + (size_t)n * V;
        double mx = r[0], s = 0;
        for (int v = 1; v < V; v++)
            mx = r[v] > mx ? r[v] : mx;
        for (int v = 0; v < V; v++)
            s += exp(r[v] - mx);
        total += mx + log(s) - r[tgt[n]];
    }
    return total;
}

static inline void ref_softmax(double *o, const double *z, int n) {
    double mx = z[0], s = 0;
    for (int i = 1; i < n; i++)
        mx = z[i] > mx ? z[i] : mx;
    for (int i = 0; i < n; i++)
        s += (o[i] = exp(z[i] - mx));
    for (int i = 0; i < n; i++)
        o[i] /= s;
}

/* MoH gates G (N, H) of one layer in double, written from ALGORITHMS.md §1.2 directly; returns
 * the layer's balance loss E * sum_i P_i f_i (0 without routed heads). qkv holds the queries
 * (for the qnorm router). */
static inline double ref_moh_gates(const struct gpt *m, const double *n1, const double *qkv, int D,
                                   const double *wr, const double *ws, const double *wh, int N,
                                   double *G) {
    const struct gpt_config *c = &m->c;
    const int H = c->H, hs = c->moh_hs, k = c->moh_k, E = k ? H - hs : 0, C = c->C;
    const int lit = c->moh_literal, qn = c->moh_qnorm;
    double z[256], p[256], ps[256], a[2], P[256] = {0}, f[256] = {0};
    for (int t = 0; t < N; t++) {
        const double *x = n1 + (size_t)t * C;
        double *g = G + (size_t)t * H;
        if (k == 0) {
            if (hs > 1) {
                ref_matmul(z, x, ws, 1, C, hs);
                ref_softmax(ps, z, hs);
            }
            for (int i = 0; i < H; i++)
                g[i] = hs > 1 ? (lit ? 1.0 : H) * ps[i] : 1.0;
            continue;
        }
        if (qn) {
            double mean = 0, var = 0;
            for (int i = 0; i < E; i++) {
                const double *q = qkv + (size_t)t * D + (size_t)(hs + i) * c->hd;
                double ss = 0;
                for (int d = 0; d < c->hd; d++)
                    ss += q[d] * q[d];
                z[i] = sqrt(ss);
                mean += z[i] / E;
            }
            for (int i = 0; i < E; i++)
                var += (z[i] - mean) * (z[i] - mean) / (E - 1);
            for (int i = 0; i < E; i++)
                z[i] = var > 0 ? z[i] / sqrt(var) : 0.0;
        } else {
            ref_matmul(z, x, wr, 1, C, E);
        }
        ref_softmax(p, z, E);
        int sel[256], taken[256] = {0};
        for (int r = 0; r < k; r++) {
            int best = -1;
            for (int i = 0; i < E; i++)
                if (!taken[i] && (best < 0 || z[i] > z[best]))
                    best = i;
            taken[best] = 1;
            sel[r] = best;
        }
        double ssum = 0;
        for (int r = 0; r < k; r++)
            ssum += p[sel[r]];
        for (int i = 0; i < E; i++) {
            P[i] += p[i] / N;
            f[i] += taken[i] ? 1.0 / N : 0.0;
        }
        if (qn) {
            for (int i = 0; i < H; i++)
                g[i] = i < hs ? 1.0 : (taken[i - hs] ? 1.0 : 0.0);
            continue;
        }
        double a1 = 1, a2 = 1;
        if (hs > 0) {
            ref_matmul(z, x, wh, 1, C, 2);
            ref_softmax(a, z, 2);
            a1 = (lit ? 1 : 2) * a[0];
            a2 = (lit ? 1 : 2) * a[1];
        }
        if (hs > 1) {
            ref_matmul(z, x, ws, 1, C, hs);
            ref_softmax(ps, z, hs);
        }
        for (int i = 0; i < hs; i++)
            g[i] = a1 * (hs > 1 ? (lit ? 1.0 : hs) * ps[i] : 1.0);
        for (int i = 0; i < E; i++)
            g[hs + i] = taken[i] ? a2 * (lit ? p[i] : k * p[i] / ssum) : 0.0;
    }
    double l = 0;
    for (int i = 0; i < E; i++)
        l += P[i] * f[i];
    return E * l;
}

/* The final-norm output (B*T, C) of the whole model in double, reading weights from P (laid out
 * as m->params); returns the index of the parameter after final_norm. */
static inline int ref_gpt_hidden_aux(const struct gpt *m, const double *P, const int32_t *tok,
                                     int B, int T, double *out, double *aux);
static inline int ref_gpt_hidden(const struct gpt *m, const double *P, const int32_t *tok, int B,
                                 int T, double *out) {
    double aux;
    return ref_gpt_hidden_aux(m, P, tok, B, T, out, &aux);
}
/* aux: the MoH balance term coef * mean over MoH layers of the layers' balance losses. */
static inline int ref_gpt_hidden_aux(const struct gpt *m, const double *P, const int32_t *tok,
                                     int B, int T, double *out, double *aux) {
    const struct gpt_config *c = &m->c;
    const int N = B * T, C = c->C, HD = c->H * c->hd, D = HD + 2 * c->Hkv * c->hd;
    const int Fin = c->mlp == GPT_MLP_SWIGLU ? 2 * c->F : c->F;
    const int W = C > Fin ? C : Fin;
    double *x = calloc((size_t)N * C, sizeof(double)), *n1 = calloc((size_t)N * C, sizeof(double));
    double *qkv = calloc((size_t)N * D, sizeof(double)), *att = calloc((size_t)N * HD, 8);
    double *tmp = calloc((size_t)N * W, sizeof(double));
    double *h = calloc((size_t)N * Fin, 8), *a = calloc((size_t)N * c->F, 8);
    int pi = 0, n_moh = 0;
    double *G = calloc((size_t)N * c->H, sizeof(double));
    *aux = 0;
    for (int l = 0; l < c->L; l++)
        n_moh += c->attn[l] == LK_MOH;
    struct moh_spec sp;
    struct s2_pattern pat;
    memset(&sp, 0, sizeof(sp));
    if (n_moh)
        moh_spec_init(&sp, c->H, c->moh_hs, c->moh_k, c->moh_literal, c->moh_qnorm);
    s2_init(&pat, c->s2_block ? c->s2_block : 16, c->s2_local ? c->s2_local : 1,
            c->s2_vert ? c->s2_vert : 1, c->s2_offset, c->s2_dense, c->H, c->Hkv);
    const double *wte = P + m->params[pi++].offset;
    for (int n = 0; n < N; n++)
        memcpy(x + (size_t)n * C, wte + (size_t)tok[n] * C, sizeof(double) * C);
    for (int l = 0; l < c->L; l++) {
        const double *wn1 = P + m->params[pi++].offset, *wqkv = P + m->params[pi].offset;
        pi += 3;
        const double *wo = P + m->params[pi++].offset, *wr = NULL, *ws = NULL, *wh = NULL;
        if (c->attn[l] == LK_MOH) {
            if (moh_nr(&sp) && !sp.qnorm)
                wr = P + m->params[pi++].offset;
            if (moh_ns(&sp))
                ws = P + m->params[pi++].offset;
            if (moh_nh(&sp))
                wh = P + m->params[pi++].offset;
        }
        const double *wn2 = P + m->params[pi++].offset;
        const double *win = P + m->params[pi].offset;
        pi += c->mlp == GPT_MLP_SWIGLU ? 2 : 1;
        const double *wout = P + m->params[pi++].offset;
        ref_rmsnorm(n1, x, wn1, N, C, c->eps);
        ref_matmul(qkv, n1, wqkv, N, C, D);
        ref_rope(qkv, B, T, c->H, c->hd, D, 0, c->rope_theta);
        ref_rope(qkv + HD, B, T, c->Hkv, c->hd, D, 0, c->rope_theta);
        ref_attention_s2(att, qkv, B, T, c->H, c->Hkv, c->hd, D, c->s2[l] ? &pat : NULL);
        if (c->attn[l] == LK_MOH) {
            double la = ref_moh_gates(m, n1, qkv, D, wr, ws, wh, N, G);
            if (c->moh_k > 0)
                *aux += c->moh_coef * la / n_moh;
            for (int t = 0; t < N; t++)
                for (int hh = 0; hh < c->H; hh++)
                    for (int d = 0; d < c->hd; d++)
                        att[(size_t)t * HD + (size_t)hh * c->hd + d] *= G[(size_t)t * c->H + hh];
        }
        ref_matmul(tmp, att, wo, N, HD, C);
        for (size_t i = 0; i < (size_t)N * C; i++)
            x[i] += tmp[i];
        ref_rmsnorm(n1, x, wn2, N, C, c->eps);
        ref_matmul(h, n1, win, N, C, Fin);
        if (c->mlp == GPT_MLP_SWIGLU)
            ref_swiglu(a, h, N, c->F);
        else
            ref_gelu(a, h, N, c->F);
        ref_matmul(tmp, a, wout, N, c->F, C);
        for (size_t i = 0; i < (size_t)N * C; i++)
            x[i] += tmp[i];
    }
    const double *wf = P + m->params[pi++].offset;
    ref_rmsnorm(out, x, wf, N, C, c->eps);
    free(x), free(n1), free(qkv), free(att), free(tmp), free(h), free(a), free(G);
    return pi;
}

/* Summed LM loss of the whole model in double, plus the MoH balance term (see gpt.h). */
static inline double ref_gpt_loss(const struct gpt *m, const double *P, const int32_t *tok,
                                  const int32_t *tgt, int B, int T) {
    const struct gpt_config *c = &m->c;
    const int N = B * T, C = c->C;
    double *hid = calloc((size_t)N * C, sizeof(double));
    double *lg = calloc((size_t)N * c->V, sizeof(double));
    double aux;
    int pi = ref_gpt_hidden_aux(m, P, tok, B, T, hid, &aux);
    const double *wlm = c->tied ? P + m->params[0].offset : P + m->params[pi].offset;
    ref_matmul(lg, hid, wlm, N, C, c->V);
    double loss = ref_xent(lg, tgt, N, c->V, -1) + aux;
    free(hid), free(lg);
    return loss;
}

#endif /* HW_TESTS_REF_H */
