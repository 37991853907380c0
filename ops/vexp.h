/* ops/vexp.h -- exp(x) in straight-line float arithmetic, so that a loop calling it compiles to
 * SIMD code (libm's expf is a call per element: in the attention tiles, softmax cross-entropy and
 * SwiGLU it cost about as much as the tile products around it). Cody-Waite reduction
 * x = n ln2 + r, |r| <= ln2/2, a degree-7 polynomial for exp(r) and 2^n from the exponent bits:
 * within 1 ulp of expf over [-87, 88]; x < -87 (exp below 1.7e-38, and -inf) gives 0, and x > 88
 * gives exp(88), about 1.65e38. */
#ifndef HW_VEXP_H
#define HW_VEXP_H

#include <math.h>
#include <stdint.h>

/* a * b + c, fused where the target has FMA (one rounding; vectorizes to vfmadd) */
#ifdef __FMA__
#define VEXP_MADD(a, b, c) fmaf(a, b, c)
#else
#define VEXP_MADD(a, b, c) ((a) * (b) + (c))
#endif

static inline float vexpf(float x) {
    /* exp(-inf) = 0, as for masked scores: a factor, not a branch (a select after the arithmetic
     * lets the compiler make the whole body conditional, which does not vectorize) */
    const float keep = x < -87.0f ? 0.0f : 1.0f;
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    /* n = x / ln 2 rounded to nearest by adding 1.5 * 2^23 (no floorf, which does not vectorize
     * under a mask); n also sits in the low bits of t */
    union {
        float f;
        int32_t i;
    } t = {.f = VEXP_MADD(x, 1.44269504088896341f, 12582912.0f)}, two_n;
    const float n = t.f - 12582912.0f;
    float r = VEXP_MADD(n, -0.693145751953125f, x); /* ln 2, high part: exact for |n| <= 128 */
    r = VEXP_MADD(n, -1.42860682030941723e-6f, r);  /* ln 2, low part */
    float p = 1.0f / 5040;
    p = VEXP_MADD(p, r, 1.0f / 720);
    p = VEXP_MADD(p, r, 1.0f / 120);
    p = VEXP_MADD(p, r, 1.0f / 24);
    p = VEXP_MADD(p, r, 1.0f / 6);
    p = VEXP_MADD(p, r, 0.5f);
    p = VEXP_MADD(p, r, 1.0f);
    p = VEXP_MADD(p, r, 1.0f);
    /* 2^n from its exponent bits, in unsigned arithmetic: a NaN input (a diverged run's logits)
     * gives garbage bits here, which must not be signed overflow; p is NaN anyway */
    two_n.i = (int32_t)(((uint32_t)t.i - 0x4B400000u + 127u) << 23);
    return p * two_n.f * keep;
}

#endif /* HW_VEXP_H */
