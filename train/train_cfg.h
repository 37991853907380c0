/* train/train_cfg.h -- the `train` (the optimizer, schedule, batches, task) and `run` (run
 * directory, checkpoints, resume, backend) sections of the config; keys and rules in
 * train_cfg.c. */
#ifndef HW_TRAIN_CFG_H
#define HW_TRAIN_CFG_H

#include "../core/cfg.h"

#include <stdint.h>

struct cfg_train {
    int steps;           /* optimizer steps in total */
    int micro_batch;     /* sequences per micro-batch */
    int grad_accum;      /* micro-batches per optimizer step */
    int seq_len;         /* tokens per sequence */
    double lr;           /* peak learning rate */
    double min_lr;       /* floor of the cosine schedule */
    int warmup;          /* linear warmup steps */
    double weight_decay; /* AdamW decay on matrices (never on norms or biases) */
    double beta1, beta2, eps;
    double grad_clip; /* clip the global gradient norm to this; 0 = off */
    int val_every;    /* steps between validation passes; 0 = never */
    int val_batches;  /* micro-batches per validation pass */
    int log_every;    /* steps between progress lines */
    int64_t seed;
    int threads;                  /* CPU threads (OpenMP + OpenBLAS); 0 = all cores */
    char task[CFG_NAME_MAX];      /* "lm" (next-token) | "classify" (MultiFC classifier head) |
                                     "sft" (chat conversations, see struct cfg_sft) */
    char init_from[CFG_PATH_MAX]; /* start from this checkpoint's weights and tokenizer */
    char precision[CFG_NAME_MAX]; /* "fp32" | "bf16": GEMM and attention-tile inputs (ops.h) */
    char recompute[CFG_NAME_MAX]; /* "none" | "block": activation recomputation (gpt.h) */
};

struct cfg_run {
    char dir[CFG_PATH_MAX];     /* run directory: config, metrics, checkpoints */
    int ckpt_every;             /* steps between checkpoints; 0 = only at the end */
    int keep;                   /* checkpoints kept (older ones are deleted) */
    char resume[CFG_NAME_MAX];  /* "auto" (latest in run.dir if any) | "never" */
    char backend[CFG_NAME_MAX]; /* "cpu" | "cuda" (ops.h) */
    int async_save;             /* write checkpoints in a background thread */
    int tensorboard;            /* also write the metrics as TensorBoard events in dir/tb */
};

extern const struct cfg_section cfg_section_train, cfg_section_run;

#endif /* HW_TRAIN_CFG_H */
