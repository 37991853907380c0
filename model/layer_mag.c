/* model/layer_mag.c -- Titans memory as a gate ("mag", docs/titans.md): the attention branch
 * a = Wo attn(n1) becomes a * sigmoid(M(n1)), n1 the block's attention-norm output. The
 * attention is any attention kind (model.attention.layers), typically S2 sliding-window, and
 * every query also sees the layer's persistent tokens (the paper's SW-Attn*(P || x)): a prefix
 * of key/value rows projected by the attention's own Wqkv. */
#include "attn.h"
#include "memory.h"

#include "../core/check.h"

#include <stdlib.h>
#include <string.h>

struct mag_cache {
    void *attn;
    struct mem_cache *mem;
};

static struct mem *S(const struct layer *ly) {
    return ly->state;
}

static int caps(const struct layer *ly, enum ops_cap *cp) {
    const struct mem *s = S(ly);
    int n = s->inner.kind->caps(&s->inner, cp);
    cp[n++] = OPS_CAP_TITANS;
    return n;
}

static void params(struct layer *ly, struct param_table *t, int part) {
    if (!ly->state) {
        mem_create(ly, LK_MAG);
        struct mem *s = S(ly);
        s->inner = (struct layer){.kind = layer_kind_get(ly->inner), .m = ly->m, .l = ly->l};
        s->has_inner = 1;
    }
    struct mem *s = S(ly);
    s->inner.kind->params(&s->inner, t, part);
    if (part == 0) {
        HW_ASSERT(s->inner.kind->attention); /* the persistent rows are an attention prefix */
        s->inner.kind->attention(&s->inner)->np = ly->m->c.mem_np;
    } else {
        mem_params(s, t);
    }
}

static void bind(struct layer *ly) {
    struct mem *s = S(ly);
    s->inner.kind->bind(&s->inner);
    mem_bind(s);
    struct attn *a = s->inner.kind->attention(&s->inner);
    a->P = s->persist_w;
    a->dP = s->persist_g;
}

static void init_weights(struct layer *ly, uint64_t seed) {
    mem_init_weights(S(ly), seed);
}

static void alloc(struct layer *ly, int B, int T) {
    struct mem *s = S(ly);
    s->inner.kind->alloc(&s->inner, B, T);
    mem_alloc(s, B, T);
}

static void free_kind(struct layer *ly) {
    struct mem *s = S(ly);
    if (!s)
        return;
    if (s->has_inner)
        s->inner.kind->free(&s->inner);
    mem_free(s);
    free(s);
    ly->state = NULL;
}

static void forward(struct layer *ly, const float *n1, float *br, int want_grad) {
    struct mem *s = S(ly);
    const struct ops *o = s->m->ops;
    const size_t NC = (size_t)s->B * s->T * s->m->c.C;
    s->inner.kind->forward(&s->inner, n1, br, want_grad);
    mem_forward(s, n1, s->u);
    o->copy(s->y, br, sizeof(float) * NC);
    o->sigmoid_gate_forward(br, s->y, s->u, (int64_t)NC);
}

static void backward(struct layer *ly, const float *dbr, float *dn1) {
    struct mem *s = S(ly);
    const struct ops *o = s->m->ops;
    const size_t NC = (size_t)s->B * s->T * s->m->c.C;
    o->sigmoid_gate_backward(s->dy, s->du, dbr, s->y, s->u, (int64_t)NC);
    o->memset(s->dn1, 0, sizeof(float) * NC);
    mem_backward(s, s->du, s->dn1);
    s->inner.kind->backward(&s->inner, s->dy, dn1);
    o->residual_add(dn1, dn1, s->dn1, (int64_t)NC);
}

static void *cache_init(struct layer *ly, int B, int max_T, struct cache_stats *st) {
    struct mem *s = S(ly);
    struct mag_cache *k = HW_CALLOC(1, sizeof(*k));
    k->attn = s->inner.kind->cache_init(&s->inner, B, max_T, st);
    k->mem = mem_cache_init(s, B);
    return k;
}

static void cache_reset(struct layer *ly, void *cache, int b) {
    struct mem *s = S(ly);
    struct mag_cache *k = cache;
    s->inner.kind->cache_reset(&s->inner, k->attn, b);
    mem_cache_reset(s, k->mem, b);
}

static void cache_free(struct layer *ly, void *cache) {
    struct mem *s = S(ly);
    struct mag_cache *k = cache;
    if (!k)
        return;
    s->inner.kind->cache_free(&s->inner, k->attn);
    mem_cache_free(s, k->mem);
    free(k);
}

static void decode(struct layer *ly, void *cache, const struct decode_rows *r, const float *n1,
                   float *br, struct cache_stats *st) {
    struct mem *s = S(ly);
    struct mag_cache *k = cache;
    const int C = s->m->c.C;
    s->inner.kind->decode(&s->inner, k->attn, r, n1, br, st);
    for (int i = 0; i < r->nb; i++) {
        float *bi = br + (size_t)i * C;
        mem_decode_step(s, k->mem, r->rows[i], n1 + (size_t)i * C, k->mem->u);
        s->m->ops->sigmoid_gate_forward(bi, bi, k->mem->u, C);
    }
}

const struct layer_kind layer_kind_mag = {
    .name = "mag",
    .caps = caps,
    .params = params,
    .bind = bind,
    .init_weights = init_weights,
    .alloc = alloc,
    .free = free_kind,
    .forward = forward,
    .backward = backward,
    .cache_init = cache_init,
    .cache_reset = cache_reset,
    .cache_free = cache_free,
    .decode = decode,
    .head_usage = mem_inner_head_usage,
    .stats_reset = mem_inner_stats_reset,
    .attn_qkv = mem_inner_attn_qkv,
    .attn_out = mem_inner_attn_out,
};
