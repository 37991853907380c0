/* model/layer_memory.c -- Titans memory replacing the attention ("memory", docs/titans.md):
 * the block's mixer branch is M(n1), n1 the attention-norm output; the layer has no attention
 * tensors. */
#include "memory.h"

#include "../core/check.h"

#include <stdlib.h>

static struct mem *S(const struct layer *ly) {
    return ly->state;
}

static void init_weights(struct layer *ly, uint64_t seed) {
    mem_init_weights(S(ly), seed);
}

static void free_kind(struct layer *ly) {
    struct mem *s = S(ly);
    if (!s)
        return;
    mem_free(s);
    free(s);
    ly->state = NULL;
}

static int caps_only(const struct layer *ly, enum ops_cap *cp) {
    (void)ly;
    cp[0] = OPS_CAP_CORE;
    cp[1] = OPS_CAP_TITANS;
    return 2;
}

static void params_only(struct layer *ly, struct param_table *t, int part) {
    if (!ly->state)
        mem_create(ly, LK_MEMORY);
    if (part == 1)
        mem_params(S(ly), t);
}

static void bind_only(struct layer *ly) {
    mem_bind(S(ly));
}

static void alloc_only(struct layer *ly, int B, int T) {
    mem_alloc(S(ly), B, T);
}

static void forward_only(struct layer *ly, const float *n1, float *br, int want_grad) {
    struct mem *s = S(ly);
    (void)want_grad;
    mem_forward(s, n1, s->u);
    s->m->ops->copy(br, s->u, sizeof(float) * (size_t)s->B * s->T * s->m->c.C);
}

static void backward_only(struct layer *ly, const float *dbr, float *dn1) {
    struct mem *s = S(ly);
    const struct ops *o = s->m->ops;
    const size_t NC = (size_t)s->B * s->T * s->m->c.C;
    o->copy(s->du, dbr, sizeof(float) * NC);
    o->memset(s->dn1, 0, sizeof(float) * NC);
    mem_backward(s, s->du, s->dn1);
    o->memset(dn1, 0, sizeof(float) * NC);
    o->residual_add(dn1, dn1, s->dn1, (int64_t)NC);
}

static void *cache_init_only(struct layer *ly, int B, int max_T, struct cache_stats *st) {
    (void)max_T;
    (void)st;
    return mem_cache_init(S(ly), B);
}

static void cache_reset_only(struct layer *ly, void *cache, int b) {
    mem_cache_reset(S(ly), cache, b);
}

static void cache_free_only(struct layer *ly, void *cache) {
    mem_cache_free(S(ly), cache);
}

static void decode_only(struct layer *ly, void *cache, const struct decode_rows *r, const float *n1,
                        float *br, struct cache_stats *st) {
    struct mem *s = S(ly);
    struct mem_cache *k = cache;
    const int C = s->m->c.C;
    (void)st;
    for (int i = 0; i < r->nb; i++) {
        mem_decode_step(s, k, r->rows[i], n1 + (size_t)i * C, k->u);
        s->m->ops->copy(br + (size_t)i * C, k->u, sizeof(float) * (size_t)C);
    }
}

const struct layer_kind layer_kind_memory = {
    .name = "memory",
    .caps = caps_only,
    .params = params_only,
    .bind = bind_only,
    .init_weights = init_weights,
    .alloc = alloc_only,
    .free = free_kind,
    .forward = forward_only,
    .backward = backward_only,
    .cache_init = cache_init_only,
    .cache_reset = cache_reset_only,
    .cache_free = cache_free_only,
    .decode = decode_only,
};
