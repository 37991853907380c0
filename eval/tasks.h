/* eval/tasks.h -- the task interface of `headwise eval` and the registry. A task scores one
 * loaded checkpoint and fills a JSON object of metrics keyed "<metric>,none" (with
 * "<metric>_stderr,none" beside), lm-evaluation-harness style. Examples are shared out across
 * the ranks (example i on rank i % world) and gathered with eval_sum, so scores do not depend on
 * the number of ranks. Adding a task is one file plus one line in eval/tasks.c. */
#ifndef HW_TASKS_H
#define HW_TASKS_H

#include "../config/config.h"
#include "../dist/dist.h"
#include "lm.h"

#include <jansson.h>

struct eval_ctx {
    const struct hw_config *c;  /* the eval config (eval.* keys) */
    const struct hw_config *mc; /* the checkpoint's own (training) config */
    struct dist *d;
    struct lm *lm;
    json_t *samples; /* per-sample records to append to (eval.log_samples), or NULL */
};

struct eval_task {
    const char *name;
    const char *version;
    const char *about;
    /* Fill metrics (and info: sample counts, settings). Returns 0 or an hw_err with err set. */
    int (*run)(struct eval_ctx *ctx, json_t *metrics, json_t *info, char *err);
};

const struct eval_task *eval_find_task(const char *name);
/* The registry, NULL-terminated by name. */
extern const struct eval_task *const eval_tasks[];

/* This rank owns example i. */
static inline int eval_mine(const struct eval_ctx *ctx, int i) {
    return i % ctx->d->world == ctx->d->rank;
}
/* The ranks agree after their share of a task: returns this rank's rc, or when another rank
 * failed (or stopped) and this one did not, HW_EIO with err "TASK: failed on another rank (see
 * its message)". COLLECTIVE: every rank calls it once per agreement point. */
int eval_agree(struct eval_ctx *ctx, int rc, const char *task, char *err);
/* Sum n doubles over all ranks (each rank filled only its own examples, zeros elsewhere). */
void eval_sum(struct eval_ctx *ctx, double *v, int n);
/* metrics[name + ",none"] = v; with se >= 0 also name + "_stderr,none". */
void eval_put(json_t *metrics, const char *name, double v, double se);
/* info[key] = path and info[key + "_sha256"] = the SHA-256 of the file's bytes. Returns 0 or
 * HW_EIO with err set. */
int eval_info_file(json_t *info, const char *key, const char *path, char *err);
/* info["prompt_template"] = text (how the task builds its prompts) and
 * info["prompt_template_sha256"] = its SHA-256. */
void eval_info_template(json_t *info, const char *text);
/* A JSON string of s that is always valid: bytes that are not UTF-8 become U+FFFD (generated
 * text may end inside a character). Never NULL; s NULL gives "". */
json_t *eval_text(const char *s);
/* Appends a per-sample record (eval.log_samples) of this rank's example doc_id: rec gets
 * "doc_id" and is gathered from every rank, sorted by (task, doc_id), by the driver. Takes
 * rec; a NULL rec (a json_pack failure) is a bug (HW_ASSERT). No-op without samples. */
void eval_sample(struct eval_ctx *ctx, int doc_id, json_t *rec);

int task_perplexity(struct eval_ctx *ctx, json_t *metrics, json_t *info, char *err);
int task_multifc(struct eval_ctx *ctx, json_t *metrics, json_t *info, char *err);
int task_rolemrc(struct eval_ctx *ctx, json_t *metrics, json_t *info, char *err);
int task_multifc_classify(struct eval_ctx *ctx, json_t *metrics, json_t *info, char *err);
int task_chat_qa(struct eval_ctx *ctx, json_t *metrics, json_t *info, char *err);
int task_synth(struct eval_ctx *ctx, json_t *metrics, json_t *info, char *err);
/* MultiFC reporting shared by both methods: micro/macro F1 of pred against gold (global label
 * ids) with bootstrap stderr under prefix ("", "norm_", "majority_"). */
void multifc_put_f1(json_t *metrics, const char *prefix, const int *gold, const int *pred, int n,
                    int n_classes, int iters, uint64_t seed);
/* One domain's scores: n, f1_micro / f1_macro of pred with bootstrap "_stderr" beside (seeds
 * seed, seed + 1), and majority_f1_micro / majority_f1_macro of base. */
json_t *multifc_domain_scores(const int *gold, const int *pred, const int *base, int n,
                              int n_classes, int iters, uint64_t seed);
struct multifc;
/* info: rejected_rows, repaired_rows, unknown_labels of the file, and split {test_frac, seed
 * (MULTIFC_SPLIT_SEED), test, test_claims_sha256: SHA-256 of the scored claimIDs, each followed
 * by a newline, in file order}: equal hashes mean the same claims were scored. */
void multifc_info_split(json_t *info, const struct multifc *m, const int *test, int n_test,
                        double test_frac);

#endif /* HW_TASKS_H */
