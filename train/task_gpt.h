/* train/task_gpt.h -- what the language-model tasks (lm, classify, sft) share: the tokenizer
 * (train.init_from's, data.tokenizer, or the one beside data.train), the GPT on the configured
 * backend with its weights (seeded, or train.init_from's), this rank's slices of the global
 * micro-batches, the gradient buckets that overlap the data-parallel all-reduce with the
 * backward (ZeRO-1 optionally shards the optimizer over their chunks), the global gradient
 * norm, and the MoH statistics of the metrics line. A task's state starts with a struct
 * gpt_task, so these helpers take the trainer. */
#ifndef HW_TASK_GPT_H
#define HW_TASK_GPT_H

#include "../datasets/bpe.h"
#include "../model/gpt.h"
#include "task.h"

struct gpt_task {
    struct bpe tok;
    int tok_v0; /* the tokenizer's size before tokens the task added (sft) */
    struct gpt model;
    int A, Bl, Tl;                 /* micro-batches per step, local sequences and tokens */
    int32_t *g_tokens, *g_targets; /* (B, T): one global micro-batch as read */
    int32_t *tokens, *targets;     /* (A, Bl, Tl): this rank's slices */
    double aux_sum;                /* MoH balance terms of the step's micro-batches */
    /* gradient buckets: the model's blocks cut to dist.bucket_kb */
    int n_buckets;
    size_t *bk_off, *bk_len;
    int *blk_first, *blk_count; /* (n_blocks) first bucket and bucket count of each block */
};

static inline struct gpt_task *gpt_task_of(const struct trainer *tr) {
    return (struct gpt_task *)tr->ts;
}

/* The tokenizer: train.init_from's when fine-tuning, else data.tokenizer (required when
 * `explicit_tok`), else tokenizer.json beside data.train. */
int gpt_task_tokenizer(struct trainer *tr, int explicit_tok, char *err);
/* The model for the tokenizer (n_cls: classifier classes, 0 = none): vocabulary checks, the
 * layers on the backend named by run.backend, weights, train.init_from, activations, buckets;
 * fills tr->ps, tr->sig, tr->tok_json, tr->tokens_per_step and tr->flops_per_token. */
int gpt_task_model(struct trainer *tr, int n_cls, int shard_vocab, char *err);
void gpt_task_free(struct gpt_task *g);

/* The hooks every LM task uses as they are. */
void gpt_task_begin_step(struct trainer *tr);
int gpt_task_micro_batches(const struct trainer *tr);
int gpt_task_optim_segments(struct trainer *tr, struct optim_seg **seg);
/* the backward of micro-batch a (the classifier head's when classify): the last one pushes
 * its gradient buckets as the backward finishes them */
void gpt_task_backward(struct trainer *tr, int a, int classify);
double gpt_task_finish(struct trainer *tr, double loss_sum, double den);
double gpt_task_grad_norm(struct trainer *tr);
void gpt_task_after_update(struct trainer *tr);
void gpt_task_gather_moments(struct trainer *tr, float *full_m, float *full_v);
/* the MoH fields of the metrics line (after validation) */
void gpt_task_metrics(struct trainer *tr, json_t *line, int phase);
int gpt_task_log_due(const struct trainer *tr, int val_due);

/* Read the next global micro-batch of token windows from l and keep this rank's slice into
 * tok/tgt: sequences [dp_rank*Bl, (dp_rank+1)*Bl) and, of each, the context rank's zig-zag
 * tokens. */
struct loader;
int gpt_task_next_windows(struct trainer *tr, struct loader *l, int32_t *tok, int32_t *tgt,
                          char *err);
/* This rank's part (B_local x T_local) of the global micro-batch in g_tokens / g_targets. */
void gpt_task_slice_windows(struct trainer *tr, int32_t *tok, int32_t *tgt);

/* Prefix a module's one-line error with the config key it came from. */
int task_prefix_err(char *err, const char *key, int rc);

#endif /* HW_TASK_GPT_H */
