/* tests/test_moh.c -- Mixture-of-Head attention and S2 block sparsity inside the model:
 * the router maths against ALGORITHMS.md §1.7 (T3 routed gates, T4 balance loss, T6 qnorm
 * ties), the reductions to MHA (T1 zero routers with k = E, k = 0 with W_s = 0, T2 the paper's
 * form = MHA / H), exact zero task gradient on unselected routed logits (T5), and the full
 * model gradient of MoH / S2 / mixed layers (code form, paper form, qnorm STE, all-shared) against
 * central finite differences of the double-precision reference (tests/ref.h), which computes
 * every head densely and masks S2 explicitly - so the skipped work is checked too. */
#include "../config/config.h"
#include "../core/rng.h"
#include "../model/gpt.h"
#include "../ops/moh.h"
#include "../ops/ops.h"
#include "../ops/xent.h"
#include "check.h"
#include "ref.h"

#include <stdio.h>

static void test_t3_t4(void) {
    struct moh_spec s;
    moh_spec_init(&s, 4, 0, 2, 0, 0);
    float f[256];
    int32_t iv[16];
    struct moh_state st;
    moh_state_carve(&st, &s, 1, f, iv);
    const float z[4] = {2, 1, 0, -1};
    memcpy(st.zr, z, sizeof(z));
    moh_router_forward_cpu(&s, 1, &st);
    const double p[4] = {0.6439, 0.2369, 0.0871, 0.0321}, g[4] = {1.4621, 0.5379, 0, 0};
    for (int i = 0; i < 4; i++) {
        CHECK_CLOSE(st.p[i], p[i], 2e-4);
        CHECK_CLOSE(st.G[i], g[i], 2e-4);
    }
    CHECK(st.sel[0] == 0 && st.sel[1] == 1);
    /* T4: two tokens with p = [.4 .3 .2 .1] both select {0, 1}: sum P f = 0.7, l_aux = 2.8 */
    struct moh_state s4;
    float f4[256];
    int32_t i4[16];
    moh_state_carve(&s4, &s, 2, f4, i4);
    const double pp[4] = {.4, .3, .2, .1};
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < 4; i++)
            s4.zr[t * 4 + i] = (float)log(pp[i]);
    moh_router_forward_cpu(&s, 2, &s4);
    double ps[4] = {0}, fs[4] = {0};
    moh_balance_sums_cpu(&s, 2, &s4, ps, fs);
    CHECK_CLOSE(moh_balance_loss(&s, ps, fs, 2), 2.8, 1e-6);
    CHECK(fs[0] == 2 && fs[1] == 2 && fs[2] == 0 && fs[3] == 0);
    /* balanced mask with uniform p gives l_aux = k */
    double pu[4] = {.5, .5, .5, .5}, fu[4] = {1, 1, 1, 1}; /* P = 1/E, f = k/E */
    CHECK_CLOSE(moh_balance_loss(&s, pu, fu, 2), 2.0, 1e-12);
    /* T5 (router level): the task gradient of unselected routed logits is exactly 0 */
    float dG[4] = {0.3f, -0.7f, 0.9f, 1.1f}, dzr[4];
    moh_router_backward_cpu(&s, 1, &st, dG, 0.0f, fs, 2, dzr, NULL, NULL);
    CHECK(dzr[2] == 0.0f && dzr[3] == 0.0f && dzr[0] != 0.0f);
    /* ... but the balance loss reaches them */
    moh_router_backward_cpu(&s, 1, &st, dG, 0.01f, fs, 2, dzr, NULL, NULL);
    CHECK(dzr[2] != 0.0f && dzr[3] != 0.0f);
    /* qnorm STE: the selected heads' gate gradients reach the soft scores as if the gates were
     * softmax(z) itself; unselected heads get nothing but the balance term */
    struct moh_spec qs;
    moh_spec_init(&qs, 4, 0, 2, 0, 1);
    struct moh_state sqs;
    float fqs[256], dq[4];
    int32_t iqs[16];
    moh_state_carve(&sqs, &qs, 1, fqs, iqs);
    const float raw[4] = {3, 2, 1, 0.5f};
    memcpy(sqs.qraw, raw, sizeof(raw));
    moh_router_forward_cpu(&qs, 1, &sqs);
    CHECK(sqs.G[0] == 1 && sqs.G[1] == 1 && sqs.G[2] == 0 && sqs.G[3] == 0);
    moh_router_backward_cpu(&qs, 1, &sqs, dG, 0.0f, fs, 2, dq, NULL, NULL);
    {
        /* expected: dz = J_softmax(p) [dG0, dG1, 0, 0], then through z = q / std(q) */
        double dz[4], dot = 0, zz[4], mean = 0, var = 0, dzz = 0;
        for (int i = 0; i < 4; i++)
            dot += (i < 2 ? dG[i] : 0) * sqs.p[i];
        for (int i = 0; i < 4; i++)
            dz[i] = sqs.p[i] * ((i < 2 ? dG[i] : 0) - dot);
        for (int i = 0; i < 4; i++)
            mean += raw[i] / 4.0;
        for (int i = 0; i < 4; i++)
            var += (raw[i] - mean) * (raw[i] - mean) / 3.0;
        for (int i = 0; i < 4; i++) {
            zz[i] = raw[i] / sqrt(var);
            dzz += dz[i] * zz[i];
        }
        for (int j = 0; j < 4; j++)
            CHECK_CLOSE(dq[j], dz[j] / sqrt(var) - dzz * (raw[j] - mean) / (3.0 * var), 1e-5);
    }
    /* T6: qnorm with equal norms: ties go to the lowest routed heads */
    struct moh_spec q;
    moh_spec_init(&q, 6, 2, 2, 0, 1);
    struct moh_state sq;
    float fq[256];
    int32_t iq[16];
    moh_state_carve(&sq, &q, 1, fq, iq);
    for (int i = 0; i < 4; i++)
        sq.qraw[i] = 2.5f;
    moh_router_forward_cpu(&q, 1, &sq);
    const float gq[6] = {1, 1, 1, 1, 0, 0};
    for (int i = 0; i < 6; i++)
        CHECK(sq.G[i] == gq[i]);
}

static const char *model_yaml(const char *extra, char *buf, size_t n) {
    snprintf(buf, n,
             "model: {d_model: 16, n_layers: 2, n_heads: 4, n_kv_heads: %s, d_ff: 24, vocab: 23,"
             " max_seq: 64, init_std: 0.3%s%s}\ntrain: {seq_len: 64}\n",
             strstr(extra, "gqa") ? "2" : "4", *extra ? ", " : "",
             strstr(extra, "gqa") ? extra + 4 : extra);
    return buf;
}

static void build_ste(struct gpt *m, const char *extra, int ste_off) {
    struct hw_config cfg;
    char y[1024], err[512];
    int rc = cfg_load_string(&cfg, model_yaml(extra, y, sizeof(y)), "test", 0, NULL, err);
    CHECK_MSG(rc == 0, "%s", err);
    struct gpt_config gc;
    gpt_config_from_cfg(&gc, &cfg.model, 23);
    gc.moh_ste_off = ste_off;
    gpt_init(m, &gc, ops_for(BACKEND_CPU), NULL);
    gpt_init_weights(m, 7);
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].init_std == 0.0f)
            for (size_t j = 0; j < m->params[i].numel; j++)
                m->param_mem[m->params[i].offset + j] = 1.0f + 0.3f * (float)rng_normal(99, j + i);
}

static void build(struct gpt *m, const char *extra) {
    build_ste(m, extra, 0);
}

/* copy every parameter of src that dst has (by name); zero dst's router weights */
static void copy_shared(struct gpt *dst, const struct gpt *src) {
    for (int i = 0; i < dst->n_params; i++) {
        const struct param *p = &dst->params[i];
        const struct param *q = gpt_find_param(src, p->name);
        float *x = dst->param_mem + p->offset;
        if (q)
            memcpy(x, src->param_mem + q->offset, sizeof(float) * p->numel);
        else
            memset(x, 0, sizeof(float) * p->numel);
    }
}

static double max_diff(const float *a, const float *b, size_t n) {
    double w = 0;
    for (size_t i = 0; i < n; i++)
        w = fabs((double)a[i] - b[i]) > w ? fabs((double)a[i] - b[i]) : w;
    return w;
}

static void test_reduces_to_mha(void) {
    const int B = 2, T = 20, V = 23;
    int32_t tok[40];
    for (int i = 0; i < B * T; i++)
        tok[i] = (int32_t)(rng_uniform(5, i) * V);
    struct gpt mha, moh;
    build(&mha, "");
    gpt_forward(&mha, tok, NULL, B, T, 0.0f, 0);
    const size_t NV = (size_t)B * T * V;
    float *ref = malloc(sizeof(float) * NV);
    memcpy(ref, mha.logits, sizeof(float) * NV);
    /* T1: zero routers, k = E, hs = 2 -> every gate is 1 */
    build(&moh, "attention: {kind: moh}, moh: {shared_heads: 2, top_k: 2}");
    copy_shared(&moh, &mha);
    gpt_forward(&moh, tok, NULL, B, T, 0.0f, 0);
    double d = max_diff(ref, moh.logits, NV);
    CHECK_MSG(d < 1e-5, "T1: MoH with zero routers and k = E vs MHA: max diff %g", d);
    gpt_free(&moh);
    /* k = 0, W_s = 0 (all heads shared, softly weighted) */
    build(&moh, "attention: {kind: moh}, moh: {shared_heads: 4, top_k: 0}");
    copy_shared(&moh, &mha);
    gpt_forward(&moh, tok, NULL, B, T, 0.0f, 0);
    d = max_diff(ref, moh.logits, NV);
    CHECK_MSG(d < 1e-5, "k = 0 with W_s = 0 vs MHA: max diff %g", d);
    gpt_free(&moh);
    /* T2: the paper's form gives G = 1/H: MHA with wo scaled by 1/H; compensate in wo */
    build(&moh, "attention: {kind: moh}, moh: {shared_heads: 2, top_k: 2, paper_literal: true}");
    copy_shared(&moh, &mha);
    for (int l = 0; l < 2; l++) {
        char nm[48];
        snprintf(nm, sizeof(nm), "blocks.%d.attn.wo", l);
        float *wo = moh.param_mem + gpt_find_param(&moh, nm)->offset;
        for (size_t j = 0; j < (size_t)16 * 16; j++)
            wo[j] *= 4.0f;
    }
    gpt_forward(&moh, tok, NULL, B, T, 0.0f, 0);
    d = max_diff(ref, moh.logits, NV);
    CHECK_MSG(d < 1e-5, "T2: paper form with zero routers = MHA / H: max diff %g", d);
    gpt_free(&moh);
    /* S2 with vert_stride 1 (and with a window covering the sequence) is dense */
    build(&moh, "sparsity: {kind: s2, block: 16, local_blocks: 1, vert_stride: 1}");
    copy_shared(&moh, &mha);
    gpt_forward(&moh, tok, NULL, B, T, 0.0f, 0);
    CHECK(max_diff(ref, moh.logits, NV) < 1e-5);
    gpt_free(&moh);
    build(&moh, "sparsity: {kind: s2, block: 16, local_blocks: 4, vert_stride: 8}");
    copy_shared(&moh, &mha);
    gpt_forward(&moh, tok, NULL, B, T, 0.0f, 0);
    CHECK(max_diff(ref, moh.logits, NV) < 1e-5);
    gpt_free(&moh);
    /* ... and a real pattern is not */
    build(&moh, "sparsity: {kind: s2, block: 16, local_blocks: 1, vert_stride: 4}");
    copy_shared(&moh, &mha);
    gpt_forward(&moh, tok, NULL, B, T, 0.0f, 0);
    CHECK(max_diff(ref, moh.logits, NV) > 1e-3);
    gpt_free(&moh);
    free(ref);
    gpt_free(&mha);
}

/* The full gradient (task + balance loss) against finite differences of the reference. */
static void test_gradient(const char *extra, int T) {
    const int B = 2, V = 23;
    struct gpt m;
    /* the straight-through estimator is not the derivative of the binary gates: check the exact
     * part here (test_t3_t4 checks what the STE passes) */
    build_ste(&m, extra, 1);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)B * T), *tgt = malloc(sizeof(int32_t) * B * T);
    for (int i = 0; i < B * T; i++) {
        tok[i] = (int32_t)(rng_uniform(5, i) * V);
        tgt[i] = i == 4 ? XENT_IGNORE : (int32_t)(rng_uniform(6, i) * V);
    }
    gpt_zero_grad(&m);
    double loss = gpt_forward(&m, tok, tgt, B, T, 1.0f, 1) + m.aux_loss;
    gpt_backward(&m);
    double *P = malloc(sizeof(double) * m.num_params);
    for (size_t i = 0; i < m.num_params; i++)
        P[i] = m.param_mem[i];
    double ref = ref_gpt_loss(&m, P, tok, tgt, B, T);
    CHECK_MSG(fabs(loss - ref) < 1e-5 * fabs(ref), "[%s] loss %.9g vs reference %.9g", extra, loss,
              ref);
    double worst = 0;
    int probes = 0;
    for (int p = 0; p < m.n_params; p++) {
        const struct param *gp = &m.params[p];
        const int nprobe = strstr(gp->name, "moh_") ? 12 : 3;
        for (int k = 0; k < nprobe; k++) {
            size_t j = gp->offset + (size_t)(rng_uniform(11, (uint64_t)(p * 16 + k)) * gp->numel);
            double h = 1e-5, x0 = P[j];
            P[j] = x0 + h;
            double fp = ref_gpt_loss(&m, P, tok, tgt, B, T);
            P[j] = x0 - h;
            double fm = ref_gpt_loss(&m, P, tok, tgt, B, T);
            P[j] = x0;
            double num = (fp - fm) / (2 * h), got = m.grad_mem[j];
            double err = fabs(num - got) / (fabs(num) > 1e-2 ? fabs(num) : 1e-2);
            if (err > worst)
                worst = err;
            if (err > 3e-3)
                fprintf(stderr, "  [%s] %s[%zu]: analytic %.6g, numeric %.6g\n", extra, gp->name,
                        j - gp->offset, got, num);
            probes++;
        }
    }
    CHECK_MSG(worst < 3e-3, "[%s] gradient: worst rel err %g over %d probes", extra, worst, probes);
    free(P);
    free(tok);
    free(tgt);
    gpt_free(&m);
}

/* Usage statistics: shared heads are used by every token, routed heads by k of E per token. */
static void test_usage(void) {
    struct gpt m;
    build(&m, "attention: {layers: [moh, mha]}, moh: {shared_heads: 1, top_k: 2}");
    int32_t tok[40], tgt[40];
    for (int i = 0; i < 40; i++)
        tok[i] = tgt[i] = (int32_t)(rng_uniform(5, i) * 23);
    gpt_stats_reset(&m);
    gpt_forward(&m, tok, tgt, 2, 20, 1.0f, 1);
    CHECK(m.stat_tokens == 40);
    const double *use = gpt_head_usage(&m, 0);
    double routed = 0;
    for (int h = 1; h < 4; h++)
        routed += use[h];
    CHECK(use[0] == 40 && routed == 80);
    CHECK(gpt_head_usage(&m, 1) == NULL); /* layer 1 is MHA */
    gpt_free(&m);
}

/* Token-by-token decoding (MoH gates per token, S2 compact caches with eviction) equals the
 * parallel forward; the S2 cache holds fewer floats than a dense one. */
static void test_decode(const char *extra, int expect_smaller) {
    const int T = 64, V = 23;
    struct gpt m;
    build(&m, extra);
    int32_t tok[64];
    for (int i = 0; i < T; i++)
        tok[i] = (int32_t)(rng_uniform(8, i) * V);
    gpt_forward(&m, tok, NULL, 1, T, 0.0f, 0);
    float *full = malloc(sizeof(float) * T * V);
    memcpy(full, m.logits, sizeof(float) * T * V);
    struct gpt_kv kv;
    gpt_kv_init(&kv, &m, 1, T);
    double worst = 0;
    for (int t = 0; t < T; t++) {
        const float *lg = gpt_decode_step(&m, &kv, tok[t]);
        for (int v = 0; v < V; v++) {
            double d = fabs((double)lg[v] - full[t * V + v]);
            worst = d > worst ? d : worst;
        }
    }
    CHECK_MSG(worst < 1e-4, "[%s] decode vs forward: max diff %g", extra, worst);
    if (expect_smaller)
        CHECK_MSG(kv.floats < kv.floats_dense, "[%s] S2 cache %zu floats vs dense %zu", extra,
                  kv.floats, kv.floats_dense);
    gpt_kv_free(&kv);
    free(full);
    gpt_free(&m);
}

int main(void) {
    test_decode("attention: {kind: moh}, moh: {shared_heads: 1, top_k: 2}", 0);
    test_decode("attention: {kind: moh}, moh: {shared_heads: 1, top_k: 1, router: qnorm}", 0);
    test_decode("gqa sparsity: {kind: s2, block: 16, local_blocks: 1, vert_stride: 4}", 1);
    test_decode("attention: {layers: [mha, moh]}, moh: {shared_heads: 2, top_k: 1}, sparsity: "
                "{kind: s2, block: 16, local_blocks: 1, vert_stride: 2, dense_heads: 1}",
                1);
    test_t3_t4();
    test_reduces_to_mha();
    test_usage();
    test_gradient("attention: {kind: moh}, moh: {shared_heads: 1, top_k: 2}", 9);
    test_gradient("attention: {kind: moh}, moh: {shared_heads: 2, top_k: 1}", 9);
    test_gradient("attention: {kind: moh}, moh: {shared_heads: 0, top_k: 2}", 9);
    test_gradient("attention: {kind: moh}, moh: {shared_heads: 2, top_k: 1, paper_literal: true}",
                  9);
    test_gradient("attention: {kind: moh}, moh: {shared_heads: 4, top_k: 0}", 9);
    test_gradient("attention: {kind: moh}, moh: {shared_heads: 1, top_k: 2, router: qnorm}", 9);
    test_gradient("gqa sparsity: {kind: s2, block: 16, local_blocks: 1, vert_stride: 2}", 64);
    test_gradient("attention: {layers: [moh, mha]}, moh: {shared_heads: 1, top_k: 2}, "
                  "sparsity: {kind: s2, block: 16, local_blocks: 1, vert_stride: 4, "
                  "dense_layers: [1]}",
                  64);
    return check_report("test_moh");
}
