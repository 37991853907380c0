/* tests/mpi_attention.c -- run under mpirun (2 or 4 ranks): ring and Ulysses context-parallel
 * attention, forward and backward, equal single-process attention on the same global data.
 * Every rank computes the reference itself and compares its own zig-zag slice. */
#include "../core/rng.h"
#include "../dist/cp_attention.h"
#include "../dist/dist.h"
#include "../ops/attention.h"
#include "check.h"

#include <stdlib.h>
#include <string.h>

static void fill(float *x, size_t n, uint64_t key) {
    for (size_t i = 0; i < n; i++)
        x[i] = (float)rng_normal(key, i);
}

static void run(struct dist *d, int ulysses, int H, int Hkv) {
    const int B = 2, cp = d->world, T = 2 * cp * 11, hd = 8;
    const int ld = (H + 2 * Hkv) * hd, HD = H * hd, Tl = T / cp;
    dist_grid_init(d, 1, cp, 1, ulysses);
    size_t nq = (size_t)B * T * ld, no = (size_t)B * T * HD;
    float *qkv = malloc(4 * nq), *out = malloc(4 * no), *lse = malloc(4 * (size_t)B * H * T);
    float *dout = malloc(4 * no), *dqkv = malloc(4 * nq);
    fill(qkv, nq, 1), fill(dout, no, 2);
    struct attn_shape gs = {.B = B, .T = T, .H = H, .Hkv = Hkv, .hd = hd, .ld_qkv = ld};
    attention_forward_cpu(out, lse, qkv, &gs);
    attention_backward_cpu(dqkv, dout, out, lse, qkv, &gs);
    /* local slices */
    int32_t *pos = malloc(sizeof(int32_t) * Tl);
    cp_positions(pos, Tl, cp, d->cp_rank);
    float *lq = malloc(4 * (size_t)B * Tl * ld), *ldo = malloc(4 * (size_t)B * Tl * HD);
    float *lo = malloc(4 * (size_t)B * Tl * HD), *ll = malloc(4 * (size_t)B * H * Tl);
    float *ldq = malloc(4 * (size_t)B * Tl * ld);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < Tl; t++) {
            memcpy(lq + ((size_t)b * Tl + t) * ld, qkv + ((size_t)b * T + pos[t]) * ld, 4 * ld);
            memcpy(ldo + ((size_t)b * Tl + t) * HD, dout + ((size_t)b * T + pos[t]) * HD, 4 * HD);
        }
    struct attn_shape ls = {.B = B, .T = Tl, .H = H, .Hkv = Hkv, .hd = hd, .ld_qkv = ld};
    struct cp_attn_ctx ctx;
    float *mem = malloc(4 * (cp_ctx_floats(d, &ls) + 1));
    cp_ctx_carve(&ctx, mem, d, &ls);
    struct cp_work w = {0};
    cp_attention_forward(ops_for(BACKEND_CPU), d, lo, ll, lq, &ls, &ctx, &w);
    cp_attention_backward(ops_for(BACKEND_CPU), d, ldq, ldo, lo, ll, lq, &ls, &ctx, &w);
    double eo = 0, eg = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < Tl; t++) {
            for (int c = 0; c < HD; c++) {
                double e = fabs(lo[((size_t)b * Tl + t) * HD + c] -
                                out[((size_t)b * T + pos[t]) * HD + c]);
                eo = e > eo ? e : eo;
            }
            for (int c = 0; c < ld; c++) {
                double e = fabs(ldq[((size_t)b * Tl + t) * ld + c] -
                                dqkv[((size_t)b * T + pos[t]) * ld + c]);
                eg = e > eg ? e : eg;
            }
        }
    CHECK_MSG(eo < 1e-5, "rank %d %s H=%d Hkv=%d: forward max diff %g", d->rank,
              ulysses ? "ulysses" : "ring", H, Hkv, eo);
    CHECK_MSG(eg < 1e-5, "rank %d %s H=%d Hkv=%d: backward max diff %g", d->rank,
              ulysses ? "ulysses" : "ring", H, Hkv, eg);
    /* bytes: ring forward passes K/V cp-1 times, backward passes K,V,dK,dV cp times */
    if (!ulysses) {
        double kv = (double)B * Tl * 2 * Hkv * hd * 4;
        CHECK_MSG(d->stats.bytes[DIST_KIND_CP_RING] == kv * (cp - 1) + 2 * kv * cp,
                  "ring bytes %g, formula %g", d->stats.bytes[DIST_KIND_CP_RING],
                  kv * (cp - 1) + 2 * kv * cp);
    }
    dist_stats_reset(d);
    cp_work_free(ops_for(BACKEND_CPU), &w);
    free(mem), free(qkv), free(out), free(lse), free(dout), free(dqkv), free(pos);
    free(lq), free(ldo), free(lo), free(ll), free(ldq);
}

int main(int argc, char **argv) {
    struct dist d;
    dist_init(&d, &argc, &argv);
    run(&d, 0, 4, 4);
    run(&d, 0, 4, 2); /* GQA */
    run(&d, 1, 4, 4);
    if (d.world == 2)
        run(&d, 1, 4, 2);
    int bad = dist_allreduce_max_int(&d, check_failed_);
    int rc = check_report(d.rank == 0 ? "mpi_attention" : "mpi_attention (rank)");
    dist_finalize(&d);
    return bad ? 1 : rc;
}
