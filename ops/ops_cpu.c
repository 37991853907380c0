/* ops/ops_cpu.c -- the CPU backend table and thread control (see ops.h). */
#include "ops.h"

#include "../core/check.h"
#include "act.h"
#include "attention.h"
#include "embed.h"
#include "matmul.h"
#include "norm.h"
#include "rope.h"
#include "xent.h"

#include "../core/log.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>

static const struct ops ops_cpu = {
    .name = "cpu",
    .matmul_forward = matmul_forward_cpu,
    .matmul_backward = matmul_backward_cpu,
    .rmsnorm_forward = rmsnorm_forward_cpu,
    .rmsnorm_backward = rmsnorm_backward_cpu,
    .rope_forward = rope_forward_cpu,
    .rope_backward = rope_backward_cpu,
    .attention_forward = attention_forward_cpu,
    .attention_backward = attention_backward_cpu,
    .attention_decode = attention_decode_cpu,
    .attention_decode_steer = attention_decode_steer_cpu,
    .attention_block_forward = attention_block_forward_cpu,
    .attention_block_backward = attention_block_backward_cpu,
    .swiglu_forward = swiglu_forward_cpu,
    .swiglu_backward = swiglu_backward_cpu,
    .gelu_forward = gelu_forward_cpu,
    .gelu_backward = gelu_backward_cpu,
    .xent_forward_backward = xent_forward_backward_cpu,
    .embed_forward = embed_forward_cpu,
    .embed_backward = embed_backward_cpu,
    .residual_add = residual_add_cpu,
};

const struct ops *ops_for(enum backend b) {
    switch (b) {
    case BACKEND_CPU:
        return &ops_cpu;
    case BACKEND_CUDA:
        HW_DIE("built without CUDA kernels: the CUDA backend table is not compiled into this "
               "build; use the CPU backend");
    }
    HW_DIE("unknown backend %d", (int)b);
}

int ops_set_threads(int n) {
    if (n <= 0)
        n = omp_get_num_procs();
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
    return n;
}

void ops_set_blas_threads(int n) {
    openblas_set_num_threads(n > 0 ? n : 1);
}

double ops_sgemm_peak(double seconds) {
    const int n = 1024;
    float *a = HW_MALLOC(sizeof(float) * n * n), *b = HW_MALLOC(sizeof(float) * n * n),
          *c = HW_MALLOC(sizeof(float) * n * n);
    for (int i = 0; i < n * n; i++) {
        a[i] = (float)(i % 13) * 0.01f;
        b[i] = (float)(i % 7) * 0.01f;
    }
    double best = 0.0, t_end = log_now() + seconds;
    do {
        double t0 = log_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c,
                    n);
        double r = 2.0 * n * n * (double)n / (log_now() - t0);
        best = r > best ? r : best;
    } while (log_now() < t_end);
    free(a);
    free(b);
    free(c);
    return best;
}
