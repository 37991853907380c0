/* dist/dist.h -- the process grid and every MPI call. This is the only module that talks to MPI;
 * the others receive a struct dist.
 *
 * Grid: world = data x context x heads, heads innermost (rank = (dp*CP + cp)*HP + hp), so a
 * head group shares a node's fast links. Communicators come from MPI_Comm_split. Collectives on
 * float data are our own ring algorithms over point-to-point messages, so they are
 * deterministic (every rank gets bit-identical sums) and their bytes are counted exactly
 * (struct dist_stats, per collective kind, reset every step).
 * Error policy: MPI_ERRORS_RETURN plus checked calls; any fatal error on any rank calls
 * MPI_Abort so that a job never hangs. */
#ifndef HW_DIST_H
#define HW_DIST_H

#include <stddef.h>
#include <stdint.h>

enum dist_group {
    DIST_WORLD,
    DIST_DP,   /* same (cp, hp): data-parallel replicas */
    DIST_CP,   /* same (dp, hp): the context ring */
    DIST_HP,   /* same (dp, cp): one head group */
    DIST_DPCP, /* same hp: every rank holding the same parameter shard (gradient reduction) */
    DIST_GROUPS
};

enum dist_kind {
    DIST_KIND_DP_GRAD,   /* gradient all-reduce over data x context */
    DIST_KIND_HP_REDUCE, /* head-parallel activation/gradient all-reduces */
    DIST_KIND_CP_RING,   /* ring attention K/V (and dK/dV) passes */
    DIST_KIND_CP_A2A,    /* Ulysses all-to-all */
    DIST_KIND_ZERO_AG,   /* ZeRO-1 parameter all-gather after the sharded update */
    DIST_KIND_OTHER,     /* scalars: losses, norms, flags */
    DIST_KIND_EMB_A2A,   /* sharded embedding lookups and gradient scatters (all-to-all) */
    DIST_KINDS
};

struct dist_stats {
    double bytes[DIST_KINDS];   /* bytes this rank sent */
    double staged;              /* bytes copied between backend and host memory (both ways) */
    double seconds[DIST_KINDS]; /* wall time this rank spent inside the calls (exposed) */
    long calls[DIST_KINDS];
};

struct dist_comms; /* MPI communicators and request state, private to dist.c */
struct dist_stage; /* pinned host copies of backend buffers, private to dist/ (stage.h) */
struct dist_nccl;  /* dist.transport: nccl communicators, private to dist/ (nccl.h) */
struct ops;

struct dist {
    int rank, world; /* MPI_COMM_WORLD */
    int initialized; /* MPI_Init was called by dist_init */
    int dp, cp, hp;  /* grid sizes */
    int dp_rank, cp_rank, hp_rank;
    int ulysses;              /* context mode: 0 ring, 1 ulysses */
    struct dist_comms *c;     /* NULL until dist_grid_init */
    struct dist_stage *stage; /* NULL: the float collectives' buffers are host memory */
    struct dist_nccl *nccl;   /* non-NULL: the float collectives run on NCCL (device buffers) */
    struct dist_stats stats;
};

extern const char *const dist_kind_names[DIST_KINDS];

/* MPI_Init (thread level MULTIPLE where the library has it: the watchdog and the background
 * checkpoint writer call MPI from their own threads), set MPI_ERRORS_RETURN, install the MPI_Abort
 * exit hook. The grid starts as 1 x 1 x world... call dist_grid_init to set it. */
void dist_init(struct dist *d, int *argc, char ***argv);
/* One process without MPI, for commands that only read and print (config show/docs): world 1,
 * with the rank the launcher gave (OMPI_COMM_WORLD_RANK, PMIX_RANK or SLURM_PROCID; else 0) so
 * that only rank 0 prints under mpirun or srun. */
void dist_init_local(struct dist *d);
void dist_finalize(struct dist *d);
/* Split world into data x context x heads. The caller has checked dp*cp*hp == world. */
void dist_grid_init(struct dist *d, int dp, int cp, int hp, int ulysses);
/* A second handle on the same job for a thread that runs its own collectives (the background
 * checkpoint writer): its world collectives and HDF5 file access go over a duplicate of the
 * world communicator, so they never mix with the training loop's. Only the world operations
 * (barrier, allreduce_max_int, allreduce_sum_double, bcast_bytes, gather_strings, the HDF5
 * property lists) may be used on it. COLLECTIVE (dist_dup_world); dist_free_dup is local. */
struct dist *dist_dup_world(const struct dist *d);
void dist_free_dup(struct dist *d);
/* The node of every world rank (node_of_rank[world]): the lowest world rank sharing its memory
 * (MPI_Comm_split_type shared). COLLECTIVE over the world; callable before the grid. */
void dist_node_ids(const struct dist *d, int *node_of_rank);
/* This rank's index among the ranks of its node (MPI_Comm_split_type shared, ordered by world
 * rank) and, in *local_size, how many there are: which GPU a rank takes. COLLECTIVE. */
int dist_local_rank(const struct dist *d, int *local_size);
/* Bind this rank to its device: be->select_device with the rank's local index (so the ranks of
 * a node take its GPUs in turn); desc gets the device's description. COLLECTIVE. */
void dist_select_device(const struct dist *d, const struct ops *be, char *desc, size_t n);
/* One line describing the grid, and (rank 0) a table of every rank's coordinates, host and
 * device (this rank's description, from the backend's select_device). COLLECTIVE. */
void dist_grid_print(const struct dist *d, const char *device);
int dist_group_size(const struct dist *d, enum dist_group g);
int dist_group_rank(const struct dist *d, enum dist_group g);

/* Cores of this node divided among the ranks on it (at least 1): the default thread count. */
int dist_threads_per_rank(const struct dist *d);

void dist_barrier(const struct dist *d);
int dist_allreduce_max_int(const struct dist *d, int v);
double dist_allreduce_sum_double(const struct dist *d, double v);
/* Sum of doubles over a group (small vectors: losses, norms). */
void dist_allreduce_group_doubles(struct dist *d, enum dist_group g, double *v, int n);
void dist_bcast_bytes(const struct dist *d, void *buf, int64_t n);
/* Gather strings to rank 0: each rank holds strs[i] for the indices it owns (NULL elsewhere);
 * on rank 0 every strs[i] that some rank held is filled in (malloc'd). Other ranks unchanged. */
void dist_gather_strings(struct dist *d, char **strs, int n);

/* A notice one rank raises and the others see without meeting in a collective: `headwise eval`
 * shares examples unevenly over the ranks, so a stop request must reach every rank within one
 * forward pass although the ranks are at different points of their work. Raising sends a byte to
 * every other rank on a communicator of the notice's own; polling is MPI_Iprobe (local, cheap).
 * open and close are COLLECTIVE on the world; close returns 1 if any rank raised the notice,
 * receives every byte that was sent (so nothing is left in flight at MPI_Finalize) and frees. */
struct dist_notice;
struct dist_notice *dist_notice_open(const struct dist *d);
/* raise: this rank asks (sends once). Returns 1 once this rank has raised or seen the notice. */
int dist_notice_poll(struct dist_notice *n, int raise);
int dist_notice_close(struct dist_notice *n);

/* Buffers in backend memory. The float collectives below (allreduce_f32, the gradient buckets,
 * allgather_f32, and the context ring, exchange and all-to-all) take buffers of the backend set
 * here; the other operations take HOST memory. With a backend whose memory the host cannot
 * address (CUDA), or with force, each such buffer goes device -> pinned host (on the backend's
 * communication stream, after the compute stream's work so far) -> the same deterministic rings
 * -> device (the compute stream's later work waits for it), so results are bit-identical to the
 * host path and several ranks may share one GPU. Gradient buckets are copied asynchronously:
 * the ring of a bucket starts at the first dist_grad_progress after its copy is done. force: the
 * CPU backend through the same path (tests; HW_STAGE_COLLECTIVES=1). Local; after
 * dist_grid_init; no-op on one rank. */
void dist_set_backend(struct dist *d, const struct ops *be, int force);
/* dist.transport: nccl (the CUDA backend, one GPU per rank): the float collectives above run on
 * NCCL communicators, one per grid group (unique ids broadcast over MPI), on the device buffers
 * themselves, queued on the CUDA streams: gradient buckets on the communication stream after the
 * compute stream's work (dist_grad_finish makes the compute stream wait for them), the rest on
 * the compute stream. Sums are NCCL's (ring algorithm): the same run to run, not bit-identical to
 * the MPI rings. The `s` of the accounting is the time to queue them. COLLECTIVE; after
 * dist_grid_init and the device choice. Returns 0, or -1 with one line in err (no NCCL in this
 * build). */
int dist_set_nccl(struct dist *d, char *err, size_t errn);
/* "NCCL 2.28.3", or NULL when the collectives go over MPI */
const char *dist_nccl_describe(const struct dist *d);

/* Blocking ring all-reduce (sum) of n floats over group g; counted under kind. */
void dist_allreduce_f32(struct dist *d, enum dist_group g, float *buf, size_t n,
                        enum dist_kind kind);

/* Gradient buckets over DIST_DPCP, overlapped with the backward: push a bucket as soon as its
 * gradients are final (ring all-reduce in flight), call progress between layers, finish waits
 * for all. Buckets must be pushed in the same order on every rank. */
void dist_grad_push(struct dist *d, float *buf, size_t n);
/* ZeRO-1: buckets stop after the reduce-scatter; this rank then holds the full sum only of its
 * own chunk of each bucket (dist_owned_chunk). */
void dist_grad_set_reduce_scatter(struct dist *d, int on);
/* The chunk [*lo, *hi) of an n-float bucket that this rank owns after a reduce-scatter over
 * DIST_DPCP, and that it sends first in the matching all-gather. */
void dist_owned_chunk(const struct dist *d, size_t n, size_t *lo, size_t *hi);
/* Blocking ring all-gather over DIST_DPCP of an n-float bucket whose owned chunk is final. */
void dist_allgather_f32(struct dist *d, float *buf, size_t n, enum dist_kind kind);
/* The same on HOST memory whatever the backend (the ZeRO-1 moments gathered for a checkpoint). */
void dist_allgather_f32_host(struct dist *d, float *buf, size_t n, enum dist_kind kind);
void dist_grad_progress(struct dist *d);
void dist_grad_finish(struct dist *d);

/* The context ring: send n floats to the next cp rank and receive n from the previous. */
void dist_cp_sendrecv(struct dist *d, const float *send, float *recv, size_t n);
/* Start the same exchange; dist_cp_wait completes it (compute in between). */
void dist_cp_isendrecv(struct dist *d, const float *send, float *recv, size_t n);
void dist_cp_wait(struct dist *d);
/* All-to-all over the cp group, n floats to every rank (block i of send goes to cp rank i). */
/* Point-to-point within the context group: send[o] (n floats) goes to context rank o and
 * recv[o] is filled from it; NULL entries (and our own rank) are skipped. Both sides must agree
 * on who sends what. Counted under cp_ring. */
void dist_cp_exchange(struct dist *d, const float *const *send, float *const *recv, size_t n);
void dist_cp_alltoall(struct dist *d, const float *send, float *recv, size_t n);

/* All-to-all over group g of one int per rank: recv[i] = what rank i put in its send[me]. */
void dist_alltoall_int(struct dist *d, enum dist_group g, const int *send, int *recv);
/* Variable all-to-all of bytes over group g: scount[i] bytes from send (packed in rank order)
 * go to rank i, rcount[i] bytes from rank i land in recv (packed in rank order). Counted under
 * DIST_KIND_EMB_A2A (the sharded embedding tables, dist/emb_shard.h). */
void dist_alltoallv_bytes(struct dist *d, enum dist_group g, const void *send, const int *scount,
                          void *recv, const int *rcount);

void dist_stats_reset(struct dist *d);

/* Watchdog. dist_watchdog_start (COLLECTIVE, after dist_init; timeout <= 0: off) starts a
 * thread that ends the job with MPI_Abort (exit HW_EXIT_HUNG) and one line on stderr when a
 * watched operation runs longer than timeout seconds: every blocking collective of this module
 * is watched, and callers watch longer operations (a checkpoint write) with dist_watch_begin /
 * dist_watch_end (nested calls name the inner operation; the time counts from the outermost).
 * The line names the operation, its sequence number, the step, the ranks that did not answer
 * (stopped, dead or unreachable), those waiting in the same operation, and what the others are
 * doing. what must be a string constant (or live until dist_watch_end). A thread other than the
 * training loop that runs collectives (the background checkpoint writer) first calls
 * dist_watch_thread_slot(1). dist_watchdog_stop: before dist_finalize (rank-local). */
void dist_watchdog_start(struct dist *d, double timeout);
void dist_watchdog_stop(void);
void dist_watch_begin(const char *what);
void dist_watch_end(void);
void dist_watch_step(int64_t step); /* the step being computed (1-based), for the line */
void dist_watch_thread_slot(int slot);

/* HDF5 property lists bound to this job's communicator (MPI-IO driver when world > 1,
 * the default POSIX driver on one rank). Caller closes them with H5Pclose. Returned as
 * int64_t so this header does not pull in hdf5.h. */
int64_t dist_h5_fapl(const struct dist *d);
int64_t dist_h5_dxpl(const struct dist *d);

#endif /* HW_DIST_H */
