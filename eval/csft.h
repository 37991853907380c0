/* eval/csft.h -- the context-dependency indicator of conditional SFT (ALGORITHMS.md §4.1-4.2,
 * analyse_dataset/utils.py::get_batch_user_attention and process_dataset.py in
 * YihanWang617/context_awareness): per response turn, the mean over its tokens of the maximum
 * over heads of the attention mass on user-content tokens at one layer of a seed model; the
 * tagging of the user turns of high-scoring responses; the score histogram. */
#ifndef HW_CSFT_H
#define HW_CSFT_H

#include "../datasets/sft.h"
#include "../model/gpt.h"

#include <stdint.h>
#include <stdio.h>

/* max over heads h of sum over keys j with user[j] of p[h * n_keys + j]. */
double csft_token_mass(const double *p, int H, int n_keys, const uint8_t *user);

/* Scores of every message of one conversation: scores[i] for an assistant message i with at
 * least one content token inside the model's max_T (the conversation is cut to max_T tokens),
 * NAN otherwise. U_m is every user-content token before the response (sft_is_user_content:
 * role tags, BOS/EOS, end-of-turn text, newline tokens, system content and earlier assistant
 * turns are out), Y_m the response's content tokens. m holds the whole model (one rank).
 * Returns the number of tokens cut off (0 when it fitted), or HW_EFORMAT with err. */
int csft_score_conv(struct gpt *m, const struct bpe *tok, const struct chat_template *t,
                    const struct chat_msg *msgs, int n, int layer, double *scores, char *err);

/* Tags c from scores (as csft_score_conv fills them): for every assistant message with
 * score > beta, the nearest user message before it gets sft_tag_text(content, indicator)
 * (once, however many of its responses score high). Returns the number of tagged user turns;
 * beta >= 1 tags nothing, since scores are <= 1. */
int csft_tag_conv(struct sft_conv *c, const double *scores, double beta, const char *indicator);

/* Prints a 10-bin histogram of the finite scores over [0, 1] and the fraction above beta. */
void csft_histogram(FILE *f, const double *scores, int n, double beta);

#endif /* HW_CSFT_H */
