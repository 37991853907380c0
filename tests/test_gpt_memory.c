/* tests/test_gpt_memory.c -- Titans memory layers in the transformer (model/memory.h,
 * model/layer_*.c): the parameter table, the model gradient of MAL, MAG and memory-only layers
 * against central differences of the float forward along random directions (every tensor, memory
 * tensors included; their numeric derivatives must be clearly nonzero, so a missing memory backward
 * fails), KV decoding with test-time memorisation against the parallel forward (one and two
 * sequences, a trailing incomplete chunk), bitwise determinism, and the NaN report. MAC layers
 * (memory as context: segments, persistent tokens, read/attend/store) go through the same
 * gradient and decoding checks, with trailing partial segments, and so do MAG layers with
 * persistent tokens over dense and S2 sliding-window attention. */
#include "../core/rng.h"
#include "../model/gpt.h"
#include "../ops/ops.h"
#include "../ops/xent.h"
#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* persistent tokens of MAG layers; S2 sliding-window attention on every layer */
static int g_np, g_s2;

/* kinds: per layer memory kind; conv: memory conv width */
static void make_model(struct gpt *m, const unsigned char *kinds, int L, int conv, double clamp) {
    struct gpt_config gc = {.C = 16,
                            .L = L,
                            .H = 4,
                            .Hkv = 2,
                            .hd = 4,
                            .F = 24,
                            .V = 19,
                            .max_T = 32,
                            .mlp = GPT_MLP_SWIGLU,
                            .tied = 1,
                            .rope_theta = 10000.0f,
                            .eps = 1e-5f,
                            .init_std = 0.3f};
    for (int l = 0; l < L; l++) {
        gc.mem[l] = kinds[l];
        if (kinds[l] == LK_MAC) /* segments of 4 (a multiple of b), 2 persistent tokens */
            gc.mem_seg = 4, gc.mem_np = 2;
        gc.s2[l] = (unsigned char)(g_s2 && kinds[l] != LK_MAC);
    }
    if (g_np)
        gc.mem_np = g_np;
    /* block 4, window of 2 blocks, no far blocks: the persistent rows are all it sees beyond */
    gc.s2_block = 4, gc.s2_local = 2, gc.s2_vert = 1 << 20, gc.s2_offset = 1;
    titans_cfg_default(&gc.mem_cfg, gc.C, 2, 8);
    gc.mem_cfg.depth = 2;
    gc.mem_cfg.hidden = 8;
    gc.mem_cfg.c = 2;
    gc.mem_cfg.b = 4;
    gc.mem_cfg.silu = 1;
    gc.mem_cfg.l2norm = 1;
    gc.mem_cfg.gate = 1;
    gc.mem_cfg.conv = conv;
    gc.mem_cfg.max_lr = 0.8;
    gc.mem_cfg.kappa = 1.0 / 8;
    gc.mem_cfg.max_grad_norm = clamp;
    if (gc.mem_seg) /* MAC: per-token stores, so the store path matters within a short test */
        gc.mem_cfg.c = 1, gc.mem_cfg.b = 2;
    CHECK(titans_cfg_error(&gc.mem_cfg) == NULL);
    gpt_init(m, &gc, ops_for(BACKEND_CPU), NULL);
    gpt_init_weights(m, 7);
    /* non-trivial norm gains, gate weights and conv taps so every path is exercised */
    for (int i = 0; i < m->n_params; i++) {
        const struct param *p = &m->params[i];
        float *x = m->param_mem + p->offset;
        if (p->init_std == 0.0f)
            for (size_t j = 0; j < p->numel; j++)
                x[j] = 1.0f + 0.3f * (float)rng_normal(99, j + i);
        if (strstr(p->name, "mem.w_") || strstr(p->name, "mem.conv") || strstr(p->name, "mem.b_"))
            for (size_t j = 0; j < p->numel; j++)
                x[j] += 0.3f * (float)rng_normal(98, j + i);
    }
}

static void test_table(void) {
    const unsigned char k[3] = {LK_MAL, LK_MAG, 0};
    struct gpt m;
    make_model(&m, k, 3, 3, 0.0);
    const struct param *n0 = gpt_find_param(&m, "blocks.0.mem_norm.weight");
    CHECK(n0 && n0->ndim == 1 && n0->gshape[0] == 16 && n0->decay == 0);
    CHECK(gpt_find_param(&m, "blocks.1.mem_norm.weight") == NULL);
    CHECK(gpt_find_param(&m, "blocks.2.mem.wq") == NULL);
    const struct param *w0 = gpt_find_param(&m, "blocks.1.mem.w0");
    CHECK(w0 && w0->gshape[0] == 2 && w0->gshape[1] == 8 * 8 + 8 * 8);
    const struct param *wq = gpt_find_param(&m, "blocks.1.mem.wq");
    const struct param *ck = gpt_find_param(&m, "blocks.0.mem.conv_k");
    CHECK(wq && wq->gshape[0] == 16 && wq->gshape[1] == 16 && wq->decay == 1);
    CHECK(ck && ck->gshape[0] == 3 && ck->decay == 0);
    /* the module's tensors are one flat titans_layout array */
    struct titans_layout lo;
    titans_layout(&m.c.mem_cfg, &lo);
    CHECK(w0->offset - wq->offset == lo.w0);
    size_t total = 0;
    for (int i = 0; i < m.n_params; i++)
        total += m.params[i].numel;
    CHECK(total == m.num_params);
    char sig[512];
    gpt_config_signature(&m.c, sig, sizeof(sig));
    CHECK(strstr(sig, " mem=120/H2/D8/L2/h8/c2/b4/k3") != NULL);
    gpt_free(&m);
    /* a memory-only layer has no attention tensors; MAC and MAG layers hold persistent tokens */
    const unsigned char k2[3] = {LK_MEMORY, LK_MAC, LK_MAG};
    make_model(&m, k2, 3, 0, 0.0);
    int ld = 0;
    CHECK(gpt_find_param(&m, "blocks.0.attn.wq") == NULL && gpt_attn_qkv(&m, 0, &ld) == NULL);
    CHECK(gpt_find_param(&m, "blocks.0.attn.wo") == NULL && gpt_attn_out(&m, 0) == NULL);
    CHECK(gpt_find_param(&m, "blocks.1.attn.wq") != NULL);
    CHECK(gpt_find_param(&m, "blocks.0.mem.persistent") == NULL);
    const struct param *p1 = gpt_find_param(&m, "blocks.1.mem.persistent");
    const struct param *p2 = gpt_find_param(&m, "blocks.2.mem.persistent");
    CHECK(p1 && p2 && p1->gshape[0] == 2 && p1->gshape[1] == 16 && p1->decay == 0);
    gpt_config_signature(&m.c, sig, sizeof(sig));
    CHECK_MSG(strstr(sig, " mem=342/") && strstr(sig, "/seg4/np2"), "%s", sig);
    gpt_free(&m);
}

/* Central differences of the float model along a random direction per tensor. */
static void test_gradient(const unsigned char *kinds, int L, int conv, double clamp) {
    const int B = 2, T = 11, V = 19;
    struct gpt m;
    make_model(&m, kinds, L, conv, clamp);
    int32_t tok[22], tgt[22];
    for (int i = 0; i < B * T; i++) {
        tok[i] = (int32_t)(rng_uniform(5, i) * V);
        tgt[i] = i == 4 ? XENT_IGNORE : (int32_t)(rng_uniform(6, i) * V);
    }
    const float sc = 1.0f / (B * T);
    gpt_zero_grad(&m);
    double loss = gpt_forward(&m, tok, tgt, B, T, sc, 1);
    gpt_backward(&m);
    float *g = malloc(sizeof(float) * m.num_params);
    memcpy(g, m.grad_mem, sizeof(float) * m.num_params);
    double worst = 0;
    int nmem = 0, nmem_live = 0;
    for (int p = 0; p < m.n_params; p++) {
        const struct param *gp = &m.params[p];
        float *x = m.param_mem + gp->offset;
        float *x0 = malloc(sizeof(float) * gp->numel), *dir = malloc(sizeof(float) * gp->numel);
        memcpy(x0, x, sizeof(float) * gp->numel);
        double an = 0, nrm = 0;
        for (size_t j = 0; j < gp->numel; j++) {
            dir[j] = (float)rng_normal(1234 + p, j);
            nrm += (double)dir[j] * dir[j];
        }
        nrm = sqrt(nrm);
        for (size_t j = 0; j < gp->numel; j++) {
            dir[j] = (float)(dir[j] / nrm);
            an += (double)dir[j] * g[gp->offset + j];
        }
        /* Richardson: (4 D(h/2) - D(h)) / 3 is O(h^4), so h can be large against float noise */
        const double h = 2e-2;
        double f[4];
        for (int s = 0; s < 4; s++) {
            const double e = (s & 1 ? -h : h) / (s < 2 ? 1 : 2);
            for (size_t j = 0; j < gp->numel; j++)
                x[j] = x0[j] + (float)(e * dir[j]);
            f[s] = gpt_forward(&m, tok, tgt, B, T, sc, 0) * sc;
        }
        memcpy(x, x0, sizeof(float) * gp->numel);
        const double num = (4 * (f[2] - f[3]) / h - (f[0] - f[1]) / (2 * h)) / 3;
        const double err = fabs(num - an) / (fabs(num) > 1e-3 ? fabs(num) : 1e-3);
        worst = err > worst ? err : worst;
        if (err > 3e-2)
            fprintf(stderr, "  %s: analytic %.6g, numeric %.6g\n", gp->name, an, num);
        if (getenv("HW_TEST_VERBOSE"))
            fprintf(stderr, "  %s: %.3g\n", gp->name, num);
        if (strstr(gp->name, ".mem")) {
            nmem++;
            nmem_live += fabs(num) > 5e-5;
        }
        free(x0);
        free(dir);
    }
    CHECK_MSG(worst < 3e-2, "memory model gradient: worst rel err %g", worst);
    /* the memory tensors matter to the loss: a missing backward would show */
    CHECK_MSG(nmem > 0 && 2 * nmem_live >= nmem, "%d of %d memory tensors move the loss", nmem_live,
              nmem);
    /* determinism: the same step twice gives bit-identical gradients */
    gpt_zero_grad(&m);
    double loss2 = gpt_forward(&m, tok, tgt, B, T, sc, 1);
    gpt_backward(&m);
    CHECK(loss2 == loss);
    CHECK(memcmp(g, m.grad_mem, sizeof(float) * m.num_params) == 0);
    free(g);
    gpt_free(&m);
}

/* Decoding token by token (the memory memorises at test time) equals the parallel forward. */
static void test_decode(const unsigned char *kinds, int L, int conv) {
    const int T = 13, V = 19, B = 2;
    struct gpt m;
    make_model(&m, kinds, L, conv, 0.0);
    int32_t tok[26];
    for (int i = 0; i < B * T; i++)
        tok[i] = (int32_t)(rng_uniform(8, i) * V);
    gpt_forward(&m, tok, NULL, B, T, 0.0f, 0);
    float *full = malloc(sizeof(float) * B * T * V);
    memcpy(full, m.logits, sizeof(float) * B * T * V);
    struct gpt_kv kv;
    gpt_kv_init(&kv, &m, B, T);
    double worst = 0;
    /* sequence 1 starts two steps later: the slots advance independently */
    for (int s = 0; s < T + 2; s++) {
        int32_t tk[2] = {s < T ? tok[s] : 0, s >= 2 ? tok[T + s - 2] : 0};
        int act[2] = {s < T, s >= 2};
        const float *lg = gpt_decode_batch(&m, &kv, tk, act);
        for (int b = 0; b < B; b++) {
            const int t = b ? s - 2 : s;
            if (!act[b])
                continue;
            for (int v = 0; v < V; v++) {
                double d = fabs((double)lg[b * V + v] - full[((size_t)b * T + t) * V + v]);
                worst = d > worst ? d : worst;
            }
        }
    }
    CHECK_MSG(worst < 2e-4, "decode vs forward: max diff %g", worst);
    /* a reset slot starts a fresh memory: replaying sequence 0 gives the same logits */
    gpt_kv_reset(&kv, 0);
    worst = 0;
    for (int t = 0; t < T; t++) {
        int32_t tk[2] = {tok[t], 0};
        int act[2] = {1, 0};
        const float *lg = gpt_decode_batch(&m, &kv, tk, act);
        for (int v = 0; v < V; v++) {
            double d = fabs((double)lg[v] - full[(size_t)t * V + v]);
            worst = d > worst ? d : worst;
        }
    }
    CHECK_MSG(worst < 2e-4, "decode after reset: max diff %g", worst);
    gpt_kv_free(&kv);
    free(full);
    gpt_free(&m);
}

/* A NaN in the memory is reported once on stderr, naming the layer (the trainer then stops on
 * the non-finite loss with the step). */
static void test_nan_report(unsigned char kind, const char *want) {
    const unsigned char k[2] = {0, kind};
    struct gpt m;
    make_model(&m, k, 2, 0, 0.0);
    const struct param *w0 = gpt_find_param(&m, "blocks.1.mem.w0");
    m.param_mem[w0->offset + 3] = NAN;
    int32_t tok[8] = {1, 2, 3, 4, 5, 6, 7, 8}, tgt[8] = {2, 3, 4, 5, 6, 7, 8, 9};
    fflush(stderr);
    const int saved = dup(2);
    FILE *f = tmpfile();
    CHECK(saved >= 0 && f != NULL);
    dup2(fileno(f), 2);
    const double loss = gpt_forward(&m, tok, tgt, 1, 8, 1.0f, 0);
    gpt_forward(&m, tok, tgt, 1, 8, 1.0f, 0); /* reported once */
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char buf[1024] = {0};
    rewind(f);
    const size_t got = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    CHECK(!isfinite(loss));
    CHECK_MSG(got > 0 && strstr(buf, want) != NULL, "stderr: %s", buf);
    const char *first = strstr(buf, "memory of layer");
    CHECK(first && strstr(first + 1, "memory of layer") == NULL);
    gpt_free(&m);
}

int main(void) {
    ops_set_threads(1);
    test_table();
    const unsigned char all[3] = {LK_MAL, LK_MAG, LK_MEMORY};
    const unsigned char mag[2] = {0, LK_MAG};
    test_gradient(all, 3, 0, 0.0);
    test_gradient(all, 3, 2, 0.5);
    test_gradient(mag, 2, 0, 0.0);
    const unsigned char mac[3] = {LK_MAC, LK_MAG, LK_MAC};
    const unsigned char mac1[2] = {LK_MAC, 0};
    test_gradient(mac, 3, 2, 0.5);
    test_gradient(mac1, 2, 0, 0.0);
    test_decode(all, 3, 0);
    test_decode(all, 3, 3);
    test_decode(mac, 3, 3);
    test_decode(mac1, 2, 0);
    /* persistent tokens on MAG layers, dense and over S2 sliding windows (decoding keeps them
     * pinned in front of the cache) */
    g_np = 3;
    test_gradient(mag, 2, 0, 0.0);
    test_decode(all, 3, 2);
    g_s2 = 1;
    test_gradient(mag, 2, 2, 0.0);
    test_decode(all, 3, 0);
    test_decode(mac, 3, 3);
    test_nan_report(LK_MAG, "memory of layer 1: NaN/Inf");
    test_nan_report(LK_MAC, "memory of layer 1 (mac): NaN/Inf");
    return check_report("test_gpt_memory");
}
