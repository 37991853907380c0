/* datasets/prepare.h -- streaming corpus tokenization for `headwise data prepare` on many files:
 * each input file is read in blocks (text) or lines (JSONL), encoded piece by piece and written
 * to numbered token shards of at most a given number of tokens, so memory does not grow with the
 * corpus. Owns the segmenting of a file, the train/val cut and the shard numbering.
 *
 * Segments. A text file is encoded in segments that end after a newline followed by a printable
 * non-space ASCII byte: every pre-tokenizer headwise supports (its own, GPT-2's and LLaMA-3's
 * regexes) has a chunk boundary there, so the ids equal those of encoding the whole file at
 * once. A JSONL file is encoded a document at a time, each followed by the end-of-text id, which
 * equals encoding the documents joined by the end-of-text string.
 *
 * Split and names. Of every file, the segments (documents) that start before (1 - val_frac) of
 * its bytes go to training, the rest to validation. Shards never span files: input file i (of
 * the sorted list) gives DIR/train_IIIII_PPP.h5 and DIR/val_IIIII_PPP.h5, parts PPP of at most
 * shard_tokens tokens, so the output does not depend on how files are shared out over ranks. */
#ifndef HW_PREPARE_H
#define HW_PREPARE_H

#include "bpe.h"

#include <stddef.h>
#include <stdint.h>

struct prep_opts {
    const char *out;      /* output directory (exists) */
    int jsonl;            /* -1: by extension (.jsonl), 0 text, 1 JSONL */
    const char *field;    /* JSONL: the text field */
    double val_frac;      /* [0, 1) */
    int64_t shard_tokens; /* tokens per shard, at most */
};

struct prep_stats {
    int64_t bytes, docs, train_tokens, val_tokens;
    int train_shards, val_shards;
};

/* Whether path is read as JSONL under o->jsonl (-1: by its .jsonl extension). */
int prep_is_jsonl(const char *path, int jsonl);

/* Tokenizes input file index idx at path into shards in o->out; adds to st. Errors name
 * file:line (JSONL) or the file. */
int prep_file(const struct bpe *tok, const char *path, int idx, const struct prep_opts *o,
              struct prep_stats *st, char *err);

/* The first max_bytes of the files' text (JSONL: documents joined with eot), for training a
 * tokenizer. Caller frees; *len gets the size. NULL with err on a read error. */
char *prep_sample(char *const *paths, int n, const struct prep_opts *o, const char *eot,
                  size_t max_bytes, size_t *len, char *err);

#endif /* HW_PREPARE_H */
