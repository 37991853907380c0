/* ops/norm_cuda.cu -- RMSNorm forward/backward on the GPU (norm.h). One warp per row; the weight
 * gradient is reduced without atomics: per-chunk partial sums over fixed blocks of rows, then a
 * sum of the chunks in chunk order, so dw is bit-identical run after run. */
#include "cuda_common.cuh"
#include "norm.h"

enum { NORM_WARPS = 8, DW_COLS = 128, DW_ROWS = 64, DW_MAX_CHUNKS = 4096 };

// ----------------------------------------------------------------------------------------------
// CUDA kernels

/* out (N, C) = inp * rstd * w; rstd (N) */
__global__ void rmsnorm_forward_kernel(float *out, float *rstd, const float *inp, const float *w,
                                       int N, int C, float eps) {
    int row = blockIdx.x * NORM_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N)
        return;
    const float *x = inp + (size_t)row * C;
    float *y = out + (size_t)row * C;
    float ss = 0.0f;
    for (int c = lane; c < C; c += 32)
        ss += x[c] * x[c];
    ss = hw_warp_sum(ss);
    float r = 1.0f / sqrtf(ss / (float)C + eps);
    if (lane == 0)
        rstd[row] = r;
    for (int c = lane; c < C; c += 32)
        y[c] = x[c] * r * w[c];
}

/* dinp (N, C) += dy w r - x k, k = sum(dy w x) r^3 / C */
__global__ void rmsnorm_backward_dinp_kernel(float *dinp, const float *dout, const float *inp,
                                             const float *w, const float *rstd, int N, int C) {
    int row = blockIdx.x * NORM_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N)
        return;
    const float *x = inp + (size_t)row * C, *dy = dout + (size_t)row * C;
    float *dx = dinp + (size_t)row * C;
    float r = rstd[row], dot = 0.0f;
    for (int c = lane; c < C; c += 32)
        dot += dy[c] * w[c] * x[c];
    dot = hw_warp_sum(dot);
    float k = dot * r * r * r / (float)C;
    for (int c = lane; c < C; c += 32)
        dx[c] += dy[c] * w[c] * r - x[c] * k;
}

/* part (chunks, C): chunk j's sum over rows [j*rows, (j+1)*rows) of dy x r, in row order */
__global__ void rmsnorm_dw_partial_kernel(float *part, const float *dout, const float *inp,
                                          const float *rstd, int N, int C, int rows) {
    int c = blockIdx.x * DW_COLS + threadIdx.x, chunk = blockIdx.y;
    if (c >= C)
        return;
    int lo = chunk * rows, hi = min(N, lo + rows);
    float s = 0.0f;
    for (int n = lo; n < hi; n++)
        s += dout[(size_t)n * C + c] * inp[(size_t)n * C + c] * rstd[n];
    part[(size_t)chunk * C + c] = s;
}

/* dw (C) += the chunks' partials, summed in chunk order */
__global__ void rmsnorm_dw_reduce_kernel(float *dw, const float *part, int chunks, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C)
        return;
    float s = 0.0f;
    for (int j = 0; j < chunks; j++)
        s += part[(size_t)j * C + c];
    dw[c] += s;
}

// ----------------------------------------------------------------------------------------------
// kernel launchers

extern "C" void rmsnorm_forward_cuda(float *out, float *rstd, const float *inp, const float *w,
                                     int N, int C, float eps) {
    HW_CUDA_ASSERT(N >= 0 && C > 0);
    if (N == 0)
        return;
    rmsnorm_forward_kernel<<<cdiv(N, NORM_WARPS), NORM_WARPS * 32, 0, cuda_ctx()->stream>>>(
        out, rstd, inp, w, N, C, eps);
    HW_CHECK_LAUNCH();
}

extern "C" void rmsnorm_backward_cuda(float *dinp, float *dw, const float *dout, const float *inp,
                                      const float *w, const float *rstd, int N, int C) {
    HW_CUDA_ASSERT(N >= 0 && C > 0);
    if (N == 0)
        return;
    cudaStream_t s = cuda_ctx()->stream;
    rmsnorm_backward_dinp_kernel<<<cdiv(N, NORM_WARPS), NORM_WARPS * 32, 0, s>>>(dinp, dout, inp, w,
                                                                                 rstd, N, C);
    HW_CHECK_LAUNCH();
    /* the chunking depends only on N, never on the device: same sums on every GPU */
    int rows = DW_ROWS, chunks = (int)cdiv(N, rows);
    if (chunks > DW_MAX_CHUNKS) {
        rows = (int)cdiv(N, DW_MAX_CHUNKS);
        chunks = (int)cdiv(N, rows);
    }
    float *part = (float *)cuda_scratch((size_t)chunks * C * sizeof(float));
    rmsnorm_dw_partial_kernel<<<dim3(cdiv(C, DW_COLS), chunks), DW_COLS, 0, s>>>(part, dout, inp,
                                                                                 rstd, N, C, rows);
    HW_CHECK_LAUNCH();
    rmsnorm_dw_reduce_kernel<<<cdiv(C, 256), 256, 0, s>>>(dw, part, chunks, C);
    HW_CHECK_LAUNCH();
}
