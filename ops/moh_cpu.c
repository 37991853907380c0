/* ops/moh_cpu.c -- the Mixture-of-Head router and gate ops on the CPU (see moh.h). */
#include "moh.h"

#include "../core/check.h"

#include <float.h>
#include <math.h>
#include <string.h>

void moh_spec_init(struct moh_spec *s, int H, int hs, int k, int literal, int qnorm) {
    HW_ASSERT(hs >= 0 && k >= 0 && hs + k <= H && (k > 0 || hs == H) && (!qnorm || k > 0));
    s->H = H;
    s->hs = hs;
    s->k = k;
    s->E = k > 0 ? H - hs : 0;
    s->literal = literal;
    s->qnorm = qnorm;
    s->ste = 1;
}

int moh_nr(const struct moh_spec *s) {
    return s->E;
}

int moh_ns(const struct moh_spec *s) {
    return !s->qnorm && s->hs > 1 ? s->hs : 0;
}

int moh_nh(const struct moh_spec *s) {
    return !s->qnorm && s->hs > 0 && s->k > 0 ? 2 : 0;
}

size_t moh_state_floats(const struct moh_spec *s, int N) {
    const size_t n = (size_t)N;
    return n * (2 * (size_t)moh_nr(s) + 2 * (size_t)moh_ns(s) + 2 * (size_t)moh_nh(s) +
                (size_t)s->H) +
           (s->qnorm ? n * (size_t)s->E + n : 0);
}

size_t moh_state_ints(const struct moh_spec *s, int N) {
    return (size_t)N * (size_t)s->k;
}

void moh_state_carve(struct moh_state *st, const struct moh_spec *s, int N, float *f, int32_t *i) {
    const size_t n = (size_t)N;
    memset(st, 0, sizeof(*st));
    st->zr = f, f += n * moh_nr(s);
    st->p = f, f += n * moh_nr(s);
    st->zs = f, f += n * moh_ns(s);
    st->ps = f, f += n * moh_ns(s);
    st->zh = f, f += n * moh_nh(s);
    st->a = f, f += n * moh_nh(s);
    st->G = f, f += n * s->H;
    if (s->qnorm) {
        st->qraw = f, f += n * s->E;
        st->qstd = f;
    }
    st->sel = i;
}

static void softmax(float *out, const float *z, int n) {
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

/* y = J_softmax(p)^T dy: dz_j = p_j (dy_j - sum_i dy_i p_i) */
static void softmax_back(float *dz, const float *p, const float *dy, int n, float scale) {
    double dot = 0.0;
    for (int i = 0; i < n; i++)
        dot += (double)dy[i] * p[i];
    for (int j = 0; j < n; j++)
        dz[j] = scale * p[j] * (float)(dy[j] - dot);
}

/* the k largest of z[0..E), ties to the lowest index, written ascending */
static void top_k(int32_t *sel, const float *z, int E, int k) {
    unsigned char taken[1024];
    HW_ASSERT(E <= 1024);
    memset(taken, 0, (size_t)E);
    for (int r = 0; r < k; r++) {
        int best = -1;
        for (int i = 0; i < E; i++)
            if (!taken[i] && (best < 0 || z[i] > z[best]))
                best = i;
        taken[best] = 1;
    }
    for (int i = 0, n = 0; i < E; i++)
        if (taken[i])
            sel[n++] = i;
}

/* qnorm: normalise the raw norms by their unbiased std over the routed heads */
static void qnorm_normalise(const struct moh_spec *s, int N, struct moh_state *st) {
    const int E = s->E;
    for (int t = 0; t < N; t++) {
        const float *q = st->qraw + (size_t)t * E;
        float *z = st->zr + (size_t)t * E;
        double mean = 0.0, var = 0.0;
        for (int i = 0; i < E; i++)
            mean += q[i];
        mean /= E;
        for (int i = 0; i < E; i++)
            var += (q[i] - mean) * (q[i] - mean);
        double sd = E > 1 ? sqrt(var / (E - 1)) : 0.0;
        /* equal norms: z = 0 everywhere (ties, broken by index); avoid 0/0 */
        float inv = sd > 1e-12 ? (float)(1.0 / sd) : 0.0f;
        st->qstd[t] = (float)sd;
        for (int i = 0; i < E; i++)
            z[i] = q[i] * inv;
    }
}

void moh_router_forward_cpu(const struct moh_spec *s, int N, struct moh_state *st) {
    const int H = s->H, hs = s->hs, k = s->k, E = s->E, ns = moh_ns(s), nh = moh_nh(s);
    if (s->qnorm)
        qnorm_normalise(s, N, st);
    for (int t = 0; t < N; t++) {
        float *G = st->G + (size_t)t * H;
        if (k == 0) { /* every head shared, softly re-weighted */
            float *ps = st->ps + (size_t)t * ns;
            if (ns) {
                softmax(ps, st->zs + (size_t)t * ns, ns);
                for (int i = 0; i < H; i++)
                    G[i] = (s->literal ? 1.0f : (float)H) * ps[i];
            } else {
                for (int i = 0; i < H; i++)
                    G[i] = 1.0f;
            }
            continue;
        }
        const float *zr = st->zr + (size_t)t * E;
        float *p = st->p + (size_t)t * E;
        int32_t *sel = st->sel + (size_t)t * k;
        softmax(p, zr, E);
        top_k(sel, zr, E, k);
        for (int i = hs; i < H; i++)
            G[i] = 0.0f;
        if (s->qnorm) {
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
            float *a = st->a + (size_t)t * nh;
            softmax(a, st->zh + (size_t)t * nh, 2);
            a1 = (s->literal ? 1.0f : 2.0f) * a[0];
            a2 = (s->literal ? 1.0f : 2.0f) * a[1];
        }
        for (int j = 0; j < k; j++) {
            const int i = sel[j];
            G[hs + i] = a2 * (s->literal ? p[i] : (float)k * p[i] / den);
        }
        if (ns) {
            float *ps = st->ps + (size_t)t * ns;
            softmax(ps, st->zs + (size_t)t * ns, ns);
            for (int i = 0; i < hs; i++)
                G[i] = a1 * (s->literal ? 1.0f : (float)hs) * ps[i];
        } else {
            for (int i = 0; i < hs; i++)
                G[i] = a1;
        }
    }
}

void moh_balance_sums_cpu(const struct moh_spec *s, int N, const struct moh_state *st, double *psum,
                          double *fsum) {
    const int E = s->E, k = s->k;
    if (k == 0)
        return;
    for (int t = 0; t < N; t++) {
        const float *p = st->p + (size_t)t * E;
        for (int i = 0; i < E; i++)
            psum[i] += p[i];
        for (int j = 0; j < k; j++)
            fsum[st->sel[(size_t)t * k + j]] += 1.0;
    }
}

double moh_balance_loss(const struct moh_spec *s, const double *psum, const double *fsum,
                        double n) {
    double acc = 0.0;
    for (int i = 0; i < s->E; i++)
        acc += (psum[i] / n) * (fsum[i] / n);
    return s->E * acc;
}

void moh_router_backward_cpu(const struct moh_spec *s, int N, const struct moh_state *st,
                             const float *dG, float bal_scale, const double *fsum, double n,
                             float *dzr, float *dzs, float *dzh) {
    const int H = s->H, hs = s->hs, k = s->k, E = s->E, ns = moh_ns(s), nh = moh_nh(s);
    float dg[1024], tmp[1024];
    HW_ASSERT(H <= 1024);
    for (int t = 0; t < N; t++) {
        const float *dGt = dG + (size_t)t * H;
        if (k == 0) {
            if (ns)
                softmax_back(dzs + (size_t)t * ns, st->ps + (size_t)t * ns, dGt, ns,
                             s->literal ? 1.0f : (float)H);
            continue;
        }
        const float *p = st->p + (size_t)t * E;
        const int32_t *sel = st->sel + (size_t)t * k;
        float *dz = dzr + (size_t)t * E;
        for (int i = 0; i < E; i++)
            dg[i] = 0.0f;
        if (s->qnorm) {
            /* straight-through: dL/d(soft gate) = dL/d(binary gate), on the selected heads (an
             * unselected head's output is never computed, so its gate gradient is 0) */
            for (int j = 0; j < k && s->ste; j++)
                dg[sel[j]] = dGt[hs + sel[j]];
            softmax_back(dz, p, dg, E, 1.0f);
        } else {
            float a1 = 1.0f, a2 = 1.0f;
            const float *a = nh ? st->a + (size_t)t * nh : NULL;
            if (nh) {
                a1 = (s->literal ? 1.0f : 2.0f) * a[0];
                a2 = (s->literal ? 1.0f : 2.0f) * a[1];
            }
            /* routed gates g_r and d(a2) */
            double ssum = 0.0, da2 = 0.0;
            for (int j = 0; j < k; j++)
                ssum += p[sel[j]];
            const float den = ssum > FLT_EPSILON ? (float)ssum : FLT_EPSILON;
            for (int j = 0; j < k; j++) {
                const int i = sel[j];
                const float gr = s->literal ? p[i] : (float)k * p[i] / den;
                da2 += (double)dGt[hs + i] * gr;
                dg[i] = a2 * dGt[hs + i]; /* dL/dg_r */
            }
            if (s->literal) {
                /* g_r = p on S: dz_j = p_j (dg_j - sum_i dg_i p_i), dg = 0 outside S */
                softmax_back(dz, p, dg, E, 1.0f);
            } else {
                /* g_r = k softmax_S(z): zero outside S */
                double dot = 0.0;
                for (int j = 0; j < k; j++)
                    dot += (double)dg[sel[j]] * (p[sel[j]] / den);
                for (int i = 0; i < E; i++)
                    dz[i] = 0.0f;
                for (int j = 0; j < k; j++) {
                    const int i = sel[j];
                    dz[i] = (float)k * (p[i] / den) * (float)(dg[i] - dot);
                }
            }
            /* shared gates and d(a1) */
            double da1 = 0.0;
            if (ns) {
                const float *ps = st->ps + (size_t)t * ns;
                const float sc = s->literal ? 1.0f : (float)hs;
                for (int i = 0; i < hs; i++) {
                    da1 += (double)dGt[i] * sc * ps[i];
                    tmp[i] = a1 * dGt[i];
                }
                softmax_back(dzs + (size_t)t * ns, ps, tmp, ns, sc);
            } else {
                for (int i = 0; i < hs; i++)
                    da1 += dGt[i];
            }
            if (nh) {
                float dav[2] = {(float)da1, (float)da2};
                softmax_back(dzh + (size_t)t * nh, a, dav, 2, s->literal ? 1.0f : 2.0f);
            }
        }
        if (bal_scale != 0.0f) {
            /* d/dp_i of scale * E * sum_i (P_i f_i) with P_i = sum_t p_ti / n */
            for (int i = 0; i < E; i++)
                tmp[i] = (float)(bal_scale * E * (fsum[i] / n) / n);
            float dzb[1024];
            softmax_back(dzb, p, tmp, E, 1.0f);
            for (int i = 0; i < E; i++)
                dz[i] += dzb[i];
        }
        if (s->qnorm) {
            /* z_i = q_i / sd, sd = std(q) (unbiased): dq_j = dz_j / sd - (sum_i dz_i z_i) *
             * (q_j - mean) / ((E - 1) sd^2) */
            const float *q = st->qraw + (size_t)t * E, *z = st->zr + (size_t)t * E;
            const double sd = st->qstd[t];
            if (sd > 1e-12) {
                double mean = 0.0, dzz = 0.0;
                for (int i = 0; i < E; i++) {
                    mean += q[i];
                    dzz += (double)dz[i] * z[i];
                }
                mean /= E;
                for (int j = 0; j < E; j++)
                    tmp[j] = (float)(dz[j] / sd - dzz * (q[j] - mean) / ((E - 1) * sd * sd));
            } else {
                for (int j = 0; j < E; j++)
                    tmp[j] = 0.0f;
            }
            memcpy(dz, tmp, sizeof(float) * (size_t)E);
        }
    }
}

void moh_gate_forward_cpu(float *dst, const float *att, const float *G, int N,
                          const struct moh_heads *hh) {
    const int hd = hh->hd, HD = hh->Hl * hd;
    for (int t = 0; t < N; t++)
        for (int h = 0; h < hh->Hl; h++) {
            const float g = G[(size_t)t * hh->H + hh->h0 + h];
            const float *x = att + (size_t)t * HD + (size_t)h * hd;
            float *y = dst + (size_t)t * HD + (size_t)h * hd;
            for (int d = 0; d < hd; d++)
                y[d] = g * x[d];
        }
}

void moh_gate_backward_cpu(float *datt, float *dG, const float *att, const float *G, int N,
                           const struct moh_heads *hh) {
    const int hd = hh->hd, HD = hh->Hl * hd, H = hh->H;
    memset(dG, 0, sizeof(float) * (size_t)N * H);
    for (int t = 0; t < N; t++)
        for (int h = 0; h < hh->Hl; h++) {
            float *dy = datt + (size_t)t * HD + (size_t)h * hd;
            const float *x = att + (size_t)t * HD + (size_t)h * hd;
            const float g = G[(size_t)t * H + hh->h0 + h];
            float acc = 0.0f;
            for (int d = 0; d < hd; d++) {
                acc += dy[d] * x[d];
                dy[d] *= g;
            }
            dG[(size_t)t * H + hh->h0 + h] = acc;
        }
}

void moh_qnorm_forward_cpu(float *qraw, const float *qkv, int ld, int N, int E, int hs,
                           const struct moh_heads *hh) {
    const int hd = hh->hd;
    memset(qraw, 0, sizeof(float) * (size_t)N * E);
    for (int t = 0; t < N; t++)
        for (int h = 0; h < hh->Hl; h++) {
            if (hh->h0 + h < hs)
                continue;
            const float *q = qkv + (size_t)t * ld + (size_t)h * hd;
            double ss = 0.0;
            for (int d = 0; d < hd; d++)
                ss += (double)q[d] * q[d];
            qraw[(size_t)t * E + (hh->h0 + h - hs)] = (float)sqrt(ss);
        }
}

void moh_qnorm_backward_cpu(float *dqkv, const float *dz, const float *qraw, const float *qkv,
                            int ld, int N, int E, int hs, const struct moh_heads *hh) {
    const int hd = hh->hd;
    for (int t = 0; t < N; t++)
        for (int h = 0; h < hh->Hl; h++) {
            if (hh->h0 + h < hs)
                continue;
            const float d = dz[(size_t)t * E + (hh->h0 + h - hs)];
            const float nrm = qraw[(size_t)t * E + (hh->h0 + h - hs)];
            if (d == 0.0f || nrm <= 0.0f)
                continue;
            const float *q = qkv + (size_t)t * ld + (size_t)h * hd;
            float *dq = dqkv + (size_t)t * ld + (size_t)h * hd;
            for (int i = 0; i < hd; i++)
                dq[i] += d * q[i] / nrm;
        }
}

void moh_select_rows_cpu(int32_t *idx, int32_t *off, const struct moh_spec *s, const int32_t *sel,
                         int B, int T, const struct moh_heads *hh) {
    const int hs = s->hs, k = s->k, Hl = hh->Hl;
    int n = 0;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < Hl; h++) {
            const int hg = hh->h0 + h;
            off[b * Hl + h] = n;
            for (int t = 0; t < T; t++) {
                const size_t row = (size_t)b * T + t;
                int on = hg < hs || k == 0;
                for (int j = 0; j < k && !on; j++)
                    on = sel[row * k + j] == hg - hs;
                if (on)
                    idx[n++] = t;
            }
        }
    off[B * Hl] = n;
}
