/* eval/task_synth.c -- `synth`: greedy exact-match accuracy on the built-in synthetic tasks
 * (datasets/synth.h: copy, reverse, two-digit addition, associative recall), the demo's
 * evaluation. Examples come from a corpus seed that `data prepare --synthetic` does not use by
 * default (held-out lines, eval.seed mixed in), eval.limit of them (0: 400), a quarter-ish of each
 * kind; the prompt ("add 47+38 >", cut back to a token boundary of the whole line's own
 * tokenisation) is decoded greedily until the newline and the text before it must equal the
 * rest of the line (" 85"). Reports accuracy overall and per task with binomial standard
 * errors. */
#include "../core/check.h"
#include "../core/rng.h"
#include "../datasets/bpe.h"
#include "../datasets/synth.h"
#include "tasks.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SYNTH_EVAL_SEED 0x5e1d0e7a1ULL /* not the corpus seed of `data prepare` (1337) */

/* Cut the whole line (prompt + answer + newline) where its own tokenisation puts a token
 * boundary: the prompt keeps the tokens that lie inside "add 47+38 >", the answer is the rest of
 * the line. A BPE token may span the cut (" >" + " 85" can be tokenised "> " + "85" in training
 * text), and a prompt that ends inside a token the model never saw end there is scored against
 * text the model was not trained to continue. */
static void token_boundary_split(const struct bpe *tok, const char *p, const char *a, char **prompt,
                                 char **answer) {
    size_t lp = strlen(p), la = strlen(a);
    char *line = HW_MALLOC(lp + la + 2);
    memcpy(line, p, lp);
    memcpy(line + lp, a, la);
    line[lp + la] = '\n';
    line[lp + la + 1] = '\0';
    int32_t *ids = NULL;
    int64_t n = bpe_encode(tok, line, lp + la + 1, 0, &ids), cut = 0;
    for (int64_t k = 0; k < n; k++) {
        int len = 0;
        bpe_token_bytes(tok, ids[k], &len);
        if (cut + len > (int64_t)lp)
            break;
        cut += len;
    }
    free(ids);
    line[lp + la] = '\0'; /* the answer stops before the newline */
    *answer = HW_STRDUP(line + cut);
    line[cut] = '\0';
    *prompt = HW_STRDUP(line);
    free(line);
}

int task_synth(struct eval_ctx *ctx, json_t *metrics, json_t *info, char *err) {
    const struct cfg_eval *e = &ctx->c->eval;
    const int n = e->limit > 0 ? e->limit : 400;
    const uint64_t seed = rng_hash2(SYNTH_EVAL_SEED, (uint64_t)e->seed);
    char **prompts = HW_CALLOC((size_t)n, sizeof(char *));
    char **answers = HW_CALLOC((size_t)n, sizeof(char *));
    int *kind = HW_MALLOC(sizeof(int) * (size_t)n), mine = 0;
    for (int i = 0; i < n; i++) {
        char p[128], a[64];
        kind[i] = synth_example(seed, (uint64_t)i, p, sizeof(p), a, sizeof(a));
        token_boundary_split(ctx->lm->tok, p, a, &prompts[i], &answers[i]);
        mine += eval_mine(ctx, i);
    }
    /* this rank's examples, greedy until the line ends */
    const char **mp = HW_MALLOC(sizeof(char *) * (size_t)(mine ? mine : 1));
    int *mi = HW_MALLOC(sizeof(int) * (size_t)(mine ? mine : 1));
    for (int i = 0, k = 0; i < n; i++)
        if (eval_mine(ctx, i)) {
            mp[k] = prompts[i];
            mi[k++] = i;
        }
    struct cfg_list stop;
    memset(&stop, 0, sizeof(stop));
    stop.n = 1;
    snprintf(stop.item[0], sizeof(stop.item[0]), "\n");
    char **outs = HW_CALLOC((size_t)(mine ? mine : 1), sizeof(char *));
    int rc = lm_generate(ctx->lm, mp, mine, 24, &stop, outs, err);
    /* per kind: [correct, count] */
    double v[2 * SYNTH_KINDS] = {0};
    for (int k = 0; k < mine && !rc; k++) {
        const int i = mi[k], ok = strcmp(outs[k], answers[i]) == 0;
        v[2 * kind[i]] += ok;
        v[2 * kind[i] + 1] += 1;
        if (ctx->samples)
            json_array_append_new(
                ctx->samples, json_pack("{s:s,s:i,s:s,s:s,s:s,s:s,s:b}", "task", "synth", "doc_id",
                                        i, "kind", synth_kind_names[kind[i]], "prompt", prompts[i],
                                        "target", answers[i], "output", outs[k], "correct", ok));
    }
    rc = eval_agree(ctx, rc, "synth", err);
    if (!rc) {
        eval_sum(ctx, v, 2 * SYNTH_KINDS);
        double right = 0, total = 0;
        for (int k = 0; k < SYNTH_KINDS; k++) {
            right += v[2 * k];
            total += v[2 * k + 1];
            char name[64];
            snprintf(name, sizeof(name), "acc_%s", synth_kind_names[k]);
            const double c = v[2 * k + 1], p = c > 0 ? v[2 * k] / c : 0.0;
            eval_put(metrics, name, p, c > 1 ? sqrt(p * (1 - p) / (c - 1)) : 0.0);
            snprintf(name, sizeof(name), "n_%s", synth_kind_names[k]);
            json_object_set_new(info, name, json_integer((json_int_t)c));
        }
        const double p = right / total;
        eval_put(metrics, "acc", p, total > 1 ? sqrt(p * (1 - p) / (total - 1)) : 0.0);
        json_object_set_new(info, "n_examples", json_integer(n));
    }
    for (int i = 0; i < n; i++)
        free(prompts[i]), free(answers[i]);
    for (int k = 0; k < mine; k++)
        free(outs[k]);
    free(prompts), free(answers), free(kind), free(mp), free(mi), free(outs);
    return rc;
}
