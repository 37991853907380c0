/* model/titans_impl.h -- the body of the Titans memory (model/titans.h), included twice by
 * model/titans.c with T = float / double, SFX(name) adding the suffix, TDTYPE its element type and
 * TEXP/TTANH/TSQRT/TERF the maths. Not a public header. */

/* ---- scalar helpers ------------------------------------------------------------------------ */
static T SFX(sig_)(T z) {
    return (T)1 / ((T)1 + TEXP(-z));
}
static T SFX(gelu_)(T h) {
    return (T)0.5 * h * ((T)1 + TERF(h * (T)0.70710678118654752440));
}
static T SFX(npdf_)(T h) {
    return (T)0.39894228040143267794 * TEXP((T)-0.5 * h * h);
}
/* gelu'(h) = Phi(h) + h phi(h),  gelu''(h) = phi(h) (2 - h^2) */
static T SFX(gelu1_)(T h) {
    return (T)0.5 * ((T)1 + TERF(h * (T)0.70710678118654752440)) + h * SFX(npdf_)(h);
}
static T SFX(gelu2_)(T h) {
    return SFX(npdf_)(h) * ((T)2 - h * h);
}

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

static T SFX(dot_)(const T *a, const T *b, size_t n) {
    T s = 0;
    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* Zeroed buffers from the backend (at least one element). */
static void *SFX(xcalloc_)(const struct ops *o, size_t n) {
    return o->alloc((n ? n : 1) * sizeof(T));
}

static void SFX(xfree_)(const struct ops *o, void *p) {
    o->free(p);
}

/* ---- scans --------------------------------------------------------------------------------- */
void SFX(titans_scan_seq)(int n, size_t P, const T *a, const T *x, size_t ldx, const T *prev, T *h,
                          size_t ldh) {
    for (int i = 0; i < n; i++) {
        const T *hp = i ? h + (size_t)(i - 1) * ldh : prev;
        const T *xi = x + (size_t)i * ldx;
        T *hi = h + (size_t)i * ldh;
        for (size_t j = 0; j < P; j++)
            hi[j] = (hp ? a[i] * hp[j] : 0) + xi[j];
    }
}

/* Blocked scan: independent local scans per block (block 0 from prev, the others from 0), then
 * the block ends are chained in order, then every row adds (prod of its block's gates up to it)
 * times the previous block's end. The arithmetic per element does not depend on threads. */
void SFX(titans_scan)(int n, size_t P, const T *a, const T *x, size_t ldx, const T *prev, T *h,
                      size_t ldh) {
    int nb = (int)TSQRT((T)n);
    if (n < 8 || nb < 2) {
        SFX(titans_scan_seq)(n, P, a, x, ldx, prev, h, ldh);
        return;
    }
    int bs = (n + nb - 1) / nb;
    nb = (n + bs - 1) / bs;
#pragma omp parallel for schedule(static) if ((size_t)n * P >= ((size_t)1 << 21))
    for (int k = 0; k < nb; k++) {
        int s = k * bs, e = s + bs < n ? s + bs : n;
        SFX(titans_scan_seq)
        (e - s, P, a + s, x + (size_t)s * ldx, ldx, k ? NULL : prev, h + (size_t)s * ldh, ldh);
    }
    /* chain block ends: end_k += (prod_{block k} a) end_{k-1} */
    for (int k = 1; k < nb; k++) {
        int s = k * bs, e = s + bs < n ? s + bs : n;
        T pa = 1;
        for (int i = s; i < e; i++)
            pa *= a[i];
        const T *pe = h + (size_t)(s - 1) * ldh;
        T *he = h + (size_t)(e - 1) * ldh;
        for (size_t j = 0; j < P; j++)
            he[j] += pa * pe[j];
    }
#pragma omp parallel for schedule(static) if ((size_t)n * P >= ((size_t)1 << 21))
    for (int k = 1; k < nb; k++) {
        int s = k * bs, e = s + bs < n ? s + bs : n;
        const T *pe = h + (size_t)(s - 1) * ldh;
        T pa = 1;
        for (int i = s; i < e - 1; i++) {
            pa *= a[i];
            T *hi = h + (size_t)i * ldh;
            for (size_t j = 0; j < P; j++)
                hi[j] += pa * pe[j];
        }
    }
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
        if (l + 1 < lo->L) {
            size_t e = (size_t)n * (size_t)lo->out[l];
            for (size_t i = 0; i < e; i++)
                w->A[l + 1][i] = SFX(gelu_)(w->Hh[l][i]);
        }
    }
}

/* The per-token backward of theta_t kappa ||M(k_t) - v_t||^2 down to R[l] (dHh) and U[l]. */
static void SFX(mlp_inner_grad_)(const struct titans_layout *lo, T kappa, const T *W,
                                 struct SFX(ws_) * w, int n) {
    int L = lo->L, D = lo->out[L - 1];
    for (int t = 0; t < n; t++) {
        T f = 2 * kappa * w->th[t];
        const T *p = w->Hh[L - 1] + (size_t)t * D, *v = w->V + (size_t)t * D;
        T *r = w->R[L - 1] + (size_t)t * D;
        for (int j = 0; j < D; j++)
            r[j] = f * (p[j] - v[j]);
    }
    for (int l = L - 1; l >= 1; l--) {
        /* U[l-1] = R[l] W_l^T ; R[l-1] = U[l-1] * gelu'(Hh[l-1]) */
        SFX(mm_)
        (lo->ops, 0, 1, n, lo->in[l], lo->out[l], 1, w->R[l], (size_t)lo->out[l], W + lo->off[l],
         (size_t)lo->out[l], 0, w->U[l - 1], (size_t)lo->in[l]);
        size_t e = (size_t)n * (size_t)lo->in[l];
        for (size_t i = 0; i < e; i++)
            w->R[l - 1][i] = w->U[l - 1][i] * SFX(gelu1_)(w->Hh[l - 1][i]);
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

/* Clamp of a surprise tensor's norm to m (clip_grad_norm semantics per tensor): g *= s(|g|) with
 * s = 1 for |g| <= m (the tensor passes unchanged) and s = m / |g| above. *ds = s'(n), for the
 * backward gb = s gbt + (s'(n) / n) <g, gbt> g. The reference's softclamp_grad_norm maps a norm n
 * to tanh(n / h) h + h (h = m / 2), which sends every norm in [0, inf) into [m/2, m): it
 * normalises small surprises up to m/2 (a 1e-3 norm becomes 0.5 at m = 1) and amplifies their
 * rounding; docs/titans.md. */
static T SFX(clamp_scale_)(T nrm, T m, T *ds) {
    if (!(nrm > m)) {
        *ds = 0;
        return 1;
    }
    *ds = -m / (nrm * nrm);
    return m / nrm;
}

static void SFX(clamp_fwd_)(const struct titans_layout *lo, T m, T *G) {
    for (int l = 0; l < lo->L; l++) {
        size_t e = (size_t)lo->in[l] * (size_t)lo->out[l];
        T *g = G + lo->off[l], ds;
        T s = SFX(clamp_scale_)(TSQRT(SFX(dot_)(g, g, e)), m, &ds);
        for (size_t i = 0; i < e; i++)
            g[i] *= s;
    }
}

/* In place: Gb (adjoint of the clamped) -> adjoint of the raw G. */
static void SFX(clamp_bwd_)(const struct titans_layout *lo, T m, const T *G, T *Gb) {
    for (int l = 0; l < lo->L; l++) {
        size_t e = (size_t)lo->in[l] * (size_t)lo->out[l];
        const T *g = G + lo->off[l];
        T *gb = Gb + lo->off[l], ds;
        T nrm = TSQRT(SFX(dot_)(g, g, e));
        T s = SFX(clamp_scale_)(nrm, m, &ds);
        T c = nrm > 0 ? ds / nrm * SFX(dot_)(g, gb, e) : 0;
        for (size_t i = 0; i < e; i++)
            gb[i] = s * gb[i] + c * g[i];
    }
}

/* ---- projections --------------------------------------------------------------------------- */
/* xe: K1 = conv-1 history rows then n input rows. z* ((K1+n) x HD) = xe W (conv only; scratch
 * otherwise unused), kp/vp/qp = conv(z) (or x W); k, v, q after SiLU and l2-normalisation (norms in
 * kn, qn). The k/v or q outputs may be NULL (decode's partial passes). */
static void SFX(project_)(const struct titans_cfg *c, const struct titans_layout *lo, const T *par,
                          const T *xe, int n, T *zk, T *zv, T *zq, T *kp, T *vp, T *qp, T *k, T *v,
                          T *q, T *kn, T *qn) {
    int d = c->d, H = c->H, D = c->D, HD = H * D, K = c->conv, K1 = K > 0 ? K - 1 : 0;
    T *pre[3] = {kp, vp, qp}, *post[3] = {k, v, q}, *nrm[3] = {kn, NULL, qn}, *z[3] = {zk, zv, zq};
    size_t off[3] = {lo->wk, lo->wv, lo->wq}, coff[3] = {lo->ck, lo->cv, lo->cq};
    for (int w = 0; w < 3; w++) {
        if (!pre[w])
            continue;
        if (K > 0) {
            SFX(mm_)
            (lo->ops, 0, 0, n + K1, HD, d, 1, xe, (size_t)d, par + off[w], (size_t)HD, 0, z[w],
             (size_t)HD);
            const T *cw = par + coff[w];
            for (int t = 0; t < n; t++) {
                T *o = pre[w] + (size_t)t * HD;
                for (int j = 0; j < HD; j++)
                    o[j] = 0;
                for (int sl = 0; sl < K; sl++) {
                    const T *zr = z[w] + (size_t)(t + K1 - sl) * HD, *cr = cw + (size_t)sl * HD;
                    for (int j = 0; j < HD; j++)
                        o[j] += cr[j] * zr[j];
                }
            }
        } else {
            SFX(mm_)
            (lo->ops, 0, 0, n, HD, d, 1, xe, (size_t)d, par + off[w], (size_t)HD, 0, pre[w],
             (size_t)HD);
        }
        for (size_t i = 0; i < (size_t)n * HD; i++) {
            T zz = pre[w][i];
            post[w][i] = c->silu ? zz * SFX(sig_)(zz) : zz;
        }
        if (c->l2norm && nrm[w])
            for (int t = 0; t < n; t++)
                for (int h = 0; h < H; h++) {
                    T *r = post[w] + (size_t)t * HD + (size_t)h * D;
                    T s = TSQRT(SFX(dot_)(r, r, (size_t)D));
                    nrm[w][(size_t)t * H + h] = s;
                    T inv = 1 / (s > (T)1e-6 ? s : (T)1e-6);
                    for (int j = 0; j < D; j++)
                        r[j] *= inv;
                }
    }
}

/* g (n x H): the retrieve gate sigmoid(x wg), or 1. */
static void SFX(rgate_)(const struct titans_cfg *c, const struct titans_layout *lo, const T *par,
                        const T *x, int n, T *g) {
    int H = c->H;
    if (c->gate) {
        SFX(mm_)
        (lo->ops, 0, 0, n, H, c->d, 1, x, (size_t)c->d, par + lo->wg, (size_t)H, 0, g, (size_t)H);
        for (size_t i = 0; i < (size_t)n * H; i++)
            g[i] = SFX(sig_)(g[i]);
    } else {
        for (size_t i = 0; i < (size_t)n * H; i++)
            g[i] = 1;
    }
}

/* out (n x H) = scale * sigmoid(x w + b) for the gate projection at w, b. */
static void SFX(gate_)(const struct titans_cfg *c, const T *par, size_t w, size_t b, const T *x,
                       int n, T scale, T *out) {
    int H = c->H;
    SFX(mm_)
    (SFX(ops_)(c), 0, 0, n, H, c->d, 1, x, (size_t)c->d, par + w, (size_t)H, 0, out, (size_t)H);
    for (int t = 0; t < n; t++)
        for (int h = 0; h < H; h++)
            out[(size_t)t * H + h] = scale * SFX(sig_)(out[(size_t)t * H + h] + par[b + h]);
}

/* pool (nc x d): means of the c-token chunks of x. */
static void SFX(pool_)(const T *x, int d, int cs, int nc, T *pool) {
    for (int n = 0; n < nc; n++) {
        T *p = pool + (size_t)n * d;
        for (int j = 0; j < d; j++)
            p[j] = 0;
        for (int t = 0; t < cs; t++)
            for (int j = 0; j < d; j++)
                p[j] += x[((size_t)n * cs + t) * d + j];
        for (int j = 0; j < d; j++)
            p[j] /= (T)cs;
    }
}

/* Gather head h's D columns of rows [r0, r0+n) of a (rows x HD) array into dst (n x D). */
static void SFX(gather_)(const T *src, int HD, int h, int D, int r0, int n, T *dst) {
    for (int t = 0; t < n; t++)
        memcpy(dst + (size_t)t * D, src + (size_t)(r0 + t) * HD + (size_t)h * D, sizeof(T) * D);
}

static void SFX(scatter_add_)(T *dst, int HD, int h, int D, int r0, int n, const T *src) {
    for (int t = 0; t < n; t++)
        for (int j = 0; j < D; j++)
            dst[(size_t)(r0 + t) * HD + (size_t)h * D + j] += src[(size_t)t * D + j];
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
    memcpy(W, par + lo.w0, sizeof(T) * HP);
    memset(S, 0, sizeof(T) * HP);
}

void SFX(titans_state_init_backward)(const struct titans_cfg *c, const T *dW, T *dpar) {
    struct titans_layout lo;
    titans_layout(c, &lo);
    size_t HP = (size_t)c->H * lo.P;
    for (size_t i = 0; i < HP; i++)
        dpar[lo.w0 + i] += dW[i];
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
                               int n0, int m, T *Wr, T *Sr, size_t ld, T *a1, T *a2) {
    const struct titans_cfg *c = &t->cfg;
    const struct titans_layout *lo = &t->lo;
    int H = c->H, D = c->D, HD = H * D, cs = c->c, rows = m * cs, t0 = n0 * cs;
    size_t P = lo->P;
    SFX(gather_)(t->k, HD, h, D, t0, rows, w->A[0]);
    SFX(gather_)(t->v, HD, h, D, t0, rows, w->V);
    for (int i = 0; i < rows; i++)
        w->th[i] = t->th[(size_t)(t0 + i) * H + h];
    SFX(mlp_fwd_)(lo, Wr, w, rows);
    SFX(mlp_inner_grad_)(lo, (T)c->kappa, Wr, w, rows);
    for (int ci = 0; ci < m; ci++) {
        T *G = w->G + (size_t)ci * P;
        SFX(chunk_grad_)(lo, w, ci * cs, cs, G);
        if (c->max_grad_norm > 0)
            SFX(clamp_fwd_)(lo, (T)c->max_grad_norm, G);
        for (size_t j = 0; j < P; j++)
            G[j] = -G[j];
        a1[ci] = t->eta[(size_t)(n0 + ci) * H + h];
        a2[ci] = 1 - t->alpha[(size_t)(n0 + ci) * H + h];
    }
    SFX(titans_scan)(m, P, a1, w->G, P, Sr, Sr + ld, ld);
    SFX(titans_scan)(m, P, a2, Sr + ld, ld, Wr, Wr + ld, ld);
}

/* Retrieval of tokens [i0, i1) of head h at weights Wj into t->m. */
static void SFX(read_fwd_)(struct SFX(titans_tape) * t, struct SFX(ws_) * w, int h, int i0, int i1,
                           const T *Wj) {
    int D = t->cfg.D, HD = t->cfg.H * D;
    SFX(gather_)(t->q, HD, h, D, i0, i1 - i0, w->A[0]);
    SFX(mlp_fwd_)(&t->lo, Wj, w, i1 - i0);
    for (int i = i0; i < i1; i++)
        memcpy(t->m + (size_t)i * HD + (size_t)h * D, w->Hh[t->lo.L - 1] + (size_t)(i - i0) * D,
               sizeof(T) * D);
}

/* Its backward: Wbj += dW, dq += (rows [i0, i1), head h) from dm. */
static void SFX(read_bwd_)(const struct SFX(titans_tape) * t, struct SFX(ws_) * w, int h, int i0,
                           int i1, const T *Wj, T *Wbj, const T *dm, T *dq) {
    const struct titans_layout *lo = &t->lo;
    int D = t->cfg.D, HD = t->cfg.H * D, L = lo->L, n = i1 - i0;
    SFX(gather_)(t->q, HD, h, D, i0, n, w->A[0]);
    SFX(mlp_fwd_)(lo, Wj, w, n);
    SFX(gather_)(dm, HD, h, D, i0, n, w->Hb[L - 1]);
    for (int l = L - 1; l >= 0; l--) {
        SFX(mm_)
        (t->lo.ops, 1, 0, lo->in[l], lo->out[l], n, 1, w->A[l], (size_t)lo->in[l], w->Hb[l],
         (size_t)lo->out[l], 1, Wbj + lo->off[l], (size_t)lo->out[l]);
        SFX(mm_)
        (t->lo.ops, 0, 1, n, lo->in[l], lo->out[l], 1, w->Hb[l], (size_t)lo->out[l],
         Wj + lo->off[l], (size_t)lo->out[l], 0, w->Ab[l], (size_t)lo->in[l]);
        if (l > 0)
            for (size_t i = 0; i < (size_t)n * lo->in[l]; i++)
                w->Hb[l - 1][i] = w->Ab[l][i] * SFX(gelu1_)(w->Hh[l - 1][i]);
    }
    SFX(scatter_add_)(dq, HD, h, D, i0, n, w->Ab[0]);
}

static void SFX(forward_)(struct SFX(titans_tape) * t, const T *par, const T *Win, const T *Sin,
                          const T *xprev, const T *x, int N, T *out, T *Wout, T *Sout,
                          int read_only) {
    const struct titans_cfg *c = &t->cfg;
    const struct titans_layout *lo = &t->lo;
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
        memcpy(t->xe, xprev, sizeof(T) * K1 * d);
    else
        memset(t->xe, 0, sizeof(T) * K1 * d);
    memcpy(t->x, x, sizeof(T) * (size_t)N * d);
    if (read_only)
        SFX(project_)
    (c, lo, par, t->xe, N, NULL, NULL, t->zq, NULL, NULL, t->qp, NULL, NULL, t->q, NULL, t->qn);
    else SFX(project_)(c, lo, par, t->xe, N, t->zk, t->zv, t->zq, t->kp, t->vp, t->qp, t->k, t->v,
                       t->q, t->kn, t->qn);
    SFX(rgate_)(c, lo, par, x, N, t->g);
    SFX(pool_)(x, d, cs, Nc, t->pool);
    SFX(gate_)(c, par, lo->weta, lo->beta, t->pool, Nc, 1, t->eta);
    SFX(gate_)(c, par, lo->wal, lo->bal, t->pool, Nc, 1, t->alpha);
    if (c->theta_per_chunk) {
        T *tc = SFX(xcalloc_)(t->lo.ops, (size_t)Nc * H);
        SFX(gate_)(c, par, lo->wth, lo->bth, t->pool, Nc, (T)c->max_lr, tc);
        memset(t->th, 0, sizeof(T) * (size_t)N * H);
        for (int i = 0; i < Nc * cs; i++)
            memcpy(t->th + (size_t)i * H, tc + (size_t)(i / cs) * H, sizeof(T) * H);
        SFX(xfree_)(t->lo.ops, tc);
    } else if (!read_only) {
        SFX(gate_)(c, par, lo->wth, lo->bth, x, N, (T)c->max_lr, t->th);
    }
    memcpy(t->W, Win, sizeof(T) * HP);
    if (Sin)
        memcpy(t->S, Sin, sizeof(T) * HP);
    else
        memset(t->S, 0, sizeof(T) * HP);

    int rows_max = (mb * cs < N ? mb * cs : N) > cs ? (mb * cs < N ? mb * cs : N) : cs;
    /* heads are independent: one thread per head, each with its own workspace */
#pragma omp parallel if (H > 1)
    {
        struct SFX(ws_) w;
        SFX(ws_init_)(&w, lo, rows_max, mb);
        T *a1 = SFX(xcalloc_)(t->lo.ops, (size_t)mb), *a2 = SFX(xcalloc_)(t->lo.ops, (size_t)mb);
        T *Wsc = rc ? SFX(xcalloc_)(t->lo.ops, (size_t)(mb + 1) * P) : NULL;
        T *Ssc = rc ? SFX(xcalloc_)(t->lo.ops, (size_t)(mb + 1) * P) : NULL;
#pragma omp for schedule(static)
        for (int h = 0; h < H; h++) {
            if (Nc == 0) /* nothing stored: every token reads the incoming state */
                for (int j = 0; j < SFX(ngroups_)(t); j++) {
                    int i0, i1;
                    SFX(group_)(t, j, &i0, &i1);
                    if (i1 > i0)
                        SFX(read_fwd_)(t, &w, h, i0, i1, t->W + (size_t)h * P);
                }
            for (int bi = 0; bi * mb < Nc; bi++) {
                int n0 = bi * mb, m = Nc - n0 < mb ? Nc - n0 : mb;
                T *Wr, *Sr;
                size_t ld = rc ? P : HP;
                if (rc) {
                    Wr = Wsc, Sr = Ssc;
                    memcpy(Wr, t->W + (size_t)bi * HP + (size_t)h * P, sizeof(T) * P);
                    memcpy(Sr, t->S + (size_t)bi * HP + (size_t)h * P, sizeof(T) * P);
                } else {
                    Wr = t->W + (size_t)n0 * HP + (size_t)h * P;
                    Sr = t->S + (size_t)n0 * HP + (size_t)h * P;
                }
                SFX(batch_states_)(t, &w, h, n0, m, Wr, Sr, ld, a1, a2);
                /* retrieval: token i reads W_{floor((i+1)/c)} */
                for (int j = bi ? n0 + 1 : 0; j <= n0 + m; j++) {
                    int i0, i1;
                    SFX(group_)(t, j, &i0, &i1);
                    if (i1 > i0)
                        SFX(read_fwd_)(t, &w, h, i0, i1, Wr + (size_t)(j - n0) * ld);
                }
                if (rc) {
                    memcpy(t->W + (size_t)(bi + 1) * HP + (size_t)h * P, Wr + (size_t)m * ld,
                           sizeof(T) * P);
                    memcpy(t->S + (size_t)(bi + 1) * HP + (size_t)h * P, Sr + (size_t)m * ld,
                           sizeof(T) * P);
                }
            }
        }
        SFX(xfree_)(t->lo.ops, Wsc);
        SFX(xfree_)(t->lo.ops, Ssc);
        SFX(xfree_)(t->lo.ops, a1);
        SFX(xfree_)(t->lo.ops, a2);
        SFX(ws_free_)(&w);
    }
    for (int i = 0; i < N; i++)
        for (int h = 0; h < H; h++)
            for (int j = 0; j < D; j++) {
                size_t o = (size_t)i * HD + (size_t)h * D + j;
                t->y[o] = t->g[(size_t)i * H + h] * t->m[o];
            }
    SFX(mm_)
    (t->lo.ops, 0, 0, N, d, HD, 1, t->y, (size_t)HD, par + lo->wo, (size_t)d, 0, out, (size_t)d);
    int last = rc ? (Nc + mb - 1) / mb : Nc; /* index of the final stored state */
    if (Wout)
        memcpy(Wout, t->W + (size_t)last * HP, sizeof(T) * HP);
    if (Sout)
        memcpy(Sout, t->S + (size_t)last * HP, sizeof(T) * HP);
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
                           const T *xin, int n, T scale, const T *val, const T *gb, T *dpar,
                           T *dxin) {
    int H = c->H, d = c->d;
    if (n <= 0)
        return;
    T *zb = SFX(xcalloc_)(SFX(ops_)(c), (size_t)n * H);
    for (size_t i = 0; i < (size_t)n * H; i++) {
        T s = val[i] / scale;
        zb[i] = gb[i] * scale * s * (1 - s);
    }
    SFX(mm_)
    (SFX(ops_)(c), 1, 0, d, H, n, 1, xin, (size_t)d, zb, (size_t)H, 1, dpar + wo, (size_t)H);
    if (bo != (size_t)-1)
        for (int t = 0; t < n; t++)
            for (int h = 0; h < H; h++)
                dpar[bo + h] += zb[(size_t)t * H + h];
    if (dxin)
        SFX(mm_)
    (SFX(ops_)(c), 0, 1, n, d, H, 1, zb, (size_t)H, par + wo, (size_t)H, 1, dxin, (size_t)d);
    SFX(xfree_)(SFX(ops_)(c), zb);
}

void SFX(titans_backward)(struct SFX(titans_tape) * t, const T *par, const T *dout, const T *dWout,
                          const T *dSout, T *dpar, T *dx, T *dxprev, T *dWin, T *dSin) {
    const struct titans_cfg *c = &t->cfg;
    const struct titans_layout *lo = &t->lo;
    int N = t->N, Nc = t->Nc, d = c->d, H = c->H, D = c->D, HD = H * D, cs = c->c, mb = c->b / c->c,
        L = lo->L;
    size_t P = lo->P, HP = (size_t)H * P;
    T kappa = (T)c->kappa;

    int rc = c->recompute, nb = (Nc + mb - 1) / mb;
    T *Wb = t->Wb; /* every state's adjoint (NULL when recomputing: per-batch scratch) */
    if (!rc) {
        memset(Wb, 0, sizeof(T) * (size_t)(Nc + 1) * HP);
        if (dWout)
            memcpy(Wb + (size_t)Nc * HP, dWout, sizeof(T) * HP);
    }
    T *dY = SFX(xcalloc_)(t->lo.ops, (size_t)N * HD),
      *dm = SFX(xcalloc_)(t->lo.ops, (size_t)N * HD);
    T *dg = SFX(xcalloc_)(t->lo.ops, (size_t)N * H), *dq = SFX(xcalloc_)(t->lo.ops, (size_t)N * HD);
    T *dk = SFX(xcalloc_)(t->lo.ops, (size_t)N * HD),
      *dv = SFX(xcalloc_)(t->lo.ops, (size_t)N * HD);
    T *dth = SFX(xcalloc_)(t->lo.ops, (size_t)N * H),
      *deta = SFX(xcalloc_)(t->lo.ops, (size_t)Nc * H);
    T *dal = SFX(xcalloc_)(t->lo.ops, (size_t)Nc * H),
      *dpool = SFX(xcalloc_)(t->lo.ops, (size_t)Nc * d);

    /* output projection and retrieve gate */
    SFX(mm_)
    (t->lo.ops, 0, 1, N, HD, d, 1, dout, (size_t)d, par + lo->wo, (size_t)d, 0, dY, (size_t)HD);
    SFX(mm_)
    (t->lo.ops, 1, 0, HD, d, N, 1, t->y, (size_t)HD, dout, (size_t)d, 1, dpar + lo->wo, (size_t)d);
    for (int i = 0; i < N; i++)
        for (int h = 0; h < H; h++) {
            size_t o = (size_t)i * HD + (size_t)h * D;
            T gv = t->g[(size_t)i * H + h];
            dg[(size_t)i * H + h] = SFX(dot_)(dY + o, t->m + o, (size_t)D);
            for (int j = 0; j < D; j++)
                dm[o + j] = gv * dY[o + j];
        }
    if (c->gate)
        SFX(gate_bwd_)(c, par, lo->wg, (size_t)-1, t->x, N, 1, t->g, dg, dpar, dx);

    int rows_max = (mb * cs < N ? mb * cs : N) > cs ? (mb * cs < N ? mb * cs : N) : cs;
#pragma omp parallel if (H > 1)
    {
        struct SFX(ws_) w;
        SFX(ws_init_)(&w, lo, rows_max, mb);
        T *Sb = SFX(xcalloc_)(t->lo.ops, P), *carry = SFX(xcalloc_)(t->lo.ops, P);
        T *a1 = SFX(xcalloc_)(t->lo.ops, (size_t)mb), *a2 = SFX(xcalloc_)(t->lo.ops, (size_t)mb);
        T *Wsc = rc ? SFX(xcalloc_)(t->lo.ops, (size_t)(mb + 1) * P) : NULL;
        T *Ssc = rc ? SFX(xcalloc_)(t->lo.ops, (size_t)(mb + 1) * P) : NULL;
        T *Wbsc = rc ? SFX(xcalloc_)(t->lo.ops, (size_t)(mb + 1) * P) : NULL;
#pragma omp for schedule(static)
        for (int h = 0; h < H; h++) {
            if (dSout)
                memcpy(Sb, dSout + (size_t)h * P, sizeof(T) * P);
            else
                memset(Sb, 0, sizeof(T) * P);
            /* the adjoint of the final state W_{Nc} */
            if (dWout)
                memcpy(carry, dWout + (size_t)h * P, sizeof(T) * P);
            else
                memset(carry, 0, sizeof(T) * P);
            if (Nc == 0) { /* nothing stored: every token read the incoming state */
                T *Wb0 = rc ? carry : Wb + (size_t)h * P;
                for (int j = 0; j < SFX(ngroups_)(t); j++) {
                    int i0, i1;
                    SFX(group_)(t, j, &i0, &i1);
                    if (i1 > i0)
                        SFX(read_bwd_)(t, &w, h, i0, i1, t->W + (size_t)h * P, Wb0, dm, dq);
                }
            }
            /* TTT batches in reverse: retrieval backward, the scans in reverse, then the VJP of
             * the batch's gradients at W* */
            for (int bi = nb - 1; bi >= 0; bi--) {
                int n0 = bi * mb, m = Nc - n0 < mb ? Nc - n0 : mb, rows = m * cs, t0 = n0 * cs;
                T *Wr, *Sr, *Wbr;
                size_t ld = rc ? P : HP;
                if (rc) {
                    Wr = Wsc, Sr = Ssc, Wbr = Wbsc;
                    memcpy(Wr, t->W + (size_t)bi * HP + (size_t)h * P, sizeof(T) * P);
                    memcpy(Sr, t->S + (size_t)bi * HP + (size_t)h * P, sizeof(T) * P);
                    SFX(batch_states_)(t, &w, h, n0, m, Wr, Sr, ld, a1, a2);
                    memset(Wbr, 0, sizeof(T) * (size_t)m * P);
                    memcpy(Wbr + (size_t)m * ld, carry, sizeof(T) * P);
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
                    (t, &w, h, i0, i1, Wr + (size_t)(j - n0) * ld, Wbr + (size_t)(j - n0) * ld, dm,
                     dq);
                }
                for (int r = m; r > 0; r--) {
                    size_t gi = (size_t)(n0 + r - 1) * H + h;
                    T *Wbn = Wbr + (size_t)r * ld, *Wbp = Wbn - ld;
                    const T *Wp = Wr + (size_t)(r - 1) * ld, *Sp = Sr + (size_t)(r - 1) * ld;
                    T al = t->alpha[gi], et = t->eta[gi];
                    dal[gi] = -SFX(dot_)(Wbn, Wp, P);
                    for (size_t j = 0; j < P; j++) {
                        Wbp[j] += (1 - al) * Wbn[j];
                        Sb[j] += Wbn[j];
                    }
                    deta[gi] = SFX(dot_)(Sb, Sp, P);
                    T *Gb = w.Gb + (size_t)(r - 1) * P;
                    for (size_t j = 0; j < P; j++) {
                        Gb[j] = -Sb[j];
                        Sb[j] *= et;
                    }
                }
                /* recompute the batch's inner forward at W* and take the VJP of its gradients */
                const T *Ws = Wr;
                T *Wbs = Wbr;
                SFX(gather_)(t->k, HD, h, D, t0, rows, w.A[0]);
                SFX(gather_)(t->v, HD, h, D, t0, rows, w.V);
                for (int i = 0; i < rows; i++)
                    w.th[i] = t->th[(size_t)(t0 + i) * H + h];
                SFX(mlp_fwd_)(lo, Ws, &w, rows);
                SFX(mlp_inner_grad_)(lo, kappa, Ws, &w, rows);
                for (int ci = 0; ci < m; ci++) {
                    T *Gb = w.Gb + (size_t)ci * P;
                    if (c->max_grad_norm > 0) {
                        T *G = w.G + (size_t)ci * P;
                        SFX(chunk_grad_)(lo, &w, ci * cs, cs, G);
                        SFX(clamp_bwd_)(lo, (T)c->max_grad_norm, G, Gb);
                    }
                    int r0 = ci * cs;
                    for (int l = 0; l < L; l++) {
                        /* G_l = A[l]^T R[l]: Rb[l] = A[l] Gb_l, Ab[l] = R[l] Gb_l^T */
                        SFX(mm_)
                        (t->lo.ops, 0, 0, cs, lo->out[l], lo->in[l], 1,
                         w.A[l] + (size_t)r0 * lo->in[l], (size_t)lo->in[l], Gb + lo->off[l],
                         (size_t)lo->out[l], 0, w.Rb[l] + (size_t)r0 * lo->out[l],
                         (size_t)lo->out[l]);
                        SFX(mm_)
                        (t->lo.ops, 0, 1, cs, lo->in[l], lo->out[l], 1,
                         w.R[l] + (size_t)r0 * lo->out[l], (size_t)lo->out[l], Gb + lo->off[l],
                         (size_t)lo->out[l], 0, w.Ab[l] + (size_t)r0 * lo->in[l],
                         (size_t)lo->in[l]);
                    }
                }
                for (int l = 0; l < L; l++)
                    memset(w.Hb[l], 0, sizeof(T) * (size_t)rows * lo->out[l]);
                /* reverse of R[l] = U[l] gelu'(Hh[l]), U[l] = R[l+1] W_{l+1}^T */
                for (int l = 0; l + 1 < L; l++) {
                    size_t e = (size_t)rows * lo->out[l];
                    for (size_t i = 0; i < e; i++) {
                        T hv = w.Hh[l][i], rb = w.Rb[l][i];
                        w.Hb[l][i] += rb * w.U[l][i] * SFX(gelu2_)(hv);
                        w.U[l][i] = rb * SFX(gelu1_)(hv); /* now the adjoint of U[l] */
                    }
                    SFX(mm_)
                    (t->lo.ops, 0, 0, rows, lo->out[l + 1], lo->in[l + 1], 1, w.U[l],
                     (size_t)lo->in[l + 1], Ws + lo->off[l + 1], (size_t)lo->out[l + 1], 1,
                     w.Rb[l + 1], (size_t)lo->out[l + 1]);
                    SFX(mm_)
                    (t->lo.ops, 1, 0, lo->in[l + 1], lo->out[l + 1], rows, 1, w.U[l],
                     (size_t)lo->in[l + 1], w.R[l + 1], (size_t)lo->out[l + 1], 1,
                     Wbs + lo->off[l + 1], (size_t)lo->out[l + 1]);
                }
                /* reverse of R[L-1] = 2 kappa theta (p - v) */
                for (int i = 0; i < rows; i++) {
                    T *rb = w.Rb[L - 1] + (size_t)i * D, *hb = w.Hb[L - 1] + (size_t)i * D;
                    const T *p = w.Hh[L - 1] + (size_t)i * D, *v = w.V + (size_t)i * D;
                    T f = 2 * kappa * w.th[i], tb = 0;
                    for (int j = 0; j < D; j++) {
                        tb += (p[j] - v[j]) * rb[j];
                        hb[j] += f * rb[j];
                        dv[(size_t)(t0 + i) * HD + (size_t)h * D + j] -= f * rb[j];
                    }
                    dth[(size_t)(t0 + i) * H + h] += 2 * kappa * tb;
                }
                /* reverse of the MLP forward at W* */
                for (int l = L - 1; l >= 0; l--) {
                    SFX(mm_)
                    (t->lo.ops, 1, 0, lo->in[l], lo->out[l], rows, 1, w.A[l], (size_t)lo->in[l],
                     w.Hb[l], (size_t)lo->out[l], 1, Wbs + lo->off[l], (size_t)lo->out[l]);
                    SFX(mm_)
                    (t->lo.ops, 0, 1, rows, lo->in[l], lo->out[l], 1, w.Hb[l], (size_t)lo->out[l],
                     Ws + lo->off[l], (size_t)lo->out[l], 1, w.Ab[l], (size_t)lo->in[l]);
                    if (l > 0)
                        for (size_t i = 0; i < (size_t)rows * lo->in[l]; i++)
                            w.Hb[l - 1][i] += w.Ab[l][i] * SFX(gelu1_)(w.Hh[l - 1][i]);
                }
                SFX(scatter_add_)(dk, HD, h, D, t0, rows, w.Ab[0]);
                if (rc)
                    memcpy(carry, Wbr, sizeof(T) * P);
            }
            if (dSin)
                memcpy(dSin + (size_t)h * P, Sb, sizeof(T) * P);
            if (rc && dWin)
                memcpy(dWin + (size_t)h * P, carry, sizeof(T) * P);
        }
        SFX(ws_free_)(&w);
        SFX(xfree_)(t->lo.ops, Sb);
        SFX(xfree_)(t->lo.ops, carry);
        SFX(xfree_)(t->lo.ops, a1);
        SFX(xfree_)(t->lo.ops, a2);
        SFX(xfree_)(t->lo.ops, Wsc);
        SFX(xfree_)(t->lo.ops, Ssc);
        SFX(xfree_)(t->lo.ops, Wbsc);
    }
    if (dWin && !rc)
        memcpy(dWin, Wb, sizeof(T) * HP);

    /* gates */
    SFX(gate_bwd_)(c, par, lo->weta, lo->beta, t->pool, Nc, 1, t->eta, deta, dpar, dpool);
    SFX(gate_bwd_)(c, par, lo->wal, lo->bal, t->pool, Nc, 1, t->alpha, dal, dpar, dpool);
    if (c->theta_per_chunk) {
        T *tc = SFX(xcalloc_)(t->lo.ops, (size_t)Nc * H),
          *tcb = SFX(xcalloc_)(t->lo.ops, (size_t)Nc * H);
        for (int i = 0; i < Nc * cs; i++)
            for (int h = 0; h < H; h++) {
                tc[(size_t)(i / cs) * H + h] = t->th[(size_t)i * H + h];
                tcb[(size_t)(i / cs) * H + h] += dth[(size_t)i * H + h];
            }
        SFX(gate_bwd_)(c, par, lo->wth, lo->bth, t->pool, Nc, (T)c->max_lr, tc, tcb, dpar, dpool);
        SFX(xfree_)(t->lo.ops, tc);
        SFX(xfree_)(t->lo.ops, tcb);
    } else if (!t->read_only) {
        SFX(gate_bwd_)(c, par, lo->wth, lo->bth, t->x, N, (T)c->max_lr, t->th, dth, dpar, dx);
    }
    if (dx)
        for (int i = 0; i < Nc * cs; i++)
            for (int j = 0; j < d; j++)
                dx[(size_t)i * d + j] += dpool[(size_t)(i / cs) * d + j] / (T)cs;

    /* q/k/v: l2-normalisation, SiLU, projection */
    T *adj[3] = {dk, dv, dq}, *pre[3] = {t->kp, t->vp, t->qp}, *post[3] = {t->k, t->v, t->q};
    T *nrm[3] = {t->kn, NULL, t->qn};
    size_t off[3] = {lo->wk, lo->wv, lo->wq}, coff[3] = {lo->ck, lo->cv, lo->cq};
    const T *zs[3] = {t->zk, t->zv, t->zq};
    int K = c->conv, K1 = K > 0 ? K - 1 : 0;
    T *dz = NULL, *dxe = NULL;
    if (K > 0) {
        dz = SFX(xcalloc_)(t->lo.ops, (size_t)(N + K1) * HD);
        dxe = SFX(xcalloc_)(t->lo.ops, (size_t)(N + K1) * d);
    }
    for (int s = t->read_only ? 2 : 0; s < 3; s++) {
        T *a = adj[s];
        if (c->l2norm && nrm[s])
            for (int i = 0; i < N; i++)
                for (int h = 0; h < H; h++) {
                    size_t o = (size_t)i * HD + (size_t)h * D;
                    T nv = nrm[s][(size_t)i * H + h];
                    if (nv <= (T)1e-6) { /* clamped: a plain scale */
                        for (int j = 0; j < D; j++)
                            a[o + j] /= (T)1e-6;
                        continue;
                    }
                    T pr = SFX(dot_)(post[s] + o, a + o, (size_t)D);
                    for (int j = 0; j < D; j++)
                        a[o + j] = (a[o + j] - post[s][o + j] * pr) / nv;
                }
        if (c->silu)
            for (size_t i = 0; i < (size_t)N * HD; i++) {
                T z = pre[s][i], sg = SFX(sig_)(z);
                a[i] *= sg * (1 + z * (1 - sg));
            }
        if (K > 0) {
            /* pre_t = sum_s c_s z_{t+K1-s}: dz and dc, then the projection of all K1+N rows */
            const T *z = zs[s], *cw = par + coff[s];
            T *dcw = dpar + coff[s];
            memset(dz, 0, sizeof(T) * (size_t)(N + K1) * HD);
            for (int i = 0; i < N; i++)
                for (int sl = 0; sl < K; sl++) {
                    size_t zr = (size_t)(i + K1 - sl) * HD, cr = (size_t)sl * HD;
                    for (int j = 0; j < HD; j++) {
                        dz[zr + j] += cw[cr + j] * a[(size_t)i * HD + j];
                        dcw[cr + j] += z[zr + j] * a[(size_t)i * HD + j];
                    }
                }
            SFX(mm_)
            (t->lo.ops, 1, 0, d, HD, N + K1, 1, t->xe, (size_t)d, dz, (size_t)HD, 1, dpar + off[s],
             (size_t)HD);
            SFX(mm_)
            (t->lo.ops, 0, 1, N + K1, d, HD, 1, dz, (size_t)HD, par + off[s], (size_t)HD, 1, dxe,
             (size_t)d);
        } else {
            SFX(mm_)
            (t->lo.ops, 1, 0, d, HD, N, 1, t->x, (size_t)d, a, (size_t)HD, 1, dpar + off[s],
             (size_t)HD);
            if (dx)
                SFX(mm_)
            (t->lo.ops, 0, 1, N, d, HD, 1, a, (size_t)HD, par + off[s], (size_t)HD, 1, dx,
             (size_t)d);
        }
    }
    if (K > 0) {
        if (dxprev)
            for (size_t i = 0; i < (size_t)K1 * d; i++)
                dxprev[i] += dxe[i];
        if (dx)
            for (size_t i = 0; i < (size_t)N * d; i++)
                dx[i] += dxe[(size_t)K1 * d + i];
        SFX(xfree_)(t->lo.ops, dz);
        SFX(xfree_)(t->lo.ops, dxe);
    }
    SFX(xfree_)(t->lo.ops, dY);
    SFX(xfree_)(t->lo.ops, dm);
    SFX(xfree_)(t->lo.ops, dg);
    SFX(xfree_)(t->lo.ops, dq);
    SFX(xfree_)(t->lo.ops, dk);
    SFX(xfree_)(t->lo.ops, dv);
    SFX(xfree_)(t->lo.ops, dth);
    SFX(xfree_)(t->lo.ops, deta);
    SFX(xfree_)(t->lo.ops, dal);
    SFX(xfree_)(t->lo.ops, dpool);
}

int SFX(titans_nonfinite)(const struct SFX(titans_tape) * t) {
    size_t HP = (size_t)t->cfg.H * t->lo.P;
    int mb = t->cfg.b / t->cfg.c, step = t->cfg.recompute ? mb : 1;
    int ns = t->cfg.recompute ? (t->Nc + mb - 1) / mb : t->Nc;
    for (int n = 0; n <= ns; n++)
        for (size_t i = 0; i < HP; i++)
            if (!isfinite(t->W[(size_t)n * HP + i]) || !isfinite(t->S[(size_t)n * HP + i]))
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
    memcpy(s->Ws, s->W, sizeof(T) * HP);
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

/* Store x (when its chunk completes, the chunk's gradient at W* updates S and W), then read the
 * current W: the reference's single-token path, equal to the parallel pass's W_{floor((i+1)/c)}. */
void SFX(titans_dec_step)(struct SFX(titans_dec) * s, const T *par, const T *x, T *out) {
    const struct titans_cfg *c = &s->cfg;
    const struct titans_layout *lo = &s->lo;
    int d = c->d, H = c->H, D = c->D, HD = H * D, cs = c->c, K1 = s->K1;
    size_t P = lo->P, HP = (size_t)H * P;
    T *pend = s->buf + (size_t)K1 * d;
    memcpy(pend + (size_t)s->npend * d, x, sizeof(T) * d);
    s->npend++;
    struct SFX(ws_) w;
    SFX(ws_init_)(&w, lo, cs, 1);
    /* the query from x and its K1 predecessors (before the history shifts) */
    T *zq = SFX(xcalloc_)(s->lo.ops, (size_t)(K1 + 1) * HD),
      *qp = SFX(xcalloc_)(s->lo.ops, (size_t)HD);
    T *q = SFX(xcalloc_)(s->lo.ops, (size_t)HD), *qn = SFX(xcalloc_)(s->lo.ops, (size_t)H),
      *g = SFX(xcalloc_)(s->lo.ops, (size_t)H);
    T *y = SFX(xcalloc_)(s->lo.ops, (size_t)HD);
    SFX(project_)
    (c, lo, par, s->buf + (size_t)(s->npend - 1) * d, 1, NULL, NULL, zq, NULL, NULL, qp, NULL, NULL,
     q, NULL, qn);
    SFX(rgate_)(c, lo, par, x, 1, g);
    if (s->npend == cs) {
        T *zk = SFX(xcalloc_)(s->lo.ops, (size_t)(K1 + cs) * HD),
          *zv = SFX(xcalloc_)(s->lo.ops, (size_t)(K1 + cs) * HD);
        T *k = SFX(xcalloc_)(s->lo.ops, (size_t)cs * HD),
          *v = SFX(xcalloc_)(s->lo.ops, (size_t)cs * HD);
        T *kp = SFX(xcalloc_)(s->lo.ops, (size_t)cs * HD),
          *vp = SFX(xcalloc_)(s->lo.ops, (size_t)cs * HD);
        T *kn = SFX(xcalloc_)(s->lo.ops, (size_t)cs * H),
          *th = SFX(xcalloc_)(s->lo.ops, (size_t)cs * H);
        T *pl = SFX(xcalloc_)(s->lo.ops, (size_t)d), *et = SFX(xcalloc_)(s->lo.ops, (size_t)H);
        T *ap = SFX(xcalloc_)(s->lo.ops, (size_t)H);
        SFX(project_)(c, lo, par, s->buf, cs, zk, zv, NULL, kp, vp, NULL, k, v, NULL, kn, NULL);
        SFX(pool_)(pend, d, cs, 1, pl);
        SFX(gate_)(c, par, lo->weta, lo->beta, pl, 1, 1, et);
        SFX(gate_)(c, par, lo->wal, lo->bal, pl, 1, 1, ap);
        if (c->theta_per_chunk) {
            SFX(gate_)(c, par, lo->wth, lo->bth, pl, 1, (T)c->max_lr, th);
            for (int i = 1; i < cs; i++)
                memcpy(th + (size_t)i * H, th, sizeof(T) * H);
        } else {
            SFX(gate_)(c, par, lo->wth, lo->bth, pend, cs, (T)c->max_lr, th);
        }
        for (int h = 0; h < H; h++) {
            const T *Ws = s->Ws + (size_t)h * P;
            SFX(gather_)(k, HD, h, D, 0, cs, w.A[0]);
            SFX(gather_)(v, HD, h, D, 0, cs, w.V);
            for (int i = 0; i < cs; i++)
                w.th[i] = th[(size_t)i * H + h];
            SFX(mlp_fwd_)(lo, Ws, &w, cs);
            SFX(mlp_inner_grad_)(lo, (T)c->kappa, Ws, &w, cs);
            SFX(chunk_grad_)(lo, &w, 0, cs, w.G);
            if (c->max_grad_norm > 0)
                SFX(clamp_fwd_)(lo, (T)c->max_grad_norm, w.G);
            T *Wh = s->W + (size_t)h * P, *Sh = s->S + (size_t)h * P;
            for (size_t j = 0; j < P; j++) {
                Sh[j] = et[h] * Sh[j] - w.G[j];
                Wh[j] = (1 - ap[h]) * Wh[j] + Sh[j];
            }
        }
        s->npend = 0;
        s->chunks++;
        memmove(s->buf, s->buf + (size_t)cs * d, sizeof(T) * (size_t)K1 * d);
        SFX(xfree_)(s->lo.ops, zk);
        SFX(xfree_)(s->lo.ops, zv);
        if ((s->chunks * cs) % c->b == 0)
            memcpy(s->Ws, s->W, sizeof(T) * HP);
        SFX(xfree_)(s->lo.ops, et);
        SFX(xfree_)(s->lo.ops, ap);
        SFX(xfree_)(s->lo.ops, k);
        SFX(xfree_)(s->lo.ops, v);
        SFX(xfree_)(s->lo.ops, kp);
        SFX(xfree_)(s->lo.ops, vp);
        SFX(xfree_)(s->lo.ops, kn);
        SFX(xfree_)(s->lo.ops, th);
        SFX(xfree_)(s->lo.ops, pl);
    }
    for (int h = 0; h < H; h++) {
        memcpy(w.A[0], q + (size_t)h * D, sizeof(T) * D);
        SFX(mlp_fwd_)(lo, s->W + (size_t)h * P, &w, 1);
        for (int j = 0; j < D; j++)
            y[(size_t)h * D + j] = g[h] * w.Hh[lo->L - 1][j];
    }
    SFX(mm_)
    (s->lo.ops, 0, 0, 1, d, HD, 1, y, (size_t)HD, par + lo->wo, (size_t)d, 0, out, (size_t)d);
    SFX(xfree_)(s->lo.ops, zq);
    SFX(xfree_)(s->lo.ops, qp);
    SFX(xfree_)(s->lo.ops, q);
    SFX(xfree_)(s->lo.ops, qn);
    SFX(xfree_)(s->lo.ops, g);
    SFX(xfree_)(s->lo.ops, y);
    SFX(ws_free_)(&w);
}
