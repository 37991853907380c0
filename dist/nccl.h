/* dist/nccl.h -- dist.transport: nccl, private to dist/ (dist.c calls it): the float collectives
 * on NCCL communicators built from the MPI grid's groups, on device buffers, ordered on the CUDA
 * backend's streams. Compiled in with HW_NCCL (the Makefile finds nccl.h and libnccl beside the
 * CUDA toolkit); without it nccl_open says so. Group sizes of 1 are legal (and make no calls).
 * Chunks follow dist.c's ring layout: chunk i of n floats over p ranks is [n i / p, n (i+1) / p)
 * and rank r owns chunk (r + 1) mod p after a reduce-scatter (dist_owned_chunk). */
#ifndef HW_DIST_NCCL_H
#define HW_DIST_NCCL_H

#include <mpi.h>
#include <stddef.h>

struct dist_nccl;

/* One communicator per MPI group (COLLECTIVE over each: the group's rank 0 makes the unique id
 * and broadcasts it). NULL with one line in err when this build or machine has no NCCL. */
struct dist_nccl *nccl_open(const MPI_Comm *groups, int n_groups, char *err, size_t errn);
void nccl_close(struct dist_nccl *x);
/* "NCCL 2.28.3" */
const char *nccl_describe(const struct dist_nccl *x);
/* In-place sum over group g. async: on the communication stream after the compute stream's work
 * so far (gradient buckets; nccl_join orders the compute stream after it); else on the compute
 * stream. */
void nccl_allreduce(struct dist_nccl *x, int g, float *buf, size_t n, int async);
/* ZeRO-1: chunk i summed into its owner (rank (i - 1) mod p), in place; same stream rule. */
void nccl_reduce_chunks(struct dist_nccl *x, int g, float *buf, size_t n, int p, int async);
/* ZeRO-1: every owner's chunk broadcast to the group (compute stream). */
void nccl_bcast_chunks(struct dist_nccl *x, int g, float *buf, size_t n, int p);
/* the compute stream waits for everything queued on the communication stream */
void nccl_join(struct dist_nccl *x);
/* send n floats to group rank `to` and receive n from `from` (compute stream) */
void nccl_sendrecv(struct dist_nccl *x, int g, const float *send, int to, float *recv, int from,
                   size_t n);
/* send[o] to rank o, recv[o] from rank o (NULL entries and rank me skipped) */
void nccl_exchange(struct dist_nccl *x, int g, const float *const *send, float *const *recv,
                   size_t n, int me, int p);
/* block i of send (n floats) to rank i, block i of recv from rank i */
void nccl_alltoall(struct dist_nccl *x, int g, const float *send, float *recv, size_t n, int me,
                   int p);

#endif /* HW_DIST_NCCL_H */
