/* ops/cuda_ctx.h -- the C view of the CUDA backend's context and memory slots (ops/cuda_ctx.cu).
 * Only compiled in with HW_CUDA. Every pointer these functions take or return is a device
 * pointer unless named *_host. All work is ordered on the context's compute stream. */
#ifndef HW_CUDA_CTX_H
#define HW_CUDA_CTX_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifdef HW_CUDA
/* Devices the driver sees (0 when there is no driver or no GPU; never dies). */
int cuda_device_count(void);
/* Pick the device before the first use of the context (each rank: its local rank's GPU). */
void cuda_set_device(int device);
/* The ops slot: device local_rank mod the visible devices (made current now), described as
 * "cuda:N NAME (PCI bus id)". */
void cuda_select_device(int local_rank, int local_size, char *desc, size_t n);
/* The ops slot: bytes cudaMalloc'd through cuda_alloc now and at most since the last reset. */
void cuda_mem_stats(size_t *in_use, size_t *peak, int reset);
/* For the kernel files' own cudaMalloc'd scratch: count p's bytes (0: p was freed). */
void cuda_mem_note(void *p, size_t bytes);
void cuda_ctx_free(void);
/* Zeroed device memory; dies with the sizes on failure. */
void *cuda_alloc(size_t bytes);
void cuda_free(void *p);
void cuda_memset(void *dst, int value, size_t bytes);
void cuda_copy(void *dst, const void *src, size_t bytes);
void cuda_upload(void *dst, const void *src_host, size_t bytes);
void cuda_download(void *dst_host, const void *src, size_t bytes);
void cuda_synchronize(void);
/* The compute stream every op runs on, as a cudaStream_t (CUDA events in benchmarks and tests). */
void *cuda_compute_stream(void);
/* The communication stream (dist.transport nccl queues gradient buckets on it). */
void *cuda_comm_stream(void);
/* Events and the communication stream (ops.h event_*, copy_async, host_alloc): stream 0 is the
 * compute stream, 1 the communication stream. */
void *cuda_event_new(void);
void cuda_event_free(void *ev);
void cuda_event_record(void *ev, int stream);
void cuda_event_wait(int stream, void *ev);
void cuda_event_sync(void *ev);
void cuda_copy_async(void *dst, const void *src, size_t bytes, int stream);
void *cuda_host_alloc(size_t bytes);
void cuda_host_free(void *p);
#endif /* HW_CUDA */

#ifdef __cplusplus
}
#endif

#endif /* HW_CUDA_CTX_H */
