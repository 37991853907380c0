/* train/optim.h -- AdamW state, the learning-rate schedule (linear warmup, cosine decay to
 * min_lr) and global-norm gradient clipping. Norm gains (decay == 0) get no weight decay.
 *
 * The state covers a list of segments of the model's flat parameter block: one segment (the
 * whole block) normally, or, under ZeRO-1, the chunks of each gradient bucket this rank owns,
 * so the moments take 1/(data x context) of the memory. AdamW is elementwise, so a sharded
 * update is bit-identical to the whole one. */
#ifndef HW_OPTIM_H
#define HW_OPTIM_H

#include "../model/param.h"
#include "train_cfg.h"

#include <stddef.h>

struct optim_seg {
    size_t off;   /* start in the parameter block */
    size_t len;   /* floats */
    size_t state; /* start in m/v */
};

struct optim {
    const struct ops *be; /* the backend of the parameters; the moments live there too */
    float *m, *v;         /* (n) first and second moments of the segments, back to back */
    size_t n;
    struct optim_seg *seg;
    int n_seg;
};

/* State for the given segments (copied; their .state is filled in), zeroed moments on be. */
void optim_init(struct optim *o, const struct ops *be, const struct optim_seg *seg, int n_seg);
void optim_free(struct optim *o);
/* Learning rate of optimizer step `step` (0-based). */
double optim_lr(const struct cfg_train *t, int step);
/* Sum of squared gradients over the segments; tensors split over head ranks count on every
 * head rank, replicated ones only on head rank 0 (the caller sums over the groups). */
double optim_grad_sumsq(const struct optim *o, const struct param_set *ps, int hp_rank);
/* One AdamW step (t is 1-based) over the segments, gradient scaled by grad_scale. */
void optim_step(struct optim *o, const struct param_set *ps, const struct cfg_train *tc, float lr,
                int t, float grad_scale);
/* Copy the moments into / out of full parameter-shaped HOST buffers (other elements
 * untouched): the checkpoint's view. */
void optim_export(const struct optim *o, float *full_m, float *full_v);
void optim_import(struct optim *o, const float *full_m, const float *full_v);

#endif /* HW_OPTIM_H */
