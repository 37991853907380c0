/* ops/embed.h -- token embedding lookup and its scatter-add backward.
 * tok: (N) ids; wte: (V, C); out: (N, C). The backward splits columns across threads so every
 * row of dwte is summed in token order (deterministic, no atomics). */
#ifndef HW_EMBED_H
#define HW_EMBED_H

#include <stdint.h>

void embed_forward_cpu(float *out, const int32_t *tok, const float *wte, int N, int C);
void embed_backward_cpu(float *dwte, const float *dout, const int32_t *tok, int N, int C);
/* out = a + b over n floats (out may alias a). */
void residual_add_cpu(float *out, const float *a, const float *b, int64_t n);

#endif /* HW_EMBED_H */
