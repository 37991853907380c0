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
            hw_die_at(__FILE__, __LINE__, "%s failed: %s (%s)", #call, cudaGetErrorString(e_),    \
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

#endif /* HW_CUDA_COMMON_CUH */
