/* datasets/data_cfg.c -- the `data`, `sft` and `rec` sections: their keys and the rules of the
 * data readers (see data_cfg.h). */
#include "data_cfg.h"

#include "../core/check.h"

#include <math.h>
#include <stdio.h>

#define BIG 1000000000LL

static const char *const sft_loss_vals[] = {"response", "all", NULL};
static const char *const recdata_vals[] = {"movielens", "taobao", "synth", NULL};

#undef CFG_S
#undef CFG_SEC
#define CFG_S   struct cfg_data
#define CFG_SEC data
static const struct cfg_key data_keys[] = {
    CFG_STRING(train, "", 0, "token shard (HDF5) for training"),
    CFG_STRING(val, "", 0, "token shard for validation; \"\" = none"),
    CFG_WLIST(sources,
              "instead of data.train: shard globs mixed by weight, e.g. [{path: web/train_*.h5, "
              "weight: 3}, {path: code/train_*.h5, weight: 1}] (docs/data.md)"),
    CFG_STRING(tokenizer, "", 0, "tokenizer JSON; \"\" = the one stored in the shard's directory"),
    CFG_STRING(multifc, "", 0, "train.task classify: the MultiFC staged CSV or official TSV"),
    CFG_DBL(val_frac, 0.1, 0.0, 0, 1.0, 1,
            "classify: validation part of the seeded stratified split (per domain and label)"),
    CFG_DBL(test_frac, 0.2, 0.0, 0, 1.0, 1,
            "classify: held-out test part of the same split (never trained on)"),
};
#undef CFG_S
#undef CFG_SEC
#define CFG_S   struct cfg_sft
#define CFG_SEC sft
static const struct cfg_key sft_keys[] = {
    CFG_STRING(train, "", 0, "train.task sft: JSONL conversations (ShareGPT or RoleMRC schema)"),
    CFG_STRING(val, "", 0, "JSONL conversations for the validation loss; \"\" = none"),
    CFG_ENUM(loss, "response", sft_loss_vals,
             "response: loss on assistant turns only (content and end of turn); all: on every "
             "token (the reference repo's configuration)"),
    CFG_BOOL(pack, 1,
             "pack whole conversations into each row (no attention across them); false: one "
             "per row, padded"),
    CFG_STRING(indicator, "[IND]", 0,
               "the context-dependency indicator, added to the vocabulary as a special token; "
               "\"\" = none"),
    CFG_LIST(add_tokens, "further special tokens to add to the vocabulary (e.g. role tags)"),
    CFG_STRING(tpl_system, "<|system|>\n", 0, "chat template: system role tag"),
    CFG_STRING(tpl_user, "<|user|>\n", 0, "chat template: user role tag"),
    CFG_STRING(tpl_assistant, "<|assistant|>\n", 0, "chat template: assistant role tag"),
    CFG_STRING(tpl_end, "<|end|>\n", 0, "chat template: written after every message"),
    CFG_STRING(tpl_bos, "", 0, "chat template: written once at the start"),
    CFG_INT(score_layer, -1, -1, 1024,
            "csft-score: the layer whose attention scores a turn; -1 = n_layers / 2"),
    CFG_DBL(beta, 0.6, 0.0, 0, INFINITY, 1,
            "csft-score: a response turn scoring > beta gets its user turn tagged; >= 1 tags "
            "nothing")};
#undef CFG_S
#undef CFG_SEC
#define CFG_S   struct cfg_rec
#define CFG_SEC rec
static const struct cfg_key rec_keys[] = {
    CFG_ENUM(data, "synth", recdata_vals,
             "rec data: movielens (u.data + u.item), taobao (UserBehavior CSV), synth (generated)"),
    CFG_STRING(path, "", 0, "movielens: directory holding u.data and u.item; taobao: the CSV"),
    CFG_INT(item_dim, 16, 1, 4096, "representation item embedding dim"),
    CFG_INT(cat_dim, 16, 1, 4096, "representation category embedding dim"),
    CFG_INT(time_dim, 16, 1, 4096, "representation time/position embedding dim"),
    CFG_INT(attn_item_dim, 0, 0, 4096, "dare: attention item embedding dim; 0 = rec.item_dim"),
    CFG_INT(attn_cat_dim, 0, 0, 4096, "dare: attention category embedding dim; 0 = rec.cat_dim"),
    CFG_INT(attn_time_dim, 0, 0, 4096, "dare: attention time embedding dim; 0 = rec.time_dim"),
    CFG_INT(max_len, 200, 1, 100000, "behaviour history length L (older ones are dropped)"),
    CFG_INT(top_k, 20, 1, 100000, "GSU soft search: behaviours kept for the ESU attention"),
    CFG_INT(hidden1, 200, 1, 65536, "first hidden width of the main and auxiliary MLPs"),
    CFG_INT(hidden2, 80, 1, 65536, "second hidden width of the main MLP"),
    CFG_BOOL(aux_loss, 1, "auxiliary loss: attention over the whole history, its own MLP"),
    CFG_DBL(l2, 1e-6, 0.0, 0, 1.0, 0,
            "explicit L2 on the parameters that are neither biases nor embeddings"),
    CFG_INT(negatives, 2, 1, 100, "negatives per positive, sampled by item frequency"),
    CFG_INT(train_targets, 19, 1, 100000, "training targets per user: positions -3, -8, -13, ..."),
    CFG_INT(min_hist, 1, 1, 100000, "targets with fewer history behaviours are skipped"),
    CFG_INT(epochs, 0, 0, 100000,
            "passes over the training samples (sets train.steps); 0 = use train.steps"),
    CFG_INT(synth_users, 2000, 2, 10000000, "synth: users"),
    CFG_INT(synth_items, 1000, 10, 100000000, "synth: items"),
    CFG_INT(synth_cats, 20, 2, 1000000, "synth: categories"),
    CFG_DBL(table_budget_mb, 0.0, 0.0, 0, INFINITY, 1,
            "per-rank memory budget (MiB) for this rank's embedding-table rows with their "
            "gradients and AdamW moments; a larger shard is refused before allocating (run more "
            "ranks); 0 = no limit")};

/* the seeded stratified split of the one labelled MultiFC file */
static int validate(const struct cfg_check *chk, char *err) {
    const struct cfg_data *d = cfg_section_of(chk, "data");
    if (d->train[0] && d->sources.n)
        return cfg_rule_error(chk, "data.sources", "data.train",
                              "give data.train or data.sources, not both",
                              "give data.train or data.sources, not both", err);
    if (d->val_frac + d->test_frac >= 1.0)
        return cfg_rule_error(chk, "data.test_frac", "data.val_frac",
                              "val_frac + test_frac must leave a training part (< 1)",
                              "val_frac + test_frac must leave a training part (< 1)", err);
    return 0;
}

static const char *const rules_doc[] = {
    "`data.train` and `data.sources` are not both given.",
    "`data.val_frac + data.test_frac` < 1.",
};

const struct cfg_section cfg_section_data = {
    .name = "data",
    .keys = data_keys,
    .n_keys = (int)(sizeof(data_keys) / sizeof(data_keys[0])),
    .validate = validate,
    .rules_doc = rules_doc,
    .n_rules = 2,
};

const struct cfg_section cfg_section_sft = {
    .name = "sft",
    .keys = sft_keys,
    .n_keys = (int)(sizeof(sft_keys) / sizeof(sft_keys[0])),
};

const struct cfg_section cfg_section_rec = {
    .name = "rec",
    .keys = rec_keys,
    .n_keys = (int)(sizeof(rec_keys) / sizeof(rec_keys[0])),
};
