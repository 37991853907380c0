/* fuzz/fuzz_ckpt.c -- libFuzzer target: ckpt/ckpt.c: ckpt_open + ckpt_read_meta, ckpt_verify and
 * ckpt_info on the input (HDF5). Built and run by `make fuzz` (docs/fuzzing.md); the work is in
 * fuzz_entries.c. */
#include "fuzz_entries.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_one_ckpt(data, size);
}
