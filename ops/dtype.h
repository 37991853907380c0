/* ops/dtype.h -- element types of backend buffers and tensor views. Parameters, gradients and
 * optimizer moments are fp32 master copies; activations and GEMM inputs may be bf16 on
 * backends that have it (ops_supports); the rec model and the finite-difference tests use
 * fp64. */
#ifndef HW_DTYPE_H
#define HW_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

enum hw_dtype {
    HW_F32 = 0,
    HW_BF16 = 1,
    HW_F64 = 2,
    HW_I32 = 3,
    HW_U8 = 4,
};

static inline size_t hw_dtype_size(enum hw_dtype t) {
    switch (t) {
    case HW_F32:
    case HW_I32:
        return 4;
    case HW_BF16:
        return 2;
    case HW_F64:
        return 8;
    case HW_U8:
        return 1;
    }
    return 0;
}

static inline const char *hw_dtype_name(enum hw_dtype t) {
    switch (t) {
    case HW_F32:
        return "fp32";
    case HW_BF16:
        return "bf16";
    case HW_F64:
        return "fp64";
    case HW_I32:
        return "int32";
    case HW_U8:
        return "uint8";
    }
    return "?";
}

/* fp32 -> bf16 bits, round to nearest even; a NaN stays a (quiet) NaN. */
static inline uint16_t hw_f32_to_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u)
        return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

static inline float hw_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

/* x rounded to the nearest bf16 value, as an fp32 (what a bf16 store and load give). */
static inline float hw_bf16_round(float x) {
    return hw_bf16_to_f32(hw_f32_to_bf16(x));
}

#ifdef __cplusplus
}
#endif

#endif /* HW_DTYPE_H */
