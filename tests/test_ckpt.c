/* tests/test_ckpt.c -- ckpt/ on one rank: bit-exact round trip of tensors and meta, hyperslab
 * (resharded) reads, keep-N pruning and `latest`, corruption (truncation, a flipped bit in
 * tensor data, non-HDF5 and missing files), failed saves leaving the previous checkpoint and
 * `latest` untouched, and shape mismatches; hand-made checkpoints with valid checksums but bad
 * state values or a bad manifest (refused by the loader, by verify and by a resuming train run,
 * without a crash), `latest` after a save killed between its renames, removal of stale
 * temporary files (dead writers only), and a file-size limit during a save. Works in a mkdtemp
 * directory under /tmp. */
#define _POSIX_C_SOURCE 200809L
#include "../ckpt/ckpt.h"
#include "../config/config.h"
#include "../core/check.h"
#include "../datasets/bpe.h"
#include "../datasets/shards.h"
#include "../dist/dist.h"
#include "../train/trainer.h"
#include "check.h"

#include <hdf5.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
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

/* The temporary file name ckpt_save uses for dir/base when written by process pid on this
 * host: "<base>.tmp-<host>-<pid>", the host name with characters outside [A-Za-z0-9._] as '_'
 * (docs/checkpoint.md). */
static void tmp_name(char *out, size_t n, const char *dir, const char *base, long pid) {
    char host[80] = "";
    if (gethostname(host, sizeof(host) - 1) != 0 || !host[0])
        snprintf(host, sizeof(host), "localhost");
    host[64] = '\0';
    for (char *p = host; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_'))
            *p = '_';
    }
    snprintf(out, n, "%s/%s.tmp-%s-%ld", dir, base, host, pid);
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
    /* special values must survive bit-exactly (test_round_trip adds an Inf) */
    s->t[0][2].data[0] = -0.0f;
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
    s->m.cursor[1] = 0;
    s->m.cursor[2] = CKPT_MAX_COUNT; /* the largest valid sample counter */
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
    s.t[0][2].data[1] = 1.0f / 0.0f;
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

    /* verify and info print what they promise. The Inf kept bit-exactly above is something
     * training never writes (it stops before a non-finite value reaches the weights): verify
     * names the tensor and goes on with the others */
    char *rep = NULL;
    size_t rep_len = 0;
    FILE *mf = open_memstream(&rep, &rep_len);
    rc = ckpt_verify(&g_dist, path, mf, err);
    fclose(mf);
    CHECK_MSG(rc == HW_EFORMAT && contains(err, "ckpt_00000042.h5: model/blocks.0.norm.g: 1 of 13 "
                                                "values are NaN or Inf (expected finite values)"),
              "rc %d: %s", rc, err);
    CHECK(contains(rep, "FAIL model/blocks.0.norm.g: "));
    CHECK(contains(rep, "ok model/blocks.0.attn.wq [64,64]\n"));
    CHECK(contains(rep, "FAILED ") && contains(rep, "14 tensors ok, 1 bad"));
    free(rep);
    s.t[0][2].data[1] = 2.0f; /* finite: the same state verifies */
    rc = save_state(dir, &s, 43, 3, path, err);
    CHECK_MSG(rc == 0, "%s", err);
    mf = open_memstream(&rep, &rep_len);
    rc = ckpt_verify(&g_dist, path, mf, err);
    fclose(mf);
    CHECK_MSG(rc == 0, "%s", err);
    CHECK(contains(rep, "ok state (step 43)\n"));
    CHECK(contains(rep, "ok model/blocks.0.attn.wq [64,64]\n"));
    CHECK(contains(rep, "ok optim/m/blocks.0.mlp.w3d [3,4,5]\n"));
    CHECK(contains(rep, "verified ") && contains(rep, "15 tensors"));
    free(rep);
    mf = open_memstream(&rep, &rep_len);
    rc = ckpt_info(&g_dist, path, mf, err);
    fclose(mf);
    CHECK_MSG(rc == 0, "%s", err);
    CHECK(contains(rep, "step:          43"));
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

    /* 2: the tmp path cannot be created (a directory sits at this process's temp name) */
    tmp_name(p, sizeof(p), dir, "ckpt_00000002.h5", (long)getpid());
    mkdir(p, 0777);
    rc = save_state(dir, &s, 2, 5, path, err);
    CHECK_MSG(rc == HW_EIO && contains(err, "ckpt_00000002.h5.tmp-") &&
                  contains(err, ": cannot create: File exists (and cannot remove what is there: "
                                "Is a directory)"),
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
    tmp_name(p, sizeof(p), dir, "ckpt_00000003.h5", (long)getpid());
    CHECK(!file_exists(p));
    tmp_name(p, sizeof(p), dir, "latest", (long)getpid());
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

// ------------------------------------------------------------------------------------------
// hand-made checkpoints: a copy of a good one with one value rewritten through the HDF5 API.
// The rewritten datasets get fresh, valid Fletcher32 checksums, so only the checks of the
// values themselves can refuse them.

static void copy_file(const char *src, const char *dst) {
    size_t n = 0;
    char *b = slurp(src, &n);
    if (b)
        spit(dst, b, n);
    free(b);
}

/* Replaces dataset name by a new one: a scalar (rank 0) or [n] of file type ftype written from
 * data (memory type mtype); [n] ones chunked with Fletcher32, as headwise writes them. */
static int put_dataset(hid_t fid, const char *name, hid_t ftype, hid_t mtype, int rank, hsize_t n,
                       const void *data) {
    if (H5Lexists(fid, name, H5P_DEFAULT) > 0 && H5Ldelete(fid, name, H5P_DEFAULT) < 0)
        return -1;
    hid_t sp = rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE), lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    if (rank == 1 && n > 0) {
        H5Pset_chunk(dcpl, 1, &n);
        H5Pset_fletcher32(dcpl);
    }
    hid_t ds = H5Dcreate2(fid, name, ftype, sp, lcpl, dcpl, H5P_DEFAULT);
    int rc = ds >= 0 && H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0 ? 0 : -1;
    if (ds >= 0)
        H5Dclose(ds);
    H5Pclose(lcpl);
    H5Pclose(dcpl);
    H5Sclose(sp);
    return rc;
}

static int put_attr(hid_t fid, const char *name, hid_t ftype, hid_t mtype, const void *v) {
    if (H5Aexists(fid, name) > 0)
        H5Adelete(fid, name);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(fid, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a >= 0 && H5Awrite(a, mtype, v) >= 0 ? 0 : -1;
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    return rc;
}

enum man_edit { MAN_SHAPE, MAN_DUP, MAN_DROP_LAST, MAN_GROUP };

/* Rewrites /manifest in its own (file) type: row r's shape[k] = v (MAN_SHAPE), row r a copy of
 * row k (MAN_DUP), without its last row (MAN_DROP_LAST), or row r's group = "state". */
static int edit_manifest(hid_t fid, enum man_edit how, int r, int k, int64_t v) {
    hid_t ds = H5Dopen2(fid, "manifest", H5P_DEFAULT);
    hid_t type = H5Dget_type(ds), sp = H5Dget_space(ds);
    hsize_t n = 0;
    H5Sget_simple_extent_dims(sp, &n, NULL);
    size_t row = H5Tget_size(type);
    size_t o_group = H5Tget_member_offset(type, (unsigned)H5Tget_member_index(type, "group"));
    size_t o_shape = H5Tget_member_offset(type, (unsigned)H5Tget_member_index(type, "shape"));
    hid_t gt = H5Tget_member_type(type, (unsigned)H5Tget_member_index(type, "group"));
    size_t gsize = H5Tget_size(gt);
    H5Tclose(gt);
    unsigned char *buf = calloc(n, row);
    int rc = H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0 ? -1 : 0;
    H5Dclose(ds);
    H5Sclose(sp);
    if (how == MAN_SHAPE)
        memcpy(buf + (size_t)r * row + o_shape + 8 * (size_t)k, &v, 8); /* little-endian host */
    else if (how == MAN_DUP)
        memcpy(buf + (size_t)r * row, buf + (size_t)k * row, row);
    else if (how == MAN_GROUP && gsize >= 6)
        memcpy(buf + (size_t)r * row + o_group, "state", 6);
    if (rc == 0 && how == MAN_DROP_LAST)
        rc = put_dataset(fid, "manifest", type, type, 1, n - 1, buf);
    else if (rc == 0) {
        ds = H5Dopen2(fid, "manifest", H5P_DEFAULT);
        rc = H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0 ? -1 : 0;
        H5Dclose(ds);
    }
    free(buf);
    H5Tclose(type);
    return rc;
}

enum forgery {
    F_CURSOR_NEG,
    F_CURSOR_HUGE,
    F_CURSOR_F64,
    F_CURSOR_I32,
    F_CURSOR_MANY,
    F_STEP_NEG_BOTH,
    F_STEP_NEG,
    F_STEP_BIG_BOTH,
    F_STEP_BIG,
    F_STEP_F64,
    F_STEP_ARRAY,
    F_STEP_ATTR_F64,
    F_TOKENS_NEG,
    F_RNG_I32,
    F_RNG_3,
    F_STATE_EXTRA,
    F_CONFIG_NUL,
    F_MAN_SHAPE,
    F_MAN_UNUSED,
    F_MAN_DUP,
    F_MAN_DROP,
    F_MAN_RESERVED,
    F_MAN_MISSING
};

static const struct {
    enum forgery f;
    int at_open;        /* ckpt_open refuses it already */
    const char *expect; /* follows "FILE: " in the message */
} forgeries[] = {
    {F_CURSOR_NEG, 0,
     "state/cursor[1]: -5 is out of range (expected 0..4611686018427387904, a count of samples "
     "read)"},
    {F_CURSOR_HUGE, 0, "state/cursor[0]: 9223372036854775807 is out of range (expected 0.."},
    {F_CURSOR_F64, 0, "state/cursor: stored as another type (expected H5T_STD_I64LE)"},
    {F_CURSOR_I32, 0, "state/cursor: stored as another type (expected H5T_STD_I64LE)"},
    {F_CURSOR_MANY, 0, "state/cursor has 33 values, at most 32 allowed"},
    {F_STEP_NEG_BOTH, 1, "root attribute step: -1 is out of range (expected 0..2147483647)"},
    {F_STEP_NEG, 0,
     "state/step: -1 is out of range (expected 0..2147483647, optimizer steps done)"},
    {F_STEP_BIG_BOTH, 1,
     "root attribute step: 4294967301 is out of range (expected 0..2147483647)"},
    {F_STEP_BIG, 0, "state/step: 4294967301 is out of range (expected 0..2147483647"},
    {F_STEP_F64, 0, "state/step: stored as another type (expected a scalar H5T_STD_I64LE)"},
    {F_STEP_ARRAY, 0, "state/step: 1 values, expected one (a scalar)"},
    {F_STEP_ATTR_F64, 1, "root attribute step is not a scalar H5T_STD_I64LE"},
    {F_TOKENS_NEG, 0, "state/tokens_seen: -7 is out of range (expected 0..4611686018427387904"},
    {F_RNG_I32, 0, "state/rng: stored as another type (expected H5T_STD_U64LE)"},
    {F_RNG_3, 0, "state/rng has 3 values, expected 4"},
    {F_STATE_EXTRA, 0,
     "state/lr: unexpected (expected only state/step, state/tokens_seen, state/rng and "
     "state/cursor)"},
    {F_CONFIG_NUL, 0, "config: NUL byte at offset 5 (expected text)"},
    {F_MAN_SHAPE, 0, "model/wte: shape [7,13] in file, [7,12] in manifest"},
    {F_MAN_UNUSED, 0,
     "manifest: row 2 (model/blocks.0.norm.g): shape[2] = 7 beyond ndim 1 (expected 0)"},
    {F_MAN_DUP, 0,
     "manifest: row 1 lists model/wte again (first in row 0; expected each tensor once)"},
    {F_MAN_DROP, 0,
     "optim/v/big: dataset not listed in the manifest (expected a row for every tensor)"},
    {F_MAN_RESERVED, 0, "manifest: row 0: group 'state' is not a tensor group name"},
    {F_MAN_MISSING, 0, "manifest: missing (incomplete checkpoint)"},
};

static int forge(const char *path, enum forgery f) {
    hid_t fid = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    if (fid < 0)
        return -1;
    int rc = 0;
    int64_t i64[33] = {17, -5, 3, 4, 5, 6, 7, 8, 9}, v;
    double d = 5.0;
    int32_t i32[4] = {1, 2, 3, 4};
    uint64_t u64[3] = {1, 2, 3};
    switch (f) {
    case F_CURSOR_NEG:
        rc = put_dataset(fid, "state/cursor", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, 3, i64);
        break;
    case F_CURSOR_HUGE:
        v = INT64_MAX;
        rc = put_dataset(fid, "state/cursor", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, 1, &v);
        break;
    case F_CURSOR_F64:
        rc = put_dataset(fid, "state/cursor", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, 1, &d);
        break;
    case F_CURSOR_I32:
        rc = put_dataset(fid, "state/cursor", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, 4, i32);
        break;
    case F_CURSOR_MANY:
        i64[1] = 2;
        rc = put_dataset(fid, "state/cursor", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, 33, i64);
        break;
    case F_STEP_NEG_BOTH:
    case F_STEP_NEG:
    case F_STEP_BIG_BOTH:
    case F_STEP_BIG:
        v = f == F_STEP_NEG_BOTH || f == F_STEP_NEG ? -1 : (INT64_C(1) << 32) + 5;
        rc = put_dataset(fid, "state/step", H5T_STD_I64LE, H5T_NATIVE_INT64, 0, 1, &v);
        if (!rc && (f == F_STEP_NEG_BOTH || f == F_STEP_BIG_BOTH))
            rc = put_attr(fid, "step", H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
        break;
    case F_STEP_F64:
        rc = put_dataset(fid, "state/step", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 0, 1, &d);
        break;
    case F_STEP_ARRAY:
        v = 5;
        rc = put_dataset(fid, "state/step", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, 1, &v);
        break;
    case F_STEP_ATTR_F64:
        rc = put_attr(fid, "step", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &d);
        break;
    case F_TOKENS_NEG:
        v = -7;
        rc = put_dataset(fid, "state/tokens_seen", H5T_STD_I64LE, H5T_NATIVE_INT64, 0, 1, &v);
        if (!rc)
            rc = put_attr(fid, "tokens_seen", H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
        break;
    case F_RNG_I32:
        rc = put_dataset(fid, "state/rng", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, 4, i32);
        break;
    case F_RNG_3:
        rc = put_dataset(fid, "state/rng", H5T_STD_U64LE, H5T_NATIVE_UINT64, 1, 3, u64);
        break;
    case F_STATE_EXTRA:
        rc = put_dataset(fid, "state/lr", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 0, 1, &d);
        break;
    case F_CONFIG_NUL:
        rc = put_dataset(fid, "config", H5T_STD_U8LE, H5T_NATIVE_UCHAR, 1, 12, "model\0: x\n y");
        break;
    case F_MAN_SHAPE:
        rc = edit_manifest(fid, MAN_SHAPE, 0, 1, 12);
        break;
    case F_MAN_UNUSED:
        rc = edit_manifest(fid, MAN_SHAPE, 2, 2, 7);
        break;
    case F_MAN_DUP:
        rc = edit_manifest(fid, MAN_DUP, 1, 0, 0);
        break;
    case F_MAN_DROP:
        rc = edit_manifest(fid, MAN_DROP_LAST, 0, 0, 0);
        break;
    case F_MAN_RESERVED:
        rc = edit_manifest(fid, MAN_GROUP, 0, 0, 0);
        break;
    case F_MAN_MISSING:
        rc = H5Ldelete(fid, "manifest", H5P_DEFAULT) < 0 ? -1 : 0;
        break;
    }
    return H5Fclose(fid) < 0 || rc ? -1 : 0;
}

/* What a loader does first: open, then read the meta (which checks the manifest). */
static int load_meta(const char *path, char *err) {
    struct ckpt_file f = {0};
    struct ckpt_meta m;
    memset(&m, 0, sizeof(m));
    int rc = ckpt_open(&f, &g_dist, path, err);
    if (rc == 0)
        rc = ckpt_read_meta(&f, &m, err);
    ckpt_meta_free(&m);
    ckpt_close(&f);
    return rc;
}

static void test_forged(void) {
    char dir[512], good[CKPT_PATH_LEN], p[700], want[600], err[HW_ERR_LEN] = "";
    make_dir(dir, sizeof(dir), "forged");
    struct state s;
    state_init(&s, 5);
    int rc = save_state(dir, &s, 5, 0, good, err);
    CHECK_MSG(rc == 0, "%s", err);
    /* the control: the good file and an untouched copy pass the loader and verify */
    snprintf(p, sizeof(p), "%s/copy.h5", dir);
    copy_file(good, p);
    CHECK_MSG(load_meta(p, err) == 0, "%s", err);
    CHECK_MSG(ckpt_verify(&g_dist, p, NULL, err) == 0, "%s", err);
    for (size_t i = 0; i < sizeof(forgeries) / sizeof(forgeries[0]); i++) {
        snprintf(p, sizeof(p), "%s/forged_%02zu.h5", dir, i);
        copy_file(good, p);
        if (forge(p, forgeries[i].f) != 0) {
            CHECK_MSG(0, "could not forge case %zu", i);
            continue;
        }
        snprintf(want, sizeof(want), "forged_%02zu.h5: %s", i, forgeries[i].expect);
        struct ckpt_file f = {0};
        rc = ckpt_open(&f, &g_dist, p, err);
        ckpt_close(&f);
        CHECK_MSG(forgeries[i].at_open ? rc == HW_EFORMAT && contains(err, want) : rc == 0,
                  "case %zu: open rc %d: %s", i, rc, err);
        rc = load_meta(p, err);
        CHECK_MSG(rc == HW_EFORMAT && contains(err, want), "case %zu: loader rc %d: %s", i, rc,
                  err);
        CHECK_MSG(!strchr(err, '\n'), "case %zu: one line: %s", i, err);
        char *rep = NULL;
        size_t rep_len = 0;
        FILE *mf = open_memstream(&rep, &rep_len);
        rc = ckpt_verify(&g_dist, p, mf, err);
        fclose(mf);
        CHECK_MSG(rc == HW_EFORMAT && contains(err, want), "case %zu: verify rc %d: %s", i, rc,
                  err);
        CHECK_MSG(forgeries[i].at_open || contains(rep, "FAILED "), "case %zu: report %s", i, rep);
        free(rep);
        rc = ckpt_info(&g_dist, p, NULL, err);
        CHECK_MSG(rc == HW_EFORMAT, "case %zu: info rc %d", i, rc);
    }
    /* a save refuses values that its readers would refuse */
    s.m.cursor[1] = -1;
    rc = save_state(dir, &s, 6, 0, p, err);
    CHECK_MSG(rc == HW_EMISMATCH &&
                  contains(err, "meta.cursor[1] -1 outside 0..4611686018427387904"),
              "rc %d: %s", rc, err);
    s.m.cursor[1] = 0;
    s.m.tokens_seen = -3;
    rc = save_state(dir, &s, 6, 0, p, err);
    CHECK(rc == HW_EMISMATCH && contains(err, "meta.tokens_seen -3 outside"));
    s.m.tokens_seen = 0;
    rc = save_state(dir, &s, (int64_t)1 << 31, 0, p, err);
    CHECK_MSG(rc == HW_EMISMATCH &&
                  contains(err, "invalid step 2147483648 (expected 0..2147483647)"),
              "rc %d: %s", rc, err);
    state_free(&s);
}

// ------------------------------------------------------------------------------------------
// `latest` after a kill, and stale temporary files

/* A pid no process has: /proc/sys/kernel/pid_max itself (pids are below it). */
static long dead_pid(void) {
    long max = 4194304;
    FILE *fp = fopen("/proc/sys/kernel/pid_max", "r");
    if (fp) {
        if (fscanf(fp, "%ld", &max) != 1)
            max = 4194304;
        fclose(fp);
    }
    return max;
}

static void set_age(const char *path, double seconds_ago) {
    struct timespec now, t[2];
    clock_gettime(CLOCK_REALTIME, &now);
    t[0].tv_sec = now.tv_sec - (time_t)seconds_ago;
    t[0].tv_nsec = now.tv_nsec;
    t[1] = t[0];
    utimensat(AT_FDCWD, path, t, AT_SYMLINK_NOFOLLOW);
}

static void test_latest_after_kill(void) {
    char dir[512], path[CKPT_PATH_LEN], latest[700], lt[700], other[700], p[700],
        found[CKPT_PATH_LEN], err[HW_ERR_LEN] = "";
    make_dir(dir, sizeof(dir), "lag");
    struct state s;
    state_init(&s, 1);
    for (int step = 1; step <= 3; step++)
        CHECK(save_state(dir, &s, step, 0, path, err) == 0);
    /* as a save of step 3 killed between its two renames leaves the directory: ckpt 3 is
     * complete, latest (written before it) still names 2, and the dead writer's latest temp
     * file, written after latest, names 3 */
    snprintf(latest, sizeof(latest), "%s/latest", dir);
    spit(latest, "ckpt_00000002.h5\n", 17);
    set_age(latest, 20);
    tmp_name(lt, sizeof(lt), dir, "latest", dead_pid());
    spit(lt, "ckpt_00000003.h5\n", 17);
    set_age(lt, 10);
    /* a temp file naming a checkpoint that does not exist (a save killed before its rename) */
    snprintf(other, sizeof(other), "%s/latest.tmp-otherhost-77", dir);
    spit(other, "ckpt_00000009.h5\n", 17);
    CHECK(ckpt_latest(dir, found, err) == 1 && contains(found, "/ckpt_00000003.h5"));
    /* latest written after the temp file (rolled back by hand) wins */
    set_age(latest, 5);
    CHECK(ckpt_latest(dir, found, err) == 1 && contains(found, "/ckpt_00000002.h5"));
    set_age(latest, 20);
    /* the next save first finishes the interrupted one: here it fails right after its
     * clean-up (a directory sits at its temp name), so only the clean-up shows */
    tmp_name(p, sizeof(p), dir, "ckpt_00000004.h5", (long)getpid());
    mkdir(p, 0777);
    CHECK(save_state(dir, &s, 4, 0, path, err) == HW_EIO);
    rmdir(p);
    char *l = slurp(latest, NULL);
    CHECK_MSG(l && strcmp(l, "ckpt_00000003.h5\n") == 0, "latest: %s", l ? l : "(none)");
    free(l);
    CHECK(!file_exists(lt));
    CHECK(file_exists(other)); /* another host's, fresh: its writer may be alive */
    CHECK(ckpt_latest(dir, found, err) == 1 && contains(found, "/ckpt_00000003.h5"));
    /* an ordinary save leaves no temp file of its own */
    CHECK(save_state(dir, &s, 4, 0, path, err) == 0);
    tmp_name(p, sizeof(p), dir, "latest", (long)getpid());
    CHECK(!file_exists(p));
    tmp_name(p, sizeof(p), dir, "ckpt_00000004.h5", (long)getpid());
    CHECK(!file_exists(p));
    CHECK(count_entries(dir) == 6); /* ckpt 1..4, latest, the other host's temp file */
    state_free(&s);
}

static void test_stale_temps(void) {
    char dir[512], path[CKPT_PATH_LEN], p[8][700], err[HW_ERR_LEN] = "";
    make_dir(dir, sizeof(dir), "stale");
    struct state s;
    state_init(&s, 1);
    CHECK(save_state(dir, &s, 1, 0, path, err) == 0);
    const long dead = dead_pid(), live = (long)getppid();
    tmp_name(p[0], sizeof(p[0]), dir, "ckpt_00000007.h5", dead); /* writer gone: removed */
    tmp_name(p[1], sizeof(p[1]), dir, "latest", dead);           /* writer gone: removed */
    tmp_name(p[2], sizeof(p[2]), dir, "ckpt_00000007.h5", live); /* writer alive: kept */
    snprintf(p[3], sizeof(p[3]), "%s/ckpt_00000007.h5.tmp-otherhost-123", dir); /* kept */
    snprintf(p[4], sizeof(p[4]), "%s/ckpt_00000007.h5.tmp-otherhost-124", dir); /* 2 h old */
    tmp_name(p[5], sizeof(p[5]), dir, "ckpt_00000007.h5", (long)getpid());      /* this process's */
    snprintf(p[6], sizeof(p[6]), "%s/latest.tmp-otherhost-125", dir);           /* kept */
    tmp_name(p[7], sizeof(p[7]), dir, "ckpt_00000008.h5", dead); /* a directory: kept */
    for (int i = 0; i < 7; i++)
        spit(p[i], "ckpt_00000001.h5\n", 17);
    set_age(p[4], 7200);
    mkdir(p[7], 0777);
    CHECK(save_state(dir, &s, 2, 0, path, err) == 0);
    const int kept[8] = {0, 0, 1, 1, 0, 0, 1, 1};
    for (int i = 0; i < 8; i++)
        CHECK_MSG(file_exists(p[i]) == kept[i], "%s: %s", p[i], kept[i] ? "removed" : "kept");
    CHECK(count_entries(dir) == 7); /* ckpt 1, 2, latest and the four kept */
    char found[CKPT_PATH_LEN];
    CHECK(ckpt_latest(dir, found, err) == 1 && contains(found, "/ckpt_00000002.h5"));
    rmdir(p[7]);
    state_free(&s);
}

/* A file-size limit (ulimit -f) reached in the middle of a save: EFBIG (SIGXFSZ is ignored
 * during the save), named as such, and the previous checkpoint and latest untouched. The save
 * runs in a child process that leaves with _exit, as train does after a failed save: libhdf5
 * 1.10 can crash in its exit-time clean-up of a file whose close failed. */
static void test_file_size_limit(void) {
    char dir[512], path[CKPT_PATH_LEN], p[700], out[700], err[HW_ERR_LEN] = "";
    make_dir(dir, sizeof(dir), "fsize");
    struct state s;
    state_init(&s, 1);
    CHECK(save_state(dir, &s, 1, 0, path, err) == 0);
    struct rlimit old;
    if (getrlimit(RLIMIT_FSIZE, &old) != 0 ||
        (old.rlim_max != RLIM_INFINITY && old.rlim_max < 262144)) {
        printf("SKIP file-size limit case: RLIMIT_FSIZE cannot be set here\n");
        state_free(&s);
        return;
    }
    snprintf(out, sizeof(out), "%s.result", dir);
    fflush(stdout);
    fflush(stderr);
    pid_t child = fork();
    if (child == 0) {
        struct rlimit lim = old;
        lim.rlim_cur = 262144; /* the checkpoint needs about 3.7 MB */
        int rc = setrlimit(RLIMIT_FSIZE, &lim) == 0 ? save_state(dir, &s, 2, 0, path, err) : 99;
        lim.rlim_cur = old.rlim_cur;
        setrlimit(RLIMIT_FSIZE, &lim);
        FILE *fp = fopen(out, "w");
        if (fp) {
            fprintf(fp, "%d\n%s", rc, err);
            fclose(fp);
        }
        _exit(0);
    }
    int status = 0;
    CHECK(child > 0 && waitpid(child, &status, 0) == child && WIFEXITED(status));
    char *res = slurp(out, NULL);
    int rc = res ? atoi(res) : -99;
    const char *msg = res && strchr(res, '\n') ? strchr(res, '\n') + 1 : "";
    CHECK_MSG(rc == HW_EIO && contains(msg, "/ckpt_00000002.h5.tmp-") &&
                  contains(msg, "file too large: the file-size limit (ulimit -f, RLIMIT_FSIZE) "
                                "was reached (File too large)") &&
                  !strchr(msg, '\n'),
              "rc %d: %s", rc, msg);
    free(res);
    snprintf(p, sizeof(p), "%s/ckpt_00000002.h5", dir);
    CHECK(!file_exists(p));
    tmp_name(p, sizeof(p), dir, "ckpt_00000002.h5", (long)child);
    CHECK(!file_exists(p));
    CHECK(count_entries(dir) == 2); /* ckpt 1, latest */
    char found[CKPT_PATH_LEN];
    CHECK(ckpt_latest(dir, found, err) == 1 && contains(found, "/ckpt_00000001.h5"));
    CHECK_MSG(ckpt_verify(&g_dist, found, NULL, err) == 0, "%s", err);
    state_free(&s);
}

// ------------------------------------------------------------------------------------------
// a training run resuming from hand-made checkpoints: refused with one line, no crash (the
// loader used to index its data with a negative cursor, and step -1 trained into NaN)

/* train_run with stderr captured into log; returns its exit code. */
static int train_logged(const char *yaml, const char *log) {
    char err[HW_ERR_LEN];
    struct hw_config *c = calloc(1, sizeof(*c));
    int rc = cfg_load_string(c, yaml, "test_ckpt.yaml", 0, NULL, err);
    if (rc) {
        printf("config: %s\n", err);
        free(c);
        return -100;
    }
    fflush(stdout);
    fflush(stderr);
    int saved = dup(2), fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);
    close(fd);
    rc = train_run(c, &g_dist);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    free(c);
    return rc;
}

static void test_resume_forged(void) {
    char dir[512], data[700], run[700], yaml[2048], log[700], ck2[800], good[800], want[900],
        err[HW_ERR_LEN] = "";
    make_dir(dir, sizeof(dir), "resume");
    snprintf(data, sizeof(data), "%s/train.h5", dir);
    snprintf(run, sizeof(run), "%s/run", dir);
    snprintf(log, sizeof(log), "%s/train.log", dir);
    /* byte-level tokenizer and 8000 random tokens */
    struct bpe tok;
    bpe_init(&tok);
    char tp[720];
    snprintf(tp, sizeof(tp), "%s/tokenizer.json", dir);
    CHECK_MSG(bpe_save(&tok, tp, err) == 0, "%s", err);
    bpe_free(&tok);
    int32_t *ids = malloc(8000 * sizeof(int32_t));
    for (int i = 0; i < 8000; i++)
        ids[i] = (int32_t)((i * 2654435761u) >> 24);
    CHECK_MSG(shard_write(data, ids, 8000, 256, err) == 0, "%s", err);
    free(ids);
    const char *fmt = "model:\n  d_model: 16\n  n_layers: 1\n  n_heads: 2\n  n_kv_heads: 1\n"
                      "  max_seq: 16\ntrain:\n  steps: %d\n  micro_batch: 2\n  grad_accum: 1\n"
                      "  seq_len: 16\n  warmup: 1\n  val_every: 0\n  log_every: 1\n"
                      "  threads: 1\ndata:\n  train: %s\n  val: \"\"\nrun:\n  dir: %s\n"
                      "  ckpt_every: 1\n  keep: 10\n";
    snprintf(yaml, sizeof(yaml), fmt, 2, data, run);
    int rc = train_logged(yaml, log);
    CHECK_MSG(rc == 0, "first run: exit %d (log %s)", rc, log);
    snprintf(ck2, sizeof(ck2), "%s/ckpt_00000002.h5", run);
    snprintf(good, sizeof(good), "%s/good.h5", dir);
    copy_file(ck2, good);
    CHECK_MSG(load_meta(good, err) == 0, "%s", err);
    snprintf(yaml, sizeof(yaml), fmt, 4, data, run);
    static const struct {
        enum forgery f;
        const char *expect;
    } cases[] = {
        {F_CURSOR_NEG, "state/cursor[0]: -5 is out of range"},
        {F_STEP_NEG_BOTH, "root attribute step: -1 is out of range"},
        {F_STEP_NEG, "state/step: -1 is out of range"},
        {F_STEP_BIG, "state/step: 4294967301 is out of range"},
        {F_MAN_UNUSED, "manifest: row 2 ("},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        copy_file(good, ck2);
        int fr;
        if (cases[i].f == F_CURSOR_NEG) { /* this run's cursor has one value */
            hid_t fid = H5Fopen(ck2, H5F_ACC_RDWR, H5P_DEFAULT);
            int64_t v = -5;
            fr = fid < 0
                     ? -1
                     : put_dataset(fid, "state/cursor", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, 1, &v);
            if (fid >= 0 && H5Fclose(fid) < 0)
                fr = -1;
        } else {
            fr = forge(ck2, cases[i].f);
        }
        CHECK_MSG(fr == 0, "could not forge case %zu", i);
        rc = train_logged(yaml, log);
        char *text = slurp(log, NULL);
        snprintf(want, sizeof(want), "%s: %s", ck2, cases[i].expect);
        CHECK_MSG(rc == HW_EXIT_FAIL && contains(text, want), "case %zu: exit %d, log:\n%s", i, rc,
                  text ? text : "");
        free(text);
        snprintf(want, sizeof(want), "%s/ckpt_00000003.h5", run);
        CHECK_MSG(!file_exists(want), "case %zu: trained on", i);
    }
    /* the good checkpoint resumes */
    copy_file(good, ck2);
    rc = train_logged(yaml, log);
    char *text = slurp(log, NULL);
    CHECK_MSG(rc == 0, "resume of the good checkpoint: exit %d, log:\n%s", rc, text ? text : "");
    free(text);
    snprintf(want, sizeof(want), "%s/ckpt_00000004.h5", run);
    CHECK(file_exists(want));
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
    test_forged();
    test_latest_after_kill();
    test_stale_temps();
    test_file_size_limit();
    test_resume_forged(); /* last: it sets up the process grid */
    if (getenv("TEST_CKPT_KEEP"))
        printf("kept %s\n", g_root);
    else
        rm_rf(g_root);
    dist_finalize(&g_dist);
    return check_report("test_ckpt");
}
