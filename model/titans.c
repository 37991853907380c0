/* model/titans.c -- owns the Titans memory module's configuration, parameter layout and the two
 * instantiations (float, double) of its body in model/titans_impl.h. */
#include "titans.h"

#include "../core/check.h"
#include "../core/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void titans_cfg_default(struct titans_cfg *c, int d, int H, int D) {
    memset(c, 0, sizeof *c);
    c->d = d;
    c->H = H;
    c->D = D;
    c->depth = 2;
    c->hidden = 4 * D;
    c->c = 1;
    c->b = 1;
    c->silu = 1;
    c->l2norm = 1;
    c->gate = 1;
    c->max_lr = 1.0;
    c->kappa = 1.0 / D;
}

const char *titans_cfg_error(const struct titans_cfg *c) {
    if (c->d < 1 || c->H < 1 || c->D < 1)
        return "d, heads and head width must be >= 1";
    if (c->depth < 1 || c->depth > TITANS_MAX_DEPTH)
        return "depth must be in [1, 8]";
    if (c->depth > 1 && c->hidden < 1)
        return "hidden must be >= 1 when depth > 1";
    if (c->c < 1 || c->b < c->c || c->b % c->c)
        return "chunk c must be >= 1 and the TTT batch b a positive multiple of c";
    if (c->conv < 0 || c->conv > 16)
        return "conv width must be in [0, 16]";
    if (c->max_lr <= 0 || c->kappa <= 0 || c->max_grad_norm < 0)
        return "max_lr and kappa must be > 0, max_grad_norm >= 0";
    return NULL;
}

void titans_layout(const struct titans_cfg *c, struct titans_layout *lo) {
    size_t d = (size_t)c->d, H = (size_t)c->H, HD = H * (size_t)c->D, o = 0;
    memset(lo, 0, sizeof *lo);
    lo->ops = c->ops ? c->ops : ops_for(BACKEND_CPU);
    lo->L = c->depth;
    lo->P = 0;
    for (int l = 0; l < c->depth; l++) {
        lo->in[l] = l == 0 ? c->D : c->hidden;
        lo->out[l] = l == c->depth - 1 ? c->D : c->hidden;
        lo->off[l] = lo->P;
        lo->P += (size_t)lo->in[l] * (size_t)lo->out[l];
    }
    lo->wq = o, o += d * HD;
    lo->wk = o, o += d * HD;
    lo->wv = o, o += d * HD;
    lo->wth = o, o += d * H;
    lo->bth = o, o += H;
    lo->weta = o, o += d * H;
    lo->beta = o, o += H;
    lo->wal = o, o += d * H;
    lo->bal = o, o += H;
    lo->wg = o, o += d * H;
    lo->wo = o, o += HD * d;
    lo->ck = o, o += (size_t)c->conv * HD;
    lo->cv = o, o += (size_t)c->conv * HD;
    lo->cq = o, o += (size_t)c->conv * HD;
    lo->w0 = o, o += H * lo->P;
    lo->total = o;
}

#define T      float
#define SFX(n) n##_f
#define TDTYPE HW_F32
#include "titans_impl.h"
#undef T
#undef SFX
#undef TDTYPE

#define T      double
#define SFX(n) n##_d
#define TDTYPE HW_F64
#include "titans_impl.h"
