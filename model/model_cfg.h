/* model/model_cfg.h -- the `model` section of the config (the transformer's shape and the
 * options of its layer kinds: attention, MoH, S2 sparsity, Titans memory, embeddings, the rec
 * family) and the values derived from it. The keys, their defaults and ranges, and the rules
 * that protect the model's code (head shapes, head and context sharding, the kinds' options)
 * are in model_cfg.c. */
#ifndef HW_MODEL_CFG_H
#define HW_MODEL_CFG_H

#include "../core/cfg.h"

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
    struct cfg_rope_scaling {
        char kind[CFG_NAME_MAX]; /* "none" | "llama3" */
        double factor, low_freq_factor, high_freq_factor;
        int original_max_seq;
    } rope_scaling;
    double norm_eps;
    double init_std; /* std of weight init; output projections are scaled by 1/sqrt(2L) */
    struct cfg_attention attention;
    struct cfg_moh moh;
    struct cfg_sparsity sparsity;
    char family[CFG_NAME_MAX];    /* "gpt" | "rec" (DARE/TWIN recommendation model) */
    char embedding[CFG_NAME_MAX]; /* "twin" (one table set) | "dare" | "twin_proj" */
    struct cfg_memory memory;
};

extern const struct cfg_section cfg_section_model;

/* Derived values. */
/* 1 when layer l is a MoH layer (model.attention), an S2-sparse layer (model.sparsity). */
int cfg_layer_moh(const struct cfg_model *m, int l);
/* The memory kind of layer l (model.memory.layers): 0 none, 1 mal, 2 mag, 3 memory, 4 mac. */
int cfg_layer_memory(const struct cfg_model *m, int l);
int cfg_layer_s2(const struct cfg_model *m, int l);
int cfg_kv_heads(const struct cfg_model *m);
int cfg_d_ff(const struct cfg_model *m);

#endif /* HW_MODEL_CFG_H */
