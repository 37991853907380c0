/* fuzz/fuzz_cfg.c -- libFuzzer target: core/cfg.c: cfg_load_string on the input (YAML), the dump
 * round trip, the first line as an override. Built and run by `make fuzz` (docs/fuzzing.md); the
 * work is in fuzz_entries.c. */
#include "fuzz_entries.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_one_cfg(data, size);
}
