/* datasets/data_cfg.h -- the config sections of the data readers: `data` (token shards, the
 * tokenizer, MultiFC and its split), `sft` (chat conversations, the template and the special
 * tokens of conditional SFT) and `rec` (the recommendation data and the rec model's sizes);
 * keys and rules in data_cfg.c. */
#ifndef HW_DATA_CFG_H
#define HW_DATA_CFG_H

#include "../core/cfg.h"

struct cfg_data {
    char train[CFG_PATH_MAX];     /* token shard (HDF5) for training */
    char val[CFG_PATH_MAX];       /* token shard for validation; "" = none */
    struct cfg_wlist sources;     /* instead of train: globs of shards mixed by weight */
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

extern const struct cfg_section cfg_section_data, cfg_section_sft, cfg_section_rec;

#endif /* HW_DATA_CFG_H */
