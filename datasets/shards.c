/* datasets/shards.c -- HDF5 token shards and the deterministic loader (see shards.h). */
#define _POSIX_C_SOURCE 200809L
#include "shards.h"

#include "../core/h5lock.h"

#include "../core/check.h"
#include "../core/fsutil.h"
#include "../core/interrupt.h"
#include "../core/rng.h"

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int set_attr_int(hid_t loc, const char *name, int64_t v) {
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a >= 0 ? H5Awrite(a, H5T_NATIVE_INT64, &v) : -1;
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    return rc < 0 ? -1 : 0;
}

static int set_attr_str(hid_t loc, const char *name, const char *s) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(s));
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a >= 0 ? H5Awrite(a, t, s) : -1;
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    return rc < 0 ? -1 : 0;
}

/* 1 if attribute a holds exactly one element: H5Aread writes every element into the buffer,
 * so a forged array attribute must not be read into a scalar. */
static int attr_is_one_(hid_t a) {
    hid_t sp = H5Aget_space(a);
    int one = sp >= 0 && H5Sget_simple_extent_npoints(sp) == 1;
    if (sp >= 0)
        H5Sclose(sp);
    return one;
}

static int get_attr_int(hid_t loc, const char *name, int64_t *v) {
    if (H5Aexists(loc, name) <= 0)
        return -1;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    herr_t rc = a >= 0 && attr_is_one_(a) ? H5Aread(a, H5T_NATIVE_INT64, v) : -1;
    if (a >= 0)
        H5Aclose(a);
    return rc < 0 ? -1 : 0;
}

static int get_attr_str(hid_t loc, const char *name, char *out, size_t cap) {
    if (H5Aexists(loc, name) <= 0)
        return -1;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t t = a >= 0 ? H5Aget_type(a) : -1;
    int rc = -1;
    if (t >= 0 && H5Tget_class(t) == H5T_STRING && !H5Tis_variable_str(t) && attr_is_one_(a)) {
        size_t n = H5Tget_size(t);
        if (n < cap) {
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, n + 1);
            if (H5Aread(a, mt, out) >= 0) {
                out[n] = 0;
                rc = 0;
            }
            H5Tclose(mt);
        }
    }
    if (t >= 0)
        H5Tclose(t);
    if (a >= 0)
        H5Aclose(a);
    return rc;
}

int shard_write(const char *path, const int32_t *tok, int64_t n, int vocab, char *err) {
    char tmp[600];
    if (fs_temp_path(tmp, sizeof(tmp), path, err))
        return HW_EIO;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fcreate(tmp, H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT); /* never through a link */
    if (f < 0)
        return hw_errf(err, HW_EIO, "%s: cannot create token shard", tmp);
    hsize_t dims[1] = {(hsize_t)n}, chunk[1] = {(hsize_t)(n < 65536 ? (n ? n : 1) : 65536)};
    hid_t sp = H5Screate_simple(1, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, chunk);
    H5Pset_fletcher32(dcpl);
    H5Pset_obj_track_times(dcpl, 0); /* the same tokens give the same bytes */
    hid_t ft = vocab <= 65536 ? H5T_STD_U16LE : H5T_STD_U32LE;
    hid_t d = H5Dcreate2(f, "tokens", ft, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    int bad =
        d < 0 || (n > 0 && H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, tok) < 0);
    bad |= set_attr_str(f, "format", SHARD_FORMAT) < 0;
    bad |= set_attr_int(f, "format_version", SHARD_VERSION) < 0;
    bad |= set_attr_int(f, "vocab", vocab) < 0;
    bad |= set_attr_int(f, "n_tokens", n) < 0;
    if (d >= 0)
        H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(sp);
    bad |= H5Fclose(f) < 0;
    if (bad) {
        unlink(tmp);
        return hw_errf(err, HW_EIO, "%s: writing the token shard failed", path);
    }
    if (rename(tmp, path) != 0) {
        unlink(tmp);
        return hw_errf(err, HW_EIO, "%s: rename failed: %s", path, strerror(errno));
    }
    return 0;
}

int shard_open(struct shard *s, const char *path, char *err) {
    memset(s, 0, sizeof(*s));
    s->file = s->dset = -1;
    snprintf(s->path, sizeof(s->path), "%s", path);
    if (fs_check_regular(path, err)) /* a FIFO would block H5Fopen forever */
        return HW_EIO;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return hw_errf(err, HW_EFORMAT,
                       "%s: not a readable HDF5 token shard (truncated or corrupt)", path);
    s->file = f;
    char fmt[64];
    int64_t ver = 0, vocab = 0, n = 0;
    if (get_attr_str(f, "format", fmt, sizeof(fmt)) < 0 || strcmp(fmt, SHARD_FORMAT) != 0) {
        shard_close(s);
        return hw_errf(err, HW_EFORMAT,
                       "%s: not a headwise token shard (format attribute is not '%s')", path,
                       SHARD_FORMAT);
    }
    if (get_attr_int(f, "format_version", &ver) < 0 || ver != SHARD_VERSION ||
        get_attr_int(f, "vocab", &vocab) < 0 || get_attr_int(f, "n_tokens", &n) < 0) {
        shard_close(s);
        return hw_errf(err, HW_EFORMAT,
                       "%s: unsupported shard version or missing attributes "
                       "(expected format_version %d, vocab, n_tokens)",
                       path, SHARD_VERSION);
    }
    if (vocab < 1 || vocab > INT32_MAX || n < 0) {
        shard_close(s);
        return hw_errf(err, HW_EFORMAT, "%s: attribute vocab %lld or n_tokens %lld is out of range",
                       path, (long long)vocab, (long long)n);
    }
    hid_t d = H5Dopen2(f, "tokens", H5P_DEFAULT);
    if (d < 0) {
        shard_close(s);
        return hw_errf(err, HW_EFORMAT, "%s: dataset /tokens is missing", path);
    }
    s->dset = d;
    hid_t sp = H5Dget_space(d);
    hsize_t dims[1] = {0};
    int nd = H5Sget_simple_extent_ndims(sp);
    if (nd == 1)
        H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    if (nd != 1 || (int64_t)dims[0] != n) {
        shard_close(s);
        return hw_errf(err, HW_EFORMAT, "%s: /tokens holds %llu tokens but n_tokens says %lld",
                       path, (unsigned long long)dims[0], (long long)n);
    }
    /* Shards are never compressed: n tokens of the stored type must fit in the file, or the
     * extent is storage never written (or forged) and must not size the loader's buffers. */
    hid_t ty = H5Dget_type(d);
    size_t esz = ty >= 0 ? H5Tget_size(ty) : 0;
    hsize_t fsize = 0;
    if (ty >= 0)
        H5Tclose(ty);
    /* HDF5 1.10 trusts a compact dataset's in-header buffer and an unfiltered chunk's stored
     * size without checking them against the extent (and reads past them): a compact /tokens
     * must hold its extent, a chunked one must carry the Fletcher32 filter (as written). */
    hid_t dcpl = H5Dget_create_plist(d);
    H5D_layout_t layout = dcpl >= 0 ? H5Pget_layout(dcpl) : H5D_LAYOUT_ERROR;
    unsigned flags = 0, config = 0;
    size_t nvals = 0;
    int fletcher = dcpl >= 0 && H5Pget_filter_by_id2(dcpl, H5Z_FILTER_FLETCHER32, &flags, &nvals,
                                                     NULL, 0, NULL, &config) >= 0;
    if (dcpl >= 0)
        H5Pclose(dcpl);
    int layout_ok = layout == H5D_CONTIGUOUS || (layout == H5D_CHUNKED && fletcher) ||
                    (layout == H5D_COMPACT && H5Dget_storage_size(d) >= (hsize_t)n * esz);
    if (esz == 0 || H5Fget_filesize(f, &fsize) < 0 || (hsize_t)n > fsize / esz || !layout_ok) {
        shard_close(s);
        return hw_errf(err, HW_EFORMAT,
                       "%s: /tokens (%lld tokens) does not fit in the file or is not stored as "
                       "written (truncated or corrupt)",
                       path, (long long)n);
    }
    s->n = n;
    s->vocab = (int)vocab;
    return 0;
}

int shard_read(struct shard *s, int32_t *out, int64_t offset, int64_t n, char *err) {
    HW_ASSERT(offset >= 0 && offset + n <= s->n);
    herr_t rc = 0;
    if (s->mem) {
        memcpy(out, s->mem + offset, sizeof(int32_t) * (size_t)n);
    } else {
        hsize_t start[1] = {(hsize_t)offset}, count[1] = {(hsize_t)n};
        h5lock_enter();
        hid_t fs = H5Dget_space(s->dset);
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
        hid_t ms = H5Screate_simple(1, count, NULL);
        rc = H5Dread(s->dset, H5T_NATIVE_INT32, ms, fs, H5P_DEFAULT, out);
        H5Sclose(ms);
        H5Sclose(fs);
        h5lock_leave();
    }
    if (rc < 0)
        return hw_errf(err, HW_EFORMAT,
                       "%s: reading tokens [%lld, %lld) failed: checksum mismatch or "
                       "truncated file",
                       s->path, (long long)offset, (long long)(offset + n));
    for (int64_t i = 0; i < n; i++)
        if (out[i] < 0 || out[i] >= s->vocab)
            return hw_errf(err, HW_EFORMAT,
                           "%s: token %d at offset %lld is outside the vocabulary "
                           "(%d)",
                           s->path, out[i], (long long)(offset + i), s->vocab);
    return 0;
}

int shard_check_vocab(struct shard *s, int vocab, char *err) {
    const int64_t blk = (int64_t)1 << 20;
    const char *mb = getenv("HW_SHARD_CACHE_MB");
    const int64_t limit = mb && *mb ? (int64_t)atoll(mb) << 20 : SHARD_CACHE_BYTES;
    const int cache = !s->mem && s->n > 0 && s->n <= limit / (int64_t)sizeof(int32_t);
    int32_t *mem = cache ? HW_MALLOC(sizeof(int32_t) * (size_t)s->n) : NULL;
    int32_t *buf =
        cache ? NULL : HW_MALLOC(sizeof(int32_t) * (size_t)(s->n < blk ? (s->n ? s->n : 1) : blk));
    int rc = 0;
    const int own = s->vocab;
    s->vocab = INT32_MAX; /* the read below checks nothing; this loop checks against vocab */
    for (int64_t off = 0; off < s->n && !rc; off += blk) {
        const int64_t n = s->n - off < blk ? s->n - off : blk;
        if (hw_interrupted()) {
            rc = hw_errf(err, HW_ESTOP, "%s: stopped by a signal while checking token %lld of %lld",
                         s->path, (long long)off, (long long)s->n);
            break;
        }
        if (cache)
            buf = mem + off;
        if ((rc = shard_read(s, buf, off, n, err)))
            break;
        for (int64_t i = 0; i < n; i++)
            if (buf[i] < 0 || buf[i] >= vocab || buf[i] >= own) {
                rc = hw_errf(err, HW_EFORMAT,
                             "%s: token %d at offset %lld is outside the vocabulary of %d "
                             "(the model's %d, the shard's %d)",
                             s->path, buf[i], (long long)(off + i), vocab < own ? vocab : own,
                             vocab, own);
                break;
            }
    }
    s->vocab = vocab < own ? vocab : own;
    if (cache && !rc)
        s->mem = mem;
    else if (cache)
        free(mem);
    else
        free(buf);
    return rc;
}

void shard_close(struct shard *s) {
    free(s->mem);
    s->mem = NULL;
    if (s->dset > 0)
        H5Dclose(s->dset);
    if (s->file > 0)
        H5Fclose(s->file);
    s->dset = s->file = -1;
}

int loader_open(struct loader *l, const char *path, int T, int shuffle, uint64_t seed, char *err) {
    memset(l, 0, sizeof(*l));
    int rc = shard_open(&l->sh, path, err);
    if (rc)
        return rc;
    if (l->sh.n < (int64_t)T + 1) {
        shard_close(&l->sh);
        return hw_errf(err, HW_EFORMAT, "%s: %lld tokens is too few for one sequence of seq_len %d",
                       path, (long long)l->sh.n, T);
    }
    l->T = T;
    l->shuffle = shuffle;
    l->seed = seed;
    l->n_windows = (l->sh.n - 1) / T;
    l->perm_epoch = -1;
    l->perm = HW_MALLOC(sizeof(int64_t) * (size_t)l->n_windows);
    l->buf = HW_MALLOC(sizeof(int32_t) * (size_t)(T + 1));
    return 0;
}

void shard_permutation(int64_t *a, int64_t n, uint64_t key, int shuffle) {
    for (int64_t i = 0; i < n; i++)
        a[i] = i;
    for (int64_t i = n - 1; i > 0 && shuffle; i--) {
        int64_t j = (int64_t)(rng_uniform(key, (uint64_t)i) * (double)(i + 1));
        int64_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

static void make_perm(struct loader *l, int64_t epoch) {
    shard_permutation(l->perm, l->n_windows, rng_hash2(l->seed, 0x5eed0000ULL + (uint64_t)epoch),
                      l->shuffle);
    l->perm_epoch = epoch;
}

int loader_next(struct loader *l, int32_t *tokens, int32_t *targets, int B, char *err) {
    const int T = l->T;
    for (int b = 0; b < B; b++) {
        int64_t epoch = l->pos / l->n_windows, idx = l->pos % l->n_windows;
        if (epoch != l->perm_epoch)
            make_perm(l, epoch);
        int rc = shard_read(&l->sh, l->buf, l->perm[idx] * T, T + 1, err);
        if (rc)
            return rc;
        memcpy(tokens + (size_t)b * T, l->buf, sizeof(int32_t) * (size_t)T);
        memcpy(targets + (size_t)b * T, l->buf + 1, sizeof(int32_t) * (size_t)T);
        l->pos++;
    }
    return 0;
}

void loader_seek(struct loader *l, int64_t pos) {
    l->pos = pos;
}

void loader_close(struct loader *l) {
    shard_close(&l->sh);
    free(l->perm);
    free(l->buf);
    memset(l, 0, sizeof(*l));
}
