/* tests/test_cfg.c -- the config loader (core/cfg.c): defaults, good files, `base:` chains,
 * overrides, the YAML round trip, docs/config.md, and every tests/bad_configs/bad_*.yaml.
 * Each bad config starts with "# expect: <the exact error line>", where {file} stands for the
 * path the test loads it by and {dir} for its directory (errors inside a base file name that
 * file). All of them must fail with HW_ECONFIG -- a missing *base* file is a config error at
 * the `base:` line; only a missing top-level file is HW_EIO (tested here, not by a bad config).
 * The directory comes from $HW_TESTS_DIR (default "tests"). */
#define _XOPEN_SOURCE 700
#include "../config/config.h"
#include "../core/check.h"
#include "check.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];
static char made[64][512]; /* files and dirs created under tmpdir, removed in reverse order */
static int n_made;

static void remember(const char *path) {
    for (int i = 0; i < n_made; i++)
        if (!strcmp(made[i], path))
            return;
    if (n_made < 64)
        snprintf(made[n_made++], sizeof(made[0]), "%s", path);
}

static const char *tests_dir(void) {
    const char *d = getenv("HW_TESTS_DIR");
    return d && d[0] ? d : "tests";
}

/* Write text to tmpdir/name; returns the path in a static rotating buffer. */
static const char *put(const char *name, const char *text) {
    static char bufs[4][512];
    static int next;
    char *path = bufs[next++ % 4];
    snprintf(path, 512, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    remember(path);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    return path;
}

/* Read a whole file; caller frees. NULL if it cannot be opened. */
static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (size_t got; (got = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
        n += got;
        if (n + 1 == cap)
            buf = realloc(buf, cap *= 2);
    }
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Replace every "{file}" and "{dir}" in tmpl. */
static void expand(char *out, size_t n, const char *tmpl, const char *file, const char *dir) {
    size_t o = 0;
    while (*tmpl && o + 1 < n) {
        const char *rep = NULL;
        if (!strncmp(tmpl, "{file}", 6))
            rep = file;
        else if (!strncmp(tmpl, "{dir}", 5))
            rep = dir;
        if (rep) {
            o += (size_t)snprintf(out + o, n - o, "%s", rep);
            tmpl += rep == file ? 6 : 5;
        } else {
            out[o++] = *tmpl++;
        }
    }
    out[o < n ? o : n - 1] = '\0';
}

// ------------------------------------------------------------------------------------------------

static void test_defaults(void) {
    struct hw_config c;
    cfg_defaults(&c);
    CHECK(c.model.d_model == 128 && c.model.n_layers == 4 && c.model.n_heads == 4);
    CHECK(c.model.n_kv_heads == 0 && c.model.vocab == 0 && c.model.d_ff == 0);
    CHECK(c.model.max_seq == 1024 && !strcmp(c.model.mlp, "swiglu"));
    CHECK(c.model.tied_embeddings == 1);
    CHECK(c.model.rope_theta == 10000.0 && c.model.norm_eps == 1e-5 && c.model.init_std == 0.02);
    CHECK(c.train.steps == 1000 && c.train.micro_batch == 8 && c.train.grad_accum == 1);
    CHECK(c.train.seq_len == 256 && c.train.lr == 3e-4 && c.train.min_lr == 3e-5);
    CHECK(c.train.warmup == 100 && c.train.weight_decay == 0.1);
    CHECK(c.train.beta1 == 0.9 && c.train.beta2 == 0.95 && c.train.eps == 1e-8);
    CHECK(c.train.grad_clip == 1.0 && c.train.val_every == 100 && c.train.val_batches == 8);
    CHECK(c.train.log_every == 10 && c.train.seed == 1337 && c.train.threads == 0);
    CHECK(!strcmp(c.data.train, "") && !strcmp(c.data.val, "") && !strcmp(c.data.tokenizer, ""));
    CHECK(!strcmp(c.run.dir, "runs/default") && c.run.ckpt_every == 0 && c.run.keep == 3);
    CHECK(!strcmp(c.run.resume, "auto"));

    CHECK(cfg_kv_heads(&c.model) == 4);
    CHECK(cfg_d_ff(&c.model) == 384); /* 8*128/3 = 341 -> 384 */
    c.model.n_kv_heads = 2;
    CHECK(cfg_kv_heads(&c.model) == 2);
    snprintf(c.model.mlp, sizeof(c.model.mlp), "gelu");
    CHECK(cfg_d_ff(&c.model) == 512);
    c.model.d_ff = 100;
    CHECK(cfg_d_ff(&c.model) == 100);
    c.model.d_ff = 0;
    c.model.d_model = 8;
    snprintf(c.model.mlp, sizeof(c.model.mlp), "swiglu");
    CHECK(cfg_d_ff(&c.model) == 64);

    /* An empty file and an empty string give the defaults. */
    struct hw_config d, e;
    char err[HW_ERR_LEN] = "";
    cfg_defaults(&d);
    CHECK_MSG(cfg_load(&e, put("empty.yaml", "# nothing here\n"), 0, NULL, err) == 0, "%s", err);
    CHECK(!memcmp(&d.model, &e.model, sizeof(d.model)) &&
          !memcmp(&d.train, &e.train, sizeof(d.train)));
    CHECK_MSG(cfg_load_string(&e, "", "x", 0, NULL, err) == 0, "%s", err);
    CHECK(!memcmp(&d.run, &e.run, sizeof(d.run)) && !strcmp(e.source, "x"));
}

static void test_good_config(void) {
    struct hw_config c;
    char err[HW_ERR_LEN] = "";
    const char *path = put("good.yaml", "# a full config\n"
                                        "model:\n"
                                        "  d_model: 256\n"
                                        "  n_layers: 6\n"
                                        "  n_heads: 8\n"
                                        "  n_kv_heads: 2\n"
                                        "  vocab: 50257\n"
                                        "  max_seq: 2048\n"
                                        "  mlp: gelu\n"
                                        "  tied_embeddings: false\n"
                                        "  rope_theta: 5.0e+5\n"
                                        "  norm_eps: 1e-6\n"
                                        "train:\n"
                                        "  steps: 20000\n"
                                        "  seq_len: 1024\n"
                                        "  lr: 6e-4\n"
                                        "  min_lr: 0\n"
                                        "  warmup: 2000\n"
                                        "  beta2: 0.99\n"
                                        "  grad_clip: 0\n"
                                        "  seed: 9007199254740993\n"
                                        "data:\n"
                                        "  train: 'data/tiny train.h5'\n"
                                        "  val: data/val.h5\n"
                                        "run:\n"
                                        "  dir: runs/x\n"
                                        "  resume: never\n"
                                        "  keep: 1\n");
    int rc = cfg_load(&c, path, 0, NULL, err);
    CHECK_MSG(rc == 0, "%s", err);
    CHECK(c.model.d_model == 256 && c.model.n_layers == 6 && c.model.n_heads == 8);
    CHECK(c.model.n_kv_heads == 2 && cfg_kv_heads(&c.model) == 2 && c.model.vocab == 50257);
    CHECK(!strcmp(c.model.mlp, "gelu") && c.model.tied_embeddings == 0);
    CHECK(c.model.rope_theta == 5e5 && c.model.norm_eps == 1e-6);
    CHECK(c.model.init_std == 0.02); /* default kept */
    CHECK(c.train.steps == 20000 && c.train.lr == 6e-4 && c.train.min_lr == 0.0);
    CHECK(c.train.seed == 9007199254740993LL && c.train.grad_clip == 0.0);
    CHECK(!strcmp(c.data.train, "data/tiny train.h5") && !strcmp(c.data.val, "data/val.h5"));
    CHECK(!strcmp(c.run.dir, "runs/x") && !strcmp(c.run.resume, "never") && c.run.keep == 1);
    CHECK(!strcmp(c.source, path));

    /* A failed load leaves the struct alone. */
    struct hw_config before = c;
    rc = cfg_load(&c, put("bad.yaml", "model:\n  d_model: x\n"), 0, NULL, err);
    CHECK(rc == HW_ECONFIG && !memcmp(&before, &c, sizeof(c)));

    /* Missing top-level file: HW_EIO. */
    char missing[300];
    snprintf(missing, sizeof(missing), "%s/nope.yaml", tmpdir);
    rc = cfg_load(&c, missing, 0, NULL, err);
    char want[2048];
    snprintf(want, sizeof(want), "%s: error: cannot open: No such file or directory", missing);
    CHECK_MSG(rc == HW_EIO && !strcmp(err, want), "rc=%d %s", rc, err);
}

static void test_base(void) {
    struct hw_config c;
    char err[HW_ERR_LEN] = "";
    char sub[300];
    snprintf(sub, sizeof(sub), "%s/sub", tmpdir);
    CHECK(mkdir(sub, 0755) == 0);
    remember(sub);
    put("grand.yaml", "model:\n  n_layers: 12\n  vocab: 1000\ntrain:\n  steps: 5000\n");
    put("base.yaml", "base: grand.yaml\nmodel:\n  d_model: 256\n  n_layers: 8\n"
                     "train:\n  lr: 1e-3\n");
    const char *child = put("sub/child.yaml", "# inherits base.yaml, one dir up\n"
                                              "base: ../base.yaml\n"
                                              "model:\n"
                                              "  n_layers: 2\n"
                                              "run:\n"
                                              "  dir: runs/child\n");
    int rc = cfg_load(&c, child, 0, NULL, err);
    CHECK_MSG(rc == 0, "%s", err);
    CHECK(c.model.n_layers == 2);  /* child wins */
    CHECK(c.model.d_model == 256); /* from base.yaml */
    CHECK(c.model.vocab == 1000);  /* from grand.yaml, through base.yaml */
    CHECK(c.train.steps == 5000);  /* grand.yaml */
    CHECK(c.train.lr == 1e-3);     /* base.yaml */
    CHECK(c.model.n_heads == 4);   /* default */
    CHECK(!strcmp(c.run.dir, "runs/child"));
    CHECK(!strcmp(c.source, child)); /* the file asked for, not a base */

    /* A cross-field error from merged files points at the key set last (the child). */
    put("ctx.yaml", "model:\n  max_seq: 512\ntrain:\n  seq_len: 512\n");
    const char *bad = put("sub/long.yaml", "base: ../ctx.yaml\ntrain:\n  seq_len: 1024\n");
    rc = cfg_load(&c, bad, 0, NULL, err);
    char want[2048];
    snprintf(want, sizeof(want),
             "%s:3:12: error: train.seq_len: 1024 is larger than "
             "model.max_seq 512",
             bad);
    CHECK_MSG(rc == HW_ECONFIG && !strcmp(err, want), "%s", err);

    /* Cycle through a subdirectory and back. */
    put("cyc1.yaml", "base: sub/cyc2.yaml\n");
    put("sub/cyc2.yaml", "base: ../cyc1.yaml\n");
    rc = cfg_load(&c, put("cyc0.yaml", "base: cyc1.yaml\n"), 0, NULL, err);
    snprintf(want, sizeof(want),
             "%s/sub/cyc2.yaml:1:7: error: base: cycle: %s/cyc1.yaml -> %s/sub/cyc2.yaml -> "
             "%s/sub/../cyc1.yaml",
             tmpdir, tmpdir, tmpdir, tmpdir);
    CHECK_MSG(rc == HW_ECONFIG && !strcmp(err, want), "%s", err);

    /* `base:` is not allowed in a config given as text. */
    rc = cfg_load_string(&c, "model:\n  d_model: 64\nbase: x.yaml\n", "ckpt.h5:config", 0, NULL,
                         err);
    CHECK_MSG(rc == HW_ECONFIG &&
                  !strcmp(err, "ckpt.h5:config:3:1: error: base: not allowed in an embedded "
                               "config"),
              "%s", err);
}

static void test_duplicate(void) {
    struct hw_config c;
    char err[HW_ERR_LEN] = "";
    int rc = cfg_load_string(&c, "train:\n  lr: 1e-3\n  lr: 1e-3\n", "d.yaml", 0, NULL, err);
    CHECK_MSG(rc == HW_ECONFIG &&
                  !strcmp(err, "d.yaml:3:3: error: duplicate key 'train.lr' (first set at line 2)"),
              "%s", err);
}

static void test_overrides(void) {
    struct hw_config c;
    char err[HW_ERR_LEN] = "";
    const char *path = put("ov.yaml", "model:\n  d_model: 256\ntrain:\n  steps: 100\n");
    char *ov[] = {"train.steps=200",
                  "train.lr=1e-3",
                  "model.tied_embeddings=false",
                  "data.train=\"my data/a.h5\"",
                  "data.val=plain/val.h5",
                  "model.mlp=gelu",
                  "train.steps=300", /* later wins */
                  "model={n_layers: 6, n_heads: 8}",
                  "train.seed=42",
                  "run.resume=never"};
    int rc = cfg_load(&c, path, (int)(sizeof(ov) / sizeof(ov[0])), ov, err);
    CHECK_MSG(rc == 0, "%s", err);
    CHECK(c.train.steps == 300 && c.train.lr == 1e-3 && c.model.tied_embeddings == 0);
    CHECK(!strcmp(c.data.train, "my data/a.h5") && !strcmp(c.data.val, "plain/val.h5"));
    CHECK(!strcmp(c.model.mlp, "gelu") && c.model.n_layers == 6 && c.model.n_heads == 8);
    CHECK(c.model.d_model == 256 && c.train.seed == 42 && !strcmp(c.run.resume, "never"));

    /* cfg_override on a loaded config */
    rc = cfg_override(&c, "train.lr=2.5e-4", err);
    CHECK_MSG(rc == 0 && c.train.lr == 2.5e-4, "%s", err);
    rc = cfg_override(&c, "model.tied_embeddings=true", err);
    CHECK_MSG(rc == 0 && c.model.tied_embeddings == 1, "%s", err);
    struct hw_config before = c;
    rc = cfg_override(&c, "model.n_heads=3", err);
    CHECK_MSG(rc == HW_ECONFIG && !strcmp(err, "<override 1>:1:15: error: model.n_heads: "
                                               "d_model 256 is not divisible by n_heads 3"),
              "%s", err);
    CHECK(!memcmp(&before, &c, sizeof(c))); /* unchanged on error */

    /* A broken rule on keys never set in this call is reported at the config's line 1. */
    cfg_defaults(&c);
    c.train.warmup = 5000;
    rc = cfg_override(&c, "train.lr=1e-3", err);
    CHECK_MSG(rc == HW_ECONFIG && !strcmp(err, "<config>:1:1: error: train.warmup: 5000 is "
                                               "larger than train.steps 1000"),
              "%s", err);
}

struct ov_case {
    const char *kv;
    const char *want;
};

static void test_override_errors(void) {
    static const struct ov_case cases[] = {
        {"train.steps=ten",
         "<override 2>:1:13: error: train.steps: expected an integer, got 'ten'"},
        {"model.d_modl=3",
         "<override 2>:1:1: error: unknown key 'model.d_modl' (did you mean 'model.d_model'?)"},
        {"d_model=256", "<override 2>:1:1: error: unknown key 'd_model' (did you mean "
                        "'model.d_model'?)"},
        {"train.seq_len", "<override 2>:1:1: error: expected key.path=value"},
        {"=3", "<override 2>:1:1: error: expected key.path=value"},
        {"totally.unrelated.thing=1", "<override 2>:1:1: error: unknown key "
                                      "'totally.unrelated.thing'"},
        {"base=x.yaml", "<override 2>:1:1: error: base: not allowed in an override"},
        {"train.lr=2", "<override 2>:1:10: error: train.lr: 2 is out of range (0, 1]"},
        {"train.lr=fast", "<override 2>:1:10: error: train.lr: expected a number, got 'fast'"},
        {"model.tied_embeddings=1", "<override 2>:1:23: error: model.tied_embeddings: expected a "
                                    "boolean (true or false), got '1'"},
        {"model.mlp=relu",
         "<override 2>:1:11: error: model.mlp: expected one of swiglu|gelu, got 'relu'"},
        {"run.dir=", "<override 2>:1:9: error: run.dir: must not be empty"},
        {"data.train=[a, b]", "<override 2>:1:12: error: data.train: expected a string, got a "
                              "sequence"},
        {"train.lr=[1", "<override 2>:1:12: error: syntax: did not find expected ',' or ']' "
                        "(while parsing a flow sequence at 1:10)"},
        {"model=small", "<override 2>:1:7: error: model: expected a mapping, got 'small'"},
        {"model={d_modle: 3}", "<override 2>:1:8: error: unknown key 'd_modle' in 'model' (did "
                               "you mean 'd_model'?)"},
        {"model.max_seq=128", "<override 2>:1:15: error: model.max_seq: 128 is smaller than "
                              "train.seq_len 256"},
        {"train.min_lr=0.01", "<override 2>:1:14: error: train.min_lr: 0.01 is larger than "
                              "train.lr 0.0003"},
    };
    const char *path = put("ovbase.yaml", "train:\n  steps: 100\n  warmup: 10\n");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct hw_config c;
        char err[HW_ERR_LEN] = "";
        char *ov[2] = {"train.steps=200", (char *)cases[i].kv};
        int rc = cfg_load(&c, path, 2, ov, err);
        CHECK_MSG(rc == HW_ECONFIG && !strcmp(err, cases[i].want),
                  "override '%s':\n   got: %s\n  want: %s", cases[i].kv, err, cases[i].want);
    }
}

static int same_config(const struct hw_config *a, const struct hw_config *b) {
    return !memcmp(&a->model, &b->model, sizeof(a->model)) &&
           !memcmp(&a->train, &b->train, sizeof(a->train)) &&
           !memcmp(&a->data, &b->data, sizeof(a->data)) &&
           !memcmp(&a->run, &b->run, sizeof(a->run));
}

static void test_roundtrip(void) {
    struct hw_config a, b;
    char err[HW_ERR_LEN] = "";
    char *ov[] = {"train.lr=0.1",
                  "train.min_lr=0.033333333333333333",
                  "model.init_std=0.0123456789012345678",
                  "model.norm_eps=1e-300",
                  "model.rope_theta=1e300",
                  "train.eps=4.9e-324",
                  "train.weight_decay=0",
                  "train.seed=9223372036854775807",
                  "data.train=\"quote\\\" back\\\\ tab\\t nl\\n \\u00e9 # : {x}\"",
                  "data.val=' lead and trail '",
                  "data.tokenizer=\"\"",
                  "run.dir=\"true\""};
    int rc = cfg_load(&a, put("rt.yaml", "model:\n  mlp: gelu\n  tied_embeddings: false\n"), 12, ov,
                      err);
    CHECK_MSG(rc == 0, "%s", err);
    CHECK(!strcmp(a.data.train, "quote\" back\\ tab\t nl\n \xc3\xa9 # : {x}"));
    CHECK(!strcmp(a.data.val, " lead and trail ") && !strcmp(a.run.dir, "true"));
    char *y = cfg_to_yaml(&a);
    rc = cfg_load_string(&b, y, "dump", 0, NULL, err);
    CHECK_MSG(rc == 0, "%s\n%s", err, y);
    CHECK(same_config(&a, &b));
    CHECK(a.train.min_lr == b.train.min_lr && a.train.eps == b.train.eps);
    CHECK(!strcmp(a.data.train, b.data.train) && a.train.seed == b.train.seed);
    char *y2 = cfg_to_yaml(&b);
    CHECK(!strcmp(y, y2));
    /* every key is present */
    CHECK(strstr(y, "  tied_embeddings: false\n") && strstr(y, "  resume: auto\n"));
    CHECK(strstr(y, "  lr: 0.1\n") && strstr(y, "  rope_theta: 1e+300\n"));
    free(y);
    free(y2);

    /* defaults round-trip too */
    cfg_defaults(&a);
    y = cfg_to_yaml(&a);
    rc = cfg_load_string(&b, y, "dump", 0, NULL, err);
    CHECK_MSG(rc == 0 && same_config(&a, &b), "%s", err);
    free(y);
}

static void test_docs(void) {
    FILE *f = tmpfile();
    CHECK(f != NULL);
    if (!f)
        return;
    cfg_write_docs(f);
    long n = ftell(f);
    rewind(f);
    char *got = calloc((size_t)n + 1, 1);
    CHECK(fread(got, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    CHECK(!strncmp(got, "# Configuration reference\n", 26));
    CHECK(strstr(got, "| `d_model` | int | `128` | [8, 65536] |") != NULL);
    CHECK(strstr(got, "| `lr` | number | `0.0003` | (0, 1] |") != NULL);
    CHECK(strstr(got, "| `mlp` | enum | `swiglu` | swiglu \\| gelu |") != NULL);
    CHECK(strstr(got, "## Cross-field rules") != NULL);

    /* docs/config.md is exactly what cfg_write_docs prints */
    char path[600];
    snprintf(path, sizeof(path), "%s/../docs/config.md", tests_dir());
    char *file = slurp(path);
    CHECK_MSG(file && !strcmp(file, got),
              "%s differs from cfg_write_docs output; regenerate it (headwise config docs)", path);
    free(file);
    free(got);
}

static void test_bad_configs(void) {
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/bad_configs", tests_dir());
    DIR *d = opendir(dir);
    CHECK_MSG(d != NULL, "cannot open %s", dir);
    if (!d)
        return;
    int count = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, "bad_", 4) || len < 9 || strcmp(e->d_name + len - 5, ".yaml"))
            continue;
        char path[1024], want[2048];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        char *text = slurp(path);
        CHECK_MSG(text && !strncmp(text, "# expect: ", 10), "%s: no '# expect: ' line", path);
        if (!text || strncmp(text, "# expect: ", 10)) {
            free(text);
            continue;
        }
        char *nl = strchr(text, '\n');
        if (nl)
            *nl = '\0';
        expand(want, sizeof(want), text + 10, path, dir);
        free(text);

        struct hw_config c;
        char err[HW_ERR_LEN] = "";
        int rc = cfg_load(&c, path, 0, NULL, err);
        CHECK_MSG(rc == HW_ECONFIG && !strcmp(err, want), "%s: rc=%d\n   got: %s\n  want: %s", path,
                  rc, err, want);
        count++;
    }
    closedir(d);
    CHECK_MSG(count >= 15, "only %d bad configs in %s", count, dir);
}

/* cfg_resolve_grid: auto data, lists of heads and context tried in order, head groups kept on
 * one node, the global batch kept when the data ranks do not divide the micro-batch, and one
 * line naming every choice when nothing fits. */
static void test_grid(void) {
    struct hw_config c;
    char err[HW_ERR_LEN] = "", note[1024] = "";
    char *ov[] = {"dist.heads=[2,1]", "dist.context=[2,1]", "train.micro_batch=4",
                  "train.grad_accum=3", "train.val_batches=8"};
    int rc = cfg_load(&c, put("grid.yaml", "model:\n  n_heads: 4\n  n_kv_heads: 2\n"), 5, ov, err);
    CHECK_MSG(rc == 0, "%s", err);
    CHECK(c.dist.data.n == 0 && c.dist.heads.n == 2 && c.dist.heads.v == 2);
    char *y = cfg_to_yaml(&c); /* the choices, not the values in force, are kept */
    CHECK(strstr(y, "  data: auto\n") && strstr(y, "  heads: [2, 1]\n"));
    free(y);

    struct hw_config r = c;
    CHECK(cfg_resolve_grid(&r, 8, NULL, note, sizeof(note), err) == 0);
    CHECK(r.dist.heads.v == 2 && r.dist.context.v == 2 && r.dist.data.v == 2);
    CHECK(r.train.micro_batch == 4 && r.train.grad_accum == 3); /* 2 divides 4: kept */

    /* 6 ranks: heads 2 x context 2 does not divide; heads 2 x context 1 leaves data 3, which
     * does not divide micro_batch 4: 3 x 4 instead of 4 x 3, the same 12 sequences a step */
    r = c;
    CHECK_MSG(cfg_resolve_grid(&r, 6, NULL, note, sizeof(note), err) == 0, "%s", err);
    CHECK(r.dist.heads.v == 2 && r.dist.context.v == 1 && r.dist.data.v == 3);
    CHECK(r.train.micro_batch == 3 && r.train.grad_accum == 4 && r.train.val_batches == 11);
    CHECK_MSG(strstr(note, "grid chosen for 6 ranks: data 3 (auto), heads 2, context 1") &&
                  strstr(note, "heads 2 x context 2 does not divide 6 ranks"),
              "%s", note);

    /* two nodes of 3 ranks: a head group of 2 would span them (ranks 2 and 3) */
    const int nodes[6] = {0, 0, 0, 3, 3, 3};
    r = c;
    CHECK(cfg_resolve_grid(&r, 6, nodes, note, sizeof(note), err) == 0);
    CHECK(r.dist.heads.v == 1 && r.dist.context.v == 2 && r.dist.data.v == 3);
    CHECK_MSG(strstr(note, "heads 2: a head group would span two nodes"), "%s", note);
    /* a single size is what was asked for: kept, and the note says the groups span nodes */
    struct hw_config one;
    char *ov1[] = {"dist.heads=2", "train.micro_batch=12"};
    CHECK(cfg_load(&one, put("grid1.yaml", "model:\n  n_heads: 4\n  n_kv_heads: 2\n"), 2, ov1,
                   err) == 0);
    CHECK(cfg_resolve_grid(&one, 6, nodes, note, sizeof(note), err) == 0 && one.dist.heads.v == 2);
    CHECK_MSG(strstr(note, "head groups of 2 span nodes"), "%s", note);

    /* 5 ranks: only data 5 x heads 1 x context 1 divides, and 5 does not divide 12 sequences */
    r = c;
    rc = cfg_resolve_grid(&r, 5, NULL, note, sizeof(note), err);
    CHECK(rc == HW_ECONFIG && r.dist.heads.v == 2 && r.train.micro_batch == 4);
    CHECK_MSG(strstr(err, "<override 1>:1:12: error: dist: no grid fits the job's 5 ranks") &&
                  strstr(err, "data 5 does not divide the global batch of 4 x 3 sequences"),
              "%s", err);

    /* a fixed data size must be met exactly */
    char *ov2[] = {"dist.data=2"};
    rc = cfg_load(&c, put("grid2.yaml", "train:\n  micro_batch: 4\n"), 1, ov2, err);
    CHECK_MSG(rc == 0, "%s", err);
    r = c;
    rc = cfg_resolve_grid(&r, 3, NULL, note, sizeof(note), err);
    CHECK_MSG(rc == HW_ECONFIG && strstr(err, "<override 1>:1:11: error: dist: no grid fits") &&
                  strstr(err, "leaves data 3, not a dist.data value"),
              "%s", err);
    r = c;
    CHECK(cfg_resolve_grid(&r, 2, NULL, note, sizeof(note), err) == 0 && r.dist.data.v == 2);
}

// ------------------------------------------------------------------------------------------------

int main(void) {
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/test_cfg_XXXXXX", t && t[0] ? t : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_defaults();
    test_good_config();
    test_base();
    test_duplicate();
    test_overrides();
    test_override_errors();
    test_roundtrip();
    test_docs();
    test_bad_configs();
    test_grid();

    while (n_made > 0)
        remove(made[--n_made]);
    if (remove(tmpdir) != 0)
        fprintf(stderr, "test_cfg: could not remove %s\n", tmpdir);
    return check_report("test_cfg");
}
