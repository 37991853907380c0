/* ops/ops_cpu.c -- the CPU backend: host memory (calloc, memcpy, memset), the table of CPU
 * kernels, backend lookup by name, the capability check, typed buffers, and thread control
 * (see ops.h). */
#define _GNU_SOURCE /* malloc_usable_size: the bytes an allocation holds, for mem_stats */
#include "ops.h"

#include "../core/check.h"
#include "../core/log.h"
#include "act.h"
#include "adamw.h"
#include "attention.h"
#include "embed.h"
#include "gemm.h"
#include "matmul.h"
#include "moh.h"
#include "norm.h"
#include "precision_cpu.h"
#include "rec_ops.h"
#include "rope.h"
#include "titans_ops.h"
#include "xent.h"

#include <cblas.h>
#include <malloc.h>
#include <omp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const ops_cap_names[OPS_CAPS] = {
    "core ops",
    "S2 block-sparse attention",
    "Mixture-of-Head routing",
    "segment masks",
    "ring attention blocks",
    "persistent attention prefix",
    "KV-cache decoding",
    "Titans memory ops",
    "rec model ops",
    "fp64 GEMM",
    "bf16 GEMM",
    "bf16 training (train.precision: bf16)",
};

/* ---- memory ---------------------------------------------------------------------------------- */

/* what the backend's allocations hold, for mem_stats (counted by malloc_usable_size) */
static _Atomic size_t cpu_in_use, cpu_peak;

static void cpu_mem_stats(size_t *in_use, size_t *peak, int reset) {
    const size_t now = atomic_load(&cpu_in_use);
    if (reset)
        atomic_store(&cpu_peak, now);
    if (in_use)
        *in_use = now;
    if (peak)
        *peak = atomic_load(&cpu_peak);
}

static void *cpu_alloc(size_t bytes) {
    /* 64-byte aligned like the other backends' allocations, zeroed */
    size_t n = (bytes + 63) / 64 * 64;
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? n : 64))
        HW_DIE("out of memory allocating %.1f MiB", (double)bytes / 1048576.0);
    memset(p, 0, n ? n : 64);
    const size_t held = malloc_usable_size(p);
    const size_t now = atomic_fetch_add(&cpu_in_use, held) + held;
    size_t pk = atomic_load(&cpu_peak);
    while (now > pk && !atomic_compare_exchange_weak(&cpu_peak, &pk, now))
        ;
    return p;
}

static void cpu_free(void *p) {
    if (p)
        atomic_fetch_sub(&cpu_in_use, malloc_usable_size(p));
    free(p);
}

static void cpu_memset(void *dst, int value, size_t bytes) {
    if (bytes)
        memset(dst, value, bytes);
}

/* Large disjoint copies (checkpoint snapshots, uploads of whole models) are split over the
 * OpenMP threads: one core's memcpy leaves most of the memory bandwidth unused. */
static void cpu_copy(void *dst, const void *src, size_t bytes) {
    char *d = dst;
    const char *s = src;
    if (!bytes || d == s)
        return;
    const size_t chunk = (size_t)1 << 20;
    if (bytes < 8 * chunk || (d < s + bytes && s < d + bytes)) {
        memmove(d, s, bytes);
        return;
    }
    const long n = (long)((bytes + chunk - 1) / chunk);
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        const size_t o = (size_t)i * chunk;
        memcpy(d + o, s + o, bytes - o < chunk ? bytes - o : chunk);
    }
}

static void cpu_copy2d(void *dst, size_t ldd, const void *src, size_t lds, size_t rows,
                       size_t row_bytes) {
    for (size_t i = 0; i < rows; i++)
        memmove((char *)dst + i * ldd, (const char *)src + i * lds, row_bytes);
}

static void cpu_memset2d(void *dst, size_t ldd, int value, size_t rows, size_t row_bytes) {
    for (size_t i = 0; i < rows; i++)
        memset((char *)dst + i * ldd, value, row_bytes);
}

static void cpu_synchronize(void) {}

/* streams and events: the CPU runs every op to completion before returning */
static char cpu_event_token;
static void *cpu_event_new(void) {
    return &cpu_event_token;
}
static void cpu_event_free(void *ev) {
    (void)ev;
}
static void cpu_event_record(void *ev, enum ops_stream s) {
    (void)ev, (void)s;
}
static void cpu_event_wait(enum ops_stream s, void *ev) {
    (void)s, (void)ev;
}
static void cpu_event_sync(void *ev) {
    (void)ev;
}
static void cpu_copy_async(void *dst, const void *src, size_t bytes, enum ops_stream s) {
    (void)s;
    if (bytes && dst != src)
        memcpy(dst, src, bytes);
}
static void *cpu_host_alloc(size_t bytes) {
    return HW_CALLOC(bytes ? bytes : 1, 1);
}

static void cpu_select_device(int local_rank, int local_size, char *desc, size_t n) {
    (void)local_rank, (void)local_size;
    snprintf(desc, n, "cpu");
}

static double cpu_gemm_peak(double seconds, const char **what) {
    *what = "sgemm"; /* bf16 mode multiplies rounded operands with sgemm too */
    return ops_sgemm_peak(seconds);
}

static int cpu_supports(enum ops_cap cap) {
    return cap != OPS_CAP_BF16;
}

static const struct ops ops_cpu = {
    .name = "cpu",
    .kind = BACKEND_CPU,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .memset = cpu_memset,
    .copy = cpu_copy,
    .copy2d = cpu_copy2d,
    .memset2d = cpu_memset2d,
    .upload = cpu_copy,
    .download = cpu_copy,
    .synchronize = cpu_synchronize,
    .supports = cpu_supports,
    .event_new = cpu_event_new,
    .event_free = cpu_event_free,
    .event_record = cpu_event_record,
    .event_wait = cpu_event_wait,
    .event_sync = cpu_event_sync,
    .copy_async = cpu_copy_async,
    .host_alloc = cpu_host_alloc,
    .host_free = free,
    .matmul_forward = matmul_forward_cpu,
    .matmul_backward = matmul_backward_cpu,
    .gemm = gemm_cpu,
    .rmsnorm_forward = rmsnorm_forward_cpu,
    .rmsnorm_backward = rmsnorm_backward_cpu,
    .rope_forward = rope_forward_cpu,
    .rope_backward = rope_backward_cpu,
    .swiglu_forward = swiglu_forward_cpu,
    .swiglu_backward = swiglu_backward_cpu,
    .gelu_forward = gelu_forward_cpu,
    .gelu_backward = gelu_backward_cpu,
    .residual_add = residual_add_cpu,
    .sigmoid_gate_forward = sigmoid_gate_forward_cpu,
    .sigmoid_gate_backward = sigmoid_gate_backward_cpu,
    .attention_forward = attention_forward_cpu,
    .attention_backward = attention_backward_cpu,
    .attention_block_forward = attention_block_forward_cpu,
    .attention_block_backward = attention_block_backward_cpu,
    .attention_prefix_forward = attention_prefix_forward_cpu,
    .attention_prefix_backward = attention_prefix_backward_cpu,
    .attention_decode = attention_decode_cpu,
    .attention_decode_steer = attention_decode_steer_cpu,
    .moh_router_forward = moh_router_forward_cpu,
    .moh_router_backward = moh_router_backward_cpu,
    .moh_balance_sums = moh_balance_sums_cpu,
    .moh_gate_forward = moh_gate_forward_cpu,
    .moh_gate_backward = moh_gate_backward_cpu,
    .moh_qnorm_forward = moh_qnorm_forward_cpu,
    .moh_qnorm_backward = moh_qnorm_backward_cpu,
    .moh_select_rows = moh_select_rows_cpu,
    .xent_forward_backward = xent_forward_backward_cpu,
    .embed_forward = embed_forward_cpu,
    .embed_backward = embed_backward_cpu,
    .rows_scatter_add_f64 = rows_scatter_add_f64_cpu,
    .adamw_update = adamw_update_cpu,
    .sumsq = sumsq_cpu,
    .set_precision = cpu_set_precision,
    .precision = cpu_precision,
    .select_device = cpu_select_device,
    .mem_stats = cpu_mem_stats,
    .gemm_peak = cpu_gemm_peak,
    .titans = &titans_ops_cpu,
    .rec = &rec_ops_cpu,
};

#ifdef HW_CUDA
const struct ops *ops_cuda_table(const char **why); /* ops_cuda.cu */
#endif

const struct ops *ops_for(enum backend b) {
    switch (b) {
    case BACKEND_CPU:
        return &ops_cpu;
    case BACKEND_CUDA: {
#ifdef HW_CUDA
        const char *why = NULL;
        const struct ops *o = ops_cuda_table(&why);
        if (o)
            return o;
        HW_DIE("%s", why);
#else
        HW_DIE("built without CUDA (nvcc not found or CUDA=0): the cuda backend is not in this "
               "build; rebuild on a node with the CUDA toolkit");
#endif
    }
    }
    HW_DIE("unknown backend %d", (int)b);
}

const struct ops *ops_by_name(const char *name, const char **why) {
    *why = NULL;
    if (!strcmp(name, "cpu"))
        return &ops_cpu;
    if (!strcmp(name, "cuda")) {
#ifdef HW_CUDA
        return ops_cuda_table(why);
#else
        *why = "this build has no CUDA backend (nvcc not found or CUDA=0); rebuild with the CUDA "
               "toolkit on PATH";
        return NULL;
#endif
    }
    return NULL;
}

int ops_require(const struct ops *o, const enum ops_cap *caps, int n, const char *who, char *err) {
    for (int i = 0; i < n; i++)
        if (!o->supports(caps[i]))
            return hw_errf(err, HW_ECONFIG,
                           "%s needs %s, which the %s backend does not have; use run.backend: cpu "
                           "or another layer kind",
                           who, ops_cap_names[caps[i]], o->name);
    return 0;
}

/* ---- typed buffers -----------------------------------------------------------------------------
 */

void *hw_buf_alloc(struct hw_buf *b, const struct ops *o, enum hw_dtype t, size_t n) {
    HW_ASSERT(n <= SIZE_MAX / 8);
    b->be = o;
    b->type = t;
    b->n = n;
    b->data = o->alloc(n * hw_dtype_size(t));
    return b->data;
}

void hw_buf_free(struct hw_buf *b) {
    if (b->be && b->data)
        b->be->free(b->data);
    memset(b, 0, sizeof(*b));
}

void hw_buf_zero(struct hw_buf *b) {
    if (b->data)
        b->be->memset(b->data, 0, hw_buf_bytes(b));
}

/* ---- threads and the sgemm peak
 * ------------------------------------------------------------------ */

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
