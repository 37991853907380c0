/* core/check.h -- always-on assertions, fatal-error exits and checked allocation.
 * HW_ASSERT is for broken invariants (bugs); HW_DIE for environment failures.
 * Under MPI, dist_init installs a die hook so a fatal error on one rank calls MPI_Abort
 * and the whole job goes down instead of hanging in the next collective. */
#ifndef HW_CHECK_H
#define HW_CHECK_H

#include <stddef.h>
#include <stdnoreturn.h>

#define HW_ERR_LEN 512

/* Result codes of library-like modules (cfg_, bpe_, ds_, ckpt_): 0 ok, negative on failure,
 * with one line of text written into a caller buffer char err[HW_ERR_LEN]. */
enum hw_err {
    HW_OK = 0,
    HW_EIO = -1,       /* file missing, unreadable or unwritable */
    HW_EFORMAT = -2,   /* file exists but its content is malformed or corrupt */
    HW_ECONFIG = -3,   /* configuration invalid */
    HW_EMISMATCH = -4, /* e.g. checkpoint does not match the config */
    HW_ENOMEM = -5,
    HW_ENUMERIC = -6, /* NaN / Inf */
    HW_ESTOP = -7,    /* a stop request (signal, HW_STOP_FILE) ended the work early */
};

/* Exit codes of the headwise binary. */
enum hw_exit {
    HW_EXIT_OK = 0,
    HW_EXIT_FAIL = 1,    /* runtime failure: bad data, checkpoint, I/O */
    HW_EXIT_CONFIG = 2,  /* usage or config error */
    HW_EXIT_NUMERIC = 3, /* loss became NaN/Inf */
    HW_EXIT_REQUEUE = 4, /* stopped by a signal after saving a checkpoint: requeue me */
    HW_EXIT_HUNG = 5     /* the watchdog ended the job: a collective or checkpoint write did
                          * not finish within dist.timeout_s (a stopped, lost or stuck rank) */
};

/* Append printf-style text to the NUL-terminated buf of n bytes (truncating, never past n). */
void hw_appendf(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

noreturn void hw_die_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Exit the whole job with code: calls the die hook (MPI_Abort under MPI) or exit(). */
noreturn void hw_exit(int code);
/* Installed by dist_init; must not return. */
void hw_set_exit_hook(void (*hook)(int code));

void *hw_malloc_at(size_t n, const char *file, int line);
void *hw_calloc_at(size_t n, size_t size, const char *file, int line);
void *hw_realloc_at(void *p, size_t n, const char *file, int line);
char *hw_strdup_at(const char *s, const char *file, int line);

#define HW_DIE(...)      hw_die_at(__FILE__, __LINE__, __VA_ARGS__)
#define HW_MALLOC(n)     hw_malloc_at((n), __FILE__, __LINE__)
#define HW_CALLOC(n, sz) hw_calloc_at((n), (sz), __FILE__, __LINE__)
#define HW_REALLOC(p, n) hw_realloc_at((p), (n), __FILE__, __LINE__)
#define HW_STRDUP(s)     hw_strdup_at((s), __FILE__, __LINE__)
#define HW_ASSERT(x)                                                                               \
    do {                                                                                           \
        if (!(x))                                                                                  \
            hw_die_at(__FILE__, __LINE__, "assertion failed: %s", #x);                             \
    } while (0)

/* snprintf into an error buffer; returns code so callers can `return hw_errf(...)`. */
int hw_errf(char *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif /* HW_CHECK_H */
