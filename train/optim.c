/* train/optim.c -- AdamW driver, schedule and clipping (see optim.h). */
#include "optim.h"

#include "../core/check.h"
#include "../ops/adamw.h"

#include <math.h>
#include <stdlib.h>

void optim_init(struct optim *o, size_t n) {
    o->m = HW_CALLOC(n, sizeof(float));
    o->v = HW_CALLOC(n, sizeof(float));
    o->n = n;
}

void optim_free(struct optim *o) {
    free(o->m);
    free(o->v);
    o->m = o->v = NULL;
    o->n = 0;
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

double optim_grad_norm(const struct gpt *m) {
    return sqrt(sumsq_cpu(m->grad_mem, m->num_params));
}

void optim_step(struct optim *o, struct gpt *m, const struct cfg_train *tc, float lr, int t,
                float grad_scale) {
    for (int i = 0; i < m->n_params; i++) {
        const struct gpt_param *p = &m->params[i];
        adamw_update_cpu(m->param_mem + p->offset, o->m + p->offset, o->v + p->offset,
                         m->grad_mem + p->offset, p->numel, lr, (float)tc->beta1, (float)tc->beta2,
                         (float)tc->eps, p->decay ? (float)tc->weight_decay : 0.0f, t, grad_scale);
    }
}
