/* eval/task_multifc_classify.c -- `multifc_classify`: MultiFC with the classifier head a
 * checkpoint was fine-tuned with (train.task: classify). The checkpoint's own config gives the
 * file and split fractions, and the split seed is MULTIFC_SPLIT_SEED, so the held-out test part
 * is exactly the one the classifier never saw and the one the log-likelihood method (`multifc`)
 * scores (eval.multifc_test_frac must equal the checkpoint's data.test_frac; eval.multifc_data,
 * when set, replaces the file and must give the same label set). Reported as the
 * log-likelihood method: micro/macro F1 over the label strings, the majority baseline of each
 * domain's train part beside, and per-domain scores with standard errors. */
#include "../core/check.h"
#include "../datasets/multifc_cls.h"
#include "../eval/metrics.h"
#include "tasks.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int task_multifc_classify(struct eval_ctx *ctx, json_t *metrics, json_t *info, char *err) {
    const struct cfg_eval *e = &ctx->c->eval;
    const struct hw_config *mc = ctx->mc;
    struct gpt *m = ctx->lm->m;
    if (m->c.n_cls <= 0)
        return hw_errf(err, HW_EMISMATCH,
                       "multifc_classify: the checkpoint has no classifier "
                       "head (train it with train.task: classify)");
    if (fabs(e->multifc_test_frac - mc->data.test_frac) > 1e-12)
        return hw_errf(err, HW_ECONFIG,
                       "multifc_classify: the checkpoint's classifier held out data.test_frac "
                       "%g, but eval.multifc_test_frac is %g: every MultiFC method scores one "
                       "split; set eval.multifc_test_frac=%g",
                       mc->data.test_frac, e->multifc_test_frac, mc->data.test_frac);
    const char *path = e->multifc_data[0] ? e->multifc_data : mc->data.multifc;
    struct multifc_cls cd;
    int rc = multifc_cls_load(&cd, path, mc->data.val_frac, mc->data.test_frac, MULTIFC_SPLIT_SEED,
                              ctx->lm->tok, mc->train.seq_len, err);
    if (rc) /* a stop request during the load may have come to this rank only */
        return eval_agree(ctx, rc, "multifc_classify", err);
    multifc_log_notes(&cd.m, path);
    if (cd.n_cls != m->c.n_cls) {
        rc = hw_errf(err, HW_EMISMATCH,
                     "%s: %d label strings, but the classifier was trained "
                     "on %d: not the file it was fine-tuned on",
                     path, cd.n_cls, m->c.n_cls);
        multifc_cls_free(&cd);
        return rc;
    }
    int n = cd.n_idx[2];
    if (e->limit && n > e->limit)
        n = e->limit;
    if (n == 0) {
        rc = hw_errf(err, HW_EFORMAT,
                     "%s: error: no claims to score: the test part of the split (data.test_frac "
                     "%g of each (domain, label) group of %d usable claims, groups of one claim "
                     "kept out) is empty",
                     path, mc->data.test_frac, cd.m.n);
        multifc_cls_free(&cd);
        return rc;
    }
    const int T = cd.T, K = cd.n_cls;
    double *pv = HW_CALLOC((size_t)n + 1, sizeof(double));
    int n_cut = 0;
    for (int k = 0; k < n; k++) {
        const int i = cd.idx[2][k];
        n_cut += cd.cut[i];
        if (!eval_mine(ctx, k) || rc)
            continue;
        if (lm_stop_requested(ctx->lm)) {
            rc = hw_errf(err, HW_ESTOP, "multifc_classify: stopped before example %d of %d", k, n);
            continue;
        }
        int32_t pred;
        gpt_classify(m, cd.tok + (size_t)i * T, &cd.last[i], NULL, cd.allowed + (size_t)i * K, 1, T,
                     0.0f, 0, &pred);
        pv[k] = pred + 1;
        if (ctx->samples) {
            size_t len = strlen(cd.m.ex[i].claim) + 32;
            char *text = HW_MALLOC(len);
            snprintf(text, len, "Claim: %s\nVerdict:", cd.m.ex[i].claim);
            eval_sample(ctx, k,
                        json_pack("{s:s,s:s,s:o,s:o,s:o,s:b,s:i}", "task", "multifc_classify",
                                  "claim_id", cd.m.ex[i].claim_id, "prompt", eval_text(text),
                                  "gold", eval_text(cd.names[cd.label[i]]), "pred",
                                  eval_text(cd.names[pred]), "truncated", cd.cut[i], "line",
                                  cd.m.ex[i].line));
            free(text);
        }
    }
    if ((rc = eval_agree(ctx, rc, "multifc_classify", err))) {
        free(pv);
        multifc_cls_free(&cd);
        return rc;
    }
    eval_sum(ctx, pv, n);
    int *gold = HW_MALLOC(sizeof(int) * (size_t)(n + 1)),
        *pred = HW_MALLOC(sizeof(int) * (size_t)(n + 1));
    int *base = HW_MALLOC(sizeof(int) * (size_t)(n + 1));
    for (int k = 0; k < n; k++) {
        const int i = cd.idx[2][k];
        gold[k] = cd.label[i];
        pred[k] = (int)pv[k] - 1;
        base[k] = cd.major[cd.m.ex[i].domain];
    }
    const uint64_t seed = (uint64_t)e->seed;
    multifc_put_f1(metrics, "", gold, pred, n, K, e->bootstrap_iters, seed);
    multifc_put_f1(metrics, "majority_", gold, base, n, K, e->bootstrap_iters, seed + 4);
    json_t *per = json_object();
    int *g2 = HW_MALLOC(sizeof(int) * (size_t)(n + 1)),
        *p2 = HW_MALLOC(sizeof(int) * (size_t)(n + 1)),
        *b2 = HW_MALLOC(sizeof(int) * (size_t)(n + 1));
    for (int dI = 0; dI < cd.m.n_dom; dI++) {
        int k2 = 0;
        for (int k = 0; k < n; k++)
            if (cd.m.ex[cd.idx[2][k]].domain == dI) {
                g2[k2] = gold[k];
                p2[k2] = pred[k];
                b2[k2++] = base[k];
            }
        if (!k2)
            continue;
        json_object_set_new(per, cd.m.dom[dI].name,
                            multifc_domain_scores(g2, p2, b2, k2, K, e->bootstrap_iters,
                                                  seed + 6 + 2 * (uint64_t)dI));
    }
    json_object_set_new(info, "per_domain", per);
    rc = eval_info_file(info, "data", path, err);
    multifc_info_split(info, &cd.m, cd.idx[2], n, mc->data.test_frac);
    json_t *split = json_object_get(info, "split");
    json_object_set_new(split, "val_frac", json_real(mc->data.val_frac));
    json_object_set_new(split, "train", json_integer(cd.n_idx[0]));
    json_object_set_new(split, "val", json_integer(cd.n_idx[1]));
    eval_info_template(info, "\"Claim: {claim}\\nVerdict:\" cut from the left to train.seq_len "
                             "tokens; the classifier reads the last token");
    json_object_set_new(info, "truncated_prompts", json_integer(n_cut));
    json_object_set_new(info, "test_examples", json_integer(n));
    json_object_set_new(info, "labels", json_integer(K));
    free(pv), free(gold), free(pred), free(base), free(g2), free(p2), free(b2);
    multifc_cls_free(&cd);
    return rc;
}
