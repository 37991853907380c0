/* datasets/synth.c -- the synthetic task corpus (see synth.h). */
#include "synth.h"

#include "../core/check.h"
#include "../core/rng.h"

#include <stdio.h>
#include <string.h>

static int pick(uint64_t key, uint64_t *ctr, int n) {
    return (int)(rng_uniform(key, (*ctr)++) * n);
}

static int synth_line(char *out, size_t cap, uint64_t seed, uint64_t line) {
    uint64_t key = rng_hash2(seed, line), ctr = 0;
    char s[16];
    int len = 3 + pick(key, &ctr, 5), n = 0;
    for (int i = 0; i < len; i++)
        s[i] = (char)('a' + pick(key, &ctr, 26));
    s[len] = 0;
    switch (pick(key, &ctr, 4)) {
    case 0:
        n = snprintf(out, cap, "copy %s > %s\n", s, s);
        break;
    case 1: {
        char r[16];
        for (int i = 0; i < len; i++)
            r[i] = s[len - 1 - i];
        r[len] = 0;
        n = snprintf(out, cap, "reverse %s > %s\n", s, r);
        break;
    }
    case 2: {
        int a = pick(key, &ctr, 100), b = pick(key, &ctr, 100);
        n = snprintf(out, cap, "add %d+%d > %d\n", a, b, a + b);
        break;
    }
    default: {
        int nk = 3 + pick(key, &ctr, 3), vals[8];
        char keys[8];
        n = snprintf(out, cap, "recall");
        for (int i = 0; i < nk; i++) {
            char k;
            int dup;
            do {
                k = (char)('a' + pick(key, &ctr, 26));
                dup = 0;
                for (int j = 0; j < i; j++)
                    dup |= keys[j] == k;
            } while (dup);
            keys[i] = k;
            vals[i] = pick(key, &ctr, 10);
            n += snprintf(out + n, cap - (size_t)n, " %c=%d", k, vals[i]);
        }
        int q = pick(key, &ctr, nk);
        n += snprintf(out + n, cap - (size_t)n, " ? %c > %d\n", keys[q], vals[q]);
        break;
    }
    }
    return n;
}

const char *const synth_kind_names[SYNTH_KINDS] = {"copy", "reverse", "add", "recall"};

int synth_example(uint64_t seed, uint64_t index, char *prompt, size_t pcap, char *answer,
                  size_t acap) {
    char line[128];
    int n = synth_line(line, sizeof(line), seed, index);
    while (n > 0 && line[n - 1] == '\n')
        line[--n] = 0;
    const char *sep = strstr(line, " > ");
    HW_ASSERT(sep != NULL);
    size_t np = (size_t)(sep - line) + 2; /* the space belongs to the answer, as in training */
    snprintf(prompt, pcap, "%.*s", (int)np, line);
    snprintf(answer, acap, "%s", sep + 2);
    for (int k = 0; k < SYNTH_KINDS; k++) {
        size_t w = strlen(synth_kind_names[k]);
        if (!strncmp(line, synth_kind_names[k], w) && line[w] == ' ')
            return k;
    }
    HW_ASSERT(!"unknown synthetic task");
    return -1;
}

char *synth_corpus(uint64_t seed, size_t bytes, size_t *len) {
    size_t cap = bytes + 128, n = 0;
    char *text = HW_MALLOC(cap);
    char line[128];
    for (uint64_t i = 0; n < bytes; i++) {
        int k = synth_line(line, sizeof(line), seed, i);
        if (n + (size_t)k + 1 > cap)
            break;
        memcpy(text + n, line, (size_t)k);
        n += (size_t)k;
    }
    text[n] = 0;
    *len = n;
    return text;
}
