/* train/task_lm.c -- `train.task lm`: next-token prediction over HDF5 token shards
 * (data.train, data.val; datasets/shards.h). Every micro-batch is a window per sequence read in
 * the loader's seeded order; the loss is the mean over every token of the step; validation is
 * the mean loss over train.val_batches windows of data.val from its start. */
#include "task_gpt.h"

#include "../core/check.h"
#include "../datasets/shards.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

struct lm_task {
    struct gpt_task g; /* first: the shared LM state */
    struct loader train, val;
    int has_val;
};

static struct lm_task *S(const struct trainer *tr) {
    return tr->ts;
}

/* The token shards, opened and checked (rank-local: between trainer_load_begin and _end). */
static int load_shards(const struct hw_config *c, struct lm_task *s, char *err) {
    int rc;
    if ((rc = loader_open(&s->train, c->data.train, c->train.seq_len, 1, (uint64_t)c->train.seed,
                          err)))
        return task_prefix_err(err, "data.train", rc);
    if (c->data.val[0]) {
        if ((rc = loader_open(&s->val, c->data.val, c->train.seq_len, 0, 0, err)))
            return task_prefix_err(err, "data.val", rc);
        s->has_val = 1;
    }
    /* every id of every shard the run reads must be an embedding row of the model */
    const int vocab = s->train.sh.vocab;
    if ((rc = shard_check_vocab(&s->train.sh, vocab, err)))
        return task_prefix_err(err, "data.train", rc);
    if (s->has_val && (rc = shard_check_vocab(&s->val.sh, vocab, err)))
        return task_prefix_err(err, "data.val", rc);
    return 0;
}

static int setup(struct trainer *tr, char *err) {
    const struct hw_config *c = tr->c;
    struct lm_task *s = HW_CALLOC(1, sizeof(*s));
    tr->ts = s;
    int rc;
    if (!c->data.train[0])
        return hw_errf(err, HW_ECONFIG,
                       "%s: error: data.train: required for training (a token shard made by "
                       "'headwise data prepare')",
                       c->source);
    trainer_load_begin(tr);
    rc = load_shards(c, s, err);
    if ((rc = trainer_load_end(tr, rc, err)))
        return rc;
    if ((rc = gpt_task_tokenizer(tr, 0, err)))
        return rc;
    return gpt_task_model(tr, 0, s->train.sh.vocab, err);
}

static void teardown(struct trainer *tr) {
    struct lm_task *s = S(tr);
    if (!s)
        return;
    gpt_task_free(&s->g);
    loader_close(&s->train);
    if (s->has_val)
        loader_close(&s->val);
    free(s);
    tr->ts = NULL;
}

static size_t slot(const struct trainer *tr, int a) {
    return (size_t)a * S(tr)->g.Bl * S(tr)->g.Tl;
}

static int next(struct trainer *tr, int a, char *err) {
    struct lm_task *s = S(tr);
    return gpt_task_next_windows(tr, &s->train, s->g.tokens + slot(tr, a),
                                 s->g.targets + slot(tr, a), err);
}

static double denominator(struct trainer *tr) {
    return (double)tr->tokens_per_step;
}

static double forward_backward(struct trainer *tr, int a, float dscale) {
    struct gpt_task *g = &S(tr)->g;
    double loss = gpt_forward(&g->model, g->tokens + slot(tr, a), g->targets + slot(tr, a), g->Bl,
                              g->Tl, dscale, 1);
    gpt_task_backward(tr, a, 0);
    return loss;
}

static int val_due(const struct trainer *tr) {
    const struct cfg_train *t = &tr->c->train;
    return S(tr)->has_val &&
           ((t->val_every && tr->step % t->val_every == 0) || tr->step == tr->steps);
}

static double validate(struct trainer *tr, json_t *line, char *note, size_t n, char *err, int *rc) {
    struct lm_task *s = S(tr);
    struct gpt_task *g = &s->g;
    const struct cfg_train *t = &tr->c->train;
    double sum = 0.0;
    loader_seek(&s->val, 0);
    for (int i = 0; i < t->val_batches; i++) {
        int sig = trainer_stop_poll(tr);
        if (sig) { /* the step boundary saves and exits */
            snprintf(note, n, "validation stopped by signal %d after %d of %d micro-batches", sig,
                     i, t->val_batches);
            return NAN;
        }
        *rc = gpt_task_next_windows(tr, &s->val, g->tokens, g->targets, err);
        if (*rc)
            return NAN;
        sum += gpt_forward(&g->model, g->tokens, g->targets, g->Bl, g->Tl, 0.0f, 0);
    }
    dist_allreduce_group_doubles(tr->d, DIST_DPCP, &sum, 1);
    const double v = sum / ((double)t->val_batches * t->micro_batch * t->seq_len);
    json_object_set_new(line, "val_loss", json_real((float)v));
    snprintf(note, n, "val %.4f", v);
    return v;
}

static int64_t cursor(const struct trainer *tr) {
    return S(tr)->train.pos;
}

static void seek(struct trainer *tr, int64_t pos) {
    loader_seek(&S(tr)->train, pos);
}

const struct train_task task_lm = {
    .name = "lm",
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
