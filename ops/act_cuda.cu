/* ops/act_cuda.cu -- SwiGLU, GELU (tanh approximation) and the Titans sigmoid gate on the GPU
 * (act.h): elementwise, one thread per output element in grid-stride loops, with the CPU's
 * formulas term for term. Each thread reads its inputs before writing, so in-place use is safe. */
#include "act.h"
#include "cuda_common.cuh"

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */

// ----------------------------------------------------------------------------------------------
// CUDA kernels

/* h (N, 2F) = [gate | up] -> out (N, F) = silu(gate) * up */
__global__ void swiglu_forward_kernel(float *out, const float *h, int F, size_t total) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total; idx += stride) {
        size_t n = idx / F, i = idx % F;
        float g = h[n * 2 * F + i], u = h[n * 2 * F + F + i];
        out[idx] = g / (1.0f + expf(-g)) * u;
    }
}

/* dh (N, 2F) = [dgate | dup], overwritten */
__global__ void swiglu_backward_kernel(float *dh, const float *dout, const float *h, int F,
                                       size_t total) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total; idx += stride) {
        size_t n = idx / F, i = idx % F;
        float g = h[n * 2 * F + i], u = h[n * 2 * F + F + i], dy = dout[idx];
        float sg = 1.0f / (1.0f + expf(-g));
        float silu = g * sg;
        dh[n * 2 * F + F + i] = dy * silu;
        dh[n * 2 * F + i] = dy * u * sg * (1.0f + g * (1.0f - sg));
    }
}

__global__ void gelu_forward_kernel(float *out, const float *h, size_t total) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += stride) {
        float x = h[i];
        out[i] = 0.5f * x * (1.0f + tanhf(GELU_K * (x + 0.044715f * x * x * x)));
    }
}

__global__ void gelu_backward_kernel(float *dh, const float *dout, const float *h, size_t total) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += stride) {
        float x = h[i];
        float u = GELU_K * (x + 0.044715f * x * x * x);
        float t = tanhf(u);
        float du = GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
        dh[i] = dout[i] * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du);
    }
}

/* out = y * sigmoid(u) */
__global__ void sigmoid_gate_forward_kernel(float *out, const float *y, const float *u, int64_t n) {
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += stride)
        out[i] = y[i] * (1.0f / (1.0f + expf(-u[i])));
}

__global__ void sigmoid_gate_backward_kernel(float *dy, float *du, const float *dout,
                                             const float *y, const float *u, int64_t n) {
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += stride) {
        const float g = 1.0f / (1.0f + expf(-u[i])), d = dout[i], yi = y[i];
        dy[i] = d * g;
        du[i] = d * yi * g * (1.0f - g);
    }
}

// ----------------------------------------------------------------------------------------------
// kernel launchers

extern "C" void swiglu_forward_cuda(float *out, const float *h, int N, int F) {
    HW_CUDA_ASSERT(N >= 0 && F >= 0);
    size_t total = (size_t)N * F;
    if (total == 0)
        return;
    swiglu_forward_kernel<<<hw_grid1d(total, 256), 256, 0, cuda_ctx()->stream>>>(out, h, F, total);
    HW_CHECK_LAUNCH();
}

extern "C" void swiglu_backward_cuda(float *dh, const float *dout, const float *h, int N, int F) {
    HW_CUDA_ASSERT(N >= 0 && F >= 0);
    size_t total = (size_t)N * F;
    if (total == 0)
        return;
    swiglu_backward_kernel<<<hw_grid1d(total, 256), 256, 0, cuda_ctx()->stream>>>(dh, dout, h, F,
                                                                                  total);
    HW_CHECK_LAUNCH();
}

extern "C" void gelu_forward_cuda(float *out, const float *h, int N, int F) {
    HW_CUDA_ASSERT(N >= 0 && F >= 0);
    size_t total = (size_t)N * F;
    if (total == 0)
        return;
    gelu_forward_kernel<<<hw_grid1d(total, 256), 256, 0, cuda_ctx()->stream>>>(out, h, total);
    HW_CHECK_LAUNCH();
}

extern "C" void gelu_backward_cuda(float *dh, const float *dout, const float *h, int N, int F) {
    HW_CUDA_ASSERT(N >= 0 && F >= 0);
    size_t total = (size_t)N * F;
    if (total == 0)
        return;
    gelu_backward_kernel<<<hw_grid1d(total, 256), 256, 0, cuda_ctx()->stream>>>(dh, dout, h, total);
    HW_CHECK_LAUNCH();
}

extern "C" void sigmoid_gate_forward_cuda(float *out, const float *y, const float *u, int64_t n) {
    HW_CUDA_ASSERT(n >= 0);
    if (n == 0)
        return;
    sigmoid_gate_forward_kernel<<<hw_grid1d((size_t)n, 256), 256, 0, cuda_ctx()->stream>>>(out, y,
                                                                                           u, n);
    HW_CHECK_LAUNCH();
}

extern "C" void sigmoid_gate_backward_cuda(float *dy, float *du, const float *dout, const float *y,
                                           const float *u, int64_t n) {
    HW_CUDA_ASSERT(n >= 0);
    if (n == 0)
        return;
    sigmoid_gate_backward_kernel<<<hw_grid1d((size_t)n, 256), 256, 0, cuda_ctx()->stream>>>(
        dy, du, dout, y, u, n);
    HW_CHECK_LAUNCH();
}
