/* ops/titans_ops.h -- the kernels of the Titans memory module (model/titans.h) that are not
 * GEMMs: its activations and their first and second derivatives, the data-dependent gates, the
 * depthwise causal conv, per-head l2-normalisation, chunk means and expansions, the inner loss
 * residual, the per-tensor surprise clamp, and the associative scans over the chunk states with
 * their reverse. model/titans_impl.h runs every element of its tensors through these (and the
 * backend's GEMM and copies), so the module runs where its buffers live.
 *
 * Every kernel takes the element type first: the CPU implements HW_F32 and HW_F64 (the fp64
 * instantiation serves the finite-difference tests), the GPU HW_F32. Arrays are row-major and
 * in the backend's memory; "rows x D" arrays are contiguous unless a leading dimension is given.
 * The CPU kernels are the reference: each GPU kernel keeps its per-element formula; the order of
 * its sums (dot products, norms, column sums over rows) and the last bits of an element (fused
 * multiply-adds, the device's exp/erf) may differ. */
#ifndef HW_TITANS_OPS_H
#define HW_TITANS_OPS_H

#include "dtype.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum titans_unary {
    TT_GELU,    /* y = x Phi(x) (the exact GELU) */
    TT_SIGMOID, /* y = 1 / (1 + exp(-x)) */
    TT_SILU,    /* y = x sigmoid(x) */
    TT_NEG,     /* y = -x */
    TT_ONE,     /* y = 1 (x unused) */
};

enum titans_sum {
    TT_SUM_MEAN, /* out = (0 + x_0 + ... ) / rows */
    TT_SUM_SET,  /* out = 0 + x_0 + ...           */
    TT_SUM_ACC,  /* out = out + x_0 + ...         */
};

enum titans_expand {
    TT_EXP_SET,     /* dst = src            */
    TT_EXP_ADD_DIV, /* dst = dst + src / rpg */
};

struct titans_ops {
    /* y = f(x) over n elements (y may equal x). */
    void (*unary)(enum hw_dtype t, enum titans_unary op, size_t n, const void *x, void *y);
    /* r = u gelu'(h) (acc: r += u gelu'(h)); r may equal u when acc is 0. */
    void (*mul_gelu1)(enum hw_dtype t, size_t n, const void *u, const void *h, void *r, int acc);
    /* The reverse of r = u gelu'(h) seen from rb = dL/dr: hb += rb u gelu''(h), then u becomes
     * its adjoint rb gelu'(h). */
    void (*gelu2_rev)(enum hw_dtype t, size_t n, const void *h, const void *rb, void *u, void *hb);
    /* a *= silu'(z) = s (1 + z (1 - s)), s = sigmoid(z). */
    void (*silu_bwd)(enum hw_dtype t, size_t n, const void *z, void *a);
    /* z (n x H) = scale sigmoid(z + b) in place (b: H biases, NULL = 0). */
    void (*gate_fwd)(enum hw_dtype t, int n, int H, double scale, const void *b, void *z);
    /* zb = gb scale s (1 - s), s = val / scale (val = the gate's output), over n elements. */
    void (*gate_bwd)(enum hw_dtype t, size_t n, double scale, const void *val, const void *gb,
                     void *zb);
    /* r (rows x D) = f th_i (p - v): the inner loss's gradient at the memory output. */
    void (*resid)(enum hw_dtype t, int rows, int D, double f, const void *th, const void *p,
                  const void *v, void *r);
    /* Its reverse from rb (rows x D): hb += f th_i rb, dv (row stride lddv) -= f th_i rb,
     * dth (stride lddth) += f <p - v, rb>. */
    void (*resid_rev)(enum hw_dtype t, int rows, int D, double f, const void *th, const void *p,
                      const void *v, const void *rb, void *hb, void *dv, size_t lddv, void *dth,
                      size_t lddth);
    /* out (n x C) = sum_{s<K} cw[s] * z[i + K-1 - s]: the depthwise causal conv over z's K-1
     * history rows and n rows. */
    void (*conv_fwd)(enum hw_dtype t, int n, int C, int K, const void *z, const void *cw,
                     void *out);
    /* Its VJP from a (n x C): dz ((K-1+n) x C) += and dcw (K x C) += . */
    void (*conv_bwd)(enum hw_dtype t, int n, int C, int K, const void *z, const void *cw,
                     const void *a, void *dz, void *dcw);
    /* rows of D (contiguous) in place: nrm_i = |x_i|, x_i /= max(nrm_i, 1e-6). */
    void (*l2n_fwd)(enum hw_dtype t, int rows, int D, void *x, void *nrm);
    /* Its VJP in place on a, with post = the normalised rows. */
    void (*l2n_bwd)(enum hw_dtype t, int rows, int D, const void *post, const void *nrm, void *a);
    /* out (groups x w) from the rows x (groups*rpg x w), group g = rows [g rpg, (g+1) rpg). */
    void (*group_sum)(enum hw_dtype t, int groups, int rpg, int w, const void *x, void *out,
                      enum titans_sum mode);
    /* dst (groups*rpg x w) from src (groups x w): every row of group g gets src row g. */
    void (*group_expand)(enum hw_dtype t, int groups, int rpg, int w, const void *src, void *dst,
                         enum titans_expand mode);
    /* y (N x H x D) = g (N x H) * x, per head (y may equal x). */
    void (*head_scale)(enum hw_dtype t, int N, int H, int D, const void *g, const void *x, void *y);
    /* out_i = <a_i, b_i> over rows of D. */
    void (*row_dot)(enum hw_dtype t, int rows, int D, const void *a, const void *b, void *out);
    /* dst (rows x cols, leading dimension ldd) += src (leading dimension lds). */
    void (*add2d)(enum hw_dtype t, int rows, int cols, void *dst, size_t ldd, const void *src,
                  size_t lds);
    /* h_i = a_i h_{i-1} + x_i over n rows of P (row strides ldx, ldh; x may equal h when
     * ldx == ldh), h_{-1} = prev (NULL: 0; prev may equal h when n == 1). a_i = a[i lda], or
     * 1 - a[i lda] when one_minus. */
    void (*scan)(enum hw_dtype t, int n, size_t P, const void *a, size_t lda, int one_minus,
                 const void *x, size_t ldx, const void *prev, void *h, size_t ldh);
    /* The reverse of one TTT batch's m chunk steps S_r = eta_r S_{r-1} - G_r,
     * W_r = (1 - alpha_r) W_{r-1} + S_r for r = m..1 (state rows 0..m of W, S, Wb, stride ld;
     * step r's gates at eta[(r-1) lda], alpha[(r-1) lda]): Wb row r-1 and the running Sb (P)
     * update, Gb row r-1 (m x P) = -Sb, deta/dal[(r-1) lda] = the gates' adjoints (written). */
    void (*states_rev)(enum hw_dtype t, int m, size_t P, size_t ld, void *Wb, const void *W,
                       const void *S, const void *eta, const void *alpha, size_t lda, void *Sb,
                       void *Gb, void *deta, void *dal);
    /* Clamp each of the L tensors (offsets off[l], sizes numel[l] in one array) to norm <= m:
     * g *= min(1, m / |g|). bwd: G is the unclamped array, Gb its clamped adjoint, turned in
     * place into the raw one, gb = s gb + (s'(|g|) / |g|) <g, gb> g. */
    void (*clamp)(enum hw_dtype t, int L, const size_t *off, const size_t *numel, double m, void *G,
                  void *Gb, int bwd);
    /* 1 when any of the n elements is a NaN or an infinity (read back to the host). */
    int (*nonfinite)(enum hw_dtype t, size_t n, const void *x);
};

extern const struct titans_ops titans_ops_cpu;
#ifdef HW_CUDA
extern const struct titans_ops titans_ops_cuda;
#endif

/* The plain and the blocked parallel scan on host memory (the CPU kernel; tests): h_i = a_i
 * h_{i-1} + x_i as in titans_ops.scan with lda = 1. */
void titans_scan_seq_f(int n, size_t P, const float *a, const float *x, size_t ldx,
                       const float *prev, float *h, size_t ldh);
void titans_scan_f(int n, size_t P, const float *a, const float *x, size_t ldx, const float *prev,
                   float *h, size_t ldh);
void titans_scan_seq_d(int n, size_t P, const double *a, const double *x, size_t ldx,
                       const double *prev, double *h, size_t ldh);
void titans_scan_d(int n, size_t P, const double *a, const double *x, size_t ldx,
                   const double *prev, double *h, size_t ldh);

#ifdef __cplusplus
}
#endif

#endif /* HW_TITANS_OPS_H */
