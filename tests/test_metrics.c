/* tests/test_metrics.c -- eval/metrics.c against Python references and hand-computed values.
 * Runs /usr/bin/python3 $HW_TESTS_DIR/metrics_ref.py on $HW_TESTS_DIR/fixtures/metrics_pairs.jsonl
 * (scikit-learn F1, nltk BLEU on 13a tokens, nltk Porter stems in all three modes, a rouge_score
 * reimplementation) and checks every value to 1e-6 absolute; without python3, scikit-learn or
 * nltk it prints "test_metrics: SKIP python references: <why>" and runs only the checks in C:
 * small hand-computed BLEU/ROUGE/F1 values, known Porter stems and bootstrap properties. */
#define _POSIX_C_SOURCE 200809L
#include "../eval/metrics.h"
#include "../eval/sha256.h"
#include "check.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TOL 1e-6

static const char *tests_dir(void) {
    const char *d = getenv("HW_TESTS_DIR");
    return d && d[0] ? d : "tests";
}

/* The whole of f into a NUL-terminated heap buffer. */
static char *slurp(FILE *f) {
    size_t n = 0, cap = 1 << 16;
    char *s = malloc(cap);
    size_t got;
    while (s && (got = fread(s + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 == cap) {
            cap *= 2;
            s = realloc(s, cap);
        }
    }
    if (s)
        s[n] = '\0';
    return s;
}

/* Splits text into lines in place (empty lines skipped); returns the count. */
static int split_lines(char *text, char **lines, int max) {
    int n = 0;
    for (char *p = strtok(text, "\n"); p && n < max; p = strtok(NULL, "\n"))
        if (p[0] && strcmp(p, "\r"))
            lines[n++] = p;
    return n;
}

struct maxdiff {
    double bleu, prec, r1, r2, rl, rlsum, f1;
    int stems, stem_bad, tok_bad;
};

static void track(double *m, double c, double ref) {
    double d = fabs(c - ref);
    if (d > *m)
        *m = d;
}

#define CHECK_REF(name, c, ref, item, m)                                                           \
    do {                                                                                           \
        double c_ = (c), r_ = (ref);                                                               \
        track(&(m), c_, r_);                                                                       \
        CHECK_MSG(fabs(c_ - r_) <= TOL, "item %d %s: C %.12g, python %.12g", item, name, c_, r_);  \
    } while (0)

static void check_stems(json_t *stems, int item, struct maxdiff *md) {
    static const enum metrics_porter_mode modes[3] = {METRICS_PORTER_NLTK, METRICS_PORTER_MARTIN,
                                                      METRICS_PORTER_ORIGINAL};
    size_t i;
    json_t *row;
    json_array_foreach(stems, i, row) {
        const char *w = json_string_value(json_array_get(row, 0));
        for (int m = 0; m < 3; m++) {
            const char *want = json_string_value(json_array_get(row, (size_t)m + 1));
            char got[256];
            metrics_porter_stem_mode(w, modes[m], got, sizeof(got));
            md->stems++;
            md->stem_bad += strcmp(got, want) != 0;
            CHECK_MSG(!strcmp(got, want), "item %d stem mode %d of '%s': C '%s', nltk '%s'", item,
                      m, w, got, want);
        }
    }
}

static void check_text(json_t *in, json_t *ref, int item, struct maxdiff *md) {
    const char *hyp = json_string_value(json_object_get(in, "hyp"));
    const char *rf = json_string_value(json_object_get(in, "ref"));
    CHECK(hyp && rf);
    if (!hyp || !rf)
        return;
    const char *texts[2] = {hyp, rf}, *keys[2] = {"tok13a_hyp", "tok13a_ref"};
    for (int k = 0; k < 2; k++) {
        size_t n = metrics_tokenize_13a(texts[k], NULL, 0);
        char *tok = malloc(n + 1);
        CHECK(metrics_tokenize_13a(texts[k], tok, n + 1) == n);
        const char *want = json_string_value(json_object_get(ref, keys[k]));
        md->tok_bad += !want || strcmp(tok, want) != 0;
        CHECK_MSG(want && !strcmp(tok, want), "item %d %s: C '%s', python '%s'", item, keys[k], tok,
                  want ? want : "(null)");
        free(tok);
    }
    struct metrics_bleu_stats st;
    metrics_bleu_stats(hyp, rf, &st);
    json_t *prec = json_object_get(ref, "bleu_precisions");
    for (int k = 0; k < 4; k++) {
        double p = (double)st.matches[k] / (double)(st.possible[k] > 1 ? st.possible[k] : 1);
        CHECK_REF("bleu precision", p, json_real_value(json_array_get(prec, (size_t)k)), item,
                  md->prec);
    }
    CHECK_REF("bleu", metrics_bleu(hyp, rf), json_number_value(json_object_get(ref, "bleu")), item,
              md->bleu);
    struct metrics_rouge r;
    metrics_rouge(hyp, rf, &r);
    CHECK_REF("rouge1", r.r1, json_number_value(json_object_get(ref, "rouge1")), item, md->r1);
    CHECK_REF("rouge2", r.r2, json_number_value(json_object_get(ref, "rouge2")), item, md->r2);
    CHECK_REF("rougeL", r.rl, json_number_value(json_object_get(ref, "rougeL")), item, md->rl);
    CHECK_REF("rougeLsum", r.rlsum, json_number_value(json_object_get(ref, "rougeLsum")), item,
              md->rlsum);
    /* RoleMRC's two readings (issue 17 item 9) */
    struct metrics_rolemrc off, strict;
    metrics_rolemrc_sample(hyp, rf, METRICS_ROLEMRC_OFFICIAL, &off);
    metrics_rolemrc_sample(hyp, rf, METRICS_ROLEMRC_STRICT, &strict);
    CHECK_REF("rougeLsum official", off.rouge.rlsum,
              json_number_value(json_object_get(ref, "rougeLsum_official")), item, md->rlsum);
    CHECK_MSG(off.bleu_scored == json_is_true(json_object_get(ref, "bleu_defined")),
              "item %d: bleu_scored %d", item, off.bleu_scored);
    CHECK(strict.bleu_scored == 1 && strict.bleu == off.bleu && strict.rouge.rlsum == r.rlsum);
    CHECK(off.rouge.r1 == r.r1 && off.rouge.r2 == r.r2 && off.rouge.rl == r.rl);
    check_stems(json_object_get(ref, "stems"), item, md);
}

static void check_f1(json_t *in, json_t *ref, int item, struct maxdiff *md) {
    json_t *jg = json_object_get(in, "gold"), *jp = json_object_get(in, "pred");
    int n = (int)json_array_size(jg), k = (int)json_integer_value(json_object_get(in, "n_classes"));
    CHECK(n == (int)json_array_size(jp) && k > 0);
    int *g = malloc(sizeof(int) * (size_t)(n + 1)), *p = malloc(sizeof(int) * (size_t)(n + 1));
    double *per = malloc(sizeof(double) * (size_t)k);
    for (int i = 0; i < n; i++) {
        g[i] = (int)json_integer_value(json_array_get(jg, (size_t)i));
        p[i] = (int)json_integer_value(json_array_get(jp, (size_t)i));
    }
    struct metrics_f1 f;
    metrics_f1(g, p, n, k, &f);
    CHECK_REF("f1 micro", f.micro, json_number_value(json_object_get(ref, "micro")), item, md->f1);
    CHECK_REF("f1 macro", f.macro, json_number_value(json_object_get(ref, "macro")), item, md->f1);
    CHECK(f.n_labels == (int)json_integer_value(json_object_get(ref, "n_labels")));
    metrics_f1_per_label(g, p, n, k, per);
    json_t *jper = json_object_get(ref, "per_label");
    for (int c = 0; c < k; c++) {
        json_t *v = json_array_get(jper, (size_t)c);
        if (json_is_null(v))
            CHECK_MSG(isnan(per[c]), "item %d label %d: C %g, sklearn absent", item, c, per[c]);
        else
            CHECK_REF("f1 per label", per[c], json_number_value(v), item, md->f1);
    }
    CHECK(metrics_majority_label(g, n, k) ==
          (int)json_integer_value(json_object_get(ref, "majority")));
    free(g);
    free(p);
    free(per);
}

/* Compares every fixture item with the Python reference; returns 0 if it ran, -1 if skipped. */
static int check_python_refs(void) {
    char script[512], fixture[512], cmd[1200];
    snprintf(script, sizeof(script), "%s/metrics_ref.py", tests_dir());
    snprintf(fixture, sizeof(fixture), "%s/fixtures/metrics_pairs.jsonl", tests_dir());
    struct stat sb;
    if (stat("/usr/bin/python3", &sb) != 0) {
        printf("test_metrics: SKIP python references: /usr/bin/python3 not found\n");
        return -1;
    }
    FILE *ff = fopen(fixture, "r");
    CHECK_MSG(ff != NULL, "cannot open %s", fixture);
    if (!ff)
        return -1;
    char *fix_text = slurp(ff);
    fclose(ff);
    /* The module check first, so that a missing package is a skip, not a failure. */
    FILE *probe = popen("/usr/bin/python3 -c 'import sklearn.metrics, nltk.stem.porter, "
                        "nltk.translate.bleu_score' 2>&1",
                        "r");
    char *probe_out = probe ? slurp(probe) : NULL;
    int probe_rc = probe ? pclose(probe) : -1;
    if (probe_rc != 0) {
        char *last = probe_out ? strrchr(probe_out, '\n') : NULL;
        while (last && last > probe_out && last[1] == '\0') {
            *last = '\0';
            last = strrchr(probe_out, '\n');
        }
        printf("test_metrics: SKIP python references: %s\n",
               probe_out && probe_out[0] ? (last ? last + 1 : probe_out) : "python3 failed");
        free(probe_out);
        free(fix_text);
        return -1;
    }
    free(probe_out);
    snprintf(cmd, sizeof(cmd), "/usr/bin/python3 '%s' '%s'", script, fixture);
    FILE *py = popen(cmd, "r");
    CHECK(py != NULL);
    char *ref_text = py ? slurp(py) : NULL;
    int rc = py ? pclose(py) : -1;
    CHECK_MSG(rc == 0 && ref_text, "%s exited with status %d", cmd, rc);
    static char *in_lines[4096], *ref_lines[4096];
    int n_in = split_lines(fix_text, in_lines, 4096);
    int n_ref = ref_text ? split_lines(ref_text, ref_lines, 4096) : 0;
    CHECK_MSG(n_in == n_ref && n_in > 40, "fixture has %d items, reference printed %d", n_in,
              n_ref);
    struct maxdiff md = {0};
    int n_text = 0, n_f1 = 0;
    for (int i = 0; i < n_in && i < n_ref; i++) {
        json_error_t err;
        json_t *in = json_loads(in_lines[i], 0, &err), *ref = json_loads(ref_lines[i], 0, &err);
        CHECK_MSG(in && ref, "item %d: bad JSON: %s", i, err.text);
        const char *kind = ref ? json_string_value(json_object_get(ref, "kind")) : NULL;
        if (in && kind && !strcmp(kind, "text")) {
            check_text(in, ref, i, &md);
            n_text++;
        } else if (in && kind && !strcmp(kind, "f1")) {
            check_f1(in, ref, i, &md);
            n_f1++;
        } else if (in && kind && !strcmp(kind, "words")) {
            check_stems(json_object_get(ref, "stems"), i, &md);
        }
        json_decref(in);
        json_decref(ref);
    }
    printf("python references: %d text pairs, %d label sets, %d stems (%d differ), "
           "13a token mismatches %d\n",
           n_text, n_f1, md.stems, md.stem_bad, md.tok_bad);
    printf("max |C - python|: bleu %.3g, bleu precisions %.3g, rouge1 %.3g, rouge2 %.3g, "
           "rougeL %.3g, rougeLsum %.3g, f1 %.3g\n",
           md.bleu, md.prec, md.r1, md.r2, md.rl, md.rlsum, md.f1);
    free(fix_text);
    free(ref_text);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * self-contained checks */

static void check_bleu_by_hand(void) {
    /* identical 6-token texts: every precision 1, no brevity penalty */
    CHECK_CLOSE(metrics_bleu("the cat sat on the mat", "the cat sat on the mat"), 1.0, 1e-12);
    /* "the the the the the the the" vs "the cat is on the mat": 2/7 clipped unigrams, no
     * bigram matches -> 0 without smoothing */
    struct metrics_bleu_stats st;
    metrics_bleu_stats("the the the the the the the", "the cat is on the mat", &st);
    CHECK(st.matches[0] == 2 && st.possible[0] == 7 && st.matches[1] == 0 && st.possible[1] == 6);
    CHECK(st.hyp_len == 7 && st.ref_len == 6);
    CHECK(metrics_bleu("the the the the the the the", "the cat is on the mat") == 0.0);
    /* hyp "a b c d e" vs ref "a b c d e f g": precisions 1, BP = exp(1 - 7/5) */
    CHECK_CLOSE(metrics_bleu("a b c d e", "a b c d e f g"), exp(1 - 7.0 / 5), 1e-12);
    /* hyp "a b c d x" vs ref "a b c d y": p = 4/5, 3/4, 2/3, 1/2; BP 1 */
    CHECK_CLOSE(metrics_bleu("a b c d x", "a b c d y"),
                pow(4.0 / 5 * 3.0 / 4 * 2.0 / 3 * 1.0 / 2, 0.25), 1e-12);
    /* shorter than 4 tokens: no 4-grams, precision 0 */
    CHECK(metrics_bleu("a b c", "a b c") == 0.0);
    CHECK(metrics_bleu("", "a b c d") == 0.0 && metrics_bleu("a b c d", "") == 0.0);
    CHECK(metrics_bleu("", "") == 0.0);
    /* 13a: punctuation split, periods/commas kept inside numbers, case kept */
    char tok[256];
    metrics_tokenize_13a("Hello, World! It costs $1,234.50.", tok, sizeof(tok));
    CHECK_MSG(!strcmp(tok, "Hello , World ! It costs $ 1,234.50 ."), "13a: '%s'", tok);
    metrics_tokenize_13a("a&amp;b 3-4 x-y don't", tok, sizeof(tok));
    CHECK_MSG(!strcmp(tok, "a & b 3 - 4 x-y don't"), "13a: '%s'", tok);
    CHECK(metrics_tokenize_13a("a b", tok, 2) == 3 && !strcmp(tok, "a"));
    /* corpus BLEU from summed statistics */
    struct metrics_bleu_stats a, b, sum;
    memset(&sum, 0, sizeof(sum));
    metrics_bleu_stats("a b c d x", "a b c d y", &a);
    metrics_bleu_stats("a b c d e", "a b c d e f g", &b);
    metrics_bleu_stats_add(&sum, &a);
    metrics_bleu_stats_add(&sum, &b);
    CHECK(sum.matches[0] == 9 && sum.possible[3] == 4 && sum.ref_len == 12);
    CHECK_CLOSE(metrics_bleu_from_stats(&sum),
                pow(9.0 / 10 * 7.0 / 8 * 5.0 / 6 * 3.0 / 4, 0.25) * exp(1 - 12.0 / 10), 1e-12);
}

static void check_rouge_by_hand(void) {
    struct metrics_rouge r;
    /* rouge_score's docstring example */
    metrics_rouge("The quick brown dog jumps on the log.",
                  "The quick brown fox jumps over the lazy dog", &r);
    /* ref 9 tokens, hyp 8; unigram overlap 6 (the x2, quick, brown, dog, jump) */
    CHECK_CLOSE(r.r1, 2 * (6.0 / 8) * (6.0 / 9) / (6.0 / 8 + 6.0 / 9), 1e-12);
    /* bigrams: "the quick", "quick brown" of 7 hyp / 8 ref */
    CHECK_CLOSE(r.r2, 2 * (2.0 / 7) * (2.0 / 8) / (2.0 / 7 + 2.0 / 8), 1e-12);
    /* LCS "the quick brown jump the" = 5 */
    CHECK_CLOSE(r.rl, 2 * (5.0 / 8) * (5.0 / 9) / (5.0 / 8 + 5.0 / 9), 1e-12);
    CHECK_CLOSE(r.rlsum, r.rl, 1e-12);
    /* stemming and case: running/runs -> run */
    metrics_rouge("RUNNING dogs", "runs dog", &r);
    CHECK_CLOSE(r.r1, 1.0, 1e-12);
    CHECK_CLOSE(r.r2, 1.0, 1e-12);
    /* empty texts */
    metrics_rouge("", "a b", &r);
    CHECK(r.r1 == 0 && r.r2 == 0 && r.rl == 0 && r.rlsum == 0);
    metrics_rouge("!!!", "", &r);
    CHECK(r.r1 == 0 && r.rlsum == 0);
    /* union LCS: ref one line "a b c d", hyp lines "a b" and "c d": Lsum 1, L 1 */
    metrics_rouge("a b\nc d", "a b c d", &r);
    CHECK_CLOSE(r.rlsum, 1.0, 1e-12);
    /* hyp lines in the other order: rougeL LCS 2 of 4, Lsum's union still covers all 4 */
    metrics_rouge("c d\na b", "a b c d", &r);
    CHECK_CLOSE(r.rl, 0.5, 1e-12);
    CHECK_CLOSE(r.rlsum, 1.0, 1e-12);
}

static void check_stems_by_hand(void) {
    static const char *const cases[][4] = {
        /* word, NLTK_EXTENSIONS, MARTIN_EXTENSIONS, ORIGINAL_ALGORITHM (all from nltk 3.8) */
        {"caresses", "caress", "caress", "caress"},
        {"ponies", "poni", "poni", "poni"},
        {"ties", "tie", "ti", "ti"},
        {"relational", "relat", "relat", "relat"},
        {"generalization", "gener", "gener", "gener"},
        {"running", "run", "run", "run"},
        {"runs", "run", "run", "run"},
        {"ran", "ran", "ran", "ran"},
        {"happy", "happi", "happi", "happi"},
        {"enjoy", "enjoy", "enjoi", "enjoi"},
        {"sky", "sky", "sky", "sky"},
        {"skies", "sky", "ski", "ski"},
        {"dying", "die", "dy", "dy"},
        {"conformabli", "conform", "conform", "conform"},
        {"archaeologi", "archaeolog", "archaeolog", "archaeologi"},
        {"hopping", "hop", "hop", "hop"},
        {"filing", "file", "file", "file"},
        {"controll", "control", "control", "control"},
        {"is", "is", "is", "i"},
        {"RUNNING", "run", "run", "run"},
    };
    static const enum metrics_porter_mode modes[3] = {METRICS_PORTER_NLTK, METRICS_PORTER_MARTIN,
                                                      METRICS_PORTER_ORIGINAL};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (int m = 0; m < 3; m++) {
            char out[64];
            metrics_porter_stem_mode(cases[i][0], modes[m], out, sizeof(out));
            CHECK_MSG(!strcmp(out, cases[i][m + 1]), "stem mode %d of %s: '%s', want '%s'", m,
                      cases[i][0], out, cases[i][m + 1]);
        }
    }
    char out[8];
    metrics_porter_stem("generalization", out, 4);
    CHECK(!strcmp(out, "gen"));
    metrics_porter_stem("", out, sizeof(out));
    CHECK(!strcmp(out, ""));
    /* a long word goes through the heap path */
    char big[300], res[300];
    memset(big, 'y', 290);
    strcpy(big + 290, "ational");
    metrics_porter_stem(big, res, sizeof(res));
    CHECK(strlen(res) > 0 && strlen(res) <= strlen(big));
}

static void check_f1_by_hand(void) {
    /* gold 0 1 2 2 1 0, pred 0 2 1 2 1 0: label 0 F1 1, label 1 F1 1/2, label 2 F1 1/2 */
    int g[] = {0, 1, 2, 2, 1, 0}, p[] = {0, 2, 1, 2, 1, 0};
    struct metrics_f1 f;
    metrics_f1(g, p, 6, 4, &f);
    CHECK_CLOSE(f.micro, 4.0 / 6, 1e-12);
    CHECK_CLOSE(f.macro, 2.0 / 3, 1e-12);
    CHECK(f.n_labels == 3);
    double per[4];
    metrics_f1_per_label(g, p, 6, 4, per);
    CHECK_CLOSE(per[0], 1.0, 1e-12);
    CHECK_CLOSE(per[1], 0.5, 1e-12);
    CHECK(isnan(per[3]));
    /* a label only predicted counts in macro with F1 0 */
    int g2[] = {0, 0}, p2[] = {0, 1};
    metrics_f1(g2, p2, 2, 2, &f);
    CHECK_CLOSE(f.micro, 0.5, 1e-12);
    CHECK_CLOSE(f.macro, (2 * 1.0 * 0.5 / 1.5 + 0) / 2, 1e-12);
    CHECK(metrics_majority_label(g, 6, 3) == 0);
    int g3[] = {2, 1, 2, 1};
    CHECK(metrics_majority_label(g3, 4, 3) == 1);
    metrics_f1(g, p, 0, 3, &f);
    CHECK(f.micro == 0 && f.macro == 0 && f.n_labels == 0);
}

static double max_stat(const int *idx, int n, void *ctx) {
    const double *x = ctx;
    double best = -1e300; /* max, a statistic other than the mean */
    for (int i = 0; i < n; i++)
        best = x[idx[i]] > best ? x[idx[i]] : best;
    return best;
}

static void check_bootstrap(void) {
    double c[50], x[200];
    for (int i = 0; i < 50; i++)
        c[i] = 0.1;
    CHECK(metrics_bootstrap_mean_stderr(c, 50, 500, 1) == 0.0);
    double mean = 0, var = 0;
    for (int i = 0; i < 200; i++) {
        x[i] = (double)((i * 37) % 101) / 10.0 + (i % 3 == 0 ? 5.0 : 0.0);
        mean += x[i] / 200;
    }
    for (int i = 0; i < 200; i++)
        var += (x[i] - mean) * (x[i] - mean) / 200;
    double se = metrics_bootstrap_mean_stderr(x, 200, 4000, 42);
    CHECK_MSG(fabs(se - sqrt(var / 200)) <= 0.1 * sqrt(var / 200), "bootstrap %g, analytic %g", se,
              sqrt(var / 200));
    CHECK(se == metrics_bootstrap_mean_stderr(x, 200, 4000, 42));
    CHECK(se != metrics_bootstrap_mean_stderr(x, 200, 4000, 43));
    double s1 = metrics_bootstrap_stderr(max_stat, x, 200, 300, 7);
    CHECK(s1 == metrics_bootstrap_stderr(max_stat, x, 200, 300, 7) && s1 >= 0);
    CHECK(isnan(metrics_bootstrap_mean_stderr(x, 0, 100, 1)));
    CHECK(isnan(metrics_bootstrap_mean_stderr(x, 10, 1, 1)));
}

/* RoleMRC's official reading against the strict one on cases worked out by hand. */
static void check_rolemrc_by_hand(void) {
    struct metrics_rolemrc o, s;
    /* reference one line "a b a", reply lines "a" and "b a". Strict (reference as the target):
     * the union LCS of "a b a" with "a" and with "b a" covers positions 2 and 3 only (both
     * backtracks take the last "a"): 2 hits of 3 tokens each way, F 2/3. Official (the reply as
     * the target): "a" and "b a" against "a b a" cover all 3 tokens: F 1. */
    metrics_rolemrc_sample("a\nb a", "a b a", METRICS_ROLEMRC_STRICT, &s);
    metrics_rolemrc_sample("a\nb a", "a b a", METRICS_ROLEMRC_OFFICIAL, &o);
    CHECK_CLOSE(s.rouge.rlsum, 2.0 / 3, 1e-12);
    CHECK_CLOSE(o.rouge.rlsum, 1.0, 1e-12);
    CHECK(o.rouge.r1 == s.rouge.r1 && o.rouge.rl == s.rouge.rl);
    /* an empty reply: official leaves it out of the BLEU mean, strict scores it 0 */
    metrics_rolemrc_sample("", "the reference", METRICS_ROLEMRC_OFFICIAL, &o);
    metrics_rolemrc_sample(" \n ", "the reference", METRICS_ROLEMRC_STRICT, &s);
    CHECK(o.bleu_scored == 0 && o.bleu == 0 && s.bleu_scored == 1 && s.bleu == 0);
    /* a reply with a token counts in both, even with BLEU 0 */
    metrics_rolemrc_sample("x", "the reference", METRICS_ROLEMRC_OFFICIAL, &o);
    CHECK(o.bleu_scored == 1 && o.bleu == 0);
}

/* SHA-256 against FIPS 180-2's test vectors (appendix B) and one across block boundaries. */
static void check_sha256(void) {
    char hex[65];
    sha256_hex("", 0, hex);
    CHECK(!strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    sha256_hex("abc", 3, hex);
    CHECK(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    const char *m2 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha256_hex(m2, strlen(m2), hex);
    CHECK(!strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
    struct sha256 st; /* a million 'a', fed in uneven pieces */
    sha256_init(&st);
    char a[1000];
    memset(a, 'a', sizeof(a));
    for (int done = 0, k = 1; done < 1000000; k = k % 997 + 1) {
        int take = 1000000 - done < k ? 1000000 - done : k;
        sha256_update(&st, a, (size_t)take);
        done += take;
    }
    sha256_final_hex(&st, hex);
    CHECK(!strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"));
    /* 55, 56 and 64 bytes: the padding edge cases, against the one-call form fed bytewise */
    for (size_t n = 55; n <= 64; n++) {
        char one[65], two[65];
        sha256_hex(a, n, one);
        sha256_init(&st);
        for (size_t i = 0; i < n; i++)
            sha256_update(&st, a + i, 1);
        sha256_final_hex(&st, two);
        CHECK(!strcmp(one, two));
    }
    sha256_hex(a, 56,
               hex); /* python3 -c "import hashlib;print(hashlib.sha256(b'a'*56).hexdigest())" */
    CHECK(!strcmp(hex, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"));
}

int main(void) {
    check_rolemrc_by_hand();
    check_sha256();
    check_bleu_by_hand();
    check_rouge_by_hand();
    check_stems_by_hand();
    check_f1_by_hand();
    check_bootstrap();
    check_python_refs();
    return check_report("test_metrics");
}
