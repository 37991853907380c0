/* train/task_lm.c -- `train.task lm`: next-token prediction over HDF5 token shards
 * (data.train, or data.sources mixed by weight; data.val; datasets/shards.h, datasets/mix.h).
 * Every micro-batch is a window per sequence read in the loader's seeded order; the loss is the
 * mean over every token of the step; validation is the mean loss over train.val_batches windows
 * of data.val from its start. */
#include "task_gpt.h"

#include "../core/check.h"
#include "../datasets/mix.h"
#include "../datasets/shards.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct lm_task {
    struct gpt_task g; /* first: the shared LM state */
    struct loader train, val;
    struct mix_loader mix;  /* data.sources */
    struct mix_loader vmix; /* data.val as a glob of shards, read in order */
    int use_mix, val_mix, has_val;
};

static struct lm_task *S(const struct trainer *tr) {
    return tr->ts;
}

/* The token shards, opened and checked (rank-local: between trainer_load_begin and _end). */
static int load_shards(const struct hw_config *c, struct lm_task *s, char *err) {
    int rc;
    s->use_mix = c->data.sources.n > 0;
    s->val_mix = strpbrk(c->data.val, "*?[") != NULL;
    if (s->use_mix &&
        (rc = mix_open(&s->mix, &c->data.sources, c->train.seq_len, (uint64_t)c->train.seed, err)))
        return rc;
    if (!s->use_mix && (rc = loader_open(&s->train, c->data.train, c->train.seq_len, 1,
                                         (uint64_t)c->train.seed, err)))
        return task_prefix_err(err, "data.train", rc);
    if (s->val_mix) {
        if ((rc = mix_open_ordered(&s->vmix, c->data.val, c->train.seq_len, err)))
            return task_prefix_err(err, "data.val", rc);
        s->has_val = 1;
    } else if (c->data.val[0]) {
        if ((rc = loader_open(&s->val, c->data.val, c->train.seq_len, 0, 0, err)))
            return task_prefix_err(err, "data.val", rc);
        s->has_val = 1;
    }
    /* every id of every shard the run reads must be an embedding row of the model (the mixed
     * loaders check each shard as they open it) */
    const int vocab = s->use_mix ? s->mix.shard_vocab : s->train.sh.vocab;
    if (!s->use_mix && (rc = shard_check_vocab(&s->train.sh, vocab, err)))
        return task_prefix_err(err, "data.train", rc);
    if (s->val_mix)
        mix_set_vocab(&s->vmix, vocab);
    else if (s->has_val && (rc = shard_check_vocab(&s->val.sh, vocab, err)))
        return task_prefix_err(err, "data.val", rc);
    return 0;
}

static int setup(struct trainer *tr, char *err) {
    const struct hw_config *c = tr->c;
    struct lm_task *s = HW_CALLOC(1, sizeof(*s));
    tr->ts = s;
    int rc;
    if (!c->data.train[0] && !c->data.sources.n)
        return hw_errf(err, HW_ECONFIG,
                       "%s: error: data.train: required for training (a token shard made by "
                       "'headwise data prepare'), or data.sources",
                       c->source);
    trainer_load_begin(tr);
    rc = load_shards(c, s, err);
    if ((rc = trainer_load_end(tr, rc, err)))
        return rc;
    if ((rc = gpt_task_tokenizer(tr, 0, err)))
        return rc;
    return gpt_task_model(tr, 0, s->use_mix ? s->mix.shard_vocab : s->train.sh.vocab, err);
}

static void teardown(struct trainer *tr) {
    struct lm_task *s = S(tr);
    if (!s)
        return;
    gpt_task_free(&s->g);
    if (s->use_mix)
        mix_close(&s->mix);
    else
        loader_close(&s->train);
    if (s->val_mix)
        mix_close(&s->vmix);
    else if (s->has_val)
        loader_close(&s->val);
    free(s);
    tr->ts = NULL;
}

static size_t slot(const struct trainer *tr, int a) {
    return (size_t)a * S(tr)->g.Bl * S(tr)->g.Tl;
}

static int next(struct trainer *tr, int a, char *err) {
    struct lm_task *s = S(tr);
    if (!s->use_mix)
        return gpt_task_next_windows(tr, &s->train, s->g.tokens + slot(tr, a),
                                     s->g.targets + slot(tr, a), err);
    int rc = mix_next(&s->mix, s->g.g_tokens, s->g.g_targets, tr->c->train.micro_batch, err);
    if (!rc)
        gpt_task_slice_windows(tr, s->g.tokens + slot(tr, a), s->g.targets + slot(tr, a));
    return rc;
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
    int64_t zero[2] = {0, 0};
    if (s->val_mix)
        mix_seek(&s->vmix, zero, 2, err);
    else
        loader_seek(&s->val, 0);
    for (int i = 0; i < t->val_batches; i++) {
        int sig = trainer_stop_poll(tr);
        if (sig) { /* the step boundary saves and exits */
            snprintf(note, n, "validation stopped by signal %d after %d of %d micro-batches", sig,
                     i, t->val_batches);
            return NAN;
        }
        if (s->val_mix) {
            *rc = mix_next(&s->vmix, g->g_tokens, g->g_targets, t->micro_batch, err);
            if (!*rc)
                gpt_task_slice_windows(tr, g->tokens, g->targets);
        } else {
            *rc = gpt_task_next_windows(tr, &s->val, g->tokens, g->targets, err);
        }
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

static int cursor(const struct trainer *tr, int64_t *out) {
    if (S(tr)->use_mix)
        return mix_cursors(&S(tr)->mix, out);
    out[0] = S(tr)->train.pos;
    return 1;
}

static int seek(struct trainer *tr, const int64_t *c, int n, char *err) {
    struct lm_task *s = S(tr);
    if (s->use_mix) {
        int64_t zero[MIX_MAX_SOURCES + 1] = {0};
        return n ? mix_seek(&s->mix, c, n, err) : mix_seek(&s->mix, zero, 1 + s->mix.n, err);
    }
    if (n > 1)
        return hw_errf(err, HW_EMISMATCH,
                       "the checkpoint holds %d data cursors (it read data.sources); data.train "
                       "reads one",
                       n);
    loader_seek(&s->train, n ? c[0] : 0);
    return 0;
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
