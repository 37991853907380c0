/* dist/stage.h -- host staging of backend buffers for the collectives of dist.c (private to
 * dist/): the MPI rings run on host memory, so a backend whose buffers the host cannot address
 * (a GPU) has each buffer copied into pinned host memory, reduced or exchanged there, and
 * copied back. The copies run on the backend's communication stream, ordered after the compute
 * stream's work by events, so the compute stream goes on while a gradient bucket is copied.
 * Buffers are kept per slot and grow; a slot is one role of one collective (see dist.c). */
#ifndef HW_DIST_STAGE_H
#define HW_DIST_STAGE_H

#include <stddef.h>

struct ops;
struct dist_stage;

struct dist_stage *stage_new(const struct ops *be);
void stage_free(struct dist_stage *s);
/* The pinned host buffer of slot, at least n floats (its contents survive only if it did not
 * grow). */
float *stage_host(struct dist_stage *s, int slot, size_t n);
/* Backend -> host buffer of slot, after the compute stream's work so far; returns the host
 * buffer once the data is there. */
float *stage_down(struct dist_stage *s, int slot, const float *dev, size_t n);
/* The same copy queued on the communication stream; stage_wait(slot) returns when it is done,
 * so the compute stream is not held up meanwhile. */
float *stage_down_async(struct dist_stage *s, int slot, const float *dev, size_t n);
void stage_wait(struct dist_stage *s, int slot);
/* Host buffer of slot -> backend: the compute stream's later work sees the data; returns when
 * the host buffer may be reused. */
void stage_up(struct dist_stage *s, int slot, float *dev, size_t n);

#endif /* HW_DIST_STAGE_H */
