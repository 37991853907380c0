/* tests/test_safetensors.c -- ckpt/safetensors.h: the half-precision conversions against naive
 * references (every F16 and BF16 value round-trips; float -> half rounds to the nearest value,
 * ties to even, found by search over all finite halves), a write/read round trip in each dtype
 * (8-byte aligned data region, header fields, values), and the reader's refusals of files whose
 * header lies. The CLI-level checks against transformers are tests/cli_hf_weights.sh. */
#define _POSIX_C_SOURCE 200809L

#include "../ckpt/safetensors.h"
#include "../core/check.h"
#include "check.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t rng_ = 0x9E3779B97F4A7C15ULL;
static uint32_t rnd32(void) {
    rng_ ^= rng_ << 13;
    rng_ ^= rng_ >> 7;
    rng_ ^= rng_ << 17;
    return (uint32_t)(rng_ >> 16);
}

static float bits_f(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

/* the finite non-negative values of a half format in increasing order (bits 0 .. max) */
static int n_half(int bf16) {
    return bf16 ? 0x7F80 : 0x7C00;
}
static double half_value(int bf16, uint16_t h) {
    return bf16 ? (double)st_bf16_to_f32(h) : (double)st_f16_to_f32(h);
}

/* nearest half to x (finite x >= 0), ties to even; the largest finite value rounds to infinity
 * once x reaches max + half an ulp */
static uint16_t naive_round(int bf16, double x) {
    int lo = 0, hi = n_half(bf16) - 1;
    if (x >= half_value(bf16, (uint16_t)hi)) {
        double ulp = half_value(bf16, (uint16_t)hi) - half_value(bf16, (uint16_t)(hi - 1));
        return x >= half_value(bf16, (uint16_t)hi) + ulp / 2 ? (uint16_t)n_half(bf16)
                                                             : (uint16_t)hi;
    }
    while (hi - lo > 1) { /* invariant: v[lo] <= x < v[hi] */
        int mid = (lo + hi) / 2;
        if (half_value(bf16, (uint16_t)mid) <= x)
            lo = mid;
        else
            hi = mid;
    }
    double dl = x - half_value(bf16, (uint16_t)lo), dh = half_value(bf16, (uint16_t)hi) - x;
    if (dl < dh)
        return (uint16_t)lo;
    if (dh < dl)
        return (uint16_t)hi;
    return (uint16_t)((lo & 1) ? hi : lo);
}

static void test_conversions(void) {
    int bad16 = 0, badbf = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = st_f16_to_f32((uint16_t)h), b = st_bf16_to_f32((uint16_t)h);
        if (isnan(f) ? !isnan(st_f16_to_f32(st_f32_to_f16(f))) : st_f32_to_f16(f) != h)
            bad16++;
        if (isnan(b) ? !isnan(st_bf16_to_f32(st_f32_to_bf16(b))) : st_f32_to_bf16(b) != h)
            badbf++;
    }
    CHECK_MSG(bad16 == 0, "%d F16 values do not round-trip", bad16);
    CHECK_MSG(badbf == 0, "%d BF16 values do not round-trip", badbf);
    CHECK(st_f16_to_f32(0x3C00) == 1.0f && st_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
    CHECK(st_f16_to_f32(0x7BFF) == 65504.0f && isinf(st_f16_to_f32(0x7C00)));
    int wrong16 = 0, wrongbf = 0;
    for (int i = 0; i < 200000; i++) {
        /* magnitudes spread over the half range, the subnormals and past the overflow */
        int e = (int)(rnd32() % 48) - 30;
        float x = ldexpf(1.0f + (float)(rnd32() & 0xFFFFFF) / 16777216.0f, e);
        if (i % 7 == 0) /* exact midpoints between neighbours */
            x = (float)((half_value(0, (uint16_t)(i % 0x7BFF)) +
                         half_value(0, (uint16_t)(i % 0x7BFF + 1))) /
                        2);
        uint16_t s = (rnd32() & 1) ? 0x8000 : 0;
        float sx = s ? -x : x;
        if (st_f32_to_f16(sx) != (uint16_t)(s | naive_round(0, x)))
            wrong16++;
        float xb = bits_f(rnd32() & 0x7F7FFFFF); /* any finite float for BF16 */
        if (st_f32_to_bf16(s ? -xb : xb) != (uint16_t)(s | naive_round(1, xb)))
            wrongbf++;
    }
    CHECK_MSG(wrong16 == 0, "%d floats rounded to the wrong F16", wrong16);
    CHECK_MSG(wrongbf == 0, "%d floats rounded to the wrong BF16", wrongbf);
    CHECK(isnan(st_bf16_to_f32(st_f32_to_bf16(NAN))) && isnan(st_f16_to_f32(st_f32_to_f16(NAN))));
}

static void test_round_trip(const char *dir) {
    float a[6], b[7], c[1] = {3.5f};
    for (int i = 0; i < 6; i++)
        a[i] = 0.1f * (float)i - 0.25f;
    for (int i = 0; i < 7; i++)
        b[i] = (float)i * 1000.3f;
    struct st_out t[3] = {{"w.a", 2, {2, 3}, a}, {"w.b", 1, {7}, b}, {"s", 0, {0}, c}};
    for (int dt = 0; dt < 3; dt++) {
        char path[512], err[HW_ERR_LEN] = "";
        snprintf(path, sizeof(path), "%s/t%d.safetensors", dir, dt);
        CHECK_MSG(st_write(path, t, 3, (enum st_dtype)dt, err) == 0, "%s", err);
        struct st_file f;
        CHECK_MSG(st_open(&f, path, err) == 0, "%s", err);
        CHECK(f.n == 3);
        const unsigned char *m = f.map;
        uint64_t hl = 0;
        for (int k = 7; k >= 0; k--)
            hl = hl << 8 | m[k];
        CHECK((8 + hl) % 8 == 0);
        const struct st_tensor *ta = st_find(&f, "w.a"), *tb = st_find(&f, "w.b"),
                               *tc = st_find(&f, "s");
        CHECK(ta && tb && tc && ta->ndim == 2 && ta->shape[0] == 2 && ta->shape[1] == 3);
        CHECK(tb && tb->numel == 7 && tc && tc->ndim == 0 && tc->numel == 1);
        CHECK(ta && ta->dtype == (enum st_dtype)dt);
        float got[7];
        if (ta && tb) {
            st_to_f32(ta, got);
            for (int i = 0; i < 6; i++) {
                float want = dt == ST_F32   ? a[i]
                             : dt == ST_F16 ? st_f16_to_f32(st_f32_to_f16(a[i]))
                                            : st_bf16_to_f32(st_f32_to_bf16(a[i]));
                CHECK(got[i] == want);
            }
            st_to_f32(tb, got);
            CHECK(dt != ST_F32 || memcmp(got, b, sizeof(b)) == 0);
        }
        st_close(&f);
    }
}

/* a file with the given header JSON and data bytes */
static void write_raw(const char *path, const char *json, size_t data_len, uint64_t claim) {
    FILE *f = fopen(path, "wb");
    uint64_t n = claim ? claim : strlen(json);
    unsigned char len8[8];
    for (int k = 0; k < 8; k++)
        len8[k] = (unsigned char)(n >> (8 * k));
    fwrite(len8, 1, 8, f);
    fwrite(json, 1, strlen(json), f);
    for (size_t i = 0; i < data_len; i++)
        fputc(0, f);
    fclose(f);
}

static void test_refusals(const char *dir) {
    static const struct {
        const char *json;
        size_t data;
        uint64_t claim;
        const char *want;
    } cases[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, 0, "outside"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
         12, 0, "overlap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, 0, "need 12"},
        {"{\"a\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, 0, "F64"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, 0, "shape[0]"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, 0, "outside"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, 0, "data_offsets"},
        {"{\"a\":", 0, 0, "header"},
        {"[1,2]", 0, 0, "not a JSON object"},
        {"{}", 0, 1000, "runs past the file"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char path[512], err[HW_ERR_LEN] = "";
        snprintf(path, sizeof(path), "%s/bad%zu.safetensors", dir, i);
        write_raw(path, cases[i].json, cases[i].data, cases[i].claim);
        struct st_file f;
        int rc = st_open(&f, path, err);
        CHECK_MSG(rc != 0, "case %zu accepted", i);
        CHECK_MSG(strstr(err, path) && strstr(err, cases[i].want), "case %zu: %s", i, err);
        st_close(&f);
        unlink(path);
    }
    char path[512], err[HW_ERR_LEN] = "";
    snprintf(path, sizeof(path), "%s/short.safetensors", dir);
    FILE *f = fopen(path, "wb");
    fputs("abc", f);
    fclose(f);
    struct st_file sf;
    CHECK(st_open(&sf, path, err) != 0 && strstr(err, "shorter"));
    st_close(&sf);
    unlink(path);
}

int main(void) {
    char dir[] = "/tmp/hw_st_XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    test_conversions();
    test_round_trip(dir);
    test_refusals(dir);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return check_report("test_safetensors");
}
