/* fuzz/fuzz_jsonl.c -- libFuzzer target: datasets/rolemrc.c: rolemrc_load (+ chat_render) and `data
 * prepare`'s JSONL reader on the input. Built and run by `make fuzz` (docs/fuzzing.md); the work is
 * in fuzz_entries.c. */
#include "fuzz_entries.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_one_jsonl(data, size);
}
