/* train/async_save.h -- checkpoints written in the background (run.async_save): the training
 * loop hands over a snapshot of the state in host memory and goes on while a thread writes the
 * same collective HDF5 file that a synchronous save writes (ckpt_save, on a duplicate of the
 * world communicator: dist_dup_world), publishing it atomically only when every rank finished.
 * At most one save is in flight. The writer holds the HDF5 lock (core/h5lock.h) while it writes.
 * Needs MPI_THREAD_MULTIPLE with several ranks; async_save_init says when it is not there. */
#ifndef HW_ASYNC_SAVE_H
#define HW_ASYNC_SAVE_H

#include "../ckpt/ckpt.h"
#include "../core/check.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

struct dist;

/* Host staging buffers for the parameters and both moments, reused by every background save:
 * fresh ones would fault in every page again at each save (seconds for a large model, all of it
 * a stall of the training loop). Owned by the saver; one job uses them at a time. */
struct save_stage {
    float *w, *m, *v;
    size_t n;                   /* floats in each */
    void (*host_free)(void *p); /* w came from the backend's host_alloc (pinned on a GPU) */
};

/* One save: the groups and their tensors point into memory the job owns until it is done. */
struct save_job {
    struct ckpt_group g[3];
    int n_groups;
    struct ckpt_tensor *tv; /* every tensor view (malloc'd) */
    void *owned[8];         /* buffers freed with the job (the snapshot copies) */
    int n_owned;
    void *pinned; /* the parameters' copy, from the backend's host_alloc (pinned on a GPU) */
    void (*host_free)(void *p);
    struct ckpt_meta meta;
    char dir[CKPT_PATH_LEN];
    int64_t step;
    int keep;
    /* results */
    int rc;
    char err[HW_ERR_LEN];
    char path[CKPT_PATH_LEN];
    double write_s;
};

struct async_saver {
    struct dist *d; /* the writer's handle (a duplicate of the world communicator) */
    pthread_t thread;
    struct save_stage stage;
    int busy;         /* a job was started and not yet collected */
    _Atomic int done; /* the writer finished the job */
    struct save_job *job;
};

/* Set up the writer's communicator. COLLECTIVE. Returns 0, or HW_ECONFIG with one line when
 * the MPI library lacks MPI_THREAD_MULTIPLE on a multi-rank job. */
int async_save_init(struct async_saver *s, const struct dist *d, char *err);
/* Start writing job (the saver takes it; at most one in flight: collect the previous first). */
void async_save_start(struct async_saver *s, struct save_job *job);
/* 1 when the job in flight is written (rank-local, does not block). */
int async_save_ready(const struct async_saver *s);
/* Wait for the job in flight and return it (NULL when none); the caller reads its results and
 * frees it with save_job_free. */
struct save_job *async_save_collect(struct async_saver *s);
void save_job_free(struct save_job *job);
/* The staging buffers for a state of n floats (allocated on first use; the previous job must
 * have been collected). */
struct save_stage *async_save_stage(struct async_saver *s, size_t n, void *(*host_alloc)(size_t),
                                    void (*host_free)(void *));
/* Wait for any job in flight (freeing it), free the staging buffers and release the writer's
 * communicator. */
void async_save_close(struct async_saver *s);

#endif /* HW_ASYNC_SAVE_H */
