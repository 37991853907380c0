/* ckpt/hf_llama.c -- LLaMA-family Hugging Face directories <-> checkpoints (see hf_llama.h). */
#define _POSIX_C_SOURCE 200809L
#include "hf_llama.h"

#include "../config/config.h"
#include "../core/check.h"
#include "../core/fsutil.h"
#include "../core/log.h"
#include "../datasets/bpe.h"
#include "../model/gpt.h"
#include "../model/layer.h"
#include "../ops/ops.h"
#include "ckpt.h"
#include "ckpt_model.h"

#include <errno.h>
#include <glob.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PATH_CAP 4200

/* ---- names -------------------------------------------------------------------------------- */

static const char *const layer_names_[][2] = {
    {"attn_norm.weight", "input_layernorm.weight"},
    {"attn.wq", "self_attn.q_proj.weight"},
    {"attn.wk", "self_attn.k_proj.weight"},
    {"attn.wv", "self_attn.v_proj.weight"},
    {"attn.wo", "self_attn.o_proj.weight"},
    {"mlp_norm.weight", "post_attention_layernorm.weight"},
    {"mlp.w_gate", "mlp.gate_proj.weight"},
    {"mlp.w_up", "mlp.up_proj.weight"},
    {"mlp.w_down", "mlp.down_proj.weight"},
};
static const char *const global_names_[][2] = {
    {"tok_emb.weight", "model.embed_tokens.weight"},
    {"final_norm.weight", "model.norm.weight"},
    {"lm_head.weight", "lm_head.weight"},
};
#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

int hf_llama_name(const char *hw, char *out, size_t n) {
    for (size_t i = 0; i < N_OF(global_names_); i++)
        if (!strcmp(hw, global_names_[i][0]))
            return snprintf(out, n, "%s", global_names_[i][1]) < (int)n ? 0 : -1;
    int l, at = 0;
    if (sscanf(hw, "blocks.%d.%n", &l, &at) != 1 || at == 0)
        return -1;
    for (size_t i = 0; i < N_OF(layer_names_); i++)
        if (!strcmp(hw + at, layer_names_[i][0]))
            return snprintf(out, n, "model.layers.%d.%s", l, layer_names_[i][1]) < (int)n ? 0 : -1;
    return -1;
}

/* ---- config.json --------------------------------------------------------------------------- */

struct llama_cfg {
    int C, L, H, Hkv, F, V, max_seq, tied;
    double eps, theta, init_std;
    double rs_factor, rs_low, rs_high; /* rope_scaling llama3; rs_factor 0: none */
    int rs_orig;
};

/* an integer key in [lo, hi]; def < 0: required */
static int get_int_(const char *file, const json_t *root, const char *key, int def, int lo, int hi,
                    int *out, char *err) {
    const json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (def < 0)
            return hw_errf(err, HW_ECONFIG, "%s: %s: missing (an integer is required)", file, key);
        *out = def;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return hw_errf(err, HW_ECONFIG, "%s: %s: expected an integer in [%d, %d]", file, key, lo,
                       hi);
    *out = (int)json_integer_value(v);
    return 0;
}

static int get_num_(const char *file, const json_t *root, const char *key, double def, double *out,
                    char *err) {
    const json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_number(v) || !(json_number_value(v) > 0))
        return hw_errf(err, HW_ECONFIG, "%s: %s: expected a positive number", file, key);
    *out = json_number_value(v);
    return 0;
}

/* the features of LlamaForCausalLM that headwise's dense model does not have */
static int check_features_(const char *file, const json_t *root, char *err) {
    const json_t *arch = json_object_get(root, "architectures"),
                 *mt = json_object_get(root, "model_type");
    const char *a0 = json_is_array(arch) ? json_string_value(json_array_get(arch, 0)) : NULL;
    if ((arch && (!a0 || strcmp(a0, "LlamaForCausalLM") || json_array_size(arch) != 1)) ||
        (mt && (!json_is_string(mt) || strcmp(json_string_value(mt), "llama"))))
        return hw_errf(err, HW_ECONFIG,
                       "%s: architectures: %s is not supported (LlamaForCausalLM, model_type "
                       "llama)",
                       file,
                       a0                   ? a0
                       : json_is_string(mt) ? json_string_value(mt)
                                            : "?");
    const json_t *act = json_object_get(root, "hidden_act");
    if (act && (!json_is_string(act) || strcmp(json_string_value(act), "silu")))
        return hw_errf(err, HW_ECONFIG, "%s: hidden_act: only \"silu\" (SwiGLU) is supported",
                       file);
    static const char *const off[] = {"attention_bias", "mlp_bias"};
    for (int i = 0; i < 2; i++) {
        const json_t *b = json_object_get(root, off[i]);
        if (b && !json_is_false(b) && !json_is_null(b))
            return hw_errf(err, HW_ECONFIG, "%s: %s: biases are not supported (false)", file,
                           off[i]);
    }
    return 0;
}

/* rope_scaling: null, or LLaMA 3.1's {"rope_type": "llama3", factor, low_freq_factor,
 * high_freq_factor, original_max_position_embeddings} */
static int rope_scaling_(const char *file, const json_t *root, struct llama_cfg *lc, char *err) {
    const json_t *rs = json_object_get(root, "rope_scaling");
    lc->rs_factor = 0;
    if (!rs || json_is_null(rs))
        return 0;
    const json_t *ty = json_object_get(rs, "rope_type");
    if (!ty)
        ty = json_object_get(rs, "type");
    if (!json_is_object(rs) || !json_is_string(ty) || strcmp(json_string_value(ty), "llama3"))
        return hw_errf(err, HW_ECONFIG,
                       "%s: rope_scaling: only rope_type \"llama3\" (LLaMA 3.1) is supported, got "
                       "%s",
                       file, json_is_string(ty) ? json_string_value(ty) : "?");
    int rc = get_num_(file, rs, "factor", -1, &lc->rs_factor, err);
    if (!rc)
        rc = get_num_(file, rs, "low_freq_factor", -1, &lc->rs_low, err);
    if (!rc)
        rc = get_num_(file, rs, "high_freq_factor", -1, &lc->rs_high, err);
    if (!rc)
        rc = get_int_(file, rs, "original_max_position_embeddings", -1, 1, 1 << 24, &lc->rs_orig,
                      err);
    if (!rc && (lc->rs_factor < 1 || lc->rs_low <= 0 || lc->rs_high <= lc->rs_low))
        rc = hw_errf(err, HW_ECONFIG,
                     "%s: rope_scaling: expected factor >= 1 and 0 < low_freq_factor < "
                     "high_freq_factor",
                     file);
    return rc;
}

static int read_config_(const char *dir, struct llama_cfg *lc, char *err) {
    char file[PATH_CAP];
    snprintf(file, sizeof(file), "%.4000s/config.json", dir);
    size_t n;
    char *text = fs_read_all(file, &n, err);
    if (!text)
        return HW_EIO;
    json_error_t je;
    json_t *root = json_loadb(text, n, 0, &je);
    free(text);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return hw_errf(err, HW_EFORMAT, "%s:%d:%d: error: %s", file, root ? 1 : je.line,
                       root ? 1 : je.column, root ? "expected a JSON object" : je.text);
    }
    int rc = check_features_(file, root, err), hd = 0, tied = 0;
    if (!rc)
        rc = rope_scaling_(file, root, lc, err);
    const json_t *tw = json_object_get(root, "tie_word_embeddings");
    if (!rc && tw && !json_is_boolean(tw))
        rc = hw_errf(err, HW_ECONFIG, "%s: tie_word_embeddings: expected true or false", file);
    tied = json_is_true(tw);
    if (!rc)
        rc = get_int_(file, root, "hidden_size", -1, 8, 65536, &lc->C, err);
    if (!rc)
        rc = get_int_(file, root, "num_hidden_layers", -1, 1, GPT_MAX_LAYERS, &lc->L, err);
    if (!rc)
        rc = get_int_(file, root, "num_attention_heads", -1, 1, 1024, &lc->H, err);
    if (!rc)
        rc = get_int_(file, root, "num_key_value_heads", lc->H, 1, 1024, &lc->Hkv, err);
    if (!rc)
        rc = get_int_(file, root, "intermediate_size", -1, 1, 1048576, &lc->F, err);
    if (!rc)
        rc = get_int_(file, root, "vocab_size", -1, 1, 16777216, &lc->V, err);
    if (!rc)
        rc = get_int_(file, root, "max_position_embeddings", 2048, 2, 1048576, &lc->max_seq, err);
    if (!rc)
        rc = get_int_(file, root, "head_dim", 0, 0, 65536, &hd, err);
    if (!rc)
        rc = get_num_(file, root, "rms_norm_eps", 1e-6, &lc->eps, err);
    if (!rc)
        rc = get_num_(file, root, "rope_theta", 10000.0, &lc->theta, err);
    if (!rc)
        rc = get_num_(file, root, "initializer_range", 0.02, &lc->init_std, err);
    if (!rc && (lc->C % lc->H || (hd && hd * lc->H != lc->C)))
        rc = hw_errf(err, HW_ECONFIG,
                     "%s: head_dim: %d heads of %d do not make hidden_size %d (headwise needs "
                     "head_dim = hidden_size / num_attention_heads)",
                     file, lc->H, hd ? hd : lc->C / lc->H, lc->C);
    if (!rc && lc->H % lc->Hkv)
        rc = hw_errf(err, HW_ECONFIG,
                     "%s: num_key_value_heads: %d does not divide num_attention_heads %d", file,
                     lc->Hkv, lc->H);
    lc->tied = tied;
    json_decref(root);
    return rc;
}

/* headwise's config for lc: the model section, and a train.seq_len the RoPE table holds */
static int llama_hw_config_(const char *dir, const struct llama_cfg *lc, struct hw_config *cfg,
                            char *err) {
    char yaml[1400], rope[400] = "", name[PATH_CAP];
    if (lc->rs_factor > 0)
        snprintf(rope, sizeof(rope),
                 "  rope_scaling:\n    kind: llama3\n    factor: %.17g\n"
                 "    low_freq_factor: %.17g\n    high_freq_factor: %.17g\n"
                 "    original_max_seq: %d\n",
                 lc->rs_factor, lc->rs_low, lc->rs_high, lc->rs_orig);
    snprintf(yaml, sizeof(yaml),
             "model:\n  d_model: %d\n  n_layers: %d\n  n_heads: %d\n  n_kv_heads: %d\n"
             "  vocab: %d\n  d_ff: %d\n  max_seq: %d\n  mlp: swiglu\n  tied_embeddings: %s\n"
             "  rope_theta: %.17g\n  norm_eps: %.17g\n  init_std: %.17g\n%s"
             "train:\n  seq_len: %d\n",
             lc->C, lc->L, lc->H, lc->Hkv, lc->V, lc->F, lc->max_seq, lc->tied ? "true" : "false",
             lc->theta, lc->eps, lc->init_std > 1 ? 0.02 : lc->init_std, rope,
             lc->max_seq < 256 ? lc->max_seq : 256);
    snprintf(name, sizeof(name), "%.4000s/config.json (as headwise's model section)", dir);
    return cfg_load_string(cfg, yaml, name, 0, NULL, err);
}

/* ---- safetensors sources -------------------------------------------------------------------- */

struct sources {
    int n;
    struct st_file *f;
};

static void sources_free_(struct sources *s) {
    for (int i = 0; i < s->n; i++)
        st_close(&s->f[i]);
    free(s->f);
    s->n = 0;
    s->f = NULL;
}

static int add_source_(struct sources *s, const char *path, char *err) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->f[i].path, path))
            return 0;
    s->f = HW_REALLOC(s->f, sizeof(*s->f) * (size_t)(s->n + 1));
    int rc = st_open(&s->f[s->n], path, err);
    if (!rc)
        s->n++;
    return rc;
}

/* the shards a model.safetensors.index.json names, in order of first mention */
static int index_sources_(const char *dir, const char *index, struct sources *s, char *err) {
    json_error_t je;
    json_t *root = json_load_file(index, 0, &je);
    const json_t *wm = root ? json_object_get(root, "weight_map") : NULL;
    if (!json_is_object(wm)) {
        json_decref(root);
        return hw_errf(err, HW_EFORMAT, "%s:%d:%d: error: %s", index, root ? 1 : je.line,
                       root ? 1 : je.column, root ? "expected {\"weight_map\": {...}}" : je.text);
    }
    const char *key;
    json_t *v;
    int rc = 0;
    json_object_foreach((json_t *)wm, key, v) {
        char path[PATH_CAP];
        const char *fn = json_string_value(v);
        if (!fn || strchr(fn, '/')) {
            rc = hw_errf(err, HW_EFORMAT, "%s: weight_map.%s: expected a file name in %s", index,
                         key, dir);
            break;
        }
        snprintf(path, sizeof(path), "%.4000s/%s", dir, fn);
        if ((rc = add_source_(s, path, err)))
            break;
    }
    json_decref(root);
    return rc;
}

static int open_sources_(const char *dir, struct sources *s, char *err) {
    char path[PATH_CAP];
    snprintf(path, sizeof(path), "%.4000s/model.safetensors.index.json", dir);
    if (access(path, F_OK) == 0)
        return index_sources_(dir, path, s, err);
    snprintf(path, sizeof(path), "%.4000s/*.safetensors", dir);
    glob_t g;
    int rc = glob(path, 0, NULL, &g);
    if (rc != 0) {
        globfree(&g);
        return hw_errf(err, HW_EIO, "%s: no *.safetensors file", dir);
    }
    rc = 0;
    for (size_t i = 0; i < g.gl_pathc && !rc; i++)
        rc = add_source_(s, g.gl_pathv[i], err);
    globfree(&g);
    return rc;
}

static const struct st_tensor *find_(const struct sources *s, const char *name, int *file) {
    for (int i = 0; i < s->n; i++) {
        const struct st_tensor *t = st_find(&s->f[i], name);
        if (t) {
            *file = i;
            return t;
        }
    }
    return NULL;
}

/* every parameter from its tensor; every tensor used (but rotary caches and a tied head) */
static int fill_params_(const struct sources *s, struct gpt *m, char *err) {
    for (int i = 0; i < m->n_params; i++) {
        const struct param *p = &m->params[i];
        char hf[256];
        int fi = 0;
        HW_ASSERT(hf_llama_name(p->name, hf, sizeof(hf)) == 0);
        const struct st_tensor *t = find_(s, hf, &fi);
        if (!t)
            return hw_errf(err, HW_EFORMAT, "%s: tensor '%s' is missing (for %s)",
                           s->n ? s->f[0].path : "?", hf, p->name);
        int same = t->ndim == p->ndim;
        for (int k = 0; same && k < p->ndim; k++)
            same = t->shape[k] == p->shape[k];
        if (!same)
            return hw_errf(err, HW_EFORMAT,
                           "%s: tensor '%s': shape does not match config.json (%lld x %lld "
                           "expected)",
                           s->f[fi].path, hf, (long long)p->shape[0],
                           (long long)(p->ndim > 1 ? p->shape[1] : 1));
        st_to_f32(t, m->param_mem + p->offset);
    }
    for (int i = 0; i < s->n; i++)
        for (int j = 0; j < s->f[i].n; j++) {
            const char *nm = s->f[i].t[j].name;
            char hw[256];
            int known = 0;
            for (int k = 0; k < m->n_params && !known; k++)
                known = hf_llama_name(m->params[k].name, hw, sizeof(hw)) == 0 && !strcmp(hw, nm);
            size_t l = strlen(nm), sl = strlen(".rotary_emb.inv_freq");
            int skip = (l > sl && !strcmp(nm + l - sl, ".rotary_emb.inv_freq")) ||
                       (m->c.tied && !strcmp(nm, "lm_head.weight"));
            if (!known && !skip)
                return hw_errf(err, HW_EFORMAT,
                               "%s: tensor '%s' has no place in this LlamaForCausalLM (a "
                               "feature config.json does not declare?)",
                               s->f[i].path, nm);
        }
    return 0;
}

/* ---- import ------------------------------------------------------------------------------- */

/* dir/tokenizer.json when there is one (it must load and fit the vocabulary), else the byte
 * tokenizer */
static int import_tokenizer_(const char *dir, int vocab, struct bpe *tok, char *err) {
    char path[PATH_CAP];
    snprintf(path, sizeof(path), "%.4000s/tokenizer.json", dir);
    bpe_init(tok);
    if (access(path, F_OK) != 0) {
        log_info("import-hf: %s has no tokenizer.json: the checkpoint holds the 256-byte "
                 "tokenizer (give the model's tokenizer to data prepare --tokenizer)",
                 dir);
        return 0;
    }
    bpe_free(tok);
    int rc = bpe_load(tok, path, err);
    if (!rc && bpe_vocab_size(tok) > vocab)
        rc = hw_errf(err, HW_ECONFIG, "%s: %d tokens do not fit config.json's vocab_size %d", path,
                     bpe_vocab_size(tok), vocab);
    return rc ? HW_ECONFIG : 0;
}

static int save_imported_(const struct dist *d, const char *out_dir, struct gpt *m,
                          const struct hw_config *cfg, const struct bpe *tok, char *out_path,
                          char *err) {
    struct ckpt_tensor *t = HW_CALLOC((size_t)m->n_params, sizeof(*t));
    for (int i = 0; i < m->n_params; i++) {
        const struct param *p = &m->params[i];
        t[i].name = p->name;
        t[i].ndim = p->ndim;
        for (int k = 0; k < p->ndim; k++)
            t[i].shape[k] = t[i].count[k] = p->shape[k];
        t[i].write = d->rank == 0;
        t[i].data = m->param_mem + p->offset;
    }
    char sig[256];
    gpt_config_signature(&m->c, sig, sizeof(sig));
    struct ckpt_meta meta;
    memset(&meta, 0, sizeof(meta));
    meta.config_yaml = cfg_to_yaml(cfg);
    meta.tokenizer_json = bpe_to_json(tok);
    meta.model_sig = sig;
    struct ckpt_group g = {"model", t, m->n_params};
    int rc = ckpt_save(d, out_dir, 0, &g, 1, &meta, 0, out_path, err);
    if (!rc && d->rank == 0) {
        char path[PATH_CAP];
        snprintf(path, sizeof(path), "%.4000s/config.yaml", out_dir);
        rc = fs_write_atomic(path, meta.config_yaml, strlen(meta.config_yaml), err);
    }
    free(meta.config_yaml);
    free(meta.tokenizer_json);
    free(t);
    return rc;
}

int hf_import(const struct dist *d, const char *dir, const char *out_dir, int max_seq,
              char *out_path, char *err) {
    struct llama_cfg lc;
    char latest[PATH_CAP];
    snprintf(latest, sizeof(latest), "%.4000s/latest", out_dir);
    if (access(latest, F_OK) == 0)
        return hw_errf(err, HW_ECONFIG,
                       "%s: already holds checkpoints (import into a new "
                       "directory)",
                       out_dir);
    int rc = read_config_(dir, &lc, err);
    if (rc)
        return rc;
    if (max_seq > 0)
        lc.max_seq = max_seq;
    struct hw_config *cfg = HW_MALLOC(sizeof(*cfg));
    struct bpe tok;
    struct gpt m;
    struct sources src = {0};
    memset(&m, 0, sizeof(m));
    bpe_init(&tok);
    if (!(rc = llama_hw_config_(dir, &lc, cfg, err))) {
        bpe_free(&tok);
        rc = import_tokenizer_(dir, lc.V, &tok, err);
    }
    const char *why = NULL;
    const struct ops *cpu = ops_by_name("cpu", &why);
    if (!rc) {
        struct gpt_config gc;
        gpt_config_from_cfg(&gc, &cfg->model, lc.V);
        rc = gpt_build(&m, &gc, cpu, NULL, err);
    }
    if (!rc)
        rc = open_sources_(dir, &src, err);
    if (!rc)
        rc = fill_params_(&src, &m, err);
    sources_free_(&src);
    if (!rc)
        rc = save_imported_(d, out_dir, &m, cfg, &tok, out_path, err);
    gpt_free(&m);
    bpe_free(&tok);
    free(cfg);
    return rc;
}

/* ---- export ------------------------------------------------------------------------------- */

/* what a LlamaForCausalLM cannot hold, as the config key that asks for it */
static int check_exportable_(const char *file, const struct gpt_config *c, char *err) {
    const char *key = NULL;
    if (c->mlp != GPT_MLP_SWIGLU)
        key = "model.mlp (gelu; LLaMA is swiglu)";
    else if (c->dare)
        key = "model.embedding (dare)";
    else if (c->n_cls)
        key = "a classifier head (train.task classify)";
    for (int l = 0; l < c->L && !key; l++) {
        if (c->attn[l] != LK_MHA)
            key = "model.attention (moh)";
        else if (c->mem[l])
            key = "model.memory.layers (Titans memory)";
        else if (c->s2[l])
            key = "model.sparsity (s2)";
    }
    return key ? hw_errf(err, HW_ECONFIG,
                         "%s: %s has no LlamaForCausalLM equivalent (export-hf writes dense/GQA "
                         "models)",
                         file, key)
               : 0;
}

static json_t *export_config_json_(const struct gpt_config *c, const struct hw_config *cfg,
                                   const struct bpe *tok, enum st_dtype dtype) {
    static const char *const torch_dtype[] = {"float32", "float16", "bfloat16"};
    int32_t eot = bpe_eot_id(tok);
    json_t *j = json_pack(
        "{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:n, s:b, s:s, s:b, "
        "s:f, s:b, s:f, s:s, s:b}",
        "architectures", "LlamaForCausalLM", "model_type", "llama", "hidden_size", c->C,
        "intermediate_size", c->F, "num_hidden_layers", c->L, "num_attention_heads", c->H,
        "num_key_value_heads", c->Hkv, "head_dim", c->hd, "vocab_size", c->V,
        "max_position_embeddings", c->max_T, "rms_norm_eps", cfg->model.norm_eps, "rope_theta",
        cfg->model.rope_theta, "rope_scaling", "tie_word_embeddings", c->tied, "hidden_act", "silu",
        "attention_bias", 0, "attention_dropout", 0.0, "mlp_bias", 0, "initializer_range",
        cfg->model.init_std, "torch_dtype", torch_dtype[dtype], "use_cache", 1);
    if (c->rope_scale.factor > 0)
        json_object_set_new(
            j, "rope_scaling",
            json_pack("{s:s, s:f, s:f, s:f, s:i}", "rope_type", "llama3", "factor",
                      c->rope_scale.factor, "low_freq_factor", c->rope_scale.low_freq_factor,
                      "high_freq_factor", c->rope_scale.high_freq_factor,
                      "original_max_position_embeddings", (int)c->rope_scale.original_max_seq));
    json_object_set_new(j, "bos_token_id", eot >= 0 ? json_integer(eot) : json_null());
    json_object_set_new(j, "eos_token_id", eot >= 0 ? json_integer(eot) : json_null());
    return j;
}

/* config.json, model.safetensors and tokenizer.json into dir */
static int export_files_(const char *dir, const struct gpt *m, const struct hw_config *cfg,
                         const struct bpe *tok, enum st_dtype dtype, char *err) {
    char path[PATH_CAP];
    snprintf(path, sizeof(path), "%.4000s/config.json", dir);
    json_t *j = export_config_json_(&m->c, cfg, tok, dtype);
    char *text = json_dumps(j, JSON_INDENT(2));
    json_decref(j);
    int rc = fs_write_atomic(path, text, strlen(text), err);
    free(text);
    struct st_out *t = HW_CALLOC((size_t)m->n_params, sizeof(*t));
    char(*names)[256] = HW_MALLOC(256 * (size_t)m->n_params);
    for (int i = 0; i < m->n_params && !rc; i++) {
        const struct param *p = &m->params[i];
        HW_ASSERT(hf_llama_name(p->name, names[i], 256) == 0);
        t[i].name = names[i];
        t[i].ndim = p->ndim;
        for (int k = 0; k < p->ndim; k++)
            t[i].shape[k] = p->shape[k];
        t[i].data = m->param_mem + p->offset;
    }
    snprintf(path, sizeof(path), "%.4000s/model.safetensors", dir);
    if (!rc)
        rc = st_write(path, t, m->n_params, dtype, err);
    free(t);
    free(names);
    if (!rc && bpe_is_hf(tok)) {
        char *tj = bpe_to_json(tok);
        snprintf(path, sizeof(path), "%.4000s/tokenizer.json", dir);
        rc = fs_write_atomic(path, tj, strlen(tj), err);
        free(tj);
    }
    return rc;
}

static void remove_dir_(const char *dir) {
    static const char *const files[] = {"config.json", "model.safetensors", "tokenizer.json"};
    char path[PATH_CAP];
    for (size_t i = 0; i < N_OF(files); i++) {
        snprintf(path, sizeof(path), "%.4000s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

int hf_export(const struct dist *d, const char *ckpt, const char *out_dir, enum st_dtype dtype,
              char *err) {
    struct stat sb;
    if (stat(out_dir, &sb) == 0)
        return hw_errf(err, HW_ECONFIG, "%s: exists (export-hf writes a new directory)", out_dir);
    const char *why = NULL;
    const struct ops *cpu = ops_by_name("cpu", &why);
    struct hw_config *cfg = HW_MALLOC(sizeof(*cfg));
    struct bpe tok;
    struct gpt m;
    memset(&m, 0, sizeof(m));
    char file[CKPT_PATH_LEN], tmp[PATH_CAP];
    int rc = ckpt_load_model(d, ckpt, cpu, cfg, &tok, &m, NULL, file, err);
    if (!rc)
        rc = check_exportable_(file, &m.c, err);
    if (!rc && d->rank == 0) {
        snprintf(tmp, sizeof(tmp), "%.4000s.tmp-%ld", out_dir, (long)getpid());
        rc = fs_mkdirs(tmp, err);
        if (!rc)
            rc = export_files_(tmp, &m, cfg, &tok, dtype, err);
        if (!rc && rename(tmp, out_dir) != 0)
            rc = hw_errf(err, HW_EIO, "%s: cannot rename into place: %s", out_dir, strerror(errno));
        if (rc)
            remove_dir_(tmp);
    }
    gpt_free(&m);
    bpe_free(&tok);
    free(cfg);
    return rc;
}
