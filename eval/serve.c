/* eval/serve.c -- the JSON-lines request server of `eval --serve` (see serve.h). */
#define _POSIX_C_SOURCE 200809L
#include "serve.h"

#include "../core/check.h"
#include "../core/interrupt.h"
#include "../datasets/bpe_impl.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* rank 0 reads a line and every rank gets it; NULL at end of input */
static char *next_line_(struct dist *d, FILE *in) {
    char *line = NULL;
    size_t cap = 0;
    int64_t len = -1;
    if (d->rank == 0) {
        ssize_t n = getline(&line, &cap, in);
        len = n < 0 ? -1 : (int64_t)n;
    }
    dist_bcast_bytes(d, &len, sizeof(len));
    if (len < 0) {
        free(line);
        return NULL;
    }
    if (d->rank != 0)
        line = HW_MALLOC((size_t)len + 1);
    dist_bcast_bytes(d, line, len);
    line[len] = 0;
    return line;
}

/* text as a JSON string: invalid UTF-8 (a generation cut inside a character) becomes U+FFFD,
 * as Python's decode(errors="replace") */
static json_t *text_json_(const char *s) {
    size_t n = strlen(s), fn = n;
    unsigned char *fixed = bpe_hf_fix_utf8((const unsigned char *)s, n, &fn);
    json_t *j = fixed ? json_stringn((const char *)fixed, fn) : json_stringn(s, n);
    free(fixed);
    return j ? j : json_string("");
}

static int mine_(const struct dist *d, size_t i) {
    return (int)(i % (size_t)d->world) == d->rank;
}

static json_t *loglikelihood_(struct dist *d, struct lm *lm, const json_t *reqs, char *err) {
    const size_t n = json_array_size(reqs);
    for (size_t i = 0; i < n; i++) {
        const json_t *r = json_array_get(reqs, i);
        if (!json_is_array(r) || json_array_size(r) != 2 || !json_is_string(json_array_get(r, 0)) ||
            !json_is_string(json_array_get(r, 1))) {
            hw_errf(err, HW_EFORMAT, "requests[%zu]: expected [context, continuation]", i);
            return NULL;
        }
    }
    double *v = HW_CALLOC(2 * n + 1, sizeof(double)); /* ll, greedy; last: first failure + 1 */
    for (size_t i = 0; i < n; i++) {
        if (!mine_(d, i))
            continue;
        const json_t *r = json_array_get(reqs, i);
        struct lm_request q = {.ctx = json_string_value(json_array_get(r, 0)),
                               .cont = json_string_value(json_array_get(r, 1))};
        char e2[HW_ERR_LEN];
        if (lm_loglikelihood(lm, &q, 1, e2)) {
            if (v[2 * n] == 0)
                v[2 * n] = (double)(i + 1);
            continue;
        }
        v[2 * i] = q.ll;
        v[2 * i + 1] = q.greedy;
    }
    dist_allreduce_group_doubles(d, DIST_WORLD, v, (int)(2 * n + 1));
    json_t *out = NULL;
    if (v[2 * n] != 0) {
        hw_errf(err, HW_EFORMAT, "requests[%.0f]: the continuation encodes to no tokens",
                v[2 * n] - 1);
    } else {
        out = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(out, json_pack("[f, b]", v[2 * i], v[2 * i + 1] != 0));
    }
    free(v);
    return out;
}

static json_t *rolling_(struct dist *d, struct lm *lm, const json_t *reqs, char *err) {
    const size_t n = json_array_size(reqs);
    for (size_t i = 0; i < n; i++)
        if (!json_is_string(json_array_get(reqs, i))) {
            hw_errf(err, HW_EFORMAT, "requests[%zu]: expected a string", i);
            return NULL;
        }
    double *v = HW_CALLOC(n + 1, sizeof(double));
    for (size_t i = 0; i < n; i++) {
        int64_t cnt;
        char e2[HW_ERR_LEN];
        if (mine_(d, i) &&
            lm_rolling(lm, json_string_value(json_array_get(reqs, i)), &v[i], &cnt, e2) &&
            v[n] == 0)
            v[n] = (double)(i + 1);
    }
    dist_allreduce_group_doubles(d, DIST_WORLD, v, (int)(n + 1));
    json_t *out = NULL;
    if (v[n] != 0) {
        hw_errf(err, HW_EFORMAT, "requests[%.0f]: cannot be scored (no end-of-text token)",
                v[n] - 1);
    } else {
        out = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(out, json_real(v[i]));
    }
    free(v);
    return out;
}

/* a generate_until request's arguments: its stop strings and token budget */
static int gen_args_(const json_t *r, size_t i, struct cfg_list *stop, int *max_new, char *err) {
    const json_t *kw = json_array_get(r, 1), *until = json_object_get(kw, "until"),
                 *mg = json_object_get(kw, "max_gen_toks"), *ds = json_object_get(kw, "do_sample");
    if (!json_is_array(r) || json_array_size(r) != 2 || !json_is_string(json_array_get(r, 0)) ||
        !json_is_object(kw))
        return hw_errf(err, HW_EFORMAT, "requests[%zu]: expected [context, {until, ...}]", i);
    if (json_is_true(ds))
        return hw_errf(err, HW_EFORMAT, "requests[%zu]: do_sample: only greedy decoding", i);
    memset(stop, 0, sizeof(*stop));
    if (json_is_string(until)) {
        snprintf(stop->item[0], CFG_PATH_MAX, "%s", json_string_value(until));
        stop->n = 1;
    }
    for (size_t k = 0; json_is_array(until) && k < json_array_size(until); k++) {
        const json_t *u = json_array_get(until, k);
        if (!json_is_string(u) || stop->n == CFG_LIST_MAX || json_string_length(u) >= CFG_PATH_MAX)
            return hw_errf(err, HW_EFORMAT,
                           "requests[%zu]: until: at most %d strings of under %d bytes", i,
                           CFG_LIST_MAX, CFG_PATH_MAX);
        snprintf(stop->item[stop->n++], CFG_PATH_MAX, "%s", json_string_value(u));
    }
    *max_new = json_is_integer(mg) ? (int)json_integer_value(mg) : 256;
    if (*max_new < 1 || *max_new > 1 << 20)
        return hw_errf(err, HW_EFORMAT, "requests[%zu]: max_gen_toks: expected 1..%d", i, 1 << 20);
    return 0;
}

static json_t *generate_(struct dist *d, struct lm *lm, const json_t *reqs, char *err) {
    const size_t n = json_array_size(reqs);
    struct cfg_list *stop = HW_MALLOC(sizeof(*stop));
    int max_new = 0, rc = 0;
    for (size_t i = 0; i < n && !rc; i++)
        rc = gen_args_(json_array_get(reqs, i), i, stop, &max_new, err);
    char **outs = HW_CALLOC(n + 1, sizeof(char *));
    const char **prompts = HW_CALLOC(n + 1, sizeof(char *));
    size_t *idx = HW_CALLOC(n + 1, sizeof(size_t));
    char *done = HW_CALLOC(n + 1, 1);
    /* this rank's requests, in groups with equal arguments, each group decoded together */
    for (size_t i = 0; i < n && !rc; i++) {
        if (!mine_(d, i) || done[i])
            continue;
        const json_t *kw = json_array_get(json_array_get(reqs, i), 1);
        gen_args_(json_array_get(reqs, i), i, stop, &max_new, err);
        int g = 0;
        for (size_t j = i; j < n; j++)
            if (mine_(d, j) && !done[j] &&
                json_equal(kw, json_array_get(json_array_get(reqs, j), 1))) {
                idx[g] = j;
                prompts[g++] = json_string_value(json_array_get(json_array_get(reqs, j), 0));
                done[j] = 1;
            }
        char **got = HW_CALLOC((size_t)g, sizeof(char *));
        rc = lm_generate(lm, prompts, g, max_new, stop, got, err);
        for (int k = 0; k < g; k++)
            outs[idx[k]] = got[k];
        free(got);
    }
    rc = dist_allreduce_max_int(d, rc ? 1 : 0) ? (rc ? rc : HW_EFORMAT) : 0;
    json_t *out = NULL;
    if (!rc) {
        dist_gather_strings(d, outs, (int)n);
        out = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(out, text_json_(outs[i] ? outs[i] : ""));
    } else if (!err[0]) {
        hw_errf(err, HW_EFORMAT, "generation failed on another rank");
    }
    for (size_t i = 0; i < n; i++)
        free(outs[i]);
    free(outs);
    free(prompts);
    free(idx);
    free(done);
    free(stop);
    return out;
}

/* one request line -> its answer (every rank computes; rank 0's is written) */
static json_t *answer_(struct dist *d, struct lm *lm, const char *ckpt, long long step,
                       const char *line) {
    char err[HW_ERR_LEN] = "";
    json_error_t je;
    json_t *req = json_loads(line, 0, &je), *ans = json_object(), *res = NULL;
    const json_t *id = json_object_get(req, "id");
    json_object_set(ans, "id", id ? (json_t *)id : json_null());
    const char *type = json_string_value(json_object_get(req, "type"));
    const json_t *reqs = json_object_get(req, "requests");
    if (!req)
        hw_errf(err, HW_EFORMAT, "column %d: %s", je.column, je.text);
    else if (type && !strcmp(type, "info")) {
        json_object_set_new(ans, "max_length", json_integer(lm->max_T));
        json_object_set_new(ans, "vocab", json_integer(lm->m->c.V));
        json_object_set_new(ans, "eot", json_integer(lm->eot));
        json_object_set_new(ans, "checkpoint", json_string(ckpt));
        json_object_set_new(ans, "step", json_integer(step));
    } else if (!type || !json_is_array(reqs))
        hw_errf(err, HW_EFORMAT, "expected {\"type\": ..., \"requests\": [...]}");
    else if (!strcmp(type, "loglikelihood"))
        res = loglikelihood_(d, lm, reqs, err);
    else if (!strcmp(type, "loglikelihood_rolling"))
        res = rolling_(d, lm, reqs, err);
    else if (!strcmp(type, "generate_until"))
        res = generate_(d, lm, reqs, err);
    else
        hw_errf(err, HW_EFORMAT,
                "type '%s': expected info, loglikelihood, "
                "loglikelihood_rolling or generate_until",
                type);
    if (res)
        json_object_set_new(ans, "results", res);
    else if (err[0])
        json_object_set_new(ans, "error", json_string(err));
    json_decref(req);
    return ans;
}

int serve_run(struct dist *d, struct lm *lm, const char *ckpt, long long step, FILE *in,
              FILE *out) {
    char *line;
    long n = 0;
    while ((line = next_line_(d, in))) {
        if (strspn(line, " \t\r\n") != strlen(line)) {
            json_t *ans = answer_(d, lm, ckpt, step, line);
            if (d->rank == 0) {
                char *s = json_dumps(ans, JSON_COMPACT);
                fprintf(out, "%s\n", s);
                fflush(out);
                free(s);
            }
            json_decref(ans);
            n++;
        }
        free(line);
        if (hw_interrupted())
            return HW_ESTOP;
    }
    return 0;
}
