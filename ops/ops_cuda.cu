/* ops/ops_cuda.cu -- the CUDA backend table (see ops.h): the memory slots of cuda_ctx.cu and
 * the kernels of the ops/<family>_cuda.cu files, ggml-style positional where the table is
 * complete. Until every op family is in, supports() reports only what is here, so a model
 * asks for what it needs (ops_require) and is refused at start-up with one line. */
#include "cuda_common.cuh"
#include "cuda_ctx.h"
#include "ops.h"

#include <stdio.h>

static int cuda_supports(enum ops_cap cap) {
    (void)cap;
    return 0;
}

static struct ops g_cuda_ops;

extern "C" const struct ops *ops_cuda_table(const char **why) {
    static char msg[256];
    int n = cuda_device_count();
    if (n == 0) {
        snprintf(msg, sizeof(msg),
                 "run.backend cuda: no CUDA device found (the driver reports none); run on a GPU "
                 "node or set run.backend: cpu");
        *why = msg;
        return NULL;
    }
    if (!g_cuda_ops.name) {
        g_cuda_ops.name = "cuda";
        g_cuda_ops.kind = BACKEND_CUDA;
        g_cuda_ops.alloc = cuda_alloc;
        g_cuda_ops.free = cuda_free;
        g_cuda_ops.memset = cuda_memset;
        g_cuda_ops.copy = cuda_copy;
        g_cuda_ops.upload = cuda_upload;
        g_cuda_ops.download = cuda_download;
        g_cuda_ops.synchronize = cuda_synchronize;
        g_cuda_ops.supports = cuda_supports;
    }
    *why = NULL;
    return &g_cuda_ops;
}
