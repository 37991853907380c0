/* bench/gpu_bench.c -- bf16 GEMM throughput through headwise's cuBLASLt path (gemm_cuda: bf16
 * inputs, fp32 accumulation, bf16 output) at the dense-layer shapes of the bench model
 * (configs/bench-gpt.yaml) and of GPT-2 124M, forward and both backward products, plus 8192^3.
 * Prints a table and writes every figure as JSON; bench/gpu_bench.py times torch.matmul on the
 * same cases and compares. Timing: CUDA events on the compute stream around a batch of calls
 * sized to about 5 ms, after warm-ups; the figure is the median of the repeats.
 *
 *   gpu_bench [--json PATH] [--quick] [--repeats N]
 */
#include "../ops/cuda_ctx.h"
#include "../ops/dtype.h"
#include "../ops/gemm.h"

#include <cuda_runtime_api.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One product in gemm.h's row-major terms: C (m x n) = op(A) op(B), op(A) (m x k), op(B) (k x n) */
struct bench_case {
    const char *model, *layer, *pass;
    int m, n, k, ta, tb;
    double ms, tflops; /* filled in */
};

/* a dense layer y = x W^T with x (N, K), W (M, K): the three products of its step */
static int add_layer(struct bench_case *c, int nc, const char *model, const char *layer, int N,
                     int K, int M) {
    struct bench_case fwd = {model, layer, "fwd", N, M, K, 0, 1, 0, 0};
    struct bench_case bwd_in = {model, layer, "bwd_in", N, K, M, 0, 0, 0, 0};
    struct bench_case bwd_w = {model, layer, "bwd_w", M, K, N, 1, 0, 0, 0};
    c[nc++] = fwd;
    c[nc++] = bwd_in;
    c[nc++] = bwd_w;
    return nc;
}

static int make_cases(struct bench_case *c, int quick) {
    int n = 0;
    /* configs/bench-gpt.yaml: d 384, 6 heads of 64 (no GQA), SwiGLU d_ff 1024, vocab 8192, B 8 x
     * T 256 tokens */
    const int bn = 8 * 256, bd = 384;
    n = add_layer(c, n, "bench-gpt", "qkv", bn, bd, 3 * bd);
    n = add_layer(c, n, "bench-gpt", "attn_out", bn, bd, bd);
    n = add_layer(c, n, "bench-gpt", "mlp_gate_up", bn, bd, 2 * 1024);
    n = add_layer(c, n, "bench-gpt", "mlp_down", bn, 1024, bd);
    n = add_layer(c, n, "bench-gpt", "lm_head", bn, bd, 8192);
    if (!quick) {
        /* GPT-2 124M: B*T = 8192 tokens, C 768, GELU MLP 4C, vocab 50257 */
        const int gn = 8192, gd = 768;
        n = add_layer(c, n, "gpt2-124m", "qkv", gn, gd, 3 * gd);
        n = add_layer(c, n, "gpt2-124m", "attn_proj", gn, gd, gd);
        n = add_layer(c, n, "gpt2-124m", "fc", gn, gd, 4 * gd);
        n = add_layer(c, n, "gpt2-124m", "fc_proj", gn, 4 * gd, gd);
        n = add_layer(c, n, "gpt2-124m", "lm_head", gn, gd, 50257);
    }
    struct bench_case sq = {"square", "8192^3", "nn", 8192, 8192, 8192, 0, 0, 0, 0};
    c[n++] = sq;
    return n;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void check_cuda(cudaError_t e, const char *what) {
    if (e != cudaSuccess) {
        fprintf(stderr, "gpu_bench: %s failed: %s\n", what, cudaGetErrorString(e));
        exit(1);
    }
}

/* ms per call of `iters` calls, CUDA events on the compute stream */
static double time_calls(const struct bench_case *c, const void *A, const void *B, void *C,
                         int iters, cudaEvent_t e0, cudaEvent_t e1) {
    cudaStream_t s = (cudaStream_t)cuda_compute_stream();
    size_t lda = c->ta ? c->m : c->k, ldb = c->tb ? c->k : c->n;
    check_cuda(cudaEventRecord(e0, s), "cudaEventRecord");
    for (int i = 0; i < iters; i++)
        gemm_cuda(HW_BF16, HW_BF16, c->ta, c->tb, c->m, c->n, c->k, 1.0, A, lda, B, ldb, 0.0, C,
                  c->n);
    check_cuda(cudaEventRecord(e1, s), "cudaEventRecord");
    check_cuda(cudaEventSynchronize(e1), "cudaEventSynchronize");
    float ms = 0.0f;
    check_cuda(cudaEventElapsedTime(&ms, e0, e1), "cudaEventElapsedTime");
    return ms / iters;
}

/* fill dst (n bf16) by tiling the random pool (pool_n values) */
static void fill(void *dst, size_t n, const void *pool, size_t pool_n) {
    for (size_t off = 0; off < n; off += pool_n) {
        size_t len = n - off < pool_n ? n - off : pool_n;
        cuda_copy((uint16_t *)dst + off, pool, len * 2);
    }
}

static void run_case(struct bench_case *c, int repeats, const void *pool, size_t pool_n) {
    size_t na = (size_t)c->m * c->k, nb = (size_t)c->k * c->n, nc = (size_t)c->m * c->n;
    void *A = cuda_alloc(na * 2), *B = cuda_alloc(nb * 2), *C = cuda_alloc(nc * 2);
    fill(A, na, pool, pool_n);
    fill(B, nb, pool, pool_n);
    cudaEvent_t e0, e1;
    check_cuda(cudaEventCreate(&e0), "cudaEventCreate");
    check_cuda(cudaEventCreate(&e1), "cudaEventCreate");
    time_calls(c, A, B, C, 3, e0, e1); /* plan, heuristic, clocks up */
    double t1 = time_calls(c, A, B, C, 3, e0, e1);
    int iters = t1 > 0.0 ? (int)(5.0 / t1) + 1 : 1000;
    if (iters > 2000)
        iters = 2000;
    double t[64];
    if (repeats > 64)
        repeats = 64;
    for (int r = 0; r < repeats; r++)
        t[r] = time_calls(c, A, B, C, iters, e0, e1);
    qsort(t, repeats, sizeof(double), cmp_double);
    c->ms = t[repeats / 2];
    c->tflops = 2.0 * c->m * (double)c->n * c->k / (c->ms * 1e-3) / 1e12;
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cuda_free(A);
    cuda_free(B);
    cuda_free(C);
}

int main(int argc, char **argv) {
    const char *json = NULL;
    int quick = 0, repeats = 7;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json") && i + 1 < argc)
            json = argv[++i];
        else if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else if (!strcmp(argv[i], "--repeats") && i + 1 < argc)
            repeats = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--json PATH] [--quick] [--repeats N]\n", argv[0]);
            return 2;
        }
    }
    if (repeats < 1)
        repeats = 1;
    if (cuda_device_count() == 0) {
        printf("SKIP gpu_bench: no CUDA device found\n");
        return 77;
    }
    struct cudaDeviceProp prop;
    int dev = 0;
    cuda_synchronize(); /* creates the context on its device */
    check_cuda(cudaGetDevice(&dev), "cudaGetDevice");
    check_cuda(cudaGetDeviceProperties(&prop, dev), "cudaGetDeviceProperties");

    /* uniform [-1, 1) bf16 values (torch's side uses the same distribution) */
    const size_t pool_n = (size_t)1 << 24;
    uint16_t *h = malloc(pool_n * 2);
    uint64_t x = 0x2545f4914f6cdd1dull;
    for (size_t i = 0; i < pool_n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        float f = (float)((double)(x >> 11) * (2.0 / 9007199254740992.0) - 1.0);
        uint32_t u;
        memcpy(&u, &f, 4);
        u += 0x7fffu + ((u >> 16) & 1u);
        h[i] = (uint16_t)(u >> 16);
    }
    void *pool = cuda_alloc(pool_n * 2);
    cuda_upload(pool, h, pool_n * 2);
    free(h);

    struct bench_case cases[64];
    int n = make_cases(cases, quick);
    printf("gpu_bench: %s, %d SMs; bf16 in, fp32 accumulate, bf16 out; median of %d\n", prop.name,
           prop.multiProcessorCount, repeats);
    printf("%-10s %-12s %-7s %6s %6s %6s %2s %2s %10s %9s\n", "model", "layer", "pass", "m", "n",
           "k", "ta", "tb", "ms", "TFLOP/s");
    for (int i = 0; i < n; i++) {
        struct bench_case *c = &cases[i];
        run_case(c, repeats, pool, pool_n);
        printf("%-10s %-12s %-7s %6d %6d %6d %2d %2d %10.4f %9.1f\n", c->model, c->layer, c->pass,
               c->m, c->n, c->k, c->ta, c->tb, c->ms, c->tflops);
        fflush(stdout);
    }
    cuda_free(pool);

    if (json) {
        FILE *f = strcmp(json, "-") ? fopen(json, "w") : stdout;
        if (!f) {
            perror(json);
            return 1;
        }
        fprintf(f, "{\n  \"bench\": \"gpu_bench\",\n  \"device\": \"%s\",\n  \"sms\": %d,\n",
                prop.name, prop.multiProcessorCount);
        fprintf(f, "  \"dtype\": \"bf16 in, fp32 accumulate, bf16 out\",\n  \"repeats\": %d,\n",
                repeats);
        fprintf(f, "  \"cases\": [\n");
        for (int i = 0; i < n; i++) {
            const struct bench_case *c = &cases[i];
            fprintf(f,
                    "    {\"model\": \"%s\", \"layer\": \"%s\", \"pass\": \"%s\", \"m\": %d, "
                    "\"n\": %d, \"k\": %d, \"ta\": %d, \"tb\": %d, \"ms\": %.6f, \"tflops\": "
                    "%.3f}%s\n",
                    c->model, c->layer, c->pass, c->m, c->n, c->k, c->ta, c->tb, c->ms, c->tflops,
                    i + 1 < n ? "," : "");
        }
        fprintf(f, "  ]\n}\n");
        if (f != stdout)
            fclose(f);
    }
    cuda_ctx_free();
    return 0;
}
