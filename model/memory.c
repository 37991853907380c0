/* model/memory.c -- the Titans memory inside a transformer block: config, tensors, init, the
 * forward/backward over the chain of a sequence's pieces, and decoders (see memory.h). */
#include "memory.h"

#include "../core/check.h"
#include "../core/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* model.memory.layers items, as cfg_layer_memory numbers them (1 mal .. 4 mac) */
static const int kind_of_cfg[5] = {0, LK_MAL, LK_MAG, LK_MEMORY, LK_MAC};

void memory_config(struct gpt_config *gc, const struct cfg_model *m) {
    const struct cfg_memory *me = &m->memory;
    int any = 0, any_mac = 0;
    for (int l = 0; l < gc->L; l++) {
        gc->mem[l] = (unsigned char)kind_of_cfg[cfg_layer_memory(m, l)];
        any |= gc->mem[l] != 0;
    }
    if (!any)
        return;
    for (int l = 0; l < gc->L; l++)
        if (gc->mem[l] == LK_MAC) {
            any_mac = 1;
            gc->s2[l] = 0; /* its attention is the segment attention */
        }
    if (any_mac)
        gc->mem_seg = me->segment;
    for (int l = 0; l < gc->L; l++) /* persistent tokens: MAC and MAG layers */
        if (gc->mem[l] == LK_MAC || gc->mem[l] == LK_MAG)
            gc->mem_np = me->persistent;
    const int D = me->head_dim ? me->head_dim : m->d_model / me->heads;
    struct titans_cfg *t = &gc->mem_cfg;
    titans_cfg_default(t, m->d_model, me->heads, D);
    t->depth = me->depth;
    t->hidden = me->hidden ? me->hidden : 4 * D;
    t->c = me->chunk;
    /* 0: one TTT batch for the whole sequence (W* = W0), or per MAC segment */
    t->b = me->ttt_batch ? me->ttt_batch
           : any_mac     ? me->segment
                         : (gc->max_T + me->chunk - 1) / me->chunk * me->chunk;
    t->silu = 1;
    t->l2norm = 1;
    t->gate = me->gate;
    t->theta_per_chunk = me->theta_per_chunk;
    t->conv = me->conv;
    t->recompute = me->recompute;
    t->max_lr = me->max_lr;
    t->kappa = strcmp(me->kappa, "sum") ? 1.0 / D : 1.0;
    t->max_grad_norm = me->max_grad_norm;
    const char *e = titans_cfg_error(t);
    if (e)
        HW_DIE("model.memory: %s", e);
}

void memory_signature(const struct gpt_config *gc, char *out, size_t n) {
    char f[GPT_MAX_LAYERS + 1];
    int any = 0;
    for (int l = 0; l < gc->L; l++) {
        int code = 0; /* the config's numbering, kept in checkpoints' signatures */
        for (int k = 1; k < 5; k++)
            if (gc->mem[l] && kind_of_cfg[k] == gc->mem[l])
                code = k;
        f[l] = (char)('0' + code);
        any |= gc->mem[l] != 0;
    }
    f[gc->L] = 0;
    size_t k = strlen(out);
    if (!any || k >= n)
        return;
    const struct titans_cfg *t = &gc->mem_cfg;
    k += (size_t)snprintf(out + k, n - k, " mem=%s/H%d/D%d/L%d/h%d/c%d/b%d/k%d", f, t->H, t->D,
                          t->depth, t->hidden, t->c, t->b, t->conv);
    if (gc->mem_seg && k < n)
        k += (size_t)snprintf(out + k, n - k, "/seg%d", gc->mem_seg);
    if (gc->mem_np && k < n)
        snprintf(out + k, n - k, "/np%d", gc->mem_np);
}

/* ---- tensors ------------------------------------------------------------------------------------
 */

enum {
    T_WQ,
    T_WK,
    T_WV,
    T_WTH,
    T_BTH,
    T_WETA,
    T_BETA,
    T_WAL,
    T_BAL,
    T_WG,
    T_WO,
    T_CK,
    T_CV,
    T_CQ,
    T_W0,
    T_N
};

static const char *const tnames[T_N] = {"mem.wq",      "mem.wk",     "mem.wv",    "mem.w_theta",
                                        "mem.b_theta", "mem.w_eta",  "mem.b_eta", "mem.w_alpha",
                                        "mem.b_alpha", "mem.w_gate", "mem.wo",    "mem.conv_k",
                                        "mem.conv_v",  "mem.conv_q", "mem.w0"};

static int has_norm(const struct mem *s) {
    return s->kind == LK_MAL || s->kind == LK_MAC;
}

static int has_persist(const struct mem *s) {
    return (s->kind == LK_MAC || s->kind == LK_MAG) && s->m->c.mem_np > 0;
}

/* The module tensor t's global shape, split (hs: the heads are split over the head ranks) and
 * decay: the head index is the column of the projections and gates, the row of wo and w0,
 * the element of the biases. */
static void tensor_shape(const struct gpt_config *gc, int t, int hs, int64_t *rows, int64_t *cols,
                         int *shard, int *decay) {
    const struct titans_cfg *c = &gc->mem_cfg;
    struct titans_layout lo;
    titans_layout(c, &lo);
    const int64_t C = gc->C, H = c->H, HD = (int64_t)c->H * c->D;
    *decay = 1;
    switch (t) {
    case T_WQ:
    case T_WK:
    case T_WV:
        *rows = C, *cols = HD, *shard = hs ? 1 : -1;
        break;
    case T_WTH:
    case T_WETA:
    case T_WAL:
    case T_WG:
        *rows = C, *cols = H, *shard = hs ? 1 : -1;
        break;
    case T_BTH:
    case T_BETA:
    case T_BAL:
        *rows = H, *cols = 0, *decay = 0, *shard = hs ? 0 : -1;
        break;
    case T_WO:
        *rows = HD, *cols = C, *shard = hs ? 0 : -1;
        break;
    case T_CK:
    case T_CV:
    case T_CQ:
        *rows = c->conv, *cols = HD, *decay = 0, *shard = hs ? 1 : -1;
        break;
    default: /* T_W0 */
        *rows = H, *cols = (int64_t)lo.P, *decay = 0, *shard = hs ? 0 : -1;
        break;
    }
}

/* The module tensors present: the conv taps only with conv > 0. */
static int present(const struct gpt_config *gc, int t) {
    return !((t == T_CK || t == T_CV || t == T_CQ) && gc->mem_cfg.conv == 0);
}

/* Memory heads are split over the head ranks when they divide, else replicated. */
static int split(const struct gpt *m) {
    return m->tp.hp > 1 && m->c.mem_cfg.H % m->tp.hp == 0;
}

void mem_create(struct layer *ly, int kind) {
    struct gpt *m = ly->m;
    struct mem *s = HW_CALLOC(1, sizeof(*s));
    s->m = m;
    s->ly = ly;
    s->kind = kind;
    s->tc = m->c.mem_cfg;
    if (split(m))
        s->tc.H /= m->tp.hp;
    s->tc.ops = m->ops;
    titans_layout(&s->tc, &s->lo);
    s->HP = (size_t)s->tc.H * s->lo.P;
    s->K1 = s->tc.conv > 0 ? (size_t)s->tc.conv - 1 : 0;
    ly->state = s;
}

void mem_params(struct mem *s, struct param_table *t) {
    const struct gpt_config *gc = &s->m->c;
    struct layer *ly = s->ly;
    if (has_norm(s))
        layer_param(ly, t, "mem_norm.weight", gc->C, 0, -1, 0, 0.0f);
    if (has_persist(s)) /* replicated over head ranks; init std 0.02 */
        layer_param(ly, t, "mem.persistent", gc->mem_np, gc->C, -1, 0, 0.02f);
    for (int k = 0; k < T_N; k++) {
        if (!present(gc, k))
            continue;
        int64_t r, c;
        int shard, decay;
        tensor_shape(gc, k, split(s->m), &r, &c, &shard, &decay);
        layer_param(ly, t, tnames[k], r, c, shard, decay, 0.02f); /* mem_init_weights' init */
    }
}

void mem_bind(struct mem *s) {
    struct gpt *m = s->m;
    if (has_norm(s)) {
        const size_t o = m->params[layer_param_index(s->ly, "mem_norm.weight")].offset;
        s->norm_w = m->param_mem + o;
        s->norm_g = m->grad_mem + o;
    }
    if (has_persist(s)) {
        const size_t o = m->params[layer_param_index(s->ly, "mem.persistent")].offset;
        s->persist_w = m->param_mem + o;
        s->persist_g = m->grad_mem + o;
    }
    /* the module's tensors are consecutive in titans_layout order, so a rank's blocks form the
     * flat array of the module configured with its share of the heads */
    s->p_wq = &m->params[layer_param_index(s->ly, "mem.wq")];
    s->p_wo = &m->params[layer_param_index(s->ly, "mem.wo")];
    s->par = m->param_mem + s->p_wq->offset;
    s->dpar = m->grad_mem + s->p_wq->offset;
}

/* The module's init on the global tensors, then each rank keeps its block: the weights do not
 * depend on the rank grid. */
void mem_init_weights(struct mem *s, uint64_t seed) {
    struct gpt *m = s->m;
    const struct gpt_config *gc = &m->c;
    struct titans_layout lo;
    titans_layout(&gc->mem_cfg, &lo);
    float *glob = HW_CALLOC(lo.total, sizeof(float));
    char nm[64];
    snprintf(nm, sizeof(nm), "blocks.%d.mem", s->ly->l);
    titans_params_init_f(&gc->mem_cfg, glob, rng_hash2(seed, rng_hash_str(nm)));
    size_t goff = 0; /* the tensor's offset in the global flat array */
    for (int k = 0; k < T_N; k++) {
        if (!present(gc, k))
            continue;
        int64_t r, c;
        int shard, decay;
        tensor_shape(gc, k, 0, &r, &c, &shard, &decay);
        const struct param *p = &m->params[layer_param_index(s->ly, tnames[k])];
        const int64_t rows = p->shape[0], cols = p->ndim == 2 ? p->shape[1] : 1;
        const int64_t gcols = p->ndim == 2 ? p->gshape[1] : 1;
        float *x = HW_MALLOC(sizeof(float) * p->numel);
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++)
                x[i * cols + j] = glob[goff + (size_t)((i + p->goff[0]) * gcols + j +
                                                       (p->ndim == 2 ? p->goff[1] : 0))];
        m->ops->upload(m->param_mem + p->offset, x, sizeof(float) * p->numel);
        free(x);
        goff += (size_t)r * (size_t)(c ? c : 1);
    }
    HW_ASSERT(goff == lo.total);
    free(glob);
}

void mem_free(struct mem *s) {
    const struct ops *o = s->m->ops;
    if (s->tape)
        for (int i = 0; i < s->B * s->np; i++)
            titans_tape_free_f(&s->tape[i]);
    free(s->tape);
    mac_free(s);
    float *bufs[] = {s->x0, s->nrm, s->rstd, s->u,  s->y,  s->dn1,       s->dy,
                     s->du, s->W,   s->S,    s->Wo, s->So, s->chain.msg, s->chain.in};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++)
        o->free(bufs[i]);
    s->tape = NULL;
    s->x0 = s->nrm = s->rstd = s->u = s->y = s->dn1 = s->dy = s->du = NULL;
    s->W = s->S = s->Wo = s->So = s->chain.msg = s->chain.in = NULL;
    s->B = s->T = 0;
}

void mem_alloc(struct mem *s, int B, int T) {
    struct gpt *m = s->m;
    const struct ops *o = m->ops;
    const struct gpt_config *gc = &m->c;
    if (s->u && s->B == B && s->T == T)
        return;
    mem_free(s);
    s->B = B, s->T = T;
    /* under context parallelism a rank holds two zig-zag chunks of every sequence */
    s->np = m->tp.cp > 1 ? 2 : 1;
    if (s->kind != LK_MAC) {
        s->tape = HW_CALLOC((size_t)B * s->np, sizeof(*s->tape));
        for (int i = 0; i < B * s->np; i++)
            if (titans_tape_init_f(&s->tape[i], &s->tc, T / s->np))
                HW_DIE("model.memory: %s", titans_cfg_error(&s->tc));
    }
    const size_t NC = (size_t)B * T * gc->C, N = (size_t)B * T, F = sizeof(float);
    s->x0 = o->alloc(F * NC);
    s->nrm = o->alloc(F * NC);
    s->rstd = o->alloc(F * N);
    s->u = o->alloc(F * NC);
    s->y = o->alloc(F * NC);
    s->dn1 = o->alloc(F * NC);
    s->dy = o->alloc(F * NC);
    s->du = o->alloc(F * NC);
    s->W = o->alloc(F * s->HP);
    s->S = o->alloc(F * s->HP);
    s->Wo = o->alloc(F * s->HP);
    s->So = o->alloc(F * s->HP);
    /* (W, S) and the conv history of the memory input (MAC: of n1 and of y) */
    s->chain.B = B;
    s->chain.np = s->np;
    s->chain.nmsg = 2 * s->HP + (s->kind == LK_MAC ? 2 : 1) * s->K1 * (size_t)gc->C;
    s->chain.in = o->alloc(F * s->chain.nmsg);
    s->chain.msg = o->alloc(F * (size_t)B * s->chain.nmsg); /* one per sequence */
    if (s->np > 1)
        HW_ASSERT((T / 2) % s->tc.b == 0 && (size_t)(T / 2) >= s->K1); /* cfg rule */
    if (s->kind == LK_MAC)
        mac_alloc(s);
}

/* ---- MAL, MAG and memory-only: the module over the layer's input rows s->cx ------------------ */

static void piece_forward(void *ctx, int b, int p, const float *in, float *out) {
    struct mem *s = ctx;
    const struct ops *o = s->m->ops;
    struct titans_tape_f *t = &s->tape[(size_t)b * s->np + p];
    const int Tp = s->T / s->np, C = s->m->c.C;
    const size_t HP = s->HP, K1 = s->K1;
    const size_t off = ((size_t)b * s->T + (size_t)p * Tp) * C;
    const float *W = in, *S = in ? in + HP : NULL;
    if (!in) {
        titans_state_init_f(&s->tc, s->par, s->W, s->S);
        W = s->W, S = s->S;
    }
    titans_forward_f(t, s->par, W, S, in ? in + 2 * HP : NULL, s->cx + off, Tp, s->cu + off, out,
                     out + HP);
    if ((size_t)Tp >= K1)
        o->copy(out + 2 * HP, s->cx + off + (Tp - K1) * C, sizeof(float) * K1 * C);
}

static void piece_backward(void *ctx, int b, int p, const float *din, float *dout) {
    struct mem *s = ctx;
    const struct ops *o = s->m->ops;
    struct titans_tape_f *t = &s->tape[(size_t)b * s->np + p];
    const int Tp = s->T / s->np, C = s->m->c.C;
    const size_t HP = s->HP, K1 = s->K1;
    const size_t off = ((size_t)b * s->T + (size_t)p * Tp) * C;
    float *dx = s->cdx + off;
    if (din) /* the successor read this piece's last K-1 rows as its conv history */
        o->residual_add(dx + (Tp - K1) * C, dx + (Tp - K1) * C, din + 2 * HP, (int64_t)(K1 * C));
    if (dout)
        o->memset(dout, 0, sizeof(float) * s->chain.nmsg); /* the backward accumulates dxprev */
    titans_backward_f(t, s->par, s->cdu + off, din, din ? din + HP : NULL, s->dpar, dx,
                      dout ? dout + 2 * HP : NULL, dout ? dout : s->W, dout ? dout + HP : s->S);
    if (!dout)
        titans_state_init_backward_f(&s->tc, s->W, s->dpar);
}

void mem_check_finite(struct mem *s, const float *u, const char *what) {
    struct gpt *m = s->m;
    const size_t TC = (size_t)s->T * m->c.C, NC = TC * s->B;
    if (s->warned || isfinite(m->ops->sumsq(u, NC)))
        return;
    /* reported once; the trainer stops on the non-finite loss with the step */
    float *h = HW_MALLOC(sizeof(float) * NC);
    m->ops->download(h, u, sizeof(float) * NC);
    size_t i = 0;
    while (i < NC && isfinite(h[i]))
        i++;
    free(h);
    const int b = (int)(i / TC), tok = (int)(i / m->c.C % (size_t)s->T);
    if (s->kind == LK_MAC)
        fprintf(stderr,
                "headwise: memory of layer %d (mac): NaN/Inf in its output (sequence %d, local "
                "token %d); lower model.memory.max_lr or set model.memory.max_grad_norm\n",
                s->ly->l, b, tok);
    else
        fprintf(stderr,
                "headwise: memory of layer %d: NaN/Inf in its output (first bad state: chunk %d "
                "of sequence %d); lower model.memory.max_lr or set model.memory.max_grad_norm\n",
                s->ly->l, titans_nonfinite_f(&s->tape[(size_t)b * s->np]), b);
    (void)what;
    s->warned = 1;
}

void mem_forward(struct mem *s, const float *x, float *u) {
    const size_t TC = (size_t)s->T * s->m->c.C;
    s->cx = x, s->cu = u;
    par_chain_forward(&s->m->tp, &s->chain, piece_forward, s);
    par_reduce_output(&s->m->tp, s->p_wo, u, TC * s->B);
    mem_check_finite(s, u, NULL);
}

void mem_backward(struct mem *s, const float *du, float *dx) {
    s->cdu = du, s->cdx = dx;
    par_chain_backward(&s->m->tp, &s->chain, piece_backward, s);
    /* dx is a zeroed scratch: the sum is the whole gradient */
    par_reduce_input_grad(&s->m->tp, s->p_wq, dx, (size_t)s->T * s->m->c.C * s->B);
}

/* ---- decoding
 * ------------------------------------------------------------------------------------ */

struct mem_cache *mem_cache_init(struct mem *s, int B) {
    const struct ops *o = s->m->ops;
    struct mem_cache *k = HW_CALLOC(1, sizeof(*k));
    k->B = B;
    k->dec = HW_CALLOC((size_t)B, sizeof(*k->dec));
    struct titans_cfg c = s->m->c.mem_cfg; /* decoding runs on one rank: every head */
    c.ops = s->m->ops;
    for (int b = 0; b < B; b++)
        HW_ASSERT(titans_dec_init_f(&k->dec[b], &c, s->par) == 0);
    k->nrm = o->alloc(sizeof(float) * (size_t)s->m->c.C);
    k->u = o->alloc(sizeof(float) * (size_t)s->m->c.C);
    k->rstd = o->alloc(sizeof(float));
    return k;
}

void mem_cache_reset(struct mem *s, struct mem_cache *k, int b) {
    struct titans_dec_f *d = &k->dec[b];
    const struct titans_cfg c = d->cfg;
    titans_dec_free_f(d);
    HW_ASSERT(titans_dec_init_f(d, &c, s->par) == 0);
}

void mem_cache_free(struct mem *s, struct mem_cache *k) {
    if (!k)
        return;
    const struct ops *o = s->m->ops;
    for (int b = 0; b < k->B; b++)
        titans_dec_free_f(&k->dec[b]);
    free(k->dec);
    o->free(k->nrm);
    o->free(k->u);
    o->free(k->rstd);
    free(k);
}

void mem_decode_step(struct mem *s, struct mem_cache *k, int b, const float *x, float *u) {
    titans_dec_step_f(&k->dec[b], s->par, x, u);
}

const double *mem_inner_head_usage(const struct layer *ly) {
    const struct mem *s = ly->state;
    return s->inner.kind->head_usage ? s->inner.kind->head_usage(&s->inner) : NULL;
}

void mem_inner_stats_reset(struct layer *ly) {
    struct mem *s = ly->state;
    if (s->inner.kind->stats_reset)
        s->inner.kind->stats_reset(&s->inner);
}

const float *mem_inner_attn_qkv(const struct layer *ly, int *ld) {
    const struct mem *s = ly->state;
    return s->inner.kind->attn_qkv(&s->inner, ld);
}

const float *mem_inner_attn_out(const struct layer *ly) {
    const struct mem *s = ly->state;
    return s->inner.kind->attn_out(&s->inner);
}
