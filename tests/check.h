/* tests/check.h -- the minimal test harness: CHECK/CHECK_CLOSE count failures with file:line,
 * check_report prints "<name>: N checks, N failed" and returns the exit status. */
#ifndef HW_TESTS_CHECK_H
#define HW_TESTS_CHECK_H

#include <math.h>
#include <stdio.h>

static int check_total_, check_failed_;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        check_total_++;                                                                            \
        if (!(cond)) {                                                                             \
            check_failed_++;                                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                       \
    do {                                                                                           \
        check_total_++;                                                                            \
        if (!(cond)) {                                                                             \
            check_failed_++;                                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

/* |a-b| <= tol * max(1, |b|) */
#define CHECK_CLOSE(a, b, tol)                                                                     \
    do {                                                                                           \
        double a_ = (double)(a), b_ = (double)(b);                                                 \
        double s_ = fabs(b_) > 1.0 ? fabs(b_) : 1.0;                                               \
        check_total_++;                                                                            \
        if (!(fabs(a_ - b_) <= (tol)*s_)) {                                                        \
            check_failed_++;                                                                       \
            fprintf(stderr, "%s:%d: CHECK_CLOSE failed: %s=%.9g vs %s=%.9g (tol %g)\n", __FILE__,  \
                    __LINE__, #a, a_, #b, b_, (double)(tol));                                      \
        }                                                                                          \
    } while (0)

static inline int check_report(const char *name) {
    printf("%s: %d checks, %d failed\n", name, check_total_, check_failed_);
    return check_failed_ ? 1 : 0;
}

#endif /* HW_TESTS_CHECK_H */
