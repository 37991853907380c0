/* ops/rec_cpu.c -- the CPU table of the rec model's kernels (rec_ops.h): plain loops in double,
 * in the order the model was written in, which the GPU kernels follow per element. */
#include "rec_ops.h"

#include "../core/check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void cpu_to_f64(size_t n, const float *x, double *y) {
    for (size_t i = 0; i < n; i++)
        y[i] = x[i];
}

static void cpu_add_to_f32(size_t n, const double *x, float *y) {
    for (size_t i = 0; i < n; i++)
        y[i] += (float)x[i];
}

static void cpu_gather_concat(int B, int L, const int32_t *tix, const int32_t *hix,
                              const float *rows, int dim, int off, int D, double *t, double *h) {
    for (int b = 0; b < B; b++)
        for (int j = -1; j < L; j++) {
            int ix = j < 0 ? tix[b] : hix[(size_t)b * L + j];
            if (ix < 0)
                continue;
            double *dst = (j < 0 ? t + (size_t)b * D : h + ((size_t)b * L + j) * D) + off;
            const float *src = rows + (size_t)ix * dim;
            for (int e = 0; e < dim; e++)
                dst[e] = src[e];
        }
}

static double score(const double *q, const double *k, int sem, int Da, double cs, double ct) {
    double a = 0.0, t = 0.0;
    for (int e = 0; e < sem; e++)
        a += q[e] * k[e];
    for (int e = sem; e < Da; e++)
        t += q[e] * k[e];
    return a * cs + t * ct;
}

static void cpu_scores(int B, int L, const int32_t *hitem, const double *q, const double *k,
                       int sem, int Da, double cs, double ct, double *s) {
    for (int b = 0; b < B; b++)
        for (int j = 0; j < L; j++)
            s[(size_t)b * L + j] =
                hitem[(size_t)b * L + j] > 0
                    ? score(q + (size_t)b * Da, k + ((size_t)b * L + j) * Da, sem, Da, cs, ct)
                    : REC_MASKED;
}

/* Top-k of s[0..n) into idx, best first: a sorted buffer of the k best so far, scanned in
 * slot order, where a later slot enters only with a strictly higher score, so ties keep the
 * lowest slot. O(n + inserts * k); val is scratch (k). */
void rec_topk_host(const double *s, int n, int k, int32_t *idx, double *val) {
    int m = 0;
    for (int j = 0; j < n; j++) {
        double x = s[j];
        if (m == k && !(x > val[k - 1]))
            continue;
        int p = m < k ? m++ : k - 1; /* drop the last when full */
        while (p > 0 && x > val[p - 1]) {
            val[p] = val[p - 1];
            idx[p] = idx[p - 1];
            p--;
        }
        val[p] = x;
        idx[p] = j;
    }
}

static void cpu_topk(int B, int L, int K, const double *s, int32_t *idx) {
    double *val = HW_MALLOC(sizeof(double) * (size_t)K);
    for (int b = 0; b < B; b++)
        rec_topk_host(s + (size_t)b * L, L, K, idx + (size_t)b * K, val);
    free(val);
}

void rec_esu_host(const double *s, const int32_t *slots, int n, const double *v, int dim,
                  double *wt, double *h) {
    double mx = -INFINITY, z = 0.0;
    for (int i = 0; i < n; i++) {
        double si = s[slots ? slots[i] : i];
        if (si > REC_MASKED && si > mx)
            mx = si;
    }
    for (int i = 0; i < n; i++) {
        double si = s[slots ? slots[i] : i];
        wt[i] = si > REC_MASKED ? exp(si - mx) : 0.0;
        z += wt[i];
    }
    for (int e = 0; e < dim; e++)
        h[e] = 0.0;
    for (int i = 0; i < n; i++) {
        wt[i] = z > 0 ? wt[i] / z : 0.0;
        const double *vj = v + (size_t)(slots ? slots[i] : i) * dim;
        for (int e = 0; e < dim && wt[i] != 0.0; e++)
            h[e] += wt[i] * vj[e];
    }
}

static void cpu_esu(int B, int n, int L, const double *s, const int32_t *slots, const double *v,
                    int R, double *wt, double *h) {
    for (int b = 0; b < B; b++)
        rec_esu_host(s + (size_t)b * L, slots ? slots + (size_t)b * n : NULL, n,
                     v + (size_t)b * L * R, R, wt + (size_t)b * n, h + (size_t)b * R);
}

static void cpu_add_bias(int B, int n, double *y, const double *bias) {
    for (int b = 0; b < B; b++)
        for (int o = 0; o < n; o++)
            y[(size_t)b * n + o] += bias[o];
}

static void cpu_colsum(int B, int n, const double *x, double *out, int acc) {
    if (!acc)
        for (int f = 0; f < n; f++)
            out[f] = 0.0;
    for (int b = 0; b < B; b++)
        for (int f = 0; f < n; f++)
            out[f] += x[(size_t)b * n + f];
}

static void cpu_colsum_sq_centered(int B, int F, const double *z, const double *mean, double *out) {
    for (int f = 0; f < F; f++)
        out[f] = 0.0;
    for (int b = 0; b < B; b++)
        for (int f = 0; f < F; f++) {
            double c = z[(size_t)b * F + f] - mean[f];
            out[f] += c * c;
        }
}

static void cpu_bn_apply(int B, int F, const double *z, const double *mean, const double *rstd,
                         const double *g, const double *be, double *xh, double *y) {
    for (int b = 0; b < B; b++)
        for (int f = 0; f < F; f++) {
            size_t i = (size_t)b * F + f;
            xh[i] = (z[i] - mean[f]) * rstd[f];
            y[i] = g[f] * xh[i] + be[f];
        }
}

static void cpu_bn_bwd_sums(int B, int F, const double *dx, const double *xh, const double *g,
                            double *dgam, double *dbet, double *sums) {
    for (int f = 0; f < 2 * F; f++)
        sums[f] = 0.0;
    for (int b = 0; b < B; b++)
        for (int f = 0; f < F; f++) {
            size_t i = (size_t)b * F + f;
            dgam[f] += dx[i] * xh[i];
            dbet[f] += dx[i];
            double dxh = dx[i] * g[f];
            sums[f] += dxh;
            sums[F + f] += dxh * xh[i];
        }
}

static void cpu_bn_bwd_apply(int B, int F, double *dx, const double *g, const double *rstd,
                             const double *xh, const double *sums, double N) {
    for (int b = 0; b < B; b++)
        for (int f = 0; f < F; f++) {
            size_t i = (size_t)b * F + f;
            double dxh = dx[i] * g[f];
            dx[i] = rstd[f] / N * (N * dxh - sums[f] - xh[i] * sums[F + f]);
        }
}

static void cpu_prelu_fwd(size_t n, const double *a, const double *alpha, double *o) {
    const double al = alpha[0];
    for (size_t i = 0; i < n; i++)
        o[i] = a[i] > 0 ? a[i] : al * a[i];
}

static void cpu_prelu_bwd(size_t n, const double *a, const double *alpha, double *dx,
                          double *dalpha) {
    const double al = alpha[0];
    double dal = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (a[i] > 0)
            continue;
        dal += a[i] * dx[i];
        dx[i] *= al;
    }
    dalpha[0] += dal;
}

static void cpu_softmax2(int B, const double *logit, double *q) {
    for (int b = 0; b < B; b++) {
        double l0 = logit[2 * b], l1 = logit[2 * b + 1], mx = l0 > l1 ? l0 : l1;
        double e0 = exp(l0 - mx), e1 = exp(l1 - mx);
        q[2 * b] = e0 / (e0 + e1);
        q[2 * b + 1] = e1 / (e0 + e1);
    }
}

static void cpu_xent2(int B, const double *q, const float *label, double inv_n, double *loss,
                      double *dlog) {
    for (int b = 0; b < B; b++) {
        int y = label[b] > 0.5f ? 0 : 1;
        double qy = q[2 * b + y];
        loss[b] = inv_n * log(qy + 1e-8);
        if (!dlog)
            continue;
        double gy = -inv_n / (qy + 1e-8);
        for (int k = 0; k < 2; k++)
            dlog[2 * b + k] = q[2 * b + k] * ((k == y ? gy : 0.0) - gy * qy);
    }
}

static void cpu_features(int B, int R, const double *t, const double *h, double *z) {
    for (int b = 0; b < B; b++)
        for (int k = 0; k < R; k++) {
            double tv = t[(size_t)b * R + k], hv = h[(size_t)b * R + k];
            z[(size_t)b * 3 * R + k] = tv;
            z[(size_t)b * 3 * R + R + k] = hv;
            z[(size_t)b * 3 * R + 2 * R + k] = tv * hv;
        }
}

static void cpu_features_bwd(int B, int R, const double *dz, const double *t, const double *h,
                             double *dt, double *dh) {
    for (int b = 0; b < B; b++)
        for (int e = 0; e < R; e++) {
            const double *zb = dz + (size_t)b * 3 * R;
            double tv = t[(size_t)b * R + e], hv = h[(size_t)b * R + e];
            dt[(size_t)b * R + e] += zb[e] + zb[2 * R + e] * hv;
            dh[(size_t)b * R + e] = zb[R + e] + zb[2 * R + e] * tv;
        }
}

static void cpu_attn_bwd(int B, int n, int L, const int32_t *slots, const double *wts,
                         const double *dhs, const double *vr, const double *qa, const double *ka,
                         int R, int Da, int sem, double cs, double ct, double *dq, double *dk,
                         double *dvr) {
    double *dw = HW_MALLOC(sizeof(double) * (size_t)(n ? n : 1));
    for (int b = 0; b < B; b++) {
        const double *wt = wts + (size_t)b * n, *dh = dhs + (size_t)b * R;
        const int32_t *sl = slots ? slots + (size_t)b * n : NULL;
        double dot = 0.0;
        for (int i = 0; i < n; i++) {
            dw[i] = 0.0;
            int j = sl ? sl[i] : i;
            if (wt[i] == 0.0)
                continue;
            const double *v = vr + ((size_t)b * L + j) * R;
            double *dv = dvr + ((size_t)b * L + j) * R;
            for (int e = 0; e < R; e++) {
                dw[i] += dh[e] * v[e];
                dv[e] += wt[i] * dh[e];
            }
            dot += wt[i] * dw[i];
        }
        const double *q = qa + (size_t)b * Da;
        for (int i = 0; i < n; i++) {
            int j = sl ? sl[i] : i;
            if (wt[i] == 0.0)
                continue;
            double ds = wt[i] * (dw[i] - dot);
            const double *k = ka + ((size_t)b * L + j) * Da;
            double *dkj = dk + ((size_t)b * L + j) * Da;
            for (int e = 0; e < Da; e++) {
                double c = e < sem ? cs : ct;
                dq[(size_t)b * Da + e] += ds * c * k[e];
                dkj[e] += ds * c * q[e];
            }
        }
    }
    free(dw);
}

static void cpu_axpy(size_t n, const double *x, double *y) {
    for (size_t i = 0; i < n; i++)
        y[i] += x[i];
}

static void cpu_rows_accum(int nu, int dim, const int32_t *start, const int32_t *occ, int B,
                           const double *t, const double *h, int off, int D, double *acc) {
    for (int u = 0; u < nu; u++) {
        double *a = acc + (size_t)u * dim;
        for (int e = 0; e < dim; e++)
            a[e] = 0.0;
        for (int o = start[u]; o < start[u + 1]; o++) {
            int r = occ[o];
            const double *src = (r < B ? t + (size_t)r * D : h + (size_t)(r - B) * D) + off;
            for (int e = 0; e < dim; e++)
                a[e] += src[e];
        }
    }
}

static double cpu_l2(size_t n, const float *x, float *g, double c, double s0) {
    double s = s0;
    for (size_t j = 0; j < n; j++) {
        s += (double)x[j] * x[j];
        if (g)
            g[j] += (float)(c * x[j]);
    }
    return s;
}

const struct rec_ops rec_ops_cpu = {
    .to_f64 = cpu_to_f64,
    .add_to_f32 = cpu_add_to_f32,
    .gather_concat = cpu_gather_concat,
    .scores = cpu_scores,
    .topk = cpu_topk,
    .esu = cpu_esu,
    .add_bias = cpu_add_bias,
    .colsum = cpu_colsum,
    .colsum_sq_centered = cpu_colsum_sq_centered,
    .bn_apply = cpu_bn_apply,
    .bn_bwd_sums = cpu_bn_bwd_sums,
    .bn_bwd_apply = cpu_bn_bwd_apply,
    .prelu_fwd = cpu_prelu_fwd,
    .prelu_bwd = cpu_prelu_bwd,
    .softmax2 = cpu_softmax2,
    .xent2 = cpu_xent2,
    .features = cpu_features,
    .features_bwd = cpu_features_bwd,
    .attn_bwd = cpu_attn_bwd,
    .axpy = cpu_axpy,
    .rows_accum = cpu_rows_accum,
    .l2 = cpu_l2,
};
