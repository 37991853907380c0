/* cli/cmd_csft.c -- `headwise data csft-score`: scores every response turn of a JSONL of
 * conversations with a seed checkpoint's attention (eval/csft.h), tags the user turns of the
 * turns above beta with the indicator, writes the tagged JSONL with per-turn scores and prints
 * a histogram. Conversations are shared out across the ranks (conversation k on rank
 * k % world) and every score is computed at one rank with one BLAS thread, so the output does
 * not depend on the number of ranks. */
#include "../ckpt/ckpt.h"
#include "../ckpt/ckpt_model.h"
#include "../core/check.h"
#include "../core/fsutil.h"
#include "../core/log.h"
#include "../eval/csft.h"
#include "cli.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_csft_score(int argc, char **argv, struct dist *d) {
    char err[HW_ERR_LEN], file[CKPT_PATH_LEN];
    const char *ckpt = cli_opt(argc, argv, "--ckpt", NULL);
    const char *input = cli_opt(argc, argv, "--input", NULL);
    const char *out = cli_opt(argc, argv, "--out", NULL);
    if (!ckpt || !input || !out) {
        log_error("usage: headwise data csft-score --ckpt CKPT|RUN_DIR --input IN.jsonl --out "
                  "OUT.jsonl [--layer L] [--beta B] [--indicator S]");
        return HW_EXIT_CONFIG;
    }
    ops_set_threads(dist_threads_per_rank(d));
    ops_set_blas_threads(1);
    struct hw_config cfg;
    struct bpe tok;
    struct gpt m;
    memset(&m, 0, sizeof(m));
    int64_t step = 0;
    /* the CPU backend: the attention probes read the model's activations in host memory */
    int rc = ckpt_load_model(d, ckpt, ops_for(BACKEND_CPU), &cfg, &tok, &m, &step, file, err);
    if (rc) {
        log_error("%s", err);
        bpe_free(&tok);
        gpt_free(&m);
        return HW_EXIT_FAIL;
    }
    /* defaults from the checkpoint's own config (its sft section), then the flags */
    long long layer_l;
    double beta;
    if (cli_opt_int(argc, argv, "--layer", -2, -2, INT_MAX, &layer_l) ||
        cli_opt_num(argc, argv, "--beta", cfg.sft.beta, 0.0, 0, 1e9, 0, &beta)) {
        bpe_free(&tok);
        gpt_free(&m);
        return HW_EXIT_CONFIG;
    }
    int layer = (int)layer_l;
    if (layer == -2)
        layer = cfg.sft.score_layer;
    if (layer == -1)
        layer = m.c.L / 2;
    const char *ind = cli_opt(argc, argv, "--indicator", cfg.sft.indicator);
    if (layer < 0 || layer >= m.c.L || !(beta >= 0.0) || !ind[0]) {
        log_error("csft-score: --layer must be in [0, %d) (got %d), --beta >= 0, --indicator "
                  "non-empty",
                  m.c.L, layer);
        bpe_free(&tok);
        gpt_free(&m);
        return HW_EXIT_CONFIG;
    }
    struct chat_template tpl;
    sft_template_from_cfg(&tpl, &cfg.sft);
    struct sft_data sd;
    if ((rc = sft_load(&sd, input, err))) {
        log_error("%s", err);
        bpe_free(&tok);
        gpt_free(&m);
        return HW_EXIT_FAIL;
    }
    int64_t *off = HW_CALLOC((size_t)sd.n + 1, sizeof(int64_t));
    for (int k = 0; k < sd.n; k++)
        off[k + 1] = off[k] + sd.conv[k].n_msgs;
    const int64_t nm = off[sd.n];
    /* (score, has score) per message and tokens cut per conversation, summed over ranks */
    double *v = HW_CALLOC((size_t)(2 * nm + sd.n + 1), sizeof(double));
    double *sc = HW_MALLOC(sizeof(double) * (size_t)(nm ? nm : 1));
    double t0 = log_now();
    for (int k = 0; k < sd.n && !rc; k++) {
        if (k % d->world != d->rank)
            continue;
        const struct sft_conv *c = &sd.conv[k];
        int cut = csft_score_conv(&m, &tok, &tpl, c->msgs, c->n_msgs, layer, sc + off[k], err);
        if (cut < 0) {
            rc = cut;
            break;
        }
        for (int i = 0; i < c->n_msgs; i++)
            if (!isnan(sc[off[k] + i])) {
                v[off[k] + i] = sc[off[k] + i];
                v[nm + off[k] + i] = 1.0;
            }
        v[2 * nm + k] = cut;
    }
    if (dist_allreduce_max_int(d, rc ? 1 : 0)) {
        if (rc)
            log_error("%s", err);
        rc = HW_EXIT_FAIL;
    } else {
        dist_allreduce_group_doubles(d, DIST_WORLD, v, (int)(2 * nm + sd.n));
    }
    if (!rc) {
        int n_turns = 0, n_tagged = 0, n_cut = 0;
        size_t cap = 1 << 16, len = 0;
        char *buf = HW_MALLOC(cap);
        for (int k = 0; k < sd.n; k++) {
            struct sft_conv *c = &sd.conv[k];
            json_t *arr = json_array();
            for (int i = 0; i < c->n_msgs; i++) {
                const int64_t j = off[k] + i;
                sc[j] = v[nm + j] > 0 ? v[j] : NAN;
                n_turns += !isnan(sc[j]);
                json_array_append_new(arr, isnan(sc[j]) ? json_null() : json_real(sc[j]));
            }
            n_cut += v[2 * nm + k] > 0;
            n_tagged += csft_tag_conv(c, sc + off[k], beta, ind);
            json_object_set_new(c->root, "csft_scores", arr);
            char *line = json_dumps(c->root, JSON_COMPACT | JSON_PRESERVE_ORDER |
                                                 JSON_REAL_PRECISION(9) | JSON_ENSURE_ASCII);
            size_t ll = strlen(line);
            if (len + ll + 2 > cap) {
                cap = 2 * (len + ll + 2);
                buf = HW_REALLOC(buf, cap);
            }
            memcpy(buf + len, line, ll);
            len += ll;
            buf[len++] = '\n';
            free(line);
        }
        if (d->rank == 0) {
            if ((rc = fs_write_atomic(out, buf, len, err))) {
                log_error("%s", err);
                rc = HW_EXIT_FAIL;
            } else {
                log_info("csft-score: %s (step %lld), layer %d of %d, beta %g, indicator '%s' | "
                         "%d conversations, %d response turns scored, %d user turns tagged, %d "
                         "conversations cut to max_seq %d | %.1fs on %d rank(s)",
                         file, (long long)step, layer, m.c.L, beta, ind, sd.n, n_turns, n_tagged,
                         n_cut, m.c.max_T, log_now() - t0, d->world);
                csft_histogram(stdout, sc, (int)nm, beta);
                log_info("wrote %s", out);
            }
        }
        free(buf);
    }
    free(off);
    free(v);
    free(sc);
    sft_free(&sd);
    bpe_free(&tok);
    gpt_free(&m);
    return rc ? HW_EXIT_FAIL : 0;
}
