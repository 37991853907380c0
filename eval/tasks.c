/* eval/tasks.c -- the task registry and helpers shared by the tasks (see tasks.h). */
#include "tasks.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const struct eval_task perplexity = {
    "perplexity", "1", "loss, perplexity and bits per byte on a token shard or raw text",
    task_perplexity};
static const struct eval_task multifc = {
    "multifc", "1",
    "MultiFC claim verification by log-likelihood of each of the domain's labels (lm-eval style)",
    task_multifc};
static const struct eval_task rolemrc = {
    "rolemrc", "1", "RoleMRC: greedy generation, BLEU-4 and ROUGE per task and aspect; LLM judge",
    task_rolemrc};

static const struct eval_task multifc_classify = {
    "multifc_classify", "1",
    "MultiFC with the fine-tuned classifier head (train.task classify), on the held-out test part",
    task_multifc_classify};

static const struct eval_task chat_qa = {
    "chat_qa", "1",
    "short answers in chat form (question + reference JSONL), containment and exact match; "
    "eval.indicator / eval.pasta_alpha for conditional SFT",
    task_chat_qa};

const struct eval_task *const eval_tasks[] = {&perplexity, &multifc, &multifc_classify,
                                              &rolemrc,    &chat_qa, NULL};

const struct eval_task *eval_find_task(const char *name) {
    for (int i = 0; eval_tasks[i]; i++)
        if (!strcmp(eval_tasks[i]->name, name))
            return eval_tasks[i];
    return NULL;
}

void eval_sum(struct eval_ctx *ctx, double *v, int n) {
    if (n > 0)
        dist_allreduce_group_doubles(ctx->d, DIST_WORLD, v, n);
}

void eval_put(json_t *metrics, const char *name, double v, double se) {
    char key[160];
    snprintf(key, sizeof(key), "%s,none", name);
    json_object_set_new(metrics, key, isfinite(v) ? json_real(v) : json_null());
    if (se >= 0.0) {
        snprintf(key, sizeof(key), "%s_stderr,none", name);
        json_object_set_new(metrics, key, isfinite(se) ? json_real(se) : json_null());
    }
}
