/* eval/task_multifc_classify.c -- `multifc_classify`: MultiFC with the classifier head a
 * checkpoint was fine-tuned with (train.task: classify). The checkpoint's own config gives the
 * file, split fractions and seed, so the held-out test part is exactly the one the classifier
 * never saw (eval.multifc_data, when set, replaces the file and must give the same label
 * set). Reported as the log-likelihood method: micro/macro F1 over the label strings, the
 * majority baseline of each domain's train part beside, and per-domain scores. */
#include "../core/check.h"
#include "../datasets/multifc_cls.h"
#include "../eval/metrics.h"
#include "tasks.h"

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
    const char *path = e->multifc_data[0] ? e->multifc_data : mc->data.multifc;
    struct multifc_cls cd;
    int rc = multifc_cls_load(&cd, path, mc->data.val_frac, mc->data.test_frac,
                              (uint64_t)mc->train.seed, ctx->lm->tok, mc->train.seq_len, err);
    if (rc)
        return rc;
    if (cd.n_cls != m->c.n_cls) {
        multifc_cls_free(&cd);
        return hw_errf(err, HW_EMISMATCH,
                       "%s: %d label strings, but the classifier was trained "
                       "on %d: not the file it was fine-tuned on",
                       path, cd.n_cls, m->c.n_cls);
    }
    int n = cd.n_idx[2];
    if (e->limit && n > e->limit)
        n = e->limit;
    const int T = cd.T, K = cd.n_cls;
    double *pv = HW_CALLOC((size_t)n + 1, sizeof(double));
    for (int k = 0; k < n; k++) {
        if (!eval_mine(ctx, k))
            continue;
        const int i = cd.idx[2][k];
        int32_t pred;
        gpt_classify(m, cd.tok + (size_t)i * T, &cd.last[i], NULL, cd.allowed + (size_t)i * K, 1, T,
                     0.0f, 0, &pred);
        pv[k] = pred + 1;
        if (ctx->samples)
            json_array_append_new(ctx->samples,
                                  json_pack("{s:s,s:s,s:s,s:s}", "task", "multifc_classify",
                                            "claim_id", cd.m.ex[i].claim_id, "gold",
                                            cd.names[cd.label[i]], "pred", cd.names[pred]));
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
    multifc_put_f1(metrics, "", gold, pred, n, K, e->bootstrap_iters, (uint64_t)e->seed);
    multifc_put_f1(metrics, "majority_", gold, base, n, K, e->bootstrap_iters,
                   (uint64_t)e->seed + 4);
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
        struct metrics_f1 a, b;
        metrics_f1(g2, p2, k2, K, &a);
        metrics_f1(g2, b2, k2, K, &b);
        json_object_set_new(per, cd.m.dom[dI].name,
                            json_pack("{s:i,s:f,s:f,s:f,s:f}", "n", k2, "f1_micro", a.micro,
                                      "f1_macro", a.macro, "majority_f1_micro", b.micro,
                                      "majority_f1_macro", b.macro));
    }
    json_object_set_new(info, "per_domain", per);
    json_t *rej = json_array();
    for (int i = 0; i < cd.m.n_rejected; i++)
        json_array_append_new(rej, json_string(cd.m.rejected[i]));
    json_object_set_new(info, "rejected_rows", rej);
    json_object_set_new(info, "data", json_string(path));
    json_object_set_new(info, "test_examples", json_integer(n));
    json_object_set_new(info, "labels", json_integer(K));
    json_object_set_new(info, "split",
                        json_pack("{s:f,s:f,s:I,s:i,s:i,s:i}", "val_frac", mc->data.val_frac,
                                  "test_frac", mc->data.test_frac, "seed",
                                  (json_int_t)mc->train.seed, "train", cd.n_idx[0], "val",
                                  cd.n_idx[1], "test", cd.n_idx[2]));
    free(pv), free(gold), free(pred), free(base), free(g2), free(p2), free(b2);
    multifc_cls_free(&cd);
    return 0;
}
