#define _GNU_SOURCE
/* train/async_save.c -- the background checkpoint writer (see async_save.h). */
#include "async_save.h"

#include "../core/h5lock.h"
#include "../core/log.h"
#include "../dist/dist.h"

#include <mpi.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

static void *writer(void *arg) {
    struct async_saver *s = arg;
    struct save_job *j = s->job;
    dist_watch_thread_slot(1); /* the watchdog tells its collectives from the loop's */
    /* the write takes the CPU time training leaves (Linux: a thread has its own nice value) */
    const char *nv = getenv("HW_ASYNC_NICE");
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nv && *nv ? atoi(nv) : 10);
    const double t0 = log_now();
    h5lock_enter();
    j->rc = ckpt_save(s->d, j->dir, j->step, j->g, j->n_groups, &j->meta, j->keep, j->path, j->err);
    h5lock_leave();
    j->write_s = log_now() - t0;
    atomic_store(&s->done, 1);
    return NULL;
}

int async_save_init(struct async_saver *s, const struct dist *d, char *err) {
    memset(s, 0, sizeof(*s));
    int provided = MPI_THREAD_SINGLE, init = 0;
    MPI_Initialized(&init);
    if (init)
        MPI_Query_thread(&provided);
    if (d->world > 1 && provided < MPI_THREAD_MULTIPLE)
        return hw_errf(err, HW_ECONFIG,
                       "run.async_save: the MPI library does not provide MPI_THREAD_MULTIPLE, "
                       "which a checkpoint written by a second thread needs; set "
                       "run.async_save: false");
    s->d = dist_dup_world(d);
    return 0;
}

void async_save_start(struct async_saver *s, struct save_job *job) {
    HW_ASSERT(!s->busy);
    s->job = job;
    s->busy = 1;
    atomic_store(&s->done, 0);
    if (pthread_create(&s->thread, NULL, writer, s) != 0)
        HW_DIE("cannot start the checkpoint writer thread");
}

int async_save_ready(const struct async_saver *s) {
    return s->busy && atomic_load(&s->done);
}

struct save_job *async_save_collect(struct async_saver *s) {
    if (!s->busy)
        return NULL;
    pthread_join(s->thread, NULL);
    s->busy = 0;
    struct save_job *j = s->job;
    s->job = NULL;
    return j;
}

void save_job_free(struct save_job *job) {
    if (!job)
        return;
    for (int i = 0; i < job->n_owned; i++)
        free(job->owned[i]);
    if (job->pinned)
        job->host_free(job->pinned);
    free(job->tv);
    free(job);
}

static void stage_free(struct save_stage *st) {
    if (st->w)
        st->host_free(st->w);
    free(st->m);
    free(st->v);
    memset(st, 0, sizeof(*st));
}

struct save_stage *async_save_stage(struct async_saver *s, size_t n, void *(*host_alloc)(size_t),
                                    void (*host_free)(void *)) {
    HW_ASSERT(!s->busy);
    struct save_stage *st = &s->stage;
    if (st->w && st->n == n)
        return st;
    stage_free(st);
    st->n = n;
    st->host_free = host_free;
    st->w = host_alloc(sizeof(float) * (n ? n : 1));
    st->m = HW_CALLOC(n + 1, sizeof(float));
    st->v = HW_CALLOC(n + 1, sizeof(float));
    return st;
}

void async_save_close(struct async_saver *s) {
    save_job_free(async_save_collect(s));
    stage_free(&s->stage);
    dist_free_dup(s->d);
    s->d = NULL;
}
