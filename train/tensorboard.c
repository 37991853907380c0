/* train/tensorboard.c -- TensorBoard event files (see tensorboard.h). */
#define _POSIX_C_SOURCE 200809L
#include "tensorboard.h"

#include "../core/check.h"
#include "../core/fsutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct tb_writer {
    FILE *f;
    char path[4096];
};

/* ---- CRC-32C, reflected polynomial 0x82F63B78, one table */

static uint32_t crc_table[256];

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
}

uint32_t tb_crc32c(const void *data, size_t n) {
    if (!crc_table[1])
        crc_init();
    const uint8_t *p = data;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++)
        c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static uint32_t masked_crc(const void *data, size_t n) {
    const uint32_t c = tb_crc32c(data, n);
    return ((c >> 15) | (c << 17)) + 0xA282EAD8u;
}

/* ---- protobuf: a growable byte buffer and the few encodings the scalar events need */

struct buf {
    uint8_t *p;
    size_t n, cap;
};

static void put(struct buf *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = HW_REALLOC(b->p, b->cap);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void put_varint(struct buf *b, uint64_t v) {
    uint8_t t[10];
    int k = 0;
    do {
        t[k++] = (uint8_t)((v & 0x7F) | (v > 0x7F ? 0x80 : 0));
        v >>= 7;
    } while (v);
    put(b, t, (size_t)k);
}

static void put_le(struct buf *b, uint64_t v, int bytes) {
    uint8_t t[8];
    for (int i = 0; i < bytes; i++)
        t[i] = (uint8_t)(v >> (8 * i));
    put(b, t, (size_t)bytes);
}

/* field number and wire type (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32) */
static void put_key(struct buf *b, int field, int wire) {
    put_varint(b, (uint64_t)(field << 3 | wire));
}

static void put_bytes(struct buf *b, int field, const void *p, size_t n) {
    put_key(b, field, 2);
    put_varint(b, n);
    put(b, p, n);
}

/* Event { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; } */
static void event_head(struct buf *e, int64_t step) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    const double wall = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
    uint64_t bits;
    memcpy(&bits, &wall, sizeof(bits));
    put_key(e, 1, 1);
    put_le(e, bits, 8);
    put_key(e, 2, 0);
    put_varint(e, (uint64_t)step);
}

/* One TFRecord: uint64 length, masked crc of those 8 bytes, data, masked crc of data. */
static int write_record(struct tb_writer *w, const struct buf *rec) {
    struct buf h = {0};
    put_le(&h, rec->n, 8);
    put_le(&h, masked_crc(h.p, 8), 4);
    uint8_t tail[4];
    const uint32_t c = masked_crc(rec->p, rec->n);
    for (int i = 0; i < 4; i++)
        tail[i] = (uint8_t)(c >> (8 * i));
    const int ok = fwrite(h.p, 1, h.n, w->f) == h.n && fwrite(rec->p, 1, rec->n, w->f) == rec->n &&
                   fwrite(tail, 1, 4, w->f) == 4 && fflush(w->f) == 0;
    free(h.p);
    return ok ? 0 : -1;
}

struct tb_writer *tb_open(const char *run_dir, char *err) {
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/tb", run_dir);
    if (fs_mkdirs(dir, err))
        return NULL;
    char host[256] = "localhost";
    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    struct tb_writer *w = HW_CALLOC(1, sizeof(*w));
    snprintf(w->path, sizeof(w->path), "%.3000s/events.out.tfevents.%lld.%.200s.%ld", dir,
             (long long)time(NULL), host, (long)getpid());
    w->f = fs_create(w->path, err); /* never through a link planted at the name */
    if (!w->f) {
        free(w);
        return NULL;
    }
    struct buf e = {0};
    event_head(&e, 0);
    put_bytes(&e, 3, "brain.Event:2", 13);
    const int rc = write_record(w, &e);
    free(e.p);
    if (rc) {
        hw_errf(err, HW_EIO, "%s: cannot write the first TensorBoard event", w->path);
        tb_close(w);
        return NULL;
    }
    return w;
}

int tb_scalars(struct tb_writer *w, int64_t step, const json_t *metrics) {
    if (!w || !w->f)
        return -1;
    struct buf sum = {0}, val = {0};
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)metrics, key, v) {
        if (!json_is_number(v) || !strcmp(key, "step"))
            continue;
        /* Summary.Value { string tag = 1; float simple_value = 2; } */
        const float x = (float)json_number_value(v);
        uint32_t bits;
        memcpy(&bits, &x, sizeof(bits));
        val.n = 0;
        put_bytes(&val, 1, key, strlen(key));
        put_key(&val, 2, 5);
        put_le(&val, bits, 4);
        put_bytes(&sum, 1, val.p, val.n); /* Summary { repeated Value value = 1; } */
    }
    int rc = 0;
    if (sum.n) {
        struct buf e = {0};
        event_head(&e, step);
        put_bytes(&e, 5, sum.p, sum.n);
        rc = write_record(w, &e);
        free(e.p);
    }
    free(sum.p);
    free(val.p);
    if (rc) {
        fclose(w->f);
        w->f = NULL;
    }
    return rc;
}

const char *tb_path(const struct tb_writer *w) {
    return w->path;
}

void tb_close(struct tb_writer *w) {
    if (!w)
        return;
    if (w->f)
        fclose(w->f);
    free(w);
}
