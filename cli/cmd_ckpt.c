/* cli/cmd_ckpt.c -- `headwise ckpt info|verify FILE`. */
#include "../ckpt/ckpt.h"
#include "../core/check.h"
#include "../core/log.h"
#include "cli.h"

#include <stdio.h>
#include <string.h>

int cmd_ckpt(int argc, char **argv, struct dist *d) {
    char err[HW_ERR_LEN];
    if (argc != 3 || (strcmp(argv[1], "info") && strcmp(argv[1], "verify"))) {
        log_error("usage: headwise ckpt info|verify FILE");
        return HW_EXIT_CONFIG;
    }
    int rc = !strcmp(argv[1], "info") ? ckpt_info(d, argv[2], stdout, err)
                                      : ckpt_verify(d, argv[2], stdout, err);
    if (rc) {
        log_error("%s", err);
        return HW_EXIT_FAIL;
    }
    return 0;
}
