/* config/config.c -- struct hw_config's schema (the sections of every module, in YAML order,
 * their rules run with the training loop's first: the sequence splits the model's rules build
 * on) and the typed API (see config.h). */
#include "config.h"

#include "../core/check.h"

#include <stddef.h>
#include <stdio.h>

static const struct cfg_section *const sections[] = {
    &cfg_section_model, &cfg_section_train, &cfg_section_data, &cfg_section_run,
    &cfg_section_dist,  &cfg_section_eval,  &cfg_section_rec,  &cfg_section_sft,
};

static const size_t offsets[] = {
    offsetof(struct hw_config, model), offsetof(struct hw_config, train),
    offsetof(struct hw_config, data),  offsetof(struct hw_config, run),
    offsetof(struct hw_config, dist),  offsetof(struct hw_config, eval),
    offsetof(struct hw_config, rec),   offsetof(struct hw_config, sft),
};

/* train's rules (the zig-zag and batch splits) first: the model's build on them */
static const int validate_order[] = {1, 0, 2, 3, 4, 5, 6, 7};

static const char *const extra_rules[] = {
    "At run time: `dist.data * dist.context * dist.heads` equals the number of MPI ranks.",
};

const struct cfg_schema hw_schema = {
    .sections = sections,
    .offsets = offsets,
    .n = (int)(sizeof(sections) / sizeof(sections[0])),
    .size = sizeof(struct hw_config),
    .source_off = offsetof(struct hw_config, source),
    .origin_off = offsetof(struct hw_config, origin),
    .files_off = offsetof(struct hw_config, origin_files),
    .extra_rules = extra_rules,
    .n_extra = 1,
    .validate_order = validate_order,
};

void cfg_defaults(struct hw_config *c) {
    cfg_schema_defaults(&hw_schema, c);
}

int cfg_load(struct hw_config *c, const char *path, int n_over, char *const *overrides, char *err) {
    return cfg_schema_load(&hw_schema, c, path, n_over, overrides, err);
}

int cfg_load_string(struct hw_config *c, const char *text, const char *name, int n_over,
                    char *const *overrides, char *err) {
    return cfg_schema_load_string(&hw_schema, c, text, name, n_over, overrides, err);
}

int cfg_override(struct hw_config *c, const char *kv, char *err) {
    return cfg_schema_override(&hw_schema, c, kv, err);
}

char *cfg_to_yaml(const struct hw_config *c) {
    return cfg_schema_to_yaml(&hw_schema, c);
}

void cfg_write_docs(FILE *f) {
    cfg_schema_docs(&hw_schema, f);
}

void cfg_where(const struct hw_config *c, const char *key, char *out, size_t n) {
    cfg_schema_where(&hw_schema, c, key, out, n);
}

int cfg_key_error(const struct hw_config *c, const char *key, const char *why, char *err) {
    char where[CFG_PATH_MAX + 32];
    cfg_where(c, key, where, sizeof(where));
    return hw_errf(err, HW_ECONFIG, "%s: error: %s: %s", where, key, why);
}

int cfg_check_world(const struct hw_config *c, int world, char *err) {
    const struct cfg_dist *g = &c->dist;
    long long grid = (long long)g->data * g->context * g->heads;
    if (grid == world)
        return 0;
    char where[CFG_PATH_MAX + 32];
    /* point at whichever grid key was set; data first */
    const char *key = "dist.data";
    const char *cand[3] = {"dist.data", "dist.context", "dist.heads"};
    for (int k = 2; k >= 0; k--)
        if (cfg_schema_was_set(&hw_schema, c, cand[k]))
            key = cand[k];
    cfg_where(c, key, where, sizeof(where));
    return hw_errf(err, HW_ECONFIG,
                   "%s: error: dist: data * context * heads = %d * %d * %d = %lld, but the job "
                   "has %d ranks",
                   where, g->data, g->context, g->heads, grid, world);
}
