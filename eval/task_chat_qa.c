/* eval/task_chat_qa.c -- `chat_qa`: short-answer questions in chat form, for conditional SFT
 * (docs/sft.md). Each line of eval.chat_data (RoleMRC `question` schema: messages, a
 * `reference` answer and a `task` tag used as the category) is rendered with the checkpoint's
 * own chat template (sft.tpl_*), optionally with the indicator appended to every user turn
 * (eval.indicator, as the reference evaluation's squad/quac/drop tasks do) and PASTA steering
 * (eval.pasta_alpha); the greedy reply (up to eval.max_new_tokens, cut at the end-of-turn text)
 * is scored by containment (the paper's metric for SQuAD/QuAC/DROP: the normalised reference
 * occurs in the normalised reply) and by exact match, overall and per category. Each example
 * decodes alone (B = 1), so scores do not depend on the batch or the ranks. */
#include "../core/check.h"
#include "../datasets/sft.h"
#include "../eval/metrics.h"
#include "tasks.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* lower case, ASCII punctuation dropped, whitespace runs collapsed to one space, trimmed */
static char *normalise(const char *s) {
    size_t n = strlen(s), k = 0;
    char *o = HW_MALLOC(n + 1);
    int space = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 128 && ispunct(c))
            continue;
        if (isspace(c)) {
            space = k > 0;
            continue;
        }
        if (space)
            o[k++] = ' ';
        space = 0;
        o[k++] = (char)tolower(c);
    }
    o[k] = '\0';
    return o;
}

/* Greedy reply to the token prompt st (generation prompt included). */
static char *reply(struct lm *lm, const struct sft_tokens *st, const struct chat_template *t,
                   int max_new, float alpha, int *cut_prompt) {
    struct gpt *m = lm->m;
    const int room = lm->max_T - max_new > 1 ? lm->max_T - max_new : 1;
    const int skip = st->n > room ? st->n - room : 0; /* cut the prompt from the left */
    *cut_prompt = skip > 0;
    const int np = st->n - skip;
    struct gpt_kv kv;
    gpt_kv_init(&kv, m, 1, np + max_new);
    kv.steer_alpha = alpha;
    for (int i = 0; i < np; i++)
        kv.user[i] = (uint8_t)sft_is_user_content(lm->tok, st, skip + i);
    const float *logits = NULL;
    for (int i = 0; i < np; i++)
        logits = gpt_decode_step(m, &kv, st->ids[skip + i]);
    int32_t *gen = HW_MALLOC(sizeof(int32_t) * (size_t)(max_new + 1));
    int n = 0;
    char *text = NULL;
    for (;;) {
        int32_t best = 0;
        for (int v = 1; v < m->c.V; v++)
            if (logits[v] > logits[best])
                best = v;
        if (best == lm->eot || best >= bpe_vocab_size(lm->tok))
            break;
        gen[n++] = best;
        free(text);
        bpe_decode(lm->tok, gen, n, &text);
        if ((t->end_turn[0] && strstr(text, t->end_turn)) || n >= max_new ||
            kv.n[0] >= np + max_new)
            break;
        logits = gpt_decode_step(m, &kv, best);
    }
    if (!text)
        text = HW_STRDUP("");
    char *cut = t->end_turn[0] ? strstr(text, t->end_turn) : NULL;
    if (cut)
        *cut = '\0';
    free(gen);
    gpt_kv_free(&kv);
    return text;
}

int task_chat_qa(struct eval_ctx *ctx, json_t *metrics, json_t *info, char *err) {
    const struct cfg_eval *e = &ctx->c->eval;
    const struct cfg_sft *ms = &ctx->mc->sft;
    if (!e->chat_data[0])
        return hw_errf(err, HW_ECONFIG,
                       "chat_qa: eval.chat_data is not set (JSONL with question + reference)");
    struct sft_data sd;
    int rc = sft_load(&sd, e->chat_data, err);
    if (rc) /* a stop request during the load may have come to this rank only */
        return eval_agree(ctx, rc, "chat_qa", err);
    int n = sd.n;
    if (e->limit && n > e->limit)
        n = e->limit;
    if (n == 0)
        rc = hw_errf(err, HW_EFORMAT, "%s: error: no examples to score", e->chat_data);
    for (int i = 0; i < n && !rc; i++)
        if (sd.conv[i].schema != SFT_SCHEMA_QUESTION)
            rc = hw_errf(err, HW_EFORMAT,
                         "%s:%d: error: chat_qa needs the question + reference schema",
                         e->chat_data, sd.conv[i].line);
    if (e->indicator && !ms->indicator[0])
        rc = hw_errf(err, HW_ECONFIG,
                     "chat_qa: eval.indicator is set but the checkpoint has no "
                     "sft.indicator");
    if (rc) {
        sft_free(&sd);
        return rc;
    }
    struct chat_template tpl;
    sft_template_from_cfg(&tpl, ms);
    const size_t nn = (size_t)(n ? n : 1);
    double *con = HW_CALLOC(nn, sizeof(double)), *ex = HW_CALLOC(nn, sizeof(double));
    double n_cut = 0;
    char **outs = HW_CALLOC(nn, sizeof(char *));
    for (int i = 0; i < n && !rc; i++) {
        if (!eval_mine(ctx, i))
            continue;
        if (lm_stop_requested(ctx->lm)) {
            rc = hw_errf(err, HW_ESTOP, "chat_qa: stopped before example %d of %d", i, n);
            break;
        }
        struct sft_conv *c = &sd.conv[i];
        const int nq = c->n_msgs - 1; /* the last message is the reference */
        if (e->indicator)
            for (int k = 0; k < nq; k++)
                if (!strcmp(c->msgs[k].role, "user")) {
                    char *tagged = sft_tag_text(c->msgs[k].content, ms->indicator);
                    sft_set_content(c, k, tagged);
                    free(tagged);
                }
        struct sft_tokens st;
        rc = sft_encode(ctx->lm->tok, &tpl, c->msgs, nq, 1, &st, err);
        if (rc)
            break;
        int cut;
        outs[i] = reply(ctx->lm, &st, &tpl, e->max_new_tokens, (float)e->pasta_alpha, &cut);
        n_cut += cut;
        sft_tokens_free(&st);
        char *a = normalise(outs[i]), *r = normalise(c->msgs[nq].content);
        con[i] = r[0] && strstr(a, r) != NULL;
        ex[i] = !strcmp(a, r);
        free(a);
        free(r);
        if (ctx->samples) {
            char *text = NULL;
            struct chat_span *spans = NULL;
            if (chat_render(&tpl, c->msgs, nq, 1, &text, &spans, err) < 0)
                text = NULL; /* sft_encode rendered it already: cannot fail here */
            eval_sample(ctx, i,
                        json_pack("{s:s,s:i,s:o,s:o,s:o,s:f,s:f,s:b}", "task", "chat_qa", "line",
                                  c->line, "prompt", eval_text(text), "reference",
                                  eval_text(c->msgs[nq].content), "output", eval_text(outs[i]),
                                  "contains", con[i], "exact_match", ex[i], "truncated", cut));
            free(text);
            free(spans);
        }
    }
    rc = eval_agree(ctx, rc, "chat_qa", err);
    if (!rc) {
        eval_sum(ctx, con, n);
        eval_sum(ctx, ex, n);
        eval_sum(ctx, &n_cut, 1);
        dist_gather_strings(ctx->d, outs, n);
        double sc = 0, se = 0;
        for (int i = 0; i < n; i++)
            sc += con[i], se += ex[i];
        const uint64_t seed = (uint64_t)e->seed;
        eval_put(metrics, "contains", sc / n,
                 metrics_bootstrap_mean_stderr(con, n, e->bootstrap_iters, seed));
        eval_put(metrics, "exact_match", se / n,
                 metrics_bootstrap_mean_stderr(ex, n, e->bootstrap_iters, seed + 1));
        /* per category (the `task` field) */
        json_t *per = json_object();
        for (int i = 0; i < n; i++) {
            json_t *tk = json_object_get(sd.conv[i].root, "task");
            const char *cat = json_is_string(tk) ? json_string_value(tk) : "";
            json_t *g = json_object_get(per, cat);
            if (!g) {
                g = json_pack("{s:i,s:f,s:f}", "n", 0, "contains", 0.0, "exact_match", 0.0);
                json_object_set_new(per, cat, g);
            }
            json_object_set_new(g, "n",
                                json_integer(json_integer_value(json_object_get(g, "n")) + 1));
            json_object_set_new(
                g, "contains", json_real(json_real_value(json_object_get(g, "contains")) + con[i]));
            json_object_set_new(
                g, "exact_match",
                json_real(json_real_value(json_object_get(g, "exact_match")) + ex[i]));
        }
        const char *cat;
        json_t *g;
        double *cv = HW_MALLOC(sizeof(double) * nn), *ev = HW_MALLOC(sizeof(double) * nn);
        uint64_t gs = seed + 2;
        json_object_foreach(per, cat, g) {
            const double k = (double)json_integer_value(json_object_get(g, "n"));
            int m = 0;
            for (int i = 0; i < n; i++) {
                json_t *tk = json_object_get(sd.conv[i].root, "task");
                if (!strcmp(json_is_string(tk) ? json_string_value(tk) : "", cat)) {
                    cv[m] = con[i];
                    ev[m++] = ex[i];
                }
            }
            const double se_c = metrics_bootstrap_mean_stderr(cv, m, e->bootstrap_iters, gs++);
            const double se_e = metrics_bootstrap_mean_stderr(ev, m, e->bootstrap_iters, gs++);
            json_object_set_new(g, "contains",
                                json_real(json_real_value(json_object_get(g, "contains")) / k));
            json_object_set_new(g, "contains_stderr",
                                isfinite(se_c) ? json_real(se_c) : json_null());
            json_object_set_new(g, "exact_match",
                                json_real(json_real_value(json_object_get(g, "exact_match")) / k));
            json_object_set_new(g, "exact_match_stderr",
                                isfinite(se_e) ? json_real(se_e) : json_null());
            char key[200];
            snprintf(key, sizeof(key), "contains_%.150s", cat);
            if (cat[0])
                eval_put(metrics, key, json_real_value(json_object_get(g, "contains")), se_c);
        }
        free(cv);
        free(ev);
        json_object_set_new(info, "per_category", per);
        rc = eval_info_file(info, "data", e->chat_data, err);
        json_t *tj =
            json_pack("{s:s,s:s,s:s,s:s,s:s}", "bos", tpl.bos, "system", tpl.system, "user",
                      tpl.user, "assistant", tpl.assistant, "end_turn", tpl.end_turn);
        char *tt = json_dumps(tj, JSON_COMPACT | JSON_PRESERVE_ORDER);
        eval_info_template(info, tt);
        free(tt);
        json_decref(tj);
        json_object_set_new(info, "truncated_prompts", json_integer((json_int_t)n_cut));
    }
    json_object_set_new(info, "samples", json_integer(n));
    json_object_set_new(info, "indicator", e->indicator ? json_string(ms->indicator) : json_null());
    json_object_set_new(info, "pasta_alpha", json_real(e->pasta_alpha));
    json_object_set_new(info, "max_new_tokens", json_integer(e->max_new_tokens));
    for (int i = 0; i < n; i++)
        free(outs[i]);
    free(outs), free(con), free(ex);
    sft_free(&sd);
    return rc;
}
