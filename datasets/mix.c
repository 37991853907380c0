/* datasets/mix.c -- weighted mixture of shard globs (see mix.h). */
#define _POSIX_C_SOURCE 200809L
#include "mix.h"

#include "../core/check.h"
#include "../core/h5lock.h"
#include "../core/rng.h"

#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int open_locked_(struct shard *sh, const char *path, char *err) {
    h5lock_enter();
    int rc = shard_open(sh, path, err);
    h5lock_leave();
    return rc;
}

static void close_locked_(struct shard *sh) {
    h5lock_enter();
    shard_close(sh);
    h5lock_leave();
}

/* the source's shard list and window counts */
static int scan_source_(struct mix_source *s, const char *label, int T, int *max_vocab, char *err) {
    glob_t g;
    int grc = glob(s->pattern, 0, NULL, &g);
    if (grc != 0 || g.gl_pathc == 0) {
        globfree(&g);
        return hw_errf(err, HW_EIO, "%s%s matches no file", label, s->pattern);
    }
    s->n_shards = (int)g.gl_pathc;
    s->paths = HW_CALLOC((size_t)s->n_shards, sizeof(char *));
    s->n_windows = HW_CALLOC((size_t)s->n_shards, sizeof(int64_t));
    int rc = 0;
    for (int k = 0; k < s->n_shards && !rc; k++) {
        s->paths[k] = HW_STRDUP(g.gl_pathv[k]); /* glob sorts */
        struct shard sh;
        if ((rc = open_locked_(&sh, s->paths[k], err)))
            break;
        s->n_windows[k] = sh.n > T ? (sh.n - 1) / T : 0;
        s->total += s->n_windows[k];
        if (sh.vocab > *max_vocab)
            *max_vocab = sh.vocab;
        close_locked_(&sh);
    }
    globfree(&g);
    if (!rc && s->total == 0)
        rc = hw_errf(err, HW_EFORMAT, "%s%s: no shard holds one sequence of seq_len %d + 1 tokens",
                     label, s->pattern, T);
    return rc;
}

static int open_(struct mix_loader *m, const struct cfg_wlist *sources, int T, uint64_t seed,
                 int ordered, char *err) {
    memset(m, 0, sizeof(*m));
    m->ordered = ordered;
    HW_ASSERT(sources->n >= 1 && sources->n <= MIX_MAX_SOURCES);
    m->n = sources->n;
    m->src = HW_CALLOC((size_t)m->n, sizeof(*m->src));
    m->T = T;
    m->seed = seed;
    m->buf = HW_MALLOC(sizeof(int32_t) * (size_t)(T + 1));
    double total = 0.0, acc = 0.0;
    for (int s = 0; s < m->n; s++)
        total += sources->weight[s];
    int rc = 0;
    for (int s = 0; s < m->n && !rc; s++) {
        struct mix_source *src = &m->src[s];
        snprintf(src->pattern, sizeof(src->pattern), "%s", sources->path[s]);
        src->weight = sources->weight[s];
        src->epoch = -1;
        src->cur = -1;
        acc += sources->weight[s];
        m->cum[s] = s + 1 == m->n ? 1.0 : acc / total;
        char label[48];
        snprintf(label, sizeof(label), "data.sources[%d]: ", s);
        rc = scan_source_(src, ordered ? "" : label, T, &m->shard_vocab, err);
    }
    m->vocab = m->shard_vocab;
    return rc;
}

int mix_open(struct mix_loader *m, const struct cfg_wlist *sources, int T, uint64_t seed,
             char *err) {
    return open_(m, sources, T, seed, 0, err);
}

int mix_open_ordered(struct mix_loader *m, const char *pattern, int T, char *err) {
    struct cfg_wlist *one = HW_CALLOC(1, sizeof(*one));
    one->n = 1;
    one->weight[0] = 1.0;
    snprintf(one->path[0], sizeof(one->path[0]), "%s", pattern);
    int rc = open_(m, one, T, 0, 1, err);
    free(one);
    return rc;
}

void mix_set_vocab(struct mix_loader *m, int vocab) {
    m->vocab = vocab;
}

int mix_pick(const struct mix_loader *m, int64_t i) {
    double u = rng_uniform(rng_hash2(m->seed, 0x6d69780000ULL), (uint64_t)i);
    for (int s = 0; s < m->n; s++)
        if (u < m->cum[s])
            return s;
    return m->n - 1;
}

static uint64_t key_(const struct mix_loader *m, int s, int64_t epoch, int64_t shard) {
    return rng_hash2(rng_hash2(rng_hash2(m->seed, 0x6d69780001ULL + (uint64_t)s), (uint64_t)epoch),
                     (uint64_t)(shard + 1));
}

/* the shard order of epoch e (shards without a window are skipped by their zero span) */
static void plan_epoch_(const struct mix_loader *m, int si, int64_t e) {
    struct mix_source *s = &m->src[si];
    if (!s->order) {
        s->order = HW_MALLOC(sizeof(int) * (size_t)s->n_shards);
        s->start = HW_MALLOC(sizeof(int64_t) * (size_t)(s->n_shards + 1));
    }
    int64_t *tmp = HW_MALLOC(sizeof(int64_t) * (size_t)s->n_shards);
    shard_permutation(tmp, s->n_shards, key_(m, si, e, -1), !m->ordered);
    s->start[0] = 0;
    for (int k = 0; k < s->n_shards; k++) {
        s->order[k] = (int)tmp[k];
        s->start[k + 1] = s->start[k] + s->n_windows[s->order[k]];
    }
    free(tmp);
    s->epoch = e;
}

/* make shard k of the order current (opened, vocabulary-checked, its windows permuted) */
static int use_shard_(struct mix_loader *m, int si, int shard, char *err) {
    struct mix_source *s = &m->src[si];
    if (s->cur >= 0)
        close_locked_(&s->sh);
    free(s->perm);
    s->perm = NULL;
    s->cur = -1;
    int rc = open_locked_(&s->sh, s->paths[shard], err);
    if (!rc)
        rc = shard_check_vocab(&s->sh, m->vocab, err);
    if (rc) {
        close_locked_(&s->sh);
        return rc;
    }
    s->cur = shard;
    s->perm = HW_MALLOC(sizeof(int64_t) * (size_t)(s->n_windows[shard] ? s->n_windows[shard] : 1));
    shard_permutation(s->perm, s->n_windows[shard], key_(m, si, s->epoch, shard), !m->ordered);
    return 0;
}

/* the next window of source si into m->buf */
static int source_next_(struct mix_loader *m, int si, char *err) {
    struct mix_source *s = &m->src[si];
    const int64_t e = s->pos / s->total, w = s->pos % s->total;
    if (e != s->epoch) {
        plan_epoch_(m, si, e);
        if (s->cur >= 0) { /* the same file's windows come in a new order */
            close_locked_(&s->sh);
            free(s->perm);
            s->perm = NULL;
            s->cur = -1;
        }
    }
    int lo = 0, hi = s->n_shards; /* start[lo] <= w < start[hi] */
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (s->start[mid] <= w)
            lo = mid;
        else
            hi = mid;
    }
    const int shard = s->order[lo];
    int rc = shard == s->cur ? 0 : use_shard_(m, si, shard, err);
    if (rc)
        return rc;
    rc = shard_read(&s->sh, m->buf, s->perm[w - s->start[lo]] * m->T, m->T + 1, err);
    if (!rc)
        s->pos++;
    return rc;
}

int mix_next(struct mix_loader *m, int32_t *tokens, int32_t *targets, int B, char *err) {
    const int T = m->T;
    for (int b = 0; b < B; b++) {
        int rc = source_next_(m, mix_pick(m, m->pos), err);
        if (rc)
            return rc;
        memcpy(tokens + (size_t)b * T, m->buf, sizeof(int32_t) * (size_t)T);
        memcpy(targets + (size_t)b * T, m->buf + 1, sizeof(int32_t) * (size_t)T);
        m->pos++;
    }
    return 0;
}

int mix_cursors(const struct mix_loader *m, int64_t *out) {
    out[0] = m->pos;
    for (int s = 0; s < m->n; s++)
        out[1 + s] = m->src[s].pos;
    return 1 + m->n;
}

int mix_seek(struct mix_loader *m, const int64_t *c, int n, char *err) {
    if (n != 1 + m->n)
        return hw_errf(err, HW_EMISMATCH,
                       "the checkpoint holds %d data cursors; data.sources has %d sources (%d "
                       "cursors): the sources changed since it was written",
                       n, m->n, 1 + m->n);
    m->pos = c[0];
    for (int s = 0; s < m->n; s++)
        m->src[s].pos = c[1 + s];
    return 0;
}

void mix_close(struct mix_loader *m) {
    for (int s = 0; s < m->n; s++) {
        struct mix_source *src = &m->src[s];
        if (src->cur >= 0)
            close_locked_(&src->sh);
        for (int k = 0; k < src->n_shards; k++)
            free(src->paths[k]);
        free(src->paths);
        free(src->n_windows);
        free(src->order);
        free(src->start);
        free(src->perm);
    }
    free(m->src);
    free(m->buf);
    memset(m, 0, sizeof(*m));
}
