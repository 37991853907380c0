/* train/optim.c -- AdamW over segments, schedule and clipping (see optim.h). */
#include "optim.h"

#include "../core/check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void optim_init(struct optim *o, const struct ops *be, const struct optim_seg *seg, int n_seg) {
    memset(o, 0, sizeof(*o));
    o->be = be;
    o->seg = HW_MALLOC(sizeof(*o->seg) * (size_t)(n_seg ? n_seg : 1));
    o->n_seg = n_seg;
    for (int i = 0; i < n_seg; i++) {
        o->seg[i] = seg[i];
        o->seg[i].state = o->n;
        o->n += seg[i].len;
    }
    o->m = be->alloc(sizeof(float) * o->n);
    o->v = be->alloc(sizeof(float) * o->n);
}

void optim_free(struct optim *o) {
    if (o->be) {
        o->be->free(o->m);
        o->be->free(o->v);
    }
    free(o->seg);
    memset(o, 0, sizeof(*o));
}

double optim_lr(const struct cfg_train *t, int step) {
    if (t->warmup > 0 && step < t->warmup)
        return t->lr * (double)(step + 1) / (double)t->warmup;
    int span = t->steps - t->warmup;
    double progress = span > 0 ? (double)(step - t->warmup) / (double)span : 1.0;
    if (progress > 1.0)
        progress = 1.0;
    return t->min_lr + 0.5 * (t->lr - t->min_lr) * (1.0 + cos(3.14159265358979323846 * progress));
}

/* Call f on every (segment, parameter) overlap: [lo, hi) in the parameter block. */
#define FOR_OVERLAPS(o, ps, body)                                                                  \
    for (int si = 0; si < (o)->n_seg; si++) {                                                      \
        const struct optim_seg *sg = &(o)->seg[si];                                                \
        for (int pi = 0; pi < (ps)->n; pi++) {                                                     \
            const struct param *p = &(ps)->p[pi];                                                  \
            size_t lo = p->offset > sg->off ? p->offset : sg->off;                                 \
            size_t hi = p->offset + p->numel < sg->off + sg->len ? p->offset + p->numel            \
                                                                 : sg->off + sg->len;              \
            if (lo >= hi)                                                                          \
                continue;                                                                          \
            body                                                                                   \
        }                                                                                          \
    }

double optim_grad_sumsq(const struct optim *o, const struct param_set *ps, int hp_rank) {
    double ss = 0.0;
    FOR_OVERLAPS(o, ps, {
        if (p->shard_dim >= 0 || hp_rank == 0)
            ss += ps->be->sumsq(ps->g + lo, hi - lo);
    })
    return ss;
}

void optim_step(struct optim *o, const struct param_set *ps, const struct cfg_train *tc, float lr,
                int t, float grad_scale) {
    FOR_OVERLAPS(o, ps, {
        size_t st = sg->state + (lo - sg->off);
        ps->be->adamw_update(ps->w + lo, o->m + st, o->v + st, ps->g + lo, hi - lo, lr,
                             (float)tc->beta1, (float)tc->beta2, (float)tc->eps,
                             p->decay ? (float)tc->weight_decay : 0.0f, t, grad_scale);
    })
}

void optim_export(const struct optim *o, float *full_m, float *full_v) {
    for (int i = 0; i < o->n_seg; i++) {
        o->be->download(full_m + o->seg[i].off, o->m + o->seg[i].state,
                        sizeof(float) * o->seg[i].len);
        o->be->download(full_v + o->seg[i].off, o->v + o->seg[i].state,
                        sizeof(float) * o->seg[i].len);
    }
}

void optim_import(struct optim *o, const float *full_m, const float *full_v) {
    for (int i = 0; i < o->n_seg; i++) {
        o->be->upload(o->m + o->seg[i].state, full_m + o->seg[i].off,
                      sizeof(float) * o->seg[i].len);
        o->be->upload(o->v + o->seg[i].state, full_v + o->seg[i].off,
                      sizeof(float) * o->seg[i].len);
    }
}
