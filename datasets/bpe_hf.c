/* datasets/bpe_hf.c -- Hugging Face tokenizer.json of the byte-level BPE kind (see bpe.h): reading
 * and validating the file into struct bpe, the pre-tokenizer (ByteLevel and regex Split steps,
 * run by PCRE2), ignore_merges, the replacement of invalid UTF-8, and the file's text back.
 *
 * What is accepted, and why the rest is refused rather than approximated (a tokenizer that
 * silently differs from the library corrupts every dataset made with it):
 *   model          type BPE; vocab; merges as "a b" strings or [a, b] pairs; ignore_merges;
 *                  unk_token (used for a byte the vocabulary lacks); dropout null or 0;
 *                  continuing_subword_prefix / end_of_word_suffix null or ""; no byte_fallback
 *   pre_tokenizer  ByteLevel (add_prefix_space, use_regex: GPT-2's pattern), Split with a
 *                  Regex or String pattern, behavior Isolated, invert false, and Sequences of
 *                  these; a ByteLevel step is required (that is what makes it byte-level)
 *   added_tokens   id, content, special, normalized; lstrip / rstrip / single_word false
 *   normalizer     null;   decoder: ByteLevel or null;   post_processor: not applied (headwise
 *                  frames documents itself: data prepare puts the end-of-text token between
 *                  them), so ids equal encode(text, add_special_tokens=False)
 * Regexes are compiled with PCRE2_UTF | PCRE2_UCP, where the library uses Oniguruma; \s and \S
 * are rewritten as Unicode's White_Space (Oniguruma's \s), since PCRE2 10.42's Unicode \s also
 * takes U+180E (a format character since Unicode 6.3), which splits differently. */
#define _POSIX_C_SOURCE       200809L
#define PCRE2_CODE_UNIT_WIDTH 8

#include "bpe_impl.h"

#include "../core/check.h"

#include <jansson.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HF_MAX_STEPS 8
#define HF_MAX_ID    (1 << 30)

/* GPT-2's pattern, which the ByteLevel pre-tokenizer applies when use_regex is true */
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

struct hf_step {
    pcre2_code *re;   /* NULL: no split (a ByteLevel step without use_regex) */
    int prefix_space; /* ByteLevel add_prefix_space: a piece not starting with ' ' gets one */
};

struct bpe_hf {
    struct hf_step step[HF_MAX_STEPS];
    int n_steps;
    int ignore_merges;
    int32_t *whole; /* (whole_cap) ids of the vocabulary by hash of their bytes; -1 empty */
    size_t whole_cap;
    char *text; /* the file as read */
    size_t text_len;
    int32_t n_special_file; /* specials the file has; later ones are appended by bpe_to_json */
};

// ------------------------------------------------------------------------------------------------
// the byte <-> character map of GPT-2's byte-level alphabet

static int printable_byte_(int b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

/* cp[b]: the character standing for byte b; inv[c] for c < 512: the byte, or -1 */
static void byte_map_(uint32_t cp[256], int16_t inv[512]) {
    int extra = 0;
    for (int c = 0; c < 512; c++)
        inv[c] = -1;
    for (int b = 0; b < 256; b++) {
        cp[b] = printable_byte_(b) ? (uint32_t)b : (uint32_t)(256 + extra++);
        inv[cp[b]] = (int16_t)b;
    }
}

static size_t put_utf8_(uint32_t c, char *out) {
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xC0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | (c >> 12));
        out[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (c >> 18));
    out[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* Next character of valid UTF-8 at s[*i] (jansson hands out valid strings only). */
static uint32_t get_utf8_(const unsigned char *s, size_t *i) {
    uint32_t c = s[(*i)++];
    int more = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 0;
    c &= more == 3 ? 0x07 : more == 2 ? 0x0F : more == 1 ? 0x1F : 0x7F;
    while (more--)
        c = (c << 6) | (s[(*i)++] & 0x3F);
    return c;
}

/* The bytes a vocabulary string stands for: each character through the byte map, or, when one
 * of them is not in the map, the string's own UTF-8 (what the ByteLevel decoder does). */
static size_t token_bytes_(const int16_t inv[512], const char *s, size_t n, char *out) {
    const unsigned char *u = (const unsigned char *)s;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        uint32_t c = get_utf8_(u, &i);
        if (c >= 512 || inv[c] < 0) {
            memcpy(out, s, n);
            return n;
        }
        out[k++] = (char)inv[c];
    }
    return k;
}

// ------------------------------------------------------------------------------------------------
// invalid UTF-8: each maximal subpart of an ill-formed sequence becomes U+FFFD (Unicode's
// recommended practice, which Python's "replace" error handler follows)

/* Length of the valid sequence at s[i], or 0; *sub: bytes of its maximal invalid subpart. */
static size_t utf8_seq_(const unsigned char *s, size_t n, size_t i, size_t *sub) {
    unsigned char c = s[i];
    *sub = 1;
    if (c < 0x80)
        return 1;
    int need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        need = 1;
    else if (c >= 0xE0 && c <= 0xEF)
        need = 2, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4)
        need = 3, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else
        return 0;
    for (int k = 1; k <= need; k++) {
        if (i + (size_t)k >= n || s[i + k] < lo || s[i + k] > hi) {
            *sub = (size_t)k;
            return 0;
        }
        lo = 0x80, hi = 0xBF;
    }
    return (size_t)need + 1;
}

unsigned char *bpe_hf_fix_utf8(const unsigned char *s, size_t n, size_t *out_n) {
    size_t i = 0, sub;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = utf8_seq_(s, n, i, &sub);
        if (!k)
            break;
        i += k;
    }
    if (i == n)
        return NULL;
    unsigned char *out = HW_MALLOC(i + 3 * (n - i) + 1);
    memcpy(out, s, i);
    size_t o = i;
    while (i < n) {
        size_t k = utf8_seq_(s, n, i, &sub);
        if (k) {
            memcpy(out + o, s + i, k);
            o += k;
            i += k;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += sub;
        }
    }
    *out_n = o;
    return out;
}

// ------------------------------------------------------------------------------------------------
// pre-tokenizer

struct pt_run {
    const struct bpe_hf *h;
    pcre2_match_data *md[HF_MAX_STEPS];
    bpe_chunk_fn fn;
    void *ctx;
};

static size_t utf8_char_len_(unsigned char c) {
    return c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
}

/* Step k on piece s[0..n): split by its regex into matches and the gaps between them (each
 * its own piece, as the library's Isolated behaviour), each piece on to step k + 1. */
static void run_step_(struct pt_run *r, int k, const unsigned char *s, size_t n, int stable) {
    if (n == 0)
        return;
    if (k == r->h->n_steps) {
        r->fn(r->ctx, s, n, stable);
        return;
    }
    const struct hf_step *st = &r->h->step[k];
    unsigned char *tmp = NULL;
    if (st->prefix_space && s[0] != ' ') {
        tmp = HW_MALLOC(n + 1);
        tmp[0] = ' ';
        memcpy(tmp + 1, s, n);
        s = tmp, n++, stable = 0;
    }
    size_t prev = 0;
    for (size_t off = 0; st->re && off < n;) {
        int rc = pcre2_match(st->re, s, n, off, PCRE2_NO_UTF_CHECK, r->md[k], NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc <= 0)
            HW_DIE("tokenizer pre-tokenizer: the regex failed (PCRE2 error %d)", rc);
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(r->md[k]);
        size_t ms = ov[0], me = ov[1];
        run_step_(r, k + 1, s + prev, ms - prev, stable);
        run_step_(r, k + 1, s + ms, me - ms, stable);
        prev = me;
        off = me > ms ? me : me + utf8_char_len_(s[me]); /* an empty match moves on a char */
    }
    run_step_(r, k + 1, s + prev, n - prev, stable);
    free(tmp);
}

void bpe_hf_pretokenize(const struct bpe_hf *h, const unsigned char *s, size_t n, bpe_chunk_fn fn,
                        void *ctx) {
    struct pt_run r = {.h = h, .fn = fn, .ctx = ctx};
    for (int k = 0; k < h->n_steps; k++)
        if (h->step[k].re)
            r.md[k] = pcre2_match_data_create_from_pattern(h->step[k].re, NULL);
    run_step_(&r, 0, s, n, 1);
    for (int k = 0; k < h->n_steps; k++)
        pcre2_match_data_free(r.md[k]);
}

int32_t bpe_hf_whole_token(const struct bpe *t, const unsigned char *p, size_t n) {
    const struct bpe_hf *h = t->hf;
    if (!h->ignore_merges)
        return -1;
    size_t mask = h->whole_cap - 1;
    for (size_t i = bpe_impl_hash(p, n) & mask; h->whole[i] >= 0; i = (i + 1) & mask) {
        int32_t id = h->whole[i];
        if (t->tok_len[id] == n && memcmp(t->bytes + t->tok_off[id], p, n) == 0)
            return id;
    }
    return -1;
}

static void whole_add_(struct bpe *t, int32_t id) {
    struct bpe_hf *h = t->hf;
    const unsigned char *p = (const unsigned char *)t->bytes + t->tok_off[id];
    size_t mask = h->whole_cap - 1, i = bpe_impl_hash(p, t->tok_len[id]) & mask;
    while (h->whole[i] >= 0)
        i = (i + 1) & mask;
    h->whole[i] = id;
}

// ------------------------------------------------------------------------------------------------
// reading the file

struct hf_parse {
    struct bpe *t;
    const char *name;
    char *err;
    uint32_t cp[256];
    int16_t inv[512];
    int has_byte_level;
};

#define FAIL(...) hw_errf(p->err, HW_EFORMAT, __VA_ARGS__)

/* Unicode's White_Space, which is Oniguruma's \s; PCRE2 10.42's Unicode \s also takes U+180E. */
#define WHITE_SPACE                                                                                \
    "\\t\\n\\x{0B}\\f\\r "                                                                         \
    "\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

/* The pattern with \s and \S spelled out as Oniguruma reads them. */
static char *onig_spaces_(const char *re) {
    size_t n = strlen(re), o = 0;
    char *out = HW_MALLOC(n * sizeof(WHITE_SPACE) + 1);
    int in_class = 0;
    for (size_t i = 0; i < n; i++) {
        if (re[i] == '\\' && i + 1 < n) {
            const char *rep = NULL;
            if (re[i + 1] == 's')
                rep = in_class ? WHITE_SPACE : "[" WHITE_SPACE "]";
            else if (re[i + 1] == 'S' && !in_class)
                rep = "[^" WHITE_SPACE "]";
            if (rep) {
                memcpy(out + o, rep, strlen(rep));
                o += strlen(rep);
            } else {
                out[o++] = re[i];
                out[o++] = re[i + 1];
            }
            i++;
            continue;
        }
        if (re[i] == '[' && !in_class)
            in_class = 1;
        else if (re[i] == ']' && in_class)
            in_class = 0;
        out[o++] = re[i];
    }
    out[o] = '\0';
    return out;
}

static int add_step_(struct hf_parse *p, const char *where, const char *pattern, int literal,
                     int prefix_space) {
    struct bpe_hf *h = p->t->hf;
    if (h->n_steps == HF_MAX_STEPS)
        return FAIL("%s: %s: more than %d pre-tokenizer steps", p->name, where, HF_MAX_STEPS);
    struct hf_step *st = &h->step[h->n_steps];
    st->prefix_space = prefix_space;
    h->n_steps++;
    if (!pattern)
        return 0;
    char *wide = literal ? NULL : onig_spaces_(pattern);
    int ec;
    PCRE2_SIZE eo;
    st->re = pcre2_compile((PCRE2_SPTR)(literal ? pattern : wide), PCRE2_ZERO_TERMINATED,
                           PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0), &ec, &eo, NULL);
    free(wide);
    if (!st->re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof(msg));
        return FAIL("%s: %s: the regex does not compile: %s", p->name, where, (char *)msg);
    }
    pcre2_jit_compile(st->re, PCRE2_JIT_COMPLETE); /* without JIT, pcre2_match interprets */
    return 0;
}

static int get_bool_(struct hf_parse *p, const json_t *o, const char *key, int dflt,
                     const char *where, int *out) {
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return 0;
    }
    if (!json_is_boolean(v))
        return FAIL("%s: %s.%s: expected true or false, got %s", p->name, where, key,
                    bpe_impl_json_type(v));
    *out = json_is_true(v);
    return 0;
}

static const char *type_of_(const json_t *o) {
    const json_t *ty = json_object_get(o, "type");
    return json_is_string(ty) ? json_string_value(ty) : NULL;
}

static int parse_split_(struct hf_parse *p, const json_t *o, const char *where) {
    const json_t *pat = json_object_get(o, "pattern");
    const json_t *re = json_object_get(pat, "Regex"), *str = json_object_get(pat, "String");
    if (!json_is_string(re) && !json_is_string(str))
        return FAIL("%s: %s.pattern: expected {\"Regex\": ...} or {\"String\": ...}", p->name,
                    where);
    const json_t *beh = json_object_get(o, "behavior");
    if (!json_is_string(beh) || strcmp(json_string_value(beh), "Isolated"))
        return FAIL("%s: %s.behavior: only \"Isolated\" is supported, got %s", p->name, where,
                    json_is_string(beh) ? json_string_value(beh) : "none");
    int invert = 0;
    if (get_bool_(p, o, "invert", 0, where, &invert))
        return HW_EFORMAT;
    if (invert)
        return FAIL("%s: %s.invert: only false is supported", p->name, where);
    return add_step_(p, where, json_string_value(re ? re : str), re == NULL, 0);
}

static int parse_pretok_(struct hf_parse *p, const json_t *o, const char *where, int depth) {
    const char *ty = json_is_object(o) ? type_of_(o) : NULL;
    if (!ty)
        return FAIL("%s: %s: expected an object with a \"type\"", p->name, where);
    if (!strcmp(ty, "Sequence") && depth < 4) {
        const json_t *list = json_object_get(o, "pretokenizers");
        if (!json_is_array(list))
            return FAIL("%s: %s.pretokenizers: expected an array", p->name, where);
        for (size_t i = 0; i < json_array_size(list); i++) {
            char sub[96];
            snprintf(sub, sizeof(sub), "pre_tokenizer.pretokenizers[%zu]", i);
            int rc = parse_pretok_(p, json_array_get(list, i), sub, depth + 1);
            if (rc)
                return rc;
        }
        return 0;
    }
    if (!strcmp(ty, "Split"))
        return parse_split_(p, o, where);
    if (!strcmp(ty, "ByteLevel")) {
        int prefix = 0, use_regex = 1;
        if (get_bool_(p, o, "add_prefix_space", 0, where, &prefix) ||
            get_bool_(p, o, "use_regex", 1, where, &use_regex))
            return HW_EFORMAT;
        p->has_byte_level = 1;
        return add_step_(p, where, use_regex ? gpt2_pattern : NULL, 0, prefix);
    }
    return FAIL("%s: %s: pre-tokenizer type \"%.40s\" is not supported (byte-level BPE needs "
                "ByteLevel, Split and Sequence)",
                p->name, where, ty);
}

/* The id of vocabulary string s, or -1. */
static int32_t vocab_id_(const json_t *vocab, const char *s) {
    const json_t *v = json_object_get(vocab, s);
    return json_is_integer(v) ? (int32_t)json_integer_value(v) : -1;
}

static int parse_vocab_(struct hf_parse *p, const json_t *vocab) {
    struct bpe *t = p->t;
    if (!json_is_object(vocab))
        return FAIL("%s: model.vocab: expected an object", p->name);
    int32_t max_id = -1;
    const char *key;
    json_t *val;
    if (json_object_size(vocab) == 0)
        return FAIL("%s: model.vocab: empty", p->name);
    json_object_foreach((json_t *)vocab, key, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 ||
            json_integer_value(val) >= HF_MAX_ID)
            return FAIL("%s: model.vocab[\"%.40s\"]: expected an id in [0, %d)", p->name, key,
                        HF_MAX_ID);
        if (json_integer_value(val) > max_id)
            max_id = (int32_t)json_integer_value(val);
    }
    char *seen = HW_CALLOC((size_t)max_id + 1, 1);
    char *buf = NULL;
    size_t buf_cap = 0;
    int rc = 0;
    json_object_foreach((json_t *)vocab, key, val) {
        int32_t id = (int32_t)json_integer_value(val);
        if (seen[id]++) {
            rc = FAIL("%s: model.vocab[\"%.40s\"]: id %d is given twice", p->name, key, id);
            break;
        }
        size_t n = strlen(key);
        if (n + 1 > buf_cap)
            buf = HW_REALLOC(buf, buf_cap = 2 * n + 16);
        size_t nb = token_bytes_(p->inv, key, n, buf);
        memcpy(bpe_impl_new_token(t, id, nb), buf, nb);
    }
    free(buf);
    free(seen);
    t->n_vocab = max_id + 1;
    return rc;
}

/* merges[i] as its two strings: "a b" or ["a", "b"]. */
static int merge_parts_(struct hf_parse *p, const json_t *m, size_t i, char **a, char **b) {
    if (json_is_string(m)) {
        const char *s = json_string_value(m), *sp = strchr(s, ' ');
        if (!sp || strchr(sp + 1, ' ') || sp == s || !sp[1])
            return FAIL("%s: model.merges[%zu]: expected \"left right\", got \"%.60s\"", p->name, i,
                        s);
        *a = HW_MALLOC((size_t)(sp - s) + 1);
        memcpy(*a, s, (size_t)(sp - s));
        (*a)[sp - s] = '\0';
        *b = HW_STRDUP(sp + 1);
        return 0;
    }
    if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
        json_is_string(json_array_get(m, 1))) {
        *a = HW_STRDUP(json_string_value(json_array_get(m, 0)));
        *b = HW_STRDUP(json_string_value(json_array_get(m, 1)));
        return 0;
    }
    return FAIL("%s: model.merges[%zu]: expected \"left right\" or [left, right]", p->name, i);
}

static int parse_merges_(struct hf_parse *p, const json_t *vocab, const json_t *merges) {
    if (!json_is_array(merges))
        return FAIL("%s: model.merges: expected an array", p->name);
    for (size_t i = 0; i < json_array_size(merges); i++) {
        char *a = NULL, *b = NULL;
        int rc = merge_parts_(p, json_array_get(merges, i), i, &a, &b);
        if (rc)
            return rc;
        size_t la = strlen(a), lb = strlen(b);
        char *ab = HW_MALLOC(la + lb + 1);
        memcpy(ab, a, la);
        memcpy(ab + la, b, lb + 1);
        int32_t ia = vocab_id_(vocab, a), ib = vocab_id_(vocab, b), iab = vocab_id_(vocab, ab);
        const char *missing = ia < 0 ? a : ib < 0 ? b : iab < 0 ? ab : NULL;
        if (missing)
            rc = FAIL("%s: model.merges[%zu]: \"%.60s\" is not in the vocabulary", p->name, i,
                      missing);
        else
            bpe_impl_add_merge(p->t, ia, ib, iab);
        free(a);
        free(b);
        free(ab);
        if (rc)
            return rc;
    }
    return 0;
}

static int check_null_or_empty_(struct hf_parse *p, const json_t *model, const char *key) {
    const json_t *v = json_object_get(model, key);
    if (!v || json_is_null(v) || (json_is_string(v) && !*json_string_value(v)))
        return 0;
    return FAIL("%s: model.%s: must be null for byte-level BPE", p->name, key);
}

static int parse_model_(struct hf_parse *p, const json_t *model) {
    if (!json_is_object(model))
        return FAIL("%s: model: expected an object", p->name);
    const char *ty = type_of_(model);
    if (ty && strcmp(ty, "BPE"))
        return FAIL("%s: model.type: only \"BPE\" is supported, got \"%.40s\"", p->name, ty);
    const json_t *vocab = json_object_get(model, "vocab");
    int byte_fallback = 0, rc;
    const json_t *dropout = json_object_get(model, "dropout");
    if (dropout && !json_is_null(dropout) && json_number_value(dropout) != 0.0)
        return FAIL("%s: model.dropout: BPE dropout is not supported (null or 0)", p->name);
    if ((rc = check_null_or_empty_(p, model, "continuing_subword_prefix")) ||
        (rc = check_null_or_empty_(p, model, "end_of_word_suffix")) ||
        (rc = get_bool_(p, model, "byte_fallback", 0, "model", &byte_fallback)) ||
        (rc = get_bool_(p, model, "ignore_merges", 0, "model", &p->t->hf->ignore_merges)))
        return rc;
    if (byte_fallback)
        return FAIL("%s: model.byte_fallback: true is the SentencePiece kind, not byte-level BPE",
                    p->name);
    if ((rc = parse_vocab_(p, vocab)))
        return rc;
    const json_t *unk = json_object_get(model, "unk_token");
    int32_t unk_id = json_is_string(unk) ? vocab_id_(vocab, json_string_value(unk)) : -1;
    for (int b = 0; b < 256; b++) {
        char ch[8];
        ch[put_utf8_(p->cp[b], ch)] = '\0';
        p->t->byte_id[b] = vocab_id_(vocab, ch);
        if (p->t->byte_id[b] < 0)
            p->t->byte_id[b] = unk_id;
    }
    if ((rc = parse_merges_(p, vocab, json_object_get(model, "merges"))))
        return rc;
    struct bpe_hf *h = p->t->hf;
    if (h->ignore_merges) { /* the model's vocabulary only: added tokens come later */
        size_t cap = 64;
        while (cap < 2 * (size_t)p->t->n_vocab)
            cap *= 2;
        h->whole = HW_MALLOC(cap * sizeof(*h->whole));
        memset(h->whole, 0xFF, cap * sizeof(*h->whole));
        h->whole_cap = cap;
        for (int32_t id = 0; id < p->t->n_vocab; id++)
            if (p->t->tok_len[id] > 0)
                whole_add_(p->t, id);
    }
    return 0;
}

static int parse_added_(struct hf_parse *p, const json_t *added) {
    struct bpe *t = p->t;
    if (added && !json_is_null(added) && !json_is_array(added))
        return FAIL("%s: added_tokens: expected an array", p->name);
    for (size_t i = 0; i < json_array_size(added); i++) {
        const json_t *a = json_array_get(added, i);
        const json_t *id = json_object_get(a, "id"), *content = json_object_get(a, "content");
        if (!json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) >= HF_MAX_ID || !json_is_string(content) ||
            !*json_string_value(content) ||
            strlen(json_string_value(content)) != json_string_length(content))
            return FAIL("%s: added_tokens[%zu]: expected an id in [0, %d) and a non-empty "
                        "content without NUL",
                        p->name, i, HF_MAX_ID);
        char where[48];
        snprintf(where, sizeof(where), "added_tokens[%zu]", i);
        static const char *const flags[] = {"lstrip", "rstrip", "single_word"};
        for (int f = 0; f < 3; f++) {
            int on = 0;
            if (get_bool_(p, a, flags[f], 0, where, &on))
                return HW_EFORMAT;
            if (on)
                return FAIL("%s: %s.%s: only false is supported", p->name, where, flags[f]);
        }
        const char *s = json_string_value(content);
        if (bpe_special_id(t, s) >= 0)
            return FAIL("%s: %s: \"%.60s\" is given twice", p->name, where, s);
        int32_t tid = (int32_t)json_integer_value(id);
        size_t n = strlen(s);
        memcpy(bpe_impl_new_token(t, tid, n), s, n);
        bpe_impl_add_special(t, s, n, tid);
        if (tid >= t->n_vocab)
            t->n_vocab = tid + 1;
    }
    t->hf->n_special_file = t->n_special;
    return 0;
}

static int parse_rest_(struct hf_parse *p, const json_t *root) {
    const json_t *norm = json_object_get(root, "normalizer");
    if (norm && !json_is_null(norm))
        return FAIL("%s: normalizer: \"%.40s\" is not supported (byte-level BPE without a "
                    "normalizer: GPT-2, LLaMA-3 style)",
                    p->name, type_of_(norm) ? type_of_(norm) : "?");
    const json_t *dec = json_object_get(root, "decoder");
    if (dec && !json_is_null(dec) && (!type_of_(dec) || strcmp(type_of_(dec), "ByteLevel")))
        return FAIL("%s: decoder: only ByteLevel is supported, got \"%.40s\"", p->name,
                    type_of_(dec) ? type_of_(dec) : "?");
    const json_t *pre = json_object_get(root, "pre_tokenizer");
    if (!pre || json_is_null(pre))
        return FAIL("%s: pre_tokenizer: missing (a byte-level BPE has a ByteLevel step)", p->name);
    int rc = parse_pretok_(p, pre, "pre_tokenizer", 0);
    if (!rc && !p->has_byte_level)
        rc = FAIL("%s: pre_tokenizer: no ByteLevel step, so not a byte-level BPE", p->name);
    return rc;
}

int bpe_hf_from_json(struct bpe *t, const json_t *root, const char *text, size_t len,
                     const char *name, char *err) {
    struct hf_parse p = {.t = t, .name = name, .err = err};
    const char *nul = memchr(text, '\0', len);
    if (nul) /* the file's text is kept verbatim (checkpoints store it as text) */
        return hw_errf(err, HW_EFORMAT, "%s: NUL byte at offset %zu (expected JSON text)", name,
                       (size_t)(nul - text));
    byte_map_(p.cp, p.inv);
    t->hf = HW_CALLOC(1, sizeof(*t->hf));
    t->n_vocab = 0;
    for (int b = 0; b < 256; b++) /* bpe_init's byte tokens are not this file's */
        t->tok_len[b] = 0;
    int rc = parse_model_(&p, json_object_get(root, "model"));
    if (!rc)
        rc = parse_added_(&p, json_object_get(root, "added_tokens"));
    if (!rc)
        rc = parse_rest_(&p, root);
    if (rc)
        return rc;
    struct bpe_hf *h = t->hf;
    h->text = HW_MALLOC(len + 1);
    memcpy(h->text, text, len);
    h->text[len] = '\0';
    h->text_len = len;
    return 0;
}

// ------------------------------------------------------------------------------------------------
// the file back

char *bpe_hf_to_json(const struct bpe *t) {
    const struct bpe_hf *h = t->hf;
    if (t->n_special == h->n_special_file)
        return HW_STRDUP(h->text);
    json_t *root = json_loadb(h->text, h->text_len, 0, NULL);
    HW_ASSERT(root);
    json_t *added = json_object_get(root, "added_tokens");
    if (!json_is_array(added)) {
        added = json_array();
        json_object_set_new(root, "added_tokens", added);
    }
    for (int32_t i = h->n_special_file; i < t->n_special; i++)
        json_array_append_new(added, json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id",
                                               (json_int_t)t->special_id[i], "content",
                                               t->special[i], "single_word", 0, "lstrip", 0,
                                               "rstrip", 0, "normalized", 0, "special", 1));
    char *out = json_dumps(root, JSON_INDENT(2));
    HW_ASSERT(out);
    json_decref(root);
    return out;
}

void bpe_hf_free(struct bpe_hf *h) {
    if (!h)
        return;
    for (int k = 0; k < h->n_steps; k++)
        pcre2_code_free(h->step[k].re);
    free(h->whole);
    free(h->text);
    free(h);
}
