/* core/cfg.h -- the typed run configuration and its YAML loader (libyaml).
 * Every key lives in one schema table (cfg.c): path, type, default, range, allowed values and
 * a one-line doc. The loader reads YAML (with `base:` inheritance and `key.path=value`
 * overrides), rejects unknown keys (with a did-you-mean), wrong types, out-of-range values and
 * broken cross-field rules, and reports each as `file:line:col: error: ...`.
 * docs/config.md is generated from the same table (`headwise config docs`). */
#ifndef HW_CFG_H
#define HW_CFG_H

#include <stdint.h>
#include <stdio.h>

#define CFG_PATH_MAX 512
#define CFG_NAME_MAX 32
#define CFG_LIST_MAX 16

/* A YAML list of strings (a single scalar is a list of one). */
struct cfg_list {
    int n;
    char item[CFG_LIST_MAX][CFG_PATH_MAX];
};

/* model.attention: the attention kind of every layer */
struct cfg_attention {
    char kind[CFG_NAME_MAX]; /* "mha" | "moh" for every layer */
    struct cfg_list layers;  /* per layer (cycled when shorter than n_layers); empty = kind */
};

/* model.moh: Mixture-of-Head attention (ALGORITHMS.md §1) */
struct cfg_moh {
    int shared_heads;          /* h_s: heads 0..h_s-1 always on */
    int top_k;                 /* routed heads chosen per token among the other E = H - h_s */
    char router[CFG_NAME_MAX]; /* "learned" (W_r, W_s, W_h) | "qnorm" (LLaMA3 variant) */
    int paper_literal;         /* the paper's unscaled gates instead of the reference code's */
    double balance_coef;       /* beta of the load-balance loss, averaged over MoH layers */
};

/* model.sparsity: S2 heterogeneous block sparsity (ALGORITHMS.md §5) */
struct cfg_sparsity {
    char kind[CFG_NAME_MAX];      /* "none" | "s2" */
    int block;                    /* sparse block size in tokens */
    int local_blocks;             /* local window in blocks, including the current one */
    int vert_stride;              /* V: every V-th far block, offset per head */
    int head_offset;              /* o: head_sliding_offset */
    int dense_heads;              /* the last this many key/value heads stay dense */
    struct cfg_list dense_layers; /* layer indices that stay dense */
    int dense_every;              /* layer l dense iff (l+1) % dense_every == 0; 0 = off */
};

/* model.memory: Titans neural long-term memory layers (docs/titans.md) */
struct cfg_memory {
    struct cfg_list layers; /* per layer none|mal|mag|mac|memory (cycled); empty = none */
    int heads, head_dim, depth, hidden, chunk, ttt_batch, conv;
    int segment, persistent; /* MAC: segment length C, persistent tokens N_p */
    double max_lr, max_grad_norm;
    char kappa[CFG_NAME_MAX]; /* "mean" (1/head_dim) | "sum" */
    int theta_per_chunk, gate, recompute;
};

struct cfg_model {
    int d_model;    /* model width C */
    int n_layers;   /* transformer blocks L */
    int n_heads;    /* query heads H */
    int n_kv_heads; /* key/value heads (GQA); 0 = n_heads */
    int vocab;      /* vocabulary size; 0 = take it from the tokenizer */
    int d_ff;       /* MLP hidden width; 0 = derived (4C for gelu, 8C/3 rounded to 64 for swiglu) */
    int max_seq;    /* longest sequence the model supports (RoPE table size) */
    char mlp[CFG_NAME_MAX]; /* "swiglu" | "gelu" */
    int tied_embeddings;    /* 1: LM head shares the token embedding */
    double rope_theta;
    double norm_eps;
    double init_std; /* std of weight init; output projections are scaled by 1/sqrt(2L) */
    struct cfg_attention attention;
    struct cfg_moh moh;
    struct cfg_sparsity sparsity;
    char family[CFG_NAME_MAX];    /* "gpt" | "rec" (DARE/TWIN recommendation model) */
    char embedding[CFG_NAME_MAX]; /* "twin" (one table set) | "dare" | "twin_proj" */
    struct cfg_memory memory;
};

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
};

struct cfg_data {
    char train[CFG_PATH_MAX];     /* token shard (HDF5) for training */
    char val[CFG_PATH_MAX];       /* token shard for validation; "" = none */
    char tokenizer[CFG_PATH_MAX]; /* tokenizer JSON; "" = the one stored in the shard's dir */
    char multifc[CFG_PATH_MAX];   /* train.task classify: MultiFC CSV/TSV */
    double val_frac, test_frac;   /* classify: seeded stratified split of the one labelled file */
};

/* train.task sft and `headwise data csft-score` (docs/sft.md). */
struct cfg_sft {
    char train[CFG_PATH_MAX];      /* JSONL conversations (ShareGPT or RoleMRC schema) */
    char val[CFG_PATH_MAX];        /* JSONL for the validation loss; "" = none */
    char loss[CFG_NAME_MAX];       /* "response" (assistant turns only) | "all" */
    int pack;                      /* 1: pack conversations into rows; 0: one per row */
    char indicator[CFG_NAME_MAX];  /* the context-dependency token, added to the vocab */
    struct cfg_list add_tokens;    /* further special tokens to add */
    char tpl_system[CFG_NAME_MAX]; /* chat template: role tags, end of turn, BOS */
    char tpl_user[CFG_NAME_MAX];
    char tpl_assistant[CFG_NAME_MAX];
    char tpl_end[CFG_NAME_MAX];
    char tpl_bos[CFG_NAME_MAX];
    int score_layer; /* csft-score: attention layer; -1 = n_layers / 2 */
    double beta;     /* csft-score: tag a turn when its score > beta */
};

struct cfg_run {
    char dir[CFG_PATH_MAX];     /* run directory: config, metrics, checkpoints */
    int ckpt_every;             /* steps between checkpoints; 0 = only at the end */
    int keep;                   /* checkpoints kept (older ones are deleted) */
    char resume[CFG_NAME_MAX];  /* "auto" (latest in run.dir if any) | "never" */
    char backend[CFG_NAME_MAX]; /* "cpu" | "cuda" (ops.h) */
};

struct cfg_dist {
    int data;                        /* data-parallel ranks */
    int heads;                       /* head (tensor) parallel ranks */
    int context;                     /* context (sequence) parallel ranks */
    char context_mode[CFG_NAME_MAX]; /* "ring" | "ulysses" */
    int bucket_kb;                   /* gradient all-reduce bucket size; 0 = one per layer */
    int zero;                        /* ZeRO-1: shard the optimizer state over data x context */
};

/* `headwise eval`: what to score and where the task data lives (docs/eval.md). */
struct cfg_eval {
    struct cfg_list checkpoints;        /* checkpoint files or run directories */
    struct cfg_list tasks;              /* task names (see `headwise eval --list-tasks`) */
    char output[CFG_PATH_MAX];          /* results directory; "" = <run dir>/eval */
    int batch_size;                     /* examples per forward pass (scores do not depend on it) */
    int limit;                          /* at most this many examples per task; 0 = all */
    int bootstrap_iters;                /* resamples for standard errors */
    int log_samples;                    /* also write per-sample JSONL */
    int64_t seed;                       /* few-shot draws, splits, bootstrap */
    char perplexity_data[CFG_PATH_MAX]; /* token shard (.h5) or raw text */
    char multifc_data[CFG_PATH_MAX];    /* staged CSV or official TSV */
    int multifc_shots;                  /* in-context examples per prompt */
    double multifc_test_frac;           /* seeded stratified split: test fraction */
    char rolemrc_data[CFG_PATH_MAX];    /* roleMRC_test.jsonl or a file in its schema */
    int max_new_tokens;                 /* generation length */
    struct cfg_list stop;               /* stop strings for generation */
    struct cfg_list judge_command;      /* argv of an LLM judge (prompt on stdin, 0/1 out) */
    char chat_data[CFG_PATH_MAX];       /* chat_qa: JSONL in the RoleMRC question schema */
    int indicator;                      /* append sft.indicator to user turns (chat tasks) */
    double pasta_alpha;                 /* PASTA: scale attention to non-user tokens; 1 = off */
};

#define CFG_MAX_KEYS 160
/* model.family rec: the DARE / TWIN recommendation model and its data (docs/rec.md). */
struct cfg_rec {
    char data[CFG_NAME_MAX];         /* "movielens" | "taobao" | "synth" */
    char path[CFG_PATH_MAX];         /* movielens: the directory with u.data/u.item; taobao: CSV */
    int item_dim, cat_dim, time_dim; /* representation dims */
    int attn_item_dim, attn_cat_dim, attn_time_dim; /* DARE attention dims; 0 = same */
    int max_len;                                    /* history length L */
    int top_k;                                      /* GSU top-K */
    int hidden1, hidden2;
    int aux_loss;      /* auxiliary loss over the whole history */
    double l2;         /* explicit L2 on non-bias, non-embedding parameters */
    int negatives;     /* sampled negatives per positive */
    int train_targets; /* training targets per user: positions -3, -8, ... */
    int min_hist;      /* skip targets with fewer history behaviours */
    int epochs;        /* passes over the training samples (sets train.steps) */
    int synth_users, synth_items, synth_cats; /* synthetic generator size */
    double table_budget_mb; /* per-rank limit for the table shards (+grads, moments); 0 = none */
};

#define CFG_MAX_FILES 8

/* Where a key was last set, for errors found after loading (e.g. the grid vs the world size). */
struct cfg_origin {
    int file; /* index into origin_files; -1 = never set (default) */
    int line, col;
};

struct hw_config {
    struct cfg_model model;
    struct cfg_train train;
    struct cfg_data data;
    struct cfg_run run;
    struct cfg_dist dist;
    struct cfg_eval eval;
    struct cfg_rec rec;
    struct cfg_sft sft;
    char source[CFG_PATH_MAX]; /* the file it was loaded from */
    struct cfg_origin origin[CFG_MAX_KEYS];
    char origin_files[CFG_MAX_FILES][CFG_PATH_MAX];
};

/* Fill every key with its default. */
void cfg_defaults(struct hw_config *c);

/* Load `path` (following `base:` chains, relative to the including file), then apply
 * overrides of the form "model.d_model=256" in order, then validate.
 * Returns 0, or HW_ECONFIG/HW_EIO with one line in err:
 *   "configs/x.yaml:3:5: error: unknown key 'warmpu' in 'train' (did you mean 'warmup'?)"
 * Override errors are reported as "<override N>:1:COL: error: ...". */
int cfg_load(struct hw_config *c, const char *path, int n_over, char *const *overrides, char *err);

/* Same, from text already in memory (a checkpoint's stored config); name is used in messages. */
int cfg_load_string(struct hw_config *c, const char *text, const char *name, int n_over,
                    char *const *overrides, char *err);

/* Apply one "key.path=value" override to an already loaded config (validates afterwards). */
int cfg_override(struct hw_config *c, const char *kv, char *err);

/* Resolved config as YAML, every key present. Caller frees. Loading it back gives the same
 * config. */
char *cfg_to_yaml(const struct hw_config *c);

/* Markdown reference of every key (docs/config.md). */
void cfg_write_docs(FILE *f);

/* "file:line:col" where key was last set (the config's own file, 1:1, for defaults). */
void cfg_where(const struct hw_config *c, const char *key, char *out, size_t n);

/* Rules that need the job's size: dist.data * dist.context * dist.heads == world.
 * Returns 0 or HW_ECONFIG with "file:line:col: error: ..." at the dist keys. */
int cfg_check_world(const struct hw_config *c, int world, char *err);

/* Derived values. */
/* 1 when layer l is a MoH layer (model.attention), an S2-sparse layer (model.sparsity). */
int cfg_layer_moh(const struct cfg_model *m, int l);
/* The memory kind of layer l (model.memory.layers): 0 none, 1 mal, 2 mag, 3 memory, 4 mac. */
int cfg_layer_memory(const struct cfg_model *m, int l);
int cfg_layer_s2(const struct cfg_model *m, int l);
int cfg_kv_heads(const struct cfg_model *m);
int cfg_d_ff(const struct cfg_model *m);

#endif /* HW_CFG_H */
