/* core/check.c -- fatal-error paths and checked allocation (see check.h). */
#include "check.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void (*exit_hook)(int code);

void hw_set_exit_hook(void (*hook)(int code)) {
    exit_hook = hook;
}

noreturn void hw_exit(int code) {
    fflush(stdout);
    fflush(stderr);
    if (exit_hook)
        exit_hook(code);
    exit(code);
}

noreturn void hw_die_at(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "%s:%d: fatal: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    hw_exit(HW_EXIT_FAIL);
}

void *hw_malloc_at(size_t n, const char *file, int line) {
    void *p = malloc(n ? n : 1);
    if (!p)
        hw_die_at(file, line, "out of memory allocating %zu bytes", n);
    return p;
}

void *hw_calloc_at(size_t n, size_t size, const char *file, int line) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        hw_die_at(file, line, "out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

void *hw_realloc_at(void *p, size_t n, const char *file, int line) {
    void *q = realloc(p, n ? n : 1);
    if (!q)
        hw_die_at(file, line, "out of memory reallocating %zu bytes", n);
    return q;
}

char *hw_strdup_at(const char *s, const char *file, int line) {
    size_t n = strlen(s) + 1;
    char *p = hw_malloc_at(n, file, line);
    memcpy(p, s, n);
    return p;
}

int hw_errf(char *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, HW_ERR_LEN, fmt, ap);
        va_end(ap);
    }
    return code;
}

void hw_appendf(char *buf, size_t n, const char *fmt, ...) {
    size_t len = strlen(buf);
    if (len + 1 >= n)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + len, n - len, fmt, ap);
    va_end(ap);
}
