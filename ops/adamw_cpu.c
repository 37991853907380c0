/* ops/adamw_cpu.c -- AdamW update and squared norms (see adamw.h). */
#include "adamw.h"

#include <math.h>
#include <omp.h>

void adamw_update_cpu(float *p, float *m, float *v, const float *g, size_t n, float lr, float b1,
                      float b2, float eps, float wd, int t, float grad_scale) {
    const float c1 = 1.0f / (1.0f - powf(b1, (float)t));
    const float c2 = 1.0f / (1.0f - powf(b2, (float)t));
    const float decay = 1.0f - lr * wd;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * grad_scale;
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * decay - lr * (mi * c1) / (sqrtf(vi * c2) + eps);
    }
}

double sumsq_cpu(const float *x, size_t n) {
    double part[256] = {0};
    int nt = omp_get_max_threads();
    if (nt > 256)
        nt = 256;
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        size_t lo = n * (size_t)t / (size_t)T, hi = n * (size_t)(t + 1) / (size_t)T;
        double s = 0.0;
        for (size_t i = lo; i < hi; i++)
            s += (double)x[i] * (double)x[i];
        part[t] = s;
    }
    double s = 0.0;
    for (int t = 0; t < nt; t++)
        s += part[t];
    return s;
}
