/* ops/adamw_cuda.cu -- the AdamW step and the gradient sum of squares on the GPU (adamw.h). The
 * step is elementwise with the CPU's formula; its scalars (bias corrections, decay factor) are
 * computed on the host exactly as adamw_cpu.c does. The sum of squares accumulates in double:
 * per-block partials over a grid that depends only on n, then one block sums them in order. */
#include "adamw.h"
#include "cuda_common.cuh"

#include <math.h>

enum { SQ_THREADS = 256, SQ_MAX_BLOCKS = 1024, SQ_PER_THREAD = 8 };

// ----------------------------------------------------------------------------------------------
// CUDA kernels

__global__ void adamw_kernel(float *p, float *m, float *v, const float *g, size_t n, float lr,
                             float b1, float b2, float eps, float c1, float c2, float decay,
                             float grad_scale) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += stride) {
        float gi = g[i] * grad_scale;
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * decay - lr * (mi * c1) / (sqrtf(vi * c2) + eps);
    }
}

/* block sum of one double per thread (fixed tree); valid in thread 0 */
__device__ double block_sum_f64(double s) {
    __shared__ double part[32];
    s = hw_warp_sum(s);
    if (threadIdx.x % 32 == 0)
        part[threadIdx.x / 32] = s;
    __syncthreads();
    s = threadIdx.x < blockDim.x / 32 ? part[threadIdx.x] : 0.0;
    if (threadIdx.x < 32)
        s = hw_warp_sum(s);
    return s;
}

/* part[block] = sum of x[i]^2 over the block's grid-stride share */
__global__ void __launch_bounds__(SQ_THREADS)
    sumsq_partial_kernel(double *part, const float *x, size_t n) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    double s = 0.0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += stride)
        s += (double)x[i] * (double)x[i];
    s = block_sum_f64(s);
    if (threadIdx.x == 0)
        part[blockIdx.x] = s;
}

__global__ void __launch_bounds__(SQ_THREADS)
    sum_f64_kernel(double *out, const double *part, int n) {
    double s = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        s += part[i];
    s = block_sum_f64(s);
    if (threadIdx.x == 0)
        *out = s;
}

// ----------------------------------------------------------------------------------------------
// kernel launchers

extern "C" void adamw_update_cuda(float *p, float *m, float *v, const float *g, size_t n, float lr,
                                  float b1, float b2, float eps, float wd, int t,
                                  float grad_scale) {
    HW_CUDA_ASSERT(t >= 1);
    if (n == 0)
        return;
    const float c1 = 1.0f / (1.0f - powf(b1, (float)t));
    const float c2 = 1.0f / (1.0f - powf(b2, (float)t));
    const float decay = 1.0f - lr * wd;
    adamw_kernel<<<hw_grid1d(n, 256), 256, 0, cuda_ctx()->stream>>>(p, m, v, g, n, lr, b1, b2, eps,
                                                                    c1, c2, decay, grad_scale);
    HW_CHECK_LAUNCH();
}

extern "C" double sumsq_cuda(const float *x, size_t n) {
    if (n == 0)
        return 0.0;
    struct cuda_ctx *c = cuda_ctx();
    /* the grid depends only on n: the same partials on every run and every GPU */
    size_t nb = (n + (size_t)SQ_THREADS * SQ_PER_THREAD - 1) / ((size_t)SQ_THREADS * SQ_PER_THREAD);
    int blocks = nb > SQ_MAX_BLOCKS ? SQ_MAX_BLOCKS : (int)nb;
    double *part = (double *)cuda_scratch((size_t)(blocks + 1) * sizeof(double));
    sumsq_partial_kernel<<<blocks, SQ_THREADS, 0, c->stream>>>(part + 1, x, n);
    HW_CHECK_LAUNCH();
    sum_f64_kernel<<<1, SQ_THREADS, 0, c->stream>>>(part, part + 1, blocks);
    HW_CHECK_LAUNCH();
    double h = 0.0;
    HW_CHECK_CUDA(cudaMemcpyAsync(&h, part, sizeof(h), cudaMemcpyDeviceToHost, c->stream));
    HW_CHECK_CUDA(cudaStreamSynchronize(c->stream));
    return h;
}
