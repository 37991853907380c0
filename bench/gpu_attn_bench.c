/* bench/gpu_attn_bench.c -- attention throughput on the GPU, printed as one JSON object on stdout:
 *  - "cudnn_bf16": the cuDNN fused flash attention path (attention_*_cudnn), bf16, causal MHA;
 *  - "own_fp32":   the own FlashAttention-2 style kernels (attention_*_cuda), fp32, same shapes;
 *  - "s2":         the own kernels at T = 4096 with S2 block sparsity against dense: the time
 *                  ratio next to the fraction of causal (query block, key block) pairs kept.
 * Shapes: T = 1024, 4096, 16384 with B*T = 16384 tokens and H*hd = 2048, hd = 64 and 128.
 * FLOPs (FlashAttention-2's benchmark convention): a causal forward counts
 * f = 4*B*H*T*T*hd / 2 (two T x T x hd GEMMs, half of them masked), the backward 2.5 f, and
 * forward + backward 3.5 f; TFLOP/s = FLOPs / median time. Times are CUDA events on the compute
 * stream around one call, after warm-ups, median over the repetitions.
 * bench/gpu_attn_bench.py runs this binary next to torch.nn.functional.scaled_dot_product_attention
 * on the same machine. Usage: gpu_attn_bench [--quick] (T <= 4096, fewer repetitions). */
#include "../ops/attention.h"
#include "../ops/cuda_ctx.h"
#include "../ops/s2.h"

#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CK(call)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call,                   \
                    cudaGetErrorString(e_));                                                       \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One operation to time; which: 0 forward, 1 backward. */
struct job {
    int cudnn;
    int which;
    struct attn_shape s;
    void *qkv, *out, *dout, *dqkv;
    float *lse;
};

static void run(const struct job *j) {
    if (j->cudnn) {
        if (j->which == 0)
            attention_forward_cudnn(j->out, j->lse, j->qkv, &j->s);
        else
            attention_backward_cudnn(j->dqkv, j->dout, j->out, j->lse, j->qkv, &j->s);
    } else {
        if (j->which == 0)
            attention_forward_cuda(j->out, j->lse, j->qkv, &j->s);
        else
            attention_backward_cuda(j->dqkv, j->dout, j->out, j->lse, j->qkv, &j->s);
    }
}

/* median milliseconds of `reps` timed calls after `warm` untimed ones */
static double time_ms(const struct job *j, int warm, int reps) {
    cudaStream_t st = (cudaStream_t)cuda_compute_stream();
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    for (int i = 0; i < warm; i++)
        run(j);
    double *t = malloc(sizeof(double) * (size_t)reps);
    for (int i = 0; i < reps; i++) {
        CK(cudaEventRecord(a, st));
        run(j);
        CK(cudaEventRecord(b, st));
        CK(cudaEventSynchronize(b));
        float ms = 0.0f;
        CK(cudaEventElapsedTime(&ms, a, b));
        t[i] = ms;
    }
    qsort(t, (size_t)reps, sizeof(double), cmp_double);
    const double med = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
    free(t);
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
    return med;
}

/* random bf16 (raw bits) or fp32 values in [-1, 1), generated on the host */
static void *random_dev(size_t n, int bf16) {
    const size_t es = bf16 ? 2 : 4;
    unsigned char *h = malloc(n * es);
    uint64_t s = 0x243f6a8885a308d3ull ^ n;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        const float f = (float)((s >> 40) * (2.0 / 16777216.0) - 1.0);
        if (bf16) {
            uint32_t u;
            memcpy(&u, &f, 4);
            const uint16_t b = (uint16_t)(u >> 16);
            memcpy(h + i * 2, &b, 2);
        } else {
            memcpy(h + i * 4, &f, 4);
        }
    }
    void *d = cuda_alloc(n * es);
    cuda_upload(d, h, n * es);
    free(h);
    return d;
}

static double flops_fwd(int B, int H, int T, int hd) {
    return 4.0 * B * H * (double)T * T * hd / 2.0;
}

/* Times forward and backward of one shape on one path; prints a JSON object without its closing
 * brace (the caller may add fields). *fwdbwd_ms: the forward + backward time, -1 if unavailable. */
static void bench_shape(int cudnn, int B, int T, int H, int hd, int warm, int reps,
                        const struct s2_pattern *s2, int first, double *fwdbwd_ms) {
    const int C = H * hd, ld = 3 * C;
    const size_t rows = (size_t)B * T;
    struct job j = {.cudnn = cudnn,
                    .s = {.B = B, .T = T, .H = H, .Hkv = H, .hd = hd, .ld_qkv = ld, .s2 = s2}};
    printf("%s    {\"B\": %d, \"T\": %d, \"H\": %d, \"Hkv\": %d, \"hd\": %d", first ? "" : ",\n", B,
           T, H, H, hd);
    if (cudnn && !attention_cudnn_available(&j.s)) {
        printf(", \"available\": false");
        *fwdbwd_ms = -1.0;
        return;
    }
    j.qkv = random_dev(rows * ld, cudnn);
    j.dout = random_dev(rows * C, cudnn);
    j.out = cuda_alloc(rows * C * (cudnn ? 2 : 4));
    j.dqkv = cuda_alloc(rows * ld * (cudnn ? 2 : 4));
    j.lse = cuda_alloc(sizeof(float) * (size_t)B * H * T);
    j.which = 0;
    const double f_ms = time_ms(&j, warm, reps);
    j.which = 1;
    const double b_ms = time_ms(&j, warm, reps);
    const double f = flops_fwd(B, H, T, hd);
    printf(", \"available\": true, \"fwd_ms\": %.4f, \"bwd_ms\": %.4f, \"fwdbwd_ms\": %.4f, "
           "\"fwd_tflops\": %.2f, \"bwd_tflops\": %.2f, \"fwdbwd_tflops\": %.2f",
           f_ms, b_ms, f_ms + b_ms, f / (f_ms * 1e9), 2.5 * f / (b_ms * 1e9),
           3.5 * f / ((f_ms + b_ms) * 1e9));
    if (cudnn)
        printf(", \"deterministic_bwd\": %s",
               attention_cudnn_deterministic(&j.s) ? "true" : "false");
    fflush(stdout);
    *fwdbwd_ms = f_ms + b_ms;
    cuda_free(j.qkv);
    cuda_free(j.dout);
    cuda_free(j.out);
    cuda_free(j.dqkv);
    cuda_free(j.lse);
}

/* fraction of the causal (query block, key block) pairs an S2 pattern keeps, over kv heads */
static double s2_kept(const struct s2_pattern *p, int T) {
    const int nb = (T + p->block - 1) / p->block;
    double kept = 0.0, all = 0.0;
    for (int g = 0; g < p->n_kv; g++)
        for (int qb = 0; qb < nb; qb++)
            for (int kb = 0; kb <= qb; kb++) {
                all += 1.0;
                kept += s2_active(p, g, qb, kb);
            }
    return kept / all;
}

int main(int argc, char **argv) {
    const int quick = argc > 1 && !strcmp(argv[1], "--quick");
    if (cuda_device_count() == 0) {
        printf("SKIP gpu_attn_bench: no CUDA device found\n");
        return 77;
    }
    struct cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    const int Ts[3] = {1024, 4096, 16384}, hds[2] = {64, 128};
    const int nT = quick ? 2 : 3;
    printf("{\n  \"device\": \"%s\",\n  \"quick\": %s,\n", prop.name, quick ? "true" : "false");
    printf("  \"flops\": \"causal forward f = 4*B*H*T*T*hd/2, backward 2.5 f, forward+backward "
           "3.5 f (FlashAttention-2 convention)\",\n");
    printf("  \"shapes\": \"B*T = 16384 tokens, H*hd = 2048, Hkv = H\",\n");
    for (int path = 0; path < 2; path++) {
        const int cudnn = path == 0;
        printf("  \"%s\": [\n", cudnn ? "cudnn_bf16" : "own_fp32");
        int first = 1;
        for (int hi = 0; hi < 2; hi++)
            for (int ti = 0; ti < nT; ti++) {
                const int T = Ts[ti], hd = hds[hi], H = 2048 / hd, B = 16384 / T;
                /* the fp32 kernels are slow at 16k: fewer repetitions there */
                const int big = !cudnn && T >= 16384;
                double ms;
                bench_shape(cudnn, B, T, H, hd, big ? 1 : 2, big ? 3 : (quick ? 3 : 7), NULL, first,
                            &ms);
                printf("}");
                first = 0;
            }
        printf("\n  ],\n");
    }
    /* S2 against dense, own kernels, T = 4096, hd = 64 */
    printf("  \"s2\": [\n");
    const int T = 4096, hd = 64, H = 32, B = 4;
    const int cfg[2][3] = {{64, 2, 8}, {64, 1, 16}}; /* block, local, vert */
    double dense_ms;
    bench_shape(0, B, T, H, hd, 1, quick ? 3 : 5, NULL, 1, &dense_ms);
    printf(", \"s2\": null, \"kept_fraction\": 1.0, \"time_ratio_vs_dense\": 1.0}");
    for (int c = 0; c < 2; c++) {
        struct s2_pattern p;
        s2_init(&p, cfg[c][0], cfg[c][1], cfg[c][2], 0, 0, H, H);
        double ms;
        bench_shape(0, B, T, H, hd, 1, quick ? 3 : 5, &p, 0, &ms);
        printf(", \"s2\": {\"block\": %d, \"local\": %d, \"vert\": %d}, \"kept_fraction\": %.4f, "
               "\"time_ratio_vs_dense\": %.4f}",
               p.block, p.local, p.vert, s2_kept(&p, T), ms / dense_ms);
    }
    printf("\n  ]\n}\n");
    return 0;
}
