/* train/task_gpt.c -- the GPT side the language-model tasks share (see task_gpt.h). */
#define _POSIX_C_SOURCE 200809L
#include "task_gpt.h"

#include "../core/check.h"
#include "../core/fsutil.h"
#include "../core/log.h"
#include "../datasets/shards.h"
#include "../model/gpt_probe.h"
#include "trainer.h"

#include <glob.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int task_prefix_err(char *err, const char *key, int rc) {
    char tmp[HW_ERR_LEN];
    snprintf(tmp, sizeof(tmp), "%s", err);
    snprintf(err, HW_ERR_LEN, "%.32s: %.400s", key, tmp);
    return rc;
}

int train_load_tokenizer(const struct hw_config *c, struct bpe *tok, char *path_out, char *err) {
    char path[CFG_PATH_MAX + 32];
    if (c->data.tokenizer[0]) {
        snprintf(path, sizeof(path), "%s", c->data.tokenizer);
    } else if (!c->data.train[0] && c->data.sources.n) { /* beside the first source's shards */
        glob_t gl;
        int found = glob(c->data.sources.path[0], 0, NULL, &gl) == 0 && gl.gl_pathc > 0;
        fs_sibling(path, sizeof(path), found ? gl.gl_pathv[0] : c->data.sources.path[0],
                   "tokenizer.json");
        globfree(&gl);
    } else {
        fs_sibling(path, sizeof(path), c->data.train, "tokenizer.json");
    }
    if (path_out)
        snprintf(path_out, CFG_PATH_MAX + 32, "%s", path);
    return bpe_load(tok, path, err);
}

/* train.init_from as a checkpoint file: a run directory means its latest checkpoint */
static int init_from_file(const struct trainer *tr, char *out, char *err) {
    struct stat sb;
    const char *p = tr->c->train.init_from;
    if (stat(p, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        snprintf(out, CKPT_PATH_LEN, "%s", p);
        return 0;
    }
    int found = ckpt_latest(p, out, err);
    if (found == 0)
        return hw_errf(err, HW_EIO, "%s: no checkpoint in this run directory", p);
    return found < 0 ? found : 0;
}

/* Fine-tuning: the tokenizer stored in train.init_from. */
static int init_tokenizer(struct trainer *tr, struct bpe *tok, char *err) {
    struct ckpt_file f;
    struct ckpt_meta meta;
    char file[CKPT_PATH_LEN];
    memset(&f, 0, sizeof(f));
    memset(&meta, 0, sizeof(meta));
    int rc = init_from_file(tr, file, err);
    if (!rc)
        rc = ckpt_open(&f, tr->d, file, err);
    if (!rc)
        rc = ckpt_read_meta(&f, &meta, err);
    if (!rc)
        rc = bpe_from_json(tok, meta.tokenizer_json, strlen(meta.tokenizer_json),
                           tr->c->train.init_from, err);
    ckpt_meta_free(&meta);
    ckpt_close(&f);
    return rc;
}

static char g_tok_path[CFG_PATH_MAX + 32]; /* the tokenizer's path, for messages */

int gpt_task_tokenizer(struct trainer *tr, int explicit_tok, char *err) {
    const struct hw_config *c = tr->c;
    struct gpt_task *g = gpt_task_of(tr);
    int rc;
    bpe_init(&g->tok);
    if (c->train.init_from[0]) { /* fine-tuning: the checkpoint's tokenizer */
        snprintf(g_tok_path, sizeof(g_tok_path), "%.500s", c->train.init_from);
        if ((rc = init_tokenizer(tr, &g->tok, err)))
            return task_prefix_err(err, "train.init_from", rc);
    } else if (explicit_tok && !c->data.tokenizer[0]) {
        return hw_errf(err, HW_ECONFIG,
                       "%s: error: data.tokenizer: required for train.task %s without "
                       "train.init_from",
                       c->source, c->train.task);
    } else if ((rc = train_load_tokenizer(c, &g->tok, g_tok_path, err))) {
        return task_prefix_err(err, c->data.tokenizer[0] ? "data.tokenizer" : "tokenizer", rc);
    }
    g->tok_v0 = bpe_vocab_size(&g->tok);
    return 0;
}

/* Fine-tuning: every parameter but a new classifier head from train.init_from (shapes must
 * match: the model section has to describe the checkpoint's model). */
static int init_weights(struct trainer *tr, char *err) {
    struct gpt_task *g = gpt_task_of(tr);
    const struct gpt *m = &g->model;
    const struct param_set *ps = &tr->ps;
    struct ckpt_file f;
    memset(&f, 0, sizeof(f));
    float *host = HW_MALLOC(sizeof(float) * (ps->numel ? ps->numel : 1));
    ps->be->download(host, ps->w, sizeof(float) * ps->numel);
    char file[CKPT_PATH_LEN];
    int rc = init_from_file(tr, file, err);
    if (!rc)
        rc = ckpt_open(&f, tr->d, file, err);
    struct ckpt_tensor *tv = HW_CALLOC((size_t)ps->n, sizeof(*tv));
    trainer_tensor_views(tr, host, tv);
    int n_new_router = 0;
    for (int i = 0; i < ps->n && !rc; i++) {
        int nd;
        int64_t shape[CKPT_MAX_DIMS];
        if (!strcmp(ps->p[i].name, "cls_head.weight") &&
            ckpt_tensor_shape(&f, "model", "cls_head.weight", &nd, shape, err) == 0)
            continue; /* a new head starts from its init */
        if (strstr(ps->p[i].name, ".attn.moh_") &&
            ckpt_tensor_shape(&f, "model", ps->p[i].name, &nd, shape, err) == 0) {
            n_new_router++; /* a dense layer turned MoH: its router starts from its init */
            continue;
        }
        const int vocab_rows =
            !strcmp(ps->p[i].name, "tok_emb.weight") || !strcmp(ps->p[i].name, "lm_head.weight");
        if (vocab_rows && ckpt_tensor_shape(&f, "model", ps->p[i].name, &nd, shape, err) == 1 &&
            nd == 2 && shape[0] <= tv[i].shape[0] && shape[0] >= g->tok_v0 &&
            bpe_vocab_size(&g->tok) > g->tok_v0) {
            /* added tokens: the stored rows are kept bit for bit, new rows start at the mean
             * of the old tokenizer's rows */
            const int64_t v0 = shape[0], v1 = tv[i].shape[0];
            tv[i].shape[0] = tv[i].count[0] = v0;
            rc = ckpt_read_tensor(&f, "model", &tv[i], err);
            tv[i].shape[0] = tv[i].count[0] = v1;
            int64_t *rows = HW_MALLOC(sizeof(int64_t) * (size_t)(v1 - g->tok_v0));
            int nr = 0;
            for (int64_t v = g->tok_v0; v < v1; v++)
                if (v >= v0 || v < bpe_vocab_size(&g->tok))
                    rows[nr++] = v;
            if (!rc)
                gpt_rows_set_mean(tv[i].data, (int)m->c.C, g->tok_v0, rows, nr);
            if (!rc && tr->d->rank == 0)
                log_info("%s: %lld -> %lld rows (%d set to the mean of the first %d)",
                         ps->p[i].name, (long long)v0, (long long)v1, nr, g->tok_v0);
            free(rows);
            continue;
        }
        rc = ckpt_read_tensor(&f, "model", &tv[i], err);
    }
    free(tv);
    ckpt_close(&f);
    if (dist_allreduce_max_int(tr->d, rc ? 1 : 0) && !rc)
        rc = hw_errf(err, HW_EIO, "train.init_from failed on another rank");
    if (rc == HW_EMISMATCH)
        rc = HW_ECONFIG; /* the config's model does not describe the checkpoint */
    if (!rc) {
        ps->be->upload(ps->w, host, sizeof(float) * ps->numel);
        log_info("initialised from %s", tr->c->train.init_from);
        if (n_new_router && tr->d->rank == 0)
            log_info("init_from: %d MoH router tensors are not in the checkpoint (dense layers "
                     "turned MoH): they start from their init",
                     n_new_router);
    }
    free(host);
    return rc;
}

/* Cut the model's gradient blocks into buckets of dist.bucket_kb (0: one bucket a block), in the
 * order the backward pushes them. */
static void plan_buckets(struct trainer *tr) {
    struct gpt_task *g = gpt_task_of(tr);
    const struct gpt *m = &g->model;
    const size_t cap = (size_t)tr->c->dist.bucket_kb * 256; /* floats */
    int n = 0;
    for (int k = 0; k < m->n_blocks; k++)
        n += cap ? (int)((m->block_len[k] + cap - 1) / cap) : 1;
    g->bk_off = HW_MALLOC(sizeof(size_t) * (size_t)n);
    g->bk_len = HW_MALLOC(sizeof(size_t) * (size_t)n);
    g->blk_first = HW_MALLOC(sizeof(int) * (size_t)m->n_blocks);
    g->blk_count = HW_MALLOC(sizeof(int) * (size_t)m->n_blocks);
    g->n_buckets = 0;
    for (int k = 0; k < m->n_blocks; k++) {
        const size_t len = m->block_len[k], step = cap ? cap : len;
        g->blk_first[k] = g->n_buckets;
        for (size_t off = 0; off < len; off += step) {
            g->bk_off[g->n_buckets] = m->block_off[k] + off;
            g->bk_len[g->n_buckets++] = len - off < step ? len - off : step;
        }
        g->blk_count[k] = g->n_buckets - g->blk_first[k];
    }
}

int gpt_task_model(struct trainer *tr, int n_cls, int shard_vocab, char *err) {
    const struct hw_config *c = tr->c;
    struct gpt_task *g = gpt_task_of(tr);
    int vocab = bpe_vocab_size(&g->tok), rc;
    if (c->model.vocab && c->model.vocab < vocab)
        return hw_errf(err, HW_ECONFIG,
                       "%s: error: model.vocab: %d is smaller than the tokenizer's %d tokens (%s)",
                       c->source, c->model.vocab, vocab, g_tok_path);
    if (c->model.vocab)
        vocab = c->model.vocab;
    tr->tok_json = bpe_to_json(&g->tok);
    if (shard_vocab > vocab)
        return hw_errf(err, HW_EMISMATCH,
                       "%s: shard vocabulary %d does not fit the model's %d (tokenizer %s)",
                       c->data.train, shard_vocab, vocab, g_tok_path);
    struct gpt_config gc;
    gpt_config_from_cfg(&gc, &c->model, vocab);
    gc.n_cls = n_cls;
    gpt_config_signature(&gc, tr->sig, sizeof(tr->sig));
    if ((rc = gpt_build(&g->model, &gc, tr->be, tr->d, err))) {
        char why[HW_ERR_LEN];
        snprintf(why, sizeof(why), "%s", err);
        return cfg_key_error(c, "run.backend", why, err);
    }
    gpt_init_weights(&g->model, (uint64_t)c->train.seed);
    tr->ps = gpt_param_set(&g->model);
    if (c->train.init_from[0] && (rc = init_weights(tr, err)))
        return rc;
    g->A = c->train.grad_accum;
    g->Bl = c->train.micro_batch / tr->d->dp;
    g->Tl = c->train.seq_len / tr->d->cp;
    g->model.recompute = !strcmp(c->train.recompute, "block")       ? GPT_RECOMPUTE_BLOCK
                         : !strcmp(c->train.recompute, "attention") ? GPT_RECOMPUTE_ATTENTION
                                                                    : GPT_RECOMPUTE_NONE;
    gpt_alloc_acts(&g->model, g->Bl, g->Tl);
    plan_buckets(tr);
    const size_t bt = (size_t)c->train.micro_batch * c->train.seq_len;
    g->g_tokens = HW_MALLOC(sizeof(int32_t) * bt);
    g->g_targets = HW_MALLOC(sizeof(int32_t) * bt);
    g->tokens = HW_MALLOC(sizeof(int32_t) * bt * g->A);
    g->targets = HW_MALLOC(sizeof(int32_t) * bt * g->A);
    tr->tokens_per_step = (int64_t)c->train.micro_batch * c->train.seq_len * g->A;
    tr->flops_per_token = gpt_flops_per_token(&g->model.c, c->train.seq_len);
    tr->unit = "tok";
    return 0;
}

void gpt_task_free(struct gpt_task *g) {
    bpe_free(&g->tok);
    gpt_free(&g->model);
    free(g->g_tokens);
    free(g->g_targets);
    free(g->tokens);
    free(g->targets);
    free(g->bk_off);
    free(g->bk_len);
    free(g->blk_first);
    free(g->blk_count);
}

void gpt_task_begin_step(struct trainer *tr) {
    struct gpt_task *g = gpt_task_of(tr);
    gpt_stats_reset(&g->model);
    g->model.aux_scale = 1.0f / (float)g->A;
    g->aux_sum = 0.0;
}

int gpt_task_micro_batches(const struct trainer *tr) {
    return gpt_task_of(tr)->A;
}

/* The optimizer covers the whole block, or under ZeRO-1 the chunks of the buckets this rank
 * owns (it reduces and updates them; the others are gathered after the update). */
int gpt_task_optim_segments(struct trainer *tr, struct optim_seg **seg) {
    struct gpt_task *g = gpt_task_of(tr);
    *seg = HW_CALLOC((size_t)g->n_buckets + 1, sizeof(**seg));
    int n = 0;
    if (tr->zero) {
        for (int b = 0; b < g->n_buckets; b++) {
            size_t lo, hi;
            dist_owned_chunk(tr->d, g->bk_len[b], &lo, &hi);
            if (hi > lo)
                (*seg)[n++] = (struct optim_seg){.off = g->bk_off[b] + lo, .len = hi - lo};
        }
    } else {
        (*seg)[n++] = (struct optim_seg){.off = 0, .len = tr->ps.numel};
    }
    return n;
}

static void push_grads(void *ctx, int k) {
    struct trainer *tr = ctx;
    struct gpt_task *g = gpt_task_of(tr);
    for (int b = g->blk_first[k]; b < g->blk_first[k] + g->blk_count[k]; b++)
        dist_grad_push(tr->d, g->model.grad_mem + g->bk_off[b], g->bk_len[b]);
}

void gpt_task_backward(struct trainer *tr, int a, int classify) {
    struct gpt_task *g = gpt_task_of(tr);
    struct dist *d = tr->d;
    g->aux_sum += g->model.aux_loss;
    /* the data-parallel all-reduce overlaps the last micro-step's backward */
    g->model.grad_ready = a + 1 == g->A && d->dp * d->cp > 1 ? push_grads : NULL;
    dist_grad_set_reduce_scatter(d, tr->zero);
    g->model.grad_ready_ctx = tr;
    if (classify)
        gpt_backward_classify(&g->model);
    else
        gpt_backward(&g->model);
    if (g->model.grad_ready)
        dist_grad_finish(d);
    g->model.seg = NULL;
}

double gpt_task_finish(struct trainer *tr, double loss_sum, double den) {
    dist_allreduce_group_doubles(tr->d, DIST_DPCP, &loss_sum, 1);
    return loss_sum / den;
}

/* Global gradient norm: split tensors count on every head rank, replicated ones once; under
 * ZeRO-1 each data x context rank holds the reduced gradient of its own chunks only. */
double gpt_task_grad_norm(struct trainer *tr) {
    double ss = optim_grad_sumsq(&tr->opt, &tr->ps, tr->d->hp_rank);
    if (tr->zero)
        dist_allreduce_group_doubles(tr->d, DIST_DPCP, &ss, 1);
    dist_allreduce_group_doubles(tr->d, DIST_HP, &ss, 1);
    return sqrt(ss);
}

/* ZeRO-1: every rank updated its own chunks; gather the full parameters (backend memory) or
 * moments (host copies, for a checkpoint). */
static void gather_buckets(struct trainer *tr, float *base, int host) {
    struct gpt_task *g = gpt_task_of(tr);
    for (int b = 0; b < g->n_buckets; b++)
        (host ? dist_allgather_f32_host : dist_allgather_f32)(tr->d, base + g->bk_off[b],
                                                              g->bk_len[b], DIST_KIND_ZERO_AG);
}

void gpt_task_after_update(struct trainer *tr) {
    if (tr->zero)
        gather_buckets(tr, gpt_task_of(tr)->model.param_mem, 0);
}

void gpt_task_gather_moments(struct trainer *tr, float *full_m, float *full_v) {
    if (!tr->zero)
        return;
    gather_buckets(tr, full_m, 1);
    gather_buckets(tr, full_v, 1);
}

int gpt_task_log_due(const struct trainer *tr, int val_due) {
    (void)tr;
    (void)val_due;
    return 1; /* a metrics line every step */
}

/* The balance term added to the loss, and per routed (MoH) layer the fraction of tokens that
 * used each head during the step. */
void gpt_task_metrics(struct trainer *tr, json_t *j, int phase) {
    struct gpt_task *g = gpt_task_of(tr);
    const struct gpt *m = &g->model;
    if (phase != TASK_METRICS_AFTER_VAL)
        return;
    int routed = 0;
    for (int l = 0; l < m->c.L; l++)
        routed |= gpt_head_usage(m, l) != NULL;
    if (!routed)
        return;
    json_object_set_new(j, "moh_balance", json_real((float)(g->aux_sum / g->A)));
    json_t *u = json_array(), *ls = json_array();
    for (int l = 0; l < m->c.L; l++) {
        const double *use = gpt_head_usage(m, l);
        if (!use)
            continue;
        json_t *row = json_array();
        for (int h = 0; h < m->c.H; h++)
            json_array_append_new(
                row,
                json_real(round(use[h] / (m->stat_tokens > 0 ? m->stat_tokens : 1) * 1e4) / 1e4));
        json_array_append_new(u, row);
        json_array_append_new(ls, json_integer(l));
    }
    json_object_set_new(j, "moh_usage", u);
    json_object_set_new(j, "moh_layers", ls);
}

int gpt_task_next_windows(struct trainer *tr, struct loader *l, int32_t *tok, int32_t *tgt,
                          char *err) {
    struct gpt_task *g = gpt_task_of(tr);
    int rc = loader_next(l, g->g_tokens, g->g_targets, tr->c->train.micro_batch, err);
    if (!rc)
        gpt_task_slice_windows(tr, tok, tgt);
    return rc;
}

void gpt_task_slice_windows(struct trainer *tr, int32_t *tok, int32_t *tgt) {
    struct gpt_task *g = gpt_task_of(tr);
    const int T = tr->c->train.seq_len;
    const int32_t *pos = g->model.pos_host;
    for (int b = 0; b < g->Bl; b++) {
        const size_t src = (size_t)(tr->d->dp_rank * g->Bl + b) * T;
        for (int t = 0; t < g->Tl; t++) {
            tok[(size_t)b * g->Tl + t] = g->g_tokens[src + pos[t]];
            tgt[(size_t)b * g->Tl + t] = g->g_targets[src + pos[t]];
        }
    }
}
