/* datasets/rolemrc.c -- RoleMRC test-set reader (JSON lines via jansson) and the task-tag ->
 * judge-aspect map (see rolemrc.h). */
#define _POSIX_C_SOURCE 200809L
#include "rolemrc.h"

#include "../core/check.h"
#include "../core/fsutil.h"
#include "../core/interrupt.h"
#include "json_kind.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* task tags */

static int starts_with_(const char *s, const char *prefix, const char **rest) {
    size_t n = strlen(prefix);
    if (strncmp(s, prefix, n) != 0)
        return 0;
    *rest = s + n;
    return 1;
}

/* Length of the base tag inside task (the part before any suffix). */
static size_t group_len_(const char *task) {
    const char *cut = strstr(task, "-special-");
    if (!cut)
        cut = strstr(task, "-2nd");
    size_t n = cut ? (size_t)(cut - task) : strlen(task);
    const char *suf = "-refused";
    size_t ls = strlen(suf);
    if (!cut && n >= ls && strcmp(task + n - ls, suf) == 0)
        n -= ls;
    return n;
}

void rolemrc_task_group(const char *task, char *out, size_t cap) {
    if (cap == 0)
        return;
    size_t n = group_len_(task);
    if (n > cap - 1)
        n = cap - 1;
    memcpy(out, task, n);
    out[n] = '\0';
}

unsigned rolemrc_task_aspects(const char *task, int *knowledge_within) {
    if (knowledge_within)
        *knowledge_within = -1;
    size_t n = group_len_(task);
    const char *p, *suffix = task + n;
    int related, answer, narration;
    if (starts_with_(task, "role_related_mrc_", &p))
        related = 1;
    else if (starts_with_(task, "role_unrelated_mrc_", &p))
        related = 0;
    else
        return 0;
    if (starts_with_(p, "answer_", &p))
        answer = 1;
    else if (starts_with_(p, "refused_", &p))
        answer = 0;
    else
        return 0;
    if (starts_with_(p, "with_narration", &p))
        narration = 1;
    else if (starts_with_(p, "no_narration", &p))
        narration = 0;
    else
        return 0;
    if (p != suffix)
        return 0;
    const char *rest;
    if (*suffix) {
        if (strcmp(suffix, "-refused") == 0)
            return ROLEMRC_ASPECT_PRIORITY;
        if (starts_with_(suffix, "-special-", &rest) && *rest)
            return ROLEMRC_ASPECT_NESTED;
        if (starts_with_(suffix, "-2nd", &rest) && *rest)
            return ROLEMRC_ASPECT_MULTITURN;
        return 0;
    }
    /* evaluation_config of LuJunru/RoleMRC evaluation/llm_judge.py, rows 2.1.1-2.2.4 */
    unsigned a;
    if (related && answer)
        a = narration ? ROLEMRC_ASPECT_KNOWLEDGE | ROLEMRC_ASPECT_STYLE : ROLEMRC_ASPECT_KNOWLEDGE;
    else if (related)
        a = narration ? ROLEMRC_ASPECT_KNOWLEDGE : ROLEMRC_ASPECT_STYLE;
    else if (!answer)
        a = narration ? ROLEMRC_ASPECT_KNOWLEDGE : ROLEMRC_ASPECT_KNOWLEDGE | ROLEMRC_ASPECT_STYLE;
    else
        a = narration ? ROLEMRC_ASPECT_KNOWLEDGE : ROLEMRC_ASPECT_STYLE;
    if (knowledge_within && (a & ROLEMRC_ASPECT_KNOWLEDGE))
        *knowledge_within = related;
    return a;
}

const char *rolemrc_aspect_name(unsigned aspect_bit) {
    switch (aspect_bit) {
    case ROLEMRC_ASPECT_KNOWLEDGE:
        return "knowledge";
    case ROLEMRC_ASPECT_STYLE:
        return "style";
    case ROLEMRC_ASPECT_NESTED:
        return "nested";
    case ROLEMRC_ASPECT_MULTITURN:
        return "multiturn";
    case ROLEMRC_ASPECT_PRIORITY:
        return "priority";
    default:
        return "unknown";
    }
}

/* ------------------------------------------------------------------------------------------ */
/* loading */

/* The string value of key in obj, or NULL with err filled ("<where>: " prefixes the key
 * messages of question items). */
static const char *get_string_(const json_t *obj, const char *key, const char *path, int line,
                               const char *where, char *err) {
    const json_t *v = json_object_get(obj, key);
    if (!v) {
        hw_errf(err, HW_EFORMAT, "%s:%d: error: %smissing key '%s'", path, line, where, key);
        return NULL;
    }
    if (!json_is_string(v)) {
        hw_errf(err, HW_EFORMAT, "%s:%d: error: %skey '%s' must be a string, got %s", path, line,
                where, key, json_kind(v));
        return NULL;
    }
    return json_string_value(v);
}

/* Validates one decoded line and fills *e. Returns 0 or HW_EFORMAT. */
static int parse_example_(const json_t *root, const char *path, int line, struct rolemrc_example *e,
                          char *err) {
    if (!json_is_object(root))
        return hw_errf(err, HW_EFORMAT, "%s:%d: error: expected a JSON object, got %s", path, line,
                       json_kind(root));
    const json_t *q = json_object_get(root, "question");
    if (!q)
        return hw_errf(err, HW_EFORMAT, "%s:%d: error: missing key 'question'", path, line);
    if (!json_is_array(q) || json_array_size(q) == 0)
        return hw_errf(err, HW_EFORMAT,
                       "%s:%d: error: key 'question' must be a non-empty array, "
                       "got %s",
                       path, line, json_is_array(q) ? "an empty array" : json_kind(q));
    size_t nq = json_array_size(q), bytes = 0;
    if (nq > 100000)
        return hw_errf(err, HW_EFORMAT, "%s:%d: error: 'question' has %zu messages", path, line,
                       nq);
    for (size_t i = 0; i < nq; i++) {
        const json_t *m = json_array_get(q, i);
        char where[48];
        snprintf(where, sizeof(where), "question[%zu]: ", i);
        if (!json_is_object(m))
            return hw_errf(err, HW_EFORMAT, "%s:%d: error: question[%zu] must be an object, got %s",
                           path, line, i, json_kind(m));
        const char *role = get_string_(m, "role", path, line, where, err);
        if (!role)
            return HW_EFORMAT;
        const char *content = get_string_(m, "content", path, line, where, err);
        if (!content)
            return HW_EFORMAT;
        if (!chat_role_name(role))
            return hw_errf(err, HW_EFORMAT,
                           "%s:%d: error: question[%zu]: unknown role '%.40s' (expected System, "
                           "User or Assistant)",
                           path, line, i, role);
        bytes += strlen(content) + 1;
    }
    const char *ref = get_string_(root, "reference", path, line, "", err);
    if (!ref)
        return HW_EFORMAT;
    const char *task = get_string_(root, "task", path, line, "", err);
    if (!task)
        return HW_EFORMAT;

    /* msgs and their contents in one allocation: free(e->msgs) releases both. */
    char *block = HW_MALLOC(nq * sizeof(struct chat_msg) + bytes);
    struct chat_msg *msgs = (struct chat_msg *)(void *)block;
    char *text = block + nq * sizeof(struct chat_msg);
    for (size_t i = 0; i < nq; i++) {
        const json_t *m = json_array_get(q, i);
        const char *content = json_string_value(json_object_get(m, "content"));
        size_t len = strlen(content) + 1;
        memcpy(text, content, len);
        msgs[i].role = chat_role_name(json_string_value(json_object_get(m, "role")));
        msgs[i].content = text;
        text += len;
    }
    e->msgs = msgs;
    e->n_msgs = (int)nq;
    e->reference = HW_STRDUP(ref);
    e->task = HW_STRDUP(task);
    e->line = line;
    e->aspects = rolemrc_task_aspects(task, &e->knowledge_within);
    return 0;
}

static int blank_(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return 0;
    return 1;
}

int rolemrc_load(struct rolemrc *r, const char *path, char *err) {
    memset(r, 0, sizeof(*r));
    size_t len;
    char *data = fs_read_all(path, &len, err);
    if (!data)
        return HW_EIO;
    int rc = 0, cap = 0, line = 0;
    const char *p = data, *end = data + len;
    if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0)
        p += 3;
    while (p < end) {
        line++;
        if (hw_interrupted()) {
            rc = hw_errf(err, HW_ESTOP, "%s:%d: stopped by a signal while reading", path, line);
            goto out;
        }
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        size_t n = (size_t)(eol - p);
        if (n > 0 && p[n - 1] == '\r')
            n--;
        if (!blank_(p, n)) {
            json_error_t jerr;
            json_t *root = json_loadb(p, n, JSON_REJECT_DUPLICATES, &jerr);
            if (!root) {
                rc = hw_errf(err, HW_EFORMAT, "%s:%d:%d: error: invalid JSON: %s", path, line,
                             jerr.column > 0 ? jerr.column : 1, jerr.text);
                goto out;
            }
            if (r->n == cap) {
                cap = cap ? 2 * cap : 256;
                r->ex = HW_REALLOC(r->ex, (size_t)cap * sizeof(*r->ex));
            }
            struct rolemrc_example e = {0};
            rc = parse_example_(root, path, line, &e, err);
            json_decref(root);
            if (rc)
                goto out;
            r->ex[r->n++] = e;
        }
        p = nl ? nl + 1 : end;
    }
    if (r->n == 0) /* nothing to score: every metric would be null */
        rc = hw_errf(err, HW_EFORMAT,
                     "%s: error: no examples (the file is empty or blank); expected one RoleMRC "
                     "JSON object per line",
                     path);
out:
    free(data);
    if (rc)
        rolemrc_free(r);
    return rc;
}

void rolemrc_free(struct rolemrc *r) {
    for (int i = 0; i < r->n; i++) {
        free(r->ex[i].msgs);
        free(r->ex[i].reference);
        free(r->ex[i].task);
    }
    free(r->ex);
    memset(r, 0, sizeof(*r));
}
