/* fuzz/fuzz_entries.h -- one entry function per file reader, shared by the libFuzzer targets
 * (fuzz/fuzz_<target>.c, built by `make fuzz`) and by the regression test
 * (tests/test_fuzz_regress.c, run by `make test` on fuzz/corpus/<target>/ and
 * fuzz/regress/<target>/). Each takes one input file's bytes, feeds them to the reader (through
 * a temporary file where the reader takes a path) and returns 0; a bug shows up as a crash, a
 * sanitizer report, a leaked HDF5 id or a broken round-trip property (abort). See
 * docs/fuzzing.md. */
#ifndef HW_FUZZ_ENTRIES_H
#define HW_FUZZ_ENTRIES_H

#include <stddef.h>
#include <stdint.h>

int fuzz_one_cfg(const uint8_t *data, size_t size);         /* core/cfg.c: cfg_load_string */
int fuzz_one_bpe(const uint8_t *data, size_t size);         /* datasets/bpe.c: bpe_from_json */
int fuzz_one_jsonl(const uint8_t *data, size_t size);       /* rolemrc_load, `data prepare` JSONL */
int fuzz_one_multifc(const uint8_t *data, size_t size);     /* datasets/multifc.c: CSV/TSV */
int fuzz_one_ckpt(const uint8_t *data, size_t size);        /* ckpt/ckpt.c: open, meta, verify */
int fuzz_one_shard(const uint8_t *data, size_t size);       /* datasets/shards.c: open, read */
int fuzz_one_safetensors(const uint8_t *data, size_t size); /* ckpt/safetensors.c: open, read */

struct fuzz_target {
    const char *name; /* directory name under fuzz/corpus/ and fuzz/regress/ */
    int (*fn)(const uint8_t *data, size_t size);
};

/* All targets, terminated by {NULL, NULL}. */
extern const struct fuzz_target fuzz_targets[];

#endif /* HW_FUZZ_ENTRIES_H */
