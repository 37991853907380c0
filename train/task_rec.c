/* train/task_rec.c -- the rec model's training task (model.family rec) for the loop of
 * trainer.c, and `headwise eval --tasks rec` (see task_rec.h). Data parallel over all ranks:
 * every rank loads the same samples and takes its slice of each global batch; the embedding
 * tables are split by rows (model/rec.h), the dense gradients are summed with the ring
 * all-reduce, the explicit L2 term is added after it. The best-validation parameters are kept
 * and scored on the test split at the end. */
#define _POSIX_C_SOURCE 200809L
#include "task_rec.h"
#include "task.h"

#include "../ckpt/ckpt.h"
#include "../core/check.h"
#include "../core/fsutil.h"
#include "../core/log.h"
#include "../core/rng.h"
#include "../datasets/rec_data.h"
#include "../dist/emb_shard.h"
#include "../eval/rec_metrics.h"
#include "../model/rec.h"
#include "../ops/ops.h"
#include "../ops/rec_ops.h"
#include "optim.h"
#include "signals.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The task's state (training), or an evaluation's. */
struct rjob {
    const struct hw_config *c;
    struct dist *d;
    struct rec_data data;
    struct rec_model m;
    char sig[256];
    char *cfg_yaml; /* not owned in training (the trainer's) */
    char last_ckpt[CKPT_PATH_LEN];
    int step, steps, spe; /* step, total steps, steps per epoch */
    int B;                /* global batch */
    /* batch buffers (local slice) */
    int32_t *item, *cat, *hitem, *hcat;
    float *label;
    int *idx, *perm, perm_epoch;
    double gc_ratio, gc_neg; /* mean gradient observation over the logged steps; < 0: none */
    /* training: the step's batch and forward, the loss parts since the last metrics line, the
     * gradient observation, the best validation parameters */
    struct rec_batch bt;
    struct rec_out out;
    double ctr_sum, aux_sum;
    int n_sum, gc_ok;
    double gc_step[2], gc_sum[3]; /* this step's ratio and conflict; sums and count */
    float *best;
    double *best_stats, best_auc;
    int best_step, best_init;
    float *stat_buf; /* BatchNorm statistics as fp32 checkpoint tensors */
    double t_start;
};

/* ------------------------------------------------------------------------------------------ */
/* checkpoints: parameters, BatchNorm running statistics, AdamW moments */

#define N_STATS 4
static const char *const stat_names[N_STATS] = {"mlp.bn.running_mean", "mlp.bn.running_var",
                                                "aux.bn.running_mean", "aux.bn.running_var"};

static int n_stats(const struct rec_model *m) {
    return m->c.aux ? 4 : 2;
}

static void stat_views(const struct rjob *j, float *buf, struct ckpt_tensor *t) {
    const int F = (int)j->m.params[j->m.mlp[0]].gshape[0];
    for (int i = 0; i < n_stats(&j->m); i++) {
        memset(&t[i], 0, sizeof(t[i]));
        t[i].name = stat_names[i];
        t[i].ndim = 1;
        t[i].shape[0] = t[i].count[0] = F;
        t[i].write = j->d->rank == 0;
        t[i].data = buf + (size_t)i * F;
    }
}

/* Parameters and BatchNorm statistics from an open checkpoint (evaluation); rank-local reads,
 * the caller agrees across ranks. */
static int read_state(struct rjob *j, struct ckpt_file *f, char *err) {
    struct rec_model *m = &j->m;
    const int F = (int)m->params[m->mlp[0]].gshape[0], ns = n_stats(m);
    struct ckpt_tensor *tv = HW_CALLOC((size_t)m->n_params + ns, sizeof(*tv));
    float *st = HW_MALLOC(sizeof(float) * (size_t)ns * F);
    float *w = HW_MALLOC(sizeof(float) * m->num_params);
    struct trainer view = {.c = j->c, .d = j->d, .ps = rec_param_set(m)};
    int rc = 0;
    trainer_tensor_views(&view, w, tv);
    for (int i = 0; i < m->n_params && !rc; i++)
        rc = ckpt_read_tensor(f, "model", &tv[i], err);
    if (!rc)
        m->ops->upload(m->param_mem, w, sizeof(float) * m->num_params);
    free(w);
    stat_views(j, st, tv);
    for (int i = 0; i < ns && !rc; i++)
        rc = ckpt_read_tensor(f, "model", &tv[i], err);
    if (!rc)
        for (size_t i = 0; i < (size_t)ns * F; i++)
            m->stats[i] = st[i];
    free(tv);
    free(st);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* batches and evaluation */

/* This rank's slice [lo, hi) of a global batch of n samples. */
static void slice(const struct rjob *j, int n, int *lo, int *hi) {
    int p = j->d->world, r = j->d->rank;
    *lo = (int)((int64_t)n * r / p);
    *hi = (int)((int64_t)n * (r + 1) / p);
}

static void fill(struct rjob *j, int split, const int *idx, int n, struct rec_batch *bt) {
    rec_data_fill(&j->data, split, idx, n, j->m.c.L, j->item, j->cat, j->hitem, j->hcat, j->label);
    bt->B = n;
    bt->item = j->item;
    bt->cat = j->cat;
    bt->hitem = j->hitem;
    bt->hcat = j->hcat;
    bt->label = j->label;
}

struct scores {
    double auc, auc_calc, gauc, logloss, gsu_us, score_us;
    int n;
};

/* Click probabilities of every sample of a split (eval mode), then the metrics (every rank
 * gets them). */
static struct scores evaluate(struct rjob *j, int split) {
    const struct rec_split *sp = &j->data.split[split];
    const int n = sp->n, B = j->B;
    double *prob = HW_CALLOC((size_t)n, sizeof(double));
    double *pl = HW_MALLOC(sizeof(double) * (size_t)B);
    double g0 = j->m.gsu_seconds, s0 = j->m.score_seconds;
    for (int s = 0; s < n; s += B) {
        int nb = n - s < B ? n - s : B, lo, hi;
        slice(j, nb, &lo, &hi);
        for (int i = lo; i < hi; i++)
            j->idx[i - lo] = s + i;
        struct rec_batch bt;
        fill(j, split, j->idx, hi - lo, &bt);
        rec_forward(&j->m, &bt, 0, 1.0, pl);
        for (int i = lo; i < hi; i++)
            prob[s + i] = pl[i - lo];
    }
    double gsu = j->m.gsu_seconds - g0, sc = j->m.score_seconds - s0;
    if (j->d->world > 1) {
        dist_allreduce_group_doubles(j->d, DIST_DP, prob, n);
        gsu = dist_allreduce_sum_double(j->d, gsu);
        sc = dist_allreduce_sum_double(j->d, sc);
    }
    int *grp = HW_MALLOC(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++)
        grp[i] = j->data.item_cat[sp->item[i]];
    struct scores r = {
        .auc = rec_auc(prob, sp->label, n),
        .auc_calc = rec_auc_calc(prob, sp->label, n),
        .gauc = rec_gauc(prob, sp->label, grp, n),
        .logloss = rec_logloss(prob, sp->label, n),
        .gsu_us = gsu / n * 1e6,
        .score_us = sc / n * 1e6,
        .n = n,
    };
    free(grp);
    free(prob);
    free(pl);
    return r;
}

static json_t *scores_json(const struct scores *s) {
    return json_pack("{s:f,s:f,s:f,s:f,s:i,s:f,s:f}", "auc", s->auc, "gauc", s->gauc, "logloss",
                     s->logloss, "auc_calc_ref", s->auc_calc, "samples", s->n, "gsu_us_per_sample",
                     s->gsu_us, "gsu_score_us_per_sample", s->score_us);
}

static int write_results(struct rjob *j, const char *dir, const char *name,
                         const struct scores *val, const struct scores *test, int best_step,
                         double seconds, char *err) {
    if (j->d->rank != 0)
        return 0;
    char path[2 * CKPT_PATH_LEN + 600];
    int rc = fs_mkdirs(dir, err);
    if (rc)
        return rc;
    json_t *res =
        json_pack("{s:o,s:o}", "rec_val", scores_json(val), "rec_test", scores_json(test));
    const struct rec_data *dd = &j->data;
    json_t *info = json_pack(
        "{s:s,s:s,s:i,s:i,s:i,s:i,s:i,s:i,s:I,s:I,s:I,s:I,s:I,s:i,s:f}", "data", j->c->rec.data,
        "embedding", j->c->model.embedding, "users", dd->n_users, "items", dd->n_item - 1,
        "categories", dd->n_cat - 1, "train_samples", dd->split[REC_TRAIN].n, "val_samples",
        dd->split[REC_VAL].n, "test_samples", dd->split[REC_TEST].n, "rows", (json_int_t)dd->rows,
        "skipped_rows", (json_int_t)dd->skipped_rows, "cat_conflicts",
        (json_int_t)dd->cat_conflicts, "users_dropped", (json_int_t)dd->users_dropped,
        "targets_short", (json_int_t)dd->targets_short, "best_val_step", best_step, "train_seconds",
        seconds);
    if (j->gc_ratio >= 0) {
        json_object_set_new(info, "grad_repr_attn_ratio", json_real(j->gc_ratio));
        json_object_set_new(info, "grad_conflict_frac", json_real(j->gc_neg));
    }
    json_t *doc = json_pack("{s:o,s:o,s:{s:s,s:I},s:s,s:s}", "results", res, "task_info", info,
                            "checkpoint", "path", j->last_ckpt, "step", (json_int_t)j->step,
                            "model_sig", j->sig, "config", j->cfg_yaml);
    snprintf(path, sizeof(path), "%s/results_%s.json", dir, name);
    char *s = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    rc = fs_write_atomic(path, s, strlen(s), err);
    free(s);
    json_decref(doc);
    if (!rc) {
        printf("| split | auc      | gauc     | logloss  | auc (calc_auc) | samples |\n");
        printf("| val   | %.6f | %.6f | %.6f | %.6f       | %7d |\n", val->auc, val->gauc,
               val->logloss, val->auc_calc, val->n);
        printf("| test  | %.6f | %.6f | %.6f | %.6f       | %7d |\n", test->auc, test->gauc,
               test->logloss, test->auc_calc, test->n);
        printf("results: %s\n", path);
        fflush(stdout);
    }
    return rc;
}

/* ------------------------------------------------------------------------------------------ */

static void epoch_perm(struct rjob *j, int epoch) {
    if (j->perm_epoch == epoch)
        return;
    const int n = j->data.split[REC_TRAIN].n;
    uint64_t key = rng_hash2((uint64_t)j->c->train.seed, 0xe90c + (uint64_t)epoch);
    for (int i = 0; i < n; i++)
        j->perm[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int k = (int)(rng_uniform(key, (uint64_t)i) * (i + 1));
        int t = j->perm[i];
        j->perm[i] = j->perm[k];
        j->perm[k] = t;
    }
    j->perm_epoch = epoch;
}

static double grad_norm(struct rjob *j) {
    const struct rec_model *m = &j->m;
    /* sums of squares where the gradients live (rec_ops.h l2 without a gradient update) */
    const struct rec_ops *k = m->ops->rec;
    double dense = k->l2(m->n_dense, m->grad_mem, NULL, 0.0, 0.0);
    double tab = k->l2(m->num_params - m->n_dense, m->grad_mem + m->n_dense, NULL, 0.0, 0.0);
    if (j->d->world > 1)
        tab = dist_allreduce_sum_double(j->d, tab);
    return sqrt(dense + tab);
}

/* The gradient observation of the paper (§4.2.1; the reference's -observe_attn_repr_grad):
 * over the item rows of this step's batch, the norm ratio of the representation role's
 * gradient to the attention role's, and the fraction of rows whose two gradients point apart
 * (cosine < 0). Meaningful for TWIN, where both roles update the same vectors; with DARE the
 * two live in different tables (the ratio still shows which role dominates). One rank only
 * (per-rank partial sums of a row are not its gradient); needs equal item dims. */
static int grad_conflict(struct rjob *j, double *ratio, double *neg_frac) {
    const struct rec_model *m = &j->m;
    if (j->d->world > 1 || !m->obs[0] || !m->obs[1] || m->c.adim[0] != m->c.dim[0])
        return 0;
    const int dim = m->obs_dim;
    double rr_all = 0, aa_all = 0, rows = 0, neg = 0;
    for (int r = 0; r < m->obs_rows; r++) {
        const double *x = m->obs[0] + (size_t)r * dim, *y = m->obs[1] + (size_t)r * dim;
        double rr = 0, aa = 0, ra = 0;
        for (int k = 0; k < dim; k++) {
            rr += x[k] * x[k];
            aa += y[k] * y[k];
            ra += x[k] * y[k];
        }
        if (rr == 0 || aa == 0)
            continue;
        rr_all += rr;
        aa_all += aa;
        rows += 1;
        neg += ra < 0;
    }
    if (rows == 0)
        return 0;
    *ratio = sqrt(rr_all / aa_all);
    *neg_frac = neg / rows;
    return 1;
}

static void free_job(struct rjob *j, int own_yaml) {
    rec_free(&j->m);
    rec_data_free(&j->data);
    if (own_yaml)
        free(j->cfg_yaml);
    free(j->best);
    free(j->best_stats);
    free(j->stat_buf);
    free(j->item);
    free(j->cat);
    free(j->hitem);
    free(j->hcat);
    free(j->label);
    free(j->idx);
    free(j->perm);
}

/* Data and model (weights from the seed) for j->c on backend be; with tr (training) the data
 * loading answers a stop signal (trainer_load_begin). */
static int prepare(struct rjob *j, const struct ops *be, struct trainer *tr, char *err) {
    const struct hw_config *c = j->c;
    const enum ops_cap caps[2] = {OPS_CAP_REC, OPS_CAP_F64};
    int rc = ops_require(be, caps, 2, "model.family rec", err);
    if (rc)
        return rc;
    double t_load = log_now();
    if (tr)
        trainer_load_begin(tr);
    rc = rec_data_load(&j->data, &c->rec, (uint64_t)c->train.seed, err);
    if (tr)
        rc = trainer_load_end(tr, rc, err);
    if (rc)
        return rc;
    const struct rec_data *dd = &j->data;
    log_info("rec data %s: %d users, %d items, %d categories; samples train %d / val %d / test "
             "%d (%.2fs)",
             c->rec.data, dd->n_users, dd->n_item - 1, dd->n_cat - 1, dd->split[REC_TRAIN].n,
             dd->split[REC_VAL].n, dd->split[REC_TEST].n, log_now() - t_load);
    log_info("left out: %ld non-pv rows, %ld category conflicts (first kept), %ld users with < 3 "
             "interactions, %ld targets with < %d behaviours before them",
             dd->skipped_rows, dd->cat_conflicts, dd->users_dropped, dd->targets_short,
             c->rec.min_hist);
    struct rec_config rc_;
    rec_config_from_cfg(&rc_, &c->model, &c->rec, dd->n_item, dd->n_cat);
    rec_signature(&rc_, j->sig, sizeof(j->sig));
    /* the largest shard any rank will hold: rows split over the ranks, 4 floats per value
     * (parameter, gradient, two AdamW moments) */
    const int64_t rows[3] = {rc_.n_item, rc_.n_cat, rc_.L + 1};
    double shard = 0;
    for (int k = 0; k < 3; k++) {
        int64_t lo, hi;
        emb_shard_range(rows[k], j->d->world, 0, &lo, &hi);
        shard += (double)(hi - lo) * (rc_.dim[k] + (rc_.emb == REC_EMB_DARE ? rc_.adim[k] : 0));
    }
    shard *= 4.0 * sizeof(float) / (1024.0 * 1024.0);
    if (c->rec.table_budget_mb > 0 && shard > c->rec.table_budget_mb) {
        char where[CFG_PATH_MAX + 32];
        cfg_where(c, "rec.table_budget_mb", where, sizeof(where));
        return hw_errf(err, HW_ECONFIG,
                       "%s: error: rec.table_budget_mb: the tables need %.3f MiB per rank on %d "
                       "rank(s) (rows split by rank), over the budget of %g MiB; run on more ranks",
                       where, shard, j->d->world, c->rec.table_budget_mb);
    }
    log_info("embedding tables: %.3f MiB per rank with gradients and moments (%d rank(s))", shard,
             j->d->world);
    rec_init(&j->m, &rc_, be, j->d->world > 1 ? j->d : NULL);
    rec_init_weights(&j->m, (uint64_t)c->train.seed);
    j->B = c->train.micro_batch;
    const int L = j->m.c.L, Bl = j->B / j->d->world + 1;
    j->item = HW_MALLOC(sizeof(int32_t) * (size_t)Bl);
    j->cat = HW_MALLOC(sizeof(int32_t) * (size_t)Bl);
    j->hitem = HW_MALLOC(sizeof(int32_t) * (size_t)Bl * L);
    j->hcat = HW_MALLOC(sizeof(int32_t) * (size_t)Bl * L);
    j->label = HW_MALLOC(sizeof(float) * (size_t)Bl);
    j->idx = HW_MALLOC(sizeof(int) * (size_t)Bl);
    j->perm = HW_MALLOC(sizeof(int) * (size_t)(dd->split[REC_TRAIN].n + 1));
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* the training task */

static struct rjob *J(const struct trainer *tr) {
    return tr->ts;
}

static int setup(struct trainer *tr, char *err) {
    const struct hw_config *c = tr->c;
    struct rjob *j = HW_CALLOC(1, sizeof(*j));
    tr->ts = j;
    j->c = c;
    j->d = tr->d;
    j->perm_epoch = -1;
    j->gc_ratio = j->gc_neg = -1;
    int rc = prepare(j, tr->be, tr, err);
    if (rc)
        return rc;
    const struct rec_data *dd = &j->data;
    j->spe = dd->split[REC_TRAIN].n / j->B;
    if (j->spe < 1)
        return hw_errf(err, HW_ECONFIG, "%s: train.micro_batch %d exceeds the %d training samples",
                       c->source, j->B, dd->split[REC_TRAIN].n);
    j->steps = c->rec.epochs ? c->rec.epochs * j->spe : c->train.steps;
    tr->steps = j->steps;
    tr->tokens_per_step = j->B;
    tr->unit = "samples";
    tr->ps = rec_param_set(&j->m);
    snprintf(tr->sig, sizeof(tr->sig), "%s", j->sig);
    double n_global = 0;
    for (int i = 0; i < j->m.n_params; i++)
        n_global += (double)j->m.params[i].gshape[0] * j->m.params[i].gshape[1];
    log_info("rec: %.3fM params (%.3fM dense) | %d steps = %d epoch(s) x %d steps of %d samples; "
             "tables split by rows over %d rank(s): %.3fM floats here",
             n_global / 1e6, j->m.n_dense / 1e6, j->steps, c->rec.epochs, j->spe, j->B,
             tr->d->world, (double)(j->m.num_params - j->m.n_dense) / 1e6);
    const int F = (int)j->m.params[j->m.mlp[0]].gshape[0];
    j->best = HW_MALLOC(sizeof(float) * j->m.num_params);
    j->best_stats = HW_MALLOC(sizeof(double) * 4 * (size_t)F);
    j->stat_buf = HW_MALLOC(sizeof(float) * 4 * (size_t)F);
    j->best_auc = -1;
    j->t_start = log_now();
    return 0;
}

static void teardown(struct trainer *tr) {
    struct rjob *j = J(tr);
    if (!j)
        return;
    free_job(j, 0);
    free(j);
    tr->ts = NULL;
}

static int micro_batches(const struct trainer *tr) {
    (void)tr;
    return 1;
}

/* The step's slice of the global batch in the epoch's seeded order. */
static int next(struct trainer *tr, int a, char *err) {
    struct rjob *j = J(tr);
    (void)a;
    (void)err;
    j->step = tr->step;
    if (!j->best_init) { /* the starting point (after a resume) is the first best */
        tr->ps.be->download(j->best, j->m.param_mem, sizeof(float) * j->m.num_params);
        const int F = (int)j->m.params[j->m.mlp[0]].gshape[0];
        memcpy(j->best_stats, j->m.stats, sizeof(double) * 4 * (size_t)F);
        j->best_step = j->step;
        j->best_init = 1;
    }
    int epoch = j->step / j->spe, s0 = (j->step % j->spe) * j->B, lo, hi;
    epoch_perm(j, epoch);
    slice(j, j->B, &lo, &hi);
    for (int i = lo; i < hi; i++)
        j->idx[i - lo] = j->perm[s0 + i];
    fill(j, REC_TRAIN, j->idx, hi - lo, &j->bt);
    j->m.observe = tr->d->world == 1 && (j->step + 1) % tr->c->train.log_every == 0;
    return 0;
}

static double denominator(struct trainer *tr) {
    (void)tr;
    return 1.0; /* the model scales its loss by 1 / the global batch */
}

static double forward_backward(struct trainer *tr, int a, float dscale) {
    struct rjob *j = J(tr);
    (void)a;
    (void)dscale;
    j->out = rec_forward(&j->m, &j->bt, 1, 1.0 / j->B, NULL);
    rec_backward(&j->m);
    return j->out.loss;
}

/* The dense gradients and the loss parts summed over the ranks, then the explicit L2 term. */
static double finish(struct trainer *tr, double loss_sum, double den) {
    struct rjob *j = J(tr);
    struct dist *d = tr->d;
    (void)den;
    double parts[3] = {loss_sum, j->out.ctr, j->out.aux};
    if (d->world > 1) {
        dist_allreduce_f32(d, DIST_DP, j->m.grad_mem, j->m.n_dense, DIST_KIND_DP_GRAD);
        dist_allreduce_group_doubles(d, DIST_DP, parts, 3);
    }
    double l2 = rec_l2(&j->m, 1), loss = parts[0] + l2;
    j->ctr_sum += parts[1];
    j->aux_sum += parts[2];
    j->n_sum++;
    j->gc_ok = (j->step + 1) % tr->c->train.log_every == 0 &&
               grad_conflict(j, &j->gc_step[0], &j->gc_step[1]);
    if (j->gc_ok) {
        j->gc_sum[0] += j->gc_step[0];
        j->gc_sum[1] += j->gc_step[1];
        j->gc_sum[2] += 1;
    }
    return loss;
}

static double task_grad_norm(struct trainer *tr) {
    return grad_norm(J(tr));
}

static int val_due(const struct trainer *tr) {
    const struct rjob *j = J(tr);
    const int v = tr->c->train.val_every;
    return (v && tr->step % v == 0) || tr->step % j->spe == 0 || tr->step == tr->steps;
}

static int log_due(const struct trainer *tr, int val_now) {
    return tr->step % tr->c->train.log_every == 0 || val_now;
}

/* ctr_loss and aux_loss: the means since the last line; the gradient observation */
static void metrics(struct trainer *tr, json_t *line, int phase) {
    struct rjob *j = J(tr);
    if (phase == TASK_METRICS_LOSS) {
        json_object_set_new(line, "ctr_loss", json_real(j->ctr_sum / j->n_sum));
        json_object_set_new(line, "aux_loss", json_real(j->aux_sum / j->n_sum));
    } else if (phase == TASK_METRICS_BEFORE_VAL && j->gc_ok) {
        json_object_set_new(line, "grad_repr_attn_ratio", json_real(j->gc_step[0]));
        json_object_set_new(line, "grad_conflict_frac", json_real(j->gc_step[1]));
    } else if (phase == TASK_METRICS_AFTER_VAL && log_due(tr, val_due(tr))) {
        j->ctr_sum = j->aux_sum = 0; /* the line is written: the next one averages anew */
        j->n_sum = 0;
    }
}

/* Validation AUC; the best parameters are kept for the final test. */
static double validate(struct trainer *tr, json_t *line, char *note, size_t n, char *err, int *rc) {
    struct rjob *j = J(tr);
    (void)err;
    *rc = 0;
    j->step = tr->step;
    struct scores v = evaluate(j, REC_VAL);
    json_object_set_new(line, "val_auc", json_real(v.auc));
    json_object_set_new(line, "val_gauc", json_real(v.gauc));
    json_object_set_new(line, "val_logloss", json_real(v.logloss));
    snprintf(note, n, "val auc %.5f gauc %.5f logloss %.5f", v.auc, v.gauc, v.logloss);
    if (v.auc > j->best_auc) {
        j->best_auc = v.auc;
        j->best_step = tr->step;
        tr->ps.be->download(j->best, j->m.param_mem, sizeof(float) * j->m.num_params);
        const int F = (int)j->m.params[j->m.mlp[0]].gshape[0];
        memcpy(j->best_stats, j->m.stats, sizeof(double) * 4 * (size_t)F);
    }
    return NAN;
}

/* The BatchNorm running statistics beside the parameters in the checkpoint. */
static int extra_tensors(struct trainer *tr, struct ckpt_tensor *t, int saving) {
    struct rjob *j = J(tr);
    const int F = (int)j->m.params[j->m.mlp[0]].gshape[0], ns = n_stats(&j->m);
    if (saving)
        for (size_t i = 0; i < (size_t)ns * F; i++)
            j->stat_buf[i] = (float)j->m.stats[i];
    stat_views(j, j->stat_buf, t);
    return ns;
}

static void extra_loaded(struct trainer *tr) {
    struct rjob *j = J(tr);
    const int F = (int)j->m.params[j->m.mlp[0]].gshape[0], ns = n_stats(&j->m);
    for (size_t i = 0; i < (size_t)ns * F; i++)
        j->m.stats[i] = j->stat_buf[i];
}

/* The reference tests the best-validation parameters: validation and test scores of them in
 * <run.dir>/eval/results_rec.json (or eval.output). */
static int final(struct trainer *tr, char *err) {
    struct rjob *j = J(tr);
    const struct hw_config *c = tr->c;
    const double secs = log_now() - j->t_start;
    if (j->best_auc >= 0) {
        const int F = (int)j->m.params[j->m.mlp[0]].gshape[0];
        tr->ps.be->upload(j->m.param_mem, j->best, sizeof(float) * j->m.num_params);
        memcpy(j->m.stats, j->best_stats, sizeof(double) * 4 * (size_t)F);
    }
    j->m.gsu_seconds = 0;
    j->gc_ratio = j->gc_sum[2] > 0 ? j->gc_sum[0] / j->gc_sum[2] : -1;
    j->gc_neg = j->gc_sum[2] > 0 ? j->gc_sum[1] / j->gc_sum[2] : -1;
    struct scores v = evaluate(j, REC_VAL), t = evaluate(j, REC_TEST);
    for (int rep = 0; rep < 2; rep++) { /* search timing: the best of three passes */
        struct scores t2 = evaluate(j, REC_TEST);
        t.gsu_us = fmin(t.gsu_us, t2.gsu_us);
        t.score_us = fmin(t.score_us, t2.score_us);
    }
    log_info("best validation step %d: val auc %.5f gauc %.5f | test auc %.5f gauc %.5f logloss "
             "%.5f | %.1fs",
             j->best_step, v.auc, v.gauc, t.auc, t.gauc, t.logloss, secs);
    char dir[CFG_PATH_MAX + 16];
    if (c->eval.output[0])
        snprintf(dir, sizeof(dir), "%s", c->eval.output);
    else
        snprintf(dir, sizeof(dir), "%s/eval", c->run.dir);
    j->step = tr->step;
    j->cfg_yaml = tr->cfg_yaml;
    snprintf(j->last_ckpt, sizeof(j->last_ckpt), "%s", tr->last_ckpt);
    return write_results(j, dir, "rec", &v, &t, j->best_step, secs, err);
}

const struct train_task task_rec = {
    .name = "rec",
    .setup = setup,
    .teardown = teardown,
    .micro_batches = micro_batches,
    .next = next,
    .denominator = denominator,
    .forward_backward = forward_backward,
    .finish = finish,
    .grad_norm = task_grad_norm,
    .log_due = log_due,
    .metrics_double = 1,
    .metrics = metrics,
    .val_due = val_due,
    .validate = validate,
    .extra_tensors = extra_tensors,
    .extra_loaded = extra_loaded,
    .final = final,
};

/* ------------------------------------------------------------------------------------------ */
/* headwise eval with eval.tasks [rec] */

static int eval_one(const struct hw_config *c, struct dist *d, const struct ops *be, const char *in,
                    char *err) {
    char path[CKPT_PATH_LEN];
    struct stat st;
    int rc = 0;
    if (!stat(in, &st) && S_ISDIR(st.st_mode)) {
        int found = ckpt_latest(in, path, err);
        if (found <= 0)
            return found < 0 ? found : hw_errf(err, HW_EIO, "%s: no checkpoint in directory", in);
    } else {
        snprintf(path, sizeof(path), "%s", in);
    }
    struct rjob j;
    memset(&j, 0, sizeof(j));
    j.gc_ratio = j.gc_neg = -1;
    j.d = d;
    struct hw_config mc;
    struct ckpt_file f;
    struct ckpt_meta meta;
    memset(&f, 0, sizeof(f));
    memset(&meta, 0, sizeof(meta));
    rc = ckpt_open(&f, d, path, err);
    if (!rc)
        rc = ckpt_read_meta(&f, &meta, err);
    if (!rc)
        rc = cfg_load_string(&mc, meta.config_yaml, path, 0, NULL, err);
    if (!rc && strcmp(mc.model.family, "rec"))
        rc = hw_errf(err, HW_ECONFIG,
                     "%s: not a rec checkpoint (model.family %s): the rec task scores "
                     "model.family rec only",
                     path, mc.model.family);
    if (!rc) {
        j.c = &mc;
        /* on the eval job's run.backend (the stored config's is ignored, as for the LM tasks) */
        rc = prepare(&j, be, NULL, err);
    }
    if (!rc && strcmp(meta.model_sig, j.sig))
        rc = hw_errf(err, HW_EMISMATCH, "%s: checkpoint model '%s' differs from its config's '%s'",
                     path, meta.model_sig, j.sig);
    if (!rc)
        rc = read_state(&j, &f, err);
    if (dist_allreduce_max_int(d, rc ? 1 : 0) && !rc)
        rc = hw_errf(err, HW_EIO, "%s: load failed on another rank (see its message)", path);
    if (!rc) {
        j.step = (int)meta.step;
        snprintf(j.last_ckpt, sizeof(j.last_ckpt), "%s", path);
        j.cfg_yaml = cfg_to_yaml(&mc);
        struct scores v = evaluate(&j, REC_VAL), t = evaluate(&j, REC_TEST);
        char dir[CKPT_PATH_LEN + 16], name[CKPT_PATH_LEN];
        if (c->eval.output[0]) {
            snprintf(dir, sizeof(dir), "%s", c->eval.output);
        } else {
            snprintf(dir, sizeof(dir), "%s", path);
            char *slash = strrchr(dir, '/');
            snprintf(slash ? slash : dir, sizeof(dir) - (size_t)(slash ? slash - dir : 0), "%s",
                     slash ? "/eval" : "eval");
        }
        const char *base = strrchr(path, '/');
        snprintf(name, sizeof(name), "%s", base ? base + 1 : path);
        char *dot = strrchr(name, '.');
        if (dot)
            *dot = '\0';
        rc = write_results(&j, dir, name, &v, &t, j.step, 0.0, err);
    }
    ckpt_meta_free(&meta);
    ckpt_close(&f);
    free_job(&j, 1);
    return rc;
}

int rec_eval_run(const struct hw_config *c, struct dist *d) {
    char err[HW_ERR_LEN];
    dist_grid_init(d, d->world, 1, 1, 0);
    ops_set_threads(dist_threads_per_rank(d));
    if (!c->eval.checkpoints.n) {
        if (d->rank == 0)
            fprintf(stderr, "%s: error: eval.checkpoints: empty\n", c->source);
        return HW_EXIT_CONFIG;
    }
    const char *why = NULL;
    const struct ops *be = ops_by_name(c->run.backend, &why);
    if (!be) {
        cfg_key_error(c, "run.backend", why ? why : "unknown backend", err);
        if (d->rank == 0)
            log_error("%s", err);
        return HW_EXIT_CONFIG;
    }
    char device[96];
    dist_select_device(d, be, device, sizeof(device));
    for (int i = 0; i < c->eval.checkpoints.n; i++) {
        int rc = eval_one(c, d, be, c->eval.checkpoints.item[i], err);
        if (rc) {
            log_error("%s", err);
            return rc == HW_ECONFIG || rc == HW_EMISMATCH ? HW_EXIT_CONFIG : HW_EXIT_FAIL;
        }
    }
    return HW_EXIT_OK;
}
