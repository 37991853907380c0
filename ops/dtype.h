/* ops/dtype.h -- element types of backend buffers and tensor views. Parameters, gradients and
 * optimizer moments are fp32 master copies; activations and GEMM inputs may be bf16 on
 * backends that have it (ops_supports); the rec model and the finite-difference tests use
 * fp64. */
#ifndef HW_DTYPE_H
#define HW_DTYPE_H

#include <stddef.h>

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

#ifdef __cplusplus
}
#endif

#endif /* HW_DTYPE_H */
