/* ops/precision_cpu.c -- the CPU backend's bf16 input rounding (see precision_cpu.h): the
 * precision flag and rounded copies of GEMM operands. */
#include "precision_cpu.h"

#include "../core/check.h"

#include <stdlib.h>

int cpu_bf16_inputs;

enum hw_dtype cpu_set_precision(enum hw_dtype t) {
    HW_ASSERT(t == HW_F32 || t == HW_BF16);
    const enum hw_dtype old = cpu_bf16_inputs ? HW_BF16 : HW_F32;
    cpu_bf16_inputs = t == HW_BF16;
    return old;
}

enum hw_dtype cpu_precision(void) {
    return cpu_bf16_inputs ? HW_BF16 : HW_F32;
}

#define SLOTS 4
static _Thread_local float *scratch[SLOTS];
static _Thread_local size_t scratch_cap[SLOTS];

const float *cpu_bf16_rows(int slot, const float *src, size_t rows, size_t cols, size_t ld) {
    HW_ASSERT(slot >= 0 && slot < SLOTS);
    const size_t n = rows * cols;
    if (n > scratch_cap[slot]) {
        free(scratch[slot]);
        scratch[slot] = HW_MALLOC(n * sizeof(float));
        scratch_cap[slot] = n;
    }
    float *dst = scratch[slot];
    const long long nr = (long long)rows;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (long long r = 0; r < nr; r++)
        for (size_t c = 0; c < cols; c++)
            dst[(size_t)r * cols + c] = hw_bf16_round(src[(size_t)r * ld + c]);
    return dst;
}
