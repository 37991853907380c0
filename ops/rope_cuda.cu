/* ops/rope_cuda.cu -- rotary position embedding on the GPU (rope.h): one thread per rotated pair
 * (row, head, i), in place; the backward is the same rotation with the angle negated. The tables
 * (rope_tables, computed on the host) and pos live on the device. */
#include "cuda_common.cuh"
#include "rope.h"

// ----------------------------------------------------------------------------------------------
// CUDA kernels

/* x: rows of B*T with stride ld; pairs (i, i + hd/2) of each of n_heads heads rotate by pos[t] */
__global__ void rope_kernel(float *x, const float *cos_t, const float *sin_t, int T, int n_heads,
                            int hd, int ld, const int32_t *pos, size_t pairs, float sign) {
    int h2 = hd / 2;
    size_t per_row = (size_t)n_heads * h2, stride = (size_t)gridDim.x * blockDim.x;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < pairs; idx += stride) {
        size_t row = idx / per_row;
        int rem = (int)(idx % per_row), h = rem / h2, i = rem % h2;
        int t = (int)(row % (size_t)T);
        size_t tab = (size_t)pos[t] * h2 + i;
        float c = cos_t[tab], si = sign * sin_t[tab];
        float *v = x + row * (size_t)ld + (size_t)h * hd;
        float x0 = v[i], x1 = v[i + h2];
        v[i] = x0 * c - x1 * si;
        v[i + h2] = x1 * c + x0 * si;
    }
}

// ----------------------------------------------------------------------------------------------
// kernel launchers

static void rope_launch(float *x, const float *cos_t, const float *sin_t, int B, int T, int n_heads,
                        int hd, int ld, const int32_t *pos, float sign) {
    HW_CUDA_ASSERT(B >= 0 && T >= 0 && n_heads >= 0 && hd % 2 == 0);
    HW_CUDA_ASSERT(ld >= n_heads * hd);
    size_t pairs = (size_t)B * T * n_heads * (hd / 2);
    if (pairs == 0)
        return;
    rope_kernel<<<hw_grid1d(pairs, 256), 256, 0, cuda_ctx()->stream>>>(x, cos_t, sin_t, T, n_heads,
                                                                       hd, ld, pos, pairs, sign);
    HW_CHECK_LAUNCH();
}

extern "C" void rope_forward_cuda(float *x, const float *cos_t, const float *sin_t, int B, int T,
                                  int n_heads, int hd, int ld, const int32_t *pos) {
    rope_launch(x, cos_t, sin_t, B, T, n_heads, hd, ld, pos, 1.0f);
}

extern "C" void rope_backward_cuda(float *dx, const float *cos_t, const float *sin_t, int B, int T,
                                   int n_heads, int hd, int ld, const int32_t *pos) {
    rope_launch(dx, cos_t, sin_t, B, T, n_heads, hd, ld, pos, -1.0f);
}
