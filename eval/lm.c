/* eval/lm.c -- log-likelihoods and generation over a model (see lm.h). */
#include "lm.h"

#include "../core/check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* log softmax of logits[v] at index t, and whether t is the argmax (lowest index on ties) */
static double logprob(const float *logits, int V, int32_t t, int *is_max) {
    float mx = logits[0];
    int arg = 0;
    for (int v = 1; v < V; v++)
        if (logits[v] > mx) {
            mx = logits[v];
            arg = v;
        }
    double s = 0.0;
    for (int v = 0; v < V; v++)
        s += exp((double)logits[v] - mx);
    *is_max = arg == t;
    return (double)logits[t] - mx - log(s);
}

struct pair {
    int32_t *ids; /* context + continuation tokens, left-truncated to max_T + 1 */
    int n, n_cont;
    int truncated; /* tokens of the context were cut */
};

/* Python's str.isspace for one byte: what context.rstrip() removes (ASCII; a context ending in
 * a multi-byte space such as U+00A0 keeps it) */
static int py_space(unsigned char c) {
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

static int encode_pair(struct lm *lm, const struct lm_request *r, struct pair *p) {
    size_t cl = strlen(r->ctx);
    while (cl > 0 && py_space((unsigned char)r->ctx[cl - 1]))
        cl--;
    size_t tl = strlen(r->ctx + cl) + strlen(r->cont);
    char *whole = HW_MALLOC(cl + tl + 1);
    memcpy(whole, r->ctx, cl);
    strcpy(whole + cl, r->ctx + cl);
    strcat(whole, r->cont);
    int32_t *ctx_ids = NULL, *all = NULL;
    int64_t nc = bpe_encode(lm->tok, r->ctx, cl, 1, &ctx_ids);
    int64_t na = bpe_encode(lm->tok, whole, cl + tl, 1, &all);
    free(whole);
    free(ctx_ids);
    if (nc < 0 || na < 0 || na <= nc) {
        free(all);
        return -1;
    }
    if (nc == 0) { /* an empty context: the continuation follows <|endoftext|>, as in lm-eval */
        if (lm->eot < 0) {
            free(all);
            return -1;
        }
        all = HW_REALLOC(all, sizeof(int32_t) * (size_t)(na + 1));
        memmove(all + 1, all, sizeof(int32_t) * (size_t)na);
        all[0] = lm->eot;
        na++;
        nc = 1;
    }
    int64_t keep = na > lm->max_T + 1 ? lm->max_T + 1 : na;
    p->ids = HW_MALLOC(sizeof(int32_t) * (size_t)keep);
    memcpy(p->ids, all + (na - keep), sizeof(int32_t) * (size_t)keep);
    p->n = (int)keep;
    p->truncated = keep < na;
    p->n_cont = (int)(na - nc) < (int)keep - 1 ? (int)(na - nc) : (int)keep - 1;
    free(all);
    return 0;
}

int lm_loglikelihood(struct lm *lm, struct lm_request *req, int n, char *err) {
    const int V = lm->m->c.V;
    struct pair *pairs = HW_CALLOC((size_t)(n ? n : 1), sizeof(*pairs));
    int rc = 0;
    for (int i = 0; i < n && !rc; i++)
        if (encode_pair(lm, &req[i], &pairs[i]))
            rc = hw_errf(err, HW_EFORMAT,
                         "request %d: the continuation '%.40s' encodes to no "
                         "tokens",
                         i, req[i].cont);
    /* one request per forward pass at its own length: OpenBLAS's result for a row depends on
     * how many rows are multiplied together, so padding requests into a batch would make a
     * score depend on its batch neighbours */
    for (int i = 0; i < n && !rc; i++) {
        const struct pair *p = &pairs[i];
        struct lm_request *r = &req[i];
        const int T = p->n - 1;
        if (lm_stop_requested(lm)) {
            rc = hw_errf(err, HW_ESTOP, "stopped before request %d of %d", i, n);
            break;
        }
        gpt_forward(lm->m, p->ids, NULL, 1, T, 0.0f, 0);
        const float *logits = gpt_logits(lm->m);
        r->ll = 0.0;
        r->greedy = 1;
        r->n_tokens = p->n_cont;
        r->truncated = p->truncated;
        for (int j = p->n - p->n_cont; j < p->n; j++) {
            int is_max;
            r->ll += logprob(logits + (size_t)(j - 1) * V, V, p->ids[j], &is_max);
            r->greedy &= is_max;
        }
    }
    for (int i = 0; i < n; i++)
        free(pairs[i].ids);
    free(pairs);
    return rc;
}

int lm_windows_loglik(struct lm *lm, const int32_t *tokens, int64_t n, const int64_t *start,
                      int n_win, double *ll, int64_t *cnt, char *err) {
    const int V = lm->m->c.V, T = lm->max_T;
    for (int w = 0; w < n_win; w++) { /* one window per forward pass (see lm_loglikelihood) */
        if (lm_stop_requested(lm))
            return hw_errf(err, HW_ESTOP, "stopped before window %d of %d", w, n_win);
        const int64_t s = start[w], len = n - 1 - s < T ? n - 1 - s : T;
        double acc = 0.0;
        if (len > 0) {
            gpt_forward(lm->m, tokens + s, NULL, 1, (int)len, 0.0f, 0);
            const float *logits = gpt_logits(lm->m);
            for (int t = 0; t < len; t++) {
                int is_max;
                acc += logprob(logits + (size_t)t * V, V, tokens[s + t + 1], &is_max);
            }
        }
        ll[w] = acc;
        cnt[w] = len > 0 ? len : 0;
    }
    return 0;
}

int lm_rolling(struct lm *lm, const char *text, double *ll, int64_t *n, char *err) {
    const int V = lm->m->c.V, L = lm->max_T;
    int32_t *tok = NULL;
    int64_t nt = bpe_encode(lm->tok, text, strlen(text), 1, &tok);
    *ll = 0.0;
    *n = nt > 0 ? nt : 0;
    if (nt > 0 && lm->eot < 0) {
        free(tok);
        return hw_errf(err, HW_EFORMAT, "rolling log-likelihood needs an end-of-text token");
    }
    /* the stream S = [eot] + tokens: window w predicts S[p+1 .. e] (p tokens predicted before
     * it, e = min(p + L, nt)) from the L tokens S[e - L .. e - 1] (or all from 0 when e <= L) */
    int32_t *s = HW_MALLOC(sizeof(int32_t) * (size_t)(nt + 1));
    s[0] = lm->eot;
    if (nt > 0)
        memcpy(s + 1, tok, sizeof(int32_t) * (size_t)nt);
    free(tok);
    int rc = 0;
    for (int64_t p = 0; p < nt && !rc; p = p + L < nt ? p + L : nt) {
        if (lm_stop_requested(lm)) {
            rc = hw_errf(err, HW_ESTOP, "stopped in a rolling log-likelihood");
            break;
        }
        const int64_t e = p + L < nt ? p + L : nt, in0 = e - L > 0 ? e - L : 0;
        const int T = (int)(e - in0); /* inputs S[in0 .. e-1] predict S[in0+1 .. e] */
        gpt_forward(lm->m, s + in0, NULL, 1, T, 0.0f, 0);
        const float *logits = gpt_logits(lm->m);
        for (int64_t j = p + 1; j <= e; j++) {
            int is_max;
            *ll += logprob(logits + (size_t)(j - 1 - in0) * V, V, s[j], &is_max);
        }
    }
    free(s);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* generation */

static int32_t argmax(const float *x, int V) {
    int32_t a = 0;
    for (int v = 1; v < V; v++)
        if (x[v] > x[a])
            a = v;
    return a;
}

/* Length of the text before the first stop string in it, or -1 if none occurs. */
static long stop_at(const char *text, const struct cfg_list *stop) {
    long best = -1;
    for (int i = 0; stop && i < stop->n; i++) {
        if (!stop->item[i][0])
            continue;
        const char *p = strstr(text, stop->item[i]);
        if (p && (best < 0 || p - text < best))
            best = p - text;
    }
    return best;
}

/* Decode generated ids; returns 1 when a stop string was found (text cut before it). */
static int gen_text(struct lm *lm, const int32_t *ids, int n, const struct cfg_list *stop,
                    char **out) {
    char *t = NULL;
    int64_t len = bpe_decode(lm->tok, ids, n, &t);
    if (len < 0) {
        free(t);
        t = HW_STRDUP("");
    }
    long cut = stop_at(t, stop);
    if (cut >= 0)
        t[cut] = 0;
    free(*out);
    *out = t;
    return cut >= 0;
}

struct slot {
    int req;         /* request index or -1 */
    int32_t *prompt; /* prompt ids */
    int n_prompt, fed;
    int32_t *gen;
    int n_gen;
};

int lm_generate(struct lm *lm, const char *const *prompts, int n, int max_new,
                const struct cfg_list *stop, char **outs, char *err) {
    const int V = lm->m->c.V, B = lm->batch;
    struct gpt_kv kv;
    gpt_kv_init(&kv, lm->m, B, lm->max_T);
    struct slot *s = HW_CALLOC((size_t)B, sizeof(*s));
    int32_t *tok = HW_CALLOC((size_t)B, sizeof(int32_t));
    int *active = HW_CALLOC((size_t)B, sizeof(int));
    int next = 0, done = 0, rc = 0;
    for (int b = 0; b < B; b++)
        s[b].req = -1;
    for (int i = 0; i < n; i++)
        outs[i] = NULL;
    while (done < n && !rc) {
        /* refill free slots */
        for (int b = 0; b < B; b++) {
            if (s[b].req >= 0 || next >= n)
                continue;
            free(s[b].prompt);
            free(s[b].gen);
            memset(&s[b], 0, sizeof(s[b]));
            s[b].req = next;
            int64_t np = bpe_encode(lm->tok, prompts[next], strlen(prompts[next]), 1, &s[b].prompt);
            if (np < 1) {
                rc = hw_errf(err, HW_EFORMAT, "prompt %d encodes to no tokens", next);
                break;
            }
            /* keep room for the new tokens: cut the prompt from the left */
            int room = lm->max_T - max_new;
            if (room < 1)
                room = 1;
            if (np > room) {
                lm->n_truncated++;
                memmove(s[b].prompt, s[b].prompt + (np - room), sizeof(int32_t) * (size_t)room);
                np = room;
            }
            s[b].n_prompt = (int)np;
            s[b].gen = HW_MALLOC(sizeof(int32_t) * (size_t)(max_new + 1));
            gpt_kv_reset(&kv, b);
            next++;
        }
        if (rc)
            break;
        if (lm_stop_requested(lm)) {
            rc = hw_errf(err, HW_ESTOP, "stopped after %d of %d generations", done, n);
            break;
        }
        for (int b = 0; b < B; b++) {
            active[b] = s[b].req >= 0;
            if (active[b])
                tok[b] =
                    s[b].fed < s[b].n_prompt ? s[b].prompt[s[b].fed] : s[b].gen[s[b].n_gen - 1];
        }
        const float *logits = gpt_decode_batch(lm->m, &kv, tok, active);
        for (int b = 0; b < B; b++) {
            if (!active[b])
                continue;
            if (s[b].fed < s[b].n_prompt)
                s[b].fed++;
            if (s[b].fed < s[b].n_prompt)
                continue; /* still reading the prompt */
            int32_t t = argmax(logits + (size_t)b * V, V);
            int finished = t == lm->eot || t >= bpe_vocab_size(lm->tok);
            if (!finished)
                s[b].gen[s[b].n_gen++] = t;
            finished |= gen_text(lm, s[b].gen, s[b].n_gen, stop, &outs[s[b].req]);
            finished |= s[b].n_gen >= max_new || kv.n[b] >= lm->max_T;
            if (finished) {
                s[b].req = -1;
                done++;
            }
        }
    }
    for (int b = 0; b < B; b++) {
        free(s[b].prompt);
        free(s[b].gen);
    }
    for (int i = 0; rc && i < n; i++) {
        free(outs[i]);
        outs[i] = NULL;
    }
    free(s);
    free(tok);
    free(active);
    gpt_kv_free(&kv);
    return rc;
}

int lm_generate_nocache(struct lm *lm, const char *prompt, int max_new, const struct cfg_list *stop,
                        char **out, char *err) {
    const int V = lm->m->c.V;
    int32_t *ids = NULL;
    int64_t np = bpe_encode(lm->tok, prompt, strlen(prompt), 1, &ids);
    if (np < 1) {
        free(ids);
        return hw_errf(err, HW_EFORMAT, "the prompt encodes to no tokens");
    }
    int room = lm->max_T - max_new > 0 ? lm->max_T - max_new : 1;
    if (np > room) {
        memmove(ids, ids + (np - room), sizeof(int32_t) * (size_t)room);
        np = room;
    }
    ids = HW_REALLOC(ids, sizeof(int32_t) * (size_t)(np + max_new + 1));
    int n = (int)np, n_gen = 0;
    *out = NULL;
    for (;;) {
        gpt_forward(lm->m, ids, NULL, 1, n, 0.0f, 0);
        int32_t t = argmax(gpt_logits(lm->m) + (size_t)(n - 1) * V, V);
        int finished = t == lm->eot || t >= bpe_vocab_size(lm->tok);
        if (!finished) {
            ids[n++] = t;
            n_gen++;
        }
        finished |= gen_text(lm, ids + np, n_gen, stop, out);
        if (finished || n_gen >= max_new || n >= lm->max_T)
            break;
    }
    free(ids);
    return 0;
}
