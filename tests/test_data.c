/* tests/test_data.c -- token shards and the loader: round trip, exact resume position,
 * deterministic shuffling that does not repeat within an epoch, bad shards; the synthetic
 * corpus generator's determinism; file safety (core/fsutil.h): data readers refuse a FIFO or
 * directory at once, and the run-directory writers never write through a planted link. */
#define _POSIX_C_SOURCE 200809L
#include "../core/check.h"
#include "../core/fsutil.h"
#include "../datasets/rec_data.h"
#include "../datasets/shards.h"
#include "../datasets/synth.h"
#include "check.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static void test_roundtrip_and_loader(void) {
    char path[128], err[HW_ERR_LEN];
    snprintf(path, sizeof(path), "%s/a.h5", dir);
    const int64_t n = 1001;
    int32_t *tok = malloc(sizeof(int32_t) * n);
    for (int64_t i = 0; i < n; i++)
        tok[i] = (int32_t)i;
    CHECK(shard_write(path, tok, n, 1001, err) == 0);
    struct shard s;
    CHECK(shard_open(&s, path, err) == 0);
    CHECK(s.n == n && s.vocab == 1001);
    int32_t buf[10];
    CHECK(shard_read(&s, buf, 990, 10, err) == 0);
    CHECK(buf[0] == 990 && buf[9] == 999);
    shard_close(&s);

    /* loader: windows of T+1 with targets shifted by one */
    const int T = 10, B = 4;
    struct loader l, l2;
    CHECK(loader_open(&l, path, T, 1, 9, err) == 0);
    CHECK(l.n_windows == 100);
    int32_t x[40], y[40], x2[40], y2[40];
    CHECK(loader_next(&l, x, y, B, err) == 0);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T - 1; t++)
            CHECK(y[b * T + t] == x[b * T + t + 1]);
    /* one epoch visits every window once */
    char seen[100] = {0};
    loader_seek(&l, 0);
    int dup = 0;
    for (int i = 0; i < 100; i++) {
        CHECK(loader_next(&l, x, y, 1, err) == 0);
        int w = x[0] / T; /* token i sits at offset i; windows start at multiples of T */
        dup |= seen[w]++;
    }
    CHECK(!dup);
    /* exact resume: a second loader seeked to pos gives the same next batches */
    loader_seek(&l, 37);
    CHECK(loader_open(&l2, path, T, 1, 9, err) == 0);
    loader_seek(&l2, 37);
    for (int k = 0; k < 30; k++) { /* crosses the epoch boundary at 100 */
        CHECK(loader_next(&l, x, y, B, err) == 0);
        CHECK(loader_next(&l2, x2, y2, B, err) == 0);
        CHECK(memcmp(x, x2, sizeof(x)) == 0 && memcmp(y, y2, sizeof(y)) == 0);
    }
    /* another epoch has another order; another seed another order */
    loader_close(&l2);
    CHECK(loader_open(&l2, path, T, 1, 10, err) == 0);
    loader_seek(&l, 0);
    CHECK(loader_next(&l, x, y, B, err) == 0);
    CHECK(loader_next(&l2, x2, y2, B, err) == 0);
    CHECK(memcmp(x, x2, sizeof(x)) != 0);
    loader_close(&l);
    loader_close(&l2);
    /* too short for one sequence */
    CHECK(loader_open(&l, path, 2000, 1, 1, err) == HW_EFORMAT);
    CHECK(strstr(err, "too few for one sequence") != NULL);
    loader_close(&l);

    /* a token outside the vocabulary is reported with its offset */
    for (int64_t i = 0; i < n; i++)
        tok[i] = (int32_t)(i % 500);
    tok[500] = 700;
    CHECK(shard_write(path, tok, n, 500, err) == 0);
    CHECK(shard_open(&s, path, err) == 0);
    int32_t big[600];
    CHECK(shard_read(&s, big, 0, 600, err) == HW_EFORMAT);
    CHECK_MSG(strstr(err, "token 700 at offset 500 is outside the vocabulary (500)") != NULL, "%s",
              err);
    shard_close(&s);
    char want_[128];
    /* the whole shard against a model's vocabulary, once at open: an id the shard allows but
     * the model has no row for is found wherever it is, and so is one past the shard's own */
    for (int64_t i = 0; i < n; i++)
        tok[i] = (int32_t)(i % 500);
    tok[n - 1] = 450;
    CHECK(shard_write(path, tok, n, 500, err) == 0);
    CHECK(shard_open(&s, path, err) == 0);
    CHECK(shard_check_vocab(&s, 500, err) == 0);
    CHECK(shard_check_vocab(&s, 400, err) == HW_EFORMAT);
    CHECK_MSG(strstr(err, "token 400 at offset 400 is outside the vocabulary of 400 (the model's "
                          "400, the shard's 500)") != NULL,
              "%s", err);
    shard_close(&s);
    for (int64_t i = 0; i < n; i++) /* only the last token is past the model's 200 */
        tok[i] = (int32_t)(i % 100);
    tok[n - 1] = 450;
    CHECK(shard_write(path, tok, n, 500, err) == 0);
    CHECK(shard_open(&s, path, err) == 0);
    CHECK(shard_check_vocab(&s, 200, err) == HW_EFORMAT);
    snprintf(want_, sizeof(want_), "token 450 at offset %lld is outside", (long long)(n - 1));
    CHECK_MSG(strstr(err, want_) != NULL, "%s", err);
    shard_close(&s);
    /* missing and foreign files */
    snprintf(path, sizeof(path), "%s/missing.h5", dir);
    CHECK(shard_open(&s, path, err) == HW_EIO);
    CHECK(strstr(err, "cannot open: No such file or directory") != NULL);
    snprintf(path, sizeof(path), "%s/junk.h5", dir);
    FILE *f = fopen(path, "w");
    fputs("not hdf5", f);
    fclose(f);
    CHECK(shard_open(&s, path, err) == HW_EFORMAT);
    CHECK(strstr(err, "not a readable HDF5 token shard") != NULL);
    free(tok);
}

/* A regression blocks in open() on a FIFO: fail with a line instead of hanging. */
static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "test_data: FAIL: blocked opening a FIFO (a reader waited for a "
                              "writer)\n";
    if (write(2, msg, sizeof(msg) - 1) < 0)
        _exit(1);
    _exit(1);
}

static int err_is(const char *err, const char *path, const char *tail) {
    char want[300];
    snprintf(want, sizeof(want), "%s: %s", path, tail);
    return strcmp(err, want) == 0;
}

/* issue 17 item 4: a FIFO or directory given as a data path is refused at open, with one line
 * naming it, by every reader: token shards (HDF5), the loader, whole-file reads (text, jsonl,
 * MultiFC, RoleMRC, SFT), the recommendation CSV readers. */
static void test_non_regular(void) {
    char err[HW_ERR_LEN], fifo[128];
    snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
    CHECK(mkfifo(fifo, 0644) == 0);
    signal(SIGALRM, on_alarm);
    alarm(60);
    struct shard s;
    CHECK(shard_open(&s, fifo, err) == HW_EIO);
    CHECK_MSG(err_is(err, fifo, "not a regular file (a FIFO)"), "%s", err);
    shard_close(&s);
    struct loader l;
    CHECK(loader_open(&l, fifo, 8, 1, 1, err) != 0);
    CHECK_MSG(err_is(err, fifo, "not a regular file (a FIFO)"), "%s", err);
    loader_close(&l);
    size_t n = 0;
    CHECK(fs_read_all(fifo, &n, err) == NULL);
    CHECK_MSG(err_is(err, fifo, "not a regular file (a FIFO)"), "%s", err);
    CHECK(fs_fopen_read(fifo, err) == NULL);
    CHECK(fs_check_regular(fifo, err) == HW_EIO);
    struct rec_data rd;
    CHECK(rec_data_taobao(&rd, fifo, err) == HW_EIO);
    CHECK_MSG(err_is(err, fifo, "not a regular file (a FIFO)"), "%s", err);
    /* MovieLens reads DIR/u.item and DIR/u.data */
    char ml[128], p[160];
    snprintf(ml, sizeof(ml), "%s/ml", dir);
    CHECK(mkdir(ml, 0755) == 0);
    snprintf(p, sizeof(p), "%s/u.item", ml);
    CHECK(mkfifo(p, 0644) == 0);
    CHECK(rec_data_movielens(&rd, ml, err) == HW_EIO);
    CHECK_MSG(err_is(err, p, "not a regular file (a FIFO)"), "%s", err);
    alarm(0);
    /* a directory */
    CHECK(fs_read_all(dir, &n, err) == NULL);
    CHECK_MSG(err_is(err, dir, "not a regular file (a directory)"), "%s", err);
    CHECK(shard_open(&s, dir, err) == HW_EIO);
    CHECK_MSG(err_is(err, dir, "not a regular file (a directory)"), "%s", err);
    shard_close(&s);
    /* a link to a regular file is still read (data sets are often links) */
    snprintf(p, sizeof(p), "%s/real.txt", dir);
    CHECK(fs_write_atomic(p, "abc", 3, err) == 0);
    char lk[160];
    snprintf(lk, sizeof(lk), "%s/link.txt", dir);
    CHECK(symlink(p, lk) == 0);
    char *txt = fs_read_all(lk, &n, err);
    CHECK(txt && n == 3 && strcmp(txt, "abc") == 0);
    free(txt);
    unlink(lk);
    unlink(p);
}

static int file_is(const char *path, const char *want) {
    size_t n = 0;
    char e[HW_ERR_LEN];
    char *got = fs_read_all(path, &n, e);
    int ok = got && n == strlen(want) && memcmp(got, want, n) == 0;
    free(got);
    return ok;
}

static int is_regular_nolink(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Number of entries in dir whose name starts with prefix. */
static int count_prefix(const char *d, const char *prefix) {
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "ls -a '%s' | grep -c '^%s'", d, prefix);
    FILE *p = popen(cmd, "r");
    int k = -1;
    if (p) {
        if (fscanf(p, "%d", &k) != 1)
            k = -1;
        pclose(p);
    }
    return k;
}

/* issue 17 item 5: the writers never write through a link planted in a shared run directory:
 * fs_write_atomic (config.yaml, tokenizer.json, results, reports) creates a unique temporary
 * file exclusively and renames it over the link; fs_open_append (metrics.jsonl) refuses a link;
 * fs_create (sample logs) replaces it; shard_write creates its temporary file exclusively. */
static void test_planted_links(void) {
    char err[HW_ERR_LEN], run[128], out[128], p[200], q[220];
    snprintf(run, sizeof(run), "%s/run", dir);
    snprintf(out, sizeof(out), "%s/outside", dir);
    CHECK(mkdir(run, 0755) == 0);
    CHECK(fs_write_atomic(out, "precious\n", 9, err) == 0);

    /* fs_write_atomic: a link at the file and at the old fixed temporary name */
    snprintf(p, sizeof(p), "%s/config.yaml", run);
    snprintf(q, sizeof(q), "%s.tmp", p);
    CHECK(symlink(out, p) == 0 && symlink(out, q) == 0);
    CHECK_MSG(fs_write_atomic(p, "a: 1\n", 5, err) == 0, "%s", err);
    CHECK(file_is(out, "precious\n"));
    CHECK(is_regular_nolink(p) && file_is(p, "a: 1\n"));
    CHECK(unlink(q) == 0);
    CHECK(count_prefix(run, "config.yaml.tmp") == 0); /* no temporary left behind */
    /* a dangling link is replaced too, and never creates its target */
    char gone[160];
    snprintf(gone, sizeof(gone), "%s/not_there", dir);
    snprintf(p, sizeof(p), "%s/tokenizer.json", run);
    CHECK(symlink(gone, p) == 0);
    CHECK(fs_write_atomic(p, "{}", 2, err) == 0);
    CHECK(access(gone, F_OK) != 0 && is_regular_nolink(p) && file_is(p, "{}"));
    /* temporary names are fresh each time */
    char t1[300], t2[300];
    CHECK(fs_temp_path(t1, sizeof(t1), p, err) == 0 && fs_temp_path(t2, sizeof(t2), p, err) == 0);
    CHECK(strcmp(t1, t2) != 0 && strncmp(t1, p, strlen(p)) == 0);
    CHECK(fs_temp_path(t1, 20, p, err) == HW_EIO && strstr(err, "path too long") != NULL);

    /* fs_open_append: refuses a link (to a file or dangling), a FIFO, a second hard link */
    snprintf(p, sizeof(p), "%s/metrics.jsonl", run);
    CHECK(symlink(out, p) == 0);
    CHECK(fs_open_append(p, err) == NULL);
    CHECK_MSG(err_is(err, p, "is a symbolic link; refusing to write through it"), "%s", err);
    CHECK(file_is(out, "precious\n"));
    unlink(p);
    CHECK(symlink(gone, p) == 0);
    CHECK(fs_open_append(p, err) == NULL && access(gone, F_OK) != 0);
    unlink(p);
    CHECK(mkfifo(p, 0644) == 0);
    alarm(60);
    CHECK(fs_open_append(p, err) == NULL);
    alarm(0);
    CHECK_MSG(strstr(err, "not a regular file (a FIFO)") != NULL, "%s", err);
    unlink(p);
    CHECK(link(out, p) == 0);
    CHECK(fs_open_append(p, err) == NULL);
    CHECK_MSG(err_is(err, p, "refusing to write: has 2 hard links"), "%s", err);
    CHECK(file_is(out, "precious\n"));
    unlink(p);
    FILE *f = fs_open_append(p, err); /* missing: created; present: appended to */
    CHECK(f != NULL);
    if (f) {
        fputs("{\"step\":1}\n", f);
        fclose(f);
    }
    f = fs_open_append(p, err);
    CHECK(f != NULL);
    if (f) {
        fputs("{\"step\":2}\n", f);
        fclose(f);
    }
    CHECK(file_is(p, "{\"step\":1}\n{\"step\":2}\n"));

    /* fs_create: a link (or hard link) at the name is replaced by a new file */
    snprintf(p, sizeof(p), "%s/samples_x.jsonl", run);
    CHECK(symlink(out, p) == 0);
    f = fs_create(p, err);
    CHECK_MSG(f != NULL, "%s", err);
    if (f) {
        fputs("s\n", f);
        fclose(f);
    }
    CHECK(file_is(out, "precious\n") && is_regular_nolink(p) && file_is(p, "s\n"));
    unlink(p);
    CHECK(link(out, p) == 0);
    f = fs_create(p, err);
    CHECK(f != NULL);
    if (f)
        fclose(f);
    CHECK(file_is(out, "precious\n") && file_is(p, ""));
    CHECK(fs_create(dir, err) == NULL); /* a directory is not replaced */

    /* shard_write: its temporary file is created exclusively, never through a link */
    snprintf(p, sizeof(p), "%s/train.h5", run);
    snprintf(q, sizeof(q), "%s.tmp", p);
    CHECK(symlink(out, p) == 0 && symlink(out, q) == 0);
    int32_t tok[16];
    for (int i = 0; i < 16; i++)
        tok[i] = i;
    CHECK_MSG(shard_write(p, tok, 16, 300, err) == 0, "%s", err);
    CHECK(file_is(out, "precious\n") && is_regular_nolink(p));
    struct shard s;
    CHECK(shard_open(&s, p, err) == 0 && s.n == 16);
    shard_close(&s);
    unlink(q);
    CHECK(count_prefix(run, "train.h5.tmp") == 0);
}

static void test_synth(void) {
    size_t n1, n2;
    char *a = synth_corpus(5, 20000, &n1), *b = synth_corpus(5, 20000, &n2);
    CHECK(n1 == n2 && n1 >= 19900 && memcmp(a, b, n1) == 0);
    CHECK(a[n1 - 1] == '\n');
    CHECK(strstr(a, "copy ") && strstr(a, "reverse ") && strstr(a, "add ") && strstr(a, "recall "));
    /* every addition line is correct */
    int bad = 0, lines = 0;
    for (char *p = strstr(a, "add "); p; p = strstr(p + 1, "\nadd ")) {
        int x, y, z;
        if (sscanf(p + (*p == '\n' ? 5 : 4), "%d+%d > %d", &x, &y, &z) == 3) {
            bad += x + y != z;
            lines++;
        }
    }
    CHECK(lines > 50 && bad == 0);
    char *c = synth_corpus(6, 20000, &n2);
    CHECK(memcmp(a, c, 100) != 0);
    free(a), free(b), free(c);
}

int main(void) {
    snprintf(dir, sizeof(dir), "/tmp/hwdata.XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    test_roundtrip_and_loader();
    test_synth();
    test_non_regular();
    test_planted_links();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    return check_report("test_data");
}
