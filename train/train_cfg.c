/* train/train_cfg.c -- the `train` and `run` sections: their keys, and the rules that protect the
 * training loop and its tasks: the schedule, the sequence against the model's positions, the
 * batch and sequence splits over the data and context ranks, what each task needs (see
 * train_cfg.h). Other sections' values are read by key path. */
#include "train_cfg.h"

#include "../core/check.h"
#include "../model/model_cfg.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define BIG 1000000000LL

static const char *const task_vals[] = {"lm", "classify", "sft", NULL};
static const char *const backend_vals[] = {"cpu", "cuda", NULL};
static const char *const resume_vals[] = {"auto", "never", NULL};
static const char *const precision_vals[] = {"fp32", "bf16", NULL};
static const char *const recompute_vals[] = {"none", "attention", "block", NULL};

#undef CFG_S
#undef CFG_SEC
#define CFG_S   struct cfg_train
#define CFG_SEC train
static const struct cfg_key train_keys[] = {
    CFG_INT(steps, 1000, 1, BIG, "optimizer steps in total"),
    CFG_INT(micro_batch, 8, 1, 65536, "sequences per micro-batch"),
    CFG_INT(grad_accum, 1, 1, 65536, "micro-batches per optimizer step"),
    CFG_INT(seq_len, 256, 2, 1048576, "tokens per sequence"),
    CFG_DBL(lr, 3e-4, 0.0, 1, 1.0, 0, "peak learning rate"),
    CFG_DBL(min_lr, 3e-5, 0.0, 0, 1.0, 0, "floor of the cosine schedule"),
    CFG_INT(warmup, 100, 0, BIG, "linear warmup steps"),
    CFG_DBL(weight_decay, 0.1, 0.0, 0, 10.0, 0,
            "AdamW decoupled weight decay on the projection matrices and embeddings (never on "
            "norms, Titans persistent tokens, conv taps or W0); docs/architecture.md lists them"),
    CFG_DBL(beta1, 0.9, 0.0, 0, 1.0, 1, "AdamW first-moment decay"),
    CFG_DBL(beta2, 0.95, 0.0, 0, 1.0, 1, "AdamW second-moment decay"),
    CFG_DBL(eps, 1e-8, 0.0, 1, 1.0, 1, "AdamW epsilon"),
    CFG_DBL(grad_clip, 1.0, 0.0, 0, INFINITY, 1, "clip the global gradient norm; 0 = off"),
    CFG_INT(val_every, 100, 0, BIG,
            "steps between validation passes (the last step always validates when there is "
            "validation data); 0 = only at the last step"),
    CFG_INT(val_batches, 8, 1, 1000000, "micro-batches per validation pass"),
    CFG_INT(log_every, 10, 1, BIG, "steps between progress lines"),
    CFG_INT64(seed, 1337, 0, INT64_MAX, "seed of every random stream (init, data order)"),
    CFG_INT(threads, 0, 0, 1024, "CPU threads (OpenMP + OpenBLAS); 0 = all cores"),
    CFG_ENUM(task, "lm", task_vals,
             "lm: next-token prediction on data.train; classify: a classifier head on the last "
             "token, trained on data.multifc; sft: chat fine-tuning on sft.train (docs/sft.md)"),
    CFG_STRING(init_from, "", 0,
               "start from this checkpoint's (or run directory's latest) weights and tokenizer "
               "(fine-tuning); optimizer state starts fresh; MoH router tensors a dense "
               "checkpoint lacks start from their init"),
    CFG_ENUM(precision, "fp32", precision_vals,
             "fp32, or bf16: the dense layers' and the attention tiles' GEMM inputs rounded to "
             "bf16 with fp32 accumulation; weights, AdamW moments, gradients, norms, softmax "
             "and the loss stay fp32, and checkpoints are the same either way. On the CPU the "
             "products still run as sgemm (docs/architecture.md: no bf16 GEMM in Debian's "
             "OpenBLAS), so bf16 there is for its numerics, not its speed"),
    CFG_ENUM(recompute, "none", recompute_vals,
             "activation recomputation (losses bit-identical in every mode): none keeps every "
             "activation for the backward; attention keeps all but the attention layers' "
             "q/k/v projections, which the backward recomputes from the attention input (one "
             "q/k/v GEMM and RoPE a layer); block keeps only each block's input and mid-block "
             "residual and recomputes its norms and MLP input side (one more W_in GEMM a "
             "block). The attention softmax is never stored: the kernels are "
             "FlashAttention-style and keep O(T) statistics")};
#undef CFG_S
#undef CFG_SEC
#define CFG_S   struct cfg_run
#define CFG_SEC run
static const struct cfg_key run_keys[] = {
    CFG_STRING(dir, "runs/default", 1, "run directory: config, metrics, checkpoints"),
    CFG_INT(ckpt_every, 0, 0, BIG, "steps between checkpoints; 0 = only at the end"),
    CFG_INT(keep, 3, 1, 1000000, "checkpoints kept (older ones are deleted)"),
    CFG_BOOL(async_save, 0,
             "write checkpoints in a background thread: training goes on from a snapshot in "
             "host memory, the file is the same bytes, at most one save in flight"),
    CFG_BOOL(tensorboard, 1,
             "also write every metrics.jsonl number as a TensorBoard scalar (run.dir/tb, "
             "`tensorboard --logdir run.dir`)"),
    CFG_ENUM(resume, "auto", resume_vals,
             "auto: continue from the latest checkpoint in run.dir if any; never: start fresh"),
    CFG_ENUM(backend, "cpu", backend_vals,
             "where the model runs: cpu (OpenBLAS, the reference) or cuda (NVIDIA GPUs: cuBLASLt, "
             "cuDNN and headwise's kernels; the build needs nvcc, the run a GPU)")};

static int validate(const struct cfg_check *chk, char *err) {
    const struct cfg_train *t = cfg_section_of(chk, "train");
    const struct cfg_model *m = cfg_section_of(chk, "model");
    const int data = cfg_int(chk, "dist.data"), ctx = cfg_int(chk, "dist.context");
    char a[128], b[128], x[32], y[32];
    if (t->seq_len > m->max_seq) {
        snprintf(a, sizeof(a), "%d is larger than model.max_seq %d", t->seq_len, m->max_seq);
        snprintf(b, sizeof(b), "%d is smaller than train.seq_len %d", m->max_seq, t->seq_len);
        return cfg_rule_error(chk, "train.seq_len", "model.max_seq", a, b, err);
    }
    if (t->min_lr > t->lr) {
        cfg_fmt_double(x, sizeof(x), t->min_lr);
        cfg_fmt_double(y, sizeof(y), t->lr);
        snprintf(a, sizeof(a), "%s is larger than train.lr %s", x, y);
        snprintf(b, sizeof(b), "%s is smaller than train.min_lr %s", y, x);
        return cfg_rule_error(chk, "train.min_lr", "train.lr", a, b, err);
    }
    if (t->warmup > t->steps) {
        snprintf(a, sizeof(a), "%d is larger than train.steps %d", t->warmup, t->steps);
        snprintf(b, sizeof(b), "%d is smaller than train.warmup %d", t->steps, t->warmup);
        return cfg_rule_error(chk, "train.warmup", "train.steps", a, b, err);
    }
    /* each context rank holds two zig-zag chunks; each data rank a slice of the batch */
    if (t->seq_len % (2 * ctx)) {
        snprintf(a, sizeof(a), "seq_len %d is not divisible into 2 * %d zig-zag chunks", t->seq_len,
                 ctx);
        return cfg_rule_error(chk, "dist.context", "train.seq_len", a, a, err);
    }
    if (t->micro_batch % data) {
        snprintf(a, sizeof(a), "micro_batch %d is not divisible by %d data-parallel ranks",
                 t->micro_batch, data);
        return cfg_rule_error(chk, "dist.data", "train.micro_batch", a, a, err);
    }
    if (!strcmp(t->task, "classify") && ctx > 1) {
        snprintf(a, sizeof(a),
                 "train.task classify pools the last token of each sequence; it needs "
                 "dist.context 1, not %d",
                 ctx);
        return cfg_rule_error(chk, "dist.context", "train.task", a, a, err);
    }
    if (!strcmp(t->task, "sft") && ctx > 1) {
        snprintf(a, sizeof(a),
                 "train.task sft packs conversations with segment masks; it needs dist.context "
                 "1, not %d",
                 ctx);
        return cfg_rule_error(chk, "dist.context", "train.task", a, a, err);
    }
    int any_mem = 0;
    for (int l = 0; l < m->n_layers; l++)
        any_mem |= cfg_layer_memory(m, l) != 0;
    if (!strcmp(t->task, "sft") && cfg_int(chk, "sft.pack") && any_mem) {
        snprintf(a, sizeof(a),
                 "the Titans memory runs along the whole row and would carry one packed "
                 "conversation into the next; set sft.pack: false");
        return cfg_rule_error(chk, "sft.pack", "model.memory.layers", a, a, err);
    }
    if (!strcmp(t->task, "sft") && !cfg_string(chk, "sft.train")[0]) {
        snprintf(a, sizeof(a), "train.task sft needs sft.train (a JSONL of conversations)");
        return cfg_rule_error(chk, "train.task", "sft.train", a, a, err);
    }
    return 0;
}

static const char *const rules_doc[] = {
    "`train.seq_len` <= `model.max_seq`.",
    "`train.min_lr` <= `train.lr`.",
    "`train.warmup` <= `train.steps`.",
    "`train.seq_len` is divisible by `2 * dist.context` (zig-zag chunks).",
    "`train.micro_batch` is divisible by `dist.data`.",
    "`train.task: classify` needs `dist.context: 1`.",
    "`train.task: sft` needs `sft.train` and `dist.context: 1`; with memory layers it needs "
    "`sft.pack: false` (the memory would run from one packed conversation into the next).",
};

const struct cfg_section cfg_section_train = {
    .name = "train",
    .keys = train_keys,
    .n_keys = (int)(sizeof(train_keys) / sizeof(train_keys[0])),
    .validate = validate,
    .rules_doc = rules_doc,
    .n_rules = (int)(sizeof(rules_doc) / sizeof(rules_doc[0])),
};

const struct cfg_section cfg_section_run = {
    .name = "run",
    .keys = run_keys,
    .n_keys = (int)(sizeof(run_keys) / sizeof(run_keys[0])),
};
