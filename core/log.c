/* core/log.c -- rank-aware logging (see log.h). */
#define _POSIX_C_SOURCE 200809L
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static int g_rank, g_world = 1;
static FILE *g_info; /* NULL: stdout */

void log_info_to_stderr(void) {
    g_info = stderr;
}

void log_set_rank(int rank, int world) {
    g_rank = rank;
    g_world = world;
}

int log_rank(void) {
    return g_rank;
}

void log_info(const char *fmt, ...) {
    if (g_rank != 0)
        return;
    FILE *f = g_info ? g_info : stdout;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
    fflush(f);
}

void log_warn(const char *fmt, ...) {
    if (g_rank != 0)
        return;
    va_list ap;
    fputs("warning: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void log_error(const char *fmt, ...) {
    va_list ap;
    if (g_world > 1)
        fprintf(stderr, "[rank %d] ", g_rank);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
}

double log_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
