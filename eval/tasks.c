/* eval/tasks.c -- the task registry and helpers shared by the tasks (see tasks.h). */
#include "tasks.h"

#include "../core/check.h"
#include "sha256.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
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

static const struct eval_task synth = {
    "synth", "1",
    "greedy exact match on the built-in synthetic tasks (copy, reverse, add, recall; the demo)",
    task_synth};

const struct eval_task *const eval_tasks[] = {
    &perplexity, &multifc, &multifc_classify, &rolemrc, &chat_qa, &synth, NULL};

const struct eval_task *eval_find_task(const char *name) {
    for (int i = 0; eval_tasks[i]; i++)
        if (!strcmp(eval_tasks[i]->name, name))
            return eval_tasks[i];
    return NULL;
}

int eval_agree(struct eval_ctx *ctx, int rc, const char *task, char *err) {
    if (dist_allreduce_max_int(ctx->d, rc ? 1 : 0) && !rc)
        rc = hw_errf(err, HW_EIO, "%s: failed on another rank (see its message)", task);
    return rc;
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

int eval_info_file(json_t *info, const char *key, const char *path, char *err) {
    char hex[65], k[96];
    int rc = sha256_file(path, hex, err);
    if (rc)
        return rc;
    json_object_set_new(info, key, json_string(path));
    snprintf(k, sizeof(k), "%s_sha256", key);
    json_object_set_new(info, k, json_string(hex));
    return 0;
}

void eval_info_template(json_t *info, const char *text) {
    char hex[65];
    sha256_hex(text, strlen(text), hex);
    json_object_set_new(info, "prompt_template", eval_text(text));
    json_object_set_new(info, "prompt_template_sha256", json_string(hex));
}

/* Bytes of the well-formed UTF-8 sequence at p (RFC 3629), or 0. */
static int utf8_len(const unsigned char *p) {
    if (*p < 0x80)
        return 1;
    int n = (*p & 0xE0) == 0xC0 ? 2 : (*p & 0xF0) == 0xE0 ? 3 : (*p & 0xF8) == 0xF0 ? 4 : 0;
    if (!n || (n == 2 && *p < 0xC2) || (n == 4 && *p > 0xF4))
        return 0;
    for (int k = 1; k < n; k++)
        if ((p[k] & 0xC0) != 0x80)
            return 0;
    if ((n == 3 && *p == 0xE0 && p[1] < 0xA0) || (n == 3 && *p == 0xED && p[1] >= 0xA0) ||
        (n == 4 && *p == 0xF0 && p[1] < 0x90) || (n == 4 && *p == 0xF4 && p[1] >= 0x90))
        return 0;
    return n;
}

json_t *eval_text(const char *s) {
    if (!s)
        return json_string("");
    size_t n = strlen(s), k = 0;
    char *o = HW_MALLOC(3 * n + 1);
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        int l = utf8_len(p);
        if (l) {
            memcpy(o + k, p, (size_t)l);
            k += (size_t)l;
            p += l;
        } else {
            memcpy(o + k, "\xEF\xBF\xBD", 3);
            k += 3;
            p++;
        }
    }
    json_t *j = json_stringn(o, k);
    free(o);
    HW_ASSERT(j != NULL);
    return j;
}

void eval_sample(struct eval_ctx *ctx, int doc_id, json_t *rec) {
    HW_ASSERT(rec != NULL);
    if (!ctx->samples) {
        json_decref(rec);
        return;
    }
    json_object_set_new(rec, "doc_id", json_integer(doc_id));
    json_array_append_new(ctx->samples, rec);
}
