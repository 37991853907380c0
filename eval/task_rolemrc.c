/* eval/task_rolemrc.c -- `rolemrc`: the RoleMRC pipeline. Each test row's `question` messages
 * are rendered with the checkpoint's own chat template (sft.tpl_*, the one it was trained
 * with) and answered by batched greedy generation (eval.max_new_tokens, stop strings, KV
 * cache); the answer is scored against `reference` with BLEU-4 and ROUGE-1/2/L/Lsum as the
 * official evaluation.py computes them (per sample, then the mean; eval.rolemrc_protocol
 * strict for the stricter reading, see metrics_rolemrc_sample), with bootstrap standard errors,
 * overall, per task tag, per official group and per judge aspect. With
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
#include "sha256.h"
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

static const char *judge_prompt_format(void) {
    return "You are judging a role-playing reply.\n\n[Role profile and rules]\n%s\n\n"
           "[Last user turn]\n%s\n\n[Response]\n%s\n\n[Reference response]\n%s\n\n"
           "Task tag: %s\nQuestion: %s\nAnswer with a single digit: 1 for yes, 0 for "
           "no.\n";
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
    const char *fmt = judge_prompt_format();
    const char *sys = last_of(x, "system"), *user = last_of(x, "user");
    size_t n = strlen(fmt) + strlen(sys) + strlen(user) + strlen(answer) + strlen(x->reference) +
               strlen(x->task) + strlen(q) + 1;
    char *p = HW_MALLOC(n);
    snprintf(p, n, fmt, sys, user, answer, x->reference, x->task, q);
    return p;
}

/* Mean and bootstrap stderr of x over the samples whose masks (NULL: all) are both set; NAN
 * for both when no sample is. */
static double masked_mean(const double *x, const int *mask, const int *mask2, int n, int iters,
                          uint64_t seed, double *se) {
    double *v = HW_MALLOC(sizeof(double) * (size_t)(n ? n : 1)), s = 0.0;
    int k = 0;
    for (int i = 0; i < n; i++)
        if ((!mask || mask[i]) && (!mask2 || mask2[i])) {
            v[k++] = x[i];
            s += x[i];
        }
    *se = k ? metrics_bootstrap_mean_stderr(v, k, iters, seed) : NAN;
    free(v);
    return k ? s / k : NAN;
}

static json_t *real_or_null(double v) {
    return isfinite(v) ? json_real(v) : json_null();
}

/* A group's n and the mean and "<metric>_stderr" of each metric (BLEU over its scored
 * samples only: bleu_ok). */
static void put_group(json_t *obj, const char *name, double *const *vals, const int *bleu_ok,
                      const int *mask, int n, int iters, uint64_t seed) {
    json_t *g = json_object();
    int k = 0;
    for (int i = 0; i < n; i++)
        k += mask[i];
    json_object_set_new(g, "n", json_integer(k));
    for (int j = 0; j < N_MET; j++) {
        double se, v = masked_mean(vals[j], mask, j == 0 ? bleu_ok : NULL, n, iters,
                                   seed + (uint64_t)j, &se);
        char key[64];
        snprintf(key, sizeof(key), "%s_stderr", met_names[j]);
        json_object_set_new(g, met_names[j], real_or_null(v));
        json_object_set_new(g, key, real_or_null(se));
    }
    json_object_set_new(obj, name, g);
}

/* The chat template as text, for its hash in the results. */
static char *template_text(const struct chat_template *t) {
    json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:s}", "bos", t->bos, "system", t->system, "user",
                          t->user, "assistant", t->assistant, "end_turn", t->end_turn);
    HW_ASSERT(j != NULL);
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    return s;
}

int task_rolemrc(struct eval_ctx *ctx, json_t *metrics, json_t *info, char *err) {
    const struct cfg_eval *e = &ctx->c->eval;
    if (!e->rolemrc_data[0])
        return hw_errf(err, HW_ECONFIG,
                       "rolemrc: eval.rolemrc_data is not set "
                       "(roleMRC_test.jsonl or a file in its schema)");
    struct rolemrc r;
    int rc = rolemrc_load(&r, e->rolemrc_data, err);
    if (rc) /* a stop request during the load may have come to this rank only */
        return eval_agree(ctx, rc, "rolemrc", err);
    int n = r.n;
    if (e->limit && n > e->limit)
        n = e->limit;
    if (n == 0) { /* rolemrc_load refuses an empty file; kept for any other way to get here */
        rolemrc_free(&r);
        return hw_errf(err, HW_EFORMAT, "%s: error: no examples to score", e->rolemrc_data);
    }
    const enum metrics_rolemrc_protocol protocol =
        !strcmp(e->rolemrc_protocol, "strict") ? METRICS_ROLEMRC_STRICT : METRICS_ROLEMRC_OFFICIAL;
    /* the template the checkpoint was trained with (the default one unless sft.tpl_* say) */
    struct chat_template tpl;
    sft_template_from_cfg(&tpl, &ctx->mc->sft);
    struct cfg_list stop;
    if (e->stop.n) {
        stop = e->stop;
    } else { /* the template's end of turn and the next user tag */
        memset(&stop, 0, sizeof(stop));
        if (tpl.end_turn[0])
            snprintf(stop.item[stop.n++], CFG_PATH_MAX, "%s", tpl.end_turn);
        if (tpl.user[0])
            snprintf(stop.item[stop.n++], CFG_PATH_MAX, "%s", tpl.user);
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
    const long cut0 = ctx->lm->n_truncated;
    if (!rc)
        rc = lm_generate(ctx->lm, (const char *const *)prompts, mine, e->max_new_tokens, &stop,
                         outs, err);
    double n_cut = (double)(ctx->lm->n_truncated - cut0);
    /* per-sample metrics and judgements, summed over ranks */
    const size_t nn = (size_t)(n ? n : 1);
    double *vals[N_MET];
    for (int j = 0; j < N_MET; j++)
        vals[j] = HW_CALLOC(nn, sizeof(double));
    double *judged = HW_CALLOC(nn * N_ASPECT * 2, sizeof(double)); /* (score, asked) */
    double *bleu_okd = HW_CALLOC(nn, sizeof(double));              /* 1: in the BLEU mean */
    char **texts = HW_CALLOC(nn, sizeof(char *));
    int *bleu_ok = HW_CALLOC(nn, sizeof(int));
    int judge = e->judge_command.n > 0;
    for (int i = 0, k = 0; i < n && !rc; i++) {
        if (!eval_mine(ctx, i))
            continue;
        const char *prompt = prompts[k];
        const char *ans = outs[k++];
        struct metrics_rolemrc sm;
        metrics_rolemrc_sample(ans, r.ex[i].reference, protocol, &sm);
        vals[0][i] = sm.bleu;
        bleu_okd[i] = sm.bleu_scored;
        vals[1][i] = sm.rouge.r1;
        vals[2][i] = sm.rouge.r2;
        vals[3][i] = sm.rouge.rl;
        vals[4][i] = sm.rouge.rlsum;
        texts[i] = HW_STRDUP(ans);
        json_t *rec = NULL;
        if (ctx->samples)
            rec = json_pack("{s:s,s:i,s:o,s:o,s:o,s:o,s:f,s:b,s:f,s:f,s:f,s:f}", "task", "rolemrc",
                            "line", r.ex[i].line, "tag", eval_text(r.ex[i].task), "prompt",
                            eval_text(prompt), "reference", eval_text(r.ex[i].reference), "output",
                            eval_text(ans), "bleu", sm.bleu, "bleu_scored", sm.bleu_scored,
                            "rouge1", sm.rouge.r1, "rouge2", sm.rouge.r2, "rougeL", sm.rouge.rl,
                            "rougeLsum", sm.rouge.rlsum);
        for (int a = 0; judge && a < N_ASPECT && !rc; a++) {
            if (!(r.ex[i].aspects & (1u << a)))
                continue;
            if (lm_stop_requested(ctx->lm)) {
                rc = hw_errf(err, HW_ESTOP, "rolemrc: stopped while judging example %d", i);
                break;
            }
            char *jp = judge_prompt(&r.ex[i], 1u << a, ans);
            int v = judge_run(&e->judge_command, jp, err);
            free(jp);
            if (v < 0)
                rc = v;
            judged[((size_t)i * N_ASPECT + a) * 2] = v;
            judged[((size_t)i * N_ASPECT + a) * 2 + 1] = 1;
            if (rec && v >= 0) {
                char key[64];
                snprintf(key, sizeof(key), "judge_%s", rolemrc_aspect_name(1u << a));
                json_object_set_new(rec, key, json_integer(v));
            }
        }
        if (rec)
            eval_sample(ctx, i, rec);
    }
    rc = eval_agree(ctx, rc, "rolemrc", err);
    if (!rc) {
        for (int j = 0; j < N_MET; j++)
            eval_sum(ctx, vals[j], n);
        eval_sum(ctx, judged, n * N_ASPECT * 2);
        eval_sum(ctx, bleu_okd, n);
        eval_sum(ctx, &n_cut, 1);
        dist_gather_strings(ctx->d, texts, n);
        for (int i = 0; i < n; i++)
            bleu_ok[i] = bleu_okd[i] > 0.5;
        const uint64_t seed = (uint64_t)e->seed;
        for (int j = 0; j < N_MET; j++) {
            double se, v = masked_mean(vals[j], j == 0 ? bleu_ok : NULL, NULL, n,
                                       e->bootstrap_iters, seed + (uint64_t)j, &se);
            eval_put(metrics, met_names[j], v, se);
        }
        int scored = 0;
        for (int i = 0; i < n; i++)
            scored += bleu_ok[i];
        json_object_set_new(info, "bleu_scored", json_integer(scored));
        /* per task tag, per official group, per aspect */
        json_t *per_task = json_object(), *per_group = json_object(), *per_aspect = json_object();
        int *mask = HW_CALLOC(nn, sizeof(int));
        for (int i = 0; i < n; i++) {
            char grp[256];
            rolemrc_task_group(r.ex[i].task, grp, sizeof(grp));
            if (!json_object_get(per_task, r.ex[i].task)) {
                for (int q = 0; q < n; q++)
                    mask[q] = !strcmp(r.ex[q].task, r.ex[i].task);
                put_group(per_task, r.ex[i].task, vals, bleu_ok, mask, n, e->bootstrap_iters,
                          seed + 16 + 8 * (uint64_t)i);
            }
            if (!json_object_get(per_group, grp)) {
                for (int q = 0; q < n; q++) {
                    char g2[256];
                    rolemrc_task_group(r.ex[q].task, g2, sizeof(g2));
                    mask[q] = !strcmp(g2, grp);
                }
                put_group(per_group, grp, vals, bleu_ok, mask, n, e->bootstrap_iters,
                          seed + 16 + 8 * (uint64_t)(n + i));
            }
        }
        for (int a = 0; a < N_ASPECT; a++) {
            for (int q = 0; q < n; q++)
                mask[q] = (r.ex[q].aspects >> a) & 1u;
            put_group(per_aspect, rolemrc_aspect_name(1u << a), vals, bleu_ok, mask, n,
                      e->bootstrap_iters, seed + 16 + 8 * (uint64_t)(2 * n + a));
            if (judge) {
                double *jv = HW_CALLOC(nn, sizeof(double));
                for (int q = 0; q < n; q++) {
                    jv[q] = judged[((size_t)q * N_ASPECT + a) * 2];
                    mask[q] = judged[((size_t)q * N_ASPECT + a) * 2 + 1] > 0.5;
                }
                double se, v = masked_mean(jv, mask, NULL, n, e->bootstrap_iters,
                                           seed + 8 + (uint64_t)a, &se);
                free(jv);
                char key[64];
                snprintf(key, sizeof(key), "judge_%s", rolemrc_aspect_name(1u << a));
                if (isfinite(v))
                    eval_put(metrics, key, v, se);
                json_t *g = json_object_get(per_aspect, rolemrc_aspect_name(1u << a));
                json_object_set_new(g, "judge", real_or_null(v));
                json_object_set_new(g, "judge_stderr", real_or_null(se));
            }
        }
        free(mask);
        json_object_set_new(info, "per_task", per_task);
        json_object_set_new(info, "per_group", per_group);
        json_object_set_new(info, "per_aspect", per_aspect);
    }
    if (!rc)
        rc = eval_info_file(info, "data", e->rolemrc_data, err);
    char *tt = template_text(&tpl);
    eval_info_template(info, tt);
    free(tt);
    char jh[65];
    const char *jfmt = judge_prompt_format();
    sha256_hex(jfmt, strlen(jfmt), jh);
    json_object_set_new(info, "judge_prompt_sha256", json_string(jh));
    json_object_set_new(info, "protocol", json_string(e->rolemrc_protocol));
    json_object_set_new(info, "truncated_prompts", json_integer((json_int_t)n_cut));
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
    free(prompts), free(outs), free(texts), free(judged), free(bleu_okd), free(bleu_ok);
    rolemrc_free(&r);
    return rc;
}
