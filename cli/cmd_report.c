/* cli/cmd_report.c -- `headwise report RUN_DIR [--out DIR]`: SVG plots, index.html and
 * summary.md for a run directory; `headwise report DIR... [--out DIR]`: the sweep report of
 * several run directories, or of the run directories inside one parent (docs/report.md).
 * Runs on rank 0 only. */
#include "../core/check.h"
#include "../core/log.h"
#include "../report/report.h"
#include "../report/sweep.h"
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REPORT_USAGE                                                                               \
    "usage: headwise report RUN_DIR [--out DIR]   (default DIR: RUN_DIR/report)\n"                 \
    "       headwise report RUN_DIR RUN_DIR... | SWEEP_DIR [--out DIR]   (a sweep: one table "     \
    "and one loss plot over the runs; default DIR: <their parent>/<name stem>-report, or "         \
    "SWEEP_DIR/report)"

/* 0, or the exit code of a bad option (said on stderr) */
static int check_options(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--out")) {
            if (i + 1 == argc) {
                log_error("headwise report: --out needs a directory\n%s", REPORT_USAGE);
                return HW_EXIT_CONFIG;
            }
            i++;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            log_error("headwise report: unknown option '%s'\n%s", argv[i], REPORT_USAGE);
            return HW_EXIT_CONFIG;
        }
    }
    return 0;
}

int cmd_report(int argc, char **argv, struct dist *d) {
    if (cli_flag(argc, argv, "-h") || cli_flag(argc, argv, "--help")) {
        if (d->rank == 0)
            printf("%s\n", REPORT_USAGE);
        return 0;
    }
    int rc = check_options(argc, argv);
    if (rc)
        return rc;
    static const char *const valued[] = {"--out", NULL};
    char **pos = HW_MALLOC((size_t)argc * sizeof(*pos));
    int np = cli_positional(argc, argv, valued, pos, argc);
    if (np == 0) {
        log_error("headwise report: missing RUN_DIR\n%s", REPORT_USAGE);
        free(pos);
        return HW_EXIT_CONFIG;
    }
    if (d->rank != 0) {
        free(pos);
        return 0;
    }
    char err[HW_ERR_LEN];
    struct report_files files;
    const char *out = cli_opt(argc, argv, "--out", NULL);
    /* one run directory (or one that is neither a run nor a sweep: its error) as before */
    if (np == 1 && !sweep_is_parent(pos[0]))
        rc = report_write(pos[0], out, &files, err);
    else
        rc = sweep_write(pos, np, out, &files, err);
    free(pos);
    if (rc != 0) {
        log_error("%s", err);
        return HW_EXIT_FAIL;
    }
    for (int i = 0; i < files.n; i++)
        printf("wrote %s\n", files.path[i]);
    return 0;
}
