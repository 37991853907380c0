/* dist/stage.c -- where a rank's backend memory lives: its device (dist_select_device) and the
 * pinned host copies of backend buffers for the MPI collectives (see stage.h). */
#include "stage.h"
#include "dist.h"

#include "../core/check.h"
#include "../ops/ops.h"

#include <stdlib.h>
#include <string.h>

void dist_select_device(const struct dist *d, const struct ops *be, char *desc, size_t n) {
    int local_size, local_rank = dist_local_rank(d, &local_size);
    be->select_device(local_rank, local_size, desc, n);
}

struct slot {
    float *host; /* from be->host_alloc (pinned on a GPU) */
    size_t cap;  /* floats */
    void *done;  /* event: the last copy of this slot finished (on the communication stream) */
};

struct dist_stage {
    const struct ops *be;
    struct slot *slot;
    int n_slot;
    void *compute; /* event: the compute stream's work up to a copy */
};

struct dist_stage *stage_new(const struct ops *be) {
    struct dist_stage *s = HW_CALLOC(1, sizeof(*s));
    s->be = be;
    s->compute = be->event_new();
    return s;
}

void stage_free(struct dist_stage *s) {
    if (!s)
        return;
    s->be->synchronize();
    for (int i = 0; i < s->n_slot; i++) {
        s->be->host_free(s->slot[i].host);
        if (s->slot[i].done)
            s->be->event_free(s->slot[i].done);
    }
    free(s->slot);
    s->be->event_free(s->compute);
    free(s);
}

static struct slot *slot_of(struct dist_stage *s, int i) {
    HW_ASSERT(i >= 0);
    if (i >= s->n_slot) {
        int n = i + 1 > 2 * s->n_slot ? i + 1 : 2 * s->n_slot;
        s->slot = realloc(s->slot, sizeof(*s->slot) * (size_t)n);
        HW_ASSERT(s->slot);
        memset(s->slot + s->n_slot, 0, sizeof(*s->slot) * (size_t)(n - s->n_slot));
        s->n_slot = n;
    }
    struct slot *sl = &s->slot[i];
    if (!sl->done)
        sl->done = s->be->event_new();
    return sl;
}

float *stage_host(struct dist_stage *s, int slot, size_t n) {
    struct slot *sl = slot_of(s, slot);
    if (n == 0)
        n = 1;
    if (n > sl->cap) {
        s->be->event_sync(sl->done); /* no copy may still read or fill the old buffer */
        s->be->host_free(sl->host);
        sl->host = s->be->host_alloc(sizeof(float) * n);
        sl->cap = n;
    }
    return sl->host;
}

float *stage_down_async(struct dist_stage *s, int slot, const float *dev, size_t n) {
    float *h = stage_host(s, slot, n);
    struct slot *sl = slot_of(s, slot);
    const struct ops *be = s->be;
    be->event_record(s->compute, OPS_STREAM_COMPUTE);
    be->event_wait(OPS_STREAM_COMM, s->compute);
    be->copy_async(h, dev, sizeof(float) * n, OPS_STREAM_COMM);
    be->event_record(sl->done, OPS_STREAM_COMM);
    return h;
}

void stage_wait(struct dist_stage *s, int slot) {
    s->be->event_sync(slot_of(s, slot)->done);
}

float *stage_down(struct dist_stage *s, int slot, const float *dev, size_t n) {
    float *h = stage_down_async(s, slot, dev, n);
    stage_wait(s, slot);
    return h;
}

void stage_up(struct dist_stage *s, int slot, float *dev, size_t n) {
    struct slot *sl = slot_of(s, slot);
    const struct ops *be = s->be;
    HW_ASSERT(n <= sl->cap);
    /* the compute stream's work so far may still read dev: the copy comes after it, and
     * the compute stream's later work after the copy */
    be->event_record(s->compute, OPS_STREAM_COMPUTE);
    be->event_wait(OPS_STREAM_COMM, s->compute);
    be->copy_async(dev, sl->host, sizeof(float) * n, OPS_STREAM_COMM);
    be->event_record(sl->done, OPS_STREAM_COMM);
    be->event_wait(OPS_STREAM_COMPUTE, sl->done);
    be->event_sync(sl->done);
}
