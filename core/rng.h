/* core/rng.h -- counter-based random numbers. A value is a pure function of
 * (key, counter), so parameter init and data order do not depend on the rank grid:
 * any rank can produce element i of a tensor without producing elements 0..i-1. */
#ifndef HW_RNG_H
#define HW_RNG_H

#include <stdint.h>

/* 64-bit mix of two words (splitmix64 finaliser on a combined input). */
uint64_t rng_hash2(uint64_t a, uint64_t b);
/* FNV-1a hash of a string, used to key parameters by name. */
uint64_t rng_hash_str(const char *s);
/* Uniform in [0,1) from (key, counter). */
double rng_uniform(uint64_t key, uint64_t counter);
/* Standard normal from (key, counter), Box-Muller on two derived uniforms. */
double rng_normal(uint64_t key, uint64_t counter);

/* A sequential stream for sampling: state is one counter, saved in checkpoints. */
struct rng_stream {
    uint64_t key;
    uint64_t counter;
};
void rng_stream_init(struct rng_stream *s, uint64_t seed, uint64_t stream_id);
uint64_t rng_stream_u64(struct rng_stream *s);
double rng_stream_uniform(struct rng_stream *s);

#endif /* HW_RNG_H */
