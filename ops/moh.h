/* ops/moh.h -- the Mixture-of-Head attention op family (ALGORITHMS.md §1): the router maths on
 * token-major arrays (gates from logits, forward and backward, balance statistics), the gating
 * of head outputs and its backward, the query-norm router's norms, and the per-(sequence, head)
 * row lists the attention kernels compute. Kept apart from the transformer so that it can be
 * checked on its own against the reference's numbers and by finite differences; the backend
 * table (ops.h) has a slot for each *_cpu function below.
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

#ifdef __cplusplus
extern "C" {
#endif

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
void moh_router_forward_cpu(const struct moh_spec *s, int N, struct moh_state *st);
/* Sums over the N tokens of p (psum, E) and of the selection mask (fsum, E), added in. psum and
 * fsum are HOST arrays on every backend (a few numbers per layer). */
void moh_balance_sums_cpu(const struct moh_spec *s, int N, const struct moh_state *st, double *psum,
                          double *fsum);
/* E * sum_i (psum_i / n)(fsum_i / n). */
double moh_balance_loss(const struct moh_spec *s, const double *psum, const double *fsum, double n);
/* Backward: dG (N, H) is dL/dG; bal_scale multiplies the balance loss (coefficient / layers /
 * micro-batches), with fsum and n the global selection sums and token count (bal_scale 0: no
 * balance term). Writes dzr, dzs, dzh (qnorm: dzr is the gradient of the raw norms). */
void moh_router_backward_cpu(const struct moh_spec *s, int N, const struct moh_state *st,
                             const float *dG, float bal_scale, const double *fsum, double n,
                             float *dzr, float *dzs, float *dzh);

/* The head slice of a rank: its Hl local query heads are global heads h0 .. h0+Hl-1 of H, each
 * hd wide; att rows are (N, Hl*hd), gates G (N, H). */
struct moh_heads {
    int Hl, h0, H, hd;
};
/* dst = att with local head h of token t scaled by G[t, h0 + h] (dst may alias att). */
void moh_gate_forward_cpu(float *dst, const float *att, const float *G, int N,
                          const struct moh_heads *hh);
/* datt holds dL/d(gated att) on entry and dL/d(att) on return; dG (N, H) gets the local heads'
 * gate gradients, zeros in the other columns (the head group sums them). */
void moh_gate_backward_cpu(float *datt, float *dG, const float *att, const float *G, int N,
                           const struct moh_heads *hh);
/* qnorm router: qraw (N, E) = |q| of the local routed heads (global head hs + i in column i),
 * zeros in the others; q rows of qkv have stride ld. */
void moh_qnorm_forward_cpu(float *qraw, const float *qkv, int ld, int N, int E, int hs,
                           const struct moh_heads *hh);
/* dq += dz q / |q| for the local routed heads (dz (N, E) the raw norms' gradient). */
void moh_qnorm_backward_cpu(float *dqkv, const float *dz, const float *qraw, const float *qkv,
                            int ld, int N, int E, int hs, const struct moh_heads *hh);
/* Row lists of the attention kernels: for sequence b and local head h, the token rows t that
 * use the head (shared heads: all; routed: the tokens that selected it) go to
 * idx[off[b*Hl+h] .. off[b*Hl+h+1]); off has B*Hl+1 entries. */
void moh_select_rows_cpu(int32_t *idx, int32_t *off, const struct moh_spec *s, const int32_t *sel,
                         int B, int T, const struct moh_heads *hh);

#ifdef HW_CUDA /* same contracts on device pointers (ops/moh_cuda.cu); psum and fsum stay HOST */
void moh_router_forward_cuda(const struct moh_spec *s, int N, struct moh_state *st);
void moh_balance_sums_cuda(const struct moh_spec *s, int N, const struct moh_state *st,
                           double *psum, double *fsum);
void moh_router_backward_cuda(const struct moh_spec *s, int N, const struct moh_state *st,
                              const float *dG, float bal_scale, const double *fsum, double n,
                              float *dzr, float *dzs, float *dzh);
void moh_gate_forward_cuda(float *dst, const float *att, const float *G, int N,
                           const struct moh_heads *hh);
void moh_gate_backward_cuda(float *datt, float *dG, const float *att, const float *G, int N,
                            const struct moh_heads *hh);
void moh_qnorm_forward_cuda(float *qraw, const float *qkv, int ld, int N, int E, int hs,
                            const struct moh_heads *hh);
void moh_qnorm_backward_cuda(float *dqkv, const float *dz, const float *qraw, const float *qkv,
                             int ld, int N, int E, int hs, const struct moh_heads *hh);
void moh_select_rows_cuda(int32_t *idx, int32_t *off, const struct moh_spec *s, const int32_t *sel,
                          int B, int T, const struct moh_heads *hh);
#endif /* HW_CUDA */

#ifdef __cplusplus
}
#endif

#endif /* HW_MOH_H */
