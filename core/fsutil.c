/* core/fsutil.c -- file-system helpers (see fsutil.h). */
#define _POSIX_C_SOURCE 200809L
#include "fsutil.h"

#include "../core/check.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int fs_mkdirs(const char *path, char *err) {
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return hw_errf(err, HW_EIO, "%s: cannot create directory: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return hw_errf(err, HW_EIO, "%s: cannot create directory: %s", buf, strerror(errno));
    return 0;
}

int fs_write_atomic(const char *path, const char *data, size_t n, char *err) {
    char tmp[1100];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return hw_errf(err, HW_EIO, "%s: cannot write: %s", tmp, strerror(errno));
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, data + off, n - off);
        if (w < 0) {
            close(fd);
            unlink(tmp);
            return hw_errf(err, HW_EIO, "%s: write failed: %s", tmp, strerror(errno));
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return hw_errf(err, HW_EIO, "%s: cannot replace: %s", path, strerror(errno));
    }
    return 0;
}

char *fs_read_all(const char *path, size_t *n, char *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        hw_errf(err, HW_EIO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = HW_MALLOC(cap);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (cap - len - 1 == 0) {
            cap *= 2;
            buf = HW_REALLOC(buf, cap);
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        hw_errf(err, HW_EIO, "%s: read error", path);
        return NULL;
    }
    buf[len] = 0;
    if (n)
        *n = len;
    return buf;
}

void fs_sibling(char *out, size_t cap, const char *path, const char *name) {
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(out, cap, "%s", name);
    else
        snprintf(out, cap, "%.*s/%s", (int)(slash - path), path, name);
}
