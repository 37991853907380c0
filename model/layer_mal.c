/* model/layer_mal.c -- Titans memory as a layer ("mal", docs/titans.md): a memory sublayer
 * x <- x + M(RMSNorm_mem(x)) before the block, then the block's attention (any attention kind,
 * named by model.attention.layers; it may be S2 sliding-window). */
#include "memory.h"

#include "../core/check.h"

#include <stdlib.h>
#include <string.h>

struct mal_cache {
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
        mem_create(ly, LK_MAL);
        struct mem *s = S(ly);
        s->inner = (struct layer){.kind = layer_kind_get(ly->inner), .m = ly->m, .l = ly->l};
        s->has_inner = 1;
    }
    struct mem *s = S(ly);
    s->inner.kind->params(&s->inner, t, part);
    if (part == 1)
        mem_params(s, t);
}

static void bind(struct layer *ly) {
    struct mem *s = S(ly);
    s->inner.kind->bind(&s->inner);
    mem_bind(s);
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

static void pre_forward(struct layer *ly, float *x) {
    struct mem *s = S(ly);
    struct gpt *m = s->m;
    const int N = s->B * s->T, C = m->c.C;
    const size_t NC = (size_t)N * C;
    m->ops->copy(s->x0, x, sizeof(float) * NC);
    m->ops->rmsnorm_forward(s->nrm, s->rstd, s->x0, s->norm_w, N, C, m->c.eps);
    mem_forward(s, s->nrm, s->u);
    m->ops->residual_add(x, s->x0, s->u, (int64_t)NC);
}

static void pre_backward(struct layer *ly, float *dx) {
    struct mem *s = S(ly);
    struct gpt *m = s->m;
    const int N = s->B * s->T, C = m->c.C;
    m->ops->memset(s->dn1, 0, sizeof(float) * (size_t)N * C);
    mem_backward(s, dx, s->dn1);
    m->ops->rmsnorm_backward(dx, s->norm_g, s->dn1, s->x0, s->norm_w, s->rstd, N, C);
}

static void forward(struct layer *ly, const float *n1, float *br, int want_grad) {
    struct mem *s = S(ly);
    s->inner.kind->forward(&s->inner, n1, br, want_grad);
}

static void backward(struct layer *ly, const float *dbr, float *dn1) {
    struct mem *s = S(ly);
    s->inner.kind->backward(&s->inner, dbr, dn1);
}

static void *cache_init(struct layer *ly, int B, int max_T, struct cache_stats *st) {
    struct mem *s = S(ly);
    struct mal_cache *k = HW_CALLOC(1, sizeof(*k));
    k->attn = s->inner.kind->cache_init(&s->inner, B, max_T, st);
    k->mem = mem_cache_init(s, B);
    return k;
}

static void cache_reset(struct layer *ly, void *cache, int b) {
    struct mem *s = S(ly);
    struct mal_cache *k = cache;
    s->inner.kind->cache_reset(&s->inner, k->attn, b);
    mem_cache_reset(s, k->mem, b);
}

static void cache_free(struct layer *ly, void *cache) {
    struct mem *s = S(ly);
    struct mal_cache *k = cache;
    if (!k)
        return;
    s->inner.kind->cache_free(&s->inner, k->attn);
    mem_cache_free(s, k->mem);
    free(k);
}

static void pre_decode(struct layer *ly, void *cache, const struct decode_rows *r, float *x) {
    struct mem *s = S(ly);
    struct gpt *m = s->m;
    struct mal_cache *k = cache;
    const int C = m->c.C;
    for (int i = 0; i < r->nb; i++) {
        float *xi = x + (size_t)i * C;
        m->ops->rmsnorm_forward(k->mem->nrm, k->mem->rstd, xi, s->norm_w, 1, C, m->c.eps);
        mem_decode_step(s, k->mem, r->rows[i], k->mem->nrm, k->mem->u);
        m->ops->residual_add(xi, xi, k->mem->u, C);
    }
}

static void decode(struct layer *ly, void *cache, const struct decode_rows *r, const float *n1,
                   float *br, struct cache_stats *st) {
    struct mem *s = S(ly);
    struct mal_cache *k = cache;
    s->inner.kind->decode(&s->inner, k->attn, r, n1, br, st);
}

const struct layer_kind layer_kind_mal = {
    .name = "mal",
    .caps = caps,
    .params = params,
    .bind = bind,
    .init_weights = init_weights,
    .alloc = alloc,
    .free = free_kind,
    .pre_forward = pre_forward,
    .pre_backward = pre_backward,
    .forward = forward,
    .backward = backward,
    .cache_init = cache_init,
    .cache_reset = cache_reset,
    .cache_free = cache_free,
    .pre_decode = pre_decode,
    .decode = decode,
    .head_usage = mem_inner_head_usage,
    .stats_reset = mem_inner_stats_reset,
    .attn_qkv = mem_inner_attn_qkv,
    .attn_out = mem_inner_attn_out,
};
