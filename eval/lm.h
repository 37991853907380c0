/* eval/lm.h -- a checkpointed model as a language model for evaluation, in the
 * lm-evaluation-harness sense: log-likelihood of a continuation given a context, rolling
 * log-likelihood of a token stream, and greedy generation with stop strings. Every score is a
 * pure function of its request: a log-likelihood request or perplexity window is one forward
 * pass at its own length, and generation decodes `batch` sequences together (continuous
 * batching) with each row's arithmetic independent of the others. So results do not depend on
 * the batch size or on how examples are shared out across ranks. */
#ifndef HW_LM_H
#define HW_LM_H

#include "../config/config.h"
#include "../datasets/bpe.h"
#include "../model/gpt.h"

#include <stdint.h>

struct lm {
    struct gpt *m;
    struct bpe *tok;
    int batch;        /* rows per forward pass */
    int max_T;        /* longest sequence the model takes */
    int32_t eot;      /* <|endoftext|> id or -1 */
    long n_truncated; /* prompts lm_generate cut from the left to fit (counts up; reset it) */
    /* Polled before every forward pass (and by tasks between examples): nonzero ends the work
     * with HW_ESTOP. NULL: never stop. */
    int (*stop_poll)(void *arg);
    void *stop_arg;
};

/* A stop was requested: the caller ends its work with HW_ESTOP. */
static inline int lm_stop_requested(struct lm *lm) {
    return lm->stop_poll && lm->stop_poll(lm->stop_arg);
}

struct lm_request {
    const char *ctx;  /* context text */
    const char *cont; /* continuation text */
    double ll;        /* out: sum of log-probabilities of the continuation tokens */
    int greedy;       /* out: every continuation token is the argmax */
    int n_tokens;     /* out: continuation tokens */
    int truncated;    /* out: the context was cut from the left to fit max_T */
};

/* lm-eval's _encode_pair: trailing whitespace of the context (what Python's rstrip() removes)
 * moves to the continuation; the pair is
 * encoded whole and the continuation is whole[len(enc(ctx)):]; the context is cut from the
 * left to fit max_T. */
int lm_loglikelihood(struct lm *lm, struct lm_request *req, int n, char *err);

/* Rolling log-likelihood in windows: window w covers tokens[start[w] .. start[w] + max_T] (cut
 * at n); its first token is given and the others are predicted from the tokens before them in
 * the window. ll[w] gets the summed log-probability and cnt[w] the predicted tokens. Returns 0,
 * or HW_ESTOP with err set when a stop was requested. */
int lm_windows_loglik(struct lm *lm, const int32_t *tokens, int64_t n, const int64_t *start,
                      int n_win, double *ll, int64_t *cnt, char *err);

/* lm-eval's loglikelihood_rolling of one text: its tokens after an <|endoftext|> prefix, in the
 * disjoint windows of get_rolling_token_windows(max_seq_len = max_T, context_len = 1) (each
 * window predicts up to max_T new tokens from up to max_T tokens before them); *ll gets the sum
 * and *n the tokens scored. An empty text scores 0. */
int lm_rolling(struct lm *lm, const char *text, double *ll, int64_t *n, char *err);

/* Greedy generation for each prompt (text), up to max_new tokens, stopping at <|endoftext|> or
 * when the generated text contains a stop string (the output is cut before it). outs[i] are
 * malloc'd. Slots are refilled as sequences finish (continuous batching). */
int lm_generate(struct lm *lm, const char *const *prompts, int n, int max_new,
                const struct cfg_list *stop, char **outs, char *err);
/* The same without a KV cache (a full forward pass per new token): the reference for tests. */
int lm_generate_nocache(struct lm *lm, const char *prompt, int max_new, const struct cfg_list *stop,
                        char **out, char *err);

#endif /* HW_LM_H */
