/* fuzz/fuzz_shard.c -- libFuzzer target: datasets/shards.h: shard_open + shard_read and the loader
 * on the input (HDF5). Built and run by `make fuzz` (docs/fuzzing.md); the work is in
 * fuzz_entries.c. */
#include "fuzz_entries.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_one_shard(data, size);
}
