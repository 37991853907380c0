/* model/gpt_memory_impl.h -- internals shared by the Titans memory layers (model/gpt_memory.c:
 * config, tensors, buffers, the per-sequence chain over context ranks, MAL/MAG/memory-only) and
 * the memory-as-context layers (model/gpt_mac.c). Not part of the model's API. */
#ifndef HW_GPT_MEMORY_IMPL_H
#define HW_GPT_MEMORY_IMPL_H

#include "gpt_memory.h"

#include "../core/check.h"

#include <math.h>

struct gpt_memory {
    int B, T, n;                /* sequences, tokens, memory layers */
    int slot[GPT_MAX_LAYERS];   /* layer -> memory index, or -1 */
    struct titans_tape_f *tape; /* (n, B, np): MAL/MAG/memory-only */
    float *x0, *nrm, *rstd;     /* MAL: (n, N, C) input, normed input, (n, N) */
    float *u, *y;               /* (n, N, C) memory outputs; MAG/MAC: the ungated branch */
    float *dn1, *dy, *du;       /* (N, C) backward scratch */
    float *W, *S, *Wo, *So;     /* (H, P) state scratch */
    int np;                     /* pieces per local sequence: 2 under context parallelism */
    size_t nmsg;                /* floats of one chain message */
    float *in, *msg;            /* chain messages: the incoming one, one outgoing per sequence */
    int warned;                 /* a NaN/Inf was reported */
    /* the layer the chain is running and its arrays (set by the caller of the chain) */
    const float *cx, *cdu;
    float *cu, *cdx;
    /* MAC (gpt_mac.c) */
    int nseg;                    /* segments per local sequence */
    struct titans_tape_f *mtape; /* (n, B, nseg, 2): read, store (MAC layers only) */
    float *h;                    /* (n, N, C) retrieved memory rows */
    float *kv1;                  /* (n, B, nseg, Np + seg, Dqkv) persistent + retrieved rows */
    float *pqkv;                 /* (Np, Dqkv) projected persistent tokens of the current layer */
    int32_t *ppos, *spos, *mpos; /* positions: [P | segment] rows, segment rows, local rows */
    float *dym, *dh, *dkv1;      /* backward scratch */
    /* persistent tokens: projections per memory slot (MAG), K/V gradient, P gradient */
    float *ppq, *dpq, *pdP;
    float *dW[5]; /* (H, P) adjoint scratch */
};

struct gpt_memory_kv {
    int B, n;
    int slot[GPT_MAX_LAYERS];
    struct titans_dec_f *dec; /* (n, B) */
    const float **par;        /* (n) the layers' parameters */
    float *nrm, *u, rstd;
    /* MAC: per (memory slot, sequence) the state read in the current segment, the K-1 last
     * attention-norm rows, the segment's K/V rows ([persistent | h0 x0 h1 x1 ...]) and count */
    float *mw, *mhist, *mk, *mv, *mrow, *mq;
    int *mn;
    unsigned char is_mac[GPT_MAX_LAYERS]; /* per memory slot */
    int C, K1, Np, seg, kvw;
    struct titans_tape_f rtape; /* one-token reads */
};

/* Zeroed floats (at least one). */
static inline float *mem_floats(size_t n) {
    return HW_CALLOC(n ? n : 1, sizeof(float));
}

static inline float mem_sigmoid(float z) {
    return 1.0f / (1.0f + expf(-z));
}

/* The module configuration of this rank: its share of the memory heads. */
struct titans_cfg gpt_memory_local_cfg(const struct gpt *m);
/* Sum a head-split memory's partial outputs (or input gradients) over the head ranks. */
void gpt_memory_hp_sum(struct gpt *m, float *x, size_t n);
/* Sum partial attention results over the head ranks (no-op on one head rank). */
void gpt_memory_attn_hp_sum(struct gpt *m, float *x, size_t n);

/* The per-sequence chain of layer l over this rank's pieces (one piece per sequence, or the two
 * zig-zag chunks under context parallelism, chained over the context ranks and pipelined over
 * the B sequences). fwd(m, l, b, p, in, out): piece p of sequence b from the incoming message
 * (NULL: the sequence start) to the outgoing one. bwd(m, l, b, p, din, dout): given the adjoint
 * of the piece's outgoing message (NULL: zero, the sequence end), writes the adjoint of the
 * incoming one (dout NULL: the sequence start, where the piece adds its state adjoint into W0's
 * gradient). Messages are s->nmsg floats. */
typedef void (*gpt_memory_piece_fn)(struct gpt *m, int l, int b, int p, const float *in,
                                    float *out);
void gpt_memory_chain_forward(struct gpt *m, int l, gpt_memory_piece_fn fwd);
void gpt_memory_chain_backward(struct gpt *m, int l, gpt_memory_piece_fn bwd);

/* MAC (gpt_mac.c): buffers, the layer's forward (dn = the branch output) and backward
 * (s->dn1 = the gradient w.r.t. n1, complete over the head ranks), decoding. */
void gpt_mac_alloc(struct gpt *m);
void gpt_mac_free(struct gpt_memory *s);
void gpt_mac_forward(struct gpt *m, int l, const float *n1, float *dn);
void gpt_mac_backward(struct gpt *m, int l, const float *dx);
void gpt_mac_kv_init(const struct gpt *m, struct gpt_memory_kv *k);
void gpt_mac_kv_reset(struct gpt_memory_kv *k, int j, int b);
void gpt_mac_kv_free(struct gpt_memory_kv *k);
#endif /* HW_GPT_MEMORY_IMPL_H */
