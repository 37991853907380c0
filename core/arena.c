/* core/arena.c -- carved float arenas (see arena.h). */
#define _POSIX_C_SOURCE 200809L
#include "arena.h"

#include "check.h"

#include <stdlib.h>
#include <string.h>

size_t arena_round(size_t n) {
    return (n + 15) & ~(size_t)15;
}

void arena_init(struct arena *a, size_t cap) {
    void *p = NULL;
    cap = arena_round(cap);
    if (posix_memalign(&p, 64, (cap ? cap : 16) * sizeof(float)) != 0)
        HW_DIE("out of memory allocating an arena of %zu floats", cap);
    memset(p, 0, cap * sizeof(float));
    a->base = p;
    a->cap = cap;
    a->used = 0;
}

float *arena_take(struct arena *a, size_t n) {
    size_t r = arena_round(n);
    HW_ASSERT(a->used + r <= a->cap);
    float *p = a->base + a->used;
    a->used += r;
    return p;
}

void arena_free(struct arena *a) {
    free(a->base);
    a->base = NULL;
    a->cap = a->used = 0;
}
