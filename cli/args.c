/* cli/args.c -- "--name value" option helpers shared by the subcommands (see cli.h). */
#include "cli.h"

#include <string.h>

const char *cli_opt(int argc, char **argv, const char *name, const char *def) {
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], name))
            return argv[i + 1];
    return def;
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
