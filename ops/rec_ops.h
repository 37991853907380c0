/* ops/rec_ops.h -- the kernels of the DARE / TWIN rec model (model/rec.h) that are not GEMMs,
 * in double: parameter casts, the gathers that build [item; category; time] rows from the
 * looked-up table rows, GSU scores and top-K, the ESU softmax and weighted sums, the MLP head's
 * bias, BatchNorm, PReLU and two-class softmax cross-entropy with their backwards, the feature
 * cross [t, h, t*h], the attention backward, the per-row gradient sums before the table scatter,
 * and the explicit L2 term. model/rec.c keeps the ids and counts on the host and runs every
 * element of its arrays through these, so the model runs where its buffers live.
 *
 * Arrays are row-major, in the backend's memory (int32 index arrays too), double unless named
 * float. The CPU kernels are the reference: a GPU kernel keeps each element's formula; the order
 * inside sums over rows or features and an element's last bits (fused multiply-adds, the
 * device's exp/log) may differ. Masked history slots score REC_MASKED (the reference's
 * -2^32 + 1). */
#ifndef HW_REC_OPS_H
#define HW_REC_OPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define REC_MASKED (-4294967295.0)

struct rec_ops {
    /* y = (double) x over n */
    void (*to_f64)(size_t n, const float *x, double *y);
    /* y += (float) x over n */
    void (*add_to_f32)(size_t n, const double *x, float *y);
    /* Columns [off, off + dim) of the target rows t (B x D) and history rows h (B*L x D) from
     * the gathered table rows (float, nu x dim): row b of t takes rows[tix[b]], row (b, j) of h
     * rows[hix[b L + j]]; an index < 0 leaves the columns as they are. */
    void (*gather_concat)(int B, int L, const int32_t *tix, const int32_t *hix, const float *rows,
                          int dim, int off, int D, double *t, double *h);
    /* s (B x L): cs <q_b, k_bj>[0, sem) + ct <q_b, k_bj>[sem, Da) where hitem[b L + j] > 0, else
     * REC_MASKED (q: B x Da, k: B*L x Da). */
    void (*scores)(int B, int L, const int32_t *hitem, const double *q, const double *k, int sem,
                   int Da, double cs, double ct, double *s);
    /* idx (B x K): the K best slots of each row of s, best first; ties keep the lower slot. */
    void (*topk)(int B, int L, int K, const double *s, int32_t *idx);
    /* Per row b: softmax over the unmasked scores of slots[b n + i] (slots NULL: i < n = L)
     * into wt (B x n), h (B x R) = sum_i wt_i v[b L + slot_i]; all masked: zeros. */
    void (*esu)(int B, int n, int L, const double *s, const int32_t *slots, const double *v, int R,
                double *wt, double *h);
    /* y (B x n) += bias (n) per row */
    void (*add_bias)(int B, int n, double *y, const double *bias);
    /* out (n) = (acc ? out : 0) + the sum of the B rows of x (B x n), rows in order */
    void (*colsum)(int B, int n, const double *x, double *out, int acc);
    /* out (F) = sum over rows of (z - mean)^2 */
    void (*colsum_sq_centered)(int B, int F, const double *z, const double *mean, double *out);
    /* xh = (z - mean) rstd, y = g xh + be (B x F) */
    void (*bn_apply)(int B, int F, const double *z, const double *mean, const double *rstd,
                     const double *g, const double *be, double *xh, double *y);
    /* dgam += sum dx xh, dbet += sum dx, sums[f] = sum dx g, sums[F + f] = sum dx g xh */
    void (*bn_bwd_sums)(int B, int F, const double *dx, const double *xh, const double *g,
                        double *dgam, double *dbet, double *sums);
    /* dx = rstd / N (N dx g - sums[f] - xh sums[F + f]) in place */
    void (*bn_bwd_apply)(int B, int F, double *dx, const double *g, const double *rstd,
                         const double *xh, const double *sums, double N);
    /* o = a > 0 ? a : alpha[0] a over n */
    void (*prelu_fwd)(size_t n, const double *a, const double *alpha, double *o);
    /* where a <= 0: dalpha[0] += sum a dx (before the scale), dx *= alpha[0] */
    void (*prelu_bwd)(size_t n, const double *a, const double *alpha, double *dx, double *dalpha);
    /* q (B x 2) = softmax of the two logits per row */
    void (*softmax2)(int B, const double *logit, double *q);
    /* loss_b = inv_n log(q[b, y_b] + 1e-8) (y_b = 0 for label > 0.5, else 1) into loss (B);
     * dlog (B x 2, may be NULL) = the gradient of -sum loss_b w.r.t. the logits. */
    void (*xent2)(int B, const double *q, const float *label, double inv_n, double *loss,
                  double *dlog);
    /* z (B x 3R) = [t, h, t * h] */
    void (*features)(int B, int R, const double *t, const double *h, double *z);
    /* from dz (B x 3R): dt += dz_t + dz_th h, dh = dz_h + dz_th t */
    void (*features_bwd)(int B, int R, const double *dz, const double *t, const double *h,
                         double *dt, double *dh);
    /* The ESU backward of each row b from dh (B x R): with the softmax weights wt (B x n) of
     * slots[b n + i] (NULL: i), dvr[b L + slot] += wt dh, dq[b] and dk[b L + slot] += the
     * score gradients (cs on [0, sem), ct on [sem, Da)). A row's slots are distinct (top-K
     * output or 0..L-1): the GPU updates their dv/dk rows in parallel. */
    void (*attn_bwd)(int B, int n, int L, const int32_t *slots, const double *wt, const double *dh,
                     const double *vr, const double *qa, const double *ka, int R, int Da, int sem,
                     double cs, double ct, double *dq, double *dk, double *dvr);
    /* y += x over n */
    void (*axpy)(size_t n, const double *x, double *y);
    /* acc (nu x dim) = per unique row u, the sum (in list order) of its occurrences
     * occ[start[u] .. start[u+1]): occurrence o < B is target row o of t (B x D), else history
     * row o - B of h; columns [off, off + dim). */
    void (*rows_accum)(int nu, int dim, const int32_t *start, const int32_t *occ, int B,
                       const double *t, const double *h, int off, int D, double *acc);
    /* Returns s0 + sum x^2 (to the host; the CPU adds in order onto s0); with g, also
     * g += (float)(c x). */
    double (*l2)(size_t n, const float *x, float *g, double c, double s0);
};

extern const struct rec_ops rec_ops_cpu;
#ifdef HW_CUDA
extern const struct rec_ops rec_ops_cuda;
#endif

/* The host versions of two building blocks (the CPU kernels; tests): top-K of n scores with
 * val as k doubles of scratch, and one row's ESU. */
void rec_topk_host(const double *s, int n, int k, int32_t *idx, double *val);
void rec_esu_host(const double *s, const int32_t *slots, int n, const double *v, int dim,
                  double *wt, double *h);

#ifdef __cplusplus
}
#endif

#endif /* HW_REC_OPS_H */
