/* tests/test_rec_cuda.c -- the DARE / TWIN rec model on the CUDA backend against the CPU backend
 * (the oracle): the same weights and batch give the same losses, click probabilities, top-K
 * slots, ESU summaries, BatchNorm running statistics and every parameter gradient (dense and
 * table rows), and 10 AdamW steps the same losses, for dare, twin and twin_proj with the
 * auxiliary loss, in train and eval mode, with long histories (many ids shared across the
 * batch, masked slots, an empty history and ties), and with wide dims, 160 slots and no aux.
 * Tolerance: relative 1e-9 (the model runs in double; only the order of sums differs). Without a
 * GPU (or a CUDA build) it says it was skipped and exits 77. */
#include "check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef HW_CUDA
#include "../core/check.h"
#include "../core/rng.h"
#include "../model/rec.h"
#include "../ops/cuda_ctx.h"
#include "../ops/ops.h"
#include "../train/optim.h"

static const struct ops *g_cpu, *g_gpu;

enum { NI = 500, NC = 12, LMAX = 160, B = 48, K = 16 };

static int L = 120; /* history slots of the case */
static int32_t item[B], cat[B], hitem[B * LMAX], hcat[B * LMAX];
static float label[B];

static void make_batch(struct rec_batch *bt, uint64_t seed) {
    int32_t item_cat[NI];
    for (int i = 1; i < NI; i++)
        item_cat[i] = 1 + (int32_t)(rng_uniform(seed, 5000 + i) * (NC - 1));
    for (int b = 0; b < B; b++) {
        item[b] = 1 + (int32_t)(rng_uniform(seed, b) * (NI - 1));
        cat[b] = item_cat[item[b]];
        label[b] = rng_uniform(seed, 900 + b) < 0.4 ? 1.0f : 0.0f;
        /* left padding: histories of every length; sample 5's is empty (every slot masked) */
        int empty = b == 5 ? L : (b * 37) % (L - 3);
        for (int j = 0; j < L; j++) {
            /* ids from a small range, so rows repeat within and across samples */
            int32_t it = j < empty ? 0 : 1 + (int32_t)(rng_uniform(seed, 100 + b * L + j) * 60);
            hitem[b * L + j] = it;
            hcat[b * L + j] = it ? item_cat[it] : 0;
        }
    }
    bt->B = B;
    bt->item = item;
    bt->cat = cat;
    bt->hitem = hitem;
    bt->hcat = hcat;
    bt->label = label;
}

/* wide: representation dims 44 and attention dims 36 (more than a warp's lanes) */
static void config(struct rec_config *c, enum rec_emb emb, int wide, int aux) {
    memset(c, 0, sizeof(*c));
    c->emb = emb;
    c->n_item = NI;
    c->n_cat = NC;
    c->L = L;
    c->K = K;
    int d[3] = {8, 4, 4}, a[3] = {6, 4, 2}, dw[3] = {24, 12, 8}, aw[3] = {20, 8, 8};
    for (int k = 0; k < 3; k++) {
        c->dim[k] = wide ? dw[k] : d[k];
        c->adim[k] = emb == REC_EMB_DARE ? (wide ? aw[k] : a[k]) : c->dim[k];
    }
    c->h1 = 24;
    c->h2 = 12;
    c->aux = aux;
    c->l2 = 1e-4;
    c->init_std = 0.3f;
}

/* max |a - b| / max |b|; a NaN anywhere makes it NaN (which fails every <= check) */
static double rel_d(const double *a, const double *b, size_t n) {
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        double x = fabs(a[i] - b[i]), y = fabs(b[i]);
        if (!(x <= d))
            d = x;
        if (!(y <= s))
            s = y;
    }
    return d / (s > 0 ? s : 1);
}
static double rel(const float *a, const float *b, size_t n) {
    double *x = HW_MALLOC(sizeof(double) * (n ? n : 1)),
           *y = HW_MALLOC(sizeof(double) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        x[i] = a[i], y[i] = b[i];
    double r = rel_d(x, y, n);
    free(x);
    free(y);
    return r;
}

/* After the first step: losses, probabilities, top-K, ESU summaries, BatchNorm statistics and
 * every gradient against the CPU's. */
static void first_step(const char *name, struct rec_model *mc, struct rec_model *mg,
                       struct rec_out oc_, struct rec_out og_, const double *pc, const double *pg) {
    CHECK_MSG(fabs(oc_.ctr - og_.ctr) <= 1e-9 * fabs(oc_.ctr) &&
                  fabs(oc_.aux - og_.aux) <= 1e-9 * fabs(oc_.aux),
              "[%s] ctr %.17g vs %.17g, aux %.17g vs %.17g", name, og_.ctr, oc_.ctr, og_.aux,
              oc_.aux);
    double rp = rel_d(pg, pc, B);
    printf("  click probabilities rel %.2e\n", rp);
    CHECK_MSG(rp <= 1e-9, "[%s] probabilities rel %.3g", name, rp);
    int same = 1;
    for (int b = 0; b < B; b++)
        same &= !memcmp(rec_topk(mc, b), rec_topk(mg, b), sizeof(int32_t) * K);
    CHECK_MSG(same, "[%s] the GPU's top-K slots differ from the CPU's", name);
    const int R = mc->c.dim[0] + mc->c.dim[1] + mc->c.dim[2];
    double *h = HW_MALLOC(sizeof(double) * B * R);
    for (int all = 0; all < 2; all++) {
        g_gpu->download(h, rec_summary(mg, all), sizeof(double) * B * R);
        double r = rel_d(h, rec_summary(mc, all), (size_t)B * R);
        printf("  ESU summary%s rel %.2e\n", all ? " (all slots)" : "", r);
        CHECK_MSG(r <= 1e-9, "[%s] summary %d rel %.3g", name, all, r);
    }
    free(h);
    const int F = 3 * R;
    double rs = rel_d(mg->stats, mc->stats, 4 * (size_t)F);
    CHECK_MSG(rs <= 1e-9, "[%s] BatchNorm running statistics rel %.3g", name, rs);
    const size_t np = mc->num_params;
    float *gg = HW_MALLOC(sizeof(float) * np);
    g_gpu->download(gg, mg->grad_mem, sizeof(float) * np);
    double worst = 0;
    const char *wn = "";
    for (int i = 0; i < mc->n_params; i++) {
        const struct param *p = &mc->params[i];
        double r = rel(gg + p->offset, mc->grad_mem + p->offset, p->numel);
        if (!(r <= worst))
            worst = r, wn = p->name;
    }
    /* the gradients are float: one rounding of a double sum apart at most */
    printf("  gradients worst rel %.2e (%s)\n", worst, wn);
    CHECK_MSG(worst <= 1e-6, "[%s] gradients worst rel %.3g (%s)", name, worst, wn);
    free(gg);
}

static void compare(enum rec_emb emb, int wide, int aux, const char *name) {
    printf("[%s]\n", name);
    struct rec_config c;
    config(&c, emb, wide, aux);
    struct rec_model mc, mg;
    rec_init(&mc, &c, g_cpu, NULL);
    rec_init(&mg, &c, g_gpu, NULL);
    rec_init_weights(&mc, 7);
    rec_init_weights(&mg, 7);
    struct rec_batch bt;
    make_batch(&bt, 3);
    const size_t np = mc.num_params;
    double pc[B], pg[B];
    struct param_set sc = rec_param_set(&mc), sg = rec_param_set(&mg);
    struct optim_seg seg = {0, np, 0};
    struct optim oc, og;
    optim_init(&oc, g_cpu, &seg, 1);
    optim_init(&og, g_gpu, &seg, 1);
    struct cfg_train tc;
    memset(&tc, 0, sizeof(tc));
    tc.beta1 = 0.9, tc.beta2 = 0.999, tc.eps = 1e-8;
    double worst_loss = 0;
    for (int step = 0; step < 10; step++) {
        rec_zero_grad(&mc);
        rec_zero_grad(&mg);
        struct rec_out oc_ = rec_forward(&mc, &bt, 1, 1.0 / B, pc);
        struct rec_out og_ = rec_forward(&mg, &bt, 1, 1.0 / B, pg);
        rec_backward(&mc);
        rec_backward(&mg);
        double lc = oc_.loss + rec_l2(&mc, 1), lg = og_.loss + rec_l2(&mg, 1);
        double r_ = fabs(lc - lg) / fabs(lc);
        if (!(r_ <= worst_loss))
            worst_loss = r_;
        CHECK_MSG(isfinite(lg), "[%s] step %d: the GPU's loss is %g", name, step, lg);
        if (step == 0)
            first_step(name, &mc, &mg, oc_, og_, pc, pg);
        optim_step(&oc, &sc, &tc, 1e-2f, step + 1, 1.0f);
        optim_step(&og, &sg, &tc, 1e-2f, step + 1, 1.0f);
    }
    printf("  10 AdamW steps: worst loss rel %.2e\n", worst_loss);
    CHECK_MSG(worst_loss <= 1e-6, "[%s] 10 steps: worst loss rel %.3g", name, worst_loss);
    /* eval mode (running statistics) */
    rec_forward(&mc, &bt, 0, 1.0, pc);
    rec_forward(&mg, &bt, 0, 1.0, pg);
    double rp = rel_d(pg, pc, B);
    printf("  eval probabilities rel %.2e\n", rp);
    CHECK_MSG(rp <= 1e-6, "[%s] eval probabilities rel %.3g", name, rp);
    optim_free(&oc);
    optim_free(&og);
    rec_free(&mc);
    rec_free(&mg);
}
#endif /* HW_CUDA */

int main(void) {
#ifndef HW_CUDA
    printf("SKIP test_rec_cuda: built without CUDA\n");
    return 77;
#else
    if (cuda_device_count() == 0) {
        printf("SKIP test_rec_cuda: no CUDA device found\n");
        return 77;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    g_cpu = ops_for(BACKEND_CPU);
    g_gpu = ops_for(BACKEND_CUDA);
    compare(REC_EMB_DARE, 0, 1, "dare + aux");
    compare(REC_EMB_TWIN, 0, 1, "twin + aux");
    compare(REC_EMB_TWIN_PROJ, 0, 1, "twin_proj + aux");
    L = LMAX; /* more slots than an ESU block's threads, dims wider than a warp, no aux */
    compare(REC_EMB_DARE, 1, 0, "dare wide, 160 slots, no aux");
    compare(REC_EMB_TWIN_PROJ, 1, 1, "twin_proj wide, 160 slots");
    cuda_ctx_free();
    return check_report("test_rec_cuda");
#endif
}
