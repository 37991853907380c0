/* report/sweep.h -- the sweep report (`headwise report DIR...`, docs/report.md): one table
 * (sweep.md, sweep.csv), one loss plot (sweep_loss.svg) and index.html over the run directories
 * of a sweep (slurm/sweep.sbatch trains task i in <run.dir>-<i>). Each run's row names the
 * config keys whose values differ between the runs and its final and best metrics; a run
 * without metrics yet, or with a malformed metrics.jsonl, is a row saying so. Serial; call it
 * on one rank. */
#ifndef HW_SWEEP_H
#define HW_SWEEP_H

#include "report.h"

/* 1 when dir is a directory without metrics.jsonl that holds a run directory (a subdirectory
 * with metrics.jsonl, config.yaml or latest in it): the parent of a sweep's runs. */
int sweep_is_parent(const char *dir);

/* Write the sweep report of the run directories dirs[0..n-1], or, when n == 1, of the run
 * directories inside dirs[0] (a parent, see sweep_is_parent), into out_dir (created; NULL =
 * PARENT/report for a parent, else <the runs' common parent>/<their common name stem>-report,
 * e.g. runs/sweep-report for runs/sweep-0 runs/sweep-1). Among several dirs, the output
 * directory itself and other sweep reports (sweep.csv, no metrics.jsonl) are skipped, so that
 * `headwise report runs/sweep-*` can be rerun. Returns 0 and the paths written in *files when at
 * least one run has metrics; else a negative enum hw_err with one line in err, and nothing
 * written. */
int sweep_write(char *const *dirs, int n, const char *out_dir, struct report_files *files,
                char *err);

#endif /* HW_SWEEP_H */
