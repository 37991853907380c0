/* config/config.h -- the job's configuration: every module's section (model/model_cfg.h,
 * train/train_cfg.h, datasets/data_cfg.h, dist/dist_cfg.h, eval/eval_cfg.h) composed into one
 * struct, and the typed API over the loader of core/cfg.h. Loading reads YAML (with `base:`
 * inheritance and `key.path=value` overrides), rejects unknown keys (with a did-you-mean),
 * wrong types, out-of-range values and broken cross-field rules, and reports each as
 * `file:line:col: error: ...`. docs/config.md is generated from the same sections
 * (`headwise config docs`). This header sits above the modules whose sections it holds: only
 * code that needs the whole config (the jobs in train/, eval/, ckpt/, cli/) includes it. */
#ifndef HW_CONFIG_H
#define HW_CONFIG_H

#include "../core/cfg.h"
#include "../datasets/data_cfg.h"
#include "../dist/dist_cfg.h"
#include "../eval/eval_cfg.h"
#include "../model/model_cfg.h"
#include "../train/train_cfg.h"

#include <stdio.h>

struct hw_config {
    struct cfg_model model;
    struct cfg_train train;
    struct cfg_data data;
    struct cfg_run run;
    struct cfg_dist dist;
    struct cfg_eval eval;
    struct cfg_rec rec;
    struct cfg_sft sft;
    char source[CFG_PATH_MAX]; /* the file it was loaded from */
    struct cfg_origin origin[CFG_MAX_KEYS];
    char origin_files[CFG_MAX_FILES][CFG_PATH_MAX];
};

/* The sections of struct hw_config, in YAML order. */
extern const struct cfg_schema hw_schema;

/* Fill every key with its default. */
void cfg_defaults(struct hw_config *c);

/* Load `path` (following `base:` chains, relative to the including file), then apply
 * overrides of the form "model.d_model=256" in order, then validate.
 * Returns 0, or HW_ECONFIG/HW_EIO with one line in err:
 *   "configs/x.yaml:3:5: error: unknown key 'warmpu' in 'train' (did you mean 'warmup'?)"
 * Override errors are reported as "<override N>:1:COL: error: ...". */
int cfg_load(struct hw_config *c, const char *path, int n_over, char *const *overrides, char *err);

/* Same, from text already in memory (a checkpoint's stored config); name is used in messages. */
int cfg_load_string(struct hw_config *c, const char *text, const char *name, int n_over,
                    char *const *overrides, char *err);

/* Apply one "key.path=value" override to an already loaded config (validates afterwards). */
int cfg_override(struct hw_config *c, const char *kv, char *err);

/* Resolved config as YAML, every key present. Caller frees. Loading it back gives the same
 * config. */
char *cfg_to_yaml(const struct hw_config *c);

/* Markdown reference of every key and rule (docs/config.md). */
void cfg_write_docs(FILE *f);

/* "file:line:col" where key was last set (the config's own file, 1:1, for defaults). */
void cfg_where(const struct hw_config *c, const char *key, char *out, size_t n);

/* A value the schema accepted is refused at run time (a backend this build or machine lacks):
 * "file:line:col: error: key: why". Returns HW_ECONFIG. */
int cfg_key_error(const struct hw_config *c, const char *key, const char *why, char *err);

/* The grid for a job of `world` ranks (node_of_rank[world] from dist_node_ids, or NULL: one
 * node): the first dist.heads choice, then dist.context choice, that divides the world, keeps
 * every head group on one node and passes every rule; dist.data (auto or its choices) takes the
 * rest. Sets c->dist.{data,heads,context}.v, and rescales train.micro_batch, grad_accum and
 * val_batches when the data ranks do not divide the micro-batch (the global batch is kept).
 * Returns 0 and one line saying what was chosen and why in note, or HW_ECONFIG with
 * "file:line:col: error: dist: no grid fits the job's N ranks: <each choice and why not>". */
int cfg_resolve_grid(struct hw_config *c, int world, const int *node_of_rank, char *note,
                     size_t note_n, char *err);

#endif /* HW_CONFIG_H */
