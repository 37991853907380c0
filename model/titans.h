/* model/titans.h -- the Titans neural long-term memory (ALGORITHMS.md §2) as a standalone module
 * on token-major arrays: projections, data-dependent gates, an MLP fast-weight memory trained by
 * chunked test-time gradient descent with momentum and forgetting, retrieval, the exact backward
 * through the inner update (second-order terms), token-by-token decoding, and a (W, S) state
 * hand-off for context parallelism. Independent of model/gpt.c. Every function exists in a float
 * (_f, the fast path) and a double (_d, for finite-difference tests) instantiation of one body
 * (model/titans_impl.h); docs/titans.md describes the semantics in full.
 *
 * Per token x (width d), per memory head h (width D = dm):
 *   k = l2n(silu(conv(x Wk_h))), v = silu(conv(x Wv_h)), q = l2n(silu(conv(x Wq_h)))
 *        (silu, l2n optional; conv_t(z) = sum_{s<K} c_s * z_{t-s}, depthwise, causal, optional)
 *   theta_t = max_lr * sigmoid(x wth_h + bth_h)          per token (or per chunk: pooled x)
 *   eta_n = sigmoid(xbar_n weta_h + beta_h), alpha_n = sigmoid(xbar_n wal_h + bal_h)
 *        with xbar_n the mean of x over store chunk n (c tokens; per token when c = 1)
 *   inner loss  l_t(W) = kappa * ||M_W(k_t) - v_t||^2  (kappa = 1 paper sum, 1/D reference mean)
 *   g_n = sum_{t in chunk n} theta_t grad_W l_t(W*)   [optional soft-clamp of each tensor's norm]
 *   S_n = eta_n S_{n-1} - g_n,   W_n = (1 - alpha_n) W_{n-1} + S_n     (associative scans)
 *   W* = the weights at the start of the TTT batch (b tokens, b a multiple of c)
 *   retrieval: token i (0-based in the call) reads W_{floor((i+1)/c)} (W_0 = the incoming state)
 *   out = [sigmoid(x wg_h) * M_{W_j}(q_h)]_h Wo         (retrieve gate optional)
 * The memory M is an MLP of depth L: h^1 = a^0 W_1, a^l = gelu(h^l), ..., out = h^L (no biases);
 * L = 1 is the linear matrix memory. Weights W_l are (in_l x out_l) row-major, row vectors. */
#ifndef HW_TITANS_H
#define HW_TITANS_H

#include "../ops/ops.h"
#include "../ops/titans_ops.h" /* the kernels; titans_scan_f/_d */

#include <stddef.h>
#include <stdint.h>

#define TITANS_MAX_DEPTH 8

struct titans_cfg {
    int d;      /* model width */
    int H;      /* memory heads */
    int D;      /* head width (keys, values, queries) */
    int depth;  /* L_M >= 1 */
    int hidden; /* hidden width of the MLP (depth >= 2) */
    int c;      /* store chunk: gates eta/alpha and the weight snapshots are per chunk */
    int b;      /* TTT batch: gradients taken at the batch's starting weights; b % c == 0 */
    int silu;   /* SiLU after the q/k/v projections */
    int l2norm; /* l2-normalise q and k */
    int gate;   /* retrieve gate sigmoid(x wg) per head */
    int theta_per_chunk; /* theta from the pooled chunk input instead of per token */
    int conv;            /* > 0: width of a depthwise causal conv after the q/k/v projections */
    int recompute;       /* keep only TTT-batch boundary states; the backward recomputes the rest */
    double max_lr;       /* theta = max_lr * sigmoid(.) */
    double kappa;        /* inner loss factor: 1 (paper, sum) or 1/D (reference, mean) */
    double
        max_grad_norm; /* > 0: clamp each chunk surprise tensor's norm to it (norms below pass) */
    const struct ops *ops; /* the backend of the module's buffers and GEMMs; NULL: the CPU */
};

/* Offsets (in elements) of the outer parameters in one flat array; P is the size of one head's
 * memory weights, total the whole parameter array. */
struct titans_layout {
    size_t wq, wk, wv; /* d x (H*D) */
    size_t wth, bth;   /* d x H, H */
    size_t weta, beta; /* d x H, H */
    size_t wal, bal;   /* d x H, H */
    size_t wg;         /* d x H */
    size_t wo;         /* (H*D) x d */
    size_t ck, cv, cq; /* conv x (H*D) each: taps [s][channel], s = lag */
    size_t w0;         /* H x P: learned initial memory weights */
    size_t total;
    size_t P; /* per-head memory size */
    int L;    /* depth */
    int in[TITANS_MAX_DEPTH], out[TITANS_MAX_DEPTH];
    size_t off[TITANS_MAX_DEPTH]; /* offset of W_l inside one head's P */
    const struct ops *ops;        /* the configuration's backend (never NULL) */
};

/* Fills defaults (d, H, D given): depth 2, hidden 4D, c = b = 1... Callers override. */
void titans_cfg_default(struct titans_cfg *c, int d, int H, int D);
/* NULL when the configuration is valid, else a static message naming the offending field. */
const char *titans_cfg_error(const struct titans_cfg *c);
void titans_layout(const struct titans_cfg *c, struct titans_layout *lo);

/* The body below is declared for T = float (suffix _f) and T = double (suffix _d). */
#define TITANS_DECLARE(T, SF)                                                                      \
    /* Saved forward values for one call of at most nmax tokens. */                                \
    struct titans_tape##SF {                                                                       \
        struct titans_cfg cfg;                                                                     \
        struct titans_layout lo;                                                                   \
        int nmax, N, Nc; /* tokens, complete store chunks of the last forward */                   \
        int read_only;   /* the last forward was titans_read (no store) */                         \
        T *xe;           /* (K-1 + N) x d: the conv history rows, then the input */                \
        T *x;            /* = xe + (K-1) d */                                                      \
        T *zk, *zv, *zq; /* (K-1 + N) x HD projections before the conv (conv > 0) */               \
        T *kp, *vp, *qp; /* N x HD pre-activations */                                              \
        T *k, *v, *q;    /* N x HD keys, values, queries as used */                                \
        T *kn, *qn;      /* N x H norms before l2-normalisation */                                 \
        T *th;           /* N x H learning rates (per token, or the chunk's) */                    \
        T *pool;         /* Nc x d chunk means */                                                  \
        T *eta, *alpha;  /* Nc x H */                                                              \
        T *W, *S;        /* (Nc+1) x H x P: the state after each chunk, [0] = incoming; with       \
                            recompute only the TTT-batch boundaries (ceil(Nc/(b/c))+1 rows) */     \
        T *Wb; /* (Nc+1) x H x P: backward scratch, adjoints of W (NULL with recompute) */         \
        T *m;  /* N x HD retrieved (before the gate) */                                            \
        T *g;  /* N x H retrieve gate */                                                           \
        T *y;  /* N x HD gated */                                                                  \
    };                                                                                             \
    struct titans_dec##SF {                                                                        \
        struct titans_cfg cfg;                                                                     \
        struct titans_layout lo;                                                                   \
        T *W, *S, *Ws; /* H x P: current weights, momentum, TTT-batch start weights */             \
        T *buf;        /* (K-1 + c) x d: conv history before the chunk, then its inputs */         \
        int npend;                                                                                 \
        long chunks; /* complete chunks stored */                                                  \
        int K1;      /* conv history rows (conv - 1, or 0) */                                      \
    };                                                                                             \
    /* Default init from a counter-based key (grid-independent): projections U(+-1/sqrt(fan_in)),  \
     * gate weights 0 with theta/eta/alpha biases -2/2/-4.6, identity conv taps, W0 Xavier. */     \
    void titans_params_init##SF(const struct titans_cfg *c, T *par, uint64_t key);                 \
    int titans_tape_init##SF(struct titans_tape##SF *t, const struct titans_cfg *c, int nmax);     \
    void titans_tape_free##SF(struct titans_tape##SF *t);                                          \
    /* The initial state: W = W0 (per head), S = 0. Both H x P. */                                 \
    void titans_state_init##SF(const struct titans_cfg *c, const T *par, T *W, T *S);              \
    /* dpar[W0] += dW (the adjoint of titans_state_init). */                                       \
    void titans_state_init_backward##SF(const struct titans_cfg *c, const T *dW, T *dpar);         \
    /* One call over N <= nmax tokens x (N x d) from the state (Win, Sin) at a TTT-batch boundary. \
     * xprev: the K-1 inputs before x (conv > 0; NULL = sequence start: zeros). Writes out         \
     * (N x d) and the state after the call's complete chunks (Wout, Sout; H x P). The             \
     * state can be handed to a next call (context parallelism) when N is a multiple of b. */      \
    void titans_forward##SF(struct titans_tape##SF *t, const T *par, const T *Win, const T *Sin,   \
                            const T *xprev, const T *x, int N, T *out, T *Wout, T *Sout);          \
    /* The VJP of the last forward on t: given dout (N x d) and the adjoints of (Wout, Sout)       \
     * (NULL = 0), accumulates dpar, dx (N x d) and dxprev ((K-1) x d; NULL = not wanted),         \
     * and writes dWin, dSin. */                                                                   \
    void titans_backward##SF(struct titans_tape##SF *t, const T *par, const T *dout,               \
                             const T *dWout, const T *dSout, T *dpar, T *dx, T *dxprev, T *dWin,   \
                             T *dSin);                                                             \
    /* The first chunk state n (0..Nc) of the last forward whose W or S holds a NaN/Inf, or -1;    \
     * with recompute, the first such TTT-batch boundary; the model reports it with the layer and  \
     * step. */                                                                                    \
    int titans_nonfinite##SF(const struct titans_tape##SF *t);                                     \
    /* Retrieval only, at the given state W (H x P), with no store: every token reads W (the       \
     * paper's MAC read h_t = M*_{t-1}(q)). The backward accumulates dpar (q path, gate, Wo), dx,  \
     * dxprev and writes dW. Uses the same tape (its last call decides what backward does). */     \
    void titans_read##SF(struct titans_tape##SF *t, const T *par, const T *W, const T *xprev,      \
                         const T *x, int N, T *out);                                               \
    void titans_read_backward##SF(struct titans_tape##SF *t, const T *par, const T *dout, T *dpar, \
                                  T *dx, T *dxprev, T *dW);                                        \
    /* Token-by-token inference with the reference's single-token semantics. */                    \
    int titans_dec_init##SF(struct titans_dec##SF *s, const struct titans_cfg *c, const T *par);   \
    void titans_dec_free##SF(struct titans_dec##SF *s);                                            \
    void titans_dec_step##SF(struct titans_dec##SF *s, const T *par, const T *x, T *out);

TITANS_DECLARE(float, _f)
TITANS_DECLARE(double, _d)
#undef TITANS_DECLARE

#endif /* HW_TITANS_H */
