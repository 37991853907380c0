/* eval/metrics.h -- evaluation metrics, each matching one reference implementation exactly:
 * classification F1 (scikit-learn), BLEU (HuggingFace evaluate "bleu"), ROUGE (rouge_score with
 * the nltk Porter stemmer), and bootstrap standard errors from the counter-based RNG.
 * Texts are UTF-8; every function is pure (no globals) and safe to call from several threads.
 * tests/test_metrics.c checks all of them against Python references (tests/metrics_ref.py).
 *
 * METEOR is left out on purpose: HF evaluate's METEOR tokenizes with nltk.word_tokenize (the Punkt
 * sentence model) and matches synonyms through nltk's WordNet corpus; Debian packages neither
 * Punkt nor WordNet in nltk's format (wordnet-base lacks the lexnames file nltk's reader needs)
 * and nothing can be downloaded here, so a METEOR could be neither faithful nor verified. */
#ifndef HW_EVAL_METRICS_H
#define HW_EVAL_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------------------------------------
 * classification */

struct metrics_f1 {
    double micro;
    double macro;
    int n_labels; /* labels averaged in macro */
};
/* gold/pred: label ids in [0, n_classes). sklearn.metrics.f1_score semantics for single-label
 * multiclass: micro = accuracy; macro = unweighted mean of per-label F1 over the labels present
 * in gold or pred (sklearn's default labels=None), zero_division=0. n == 0 gives all zeros.
 * A label outside [0, n_classes) is a bug (HW_ASSERT). */
void metrics_f1(const int *gold, const int *pred, int n, int n_classes, struct metrics_f1 *out);
/* Per-label F1 into f1[n_classes] (NAN for labels absent from both). */
void metrics_f1_per_label(const int *gold, const int *pred, int n, int n_classes, double *f1);
/* The majority-class baseline: predict the most frequent gold label (ties: smallest id) for all.
 * n == 0 gives 0. */
int metrics_majority_label(const int *gold, int n, int n_classes);

/* ---------------------------------------------------------------------------------------------
 * BLEU */

/* BLEU of one hypothesis against one reference exactly as HuggingFace evaluate's "bleu" metric
 * computes it for predictions=[hyp], references=[[ref]]: tokenizer_13a (the sacrebleu 13a
 * tokenizer, no lowercasing; whitespace is Python's str.split() set, Unicode included),
 * max_order 4, smooth=False, geometric mean of modified n-gram precisions times the brevity
 * penalty (the tensorflow/nmt compute_bleu code). Returns 0 when any precision is 0, and when
 * either text has no token. */
double metrics_bleu(const char *hyp, const char *ref);

/* Sufficient statistics of BLEU; summing them over samples (metrics_bleu_stats_add) and calling
 * metrics_bleu_from_stats gives the corpus BLEU that evaluate's "bleu" reports for a whole list
 * of predictions with one reference each. */
struct metrics_bleu_stats {
    long matches[4];  /* clipped n-gram matches, n = 1..4 */
    long possible[4]; /* hypothesis n-grams, n = 1..4 */
    long hyp_len;     /* tokens */
    long ref_len;
};
void metrics_bleu_stats(const char *hyp, const char *ref, struct metrics_bleu_stats *out);
void metrics_bleu_stats_add(struct metrics_bleu_stats *acc, const struct metrics_bleu_stats *s);
double metrics_bleu_from_stats(const struct metrics_bleu_stats *s);
/* The 13a tokens of text, joined by single spaces, into out (truncated to cap-1 bytes, always
 * NUL-terminated when cap > 0). Returns the untruncated length. For tests and debugging. */
size_t metrics_tokenize_13a(const char *text, char *out, size_t cap);

/* ---------------------------------------------------------------------------------------------
 * ROUGE */

struct metrics_rouge {
    double r1, r2, rl, rlsum; /* F-measures */
};
/* rouge_score.RougeScorer(["rouge1","rouge2","rougeL","rougeLsum"], use_stemmer=True)
 * .score(ref, hyp), i.e. what evaluate's "rouge" gives per sample with use_stemmer=True.
 * Default tokenizer: Python lowercase, every char outside [a-z0-9] becomes a space, split on
 * spaces, Porter-stem tokens longer than 3 characters with nltk's PorterStemmer() -- its default
 * mode NLTK_EXTENSIONS, which is what rouge_score constructs -- and drop empty tokens.
 * rougeLsum splits both texts on "\n" and uses the union-LCS summary-level score. */
void metrics_rouge(const char *hyp, const char *ref, struct metrics_rouge *out);

/* The three modes of nltk.stem.porter.PorterStemmer. */
enum metrics_porter_mode {
    METRICS_PORTER_NLTK,     /* NLTK_EXTENSIONS, nltk's default and rouge_score's */
    METRICS_PORTER_MARTIN,   /* MARTIN_EXTENSIONS */
    METRICS_PORTER_ORIGINAL, /* ORIGINAL_ALGORITHM, the 1980 paper */
};
/* PorterStemmer(mode).stem(word) of an ASCII word (uppercase is lowered first) into out,
 * truncated to cap-1 bytes and NUL-terminated when cap > 0. */
void metrics_porter_stem_mode(const char *word, enum metrics_porter_mode mode, char *out,
                              size_t cap);
/* The stemmer ROUGE uses: metrics_porter_stem_mode(word, METRICS_PORTER_NLTK, out, cap). */
void metrics_porter_stem(const char *word, char *out, size_t cap);

/* ---------------------------------------------------------------------------------------------
 * RoleMRC's reference metrics of one sample */

/* How the authors' evaluation.py (LuJunru/RoleMRC) turns the metrics above into its numbers,
 * and headwise's stricter reading:
 *   OFFICIAL: BLEU is evaluate's "bleu" per sample, whose compute raises ZeroDivisionError when
 *     the reply (or the reference) has no 13a token; the script leaves such a sample out of
 *     the BLEU mean (bleu_scored = 0). ROUGE is rouge_score's score(reply, reference), i.e.
 *     the reply as the target: rouge1/2/L F-measures do not depend on the order, rougeLsum's
 *     summary-level union LCS does.
 *   STRICT: an empty reply scores BLEU 0 and counts in the mean (bleu_scored = 1 always);
 *     ROUGE is score(reference, reply) as rouge_score documents it. */
enum metrics_rolemrc_protocol { METRICS_ROLEMRC_OFFICIAL, METRICS_ROLEMRC_STRICT };
struct metrics_rolemrc {
    double bleu;     /* 0 when not scored */
    int bleu_scored; /* 1: counts in the BLEU mean */
    struct metrics_rouge rouge;
};
void metrics_rolemrc_sample(const char *reply, const char *reference,
                            enum metrics_rolemrc_protocol protocol, struct metrics_rolemrc *out);

/* ---------------------------------------------------------------------------------------------
 * bootstrap */

/* Bootstrap standard error of the mean of x[0..n): `iters` resamples with replacement drawn from
 * the counter-based RNG keyed by seed (deterministic). The standard error is the standard
 * deviation (divisor iters-1) of the resampled statistics; NAN when n < 1 or iters < 2. */
double metrics_bootstrap_mean_stderr(const double *x, int n, int iters, uint64_t seed);
/* Bootstrap standard error of any statistic of a resample: stat gets the resampled indices
 * idx[0..n) (each in [0, n)). Resample r uses rng_uniform(rng_hash2(seed, METRICS_BOOT_STREAM),
 * (uint64_t)r * n + i) for idx[i], so a given seed always yields the same resamples. */
double metrics_bootstrap_stderr(double (*stat)(const int *idx, int n, void *ctx), void *ctx, int n,
                                int iters, uint64_t seed);
#define METRICS_BOOT_STREAM 0x626f6f7473747270ULL /* "bootstrp": keeps these draws apart */

#endif /* HW_EVAL_METRICS_H */
