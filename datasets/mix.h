/* datasets/mix.h -- the training data of `data.sources`: several sources, each a glob of token
 * shards, mixed by weight. Owns struct mix_loader: the sources' shard lists, their per-epoch
 * orders, the one shard of each source that is open, and the counters that position it.
 *
 * Order. Global sample i (counted over the whole run, every rank reading every sample of the
 * global micro-batch, as the single-shard loader does) comes from the source that a seeded
 * uniform draw u(seed, i) picks against the cumulative normalised weights, so sources appear in
 * the ratio of their weights (a multinomial draw per sample). Source s hands out its own samples
 * in order of its own counter c_s: epoch e = c_s / W_s (W_s = its windows of T+1 tokens over all
 * its shards); within an epoch the shards come in a permutation keyed by (seed, s, e) and each
 * shard's windows in a permutation keyed by (seed, s, e, shard). Nothing depends on the rank
 * grid; the position is (i, c_0, ..., c_{n-1}), the checkpoint's cursor array, so a resume on any
 * grid continues every source exactly.
 *
 * Memory: the shard lists and one open shard per source (cached in memory when it fits
 * SHARD_CACHE_BYTES, datasets/shards.h); opening a shard mid-run takes the HDF5 lock
 * (core/h5lock.h), as a background checkpoint write may be using the library. */
#ifndef HW_MIX_H
#define HW_MIX_H

#include "../core/cfg.h"
#include "shards.h"

#include <stdint.h>

#define MIX_MAX_SOURCES CFG_LIST_MAX

struct mix_source {
    char pattern[CFG_PATH_MAX];
    double weight;
    int n_shards;
    char **paths;       /* (n_shards) sorted */
    int64_t *n_windows; /* (n_shards) windows of T+1 tokens in each shard */
    int64_t total;      /* windows over all shards: one epoch */
    int64_t pos;        /* samples handed out */
    /* the order of the epoch being read */
    int64_t epoch;  /* -1: none yet */
    int *order;     /* (n_shards) shard visit order */
    int64_t *start; /* (n_shards + 1) first window of each visited shard in the epoch */
    /* the shard being read */
    int cur; /* index into paths, -1: none */
    struct shard sh;
    int64_t *perm; /* its window permutation */
};

struct mix_loader {
    int n;
    struct mix_source *src;
    double cum[MIX_MAX_SOURCES]; /* cumulative normalised weights */
    uint64_t seed;
    int T;
    int ordered;     /* 1: no shuffling (validation) */
    int vocab;       /* the model's vocabulary: every shard's ids are checked against it */
    int shard_vocab; /* the largest vocab attribute of any shard */
    int64_t pos;     /* global samples handed out */
    int32_t *buf;    /* T + 1 */
};

/* Expands every source's glob (sorted; a pattern without matches is an error naming it), reads
 * each shard's header. err names the source and file. */
int mix_open(struct mix_loader *m, const struct cfg_wlist *sources, int T, uint64_t seed,
             char *err);
/* One source read in order (sorted shards, windows in order; validation over a glob). */
int mix_open_ordered(struct mix_loader *m, const char *pattern, int T, char *err);
/* The vocabulary every id must be below (the model's), checked as shards are read. */
void mix_set_vocab(struct mix_loader *m, int vocab);
/* The next B samples (B, T) of inputs and targets. */
int mix_next(struct mix_loader *m, int32_t *tokens, int32_t *targets, int B, char *err);
/* The position: out[0] = global samples, out[1 + s] = source s's; returns 1 + n. */
int mix_cursors(const struct mix_loader *m, int64_t *out);
/* Position from a checkpoint's cursors (n must be 1 + the number of sources). */
int mix_seek(struct mix_loader *m, const int64_t *c, int n, char *err);
void mix_close(struct mix_loader *m);

/* The source global sample i comes from (exposed for tests). */
int mix_pick(const struct mix_loader *m, int64_t i);

#endif /* HW_MIX_H */
