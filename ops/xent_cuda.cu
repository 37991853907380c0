/* ops/xent_cuda.cu -- softmax cross-entropy fused with its backward on the GPU (xent.h), after
 * llm.c's fused classifier: one block per row reads the logits once for the running max and sum
 * of exponentials, then once more to overwrite them with (softmax - onehot) * dscale; the
 * probabilities are never stored. The loss sum is reduced on the device in double in a fixed
 * order and is the only value copied back to the host. */
#include "cuda_common.cuh"
#include "xent.h"

#include <math.h>

enum { XENT_THREADS = 512, SUM_THREADS = 1024 };

// ----------------------------------------------------------------------------------------------
// CUDA kernels

/* (m, s) <- the pair for the union of two sets of exponentials (s relative to max m). Commutative
 * bit for bit, so the butterfly leaves every lane with the same pair. */
__device__ __forceinline__ void ms_combine(float &m, float &s, float m2, float s2) {
    float M = fmaxf(m, m2);
    if (M == -INFINITY)
        return;
    s = (m == -INFINITY ? 0.0f : s * expf(m - M)) + (m2 == -INFINITY ? 0.0f : s2 * expf(m2 - M));
    m = M;
}

/* row max and sum of exp(x - max) over the block; every thread gets the result */
__device__ void block_max_sum(float &m, float &s) {
    __shared__ float sm[32], ss[32];
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        ms_combine(m, s, m2, s2);
    }
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nw = blockDim.x / 32;
    if (lane == 0) {
        sm[warp] = m;
        ss[warp] = s;
    }
    __syncthreads();
    m = lane < nw ? sm[lane] : -INFINITY;
    s = lane < nw ? ss[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        ms_combine(m, s, m2, s2);
    }
}

/* logits (N, V): row n's loss into losses[n]; with WRITE the row becomes its gradient */
template <bool WRITE>
__global__ void __launch_bounds__(XENT_THREADS)
    xent_kernel(float *logits, float *losses, const int32_t *targets, int V, float dscale,
                int ignore_index) {
    size_t n = blockIdx.x;
    float *row = logits + n * (size_t)V;
    int tgt = targets[n];
    if (tgt == ignore_index) {
        if (WRITE)
            for (int v = threadIdx.x; v < V; v += blockDim.x)
                row[v] = 0.0f;
        if (threadIdx.x == 0)
            losses[n] = 0.0f;
        return;
    }
    int bad = tgt < 0 || tgt >= V;
    /* read before the reduction's barrier: other threads overwrite the row afterwards */
    float xt = bad ? 0.0f : row[tgt];
    float m = -INFINITY, s = 0.0f;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        float x = row[v];
        if (x > m) {
            s *= expf(m - x);
            m = x;
        }
        s += expf(x - m);
    }
    block_max_sum(m, s);
    if (threadIdx.x == 0)
        losses[n] = bad ? NAN : (float)((double)m + log((double)s) - (double)xt);
    if (!WRITE)
        return;
    const float scale = (float)((double)dscale / (double)s);
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        float p = expf(row[v] - m) * scale;
        row[v] = v == tgt ? p - dscale : p;
    }
}

/* *out = sum of x[0..n) in double: fixed per-thread strides, then a fixed tree (one block) */
__global__ void __launch_bounds__(SUM_THREADS)
    sum_f32_to_f64_kernel(double *out, const float *x, int n) {
    __shared__ double part[SUM_THREADS / 32];
    double s = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        s += (double)x[i];
    s = hw_warp_sum(s);
    if (threadIdx.x % 32 == 0)
        part[threadIdx.x / 32] = s;
    __syncthreads();
    if (threadIdx.x < 32) {
        s = threadIdx.x < blockDim.x / 32 ? part[threadIdx.x] : 0.0;
        s = hw_warp_sum(s);
        if (threadIdx.x == 0)
            *out = s;
    }
}

// ----------------------------------------------------------------------------------------------
// kernel launchers

/* sum losses (N) on the device, copy the double back (waits for the stream) */
static double sum_losses(const float *losses, int N, double *dsum) {
    struct cuda_ctx *c = cuda_ctx();
    sum_f32_to_f64_kernel<<<1, SUM_THREADS, 0, c->stream>>>(dsum, losses, N);
    HW_CHECK_LAUNCH();
    double h = 0.0;
    HW_CHECK_CUDA(cudaMemcpyAsync(&h, dsum, sizeof(h), cudaMemcpyDeviceToHost, c->stream));
    HW_CHECK_CUDA(cudaStreamSynchronize(c->stream));
    return h;
}

extern "C" double xent_forward_backward_cuda(float *logits, float *losses, const int32_t *targets,
                                             int N, int V, float dscale, int ignore_index) {
    HW_CUDA_ASSERT(N >= 0 && V > 0 && losses);
    if (N == 0)
        return 0.0;
    struct cuda_ctx *c = cuda_ctx();
    double *dsum = (double *)cuda_scratch(sizeof(double));
    xent_kernel<true>
        <<<N, XENT_THREADS, 0, c->stream>>>(logits, losses, targets, V, dscale, ignore_index);
    HW_CHECK_LAUNCH();
    return sum_losses(losses, N, dsum);
}

extern "C" double xent_forward_cuda(float *losses, const float *logits, const int32_t *targets,
                                    int N, int V, int ignore_index) {
    HW_CUDA_ASSERT(N >= 0 && V > 0);
    if (N == 0)
        return 0.0;
    struct cuda_ctx *c = cuda_ctx();
    /* one scratch buffer: the double sum, then per-row losses when the caller has none */
    char *scr = (char *)cuda_scratch(256 + (losses ? 0 : (size_t)N * sizeof(float)));
    double *dsum = (double *)scr;
    float *rows = losses ? losses : (float *)(scr + 256);
    xent_kernel<false>
        <<<N, XENT_THREADS, 0, c->stream>>>((float *)logits, rows, targets, V, 0.0f, ignore_index);
    HW_CHECK_LAUNCH();
    return sum_losses(rows, N, dsum);
}
