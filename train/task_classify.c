/* train/task_classify.c -- `train.task classify`: the MultiFC claim-verification classifier
 * head on the seeded stratified split of data.multifc that every MultiFC method uses
 * (MULTIFC_SPLIT_SEED, datasets/multifc_cls.h). Each sequence is
 * one claim; the head reads the final norm of its last token over the labels its source
 * allows. The loss is the mean over the step's examples; validation gives the loss, accuracy
 * and macro F1 over the held-out part. */
#include "task_gpt.h"

#include "../core/check.h"
#include "../core/rng.h"
#include "../datasets/multifc_cls.h"
#include "../eval/metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cls_task {
    struct gpt_task g; /* first: the shared LM state */
    struct multifc_cls cd;
    int has_val;
    int64_t pos;            /* global sample counter */
    int *perm;              /* this epoch's order of the train part */
    int64_t epoch;          /* of perm */
    int32_t *last, *label;  /* (A, Bl) */
    unsigned char *allowed; /* (A, Bl, n_cls) */
};

static struct cls_task *S(const struct trainer *tr) {
    return tr->ts;
}

static int setup(struct trainer *tr, char *err) {
    const struct hw_config *c = tr->c;
    struct cls_task *s = HW_CALLOC(1, sizeof(*s));
    tr->ts = s;
    int rc;
    if (!c->data.multifc[0])
        return hw_errf(err, HW_ECONFIG, "%s: error: data.multifc: required for train.task classify",
                       c->source);
    if ((rc = gpt_task_tokenizer(tr, 1, err)))
        return rc;
    /* the split every MultiFC method scores (not train.seed: eval multifc uses the same) */
    trainer_load_begin(tr);
    rc = multifc_cls_load(&s->cd, c->data.multifc, c->data.val_frac, c->data.test_frac,
                          MULTIFC_SPLIT_SEED, &s->g.tok, c->train.seq_len, err);
    if (rc)
        task_prefix_err(err, "data.multifc", rc);
    if ((rc = trainer_load_end(tr, rc, err)))
        return rc;
    multifc_log_notes(&s->cd.m, c->data.multifc);
    s->has_val = s->cd.n_idx[1] > 0;
    s->perm = HW_MALLOC(sizeof(int) * (size_t)(s->cd.n_idx[0] + 1));
    s->epoch = -1;
    if ((rc = gpt_task_model(tr, s->cd.n_cls, 0, err)))
        return rc;
    const size_t ab = (size_t)c->train.grad_accum * s->g.Bl;
    s->last = HW_MALLOC(sizeof(int32_t) * ab);
    s->label = HW_MALLOC(sizeof(int32_t) * ab);
    s->allowed = HW_MALLOC(ab * (size_t)s->cd.n_cls);
    return 0;
}

static void teardown(struct trainer *tr) {
    struct cls_task *s = S(tr);
    if (!s)
        return;
    gpt_task_free(&s->g);
    multifc_cls_free(&s->cd);
    free(s->perm);
    free(s->last);
    free(s->label);
    free(s->allowed);
    free(s);
    tr->ts = NULL;
}

/* The next global micro-batch of training examples (a seeded permutation of the train part per
 * epoch), this rank's data-parallel slice of it, into slot a. */
static int next(struct trainer *tr, int a, char *err) {
    struct cls_task *s = S(tr);
    const struct multifc_cls *cd = &s->cd;
    const int B = tr->c->train.micro_batch, T = cd->T, K = cd->n_cls, n = cd->n_idx[0];
    const int Bl = s->g.Bl;
    int32_t *tok = s->g.tokens + (size_t)a * Bl * s->g.Tl;
    (void)err;
    for (int g = 0; g < B; g++, s->pos++) {
        int64_t epoch = s->pos / n, k = s->pos % n;
        if (epoch != s->epoch) {
            uint64_t key = rng_hash2((uint64_t)tr->c->train.seed, 0xc1a55ULL + (uint64_t)epoch);
            for (int i = 0; i < n; i++)
                s->perm[i] = i;
            for (int i = n - 1; i > 0; i--) {
                int j = (int)(rng_uniform(key, (uint64_t)i) * (i + 1)), t = s->perm[i];
                s->perm[i] = s->perm[j];
                s->perm[j] = t;
            }
            s->epoch = epoch;
        }
        const int b = g - tr->d->dp_rank * Bl;
        if (b < 0 || b >= Bl)
            continue;
        const int e = cd->idx[0][s->perm[k]];
        const size_t o = (size_t)a * Bl + b;
        memcpy(tok + (size_t)b * T, cd->tok + (size_t)e * T, sizeof(int32_t) * (size_t)T);
        s->last[o] = cd->last[e];
        s->label[o] = cd->label[e];
        memcpy(s->allowed + o * K, cd->allowed + (size_t)e * K, (size_t)K);
    }
    return 0;
}

static double denominator(struct trainer *tr) {
    return (double)tr->c->train.micro_batch * tr->c->train.grad_accum;
}

static double forward_backward(struct trainer *tr, int a, float dscale) {
    struct cls_task *s = S(tr);
    struct gpt_task *g = &s->g;
    const size_t o = (size_t)a * g->Bl;
    double loss = gpt_classify(&g->model, g->tokens + o * g->Tl, s->last + o, s->label + o,
                               s->allowed + o * (size_t)s->cd.n_cls, g->Bl, g->Tl, dscale, 1, NULL);
    gpt_task_backward(tr, a, 1);
    return loss;
}

static int val_due(const struct trainer *tr) {
    const struct cfg_train *t = &tr->c->train;
    return S(tr)->has_val &&
           ((t->val_every && tr->step % t->val_every == 0) || tr->step == tr->steps);
}

/* Loss, accuracy and macro F1 over the val part (examples shared over data ranks). */
static double validate(struct trainer *tr, json_t *line, char *note, size_t nn, char *err,
                       int *rc) {
    struct cls_task *s = S(tr);
    const struct multifc_cls *cd = &s->cd;
    const int n = cd->n_idx[1], T = cd->T, K = cd->n_cls;
    (void)err;
    *rc = 0;
    double *v = HW_CALLOC((size_t)n + 1, sizeof(double)); /* pred + 1 per example, then loss */
    for (int k = 0; k < n; k++) {
        if (k % tr->d->dp != tr->d->dp_rank)
            continue;
        const int e = cd->idx[1][k];
        int32_t pred;
        const int32_t lab = cd->label[e];
        v[n] += gpt_classify(&s->g.model, cd->tok + (size_t)e * T, &cd->last[e], &lab,
                             cd->allowed + (size_t)e * K, 1, T, 0.0f, 0, &pred);
        v[k] = pred + 1;
    }
    dist_allreduce_group_doubles(tr->d, DIST_DPCP, v, n + 1);
    int *gold = HW_MALLOC(sizeof(int) * (size_t)(n + 1)),
        *pred = HW_MALLOC(sizeof(int) * (size_t)(n + 1));
    for (int k = 0; k < n; k++) {
        gold[k] = cd->label[cd->idx[1][k]];
        pred[k] = (int)v[k] - 1;
    }
    struct metrics_f1 f;
    metrics_f1(gold, pred, n, K, &f);
    double loss = n ? v[n] / n : NAN;
    free(v), free(gold), free(pred);
    if (!isnan(loss)) {
        json_object_set_new(line, "val_loss", json_real((float)loss));
        json_object_set_new(line, "val_acc", json_real(f.micro));
        json_object_set_new(line, "val_f1_macro", json_real(f.macro));
    }
    snprintf(note, nn, "val %.4f", loss);
    return loss;
}

static int cursor(const struct trainer *tr, int64_t *out) {
    out[0] = S(tr)->pos;
    return 1;
}

static int seek(struct trainer *tr, const int64_t *c, int n, char *err) {
    S(tr)->pos = n > 0 ? c[0] : 0;
    return 0;
}

const struct train_task task_classify = {
    .name = "classify",
    .setup = setup,
    .teardown = teardown,
    .optim_segments = gpt_task_optim_segments,
    .begin_step = gpt_task_begin_step,
    .micro_batches = gpt_task_micro_batches,
    .next = next,
    .denominator = denominator,
    .forward_backward = forward_backward,
    .finish = gpt_task_finish,
    .grad_norm = gpt_task_grad_norm,
    .log_grad_norm = 1,
    .after_update = gpt_task_after_update,
    .gather_moments = gpt_task_gather_moments,
    .log_due = gpt_task_log_due,
    .metrics = gpt_task_metrics,
    .val_due = val_due,
    .validate = validate,
    .cursor = cursor,
    .seek = seek,
};
