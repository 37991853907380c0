/* ops/embed_cpu.c -- embedding lookup/scatter and residual adds (see embed.h). */
#include "embed.h"

#include "../core/check.h"

#include <omp.h>
#include <string.h>

static void check_ids(const int32_t *tok, int N, int V) {
    for (int n = 0; n < N; n++)
        if (tok[n] < 0 || tok[n] >= V)
            hw_die_at(__FILE__, __LINE__,
                      "embedding: token id %d at position %d is outside the vocabulary (%d)",
                      tok[n], n, V);
}

void embed_forward_cpu(float *out, const int32_t *tok, const float *wte, int N, int C, int V) {
    check_ids(tok, N, V);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        memcpy(out + (size_t)n * C, wte + (size_t)tok[n] * C, sizeof(float) * C);
}

void embed_backward_cpu(float *dwte, const float *dout, const int32_t *tok, int N, int C, int V) {
    check_ids(tok, N, V);
#pragma omp parallel
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int lo = C * t / nt, hi = C * (t + 1) / nt;
        for (int n = 0; n < N; n++) {
            float *dst = dwte + (size_t)tok[n] * C;
            const float *src = dout + (size_t)n * C;
            for (int c = lo; c < hi; c++)
                dst[c] += src[c];
        }
    }
}

void residual_add_cpu(float *out, const float *a, const float *b, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

void rows_scatter_add_f64_cpu(float *dst, const int32_t *ids, int n, int dim, const double *src) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < dim; j++)
            dst[(size_t)ids[i] * dim + j] += (float)src[(size_t)i * dim + j];
}
