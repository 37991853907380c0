/* eval/task_multifc.c -- `multifc`: claim verification scored lm-eval style. Every label of the
 * claim's domain (labels are per website, from the claimID prefix) is a continuation
 * " <label>" of the prompt "Claim: <claim>\nVerdict:", optionally after eval.multifc_shots
 * solved examples of the same domain; the prediction is the label with the highest
 * log-likelihood (and, for the _norm metrics, per character, as lm-eval's acc_norm).
 * With one labelled split (the staged dev file), the seeded stratified split every MultiFC
 * method uses (seed MULTIFC_SPLIT_SEED) gives the test part (eval.multifc_test_frac) and the
 * pool of shots; the majority label of each domain in that
 * pool is the baseline reported beside. Metrics are sklearn's micro and macro F1 over the label
 * strings of the test part, overall and per domain. */
#include "../core/check.h"
#include "../core/rng.h"
#include "../datasets/multifc.h"
#include "../eval/metrics.h"
#include "sha256.h"
#include "tasks.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* global id of every distinct label string */
static int label_ids(const struct multifc *m, int *gid, char ***names) {
    int cap = 256, n = 0;
    char **nm = HW_MALLOC(sizeof(char *) * (size_t)cap);
    for (int i = 0; i < m->n; i++) {
        int k = 0;
        while (k < n && strcmp(nm[k], m->ex[i].label))
            k++;
        if (k == n) {
            if (n == cap)
                nm = HW_REALLOC(nm, sizeof(char *) * (size_t)(cap *= 2));
            nm[n++] = m->ex[i].label;
        }
        gid[i] = k;
    }
    *names = nm;
    return n;
}

struct f1_ctx {
    const int *gold, *pred;
    int n_classes;
    int macro;
};

static double f1_stat(const int *idx, int n, void *vc) {
    const struct f1_ctx *f = vc;
    int *g = HW_MALLOC(sizeof(int) * (size_t)n), *p = HW_MALLOC(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) {
        g[i] = f->gold[idx[i]];
        p[i] = f->pred[idx[i]];
    }
    struct metrics_f1 r;
    metrics_f1(g, p, n, f->n_classes, &r);
    free(g);
    free(p);
    return f->macro ? r.macro : r.micro;
}

void multifc_put_f1(json_t *metrics, const char *prefix, const int *gold, const int *pred, int n,
                    int n_classes, int iters, uint64_t seed) {
    struct metrics_f1 r;
    metrics_f1(gold, pred, n, n_classes, &r);
    char key[64];
    struct f1_ctx fc = {gold, pred, n_classes, 0};
    snprintf(key, sizeof(key), "%sf1_micro", prefix);
    eval_put(metrics, key, r.micro, metrics_bootstrap_stderr(f1_stat, &fc, n, iters, seed));
    fc.macro = 1;
    snprintf(key, sizeof(key), "%sf1_macro", prefix);
    eval_put(metrics, key, r.macro, metrics_bootstrap_stderr(f1_stat, &fc, n, iters, seed + 1));
}

json_t *multifc_domain_scores(const int *gold, const int *pred, const int *base, int n,
                              int n_classes, int iters, uint64_t seed) {
    struct metrics_f1 a, b;
    metrics_f1(gold, pred, n, n_classes, &a);
    metrics_f1(gold, base, n, n_classes, &b);
    struct f1_ctx fc = {gold, pred, n_classes, 0};
    const double se_mi = metrics_bootstrap_stderr(f1_stat, &fc, n, iters, seed);
    fc.macro = 1;
    const double se_ma = metrics_bootstrap_stderr(f1_stat, &fc, n, iters, seed + 1);
    json_t *o =
        json_pack("{s:i,s:f,s:o,s:f,s:o,s:f,s:f}", "n", n, "f1_micro", a.micro, "f1_micro_stderr",
                  isfinite(se_mi) ? json_real(se_mi) : json_null(), "f1_macro", a.macro,
                  "f1_macro_stderr", isfinite(se_ma) ? json_real(se_ma) : json_null(),
                  "majority_f1_micro", b.micro, "majority_f1_macro", b.macro);
    HW_ASSERT(o != NULL);
    return o;
}

void multifc_info_split(json_t *info, const struct multifc *m, const int *test, int n_test,
                        double test_frac) {
    struct sha256 h;
    char hex[65];
    sha256_init(&h);
    for (int t = 0; t < n_test; t++) {
        sha256_update(&h, m->ex[test[t]].claim_id, strlen(m->ex[test[t]].claim_id));
        sha256_update(&h, "\n", 1);
    }
    sha256_final_hex(&h, hex);
    json_t *rows[3] = {json_array(), json_array(), json_array()};
    for (int i = 0; i < m->n_rejected; i++)
        json_array_append_new(rows[0], eval_text(m->rejected[i]));
    for (int i = 0; i < m->n_repaired; i++)
        json_array_append_new(rows[1], eval_text(m->repaired[i]));
    for (int i = 0; i < m->n_unknown; i++)
        json_array_append_new(rows[2], eval_text(m->unknown[i]));
    json_object_set_new(info, "rejected_rows", rows[0]);
    json_object_set_new(info, "repaired_rows", rows[1]);
    json_object_set_new(info, "unknown_labels", rows[2]);
    json_object_set_new(info, "split",
                        json_pack("{s:f,s:I,s:i,s:s}", "test_frac", test_frac, "seed",
                                  (json_int_t)MULTIFC_SPLIT_SEED, "test", n_test,
                                  "test_claims_sha256", hex));
}

static char *prompt_for(const struct multifc *m, const int *pool, int n_pool, int shots,
                        uint64_t key, int i) {
    size_t cap = 256 + strlen(m->ex[i].claim), len = 0;
    char *p = HW_MALLOC(cap);
    p[0] = 0;
    for (int s = 0; s < shots && n_pool > 0; s++) {
        const struct multifc_example *x =
            &m->ex[pool[(int)(rng_uniform(key, (uint64_t)s) * n_pool)]];
        size_t need = strlen(x->claim) + strlen(x->label) + 32;
        if (len + need >= cap)
            p = HW_REALLOC(p, cap = 2 * (len + need));
        len += (size_t)sprintf(p + len, "Claim: %s\nVerdict: %s\n\n", x->claim, x->label);
    }
    size_t need = strlen(m->ex[i].claim) + 32;
    if (len + need >= cap)
        p = HW_REALLOC(p, cap = len + need);
    sprintf(p + len, "Claim: %s\nVerdict:", m->ex[i].claim);
    return p;
}

int task_multifc(struct eval_ctx *ctx, json_t *metrics, json_t *info, char *err) {
    const struct cfg_eval *e = &ctx->c->eval;
    if (!e->multifc_data[0])
        return hw_errf(err, HW_ECONFIG,
                       "multifc: eval.multifc_data is not set (the staged CSV "
                       "or an official TSV)");
    struct multifc m;
    int rc = multifc_load(&m, e->multifc_data, err);
    if (rc) /* a stop request during the load may have come to this rank only */
        return eval_agree(ctx, rc, "multifc", err);
    multifc_log_notes(&m, e->multifc_data);
    if (!m.labelled) {
        multifc_free(&m);
        return hw_errf(err, HW_EFORMAT,
                       "%s: the file has no label column (the 12-column test "
                       "layout); scoring needs labels",
                       e->multifc_data);
    }
    int *split = HW_MALLOC(sizeof(int) * (size_t)m.n), *gid = HW_MALLOC(sizeof(int) * (size_t)m.n);
    /* the one split of every MultiFC method (the test part does not depend on frac_val) */
    multifc_split(&m, 0.0, e->multifc_test_frac, MULTIFC_SPLIT_SEED, split);
    char **names;
    const int n_classes = label_ids(&m, gid, &names);
    int *test = HW_MALLOC(sizeof(int) * (size_t)m.n), n_test = 0;
    for (int i = 0; i < m.n; i++)
        if (split[i] == 2)
            test[n_test++] = i;
    if (e->limit && n_test > e->limit)
        n_test = e->limit;
    if (n_test == 0) {
        rc = hw_errf(err, HW_EFORMAT,
                     "%s: error: no claims to score: the test part of the split "
                     "(eval.multifc_test_frac %g of each (domain, label) group of %d usable "
                     "claims, groups of one claim kept out) is empty",
                     e->multifc_data, e->multifc_test_frac, m.n);
        free(split), free(gid), free(names), free(test);
        multifc_free(&m);
        return rc;
    }
    /* pools of solved examples (train part) per domain, and their majority labels */
    int **pool = HW_CALLOC((size_t)m.n_dom, sizeof(int *)),
        *n_pool = HW_CALLOC((size_t)m.n_dom, sizeof(int));
    int *major = HW_MALLOC(sizeof(int) * (size_t)m.n_dom);
    for (int dI = 0; dI < m.n_dom; dI++) {
        pool[dI] = HW_MALLOC(sizeof(int) * (size_t)(m.n ? m.n : 1));
        int *cnt = HW_CALLOC((size_t)m.dom[dI].n_labels, sizeof(int));
        for (int i = 0; i < m.n; i++)
            if (split[i] != 2 && m.ex[i].domain == dI) {
                pool[dI][n_pool[dI]++] = i;
                cnt[m.ex[i].label_id]++;
            }
        int best = 0;
        for (int k = 1; k < m.dom[dI].n_labels; k++)
            if (cnt[k] > cnt[best])
                best = k;
        major[dI] = best;
        free(cnt);
    }
    /* requests for this rank's examples: one per label of the example's domain */
    int n_req = 0;
    for (int t = 0; t < n_test; t++)
        if (eval_mine(ctx, t))
            n_req += m.dom[m.ex[test[t]].domain].n_labels;
    struct lm_request *req = HW_CALLOC((size_t)(n_req ? n_req : 1), sizeof(*req));
    char **prompts = HW_CALLOC((size_t)(n_test ? n_test : 1), sizeof(char *));
    char **conts = HW_CALLOC((size_t)(n_req ? n_req : 1), sizeof(char *));
    for (int t = 0, k = 0; t < n_test; t++) {
        if (!eval_mine(ctx, t))
            continue;
        const int i = test[t], dI = m.ex[i].domain;
        prompts[t] = prompt_for(&m, pool[dI], n_pool[dI], e->multifc_shots,
                                rng_hash2((uint64_t)e->seed, (uint64_t)i), i);
        for (int l = 0; l < m.dom[dI].n_labels; l++, k++) {
            conts[k] = HW_MALLOC(strlen(m.dom[dI].labels[l]) + 2);
            sprintf(conts[k], " %s", m.dom[dI].labels[l]);
            req[k].ctx = prompts[t];
            req[k].cont = conts[k];
        }
    }
    rc = lm_loglikelihood(ctx->lm, req, n_req, err);
    rc = eval_agree(ctx, rc, "multifc", err);
    double *pv = HW_CALLOC((size_t)(2 * n_test + 1), sizeof(double)); /* [2n]: truncated */
    if (!rc) {
        for (int t = 0, k = 0; t < n_test; t++) {
            if (!eval_mine(ctx, t))
                continue;
            const int i = test[t], dI = m.ex[i].domain, nl = m.dom[dI].n_labels;
            int best = 0, best_n = 0;
            for (int l = 1; l < nl; l++) {
                if (req[k + l].ll > req[k + best].ll)
                    best = l;
                double a = req[k + l].ll / (double)strlen(m.dom[dI].labels[l]);
                double b = req[k + best_n].ll / (double)strlen(m.dom[dI].labels[best_n]);
                if (a > b)
                    best_n = l;
            }
            pv[2 * t] = best + 1; /* +1: 0 means "another rank's" before the sum */
            pv[2 * t + 1] = best_n + 1;
            int cut = 0;
            for (int l = 0; l < nl; l++)
                cut |= req[k + l].truncated;
            pv[2 * n_test] += cut;
            if (ctx->samples) {
                json_t *lls = json_object();
                for (int l = 0; l < nl; l++)
                    json_object_set_new(lls, m.dom[dI].labels[l], json_real(req[k + l].ll));
                eval_sample(ctx, t,
                            json_pack("{s:s,s:s,s:o,s:o,s:o,s:o,s:o,s:b,s:o}", "task", "multifc",
                                      "claim_id", m.ex[i].claim_id, "prompt", eval_text(prompts[t]),
                                      "gold", eval_text(m.ex[i].label), "pred",
                                      eval_text(m.dom[dI].labels[best]), "pred_norm",
                                      eval_text(m.dom[dI].labels[best_n]), "loglik", lls,
                                      "truncated", cut, "line", json_integer(m.ex[i].line)));
            }
            k += nl;
        }
        eval_sum(ctx, pv, 2 * n_test + 1);
    }
    if (!rc) {
        int *gold = HW_MALLOC(sizeof(int) * (size_t)(n_test + 1));
        int *pred = HW_MALLOC(sizeof(int) * (size_t)(n_test + 1));
        int *predn = HW_MALLOC(sizeof(int) * (size_t)(n_test + 1));
        int *base = HW_MALLOC(sizeof(int) * (size_t)(n_test + 1));
        for (int t = 0; t < n_test; t++) {
            const int i = test[t], dI = m.ex[i].domain;
            gold[t] = gid[i];
            /* a domain label's global id: find an example with that label string */
            const char *lp = m.dom[dI].labels[(int)pv[2 * t] - 1];
            const char *ln = m.dom[dI].labels[(int)pv[2 * t + 1] - 1];
            const char *lb = m.dom[dI].labels[major[dI]];
            pred[t] = predn[t] = base[t] = -1;
            for (int g = 0; g < n_classes; g++) {
                if (!strcmp(names[g], lp))
                    pred[t] = g;
                if (!strcmp(names[g], ln))
                    predn[t] = g;
                if (!strcmp(names[g], lb))
                    base[t] = g;
            }
        }
        const uint64_t seed = (uint64_t)e->seed;
        multifc_put_f1(metrics, "", gold, pred, n_test, n_classes, e->bootstrap_iters, seed);
        multifc_put_f1(metrics, "norm_", gold, predn, n_test, n_classes, e->bootstrap_iters,
                       seed + 2);
        multifc_put_f1(metrics, "majority_", gold, base, n_test, n_classes, e->bootstrap_iters,
                       seed + 4);
        /* per domain, over the domain's own labels */
        json_t *per = json_object();
        int *g2 = HW_MALLOC(sizeof(int) * (size_t)(n_test + 1)),
            *p2 = HW_MALLOC(sizeof(int) * (size_t)(n_test + 1)),
            *b2 = HW_MALLOC(sizeof(int) * (size_t)(n_test + 1));
        for (int dI = 0; dI < m.n_dom; dI++) {
            int k = 0;
            for (int t = 0; t < n_test; t++)
                if (m.ex[test[t]].domain == dI) {
                    g2[k] = m.ex[test[t]].label_id;
                    p2[k] = (int)pv[2 * t] - 1;
                    b2[k++] = major[dI];
                }
            if (!k)
                continue;
            json_t *o = multifc_domain_scores(g2, p2, b2, k, m.dom[dI].n_labels, e->bootstrap_iters,
                                              seed + 6 + 2 * (uint64_t)dI);
            json_object_set_new(o, "labels", json_integer(m.dom[dI].n_labels));
            json_object_set_new(per, m.dom[dI].name, o);
        }
        json_object_set_new(info, "per_domain", per);
        free(g2), free(p2), free(b2), free(gold), free(pred), free(predn), free(base);
    }
    if (!rc)
        rc = eval_info_file(info, "data", e->multifc_data, err);
    multifc_info_split(info, &m, test, n_test, e->multifc_test_frac);
    eval_info_template(info, "[shots x: \"Claim: {claim}\\nVerdict: {label}\\n\\n\"] "
                             "\"Claim: {claim}\\nVerdict:\" + \" {label}\" for each label of "
                             "the domain");
    json_object_set_new(info, "truncated_prompts", json_integer((json_int_t)pv[2 * n_test]));
    json_object_set_new(info, "examples_loaded", json_integer(m.n));
    json_object_set_new(info, "test_examples", json_integer(n_test));
    json_object_set_new(info, "labels", json_integer(n_classes));
    json_object_set_new(info, "domains", json_integer(m.n_dom));
    json_object_set_new(info, "shots", json_integer(e->multifc_shots));
    for (int dI = 0; dI < m.n_dom; dI++)
        free(pool[dI]);
    for (int k = 0; k < n_req; k++)
        free(conts[k]);
    for (int t = 0; t < n_test; t++)
        free(prompts[t]);
    free(pool), free(n_pool), free(major), free(req), free(prompts), free(conts), free(pv);
    free(split), free(gid), free(names), free(test);
    multifc_free(&m);
    return rc;
}
