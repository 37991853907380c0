/* train/optim.h -- AdamW state over the model's flat parameter block, the learning-rate
 * schedule (linear warmup, cosine decay to min_lr) and global-norm gradient clipping.
 * Norm gains (parameters with decay == 0) get no weight decay. */
#ifndef HW_OPTIM_H
#define HW_OPTIM_H

#include "../core/cfg.h"
#include "../model/gpt.h"

#include <stddef.h>

struct optim {
    float *m, *v; /* (num_params) first and second moments, same layout as the parameters */
    size_t n;
};

void optim_init(struct optim *o, size_t n);
void optim_free(struct optim *o);
/* Learning rate of optimizer step `step` (0-based). */
double optim_lr(const struct cfg_train *t, int step);
/* Global L2 norm of the gradient (double, deterministic). */
double optim_grad_norm(const struct gpt *m);
/* One AdamW step (t is 1-based) with the gradient scaled by grad_scale (clipping). */
void optim_step(struct optim *o, struct gpt *m, const struct cfg_train *tc, float lr, int t,
                float grad_scale);

#endif /* HW_OPTIM_H */
