/* model/gpt_probe.h -- read-outs and surgery on a struct gpt outside the training path:
 * explicit attention probabilities of one layer (the CSFT indicator metric needs the
 * post-softmax rows, which the tiled kernel never forms) and the growth of vocabulary rows
 * for added special tokens. */
#ifndef HW_GPT_PROBE_H
#define HW_GPT_PROBE_H

#include "gpt.h"

#include <stdint.h>

/* After gpt_forward(m, tokens, ..., B = 1, T) on one rank holding the whole model
 * (hp == cp == 1, m->seg NULL): the causal attention probabilities of query position t at
 * layer `layer`, for every query head h, over keys 0..t: p[h * (t + 1) + j]. Computed naively
 * (scores in double, explicit softmax) from the layer's saved q and k after RoPE. */
void gpt_attn_probs(const struct gpt *m, int layer, int t, double *p);

/* Sets rows[0..n_rows) of the (V, C) matrix w to the mean of its rows [0, n_mean) (the
 * initialisation of added tokens, smart_tokenizer_and_embedding_resize). Rows not listed are
 * not touched; the mean is summed in double in row order. */
void gpt_rows_set_mean(float *w, int C, int64_t n_mean, const int64_t *rows, int n_rows);

#endif /* HW_GPT_PROBE_H */
