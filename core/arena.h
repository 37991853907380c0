/* core/arena.h -- one allocation carved into many tensors (llm.c style). Views handed out
 * are never freed individually; arena_free releases the whole block. */
#ifndef HW_ARENA_H
#define HW_ARENA_H

#include <stddef.h>

struct arena {
    float *base; /* 64-byte aligned block of cap floats */
    size_t cap;  /* capacity in floats */
    size_t used; /* floats handed out so far */
};

/* Allocate and zero cap floats. Dies on OOM. */
void arena_init(struct arena *a, size_t cap);
/* Next n floats, 64-byte aligned. Dies if the arena is exhausted (a sizing bug). */
float *arena_take(struct arena *a, size_t n);
/* Bytes needed for n floats after alignment padding (for sizing passes). */
size_t arena_round(size_t n);
void arena_free(struct arena *a);

#endif /* HW_ARENA_H */
