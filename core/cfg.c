/* core/cfg.c -- the config schema table, the YAML loader (libyaml events -> a small node tree
 * with file:line:col on every node), `base:` inheritance, `key.path=value` overrides, range and
 * cross-field validation, the resolved-YAML dump and the Markdown reference (see cfg.h).
 * Loading applies defaults, then each file of the base chain (deepest first), then the
 * overrides, key by key onto one struct; the place each key was last set is remembered so that
 * cross-field errors can point at it. */
#define _XOPEN_SOURCE 700
#include "cfg.h"

#include "check.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

// ------------------------------------------------------------------------------------------------
// the schema in use: the sections' keys flattened, with offsets in the whole config

#define KT_INT    CFG_T_INT
#define KT_INT64  CFG_T_INT64
#define KT_DOUBLE CFG_T_DOUBLE
#define KT_BOOL   CFG_T_BOOL
#define KT_STRING CFG_T_STRING
#define KT_ENUM   CFG_T_ENUM
#define KT_LIST   CFG_T_LIST
#define KT_GRID   CFG_T_GRID
#define KT_WLIST  CFG_T_WLIST

static const struct cfg_schema *schema; /* the one the tables below were built from */
static struct cfg_key keys[CFG_MAX_KEYS];
static int N_KEYS, N_SECTIONS;
static const char *sections[32];

/* Build the flat key table of schema s (cached: one schema per program in practice). */
static void use_schema(const struct cfg_schema *s) {
    if (schema == s)
        return;
    HW_ASSERT(s->n <= (int)(sizeof(sections) / sizeof(sections[0])));
    N_KEYS = 0;
    N_SECTIONS = s->n;
    for (int i = 0; i < s->n; i++) {
        const struct cfg_section *sec = s->sections[i];
        sections[i] = sec->name;
        for (int j = 0; j < sec->n_keys; j++) {
            HW_ASSERT(N_KEYS < CFG_MAX_KEYS);
            keys[N_KEYS] = sec->keys[j];
            keys[N_KEYS].off += s->offsets[i];
            N_KEYS++;
        }
    }
    schema = s;
}

static void *field(void *c, const struct cfg_key *k) {
    return (char *)c + k->off;
}

static const void *cfield(const void *c, const struct cfg_key *k) {
    return (const char *)c + k->off;
}

/* Section name of key k, without the dot, and the field name after it. */
static size_t sec_len(const struct cfg_key *k) {
    return (size_t)(strchr(k->path, '.') - k->path);
}

static const char *key_name(const struct cfg_key *k) {
    return k->path + sec_len(k) + 1;
}

static int find_key(const char *path) {
    for (int i = 0; i < N_KEYS; i++)
        if (!strcmp(keys[i].path, path))
            return i;
    return -1;
}

static int find_section(const char *name) {
    for (int i = 0; i < N_SECTIONS; i++)
        if (!strcmp(sections[i], name))
            return i;
    return -1;
}

/* Shortest "%.*g" that reads back as exactly v; whole numbers below 1e15 without exponent. */
void cfg_fmt_double(char *buf, size_t n, double v) {
    if (isinf(v)) {
        snprintf(buf, n, "%s", v < 0 ? "-inf" : "inf");
        return;
    }
    if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(buf, n, "%.0f", v);
        return;
    }
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, n, "%.*g", p, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

/* "[8, 65536]", "(0, 1]", "[0, inf)"; "" for types without a range. */
static void fmt_range(char *buf, size_t n, const struct cfg_key *k) {
    char lo[32], hi[32];
    switch (k->type) {
    case KT_INT:
    case KT_INT64:
        snprintf(buf, n, "[%lld, %lld]", k->imin, k->imax);
        break;
    case KT_GRID:
        snprintf(buf, n, "[%lld, %lld]", k->imin, k->imax);
        break;
    case KT_DOUBLE:
        cfg_fmt_double(lo, sizeof(lo), k->dmin);
        cfg_fmt_double(hi, sizeof(hi), k->dmax);
        snprintf(buf, n, "%c%s, %s%c", k->dmin_open ? '(' : '[', lo, hi,
                 k->dmax_open || isinf(k->dmax) ? ')' : ']');
        break;
    default:
        buf[0] = '\0';
    }
}

/* "swiglu|gelu" */
static void fmt_vals(char *buf, size_t n, const struct cfg_key *k, const char *sep) {
    buf[0] = '\0';
    for (int i = 0; k->vals[i]; i++) {
        size_t len = strlen(buf);
        snprintf(buf + len, n - len, "%s%s", i ? sep : "", k->vals[i]);
    }
}

static void set_string(char *dst, size_t cap, const char *s) {
    memset(dst, 0, cap);
    snprintf(dst, cap, "%s", s);
}

static struct cfg_origin *origins(const struct cfg_schema *s, void *cfg) {
    return (struct cfg_origin *)((char *)cfg + s->origin_off);
}

void cfg_schema_defaults(const struct cfg_schema *s, void *c) {
    use_schema(s);
    memset(c, 0, s->size);
    for (int i = 0; i < CFG_MAX_KEYS; i++)
        origins(s, c)[i].file = -1;
    for (int i = 0; i < N_KEYS; i++) {
        const struct cfg_key *k = &keys[i];
        void *p = field(c, k);
        switch (k->type) {
        case KT_INT:
        case KT_BOOL:
            HW_ASSERT(k->size == sizeof(int));
            *(int *)p = (int)k->idef;
            break;
        case KT_INT64:
            HW_ASSERT(k->size == sizeof(int64_t));
            *(int64_t *)p = (int64_t)k->idef;
            break;
        case KT_DOUBLE:
            HW_ASSERT(k->size == sizeof(double));
            *(double *)p = k->ddef;
            break;
        case KT_STRING:
        case KT_ENUM:
            set_string(p, k->size, k->sdef);
            break;
        case KT_LIST:
            HW_ASSERT(k->size == sizeof(struct cfg_list));
            break;
        case KT_WLIST:
            HW_ASSERT(k->size == sizeof(struct cfg_wlist));
            break;
        case KT_GRID: {
            HW_ASSERT(k->size == sizeof(struct cfg_grid) && (k->idef >= 1 || k->auto_ok));
            struct cfg_grid *g = p;
            g->n = k->idef < 0 ? 0 : 1;
            g->opt[0] = g->v = k->idef < 0 ? 1 : (int)k->idef;
            break;
        }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// error messages

/* One line "file:line:col: error: msg"; control characters (from quoted YAML) become '?'. */
static int errat(char *err, int code, const char *file, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static int errat(char *err, int code, const char *file, int line, int col, const char *fmt, ...) {
    if (!err)
        return code;
    int n = snprintf(err, HW_ERR_LEN, "%s:%d:%d: error: ", file, line, col);
    if (n >= 0 && n < HW_ERR_LEN) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err + n, (size_t)(HW_ERR_LEN - n), fmt, ap);
        va_end(ap);
    }
    for (char *p = err; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    return code;
}

/* A value as shown in messages: at most 60 bytes, then "...". */
static const char *shown(char *buf, size_t n, const char *s) {
    size_t len = strlen(s);
    if (len <= 60 || n < 64)
        snprintf(buf, n, "%s", s);
    else
        snprintf(buf, n, "%.57s...", s);
    return buf;
}

/* Levenshtein distance, for did-you-mean. Strings longer than 63 bytes get a large distance. */
static int edit_distance(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    int row[64];
    if (na > 63 || nb > 63)
        return INT_MAX / 2;
    for (size_t j = 0; j <= nb; j++)
        row[j] = (int)j;
    for (size_t i = 1; i <= na; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= nb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[nb];
}

/* Keeps the closest candidate within max(2, len/3) edits (and fewer than len edits). */
struct suggest {
    const char *word;
    const char *best;
    int dist;
};

static void suggest_init(struct suggest *s, const char *word) {
    s->word = word;
    s->best = NULL;
    s->dist = INT_MAX;
}

static void suggest_try(struct suggest *s, const char *cand) {
    int len = (int)strlen(s->word);
    int limit = len / 3 > 2 ? len / 3 : 2;
    int d = edit_distance(s->word, cand);
    if (d <= limit && d < len && d < s->dist) {
        s->best = cand;
        s->dist = d;
    }
}

/* " (did you mean 'x'?)" or "" */
static const char *suggest_text(char *buf, size_t n, const char *best) {
    if (best)
        snprintf(buf, n, " (did you mean '%s'?)", best);
    else
        buf[0] = '\0';
    return buf;
}

// ------------------------------------------------------------------------------------------------
// YAML -> node tree

enum node_kind { NODE_SCALAR, NODE_MAP, NODE_SEQ };

struct node {
    enum node_kind kind;
    const char *file; /* interned by the loader */
    int line, col;    /* 1-based */
    char *text;       /* NODE_SCALAR: the value, NUL-terminated */
    size_t len;       /* NODE_SCALAR: bytes in text (may contain NUL from "\0") */
    int quoted;       /* NODE_SCALAR: not a plain scalar (quoted, block, or !!str) */
    int n, cap;
    struct node **kid; /* NODE_MAP: key, value, key, value...; NODE_SEQ: items */
};

#define NEST_MAX 64

static void node_free(struct node *n) {
    if (!n)
        return;
    for (int i = 0; i < n->n; i++)
        node_free(n->kid[i]);
    free(n->kid);
    free(n->text);
    free(n);
}

static struct node *node_new(enum node_kind kind, const char *file, int line, int col) {
    struct node *n = HW_CALLOC(1, sizeof(*n));
    n->kind = kind;
    n->file = file;
    n->line = line;
    n->col = col;
    return n;
}

static void node_push(struct node *parent, struct node *kid) {
    if (parent->n == parent->cap) {
        parent->cap = parent->cap ? 2 * parent->cap : 8;
        parent->kid = HW_REALLOC(parent->kid, (size_t)parent->cap * sizeof(*parent->kid));
    }
    parent->kid[parent->n++] = kid;
}

static const char *kind_name(const struct node *n) {
    return n->kind == NODE_MAP ? "a mapping" : "a sequence";
}

/* A plain empty, "~" or "null" scalar: YAML null. */
static int is_null(const struct node *n) {
    return n->kind == NODE_SCALAR && !n->quoted &&
           (!n->text[0] || !strcmp(n->text, "~") || !strcmp(n->text, "null") ||
            !strcmp(n->text, "Null") || !strcmp(n->text, "NULL"));
}

/* line/col of a byte offset in text (reader errors only give an offset). */
static void offset_pos(const char *text, size_t len, size_t off, int *line, int *col) {
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off && i < len; i++) {
        if (text[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

/* 1-based line/col of a libyaml mark. An override value (oneline) is one line at column col0+1;
 * libyaml may put end-of-input marks on a line after it: those map to the end of the value. */
static void mark_pos(yaml_mark_t m, size_t len, int col0, int oneline, int *line, int *col) {
    if (oneline && m.line > 0) {
        *line = 1;
        *col = col0 + (int)len + 1;
        return;
    }
    *line = (int)m.line + 1;
    *col = (int)m.column + 1 + col0;
}

static int syntax_error(const yaml_parser_t *p, const char *text, size_t len, const char *file,
                        int col0, int oneline, char *err) {
    const char *problem = p->problem ? p->problem : "unknown error";
    int line, col;
    if (p->error == YAML_READER_ERROR) {
        offset_pos(text, len, p->problem_offset, &line, &col);
        return errat(err, HW_ECONFIG, file, line, col + col0, "syntax: %s", problem);
    }
    if (p->error == YAML_MEMORY_ERROR)
        HW_DIE("libyaml: out of memory");
    mark_pos(p->problem_mark, len, col0, oneline, &line, &col);
    if (p->context) {
        int cline, ccol;
        mark_pos(p->context_mark, len, col0, oneline, &cline, &ccol);
        return errat(err, HW_ECONFIG, file, line, col, "syntax: %s (%s at %d:%d)", problem,
                     p->context, cline, ccol);
    }
    return errat(err, HW_ECONFIG, file, line, col, "syntax: %s", problem);
}

/* Parse text into a node tree (*out = NULL for an empty stream). col0 shifts every column and
 * oneline is set for an override's value, which starts after "key=". */
static int parse_yaml(const char *text, size_t len, const char *file, int col0, int oneline,
                      struct node **out, char *err) {
    yaml_parser_t p;
    yaml_event_t ev;
    struct node *root = NULL, *stack[NEST_MAX];
    int sp = 0, ndoc = 0, rc = 0, done = 0;

    *out = NULL;
    if (!yaml_parser_initialize(&p))
        HW_DIE("libyaml: out of memory");
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    while (!done && !rc) {
        if (!yaml_parser_parse(&p, &ev)) {
            rc = syntax_error(&p, text, len, file, col0, oneline, err);
            break;
        }
        int line, col;
        mark_pos(ev.start_mark, len, col0, oneline, &line, &col);
        struct node *n = NULL;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++ndoc > 1)
                rc = errat(err, HW_ECONFIG, file, line, col,
                           "expected one YAML document, found a second one");
            break;
        case YAML_ALIAS_EVENT:
            rc = errat(err, HW_ECONFIG, file, line, col, "aliases (*%s) are not supported",
                       (const char *)ev.data.alias.anchor);
            break;
        case YAML_SCALAR_EVENT:
            n = node_new(NODE_SCALAR, file, line, col);
            n->len = ev.data.scalar.length;
            n->text = HW_MALLOC(n->len + 1);
            memcpy(n->text, ev.data.scalar.value, n->len);
            n->text[n->len] = '\0';
            n->quoted =
                ev.data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
                (ev.data.scalar.tag && !strcmp((const char *)ev.data.scalar.tag, YAML_STR_TAG));
            break;
        case YAML_MAPPING_START_EVENT:
            n = node_new(NODE_MAP, file, line, col);
            break;
        case YAML_SEQUENCE_START_EVENT:
            n = node_new(NODE_SEQ, file, line, col);
            break;
        case YAML_MAPPING_END_EVENT:
        case YAML_SEQUENCE_END_EVENT:
            sp--;
            break;
        default:
            break;
        }
        if (n) {
            struct node *parent = sp ? stack[sp - 1] : NULL;
            if (parent && parent->kind == NODE_MAP && parent->n % 2 == 0 &&
                n->kind != NODE_SCALAR) {
                rc = errat(err, HW_ECONFIG, file, line, col, "mapping keys must be scalars");
                node_free(n);
            } else {
                if (parent)
                    node_push(parent, n);
                else
                    root = n;
                if (n->kind != NODE_SCALAR) {
                    if (sp == NEST_MAX)
                        rc = errat(err, HW_ECONFIG, file, line, col, "nested too deeply");
                    else
                        stack[sp++] = n;
                }
            }
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    if (rc) {
        node_free(root);
        return rc;
    }
    *out = root;
    return 0;
}

// ------------------------------------------------------------------------------------------------
// loader state

struct setpos {
    const char *file; /* NULL: never set (default) */
    int line, col;
    unsigned seq; /* order of setting; the most recent set wins a cross-field error */
};

#define BASE_DEPTH_MAX 32

struct loader {
    const struct cfg_schema *s;
    unsigned char *cfg; /* the config being built (s->size bytes) */
    struct setpos pos[CFG_MAX_KEYS];
    unsigned seq;
    char **names; /* interned file names ("<override N>" too), freed with the loader */
    int n_names;
    const char *chain[BASE_DEPTH_MAX]; /* files being loaded, outermost first (display names) */
    char *real[BASE_DEPTH_MAX];        /* and their canonical paths */
    int depth;
    int embedded;      /* cfg_load_string: `base:` is an error */
    const char *where; /* default position for cross-field errors on never-set keys */
};

static void loader_init(struct loader *L, const struct cfg_schema *s, const void *start) {
    memset(L, 0, sizeof(*L));
    use_schema(s);
    L->s = s;
    L->cfg = HW_MALLOC(s->size);
    if (start)
        memcpy(L->cfg, start, s->size);
    else
        cfg_schema_defaults(s, L->cfg);
}

static void loader_free(struct loader *L) {
    free(L->cfg);
    for (int i = 0; i < L->n_names; i++)
        free(L->names[i]);
    free(L->names);
}

static const char *intern(struct loader *L, const char *s) {
    L->names = HW_REALLOC(L->names, (size_t)(L->n_names + 1) * sizeof(*L->names));
    L->names[L->n_names] = HW_STRDUP(s);
    return L->names[L->n_names++];
}

// ------------------------------------------------------------------------------------------------
// applying nodes to the config

static int is_int_text(const char *s) {
    if (*s == '+' || *s == '-')
        s++;
    if (!*s)
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

/* Decimal floating point: [+-](digits[.digits]|.digits)[(e|E)[+-]digits]. No inf/nan/hex. */
static int is_number_text(const char *s) {
    int digits = 0;
    if (*s == '+' || *s == '-')
        s++;
    for (; *s >= '0' && *s <= '9'; s++)
        digits++;
    if (*s == '.')
        for (s++; *s >= '0' && *s <= '9'; s++)
            digits++;
    if (!digits)
        return 0;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-')
            s++;
        if (*s < '0' || *s > '9')
            return 0;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    return *s == '\0';
}

static int type_error(const struct cfg_key *k, const struct node *v, const char *what, char *err) {
    char buf[80];
    if (v->kind != NODE_SCALAR)
        return errat(err, HW_ECONFIG, v->file, v->line, v->col, "%s: expected %s, got %s", k->path,
                     what, kind_name(v));
    if (!v->text[0] && !v->quoted)
        return errat(err, HW_ECONFIG, v->file, v->line, v->col,
                     "%s: expected %s, got an empty value", k->path, what);
    if (v->quoted)
        return errat(err, HW_ECONFIG, v->file, v->line, v->col,
                     "%s: expected %s, got a quoted string '%s'", k->path, what,
                     shown(buf, sizeof(buf), v->text));
    return errat(err, HW_ECONFIG, v->file, v->line, v->col, "%s: expected %s, got '%s'", k->path,
                 what, shown(buf, sizeof(buf), v->text));
}

static int range_error(const struct cfg_key *k, const struct node *v, char *err) {
    char buf[80], range[96];
    fmt_range(range, sizeof(range), k);
    return errat(err, HW_ECONFIG, v->file, v->line, v->col, "%s: %s is out of range %s", k->path,
                 shown(buf, sizeof(buf), v->text), range);
}

/* A grid size: an integer, `auto` where the key allows it, or a list of distinct integers. */
static int set_grid(const struct cfg_key *k, const struct node *v, struct cfg_grid *g, char *err) {
    const char *what =
        k->auto_ok ? "an integer, a list of integers or auto" : "an integer or a list of integers";
    struct cfg_grid tmp;
    memset(&tmp, 0, sizeof(tmp));
    if (v->kind == NODE_SCALAR && !v->quoted && k->auto_ok && !strcmp(v->text, "auto")) {
        tmp.v = 1;
        *g = tmp;
        return 0;
    }
    int count = v->kind == NODE_SEQ ? v->n : 1;
    if (v->kind == NODE_MAP || count < 1)
        return type_error(k, v, what, err);
    if (count > CFG_GRID_MAX)
        return errat(err, HW_ECONFIG, v->file, v->line, v->col, "%s: %d choices; at most %d",
                     k->path, count, CFG_GRID_MAX);
    for (int i = 0; i < count; i++) {
        const struct node *it = v->kind == NODE_SEQ ? v->kid[i] : v;
        if (it->kind != NODE_SCALAR || it->quoted || !is_int_text(it->text))
            return type_error(k, it, what, err);
        errno = 0;
        long long x = strtoll(it->text, NULL, 10);
        if (errno == ERANGE || x < k->imin || x > k->imax)
            return range_error(k, it, err);
        for (int j = 0; j < i; j++)
            if (tmp.opt[j] == (int)x)
                return errat(err, HW_ECONFIG, it->file, it->line, it->col,
                             "%s: %lld is listed twice", k->path, x);
        tmp.opt[tmp.n++] = (int)x;
    }
    tmp.v = tmp.opt[0];
    *g = tmp;
    return 0;
}

/* Type-check, range-check and store node v as the value of key ki. */
/* one {path: P, weight: W} item (or a plain string P) of a weighted list */
static int set_witem(const struct cfg_key *k, const struct node *it, struct cfg_wlist *w, int i,
                     char *err) {
    const struct node *path = it->kind == NODE_SCALAR ? it : NULL, *weight = NULL;
    for (int j = 0; it->kind == NODE_MAP && j + 1 < it->n; j += 2) {
        const struct node *key = it->kid[j], *val = it->kid[j + 1];
        if (!strcmp(key->text, "path"))
            path = val;
        else if (!strcmp(key->text, "weight"))
            weight = val;
        else
            return errat(err, HW_ECONFIG, key->file, key->line, key->col,
                         "%s: item %d: unknown key '%s' (expected path and weight)", k->path, i + 1,
                         key->text);
    }
    if (it->kind == NODE_SEQ || !path || path->kind != NODE_SCALAR || is_null(path) || !path->len)
        return errat(err, HW_ECONFIG, it->file, it->line, it->col,
                     "%s: item %d: expected {path: GLOB, weight: W} or a path", k->path, i + 1);
    if (path->len >= CFG_PATH_MAX || memchr(path->text, '\0', path->len))
        return errat(err, HW_ECONFIG, path->file, path->line, path->col,
                     "%s: item %d: the path is too long or holds a NUL", k->path, i + 1);
    set_string(w->path[i], CFG_PATH_MAX, path->text);
    w->weight[i] = 1.0;
    if (weight) {
        double x = weight->kind == NODE_SCALAR && !weight->quoted && is_number_text(weight->text)
                       ? strtod(weight->text, NULL)
                       : NAN;
        if (!(x > 0) || !isfinite(x))
            return errat(err, HW_ECONFIG, weight->file, weight->line, weight->col,
                         "%s: item %d: weight: expected a number > 0", k->path, i + 1);
        w->weight[i] = x;
    }
    return 0;
}

static int set_wlist(const struct cfg_key *k, const struct node *v, struct cfg_wlist *out,
                     char *err) {
    int count = v->kind == NODE_SEQ ? v->n : (is_null(v) ? 0 : 1);
    if (count > CFG_LIST_MAX)
        return errat(err, HW_ECONFIG, v->file, v->line, v->col, "%s: %d items; at most %d", k->path,
                     count, CFG_LIST_MAX);
    struct cfg_wlist *tmp = HW_CALLOC(1, sizeof(*tmp));
    int rc = 0;
    for (int i = 0; i < count && !rc; i++)
        rc = set_witem(k, v->kind == NODE_SEQ ? v->kid[i] : v, tmp, i, err);
    tmp->n = count;
    if (!rc)
        *out = *tmp;
    free(tmp);
    return rc;
}

static int set_value(struct loader *L, int ki, const struct node *v, char *err) {
    const struct cfg_key *k = &keys[ki];
    void *p = field(L->cfg, k);
    char buf[80];

    switch (k->type) {
    case KT_INT:
    case KT_INT64: {
        const char *what = "an integer";
        if (v->kind != NODE_SCALAR || v->quoted || !is_int_text(v->text))
            return type_error(k, v, what, err);
        errno = 0;
        long long x = strtoll(v->text, NULL, 10);
        if (errno == ERANGE || x < k->imin || x > k->imax)
            return range_error(k, v, err);
        if (k->type == KT_INT)
            *(int *)p = (int)x;
        else
            *(int64_t *)p = (int64_t)x;
        break;
    }
    case KT_DOUBLE: {
        if (v->kind != NODE_SCALAR || v->quoted || !is_number_text(v->text))
            return type_error(k, v, "a number", err);
        double x = strtod(v->text, NULL);
        int below = k->dmin_open ? !(x > k->dmin) : !(x >= k->dmin);
        int above = k->dmax_open ? !(x < k->dmax) : !(x <= k->dmax);
        if (!isfinite(x) || below || above)
            return range_error(k, v, err);
        *(double *)p = x;
        break;
    }
    case KT_BOOL: {
        const char *t = v->kind == NODE_SCALAR ? v->text : "";
        int yes = !strcmp(t, "true") || !strcmp(t, "True") || !strcmp(t, "TRUE");
        int no = !strcmp(t, "false") || !strcmp(t, "False") || !strcmp(t, "FALSE");
        if (v->kind != NODE_SCALAR || v->quoted || !(yes || no))
            return type_error(k, v, "a boolean (true or false)", err);
        *(int *)p = yes;
        break;
    }
    case KT_STRING: {
        if (v->kind != NODE_SCALAR)
            return type_error(k, v, "a string", err);
        const char *t = is_null(v) ? "" : v->text;
        size_t len = is_null(v) ? 0 : v->len;
        if (memchr(t, '\0', len))
            return errat(err, HW_ECONFIG, v->file, v->line, v->col,
                         "%s: the string contains a NUL character", k->path);
        if (len >= k->size)
            return errat(err, HW_ECONFIG, v->file, v->line, v->col,
                         "%s: the string is too long (%zu bytes; at most %zu)", k->path, len,
                         k->size - 1);
        if (k->nonempty && !len)
            return errat(err, HW_ECONFIG, v->file, v->line, v->col, "%s: must not be empty",
                         k->path);
        set_string(p, k->size, t);
        break;
    }
    case KT_LIST: {
        struct cfg_list *lst = p;
        const struct node *items = v;
        int count = v->kind == NODE_SEQ ? v->n : (is_null(v) ? 0 : 1);
        if (v->kind == NODE_MAP)
            return type_error(k, v, "a list of strings", err);
        if (count > CFG_LIST_MAX)
            return errat(err, HW_ECONFIG, v->file, v->line, v->col, "%s: %d items; at most %d",
                         k->path, count, CFG_LIST_MAX);
        struct cfg_list tmp;
        memset(&tmp, 0, sizeof(tmp));
        for (int i = 0; i < count; i++) {
            const struct node *it = v->kind == NODE_SEQ ? items->kid[i] : v;
            if (it->kind != NODE_SCALAR)
                return errat(err, HW_ECONFIG, it->file, it->line, it->col,
                             "%s: expected a list of strings, got %s in it", k->path,
                             kind_name(it));
            if (it->len >= CFG_PATH_MAX || memchr(it->text, '\0', it->len))
                return errat(err, HW_ECONFIG, it->file, it->line, it->col,
                             "%s: item %d is too long or holds a NUL", k->path, i + 1);
            set_string(tmp.item[i], CFG_PATH_MAX, it->text);
        }
        tmp.n = count;
        *lst = tmp;
        break;
    }
    case KT_GRID: {
        int rc = set_grid(k, v, p, err);
        if (rc)
            return rc;
        break;
    }
    case KT_WLIST: {
        int rc = set_wlist(k, v, p, err);
        if (rc)
            return rc;
        break;
    }
    case KT_ENUM: {
        char vals[128];
        int ok = 0;
        fmt_vals(vals, sizeof(vals), k, "|");
        if (v->kind != NODE_SCALAR)
            return errat(err, HW_ECONFIG, v->file, v->line, v->col,
                         "%s: expected one of %s, got %s", k->path, vals, kind_name(v));
        for (int i = 0; k->vals[i]; i++)
            ok |= !strcmp(k->vals[i], v->text);
        if (!ok)
            return errat(err, HW_ECONFIG, v->file, v->line, v->col,
                         "%s: expected one of %s, got '%s'", k->path, vals,
                         shown(buf, sizeof(buf), v->text));
        set_string(p, k->size, v->text);
        break;
    }
    }
    L->pos[ki] = (struct setpos){v->file, v->line, v->col, ++L->seq};
    return 0;
}

/* Index of an earlier pair in map m with the same key as pair i, or -1. */
static int earlier_key(const struct node *m, int i) {
    for (int j = 0; j < i; j++)
        if (!strcmp(m->kid[2 * j]->text, m->kid[2 * i]->text))
            return j;
    return -1;
}

static int dup_error(const struct node *m, int i, int j, const char *prefix, char *err) {
    const struct node *key = m->kid[2 * i];
    char buf[80];
    return errat(err, HW_ECONFIG, key->file, key->line, key->col,
                 "duplicate key '%s%s' (first set at line %d)", prefix,
                 shown(buf, sizeof(buf), key->text), m->kid[2 * j]->line);
}

/* An unknown key in section sec: suggest the key of the same name in another section, else
 * the closest sibling. */
static int unknown_in_section(const char *sec, const struct node *key, char *err) {
    struct suggest s;
    char buf[80], sug[160];
    const char *other = NULL;
    size_t n = strlen(sec);
    suggest_init(&s, key->text);
    for (int i = 0; i < N_KEYS; i++) {
        if (sec_len(&keys[i]) == n && !strncmp(keys[i].path, sec, n))
            suggest_try(&s, key_name(&keys[i]));
        else if (!other && !strcmp(key_name(&keys[i]), key->text))
            other = keys[i].path;
    }
    return errat(err, HW_ECONFIG, key->file, key->line, key->col, "unknown key '%s' in '%s'%s",
                 shown(buf, sizeof(buf), key->text), sec,
                 suggest_text(sug, sizeof(sug), other ? other : s.best));
}

/* Is `prefix` ("model.attention.") the start of some key's path (a nested sub-section)? */
static int is_subsection(const char *prefix) {
    size_t n = strlen(prefix);
    for (int i = 0; i < N_KEYS; i++)
        if (!strncmp(keys[i].path, prefix, n))
            return 1;
    return 0;
}

/* Apply mapping v whose keys live under `prefix` ("model." or "model.attention."). A key may
 * be written nested (attention: {kind: moh}) or dotted (attention.kind: moh). */
static int apply_map(struct loader *L, const char *sec, const char *prefix, const struct node *v,
                     char *err) {
    if (is_null(v))
        return 0;
    if (v->kind != NODE_MAP) {
        char buf[80];
        if (v->kind == NODE_SEQ)
            return errat(err, HW_ECONFIG, v->file, v->line, v->col,
                         "%.*s: expected a mapping, got a sequence", (int)strlen(prefix) - 1,
                         prefix);
        return errat(err, HW_ECONFIG, v->file, v->line, v->col,
                     "%.*s: expected a mapping, got '%s'", (int)strlen(prefix) - 1, prefix,
                     shown(buf, sizeof(buf), v->text));
    }
    for (int i = 0; i < v->n / 2; i++) {
        const struct node *key = v->kid[2 * i];
        int j = earlier_key(v, i);
        if (j >= 0)
            return dup_error(v, i, j, prefix, err);
        char full[2 * CFG_NAME_MAX + 8], sub[2 * CFG_NAME_MAX + 16];
        snprintf(full, sizeof(full), "%s%s", prefix, key->text);
        snprintf(sub, sizeof(sub), "%s.", full);
        int ki = find_key(full);
        int rc;
        if (ki >= 0)
            rc = set_value(L, ki, v->kid[2 * i + 1], err);
        else if (v->kid[2 * i + 1]->kind == NODE_MAP && is_subsection(sub))
            rc = apply_map(L, sec, sub, v->kid[2 * i + 1], err);
        else
            return unknown_in_section(sec, key, err);
        if (rc)
            return rc;
    }
    return 0;
}

static int apply_section(struct loader *L, int si, const struct node *v, char *err) {
    char prefix[CFG_NAME_MAX];
    snprintf(prefix, sizeof(prefix), "%s.", sections[si]);
    return apply_map(L, sections[si], prefix, v, err);
}

static int unknown_top(const struct node *key, char *err) {
    struct suggest s;
    char buf[80], sug[160];
    const char *other = NULL;
    suggest_init(&s, key->text);
    for (int i = 0; i < N_SECTIONS; i++)
        suggest_try(&s, sections[i]);
    suggest_try(&s, "base");
    for (int i = 0; i < N_KEYS && !other; i++)
        if (!strcmp(key_name(&keys[i]), key->text))
            other = keys[i].path;
    return errat(err, HW_ECONFIG, key->file, key->line, key->col, "unknown key '%s' at top level%s",
                 shown(buf, sizeof(buf), key->text),
                 suggest_text(sug, sizeof(sug), other ? other : s.best));
}

/* Apply a whole file's top-level mapping (`base:` has been handled by the caller). */
static int apply_top(struct loader *L, const struct node *root, char *err) {
    for (int i = 0; i < root->n / 2; i++) {
        const struct node *key = root->kid[2 * i];
        int j = earlier_key(root, i);
        if (j >= 0)
            return dup_error(root, i, j, "", err);
        if (!strcmp(key->text, "base")) {
            if (L->embedded)
                return errat(err, HW_ECONFIG, key->file, key->line, key->col,
                             "base: not allowed in an embedded config");
            continue;
        }
        int si = find_section(key->text);
        if (si < 0)
            return unknown_top(key, err);
        int rc = apply_section(L, si, root->kid[2 * i + 1], err);
        if (rc)
            return rc;
    }
    return 0;
}

/* The top-level node of a file must be a mapping; an empty file is fine. */
static int check_root(const struct node *root, const char *file, char *err) {
    char buf[80];
    if (!root || is_null(root) || root->kind == NODE_MAP)
        return 0;
    if (root->kind == NODE_SEQ)
        return errat(err, HW_ECONFIG, file, root->line, root->col,
                     "expected a mapping at top level, got a sequence");
    return errat(err, HW_ECONFIG, file, root->line, root->col,
                 "expected a mapping at top level, got '%s'", shown(buf, sizeof(buf), root->text));
}

// ------------------------------------------------------------------------------------------------
// files and `base:`

#define FILE_MAX (16u << 20)

#define NOT_REGULAR (-1) /* read_file: a FIFO, device or directory (refused, never waited on) */

static const char *read_error(int e) {
    return e == NOT_REGULAR ? "not a regular file" : strerror(e);
}

/* Read a whole regular file. Returns 0, NOT_REGULAR, or errno (EFBIG for a file over FILE_MAX).
 * Opened non-blocking so that a FIFO is refused instead of waited on. */
static int read_file(const char *path, char **text, size_t *len) {
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0)
        return errno ? errno : EIO;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return e ? e : EIO;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return S_ISDIR(st.st_mode) ? EISDIR : NOT_REGULAR;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    FILE *f = fdopen(fd, "rb");
    size_t cap = 4096, n = 0;
    char *buf;
    if (!f) {
        int e = errno;
        close(fd);
        return e ? e : EIO;
    }
    buf = HW_MALLOC(cap);
    for (;;) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
        if (n == cap) {
            if (cap >= FILE_MAX) {
                free(buf);
                fclose(f);
                return EFBIG;
            }
            cap *= 2;
            buf = HW_REALLOC(buf, cap);
        }
    }
    int bad = ferror(f);
    int e = errno;
    fclose(f);
    if (bad) {
        free(buf);
        return e ? e : EIO;
    }
    *text = buf;
    *len = n;
    return 0;
}

/* "dir/of/from/" + rel, unless rel is absolute or from has no directory. Caller frees. */
static char *resolve_rel(const char *from, const char *rel) {
    const char *slash = strrchr(from, '/');
    if (rel[0] == '/' || !slash)
        return HW_STRDUP(rel);
    size_t dn = (size_t)(slash - from) + 1, rn = strlen(rel);
    char *out = HW_MALLOC(dn + rn + 1);
    memcpy(out, from, dn);
    memcpy(out + dn, rel, rn + 1);
    return out;
}

static int load_file(struct loader *L, const char *path, const struct node *from, char *err);

/* Handle the `base:` key of root (file `file`), if any: load the base first. */
static int load_base(struct loader *L, const struct node *root, const char *file, char *err) {
    const struct node *v = NULL;
    char buf[80];
    if (!root || root->kind != NODE_MAP || L->embedded)
        return 0;
    for (int i = 0; i < root->n / 2; i++) {
        if (strcmp(root->kid[2 * i]->text, "base"))
            continue;
        if (v)
            return dup_error(root, i, earlier_key(root, i), "", err);
        v = root->kid[2 * i + 1];
    }
    if (!v)
        return 0;
    if (v->kind != NODE_SCALAR)
        return errat(err, HW_ECONFIG, v->file, v->line, v->col,
                     "base: expected a file path, got %s", kind_name(v));
    if (is_null(v) || memchr(v->text, '\0', v->len))
        return errat(err, HW_ECONFIG, v->file, v->line, v->col,
                     "base: expected a file path, got '%s'", shown(buf, sizeof(buf), v->text));
    char *path = resolve_rel(file, v->text);
    int rc = load_file(L, path, v, err);
    free(path);
    return rc;
}

/* Load one file (and its base chain) onto L->cfg. from: the `base:` value that names this
 * file, or NULL for the top file. */
static int load_file(struct loader *L, const char *path, const struct node *from, char *err) {
    const char *name = intern(L, path);
    char *text = NULL, *real;
    size_t len = 0;
    struct node *root = NULL;
    int rc, e;

    real = realpath(path, NULL);
    e = real ? read_file(path, &text, &len) : errno;
    if (e) {
        free(real);
        if (!from)
            return hw_errf(err, HW_EIO, "%s: error: cannot open: %s", path, read_error(e));
        return errat(err, HW_ECONFIG, from->file, from->line, from->col,
                     "base: cannot open '%s': %s", path, read_error(e));
    }
    for (int i = 0; i < L->depth; i++) {
        if (strcmp(L->real[i], real))
            continue;
        char chain[HW_ERR_LEN] = "";
        for (int j = i; j < L->depth; j++) {
            size_t n = strlen(chain);
            snprintf(chain + n, sizeof(chain) - n, "%s -> ", L->chain[j]);
        }
        free(real);
        free(text);
        return errat(err, HW_ECONFIG, from->file, from->line, from->col, "base: cycle: %s%s", chain,
                     path);
    }
    if (L->depth == BASE_DEPTH_MAX) {
        free(real);
        free(text);
        return errat(err, HW_ECONFIG, from->file, from->line, from->col,
                     "base: more than %d files deep", BASE_DEPTH_MAX);
    }
    L->chain[L->depth] = name;
    L->real[L->depth++] = real;

    rc = parse_yaml(text, len, name, 0, 0, &root, err);
    if (!rc)
        rc = check_root(root, name, err);
    if (!rc)
        rc = load_base(L, root, name, err);
    if (!rc && root && root->kind == NODE_MAP)
        rc = apply_top(L, root, err);

    node_free(root);
    free(text);
    free(L->real[--L->depth]);
    return rc;
}

// ------------------------------------------------------------------------------------------------
// overrides

/* Unknown override key: the key whose last part matches, else the closest dotted path. */
static int unknown_override(const char *file, const char *key, char *err) {
    struct suggest s;
    char buf[80], sug[160];
    const char *dot = strrchr(key, '.');
    const char *last = dot ? dot + 1 : key;
    const char *other = NULL;
    suggest_init(&s, key);
    for (int i = 0; i < N_KEYS; i++) {
        suggest_try(&s, keys[i].path);
        if (!other && !strcmp(key_name(&keys[i]), last))
            other = keys[i].path;
    }
    for (int i = 0; i < N_SECTIONS; i++)
        suggest_try(&s, sections[i]);
    return errat(err, HW_ECONFIG, file, 1, 1, "unknown key '%s'%s", shown(buf, sizeof(buf), key),
                 suggest_text(sug, sizeof(sug), other ? other : s.best));
}

/* Apply "key.path=value" (the idx-th override, 1-based). The value is parsed as YAML, so a
 * whole section can be given as a flow mapping: "model={d_model: 256, n_layers: 2}". */
static int apply_override(struct loader *L, const char *kv, int idx, char *err) {
    char fname[32];
    snprintf(fname, sizeof(fname), "<override %d>", idx);
    const char *file = intern(L, fname);
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv)
        return errat(err, HW_ECONFIG, file, 1, 1, "expected key.path=value");

    size_t klen = (size_t)(eq - kv);
    char *key = HW_MALLOC(klen + 1);
    memcpy(key, kv, klen);
    key[klen] = '\0';
    int col0 = (int)klen + 1; /* the value starts at column klen + 2 */

    struct node *v = NULL;
    int rc = parse_yaml(eq + 1, strlen(eq + 1), file, col0, 1, &v, err);
    if (!rc && !v) { /* empty value (or only a comment): an empty plain scalar */
        v = node_new(NODE_SCALAR, file, 1, col0 + 1);
        v->text = HW_STRDUP("");
    }
    if (!rc) {
        const char *dot = strchr(key, '.');
        int ki = find_key(key);
        int si = dot ? -1 : find_section(key);
        if (ki >= 0)
            rc = set_value(L, ki, v, err);
        else if (si >= 0)
            rc = apply_section(L, si, v, err);
        else if (dot && v->kind == NODE_MAP && strlen(key) < 2 * CFG_NAME_MAX) {
            char sec[CFG_NAME_MAX], sub[2 * CFG_NAME_MAX + 8];
            snprintf(sec, sizeof(sec), "%.*s", (int)(dot - key), key);
            snprintf(sub, sizeof(sub), "%s.", key);
            rc = is_subsection(sub) ? apply_map(L, sec, sub, v, err)
                                    : unknown_override(file, key, err);
        } else if (!strcmp(key, "base"))
            rc = errat(err, HW_ECONFIG, file, 1, 1, "base: not allowed in an override");
        else
            rc = unknown_override(file, key, err);
    }
    node_free(v);
    free(key);
    return rc;
}

// ------------------------------------------------------------------------------------------------
// cross-field rules: the sections' validators, through a check handle

struct cfg_check {
    const struct loader *L;
};

static int key_index(const char *path) {
    int i = find_key(path);
    if (i < 0)
        HW_DIE("config rule names an unknown key '%s'", path);
    return i;
}

const void *cfg_value(const struct cfg_check *chk, const char *path) {
    return cfield(chk->L->cfg, &keys[key_index(path)]);
}

int cfg_int(const struct cfg_check *chk, const char *path) {
    const struct cfg_key *k = &keys[key_index(path)];
    HW_ASSERT(k->type == KT_INT || k->type == KT_BOOL || k->type == KT_GRID);
    if (k->type == KT_GRID) /* the value in force */
        return ((const struct cfg_grid *)cfield(chk->L->cfg, k))->v;
    return *(const int *)cfield(chk->L->cfg, k);
}

double cfg_double(const struct cfg_check *chk, const char *path) {
    const struct cfg_key *k = &keys[key_index(path)];
    HW_ASSERT(k->type == KT_DOUBLE);
    return *(const double *)cfield(chk->L->cfg, k);
}

const char *cfg_string(const struct cfg_check *chk, const char *path) {
    const struct cfg_key *k = &keys[key_index(path)];
    HW_ASSERT(k->type == KT_STRING || k->type == KT_ENUM);
    return (const char *)cfield(chk->L->cfg, k);
}

const void *cfg_section_of(const struct cfg_check *chk, const char *name) {
    const struct cfg_schema *s = chk->L->s;
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->sections[i]->name, name))
            return chk->L->cfg + s->offsets[i];
    HW_DIE("config rule names an unknown section '%s'", name);
}

int cfg_rule_error(const struct cfg_check *chk, const char *a, const char *b, const char *msg_a,
                   const char *msg_b, char *err) {
    const struct loader *L = chk->L;
    int ia = key_index(a), ib = key_index(b);
    int use_b = L->pos[ib].seq > L->pos[ia].seq;
    const struct cfg_key *k = &keys[use_b ? ib : ia];
    const struct setpos *p = &L->pos[use_b ? ib : ia];
    const char *msg = use_b ? msg_b : msg_a;
    if (p->file)
        return errat(err, HW_ECONFIG, p->file, p->line, p->col, "%s: %s", k->path, msg);
    return errat(err, HW_ECONFIG, L->where, 1, 1, "%s: %s", k->path, msg);
}

static int validate_once(const struct loader *L, char *err) {
    const struct cfg_check chk = {L};
    for (int j = 0; j < L->s->n; j++) {
        const struct cfg_section *sec =
            L->s->sections[L->s->validate_order ? L->s->validate_order[j] : j];
        if (sec->validate && sec->validate(&chk, err))
            return HW_ECONFIG;
    }
    return 0;
}

/* Every section's rules, in the schema's order; the first broken one is reported. A grid key
 * with several choices is checked with each of them (any may be chosen at run time), so the
 * rules run once per combination; the values in force are left as they were. */
static int validate(const struct loader *L, char *err) {
    struct cfg_grid *g[4];
    int ng = 0, idx[4] = {0}, saved[4], rc = 0;
    for (int i = 0; i < N_KEYS && ng < 4; i++)
        if (keys[i].type == KT_GRID && ((struct cfg_grid *)field(L->cfg, &keys[i]))->n > 1)
            g[ng++] = field(L->cfg, &keys[i]);
    for (int k = 0; k < ng; k++)
        saved[k] = g[k]->v;
    for (;;) {
        for (int k = 0; k < ng; k++)
            g[k]->v = g[k]->opt[idx[k]];
        if ((rc = validate_once(L, err)))
            break;
        int k = 0;
        while (k < ng && ++idx[k] == g[k]->n)
            idx[k++] = 0;
        if (k == ng)
            break;
    }
    for (int k = 0; k < ng; k++)
        g[k]->v = saved[k];
    return rc;
}

// ------------------------------------------------------------------------------------------------
// public entry points

static char *source_of(const struct cfg_schema *s, void *cfg) {
    return (char *)cfg + s->source_off;
}

static char (*files_of(const struct cfg_schema *s, void *cfg))[CFG_PATH_MAX] {
    return (char(*)[CFG_PATH_MAX])((char *)cfg + s->files_off);
}

/* Keep where each key was set, so errors found after loading can point at it. */
static void record_origins(struct loader *L) {
    struct cfg_origin *origin = origins(L->s, L->cfg);
    char(*files)[CFG_PATH_MAX] = files_of(L->s, L->cfg);
    memset(files, 0, sizeof(char[CFG_MAX_FILES][CFG_PATH_MAX]));
    int n_files = 0;
    for (int i = 0; i < N_KEYS; i++) {
        const struct setpos *p = &L->pos[i];
        origin[i].file = -1;
        origin[i].line = p->line;
        origin[i].col = p->col;
        if (!p->file)
            continue;
        int f = 0;
        while (f < n_files && strcmp(files[f], p->file) != 0)
            f++;
        if (f == n_files && n_files < CFG_MAX_FILES)
            set_string(files[n_files++], CFG_PATH_MAX, p->file);
        origin[i].file = f < n_files ? f : -1;
    }
}

void cfg_schema_where(const struct cfg_schema *s, const void *cfg, const char *key, char *out,
                      size_t n) {
    use_schema(s);
    void *c = (void *)cfg;
    const struct cfg_origin *origin = origins(s, c);
    char(*files)[CFG_PATH_MAX] = files_of(s, c);
    const char *src = source_of(s, c);
    int i = find_key(key);
    if (i >= 0 && origin[i].file >= 0)
        snprintf(out, n, "%s:%d:%d", files[origin[i].file], origin[i].line, origin[i].col);
    else
        snprintf(out, n, "%s:1:1", src[0] ? src : "<config>");
}

int cfg_schema_validate(const struct cfg_schema *s, const void *cfg, char *err) {
    struct loader L;
    loader_init(&L, s, cfg);
    const struct cfg_origin *origin = origins(s, L.cfg);
    char(*files)[CFG_PATH_MAX] = files_of(s, L.cfg);
    for (int i = 0; i < N_KEYS; i++)
        if (origin[i].file >= 0)
            L.pos[i] = (struct setpos){files[origin[i].file], origin[i].line, origin[i].col, 0};
    const char *src = source_of(s, L.cfg);
    L.where = src[0] ? src : "<config>";
    int rc = validate_once(&L, err); /* with the values in force, not every choice */
    loader_free(&L);
    return rc;
}

int cfg_schema_was_set(const struct cfg_schema *s, const void *cfg, const char *path) {
    use_schema(s);
    int i = find_key(path);
    return i >= 0 && origins(s, (void *)cfg)[i].file >= 0;
}

static int finish(struct loader *L, void *c, int n_over, char *const *overrides, int rc,
                  char *err) {
    for (int i = 0; !rc && i < n_over; i++)
        rc = apply_override(L, overrides[i], i + 1, err);
    if (!rc)
        rc = validate(L, err);
    if (!rc) {
        record_origins(L);
        memcpy(c, L->cfg, L->s->size);
    }
    loader_free(L);
    return rc;
}

int cfg_schema_load(const struct cfg_schema *s, void *c, const char *path, int n_over,
                    char *const *overrides, char *err) {
    struct loader L;
    loader_init(&L, s, NULL);
    set_string(source_of(s, L.cfg), CFG_PATH_MAX, path);
    L.where = path;
    int rc = load_file(&L, path, NULL, err);
    return finish(&L, c, n_over, overrides, rc, err);
}

int cfg_schema_load_string(const struct cfg_schema *s, void *c, const char *text, const char *name,
                           int n_over, char *const *overrides, char *err) {
    struct loader L;
    struct node *root = NULL;
    loader_init(&L, s, NULL);
    L.embedded = 1;
    name = intern(&L, name && name[0] ? name : "<config>");
    set_string(source_of(s, L.cfg), CFG_PATH_MAX, name);
    L.where = name;
    int rc = parse_yaml(text, strlen(text), name, 0, 0, &root, err);
    if (!rc)
        rc = check_root(root, name, err);
    if (!rc && root && root->kind == NODE_MAP)
        rc = apply_top(&L, root, err);
    node_free(root);
    return finish(&L, c, n_over, overrides, rc, err);
}

int cfg_schema_override(const struct cfg_schema *s, void *c, const char *kv, char *err) {
    struct loader L;
    char *const one[1] = {(char *)kv};
    loader_init(&L, s, c);
    const char *src = source_of(s, c);
    L.where = src[0] ? src : "<config>";
    return finish(&L, c, 1, one, 0, err);
}

// ------------------------------------------------------------------------------------------------
// output: resolved YAML and the Markdown reference

struct sbuf {
    char *p;
    size_t n, cap;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(struct sbuf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        HW_ASSERT(n >= 0);
        if (b->p && b->n + (size_t)n < b->cap) {
            b->n += (size_t)n;
            return;
        }
        b->cap = (b->cap ? 2 * b->cap : 4096) + (size_t)n;
        b->p = HW_REALLOC(b->p, b->cap);
    }
}

/* A YAML double-quoted scalar. */
static void sb_quoted(struct sbuf *b, const char *s) {
    sb_printf(b, "\"");
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            sb_printf(b, "\\%c", ch);
        else if (ch == '\n')
            sb_printf(b, "\\n");
        else if (ch == '\t')
            sb_printf(b, "\\t");
        else if (ch < 0x20 || ch == 0x7f)
            sb_printf(b, "\\x%02x", ch);
        else if (ch == 0xc2 && (unsigned char)s[1] >= 0x80 && (unsigned char)s[1] <= 0x9f) {
            /* U+0080..U+009F: C1 controls, which YAML rejects, and NEL, a line break */
            sb_printf(b, "\\x%02x", (unsigned char)s[1]);
            s++;
        } else if (ch == 0xe2 && (unsigned char)s[1] == 0x80 &&
                   ((unsigned char)s[2] == 0xa8 || (unsigned char)s[2] == 0xa9)) {
            /* U+2028, U+2029: line and paragraph separators, line breaks in YAML */
            sb_printf(b, "\\u%s", (unsigned char)s[2] == 0xa8 ? "2028" : "2029");
            s += 2;
        } else if (ch == 0xef && (unsigned char)s[1] == 0xbf &&
                   ((unsigned char)s[2] == 0xbe || (unsigned char)s[2] == 0xbf)) {
            /* U+FFFE, U+FFFF: non-characters, which YAML rejects */
            sb_printf(b, "\\u%s", (unsigned char)s[2] == 0xbe ? "fffe" : "ffff");
            s += 2;
        } else
            sb_printf(b, "%c", ch);
    }
    sb_printf(b, "\"");
}

/* The value of key k in c, as YAML text that loads back to the same value. */
static void sb_value(struct sbuf *b, const void *c, const struct cfg_key *k) {
    const void *p = cfield(c, k);
    char num[40];
    switch (k->type) {
    case KT_INT:
        sb_printf(b, "%d", *(const int *)p);
        break;
    case KT_INT64:
        sb_printf(b, "%" PRId64, *(const int64_t *)p);
        break;
    case KT_DOUBLE:
        cfg_fmt_double(num, sizeof(num), *(const double *)p);
        sb_printf(b, "%s", num);
        break;
    case KT_BOOL:
        sb_printf(b, "%s", *(const int *)p ? "true" : "false");
        break;
    case KT_ENUM:
        sb_printf(b, "%s", (const char *)p);
        break;
    case KT_STRING:
        sb_quoted(b, (const char *)p);
        break;
    case KT_GRID: {
        const struct cfg_grid *g = p;
        if (g->n == 0)
            sb_printf(b, "auto");
        else if (g->n == 1)
            sb_printf(b, "%d", g->opt[0]);
        else
            for (int i = 0; i < g->n; i++)
                sb_printf(b, "%s%d%s", i ? ", " : "[", g->opt[i], i + 1 == g->n ? "]" : "");
        break;
    }
    case KT_WLIST: {
        const struct cfg_wlist *w = p;
        sb_printf(b, "[");
        for (int i = 0; i < w->n; i++) {
            cfg_fmt_double(num, sizeof(num), w->weight[i]);
            sb_printf(b, "%s{path: ", i ? ", " : "");
            sb_quoted(b, w->path[i]);
            sb_printf(b, ", weight: %s}", num);
        }
        sb_printf(b, "]");
        break;
    }
    case KT_LIST: {
        const struct cfg_list *lst = p;
        sb_printf(b, "[");
        for (int i = 0; i < lst->n; i++) {
            if (i)
                sb_printf(b, ", ");
            sb_quoted(b, lst->item[i]);
        }
        sb_printf(b, "]");
        break;
    }
    }
}

char *cfg_schema_to_yaml(const struct cfg_schema *s_, const void *c) {
    struct sbuf b = {0};
    use_schema(s_);
    sb_printf(&b, "# headwise config, resolved: every key\n");
    for (int s = 0; s < N_SECTIONS; s++) {
        size_t n = strlen(sections[s]);
        sb_printf(&b, "%s:\n", sections[s]);
        for (int i = 0; i < N_KEYS; i++) {
            if (sec_len(&keys[i]) != n || strncmp(keys[i].path, sections[s], n))
                continue;
            sb_printf(&b, "  %s: ", key_name(&keys[i]));
            sb_value(&b, c, &keys[i]);
            sb_printf(&b, "\n");
        }
    }
    return b.p;
}

static const char *type_name(const struct cfg_key *k) {
    switch (k->type) {
    case KT_INT:
        return "int";
    case KT_INT64:
        return "int64";
    case KT_DOUBLE:
        return "number";
    case KT_BOOL:
        return "bool";
    case KT_STRING:
        return "string";
    case KT_ENUM:
        return "enum";
    case KT_LIST:
        return "list of strings";
    case KT_WLIST:
        return "list of {path, weight}";
    case KT_GRID:
        return "int or list";
    }
    return "?";
}

void cfg_schema_docs(const struct cfg_schema *sch, FILE *f) {
    void *d = HW_MALLOC(sch->size);
    cfg_schema_defaults(sch, d);
    fputs("# Configuration reference\n"
          "\n"
          "<!-- Generated by `headwise config docs` from the sections every module registers "
          "(model/model_cfg.c, train/train_cfg.c, datasets/data_cfg.c, dist/dist_cfg.c, "
          "eval/eval_cfg.c; config/config.c composes them); do not edit. -->\n"
          "\n"
          "A run is described by one YAML file with up to four sections, `model`, `train`, "
          "`data` and `run`.\n"
          "Every key is optional: a key that is not given keeps its default. Unknown keys, "
          "wrong types,\n"
          "out-of-range values and broken cross-field rules are errors, never warnings.\n"
          "\n"
          "```yaml\n"
          "base: small.yaml      # optional: load this file first\n"
          "model:\n"
          "  d_model: 256\n"
          "  mlp: gelu\n"
          "train:\n"
          "  lr: 1.0e-3\n"
          "data:\n"
          "  train: data/shard_train.h5\n"
          "```\n"
          "\n"
          "**`base:`** names another config file, relative to the directory of the file that "
          "contains it.\n"
          "The base is loaded first (it may have a `base:` of its own), then the keys of this "
          "file override\n"
          "it key by key; sections are merged, not replaced. A cycle of `base:` files is an "
          "error. A config\n"
          "stored inside a checkpoint is self-contained and may not use `base:`.\n"
          "\n"
          "**Overrides.** Arguments of the form `key.path=value` after the config file override "
          "single keys,\n"
          "in order, after every file is loaded; the rules below are checked after the last "
          "one:\n"
          "\n"
          "    headwise train cfg.yaml train.lr=1e-3 model.mlp=gelu\n"
          "\n"
          "The value is parsed as YAML, so `true`, `1e-3` and `\"a path with spaces\"` work, and "
          "a whole\n"
          "section can be given as a flow mapping: `model={d_model: 256, n_layers: 8}`.\n"
          "\n"
          "**Errors.** The first error stops loading and is reported as one line in compiler "
          "format, with\n"
          "1-based line and column:\n"
          "\n"
          "    configs/x.yaml:4:3: error: unknown key 'warmpu' in 'train' (did you mean "
          "'warmup'?)\n"
          "    configs/x.yaml:5:7: error: train.lr: 5 is out of range (0, 1]\n"
          "    <override 1>:1:13: error: train.steps: expected an integer, got 'ten'\n"
          "\n"
          "An error in a base file names that file. An override is named `<override N>` (N "
          "counts from 1).\n"
          "A cross-field error points at whichever key of the rule was set last (if none was, "
          "at line 1,\n"
          "column 1 of the config). Any configuration error makes `headwise` exit with code "
          "2.\n"
          "\n"
          "**Types.** `int`/`int64`: a decimal integer. `number`: a decimal number such as "
          "`0.5` or `3e-4`\n"
          "(no `inf`/`nan`). `bool`: `true` or `false`. Numbers and booleans must not be quoted "
          "(`\"10\"` is\n"
          "a string). `string`: any scalar; `\"\"` or an empty value is the empty string. "
          "`enum`: one of the\n"
          "listed words. Ranges use interval notation: `[a, b]` includes both ends, `(a, b]` "
          "excludes `a`.\n",
          f);
    for (int s = 0; s < N_SECTIONS; s++) {
        size_t n = strlen(sections[s]);
        fprintf(f, "\n## %s\n\n", sections[s]);
        fputs("| key | type | default | range / values | meaning |\n", f);
        fputs("|---|---|---|---|---|\n", f);
        for (int i = 0; i < N_KEYS; i++) {
            const struct cfg_key *k = &keys[i];
            struct sbuf b = {0};
            char range[128];
            if (sec_len(k) != n || strncmp(k->path, sections[s], n))
                continue;
            sb_value(&b, d, k);
            if (k->type == KT_ENUM)
                fmt_vals(range, sizeof(range), k, " \\| ");
            else if (k->type == KT_BOOL)
                snprintf(range, sizeof(range), "true \\| false");
            else if (k->type == KT_STRING)
                snprintf(range, sizeof(range), "%s", k->nonempty ? "non-empty" : "");
            else if (k->type == KT_LIST || k->type == KT_WLIST)
                snprintf(range, sizeof(range), "at most %d items", CFG_LIST_MAX);
            else if (k->type == KT_GRID)
                snprintf(range, sizeof(range),
                         "[%lld, %lld], or a list of up to %d tried in order%s", k->imin, k->imax,
                         CFG_GRID_MAX, k->auto_ok ? ", or auto" : "");
            else
                fmt_range(range, sizeof(range), k);
            fprintf(f, "| `%s` | %s | `%s` | %s | %s |\n", key_name(k), type_name(k), b.p, range,
                    k->doc);
            free(b.p);
        }
    }
    fputs("\n## Cross-field rules\n\nChecked after the base chain, the file and the overrides "
          "are applied:\n\n",
          f);
    for (int s = 0; s < sch->n; s++)
        for (int i = 0; i < sch->sections[s]->n_rules; i++)
            fprintf(f, "- %s%s\n", i ? "" : "", sch->sections[s]->rules_doc[i]);
    for (int i = 0; i < sch->n_extra; i++)
        fprintf(f, "- %s\n", sch->extra_rules[i]);
    free(d);
}
