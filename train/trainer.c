/* train/trainer.c -- the training job, for every task (see trainer.h and task.h): the backend,
 * the task's data and model, AdamW, the run directory, resume from the latest checkpoint, the
 * step loop (step / validate / log / checkpoint / signals), metrics.jsonl, the progress line,
 * periodic and signal-triggered checkpoints and the end-of-run summary. */
#define _POSIX_C_SOURCE 200809L
#include "trainer.h"

#include "../ckpt/ckpt.h"
#include "../core/check.h"
#include "../core/fsutil.h"
#include "../core/interrupt.h"
#include "../core/log.h"
#include "../datasets/bpe.h"
#include "../ops/ops.h"
#include "async_save.h"
#include "optim.h"
#include "signals.h"
#include "task.h"
#include "tensorboard.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdnoreturn.h>
#include <string.h>
#include <sys/stat.h>
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

int trainer_stop_poll(const struct trainer *tr) {
    return dist_allreduce_max_int(tr->d, signals_pending());
}

void trainer_load_begin(struct trainer *tr) {
    HW_ASSERT(!tr->load_notice);
    tr->load_notice = dist_notice_open(tr->d);
    hw_interrupt_set(signals_notice_poll, tr->load_notice);
    if (tr->d->rank == 0)
        log_info("loading the training data");
}

int trainer_load_end(struct trainer *tr, int rc, char *err) {
    hw_interrupt_set(NULL, NULL);
    /* a signal that came after this rank's last poll still stops every rank here */
    signals_notice_poll(tr->load_notice);
    const int stopped = dist_notice_close(tr->load_notice);
    tr->load_notice = NULL;
    if ((rc && rc != HW_ESTOP) || !stopped)
        return rc;
    const char *who = signals_pending() ? "this rank" : "another rank";
    if (!rc)
        return hw_errf(err, HW_ESTOP, "stopped by a signal to %s while the training data loaded",
                       who);
    char where[HW_ERR_LEN];
    snprintf(where, sizeof(where), "%s", err);
    return hw_errf(err, HW_ESTOP, "%.400s (the signal came to %s)", where, who);
}

/* A snapshot of the training state for a save: the parameters and whole moments in host
 * memory (the background saver's reused staging buffers when stage is given, else buffers the
 * job owns), the task's extra tensors (copied when stage is given: the task changes them while a
 * background save runs), the state and texts. COLLECTIVE (ZeRO-1 gathers the moments). */
static struct save_job *snapshot(struct trainer *tr, const struct save_stage *stage) {
    const struct param_set *ps = &tr->ps;
    const int n = ps->n;
    const int copy_extras = stage != NULL;
    struct save_job *j = HW_CALLOC(1, sizeof(*j));
    struct ckpt_tensor *tv = j->tv = HW_CALLOC((size_t)3 * n + MAX_EXTRA, sizeof(*tv));
    float *w, *full_m, *full_v;
    if (stage) {
        w = stage->w, full_m = stage->m, full_v = stage->v;
    } else { /* the parameters through host memory the backend copies to fastest (pinned) */
        w = j->pinned = ps->be->host_alloc(sizeof(float) * (ps->numel ? ps->numel : 1));
        j->host_free = ps->be->host_free;
        full_m = HW_CALLOC(ps->numel + 1, sizeof(float));
        full_v = HW_CALLOC(ps->numel + 1, sizeof(float));
        j->owned[j->n_owned++] = full_m;
        j->owned[j->n_owned++] = full_v;
    }
    ps->be->download(w, ps->w, sizeof(float) * ps->numel);
    optim_export(&tr->opt, full_m, full_v); /* whole moments: ZeRO-1 gathers the shards */
    if (tr->task->gather_moments)
        tr->task->gather_moments(tr, full_m, full_v);
    trainer_tensor_views(tr, w, tv);
    const int ne = tr->task->extra_tensors ? tr->task->extra_tensors(tr, tv + n, 1) : 0;
    HW_ASSERT(ne <= MAX_EXTRA);
    for (int i = 0; copy_extras && i < ne; i++) {
        size_t k = 1;
        for (int dd = 0; dd < tv[n + i].ndim; dd++)
            k *= (size_t)tv[n + i].count[dd];
        float *copy = HW_MALLOC(sizeof(float) * (k ? k : 1));
        memcpy(copy, tv[n + i].data, sizeof(float) * k);
        tv[n + i].data = copy;
        HW_ASSERT(j->n_owned < (int)(sizeof(j->owned) / sizeof(j->owned[0])));
        j->owned[j->n_owned++] = copy;
    }
    trainer_tensor_views(tr, full_m, tv + n + ne);
    trainer_tensor_views(tr, full_v, tv + 2 * n + ne);
    j->g[0] = (struct ckpt_group){"model", tv, n + ne};
    j->g[1] = (struct ckpt_group){"optim/m", tv + n + ne, n};
    j->g[2] = (struct ckpt_group){"optim/v", tv + 2 * n + ne, n};
    j->n_groups = 3;
    j->meta.step = tr->step;
    j->meta.tokens_seen = tr->tokens_seen;
    j->meta.rng[0] = (uint64_t)tr->c->train.seed;
    if (tr->task->cursor)
        j->meta.n_cursor = tr->task->cursor(tr, j->meta.cursor);
    j->meta.config_yaml = tr->cfg_yaml;
    j->meta.tokenizer_json = tr->tok_json ? tr->tok_json : "";
    j->meta.model_sig = tr->sig;
    snprintf(j->dir, sizeof(j->dir), "%s", tr->c->run.dir);
    j->step = tr->step;
    j->keep = tr->c->run.keep;
    return j;
}

/* A checkpoint written now, by every rank together. */
static int save_checkpoint(struct trainer *tr, char *err) {
    struct save_job *j = snapshot(tr, NULL);
    int rc =
        ckpt_save(tr->d, j->dir, j->step, j->g, j->n_groups, &j->meta, j->keep, tr->last_ckpt, err);
    save_job_free(j);
    return rc;
}

/* Keep only metrics lines with step <= last_step (a resumed run re-logs the steps after its
 * checkpoint). */
static void trim_metrics(const char *path, int last_step) {
    char e[HW_ERR_LEN];
    FILE *f = fs_fopen_read(path, e); /* a FIFO is refused, not waited on */
    if (!f) { /* a dangling link or a FIFO goes: the first append makes a new file */
        struct stat st;
        if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode))
            unlink(path);
        return;
    }
    char tmp[CFG_PATH_MAX + 64];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *o = fs_create(tmp, e); /* never through a link planted at the name */
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
        char why[HW_ERR_LEN];
        if (tr->task->seek && (rc = tr->task->seek(tr, meta.cursor, meta.n_cursor, why)))
            hw_errf(err, rc, "%.2000s: %.400s", path, why);
    }
    if (!rc) {
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
        char e[HW_ERR_LEN];
        static int warned;
        FILE *f = fs_open_append(tr->metrics_path, e); /* refuses a link, FIFO, hard link */
        if (f) {
            fprintf(f, "%s\n", s);
            fclose(f);
        } else if (!warned++) {
            log_error("%s", e);
        }
        free(s);
        json_t *st = json_object_get(j, "step");
        if (tr->tb && tb_scalars(tr->tb, st ? json_integer_value(st) : tr->step, j))
            log_warn("run.tensorboard: cannot write %s; no more events", tb_path(tr->tb));
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
    if (d->stats.staged > 0) /* backend <-> host copies of the collectives' buffers */
        json_object_set_new(j, "staged_bytes", json_real(d->stats.staged));
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

/* The backend, the task's data and model, the optimizer and the run directory. */
static int setup(struct trainer *tr, char *err) {
    const struct hw_config *c = tr->c;
    const char *why = NULL;
    int rc;
    tr->be = ops_by_name(c->run.backend, &why);
    if (!tr->be)
        return cfg_key_error(c, "run.backend", why ? why : "unknown backend", err);
    /* the collectives take backend buffers: a GPU's go through pinned host memory (dist.h);
     * HW_STAGE_COLLECTIVES=1 sends the CPU backend's the same way (tests) */
    dist_select_device(tr->d, tr->be, tr->device, sizeof(tr->device));
    if (!strcmp(c->dist.transport, "nccl")) {
        char e[HW_ERR_LEN];
        if (tr->be->kind != BACKEND_CUDA)
            return cfg_key_error(c, "dist.transport",
                                 "nccl runs on device buffers: it needs run.backend: cuda (use "
                                 "dist.transport: mpi on the cpu backend)",
                                 err);
        if (dist_set_nccl(tr->d, e, sizeof(e)))
            return cfg_key_error(c, "dist.transport", e, err);
        log_info("dist.transport nccl: %s, a communicator per grid group",
                 dist_nccl_describe(tr->d));
    } else {
        const char *stage = getenv("HW_STAGE_COLLECTIVES");
        dist_set_backend(tr->d, tr->be, stage && atoi(stage) != 0);
    }
    if (!strcmp(c->train.precision, "bf16")) {
        if (!tr->be->supports(OPS_CAP_BF16_TRAIN))
            return cfg_key_error(c, "train.precision",
                                 "bf16 is not available on this backend yet; use fp32", err);
        tr->be->set_precision(HW_BF16);
    }
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
    /* run directory: resolved config and tokenizer beside the metrics and checkpoints, written
     * only once a resume (if any) was accepted: a refused resume (another model or tokenizer)
     * leaves every file of the directory as it was */
    if ((rc = fs_mkdirs(c->run.dir, err)))
        return rc;
    tr->cfg_yaml = cfg_to_yaml(c);
    snprintf(tr->metrics_path, sizeof(tr->metrics_path), "%s/metrics.jsonl", c->run.dir);
    int resumed = 0;
    if (strcmp(c->run.resume, "auto") == 0) {
        resumed = resume(tr, err);
        if (resumed < 0)
            return resumed;
    }
    if (tr->d->rank == 0) {
        char path[CFG_PATH_MAX + 32];
        snprintf(path, sizeof(path), "%s/config.yaml", c->run.dir);
        if ((rc = fs_write_atomic(path, tr->cfg_yaml, strlen(tr->cfg_yaml), err)))
            return rc;
        if (tr->tok_json) {
            snprintf(path, sizeof(path), "%s/tokenizer.json", c->run.dir);
            if ((rc = fs_write_atomic(path, tr->tok_json, strlen(tr->tok_json), err)))
                return rc;
        }
        if (resumed)
            trim_metrics(tr->metrics_path, tr->step);
        else
            unlink(tr->metrics_path);
        char e[HW_ERR_LEN];
        if (c->run.tensorboard && !(tr->tb = tb_open(c->run.dir, e)))
            log_warn("run.tensorboard: %s; the run goes on without TensorBoard events", e);
    }
    return 0;
}

static void teardown(struct trainer *tr) {
    tb_close(tr->tb);
    tr->tb = NULL;
    if (tr->task)
        tr->task->teardown(tr);
    free(tr->tok_json);
    free(tr->cfg_yaml);
    optim_free(&tr->opt);
}

/* ---------------------------------------------------------------------------------------- */
/* the loop */

/* The run around the trainer: what the summary and the progress line need. */
struct loop {
    struct trainer tr;
    int tty, nan_step, stop_step, threads, start_step, n_timed, n_acc;
    double t_start, tok_s_sum, mfu_sum, loss_acc;
    double first_loss, last_loss, last_val, best_val;
    /* this step */
    double loss, gnorm, tps, mfu;
    size_t mem_peak;          /* most backend memory held during the step (bytes) */
    json_t *pending;          /* its metrics line, written after the checkpoint (with ckpt_s) */
    struct async_saver saver; /* run.async_save: the background writer */
    int saver_up, async;
    double signal_lead; /* seconds between Slurm's warning signal and the end (0: unknown) */
    int budget_warned;
};

/* The micro-batches of one step forward and backward, the reduced gradients; 0 with the step's
 * loss, or an error code. */
static int forward_backward(struct trainer *tr, double *loss, char *err) {
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

/* The job's start: the grid, threads, backend, task, optimizer, run directory, resume. */
static int start(struct loop *L, const struct hw_config *c, struct dist *d, char *err) {
    struct trainer *tr = &L->tr;
    tr->c = c;
    tr->d = d;
    tr->unit = "tok";
    tr->task = train_task_find(strcmp(c->model.family, "rec") ? c->train.task : "rec");
    HW_ASSERT(tr->task); /* the config validated train.task */
    int rc;
    dist_grid_init(d, c->dist.data.v, c->dist.context.v, c->dist.heads.v,
                   !strcmp(c->dist.context_mode, "ulysses"));
    dist_watchdog_start(d, c->dist.timeout_s);
    /* threads: all cores of the node shared among its ranks unless set */
    L->threads = ops_set_threads(c->train.threads ? c->train.threads : dist_threads_per_rank(d));
    if ((rc = setup(tr, err)) == HW_ESTOP) {
        log_info("%s; nothing was written (no step was taken), exit code %d asks to be requeued",
                 err, HW_EXIT_REQUEUE);
        err[0] = 0;
        return HW_EXIT_REQUEUE;
    }
    if (rc)
        return rc == HW_ECONFIG ? HW_EXIT_CONFIG : HW_EXIT_FAIL;
    tr->peak_what = "GEMM"; /* no MFU for a model without a FLOP count (rec) */
    tr->peak_flops = tr->flops_per_token > 0 ? tr->be->gemm_peak(0.3, &tr->peak_what) : 0.0;
    /* under a launcher the ranks' stdout is forwarded, so no \r progress rewriting */
    L->tty = isatty(1) && d->world == 1;
    L->nan_step = env_step("HW_FAULT_NAN_STEP");
    L->stop_step = env_step("HW_STOP_AFTER_STEP");
    L->start_step = tr->step;
    /* HW_ASYNC_SAVE=0|1 overrides run.async_save without changing the stored config, so that
     * the files of the two modes can be compared byte for byte (tests/cli_async_save.sh) */
    const char *as = getenv("HW_ASYNC_SAVE");
    L->async = as && *as ? atoi(as) != 0 : c->run.async_save;
    if (L->async) {
        if ((rc = async_save_init(&L->saver, d, err)))
            return HW_EXIT_CONFIG;
        L->saver_up = 1;
    }
    const char *lead = getenv("HW_SIGNAL_LEAD_S"); /* exported by slurm/train.sbatch */
    L->signal_lead = lead && *lead ? strtod(lead, NULL) : 0.0;
    if (L->signal_lead > 0)
        log_info("signal lead time %g s (Slurm --signal): a step plus a save must fit in it",
                 L->signal_lead);
    L->first_loss = L->last_loss = L->last_val = NAN;
    L->best_val = INFINITY;
    double n_global = 0.0;
    for (int i = 0; i < tr->ps.n; i++)
        n_global += (double)tr->ps.p[i].gshape[0] *
                    (double)(tr->ps.p[i].ndim == 2 ? tr->ps.p[i].gshape[1] : 1);
    log_info("headwise train (%s): %s | %.2fM params | %s | backend %s %s | %d threads/rank | "
             "%s peak %.1f GFLOP/s",
             tr->task->name, c->source, n_global / 1e6, tr->sig, tr->be->name,
             hw_dtype_name(tr->be->precision()), L->threads, tr->peak_what, tr->peak_flops / 1e9);
    log_info("run dir: %s | %d steps x %lld %s", c->run.dir, tr->steps,
             (long long)tr->tokens_per_step, tr->unit);
    dist_grid_print(d, tr->device);
    log_info("optimizer state: %.3fM floats per rank (%s)", (double)tr->opt.n * 2 / 1e6,
             tr->zero ? "ZeRO-1: moments sharded over data x context" : "replicated");
    L->t_start = log_now();
    return HW_EXIT_OK;
}

/* One optimizer step: forward and backward, the gradient norm (and the stop on a non-finite
 * loss or norm), clipping, AdamW. */
static int step(struct loop *L, char *err) {
    struct trainer *tr = &L->tr;
    const struct cfg_train *t = &tr->sched;
    const double t0 = log_now();
    tr->lr = optim_lr(t, tr->step);
    dist_stats_reset(tr->d);
    tr->be->mem_stats(NULL, NULL, 1);
    dist_watch_step(tr->step + 1);
    if (forward_backward(tr, &L->loss, err))
        return HW_EXIT_FAIL;
    if (tr->step + 1 == L->nan_step)
        L->loss = NAN;
    L->gnorm = tr->task->log_grad_norm || t->grad_clip > 0 ? tr->task->grad_norm(tr) : 0.0;
    if (!isfinite(L->loss) || !isfinite(L->gnorm)) {
        hw_errf(err, HW_ENUMERIC,
                "%s: step %d: %s is %s; stopping without saving a checkpoint (last good "
                "checkpoint: %s)",
                tr->c->source, tr->step + 1, isfinite(L->loss) ? "gradient norm" : "loss",
                isnan(isfinite(L->loss) ? L->gnorm : L->loss) ? "NaN" : "Inf",
                tr->last_ckpt[0] ? tr->last_ckpt : "none");
        return HW_EXIT_NUMERIC;
    }
    const float clip =
        t->grad_clip > 0 && L->gnorm > t->grad_clip ? (float)(t->grad_clip / L->gnorm) : 1.0f;
    optim_step(&tr->opt, &tr->ps, t, (float)tr->lr, tr->step + 1, clip);
    if (tr->task->after_update)
        tr->task->after_update(tr);
    tr->be->mem_stats(NULL, &L->mem_peak, 0);
    tr->step++;
    tr->tokens_seen += tr->tokens_per_step;
    tr->step_s = log_now() - t0;
    L->tps = (double)tr->tokens_per_step / tr->step_s;
    L->mfu =
        tr->peak_flops > 0 ? L->tps * tr->flops_per_token / (tr->peak_flops * tr->d->world) : 0.0;
    if (tr->step > L->start_step + 1 || tr->steps - L->start_step == 1) {
        L->tok_s_sum += L->tps;
        L->mfu_sum += L->mfu;
        L->n_timed++;
    }
    if (isnan(L->first_loss))
        L->first_loss = L->loss;
    L->last_loss = L->loss;
    L->loss_acc += L->loss;
    L->n_acc++;
    return HW_EXIT_OK;
}

/* The progress line: rewritten in place on a terminal, a log line every train.log_every steps
 * otherwise (and whenever validation ran). */
static void progress(const struct loop *L, const char *note) {
    const struct trainer *tr = &L->tr;
    const double elapsed = log_now() - L->t_start;
    const double eta = elapsed / (tr->step - L->start_step) * (tr->steps - tr->step);
    char eta_s[32];
    fmt_time(eta_s, sizeof(eta_s), eta);
    if (L->tty && tr->d->rank == 0) {
        printf("\rstep %6d/%d | loss %.4f | lr %.2e | %.0f %s/s | mfu %.1f%% | eta %s   ", tr->step,
               tr->steps, L->loss, tr->lr, L->tps, tr->unit, 100 * L->mfu, eta_s);
        if (note[0])
            printf("\n  %s\n", note);
        fflush(stdout);
    }
    if (!L->tty && (tr->step % tr->c->train.log_every == 0 || tr->step == tr->steps || note[0])) {
        char vs[112] = "";
        if (note[0])
            snprintf(vs, sizeof(vs), " | %s", note);
        log_info(
            "step %6d/%d | loss %.4f | lr %.2e | grad %.3f | %.0f %s/s | mfu %.1f%% | eta %s%s",
            tr->step, tr->steps, L->loss, tr->lr, L->gnorm, L->tps, tr->unit, 100 * L->mfu, eta_s,
            vs);
    }
}

/* Validation when due, the metrics line (every step, or when the task says so: the loss is the
 * mean since the last line) and the progress line. */
static int validate_and_log(struct loop *L, char *err) {
    struct trainer *tr = &L->tr;
    const struct train_task *task = tr->task;
    const int val_now = task->val_due(tr), write = task->log_due(tr, val_now);
    char note[96] = "", unit_key[32];
    json_t *j = json_object();
    json_object_set_new(j, "step", json_integer(tr->step));
    json_object_set_new(j, "loss", num(tr, L->loss_acc / L->n_acc));
    if (task->metrics)
        task->metrics(tr, j, TASK_METRICS_LOSS);
    json_object_set_new(j, "lr", num(tr, tr->lr));
    if (task->log_grad_norm)
        json_object_set_new(j, "grad_norm", json_real((float)L->gnorm));
    snprintf(unit_key, sizeof(unit_key), "%s_per_s",
             !strcmp(tr->unit, "tok") ? "tokens" : tr->unit);
    json_object_set_new(j, unit_key, json_real(round(L->tps)));
    if (tr->peak_flops > 0)
        json_object_set_new(j, "mfu", json_real(round(L->mfu * 1e4) / 1e4));
    json_object_set_new(j, "mem_peak_mib", json_real(round(L->mem_peak / 1048576.0 * 1e3) / 1e3));
    if (task->metrics)
        task->metrics(tr, j, TASK_METRICS_BEFORE_VAL);
    if (val_now) {
        int rc = 0;
        const double v = task->validate(tr, j, note, sizeof(note), err, &rc);
        if (rc) {
            json_decref(j);
            return HW_EXIT_FAIL;
        }
        if (!isnan(v)) {
            L->last_val = v;
            L->best_val = v < L->best_val ? v : L->best_val;
        }
    }
    if (task->metrics)
        task->metrics(tr, j, TASK_METRICS_AFTER_VAL);
    comm_fields(tr, j);
    if (write) { /* written after the checkpoint of this step, if one is due */
        L->pending = j;
        L->loss_acc = 0.0;
        L->n_acc = 0;
    } else {
        json_decref(j);
    }
    progress(L, note);
    return HW_EXIT_OK;
}

/* The step's metrics line, with the checkpoint written after it (ckpt_s >= 0: its seconds and
 * bytes). */
static void flush_pending(struct loop *L, double ckpt_s) {
    if (!L->pending)
        return;
    if (ckpt_s >= 0) {
        struct stat st;
        json_object_set_new(L->pending, "ckpt_s", json_real(round(ckpt_s * 1e3) / 1e3));
        if (L->tr.d->rank == 0 && stat(L->tr.last_ckpt, &st) == 0)
            json_object_set_new(L->pending, "ckpt_bytes", json_integer((json_int_t)st.st_size));
    }
    append_line(&L->tr, L->pending);
    L->pending = NULL;
}

/* Under Slurm's --signal=B:USR1@N the job has N seconds after the warning: the step under way
 * and the final save must fit in them. Warn once when they do not. */
static void save_budget(struct loop *L, double ckpt_s) {
    const double need = L->tr.step_s + ckpt_s;
    if (L->signal_lead <= 0 || L->budget_warned || need <= L->signal_lead)
        return;
    L->budget_warned = 1;
    log_warn("a step (%.1f s) plus a checkpoint save (%.1f s) take %.1f s, more than the %g s "
             "between Slurm's warning signal and the end of the job (HW_SIGNAL_LEAD_S): a "
             "preemption would lose the steps since the last checkpoint; give the job a longer "
             "lead (sbatch --signal=B:USR1@SECONDS) or a smaller step",
             L->tr.step_s, ckpt_s, need, L->signal_lead);
}

/* A failed save: the older checkpoints are safe. HDF5 may still hold a file it failed to flush
 * (a full disk) and crash in its exit-time cleanup, so leave without it. */
static noreturn void save_failed(struct loop *L, const char *err) {
    flush_pending(L, -1.0);
    log_error("%s", err);
    fflush(NULL);
    if (L->tr.d->world > 1)
        hw_exit(HW_EXIT_FAIL);
    _exit(HW_EXIT_FAIL);
}

/* The background save in flight, once written (wait: block for it): its result on this step's
 * line, or the end of the job when it failed (every rank's writer got the same result). */
static void collect_async(struct loop *L, int wait) {
    struct async_saver *s = &L->saver;
    if (!s->busy || (!wait && !async_save_ready(s)))
        return;
    struct save_job *j = async_save_collect(s);
    if (j->rc)
        save_failed(L, j->err);
    snprintf(L->tr.last_ckpt, sizeof(L->tr.last_ckpt), "%s", j->path);
    log_info("checkpoint: %s (written in %.2f s in the background)", j->path, j->write_s);
    if (L->pending) {
        struct stat st;
        json_object_set_new(L->pending, "ckpt_write_s", json_real(round(j->write_s * 1e3) / 1e3));
        if (L->tr.d->rank == 0 && stat(j->path, &st) == 0)
            json_object_set_new(L->pending, "ckpt_bytes", json_integer((json_int_t)st.st_size));
    }
    save_budget(L, j->write_s);
    save_job_free(j);
}

/* A save failed in the background on some rank: every rank learns it in the stop agreement. */
#define STOP_SAVE_FAILED (1 << 20)

/* A checkpoint when due or when a signal arrived (on any rank); a signal ends the run with the
 * requeue code. A failed save leaves at once: the older checkpoints are safe. With
 * run.async_save a due checkpoint is written in the background (the previous one is waited for
 * first); the last one and one after a signal are written at once, after the one in flight. */
static int checkpoint_and_signals(struct loop *L, char *err) {
    struct trainer *tr = &L->tr;
    const struct hw_config *c = tr->c;
    int stop = signals_pending();
    if (tr->step == L->stop_step)
        stop = SIGUSR1; /* test hook: behave as if preempted here */
    if (L->saver.busy && async_save_ready(&L->saver) && L->saver.job->rc)
        stop = STOP_SAVE_FAILED;
    stop = dist_allreduce_max_int(tr->d, stop);
    if (stop >= STOP_SAVE_FAILED)
        collect_async(L, 1); /* the failure, with its message */
    collect_async(L, 0);
    const int due =
        (c->run.ckpt_every && tr->step % c->run.ckpt_every == 0) || tr->step == tr->steps;
    if (due || stop) {
        const int background = L->async && !stop && tr->step < tr->steps;
        collect_async(L, 1); /* at most one in flight */
        const double t0 = log_now();
        if (background) {
            const struct ops *be = tr->ps.be;
            const struct save_stage *st =
                async_save_stage(&L->saver, tr->ps.numel, be->host_alloc, be->host_free);
            async_save_start(&L->saver, snapshot(tr, st));
        } else if (save_checkpoint(tr, err)) {
            save_failed(L, err);
        }
        if (L->tty && tr->d->rank == 0)
            printf("\n");
        const double secs = log_now() - t0;
        if (!background) {
            log_info("checkpoint: %s (%.2f s)", tr->last_ckpt, secs);
            save_budget(L, secs);
        }
        flush_pending(L, secs);
    }
    flush_pending(L, -1.0);
    if (!stop)
        return HW_EXIT_OK;
    log_info("stopped by signal %d at step %d after saving %s; exit code %d asks to be requeued",
             stop, tr->step, tr->last_ckpt, HW_EXIT_REQUEUE);
    return HW_EXIT_REQUEUE;
}

/* The task's final word (rec: the best-validation test scores) and the summary. */
static int finish(struct loop *L, int code, char *err) {
    struct trainer *tr = &L->tr;
    if (L->saver_up) {
        if (code == HW_EXIT_OK || code == HW_EXIT_REQUEUE)
            collect_async(L, 1);
        async_save_close(&L->saver);
    }
    flush_pending(L, -1.0);
    if (L->tty && tr->d->rank == 0)
        printf("\n");
    if (code == HW_EXIT_OK && tr->task->final && tr->task->final(tr, err)) {
        log_error("%s", err);
        code = HW_EXIT_FAIL;
    }
    if (code == HW_EXIT_OK || code == HW_EXIT_REQUEUE) {
        char el[32];
        fmt_time(el, sizeof(el), log_now() - L->t_start);
        log_info("---- summary ----");
        if (tr->step == L->start_step)
            log_info("nothing to do: the checkpoint is already at step %d of %d", tr->step,
                     tr->steps);
        else
            log_info("steps %d..%d in %s | train loss %.4f -> %.4f", L->start_step + 1, tr->step,
                     el, L->first_loss, L->last_loss);
        if (!isnan(L->last_val))
            log_info("val loss %.4f (best %.4f)", L->last_val, L->best_val);
        if (L->n_timed)
            log_info("throughput %.0f %s/s%s", L->tok_s_sum / L->n_timed, tr->unit,
                     tr->peak_flops > 0 ? "" : " (no MFU for this model)");
        if (L->n_timed && tr->peak_flops > 0)
            log_info("mfu %.1f%% of the measured %s peak", 100 * L->mfu_sum / L->n_timed,
                     tr->peak_what);
        log_info("run dir:    %s", tr->c->run.dir);
        log_info("metrics:    %s", tr->metrics_path);
        if (tr->tb)
            log_info("tensorboard: %s (tensorboard --logdir %s)", tb_path(tr->tb), tr->c->run.dir);
        log_info("checkpoint: %s", tr->last_ckpt[0] ? tr->last_ckpt : "none");
    }
    teardown(tr);
    return code;
}

/* The training job: step / validate and log / checkpoint and signals, until the last step. */
int train_run(const struct hw_config *c, struct dist *d) {
    struct loop L;
    char err[HW_ERR_LEN] = "";
    memset(&L, 0, sizeof(L));
    int code = start(&L, c, d, err);
    if (code != HW_EXIT_OK) {
        if (err[0])
            log_error("%s", err);
        teardown(&L.tr);
        return code;
    }
    while (code == HW_EXIT_OK && L.tr.step < L.tr.steps) {
        code = step(&L, err);
        if (code == HW_EXIT_OK)
            code = validate_and_log(&L, err);
        if (code == HW_EXIT_OK)
            code = checkpoint_and_signals(&L, err);
        else
            log_error("%s", err);
    }
    return finish(&L, code, err);
}
