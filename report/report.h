/* report/report.h -- run dashboards (`headwise report RUN_DIR [--out DIR]`, docs/report.md),
 * and one run's headline numbers for the sweep report (report/sweep.h).
 * Reads a run directory (metrics.jsonl, config.yaml, latest, ckpt_*.h5, eval/results_*.json or
 * eval/summary.json) and writes SVG plots (loss, lr, throughput, grad_norm, eval when there are
 * eval results, moh_usage when the metrics carry per-layer head usage), one self-contained
 * index.html and summary.md with the same facts. Serial; call it on one rank. */
#ifndef HW_REPORT_H
#define HW_REPORT_H

#include <stddef.h>

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

/* ---- one run's headline numbers, for the sweep report (report/sweep.c) ---- */

#define REPORT_RUN_EVALS 16

enum report_run_status {
    REPORT_RUN_OK = 0,
    REPORT_RUN_EMPTY = 1, /* no metrics.jsonl, or no step in it yet (a task not started) */
    REPORT_RUN_BAD = 2    /* missing or not a directory, metrics.jsonl unreadable or malformed */
};

struct report_eval_value {
    char name[260]; /* "task/metric" */
    double v, se;   /* se NaN when not reported */
};

struct report_run {
    int status;    /* enum report_run_status */
    char why[512]; /* EMPTY or BAD: one line, e.g. "RUN/metrics.jsonl:3: error: ..." */
    size_t n;      /* metrics rows (a resumed run's re-logged steps replaced) */
    double *step, *loss, *val_loss;   /* (n) NaN where not logged; NULL unless OK */
    double last_step;                 /* the last row's step */
    double loss_last, loss_last_step; /* the last finite train loss and its step */
    double val_last, val_last_step;   /* the last finite val_loss and its step; NaN: none */
    double val_best, val_best_step;   /* the lowest val_loss and its (first) step */
    double tps_median;                /* median of the logged tokens_per_s */
    char latest[256];                 /* the checkpoint RUN_DIR/latest names; "" when none */
    char *config_yaml; /* resolved config (cfg_to_yaml of config.yaml when it loads, else its
                        * text); NULL without config.yaml */
    int n_eval;        /* eval results at the newest evaluated checkpoint (no majority_*) */
    char eval_ckpt[256];
    double eval_step;
    struct report_eval_value eval[REPORT_RUN_EVALS];
};

/* Read run_dir's metrics.jsonl, config.yaml, latest and eval results into *r (which
 * report_run_free releases). Never fails as a whole: returns r->status, with r->why saying
 * what is missing or wrong. */
int report_run_load(const char *run_dir, struct report_run *r);
void report_run_free(struct report_run *r);

/* ---- helpers shared with report/sweep.c ---- */
struct svg_buf;
/* v with 4 decimals (4 significant digits when very large or small); "n/a" when not finite */
void report_fmt_num(char *out, size_t n, double v);
/* the path of to/name relative to the directory from (both absolute); name may be "" */
void report_rel_link(const char *from, const char *to, const char *name, char *out, size_t n);
/* " text |" with | escaped and newlines as spaces (a Markdown table cell) */
void report_md_cell(struct svg_buf *b, const char *s);
/* the pages' inline CSS */
extern const char *const report_css;

#endif /* HW_REPORT_H */
