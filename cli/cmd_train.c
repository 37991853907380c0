/* cli/cmd_train.c -- `headwise train CONFIG [overrides]` and `headwise config`. */
#include "../config/config.h"
#include "../core/check.h"
#include "../core/log.h"
#include "../dist/dist.h"
#include "../train/trainer.h"
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Load CONFIG plus overrides; every rank parses, rank 0 reports. Returns 0 or an exit code. */
static int load_config(struct hw_config *c, int argc, char **argv, struct dist *d) {
    char err[HW_ERR_LEN];
    if (argc < 2) {
        log_error("usage: headwise %s CONFIG [key.path=value ...]", argv[0]);
        return HW_EXIT_CONFIG;
    }
    int rc = cfg_load(c, argv[1], argc - 2, argv + 2, err);
    rc = dist_allreduce_max_int(d, rc ? 1 : 0);
    if (rc) {
        if (d->rank == 0)
            fprintf(stderr, "%s\n", err);
        return HW_EXIT_CONFIG;
    }
    return 0;
}

/* The grid for this job's ranks (dist.data auto, lists of heads and context sizes); rank 0
 * says what it chose, or why nothing fits. */
static int choose_grid(struct hw_config *c, struct dist *d) {
    char err[HW_ERR_LEN], note[1024];
    int *node = HW_MALLOC(sizeof(int) * (size_t)d->world);
    dist_node_ids(d, node);
    int rc = cfg_resolve_grid(c, d->world, node, note, sizeof(note), err);
    free(node);
    if (rc) { /* every rank reached the same verdict from the same inputs */
        if (d->rank == 0)
            fprintf(stderr, "%s\n", err);
        return HW_EXIT_CONFIG;
    }
    log_info("%s", note);
    return 0;
}

int cmd_train(int argc, char **argv, struct dist *d) {
    struct hw_config c;
    int rc = load_config(&c, argc, argv, d);
    if (!rc)
        rc = choose_grid(&c, d);
    if (rc)
        return rc;
    return train_run(&c, d);
}

int cmd_config(int argc, char **argv, struct dist *d) {
    if (argc >= 2 && !strcmp(argv[1], "docs")) {
        if (d->rank == 0)
            cfg_write_docs(stdout);
        return 0;
    }
    if (argc >= 3 && !strcmp(argv[1], "show")) {
        struct hw_config c;
        int rc = load_config(&c, argc - 1, argv + 1, d);
        if (rc)
            return rc;
        char *y = cfg_to_yaml(&c);
        if (d->rank == 0)
            fputs(y, stdout);
        free(y);
        return 0;
    }
    log_error("usage: headwise config show CONFIG [key.path=value ...] | headwise config docs");
    return HW_EXIT_CONFIG;
}
