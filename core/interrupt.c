/* core/interrupt.c -- the progress hook for long rank-local work (see interrupt.h). */
#define _POSIX_C_SOURCE 200809L
#include "interrupt.h"

#include <stdlib.h>
#include <time.h>

static int (*g_poll)(void *arg);
static void *g_arg;
static int g_stopped;
static double g_last;
static long g_slow_ms;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void hw_interrupt_set(int (*poll)(void *arg), void *arg) {
    g_poll = poll;
    g_arg = arg;
    g_stopped = 0;
    g_last = -1.0;
    const char *s = getenv("HW_FAULT_SLOW_LOAD_MS");
    g_slow_ms = s && *s ? atol(s) : 0;
}

int hw_interrupted(void) {
    if (!g_poll || g_stopped)
        return g_stopped;
    if (g_slow_ms > 0) {
        struct timespec ts = {g_slow_ms / 1000, (g_slow_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    const double t = now_s();
    if (g_last >= 0.0 && t - g_last < 0.010)
        return 0;
    g_last = t;
    return g_stopped = g_poll(g_arg) != 0;
}
