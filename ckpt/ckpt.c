/* ckpt/ckpt.c -- HDF5 checkpoints (see ckpt.h and docs/checkpoint.md): collective save with
 * per-rank hyperslabs and an atomic publish (tmp, close, fsync, rename, latest), keep-N
 * pruning, rank-local hyperslab reads, verify and info. Owns every HDF5 call on checkpoint
 * files; MPI is reached only through dist/ (property lists and scalar collectives). */
#define _POSIX_C_SOURCE 200809L
#include "ckpt.h"

#include "../core/check.h"
#include "../core/log.h"
#include "../dist/dist.h"

#include <hdf5.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define TENSOR_CHUNK_ELEMS_ 262144    /* float32 elements per chunk: 1 MiB */
#define BYTES_CHUNK_        1048576   /* bytes per chunk of 1-D state/text datasets */
#define VERIFY_BLOCK_ELEMS_ (1 << 24) /* verify reads at most 64 MiB at a time */

static const char *const reserved_roots_[] = {"state", "config", "tokenizer", "model_sig",
                                              "manifest"};

// ------------------------------------------------------------------------------------------
// small helpers

/* HDF5's automatic error printing is switched off inside every public call and restored on
 * the way out, so the caller sees only our one-line messages. */
struct h5quiet_ {
    H5E_auto2_t fn;
    void *data;
};

static void h5_quiet_(struct h5quiet_ *q) {
    H5Eget_auto2(H5E_DEFAULT, &q->fn, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

static void h5_loud_(const struct h5quiet_ *q) {
    H5Eset_auto2(H5E_DEFAULT, q->fn, q->data);
}

/* What the HDF5 error stack says about the last failure. */
struct h5why_ {
    int checksum;    /* a Fletcher32 or metadata checksum failed */
    int sys_errno;   /* "errno = N" of a failed system call (HDF5 puts it in its text), or 0 */
    char first[200]; /* the API-level description */
};

static herr_t h5_walk_(unsigned n, const H5E_error2_t *e, void *p) {
    struct h5why_ *w = p;
    if (e->desc) {
        if (strstr(e->desc, "Fletcher32") || strstr(e->desc, "checksum"))
            w->checksum = 1;
        const char *en = strstr(e->desc, "errno = ");
        if (en && !w->sys_errno)
            w->sys_errno = atoi(en + 8);
        if (n == 0)
            snprintf(w->first, sizeof(w->first), "%s", e->desc);
    }
    return 0;
}

static struct h5why_ h5_why_(void) {
    struct h5why_ w = {0, 0, ""};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, h5_walk_, &w);
    H5Eclear2(H5E_DEFAULT);
    return w;
}

/* Failure of a read of `what` in path: a checksum failure or other corruption. */
static int read_fail_why_(const char *path, const char *what, struct h5why_ w, char *err) {
    if (w.checksum)
        return hw_errf(err, HW_EFORMAT, "%s: %s: checksum mismatch (file is corrupt)", path, what);
    return hw_errf(err, HW_EFORMAT, "%s: %s: cannot read (file is truncated or corrupt: %s)", path,
                   what, w.first[0] ? w.first : "unknown HDF5 error");
}

static int read_fail_(const char *path, const char *what, char *err) {
    return read_fail_why_(path, what, h5_why_(), err);
}

static void h5_close_(hid_t *id, herr_t (*fn)(hid_t)) {
    if (*id >= 0)
        fn(*id);
    *id = -1;
}

static int world_(const struct dist *d) {
    return d ? d->world : 1;
}

static int rank_(const struct dist *d) {
    return d ? d->rank : 0;
}

/* Make every rank return the same status: the worst code wins, and ranks that did not fail
 * themselves get a message naming the path. A no-op on one rank. */
static int agree_(const struct dist *d, int rc, const char *path, char *err) {
    if (world_(d) <= 1)
        return rc;
    int worst = dist_allreduce_max_int(d, rc < 0 ? -rc : 0);
    if (worst == 0)
        return 0;
    if (rc == 0)
        return hw_errf(err, -worst, "%s: failed on another rank (see its message)", path);
    return rc;
}

static int join_(char *out, size_t n, const char *dir, const char *name) {
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/')
        len--;
    int k = snprintf(out, n, "%.*s/%s", (int)len, dir, name);
    return k < 0 || (size_t)k >= n ? -1 : 0;
}

static void fmt_dims_(char *buf, size_t n, int ndim, const int64_t *dims) {
    size_t k = 0;
    buf[0] = '\0';
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "," : "", (long long)dims[i]);
    if (k < n)
        snprintf(buf + k, n - k, "]");
}

static int64_t numel_(int ndim, const int64_t *dims) {
    int64_t p = 1;
    for (int i = 0; i < ndim; i++)
        p *= dims[i];
    return p;
}

static uint64_t fnv_(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ull;
    }
    return h;
}

static void put_le_(unsigned char *p, uint64_t v, int nbytes) {
    for (int i = 0; i < nbytes; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le_(const unsigned char *p, int nbytes) {
    uint64_t v = 0;
    for (int i = 0; i < nbytes; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* "ckpt_<digits>.h5", or a temporary file of it: "ckpt_<digits>.h5.tmp" (written by older
 * builds) or "ckpt_<digits>.h5.tmp-<host>-<pid>". Returns 1 and the step, else 0; *id gets
 * what follows ".tmp" ("" or "-<host>-<pid>"). */
static int parse_name_(const char *s, int64_t *step, int *is_tmp, const char **id) {
    if (strncmp(s, "ckpt_", 5) != 0)
        return 0;
    const char *p = s + 5;
    int64_t v = 0;
    int nd = 0;
    while (*p >= '0' && *p <= '9') {
        if (nd >= 18)
            return 0;
        v = v * 10 + (*p - '0');
        p++;
        nd++;
    }
    if (nd == 0)
        return 0;
    if (strcmp(p, ".h5") == 0)
        *is_tmp = 0;
    else if (strncmp(p, ".h5.tmp", 7) == 0 && (p[7] == '\0' || p[7] == '-'))
        *is_tmp = 1;
    else
        return 0;
    if (id)
        *id = *is_tmp ? p + 7 : "";
    *step = v;
    return 1;
}

/* "latest.tmp" (older builds) or "latest.tmp-<host>-<pid>": 1 and *id as parse_name_. */
static int parse_latest_tmp_(const char *s, const char **id) {
    if (strncmp(s, "latest.tmp", 10) != 0 || (s[10] != '\0' && s[10] != '-'))
        return 0;
    *id = s + 10;
    return 1;
}

/* This host's name as it appears in temporary file names: at most 64 characters, those
 * outside [A-Za-z0-9._] replaced by '_' (so the last '-' of a name precedes the pid). */
static void host_name_(char *out, size_t n) {
    char host[80] = "";
    if (gethostname(host, sizeof(host) - 1) != 0 || !host[0])
        snprintf(host, sizeof(host), "localhost");
    host[64] = '\0';
    for (char *p = host; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_'))
            *p = '_';
    }
    snprintf(out, n, "%s", host);
}

/* The suffix of this process's temporary files: ".tmp-<host>-<pid>". */
static void tmp_suffix_(char *out, size_t n) {
    char host[80];
    host_name_(host, sizeof(host));
    snprintf(out, n, ".tmp-%s-%ld", host, (long)getpid());
}

/* Splits an id "-<host>-<pid>" (see parse_name_): 1 with host and pid, 0 if malformed. */
static int parse_id_(const char *id, char *host, size_t n, long *pid) {
    const char *dash = strrchr(id, '-');
    if (id[0] != '-' || !dash || dash == id || (size_t)(dash - id - 1) >= n || !dash[1])
        return 0;
    long v = 0;
    for (const char *p = dash + 1; *p; p++) {
        if (*p < '0' || *p > '9' || v > 99999999)
            return 0;
        v = v * 10 + (*p - '0');
    }
    if (v <= 0)
        return 0;
    memcpy(host, id + 1, (size_t)(dash - id - 1));
    host[dash - id - 1] = '\0';
    *pid = v;
    return 1;
}

/* 1 if every component of the link path exists, 0 if one is missing, -1 on error. */
static int exists_(hid_t fid, const char *path) {
    char buf[2 * CKPT_NAME_MAX + 16];
    if (strlen(path) >= sizeof(buf))
        return 0;
    strcpy(buf, path);
    for (char *p = buf;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            htri_t e = H5Lexists(fid, buf, H5P_DEFAULT);
            *p = c;
            if (e < 0)
                return -1;
            if (e == 0)
                return 0;
            if (c == '\0')
                return 1;
        }
    }
}

static int is_reserved_root_(const char *group) {
    size_t len = strcspn(group, "/");
    for (size_t i = 0; i < sizeof(reserved_roots_) / sizeof(reserved_roots_[0]); i++)
        if (strlen(reserved_roots_[i]) == len && strncmp(group, reserved_roots_[i], len) == 0)
            return 1;
    return 0;
}

// ------------------------------------------------------------------------------------------
// save: argument checks

static int check_group_name_(const char *g) {
    size_t n = g ? strlen(g) : 0;
    if (n == 0 || n >= CKPT_NAME_MAX || g[0] == '/' || g[n - 1] == '/' || strstr(g, "//"))
        return 0;
    for (const char *p = g; *p;) {
        size_t len = strcspn(p, "/");
        if ((len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            return 0;
        p += len;
        if (*p == '/')
            p++;
    }
    return !is_reserved_root_(g);
}

static int check_tensor_name_(const char *s) {
    size_t n = s ? strlen(s) : 0;
    return n > 0 && n < CKPT_NAME_MAX && !strchr(s, '/') && strcmp(s, ".") != 0 &&
           strcmp(s, "..") != 0;
}

/* Rank-local checks of names, dims and this rank's slabs. */
static int check_args_(const struct ckpt_group *groups, int n_groups, const struct ckpt_meta *m,
                       int64_t step, const char *path, char *err) {
    if (step < 0 || step > CKPT_MAX_STEP)
        return hw_errf(err, HW_EMISMATCH, "%s: invalid step %lld (expected 0..%lld)", path,
                       (long long)step, CKPT_MAX_STEP);
    if (m && m->step != step)
        return hw_errf(err, HW_EMISMATCH, "%s: meta.step %lld differs from step %lld", path,
                       (long long)m->step, (long long)step);
    if (m && (m->n_cursor < 0 || m->n_cursor > CKPT_MAX_CURSOR))
        return hw_errf(err, HW_EMISMATCH, "%s: n_cursor %d outside 0..%d", path, m->n_cursor,
                       CKPT_MAX_CURSOR);
    /* a checkpoint that its readers would refuse is not written */
    if (m && (m->tokens_seen < 0 || m->tokens_seen > CKPT_MAX_COUNT))
        return hw_errf(err, HW_EMISMATCH, "%s: meta.tokens_seen %lld outside 0..%lld", path,
                       (long long)m->tokens_seen, CKPT_MAX_COUNT);
    for (int i = 0; m && i < m->n_cursor; i++)
        if (m->cursor[i] < 0 || m->cursor[i] > CKPT_MAX_COUNT)
            return hw_errf(err, HW_EMISMATCH, "%s: meta.cursor[%d] %lld outside 0..%lld", path, i,
                           (long long)m->cursor[i], CKPT_MAX_COUNT);
    if (n_groups < 0 || (n_groups > 0 && !groups))
        return hw_errf(err, HW_EMISMATCH, "%s: invalid group list", path);
    for (int g = 0; g < n_groups; g++) {
        const struct ckpt_group *gr = &groups[g];
        if (!check_group_name_(gr->name))
            return hw_errf(err, HW_EMISMATCH, "%s: invalid group name '%s'", path,
                           gr->name ? gr->name : "(null)");
        for (int h = 0; h < g; h++)
            if (strcmp(groups[h].name, gr->name) == 0)
                return hw_errf(err, HW_EMISMATCH, "%s: group '%s' given twice", path, gr->name);
        if (gr->n < 0 || (gr->n > 0 && !gr->t))
            return hw_errf(err, HW_EMISMATCH, "%s: group '%s': invalid tensor list", path,
                           gr->name);
        for (int i = 0; i < gr->n; i++) {
            const struct ckpt_tensor *t = &gr->t[i];
            if (!check_tensor_name_(t->name))
                return hw_errf(err, HW_EMISMATCH, "%s: %s: invalid tensor name '%s'", path,
                               gr->name, t->name ? t->name : "(null)");
            for (int j = 0; j < i; j++)
                if (strcmp(gr->t[j].name, t->name) == 0)
                    return hw_errf(err, HW_EMISMATCH, "%s: %s/%s: tensor given twice", path,
                                   gr->name, t->name);
            if (t->ndim < 1 || t->ndim > CKPT_MAX_DIMS)
                return hw_errf(err, HW_EMISMATCH, "%s: %s/%s: ndim %d outside 1..%d", path,
                               gr->name, t->name, t->ndim, CKPT_MAX_DIMS);
            for (int k = 0; k < t->ndim; k++) {
                if (t->shape[k] < 1)
                    return hw_errf(err, HW_EMISMATCH, "%s: %s/%s: shape[%d] = %lld < 1", path,
                                   gr->name, t->name, k, (long long)t->shape[k]);
                if (t->write && (t->offset[k] < 0 || t->count[k] < 0 ||
                                 t->offset[k] + t->count[k] > t->shape[k]))
                    return hw_errf(err, HW_EMISMATCH,
                                   "%s: %s/%s: slab offset %lld count %lld outside dim %d of "
                                   "size %lld",
                                   path, gr->name, t->name, (long long)t->offset[k],
                                   (long long)t->count[k], k, (long long)t->shape[k]);
            }
            if (t->write && numel_(t->ndim, t->count) > 0 && !t->data)
                return hw_errf(err, HW_EMISMATCH, "%s: %s/%s: data is NULL", path, gr->name,
                               t->name);
        }
    }
    return 0;
}

/* Collective: the tensor descriptions (names, shapes, order), step and keep must be the same
 * on every rank, or the ranks would create different datasets and hang; and each tensor's
 * written slabs must add up to its size (a missing or doubled replica flag). */
static int check_ranks_(const struct dist *d, const struct ckpt_group *groups, int n_groups,
                        int64_t step, int keep, const char *path, char *err) {
    if (world_(d) > 1) {
        uint64_t h = 1469598103934665603ull;
        h = fnv_(h, &step, sizeof(step));
        h = fnv_(h, &keep, sizeof(keep));
        h = fnv_(h, &n_groups, sizeof(n_groups));
        for (int g = 0; g < n_groups; g++) {
            h = fnv_(h, groups[g].name, strlen(groups[g].name) + 1);
            h = fnv_(h, &groups[g].n, sizeof(groups[g].n));
            for (int i = 0; i < groups[g].n; i++) {
                const struct ckpt_tensor *t = &groups[g].t[i];
                h = fnv_(h, t->name, strlen(t->name) + 1);
                h = fnv_(h, &t->ndim, sizeof(t->ndim));
                h = fnv_(h, t->shape, sizeof(t->shape[0]) * (size_t)t->ndim);
            }
        }
        int v = (int)(h & 0x7fffffff);
        int hi = dist_allreduce_max_int(d, v), lo = -dist_allreduce_max_int(d, -v);
        if (hi != lo)
            return hw_errf(err, HW_EMISMATCH,
                           "%s: ranks disagree on the tensor list, shapes, step or keep", path);
    }
    int rc = 0;
    for (int g = 0; g < n_groups; g++) {
        for (int i = 0; i < groups[g].n; i++) {
            const struct ckpt_tensor *t = &groups[g].t[i];
            double mine = t->write ? (double)numel_(t->ndim, t->count) : 0.0;
            double total = world_(d) > 1 ? dist_allreduce_sum_double(d, mine) : mine;
            double want = (double)numel_(t->ndim, t->shape);
            if (total != want && rc == 0)
                rc = hw_errf(err, HW_EMISMATCH,
                             "%s: %s/%s: ranks write %.0f of %.0f elements (check the write "
                             "flags and slabs)",
                             path, groups[g].name, t->name, total, want);
        }
    }
    return rc;
}

// ------------------------------------------------------------------------------------------
// save: HDF5 writers (all collective: every rank creates every object with identical args)

/* Chunk of at most `limit` elements, whole trailing rows when a row fits. The split
 * dimension is divided evenly: HDF5 stores edge chunks at full size, so 600 rows with room
 * for 524 become 2 x 300, not 524 + 76 padded to 524. */
static void chunk_dims_(int ndim, const hsize_t *dims, hsize_t *chunk, hsize_t limit) {
    for (int i = 0; i < ndim; i++)
        chunk[i] = dims[i];
    for (int i = 0; i < ndim; i++) {
        hsize_t inner = 1;
        for (int j = i + 1; j < ndim; j++)
            inner = inner > limit ? limit + 1 : inner * chunk[j];
        if (inner <= limit && chunk[i] <= limit / inner)
            break;
        hsize_t cap = inner >= limit ? 1 : limit / inner;
        hsize_t pieces = (dims[i] + cap - 1) / cap;
        chunk[i] = (dims[i] + pieces - 1) / pieces;
    }
}

static hid_t dcpl_(int ndim, const hsize_t *chunk) {
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (dcpl < 0)
        return -1;
    if (H5Pset_obj_track_times(dcpl, 0) < 0 || (chunk && H5Pset_chunk(dcpl, ndim, chunk) < 0) ||
        (chunk && H5Pset_fletcher32(dcpl) < 0) ||
        (chunk && H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) < 0)) {
        H5Pclose(dcpl);
        return -1;
    }
    return dcpl;
}

/* The groups of the tensors (and their parents) and /state, created up front without
 * modification times, as the datasets are, so that two saves of the same state are the same
 * bytes (a save in the background and one in the foreground can be compared). */
static int make_groups_(hid_t fid, const struct ckpt_group *groups, int n_groups) {
    hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
    int rc = gcpl < 0 || H5Pset_obj_track_times(gcpl, 0) < 0 ? -1 : 0;
    for (int g = -1; g < n_groups && rc == 0; g++) {
        char path[CKPT_NAME_MAX + 2];
        snprintf(path, sizeof(path), "%s", g < 0 ? "state" : groups[g].name);
        for (char *p = path;; p++) {
            const char c = *p;
            if (c != '/' && c != '\0')
                continue;
            *p = '\0';
            if (!exists_(fid, path)) {
                hid_t id = H5Gcreate2(fid, path, H5P_DEFAULT, gcpl, H5P_DEFAULT);
                if (id < 0) {
                    rc = -1;
                    break;
                }
                H5Gclose(id);
            }
            *p = c;
            if (!c)
                break;
        }
    }
    if (gcpl >= 0)
        H5Pclose(gcpl);
    return rc;
}

static hid_t lcpl_(void) {
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    if (lcpl >= 0 && H5Pset_create_intermediate_group(lcpl, 1) < 0) {
        H5Pclose(lcpl);
        return -1;
    }
    return lcpl;
}

/* Free bytes in the directory of path, or -1 if unknown. */
static double free_bytes_(const char *path) {
    char dir[CKPT_PATH_LEN];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    struct statvfs sv;
    if (statvfs(dir, &sv) != 0)
        return -1.0;
    return (double)sv.f_bavail * (double)sv.f_frsize;
}

/* A failed `action` ("cannot write model/x") on path, in one line. HDF5's own message for a
 * full disk is "file write failed" at best, so the system error is looked for: the "errno = N"
 * HDF5 records for a failed system call, else errno as the failed call left it (sys_errno),
 * else, for an HDF5 failure without a system error (guess), the free space: under 1 MiB
 * counts as full. */
static int io_fail_(const char *path, const char *action, int sys_errno, struct h5why_ w, int guess,
                    char *err) {
    int e = w.sys_errno ? w.sys_errno : sys_errno;
    int space = e == ENOSPC || e == EFBIG;
#ifdef EDQUOT
    space = space || e == EDQUOT;
#endif
    double avail = free_bytes_(path);
    if (!space && guess && !w.sys_errno && avail >= 0 && avail < 1048576.0)
        e = ENOSPC, space = 1;
    if (e == EFBIG)
        return hw_errf(err, HW_EIO,
                       "%s: %s: file too large: the file-size limit (ulimit -f, RLIMIT_FSIZE) "
                       "was reached (%s)",
                       path, action, strerror(EFBIG));
#ifdef EDQUOT
    if (e == EDQUOT)
        return hw_errf(err, HW_EIO,
                       "%s: %s: no space left on device for this user: disk quota exceeded (%s)",
                       path, action, strerror(EDQUOT));
#endif
    if (space)
        return hw_errf(err, HW_EIO, "%s: %s: no space left on device (%.1f MB free there; %s)",
                       path, action, avail > 0 ? avail / 1e6 : 0.0, strerror(ENOSPC));
    return hw_errf(err, HW_EIO, "%s: %s: %s", path, action,
                   w.first[0] ? w.first : "unknown HDF5 error");
}

/* A failed system call with errno e, as io_fail_. */
static int sys_fail_(const char *path, const char *action, int e, char *err) {
    struct h5why_ w = {0, 0, ""};
    snprintf(w.first, sizeof(w.first), "%s", strerror(e));
    return io_fail_(path, action, e, w, 0, err);
}

/* Call right after the failing HDF5 call, before anything else can change errno. */
static int write_fail_(const char *tmp, const char *what, char *err) {
    int e = errno;
    char action[2 * CKPT_NAME_MAX + 32];
    snprintf(action, sizeof(action), "cannot write %s", what);
    return io_fail_(tmp, action, e, h5_why_(), 1, err);
}

/* Create /gname/t->name and write this rank's slab (or nothing, as a replica). */
static int write_tensor_(hid_t fid, hid_t dxpl, const char *gname, const struct ckpt_tensor *t,
                         const char *tmp, char *err) {
    char dname[2 * CKPT_NAME_MAX + 2];
    hsize_t dims[CKPT_MAX_DIMS], chunk[CKPT_MAX_DIMS], start[CKPT_MAX_DIMS], cnt[CKPT_MAX_DIMS];
    hid_t dcpl = -1, lcpl = -1, fspace = -1, mspace = -1, dset = -1;
    int rc = 0;
    float dummy = 0.0f;

    snprintf(dname, sizeof(dname), "%s/%s", gname, t->name);
    for (int i = 0; i < t->ndim; i++) {
        dims[i] = (hsize_t)t->shape[i];
        start[i] = (hsize_t)t->offset[i];
        cnt[i] = (hsize_t)t->count[i];
    }
    chunk_dims_(t->ndim, dims, chunk, TENSOR_CHUNK_ELEMS_);
    dcpl = dcpl_(t->ndim, chunk);
    lcpl = lcpl_();
    fspace = H5Screate_simple(t->ndim, dims, NULL);
    if (dcpl < 0 || lcpl < 0 || fspace < 0) {
        rc = write_fail_(tmp, dname, err);
        goto out;
    }
    dset = H5Dcreate2(fid, dname, H5T_IEEE_F32LE, fspace, lcpl, dcpl, H5P_DEFAULT);
    if (dset < 0) {
        rc = write_fail_(tmp, dname, err);
        goto out;
    }
    int64_t n = t->write ? numel_(t->ndim, t->count) : 0;
    herr_t sel;
    if (n > 0) {
        sel = H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, cnt, NULL);
        mspace = H5Screate_simple(t->ndim, cnt, NULL);
    } else {
        hsize_t one = 1;
        sel = H5Sselect_none(fspace);
        mspace = H5Screate_simple(1, &one, NULL);
        if (mspace >= 0 && H5Sselect_none(mspace) < 0)
            sel = -1;
    }
    if (sel < 0 || mspace < 0 ||
        H5Dwrite(dset, H5T_NATIVE_FLOAT, mspace, fspace, dxpl, n > 0 ? (void *)t->data : &dummy) <
            0)
        rc = write_fail_(tmp, dname, err);
out:
    h5_close_(&dset, H5Dclose);
    h5_close_(&mspace, H5Sclose);
    h5_close_(&fspace, H5Sclose);
    h5_close_(&lcpl, H5Pclose);
    h5_close_(&dcpl, H5Pclose);
    return rc;
}

/* A 1-D dataset of n elements (n may be 0), chunked + Fletcher32; only `writer` writes. */
static int write_1d_(hid_t fid, hid_t dxpl, const char *name, hid_t ftype, hid_t mtype, hsize_t n,
                     const void *data, int writer, const char *tmp, char *err) {
    size_t esz = H5Tget_size(ftype);
    hsize_t maxd = n > 0 ? n : H5S_UNLIMITED;
    hsize_t limit = BYTES_CHUNK_ / (esz ? esz : 1);
    hsize_t chunk = n == 0 ? 1 : (n < limit ? n : limit);
    hid_t dcpl = dcpl_(1, &chunk), lcpl = lcpl_(), fspace = H5Screate_simple(1, &n, &maxd);
    hid_t mspace = -1, dset = -1;
    int rc = 0;
    char dummy = 0;
    if (dcpl < 0 || lcpl < 0 || fspace < 0) {
        rc = write_fail_(tmp, name, err);
        goto out;
    }
    dset = H5Dcreate2(fid, name, ftype, fspace, lcpl, dcpl, H5P_DEFAULT);
    if (dset < 0) {
        rc = write_fail_(tmp, name, err);
        goto out;
    }
    if (n == 0)
        goto out; /* same on every rank, so skipping the collective write is safe */
    mspace = H5Screate_simple(1, &n, NULL);
    if (mspace < 0 || (!writer && (H5Sselect_none(fspace) < 0 || H5Sselect_none(mspace) < 0)) ||
        H5Dwrite(dset, mtype, mspace, fspace, dxpl, writer ? data : (const void *)&dummy) < 0)
        rc = write_fail_(tmp, name, err);
out:
    h5_close_(&dset, H5Dclose);
    h5_close_(&mspace, H5Sclose);
    h5_close_(&fspace, H5Sclose);
    h5_close_(&lcpl, H5Pclose);
    h5_close_(&dcpl, H5Pclose);
    return rc;
}

static int write_scalar_i64_(hid_t fid, hid_t dxpl, const char *name, int64_t v, int writer,
                             const char *tmp, char *err) {
    hid_t dcpl = dcpl_(0, NULL), lcpl = lcpl_(), fspace = H5Screate(H5S_SCALAR);
    hid_t mspace = H5Screate(H5S_SCALAR), dset = -1;
    int rc = 0;
    if (dcpl < 0 || lcpl < 0 || fspace < 0 || mspace < 0) {
        rc = write_fail_(tmp, name, err);
        goto out;
    }
    dset = H5Dcreate2(fid, name, H5T_STD_I64LE, fspace, lcpl, dcpl, H5P_DEFAULT);
    if (dset < 0 || (!writer && (H5Sselect_none(fspace) < 0 || H5Sselect_none(mspace) < 0)) ||
        H5Dwrite(dset, H5T_NATIVE_INT64, mspace, fspace, dxpl, &v) < 0)
        rc = write_fail_(tmp, name, err);
out:
    h5_close_(&dset, H5Dclose);
    h5_close_(&mspace, H5Sclose);
    h5_close_(&fspace, H5Sclose);
    h5_close_(&lcpl, H5Pclose);
    h5_close_(&dcpl, H5Pclose);
    return rc;
}

/* Root attributes; H5Awrite is collective and every rank passes the same value. */
static int write_attr_(hid_t fid, const char *name, hid_t ftype, hid_t mtype, const void *v) {
    hid_t space = H5Screate(H5S_SCALAR), a = -1;
    int ok = space >= 0;
    if (ok)
        a = H5Acreate2(fid, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
    ok = ok && a >= 0 && H5Awrite(a, mtype, v) >= 0;
    h5_close_(&a, H5Aclose);
    h5_close_(&space, H5Sclose);
    return ok ? 0 : -1;
}

static int write_attrs_(hid_t fid, int64_t step, int64_t tokens_seen, int world, const char *tmp,
                        char *err) {
    int32_t version = CKPT_FORMAT_VERSION, w = world;
    hid_t st = H5Tcopy(H5T_C_S1);
    int ok = st >= 0 && H5Tset_size(st, strlen(CKPT_FORMAT) + 1) >= 0 &&
             H5Tset_strpad(st, H5T_STR_NULLTERM) >= 0;
    ok = ok && write_attr_(fid, "format", st, st, CKPT_FORMAT) == 0;
    ok = ok && write_attr_(fid, "format_version", H5T_STD_I32LE, H5T_NATIVE_INT32, &version) == 0;
    ok = ok && write_attr_(fid, "step", H5T_STD_I64LE, H5T_NATIVE_INT64, &step) == 0;
    ok = ok && write_attr_(fid, "tokens_seen", H5T_STD_I64LE, H5T_NATIVE_INT64, &tokens_seen) == 0;
    ok = ok && write_attr_(fid, "world", H5T_STD_I32LE, H5T_NATIVE_INT32, &w) == 0;
    h5_close_(&st, H5Tclose);
    return ok ? 0 : write_fail_(tmp, "root attributes", err);
}

/* /manifest: compound {group: S[G], name: S[N], ndim: i32, shape: i64[4]}, little-endian and
 * packed; the memory buffer is laid out exactly like the file type so no conversion happens
 * (a conversion would force independent I/O, which filtered datasets do not allow). */
struct manifest_type_ {
    hid_t type, sg, sn, arr;
    size_t g, n, row; /* string sizes and row size in bytes */
};

static void manifest_type_free_(struct manifest_type_ *mt) {
    h5_close_(&mt->type, H5Tclose);
    h5_close_(&mt->sg, H5Tclose);
    h5_close_(&mt->sn, H5Tclose);
    h5_close_(&mt->arr, H5Tclose);
}

static int manifest_type_(struct manifest_type_ *mt, size_t g, size_t n) {
    hsize_t four = CKPT_MAX_DIMS;
    mt->g = g;
    mt->n = n;
    mt->row = g + n + 4 + 8 * CKPT_MAX_DIMS;
    mt->sg = H5Tcopy(H5T_C_S1);
    mt->sn = H5Tcopy(H5T_C_S1);
    mt->arr = H5Tarray_create2(H5T_STD_I64LE, 1, &four);
    mt->type = H5Tcreate(H5T_COMPOUND, mt->row);
    if (mt->sg < 0 || mt->sn < 0 || mt->arr < 0 || mt->type < 0 || H5Tset_size(mt->sg, g) < 0 ||
        H5Tset_size(mt->sn, n) < 0 || H5Tset_strpad(mt->sg, H5T_STR_NULLTERM) < 0 ||
        H5Tset_strpad(mt->sn, H5T_STR_NULLTERM) < 0 ||
        H5Tinsert(mt->type, "group", 0, mt->sg) < 0 || H5Tinsert(mt->type, "name", g, mt->sn) < 0 ||
        H5Tinsert(mt->type, "ndim", g + n, H5T_STD_I32LE) < 0 ||
        H5Tinsert(mt->type, "shape", g + n + 4, mt->arr) < 0) {
        manifest_type_free_(mt);
        return -1;
    }
    return 0;
}

static int write_manifest_(hid_t fid, hid_t dxpl, const struct ckpt_group *groups, int n_groups,
                           int writer, const char *tmp, char *err) {
    size_t g = 2, n = 2, rows = 0;
    for (int i = 0; i < n_groups; i++) {
        if (strlen(groups[i].name) + 1 > g)
            g = strlen(groups[i].name) + 1;
        for (int j = 0; j < groups[i].n; j++) {
            if (strlen(groups[i].t[j].name) + 1 > n)
                n = strlen(groups[i].t[j].name) + 1;
            rows++;
        }
    }
    struct manifest_type_ mt = {-1, -1, -1, -1, 0, 0, 0};
    if (manifest_type_(&mt, g, n) < 0)
        return write_fail_(tmp, "manifest", err);
    unsigned char *buf = HW_CALLOC(rows ? rows : 1, mt.row);
    size_t r = 0;
    for (int i = 0; i < n_groups; i++) {
        for (int j = 0; j < groups[i].n; j++, r++) {
            const struct ckpt_tensor *t = &groups[i].t[j];
            unsigned char *p = buf + r * mt.row;
            memcpy(p, groups[i].name, strlen(groups[i].name));
            memcpy(p + g, t->name, strlen(t->name));
            put_le_(p + g + n, (uint64_t)t->ndim, 4);
            for (int k = 0; k < CKPT_MAX_DIMS; k++)
                put_le_(p + g + n + 4 + 8 * k, (uint64_t)(k < t->ndim ? t->shape[k] : 0), 8);
        }
    }
    int rc = write_1d_(fid, dxpl, "manifest", mt.type, mt.type, rows, buf, writer, tmp, err);
    free(buf);
    manifest_type_free_(&mt);
    return rc;
}

/* Meta sizes and values as rank 0 has them, so every rank creates identical datasets. */
struct meta_wire_ {
    int64_t tokens_seen, n_cursor, len[3];
};

static int write_meta_(const struct dist *d, hid_t fid, hid_t dxpl, int64_t step,
                       const struct ckpt_meta *m, const struct meta_wire_ *w, const char *tmp,
                       char *err) {
    int writer = rank_(d) == 0;
    static const char *const text_names[3] = {"config", "tokenizer", "model_sig"};
    const char *texts[3] = {m ? m->config_yaml : NULL, m ? m->tokenizer_json : NULL,
                            m ? m->model_sig : NULL};
    uint64_t rng[4] = {0, 0, 0, 0};
    if (m)
        memcpy(rng, m->rng, sizeof(rng));
    int rc = write_scalar_i64_(fid, dxpl, "state/step", step, writer, tmp, err);
    if (!rc)
        rc = write_scalar_i64_(fid, dxpl, "state/tokens_seen", w->tokens_seen, writer, tmp, err);
    if (!rc)
        rc = write_1d_(fid, dxpl, "state/rng", H5T_STD_U64LE, H5T_NATIVE_UINT64, 4, rng, writer,
                       tmp, err);
    if (!rc)
        rc = write_1d_(fid, dxpl, "state/cursor", H5T_STD_I64LE, H5T_NATIVE_INT64,
                       (hsize_t)w->n_cursor, m ? m->cursor : NULL, writer, tmp, err);
    for (int i = 0; i < 3 && !rc; i++)
        rc = write_1d_(fid, dxpl, text_names[i], H5T_STD_U8LE, H5T_NATIVE_UCHAR, (hsize_t)w->len[i],
                       texts[i], writer, tmp, err);
    return rc;
}

// ------------------------------------------------------------------------------------------
// save: publish and prune (rank 0, POSIX)

static int mkdirs_(const char *dir, char *err) {
    char buf[CKPT_PATH_LEN];
    if (strlen(dir) >= sizeof(buf))
        return hw_errf(err, HW_EIO, "%.200s...: path too long", dir);
    strcpy(buf, dir);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            struct stat st;
            if (stat(buf, &st) != 0) {
                if (errno != ENOENT || (mkdir(buf, 0777) != 0 && errno != EEXIST))
                    return hw_errf(err, HW_EIO, "%s: cannot create directory: %s", buf,
                                   strerror(errno));
            } else if (!S_ISDIR(st.st_mode)) {
                return hw_errf(err, HW_EIO, "%s: cannot create directory: %s", dir,
                               strerror(ENOTDIR));
            }
            *p = c;
            if (c == '\0')
                break;
        }
    }
    return 0;
}

static int fsync_path_(const char *path, int dir) {
    int fd = open(path, O_RDONLY | (dir ? O_DIRECTORY : 0));
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    /* some file systems cannot fsync a directory; the rename is still atomic there */
    if (rc != 0 && dir && (errno == EINVAL || errno == ENOTSUP))
        rc = 0;
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

static double mtime_(const struct stat *st) {
    return (double)st->st_mtim.tv_sec + 1e-9 * (double)st->st_mtim.tv_nsec;
}

/* open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW). The names created this way carry this
 * process's host and pid, so a file already there is a leftover of an earlier process with
 * the same pid (or something planted): it is removed (a link itself, never its target) and
 * the creation tried once more. A descriptor, or HW_EIO with err. */
static int create_excl_(const char *path, char *err) {
    for (int tries = 0;; tries++) {
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
        if (fd >= 0)
            return fd;
        int e = errno;
        if (e != EEXIST || tries > 0)
            return sys_fail_(path, "cannot create", e, err);
        if (unlink(path) != 0) {
            e = errno;
            return hw_errf(err, HW_EIO,
                           "%s: cannot create: %s (and cannot remove what is there: %s)", path,
                           strerror(EEXIST), strerror(e));
        }
    }
}

/* Creates path (see create_excl_) holding "name\n", fsynced; removed again on failure. */
static int write_pointer_(const char *path, const char *name, char *err) {
    int fd = create_excl_(path, err);
    if (fd < 0)
        return fd;
    char line[CKPT_NAME_MAX + 2];
    int len = snprintf(line, sizeof(line), "%s\n", name), rc = 0;
    ssize_t w = write(fd, line, (size_t)len);
    if (w != (ssize_t)len || fsync(fd) != 0)
        rc = sys_fail_(path, "cannot write", w >= 0 && w != (ssize_t)len ? ENOSPC : errno, err);
    if (close(fd) != 0 && rc == 0)
        rc = sys_fail_(path, "cannot write", errno, err);
    if (rc)
        unlink(path);
    return rc;
}

/* What a pointer file (`latest` or a latest temp file) says. */
struct pointer_ {
    int exists;   /* a regular file is there */
    double mtime; /* its modification time */
    int valid;    /* it names a checkpoint file that exists */
    int64_t step;
    char name[CKPT_NAME_MAX];
};

/* Reads the pointer file at path (follow: through a link). 0 with p filled (a missing file
 * gives exists = 0), -1 with errno when it cannot be read. */
static int read_pointer_(const char *dir, const char *path, int follow, struct pointer_ *p) {
    memset(p, 0, sizeof(*p));
    p->step = -1;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW));
    if (fd < 0)
        return errno == ENOENT || errno == ELOOP ? 0 : -1;
    struct stat st;
    ssize_t n = -1;
    char buf[CKPT_NAME_MAX];
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        p->exists = 1;
        p->mtime = mtime_(&st);
        n = read(fd, buf, sizeof(buf) - 1);
    }
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    int tmp;
    char full[CKPT_PATH_LEN];
    struct stat fs;
    if (parse_name_(buf, &p->step, &tmp, NULL) && !tmp &&
        join_(full, sizeof(full), dir, buf) == 0 && stat(full, &fs) == 0 && S_ISREG(fs.st_mode)) {
        p->valid = 1;
        snprintf(p->name, sizeof(p->name), "%s", buf);
    } else {
        p->step = -1;
    }
    return 0;
}

/* The checkpoint to resume from in dir (see ckpt_latest): 1 with its file name in name and,
 * in via, the latest temp file that named it (else ""); 0 if there is none; HW_EIO. */
static int resolve_latest_(const char *dir, char *name, char *via, char *err) {
    char path[CKPT_PATH_LEN];
    struct pointer_ lp, tp;
    via[0] = name[0] = '\0';
    if (join_(path, sizeof(path), dir, "latest"))
        return hw_errf(err, HW_EIO, "%.200s...: path too long", dir);
    if (read_pointer_(dir, path, 1, &lp) != 0)
        return hw_errf(err, HW_EIO, "%s: cannot read: %s", path, strerror(errno));
    DIR *dp = opendir(dir);
    if (!dp) {
        if (lp.valid) { /* a directory that cannot be listed: trust latest */
            snprintf(name, CKPT_NAME_MAX, "%s", lp.name);
            return 1;
        }
        if (errno == ENOENT)
            return 0;
        return hw_errf(err, HW_EIO, "%s: cannot list directory: %s", dir, strerror(errno));
    }
    int64_t best = -1, best_tmp = -1;
    char best_name[CKPT_NAME_MAX] = "", tmp_name[CKPT_NAME_MAX] = "";
    struct dirent *e;
    while ((e = readdir(dp)) != NULL) {
        int64_t s;
        int is_tmp;
        const char *id;
        struct stat st;
        if (join_(path, sizeof(path), dir, e->d_name))
            continue;
        if (parse_name_(e->d_name, &s, &is_tmp, NULL)) {
            if (!is_tmp && s > best && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
                best = s;
                snprintf(best_name, sizeof(best_name), "%s", e->d_name);
            }
        } else if (parse_latest_tmp_(e->d_name, &id) && read_pointer_(dir, path, 0, &tp) == 0 &&
                   tp.valid && tp.step > best_tmp && (!lp.exists || tp.mtime >= lp.mtime)) {
            /* written after latest: the pointer of a newer save, or of one in progress */
            best_tmp = tp.step;
            snprintf(tmp_name, sizeof(tmp_name), "%s", tp.name);
            snprintf(via, CKPT_NAME_MAX, "%s", e->d_name);
        }
    }
    closedir(dp);
    if (lp.valid && best_tmp > lp.step) {
        snprintf(name, CKPT_NAME_MAX, "%s", tmp_name);
        return 1;
    }
    via[0] = '\0';
    if (lp.valid) {
        snprintf(name, CKPT_NAME_MAX, "%s", lp.name);
        return 1;
    }
    /* no usable latest: the highest step (a temp file can only name one of these) */
    if (best < 0)
        return 0;
    snprintf(name, CKPT_NAME_MAX, "%s", best_name);
    return 1;
}

/* Whether the temporary file at path, whose name carries the writer id ("-<host>-<pid>", or ""
 * for names without one), is left over from a writer that is gone. A writer on this host is
 * known by its pid: gone when no such process exists (or it is this process, which writes
 * nothing while it cleans up). A writer on another host cannot be asked: its file counts as
 * stale once untouched for CKPT_STALE_AGE_S (a live writer writes all the time). The same
 * holds for names without an id. Directories are never stale. why gets the reason. */
static int stale_(const char *path, const char *id, const char *me, double now, char *why,
                  size_t n) {
    struct stat st;
    if (lstat(path, &st) != 0 || S_ISDIR(st.st_mode))
        return 0;
    char host[80];
    long pid;
    if (parse_id_(id, host, sizeof(host), &pid) && strcmp(host, me) == 0) {
        if (pid == (long)getpid()) {
            snprintf(why, n, "left by an earlier save of this process");
            return 1;
        }
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            return 0; /* alive (EPERM: alive, another user's) */
        snprintf(why, n, "its writer, process %ld on this host, is gone", pid);
        return 1;
    }
    double age = now - mtime_(&st);
    if (age < CKPT_STALE_AGE_S)
        return 0;
    snprintf(why, n, "untouched for %.0f s, more than %d s", age, CKPT_STALE_AGE_S);
    return 1;
}

/* Rank 0, before a save: removes the temporary files of writers that are gone (stale_), so
 * they neither pile up nor take the space the save needs; older builds' ckpt_N.h5.tmp count as
 * stale for N < step (their own rule). A stale latest temp file that names a newer complete
 * checkpoint than `latest` (its save was killed between its two renames) is renamed over
 * `latest` instead, finishing that save. Best effort: a failure is a warning. */
static void clean_stale_(const char *dir, int64_t step) {
    char me[80], name[CKPT_NAME_MAX], via[CKPT_NAME_MAX], err[HW_ERR_LEN], why[128];
    char path[CKPT_PATH_LEN], latest[CKPT_PATH_LEN];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    const double now = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
    host_name_(me, sizeof(me));
    const char *id;
    if (resolve_latest_(dir, name, via, err) == 1 && via[0] && parse_latest_tmp_(via, &id) &&
        join_(path, sizeof(path), dir, via) == 0 &&
        join_(latest, sizeof(latest), dir, "latest") == 0 &&
        stale_(path, id, me, now, why, sizeof(why))) {
        if (rename(path, latest) == 0 && fsync_path_(dir, 1) == 0)
            log_info("%s: now names %s, finishing a save that was interrupted (%s)", latest, name,
                     why);
        else
            log_warn("%s: cannot finish an interrupted save (rename %s): %s", latest, path,
                     strerror(errno));
    }
    DIR *dp = opendir(dir);
    if (!dp)
        return;
    struct dirent *e;
    while ((e = readdir(dp)) != NULL) {
        int64_t s;
        int is_tmp, older = 0;
        if (parse_name_(e->d_name, &s, &is_tmp, &id)) {
            if (!is_tmp)
                continue;
            older = !id[0] && s < step;
        } else if (!parse_latest_tmp_(e->d_name, &id)) {
            continue;
        }
        struct stat st;
        if (join_(path, sizeof(path), dir, e->d_name) || lstat(path, &st) != 0 ||
            S_ISDIR(st.st_mode))
            continue;
        if (older)
            snprintf(why, sizeof(why), "an older build's temporary file of an earlier step");
        else if (!stale_(path, id, me, now, why, sizeof(why)))
            continue;
        if (unlink(path) == 0)
            log_info("%s: removed a stale temporary file (%s)", path, why);
        else if (errno != ENOENT)
            log_warn("%s: cannot delete stale temporary file: %s", path, strerror(errno));
    }
    closedir(dp);
}

/* Publishes the closed tmp file as final and points dir/latest at it. The new `latest` is
 * written first, to a temp file (suffix: this writer's), and fsynced; then the checkpoint and
 * `latest` are renamed one right after the other, and the directory is fsynced. A kill
 * between the two renames leaves `latest` one checkpoint behind with the temp file naming the
 * new one: ckpt_latest reads it, and the next save finishes the rename (clean_stale_). */
static int publish_(const char *dir, const char *tmp, const char *final, const char *fname,
                    const char *suffix, char *err) {
    char latest[CKPT_PATH_LEN], ltmp[CKPT_PATH_LEN], lname[CKPT_NAME_MAX];
    snprintf(lname, sizeof(lname), "latest%s", suffix);
    if (join_(latest, sizeof(latest), dir, "latest") || join_(ltmp, sizeof(ltmp), dir, lname))
        return hw_errf(err, HW_EIO, "%s: path too long", dir);
    if (fsync_path_(tmp, 0) != 0)
        return sys_fail_(tmp, "cannot fsync", errno, err);
    int rc = write_pointer_(ltmp, fname, err);
    if (rc)
        return rc;
    if (rename(tmp, final) != 0) {
        rc = hw_errf(err, HW_EIO, "%s: cannot rename from %s: %s", final, tmp, strerror(errno));
        unlink(ltmp);
        return rc;
    }
    if (rename(ltmp, latest) != 0) {
        rc = hw_errf(err, HW_EIO, "%s: cannot rename from %s: %s", latest, ltmp, strerror(errno));
        /* latest still names the previous checkpoint; do not leave a newer one beside it */
        unlink(ltmp);
        unlink(final);
        return rc;
    }
    if (fsync_path_(dir, 1) != 0)
        return hw_errf(err, HW_EIO,
                       "%s: cannot fsync directory: %s (%s and latest are in place and complete, "
                       "but may not survive a power loss)",
                       dir, strerror(errno), final);
    return 0;
}

static int cmp_desc_(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Keep `step` plus the newest keep-1 other checkpoints. Best effort: a file that cannot be
 * deleted is reported as a warning, not a failed save. */
static void prune_(const char *dir, int64_t step, int keep) {
    if (keep <= 0)
        return;
    DIR *dp = opendir(dir);
    if (!dp)
        return;
    int64_t *steps = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    char path[CKPT_PATH_LEN];
    while ((e = readdir(dp)) != NULL) {
        int64_t s;
        int tmp;
        if (!parse_name_(e->d_name, &s, &tmp, NULL) || tmp || s == step)
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            steps = HW_REALLOC(steps, cap * sizeof(*steps));
        }
        steps[n++] = s;
    }
    closedir(dp);
    if (n > 0) {
        qsort(steps, n, sizeof(*steps), cmp_desc_);
        for (size_t i = (size_t)(keep - 1); i < n; i++) {
            char name[64];
            snprintf(name, sizeof(name), "ckpt_%08lld.h5", (long long)steps[i]);
            if (join_(path, sizeof(path), dir, name) == 0 && unlink(path) != 0 && errno != ENOENT)
                log_warn("%s: cannot delete old checkpoint: %s", path, strerror(errno));
        }
    }
    free(steps);
}

// ------------------------------------------------------------------------------------------
// save

#if (H5_VERS_MAJOR == 1 && H5_VERS_MINOR == 10 && H5_VERS_RELEASE >= 7) || H5_VERSION_GE(1, 12, 1)
#define CKPT_HAVE_FILE_LOCKING_ 1
#endif

static hid_t fapl_(const struct dist *d, int reading) {
    hid_t fapl = (hid_t)dist_h5_fapl(d);
#ifdef CKPT_HAVE_FILE_LOCKING_
    /* lock where the file system supports it; do not fail where it does not (Lustre, NFS) */
    H5Pset_file_locking(fapl, 1, 1);
#endif
    if (reading && world_(d) > 1) {
        /* reads are independent: ranks open and read datasets in any order */
        H5Pset_all_coll_metadata_ops(fapl, 0);
        H5Pset_coll_metadata_write(fapl, 0);
    }
    return fapl;
}

/* Bytes a checkpoint of these groups needs, estimated from the global tensor sizes (the file
 * also holds the moments and a little metadata), against the free space of dir. */
static int space_check_(const char *dir, const struct ckpt_group *groups, int n_groups,
                        const struct ckpt_meta *meta, char *err) {
    double need = 256.0 * 1024;
    for (int g = 0; g < n_groups; g++)
        for (int i = 0; i < groups[g].n; i++) {
            double n = 1;
            for (int k = 0; k < groups[g].t[i].ndim; k++)
                n *= (double)groups[g].t[i].shape[k];
            need += 4.0 * n * 1.02 + 512;
        }
    if (meta) {
        need += meta->config_yaml ? (double)strlen(meta->config_yaml) : 0;
        need += meta->tokenizer_json ? (double)strlen(meta->tokenizer_json) : 0;
    }
    struct statvfs sv;
    if (getenv("HW_FAULT_NO_SPACE_CHECK")) /* test hook: let the write itself hit ENOSPC */
        return 0;
    if (statvfs(dir, &sv) != 0)
        return 0; /* unknown: let the write decide */
    double avail = (double)sv.f_bavail * (double)sv.f_frsize;
    if (avail < need)
        return hw_errf(err, HW_EIO,
                       "%s: not enough space for a checkpoint (about %.1f MB needed, %.1f MB "
                       "free): no space left on device (%s)",
                       dir, need / 1e6, avail / 1e6, strerror(ENOSPC));
    return 0;
}

int ckpt_save(const struct dist *d, const char *dir, int64_t step, const struct ckpt_group *groups,
              int n_groups, const struct ckpt_meta *meta, int keep, char *out_path, char *err) {
    char fname[64], final[CKPT_PATH_LEN], tmp[CKPT_PATH_LEN + 128], suffix[128] = "";
    int rank0 = rank_(d) == 0, rc = 0, created = 0, xfsz = 0;
    hid_t fapl = -1, dxpl = -1, fid = -1, fcpl = -1;
    struct h5quiet_ q;
    struct sigaction old_xfsz;

    if (!dir || !dir[0])
        return hw_errf(err, HW_EIO, "(empty): checkpoint directory not set");
    snprintf(fname, sizeof(fname), "ckpt_%08lld.h5", (long long)(step < 0 ? 0 : step));
    if (join_(final, sizeof(final), dir, fname))
        return hw_errf(err, HW_EIO, "%.200s...: path too long", dir);
    /* the temporary files are named after their writer, rank 0 */
    if (rank0)
        tmp_suffix_(suffix, sizeof(suffix));
    if (world_(d) > 1)
        dist_bcast_bytes(d, suffix, (int64_t)sizeof(suffix));
    snprintf(tmp, sizeof(tmp), "%s%s", final, suffix);

    /* a file-size limit (ulimit -f) then fails the write with EFBIG, which is reported, instead
     * of killing the process with SIGXFSZ */
    if (sigaction(SIGXFSZ, NULL, &old_xfsz) == 0 && old_xfsz.sa_handler == SIG_DFL &&
        !(old_xfsz.sa_flags & SA_SIGINFO)) {
        struct sigaction ign;
        memset(&ign, 0, sizeof(ign));
        ign.sa_handler = SIG_IGN;
        sigemptyset(&ign.sa_mask);
        xfsz = sigaction(SIGXFSZ, &ign, NULL) == 0;
    }
    h5_quiet_(&q);
    dist_watch_begin("checkpoint write");
    rc = agree_(d, check_args_(groups, n_groups, meta, step, final, err), final, err);
    if (rc == 0)
        rc = agree_(d, check_ranks_(d, groups, n_groups, step, keep, final, err), final, err);
    if (rc != 0)
        goto out;

    /* rank 0 makes the directory, removes the temporary files of writers that are gone, and
     * probes the tmp path so a failure names its cause; it also refuses to start a checkpoint
     * that cannot fit (HDF5 does not recover well from running out of space halfway through a
     * file) */
    if (rank0) {
        rc = mkdirs_(dir, err);
        if (rc == 0)
            clean_stale_(dir, step);
        if (rc == 0)
            rc = space_check_(dir, groups, n_groups, meta, err);
        if (rc == 0) {
            int fd = create_excl_(tmp, err);
            if (fd < 0) {
                rc = fd;
            } else { /* H5Fcreate creates it again, exclusively: never through a planted link */
                close(fd);
                unlink(tmp);
            }
        }
    }
    rc = agree_(d, rc, tmp, err);
    if (rc != 0)
        goto out;
    created = 1;

    struct meta_wire_ w = {0, 0, {0, 0, 0}};
    if (meta) {
        w.tokens_seen = meta->tokens_seen;
        w.n_cursor = meta->n_cursor;
        w.len[0] = meta->config_yaml ? (int64_t)strlen(meta->config_yaml) : 0;
        w.len[1] = meta->tokenizer_json ? (int64_t)strlen(meta->tokenizer_json) : 0;
        w.len[2] = meta->model_sig ? (int64_t)strlen(meta->model_sig) : 0;
    }
    if (world_(d) > 1)
        dist_bcast_bytes(d, &w, (int64_t)sizeof(w));

    if (getenv("HW_FAULT_STALL_SAVE")) /* test hook: a write that does not finish */
        sleep((unsigned)atoi(getenv("HW_FAULT_STALL_SAVE")));
    fapl = fapl_(d, 0);
    dxpl = (hid_t)dist_h5_dxpl(d);
    fcpl = H5Pcreate(H5P_FILE_CREATE); /* the root group without modification times */
    if (fcpl >= 0)
        H5Pset_obj_track_times(fcpl, 0);
    fid = H5Fcreate(tmp, H5F_ACC_EXCL, fcpl >= 0 ? fcpl : H5P_DEFAULT, fapl);
    if (fid < 0) {
        int e = errno;
        rc = io_fail_(tmp, "cannot create HDF5 file", e, h5_why_(), 1, err);
    }
    rc = agree_(d, rc, tmp, err);
    if (rc != 0)
        goto out;

    rc = agree_(d, write_attrs_(fid, step, w.tokens_seen, world_(d), tmp, err), tmp, err);
    if (rc == 0 && make_groups_(fid, groups, n_groups) < 0)
        rc = write_fail_(tmp, "(groups)", err);
    rc = agree_(d, rc, tmp, err);
    for (int g = 0; g < n_groups && rc == 0; g++)
        for (int i = 0; i < groups[g].n && rc == 0; i++)
            rc = agree_(d, write_tensor_(fid, dxpl, groups[g].name, &groups[g].t[i], tmp, err), tmp,
                        err);
    if (rc == 0)
        rc = agree_(d, write_meta_(d, fid, dxpl, step, meta, &w, tmp, err), tmp, err);
    if (rc == 0)
        rc = agree_(d, write_manifest_(fid, dxpl, groups, n_groups, rank0, tmp, err), tmp, err);
    if (rc == 0 && world_(d) > 1 && H5Fflush(fid, H5F_SCOPE_GLOBAL) < 0)
        rc = write_fail_(tmp, "(flush)", err);
    /* H5Fclose is collective and flushes the metadata; its failure means the file is bad */
    if (H5Fclose(fid) < 0 && rc == 0)
        rc = write_fail_(tmp, "(close)", err);
    fid = -1;
    rc = agree_(d, rc, tmp, err);
    if (rc != 0)
        goto out;

    if (rank0)
        rc = publish_(dir, tmp, final, fname, suffix, err);
    rc = agree_(d, rc, final, err);
    if (rc == 0) {
        created = 0;
        if (rank0)
            prune_(dir, step, keep);
        if (out_path)
            snprintf(out_path, CKPT_PATH_LEN, "%s", final);
    }
    if (world_(d) > 1)
        dist_barrier(d); /* nobody reads the directory before pruning is done */
out:
    if (fid >= 0)
        H5Fclose(fid);
    h5_close_(&dxpl, H5Pclose);
    h5_close_(&fapl, H5Pclose);
    h5_close_(&fcpl, H5Pclose);
    if (created && rank0)
        unlink(tmp);
    dist_watch_end();
    H5Eclear2(H5E_DEFAULT);
    h5_loud_(&q);
    if (xfsz)
        sigaction(SIGXFSZ, &old_xfsz, NULL);
    return rc;
}

// ------------------------------------------------------------------------------------------
// load

/* Reads a one-element attribute into v; H5Aread writes every element, so an attribute of any
 * other shape (a forged array) is refused rather than read past v. want: the stored type
 * headwise writes (an attribute of another type would be converted, e.g. 2.5 to 2), or -1 for
 * any. 0 ok, -1 missing or unreadable, -2 not a scalar of type want. */
static int read_attr_(hid_t fid, const char *name, hid_t want, hid_t mtype, void *v) {
    hid_t a = H5Aopen(fid, name, H5P_DEFAULT);
    hid_t sp = a >= 0 ? H5Aget_space(a) : -1, type = a >= 0 ? H5Aget_type(a) : -1;
    int rc = sp < 0 || type < 0 ? -1 : 0;
    if (rc == 0 &&
        (H5Sget_simple_extent_npoints(sp) != 1 || (want >= 0 && H5Tequal(type, want) <= 0)))
        rc = -2;
    if (rc == 0 && H5Aread(a, mtype, v) < 0)
        rc = -1;
    h5_close_(&type, H5Tclose);
    h5_close_(&sp, H5Sclose);
    h5_close_(&a, H5Aclose);
    return rc;
}

/* 1 if the dataset can be read safely. ndim dims of its stored element type must fit in the
 * file: checkpoints are never compressed, so a larger extent is storage never written (or
 * forged), and must not size an allocation or a long read. And its layout must be one headwise
 * writes, because HDF5 1.10 trusts a compact dataset's in-header buffer and an unfiltered
 * chunk's stored size without checking them against the extent (and reads past them): a
 * compact dataset must hold its extent, a chunked one must carry the Fletcher32 filter. */
static int extent_fits_(hid_t fid, hid_t dset, int ndim, const hsize_t *dims) {
    hsize_t fsize = 0;
    hid_t type = H5Dget_type(dset);
    hsize_t bytes = type >= 0 ? (hsize_t)H5Tget_size(type) : 0;
    h5_close_(&type, H5Tclose);
    if (bytes == 0 || H5Fget_filesize(fid, &fsize) < 0)
        return 0;
    for (int i = 0; i < ndim; i++) {
        if (dims[i] != 0 && bytes > fsize / dims[i])
            return 0;
        bytes *= dims[i];
    }
    hid_t dcpl = H5Dget_create_plist(dset);
    H5D_layout_t layout = dcpl >= 0 ? H5Pget_layout(dcpl) : H5D_LAYOUT_ERROR;
    unsigned flags = 0, config = 0;
    size_t nvals = 0;
    int fletcher = dcpl >= 0 && H5Pget_filter_by_id2(dcpl, H5Z_FILTER_FLETCHER32, &flags, &nvals,
                                                     NULL, 0, NULL, &config) >= 0;
    h5_close_(&dcpl, H5Pclose);
    if (bytes > fsize)
        return 0;
    if (layout == H5D_COMPACT)
        return H5Dget_storage_size(dset) >= bytes;
    return layout == H5D_CONTIGUOUS || (layout == H5D_CHUNKED && fletcher);
}

/* 1 if the manifest's compound type has members that lie inside it (HDF5 1.10 does not check
 * this when it decodes a type, and its conversion would then copy from anywhere), and group,
 * name, ndim and shape have the types headwise writes: fixed-length strings, an integer and
 * an array of CKPT_MAX_DIMS integers. */
static int manifest_type_ok_(hid_t type) {
    size_t size = H5Tget_size(type);
    int n = H5Tget_nmembers(type), ok = n > 0;
    for (int i = 0; i < n && ok; i++) {
        hid_t mt = H5Tget_member_type(type, (unsigned)i);
        char *name = H5Tget_member_name(type, (unsigned)i);
        size_t off = H5Tget_member_offset(type, (unsigned)i);
        size_t msz = mt >= 0 ? H5Tget_size(mt) : 0;
        H5T_class_t cl = mt >= 0 ? H5Tget_class(mt) : H5T_NO_CLASS;
        ok = name && msz > 0 && off <= size && msz <= size - off;
        if (ok && (!strcmp(name, "group") || !strcmp(name, "name"))) {
            ok = cl == H5T_STRING && H5Tis_variable_str(mt) == 0;
        } else if (ok && !strcmp(name, "ndim")) {
            ok = cl == H5T_INTEGER;
        } else if (ok && !strcmp(name, "shape")) {
            hsize_t dims[H5S_MAX_RANK];
            hid_t super = cl == H5T_ARRAY ? H5Tget_super(mt) : -1;
            ok = super >= 0 && H5Tget_class(super) == H5T_INTEGER && H5Tget_array_ndims(mt) == 1 &&
                 H5Tget_array_dims2(mt, dims) == 1 && dims[0] == CKPT_MAX_DIMS;
            h5_close_(&super, H5Tclose);
        }
        if (name)
            H5free_memory(name);
        h5_close_(&mt, H5Tclose);
    }
    return ok;
}

int ckpt_open(struct ckpt_file *f, const struct dist *d, const char *path, char *err) {
    struct h5quiet_ q;
    int rc = 0;
    hid_t fapl = -1, fid = -1;
    memset(f, 0, sizeof(*f));
    f->d = d;
    h5_quiet_(&q);

    int fd = open(path, O_RDONLY | O_NONBLOCK); /* a FIFO must not block: it is refused below */
    struct stat st;
    if (fd < 0) {
        rc = hw_errf(err, HW_EIO, "%s: cannot open: %s", path, strerror(errno));
    } else {
        if (fstat(fd, &st) != 0)
            rc = hw_errf(err, HW_EIO, "%s: cannot open: %s", path, strerror(errno));
        else if (!S_ISREG(st.st_mode))
            rc = S_ISDIR(st.st_mode)
                     ? hw_errf(err, HW_EIO, "%s: cannot open: %s", path, strerror(EISDIR))
                     : hw_errf(err, HW_EIO, "%s: not a regular file", path);
        close(fd);
    }
    rc = agree_(d, rc, path, err);
    if (rc != 0)
        goto out;

    fapl = fapl_(d, 1);
    fid = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    if (fid < 0) {
        H5Eclear2(H5E_DEFAULT);
        rc = hw_errf(err, HW_EFORMAT, "%s: not a readable HDF5 file (truncated or corrupt)", path);
    }
    rc = agree_(d, rc, path, err);
    if (rc != 0) {
        if (fid >= 0)
            H5Fclose(fid);
        goto out;
    }

    char fmt[64] = "";
    int32_t version = -1;
    int64_t step = -1;
    hid_t st_t = H5Tcopy(H5T_C_S1);
    H5Tset_size(st_t, sizeof(fmt));
    H5Tset_strpad(st_t, H5T_STR_NULLTERM);
    int ra = 0;
    if (read_attr_(fid, "format", -1, st_t, fmt) < 0 || strcmp(fmt, CKPT_FORMAT) != 0)
        rc = hw_errf(err, HW_EFORMAT,
                     "%s: not a headwise checkpoint (root attribute format is '%s', expected "
                     "'%s')",
                     path, fmt[0] ? fmt : "(missing)", CKPT_FORMAT);
    else if ((ra = read_attr_(fid, "format_version", H5T_STD_I32LE, H5T_NATIVE_INT32, &version)) <
             0)
        rc = hw_errf(err, HW_EFORMAT, "%s: root attribute format_version %s", path,
                     ra == -1 ? "missing" : "is not a scalar H5T_STD_I32LE");
    else if (version != CKPT_FORMAT_VERSION)
        rc = hw_errf(err, HW_EFORMAT,
                     "%s: checkpoint format_version %d, this build reads version %d", path,
                     (int)version, CKPT_FORMAT_VERSION);
    else if ((ra = read_attr_(fid, "step", H5T_STD_I64LE, H5T_NATIVE_INT64, &step)) < 0)
        rc = hw_errf(err, HW_EFORMAT, "%s: root attribute step %s", path,
                     ra == -1 ? "missing" : "is not a scalar H5T_STD_I64LE");
    else if (step < 0 || step > CKPT_MAX_STEP)
        rc = hw_errf(err, HW_EFORMAT,
                     "%s: root attribute step: %lld is out of range (expected 0..%lld)", path,
                     (long long)step, CKPT_MAX_STEP);
    H5Tclose(st_t);
    H5Eclear2(H5E_DEFAULT);
    rc = agree_(d, rc, path, err);
    if (rc != 0) {
        H5Fclose(fid);
        goto out;
    }
    f->fid = fid;
    f->path = HW_STRDUP(path);
    f->format_version = version;
    f->step = step;
out:
    h5_close_(&fapl, H5Pclose);
    h5_loud_(&q);
    return rc;
}

void ckpt_close(struct ckpt_file *f) {
    if (!f)
        return;
    if (f->fid > 0) {
        struct h5quiet_ q;
        h5_quiet_(&q);
        H5Fclose((hid_t)f->fid);
        H5Eclear2(H5E_DEFAULT);
        h5_loud_(&q);
    }
    free(f->path);
    memset(f, 0, sizeof(*f));
}

static int not_open_(const struct ckpt_file *f, char *err) {
    if (f && f->fid > 0)
        return 0;
    return hw_errf(err, HW_EIO, "checkpoint is not open");
}

/* 1 if the dataset is stored as type want (HDF5 would otherwise convert on reading: a
 * float step 2.5 would read as 2, a 4-byte cursor would be widened). */
static int type_is_(hid_t dset, hid_t want) {
    hid_t type = H5Dget_type(dset);
    int ok = type >= 0 && H5Tequal(type, want) > 0;
    h5_close_(&type, H5Tclose);
    return ok;
}

/* Read a whole 1-D dataset stored as type want (named want_name in messages) into a malloc'd
 * buffer of n elements (+1 zero byte). A dataset of more than max_n elements is not read:
 * *out stays NULL, *n_out gets its length, returns 0. */
static int read_1d_(struct ckpt_file *f, const char *name, hid_t want, const char *want_name,
                    hid_t mtype, size_t esz, hsize_t max_n, void **out, hsize_t *n_out, char *err) {
    hid_t dset = -1, space = -1;
    int rc = 0;
    *out = NULL;
    int ex = exists_((hid_t)f->fid, name);
    if (ex <= 0)
        return ex < 0 ? read_fail_(f->path, name, err)
                      : hw_errf(err, HW_EFORMAT, "%s: %s: missing (incomplete checkpoint)", f->path,
                                name);
    dset = H5Dopen2((hid_t)f->fid, name, H5P_DEFAULT);
    space = dset >= 0 ? H5Dget_space(dset) : -1;
    hsize_t n = 0;
    if (space < 0 || H5Sget_simple_extent_ndims(space) != 1 ||
        H5Sget_simple_extent_dims(space, &n, NULL) < 0) {
        rc = dset < 0 || space < 0
                 ? read_fail_(f->path, name, err)
                 : hw_errf(err, HW_EFORMAT, "%s: %s: not a 1-D dataset (expected a 1-D %s array)",
                           f->path, name, want_name);
        goto out;
    }
    if (!type_is_(dset, want)) {
        rc = hw_errf(err, HW_EFORMAT, "%s: %s: stored as another type (expected %s)", f->path, name,
                     want_name);
        goto out;
    }
    if (n > max_n) {
        *n_out = n;
        goto out;
    }
    if (!extent_fits_((hid_t)f->fid, dset, 1, &n)) {
        rc = hw_errf(err, HW_EFORMAT,
                     "%s: %s: %llu values do not fit in the file (truncated or corrupt)", f->path,
                     name, (unsigned long long)n);
        goto out;
    }
    unsigned char *buf = HW_CALLOC((size_t)n * esz + 1, 1);
    if (n > 0 && H5Dread(dset, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        free(buf);
        rc = read_fail_(f->path, name, err);
        goto out;
    }
    *out = buf;
    *n_out = n;
out:
    h5_close_(&space, H5Sclose);
    h5_close_(&dset, H5Dclose);
    return rc;
}

/* A scalar H5T_STD_I64LE dataset (as written) into v. */
static int read_scalar_i64_(struct ckpt_file *f, const char *name, int64_t *v, char *err) {
    if (exists_((hid_t)f->fid, name) != 1)
        return hw_errf(err, HW_EFORMAT, "%s: %s: missing (incomplete checkpoint)", f->path, name);
    hid_t dset = H5Dopen2((hid_t)f->fid, name, H5P_DEFAULT);
    hid_t space = dset >= 0 ? H5Dget_space(dset) : -1;
    hssize_t npoints = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    H5S_class_t cls = space >= 0 ? H5Sget_simple_extent_type(space) : H5S_NO_CLASS;
    h5_close_(&space, H5Sclose);
    /* H5Dread writes every element into v: one, or a forged array overruns it */
    if (npoints >= 0 && (npoints != 1 || cls != H5S_SCALAR)) {
        h5_close_(&dset, H5Dclose);
        return hw_errf(err, HW_EFORMAT, "%s: %s: %lld values, expected one (a scalar)", f->path,
                       name, (long long)npoints);
    }
    if (npoints == 1 && !type_is_(dset, H5T_STD_I64LE)) {
        h5_close_(&dset, H5Dclose);
        return hw_errf(err, HW_EFORMAT,
                       "%s: %s: stored as another type (expected a scalar H5T_STD_I64LE)", f->path,
                       name);
    }
    if (npoints == 1 && !extent_fits_((hid_t)f->fid, dset, 0, NULL)) {
        h5_close_(&dset, H5Dclose);
        return hw_errf(err, HW_EFORMAT, "%s: %s: does not fit in the file (truncated or corrupt)",
                       f->path, name);
    }
    int ok = dset >= 0 && npoints == 1 &&
             H5Dread(dset, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0;
    int rc = ok ? 0 : read_fail_(f->path, name, err);
    h5_close_(&dset, H5Dclose);
    return rc;
}

/* The members of /state, as written: anything else there is not a headwise checkpoint's. */
static const char *const state_names_[] = {"step", "tokens_seen", "rng", "cursor"};

static int check_state_members_(struct ckpt_file *f, char *err) {
    if (exists_((hid_t)f->fid, "state") != 1)
        return hw_errf(err, HW_EFORMAT, "%s: state: missing (incomplete checkpoint)", f->path);
    H5G_info_t info;
    if (H5Gget_info_by_name((hid_t)f->fid, "state", &info, H5P_DEFAULT) < 0)
        return read_fail_(f->path, "state", err);
    for (hsize_t i = 0; i < info.nlinks; i++) {
        char name[CKPT_NAME_MAX];
        ssize_t len = H5Lget_name_by_idx((hid_t)f->fid, "state", H5_INDEX_NAME, H5_ITER_INC, i,
                                         name, sizeof(name), H5P_DEFAULT);
        if (len < 0)
            return read_fail_(f->path, "state", err);
        int known = 0;
        for (size_t k = 0; k < sizeof(state_names_) / sizeof(state_names_[0]); k++)
            known |= strcmp(name, state_names_[k]) == 0;
        if (!known)
            return hw_errf(err, HW_EFORMAT,
                           "%s: state/%s: unexpected (expected only state/step, "
                           "state/tokens_seen, state/rng and state/cursor)",
                           f->path, name);
    }
    return 0;
}

/* lo <= v <= hi, else one line naming the dataset (what[index] when index >= 0). */
static int in_range_(const char *path, const char *what, int index, int64_t v, int64_t lo,
                     int64_t hi, const char *meaning, char *err) {
    if (v >= lo && v <= hi)
        return 0;
    char name[64];
    if (index >= 0)
        snprintf(name, sizeof(name), "%s[%d]", what, index);
    else
        snprintf(name, sizeof(name), "%s", what);
    return hw_errf(err, HW_EFORMAT, "%s: %s: %lld is out of range (expected %lld..%lld, %s)", path,
                   name, (long long)v, (long long)lo, (long long)hi, meaning);
}

/* The state and text datasets with their values (see struct ckpt_meta); not the manifest. */
static int read_state_(struct ckpt_file *f, struct ckpt_meta *m, char *err) {
    void *p = NULL;
    hsize_t n = 0;
    int64_t attr = 0;

    int rc = check_state_members_(f, err);
    if (!rc)
        rc = read_scalar_i64_(f, "state/step", &m->step, err);
    if (!rc)
        rc = in_range_(f->path, "state/step", -1, m->step, 0, CKPT_MAX_STEP, "optimizer steps done",
                       err);
    if (!rc && m->step != f->step)
        rc = hw_errf(err, HW_EFORMAT,
                     "%s: state/step %lld differs from root attribute step %lld (file is corrupt)",
                     f->path, (long long)m->step, (long long)f->step);
    if (!rc)
        rc = read_scalar_i64_(f, "state/tokens_seen", &m->tokens_seen, err);
    if (!rc)
        rc = in_range_(f->path, "state/tokens_seen", -1, m->tokens_seen, 0, CKPT_MAX_COUNT,
                       "tokens consumed", err);
    int ra =
        rc ? 0 : read_attr_((hid_t)f->fid, "tokens_seen", H5T_STD_I64LE, H5T_NATIVE_INT64, &attr);
    if (!rc && ra == -2)
        rc = hw_errf(err, HW_EFORMAT,
                     "%s: root attribute tokens_seen is not a scalar H5T_STD_I64LE", f->path);
    if (!rc && ra == 0 && attr != m->tokens_seen)
        rc = hw_errf(err, HW_EFORMAT,
                     "%s: state/tokens_seen %lld differs from root attribute %lld (file is "
                     "corrupt)",
                     f->path, (long long)m->tokens_seen, (long long)attr);
    if (!rc) {
        /* any 64-bit values are a valid RNG state; its type and length are checked */
        rc = read_1d_(f, "state/rng", H5T_STD_U64LE, "H5T_STD_U64LE", H5T_NATIVE_UINT64, 8, 4, &p,
                      &n, err);
        if (!rc && n != 4)
            rc = hw_errf(err, HW_EFORMAT, "%s: state/rng has %llu values, expected 4", f->path,
                         (unsigned long long)n);
        if (!rc)
            memcpy(m->rng, p, sizeof(m->rng));
        free(p);
        p = NULL;
    }
    if (!rc) {
        rc = read_1d_(f, "state/cursor", H5T_STD_I64LE, "H5T_STD_I64LE", H5T_NATIVE_INT64, 8,
                      CKPT_MAX_CURSOR, &p, &n, err);
        if (!rc && n > CKPT_MAX_CURSOR)
            rc = hw_errf(err, HW_EFORMAT, "%s: state/cursor has %llu values, at most %d allowed",
                         f->path, (unsigned long long)n, CKPT_MAX_CURSOR);
        if (!rc) {
            memcpy(m->cursor, p, (size_t)n * sizeof(int64_t));
            m->n_cursor = (int)n;
        }
        for (int i = 0; i < m->n_cursor && !rc; i++)
            rc = in_range_(f->path, "state/cursor", i, m->cursor[i], 0, CKPT_MAX_COUNT,
                           "a count of samples read", err);
        free(p);
        p = NULL;
    }
    char **texts[3] = {&m->config_yaml, &m->tokenizer_json, &m->model_sig};
    static const char *const names[3] = {"config", "tokenizer", "model_sig"};
    for (int i = 0; i < 3 && !rc; i++) {
        rc = read_1d_(f, names[i], H5T_STD_U8LE, "H5T_STD_U8LE", H5T_NATIVE_UCHAR, 1, (hsize_t)-1,
                      &p, &n, err);
        *texts[i] = p;
        p = NULL;
        const char *nul = !rc && *texts[i] ? memchr(*texts[i], '\0', (size_t)n) : NULL;
        if (nul)
            rc = hw_errf(err, HW_EFORMAT, "%s: %s: NUL byte at offset %lld (expected text)",
                         f->path, names[i], (long long)(nul - *texts[i]));
    }
    return rc;
}

struct mrow_;
static int read_manifest_(struct ckpt_file *f, struct mrow_ **rows_out, size_t *n_out, char *err);
static int check_manifest_(struct ckpt_file *f, const struct mrow_ *rows, size_t n, int shapes,
                           char *err);

int ckpt_read_meta(struct ckpt_file *f, struct ckpt_meta *m, char *err) {
    memset(m, 0, sizeof(*m));
    int rc = not_open_(f, err);
    if (rc)
        return rc;
    struct h5quiet_ q;
    h5_quiet_(&q);
    rc = read_state_(f, m, err);
    if (!rc) {
        struct mrow_ *rows = NULL;
        size_t n = 0;
        rc = read_manifest_(f, &rows, &n, err);
        if (!rc)
            rc = check_manifest_(f, rows, n, 1, err);
        free(rows);
    }
    H5Eclear2(H5E_DEFAULT);
    h5_loud_(&q);
    return rc;
}

void ckpt_meta_free(struct ckpt_meta *m) {
    if (!m)
        return;
    free(m->config_yaml);
    free(m->tokenizer_json);
    free(m->model_sig);
    m->config_yaml = m->tokenizer_json = m->model_sig = NULL;
}

/* Open group/name as a float dataset and read its global shape. 1 ok, 0 absent, <0 error. */
static int open_tensor_(struct ckpt_file *f, const char *dname, hid_t *dset, int *ndim,
                        int64_t *shape, char *err) {
    *dset = -1;
    int ex = exists_((hid_t)f->fid, dname);
    if (ex <= 0)
        return ex < 0 ? read_fail_(f->path, dname, err) : 0;
    hid_t ds = H5Dopen2((hid_t)f->fid, dname, H5P_DEFAULT);
    if (ds < 0)
        return read_fail_(f->path, dname, err);
    hid_t type = H5Dget_type(ds), space = H5Dget_space(ds);
    int nd = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
    hsize_t dims[H5S_MAX_RANK];
    int rc = 1;
    if (type < 0 || nd < 0 || H5Sget_simple_extent_dims(space, dims, NULL) < 0)
        rc = read_fail_(f->path, dname, err);
    else if (H5Tget_class(type) != H5T_FLOAT)
        rc = hw_errf(err, HW_EFORMAT, "%s: %s: not a floating-point dataset", f->path, dname);
    else if (nd < 1 || nd > CKPT_MAX_DIMS)
        rc = hw_errf(err, HW_EFORMAT, "%s: %s: %d dimensions, expected 1..%d", f->path, dname, nd,
                     CKPT_MAX_DIMS);
    else if (!extent_fits_((hid_t)f->fid, ds, nd, dims))
        rc = hw_errf(err, HW_EFORMAT,
                     "%s: %s: its shape does not fit in the file (truncated or corrupt)", f->path,
                     dname);
    h5_close_(&type, H5Tclose);
    h5_close_(&space, H5Sclose);
    if (rc != 1) {
        H5Dclose(ds);
        return rc;
    }
    *ndim = nd;
    for (int i = 0; i < nd; i++)
        shape[i] = (int64_t)dims[i];
    *dset = ds;
    return 1;
}

/* Read the slab offset/count (ndim dims) of an open float dataset into buf; on failure the
 * HDF5 error stack is captured into *why before later calls clear it. */
static herr_t read_slab_(hid_t dset, int ndim, const int64_t *offset, const int64_t *count,
                         float *buf, struct h5why_ *why) {
    hsize_t start[CKPT_MAX_DIMS], cnt[CKPT_MAX_DIMS];
    for (int i = 0; i < ndim; i++) {
        start[i] = (hsize_t)offset[i];
        cnt[i] = (hsize_t)count[i];
    }
    hid_t fspace = H5Dget_space(dset), mspace = H5Screate_simple(ndim, cnt, NULL);
    herr_t r = -1;
    if (fspace >= 0 && mspace >= 0 &&
        H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, cnt, NULL) >= 0)
        r = H5Dread(dset, H5T_NATIVE_FLOAT, mspace, fspace, H5P_DEFAULT, buf);
    if (r < 0)
        *why = h5_why_();
    if (mspace >= 0)
        H5Sclose(mspace);
    if (fspace >= 0)
        H5Sclose(fspace);
    return r;
}

int ckpt_tensor_shape(struct ckpt_file *f, const char *group, const char *name, int *ndim,
                      int64_t shape[CKPT_MAX_DIMS], char *err) {
    int rc = not_open_(f, err);
    if (rc)
        return rc;
    char dname[2 * CKPT_NAME_MAX + 2];
    snprintf(dname, sizeof(dname), "%s/%s", group, name);
    struct h5quiet_ q;
    h5_quiet_(&q);
    hid_t dset;
    rc = open_tensor_(f, dname, &dset, ndim, shape, err);
    h5_close_(&dset, H5Dclose);
    H5Eclear2(H5E_DEFAULT);
    h5_loud_(&q);
    return rc;
}

int ckpt_read_tensor(struct ckpt_file *f, const char *group, const struct ckpt_tensor *t,
                     char *err) {
    int rc = not_open_(f, err);
    if (rc)
        return rc;
    char dname[2 * CKPT_NAME_MAX + 2], want[128], got[128];
    snprintf(dname, sizeof(dname), "%s/%s", group, t->name);
    if (t->ndim < 1 || t->ndim > CKPT_MAX_DIMS)
        return hw_errf(err, HW_EMISMATCH, "%s: %s: ndim %d outside 1..%d", f->path, dname, t->ndim,
                       CKPT_MAX_DIMS);
    struct h5quiet_ q;
    h5_quiet_(&q);
    hid_t dset = -1;
    int ndim = 0;
    int64_t shape[CKPT_MAX_DIMS] = {0, 0, 0, 0};
    rc = open_tensor_(f, dname, &dset, &ndim, shape, err);
    if (rc == 0) {
        rc = hw_errf(err, HW_EMISMATCH, "%s: %s: not in checkpoint", f->path, dname);
        goto out;
    }
    if (rc < 0)
        goto out;
    rc = 0;
    int same = ndim == t->ndim;
    for (int i = 0; i < ndim && same; i++)
        same = shape[i] == t->shape[i];
    if (!same) {
        fmt_dims_(got, sizeof(got), ndim, shape);
        fmt_dims_(want, sizeof(want), t->ndim, t->shape);
        rc = hw_errf(err, HW_EMISMATCH, "%s: %s: shape %s in file, %s expected", f->path, dname,
                     got, want);
        goto out;
    }
    for (int i = 0; i < ndim; i++) {
        if (t->offset[i] < 0 || t->count[i] < 0 || t->offset[i] + t->count[i] > shape[i]) {
            fmt_dims_(got, sizeof(got), ndim, t->offset);
            fmt_dims_(want, sizeof(want), ndim, t->count);
            rc = hw_errf(err, HW_EMISMATCH, "%s: %s: slab offset %s count %s outside shape",
                         f->path, dname, got, want);
            goto out;
        }
    }
    if (numel_(ndim, t->count) == 0)
        goto out;
    if (!t->data) {
        rc = hw_errf(err, HW_EMISMATCH, "%s: %s: data is NULL", f->path, dname);
        goto out;
    }
    struct h5why_ why;
    if (read_slab_(dset, ndim, t->offset, t->count, t->data, &why) < 0)
        rc = read_fail_why_(f->path, dname, why, err);
out:
    h5_close_(&dset, H5Dclose);
    H5Eclear2(H5E_DEFAULT);
    h5_loud_(&q);
    return rc;
}

// ------------------------------------------------------------------------------------------
// latest

int ckpt_latest(const char *dir, char *out_path, char *err) {
    char name[CKPT_NAME_MAX], via[CKPT_NAME_MAX];
    int rc = resolve_latest_(dir, name, via, err);
    if (rc <= 0)
        return rc;
    if (join_(out_path, CKPT_PATH_LEN, dir, name))
        return hw_errf(err, HW_EIO, "%.200s...: path too long", dir);
    return 1;
}

// ------------------------------------------------------------------------------------------
// manifest, verify, info

struct mrow_ {
    char group[CKPT_NAME_MAX];
    char name[CKPT_NAME_MAX];
    int ndim;
    int64_t shape[CKPT_MAX_DIMS];
};

/* Row r of the manifest as headwise writes it: a group name that save accepts, a tensor name,
 * ndim 1..4, extents >= 1 whose product fits in int64, unused extents 0, and no tensor listed
 * twice (rows before r are checked already). */
static int check_row_(const char *path, const struct mrow_ *rows, size_t r, char *err) {
    const struct mrow_ *w = &rows[r];
    if (!check_group_name_(w->group))
        return hw_errf(err, HW_EFORMAT,
                       "%s: manifest: row %zu: group '%s' is not a tensor group name (expected a "
                       "'/'-separated path outside state, config, tokenizer, model_sig and "
                       "manifest)",
                       path, r, w->group);
    if (!check_tensor_name_(w->name))
        return hw_errf(err, HW_EFORMAT,
                       "%s: manifest: row %zu (%s): tensor name '%s' is invalid (expected no '/', "
                       "not . or ..)",
                       path, r, w->group, w->name);
    if (w->ndim < 1 || w->ndim > CKPT_MAX_DIMS)
        return hw_errf(err, HW_EFORMAT, "%s: manifest: row %zu (%s/%s): ndim %d (expected 1..%d)",
                       path, r, w->group, w->name, w->ndim, CKPT_MAX_DIMS);
    int64_t numel = 1;
    for (int k = 0; k < CKPT_MAX_DIMS; k++) {
        const int64_t e = w->shape[k];
        if (k < w->ndim && (e < 1 || numel > INT64_MAX / e))
            return hw_errf(err, HW_EFORMAT,
                           "%s: manifest: row %zu (%s/%s): shape[%d] = %lld (expected >= 1, "
                           "and at most 2^63-1 elements in all)",
                           path, r, w->group, w->name, k, (long long)e);
        if (k >= w->ndim && e != 0)
            return hw_errf(err, HW_EFORMAT,
                           "%s: manifest: row %zu (%s/%s): shape[%d] = %lld beyond ndim %d "
                           "(expected 0)",
                           path, r, w->group, w->name, k, (long long)e, w->ndim);
        numel = k < w->ndim ? numel * e : numel;
    }
    for (size_t j = 0; j < r; j++)
        if (strcmp(rows[j].group, w->group) == 0 && strcmp(rows[j].name, w->name) == 0)
            return hw_errf(err, HW_EFORMAT,
                           "%s: manifest: row %zu lists %s/%s again (first in row %zu; expected "
                           "each tensor once)",
                           path, r, w->group, w->name, j);
    return 0;
}

static int read_manifest_(struct ckpt_file *f, struct mrow_ **rows_out, size_t *n_out, char *err) {
    hid_t dset = -1, type = -1, space = -1;
    struct manifest_type_ mt = {-1, -1, -1, -1, 0, 0, 0};
    unsigned char *buf = NULL;
    int rc = 0;
    *rows_out = NULL;
    *n_out = 0;
    int ex = exists_((hid_t)f->fid, "manifest");
    if (ex <= 0)
        return ex < 0 ? read_fail_(f->path, "manifest", err)
                      : hw_errf(err, HW_EFORMAT, "%s: manifest: missing (incomplete checkpoint)",
                                f->path);
    dset = H5Dopen2((hid_t)f->fid, "manifest", H5P_DEFAULT);
    type = dset >= 0 ? H5Dget_type(dset) : -1;
    space = dset >= 0 ? H5Dget_space(dset) : -1;
    hsize_t n = 0;
    if (type < 0 || space < 0 || H5Sget_simple_extent_ndims(space) != 1 ||
        H5Sget_simple_extent_dims(space, &n, NULL) < 0) {
        rc = read_fail_(f->path, "manifest", err);
        goto out;
    }
    int ig = H5Tget_member_index(type, "group"), in = H5Tget_member_index(type, "name");
    int id = H5Tget_member_index(type, "ndim"), is = H5Tget_member_index(type, "shape");
    if (H5Tget_class(type) != H5T_COMPOUND || ig < 0 || in < 0 || id < 0 || is < 0 ||
        !manifest_type_ok_(type)) {
        rc = hw_errf(err, HW_EFORMAT, "%s: manifest: unexpected datatype", f->path);
        goto out;
    }
    if (!extent_fits_((hid_t)f->fid, dset, 1, &n)) {
        rc = hw_errf(err, HW_EFORMAT,
                     "%s: manifest: %llu rows do not fit in the file (truncated "
                     "or corrupt)",
                     f->path, (unsigned long long)n);
        goto out;
    }
    /* Read through our own row layout (HDF5 converts member by member, and refuses members of
     * an unconvertible type), so the offsets and sizes parsed below are never the file's. */
    if (manifest_type_(&mt, CKPT_NAME_MAX, CKPT_NAME_MAX) < 0) {
        rc = read_fail_(f->path, "manifest", err);
        goto out;
    }
    buf = HW_CALLOC(n ? (size_t)n : 1, mt.row);
    if (n > 0 && H5Dread(dset, mt.type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        rc = read_fail_(f->path, "manifest", err);
        goto out;
    }
    struct mrow_ *rows = HW_CALLOC(n ? (size_t)n : 1, sizeof(*rows));
    for (size_t r = 0; r < n && rc == 0; r++) {
        const unsigned char *p = buf + r * mt.row;
        struct mrow_ *w = &rows[r];
        memcpy(w->group, p, CKPT_NAME_MAX - 1);
        memcpy(w->name, p + mt.g, CKPT_NAME_MAX - 1);
        w->ndim = (int)(int32_t)get_le_(p + mt.g + mt.n, 4);
        for (int k = 0; k < CKPT_MAX_DIMS; k++)
            w->shape[k] = (int64_t)get_le_(p + mt.g + mt.n + 4 + 8 * k, 8);
        rc = check_row_(f->path, rows, r, err);
    }
    if (rc) {
        free(rows);
        goto out;
    }
    *rows_out = rows;
    *n_out = (size_t)n;
out:
    free(buf);
    manifest_type_free_(&mt);
    h5_close_(&space, H5Sclose);
    h5_close_(&type, H5Tclose);
    h5_close_(&dset, H5Dclose);
    return rc;
}

/* All tensor datasets in the file (those outside the reserved roots), as "group/name". */
struct dlist_ {
    char **v;
    size_t n, cap;
};

static int walk_(hid_t gid, const char *prefix, struct dlist_ *out) {
    H5G_info_t info;
    if (H5Gget_info(gid, &info) < 0)
        return -1;
    for (hsize_t i = 0; i < info.nlinks; i++) {
        char name[CKPT_NAME_MAX], full[3 * CKPT_NAME_MAX];
        ssize_t len = H5Lget_name_by_idx(gid, ".", H5_INDEX_NAME, H5_ITER_INC, i, name,
                                         sizeof(name), H5P_DEFAULT);
        if (len < 0 || (size_t)len >= sizeof(name))
            return -1;
        /* group/name of a tensor is shorter than 2 * CKPT_NAME_MAX; longer paths are not ours
         * and bound the recursion (a group may hold a hard link to itself or a parent) */
        if (strlen(prefix) + 1 + (size_t)len >= 2 * CKPT_NAME_MAX)
            return -1;
        snprintf(full, sizeof(full), "%s%s%s", prefix, prefix[0] ? "/" : "", name);
        if (!prefix[0] && is_reserved_root_(name))
            continue;
        hid_t obj = H5Oopen(gid, name, H5P_DEFAULT);
        if (obj < 0)
            return -1;
        H5I_type_t t = H5Iget_type(obj);
        int rc = 0;
        if (t == H5I_GROUP) {
            rc = walk_(obj, full, out);
        } else if (t == H5I_DATASET) {
            if (out->n == out->cap) {
                out->cap = out->cap ? 2 * out->cap : 64;
                out->v = HW_REALLOC(out->v, out->cap * sizeof(*out->v));
            }
            out->v[out->n++] = HW_STRDUP(full);
        }
        H5Oclose(obj);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static void dlist_free_(struct dlist_ *l) {
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
}

/* The manifest rows against the file: every tensor dataset (outside the reserved roots) is in
 * a row, and (shapes) every row is a floating-point dataset of its shape. Metadata only. */
static int check_manifest_(struct ckpt_file *f, const struct mrow_ *rows, size_t n, int shapes,
                           char *err) {
    struct dlist_ dl = {NULL, 0, 0};
    int rc = 0;
    if (walk_((hid_t)f->fid, "", &dl) < 0)
        rc = read_fail_(f->path, "(listing datasets)", err);
    for (size_t i = 0; i < dl.n && rc == 0; i++) {
        int found = 0;
        for (size_t j = 0; j < n && !found; j++) {
            size_t lg = strlen(rows[j].group);
            found = strncmp(dl.v[i], rows[j].group, lg) == 0 && dl.v[i][lg] == '/' &&
                    strcmp(dl.v[i] + lg + 1, rows[j].name) == 0;
        }
        if (!found)
            rc = hw_errf(err, HW_EFORMAT,
                         "%s: %s: dataset not listed in the manifest (expected a row for every "
                         "tensor)",
                         f->path, dl.v[i]);
    }
    if (rc == 0 && dl.n != n)
        rc = hw_errf(err, HW_EFORMAT, "%s: %zu tensor datasets in the file, %zu in the manifest",
                     f->path, dl.n, n);
    dlist_free_(&dl);
    for (size_t j = 0; j < n && rc == 0 && shapes; j++) {
        char dname[2 * CKPT_NAME_MAX + 2], want[128], got[128];
        snprintf(dname, sizeof(dname), "%s/%s", rows[j].group, rows[j].name);
        hid_t dset = -1;
        int ndim = 0;
        int64_t shape[CKPT_MAX_DIMS] = {0, 0, 0, 0};
        int r = open_tensor_(f, dname, &dset, &ndim, shape, err);
        h5_close_(&dset, H5Dclose);
        if (r < 0) {
            rc = r;
        } else if (r == 0) {
            rc = hw_errf(err, HW_EFORMAT, "%s: %s: listed in the manifest but not in the file",
                         f->path, dname);
        } else {
            int same = ndim == rows[j].ndim;
            for (int k = 0; k < ndim && same; k++)
                same = shape[k] == rows[j].shape[k];
            if (!same) {
                fmt_dims_(got, sizeof(got), ndim, shape);
                fmt_dims_(want, sizeof(want), rows[j].ndim, rows[j].shape);
                rc = hw_errf(err, HW_EFORMAT, "%s: %s: shape %s in file, %s in manifest", f->path,
                             dname, got, want);
            }
        }
    }
    return rc;
}

static int64_t count_nonfinite_(const float *v, int64_t n) {
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++)
        bad += !isfinite(v[i]);
    return bad;
}

/* Read a whole tensor in blocks along dim 0 (checksums are verified by HDF5), counting values
 * that are not finite. */
static int verify_tensor_(struct ckpt_file *f, const struct mrow_ *r, float *buf, char *err) {
    int64_t n_bad = 0;
    char dname[2 * CKPT_NAME_MAX + 2], want[128], got[128];
    snprintf(dname, sizeof(dname), "%s/%s", r->group, r->name);
    hid_t dset;
    int ndim = 0;
    int64_t shape[CKPT_MAX_DIMS] = {0, 0, 0, 0};
    int rc = open_tensor_(f, dname, &dset, &ndim, shape, err);
    if (rc == 0)
        return hw_errf(err, HW_EFORMAT, "%s: %s: listed in the manifest but not in the file",
                       f->path, dname);
    if (rc < 0)
        return rc;
    rc = 0;
    int same = ndim == r->ndim;
    for (int i = 0; i < ndim && same; i++)
        same = shape[i] == r->shape[i];
    if (!same) {
        fmt_dims_(got, sizeof(got), ndim, shape);
        fmt_dims_(want, sizeof(want), r->ndim, r->shape);
        rc = hw_errf(err, HW_EFORMAT, "%s: %s: shape %s in file, %s in manifest", f->path, dname,
                     got, want);
    }
    struct h5why_ why;
    /* (the manifest's extents are >= 1, so a matching shape has rows of >= 1 element) */
    int64_t rowlen = rc == 0 ? numel_(ndim - 1, shape + 1) : 1;
    int64_t rows = rowlen >= VERIFY_BLOCK_ELEMS_ ? 1 : VERIFY_BLOCK_ELEMS_ / rowlen;
    int64_t off[CKPT_MAX_DIMS] = {0, 0, 0, 0}, cnt[CKPT_MAX_DIMS];
    for (int i = 0; i < ndim; i++)
        cnt[i] = shape[i];
    for (int64_t r0 = 0; rc == 0 && r0 < shape[0]; r0 += rows) {
        off[0] = r0;
        cnt[0] = shape[0] - r0 < rows ? shape[0] - r0 : rows;
        /* a row longer than the block is read in pieces along dim 1 */
        if (rowlen > VERIFY_BLOCK_ELEMS_ && ndim > 1) {
            int64_t inner = numel_(ndim - 2, shape + 2);
            int64_t step1 = inner >= VERIFY_BLOCK_ELEMS_ ? 1 : VERIFY_BLOCK_ELEMS_ / inner;
            for (int64_t c0 = 0; rc == 0 && c0 < shape[1]; c0 += step1) {
                off[1] = c0;
                cnt[1] = shape[1] - c0 < step1 ? shape[1] - c0 : step1;
                if (numel_(ndim, cnt) > VERIFY_BLOCK_ELEMS_) {
                    rc =
                        hw_errf(err, HW_EFORMAT, "%s: %s: rows too long to verify", f->path, dname);
                } else if (read_slab_(dset, ndim, off, cnt, buf, &why) < 0) {
                    rc = read_fail_why_(f->path, dname, why, err);
                } else {
                    n_bad += count_nonfinite_(buf, numel_(ndim, cnt));
                }
            }
            off[1] = 0;
            cnt[1] = shape[1];
        } else if (read_slab_(dset, ndim, off, cnt, buf, &why) < 0) {
            rc = read_fail_why_(f->path, dname, why, err);
        } else {
            n_bad += count_nonfinite_(buf, numel_(ndim, cnt));
        }
    }
    H5Dclose(dset);
    /* training stops before a non-finite loss or gradient reaches the weights, so a checkpoint
     * never holds NaN or Inf: one that does was not written by training */
    if (rc == 0 && n_bad > 0)
        rc = hw_errf(err, HW_EFORMAT,
                     "%s: %s: %lld of %lld values are NaN or Inf (expected finite values)", f->path,
                     dname, (long long)n_bad, (long long)numel_(ndim, shape));
    return rc;
}

int ckpt_verify(const struct dist *d, const char *path, FILE *report, char *err) {
    struct ckpt_file f;
    struct mrow_ *rows = NULL;
    size_t n = 0;
    struct ckpt_meta m;
    char msg[HW_ERR_LEN];
    int rc = ckpt_open(&f, d, path, err);
    if (rc)
        return rc;
    struct h5quiet_ q;
    h5_quiet_(&q);
    int first = 0;
    double n_ok = 0, n_bad = 0, n_params = 0;

    /* manifest, datasets and state are checked on every rank (cheap, same answer); each
     * tensor's shape against its row comes with its data below */
    rc = read_manifest_(&f, &rows, &n, err);
    if (rc == 0)
        rc = check_manifest_(&f, rows, n, 0, err);
    if (rc == 0) {
        memset(&m, 0, sizeof(m));
        rc = read_state_(&f, &m, err);
        ckpt_meta_free(&m);
        if (report && rank_(d) == 0)
            fprintf(report, "%s state (step %lld)\n", rc ? "FAIL" : "ok", (long long)f.step);
    }
    first = rc;

    if (rc == 0) {
        float *buf = HW_MALLOC((size_t)VERIFY_BLOCK_ELEMS_ * sizeof(float));
        for (size_t i = (size_t)rank_(d); i < n; i += (size_t)world_(d)) {
            char dims[128];
            fmt_dims_(dims, sizeof(dims), rows[i].ndim, rows[i].shape);
            int r = verify_tensor_(&f, &rows[i], buf, msg);
            if (r == 0) {
                n_ok++;
                n_params += (double)numel_(rows[i].ndim, rows[i].shape);
                if (report)
                    fprintf(report, "ok %s/%s %s\n", rows[i].group, rows[i].name, dims);
            } else {
                n_bad++;
                if (report)
                    fprintf(report, "FAIL %s/%s: %s\n", rows[i].group, rows[i].name, msg);
                if (first == 0) {
                    first = r;
                    snprintf(err, HW_ERR_LEN, "%s", msg);
                }
            }
        }
        free(buf);
    }
    if (world_(d) > 1) {
        n_ok = dist_allreduce_sum_double(d, n_ok);
        n_bad = dist_allreduce_sum_double(d, n_bad);
        n_params = dist_allreduce_sum_double(d, n_params);
    }
    rc = agree_(d, first, path, err);
    if (report && rank_(d) == 0) {
        if (rc == 0)
            fprintf(report, "verified %s: %.0f tensors, %.0f values, checksums ok\n", path, n_ok,
                    n_params);
        else
            fprintf(report, "FAILED %s: %.0f tensors ok, %.0f bad: %s\n", path, n_ok, n_bad, err);
    }
    free(rows);
    H5Eclear2(H5E_DEFAULT);
    h5_loud_(&q);
    ckpt_close(&f);
    return rc;
}

int ckpt_info(const struct dist *d, const char *path, FILE *out, char *err) {
    struct ckpt_file f;
    int rc = ckpt_open(&f, d, path, err);
    if (rc)
        return rc;
    if (rank_(d) == 0) {
        struct ckpt_meta m;
        struct mrow_ *rows = NULL;
        size_t n = 0;
        rc = ckpt_read_meta(&f, &m, err);
        if (rc == 0) {
            struct h5quiet_ q;
            h5_quiet_(&q);
            rc = read_manifest_(&f, &rows, &n, err);
            H5Eclear2(H5E_DEFAULT);
            h5_loud_(&q);
        }
        if (rc == 0 && out) {
            struct stat st;
            int32_t world = 0;
            struct h5quiet_ q;
            h5_quiet_(&q);
            read_attr_((hid_t)f.fid, "world", H5T_STD_I32LE, H5T_NATIVE_INT32, &world);
            H5Eclear2(H5E_DEFAULT);
            h5_loud_(&q);
            long long size = stat(path, &st) == 0 ? (long long)st.st_size : -1;
            fprintf(out, "file:          %s\n", path);
            fprintf(out, "format:        %s version %d\n", CKPT_FORMAT, f.format_version);
            fprintf(out, "step:          %lld\n", (long long)m.step);
            fprintf(out, "tokens_seen:   %lld\n", (long long)m.tokens_seen);
            fprintf(out, "written by:    %d rank(s)\n", (int)world);
            fprintf(out, "file size:     %lld bytes (%.1f MiB)\n", size, (double)size / 1048576.0);
            fprintf(out, "model_sig:     %s\n", m.model_sig);
            fprintf(out, "rng:           %016llx %016llx %016llx %016llx\n",
                    (unsigned long long)m.rng[0], (unsigned long long)m.rng[1],
                    (unsigned long long)m.rng[2], (unsigned long long)m.rng[3]);
            fprintf(out, "cursor:       ");
            for (int i = 0; i < m.n_cursor; i++)
                fprintf(out, " %lld", (long long)m.cursor[i]);
            fprintf(out, "%s\n", m.n_cursor ? "" : " (none)");
            for (size_t i = 0; i < n; i++) {
                size_t j = 0;
                while (j < i && strcmp(rows[j].group, rows[i].group) != 0)
                    j++;
                if (j < i)
                    continue; /* group already printed */
                double cnt = 0, params = 0;
                for (size_t k = i; k < n; k++) {
                    if (strcmp(rows[k].group, rows[i].group) == 0) {
                        cnt++;
                        params += (double)numel_(rows[k].ndim, rows[k].shape);
                    }
                }
                fprintf(out, "group %-8s %.0f tensors, %.0f parameters\n", rows[i].group, cnt,
                        params);
            }
            fprintf(out, "tokenizer:     %zu bytes of JSON\n", strlen(m.tokenizer_json));
            fprintf(out, "config:        %zu bytes; first lines:\n", strlen(m.config_yaml));
            const char *p = m.config_yaml;
            for (int line = 0; line < 8 && *p; line++) {
                size_t len = strcspn(p, "\n");
                fprintf(out, "  | %.*s\n", (int)len, p);
                p += len + (p[len] == '\n');
            }
        }
        ckpt_meta_free(&m);
        free(rows);
    }
    rc = agree_(d, rc, path, err);
    ckpt_close(&f);
    return rc;
}
