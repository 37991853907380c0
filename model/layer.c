/* model/layer.c -- the registry of layer kinds and the parameter helpers they share (see
 * layer.h). */
#include "layer.h"

#include "../core/check.h"
#include "gpt.h"

#include <stdio.h>
#include <string.h>

extern const struct layer_kind layer_kind_mha, layer_kind_moh, layer_kind_mal, layer_kind_mag,
    layer_kind_memory, layer_kind_mac;

static const struct layer_kind *registry[LAYER_KINDS_MAX] = {
    [LK_MHA] = &layer_kind_mha, [LK_MOH] = &layer_kind_moh,       [LK_MAL] = &layer_kind_mal,
    [LK_MAG] = &layer_kind_mag, [LK_MEMORY] = &layer_kind_memory, [LK_MAC] = &layer_kind_mac,
};
static int n_kinds = LK_BUILTIN;

const struct layer_kind *layer_kind_get(int id) {
    HW_ASSERT(id >= 0 && id < n_kinds && registry[id]);
    return registry[id];
}

int layer_kind_find(const char *name) {
    for (int i = 0; i < n_kinds; i++)
        if (registry[i] && !strcmp(registry[i]->name, name))
            return i;
    return -1;
}

int layer_kind_register(const struct layer_kind *k) {
    int id = layer_kind_find(k->name);
    if (id >= 0)
        return id;
    HW_ASSERT(n_kinds < LAYER_KINDS_MAX);
    registry[n_kinds] = k;
    return n_kinds++;
}

void layer_kind_names(int memory, char *out, size_t n) {
    size_t k = 0;
    out[0] = '\0';
    for (int i = 0; i < n_kinds && k < n; i++) {
        const int is_mem = i >= LK_MAL && i <= LK_MAC;
        if (!registry[i] || is_mem != (memory != 0))
            continue;
        k += (size_t)snprintf(out + k, n - k, "%s%s", k ? ", " : "", registry[i]->name);
    }
}

int layer_param(struct layer *ly, struct param_table *t, const char *suffix, int64_t rows,
                int64_t cols, int shard_dim, int decay, float std) {
    char nm[64];
    snprintf(nm, sizeof(nm), "blocks.%d.%s", ly->l, suffix);
    return gpt_add_param(t, nm, rows, cols, shard_dim, decay, std);
}

int layer_param_index(const struct layer *ly, const char *suffix) {
    char nm[64];
    snprintf(nm, sizeof(nm), "blocks.%d.%s", ly->l, suffix);
    const struct param *p = gpt_find_param(ly->m, nm);
    if (!p)
        HW_DIE("layer %d (%s): no tensor %s", ly->l, ly->kind->name, nm);
    return (int)(p - ly->m->params);
}
