/* core/cfg.h -- the config machinery: typed key tables, the YAML loader (libyaml) with `base:`
 * inheritance and `key.path=value` overrides, `file:line:col: error: ...` reports, the
 * resolved-YAML dump and the generated Markdown reference.
 *
 * core knows no key. Each module owns a section (`struct cfg_section`: its keys with path,
 * type, default, range, allowed values and a one-line doc, and a validator for the cross-field
 * rules that protect its code), next to that code: model/model_cfg.c, train/train_cfg.c,
 * datasets/data_cfg.c, dist/dist_cfg.c, eval/eval_cfg.c. config/config.{h,c} composes the
 * sections into the job's `struct hw_config` (a `struct cfg_schema`) and gives the typed API
 * (cfg_load, cfg_to_yaml, ...). The loader rejects unknown keys (with a did-you-mean), wrong
 * types, out-of-range values and broken rules, each as `file:line:col: error: ...`. */
#ifndef HW_CFG_H
#define HW_CFG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CFG_PATH_MAX  512
#define CFG_NAME_MAX  32
#define CFG_LIST_MAX  16
#define CFG_MAX_KEYS  192
#define CFG_MAX_FILES 32
#define CFG_GRID_MAX  8

/* A grid size that may be left to the job's size: one integer, a list of acceptable integers
 * (tried in order), or `auto` (n == 0: whatever the world leaves). v is the value in force:
 * the first choice after loading (1 for auto), then the one the run chose. */
struct cfg_grid {
    int v;
    int n;
    int opt[CFG_GRID_MAX];
};

/* A YAML list of strings (a single scalar is a list of one). */
struct cfg_list {
    int n;
    char item[CFG_LIST_MAX][CFG_PATH_MAX];
};

/* A YAML list of weighted paths: each item {path: P, weight: W} (W > 0, default 1) or a plain
 * string P (weight 1). */
struct cfg_wlist {
    int n;
    char path[CFG_LIST_MAX][CFG_PATH_MAX];
    double weight[CFG_LIST_MAX];
};

enum cfg_type {
    CFG_T_INT,
    CFG_T_INT64,
    CFG_T_DOUBLE,
    CFG_T_BOOL,
    CFG_T_STRING,
    CFG_T_ENUM,
    CFG_T_LIST,
    CFG_T_GRID,
    CFG_T_WLIST
};

/* One key of a section: its dotted path, where it lives in the section's struct, its type,
 * default and range, and its doc line. */
struct cfg_key {
    const char *path;           /* "model.d_model" */
    enum cfg_type type;         /* value type */
    size_t off;                 /* offsetof(the section's struct, field) */
    size_t size;                /* sizeof the field (string capacity) */
    long long idef, imin, imax; /* INT, INT64, BOOL (idef only) */
    double ddef, dmin, dmax;    /* DOUBLE; dmax == INFINITY: no upper bound */
    int dmin_open, dmax_open;   /* 1: bound excluded */
    const char *sdef;           /* STRING, ENUM */
    const char *const *vals;    /* ENUM: allowed values, NULL-terminated */
    int auto_ok;                /* GRID: `auto` accepted (idef < 0: auto is the default) */
    int nonempty;               /* STRING: "" is rejected */
    const char *doc;
};

/* Key-table entries for a section struct CFG_S with YAML section name CFG_SEC (both defined by
 * the owner before use, e.g. `#define CFG_S struct cfg_model` and `#define CFG_SEC model`). */
#define CFG_K_(f, t)                                                                               \
    .path = CFG_STR_(CFG_SEC) "." #f, .type = (t), .off = offsetof(CFG_S, f),                      \
    .size = sizeof(((CFG_S *)0)->f)
#define CFG_STR2_(x) #x
#define CFG_STR_(x)  CFG_STR2_(x)
#define CFG_INT(f, def, lo, hi, d)                                                                 \
    { CFG_K_(f, CFG_T_INT), .idef = (def), .imin = (lo), .imax = (hi), .doc = (d) }
#define CFG_INT64(f, def, lo, hi, d)                                                               \
    { CFG_K_(f, CFG_T_INT64), .idef = (def), .imin = (lo), .imax = (hi), .doc = (d) }
#define CFG_DBL(f, def, lo, lo_open, hi, hi_open, d)                                               \
    {                                                                                              \
        CFG_K_(f, CFG_T_DOUBLE), .ddef = (def), .dmin = (lo), .dmin_open = (lo_open),              \
                                 .dmax = (hi), .dmax_open = (hi_open), .doc = (d)                  \
    }
#define CFG_BOOL(f, def, d)                                                                        \
    { CFG_K_(f, CFG_T_BOOL), .idef = (def), .doc = (d) }
#define CFG_STRING(f, def, nonempty_, d)                                                           \
    { CFG_K_(f, CFG_T_STRING), .sdef = (def), .nonempty = (nonempty_), .doc = (d) }
#define CFG_ENUM(f, def, values, d)                                                                \
    { CFG_K_(f, CFG_T_ENUM), .sdef = (def), .vals = (values), .doc = (d) }
#define CFG_LIST(f, d)                                                                             \
    { CFG_K_(f, CFG_T_LIST), .doc = (d) }
#define CFG_WLIST(f, d)                                                                            \
    { CFG_K_(f, CFG_T_WLIST), .doc = (d) }
/* GRID: def < 0 means auto (then auto_ok must be 1) */
#define CFG_GRID(f, def, lo, hi, auto_ok_, d)                                                      \
    {                                                                                              \
        CFG_K_(f, CFG_T_GRID), .idef = (def), .imin = (lo), .imax = (hi), .auto_ok = (auto_ok_),   \
                               .doc = (d)                                                          \
    }

/* A config being validated: its values by path and where each was set. */
struct cfg_check;

/* A module's section of the YAML file. */
struct cfg_section {
    const char *name; /* the top-level key: "model" */
    const struct cfg_key *keys;
    int n_keys;
    /* the cross-field rules protecting the module's code (NULL: none): 0, or HW_ECONFIG with
     * one line from cfg_rule_error in err */
    int (*validate)(const struct cfg_check *chk, char *err);
    /* the rules in words, one Markdown line each, for docs/config.md */
    const char *const *rules_doc;
    int n_rules;
};

/* Where a key was last set, for errors found after loading (e.g. the grid vs the world). */
struct cfg_origin {
    int file; /* index into the config's origin files; -1 = never set (default) */
    int line, col;
};

/* A whole config: its sections at their offsets in one struct, and where that struct keeps the
 * source file, the keys' origins (CFG_MAX_KEYS) and the origin files (CFG_MAX_FILES paths). */
struct cfg_schema {
    const struct cfg_section *const *sections;
    const size_t *offsets; /* each section's struct in the config */
    int n;
    size_t size; /* sizeof the config struct */
    size_t source_off, origin_off, files_off;
    const char *const *extra_rules; /* rules of the whole config (docs only) */
    int n_extra;
    const int *validate_order; /* section indices in the order their rules run; NULL: as listed */
};

/* ---- for validators ---- */
/* The value of the key at `path` (dies for an unknown path: a bug). */
const void *cfg_value(const struct cfg_check *chk, const char *path);
int cfg_int(const struct cfg_check *chk, const char *path);
double cfg_double(const struct cfg_check *chk, const char *path);
const char *cfg_string(const struct cfg_check *chk, const char *path);
/* The section struct named `name`. */
const void *cfg_section_of(const struct cfg_check *chk, const char *name);
/* A rule over keys a and b is broken: reported at whichever was set last (msg_a or msg_b), or
 * at line 1 of the config when neither was set. Returns HW_ECONFIG. */
int cfg_rule_error(const struct cfg_check *chk, const char *a, const char *b, const char *msg_a,
                   const char *msg_b, char *err);
/* "%.*g" shortest text that reads back as v (for messages). */
void cfg_fmt_double(char *buf, size_t n, double v);

/* ---- the generic API (config/config.h wraps it for struct hw_config) ---- */
void cfg_schema_defaults(const struct cfg_schema *s, void *cfg);
int cfg_schema_load(const struct cfg_schema *s, void *cfg, const char *path, int n_over,
                    char *const *overrides, char *err);
/* Run every section's rules again on a loaded config with the values in force (after run-time
 * choices such as the grid changed them); errors point where the keys were set, as at load
 * time. */
int cfg_schema_validate(const struct cfg_schema *s, const void *cfg, char *err);
int cfg_schema_load_string(const struct cfg_schema *s, void *cfg, const char *text,
                           const char *name, int n_over, char *const *overrides, char *err);
int cfg_schema_override(const struct cfg_schema *s, void *cfg, const char *kv, char *err);
char *cfg_schema_to_yaml(const struct cfg_schema *s, const void *cfg);
void cfg_schema_docs(const struct cfg_schema *s, FILE *f);
void cfg_schema_where(const struct cfg_schema *s, const void *cfg, const char *key, char *out,
                      size_t n);
/* Was the key at `path` set by a file or an override (not a default)? */
int cfg_schema_was_set(const struct cfg_schema *s, const void *cfg, const char *path);

#endif /* HW_CFG_H */
