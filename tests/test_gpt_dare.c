/* tests/test_gpt_dare.c -- model.embedding dare for the language model: with the attention
 * table tied to the token table (copied) the model is the ordinary one (same loss bit for bit,
 * tok_emb's gradient = the sum of the two tables' gradients), the attention table's gradient
 * matches finite differences, and KV-cached decoding matches the full forward. */
#include "../core/rng.h"
#include "../model/gpt.h"
#include "../ops/ops.h"
#include "check.h"

#include <stdlib.h>
#include <string.h>

enum { B = 2, T = 7, V = 19 };

static void make(struct gpt *m, int dare) {
    struct gpt_config gc = {.C = 16,
                            .L = 2,
                            .H = 4,
                            .Hkv = 2,
                            .hd = 4,
                            .F = 24,
                            .V = V,
                            .max_T = 16,
                            .mlp = GPT_MLP_SWIGLU,
                            .tied = 1,
                            .rope_theta = 10000.0f,
                            .eps = 1e-5f,
                            .init_std = 0.3f,
                            .dare = dare};
    gpt_init(m, &gc, ops_for(BACKEND_CPU), NULL);
    gpt_init_weights(m, 5);
}

static void copy(struct gpt *dst, const char *dn, const struct gpt *src, const char *sn) {
    const struct param *d = gpt_find_param(dst, dn), *s = gpt_find_param(src, sn);
    memcpy(dst->param_mem + d->offset, src->param_mem + s->offset, sizeof(float) * s->numel);
}

static double maxabs(const float *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(x[i]));
    return m;
}

int main(void) {
    int32_t tok[B * T], tgt[B * T];
    for (int i = 0; i < B * T; i++) {
        tok[i] = (int32_t)(rng_uniform(1, i) * V);
        tgt[i] = (int32_t)(rng_uniform(2, i) * V);
    }
    struct gpt a, d;
    make(&a, 0);
    make(&d, 1);
    CHECK(d.n_params == a.n_params + 1 && d.num_params == a.num_params + (size_t)V * 16);
    const struct param *pa = gpt_find_param(&d, "tok_emb_attn.weight");
    CHECK(pa && pa->gshape[0] == V && pa->gshape[1] == 16);
    char sig[256];
    gpt_config_signature(&d.c, sig, sizeof(sig));
    CHECK(strstr(sig, "embedding=dare") != NULL);
    /* tied: E^A := E */
    for (int i = 0; i < a.n_params; i++)
        copy(&d, a.params[i].name, &a, a.params[i].name);
    copy(&d, "tok_emb_attn.weight", &a, "tok_emb.weight");
    gpt_zero_grad(&a);
    gpt_zero_grad(&d);
    double la = gpt_forward(&a, tok, tgt, B, T, 1.0f / (B * T), 1);
    double ld = gpt_forward(&d, tok, tgt, B, T, 1.0f / (B * T), 1);
    CHECK_MSG(la == ld, "tied DARE loss %.17g vs ordinary %.17g", ld, la);
    gpt_backward(&a);
    gpt_backward(&d);
    int bad = 0;
    for (int i = 0; i < a.n_params; i++) {
        const struct param *p = &a.params[i], *q = gpt_find_param(&d, p->name);
        const float *ga = a.grad_mem + p->offset, *gd = d.grad_mem + q->offset;
        const float *ge = !strcmp(p->name, "tok_emb.weight") ? d.grad_mem + pa->offset : NULL;
        double sc = maxabs(ga, p->numel);
        for (size_t j = 0; j < p->numel; j++) {
            double sum = (double)gd[j] + (ge ? ge[j] : 0.0);
            if (fabs(sum - ga[j]) > 1e-5 * sc + 1e-9 && bad++ < 5)
                fprintf(stderr, "%s[%zu]: %.9g vs %.9g\n", p->name, j, sum, (double)ga[j]);
        }
    }
    CHECK_MSG(bad == 0, "tied: %d gradient entries differ", bad);
    /* untied: the attention table matters, and its gradient is right */
    for (size_t j = 0; j < pa->numel; j++)
        d.param_mem[pa->offset + j] = (float)(0.3 * rng_normal(77, j));
    gpt_zero_grad(&d);
    double l0 = gpt_forward(&d, tok, tgt, B, T, 1.0f, 1);
    gpt_backward(&d);
    CHECK(fabs(l0 / (B * T) - la) > 1e-4);
    float *g = malloc(sizeof(float) * d.num_params);
    memcpy(g, d.grad_mem, sizeof(float) * d.num_params);
    int checked = 0, off = 0, nonzero = 0;
    const char *names[2] = {"tok_emb_attn.weight", "blocks.0.attn.wq"};
    for (int n = 0; n < 2; n++) {
        const struct param *p = gpt_find_param(&d, names[n]);
        for (int k = 0; k < 12; k++) {
            /* rows of tokens that occur, so the gradient is not trivially zero */
            size_t j = n == 0 ? (size_t)tok[k] * 16 + (size_t)(k % 16)
                              : (size_t)(rng_uniform(9, k) * p->numel);
            float *x = d.param_mem + p->offset + j, x0 = *x;
            *x = x0 + 1e-2f;
            double xp = *x, lp = gpt_forward(&d, tok, tgt, B, T, 1.0f, 0);
            *x = x0 - 1e-2f;
            double xm = *x, lm = gpt_forward(&d, tok, tgt, B, T, 1.0f, 0);
            *x = x0;
            double fd = (lp - lm) / (xp - xm), an = g[p->offset + j];
            checked++;
            nonzero += fabs(an) > 1e-3;
            if (fabs(fd - an) > 3e-2 * fabs(an) + 2e-3) {
                off++;
                fprintf(stderr, "%s[%zu]: fd %.6g analytic %.6g\n", names[n], j, fd, an);
            }
        }
    }
    CHECK_MSG(off == 0, "%d of %d finite-difference probes off", off, checked);
    CHECK_MSG(nonzero > checked / 2, "only %d of %d probed gradients are not small", nonzero,
              checked);
    /* decoding with the KV cache: the first layer's Q/K from the attention table too */
    gpt_forward(&d, tok, NULL, 1, T, 1.0f, 0);
    float *full = malloc(sizeof(float) * (size_t)T * V);
    memcpy(full, d.logits, sizeof(float) * (size_t)T * V);
    struct gpt_kv kv;
    gpt_kv_init(&kv, &d, 1, T);
    double worst = 0;
    for (int t = 0; t < T; t++) {
        const float *lg = gpt_decode_step(&d, &kv, tok[t]);
        for (int v = 0; v < V; v++)
            worst = fmax(worst, fabs(lg[v] - full[(size_t)t * V + v]));
    }
    CHECK_MSG(worst < 1e-4, "decode vs forward: %g", worst);
    gpt_kv_free(&kv);
    free(full);
    free(g);
    gpt_free(&a);
    gpt_free(&d);
    return check_report("test_gpt_dare");
}
