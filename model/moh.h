/* model/moh.h -- Mixture-of-Head attention gates (ALGORITHMS.md §1): the router maths on
 * token-major arrays, forward and backward, kept apart from the transformer so that it can be
 * checked on its own against the reference's numbers and by finite differences.
 *
 * Heads 0..hs-1 are shared, hs..H-1 routed (E = H - hs). Per token, from router logits:
 *   reference code (default):   g_r = k * softmax over the top-k set S of z_r (0 outside S)
 *                               g_s = hs * softmax(z_s)   (1 when hs <= 1)
 *                               [a1, a2] = 2 * softmax(z_h)           (when hs > 0 and k > 0)
 *                               G = [a1 * g_s, a2 * g_r]; k = 0: G = H * softmax(z_s)
 *   paper_literal:              the same without the k, hs, 2 (H) factors and without the
 *                               top-k renormalisation: g_r = softmax(z_r) on S
 *   qnorm (LLaMA3 variant):     z_r = |q_i| / std_i(|q_i|) over the routed heads, G = 1 for
 *                               shared and selected heads, 0 else; straight-through gradient.
 * The top-k set is chosen on z_r, ties to the lowest head index, and is a constant of the
 * backward. The load-balance loss is E * sum_i P_i f_i with P_i the mean of softmax(z_r)_i and
 * f_i the fraction of tokens that selected i; its gradient flows only through P. */
#ifndef HW_MOH_H
#define HW_MOH_H

#include <stddef.h>
#include <stdint.h>

struct moh_spec {
    int H, hs, k, E;
    int literal; /* the paper's unscaled form */
    int qnorm;   /* parameter-free query-norm router, binary gates */
    int ste;     /* qnorm: pass the binary gates' gradient to the soft scores (default 1; 0
                    leaves only the exact gradient, i.e. the balance loss's, for testing) */
};

void moh_spec_init(struct moh_spec *s, int H, int hs, int k, int literal, int qnorm);
/* Router logit widths: routed (E, or 0 when k == 0), shared (hs when > 1 and learned), head
 * type (2 when hs > 0, k > 0 and learned). */
int moh_nr(const struct moh_spec *s);
int moh_ns(const struct moh_spec *s);
int moh_nh(const struct moh_spec *s);

/* Per-token state of one layer (N tokens). zr/zs/zh: logits (N x nr/ns/nh), written by the
 * caller (qnorm: zr holds the raw norms and is normalised in place, with qstd the std). */
struct moh_state {
    float *zr, *zs, *zh;
    float *p;     /* (N, E) softmax(zr) over all routed heads */
    float *ps;    /* (N, ns) softmax(zs) */
    float *a;     /* (N, nh) softmax(zh) */
    float *G;     /* (N, H) gates */
    int32_t *sel; /* (N, k) selected routed heads (0..E-1), ascending */
    float *qraw;  /* qnorm: (N, E) raw norms; qstd (N) */
    float *qstd;
};

/* Floats and ints one state needs for N tokens. */
size_t moh_state_floats(const struct moh_spec *s, int N);
size_t moh_state_ints(const struct moh_spec *s, int N);
void moh_state_carve(struct moh_state *st, const struct moh_spec *s, int N, float *f, int32_t *i);

/* Gates from the logits: fills p, ps, a, sel and G. */
void moh_forward(const struct moh_spec *s, int N, struct moh_state *st);
/* Sums over the N tokens of p (psum, E) and of the selection mask (fsum, E), added in. */
void moh_balance_sums(const struct moh_spec *s, int N, const struct moh_state *st, double *psum,
                      double *fsum);
/* E * sum_i (psum_i / n)(fsum_i / n). */
double moh_balance_loss(const struct moh_spec *s, const double *psum, const double *fsum, double n);
/* Backward: dG (N, H) is dL/dG; bal_scale multiplies the balance loss (coefficient / layers /
 * micro-batches), with fsum and n the global selection sums and token count (bal_scale 0: no
 * balance term). Writes dzr, dzs, dzh (qnorm: dzr is the gradient of the raw norms). */
void moh_backward(const struct moh_spec *s, int N, const struct moh_state *st, const float *dG,
                  float bal_scale, const double *fsum, double n, float *dzr, float *dzs,
                  float *dzh);

#endif /* HW_MOH_H */
