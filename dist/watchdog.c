#define _POSIX_C_SOURCE 200809L
/* dist/watchdog.c -- the per-rank watchdog thread: a collective or checkpoint write that runs
 * longer than dist.timeout_s ends the job with MPI_Abort and one line naming it, the step, and
 * which ranks did not arrive (see dist.h, "Watchdog").
 *
 * Each thread that calls collectives (the training loop; the background checkpoint writer) has
 * a slot: what it is waiting in, since when, and how many collectives it entered. The watchdog
 * thread reads the slots every 50 ms. When one is overdue it asks every other rank, on a
 * communicator of its own, what that rank is doing; the watchdogs of live ranks answer at once
 * (they never block), so a rank that does not answer within a few seconds is stopped, dead or
 * unreachable. Needs MPI_THREAD_MULTIPLE for the questions; without it the line names only the
 * collective. */
#include "dist.h"

#include "../core/check.h"
#include "../core/log.h"

#include <mpi.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WD_SLOTS     2
#define WD_NAME      72
#define WD_TAG_ASK   31
#define WD_TAG_REPLY 32
#define WD_POLL_NS   50000000L /* 50 ms */

struct wd_slot {
    _Atomic int64_t since_ns; /* when the outermost watched operation began; 0: idle */
    _Atomic int64_t seq;      /* watched operations begun so far */
    _Atomic(const char *) outer, inner;
    _Atomic int depth;
};

/* What one rank says it is doing (sent as bytes). */
struct wd_reply {
    int64_t seq, step;
    int32_t busy, rank;
    char what[WD_NAME];
};

static struct wd_slot slots[WD_SLOTS];
static _Atomic int64_t cur_step;
static _Atomic int running, stop_req;
static _Thread_local int my_slot; /* 0: the training loop; 1: the checkpoint writer */
static pthread_t thread;
static MPI_Comm wd_comm = MPI_COMM_NULL;
static double timeout_s;
static int wd_rank, wd_world, multi;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void dist_watch_thread_slot(int slot) {
    HW_ASSERT(slot >= 0 && slot < WD_SLOTS);
    my_slot = slot;
}

void dist_watch_begin(const char *what) {
    struct wd_slot *s = &slots[my_slot];
    int depth = atomic_fetch_add(&s->depth, 1);
    if (depth == 0) {
        atomic_store(&s->outer, what);
        atomic_store(&s->inner, (const char *)NULL);
        atomic_fetch_add(&s->seq, 1);
        atomic_store(&s->since_ns, now_ns());
    } else {
        atomic_store(&s->inner, what);
    }
}

void dist_watch_end(void) {
    struct wd_slot *s = &slots[my_slot];
    int depth = atomic_fetch_sub(&s->depth, 1);
    HW_ASSERT(depth >= 1);
    if (depth == 1)
        atomic_store(&s->since_ns, (int64_t)0);
    else
        atomic_store(&s->inner, (const char *)NULL);
}

void dist_watch_step(int64_t step) {
    atomic_store(&cur_step, step);
}

/* "allreduce_f32" or "checkpoint write (in allreduce_max_int)" */
static void describe(const struct wd_slot *s, char *out, size_t n) {
    const char *o = atomic_load(&s->outer), *i = atomic_load(&s->inner);
    if (i)
        snprintf(out, n, "%s (in %s)", o ? o : "?", i);
    else
        snprintf(out, n, "%s", o ? o : "?");
}

/* This rank's state: the busy slot waiting longest, or the last thing the loop entered. */
static struct wd_reply my_state(void) {
    struct wd_reply r;
    memset(&r, 0, sizeof(r));
    r.rank = wd_rank;
    r.step = atomic_load(&cur_step);
    int best = 0;
    int64_t t_best = 0;
    for (int k = 0; k < WD_SLOTS; k++) {
        int64_t t = atomic_load(&slots[k].since_ns);
        if (t && (!t_best || t < t_best)) {
            t_best = t;
            best = k;
        }
    }
    r.busy = t_best != 0;
    r.seq = atomic_load(&slots[best].seq);
    describe(&slots[best], r.what, sizeof(r.what));
    return r;
}

/* Answer the questions other watchdogs sent (never blocks). ask: the posted receive. */
static MPI_Request ask_req = MPI_REQUEST_NULL;
static int ask_buf;
static MPI_Request reply_req[64];
static struct wd_reply reply_buf[64];
static int n_reply;

static void post_ask(void) {
    MPI_Irecv(&ask_buf, 1, MPI_INT, MPI_ANY_SOURCE, WD_TAG_ASK, wd_comm, &ask_req);
}

static void answer(void) {
    for (;;) {
        int flag = 0;
        MPI_Status st;
        if (ask_req == MPI_REQUEST_NULL || MPI_Test(&ask_req, &flag, &st) != MPI_SUCCESS || !flag)
            break;
        int slot = n_reply % 64;
        if (reply_req[slot] != MPI_REQUEST_NULL) /* a reply 64 questions ago: drop it */
            MPI_Request_free(&reply_req[slot]);
        reply_buf[slot] = my_state();
        MPI_Isend(&reply_buf[slot], (int)sizeof(struct wd_reply), MPI_BYTE, st.MPI_SOURCE,
                  WD_TAG_REPLY, wd_comm, &reply_req[slot]);
        n_reply++;
        post_ask();
    }
}

/* Ask every other rank what it is doing; wait up to grace seconds for the answers. */
static void survey(struct wd_reply *got, int *answered, double grace) {
    static int token;
    MPI_Request *asks = HW_CALLOC((size_t)wd_world, sizeof(MPI_Request));
    MPI_Request rr = MPI_REQUEST_NULL;
    struct wd_reply in;
    int n_got = 0;
    for (int r = 0; r < wd_world; r++) {
        asks[r] = MPI_REQUEST_NULL;
        if (r != wd_rank)
            MPI_Isend(&token, 1, MPI_INT, r, WD_TAG_ASK, wd_comm, &asks[r]);
    }
    MPI_Irecv(&in, (int)sizeof(in), MPI_BYTE, MPI_ANY_SOURCE, WD_TAG_REPLY, wd_comm, &rr);
    const int64_t end = now_ns() + (int64_t)(grace * 1e9);
    while (n_got < wd_world - 1 && now_ns() < end) {
        int flag = 0;
        answer(); /* the others are asking too */
        MPI_Test(&rr, &flag, MPI_STATUS_IGNORE);
        if (flag) {
            if (in.rank >= 0 && in.rank < wd_world && !answered[in.rank]) {
                got[in.rank] = in;
                answered[in.rank] = 1;
                n_got++;
            }
            MPI_Irecv(&in, (int)sizeof(in), MPI_BYTE, MPI_ANY_SOURCE, WD_TAG_REPLY, wd_comm, &rr);
        } else {
            struct timespec ts = {0, 5000000L};
            nanosleep(&ts, NULL);
        }
    }
    free(asks); /* the job is about to end: the requests are not completed */
}

/* The overdue slot k: say what is stuck and who did not arrive, then end the job. */
static void fire(int k, double waited) {
    char what[WD_NAME], line[4096] = "", gone[1024] = "", with[1024] = "", other[2048] = "";
    describe(&slots[k], what, sizeof(what));
    const int64_t seq = atomic_load(&slots[k].seq), step = atomic_load(&cur_step);
    if (multi && wd_world > 1) {
        struct wd_reply *got = HW_CALLOC((size_t)wd_world, sizeof(*got));
        int *answered = HW_CALLOC((size_t)wd_world, sizeof(int));
        double grace = timeout_s / 2 < 5.0 ? timeout_s / 2 : 5.0;
        survey(got, answered, grace < 1.0 ? 1.0 : grace);
        for (int r = 0; r < wd_world; r++) {
            if (r == wd_rank)
                continue;
            if (!answered[r])
                hw_appendf(gone, sizeof(gone), "%s%d", gone[0] ? "," : "", r);
            else if (got[r].busy && got[r].seq == seq && !strcmp(got[r].what, what))
                hw_appendf(with, sizeof(with), "%s%d", with[0] ? "," : "", r);
            else
                hw_appendf(other, sizeof(other), "%srank %d %s %s (#%lld, step %lld)",
                           other[0] ? ", " : " ", r, got[r].busy ? "waits in" : "last entered",
                           got[r].what[0] ? got[r].what : "nothing", (long long)got[r].seq,
                           (long long)got[r].step);
        }
        free(got);
        free(answered);
    }
    snprintf(line, sizeof(line),
             "rank %d: watchdog: %s (#%lld, step %lld) has not finished after %.1f s "
             "(dist.timeout_s %g)",
             wd_rank, what, (long long)seq, (long long)step, waited, timeout_s);
    if (multi && wd_world > 1) {
        hw_appendf(line, sizeof(line),
                   "; ranks that did not answer (stopped, dead or unreachable): %s",
                   gone[0] ? gone : "none");
        hw_appendf(line, sizeof(line), "; waiting in it too: %s", with[0] ? with : "none");
        if (other[0])
            hw_appendf(line, sizeof(line), "; not in it:%s", other);
    }
    hw_appendf(line, sizeof(line), "; ending the job (exit %d)", HW_EXIT_HUNG);
    fprintf(stderr, "%s\n", line);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, HW_EXIT_HUNG);
    _Exit(HW_EXIT_HUNG);
}

static void *loop(void *arg) {
    (void)arg;
    const int64_t limit = (int64_t)(timeout_s * 1e9);
    while (!atomic_load(&stop_req)) {
        if (multi)
            answer();
        const int64_t t = now_ns();
        for (int k = 0; k < WD_SLOTS; k++) {
            int64_t since = atomic_load(&slots[k].since_ns);
            if (since && t - since > limit)
                fire(k, (double)(t - since) / 1e9);
        }
        struct timespec ts = {0, WD_POLL_NS};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

void dist_watchdog_start(struct dist *d, double timeout) {
    if (timeout <= 0 || atomic_load(&running))
        return;
    int provided = MPI_THREAD_SINGLE;
    MPI_Query_thread(&provided);
    multi = provided >= MPI_THREAD_MULTIPLE;
    timeout_s = timeout;
    wd_rank = d->rank;
    wd_world = d->world;
    for (int i = 0; i < 64; i++)
        reply_req[i] = MPI_REQUEST_NULL;
    if (multi && d->world > 1) {
        if (MPI_Comm_dup(MPI_COMM_WORLD, &wd_comm) != MPI_SUCCESS)
            HW_DIE("rank %d: MPI_Comm_dup for the watchdog failed", d->rank);
        post_ask();
    } else {
        multi = 0;
    }
    atomic_store(&stop_req, 0);
    if (pthread_create(&thread, NULL, loop, NULL) != 0)
        HW_DIE("rank %d: cannot start the watchdog thread", d->rank);
    atomic_store(&running, 1);
}

void dist_watchdog_stop(void) {
    if (!atomic_load(&running))
        return;
    atomic_store(&stop_req, 1);
    pthread_join(thread, NULL);
    atomic_store(&running, 0);
    if (wd_comm != MPI_COMM_NULL) {
        if (ask_req != MPI_REQUEST_NULL) {
            MPI_Cancel(&ask_req);
            MPI_Wait(&ask_req, MPI_STATUS_IGNORE);
        }
        for (int i = 0; i < 64; i++)
            if (reply_req[i] != MPI_REQUEST_NULL)
                MPI_Wait(&reply_req[i], MPI_STATUS_IGNORE);
        MPI_Comm_free(&wd_comm);
    }
}
