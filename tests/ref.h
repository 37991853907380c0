/* tests/ref.h -- naive double-precision reference implementations of every op and of the whole
 * model's loss, used to check the fast float kernels and, through central finite differences,
 * their backwards. Written for clarity, not speed. */
#ifndef HW_TESTS_REF_H
#define HW_TESTS_REF_H

#include "../model/gpt.h"

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

/* causal attention over qkv (B,T,ld) = [q H heads | k Hkv | v Hkv]; out (B,T,H*hd) */
static inline void ref_attention(double *out, const double *qkv, int B, int T, int H, int Hkv,
                                 int hd, int ld) {
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
                    p[j] = exp(p[j] - mx);
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

/* The final-norm output (B*T, C) of the whole model in double, reading weights from P (laid out
 * as m->params); returns the index of the parameter after final_norm. */
static inline int ref_gpt_hidden(const struct gpt *m, const double *P, const int32_t *tok, int B,
                                 int T, double *out) {
    const struct gpt_config *c = &m->c;
    const int N = B * T, C = c->C, HD = c->H * c->hd, D = HD + 2 * c->Hkv * c->hd;
    const int Fin = c->mlp == GPT_MLP_SWIGLU ? 2 * c->F : c->F;
    const int W = C > Fin ? C : Fin;
    double *x = calloc((size_t)N * C, sizeof(double)), *n1 = calloc((size_t)N * C, sizeof(double));
    double *qkv = calloc((size_t)N * D, sizeof(double)), *att = calloc((size_t)N * HD, 8);
    double *tmp = calloc((size_t)N * W, sizeof(double));
    double *h = calloc((size_t)N * Fin, 8), *a = calloc((size_t)N * c->F, 8);
    int pi = 0;
    const double *wte = P + m->params[pi++].offset;
    for (int n = 0; n < N; n++)
        memcpy(x + (size_t)n * C, wte + (size_t)tok[n] * C, sizeof(double) * C);
    for (int l = 0; l < c->L; l++) {
        const double *wn1 = P + m->params[pi++].offset, *wqkv = P + m->params[pi].offset;
        pi += 3;
        const double *wo = P + m->params[pi++].offset, *wn2 = P + m->params[pi++].offset;
        const double *win = P + m->params[pi].offset;
        pi += c->mlp == GPT_MLP_SWIGLU ? 2 : 1;
        const double *wout = P + m->params[pi++].offset;
        ref_rmsnorm(n1, x, wn1, N, C, c->eps);
        ref_matmul(qkv, n1, wqkv, N, C, D);
        ref_rope(qkv, B, T, c->H, c->hd, D, 0, c->rope_theta);
        ref_rope(qkv + HD, B, T, c->Hkv, c->hd, D, 0, c->rope_theta);
        ref_attention(att, qkv, B, T, c->H, c->Hkv, c->hd, D);
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
    free(x), free(n1), free(qkv), free(att), free(tmp), free(h), free(a);
    return pi;
}

/* Summed LM loss of the whole model in double. */
static inline double ref_gpt_loss(const struct gpt *m, const double *P, const int32_t *tok,
                                  const int32_t *tgt, int B, int T) {
    const struct gpt_config *c = &m->c;
    const int N = B * T, C = c->C;
    double *hid = calloc((size_t)N * C, sizeof(double));
    double *lg = calloc((size_t)N * c->V, sizeof(double));
    int pi = ref_gpt_hidden(m, P, tok, B, T, hid);
    const double *wlm = c->tied ? P + m->params[0].offset : P + m->params[pi].offset;
    ref_matmul(lg, hid, wlm, N, C, c->V);
    double loss = ref_xent(lg, tgt, N, c->V, -1);
    free(hid), free(lg);
    return loss;
}

#endif /* HW_TESTS_REF_H */
