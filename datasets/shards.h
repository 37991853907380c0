/* datasets/shards.h -- token shards and the training data loader.
 * A shard is an HDF5 file holding one 1-D dataset /tokens (uint16 when the vocabulary fits,
 * else uint32; chunked, Fletcher32-checksummed) with root attributes format="headwise-tokens",
 * format_version=1, vocab, n_tokens. docs/data.md documents it.
 * The loader cuts the shard into non-overlapping windows of T+1 tokens (inputs and shifted
 * targets), visits them in a per-epoch permutation keyed by (seed, epoch), and is positioned
 * by one global sample counter, so a run resumes at an exact position and the order does not
 * depend on the rank grid. */
#ifndef HW_SHARDS_H
#define HW_SHARDS_H

#include <stdint.h>

#define SHARD_FORMAT  "headwise-tokens"
#define SHARD_VERSION 1

/* Write tokens to path atomically (path.tmp then rename). Returns 0 or HW_EIO. */
int shard_write(const char *path, const int32_t *tok, int64_t n, int vocab, char *err);

struct shard {
    int64_t file, dset; /* HDF5 ids */
    int64_t n;          /* tokens */
    int32_t *mem;       /* all n tokens, once shard_check_vocab cached them (NULL: read the file) */
    int vocab;
    char path[512];
};

/* Open and validate the header. Errors name the path: missing (HW_EIO), not HDF5 / truncated /
 * wrong format (HW_EFORMAT). */
int shard_open(struct shard *s, const char *path, char *err);
/* Check every token of the shard against the vocabulary of the model that will read it (once,
 * at open, in blocks): the first id outside [0, vocab) is an error naming the file, the offset,
 * the id and the vocabulary size. Afterwards shard_read checks against min(shard, model). A
 * shard of at most SHARD_CACHE_BYTES (4 bytes a token; HW_SHARD_CACHE_MB overrides) is kept in
 * memory from then on: reads make no HDF5 call (a background checkpoint write may be using the
 * library). */
#define SHARD_CACHE_BYTES ((int64_t)1 << 30)
int shard_check_vocab(struct shard *s, int vocab, char *err);
/* Read n tokens from offset into out, checking every id < vocab and the checksum. */
int shard_read(struct shard *s, int32_t *out, int64_t offset, int64_t n, char *err);
void shard_close(struct shard *s);

struct loader {
    struct shard sh;
    int T;       /* sequence length */
    int shuffle; /* 1: permuted windows per epoch (train); 0: in order (validation) */
    uint64_t seed;
    int64_t n_windows;  /* (n - 1) / T */
    int64_t pos;        /* global sample counter: samples handed out so far */
    int64_t perm_epoch; /* epoch the permutation below belongs to (-1: none) */
    int64_t *perm;
    int32_t *buf; /* T + 1 tokens */
};

/* a[0..n) = 0..n-1, shuffled (Fisher-Yates, draws rng_uniform(key, i)) when shuffle is set: the
 * window orders of the loaders here and in datasets/mix.h */
void shard_permutation(int64_t *a, int64_t n, uint64_t key, int shuffle);

int loader_open(struct loader *l, const char *path, int T, int shuffle, uint64_t seed, char *err);
/* Fill tokens and targets (B, T) with the next B windows. Returns 0 or an error. */
int loader_next(struct loader *l, int32_t *tokens, int32_t *targets, int B, char *err);
/* Position at sample counter pos (resume). */
void loader_seek(struct loader *l, int64_t pos);
void loader_close(struct loader *l);

#endif /* HW_SHARDS_H */
