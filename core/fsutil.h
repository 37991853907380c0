/* core/fsutil.h -- small file-system helpers for run directories: mkdir -p, atomic writes,
 * whole-file reads, sibling paths. */
#ifndef HW_FSUTIL_H
#define HW_FSUTIL_H

#include <stddef.h>

int fs_mkdirs(const char *path, char *err);
/* Write to path.tmp, fsync, rename over path. */
int fs_write_atomic(const char *path, const char *data, size_t n, char *err);
/* Read a whole file; caller frees. NUL-terminated; *n gets the length. */
char *fs_read_all(const char *path, size_t *n, char *err);
/* dirname(path) + "/" + name into out. */
void fs_sibling(char *out, size_t cap, const char *path, const char *name);

#endif /* HW_FSUTIL_H */
