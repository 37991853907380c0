/* tests/test_fuzz_regress.c -- replays every input under fuzz/regress/<target>/ (crashes found
 * by fuzzing or by audit, kept forever) and fuzz/corpus/<target>/ (seeds) through the same
 * entry functions the libFuzzer targets call (fuzz/fuzz_entries.c, included here so no Makefile
 * change is needed). One check per input: it returned without crashing (a crash, an abort from
 * a broken property or a sanitizer report under `make check` ends the test). Each input's name
 * is printed to stderr before it runs, so a crash log names it. HW_FUZZ_DIR overrides the
 * directory (default: fuzz, relative to the repository root where tests/run.sh runs). */
#define _POSIX_C_SOURCE 200809L

#include "../fuzz/fuzz_entries.c"

#include "check.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int cmp_str_(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorted names of the regular files in dir (NULL and 0 when dir is missing). */
static char **list_files_(const char *dir, int *n_out) {
    char **v = NULL;
    int n = 0, cap = 0;
    DIR *d = opendir(dir);
    *n_out = 0;
    if (!d)
        return NULL;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char p[1024];
        struct stat st;
        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        if (stat(p, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            v = HW_REALLOC(v, (size_t)cap * sizeof(*v));
        }
        v[n++] = HW_STRDUP(e->d_name);
    }
    closedir(d);
    if (n)
        qsort(v, (size_t)n, sizeof(*v), cmp_str_);
    *n_out = n;
    return v;
}

static uint8_t *read_bytes_(const char *path, size_t *size) {
    char err[HW_ERR_LEN];
    char *p = fs_read_all(path, size, err);
    if (!p)
        fprintf(stderr, "%s\n", err);
    return (uint8_t *)p;
}

/* Runs every file of root/<target>/ through its entry; returns the number of inputs. */
static int run_dir_(const char *root, const struct fuzz_target *t) {
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/%s", root, t->name);
    int n = 0;
    char **names = list_files_(dir, &n);
    for (int i = 0; i < n; i++) {
        char path[1024];
        size_t size = 0;
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        fprintf(stderr, "%s\n", path);
        uint8_t *data = read_bytes_(path, &size);
        CHECK_MSG(data != NULL, "cannot read %s", path);
        if (data)
            CHECK_MSG(t->fn(data, size) == 0, "%s", path);
        free(data);
        free(names[i]);
    }
    free(names);
    return n;
}

int main(void) {
    const char *root = getenv("HW_FUZZ_DIR");
    char dir[512];
    struct stat st;
    if (!root || !root[0])
        root = "fuzz";
    snprintf(dir, sizeof(dir), "%s/corpus", root);
    CHECK_MSG(stat(dir, &st) == 0 && S_ISDIR(st.st_mode),
              "%s: missing (run from the repository root or set HW_FUZZ_DIR)", dir);
    /* every directory under corpus/ and regress/ must name a target */
    const char *const kinds[2] = {"corpus", "regress"};
    for (int k = 0; k < 2; k++) {
        snprintf(dir, sizeof(dir), "%s/%s", root, kinds[k]);
        DIR *d = opendir(dir);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            int known = 0;
            for (const struct fuzz_target *t = fuzz_targets; t->name; t++)
                known |= strcmp(t->name, e->d_name) == 0;
            CHECK_MSG(known, "%s/%s: not a fuzz target", dir, e->d_name);
        }
        if (d)
            closedir(d);
    }
    for (const struct fuzz_target *t = fuzz_targets; t->name; t++) {
        snprintf(dir, sizeof(dir), "%s/regress", root);
        int n_reg = run_dir_(dir, t);
        snprintf(dir, sizeof(dir), "%s/corpus", root);
        int n_seed = run_dir_(dir, t);
        printf("%-8s %3d regression inputs, %3d seeds\n", t->name, n_reg, n_seed);
        CHECK_MSG(n_seed > 0, "%s/%s: no seed inputs", dir, t->name);
    }
    return check_report("test_fuzz_regress");
}
