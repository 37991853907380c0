/* bench/attn_bench.c -- attention work saved by MoH head skipping and S2 block sparsity.
 *
 *   attn_bench moh [T] : forward+backward time of the attention kernel with every head (MHA)
 *                        against MoH selections with 75% and 50% of the heads active per
 *                        token (shared heads always on, routed heads chosen at random)
 *   attn_bench s2 [T]  : forward+backward time of dense causal attention against S2 patterns
 *                        (Phi-3-small: block 64, local 16, stride 8; and a sparser local 4)
 *   attn_bench kv [T]  : KV-cache floats kept while decoding T tokens with an S2 model
 *                        against a dense cache, and the decode time of both
 *   attn_bench dense [T] : dense causal attention (B 2, 8 heads of 64), best-of-5 forward and
 *                        forward + backward seconds as one JSON line (bench/compare.sh sets it
 *                        beside PyTorch's scaled_dot_product_attention, bench/torch_attn.py)
 * Times are the best of several repetitions on this machine's threads; quote ratios. */
#include "../config/config.h"
#include "../core/log.h"
#include "../core/rng.h"
#include "../model/gpt.h"
#include "../ops/attention.h"
#include "../ops/ops.h"
#include "../ops/s2.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fill(float *x, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++)
        x[i] = (float)rng_normal(seed, i) * 0.5f;
}

/* One attention problem: its shape (8 heads of 64, MHA) and random inputs and buffers. */
struct attn_io {
    struct attn_shape s;
    float *qkv, *out, *lse, *dout, *dqkv;
};

static struct attn_io attn_io_new(int B, int T) {
    const int H = 8, Hkv = 8, hd = 64, ld = (H + 2 * Hkv) * hd;
    const size_t nq = (size_t)B * T * ld, no = (size_t)B * T * H * hd;
    struct attn_io io = {.s = {.B = B, .T = T, .H = H, .Hkv = Hkv, .hd = hd, .ld_qkv = ld}};
    io.qkv = malloc(4 * nq), io.out = malloc(4 * no), io.lse = malloc(4 * (size_t)B * H * T);
    io.dout = malloc(4 * no), io.dqkv = malloc(4 * nq);
    fill(io.qkv, nq, 1);
    fill(io.dout, no, 2);
    return io;
}

static void attn_io_free(struct attn_io *io) {
    free(io->qkv), free(io->out), free(io->lse), free(io->dout), free(io->dqkv);
}

/* best-of-reps seconds of forward + backward */
static double time_attn(const struct attn_shape *s, float *qkv, float *out, float *lse, float *dout,
                        float *dqkv, int reps) {
    const struct ops *o = ops_for(BACKEND_CPU);
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = log_now();
        o->attention_forward(out, lse, qkv, s);
        o->attention_backward(dqkv, dout, out, lse, qkv, s);
        double dt = log_now() - t0;
        best = dt < best ? dt : best;
    }
    return best;
}

static int bench_moh(int T) {
    struct attn_io io = attn_io_new(2, T);
    const struct attn_shape s = io.s;
    const int B = s.B, H = s.H, hd = s.hd;
    float *qkv = io.qkv, *out = io.out, *lse = io.lse, *dout = io.dout, *dqkv = io.dqkv;
    double mha = time_attn(&s, qkv, out, lse, dout, dqkv, 3);
    printf("MoH head skipping: B=%d T=%d H=%d hd=%d, attention forward+backward\n", B, T, H, hd);
    printf("  %-34s %8.1f ms  1.00x time  (100%% of head-token pairs)\n", "MHA (every head)",
           mha * 1e3);
    /* shared heads hs, top-k of the routed ones: (hs + k) / H active */
    const int cfgs[2][2] = {{2, 4}, {2, 2}}; /* 75%, 50% */
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)B * H * T), *off = malloc(4 * (B * H + 1));
    for (int c = 0; c < 2; c++) {
        const int hs = cfgs[c][0], k = cfgs[c][1], E = H - hs;
        unsigned char *on = calloc((size_t)B * T * H, 1);
        for (int t = 0; t < B * T; t++) {
            for (int h = 0; h < hs; h++)
                on[(size_t)t * H + h] = 1;
            for (int j = 0; j < k;) { /* k distinct random routed heads */
                int h = hs + (int)(rng_uniform(7 + c, (uint64_t)t * 64 + j) * E);
                int tries = 0;
                while (on[(size_t)t * H + h] && tries++ < 64)
                    h = hs + (h - hs + 1) % E;
                on[(size_t)t * H + h] = 1;
                j++;
            }
        }
        int n = 0;
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++) {
                off[b * H + h] = n;
                for (int t = 0; t < T; t++)
                    if (on[((size_t)b * T + t) * H + h])
                        idx[n++] = t;
            }
        off[B * H] = n;
        struct attn_shape m = s;
        m.qsel = idx;
        m.qsel_off = off;
        double t = time_attn(&m, qkv, out, lse, dout, dqkv, 3);
        char name[64];
        snprintf(name, sizeof(name), "MoH %d shared + top-%d of %d routed", hs, k, E);
        printf("  %-34s %8.1f ms  %.2fx time  (%.0f%% of head-token pairs)\n", name, t * 1e3,
               t / mha, 100.0 * n / ((double)B * T * H));
        free(on);
    }
    free(idx), free(off);
    attn_io_free(&io);
    return 0;
}

static int bench_s2(int T) {
    struct attn_io io = attn_io_new(1, T);
    const struct attn_shape s = io.s;
    const int B = s.B, H = s.H, Hkv = s.Hkv, hd = s.hd;
    float *qkv = io.qkv, *out = io.out, *lse = io.lse, *dout = io.dout, *dqkv = io.dqkv;
    double dense = time_attn(&s, qkv, out, lse, dout, dqkv, 2);
    printf("S2 block sparsity: B=%d T=%d H=%d hd=%d, attention forward+backward\n", B, T, H, hd);
    printf("  %-40s %8.1f ms  1.00x  (blocks visited 100%%)\n", "dense causal", dense * 1e3);
    const int pats[2][3] = {{64, 16, 8}, {64, 4, 8}};
    for (int i = 0; i < 2; i++) {
        struct s2_pattern p;
        s2_init(&p, pats[i][0], pats[i][1], pats[i][2], 0, 0, H, Hkv);
        struct attn_shape m = s;
        m.s2 = &p;
        double t = time_attn(&m, qkv, out, lse, dout, dqkv, 2);
        /* fraction of causal (head, q-block, k-block) pairs that are active */
        const int nb = (T + p.block - 1) / p.block;
        double act = 0, all = 0;
        for (int g = 0; g < Hkv; g++)
            for (int qb = 0; qb < nb; qb++)
                for (int kb = 0; kb <= qb; kb++) {
                    act += s2_active(&p, g, qb, kb);
                    all += 1;
                }
        char name[80];
        snprintf(name, sizeof(name), "S2 block %d local %d stride %d", p.block, p.local, p.vert);
        printf("  %-40s %8.1f ms  %.2fx speed-up  (blocks visited %.0f%%)\n", name, t * 1e3,
               dense / t, 100 * act / all);
    }
    attn_io_free(&io);
    return 0;
}

static int bench_kv(int T) {
    printf("S2 KV cache while decoding %d tokens (d_model 256, 4 layers, 4 heads, hd 64)\n", T);
    const char *names[2] = {"dense attention", "S2 block 64 local 16 stride 8 (all layers)"};
    double dense_s = 0;
    for (int v = 0; v < 2; v++) {
        struct hw_config cfg;
        char y[512], err[512];
        snprintf(y, sizeof(y),
                 "model: {d_model: 256, n_layers: 4, n_heads: 4, max_seq: %d%s}\n"
                 "train: {seq_len: %d}\n",
                 T, v ? ", sparsity: {kind: s2, block: 64, local_blocks: 16, vert_stride: 8}" : "",
                 T);
        if (cfg_load_string(&cfg, y, "bench", 0, NULL, err)) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        struct gpt_config gc;
        gpt_config_from_cfg(&gc, &cfg.model, 256);
        struct gpt m;
        gpt_init(&m, &gc, ops_for(BACKEND_CPU), NULL);
        gpt_init_weights(&m, 1);
        struct gpt_kv kv;
        gpt_kv_init(&kv, &m, 1, T);
        double t0 = log_now();
        for (int t = 0; t < T; t++)
            gpt_decode_step(&m, &kv, (int32_t)(rng_uniform(3, t) * 256));
        double dt = log_now() - t0;
        if (!v)
            dense_s = dt;
        printf("  %-44s KV cache %7.1f MiB (dense %7.1f MiB, %.1f%%)  decode %.2f s (%.2fx)\n",
               names[v], kv.floats * 4.0 / 1048576, kv.floats_dense * 4.0 / 1048576,
               100.0 * kv.floats / kv.floats_dense, dt, dense_s / dt);
        gpt_kv_free(&kv);
        gpt_free(&m);
    }
    return 0;
}

static int bench_dense(int T, int threads) {
    struct attn_io io = attn_io_new(2, T);
    const struct ops *o = ops_for(BACKEND_CPU);
    double fwd = 1e30;
    for (int r = 0; r < 5; r++) {
        const double t0 = log_now();
        o->attention_forward(io.out, io.lse, io.qkv, &io.s);
        const double dt = log_now() - t0;
        fwd = dt < fwd ? dt : fwd;
    }
    const double both = time_attn(&io.s, io.qkv, io.out, io.lse, io.dout, io.dqkv, 5);
    printf("{\"impl\": \"headwise\", \"B\": %d, \"T\": %d, \"H\": %d, \"hd\": %d, "
           "\"threads\": %d, \"fwd_s\": %.6f, \"fwd_bwd_s\": %.6f}\n",
           io.s.B, T, io.s.H, io.s.hd, threads, fwd, both);
    attn_io_free(&io);
    return 0;
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "moh";
    int T = argc > 2 ? atoi(argv[2]) : 0;
    const int threads = ops_set_threads(0);
    if (!strcmp(what, "moh"))
        return bench_moh(T ? T : 1024);
    if (!strcmp(what, "s2"))
        return bench_s2(T ? T : 4096);
    if (!strcmp(what, "dense"))
        return bench_dense(T ? T : 4096, threads);
    if (!strcmp(what, "kv")) {
        /* decoding is one row at a time: one thread (OpenMP spinning only costs here) */
        ops_set_threads(1);
        return bench_kv(T ? T : 4096);
    }
    fprintf(stderr, "usage: attn_bench moh|s2|kv|dense [T]\n");
    return 2;
}
