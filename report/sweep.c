/* report/sweep.c -- the sweep report (see sweep.h): find the runs, read each one's headline
 * numbers (report_run_load in report.c) and resolved config, find the config keys that differ
 * between the runs, and write sweep_loss.svg, sweep.csv, sweep.md and index.html. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "sweep.h"

#include "../core/check.h"
#include "../core/fsutil.h"
#include "svg.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define SWEEP_EVAL_COLS  8  /* eval metrics shown, in order of first appearance */
#define SWEEP_LEGEND_MAX 96 /* characters of a run's legend text */

struct kv {
    char *key; /* "section.key" */
    char *val; /* the value as written, quotes removed */
};

struct run {
    char *path;          /* as given, or PARENT/child */
    const char *name;    /* the last component of path */
    char abs[PATH_MAX];  /* realpath, else path */
    struct report_run r; /* report_run_load */
    struct kv *cfg;      /* (n_cfg) the resolved config, flattened; n_cfg 0: none */
    int n_cfg;
    char *overrides; /* "k=v k=v" over the differing keys */
};

struct sweep {
    struct run *runs; /* (n) naturally sorted by name */
    int n, n_ok;
    char **keys; /* (n_keys) the config keys whose values differ between the runs */
    int n_keys;
    char *evals[SWEEP_EVAL_COLS]; /* eval metric names shown */
    int n_evals;
    char title[256]; /* the parent's name, or the runs' common name stem */
    char out[REPORT_PATH_MAX];
    char out_abs[PATH_MAX];
    char date[64];
    struct report_files *files;
};

// ---------------------------------------------------------------------------------------------
// finding the runs

static int has_file(const char *dir, const char *name) {
    char p[PATH_MAX + 256];
    struct stat st;
    if (snprintf(p, sizeof(p), "%s/%s", dir, name) >= (int)sizeof(p))
        return 0;
    return stat(p, &st) == 0;
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_run_dir(const char *dir) {
    return is_dir(dir) && (has_file(dir, "metrics.jsonl") || has_file(dir, "config.yaml") ||
                           has_file(dir, "latest"));
}

/* a sweep report's own directory: skipped among the runs */
static int is_sweep_report(const char *dir) {
    return has_file(dir, "sweep.csv") && !has_file(dir, "metrics.jsonl");
}

/* the subdirectories of parent that are run directories; calls fn for each (when fn != NULL)
 * and returns how many */
static int scan_children(const char *parent, void (*fn)(struct sweep *, const char *),
                         struct sweep *sw) {
    DIR *d = opendir(parent);
    if (!d)
        return 0;
    int k = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char p[PATH_MAX + 256];
        snprintf(p, sizeof(p), "%s/%s", parent, e->d_name);
        if (!is_run_dir(p) || is_sweep_report(p))
            continue;
        k++;
        if (fn)
            fn(sw, p);
    }
    closedir(d);
    return k;
}

int sweep_is_parent(const char *dir) {
    return is_dir(dir) && !has_file(dir, "metrics.jsonl") && scan_children(dir, NULL, NULL) > 0;
}

/* path without trailing slashes (caller frees) */
static char *trim_path(const char *p) {
    size_t len = strlen(p);
    while (len > 1 && p[len - 1] == '/')
        len--;
    char *s = HW_MALLOC(len + 1);
    memcpy(s, p, len);
    s[len] = 0;
    return s;
}

static void add_run(struct sweep *sw, const char *path) {
    sw->runs = HW_REALLOC(sw->runs, (size_t)(sw->n + 1) * sizeof(*sw->runs));
    struct run *r = &sw->runs[sw->n++];
    memset(r, 0, sizeof(*r));
    r->path = trim_path(path);
    const char *slash = strrchr(r->path, '/');
    r->name = slash && slash[1] ? slash + 1 : r->path;
    if (!realpath(r->path, r->abs))
        snprintf(r->abs, sizeof(r->abs), "%s", r->path);
}

/* "sweep-10" after "sweep-9": runs of digits compare as numbers */
static int natcmp(const char *a, const char *b) {
    while (*a && *b) {
        if (isdigit((unsigned char)*a) && isdigit((unsigned char)*b)) {
            while (*a == '0' && isdigit((unsigned char)a[1]))
                a++;
            while (*b == '0' && isdigit((unsigned char)b[1]))
                b++;
            size_t na = strspn(a, "0123456789"), nb = strspn(b, "0123456789");
            if (na != nb)
                return na < nb ? -1 : 1;
            int c = strncmp(a, b, na);
            if (c)
                return c;
            a += na, b += nb;
        } else {
            if (*a != *b)
                return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
            a++, b++;
        }
    }
    return *a ? 1 : *b ? -1 : 0;
}

static int run_cmp(const void *x, const void *y) {
    const struct run *a = x, *b = y;
    int c = natcmp(a->name, b->name);
    return c ? c : strcmp(a->path, b->path);
}

// ---------------------------------------------------------------------------------------------
// the output directory

/* the directory part of p ("." when none), into out */
static void dir_of(const char *p, char *out, size_t n) {
    char *t = trim_path(p);
    char *slash = strrchr(t, '/');
    if (!slash)
        snprintf(out, n, ".");
    else if (slash == t)
        snprintf(out, n, "/");
    else
        snprintf(out, n, "%.*s", (int)(slash - t), t);
    free(t);
}

/* the common directory of the runs: the same directory part when every path has it, else the
 * longest common directory of their absolute paths' directories */
static void common_parent(const struct sweep *sw, char *out, size_t n) {
    char d0[PATH_MAX], d[PATH_MAX];
    dir_of(sw->runs[0].path, d0, sizeof(d0));
    int same = 1;
    for (int i = 1; i < sw->n && same; i++) {
        dir_of(sw->runs[i].path, d, sizeof(d));
        same = !strcmp(d, d0);
    }
    if (same) {
        snprintf(out, n, "%s", d0);
        return;
    }
    dir_of(sw->runs[0].abs, d0, sizeof(d0));
    size_t len = strlen(d0);
    for (int i = 1; i < sw->n; i++) {
        dir_of(sw->runs[i].abs, d, sizeof(d));
        size_t k = 0;
        while (k < len && d[k] == d0[k])
            k++;
        len = k;
    }
    /* the prefix must end a component in every directory, else back to its last '/' (which
     * every directory shares) */
    int whole = d0[len] == '/' || d0[len] == 0;
    for (int i = 1; i < sw->n && whole; i++) {
        dir_of(sw->runs[i].abs, d, sizeof(d));
        whole = d[len] == '/' || d[len] == 0;
    }
    while (!whole && len > 0 && d0[len] != '/')
        len--;
    snprintf(out, n, "%.*s", len ? (int)len : 1, len ? d0 : "/");
}

/* the runs' common name stem: the common prefix of their names less trailing digits and
 * separators ("sweep-0", "sweep-1" -> "sweep"); "sweep" when there is none */
static void name_stem(const struct sweep *sw, char *out, size_t n) {
    size_t len = strlen(sw->runs[0].name);
    for (int i = 1; i < sw->n; i++) {
        size_t k = 0;
        while (k < len && sw->runs[i].name[k] == sw->runs[0].name[k])
            k++;
        len = k;
    }
    while (len > 0 && isdigit((unsigned char)sw->runs[0].name[len - 1]))
        len--;
    while (len > 0 && strchr("-_. ", sw->runs[0].name[len - 1]))
        len--;
    snprintf(out, n, "%.*s", len ? (int)len : 5, len ? sw->runs[0].name : "sweep");
}

static int set_out(struct sweep *sw, const char *parent, const char *out_dir, char *err) {
    char dflt[PATH_MAX + 300];
    if (parent) {
        snprintf(dflt, sizeof(dflt), "%s/report", parent);
    } else {
        char cp[PATH_MAX];
        common_parent(sw, cp, sizeof(cp));
        snprintf(dflt, sizeof(dflt), "%s%s%s-report", cp, strcmp(cp, "/") ? "/" : "", sw->title);
    }
    const char *o = out_dir ? out_dir : dflt;
    size_t len = strlen(o);
    if (len + 32 >= sizeof(sw->out)) /* room for "/sweep_loss.svg" */
        return hw_errf(err, HW_EIO, "%s: path too long", o);
    memcpy(sw->out, o, len + 1);
    if (!realpath(sw->out, sw->out_abs))
        sw->out_abs[0] = 0; /* not there yet: made after the runs are read */
    return 0;
}

// ---------------------------------------------------------------------------------------------
// config: flatten, differing keys, override text

/* "section:" lines and indented "key: value" lines -> section.key = value (the resolved
 * config's layout, one level of sections); other lines are ignored */
static void cfg_flatten(struct run *r, const char *text) {
    char section[128] = "";
    for (const char *line = text; line && *line;) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        char buf[2048];
        snprintf(buf, sizeof(buf), "%.*s", (int)(len < sizeof(buf) ? len : sizeof(buf) - 1), line);
        line = eol ? eol + 1 : NULL;
        size_t l = strlen(buf);
        while (l && strchr(" \t\r", buf[l - 1]))
            buf[--l] = 0;
        char *colon = strchr(buf, ':');
        if (!l || buf[0] == '#' || !colon)
            continue;
        if (buf[0] != ' ') {
            snprintf(section, sizeof(section), "%.*s", (int)(colon - buf), buf);
            continue;
        }
        char *key = buf + strspn(buf, " "), *val = colon + 1 + strspn(colon + 1, " ");
        size_t vl = strlen(val);
        if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"')
            val[vl - 1] = 0, val++;
        char full[512];
        snprintf(full, sizeof(full), "%s.%.*s", section, (int)(colon - key), key);
        r->cfg = HW_REALLOC(r->cfg, (size_t)(r->n_cfg + 1) * sizeof(*r->cfg));
        r->cfg[r->n_cfg].key = HW_STRDUP(full);
        r->cfg[r->n_cfg++].val = HW_STRDUP(val);
    }
}

static const char *cfg_get(const struct run *r, const char *key) {
    for (int i = 0; i < r->n_cfg; i++)
        if (!strcmp(r->cfg[i].key, key))
            return r->cfg[i].val;
    return NULL;
}

/* does key have two different values (or a value and none) among the runs with a config? */
static int key_differs(const struct sweep *sw, const char *key) {
    const char *first = NULL;
    int seen = 0;
    for (int i = 0; i < sw->n; i++) {
        if (!sw->runs[i].n_cfg)
            continue;
        const char *v = cfg_get(&sw->runs[i], key);
        if (!seen)
            first = v, seen = 1;
        else if (!v != !first || (v && strcmp(v, first)))
            return 1;
    }
    return 0;
}

static int key_listed(const struct sweep *sw, const char *key) {
    for (int k = 0; k < sw->n_keys; k++)
        if (!strcmp(sw->keys[k], key))
            return 1;
    return 0;
}

/* the differing keys in the config's order (run.dir differs by construction: left out) */
static void find_keys(struct sweep *sw) {
    for (int i = 0; i < sw->n; i++)
        for (int j = 0; j < sw->runs[i].n_cfg; j++) {
            const char *key = sw->runs[i].cfg[j].key;
            if (!strcmp(key, "run.dir") || key_listed(sw, key) || !key_differs(sw, key))
                continue;
            sw->keys = HW_REALLOC(sw->keys, (size_t)(sw->n_keys + 1) * sizeof(*sw->keys));
            sw->keys[sw->n_keys++] = HW_STRDUP(key);
        }
    for (int i = 0; i < sw->n; i++) {
        struct run *r = &sw->runs[i];
        struct svg_buf b = {0};
        if (!r->n_cfg)
            svg_buf_printf(&b, "(no config.yaml)");
        for (int k = 0; k < sw->n_keys && r->n_cfg; k++) {
            const char *v = cfg_get(r, sw->keys[k]);
            svg_buf_printf(&b, "%s%s=%s", k ? " " : "", sw->keys[k], v ? v : "(unset)");
        }
        r->overrides = HW_STRDUP(b.s ? b.s : "-");
        svg_buf_free(&b);
    }
}

/* the eval metrics shown: every run's, in order of first appearance, at most SWEEP_EVAL_COLS */
static void find_evals(struct sweep *sw) {
    for (int i = 0; i < sw->n; i++)
        for (int e = 0; e < sw->runs[i].r.n_eval && sw->n_evals < SWEEP_EVAL_COLS; e++) {
            const char *name = sw->runs[i].r.eval[e].name;
            int seen = 0;
            for (int k = 0; k < sw->n_evals && !seen; k++)
                seen = !strcmp(sw->evals[k], name);
            if (!seen)
                sw->evals[sw->n_evals++] = HW_STRDUP(name);
        }
}

static double eval_of(const struct run *r, const char *name) {
    for (int e = 0; e < r->r.n_eval; e++)
        if (!strcmp(r->r.eval[e].name, name))
            return r->r.eval[e].v;
    return NAN;
}

// ---------------------------------------------------------------------------------------------
// the table: one formatter for sweep.md and index.html, and sweep.csv

enum column { K_RUN, K_OVER, K_STEPS, K_LOSS, K_VAL, K_BEST, K_BEST_STEP, K_TPS, K_LATEST, N_K };
static const char *const col_head[N_K] = {
    "run",           "overrides",    "steps",    "final train loss", "final val_loss",
    "best val_loss", "best at step", "tokens/s", "latest checkpoint"};

/* "ok", or why the run has no numbers ("no metrics yet (...)", or the error) */
static const char *status_text(const struct run *r) {
    return r->r.status == REPORT_RUN_OK ? "ok" : r->r.why;
}

/* column c of run r (c >= N_K: eval column c - N_K) as text */
static void cell(const struct sweep *sw, const struct run *r, int c, char *out, size_t n) {
    const struct report_run *x = &r->r;
    int ok = x->status == REPORT_RUN_OK;
    if (c == K_RUN || c == K_OVER || c == K_LATEST) {
        const char *s = c == K_RUN ? r->name : c == K_OVER ? r->overrides : x->latest;
        snprintf(out, n, "%s", *s ? s : "-");
    } else if (!ok && c < N_K) {
        snprintf(out, n, "-");
    } else if (c == K_STEPS || c == K_BEST_STEP || c == K_TPS) {
        double v = c == K_STEPS ? x->last_step : c == K_TPS ? x->tps_median : x->val_best_step;
        if (isfinite(v))
            snprintf(out, n, "%.0f", v);
        else
            snprintf(out, n, "-");
    } else {
        double v = c == K_LOSS   ? x->loss_last
                   : c == K_VAL  ? x->val_last
                   : c == K_BEST ? x->val_best
                                 : eval_of(r, sw->evals[c - N_K]);
        if (isfinite(v))
            report_fmt_num(out, n, v);
        else
            snprintf(out, n, "-");
    }
}

static void csv_field(struct svg_buf *b, const char *s, int last) {
    if (strpbrk(s, ",\"\n\r")) {
        svg_buf_printf(b, "\"");
        for (const char *p = s; *p; p++)
            svg_buf_printf(b, "%s%c", *p == '"' ? "\"" : "", *p); /* " doubled */
        svg_buf_printf(b, "\"");
    } else {
        svg_buf_printf(b, "%s", s);
    }
    svg_buf_printf(b, last ? "\n" : ",");
}

static void csv_num(struct svg_buf *b, double v) {
    char t[48] = "";
    if (isfinite(v))
        snprintf(t, sizeof(t), "%.9g", v);
    csv_field(b, t, 0);
}

static void build_csv(const struct sweep *sw, struct svg_buf *b) {
    static const char *const head[] = {
        "steps",         "train_loss",         "train_loss_step", "val_loss", "val_loss_step",
        "best_val_loss", "best_val_loss_step", "tokens_per_s",    "latest"};
    csv_field(b, "run", 0);
    csv_field(b, "dir", 0);
    csv_field(b, "status", 0);
    for (int k = 0; k < sw->n_keys; k++)
        csv_field(b, sw->keys[k], 0);
    for (size_t k = 0; k < sizeof(head) / sizeof(head[0]); k++)
        csv_field(b, head[k], 0);
    for (int e = 0; e < sw->n_evals; e++)
        csv_field(b, sw->evals[e], 0);
    csv_field(b, "note", 1);
    for (int i = 0; i < sw->n; i++) {
        const struct run *r = &sw->runs[i];
        const struct report_run *x = &r->r;
        static const char *const st[] = {"ok", "no metrics", "error"};
        csv_field(b, r->name, 0);
        csv_field(b, r->abs, 0);
        csv_field(b, st[x->status], 0);
        for (int k = 0; k < sw->n_keys; k++) {
            const char *v = r->n_cfg ? cfg_get(r, sw->keys[k]) : NULL;
            csv_field(b, v ? v : "", 0);
        }
        const double nums[] = {x->last_step,     x->loss_last, x->loss_last_step, x->val_last,
                               x->val_last_step, x->val_best,  x->val_best_step,  x->tps_median};
        for (size_t k = 0; k < sizeof(nums) / sizeof(nums[0]); k++)
            csv_num(b, nums[k]);
        csv_field(b, x->latest, 0);
        for (int e = 0; e < sw->n_evals; e++)
            csv_num(b, eval_of(r, sw->evals[e]));
        csv_field(b, x->status == REPORT_RUN_OK ? "" : x->why, 1);
    }
}

// ---------------------------------------------------------------------------------------------
// sweep.md and index.html

static void summary_line(const struct sweep *sw, struct svg_buf *b, int html) {
    int empty = 0, bad = 0;
    for (int i = 0; i < sw->n; i++) {
        empty += sw->runs[i].r.status == REPORT_RUN_EMPTY;
        bad += sw->runs[i].r.status == REPORT_RUN_BAD;
    }
    svg_buf_printf(b, "%d run%s: %d with metrics", sw->n, sw->n > 1 ? "s" : "", sw->n_ok);
    if (empty)
        svg_buf_printf(b, ", %d without metrics yet", empty);
    if (bad)
        svg_buf_printf(b, ", %d with errors", bad);
    svg_buf_printf(b, ". Config keys that differ between the runs: ");
    for (int k = 0; k < sw->n_keys; k++) {
        svg_buf_printf(b, "%s%s", k ? ", " : "", html ? "<code>" : "`");
        if (html)
            svg_buf_escape(b, sw->keys[k]);
        else
            svg_buf_printf(b, "%s", sw->keys[k]);
        svg_buf_printf(b, "%s", html ? "</code>" : "`");
    }
    svg_buf_printf(b, "%s.", sw->n_keys ? "" : "none");
    svg_buf_printf(b, " Losses are the last logged value; tokens/s is the median over the logged "
                      "steps.");
    if (sw->n_evals)
        svg_buf_printf(b, " Eval columns (task/metric): the newest evaluated checkpoint's value.");
}

static void build_md(const struct sweep *sw, struct svg_buf *b) {
    char t[1200];
    svg_buf_printf(b, "# headwise sweep report: %s\n\nGenerated %s by `headwise report`. ",
                   sw->title, sw->date);
    summary_line(sw, b, 0);
    svg_buf_printf(b, "\n\n|");
    for (int c = 0; c < N_K + sw->n_evals; c++)
        report_md_cell(b, c < N_K ? col_head[c] : sw->evals[c - N_K]);
    report_md_cell(b, "status");
    svg_buf_printf(b, "\n|---|---|");
    for (int c = K_STEPS; c < N_K + sw->n_evals; c++)
        svg_buf_printf(b, "%s|", c == K_LATEST ? "---" : "---:");
    svg_buf_printf(b, "---|\n");
    for (int i = 0; i < sw->n; i++) {
        svg_buf_printf(b, "|");
        for (int c = 0; c < N_K + sw->n_evals; c++) {
            cell(sw, &sw->runs[i], c, t, sizeof(t));
            report_md_cell(b, t);
        }
        report_md_cell(b, status_text(&sw->runs[i]));
        svg_buf_printf(b, "\n");
    }
    svg_buf_printf(b, "\n![loss by step, one line per run](sweep_loss.svg)\n\n"
                      "Machine-readable: [sweep.csv](sweep.csv).\n");
}

/* the run's own report when it has one, else its directory */
static void html_run_link(const struct sweep *sw, const struct run *r, struct svg_buf *b) {
    char href[2 * PATH_MAX + 64];
    int has_report = has_file(r->abs, "report/index.html");
    report_rel_link(sw->out_abs, r->abs, has_report ? "report/index.html" : "", href, sizeof(href));
    svg_buf_printf(b, "<a href=\"");
    svg_buf_escape(b, *href ? href : ".");
    svg_buf_printf(b, "\">");
    svg_buf_escape(b, r->name);
    svg_buf_printf(b, "</a>");
}

static void html_table(const struct sweep *sw, struct svg_buf *b) {
    char t[1200];
    svg_buf_printf(b, "<div class=\"scroll\"><table>\n<tr>");
    for (int c = 0; c < N_K + sw->n_evals; c++) {
        svg_buf_printf(b, "<th>");
        svg_buf_escape(b, c < N_K ? col_head[c] : sw->evals[c - N_K]);
        svg_buf_printf(b, "</th>");
    }
    svg_buf_printf(b, "<th>status</th></tr>\n");
    for (int i = 0; i < sw->n; i++) {
        const struct run *r = &sw->runs[i];
        svg_buf_printf(b, "<tr><td>");
        html_run_link(sw, r, b);
        svg_buf_printf(b, "</td>");
        for (int c = 1; c < N_K + sw->n_evals; c++) {
            cell(sw, r, c, t, sizeof(t));
            svg_buf_printf(b, "<td%s>", c == K_OVER || c == K_LATEST ? "" : " class=\"num\"");
            svg_buf_escape(b, t);
            svg_buf_printf(b, "</td>");
        }
        svg_buf_printf(b, "<td>");
        svg_buf_escape(b, status_text(r));
        svg_buf_printf(b, "</td></tr>\n");
    }
    svg_buf_printf(b, "</table></div>\n");
}

static void build_html(const struct sweep *sw, struct svg_buf *b) {
    svg_buf_printf(b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                      "<title>headwise sweep report: ");
    svg_buf_escape(b, sw->title);
    svg_buf_printf(
        b, "</title>\n<style>%s</style>\n</head>\n<body>\n<h1>headwise sweep report: ", report_css);
    svg_buf_escape(b, sw->title);
    svg_buf_printf(b,
                   "</h1>\n<p class=\"sub\">generated %s by <code>headwise report</code></p>\n<p>",
                   sw->date);
    summary_line(sw, b, 1);
    svg_buf_printf(b, " A run's name links to its own report when it has one.</p>\n");
    svg_buf_printf(b, "<h2>Runs</h2>\n");
    html_table(sw, b);
    svg_buf_printf(b, "<h2>Loss</h2>\n<div class=\"plots\"><a href=\"sweep_loss.svg\"><img "
                      "src=\"sweep_loss.svg\" alt=\"loss by step, one line per run\"></a></div>\n");
    svg_buf_printf(b, "<h2>Files</h2>\n<ul class=\"files\">\n<li><a href=\"sweep.md\">sweep.md</a>"
                      " (this table in Markdown)</li>\n<li><a href=\"sweep.csv\">sweep.csv</a> "
                      "(one row per run)</li>\n<li><a href=\"sweep_loss.svg\">sweep_loss.svg</a>"
                      "</li>\n</ul>\n</body>\n</html>\n");
}

// ---------------------------------------------------------------------------------------------
// sweep_loss.svg

/* a written file, for the "wrote PATH" lines (set_out keeps the paths short enough) */
static void add_file(const struct sweep *sw, const char *p) {
    size_t len = strlen(p);
    if (sw->files->n < REPORT_MAX_FILES && len < REPORT_PATH_MAX)
        memcpy(sw->files->path[sw->files->n++], p, len + 1);
}

/* (step, y) of the rows where y is finite. Caller frees both. */
static size_t finite_points(const struct report_run *x, const double *y, double **xs, double **ys) {
    *xs = HW_MALLOC((x->n ? x->n : 1) * sizeof(**xs));
    *ys = HW_MALLOC((x->n ? x->n : 1) * sizeof(**ys));
    size_t k = 0;
    for (size_t i = 0; i < x->n; i++)
        if (isfinite(y[i])) {
            (*xs)[k] = x->step[i];
            (*ys)[k++] = y[i];
        }
    return k;
}

static int plot_loss(const struct sweep *sw, char *err) {
    int n = sw->n, any_val = 0;
    struct svg_series *ser = HW_CALLOC((size_t)(2 * n + 1), sizeof(*ser));
    double **buf = HW_CALLOC((size_t)(4 * n + 1), sizeof(*buf));
    char(*names)[SWEEP_LEGEND_MAX + 8] = HW_CALLOC((size_t)n + 1, sizeof(*names));
    int ns = 0;
    for (int i = 0; i < n; i++) {
        const struct run *r = &sw->runs[i];
        if (r->r.status != REPORT_RUN_OK)
            continue;
        int over = r->n_cfg && strcmp(r->overrides, "-") != 0;
        int w = snprintf(names[ns], SWEEP_LEGEND_MAX + 1, "%s%s%s", r->name, over ? ": " : "",
                         over ? r->overrides : "");
        if (w > SWEEP_LEGEND_MAX)
            strcpy(names[ns] + SWEEP_LEGEND_MAX - 3, "...");
        struct svg_series base = {.name = names[ns], .color = i % 10, .dashed = (i / 10) % 2};
        ser[ns] = base, ser[n + ns] = base;
        ser[ns].n = finite_points(&r->r, r->r.val_loss, &buf[4 * ns], &buf[4 * ns + 1]);
        ser[ns].x = buf[4 * ns], ser[ns].y = buf[4 * ns + 1], ser[ns].markers = 1;
        ser[n + ns].n = finite_points(&r->r, r->r.loss, &buf[4 * ns + 2], &buf[4 * ns + 3]);
        ser[n + ns].x = buf[4 * ns + 2], ser[n + ns].y = buf[4 * ns + 3];
        any_val |= ser[ns].n > 0;
        ns++;
    }
    struct svg_panel p[2] = {{"validation loss", "val_loss (nats/token)", ser, ns, 0},
                             {"train loss", "loss (nats/token)", ser + n, ns, 0}};
    char title[400];
    snprintf(title, sizeof(title), "%s: loss by step, one line per run", sw->title);
    struct svg_figure f = {.title = title,
                           .xlabel = "step",
                           .panels = any_val ? p : p + 1,
                           .n_panels = any_val ? 2 : 1,
                           .x_integer = 1,
                           .cell_w = 960};
    char path[REPORT_PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/sweep_loss.svg", sw->out);
    int rc = svg_write(path, &f, err);
    if (!rc)
        add_file(sw, path);
    for (int i = 0; i < 4 * n; i++)
        free(buf[i]);
    free(buf), free(ser), free(names);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// entry point

static int write_text(struct sweep *sw, const char *name, struct svg_buf *b, char *err) {
    char p[REPORT_PATH_MAX + 32];
    snprintf(p, sizeof(p), "%s/%s", sw->out, name);
    int rc = fs_write_atomic(p, b->s ? b->s : "", b->n, err);
    if (!rc)
        add_file(sw, p);
    svg_buf_free(b);
    return rc;
}

/* the runs: dirs[0]'s run subdirectories, or every dir but the output and other reports */
static void collect(struct sweep *sw, char *const *dirs, int n, const char *parent) {
    if (parent) {
        scan_children(parent, add_run, sw);
    } else {
        for (int i = 0; i < n; i++) {
            char a[PATH_MAX];
            int same = sw->out_abs[0] && realpath(dirs[i], a) && !strcmp(a, sw->out_abs);
            if (!same && !(is_dir(dirs[i]) && is_sweep_report(dirs[i])))
                add_run(sw, dirs[i]);
        }
    }
    if (sw->n)
        qsort(sw->runs, (size_t)sw->n, sizeof(*sw->runs), run_cmp);
    for (int i = 0; i < sw->n; i++) {
        struct run *r = &sw->runs[i];
        sw->n_ok += report_run_load(r->path, &r->r) == REPORT_RUN_OK;
        if (r->r.config_yaml)
            cfg_flatten(r, r->r.config_yaml);
    }
}

static int no_runs_error(const struct sweep *sw, char *const *dirs, int n, char *err) {
    char where[REPORT_PATH_MAX + 64];
    if (n > 1)
        snprintf(where, sizeof(where), "%s (and %d more)", dirs[0], n - 1);
    else
        snprintf(where, sizeof(where), "%s", dirs[0]);
    if (!sw->n)
        return hw_errf(err, HW_EIO, "%s: no run directories (only sweep reports)", where);
    return hw_errf(err, HW_EFORMAT,
                   "%s: none of the %d run directories has metrics to report (%s: %s)", where,
                   sw->n, sw->runs[0].name, sw->runs[0].r.why);
}

static int write_all(struct sweep *sw, char *err) {
    int rc = fs_mkdirs(sw->out, err);
    if (rc)
        return rc;
    if (!realpath(sw->out, sw->out_abs))
        snprintf(sw->out_abs, sizeof(sw->out_abs), "%s", sw->out);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(sw->date, sizeof(sw->date), "%Y-%m-%d %H:%M UTC", &tm);
    struct svg_buf csv = {0}, md = {0}, html = {0};
    build_csv(sw, &csv);
    build_md(sw, &md);
    build_html(sw, &html);
    if (!(rc = plot_loss(sw, err)) && !(rc = write_text(sw, "sweep.csv", &csv, err)) &&
        !(rc = write_text(sw, "sweep.md", &md, err)))
        rc = write_text(sw, "index.html", &html, err);
    svg_buf_free(&csv), svg_buf_free(&md), svg_buf_free(&html);
    return rc;
}

static void sweep_free(struct sweep *sw) {
    for (int i = 0; i < sw->n; i++) {
        struct run *r = &sw->runs[i];
        report_run_free(&r->r);
        for (int k = 0; k < r->n_cfg; k++)
            free(r->cfg[k].key), free(r->cfg[k].val);
        free(r->cfg), free(r->path), free(r->overrides);
    }
    for (int k = 0; k < sw->n_keys; k++)
        free(sw->keys[k]);
    for (int e = 0; e < sw->n_evals; e++)
        free(sw->evals[e]);
    free(sw->keys), free(sw->runs), free(sw);
}

int sweep_write(char *const *dirs, int n, const char *out_dir, struct report_files *files,
                char *err) {
    struct sweep *sw = HW_CALLOC(1, sizeof(*sw));
    sw->files = files;
    files->n = 0;
    char *parent = n == 1 ? trim_path(dirs[0]) : NULL;
    int rc = 0;
    for (int i = 0; i < n; i++) /* the default output directory needs the runs' names */
        if (n == 1 || !is_dir(dirs[i]) || !is_sweep_report(dirs[i]))
            add_run(sw, dirs[i]);
    if (!sw->n)
        add_run(sw, dirs[0]);
    if (parent) {
        const char *slash = strrchr(parent, '/');
        snprintf(sw->title, sizeof(sw->title), "%s", slash && slash[1] ? slash + 1 : parent);
    } else {
        name_stem(sw, sw->title, sizeof(sw->title));
    }
    rc = set_out(sw, parent, out_dir, err);
    for (int i = 0; i < sw->n; i++)
        free(sw->runs[i].path);
    sw->n = 0;
    if (!rc) {
        collect(sw, dirs, n, parent);
        if (sw->n_ok == 0)
            rc = no_runs_error(sw, dirs, n, err);
    }
    if (!rc) {
        find_keys(sw);
        find_evals(sw);
        rc = write_all(sw, err);
    }
    free(parent);
    sweep_free(sw);
    return rc;
}
