/* eval/eval_cfg.h -- the `eval` section of the config: checkpoints, tasks and their data,
 * output, batching, bootstrap, generation, the judge and chat steering; keys in eval_cfg.c. */
#ifndef HW_EVAL_CFG_H
#define HW_EVAL_CFG_H

#include "../core/cfg.h"

#include <stdint.h>

/* `headwise eval`: what to score and where the task data lives (docs/eval.md). */
struct cfg_eval {
    struct cfg_list checkpoints;        /* checkpoint files or run directories */
    struct cfg_list tasks;              /* task names (see `headwise eval --list-tasks`) */
    char output[CFG_PATH_MAX];          /* results directory; "" = <run dir>/eval */
    int batch_size;                     /* examples per forward pass (scores do not depend on it) */
    int limit;                          /* at most this many examples per task; 0 = all */
    int bootstrap_iters;                /* resamples for standard errors */
    int log_samples;                    /* also write per-sample JSONL */
    int64_t seed;                       /* few-shot draws, splits, bootstrap */
    char perplexity_data[CFG_PATH_MAX]; /* token shard (.h5) or raw text */
    char multifc_data[CFG_PATH_MAX];    /* staged CSV or official TSV */
    int multifc_shots;                  /* in-context examples per prompt */
    double multifc_test_frac;           /* seeded stratified split: test fraction */
    char rolemrc_data[CFG_PATH_MAX];    /* roleMRC_test.jsonl or a file in its schema */
    char rolemrc_protocol[CFG_NAME_MAX]; /* "official" (evaluation.py) | "strict" */
    int max_new_tokens;                  /* generation length */
    struct cfg_list stop;                /* stop strings for generation */
    struct cfg_list judge_command;       /* argv of an LLM judge (prompt on stdin, 0/1 out) */
    char chat_data[CFG_PATH_MAX];        /* chat_qa: JSONL in the RoleMRC question schema */
    int indicator;                       /* append sft.indicator to user turns (chat tasks) */
    double pasta_alpha;                  /* PASTA: scale attention to non-user tokens; 1 = off */
};

extern const struct cfg_section cfg_section_eval;

#endif /* HW_EVAL_CFG_H */
