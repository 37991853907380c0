/* ops/norm_cpu.c -- RMSNorm forward/backward on the CPU (see norm.h). */
#include "norm.h"

#include "../core/check.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

void rmsnorm_forward_cpu(float *out, float *rstd, const float *inp, const float *w, int N, int C,
                         float eps) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *y = out + (size_t)n * C;
        float ss = 0.0f;
        for (int c = 0; c < C; c++)
            ss += x[c] * x[c];
        float r = 1.0f / sqrtf(ss / (float)C + eps);
        rstd[n] = r;
        for (int c = 0; c < C; c++)
            y[c] = x[c] * r * w[c];
    }
}

void rmsnorm_backward_cpu(float *dinp, float *dw, const float *dout, const float *inp,
                          const float *w, const float *rstd, int N, int C) {
    int nt = omp_get_max_threads();
    float *part = HW_CALLOC((size_t)nt * C, sizeof(float));
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        float *pw = part + (size_t)t * C;
        /* static contiguous row ranges: the split depends only on N and the thread count */
        int lo = (int)((long long)N * t / T), hi = (int)((long long)N * (t + 1) / T);
        for (int n = lo; n < hi; n++) {
            const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
            float *dx = dinp + (size_t)n * C;
            float r = rstd[n], dot = 0.0f;
            for (int c = 0; c < C; c++) {
                dot += dy[c] * w[c] * x[c];
                pw[c] += dy[c] * x[c] * r;
            }
            float k = dot * r * r * r / (float)C;
            for (int c = 0; c < C; c++)
                dx[c] += dy[c] * w[c] * r - x[c] * k;
        }
    }
    for (int t = 0; t < nt; t++)
        for (int c = 0; c < C; c++)
            dw[c] += part[(size_t)t * C + c];
    free(part);
}
