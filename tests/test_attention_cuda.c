/* tests/test_attention_cuda.c -- the CUDA attention (ops/attention_cuda.cu, fp32 own kernels, and
 * ops/attention_cudnn.cu, bf16 cuDNN graphs) against the CPU oracle (ops/attention_cpu.c) on
 * random inputs with awkward shapes: odd B, T off the 64-tile, hd 16..128 (and 48), MHA / GQA /
 * MQA, padded row strides, S2 patterns (block 16/32/128, local 1-2, head0 != 0, dense heads),
 * MoH selections (empty, full and random rows per (b, h)), packed segments, the persistent
 * prefix, ring blocks (zig-zag chunks merged by log-sum-exp, backward accumulation), decode and
 * PASTA-steered decode. Every case also runs twice and must be bit-identical.
 *
 * Tolerances, all relative to the largest |value| of the reference array (so a few large entries
 * do not hide errors in small ones, and tiny entries do not fail on rounding):
 *   fp32 kernels: max |gpu - cpu| <= 1e-5 * max |cpu|   (out, lse, dq, dk, dv, dpk, dpv)
 *   bf16 cuDNN:   max |gpu - cpu| <= 1e-2 * max |cpu|   (the CPU runs in fp32 on the same
 *                                                        bf16-rounded inputs)
 * -inf must match -inf exactly; untouched columns must keep their bytes. A failure prints the
 * case, shape and options, the max error, and the first bad index (row, column) with both values.
 * Without a GPU: "SKIP test_attention_cuda: no CUDA device found" and exit 77. */
#include "check.h"

#ifdef HW_CUDA
#include "../ops/attention.h"
#include "../ops/cuda_ctx.h"
#include "../ops/ops.h"
#include "../ops/s2.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL_F32  1e-5
#define TOL_BF16 1e-2
/* GPU bf16 against the CPU's bf16 kernels: both round the same tiles; a last-bit difference in
 * fp32 may still round one P or dS element to the neighbouring bf16 value */
#define TOL_BF16_CPU 4e-3

/* ------------------------------------------------------------------------------------------ */
/* helpers */

static uint64_t rng_s = 0x9e3779b97f4a7c15ull;

static uint32_t rnd_u32(void) {
    rng_s ^= rng_s << 13;
    rng_s ^= rng_s >> 7;
    rng_s ^= rng_s << 17;
    return (uint32_t)(rng_s >> 32);
}

static float rnd_f(void) { /* uniform in [-1, 1) */
    return (float)((rnd_u32() >> 8) * (2.0 / 16777216.0) - 1.0);
}

static void fill(float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++)
        x[i] = scale * rnd_f();
}

static float *fmalloc(size_t n) {
    float *p = malloc(sizeof(float) * (n ? n : 1));
    if (!p) {
        fprintf(stderr, "out of host memory\n");
        exit(1);
    }
    return p;
}

static void *up(const void *host, size_t bytes) {
    void *d = cuda_alloc(bytes);
    if (bytes)
        cuda_upload(d, host, bytes);
    return d;
}

static float *down(const float *dev, size_t n) {
    float *h = fmalloc(n);
    cuda_download(h, dev, sizeof(float) * n);
    return h;
}

/* got vs ref, n values in rows of `width`: see the tolerance rule at the top. Returns 1 if ok and
 * writes the relative error into *rel_out (when non-NULL). */
static int compare(const char *ctx, const char *what, const float *got, const float *ref, size_t n,
                   size_t width, double tol, double *rel_out) {
    double maxref = 0.0, maxerr = 0.0;
    size_t worst = 0, bad = (size_t)-1;
    for (size_t i = 0; i < n; i++)
        if (isfinite(ref[i]) && fabs(ref[i]) > maxref)
            maxref = fabs(ref[i]);
    const double scale = maxref > 0.0 ? maxref : 1.0;
    for (size_t i = 0; i < n; i++) {
        double e;
        if (isfinite(ref[i]) && isfinite(got[i]))
            e = fabs((double)got[i] - (double)ref[i]);
        else
            e = got[i] == ref[i] ? 0.0 : INFINITY; /* -inf == -inf; NaN never equal */
        if (e > maxerr) {
            maxerr = e;
            worst = i;
        }
        if (!(e <= tol * scale) && bad == (size_t)-1)
            bad = i;
    }
    const double rel = maxerr / scale;
    if (rel_out && rel > *rel_out)
        *rel_out = rel;
    const int ok = bad == (size_t)-1;
    if (!width)
        width = 1;
    CHECK_MSG(ok,
              "%s: %s (n=%zu, row width %zu): max|ref| %.4g, max err %.3g = %.3g rel (tol %.0e); "
              "worst [%zu] (row %zu col %zu) gpu %.9g cpu %.9g; first bad [%zu] (row %zu col %zu) "
              "gpu %.9g cpu %.9g",
              ctx, what, n, width, maxref, maxerr, rel, tol, worst, worst / width, worst % width,
              n ? got[worst] : 0.0, n ? ref[worst] : 0.0, ok ? 0 : bad, ok ? 0 : bad / width,
              ok ? 0 : bad % width, ok ? 0.0 : got[bad], ok ? 0.0 : ref[bad]);
    return ok;
}

static void same_bits(const char *ctx, const char *what, const void *a, const void *b,
                      size_t bytes) {
    size_t i = 0;
    const unsigned char *x = a, *y = b;
    while (i < bytes && x[i] == y[i])
        i++;
    CHECK_MSG(i == bytes, "%s: %s differs between two identical runs (first byte %zu of %zu)", ctx,
              what, i, bytes);
}

/* columns [c0, c1) of rows (stride ld) into a packed array */
static float *cols(const float *x, size_t rows, size_t ld, size_t c0, size_t c1) {
    float *o = fmalloc(rows * (c1 - c0));
    for (size_t r = 0; r < rows; r++)
        memcpy(o + r * (c1 - c0), x + r * ld + c0, sizeof(float) * (c1 - c0));
    return o;
}

/* MoH selections: rows of (b, h) ascending; head h % 4 == 0 selects none, == 1 all, else each row
 * with probability 1/2. Host arrays; *idx (B*H*T), *off (B*H + 1). */
static void make_qsel(int32_t **idx, int32_t **off, int B, int H, int T) {
    *idx = malloc(sizeof(int32_t) * ((size_t)B * H * T + 1));
    *off = malloc(sizeof(int32_t) * ((size_t)B * H + 1));
    int n = 0;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            (*off)[b * H + h] = n;
            for (int t = 0; t < T; t++) {
                const int take = h % 4 == 0 ? 0 : h % 4 == 1 ? 1 : (int)(rnd_u32() & 1);
                if (take)
                    (*idx)[n++] = t;
            }
        }
    (*off)[B * H] = n;
}

/* nseg segments per row at random cut points (ids non-decreasing, starting at b*100) */
static int32_t *make_seg(int B, int T, int nseg) {
    int32_t *s = malloc(sizeof(int32_t) * ((size_t)B * T + 1));
    for (int b = 0; b < B; b++) {
        int id = b * 100;
        for (int t = 0; t < T; t++) {
            if (t > 0 && (int)(rnd_u32() % (unsigned)T) < nseg - 1)
                id++;
            s[(size_t)b * T + t] = id;
        }
    }
    return s;
}

static void describe(char *buf, size_t n, const char *name, int B, int T, int H, int Hkv, int hd,
                     int ld, const struct s2_pattern *s2, int head0, int moh, int nseg, int np) {
    int k = snprintf(buf, n, "[%s] B=%d T=%d H=%d Hkv=%d hd=%d ld=%d", name, B, T, H, Hkv, hd, ld);
    if (s2 && k < (int)n)
        k += snprintf(buf + k, n - k, " s2(block %d local %d vert %d offset %d dense %d, head0 %d)",
                      s2->block, s2->local, s2->vert, s2->offset, s2->dense, head0);
    if (moh && k < (int)n)
        k += snprintf(buf + k, n - k, " moh");
    if (nseg && k < (int)n)
        k += snprintf(buf + k, n - k, " seg(%d)", nseg);
    if (np && k < (int)n)
        snprintf(buf + k, n - k, " prefix(np %d)", np);
}

/* ------------------------------------------------------------------------------------------ */
/* whole sequence: forward, backward, prefix */

static void test_whole(const char *name, int B, int T, int H, int Hkv, int hd, int ldpad,
                       const struct s2_pattern *s2, int head0, int moh, int nseg, int np) {
    const int HD = H * hd, KD = Hkv * hd, W = HD + 2 * KD, ld = W + ldpad, ld_p = KD + 3;
    const size_t rows = (size_t)B * T, nq = rows * ld, no = rows * HD, nl = (size_t)B * H * T;
    const size_t npk = (size_t)(np ? np : 1) * ld_p;
    char ctx[300];
    describe(ctx, sizeof(ctx), name, B, T, H, Hkv, hd, ld, s2, head0, moh, nseg, np);

    float *qkv = fmalloc(nq), *dout = fmalloc(no), *pk = fmalloc(npk), *pv = fmalloc(npk);
    float *dpk0 = fmalloc(npk), *dpv0 = fmalloc(npk);
    fill(qkv, nq, 1.5f);
    fill(dout, no, 1.0f);
    fill(pk, npk, 1.5f);
    fill(pv, npk, 1.0f);
    fill(dpk0, npk, 0.5f);
    fill(dpv0, npk, 0.5f);
    int32_t *qsel = NULL, *qsel_off = NULL, *seg = NULL;
    if (moh)
        make_qsel(&qsel, &qsel_off, B, H, T);
    if (nseg)
        seg = make_seg(B, T, nseg);

    /* the CPU oracle */
    struct attn_shape s = {.B = B,
                           .T = T,
                           .H = H,
                           .Hkv = Hkv,
                           .hd = hd,
                           .ld_qkv = ld,
                           .s2 = s2,
                           .head0 = head0,
                           .qsel = qsel,
                           .qsel_off = qsel_off,
                           .seg = seg,
                           .np = np,
                           .ld_p = ld_p,
                           .pk = pk,
                           .pv = pv};
    float *out_c = fmalloc(no), *lse_c = fmalloc(nl), *dqkv_c = fmalloc(nq);
    float *dpk_c = fmalloc(npk), *dpv_c = fmalloc(npk);
    memcpy(dpk_c, dpk0, sizeof(float) * npk);
    memcpy(dpv_c, dpv0, sizeof(float) * npk);
    for (size_t i = 0; i < nq; i++)
        dqkv_c[i] = 7.0f; /* the padding columns must survive */
    s.dpk = dpk_c;
    s.dpv = dpv_c;
    attention_forward_cpu(out_c, lse_c, qkv, &s);
    attention_backward_cpu(dqkv_c, dout, out_c, lse_c, qkv, &s);

    /* the same on the device (twice, for determinism) */
    float *qkv_d = up(qkv, sizeof(float) * nq), *dout_d = up(dout, sizeof(float) * no);
    float *pk_d = up(pk, sizeof(float) * npk), *pv_d = up(pv, sizeof(float) * npk);
    float *outc_d = up(out_c, sizeof(float) * no), *lsec_d = up(lse_c, sizeof(float) * nl);
    int32_t *qsel_d = moh ? up(qsel, sizeof(int32_t) * ((size_t)qsel_off[B * H] + 1)) : NULL;
    int32_t *qoff_d = moh ? up(qsel_off, sizeof(int32_t) * ((size_t)B * H + 1)) : NULL;
    int32_t *seg_d = nseg ? up(seg, sizeof(int32_t) * rows) : NULL;
    float *out_d = cuda_alloc(sizeof(float) * no), *lse_d = cuda_alloc(sizeof(float) * nl);
    float *dqkv_d = cuda_alloc(sizeof(float) * nq);
    float *dpk_d = cuda_alloc(sizeof(float) * npk), *dpv_d = cuda_alloc(sizeof(float) * npk);
    struct attn_shape sd = s;
    sd.qsel = qsel_d;
    sd.qsel_off = qoff_d;
    sd.seg = seg_d;
    sd.pk = pk_d;
    sd.pv = pv_d;
    sd.dpk = dpk_d;
    sd.dpv = dpv_d;

    float *res[2][5];
    float *sentinel = fmalloc(nq > no ? nq : no);
    for (size_t i = 0; i < (nq > no ? nq : no); i++)
        sentinel[i] = 7.0f;
    for (int run = 0; run < 2; run++) {
        cuda_upload(out_d, sentinel, sizeof(float) * no); /* every row must be written */
        cuda_upload(lse_d, sentinel, sizeof(float) * nl);
        cuda_upload(dqkv_d, sentinel, sizeof(float) * nq);
        cuda_upload(dpk_d, dpk0, sizeof(float) * npk);
        cuda_upload(dpv_d, dpv0, sizeof(float) * npk);
        attention_forward_cuda(out_d, lse_d, qkv_d, &sd);
        /* the backward gets the CPU's out/lse, so its errors are its own */
        attention_backward_cuda(dqkv_d, dout_d, outc_d, lsec_d, qkv_d, &sd);
        res[run][0] = down(out_d, no);
        res[run][1] = down(lse_d, nl);
        res[run][2] = down(dqkv_d, nq);
        res[run][3] = down(dpk_d, npk);
        res[run][4] = down(dpv_d, npk);
    }

    double fwd = 0.0, bwd = 0.0;
    compare(ctx, "forward out", res[0][0], out_c, no, (size_t)HD, TOL_F32, &fwd);
    compare(ctx, "forward lse", res[0][1], lse_c, nl, (size_t)T, TOL_F32, &fwd);
    const char *names[3] = {"backward dq", "backward dk", "backward dv"};
    const int c0[4] = {0, HD, HD + KD, W};
    for (int k = 0; k < 3; k++) {
        float *g = cols(res[0][2], rows, ld, c0[k], c0[k + 1]);
        float *r = cols(dqkv_c, rows, ld, c0[k], c0[k + 1]);
        compare(ctx, names[k], g, r, rows * (c0[k + 1] - c0[k]), c0[k + 1] - c0[k], TOL_F32, &bwd);
        free(g);
        free(r);
    }
    if (ldpad) {
        float *g = cols(res[0][2], rows, ld, W, ld), *r = cols(dqkv_c, rows, ld, W, ld);
        same_bits(ctx, "dqkv padding columns (must stay untouched)", g, r,
                  sizeof(float) * rows * ldpad);
        free(g);
        free(r);
    }
    if (np) {
        compare(ctx, "prefix dpk (accumulated)", res[0][3], dpk_c, npk, (size_t)ld_p, TOL_F32,
                &bwd);
        compare(ctx, "prefix dpv (accumulated)", res[0][4], dpv_c, npk, (size_t)ld_p, TOL_F32,
                &bwd);
    }
    const size_t bytes[5] = {no, nl, nq, npk, npk};
    const char *what[5] = {"out", "lse", "dqkv", "dpk", "dpv"};
    for (int k = 0; k < 5; k++) {
        same_bits(ctx, what[k], res[0][k], res[1][k], sizeof(float) * bytes[k]);
        free(res[0][k]);
        free(res[1][k]);
    }
    printf("%-100s fwd rel err %.2e  bwd rel err %.2e\n", ctx, fwd, bwd);

    cuda_free(qkv_d);
    cuda_free(dout_d);
    cuda_free(pk_d);
    cuda_free(pv_d);
    cuda_free(outc_d);
    cuda_free(lsec_d);
    cuda_free(qsel_d);
    cuda_free(qoff_d);
    cuda_free(seg_d);
    cuda_free(out_d);
    cuda_free(lse_d);
    cuda_free(dqkv_d);
    cuda_free(dpk_d);
    cuda_free(dpv_d);
    free(sentinel);
    free(qkv);
    free(dout);
    free(pk);
    free(pv);
    free(dpk0);
    free(dpv0);
    free(qsel);
    free(qsel_off);
    free(seg);
    free(out_c);
    free(lse_c);
    free(dqkv_c);
    free(dpk_c);
    free(dpv_c);
}

/* ------------------------------------------------------------------------------------------ */
/* ring blocks: the sequence cut into 2*cp zig-zag chunks; every rank's queries attend to every
 * rank's K/V block in ring order (merge by lse), then the backward accumulates dq and each
 * block's dk/dv. Device and CPU make the same calls; the merged forward is also checked against
 * the whole-sequence CPU attention (without MoH, whose selection is per rank). */

static void zigzag(int32_t *pos, int Tl, int cp, int rank) {
    const int c = Tl / 2;
    for (int t = 0; t < Tl; t++)
        pos[t] = t < c ? rank * c + t : (2 * cp - 1 - rank) * c + (t - c);
}

static void test_ring(const char *name, int cp, int chunk, int B, int H, int Hkv, int hd,
                      const struct s2_pattern *s2, int head0, int moh, int nseg) {
    const int Tl = 2 * chunk, T = Tl * cp, HD = H * hd, KD = Hkv * hd, ld = HD + 2 * KD;
    const size_t rl = (size_t)B * Tl, nq = rl * ld, no = rl * HD, nl = (size_t)B * H * Tl;
    const size_t nkv = rl * 2 * KD;
    char ctx[300];
    describe(ctx, sizeof(ctx), name, B, Tl, H, Hkv, hd, ld, s2, head0, moh, nseg, 0);
    snprintf(ctx + strlen(ctx), sizeof(ctx) - strlen(ctx), " ring cp=%d (T=%d)", cp, T);

    /* the global sequence and its whole-sequence attention */
    float *gqkv = fmalloc((size_t)B * T * ld), *gout = fmalloc((size_t)B * T * HD);
    float *glse = fmalloc((size_t)B * H * T);
    fill(gqkv, (size_t)B * T * ld, 1.5f);
    int32_t *gseg = nseg ? make_seg(B, T, nseg) : NULL;
    struct attn_shape gs = {.B = B,
                            .T = T,
                            .H = H,
                            .Hkv = Hkv,
                            .hd = hd,
                            .ld_qkv = ld,
                            .s2 = s2,
                            .head0 = head0,
                            .seg = gseg};
    attention_forward_cpu(gout, glse, gqkv, &gs);

    int32_t *pos = malloc(sizeof(int32_t) * (size_t)cp * Tl);
    float *lq = fmalloc((size_t)cp * nq);  /* per rank: local qkv rows */
    float *kv = fmalloc((size_t)cp * nkv); /* per rank: its K/V block (B, Tl, 2KD) */
    int32_t *lseg = nseg ? malloc(sizeof(int32_t) * (size_t)cp * rl) : NULL;
    for (int r = 0; r < cp; r++) {
        zigzag(pos + (size_t)r * Tl, Tl, cp, r);
        for (int b = 0; b < B; b++)
            for (int t = 0; t < Tl; t++) {
                const size_t g = (size_t)b * T + pos[(size_t)r * Tl + t], l = (size_t)b * Tl + t;
                memcpy(lq + r * nq + l * ld, gqkv + g * ld, sizeof(float) * ld);
                memcpy(kv + r * nkv + l * 2 * KD, gqkv + g * ld + HD, sizeof(float) * 2 * KD);
                if (nseg)
                    lseg[r * rl + l] = gseg[g];
            }
    }
    int32_t *pos_d = up(pos, sizeof(int32_t) * (size_t)cp * Tl);
    float *kv_d = up(kv, sizeof(float) * (size_t)cp * nkv);
    int32_t *lseg_d = nseg ? up(lseg, sizeof(int32_t) * (size_t)cp * rl) : NULL;
    double fwd = 0.0, bwd = 0.0, whole = 0.0;

    for (int r = 0; r < cp; r++) {
        char rctx[340];
        snprintf(rctx, sizeof(rctx), "%s rank %d", ctx, r);
        int32_t *qsel = NULL, *qsel_off = NULL;
        if (moh)
            make_qsel(&qsel, &qsel_off, B, H, Tl);
        float *q_d = up(lq + r * nq, sizeof(float) * nq);
        int32_t *qsel_d = moh ? up(qsel, sizeof(int32_t) * ((size_t)qsel_off[B * H] + 1)) : NULL;
        int32_t *qoff_d = moh ? up(qsel_off, sizeof(int32_t) * ((size_t)B * H + 1)) : NULL;
        float *dout = fmalloc(no), *dq0 = fmalloc(nq), *dkv0 = fmalloc((size_t)cp * nkv);
        fill(dout, no, 1.0f);
        fill(dq0, nq, 0.25f); /* the backward accumulates onto whatever is there */
        fill(dkv0, (size_t)cp * nkv, 0.25f);

        struct attn_block a = {.ldq = ld,
                               .ldkv = 2 * KD,
                               .B = B,
                               .Tq = Tl,
                               .Tk = Tl,
                               .H = H,
                               .Hkv = Hkv,
                               .hd = hd,
                               .s2 = s2,
                               .head0 = head0};
        /* CPU */
        float *out_c = fmalloc(no), *lse_c = fmalloc(nl), *dq_c = fmalloc(nq);
        float *dkv_c = fmalloc((size_t)cp * nkv);
        memcpy(dq_c, dq0, sizeof(float) * nq);
        memcpy(dkv_c, dkv0, sizeof(float) * (size_t)cp * nkv);
        for (int pass = 0; pass < 2; pass++)
            for (int step = 0; step < cp; step++) {
                const int o = ((r - step) % cp + cp) % cp;
                a.q = lq + r * nq;
                a.k = kv + o * nkv;
                a.v = a.k + KD;
                a.qpos = pos + (size_t)r * Tl;
                a.kpos = pos + (size_t)o * Tl;
                a.qsel = qsel;
                a.qsel_off = qsel_off;
                a.qseg = nseg ? lseg + r * rl : NULL;
                a.kseg = nseg ? lseg + o * rl : NULL;
                if (pass == 0)
                    attention_block_forward_cpu(out_c, lse_c, &a, step > 0);
                else
                    attention_block_backward_cpu(dq_c, dkv_c + o * nkv, dkv_c + o * nkv + KD, ld,
                                                 2 * KD, dout, out_c, lse_c, &a);
            }

        /* device, twice */
        float *dout_d = up(dout, sizeof(float) * no);
        float *outc_d = up(out_c, sizeof(float) * no), *lsec_d = up(lse_c, sizeof(float) * nl);
        float *out_d = cuda_alloc(sizeof(float) * no), *lse_d = cuda_alloc(sizeof(float) * nl);
        float *dq_d = cuda_alloc(sizeof(float) * nq);
        float *dkv_d = cuda_alloc(sizeof(float) * (size_t)cp * nkv);
        float *res[2][4];
        for (int run = 0; run < 2; run++) {
            cuda_upload(dq_d, dq0, sizeof(float) * nq);
            cuda_upload(dkv_d, dkv0, sizeof(float) * (size_t)cp * nkv);
            for (int pass = 0; pass < 2; pass++)
                for (int step = 0; step < cp; step++) {
                    const int o = ((r - step) % cp + cp) % cp;
                    a.q = q_d;
                    a.k = kv_d + o * nkv;
                    a.v = a.k + KD;
                    a.qpos = pos_d + (size_t)r * Tl;
                    a.kpos = pos_d + (size_t)o * Tl;
                    a.qsel = qsel_d;
                    a.qsel_off = qoff_d;
                    a.qseg = nseg ? lseg_d + r * rl : NULL;
                    a.kseg = nseg ? lseg_d + o * rl : NULL;
                    if (pass == 0)
                        attention_block_forward_cuda(out_d, lse_d, &a, step > 0);
                    else
                        attention_block_backward_cuda(dq_d, dkv_d + o * nkv, dkv_d + o * nkv + KD,
                                                      ld, 2 * KD, dout_d, outc_d, lsec_d, &a);
                }
            res[run][0] = down(out_d, no);
            res[run][1] = down(lse_d, nl);
            res[run][2] = down(dq_d, nq);
            res[run][3] = down(dkv_d, (size_t)cp * nkv);
        }
        compare(rctx, "ring forward out", res[0][0], out_c, no, (size_t)HD, TOL_F32, &fwd);
        compare(rctx, "ring forward lse", res[0][1], lse_c, nl, (size_t)Tl, TOL_F32, &fwd);
        compare(rctx, "ring backward dq (accumulated)", res[0][2], dq_c, nq, (size_t)ld, TOL_F32,
                &bwd);
        compare(rctx, "ring backward dk|dv of every block (accumulated)", res[0][3], dkv_c,
                (size_t)cp * nkv, (size_t)2 * KD, TOL_F32, &bwd);
        if (!moh) {
            /* the merged result is the whole-sequence attention of these rows */
            float *wo = fmalloc(no), *wl = fmalloc(nl);
            for (int b = 0; b < B; b++)
                for (int t = 0; t < Tl; t++) {
                    const int p = pos[(size_t)r * Tl + t];
                    memcpy(wo + ((size_t)b * Tl + t) * HD, gout + ((size_t)b * T + p) * HD,
                           sizeof(float) * HD);
                    for (int h = 0; h < H; h++)
                        wl[((size_t)b * H + h) * Tl + t] = glse[((size_t)b * H + h) * T + p];
                }
            compare(rctx, "ring out vs whole-sequence cpu", res[0][0], wo, no, (size_t)HD, TOL_F32,
                    &whole);
            compare(rctx, "ring lse vs whole-sequence cpu", res[0][1], wl, nl, (size_t)Tl, TOL_F32,
                    &whole);
            free(wo);
            free(wl);
        }
        const size_t n4[4] = {no, nl, nq, (size_t)cp * nkv};
        for (int k = 0; k < 4; k++) {
            same_bits(rctx, "ring result", res[0][k], res[1][k], sizeof(float) * n4[k]);
            free(res[0][k]);
            free(res[1][k]);
        }
        cuda_free(q_d);
        cuda_free(qsel_d);
        cuda_free(qoff_d);
        cuda_free(dout_d);
        cuda_free(outc_d);
        cuda_free(lsec_d);
        cuda_free(out_d);
        cuda_free(lse_d);
        cuda_free(dq_d);
        cuda_free(dkv_d);
        free(qsel);
        free(qsel_off);
        free(dout);
        free(dq0);
        free(dkv0);
        free(out_c);
        free(lse_c);
        free(dq_c);
        free(dkv_c);
    }
    printf("%-100s fwd rel err %.2e  bwd rel err %.2e  vs whole %.2e\n", ctx, fwd, bwd, whole);
    cuda_free(pos_d);
    cuda_free(kv_d);
    cuda_free(lseg_d);
    free(gqkv);
    free(gout);
    free(glse);
    free(gseg);
    free(pos);
    free(lq);
    free(kv);
    free(lseg);
}

/* ------------------------------------------------------------------------------------------ */
/* decode */

/* kvo: the call reads kc + kvo, vc + kvo (MoH and S2 decoding call per head with H = Hkv = 1) */
static void test_decode(const char *name, int n_ctx, int H, int Hkv, int hd, int ld_kv, int kvo,
                        float alpha) {
    char ctx[200];
    snprintf(ctx, sizeof(ctx), "[decode %s] n_ctx=%d H=%d Hkv=%d hd=%d ld_kv=%d offset=%d alpha=%g",
             name, n_ctx, H, Hkv, hd, ld_kv, kvo, alpha);
    const size_t nkv = (size_t)(n_ctx ? n_ctx : 1) * ld_kv, nq = (size_t)H * hd;
    float *q = fmalloc(nq), *kc = fmalloc(nkv), *vc = fmalloc(nkv), *scr = fmalloc(n_ctx + 1);
    uint8_t *user = malloc((size_t)n_ctx + 1);
    fill(q, nq, 2.0f);
    fill(kc, nkv, 1.0f);
    fill(vc, nkv, 1.0f);
    for (int j = 0; j < n_ctx; j++)
        user[j] = (uint8_t)(rnd_u32() % 3 == 0);
    float *out_c = fmalloc(nq);
    if (alpha == 1.0f)
        attention_decode_cpu(out_c, q, kc + kvo, vc + kvo, n_ctx, ld_kv, H, Hkv, hd, scr);
    else
        attention_decode_steer_cpu(out_c, q, kc + kvo, vc + kvo, n_ctx, ld_kv, H, Hkv, hd, scr,
                                   user, alpha);
    float *q_d = up(q, sizeof(float) * nq), *kc_d = up(kc, sizeof(float) * nkv);
    float *vc_d = up(vc, sizeof(float) * nkv), *out_d = cuda_alloc(sizeof(float) * nq);
    uint8_t *user_d = up(user, (size_t)n_ctx + 1);
    float *res[2];
    for (int run = 0; run < 2; run++) {
        if (alpha == 1.0f)
            attention_decode_cuda(out_d, q_d, kc_d + kvo, vc_d + kvo, n_ctx, ld_kv, H, Hkv, hd,
                                  NULL);
        else
            attention_decode_steer_cuda(out_d, q_d, kc_d + kvo, vc_d + kvo, n_ctx, ld_kv, H, Hkv,
                                        hd, NULL, user_d, alpha);
        res[run] = down(out_d, nq);
    }
    double rel = 0.0;
    compare(ctx, "decode out", res[0], out_c, nq, (size_t)hd, TOL_F32, &rel);
    same_bits(ctx, "decode out", res[0], res[1], sizeof(float) * nq);
    printf("%-100s rel err %.2e\n", ctx, rel);
    free(res[0]);
    free(res[1]);
    cuda_free(q_d);
    cuda_free(kc_d);
    cuda_free(vc_d);
    cuda_free(out_d);
    cuda_free(user_d);
    free(q);
    free(kc);
    free(vc);
    free(scr);
    free(user);
    free(out_c);
}

/* ------------------------------------------------------------------------------------------ */
/* cuDNN (bf16) */

static uint16_t f2bf(float f) { /* round to nearest even, as __float2bfloat16_rn */
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

static float bf2f(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void test_conversions(void) {
    const size_t n = 4099;
    float *x = fmalloc(n), *back = fmalloc(n);
    uint16_t *h = malloc(sizeof(uint16_t) * n), *g = malloc(sizeof(uint16_t) * n);
    fill(x, n, 3.0f);
    x[0] = 0.0f;
    x[1] = -0.0f;
    x[2] = 1e-30f;
    x[3] = 3.0e38f;
    for (size_t i = 0; i < n; i++)
        h[i] = f2bf(x[i]);
    float *x_d = up(x, sizeof(float) * n), *y_d = cuda_alloc(sizeof(float) * n);
    uint16_t *b_d = cuda_alloc(sizeof(uint16_t) * n);
    attention_f32_to_bf16_cuda(b_d, x_d, n);
    cuda_download(g, b_d, sizeof(uint16_t) * n);
    same_bits("[bf16]", "fp32 -> bf16 (round to nearest even)", g, h, sizeof(uint16_t) * n);
    attention_bf16_to_f32_cuda(y_d, b_d, n);
    cuda_download(back, y_d, sizeof(float) * n);
    size_t bad = 0;
    while (bad < n && back[bad] == bf2f(h[bad]))
        bad++;
    CHECK_MSG(bad == n, "[bf16] bf16 -> fp32 differs at %zu: %g vs %g", bad,
              bad < n ? back[bad] : 0.0, bad < n ? bf2f(h[bad]) : 0.0);
    cuda_free(x_d);
    cuda_free(y_d);
    cuda_free(b_d);
    free(x);
    free(back);
    free(h);
    free(g);
}

static void test_cudnn(const char *name, int B, int T, int H, int Hkv, int hd) {
    const int HD = H * hd, KD = Hkv * hd, ld = HD + 2 * KD;
    const size_t rows = (size_t)B * T, nq = rows * ld, no = rows * HD, nl = (size_t)B * H * T;
    char ctx[200];
    snprintf(ctx, sizeof(ctx), "[cudnn %s] B=%d T=%d H=%d Hkv=%d hd=%d ld=%d (bf16)", name, B, T, H,
             Hkv, hd, ld);
    struct attn_shape s = {.B = B, .T = T, .H = H, .Hkv = Hkv, .hd = hd, .ld_qkv = ld};
    const int avail = attention_cudnn_available(&s);
    CHECK_MSG(avail, "%s: cuDNN graph could not be built (the attention_cudnn line above says why)",
              ctx);
    if (!avail)
        return;
    CHECK_MSG(attention_cudnn_deterministic(&s),
              "%s: only a nondeterministic cuDNN backward plan was found", ctx);

    /* inputs rounded to bf16 on the host, so the CPU sees exactly what cuDNN sees */
    float *qkv = fmalloc(nq), *dout = fmalloc(no);
    fill(qkv, nq, 1.5f);
    fill(dout, no, 1.0f);
    uint16_t *qkv_h = malloc(sizeof(uint16_t) * nq), *dout_h = malloc(sizeof(uint16_t) * no);
    for (size_t i = 0; i < nq; i++) {
        qkv_h[i] = f2bf(qkv[i]);
        qkv[i] = bf2f(qkv_h[i]);
    }
    for (size_t i = 0; i < no; i++) {
        dout_h[i] = f2bf(dout[i]);
        dout[i] = bf2f(dout_h[i]);
    }
    float *out_c = fmalloc(no), *lse_c = fmalloc(nl), *dqkv_c = fmalloc(nq);
    attention_forward_cpu(out_c, lse_c, qkv, &s);
    attention_backward_cpu(dqkv_c, dout, out_c, lse_c, qkv, &s);

    uint16_t *qkv_d = up(qkv_h, sizeof(uint16_t) * nq), *dout_d = up(dout_h, sizeof(uint16_t) * no);
    uint16_t *out_d = cuda_alloc(sizeof(uint16_t) * no),
             *dqkv_d = cuda_alloc(sizeof(uint16_t) * nq);
    float *lse_d = cuda_alloc(sizeof(float) * nl), *f_d = cuda_alloc(sizeof(float) * nq);
    float *res[2][3];
    for (int run = 0; run < 2; run++) {
        attention_forward_cudnn(out_d, lse_d, qkv_d, &s);
        attention_backward_cudnn(dqkv_d, dout_d, out_d, lse_d, qkv_d, &s);
        attention_bf16_to_f32_cuda(f_d, out_d, no);
        res[run][0] = down(f_d, no);
        res[run][1] = down(lse_d, nl);
        attention_bf16_to_f32_cuda(f_d, dqkv_d, nq);
        res[run][2] = down(f_d, nq);
    }
    double fwd = 0.0, bwd = 0.0;
    compare(ctx, "forward out", res[0][0], out_c, no, (size_t)HD, TOL_BF16, &fwd);
    compare(ctx, "forward lse (natural log)", res[0][1], lse_c, nl, (size_t)T, TOL_BF16, &fwd);
    const char *names[3] = {"backward dq", "backward dk", "backward dv"};
    const int c0[4] = {0, HD, HD + KD, ld};
    for (int k = 0; k < 3; k++) {
        float *g = cols(res[0][2], rows, ld, c0[k], c0[k + 1]);
        float *r = cols(dqkv_c, rows, ld, c0[k], c0[k + 1]);
        compare(ctx, names[k], g, r, rows * (c0[k + 1] - c0[k]), c0[k + 1] - c0[k], TOL_BF16, &bwd);
        free(g);
        free(r);
    }
    const size_t n3[3] = {no, nl, nq};
    for (int k = 0; k < 3; k++) {
        same_bits(ctx, "cudnn result", res[0][k], res[1][k], sizeof(float) * n3[k]);
        free(res[0][k]);
        free(res[1][k]);
    }
    printf("%-100s fwd rel err %.2e  bwd rel err %.2e\n", ctx, fwd, bwd);
    cuda_free(qkv_d);
    cuda_free(dout_d);
    cuda_free(out_d);
    cuda_free(dqkv_d);
    cuda_free(lse_d);
    cuda_free(f_d);
    free(qkv);
    free(dout);
    free(qkv_h);
    free(dout_h);
    free(out_c);
    free(lse_c);
    free(dqkv_c);
}

/* the cuDNN path refuses what it cannot express, without dying */
static void test_cudnn_refusals(void) {
    struct s2_pattern p;
    s2_init(&p, 16, 1, 4, 0, 0, 4, 4);
    int32_t dummy = 0;
    struct attn_shape s = {.B = 1, .T = 64, .H = 4, .Hkv = 4, .hd = 64, .ld_qkv = 12 * 64};
    struct attn_shape t = s;
    t.s2 = &p;
    CHECK(!attention_cudnn_available(&t));
    t = s;
    t.seg = &dummy;
    CHECK(!attention_cudnn_available(&t));
    t = s;
    t.np = 2;
    CHECK(!attention_cudnn_available(&t));
    t = s;
    t.hd = 60;
    t.ld_qkv = 12 * 60;
    CHECK(!attention_cudnn_available(&t));
}
#endif /* HW_CUDA */

#ifdef HW_CUDA
/* train.precision: bf16 on both backends (q, k, v, dO, P and dS rounded to bf16): the GPU's
 * forward and backward are within tol of the CPU's bf16 kernels, and closer to them than to the
 * CPU's fp32 ones (so the rounding happened, and is the same rounding). */
static void test_bf16(const char *name, int B, int T, int H, int Hkv, int hd) {
    const int HD = H * hd, KD = Hkv * hd, W = HD + 2 * KD;
    const size_t rows = (size_t)B * T, nq = rows * W, no = rows * HD, nl = (size_t)B * H * T;
    char ctx[300];
    snprintf(ctx, sizeof(ctx), "bf16 %s B=%d T=%d H=%d Hkv=%d hd=%d", name, B, T, H, Hkv, hd);
    float *qkv = fmalloc(nq), *dout = fmalloc(no);
    fill(qkv, nq, 1.5f);
    fill(dout, no, 1.0f);
    struct attn_shape s = {.B = B, .T = T, .H = H, .Hkv = Hkv, .hd = hd, .ld_qkv = W};
    const struct ops *cpu = ops_for(BACKEND_CPU), *gpu = ops_for(BACKEND_CUDA);
    float *ref[2][3]; /* [fp32, bf16][out, lse, dqkv] on the CPU */
    for (int m = 0; m < 2; m++) {
        cpu->set_precision(m ? HW_BF16 : HW_F32);
        ref[m][0] = fmalloc(no), ref[m][1] = fmalloc(nl), ref[m][2] = fmalloc(nq);
        memset(ref[m][2], 0, sizeof(float) * nq);
        attention_forward_cpu(ref[m][0], ref[m][1], qkv, &s);
        attention_backward_cpu(ref[m][2], dout, ref[m][0], ref[m][1], qkv, &s);
    }
    cpu->set_precision(HW_F32);
    gpu->set_precision(HW_BF16);
    float *qkv_d = up(qkv, sizeof(float) * nq), *dout_d = up(dout, sizeof(float) * no);
    float *out_d = cuda_alloc(sizeof(float) * no), *lse_d = cuda_alloc(sizeof(float) * nl);
    float *dqkv_d = cuda_alloc(sizeof(float) * nq);
    float *outc_d = up(ref[1][0], sizeof(float) * no), *lsec_d = up(ref[1][1], sizeof(float) * nl);
    attention_forward_cuda(out_d, lse_d, qkv_d, &s);
    attention_backward_cuda(dqkv_d, dout_d, outc_d, lsec_d, qkv_d, &s);
    gpu->set_precision(HW_F32);
    float *got[3] = {down(out_d, no), down(lse_d, nl), down(dqkv_d, nq)};
    const size_t n[3] = {no, nl, nq}, width[3] = {(size_t)HD, (size_t)T, (size_t)W};
    const char *what[3] = {"out", "lse", "dqkv"};
    for (int k = 0; k < 3; k++) {
        double to_bf16 = 0.0, to_f32 = 0.0;
        compare(ctx, what[k], got[k], ref[1][k], n[k], width[k], TOL_BF16_CPU, &to_bf16);
        for (size_t i = 0; i < n[k]; i++) { /* distance to fp32, measured without a check */
            const double e = fabs((double)got[k][i] - ref[0][k][i]);
            to_f32 = e > to_f32 ? e : to_f32;
        }
        double mx = 0.0;
        for (size_t i = 0; i < n[k]; i++)
            mx = fabs(ref[0][k][i]) > mx ? fabs(ref[0][k][i]) : mx;
        to_f32 /= mx > 0.0 ? mx : 1.0;
        if (k == 1) /* lse: the softmax statistics stay fp32 from fp32 logits of rounded q, k */
            continue;
        CHECK_MSG(to_bf16 < to_f32,
                  "%s: %s: GPU bf16 is %.3g from the CPU's bf16 but %.3g from "
                  "its fp32 (not rounded like the CPU?)",
                  ctx, what[k], to_bf16, to_f32);
        printf("  %s %s: %.2e from CPU bf16, %.2e from CPU fp32\n", ctx, what[k], to_bf16, to_f32);
    }
    for (int k = 0; k < 3; k++)
        free(got[k]), free(ref[0][k]), free(ref[1][k]);
    cuda_free(qkv_d), cuda_free(dout_d), cuda_free(out_d), cuda_free(lse_d), cuda_free(dqkv_d);
    cuda_free(outc_d), cuda_free(lsec_d);
    free(qkv), free(dout);
}
#endif

int main(void) {
#ifndef HW_CUDA
    printf("SKIP test_attention_cuda: built without CUDA\n");
    return 77;
#else
    if (cuda_device_count() == 0) {
        printf("SKIP test_attention_cuda: no CUDA device found\n");
        return 77;
    }
    struct s2_pattern s2a, s2b, s2c, s2d;
    s2_init(&s2a, 16, 1, 4, 0, 0, 6, 2);  /* H=6, Hkv=2, global = local */
    s2_init(&s2b, 16, 2, 3, 1, 1, 12, 4); /* local heads 6..11 of 12: kv 2, 3 (3 is dense) */
    s2_init(&s2c, 32, 1, 2, 0, 0, 4, 4);  /* blocks of 32: a 64-tile holds two */
    s2_init(&s2d, 128, 1, 2, 0, 0, 2, 1); /* blocks longer than a tile */

    /* whole sequence: name, B, T, H, Hkv, hd, ld padding, s2, head0, moh, segments, prefix */
    test_whole("tiny", 1, 1, 1, 1, 16, 0, NULL, 0, 0, 0, 0);
    test_whole("T7", 3, 7, 2, 2, 32, 0, NULL, 0, 0, 0, 0);
    test_whole("T63 gqa", 1, 63, 6, 2, 64, 0, NULL, 0, 0, 0, 0);
    test_whole("T64 exact tile", 2, 64, 2, 1, 64, 0, NULL, 0, 0, 0, 0);
    test_whole("T65 mqa", 3, 65, 8, 1, 128, 0, NULL, 0, 0, 0, 0);
    test_whole("T128 exact tiles", 1, 128, 8, 2, 128, 0, NULL, 0, 0, 0, 0);
    test_whole("T130 padded", 2, 130, 4, 4, 64, 5, NULL, 0, 0, 0, 0);
    test_whole("T257 gqa", 1, 257, 6, 2, 32, 0, NULL, 0, 0, 0, 0);
    test_whole("hd48", 1, 70, 2, 1, 48, 3, NULL, 0, 0, 0, 0);
    test_whole("s2 local1 vert4", 2, 130, 6, 2, 32, 0, &s2a, 0, 0, 0, 0);
    test_whole("s2 head0=6 dense", 1, 257, 6, 2, 32, 0, &s2b, 6, 0, 0, 0);
    test_whole("s2 block32", 1, 100, 4, 4, 64, 0, &s2c, 0, 0, 0, 0);
    test_whole("s2 block128", 1, 300, 2, 1, 16, 0, &s2d, 0, 0, 0, 0);
    test_whole("moh", 3, 65, 6, 2, 32, 0, NULL, 0, 1, 0, 0);
    test_whole("moh hd64", 2, 130, 4, 2, 64, 0, NULL, 0, 1, 0, 0);
    test_whole("segments", 2, 130, 4, 2, 32, 0, NULL, 0, 0, 4, 0);
    test_whole("prefix", 2, 65, 4, 2, 32, 0, NULL, 0, 0, 0, 1);
    test_whole("prefix gqa", 3, 63, 6, 2, 64, 2, NULL, 0, 0, 0, 4);
    test_whole("s2+moh+seg", 2, 130, 6, 2, 32, 0, &s2a, 0, 1, 3, 0);
    test_whole("moh+prefix", 2, 70, 4, 2, 16, 0, NULL, 0, 1, 0, 3);
    test_whole("s2+seg+prefix", 1, 257, 6, 2, 32, 0, &s2b, 6, 0, 5, 2);

    /* ring: name, cp, chunk, B, H, Hkv, hd, s2, head0, moh, segments */
    test_ring("ring", 3, 11, 2, 4, 2, 32, NULL, 0, 0, 0);
    test_ring("ring seg", 3, 11, 1, 4, 2, 64, NULL, 0, 0, 3);
    test_ring("ring s2", 2, 32, 2, 6, 2, 32, &s2a, 0, 0, 0);
    test_ring("ring s2+moh", 2, 48, 1, 6, 2, 16, &s2b, 6, 1, 0);

    /* decode: name, n_ctx, H, Hkv, hd, ld_kv, offset, alpha */
    test_decode("one key", 1, 6, 2, 64, 2 * 64 + 4, 0, 1.0f);
    test_decode("gqa", 37, 6, 2, 64, 2 * 64 + 4, 0, 1.0f);
    test_decode("long", 300, 4, 4, 128, 4 * 128, 0, 1.0f);
    test_decode("per head", 130, 1, 1, 32, 3 * 32, 64, 1.0f);
    test_decode("empty cache", 0, 2, 1, 16, 16, 0, 1.0f);
    test_decode("steer", 300, 6, 2, 64, 2 * 64 + 4, 0, 0.3f);
    test_decode("steer per head", 77, 1, 1, 32, 2 * 32, 32, 0.05f);

    /* cuDNN: name, B, T, H, Hkv, hd */
    test_conversions();
    test_cudnn_refusals();
    test_cudnn("mha", 2, 130, 4, 4, 64);
    test_cudnn("gqa hd128", 1, 257, 8, 2, 128);
    test_cudnn("odd", 3, 63, 6, 2, 32);
    test_cudnn("mqa T1024", 2, 1024, 4, 1, 64);

    /* train.precision: bf16 */
    test_bf16("mha", 2, 130, 4, 4, 64);
    test_bf16("gqa", 1, 257, 6, 2, 32);
    test_bf16("long", 1, 1024, 2, 1, 64);

    return check_report("test_attention_cuda");
#endif
}
