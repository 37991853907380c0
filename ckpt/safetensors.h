/* ckpt/safetensors.h -- the safetensors file format (Hugging Face): read (memory-mapped, every
 * header field checked) and write. Owns struct st_file and the conversion of its F32, F16 and
 * BF16 tensors to float32.
 *
 * Layout: an 8-byte little-endian header length N, N bytes of JSON (UTF-8, may be padded with
 * spaces), then the data region. The JSON maps each tensor name to {"dtype": "F32", "shape":
 * [..], "data_offsets": [begin, end]} (offsets relative to the data region, end - begin = the
 * tensor's bytes); an optional "__metadata__" object maps strings to strings. Tensors are raw
 * little-endian, row-major. The reader refuses (one line naming the file and the tensor) a
 * header that runs past the file, a tensor whose offsets run past the file, overlap another's
 * or do not match its dtype and shape, and a dtype it cannot convert. */
#ifndef HW_SAFETENSORS_H
#define HW_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 8

enum st_dtype { ST_F32, ST_F16, ST_BF16 };

struct st_tensor {
    char *name;
    enum st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    const unsigned char *data; /* into the mapping */
};

struct st_file {
    char *path;
    void *map; /* the whole file, read-only */
    size_t map_len;
    int n;
    struct st_tensor *t; /* (n) in the order of their data offsets */
};

/* Maps and parses path. 0, or HW_EIO / HW_EFORMAT with one line in err (nothing to free then;
 * st_close is still safe on the zeroed struct). */
int st_open(struct st_file *f, const char *path, char *err);
void st_close(struct st_file *f);
/* The tensor called name, or NULL. */
const struct st_tensor *st_find(const struct st_file *f, const char *name);
/* Converts t's numel values to float32 (out has numel floats). */
void st_to_f32(const struct st_tensor *t, float *out);
const char *st_dtype_name(enum st_dtype d);

/* One tensor to write: float32 data, stored as dtype (F32, or rounded to nearest even in BF16
 * or F16). */
struct st_out {
    const char *name;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const float *data;
};
/* Writes a safetensors file atomically (a temporary beside path, renamed over it), tensors in
 * the given order, with the "__metadata__" {"format": "pt"}. 0 or HW_EIO with err. */
int st_write(const char *path, const struct st_out *t, int n, enum st_dtype dtype, char *err);

/* float <-> half helpers (round to nearest even; exposed for tests) */
uint16_t st_f32_to_bf16(float x);
uint16_t st_f32_to_f16(float x);
float st_bf16_to_f32(uint16_t h);
float st_f16_to_f32(uint16_t h);

#endif /* HW_SAFETENSORS_H */
