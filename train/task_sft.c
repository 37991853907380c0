/* train/task_sft.c -- `train.task sft`: chat fine-tuning on JSONL conversations (ShareGPT or
 * RoleMRC schema; datasets/sft.h), with the context-dependency indicator and further special
 * tokens added to the vocabulary (conditional SFT, docs/sft.md). Rows are packed with segment
 * masks (sft.pack) or padded; the loss is the mean over the step's supervised tokens (the
 * responses, or every token with sft.loss all); validation is the same mean over sft.val. */
#include "task_gpt.h"

#include "../core/check.h"
#include "../core/log.h"
#include "../datasets/chat.h"
#include "../datasets/sft.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sft_task {
    struct gpt_task g;     /* first: the shared LM state */
    struct sft_set ss, sv; /* encoded train and val conversations */
    int has_val;
    int64_t pos;   /* global example counter */
    int32_t *seg;  /* (A, Bl, T) segment ids */
    int64_t n_sup; /* supervised targets of the step's global micro-batches */
};

static struct sft_task *S(const struct trainer *tr) {
    return tr->ts;
}

static int setup(struct trainer *tr, char *err) {
    const struct hw_config *c = tr->c;
    struct sft_task *s = HW_CALLOC(1, sizeof(*s));
    tr->ts = s;
    int rc;
    if ((rc = gpt_task_tokenizer(tr, 1, err)))
        return rc;
    struct chat_template tpl;
    struct sft_data sd;
    int added = sft_extend_tokenizer(&s->g.tok, &c->sft, err);
    if (added < 0)
        return task_prefix_err(err, "sft.add_tokens", HW_ECONFIG);
    sft_template_from_cfg(&tpl, &c->sft);
    const int loss_all = !strcmp(c->sft.loss, "all");
    trainer_load_begin(tr);
    rc = 0;
    for (int k = 0; k < 2 && !rc; k++) {
        const char *path = k ? c->sft.val : c->sft.train;
        if (!path[0])
            continue;
        if (!(rc = sft_load(&sd, path, err))) {
            rc = sft_set_build(k ? &s->sv : &s->ss, &sd, &s->g.tok, &tpl, loss_all,
                               c->train.seq_len, (uint64_t)c->train.seed, err);
            sft_free(&sd);
        }
        if (rc)
            task_prefix_err(err, k ? "sft.val" : "sft.train", rc);
    }
    if ((rc = trainer_load_end(tr, rc, err)))
        return rc;
    s->has_val = s->sv.n > 0;
    if (tr->d->rank == 0)
        log_info("sft: %d conversations (%d over seq_len %d, cut), %lld supervised tokens, loss on "
                 "%s, %s; %d tokens added to the vocabulary (%d -> %d)",
                 s->ss.n, s->ss.n_truncated, c->train.seq_len, (long long)s->ss.n_loss,
                 loss_all ? "all tokens" : "response tokens only",
                 c->sft.pack ? "packed (segment masks)" : "padded", added, s->g.tok_v0,
                 bpe_vocab_size(&s->g.tok));
    if ((rc = gpt_task_model(tr, 0, 0, err)))
        return rc;
    s->seg = HW_MALLOC(sizeof(int32_t) * (size_t)c->train.micro_batch * c->train.seq_len *
                       c->train.grad_accum);
    return 0;
}

static void teardown(struct trainer *tr) {
    struct sft_task *s = S(tr);
    if (!s)
        return;
    gpt_task_free(&s->g);
    sft_set_free(&s->ss);
    sft_set_free(&s->sv);
    free(s->seg);
    free(s);
    tr->ts = NULL;
}

/* The next global micro-batch of B rows from set ss (every rank builds all of them, so the data
 * order does not depend on the grid), this rank's rows kept. Returns the supervised targets of
 * the GLOBAL micro-batch. */
static int64_t batch(struct trainer *tr, struct sft_set *ss, int64_t *cursor, int shuffle,
                     int32_t *tok, int32_t *tgt, int32_t *seg) {
    struct sft_task *s = S(tr);
    const int B = tr->c->train.micro_batch, T = s->g.Tl, Bl = s->g.Bl;
    int32_t *gt = s->g.g_tokens, *gg = s->g.g_targets, *gs = HW_MALLOC(sizeof(int32_t) * (size_t)T);
    int64_t n_sup = 0;
    for (int g = 0; g < B; g++) {
        const int b = g - tr->d->dp_rank * Bl;
        const int own = b >= 0 && b < Bl;
        const size_t o = (size_t)(own ? b : 0) * T;
        n_sup += sft_fill_row(ss, cursor, tr->c->sft.pack, shuffle, 0, own ? tok + o : gt,
                              own ? tgt + o : gg, own ? seg + o : gs);
    }
    free(gs);
    return n_sup;
}

static size_t slot(const struct trainer *tr, int a) {
    return (size_t)a * S(tr)->g.Bl * S(tr)->g.Tl;
}

static int next(struct trainer *tr, int a, char *err) {
    struct sft_task *s = S(tr);
    (void)err;
    if (a == 0)
        s->n_sup = 0;
    s->n_sup += batch(tr, &s->ss, &s->pos, 1, s->g.tokens + slot(tr, a), s->g.targets + slot(tr, a),
                      s->seg + slot(tr, a));
    return 0;
}

static double denominator(struct trainer *tr) {
    return (double)(S(tr)->n_sup > 0 ? S(tr)->n_sup : 1);
}

static double forward_backward(struct trainer *tr, int a, float dscale) {
    struct sft_task *s = S(tr);
    struct gpt_task *g = &s->g;
    g->model.seg = tr->c->sft.pack ? s->seg + slot(tr, a) : NULL;
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

/* Mean loss per supervised token over the val conversations (in file order, at most
 * val_batches micro-batches, one pass). */
static double validate(struct trainer *tr, json_t *line, char *note, size_t n, char *err, int *rc) {
    struct sft_task *s = S(tr);
    struct gpt_task *g = &s->g;
    int64_t cursor = 0, n_sup = 0;
    double sum = 0.0;
    (void)err;
    *rc = 0;
    for (int i = 0; i < tr->c->train.val_batches && cursor < s->sv.n; i++) {
        int sig = trainer_stop_poll(tr);
        if (sig) { /* the step boundary saves and exits */
            snprintf(note, n, "validation stopped by signal %d after %d micro-batches", sig, i);
            return NAN;
        }
        n_sup += batch(tr, &s->sv, &cursor, 0, g->tokens, g->targets, s->seg);
        g->model.seg = tr->c->sft.pack ? s->seg : NULL;
        sum += gpt_forward(&g->model, g->tokens, g->targets, g->Bl, g->Tl, 0.0f, 0);
        g->model.seg = NULL;
    }
    dist_allreduce_group_doubles(tr->d, DIST_DPCP, &sum, 1);
    const double v = n_sup ? sum / (double)n_sup : NAN;
    if (!isnan(v))
        json_object_set_new(line, "val_loss", json_real((float)v));
    snprintf(note, n, "val %.4f", v);
    return v;
}

static int cursor(const struct trainer *tr, int64_t *out) {
    out[0] = S(tr)->pos;
    return 1;
}

static int seek(struct trainer *tr, const int64_t *c, int n, char *err) {
    S(tr)->pos = n > 0 ? c[0] : 0;
    return 0;
}

const struct train_task task_sft = {
    .name = "sft",
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
