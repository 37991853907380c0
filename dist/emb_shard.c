/* dist/emb_shard.c -- row-sharded embedding lookups and gradient scatters (see emb_shard.h).
 * No MPI here: the exchanges are dist_alltoall_int and dist_alltoallv_bytes on host buffers; the
 * table rows are read and updated through the backend that holds them. */
#include "emb_shard.h"

#include "../core/check.h"

#include <stdlib.h>
#include <string.h>

void emb_shard_range(int64_t n, int p, int r, int64_t *lo, int64_t *hi) {
    int64_t per = (n + p - 1) / p;
    *lo = per * r < n ? per * r : n;
    *hi = per * (r + 1) < n ? per * (r + 1) : n;
}

/* Ids per owner (ids sorted, so each owner's ids are contiguous). */
static void owner_counts(int64_t n_rows, int p, const int32_t *ids, int n_ids, int *cnt) {
    int64_t per = (n_rows + p - 1) / p;
    memset(cnt, 0, sizeof(int) * (size_t)p);
    for (int i = 0; i < n_ids; i++) {
        HW_ASSERT(ids[i] >= 0 && ids[i] < n_rows && (i == 0 || ids[i] > ids[i - 1]));
        cnt[ids[i] / per]++;
    }
}

/* Send each owner its ids; returns the ids this rank must serve (malloc'd) and fills the
 * per-rank counts both ways. */
static int32_t *exchange_ids(struct dist *d, enum dist_group g, int64_t n_rows, const int32_t *ids,
                             int n_ids, int *scnt, int *rcnt, int *n_recv) {
    int p = dist_group_size(d, g);
    owner_counts(n_rows, p, ids, n_ids, scnt);
    dist_alltoall_int(d, g, scnt, rcnt);
    int tot = 0;
    for (int i = 0; i < p; i++)
        tot += rcnt[i];
    int *sb = HW_MALLOC(sizeof(int) * 2 * (size_t)p), *rb = sb + p;
    for (int i = 0; i < p; i++) {
        sb[i] = scnt[i] * (int)sizeof(int32_t);
        rb[i] = rcnt[i] * (int)sizeof(int32_t);
    }
    int32_t *req = HW_MALLOC(sizeof(int32_t) * (size_t)(tot ? tot : 1));
    dist_alltoallv_bytes(d, g, ids, sb, req, rb);
    free(sb);
    *n_recv = tot;
    return req;
}

void emb_shard_gather(struct dist *d, enum dist_group g, const struct ops *be, const float *local,
                      int64_t n_rows, int dim, const int32_t *ids, int n_ids, float *out) {
    int p = dist_group_size(d, g), me = dist_group_rank(d, g), n_req;
    int64_t lo, hi;
    emb_shard_range(n_rows, p, me, &lo, &hi);
    int *cnt = HW_MALLOC(sizeof(int) * 4 * (size_t)p), *rcnt = cnt + p, *sb = cnt + 2 * p,
        *rb = cnt + 3 * p;
    int32_t *req = exchange_ids(d, g, n_rows, ids, n_ids, cnt, rcnt, &n_req);
    float *rows = HW_MALLOC(sizeof(float) * (size_t)(n_req ? n_req : 1) * (size_t)dim);
    /* the requested rows, gathered where the table lives, then brought to the host */
    int32_t *lrow = HW_MALLOC(sizeof(int32_t) * (size_t)(n_req ? n_req : 1));
    for (int i = 0; i < n_req; i++) {
        HW_ASSERT(req[i] >= lo && req[i] < hi);
        lrow[i] = (int32_t)(req[i] - lo);
    }
    if (n_req) {
        int32_t *lrow_d = be->alloc(sizeof(int32_t) * (size_t)n_req);
        float *rows_d = be->alloc(sizeof(float) * (size_t)n_req * dim);
        be->upload(lrow_d, lrow, sizeof(int32_t) * (size_t)n_req);
        be->embed_forward(rows_d, lrow_d, local, n_req, dim, (int)(hi - lo));
        be->download(rows, rows_d, sizeof(float) * (size_t)n_req * dim);
        be->free(lrow_d);
        be->free(rows_d);
    }
    free(lrow);
    for (int i = 0; i < p; i++) { /* the rows go back the way the ids came */
        sb[i] = rcnt[i] * dim * (int)sizeof(float);
        rb[i] = cnt[i] * dim * (int)sizeof(float);
    }
    dist_alltoallv_bytes(d, g, rows, sb, out, rb);
    free(rows);
    free(req);
    free(cnt);
}

struct req_ent {
    int32_t id;
    int k; /* position in the received list (rank order) */
};

static int by_id_then_k(const void *a, const void *b) {
    const struct req_ent *x = a, *y = b;
    if (x->id != y->id)
        return (x->id > y->id) - (x->id < y->id);
    return (x->k > y->k) - (x->k < y->k);
}

void emb_shard_scatter_add(struct dist *d, enum dist_group g, const struct ops *be,
                           float *local_grad, int64_t n_rows, int dim, const int32_t *ids,
                           int n_ids, const double *grad) {
    int p = dist_group_size(d, g), me = dist_group_rank(d, g), n_req;
    int64_t lo, hi;
    emb_shard_range(n_rows, p, me, &lo, &hi);
    int *cnt = HW_MALLOC(sizeof(int) * 4 * (size_t)p), *rcnt = cnt + p, *sb = cnt + 2 * p,
        *rb = cnt + 3 * p;
    int32_t *req = exchange_ids(d, g, n_rows, ids, n_ids, cnt, rcnt, &n_req);
    double *rows = HW_MALLOC(sizeof(double) * (size_t)(n_req ? n_req : 1) * (size_t)dim);
    for (int i = 0; i < p; i++) {
        sb[i] = cnt[i] * dim * (int)sizeof(double);
        rb[i] = rcnt[i] * dim * (int)sizeof(double);
    }
    dist_alltoallv_bytes(d, g, grad, sb, rows, rb);
    /* the partial sums of one row from every rank are added in double, in rank order, and
     * rounded once: the same value as one process summing the whole batch */
    struct req_ent *e = HW_MALLOC(sizeof(*e) * (size_t)(n_req ? n_req : 1));
    for (int i = 0; i < n_req; i++) {
        HW_ASSERT(req[i] >= lo && req[i] < hi);
        e[i].id = req[i];
        e[i].k = i;
    }
    qsort(e, (size_t)n_req, sizeof(*e), by_id_then_k);
    /* one summed row per distinct id (host), then added where the table lives */
    double *acc = HW_MALLOC(sizeof(double) * (size_t)(n_req ? n_req : 1) * (size_t)dim);
    int32_t *lrow = HW_MALLOC(sizeof(int32_t) * (size_t)(n_req ? n_req : 1));
    int nu = 0;
    for (int a = 0; a < n_req; nu++) {
        int b = a;
        double *r = acc + (size_t)nu * dim;
        for (int k = 0; k < dim; k++)
            r[k] = 0.0;
        for (; b < n_req && e[b].id == e[a].id; b++)
            for (int k = 0; k < dim; k++)
                r[k] += rows[(size_t)e[b].k * dim + k];
        lrow[nu] = (int32_t)(e[a].id - lo);
        a = b;
    }
    if (nu) {
        int32_t *lrow_d = be->alloc(sizeof(int32_t) * (size_t)nu);
        double *acc_d = be->alloc(sizeof(double) * (size_t)nu * dim);
        be->upload(lrow_d, lrow, sizeof(int32_t) * (size_t)nu);
        be->upload(acc_d, acc, sizeof(double) * (size_t)nu * dim);
        be->rows_scatter_add_f64(local_grad, lrow_d, nu, dim, acc_d);
        be->free(lrow_d);
        be->free(acc_d);
    }
    free(lrow);
    free(acc);
    free(e);
    free(rows);
    free(req);
    free(cnt);
}
