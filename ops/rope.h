/* ops/rope.h -- rotary position embedding (Su et al. 2021), half-split pairing as in
 * GPT-NeoX / HF LLaMA: pair (i, i + hd/2) rotates by angle pos * theta^(-2i/hd).
 * x: rows of B*T with stride ld; the n_heads heads of size hd start at column 0 of x.
 * pos: (T) absolute position of each row (the same for every sequence of the batch).
 * cos_t/sin_t: (max_T, hd/2) tables. Applied in place. The backward is the inverse rotation. */
#ifndef HW_ROPE_H
#define HW_ROPE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Frequency scaling of the tables (NULL or factor 0: none). llama3 (LLaMA 3.1, HF
 * rope_type "llama3"): with wavelength w_i = 2 pi / f_i and L0 = original_max_seq, frequencies of
 * w_i > L0 / low_freq_factor are divided by factor, those of w_i < L0 / high_freq_factor kept,
 * and those between interpolated with s = (L0 / w_i - low) / (high - low):
 * f_i' = (1 - s) f_i / factor + s f_i. */
struct rope_scaling {
    double factor, low_freq_factor, high_freq_factor, original_max_seq;
};
void rope_tables(float *cos_t, float *sin_t, int max_T, int hd, double theta,
                 const struct rope_scaling *sc);
void rope_forward_cpu(float *x, const float *cos_t, const float *sin_t, int B, int T, int n_heads,
                      int hd, int ld, const int32_t *pos);
void rope_backward_cpu(float *dx, const float *cos_t, const float *sin_t, int B, int T, int n_heads,
                       int hd, int ld, const int32_t *pos);

#ifdef HW_CUDA /* same contracts; every pointer is a device pointer (ops/<family>_cuda.cu) */
void rope_forward_cuda(float *x, const float *cos_t, const float *sin_t, int B, int T, int n_heads,
                       int hd, int ld, const int32_t *pos);
void rope_backward_cuda(float *dx, const float *cos_t, const float *sin_t, int B, int T,
                        int n_heads, int hd, int ld, const int32_t *pos);
#endif /* HW_CUDA */

#ifdef __cplusplus
}
#endif

#endif /* HW_ROPE_H */
