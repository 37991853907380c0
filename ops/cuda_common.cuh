/* ops/cuda_common.cuh -- what every CUDA op family (ops/<family>.cu) shares: error checks that die
 * with the file, line, the failed call and the library's message (the job goes down through
 * hw_die_at, i.e. MPI_Abort under MPI), the per-process CUDA context (device, compute and
 * communication streams, cuBLASLt and cuDNN handles, GEMM workspace) and small launch helpers.
 * C headers of the project are included through here inside extern "C". */
#ifndef HW_CUDA_COMMON_CUH
#define HW_CUDA_COMMON_CUH

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <stddef.h>
#include <stdint.h>

extern "C" {
/* core/check.h uses C11 <stdnoreturn.h>; declare what CUDA code needs by hand */
[[noreturn]] void hw_die_at(const char *file, int line, const char *fmt, ...);
}

#define HW_CHECK_CUDA(call)                                                                        \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess)                                                                     \
            hw_die_at(__FILE__, __LINE__, "%s failed: %s (%s)", #call, cudaGetErrorString(e_),     \
                      cudaGetErrorName(e_));                                                       \
    } while (0)
#define HW_CHECK_CUBLAS(call)                                                                      \
    do {                                                                                           \
        cublasStatus_t s_ = (call);                                                                \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                           \
            hw_die_at(__FILE__, __LINE__, "%s failed: cuBLAS status %d (%s)", #call, (int)s_,      \
                      cublasGetStatusString(s_));                                                  \
    } while (0)
#define HW_CHECK_CUDNN(call)                                                                       \
    do {                                                                                           \
        cudnnStatus_t s_ = (call);                                                                 \
        if (s_ != CUDNN_STATUS_SUCCESS)                                                            \
            hw_die_at(__FILE__, __LINE__, "%s failed: %s", #call, cudnnGetErrorString(s_));        \
    } while (0)
/* after every launch */
#define HW_CHECK_LAUNCH() HW_CHECK_CUDA(cudaGetLastError())
#define HW_CUDA_ASSERT(x)                                                                          \
    do {                                                                                           \
        if (!(x))                                                                                  \
            hw_die_at(__FILE__, __LINE__, "assertion failed: %s", #x);                             \
    } while (0)

/* The process's CUDA state: one device, a compute stream every op launches on, a communication
 * stream (device <-> pinned host staging for MPI), and library handles bound to the compute
 * stream. Created on first use by cuda_ctx(); cuda_ctx_free() releases it at exit. */
struct cuda_ctx {
    int device;
    cudaDeviceProp prop;
    cudaStream_t stream; /* compute */
    cudaStream_t comm;   /* communication staging */
    cublasLtHandle_t lt;
    cublasHandle_t blas; /* fp64 and odd shapes cuBLASLt has no heuristic for */
    cudnnHandle_t dnn;
    void *lt_ws; /* cuBLASLt workspace */
    size_t lt_ws_bytes;
};

extern "C" {
/* The context (created on the first call, on device cuda_set_device() chose or device 0). */
struct cuda_ctx *cuda_ctx(void);
}

static inline unsigned cdiv(size_t a, size_t b) {
    return (unsigned)((a + b - 1) / b);
}

/* Grow-only device scratch shared by the ops (cuda_ctx.cu): at least `bytes`, valid until the next
 * cuda_scratch call. Safe to reuse from op to op because every op runs on the compute stream;
 * growing waits for that stream first. One call per op: carve the one buffer. */
void *cuda_scratch(size_t bytes);

/* Blocks for a grid-stride loop over n items (capped: the loops cover the rest). */
static inline unsigned hw_grid1d(size_t n, unsigned block) {
    size_t g = (n + block - 1) / block;
    return g == 0 ? 1u : g > (1u << 20) ? (1u << 20) : (unsigned)g;
}

/* Deterministic warp reductions (a fixed butterfly: every lane ends with the same value). */
template <typename T> __device__ __forceinline__ T hw_warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
/* The sum of v over the block, returned to every thread; safe to call repeatedly (each call
 * starts with a barrier). blockDim.x a multiple of 32, at most 1024; every thread calls it. */
template <typename T> __device__ T hw_block_sum(T v) {
    __shared__ T part[32];
    __shared__ T total;
    v = hw_warp_sum(v);
    __syncthreads(); /* the previous call's readers are done with part and total */
    if (threadIdx.x % 32 == 0)
        part[threadIdx.x / 32] = v;
    __syncthreads();
    if (threadIdx.x < 32) {
        T s = threadIdx.x < (blockDim.x + 31) / 32 ? part[threadIdx.x] : (T)0;
        s = hw_warp_sum(s);
        if (threadIdx.x == 0)
            total = s;
    }
    __syncthreads();
    return total;
}
__device__ __forceinline__ float hw_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

#endif /* HW_CUDA_COMMON_CUH */
