#define _POSIX_C_SOURCE 200809L
/* dist/dist.c -- MPI setup, the data x context x heads grid, ring collectives with byte
 * accounting, overlapped gradient buckets, the context ring, and HDF5 property lists
 * (see dist.h). */
#include "dist.h"
#include "nccl.h"
#include "stage.h"

#include "../core/check.h"
#include "../core/log.h"
#include "../ops/ops.h"

#include <hdf5.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HW_CHECK_MPI(call)                                                                         \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != MPI_SUCCESS) {                                                                  \
            char s_[MPI_MAX_ERROR_STRING];                                                         \
            int n_ = 0;                                                                            \
            MPI_Error_string(rc_, s_, &n_);                                                        \
            HW_DIE("rank %d: %s failed: %s", log_rank(), #call, s_);                               \
        }                                                                                          \
    } while (0)

/* a blocking MPI call the watchdog watches, under the name the watchdog line gives */
#define WATCHED(name, call)                                                                        \
    do {                                                                                           \
        dist_watch_begin(name);                                                                    \
        HW_CHECK_MPI(call);                                                                        \
        dist_watch_end();                                                                          \
    } while (0)

#define MAX_BUCKETS 512
#define TAG_GRAD    1000 /* + bucket index */
#define TAG_RING    7
#define TAG_CP      9

/* staging slots (stage.h): one per role of a collective whose host copies may be live at once */
enum {
    SLOT_REDUCE,  /* allreduce_f32, allgather_f32 */
    SLOT_CP_SEND, /* the context ring pass */
    SLOT_CP_RECV,
    SLOT_A2A_SEND, /* Ulysses all-to-all */
    SLOT_A2A_RECV,
    SLOT_BUCKET0,                           /* + bucket index */
    SLOT_EXCH0 = SLOT_BUCKET0 + MAX_BUCKETS /* + 2 x context rank (+1: receive) */
};

const char *const dist_kind_names[DIST_KINDS] = {"dp_grad", "hp_reduce", "cp_ring", "cp_a2a",
                                                 "zero_ag", "other",     "emb_a2a"};

/* One ring all-reduce in flight: reduce-scatter then all-gather, p-1 steps each. */
struct ring_op {
    float *buf;
    float *dev;  /* staged: the backend buffer buf is a host copy of (NULL: buf is it) */
    int pending; /* staged: the copy to the host is in flight, no message posted yet */
    size_t n;
    int phase; /* 0 reduce-scatter, 1 all-gather, 2 done */
    int end;   /* the phase that means done: 2, or 1 for a reduce-scatter alone */
    int step;
    int tag;
    MPI_Request req[2];
    float *tmp; /* receive buffer for the reduce-scatter, capacity tmp_cap floats */
    size_t tmp_cap;
};

struct dist_comms {
    MPI_Comm g[DIST_GROUPS];
    struct ring_op bucket[MAX_BUCKETS];
    int n_buckets, n_done;
    int rs_only; /* ZeRO-1: buckets end after the reduce-scatter */
    MPI_Request cp_req[2];
    float *cp_recv_dev; /* staged ring pass: where the received block goes at dist_cp_wait */
    size_t cp_n;
    float *tmp; /* blocking all-reduce scratch */
    size_t tmp_cap;
};

static void abort_hook(int code) {
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin) {
        int world = 1;
        MPI_Comm_size(MPI_COMM_WORLD, &world);
        if (world > 1)
            MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
        MPI_Finalize();
    }
    exit(code);
}

/* The communicator of the whole job: MPI_COMM_WORLD, or its duplicate in a dist_dup_world
 * handle (a second thread's collectives must not share a communicator with the first's). */
static MPI_Comm world_comm(const struct dist *d) {
    return d && d->c && d->c->g[DIST_WORLD] != MPI_COMM_NULL ? d->c->g[DIST_WORLD] : MPI_COMM_WORLD;
}

/* A process started without a launcher (no mpirun, no srun --mpi) is an Open MPI singleton:
 * one rank, no peers. By default its MPI_Init forks a helper daemon and probes the UCX and OFI
 * network layers, about 0.3 s of every `headwise` command's start on a laptop; a singleton
 * needs neither. Unless the user set them, it runs isolated with the shared-memory and self
 * transports (Open MPI 4.x parameters; other MPIs ignore OMPI_MCA_*). Launched jobs are left
 * to the launcher's and the site's settings (UCX is the right choice on InfiniBand). */
static void singleton_defaults(void) {
    const char *launched[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof(launched) / sizeof(launched[0]); i++)
        if (getenv(launched[i]))
            return;
    setenv("OMPI_MCA_ess_singleton_isolated", "1", 0);
    setenv("OMPI_MCA_pml", "ob1", 0);
    setenv("OMPI_MCA_btl", "self,vader", 0);
    setenv("OMPI_MCA_osc", "^ucx", 0);
}

void dist_init(struct dist *d, int *argc, char ***argv) {
    int provided = 0, init = 0;
    memset(d, 0, sizeof(*d));
    MPI_Initialized(&init);
    if (!init) {
        singleton_defaults();
        if (MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS) {
            fprintf(stderr, "error: MPI_Init_thread failed\n");
            exit(HW_EXIT_FAIL);
        }
        d->initialized = 1;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    HW_CHECK_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &d->rank));
    HW_CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &d->world));
    d->dp = d->world;
    d->cp = d->hp = 1;
    d->dp_rank = d->rank;
    log_set_rank(d->rank, d->world);
    hw_set_exit_hook(abort_hook);
}

void dist_init_local(struct dist *d) {
    memset(d, 0, sizeof(*d));
    const char *vars[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID"};
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) {
            d->rank = atoi(v) > 0 ? atoi(v) : 0;
            break;
        }
    }
    d->world = 1;
    d->dp = d->cp = d->hp = 1;
    log_set_rank(0, 1);
}

static void comms_free(struct dist *d) {
    if (!d->c)
        return;
    if (d->c->g[DIST_WORLD] != MPI_COMM_WORLD && d->c->g[DIST_WORLD] != MPI_COMM_NULL)
        MPI_Comm_free(&d->c->g[DIST_WORLD]); /* a dist_dup_world handle's own */
    for (int g = 1; g < DIST_GROUPS; g++)
        if (d->c->g[g] != MPI_COMM_NULL)
            MPI_Comm_free(&d->c->g[g]);
    for (int i = 0; i < MAX_BUCKETS; i++)
        free(d->c->bucket[i].tmp);
    free(d->c->tmp);
    free(d->c);
    d->c = NULL;
}

void dist_finalize(struct dist *d) {
    int fin = 0;
    dist_watchdog_stop();
    stage_free(d->stage);
    d->stage = NULL;
    nccl_close(d->nccl);
    d->nccl = NULL;
    MPI_Finalized(&fin);
    if (!fin)
        comms_free(d);
    if (d->initialized) {
        if (!fin)
            MPI_Finalize();
        d->initialized = 0;
    }
    hw_set_exit_hook(NULL);
}

void dist_grid_init(struct dist *d, int dp, int cp, int hp, int ulysses) {
    HW_ASSERT(dp * cp * hp == d->world);
    comms_free(d);
    d->c = HW_CALLOC(1, sizeof(*d->c));
    d->dp = dp;
    d->cp = cp;
    d->hp = hp;
    d->ulysses = ulysses;
    d->hp_rank = d->rank % hp;
    d->cp_rank = (d->rank / hp) % cp;
    d->dp_rank = d->rank / (hp * cp);
    MPI_Comm *g = d->c->g;
    g[DIST_WORLD] = MPI_COMM_WORLD;
    HW_CHECK_MPI(
        MPI_Comm_split(MPI_COMM_WORLD, d->dp_rank * cp + d->cp_rank, d->hp_rank, &g[DIST_HP]));
    HW_CHECK_MPI(
        MPI_Comm_split(MPI_COMM_WORLD, d->dp_rank * hp + d->hp_rank, d->cp_rank, &g[DIST_CP]));
    HW_CHECK_MPI(
        MPI_Comm_split(MPI_COMM_WORLD, d->cp_rank * hp + d->hp_rank, d->dp_rank, &g[DIST_DP]));
    HW_CHECK_MPI(
        MPI_Comm_split(MPI_COMM_WORLD, d->hp_rank, d->dp_rank * cp + d->cp_rank, &g[DIST_DPCP]));
    for (int i = 1; i < DIST_GROUPS; i++)
        MPI_Comm_set_errhandler(g[i], MPI_ERRORS_RETURN);
}

struct dist *dist_dup_world(const struct dist *d) {
    struct dist *o = HW_CALLOC(1, sizeof(*o));
    *o = *d;
    o->initialized = 0;
    o->stage = NULL; /* world operations only: host memory */
    o->nccl = NULL;
    memset(&o->stats, 0, sizeof(o->stats));
    o->c = HW_CALLOC(1, sizeof(*o->c));
    for (int g = 0; g < DIST_GROUPS; g++)
        o->c->g[g] = MPI_COMM_NULL;
    o->c->g[DIST_WORLD] = MPI_COMM_WORLD;
    if (d->world > 1) {
        HW_CHECK_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &o->c->g[DIST_WORLD]));
        MPI_Comm_set_errhandler(o->c->g[DIST_WORLD], MPI_ERRORS_RETURN);
    }
    return o;
}

void dist_free_dup(struct dist *d) {
    if (!d)
        return;
    comms_free(d);
    free(d);
}

void dist_node_ids(const struct dist *d, int *node_of_rank) {
    if (d->world == 1) {
        node_of_rank[0] = 0;
        return;
    }
    MPI_Comm local;
    int leader = d->rank;
    HW_CHECK_MPI(
        MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &local));
    HW_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &leader, 1, MPI_INT, MPI_MIN, local));
    MPI_Comm_free(&local);
    HW_CHECK_MPI(MPI_Allgather(&leader, 1, MPI_INT, node_of_rank, 1, MPI_INT, MPI_COMM_WORLD));
}

int dist_local_rank(const struct dist *d, int *local_size) {
    int r = 0;
    *local_size = 1;
    if (d->world == 1)
        return 0;
    MPI_Comm local;
    HW_CHECK_MPI(
        MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &local));
    HW_CHECK_MPI(MPI_Comm_rank(local, &r));
    HW_CHECK_MPI(MPI_Comm_size(local, local_size));
    MPI_Comm_free(&local);
    return r;
}

#define PLACE_LEN 128 /* host and device of one rank in the layout table */

void dist_grid_print(const struct dist *d, const char *device) {
    log_info("grid: %d ranks = data %d x context %d (%s) x heads %d (heads innermost)", d->world,
             d->dp, d->cp, d->ulysses ? "ulysses" : "ring", d->hp);
    char host[MPI_MAX_PROCESSOR_NAME] = "?";
    int len = 0;
    MPI_Get_processor_name(host, &len);
    if (d->world == 1 || !d->c) {
        log_info("  rank 0: %s, %s", host, device);
        return;
    }
    struct place {
        int coord[4];
        char where[PLACE_LEN];
    } me, *all = d->rank == 0 ? HW_MALLOC(sizeof(*all) * (size_t)d->world) : NULL;
    memset(&me, 0, sizeof(me));
    me.coord[0] = d->rank, me.coord[1] = d->dp_rank, me.coord[2] = d->cp_rank;
    me.coord[3] = d->hp_rank;
    snprintf(me.where, sizeof(me.where), "%.63s, %.60s", host, device);
    WATCHED("gather (grid layout)", MPI_Gather(&me, (int)sizeof(me), MPI_BYTE, all, (int)sizeof(me),
                                               MPI_BYTE, 0, MPI_COMM_WORLD));
    if (d->rank == 0) {
        for (int r = 0; r < d->world; r++) {
            int same = 0; /* ranks on this host and device (a cpu is every rank's) */
            for (int o = 0; o < d->world; o++)
                same += !strcmp(all[o].where, all[r].where);
            char note[48] = "";
            if (same > 1 && strcmp(device, "cpu"))
                snprintf(note, sizeof(note), ", shared by %d ranks", same);
            log_info("  rank %d: data %d, context %d, heads %d: %s%s", all[r].coord[0],
                     all[r].coord[1], all[r].coord[2], all[r].coord[3], all[r].where, note);
        }
        free(all);
    }
}

static MPI_Comm comm_of(const struct dist *d, enum dist_group g) {
    if (!d->c)
        return MPI_COMM_WORLD;
    return d->c->g[g];
}

int dist_group_size(const struct dist *d, enum dist_group g) {
    switch (g) {
    case DIST_WORLD:
        return d->world;
    case DIST_DP:
        return d->dp;
    case DIST_CP:
        return d->cp;
    case DIST_HP:
        return d->hp;
    case DIST_DPCP:
        return d->dp * d->cp;
    default:
        HW_DIE("bad group %d", (int)g);
    }
}

int dist_group_rank(const struct dist *d, enum dist_group g) {
    switch (g) {
    case DIST_WORLD:
        return d->rank;
    case DIST_DP:
        return d->dp_rank;
    case DIST_CP:
        return d->cp_rank;
    case DIST_HP:
        return d->hp_rank;
    case DIST_DPCP:
        return d->dp_rank * d->cp + d->cp_rank;
    default:
        HW_DIE("bad group %d", (int)g);
    }
}

static double now(void) {
    return MPI_Wtime();
}

static void account(struct dist *d, enum dist_kind k, double bytes, double t0) {
    d->stats.bytes[k] += bytes;
    d->stats.seconds[k] += now() - t0;
    d->stats.calls[k]++;
}

void dist_stats_reset(struct dist *d) {
    memset(&d->stats, 0, sizeof(d->stats));
}

void dist_set_backend(struct dist *d, const struct ops *be, int force) {
    stage_free(d->stage);
    d->stage = NULL;
    if (d->world > 1 && (force || be->kind != BACKEND_CPU))
        d->stage = stage_new(be);
}

int dist_set_nccl(struct dist *d, char *err, size_t errn) {
    nccl_close(d->nccl);
    d->nccl = nccl_open(d->c->g, DIST_GROUPS, err, errn);
    return d->nccl ? 0 : -1;
}

const char *dist_nccl_describe(const struct dist *d) {
    return d->nccl ? nccl_describe(d->nccl) : NULL;
}

/* bytes a rank sends in a ring all-reduce (phases 2) or reduce-scatter / all-gather (1) */
static double ring_bytes(size_t n, int p, int phases) {
    return (double)phases * (double)(p - 1) / p * (double)n * sizeof(float);
}

/* a backend buffer's host copy for a collective: the buffer itself when unstaged */
static float *down(struct dist *d, int slot, const float *dev, size_t n) {
    if (!d->stage)
        return (float *)dev;
    d->stats.staged += (double)n * sizeof(float);
    return stage_down(d->stage, slot, dev, n);
}

/* a host buffer to receive into for dev */
static float *recv_host(struct dist *d, int slot, float *dev, size_t n) {
    return d->stage ? stage_host(d->stage, slot, n) : dev;
}

/* the host copy of slot back into dev (nothing when unstaged) */
static void up(struct dist *d, int slot, float *dev, size_t n) {
    if (!d->stage)
        return;
    d->stats.staged += (double)n * sizeof(float);
    stage_up(d->stage, slot, dev, n);
}

int dist_threads_per_rank(const struct dist *d) {
    int local = 1;
    if (d && d->world > 1) {
        MPI_Comm node;
        HW_CHECK_MPI(
            MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
        MPI_Comm_size(node, &local);
        MPI_Comm_free(&node);
    }
    int cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
    return cores / local > 1 ? cores / local : 1;
}

void dist_barrier(const struct dist *d) {
    (void)d;
    WATCHED("barrier", MPI_Barrier(world_comm(d)));
}

#define TAG_NOTICE 11

struct dist_notice {
    MPI_Comm comm;
    int rank, world;
    int seen, sent;
    MPI_Request *req; /* world - 1 sends once raised */
    char byte;
};

struct dist_notice *dist_notice_open(const struct dist *d) {
    struct dist_notice *n = HW_CALLOC(1, sizeof(*n));
    n->rank = d->rank;
    n->world = d->world;
    n->comm = MPI_COMM_NULL;
    n->byte = 1;
    if (n->world > 1) {
        WATCHED("notice open (comm dup)", MPI_Comm_dup(world_comm(d), &n->comm));
        MPI_Comm_set_errhandler(n->comm, MPI_ERRORS_RETURN);
    }
    return n;
}

int dist_notice_poll(struct dist_notice *n, int raise) {
    if (raise && !n->sent) {
        n->sent = n->seen = 1;
        if (n->world > 1) {
            n->req = HW_CALLOC((size_t)n->world, sizeof(MPI_Request));
            for (int r = 0, k = 0; r < n->world; r++)
                if (r != n->rank)
                    HW_CHECK_MPI(
                        MPI_Isend(&n->byte, 1, MPI_BYTE, r, TAG_NOTICE, n->comm, &n->req[k++]));
        }
    }
    if (!n->seen && n->world > 1) {
        int flag = 0;
        HW_CHECK_MPI(MPI_Iprobe(MPI_ANY_SOURCE, TAG_NOTICE, n->comm, &flag, MPI_STATUS_IGNORE));
        n->seen = flag;
    }
    return n->seen;
}

int dist_notice_close(struct dist_notice *n) {
    int any = n->seen;
    if (n->world > 1) {
        int v[2] = {n->seen, n->sent}, tot[2];
        WATCHED("notice close (allreduce)", MPI_Allreduce(v, tot, 2, MPI_INT, MPI_SUM, n->comm));
        any = tot[0] > 0;
        /* every sender sent this rank one byte (a rank sends to all but itself) */
        for (int k = 0; k < tot[1] - n->sent; k++) {
            char b;
            WATCHED("notice close (recv)", MPI_Recv(&b, 1, MPI_BYTE, MPI_ANY_SOURCE, TAG_NOTICE,
                                                    n->comm, MPI_STATUS_IGNORE));
        }
        if (n->sent)
            WATCHED("notice close (send)", MPI_Waitall(n->world - 1, n->req, MPI_STATUSES_IGNORE));
        MPI_Comm_free(&n->comm);
    }
    free(n->req);
    free(n);
    return any;
}

int dist_allreduce_max_int(const struct dist *d, int v) {
    int out = v;
    if (d && d->world > 1)
        WATCHED("allreduce_max_int", MPI_Allreduce(&v, &out, 1, MPI_INT, MPI_MAX, world_comm(d)));
    return out;
}

double dist_allreduce_sum_double(const struct dist *d, double v) {
    double out = v;
    if (d && d->world > 1)
        WATCHED("allreduce_sum_double",
                MPI_Allreduce(&v, &out, 1, MPI_DOUBLE, MPI_SUM, world_comm(d)));
    return out;
}

void dist_allreduce_group_doubles(struct dist *d, enum dist_group g, double *v, int n) {
    if (dist_group_size(d, g) <= 1)
        return;
    double t0 = now();
    WATCHED("allreduce_doubles",
            MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, comm_of(d, g)));
    int p = dist_group_size(d, g);
    account(d, DIST_KIND_OTHER, 2.0 * (p - 1) / p * n * sizeof(double), t0);
}

void dist_bcast_bytes(const struct dist *d, void *buf, int64_t n) {
    if (!d || d->world <= 1)
        return;
    char *p = buf;
    while (n > 0) {
        int chunk = n > (1 << 30) ? (1 << 30) : (int)n;
        WATCHED("bcast", MPI_Bcast(p, chunk, MPI_BYTE, 0, world_comm(d)));
        p += chunk;
        n -= chunk;
    }
}

void dist_gather_strings(struct dist *d, char **strs, int n) {
    if (!d || d->world <= 1)
        return;
    double t0 = now();
    /* pack (index, length, bytes) records */
    size_t cap = 0;
    for (int i = 0; i < n; i++)
        if (strs[i])
            cap += 8 + strlen(strs[i]);
    char *blob = HW_MALLOC(cap ? cap : 1), *p = blob;
    for (int i = 0; i < n; i++)
        if (strs[i]) {
            int32_t idx = i, len = (int32_t)strlen(strs[i]);
            memcpy(p, &idx, 4);
            memcpy(p + 4, &len, 4);
            memcpy(p + 8, strs[i], (size_t)len);
            p += 8 + len;
        }
    int mine = (int)cap, *sizes = NULL, *offs = NULL;
    char *all = NULL;
    if (d->rank == 0) {
        sizes = HW_MALLOC(sizeof(int) * (size_t)d->world);
        offs = HW_MALLOC(sizeof(int) * (size_t)d->world);
    }
    WATCHED("gather_strings", MPI_Gather(&mine, 1, MPI_INT, sizes, 1, MPI_INT, 0, world_comm(d)));
    long total = 0;
    if (d->rank == 0) {
        for (int r = 0; r < d->world; r++) {
            offs[r] = (int)total;
            total += sizes[r];
        }
        all = HW_MALLOC((size_t)(total ? total : 1));
    }
    WATCHED("gather_strings",
            MPI_Gatherv(blob, mine, MPI_BYTE, all, sizes, offs, MPI_BYTE, 0, world_comm(d)));
    if (d->rank == 0) {
        for (char *q = all; q < all + total;) {
            int32_t idx, len;
            memcpy(&idx, q, 4);
            memcpy(&len, q + 4, 4);
            if (idx >= 0 && idx < n && !strs[idx]) {
                strs[idx] = HW_MALLOC((size_t)len + 1);
                memcpy(strs[idx], q + 8, (size_t)len);
                strs[idx][len] = 0;
            }
            q += 8 + len;
        }
    }
    account(d, DIST_KIND_OTHER, (double)cap, t0);
    free(blob);
    free(all);
    free(sizes);
    free(offs);
}

/* ------------------------------------------------------------------------------------------ */
/* ring all-reduce: chunk i of n floats over p ranks is [i*n/p, (i+1)*n/p) */

static size_t chunk_lo(size_t n, int p, int i) {
    return n * (size_t)i / (size_t)p;
}

static int mod(int a, int p) {
    return ((a % p) + p) % p;
}

static void grow(float **buf, size_t *cap, size_t n) {
    if (n > *cap) {
        free(*buf);
        *buf = HW_MALLOC(sizeof(float) * n);
        *cap = n;
    }
}

/* Post the messages of the current step of op; returns bytes sent. */
static double ring_post(struct ring_op *op, MPI_Comm comm, int p, int r) {
    int next = mod(r + 1, p), prev = mod(r - 1, p);
    int send_c, recv_c;
    if (op->phase == 0) {
        send_c = mod(r - op->step, p);
        recv_c = mod(r - op->step - 1, p);
    } else {
        send_c = mod(r + 1 - op->step, p);
        recv_c = mod(r - op->step, p);
    }
    size_t s0 = chunk_lo(op->n, p, send_c), s1 = chunk_lo(op->n, p, send_c + 1);
    size_t r0 = chunk_lo(op->n, p, recv_c), r1 = chunk_lo(op->n, p, recv_c + 1);
    float *dst = op->phase == 0 ? op->tmp : op->buf + r0;
    HW_CHECK_MPI(MPI_Irecv(dst, (int)(r1 - r0), MPI_FLOAT, prev, op->tag, comm, &op->req[0]));
    HW_CHECK_MPI(
        MPI_Isend(op->buf + s0, (int)(s1 - s0), MPI_FLOAT, next, op->tag, comm, &op->req[1]));
    return (double)(s1 - s0) * sizeof(float);
}

/* The messages of the current step arrived: apply them and move to the next step.
 * Returns bytes sent by the next step (0 when done). */
static double ring_advance(struct ring_op *op, MPI_Comm comm, int p, int r) {
    if (op->phase == 0) {
        int recv_c = mod(r - op->step - 1, p);
        size_t r0 = chunk_lo(op->n, p, recv_c), r1 = chunk_lo(op->n, p, recv_c + 1);
        float *dst = op->buf + r0;
        for (size_t i = 0; i < r1 - r0; i++)
            dst[i] += op->tmp[i];
    }
    if (++op->step == p - 1) {
        op->step = 0;
        op->phase++;
    }
    if (op->phase >= op->end) {
        op->phase = 2;
        return 0.0;
    }
    return ring_post(op, comm, p, r);
}

static void ring_start(struct ring_op *op, float *buf, size_t n, int tag, int p) {
    op->buf = buf;
    op->n = n;
    op->phase = 0;
    op->end = 2;
    op->step = 0;
    op->tag = tag;
    grow(&op->tmp, &op->tmp_cap, n / (size_t)p + 1);
}

void dist_allreduce_f32(struct dist *d, enum dist_group g, float *buf, size_t n,
                        enum dist_kind kind) {
    int p = dist_group_size(d, g);
    if (p <= 1 || n == 0)
        return;
    double t0 = now(), bytes = 0.0;
    if (d->nccl) {
        nccl_allreduce(d->nccl, g, buf, n, 0);
        account(d, kind, ring_bytes(n, p, 2), t0);
        return;
    }
    MPI_Comm comm = comm_of(d, g);
    int r = dist_group_rank(d, g);
    struct ring_op op;
    memset(&op, 0, sizeof(op));
    op.tmp = d->c->tmp;
    op.tmp_cap = d->c->tmp_cap;
    ring_start(&op, down(d, SLOT_REDUCE, buf, n), n, TAG_RING, p);
    bytes += ring_post(&op, comm, p, r);
    while (op.phase < 2) {
        WATCHED("allreduce_f32", MPI_Waitall(2, op.req, MPI_STATUSES_IGNORE));
        bytes += ring_advance(&op, comm, p, r);
    }
    up(d, SLOT_REDUCE, buf, n);
    d->c->tmp = op.tmp;
    d->c->tmp_cap = op.tmp_cap;
    account(d, kind, bytes, t0);
}

/* ------------------------------------------------------------------------------------------ */
/* gradient buckets */

void dist_grad_push(struct dist *d, float *buf, size_t n) {
    int p = d->dp * d->cp;
    if (p <= 1 || n == 0)
        return;
    double t0 = now();
    struct dist_comms *c = d->c;
    HW_ASSERT(c->n_buckets < MAX_BUCKETS);
    if (d->nccl) {
        /* on the communication stream (dist_grad_finish joins it) when no other communicator
         * runs meanwhile; with head groups or a context ring, on the compute stream: NCCL does
         * not promise progress to kernels of two communicators that run at once */
        const int async = d->hp == 1 && d->cp == 1;
        if (c->rs_only)
            nccl_reduce_chunks(d->nccl, DIST_DPCP, buf, n, p, async);
        else
            nccl_allreduce(d->nccl, DIST_DPCP, buf, n, async);
        c->n_buckets++;
        c->n_done = c->n_buckets;
        account(d, DIST_KIND_DP_GRAD, ring_bytes(n, p, c->rs_only ? 1 : 2), t0);
        return;
    }
    struct ring_op *op = &c->bucket[c->n_buckets];
    float *h = buf;
    if (d->stage) { /* the ring starts once the copy is on the host (bucket_post) */
        d->stats.staged += (double)n * sizeof(float);
        h = stage_down_async(d->stage, SLOT_BUCKET0 + c->n_buckets, buf, n);
    }
    ring_start(op, h, n, TAG_GRAD + c->n_buckets, p);
    op->dev = d->stage ? buf : NULL;
    op->pending = d->stage != NULL;
    op->end = c->rs_only ? 1 : 2;
    double bytes =
        op->pending ? 0.0 : ring_post(op, c->g[DIST_DPCP], p, dist_group_rank(d, DIST_DPCP));
    c->n_buckets++;
    account(d, DIST_KIND_DP_GRAD, bytes, t0);
    dist_grad_progress(d);
}

/* A staged bucket's first messages, once its host copy is complete (waits for it). */
static double bucket_post(struct dist *d, int i) {
    struct ring_op *op = &d->c->bucket[i];
    if (!op->pending)
        return 0.0;
    stage_wait(d->stage, SLOT_BUCKET0 + i);
    op->pending = 0;
    return ring_post(op, d->c->g[DIST_DPCP], d->dp * d->cp, dist_group_rank(d, DIST_DPCP));
}

void dist_grad_progress(struct dist *d) {
    struct dist_comms *c = d->c;
    if (!c || c->n_done == c->n_buckets)
        return;
    double t0 = now(), bytes = 0.0;
    int p = d->dp * d->cp, r = dist_group_rank(d, DIST_DPCP);
    for (int i = c->n_done; i < c->n_buckets; i++) {
        struct ring_op *op = &c->bucket[i];
        int flag = 1;
        bytes += bucket_post(d, i);
        while (op->phase < 2 && flag) {
            HW_CHECK_MPI(MPI_Testall(2, op->req, &flag, MPI_STATUSES_IGNORE));
            if (flag)
                bytes += ring_advance(op, c->g[DIST_DPCP], p, r);
        }
    }
    while (c->n_done < c->n_buckets && c->bucket[c->n_done].phase == 2)
        c->n_done++;
    d->stats.bytes[DIST_KIND_DP_GRAD] += bytes;
    d->stats.seconds[DIST_KIND_DP_GRAD] += now() - t0;
}

void dist_grad_finish(struct dist *d) {
    struct dist_comms *c = d->c;
    if (!c)
        return;
    if (d->nccl) {
        if (c->n_buckets)
            nccl_join(d->nccl);
        c->n_buckets = c->n_done = 0;
        return;
    }
    double t0 = now(), bytes = 0.0;
    int p = d->dp * d->cp, r = dist_group_rank(d, DIST_DPCP);
    for (int i = c->n_done; i < c->n_buckets; i++) {
        struct ring_op *op = &c->bucket[i];
        bytes += bucket_post(d, i);
        while (op->phase < 2) {
            WATCHED("dp_grad (gradient all-reduce)", MPI_Waitall(2, op->req, MPI_STATUSES_IGNORE));
            bytes += ring_advance(op, c->g[DIST_DPCP], p, r);
        }
    }
    for (int i = 0; i < c->n_buckets; i++)
        if (c->bucket[i].dev) {
            up(d, SLOT_BUCKET0 + i, c->bucket[i].dev, c->bucket[i].n);
            c->bucket[i].dev = NULL;
        }
    c->n_buckets = c->n_done = 0;
    d->stats.bytes[DIST_KIND_DP_GRAD] += bytes;
    d->stats.seconds[DIST_KIND_DP_GRAD] += now() - t0;
}

void dist_grad_set_reduce_scatter(struct dist *d, int on) {
    if (d->c)
        d->c->rs_only = on;
}

void dist_owned_chunk(const struct dist *d, size_t n, size_t *lo, size_t *hi) {
    int p = d->dp * d->cp, r = dist_group_rank(d, DIST_DPCP);
    int c = mod(r + 1, p); /* after p-1 reduce-scatter steps rank r holds chunk r+1 */
    *lo = chunk_lo(n, p, c);
    *hi = chunk_lo(n, p, c + 1);
}

/* host: buf is host memory (neither staged nor handed to NCCL) */
static void allgather(struct dist *d, float *buf, size_t n, enum dist_kind kind, int host) {
    int p = d->dp * d->cp;
    if (p <= 1 || n == 0)
        return;
    double t0 = now(), bytes = 0.0;
    if (d->nccl && !host) {
        nccl_bcast_chunks(d->nccl, DIST_DPCP, buf, n, p);
        account(d, kind, ring_bytes(n, p, 1), t0);
        return;
    }
    MPI_Comm comm = d->c->g[DIST_DPCP];
    int r = dist_group_rank(d, DIST_DPCP);
    struct ring_op op;
    memset(&op, 0, sizeof(op));
    op.buf = host ? buf : down(d, SLOT_REDUCE, buf, n);
    op.n = n;
    op.phase = 1;
    op.end = 2;
    op.tag = TAG_RING + 1;
    bytes += ring_post(&op, comm, p, r);
    while (op.phase < 2) {
        WATCHED("allgather_f32 (ZeRO-1)", MPI_Waitall(2, op.req, MPI_STATUSES_IGNORE));
        bytes += ring_advance(&op, comm, p, r);
    }
    if (!host)
        up(d, SLOT_REDUCE, buf, n);
    account(d, kind, bytes, t0);
}

void dist_allgather_f32(struct dist *d, float *buf, size_t n, enum dist_kind kind) {
    allgather(d, buf, n, kind, 0);
}

void dist_allgather_f32_host(struct dist *d, float *buf, size_t n, enum dist_kind kind) {
    allgather(d, buf, n, kind, 1);
}

/* ------------------------------------------------------------------------------------------ */
/* the context ring */

void dist_cp_isendrecv(struct dist *d, const float *send, float *recv, size_t n) {
    double t0 = now();
    MPI_Comm comm = d->c->g[DIST_CP];
    int next = mod(d->cp_rank + 1, d->cp), prev = mod(d->cp_rank - 1, d->cp);
    HW_ASSERT(n <= (size_t)2147483647);
    if (d->nccl) { /* queued on the compute stream: dist_cp_wait has nothing to wait for */
        nccl_sendrecv(d->nccl, DIST_CP, send, next, recv, prev, n);
        account(d, DIST_KIND_CP_RING, (double)n * sizeof(float), t0);
        return;
    }
    const float *hs = down(d, SLOT_CP_SEND, send, n);
    float *hr = recv_host(d, SLOT_CP_RECV, recv, n);
    d->c->cp_recv_dev = d->stage ? recv : NULL;
    d->c->cp_n = n;
    HW_CHECK_MPI(MPI_Irecv(hr, (int)n, MPI_FLOAT, prev, TAG_CP, comm, &d->c->cp_req[0]));
    HW_CHECK_MPI(MPI_Isend(hs, (int)n, MPI_FLOAT, next, TAG_CP, comm, &d->c->cp_req[1]));
    account(d, DIST_KIND_CP_RING, (double)n * sizeof(float), t0);
}

void dist_cp_wait(struct dist *d) {
    if (d->nccl)
        return;
    double t0 = now();
    WATCHED("cp_ring (context K/V pass)", MPI_Waitall(2, d->c->cp_req, MPI_STATUSES_IGNORE));
    if (d->c->cp_recv_dev) {
        up(d, SLOT_CP_RECV, d->c->cp_recv_dev, d->c->cp_n);
        d->c->cp_recv_dev = NULL;
    }
    d->stats.seconds[DIST_KIND_CP_RING] += now() - t0;
}

void dist_cp_exchange(struct dist *d, const float *const *send, float *const *recv, size_t n) {
    double t0 = now(), bytes = 0.0;
    if (d->nccl) {
        nccl_exchange(d->nccl, DIST_CP, send, recv, n, d->cp_rank, d->cp);
        for (int o = 0; o < d->cp; o++)
            bytes += o != d->cp_rank && send[o] ? (double)n * sizeof(float) : 0.0;
        account(d, DIST_KIND_CP_RING, bytes, t0);
        return;
    }
    MPI_Comm comm = d->c->g[DIST_CP];
    MPI_Request *req = HW_MALLOC(sizeof(MPI_Request) * 2 * (size_t)d->cp);
    int nr = 0;
    HW_ASSERT(n <= (size_t)2147483647);
    for (int o = 0; o < d->cp; o++)
        if (o != d->cp_rank && recv[o])
            HW_CHECK_MPI(MPI_Irecv(recv_host(d, SLOT_EXCH0 + 2 * o + 1, recv[o], n), (int)n,
                                   MPI_FLOAT, o, TAG_CP + 1, comm, &req[nr++]));
    for (int o = 0; o < d->cp; o++)
        if (o != d->cp_rank && send[o]) {
            HW_CHECK_MPI(MPI_Isend(down(d, SLOT_EXCH0 + 2 * o, send[o], n), (int)n, MPI_FLOAT, o,
                                   TAG_CP + 1, comm, &req[nr++]));
            bytes += (double)n * sizeof(float);
        }
    WATCHED("cp_exchange", MPI_Waitall(nr, req, MPI_STATUSES_IGNORE));
    for (int o = 0; o < d->cp; o++)
        if (o != d->cp_rank && recv[o])
            up(d, SLOT_EXCH0 + 2 * o + 1, recv[o], n);
    free(req);
    account(d, DIST_KIND_CP_RING, bytes, t0);
}

void dist_cp_sendrecv(struct dist *d, const float *send, float *recv, size_t n) {
    dist_cp_isendrecv(d, send, recv, n);
    dist_cp_wait(d);
}

void dist_cp_alltoall(struct dist *d, const float *send, float *recv, size_t n) {
    double t0 = now();
    HW_ASSERT(n <= (size_t)2147483647);
    const size_t all = n * (size_t)d->cp;
    if (d->nccl) {
        nccl_alltoall(d->nccl, DIST_CP, send, recv, n, d->cp_rank, d->cp);
        account(d, DIST_KIND_CP_A2A, (double)(d->cp - 1) * n * sizeof(float), t0);
        return;
    }
    const float *hs = down(d, SLOT_A2A_SEND, send, all);
    float *hr = recv_host(d, SLOT_A2A_RECV, recv, all);
    WATCHED("cp_alltoall (Ulysses)",
            MPI_Alltoall(hs, (int)n, MPI_FLOAT, hr, (int)n, MPI_FLOAT, d->c->g[DIST_CP]));
    up(d, SLOT_A2A_RECV, recv, all);
    /* every block but our own leaves this rank */
    account(d, DIST_KIND_CP_A2A, (double)(d->cp - 1) * n * sizeof(float), t0);
}

void dist_alltoall_int(struct dist *d, enum dist_group g, const int *send, int *recv) {
    double t0 = now();
    int p = dist_group_size(d, g);
    WATCHED("alltoall_int", MPI_Alltoall(send, 1, MPI_INT, recv, 1, MPI_INT, comm_of(d, g)));
    account(d, DIST_KIND_EMB_A2A, (double)(p - 1) * sizeof(int), t0);
}

void dist_alltoallv_bytes(struct dist *d, enum dist_group g, const void *send, const int *scount,
                          void *recv, const int *rcount) {
    double t0 = now();
    int p = dist_group_size(d, g), me = dist_group_rank(d, g);
    int *sd = HW_MALLOC(sizeof(int) * 2 * (size_t)p), *rd = sd + p;
    double bytes = 0.0;
    for (int i = 0, so = 0, ro = 0; i < p; i++) {
        sd[i] = so;
        rd[i] = ro;
        HW_ASSERT(scount[i] >= 0 && rcount[i] >= 0 && so <= 2147483647 - scount[i] &&
                  ro <= 2147483647 - rcount[i]);
        so += scount[i];
        ro += rcount[i];
        if (i != me)
            bytes += scount[i];
    }
    WATCHED("alltoallv (sharded embeddings)",
            MPI_Alltoallv(send, scount, sd, MPI_BYTE, recv, rcount, rd, MPI_BYTE, comm_of(d, g)));
    free(sd);
    account(d, DIST_KIND_EMB_A2A, bytes, t0);
}

/* ------------------------------------------------------------------------------------------ */

int64_t dist_h5_fapl(const struct dist *d) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    HW_ASSERT(fapl >= 0);
    /* v1.10 format: checksummed metadata, readable by h5py and h5dump. */
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110);
    if (d && d->world > 1) {
        H5Pset_fapl_mpio(fapl, world_comm(d), MPI_INFO_NULL);
        H5Pset_all_coll_metadata_ops(fapl, 1);
        H5Pset_coll_metadata_write(fapl, 1);
    }
    return fapl;
}

int64_t dist_h5_dxpl(const struct dist *d) {
    hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
    HW_ASSERT(dxpl >= 0);
    if (d && d->world > 1)
        H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE);
    return dxpl;
}
