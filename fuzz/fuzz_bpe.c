/* fuzz/fuzz_bpe.c -- libFuzzer target: datasets/bpe.c: bpe_from_json on the input (tokenizer.json),
 * round trip, encode/decode. Built and run by `make fuzz` (docs/fuzzing.md); the work is in
 * fuzz_entries.c. */
#include "fuzz_entries.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_one_bpe(data, size);
}
