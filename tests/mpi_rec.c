/* tests/mpi_rec.c -- run under mpirun (1, 2 or 4 ranks): the rec model with its embedding
 * tables split by rows over the ranks and the batch split over them (data parallel) gives the
 * loss, the dense gradients, every table-row gradient, the eval probabilities and three AdamW
 * steps of the one-process model on the whole batch. Every rank computes the reference. */
#include "../core/check.h"
#include "../core/rng.h"
#include "../dist/dist.h"
#include "../dist/emb_shard.h"
#include "../model/rec.h"
#include "../train/optim.h"
#include "check.h"

#include <stdlib.h>
#include <string.h>

enum { NI = 37, NC = 5, L = 8, B = 12 };

static int32_t item[B], cat[B], hitem[B * L], hcat[B * L];
static float label[B];

static void make_batch(uint64_t seed) {
    int32_t ic[NI];
    for (int i = 1; i < NI; i++)
        ic[i] = 1 + (int32_t)(rng_uniform(seed, 500 + i) * (NC - 1));
    for (int b = 0; b < B; b++) {
        item[b] = 1 + (int32_t)(rng_uniform(seed, b) * (NI - 1));
        cat[b] = ic[item[b]];
        label[b] = rng_uniform(seed, 50 + b) < 0.4 ? 1.0f : 0.0f;
        int empty = b % 4;
        for (int j = 0; j < L; j++) {
            int32_t it =
                j < empty ? 0 : 1 + (int32_t)(rng_uniform(seed, 100 + b * L + j) * (NI - 1));
            hitem[b * L + j] = it;
            hcat[b * L + j] = it ? ic[it] : 0;
        }
    }
}

static struct rec_batch slice_batch(int lo, int hi) {
    struct rec_batch bt = {
        hi - lo, item + lo, cat + lo, hitem + (size_t)lo * L, hcat + (size_t)lo * L, label + lo};
    return bt;
}

static int close_enough(double a, double b, double tol) {
    return fabs(a - b) <= tol * (fabs(b) > 1e-3 ? fabs(b) : 1e-3);
}

static void run(struct dist *d, enum rec_emb emb) {
    struct rec_config c;
    memset(&c, 0, sizeof(c));
    c.emb = emb;
    c.n_item = NI;
    c.n_cat = NC;
    c.L = L;
    c.K = 3;
    int dims[3] = {4, 3, 2}, ad[3] = {2, 2, 2};
    for (int k = 0; k < 3; k++) {
        c.dim[k] = dims[k];
        c.adim[k] = emb == REC_EMB_DARE ? ad[k] : dims[k];
    }
    c.h1 = 6;
    c.h2 = 4;
    c.aux = 1;
    c.l2 = 1e-4;
    c.init_std = 0.3f;
    struct rec_model ref, sh;
    rec_init(&ref, &c, ops_for(BACKEND_CPU), NULL);
    rec_init(&sh, &c, ops_for(BACKEND_CPU), d);
    rec_init_weights(&ref, 77);
    rec_init_weights(&sh, 77);
    struct param_set gr = rec_param_set(&ref), gs = rec_param_set(&sh);
    struct optim_seg sr = {0, ref.num_params, 0}, ss = {0, sh.num_params, 0};
    struct optim orf, osh;
    optim_init(&orf, ref.ops, &sr, 1);
    optim_init(&osh, sh.ops, &ss, 1);
    struct cfg_train tc;
    memset(&tc, 0, sizeof(tc));
    tc.beta1 = 0.9;
    tc.beta2 = 0.999;
    tc.eps = 1e-8;
    int lo = B * d->rank / d->world, hi = B * (d->rank + 1) / d->world;
    /* the shard: rows [r*ceil(n/p), ...) of each table, nothing else held here */
    int64_t held = 0, total = 0;
    for (int i = 0; i < sh.n_params; i++) {
        const struct param *p = &sh.params[i];
        if (p->shard_dim != 0)
            continue;
        int64_t rlo, rhi;
        emb_shard_range(p->gshape[0], d->world, d->rank, &rlo, &rhi);
        CHECK(p->goff[0] == rlo && p->shape[0] == rhi - rlo);
        held += p->shape[0];
        total += p->gshape[0];
        const struct param *q = rec_find_param(&ref, p->name);
        CHECK(memcmp(sh.param_mem + p->offset, ref.param_mem + q->offset + rlo * p->shape[1],
                     sizeof(float) * p->numel) == 0);
    }
    CHECK(d->world == 1 ? held == total : held < total);
    for (int step = 0; step < 3; step++) {
        make_batch(1000 + step);
        struct rec_batch all = slice_batch(0, B), mine = slice_batch(lo, hi);
        rec_zero_grad(&ref);
        rec_zero_grad(&sh);
        struct rec_out o_ref = rec_forward(&ref, &all, 1, 1.0 / B, NULL);
        rec_backward(&ref);
        double l_ref = o_ref.loss + rec_l2(&ref, 1);
        struct rec_out o_sh = rec_forward(&sh, &mine, 1, 1.0 / B, NULL);
        rec_backward(&sh);
        double parts = o_sh.loss;
        if (d->world > 1) {
            dist_allreduce_f32(d, DIST_DP, sh.grad_mem, sh.n_dense, DIST_KIND_DP_GRAD);
            parts = dist_allreduce_sum_double(d, parts);
        }
        double l_sh = parts + rec_l2(&sh, 1);
        /* step 0: same parameters, double math: the loss agrees to rounding; later steps see
         * parameters that went through float gradient sums in another order */
        CHECK_MSG(close_enough(l_sh, l_ref, step ? 1e-6 : 1e-12), "step %d loss %.17g vs %.17g",
                  step, l_sh, l_ref);
        int bad = 0;
        for (int i = 0; i < sh.n_params; i++) {
            const struct param *p = &sh.params[i], *q = rec_find_param(&ref, p->name);
            const float *a = sh.grad_mem + p->offset;
            const float *b = ref.grad_mem + q->offset + (size_t)p->goff[0] * p->shape[1];
            /* float sums of per-rank partials: relative to the tensor's largest entry */
            double scale = 1e-3;
            for (size_t k = 0; k < q->numel; k++)
                scale = fmax(scale, fabs(ref.grad_mem[q->offset + k]));
            for (size_t k = 0; k < p->numel; k++)
                if (fabs(a[k] - b[k]) > 1e-5 * scale) {
                    if (bad++ < 5)
                        fprintf(stderr, "rank %d step %d %s[%zu]: %.9g vs %.9g\n", d->rank, step,
                                p->name, k, a[k], b[k]);
                }
        }
        CHECK_MSG(bad == 0, "rank %d step %d: %d gradient entries differ", d->rank, step, bad);
        optim_step(&orf, &gr, &tc, 0.01f, step + 1, 1.0f);
        optim_step(&osh, &gs, &tc, 0.01f, step + 1, 1.0f);
    }
    /* eval mode after training: the probabilities of this rank's slice */
    double pr[B], ps[B];
    struct rec_batch all = slice_batch(0, B), mine = slice_batch(lo, hi);
    rec_forward(&ref, &all, 0, 1.0, pr);
    rec_forward(&sh, &mine, 0, 1.0, ps);
    for (int b = lo; b < hi; b++)
        CHECK_MSG(close_enough(ps[b - lo], pr[b], 1e-5), "eval prob %d: %.9g vs %.9g", b,
                  ps[b - lo], pr[b]);
    optim_free(&orf);
    optim_free(&osh);
    rec_free(&ref);
    rec_free(&sh);
}

int main(int argc, char **argv) {
    struct dist d;
    dist_init(&d, &argc, &argv);
    dist_grid_init(&d, d.world, 1, 1, 0);
    run(&d, REC_EMB_DARE);
    run(&d, REC_EMB_TWIN);
    run(&d, REC_EMB_TWIN_PROJ);
    int bad = dist_allreduce_max_int(&d, check_failed_);
    int rc = check_report(d.rank == 0 ? "mpi_rec" : "mpi_rec (rank)");
    dist_finalize(&d);
    return bad ? 1 : rc;
}
