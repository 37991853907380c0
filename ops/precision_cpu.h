/* ops/precision_cpu.h -- bf16 inputs on the CPU backend (train.precision: bf16; ops.h's
 * set_precision). There is no bf16 GEMM in Debian's OpenBLAS (0.3.21 is built without sbgemm),
 * so the kernels round their operands to bf16 and multiply them with sgemm: a product of two
 * bf16 values is exact in fp32, so this is a bf16 GEMM with fp32 accumulation up to the
 * summation order, at fp32 speed plus the rounding passes. The flag is process-wide and set
 * once, before training starts. */
#ifndef HW_PRECISION_CPU_H
#define HW_PRECISION_CPU_H

#include "dtype.h"

#include <stddef.h>

extern int cpu_bf16_inputs; /* 1: round GEMM and attention-tile inputs to bf16 */

enum hw_dtype cpu_set_precision(enum hw_dtype t);
enum hw_dtype cpu_precision(void);
/* rows x cols of src (row stride ld) rounded to bf16 into this thread's scratch buffer `slot`
 * (0..3; the dense layers use 0-2, the attention kernels 0-3 before their parallel region),
 * row stride cols; valid until the next call with the same slot on this thread */
const float *cpu_bf16_rows(int slot, const float *src, size_t rows, size_t cols, size_t ld);

#endif /* HW_PRECISION_CPU_H */
