/* fuzz/fuzz_safetensors.c -- libFuzzer target: ckpt/safetensors.h: st_open (the header, every
 * offset and dtype checked) and st_to_f32 of every tensor on the input. Built and run by
 * `make fuzz` (docs/fuzzing.md); the work is in fuzz_entries.c. */
#include "fuzz_entries.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_one_safetensors(data, size);
}
