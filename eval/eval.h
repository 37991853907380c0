/* eval/eval.h -- `headwise eval`: score checkpoints (a file, a list, or every checkpoint of a
 * run directory) on the configured tasks, on any rank grid, and write one lm-eval-harness-like
 * results JSON per checkpoint, optional per-sample JSONL, a table on stdout and, for several
 * checkpoints, a metric-against-step table (docs/eval.md). */
#ifndef HW_EVAL_H
#define HW_EVAL_H

#include "../config/config.h"
#include "../dist/dist.h"

/* Returns a process exit code (enum hw_exit). */
int eval_run(const struct hw_config *c, struct dist *d);

#endif /* HW_EVAL_H */
