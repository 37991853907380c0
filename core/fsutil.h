/* core/fsutil.h -- small file-system helpers for run directories: mkdir -p, safe creation and
 * atomic replacement of files, whole-file reads of regular files only, sibling paths.
 *
 * Readers: a data path must name a regular file. A FIFO would block open() (and the run) until
 * some writer appears, and a directory or device is never data, so every reader opens with
 * O_NONBLOCK, checks fstat and refuses anything else with one line "PATH: not a regular file
 * (a FIFO)". Symbolic links are followed when reading (a data set may well be a link).
 *
 * Writers: run directories may be shared, so a file headwise writes there is never opened
 * through a symbolic link or another name: new files are created with O_CREAT | O_EXCL |
 * O_NOFOLLOW (under a unique temporary name where the file is replaced as a whole), and
 * rename() replaces a link planted at the final name by the new file, never the link's target. */
#ifndef HW_FSUTIL_H
#define HW_FSUTIL_H

#include <stddef.h>
#include <stdio.h>

int fs_mkdirs(const char *path, char *err);
/* Writes data to a new temporary file beside path (unique name, O_CREAT | O_EXCL | O_NOFOLLOW,
 * mode 0644 less the umask), fsyncs it and renames it over path. A symbolic link at path is
 * replaced by the file itself; its target is never opened. 0 or HW_EIO with err. */
int fs_write_atomic(const char *path, const char *data, size_t n, char *err);
/* A fresh unique name "<path>.tmp.<suffix>" that does not exist yet, for writers that create a
 * file by name themselves (HDF5: H5Fcreate(tmp, H5F_ACC_EXCL, ...), which does not follow a
 * link either) and then rename it over path. 0 or HW_EIO (path too long). */
int fs_temp_path(char *out, size_t cap, const char *path, char *err);
/* Opens path for appending (created 0644 less the umask if missing) without following a link:
 * a symbolic link, a non-regular file or a file with other hard links at path is refused with
 * one line. NULL with err on failure. */
FILE *fs_open_append(const char *path, char *err);
/* Creates path afresh for writing: whatever is at path (a file, or a link, which is removed
 * and never followed) is unlinked first and a new file created with O_CREAT | O_EXCL |
 * O_NOFOLLOW. For files written as a stream (sample logs). NULL with err on failure. */
FILE *fs_create(const char *path, char *err);

/* Opens a regular file for reading; refuses a FIFO, a directory or a device without blocking.
 * Returns the descriptor (blocking mode), or HW_EIO with err "PATH: cannot open: ..." or
 * "PATH: not a regular file (a FIFO)". */
int fs_open_read(const char *path, char *err);
/* fs_open_read as a FILE * ("rb"); NULL with err. */
FILE *fs_fopen_read(const char *path, char *err);
/* 0 when path names a readable regular file, else HW_EIO with err as fs_open_read; for readers
 * that open by name themselves (HDF5). */
int fs_check_regular(const char *path, char *err);
/* Reads a whole regular file (see fs_open_read); caller frees. NUL-terminated; *n gets the
 * length. */
char *fs_read_all(const char *path, size_t *n, char *err);
/* dirname(path) + "/" + name into out. */
void fs_sibling(char *out, size_t cap, const char *path, const char *name);

#endif /* HW_FSUTIL_H */
