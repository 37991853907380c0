/* report/report.h -- run dashboards (`headwise report RUN_DIR [--out DIR]`, docs/report.md).
 * Reads a run directory (metrics.jsonl, config.yaml, latest, ckpt_*.h5, eval/results_*.json or
 * eval/summary.json) and writes SVG plots (loss, lr, throughput, grad_norm, eval when there are
 * eval results, moh_usage when the metrics carry per-layer head usage), one self-contained
 * index.html and summary.md with the same facts. Serial; call it on one rank. */
#ifndef HW_REPORT_H
#define HW_REPORT_H

#define REPORT_MAX_FILES 16
#define REPORT_PATH_MAX  1100

/* The files one report wrote, in the order written. */
struct report_files {
    int n;
    char path[REPORT_MAX_FILES][REPORT_PATH_MAX];
};

/* Write the report of run_dir into out_dir (created if needed; NULL = run_dir/report).
 * Returns 0 and the paths written in *files, or a negative enum hw_err with one line in err:
 *   "RUN_DIR: not a directory (...)", "RUN_DIR/metrics.jsonl: cannot open: ...",
 *   "RUN_DIR/metrics.jsonl:LINE: error: ...", or an I/O error naming the file.
 * A metrics line with the same or a lower step than the line before replaces the earlier
 * lines from that step on (a resumed run re-logs those steps). An unreadable eval results
 * file is skipped with a warning on stderr. */
int report_write(const char *run_dir, const char *out_dir, struct report_files *files, char *err);

#endif /* HW_REPORT_H */
