/* tests/test_rec.c -- the DARE / TWIN rec model and its metrics: the toy GSU/ESU and AUC
 * examples of ALGORITHMS.md §3.6, tie-breaking, finite-difference gradients (all three
 * embedding kinds), tied tables reducing to TWIN exactly (forward and the gradient sum),
 * K >= valid behaviours giving h == h_all, and AUC/GAUC/log-loss against brute force. */
#include "../core/check.h"
#include "../core/rng.h"
#include "../eval/rec_metrics.h"
#include "../model/rec.h"
#include "check.h"

#include <stdlib.h>
#include <string.h>

enum { NI = 14, NC = 4, L = 6, B = 5 };

static int32_t item[B], cat[B], hitem[B * L], hcat[B * L];
static float label[B];
static int32_t item_cat[NI];

static void make_batch(struct rec_batch *bt, uint64_t seed) {
    for (int i = 1; i < NI; i++)
        item_cat[i] = 1 + (int32_t)(rng_uniform(seed, 1000 + i) * (NC - 1));
    for (int b = 0; b < B; b++) {
        item[b] = 1 + (int32_t)(rng_uniform(seed, b) * (NI - 1));
        cat[b] = item_cat[item[b]];
        label[b] = b % 2 ? 0.0f : 1.0f;
        int empty = b == 1 ? 3 : b % 3; /* left padding: some short histories */
        for (int j = 0; j < L; j++) {
            int32_t it =
                j < empty ? 0 : 1 + (int32_t)(rng_uniform(seed, 100 + b * L + j) * (NI - 1));
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

static void small_config(struct rec_config *c, enum rec_emb emb, int K) {
    memset(c, 0, sizeof(*c));
    c->emb = emb;
    c->n_item = NI;
    c->n_cat = NC;
    c->L = L;
    c->K = K;
    int d[3] = {3, 2, 2}, a[3] = {2, 2, 1};
    for (int k = 0; k < 3; k++) {
        c->dim[k] = d[k];
        c->adim[k] = emb == REC_EMB_DARE ? a[k] : d[k];
    }
    c->h1 = 5;
    c->h2 = 4;
    c->aux = 1;
    c->l2 = 1e-3; /* larger than the default so the term shows in the check */
    c->init_std = 0.5f;
}

static double loss_of(struct rec_model *m, const struct rec_batch *bt) {
    struct rec_out o = rec_forward(m, bt, 1, 1.0 / B, NULL);
    return o.loss + rec_l2(m, 0);
}

static void test_toy(void) {
    double s[3] = {1, 0, 2}, v[3] = {1, 2, 3}, wt[3], h;
    int32_t idx[2];
    rec_topk_indices(s, 3, 2, idx);
    CHECK(idx[0] == 2 && idx[1] == 0);
    rec_esu(s, idx, 2, v, 1, wt, &h);
    CHECK_CLOSE(wt[0], 0.7310585786, 1e-9);
    CHECK_CLOSE(wt[1], 0.2689414214, 1e-9);
    CHECK_CLOSE(h, 2.4621171573, 1e-9);
    /* ties: the lowest slot wins, whatever the order */
    double t[5] = {0.5, 2, 1, 2, 2};
    int32_t ti[4];
    rec_topk_indices(t, 5, 3, ti);
    CHECK(ti[0] == 1 && ti[1] == 3 && ti[2] == 4);
    rec_topk_indices(t, 5, 4, ti);
    CHECK(ti[3] == 2);
    /* against a full sort on random scores with many ties */
    enum { N = 200, K = 17 };
    double r[N];
    int32_t got[K], ord[N];
    for (int i = 0; i < N; i++) {
        r[i] = (int)(rng_uniform(21, i) * 12);
        ord[i] = i;
    }
    for (int i = 1; i < N; i++) /* insertion sort by (score desc, index asc) */
        for (int j = i; j > 0 && r[ord[j]] > r[ord[j - 1]]; j--) {
            int32_t t2 = ord[j];
            ord[j] = ord[j - 1];
            ord[j - 1] = t2;
        }
    rec_topk_indices(r, N, K, got);
    CHECK(memcmp(got, ord, sizeof(got)) == 0);
    /* masked slots never get weight */
    double sm[3] = {-4294967295.0, 1, -4294967295.0}, hm;
    int32_t all[3] = {0, 1, 2};
    rec_esu(sm, all, 3, v, 1, wt, &hm);
    CHECK(hm == 2.0);
}

static void test_auc(void) {
    double p[4] = {.9, .8, .3, .1};
    float y[4] = {1, 0, 1, 0};
    CHECK_CLOSE(rec_auc(p, y, 4), 0.75, 1e-12);
    /* utils.calc_auc does not move its previous point on vertical steps: 0.5 here */
    CHECK_CLOSE(rec_auc_calc(p, y, 4), 0.5, 1e-12);
    double pt[4] = {.5, .5, .5, .1};
    float yt[4] = {1, 0, 1, 0};
    CHECK_CLOSE(rec_auc(pt, yt, 4), 0.75, 1e-12); /* (0.5 + 1 + 0.5 + 1) / 4 */
    /* brute force on random scores with many ties */
    enum { N = 300 };
    double s[N];
    float l[N];
    int g[N];
    for (int i = 0; i < N; i++) {
        s[i] = (int)(rng_uniform(7, i) * 20) / 20.0;
        l[i] = rng_uniform(8, i) < 0.3 + 0.5 * s[i] ? 1.0f : 0.0f;
        g[i] = (int)(rng_uniform(9, i) * 4);
    }
    double num = 0, den = 0;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++)
            if (l[i] > 0.5f && l[j] < 0.5f) {
                den++;
                num += s[i] > s[j] ? 1 : s[i] == s[j] ? 0.5 : 0;
            }
    CHECK_CLOSE(rec_auc(s, l, N), num / den, 1e-12);
    /* GAUC: weighted by group size, brute force per group */
    double gn = 0, gd = 0;
    for (int c = 0; c < 4; c++) {
        double a = 0, d = 0;
        int n = 0;
        for (int i = 0; i < N; i++) {
            if (g[i] != c)
                continue;
            n++;
            for (int j = 0; j < N; j++)
                if (g[j] == c && l[i] > 0.5f && l[j] < 0.5f) {
                    d++;
                    a += s[i] > s[j] ? 1 : s[i] == s[j] ? 0.5 : 0;
                }
        }
        if (d > 0) {
            gn += n * a / d;
            gd += n;
        }
    }
    CHECK_CLOSE(rec_gauc(s, l, g, N), gn / gd, 1e-12);
    double pl[2] = {0.8, 0.4};
    float ll[2] = {1, 0};
    CHECK_CLOSE(rec_logloss(pl, ll, 2), -(log(0.8) + log(0.6)) / 2, 1e-12);
    float one[2] = {1, 1};
    CHECK(isnan(rec_auc(pl, one, 2)));
}

/* Central differences on a float parameter block: the step actually taken is
 * fl(x + h) - fl(x - h), so the quotient is exact up to the O(h^2) term. */
static void fd_check(enum rec_emb emb, const char *what) {
    struct rec_config c;
    small_config(&c, emb, 3);
    struct rec_model m;
    rec_init(&m, &c, ops_for(BACKEND_CPU), NULL);
    rec_init_weights(&m, 42);
    struct rec_batch bt;
    make_batch(&bt, 5);
    rec_zero_grad(&m);
    rec_forward(&m, &bt, 1, 1.0 / B, NULL);
    rec_backward(&m);
    rec_l2(&m, 1);
    float *g = malloc(sizeof(float) * m.num_params);
    memcpy(g, m.grad_mem, sizeof(float) * m.num_params);
    int bad = 0, n = 0, nonzero = 0;
    for (int pi = 0; pi < m.n_params; pi++) {
        const struct param *p = &m.params[pi];
        size_t step = p->numel > 40 ? p->numel / 23 + 1 : 1;
        for (size_t j = 0; j < p->numel; j += step) {
            float *x = m.param_mem + p->offset + j, x0 = *x;
            /* the loss is computed in double from the float parameters, so a small step is
             * precise, and it stays clear of PReLU kinks and top-K set changes */
            double h = 1e-5 * (fabs(x0) > 1 ? fabs(x0) : 1);
            *x = (float)(x0 + h);
            double xp = *x, lp = loss_of(&m, &bt);
            *x = (float)(x0 - h);
            double xm = *x, lm = loss_of(&m, &bt);
            *x = x0;
            double fd = (lp - lm) / (xp - xm), an = g[p->offset + j];
            n++;
            nonzero += an != 0.0;
            if (fabs(fd - an) > 2e-3 * fabs(an) + 2e-6) {
                if (bad++ < 8)
                    fprintf(stderr, "%s: %s[%zu]: fd %.9g analytic %.9g\n", what, p->name, j, fd,
                            an);
            }
        }
    }
    CHECK_MSG(bad == 0, "%s: %d of %d gradient entries off", what, bad, n);
    CHECK_MSG(nonzero > n / 3, "%s: only %d of %d entries nonzero", what, nonzero, n);
    printf("%s: %d gradient entries checked by finite differences\n", what, n);
    free(g);
    rec_free(&m);
}

static void copy_param(struct rec_model *dst, const char *dn, const struct rec_model *src,
                       const char *sn) {
    const struct param *d = rec_find_param(dst, dn), *s = rec_find_param(src, sn);
    HW_ASSERT(d && s && d->numel == s->numel);
    memcpy(dst->param_mem + d->offset, src->param_mem + s->offset, sizeof(float) * s->numel);
}

static void test_tied(void) {
    struct rec_config cd, ct;
    small_config(&cd, REC_EMB_DARE, 3);
    for (int k = 0; k < 3; k++)
        cd.adim[k] = cd.dim[k]; /* same shapes, so E^A := E^R is possible */
    small_config(&ct, REC_EMB_TWIN, 3);
    struct rec_model md, mt;
    rec_init(&md, &cd, ops_for(BACKEND_CPU), NULL);
    rec_init(&mt, &ct, ops_for(BACKEND_CPU), NULL);
    rec_init_weights(&md, 9);
    for (int i = 0; i < mt.n_params; i++)
        copy_param(&mt, mt.params[i].name, &md, mt.params[i].name);
    static const char *const kinds[3] = {"item", "cat", "time"};
    for (int k = 0; k < 3; k++) {
        char an[64], rn[64];
        snprintf(an, sizeof(an), "emb_attn.%s", kinds[k]);
        snprintf(rn, sizeof(rn), "emb.%s", kinds[k]);
        copy_param(&md, an, &md, rn);
    }
    struct rec_batch bt;
    make_batch(&bt, 11);
    double pd[B], pt[B];
    rec_zero_grad(&md);
    rec_zero_grad(&mt);
    struct rec_out od = rec_forward(&md, &bt, 1, 1.0 / B, pd);
    struct rec_out ot = rec_forward(&mt, &bt, 1, 1.0 / B, pt);
    CHECK(od.loss == ot.loss && od.ctr == ot.ctr && od.aux == ot.aux);
    CHECK(memcmp(pd, pt, sizeof(pd)) == 0);
    mt.observe = 1;
    rec_backward(&md);
    rec_backward(&mt);
    /* the observed per-role item-row gradients add up to the table's gradient */
    CHECK(mt.obs[0] && mt.obs[1] && mt.obs_dim == 3);
    double so = 0, sg = 0;
    for (int i = 0; i < mt.obs_rows * mt.obs_dim; i++)
        so += mt.obs[0][i] + mt.obs[1][i];
    const struct param *ti = rec_find_param(&mt, "emb.item");
    for (size_t j = 0; j < ti->numel; j++)
        sg += mt.grad_mem[ti->offset + j];
    CHECK_CLOSE(so, sg, 1e-6);
    int exact = 1;
    for (int i = 0; i < mt.n_params; i++) {
        const struct param *p = &mt.params[i];
        const float *gt = mt.grad_mem + p->offset;
        const float *gr = md.grad_mem + rec_find_param(&md, p->name)->offset;
        const float *ga = NULL;
        if (!strncmp(p->name, "emb.", 4)) {
            char an[64];
            snprintf(an, sizeof(an), "emb_attn.%s", p->name + 4);
            ga = md.grad_mem + rec_find_param(&md, an)->offset;
        }
        for (size_t j = 0; j < p->numel; j++)
            if (gt[j] != (ga ? gr[j] + ga[j] : gr[j]))
                exact = 0;
    }
    CHECK_MSG(exact, "grad_TWIN(E) == grad_DARE(E^A) + grad_DARE(E^R), dense grads equal");
    /* the two roles' gradients are not the same thing */
    const struct param *pa = rec_find_param(&md, "emb_attn.item"),
                       *pr = rec_find_param(&md, "emb.item");
    double na = 0, nr = 0;
    for (size_t j = 0; j < pa->numel; j++) {
        na += md.grad_mem[pa->offset + j] * (double)md.grad_mem[pa->offset + j];
        nr += md.grad_mem[pr->offset + j] * (double)md.grad_mem[pr->offset + j];
    }
    CHECK(na > 0 && nr > 0 && fabs(na - nr) > 1e-12);
    rec_free(&md);
    rec_free(&mt);
}

static void test_k_covers_all(void) {
    struct rec_config c;
    small_config(&c, REC_EMB_DARE, L);
    struct rec_model m;
    rec_init(&m, &c, ops_for(BACKEND_CPU), NULL);
    rec_init_weights(&m, 3);
    struct rec_batch bt;
    make_batch(&bt, 2);
    rec_forward(&m, &bt, 1, 1.0 / B, NULL);
    const int R = c.dim[0] + c.dim[1] + c.dim[2];
    const double *h = rec_summary(&m, 0), *ha = rec_summary(&m, 1);
    double md = 0;
    for (int i = 0; i < B * R; i++)
        md = fmax(md, fabs(h[i] - ha[i]));
    CHECK_MSG(md < 1e-15, "K >= valid: h == h_all (max diff %g)", md);
    /* with K = 3 < valid behaviours they differ */
    rec_free(&m);
    small_config(&c, REC_EMB_DARE, 3);
    rec_init(&m, &c, ops_for(BACKEND_CPU), NULL);
    rec_init_weights(&m, 3);
    rec_forward(&m, &bt, 1, 1.0 / B, NULL);
    h = rec_summary(&m, 0);
    ha = rec_summary(&m, 1);
    md = 0;
    for (int i = 0; i < B * R; i++)
        md = fmax(md, fabs(h[i] - ha[i]));
    CHECK(md > 1e-6);
    /* the top-K set: the highest scores among valid slots, each slot at most once */
    const int32_t *ix = rec_topk(&m, 0);
    CHECK(ix[0] != ix[1] && ix[1] != ix[2] && ix[0] != ix[2]);
    /* eval mode uses the running statistics, not the batch's */
    double p1[B], p2[B];
    rec_forward(&m, &bt, 0, 1.0 / B, p1);
    struct rec_batch one = bt;
    one.B = 1;
    rec_forward(&m, &one, 0, 1.0, p2);
    CHECK(p1[0] == p2[0]);
    rec_free(&m);
}

int main(void) {
    test_toy();
    test_auc();
    fd_check(REC_EMB_DARE, "dare");
    fd_check(REC_EMB_TWIN, "twin");
    fd_check(REC_EMB_TWIN_PROJ, "twin_proj");
    test_tied();
    test_k_covers_all();
    return check_report("test_rec");
}
