/* dist/nccl.c -- dist.transport: nccl (see nccl.h). */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include "nccl.h"

#include "../core/check.h"
#include "dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef HW_NCCL

struct dist_nccl {
    int unused;
};

struct dist_nccl *nccl_open(const MPI_Comm *groups, int n_groups, char *err, size_t errn) {
    (void)groups, (void)n_groups;
    snprintf(err, errn,
             "this build has no NCCL (nccl.h and libnccl were not found beside the CUDA toolkit "
             "at build time); use dist.transport: mpi");
    return NULL;
}
void nccl_close(struct dist_nccl *x) {
    (void)x;
}
const char *nccl_describe(const struct dist_nccl *x) {
    (void)x;
    return "no NCCL";
}
#define UNAVAILABLE HW_DIE("dist.transport nccl: not in this build")
void nccl_allreduce(struct dist_nccl *x, int g, float *buf, size_t n, int async) {
    (void)x, (void)g, (void)buf, (void)n, (void)async;
    UNAVAILABLE;
}
void nccl_reduce_chunks(struct dist_nccl *x, int g, float *buf, size_t n, int p, int async) {
    (void)x, (void)g, (void)buf, (void)n, (void)p, (void)async;
    UNAVAILABLE;
}
void nccl_bcast_chunks(struct dist_nccl *x, int g, float *buf, size_t n, int p) {
    (void)x, (void)g, (void)buf, (void)n, (void)p;
    UNAVAILABLE;
}
void nccl_join(struct dist_nccl *x) {
    (void)x;
}
void nccl_sendrecv(struct dist_nccl *x, int g, const float *send, int to, float *recv, int from,
                   size_t n) {
    (void)x, (void)g, (void)send, (void)to, (void)recv, (void)from, (void)n;
    UNAVAILABLE;
}
void nccl_exchange(struct dist_nccl *x, int g, const float *const *send, float *const *recv,
                   size_t n, int me, int p) {
    (void)x, (void)g, (void)send, (void)recv, (void)n, (void)me, (void)p;
    UNAVAILABLE;
}
void nccl_alltoall(struct dist_nccl *x, int g, const float *send, float *recv, size_t n, int me,
                   int p) {
    (void)x, (void)g, (void)send, (void)recv, (void)n, (void)me, (void)p;
    UNAVAILABLE;
}

#else /* HW_NCCL */

#include "../ops/cuda_ctx.h"

#include <cuda_runtime.h>
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes" /* nccl.h declares f() for f(void) */
#include <nccl.h>
#pragma GCC diagnostic pop

#define MAX_GROUPS 8

struct dist_nccl {
    ncclComm_t comm[MAX_GROUPS];
    int size[MAX_GROUPS];
    int n;
    cudaEvent_t compute_done, comm_done;
    char desc[64];
};

#define CHECK_NCCL(call)                                                                           \
    do {                                                                                           \
        ncclResult_t r_ = (call);                                                                  \
        if (r_ != ncclSuccess)                                                                     \
            HW_DIE("%s failed: %s (%s)", #call, ncclGetErrorString(r_), ncclGetLastError(NULL));   \
    } while (0)
#define CHECK_RT(call)                                                                             \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess)                                                                     \
            HW_DIE("%s failed: %s", #call, cudaGetErrorString(e_));                                \
    } while (0)

static cudaStream_t compute(void) {
    return (cudaStream_t)cuda_compute_stream();
}
static cudaStream_t comm(void) {
    return (cudaStream_t)cuda_comm_stream();
}
static size_t chunk_lo(size_t n, int p, int i) {
    return n * (size_t)i / (size_t)p;
}

struct dist_nccl *nccl_open(const MPI_Comm *groups, int n_groups, char *err, size_t errn) {
    (void)err, (void)errn;
    HW_ASSERT(n_groups <= MAX_GROUPS);
    (void)cuda_compute_stream(); /* the context, on the device select_device chose */
    struct dist_nccl *x = HW_CALLOC(1, sizeof(*x));
    int v = 0;
    CHECK_NCCL(ncclGetVersion(&v));
    snprintf(x->desc, sizeof(x->desc), "NCCL %d.%d.%d", v / 10000, v / 100 % 100, v % 100);
    /* rings in a fixed order: the sums do not change from run to run (NCCL's tree algorithm
     * does not promise that) */
    setenv("NCCL_ALGO", "Ring", 0);
    /* kernels of different communicators (the buckets' and the head group's) in one order on
     * every rank (NCCL >= 2.26; older versions ignore it; dist.c also keeps them on one stream
     * when several communicators are in use) */
    setenv("NCCL_LAUNCH_ORDER_IMPLICIT", "1", 0);
    for (int g = 0; g < n_groups; g++) {
        int r = 0;
        MPI_Comm_rank(groups[g], &r);
        MPI_Comm_size(groups[g], &x->size[g]);
        ncclUniqueId id;
        if (r == 0)
            CHECK_NCCL(ncclGetUniqueId(&id));
        dist_watch_begin("NCCL communicator set-up");
        if (MPI_Bcast(&id, (int)sizeof(id), MPI_BYTE, 0, groups[g]) != MPI_SUCCESS)
            HW_DIE("MPI_Bcast of the NCCL unique id failed");
        CHECK_NCCL(ncclCommInitRank(&x->comm[g], x->size[g], id, r));
        dist_watch_end();
    }
    x->n = n_groups;
    CHECK_RT(cudaEventCreateWithFlags(&x->compute_done, cudaEventDisableTiming));
    CHECK_RT(cudaEventCreateWithFlags(&x->comm_done, cudaEventDisableTiming));
    return x;
}

void nccl_close(struct dist_nccl *x) {
    if (!x)
        return;
    cudaStreamSynchronize(comm());
    cudaStreamSynchronize(compute());
    for (int g = 0; g < x->n; g++)
        ncclCommDestroy(x->comm[g]);
    cudaEventDestroy(x->compute_done);
    cudaEventDestroy(x->comm_done);
    free(x);
}

const char *nccl_describe(const struct dist_nccl *x) {
    return x->desc;
}

/* the stream of an operation: async ones wait for the compute stream's work so far */
static cudaStream_t stream_for(struct dist_nccl *x, int async) {
    if (!async)
        return compute();
    CHECK_RT(cudaEventRecord(x->compute_done, compute()));
    CHECK_RT(cudaStreamWaitEvent(comm(), x->compute_done, 0));
    return comm();
}

void nccl_allreduce(struct dist_nccl *x, int g, float *buf, size_t n, int async) {
    CHECK_NCCL(ncclAllReduce(buf, buf, n, ncclFloat, ncclSum, x->comm[g], stream_for(x, async)));
}

void nccl_reduce_chunks(struct dist_nccl *x, int g, float *buf, size_t n, int p, int async) {
    cudaStream_t s = stream_for(x, async);
    CHECK_NCCL(ncclGroupStart());
    for (int c = 0; c < p; c++) {
        const size_t lo = chunk_lo(n, p, c), hi = chunk_lo(n, p, c + 1);
        CHECK_NCCL(ncclReduce(buf + lo, buf + lo, hi - lo, ncclFloat, ncclSum, (c - 1 + p) % p,
                              x->comm[g], s));
    }
    CHECK_NCCL(ncclGroupEnd());
}

void nccl_bcast_chunks(struct dist_nccl *x, int g, float *buf, size_t n, int p) {
    CHECK_NCCL(ncclGroupStart());
    for (int c = 0; c < p; c++) {
        const size_t lo = chunk_lo(n, p, c), hi = chunk_lo(n, p, c + 1);
        CHECK_NCCL(ncclBroadcast(buf + lo, buf + lo, hi - lo, ncclFloat, (c - 1 + p) % p,
                                 x->comm[g], compute()));
    }
    CHECK_NCCL(ncclGroupEnd());
}

void nccl_join(struct dist_nccl *x) {
    CHECK_RT(cudaEventRecord(x->comm_done, comm()));
    CHECK_RT(cudaStreamWaitEvent(compute(), x->comm_done, 0));
}

void nccl_sendrecv(struct dist_nccl *x, int g, const float *send, int to, float *recv, int from,
                   size_t n) {
    CHECK_NCCL(ncclGroupStart());
    CHECK_NCCL(ncclSend(send, n, ncclFloat, to, x->comm[g], compute()));
    CHECK_NCCL(ncclRecv(recv, n, ncclFloat, from, x->comm[g], compute()));
    CHECK_NCCL(ncclGroupEnd());
}

void nccl_exchange(struct dist_nccl *x, int g, const float *const *send, float *const *recv,
                   size_t n, int me, int p) {
    CHECK_NCCL(ncclGroupStart());
    for (int o = 0; o < p; o++) {
        if (o == me)
            continue;
        if (send[o])
            CHECK_NCCL(ncclSend(send[o], n, ncclFloat, o, x->comm[g], compute()));
        if (recv[o])
            CHECK_NCCL(ncclRecv(recv[o], n, ncclFloat, o, x->comm[g], compute()));
    }
    CHECK_NCCL(ncclGroupEnd());
}

void nccl_alltoall(struct dist_nccl *x, int g, const float *send, float *recv, size_t n, int me,
                   int p) {
    /* our own block stays: a device copy on the same stream */
    CHECK_RT(cudaMemcpyAsync(recv + (size_t)me * n, send + (size_t)me * n, sizeof(float) * n,
                             cudaMemcpyDeviceToDevice, compute()));
    CHECK_NCCL(ncclGroupStart());
    for (int o = 0; o < p; o++) {
        if (o == me)
            continue;
        CHECK_NCCL(ncclSend(send + (size_t)o * n, n, ncclFloat, o, x->comm[g], compute()));
        CHECK_NCCL(ncclRecv(recv + (size_t)o * n, n, ncclFloat, o, x->comm[g], compute()));
    }
    CHECK_NCCL(ncclGroupEnd());
}

#endif /* HW_NCCL */
