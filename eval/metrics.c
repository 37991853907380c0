/* eval/metrics.c -- classification F1, BLEU, ROUGE and bootstrap standard errors (see metrics.h).
 * Each metric follows one Python implementation line by line, named at its section; the Porter
 * stemmer that ROUGE uses is in porter.c. Texts are tokenized into a string arena, tokens are
 * interned to integer ids, and n-grams are matched by sorting (exact, no hashing). */
#include "metrics.h"

#include "../core/check.h"
#include "../core/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------
 * classification: sklearn.metrics.f1_score(average=None/"micro"/"macro", zero_division=0) */

void metrics_f1_per_label(const int *gold, const int *pred, int n, int n_classes, double *f1) {
    HW_ASSERT(n >= 0 && n_classes > 0);
    long *tp = HW_CALLOC((size_t)n_classes * 3, sizeof(*tp));
    long *fp = tp + n_classes, *fn = fp + n_classes;
    for (int i = 0; i < n; i++) {
        HW_ASSERT(gold[i] >= 0 && gold[i] < n_classes && pred[i] >= 0 && pred[i] < n_classes);
        if (gold[i] == pred[i]) {
            tp[gold[i]]++;
        } else {
            fn[gold[i]]++;
            fp[pred[i]]++;
        }
    }
    for (int c = 0; c < n_classes; c++) {
        if (tp[c] + fp[c] + fn[c] == 0) {
            f1[c] = NAN;
            continue;
        }
        double p = tp[c] + fp[c] > 0 ? (double)tp[c] / (double)(tp[c] + fp[c]) : 0.0;
        double r = tp[c] + fn[c] > 0 ? (double)tp[c] / (double)(tp[c] + fn[c]) : 0.0;
        f1[c] = p + r > 0 ? 2 * p * r / (p + r) : 0.0;
    }
    free(tp);
}

void metrics_f1(const int *gold, const int *pred, int n, int n_classes, struct metrics_f1 *out) {
    double *f1 = HW_MALLOC((size_t)n_classes * sizeof(*f1));
    metrics_f1_per_label(gold, pred, n, n_classes, f1);
    long correct = 0;
    for (int i = 0; i < n; i++)
        correct += gold[i] == pred[i];
    double sum = 0;
    int k = 0;
    for (int c = 0; c < n_classes; c++) {
        if (!isnan(f1[c])) {
            sum += f1[c];
            k++;
        }
    }
    out->micro = n > 0 ? (double)correct / n : 0.0;
    out->macro = k > 0 ? sum / k : 0.0;
    out->n_labels = k;
    free(f1);
}

int metrics_majority_label(const int *gold, int n, int n_classes) {
    HW_ASSERT(n >= 0 && n_classes > 0);
    long *count = HW_CALLOC((size_t)n_classes, sizeof(*count));
    for (int i = 0; i < n; i++) {
        HW_ASSERT(gold[i] >= 0 && gold[i] < n_classes);
        count[gold[i]]++;
    }
    int best = 0;
    for (int c = 1; c < n_classes; c++)
        if (count[c] > count[best])
            best = c;
    free(count);
    return best;
}

/* ---------------------------------------------------------------------------------------------
 * strings and token lists */

struct metrics_sb {
    char *s;
    size_t n, cap;
};

static void sb_put_(struct metrics_sb *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (b->n + n + 1 > cap)
            cap *= 2;
        b->s = HW_REALLOC(b->s, cap);
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static void sb_putc_(struct metrics_sb *b, char c) {
    sb_put_(b, &c, 1);
}

/* Tokens stored NUL-terminated in one arena; line[i] is the text line token i came from. */
struct metrics_toks {
    struct metrics_sb arena;
    size_t *off;
    int *line;
    int n, cap;
};

static void toks_push_(struct metrics_toks *t, const char *s, size_t n, int line) {
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 32;
        t->off = HW_REALLOC(t->off, (size_t)t->cap * sizeof(*t->off));
        t->line = HW_REALLOC(t->line, (size_t)t->cap * sizeof(*t->line));
    }
    t->off[t->n] = t->arena.n;
    t->line[t->n] = line;
    t->n++;
    sb_put_(&t->arena, s, n);
    sb_putc_(&t->arena, '\0');
}

static const char *toks_get_(const struct metrics_toks *t, int i) {
    return t->arena.s + t->off[i];
}

static void toks_free_(struct metrics_toks *t) {
    free(t->arena.s);
    free(t->off);
    free(t->line);
}

struct metrics_intern {
    const char *s;
    int who, pos;
};

static int intern_cmp_(const void *x, const void *y) {
    return strcmp(((const struct metrics_intern *)x)->s, ((const struct metrics_intern *)y)->s);
}

/* Dense ids for the tokens of a and b (equal strings, equal ids) into ida[a->n], idb[b->n].
 * Returns the number of distinct tokens. */
static int intern_(const struct metrics_toks *a, const struct metrics_toks *b, int *ida, int *idb) {
    int n = a->n + b->n, ids = 0;
    if (!n)
        return 0;
    struct metrics_intern *e = HW_MALLOC((size_t)n * sizeof(*e));
    for (int i = 0; i < a->n; i++)
        e[i] = (struct metrics_intern){toks_get_(a, i), 0, i};
    for (int i = 0; i < b->n; i++)
        e[a->n + i] = (struct metrics_intern){toks_get_(b, i), 1, i};
    qsort(e, (size_t)n, sizeof(*e), intern_cmp_);
    for (int i = 0; i < n; i++) {
        if (i > 0 && strcmp(e[i].s, e[i - 1].s))
            ids++;
        (e[i].who ? idb : ida)[e[i].pos] = ids;
    }
    free(e);
    return ids + 1;
}

struct metrics_gram {
    int prefix, last; /* id of the (n-1)-gram at pos, id of its n-th token */
    int who, pos;
};

static int gram_cmp_(const void *x, const void *y) {
    const struct metrics_gram *a = x, *b = y;
    if (a->prefix != b->prefix)
        return a->prefix < b->prefix ? -1 : 1;
    return a->last < b->last ? -1 : a->last > b->last;
}

/* Clipped n-gram matches for n = 1..max_order: matches[n-1] = sum over distinct n-grams g of
 * min(count of g in a, count of g in b). n-grams get dense ids order by order, each n-gram
 * being the pair (id of its first n-1 tokens, id of its last token). */
static void ngram_matches_(const int *ta, int na, const int *tb, int nb, int max_order,
                           long *matches) {
    for (int k = 0; k < max_order; k++)
        matches[k] = 0;
    if (na <= 0 || nb <= 0)
        return;
    int *ga = HW_MALLOC((size_t)(na + nb) * sizeof(*ga)), *gb = ga + na;
    memcpy(ga, ta, (size_t)na * sizeof(*ga));
    memcpy(gb, tb, (size_t)nb * sizeof(*gb));
    struct metrics_gram *e = HW_MALLOC((size_t)(na + nb) * sizeof(*e));
    for (int order = 1; order <= max_order; order++) {
        int ka = na - order + 1, kb = nb - order + 1, m = 0;
        if (ka <= 0 || kb <= 0)
            break;
        for (int i = 0; i < ka; i++)
            e[m++] = (struct metrics_gram){ga[i], order > 1 ? ta[i + order - 1] : 0, 0, i};
        for (int i = 0; i < kb; i++)
            e[m++] = (struct metrics_gram){gb[i], order > 1 ? tb[i + order - 1] : 0, 1, i};
        qsort(e, (size_t)m, sizeof(*e), gram_cmp_);
        int id = 0;
        for (int i = 0; i < m;) {
            int j = i, ca = 0, cb = 0;
            for (; j < m && !gram_cmp_(&e[i], &e[j]); j++) {
                if (e[j].who) {
                    cb++;
                    gb[e[j].pos] = id;
                } else {
                    ca++;
                    ga[e[j].pos] = id;
                }
            }
            matches[order - 1] += ca < cb ? ca : cb;
            id++;
            i = j;
        }
    }
    free(e);
    free(ga);
}

/* ---------------------------------------------------------------------------------------------
 * BLEU: HF evaluate metrics/bleu (tokenizer_13a.py from sacrebleu, nmt_bleu.py from
 * tensorflow/nmt nmt/scripts/bleu.py). */

/* Python str.replace(from, to) of s into a new string. */
static char *replace_all_(const char *s, const char *from, const char *to) {
    struct metrics_sb b = {0};
    size_t nf = strlen(from), nt = strlen(to);
    sb_put_(&b, "", 0);
    for (const char *p = s;;) {
        const char *q = strstr(p, from);
        if (!q) {
            sb_put_(&b, p, strlen(p));
            break;
        }
        sb_put_(&b, p, (size_t)(q - p));
        sb_put_(&b, to, nt);
        p = q + nf;
    }
    return b.s;
}

static int is_digit_(char c) {
    return c >= '0' && c <= '9';
}

/* 13a's first regex class [\{-\~\[-\` -\&\(-\+\:-\@\/]: ASCII symbols other than ' - . , */
static int is_13a_symbol_(char c) {
    return (c >= '{' && c <= '~') || (c >= '[' && c <= '`') || (c >= ' ' && c <= '&') ||
           (c >= '(' && c <= '+') || (c >= ':' && c <= '@') || c == '/';
}

/* Bytes of the Python whitespace character (str.isspace) at s, or 0. */
static int space_len_(const unsigned char *s) {
    if ((s[0] >= 9 && s[0] <= 13) || (s[0] >= 0x1c && s[0] <= 0x20))
        return 1;
    if (s[0] == 0xc2 && (s[1] == 0x85 || s[1] == 0xa0))
        return 2; /* U+0085, U+00A0 */
    if (s[0] == 0xe1 && s[1] == 0x9a && s[2] == 0x80)
        return 3; /* U+1680 */
    if (s[0] == 0xe2 && s[1] == 0x80 &&
        ((s[2] >= 0x80 && s[2] <= 0x8a) || s[2] == 0xa8 || s[2] == 0xa9 || s[2] == 0xaf))
        return 3; /* U+2000..U+200A, U+2028, U+2029, U+202F */
    if (s[0] == 0xe2 && s[1] == 0x81 && s[2] == 0x9f)
        return 3; /* U+205F */
    if (s[0] == 0xe3 && s[1] == 0x80 && s[2] == 0x80)
        return 3; /* U+3000 */
    return 0;
}

/* Tokenizer13a()(text): the line after 13a's regexes (with its spacing) into a new string. */
static char *tok13a_line_(const char *text) {
    char *a = replace_all_(text, "<skipped>", ""), *b;
    b = replace_all_(a, "-\n", "");
    free(a);
    a = replace_all_(b, "\n", " ");
    free(b);
    if (strchr(a, '&')) {
        static const char *const ent[4][2] = {
            {"&quot;", "\""}, {"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"}};
        for (int k = 0; k < 4; k++) {
            b = replace_all_(a, ent[k][0], ent[k][1]);
            free(a);
            a = b;
        }
    }
    /* f" {line} " through the four regexes of TokenizerRegexp, each a left-to-right re.sub */
    struct metrics_sb s1 = {0}, s2 = {0}, s3 = {0}, s4 = {0};
    sb_putc_(&s1, ' ');
    for (const char *p = a; *p; p++) {
        if (is_13a_symbol_(*p)) {
            char t[3] = {' ', *p, ' '};
            sb_put_(&s1, t, 3);
        } else {
            sb_putc_(&s1, *p);
        }
    }
    sb_putc_(&s1, ' ');
    free(a);
    /* ([^0-9])([\.,]) -> \1 \2 */
    for (size_t i = 0; i < s1.n;) {
        char c = s1.s[i];
        if (i + 1 < s1.n && !is_digit_(c) && (s1.s[i + 1] == '.' || s1.s[i + 1] == ',')) {
            char t[4] = {c, ' ', s1.s[i + 1], ' '};
            sb_put_(&s2, t, 4);
            i += 2;
        } else {
            sb_putc_(&s2, c);
            i++;
        }
    }
    free(s1.s);
    /* ([\.,])([^0-9]) -> " \1 \2" */
    for (size_t i = 0; i < s2.n;) {
        char c = s2.s[i];
        if (i + 1 < s2.n && (c == '.' || c == ',') && !is_digit_(s2.s[i + 1])) {
            char t[4] = {' ', c, ' ', s2.s[i + 1]};
            sb_put_(&s3, t, 4);
            i += 2;
        } else {
            sb_putc_(&s3, c);
            i++;
        }
    }
    free(s2.s);
    /* ([0-9])(-) -> \1 \2 */
    for (size_t i = 0; i < s3.n;) {
        char c = s3.s[i];
        if (i + 1 < s3.n && is_digit_(c) && s3.s[i + 1] == '-') {
            char t[4] = {c, ' ', '-', ' '};
            sb_put_(&s4, t, 4);
            i += 2;
        } else {
            sb_putc_(&s4, c);
            i++;
        }
    }
    free(s3.s);
    return s4.s;
}

/* line.split(): maximal runs of non-whitespace. */
static void tokenize_13a_(const char *text, struct metrics_toks *t) {
    char *line = tok13a_line_(text);
    const unsigned char *p = (const unsigned char *)line;
    while (*p) {
        int sp = space_len_(p);
        if (sp) {
            p += sp;
            continue;
        }
        const unsigned char *q = p;
        while (*q && !space_len_(q))
            q++;
        toks_push_(t, (const char *)p, (size_t)(q - p), 0);
        p = q;
    }
    free(line);
}

size_t metrics_tokenize_13a(const char *text, char *out, size_t cap) {
    struct metrics_toks t = {0};
    struct metrics_sb b = {0};
    tokenize_13a_(text, &t);
    sb_put_(&b, "", 0);
    for (int i = 0; i < t.n; i++) {
        if (i)
            sb_putc_(&b, ' ');
        sb_put_(&b, toks_get_(&t, i), strlen(toks_get_(&t, i)));
    }
    if (cap) {
        size_t n = b.n < cap - 1 ? b.n : cap - 1;
        memcpy(out, b.s, n);
        out[n] = '\0';
    }
    size_t len = b.n;
    free(b.s);
    toks_free_(&t);
    return len;
}

void metrics_bleu_stats(const char *hyp, const char *ref, struct metrics_bleu_stats *out) {
    struct metrics_toks th = {0}, tr = {0};
    tokenize_13a_(hyp, &th);
    tokenize_13a_(ref, &tr);
    int *ids = HW_MALLOC((size_t)(th.n + tr.n + 1) * sizeof(*ids));
    intern_(&th, &tr, ids, ids + th.n);
    ngram_matches_(ids, th.n, ids + th.n, tr.n, 4, out->matches);
    for (int k = 0; k < 4; k++)
        out->possible[k] = th.n - k > 0 ? th.n - k : 0;
    out->hyp_len = th.n;
    out->ref_len = tr.n;
    free(ids);
    toks_free_(&th);
    toks_free_(&tr);
}

void metrics_bleu_stats_add(struct metrics_bleu_stats *acc, const struct metrics_bleu_stats *s) {
    for (int k = 0; k < 4; k++) {
        acc->matches[k] += s->matches[k];
        acc->possible[k] += s->possible[k];
    }
    acc->hyp_len += s->hyp_len;
    acc->ref_len += s->ref_len;
}

double metrics_bleu_from_stats(const struct metrics_bleu_stats *s) {
    double p[4], log_sum = 0;
    for (int k = 0; k < 4; k++) {
        p[k] = s->possible[k] > 0 ? (double)s->matches[k] / (double)s->possible[k] : 0.0;
        if (!(p[k] > 0))
            return 0.0;
    }
    for (int k = 0; k < 4; k++)
        log_sum += (1.0 / 4) * log(p[k]);
    double geo_mean = exp(log_sum);
    if (s->ref_len == 0 || s->hyp_len == 0)
        return 0.0;
    double ratio = (double)s->hyp_len / (double)s->ref_len;
    double bp = ratio > 1.0 ? 1.0 : exp(1 - 1.0 / ratio);
    return geo_mean * bp;
}

double metrics_bleu(const char *hyp, const char *ref) {
    struct metrics_bleu_stats s;
    metrics_bleu_stats(hyp, ref, &s);
    return metrics_bleu_from_stats(&s);
}

/* ---------------------------------------------------------------------------------------------
 * ROUGE: rouge_score 0.1.2 (rouge_scorer.py, tokenize.py, scoring.py). */

/* tokenize.tokenize(text, PorterStemmer()) with the line of each token. Python's lower() maps
 * exactly two non-ASCII characters onto [a-z0-9]: U+0130 -> "i" + U+0307, U+212A -> "k". */
static void tokenize_rouge_(const char *text, struct metrics_toks *t) {
    struct metrics_sb word = {0};
    int line = 0, word_line = 0;
    char small[64];
    for (const unsigned char *p = (const unsigned char *)text;; p++) {
        char c = 0;
        int adv = 0;
        if ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9'))
            c = (char)*p;
        else if (*p >= 'A' && *p <= 'Z')
            c = (char)(*p - 'A' + 'a');
        else if (p[0] == 0xe2 && p[1] == 0x84 && p[2] == 0xaa)
            c = 'k', adv = 2;
        if (c) {
            if (!word.n)
                word_line = line;
            sb_putc_(&word, c);
            p += adv;
            continue;
        }
        if (p[0] == 0xc4 && p[1] == 0xb0) { /* "i" then the combining dot, a separator */
            if (!word.n)
                word_line = line;
            sb_putc_(&word, 'i');
            p++;
        }
        if (word.n) {
            if (word.n > 3) {
                char *stem = word.n < sizeof(small) ? small : HW_MALLOC(word.n + 1);
                metrics_porter_stem(word.s, stem, word.n + 1);
                if (stem[0])
                    toks_push_(t, stem, strlen(stem), word_line);
                if (stem != small)
                    free(stem);
            } else {
                toks_push_(t, word.s, word.n, word_line);
            }
            word.n = 0;
        }
        if (*p == '\n')
            line++;
        if (!*p)
            break;
    }
    free(word.s);
}

static double fmeasure_(double precision, double recall) {
    return precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0.0;
}

/* Length of the longest common subsequence of a[0..na) and b[0..nb). */
static int lcs_len_(const int *a, int na, const int *b, int nb) {
    int *row = HW_CALLOC((size_t)(2 * (nb + 1)), sizeof(*row));
    int *prev = row, *cur = row + nb + 1;
    for (int i = 1; i <= na; i++) {
        cur[0] = 0;
        for (int j = 1; j <= nb; j++) {
            if (a[i - 1] == b[j - 1])
                cur[j] = prev[j - 1] + 1;
            else
                cur[j] = prev[j] > cur[j - 1] ? prev[j] : cur[j - 1];
        }
        int *t = prev;
        prev = cur;
        cur = t;
    }
    int len = prev[nb];
    free(row);
    return len;
}

/* lcs_ind(ref, can) (_lcs_table + _backtrack_norec): marks the positions of ref on the LCS that
 * the backtrack picks. t: scratch of (nr+1)*(nc+1) ints. */
static void lcs_mark_(const int *ref, int nr, const int *can, int nc, int *t, char *mark) {
    size_t w = (size_t)nc + 1;
    for (int j = 0; j <= nc; j++)
        t[j] = 0;
    for (int i = 1; i <= nr; i++) {
        t[i * w] = 0;
        for (int j = 1; j <= nc; j++) {
            if (ref[i - 1] == can[j - 1])
                t[i * w + j] = t[(i - 1) * w + j - 1] + 1;
            else
                t[i * w + j] =
                    t[(i - 1) * w + j] > t[i * w + j - 1] ? t[(i - 1) * w + j] : t[i * w + j - 1];
        }
    }
    for (int i = nr, j = nc; i > 0 && j > 0;) {
        if (ref[i - 1] == can[j - 1]) {
            mark[i - 1] = 1;
            i--;
            j--;
        } else if (t[i * w + j - 1] > t[(i - 1) * w + j]) {
            j--;
        } else {
            i--;
        }
    }
}

/* Sentences (text lines that have tokens) of a token list as [start, end) ranges. */
static int sentences_(const struct metrics_toks *t, int *start, int *end) {
    int k = 0;
    for (int i = 0; i < t->n; i++) {
        if (i == 0 || t->line[i] != t->line[i - 1]) {
            start[k] = i;
            k++;
        }
        end[k - 1] = i + 1;
    }
    return k;
}

/* _summary_level_lcs(ref lines, hyp lines) F-measure. Lines without tokens change nothing. */
static double rouge_lsum_(const struct metrics_toks *tr, const int *ir,
                          const struct metrics_toks *th, const int *ih, int n_ids) {
    if (!tr->n || !th->n)
        return 0.0;
    int *rs = HW_MALLOC((size_t)(2 * (tr->n + th->n)) * sizeof(*rs));
    int *re = rs + tr->n, *hs = re + tr->n, *he = hs + th->n;
    int nrs = sentences_(tr, rs, re), nhs = sentences_(th, hs, he);
    int max_r = 0, max_h = 0;
    for (int s = 0; s < nrs; s++)
        max_r = re[s] - rs[s] > max_r ? re[s] - rs[s] : max_r;
    for (int s = 0; s < nhs; s++)
        max_h = he[s] - hs[s] > max_h ? he[s] - hs[s] : max_h;
    int *table = HW_MALLOC((size_t)(max_r + 1) * (size_t)(max_h + 1) * sizeof(*table));
    char *mark = HW_MALLOC((size_t)max_r);
    int *cnt_r = HW_CALLOC((size_t)(2 * n_ids), sizeof(*cnt_r)), *cnt_h = cnt_r + n_ids;
    for (int i = 0; i < tr->n; i++)
        cnt_r[ir[i]]++;
    for (int i = 0; i < th->n; i++)
        cnt_h[ih[i]]++;
    long hits = 0;
    for (int s = 0; s < nrs; s++) {
        const int *r = ir + rs[s];
        int nr = re[s] - rs[s];
        memset(mark, 0, (size_t)nr);
        for (int c = 0; c < nhs; c++)
            lcs_mark_(r, nr, ih + hs[c], he[c] - hs[c], table, mark);
        for (int i = 0; i < nr; i++) {
            if (mark[i] && cnt_h[r[i]] > 0 && cnt_r[r[i]] > 0) {
                hits++;
                cnt_h[r[i]]--;
                cnt_r[r[i]]--;
            }
        }
    }
    free(cnt_r);
    free(mark);
    free(table);
    free(rs);
    double recall = (double)hits / tr->n, precision = (double)hits / th->n;
    return fmeasure_(precision, recall);
}

void metrics_rouge(const char *hyp, const char *ref, struct metrics_rouge *out) {
    struct metrics_toks th = {0}, tr = {0};
    tokenize_rouge_(hyp, &th);
    tokenize_rouge_(ref, &tr);
    int *ih = HW_MALLOC((size_t)(th.n + tr.n + 1) * sizeof(*ih)), *ir = ih + th.n;
    int n_ids = intern_(&th, &tr, ih, ir);
    long inter[2];
    ngram_matches_(ih, th.n, ir, tr.n, 2, inter);
    double f[2];
    for (int k = 0; k < 2; k++) {
        long pc = th.n - k > 0 ? th.n - k : 0, tc = tr.n - k > 0 ? tr.n - k : 0;
        double precision = (double)inter[k] / (double)(pc > 1 ? pc : 1);
        double recall = (double)inter[k] / (double)(tc > 1 ? tc : 1);
        f[k] = fmeasure_(precision, recall);
    }
    out->r1 = f[0];
    out->r2 = f[1];
    if (th.n && tr.n) {
        int lcs = lcs_len_(ir, tr.n, ih, th.n);
        out->rl = fmeasure_((double)lcs / th.n, (double)lcs / tr.n);
    } else {
        out->rl = 0.0;
    }
    out->rlsum = rouge_lsum_(&tr, ir, &th, ih, n_ids);
    free(ih);
    toks_free_(&th);
    toks_free_(&tr);
}

/* ---------------------------------------------------------------------------------------------
 * RoleMRC (see metrics.h) */

void metrics_rolemrc_sample(const char *reply, const char *reference,
                            enum metrics_rolemrc_protocol protocol, struct metrics_rolemrc *out) {
    struct metrics_bleu_stats st;
    metrics_bleu_stats(reply, reference, &st);
    out->bleu = metrics_bleu_from_stats(&st);
    out->bleu_scored = protocol == METRICS_ROLEMRC_STRICT || (st.hyp_len > 0 && st.ref_len > 0);
    if (protocol == METRICS_ROLEMRC_OFFICIAL)
        metrics_rouge(reference, reply, &out->rouge); /* score(target=reply, prediction=ref) */
    else
        metrics_rouge(reply, reference, &out->rouge);
}

/* ---------------------------------------------------------------------------------------------
 * bootstrap */

double metrics_bootstrap_stderr(double (*stat)(const int *idx, int n, void *ctx), void *ctx, int n,
                                int iters, uint64_t seed) {
    if (n < 1 || iters < 2)
        return NAN;
    uint64_t key = rng_hash2(seed, METRICS_BOOT_STREAM);
    int *idx = HW_MALLOC((size_t)n * sizeof(*idx));
    double mean = 0, m2 = 0; /* Welford: a constant statistic gives exactly 0 */
    for (int r = 0; r < iters; r++) {
        for (int i = 0; i < n; i++) {
            int j = (int)(rng_uniform(key, (uint64_t)r * (uint64_t)n + (uint64_t)i) * n);
            idx[i] = j < n ? j : n - 1;
        }
        double v = stat(idx, n, ctx), delta = v - mean;
        mean += delta / (r + 1);
        m2 += delta * (v - mean);
    }
    free(idx);
    return sqrt(m2 / (iters - 1));
}

static double mean_stat_(const int *idx, int n, void *ctx) {
    const double *x = ctx;
    double s = 0;
    for (int i = 0; i < n; i++)
        s += x[idx[i]];
    return s / n;
}

double metrics_bootstrap_mean_stderr(const double *x, int n, int iters, uint64_t seed) {
    return metrics_bootstrap_stderr(mean_stat_, (void *)x, n, iters, seed);
}
