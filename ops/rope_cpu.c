/* ops/rope_cpu.c -- rotary embeddings on the CPU (see rope.h). */
#include "rope.h"

#include <math.h>
#include <stddef.h>

/* frequency i (theta^(-2i/hd)), scaled as sc says */
static double rope_freq(int i, int hd, double theta, const struct rope_scaling *sc) {
    double f = pow(theta, -2.0 * i / hd);
    if (!sc || sc->factor <= 0)
        return f;
    const double pi = 3.14159265358979323846, w = 2.0 * pi / f, L0 = sc->original_max_seq;
    if (w > L0 / sc->low_freq_factor)
        return f / sc->factor;
    if (w < L0 / sc->high_freq_factor)
        return f;
    const double s = (L0 / w - sc->low_freq_factor) / (sc->high_freq_factor - sc->low_freq_factor);
    return (1.0 - s) * f / sc->factor + s * f;
}

void rope_tables(float *cos_t, float *sin_t, int max_T, int hd, double theta,
                 const struct rope_scaling *sc) {
    int h2 = hd / 2;
    for (int t = 0; t < max_T; t++)
        for (int i = 0; i < h2; i++) {
            double a = (double)t * rope_freq(i, hd, theta, sc);
            cos_t[(size_t)t * h2 + i] = (float)cos(a);
            sin_t[(size_t)t * h2 + i] = (float)sin(a);
        }
}

static void rope_apply(float *x, const float *cos_t, const float *sin_t, int B, int T, int n_heads,
                       int hd, int ld, const int32_t *pos, float sign) {
    int h2 = hd / 2;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const float *c = cos_t + (size_t)pos[t] * h2, *s = sin_t + (size_t)pos[t] * h2;
            float *row = x + ((size_t)b * T + t) * ld;
            for (int h = 0; h < n_heads; h++) {
                float *v = row + (size_t)h * hd;
                for (int i = 0; i < h2; i++) {
                    float x0 = v[i], x1 = v[i + h2], si = sign * s[i];
                    v[i] = x0 * c[i] - x1 * si;
                    v[i + h2] = x1 * c[i] + x0 * si;
                }
            }
        }
}

void rope_forward_cpu(float *x, const float *cos_t, const float *sin_t, int B, int T, int n_heads,
                      int hd, int ld, const int32_t *pos) {
    rope_apply(x, cos_t, sin_t, B, T, n_heads, hd, ld, pos, 1.0f);
}

void rope_backward_cpu(float *dx, const float *cos_t, const float *sin_t, int B, int T, int n_heads,
                       int hd, int ld, const int32_t *pos) {
    rope_apply(dx, cos_t, sin_t, B, T, n_heads, hd, ld, pos, -1.0f);
}
