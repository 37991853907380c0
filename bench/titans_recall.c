/* bench/titans_recall.c -- the Titans experiment of issue 5 (docs/titans.md): synthetic
 * associative recall whose sequences are >= 8x the attention window. A sequence is P key/value
 * pairs, filler tokens, then Q <= P queries (distinct keys of the pairs; the target is the
 * key's value). Only
 * the query targets are trained and scored. Every model uses S2 sliding-window attention
 * (block-local only) on every layer; the variants add Titans memory layers (MAG, MAL) or none;
 * `mac` makes both layers memory-as-context layers whose attention is the segment (16 tokens,
 * the window's size) plus 4 persistent tokens and the 16 retrieved memory rows.
 * Prints recall accuracy at several lengths (chance = 1/values) and the training tokens/s.
 * Usage: titans_recall VARIANT STEPS [seed]   VARIANT: none | mag | mal | mac | mem */
#include "../core/rng.h"
#include "../model/gpt.h"
#include "../ops/ops.h"
#include "../ops/xent.h"
#include "../train/optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { NK = 32, NV = 16, NF = 16, PAIRS = 6, QUERIES = 6 };
/* vocabulary: 0..NK-1 keys, NK..NK+NV-1 values, then NF filler tokens */
#define VOCAB (NK + NV + NF)

static double now_(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One sequence of length T from counter (seed, n). */
static void gen(uint64_t seed, uint64_t n, int T, int32_t *tok, int32_t *tgt) {
    uint64_t key = rng_hash2(seed, n), c = 0;
    int keys[PAIRS], vals[PAIRS];
    for (int i = 0; i < PAIRS; i++) {
        int k, dup;
        do {
            k = (int)(rng_uniform(key, c++) * NK);
            dup = 0;
            for (int j = 0; j < i; j++)
                dup |= keys[j] == k;
        } while (dup);
        keys[i] = k;
        vals[i] = NK + (int)(rng_uniform(key, c++) * NV);
    }
    for (int t = 0; t < T; t++) {
        tok[t] = NK + NV + (int)(rng_uniform(key, c++) * NF);
        tgt[t] = XENT_IGNORE;
    }
    for (int i = 0; i < PAIRS; i++) {
        tok[2 * i] = keys[i];
        tok[2 * i + 1] = vals[i];
    }
    /* distinct keys in random order, so no query can be answered from an earlier query */
    int perm[PAIRS];
    for (int i = 0; i < PAIRS; i++)
        perm[i] = i;
    for (int i = PAIRS - 1; i > 0; i--) {
        const int j = (int)(rng_uniform(key, c++) * (i + 1)), x = perm[i];
        perm[i] = perm[j];
        perm[j] = x;
    }
    for (int q = 0; q < QUERIES; q++) {
        const int i = perm[q], t = T - 2 * QUERIES + 2 * q;
        tok[t] = keys[i];
        tok[t + 1] = vals[i];
        tgt[t] = vals[i];
    }
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: titans_recall none|mag|magp|mal|mac|mem STEPS [seed]\n");
        return 2;
    }
    const char *var = argv[1];
    const int steps = atoi(argv[2]);
    const uint64_t seed = argc > 3 ? (uint64_t)atoll(argv[3]) : 1;
    const int B = 16, T = 128, block = 8, local = 2; /* window <= 16 tokens: T = 8x window */
    ops_set_threads(1);
    struct gpt_config gc = {.C = 64,
                            .L = 2,
                            .H = 4,
                            .Hkv = 4,
                            .hd = 16,
                            .F = 128,
                            .V = VOCAB,
                            .max_T = 1024,
                            .mlp = GPT_MLP_SWIGLU,
                            .tied = 1,
                            .rope_theta = 10000.0f,
                            .eps = 1e-5f,
                            .init_std = 0.02f};
    for (int l = 0; l < gc.L; l++)
        gc.s2[l] = 1;
    /* offset 1: no far block is ever visible, not even block 0 (with offset 0 it would be an
     * attention sink that holds the first pairs) */
    gc.s2_block = block, gc.s2_local = local, gc.s2_vert = 1 << 20, gc.s2_offset = 1;
    if (!strcmp(var, "mag") || !strcmp(var, "magp")) {
        gc.mem[0] = gc.mem[1] = LK_MAG;
        gc.mem_np = var[3] == 'p' ? 4 : 0; /* magp: + 4 persistent tokens every window sees */
    } else if (!strcmp(var, "mal"))
        gc.mem[0] = gc.mem[1] = LK_MAL;
    else if (!strcmp(var, "mac")) {
        gc.mem[0] = gc.mem[1] = LK_MAC;
        gc.mem_seg = 2 * block; /* the segment is as long as the sliding window */
        gc.mem_np = 4;
        gc.s2[0] = gc.s2[1] = 0; /* a MAC layer's attention is its segment attention */
    } else if (!strcmp(var, "mem"))
        gc.mem[1] = LK_MEMORY;
    else if (strcmp(var, "none")) {
        fprintf(stderr, "unknown variant %s\n", var);
        return 2;
    }
    titans_cfg_default(&gc.mem_cfg, gc.C, 2, 32);
    /* a linear matrix memory (depth 1): the associative store of the delta-rule family */
    gc.mem_cfg.depth = getenv("RECALL_DEPTH") ? atoi(getenv("RECALL_DEPTH")) : 1;
    gc.mem_cfg.hidden = 64;
    gc.mem_cfg.c = 2;
    gc.mem_cfg.b = 16;
    gc.mem_cfg.conv = 4;
    gc.mem_cfg.max_lr = 1.0;
    gc.mem_cfg.kappa = 1.0 / 32;
    gc.mem_cfg.max_grad_norm = 1.0;
    struct gpt m;
    gpt_init(&m, &gc, ops_for(BACKEND_CPU), NULL);
    gpt_init_weights(&m, seed);
    struct cfg_train tc = {0};
    tc.steps = steps, tc.lr = 3e-3, tc.min_lr = 3e-4, tc.warmup = steps / 10;
    tc.beta1 = 0.9, tc.beta2 = 0.95, tc.eps = 1e-8, tc.weight_decay = 0.01;
    struct optim_seg seg = {.off = 0, .len = m.num_params};
    struct optim opt;
    optim_init(&opt, &seg, 1);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)B * 1024);
    int32_t *tgt = malloc(sizeof(int32_t) * (size_t)B * 1024);
    double t0 = now_(), last = 0;
    for (int s = 0; s < steps; s++) {
        for (int b = 0; b < B; b++)
            gen(seed, (uint64_t)s * B + b, T, tok + b * T, tgt + b * T);
        gpt_zero_grad(&m);
        const float sc = 1.0f / (B * QUERIES);
        last = gpt_forward(&m, tok, tgt, B, T, sc, 1) * sc;
        gpt_backward(&m);
        const double gn = sqrt(optim_grad_sumsq(&opt, &m, 0));
        const float clip = gn > 1.0 ? (float)(1.0 / gn) : 1.0f;
        optim_step(&opt, &m, &tc, (float)optim_lr(&tc, s), s + 1, clip);
        if (!isfinite(last)) {
            fprintf(stderr, "%s: loss not finite at step %d\n", var, s + 1);
            return 1;
        }
    }
    const double tps = (double)steps * B * T / (now_() - t0);
    printf("%-5s train loss %.3f | %8.0f train tok/s |", var, last, tps);
    /* recall at several lengths on held-out sequences (a different seed stream) */
    const int lens[] = {64, 128, 256, 512};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        const int L = lens[li], EB = 8, reps = 8;
        int hit = 0, n = 0;
        for (int r = 0; r < reps; r++) {
            for (int b = 0; b < EB; b++)
                gen(seed + 1000003, (uint64_t)r * EB + b, L, tok + b * L, tgt + b * L);
            gpt_forward(&m, tok, NULL, EB, L, 0.0f, 0);
            for (int i = 0; i < EB * L; i++) {
                if (tgt[i] == XENT_IGNORE)
                    continue;
                const float *lg = m.logits + (size_t)i * VOCAB;
                int arg = NK;
                for (int v = NK; v < NK + NV; v++)
                    arg = lg[v] > lg[arg] ? v : arg;
                hit += arg == tgt[i];
                n++;
            }
        }
        printf(" T=%d %.3f", L, (double)hit / n);
    }
    printf(" | chance %.3f\n", 1.0 / NV);
    optim_free(&opt);
    free(tok);
    free(tgt);
    gpt_free(&m);
    return 0;
}
