/* ops/ops_cuda.cu -- the CUDA backend table (see ops.h): the memory slots of cuda_ctx.cu (plain
 * cudaMalloc'd buffers, copies and memsets on the compute stream) and the kernels of the
 * ops/<family>_cuda.cu files, ggml-style positional. supports() names the op groups that are
 * here; a model that needs another (the Titans memory, the rec model) is refused
 * at start-up with one line (ops_require), never in the middle of a step. */
#include "cuda_common.cuh"
#include "cuda_ctx.h"

extern "C" {
#include "act.h"
#include "adamw.h"
#include "attention.h"
#include "embed.h"
#include "gemm.h"
#include "matmul.h"
#include "moh.h"
#include "norm.h"
#include "ops.h"
#include "rec_ops.h"
#include "rope.h"
#include "titans_ops.h"
#include "xent.h"
}

#include <stdio.h>

static void cuda_copy2d(void *dst, size_t ldd, const void *src, size_t lds, size_t rows,
                        size_t row_bytes) {
    if (rows && row_bytes)
        HW_CHECK_CUDA(cudaMemcpy2DAsync(dst, ldd, src, lds, row_bytes, rows,
                                        cudaMemcpyDeviceToDevice, cuda_ctx()->stream));
}

static void cuda_memset2d(void *dst, size_t ldd, int value, size_t rows, size_t row_bytes) {
    if (rows && row_bytes)
        HW_CHECK_CUDA(cudaMemset2DAsync(dst, ldd, value, row_bytes, rows, cuda_ctx()->stream));
}

static void ops_event_record(void *ev, enum ops_stream s) {
    cuda_event_record(ev, s == OPS_STREAM_COMM ? 1 : 0);
}
static void ops_event_wait(enum ops_stream s, void *ev) {
    cuda_event_wait(s == OPS_STREAM_COMM ? 1 : 0, ev);
}
static void ops_copy_async(void *dst, const void *src, size_t bytes, enum ops_stream s) {
    cuda_copy_async(dst, src, bytes, s == OPS_STREAM_COMM ? 1 : 0);
}

static int cuda_supports(enum ops_cap cap) {
    switch (cap) {
    case OPS_CAP_CORE:
    case OPS_CAP_ATTN_S2:
    case OPS_CAP_ATTN_SEG:
    case OPS_CAP_ATTN_PREFIX:
    case OPS_CAP_DECODE:
    case OPS_CAP_F64:
    case OPS_CAP_BF16:
    case OPS_CAP_ATTN_MOH:
    case OPS_CAP_ATTN_RING: /* block kernels at absolute positions; the ring stages on the host */
    case OPS_CAP_BF16_TRAIN: /* train.precision: bf16 (set_precision below) */
    case OPS_CAP_TITANS:     /* titans_cuda.cu and the GEMMs */
    case OPS_CAP_REC:        /* rec_cuda.cu and the fp64 GEMMs */
        return 1;
    case OPS_CAPS:
        return 0;
    }
    return 0;
}

/* train.precision: the GEMMs' fp32 entry points (matmul_cuda.cu) and the attention tiles
 * (attention_cuda.cu: q, k, v, dO, P, dS) take bf16-rounded inputs, as the CPU backend does. */
static enum hw_dtype g_precision = HW_F32;
static enum hw_dtype cuda_set_precision(enum hw_dtype t) {
    if (t != HW_F32 && t != HW_BF16) {
        fprintf(stderr, "error: the cuda backend has no train.precision %s\n", hw_dtype_name(t));
        abort();
    }
    const enum hw_dtype old = g_precision;
    g_precision = t;
    matmul_cuda_set_bf16(t == HW_BF16);
    attention_cuda_set_bf16(t == HW_BF16);
    return old;
}
static enum hw_dtype cuda_precision(void) {
    return g_precision;
}

static const struct ops ops_cuda = {
    /* .name = */ "cuda",
    /* .kind = */ BACKEND_CUDA,
    /* .alloc = */ cuda_alloc,
    /* .free = */ cuda_free,
    /* .memset = */ cuda_memset,
    /* .copy = */ cuda_copy,
    /* .copy2d = */ cuda_copy2d,
    /* .memset2d = */ cuda_memset2d,
    /* .upload = */ cuda_upload,
    /* .download = */ cuda_download,
    /* .synchronize = */ cuda_synchronize,
    /* .supports = */ cuda_supports,
    /* .event_new = */ cuda_event_new,
    /* .event_free = */ cuda_event_free,
    /* .event_record = */ ops_event_record,
    /* .event_wait = */ ops_event_wait,
    /* .event_sync = */ cuda_event_sync,
    /* .copy_async = */ ops_copy_async,
    /* .host_alloc = */ cuda_host_alloc,
    /* .host_free = */ cuda_host_free,
    /* .matmul_forward = */ matmul_forward_cuda,
    /* .matmul_backward = */ matmul_backward_cuda,
    /* .gemm = */ gemm_cuda,
    /* .rmsnorm_forward = */ rmsnorm_forward_cuda,
    /* .rmsnorm_backward = */ rmsnorm_backward_cuda,
    /* .rope_forward = */ rope_forward_cuda,
    /* .rope_backward = */ rope_backward_cuda,
    /* .swiglu_forward = */ swiglu_forward_cuda,
    /* .swiglu_backward = */ swiglu_backward_cuda,
    /* .gelu_forward = */ gelu_forward_cuda,
    /* .gelu_backward = */ gelu_backward_cuda,
    /* .residual_add = */ residual_add_cuda,
    /* .sigmoid_gate_forward = */ sigmoid_gate_forward_cuda,
    /* .sigmoid_gate_backward = */ sigmoid_gate_backward_cuda,
    /* .attention_forward = */ attention_forward_cuda,
    /* .attention_backward = */ attention_backward_cuda,
    /* .attention_block_forward = */ attention_block_forward_cuda,
    /* .attention_block_backward = */ attention_block_backward_cuda,
    /* .attention_prefix_forward = */ attention_prefix_forward_cuda,
    /* .attention_prefix_backward = */ attention_prefix_backward_cuda,
    /* .attention_decode = */ attention_decode_cuda,
    /* .attention_decode_steer = */ attention_decode_steer_cuda,
    /* .moh_router_forward = */ moh_router_forward_cuda,
    /* .moh_router_backward = */ moh_router_backward_cuda,
    /* .moh_balance_sums = */ moh_balance_sums_cuda,
    /* .moh_gate_forward = */ moh_gate_forward_cuda,
    /* .moh_gate_backward = */ moh_gate_backward_cuda,
    /* .moh_qnorm_forward = */ moh_qnorm_forward_cuda,
    /* .moh_qnorm_backward = */ moh_qnorm_backward_cuda,
    /* .moh_select_rows = */ moh_select_rows_cuda,
    /* .xent_forward_backward = */ xent_forward_backward_cuda,
    /* .embed_forward = */ embed_forward_cuda,
    /* .embed_backward = */ embed_backward_cuda,
    /* .rows_scatter_add_f64 = */ rows_scatter_add_f64_cuda,
    /* .adamw_update = */ adamw_update_cuda,
    /* .sumsq = */ sumsq_cuda,
    /* .set_precision = */ cuda_set_precision,
    /* .precision = */ cuda_precision,
    /* .select_device = */ cuda_select_device,
    /* .mem_stats = */ cuda_mem_stats,
    /* .gemm_peak = */ matmul_cuda_peak,
    /* .titans = */ &titans_ops_cuda,
    /* .rec = */ &rec_ops_cuda,
};

extern "C" const struct ops *ops_cuda_table(const char **why) {
    static char msg[256];
    if (cuda_device_count() == 0) {
        snprintf(msg, sizeof(msg),
                 "no CUDA device found (the driver reports none); run on a GPU node or use the "
                 "cpu backend");
        *why = msg;
        return NULL;
    }
    *why = NULL;
    return &ops_cuda;
}

/* The table without the device check: what the CUDA backend can run (capability checks on a
 * machine without a GPU, tests). */
extern "C" const struct ops *ops_cuda_table_nodevice(void) {
    return &ops_cuda;
}
