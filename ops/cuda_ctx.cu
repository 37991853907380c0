/* ops/cuda_ctx.cu -- the CUDA context (device, streams, cuBLASLt/cuDNN handles, workspace) and
 * the backend's memory slots: device allocation, memset, copies host <-> device and device <->
 * device, synchronisation. Everything runs on the compute stream, so ops and copies are ordered
 * without extra events.
 *
 * Allocation is stream-ordered (cudaMallocAsync / cudaFreeAsync on the compute stream, from the
 * device's default pool, which keeps what it was given: release threshold unlimited). A free
 * costs no synchronisation and its memory serves the next allocation in stream order, so the
 * layers that take scratch per call (the Titans memory, the rec model) do not stall the GPU.
 * HW_CUDA_ALLOC=sync selects plain cudaMalloc / synchronising cudaFree (a debugging aid). */
#include "cuda_common.cuh"
#include "cuda_ctx.h"

#include <mutex>
#include <stdlib.h>
#include <string.h>
#include <unordered_map>

static struct cuda_ctx g_ctx;
static int g_ready, g_device = -1;
static int g_sync_alloc = -1; /* HW_CUDA_ALLOC=sync: cudaMalloc / cudaFree */

static int sync_alloc(void) {
    if (g_sync_alloc < 0) {
        const char *e = getenv("HW_CUDA_ALLOC");
        g_sync_alloc = e && !strcmp(e, "sync");
    }
    return g_sync_alloc;
}

extern "C" void cuda_set_device(int device) {
    HW_CUDA_ASSERT(!g_ready || device == g_ctx.device);
    g_device = device;
}

extern "C" void cuda_select_device(int local_rank, int local_size, char *desc, size_t n) {
    (void)local_size; /* who shares a GPU is the layout table's to say (it sees every rank) */
    int count = cuda_device_count();
    HW_CUDA_ASSERT(count > 0); /* ops_cuda_table refused a machine without one */
    int dev = local_rank % count;
    cuda_set_device(dev);
    /* current from now on for this thread, before the context exists: NCCL communicators and
     * anything else made before the first op land on it */
    HW_CHECK_CUDA(cudaSetDevice(dev));
    cudaDeviceProp p;
    char bus[32] = "?";
    HW_CHECK_CUDA(cudaGetDeviceProperties(&p, dev));
    if (cudaDeviceGetPCIBusId(bus, (int)sizeof(bus), dev) != cudaSuccess)
        (void)cudaGetLastError();
    snprintf(desc, n, "cuda:%d %s (%s)", dev, p.name, bus);
}

extern "C" int cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError(); /* no driver or no device: not an error here */
        return 0;
    }
    return n;
}

extern "C" struct cuda_ctx *cuda_ctx(void) {
    if (g_ready)
        return &g_ctx;
    struct cuda_ctx *c = &g_ctx;
    c->device = g_device >= 0 ? g_device : 0;
    HW_CHECK_CUDA(cudaSetDevice(c->device));
    HW_CHECK_CUDA(cudaGetDeviceProperties(&c->prop, c->device));
    HW_CHECK_CUDA(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    HW_CHECK_CUDA(cudaStreamCreateWithFlags(&c->comm, cudaStreamNonBlocking));
    HW_CHECK_CUBLAS(cublasLtCreate(&c->lt));
    HW_CHECK_CUBLAS(cublasCreate(&c->blas));
    HW_CHECK_CUBLAS(cublasSetStream(c->blas, c->stream));
    /* fp32 stays fp32: no TF32 unless asked for (results comparable with the CPU backend) */
    HW_CHECK_CUBLAS(cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH));
    HW_CHECK_CUDNN(cudnnCreate(&c->dnn));
    HW_CHECK_CUDNN(cudnnSetStream(c->dnn, c->stream));
    c->lt_ws_bytes = (size_t)32 << 20;
    HW_CHECK_CUDA(cudaMalloc(&c->lt_ws, c->lt_ws_bytes));
    if (!sync_alloc()) { /* the pool keeps freed memory for reuse instead of returning it */
        cudaMemPool_t pool;
        uint64_t keep = UINT64_MAX;
        HW_CHECK_CUDA(cudaDeviceGetDefaultMemPool(&pool, c->device));
        HW_CHECK_CUDA(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
    }
    g_ready = 1;
    return c;
}

/* Device memory held through this file (cuda_alloc's buffers and the kernels' scratch; not
 * the libraries' own workspaces), for the mem_stats slot: the sizes of the live allocations. */
static std::mutex g_mem_lock;
static std::unordered_map<void *, size_t> g_mem_sizes;
static size_t g_mem_in_use, g_mem_peak;

static void mem_held(void *p, size_t bytes) {
    std::lock_guard<std::mutex> lock(g_mem_lock);
    g_mem_sizes[p] = bytes;
    g_mem_in_use += bytes;
    if (g_mem_in_use > g_mem_peak)
        g_mem_peak = g_mem_in_use;
}

static void mem_released(void *p) {
    std::lock_guard<std::mutex> lock(g_mem_lock);
    auto it = g_mem_sizes.find(p);
    if (it != g_mem_sizes.end()) {
        g_mem_in_use -= it->second;
        g_mem_sizes.erase(it);
    }
}

extern "C" void cuda_mem_note(void *p, size_t bytes) {
    if (bytes)
        mem_held(p, bytes);
    else
        mem_released(p);
}

extern "C" void cuda_mem_stats(size_t *in_use, size_t *peak, int reset) {
    std::lock_guard<std::mutex> lock(g_mem_lock);
    if (reset)
        g_mem_peak = g_mem_in_use;
    if (in_use)
        *in_use = g_mem_in_use;
    if (peak)
        *peak = g_mem_peak;
}

static void *g_scratch;
static size_t g_scratch_bytes;

void *cuda_scratch(size_t bytes) {
    struct cuda_ctx *c = cuda_ctx();
    if (bytes <= g_scratch_bytes)
        return g_scratch;
    /* queued kernels may still read the old buffer */
    HW_CHECK_CUDA(cudaStreamSynchronize(c->stream));
    HW_CHECK_CUDA(cudaFree(g_scratch));
    mem_released(g_scratch);
    size_t want = bytes + bytes / 4 + 4096; /* headroom: fewer regrowths for nearby shapes */
    g_scratch = NULL;
    g_scratch_bytes = 0;
    HW_CHECK_CUDA(cudaMalloc(&g_scratch, want));
    mem_held(g_scratch, want);
    g_scratch_bytes = want;
    return g_scratch;
}

extern "C" void cuda_ctx_free(void) {
    if (!g_ready)
        return;
    struct cuda_ctx *c = &g_ctx;
    cudaStreamSynchronize(c->stream);
    cudaFree(g_scratch);
    mem_released(g_scratch);
    g_scratch = NULL;
    g_scratch_bytes = 0;
    cudaFree(c->lt_ws);
    cudnnDestroy(c->dnn);
    cublasDestroy(c->blas);
    cublasLtDestroy(c->lt);
    cudaStreamDestroy(c->comm);
    cudaStreamDestroy(c->stream);
    g_ready = 0;
}

/* ---- memory slots --------------------------------------------------------------------------- */

extern "C" void *cuda_alloc(size_t bytes) {
    struct cuda_ctx *c = cuda_ctx();
    void *p = NULL;
    if (bytes == 0)
        bytes = 256;
    cudaError_t e;
    if (sync_alloc()) {
        e = cudaMalloc(&p, bytes);
    } else {
        e = cudaMallocAsync(&p, bytes, c->stream);
        if (e == cudaErrorMemoryAllocation) { /* the pool's cached blocks back to the device */
            (void)cudaGetLastError();
            cudaMemPool_t pool;
            HW_CHECK_CUDA(cudaStreamSynchronize(c->stream));
            HW_CHECK_CUDA(cudaDeviceGetDefaultMemPool(&pool, c->device));
            HW_CHECK_CUDA(cudaMemPoolTrimTo(pool, 0));
            e = cudaMallocAsync(&p, bytes, c->stream);
        }
    }
    if (e != cudaSuccess) {
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        hw_die_at(__FILE__, __LINE__,
                  "cudaMalloc of %.1f MiB failed: %s (device %d: %.1f of %.1f MiB free)",
                  bytes / 1048576.0, cudaGetErrorString(e), c->device, free_b / 1048576.0,
                  total_b / 1048576.0);
    }
    HW_CHECK_CUDA(cudaMemsetAsync(p, 0, bytes, c->stream)); /* buffers start zeroed */
    mem_held(p, bytes);
    return p;
}

extern "C" void cuda_free(void *p) {
    if (!p)
        return;
    if (sync_alloc()) {
        HW_CHECK_CUDA(cudaStreamSynchronize(cuda_ctx()->stream));
        HW_CHECK_CUDA(cudaFree(p));
    } else { /* after the compute stream's queued work; reused in stream order */
        HW_CHECK_CUDA(cudaFreeAsync(p, cuda_ctx()->stream));
    }
    mem_released(p);
}

extern "C" void cuda_memset(void *dst, int value, size_t bytes) {
    if (bytes)
        HW_CHECK_CUDA(cudaMemsetAsync(dst, value, bytes, cuda_ctx()->stream));
}

extern "C" void cuda_copy(void *dst, const void *src, size_t bytes) {
    if (bytes && dst != src)
        HW_CHECK_CUDA(
            cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cuda_ctx()->stream));
}

/* host -> device: returns when the host buffer may be reused */
extern "C" void cuda_upload(void *dst, const void *src, size_t bytes) {
    if (!bytes)
        return;
    struct cuda_ctx *c = cuda_ctx();
    HW_CHECK_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream));
    HW_CHECK_CUDA(cudaStreamSynchronize(c->stream));
}

/* device -> host: returns when the data is on the host */
extern "C" void cuda_download(void *dst, const void *src, size_t bytes) {
    if (!bytes)
        return;
    struct cuda_ctx *c = cuda_ctx();
    HW_CHECK_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream));
    HW_CHECK_CUDA(cudaStreamSynchronize(c->stream));
}

extern "C" void cuda_synchronize(void) {
    HW_CHECK_CUDA(cudaStreamSynchronize(cuda_ctx()->stream));
}

extern "C" void *cuda_compute_stream(void) {
    return (void *)cuda_ctx()->stream;
}

extern "C" void *cuda_comm_stream(void) {
    return (void *)cuda_ctx()->comm;
}

/* ---- events and the communication stream ---------------------------------------------------- */

static cudaStream_t stream_of(int s) {
    struct cuda_ctx *c = cuda_ctx();
    return s == 1 ? c->comm : c->stream;
}

extern "C" void *cuda_event_new(void) {
    cuda_ctx();
    cudaEvent_t ev;
    HW_CHECK_CUDA(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    return (void *)ev;
}

extern "C" void cuda_event_free(void *ev) {
    if (ev)
        HW_CHECK_CUDA(cudaEventDestroy((cudaEvent_t)ev));
}

extern "C" void cuda_event_record(void *ev, int stream) {
    HW_CHECK_CUDA(cudaEventRecord((cudaEvent_t)ev, stream_of(stream)));
}

extern "C" void cuda_event_wait(int stream, void *ev) {
    HW_CHECK_CUDA(cudaStreamWaitEvent(stream_of(stream), (cudaEvent_t)ev, 0));
}

extern "C" void cuda_event_sync(void *ev) {
    HW_CHECK_CUDA(cudaEventSynchronize((cudaEvent_t)ev));
}

/* host <-> device in either direction (unified addressing tells which) */
extern "C" void cuda_copy_async(void *dst, const void *src, size_t bytes, int stream) {
    if (bytes && dst != src)
        HW_CHECK_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream_of(stream)));
}

extern "C" void *cuda_host_alloc(size_t bytes) {
    cuda_ctx();
    void *p = NULL;
    if (bytes == 0)
        bytes = 256;
    cudaError_t e = cudaMallocHost(&p, bytes);
    if (e != cudaSuccess)
        hw_die_at(__FILE__, __LINE__, "cudaMallocHost of %.1f MiB failed: %s", bytes / 1048576.0,
                  cudaGetErrorString(e));
    memset(p, 0, bytes);
    return p;
}

extern "C" void cuda_host_free(void *p) {
    if (p)
        HW_CHECK_CUDA(cudaFreeHost(p));
}
