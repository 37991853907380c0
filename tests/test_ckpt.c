/* tests/test_ckpt.c -- ckpt/ on one rank: bit-exact round trip of tensors and meta, hyperslab
 * (resharded) reads, keep-N pruning and `latest`, corruption (truncation, a flipped bit in
 * tensor data, non-HDF5 and missing files), failed saves leaving the previous checkpoint and
 * `latest` untouched, and shape mismatches. Works in a mkdtemp directory under /tmp. */
#define _POSIX_C_SOURCE 200809L
#include "../ckpt/ckpt.h"
#include "../core/check.h"
#include "../dist/dist.h"
#include "check.h"

#include <hdf5.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct dist g_dist;
static char g_root[256];

// ------------------------------------------------------------------------------------------
// helpers

static void rm_rf(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *dp = opendir(path);
        struct dirent *e;
        while (dp && (e = readdir(dp)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char sub[1024];
            snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
            rm_rf(sub);
        }
        if (dp)
            closedir(dp);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void make_dir(char *out, size_t n, const char *name) {
    snprintf(out, n, "%s/%s", g_root, name);
    mkdir(out, 0777);
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static char *slurp(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, fp);
    fclose(fp);
    buf[got] = '\0';
    if (len)
        *len = got;
    return buf;
}

static void spit(const char *path, const void *data, size_t n) {
    FILE *fp = fopen(path, "wb");
    if (fp) {
        fwrite(data, 1, n, fp);
        fclose(fp);
    }
}

static int count_entries(const char *dir) {
    DIR *dp = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (dp && (e = readdir(dp)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    if (dp)
        closedir(dp);
    return n;
}

static int contains(const char *s, const char *sub) {
    return s && strstr(s, sub) != NULL;
}

/* A full (unsharded) tensor with deterministic contents. */
static struct ckpt_tensor tensor(const char *name, int ndim, const int64_t *shape, float seed) {
    struct ckpt_tensor t;
    memset(&t, 0, sizeof(t));
    t.name = name;
    t.ndim = ndim;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        t.shape[i] = shape[i];
        t.count[i] = shape[i];
        n *= shape[i];
    }
    t.write = 1;
    t.data = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        t.data[i] = seed + 0.001f * (float)i - 1e-7f * (float)(i * i);
    return t;
}

static int64_t numel(const struct ckpt_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

#define N_T 5
static const char *const names[N_T] = {"wte", "blocks.0.attn.wq", "blocks.0.norm.g",
                                       "blocks.0.mlp.w3d", "big"};

struct state {
    struct ckpt_tensor t[3][N_T];
    struct ckpt_group g[3];
    struct ckpt_meta m;
};

static void state_init(struct state *s, int64_t step) {
    static const int64_t sh0[] = {7, 13}, sh1[] = {64, 64}, sh2[] = {13}, sh3[] = {3, 4, 5},
                         sh4[] = {600, 500};
    const int64_t *shapes[N_T] = {sh0, sh1, sh2, sh3, sh4};
    const int ndims[N_T] = {2, 2, 1, 3, 2};
    static const char *const gnames[3] = {"model", "optim/m", "optim/v"};
    for (int g = 0; g < 3; g++) {
        for (int i = 0; i < N_T; i++)
            s->t[g][i] = tensor(names[i], ndims[i], shapes[i], (float)(g * 10 + i) + 0.5f);
        s->g[g].name = gnames[g];
        s->g[g].t = s->t[g];
        s->g[g].n = N_T;
    }
    /* special values must survive bit-exactly */
    s->t[0][2].data[0] = -0.0f;
    s->t[0][2].data[1] = 1.0f / 0.0f;
    s->t[0][2].data[2] = 1e-40f; /* subnormal */
    memset(&s->m, 0, sizeof(s->m));
    s->m.step = step;
    s->m.tokens_seen = step * 4096 + 7;
    s->m.rng[0] = 0x0123456789abcdefull;
    s->m.rng[1] = UINT64_MAX;
    s->m.rng[2] = 42;
    s->m.rng[3] = (uint64_t)step;
    s->m.n_cursor = 3;
    s->m.cursor[0] = 17;
    s->m.cursor[1] = -1;
    s->m.cursor[2] = INT64_MAX;
    s->m.config_yaml = "model:\n  d_model: 64\n  n_layers: 1\ntrain: {steps: 10}\n";
    s->m.tokenizer_json = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}}}";
    s->m.model_sig = "gpt d=64 L=1 H=4 V=256";
}

static void state_free(struct state *s) {
    for (int g = 0; g < 3; g++)
        for (int i = 0; i < N_T; i++)
            free(s->t[g][i].data);
}

static int save_state(const char *dir, struct state *s, int64_t step, int keep, char *path,
                      char *err) {
    s->m.step = step;
    return ckpt_save(&g_dist, dir, step, s->g, 3, &s->m, keep, path, err);
}

// ------------------------------------------------------------------------------------------
// tests

static void test_round_trip(void) {
    char dir[512], path[CKPT_PATH_LEN], err[HW_ERR_LEN] = "";
    make_dir(dir, sizeof(dir), "rt");
    struct state s;
    state_init(&s, 42);
    int rc = save_state(dir, &s, 42, 3, path, err);
    CHECK_MSG(rc == 0, "%s", err);
    CHECK(contains(path, "/rt/ckpt_00000042.h5"));
    CHECK(file_exists(path));

    struct ckpt_file f = {0};
    rc = ckpt_open(&f, &g_dist, path, err);
    CHECK_MSG(rc == 0, "%s", err);
    CHECK(f.step == 42 && f.format_version == CKPT_FORMAT_VERSION);

    struct ckpt_meta m;
    rc = ckpt_read_meta(&f, &m, err);
    CHECK_MSG(rc == 0, "%s", err);
    CHECK(m.step == 42);
    CHECK(m.tokens_seen == s.m.tokens_seen);
    CHECK(memcmp(m.rng, s.m.rng, sizeof(m.rng)) == 0);
    CHECK(m.n_cursor == 3 && memcmp(m.cursor, s.m.cursor, 3 * sizeof(int64_t)) == 0);
    CHECK(m.config_yaml && strcmp(m.config_yaml, s.m.config_yaml) == 0);
    CHECK(m.tokenizer_json && strcmp(m.tokenizer_json, s.m.tokenizer_json) == 0);
    CHECK(m.model_sig && strcmp(m.model_sig, s.m.model_sig) == 0);
    ckpt_meta_free(&m);
    CHECK(m.config_yaml == NULL);

    for (int g = 0; g < 3; g++) {
        for (int i = 0; i < N_T; i++) {
            struct ckpt_tensor t = s.t[g][i];
            size_t bytes = (size_t)numel(&t) * sizeof(float);
            t.data = malloc(bytes);
            memset(t.data, 0xff, bytes);
            rc = ckpt_read_tensor(&f, s.g[g].name, &t, err);
            CHECK_MSG(rc == 0, "%s", err);
            CHECK_MSG(memcmp(t.data, s.t[g][i].data, bytes) == 0, "%s/%s differs", s.g[g].name,
                      t.name);
            free(t.data);
        }
    }
    int ndim = 0;
    int64_t shape[CKPT_MAX_DIMS];
    CHECK(ckpt_tensor_shape(&f, "optim/v", "blocks.0.mlp.w3d", &ndim, shape, err) == 1);
    CHECK(ndim == 3 && shape[0] == 3 && shape[1] == 4 && shape[2] == 5);
    CHECK(ckpt_tensor_shape(&f, "optim/v", "nope", &ndim, shape, err) == 0);
    CHECK(ckpt_tensor_shape(&f, "nogroup", "wte", &ndim, shape, err) == 0);
    ckpt_close(&f);
    CHECK(f.fid == 0 && f.path == NULL);
    ckpt_close(&f); /* twice is harmless */

    /* verify and info print what they promise */
    char *rep = NULL;
    size_t rep_len = 0;
    FILE *mf = open_memstream(&rep, &rep_len);
    rc = ckpt_verify(&g_dist, path, mf, err);
    fclose(mf);
    CHECK_MSG(rc == 0, "%s", err);
    CHECK(contains(rep, "ok model/blocks.0.attn.wq [64,64]\n"));
    CHECK(contains(rep, "ok optim/m/blocks.0.mlp.w3d [3,4,5]\n"));
    CHECK(contains(rep, "verified ") && contains(rep, "15 tensors"));
    free(rep);
    mf = open_memstream(&rep, &rep_len);
    rc = ckpt_info(&g_dist, path, mf, err);
    fclose(mf);
    CHECK_MSG(rc == 0, "%s", err);
    CHECK(contains(rep, "step:          42"));
    CHECK(contains(rep, "gpt d=64 L=1 H=4 V=256"));
    CHECK(contains(rep, "group model    5 tensors, 304260 parameters"));
    CHECK(contains(rep, "  | model:"));
    free(rep);
    CHECK(ckpt_info(&g_dist, path, NULL, err) == 0);

    /* NULL strings and no cursor read back as "" and 0 */
    struct ckpt_meta m2;
    memset(&m2, 0, sizeof(m2));
    m2.step = 7;
    rc = ckpt_save(&g_dist, dir, 7, s.g, 1, &m2, 0, path, err);
    CHECK_MSG(rc == 0, "%s", err);
    rc = ckpt_open(&f, &g_dist, path, err);
    CHECK_MSG(rc == 0, "%s", err);
    rc = ckpt_read_meta(&f, &m, err);
    CHECK_MSG(rc == 0, "%s", err);
    CHECK(m.n_cursor == 0 && m.config_yaml && m.config_yaml[0] == '\0' && m.model_sig &&
          m.tokenizer_json);
    ckpt_meta_free(&m);
    ckpt_close(&f);
    state_free(&s);
}

static void test_hyperslab(void) {
    char dir[512], path[CKPT_PATH_LEN], err[HW_ERR_LEN] = "";
    make_dir(dir, sizeof(dir), "slab");
    struct state s;
    state_init(&s, 3);
    int rc = save_state(dir, &s, 3, 0, path, err);
    CHECK_MSG(rc == 0, "%s", err);
    struct ckpt_file f = {0};
    CHECK(ckpt_open(&f, &g_dist, path, err) == 0);

    /* 2-D sub-block of the 7x13 tensor */
    const struct ckpt_tensor *full = &s.t[1][0];
    struct ckpt_tensor t = *full;
    t.offset[0] = 2;
    t.offset[1] = 3;
    t.count[0] = 4;
    t.count[1] = 5;
    float buf[20];
    t.data = buf;
    rc = ckpt_read_tensor(&f, "optim/m", &t, err);
    CHECK_MSG(rc == 0, "%s", err);
    int bad = 0;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 5; j++)
            bad += buf[i * 5 + j] != full->data[(2 + i) * 13 + (3 + j)];
    CHECK(bad == 0);

    /* a column slab of the 600x500 tensor, as a row-split (head-sharded) rank would read it,
     * crossing the chunk boundary at row 300 (chunks are 2 x 300 rows) */
    full = &s.t[0][4];
    t = *full;
    t.offset[0] = 100;
    t.offset[1] = 250;
    t.count[0] = 500;
    t.count[1] = 250;
    t.data = malloc(500 * 250 * sizeof(float));
    rc = ckpt_read_tensor(&f, "model", &t, err);
    CHECK_MSG(rc == 0, "%s", err);
    bad = 0;
    for (int i = 0; i < 500; i++)
        for (int j = 0; j < 250; j++)
            bad += t.data[i * 250 + j] != full->data[(100 + i) * 500 + (250 + j)];
    CHECK(bad == 0);
    free(t.data);

    /* 3-D slab: middle plane */
    full = &s.t[2][3];
    t = *full;
    t.offset[0] = 1;
    t.count[0] = 1;
    t.offset[2] = 1;
    t.count[2] = 3;
    t.data = buf;
    rc = ckpt_read_tensor(&f, "optim/v", &t, err);
    CHECK_MSG(rc == 0, "%s", err);
    bad = 0;
    for (int j = 0; j < 4; j++)
        for (int k = 0; k < 3; k++)
            bad += buf[j * 3 + k] != full->data[1 * 20 + j * 5 + (1 + k)];
    CHECK(bad == 0);

    /* empty slab reads nothing; out-of-range slab is a mismatch */
    t.count[0] = 0;
    t.data = NULL;
    CHECK(ckpt_read_tensor(&f, "optim/v", &t, err) == 0);
    t.data = buf;
    t.count[0] = 1;
    t.offset[2] = 3;
    rc = ckpt_read_tensor(&f, "optim/v", &t, err);
    CHECK(rc == HW_EMISMATCH && contains(err, "outside shape"));
    ckpt_close(&f);

    /* sharded save on one rank is an error when the slabs do not cover the tensor */
    struct ckpt_tensor half = s.t[0][0];
    half.count[0] = 3;
    struct ckpt_group g = {"model", &half, 1};
    struct ckpt_meta m = s.m;
    m.step = 4;
    rc = ckpt_save(&g_dist, dir, 4, &g, 1, &m, 0, path, err);
    CHECK(rc == HW_EMISMATCH && contains(err, "ranks write 39 of 91 elements"));
    half.count[0] = 7;
    half.write = 0;
    rc = ckpt_save(&g_dist, dir, 4, &g, 1, &m, 0, path, err);
    CHECK(rc == HW_EMISMATCH && contains(err, "ranks write 0 of 91 elements"));
    CHECK(!file_exists("ckpt_00000004.h5.tmp"));
    char p4[600];
    snprintf(p4, sizeof(p4), "%s/ckpt_00000004.h5.tmp", dir);
    CHECK(!file_exists(p4));
    state_free(&s);
}

static void test_keep(void) {
    char dir[512], path[CKPT_PATH_LEN], p[700], err[HW_ERR_LEN] = "";
    snprintf(dir, sizeof(dir), "%s/keep/sub", g_root); /* created by ckpt_save */
    CHECK(ckpt_latest(dir, path, err) == 0);           /* missing dir: nothing to resume */
    struct state s;
    state_init(&s, 1);
    int rc = save_state(dir, &s, 1, 2, path, err);
    CHECK_MSG(rc == 0, "%s", err);
    /* a stale tmp from a crashed earlier save, and one from a later step (left alone) */
    snprintf(p, sizeof(p), "%s/ckpt_00000000.h5.tmp", dir);
    spit(p, "x", 1);
    snprintf(p, sizeof(p), "%s/ckpt_00000099.h5.tmp", dir);
    spit(p, "x", 1);
    for (int step = 2; step <= 5; step++) {
        rc = save_state(dir, &s, step, 2, path, err);
        CHECK_MSG(rc == 0, "%s", err);
    }
    snprintf(p, sizeof(p), "%s/ckpt_00000004.h5", dir);
    CHECK(file_exists(p));
    snprintf(p, sizeof(p), "%s/ckpt_00000005.h5", dir);
    CHECK(file_exists(p));
    for (int step = 1; step <= 3; step++) {
        snprintf(p, sizeof(p), "%s/ckpt_%08d.h5", dir, step);
        CHECK(!file_exists(p));
    }
    snprintf(p, sizeof(p), "%s/ckpt_00000000.h5.tmp", dir);
    CHECK(!file_exists(p));
    snprintf(p, sizeof(p), "%s/ckpt_00000099.h5.tmp", dir);
    CHECK(file_exists(p));
    CHECK(count_entries(dir) == 4); /* 4, 5, latest, the step-99 tmp */
    snprintf(p, sizeof(p), "%s/latest", dir);
    char *latest = slurp(p, NULL);
    CHECK(latest && strcmp(latest, "ckpt_00000005.h5\n") == 0);
    free(latest);
    char found[CKPT_PATH_LEN];
    CHECK(ckpt_latest(dir, found, err) == 1);
    snprintf(p, sizeof(p), "%s/ckpt_00000005.h5", dir);
    CHECK(strcmp(found, p) == 0);

    /* latest names a missing file, or is missing: fall back to the highest step */
    snprintf(p, sizeof(p), "%s/latest", dir);
    spit(p, "ckpt_00000777.h5\n", 17);
    CHECK(ckpt_latest(dir, found, err) == 1 && contains(found, "ckpt_00000005.h5"));
    unlink(p);
    snprintf(p, sizeof(p), "%s/ckpt_00000005.h5", dir);
    unlink(p);
    CHECK(ckpt_latest(dir, found, err) == 1 && contains(found, "ckpt_00000004.h5"));
    snprintf(p, sizeof(p), "%s/ckpt_00000004.h5", dir);
    unlink(p);
    CHECK(ckpt_latest(dir, found, err) == 0); /* only a .tmp is left */

    /* keep <= 0 keeps everything */
    for (int step = 10; step <= 12; step++)
        CHECK(save_state(dir, &s, step, 0, path, err) == 0);
    CHECK(count_entries(dir) == 5);
    state_free(&s);
}

/* Offset of the first occurrence of needle in hay, or -1. */
static long find_bytes(const char *hay, size_t n, const void *needle, size_t m) {
    for (size_t i = 0; i + m <= n; i++)
        if (memcmp(hay + i, needle, m) == 0)
            return (long)i;
    return -1;
}

static void test_corrupt(void) {
    char dir[512], path[CKPT_PATH_LEN], p[700], err[HW_ERR_LEN] = "";
    make_dir(dir, sizeof(dir), "corrupt");
    int64_t shape[2] = {64, 64};
    struct ckpt_tensor t = tensor("blocks.0.attn.wq", 2, shape, 0.0f);
    for (int i = 0; i < 64 * 64; i++) {
        uint32_t bits = 0x3e000000u | ((uint32_t)i * 2654435761u >> 12);
        memcpy(&t.data[i], &bits, 4);
    }
    struct ckpt_group g = {"model", &t, 1};
    struct ckpt_meta m;
    memset(&m, 0, sizeof(m));
    m.step = 1;
    int rc = ckpt_save(&g_dist, dir, 1, &g, 1, &m, 0, path, err);
    CHECK_MSG(rc == 0, "%s", err);
    size_t n = 0;
    char *bytes = slurp(path, &n);
    CHECK(bytes != NULL);

    /* flip one bit in the middle of the tensor's raw data */
    long at = find_bytes(bytes, n, t.data, 64);
    CHECK(at >= 0);
    if (at >= 0 && bytes) {
        char *flip = malloc(n);
        memcpy(flip, bytes, n);
        flip[at + 4 * 2000 + 1] ^= 0x10;
        snprintf(p, sizeof(p), "%s/flipped.h5", dir);
        spit(p, flip, n);
        free(flip);
        struct ckpt_file f = {0};
        rc = ckpt_open(&f, &g_dist, p, err);
        CHECK_MSG(rc == 0, "%s", err);
        struct ckpt_tensor r = t;
        r.data = malloc(64 * 64 * sizeof(float));
        rc = ckpt_read_tensor(&f, "model", &r, err);
        CHECK_MSG(rc == HW_EFORMAT &&
                      contains(err, "flipped.h5: model/blocks.0.attn.wq: checksum mismatch "
                                    "(file is corrupt)"),
                  "rc %d: %s", rc, err);
        /* a slab far from the flipped bit lies in the same (single) chunk: also refused */
        r.count[0] = 1;
        rc = ckpt_read_tensor(&f, "model", &r, err);
        CHECK(rc == HW_EFORMAT && contains(err, "checksum mismatch"));
        free(r.data);
        ckpt_close(&f);
        char *rep = NULL;
        size_t rep_len = 0;
        FILE *mf = open_memstream(&rep, &rep_len);
        rc = ckpt_verify(&g_dist, p, mf, err);
        fclose(mf);
        CHECK(rc == HW_EFORMAT && contains(err, "checksum mismatch"));
        CHECK(contains(rep, "FAIL model/blocks.0.attn.wq: ") && contains(rep, "FAILED "));
        free(rep);
    }

    /* truncated to half */
    snprintf(p, sizeof(p), "%s/truncated.h5", dir);
    spit(p, bytes, n);
    CHECK(truncate(p, (off_t)(n / 2)) == 0);
    struct ckpt_file f = {0};
    rc = ckpt_open(&f, &g_dist, p, err);
    if (rc == 0) { /* then the damage must show on read */
        struct ckpt_tensor r = t;
        r.data = malloc(64 * 64 * sizeof(float));
        rc = ckpt_read_tensor(&f, "model", &r, err);
        free(r.data);
        ckpt_close(&f);
    }
    CHECK_MSG(rc == HW_EFORMAT && contains(err, "truncated.h5: not a readable HDF5 file "
                                                "(truncated or corrupt)"),
              "rc %d: %s", rc, err);
    CHECK(ckpt_verify(&g_dist, p, NULL, err) == HW_EFORMAT);
    CHECK(f.fid == 0);

    /* not HDF5 at all */
    snprintf(p, sizeof(p), "%s/text.h5", dir);
    spit(p, "step: 5\nthis is not hdf5\n", 25);
    rc = ckpt_open(&f, &g_dist, p, err);
    CHECK(rc == HW_EFORMAT && contains(err, "text.h5: not a readable HDF5 file"));

    /* HDF5, but not ours */
    snprintf(p, sizeof(p), "%s/other.h5", dir);
    hid_t fid = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Fclose(fid);
    rc = ckpt_open(&f, &g_dist, p, err);
    CHECK_MSG(rc == HW_EFORMAT && contains(err, "other.h5: not a headwise checkpoint"), "%s", err);

    /* missing */
    snprintf(p, sizeof(p), "%s/missing.h5", dir);
    rc = ckpt_open(&f, &g_dist, p, err);
    CHECK(rc == HW_EIO && contains(err, "missing.h5: cannot open: No such file or directory"));
    CHECK(ckpt_info(&g_dist, p, stdout, err) == HW_EIO);
    rc = ckpt_open(&f, &g_dist, dir, err);
    CHECK(rc == HW_EIO && contains(err, "Is a directory"));
    free(bytes);
    free(t.data);
}

static void test_failed_save(void) {
    char dir[512], path[CKPT_PATH_LEN], p[700], err[HW_ERR_LEN] = "";
    make_dir(dir, sizeof(dir), "fail");
    struct state s;
    state_init(&s, 1);
    int rc = save_state(dir, &s, 1, 5, path, err);
    CHECK_MSG(rc == 0, "%s", err);
    size_t n1 = 0, nl = 0;
    char *before = slurp(path, &n1);
    snprintf(p, sizeof(p), "%s/latest", dir);
    char *latest_before = slurp(p, &nl);

    /* 1: the directory is below a regular file */
    char bad[700];
    snprintf(p, sizeof(p), "%s/plainfile", g_root);
    spit(p, "x", 1);
    snprintf(bad, sizeof(bad), "%s/plainfile/ckpts", g_root);
    rc = save_state(bad, &s, 2, 5, path, err);
    CHECK_MSG(rc == HW_EIO && contains(err, "plainfile/ckpts: cannot create directory: Not a "
                                            "directory"),
              "rc %d: %s", rc, err);

    /* 2: the tmp path cannot be created (a directory sits there) */
    snprintf(p, sizeof(p), "%s/ckpt_00000002.h5.tmp", dir);
    mkdir(p, 0777);
    rc = save_state(dir, &s, 2, 5, path, err);
    CHECK_MSG(rc == HW_EIO && contains(err, "ckpt_00000002.h5.tmp: cannot create: Is a directory"),
              "rc %d: %s", rc, err);
    rmdir(p);

    /* 3: everything is written, but the final rename fails (a non-empty directory sits at the
     * final name): the tmp file must be gone and latest untouched */
    snprintf(p, sizeof(p), "%s/ckpt_00000003.h5", dir);
    mkdir(p, 0777);
    snprintf(p, sizeof(p), "%s/ckpt_00000003.h5/x", dir);
    spit(p, "x", 1);
    rc = save_state(dir, &s, 3, 5, path, err);
    CHECK_MSG(rc == HW_EIO && contains(err, "ckpt_00000003.h5: cannot rename from"), "rc %d: %s",
              rc, err);
    snprintf(p, sizeof(p), "%s/ckpt_00000003.h5.tmp", dir);
    CHECK(!file_exists(p));

    /* 4: bad arguments are refused before anything is created */
    struct ckpt_tensor bad_t = s.t[0][0];
    bad_t.name = "has/slash";
    struct ckpt_group bg = {"model", &bad_t, 1};
    s.m.step = 4;
    rc = ckpt_save(&g_dist, dir, 4, &bg, 1, &s.m, 5, path, err);
    CHECK(rc == HW_EMISMATCH && contains(err, "invalid tensor name 'has/slash'"));
    bg.name = "state";
    bad_t.name = "x";
    rc = ckpt_save(&g_dist, dir, 4, &bg, 1, &s.m, 5, path, err);
    CHECK(rc == HW_EMISMATCH && contains(err, "invalid group name 'state'"));
    rc = ckpt_save(&g_dist, dir, 5, s.g, 3, &s.m, 5, path, err);
    CHECK(rc == HW_EMISMATCH && contains(err, "meta.step 4 differs from step 5"));

    /* the previous checkpoint and latest are byte-identical, and it still loads */
    size_t n2 = 0, nl2 = 0;
    snprintf(p, sizeof(p), "%s/ckpt_00000001.h5", dir);
    char *after = slurp(p, &n2);
    CHECK(before && after && n1 == n2 && memcmp(before, after, n1) == 0);
    snprintf(p, sizeof(p), "%s/latest", dir);
    char *latest_after = slurp(p, &nl2);
    CHECK(latest_before && latest_after && strcmp(latest_before, latest_after) == 0);
    char found[CKPT_PATH_LEN];
    CHECK(ckpt_latest(dir, found, err) == 1 && contains(found, "ckpt_00000001.h5"));
    CHECK(ckpt_verify(&g_dist, found, NULL, err) == 0);
    CHECK(count_entries(dir) == 3); /* ckpt 1, latest, the directory from case 3 */
    free(before);
    free(after);
    free(latest_before);
    free(latest_after);
    state_free(&s);
}

static void test_mismatch(void) {
    char dir[512], path[CKPT_PATH_LEN], err[HW_ERR_LEN] = "";
    make_dir(dir, sizeof(dir), "mismatch");
    struct state s;
    state_init(&s, 9);
    int rc = save_state(dir, &s, 9, 0, path, err);
    CHECK_MSG(rc == 0, "%s", err);
    struct ckpt_file f = {0};
    CHECK(ckpt_open(&f, &g_dist, path, err) == 0);
    struct ckpt_tensor t = s.t[0][1]; /* 64x64 */
    t.shape[1] = 32;
    t.count[1] = 32;
    rc = ckpt_read_tensor(&f, "model", &t, err);
    CHECK_MSG(rc == HW_EMISMATCH &&
                  contains(err, "ckpt_00000009.h5: model/blocks.0.attn.wq: shape [64,64] in "
                                "file, [64,32] expected"),
              "%s", err);
    t = s.t[0][3];
    t.ndim = 2;
    rc = ckpt_read_tensor(&f, "model", &t, err);
    CHECK(rc == HW_EMISMATCH && contains(err, "shape [3,4,5] in file, [3,4] expected"));
    t = s.t[0][1];
    t.name = "blocks.1.attn.wq";
    rc = ckpt_read_tensor(&f, "model", &t, err);
    CHECK(rc == HW_EMISMATCH && contains(err, "model/blocks.1.attn.wq: not in checkpoint"));
    t.name = "blocks.0.attn.wq";
    rc = ckpt_read_tensor(&f, "optim/master", &t, err);
    CHECK(rc == HW_EMISMATCH && contains(err, "optim/master/blocks.0.attn.wq: not in checkpoint"));
    ckpt_close(&f);
    rc = ckpt_read_tensor(&f, "model", &t, err);
    CHECK(rc == HW_EIO && contains(err, "not open"));
    state_free(&s);
}

int main(int argc, char **argv) {
    dist_init(&g_dist, &argc, &argv);
    snprintf(g_root, sizeof(g_root), "/tmp/test_ckpt.XXXXXX");
    if (!mkdtemp(g_root)) {
        perror("mkdtemp");
        return 1;
    }
    test_round_trip();
    test_hyperslab();
    test_keep();
    test_corrupt();
    test_failed_save();
    test_mismatch();
    if (getenv("TEST_CKPT_KEEP"))
        printf("kept %s\n", g_root);
    else
        rm_rf(g_root);
    dist_finalize(&g_dist);
    return check_report("test_ckpt");
}
