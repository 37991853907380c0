/* fuzz/fuzz_entries.c -- the per-target entry functions (see fuzz_entries.h). Compiled into each
 * libFuzzer binary by `make fuzz`, and unity-included by tests/test_fuzz_regress.c (which links
 * libheadwise.a), so it must build with the project's gcc warning flags too.
 *
 * Besides "does not crash", the entries check a few properties, and abort() when one breaks:
 *   cfg:   a config that loads is dumped (cfg_to_yaml), loads back, and dumps identically;
 *   bpe:   a tokenizer that loads serialises, loads back identically, and
 *          decode(encode(x)) == x for the input bytes;
 *   ckpt, shard: no HDF5 file-level ids are left open (they would keep the file open).
 * `data prepare`'s JSONL reader is static in cli/cmd_data.c, so that file (with cli/args.c, for
 * the option helpers it uses, and cli/cmd_prepare.c, which it calls) is included here too. */
#define _POSIX_C_SOURCE 200809L

#include "fuzz_entries.h"

#include "../ckpt/ckpt.h"
#include "../ckpt/safetensors.h"
#include "../config/config.h"
#include "../core/check.h"
#include "../datasets/bpe.h"
#include "../datasets/bpe_impl.h"
#include "../datasets/chat.h"
#include "../datasets/multifc.h"
#include "../datasets/rolemrc.h"
#include "../datasets/shards.h"

#include "../cli/args.c"
#include "../cli/cmd_data.c"
#include "../cli/cmd_prepare.c"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* libhdf5 (not ours, not instrumented) keeps or leaks small blocks on some corrupt files; the
 * leak checker of the fuzzers and of `make check` ignores allocations made inside it. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) {
    return "leak:libhdf5\n";
}

/* libhdf5 mallocs sizes read from a corrupt file's metadata (up to 2^64) and handles NULL; so
 * does HW_MALLOC (it dies, which the fuzzer reports). Let ASan return NULL as malloc does
 * instead of aborting the run. ASAN_OPTIONS in the environment still overrides this. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) {
    return "allocator_may_return_null=1";
}

/* ------------------------------------------------------------------------------------------ */
/* helpers */

static char tmp_path_[64];

static void tmp_remove_(void) {
    if (tmp_path_[0])
        unlink(tmp_path_);
}

/* Writes data to this process's temporary file and returns its path. */
static const char *to_file_(const uint8_t *data, size_t size) {
    if (!tmp_path_[0]) {
        const char *dir = getenv("TMPDIR");
        snprintf(tmp_path_, sizeof(tmp_path_), "%s/hw_fuzz_XXXXXX",
                 dir && dir[0] && strlen(dir) < 40 ? dir : "/tmp");
        int fd = mkstemp(tmp_path_);
        if (fd < 0) {
            perror("fuzz: mkstemp");
            abort();
        }
        close(fd);
        atexit(tmp_remove_);
    }
    FILE *f = fopen(tmp_path_, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror("fuzz: writing the temporary file");
        abort();
    }
    return tmp_path_;
}

static char *dup_nul_(const uint8_t *data, size_t size) {
    char *s = HW_MALLOC(size + 1);
    if (size)
        memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

static FILE *devnull_(void) {
    static FILE *f;
    if (!f)
        f = fopen("/dev/null", "w");
    if (!f)
        abort();
    return f;
}

static void property_failed_(const char *target, const char *what) {
    fprintf(stderr, "fuzz_%s: property broken: %s\n", target, what);
    abort();
}

/* Every HDF5 file, group, dataset, attribute and named datatype a reader opens must be closed
 * again: a leaked id keeps the file open (and is a resource leak). (HDF5 1.10 has no public
 * count of dataspace and property-list ids, so those are not checked.) */
static void check_hdf5_closed_(const char *target) {
    ssize_t n = H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (n != 0) {
        fprintf(stderr, "fuzz_%s: %zd HDF5 object ids left open\n", target, n);
        property_failed_(target, "HDF5 ids left open");
    }
}

/* ------------------------------------------------------------------------------------------ */
/* core/cfg.c */

int fuzz_one_cfg(const uint8_t *data, size_t size) {
    char *text = dup_nul_(data, size);
    char err[HW_ERR_LEN];
    struct hw_config *c = HW_MALLOC(sizeof(*c)), *c2 = HW_MALLOC(sizeof(*c2));
    if (cfg_load_string(c, text, "fuzz.yaml", 0, NULL, err) == 0) {
        char *y = cfg_to_yaml(c);
        if (cfg_load_string(c2, y, "resolved.yaml", 0, NULL, err) != 0) {
            fprintf(stderr, "%s\n--- resolved config:\n%s", err, y);
            property_failed_("cfg", "cfg_to_yaml output does not load back");
        }
        char *y2 = cfg_to_yaml(c2);
        if (strcmp(y, y2) != 0) {
            fprintf(stderr, "--- first:\n%s--- second:\n%s", y, y2);
            property_failed_("cfg", "cfg_to_yaml -> cfg_load_string -> cfg_to_yaml differs");
        }
        free(y);
        free(y2);
    }
    /* the first line as a command-line override ("key.path=value") on the defaults */
    char *nl = strchr(text, '\n');
    if (nl)
        *nl = '\0';
    cfg_defaults(c);
    cfg_override(c, text, err);
    free(c);
    free(c2);
    free(text);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* datasets/bpe.c */

#define FUZZ_ENCODE_MAX 4096 /* bytes of the input also run through encode/decode */

/* a Hugging Face tokenizer round-trips only valid UTF-8 whose every byte it has a token for
 * (the library replaces invalid sequences and drops unknown bytes; so does headwise) */
static int hf_round_trips_(const struct bpe *t, const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (t->byte_id[s[i]] < 0)
            return 0;
    size_t fixed_n = n;
    unsigned char *fixed = bpe_hf_fix_utf8(s, n, &fixed_n);
    free(fixed);
    return fixed == NULL; /* NULL: already valid */
}

int fuzz_one_bpe(const uint8_t *data, size_t size) {
    struct bpe t, t2;
    char err[HW_ERR_LEN];
    if (bpe_from_json(&t, (const char *)data, size, "fuzz.json", err) == 0) {
        char *js = bpe_to_json(&t);
        if (bpe_from_json(&t2, js, strlen(js), "saved.json", err) != 0) {
            fprintf(stderr, "%s\n", err);
            property_failed_("bpe", "bpe_to_json output does not load back");
        }
        char *js2 = bpe_to_json(&t2);
        if (strcmp(js, js2) != 0)
            property_failed_("bpe", "bpe_to_json -> bpe_from_json -> bpe_to_json differs");
        free(js);
        free(js2);
        bpe_free(&t2);
        size_t n = size < FUZZ_ENCODE_MAX ? size : FUZZ_ENCODE_MAX;
        const int round_trips = !bpe_is_hf(&t) || hf_round_trips_(&t, data, n);
        for (int allow = 0; allow < 2; allow++) {
            int32_t *ids = NULL;
            char *back = NULL;
            int64_t k = bpe_encode(&t, (const char *)data, n, allow, &ids);
            int64_t m = k >= 0 ? bpe_decode(&t, ids, k, &back) : -1;
            if (k < 0 || (round_trips && (m != (int64_t)n || (n && memcmp(back, data, n) != 0))))
                property_failed_("bpe", "decode(encode(x)) != x");
            free(ids);
            free(back);
        }
    }
    bpe_free(&t);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* datasets/rolemrc.c (+ chat.c) and `data prepare --format jsonl` */

int fuzz_one_jsonl(const uint8_t *data, size_t size) {
    const char *path = to_file_(data, size);
    char err[HW_ERR_LEN];
    struct rolemrc r;
    if (rolemrc_load(&r, path, err) == 0) {
        struct chat_template tpl;
        chat_template_default(&tpl);
        for (int i = 0; i < r.n; i++) {
            const struct rolemrc_example *e = &r.ex[i];
            char *out = NULL, group[128];
            struct chat_span *spans = NULL;
            int len = chat_render(&tpl, e->msgs, e->n_msgs, 1, &out, &spans, err);
            if (len < 0 || (size_t)len != strlen(out))
                property_failed_("jsonl", "chat_render of a loaded example failed");
            for (int j = 0; j < e->n_msgs; j++)
                if (spans[j].content_start > spans[j].content_end || spans[j].content_end > len ||
                    (size_t)(spans[j].content_end - spans[j].content_start) !=
                        strlen(e->msgs[j].content))
                    property_failed_("jsonl", "chat span does not cover the message content");
            rolemrc_task_group(e->task, group, sizeof(group));
            free(out);
            free(spans);
        }
        rolemrc_free(&r);
    }
    size_t len = 0;
    char *text = read_jsonl(path, "text", EOT, &len, err);
    if (text && strlen(text) > len)
        property_failed_("jsonl", "read_jsonl length");
    free(text);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* datasets/multifc.c */

int fuzz_one_multifc(const uint8_t *data, size_t size) {
    const char *path = to_file_(data, size);
    char err[HW_ERR_LEN];
    struct multifc m;
    if (multifc_load(&m, path, err) == 0) {
        int *split = HW_MALLOC((size_t)(m.n > 0 ? m.n : 1) * sizeof(int));
        multifc_split(&m, 0.1, 0.2, 1337, split);
        for (int i = 0; i < m.n; i++) {
            const struct multifc_example *e = &m.ex[i];
            if (split[i] < 0 || split[i] > 2 || e->domain < 0 || e->domain >= m.n_dom ||
                e->label_id >= m.dom[e->domain].n_labels || (m.labelled && e->label_id < 0))
                property_failed_("multifc", "split or index out of range");
        }
        free(split);
        multifc_free(&m);
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* ckpt/ckpt.c (single process: struct dist * is NULL) */

int fuzz_one_ckpt(const uint8_t *data, size_t size) {
    const char *path = to_file_(data, size);
    char err[HW_ERR_LEN];
    struct ckpt_file f;
    if (ckpt_open(&f, NULL, path, err) == 0) {
        struct ckpt_meta m;
        ckpt_read_meta(&f, &m, err);
        ckpt_meta_free(&m);
        ckpt_close(&f);
    }
    ckpt_verify(NULL, path, devnull_(), err);
    ckpt_info(NULL, path, devnull_(), err);
    check_hdf5_closed_("ckpt");
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* datasets/shards.c */

#define FUZZ_SHARD_READ 4096 /* tokens read from each end of the shard */

int fuzz_one_shard(const uint8_t *data, size_t size) {
    const char *path = to_file_(data, size);
    char err[HW_ERR_LEN];
    struct shard s;
    if (shard_open(&s, path, err) == 0) {
        int64_t n = s.n < FUZZ_SHARD_READ ? s.n : FUZZ_SHARD_READ;
        int32_t *buf = HW_MALLOC((size_t)(n > 0 ? n : 1) * sizeof(int32_t));
        if (n > 0 && shard_read(&s, buf, 0, n, err) == 0)
            shard_read(&s, buf, s.n - n, n, err);
        free(buf);
        shard_close(&s);
        struct loader l;
        if (loader_open(&l, path, 4, 1, 7, err) == 0) {
            int32_t tok[2 * 4], tgt[2 * 4];
            loader_next(&l, tok, tgt, 2, err);
            loader_close(&l);
        }
    }
    check_hdf5_closed_("shard");
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* ckpt/safetensors.c */

#define FUZZ_ST_VALUES 4096 /* values converted from each tensor */

int fuzz_one_safetensors(const uint8_t *data, size_t size) {
    const char *path = to_file_(data, size);
    char err[HW_ERR_LEN];
    struct st_file f;
    if (st_open(&f, path, err) == 0) {
        float *buf = HW_MALLOC(sizeof(float) * FUZZ_ST_VALUES);
        for (int i = 0; i < f.n; i++) {
            struct st_tensor t = f.t[i];
            const unsigned char *end = (const unsigned char *)f.map + f.map_len;
            size_t bytes = (size_t)t.numel * (t.dtype == ST_F32 ? 4 : 2);
            if (t.data < (const unsigned char *)f.map || (size_t)(end - t.data) < bytes)
                property_failed_("safetensors", "a tensor's data lies outside the file");
            if (t.numel > FUZZ_ST_VALUES)
                t.numel = FUZZ_ST_VALUES;
            st_to_f32(&t, buf);
            if (i > 0 && f.t[i].data < f.t[i - 1].data + (size_t)f.t[i - 1].numel *
                                                             (f.t[i - 1].dtype == ST_F32 ? 4 : 2))
                property_failed_("safetensors", "tensors overlap");
        }
        free(buf);
    }
    st_close(&f);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */

const struct fuzz_target fuzz_targets[] = {
    {"cfg", fuzz_one_cfg},
    {"bpe", fuzz_one_bpe},
    {"jsonl", fuzz_one_jsonl},
    {"multifc", fuzz_one_multifc},
    {"ckpt", fuzz_one_ckpt},
    {"shard", fuzz_one_shard},
    {"safetensors", fuzz_one_safetensors},
    {NULL, NULL},
};
