/* model/gpt_probe.c -- attention probabilities and vocabulary rows (see gpt_probe.h). */
#include "gpt_probe.h"

#include "../core/check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void gpt_attn_probs(const struct gpt *m, int layer, int t, double *p) {
    const struct gpt_config *c = &m->c;
    HW_ASSERT(m->tp.hp == 1 && m->tp.cp == 1 && m->B == 1 && !m->seg);
    HW_ASSERT(layer >= 0 && layer < c->L && t >= 0 && t < m->T);
    const int hd = c->hd, H = c->H, group = c->H / c->Hkv;
    int D = 0;
    const float *qkv_d = gpt_attn_qkv(m, layer, &D);
    HW_ASSERT(qkv_d); /* a layer with attention */
    float *qkv = HW_MALLOC(sizeof(float) * (size_t)(t + 1) * D);
    m->ops->download(qkv, qkv_d, sizeof(float) * (size_t)(t + 1) * D);
    const double scale = 1.0 / sqrt((double)hd);
    for (int h = 0; h < H; h++) {
        const float *q = qkv + (size_t)t * D + (size_t)h * hd;
        const int kvh = h / group;
        double *ph = p + (size_t)h * (t + 1), mx = -INFINITY, sum = 0.0;
        for (int j = 0; j <= t; j++) {
            const float *k = qkv + (size_t)j * D + (size_t)H * hd + (size_t)kvh * hd;
            double s = 0.0;
            for (int d = 0; d < hd; d++)
                s += (double)q[d] * (double)k[d];
            ph[j] = s * scale;
            mx = ph[j] > mx ? ph[j] : mx;
        }
        for (int j = 0; j <= t; j++)
            sum += ph[j] = exp(ph[j] - mx);
        for (int j = 0; j <= t; j++)
            ph[j] /= sum;
    }
    free(qkv);
}

void gpt_rows_set_mean(float *w, int C, int64_t n_mean, const int64_t *rows, int n_rows) {
    HW_ASSERT(n_mean > 0);
    double *acc = HW_CALLOC((size_t)C, sizeof(double));
    for (int64_t r = 0; r < n_mean; r++)
        for (int j = 0; j < C; j++)
            acc[j] += w[r * C + j];
    for (int i = 0; i < n_rows; i++)
        for (int j = 0; j < C; j++)
            w[rows[i] * C + j] = (float)(acc[j] / (double)n_mean);
    free(acc);
}
