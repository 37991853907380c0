/* model/param.h -- named parameter tensors inside one flat fp32 block (the GPT and the rec model
 * share the descriptor), and the view of a model's parameters that the optimizer, the gradient
 * reduction and the checkpoints work on. The block and its gradient are backend buffers. */
#ifndef HW_PARAM_H
#define HW_PARAM_H

#include "../ops/ops.h"

#include <stddef.h>
#include <stdint.h>

/* One named parameter tensor inside the flat parameter block. */
struct param {
    char name[64];     /* stable name, e.g. "blocks.3.attn.wq" */
    int ndim;          /* 1 or 2 */
    int64_t shape[2];  /* LOCAL shape held by this rank */
    int64_t gshape[2]; /* global shape */
    int64_t goff[2];   /* offset of the local block in the global tensor */
    int shard_dim;     /* -1 replicated over the model-parallel ranks, 0 split by rows, 1 by
                          columns (head parallelism: the GPT; row-sharded tables: rec) */
    size_t offset;     /* in floats from the start of the block */
    size_t numel;
    int decay;      /* 1: AdamW weight decay applies (matrices); 0: norms, biases, tables */
    float init_std; /* normal(0, init_std); 0 means "init to ones" (norm gains) */
};

/* A model's parameters as the training loop sees them (a view: the model owns the memory). */
struct param_set {
    const struct ops *be;  /* the backend holding w and g */
    int n;                 /* tensors */
    const struct param *p; /* (n) */
    size_t numel;          /* floats in the block */
    float *w, *g;          /* parameters and gradients, same layout */
    int shard_group;       /* the dist group (enum dist_group) shard_dim splits over */
};

/* The tensor named `name`, or NULL. */
const struct param *param_find(const struct param_set *s, const char *name);

#endif /* HW_PARAM_H */
