/* tests/test_layer_kind.c -- a new attention kind written outside the model: "mean", identity
 * attention (every query attends uniformly to its causal prefix: y_t = mean_{s<=t} v_s, then
 * the output projection). The whole kind is this file: its table, registered with
 * layer_kind_register and named per layer in gpt_config.attn[]. Its projections are parallel
 * layers (linear_forward/backward own the head-group collectives), so it has no collective of
 * its own. The test checks the kind's parameters in the table, the model's gradient through
 * it against central finite differences, KV-cached decoding against the full forward, and
 * that a backend lacking its op group is refused at build time with one line.
 *
 * The prefix mean is a host loop over the sequence: one rank's whole sequence (no context
 * parallelism), the CPU backend. */
#include "../core/check.h"
#include "../core/rng.h"
#include "../model/gpt.h"
#include "../model/layer.h"
#include "../model/parallel.h"
#include "../ops/ops.h"
#include "check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct mean_state {
    struct linear wv, wo;
    int B, T;
    const float *n1; /* the forward's input (the trunk keeps it until the backward) */
    float *v, *y;    /* (B*T, Cl) */
};

struct mean_cache {
    int B;
    float *sum; /* (B, Cl) the running sum of v per sequence */
};

static int cl_of(const struct layer *ly) {
    return ly->m->Hl * ly->m->c.hd;
}

static int mean_caps(const struct layer *ly, enum ops_cap *caps) {
    caps[0] = OPS_CAP_CORE;
    caps[1] = OPS_CAP_F64; /* stands for "host loops": only the CPU backend has both */
    return 2;
}

static void mean_params(struct layer *ly, struct param_table *t, int part) {
    const struct gpt_config *c = &ly->m->c;
    if (!ly->state)
        ly->state = calloc(1, sizeof(struct mean_state));
    if (part == 0) {
        layer_param(ly, t, "mix.wv", (int64_t)c->H * c->hd, c->C, 0, 1, c->init_std);
        layer_param(ly, t, "mix.wo", c->C, (int64_t)c->H * c->hd, 1, 1, c->init_std);
    }
}

static void mean_bind(struct layer *ly) {
    struct mean_state *s = ly->state;
    struct gpt *m = ly->m;
    s->wv = linear_of(&m->params[layer_param_index(ly, "mix.wv")], 1, m->param_mem, m->grad_mem);
    s->wo = linear_of(&m->params[layer_param_index(ly, "mix.wo")], 1, m->param_mem, m->grad_mem);
}

static void mean_alloc(struct layer *ly, int B, int T) {
    struct mean_state *s = ly->state;
    const struct ops *o = ly->m->ops;
    o->free(s->v);
    o->free(s->y);
    s->B = B;
    s->T = T;
    s->v = o->alloc(sizeof(float) * (size_t)B * T * cl_of(ly));
    s->y = o->alloc(sizeof(float) * (size_t)B * T * cl_of(ly));
}

static void mean_free(struct layer *ly) {
    struct mean_state *s = ly->state;
    if (s) {
        ly->m->ops->free(s->v);
        ly->m->ops->free(s->y);
    }
    free(s);
    ly->state = NULL;
}

static void mean_forward(struct layer *ly, const float *n1, float *br, int want_grad) {
    struct mean_state *s = ly->state;
    const int Cl = cl_of(ly), N = s->B * s->T;
    s->n1 = n1;
    linear_forward(&ly->m->tp, &s->wv, s->v, n1, N, 0.0f);
    for (int b = 0; b < s->B; b++) {
        double *acc = calloc((size_t)Cl, sizeof(double));
        for (int t = 0; t < s->T; t++) {
            const float *v = s->v + ((size_t)b * s->T + t) * Cl;
            float *y = s->y + ((size_t)b * s->T + t) * Cl;
            for (int j = 0; j < Cl; j++) {
                acc[j] += v[j];
                y[j] = (float)(acc[j] / (t + 1));
            }
        }
        free(acc);
    }
    linear_forward(&ly->m->tp, &s->wo, br, s->y, N, 0.0f);
}

static void mean_backward(struct layer *ly, const float *dbr, float *dn1) {
    struct mean_state *s = ly->state;
    const int Cl = cl_of(ly), N = s->B * s->T;
    float *dy = ly->m->ops->alloc(sizeof(float) * (size_t)N * Cl);
    linear_backward(&ly->m->tp, &s->wo, dy, dbr, s->y, N, 0.0f);
    /* dv_s = sum_{t >= s} dy_t / (t + 1), reusing dy's storage from the end */
    for (int b = 0; b < s->B; b++) {
        double *acc = calloc((size_t)Cl, sizeof(double));
        for (int t = s->T - 1; t >= 0; t--) {
            float *d = dy + ((size_t)b * s->T + t) * Cl;
            for (int j = 0; j < Cl; j++) {
                acc[j] += d[j] / (double)(t + 1);
                d[j] = (float)acc[j];
            }
        }
        free(acc);
    }
    linear_backward(&ly->m->tp, &s->wv, dn1, dy, s->n1, N, 0.0f);
    ly->m->ops->free(dy);
}

static void *mean_cache_init(struct layer *ly, int B, int max_T, struct cache_stats *st) {
    struct mean_cache *c = calloc(1, sizeof(*c));
    c->B = B;
    c->sum = calloc((size_t)B * cl_of(ly), sizeof(float));
    st->floats += (size_t)B * cl_of(ly);
    st->floats_dense += (size_t)B * cl_of(ly);
    return c;
}

static void mean_cache_reset(struct layer *ly, void *cache, int b) {
    struct mean_cache *c = cache;
    memset(c->sum + (size_t)b * cl_of(ly), 0, sizeof(float) * (size_t)cl_of(ly));
}

static void mean_cache_free(struct layer *ly, void *cache) {
    struct mean_cache *c = cache;
    free(c->sum);
    free(c);
}

static void mean_decode(struct layer *ly, void *cache, const struct decode_rows *r, const float *n1,
                        float *br, struct cache_stats *st) {
    struct mean_state *s = ly->state;
    struct mean_cache *c = cache;
    const int Cl = cl_of(ly);
    float *v = malloc(sizeof(float) * (size_t)r->nb * Cl);
    linear_forward(&ly->m->tp, &s->wv, v, n1, r->nb, 0.0f);
    for (int i = 0; i < r->nb; i++) {
        const int b = r->rows[i];
        float *sum = c->sum + (size_t)b * Cl, *vi = v + (size_t)i * Cl;
        for (int j = 0; j < Cl; j++) {
            sum[j] += vi[j];
            vi[j] = sum[j] / (float)(r->pos[b] + 1);
        }
    }
    linear_forward(&ly->m->tp, &s->wo, br, v, r->nb, 0.0f);
    free(v);
}

static const struct layer_kind layer_kind_mean = {
    .name = "mean",
    .caps = mean_caps,
    .params = mean_params,
    .bind = mean_bind,
    .alloc = mean_alloc,
    .free = mean_free,
    .forward = mean_forward,
    .backward = mean_backward,
    .cache_init = mean_cache_init,
    .cache_reset = mean_cache_reset,
    .cache_free = mean_cache_free,
    .decode = mean_decode,
};

static struct gpt_config config(int id) {
    struct gpt_config gc = {.C = 16,
                            .L = 2,
                            .H = 4,
                            .Hkv = 2,
                            .hd = 4,
                            .F = 24,
                            .V = 19,
                            .max_T = 16,
                            .mlp = GPT_MLP_SWIGLU,
                            .tied = 1,
                            .rope_theta = 10000.0f,
                            .eps = 1e-5f,
                            .init_std = 0.4f};
    gc.attn[0] = LK_MHA;
    gc.attn[1] = (unsigned char)id; /* the new kind in the second block */
    return gc;
}

/* a backend like the CPU's without fp64 */
static int no_f64(enum ops_cap cap) {
    return cap != OPS_CAP_F64;
}

static double loss_of(struct gpt *m, const int32_t *tok, const int32_t *tgt, int B, int T) {
    return gpt_forward(m, tok, tgt, B, T, 0.0f, 0);
}

int main(void) {
    const int id = layer_kind_register(&layer_kind_mean);
    CHECK(id >= LK_BUILTIN && layer_kind_find("mean") == id);
    struct gpt_config gc = config(id);
    struct gpt m;
    gpt_init(&m, &gc, ops_for(BACKEND_CPU), NULL);
    gpt_init_weights(&m, 3);
    const int iv = layer_param_index(&m.layers[1], "mix.wv");
    CHECK(!strcmp(m.params[iv].name, "blocks.1.mix.wv"));
    CHECK(!strcmp(m.layers[1].kind->name, "mean") && !strcmp(m.layers[0].kind->name, "mha"));

    /* gradient through the kind against central differences of the summed loss */
    const int B = 2, T = 7;
    int32_t tok[14], tgt[14];
    for (int i = 0; i < B * T; i++) {
        tok[i] = (int32_t)(rng_hash2(11, (uint64_t)i) % (uint64_t)gc.V);
        tgt[i] = (int32_t)(rng_hash2(12, (uint64_t)i) % (uint64_t)gc.V);
    }
    gpt_alloc_acts(&m, B, T);
    gpt_zero_grad(&m);
    gpt_forward(&m, tok, tgt, B, T, 1.0f, 1);
    gpt_backward(&m);
    const char *names[] = {"blocks.1.mix.wv", "blocks.1.mix.wo", "blocks.0.attn.wq",
                           "tok_emb.weight", "blocks.1.attn_norm.weight"};
    int n_fd = 0;
    double worst = 0.0;
    for (int k = 0; k < 5; k++) {
        int pi = -1;
        for (int i = 0; i < m.n_params; i++)
            if (!strcmp(m.params[i].name, names[k]))
                pi = i;
        CHECK_MSG(pi >= 0, "no parameter %s", names[k]);
        if (pi < 0)
            continue;
        for (int j = 0; j < 6; j++) {
            size_t off = m.params[pi].offset + (size_t)(j * 37) % m.params[pi].numel;
            const float w0 = m.param_mem[off], h = 1e-2f;
            m.param_mem[off] = w0 + h;
            double lp = loss_of(&m, tok, tgt, B, T);
            m.param_mem[off] = w0 - h;
            double lm = loss_of(&m, tok, tgt, B, T);
            m.param_mem[off] = w0;
            double fd = (lp - lm) / (2.0 * h), an = m.grad_mem[off];
            double e = fabs(fd - an) / fmax(1.0, fabs(fd));
            worst = fmax(worst, e);
            CHECK_MSG(e < 5e-3, "%s[%zu]: analytic %.6g, finite difference %.6g", names[k],
                      off - m.params[pi].offset, an, fd);
            n_fd++;
        }
    }
    printf("mean kind: %d finite-difference checks, worst rel err %.2g\n", n_fd, worst);

    /* decoding through the kind's cache gives the full forward's logits */
    const int Td = 9;
    int32_t seq[9];
    for (int t = 0; t < Td; t++)
        seq[t] = tok[t];
    gpt_alloc_acts(&m, 1, Td);
    gpt_forward(&m, seq, NULL, 1, Td, 0.0f, 0);
    float *full = malloc(sizeof(float) * (size_t)Td * gc.V);
    memcpy(full, gpt_logits(&m), sizeof(float) * (size_t)Td * gc.V);
    struct gpt_kv kv;
    gpt_kv_init(&kv, &m, 1, gc.max_T);
    double derr = 0.0;
    for (int t = 0; t < Td; t++) {
        const float *lg = gpt_decode_step(&m, &kv, seq[t]);
        for (int v = 0; v < gc.V; v++)
            derr = fmax(derr, fabs((double)lg[v] - full[(size_t)t * gc.V + v]));
    }
    printf("mean kind: decode vs full forward, max |diff| %.2g\n", derr);
    CHECK(derr < 1e-4);
    gpt_kv_free(&kv);
    free(full);
    gpt_free(&m);

    /* a backend without the kind's op group is refused when the model is built */
    struct ops lacking = *ops_for(BACKEND_CPU);
    lacking.name = "test-lacking";
    lacking.supports = no_f64;
    char err[HW_ERR_LEN] = "";
    struct gpt m2;
    int rc = gpt_build(&m2, &gc, &lacking, NULL, err);
    CHECK(rc == HW_ECONFIG);
    CHECK(strstr(err, "layer 1 (mean) needs fp64 GEMM, which the test-lacking backend") != NULL &&
          !strchr(err, '\n'));
    printf("refusal: %s\n", err);
    gpt_free(&m2);
    return check_report("test_layer_kind");
}
