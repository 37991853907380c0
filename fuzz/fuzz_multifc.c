/* fuzz/fuzz_multifc.c -- libFuzzer target: datasets/multifc.c: multifc_load on the input (CSV or
 * TSV) and multifc_split. Built and run by `make fuzz` (docs/fuzzing.md); the work is in
 * fuzz_entries.c. */
#include "fuzz_entries.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_one_multifc(data, size);
}
