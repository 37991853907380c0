/* core/cfg.c -- the config schema table, the YAML loader (libyaml events -> a small node tree
 * with file:line:col on every node), `base:` inheritance, `key.path=value` overrides, range and
 * cross-field validation, the resolved-YAML dump and the Markdown reference (see cfg.h).
 * Loading applies defaults, then each file of the base chain (deepest first), then the
 * overrides, key by key onto one struct; the place each key was last set is remembered so that
 * cross-field errors can point at it. */
#define _XOPEN_SOURCE 700
#include "cfg.h"

#include "check.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

// ------------------------------------------------------------------------------------------------
// schema

enum key_type { KT_INT, KT_INT64, KT_DOUBLE, KT_BOOL, KT_STRING, KT_ENUM, KT_LIST };

struct key {
    const char *path;           /* "model.d_model" */
    enum key_type type;         /* value type */
    size_t off;                 /* offsetof(struct hw_config, ...) */
    size_t size;                /* sizeof the field (string capacity) */
    long long idef, imin, imax; /* KT_INT, KT_INT64, KT_BOOL (idef only) */
    double ddef, dmin, dmax;    /* KT_DOUBLE; dmax == INFINITY: no upper bound */
    int dmin_open, dmax_open;   /* 1: bound excluded */
    const char *sdef;           /* KT_STRING, KT_ENUM */
    const char *const *vals;    /* KT_ENUM: allowed values, NULL-terminated */
    int nonempty;               /* KT_STRING: "" is rejected */
    const char *doc;
};

#define FSIZE(f) sizeof(((struct hw_config *)0)->f)
#define K_(f, t) .path = #f, .type = (t), .off = offsetof(struct hw_config, f), .size = FSIZE(f)
#define K_INT(f, def, lo, hi, d)                                                                   \
    { K_(f, KT_INT), .idef = (def), .imin = (lo), .imax = (hi), .doc = (d) }
#define K_INT64(f, def, lo, hi, d)                                                                 \
    { K_(f, KT_INT64), .idef = (def), .imin = (lo), .imax = (hi), .doc = (d) }
#define K_DBL(f, def, lo, lo_open, hi, hi_open, d)                                                 \
    {                                                                                              \
        K_(f, KT_DOUBLE), .ddef = (def), .dmin = (lo), .dmin_open = (lo_open), .dmax = (hi),       \
                          .dmax_open = (hi_open), .doc = (d)                                       \
    }
#define K_BOOL(f, def, d)                                                                          \
    { K_(f, KT_BOOL), .idef = (def), .doc = (d) }
#define K_STR(f, def, ne, d)                                                                       \
    { K_(f, KT_STRING), .sdef = (def), .nonempty = (ne), .doc = (d) }
#define K_LIST(f, d)                                                                               \
    { K_(f, KT_LIST), .doc = (d) }
#define K_ENUM(f, def, v, d)                                                                       \
    { K_(f, KT_ENUM), .sdef = (def), .vals = (v), .doc = (d) }

#define BIG 1000000000LL

static const char *const mlp_vals[] = {"swiglu", "gelu", NULL};
static const char *const backend_vals[] = {"cpu", "cuda", NULL};
static const char *const resume_vals[] = {"auto", "never", NULL};
static const char *const cmode_vals[] = {"ring", "ulysses", NULL};
static const char *const family_vals[] = {"gpt", "rec", NULL};
static const char *const emb_vals[] = {"twin", "dare", "twin_proj", NULL};
static const char *const recdata_vals[] = {"movielens", "taobao", "synth", NULL};

static const char *const attn_vals[] = {"mha", "moh", NULL};
static const char *const router_vals[] = {"learned", "qnorm", NULL};
static const char *const sparsity_vals[] = {"none", "s2", NULL};
static const char *const kappa_vals[] = {"mean", "sum", NULL};

static const char *const task_vals[] = {"lm", "classify", "sft", NULL};
static const char *const sft_loss_vals[] = {"response", "all", NULL};

static const char *const sections[] = {"model", "train", "data", "run",
                                       "dist",  "eval",  "rec",  "sft"};
#define N_SECTIONS ((int)(sizeof(sections) / sizeof(sections[0])))

static const struct key keys[] = {
    K_INT(model.d_model, 128, 8, 65536, "model width C"),
    K_INT(model.n_layers, 4, 1, 1024, "transformer blocks L"),
    K_INT(model.n_heads, 4, 1, 1024, "query heads H"),
    K_INT(model.n_kv_heads, 0, 0, 1024, "key/value heads (grouped-query attention); 0 = n_heads"),
    K_INT(model.vocab, 0, 0, 16777216, "vocabulary size; 0 = take it from the tokenizer"),
    K_INT(model.d_ff, 0, 0, 1048576,
          "MLP hidden width; 0 = derived: 4C for gelu, 8C/3 rounded up to a multiple of 64 for "
          "swiglu"),
    K_INT(model.max_seq, 1024, 2, 1048576, "longest sequence the model supports (RoPE table size)"),
    K_ENUM(model.mlp, "swiglu", mlp_vals, "MLP type"),
    K_BOOL(model.tied_embeddings, 1, "the LM head shares the token embedding matrix"),
    K_DBL(model.rope_theta, 10000.0, 0.0, 1, INFINITY, 1, "RoPE base frequency"),
    K_DBL(model.norm_eps, 1e-5, 0.0, 1, 1.0, 1, "epsilon of the normalisation layers"),
    K_DBL(model.init_std, 0.02, 0.0, 1, 1.0, 0,
          "std of the weight init; output projections are scaled by 1/sqrt(2L)"),
    K_ENUM(model.attention.kind, "mha", attn_vals,
           "attention of every layer: mha (multi-head) or moh (Mixture-of-Head)"),
    K_LIST(model.attention.layers,
           "per-layer attention kinds (mha|moh), repeated when shorter than n_layers "
           "([mha, moh] alternates); [] = attention.kind everywhere"),
    K_INT(model.moh.shared_heads, 2, 0, 1024, "MoH: heads 0..h_s-1 are shared (always active)"),
    K_INT(model.moh.top_k, 2, 0, 1024,
          "MoH: routed heads each token selects among the other n_heads - shared_heads; 0 = all "
          "heads shared, softly re-weighted (needs shared_heads = n_heads)"),
    K_ENUM(model.moh.router, "learned", router_vals,
           "MoH router: learned (W_r, W_s, W_h, the reference code's two-stage gates) or qnorm "
           "(parameter-free query-norm router of the LLaMA3 variant, binary gates, "
           "straight-through gradient)"),
    K_BOOL(model.moh.paper_literal, 0,
           "MoH: the paper's unscaled gates (no top-k renormalisation, no k, h_s, 2 factors)"),
    K_DBL(model.moh.balance_coef, 0.01, 0.0, 0, 1e6, 0,
          "MoH: weight of the load-balance loss E*sum_i P_i f_i, averaged over MoH layers"),
    K_ENUM(model.sparsity.kind, "none", sparsity_vals,
           "none: dense causal attention; s2: per-head local window + strided far blocks"),
    K_INT(model.sparsity.block, 64, 16, 4096, "S2 block size in tokens (a power of two)"),
    K_INT(model.sparsity.local_blocks, 16, 1, 1000000,
          "S2 local window in blocks, the current block included"),
    K_INT(model.sparsity.vert_stride, 8, 1, 1000000,
          "S2 vertical stride V: a head sees every V-th far block; 1 = dense"),
    K_INT(model.sparsity.head_offset, 0, 0, 1000000, "S2 head sliding offset o"),
    K_INT(model.sparsity.dense_heads, 0, 0, 1024,
          "S2: the last this many key/value heads are dense"),
    K_LIST(model.sparsity.dense_layers, "S2: indices of layers that stay dense"),
    K_INT(model.sparsity.dense_every, 0, 0, 1024,
          "S2: layer l (0-based) is dense when (l+1) % dense_every == 0 (Phi-3-small: 2); 0 = off"),
    K_LIST(model.memory.layers,
           "Titans memory per layer (none|mal|mag|mac|memory), repeated when shorter than "
           "n_layers: mal = memory sublayer before attention, mag = attention output gated by "
           "sigmoid(memory), mac = memory as context (segment attention over persistent tokens, "
           "retrieved memory and the segment), memory = the memory replaces attention; [] = none "
           "(docs/titans.md)"),
    K_INT(model.memory.heads, 2, 1, 1024, "memory heads H_m"),
    K_INT(model.memory.head_dim, 0, 0, 4096, "memory head width d_m; 0 = d_model / heads"),
    K_INT(model.memory.depth, 2, 1, 8, "memory MLP depth L_M; 1 = linear matrix memory"),
    K_INT(model.memory.hidden, 0, 0, 65536, "hidden width of the memory MLP; 0 = 4 head_dim"),
    K_INT(model.memory.chunk, 4, 1, 65536,
          "store chunk c: momentum/decay gates and weight snapshots per c tokens"),
    K_INT(model.memory.ttt_batch, 0, 0, 1048576,
          "TTT batch b (a multiple of chunk): gradients at the batch's starting weights; "
          "0 = one batch per sequence (model.max_seq rounded up to chunk)"),
    K_INT(model.memory.conv, 0, 0, 64, "width of the depthwise causal conv on q/k/v; 0 = none"),
    K_INT(model.memory.segment, 64, 1, 1048576,
          "mac: segment length C (attention is causal inside a segment; a multiple of ttt_batch)"),
    K_INT(model.memory.persistent, 4, 0, 4096,
          "persistent tokens N_p of mac and mag layers, seen by every query of their attention"),
    K_DBL(model.memory.max_lr, 0.1, 0.0, 1, 1e3, 0, "inner learning rate theta = max_lr * sigmoid"),
    K_DBL(model.memory.max_grad_norm, 0.0, 0.0, 0, 1e9, 0,
          "soft-clamp of each surprise tensor's norm; 0 = off"),
    K_ENUM(model.memory.kappa, "mean", kappa_vals,
           "inner loss: mean (1/d_m, the reference) or sum (the paper) of squared errors"),
    K_BOOL(model.memory.theta_per_chunk, 0, "theta from the chunk mean instead of per token"),
    K_BOOL(model.memory.gate, 1, "retrieve gate sigmoid(x w_g) per memory head"),
    K_BOOL(model.memory.recompute, 0,
           "keep only TTT-batch boundary states; the backward recomputes the rest"),
    K_ENUM(model.family, "gpt", family_vals,
           "gpt: the decoder-only language model; rec: the DARE/TWIN recommendation model "
           "(docs/rec.md)"),
    K_ENUM(model.embedding, "twin", emb_vals,
           "twin: one table set for attention and representation; dare: separate attention and "
           "representation tables; twin_proj (rec only): shared tables with linear projections"),

    K_INT(train.steps, 1000, 1, BIG, "optimizer steps in total"),
    K_INT(train.micro_batch, 8, 1, 65536, "sequences per micro-batch"),
    K_INT(train.grad_accum, 1, 1, 65536, "micro-batches per optimizer step"),
    K_INT(train.seq_len, 256, 2, 1048576, "tokens per sequence"),
    K_DBL(train.lr, 3e-4, 0.0, 1, 1.0, 0, "peak learning rate"),
    K_DBL(train.min_lr, 3e-5, 0.0, 0, 1.0, 0, "floor of the cosine schedule"),
    K_INT(train.warmup, 100, 0, BIG, "linear warmup steps"),
    K_DBL(train.weight_decay, 0.1, 0.0, 0, 10.0, 0,
          "AdamW decay on matrices (never on norms or biases)"),
    K_DBL(train.beta1, 0.9, 0.0, 0, 1.0, 1, "AdamW first-moment decay"),
    K_DBL(train.beta2, 0.95, 0.0, 0, 1.0, 1, "AdamW second-moment decay"),
    K_DBL(train.eps, 1e-8, 0.0, 1, 1.0, 1, "AdamW epsilon"),
    K_DBL(train.grad_clip, 1.0, 0.0, 0, INFINITY, 1, "clip the global gradient norm; 0 = off"),
    K_INT(train.val_every, 100, 0, BIG, "steps between validation passes; 0 = never"),
    K_INT(train.val_batches, 8, 1, 1000000, "micro-batches per validation pass"),
    K_INT(train.log_every, 10, 1, BIG, "steps between progress lines"),
    K_INT64(train.seed, 1337, 0, INT64_MAX, "seed of every random stream (init, data order)"),
    K_INT(train.threads, 0, 0, 1024, "CPU threads (OpenMP + OpenBLAS); 0 = all cores"),
    K_ENUM(train.task, "lm", task_vals,
           "lm: next-token prediction on data.train; classify: a classifier head on the last "
           "token, trained on data.multifc; sft: chat fine-tuning on sft.train (docs/sft.md)"),
    K_STR(train.init_from, "", 0,
          "start from this checkpoint's weights and tokenizer (fine-tuning); optimizer state "
          "starts fresh"),

    K_STR(data.train, "", 0, "token shard (HDF5) for training"),
    K_STR(data.val, "", 0, "token shard for validation; \"\" = none"),
    K_STR(data.tokenizer, "", 0, "tokenizer JSON; \"\" = the one stored in the shard's directory"),
    K_STR(data.multifc, "", 0, "train.task classify: the MultiFC staged CSV or official TSV"),
    K_DBL(data.val_frac, 0.1, 0.0, 0, 1.0, 1,
          "classify: validation part of the seeded stratified split (per domain and label)"),
    K_DBL(data.test_frac, 0.2, 0.0, 0, 1.0, 1,
          "classify: held-out test part of the same split (never trained on)"),

    K_STR(run.dir, "runs/default", 1, "run directory: config, metrics, checkpoints"),
    K_INT(run.ckpt_every, 0, 0, BIG, "steps between checkpoints; 0 = only at the end"),
    K_INT(run.keep, 3, 1, 1000000, "checkpoints kept (older ones are deleted)"),
    K_ENUM(run.resume, "auto", resume_vals,
           "auto: continue from the latest checkpoint in run.dir if any; never: start fresh"),
    K_ENUM(run.backend, "cpu", backend_vals,
           "where the model runs: cpu (OpenBLAS, the reference) or cuda (NVIDIA GPUs: cuBLASLt, "
           "cuDNN and headwise's kernels; the build needs nvcc, the run a GPU)"),

    K_INT(dist.data, 1, 1, 65536, "data-parallel ranks: each takes micro_batch/data sequences"),
    K_INT(dist.heads, 1, 1, 1024,
          "head (tensor) parallel ranks: attention heads and MLP columns are split across them"),
    K_INT(dist.context, 1, 1, 65536,
          "context-parallel ranks: each holds 2 of 2*context sequence chunks (zig-zag)"),
    K_ENUM(dist.context_mode, "ring", cmode_vals,
           "ring: K/V pass around the ring with log-sum-exp merges; ulysses: all-to-all swaps "
           "sequence for heads"),
    K_INT(dist.bucket_kb, 0, 0, 16777216,
          "gradient all-reduce bucket size in KiB, launched during the backward; 0 = one bucket "
          "per layer"),
    K_BOOL(dist.zero, 0,
           "ZeRO-1: reduce-scatter the gradients, keep the AdamW moments of 1/(data*context) of "
           "the parameters per rank, all-gather the updated parameters"),

    K_LIST(eval.checkpoints, "checkpoint files or run directories to evaluate (a run directory "
                             "means every checkpoint in it)"),
    K_LIST(eval.tasks, "tasks to run: perplexity, multifc, multifc_classify, rolemrc; or rec "
                       "alone, for model.family rec checkpoints"),
    K_STR(eval.output, "", 0, "results directory; \"\" = eval/ inside the (first) run directory"),
    K_INT(eval.batch_size, 8, 1, 65536, "examples per forward pass; scores do not depend on it"),
    K_INT(eval.limit, 0, 0, BIG, "at most this many examples per task; 0 = all"),
    K_INT(eval.bootstrap_iters, 1000, 0, 10000000, "bootstrap resamples for standard errors"),
    K_BOOL(eval.log_samples, 0, "also write per-sample inputs and outputs as JSONL"),
    K_INT64(eval.seed, 1234, 0, INT64_MAX, "seed of few-shot draws, splits and the bootstrap"),
    K_STR(eval.perplexity_data, "", 0, "perplexity task: a token shard (.h5) or a raw text file"),
    K_STR(eval.multifc_data, "", 0,
          "MultiFC: the staged claimID,claim,label CSV or an official 13/12-column TSV"),
    K_INT(eval.multifc_shots, 0, 0, 64, "MultiFC log-likelihood scoring: in-context examples"),
    K_DBL(eval.multifc_test_frac, 0.2, 0.0, 1, 1.0, 1,
          "MultiFC with one labelled split: the test part of the seeded stratified split"),
    K_STR(eval.rolemrc_data, "", 0, "RoleMRC: roleMRC_test.jsonl or a file in its schema"),
    K_INT(eval.max_new_tokens, 256, 1, 65536, "generation length (RoleMRC)"),
    K_LIST(eval.stop, "stop strings for generation"),
    K_LIST(eval.judge_command,
           "LLM judge argv (no shell): gets each judge prompt on stdin, answers 0 or 1; [] = off"),

    K_ENUM(rec.data, "synth", recdata_vals,
           "rec data: movielens (u.data + u.item), taobao (UserBehavior CSV), synth (generated)"),
    K_STR(rec.path, "", 0, "movielens: directory holding u.data and u.item; taobao: the CSV"),
    K_INT(rec.item_dim, 16, 1, 4096, "representation item embedding dim"),
    K_INT(rec.cat_dim, 16, 1, 4096, "representation category embedding dim"),
    K_INT(rec.time_dim, 16, 1, 4096, "representation time/position embedding dim"),
    K_INT(rec.attn_item_dim, 0, 0, 4096, "dare: attention item embedding dim; 0 = rec.item_dim"),
    K_INT(rec.attn_cat_dim, 0, 0, 4096, "dare: attention category embedding dim; 0 = rec.cat_dim"),
    K_INT(rec.attn_time_dim, 0, 0, 4096, "dare: attention time embedding dim; 0 = rec.time_dim"),
    K_INT(rec.max_len, 200, 1, 100000, "behaviour history length L (older ones are dropped)"),
    K_INT(rec.top_k, 20, 1, 100000, "GSU soft search: behaviours kept for the ESU attention"),
    K_INT(rec.hidden1, 200, 1, 65536, "first hidden width of the main and auxiliary MLPs"),
    K_INT(rec.hidden2, 80, 1, 65536, "second hidden width of the main MLP"),
    K_BOOL(rec.aux_loss, 1, "auxiliary loss: attention over the whole history, its own MLP"),
    K_DBL(rec.l2, 1e-6, 0.0, 0, 1.0, 0,
          "explicit L2 on the parameters that are neither biases nor embeddings"),
    K_INT(rec.negatives, 2, 1, 100, "negatives per positive, sampled by item frequency"),
    K_INT(rec.train_targets, 19, 1, 100000,
          "training targets per user: positions -3, -8, -13, ..."),
    K_INT(rec.min_hist, 1, 1, 100000, "targets with fewer history behaviours are skipped"),
    K_INT(rec.epochs, 0, 0, 100000,
          "passes over the training samples (sets train.steps); 0 = use train.steps"),
    K_INT(rec.synth_users, 2000, 2, 10000000, "synth: users"),
    K_INT(rec.synth_items, 1000, 10, 100000000, "synth: items"),
    K_INT(rec.synth_cats, 20, 2, 1000000, "synth: categories"),
    K_DBL(rec.table_budget_mb, 0.0, 0.0, 0, INFINITY, 1,
          "per-rank memory budget (MiB) for this rank's embedding-table rows with their "
          "gradients and AdamW moments; a larger shard is refused before allocating (run more "
          "ranks); 0 = no limit"),
    K_STR(eval.chat_data, "", 0,
          "chat_qa: JSONL in the RoleMRC question schema (question + reference), scored by "
          "containment"),
    K_BOOL(eval.indicator, 0,
           "chat tasks: append the checkpoint's sft.indicator to every user turn (\".\" first when "
           "it ends alphanumerically)"),
    K_DBL(eval.pasta_alpha, 1.0, 0.0, 1, 1.0, 0,
          "chat tasks: PASTA-style steering, attention to non-user tokens is scaled by this and "
          "renormalised on every head; 1 = off"),

    K_STR(sft.train, "", 0, "train.task sft: JSONL conversations (ShareGPT or RoleMRC schema)"),
    K_STR(sft.val, "", 0, "JSONL conversations for the validation loss; \"\" = none"),
    K_ENUM(sft.loss, "response", sft_loss_vals,
           "response: loss on assistant turns only (content and end of turn); all: on every "
           "token (the reference repo's configuration)"),
    K_BOOL(sft.pack, 1,
           "pack whole conversations into each row (no attention across them); false: one "
           "per row, padded"),
    K_STR(sft.indicator, "[IND]", 0,
          "the context-dependency indicator, added to the vocabulary as a special token; "
          "\"\" = none"),
    K_LIST(sft.add_tokens, "further special tokens to add to the vocabulary (e.g. role tags)"),
    K_STR(sft.tpl_system, "<|system|>\n", 0, "chat template: system role tag"),
    K_STR(sft.tpl_user, "<|user|>\n", 0, "chat template: user role tag"),
    K_STR(sft.tpl_assistant, "<|assistant|>\n", 0, "chat template: assistant role tag"),
    K_STR(sft.tpl_end, "<|end|>\n", 0, "chat template: written after every message"),
    K_STR(sft.tpl_bos, "", 0, "chat template: written once at the start"),
    K_INT(sft.score_layer, -1, -1, 1024,
          "csft-score: the layer whose attention scores a turn; -1 = n_layers / 2"),
    K_DBL(sft.beta, 0.6, 0.0, 0, INFINITY, 1,
          "csft-score: a response turn scoring > beta gets its user turn tagged; >= 1 tags "
          "nothing"),
};
#define N_KEYS ((int)(sizeof(keys) / sizeof(keys[0])))
_Static_assert(N_KEYS <= CFG_MAX_KEYS, "raise CFG_MAX_KEYS");

/* Cross-field rules, for the docs; validate() implements them in this order. */
static const char *const rules_doc[] = {
    "`model.d_model` is divisible by `model.n_heads`.",
    "`model.n_kv_heads`, when nonzero, is at most `model.n_heads` and divides it.",
    "The head dimension `model.d_model / model.n_heads` is even (RoPE rotates pairs).",
    "`train.seq_len` <= `model.max_seq`.",
    "`train.min_lr` <= `train.lr`.",
    "`train.warmup` <= `train.steps`.",
    "`model.n_heads`, the key/value heads and the MLP width are divisible by `dist.heads`.",
    "`train.seq_len` is divisible by `2 * dist.context` (zig-zag chunks).",
    "`train.micro_batch` is divisible by `dist.data`.",
    "With `dist.context_mode: ulysses`, the heads of each head-parallel rank (query and "
    "key/value) are divisible by `dist.context`.",
    "`train.task: classify` needs `dist.context: 1`.",
    "`train.task: sft` needs `sft.train` and `dist.context: 1`.",
    "`data.val_frac + data.test_frac` < 1.",
    "`model.attention.layers` items are `mha` or `moh`.",
    "MoH layers: `model.moh.shared_heads + model.moh.top_k` <= `model.n_heads`; `top_k: 0` needs "
    "`shared_heads` = `n_heads`; the qnorm router needs `top_k` >= 1 and is not paper_literal.",
    "`model.sparsity.block` is a power of two; `model.sparsity.dense_heads` <= the key/value "
    "heads; `model.sparsity.dense_layers` are layer indices.",
    "S2 with `dist.context` > 1: the zig-zag chunk `train.seq_len / (2 * dist.context)` is a "
    "multiple of `model.sparsity.block`.",
    "`model.family: rec` needs `dist.context: 1` and `dist.heads: 1`.",
    "`model.memory.layers` items are none, mal, mag, mac or memory; with memory layers: "
    "`model.family: gpt`, `model.memory.ttt_batch` a multiple of `model.memory.chunk`; with "
    "`dist.context` > 1 the zig-zag chunk `train.seq_len / (2 * dist.context)` is a multiple of a "
    "nonzero `model.memory.ttt_batch` and at least `model.memory.conv - 1`, "
    "`model.memory.head_dim` set or `d_model` divisible by "
    "`model.memory.heads`, and with `model.embedding: dare` layer 0 is not `memory` or `mac`.",
    "`mac` layers: not `moh`; `model.memory.segment` a multiple of `chunk` and of a nonzero "
    "`ttt_batch` (0: the TTT batch is the segment), at least `conv - 1`, and "
    "`persistent + segment <= model.max_seq`; with `dist.context` > 1 the zig-zag chunk is a "
    "multiple of `segment`.",
    "`train.task: sft` with memory layers needs `sft.pack: false` (the memory would run from one "
    "packed conversation into the next).",
    "`model.embedding: twin_proj` needs `model.family: rec`.",
    "`rec.top_k` <= `rec.max_len`.",
    "At run time: `dist.data * dist.context * dist.heads` equals the number of MPI ranks.",
};

static void *field(struct hw_config *c, const struct key *k) {
    return (char *)c + k->off;
}

static const void *cfield(const struct hw_config *c, const struct key *k) {
    return (const char *)c + k->off;
}

/* Section name of key k, without the dot, and the field name after it. */
static size_t sec_len(const struct key *k) {
    return (size_t)(strchr(k->path, '.') - k->path);
}

static const char *key_name(const struct key *k) {
    return k->path + sec_len(k) + 1;
}

static int find_key(const char *path) {
    for (int i = 0; i < N_KEYS; i++)
        if (!strcmp(keys[i].path, path))
            return i;
    return -1;
}

static int find_section(const char *name) {
    for (int i = 0; i < N_SECTIONS; i++)
        if (!strcmp(sections[i], name))
            return i;
    return -1;
}

/* Shortest "%.*g" that reads back as exactly v; whole numbers below 1e15 without exponent. */
static void fmt_double(char *buf, size_t n, double v) {
    if (isinf(v)) {
        snprintf(buf, n, "%s", v < 0 ? "-inf" : "inf");
        return;
    }
    if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(buf, n, "%.0f", v);
        return;
    }
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, n, "%.*g", p, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

/* "[8, 65536]", "(0, 1]", "[0, inf)"; "" for types without a range. */
static void fmt_range(char *buf, size_t n, const struct key *k) {
    char lo[32], hi[32];
    switch (k->type) {
    case KT_INT:
    case KT_INT64:
        snprintf(buf, n, "[%lld, %lld]", k->imin, k->imax);
        break;
    case KT_DOUBLE:
        fmt_double(lo, sizeof(lo), k->dmin);
        fmt_double(hi, sizeof(hi), k->dmax);
        snprintf(buf, n, "%c%s, %s%c", k->dmin_open ? '(' : '[', lo, hi,
                 k->dmax_open || isinf(k->dmax) ? ')' : ']');
        break;
    default:
        buf[0] = '\0';
    }
}

/* "swiglu|gelu" */
static void fmt_vals(char *buf, size_t n, const struct key *k, const char *sep) {
    buf[0] = '\0';
    for (int i = 0; k->vals[i]; i++) {
        size_t len = strlen(buf);
        snprintf(buf + len, n - len, "%s%s", i ? sep : "", k->vals[i]);
    }
}

static void set_string(char *dst, size_t cap, const char *s) {
    memset(dst, 0, cap);
    snprintf(dst, cap, "%s", s);
}

void cfg_defaults(struct hw_config *c) {
    memset(c, 0, sizeof(*c));
    for (int i = 0; i < CFG_MAX_KEYS; i++)
        c->origin[i].file = -1;
    for (int i = 0; i < N_KEYS; i++) {
        const struct key *k = &keys[i];
        void *p = field(c, k);
        switch (k->type) {
        case KT_INT:
        case KT_BOOL:
            HW_ASSERT(k->size == sizeof(int));
            *(int *)p = (int)k->idef;
            break;
        case KT_INT64:
            HW_ASSERT(k->size == sizeof(int64_t));
            *(int64_t *)p = (int64_t)k->idef;
            break;
        case KT_DOUBLE:
            HW_ASSERT(k->size == sizeof(double));
            *(double *)p = k->ddef;
            break;
        case KT_STRING:
        case KT_ENUM:
            set_string(p, k->size, k->sdef);
            break;
        case KT_LIST:
            HW_ASSERT(k->size == sizeof(struct cfg_list));
            break;
        }
    }
}

int cfg_layer_moh(const struct cfg_model *m, int l) {
    const struct cfg_list *ls = &m->attention.layers;
    const char *k = ls->n ? ls->item[l % ls->n] : m->attention.kind;
    return !strcmp(k, "moh");
}

int cfg_layer_memory(const struct cfg_model *m, int l) {
    const struct cfg_list *ls = &m->memory.layers;
    if (!ls->n)
        return 0;
    const char *k = ls->item[l % ls->n];
    return !strcmp(k, "mal")      ? 1
           : !strcmp(k, "mag")    ? 2
           : !strcmp(k, "memory") ? 3
           : !strcmp(k, "mac")    ? 4
                                  : 0;
}

int cfg_layer_s2(const struct cfg_model *m, int l) {
    if (strcmp(m->sparsity.kind, "s2"))
        return 0;
    if (m->sparsity.dense_every && (l + 1) % m->sparsity.dense_every == 0)
        return 0;
    for (int i = 0; i < m->sparsity.dense_layers.n; i++)
        if (atoi(m->sparsity.dense_layers.item[i]) == l)
            return 0;
    return 1;
}

int cfg_kv_heads(const struct cfg_model *m) {
    return m->n_kv_heads ? m->n_kv_heads : m->n_heads;
}

int cfg_d_ff(const struct cfg_model *m) {
    if (m->d_ff)
        return m->d_ff;
    if (!strcmp(m->mlp, "gelu"))
        return 4 * m->d_model;
    return ((8 * m->d_model / 3 + 63) / 64) * 64;
}

// ------------------------------------------------------------------------------------------------
// error messages

/* One line "file:line:col: error: msg"; control characters (from quoted YAML) become '?'. */
static int errat(char *err, int code, const char *file, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static int errat(char *err, int code, const char *file, int line, int col, const char *fmt, ...) {
    if (!err)
        return code;
    int n = snprintf(err, HW_ERR_LEN, "%s:%d:%d: error: ", file, line, col);
    if (n >= 0 && n < HW_ERR_LEN) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err + n, (size_t)(HW_ERR_LEN - n), fmt, ap);
        va_end(ap);
    }
    for (char *p = err; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    return code;
}

/* A value as shown in messages: at most 60 bytes, then "...". */
static const char *shown(char *buf, size_t n, const char *s) {
    size_t len = strlen(s);
    if (len <= 60 || n < 64)
        snprintf(buf, n, "%s", s);
    else
        snprintf(buf, n, "%.57s...", s);
    return buf;
}

/* Levenshtein distance, for did-you-mean. Strings longer than 63 bytes get a large distance. */
static int edit_distance(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    int row[64];
    if (na > 63 || nb > 63)
        return INT_MAX / 2;
    for (size_t j = 0; j <= nb; j++)
        row[j] = (int)j;
    for (size_t i = 1; i <= na; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= nb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[nb];
}

/* Keeps the closest candidate within max(2, len/3) edits (and fewer than len edits). */
struct suggest {
    const char *word;
    const char *best;
    int dist;
};

static void suggest_init(struct suggest *s, const char *word) {
    s->word = word;
    s->best = NULL;
    s->dist = INT_MAX;
}

static void suggest_try(struct suggest *s, const char *cand) {
    int len = (int)strlen(s->word);
    int limit = len / 3 > 2 ? len / 3 : 2;
    int d = edit_distance(s->word, cand);
    if (d <= limit && d < len && d < s->dist) {
        s->best = cand;
        s->dist = d;
    }
}

/* " (did you mean 'x'?)" or "" */
static const char *suggest_text(char *buf, size_t n, const char *best) {
    if (best)
        snprintf(buf, n, " (did you mean '%s'?)", best);
    else
        buf[0] = '\0';
    return buf;
}

// ------------------------------------------------------------------------------------------------
// YAML -> node tree

enum node_kind { NODE_SCALAR, NODE_MAP, NODE_SEQ };

struct node {
    enum node_kind kind;
    const char *file; /* interned by the loader */
    int line, col;    /* 1-based */
    char *text;       /* NODE_SCALAR: the value, NUL-terminated */
    size_t len;       /* NODE_SCALAR: bytes in text (may contain NUL from "\0") */
    int quoted;       /* NODE_SCALAR: not a plain scalar (quoted, block, or !!str) */
    int n, cap;
    struct node **kid; /* NODE_MAP: key, value, key, value...; NODE_SEQ: items */
};

#define NEST_MAX 64

static void node_free(struct node *n) {
    if (!n)
        return;
    for (int i = 0; i < n->n; i++)
        node_free(n->kid[i]);
    free(n->kid);
    free(n->text);
    free(n);
}

static struct node *node_new(enum node_kind kind, const char *file, int line, int col) {
    struct node *n = HW_CALLOC(1, sizeof(*n));
    n->kind = kind;
    n->file = file;
    n->line = line;
    n->col = col;
    return n;
}

static void node_push(struct node *parent, struct node *kid) {
    if (parent->n == parent->cap) {
        parent->cap = parent->cap ? 2 * parent->cap : 8;
        parent->kid = HW_REALLOC(parent->kid, (size_t)parent->cap * sizeof(*parent->kid));
    }
    parent->kid[parent->n++] = kid;
}

static const char *kind_name(const struct node *n) {
    return n->kind == NODE_MAP ? "a mapping" : "a sequence";
}

/* A plain empty, "~" or "null" scalar: YAML null. */
static int is_null(const struct node *n) {
    return n->kind == NODE_SCALAR && !n->quoted &&
           (!n->text[0] || !strcmp(n->text, "~") || !strcmp(n->text, "null") ||
            !strcmp(n->text, "Null") || !strcmp(n->text, "NULL"));
}

/* line/col of a byte offset in text (reader errors only give an offset). */
static void offset_pos(const char *text, size_t len, size_t off, int *line, int *col) {
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off && i < len; i++) {
        if (text[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

/* 1-based line/col of a libyaml mark. An override value (oneline) is one line at column col0+1;
 * libyaml may put end-of-input marks on a line after it: those map to the end of the value. */
static void mark_pos(yaml_mark_t m, size_t len, int col0, int oneline, int *line, int *col) {
    if (oneline && m.line > 0) {
        *line = 1;
        *col = col0 + (int)len + 1;
        return;
    }
    *line = (int)m.line + 1;
    *col = (int)m.column + 1 + col0;
}

static int syntax_error(const yaml_parser_t *p, const char *text, size_t len, const char *file,
                        int col0, int oneline, char *err) {
    const char *problem = p->problem ? p->problem : "unknown error";
    int line, col;
    if (p->error == YAML_READER_ERROR) {
        offset_pos(text, len, p->problem_offset, &line, &col);
        return errat(err, HW_ECONFIG, file, line, col + col0, "syntax: %s", problem);
    }
    if (p->error == YAML_MEMORY_ERROR)
        HW_DIE("libyaml: out of memory");
    mark_pos(p->problem_mark, len, col0, oneline, &line, &col);
    if (p->context) {
        int cline, ccol;
        mark_pos(p->context_mark, len, col0, oneline, &cline, &ccol);
        return errat(err, HW_ECONFIG, file, line, col, "syntax: %s (%s at %d:%d)", problem,
                     p->context, cline, ccol);
    }
    return errat(err, HW_ECONFIG, file, line, col, "syntax: %s", problem);
}

/* Parse text into a node tree (*out = NULL for an empty stream). col0 shifts every column and
 * oneline is set for an override's value, which starts after "key=". */
static int parse_yaml(const char *text, size_t len, const char *file, int col0, int oneline,
                      struct node **out, char *err) {
    yaml_parser_t p;
    yaml_event_t ev;
    struct node *root = NULL, *stack[NEST_MAX];
    int sp = 0, ndoc = 0, rc = 0, done = 0;

    *out = NULL;
    if (!yaml_parser_initialize(&p))
        HW_DIE("libyaml: out of memory");
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    while (!done && !rc) {
        if (!yaml_parser_parse(&p, &ev)) {
            rc = syntax_error(&p, text, len, file, col0, oneline, err);
            break;
        }
        int line, col;
        mark_pos(ev.start_mark, len, col0, oneline, &line, &col);
        struct node *n = NULL;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++ndoc > 1)
                rc = errat(err, HW_ECONFIG, file, line, col,
                           "expected one YAML document, found a second one");
            break;
        case YAML_ALIAS_EVENT:
            rc = errat(err, HW_ECONFIG, file, line, col, "aliases (*%s) are not supported",
                       (const char *)ev.data.alias.anchor);
            break;
        case YAML_SCALAR_EVENT:
            n = node_new(NODE_SCALAR, file, line, col);
            n->len = ev.data.scalar.length;
            n->text = HW_MALLOC(n->len + 1);
            memcpy(n->text, ev.data.scalar.value, n->len);
            n->text[n->len] = '\0';
            n->quoted =
                ev.data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
                (ev.data.scalar.tag && !strcmp((const char *)ev.data.scalar.tag, YAML_STR_TAG));
            break;
        case YAML_MAPPING_START_EVENT:
            n = node_new(NODE_MAP, file, line, col);
            break;
        case YAML_SEQUENCE_START_EVENT:
            n = node_new(NODE_SEQ, file, line, col);
            break;
        case YAML_MAPPING_END_EVENT:
        case YAML_SEQUENCE_END_EVENT:
            sp--;
            break;
        default:
            break;
        }
        if (n) {
            struct node *parent = sp ? stack[sp - 1] : NULL;
            if (parent && parent->kind == NODE_MAP && parent->n % 2 == 0 &&
                n->kind != NODE_SCALAR) {
                rc = errat(err, HW_ECONFIG, file, line, col, "mapping keys must be scalars");
                node_free(n);
            } else {
                if (parent)
                    node_push(parent, n);
                else
                    root = n;
                if (n->kind != NODE_SCALAR) {
                    if (sp == NEST_MAX)
                        rc = errat(err, HW_ECONFIG, file, line, col, "nested too deeply");
                    else
                        stack[sp++] = n;
                }
            }
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    if (rc) {
        node_free(root);
        return rc;
    }
    *out = root;
    return 0;
}

// ------------------------------------------------------------------------------------------------
// loader state

struct setpos {
    const char *file; /* NULL: never set (default) */
    int line, col;
    unsigned seq; /* order of setting; the most recent set wins a cross-field error */
};

#define BASE_DEPTH_MAX 32

struct loader {
    struct hw_config cfg;
    struct setpos pos[N_KEYS];
    unsigned seq;
    char **names; /* interned file names ("<override N>" too), freed with the loader */
    int n_names;
    const char *chain[BASE_DEPTH_MAX]; /* files being loaded, outermost first (display names) */
    char *real[BASE_DEPTH_MAX];        /* and their canonical paths */
    int depth;
    int embedded;      /* cfg_load_string: `base:` is an error */
    const char *where; /* default position for cross-field errors on never-set keys */
};

static void loader_init(struct loader *L, const struct hw_config *start) {
    memset(L, 0, sizeof(*L));
    if (start)
        L->cfg = *start;
    else
        cfg_defaults(&L->cfg);
}

static void loader_free(struct loader *L) {
    for (int i = 0; i < L->n_names; i++)
        free(L->names[i]);
    free(L->names);
}

static const char *intern(struct loader *L, const char *s) {
    L->names = HW_REALLOC(L->names, (size_t)(L->n_names + 1) * sizeof(*L->names));
    L->names[L->n_names] = HW_STRDUP(s);
    return L->names[L->n_names++];
}

// ------------------------------------------------------------------------------------------------
// applying nodes to the config

static int is_int_text(const char *s) {
    if (*s == '+' || *s == '-')
        s++;
    if (!*s)
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

/* Decimal floating point: [+-](digits[.digits]|.digits)[(e|E)[+-]digits]. No inf/nan/hex. */
static int is_number_text(const char *s) {
    int digits = 0;
    if (*s == '+' || *s == '-')
        s++;
    for (; *s >= '0' && *s <= '9'; s++)
        digits++;
    if (*s == '.')
        for (s++; *s >= '0' && *s <= '9'; s++)
            digits++;
    if (!digits)
        return 0;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-')
            s++;
        if (*s < '0' || *s > '9')
            return 0;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    return *s == '\0';
}

static int type_error(const struct key *k, const struct node *v, const char *what, char *err) {
    char buf[80];
    if (v->kind != NODE_SCALAR)
        return errat(err, HW_ECONFIG, v->file, v->line, v->col, "%s: expected %s, got %s", k->path,
                     what, kind_name(v));
    if (!v->text[0] && !v->quoted)
        return errat(err, HW_ECONFIG, v->file, v->line, v->col,
                     "%s: expected %s, got an empty value", k->path, what);
    if (v->quoted)
        return errat(err, HW_ECONFIG, v->file, v->line, v->col,
                     "%s: expected %s, got a quoted string '%s'", k->path, what,
                     shown(buf, sizeof(buf), v->text));
    return errat(err, HW_ECONFIG, v->file, v->line, v->col, "%s: expected %s, got '%s'", k->path,
                 what, shown(buf, sizeof(buf), v->text));
}

static int range_error(const struct key *k, const struct node *v, char *err) {
    char buf[80], range[96];
    fmt_range(range, sizeof(range), k);
    return errat(err, HW_ECONFIG, v->file, v->line, v->col, "%s: %s is out of range %s", k->path,
                 shown(buf, sizeof(buf), v->text), range);
}

/* Type-check, range-check and store node v as the value of key ki. */
static int set_value(struct loader *L, int ki, const struct node *v, char *err) {
    const struct key *k = &keys[ki];
    void *p = field(&L->cfg, k);
    char buf[80];

    switch (k->type) {
    case KT_INT:
    case KT_INT64: {
        const char *what = "an integer";
        if (v->kind != NODE_SCALAR || v->quoted || !is_int_text(v->text))
            return type_error(k, v, what, err);
        errno = 0;
        long long x = strtoll(v->text, NULL, 10);
        if (errno == ERANGE || x < k->imin || x > k->imax)
            return range_error(k, v, err);
        if (k->type == KT_INT)
            *(int *)p = (int)x;
        else
            *(int64_t *)p = (int64_t)x;
        break;
    }
    case KT_DOUBLE: {
        if (v->kind != NODE_SCALAR || v->quoted || !is_number_text(v->text))
            return type_error(k, v, "a number", err);
        double x = strtod(v->text, NULL);
        int below = k->dmin_open ? !(x > k->dmin) : !(x >= k->dmin);
        int above = k->dmax_open ? !(x < k->dmax) : !(x <= k->dmax);
        if (!isfinite(x) || below || above)
            return range_error(k, v, err);
        *(double *)p = x;
        break;
    }
    case KT_BOOL: {
        const char *t = v->kind == NODE_SCALAR ? v->text : "";
        int yes = !strcmp(t, "true") || !strcmp(t, "True") || !strcmp(t, "TRUE");
        int no = !strcmp(t, "false") || !strcmp(t, "False") || !strcmp(t, "FALSE");
        if (v->kind != NODE_SCALAR || v->quoted || !(yes || no))
            return type_error(k, v, "a boolean (true or false)", err);
        *(int *)p = yes;
        break;
    }
    case KT_STRING: {
        if (v->kind != NODE_SCALAR)
            return type_error(k, v, "a string", err);
        const char *t = is_null(v) ? "" : v->text;
        size_t len = is_null(v) ? 0 : v->len;
        if (memchr(t, '\0', len))
            return errat(err, HW_ECONFIG, v->file, v->line, v->col,
                         "%s: the string contains a NUL character", k->path);
        if (len >= k->size)
            return errat(err, HW_ECONFIG, v->file, v->line, v->col,
                         "%s: the string is too long (%zu bytes; at most %zu)", k->path, len,
                         k->size - 1);
        if (k->nonempty && !len)
            return errat(err, HW_ECONFIG, v->file, v->line, v->col, "%s: must not be empty",
                         k->path);
        set_string(p, k->size, t);
        break;
    }
    case KT_LIST: {
        struct cfg_list *lst = p;
        const struct node *items = v;
        int count = v->kind == NODE_SEQ ? v->n : (is_null(v) ? 0 : 1);
        if (v->kind == NODE_MAP)
            return type_error(k, v, "a list of strings", err);
        if (count > CFG_LIST_MAX)
            return errat(err, HW_ECONFIG, v->file, v->line, v->col, "%s: %d items; at most %d",
                         k->path, count, CFG_LIST_MAX);
        struct cfg_list tmp;
        memset(&tmp, 0, sizeof(tmp));
        for (int i = 0; i < count; i++) {
            const struct node *it = v->kind == NODE_SEQ ? items->kid[i] : v;
            if (it->kind != NODE_SCALAR)
                return errat(err, HW_ECONFIG, it->file, it->line, it->col,
                             "%s: expected a list of strings, got %s in it", k->path,
                             kind_name(it));
            if (it->len >= CFG_PATH_MAX || memchr(it->text, '\0', it->len))
                return errat(err, HW_ECONFIG, it->file, it->line, it->col,
                             "%s: item %d is too long or holds a NUL", k->path, i + 1);
            set_string(tmp.item[i], CFG_PATH_MAX, it->text);
        }
        tmp.n = count;
        *lst = tmp;
        break;
    }
    case KT_ENUM: {
        char vals[128];
        int ok = 0;
        fmt_vals(vals, sizeof(vals), k, "|");
        if (v->kind != NODE_SCALAR)
            return errat(err, HW_ECONFIG, v->file, v->line, v->col,
                         "%s: expected one of %s, got %s", k->path, vals, kind_name(v));
        for (int i = 0; k->vals[i]; i++)
            ok |= !strcmp(k->vals[i], v->text);
        if (!ok)
            return errat(err, HW_ECONFIG, v->file, v->line, v->col,
                         "%s: expected one of %s, got '%s'", k->path, vals,
                         shown(buf, sizeof(buf), v->text));
        set_string(p, k->size, v->text);
        break;
    }
    }
    L->pos[ki] = (struct setpos){v->file, v->line, v->col, ++L->seq};
    return 0;
}

/* Index of an earlier pair in map m with the same key as pair i, or -1. */
static int earlier_key(const struct node *m, int i) {
    for (int j = 0; j < i; j++)
        if (!strcmp(m->kid[2 * j]->text, m->kid[2 * i]->text))
            return j;
    return -1;
}

static int dup_error(const struct node *m, int i, int j, const char *prefix, char *err) {
    const struct node *key = m->kid[2 * i];
    char buf[80];
    return errat(err, HW_ECONFIG, key->file, key->line, key->col,
                 "duplicate key '%s%s' (first set at line %d)", prefix,
                 shown(buf, sizeof(buf), key->text), m->kid[2 * j]->line);
}

/* An unknown key in section sec: suggest the key of the same name in another section, else
 * the closest sibling. */
static int unknown_in_section(const char *sec, const struct node *key, char *err) {
    struct suggest s;
    char buf[80], sug[160];
    const char *other = NULL;
    size_t n = strlen(sec);
    suggest_init(&s, key->text);
    for (int i = 0; i < N_KEYS; i++) {
        if (sec_len(&keys[i]) == n && !strncmp(keys[i].path, sec, n))
            suggest_try(&s, key_name(&keys[i]));
        else if (!other && !strcmp(key_name(&keys[i]), key->text))
            other = keys[i].path;
    }
    return errat(err, HW_ECONFIG, key->file, key->line, key->col, "unknown key '%s' in '%s'%s",
                 shown(buf, sizeof(buf), key->text), sec,
                 suggest_text(sug, sizeof(sug), other ? other : s.best));
}

/* Is `prefix` ("model.attention.") the start of some key's path (a nested sub-section)? */
static int is_subsection(const char *prefix) {
    size_t n = strlen(prefix);
    for (int i = 0; i < N_KEYS; i++)
        if (!strncmp(keys[i].path, prefix, n))
            return 1;
    return 0;
}

/* Apply mapping v whose keys live under `prefix` ("model." or "model.attention."). A key may
 * be written nested (attention: {kind: moh}) or dotted (attention.kind: moh). */
static int apply_map(struct loader *L, const char *sec, const char *prefix, const struct node *v,
                     char *err) {
    if (is_null(v))
        return 0;
    if (v->kind != NODE_MAP) {
        char buf[80];
        if (v->kind == NODE_SEQ)
            return errat(err, HW_ECONFIG, v->file, v->line, v->col,
                         "%.*s: expected a mapping, got a sequence", (int)strlen(prefix) - 1,
                         prefix);
        return errat(err, HW_ECONFIG, v->file, v->line, v->col,
                     "%.*s: expected a mapping, got '%s'", (int)strlen(prefix) - 1, prefix,
                     shown(buf, sizeof(buf), v->text));
    }
    for (int i = 0; i < v->n / 2; i++) {
        const struct node *key = v->kid[2 * i];
        int j = earlier_key(v, i);
        if (j >= 0)
            return dup_error(v, i, j, prefix, err);
        char full[2 * CFG_NAME_MAX + 8], sub[2 * CFG_NAME_MAX + 16];
        snprintf(full, sizeof(full), "%s%s", prefix, key->text);
        snprintf(sub, sizeof(sub), "%s.", full);
        int ki = find_key(full);
        int rc;
        if (ki >= 0)
            rc = set_value(L, ki, v->kid[2 * i + 1], err);
        else if (v->kid[2 * i + 1]->kind == NODE_MAP && is_subsection(sub))
            rc = apply_map(L, sec, sub, v->kid[2 * i + 1], err);
        else
            return unknown_in_section(sec, key, err);
        if (rc)
            return rc;
    }
    return 0;
}

static int apply_section(struct loader *L, int si, const struct node *v, char *err) {
    char prefix[CFG_NAME_MAX];
    snprintf(prefix, sizeof(prefix), "%s.", sections[si]);
    return apply_map(L, sections[si], prefix, v, err);
}

static int unknown_top(const struct node *key, char *err) {
    struct suggest s;
    char buf[80], sug[160];
    const char *other = NULL;
    suggest_init(&s, key->text);
    for (int i = 0; i < N_SECTIONS; i++)
        suggest_try(&s, sections[i]);
    suggest_try(&s, "base");
    for (int i = 0; i < N_KEYS && !other; i++)
        if (!strcmp(key_name(&keys[i]), key->text))
            other = keys[i].path;
    return errat(err, HW_ECONFIG, key->file, key->line, key->col, "unknown key '%s' at top level%s",
                 shown(buf, sizeof(buf), key->text),
                 suggest_text(sug, sizeof(sug), other ? other : s.best));
}

/* Apply a whole file's top-level mapping (`base:` has been handled by the caller). */
static int apply_top(struct loader *L, const struct node *root, char *err) {
    for (int i = 0; i < root->n / 2; i++) {
        const struct node *key = root->kid[2 * i];
        int j = earlier_key(root, i);
        if (j >= 0)
            return dup_error(root, i, j, "", err);
        if (!strcmp(key->text, "base")) {
            if (L->embedded)
                return errat(err, HW_ECONFIG, key->file, key->line, key->col,
                             "base: not allowed in an embedded config");
            continue;
        }
        int si = find_section(key->text);
        if (si < 0)
            return unknown_top(key, err);
        int rc = apply_section(L, si, root->kid[2 * i + 1], err);
        if (rc)
            return rc;
    }
    return 0;
}

/* The top-level node of a file must be a mapping; an empty file is fine. */
static int check_root(const struct node *root, const char *file, char *err) {
    char buf[80];
    if (!root || is_null(root) || root->kind == NODE_MAP)
        return 0;
    if (root->kind == NODE_SEQ)
        return errat(err, HW_ECONFIG, file, root->line, root->col,
                     "expected a mapping at top level, got a sequence");
    return errat(err, HW_ECONFIG, file, root->line, root->col,
                 "expected a mapping at top level, got '%s'", shown(buf, sizeof(buf), root->text));
}

// ------------------------------------------------------------------------------------------------
// files and `base:`

#define FILE_MAX (16u << 20)

/* Read a whole file. Returns 0, or errno (EFBIG for a file over FILE_MAX). */
static int read_file(const char *path, char **text, size_t *len) {
    FILE *f = fopen(path, "rb");
    size_t cap = 4096, n = 0;
    char *buf;
    if (!f)
        return errno ? errno : EIO;
    buf = HW_MALLOC(cap);
    for (;;) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
        if (n == cap) {
            if (cap >= FILE_MAX) {
                free(buf);
                fclose(f);
                return EFBIG;
            }
            cap *= 2;
            buf = HW_REALLOC(buf, cap);
        }
    }
    int bad = ferror(f);
    int e = errno;
    fclose(f);
    if (bad) {
        free(buf);
        return e ? e : EIO;
    }
    *text = buf;
    *len = n;
    return 0;
}

/* "dir/of/from/" + rel, unless rel is absolute or from has no directory. Caller frees. */
static char *resolve_rel(const char *from, const char *rel) {
    const char *slash = strrchr(from, '/');
    if (rel[0] == '/' || !slash)
        return HW_STRDUP(rel);
    size_t dn = (size_t)(slash - from) + 1, rn = strlen(rel);
    char *out = HW_MALLOC(dn + rn + 1);
    memcpy(out, from, dn);
    memcpy(out + dn, rel, rn + 1);
    return out;
}

static int load_file(struct loader *L, const char *path, const struct node *from, char *err);

/* Handle the `base:` key of root (file `file`), if any: load the base first. */
static int load_base(struct loader *L, const struct node *root, const char *file, char *err) {
    const struct node *v = NULL;
    char buf[80];
    if (!root || root->kind != NODE_MAP || L->embedded)
        return 0;
    for (int i = 0; i < root->n / 2; i++) {
        if (strcmp(root->kid[2 * i]->text, "base"))
            continue;
        if (v)
            return dup_error(root, i, earlier_key(root, i), "", err);
        v = root->kid[2 * i + 1];
    }
    if (!v)
        return 0;
    if (v->kind != NODE_SCALAR)
        return errat(err, HW_ECONFIG, v->file, v->line, v->col,
                     "base: expected a file path, got %s", kind_name(v));
    if (is_null(v) || memchr(v->text, '\0', v->len))
        return errat(err, HW_ECONFIG, v->file, v->line, v->col,
                     "base: expected a file path, got '%s'", shown(buf, sizeof(buf), v->text));
    char *path = resolve_rel(file, v->text);
    int rc = load_file(L, path, v, err);
    free(path);
    return rc;
}

/* Load one file (and its base chain) onto L->cfg. from: the `base:` value that names this
 * file, or NULL for the top file. */
static int load_file(struct loader *L, const char *path, const struct node *from, char *err) {
    const char *name = intern(L, path);
    char *text = NULL, *real;
    size_t len = 0;
    struct node *root = NULL;
    int rc, e;

    real = realpath(path, NULL);
    e = real ? read_file(path, &text, &len) : errno;
    if (e) {
        free(real);
        if (!from)
            return hw_errf(err, HW_EIO, "%s: error: cannot open: %s", path, strerror(e));
        return errat(err, HW_ECONFIG, from->file, from->line, from->col,
                     "base: cannot open '%s': %s", path, strerror(e));
    }
    for (int i = 0; i < L->depth; i++) {
        if (strcmp(L->real[i], real))
            continue;
        char chain[HW_ERR_LEN] = "";
        for (int j = i; j < L->depth; j++) {
            size_t n = strlen(chain);
            snprintf(chain + n, sizeof(chain) - n, "%s -> ", L->chain[j]);
        }
        free(real);
        free(text);
        return errat(err, HW_ECONFIG, from->file, from->line, from->col, "base: cycle: %s%s", chain,
                     path);
    }
    if (L->depth == BASE_DEPTH_MAX) {
        free(real);
        free(text);
        return errat(err, HW_ECONFIG, from->file, from->line, from->col,
                     "base: more than %d files deep", BASE_DEPTH_MAX);
    }
    L->chain[L->depth] = name;
    L->real[L->depth++] = real;

    rc = parse_yaml(text, len, name, 0, 0, &root, err);
    if (!rc)
        rc = check_root(root, name, err);
    if (!rc)
        rc = load_base(L, root, name, err);
    if (!rc && root && root->kind == NODE_MAP)
        rc = apply_top(L, root, err);

    node_free(root);
    free(text);
    free(L->real[--L->depth]);
    return rc;
}

// ------------------------------------------------------------------------------------------------
// overrides

/* Unknown override key: the key whose last part matches, else the closest dotted path. */
static int unknown_override(const char *file, const char *key, char *err) {
    struct suggest s;
    char buf[80], sug[160];
    const char *dot = strrchr(key, '.');
    const char *last = dot ? dot + 1 : key;
    const char *other = NULL;
    suggest_init(&s, key);
    for (int i = 0; i < N_KEYS; i++) {
        suggest_try(&s, keys[i].path);
        if (!other && !strcmp(key_name(&keys[i]), last))
            other = keys[i].path;
    }
    for (int i = 0; i < N_SECTIONS; i++)
        suggest_try(&s, sections[i]);
    return errat(err, HW_ECONFIG, file, 1, 1, "unknown key '%s'%s", shown(buf, sizeof(buf), key),
                 suggest_text(sug, sizeof(sug), other ? other : s.best));
}

/* Apply "key.path=value" (the idx-th override, 1-based). The value is parsed as YAML, so a
 * whole section can be given as a flow mapping: "model={d_model: 256, n_layers: 2}". */
static int apply_override(struct loader *L, const char *kv, int idx, char *err) {
    char fname[32];
    snprintf(fname, sizeof(fname), "<override %d>", idx);
    const char *file = intern(L, fname);
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv)
        return errat(err, HW_ECONFIG, file, 1, 1, "expected key.path=value");

    size_t klen = (size_t)(eq - kv);
    char *key = HW_MALLOC(klen + 1);
    memcpy(key, kv, klen);
    key[klen] = '\0';
    int col0 = (int)klen + 1; /* the value starts at column klen + 2 */

    struct node *v = NULL;
    int rc = parse_yaml(eq + 1, strlen(eq + 1), file, col0, 1, &v, err);
    if (!rc && !v) { /* empty value (or only a comment): an empty plain scalar */
        v = node_new(NODE_SCALAR, file, 1, col0 + 1);
        v->text = HW_STRDUP("");
    }
    if (!rc) {
        const char *dot = strchr(key, '.');
        int ki = find_key(key);
        int si = dot ? -1 : find_section(key);
        if (ki >= 0)
            rc = set_value(L, ki, v, err);
        else if (si >= 0)
            rc = apply_section(L, si, v, err);
        else if (dot && v->kind == NODE_MAP && strlen(key) < 2 * CFG_NAME_MAX) {
            char sec[CFG_NAME_MAX], sub[2 * CFG_NAME_MAX + 8];
            snprintf(sec, sizeof(sec), "%.*s", (int)(dot - key), key);
            snprintf(sub, sizeof(sub), "%s.", key);
            rc = is_subsection(sub) ? apply_map(L, sec, sub, v, err)
                                    : unknown_override(file, key, err);
        } else if (!strcmp(key, "base"))
            rc = errat(err, HW_ECONFIG, file, 1, 1, "base: not allowed in an override");
        else
            rc = unknown_override(file, key, err);
    }
    node_free(v);
    free(key);
    return rc;
}

// ------------------------------------------------------------------------------------------------
// cross-field rules

/* A broken rule between keys a and b, reported at whichever was set last (msg_a or msg_b
 * follows the key's name); if neither was set, at a, line 1, column 1 of the config. */
static int rule_error(const struct loader *L, const char *a, const char *b, const char *msg_a,
                      const char *msg_b, char *err) {
    int ia = find_key(a), ib = find_key(b);
    HW_ASSERT(ia >= 0 && ib >= 0);
    int use_b = L->pos[ib].seq > L->pos[ia].seq;
    const struct key *k = &keys[use_b ? ib : ia];
    const struct setpos *p = &L->pos[use_b ? ib : ia];
    const char *msg = use_b ? msg_b : msg_a;
    if (p->file)
        return errat(err, HW_ECONFIG, p->file, p->line, p->col, "%s: %s", k->path, msg);
    return errat(err, HW_ECONFIG, L->where, 1, 1, "%s: %s", k->path, msg);
}

/* model.memory rules of memory-as-context layers. */
static int validate_mac(const struct loader *L, char *err) {
    const struct cfg_model *m = &L->cfg.model;
    const struct cfg_memory *me = &m->memory;
    char a[200];
    int any = 0;
    for (int l = 0; l < m->n_layers; l++) {
        if (cfg_layer_memory(m, l) != 4)
            continue;
        any = 1;
        if (cfg_layer_moh(m, l)) {
            snprintf(a, sizeof(a),
                     "layer %d is mac (its attention is the segment attention) and moh; give it "
                     "mha in model.attention.layers",
                     l);
            return rule_error(L, "model.memory.layers", "model.attention.layers", a, a, err);
        }
    }
    if (!any)
        return 0;
    if (me->ttt_batch && me->segment % me->ttt_batch) {
        snprintf(a, sizeof(a), "mac segment %d is not a multiple of ttt_batch %d", me->segment,
                 me->ttt_batch);
        return rule_error(L, "model.memory.segment", "model.memory.ttt_batch", a, a, err);
    }
    if (me->segment % me->chunk || me->segment < me->conv - 1) {
        snprintf(a, sizeof(a), "mac segment %d must be a multiple of chunk %d and >= conv - 1 (%d)",
                 me->segment, me->chunk, me->conv - 1);
        return rule_error(L, "model.memory.segment", "model.memory.chunk", a, a, err);
    }
    if (me->persistent + me->segment > m->max_seq) {
        snprintf(a, sizeof(a), "mac persistent %d + segment %d exceed model.max_seq %d",
                 me->persistent, me->segment, m->max_seq);
        return rule_error(L, "model.memory.segment", "model.max_seq", a, a, err);
    }
    const int zz = L->cfg.train.seq_len / (2 * L->cfg.dist.context);
    if (L->cfg.dist.context > 1 && zz % me->segment) {
        snprintf(a, sizeof(a),
                 "mac layers under dist.context %d need zig-zag chunks of %d tokens to be a "
                 "multiple of model.memory.segment %d",
                 L->cfg.dist.context, zz, me->segment);
        return rule_error(L, "dist.context", "model.memory.segment", a, a, err);
    }
    return 0;
}

/* model.memory rules (Titans layers). */
static int validate_memory(const struct loader *L, char *err) {
    const struct cfg_model *m = &L->cfg.model;
    const struct cfg_memory *me = &m->memory;
    char a[160];
    int any = 0;
    for (int i = 0; i < me->layers.n; i++) {
        const char *it = me->layers.item[i];
        if (strcmp(it, "none") && strcmp(it, "mal") && strcmp(it, "mag") && strcmp(it, "memory") &&
            strcmp(it, "mac")) {
            snprintf(a, sizeof(a), "item %d is '%.40s'; expected none, mal, mag, mac or memory",
                     i + 1, it);
            return rule_error(L, "model.memory.layers", "model.memory.layers", a, a, err);
        }
    }
    for (int l = 0; l < m->n_layers; l++)
        any |= cfg_layer_memory(m, l) != 0;
    if (!any)
        return 0;
    if (strcmp(m->family, "gpt")) {
        snprintf(a, sizeof(a), "memory layers exist only for model.family gpt");
        return rule_error(L, "model.memory.layers", "model.family", a, a, err);
    }
    const int zz = L->cfg.train.seq_len / (2 * L->cfg.dist.context);
    if (L->cfg.dist.context > 1 &&
        (me->ttt_batch == 0 || zz % me->ttt_batch || zz < me->conv - 1)) {
        snprintf(a, sizeof(a),
                 "memory layers under dist.context %d need zig-zag chunks of %d tokens to be a "
                 "multiple of a nonzero model.memory.ttt_batch (and >= conv - 1)",
                 L->cfg.dist.context, zz);
        return rule_error(L, "dist.context", "model.memory.ttt_batch", a, a, err);
    }
    if (me->ttt_batch % me->chunk) {
        snprintf(a, sizeof(a), "ttt_batch %d is not a multiple of chunk %d", me->ttt_batch,
                 me->chunk);
        return rule_error(L, "model.memory.ttt_batch", "model.memory.chunk", a, a, err);
    }
    if (!me->head_dim && m->d_model % me->heads) {
        snprintf(a, sizeof(a), "d_model %d is not divisible by %d memory heads (set head_dim)",
                 m->d_model, me->heads);
        return rule_error(L, "model.memory.heads", "model.memory.head_dim", a, a, err);
    }
    if (!strcmp(m->embedding, "dare") && cfg_layer_memory(m, 0) >= 3) {
        snprintf(a, sizeof(a), "layer 0 is %s, but dare feeds its attention",
                 cfg_layer_memory(m, 0) == 3 ? "memory-only" : "mac");
        return rule_error(L, "model.memory.layers", "model.embedding", a, a, err);
    }
    return validate_mac(L, err);
}

static int validate(const struct loader *L, char *err) {
    const struct cfg_model *m = &L->cfg.model;
    const struct cfg_train *t = &L->cfg.train;
    char a[128], b[128], x[32], y[32];

    if (m->d_model % m->n_heads) {
        snprintf(a, sizeof(a), "d_model %d is not divisible by n_heads %d", m->d_model, m->n_heads);
        return rule_error(L, "model.n_heads", "model.d_model", a, a, err);
    }
    if (m->n_kv_heads > m->n_heads) {
        snprintf(a, sizeof(a), "n_kv_heads %d is larger than n_heads %d", m->n_kv_heads,
                 m->n_heads);
        return rule_error(L, "model.n_kv_heads", "model.n_heads", a, a, err);
    }
    if (m->n_kv_heads && m->n_heads % m->n_kv_heads) {
        snprintf(a, sizeof(a), "n_heads %d is not divisible by n_kv_heads %d", m->n_heads,
                 m->n_kv_heads);
        return rule_error(L, "model.n_kv_heads", "model.n_heads", a, a, err);
    }
    if ((m->d_model / m->n_heads) % 2) {
        snprintf(a, sizeof(a), "head dim d_model/n_heads = %d/%d = %d is odd; RoPE needs it even",
                 m->d_model, m->n_heads, m->d_model / m->n_heads);
        return rule_error(L, "model.n_heads", "model.d_model", a, a, err);
    }
    if (t->seq_len > m->max_seq) {
        snprintf(a, sizeof(a), "%d is larger than model.max_seq %d", t->seq_len, m->max_seq);
        snprintf(b, sizeof(b), "%d is smaller than train.seq_len %d", m->max_seq, t->seq_len);
        return rule_error(L, "train.seq_len", "model.max_seq", a, b, err);
    }
    if (t->min_lr > t->lr) {
        fmt_double(x, sizeof(x), t->min_lr);
        fmt_double(y, sizeof(y), t->lr);
        snprintf(a, sizeof(a), "%s is larger than train.lr %s", x, y);
        snprintf(b, sizeof(b), "%s is smaller than train.min_lr %s", y, x);
        return rule_error(L, "train.min_lr", "train.lr", a, b, err);
    }
    if (t->warmup > t->steps) {
        snprintf(a, sizeof(a), "%d is larger than train.steps %d", t->warmup, t->steps);
        snprintf(b, sizeof(b), "%d is smaller than train.warmup %d", t->steps, t->warmup);
        return rule_error(L, "train.warmup", "train.steps", a, b, err);
    }
    const struct cfg_dist *g = &L->cfg.dist;
    const int kv = cfg_kv_heads(m), ff = cfg_d_ff(m);
    if (m->n_heads % g->heads || kv % g->heads) {
        snprintf(a, sizeof(a), "%d head-parallel ranks do not divide n_heads %d and n_kv_heads %d",
                 g->heads, m->n_heads, kv);
        return rule_error(L, "dist.heads", "model.n_heads", a, a, err);
    }
    if (ff % g->heads) {
        snprintf(a, sizeof(a), "%d head-parallel ranks do not divide the MLP width %d", g->heads,
                 ff);
        return rule_error(L, "dist.heads", "model.d_ff", a, a, err);
    }
    if (t->seq_len % (2 * g->context)) {
        snprintf(a, sizeof(a), "seq_len %d is not divisible into 2 * %d zig-zag chunks", t->seq_len,
                 g->context);
        return rule_error(L, "dist.context", "train.seq_len", a, a, err);
    }
    if (t->micro_batch % g->data) {
        snprintf(a, sizeof(a), "micro_batch %d is not divisible by %d data-parallel ranks",
                 t->micro_batch, g->data);
        return rule_error(L, "dist.data", "train.micro_batch", a, a, err);
    }
    if (!strcmp(t->task, "classify") && g->context > 1) {
        snprintf(a, sizeof(a),
                 "train.task classify pools the last token of each sequence; it "
                 "needs dist.context 1, not %d",
                 g->context);
        return rule_error(L, "dist.context", "train.task", a, a, err);
    }
    if (!strcmp(t->task, "sft") && g->context > 1) {
        snprintf(a, sizeof(a),
                 "train.task sft packs conversations with segment masks; it needs dist.context "
                 "1, not %d",
                 g->context);
        return rule_error(L, "dist.context", "train.task", a, a, err);
    }
    int any_mem = 0;
    for (int l = 0; l < L->cfg.model.n_layers; l++)
        any_mem |= cfg_layer_memory(&L->cfg.model, l) != 0;
    if (!strcmp(t->task, "sft") && L->cfg.sft.pack && any_mem) {
        snprintf(a, sizeof(a),
                 "the Titans memory runs along the whole row and would carry one packed "
                 "conversation into the next; set sft.pack: false");
        return rule_error(L, "sft.pack", "model.memory.layers", a, a, err);
    }
    if (!strcmp(t->task, "sft") && !L->cfg.sft.train[0]) {
        snprintf(a, sizeof(a), "train.task sft needs sft.train (a JSONL of conversations)");
        return rule_error(L, "train.task", "sft.train", a, a, err);
    }
    if (L->cfg.data.val_frac + L->cfg.data.test_frac >= 1.0) {
        snprintf(a, sizeof(a), "val_frac + test_frac must leave a training part (< 1)");
        return rule_error(L, "data.test_frac", "data.val_frac", a, a, err);
    }
    int any_moh = 0, any_s2 = 0;
    for (int i = 0; i < m->attention.layers.n; i++) {
        const char *it = m->attention.layers.item[i];
        if (strcmp(it, "mha") && strcmp(it, "moh")) {
            snprintf(a, sizeof(a), "item %d is '%.40s'; expected mha or moh", i + 1, it);
            return rule_error(L, "model.attention.layers", "model.attention.layers", a, a, err);
        }
    }
    for (int l = 0; l < m->n_layers; l++) {
        any_moh |= cfg_layer_moh(m, l);
        any_s2 |= cfg_layer_s2(m, l);
    }
    const struct cfg_moh *h = &m->moh;
    if (any_moh && h->shared_heads + h->top_k > m->n_heads) {
        snprintf(a, sizeof(a), "shared_heads %d + top_k %d exceed n_heads %d", h->shared_heads,
                 h->top_k, m->n_heads);
        return rule_error(L, "model.moh.top_k", "model.moh.shared_heads", a, a, err);
    }
    if (any_moh && h->top_k == 0 && h->shared_heads != m->n_heads) {
        snprintf(a, sizeof(a), "top_k 0 (all heads shared) needs shared_heads = n_heads %d, not %d",
                 m->n_heads, h->shared_heads);
        return rule_error(L, "model.moh.shared_heads", "model.moh.top_k", a, a, err);
    }
    if (any_moh && !strcmp(h->router, "qnorm") && (h->top_k < 1 || h->paper_literal)) {
        snprintf(a, sizeof(a), "the qnorm router needs top_k >= 1 and paper_literal false");
        return rule_error(L, "model.moh.router", "model.moh.top_k", a, a, err);
    }
    const struct cfg_sparsity *sp = &m->sparsity;
    if (sp->block & (sp->block - 1)) {
        snprintf(a, sizeof(a), "%d is not a power of two", sp->block);
        return rule_error(L, "model.sparsity.block", "model.sparsity.block", a, a, err);
    }
    if (sp->dense_heads > kv) {
        snprintf(a, sizeof(a), "%d is more than the %d key/value heads", sp->dense_heads, kv);
        return rule_error(L, "model.sparsity.dense_heads", "model.n_heads", a, a, err);
    }
    for (int i = 0; i < sp->dense_layers.n; i++) {
        const char *it = sp->dense_layers.item[i];
        char *end;
        long v = strtol(it, &end, 10);
        if (!*it || *end || v < 0 || v >= m->n_layers) {
            snprintf(a, sizeof(a), "item %d is '%.40s'; expected a layer index 0..%d", i + 1, it,
                     m->n_layers - 1);
            return rule_error(L, "model.sparsity.dense_layers", "model.n_layers", a, a, err);
        }
    }
    if (any_s2 && g->context > 1 && (t->seq_len / (2 * g->context)) % sp->block) {
        snprintf(a, sizeof(a), "zig-zag chunks of %d tokens are not a multiple of the S2 block %d",
                 t->seq_len / (2 * g->context), sp->block);
        return rule_error(L, "dist.context", "model.sparsity.block", a, a, err);
    }
    if (!strcmp(g->context_mode, "ulysses") &&
        ((m->n_heads / g->heads) % g->context || (kv / g->heads) % g->context)) {
        snprintf(a, sizeof(a),
                 "ulysses needs the %d query and %d key/value heads of each head-parallel rank "
                 "to divide by %d context ranks",
                 m->n_heads / g->heads, kv / g->heads, g->context);
        return rule_error(L, "dist.context", "dist.context_mode", a, a, err);
    }
    if (!strcmp(m->family, "rec") && (g->context > 1 || g->heads > 1)) {
        snprintf(a, sizeof(a),
                 "model.family rec is data-parallel with sharded tables; it needs "
                 "dist.context 1 and dist.heads 1");
        return rule_error(L, "dist.context", "model.family", a, a, err);
    }
    if (!strcmp(m->family, "gpt") && !strcmp(m->embedding, "twin_proj")) {
        snprintf(a, sizeof(a), "twin_proj exists only for model.family rec");
        return rule_error(L, "model.embedding", "model.family", a, a, err);
    }
    if (validate_memory(L, err))
        return HW_ECONFIG;
    if (L->cfg.rec.top_k > L->cfg.rec.max_len) {
        snprintf(a, sizeof(a), "rec.top_k %d exceeds rec.max_len %d", L->cfg.rec.top_k,
                 L->cfg.rec.max_len);
        return rule_error(L, "rec.top_k", "rec.max_len", a, a, err);
    }
    return 0;
}

// ------------------------------------------------------------------------------------------------
// public entry points

/* Keep where each key was set, so errors found after loading can point at it. */
static void record_origins(struct loader *L) {
    struct hw_config *c = &L->cfg;
    memset(c->origin_files, 0, sizeof(c->origin_files));
    int n_files = 0;
    for (int i = 0; i < N_KEYS; i++) {
        const struct setpos *p = &L->pos[i];
        c->origin[i].file = -1;
        c->origin[i].line = p->line;
        c->origin[i].col = p->col;
        if (!p->file)
            continue;
        int f = 0;
        while (f < n_files && strcmp(c->origin_files[f], p->file) != 0)
            f++;
        if (f == n_files && n_files < CFG_MAX_FILES)
            set_string(c->origin_files[n_files++], CFG_PATH_MAX, p->file);
        c->origin[i].file = f < n_files ? f : -1;
    }
}

void cfg_where(const struct hw_config *c, const char *key, char *out, size_t n) {
    int i = find_key(key);
    if (i >= 0 && c->origin[i].file >= 0)
        snprintf(out, n, "%s:%d:%d", c->origin_files[c->origin[i].file], c->origin[i].line,
                 c->origin[i].col);
    else
        snprintf(out, n, "%s:1:1", c->source[0] ? c->source : "<config>");
}

int cfg_check_world(const struct hw_config *c, int world, char *err) {
    const struct cfg_dist *g = &c->dist;
    long long grid = (long long)g->data * g->context * g->heads;
    if (grid == world)
        return 0;
    char where[CFG_PATH_MAX + 32];
    /* point at whichever grid key was set; data first */
    const char *key = "dist.data";
    const char *cand[3] = {"dist.data", "dist.context", "dist.heads"};
    for (int k = 2; k >= 0; k--) {
        int i = find_key(cand[k]);
        if (i >= 0 && c->origin[i].file >= 0)
            key = cand[k];
    }
    cfg_where(c, key, where, sizeof(where));
    return hw_errf(err, HW_ECONFIG,
                   "%s: error: dist: data * context * heads = %d * %d * %d = %lld, but the job "
                   "has %d ranks",
                   where, g->data, g->context, g->heads, grid, world);
}

static int finish(struct loader *L, struct hw_config *c, int n_over, char *const *overrides, int rc,
                  char *err) {
    for (int i = 0; !rc && i < n_over; i++)
        rc = apply_override(L, overrides[i], i + 1, err);
    if (!rc)
        rc = validate(L, err);
    if (!rc) {
        record_origins(L);
        *c = L->cfg;
    }
    loader_free(L);
    return rc;
}

int cfg_load(struct hw_config *c, const char *path, int n_over, char *const *overrides, char *err) {
    struct loader L;
    loader_init(&L, NULL);
    set_string(L.cfg.source, sizeof(L.cfg.source), path);
    L.where = path;
    int rc = load_file(&L, path, NULL, err);
    return finish(&L, c, n_over, overrides, rc, err);
}

int cfg_load_string(struct hw_config *c, const char *text, const char *name, int n_over,
                    char *const *overrides, char *err) {
    struct loader L;
    struct node *root = NULL;
    loader_init(&L, NULL);
    L.embedded = 1;
    name = intern(&L, name && name[0] ? name : "<config>");
    set_string(L.cfg.source, sizeof(L.cfg.source), name);
    L.where = name;
    int rc = parse_yaml(text, strlen(text), name, 0, 0, &root, err);
    if (!rc)
        rc = check_root(root, name, err);
    if (!rc && root && root->kind == NODE_MAP)
        rc = apply_top(&L, root, err);
    node_free(root);
    return finish(&L, c, n_over, overrides, rc, err);
}

int cfg_override(struct hw_config *c, const char *kv, char *err) {
    struct loader L;
    char *const one[1] = {(char *)kv};
    loader_init(&L, c);
    L.where = c->source[0] ? c->source : "<config>";
    return finish(&L, c, 1, one, 0, err);
}

// ------------------------------------------------------------------------------------------------
// output: resolved YAML and the Markdown reference

struct sbuf {
    char *p;
    size_t n, cap;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(struct sbuf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        HW_ASSERT(n >= 0);
        if (b->p && b->n + (size_t)n < b->cap) {
            b->n += (size_t)n;
            return;
        }
        b->cap = (b->cap ? 2 * b->cap : 4096) + (size_t)n;
        b->p = HW_REALLOC(b->p, b->cap);
    }
}

/* A YAML double-quoted scalar. */
static void sb_quoted(struct sbuf *b, const char *s) {
    sb_printf(b, "\"");
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            sb_printf(b, "\\%c", ch);
        else if (ch == '\n')
            sb_printf(b, "\\n");
        else if (ch == '\t')
            sb_printf(b, "\\t");
        else if (ch < 0x20 || ch == 0x7f)
            sb_printf(b, "\\x%02x", ch);
        else if (ch == 0xc2 && (unsigned char)s[1] >= 0x80 && (unsigned char)s[1] <= 0x9f) {
            /* U+0080..U+009F: C1 controls, which YAML rejects, and NEL, a line break */
            sb_printf(b, "\\x%02x", (unsigned char)s[1]);
            s++;
        } else if (ch == 0xe2 && (unsigned char)s[1] == 0x80 &&
                   ((unsigned char)s[2] == 0xa8 || (unsigned char)s[2] == 0xa9)) {
            /* U+2028, U+2029: line and paragraph separators, line breaks in YAML */
            sb_printf(b, "\\u%s", (unsigned char)s[2] == 0xa8 ? "2028" : "2029");
            s += 2;
        } else if (ch == 0xef && (unsigned char)s[1] == 0xbf &&
                   ((unsigned char)s[2] == 0xbe || (unsigned char)s[2] == 0xbf)) {
            /* U+FFFE, U+FFFF: non-characters, which YAML rejects */
            sb_printf(b, "\\u%s", (unsigned char)s[2] == 0xbe ? "fffe" : "ffff");
            s += 2;
        } else
            sb_printf(b, "%c", ch);
    }
    sb_printf(b, "\"");
}

/* The value of key k in c, as YAML text that loads back to the same value. */
static void sb_value(struct sbuf *b, const struct hw_config *c, const struct key *k) {
    const void *p = cfield(c, k);
    char num[40];
    switch (k->type) {
    case KT_INT:
        sb_printf(b, "%d", *(const int *)p);
        break;
    case KT_INT64:
        sb_printf(b, "%" PRId64, *(const int64_t *)p);
        break;
    case KT_DOUBLE:
        fmt_double(num, sizeof(num), *(const double *)p);
        sb_printf(b, "%s", num);
        break;
    case KT_BOOL:
        sb_printf(b, "%s", *(const int *)p ? "true" : "false");
        break;
    case KT_ENUM:
        sb_printf(b, "%s", (const char *)p);
        break;
    case KT_STRING:
        sb_quoted(b, (const char *)p);
        break;
    case KT_LIST: {
        const struct cfg_list *lst = p;
        sb_printf(b, "[");
        for (int i = 0; i < lst->n; i++) {
            if (i)
                sb_printf(b, ", ");
            sb_quoted(b, lst->item[i]);
        }
        sb_printf(b, "]");
        break;
    }
    }
}

char *cfg_to_yaml(const struct hw_config *c) {
    struct sbuf b = {0};
    sb_printf(&b, "# headwise config, resolved: every key\n");
    for (int s = 0; s < N_SECTIONS; s++) {
        size_t n = strlen(sections[s]);
        sb_printf(&b, "%s:\n", sections[s]);
        for (int i = 0; i < N_KEYS; i++) {
            if (sec_len(&keys[i]) != n || strncmp(keys[i].path, sections[s], n))
                continue;
            sb_printf(&b, "  %s: ", key_name(&keys[i]));
            sb_value(&b, c, &keys[i]);
            sb_printf(&b, "\n");
        }
    }
    return b.p;
}

static const char *type_name(const struct key *k) {
    switch (k->type) {
    case KT_INT:
        return "int";
    case KT_INT64:
        return "int64";
    case KT_DOUBLE:
        return "number";
    case KT_BOOL:
        return "bool";
    case KT_STRING:
        return "string";
    case KT_ENUM:
        return "enum";
    case KT_LIST:
        return "list of strings";
    }
    return "?";
}

void cfg_write_docs(FILE *f) {
    struct hw_config d;
    cfg_defaults(&d);
    fputs("# Configuration reference\n"
          "\n"
          "<!-- Generated from the schema in core/cfg.c by `headwise config docs`; do not edit. "
          "-->\n"
          "\n"
          "A run is described by one YAML file with up to four sections, `model`, `train`, "
          "`data` and `run`.\n"
          "Every key is optional: a key that is not given keeps its default. Unknown keys, "
          "wrong types,\n"
          "out-of-range values and broken cross-field rules are errors, never warnings.\n"
          "\n"
          "```yaml\n"
          "base: small.yaml      # optional: load this file first\n"
          "model:\n"
          "  d_model: 256\n"
          "  mlp: gelu\n"
          "train:\n"
          "  lr: 1.0e-3\n"
          "data:\n"
          "  train: data/shard_train.h5\n"
          "```\n"
          "\n"
          "**`base:`** names another config file, relative to the directory of the file that "
          "contains it.\n"
          "The base is loaded first (it may have a `base:` of its own), then the keys of this "
          "file override\n"
          "it key by key; sections are merged, not replaced. A cycle of `base:` files is an "
          "error. A config\n"
          "stored inside a checkpoint is self-contained and may not use `base:`.\n"
          "\n"
          "**Overrides.** Arguments of the form `key.path=value` after the config file override "
          "single keys,\n"
          "in order, after every file is loaded; the rules below are checked after the last "
          "one:\n"
          "\n"
          "    headwise train cfg.yaml train.lr=1e-3 model.mlp=gelu\n"
          "\n"
          "The value is parsed as YAML, so `true`, `1e-3` and `\"a path with spaces\"` work, and "
          "a whole\n"
          "section can be given as a flow mapping: `model={d_model: 256, n_layers: 8}`.\n"
          "\n"
          "**Errors.** The first error stops loading and is reported as one line in compiler "
          "format, with\n"
          "1-based line and column:\n"
          "\n"
          "    configs/x.yaml:4:3: error: unknown key 'warmpu' in 'train' (did you mean "
          "'warmup'?)\n"
          "    configs/x.yaml:5:7: error: train.lr: 5 is out of range (0, 1]\n"
          "    <override 1>:1:13: error: train.steps: expected an integer, got 'ten'\n"
          "\n"
          "An error in a base file names that file. An override is named `<override N>` (N "
          "counts from 1).\n"
          "A cross-field error points at whichever key of the rule was set last (if none was, "
          "at line 1,\n"
          "column 1 of the config). Any configuration error makes `headwise` exit with code "
          "2.\n"
          "\n"
          "**Types.** `int`/`int64`: a decimal integer. `number`: a decimal number such as "
          "`0.5` or `3e-4`\n"
          "(no `inf`/`nan`). `bool`: `true` or `false`. Numbers and booleans must not be quoted "
          "(`\"10\"` is\n"
          "a string). `string`: any scalar; `\"\"` or an empty value is the empty string. "
          "`enum`: one of the\n"
          "listed words. Ranges use interval notation: `[a, b]` includes both ends, `(a, b]` "
          "excludes `a`.\n",
          f);
    for (int s = 0; s < N_SECTIONS; s++) {
        size_t n = strlen(sections[s]);
        fprintf(f, "\n## %s\n\n", sections[s]);
        fputs("| key | type | default | range / values | meaning |\n", f);
        fputs("|---|---|---|---|---|\n", f);
        for (int i = 0; i < N_KEYS; i++) {
            const struct key *k = &keys[i];
            struct sbuf b = {0};
            char range[128];
            if (sec_len(k) != n || strncmp(k->path, sections[s], n))
                continue;
            sb_value(&b, &d, k);
            if (k->type == KT_ENUM)
                fmt_vals(range, sizeof(range), k, " \\| ");
            else if (k->type == KT_BOOL)
                snprintf(range, sizeof(range), "true \\| false");
            else if (k->type == KT_STRING)
                snprintf(range, sizeof(range), "%s", k->nonempty ? "non-empty" : "");
            else if (k->type == KT_LIST)
                snprintf(range, sizeof(range), "at most %d items", CFG_LIST_MAX);
            else
                fmt_range(range, sizeof(range), k);
            fprintf(f, "| `%s` | %s | `%s` | %s | %s |\n", key_name(k), type_name(k), b.p, range,
                    k->doc);
            free(b.p);
        }
    }
    fputs("\n## Cross-field rules\n\nChecked after the base chain, the file and the overrides "
          "are applied:\n\n",
          f);
    for (size_t i = 0; i < sizeof(rules_doc) / sizeof(rules_doc[0]); i++)
        fprintf(f, "- %s\n", rules_doc[i]);
}
