/* ops/embed.h -- token embedding lookup and its scatter-add backward.
 * tok: (N) ids; wte: (V, C); out: (N, C). The backward splits columns across threads so every
 * row of dwte is summed in token order (deterministic, no atomics). An id outside [0, V) stops
 * the process naming the id and its position (the data readers check ids at open; this is the
 * last line of defence against a heap overflow). */
#ifndef HW_EMBED_H
#define HW_EMBED_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void embed_forward_cpu(float *out, const int32_t *tok, const float *wte, int N, int C, int V);
void embed_backward_cpu(float *dwte, const float *dout, const int32_t *tok, int N, int C, int V);
/* dst rows ids[i] += (float) src row i, in order (fp64 rows: the rec model's table gradient
 * scatter on one rank). */
void rows_scatter_add_f64_cpu(float *dst, const int32_t *ids, int n, int dim, const double *src);
/* out = a + b over n floats (out may alias a). */
void residual_add_cpu(float *out, const float *a, const float *b, int64_t n);

#ifdef HW_CUDA /* same contracts; every pointer is a device pointer (ops/<family>_cuda.cu) */
/* The backward sorts the token ids (stable radix sort) and sums each dwte row in token order, as
 * the CPU does: no atomics, bit-identical run after run. */
void embed_forward_cuda(float *out, const int32_t *tok, const float *wte, int N, int C, int V);
void embed_backward_cuda(float *dwte, const float *dout, const int32_t *tok, int N, int C, int V);
void rows_scatter_add_f64_cuda(float *dst, const int32_t *ids, int n, int dim, const double *src);
void residual_add_cuda(float *out, const float *a, const float *b, int64_t n);
#endif /* HW_CUDA */

#ifdef __cplusplus
}
#endif

#endif /* HW_EMBED_H */
