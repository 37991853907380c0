/* train/trainer.c -- the training job (see trainer.h). */
#define _POSIX_C_SOURCE 200809L
#include "trainer.h"

#include "../ckpt/ckpt.h"
#include "../core/check.h"
#include "../core/fsutil.h"
#include "../core/log.h"
#include "../core/rng.h"
#include "../datasets/bpe.h"
#include "../datasets/multifc_cls.h"
#include "../datasets/sft.h"
#include "../datasets/shards.h"
#include "../eval/metrics.h"
#include "../model/gpt.h"
#include "../model/gpt_probe.h"
#include "../ops/adamw.h"
#include "../ops/ops.h"
#include "optim.h"
#include "rec_trainer.h"
#include "signals.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct run {
    const struct hw_config *c;
    struct dist *d;
    struct bpe tok;
    char *tok_json;
    char *cfg_yaml;
    char sig[256];
    struct gpt model;
    struct optim opt;
    struct loader train, val;
    int has_val;
    int32_t *g_tokens, *g_targets; /* (B, T): one global micro-batch as read */
    int32_t *tokens, *targets;     /* (grad_accum, B/dp, T/cp): this rank's slices */
    int Bl, Tl;                    /* local sequences and tokens per sequence */
    int zero;                      /* ZeRO-1 in effect */
    int classify;                  /* train.task classify */
    struct multifc_cls cd;         /* classify: the examples */
    int64_t cls_pos;               /* classify: global sample counter */
    int *cls_perm;                 /* classify: this epoch's order of the train part */
    int64_t cls_epoch;
    int32_t *cls_last, *cls_label; /* (grad_accum, Bl) */
    unsigned char *cls_allowed;    /* (grad_accum, Bl, n_cls) */
    double val_acc, val_f1;        /* classify: last validation */
    double moh_balance;    /* MoH: balance term of the last step (mean over micro-batches) */
    int sft;               /* train.task sft */
    struct sft_set ss, sv; /* sft: encoded train and val conversations */
    int64_t sft_pos;       /* sft: global example counter */
    int32_t *seg;          /* sft: (grad_accum, Bl, T) segment ids */
    int tok_v0;            /* sft: tokenizer size before the added tokens */
    int n_buckets;         /* gradient buckets: the model's blocks cut to bucket_kb */
    size_t *bk_off, *bk_len;
    int *blk_first, *blk_count; /* (n_blocks) first bucket and bucket count of each block */
    char metrics_path[CFG_PATH_MAX + 32];
    char last_ckpt[CKPT_PATH_LEN];
    int step; /* optimizer steps completed */
    int64_t tokens_seen;
    double peak_flops;
};

int train_load_tokenizer(const struct hw_config *c, struct bpe *tok, char *path_out, char *err) {
    char path[CFG_PATH_MAX + 32];
    if (c->data.tokenizer[0])
        snprintf(path, sizeof(path), "%s", c->data.tokenizer);
    else
        fs_sibling(path, sizeof(path), c->data.train, "tokenizer.json");
    if (path_out)
        snprintf(path_out, CFG_PATH_MAX + 32, "%s", path);
    return bpe_load(tok, path, err);
}

/* ---------------------------------------------------------------------------------------- */
/* checkpoints */

static void gather_buckets(struct run *r, float *base);

/* Checkpoint views of the parameter-shaped block `base`: global shapes, this rank's hyperslab;
 * one replica writes each slab (data rank 0, context rank 0, and head rank 0 for tensors that
 * are not split over heads). */
static void tensor_views(const struct gpt *m, const struct dist *d, float *base,
                         struct ckpt_tensor *t) {
    const int replica0 = d->dp_rank == 0 && d->cp_rank == 0;
    for (int i = 0; i < m->n_params; i++) {
        const struct param *p = &m->params[i];
        memset(&t[i], 0, sizeof(t[i]));
        t[i].name = p->name;
        t[i].ndim = p->ndim;
        for (int k = 0; k < p->ndim; k++) {
            t[i].shape[k] = p->gshape[k];
            t[i].offset[k] = p->goff[k];
            t[i].count[k] = p->shape[k];
        }
        t[i].write = replica0 && (p->shard_dim >= 0 || d->hp_rank == 0);
        t[i].data = base + p->offset;
    }
}

static int save_checkpoint(struct run *r, char *err) {
    const struct gpt *m = &r->model;
    struct ckpt_tensor *tv = HW_CALLOC((size_t)3 * m->n_params, sizeof(*tv));
    float *full_m = r->opt.m, *full_v = r->opt.v;
    if (r->zero) { /* the file holds whole moments: gather the shards */
        full_m = HW_CALLOC(m->num_params, sizeof(float));
        full_v = HW_CALLOC(m->num_params, sizeof(float));
        optim_export(&r->opt, full_m, full_v);
        gather_buckets(r, full_m);
        gather_buckets(r, full_v);
    }
    tensor_views(m, r->d, m->param_mem, tv);
    tensor_views(m, r->d, full_m, tv + m->n_params);
    tensor_views(m, r->d, full_v, tv + 2 * m->n_params);
    struct ckpt_group g[3] = {{"model", tv, m->n_params},
                              {"optim/m", tv + m->n_params, m->n_params},
                              {"optim/v", tv + 2 * m->n_params, m->n_params}};
    struct ckpt_meta meta;
    memset(&meta, 0, sizeof(meta));
    meta.step = r->step;
    meta.tokens_seen = r->tokens_seen;
    meta.rng[0] = (uint64_t)r->c->train.seed;
    meta.cursor[0] = r->classify ? r->cls_pos : r->sft ? r->sft_pos : r->train.pos;
    meta.n_cursor = 1;
    meta.config_yaml = r->cfg_yaml;
    meta.tokenizer_json = r->tok_json;
    meta.model_sig = r->sig;
    int rc =
        ckpt_save(r->d, r->c->run.dir, r->step, g, 3, &meta, r->c->run.keep, r->last_ckpt, err);
    free(tv);
    if (r->zero) {
        free(full_m);
        free(full_v);
    }
    return rc;
}

/* Keep only metrics lines with step <= last_step (a resumed run re-logs the steps after its
 * checkpoint). */
static void trim_metrics(const char *path, int last_step) {
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char tmp[CFG_PATH_MAX + 64];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *o = fopen(tmp, "w");
    if (!o) {
        fclose(f);
        return;
    }
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        json_error_t je;
        json_t *j = json_loads(line, 0, &je);
        json_t *s = j ? json_object_get(j, "step") : NULL;
        if (s && json_integer_value(s) <= last_step)
            fputs(line, o);
        json_decref(j);
    }
    free(line);
    fclose(f);
    fclose(o);
    rename(tmp, path);
}

static int resume(struct run *r, char *err) {
    char path[CKPT_PATH_LEN];
    int found = ckpt_latest(r->c->run.dir, path, err);
    if (found <= 0)
        return found;
    struct ckpt_file f;
    struct ckpt_meta meta;
    memset(&f, 0, sizeof(f));
    memset(&meta, 0, sizeof(meta));
    int rc = ckpt_open(&f, r->d, path, err);
    if (!rc)
        rc = ckpt_read_meta(&f, &meta, err);
    if (!rc && strcmp(meta.tokenizer_json, r->tok_json) != 0) {
        struct bpe old;
        char e2[HW_ERR_LEN];
        bpe_init(&old);
        int ov = bpe_from_json(&old, meta.tokenizer_json, strlen(meta.tokenizer_json), path, e2)
                     ? -1
                     : bpe_vocab_size(&old);
        bpe_free(&old);
        rc = hw_errf(err, HW_EMISMATCH,
                     "%s: checkpoint tokenizer (vocab %d) differs from the run's tokenizer "
                     "(vocab %d)",
                     path, ov, bpe_vocab_size(&r->tok));
    }
    if (!rc && strcmp(meta.model_sig, r->sig) != 0)
        rc = hw_errf(err, HW_ECONFIG,
                     "%s: checkpoint model '%s' does not match the config's model '%s'", path,
                     meta.model_sig, r->sig);
    const struct gpt *m = &r->model;
    struct ckpt_tensor *tv = HW_CALLOC((size_t)m->n_params, sizeof(*tv));
    const char *groups[3] = {"model", "optim/m", "optim/v"};
    float *bases[3] = {m->param_mem, r->opt.m, r->opt.v};
    if (r->zero) { /* read whole moments, keep this rank's chunks */
        bases[1] = HW_CALLOC(m->num_params, sizeof(float));
        bases[2] = HW_CALLOC(m->num_params, sizeof(float));
    }
    for (int g = 0; g < 3 && !rc; g++) {
        tensor_views(m, r->d, bases[g], tv);
        for (int i = 0; i < m->n_params && !rc; i++)
            rc = ckpt_read_tensor(&f, groups[g], &tv[i], err);
    }
    free(tv);
    if (r->zero) {
        if (!rc)
            optim_import(&r->opt, bases[1], bases[2]);
        free(bases[1]);
        free(bases[2]);
    }
    /* reads are rank-local: agree before going on (every rank fails together) */
    int any = dist_allreduce_max_int(r->d, rc ? 1 : 0);
    if (any && !rc)
        rc = hw_errf(err, HW_EIO, "%s: resume failed on another rank (see its message)", path);
    if (!rc) {
        r->step = (int)meta.step;
        r->tokens_seen = meta.tokens_seen;
        if (r->classify)
            r->cls_pos = meta.n_cursor > 0 ? meta.cursor[0] : 0;
        else if (r->sft)
            r->sft_pos = meta.n_cursor > 0 ? meta.cursor[0] : 0;
        else
            loader_seek(&r->train, meta.n_cursor > 0 ? meta.cursor[0] : 0);
        snprintf(r->last_ckpt, sizeof(r->last_ckpt), "%s", path);
        log_info("resumed from %s at step %d", path, r->step);
    }
    ckpt_meta_free(&meta);
    ckpt_close(&f);
    return rc ? rc : 1;
}

/* ---------------------------------------------------------------------------------------- */
/* validation, metrics, progress */

/* Read the next global micro-batch from l and keep this rank's slice: sequences
 * [dp_rank*Bl, (dp_rank+1)*Bl) and, of each, the zig-zag tokens of the context rank. */
static int next_local_batch(struct run *r, struct loader *l, int32_t *tok, int32_t *tgt,
                            char *err) {
    const int B = r->c->train.micro_batch, T = r->c->train.seq_len;
    int rc = loader_next(l, r->g_tokens, r->g_targets, B, err);
    if (rc)
        return rc;
    const int32_t *pos = r->model.pos;
    for (int b = 0; b < r->Bl; b++) {
        const size_t src = (size_t)(r->d->dp_rank * r->Bl + b) * T;
        for (int t = 0; t < r->Tl; t++) {
            tok[(size_t)b * r->Tl + t] = r->g_tokens[src + pos[t]];
            tgt[(size_t)b * r->Tl + t] = r->g_targets[src + pos[t]];
        }
    }
    return 0;
}

/* classify: the next global micro-batch of training examples (a seeded permutation of the
 * train part per epoch), this rank's data-parallel slice of it */
static void next_cls_batch(struct run *r, int32_t *tok, int32_t *last, int32_t *label,
                           unsigned char *allowed) {
    const struct multifc_cls *cd = &r->cd;
    const int B = r->c->train.micro_batch, T = cd->T, K = cd->n_cls, n = cd->n_idx[0];
    for (int g = 0; g < B; g++, r->cls_pos++) {
        int64_t epoch = r->cls_pos / n, k = r->cls_pos % n;
        if (epoch != r->cls_epoch) {
            uint64_t key = rng_hash2((uint64_t)r->c->train.seed, 0xc1a55ULL + (uint64_t)epoch);
            for (int i = 0; i < n; i++)
                r->cls_perm[i] = i;
            for (int i = n - 1; i > 0; i--) {
                int j = (int)(rng_uniform(key, (uint64_t)i) * (i + 1)), t = r->cls_perm[i];
                r->cls_perm[i] = r->cls_perm[j];
                r->cls_perm[j] = t;
            }
            r->cls_epoch = epoch;
        }
        const int b = g - r->d->dp_rank * r->Bl;
        if (b < 0 || b >= r->Bl)
            continue;
        const int e = cd->idx[0][r->cls_perm[k]];
        memcpy(tok + (size_t)b * T, cd->tok + (size_t)e * T, sizeof(int32_t) * (size_t)T);
        last[b] = cd->last[e];
        label[b] = cd->label[e];
        memcpy(allowed + (size_t)b * K, cd->allowed + (size_t)e * K, (size_t)K);
    }
}

/* classify: loss, accuracy and macro F1 over the val part (examples shared over data ranks) */
static double cls_val(struct run *r) {
    const struct multifc_cls *cd = &r->cd;
    const int n = cd->n_idx[1], T = cd->T, K = cd->n_cls;
    double *v = HW_CALLOC((size_t)n + 1, sizeof(double)); /* pred + 1 per example, then loss */
    for (int k = 0; k < n; k++) {
        if (k % r->d->dp != r->d->dp_rank)
            continue;
        const int e = cd->idx[1][k];
        int32_t pred;
        const int32_t lab = cd->label[e];
        v[n] += gpt_classify(&r->model, cd->tok + (size_t)e * T, &cd->last[e], &lab,
                             cd->allowed + (size_t)e * K, 1, T, 0.0f, 0, &pred);
        v[k] = pred + 1;
    }
    dist_allreduce_group_doubles(r->d, DIST_DPCP, v, n + 1);
    int *gold = HW_MALLOC(sizeof(int) * (size_t)(n + 1)),
        *pred = HW_MALLOC(sizeof(int) * (size_t)(n + 1));
    for (int k = 0; k < n; k++) {
        gold[k] = cd->label[cd->idx[1][k]];
        pred[k] = (int)v[k] - 1;
    }
    struct metrics_f1 f;
    metrics_f1(gold, pred, n, K, &f);
    r->val_acc = f.micro;
    r->val_f1 = f.macro;
    double loss = n ? v[n] / n : NAN;
    free(v), free(gold), free(pred);
    return loss;
}

/* sft: the next global micro-batch of B rows from set s (every rank builds all of them, so the
 * data order does not depend on the grid), this rank's rows kept. Returns the supervised
 * targets of the GLOBAL micro-batch. */
static int64_t sft_batch(struct run *r, struct sft_set *s, int64_t *cursor, int shuffle,
                         int32_t *tok, int32_t *tgt, int32_t *seg) {
    const int B = r->c->train.micro_batch, T = r->Tl;
    int32_t *gt = r->g_tokens, *gg = r->g_targets, *gs = HW_MALLOC(sizeof(int32_t) * (size_t)T);
    int64_t n_sup = 0;
    for (int g = 0; g < B; g++) {
        const int b = g - r->d->dp_rank * r->Bl;
        const int own = b >= 0 && b < r->Bl;
        const size_t o = (size_t)(own ? b : 0) * T;
        n_sup += sft_fill_row(s, cursor, r->c->sft.pack, shuffle, 0, own ? tok + o : gt,
                              own ? tgt + o : gg, own ? seg + o : gs);
    }
    free(gs);
    return n_sup;
}

/* sft: mean loss per supervised token over the val conversations (in file order, at most
 * val_batches micro-batches, one pass). */
static double sft_val(struct run *r) {
    int64_t cursor = 0, n_sup = 0;
    double sum = 0.0;
    for (int i = 0; i < r->c->train.val_batches && cursor < r->sv.n; i++) {
        n_sup += sft_batch(r, &r->sv, &cursor, 0, r->tokens, r->targets, r->seg);
        r->model.seg = r->c->sft.pack ? r->seg : NULL;
        sum += gpt_forward(&r->model, r->tokens, r->targets, r->Bl, r->Tl, 0.0f, 0);
        r->model.seg = NULL;
    }
    dist_allreduce_group_doubles(r->d, DIST_DPCP, &sum, 1);
    return n_sup ? sum / (double)n_sup : NAN;
}

static double val_loss(struct run *r, char *err, int *rc) {
    if (r->classify)
        return cls_val(r);
    if (r->sft)
        return sft_val(r);
    const struct cfg_train *t = &r->c->train;
    double sum = 0.0;
    loader_seek(&r->val, 0);
    for (int i = 0; i < t->val_batches; i++) {
        *rc = next_local_batch(r, &r->val, r->tokens, r->targets, err);
        if (*rc)
            return NAN;
        sum += gpt_forward(&r->model, r->tokens, r->targets, r->Bl, r->Tl, 0.0f, 0);
    }
    dist_allreduce_group_doubles(r->d, DIST_DPCP, &sum, 1);
    return sum / ((double)t->val_batches * t->micro_batch * t->seq_len);
}

/* Global gradient norm: split tensors count on every head rank, replicated ones once; under
 * ZeRO-1 each data x context rank holds the reduced gradient of its own chunks only. */
static double grad_norm(struct run *r) {
    struct param_set ps = gpt_param_set(&r->model);
    double ss = optim_grad_sumsq(&r->opt, &ps, r->d->hp_rank);
    if (r->zero)
        dist_allreduce_group_doubles(r->d, DIST_DPCP, &ss, 1);
    dist_allreduce_group_doubles(r->d, DIST_HP, &ss, 1);
    return sqrt(ss);
}

static void push_grads(void *ctx, int k) {
    struct run *r = ctx;
    for (int b = r->blk_first[k]; b < r->blk_first[k] + r->blk_count[k]; b++)
        dist_grad_push(r->d, r->model.grad_mem + r->bk_off[b], r->bk_len[b]);
}

/* Cut the model's gradient blocks into buckets of dist.bucket_kb (0: one bucket a block), in
 * the order the backward pushes them; under ZeRO-1 the chunks of the buckets this rank owns
 * become the optimizer's segments. */
static void plan_buckets(struct run *r) {
    const struct gpt *m = &r->model;
    const size_t cap = (size_t)r->c->dist.bucket_kb * 256; /* floats */
    int n = 0;
    for (int k = 0; k < m->n_blocks; k++)
        n += cap ? (int)((m->block_len[k] + cap - 1) / cap) : 1;
    r->bk_off = HW_MALLOC(sizeof(size_t) * (size_t)n);
    r->bk_len = HW_MALLOC(sizeof(size_t) * (size_t)n);
    r->blk_first = HW_MALLOC(sizeof(int) * (size_t)m->n_blocks);
    r->blk_count = HW_MALLOC(sizeof(int) * (size_t)m->n_blocks);
    r->n_buckets = 0;
    for (int k = 0; k < m->n_blocks; k++) {
        const size_t len = m->block_len[k], step = cap ? cap : len;
        r->blk_first[k] = r->n_buckets;
        for (size_t off = 0; off < len; off += step) {
            r->bk_off[r->n_buckets] = m->block_off[k] + off;
            r->bk_len[r->n_buckets++] = len - off < step ? len - off : step;
        }
        r->blk_count[k] = r->n_buckets - r->blk_first[k];
    }
    struct optim_seg *seg = HW_CALLOC((size_t)r->n_buckets + 1, sizeof(*seg));
    int n_seg = 0;
    if (r->zero) {
        for (int b = 0; b < r->n_buckets; b++) {
            size_t lo, hi;
            dist_owned_chunk(r->d, r->bk_len[b], &lo, &hi);
            if (hi > lo)
                seg[n_seg++] = (struct optim_seg){.off = r->bk_off[b] + lo, .len = hi - lo};
        }
    } else {
        seg[n_seg++] = (struct optim_seg){.off = 0, .len = m->num_params};
    }
    optim_init(&r->opt, m->ops, seg, n_seg);
    free(seg);
}

/* ZeRO-1: every rank updated its own chunks; gather the full parameters (or moments). */
static void gather_buckets(struct run *r, float *base) {
    for (int b = 0; b < r->n_buckets; b++)
        dist_allgather_f32(r->d, base + r->bk_off[b], r->bk_len[b], DIST_KIND_ZERO_AG);
}

static void fmt_time(char *out, size_t n, double s) {
    if (s < 0 || !isfinite(s))
        snprintf(out, n, "?");
    else if (s < 60)
        snprintf(out, n, "%.0fs", s);
    else if (s < 3600)
        snprintf(out, n, "%dm%02ds", (int)s / 60, (int)s % 60);
    else
        snprintf(out, n, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
}

static void write_metrics(struct run *r, double loss, double lr, double gnorm, double tps,
                          double mfu, double vloss, double step_s) {
    if (r->d->rank != 0)
        return;
    json_t *j = json_object();
    json_object_set_new(j, "step", json_integer(r->step));
    json_object_set_new(j, "loss", json_real((float)loss));
    json_object_set_new(j, "lr", json_real((float)lr));
    json_object_set_new(j, "grad_norm", json_real((float)gnorm));
    json_object_set_new(j, "tokens_per_s", json_real(round(tps)));
    json_object_set_new(j, "mfu", json_real(round(mfu * 1e4) / 1e4));
    if (!isnan(vloss))
        json_object_set_new(j, "val_loss", json_real((float)vloss));
    if (!isnan(vloss) && r->classify) {
        json_object_set_new(j, "val_acc", json_real(r->val_acc));
        json_object_set_new(j, "val_f1_macro", json_real(r->val_f1));
    }
    const struct gpt *m = &r->model;
    int routed = 0;
    for (int l = 0; l < m->c.L; l++)
        routed |= gpt_head_usage(m, l) != NULL;
    if (routed) {
        /* the balance term added to the loss, and per routed (MoH) layer the fraction of
         * tokens that used each head during the step */
        json_object_set_new(j, "moh_balance", json_real((float)r->moh_balance));
        json_t *u = json_array(), *ls = json_array();
        for (int l = 0; l < m->c.L; l++) {
            const double *use = gpt_head_usage(m, l);
            if (!use)
                continue;
            json_t *row = json_array();
            for (int h = 0; h < m->c.H; h++)
                json_array_append_new(
                    row, json_real(round(use[h] / (m->stat_tokens > 0 ? m->stat_tokens : 1) * 1e4) /
                                   1e4));
            json_array_append_new(u, row);
            json_array_append_new(ls, json_integer(l));
        }
        json_object_set_new(j, "moh_usage", u);
        json_object_set_new(j, "moh_layers", ls);
    }
    if (r->d->world > 1) {
        /* per collective kind: bytes this rank sent and seconds it waited (rank 0's view) */
        json_t *cm = json_object();
        double comm_s = 0.0;
        for (int k = 0; k < DIST_KINDS; k++) {
            if (!r->d->stats.calls[k])
                continue;
            json_object_set_new(cm, dist_kind_names[k],
                                json_pack("{s:f,s:f}", "bytes", r->d->stats.bytes[k], "s",
                                          round(r->d->stats.seconds[k] * 1e6) / 1e6));
            comm_s += r->d->stats.seconds[k];
        }
        json_object_set_new(j, "comm", cm);
        json_object_set_new(j, "step_s", json_real(round(step_s * 1e6) / 1e6));
        json_object_set_new(j, "comm_s", json_real(round(comm_s * 1e6) / 1e6));
    }
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
    FILE *f = fopen(r->metrics_path, "a");
    if (f) {
        fprintf(f, "%s\n", s);
        fclose(f);
    }
    free(s);
    json_decref(j);
}

/* ---------------------------------------------------------------------------------------- */

/* Fine-tuning: the tokenizer stored in train.init_from. */
static int init_tokenizer(struct run *r, char *err) {
    struct ckpt_file f;
    struct ckpt_meta meta;
    memset(&f, 0, sizeof(f));
    memset(&meta, 0, sizeof(meta));
    int rc = ckpt_open(&f, r->d, r->c->train.init_from, err);
    if (!rc)
        rc = ckpt_read_meta(&f, &meta, err);
    if (!rc)
        rc = bpe_from_json(&r->tok, meta.tokenizer_json, strlen(meta.tokenizer_json),
                           r->c->train.init_from, err);
    ckpt_meta_free(&meta);
    ckpt_close(&f);
    return rc;
}

/* Fine-tuning: every parameter but a new classifier head from train.init_from (shapes must
 * match: the model section has to describe the checkpoint's model). */
static int init_weights(struct run *r, char *err) {
    const struct gpt *m = &r->model;
    struct ckpt_file f;
    memset(&f, 0, sizeof(f));
    int rc = ckpt_open(&f, r->d, r->c->train.init_from, err);
    struct ckpt_tensor *tv = HW_CALLOC((size_t)m->n_params, sizeof(*tv));
    tensor_views(m, r->d, m->param_mem, tv);
    for (int i = 0; i < m->n_params && !rc; i++) {
        int nd;
        int64_t shape[CKPT_MAX_DIMS];
        if (!strcmp(m->params[i].name, "cls_head.weight") &&
            ckpt_tensor_shape(&f, "model", "cls_head.weight", &nd, shape, err) == 0)
            continue; /* a new head starts from its init */
        const int vocab_rows = !strcmp(m->params[i].name, "tok_emb.weight") ||
                               !strcmp(m->params[i].name, "lm_head.weight");
        if (r->sft && vocab_rows &&
            ckpt_tensor_shape(&f, "model", m->params[i].name, &nd, shape, err) == 1 && nd == 2 &&
            shape[0] <= tv[i].shape[0] && shape[0] >= r->tok_v0 &&
            bpe_vocab_size(&r->tok) > r->tok_v0) {
            /* added tokens: the stored rows are kept bit for bit, new rows start at the mean
             * of the old tokenizer's rows */
            const int64_t v0 = shape[0], v1 = tv[i].shape[0];
            tv[i].shape[0] = tv[i].count[0] = v0;
            rc = ckpt_read_tensor(&f, "model", &tv[i], err);
            tv[i].shape[0] = tv[i].count[0] = v1;
            int64_t *rows = HW_MALLOC(sizeof(int64_t) * (size_t)(v1 - r->tok_v0));
            int nr = 0;
            for (int64_t v = r->tok_v0; v < v1; v++)
                if (v >= v0 || v < bpe_vocab_size(&r->tok))
                    rows[nr++] = v;
            if (!rc)
                gpt_rows_set_mean(tv[i].data, (int)m->c.C, r->tok_v0, rows, nr);
            if (!rc && r->d->rank == 0)
                log_info("%s: %lld -> %lld rows (%d set to the mean of the first %d)",
                         m->params[i].name, (long long)v0, (long long)v1, nr, r->tok_v0);
            free(rows);
            continue;
        }
        rc = ckpt_read_tensor(&f, "model", &tv[i], err);
    }
    free(tv);
    ckpt_close(&f);
    if (dist_allreduce_max_int(r->d, rc ? 1 : 0) && !rc)
        rc = hw_errf(err, HW_EIO, "train.init_from failed on another rank");
    if (rc == HW_EMISMATCH)
        rc = HW_ECONFIG; /* the config's model does not describe the checkpoint */
    if (!rc)
        log_info("initialised from %s", r->c->train.init_from);
    return rc;
}

/* Prefix a module's one-line error with the config key it came from. */
static int prefix_err(char *err, const char *key, int rc) {
    char tmp[HW_ERR_LEN];
    snprintf(tmp, sizeof(tmp), "%s", err);
    snprintf(err, HW_ERR_LEN, "%.32s: %.400s", key, tmp);
    return rc;
}

static int setup(struct run *r, char *err) {
    const struct hw_config *c = r->c;
    char tok_path[CFG_PATH_MAX + 32];
    int rc;
    r->classify = !strcmp(c->train.task, "classify");
    r->sft = !strcmp(c->train.task, "sft");
    if (r->classify && !c->data.multifc[0])
        return hw_errf(err, HW_ECONFIG,
                       "%s: error: data.multifc: required for train.task "
                       "classify",
                       c->source);
    if (!r->classify && !r->sft && !c->data.train[0])
        return hw_errf(err, HW_ECONFIG,
                       "%s: error: data.train: required for training (a token "
                       "shard made by 'headwise data prepare')",
                       c->source);
    if (!r->classify && !r->sft) {
        if ((rc = loader_open(&r->train, c->data.train, c->train.seq_len, 1,
                              (uint64_t)c->train.seed, err)))
            return prefix_err(err, "data.train", rc);
        if (c->data.val[0]) {
            if ((rc = loader_open(&r->val, c->data.val, c->train.seq_len, 0, 0, err)))
                return prefix_err(err, "data.val", rc);
            r->has_val = 1;
        }
    }
    bpe_init(&r->tok);
    if (c->train.init_from[0]) { /* fine-tuning: the checkpoint's tokenizer */
        snprintf(tok_path, sizeof(tok_path), "%.500s", c->train.init_from);
        if ((rc = init_tokenizer(r, err)))
            return prefix_err(err, "train.init_from", rc);
    } else if ((r->classify || r->sft) && !c->data.tokenizer[0]) {
        return hw_errf(err, HW_ECONFIG,
                       "%s: error: data.tokenizer: required for train.task "
                       "%s without train.init_from",
                       c->source, c->train.task);
    } else if ((rc = train_load_tokenizer(c, &r->tok, tok_path, err))) {
        return prefix_err(err, c->data.tokenizer[0] ? "data.tokenizer" : "tokenizer", rc);
    }
    if (r->classify) {
        if ((rc = multifc_cls_load(&r->cd, c->data.multifc, c->data.val_frac, c->data.test_frac,
                                   (uint64_t)c->train.seed, &r->tok, c->train.seq_len, err)))
            return prefix_err(err, "data.multifc", rc);
        r->has_val = r->cd.n_idx[1] > 0;
        r->cls_perm = HW_MALLOC(sizeof(int) * (size_t)(r->cd.n_idx[0] + 1));
        r->cls_epoch = -1;
    }
    if (r->sft) {
        struct chat_template tpl;
        struct sft_data sd;
        r->tok_v0 = bpe_vocab_size(&r->tok);
        int added = sft_extend_tokenizer(&r->tok, &c->sft, err);
        if (added < 0)
            return prefix_err(err, "sft.add_tokens", HW_ECONFIG);
        sft_template_from_cfg(&tpl, &c->sft);
        const int loss_all = !strcmp(c->sft.loss, "all");
        for (int k = 0; k < 2; k++) {
            const char *path = k ? c->sft.val : c->sft.train;
            if (!path[0])
                continue;
            if ((rc = sft_load(&sd, path, err)))
                return prefix_err(err, k ? "sft.val" : "sft.train", rc);
            rc = sft_set_build(k ? &r->sv : &r->ss, &sd, &r->tok, &tpl, loss_all, c->train.seq_len,
                               (uint64_t)c->train.seed, err);
            sft_free(&sd);
            if (rc)
                return prefix_err(err, k ? "sft.val" : "sft.train", rc);
        }
        r->has_val = r->sv.n > 0;
        if (r->d->rank == 0)
            log_info("sft: %d conversations (%d over seq_len %d, cut), %lld supervised tokens, "
                     "loss on %s, %s; %d tokens added to the vocabulary (%d -> %d)",
                     r->ss.n, r->ss.n_truncated, c->train.seq_len, (long long)r->ss.n_loss,
                     loss_all ? "all tokens" : "response tokens only",
                     c->sft.pack ? "packed (segment masks)" : "padded", added, r->tok_v0,
                     bpe_vocab_size(&r->tok));
    }
    int vocab = bpe_vocab_size(&r->tok);
    if (c->model.vocab && c->model.vocab < vocab)
        return hw_errf(err, HW_ECONFIG,
                       "%s: error: model.vocab: %d is smaller than the "
                       "tokenizer's %d tokens (%s)",
                       c->source, c->model.vocab, vocab, tok_path);
    if (c->model.vocab)
        vocab = c->model.vocab;
    r->tok_json = bpe_to_json(&r->tok);
    if (!r->classify && !r->sft && r->train.sh.vocab > vocab)
        return hw_errf(err, HW_EMISMATCH,
                       "%s: shard vocabulary %d does not fit the model's %d "
                       "(tokenizer %s)",
                       c->data.train, r->train.sh.vocab, vocab, tok_path);
    struct gpt_config gc;
    gpt_config_from_cfg(&gc, &c->model, vocab);
    gc.n_cls = r->classify ? r->cd.n_cls : 0;
    gpt_config_signature(&gc, r->sig, sizeof(r->sig));
    gpt_init(&r->model, &gc, ops_for(BACKEND_CPU), r->d);
    gpt_init_weights(&r->model, (uint64_t)c->train.seed);
    if (c->train.init_from[0] && (rc = init_weights(r, err)))
        return rc;
    r->Bl = c->train.micro_batch / r->d->dp;
    r->Tl = c->train.seq_len / r->d->cp;
    gpt_alloc_acts(&r->model, r->Bl, r->Tl);
    r->zero = c->dist.zero && r->d->dp * r->d->cp > 1;
    plan_buckets(r);
    size_t bt = (size_t)c->train.micro_batch * c->train.seq_len;
    r->g_tokens = HW_MALLOC(sizeof(int32_t) * bt);
    r->g_targets = HW_MALLOC(sizeof(int32_t) * bt);
    r->tokens = HW_MALLOC(sizeof(int32_t) * bt * c->train.grad_accum);
    if (r->classify) {
        const size_t ab = (size_t)c->train.grad_accum * r->Bl;
        r->cls_last = HW_MALLOC(sizeof(int32_t) * ab);
        r->cls_label = HW_MALLOC(sizeof(int32_t) * ab);
        r->cls_allowed = HW_MALLOC(ab * (size_t)r->cd.n_cls);
    }
    r->targets = HW_MALLOC(sizeof(int32_t) * bt * c->train.grad_accum);
    if (r->sft)
        r->seg = HW_MALLOC(sizeof(int32_t) * bt * c->train.grad_accum);
    /* run directory: resolved config and tokenizer beside the metrics and checkpoints */
    if ((rc = fs_mkdirs(c->run.dir, err)))
        return rc;
    r->cfg_yaml = cfg_to_yaml(c);
    char path[CFG_PATH_MAX + 32];
    if (r->d->rank == 0) {
        snprintf(path, sizeof(path), "%s/config.yaml", c->run.dir);
        if ((rc = fs_write_atomic(path, r->cfg_yaml, strlen(r->cfg_yaml), err)))
            return rc;
        snprintf(path, sizeof(path), "%s/tokenizer.json", c->run.dir);
        if ((rc = fs_write_atomic(path, r->tok_json, strlen(r->tok_json), err)))
            return rc;
    }
    snprintf(r->metrics_path, sizeof(r->metrics_path), "%s/metrics.jsonl", c->run.dir);
    if (strcmp(c->run.resume, "auto") == 0) {
        rc = resume(r, err);
        if (rc < 0)
            return rc;
        if (r->d->rank == 0) {
            if (rc == 0)
                unlink(r->metrics_path);
            else
                trim_metrics(r->metrics_path, r->step);
        }
    } else if (r->d->rank == 0) {
        unlink(r->metrics_path);
    }
    return 0;
}

static void teardown(struct run *r) {
    bpe_free(&r->tok);
    free(r->tok_json);
    free(r->cfg_yaml);
    gpt_free(&r->model);
    optim_free(&r->opt);
    loader_close(&r->train);
    if (r->has_val)
        loader_close(&r->val);
    free(r->tokens);
    free(r->targets);
    free(r->g_tokens);
    free(r->g_targets);
    free(r->bk_off);
    free(r->bk_len);
    if (r->classify)
        multifc_cls_free(&r->cd);
    sft_set_free(&r->ss);
    sft_set_free(&r->sv);
    free(r->seg);
    free(r->cls_perm);
    free(r->cls_last);
    free(r->cls_label);
    free(r->cls_allowed);
    free(r->blk_first);
    free(r->blk_count);
}

/* Test hooks (fault injection, as SQLite does): HW_FAULT_NAN_STEP=N poisons the loss at step
 * N (checks the NaN guard); HW_STOP_AFTER_STEP=N acts as if SIGUSR1 arrived during step N
 * (a deterministic preemption). */
static int env_step(const char *name) {
    const char *s = getenv(name);
    return s ? atoi(s) : -1;
}

int train_run(const struct hw_config *c, struct dist *d) {
    if (!strcmp(c->model.family, "rec"))
        return rec_train_run(c, d);
    struct run r;
    char err[HW_ERR_LEN];
    memset(&r, 0, sizeof(r));
    r.c = c;
    r.d = d;
    int rc = cfg_check_world(c, d->world, err);
    if (rc) {
        if (d->rank == 0)
            fprintf(stderr, "%s\n", err);
        return HW_EXIT_CONFIG;
    }
    dist_grid_init(d, c->dist.data, c->dist.context, c->dist.heads,
                   !strcmp(c->dist.context_mode, "ulysses"));
    /* threads: all cores of the node shared among its ranks unless set */
    int threads = c->train.threads ? c->train.threads : dist_threads_per_rank(d);
    threads = ops_set_threads(threads);
    rc = setup(&r, err);
    if (rc) {
        log_error("%s", err);
        teardown(&r);
        return rc == HW_ECONFIG ? HW_EXIT_CONFIG : HW_EXIT_FAIL;
    }
    signals_install();
    const struct cfg_train *t = &c->train;
    const int B = t->micro_batch, T = t->seq_len, A = t->grad_accum;
    const int64_t tokens_per_step = (int64_t)B * T * A;
    const double flops_tok = gpt_flops_per_token(&r.model.c, T);
    r.peak_flops = ops_sgemm_peak(0.3);
    /* under a launcher the ranks' stdout is forwarded, so no \r progress rewriting */
    const int nan_step = env_step("HW_FAULT_NAN_STEP"), tty = isatty(1) && d->world == 1;
    const int stop_step = env_step("HW_STOP_AFTER_STEP");
    double n_global = 0.0;
    for (int i = 0; i < r.model.n_params; i++)
        n_global += (double)r.model.params[i].gshape[0] *
                    (double)(r.model.params[i].ndim == 2 ? r.model.params[i].gshape[1] : 1);
    log_info("headwise train: %s | %.2fM params | %s | %d threads/rank | sgemm peak %.1f GFLOP/s",
             c->source, n_global / 1e6, r.sig, threads, r.peak_flops / 1e9);
    log_info("run dir: %s | %d steps x %lld tokens (batch %d x seq %d x accum %d)", c->run.dir,
             t->steps, (long long)tokens_per_step, B, T, A);
    dist_grid_print(d);
    log_info("optimizer state: %.3fM floats per rank (%s)", (double)r.opt.n * 2 / 1e6,
             r.zero ? "ZeRO-1: moments sharded over data x context" : "replicated");
    double first_loss = NAN, last_loss = NAN, last_val = NAN, best_val = INFINITY;
    double t_start = log_now(), tok_s_sum = 0.0, mfu_sum = 0.0;
    int start_step = r.step, n_timed = 0, exit_code = HW_EXIT_OK;
    const size_t local_bt = (size_t)r.Bl * r.Tl;
    while (r.step < t->steps) {
        double t0 = log_now();
        double lr = optim_lr(t, r.step), loss_sum = 0.0;
        int64_t n_sup = 0; /* sft: supervised targets of the whole step (all ranks) */
        dist_stats_reset(d);
        gpt_zero_grad(&r.model);
        gpt_stats_reset(&r.model);
        r.model.aux_scale = 1.0f / (float)A;
        double aux_sum = 0.0;
        for (int a = 0; a < A && r.sft; a++) {
            const size_t o = (size_t)a * local_bt;
            n_sup += sft_batch(&r, &r.ss, &r.sft_pos, 1, r.tokens + o, r.targets + o, r.seg + o);
        }
        for (int a = 0; a < A && !rc; a++) {
            int32_t *tk = r.tokens + (size_t)a * local_bt, *tg = r.targets + (size_t)a * local_bt;
            if (r.classify) {
                const size_t o = (size_t)a * r.Bl;
                next_cls_batch(&r, tk, r.cls_last + o, r.cls_label + o,
                               r.cls_allowed + o * (size_t)r.cd.n_cls);
                loss_sum += gpt_classify(&r.model, tk, r.cls_last + o, r.cls_label + o,
                                         r.cls_allowed + o * (size_t)r.cd.n_cls, r.Bl, r.Tl,
                                         1.0f / (float)(B * A), 1, NULL);
            } else if (r.sft) {
                r.model.seg = c->sft.pack ? r.seg + (size_t)a * local_bt : NULL;
                loss_sum += gpt_forward(&r.model, tk, tg, r.Bl, r.Tl,
                                        1.0f / (float)(n_sup > 0 ? n_sup : 1), 1);
            } else {
                rc = next_local_batch(&r, &r.train, tk, tg, err);
                if (rc)
                    break;
                loss_sum +=
                    gpt_forward(&r.model, tk, tg, r.Bl, r.Tl, 1.0f / (float)tokens_per_step, 1);
            }
            aux_sum += r.model.aux_loss;
            /* the data-parallel all-reduce overlaps the last micro-step's backward */
            r.model.grad_ready = a + 1 == A && d->dp * d->cp > 1 ? push_grads : NULL;
            dist_grad_set_reduce_scatter(d, r.zero);
            r.model.grad_ready_ctx = &r;
            if (r.classify)
                gpt_backward_classify(&r.model);
            else
                gpt_backward(&r.model);
            if (r.model.grad_ready)
                dist_grad_finish(d);
            r.model.seg = NULL;
        }
        if (rc) {
            log_error("%s", err);
            exit_code = HW_EXIT_FAIL;
            break;
        }
        dist_allreduce_group_doubles(d, DIST_DPCP, &loss_sum, 1);
        r.moh_balance = aux_sum / A;
        double loss = loss_sum / (r.classify ? (double)B * A
                                  : r.sft    ? (double)(n_sup > 0 ? n_sup : 1)
                                             : (double)tokens_per_step);
        if (r.step + 1 == nan_step)
            loss = NAN;
        double gnorm = grad_norm(&r);
        if (!isfinite(loss) || !isfinite(gnorm)) {
            log_error("%s: step %d: %s is %s; stopping without saving a checkpoint (last good "
                      "checkpoint: %s)",
                      c->source, r.step + 1, isfinite(loss) ? "gradient norm" : "loss",
                      isnan(isfinite(loss) ? gnorm : loss) ? "NaN" : "Inf",
                      r.last_ckpt[0] ? r.last_ckpt : "none");
            exit_code = HW_EXIT_NUMERIC;
            break;
        }
        float clip =
            t->grad_clip > 0 && gnorm > t->grad_clip ? (float)(t->grad_clip / gnorm) : 1.0f;
        struct param_set ps = gpt_param_set(&r.model);
        optim_step(&r.opt, &ps, t, (float)lr, r.step + 1, clip);
        if (r.zero)
            gather_buckets(&r, r.model.param_mem);
        r.step++;
        r.tokens_seen += tokens_per_step;
        double dt = log_now() - t0, tps = (double)tokens_per_step / dt;
        double mfu = tps * flops_tok / (r.peak_flops * d->world);
        if (r.step > start_step + 1 || t->steps - start_step == 1) {
            tok_s_sum += tps;
            mfu_sum += mfu;
            n_timed++;
        }
        if (isnan(first_loss))
            first_loss = loss;
        last_loss = loss;
        double vloss = NAN;
        if (r.has_val && ((t->val_every && r.step % t->val_every == 0) || r.step == t->steps)) {
            vloss = val_loss(&r, err, &rc);
            if (rc) {
                log_error("%s", err);
                exit_code = HW_EXIT_FAIL;
                break;
            }
            last_val = vloss;
            best_val = vloss < best_val ? vloss : best_val;
        }
        write_metrics(&r, loss, lr, gnorm, tps, mfu, vloss, dt);
        double elapsed = log_now() - t_start;
        double eta = elapsed / (r.step - start_step) * (t->steps - r.step);
        char eta_s[32];
        fmt_time(eta_s, sizeof(eta_s), eta);
        if (tty && d->rank == 0) {
            printf("\rstep %6d/%d | loss %.4f | lr %.2e | %.0f tok/s | mfu %.1f%% | eta %s   ",
                   r.step, t->steps, loss, lr, tps, 100 * mfu, eta_s);
            if (!isnan(vloss))
                printf("\n  val loss %.4f\n", vloss);
            fflush(stdout);
        }
        if (!tty && (r.step % t->log_every == 0 || r.step == t->steps || !isnan(vloss))) {
            char vs[32] = "";
            if (!isnan(vloss))
                snprintf(vs, sizeof(vs), " | val %.4f", vloss);
            log_info("step %6d/%d | loss %.4f | lr %.2e | grad %.3f | %.0f tok/s | mfu %.1f%% | "
                     "eta %s%s",
                     r.step, t->steps, loss, lr, gnorm, tps, 100 * mfu, eta_s, vs);
        }
        int stop = signals_pending();
        if (r.step == stop_step)
            stop = SIGUSR1; /* test hook: behave as if preempted here */
        stop = dist_allreduce_max_int(d, stop);
        int due = (c->run.ckpt_every && r.step % c->run.ckpt_every == 0) || r.step == t->steps;
        if (due || stop) {
            if ((rc = save_checkpoint(&r, err))) {
                log_error("%s", err);
                /* HDF5 may still hold a file it failed to flush (a full disk) and crash in its
                 * exit-time cleanup; the older checkpoints are safe, so leave without it */
                fflush(NULL);
                if (d->world > 1)
                    hw_exit(HW_EXIT_FAIL);
                _exit(HW_EXIT_FAIL);
            }
            if (tty && d->rank == 0)
                printf("\n");
            log_info("checkpoint: %s", r.last_ckpt);
        }
        if (stop) {
            log_info("stopped by signal %d at step %d after saving %s; exit code %d asks to be "
                     "requeued",
                     stop, r.step, r.last_ckpt, HW_EXIT_REQUEUE);
            exit_code = HW_EXIT_REQUEUE;
            break;
        }
    }
    if (tty && d->rank == 0)
        printf("\n");
    if (exit_code == HW_EXIT_OK || exit_code == HW_EXIT_REQUEUE) {
        char el[32];
        fmt_time(el, sizeof(el), log_now() - t_start);
        log_info("---- summary ----");
        if (r.step == start_step)
            log_info("nothing to do: the checkpoint is already at step %d of %d", r.step, t->steps);
        else
            log_info("steps %d..%d in %s | train loss %.4f -> %.4f%s", start_step + 1, r.step, el,
                     first_loss, last_loss, "");
        if (!isnan(last_val))
            log_info("val loss %.4f (best %.4f)", last_val, best_val);
        if (n_timed)
            log_info("throughput %.0f tok/s | mfu %.1f%% of the measured sgemm peak",
                     tok_s_sum / n_timed, 100 * mfu_sum / n_timed);
        log_info("run dir:    %s", c->run.dir);
        log_info("metrics:    %s", r.metrics_path);
        log_info("checkpoint: %s", r.last_ckpt[0] ? r.last_ckpt : "none");
    }
    teardown(&r);
    return exit_code;
}
