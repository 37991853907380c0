/* report/report.c -- run dashboards (see report.h): read metrics.jsonl into columns, the
 * checkpoints, the resolved config and the eval results of a run directory, then write the
 * SVG plots (svg.h), index.html and summary.md. Also one run's headline numbers
 * (report_run_load) for the sweep report of report/sweep.c. */
#define _XOPEN_SOURCE 700 /* realpath, getline, gmtime_r */
#include "report.h"

#include "../config/config.h"
#include "../core/check.h"
#include "../core/fsutil.h"
#include "svg.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

// ---------------------------------------------------------------------------------------------
// metrics.jsonl

/* numeric fields of a metrics line, one column each (NaN = absent, null, NaN or Inf) */
enum col { C_LOSS, C_LR, C_GNORM, C_TPS, C_MFU, C_VLOSS, C_VACC, C_VF1, C_STEP_S, C_COMM_S, N_COL };
static const char *const col_key[N_COL] = {"loss",   "lr",       "grad_norm", "tokens_per_s",
                                           "mfu",    "val_loss", "val_acc",   "val_f1_macro",
                                           "step_s", "comm_s"};

#define MAX_COMM_KINDS 32
#define MAX_MOH_LAYERS 1024

struct comm_kind {
    char name[64];
    double *bytes; /* (cap) bytes sent by rank 0 in this step; NaN = not logged */
    double *s;     /* (cap) seconds rank 0 waited */
};

struct metrics {
    size_t n, cap;
    double *step;       /* (cap) */
    double *col[N_COL]; /* (cap) each */
    int moh_layers;     /* L; 0 = no line had moh_usage */
    double *moh;        /* (cap, L, 3): mean, min, max of each layer's per-head fractions */
    int n_comm;
    struct comm_kind comm[MAX_COMM_KINDS];
};

static void metrics_free(struct metrics *m) {
    free(m->step);
    for (int c = 0; c < N_COL; c++)
        free(m->col[c]);
    free(m->moh);
    for (int k = 0; k < m->n_comm; k++) {
        free(m->comm[k].bytes);
        free(m->comm[k].s);
    }
    memset(m, 0, sizeof(*m));
}

static double *grow_nan(double *p, size_t old_cap, size_t cap, size_t width) {
    p = HW_REALLOC(p, cap * width * sizeof(*p));
    for (size_t i = old_cap * width; i < cap * width; i++)
        p[i] = NAN;
    return p;
}

/* room for row m->n, every field NaN */
static void metrics_push(struct metrics *m, double step) {
    if (m->n == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 1024;
        m->step = grow_nan(m->step, m->cap, cap, 1);
        for (int c = 0; c < N_COL; c++)
            m->col[c] = grow_nan(m->col[c], m->cap, cap, 1);
        if (m->moh_layers)
            m->moh = grow_nan(m->moh, m->cap, cap, (size_t)m->moh_layers * 3);
        for (int k = 0; k < m->n_comm; k++) {
            m->comm[k].bytes = grow_nan(m->comm[k].bytes, m->cap, cap, 1);
            m->comm[k].s = grow_nan(m->comm[k].s, m->cap, cap, 1);
        }
        m->cap = cap;
    }
    m->step[m->n] = step;
    for (int c = 0; c < N_COL; c++)
        m->col[c][m->n] = NAN;
    for (size_t i = 0; i < (size_t)m->moh_layers * 3; i++)
        m->moh[m->n * (size_t)m->moh_layers * 3 + i] = NAN;
    for (int k = 0; k < m->n_comm; k++)
        m->comm[k].bytes[m->n] = m->comm[k].s[m->n] = NAN;
    m->n++;
}

/* widen the moh array to L layers, keeping the rows already read */
static void moh_widen(struct metrics *m, int L) {
    double *w = HW_MALLOC(m->cap * (size_t)L * 3 * sizeof(*w));
    for (size_t i = 0; i < m->cap * (size_t)L * 3; i++)
        w[i] = NAN;
    for (size_t r = 0; r < m->n; r++)
        for (int l = 0; l < m->moh_layers; l++)
            for (int k = 0; k < 3; k++)
                w[(r * L + l) * 3 + k] = m->moh[(r * m->moh_layers + l) * 3 + k];
    free(m->moh);
    m->moh = w;
    m->moh_layers = L;
}

static struct comm_kind *comm_kind_get(struct metrics *m, const char *name) {
    for (int k = 0; k < m->n_comm; k++)
        if (!strcmp(m->comm[k].name, name))
            return &m->comm[k];
    if (m->n_comm == MAX_COMM_KINDS)
        return NULL;
    struct comm_kind *ck = &m->comm[m->n_comm++];
    snprintf(ck->name, sizeof(ck->name), "%s", name);
    ck->bytes = grow_nan(NULL, 0, m->cap, 1);
    ck->s = grow_nan(NULL, 0, m->cap, 1);
    return ck;
}

/* Bare NaN, Infinity and -Infinity (Python's json.dumps writes them) become null, which
 * jansson accepts; text inside strings is left alone. Caller frees. */
static char *nan_to_null(const char *line) {
    size_t n = strlen(line);
    char *out = HW_MALLOC(2 * n + 1);
    size_t k = 0;
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = line[i];
        if (in_str) {
            out[k++] = ch;
            if (ch == '\\' && i + 1 < n)
                out[k++] = line[++i];
            else if (ch == '"')
                in_str = 0;
            continue;
        }
        if (ch == '"')
            in_str = 1;
        const char *tok = NULL;
        if (!strncmp(line + i, "NaN", 3))
            tok = "NaN";
        else if (!strncmp(line + i, "-Infinity", 9))
            tok = "-Infinity";
        else if (!strncmp(line + i, "Infinity", 8))
            tok = "Infinity";
        if (tok) {
            memcpy(out + k, "null", 4);
            k += 4;
            i += strlen(tok) - 1;
        } else {
            out[k++] = ch;
        }
    }
    out[k] = 0;
    return out;
}

static const char *json_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "a list";
    case JSON_STRING:
        return "a string";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "a number";
    }
}

/* one per-head usage list -> mean, min, max; 0 or -1 when it is not a list of numbers */
static int moh_layer_stats(const json_t *heads, double out[3]) {
    if (!json_is_array(heads) || json_array_size(heads) == 0)
        return -1;
    double sum = 0, lo = INFINITY, hi = -INFINITY;
    size_t i;
    json_t *v;
    json_array_foreach(heads, i, v) {
        if (json_is_null(v)) { /* an unmeasured head: leave the layer out at this step */
            out[0] = out[1] = out[2] = NAN;
            return 0;
        }
        if (!json_is_number(v))
            return -1;
        double x = json_number_value(v);
        sum += x;
        lo = fmin(lo, x);
        hi = fmax(hi, x);
    }
    out[0] = sum / (double)json_array_size(heads);
    out[1] = lo;
    out[2] = hi;
    return 0;
}

static int parse_line(struct metrics *m, const json_t *j, const char *path, int lineno, char *err) {
    if (!json_is_object(j))
        return hw_errf(err, HW_EFORMAT, "%s:%d: error: expected a JSON object, got %s", path,
                       lineno, json_type_name(j));
    json_t *s = json_object_get(j, "step");
    if (!json_is_number(s))
        return hw_errf(err, HW_EFORMAT, "%s:%d: error: %s \"step\" (expected a number)", path,
                       lineno, s ? "non-numeric" : "missing");
    double step = json_number_value(s);
    /* a resumed run re-logs the steps after its checkpoint: the later lines win */
    while (m->n && m->step[m->n - 1] >= step)
        m->n--;
    for (int c = 0; c < N_COL; c++) {
        json_t *v = json_object_get(j, col_key[c]);
        if (v && !json_is_null(v) && !json_is_number(v))
            return hw_errf(err, HW_EFORMAT, "%s:%d: error: \"%s\" is %s, expected a number or null",
                           path, lineno, col_key[c], json_type_name(v));
    }
    json_t *comm = json_object_get(j, "comm");
    if (comm && !json_is_null(comm) && !json_is_object(comm))
        return hw_errf(err, HW_EFORMAT, "%s:%d: error: \"comm\" is %s, expected an object", path,
                       lineno, json_type_name(comm));
    json_t *moh = json_object_get(j, "moh_usage");
    if (moh && !json_is_null(moh) && !json_is_array(moh))
        return hw_errf(err, HW_EFORMAT,
                       "%s:%d: error: \"moh_usage\" is %s, expected a list of per-layer lists "
                       "of head fractions",
                       path, lineno, json_type_name(moh));
    metrics_push(m, step);
    size_t r = m->n - 1;
    for (int c = 0; c < N_COL; c++) {
        json_t *v = json_object_get(j, col_key[c]);
        if (json_is_number(v))
            m->col[c][r] = json_number_value(v);
    }
    if (json_is_object(comm)) {
        const char *kind;
        json_t *kv;
        json_object_foreach(comm, kind, kv) {
            json_t *b = json_object_get(kv, "bytes"), *sec = json_object_get(kv, "s");
            if (!json_is_object(kv) || (b && !json_is_number(b)) || (sec && !json_is_number(sec)))
                return hw_errf(err, HW_EFORMAT,
                               "%s:%d: error: \"comm\".\"%s\" must be {\"bytes\": number, \"s\": "
                               "number}",
                               path, lineno, kind);
            struct comm_kind *ck = comm_kind_get(m, kind);
            if (!ck)
                continue;
            ck->bytes[r] = b ? json_number_value(b) : NAN;
            ck->s[r] = sec ? json_number_value(sec) : NAN;
        }
    }
    if (json_is_array(moh) && json_array_size(moh) > 0) {
        int L = (int)json_array_size(moh);
        if (L > MAX_MOH_LAYERS)
            return hw_errf(err, HW_EFORMAT,
                           "%s:%d: error: \"moh_usage\" has %d layers (at most %d)", path, lineno,
                           L, MAX_MOH_LAYERS);
        if (L > m->moh_layers)
            moh_widen(m, L);
        for (int l = 0; l < L; l++) {
            double st[3];
            if (moh_layer_stats(json_array_get(moh, (size_t)l), st) != 0)
                return hw_errf(err, HW_EFORMAT,
                               "%s:%d: error: \"moh_usage\"[%d] is not a list of numbers "
                               "(expected one fraction per head)",
                               path, lineno, l);
            memcpy(&m->moh[(r * (size_t)m->moh_layers + (size_t)l) * 3], st, sizeof(st));
        }
    }
    return 0;
}

/* every line of path into m; 0 lines read is not an error here */
static int metrics_read(struct metrics *m, const char *path, char *err) {
    FILE *f = fs_fopen_read(path, err);
    if (!f)
        return HW_EIO;
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, rc = 0;
    while (getline(&line, &cap, f) > 0) {
        lineno++;
        if (strspn(line, " \t\r\n") == strlen(line))
            continue;
        char *clean = nan_to_null(line);
        json_error_t je;
        json_t *j = json_loads(clean, 0, &je);
        free(clean);
        if (!j) {
            if (je.column > 0)
                rc = hw_errf(err, HW_EFORMAT, "%s:%d: error: %s (column %d)", path, lineno, je.text,
                             je.column);
            else
                rc = hw_errf(err, HW_EFORMAT, "%s:%d: error: %s (a truncated line?)", path, lineno,
                             je.text);
            break;
        }
        rc = parse_line(m, j, path, lineno, err);
        json_decref(j);
        if (rc)
            break;
    }
    free(line);
    fclose(f);
    return rc;
}

static int metrics_load(struct metrics *m, const char *path, char *err) {
    int rc = metrics_read(m, path, err);
    if (!rc && m->n == 0)
        rc = hw_errf(err, HW_EFORMAT, "%s: no steps logged yet", path);
    return rc;
}

/* the row logged at exactly this step, or -1 */
static long row_at(const struct metrics *m, double step) {
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (m->step[mid] < step)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < m->n && m->step[lo] == step ? (long)lo : -1;
}

// ---------------------------------------------------------------------------------------------
// summary statistics

struct pick {
    double v;    /* NaN when the column has no finite value */
    double step; /* where */
};

/* which: 0 first finite, 1 last finite, 2 minimum, 3 maximum */
static struct pick col_pick(const struct metrics *m, const double *c, int which) {
    struct pick p = {NAN, NAN};
    for (size_t i = 0; i < m->n; i++) {
        if (!isfinite(c[i]))
            continue;
        int take =
            which == 1 || isnan(p.v) || (which == 2 && c[i] < p.v) || (which == 3 && c[i] > p.v);
        if (take) {
            p.v = c[i];
            p.step = m->step[i];
        }
        if (which == 0)
            break;
    }
    return p;
}

/* mean of the finite values, leaving out the first row (start-up) when there are others */
static double col_mean(const struct metrics *m, const double *c) {
    double s = 0;
    size_t k = 0;
    for (size_t i = m->n > 1 ? 1 : 0; i < m->n; i++)
        if (isfinite(c[i])) {
            s += c[i];
            k++;
        }
    return k ? s / (double)k : NAN;
}

/* rows where the column is absent, null, NaN or Inf (the trainer stops on a non-finite loss;
 * other writers may log one) */
static size_t col_count_nonfinite(const struct metrics *m, const double *c) {
    size_t k = 0;
    for (size_t i = 0; i < m->n; i++)
        k += !isfinite(c[i]);
    return k;
}

// ---------------------------------------------------------------------------------------------
// checkpoints, config, eval results

struct ckpt_file {
    char name[256];
    long step;
    long long bytes;
    double val_loss; /* logged at exactly this step, else NaN */
};

struct ckpts {
    int n;
    struct ckpt_file *f; /* (n) sorted by step */
    char latest[256];    /* content of RUN_DIR/latest, "" if absent */
    int best;            /* index into f, -1 = none */
    int best_by_val;     /* 1: lowest val_loss; 0: newest */
};

static int ckpt_cmp(const void *a, const void *b) {
    long x = ((const struct ckpt_file *)a)->step, y = ((const struct ckpt_file *)b)->step;
    return (x > y) - (x < y);
}

/* the first word of RUN_DIR/latest, "" when there is none */
static void read_latest(const char *run, char *out, size_t n) {
    char p[REPORT_PATH_MAX * 2], e[HW_ERR_LEN];
    snprintf(p, sizeof(p), "%s/latest", run);
    char *txt = fs_read_all(p, NULL, e);
    out[0] = 0;
    if (txt) {
        snprintf(out, n, "%.*s", (int)strcspn(txt, " \t\r\n"), txt);
        free(txt);
    }
}

static void ckpts_scan(struct ckpts *c, const char *run, const struct metrics *m) {
    memset(c, 0, sizeof(*c));
    c->best = -1;
    DIR *dir = opendir(run);
    if (dir) {
        struct dirent *e;
        int cap = 0;
        while ((e = readdir(dir))) {
            const char *nm = e->d_name;
            size_t len = strlen(nm);
            char *end;
            if (strncmp(nm, "ckpt_", 5) || len < 9 || strcmp(nm + len - 3, ".h5") ||
                len >= sizeof(c->f[0].name))
                continue;
            long step = strtol(nm + 5, &end, 10);
            if (end != nm + len - 3 || end == nm + 5)
                continue;
            if (c->n == cap) {
                cap = cap ? 2 * cap : 16;
                c->f = HW_REALLOC(c->f, (size_t)cap * sizeof(*c->f));
            }
            struct ckpt_file *f = &c->f[c->n++];
            snprintf(f->name, sizeof(f->name), "%s", nm);
            f->step = step;
            char p[REPORT_PATH_MAX * 2];
            snprintf(p, sizeof(p), "%s/%s", run, nm);
            struct stat st;
            f->bytes = stat(p, &st) == 0 ? (long long)st.st_size : -1;
            long r = row_at(m, (double)step);
            f->val_loss = r >= 0 ? m->col[C_VLOSS][r] : NAN;
        }
        closedir(dir);
    }
    if (c->n)
        qsort(c->f, (size_t)c->n, sizeof(*c->f), ckpt_cmp);
    read_latest(run, c->latest, sizeof(c->latest));
    for (int i = 0; i < c->n; i++)
        if (isfinite(c->f[i].val_loss) &&
            (c->best < 0 || c->f[i].val_loss < c->f[c->best].val_loss)) {
            c->best = i;
            c->best_by_val = 1;
        }
    if (c->best < 0 && c->n) {
        c->best = c->n - 1;
        for (int i = 0; i < c->n; i++)
            if (!strcmp(c->f[i].name, c->latest))
                c->best = i;
    }
}

/* one checkpoint's lm-eval-like "results" object */
struct eval_ckpt {
    char name[256]; /* checkpoint file name */
    double step;
    json_t *results; /* owned reference */
};

struct evals {
    int n;
    struct eval_ckpt *e; /* (n) sorted by step */
    int n_rows;
    struct eval_row {
        char task[128];
        char metric[128]; /* key without ",none" */
        char key[160];    /* "<metric>,<filter>" */
        char se_key[176]; /* "<metric>_stderr,<filter>" */
    } * rows;             /* (n_rows) metrics in order of first appearance */
    char source[64];      /* "results_*.json" or "summary.json" */
};

static int eval_cmp(const void *a, const void *b) {
    double x = ((const struct eval_ckpt *)a)->step, y = ((const struct eval_ckpt *)b)->step;
    return (x > y) - (x < y);
}

static void evals_add(struct evals *ev, const json_t *ckpt_path, const json_t *step,
                      json_t *results) {
    if (!json_is_object(results))
        return;
    const char *p = json_is_string(ckpt_path) ? json_string_value(ckpt_path) : "?";
    const char *base = strrchr(p, '/');
    /* the same checkpoint twice: keep the later file */
    for (int i = 0; i < ev->n; i++)
        if (!strcmp(ev->e[i].name, base ? base + 1 : p)) {
            json_decref(ev->e[i].results);
            ev->e[i] = ev->e[--ev->n];
        }
    ev->e = HW_REALLOC(ev->e, (size_t)(ev->n + 1) * sizeof(*ev->e));
    struct eval_ckpt *e = &ev->e[ev->n++];
    snprintf(e->name, sizeof(e->name), "%s", base ? base + 1 : p);
    e->step = json_is_number(step) ? json_number_value(step) : NAN;
    e->results = json_incref(results);
}

static void evals_rows(struct evals *ev) {
    for (int i = 0; i < ev->n; i++) {
        const char *task, *key;
        json_t *tv, *v;
        json_object_foreach(ev->e[i].results, task, tv) {
            if (!json_is_object(tv))
                continue;
            json_object_foreach(tv, key, v) {
                const char *comma = strchr(key, ',');
                size_t ml = comma ? (size_t)(comma - key) : strlen(key);
                if (!json_is_number(v) || ml == 0 || ml >= 128 || strlen(key) >= 160 ||
                    strlen(task) >= 128)
                    continue;
                if (ml > 7 && !strncmp(key + ml - 7, "_stderr", 7))
                    continue;
                int seen = 0;
                for (int r = 0; r < ev->n_rows && !seen; r++)
                    seen = !strcmp(ev->rows[r].task, task) && !strcmp(ev->rows[r].key, key);
                if (seen)
                    continue;
                ev->rows = HW_REALLOC(ev->rows, (size_t)(ev->n_rows + 1) * sizeof(*ev->rows));
                struct eval_row *row = &ev->rows[ev->n_rows++];
                snprintf(row->task, sizeof(row->task), "%s", task);
                snprintf(row->key, sizeof(row->key), "%s", key);
                if (comma && strcmp(comma, ",none"))
                    snprintf(row->metric, sizeof(row->metric), "%s", key);
                else
                    snprintf(row->metric, sizeof(row->metric), "%.*s", (int)ml, key);
                snprintf(row->se_key, sizeof(row->se_key), "%.*s_stderr%s", (int)ml, key,
                         comma ? comma : "");
            }
        }
    }
}

/* value and stderr of row r at checkpoint i (NaN when absent) */
static void eval_value(const struct evals *ev, int i, int r, double *v, double *se) {
    json_t *t = json_object_get(ev->e[i].results, ev->rows[r].task);
    json_t *x = json_object_get(t, ev->rows[r].key), *s = json_object_get(t, ev->rows[r].se_key);
    *v = json_is_number(x) ? json_number_value(x) : NAN;
    *se = json_is_number(s) ? json_number_value(s) : NAN;
}

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static void evals_load(struct evals *ev, const char *run) {
    memset(ev, 0, sizeof(*ev));
    char dir[REPORT_PATH_MAX * 2], p[REPORT_PATH_MAX * 3];
    snprintf(dir, sizeof(dir), "%s/eval", run);
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (strncmp(e->d_name, "results_", 8) || !ends_with(e->d_name, ".json"))
                continue;
            snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
            json_error_t je;
            json_t *j = json_load_file(p, 0, &je);
            if (!j || !json_is_object(json_object_get(j, "results"))) {
                fprintf(stderr, "warning: %s:%d: %s; left out of the report\n", p, j ? 1 : je.line,
                        j ? "no \"results\" object" : je.text);
                json_decref(j);
                continue;
            }
            json_t *ck = json_object_get(j, "checkpoint");
            evals_add(ev, json_object_get(ck, "path"), json_object_get(ck, "step"),
                      json_object_get(j, "results"));
            json_decref(j);
        }
        closedir(d);
        snprintf(ev->source, sizeof(ev->source), "eval/results_*.json");
    }
    if (ev->n == 0) {
        snprintf(p, sizeof(p), "%s/summary.json", dir);
        json_error_t je;
        json_t *j = json_load_file(p, 0, &je);
        size_t i;
        json_t *v;
        if (j && json_is_array(j))
            json_array_foreach(j, i, v)
                evals_add(ev, json_object_get(v, "checkpoint"), json_object_get(v, "step"),
                          json_object_get(v, "results"));
        else if (j || file_exists(p))
            fprintf(stderr, "warning: %s: %s; left out of the report\n", p,
                    j ? "expected a list" : je.text);
        json_decref(j);
        snprintf(ev->source, sizeof(ev->source), "eval/summary.json");
    }
    if (ev->n)
        qsort(ev->e, (size_t)ev->n, sizeof(*ev->e), eval_cmp);
    evals_rows(ev);
}

static void evals_free(struct evals *ev) {
    for (int i = 0; i < ev->n; i++)
        json_decref(ev->e[i].results);
    free(ev->e);
    free(ev->rows);
}

// ---------------------------------------------------------------------------------------------
// the report

enum plot { P_LOSS, P_LR, P_THROUGHPUT, P_GNORM, P_EVAL, P_MOH, N_PLOT };
static const char *const plot_name[N_PLOT] = {"loss",      "lr",   "throughput",
                                              "grad_norm", "eval", "moh_usage"};

struct report {
    char run[REPORT_PATH_MAX]; /* as given, without trailing slashes */
    char out[REPORT_PATH_MAX];
    char run_abs[4096];   /* realpath of run */
    char out_abs[4096];   /* realpath of out */
    const char *run_name; /* last component of run_abs */
    struct metrics m;
    struct ckpts ck;
    struct evals ev;
    struct hw_config *cfg; /* NULL when config.yaml is missing or does not load */
    char cfg_err[HW_ERR_LEN];
    char *cfg_text; /* config.yaml as written, NULL if missing */
    int written[N_PLOT];
    struct report_files *files;
};

static void add_file(struct report *r, const char *path) {
    if (r->files->n < REPORT_MAX_FILES)
        snprintf(r->files->path[r->files->n++], REPORT_PATH_MAX, "%s", path);
}

static int write_text(struct report *r, const char *name, const struct svg_buf *b, char *err) {
    char p[REPORT_PATH_MAX];
    if (snprintf(p, sizeof(p), "%s/%s", r->out, name) >= (int)sizeof(p))
        return hw_errf(err, HW_EIO, "%s/%s: path too long", r->out, name);
    int rc = fs_write_atomic(p, b->s ? b->s : "", b->n, err);
    if (!rc)
        add_file(r, p);
    return rc;
}

static int write_plot(struct report *r, enum plot which, const struct svg_figure *f, char *err) {
    struct svg_buf b = {0};
    char name[64];
    svg_render(&b, f);
    snprintf(name, sizeof(name), "%s.svg", plot_name[which]);
    int rc = write_text(r, name, &b, err);
    svg_buf_free(&b);
    r->written[which] = !rc;
    return rc;
}

/* (x, y) of the rows where y is finite: for sparse series (validation). Caller frees both. */
static size_t sparse(const struct metrics *m, const double *y, double **xs, double **ys) {
    *xs = HW_MALLOC((m->n ? m->n : 1) * sizeof(**xs));
    *ys = HW_MALLOC((m->n ? m->n : 1) * sizeof(**ys));
    size_t k = 0;
    for (size_t i = 0; i < m->n; i++)
        if (isfinite(y[i])) {
            (*xs)[k] = m->step[i];
            (*ys)[k++] = y[i];
        }
    return k;
}

static int has_col(const struct metrics *m, enum col c) {
    for (size_t i = 0; i < m->n; i++)
        if (isfinite(m->col[c][i]))
            return 1;
    return 0;
}

static struct svg_series dense(const char *name, const struct metrics *m, const double *y,
                               int color) {
    struct svg_series s = {.name = name, .x = m->step, .y = y, .n = m->n, .color = color};
    return s;
}

static int plot_loss(struct report *r, char *err) {
    const struct metrics *m = &r->m;
    double *vx, *vy, *ax, *ay, *fx, *fy;
    size_t nv = sparse(m, m->col[C_VLOSS], &vx, &vy);
    size_t na = sparse(m, m->col[C_VACC], &ax, &ay);
    size_t nf = sparse(m, m->col[C_VF1], &fx, &fy);
    struct svg_series s0[2] = {
        dense("train loss", m, m->col[C_LOSS], 0),
        {.name = "val loss", .x = vx, .y = vy, .n = nv, .color = 1, .markers = 1}};
    struct svg_series s1[2] = {
        {.name = "val accuracy", .x = ax, .y = ay, .n = na, .color = 2, .markers = 1},
        {.name = "val macro F1", .x = fx, .y = fy, .n = nf, .color = 4, .markers = 1}};
    struct svg_panel p[2] = {{"loss", "loss (nats/token)", s0, nv ? 2 : 1, 0},
                             {"validation accuracy and macro F1", "score", s1, 2, 0}};
    char title[300];
    snprintf(title, sizeof(title), "%s: loss", r->run_name);
    struct svg_figure f = {.title = title,
                           .xlabel = "step",
                           .panels = p,
                           .n_panels = na || nf ? 2 : 1,
                           .x_integer = 1};
    int rc = write_plot(r, P_LOSS, &f, err);
    free(vx), free(vy), free(ax), free(ay), free(fx), free(fy);
    return rc;
}

static int plot_lr(struct report *r, char *err) {
    struct svg_series s = dense("learning rate", &r->m, r->m.col[C_LR], 0);
    struct svg_panel p = {"learning rate", "lr", &s, 1, 1};
    char title[300];
    snprintf(title, sizeof(title), "%s: learning rate", r->run_name);
    struct svg_figure f = {
        .title = title, .xlabel = "step", .panels = &p, .n_panels = 1, .x_integer = 1};
    return write_plot(r, P_LR, &f, err);
}

static int plot_throughput(struct report *r, char *err) {
    const struct metrics *m = &r->m;
    double *frac = HW_MALLOC((m->n ? m->n : 1) * sizeof(*frac));
    int has_comm = 0;
    for (size_t i = 0; i < m->n; i++) {
        double c = m->col[C_COMM_S][i], s = m->col[C_STEP_S][i];
        frac[i] = isfinite(c) && isfinite(s) && s > 0 ? c / s : NAN;
        has_comm |= isfinite(frac[i]);
    }
    struct svg_series s0 = dense("tokens/s", m, m->col[C_TPS], 0);
    struct svg_series s1 = dense("comm_s / step_s", m, frac, 3);
    struct svg_panel p[2] = {
        {"throughput", "tokens/s", &s0, 1, 1},
        {"exposed communication (rank 0's wait / step time)", "fraction of step", &s1, 1, 1}};
    char title[300];
    snprintf(title, sizeof(title), "%s: throughput", r->run_name);
    struct svg_figure f = {.title = title,
                           .xlabel = "step",
                           .panels = p,
                           .n_panels = has_comm ? 2 : 1,
                           .x_integer = 1};
    int rc = write_plot(r, P_THROUGHPUT, &f, err);
    free(frac);
    return rc;
}

static int plot_grad_norm(struct report *r, char *err) {
    const struct metrics *m = &r->m;
    double clip = r->cfg ? r->cfg->train.grad_clip : 0;
    double cx[2] = {m->step[0], m->step[m->n - 1]}, cy[2] = {clip, clip};
    struct svg_series s[2] = {dense("gradient norm", m, m->col[C_GNORM], 0),
                              {.name = "clip threshold (train.grad_clip)",
                               .x = cx,
                               .y = cy,
                               .n = 2,
                               .color = 7,
                               .dashed = 1}};
    struct svg_panel p = {"gradient norm (before clipping)", "global L2 norm", s, clip > 0 ? 2 : 1,
                          0};
    char title[300];
    snprintf(title, sizeof(title), "%s: gradient norm", r->run_name);
    struct svg_figure f = {
        .title = title, .xlabel = "step", .panels = &p, .n_panels = 1, .x_integer = 1};
    return write_plot(r, P_GNORM, &f, err);
}

#define EVAL_MAX_PANELS 48

/* one panel per (task, metric) against checkpoint step, with +-stderr bars; a task's
 * majority_<m> baseline is drawn dashed on <m>'s panel instead of a panel of its own */
static int plot_eval(struct report *r, char *err) {
    const struct evals *ev = &r->ev;
    int n = ev->n;
    double *buf = HW_MALLOC((size_t)(ev->n_rows * 3 + 1) * (size_t)(n ? n : 1) * sizeof(*buf));
    struct svg_series *ser = HW_MALLOC((size_t)(2 * ev->n_rows + 1) * sizeof(*ser));
    struct svg_panel *pan = HW_MALLOC((size_t)(ev->n_rows + 1) * sizeof(*pan));
    char(*titles)[300] = HW_MALLOC((size_t)(ev->n_rows + 1) * sizeof(*titles));
    double *x = buf;
    for (int i = 0; i < n; i++)
        x[i] = ev->e[i].step;
    int np = 0, ns = 0;
    for (int row = 0; row < ev->n_rows && np < EVAL_MAX_PANELS; row++) {
        const struct eval_row *er = &ev->rows[row];
        int base = -1;
        if (!strncmp(er->metric, "majority_", 9))
            for (int o = 0; o < ev->n_rows && base < 0; o++)
                if (!strcmp(ev->rows[o].task, er->task) &&
                    !strcmp(ev->rows[o].metric, er->metric + 9))
                    base = o;
        if (base >= 0)
            continue; /* drawn with its metric below */
        double *y = buf + (size_t)(1 + 3 * row) * n, *se = y + n;
        for (int i = 0; i < n; i++)
            eval_value(ev, i, row, &y[i], &se[i]);
        struct svg_panel *p = &pan[np++];
        snprintf(titles[np - 1], sizeof(titles[0]), "%s: %s", er->task, er->metric);
        p->title = titles[np - 1];
        p->ylabel = er->metric;
        p->series = &ser[ns];
        p->n_series = 1;
        ser[ns++] = (struct svg_series){.name = er->metric,
                                        .x = x,
                                        .y = y,
                                        .yerr = se,
                                        .n = (size_t)n,
                                        .color = 0,
                                        .markers = 1};
        for (int o = 0; o < ev->n_rows; o++) {
            if (strcmp(ev->rows[o].task, er->task) || strncmp(ev->rows[o].metric, "majority_", 9) ||
                strcmp(ev->rows[o].metric + 9, er->metric))
                continue;
            double *by = buf + (size_t)(1 + 3 * o) * n + 2 * (size_t)n, dummy;
            for (int i = 0; i < n; i++)
                eval_value(ev, i, o, &by[i], &dummy);
            ser[ns++] = (struct svg_series){.name = "majority baseline",
                                            .x = x,
                                            .y = by,
                                            .n = (size_t)n,
                                            .color = 7,
                                            .dashed = 1};
            p->n_series = 2;
            break;
        }
    }
    char title[300];
    snprintf(title, sizeof(title), "%s: evaluation by checkpoint (+-1 stderr)", r->run_name);
    struct svg_figure f = {.title = title,
                           .xlabel = "checkpoint step",
                           .panels = pan,
                           .n_panels = np,
                           .cols = np > 4   ? 3
                                   : np > 1 ? 2
                                            : 1,
                           .x_integer = 1};
    int rc = write_plot(r, P_EVAL, &f, err);
    free(buf);
    free(ser);
    free(pan);
    free(titles);
    return rc;
}

static int plot_moh(struct report *r, char *err) {
    const struct metrics *m = &r->m;
    int L = m->moh_layers;
    double *y = HW_MALLOC((size_t)L * 3 * (m->n ? m->n : 1) * sizeof(*y));
    struct svg_series *ser = HW_MALLOC((size_t)L * 3 * sizeof(*ser));
    struct svg_panel *pan = HW_MALLOC((size_t)L * sizeof(*pan));
    char(*titles)[32] = HW_MALLOC((size_t)L * sizeof(*titles));
    static const char *const names[3] = {"mean", "min", "max"};
    for (int l = 0; l < L; l++) {
        for (int k = 0; k < 3; k++) {
            double *yk = y + ((size_t)l * 3 + (size_t)k) * m->n;
            for (size_t i = 0; i < m->n; i++)
                yk[i] = m->moh[(i * (size_t)L + (size_t)l) * 3 + (size_t)k];
            ser[l * 3 + k] = (struct svg_series){
                .name = names[k], .x = m->step, .y = yk, .n = m->n, .color = k, .dashed = k > 0};
        }
        snprintf(titles[l], sizeof(titles[0]), "layer %d", l);
        pan[l] = (struct svg_panel){titles[l], "fraction of tokens per head", &ser[l * 3], 3, 1};
    }
    char title[300];
    snprintf(title, sizeof(title), "%s: Mixture-of-Head usage per layer (mean/min/max over heads)",
             r->run_name);
    struct svg_figure f = {.title = title,
                           .xlabel = "step",
                           .panels = pan,
                           .n_panels = L,
                           .cols = L > 4   ? 3
                                   : L > 1 ? 2
                                           : 1,
                           .x_integer = 1};
    int rc = write_plot(r, P_MOH, &f, err);
    free(y);
    free(ser);
    free(pan);
    free(titles);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// facts shared by index.html and summary.md

struct fact {
    char label[64];
    char value[600];
};

#define MAX_FACTS 24

void report_fmt_num(char *out, size_t n, double v) {
    if (!isfinite(v))
        snprintf(out, n, "n/a");
    else if (v == 0)
        snprintf(out, n, "0");
    else if ((fabs(v) >= 1e6 || fabs(v) < 1e-3))
        snprintf(out, n, "%.4g", v);
    else
        snprintf(out, n, "%.4f", v);
}

static void fmt_pick(char *out, size_t n, const char *what, struct pick p) {
    char v[48];
    report_fmt_num(v, sizeof(v), p.v);
    if (isfinite(p.v))
        snprintf(out, n, "%s %s (step %.0f)", what, v, p.step);
    else
        snprintf(out, n, "%s n/a", what);
}

static void fmt_bytes(char *out, size_t n, double b) {
    if (b < 0 || !isfinite(b))
        snprintf(out, n, "?");
    else if (b >= 1 << 30)
        snprintf(out, n, "%.1f GiB", b / (1 << 30));
    else if (b >= 1 << 20)
        snprintf(out, n, "%.1f MiB", b / (1 << 20));
    else if (b >= 1 << 10)
        snprintf(out, n, "%.1f KiB", b / (1 << 10));
    else
        snprintf(out, n, "%.0f B", b);
}

static void best_ckpt_text(const struct report *r, char *out, size_t n) {
    const struct ckpts *c = &r->ck;
    if (c->best < 0) {
        snprintf(out, n, "none (no ckpt_*.h5 in the run directory)");
        return;
    }
    const struct ckpt_file *f = &c->f[c->best];
    char v[48];
    report_fmt_num(v, sizeof(v), f->val_loss);
    if (c->best_by_val)
        snprintf(out, n, "%s (step %ld, lowest val_loss %s among the checkpoints kept)", f->name,
                 f->step, v);
    else
        snprintf(out, n, "%s (step %ld, the newest: no val_loss logged at a checkpoint step)",
                 f->name, f->step);
}

/* vsnprintf through a helper: the values are truncated on purpose when paths are very long */
__attribute__((format(printf, 3, 4))) static void fact_set(struct fact *f, const char *label,
                                                           const char *fmt, ...) {
    va_list ap;
    snprintf(f->label, sizeof(f->label), "%s", label);
    va_start(ap, fmt);
    vsnprintf(f->value, sizeof(f->value), fmt, ap);
    va_end(ap);
}

static int make_facts(const struct report *r, struct fact *f) {
    const struct metrics *m = &r->m;
    int n = 0;
    char a[200], b[200], c[200], best[700];
#define FACT(...) fact_set(&f[n++], __VA_ARGS__)
    FACT("run directory", "%s", r->run_abs);
    if (r->cfg)
        FACT("steps done", "%.0f of %d (%zu metrics lines)", m->step[m->n - 1], r->cfg->train.steps,
             m->n);
    else
        FACT("steps done", "%.0f (%zu metrics lines)", m->step[m->n - 1], m->n);
    if (r->cfg) {
        const struct cfg_model *md = &r->cfg->model;
        const struct cfg_train *t = &r->cfg->train;
        FACT("model", "%d layers, d_model %d, %d heads (%d kv), max_seq %d, %s MLP", md->n_layers,
             md->d_model, md->n_heads, cfg_kv_heads(md), md->max_seq, md->mlp);
        FACT("batch", "%d sequences x %d tokens x %d accumulation = %lld tokens/step, task %s",
             t->micro_batch, t->seq_len, t->grad_accum,
             (long long)t->micro_batch * t->seq_len * t->grad_accum, t->task);
    }
    fmt_pick(a, sizeof(a), "first", col_pick(m, m->col[C_LOSS], 0));
    fmt_pick(b, sizeof(b), "last", col_pick(m, m->col[C_LOSS], 1));
    fmt_pick(c, sizeof(c), "best", col_pick(m, m->col[C_LOSS], 2));
    FACT("train loss", "%s; %s; %s", a, b, c);
    size_t bad = col_count_nonfinite(m, m->col[C_LOSS]);
    if (bad)
        FACT("non-finite loss", "%zu of %zu steps (null, NaN or Inf in metrics.jsonl)", bad, m->n);
    if (has_col(m, C_VLOSS)) {
        fmt_pick(a, sizeof(a), "first", col_pick(m, m->col[C_VLOSS], 0));
        fmt_pick(b, sizeof(b), "last", col_pick(m, m->col[C_VLOSS], 1));
        fmt_pick(c, sizeof(c), "best", col_pick(m, m->col[C_VLOSS], 2));
        FACT("val loss", "%s; %s; %s", a, b, c);
    } else {
        FACT("val loss", "not measured (train.val_every 0 or no data.val)");
    }
    if (has_col(m, C_VACC)) {
        fmt_pick(a, sizeof(a), "last", col_pick(m, m->col[C_VACC], 1));
        fmt_pick(b, sizeof(b), "best", col_pick(m, m->col[C_VACC], 3));
        FACT("val accuracy", "%s; %s", a, b);
    }
    if (has_col(m, C_VF1)) {
        fmt_pick(a, sizeof(a), "last", col_pick(m, m->col[C_VF1], 1));
        fmt_pick(b, sizeof(b), "best", col_pick(m, m->col[C_VF1], 3));
        FACT("val macro F1", "%s; %s", a, b);
    }
    const char *span = m->n > 1 ? "the steps after the first" : "one step";
    FACT("throughput", "%.0f tokens/s (mean over %s)", col_mean(m, m->col[C_TPS]), span);
    double mfu = col_mean(m, m->col[C_MFU]);
    if (isfinite(mfu))
        FACT("MFU", "%.2f%% (mean over %s; against the measured GEMM peak)", 100 * mfu, span);
    else
        FACT("MFU", "n/a");
    if (has_col(m, C_COMM_S) && has_col(m, C_STEP_S)) {
        double cs = 0, ss = 0;
        for (size_t i = m->n > 1 ? 1 : 0; i < m->n; i++)
            if (isfinite(m->col[C_COMM_S][i]) && isfinite(m->col[C_STEP_S][i])) {
                cs += m->col[C_COMM_S][i];
                ss += m->col[C_STEP_S][i];
            }
        FACT("exposed communication", "%.1f%% of step time (sum comm_s / sum step_s over %s)",
             ss > 0 ? 100 * cs / ss : 0.0, span);
    }
    best_ckpt_text(r, best, sizeof(best));
    FACT("best checkpoint", "%s", best);
    FACT("latest", "%s", r->ck.latest[0] ? r->ck.latest : "(no latest file)");
    if (r->ev.n)
        FACT("evaluated", "%d checkpoint%s, %d metrics (%s)", r->ev.n, r->ev.n > 1 ? "s" : "",
             r->ev.n_rows, r->ev.source);
    else
        FACT("evaluated", "no eval results in eval/ (run `headwise eval --ckpt %s ...`)", r->run);
#undef FACT
    HW_ASSERT(n <= MAX_FACTS);
    return n;
}

/* grid facts: from the config's dist section */
static int make_grid(const struct report *r, struct fact *f) {
    int n = 0;
    if (!r->cfg) {
        fact_set(&f[n++], "grid", "unknown: %s", r->cfg_err);
        return n;
    }
    const struct cfg_dist *d = &r->cfg->dist;
    fact_set(&f[n++], "ranks", "%d = data %d x heads %d x context %d",
             d->data.v * d->heads.v * d->context.v, d->data.v, d->heads.v, d->context.v);
    fact_set(&f[n++], "context mode", "%s", d->context.v > 1 ? d->context_mode : "-");
    fact_set(&f[n++], "ZeRO-1", "%s", d->zero ? "on" : "off");
    if (d->bucket_kb)
        fact_set(&f[n++], "all-reduce bucket", "%d KiB", d->bucket_kb);
    else
        fact_set(&f[n++], "all-reduce bucket", "one per layer");
    return n;
}

/* per collective kind: mean bytes and seconds per step (after the first) */
static void comm_means(const struct metrics *m, int k, double *bytes, double *sec) {
    double b = 0, s = 0;
    size_t nb = 0, ns = 0;
    for (size_t i = m->n > 1 ? 1 : 0; i < m->n; i++) {
        if (isfinite(m->comm[k].bytes[i]))
            b += m->comm[k].bytes[i], nb++;
        if (isfinite(m->comm[k].s[i]))
            s += m->comm[k].s[i], ns++;
    }
    *bytes = nb ? b / (double)nb : NAN;
    *sec = ns ? s / (double)ns : NAN;
}

// ---------------------------------------------------------------------------------------------
// index.html and summary.md

void report_rel_link(const char *from, const char *to, const char *name, char *out, size_t n) {
    size_t i = 0, common = 0;
    while (from[i] && to[i] && from[i] == to[i]) {
        if (from[i] == '/')
            common = i;
        i++;
    }
    if (!from[i] && (to[i] == '/' || !to[i]))
        common = i;
    else if (!to[i] && from[i] == '/')
        common = i;
    int ups = 0;
    for (const char *p = from + common; *p; p++)
        ups += *p == '/';
    const char *rest = to + common;
    while (*rest == '/')
        rest++;
    size_t k = 0;
    out[0] = 0;
    for (int u = 0; u < ups && k + 3 < n; u++)
        k += (size_t)snprintf(out + k, n - k, "../");
    if (k < n)
        snprintf(out + k, n - k, "%s%s%s", rest, *rest && *name ? "/" : "", name);
}

/* path of run_dir/name relative to the output directory (for links) */
static void link_to(const struct report *r, const char *name, char *out, size_t n) {
    report_rel_link(r->out_abs, r->run_abs, name, out, n);
}

static void html_cell(struct svg_buf *b, const char *tag, const char *text) {
    svg_buf_printf(b, "<%s>", tag);
    svg_buf_escape(b, text);
    svg_buf_printf(b, "</%s>", tag);
}

static void html_link(struct svg_buf *b, const char *href, const char *text) {
    svg_buf_printf(b, "<a href=\"");
    svg_buf_escape(b, href);
    svg_buf_printf(b, "\">");
    svg_buf_escape(b, text);
    svg_buf_printf(b, "</a>");
}

static void eval_cell(const struct evals *ev, int i, int row, char *out, size_t n) {
    double v, se;
    eval_value(ev, i, row, &v, &se);
    char a[48], s[48];
    report_fmt_num(a, sizeof(a), v);
    report_fmt_num(s, sizeof(s), se);
    if (!isfinite(v))
        snprintf(out, n, "-");
    else if (isfinite(se))
        snprintf(out, n, "%s ± %s", a, s);
    else
        snprintf(out, n, "%s", a);
}

/* the run's files worth linking, sorted: top-level files, then eval/ */
static int list_dir(const char *dir, char ***names) {
    DIR *d = opendir(dir);
    int n = 0;
    *names = NULL;
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || ends_with(e->d_name, ".tmp"))
            continue;
        char p[REPORT_PATH_MAX * 3];
        struct stat st;
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        if (stat(p, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        *names = HW_REALLOC(*names, (size_t)(n + 1) * sizeof(**names));
        (*names)[n++] = HW_STRDUP(e->d_name);
    }
    closedir(d);
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && strcmp((*names)[j - 1], (*names)[j]) > 0; j--) {
            char *t = (*names)[j];
            (*names)[j] = (*names)[j - 1];
            (*names)[j - 1] = t;
        }
    return n;
}

static void free_names(char **names, int n) {
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

const char *const report_css =
    "body{font-family:-apple-system,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1320px;"
    "padding:0 16px;color:#222;background:#fafafa}"
    "h1{font-size:22px;margin-bottom:2px}h2{font-size:17px;margin-top:28px;border-bottom:1px "
    "solid #ddd;padding-bottom:4px}.sub{color:#666;margin-top:0}"
    "table{border-collapse:collapse;background:#fff;font-size:14px}"
    "td,th{border:1px solid #ddd;padding:4px 9px;text-align:left;vertical-align:top}"
    "th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums;"
    "white-space:nowrap}th.best,td.best{background:#eef6ee}"
    ".facts th{width:190px}.scroll{overflow-x:auto}"
    ".plots{display:flex;flex-wrap:wrap;gap:12px}.plots img{max-width:100%;background:#fff;"
    "border:1px solid #ddd}"
    "pre{background:#fff;border:1px solid #ddd;padding:10px;font-size:12px;max-height:480px;"
    "overflow:auto}ul.files{columns:2;font-size:14px}";

static void build_html(const struct report *r, const struct fact *facts, int nf,
                       const struct fact *grid, int ng, const char *date, struct svg_buf *b) {
    const struct metrics *m = &r->m;
    const struct evals *ev = &r->ev;
    char t[1200];
    svg_buf_printf(b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                      "<title>headwise report: ");
    svg_buf_escape(b, r->run_name);
    svg_buf_printf(
        b, "</title>\n<style>%s</style>\n</head>\n<body>\n<h1>headwise report: ", report_css);
    svg_buf_escape(b, r->run_name);
    svg_buf_printf(b, "</h1>\n<p class=\"sub\">");
    svg_buf_escape(b, r->run_abs);
    svg_buf_printf(b, " &middot; generated %s by <code>headwise report</code></p>\n", date);

    svg_buf_printf(b, "<h2>Summary</h2>\n<table class=\"facts\">\n");
    for (int i = 0; i < nf; i++) {
        svg_buf_printf(b, "<tr>");
        html_cell(b, "th", facts[i].label);
        html_cell(b, "td", facts[i].value);
        svg_buf_printf(b, "</tr>\n");
    }
    svg_buf_printf(b, "</table>\n<h2>Plots</h2>\n<div class=\"plots\">\n");
    for (int p = 0; p < N_PLOT; p++)
        if (r->written[p])
            svg_buf_printf(b, "<a href=\"%s.svg\"><img src=\"%s.svg\" alt=\"%s plot\"></a>\n",
                           plot_name[p], plot_name[p], plot_name[p]);
    svg_buf_printf(b, "</div>\n");

    svg_buf_printf(b, "<h2>Evaluation</h2>\n");
    if (!ev->n) {
        svg_buf_printf(b, "<p>No eval results in <code>eval/</code>.</p>\n");
    } else {
        svg_buf_printf(b, "<p>value ± standard error (bootstrap) from <code>%s</code>", ev->source);
        if (r->ck.best >= 0)
            svg_buf_printf(b, "; the best checkpoint's column is shaded");
        svg_buf_printf(b, ".</p>\n<div class=\"scroll\"><table>\n<tr><th>task</th>"
                          "<th>metric</th>");
        for (int i = 0; i < ev->n; i++) {
            int best = r->ck.best >= 0 && !strcmp(ev->e[i].name, r->ck.f[r->ck.best].name);
            svg_buf_printf(b, "<th%s>", best ? " class=\"best\"" : "");
            svg_buf_escape(b, ev->e[i].name);
            svg_buf_printf(b, "<br>step %.0f</th>", ev->e[i].step);
        }
        svg_buf_printf(b, "</tr>\n");
        for (int row = 0; row < ev->n_rows; row++) {
            svg_buf_printf(b, "<tr>");
            html_cell(b, "td", ev->rows[row].task);
            html_cell(b, "td", ev->rows[row].metric);
            for (int i = 0; i < ev->n; i++) {
                int best = r->ck.best >= 0 && !strcmp(ev->e[i].name, r->ck.f[r->ck.best].name);
                eval_cell(ev, i, row, t, sizeof(t));
                svg_buf_printf(b, "<td class=\"num%s\">", best ? " best" : "");
                svg_buf_escape(b, t);
                svg_buf_printf(b, "</td>");
            }
            svg_buf_printf(b, "</tr>\n");
        }
        svg_buf_printf(b, "</table></div>\n");
    }

    svg_buf_printf(b, "<h2>Grid (dist)</h2>\n<table class=\"facts\">\n");
    for (int i = 0; i < ng; i++) {
        svg_buf_printf(b, "<tr>");
        html_cell(b, "th", grid[i].label);
        html_cell(b, "td", grid[i].value);
        svg_buf_printf(b, "</tr>\n");
    }
    svg_buf_printf(b, "</table>\n");
    if (m->n_comm) {
        svg_buf_printf(b, "<p>Communication per step, rank 0's view (mean over the steps after "
                          "the first):</p>\n<table>\n<tr><th>collective</th><th>sent per "
                          "step</th><th>wait per step</th></tr>\n");
        for (int k = 0; k < m->n_comm; k++) {
            double by, s;
            comm_means(m, k, &by, &s);
            fmt_bytes(t, sizeof(t), by);
            svg_buf_printf(b, "<tr>");
            html_cell(b, "td", m->comm[k].name);
            svg_buf_printf(b, "<td class=\"num\">%s</td><td class=\"num\">%.2f ms</td></tr>\n", t,
                           1e3 * s);
        }
        svg_buf_printf(b, "</table>\n");
    } else {
        svg_buf_printf(b, "<p>No communication logged (a single-rank run).</p>\n");
    }

    svg_buf_printf(b, "<h2>Checkpoints</h2>\n");
    if (!r->ck.n) {
        svg_buf_printf(b, "<p>No checkpoints in the run directory.</p>\n");
    } else {
        svg_buf_printf(b, "<table>\n<tr><th>file</th><th>step</th><th>size</th>"
                          "<th>val_loss at step</th><th></th></tr>\n");
        for (int i = 0; i < r->ck.n; i++) {
            const struct ckpt_file *f = &r->ck.f[i];
            char v[48], sz[48], href[4200];
            report_fmt_num(v, sizeof(v), f->val_loss);
            fmt_bytes(sz, sizeof(sz), (double)f->bytes);
            link_to(r, f->name, href, sizeof(href));
            svg_buf_printf(b, "<tr%s><td>", i == r->ck.best ? " class=\"best\"" : "");
            html_link(b, href, f->name);
            svg_buf_printf(b,
                           "</td><td class=\"num\">%ld</td><td class=\"num\">%s</td>"
                           "<td class=\"num\">%s</td><td>%s%s%s</td></tr>\n",
                           f->step, sz, v, i == r->ck.best ? "best" : "",
                           i == r->ck.best && !strcmp(f->name, r->ck.latest) ? ", " : "",
                           !strcmp(f->name, r->ck.latest) ? "latest" : "");
        }
        svg_buf_printf(b, "</table>\n");
    }

    svg_buf_printf(b, "<h2>Config</h2>\n");
    if (!r->cfg) {
        svg_buf_printf(b, "<p>config.yaml could not be loaded: <code>");
        svg_buf_escape(b, r->cfg_err);
        svg_buf_printf(b, "</code></p>\n");
    }
    if (r->cfg_text) {
        svg_buf_printf(b, "<pre>");
        svg_buf_escape(b, r->cfg_text);
        svg_buf_printf(b, "</pre>\n");
    }

    svg_buf_printf(b, "<h2>Files</h2>\n<ul class=\"files\">\n");
    char **names;
    int nn = list_dir(r->run_abs, &names);
    for (int i = 0; i < nn; i++) {
        char href[4200];
        link_to(r, names[i], href, sizeof(href));
        svg_buf_printf(b, "<li>");
        html_link(b, href, names[i]);
        svg_buf_printf(b, "</li>\n");
    }
    free_names(names, nn);
    char evdir[4200];
    snprintf(evdir, sizeof(evdir), "%s/eval", r->run_abs);
    nn = list_dir(evdir, &names);
    for (int i = 0; i < nn; i++) {
        char href[4200], rel[600];
        snprintf(rel, sizeof(rel), "eval/%s", names[i]);
        link_to(r, rel, href, sizeof(href));
        svg_buf_printf(b, "<li>");
        html_link(b, href, rel);
        svg_buf_printf(b, "</li>\n");
    }
    free_names(names, nn);
    svg_buf_printf(b, "<li><a href=\"summary.md\">summary.md</a> (this page in Markdown)</li>\n");
    svg_buf_printf(b, "</ul>\n</body>\n</html>\n");
}

/* Markdown table cell: | and newlines would break the row */
void report_md_cell(struct svg_buf *b, const char *s) {
    svg_buf_printf(b, " ");
    for (const char *p = s; *p; p++) {
        if (*p == '|')
            svg_buf_printf(b, "\\|");
        else if (*p == '\n')
            svg_buf_printf(b, " ");
        else
            svg_buf_printf(b, "%c", *p);
    }
    svg_buf_printf(b, " |");
}

static void build_md(const struct report *r, const struct fact *facts, int nf,
                     const struct fact *grid, int ng, const char *date, struct svg_buf *b) {
    const struct metrics *m = &r->m;
    const struct evals *ev = &r->ev;
    char t[1200];
    svg_buf_printf(b, "# headwise report: %s\n\n`%s`, generated %s by `headwise report`.\n\n",
                   r->run_name, r->run_abs, date);
    svg_buf_printf(b, "## Summary\n\n| | |\n|---|---|\n");
    for (int i = 0; i < nf; i++) {
        svg_buf_printf(b, "|");
        report_md_cell(b, facts[i].label);
        report_md_cell(b, facts[i].value);
        svg_buf_printf(b, "\n");
    }
    svg_buf_printf(b, "\n## Plots\n\n");
    for (int p = 0; p < N_PLOT; p++)
        if (r->written[p])
            svg_buf_printf(b, "![%s](%s.svg)\n", plot_name[p], plot_name[p]);
    svg_buf_printf(b, "\n## Evaluation\n\n");
    if (!ev->n) {
        svg_buf_printf(b, "No eval results in `eval/`.\n");
    } else {
        svg_buf_printf(b, "value ± standard error from `%s`.\n\n| task | metric |", ev->source);
        for (int i = 0; i < ev->n; i++) {
            snprintf(t, sizeof(t), "%s (step %.0f)", ev->e[i].name, ev->e[i].step);
            report_md_cell(b, t);
        }
        svg_buf_printf(b, "\n|---|---|");
        for (int i = 0; i < ev->n; i++)
            svg_buf_printf(b, "---:|");
        svg_buf_printf(b, "\n");
        for (int row = 0; row < ev->n_rows; row++) {
            svg_buf_printf(b, "|");
            report_md_cell(b, ev->rows[row].task);
            report_md_cell(b, ev->rows[row].metric);
            for (int i = 0; i < ev->n; i++) {
                eval_cell(ev, i, row, t, sizeof(t));
                report_md_cell(b, t);
            }
            svg_buf_printf(b, "\n");
        }
    }
    svg_buf_printf(b, "\n## Grid (dist)\n\n| | |\n|---|---|\n");
    for (int i = 0; i < ng; i++) {
        svg_buf_printf(b, "|");
        report_md_cell(b, grid[i].label);
        report_md_cell(b, grid[i].value);
        svg_buf_printf(b, "\n");
    }
    if (m->n_comm) {
        svg_buf_printf(b, "\nCommunication per step, rank 0's view (mean over the steps after the "
                          "first):\n\n| collective | sent per step | wait per step |\n"
                          "|---|---:|---:|\n");
        for (int k = 0; k < m->n_comm; k++) {
            double by, s;
            comm_means(m, k, &by, &s);
            fmt_bytes(t, sizeof(t), by);
            svg_buf_printf(b, "|");
            report_md_cell(b, m->comm[k].name);
            svg_buf_printf(b, " %s | %.2f ms |\n", t, 1e3 * s);
        }
    }
    svg_buf_printf(b, "\n## Checkpoints\n\n");
    if (!r->ck.n)
        svg_buf_printf(b, "No checkpoints in the run directory.\n");
    else
        svg_buf_printf(b,
                       "| file | step | size | val_loss at step | |\n|---|---:|---:|---:|---|\n");
    for (int i = 0; i < r->ck.n; i++) {
        const struct ckpt_file *f = &r->ck.f[i];
        char v[48], sz[48], href[4200];
        report_fmt_num(v, sizeof(v), f->val_loss);
        fmt_bytes(sz, sizeof(sz), (double)f->bytes);
        link_to(r, f->name, href, sizeof(href));
        svg_buf_printf(b, "| [%s](%s) | %ld | %s | %s | %s%s%s |\n", f->name, href, f->step, sz, v,
                       i == r->ck.best ? "best" : "",
                       i == r->ck.best && !strcmp(f->name, r->ck.latest) ? ", " : "",
                       !strcmp(f->name, r->ck.latest) ? "latest" : "");
    }
    svg_buf_printf(b, "\n## Config\n\n");
    if (!r->cfg)
        svg_buf_printf(b, "config.yaml could not be loaded: `%s`\n\n", r->cfg_err);
    if (r->cfg_text)
        svg_buf_printf(b, "```yaml\n%s%s```\n", r->cfg_text,
                       ends_with(r->cfg_text, "\n") ? "" : "\n");
}

// ---------------------------------------------------------------------------------------------
// entry point

int report_write(const char *run_dir, const char *out_dir, struct report_files *files, char *err) {
    struct report *r = HW_CALLOC(1, sizeof(*r));
    int rc = 0;
    files->n = 0;
    r->files = files;
    size_t len = strlen(run_dir);
    while (len > 1 && run_dir[len - 1] == '/')
        len--;
    if (len + 32 >= sizeof(r->run)) {
        rc = hw_errf(err, HW_EIO, "%s: path too long", run_dir);
        goto out_free_report;
    }
    snprintf(r->run, sizeof(r->run), "%.*s", (int)len, run_dir);
    struct stat st;
    if (stat(r->run, &st) != 0) {
        rc = hw_errf(err, HW_EIO, "%s: no such run directory (%s)", r->run, strerror(errno));
        goto out_free_report;
    }
    if (!S_ISDIR(st.st_mode)) {
        rc = hw_errf(err, HW_EIO,
                     "%s: not a directory (expected a run directory made by "
                     "`headwise train`)",
                     r->run);
        goto out_free_report;
    }
    char path[REPORT_PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/metrics.jsonl", r->run);
    if (stat(path, &st) != 0) {
        rc = hw_errf(err, HW_EIO,
                     "%s: no metrics.jsonl: not a run directory, or training has not logged a "
                     "step yet",
                     r->run);
        goto out_free_report;
    }
    rc = metrics_load(&r->m, path, err);
    if (rc)
        goto out_free_metrics;

    if (out_dir) {
        if (strlen(out_dir) >= sizeof(r->out)) {
            rc = hw_errf(err, HW_EIO, "%s: path too long", out_dir);
            goto out_free_metrics;
        }
        snprintf(r->out, sizeof(r->out), "%s", out_dir);
    } else {
        int w = snprintf(r->out, sizeof(r->out), "%s/report", r->run);
        HW_ASSERT(w < (int)sizeof(r->out)); /* run is at most sizeof(r->run) - 32 long */
    }
    rc = fs_mkdirs(r->out, err);
    if (rc)
        goto out_free_metrics;
    if (!realpath(r->run, r->run_abs))
        snprintf(r->run_abs, sizeof(r->run_abs), "%s", r->run);
    if (!realpath(r->out, r->out_abs))
        snprintf(r->out_abs, sizeof(r->out_abs), "%s", r->out);
    const char *slash = strrchr(r->run_abs, '/');
    r->run_name = slash && slash[1] ? slash + 1 : r->run_abs;

    snprintf(path, sizeof(path), "%s/config.yaml", r->run);
    r->cfg_text = fs_read_all(path, NULL, r->cfg_err);
    if (r->cfg_text) {
        r->cfg = HW_MALLOC(sizeof(*r->cfg));
        if (cfg_load(r->cfg, path, 0, NULL, r->cfg_err) != 0) {
            free(r->cfg);
            r->cfg = NULL;
        }
    }
    ckpts_scan(&r->ck, r->run, &r->m);
    evals_load(&r->ev, r->run);

    if ((rc = plot_loss(r, err)) || (rc = plot_lr(r, err)) || (rc = plot_throughput(r, err)) ||
        (rc = plot_grad_norm(r, err)))
        goto out_free_all;
    if (r->ev.n && r->ev.n_rows && (rc = plot_eval(r, err)))
        goto out_free_all;
    if (r->m.moh_layers && (rc = plot_moh(r, err)))
        goto out_free_all;

    struct fact facts[MAX_FACTS], grid[8];
    int nf = make_facts(r, facts), ng = make_grid(r, grid);
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC", &tm);
    struct svg_buf html = {0}, md = {0};
    build_html(r, facts, nf, grid, ng, date, &html);
    build_md(r, facts, nf, grid, ng, date, &md);
    rc = write_text(r, "index.html", &html, err);
    if (!rc)
        rc = write_text(r, "summary.md", &md, err);
    svg_buf_free(&html);
    svg_buf_free(&md);

out_free_all:
    evals_free(&r->ev);
    free(r->ck.f);
    free(r->cfg);
    free(r->cfg_text);
out_free_metrics:
    metrics_free(&r->m);
out_free_report:
    free(r);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// one run's headline numbers (the sweep report, report/sweep.c)

static int dbl_cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* median of the finite values; NaN when there is none */
static double col_median(const struct metrics *m, const double *c) {
    double *v = HW_MALLOC((m->n ? m->n : 1) * sizeof(*v));
    size_t k = 0;
    for (size_t i = 0; i < m->n; i++)
        if (isfinite(c[i]))
            v[k++] = c[i];
    qsort(v, k, sizeof(*v), dbl_cmp);
    double med = k == 0 ? NAN : k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
    free(v);
    return med;
}

/* the resolved config as YAML: cfg_to_yaml of config.yaml when it loads (every key, one
 * spelling per value), else the file's own text; NULL when there is none */
static char *run_config_yaml(const char *run) {
    char p[REPORT_PATH_MAX * 2], e[HW_ERR_LEN];
    snprintf(p, sizeof(p), "%s/config.yaml", run);
    char *txt = fs_read_all(p, NULL, e);
    if (!txt)
        return NULL;
    struct hw_config *cfg = HW_MALLOC(sizeof(*cfg));
    if (cfg_load(cfg, p, 0, NULL, e) == 0) {
        free(txt);
        txt = cfg_to_yaml(cfg);
    }
    free(cfg);
    return txt;
}

/* every (task, metric) at the newest evaluated checkpoint, majority baselines left out */
static void run_evals(struct report_run *rr, const char *run) {
    struct evals ev;
    evals_load(&ev, run);
    if (ev.n) {
        int i = ev.n - 1;
        snprintf(rr->eval_ckpt, sizeof(rr->eval_ckpt), "%s", ev.e[i].name);
        rr->eval_step = ev.e[i].step;
        for (int row = 0; row < ev.n_rows && rr->n_eval < REPORT_RUN_EVALS; row++) {
            double v, se;
            eval_value(&ev, i, row, &v, &se);
            if (!isfinite(v) || !strncmp(ev.rows[row].metric, "majority_", 9))
                continue;
            struct report_eval_value *e = &rr->eval[rr->n_eval++];
            snprintf(e->name, sizeof(e->name), "%s/%s", ev.rows[row].task, ev.rows[row].metric);
            e->v = v;
            e->se = se;
        }
    }
    evals_free(&ev);
}

/* metrics.jsonl into rr: status and why, the columns and their summary numbers */
static void run_metrics(struct report_run *rr, const char *run) {
    char path[REPORT_PATH_MAX + 64];
    struct stat st;
    snprintf(path, sizeof(path), "%s/metrics.jsonl", run);
    if (stat(path, &st) != 0) {
        rr->status = REPORT_RUN_EMPTY;
        snprintf(rr->why, sizeof(rr->why), "no metrics yet (no metrics.jsonl)");
        return;
    }
    struct metrics m = {0};
    if (metrics_read(&m, path, rr->why) != 0) {
        rr->status = REPORT_RUN_BAD;
    } else if (m.n == 0) {
        rr->status = REPORT_RUN_EMPTY;
        snprintf(rr->why, sizeof(rr->why), "no metrics yet (metrics.jsonl has no step)");
    } else {
        struct pick lo = col_pick(&m, m.col[C_LOSS], 1), vl = col_pick(&m, m.col[C_VLOSS], 1),
                    vb = col_pick(&m, m.col[C_VLOSS], 2);
        rr->n = m.n;
        rr->last_step = m.step[m.n - 1];
        rr->loss_last = lo.v, rr->loss_last_step = lo.step;
        rr->val_last = vl.v, rr->val_last_step = vl.step;
        rr->val_best = vb.v, rr->val_best_step = vb.step;
        rr->tps_median = col_median(&m, m.col[C_TPS]);
        rr->step = m.step, rr->loss = m.col[C_LOSS], rr->val_loss = m.col[C_VLOSS];
        m.step = m.col[C_LOSS] = m.col[C_VLOSS] = NULL;
    }
    metrics_free(&m);
}

int report_run_load(const char *run_dir, struct report_run *rr) {
    memset(rr, 0, sizeof(*rr));
    rr->last_step = rr->loss_last = rr->loss_last_step = rr->val_last = rr->val_last_step = NAN;
    rr->val_best = rr->val_best_step = rr->tps_median = rr->eval_step = NAN;
    struct stat st;
    int missing = stat(run_dir, &st) != 0;
    if (missing || !S_ISDIR(st.st_mode)) {
        rr->status = REPORT_RUN_BAD;
        if (missing)
            snprintf(rr->why, sizeof(rr->why), "%s: no such run directory (%s)", run_dir,
                     strerror(errno));
        else
            snprintf(rr->why, sizeof(rr->why), "%s: not a directory", run_dir);
        return rr->status;
    }
    rr->config_yaml = run_config_yaml(run_dir);
    read_latest(run_dir, rr->latest, sizeof(rr->latest));
    run_metrics(rr, run_dir);
    run_evals(rr, run_dir);
    return rr->status;
}

void report_run_free(struct report_run *rr) {
    free(rr->step);
    free(rr->loss);
    free(rr->val_loss);
    free(rr->config_yaml);
    memset(rr, 0, sizeof(*rr));
}
