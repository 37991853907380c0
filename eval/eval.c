/* eval/eval.c -- the evaluation driver (see eval.h). */
#define _POSIX_C_SOURCE 200809L
#include "eval.h"

#include "../ckpt/ckpt.h"
#include "../ckpt/ckpt_model.h"
#include "../core/check.h"
#include "../core/fsutil.h"
#include "../core/interrupt.h"
#include "../core/log.h"
#include "../ops/ops.h"
#include "../train/signals.h"
#include "lm.h"
#include "tasks.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define HW_VERSION "0.1.0"
/* The source revision, given at build time (-DHW_GIT_REV="\"$(git rev-parse HEAD)\""). */
#ifndef HW_GIT_REV
#define HW_GIT_REV "unknown"
#endif

struct ckpt_item {
    char path[CKPT_PATH_LEN];
    long step;
};

static int by_step(const void *a, const void *b) {
    const struct ckpt_item *x = a, *y = b;
    return (x->step > y->step) - (x->step < y->step);
}

/* Expand eval.checkpoints: a directory means its ckpt_*.h5 in step order. */
static int list_checkpoints(const struct cfg_list *in, struct ckpt_item **out, int *n, char *err) {
    int cap = 16;
    *out = HW_MALLOC(sizeof(**out) * (size_t)cap);
    *n = 0;
    for (int i = 0; i < in->n; i++) {
        const char *p = in->item[i];
        struct stat st;
        if (stat(p, &st) != 0)
            return hw_errf(err, HW_EIO, "eval.checkpoints: %s: cannot open: %s", p,
                           strerror(errno));
        if (!S_ISDIR(st.st_mode)) {
            if (*n == cap)
                *out = HW_REALLOC(*out, sizeof(**out) * (size_t)(cap *= 2));
            snprintf((*out)[*n].path, CKPT_PATH_LEN, "%s", p);
            (*out)[(*n)++].step = -1;
            continue;
        }
        DIR *dir = opendir(p);
        if (!dir)
            return hw_errf(err, HW_EIO, "eval.checkpoints: %s: cannot list: %s", p,
                           strerror(errno));
        int first = *n;
        struct dirent *de;
        while ((de = readdir(dir))) {
            long step;
            char tail[8];
            if (sscanf(de->d_name, "ckpt_%ld.h%7s", &step, tail) != 2 || strcmp(tail, "5"))
                continue;
            if (*n == cap)
                *out = HW_REALLOC(*out, sizeof(**out) * (size_t)(cap *= 2));
            snprintf((*out)[*n].path, CKPT_PATH_LEN, "%s/%s", p, de->d_name);
            (*out)[(*n)++].step = step;
        }
        closedir(dir);
        if (*n == first)
            return hw_errf(err, HW_EIO,
                           "eval.checkpoints: %s: no checkpoint (ckpt_*.h5) in this "
                           "directory",
                           p);
        qsort(*out + first, (size_t)(*n - first), sizeof(**out), by_step);
    }
    if (*n == 0)
        return hw_errf(err, HW_ECONFIG,
                       "eval.checkpoints: empty; give a checkpoint file or a run "
                       "directory");
    return 0;
}

/* FNV-1a 64 of the file's bytes: identifies exactly which checkpoint was scored. */
static int file_hash(const char *path, char *out, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    uint64_t h = 1469598103934665603ULL;
    unsigned char buf[1 << 16];
    size_t got;
    while ((got = fread(buf, 1, sizeof(buf), f)) > 0)
        for (size_t i = 0; i < got; i++) {
            h ^= buf[i];
            h *= 1099511628211ULL;
        }
    fclose(f);
    snprintf(out, n, "fnv1a64:%016llx", (unsigned long long)h);
    return 0;
}

static void dirname_of(const char *path, char *out, size_t n) {
    const char *s = strrchr(path, '/');
    if (!s)
        snprintf(out, n, ".");
    else
        snprintf(out, n, "%.*s", (int)(s - path), path);
}

static void basename_noext(const char *path, char *out, size_t n) {
    const char *s = strrchr(path, '/');
    snprintf(out, n, "%.200s", s ? s + 1 : path);
    char *dot = strstr(out, ".h5");
    if (dot)
        *dot = 0;
}

static void print_table(const char *ckpt, long step, json_t *results) {
    printf("\n%s (step %ld)\n", ckpt, step);
    printf("| %-12s | %-22s | %12s | %10s |\n", "task", "metric", "value", "stderr");
    printf("|--------------|------------------------|--------------|------------|\n");
    const char *task;
    json_t *m;
    json_object_foreach(results, task, m) {
        const char *key;
        json_t *v;
        json_object_foreach(m, key, v) {
            if (strstr(key, "_stderr,") || !json_is_number(v))
                continue;
            char name[128], se_key[160];
            snprintf(name, sizeof(name), "%.*s", (int)(strchr(key, ',') - key), key);
            snprintf(se_key, sizeof(se_key), "%s_stderr,none", name);
            json_t *se = json_object_get(m, se_key);
            if (se && json_is_number(se))
                printf("| %-12s | %-22s | %12.6f | %10.6f |\n", task, name, json_number_value(v),
                       json_number_value(se));
            else
                printf("| %-12s | %-22s | %12.6f | %10s |\n", task, name, json_number_value(v), "");
        }
    }
    fflush(stdout);
}

static int by_doc_id(const void *a, const void *b) {
    json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a, "doc_id"));
    json_int_t y = json_integer_value(json_object_get(*(json_t *const *)b, "doc_id"));
    return (x > y) - (x < y);
}

/* Every rank's per-sample records of one task onto rank 0's list, sorted by doc_id, so the
 * samples file holds every example whatever the number of ranks. Collective. */
static void gather_samples(struct dist *d, json_t *mine, json_t *all) {
    char **strs = HW_CALLOC((size_t)d->world, sizeof(char *));
    strs[d->rank] = json_dumps(mine, JSON_COMPACT | JSON_PRESERVE_ORDER);
    dist_gather_strings(d, strs, d->world);
    if (d->rank == 0) {
        json_t *merged = json_array();
        for (int r = 0; r < d->world; r++) {
            json_t *part = strs[r] ? json_loads(strs[r], 0, NULL) : NULL;
            HW_ASSERT(part != NULL);
            json_array_extend(merged, part);
            json_decref(part);
        }
        size_t n = json_array_size(merged);
        json_t **v = HW_MALLOC(sizeof(json_t *) * (n ? n : 1));
        for (size_t i = 0; i < n; i++)
            v[i] = json_array_get(merged, i);
        qsort(v, n, sizeof(json_t *), by_doc_id);
        for (size_t i = 0; i < n; i++)
            json_array_append(all, v[i]);
        free(v);
        json_decref(merged);
    }
    for (int r = 0; r < d->world; r++)
        free(strs[r]);
    free(strs);
}

/* {path: sha256} of every data file the tasks read (task_info keys "<k>" + "<k>_sha256"). */
static json_t *data_files(json_t *infos) {
    json_t *out = json_object();
    const char *task, *key;
    json_t *info, *v;
    json_object_foreach(infos, task, info) {
        json_object_foreach(info, key, v) {
            size_t n = strlen(key);
            if (n <= 7 || strcmp(key + n - 7, "_sha256") || !strcmp(key, "prompt_template_sha256"))
                continue;
            char k[128];
            snprintf(k, sizeof(k), "%.*s", (int)(n - 7), key);
            json_t *path = json_object_get(info, k);
            if (json_is_string(path))
                json_object_set(out, json_string_value(path), v);
        }
    }
    return out;
}

static int check_tasks(const struct hw_config *c, char *err) {
    char where[CFG_PATH_MAX + 32];
    if (c->eval.tasks.n == 0) {
        cfg_where(c, "eval.tasks", where, sizeof(where));
        return hw_errf(err, HW_ECONFIG,
                       "%s: error: eval.tasks: empty; choose from "
                       "perplexity, multifc, multifc_classify, rolemrc",
                       where);
    }
    for (int i = 0; i < c->eval.tasks.n; i++)
        if (!eval_find_task(c->eval.tasks.item[i])) {
            char known[256] = "";
            for (int k = 0, n = 0; eval_tasks[k]; k++)
                n += snprintf(known + n, sizeof(known) - (size_t)n, "%s%s", k ? ", " : "",
                              eval_tasks[k]->name);
            cfg_where(c, "eval.tasks", where, sizeof(where));
            return hw_errf(err, HW_ECONFIG, "%s: error: eval.tasks: unknown task '%s' (known: %s)",
                           where, c->eval.tasks.item[i], known);
        }
    return 0;
}

int eval_run(const struct hw_config *c, struct dist *d) {
    char err[HW_ERR_LEN] = "";
    int rc = check_tasks(c, err);
    if (rc) {
        if (d->rank == 0)
            fprintf(stderr, "%s\n", err);
        return HW_EXIT_CONFIG;
    }
    struct ckpt_item *items = NULL;
    int n_items = 0;
    if ((rc = list_checkpoints(&c->eval.checkpoints, &items, &n_items, err))) {
        log_error("%s", err);
        free(items);
        return rc == HW_ECONFIG ? HW_EXIT_CONFIG : HW_EXIT_FAIL;
    }
    char outdir[CKPT_PATH_LEN + 64];
    if (c->eval.output[0])
        snprintf(outdir, sizeof(outdir), "%s", c->eval.output);
    else {
        char run[CKPT_PATH_LEN];
        dirname_of(items[0].path, run, sizeof(run));
        snprintf(outdir, sizeof(outdir), "%s/eval", run);
    }
    if (d->rank == 0 && (rc = fs_mkdirs(outdir, err))) {
        log_error("%s", err);
        free(items);
        return HW_EXIT_FAIL;
    }
    /* scores must not depend on the rank or thread layout: one BLAS thread per rank (run more
     * ranks for more speed); our own kernels' results do not depend on their thread count */
    ops_set_threads(dist_threads_per_rank(d));
    ops_set_blas_threads(1);
    /* the job's run.backend runs every checkpoint's model (the stored configs' are ignored) */
    const char *why = NULL;
    const struct ops *be = ops_by_name(c->run.backend, &why);
    if (!be) {
        char err2[HW_ERR_LEN];
        cfg_key_error(c, "run.backend", why ? why : "unknown backend", err2);
        log_error("%s", err2);
        return HW_EXIT_CONFIG;
    }
    char device[96];
    dist_select_device(d, be, device, sizeof(device));
    char *eval_yaml = cfg_to_yaml(c);
    json_t *summary = json_array();
    int exit_code = HW_EXIT_OK;
    log_info("headwise eval: %d checkpoint(s) x %d task(s) on %d rank(s) (rank 0: %s); results "
             "in %s",
             n_items, c->eval.tasks.n, d->world, device, outdir);
    for (int k = 0; k < n_items && exit_code == HW_EXIT_OK; k++) {
        struct hw_config mc;
        struct bpe tok;
        struct gpt m;
        int64_t step = 0;
        char file[CKPT_PATH_LEN];
        memset(&m, 0, sizeof(m));
        rc = ckpt_load_model(d, items[k].path, be, &mc, &tok, &m, &step, file, err);
        if (dist_allreduce_max_int(d, rc ? 1 : 0)) {
            log_error("%s", rc ? err : "checkpoint load failed on another rank");
            bpe_free(&tok);
            gpt_free(&m);
            exit_code = rc == HW_ECONFIG || rc == HW_EMISMATCH ? HW_EXIT_CONFIG : HW_EXIT_FAIL;
            break;
        }
        struct lm lm = {.m = &m,
                        .tok = &tok,
                        .batch = c->eval.batch_size,
                        .max_T = mc.model.max_seq,
                        .eot = bpe_special_id(&tok, "<|endoftext|>")};
        json_t *results = json_object(), *infos = json_object(), *versions = json_object();
        json_t *nsamp = json_object();
        json_t *samples = c->eval.log_samples ? json_array() : NULL;
        double t_all = log_now();
        for (int t = 0; t < c->eval.tasks.n; t++) {
            const struct eval_task *task = eval_find_task(c->eval.tasks.item[t]);
            /* a stop request (signal, HW_STOP_FILE), agreed by every rank, between two tasks:
             * the finished checkpoints' results are written, this one's are not */
            const int sig = dist_allreduce_max_int(d, signals_pending());
            if (sig) {
                log_info("stopped by signal %d before task %s of %s: its results are not "
                         "written; exit code %d asks to be requeued",
                         sig, task->name, file, HW_EXIT_REQUEUE);
                exit_code = HW_EXIT_REQUEUE;
                break;
            }
            json_t *met = json_object(), *info = json_object();
            json_t *task_samples = samples ? json_array() : NULL;
            struct eval_ctx ctx = {.c = c, .mc = &mc, .d = d, .lm = &lm, .samples = task_samples};
            lm.n_truncated = 0;
            double t0 = log_now();
            err[0] = 0;
            /* a stop request during the task: the rank that sees it tells the others at once,
             * and each ends its part before its next forward pass (see signals_notice_poll) */
            struct dist_notice *notice = dist_notice_open(d);
            lm.stop_poll = signals_notice_poll;
            lm.stop_arg = notice;
            hw_interrupt_set(signals_notice_poll, notice); /* the task's data loading */
            rc = task->run(&ctx, met, info, err);
            hw_interrupt_set(NULL, NULL);
            lm.stop_poll = NULL;
            lm.stop_arg = NULL;
            if (dist_notice_close(notice)) {
                if (rc == HW_ESTOP && err[0])
                    log_info("%s", err); /* where this rank's part stopped */
                log_info("stopped by a signal during task %s of %s (%.1f s in): its results are "
                         "not written; exit code %d asks to be requeued",
                         task->name, file, log_now() - t0, HW_EXIT_REQUEUE);
                json_decref(met);
                json_decref(info);
                json_decref(task_samples);
                exit_code = HW_EXIT_REQUEUE;
                break;
            }
            if (dist_allreduce_max_int(d, rc ? 1 : 0)) {
                log_error("%s: %s", task->name, err[0] ? err : "failed on another rank");
                json_decref(met);
                json_decref(info);
                json_decref(task_samples);
                exit_code = rc == HW_ECONFIG ? HW_EXIT_CONFIG : HW_EXIT_FAIL;
                break;
            }
            if (samples) {
                gather_samples(d, task_samples, samples);
                json_decref(task_samples);
            }
            json_object_set_new(info, "seconds", json_real(log_now() - t0));
            json_object_set_new(met, "alias", json_string(task->name));
            json_object_set_new(results, task->name, met);
            json_object_set_new(infos, task->name, info);
            json_object_set_new(versions, task->name, json_string(task->version));
            json_t *cnt = json_object_get(info, "test_examples");
            if (!cnt)
                cnt = json_object_get(info, "samples");
            if (!cnt)
                cnt = json_object_get(info, "windows");
            json_object_set_new(nsamp, task->name, json_deep_copy(cnt ? cnt : json_null()));
        }
        if (exit_code == HW_EXIT_OK && d->rank == 0) {
            char hash[64] = "", name[256], path[CKPT_PATH_LEN + 400];
            file_hash(file, hash, sizeof(hash));
            basename_noext(file, name, sizeof(name));
            time_t now = time(NULL);
            char date[64];
            strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
            char *model_yaml = cfg_to_yaml(&mc);
            json_t *doc = json_pack(
                "{s:O,s:O,s:O,s:O,s:o,s:{s:s,s:I,s:s},s:s,s:s,s:s,s:s,s:s,s:{s:i,s:i},s:f}",
                "results", results, "task_info", infos, "versions", versions, "n-samples", nsamp,
                "data_files", data_files(infos), "checkpoint", "path", file, "step",
                (json_int_t)step, "hash", hash, "config", eval_yaml, "model_config", model_yaml,
                "headwise_version", HW_VERSION, "headwise_git_rev", HW_GIT_REV, "date", date,
                "grid", "ranks", d->world, "batch_size", c->eval.batch_size,
                "total_evaluation_time_seconds", log_now() - t_all);
            HW_ASSERT(doc != NULL);
            snprintf(path, sizeof(path), "%s/results_%s.json", outdir, name);
            char *text =
                json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
            if (fs_write_atomic(path, text, strlen(text), err)) {
                log_error("%s", err);
                exit_code = HW_EXIT_FAIL;
            }
            free(text);
            if (samples) {
                snprintf(path, sizeof(path), "%s/samples_%s.jsonl", outdir, name);
                FILE *f = fs_create(path, err); /* never through a planted link */
                if (!f) {
                    log_error("%s", err);
                    exit_code = HW_EXIT_FAIL;
                }
                size_t i;
                json_t *s;
                json_array_foreach(samples, i, s) {
                    char *line = json_dumps(s, JSON_COMPACT | JSON_PRESERVE_ORDER);
                    HW_ASSERT(line != NULL); /* every string went through eval_text */
                    if (f)
                        fprintf(f, "%s\n", line);
                    free(line);
                }
                if (f)
                    fclose(f);
            }
            print_table(file, (long)step, results);
            printf("results: %s/results_%s.json\n", outdir, name);
            json_array_append_new(summary, json_pack("{s:s,s:I,s:O}", "checkpoint", file, "step",
                                                     (json_int_t)step, "results", results));
            json_decref(doc);
            free(model_yaml);
        }
        json_decref(results);
        json_decref(infos);
        json_decref(versions);
        json_decref(nsamp);
        json_decref(samples);
        bpe_free(&tok);
        gpt_free(&m);
    }
    if (exit_code == HW_EXIT_OK && d->rank == 0 && n_items > 1) {
        /* metric against step, one column per task metric */
        printf("\nmetric against step\n| %-8s |", "step");
        json_t *first = json_object_get(json_array_get(summary, 0), "results");
        const char *task;
        json_t *m;
        json_object_foreach(first, task, m) {
            const char *key;
            json_t *v;
            json_object_foreach(m, key, v) if (json_is_number(v) && !strstr(key, "_stderr"))
                printf(" %s/%.*s |", task, (int)(strchr(key, ',') - key), key);
        }
        printf("\n");
        size_t i;
        json_t *row;
        json_array_foreach(summary, i, row) {
            printf("| %8lld |", (long long)json_integer_value(json_object_get(row, "step")));
            json_object_foreach(json_object_get(row, "results"), task, m) {
                const char *key;
                json_t *v;
                json_object_foreach(m, key, v) if (json_is_number(v) && !strstr(key, "_stderr"))
                    printf(" %12.6f |", json_number_value(v));
            }
            printf("\n");
        }
        char path[CKPT_PATH_LEN + 128];
        snprintf(path, sizeof(path), "%s/summary.json", outdir);
        char *text = json_dumps(summary, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fs_write_atomic(path, text, strlen(text), err);
        free(text);
        printf("summary: %s\n", path);
    }
    json_decref(summary);
    free(eval_yaml);
    free(items);
    return exit_code;
}
