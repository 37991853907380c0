/* config/config.c -- struct hw_config's schema (the sections of every module, in YAML order,
 * their rules run with the training loop's first: the sequence splits the model's rules build
 * on) and the typed API (see config.h). */
#include "config.h"

#include "../core/check.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    "At run time: `dist.data * dist.context * dist.heads` equals the number of MPI ranks: the "
    "first `dist.heads` choice (then `dist.context` choice) that divides the world, keeps each "
    "head group on one node and passes every rule above is used, and `dist.data: auto` takes "
    "the rest. When `dist.data` does not divide `train.micro_batch`, the micro-batch becomes the "
    "multiple of `dist.data` that divides the global batch `micro_batch * grad_accum` and is "
    "closest to it; `grad_accum` and `val_batches` rescale so that every grid trains on the same "
    "sequences per step.",
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

/* The global batch (micro_batch x grad_accum sequences) split over D data ranks: micro_batch is
 * kept when D divides it; otherwise it becomes the multiple of D that divides the global batch
 * and is closest to it (the smaller on a tie), grad_accum takes up the rest, and the validation
 * pass keeps its number of sequences (rounded up to whole micro-batches). 0, or -1 when the
 * global batch is not a multiple of D. */
static int split_batch(struct cfg_train *t, int D, char *note, size_t n) {
    const long long G = (long long)t->micro_batch * t->grad_accum;
    if (t->micro_batch % D == 0)
        return 0;
    long long best = 0;
    for (long long m = D; m <= G; m += D)
        if (G % m == 0 && (!best || llabs(m - t->micro_batch) < llabs(best - t->micro_batch)))
            best = m;
    if (!best)
        return -1;
    const long long V = (long long)t->val_batches * t->micro_batch;
    snprintf(note, n,
             "; global batch %lld sequences: micro_batch %d x grad_accum %d becomes %lld x %lld "
             "(%d data ranks), val_batches %d becomes %lld",
             G, t->micro_batch, t->grad_accum, best, G / best, D, t->val_batches,
             (V + best - 1) / best);
    t->val_batches = (int)((V + best - 1) / best);
    t->micro_batch = (int)best;
    t->grad_accum = (int)(G / best);
    return 0;
}

/* 1 when every head group (HP consecutive world ranks, heads innermost) lies on one node. */
static int heads_within_nodes(int world, int hp, const int *node_of_rank) {
    for (int r = 0; node_of_rank && r < world; r++)
        if (node_of_rank[r] != node_of_rank[r - r % hp])
            return 0;
    return 1;
}

/* Try one (heads, context) pair: 0 and the config set to it, or 1 with the reason in why. */
static int try_grid(struct hw_config *c, const struct hw_config *orig, int world, int hp, int cp,
                    const int *node_of_rank, char *note, size_t nn, char *why, size_t nw) {
    const struct cfg_grid *dg = &orig->dist.data;
    char err[HW_ERR_LEN];
    if (world % (hp * cp)) {
        snprintf(why, nw, "heads %d x context %d does not divide %d ranks", hp, cp, world);
        return 1;
    }
    const int D = world / (hp * cp);
    int data_ok = dg->n == 0;
    for (int i = 0; i < dg->n; i++)
        data_ok |= dg->opt[i] == D;
    if (!data_ok) {
        snprintf(why, nw, "heads %d x context %d leaves data %d, not a dist.data value", hp, cp, D);
        return 1;
    }
    /* a list is a choice, and one that spans nodes is passed over; a single size is what the
     * user asked for (its all-reduces then cross the network: the note says so) */
    const int spans = !heads_within_nodes(world, hp, node_of_rank);
    if (spans && orig->dist.heads.n > 1) {
        snprintf(why, nw, "heads %d: a head group would span two nodes", hp);
        return 1;
    }
    *c = *orig;
    c->dist.data.v = D;
    c->dist.heads.v = hp;
    c->dist.context.v = cp;
    note[0] = '\0';
    if (split_batch(&c->train, D, note, nn)) {
        snprintf(why, nw, "data %d does not divide the global batch of %d x %d sequences", D,
                 orig->train.micro_batch, orig->train.grad_accum);
        return 1;
    }
    if (spans)
        hw_appendf(note, nn, "; head groups of %d span nodes (dist.heads was set to that size)",
                   hp);
    if (cfg_schema_validate(&hw_schema, c, err)) { /* the rules, with these sizes */
        const char *e = strstr(err, "error: ");
        snprintf(why, nw, "data %d x context %d x heads %d: %.400s", D, cp, hp, e ? e + 7 : err);
        return 1;
    }
    return 0;
}

int cfg_resolve_grid(struct hw_config *c, int world, const int *node_of_rank, char *note,
                     size_t note_n, char *err) {
    const struct hw_config orig = *c;
    const struct cfg_dist *g = &orig.dist;
    char why[2048] = "", one[512], bnote[256];
    int nh = g->heads.n, nc = g->context.n;
    for (int i = 0; i < nh; i++)
        for (int j = 0; j < nc; j++) {
            if (try_grid(c, &orig, world, g->heads.opt[i], g->context.opt[j], node_of_rank, bnote,
                         sizeof(bnote), one, sizeof(one))) {
                hw_appendf(why, sizeof(why), "%s%s", why[0] ? "; " : "", one);
                continue;
            }
            snprintf(note, note_n,
                     "grid chosen for %d ranks: data %d (%s), heads %d, context %d%s%s%s", world,
                     c->dist.data.v, g->data.n ? "as set" : "auto", c->dist.heads.v,
                     c->dist.context.v, why[0] ? " (skipped: " : "", why, why[0] ? ")" : "");
            hw_appendf(note, note_n, "%s", bnote);
            return 0;
        }
    *c = orig;
    const char *key = cfg_schema_was_set(&hw_schema, c, "dist.heads")     ? "dist.heads"
                      : cfg_schema_was_set(&hw_schema, c, "dist.context") ? "dist.context"
                                                                          : "dist.data";
    char where[CFG_PATH_MAX + 32];
    cfg_where(c, key, where, sizeof(where));
    return hw_errf(err, HW_ECONFIG, "%s: error: dist: no grid fits the job's %d ranks: %s", where,
                   world, why);
}
