/* eval/task_rolemrc.c -- `rolemrc`: the RoleMRC pipeline. Each test row's `question` messages
 * are rendered with the chat template and answered by batched greedy generation
 * (eval.max_new_tokens, stop strings, KV cache); the answer is scored against `reference` with
 * BLEU-4 and ROUGE-1/2/L/Lsum as the official evaluation.py computes them (per sample, then the
 * mean), overall, per task tag, per official group and per judge aspect. With
 * eval.judge_command, every (sample, aspect) pair of the official task-to-aspect map also gets
 * a 0/1 judgement from the external judge; the aspect score is their mean. With eval.indicator,
 * user turns get the checkpoint's CSFT indicator (docs/sft.md). METEOR and
 * BERTScore are not computed (see eval/metrics.h and docs/eval.md). */
#include "../core/check.h"
#include "../datasets/chat.h"
#include "../datasets/rolemrc.h"
#include "../datasets/sft.h"
#include "../eval/metrics.h"
#include "judge.h"
#include "tasks.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_MET    5
#define N_ASPECT 5
static const char *const met_names[N_MET] = {"bleu", "rouge1", "rouge2", "rougeL", "rougeLsum"};

static const char *last_of(const struct rolemrc_example *x, const char *role) {
    for (int i = x->n_msgs - 1; i >= 0; i--)
        if (!strcmp(x->msgs[i].role, role))
            return x->msgs[i].content;
    return "";
}

/* The judge prompt of one aspect (the five aspects of RoleMRC's llm_judge.py, reworded). */
static char *judge_prompt(const struct rolemrc_example *x, unsigned aspect, const char *answer) {
    const char *q;
    switch (aspect) {
    case ROLEMRC_ASPECT_KNOWLEDGE:
        q = x->knowledge_within == 1
                ? "The passage is within the role's knowledge. Does the response answer (or "
                  "decline) the way this role would, using that knowledge?"
                : "The passage is outside the role's knowledge. Does the response stay in "
                  "character and not pretend to know it?";
        break;
    case ROLEMRC_ASPECT_STYLE:
        q = "Does the response follow the required style: narration (actions in asterisks or "
            "brackets) when the task asks for it, and none when it does not?";
        break;
    case ROLEMRC_ASPECT_NESTED:
        q = "Does the response follow the nested instruction about its content or format?";
        break;
    case ROLEMRC_ASPECT_MULTITURN:
        q = "Does the response follow the user's follow-up instruction in this multi-turn "
            "dialogue?";
        break;
    default:
        q = "Does the response obey the system's rule when it conflicts with the user's "
            "request?";
    }
    const char *fmt = "You are judging a role-playing reply.\n\n[Role profile and rules]\n%s\n\n"
                      "[Last user turn]\n%s\n\n[Response]\n%s\n\n[Reference response]\n%s\n\n"
                      "Task tag: %s\nQuestion: %s\nAnswer with a single digit: 1 for yes, 0 for "
                      "no.\n";
    const char *sys = last_of(x, "system"), *user = last_of(x, "user");
    size_t n = strlen(fmt) + strlen(sys) + strlen(user) + strlen(answer) + strlen(x->reference) +
               strlen(x->task) + strlen(q) + 1;
    char *p = HW_MALLOC(n);
    snprintf(p, n, fmt, sys, user, answer, x->reference, x->task, q);
    return p;
}

/* mean (and bootstrap stderr) of x over the samples whose mask is set */
static double masked_mean(const double *x, const int *mask, int n) {
    double s = 0.0;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (!mask || mask[i]) {
            s += x[i];
            k++;
        }
    return k ? s / k : NAN;
}

static void put_group(json_t *obj, const char *name, double *const *vals, const int *mask, int n) {
    json_t *g = json_object();
    int k = 0;
    for (int i = 0; i < n; i++)
        k += mask[i];
    json_object_set_new(g, "n", json_integer(k));
    for (int j = 0; j < N_MET; j++)
        json_object_set_new(g, met_names[j], json_real(masked_mean(vals[j], mask, n)));
    json_object_set_new(obj, name, g);
}

int task_rolemrc(struct eval_ctx *ctx, json_t *metrics, json_t *info, char *err) {
    const struct cfg_eval *e = &ctx->c->eval;
    if (!e->rolemrc_data[0])
        return hw_errf(err, HW_ECONFIG,
                       "rolemrc: eval.rolemrc_data is not set "
                       "(roleMRC_test.jsonl or a file in its schema)");
    struct rolemrc r;
    int rc = rolemrc_load(&r, e->rolemrc_data, err);
    if (rc)
        return rc;
    int n = r.n;
    if (e->limit && n > e->limit)
        n = e->limit;
    struct chat_template tpl;
    chat_template_default(&tpl);
    struct cfg_list stop;
    if (e->stop.n) {
        stop = e->stop;
    } else { /* the template's end of turn and the next user tag */
        memset(&stop, 0, sizeof(stop));
        snprintf(stop.item[0], CFG_PATH_MAX, "%s", tpl.end_turn);
        snprintf(stop.item[1], CFG_PATH_MAX, "%s", tpl.user);
        stop.n = 2;
    }
    /* this rank's prompts */
    int mine = 0;
    for (int i = 0; i < n; i++)
        mine += eval_mine(ctx, i);
    char **prompts = HW_CALLOC((size_t)(mine ? mine : 1), sizeof(char *));
    char **outs = HW_CALLOC((size_t)(mine ? mine : 1), sizeof(char *));
    for (int i = 0, k = 0; i < n && !rc; i++) {
        if (!eval_mine(ctx, i))
            continue;
        struct chat_span *spans = NULL;
        /* eval.indicator: the checkpoint's CSFT indicator after every user turn */
        struct chat_msg *msgs = HW_MALLOC(sizeof(*msgs) * (size_t)r.ex[i].n_msgs);
        for (int q = 0; q < r.ex[i].n_msgs; q++) {
            msgs[q] = r.ex[i].msgs[q];
            if (e->indicator && ctx->mc->sft.indicator[0] && !strcmp(msgs[q].role, "user"))
                msgs[q].content = sft_tag_text(msgs[q].content, ctx->mc->sft.indicator);
        }
        int len = chat_render(&tpl, msgs, r.ex[i].n_msgs, 1, &prompts[k++], &spans, err);
        rc = len < 0 ? len : 0;
        for (int q = 0; q < r.ex[i].n_msgs; q++)
            if (msgs[q].content != r.ex[i].msgs[q].content)
                free((char *)msgs[q].content);
        free(msgs);
        free(spans);
    }
    if (!rc)
        rc = lm_generate(ctx->lm, (const char *const *)prompts, mine, e->max_new_tokens, &stop,
                         outs, err);
    /* per-sample metrics and judgements, summed over ranks */
    const size_t nn = (size_t)(n ? n : 1);
    double *vals[N_MET];
    for (int j = 0; j < N_MET; j++)
        vals[j] = HW_CALLOC(nn, sizeof(double));
    double *judged = HW_CALLOC(nn * N_ASPECT * 2, sizeof(double)); /* (score, asked) */
    char **texts = HW_CALLOC(nn, sizeof(char *));
    int judge = e->judge_command.n > 0;
    for (int i = 0, k = 0; i < n && !rc; i++) {
        if (!eval_mine(ctx, i))
            continue;
        const char *ans = outs[k++];
        struct metrics_rouge ro;
        metrics_rouge(ans, r.ex[i].reference, &ro);
        vals[0][i] = metrics_bleu(ans, r.ex[i].reference);
        vals[1][i] = ro.r1;
        vals[2][i] = ro.r2;
        vals[3][i] = ro.rl;
        vals[4][i] = ro.rlsum;
        texts[i] = HW_STRDUP(ans);
        for (int a = 0; judge && a < N_ASPECT && !rc; a++) {
            if (!(r.ex[i].aspects & (1u << a)))
                continue;
            char *jp = judge_prompt(&r.ex[i], 1u << a, ans);
            int v = judge_run(&e->judge_command, jp, err);
            free(jp);
            if (v < 0)
                rc = v;
            judged[((size_t)i * N_ASPECT + a) * 2] = v;
            judged[((size_t)i * N_ASPECT + a) * 2 + 1] = 1;
        }
    }
    if (dist_allreduce_max_int(ctx->d, rc ? 1 : 0) && !rc)
        rc = hw_errf(err, HW_EIO, "rolemrc: failed on another rank (see its message)");
    if (!rc) {
        for (int j = 0; j < N_MET; j++)
            eval_sum(ctx, vals[j], n);
        eval_sum(ctx, judged, n * N_ASPECT * 2);
        dist_gather_strings(ctx->d, texts, n);
        for (int j = 0; j < N_MET; j++)
            eval_put(metrics, met_names[j], masked_mean(vals[j], NULL, n),
                     metrics_bootstrap_mean_stderr(vals[j], n, e->bootstrap_iters,
                                                   (uint64_t)e->seed + (uint64_t)j));
        /* per task tag, per official group, per aspect */
        json_t *per_task = json_object(), *per_group = json_object(), *per_aspect = json_object();
        int *mask = HW_CALLOC(nn, sizeof(int));
        for (int i = 0; i < n; i++) {
            char grp[256];
            rolemrc_task_group(r.ex[i].task, grp, sizeof(grp));
            if (!json_object_get(per_task, r.ex[i].task)) {
                for (int q = 0; q < n; q++)
                    mask[q] = !strcmp(r.ex[q].task, r.ex[i].task);
                put_group(per_task, r.ex[i].task, vals, mask, n);
            }
            if (!json_object_get(per_group, grp)) {
                for (int q = 0; q < n; q++) {
                    char g2[256];
                    rolemrc_task_group(r.ex[q].task, g2, sizeof(g2));
                    mask[q] = !strcmp(g2, grp);
                }
                put_group(per_group, grp, vals, mask, n);
            }
        }
        for (int a = 0; a < N_ASPECT; a++) {
            for (int q = 0; q < n; q++)
                mask[q] = (r.ex[q].aspects >> a) & 1u;
            put_group(per_aspect, rolemrc_aspect_name(1u << a), vals, mask, n);
            if (judge) {
                double s = 0, c = 0;
                for (int q = 0; q < n; q++) {
                    s += judged[((size_t)q * N_ASPECT + a) * 2];
                    c += judged[((size_t)q * N_ASPECT + a) * 2 + 1];
                }
                char key[64];
                snprintf(key, sizeof(key), "judge_%s", rolemrc_aspect_name(1u << a));
                if (c > 0)
                    eval_put(metrics, key, s / c, -1.0);
                json_object_set_new(json_object_get(per_aspect, rolemrc_aspect_name(1u << a)),
                                    "judge", c > 0 ? json_real(s / c) : json_null());
            }
        }
        free(mask);
        json_object_set_new(info, "per_task", per_task);
        json_object_set_new(info, "per_group", per_group);
        json_object_set_new(info, "per_aspect", per_aspect);
        if (ctx->samples && ctx->d->rank == 0)
            for (int i = 0; i < n; i++)
                json_array_append_new(ctx->samples,
                                      json_pack("{s:s,s:i,s:s,s:s,s:s?,s:f,s:f,s:f}", "task",
                                                "rolemrc", "line", r.ex[i].line, "tag",
                                                r.ex[i].task, "reference", r.ex[i].reference,
                                                "output", texts[i], "bleu", vals[0][i], "rouge1",
                                                vals[1][i], "rougeL", vals[3][i]));
    }
    json_object_set_new(info, "data", json_string(e->rolemrc_data));
    json_object_set_new(info, "samples", json_integer(n));
    json_object_set_new(info, "max_new_tokens", json_integer(e->max_new_tokens));
    json_object_set_new(info, "judge", json_boolean(judge));
    for (int i = 0; i < mine; i++) {
        free(prompts[i]);
        free(outs[i]);
    }
    for (int i = 0; i < n; i++)
        free(texts[i]);
    for (int j = 0; j < N_MET; j++)
        free(vals[j]);
    free(prompts), free(outs), free(texts), free(judged);
    rolemrc_free(&r);
    return rc;
}
