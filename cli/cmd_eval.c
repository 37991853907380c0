/* cli/cmd_eval.c -- `headwise eval CONFIG [overrides]` or quick flags
 * (`headwise eval --ckpt PATH --tasks a,b [--multifc-data P] ...`), `--list-tasks`, and
 * `--serve CKPT` (lm-evaluation-harness requests as JSON lines, eval/serve.h). */
#include "../ckpt/ckpt.h"
#include "../ckpt/ckpt_model.h"
#include "../config/config.h"
#include "../core/check.h"
#include "../core/log.h"
#include "../eval/eval.h"
#include "../eval/serve.h"
#include "../eval/tasks.h"
#include "../train/task_rec.h"
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* quick flag -> config key */
static const char *const flag_keys[][2] = {{"--ckpt", "eval.checkpoints"},
                                           {"--tasks", "eval.tasks"},
                                           {"--output", "eval.output"},
                                           {"--batch-size", "eval.batch_size"},
                                           {"--limit", "eval.limit"},
                                           {"--seed", "eval.seed"},
                                           {"--multifc-data", "eval.multifc_data"},
                                           {"--rolemrc-data", "eval.rolemrc_data"},
                                           {"--perplexity-data", "eval.perplexity_data"},
                                           {"--shots", "eval.multifc_shots"},
                                           {"--max-new-tokens", "eval.max_new_tokens"},
                                           {"--chat-data", "eval.chat_data"},
                                           {"--pasta", "eval.pasta_alpha"},
                                           {NULL, NULL}};

/* `eval --serve CKPT|RUN_DIR [--batch-size N] [--backend cpu|cuda]` */
static int eval_serve(int argc, char **argv, struct dist *d) {
    char err[HW_ERR_LEN], file[CKPT_PATH_LEN];
    log_info_to_stderr(); /* stdout carries the answers */
    const char *path = cli_opt(argc, argv, "--serve", NULL);
    long long batch;
    if (cli_opt_int(argc, argv, "--batch-size", 8, 1, 4096, &batch))
        return HW_EXIT_CONFIG;
    const char *why = NULL, *backend = cli_opt(argc, argv, "--backend", "cpu");
    const struct ops *be = ops_by_name(backend, &why);
    if (!be) {
        log_error("eval --serve: --backend %s: %s", backend, why ? why : "unknown backend");
        return HW_EXIT_CONFIG;
    }
    char device[96];
    dist_select_device(d, be, device, sizeof(device));
    struct hw_config *cfg = HW_MALLOC(sizeof(*cfg));
    struct bpe tok;
    struct gpt m;
    memset(&m, 0, sizeof(m));
    int64_t step = 0;
    int rc = ckpt_load_model(d, path, be, cfg, &tok, &m, &step, file, err);
    if (dist_allreduce_max_int(d, rc ? 1 : 0)) {
        log_error("%s", rc ? err : "checkpoint load failed on another rank");
        free(cfg);
        bpe_free(&tok);
        gpt_free(&m);
        return rc == HW_ECONFIG || rc == HW_EMISMATCH ? HW_EXIT_CONFIG : HW_EXIT_FAIL;
    }
    ops_set_threads(dist_threads_per_rank(d));
    ops_set_blas_threads(1);
    struct lm lm = {.m = &m,
                    .tok = &tok,
                    .batch = (int)batch,
                    .max_T = cfg->model.max_seq,
                    .eot = bpe_eot_id(&tok)};
    log_info("eval --serve: %s (step %lld, max_length %d) on %d rank(s): one JSON request a line "
             "on stdin",
             file, (long long)step, lm.max_T, d->world);
    rc = serve_run(d, &lm, file, (long long)step, stdin, stdout);
    free(cfg);
    bpe_free(&tok);
    gpt_free(&m);
    return rc ? HW_EXIT_REQUEUE : 0;
}

int cmd_eval(int argc, char **argv, struct dist *d) {
    char err[HW_ERR_LEN];
    if (cli_opt(argc, argv, "--serve", NULL))
        return eval_serve(argc, argv, d);
    if (cli_flag(argc, argv, "--list-tasks")) {
        for (int i = 0; eval_tasks[i]; i++)
            if (d->rank == 0)
                printf("%-12s v%s  %s\n", eval_tasks[i]->name, eval_tasks[i]->version,
                       eval_tasks[i]->about);
        return 0;
    }
    struct hw_config c;
    char *over[64];
    int n_over = 0, rc;
    /* lists from quick flags become YAML flow lists: a,b -> [a, b] */
    char buf[64][CFG_PATH_MAX + 64];
    int first_opt = argc > 1 && strncmp(argv[1], "--", 2) != 0 ? 2 : 1;
    for (int i = first_opt; i < argc && n_over < 60; i++) {
        const char *key = NULL;
        for (int f = 0; flag_keys[f][0]; f++)
            if (!strcmp(argv[i], flag_keys[f][0]))
                key = flag_keys[f][1];
        if (!strcmp(argv[i], "--log-samples") || !strcmp(argv[i], "--indicator")) {
            snprintf(buf[n_over], sizeof(buf[0]), "eval.%s=true",
                     argv[i][2] == 'l' ? "log_samples" : "indicator");
            over[n_over] = buf[n_over];
            n_over++;
        } else if (key && i + 1 < argc) {
            int list = !strcmp(key, "eval.checkpoints") || !strcmp(key, "eval.tasks");
            snprintf(buf[n_over], sizeof(buf[0]), list ? "%s=[%s]" : "%s=%s", key, argv[++i]);
            over[n_over] = buf[n_over];
            n_over++;
        } else if (strchr(argv[i], '=') && argv[i][0] != '-') {
            over[n_over++] = argv[i];
        } else {
            log_error("headwise eval: unknown argument '%s'\nusage: headwise eval CONFIG "
                      "[key.path=value ...] | headwise eval --ckpt PATH[,PATH] --tasks "
                      "a[,b] [--multifc-data P] [--rolemrc-data P] [--perplexity-data P] "
                      "[--output DIR] [--limit N] [--batch-size N] [--log-samples] "
                      "[--chat-data P] [--indicator] [--pasta ALPHA] | "
                      "headwise eval --list-tasks",
                      argv[i]);
            return HW_EXIT_CONFIG;
        }
    }
    if (first_opt == 2)
        rc = cfg_load(&c, argv[1], n_over, over, err);
    else
        rc = cfg_load_string(&c, "{}\n", "<flags>", n_over, over, err);
    if (dist_allreduce_max_int(d, rc ? 1 : 0)) {
        if (d->rank == 0)
            fprintf(stderr, "%s\n", err);
        return HW_EXIT_CONFIG;
    }
    if (c.eval.tasks.n == 1 && !strcmp(c.eval.tasks.item[0], "rec"))
        return rec_eval_run(&c, d); /* model.family rec checkpoints (docs/rec.md) */
    return eval_run(&c, d);
}
