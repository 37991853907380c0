/* ckpt/ckpt.h -- HDF5 checkpoints of training state: one file per checkpoint, one float32
 * dataset per GLOBAL tensor (/model/<name>, /optim/m/<name>, ...), each rank writing or reading
 * its own hyperslab, so any rank grid can read any checkpoint. Every dataset is chunked with
 * HDF5's Fletcher32 checksum, verified on every read. Saves are atomic (write
 * NAME.h5.tmp-HOST-PID, close, fsync, write latest.tmp-HOST-PID, then rename both); the newest
 * `keep` checkpoints are kept. Every value read back is validated (types, ranges, the manifest
 * against the datasets), since a file with valid checksums may still be hand-made. Schema, protocol
 * and error messages: docs/checkpoint.md. Used by train (save/resume) and eval and the `headwise
 * ckpt` subcommand (open/read/verify/info).
 *
 * Errors: functions return 0 (or a count) on success and a negative enum hw_err on failure,
 * with one line "path: what went wrong" in err[HW_ERR_LEN]. HDF5's own error printing is
 * silenced inside these calls. A `const struct dist *` may be NULL: one process, no MPI. */
#ifndef HW_CKPT_H
#define HW_CKPT_H

#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

struct dist;

#define CKPT_FORMAT         "headwise-ckpt"
#define CKPT_FORMAT_VERSION 1
#define CKPT_MAX_DIMS       4
#define CKPT_MAX_CURSOR     32
#define CKPT_NAME_MAX       256          /* group and tensor names are shorter than this */
#define CKPT_PATH_LEN       4096         /* size of every out_path buffer */
#define CKPT_MAX_STEP       2147483647LL /* steps are 0..CKPT_MAX_STEP (the trainer counts in int) */
#define CKPT_MAX_COUNT      (1LL << 62)  /* tokens_seen and cursors are 0..CKPT_MAX_COUNT */
#define CKPT_STALE_AGE_S    3600 /* a temp file of another host untouched this long is stale */

/* One tensor of one group, as this rank holds it. Names must be identical on all ranks, must
 * not contain '/', and must not be "." or "..". */
struct ckpt_tensor {
    const char *name;              /* stable parameter name, e.g. "blocks.3.attn.wq" */
    int ndim;                      /* 1..CKPT_MAX_DIMS */
    int64_t shape[CKPT_MAX_DIMS];  /* GLOBAL shape, every entry >= 1 */
    int64_t offset[CKPT_MAX_DIMS]; /* this rank's hyperslab start (all 0 when unsharded) */
    int64_t count[CKPT_MAX_DIMS];  /* this rank's hyperslab extent (== shape when unsharded) */
    int write;                     /* save: 1 this rank writes its slab, 0 replica (skips) */
    float *data;                   /* (count[0], ..., count[ndim-1]) row-major, local */
};

/* A named set of tensors: "model", "optim/m", "optim/v". Group names are '/'-separated paths
 * whose first component is not one of the reserved root names (state, config, tokenizer,
 * model_sig, manifest). */
struct ckpt_group {
    const char *name;
    const struct ckpt_tensor *t; /* (n) */
    int n;
};

/* Training state beside the tensors. Must be identical on all ranks; rank 0's copy is stored.
 * NULL strings are stored as empty text and read back as "". Valid ranges (checked on save and
 * on every read): step 0..CKPT_MAX_STEP, tokens_seen and each cursor 0..CKPT_MAX_COUNT; the
 * texts hold no NUL byte. */
struct ckpt_meta {
    int64_t step;
    int64_t tokens_seen;
    uint64_t rng[4];                 /* global RNG state (same on every rank; any value) */
    int64_t cursor[CKPT_MAX_CURSOR]; /* data-loader position (global sample counters, which
                                      * run on over epochs: position cursor % n of the data) */
    int n_cursor;                    /* 0..CKPT_MAX_CURSOR */
    char *config_yaml;               /* resolved config text */
    char *tokenizer_json;            /* tokenizer JSON text */
    char *model_sig;                 /* short text describing the model shape */
};

/* An open checkpoint. Zero-initialise before ckpt_open; ckpt_close accepts a zeroed struct. */
struct ckpt_file {
    int64_t fid; /* HDF5 file id (hid_t), > 0 while open */
    char *path;  /* malloc'd copy of the path, for messages */
    const struct dist *d;
    int format_version; /* root attribute format_version */
    int64_t step;       /* root attribute step */
};

/* Save a checkpoint as dir/ckpt_%08lld.h5 (step) and point dir/latest at it; dir is created
 * (with parents) if missing. COLLECTIVE: every rank calls it with the same groups (names,
 * shapes, order), step and keep; each tensor's slabs with write == 1 must cover its global
 * shape exactly once. Temporary files carry their writer (rank 0's host and pid) in their
 * names; before writing, rank 0 removes the temporary files of writers that are gone (see
 * docs/checkpoint.md, "Stale temporary files"). After the save it prunes to the newest `keep`
 * checkpoints (keep <= 0: keep all; the one just written is always kept). On any failure
 * previous checkpoints and `latest` are untouched, the temporary files are removed, and every
 * rank returns the same code: HW_EIO (I/O, message names the path; a full disk, a quota or a
 * file-size limit is named as such) or HW_EMISMATCH (bad or rank-inconsistent tensor
 * descriptions or meta values). While it writes, SIGXFSZ is ignored (if it had its default
 * action) so that a file-size limit is an error, not the end of the process. out_path
 * (CKPT_PATH_LEN bytes, may be NULL) receives the final path on success. */
int ckpt_save(const struct dist *d, const char *dir, int64_t step, const struct ckpt_group *groups,
              int n_groups, const struct ckpt_meta *meta, int keep, char *out_path, char *err);

/* Open a checkpoint for reading and check its format attributes. COLLECTIVE (all ranks, same
 * path). Errors: HW_EIO "path: cannot open: <strerror>"; HW_EFORMAT "path: not a readable HDF5
 * file (truncated or corrupt)", or "not a headwise checkpoint", or unsupported format_version.
 * On error f is left closed (safe to ckpt_close). */
int ckpt_open(struct ckpt_file *f, const struct dist *d, const char *path, char *err);

/* Read step, tokens_seen, rng, cursor and the texts, and check the manifest against the
 * tensor datasets (metadata only). Rank-local. Strings are malloc'd and NUL-terminated; free
 * them with ckpt_meta_free (also after an error). HW_EFORMAT, with one line naming the file,
 * the dataset and what was expected, when a dataset is missing, has the wrong type, size or
 * shape, fails its checksum, holds a value outside its range (see struct ckpt_meta), or when
 * /state holds anything else, or the manifest and the tensor datasets disagree. */
int ckpt_read_meta(struct ckpt_file *f, struct ckpt_meta *m, char *err);
void ckpt_meta_free(struct ckpt_meta *m);

/* Read t->count elements at t->offset of group/t->name into t->data (t->write is ignored).
 * Rank-local (independent I/O): ranks may read different tensors or slabs in any order, but a
 * failure is reported only on the rank that hit it -- agree (dist_allreduce_max_int) before
 * the next collective call. Errors: HW_EMISMATCH "path: group/name: not in checkpoint",
 * "path: group/name: shape [a,b] in file, [c,d] expected", slab out of range;
 * HW_EFORMAT "path: group/name: checksum mismatch (file is corrupt)" or unreadable data. */
int ckpt_read_tensor(struct ckpt_file *f, const char *group, const struct ckpt_tensor *t,
                     char *err);

/* Stored global shape of group/name: returns 1 and fills ndim/shape if present, 0 if absent,
 * negative on error. Rank-local. */
int ckpt_tensor_shape(struct ckpt_file *f, const char *group, const char *name, int *ndim,
                      int64_t shape[CKPT_MAX_DIMS], char *err);

/* Close (COLLECTIVE) and free f->path; f is zeroed. */
void ckpt_close(struct ckpt_file *f);

/* Find the checkpoint to resume from: dir/latest if it names an existing file, else the
 * highest-step dir/ckpt_NNNNNNNN.h5. A save killed between its two renames leaves `latest`
 * one checkpoint behind and its latest.tmp-HOST-PID naming the newer, complete file: such a
 * temp file (written after `latest`, naming an existing checkpoint of a higher step) wins.
 * Never returns temporary files. Returns 1 and fills out_path (CKPT_PATH_LEN bytes), 0 if
 * there is none (also when dir does not exist), HW_EIO if dir or latest cannot be read. Reads
 * only. POSIX only, rank-local: on a shared file system all ranks agree; otherwise call on
 * rank 0 and broadcast. */
int ckpt_latest(const char *dir, char *out_path, char *err);

/* Check a checkpoint end to end: format, manifest, every tensor dataset read fully (checksums
 * verified, every value finite) with its shape compared to the manifest, no datasets missing
 * from or extra to the manifest, and the state/text datasets with their values (as
 * ckpt_read_meta). Prints "ok group/name [a,b]" or "FAIL group/name:
 * reason" per tensor and a final summary line to report (if non-NULL). COLLECTIVE; with
 * several ranks the tensors are shared out round-robin and each rank prints its own lines;
 * rank 0 prints the summary. Returns 0 or the first error (HW_EIO, HW_EFORMAT). */
int ckpt_verify(const struct dist *d, const char *path, FILE *report, char *err);

/* Print a human-readable summary (format version, step, tokens_seen, writer world size,
 * tensors and parameters per group, file size, model_sig, first lines of the config,
 * tokenizer size) to out. COLLECTIVE; only rank 0 prints. */
int ckpt_info(const struct dist *d, const char *path, FILE *out, char *err);

#ifdef __cplusplus
}
#endif

#endif /* HW_CKPT_H */
