/* cli/cmd_report.c -- `headwise report RUN_DIR [--out DIR]`: SVG plots, index.html and
 * summary.md for a run directory (docs/report.md). Runs on rank 0 only. */
#include "../core/check.h"
#include "../core/log.h"
#include "../report/report.h"
#include "cli.h"

#include <stdio.h>
#include <string.h>

#define REPORT_USAGE "usage: headwise report RUN_DIR [--out DIR]   (default DIR: RUN_DIR/report)"

int cmd_report(int argc, char **argv, struct dist *d) {
    if (cli_flag(argc, argv, "-h") || cli_flag(argc, argv, "--help")) {
        if (d->rank == 0)
            printf("%s\n", REPORT_USAGE);
        return 0;
    }
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
    static const char *const valued[] = {"--out", NULL};
    char *pos[2];
    int np = cli_positional(argc, argv, valued, pos, 2);
    if (np != 1) {
        log_error("headwise report: %s\n%s", np ? "one RUN_DIR only" : "missing RUN_DIR",
                  REPORT_USAGE);
        return HW_EXIT_CONFIG;
    }
    if (d->rank != 0)
        return 0;
    char err[HW_ERR_LEN];
    struct report_files files;
    if (report_write(pos[0], cli_opt(argc, argv, "--out", NULL), &files, err) != 0) {
        log_error("%s", err);
        return HW_EXIT_FAIL;
    }
    for (int i = 0; i < files.n; i++)
        printf("wrote %s\n", files.path[i]);
    return 0;
}
