/* core/fsutil.c -- file-system helpers (see fsutil.h). */
#define _POSIX_C_SOURCE 200809L
#include "fsutil.h"

#include "../core/check.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
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

/* What a non-regular file is, for the messages. */
static const char *kind_(mode_t m) {
    if (S_ISFIFO(m))
        return "a FIFO";
    if (S_ISDIR(m))
        return "a directory";
    if (S_ISCHR(m))
        return "a character device";
    if (S_ISBLK(m))
        return "a block device";
    if (S_ISSOCK(m))
        return "a socket";
    return "of an unknown type";
}

/* ---------------------------------------------------------------------------------------- */
/* writers: never through a link */

int fs_temp_path(char *out, size_t cap, const char *path, char *err) {
    static atomic_uint counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    /* pid + a per-process counter make the name unique among our own writers; the clock makes
     * it hard to guess, but O_EXCL at creation is what makes it safe */
    unsigned long salt =
        ((unsigned long)ts.tv_nsec ^ ((unsigned long)ts.tv_sec << 20)) & 0xffffffUL;
    int w = snprintf(out, cap, "%s.tmp.%ld.%u.%06lx", path, (long)getpid(),
                     atomic_fetch_add(&counter, 1u), salt);
    if (w < 0 || (size_t)w >= cap)
        return hw_errf(err, HW_EIO, "%s: path too long", path);
    return 0;
}

/* A new file at a fresh temporary name beside path: O_CREAT | O_EXCL | O_NOFOLLOW, so nothing
 * that already exists there (a planted link included) is ever opened. */
static int create_temp_(const char *path, char *tmp, size_t cap, char *err) {
    for (int tries = 0; tries < 100; tries++) {
        if (fs_temp_path(tmp, cap, path, err))
            return HW_EIO;
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd >= 0)
            return fd;
        if (errno != EEXIST)
            return hw_errf(err, HW_EIO, "%s: cannot create a temporary file beside it (%s): %s",
                           path, tmp, strerror(errno));
    }
    return hw_errf(err, HW_EIO, "%s: cannot create a temporary file beside it: %s", path,
                   strerror(EEXIST));
}

int fs_write_atomic(const char *path, const char *data, size_t n, char *err) {
    char tmp[1100];
    int fd = create_temp_(path, tmp, sizeof(tmp), err);
    if (fd < 0)
        return fd;
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, data + off, n - off);
        if (w < 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            return hw_errf(err, HW_EIO, "%s: write failed: %s", tmp, strerror(e));
        }
        off += (size_t)w;
    }
    /* rename() replaces a link at path by the file itself, never the link's target */
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return hw_errf(err, HW_EIO, "%s: cannot replace: %s", path, strerror(e));
    }
    return 0;
}

/* fd opened with O_NOFOLLOW | O_NONBLOCK onto path for writing: a regular file with one name,
 * switched to blocking mode; otherwise closed and refused. */
static FILE *check_written_(int fd, const char *path, const char *mode, char *err) {
    if (fd < 0) {
        if (errno == ELOOP)
            hw_errf(err, HW_EIO, "%s: is a symbolic link; refusing to write through it", path);
        else if (errno == ENXIO) /* a FIFO without a reader */
            hw_errf(err, HW_EIO, "%s: not a regular file (a FIFO); refusing to write to it", path);
        else
            hw_errf(err, HW_EIO, "%s: cannot open for writing: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    const char *why = NULL;
    char buf[64];
    int fl;
    if (fstat(fd, &st) != 0) {
        why = strerror(errno);
    } else if (!S_ISREG(st.st_mode)) {
        snprintf(buf, sizeof(buf), "not a regular file (%s)", kind_(st.st_mode));
        why = buf;
    } else if (st.st_nlink > 1) {
        snprintf(buf, sizeof(buf), "has %lu hard links", (unsigned long)st.st_nlink);
        why = buf;
    } else if ((fl = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        why = strerror(errno);
    }
    FILE *f = why ? NULL : fdopen(fd, mode);
    if (!f) {
        hw_errf(err, HW_EIO, "%s: refusing to write: %s", path, why ? why : strerror(errno));
        close(fd);
    }
    return f;
}

FILE *fs_open_append(const char *path, char *err) {
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0644);
    return check_written_(fd, path, "a", err);
}

FILE *fs_create(const char *path, char *err) {
    if (unlink(path) != 0 && errno != ENOENT) {
        hw_errf(err, HW_EIO, "%s: cannot replace: %s", path, strerror(errno));
        return NULL;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0644);
    if (fd < 0 && errno == EEXIST) { /* something was planted between the unlink and the open */
        hw_errf(err, HW_EIO, "%s: appeared while being replaced; refusing to write", path);
        return NULL;
    }
    return check_written_(fd, path, "w", err);
}

/* ---------------------------------------------------------------------------------------- */
/* readers: regular files only */

int fs_open_read(const char *path, char *err) {
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return hw_errf(err, HW_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return hw_errf(err, HW_EIO, "%s: cannot open: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return hw_errf(err, HW_EIO, "%s: not a regular file (%s)", path, kind_(st.st_mode));
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        int e = errno;
        close(fd);
        return hw_errf(err, HW_EIO, "%s: cannot open: %s", path, strerror(e));
    }
    return fd;
}

FILE *fs_fopen_read(const char *path, char *err) {
    int fd = fs_open_read(path, err);
    if (fd < 0)
        return NULL;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        hw_errf(err, HW_EIO, "%s: cannot open: %s", path, strerror(errno));
        close(fd);
    }
    return f;
}

int fs_check_regular(const char *path, char *err) {
    int fd = fs_open_read(path, err);
    if (fd < 0)
        return fd;
    close(fd);
    return 0;
}

char *fs_read_all(const char *path, size_t *n, char *err) {
    FILE *f = fs_fopen_read(path, err);
    if (!f)
        return NULL;
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
