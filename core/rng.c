/* core/rng.c -- counter-based RNG (see rng.h). Reference: splitmix64 (Steele et al. 2014). */
#include "rng.h"

#include <math.h>

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t rng_hash2(uint64_t a, uint64_t b) {
    return mix64(mix64(a + 0x9e3779b97f4a7c15ULL) ^ (b * 0xd1342543de82ef95ULL + 1));
}

uint64_t rng_hash_str(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

double rng_uniform(uint64_t key, uint64_t counter) {
    return (double)(rng_hash2(key, counter) >> 11) * (1.0 / 9007199254740992.0);
}

double rng_normal(uint64_t key, uint64_t counter) {
    double u1 = rng_uniform(key, 2 * counter), u2 = rng_uniform(key, 2 * counter + 1);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void rng_stream_init(struct rng_stream *s, uint64_t seed, uint64_t stream_id) {
    s->key = rng_hash2(seed, stream_id);
    s->counter = 0;
}

uint64_t rng_stream_u64(struct rng_stream *s) {
    return rng_hash2(s->key, s->counter++);
}

double rng_stream_uniform(struct rng_stream *s) {
    return (double)(rng_stream_u64(s) >> 11) * (1.0 / 9007199254740992.0);
}
