/* eval/porter.c -- the Porter stemmer exactly as nltk.stem.porter.PorterStemmer implements it, in
 * its three modes (NLTK_EXTENSIONS, MARTIN_EXTENSIONS, ORIGINAL_ALGORITHM); ROUGE stems with it.
 * Each step mirrors the nltk method of the same name, and the rule lists keep nltk's order: the
 * first rule whose suffix matches decides, and a failed condition ends the step.
 * Reference: M. F. Porter, "An algorithm for suffix stripping", Program 14(3), 1980; nltk
 * porter.py.
 */
#include "metrics.h"

#include "../core/check.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* The word being stemmed: w[0..len), in a buffer that never needs to grow (no rule lengthens the
 * word it was given). */
struct porter_word {
    char *w;
    int len;
    enum metrics_porter_mode mode;
};

struct porter_rule {
    const char *suffix;
    const char *repl;
    enum { COND_NONE, COND_M_GT0, COND_M_GT1, COND_ION, COND_LOGI } cond;
};

static int is_vowel_(char c) {
    return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u';
}

/* nltk _is_consonant: y is a consonant at the start or after a vowel, a vowel after a consonant.
 * Walks back over a run of y's instead of recursing. */
static int is_cons_(const char *w, int i) {
    int negate = 0;
    while (i > 0 && w[i] == 'y') {
        negate = !negate;
        i--;
    }
    return (!is_vowel_(w[i])) != negate;
}

/* m in [C](VC){m}[V] of w[0..len): the number of vowel->consonant transitions. */
static int measure_(const char *w, int len) {
    int m = 0, prev = -1;
    for (int i = 0; i < len; i++) {
        int c = is_vowel_(w[i]) ? 0 : w[i] != 'y' ? 1 : i == 0 ? 1 : !prev;
        if (prev == 0 && c == 1)
            m++;
        prev = c;
    }
    return m;
}

static int contains_vowel_(const char *w, int len) {
    for (int i = 0; i < len; i++)
        if (!is_cons_(w, i))
            return 1;
    return 0;
}

/* *d */
static int ends_double_cons_(const char *w, int len) {
    return len >= 2 && w[len - 1] == w[len - 2] && is_cons_(w, len - 1);
}

/* *o: ends consonant-vowel-consonant, the last not w, x or y (NLTK mode: also a 2-letter vc). */
static int ends_cvc_(const char *w, int len, enum metrics_porter_mode mode) {
    if (len >= 3 && is_cons_(w, len - 3) && !is_cons_(w, len - 2) && is_cons_(w, len - 1) &&
        w[len - 1] != 'w' && w[len - 1] != 'x' && w[len - 1] != 'y')
        return 1;
    return mode == METRICS_PORTER_NLTK && len == 2 && !is_cons_(w, 0) && is_cons_(w, 1);
}

static int ends_(const struct porter_word *p, const char *suffix) {
    int n = (int)strlen(suffix);
    return n <= p->len && memcmp(p->w + p->len - n, suffix, (size_t)n) == 0;
}

/* Replace the last `cut` characters by repl. */
static void replace_(struct porter_word *p, int cut, const char *repl) {
    int n = (int)strlen(repl);
    memcpy(p->w + p->len - cut, repl, (size_t)n);
    p->len += n - cut;
}

/* nltk _apply_rule_list for rules without the "*d" pseudo-suffix. */
static void apply_rules_(struct porter_word *p, const struct porter_rule *rules, int n_rules) {
    for (int r = 0; r < n_rules; r++) {
        if (!ends_(p, rules[r].suffix))
            continue;
        int stem = p->len - (int)strlen(rules[r].suffix), ok = 0;
        switch (rules[r].cond) {
        case COND_NONE:
            ok = 1;
            break;
        case COND_M_GT0:
            ok = measure_(p->w, stem) > 0;
            break;
        case COND_M_GT1:
            ok = measure_(p->w, stem) > 1;
            break;
        case COND_ION:
            ok = measure_(p->w, stem) > 1 && (p->w[stem - 1] == 's' || p->w[stem - 1] == 't');
            break;
        case COND_LOGI: /* NLTK: the 'l' of -logi stays with the stem when measuring */
            ok = measure_(p->w, stem + 1) > 0;
            break;
        }
        if (ok)
            replace_(p, p->len - stem, rules[r].repl);
        return;
    }
}

static void step1a_(struct porter_word *p) {
    static const struct porter_rule rules[] = {{"sses", "ss", COND_NONE},
                                               {"ies", "i", COND_NONE},
                                               {"ss", "ss", COND_NONE},
                                               {"s", "", COND_NONE}};
    if (p->mode == METRICS_PORTER_NLTK && p->len == 4 && ends_(p, "ies")) {
        replace_(p, 3, "ie");
        return;
    }
    apply_rules_(p, rules, 4);
}

static void step1b_(struct porter_word *p) {
    if (p->mode == METRICS_PORTER_NLTK && ends_(p, "ied")) {
        replace_(p, 3, p->len == 4 ? "ie" : "i");
        return;
    }
    if (ends_(p, "eed")) {
        if (measure_(p->w, p->len - 3) > 0)
            replace_(p, 3, "ee");
        return;
    }
    int stem = -1;
    if (ends_(p, "ed") && contains_vowel_(p->w, p->len - 2))
        stem = p->len - 2;
    else if (ends_(p, "ing") && contains_vowel_(p->w, p->len - 3))
        stem = p->len - 3;
    if (stem < 0)
        return;
    p->len = stem;
    if (ends_(p, "at") || ends_(p, "bl") || ends_(p, "iz")) {
        replace_(p, 0, "e");
    } else if (ends_double_cons_(p->w, p->len)) {
        char last = p->w[p->len - 1];
        if (last != 'l' && last != 's' && last != 'z')
            p->len--;
    } else if (measure_(p->w, p->len) == 1 && ends_cvc_(p->w, p->len, p->mode)) {
        replace_(p, 0, "e");
    }
}

static void step1c_(struct porter_word *p) {
    if (!ends_(p, "y"))
        return;
    int stem = p->len - 1, ok;
    if (p->mode == METRICS_PORTER_NLTK)
        ok = stem > 1 && is_cons_(p->w, stem - 1);
    else
        ok = contains_vowel_(p->w, stem);
    if (ok)
        p->w[stem] = 'i';
}

static void step2_(struct porter_word *p) {
    /* nltk's order; slot 5 is -abli (original) or -bli (the extensions), then mode extras. */
    struct porter_rule rules[24] = {{"ational", "ate", COND_M_GT0}, {"tional", "tion", COND_M_GT0},
                                    {"enci", "ence", COND_M_GT0},   {"anci", "ance", COND_M_GT0},
                                    {"izer", "ize", COND_M_GT0},    {"bli", "ble", COND_M_GT0},
                                    {"alli", "al", COND_M_GT0},     {"entli", "ent", COND_M_GT0},
                                    {"eli", "e", COND_M_GT0},       {"ousli", "ous", COND_M_GT0},
                                    {"ization", "ize", COND_M_GT0}, {"ation", "ate", COND_M_GT0},
                                    {"ator", "ate", COND_M_GT0},    {"alism", "al", COND_M_GT0},
                                    {"iveness", "ive", COND_M_GT0}, {"fulness", "ful", COND_M_GT0},
                                    {"ousness", "ous", COND_M_GT0}, {"aliti", "al", COND_M_GT0},
                                    {"iviti", "ive", COND_M_GT0},   {"biliti", "ble", COND_M_GT0}};
    int n = 20;
    if (p->mode == METRICS_PORTER_NLTK) {
        /* -alli -> -al first, then step 2 again on the result */
        if (ends_(p, "alli") && measure_(p->w, p->len - 4) > 0) {
            replace_(p, 4, "al");
            step2_(p);
            return;
        }
        rules[n++] = (struct porter_rule){"fulli", "ful", COND_M_GT0};
        rules[n++] = (struct porter_rule){"logi", "log", COND_LOGI};
    } else if (p->mode == METRICS_PORTER_MARTIN) {
        rules[n++] = (struct porter_rule){"logi", "log", COND_M_GT0};
    } else {
        rules[5] = (struct porter_rule){"abli", "able", COND_M_GT0};
    }
    apply_rules_(p, rules, n);
}

static void step3_(struct porter_word *p) {
    static const struct porter_rule rules[] = {
        {"icate", "ic", COND_M_GT0}, {"ative", "", COND_M_GT0},  {"alize", "al", COND_M_GT0},
        {"iciti", "ic", COND_M_GT0}, {"ical", "ic", COND_M_GT0}, {"ful", "", COND_M_GT0},
        {"ness", "", COND_M_GT0}};
    apply_rules_(p, rules, (int)(sizeof(rules) / sizeof(rules[0])));
}

static void step4_(struct porter_word *p) {
    static const struct porter_rule rules[] = {
        {"al", "", COND_M_GT1},   {"ance", "", COND_M_GT1}, {"ence", "", COND_M_GT1},
        {"er", "", COND_M_GT1},   {"ic", "", COND_M_GT1},   {"able", "", COND_M_GT1},
        {"ible", "", COND_M_GT1}, {"ant", "", COND_M_GT1},  {"ement", "", COND_M_GT1},
        {"ment", "", COND_M_GT1}, {"ent", "", COND_M_GT1},  {"ion", "", COND_ION},
        {"ou", "", COND_M_GT1},   {"ism", "", COND_M_GT1},  {"ate", "", COND_M_GT1},
        {"iti", "", COND_M_GT1},  {"ous", "", COND_M_GT1},  {"ive", "", COND_M_GT1},
        {"ize", "", COND_M_GT1}};
    apply_rules_(p, rules, (int)(sizeof(rules) / sizeof(rules[0])));
}

static void step5a_(struct porter_word *p) {
    if (!ends_(p, "e"))
        return;
    int stem = p->len - 1, m = measure_(p->w, stem);
    if (m > 1 || (m == 1 && !ends_cvc_(p->w, stem, p->mode)))
        p->len = stem;
}

static void step5b_(struct porter_word *p) {
    if (ends_(p, "ll") && measure_(p->w, p->len - 1) > 1)
        p->len--;
}

/* NLTK_EXTENSIONS' table of irregular forms. */
static const char *irregular_(const char *w, int len) {
    static const char *const forms[][2] = {
        {"sky", "sky"},        {"skies", "sky"},        {"dying", "die"},
        {"lying", "lie"},      {"tying", "tie"},        {"news", "news"},
        {"innings", "inning"}, {"inning", "inning"},    {"outings", "outing"},
        {"outing", "outing"},  {"cannings", "canning"}, {"canning", "canning"},
        {"howe", "howe"},      {"proceed", "proceed"},  {"exceed", "exceed"},
        {"succeed", "succeed"}};
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++)
        if ((int)strlen(forms[i][0]) == len && !memcmp(forms[i][0], w, (size_t)len))
            return forms[i][1];
    return NULL;
}

static void copy_out_(const char *w, size_t len, char *out, size_t cap) {
    if (!cap)
        return;
    if (len > cap - 1)
        len = cap - 1;
    memcpy(out, w, len);
    out[len] = '\0';
}

void metrics_porter_stem_mode(const char *word, enum metrics_porter_mode mode, char *out,
                              size_t cap) {
    size_t n = strlen(word);
    HW_ASSERT(n < INT_MAX / 2);
    char small[64];
    char *buf = n + 2 <= sizeof(small) ? small : HW_MALLOC(n + 2);
    for (size_t i = 0; i < n; i++)
        buf[i] = word[i] >= 'A' && word[i] <= 'Z' ? (char)(word[i] - 'A' + 'a') : word[i];
    struct porter_word p = {buf, (int)n, mode};
    const char *irr = mode == METRICS_PORTER_NLTK ? irregular_(buf, p.len) : NULL;
    if (irr) {
        copy_out_(irr, strlen(irr), out, cap);
    } else {
        if (mode == METRICS_PORTER_ORIGINAL || n > 2) {
            step1a_(&p);
            step1b_(&p);
            step1c_(&p);
            step2_(&p);
            step3_(&p);
            step4_(&p);
            step5a_(&p);
            step5b_(&p);
        }
        copy_out_(p.w, (size_t)p.len, out, cap);
    }
    if (buf != small)
        free(buf);
}

void metrics_porter_stem(const char *word, char *out, size_t cap) {
    metrics_porter_stem_mode(word, METRICS_PORTER_NLTK, out, cap);
}
