/* ops/titans_cpu_body.h -- the body of the CPU Titans kernels (titans_ops.h), included twice by
 * ops/titans_cpu.c with T = float / double, SFX(name) adding the suffix and TEXP/TSQRT/TERF the
 * maths. The arithmetic is the reference the GPU kernels follow. Not a public header. */

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
static T SFX(dot_)(const T *a, const T *b, size_t n) {
    T s = 0;
    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static void SFX(unary_)(enum titans_unary op, size_t n, const T *x, T *y) {
    for (size_t i = 0; i < n; i++)
        switch (op) {
        case TT_GELU:
            y[i] = SFX(gelu_)(x[i]);
            break;
        case TT_SIGMOID:
            y[i] = SFX(sig_)(x[i]);
            break;
        case TT_SILU:
            y[i] = x[i] * SFX(sig_)(x[i]);
            break;
        case TT_NEG:
            y[i] = -x[i];
            break;
        case TT_ONE:
            y[i] = 1;
            break;
        }
}

static void SFX(mul_gelu1_)(size_t n, const T *u, const T *h, T *r, int acc) {
    for (size_t i = 0; i < n; i++) {
        T v = u[i] * SFX(gelu1_)(h[i]);
        r[i] = acc ? r[i] + v : v;
    }
}

static void SFX(gelu2_rev_)(size_t n, const T *h, const T *rb, T *u, T *hb) {
    for (size_t i = 0; i < n; i++) {
        T hv = h[i], r = rb[i];
        hb[i] += r * u[i] * SFX(gelu2_)(hv);
        u[i] = r * SFX(gelu1_)(hv);
    }
}

static void SFX(silu_bwd_)(size_t n, const T *z, T *a) {
    for (size_t i = 0; i < n; i++) {
        T sg = SFX(sig_)(z[i]);
        a[i] *= sg * (1 + z[i] * (1 - sg));
    }
}

static void SFX(gate_fwd_)(int n, int H, T scale, const T *b, T *z) {
    for (int t = 0; t < n; t++)
        for (int h = 0; h < H; h++) {
            T *o = z + (size_t)t * H + h;
            *o = scale * SFX(sig_)(b ? *o + b[h] : *o);
        }
}

static void SFX(gate_bwd_)(size_t n, T scale, const T *val, const T *gb, T *zb) {
    for (size_t i = 0; i < n; i++) {
        T s = val[i] / scale;
        zb[i] = gb[i] * scale * s * (1 - s);
    }
}

static void SFX(resid_)(int rows, int D, T f, const T *th, const T *p, const T *v, T *r) {
    for (int t = 0; t < rows; t++) {
        T ft = f * th[t];
        size_t o = (size_t)t * D;
        for (int j = 0; j < D; j++)
            r[o + j] = ft * (p[o + j] - v[o + j]);
    }
}

static void SFX(resid_rev_)(int rows, int D, T f, const T *th, const T *p, const T *v, const T *rb,
                            T *hb, T *dv, size_t lddv, T *dth, size_t lddth) {
    for (int i = 0; i < rows; i++) {
        size_t o = (size_t)i * D;
        T ft = f * th[i], tb = 0;
        T *dvi = dv + (size_t)i * lddv;
        for (int j = 0; j < D; j++) {
            tb += (p[o + j] - v[o + j]) * rb[o + j];
            hb[o + j] += ft * rb[o + j];
            dvi[j] -= ft * rb[o + j];
        }
        dth[(size_t)i * lddth] += f * tb;
    }
}

static void SFX(conv_fwd_)(int n, int C, int K, const T *z, const T *cw, T *out) {
    for (int t = 0; t < n; t++) {
        T *o = out + (size_t)t * C;
        for (int j = 0; j < C; j++)
            o[j] = 0;
        for (int sl = 0; sl < K; sl++) {
            const T *zr = z + (size_t)(t + K - 1 - sl) * C, *cr = cw + (size_t)sl * C;
            for (int j = 0; j < C; j++)
                o[j] += cr[j] * zr[j];
        }
    }
}

static void SFX(conv_bwd_)(int n, int C, int K, const T *z, const T *cw, const T *a, T *dz,
                           T *dcw) {
    for (int i = 0; i < n; i++)
        for (int sl = 0; sl < K; sl++) {
            size_t zr = (size_t)(i + K - 1 - sl) * C, cr = (size_t)sl * C;
            for (int j = 0; j < C; j++) {
                dz[zr + j] += cw[cr + j] * a[(size_t)i * C + j];
                dcw[cr + j] += z[zr + j] * a[(size_t)i * C + j];
            }
        }
}

static void SFX(l2n_fwd_)(int rows, int D, T *x, T *nrm) {
    for (int i = 0; i < rows; i++) {
        T *r = x + (size_t)i * D;
        T s = TSQRT(SFX(dot_)(r, r, (size_t)D));
        nrm[i] = s;
        T inv = 1 / (s > (T)1e-6 ? s : (T)1e-6);
        for (int j = 0; j < D; j++)
            r[j] *= inv;
    }
}

static void SFX(l2n_bwd_)(int rows, int D, const T *post, const T *nrm, T *a) {
    for (int i = 0; i < rows; i++) {
        size_t o = (size_t)i * D;
        T nv = nrm[i];
        if (nv <= (T)1e-6) { /* clamped: a plain scale */
            for (int j = 0; j < D; j++)
                a[o + j] /= (T)1e-6;
            continue;
        }
        T pr = SFX(dot_)(post + o, a + o, (size_t)D);
        for (int j = 0; j < D; j++)
            a[o + j] = (a[o + j] - post[o + j] * pr) / nv;
    }
}

static void SFX(group_sum_)(int groups, int rpg, int w, const T *x, T *out, enum titans_sum mode) {
    for (int g = 0; g < groups; g++) {
        T *p = out + (size_t)g * w;
        if (mode != TT_SUM_ACC)
            for (int j = 0; j < w; j++)
                p[j] = 0;
        for (int r = 0; r < rpg; r++)
            for (int j = 0; j < w; j++)
                p[j] += x[((size_t)g * rpg + r) * w + j];
        if (mode == TT_SUM_MEAN)
            for (int j = 0; j < w; j++)
                p[j] /= (T)rpg;
    }
}

static void SFX(group_expand_)(int groups, int rpg, int w, const T *src, T *dst,
                               enum titans_expand mode) {
    for (int i = 0; i < groups * rpg; i++)
        for (int j = 0; j < w; j++) {
            T s = src[(size_t)(i / rpg) * w + j];
            T *d = dst + (size_t)i * w + j;
            *d = mode == TT_EXP_SET ? s : *d + s / (T)rpg;
        }
}

static void SFX(head_scale_)(int N, int H, int D, const T *g, const T *x, T *y) {
    for (int i = 0; i < N; i++)
        for (int h = 0; h < H; h++) {
            T gv = g[(size_t)i * H + h];
            size_t o = ((size_t)i * H + h) * D;
            for (int j = 0; j < D; j++)
                y[o + j] = gv * x[o + j];
        }
}

static void SFX(row_dot_)(int rows, int D, const T *a, const T *b, T *out) {
    for (int i = 0; i < rows; i++)
        out[i] = SFX(dot_)(a + (size_t)i * D, b + (size_t)i * D, (size_t)D);
}

static void SFX(add2d_)(int rows, int cols, T *dst, size_t ldd, const T *src, size_t lds) {
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++)
            dst[(size_t)i * ldd + j] += src[(size_t)i * lds + j];
}

#define GATE_(i) (one_minus ? 1 - a[(size_t)(i)*lda] : a[(size_t)(i)*lda])
static void SFX(scan_seq_)(int n, size_t P, const T *a, size_t lda, int one_minus, const T *x,
                           size_t ldx, const T *prev, T *h, size_t ldh) {
    for (int i = 0; i < n; i++) {
        const T *hp = i ? h + (size_t)(i - 1) * ldh : prev;
        const T *xi = x + (size_t)i * ldx;
        T *hi = h + (size_t)i * ldh, ai = GATE_(i);
        for (size_t j = 0; j < P; j++)
            hi[j] = (hp ? ai * hp[j] : 0) + xi[j];
    }
}

/* Blocked scan: independent local scans per block (block 0 from prev, the others from 0), then
 * the block ends are chained in order, then every row adds (prod of its block's gates up to it)
 * times the previous block's end. The arithmetic per element does not depend on threads. */
static void SFX(scan_)(int n, size_t P, const T *a, size_t lda, int one_minus, const T *x,
                       size_t ldx, const T *prev, T *h, size_t ldh) {
    int nb = (int)TSQRT((T)n);
    if (n < 8 || nb < 2) {
        SFX(scan_seq_)(n, P, a, lda, one_minus, x, ldx, prev, h, ldh);
        return;
    }
    int bs = (n + nb - 1) / nb;
    nb = (n + bs - 1) / bs;
#pragma omp parallel for schedule(static) if ((size_t)n * P >= ((size_t)1 << 21))
    for (int k = 0; k < nb; k++) {
        int s = k * bs, e = s + bs < n ? s + bs : n;
        SFX(scan_seq_)
        (e - s, P, a + (size_t)s * lda, lda, one_minus, x + (size_t)s * ldx, ldx, k ? NULL : prev,
         h + (size_t)s * ldh, ldh);
    }
    /* chain block ends: end_k += (prod_{block k} a) end_{k-1} */
    for (int k = 1; k < nb; k++) {
        int s = k * bs, e = s + bs < n ? s + bs : n;
        T pa = 1;
        for (int i = s; i < e; i++)
            pa *= GATE_(i);
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
            pa *= GATE_(i);
            T *hi = h + (size_t)i * ldh;
            for (size_t j = 0; j < P; j++)
                hi[j] += pa * pe[j];
        }
    }
}
#undef GATE_

void SFX(titans_scan_seq)(int n, size_t P, const T *a, const T *x, size_t ldx, const T *prev, T *h,
                          size_t ldh) {
    SFX(scan_seq_)(n, P, a, 1, 0, x, ldx, prev, h, ldh);
}

void SFX(titans_scan)(int n, size_t P, const T *a, const T *x, size_t ldx, const T *prev, T *h,
                      size_t ldh) {
    SFX(scan_)(n, P, a, 1, 0, x, ldx, prev, h, ldh);
}

static void SFX(states_rev_)(int m, size_t P, size_t ld, T *Wb, const T *W, const T *S,
                             const T *eta, const T *alpha, size_t lda, T *Sb, T *Gb, T *deta,
                             T *dal) {
    for (int r = m; r > 0; r--) {
        size_t gi = (size_t)(r - 1) * lda;
        T *Wbn = Wb + (size_t)r * ld, *Wbp = Wbn - ld;
        const T *Wp = W + (size_t)(r - 1) * ld, *Sp = S + (size_t)(r - 1) * ld;
        T al = alpha[gi], et = eta[gi];
        dal[gi] = -SFX(dot_)(Wbn, Wp, P);
        for (size_t j = 0; j < P; j++) {
            Wbp[j] += (1 - al) * Wbn[j];
            Sb[j] += Wbn[j];
        }
        deta[gi] = SFX(dot_)(Sb, Sp, P);
        T *g = Gb + (size_t)(r - 1) * P;
        for (size_t j = 0; j < P; j++) {
            g[j] = -Sb[j];
            Sb[j] *= et;
        }
    }
}

/* s = 1 for |g| <= m (the tensor passes unchanged), m / |g| above; *ds = s'(|g|) */
static T SFX(clamp_scale_)(T nrm, T m, T *ds) {
    if (!(nrm > m)) {
        *ds = 0;
        return 1;
    }
    *ds = -m / (nrm * nrm);
    return m / nrm;
}

static void SFX(clamp_)(int L, const size_t *off, const size_t *numel, T m, T *G, T *Gb, int bwd) {
    for (int l = 0; l < L; l++) {
        size_t e = numel[l];
        T *g = G + off[l], ds;
        T nrm = TSQRT(SFX(dot_)(g, g, e));
        T s = SFX(clamp_scale_)(nrm, m, &ds);
        if (!bwd) {
            for (size_t i = 0; i < e; i++)
                g[i] *= s;
            continue;
        }
        T *gb = Gb + off[l];
        T c = nrm > 0 ? ds / nrm * SFX(dot_)(g, gb, e) : 0;
        for (size_t i = 0; i < e; i++)
            gb[i] = s * gb[i] + c * g[i];
    }
}

static int SFX(nonfinite_)(size_t n, const T *x) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return 1;
    return 0;
}
