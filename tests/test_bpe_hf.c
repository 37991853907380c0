/* tests/test_bpe_hf.c -- Hugging Face tokenizer.json support in datasets/bpe_hf.c, on small
 * hand-written files whose ids are worked out by hand: the byte-level alphabet (built here from
 * GPT-2's published byte-to-unicode rule, not from bpe_hf.c), merges as strings and as pairs,
 * ignore_merges, added tokens, a Split regex, invalid UTF-8 replaced as Python does, specials
 * added after loading surviving to_json and reload, the file's text kept verbatim, and the
 * messages for what is not supported. Parity on real tokenizers against the library itself is
 * tests/cli_hf_tokenizer.sh. */
#define _POSIX_C_SOURCE 200809L

#include "../core/check.h"
#include "../datasets/bpe.h"
#include "check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* GPT-2's byte -> code point rule: printable Latin-1 maps to itself, the other 68 bytes to
 * 256, 257, ... in byte order. Writes the UTF-8 of byte b's character into out (NUL-ended). */
static void byte_char(int b, char *out) {
    int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    int cp = b;
    if (!printable) {
        cp = 256;
        for (int x = 0; x < b; x++)
            if (!((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE)))
                cp++;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        out[2] = 0;
    }
}

/* A tokenizer.json: byte b has id b; then the extra vocab entries (ids 256, 257, ... in order,
 * byte-level strings), the merges JSON array, flags and pre-tokenizer text given. */
static char *make_json(const char *const *extra, int n_extra, const char *merges,
                       const char *model_flags, const char *pre, const char *added) {
    size_t cap = 65536;
    char *s = malloc(cap), ch[4];
    size_t n = (size_t)snprintf(s, cap,
                                "{\"version\": \"1.0\", \"added_tokens\": [%s], "
                                "\"normalizer\": null, \"pre_tokenizer\": %s, "
                                "\"decoder\": {\"type\": \"ByteLevel\"}, \"model\": "
                                "{\"type\": \"BPE\"%s, \"vocab\": {",
                                added, pre, model_flags);
    for (int b = 0; b < 256; b++) {
        byte_char(b, ch);
        const char *esc = ch[0] == '"' ? "\\\"" : ch[0] == '\\' ? "\\\\" : ch;
        n += (size_t)snprintf(s + n, cap - n, "%s\"%s\": %d", b ? ", " : "", esc, b);
    }
    for (int i = 0; i < n_extra; i++)
        n += (size_t)snprintf(s + n, cap - n, ", \"%s\": %d", extra[i], 256 + i);
    snprintf(s + n, cap - n, "}, \"merges\": %s}}", merges);
    return s;
}

#define BYTELEVEL "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}"
#define EOT_ADDED                                                                                  \
    "{\"id\": 300, \"content\": \"<|endoftext|>\", \"single_word\": false, \"lstrip\": false, "    \
    "\"rstrip\": false, \"normalized\": false, \"special\": true}"

/* encodes text and compares with want[0..n) */
static int ids_are(const struct bpe *t, const char *text, size_t len, int allow,
                   const int32_t *want, int64_t n) {
    int32_t *ids = NULL;
    int64_t got = bpe_encode(t, text, len, allow, &ids);
    int ok = got == n && (n == 0 || memcmp(ids, want, (size_t)n * sizeof(*ids)) == 0);
    if (!ok) {
        fprintf(stderr, "  encode(\"%.*s\"): got", (int)len, text);
        for (int64_t i = 0; i < got; i++)
            fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
    }
    free(ids);
    return ok;
}

static int decodes_to(const struct bpe *t, const int32_t *ids, int64_t n, const char *want,
                      size_t want_len) {
    char *out = NULL;
    int64_t got = bpe_decode(t, ids, n, &out);
    int ok = got == (int64_t)want_len && memcmp(out, want, want_len) == 0;
    free(out);
    return ok;
}

/* "Ġ" is byte ' ' (0x20 -> U+0120) */
static const char *const extra_[] = {"Ġt", "he", "Ġthe", "Ġc", "at", "Ġcat", "Ġdog"};

static void test_merges_and_ids(void) {
    /* merges: Ġ t -> 256, h e -> 257, Ġt he -> 258, Ġ c -> 259, a t -> 260, Ġc at -> 261;
     * "Ġdog" (262) is in the vocabulary but no merge reaches it */
    const char *merges = "[\"Ġ t\", \"h e\", \"Ġt he\", \"Ġ c\", \"a t\", \"Ġc at\"]";
    char *j = make_json(extra_, 7, merges, "", BYTELEVEL, EOT_ADDED);
    struct bpe t;
    char err[HW_ERR_LEN] = "";
    CHECK(bpe_from_json(&t, j, strlen(j), "mem.json", err) == 0);
    CHECK_MSG(err[0] == 0, "%s", err);
    CHECK(bpe_is_hf(&t));
    CHECK(bpe_vocab_size(&t) == 301);
    CHECK(bpe_eot_id(&t) == 300);
    CHECK(bpe_eot_string(&t) && !strcmp(bpe_eot_string(&t), "<|endoftext|>"));
    /* " the cat dog": pieces " the", " cat", " dog"; " dog" has no merges: bytes */
    int32_t want[] = {258, 261, ' ', 'd', 'o', 'g'};
    CHECK(ids_are(&t, " the cat dog", 12, 0, want, 6));
    int32_t want_sp[] = {'a', 300, 'b'};
    CHECK(ids_are(&t, "a<|endoftext|>b", 15, 1, want_sp, 3));
    CHECK(decodes_to(&t, want, 6, " the cat dog", 12));
    /* bpe_to_json gives back the text as it was */
    char *back = bpe_to_json(&t);
    CHECK(back && !strcmp(back, j));
    free(back);
    bpe_free(&t);

    /* ignore_merges: a piece that is a whole vocabulary entry is that entry */
    char *k = make_json(extra_, 7, merges, ", \"ignore_merges\": true", BYTELEVEL, "");
    CHECK(bpe_from_json(&t, k, strlen(k), "mem.json", err) == 0);
    int32_t want_ig[] = {258, 261, 262};
    CHECK(ids_are(&t, " the cat dog", 12, 0, want_ig, 3));
    bpe_free(&t);
    free(k);

    /* merges as [a, b] pairs give the same tokenizer */
    const char *pairs = "[[\"Ġ\", \"t\"], [\"h\", \"e\"], [\"Ġt\", \"he\"], [\"Ġ\", \"c\"], "
                        "[\"a\", \"t\"], [\"Ġc\", \"at\"]]";
    char *p = make_json(extra_, 7, pairs, "", BYTELEVEL, EOT_ADDED);
    CHECK(bpe_from_json(&t, p, strlen(p), "mem.json", err) == 0);
    CHECK(ids_are(&t, " the cat dog", 12, 0, want, 6));
    bpe_free(&t);
    free(p);
    free(j);
}

static void test_specials_added_later(void) {
    const char *merges = "[\"Ġ t\", \"h e\", \"Ġt he\"]";
    char *j = make_json(extra_, 3, merges, "", BYTELEVEL, EOT_ADDED);
    struct bpe t, u;
    char err[HW_ERR_LEN] = "";
    CHECK(bpe_from_json(&t, j, strlen(j), "mem.json", err) == 0);
    int32_t sp = bpe_add_special(&t, "<|user|>");
    CHECK_MSG(sp == 301, "a special added later takes the id after the largest: %d", sp);
    char *back = bpe_to_json(&t);
    CHECK(back && strcmp(back, j) != 0);
    CHECK(back && strstr(back, "<|user|>") != NULL);
    CHECK(bpe_from_json(&u, back, strlen(back), "back.json", err) == 0);
    CHECK_MSG(err[0] == 0, "%s", err);
    CHECK(bpe_special_id(&u, "<|user|>") == 301);
    CHECK(bpe_vocab_size(&u) == 302);
    int32_t want[] = {301, 258, 300};
    CHECK(ids_are(&t, "<|user|> the<|endoftext|>", 25, 1, want, 3));
    CHECK(ids_are(&u, "<|user|> the<|endoftext|>", 25, 1, want, 3));
    /* a second round trip is a fixed point */
    char *again = bpe_to_json(&u);
    CHECK(again && back && !strcmp(again, back));
    free(again);
    free(back);
    bpe_free(&u);
    bpe_free(&t);
    free(j);
}

/* bpe_pieces callback: appends "piece|" */
struct joined {
    char s[64];
};
static void piece_(void *ctx, const char *p, size_t n) {
    struct joined *j = ctx;
    size_t at = strlen(j->s);
    snprintf(j->s + at, sizeof(j->s) - at, "%.*s|", (int)n, p);
}

static void test_split_regex_and_utf8(void) {
    /* Split on digits (Isolated), then ByteLevel without its own regex: "ab12c" -> "ab", "1",
     * "2", "c" */
    const char *pre = "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", "
                      "\"pattern\": {\"Regex\": \"\\\\p{N}\"}, \"behavior\": \"Isolated\", "
                      "\"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": "
                      "false, \"use_regex\": false}]}";
    const char *const extra[] = {"ab", "12"};
    char *j = make_json(extra, 2, "[\"a b\", \"1 2\"]", "", pre, "");
    struct bpe t;
    char err[HW_ERR_LEN] = "";
    CHECK_MSG(bpe_from_json(&t, j, strlen(j), "mem.json", err) == 0, "%s", err);
    int32_t want[] = {256, '1', '2', 'c'}; /* "12" never forms: the digits are split apart */
    CHECK(ids_are(&t, "ab12c", 5, 0, want, 4));
    /* invalid UTF-8: 0xFF and a truncated 3-byte sequence each become U+FFFD (EF BF BD) */
    int32_t want_bad[] = {'x', 0xEF, 0xBF, 0xBD, 'y', 0xEF, 0xBF, 0xBD};
    CHECK(ids_are(&t, "x\xffy\xe2\x82", 5, 0, want_bad, 8));
    CHECK(decodes_to(&t, want_bad, 8, "x\xef\xbf\xbdy\xef\xbf\xbd", 8));
    /* a surrogate encoded in UTF-8 is three invalid bytes: three replacements */
    int32_t want_sur[] = {0xEF, 0xBF, 0xBD, 0xEF, 0xBF, 0xBD, 0xEF, 0xBF, 0xBD};
    CHECK(ids_are(&t, "\xed\xa0\x80", 3, 0, want_sur, 9));
    /* the pieces the merges stay within */
    struct joined pc = {0};
    bpe_pieces(&t, "ab12c", 5, piece_, &pc);
    CHECK_MSG(!strcmp(pc.s, "ab|1|2|c|"), "pieces %s", pc.s);
    bpe_free(&t);
    free(j);
}

/* every bad file is refused with a message naming the file and the key */
static void test_refusals(void) {
    static const struct {
        const char *flags, *pre, *added, *want;
    } cases[] = {
        {", \"dropout\": 0.1", BYTELEVEL, "", "model.dropout"},
        {", \"byte_fallback\": true", BYTELEVEL, "", "byte_fallback"},
        {", \"continuing_subword_prefix\": \"##\"", BYTELEVEL, "", "continuing_subword_prefix"},
        {"", "{\"type\": \"Whitespace\"}", "", "Whitespace"},
        {"",
         "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\d\"}, \"behavior\": "
         "\"Isolated\", \"invert\": false}",
         "", "ByteLevel"},
        {"",
         "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": "
         "\"Isolated\", \"invert\": false}",
         "", "regex does not compile"},
        {"", BYTELEVEL,
         "{\"id\": 300, \"content\": \"<s>\", \"single_word\": false, \"lstrip\": true, "
         "\"rstrip\": false, \"normalized\": false, \"special\": true}",
         "lstrip"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *j = make_json(extra_, 0, "[]", cases[i].flags, cases[i].pre, cases[i].added);
        struct bpe t;
        char err[HW_ERR_LEN] = "";
        int rc = bpe_from_json(&t, j, strlen(j), "bad.json", err);
        CHECK_MSG(rc != 0, "case %zu accepted", i);
        CHECK_MSG(strstr(err, "bad.json") && strstr(err, cases[i].want), "case %zu: %s", i, err);
        CHECK(bpe_vocab_size(&t) == 256); /* a failed load leaves the byte tokenizer */
        bpe_free(&t);
        free(j);
    }
    /* a merge whose result is not in the vocabulary */
    char *j = make_json(extra_, 0, "[\"a b\"]", "", BYTELEVEL, "");
    struct bpe t;
    char err[HW_ERR_LEN] = "";
    CHECK(bpe_from_json(&t, j, strlen(j), "bad.json", err) != 0);
    CHECK_MSG(strstr(err, "merges[0]"), "%s", err);
    bpe_free(&t);
    free(j);
}

int main(void) {
    test_merges_and_ids();
    test_specials_added_later();
    test_split_regex_and_utf8();
    test_refusals();
    return check_report("test_bpe_hf");
}
