/* ops/embed_cuda.cu -- embedding lookup, its scatter-add backward and the residual add on the GPU
 * (embed.h). The scatters are deterministic without atomics: a stable radix sort (CUB) groups the
 * source rows by destination row, keeping their order, and the first entry of each group adds
 * the whole group into its destination row in that order -- the CPU's summation order exactly. */
#include "cuda_common.cuh"
#include "embed.h"

#include <cub/device/device_radix_sort.cuh>

#include <climits>
#include <cstdio>

enum { SCATTER_COLS = 128, ROW_THREADS = 128 };

// ----------------------------------------------------------------------------------------------
// CUDA kernels

/* out (N, C) row n = wte (V, C) row tok[n]; VEC: rows copied as float4 */
template <bool VEC>
__global__ void embed_forward_kernel(float *out, const int32_t *tok, const float *wte, int C,
                                     int V) {
    size_t n = blockIdx.x;
    if (tok[n] < 0 || tok[n] >= V) { /* never read outside the table: stop the kernel */
        if (threadIdx.x == 0)
            printf("embedding: token id %d at position %d is outside the vocabulary (%d)\n", tok[n],
                   (int)n, V);
        __trap();
    }
    const float *src = wte + (size_t)tok[n] * C;
    float *dst = out + n * (size_t)C;
    if (VEC) {
        for (int c = threadIdx.x; c < C / 4; c += blockDim.x)
            ((float4 *)dst)[c] = ((const float4 *)src)[c];
    } else {
        for (int c = threadIdx.x; c < C; c += blockDim.x)
            dst[c] = src[c];
    }
}

__global__ void iota_kernel(int32_t *x, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        x[i] = i;
}

/* keys (n): destination rows sorted ascending (stable), from (n): the source row of each.
 * Block x = sorted position i; only the first position of each run of equal keys works: it adds
 * the run's source rows, in order, into its destination row, for columns of its y block. */
template <typename S>
__global__ void rows_scatter_kernel(float *dst, const int32_t *keys, const int32_t *from,
                                    const S *src, int n, int dim, int rows) {
    int i = blockIdx.x, c = blockIdx.y * SCATTER_COLS + threadIdx.x;
    int32_t k = keys[i];
    if (k < 0 || k >= rows) { /* never write outside the table */
        if (threadIdx.x == 0 && blockIdx.y == 0)
            printf("row scatter: id %d is outside the table (%d rows)\n", k, rows);
        __trap();
    }
    if (c >= dim || (i > 0 && keys[i - 1] == k))
        return;
    float *d = dst + (size_t)k * dim + c;
    float acc = *d;
    for (int j = i; j < n && keys[j] == k; j++)
        acc += (float)src[(size_t)from[j] * dim + c];
    *d = acc;
}

__global__ void residual_add_kernel(float *out, const float *a, const float *b, int64_t n) {
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += stride)
        out[i] = a[i] + b[i];
}

/* all three pointers 16-byte aligned: float4 body, scalar tail */
__global__ void residual_add_vec_kernel(float *out, const float *a, const float *b, int64_t n) {
    int64_t stride = (int64_t)gridDim.x * blockDim.x, n4 = n / 4;
    int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    for (int64_t i = t; i < n4; i += stride) {
        float4 x = ((const float4 *)a)[i], y = ((const float4 *)b)[i];
        ((float4 *)out)[i] = make_float4(x.x + y.x, x.y + y.y, x.z + y.z, x.w + y.w);
    }
    for (int64_t i = 4 * n4 + t; i < n; i += stride)
        out[i] = a[i] + b[i];
}

// ----------------------------------------------------------------------------------------------
// kernel launchers

static int aligned16(const void *p) {
    return ((uintptr_t)p & 15) == 0;
}

static size_t round256(size_t x) {
    return (x + 255) & ~(size_t)255;
}

/* dst rows ids[i] += src row i (converted to float), i in order, n rows of dim */
template <typename S>
static void rows_scatter_add(float *dst, const int32_t *ids, int n, int dim, const S *src,
                             int rows) {
    HW_CUDA_ASSERT(n >= 0 && dim >= 0);
    if (n == 0 || dim == 0)
        return;
    HW_CUDA_ASSERT(cdiv(dim, SCATTER_COLS) <= 65535);
    struct cuda_ctx *c = cuda_ctx();
    size_t ints = round256((size_t)n * sizeof(int32_t)), tmp = 0;
    HW_CHECK_CUDA(cub::DeviceRadixSort::SortPairs(NULL, tmp, (const int32_t *)NULL, (int32_t *)NULL,
                                                  (const int32_t *)NULL, (int32_t *)NULL, n, 0, 32,
                                                  c->stream));
    char *scr = (char *)cuda_scratch(3 * ints + tmp);
    int32_t *keys = (int32_t *)scr, *from0 = (int32_t *)(scr + ints),
            *from = (int32_t *)(scr + 2 * ints);
    iota_kernel<<<hw_grid1d((size_t)n, 256), 256, 0, c->stream>>>(from0, n);
    HW_CHECK_LAUNCH();
    HW_CHECK_CUDA(cub::DeviceRadixSort::SortPairs(
        scr + 3 * ints, tmp, ids, keys, (const int32_t *)from0, from, n, 0, 32, c->stream));
    rows_scatter_kernel<S><<<dim3(n, cdiv(dim, SCATTER_COLS)), SCATTER_COLS, 0, c->stream>>>(
        dst, keys, from, src, n, dim, rows);
    HW_CHECK_LAUNCH();
}

extern "C" void embed_forward_cuda(float *out, const int32_t *tok, const float *wte, int N, int C,
                                   int V) {
    HW_CUDA_ASSERT(N >= 0 && C >= 0);
    if (N == 0 || C == 0)
        return;
    cudaStream_t s = cuda_ctx()->stream;
    if (C % 4 == 0 && aligned16(out) && aligned16(wte))
        embed_forward_kernel<true><<<N, ROW_THREADS, 0, s>>>(out, tok, wte, C, V);
    else
        embed_forward_kernel<false><<<N, ROW_THREADS, 0, s>>>(out, tok, wte, C, V);
    HW_CHECK_LAUNCH();
}

extern "C" void embed_backward_cuda(float *dwte, const float *dout, const int32_t *tok, int N,
                                    int C, int V) {
    rows_scatter_add<float>(dwte, tok, N, C, dout, V);
}

extern "C" void rows_scatter_add_f64_cuda(float *dst, const int32_t *ids, int n, int dim,
                                          const double *src) {
    rows_scatter_add<double>(dst, ids, n, dim, src, INT_MAX);
}

extern "C" void residual_add_cuda(float *out, const float *a, const float *b, int64_t n) {
    HW_CUDA_ASSERT(n >= 0);
    if (n == 0)
        return;
    cudaStream_t s = cuda_ctx()->stream;
    if (aligned16(out) && aligned16(a) && aligned16(b))
        residual_add_vec_kernel<<<hw_grid1d((size_t)n / 4 + 1, 256), 256, 0, s>>>(out, a, b, n);
    else
        residual_add_kernel<<<hw_grid1d((size_t)n, 256), 256, 0, s>>>(out, a, b, n);
    HW_CHECK_LAUNCH();
}
