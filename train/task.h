/* train/task.h -- training tasks: what differs between `train.task lm`, `classify`, `sft` and
 * the rec model (model.family rec) is one `struct train_task` each (task_lm.c,
 * task_classify.c, task_sft.c, task_rec.c), looked up by name like eval/tasks.c's tasks. The
 * loop in trainer.c knows none of them: per step it asks the task for its micro-batches, the
 * loss and its denominator, the reduced gradients and their norm, runs AdamW, logs, validates
 * when due, checkpoints when due or when a signal arrived (torchtitan's Trainer.train()).
 * Resume, checkpoints, metrics.jsonl and the progress line are the loop's, for every task.
 * The three language-model tasks share the GPT model, its gradient buckets (overlapped with the
 * backward, optionally ZeRO-1) and the tokenizer through task_gpt.h. */
#ifndef HW_TASK_H
#define HW_TASK_H

#include "../ckpt/ckpt.h"
#include "../config/config.h"
#include "../dist/dist.h"
#include "../model/param.h"
#include "optim.h"

#include <jansson.h>
#include <stdint.h>

struct trainer;

/* Where a task's fields go in a metrics line: after the loss, before the validation fields,
 * after them. */
enum {
    TASK_METRICS_LOSS,
    TASK_METRICS_BEFORE_VAL,
    TASK_METRICS_AFTER_VAL,
};

struct train_task {
    const char *name; /* train.task, or "rec" for model.family rec */
    /* data and model: fills tr->ps, tr->sig, tr->tok_json (NULL: none) and may set tr->steps,
     * tr->tokens_per_step, tr->flops_per_token; 0 or HW_E* with one line in err */
    int (*setup)(struct trainer *tr, char *err);
    void (*teardown)(struct trainer *tr);
    /* the optimizer's segments over tr->ps (ZeRO-1 shards them); NULL: the whole block */
    int (*optim_segments)(struct trainer *tr, struct optim_seg **seg);
    /* one step: its start (statistics reset), then read micro-batch a (0 <= a < micro_batches) */
    void (*begin_step)(struct trainer *tr);
    int (*micro_batches)(const struct trainer *tr);
    int (*next)(struct trainer *tr, int a, char *err);
    /* the global denominator of the step's summed loss, known once every micro-batch is read */
    double (*denominator)(struct trainer *tr);
    /* forward + backward of micro-batch a with the loss scaled by dscale (1 / denominator);
     * returns this rank's summed loss */
    double (*forward_backward)(struct trainer *tr, int a, float dscale);
    /* after the last backward: reduce the gradients and the loss sum; returns the step's loss */
    double (*finish)(struct trainer *tr, double loss_sum, double denominator);
    /* the global gradient norm; log_grad_norm: computed and logged every step (else only for
     * clipping) */
    double (*grad_norm)(struct trainer *tr);
    int log_grad_norm;
    /* after the optimizer step (ZeRO-1: gather the updated shards) */
    void (*after_update)(struct trainer *tr);
    /* ZeRO-1: complete the moments exported from this rank's shards (checkpoints) */
    void (*gather_moments)(struct trainer *tr, float *full_m, float *full_v);
    /* metrics: whether this step writes a line, and the task's fields of it (phase above) */
    int (*log_due)(const struct trainer *tr, int val_due);
    int metrics_double; /* the loss and lr as doubles (else rounded to fp32) */
    void (*metrics)(struct trainer *tr, json_t *line, int phase);
    /* validation: whether due after this step, and the pass: fills the line's fields and a
     * short text for the progress line; returns the validation loss or NAN */
    int (*val_due)(const struct trainer *tr);
    double (*validate)(struct trainer *tr, json_t *line, char *note, size_t n, char *err, int *rc);
    /* checkpoints: the data position as the cursor array (at most CKPT_MAX_CURSOR global sample
     * counters; returns how many), positioning from a checkpoint's array (n may be 0: none
     * stored; 0 or an error naming what does not fit), extra model tensors (NULL: none) */
    int (*cursor)(const struct trainer *tr, int64_t *out);
    int (*seek)(struct trainer *tr, const int64_t *c, int n, char *err);
    int (*extra_tensors)(struct trainer *tr, struct ckpt_tensor *t, int saving);
    void (*extra_loaded)(struct trainer *tr); /* after the extra tensors were read */
    /* after the last step of an uninterrupted run (rec: best-validation test scores) */
    int (*final)(struct trainer *tr, char *err);
};

/* The loop's state, shared with the task. */
struct trainer {
    const struct hw_config *c;
    struct dist *d;
    const struct train_task *task;
    void *ts;               /* the task's state */
    struct cfg_train sched; /* the schedule: train.* with the task's step count */
    const struct ops *be;   /* the backend named by run.backend */
    char device[96];        /* this rank's device (be->select_device), for the layout table */
    struct param_set ps;    /* the task's model parameters (set by setup) */
    struct optim opt;
    int zero;       /* ZeRO-1 in effect (the moments are sharded) */
    char sig[256];  /* the model's shape signature (resume guard) */
    char *tok_json; /* the tokenizer stored in checkpoints, or NULL */
    char *cfg_yaml;
    char metrics_path[CFG_PATH_MAX + 32];
    char last_ckpt[CKPT_PATH_LEN];
    int step, steps;     /* optimizer steps done, in total */
    int64_t tokens_seen; /* tokens (samples for rec) seen */
    int64_t tokens_per_step;
    double flops_per_token;          /* 0: no MFU */
    double peak_flops;               /* the backend's measured GEMM rate (gemm_peak), for MFU */
    const char *peak_what;           /* which GEMM ("sgemm", "cuBLASLt bf16") */
    double lr, step_s;               /* of the current step */
    const char *unit;                /* "tok" or "samples" */
    struct dist_notice *load_notice; /* between trainer_load_begin and _end */
    struct tb_writer *tb;            /* run.tensorboard, rank 0 */
};

/* Checkpoint views of the parameter-shaped HOST block `base`: global shapes, this rank's
 * hyperslab; one replica writes each slab (the ranks that hold distinct data). */
void trainer_tensor_views(const struct trainer *tr, float *base, struct ckpt_tensor *t);
/* COLLECTIVE (every rank, the same number of times): the stop signal, agreed by all ranks, or 0.
 * Long passes inside a step (validation) call it once per micro-batch and end early on a
 * signal, so that the step boundary saves and exits within one micro-batch. */
int trainer_stop_poll(const struct trainer *tr);

/* A task's start-up data loading (reading, tokenizing, checking shards: minutes for a large
 * corpus) answers a stop signal within one line or block: between trainer_load_begin and
 * trainer_load_end (both COLLECTIVE, with no collective between them) the loaders poll
 * hw_interrupted (core/interrupt.h), and a stop seen by any rank ends every rank's loading.
 * trainer_load_end returns rc when it is an error other than HW_ESTOP, HW_ESTOP with one line
 * on every rank when any rank was asked to stop, else 0. Call it on every path after begin. */
void trainer_load_begin(struct trainer *tr);
int trainer_load_end(struct trainer *tr, int rc, char *err);

/* The task named `name`, or NULL. */
const struct train_task *train_task_find(const char *name);

extern const struct train_task task_lm, task_classify, task_sft, task_rec;

#endif /* HW_TASK_H */
