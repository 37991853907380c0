/* train/signals.c -- async-signal-safe stop flag and the stop file (see signals.h). */
#define _POSIX_C_SOURCE 200809L
#include "signals.h"

#include "../dist/dist.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t g_stop;
static double g_next_look; /* monotonic seconds of the next look for HW_STOP_FILE */

/* Seconds between two looks for HW_STOP_FILE: 0.1 on rank 0 of the job, 2 on the others. */
static double look_every(void) {
    static double every;
    if (every == 0.0) {
        every = 0.1;
        const char *vars[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID"};
        for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
            const char *v = getenv(vars[i]);
            if (v && *v) {
                if (strcmp(v, "0") != 0)
                    every = 2.0;
                break;
            }
        }
    }
    return every;
}

static void on_signal(int sig) {
    g_stop = sig;
}

void signals_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    /* a stop request must not fail a read or write in flight (a checkpoint being written when a
     * second signal arrives): restart interrupted system calls */
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    const int sigs[] = {SIGTERM, SIGUSR1, SIGINT};
    sigset_t unblock;
    sigemptyset(&unblock);
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
        sigaction(sigs[i], &sa, NULL);
        sigaddset(&unblock, sigs[i]);
    }
    /* a launcher that left them blocked would hold a preemption back until the job is killed
     * (called first thing in main, so the threads started later inherit the mask) */
    pthread_sigmask(SIG_UNBLOCK, &unblock, NULL);
}

int signals_pending(void) {
    if (!g_stop) {
        const char *f = getenv("HW_STOP_FILE");
        if (f && *f) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            const double now = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
            if (now >= g_next_look) {
                g_next_look = now + look_every();
                if (access(f, F_OK) == 0)
                    g_stop = SIGUSR1;
            }
        }
    }
    return (int)g_stop;
}

int signals_notice_poll(void *notice) {
    return dist_notice_poll(notice, signals_pending() != 0);
}
