/* model/gpt_memory.c -- Titans memory layers in the transformer: config, parameter tensors,
 * forward/backward hooks and decoding (see gpt_memory.h). */
#include "gpt_memory_impl.h"

#include "../core/check.h"
#include "../core/rng.h"
#include "../dist/dist.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void gpt_memory_config(struct gpt_config *gc, const struct cfg_model *m) {
    const struct cfg_memory *me = &m->memory;
    int any = 0;
    for (int l = 0; l < gc->L; l++) {
        gc->mem[l] = (unsigned char)cfg_layer_memory(m, l);
        any |= gc->mem[l] != 0;
    }
    if (!any)
        return;
    int any_mac = 0;
    for (int l = 0; l < gc->L; l++)
        if (gc->mem[l] == GPT_MEM_MAC) {
            any_mac = 1;
            gc->s2[l] = 0; /* its attention is the segment attention */
        }
    if (any_mac)
        gc->mem_seg = me->segment;
    for (int l = 0; l < gc->L; l++) /* persistent tokens: MAC and MAG layers */
        if (gc->mem[l] == GPT_MEM_MAC || gc->mem[l] == GPT_MEM_MAG)
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

void gpt_memory_signature(const struct gpt_config *gc, char *out, size_t n) {
    char f[GPT_MAX_LAYERS + 1];
    int any = 0;
    for (int l = 0; l < gc->L; l++) {
        f[l] = (char)('0' + gc->mem[l]);
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

/* The module tensors present: the conv taps only with conv > 0. */
static int module_tensor(const struct gpt_config *gc, int j) {
    int k = 0;
    for (int t = 0; t < T_N; t++) {
        if ((t == T_CK || t == T_CV || t == T_CQ) && gc->mem_cfg.conv == 0)
            continue;
        if (k++ == j)
            return t;
    }
    return -1;
}

/* Tensors before the module's: the memory input norm (MAL; MAC: of the store), then the
 * persistent tokens (MAC, MAG). */
static int front_tensors(const struct gpt_config *gc, int l) {
    return (gc->mem[l] == GPT_MEM_MAL || gc->mem[l] == GPT_MEM_MAC) +
           ((gc->mem[l] == GPT_MEM_MAC || gc->mem[l] == GPT_MEM_MAG) && gc->mem_np > 0);
}

int gpt_memory_n_tensors(const struct gpt_config *gc, int l) {
    if (!gc->mem[l])
        return 0;
    return front_tensors(gc, l) + T_N - (gc->mem_cfg.conv ? 0 : 3);
}

/* Memory heads are split over the head ranks when they divide, else replicated. */
static int split(const struct gpt_config *gc, int hp) {
    return hp > 1 && gc->mem_cfg.H % hp == 0;
}

void gpt_memory_tensor(const struct gpt_config *gc, int l, int j, int hp, const char **name,
                       int64_t *rows, int64_t *cols, int *shard, int *decay, float *std) {
    const struct titans_cfg *c = &gc->mem_cfg;
    struct titans_layout lo;
    titans_layout(c, &lo);
    const int64_t C = gc->C, H = c->H, HD = (int64_t)c->H * c->D;
    *std = 0.02f; /* overwritten by gpt_memory_init_weights */
    *shard = -1;
    if ((gc->mem[l] == GPT_MEM_MAL || gc->mem[l] == GPT_MEM_MAC) && j-- == 0) {
        *name = "mem_norm.weight";
        *rows = C, *cols = 0, *decay = 0, *std = 0.0f;
        return;
    }
    if ((gc->mem[l] == GPT_MEM_MAC || gc->mem[l] == GPT_MEM_MAG) && gc->mem_np > 0 && j-- == 0) {
        *name = "mem.persistent"; /* replicated over head ranks; init std 0.02 */
        *rows = gc->mem_np, *cols = C, *decay = 0;
        return;
    }
    const int t = module_tensor(gc, j);
    HW_ASSERT(t >= 0);
    *name = tnames[t];
    *decay = 1;
    /* head-split tensors: the head index is the column of the projections and gates, the row
     * of wo and w0, the element of the biases */
    const int hs = split(gc, hp);
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

void gpt_memory_carve(const struct gpt_config *gc, int l, struct gpt_layer *y, float *first) {
    y->mem_norm = y->mem_persist = y->mem = NULL;
    if (!gc->mem[l])
        return;
    if (gc->mem[l] == GPT_MEM_MAL || gc->mem[l] == GPT_MEM_MAC) {
        y->mem_norm = first;
        first += gc->C;
    }
    if ((gc->mem[l] == GPT_MEM_MAC || gc->mem[l] == GPT_MEM_MAG) && gc->mem_np > 0) {
        y->mem_persist = first;
        first += (size_t)gc->mem_np * gc->C;
    }
    y->mem = first;
}

/* The module's init on the global tensors, then each rank keeps its block: the weights do not
 * depend on the rank grid. */
void gpt_memory_init_weights(struct gpt *m, uint64_t seed) {
    const struct gpt_config *gc = &m->c;
    char nm[64];
    struct titans_layout lo;
    titans_layout(&gc->mem_cfg, &lo);
    float *glob = NULL;
    for (int l = 0; l < gc->L; l++) {
        if (!gc->mem[l])
            continue;
        if (!glob)
            glob = HW_CALLOC(lo.total, sizeof(float));
        snprintf(nm, sizeof(nm), "blocks.%d.mem", l);
        titans_params_init_f(&gc->mem_cfg, glob, rng_hash2(seed, rng_hash_str(nm)));
        size_t goff = 0; /* the tensor's offset in the global flat array */
        for (int j = front_tensors(gc, l); j < gpt_memory_n_tensors(gc, l); j++) {
            const char *sfx;
            int64_t r, c;
            int sh, dec;
            float sd;
            gpt_memory_tensor(gc, l, j, 1, &sfx, &r, &c, &sh, &dec, &sd);
            snprintf(nm, sizeof(nm), "blocks.%d.%s", l, sfx);
            const struct param *p = gpt_find_param(m, nm);
            HW_ASSERT(p);
            float *x = m->param_mem + p->offset;
            const int64_t rows = p->shape[0], cols = p->ndim == 2 ? p->shape[1] : 1;
            const int64_t gcols = p->ndim == 2 ? p->gshape[1] : 1;
            for (int64_t i = 0; i < rows; i++)
                for (int64_t k = 0; k < cols; k++)
                    x[i * cols + k] = glob[goff + (size_t)((i + p->goff[0]) * gcols + k +
                                                           (p->ndim == 2 ? p->goff[1] : 0))];
            goff += (size_t)r * (size_t)(c ? c : 1);
        }
        HW_ASSERT(goff == lo.total);
    }
    free(glob);
}

struct titans_cfg gpt_memory_local_cfg(const struct gpt *m) {
    struct titans_cfg t = m->c.mem_cfg;
    if (split(&m->c, m->hp))
        t.H /= m->hp;
    return t;
}

void gpt_memory_hp_sum(struct gpt *m, float *x, size_t n) {
    if (m->d && split(&m->c, m->hp))
        dist_allreduce_f32(m->d, DIST_HP, x, n, DIST_KIND_HP_REDUCE);
}

void gpt_memory_attn_hp_sum(struct gpt *m, float *x, size_t n) {
    if (m->d && m->hp > 1)
        dist_allreduce_f32(m->d, DIST_HP, x, n, DIST_KIND_HP_REDUCE);
}

void gpt_memory_free(struct gpt *m) {
    struct gpt_memory *s = m->mem;
    if (!s)
        return;
    for (int i = 0; i < s->n * s->B * s->np; i++)
        titans_tape_free_f(&s->tape[i]);
    gpt_mac_free(s);
    free(s->ppq);
    free(s->dpq);
    free(s->pdP);
    free(s->ppos);
    free(s->in);
    free(s->msg);
    free(s->tape);
    free(s->x0);
    free(s->nrm);
    free(s->rstd);
    free(s->u);
    free(s->y);
    free(s->dn1);
    free(s->dy);
    free(s->du);
    free(s->W);
    free(s->S);
    free(s->Wo);
    free(s->So);
    free(s);
    m->mem = NULL;
}

void gpt_memory_alloc(struct gpt *m, int B, int T) {
    const struct gpt_config *gc = &m->c;
    if (m->mem && m->mem->B == B && m->mem->T == T)
        return;
    gpt_memory_free(m);
    int n = 0, any_mac = 0;
    for (int l = 0; l < gc->L; l++) {
        n += gc->mem[l] != 0;
        any_mac |= gc->mem[l] == GPT_MEM_MAC;
    }
    if (!n)
        return;
    struct gpt_memory *s = HW_CALLOC(1, sizeof(*s));
    s->B = B, s->T = T, s->n = n;
    /* under context parallelism a rank holds two zig-zag chunks of every sequence */
    s->np = m->cp > 1 ? 2 : 1;
    for (int l = 0, j = 0; l < gc->L; l++)
        s->slot[l] = gc->mem[l] ? j++ : -1;
    s->tape = HW_CALLOC((size_t)n * B * s->np, sizeof(*s->tape));
    const struct titans_cfg tc = gpt_memory_local_cfg(m);
    for (int l = 0; l < gc->L; l++)
        for (int i = 0; gc->mem[l] && gc->mem[l] != GPT_MEM_MAC && i < B * s->np; i++)
            if (titans_tape_init_f(&s->tape[(size_t)s->slot[l] * B * s->np + i], &tc, T / s->np))
                HW_DIE("model.memory: %s", titans_cfg_error(&tc));
    const size_t NC = (size_t)B * T * gc->C, N = (size_t)B * T;
    s->x0 = mem_floats(n * NC);
    s->nrm = mem_floats(n * NC);
    s->rstd = mem_floats(n * N);
    s->u = mem_floats(n * NC);
    s->y = mem_floats(n * NC);
    s->dn1 = mem_floats(NC);
    s->dy = mem_floats(NC);
    s->du = mem_floats(NC);
    struct titans_layout lo;
    titans_layout(&tc, &lo);
    const size_t HP = (size_t)tc.H * lo.P, K1 = tc.conv > 0 ? (size_t)tc.conv - 1 : 0;
    s->W = mem_floats(HP);
    s->S = mem_floats(HP);
    s->Wo = mem_floats(HP);
    s->So = mem_floats(HP);
    /* (W, S) and the conv history of the memory input (MAC: of n1 and of y) */
    s->nmsg = 2 * HP + (any_mac ? 2 : 1) * K1 * (size_t)gc->C;
    s->in = mem_floats(s->nmsg);
    s->msg = mem_floats((size_t)B * s->nmsg); /* one per sequence */
    const size_t D = (size_t)(m->Hl + 2 * m->Hkvl) * gc->hd;
    s->ppq = mem_floats((size_t)n * gc->mem_np * D);
    s->dpq = mem_floats((size_t)gc->mem_np * D);
    s->pdP = mem_floats((size_t)gc->mem_np * gc->C);
    /* positions 0.. of the persistent rows (and of MAC's [P | segment] keys) */
    s->ppos = HW_CALLOC((size_t)(gc->mem_np + gc->mem_seg + 1), sizeof(int32_t));
    for (int i = 0; i < gc->mem_np + gc->mem_seg; i++)
        s->ppos[i] = i;
    if (s->np > 1)
        HW_ASSERT((T / 2) % tc.b == 0 && (size_t)(T / 2) >= K1); /* cfg rule */
    m->mem = s;
    if (any_mac)
        gpt_mac_alloc(m);
}

/* ---- the chain ------------------------------------------------------------------------------
 * One process: one piece per sequence. Under context parallelism, context rank r holds zig-zag
 * chunks r (rows [0, Tc)) and 2cp-1-r (rows [Tc, 2Tc)) of every sequence. The memory runs over
 * the 2cp chunks in sequence order: chunk r on rank r (message from rank r-1), ..., chunk cp-1
 * then chunk cp both on rank cp-1, then chunk 2cp-1-r on rank r (from rank r+1), ending on rank
 * 0. The backward runs the chain in reverse with the adjoints. Pipelined over the B local
 * sequences: phase 1 runs the first chunks of all sequences (the messages flow up the ranks,
 * so rank r works on sequence b while rank r+1 works on b-1), phase 2 the second chunks
 * (flowing down); the backward runs the two phases in the other order. */

static void cp_msg(struct gpt *m, float *buf, size_t n, int other, int sending) {
    const float **send = HW_CALLOC((size_t)m->cp, sizeof(*send));
    float **recv = HW_CALLOC((size_t)m->cp, sizeof(*recv));
    if (sending)
        send[other] = buf;
    else
        recv[other] = buf;
    dist_cp_exchange(m->d, send, recv, n);
    free(send);
    free(recv);
}

void gpt_memory_chain_forward(struct gpt *m, int l, gpt_memory_piece_fn fwd) {
    struct gpt_memory *s = m->mem;
    const size_t n = s->nmsg;
    if (s->np == 1) {
        for (int b = 0; b < s->B; b++)
            fwd(m, l, b, 0, NULL, s->msg + (size_t)b * n);
        return;
    }
    const int r = m->cp_rank, R = m->cp;
    for (int b = 0; b < s->B; b++) { /* phase 1: chunk r, from rank r-1 */
        float *keep = s->msg + (size_t)b * n;
        if (r > 0)
            cp_msg(m, s->in, n, r - 1, 0);
        fwd(m, l, b, 0, r ? s->in : NULL, keep);
        if (r + 1 < R)
            cp_msg(m, keep, n, r + 1, 1);
    }
    for (int b = 0; b < s->B; b++) { /* phase 2: chunk 2cp-1-r, from rank r+1 (or chunk cp-1) */
        float *out = s->msg + (size_t)b * n;
        if (r + 1 < R)
            cp_msg(m, s->in, n, r + 1, 0);
        else
            memcpy(s->in, out, sizeof(float) * n);
        fwd(m, l, b, 1, s->in, out);
        if (r > 0)
            cp_msg(m, out, n, r - 1, 1);
    }
}

void gpt_memory_chain_backward(struct gpt *m, int l, gpt_memory_piece_fn bwd) {
    struct gpt_memory *s = m->mem;
    const size_t n = s->nmsg;
    if (s->np == 1) {
        for (int b = 0; b < s->B; b++)
            bwd(m, l, b, 0, NULL, NULL);
        return;
    }
    const int r = m->cp_rank, R = m->cp;
    for (int b = 0; b < s->B; b++) { /* second chunks: adjoints from rank r-1, none after the end */
        float *keep = s->msg + (size_t)b * n;
        if (r > 0)
            cp_msg(m, s->in, n, r - 1, 0);
        bwd(m, l, b, 1, r > 0 ? s->in : NULL, keep);
        if (r + 1 < R)
            cp_msg(m, keep, n, r + 1, 1);
    }
    for (int b = 0; b < s->B; b++) { /* first chunks: from rank r+1, or this rank's second chunk */
        float *out = s->msg + (size_t)b * n;
        if (r + 1 < R)
            cp_msg(m, s->in, n, r + 1, 0);
        else
            memcpy(s->in, out, sizeof(float) * n);
        bwd(m, l, b, 0, s->in, r ? out : NULL);
        if (r > 0)
            cp_msg(m, out, n, r - 1, 1);
    }
}

/* ---- MAL, MAG and memory-only: the module over the layer's input rows s->cx ---------------- */

static void mem_piece_forward(struct gpt *m, int l, int b, int p, const float *in, float *out) {
    struct gpt_memory *s = m->mem;
    const struct titans_cfg tc = gpt_memory_local_cfg(m);
    struct titans_tape_f *t = &s->tape[((size_t)s->slot[l] * s->B + b) * s->np + p];
    const float *par = m->w.layers[l].mem;
    const int Tp = s->T / s->np, C = m->c.C;
    const size_t HP = (size_t)tc.H * t->lo.P, K1 = tc.conv > 0 ? (size_t)tc.conv - 1 : 0;
    const size_t off = ((size_t)b * s->T + (size_t)p * Tp) * C;
    const float *W = in, *S = in ? in + HP : NULL;
    if (!in) {
        titans_state_init_f(&tc, par, s->W, s->S);
        W = s->W, S = s->S;
    }
    titans_forward_f(t, par, W, S, in ? in + 2 * HP : NULL, s->cx + off, Tp, s->cu + off, out,
                     out + HP);
    if ((size_t)Tp >= K1)
        memcpy(out + 2 * HP, s->cx + off + (Tp - K1) * C, sizeof(float) * K1 * C);
}

static void mem_piece_backward(struct gpt *m, int l, int b, int p, const float *din, float *dout) {
    struct gpt_memory *s = m->mem;
    const struct titans_cfg tc = gpt_memory_local_cfg(m);
    struct titans_tape_f *t = &s->tape[((size_t)s->slot[l] * s->B + b) * s->np + p];
    const float *par = m->w.layers[l].mem;
    float *dpar = m->g.layers[l].mem;
    const int Tp = s->T / s->np, C = m->c.C;
    const size_t HP = (size_t)tc.H * t->lo.P, K1 = tc.conv > 0 ? (size_t)tc.conv - 1 : 0;
    const size_t off = ((size_t)b * s->T + (size_t)p * Tp) * C;
    float *dx = s->cdx + off;
    if (din) /* the successor read this piece's last K-1 rows as its conv history */
        for (size_t i = 0; i < K1 * C; i++)
            dx[(Tp - K1) * C + i] += din[2 * HP + i];
    if (dout)
        memset(dout, 0, sizeof(float) * s->nmsg); /* the backward accumulates dxprev */
    titans_backward_f(t, par, s->cdu + off, din, din ? din + HP : NULL, dpar, dx,
                      dout ? dout + 2 * HP : NULL, dout ? dout : s->W, dout ? dout + HP : s->S);
    if (!dout)
        titans_state_init_backward_f(&tc, s->W, dpar);
}

/* u = M(x) per sequence from the learned initial state; every sequence starts at W0. */
static void mem_forward(struct gpt *m, int l, const float *x, float *u) {
    struct gpt_memory *s = m->mem;
    const size_t TC = (size_t)s->T * m->c.C;
    s->cx = x, s->cu = u;
    gpt_memory_chain_forward(m, l, mem_piece_forward);
    gpt_memory_hp_sum(m, u, TC * s->B);
    for (int b = 0; b < s->B; b++)
        for (size_t i = 0; i < TC && !s->warned; i++)
            if (!isfinite(u[b * TC + i])) {
                /* reported once; the trainer stops on the non-finite loss with the step */
                const struct titans_tape_f *t = &s->tape[((size_t)s->slot[l] * s->B + b) * s->np];
                fprintf(stderr,
                        "headwise: memory of layer %d: NaN/Inf in its output (first bad state: "
                        "chunk %d of sequence %d); lower model.memory.max_lr or set "
                        "model.memory.max_grad_norm\n",
                        l, titans_nonfinite_f(t), b);
                s->warned = 1;
            }
}

/* dx (N, C) += the VJP of mem_forward for du. */
static void mem_backward(struct gpt *m, int l, const float *du, float *dx) {
    struct gpt_memory *s = m->mem;
    s->cdu = du, s->cdx = dx;
    gpt_memory_chain_backward(m, l, mem_piece_backward);
    /* dx is a zeroed scratch: the sum is the whole gradient */
    gpt_memory_hp_sum(m, dx, (size_t)s->T * m->c.C * s->B);
}

void gpt_memory_mal_forward(struct gpt *m, int l, float *x) {
    struct gpt_memory *s = m->mem;
    const int N = s->B * s->T, C = m->c.C;
    const size_t NC = (size_t)N * C, j = (size_t)s->slot[l];
    float *x0 = s->x0 + j * NC, *nrm = s->nrm + j * NC, *u = s->u + j * NC;
    memcpy(x0, x, sizeof(float) * NC);
    m->ops->rmsnorm_forward(nrm, s->rstd + j * N, x0, m->w.layers[l].mem_norm, N, C, m->c.eps);
    mem_forward(m, l, nrm, u);
    m->ops->residual_add(x, x0, u, (int64_t)NC);
}

void gpt_memory_mal_backward(struct gpt *m, int l, float *dx) {
    struct gpt_memory *s = m->mem;
    const int N = s->B * s->T, C = m->c.C;
    const size_t NC = (size_t)N * C, j = (size_t)s->slot[l];
    memset(s->dn1, 0, sizeof(float) * NC);
    mem_backward(m, l, dx, s->dn1);
    m->ops->rmsnorm_backward(dx, m->g.layers[l].mem_norm, s->dn1, s->x0 + j * NC,
                             m->w.layers[l].mem_norm, s->rstd + j * N, N, C);
}

void gpt_memory_attn_forward(struct gpt *m, int l, const float *n1, float *dn) {
    struct gpt_memory *s = m->mem;
    if (m->c.mem[l] == GPT_MEM_MAC) {
        gpt_mac_forward(m, l, n1, dn);
        return;
    }
    const size_t NC = (size_t)s->B * s->T * m->c.C, j = (size_t)s->slot[l];
    float *u = s->u + j * NC, *y = s->y + j * NC;
    mem_forward(m, l, n1, u);
    if (m->c.mem[l] == GPT_MEM_ONLY) {
        memcpy(dn, u, sizeof(float) * NC);
        return;
    }
    memcpy(y, dn, sizeof(float) * NC);
    for (size_t i = 0; i < NC; i++)
        dn[i] = y[i] * mem_sigmoid(u[i]);
}

const float *gpt_memory_attn_backward(struct gpt *m, int l, const float *dx) {
    const int kind = m->c.mem[l];
    if (kind == GPT_MEM_MAC) {
        gpt_mac_backward(m, l, dx);
        return dx;
    }
    if (kind != GPT_MEM_MAG && kind != GPT_MEM_ONLY)
        return dx;
    struct gpt_memory *s = m->mem;
    const size_t NC = (size_t)s->B * s->T * m->c.C, j = (size_t)s->slot[l];
    const float *u = s->u + j * NC, *y = s->y + j * NC;
    if (kind == GPT_MEM_ONLY) { /* gpt.c skips the attention */
        memcpy(s->du, dx, sizeof(float) * NC);
    } else {
        for (size_t i = 0; i < NC; i++) {
            const float g = mem_sigmoid(u[i]);
            s->dy[i] = dx[i] * g;
            s->du[i] = dx[i] * y[i] * g * (1.0f - g);
        }
    }
    memset(s->dn1, 0, sizeof(float) * NC);
    mem_backward(m, l, s->du, s->dn1);
    return s->dy;
}

void gpt_memory_add_dn(struct gpt *m, int l, float *dn) {
    const int kind = m->c.mem[l];
    if (kind < GPT_MEM_MAG)
        return;
    const size_t NC = (size_t)m->mem->B * m->mem->T * m->c.C;
    m->ops->residual_add(dn, dn, m->mem->dn1, (int64_t)NC);
}

/* ---- persistent tokens on the attention of MAG layers ---------------------------------------
 * P's keys sit at positions 0..N_p-1 (the paper's x~ = P || x, the sequence keeping its
 * positions); every query sees them, whatever the layer's sparsity. */

int gpt_memory_prefix_rows(const struct gpt_config *c, int l) {
    return c->mem[l] == GPT_MEM_MAG ? c->mem_np : 0;
}

void gpt_memory_prefix_forward(struct gpt *m, int l) {
    const int np = gpt_memory_prefix_rows(&m->c, l);
    if (!np)
        return;
    struct gpt_memory *s = m->mem;
    const int D = (m->Hl + 2 * m->Hkvl) * m->c.hd, HD = m->Hl * m->c.hd;
    float *pq = s->ppq + (size_t)s->slot[l] * np * D;
    m->ops->matmul_forward(pq, m->w.layers[l].mem_persist, m->w.layers[l].wqkv, np, m->c.C, D,
                           0.0f);
    m->ops->rope_forward(pq + HD, m->rope_cos, m->rope_sin, 1, np, m->Hkvl, m->c.hd, D, s->ppos);
}

void gpt_memory_prefix_shape(struct gpt *m, int l, struct attn_shape *as) {
    const int np = gpt_memory_prefix_rows(&m->c, l);
    if (!np)
        return;
    struct gpt_memory *s = m->mem;
    const int D = (m->Hl + 2 * m->Hkvl) * m->c.hd, HD = m->Hl * m->c.hd;
    const int kvw = m->Hkvl * m->c.hd;
    const float *pq = s->ppq + (size_t)s->slot[l] * np * D;
    as->np = np;
    as->ld_p = D;
    as->pk = pq + HD;
    as->pv = pq + HD + kvw;
    as->dpk = s->dpq + HD;
    as->dpv = s->dpq + HD + kvw;
}

void gpt_memory_prefix_backward(struct gpt *m, int l) {
    const int np = gpt_memory_prefix_rows(&m->c, l);
    if (!np)
        return;
    struct gpt_memory *s = m->mem;
    const struct ops *o = m->ops;
    const int C = m->c.C, D = (m->Hl + 2 * m->Hkvl) * m->c.hd, HD = m->Hl * m->c.hd;
    o->rope_backward(s->dpq + HD, m->rope_cos, m->rope_sin, 1, np, m->Hkvl, m->c.hd, D, s->ppos);
    o->matmul_backward(s->pdP, m->g.layers[l].wqkv, s->dpq, m->w.layers[l].mem_persist,
                       m->w.layers[l].wqkv, np, C, D, 0.0f);
    gpt_memory_attn_hp_sum(m, s->pdP, (size_t)np * C);
    o->residual_add(m->g.layers[l].mem_persist, m->g.layers[l].mem_persist, s->pdP,
                    (int64_t)np * C);
    memset(s->dpq, 0, sizeof(float) * (size_t)np * D); /* ready for the next backward */
}

/* ----------------------------------------------------------------------------------------- */
/* decoding */

struct gpt_memory_kv *gpt_memory_kv_init(const struct gpt *m, int B) {
    int n = 0;
    for (int l = 0; l < m->c.L; l++)
        n += m->c.mem[l] != 0;
    if (!n)
        return NULL;
    struct gpt_memory_kv *k = HW_CALLOC(1, sizeof(*k));
    k->B = B, k->n = n;
    k->dec = HW_CALLOC((size_t)n * B, sizeof(*k->dec));
    k->par = HW_CALLOC((size_t)n, sizeof(*k->par));
    for (int l = 0, j = 0; l < m->c.L; l++) {
        k->slot[l] = m->c.mem[l] ? j : -1;
        if (!m->c.mem[l])
            continue;
        k->par[j] = m->w.layers[l].mem;
        for (int b = 0; b < B; b++)
            HW_ASSERT(titans_dec_init_f(&k->dec[(size_t)j * B + b], &m->c.mem_cfg, k->par[j]) == 0);
        j++;
    }
    k->nrm = mem_floats((size_t)m->c.C);
    k->u = mem_floats((size_t)m->c.C);
    gpt_mac_kv_init(m, k);
    return k;
}

void gpt_memory_kv_reset(struct gpt_memory_kv *k, int b) {
    if (!k)
        return;
    for (int j = 0; j < k->n; j++) {
        struct titans_dec_f *d = &k->dec[(size_t)j * k->B + b];
        const struct titans_cfg c = d->cfg;
        titans_dec_free_f(d);
        HW_ASSERT(titans_dec_init_f(d, &c, k->par[j]) == 0);
        if (k->is_mac[j])
            gpt_mac_kv_reset(k, j, b);
    }
}

void gpt_memory_kv_free(struct gpt_memory_kv *k) {
    if (!k)
        return;
    for (int i = 0; i < k->n * k->B; i++)
        titans_dec_free_f(&k->dec[i]);
    free(k->dec);
    free(k->par);
    free(k->nrm);
    free(k->u);
    gpt_mac_kv_free(k);
    free(k);
}

void gpt_memory_decode_mal(struct gpt *m, struct gpt_memory_kv *k, int l, int nb, const int *rows,
                           float *x) {
    if (m->c.mem[l] != GPT_MEM_MAL)
        return;
    const int C = m->c.C;
    for (int i = 0; i < nb; i++) {
        float *xi = x + (size_t)i * C;
        m->ops->rmsnorm_forward(k->nrm, &k->rstd, xi, m->w.layers[l].mem_norm, 1, C, m->c.eps);
        titans_dec_step_f(&k->dec[(size_t)k->slot[l] * k->B + rows[i]], k->par[k->slot[l]], k->nrm,
                          k->u);
        for (int c = 0; c < C; c++)
            xi[c] += k->u[c];
    }
}

void gpt_memory_decode_attn(struct gpt *m, struct gpt_memory_kv *k, int l, int nb, const int *rows,
                            const float *n1, float *br) {
    const int kind = m->c.mem[l], C = m->c.C;
    if (kind < GPT_MEM_MAG)
        return;
    for (int i = 0; i < nb; i++) {
        float *bi = br + (size_t)i * C;
        /* MAC stores the normed attention output y and gates y with M(norm(y)) */
        if (kind == GPT_MEM_MAC)
            m->ops->rmsnorm_forward(k->nrm, &k->rstd, bi, m->w.layers[l].mem_norm, 1, C, m->c.eps);
        titans_dec_step_f(&k->dec[(size_t)k->slot[l] * k->B + rows[i]], k->par[k->slot[l]],
                          kind == GPT_MEM_MAC ? k->nrm : n1 + (size_t)i * C, k->u);
        for (int c = 0; c < C; c++)
            bi[c] = kind == GPT_MEM_ONLY ? k->u[c] : bi[c] * mem_sigmoid(k->u[c]);
    }
}
