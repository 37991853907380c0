/* model/titans_impl.h -- the body of the Titans memory (model/titans.h), included twice by
 * model/titans.c with T = float / double, SFX(name) adding the suffix and TDTYPE its element type.
 * Every element of the module's arrays is touched through its backend: the GEMM, copies and the
 * Titans kernels (ops/titans_ops.h), so the module runs where its buffers live (the fp64
 * instantiation on the CPU only). Host code keeps only shapes and offsets. Not a public header. */

/* C = alpha op(A) op(B) + beta C, row-major, through the backend's GEMM (gemm.h: nothing when
 * m or n is 0, k = 0 scales C). */
static void SFX(mm_)(const struct ops *o, int ta, int tb, int m, int n, int k, T alpha, const T *A,
                     size_t lda, const T *B, size_t ldb, T beta, T *C, size_t ldc) {
    o->gemm(TDTYPE, TDTYPE, ta, tb, m, n, k, (double)alpha, A, lda, B, ldb, (double)beta, C, ldc);
}

/* The backend of a configuration (NULL: the CPU). */
static const struct ops *SFX(ops_)(const struct titans_cfg *c) {
    return c->ops ? c->ops : ops_for(BACKEND_CPU);
}

/* Zeroed buffers from the backend (at least one element). */
static void *SFX(xcalloc_)(const struct ops *o, size_t n) {
    return o->alloc((n ? n : 1) * sizeof(T));
}

static void SFX(xfree_)(const struct ops *o, void *p) {
    o->free(p);
}

/* n elements within the backend's memory */
static void SFX(cpy_)(const struct ops *o, T *dst, const T *src, size_t n) {
    if (n)
        o->copy(dst, src, sizeof(T) * n);
}
static void SFX(zero_)(const struct ops *o, T *dst, size_t n) {
    if (n)
        o->memset(dst, 0, sizeof(T) * n);
}

/* Heads run in parallel threads on the CPU only: a GPU's kernels go to one stream in order. */
static int SFX(head_threads_)(const struct ops *o, int H) {
    return H > 1 && o->kind == BACKEND_CPU;
}

/* ---- workspace for the memory MLP over up to n rows ---------------------------------------- */
struct SFX(ws_) {
    int n, m;
    T *A[TITANS_MAX_DEPTH];  /* layer inputs, n x in[l]; A[0] = keys or queries */
    T *Hh[TITANS_MAX_DEPTH]; /* pre-activations, n x out[l] */
    T *R[TITANS_MAX_DEPTH];  /* d(theta l)/dHh, n x out[l] */
    T *U[TITANS_MAX_DEPTH];  /* R[l+1] W_{l+1}^T, n x out[l] */
    T *Rb[TITANS_MAX_DEPTH], *Ab[TITANS_MAX_DEPTH], *Hb[TITANS_MAX_DEPTH];
    T *V, *th, *thb; /* n x D, n, n */
    T *G, *Gb;       /* m x P chunk gradients and their adjoints */
    T *mem;
    const struct ops *ops; /* the backend mem came from */
};

static void SFX(ws_init_)(struct SFX(ws_) * w, const struct titans_layout *lo, int n, int m) {
    size_t tot = 0, D = (size_t)lo->in[0], nn = (size_t)n;
    for (int l = 0; l < lo->L; l++)
        tot += nn * (2 * (size_t)lo->in[l] + 5 * (size_t)lo->out[l]);
    tot += nn * D + 2 * nn + 2 * (size_t)m * lo->P;
    T *p = SFX(xcalloc_)(lo->ops, tot);
    w->ops = lo->ops;
    w->mem = p;
    w->n = n;
    w->m = m;
    for (int l = 0; l < lo->L; l++) {
        size_t a = nn * (size_t)lo->in[l], o = nn * (size_t)lo->out[l];
        w->A[l] = p, p += a;
        w->Ab[l] = p, p += a;
        w->Hh[l] = p, p += o;
        w->R[l] = p, p += o;
        w->U[l] = p, p += o;
        w->Rb[l] = p, p += o;
        w->Hb[l] = p, p += o;
    }
    w->V = p, p += nn * D;
    w->th = p, p += nn;
    w->thb = p, p += nn;
    w->G = p, p += (size_t)m * lo->P;
    w->Gb = p;
}

static void SFX(ws_free_)(struct SFX(ws_) * w) {
    SFX(xfree_)(w->ops, w->mem);
    w->mem = NULL;
}

/* Forward of the MLP at W on the n rows in w->A[0]; the output is w->Hh[L-1]. */
static void SFX(mlp_fwd_)(const struct titans_layout *lo, const T *W, struct SFX(ws_) * w, int n) {
    for (int l = 0; l < lo->L; l++) {
        SFX(mm_)
        (lo->ops, 0, 0, n, lo->out[l], lo->in[l], 1, w->A[l], (size_t)lo->in[l], W + lo->off[l],
         (size_t)lo->out[l], 0, w->Hh[l], (size_t)lo->out[l]);
        if (l + 1 < lo->L)
            lo->ops->titans->unary(TDTYPE, TT_GELU, (size_t)n * (size_t)lo->out[l], w->Hh[l],
                                   w->A[l + 1]);
    }
}

/* The per-token backward of theta_t kappa ||M(k_t) - v_t||^2 down to R[l] (dHh) and U[l]. */
static void SFX(mlp_inner_grad_)(const struct titans_layout *lo, double kappa, const T *W,
                                 struct SFX(ws_) * w, int n) {
    const struct titans_ops *k = lo->ops->titans;
    int L = lo->L, D = lo->out[L - 1];
    k->resid(TDTYPE, n, D, 2 * kappa, w->th, w->Hh[L - 1], w->V, w->R[L - 1]);
    for (int l = L - 1; l >= 1; l--) {
        /* U[l-1] = R[l] W_l^T ; R[l-1] = U[l-1] * gelu'(Hh[l-1]) */
        SFX(mm_)
        (lo->ops, 0, 1, n, lo->in[l], lo->out[l], 1, w->R[l], (size_t)lo->out[l], W + lo->off[l],
         (size_t)lo->out[l], 0, w->U[l - 1], (size_t)lo->in[l]);
        k->mul_gelu1(TDTYPE, (size_t)n * (size_t)lo->in[l], w->U[l - 1], w->Hh[l - 1], w->R[l - 1],
                     0);
    }
}

/* G (P) = sum over rows [r0, r0+rows) of A[l]^T R[l], per layer. */
static void SFX(chunk_grad_)(const struct titans_layout *lo, const struct SFX(ws_) * w, int r0,
                             int rows, T *G) {
    for (int l = 0; l < lo->L; l++)
        SFX(mm_)
    (lo->ops, 1, 0, lo->in[l], lo->out[l], rows, 1, w->A[l] + (size_t)r0 * lo->in[l],
     (size_t)lo->in[l], w->R[l] + (size_t)r0 * lo->out[l], (size_t)lo->out[l], 0, G + lo->off[l],
     (size_t)lo->out[l]);
}

/* Clamp of each surprise tensor's norm to m (clip_grad_norm semantics per tensor): g *= s(|g|)
 * with s = 1 for |g| <= m (the tensor passes unchanged) and s = m / |g| above (titans_ops.h).
 * The reference's softclamp_grad_norm maps a norm n to tanh(n / h) h + h (h = m / 2), which
 * sends every norm in [0, inf) into [m/2, m): it normalises small surprises up to m/2 (a 1e-3
 * norm becomes 0.5 at m = 1) and amplifies their rounding; docs/titans.md. bwd: Gb (adjoint of
 * the clamped G) becomes the adjoint of the raw G, in place. */
static void SFX(clamp_)(const struct titans_layout *lo, double m, T *G, T *Gb, int bwd) {
    size_t numel[TITANS_MAX_DEPTH];
    for (int l = 0; l < lo->L; l++)
        numel[l] = (size_t)lo->in[l] * (size_t)lo->out[l];
    lo->ops->titans->clamp(TDTYPE, lo->L, lo->off, numel, m, G, Gb, bwd);
}

/* ---- projections --------------------------------------------------------------------------- */
/* xe: K1 = conv-1 history rows then n input rows. z* ((K1+n) x HD) = xe W (conv only; scratch
 * otherwise unused), kp/vp/qp = conv(z) (or x W); k, v, q after SiLU and l2-normalisation (norms in
 * kn, qn). The k/v or q outputs may be NULL (decode's partial passes). */
static void SFX(project_)(const struct titans_cfg *c, const struct titans_layout *lo, const T *par,
                          const T *xe, int n, T *zk, T *zv, T *zq, T *kp, T *vp, T *qp, T *k, T *v,
                          T *q, T *kn, T *qn) {
    const struct titans_ops *tk = lo->ops->titans;
    int d = c->d, H = c->H, D = c->D, HD = H * D, K = c->conv;
    T *pre[3] = {kp, vp, qp}, *post[3] = {k, v, q}, *nrm[3] = {kn, NULL, qn}, *z[3] = {zk, zv, zq};
    size_t off[3] = {lo->wk, lo->wv, lo->wq}, coff[3] = {lo->ck, lo->cv, lo->cq};
    for (int w = 0; w < 3; w++) {
        if (!pre[w])
            continue;
        if (K > 0) {
            SFX(mm_)
            (lo->ops, 0, 0, n + K - 1, HD, d, 1, xe, (size_t)d, par + off[w], (size_t)HD, 0, z[w],
             (size_t)HD);
            tk->conv_fwd(TDTYPE, n, HD, K, z[w], par + coff[w], pre[w]);
        } else {
            SFX(mm_)
            (lo->ops, 0, 0, n, HD, d, 1, xe, (size_t)d, par + off[w], (size_t)HD, 0, pre[w],
             (size_t)HD);
        }
        if (c->silu)
            tk->unary(TDTYPE, TT_SILU, (size_t)n * HD, pre[w], post[w]);
        else
            SFX(cpy_)(lo->ops, post[w], pre[w], (size_t)n * HD);
        if (c->l2norm && nrm[w])
            tk->l2n_fwd(TDTYPE, n * H, D, post[w], nrm[w]);
    }
}

/* g (n x H): the retrieve gate sigmoid(x wg), or 1. */
static void SFX(rgate_)(const struct titans_cfg *c, const struct titans_layout *lo, const T *par,
                        const T *x, int n, T *g) {
    int H = c->H;
    if (c->gate) {
        SFX(mm_)
        (lo->ops, 0, 0, n, H, c->d, 1, x, (size_t)c->d, par + lo->wg, (size_t)H, 0, g, (size_t)H);
        lo->ops->titans->unary(TDTYPE, TT_SIGMOID, (size_t)n * H, g, g);
    } else {
        lo->ops->titans->unary(TDTYPE, TT_ONE, (size_t)n * H, g, g);
    }
}

/* out (n x H) = scale * sigmoid(x w + b) for the gate projection at w, b. */
static void SFX(gate_)(const struct titans_cfg *c, const T *par, size_t w, size_t b, const T *x,
                       int n, double scale, T *out) {
    int H = c->H;
    const struct ops *o = SFX(ops_)(c);
    SFX(mm_)(o, 0, 0, n, H, c->d, 1, x, (size_t)c->d, par + w, (size_t)H, 0, out, (size_t)H);
    o->titans->gate_fwd(TDTYPE, n, H, scale, par + b, out);
}

/* Gather head h's D columns of rows [r0, r0+n) of a (rows x HD) array into dst (n x D). */
static void SFX(gather_)(const struct ops *o, const T *src, int HD, int h, int D, int r0, int n,
                         T *dst) {
    if (n > 0)
        o->copy2d(dst, sizeof(T) * D, src + (size_t)r0 * HD + (size_t)h * D, sizeof(T) * HD,
                  (size_t)n, sizeof(T) * D);
}

static void SFX(scatter_add_)(const struct ops *o, T *dst, int HD, int h, int D, int r0, int n,
                              const T *src) {
    if (n > 0)
        o->titans->add2d(TDTYPE, n, D, dst + (size_t)r0 * HD + (size_t)h * D, (size_t)HD, src,
                         (size_t)D);
}

/* Column h of rows [r0, r0+n) of an (rows x H) array into dst (n). */
static void SFX(gather_col_)(const struct ops *o, const T *src, int H, int h, int r0, int n,
                             T *dst) {
    if (n > 0)
        o->copy2d(dst, sizeof(T), src + (size_t)r0 * H + h, sizeof(T) * H, (size_t)n, sizeof(T));
}

/* The inner forward of rows [t0, t0+rows) of head h at weights W: keys, values (N x HD) and
 * learning rates (N x H) gathered into w, the MLP forward and the inner loss's gradients. */
static void SFX(inner_at_)(const struct titans_layout *lo, double kappa, const T *k, const T *v,
                           const T *th, int H, int D, int h, int t0, int rows, const T *W,
                           struct SFX(ws_) * w) {
    SFX(gather_)(lo->ops, k, H * D, h, D, t0, rows, w->A[0]);
    SFX(gather_)(lo->ops, v, H * D, h, D, t0, rows, w->V);
    SFX(gather_col_)(lo->ops, th, H, h, t0, rows, w->th);
    SFX(mlp_fwd_)(lo, W, w, rows);
    SFX(mlp_inner_grad_)(lo, kappa, W, w, rows);
}

/* ---- parameter init (documented in docs/titans.md) ----------------------------------------- */
void SFX(titans_params_init)(const struct titans_cfg *c, T *par, uint64_t key) {
    struct titans_layout lo;
    titans_layout(c, &lo);
    size_t d = (size_t)c->d, H = (size_t)c->H, HD = H * (size_t)c->D;
    memset(par, 0, sizeof(T) * lo.total);
    struct {
        size_t off, n;
        double bound;
    } u[] = {{lo.wq, d * HD, 1 / sqrt((double)d)},
             {lo.wk, d * HD, 1 / sqrt((double)d)},
             {lo.wv, d * HD, 1 / sqrt((double)d)},
             {lo.wg, d * H, 1 / sqrt((double)d)},
             {lo.wo, HD * d, 1 / sqrt((double)HD)}};
    for (size_t f = 0; f < sizeof u / sizeof u[0]; f++)
        for (size_t i = 0; i < u[f].n; i++)
            par[u[f].off + i] = (T)(u[f].bound * (2 * rng_uniform(key + f, i) - 1));
    for (size_t h = 0; h < H; h++) {
        par[lo.bth + h] = (T)-2.0; /* theta = 0.12 max_lr */
        par[lo.beta + h] = (T)2.0; /* eta = 0.88 */
        par[lo.bal + h] = (T)-4.6; /* alpha = 0.01 */
    }
    if (c->conv > 0) /* identity taps */
        for (size_t j = 0; j < HD; j++)
            par[lo.ck + j] = par[lo.cv + j] = par[lo.cq + j] = 1;
    for (size_t h = 0; h < H; h++)
        for (int l = 0; l < lo.L; l++) {
            size_t n = (size_t)lo.in[l] * (size_t)lo.out[l];
            double b = sqrt(6.0 / (lo.in[l] + lo.out[l]));
            for (size_t i = 0; i < n; i++)
                par[lo.w0 + h * lo.P + lo.off[l] + i] =
                    (T)(b * (2 * rng_uniform(key + 16 + (uint64_t)l, h * n + i) - 1));
        }
}

/* ---- tape, state --------------------------------------------------------------------------- */
int SFX(titans_tape_init)(struct SFX(titans_tape) * t, const struct titans_cfg *c, int nmax) {
    memset(t, 0, sizeof *t);
    if (titans_cfg_error(c) || nmax < 1)
        return -1;
    t->cfg = *c;
    titans_layout(c, &t->lo);
    t->nmax = nmax;
    size_t N = (size_t)nmax, d = (size_t)c->d, H = (size_t)c->H, HD = H * (size_t)c->D;
    size_t Nc = N / (size_t)c->c, HP = H * t->lo.P;
    size_t K1 = c->conv > 0 ? (size_t)c->conv - 1 : 0;
    t->xe = SFX(xcalloc_)(t->lo.ops, (K1 + N) * d);
    t->x = t->xe + K1 * d;
    if (c->conv > 0) {
        t->zk = SFX(xcalloc_)(t->lo.ops, (K1 + N) * HD);
        t->zv = SFX(xcalloc_)(t->lo.ops, (K1 + N) * HD);
        t->zq = SFX(xcalloc_)(t->lo.ops, (K1 + N) * HD);
    }
    t->kp = SFX(xcalloc_)(t->lo.ops, N * HD);
    t->vp = SFX(xcalloc_)(t->lo.ops, N * HD);
    t->qp = SFX(xcalloc_)(t->lo.ops, N * HD);
    t->k = SFX(xcalloc_)(t->lo.ops, N * HD);
    t->v = SFX(xcalloc_)(t->lo.ops, N * HD);
    t->q = SFX(xcalloc_)(t->lo.ops, N * HD);
    t->kn = SFX(xcalloc_)(t->lo.ops, N * H);
    t->qn = SFX(xcalloc_)(t->lo.ops, N * H);
    t->th = SFX(xcalloc_)(t->lo.ops, N * H);
    t->pool = SFX(xcalloc_)(t->lo.ops, Nc * d);
    t->eta = SFX(xcalloc_)(t->lo.ops, Nc * H);
    t->alpha = SFX(xcalloc_)(t->lo.ops, Nc * H);
    /* every chunk state, or (recompute) only the TTT-batch boundaries */
    size_t mbs = (size_t)(c->b / c->c), ns = c->recompute ? (Nc + mbs - 1) / mbs : Nc;
    t->W = SFX(xcalloc_)(t->lo.ops, (ns + 1) * HP);
    t->S = SFX(xcalloc_)(t->lo.ops, (ns + 1) * HP);
    t->Wb = c->recompute ? NULL : SFX(xcalloc_)(t->lo.ops, (Nc + 1) * HP);
    t->m = SFX(xcalloc_)(t->lo.ops, N * HD);
    t->g = SFX(xcalloc_)(t->lo.ops, N * H);
    t->y = SFX(xcalloc_)(t->lo.ops, N * HD);
    return 0;
}

void SFX(titans_tape_free)(struct SFX(titans_tape) * t) {
    if (!t->lo.ops) /* zeroed: never initialised */
        return;
    T *ps[] = {t->xe, t->zk, t->zv,   t->zq,  t->kp,    t->vp, t->qp, t->k,  t->v, t->q, t->kn,
               t->qn, t->th, t->pool, t->eta, t->alpha, t->W,  t->S,  t->Wb, t->m, t->g, t->y};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++)
        SFX(xfree_)(t->lo.ops, ps[i]);
    memset(t, 0, sizeof *t);
}

void SFX(titans_state_init)(const struct titans_cfg *c, const T *par, T *W, T *S) {
    struct titans_layout lo;
    titans_layout(c, &lo);
    size_t HP = (size_t)c->H * lo.P;
    SFX(cpy_)(lo.ops, W, par + lo.w0, HP);
    SFX(zero_)(lo.ops, S, HP);
}

void SFX(titans_state_init_backward)(const struct titans_cfg *c, const T *dW, T *dpar) {
    struct titans_layout lo;
    titans_layout(c, &lo);
    size_t HP = (size_t)c->H * lo.P;
    lo.ops->titans->add2d(TDTYPE, 1, (int)HP, dpar + lo.w0, HP, dW, HP);
}

/* ---- forward ------------------------------------------------------------------------------- */
/* Retrieval groups: group j = tokens [i0, i1) reading state index (return value). Stored calls
 * have Nc + 1 groups (token i reads W_{floor((i+1)/c)}); read-only calls ceil(N/c) groups, all
 * reading state 0. */
static int SFX(ngroups_)(const struct SFX(titans_tape) * t) {
    return t->read_only ? (t->N + t->cfg.c - 1) / t->cfg.c : t->Nc + 1;
}
static int SFX(group_)(const struct SFX(titans_tape) * t, int j, int *i0, int *i1) {
    int cs = t->cfg.c, N = t->N;
    if (t->read_only) {
        *i0 = j * cs;
        *i1 = j * cs + cs < N ? j * cs + cs : N;
        return 0;
    }
    *i0 = j * cs - 1 > 0 ? j * cs - 1 : 0;
    *i1 = j * cs + cs - 1 < N ? j * cs + cs - 1 : N;
    return j;
}

/* The chunk states of one TTT batch for head h: rows 0..m of Wr/Sr (row stride ld) are the
 * states n0..n0+m; row 0 (W*, S) is given, rows 1..m are computed. Leaves the batch's inner
 * forward at W* in w. */
static void SFX(batch_states_)(const struct SFX(titans_tape) * t, struct SFX(ws_) * w, int h,
                               int n0, int m, T *Wr, T *Sr, size_t ld) {
    const struct titans_cfg *c = &t->cfg;
    const struct titans_layout *lo = &t->lo;
    const struct ops *o = lo->ops;
    int H = c->H, cs = c->c, rows = m * cs, t0 = n0 * cs;
    size_t P = lo->P;
    SFX(inner_at_)(lo, c->kappa, t->k, t->v, t->th, H, c->D, h, t0, rows, Wr, w);
    for (int ci = 0; ci < m; ci++) {
        T *G = w->G + (size_t)ci * P;
        SFX(chunk_grad_)(lo, w, ci * cs, cs, G);
        if (c->max_grad_norm > 0)
            SFX(clamp_)(lo, c->max_grad_norm, G, NULL, 0);
    }
    o->titans->unary(TDTYPE, TT_NEG, (size_t)m * P, w->G, w->G);
    /* S_r = eta_r S_{r-1} - G_r, W_r = (1 - alpha_r) W_{r-1} + S_r */
    const T *eta = t->eta + (size_t)n0 * H + h, *alpha = t->alpha + (size_t)n0 * H + h;
    o->titans->scan(TDTYPE, m, P, eta, (size_t)H, 0, w->G, P, Sr, Sr + ld, ld);
    o->titans->scan(TDTYPE, m, P, alpha, (size_t)H, 1, Sr + ld, ld, Wr, Wr + ld, ld);
}

/* Retrieval of tokens [i0, i1) of head h at weights Wj into t->m. */
static void SFX(read_fwd_)(struct SFX(titans_tape) * t, struct SFX(ws_) * w, int h, int i0, int i1,
                           const T *Wj) {
    const struct ops *o = t->lo.ops;
    int D = t->cfg.D, HD = t->cfg.H * D;
    SFX(gather_)(o, t->q, HD, h, D, i0, i1 - i0, w->A[0]);
    SFX(mlp_fwd_)(&t->lo, Wj, w, i1 - i0);
    o->copy2d(t->m + (size_t)i0 * HD + (size_t)h * D, sizeof(T) * HD, w->Hh[t->lo.L - 1],
              sizeof(T) * D, (size_t)(i1 - i0), sizeof(T) * D);
}

/* Its backward: Wbj += dW, dq += (rows [i0, i1), head h) from dm. */
static void SFX(read_bwd_)(const struct SFX(titans_tape) * t, struct SFX(ws_) * w, int h, int i0,
                           int i1, const T *Wj, T *Wbj, const T *dm, T *dq) {
    const struct titans_layout *lo = &t->lo;
    const struct ops *o = lo->ops;
    int D = t->cfg.D, HD = t->cfg.H * D, L = lo->L, n = i1 - i0;
    SFX(gather_)(o, t->q, HD, h, D, i0, n, w->A[0]);
    SFX(mlp_fwd_)(lo, Wj, w, n);
    SFX(gather_)(o, dm, HD, h, D, i0, n, w->Hb[L - 1]);
    for (int l = L - 1; l >= 0; l--) {
        SFX(mm_)
        (o, 1, 0, lo->in[l], lo->out[l], n, 1, w->A[l], (size_t)lo->in[l], w->Hb[l],
         (size_t)lo->out[l], 1, Wbj + lo->off[l], (size_t)lo->out[l]);
        SFX(mm_)
        (o, 0, 1, n, lo->in[l], lo->out[l], 1, w->Hb[l], (size_t)lo->out[l], Wj + lo->off[l],
         (size_t)lo->out[l], 0, w->Ab[l], (size_t)lo->in[l]);
        if (l > 0)
            o->titans->mul_gelu1(TDTYPE, (size_t)n * lo->in[l], w->Ab[l], w->Hh[l - 1],
                                 w->Hb[l - 1], 0);
    }
    SFX(scatter_add_)(o, dq, HD, h, D, i0, n, w->Ab[0]);
}

/* Rows a workspace must hold: a TTT batch's tokens (at most the call's), at least a chunk. */
static int SFX(rows_max_)(const struct SFX(titans_tape) * t) {
    const int cs = t->cfg.c, mb = t->cfg.b / cs, n = mb * cs < t->N ? mb * cs : t->N;
    return n > cs ? n : cs;
}

/* The forward of head h on a tape being filled: its chunk states (per TTT batch) and every
 * token's retrieval. Wsc, Ssc: (mb+1) x P scratch with recompute. */
static void SFX(head_fwd_)(struct SFX(titans_tape) * t, struct SFX(ws_) * w, int h, T *Wsc,
                           T *Ssc) {
    const struct ops *o = t->lo.ops;
    const int Nc = t->Nc, mb = t->cfg.b / t->cfg.c, rc = t->cfg.recompute;
    const size_t P = t->lo.P, HP = (size_t)t->cfg.H * P;
    if (Nc == 0) /* nothing stored: every token reads the incoming state */
        for (int j = 0; j < SFX(ngroups_)(t); j++) {
            int i0, i1;
            SFX(group_)(t, j, &i0, &i1);
            if (i1 > i0)
                SFX(read_fwd_)(t, w, h, i0, i1, t->W + (size_t)h * P);
        }
    for (int bi = 0; bi * mb < Nc; bi++) {
        int n0 = bi * mb, m = Nc - n0 < mb ? Nc - n0 : mb;
        T *Wr, *Sr;
        size_t ld = rc ? P : HP;
        if (rc) {
            Wr = Wsc, Sr = Ssc;
            SFX(cpy_)(o, Wr, t->W + (size_t)bi * HP + (size_t)h * P, P);
            SFX(cpy_)(o, Sr, t->S + (size_t)bi * HP + (size_t)h * P, P);
        } else {
            Wr = t->W + (size_t)n0 * HP + (size_t)h * P;
            Sr = t->S + (size_t)n0 * HP + (size_t)h * P;
        }
        SFX(batch_states_)(t, w, h, n0, m, Wr, Sr, ld);
        /* retrieval: token i reads W_{floor((i+1)/c)} */
        for (int j = bi ? n0 + 1 : 0; j <= n0 + m; j++) {
            int i0, i1;
            SFX(group_)(t, j, &i0, &i1);
            if (i1 > i0)
                SFX(read_fwd_)(t, w, h, i0, i1, Wr + (size_t)(j - n0) * ld);
        }
        if (rc) {
            SFX(cpy_)
            (o, t->W + (size_t)(bi + 1) * HP + (size_t)h * P, Wr + (size_t)m * ld, P);
            SFX(cpy_)
            (o, t->S + (size_t)(bi + 1) * HP + (size_t)h * P, Sr + (size_t)m * ld, P);
        }
    }
}

static void SFX(forward_)(struct SFX(titans_tape) * t, const T *par, const T *Win, const T *Sin,
                          const T *xprev, const T *x, int N, T *out, T *Wout, T *Sout,
                          int read_only) {
    const struct titans_cfg *c = &t->cfg;
    const struct titans_layout *lo = &t->lo;
    const struct ops *o = lo->ops;
    if (N < 0 || N > t->nmax)
        HW_DIE("titans: a call of %d tokens on a tape for at most %d", N, t->nmax);
    int d = c->d, H = c->H, D = c->D, HD = H * D, cs = c->c, mb = c->b / c->c;
    size_t P = lo->P, HP = (size_t)H * P;
    int Nc = read_only ? 0 : N / cs, rc = c->recompute;
    t->N = N;
    t->Nc = Nc;
    t->read_only = read_only;
    size_t K1 = c->conv > 0 ? (size_t)c->conv - 1 : 0;
    if (xprev)
        SFX(cpy_)(o, t->xe, xprev, K1 * d);
    else
        SFX(zero_)(o, t->xe, K1 * d);
    SFX(cpy_)(o, t->x, x, (size_t)N * d);
    if (read_only)
        SFX(project_)
    (c, lo, par, t->xe, N, NULL, NULL, t->zq, NULL, NULL, t->qp, NULL, NULL, t->q, NULL, t->qn);
    else SFX(project_)(c, lo, par, t->xe, N, t->zk, t->zv, t->zq, t->kp, t->vp, t->qp, t->k, t->v,
                       t->q, t->kn, t->qn);
    SFX(rgate_)(c, lo, par, x, N, t->g);
    if (Nc > 0)
        o->titans->group_sum(TDTYPE, Nc, cs, d, x, t->pool, TT_SUM_MEAN);
    SFX(gate_)(c, par, lo->weta, lo->beta, t->pool, Nc, 1, t->eta);
    SFX(gate_)(c, par, lo->wal, lo->bal, t->pool, Nc, 1, t->alpha);
    if (c->theta_per_chunk) {
        T *tc = SFX(xcalloc_)(o, (size_t)Nc * H);
        SFX(gate_)(c, par, lo->wth, lo->bth, t->pool, Nc, c->max_lr, tc);
        SFX(zero_)(o, t->th, (size_t)N * H);
        if (Nc > 0)
            o->titans->group_expand(TDTYPE, Nc, cs, H, tc, t->th, TT_EXP_SET);
        SFX(xfree_)(o, tc);
    } else if (!read_only) {
        SFX(gate_)(c, par, lo->wth, lo->bth, x, N, c->max_lr, t->th);
    }
    SFX(cpy_)(o, t->W, Win, HP);
    if (Sin)
        SFX(cpy_)(o, t->S, Sin, HP);
    else
        SFX(zero_)(o, t->S, HP);

    const int rows_max = SFX(rows_max_)(t);
    /* heads are independent: one thread per head on the CPU, each with its own workspace */
#pragma omp parallel if (SFX(head_threads_)(o, H))
    {
        struct SFX(ws_) w;
        SFX(ws_init_)(&w, lo, rows_max, mb);
        T *Wsc = rc ? SFX(xcalloc_)(o, (size_t)(mb + 1) * P) : NULL;
        T *Ssc = rc ? SFX(xcalloc_)(o, (size_t)(mb + 1) * P) : NULL;
#pragma omp for schedule(static)
        for (int h = 0; h < H; h++)
            SFX(head_fwd_)(t, &w, h, Wsc, Ssc);
        SFX(xfree_)(o, Wsc);
        SFX(xfree_)(o, Ssc);
        SFX(ws_free_)(&w);
    }
    o->titans->head_scale(TDTYPE, N, H, D, t->g, t->m, t->y);
    SFX(mm_)(o, 0, 0, N, d, HD, 1, t->y, (size_t)HD, par + lo->wo, (size_t)d, 0, out, (size_t)d);
    int last = rc ? (Nc + mb - 1) / mb : Nc; /* index of the final stored state */
    if (Wout)
        SFX(cpy_)(o, Wout, t->W + (size_t)last * HP, HP);
    if (Sout)
        SFX(cpy_)(o, Sout, t->S + (size_t)last * HP, HP);
}

void SFX(titans_forward)(struct SFX(titans_tape) * t, const T *par, const T *Win, const T *Sin,
                         const T *xprev, const T *x, int N, T *out, T *Wout, T *Sout) {
    SFX(forward_)(t, par, Win, Sin, xprev, x, N, out, Wout, Sout, 0);
}

void SFX(titans_read)(struct SFX(titans_tape) * t, const T *par, const T *W, const T *xprev,
                      const T *x, int N, T *out) {
    SFX(forward_)(t, par, W, NULL, xprev, x, N, out, NULL, NULL, 1);
}

void SFX(titans_read_backward)(struct SFX(titans_tape) * t, const T *par, const T *dout, T *dpar,
                               T *dx, T *dxprev, T *dW) {
    SFX(titans_backward)(t, par, dout, NULL, NULL, dpar, dx, dxprev, dW, NULL);
}

/* ---- backward ------------------------------------------------------------------------------ */
/* Gate backward: zb = gb * dgate/dz (out = scale sigmoid(z)); dw += xin^T zb, db += sum zb,
 * dxin += zb w^T. */
static void SFX(gate_bwd_)(const struct titans_cfg *c, const T *par, size_t wo, size_t bo,
                           const T *xin, int n, double scale, const T *val, const T *gb, T *dpar,
                           T *dxin) {
    int H = c->H, d = c->d;
    if (n <= 0)
        return;
    const struct ops *o = SFX(ops_)(c);
    T *zb = SFX(xcalloc_)(o, (size_t)n * H);
    o->titans->gate_bwd(TDTYPE, (size_t)n * H, scale, val, gb, zb);
    SFX(mm_)(o, 1, 0, d, H, n, 1, xin, (size_t)d, zb, (size_t)H, 1, dpar + wo, (size_t)H);
    if (bo != (size_t)-1)
        o->titans->group_sum(TDTYPE, 1, n, H, zb, dpar + bo, TT_SUM_ACC);
    if (dxin)
        SFX(mm_)(o, 0, 1, n, d, H, 1, zb, (size_t)H, par + wo, (size_t)H, 1, dxin, (size_t)d);
    SFX(xfree_)(o, zb);
}

/* The VJP of one TTT batch's gradients at its starting weights Ws (rows [t0, t0+rows) of head
 * h), given their adjoints w->Gb (m x P): Wbs += the weights' adjoint, dk/dv/dth += . */
static void SFX(batch_grads_bwd_)(const struct SFX(titans_tape) * t, struct SFX(ws_) * w, int h,
                                  int t0, int m, const T *Ws, T *Wbs, T *dk, T *dv, T *dth) {
    const struct titans_cfg *c = &t->cfg;
    const struct titans_layout *lo = &t->lo;
    const struct ops *o = lo->ops;
    const struct titans_ops *tk = o->titans;
    int H = c->H, D = c->D, HD = H * D, cs = c->c, L = lo->L, rows = m * cs;
    size_t P = lo->P;
    SFX(inner_at_)(lo, c->kappa, t->k, t->v, t->th, H, D, h, t0, rows, Ws, w);
    for (int ci = 0; ci < m; ci++) {
        T *Gb = w->Gb + (size_t)ci * P;
        if (c->max_grad_norm > 0) {
            T *G = w->G + (size_t)ci * P;
            SFX(chunk_grad_)(lo, w, ci * cs, cs, G);
            SFX(clamp_)(lo, c->max_grad_norm, G, Gb, 1);
        }
        int r0 = ci * cs;
        for (int l = 0; l < L; l++) {
            /* G_l = A[l]^T R[l]: Rb[l] = A[l] Gb_l, Ab[l] = R[l] Gb_l^T */
            SFX(mm_)
            (o, 0, 0, cs, lo->out[l], lo->in[l], 1, w->A[l] + (size_t)r0 * lo->in[l],
             (size_t)lo->in[l], Gb + lo->off[l], (size_t)lo->out[l], 0,
             w->Rb[l] + (size_t)r0 * lo->out[l], (size_t)lo->out[l]);
            SFX(mm_)
            (o, 0, 1, cs, lo->in[l], lo->out[l], 1, w->R[l] + (size_t)r0 * lo->out[l],
             (size_t)lo->out[l], Gb + lo->off[l], (size_t)lo->out[l], 0,
             w->Ab[l] + (size_t)r0 * lo->in[l], (size_t)lo->in[l]);
        }
    }
    for (int l = 0; l < L; l++)
        SFX(zero_)(o, w->Hb[l], (size_t)rows * lo->out[l]);
    /* reverse of R[l] = U[l] gelu'(Hh[l]), U[l] = R[l+1] W_{l+1}^T */
    for (int l = 0; l + 1 < L; l++) {
        tk->gelu2_rev(TDTYPE, (size_t)rows * lo->out[l], w->Hh[l], w->Rb[l], w->U[l], w->Hb[l]);
        SFX(mm_)
        (o, 0, 0, rows, lo->out[l + 1], lo->in[l + 1], 1, w->U[l], (size_t)lo->in[l + 1],
         Ws + lo->off[l + 1], (size_t)lo->out[l + 1], 1, w->Rb[l + 1], (size_t)lo->out[l + 1]);
        SFX(mm_)
        (o, 1, 0, lo->in[l + 1], lo->out[l + 1], rows, 1, w->U[l], (size_t)lo->in[l + 1],
         w->R[l + 1], (size_t)lo->out[l + 1], 1, Wbs + lo->off[l + 1], (size_t)lo->out[l + 1]);
    }
    /* reverse of R[L-1] = 2 kappa theta (p - v) */
    tk->resid_rev(TDTYPE, rows, D, 2 * c->kappa, w->th, w->Hh[L - 1], w->V, w->Rb[L - 1],
                  w->Hb[L - 1], dv + (size_t)t0 * HD + (size_t)h * D, (size_t)HD,
                  dth + (size_t)t0 * H + h, (size_t)H);
    /* reverse of the MLP forward at W* */
    for (int l = L - 1; l >= 0; l--) {
        SFX(mm_)
        (o, 1, 0, lo->in[l], lo->out[l], rows, 1, w->A[l], (size_t)lo->in[l], w->Hb[l],
         (size_t)lo->out[l], 1, Wbs + lo->off[l], (size_t)lo->out[l]);
        SFX(mm_)
        (o, 0, 1, rows, lo->in[l], lo->out[l], 1, w->Hb[l], (size_t)lo->out[l], Ws + lo->off[l],
         (size_t)lo->out[l], 1, w->Ab[l], (size_t)lo->in[l]);
        if (l > 0)
            tk->mul_gelu1(TDTYPE, (size_t)rows * lo->in[l], w->Ab[l], w->Hh[l - 1], w->Hb[l - 1],
                          1);
    }
    SFX(scatter_add_)(o, dk, HD, h, D, t0, rows, w->Ab[0]);
}

/* The q/k/v inputs' backward from the adjoints dk, dv, dq (N x HD, overwritten): through the
 * l2-normalisation, SiLU, the conv and the projections into dpar, dx and dxprev. */
static void SFX(inputs_bwd_)(const struct SFX(titans_tape) * t, const T *par, T *dk, T *dv, T *dq,
                             T *dpar, T *dx, T *dxprev) {
    const struct titans_cfg *c = &t->cfg;
    const struct titans_layout *lo = &t->lo;
    const struct ops *o = lo->ops;
    const struct titans_ops *tk = o->titans;
    int N = t->N, d = c->d, H = c->H, D = c->D, HD = H * D;
    T *adj[3] = {dk, dv, dq}, *pre[3] = {t->kp, t->vp, t->qp}, *post[3] = {t->k, t->v, t->q};
    T *nrm[3] = {t->kn, NULL, t->qn};
    size_t off[3] = {lo->wk, lo->wv, lo->wq}, coff[3] = {lo->ck, lo->cv, lo->cq};
    const T *zs[3] = {t->zk, t->zv, t->zq};
    int K = c->conv, K1 = K > 0 ? K - 1 : 0;
    T *dz = NULL, *dxe = NULL;
    if (K > 0) {
        dz = SFX(xcalloc_)(o, (size_t)(N + K1) * HD);
        dxe = SFX(xcalloc_)(o, (size_t)(N + K1) * d);
    }
    for (int s = t->read_only ? 2 : 0; s < 3; s++) {
        T *a = adj[s];
        if (c->l2norm && nrm[s])
            tk->l2n_bwd(TDTYPE, N * H, D, post[s], nrm[s], a);
        if (c->silu)
            tk->silu_bwd(TDTYPE, (size_t)N * HD, pre[s], a);
        if (K > 0) {
            /* pre_t = sum_s c_s z_{t+K1-s}: dz and dc, then the projection of all K1+N rows */
            SFX(zero_)(o, dz, (size_t)(N + K1) * HD);
            tk->conv_bwd(TDTYPE, N, HD, K, zs[s], par + coff[s], a, dz, dpar + coff[s]);
            SFX(mm_)
            (o, 1, 0, d, HD, N + K1, 1, t->xe, (size_t)d, dz, (size_t)HD, 1, dpar + off[s],
             (size_t)HD);
            SFX(mm_)
            (o, 0, 1, N + K1, d, HD, 1, dz, (size_t)HD, par + off[s], (size_t)HD, 1, dxe,
             (size_t)d);
        } else {
            SFX(mm_)
            (o, 1, 0, d, HD, N, 1, t->x, (size_t)d, a, (size_t)HD, 1, dpar + off[s], (size_t)HD);
            if (dx)
                SFX(mm_)
            (o, 0, 1, N, d, HD, 1, a, (size_t)HD, par + off[s], (size_t)HD, 1, dx, (size_t)d);
        }
    }
    if (K > 0) {
        if (dxprev && K1 > 0)
            tk->add2d(TDTYPE, 1, K1 * d, dxprev, (size_t)K1 * d, dxe, (size_t)K1 * d);
        if (dx && N > 0)
            tk->add2d(TDTYPE, 1, N * d, dx, (size_t)N * d, dxe + (size_t)K1 * d, (size_t)N * d);
        SFX(xfree_)(o, dz);
        SFX(xfree_)(o, dxe);
    }
}

/* What the per-head backward reads and accumulates (every head's arrays), and one thread's
 * scratch (P each; the (mb+1) x P batch states with recompute). */
struct SFX(bwd_adj_) {
    const T *dm;            /* N x HD: the retrieved values' adjoint */
    T *dq, *dk, *dv, *dth;  /* N x HD, N x H: accumulated */
    T *deta, *dal;          /* Nc x H: written */
    const T *dWout, *dSout; /* H x P or NULL */
    T *dWin, *dSin;         /* H x P or NULL */
};
struct SFX(bwd_scratch_) {
    T *Sb, *carry, *Wsc, *Ssc, *Wbsc;
};

/* The backward of head h: retrieval, the chunk steps in reverse and the VJP of each TTT batch's
 * gradients, batches last to first. */
static void SFX(head_bwd_)(const struct SFX(titans_tape) * t, struct SFX(ws_) * w, int h,
                           const struct SFX(bwd_adj_) * g, const struct SFX(bwd_scratch_) * sc) {
    const struct ops *o = t->lo.ops;
    const int Nc = t->Nc, H = t->cfg.H, cs = t->cfg.c, mb = t->cfg.b / cs, rc = t->cfg.recompute;
    const int nb = (Nc + mb - 1) / mb;
    const size_t P = t->lo.P, HP = (size_t)H * P;
    T *Wb = t->Wb;
    if (g->dSout)
        SFX(cpy_)(o, sc->Sb, g->dSout + (size_t)h * P, P);
    else
        SFX(zero_)(o, sc->Sb, P);
    /* the adjoint of the final state W_{Nc} */
    if (g->dWout)
        SFX(cpy_)(o, sc->carry, g->dWout + (size_t)h * P, P);
    else
        SFX(zero_)(o, sc->carry, P);
    if (Nc == 0) { /* nothing stored: every token read the incoming state */
        T *Wb0 = rc ? sc->carry : Wb + (size_t)h * P;
        for (int j = 0; j < SFX(ngroups_)(t); j++) {
            int i0, i1;
            SFX(group_)(t, j, &i0, &i1);
            if (i1 > i0)
                SFX(read_bwd_)(t, w, h, i0, i1, t->W + (size_t)h * P, Wb0, g->dm, g->dq);
        }
    }
    /* TTT batches in reverse: retrieval backward, the scans in reverse, then the VJP of
     * the batch's gradients at W* */
    for (int bi = nb - 1; bi >= 0; bi--) {
        int n0 = bi * mb, m = Nc - n0 < mb ? Nc - n0 : mb;
        T *Wr, *Sr, *Wbr;
        size_t ld = rc ? P : HP;
        if (rc) {
            Wr = sc->Wsc, Sr = sc->Ssc, Wbr = sc->Wbsc;
            SFX(cpy_)(o, Wr, t->W + (size_t)bi * HP + (size_t)h * P, P);
            SFX(cpy_)(o, Sr, t->S + (size_t)bi * HP + (size_t)h * P, P);
            SFX(batch_states_)(t, w, h, n0, m, Wr, Sr, ld);
            SFX(zero_)(o, Wbr, (size_t)m * P);
            SFX(cpy_)(o, Wbr + (size_t)m * ld, sc->carry, P);
        } else {
            Wr = t->W + (size_t)n0 * HP + (size_t)h * P;
            Sr = t->S + (size_t)n0 * HP + (size_t)h * P;
            Wbr = Wb + (size_t)n0 * HP + (size_t)h * P;
        }
        for (int j = bi ? n0 + 1 : 0; j <= n0 + m; j++) {
            int i0, i1;
            SFX(group_)(t, j, &i0, &i1);
            if (i1 > i0)
                SFX(read_bwd_)
            (t, w, h, i0, i1, Wr + (size_t)(j - n0) * ld, Wbr + (size_t)(j - n0) * ld, g->dm,
             g->dq);
        }
        size_t gi = (size_t)n0 * H + h;
        o->titans->states_rev(TDTYPE, m, P, ld, Wbr, Wr, Sr, t->eta + gi, t->alpha + gi, (size_t)H,
                              sc->Sb, w->Gb, g->deta + gi, g->dal + gi);
        /* recompute the batch's inner forward at W* and take the VJP of its gradients */
        SFX(batch_grads_bwd_)(t, w, h, n0 * cs, m, Wr, Wbr, g->dk, g->dv, g->dth);
        if (rc)
            SFX(cpy_)(o, sc->carry, Wbr, P);
    }
    if (g->dSin)
        SFX(cpy_)(o, g->dSin + (size_t)h * P, sc->Sb, P);
    if (rc && g->dWin)
        SFX(cpy_)(o, g->dWin + (size_t)h * P, sc->carry, P);
}

void SFX(titans_backward)(struct SFX(titans_tape) * t, const T *par, const T *dout, const T *dWout,
                          const T *dSout, T *dpar, T *dx, T *dxprev, T *dWin, T *dSin) {
    const struct titans_cfg *c = &t->cfg;
    const struct titans_layout *lo = &t->lo;
    const struct ops *o = lo->ops;
    const struct titans_ops *tk = o->titans;
    int N = t->N, Nc = t->Nc, d = c->d, H = c->H, D = c->D, HD = H * D, cs = c->c, mb = c->b / c->c;
    size_t P = lo->P, HP = (size_t)H * P;

    int rc = c->recompute;
    T *Wb = t->Wb; /* every state's adjoint (NULL when recomputing: per-batch scratch) */
    if (!rc) {
        SFX(zero_)(o, Wb, (size_t)(Nc + 1) * HP);
        if (dWout)
            SFX(cpy_)(o, Wb + (size_t)Nc * HP, dWout, HP);
    }
    T *dY = SFX(xcalloc_)(o, (size_t)N * HD), *dm = SFX(xcalloc_)(o, (size_t)N * HD);
    T *dg = SFX(xcalloc_)(o, (size_t)N * H), *dq = SFX(xcalloc_)(o, (size_t)N * HD);
    T *dk = SFX(xcalloc_)(o, (size_t)N * HD), *dv = SFX(xcalloc_)(o, (size_t)N * HD);
    T *dth = SFX(xcalloc_)(o, (size_t)N * H), *deta = SFX(xcalloc_)(o, (size_t)Nc * H);
    T *dal = SFX(xcalloc_)(o, (size_t)Nc * H), *dpool = SFX(xcalloc_)(o, (size_t)Nc * d);

    /* output projection and retrieve gate */
    SFX(mm_)(o, 0, 1, N, HD, d, 1, dout, (size_t)d, par + lo->wo, (size_t)d, 0, dY, (size_t)HD);
    SFX(mm_)
    (o, 1, 0, HD, d, N, 1, t->y, (size_t)HD, dout, (size_t)d, 1, dpar + lo->wo, (size_t)d);
    tk->row_dot(TDTYPE, N * H, D, dY, t->m, dg);
    tk->head_scale(TDTYPE, N, H, D, t->g, dY, dm);
    if (c->gate)
        SFX(gate_bwd_)(c, par, lo->wg, (size_t)-1, t->x, N, 1, t->g, dg, dpar, dx);

    const int rows_max = SFX(rows_max_)(t);
    const struct SFX(bwd_adj_) g = {dm, dq, dk, dv, dth, deta, dal, dWout, dSout, dWin, dSin};
#pragma omp parallel if (SFX(head_threads_)(o, H))
    {
        struct SFX(ws_) w;
        SFX(ws_init_)(&w, lo, rows_max, mb);
        T *Sb = SFX(xcalloc_)(o, P), *carry = SFX(xcalloc_)(o, P);
        T *Wsc = rc ? SFX(xcalloc_)(o, (size_t)(mb + 1) * P) : NULL;
        T *Ssc = rc ? SFX(xcalloc_)(o, (size_t)(mb + 1) * P) : NULL;
        T *Wbsc = rc ? SFX(xcalloc_)(o, (size_t)(mb + 1) * P) : NULL;
        struct SFX(bwd_scratch_) sc = {Sb, carry, Wsc, Ssc, Wbsc};
#pragma omp for schedule(static)
        for (int h = 0; h < H; h++)
            SFX(head_bwd_)(t, &w, h, &g, &sc);
        SFX(ws_free_)(&w);
        SFX(xfree_)(o, Sb);
        SFX(xfree_)(o, carry);
        SFX(xfree_)(o, Wsc);
        SFX(xfree_)(o, Ssc);
        SFX(xfree_)(o, Wbsc);
    }
    if (dWin && !rc)
        SFX(cpy_)(o, dWin, Wb, HP);

    /* gates */
    SFX(gate_bwd_)(c, par, lo->weta, lo->beta, t->pool, Nc, 1, t->eta, deta, dpar, dpool);
    SFX(gate_bwd_)(c, par, lo->wal, lo->bal, t->pool, Nc, 1, t->alpha, dal, dpar, dpool);
    if (c->theta_per_chunk) {
        T *tc = SFX(xcalloc_)(o, (size_t)Nc * H), *tcb = SFX(xcalloc_)(o, (size_t)Nc * H);
        if (Nc > 0) { /* a chunk's rows hold its theta: take the first, sum the adjoints */
            o->copy2d(tc, sizeof(T) * H, t->th, sizeof(T) * (size_t)cs * H, (size_t)Nc,
                      sizeof(T) * H);
            tk->group_sum(TDTYPE, Nc, cs, H, dth, tcb, TT_SUM_SET);
        }
        SFX(gate_bwd_)(c, par, lo->wth, lo->bth, t->pool, Nc, c->max_lr, tc, tcb, dpar, dpool);
        SFX(xfree_)(o, tc);
        SFX(xfree_)(o, tcb);
    } else if (!t->read_only) {
        SFX(gate_bwd_)(c, par, lo->wth, lo->bth, t->x, N, c->max_lr, t->th, dth, dpar, dx);
    }
    if (dx && Nc > 0)
        tk->group_expand(TDTYPE, Nc, cs, d, dpool, dx, TT_EXP_ADD_DIV);

    SFX(inputs_bwd_)(t, par, dk, dv, dq, dpar, dx, dxprev);
    T *bufs[] = {dY, dm, dg, dq, dk, dv, dth, deta, dal, dpool};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        SFX(xfree_)(o, bufs[i]);
}

int SFX(titans_nonfinite)(const struct SFX(titans_tape) * t) {
    size_t HP = (size_t)t->cfg.H * t->lo.P;
    int mb = t->cfg.b / t->cfg.c, step = t->cfg.recompute ? mb : 1;
    int ns = t->cfg.recompute ? (t->Nc + mb - 1) / mb : t->Nc;
    const struct titans_ops *tk = t->lo.ops->titans;
    for (int n = 0; n <= ns; n++)
        if (tk->nonfinite(TDTYPE, HP, t->W + (size_t)n * HP) ||
            tk->nonfinite(TDTYPE, HP, t->S + (size_t)n * HP))
            return n * step < t->Nc ? n * step : t->Nc;
    return -1;
}

/* ---- token-by-token decoding --------------------------------------------------------------- */
int SFX(titans_dec_init)(struct SFX(titans_dec) * s, const struct titans_cfg *c, const T *par) {
    memset(s, 0, sizeof *s);
    if (titans_cfg_error(c))
        return -1;
    s->cfg = *c;
    titans_layout(c, &s->lo);
    size_t HP = (size_t)c->H * s->lo.P;
    s->W = SFX(xcalloc_)(s->lo.ops, HP);
    s->S = SFX(xcalloc_)(s->lo.ops, HP);
    s->Ws = SFX(xcalloc_)(s->lo.ops, HP);
    s->K1 = c->conv > 0 ? c->conv - 1 : 0;
    s->buf = SFX(xcalloc_)(s->lo.ops, (size_t)(s->K1 + c->c) * c->d);
    SFX(titans_state_init)(c, par, s->W, s->S);
    SFX(cpy_)(s->lo.ops, s->Ws, s->W, HP);
    return 0;
}

void SFX(titans_dec_free)(struct SFX(titans_dec) * s) {
    if (!s->lo.ops) /* zeroed: never initialised */
        return;
    SFX(xfree_)(s->lo.ops, s->W);
    SFX(xfree_)(s->lo.ops, s->S);
    SFX(xfree_)(s->lo.ops, s->Ws);
    SFX(xfree_)(s->lo.ops, s->buf);
    memset(s, 0, sizeof *s);
}

/* The chunk now complete in s->buf: its gradient at W* updates S and W per head. */
static void SFX(dec_store_)(struct SFX(titans_dec) * s, const T *par, struct SFX(ws_) * w) {
    const struct titans_cfg *c = &s->cfg;
    const struct titans_layout *lo = &s->lo;
    const struct ops *o = lo->ops;
    int d = c->d, H = c->H, D = c->D, HD = H * D, cs = c->c, K1 = s->K1;
    size_t P = lo->P;
    const T *pend = s->buf + (size_t)K1 * d;
    T *zk = SFX(xcalloc_)(o, (size_t)(K1 + cs) * HD),
      *zv = SFX(xcalloc_)(o, (size_t)(K1 + cs) * HD);
    T *k = SFX(xcalloc_)(o, (size_t)cs * HD), *v = SFX(xcalloc_)(o, (size_t)cs * HD);
    T *kp = SFX(xcalloc_)(o, (size_t)cs * HD), *vp = SFX(xcalloc_)(o, (size_t)cs * HD);
    T *kn = SFX(xcalloc_)(o, (size_t)cs * H), *th = SFX(xcalloc_)(o, (size_t)cs * H);
    T *pl = SFX(xcalloc_)(o, (size_t)d), *et = SFX(xcalloc_)(o, (size_t)H);
    T *ap = SFX(xcalloc_)(o, (size_t)H);
    SFX(project_)(c, lo, par, s->buf, cs, zk, zv, NULL, kp, vp, NULL, k, v, NULL, kn, NULL);
    o->titans->group_sum(TDTYPE, 1, cs, d, pend, pl, TT_SUM_MEAN);
    SFX(gate_)(c, par, lo->weta, lo->beta, pl, 1, 1, et);
    SFX(gate_)(c, par, lo->wal, lo->bal, pl, 1, 1, ap);
    if (c->theta_per_chunk) {
        SFX(gate_)(c, par, lo->wth, lo->bth, pl, 1, c->max_lr, th);
        if (cs > 1)
            o->titans->group_expand(TDTYPE, 1, cs - 1, H, th, th + H, TT_EXP_SET);
    } else {
        SFX(gate_)(c, par, lo->wth, lo->bth, pend, cs, c->max_lr, th);
    }
    for (int h = 0; h < H; h++) {
        SFX(inner_at_)(lo, c->kappa, k, v, th, H, D, h, 0, cs, s->Ws + (size_t)h * P, w);
        SFX(chunk_grad_)(lo, w, 0, cs, w->G);
        if (c->max_grad_norm > 0)
            SFX(clamp_)(lo, c->max_grad_norm, w->G, NULL, 0);
        /* S = eta S - G, W = (1 - alpha) W + S: one step of the batch scans */
        T *Wh = s->W + (size_t)h * P, *Sh = s->S + (size_t)h * P;
        o->titans->unary(TDTYPE, TT_NEG, P, w->G, w->G);
        o->titans->scan(TDTYPE, 1, P, et + h, 1, 0, w->G, P, Sh, Sh, P);
        o->titans->scan(TDTYPE, 1, P, ap + h, 1, 1, Sh, P, Wh, Wh, P);
    }
    T *bufs[] = {zk, zv, k, v, kp, vp, kn, th, pl, et, ap};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        SFX(xfree_)(o, bufs[i]);
}

/* Store x (when its chunk completes, the chunk's gradient at W* updates S and W), then read the
 * current W: the reference's single-token path, equal to the parallel pass's W_{floor((i+1)/c)}. */
void SFX(titans_dec_step)(struct SFX(titans_dec) * s, const T *par, const T *x, T *out) {
    const struct titans_cfg *c = &s->cfg;
    const struct titans_layout *lo = &s->lo;
    const struct ops *o = lo->ops;
    int d = c->d, H = c->H, D = c->D, HD = H * D, cs = c->c, K1 = s->K1;
    size_t P = lo->P, HP = (size_t)H * P;
    T *pend = s->buf + (size_t)K1 * d;
    SFX(cpy_)(o, pend + (size_t)s->npend * d, x, (size_t)d);
    s->npend++;
    struct SFX(ws_) w;
    SFX(ws_init_)(&w, lo, cs, 1);
    /* the query from x and its K1 predecessors (before the history shifts) */
    T *zq = SFX(xcalloc_)(o, (size_t)(K1 + 1) * HD), *qp = SFX(xcalloc_)(o, (size_t)HD);
    T *q = SFX(xcalloc_)(o, (size_t)HD), *qn = SFX(xcalloc_)(o, (size_t)H),
      *g = SFX(xcalloc_)(o, (size_t)H);
    T *y = SFX(xcalloc_)(o, (size_t)HD);
    SFX(project_)
    (c, lo, par, s->buf + (size_t)(s->npend - 1) * d, 1, NULL, NULL, zq, NULL, NULL, qp, NULL, NULL,
     q, NULL, qn);
    SFX(rgate_)(c, lo, par, x, 1, g);
    if (s->npend == cs) {
        SFX(dec_store_)(s, par, &w);
        s->npend = 0;
        s->chunks++;
        if (K1 > 0) /* the history rows slide down past the chunk (overlapping when cs < K1) */
            for (int r = 0; r < K1; r++)
                SFX(cpy_)(o, s->buf + (size_t)r * d, s->buf + (size_t)(r + cs) * d, (size_t)d);
        if ((s->chunks * cs) % c->b == 0)
            SFX(cpy_)(o, s->Ws, s->W, HP);
    }
    for (int h = 0; h < H; h++) {
        SFX(cpy_)(o, w.A[0], q + (size_t)h * D, (size_t)D);
        SFX(mlp_fwd_)(lo, s->W + (size_t)h * P, &w, 1);
        o->titans->head_scale(TDTYPE, 1, 1, D, g + h, w.Hh[lo->L - 1], y + (size_t)h * D);
    }
    SFX(mm_)(o, 0, 0, 1, d, HD, 1, y, (size_t)HD, par + lo->wo, (size_t)d, 0, out, (size_t)d);
    T *bufs[] = {zq, qp, q, qn, g, y};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        SFX(xfree_)(o, bufs[i]);
    SFX(ws_free_)(&w);
}
