/* model/param.c -- parameter lookup (see param.h). */
#include "param.h"

#include <string.h>

const struct param *param_find(const struct param_set *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->p[i].name, name) == 0)
            return &s->p[i];
    return NULL;
}
