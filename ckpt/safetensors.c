/* ckpt/safetensors.c -- safetensors read (mmap) and write (see safetensors.h). */
#define _POSIX_C_SOURCE 200809L
#include "safetensors.h"

#include "../core/check.h"
#include "../core/fsutil.h"
#include "../ops/dtype.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER (100u << 20) /* the reference implementation's limit */

static const char *const dtype_names_[] = {"F32", "F16", "BF16"};
static const int dtype_size_[] = {4, 2, 2};

const char *st_dtype_name(enum st_dtype d) {
    return dtype_names_[d];
}

/* ---- half-precision conversions ---------------------------------------------------------- */

static uint32_t f32_bits_(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static float bits_f32_(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

float st_bf16_to_f32(uint16_t h) {
    return hw_bf16_to_f32(h);
}

uint16_t st_f32_to_bf16(float x) {
    return hw_f32_to_bf16(x);
}

float st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu;
    if (exp == 0x1F)
        return bits_f32_(sign | 0x7F800000u | (man << 13));
    if (exp == 0) { /* zero or subnormal: man * 2^-24 */
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return bits_f32_(sign | ((exp + 112u) << 23) | (man << 13));
}

uint16_t st_f32_to_f16(float x) {
    uint32_t u = f32_bits_(x), sign = (u >> 16) & 0x8000u, a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u)
        return (uint16_t)(sign | 0x7E00u);
    if (a >= 0x477FF000u) /* rounds to 65520 or more: infinity */
        return (uint16_t)(sign | 0x7C00u);
    if (a < 0x38800000u) { /* below 2^-14: subnormal, in units of 2^-24, round to even */
        float v = bits_f32_(a) * 16777216.0f;
        uint32_t q = (uint32_t)v;
        float r = v - (float)q;
        if (r > 0.5f || (r == 0.5f && (q & 1u)))
            q++;
        return (uint16_t)(sign | q);
    }
    uint32_t e = (a >> 23) - 112u, m = a & 0x7FFFFFu;
    uint32_t h = (e << 10) | (m >> 13), rest = m & 0x1FFFu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u)))
        h++; /* a carry into the exponent is right, up to infinity */
    return (uint16_t)(sign | h);
}

void st_to_f32(const struct st_tensor *t, float *out) {
    const unsigned char *p = t->data;
    for (int64_t i = 0; i < t->numel; i++) {
        if (t->dtype == ST_F32) {
            memcpy(out + i, p + 4 * i, 4);
        } else {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = t->dtype == ST_BF16 ? st_bf16_to_f32(h) : st_f16_to_f32(h);
        }
    }
}

/* ---- reading ----------------------------------------------------------------------------- */

static int parse_int_(const json_t *v, int64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *out = (int64_t)json_integer_value(v);
    return 0;
}

/* one header entry into t; data_len bounds the offsets */
static int parse_entry_(const char *path, const char *name, const json_t *e, size_t data_len,
                        const unsigned char *data, struct st_tensor *t, int64_t *begin, char *err) {
    const json_t *dt = json_object_get(e, "dtype"), *sh = json_object_get(e, "shape"),
                 *off = json_object_get(e, "data_offsets");
    if (!json_is_object(e) || !json_is_string(dt) || !json_is_array(sh) || !json_is_array(off) ||
        json_array_size(off) != 2)
        return hw_errf(err, HW_EFORMAT,
                       "%s: tensor '%s': expected {\"dtype\", \"shape\", \"data_offsets\": "
                       "[begin, end]}",
                       path, name);
    int d = -1;
    for (int k = 0; k < 3; k++)
        if (!strcmp(json_string_value(dt), dtype_names_[k]))
            d = k;
    if (d < 0)
        return hw_errf(err, HW_EFORMAT,
                       "%s: tensor '%s': dtype %s is not supported (F32, F16, BF16)", path, name,
                       json_string_value(dt));
    if (json_array_size(sh) > ST_MAX_DIMS)
        return hw_errf(err, HW_EFORMAT, "%s: tensor '%s': more than %d dimensions", path, name,
                       ST_MAX_DIMS);
    t->dtype = (enum st_dtype)d;
    t->ndim = (int)json_array_size(sh);
    t->numel = 1;
    for (int k = 0; k < t->ndim; k++) {
        if (parse_int_(json_array_get(sh, (size_t)k), &t->shape[k]))
            return hw_errf(err, HW_EFORMAT, "%s: tensor '%s': shape[%d] is not a count", path, name,
                           k);
        if (t->shape[k] && t->numel > INT64_MAX / 8 / t->shape[k])
            return hw_errf(err, HW_EFORMAT, "%s: tensor '%s': shape too large", path, name);
        t->numel *= t->shape[k];
    }
    int64_t b, en;
    if (parse_int_(json_array_get(off, 0), &b) || parse_int_(json_array_get(off, 1), &en) ||
        b > en || (uint64_t)en > (uint64_t)data_len)
        return hw_errf(err, HW_EFORMAT,
                       "%s: tensor '%s': data_offsets outside the data region of %zu bytes", path,
                       name, data_len);
    if (en - b != t->numel * dtype_size_[d])
        return hw_errf(err, HW_EFORMAT,
                       "%s: tensor '%s': data_offsets span %lld bytes, %s %lld values need %lld",
                       path, name, (long long)(en - b), dtype_names_[d], (long long)t->numel,
                       (long long)(t->numel * dtype_size_[d]));
    t->data = data + b;
    *begin = b;
    return 0;
}

struct span_ {
    int64_t begin, end;
    int idx;
};

static int span_cmp_(const void *a, const void *b) {
    const struct span_ *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : x->idx - y->idx;
}

/* tensors sorted by offset; overlapping ones are refused */
static int order_tensors_(struct st_file *f, int64_t *begin, char *err) {
    struct span_ *s = HW_MALLOC(sizeof(*s) * (size_t)(f->n ? f->n : 1));
    for (int i = 0; i < f->n; i++)
        s[i] = (struct span_){begin[i], begin[i] + f->t[i].numel * dtype_size_[f->t[i].dtype], i};
    qsort(s, (size_t)f->n, sizeof(*s), span_cmp_);
    int rc = 0;
    for (int i = 1; i < f->n && !rc; i++)
        if (s[i].begin < s[i - 1].end)
            rc = hw_errf(err, HW_EFORMAT, "%s: tensors '%s' and '%s' overlap in the data region",
                         f->path, f->t[s[i - 1].idx].name, f->t[s[i].idx].name);
    if (!rc) {
        struct st_tensor *t = HW_MALLOC(sizeof(*t) * (size_t)(f->n ? f->n : 1));
        for (int i = 0; i < f->n; i++)
            t[i] = f->t[s[i].idx];
        free(f->t);
        f->t = t;
    }
    free(s);
    return rc;
}

static int parse_header_(struct st_file *f, const json_t *root, size_t data_len,
                         const unsigned char *data, char *err) {
    if (!json_is_object(root))
        return hw_errf(err, HW_EFORMAT, "%s: the header is not a JSON object", f->path);
    f->t = HW_CALLOC(json_object_size(root) + 1, sizeof(*f->t));
    int64_t *begin = HW_MALLOC(sizeof(int64_t) * (json_object_size(root) + 1));
    const char *name;
    json_t *e;
    int rc = 0;
    json_object_foreach((json_t *)root, name, e) {
        if (!strcmp(name, "__metadata__")) {
            if (!json_is_object(e))
                rc = hw_errf(err, HW_EFORMAT, "%s: __metadata__ is not an object", f->path);
        } else {
            struct st_tensor *t = &f->t[f->n];
            rc = parse_entry_(f->path, name, e, data_len, data, t, &begin[f->n], err);
            if (!rc) {
                t->name = HW_STRDUP(name);
                f->n++;
            }
        }
        if (rc)
            break;
    }
    if (!rc)
        rc = order_tensors_(f, begin, err);
    free(begin);
    return rc;
}

int st_open(struct st_file *f, const char *path, char *err) {
    memset(f, 0, sizeof(*f));
    int fd = fs_open_read(path, err);
    if (fd < 0)
        return HW_EIO;
    struct stat sb;
    if (fstat(fd, &sb) != 0 || sb.st_size < 8) {
        close(fd);
        return hw_errf(err, HW_EFORMAT, "%s: %s", path,
                       sb.st_size < 8 ? "shorter than the 8-byte header length" : "cannot stat");
    }
    f->map_len = (size_t)sb.st_size;
    f->map = mmap(NULL, f->map_len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        return hw_errf(err, HW_EIO, "%s: cannot map: %s", path, strerror(errno));
    }
    f->path = HW_STRDUP(path);
    const unsigned char *b = f->map;
    uint64_t n = 0;
    for (int k = 7; k >= 0; k--)
        n = n << 8 | b[k];
    if (n > ST_MAX_HEADER || n > f->map_len - 8) {
        hw_errf(err, HW_EFORMAT, "%s: header length %llu runs past the file (%zu bytes)", path,
                (unsigned long long)n, f->map_len);
        st_close(f);
        return HW_EFORMAT;
    }
    json_error_t je;
    json_t *root = json_loadb((const char *)b + 8, (size_t)n, 0, &je);
    int rc = root
                 ? parse_header_(f, root, f->map_len - 8 - (size_t)n, b + 8 + n, err)
                 : hw_errf(err, HW_EFORMAT, "%s: header: %s (column %d)", path, je.text, je.column);
    json_decref(root);
    if (rc)
        st_close(f);
    return rc;
}

void st_close(struct st_file *f) {
    for (int i = 0; i < f->n; i++)
        free(f->t[i].name);
    free(f->t);
    if (f->map)
        munmap(f->map, f->map_len);
    free(f->path);
    memset(f, 0, sizeof(*f));
}

const struct st_tensor *st_find(const struct st_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name))
            return &f->t[i];
    return NULL;
}

/* ---- writing ----------------------------------------------------------------------------- */

static char *header_text_(const struct st_out *t, int n, enum st_dtype dtype, size_t *len) {
    json_t *root = json_object();
    json_object_set_new(root, "__metadata__", json_pack("{s:s}", "format", "pt"));
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        json_t *shape = json_array();
        int64_t numel = 1;
        for (int k = 0; k < t[i].ndim; k++) {
            json_array_append_new(shape, json_integer(t[i].shape[k]));
            numel *= t[i].shape[k];
        }
        int64_t end = off + numel * dtype_size_[dtype];
        json_object_set_new(root, t[i].name,
                            json_pack("{s:s, s:o, s:[I,I]}", "dtype", dtype_names_[dtype], "shape",
                                      shape, "data_offsets", (json_int_t)off, (json_int_t)end));
        off = end;
    }
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    size_t l = strlen(s), pad = (8 - (8 + l) % 8) % 8; /* the data region starts 8-aligned */
    s = HW_REALLOC(s, l + pad + 1);
    memset(s + l, ' ', pad);
    s[l + pad] = 0;
    *len = l + pad;
    return s;
}

static int write_all_(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static int write_tensor_(int fd, const struct st_out *t, enum st_dtype dtype) {
    int64_t numel = 1;
    for (int k = 0; k < t->ndim; k++)
        numel *= t->shape[k];
    if (dtype == ST_F32)
        return write_all_(fd, t->data, sizeof(float) * (size_t)numel);
    enum { CH = 8192 };
    uint16_t buf[CH];
    for (int64_t i = 0; i < numel; i += CH) {
        int64_t m = numel - i < CH ? numel - i : CH;
        for (int64_t j = 0; j < m; j++)
            buf[j] =
                dtype == ST_BF16 ? st_f32_to_bf16(t->data[i + j]) : st_f32_to_f16(t->data[i + j]);
        if (write_all_(fd, buf, sizeof(uint16_t) * (size_t)m))
            return -1;
    }
    return 0;
}

int st_write(const char *path, const struct st_out *t, int n, enum st_dtype dtype, char *err) {
    char tmp[4200];
    if (fs_temp_path(tmp, sizeof(tmp), path, err))
        return HW_EIO;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0)
        return hw_errf(err, HW_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    size_t hl;
    char *h = header_text_(t, n, dtype, &hl);
    unsigned char len8[8];
    for (int k = 0; k < 8; k++)
        len8[k] = (unsigned char)((uint64_t)hl >> (8 * k));
    int bad = write_all_(fd, len8, 8) || write_all_(fd, h, hl);
    for (int i = 0; i < n && !bad; i++)
        bad = write_tensor_(fd, &t[i], dtype);
    free(h);
    if (!bad)
        bad = fsync(fd);
    int e = errno;
    if (close(fd) && !bad) {
        bad = 1;
        e = errno;
    }
    if (!bad && rename(tmp, path) != 0) {
        bad = 1;
        e = errno;
    }
    if (bad) {
        unlink(tmp);
        return hw_errf(err, HW_EIO, "%s: cannot write: %s", path, strerror(e));
    }
    return 0;
}
