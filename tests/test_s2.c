/* tests/test_s2.c -- the S2 pattern and the block-sparse kernel (ALGORITHMS.md §5.5): the toy
 * patterns, union-over-heads coverage with balanced per-head work, stride 1 / a covering window
 * are dense, the sparse kernel against naive attention with an explicit mask (forward, and the
 * backward against central differences of the double reference), chunked computation with
 * log-sum-exp merges equal to one call for 1, 2 and 4 zig-zag partitions (forward and
 * backward), the chunk-need predicate context parallelism uses to skip K/V chunks, and the
 * positions an S2 KV cache keeps. */
#include "../core/rng.h"
#include "../dist/cp_attention.h"
#include "../ops/attention.h"
#include "../ops/s2.h"
#include "check.h"
#include "ref.h"

#include <stdio.h>

static void test_toy(void) {
    struct s2_pattern p;
    s2_init(&p, 16, 1, 2, 0, 0, 2, 2);
    /* head 0: {0}, {0,1}, {0,2}, {0,2,3}; head 1: {0}, {1}, {1,2}, {1,3} */
    const char *want[2][4] = {{"1000", "1100", "1010", "1011"}, {"1000", "0100", "0110", "0101"}};
    for (int g = 0; g < 2; g++)
        for (int qb = 0; qb < 4; qb++) {
            char row[5] = {0};
            for (int kb = 0; kb < 4; kb++)
                row[kb] = s2_active(&p, g, qb, kb) ? '1' : '0';
            CHECK_MSG(!strcmp(row, want[g][qb]), "toy head %d block %d: %s, want %s", g, qb, row,
                      want[g][qb]);
        }
}

static void test_union(void) {
    struct s2_pattern p;
    s2_init(&p, 64, 2, 8, 0, 0, 8, 8);
    int all = 1;
    for (int qb = 0; qb < 20; qb++)
        for (int kb = 0; kb <= qb; kb++) {
            int any = 0;
            for (int g = 0; g < 8; g++)
                any |= s2_active(&p, g, qb, kb);
            all &= any;
        }
    CHECK_MSG(all, "the union over 8 heads covers the causal block mask");
    const int want[8] = {5, 4, 4, 4, 4, 4, 4, 5};
    for (int g = 0; g < 8; g++) {
        int n = 0;
        for (int kb = 0; kb < 20; kb++)
            n += s2_active(&p, g, 19, kb);
        CHECK_MSG(n == want[g], "head %d: %d blocks in the last row, want %d", g, n, want[g]);
    }
    /* stride 1, or a window covering everything, is the dense causal mask */
    struct s2_pattern d1, d2;
    s2_init(&d1, 16, 1, 1, 0, 0, 4, 4);
    s2_init(&d2, 16, 20, 8, 0, 0, 4, 4);
    int dense = 1;
    for (int g = 0; g < 4; g++)
        for (int qb = 0; qb < 20; qb++)
            for (int kb = 0; kb < 20; kb++)
                dense &= s2_active(&d1, g, qb, kb) == (kb <= qb) &&
                         s2_active(&d2, g, qb, kb) == (kb <= qb);
    CHECK(dense);
    /* the last dense_heads kv heads are dense */
    struct s2_pattern dh;
    s2_init(&dh, 16, 1, 8, 0, 1, 4, 2);
    CHECK(s2_active(&dh, 1, 9, 3) && !s2_active(&dh, 0, 9, 3));
}

static void fill(float *x, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++)
        x[i] = (float)rng_normal(seed, i);
}

enum { B = 2, T = 96, H = 4, HKV = 2, HD = 8, LD = (H + 2 * HKV) * HD };

static double objective(const double *qkv, const float *dout, const struct s2_pattern *p) {
    double *o = malloc(sizeof(double) * B * T * H * HD), acc = 0;
    ref_attention_s2(o, qkv, B, T, H, HKV, HD, LD, p);
    for (size_t i = 0; i < (size_t)B * T * H * HD; i++)
        acc += o[i] * dout[i];
    free(o);
    return acc;
}

static void test_kernel(int local, int vert, int dense_heads) {
    struct s2_pattern p;
    s2_init(&p, 16, local, vert, 1, dense_heads, H, HKV);
    const size_t nq = (size_t)B * T * LD, no = (size_t)B * T * H * HD;
    float *qkv = malloc(4 * nq), *out = malloc(4 * no), *lse = malloc(4 * B * H * T);
    float *dout = malloc(4 * no), *dqkv = malloc(4 * nq);
    fill(qkv, nq, 1);
    fill(dout, no, 2);
    struct attn_shape s = {.B = B, .T = T, .H = H, .Hkv = HKV, .hd = HD, .ld_qkv = LD, .s2 = &p};
    attention_forward_cpu(out, lse, qkv, &s);
    double *dq = malloc(sizeof(double) * nq), *ref = malloc(sizeof(double) * no);
    for (size_t i = 0; i < nq; i++)
        dq[i] = qkv[i];
    ref_attention_s2(ref, dq, B, T, H, HKV, HD, LD, &p);
    double w = 0;
    for (size_t i = 0; i < no; i++)
        w = fabs(ref[i] - out[i]) > w ? fabs(ref[i] - out[i]) : w;
    CHECK_MSG(w < 1e-5, "sparse forward (local %d, V %d) vs masked dense: %g", local, vert, w);
    attention_backward_cpu(dqkv, dout, out, lse, qkv, &s);
    double worst = 0;
    for (size_t i = 0; i < nq; i += 29) {
        double x0 = dq[i], h = 1e-4;
        dq[i] = x0 + h;
        double fp = objective(dq, dout, &p);
        dq[i] = x0 - h;
        double fm = objective(dq, dout, &p);
        dq[i] = x0;
        double num = (fp - fm) / (2 * h),
               e = fabs(num - dqkv[i]) / (fabs(num) > 1e-2 ? fabs(num) : 1e-2);
        worst = e > worst ? e : worst;
    }
    CHECK_MSG(worst < 2e-3, "sparse backward (local %d, V %d) vs differences: worst rel %g", local,
              vert, worst);
    free(qkv), free(out), free(lse), free(dout), free(dqkv), free(dq), free(ref);
}

/* Zig-zag partitions: each part's queries attend to every part's keys in turn, merged by
 * log-sum-exp, as ring attention does; gradients accumulate per part. */
static void test_partitions(void) {
    struct s2_pattern p;
    s2_init(&p, 16, 1, 3, 0, 0, H, HKV);
    const size_t nq = (size_t)B * T * LD, no = (size_t)B * T * H * HD;
    float *qkv = malloc(4 * nq), *out = malloc(4 * no), *lse = malloc(4 * B * H * T);
    float *dout = malloc(4 * no), *dqkv = malloc(4 * nq);
    fill(qkv, nq, 3);
    fill(dout, no, 4);
    struct attn_shape s = {.B = B, .T = T, .H = H, .Hkv = HKV, .hd = HD, .ld_qkv = LD, .s2 = &p};
    attention_forward_cpu(out, lse, qkv, &s);
    attention_backward_cpu(dqkv, dout, out, lse, qkv, &s);
    for (int P = 1; P <= 4; P *= 2) {
        if (T % (2 * P * 16))
            continue;
        const int Tl = T / P;
        /* gather each part's rows (zig-zag positions) */
        float *pq = malloc(4 * nq), *po = malloc(4 * no), *pl = malloc(4 * B * H * T);
        float *pdo = malloc(4 * no), *pdq = calloc(nq, 4);
        int32_t *pos = malloc(4 * T);
        for (int r = 0; r < P; r++) {
            cp_positions(pos + r * Tl, Tl, P, r);
            for (int b = 0; b < B; b++)
                for (int t = 0; t < Tl; t++) {
                    const size_t src = (size_t)b * T + pos[r * Tl + t];
                    const size_t dst = ((size_t)r * B + b) * Tl + t;
                    memcpy(pq + dst * LD, qkv + src * LD, 4 * LD);
                    memcpy(pdo + dst * H * HD, dout + src * H * HD, 4 * H * HD);
                }
        }
        for (int r = 0; r < P; r++)
            for (int step = 0; step < P; step++) {
                const int o = (r - step + P) % P;
                struct attn_block a = {.q = pq + (size_t)r * B * Tl * LD,
                                       .k = pq + (size_t)o * B * Tl * LD + H * HD,
                                       .v = pq + (size_t)o * B * Tl * LD + (H + HKV) * HD,
                                       .ldq = LD,
                                       .ldkv = LD,
                                       .qpos = pos + r * Tl,
                                       .kpos = pos + o * Tl,
                                       .B = B,
                                       .Tq = Tl,
                                       .Tk = Tl,
                                       .H = H,
                                       .Hkv = HKV,
                                       .hd = HD,
                                       .s2 = &p};
                attention_block_forward_cpu(po + (size_t)r * B * Tl * H * HD,
                                            pl + (size_t)r * B * H * Tl, &a, step > 0);
            }
        for (int r = 0; r < P; r++)
            for (int o = 0; o < P; o++) {
                struct attn_block a = {.q = pq + (size_t)r * B * Tl * LD,
                                       .k = pq + (size_t)o * B * Tl * LD + H * HD,
                                       .v = pq + (size_t)o * B * Tl * LD + (H + HKV) * HD,
                                       .ldq = LD,
                                       .ldkv = LD,
                                       .qpos = pos + r * Tl,
                                       .kpos = pos + o * Tl,
                                       .B = B,
                                       .Tq = Tl,
                                       .Tk = Tl,
                                       .H = H,
                                       .Hkv = HKV,
                                       .hd = HD,
                                       .s2 = &p};
                float *base = pdq + (size_t)r * B * Tl * LD, *kbase = pdq + (size_t)o * B * Tl * LD;
                attention_block_backward_cpu(base, kbase + H * HD, kbase + (H + HKV) * HD, LD, LD,
                                             pdo + (size_t)r * B * Tl * H * HD,
                                             po + (size_t)r * B * Tl * H * HD,
                                             pl + (size_t)r * B * H * Tl, &a);
            }
        double wo = 0, wg = 0;
        for (int r = 0; r < P; r++)
            for (int b = 0; b < B; b++)
                for (int t = 0; t < Tl; t++) {
                    const size_t src = (size_t)b * T + pos[r * Tl + t];
                    const size_t dst = ((size_t)r * B + b) * Tl + t;
                    for (int i = 0; i < H * HD; i++)
                        wo = fmax(wo, fabs(po[dst * H * HD + i] - out[src * H * HD + i]));
                    for (int i = 0; i < LD; i++)
                        wg = fmax(wg, fabs(pdq[dst * LD + i] - dqkv[src * LD + i]));
                }
        CHECK_MSG(wo < 1e-5 && wg < 1e-4, "%d partitions: out diff %g, grad diff %g", P, wo, wg);
        free(pq), free(po), free(pl), free(pdo), free(pdq), free(pos);
    }
    free(qkv), free(out), free(lse), free(dout), free(dqkv);
}

static void test_need_and_cache(void) {
    struct s2_pattern p;
    s2_init(&p, 16, 1, 8, 0, 0, 4, 4);
    /* chunk of 2 blocks [32, 64) for queries in [128, 160): head g needs it iff one of blocks
     * 2, 3 is strided for g */
    int32_t q[32], k[32];
    for (int i = 0; i < 32; i++)
        q[i] = 128 + i, k[i] = 32 + i;
    for (int g = 0; g < 4; g++) {
        int want = s2_vert(&p, g, 2) || s2_vert(&p, g, 3);
        CHECK(s2_any_visible(&p, g, g + 1, q, 32, k, 32) == want);
    }
    /* brute force over random chunk pairs */
    int agree = 1;
    for (int trial = 0; trial < 50; trial++) {
        int q0 = 16 * (int)(rng_uniform(21, trial) * 12),
            k0 = 16 * (int)(rng_uniform(22, trial) * 12);
        for (int i = 0; i < 32; i++)
            q[i] = q0 + i, k[i] = k0 + i;
        int brute = 0;
        for (int g = 0; g < 2; g++)
            for (int i = 0; i < 32; i++)
                for (int j = 0; j < 32; j++)
                    brute |= s2_visible(&p, g, q[i], k[j]);
        agree &= brute == s2_any_visible(&p, 0, 2, q, 32, k, 32);
    }
    CHECK(agree);
    /* the cache positions for a query are exactly its visible keys */
    int32_t keep[256];
    int ok = 1;
    for (int g = 0; g < 4; g++)
        for (int at = 0; at < 200; at += 13) {
            int n = s2_cache_positions(&p, g, at, keep, 256), j = 0;
            for (int t = 0; t <= at; t++)
                if (s2_visible(&p, g, at, t))
                    ok &= j < n && keep[j++] == t;
            ok &= j == n;
        }
    CHECK(ok);
}

int main(void) {
    test_toy();
    test_union();
    test_kernel(1, 2, 0);
    test_kernel(2, 3, 1);
    test_kernel(1, 1, 0);
    test_partitions();
    test_need_and_cache();
    return check_report("test_s2");
}
