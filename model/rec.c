/* model/rec.c -- the DARE / TWIN recommendation model: parameter table, lookups, forward and
 * hand-written backward in double (see rec.h). */
#include "rec.h"

#include "../core/check.h"
#include "../core/log.h"
#include "../core/rng.h"
#include "../dist/emb_shard.h"
#include "../ops/rec_ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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
    float *host = HW_CALLOC(m->num_params + 1, sizeof(float));
    for (int i = 0; i < m->n_params; i++) {
        struct param *p = &m->params[i];
        float *w = host + p->offset;
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
    m->ops->upload(m->param_mem, host, sizeof(float) * m->num_params);
    free(host);
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
/* backend buffers and host bookkeeping */

/* Zeroed backend buffers of n doubles / int32s (at least one element). */
static double *dalloc(const struct rec_model *m, size_t n) {
    return m->ops->alloc(sizeof(double) * (n ? n : 1));
}
static int32_t *ialloc(const struct rec_model *m, size_t n) {
    return m->ops->alloc(sizeof(int32_t) * (n ? n : 1));
}
/* A backend copy of n host int32s. */
static int32_t *iupload(const struct rec_model *m, const int32_t *h, size_t n) {
    int32_t *d = ialloc(m, n);
    if (n)
        m->ops->upload(d, h, sizeof(int32_t) * n);
    return d;
}

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

void rec_topk_indices(const double *s, int n, int k, int32_t *idx) {
    double *val = HW_MALLOC(sizeof(double) * (size_t)k);
    rec_topk_host(s, n, k, idx, val);
    free(val);
}

void rec_esu(const double *s, const int32_t *slots, int n, const double *v, int dim, double *wt,
             double *h) {
    rec_esu_host(s, slots, n, v, dim, wt, h);
}

/* y (B, out) = x (B, in) W^T + b; W (out, in). */
static void lin_fwd(const struct rec_model *m, int B, int in, int out, const double *x,
                    const double *W, const double *bias, double *y) {
    m->ops->gemm(HW_F64, HW_F64, 0, 1, B, out, in, 1.0, x, (size_t)in, W, (size_t)in, 0.0, y,
                 (size_t)out);
    if (bias)
        m->ops->rec->add_bias(B, out, y, bias);
}

/* dW += dy^T x, db += sum dy, dx = dy W (dx may be NULL). */
static void lin_bwd(const struct rec_model *m, int B, int in, int out, const double *x,
                    const double *W, const double *dy, double *dx, double *dW, double *db) {
    m->ops->gemm(HW_F64, HW_F64, 1, 0, out, in, B, 1.0, dy, (size_t)out, x, (size_t)in, 1.0, dW,
                 (size_t)in);
    if (db)
        m->ops->rec->colsum(B, out, dy, db, 1);
    if (dx)
        m->ops->gemm(HW_F64, HW_F64, 0, 0, B, in, out, 1.0, dy, (size_t)out, W, (size_t)in, 0.0, dx,
                     (size_t)in);
}

/* ------------------------------------------------------------------------------------------ */
/* forward state */

/* One MLP head: BN -> fc1 -> PReLU [-> fc2 -> PReLU] -> fc_out (2). Arrays in backend memory
 * except where noted. */
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
    double *stats; /* running mean, var (2F; host) */
};

struct rec_ws {
    int B, train;
    double inv_n;
    int nu[3];
    int32_t *u[3];                          /* unique ids per kind (host) */
    int32_t *tix[3], *hix[3];               /* (B), (B, L): index into u, -1 = empty slot (host) */
    int32_t *tix_d[3], *hix_d[3], *hitem_d; /* their backend copies, and the history items */
    float *rows[2][3];                      /* gathered rows per set, kind */
    double *at, *ah, *rt, *rh; /* raw concatenations (B, dA), (B*L, dA), (B, dR), (B*L, dR) */
    double *qa, *ka, *tr, *vr; /* attention / representation inputs (alias raw unless proj) */
    double *s;                 /* (B, L) scores */
    int32_t *idx;              /* (B, K) */
    int32_t *idx_host;         /* rec_topk's host copy (on demand) */
    double *w;                 /* (B, K) ESU weights */
    double *wall;              /* (B, L) aux weights */
    double *h, *hall;          /* (B, dR) */
    float *label;              /* (B) */
    struct head main, aux;
    double *dense; /* double copy of the dense parameters */
};

static void head_free(const struct rec_model *m, struct head *h) {
    double *b[] = {h->z,    h->xh,   h->rstd, h->mean,  h->y, h->a[0],
                   h->a[1], h->o[0], h->o[1], h->logit, h->q};
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++)
        m->ops->free(b[i]);
}

static void ws_free(struct rec_model *m) {
    struct rec_ws *w = m->ws;
    if (!w)
        return;
    const struct ops *o = m->ops;
    for (int k = 0; k < 3; k++) {
        free(w->u[k]);
        free(w->tix[k]);
        free(w->hix[k]);
        o->free(w->tix_d[k]);
        o->free(w->hix_d[k]);
        o->free(w->rows[0][k]);
        o->free(w->rows[1][k]);
    }
    o->free(w->hitem_d);
    if (w->qa != w->at) {
        o->free(w->qa);
        o->free(w->ka);
        o->free(w->tr);
        o->free(w->vr);
    }
    void *b[] = {w->at, w->ah,   w->rt, w->rh,   w->s,     w->idx,
                 w->w,  w->wall, w->h,  w->hall, w->label, w->dense};
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++)
        o->free(b[i]);
    free(w->idx_host);
    head_free(m, &w->main);
    head_free(m, &w->aux);
    free(w);
    m->ws = NULL;
}

static const double *dparam(const struct rec_model *m, int i) {
    return m->ws->dense + m->params[i].offset;
}

/* Rows of table [set][kind] for the unique ids (float, (nu, dim), backend memory). */
static void gather_rows(struct rec_model *m, int set, int k, const int32_t *ids, int n,
                        float *out) {
    const struct param *p = &m->params[m->tab[set][k]];
    const float *local = m->param_mem + p->offset;
    int dim = (int)p->shape[1];
    if (m->p > 1) {
        float *host = HW_MALLOC(sizeof(float) * ((size_t)n * dim + 1));
        emb_shard_gather(m->d, DIST_DP, m->ops, local, m->rows[k], dim, ids, n, host);
        m->ops->upload(out, host, sizeof(float) * (size_t)n * dim);
        free(host);
        return;
    }
    int32_t *ids_d = iupload(m, ids, (size_t)n);
    m->ops->embed_forward(out, ids_d, local, n, dim, (int)p->shape[0]);
    m->ops->free(ids_d);
}

/* g: (n, dim) doubles in backend memory */
static void scatter_rows(struct rec_model *m, int set, int k, const int32_t *ids, int n,
                         const double *g) {
    const struct param *p = &m->params[m->tab[set][k]];
    float *local = m->grad_mem + p->offset;
    int dim = (int)p->shape[1];
    if (m->p > 1) {
        double *host = HW_MALLOC(sizeof(double) * ((size_t)n * dim + 1));
        m->ops->download(host, g, sizeof(double) * (size_t)n * dim);
        emb_shard_scatter_add(m->d, DIST_DP, m->ops, local, m->rows[k], dim, ids, n, host);
        free(host);
        return;
    }
    int32_t *ids_d = iupload(m, ids, (size_t)n);
    m->ops->rows_scatter_add_f64(local, ids_d, n, dim, g);
    m->ops->free(ids_d);
}

/* Sum a small host double vector over the ranks (BatchNorm statistics). */
static void allsum(struct rec_model *m, double *v, int n) {
    if (m->d && m->d->world > 1)
        dist_allreduce_group_doubles(m->d, DIST_DP, v, n);
}

/* n backend doubles to a new host array */
static double *download_d(const struct rec_model *m, const double *x, size_t n) {
    double *h = HW_MALLOC(sizeof(double) * (n ? n : 1));
    if (n)
        m->ops->download(h, x, sizeof(double) * n);
    return h;
}

static void head_forward(struct rec_model *m, struct head *h, int B, int F, int train) {
    const struct ops *o = m->ops;
    const struct rec_ops *k = o->rec;
    const double eps = m->bn_eps;
    const double *g = dparam(m, h->pi[0]), *be = dparam(m, h->pi[1]);
    h->xh = dalloc(m, (size_t)B * F);
    h->y = dalloc(m, (size_t)B * F);
    h->rstd = dalloc(m, (size_t)F);
    h->mean = dalloc(m, (size_t)F);
    /* the statistics are small: summed here, over the ranks and finished on the host */
    double *mean = HW_CALLOC((size_t)F + 1, sizeof(double)), *rstd = HW_CALLOC((size_t)F, 8);
    if (train) {
        /* batch statistics over every rank's samples: two passes for accuracy */
        double *acc = dalloc(m, (size_t)F);
        k->colsum(B, F, h->z, acc, 0);
        o->download(mean, acc, sizeof(double) * F);
        mean[F] = B;
        allsum(m, mean, F + 1);
        double N = mean[F];
        for (int f = 0; f < F; f++)
            mean[f] = mean[f] / N;
        o->upload(h->mean, mean, sizeof(double) * F);
        k->colsum_sq_centered(B, F, h->z, h->mean, acc);
        double *var = download_d(m, acc, (size_t)F);
        allsum(m, var, F);
        for (int f = 0; f < F; f++) {
            double v = var[f] / N;
            rstd[f] = 1.0 / sqrt(v + eps);
            double unb = N > 1 ? v * N / (N - 1) : v;
            h->stats[f] = (1 - m->bn_momentum) * h->stats[f] + m->bn_momentum * mean[f];
            h->stats[F + f] = (1 - m->bn_momentum) * h->stats[F + f] + m->bn_momentum * unb;
        }
        free(var);
        o->free(acc);
    } else {
        for (int f = 0; f < F; f++) {
            mean[f] = h->stats[f];
            rstd[f] = 1.0 / sqrt(h->stats[F + f] + eps);
        }
        o->upload(h->mean, mean, sizeof(double) * F);
    }
    o->upload(h->rstd, rstd, sizeof(double) * F);
    free(mean);
    free(rstd);
    k->bn_apply(B, F, h->z, h->mean, h->rstd, g, be, h->xh, h->y);
    const double *x = h->y;
    int in = F;
    for (int l = 0; l < h->nl; l++) {
        int pw = h->pi[2 + 3 * l];
        int out = (int)m->params[pw].shape[0];
        h->a[l] = dalloc(m, (size_t)B * out);
        h->o[l] = dalloc(m, (size_t)B * out);
        lin_fwd(m, B, in, out, x, dparam(m, pw), dparam(m, pw + 1), h->a[l]);
        k->prelu_fwd((size_t)B * out, h->a[l], dparam(m, h->pi[4 + 3 * l]), h->o[l]);
        x = h->o[l];
        in = out;
    }
    int po = h->pi[2 + 3 * h->nl];
    h->logit = dalloc(m, (size_t)B * 2);
    h->q = dalloc(m, (size_t)B * 2);
    lin_fwd(m, B, in, 2, x, dparam(m, po), dparam(m, po + 1), h->logit);
    k->softmax2(B, h->logit, h->q);
}

/* -sum_b inv_n log(q_{b,y} + 1e-8); y = 0 for a click. */
static double head_loss(const struct rec_model *m, const struct head *h, const float *label, int B,
                        double inv_n) {
    double *t = dalloc(m, (size_t)B);
    m->ops->rec->xent2(B, h->q, label, inv_n, t, NULL);
    double *th = download_d(m, t, (size_t)B), s = 0.0;
    for (int b = 0; b < B; b++)
        s -= th[b];
    free(th);
    m->ops->free(t);
    return s;
}

/* Backward of one head; returns dz (B, F) (backend memory); parameter grads into dg. */
static double *head_backward(struct rec_model *m, struct head *h, int B, int F, const float *label,
                             double inv_n, double *dg) {
    const struct ops *o = m->ops;
    const struct rec_ops *k = o->rec;
    const int nl = h->nl;
    int po = h->pi[2 + 3 * nl];
    int in_last = nl ? (int)m->params[h->pi[2 + 3 * (nl - 1)]].shape[0] : F;
    double *dlog = dalloc(m, (size_t)B * 2), *loss = dalloc(m, (size_t)B);
    k->xent2(B, h->q, label, inv_n, loss, dlog);
    o->free(loss);
    const double *xin = nl ? h->o[nl - 1] : h->y;
    double *dx = dalloc(m, (size_t)B * in_last);
    lin_bwd(m, B, in_last, 2, xin, dparam(m, po), dlog, dx, dg + m->params[po].offset,
            dg + m->params[po + 1].offset);
    o->free(dlog);
    for (int l = nl - 1; l >= 0; l--) {
        int pw = h->pi[2 + 3 * l], pa = h->pi[4 + 3 * l];
        int out = (int)m->params[pw].shape[0], in = (int)m->params[pw].shape[1];
        k->prelu_bwd((size_t)B * out, h->a[l], dparam(m, pa), dx, dg + m->params[pa].offset);
        const double *x = l ? h->o[l - 1] : h->y;
        double *dxi = dalloc(m, (size_t)B * in);
        lin_bwd(m, B, in, out, x, dparam(m, pw), dx, dxi, dg + m->params[pw].offset,
                dg + m->params[pw + 1].offset);
        o->free(dx);
        dx = dxi;
    }
    /* BatchNorm: dx currently d(y) (B, F) */
    const double *g = dparam(m, h->pi[0]);
    double *dgam = dg + m->params[h->pi[0]].offset, *dbet = dg + m->params[h->pi[1]].offset;
    double *sums = dalloc(m, (size_t)2 * F);
    k->bn_bwd_sums(B, F, dx, h->xh, g, dgam, dbet, sums);
    double *hs = HW_MALLOC(sizeof(double) * (2 * (size_t)F + 1));
    o->download(hs, sums, sizeof(double) * 2 * F);
    hs[2 * F] = B;
    allsum(m, hs, 2 * F + 1);
    o->upload(sums, hs, sizeof(double) * 2 * F);
    k->bn_bwd_apply(B, F, dx, g, h->rstd, h->xh, sums, hs[2 * F]);
    free(hs);
    o->free(sums);
    return dx;
}

/* The concatenation [item; cat; time] of set `set` for target and history. */
static void fill_raw(struct rec_model *m, struct rec_ws *w, int set, double *t, double *hh) {
    const int *dims = set ? m->c.adim : m->c.dim;
    const int D = dims[0] + dims[1] + dims[2];
    int off = 0;
    for (int k = 0; k < 3; k++) {
        m->ops->rec->gather_concat(w->B, m->c.L, w->tix_d[k], w->hix_d[k], w->rows[set][k], dims[k],
                                   off, D, t, hh);
        off += dims[k];
    }
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
    const struct ops *o = m->ops;
    const struct rec_ops *rk = o->rec;
    struct rec_ws *w = HW_CALLOC(1, sizeof(*w));
    m->ws = w;
    const int B = bt->B, L = m->c.L, K = m->c.K, R = dR(m), A = dA(m), F = 3 * R;
    w->B = B;
    w->train = train;
    w->inv_n = inv_n;
    w->label = o->alloc(sizeof(float) * (size_t)(B ? B : 1));
    if (B)
        o->upload(w->label, bt->label, sizeof(float) * (size_t)B);
    w->hitem_d = iupload(m, bt->hitem, (size_t)B * L);
    /* dense parameters in double */
    w->dense = dalloc(m, m->n_dense);
    rk->to_f64(m->n_dense, m->param_mem, w->dense);
    /* unique ids per kind, and each occurrence's index (host), then the rows */
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
        w->tix[k] = HW_MALLOC(sizeof(int32_t) * (size_t)(B ? B : 1));
        w->hix[k] = HW_MALLOC(sizeof(int32_t) * ((size_t)B * L + 1));
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
        w->tix_d[k] = iupload(m, w->tix[k], (size_t)B);
        w->hix_d[k] = iupload(m, w->hix[k], (size_t)B * L);
        for (int set = 0; set < 2; set++) {
            int dim = set ? m->c.adim[k] : m->c.dim[k];
            w->rows[set][k] = o->alloc(sizeof(float) * ((size_t)w->nu[k] * dim + 1));
            gather_rows(m, set, k, w->u[k], w->nu[k], w->rows[set][k]);
        }
    }
    w->at = dalloc(m, (size_t)B * A);
    w->ah = dalloc(m, (size_t)B * L * A);
    w->rt = dalloc(m, (size_t)B * R);
    w->rh = dalloc(m, (size_t)B * L * R);
    fill_raw(m, w, 1, w->at, w->ah);
    fill_raw(m, w, 0, w->rt, w->rh);
    if (m->c.emb == REC_EMB_TWIN_PROJ) {
        w->qa = dalloc(m, (size_t)B * R);
        w->ka = dalloc(m, (size_t)B * L * R);
        w->tr = dalloc(m, (size_t)B * R);
        w->vr = dalloc(m, (size_t)B * L * R);
        lin_fwd(m, B, R, R, w->at, dparam(m, m->proj[0]), NULL, w->qa);
        lin_fwd(m, B * L, R, R, w->ah, dparam(m, m->proj[1]), NULL, w->ka);
        lin_fwd(m, B, R, R, w->rt, dparam(m, m->proj[2]), NULL, w->tr);
        lin_fwd(m, B * L, R, R, w->rh, dparam(m, m->proj[3]), NULL, w->vr);
    } else {
        w->qa = w->at;
        w->ka = w->ah;
        w->tr = w->rt;
        w->vr = w->rh;
    }
    int sem, Da;
    attn_split(m, &sem, &Da);
    const double cs = 1.0 / sqrt((double)sem), ct = 1.0 / sqrt((double)(Da - sem));
    /* GSU: scores and the top-K index set (timed to their end on the device) */
    double t0 = log_now();
    w->s = dalloc(m, (size_t)B * L);
    w->idx = ialloc(m, (size_t)B * K);
    rk->scores(B, L, w->hitem_d, w->qa, w->ka, sem, Da, cs, ct, w->s);
    o->synchronize();
    double t1 = log_now();
    rk->topk(B, L, K, w->s, w->idx);
    o->synchronize();
    m->gsu_seconds += log_now() - t0;
    m->score_seconds += t1 - t0;
    /* ESU over the selected valid slots; aux attention over every valid slot */
    w->w = dalloc(m, (size_t)B * K);
    w->wall = dalloc(m, (size_t)B * L);
    w->h = dalloc(m, (size_t)B * R);
    w->hall = dalloc(m, (size_t)B * R);
    rk->esu(B, K, L, w->s, w->idx, w->vr, R, w->w, w->h);
    rk->esu(B, L, L, w->s, NULL, w->vr, R, w->wall, w->hall);
    struct rec_out out = {0};
    w->main.nl = 2;
    w->main.pi = m->mlp;
    w->main.stats = m->stats;
    w->main.z = dalloc(m, (size_t)B * F);
    rk->features(B, R, w->tr, w->h, w->main.z);
    head_forward(m, &w->main, B, F, train);
    out.ctr = head_loss(m, &w->main, w->label, B, inv_n);
    if (m->c.aux) {
        w->aux.nl = 1;
        w->aux.pi = m->auxp;
        w->aux.stats = m->stats + 2 * (size_t)F;
        w->aux.z = dalloc(m, (size_t)B * F);
        rk->features(B, R, w->tr, w->hall, w->aux.z);
        head_forward(m, &w->aux, B, F, train);
        out.aux = head_loss(m, &w->aux, w->label, B, inv_n);
    }
    out.loss = out.ctr + out.aux;
    if (prob && B) {
        double *q = download_d(m, w->main.q, (size_t)B * 2);
        for (int b = 0; b < B; b++)
            prob[b] = q[2 * b];
        free(q);
    }
    return out;
}

const double *rec_summary(const struct rec_model *m, int all) {
    return all ? m->ws->hall : m->ws->h;
}

const int32_t *rec_topk(const struct rec_model *m, int b) {
    struct rec_ws *w = m->ws;
    if (!w->idx_host) {
        w->idx_host = HW_MALLOC(sizeof(int32_t) * ((size_t)w->B * m->c.K + 1));
        m->ops->download(w->idx_host, w->idx, sizeof(int32_t) * (size_t)w->B * m->c.K);
    }
    return w->idx_host + (size_t)b * m->c.K;
}

/* d raw (target, history) of set `set` -> unique-row grads -> the table grads. The rows of
 * one unique id are summed in the order (sample, target then history slots), as one pass over
 * the batch would meet them. */
static void scatter_set(struct rec_model *m, struct rec_ws *w, int set, const double *dt,
                        const double *dh) {
    const int L = m->c.L, B = w->B;
    const int *dims = set ? m->c.adim : m->c.dim;
    const int D = dims[0] + dims[1] + dims[2];
    int off = 0;
    for (int k = 0; k < 3; k++) {
        const int nu = w->nu[k];
        /* occurrences grouped by unique id (a stable counting sort of the batch order) */
        int32_t *start = HW_CALLOC((size_t)nu + 2, sizeof(int32_t));
        int32_t *occ = HW_MALLOC(sizeof(int32_t) * ((size_t)B * (L + 1) + 1));
        for (int b = 0; b < B; b++)
            for (int j = -1; j < L; j++) {
                int ix = j < 0 ? w->tix[k][b] : w->hix[k][(size_t)b * L + j];
                if (ix >= 0)
                    start[ix + 2]++;
            }
        for (int u = 0; u < nu; u++)
            start[u + 2] += start[u + 1];
        for (int b = 0; b < B; b++)
            for (int j = -1; j < L; j++) {
                int ix = j < 0 ? w->tix[k][b] : w->hix[k][(size_t)b * L + j];
                if (ix >= 0)
                    occ[start[ix + 1]++] = j < 0 ? b : B + b * L + j;
            }
        int32_t *start_d = iupload(m, start, (size_t)nu + 1);
        int32_t *occ_d = iupload(m, occ, (size_t)start[nu]);
        double *acc = dalloc(m, (size_t)nu * dims[k]);
        m->ops->rec->rows_accum(nu, dims[k], start_d, occ_d, B, dt, dh, off, D, acc);
        scatter_rows(m, set, k, w->u[k], nu, acc);
        if (m->observe && k == 0) { /* keep this role's item-row gradients (this rank's part) */
            free(m->obs[set]);
            m->obs[set] = download_d(m, acc, (size_t)nu * dims[0]);
            m->obs_rows = nu;
            m->obs_dim = dims[0];
        }
        m->ops->free(acc);
        m->ops->free(start_d);
        m->ops->free(occ_d);
        free(start);
        free(occ);
        off += dims[k];
    }
}

void rec_backward(struct rec_model *m) {
    struct rec_ws *w = m->ws;
    const struct ops *o = m->ops;
    const struct rec_ops *rk = o->rec;
    free(m->obs[0]);
    free(m->obs[1]);
    m->obs[0] = m->obs[1] = NULL;
    HW_ASSERT(w && w->train);
    const int B = w->B, L = m->c.L, K = m->c.K, R = dR(m), F = 3 * R;
    int sem, Da;
    attn_split(m, &sem, &Da);
    const double cs = 1.0 / sqrt((double)sem), ct = 1.0 / sqrt((double)(Da - sem));
    double *dg = dalloc(m, m->n_dense);
    double *dtr = dalloc(m, (size_t)B * R), *dvr = dalloc(m, (size_t)B * L * R);
    double *dqa = dalloc(m, (size_t)B * Da), *dka = dalloc(m, (size_t)B * L * Da);
    double *dhs[2] = {NULL, NULL};
    struct head *hs[2] = {&w->main, &w->aux};
    for (int hi = 0; hi < (m->c.aux ? 2 : 1); hi++) {
        double *dz = head_backward(m, hs[hi], B, F, w->label, w->inv_n, dg);
        dhs[hi] = dalloc(m, (size_t)B * R);
        rk->features_bwd(B, R, dz, w->tr, hi ? w->hall : w->h, dtr, dhs[hi]);
        o->free(dz);
    }
    rk->attn_bwd(B, K, L, w->idx, w->w, dhs[0], w->vr, w->qa, w->ka, R, Da, sem, cs, ct, dqa, dka,
                 dvr);
    if (m->c.aux)
        rk->attn_bwd(B, L, L, NULL, w->wall, dhs[1], w->vr, w->qa, w->ka, R, Da, sem, cs, ct, dqa,
                     dka, dvr);
    o->free(dhs[0]);
    o->free(dhs[1]);
    if (m->c.emb == REC_EMB_TWIN_PROJ) {
        /* projections: raw grads = d(proj) P; both roles land in the one shared table set */
        double *drt = dalloc(m, (size_t)B * R), *drh = dalloc(m, (size_t)B * L * R);
        double *tmp = dalloc(m, (size_t)B * L * R);
        lin_bwd(m, B, R, R, w->at, dparam(m, m->proj[0]), dqa, tmp,
                dg + m->params[m->proj[0]].offset, NULL);
        rk->axpy((size_t)B * R, tmp, drt);
        lin_bwd(m, B, R, R, w->rt, dparam(m, m->proj[2]), dtr, tmp,
                dg + m->params[m->proj[2]].offset, NULL);
        rk->axpy((size_t)B * R, tmp, drt);
        lin_bwd(m, B * L, R, R, w->ah, dparam(m, m->proj[1]), dka, tmp,
                dg + m->params[m->proj[1]].offset, NULL);
        rk->axpy((size_t)B * L * R, tmp, drh);
        lin_bwd(m, B * L, R, R, w->rh, dparam(m, m->proj[3]), dvr, tmp,
                dg + m->params[m->proj[3]].offset, NULL);
        rk->axpy((size_t)B * L * R, tmp, drh);
        o->free(tmp);
        scatter_set(m, w, 0, drt, drh);
        o->free(drt);
        o->free(drh);
    } else {
        /* TWIN: both sets name the same tables, so the table gets the sum of both roles */
        scatter_set(m, w, 0, dtr, dvr);
        scatter_set(m, w, 1, dqa, dka);
    }
    rk->add_to_f32(m->n_dense, dg, m->grad_mem);
    double *b[] = {dg, dtr, dvr, dqa, dka};
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++)
        o->free(b[i]);
}

double rec_l2(struct rec_model *m, int add_grad) {
    double s = 0.0;
    for (int i = 0; i < m->n_params; i++) {
        const struct param *p = &m->params[i];
        if (!p->decay)
            continue;
        s = m->ops->rec->l2(p->numel, m->param_mem + p->offset,
                            add_grad ? m->grad_mem + p->offset : NULL, 2.0 * m->c.l2, s);
    }
    return m->c.l2 * s;
}
