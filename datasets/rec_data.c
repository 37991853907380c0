/* datasets/rec_data.c -- MovieLens-100k and Taobao UserBehavior loaders, the synthetic
 * generator and the DARE sample recipe (see rec_data.h). */
#define _POSIX_C_SOURCE 200809L
#include "rec_data.h"

#include "../core/check.h"
#include "../core/fsutil.h"
#include "../core/interrupt.h"
#include "../core/rng.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One interaction before grouping. */
struct ev {
    int64_t user, ts;
    int32_t item;
    int32_t ord; /* file order: ties in time keep it */
};

struct evs {
    struct ev *v;
    int64_t n, cap;
};

static void ev_push(struct evs *e, int64_t user, int32_t item, int64_t ts) {
    if (e->n == e->cap) {
        e->cap = e->cap ? 2 * e->cap : 4096;
        e->v = HW_REALLOC(e->v, sizeof(*e->v) * (size_t)e->cap);
    }
    HW_ASSERT(e->n < INT32_MAX);
    e->v[e->n] = (struct ev){user, ts, item, (int32_t)e->n};
    e->n++;
}

static int by_user_time(const void *a, const void *b) {
    const struct ev *x = a, *y = b;
    if (x->user != y->user)
        return x->user < y->user ? -1 : 1;
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    return (x->ord > y->ord) - (x->ord < y->ord);
}

/* Group by user, time-sorted; users with fewer than 3 interactions are dropped. */
static void build_sequences(struct rec_data *d, struct evs *e) {
    qsort(e->v, (size_t)e->n, sizeof(*e->v), by_user_time);
    d->off = HW_MALLOC(sizeof(int64_t) * (size_t)(e->n + 2));
    d->seq = HW_MALLOC(sizeof(int32_t) * (size_t)(e->n + 1));
    d->off[0] = 0;
    int64_t k = 0;
    for (int64_t a = 0; a < e->n;) {
        int64_t b = a;
        while (b < e->n && e->v[b].user == e->v[a].user)
            b++;
        if (b - a >= 3) {
            for (int64_t i = a; i < b; i++)
                d->seq[k++] = e->v[i].item;
            d->off[++d->n_users] = k;
        } else {
            d->users_dropped++;
        }
        a = b;
    }
    free(e->v);
    memset(e, 0, sizeof(*e));
}

/* Split a line in place at sep; returns the field count (at most max). */
static int split_fields(char *s, char sep, char **f, int max) {
    int n = 0;
    f[n++] = s;
    for (char *p = s; *p; p++)
        if (*p == sep) {
            *p = '\0';
            if (n == max)
                return max + 1;
            f[n++] = p + 1;
        }
    return n;
}

static int parse_i64(const char *s, int64_t *v) {
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || end == s || *end)
        return -1;
    *v = x;
    return 0;
}

static void chomp(char *s) {
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
}

/* ------------------------------------------------------------------------------------------ */
/* MovieLens-100k */

int rec_data_movielens(struct rec_data *d, const char *dir, char *err) {
    memset(d, 0, sizeof(*d));
    char path[CFG_PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/u.item", dir);
    FILE *f = fs_fopen_read(path, err);
    if (!f)
        return HW_EIO;
    char *line = NULL;
    size_t cap = 0;
    int ln = 0, rc = 0, max_item = 0;
    int32_t *cat = NULL;
    while (getline(&line, &cap, f) > 0) {
        ln++;
        chomp(line);
        if (!line[0])
            continue;
        char *fl[32];
        int nf = split_fields(line, '|', fl, 30);
        int64_t id;
        if (nf != 24 || parse_i64(fl[0], &id) || id < 1 || id > 10000000) {
            rc = hw_errf(err, HW_EFORMAT,
                         "%s:%d: error: expected 24 '|'-separated fields starting with a positive "
                         "movie id (got %d fields)",
                         path, ln, nf > 30 ? 30 : nf);
            goto done;
        }
        int genre = -1;
        for (int g = 0; g < 19; g++) {
            if (strcmp(fl[5 + g], "0") && strcmp(fl[5 + g], "1")) {
                rc = hw_errf(err, HW_EFORMAT, "%s:%d: error: genre flag %d is '%.20s', not 0 or 1",
                             path, ln, g + 1, fl[5 + g]);
                goto done;
            }
            if (genre < 0 && fl[5 + g][0] == '1')
                genre = g;
        }
        if (id >= max_item) {
            int nm = (int)id + 1;
            cat = HW_REALLOC(cat, sizeof(int32_t) * (size_t)nm);
            for (int i = max_item; i < nm; i++)
                cat[i] = 0;
            max_item = nm;
        }
        if (cat[id]) {
            rc = hw_errf(err, HW_EFORMAT, "%s:%d: error: movie id %lld listed twice", path, ln,
                         (long long)id);
            goto done;
        }
        cat[id] = 1 + (genre < 0 ? 0 : genre); /* first listed genre; none: "unknown" */
    }
    fclose(f);
    f = NULL;
    if (!max_item) {
        rc = hw_errf(err, HW_EFORMAT, "%s:1: error: no movies", path);
        goto done;
    }
    d->n_item = max_item;
    d->n_cat = 20;
    d->item_cat = cat;
    cat = NULL;
    snprintf(path, sizeof(path), "%s/u.data", dir);
    f = fs_fopen_read(path, err);
    if (!f) {
        rc = HW_EIO;
        goto done;
    }
    struct evs e = {0};
    ln = 0;
    while (getline(&line, &cap, f) > 0) {
        ln++;
        if (hw_interrupted()) {
            rc = hw_errf(err, HW_ESTOP, "%s:%d: stopped by a signal while reading", path, ln);
            free(e.v);
            goto done;
        }
        chomp(line);
        if (!line[0])
            continue;
        char *fl[8];
        int64_t v[4];
        int nf = split_fields(line, '\t', fl, 6);
        if (nf != 4 || parse_i64(fl[0], &v[0]) || parse_i64(fl[1], &v[1]) ||
            parse_i64(fl[2], &v[2]) || parse_i64(fl[3], &v[3])) {
            rc = hw_errf(err, HW_EFORMAT,
                         "%s:%d: error: expected 4 tab-separated integers: user item rating "
                         "timestamp",
                         path, ln);
            free(e.v);
            goto done;
        }
        if (v[1] < 1 || v[1] >= d->n_item || !d->item_cat[v[1]]) {
            rc = hw_errf(err, HW_EFORMAT, "%s:%d: error: item %lld is not in u.item", path, ln,
                         (long long)v[1]);
            free(e.v);
            goto done;
        }
        ev_push(&e, v[0], (int32_t)v[1], v[3]);
        d->rows++;
    }
    if (!d->rows) {
        rc = hw_errf(err, HW_EFORMAT, "%s:1: error: no ratings", path);
        goto done;
    }
    build_sequences(d, &e);
done:
    if (f)
        fclose(f);
    free(line);
    free(cat);
    if (rc)
        rec_data_free(d);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Taobao UserBehavior: user,item,category,behavior,timestamp; pv rows only (DARE) */

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int64_t uniq64(int64_t *v, int64_t n) {
    if (!n)
        return 0;
    qsort(v, (size_t)n, sizeof(*v), cmp_i64);
    int64_t k = 1;
    for (int64_t i = 1; i < n; i++)
        if (v[i] != v[k - 1])
            v[k++] = v[i];
    return k;
}

static int32_t index_of(const int64_t *u, int64_t n, int64_t x) {
    const int64_t *p = bsearch(&x, u, (size_t)n, sizeof(*u), cmp_i64);
    HW_ASSERT(p);
    return (int32_t)(p - u) + 1;
}

int rec_data_taobao(struct rec_data *d, const char *csv, char *err) {
    memset(d, 0, sizeof(*d));
    FILE *f = fs_fopen_read(csv, err);
    if (!f)
        return HW_EIO;
    char *line = NULL;
    size_t cap = 0;
    int ln = 0, rc = 0;
    int64_t n = 0, cap_r = 0;
    int64_t(*r)[4] = NULL; /* user, item, cat, ts */
    while (getline(&line, &cap, f) > 0) {
        ln++;
        if (hw_interrupted()) {
            rc = hw_errf(err, HW_ESTOP, "%s:%d: stopped by a signal while reading", csv, ln);
            goto done;
        }
        chomp(line);
        if (!line[0])
            continue;
        char *fl[8];
        int64_t v[4];
        int nf = split_fields(line, ',', fl, 6);
        if (nf != 5 || parse_i64(fl[0], &v[0]) || parse_i64(fl[1], &v[1]) ||
            parse_i64(fl[2], &v[2]) || parse_i64(fl[4], &v[3]) || v[1] < 0 || v[2] < 0) {
            rc = hw_errf(err, HW_EFORMAT,
                         "%s:%d: error: expected user,item,category,behavior,timestamp with "
                         "integer ids and timestamp",
                         csv, ln);
            goto done;
        }
        d->rows++;
        if (strcmp(fl[3], "pv")) {
            if (strcmp(fl[3], "cart") && strcmp(fl[3], "fav") && strcmp(fl[3], "buy")) {
                rc = hw_errf(err, HW_EFORMAT,
                             "%s:%d: error: behavior '%.20s' (expected pv, cart, fav or buy)", csv,
                             ln, fl[3]);
                goto done;
            }
            d->skipped_rows++;
            continue;
        }
        if (n == cap_r) {
            cap_r = cap_r ? 2 * cap_r : 4096;
            r = HW_REALLOC(r, sizeof(*r) * (size_t)cap_r);
        }
        memcpy(r[n++], v, sizeof(v));
    }
    if (!n) {
        rc = hw_errf(err, HW_EFORMAT, "%s:1: error: no pv rows", csv);
        goto done;
    }
    /* re-index items and categories by ascending raw id */
    int64_t *ui = HW_MALLOC(sizeof(int64_t) * (size_t)n),
            *uc = HW_MALLOC(sizeof(int64_t) * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        ui[i] = r[i][1];
        uc[i] = r[i][2];
    }
    int64_t ni = uniq64(ui, n), nc = uniq64(uc, n);
    d->n_item = (int)ni + 1;
    d->n_cat = (int)nc + 1;
    d->item_cat = HW_CALLOC((size_t)d->n_item, sizeof(int32_t));
    struct evs e = {0};
    for (int64_t i = 0; i < n; i++) {
        int32_t it = index_of(ui, ni, r[i][1]), c = index_of(uc, nc, r[i][2]);
        if (!d->item_cat[it])
            d->item_cat[it] = c;
        else if (d->item_cat[it] != c)
            d->cat_conflicts++;
        ev_push(&e, r[i][0], it, r[i][3]);
    }
    free(ui);
    free(uc);
    build_sequences(d, &e);
done:
    fclose(f);
    free(line);
    free(r);
    if (rc)
        rec_data_free(d);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* synthetic: relevance by category, the label by a per-item sign */

void rec_data_synth(struct rec_data *d, const struct cfg_rec *c, uint64_t seed) {
    memset(d, 0, sizeof(*d));
    const int U = c->synth_users, N = c->synth_items, C = c->synth_cats, L = c->max_len;
    const uint64_t key = rng_hash2(seed, 0x5e7f);
    d->n_item = N + 1;
    d->n_cat = C + 1;
    d->item_cat = HW_CALLOC((size_t)d->n_item, sizeof(int32_t));
    /* item i: category 1 + (i-1) % C, sign by parity of (i-1) / C */
    for (int i = 1; i <= N; i++)
        d->item_cat[i] = 1 + (i - 1) % C;
    const int per_cat = N / C; /* items of category c: c + C*k for k < per_cat */
    struct evs e = {0};
    uint64_t ctr = 0;
    int *pref = HW_MALLOC(sizeof(int) * (size_t)C);
    for (int u = 0; u < U; u++) {
        /* half of the categories, each with the user's sign */
        for (int k = 0; k < C; k++)
            pref[k] = k;
        for (int k = C - 1; k > 0; k--) {
            int j = (int)(rng_uniform(key, ctr++) * (k + 1));
            int t = pref[k];
            pref[k] = pref[j];
            pref[j] = t;
        }
        int P = C / 2 > 1 ? C / 2 : 1;
        int T = L / 2 + 3 + (int)(rng_uniform(key, ctr++) * L);
        for (int t = 0; t < T; t++) {
            int cc = pref[(int)(rng_uniform(key, ctr++) * P)];
            int sign = rng_hash2(rng_hash2(seed, (uint64_t)u), (uint64_t)cc) & 1;
            if (rng_uniform(key, ctr++) < 0.1)
                sign ^= 1; /* noise */
            int k = (int)(rng_uniform(key, ctr++) * (per_cat / 2)) * 2 + sign;
            if (k >= per_cat)
                k = sign;
            int item = 1 + cc + C * k;
            ev_push(&e, u, item, t);
            d->rows++;
        }
    }
    free(pref);
    build_sequences(d, &e);
}

/* ------------------------------------------------------------------------------------------ */
/* the DARE recipe */

static void split_push(struct rec_split *s, int *cap, int32_t u, int32_t pos, int32_t item,
                       float label) {
    if (s->n == *cap) {
        *cap = *cap ? 2 * *cap : 1024;
        s->user = HW_REALLOC(s->user, sizeof(int32_t) * (size_t)*cap);
        s->pos = HW_REALLOC(s->pos, sizeof(int32_t) * (size_t)*cap);
        s->item = HW_REALLOC(s->item, sizeof(int32_t) * (size_t)*cap);
        s->label = HW_REALLOC(s->label, sizeof(float) * (size_t)*cap);
    }
    s->user[s->n] = u;
    s->pos[s->n] = pos;
    s->item[s->n] = item;
    s->label[s->n] = label;
    s->n++;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* A negative for a user: drawn by item frequency (cum over ids), not in mine (sorted). */
static int32_t draw_negative(const double *cum, int n_item, uint64_t key, uint64_t *ctr,
                             const int32_t *mine, int n) {
    const double total = cum[n_item - 1];
    for (int a = 0; a < 10000; a++) {
        double x = rng_uniform(key, (*ctr)++) * total;
        int32_t lo = 1, hi = n_item - 1;
        while (lo < hi) {
            int32_t mid = (lo + hi) / 2;
            if (cum[mid] > x)
                hi = mid;
            else
                lo = mid + 1;
        }
        if (!bsearch(&lo, mine, (size_t)n, sizeof(int32_t), cmp_i32))
            return lo;
    }
    return 0;
}

int rec_data_make_splits(struct rec_data *d, const struct cfg_rec *c, uint64_t seed, char *err) {
    /* item frequencies over every sequence, cumulative over ids */
    double *cum = HW_CALLOC((size_t)d->n_item + 1, sizeof(double));
    for (int64_t i = 0; i < d->off[d->n_users]; i++)
        cum[d->seq[i]] += 1.0;
    for (int i = 1; i < d->n_item; i++)
        cum[i] += cum[i - 1];
    const uint64_t key = rng_hash2(seed, 0x4e6);
    uint64_t ctr = 0;
    int caps[REC_SPLITS] = {0};
    int32_t *mine = HW_MALLOC(sizeof(int32_t) * (size_t)(d->off[d->n_users] + 1));
    int rc = 0;
    for (int u = 0; u < d->n_users && !rc; u++) {
        const int32_t *s = d->seq + d->off[u];
        const int n = (int)(d->off[u + 1] - d->off[u]);
        memcpy(mine, s, sizeof(int32_t) * (size_t)n);
        qsort(mine, (size_t)n, sizeof(int32_t), cmp_i32);
        /* targets: validation n-2, test n-1, training n-3, n-8, ... */
        for (int t = 0; t < 2 + c->train_targets && !rc; t++) {
            int sp = t == 0 ? REC_VAL : t == 1 ? REC_TEST : REC_TRAIN;
            int pos = t == 0 ? n - 2 : t == 1 ? n - 1 : n - 3 - 5 * (t - 2);
            if (pos < 1)
                break;
            if ((pos < c->max_len ? pos : c->max_len) < c->min_hist) {
                d->targets_short++;
                continue;
            }
            split_push(&d->split[sp], &caps[sp], u, pos, s[pos], 1.0f);
            for (int k = 0; k < c->negatives && !rc; k++) {
                int32_t neg = draw_negative(cum, d->n_item, key, &ctr, mine, n);
                if (!neg)
                    rc = hw_errf(err, HW_EFORMAT,
                                 "rec data: user %d: no negative outside its %d-item history in "
                                 "10000 draws",
                                 u, n);
                split_push(&d->split[sp], &caps[sp], u, pos, neg, 0.0f);
            }
        }
    }
    free(mine);
    free(cum);
    static const char *const names[REC_SPLITS] = {"train", "val", "test"};
    for (int sp = 0; sp < REC_SPLITS && !rc; sp++)
        if (!d->split[sp].n)
            rc = hw_errf(err, HW_EFORMAT,
                         "rec data: the %s split is empty (%d users with >= 3 interactions, "
                         "rec.min_hist %d)",
                         names[sp], d->n_users, c->min_hist);
    return rc;
}

int rec_data_load(struct rec_data *d, const struct cfg_rec *c, uint64_t seed, char *err) {
    int rc = 0;
    if (!strcmp(c->data, "synth")) {
        rec_data_synth(d, c, seed);
    } else {
        if (!c->path[0])
            return hw_errf(err, HW_ECONFIG, "rec.path: empty; rec.data %s needs a %s", c->data,
                           !strcmp(c->data, "movielens") ? "directory with u.data and u.item"
                                                         : "UserBehavior CSV file");
        rc = !strcmp(c->data, "movielens") ? rec_data_movielens(d, c->path, err)
                                           : rec_data_taobao(d, c->path, err);
    }
    if (!rc)
        rc = rec_data_make_splits(d, c, seed, err);
    if (rc)
        rec_data_free(d);
    return rc;
}

void rec_data_free(struct rec_data *d) {
    free(d->item_cat);
    free(d->off);
    free(d->seq);
    for (int s = 0; s < REC_SPLITS; s++) {
        free(d->split[s].user);
        free(d->split[s].pos);
        free(d->split[s].item);
        free(d->split[s].label);
    }
    memset(d, 0, sizeof(*d));
}

void rec_data_fill(const struct rec_data *d, int s, const int *idx, int B, int L, int32_t *item,
                   int32_t *cat, int32_t *hitem, int32_t *hcat, float *label) {
    const struct rec_split *sp = &d->split[s];
    for (int b = 0; b < B; b++) {
        int i = idx[b];
        HW_ASSERT(i >= 0 && i < sp->n);
        item[b] = sp->item[i];
        cat[b] = d->item_cat[sp->item[i]];
        label[b] = sp->label[i];
        const int32_t *q = d->seq + d->off[sp->user[i]];
        int pos = sp->pos[i], cnt = pos < L ? pos : L;
        for (int j = 0; j < L; j++) {
            int t = j - (L - cnt); /* slot j holds q[pos - cnt + t] */
            int32_t it = t >= 0 ? q[pos - cnt + t] : 0;
            hitem[(size_t)b * L + j] = it;
            hcat[(size_t)b * L + j] = it ? d->item_cat[it] : 0;
        }
    }
}
