/* model/rec.c -- the DARE / TWIN recommendation model: parameter table, lookups, forward and
 * hand-written backward in double (see rec.h). */
#include "rec.h"

#include "../core/check.h"
#include "../core/log.h"
#include "../core/rng.h"
#include "../dist/emb_shard.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MASKED (-4294967295.0) /* -2^32 + 1, the reference's mask score */

/* ------------------------------------------------------------------------------------------ */
/* parameter table */

static int add_param(struct rec_model *m, const char *name, int64_t r, int64_t c, int decay,
                     float std) {
    int i = m->n_params++;
    m->params = HW_REALLOC(m->params, sizeof(*m->params) * (size_t)m->n_params);
    struct param *p = &m->params[i];
    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "%s", name);
    p->ndim = c > 0 ? 2 : 1;
    p->gshape[0] = p->shape[0] = r;
    p->gshape[1] = p->shape[1] = c > 0 ? c : 1;
    p->shard_dim = -1;
    p->decay = decay;
    p->init_std = std;
    p->numel = (size_t)r * (size_t)(c > 0 ? c : 1);
    p->offset = m->num_params;
    m->num_params += p->numel;
    return i;
}

static int add_table(struct rec_model *m, const char *name, int64_t rows, int dim, float std) {
    int64_t lo = 0, hi = rows;
    if (m->p > 1)
        emb_shard_range(rows, m->p, m->r, &lo, &hi);
    int i = add_param(m, name, hi - lo, dim, 0, std);
    struct param *p = &m->params[i];
    p->gshape[0] = rows;
    p->goff[0] = lo;
    p->shard_dim = 0;
    return i;
}

void rec_config_from_cfg(struct rec_config *rc, const struct cfg_model *m, const struct cfg_rec *r,
                         int n_item, int n_cat) {
    memset(rc, 0, sizeof(*rc));
    rc->emb = !strcmp(m->embedding, "dare")        ? REC_EMB_DARE
              : !strcmp(m->embedding, "twin_proj") ? REC_EMB_TWIN_PROJ
                                                   : REC_EMB_TWIN;
    rc->n_item = n_item;
    rc->n_cat = n_cat;
    rc->L = r->max_len;
    rc->K = r->top_k;
    rc->dim[0] = r->item_dim;
    rc->dim[1] = r->cat_dim;
    rc->dim[2] = r->time_dim;
    int a[3] = {r->attn_item_dim, r->attn_cat_dim, r->attn_time_dim};
    for (int k = 0; k < 3; k++)
        rc->adim[k] = rc->emb == REC_EMB_DARE && a[k] ? a[k] : rc->dim[k];
    rc->h1 = r->hidden1;
    rc->h2 = r->hidden2;
    rc->aux = r->aux_loss;
    rc->l2 = r->l2;
    rc->init_std = (float)m->init_std;
}

void rec_signature(const struct rec_config *rc, char *out, size_t n) {
    static const char *const kinds[] = {"twin", "dare", "twin_proj"};
    snprintf(out, n,
             "rec %s items=%d cats=%d L=%d K=%d dim=%d/%d/%d attn=%d/%d/%d mlp=%d/%d aux=%d",
             kinds[rc->emb], rc->n_item, rc->n_cat, rc->L, rc->K, rc->dim[0], rc->dim[1],
             rc->dim[2], rc->adim[0], rc->adim[1], rc->adim[2], rc->h1, rc->h2, rc->aux);
}

static int dR(const struct rec_model *m) {
    return m->c.dim[0] + m->c.dim[1] + m->c.dim[2];
}
static int dA(const struct rec_model *m) {
    return m->c.adim[0] + m->c.adim[1] + m->c.adim[2];
}

void rec_init(struct rec_model *m, const struct rec_config *rc, const struct ops *ops,
              struct dist *d) {
    memset(m, 0, sizeof(*m));
    m->c = *rc;
    m->ops = ops;
    m->d = d;
    m->p = d ? dist_group_size(d, DIST_DP) : 1;
    m->r = d ? dist_group_rank(d, DIST_DP) : 0;
    m->bn_momentum = 0.1;
    m->bn_eps = 1e-5;
    const float s = rc->init_std;
    const int R = dR(m), F = 3 * R;
    HW_ASSERT(rc->K >= 1 && rc->K <= rc->L && rc->n_item >= 1 && rc->n_cat >= 1);
    memset(m->proj, -1, sizeof(m->proj));
    /* dense part first: replicated over the ranks, one contiguous all-reduce */
    if (rc->emb == REC_EMB_TWIN_PROJ) {
        static const char *const pn[4] = {"proj.attn_target", "proj.attn_behavior",
                                          "proj.repr_target", "proj.repr_behavior"};
        for (int i = 0; i < 4; i++)
            m->proj[i] = add_param(m, pn[i], R, R, 1, s);
    }
    m->mlp[0] = add_param(m, "mlp.bn.weight", F, 0, 1, 0.0f);
    m->mlp[1] = add_param(m, "mlp.bn.bias", F, 0, 0, 0.0f);
    m->mlp[2] = add_param(m, "mlp.fc1.weight", rc->h1, F, 1, s);
    m->mlp[3] = add_param(m, "mlp.fc1.bias", rc->h1, 0, 0, 0.0f);
    m->mlp[4] = add_param(m, "mlp.prelu1.weight", 1, 0, 1, 0.0f);
    m->mlp[5] = add_param(m, "mlp.fc2.weight", rc->h2, rc->h1, 1, s);
    m->mlp[6] = add_param(m, "mlp.fc2.bias", rc->h2, 0, 0, 0.0f);
    m->mlp[7] = add_param(m, "mlp.prelu2.weight", 1, 0, 1, 0.0f);
    m->mlp[8] = add_param(m, "mlp.fc3.weight", 2, rc->h2, 1, s);
    m->mlp[9] = add_param(m, "mlp.fc3.bias", 2, 0, 0, 0.0f);
    if (rc->aux) {
        m->auxp[0] = add_param(m, "aux.bn.weight", F, 0, 1, 0.0f);
        m->auxp[1] = add_param(m, "aux.bn.bias", F, 0, 0, 0.0f);
        m->auxp[2] = add_param(m, "aux.fc1.weight", rc->h1, F, 1, s);
        m->auxp[3] = add_param(m, "aux.fc1.bias", rc->h1, 0, 0, 0.0f);
        m->auxp[4] = add_param(m, "aux.prelu1.weight", 1, 0, 1, 0.0f);
        m->auxp[5] = add_param(m, "aux.fc2.weight", 2, rc->h1, 1, s);
        m->auxp[6] = add_param(m, "aux.fc2.bias", 2, 0, 0, 0.0f);
    }
    m->n_dense = m->num_params;
    m->rows[0] = rc->n_item;
    m->rows[1] = rc->n_cat;
    m->rows[2] = rc->L + 1;
    static const char *const rn[3] = {"emb.item", "emb.cat", "emb.time"};
    static const char *const an[3] = {"emb_attn.item", "emb_attn.cat", "emb_attn.time"};
    for (int k = 0; k < 3; k++)
        m->tab[0][k] = add_table(m, rn[k], m->rows[k], rc->dim[k], s);
    for (int k = 0; k < 3; k++)
        m->tab[1][k] = rc->emb == REC_EMB_DARE ? add_table(m, an[k], m->rows[k], rc->adim[k], s)
                                               : m->tab[0][k];
    m->param_mem = ops->alloc(sizeof(float) * m->num_params);
    m->grad_mem = ops->alloc(sizeof(float) * m->num_params);
    m->stats = HW_CALLOC((size_t)4 * F, sizeof(double));
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < F; j++)
            m->stats[(size_t)(2 * i + 1) * F + j] = 1.0; /* running var */
}

void rec_init_weights(struct rec_model *m, uint64_t seed) {
    for (int i = 0; i < m->n_params; i++) {
        struct param *p = &m->params[i];
        float *w = m->param_mem + p->offset;
        uint64_t key = rng_hash2(seed, rng_hash_str(p->name));
        const char *nm = p->name;
        size_t len = strlen(nm);
        if (len > 5 && !strcmp(nm + len - 5, ".bias")) {
            memset(w, 0, sizeof(float) * p->numel);
        } else if (strstr(nm, ".bn.weight")) {
            for (size_t j = 0; j < p->numel; j++)
                w[j] = 1.0f;
        } else if (strstr(nm, "prelu")) {
            w[0] = 0.1f;
        } else {
            size_t cols = (size_t)p->shape[1];
            for (size_t j = 0; j < p->numel; j++) { /* global index: grid-independent */
                uint64_t g = ((uint64_t)p->goff[0] + j / cols) * (uint64_t)p->gshape[1] + j % cols;
                w[j] = (float)(p->init_std * rng_normal(key, g));
            }
        }
    }
    int F = 3 * dR(m);
    memset(m->stats, 0, sizeof(double) * 4 * (size_t)F);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < F; j++)
            m->stats[(size_t)(2 * i + 1) * F + j] = 1.0;
}

static void ws_free(struct rec_model *m);

void rec_free(struct rec_model *m) {
    ws_free(m);
    free(m->obs[0]);
    free(m->obs[1]);
    free(m->params);
    if (m->ops) {
        m->ops->free(m->param_mem);
        m->ops->free(m->grad_mem);
    }
    free(m->stats);
    memset(m, 0, sizeof(*m));
}

void rec_zero_grad(struct rec_model *m) {
    m->ops->memset(m->grad_mem, 0, sizeof(float) * m->num_params);
}

struct param_set rec_param_set(struct rec_model *m) {
    struct param_set s = {.be = m->ops,
                          .n = m->n_params,
                          .p = m->params,
                          .numel = m->num_params,
                          .w = m->param_mem,
                          .g = m->grad_mem,
                          .shard_group = DIST_DP};
    return s;
}

const struct param *rec_find_param(const struct rec_model *m, const char *name) {
    const struct param_set s = rec_param_set((struct rec_model *)m);
    return param_find(&s, name);
}

/* ------------------------------------------------------------------------------------------ */
/* small kernels (double) */

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Sort and dedupe v in place; returns the count. */
static int uniq(int32_t *v, int n) {
    if (!n)
        return 0;
    qsort(v, (size_t)n, sizeof(*v), cmp_i32);
    int k = 1;
    for (int i = 1; i < n; i++)
        if (v[i] != v[k - 1])
            v[k++] = v[i];
    return k;
}

static int find_id(const int32_t *u, int n, int32_t id) {
    const int32_t *p = bsearch(&id, u, (size_t)n, sizeof(*u), cmp_i32);
    HW_ASSERT(p);
    return (int)(p - u);
}

/* Top-k of s[0..n) into idx, best first: a sorted buffer of the k best so far, scanned in
 * slot order, where a later slot enters only with a strictly higher score, so ties keep the
 * lowest slot. O(n + inserts * k); val is scratch (k). */
static void topk_into(const double *s, int n, int k, int32_t *idx, double *val) {
    int m = 0;
    for (int j = 0; j < n; j++) {
        double x = s[j];
        if (m == k && !(x > val[k - 1]))
            continue;
        int p = m < k ? m++ : k - 1; /* drop the last when full */
        while (p > 0 && x > val[p - 1]) {
            val[p] = val[p - 1];
            idx[p] = idx[p - 1];
            p--;
        }
        val[p] = x;
        idx[p] = j;
    }
}

void rec_topk_indices(const double *s, int n, int k, int32_t *idx) {
    double *val = HW_MALLOC(sizeof(double) * (size_t)k);
    topk_into(s, n, k, idx, val);
    free(val);
}

void rec_esu(const double *s, const int32_t *slots, int n, const double *v, int dim, double *wt,
             double *h) {
    double mx = -INFINITY, z = 0.0;
    for (int i = 0; i < n; i++) {
        double si = s[slots ? slots[i] : i];
        if (si > MASKED && si > mx)
            mx = si;
    }
    for (int i = 0; i < n; i++) {
        double si = s[slots ? slots[i] : i];
        wt[i] = si > MASKED ? exp(si - mx) : 0.0;
        z += wt[i];
    }
    for (int e = 0; e < dim; e++)
        h[e] = 0.0;
    for (int i = 0; i < n; i++) {
        wt[i] = z > 0 ? wt[i] / z : 0.0;
        const double *vj = v + (size_t)(slots ? slots[i] : i) * dim;
        for (int e = 0; e < dim && wt[i] != 0.0; e++)
            h[e] += wt[i] * vj[e];
    }
}

/* y (B, out) = x (B, in) W^T + b; W float (out, in) converted in wd. */
static void lin_fwd(const struct ops *be, int B, int in, int out, const double *x, const double *W,
                    const double *bias, double *y) {
    be->gemm(HW_F64, HW_F64, 0, 1, B, out, in, 1.0, x, (size_t)in, W, (size_t)in, 0.0, y,
             (size_t)out);
    if (bias)
        for (int b = 0; b < B; b++)
            for (int o = 0; o < out; o++)
                y[(size_t)b * out + o] += bias[o];
}

/* dW += dy^T x, db += sum dy, dx = dy W (dx may be NULL). */
static void lin_bwd(const struct ops *be, int B, int in, int out, const double *x, const double *W,
                    const double *dy, double *dx, double *dW, double *db) {
    be->gemm(HW_F64, HW_F64, 1, 0, out, in, B, 1.0, dy, (size_t)out, x, (size_t)in, 1.0, dW,
             (size_t)in);
    if (db)
        for (int b = 0; b < B; b++)
            for (int o = 0; o < out; o++)
                db[o] += dy[(size_t)b * out + o];
    if (dx)
        be->gemm(HW_F64, HW_F64, 0, 0, B, in, out, 1.0, dy, (size_t)out, W, (size_t)in, 0.0, dx,
                 (size_t)in);
}

/* ------------------------------------------------------------------------------------------ */
/* forward state */

/* One MLP head: BN -> fc1 -> PReLU [-> fc2 -> PReLU] -> fc_out (2). */
struct head {
    int nl;     /* hidden layers: 2 (main) or 1 (aux) */
    int *pi;    /* parameter indices: bn.w bn.b (fc.w fc.b prelu)* out.w out.b */
    double *z;  /* (B, F) features */
    double *xh; /* (B, F) normalised */
    double *rstd, *mean;
    double *y;     /* (B, F) BN output */
    double *a[2];  /* pre-activations */
    double *o[2];  /* PReLU outputs */
    double *logit; /* (B, 2) */
    double *q;     /* (B, 2) softmax */
    double *stats; /* running mean, var (2F) */
};

struct rec_ws {
    int B, train;
    double inv_n;
    int nu[3];
    int32_t *u[3];             /* unique ids per kind */
    int *tix[3], *hix[3];      /* (B), (B, L): index into u, -1 = empty slot */
    float *rows[2][3];         /* gathered rows per set, kind */
    double *at, *ah, *rt, *rh; /* raw concatenations (B, dA), (B*L, dA), (B, dR), (B*L, dR) */
    double *qa, *ka, *tr, *vr; /* attention / representation inputs (alias raw unless proj) */
    double *s;                 /* (B, L) scores */
    int32_t *idx;              /* (B, K) */
    double *w;                 /* (B, K) ESU weights */
    double *wall;              /* (B, L) aux weights */
    double *h, *hall;          /* (B, dR) */
    int *nvalid;               /* (B) */
    float *label;
    struct head main, aux;
    double *dense; /* double copy of the dense parameters */
};

static void head_free(struct head *h) {
    free(h->z);
    free(h->xh);
    free(h->rstd);
    free(h->mean);
    free(h->y);
    for (int i = 0; i < 2; i++) {
        free(h->a[i]);
        free(h->o[i]);
    }
    free(h->logit);
    free(h->q);
}

static void ws_free(struct rec_model *m) {
    struct rec_ws *w = m->ws;
    if (!w)
        return;
    for (int k = 0; k < 3; k++) {
        free(w->u[k]);
        free(w->tix[k]);
        free(w->hix[k]);
        free(w->rows[0][k]);
        free(w->rows[1][k]);
    }
    if (w->qa != w->at) {
        free(w->qa);
        free(w->ka);
        free(w->tr);
        free(w->vr);
    }
    free(w->at);
    free(w->ah);
    free(w->rt);
    free(w->rh);
    free(w->s);
    free(w->idx);
    free(w->w);
    free(w->wall);
    free(w->h);
    free(w->hall);
    free(w->nvalid);
    free(w->label);
    head_free(&w->main);
    head_free(&w->aux);
    free(w->dense);
    free(w);
    m->ws = NULL;
}

static double *dcalloc(size_t n) {
    return HW_CALLOC(n ? n : 1, sizeof(double));
}

static const double *dparam(const struct rec_model *m, int i) {
    return m->ws->dense + m->params[i].offset;
}

/* Rows of table [set][kind] for the unique ids (float, (nu, dim)). */
static void gather_rows(struct rec_model *m, int set, int k, const int32_t *ids, int n,
                        float *out) {
    const struct param *p = &m->params[m->tab[set][k]];
    const float *local = m->param_mem + p->offset;
    int dim = (int)p->shape[1];
    if (m->p > 1) {
        emb_shard_gather(m->d, DIST_DP, local, m->rows[k], dim, ids, n, out);
        return;
    }
    m->ops->embed_forward(out, ids, local, n, dim, (int)p->shape[0]);
}

static void scatter_rows(struct rec_model *m, int set, int k, const int32_t *ids, int n,
                         const double *g) {
    const struct param *p = &m->params[m->tab[set][k]];
    float *local = m->grad_mem + p->offset;
    int dim = (int)p->shape[1];
    if (m->p > 1) {
        emb_shard_scatter_add(m->d, DIST_DP, local, m->rows[k], dim, ids, n, g);
        return;
    }
    m->ops->rows_scatter_add_f64(local, ids, n, dim, g);
}

/* Sum a small double vector over the ranks (BatchNorm statistics). */
static void allsum(struct rec_model *m, double *v, int n) {
    if (m->d && m->d->world > 1)
        dist_allreduce_group_doubles(m->d, DIST_DP, v, n);
}

static void head_forward(struct rec_model *m, struct head *h, int B, int F, int train) {
    const double eps = m->bn_eps;
    const double *g = dparam(m, h->pi[0]), *be = dparam(m, h->pi[1]);
    h->xh = dcalloc((size_t)B * F);
    h->y = dcalloc((size_t)B * F);
    h->rstd = dcalloc((size_t)F);
    h->mean = dcalloc((size_t)F);
    if (train) {
        /* batch statistics over every rank's samples: two passes for accuracy */
        double *acc = dcalloc((size_t)F + 1);
        for (int b = 0; b < B; b++)
            for (int f = 0; f < F; f++)
                acc[f] += h->z[(size_t)b * F + f];
        acc[F] = B;
        allsum(m, acc, F + 1);
        double N = acc[F];
        for (int f = 0; f < F; f++)
            h->mean[f] = acc[f] / N;
        memset(acc, 0, sizeof(double) * (size_t)F);
        for (int b = 0; b < B; b++)
            for (int f = 0; f < F; f++) {
                double c = h->z[(size_t)b * F + f] - h->mean[f];
                acc[f] += c * c;
            }
        allsum(m, acc, F);
        for (int f = 0; f < F; f++) {
            double var = acc[f] / N;
            h->rstd[f] = 1.0 / sqrt(var + eps);
            double unb = N > 1 ? var * N / (N - 1) : var;
            h->stats[f] = (1 - m->bn_momentum) * h->stats[f] + m->bn_momentum * h->mean[f];
            h->stats[F + f] = (1 - m->bn_momentum) * h->stats[F + f] + m->bn_momentum * unb;
        }
        free(acc);
    } else {
        for (int f = 0; f < F; f++) {
            h->mean[f] = h->stats[f];
            h->rstd[f] = 1.0 / sqrt(h->stats[F + f] + eps);
        }
    }
    for (int b = 0; b < B; b++)
        for (int f = 0; f < F; f++) {
            size_t i = (size_t)b * F + f;
            h->xh[i] = (h->z[i] - h->mean[f]) * h->rstd[f];
            h->y[i] = g[f] * h->xh[i] + be[f];
        }
    const double *x = h->y;
    int in = F;
    for (int l = 0; l < h->nl; l++) {
        int pw = h->pi[2 + 3 * l];
        int out = (int)m->params[pw].shape[0];
        h->a[l] = dcalloc((size_t)B * out);
        h->o[l] = dcalloc((size_t)B * out);
        lin_fwd(m->ops, B, in, out, x, dparam(m, pw), dparam(m, pw + 1), h->a[l]);
        double al = dparam(m, h->pi[4 + 3 * l])[0];
        for (size_t i = 0; i < (size_t)B * out; i++)
            h->o[l][i] = h->a[l][i] > 0 ? h->a[l][i] : al * h->a[l][i];
        x = h->o[l];
        in = out;
    }
    int po = h->pi[2 + 3 * h->nl];
    h->logit = dcalloc((size_t)B * 2);
    h->q = dcalloc((size_t)B * 2);
    lin_fwd(m->ops, B, in, 2, x, dparam(m, po), dparam(m, po + 1), h->logit);
    for (int b = 0; b < B; b++) {
        double l0 = h->logit[2 * b], l1 = h->logit[2 * b + 1], mx = l0 > l1 ? l0 : l1;
        double e0 = exp(l0 - mx), e1 = exp(l1 - mx);
        h->q[2 * b] = e0 / (e0 + e1);
        h->q[2 * b + 1] = e1 / (e0 + e1);
    }
}

/* -sum_b inv_n log(q_{b,y} + 1e-8); y = 0 for a click. */
static double head_loss(const struct head *h, const float *label, int B, double inv_n) {
    double s = 0.0;
    for (int b = 0; b < B; b++)
        s -= inv_n * log(h->q[2 * b + (label[b] > 0.5f ? 0 : 1)] + 1e-8);
    return s;
}

/* Backward of one head; returns dz (B, F) (malloc'd); parameter grads into dg. */
static double *head_backward(struct rec_model *m, struct head *h, int B, int F, const float *label,
                             double inv_n, double *dg) {
    const int nl = h->nl;
    int po = h->pi[2 + 3 * nl];
    int in_last = nl ? (int)m->params[h->pi[2 + 3 * (nl - 1)]].shape[0] : F;
    double *dlog = dcalloc((size_t)B * 2);
    for (int b = 0; b < B; b++) {
        int y = label[b] > 0.5f ? 0 : 1;
        double qy = h->q[2 * b + y], gy = -inv_n / (qy + 1e-8);
        for (int k = 0; k < 2; k++)
            dlog[2 * b + k] = h->q[2 * b + k] * ((k == y ? gy : 0.0) - gy * qy);
    }
    const double *xin = nl ? h->o[nl - 1] : h->y;
    double *dx = dcalloc((size_t)B * in_last);
    lin_bwd(m->ops, B, in_last, 2, xin, dparam(m, po), dlog, dx, dg + m->params[po].offset,
            dg + m->params[po + 1].offset);
    free(dlog);
    for (int l = nl - 1; l >= 0; l--) {
        int pw = h->pi[2 + 3 * l], pa = h->pi[4 + 3 * l];
        int out = (int)m->params[pw].shape[0], in = (int)m->params[pw].shape[1];
        double al = dparam(m, pa)[0], dal = 0.0;
        for (size_t i = 0; i < (size_t)B * out; i++) { /* PReLU */
            if (h->a[l][i] > 0)
                continue;
            dal += h->a[l][i] * dx[i];
            dx[i] *= al;
        }
        dg[m->params[pa].offset] += dal;
        const double *x = l ? h->o[l - 1] : h->y;
        double *dxi = dcalloc((size_t)B * in);
        lin_bwd(m->ops, B, in, out, x, dparam(m, pw), dx, dxi, dg + m->params[pw].offset,
                dg + m->params[pw + 1].offset);
        free(dx);
        dx = dxi;
    }
    /* BatchNorm: dx currently d(y) (B, F) */
    const double *g = dparam(m, h->pi[0]);
    double *dgam = dg + m->params[h->pi[0]].offset, *dbet = dg + m->params[h->pi[1]].offset;
    double *sums = dcalloc((size_t)2 * F + 1);
    for (int b = 0; b < B; b++)
        for (int f = 0; f < F; f++) {
            size_t i = (size_t)b * F + f;
            dgam[f] += dx[i] * h->xh[i];
            dbet[f] += dx[i];
            double dxh = dx[i] * g[f];
            sums[f] += dxh;
            sums[F + f] += dxh * h->xh[i];
        }
    sums[2 * F] = B;
    allsum(m, sums, 2 * F + 1);
    double N = sums[2 * F];
    for (int b = 0; b < B; b++)
        for (int f = 0; f < F; f++) {
            size_t i = (size_t)b * F + f;
            double dxh = dx[i] * g[f];
            dx[i] = h->rstd[f] / N * (N * dxh - sums[f] - h->xh[i] * sums[F + f]);
        }
    free(sums);
    return dx;
}

/* Features [t, h, t*h] (B, 3R). */
static double *features(const double *t, const double *h, int B, int R) {
    double *z = dcalloc((size_t)B * 3 * R);
    for (int b = 0; b < B; b++)
        for (int k = 0; k < R; k++) {
            double tv = t[(size_t)b * R + k], hv = h[(size_t)b * R + k];
            z[(size_t)b * 3 * R + k] = tv;
            z[(size_t)b * 3 * R + R + k] = hv;
            z[(size_t)b * 3 * R + 2 * R + k] = tv * hv;
        }
    return z;
}

/* Fill the concatenation [item; cat; time] of set `set` for target and history. */
static void fill_raw(struct rec_model *m, struct rec_ws *w, int set, double *t, double *hh) {
    const int L = m->c.L, B = w->B;
    const int *dims = set ? m->c.adim : m->c.dim;
    const int D = dims[0] + dims[1] + dims[2];
    for (int b = 0; b < B; b++) {
        for (int j = -1; j < L; j++) {
            double *dst = j < 0 ? t + (size_t)b * D : hh + ((size_t)b * L + j) * D;
            int off = 0;
            for (int k = 0; k < 3; k++) {
                int ix = j < 0 ? w->tix[k][b] : w->hix[k][(size_t)b * L + j];
                if (ix >= 0) {
                    const float *src = w->rows[set][k] + (size_t)ix * dims[k];
                    for (int e = 0; e < dims[k]; e++)
                        dst[off + e] = src[e];
                }
                off += dims[k];
            }
        }
    }
}

/* Scaled dot-product score of target q and behaviour k (attention dims of the model). */
static double score(const double *q, const double *k, int sem, int Da, double cs, double ct) {
    double a = 0.0, t = 0.0;
    for (int e = 0; e < sem; e++)
        a += q[e] * k[e];
    for (int e = sem; e < Da; e++)
        t += q[e] * k[e];
    return a * cs + t * ct;
}

/* The attention dims that score() splits: sem = item + cat. */
static void attn_split(const struct rec_model *m, int *sem, int *Da) {
    const int *d = m->c.emb == REC_EMB_TWIN_PROJ ? m->c.dim : m->c.adim;
    *sem = d[0] + d[1];
    *Da = d[0] + d[1] + d[2];
}

struct rec_out rec_forward(struct rec_model *m, const struct rec_batch *bt, int train, double inv_n,
                           double *prob) {
    ws_free(m);
    struct rec_ws *w = HW_CALLOC(1, sizeof(*w));
    m->ws = w;
    const int B = bt->B, L = m->c.L, K = m->c.K, R = dR(m), A = dA(m), F = 3 * R;
    w->B = B;
    w->train = train;
    w->inv_n = inv_n;
    w->label = HW_MALLOC(sizeof(float) * (size_t)(B ? B : 1));
    if (B)
        memcpy(w->label, bt->label, sizeof(float) * (size_t)B);
    /* dense parameters in double */
    w->dense = dcalloc(m->n_dense);
    for (size_t i = 0; i < m->n_dense; i++)
        w->dense[i] = m->param_mem[i];
    /* unique ids per kind, and each occurrence's index */
    w->nvalid = HW_CALLOC((size_t)(B ? B : 1), sizeof(int));
    for (int k = 0; k < 3; k++) {
        int32_t *v = HW_MALLOC(sizeof(int32_t) * ((size_t)B * (L + 1) + 1));
        int n = 0;
        for (int b = 0; b < B; b++) {
            v[n++] = k == 0 ? bt->item[b] : k == 1 ? bt->cat[b] : 0;
            for (int j = 0; j < L; j++)
                if (bt->hitem[(size_t)b * L + j] > 0)
                    v[n++] = k == 0   ? bt->hitem[(size_t)b * L + j]
                             : k == 1 ? bt->hcat[(size_t)b * L + j]
                                      : L - j;
        }
        for (int i = 0; i < n; i++)
            HW_ASSERT(v[i] >= 0 && v[i] < m->rows[k]);
        w->nu[k] = uniq(v, n);
        w->u[k] = v;
        w->tix[k] = HW_MALLOC(sizeof(int) * (size_t)(B ? B : 1));
        w->hix[k] = HW_MALLOC(sizeof(int) * ((size_t)B * L + 1));
        for (int b = 0; b < B; b++) {
            w->tix[k][b] = find_id(v, w->nu[k], k == 0 ? bt->item[b] : k == 1 ? bt->cat[b] : 0);
            for (int j = 0; j < L; j++) {
                size_t i = (size_t)b * L + j;
                w->hix[k][i] = bt->hitem[i] > 0 ? find_id(v, w->nu[k],
                                                          k == 0   ? bt->hitem[i]
                                                          : k == 1 ? bt->hcat[i]
                                                                   : L - j)
                                                : -1;
            }
        }
        for (int set = 0; set < 2; set++) {
            int dim = set ? m->c.adim[k] : m->c.dim[k];
            w->rows[set][k] = HW_MALLOC(sizeof(float) * ((size_t)w->nu[k] * dim + 1));
            gather_rows(m, set, k, w->u[k], w->nu[k], w->rows[set][k]);
        }
    }
    for (int b = 0; b < B; b++)
        for (int j = 0; j < L; j++)
            w->nvalid[b] += bt->hitem[(size_t)b * L + j] > 0;
    w->at = dcalloc((size_t)B * A);
    w->ah = dcalloc((size_t)B * L * A);
    w->rt = dcalloc((size_t)B * R);
    w->rh = dcalloc((size_t)B * L * R);
    fill_raw(m, w, 1, w->at, w->ah);
    fill_raw(m, w, 0, w->rt, w->rh);
    if (m->c.emb == REC_EMB_TWIN_PROJ) {
        w->qa = dcalloc((size_t)B * R);
        w->ka = dcalloc((size_t)B * L * R);
        w->tr = dcalloc((size_t)B * R);
        w->vr = dcalloc((size_t)B * L * R);
        lin_fwd(m->ops, B, R, R, w->at, dparam(m, m->proj[0]), NULL, w->qa);
        lin_fwd(m->ops, B * L, R, R, w->ah, dparam(m, m->proj[1]), NULL, w->ka);
        lin_fwd(m->ops, B, R, R, w->rt, dparam(m, m->proj[2]), NULL, w->tr);
        lin_fwd(m->ops, B * L, R, R, w->rh, dparam(m, m->proj[3]), NULL, w->vr);
    } else {
        w->qa = w->at;
        w->ka = w->ah;
        w->tr = w->rt;
        w->vr = w->rh;
    }
    int sem, Da;
    attn_split(m, &sem, &Da);
    const double cs = 1.0 / sqrt((double)sem), ct = 1.0 / sqrt((double)(Da - sem));
    /* GSU: scores and the top-K index set */
    double t0 = log_now();
    w->s = dcalloc((size_t)B * L);
    w->idx = HW_MALLOC(sizeof(int32_t) * ((size_t)B * K + 1));
    for (int b = 0; b < B; b++) {
        double *s = w->s + (size_t)b * L;
        for (int j = 0; j < L; j++)
            s[j] = bt->hitem[(size_t)b * L + j] > 0
                       ? score(w->qa + (size_t)b * Da, w->ka + ((size_t)b * L + j) * Da, sem, Da,
                               cs, ct)
                       : MASKED;
    }
    double t1 = log_now();
    double *topv = dcalloc((size_t)K);
    for (int b = 0; b < B; b++)
        topk_into(w->s + (size_t)b * L, L, K, w->idx + (size_t)b * K, topv);
    free(topv);
    m->gsu_seconds += log_now() - t0;
    m->score_seconds += t1 - t0;
    /* ESU over the selected valid slots; aux attention over every valid slot */
    w->w = dcalloc((size_t)B * K);
    w->wall = dcalloc((size_t)B * L);
    w->h = dcalloc((size_t)B * R);
    w->hall = dcalloc((size_t)B * R);
    for (int b = 0; b < B; b++) {
        const double *s = w->s + (size_t)b * L;
        const double *v = w->vr + (size_t)b * L * R;
        rec_esu(s, w->idx + (size_t)b * K, K, v, R, w->w + (size_t)b * K, w->h + (size_t)b * R);
        rec_esu(s, NULL, L, v, R, w->wall + (size_t)b * L, w->hall + (size_t)b * R);
    }
    struct rec_out out = {0};
    w->main.nl = 2;
    w->main.pi = m->mlp;
    w->main.stats = m->stats;
    w->main.z = features(w->tr, w->h, B, R);
    head_forward(m, &w->main, B, F, train);
    out.ctr = head_loss(&w->main, bt->label, B, inv_n);
    if (m->c.aux) {
        w->aux.nl = 1;
        w->aux.pi = m->auxp;
        w->aux.stats = m->stats + 2 * (size_t)F;
        w->aux.z = features(w->tr, w->hall, B, R);
        head_forward(m, &w->aux, B, F, train);
        out.aux = head_loss(&w->aux, bt->label, B, inv_n);
    }
    out.loss = out.ctr + out.aux;
    if (prob)
        for (int b = 0; b < B; b++)
            prob[b] = w->main.q[2 * b];
    return out;
}

const double *rec_summary(const struct rec_model *m, int all) {
    return all ? m->ws->hall : m->ws->h;
}

const int32_t *rec_topk(const struct rec_model *m, int b) {
    return m->ws->idx + (size_t)b * m->c.K;
}

/* Softmax backward of weights wt over entries with scores; dw in, ds out (added). */
static void attn_backward(struct rec_model *m, struct rec_ws *w, int b, const double *dh,
                          const int32_t *slots, int n, const double *wt, double *dq, double *dk,
                          double *dvr) {
    const int L = m->c.L, R = dR(m);
    int sem, Da;
    attn_split(m, &sem, &Da);
    double *dw = dcalloc((size_t)n);
    double dot = 0.0;
    for (int i = 0; i < n; i++) {
        int j = slots ? slots[i] : i;
        if (wt[i] == 0.0)
            continue;
        const double *v = w->vr + ((size_t)b * L + j) * R;
        double *dv = dvr + ((size_t)b * L + j) * R;
        for (int e = 0; e < R; e++) {
            dw[i] += dh[e] * v[e];
            dv[e] += wt[i] * dh[e];
        }
        dot += wt[i] * dw[i];
    }
    const double cs = 1.0 / sqrt((double)sem), ct = 1.0 / sqrt((double)(Da - sem));
    const double *q = w->qa + (size_t)b * Da;
    for (int i = 0; i < n; i++) {
        int j = slots ? slots[i] : i;
        if (wt[i] == 0.0)
            continue;
        double ds = wt[i] * (dw[i] - dot);
        const double *k = w->ka + ((size_t)b * L + j) * Da;
        double *dkj = dk + ((size_t)b * L + j) * Da;
        for (int e = 0; e < Da; e++) {
            double c = e < sem ? cs : ct;
            dq[(size_t)b * Da + e] += ds * c * k[e];
            dkj[e] += ds * c * q[e];
        }
    }
    free(dw);
}

/* d raw (target, history) of set `set` -> unique-row grads -> the table grads. */
static void scatter_set(struct rec_model *m, struct rec_ws *w, int set, const double *dt,
                        const double *dh) {
    const int L = m->c.L, B = w->B;
    const int *dims = set ? m->c.adim : m->c.dim;
    const int D = dims[0] + dims[1] + dims[2];
    int off = 0;
    for (int k = 0; k < 3; k++) {
        double *acc = dcalloc((size_t)w->nu[k] * dims[k]);
        for (int b = 0; b < B; b++)
            for (int j = -1; j < L; j++) {
                int ix = j < 0 ? w->tix[k][b] : w->hix[k][(size_t)b * L + j];
                if (ix < 0)
                    continue;
                const double *src =
                    (j < 0 ? dt + (size_t)b * D : dh + ((size_t)b * L + j) * D) + off;
                for (int e = 0; e < dims[k]; e++)
                    acc[(size_t)ix * dims[k] + e] += src[e];
            }
        scatter_rows(m, set, k, w->u[k], w->nu[k], acc);
        if (m->observe && k == 0) { /* keep this role's item-row gradients (this rank's part) */
            free(m->obs[set]);
            m->obs[set] = acc;
            m->obs_rows = w->nu[0];
            m->obs_dim = dims[0];
        } else {
            free(acc);
        }
        off += dims[k];
    }
}

void rec_backward(struct rec_model *m) {
    struct rec_ws *w = m->ws;
    free(m->obs[0]);
    free(m->obs[1]);
    m->obs[0] = m->obs[1] = NULL;
    HW_ASSERT(w && w->train);
    const int B = w->B, L = m->c.L, K = m->c.K, R = dR(m), F = 3 * R;
    int sem, Da;
    attn_split(m, &sem, &Da);
    double *dg = dcalloc(m->n_dense);
    double *dtr = dcalloc((size_t)B * R), *dvr = dcalloc((size_t)B * L * R);
    double *dqa = dcalloc((size_t)B * Da), *dka = dcalloc((size_t)B * L * Da);
    double *dhs[2] = {NULL, NULL};
    struct head *hs[2] = {&w->main, &w->aux};
    for (int hi = 0; hi < (m->c.aux ? 2 : 1); hi++) {
        double *dz = head_backward(m, hs[hi], B, F, w->label, w->inv_n, dg);
        const double *hv = hi ? w->hall : w->h;
        double *dh = dhs[hi] = dcalloc((size_t)B * R);
        for (int b = 0; b < B; b++)
            for (int e = 0; e < R; e++) {
                const double *zb = dz + (size_t)b * F;
                double tv = w->tr[(size_t)b * R + e], hvv = hv[(size_t)b * R + e];
                dtr[(size_t)b * R + e] += zb[e] + zb[2 * R + e] * hvv;
                dh[(size_t)b * R + e] = zb[R + e] + zb[2 * R + e] * tv;
            }
        free(dz);
    }
    for (int b = 0; b < B; b++) {
        attn_backward(m, w, b, dhs[0] + (size_t)b * R, w->idx + (size_t)b * K, K,
                      w->w + (size_t)b * K, dqa, dka, dvr);
        if (m->c.aux)
            attn_backward(m, w, b, dhs[1] + (size_t)b * R, NULL, L, w->wall + (size_t)b * L, dqa,
                          dka, dvr);
    }
    free(dhs[0]);
    free(dhs[1]);
    if (m->c.emb == REC_EMB_TWIN_PROJ) {
        /* projections: raw grads = d(proj) P; both roles land in the one shared table set */
        double *drt = dcalloc((size_t)B * R), *drh = dcalloc((size_t)B * L * R);
        double *tmp = dcalloc((size_t)B * L * R);
        lin_bwd(m->ops, B, R, R, w->at, dparam(m, m->proj[0]), dqa, tmp,
                dg + m->params[m->proj[0]].offset, NULL);
        for (size_t i = 0; i < (size_t)B * R; i++)
            drt[i] += tmp[i];
        lin_bwd(m->ops, B, R, R, w->rt, dparam(m, m->proj[2]), dtr, tmp,
                dg + m->params[m->proj[2]].offset, NULL);
        for (size_t i = 0; i < (size_t)B * R; i++)
            drt[i] += tmp[i];
        lin_bwd(m->ops, B * L, R, R, w->ah, dparam(m, m->proj[1]), dka, tmp,
                dg + m->params[m->proj[1]].offset, NULL);
        for (size_t i = 0; i < (size_t)B * L * R; i++)
            drh[i] += tmp[i];
        lin_bwd(m->ops, B * L, R, R, w->rh, dparam(m, m->proj[3]), dvr, tmp,
                dg + m->params[m->proj[3]].offset, NULL);
        for (size_t i = 0; i < (size_t)B * L * R; i++)
            drh[i] += tmp[i];
        free(tmp);
        scatter_set(m, w, 0, drt, drh);
        free(drt);
        free(drh);
    } else {
        /* TWIN: both sets name the same tables, so the table gets the sum of both roles */
        scatter_set(m, w, 0, dtr, dvr);
        scatter_set(m, w, 1, dqa, dka);
    }
    for (size_t i = 0; i < m->n_dense; i++)
        m->grad_mem[i] += (float)dg[i];
    free(dg);
    free(dtr);
    free(dvr);
    free(dqa);
    free(dka);
}

double rec_l2(struct rec_model *m, int add_grad) {
    double s = 0.0;
    for (int i = 0; i < m->n_params; i++) {
        const struct param *p = &m->params[i];
        if (!p->decay)
            continue;
        const float *x = m->param_mem + p->offset;
        float *g = m->grad_mem + p->offset;
        for (size_t j = 0; j < p->numel; j++) {
            s += (double)x[j] * x[j];
            if (add_grad)
                g[j] += (float)(2.0 * m->c.l2 * x[j]);
        }
    }
    return m->c.l2 * s;
}
