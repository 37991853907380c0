/* model/parallel.h -- parallel layers: the only place where model code meets the rank grid.
 * Layer files call these helpers and no collective of their own (Megatron's mappings.py and
 * layers.py are the model):
 *
 * - `linear_forward` / `linear_backward` pair each GEMM with its head-group collective and the
 *   conjugate in the backward, reading the split from the parameter table's shard_dim:
 *   column-parallel (W split by rows, the output features) needs nothing in the forward and
 *   sums the input gradient; row-parallel (W split by columns, the input features) sums the
 *   output and needs nothing in the backward; replicated needs neither.
 * - `par_reduce_output` / `par_reduce_input_grad` do the same for a whole head-parallel module
 *   (the Titans memory): partial outputs or input gradients are summed when the module's
 *   output (input) projection is split.
 * - `par_gather_heads` combines per-head values that each head rank filled for its own heads.
 * - `par_batch_sum` sums statistics over every rank that holds part of the global micro-batch
 *   (data x context), so batch statistics do not depend on the grid.
 * - `par_attention_forward` / `_backward`: one entry point that runs the backend's attention
 *   locally or, under context parallelism, as ring (incl. S2 point-to-point) or Ulysses.
 * - `par_chain_forward` / `_backward`: a per-sequence recurrence handed along the zig-zag chunks
 *   of the context ranks (the Titans memory state), pipelined over the local sequences.
 * Every helper is a no-op on one rank, so a model built for one process runs unchanged. */
#ifndef HW_PARALLEL_H
#define HW_PARALLEL_H

#include "../dist/cp_attention.h"
#include "../dist/dist.h"
#include "../ops/ops.h"
#include "param.h"

#include <stddef.h>

/* The model's view of the grid. */
struct tp {
    struct dist *d; /* NULL: one process */
    const struct ops *ops;
    int hp, hp_rank;      /* head-parallel group */
    int cp, cp_rank;      /* context-parallel group */
    struct cp_work *work; /* context-parallel attention scratch, shared by the layers */
};

void tp_init(struct tp *tp, struct dist *d, const struct ops *ops, struct cp_work *work);

/* y = x W^T through this rank's slice of W: (M, K) local rows/columns, split by shard_dim
 * (0 column-parallel, 1 row-parallel, -1 replicated). g: W's gradient. */
struct linear {
    const float *w;
    float *g;
    int K, M; /* local input and output features */
    int shard_dim;
};
/* The linear layer made of params[0..n) stacked by rows (wq|wk|wv, w_gate|w_up: one GEMM);
 * they must share the split. w, g: the parameter and gradient blocks. */
struct linear linear_of(const struct param *params, int n, const float *w, float *g);
/* out (N, M) = in (N, K) W^T + beta out; summed over the head group when row-parallel. */
void linear_forward(const struct tp *tp, const struct linear *l, float *out, const float *in, int N,
                    float beta);
/* din = dout W + beta din (din NULL: skipped), dW += dout^T in; din summed over the head group
 * when column-parallel. */
void linear_backward(const struct tp *tp, const struct linear *l, float *din, const float *dout,
                     const float *in, int N, float beta_din);

void par_reduce_output(const struct tp *tp, const struct param *w_out, float *x, size_t n);
void par_reduce_input_grad(const struct tp *tp, const struct param *w_in, float *dx, size_t n);
void par_gather_heads(const struct tp *tp, float *x, size_t n);
void par_batch_sum(const struct tp *tp, double *v, int n);
/* Ranks sharing one head shard's batch (data x context): the global batch is this many local
 * ones. */
int par_batch_ranks(const struct tp *tp);

/* Attention over the local queries in qkv; ctx: the layer's Ulysses state (cp_ctx_floats). */
void par_attention_forward(const struct tp *tp, float *out, float *lse, const float *qkv,
                           const struct attn_shape *s, struct cp_attn_ctx *ctx);
/* Overwrites the q, k, v columns of dqkv. */
void par_attention_backward(const struct tp *tp, float *dqkv, const float *dout, const float *out,
                            const float *lse, const float *qkv, const struct attn_shape *s,
                            struct cp_attn_ctx *ctx);

/* Let in-flight data-parallel gradient buckets progress (MPI moves messages only inside MPI
 * calls, so the backward pokes it between kernels). */
void par_progress(const struct tp *tp);

/* The chain of a per-sequence recurrence over this rank's pieces: one piece per sequence, or the
 * two zig-zag chunks under context parallelism, chained over the context ranks and pipelined
 * over the B local sequences. fwd(ctx, b, p, in, out): piece p of sequence b from the incoming
 * message (NULL: the sequence start) to the outgoing one. bwd(ctx, b, p, din, dout): given the
 * adjoint of the piece's outgoing message (NULL: zero, the sequence end), writes the adjoint of
 * the incoming one (dout NULL: the sequence start). Messages are nmsg floats; msg holds B of
 * them and in one (scratch of the caller). */
typedef void (*par_piece_fn)(void *ctx, int b, int p, const float *in, float *out);
struct par_chain {
    int B, np; /* sequences, pieces per sequence (2 under context parallelism) */
    size_t nmsg;
    float *msg, *in;
};
void par_chain_forward(const struct tp *tp, const struct par_chain *c, par_piece_fn fwd, void *ctx);
void par_chain_backward(const struct tp *tp, const struct par_chain *c, par_piece_fn bwd,
                        void *ctx);

#endif /* HW_PARALLEL_H */
