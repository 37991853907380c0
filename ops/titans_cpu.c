/* ops/titans_cpu.c -- the CPU table of the Titans memory kernels (titans_ops.h): the float and
 * double instantiations of ops/titans_cpu_body.h behind one entry per kernel that dispatches on
 * the element type. */
#include "titans_ops.h"

#include "../core/check.h"

#include <math.h>
#include <stddef.h>

#define T      float
#define SFX(n) n##_f
#define TEXP   expf
#define TSQRT  sqrtf
#define TERF   erff
#include "titans_cpu_body.h"
#undef T
#undef SFX
#undef TEXP
#undef TSQRT
#undef TERF

#define T      double
#define SFX(n) n##_d
#define TEXP   exp
#define TSQRT  sqrt
#define TERF   erf
#include "titans_cpu_body.h"
#undef T
#undef SFX
#undef TEXP
#undef TSQRT
#undef TERF

/* one entry per kernel: the float body for HW_F32, the double one for HW_F64 */
#define FP(p)  ((float *)(p))
#define CFP(p) ((const float *)(p))
#define DP(p)  ((double *)(p))
#define CDP(p) ((const double *)(p))
#define TWO(t, f, FARGS, DARGS)                                                                    \
    do {                                                                                           \
        if ((t) == HW_F32)                                                                         \
            f##_f FARGS;                                                                           \
        else if ((t) == HW_F64)                                                                    \
            f##_d DARGS;                                                                           \
        else                                                                                       \
            HW_DIE("titans kernels: no %s version", hw_dtype_name(t));                             \
    } while (0)

static void cpu_unary(enum hw_dtype t, enum titans_unary op, size_t n, const void *x, void *y) {
    TWO(t, unary_, (op, n, CFP(x), FP(y)), (op, n, CDP(x), DP(y)));
}
static void cpu_mul_gelu1(enum hw_dtype t, size_t n, const void *u, const void *h, void *r,
                          int acc) {
    TWO(t, mul_gelu1_, (n, CFP(u), CFP(h), FP(r), acc), (n, CDP(u), CDP(h), DP(r), acc));
}
static void cpu_gelu2_rev(enum hw_dtype t, size_t n, const void *h, const void *rb, void *u,
                          void *hb) {
    TWO(t, gelu2_rev_, (n, CFP(h), CFP(rb), FP(u), FP(hb)), (n, CDP(h), CDP(rb), DP(u), DP(hb)));
}
static void cpu_silu_bwd(enum hw_dtype t, size_t n, const void *z, void *a) {
    TWO(t, silu_bwd_, (n, CFP(z), FP(a)), (n, CDP(z), DP(a)));
}
static void cpu_gate_fwd(enum hw_dtype t, int n, int H, double scale, const void *b, void *z) {
    TWO(t, gate_fwd_, (n, H, (float)scale, CFP(b), FP(z)), (n, H, scale, CDP(b), DP(z)));
}
static void cpu_gate_bwd(enum hw_dtype t, size_t n, double scale, const void *val, const void *gb,
                         void *zb) {
    TWO(t, gate_bwd_, (n, (float)scale, CFP(val), CFP(gb), FP(zb)),
        (n, scale, CDP(val), CDP(gb), DP(zb)));
}
static void cpu_resid(enum hw_dtype t, int rows, int D, double f, const void *th, const void *p,
                      const void *v, void *r) {
    TWO(t, resid_, (rows, D, (float)f, CFP(th), CFP(p), CFP(v), FP(r)),
        (rows, D, f, CDP(th), CDP(p), CDP(v), DP(r)));
}
static void cpu_resid_rev(enum hw_dtype t, int rows, int D, double f, const void *th, const void *p,
                          const void *v, const void *rb, void *hb, void *dv, size_t lddv, void *dth,
                          size_t lddth) {
    TWO(t, resid_rev_,
        (rows, D, (float)f, CFP(th), CFP(p), CFP(v), CFP(rb), FP(hb), FP(dv), lddv, FP(dth), lddth),
        (rows, D, f, CDP(th), CDP(p), CDP(v), CDP(rb), DP(hb), DP(dv), lddv, DP(dth), lddth));
}
static void cpu_conv_fwd(enum hw_dtype t, int n, int C, int K, const void *z, const void *cw,
                         void *out) {
    TWO(t, conv_fwd_, (n, C, K, CFP(z), CFP(cw), FP(out)), (n, C, K, CDP(z), CDP(cw), DP(out)));
}
static void cpu_conv_bwd(enum hw_dtype t, int n, int C, int K, const void *z, const void *cw,
                         const void *a, void *dz, void *dcw) {
    TWO(t, conv_bwd_, (n, C, K, CFP(z), CFP(cw), CFP(a), FP(dz), FP(dcw)),
        (n, C, K, CDP(z), CDP(cw), CDP(a), DP(dz), DP(dcw)));
}
static void cpu_l2n_fwd(enum hw_dtype t, int rows, int D, void *x, void *nrm) {
    TWO(t, l2n_fwd_, (rows, D, FP(x), FP(nrm)), (rows, D, DP(x), DP(nrm)));
}
static void cpu_l2n_bwd(enum hw_dtype t, int rows, int D, const void *post, const void *nrm,
                        void *a) {
    TWO(t, l2n_bwd_, (rows, D, CFP(post), CFP(nrm), FP(a)), (rows, D, CDP(post), CDP(nrm), DP(a)));
}
static void cpu_group_sum(enum hw_dtype t, int groups, int rpg, int w, const void *x, void *out,
                          enum titans_sum mode) {
    TWO(t, group_sum_, (groups, rpg, w, CFP(x), FP(out), mode),
        (groups, rpg, w, CDP(x), DP(out), mode));
}
static void cpu_group_expand(enum hw_dtype t, int groups, int rpg, int w, const void *src,
                             void *dst, enum titans_expand mode) {
    TWO(t, group_expand_, (groups, rpg, w, CFP(src), FP(dst), mode),
        (groups, rpg, w, CDP(src), DP(dst), mode));
}
static void cpu_head_scale(enum hw_dtype t, int N, int H, int D, const void *g, const void *x,
                           void *y) {
    TWO(t, head_scale_, (N, H, D, CFP(g), CFP(x), FP(y)), (N, H, D, CDP(g), CDP(x), DP(y)));
}
static void cpu_row_dot(enum hw_dtype t, int rows, int D, const void *a, const void *b, void *out) {
    TWO(t, row_dot_, (rows, D, CFP(a), CFP(b), FP(out)), (rows, D, CDP(a), CDP(b), DP(out)));
}
static void cpu_add2d(enum hw_dtype t, int rows, int cols, void *dst, size_t ldd, const void *src,
                      size_t lds) {
    TWO(t, add2d_, (rows, cols, FP(dst), ldd, CFP(src), lds),
        (rows, cols, DP(dst), ldd, CDP(src), lds));
}
static void cpu_scan(enum hw_dtype t, int n, size_t P, const void *a, size_t lda, int one_minus,
                     const void *x, size_t ldx, const void *prev, void *h, size_t ldh) {
    TWO(t, scan_, (n, P, CFP(a), lda, one_minus, CFP(x), ldx, CFP(prev), FP(h), ldh),
        (n, P, CDP(a), lda, one_minus, CDP(x), ldx, CDP(prev), DP(h), ldh));
}
static void cpu_states_rev(enum hw_dtype t, int m, size_t P, size_t ld, void *Wb, const void *W,
                           const void *S, const void *eta, const void *alpha, size_t lda, void *Sb,
                           void *Gb, void *deta, void *dal) {
    TWO(t, states_rev_,
        (m, P, ld, FP(Wb), CFP(W), CFP(S), CFP(eta), CFP(alpha), lda, FP(Sb), FP(Gb), FP(deta),
         FP(dal)),
        (m, P, ld, DP(Wb), CDP(W), CDP(S), CDP(eta), CDP(alpha), lda, DP(Sb), DP(Gb), DP(deta),
         DP(dal)));
}
static void cpu_clamp(enum hw_dtype t, int L, const size_t *off, const size_t *numel, double m,
                      void *G, void *Gb, int bwd) {
    TWO(t, clamp_, (L, off, numel, (float)m, FP(G), FP(Gb), bwd),
        (L, off, numel, m, DP(G), DP(Gb), bwd));
}
static int cpu_nonfinite(enum hw_dtype t, size_t n, const void *x) {
    if (t == HW_F32)
        return nonfinite__f(n, CFP(x));
    if (t == HW_F64)
        return nonfinite__d(n, CDP(x));
    HW_DIE("titans kernels: no %s version", hw_dtype_name(t));
}

const struct titans_ops titans_ops_cpu = {
    .unary = cpu_unary,
    .mul_gelu1 = cpu_mul_gelu1,
    .gelu2_rev = cpu_gelu2_rev,
    .silu_bwd = cpu_silu_bwd,
    .gate_fwd = cpu_gate_fwd,
    .gate_bwd = cpu_gate_bwd,
    .resid = cpu_resid,
    .resid_rev = cpu_resid_rev,
    .conv_fwd = cpu_conv_fwd,
    .conv_bwd = cpu_conv_bwd,
    .l2n_fwd = cpu_l2n_fwd,
    .l2n_bwd = cpu_l2n_bwd,
    .group_sum = cpu_group_sum,
    .group_expand = cpu_group_expand,
    .head_scale = cpu_head_scale,
    .row_dot = cpu_row_dot,
    .add2d = cpu_add2d,
    .scan = cpu_scan,
    .states_rev = cpu_states_rev,
    .clamp = cpu_clamp,
    .nonfinite = cpu_nonfinite,
};
