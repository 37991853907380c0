/* datasets/sft.c -- SFT conversations: JSONL reader, role-labelled tokenisation, indicator
 * tagging, packing into rows (see sft.h). */
#define _POSIX_C_SOURCE 200809L
#include "sft.h"

#include "../core/check.h"
#include "../core/fsutil.h"
#include "../core/interrupt.h"
#include "../core/rng.h"
#include "json_kind.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------------------------------ */
/* reading */

/* ShareGPT speaker names and chat roles -> "system" / "user" / "assistant", or NULL. */
static const char *role_of_(const char *from) {
    static const char *const user[] = {"human", "user", NULL};
    static const char *const asst[] = {"gpt",  "assistant", "chatgpt", "bard",
                                       "bing", "model",     NULL};
    for (int i = 0; user[i]; i++)
        if (!strcasecmp(from, user[i]))
            return "user";
    for (int i = 0; asst[i]; i++)
        if (!strcasecmp(from, asst[i]))
            return "assistant";
    if (!strcasecmp(from, "system"))
        return "system";
    return NULL;
}

/* The first of keys k1, k2 present in obj (its name in *which), or NULL. */
static json_t *get2_(json_t *obj, const char *k1, const char *k2, const char **which) {
    json_t *v = json_object_get(obj, k1);
    *which = k1;
    if (!v && k2) {
        v = json_object_get(obj, k2);
        *which = k2;
    }
    return v;
}

static int parse_conv_(json_t *root, const char *path, int line, struct sft_conv *c, char *err) {
    if (!json_is_object(root))
        return hw_errf(err, HW_EFORMAT, "%s:%d: error: expected a JSON object, got %s", path, line,
                       json_kind(root));
    const char *arr_key;
    json_t *arr = get2_(root, "conversations", "messages", &arr_key);
    json_t *ref = NULL;
    c->schema = SFT_SCHEMA_SHAREGPT;
    if (!arr) {
        arr = json_object_get(root, "question");
        arr_key = "question";
        c->schema = SFT_SCHEMA_QUESTION;
        if (!arr)
            return hw_errf(err, HW_EFORMAT,
                           "%s:%d: error: missing key 'conversations' (ShareGPT) or "
                           "'question' (RoleMRC)",
                           path, line);
        ref = json_object_get(root, "reference");
        if (!ref || !json_is_string(ref))
            return hw_errf(err, HW_EFORMAT,
                           "%s:%d: error: key 'reference' must be a string, got %s", path, line,
                           ref ? json_kind(ref) : "nothing");
    }
    if (!json_is_array(arr) || json_array_size(arr) == 0)
        return hw_errf(err, HW_EFORMAT, "%s:%d: error: key '%s' must be a non-empty array, got %s",
                       path, line, arr_key, json_is_array(arr) ? "an empty array" : json_kind(arr));
    size_t n = json_array_size(arr);
    if (n > 100000)
        return hw_errf(err, HW_EFORMAT, "%s:%d: error: '%s' has %zu messages", path, line, arr_key,
                       n);
    int nm = (int)n + (ref ? 1 : 0);
    c->msgs = HW_CALLOC((size_t)nm, sizeof(*c->msgs));
    c->holder = HW_CALLOC((size_t)nm, sizeof(*c->holder));
    c->key = HW_CALLOC((size_t)nm, sizeof(*c->key));
    c->n_msgs = nm;
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(arr, i);
        if (!json_is_object(m))
            return hw_errf(err, HW_EFORMAT, "%s:%d: error: %s[%zu] must be an object, got %s", path,
                           line, arr_key, i, json_kind(m));
        const char *rk, *tk;
        json_t *r = get2_(m, "from", "role", &rk), *t = get2_(m, "value", "content", &tk);
        if (!r || !json_is_string(r))
            return hw_errf(err, HW_EFORMAT,
                           "%s:%d: error: %s[%zu]: key 'from' or 'role' must be a string, got %s",
                           path, line, arr_key, i, r ? json_kind(r) : "nothing");
        if (!t || !json_is_string(t))
            return hw_errf(err, HW_EFORMAT,
                           "%s:%d: error: %s[%zu]: key 'value' or 'content' must be a string, got "
                           "%s",
                           path, line, arr_key, i, t ? json_kind(t) : "nothing");
        const char *role = role_of_(json_string_value(r));
        if (!role)
            return hw_errf(err, HW_EFORMAT,
                           "%s:%d: error: %s[%zu]: unknown role '%.40s' (expected human/user, "
                           "gpt/assistant or system)",
                           path, line, arr_key, i, json_string_value(r));
        c->msgs[i].role = role;
        c->msgs[i].content = json_string_value(t);
        c->holder[i] = m;
        c->key[i] = tk;
    }
    if (ref) {
        c->msgs[n].role = "assistant";
        c->msgs[n].content = json_string_value(ref);
        c->holder[n] = root;
        c->key[n] = "reference";
    }
    c->line = line;
    c->root = root;
    return 0;
}

static int blank_(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return 0;
    return 1;
}

static void conv_free_(struct sft_conv *c) {
    free(c->msgs);
    free(c->holder);
    free(c->key);
    json_decref(c->root);
    memset(c, 0, sizeof(*c));
}

int sft_load(struct sft_data *d, const char *path, char *err) {
    memset(d, 0, sizeof(*d));
    size_t len;
    char *data = fs_read_all(path, &len, err);
    if (!data)
        return HW_EIO;
    int rc = 0, cap = 0, line = 0;
    const char *p = data, *end = data + len;
    if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0)
        p += 3;
    while (p < end && !rc) {
        line++;
        if (hw_interrupted()) {
            rc = hw_errf(err, HW_ESTOP, "%s:%d: stopped by a signal while reading", path, line);
            break;
        }
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        size_t n = (size_t)(eol - p);
        if (n > 0 && p[n - 1] == '\r')
            n--;
        if (!blank_(p, n)) {
            json_error_t jerr;
            json_t *root = json_loadb(p, n, JSON_REJECT_DUPLICATES, &jerr);
            if (!root) {
                rc = hw_errf(err, HW_EFORMAT, "%s:%d:%d: error: invalid JSON: %s", path, line,
                             jerr.column > 0 ? jerr.column : 1, jerr.text);
                break;
            }
            if (d->n == cap) {
                cap = cap ? 2 * cap : 256;
                d->conv = HW_REALLOC(d->conv, (size_t)cap * sizeof(*d->conv));
            }
            struct sft_conv c;
            memset(&c, 0, sizeof(c));
            rc = parse_conv_(root, path, line, &c, err);
            if (rc) {
                c.root = root;
                conv_free_(&c);
            } else {
                d->conv[d->n++] = c;
            }
        }
        p = nl ? nl + 1 : end;
    }
    free(data);
    if (!rc && d->n == 0)
        rc = hw_errf(err, HW_EFORMAT, "%s: error: no conversations in the file", path);
    if (rc)
        sft_free(d);
    return rc;
}

void sft_free(struct sft_data *d) {
    for (int i = 0; i < d->n; i++)
        conv_free_(&d->conv[i]);
    free(d->conv);
    memset(d, 0, sizeof(*d));
}

char *sft_tag_text(const char *text, const char *indicator) {
    size_t n = strlen(text), k = strlen(indicator);
    char *out = HW_MALLOC(n + k + 3);
    memcpy(out, text, n);
    size_t p = n;
    if (n > 0 && isalnum((unsigned char)text[n - 1]))
        out[p++] = '.';
    out[p++] = ' ';
    memcpy(out + p, indicator, k);
    out[p + k] = '\0';
    return out;
}

void sft_set_content(struct sft_conv *c, int i, const char *text) {
    HW_ASSERT(i >= 0 && i < c->n_msgs);
    json_object_set_new(c->holder[i], c->key[i], json_string(text));
    c->msgs[i].content = json_string_value(json_object_get(c->holder[i], c->key[i]));
}

void sft_template_from_cfg(struct chat_template *t, const struct cfg_sft *s) {
    memset(t, 0, sizeof(*t));
    snprintf(t->system, sizeof(t->system), "%s", s->tpl_system);
    snprintf(t->user, sizeof(t->user), "%s", s->tpl_user);
    snprintf(t->assistant, sizeof(t->assistant), "%s", s->tpl_assistant);
    snprintf(t->end_turn, sizeof(t->end_turn), "%s", s->tpl_end);
    snprintf(t->bos, sizeof(t->bos), "%s", s->tpl_bos);
}

int sft_extend_tokenizer(struct bpe *tok, const struct cfg_sft *s, char *err) {
    const int v0 = bpe_vocab_size(tok);
    const char *bad = NULL;
    if (s->indicator[0] && bpe_add_special(tok, s->indicator) < 0)
        bad = s->indicator;
    for (int i = 0; i < s->add_tokens.n && !bad; i++)
        if (bpe_add_special(tok, s->add_tokens.item[i]) < 0)
            bad = s->add_tokens.item[i];
    if (bad)
        return hw_errf(err, -1, "'%.60s' cannot be a special token (empty or not UTF-8)", bad);
    return bpe_vocab_size(tok) - v0;
}

/* ------------------------------------------------------------------------------------------ */
/* tokens with roles */

int sft_encode(const struct bpe *tok, const struct chat_template *t, const struct chat_msg *msgs,
               int n, int add_generation_prompt, struct sft_tokens *out, char *err) {
    memset(out, 0, sizeof(*out));
    char *text = NULL;
    struct chat_span *sp = NULL;
    int len = chat_render(t, msgs, n, add_generation_prompt, &text, &sp, err);
    if (len < 0)
        return len;
    int32_t *ids = NULL;
    int64_t nt = bpe_encode(tok, text, (size_t)len, 1, &ids);
    HW_ASSERT(nt >= 0 && nt < INT32_MAX);
    out->ids = ids;
    out->n = (int)nt;
    out->kind = HW_CALLOC((size_t)(nt ? nt : 1), 1);
    out->role = HW_CALLOC((size_t)(nt ? nt : 1), 1);
    out->msg = HW_MALLOC(sizeof(int32_t) * (size_t)(nt ? nt : 1));
    int pos = 0, k = -1; /* k: the message whose [role_start, next role_start) holds pos */
    for (int64_t i = 0; i < nt; i++) {
        int tl = 0;
        bpe_token_bytes(tok, ids[i], &tl);
        const int a = pos, b = pos + tl; /* the token's bytes [a, b) */
        while (k + 1 < n && sp[k + 1].role_start <= a)
            k++;
        /* past the last message's end-of-turn: the generation prompt */
        int in_prompt = add_generation_prompt && a >= len - (int)strlen(t->assistant);
        out->msg[i] = in_prompt ? -1 : k;
        uint8_t kind = SFT_KIND_TEMPLATE;
        if (k >= 0 && !in_prompt) {
            out->role[i] = (uint8_t)chat_role_name(msgs[k].role)[0];
            if (a >= sp[k].content_start && b <= sp[k].content_end && b > a)
                kind = SFT_KIND_CONTENT;
            else if (b > sp[k].content_start)
                kind = SFT_KIND_END;
        }
        out->kind[i] = kind;
        pos = b;
    }
    HW_ASSERT(pos == len);
    free(text);
    free(sp);
    return 0;
}

void sft_tokens_free(struct sft_tokens *s) {
    free(s->ids);
    free(s->kind);
    free(s->role);
    free(s->msg);
    memset(s, 0, sizeof(*s));
}

int sft_is_user_content(const struct bpe *tok, const struct sft_tokens *s, int i) {
    if (s->kind[i] != SFT_KIND_CONTENT || s->role[i] != 'u')
        return 0;
    int tl = 0;
    const char *b = bpe_token_bytes(tok, s->ids[i], &tl);
    for (int j = 0; j < tl; j++)
        if (b[j] != '\n' && b[j] != '\r')
            return 1;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* training rows */

int sft_set_build(struct sft_set *s, const struct sft_data *d, const struct bpe *tok,
                  const struct chat_template *t, int loss_all, int T, uint64_t seed, char *err) {
    memset(s, 0, sizeof(*s));
    s->n = d->n;
    s->T = T;
    s->seed = seed;
    s->perm_epoch = -1;
    s->off = HW_CALLOC((size_t)d->n + 1, sizeof(int64_t));
    s->perm = HW_MALLOC(sizeof(int) * (size_t)(d->n ? d->n : 1));
    int64_t cap = 0;
    for (int e = 0; e < d->n; e++) {
        if (hw_interrupted()) {
            sft_set_free(s);
            return hw_errf(err, HW_ESTOP,
                           "line %d: stopped by a signal while tokenizing (conversation %d of %d)",
                           d->conv[e].line, e + 1, d->n);
        }
        struct sft_tokens st;
        int rc = sft_encode(tok, t, d->conv[e].msgs, d->conv[e].n_msgs, 0, &st, err);
        if (rc) {
            char tmp[HW_ERR_LEN];
            snprintf(tmp, sizeof(tmp), "%s", err);
            hw_errf(err, rc, "line %d: %.400s", d->conv[e].line, tmp);
            sft_set_free(s);
            return rc;
        }
        const int64_t o = s->off[e];
        if (o + st.n > cap) {
            cap = (o + st.n) * 2;
            s->ids = HW_REALLOC(s->ids, sizeof(int32_t) * (size_t)cap);
            s->loss = HW_REALLOC(s->loss, (size_t)cap);
        }
        for (int i = 0; i < st.n; i++) {
            s->ids[o + i] = st.ids[i];
            s->loss[o + i] = (uint8_t)(loss_all || (st.role[i] == 'a' && st.kind[i] != 0));
            s->n_loss += s->loss[o + i] && i > 0;
        }
        s->n_truncated += st.n > T;
        s->off[e + 1] = o + st.n;
        sft_tokens_free(&st);
    }
    return 0;
}

void sft_set_free(struct sft_set *s) {
    free(s->off);
    free(s->ids);
    free(s->loss);
    free(s->perm);
    memset(s, 0, sizeof(*s));
}

/* Example index of global counter k. */
static int example_at_(struct sft_set *s, int64_t k, int shuffle) {
    const int64_t epoch = k / s->n;
    if (!shuffle)
        return (int)(k % s->n);
    if (epoch != s->perm_epoch) {
        uint64_t key = rng_hash2(s->seed, 0x5f7ULL + (uint64_t)epoch);
        for (int i = 0; i < s->n; i++)
            s->perm[i] = i;
        for (int i = s->n - 1; i > 0; i--) {
            int j = (int)(rng_uniform(key, (uint64_t)i) * (i + 1)), x = s->perm[i];
            s->perm[i] = s->perm[j];
            s->perm[j] = x;
        }
        s->perm_epoch = epoch;
    }
    return s->perm[k % s->n];
}

int sft_fill_row(struct sft_set *s, int64_t *cursor, int pack, int shuffle, int32_t pad_id,
                 int32_t *tok, int32_t *tgt, int32_t *seg) {
    const int T = s->T;
    int p = 0, sg = 0, n_sup = 0;
    while (p < T) {
        const int e = example_at_(s, *cursor, shuffle);
        const int64_t o = s->off[e];
        int len = (int)(s->off[e + 1] - o);
        if (len > T)
            len = T;
        if (p > 0 && (!pack || p + len > T))
            break;
        for (int i = 0; i < len; i++) {
            tok[p + i] = s->ids[o + i];
            const int sup = i + 1 < len && s->loss[o + i + 1];
            tgt[p + i] = sup ? s->ids[o + i + 1] : -1;
            n_sup += sup;
            seg[p + i] = sg;
        }
        p += len;
        sg++;
        (*cursor)++;
        if (!pack)
            break;
    }
    for (; p < T; p++) {
        tok[p] = pad_id;
        tgt[p] = -1;
        seg[p] = sg;
    }
    return n_sup;
}
