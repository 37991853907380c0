/* train/trainer.c -- the training job, for every task (see trainer.h and task.h): the backend,
 * the task's data and model, AdamW, the run directory, resume from the latest checkpoint, the
 * step loop (step / validate / log / checkpoint / signals), metrics.jsonl, the progress line,
 * periodic and signal-triggered checkpoints and the end-of-run summary. */
#define _POSIX_C_SOURCE 200809L
#include "trainer.h"

#include "../ckpt/ckpt.h"
#include "../core/check.h"
#include "../core/fsutil.h"
#include "../core/log.h"
#include "../datasets/bpe.h"
#include "../ops/ops.h"
#include "optim.h"
#include "signals.h"
#include "task.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_EXTRA 8 /* a task's extra checkpoint tensors */

static const struct train_task *const tasks[] = {&task_lm, &task_classify, &task_sft, &task_rec};

const struct train_task *train_task_find(const char *name) {
    for (size_t i = 0; i < sizeof(tasks) / sizeof(tasks[0]); i++)
        if (!strcmp(tasks[i]->name, name))
            return tasks[i];
    return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* checkpoints */

void trainer_tensor_views(const struct trainer *tr, float *base, struct ckpt_tensor *t) {
    const struct param_set *ps = &tr->ps;
    const struct dist *d = tr->d;
    /* the ranks outside the tensors' shard group hold copies: the first of them writes */
    int first = 1;
    for (int g = DIST_DP; g <= DIST_HP; g++)
        if (g != ps->shard_group)
            first &= dist_group_rank(d, (enum dist_group)g) == 0;
    const int shard_rank0 = dist_group_rank(d, (enum dist_group)ps->shard_group) == 0;
    for (int i = 0; i < ps->n; i++) {
        const struct param *p = &ps->p[i];
        memset(&t[i], 0, sizeof(t[i]));
        t[i].name = p->name;
        t[i].ndim = p->ndim;
        for (int k = 0; k < p->ndim; k++) {
            t[i].shape[k] = p->gshape[k];
            t[i].offset[k] = p->goff[k];
            t[i].count[k] = p->shape[k];
        }
        t[i].write = first && (p->shard_dim >= 0 || shard_rank0);
        t[i].data = base + p->offset;
    }
}

/* The parameters (and the moments, when want_moments) in host memory, full-sized. */
static float *host_params(const struct trainer *tr) {
    float *h = HW_MALLOC(sizeof(float) * (tr->ps.numel ? tr->ps.numel : 1));
    tr->ps.be->download(h, tr->ps.w, sizeof(float) * tr->ps.numel);
    return h;
}

static int save_checkpoint(struct trainer *tr, char *err) {
    const struct param_set *ps = &tr->ps;
    const int n = ps->n;
    struct ckpt_tensor *tv = HW_CALLOC((size_t)3 * n + MAX_EXTRA, sizeof(*tv));
    float *w = host_params(tr);
    float *full_m = HW_CALLOC(ps->numel + 1, sizeof(float));
    float *full_v = HW_CALLOC(ps->numel + 1, sizeof(float));
    optim_export(&tr->opt, full_m, full_v); /* whole moments: ZeRO-1 gathers the shards */
    if (tr->task->gather_moments)
        tr->task->gather_moments(tr, full_m, full_v);
    trainer_tensor_views(tr, w, tv);
    const int ne = tr->task->extra_tensors ? tr->task->extra_tensors(tr, tv + n, 1) : 0;
    HW_ASSERT(ne <= MAX_EXTRA);
    trainer_tensor_views(tr, full_m, tv + n + ne);
    trainer_tensor_views(tr, full_v, tv + 2 * n + ne);
    struct ckpt_group g[3] = {
        {"model", tv, n + ne}, {"optim/m", tv + n + ne, n}, {"optim/v", tv + 2 * n + ne, n}};
    struct ckpt_meta meta;
    memset(&meta, 0, sizeof(meta));
    meta.step = tr->step;
    meta.tokens_seen = tr->tokens_seen;
    meta.rng[0] = (uint64_t)tr->c->train.seed;
    if (tr->task->cursor) {
        meta.cursor[0] = tr->task->cursor(tr);
        meta.n_cursor = 1;
    }
    meta.config_yaml = tr->cfg_yaml;
    meta.tokenizer_json = tr->tok_json ? tr->tok_json : "";
    meta.model_sig = tr->sig;
    int rc = ckpt_save(tr->d, tr->c->run.dir, tr->step, g, 3, &meta, tr->c->run.keep, tr->last_ckpt,
                       err);
    free(tv);
    free(w);
    free(full_m);
    free(full_v);
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

/* The checkpoint's tokenizer against the run's, in one line. */
static int tokenizer_mismatch(const struct trainer *tr, const char *path, const char *stored,
                              char *err) {
    struct bpe old, cur;
    char e2[HW_ERR_LEN];
    bpe_init(&old);
    bpe_init(&cur);
    int ov = bpe_from_json(&old, stored, strlen(stored), path, e2) ? -1 : bpe_vocab_size(&old);
    int cv = bpe_from_json(&cur, tr->tok_json, strlen(tr->tok_json), path, e2)
                 ? -1
                 : bpe_vocab_size(&cur);
    bpe_free(&old);
    bpe_free(&cur);
    return hw_errf(
        err, HW_EMISMATCH,
        "%s: checkpoint tokenizer (vocab %d) differs from the run's tokenizer (vocab %d)", path, ov,
        cv);
}

/* Resume from the latest checkpoint of run.dir: 1 resumed, 0 none there, < 0 error. */
static int resume(struct trainer *tr, char *err) {
    char path[CKPT_PATH_LEN];
    int found = ckpt_latest(tr->c->run.dir, path, err);
    if (found <= 0)
        return found;
    const struct param_set *ps = &tr->ps;
    struct ckpt_file f;
    struct ckpt_meta meta;
    memset(&f, 0, sizeof(f));
    memset(&meta, 0, sizeof(meta));
    int rc = ckpt_open(&f, tr->d, path, err);
    if (!rc)
        rc = ckpt_read_meta(&f, &meta, err);
    if (!rc && tr->tok_json && strcmp(meta.tokenizer_json, tr->tok_json) != 0)
        rc = tokenizer_mismatch(tr, path, meta.tokenizer_json, err);
    if (!rc && strcmp(meta.model_sig, tr->sig) != 0)
        rc = hw_errf(err, HW_ECONFIG,
                     "%s: checkpoint model '%s' does not match the config's model '%s'", path,
                     meta.model_sig, tr->sig);
    struct ckpt_tensor *tv = HW_CALLOC((size_t)ps->n + MAX_EXTRA, sizeof(*tv));
    const char *groups[3] = {"model", "optim/m", "optim/v"};
    float *bases[3];
    for (int g = 0; g < 3; g++)
        bases[g] = HW_CALLOC(ps->numel + 1, sizeof(float));
    int ne = 0;
    for (int g = 0; g < 3 && !rc; g++) {
        trainer_tensor_views(tr, bases[g], tv);
        for (int i = 0; i < ps->n && !rc; i++)
            rc = ckpt_read_tensor(&f, groups[g], &tv[i], err);
        if (g == 0 && tr->task->extra_tensors) {
            ne = tr->task->extra_tensors(tr, tv, 0);
            for (int i = 0; i < ne && !rc; i++)
                rc = ckpt_read_tensor(&f, "model", &tv[i], err);
        }
    }
    free(tv);
    /* reads are rank-local: agree before going on (every rank fails together) */
    int any = dist_allreduce_max_int(tr->d, rc ? 1 : 0);
    if (any && !rc)
        rc = hw_errf(err, HW_EIO, "%s: resume failed on another rank (see its message)", path);
    if (!rc) {
        ps->be->upload(ps->w, bases[0], sizeof(float) * ps->numel);
        optim_import(&tr->opt, bases[1], bases[2]);
        if (ne && tr->task->extra_loaded)
            tr->task->extra_loaded(tr);
        tr->step = (int)meta.step;
        tr->tokens_seen = meta.tokens_seen;
        if (tr->task->seek)
            tr->task->seek(tr, meta.n_cursor > 0 ? meta.cursor[0] : 0);
        snprintf(tr->last_ckpt, sizeof(tr->last_ckpt), "%s", path);
        log_info("resumed from %s at step %d", path, tr->step);
    }
    for (int g = 0; g < 3; g++)
        free(bases[g]);
    ckpt_meta_free(&meta);
    ckpt_close(&f);
    return rc ? rc : 1;
}

/* ---------------------------------------------------------------------------------------- */
/* metrics, progress */

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

/* A real number in the line: fp32 for the language-model tasks (their losses are float sums),
 * the double itself for tasks that compute in double. */
static json_t *num(const struct trainer *tr, double v) {
    return json_real(tr->task->metrics_double ? v : (double)(float)v);
}

static void append_line(const struct trainer *tr, json_t *j) {
    if (tr->d->rank == 0) {
        char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
        FILE *f = fopen(tr->metrics_path, "a");
        if (f) {
            fprintf(f, "%s\n", s);
            fclose(f);
        }
        free(s);
    }
    json_decref(j);
}

/* Per collective kind: bytes this rank sent and seconds it waited (rank 0's view). */
static void comm_fields(const struct trainer *tr, json_t *j) {
    const struct dist *d = tr->d;
    if (d->world <= 1)
        return;
    json_t *cm = json_object();
    double comm_s = 0.0;
    for (int k = 0; k < DIST_KINDS; k++) {
        if (!d->stats.calls[k])
            continue;
        json_object_set_new(cm, dist_kind_names[k],
                            json_pack("{s:f,s:f}", "bytes", d->stats.bytes[k], "s",
                                      round(d->stats.seconds[k] * 1e6) / 1e6));
        comm_s += d->stats.seconds[k];
    }
    json_object_set_new(j, "comm", cm);
    json_object_set_new(j, "step_s", json_real(round(tr->step_s * 1e6) / 1e6));
    json_object_set_new(j, "comm_s", json_real(round(comm_s * 1e6) / 1e6));
}

/* Test hooks (fault injection, as SQLite does): HW_FAULT_NAN_STEP=N poisons the loss at step N
 * (checks the NaN guard); HW_STOP_AFTER_STEP=N acts as if SIGUSR1 arrived during step N (a
 * deterministic preemption). */
static int env_step(const char *name) {
    const char *s = getenv(name);
    return s ? atoi(s) : -1;
}

/* ---------------------------------------------------------------------------------------- */
/* setup */

static int config_error(const struct hw_config *c, const char *key, const char *why, char *err) {
    char where[CFG_PATH_MAX + 32];
    cfg_where(c, key, where, sizeof(where));
    return hw_errf(err, HW_ECONFIG, "%s: error: %s: %s", where, key, why);
}

/* The backend, the task's data and model, the optimizer and the run directory. */
static int setup(struct trainer *tr, char *err) {
    const struct hw_config *c = tr->c;
    const char *why = NULL;
    int rc;
    tr->be = ops_by_name(c->run.backend, &why);
    if (!tr->be)
        return config_error(c, "run.backend", why ? why : "unknown backend", err);
    if ((rc = tr->task->setup(tr, err)))
        return rc;
    if (!tr->steps)
        tr->steps = c->train.steps;
    tr->sched = c->train; /* the schedule follows the task's step count */
    tr->sched.steps = tr->steps;
    if (tr->sched.warmup > tr->steps)
        tr->sched.warmup = tr->steps;
    tr->zero = c->dist.zero && tr->d->dp * tr->d->cp > 1 && tr->task->optim_segments;
    struct optim_seg *seg = NULL, whole = {.off = 0, .len = tr->ps.numel};
    const int n_seg = tr->task->optim_segments ? tr->task->optim_segments(tr, &seg) : 1;
    optim_init(&tr->opt, tr->ps.be, seg ? seg : &whole, n_seg);
    free(seg);
    /* run directory: resolved config and tokenizer beside the metrics and checkpoints */
    if ((rc = fs_mkdirs(c->run.dir, err)))
        return rc;
    tr->cfg_yaml = cfg_to_yaml(c);
    char path[CFG_PATH_MAX + 32];
    if (tr->d->rank == 0) {
        snprintf(path, sizeof(path), "%s/config.yaml", c->run.dir);
        if ((rc = fs_write_atomic(path, tr->cfg_yaml, strlen(tr->cfg_yaml), err)))
            return rc;
        if (tr->tok_json) {
            snprintf(path, sizeof(path), "%s/tokenizer.json", c->run.dir);
            if ((rc = fs_write_atomic(path, tr->tok_json, strlen(tr->tok_json), err)))
                return rc;
        }
    }
    snprintf(tr->metrics_path, sizeof(tr->metrics_path), "%s/metrics.jsonl", c->run.dir);
    if (strcmp(c->run.resume, "auto") == 0) {
        rc = resume(tr, err);
        if (rc < 0)
            return rc;
        if (tr->d->rank == 0) {
            if (rc == 0)
                unlink(tr->metrics_path);
            else
                trim_metrics(tr->metrics_path, tr->step);
        }
    } else if (tr->d->rank == 0) {
        unlink(tr->metrics_path);
    }
    return 0;
}

static void teardown(struct trainer *tr) {
    if (tr->task)
        tr->task->teardown(tr);
    free(tr->tok_json);
    free(tr->cfg_yaml);
    optim_free(&tr->opt);
}

/* ---------------------------------------------------------------------------------------- */
/* the loop */

/* One optimizer step: the task's micro-batches forward and backward, the reduced gradients;
 * returns 0 with the step's loss, or an error code. */
static int train_step(struct trainer *tr, double *loss, char *err) {
    const struct train_task *t = tr->task;
    const int A = t->micro_batches(tr);
    int rc = 0;
    tr->ps.be->memset(tr->ps.g, 0, sizeof(float) * tr->ps.numel);
    if (t->begin_step)
        t->begin_step(tr);
    for (int a = 0; a < A && !rc; a++)
        rc = t->next(tr, a, err);
    if (rc)
        return rc;
    const double den = t->denominator(tr);
    double loss_sum = 0.0;
    for (int a = 0; a < A; a++)
        loss_sum += t->forward_backward(tr, a, 1.0f / (float)den);
    *loss = t->finish(tr, loss_sum, den);
    return 0;
}

int train_run(const struct hw_config *c, struct dist *d) {
    struct trainer tr;
    char err[HW_ERR_LEN];
    memset(&tr, 0, sizeof(tr));
    tr.c = c;
    tr.d = d;
    tr.unit = "tok";
    tr.task = train_task_find(strcmp(c->model.family, "rec") ? c->train.task : "rec");
    HW_ASSERT(tr.task); /* the config validated train.task */
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
    rc = setup(&tr, err);
    if (rc) {
        log_error("%s", err);
        teardown(&tr);
        return rc == HW_ECONFIG ? HW_EXIT_CONFIG : HW_EXIT_FAIL;
    }
    signals_install();
    const struct cfg_train *t = &tr.sched;
    const struct train_task *task = tr.task;
    tr.peak_flops = tr.flops_per_token > 0 ? ops_sgemm_peak(0.3) : 0.0;
    /* under a launcher the ranks' stdout is forwarded, so no \r progress rewriting */
    const int nan_step = env_step("HW_FAULT_NAN_STEP"), tty = isatty(1) && d->world == 1;
    const int stop_step = env_step("HW_STOP_AFTER_STEP");
    double n_global = 0.0;
    for (int i = 0; i < tr.ps.n; i++)
        n_global += (double)tr.ps.p[i].gshape[0] *
                    (double)(tr.ps.p[i].ndim == 2 ? tr.ps.p[i].gshape[1] : 1);
    log_info("headwise train (%s): %s | %.2fM params | %s | backend %s | %d threads/rank | sgemm "
             "peak %.1f GFLOP/s",
             task->name, c->source, n_global / 1e6, tr.sig, tr.be->name, threads,
             tr.peak_flops / 1e9);
    log_info("run dir: %s | %d steps x %lld %s", c->run.dir, tr.steps,
             (long long)tr.tokens_per_step, tr.unit);
    dist_grid_print(d);
    log_info("optimizer state: %.3fM floats per rank (%s)", (double)tr.opt.n * 2 / 1e6,
             tr.zero ? "ZeRO-1: moments sharded over data x context" : "replicated");
    double first_loss = NAN, last_loss = NAN, last_val = NAN, best_val = INFINITY;
    double t_start = log_now(), tok_s_sum = 0.0, mfu_sum = 0.0, loss_acc = 0.0;
    int start_step = tr.step, n_timed = 0, n_acc = 0, exit_code = HW_EXIT_OK;
    while (tr.step < tr.steps) {
        double t0 = log_now(), loss = NAN;
        tr.lr = optim_lr(t, tr.step);
        dist_stats_reset(d);
        if ((rc = train_step(&tr, &loss, err))) {
            log_error("%s", err);
            exit_code = HW_EXIT_FAIL;
            break;
        }
        if (tr.step + 1 == nan_step)
            loss = NAN;
        const int need_norm = task->log_grad_norm || t->grad_clip > 0;
        double gnorm = need_norm ? task->grad_norm(&tr) : 0.0;
        if (!isfinite(loss) || !isfinite(gnorm)) {
            log_error("%s: step %d: %s is %s; stopping without saving a checkpoint (last good "
                      "checkpoint: %s)",
                      c->source, tr.step + 1, isfinite(loss) ? "gradient norm" : "loss",
                      isnan(isfinite(loss) ? gnorm : loss) ? "NaN" : "Inf",
                      tr.last_ckpt[0] ? tr.last_ckpt : "none");
            exit_code = HW_EXIT_NUMERIC;
            break;
        }
        float clip =
            t->grad_clip > 0 && gnorm > t->grad_clip ? (float)(t->grad_clip / gnorm) : 1.0f;
        optim_step(&tr.opt, &tr.ps, t, (float)tr.lr, tr.step + 1, clip);
        if (task->after_update)
            task->after_update(&tr);
        tr.step++;
        tr.tokens_seen += tr.tokens_per_step;
        double dt = log_now() - t0, tps = (double)tr.tokens_per_step / dt;
        double mfu = tr.peak_flops > 0 ? tps * tr.flops_per_token / (tr.peak_flops * d->world) : 0;
        tr.step_s = dt;
        if (tr.step > start_step + 1 || tr.steps - start_step == 1) {
            tok_s_sum += tps;
            mfu_sum += mfu;
            n_timed++;
        }
        if (isnan(first_loss))
            first_loss = loss;
        last_loss = loss;
        loss_acc += loss;
        n_acc++;
        /* validation, the metrics line and the progress line */
        const int val_now = task->val_due(&tr);
        const int log_now_ = task->log_due(&tr, val_now);
        double vloss = NAN;
        char note[96] = "";
        json_t *j = json_object();
        json_object_set_new(j, "step", json_integer(tr.step));
        json_object_set_new(j, "loss", num(&tr, loss_acc / n_acc));
        if (task->metrics)
            task->metrics(&tr, j, TASK_METRICS_LOSS);
        json_object_set_new(j, "lr", num(&tr, tr.lr));
        if (task->log_grad_norm)
            json_object_set_new(j, "grad_norm", json_real((float)gnorm));
        char unit_key[32];
        snprintf(unit_key, sizeof(unit_key), "%s_per_s",
                 !strcmp(tr.unit, "tok") ? "tokens" : tr.unit);
        json_object_set_new(j, unit_key, json_real(round(tps)));
        if (tr.peak_flops > 0)
            json_object_set_new(j, "mfu", json_real(round(mfu * 1e4) / 1e4));
        if (task->metrics)
            task->metrics(&tr, j, TASK_METRICS_BEFORE_VAL);
        if (val_now) {
            vloss = task->validate(&tr, j, note, sizeof(note), err, &rc);
            if (rc) {
                json_decref(j);
                log_error("%s", err);
                exit_code = HW_EXIT_FAIL;
                break;
            }
            if (!isnan(vloss)) {
                last_val = vloss;
                best_val = vloss < best_val ? vloss : best_val;
            }
        }
        if (task->metrics)
            task->metrics(&tr, j, TASK_METRICS_AFTER_VAL);
        comm_fields(&tr, j);
        if (log_now_) {
            append_line(&tr, j);
            loss_acc = 0.0;
            n_acc = 0;
        } else {
            json_decref(j);
        }
        double elapsed = log_now() - t_start;
        double eta = elapsed / (tr.step - start_step) * (tr.steps - tr.step);
        char eta_s[32];
        fmt_time(eta_s, sizeof(eta_s), eta);
        if (tty && d->rank == 0) {
            printf("\rstep %6d/%d | loss %.4f | lr %.2e | %.0f %s/s | mfu %.1f%% | eta %s   ",
                   tr.step, tr.steps, loss, tr.lr, tps, tr.unit, 100 * mfu, eta_s);
            if (note[0])
                printf("\n  %s\n", note);
            fflush(stdout);
        }
        if (!tty && (tr.step % t->log_every == 0 || tr.step == tr.steps || note[0])) {
            char vs[112] = "";
            if (note[0])
                snprintf(vs, sizeof(vs), " | %s", note);
            log_info("step %6d/%d | loss %.4f | lr %.2e | grad %.3f | %.0f %s/s | mfu %.1f%% | eta "
                     "%s%s",
                     tr.step, tr.steps, loss, tr.lr, gnorm, tps, tr.unit, 100 * mfu, eta_s, vs);
        }
        int stop = signals_pending();
        if (tr.step == stop_step)
            stop = SIGUSR1; /* test hook: behave as if preempted here */
        stop = dist_allreduce_max_int(d, stop);
        int due = (c->run.ckpt_every && tr.step % c->run.ckpt_every == 0) || tr.step == tr.steps;
        if (due || stop) {
            if ((rc = save_checkpoint(&tr, err))) {
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
            log_info("checkpoint: %s", tr.last_ckpt);
        }
        if (stop) {
            log_info("stopped by signal %d at step %d after saving %s; exit code %d asks to be "
                     "requeued",
                     stop, tr.step, tr.last_ckpt, HW_EXIT_REQUEUE);
            exit_code = HW_EXIT_REQUEUE;
            break;
        }
    }
    if (tty && d->rank == 0)
        printf("\n");
    if (exit_code == HW_EXIT_OK && task->final && (rc = task->final(&tr, err))) {
        log_error("%s", err);
        exit_code = HW_EXIT_FAIL;
    }
    if (exit_code == HW_EXIT_OK || exit_code == HW_EXIT_REQUEUE) {
        char el[32];
        fmt_time(el, sizeof(el), log_now() - t_start);
        log_info("---- summary ----");
        if (tr.step == start_step)
            log_info("nothing to do: the checkpoint is already at step %d of %d", tr.step,
                     tr.steps);
        else
            log_info("steps %d..%d in %s | train loss %.4f -> %.4f", start_step + 1, tr.step, el,
                     first_loss, last_loss);
        if (!isnan(last_val))
            log_info("val loss %.4f (best %.4f)", last_val, best_val);
        if (n_timed)
            log_info("throughput %.0f %s/s%s", tok_s_sum / n_timed, tr.unit,
                     tr.peak_flops > 0 ? "" : " (no MFU for this model)");
        if (n_timed && tr.peak_flops > 0)
            log_info("mfu %.1f%% of the measured sgemm peak", 100 * mfu_sum / n_timed);
        log_info("run dir:    %s", c->run.dir);
        log_info("metrics:    %s", tr.metrics_path);
        log_info("checkpoint: %s", tr.last_ckpt[0] ? tr.last_ckpt : "none");
    }
    teardown(&tr);
    return exit_code;
}
