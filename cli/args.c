/* cli/args.c -- "--name value" option helpers shared by the subcommands (see cli.h). */
#include "cli.h"

#include "../core/check.h"
#include "../core/log.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *cli_opt(int argc, char **argv, const char *name, const char *def) {
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], name))
            return argv[i + 1];
    return def;
}

int cli_opt_int(int argc, char **argv, const char *name, long long def, long long lo, long long hi,
                long long *out) {
    const char *s = cli_opt(argc, argv, name, NULL);
    *out = def;
    if (!s)
        return 0;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno == ERANGE || v < lo || v > hi) {
        log_error("%s: expected an integer in [%lld, %lld], got '%s'", name, lo, hi, s);
        return HW_EXIT_CONFIG;
    }
    *out = v;
    return 0;
}

int cli_opt_num(int argc, char **argv, const char *name, double def, double lo, int lo_open,
                double hi, int hi_open, double *out) {
    const char *s = cli_opt(argc, argv, name, NULL);
    *out = def;
    if (!s)
        return 0;
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno == ERANGE || !isfinite(v) || v < lo || v > hi ||
        (lo_open && v == lo) || (hi_open && v == hi)) {
        log_error("%s: expected a number in %c%g, %g%c, got '%s'", name, lo_open ? '(' : '[', lo,
                  hi, hi_open ? ')' : ']', s);
        return HW_EXIT_CONFIG;
    }
    *out = v;
    return 0;
}

int cli_flag(int argc, char **argv, const char *name) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], name))
            return 1;
    return 0;
}

int cli_positional(int argc, char **argv, const char *const *valued, char **out, int cap) {
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-' && argv[i][1] == '-') {
            for (const char *const *v = valued; v && *v; v++)
                if (!strcmp(*v, argv[i])) {
                    i++;
                    break;
                }
            continue;
        }
        if (n < cap)
            out[n++] = argv[i];
    }
    return n;
}
