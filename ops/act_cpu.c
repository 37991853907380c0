/* ops/act_cpu.c -- SwiGLU and GELU on the CPU (see act.h). */
#include "act.h"

#include "vexp.h"

#include <math.h>
#include <stddef.h>

void swiglu_forward_cpu(float *out, const float *h, int N, int F) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *g = h + (size_t)n * 2 * F, *u = g + F;
        float *o = out + (size_t)n * F;
        for (int i = 0; i < F; i++)
            o[i] = g[i] / (1.0f + vexpf(-g[i])) * u[i];
    }
}

void swiglu_backward_cpu(float *dh, const float *dout, const float *h, int N, int F) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *g = h + (size_t)n * 2 * F, *u = g + F, *dy = dout + (size_t)n * F;
        float *dg = dh + (size_t)n * 2 * F, *du = dg + F;
        for (int i = 0; i < F; i++) {
            float sg = 1.0f / (1.0f + vexpf(-g[i]));
            float silu = g[i] * sg;
            du[i] = dy[i] * silu;
            dg[i] = dy[i] * u[i] * sg * (1.0f + g[i] * (1.0f - sg));
        }
    }
}

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */

void gelu_forward_cpu(float *out, const float *h, int N, int F) {
    size_t n = (size_t)N * F;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float x = h[i];
        out[i] = 0.5f * x * (1.0f + tanhf(GELU_K * (x + 0.044715f * x * x * x)));
    }
}

void gelu_backward_cpu(float *dh, const float *dout, const float *h, int N, int F) {
    size_t n = (size_t)N * F;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float x = h[i];
        float u = GELU_K * (x + 0.044715f * x * x * x);
        float t = tanhf(u);
        float du = GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
        dh[i] = dout[i] * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du);
    }
}

void sigmoid_gate_forward_cpu(float *out, const float *y, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        out[i] = y[i] * (1.0f / (1.0f + expf(-u[i])));
}

void sigmoid_gate_backward_cpu(float *dy, float *du, const float *dout, const float *y,
                               const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float g = 1.0f / (1.0f + expf(-u[i]));
        dy[i] = dout[i] * g;
        du[i] = dout[i] * y[i] * g * (1.0f - g);
    }
}
