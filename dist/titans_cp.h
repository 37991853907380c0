/* dist/titans_cp.h -- context parallelism for the Titans memory (model/titans.h). Context rank r
 * holds the r-th contiguous slice of every sequence. In the forward, rank r receives the memory
 * state (W, S) and the conv history (the K-1 inputs before its slice) from rank r-1, runs its
 * slice and sends its end state to rank r+1; in the backward the adjoints (dW, dS, dxprev) flow
 * from r+1 back to r. For one sequence the chain is blocking (rank r idles until r-1 is done);
 * the _mb variants pipeline micro-batches over it. Each rank's slice length must be a multiple
 * of the TTT batch b and at least K-1. Host memory: the module's backend must be the CPU (the
 * transformer's chain, on any backend, is par_chain_* in model/parallel.h). */
#ifndef HW_TITANS_CP_H
#define HW_TITANS_CP_H

#include "../model/titans.h"

struct dist;

/* Floats of one hand-off message: W and S (H x P each) and the conv history ((K-1) x d). */
size_t titans_cp_msg_floats(const struct titans_cfg *c);
/* Forward of this rank's slice x (N x d) -> out (N x d); Wout/Sout (may be NULL) receive the
 * state after the slice (on the last rank, the state after the whole sequence). */
void titans_cp_forward(struct dist *d, struct titans_tape_f *t, const float *par, const float *x,
                       int N, float *out, float *Wout, float *Sout);
/* Backward of the last titans_cp_forward on t: accumulates this rank's share of dpar (rank 0
 * includes W0's; sum dpar over the context group) and dx (N x d, NULL = not wanted). */
void titans_cp_backward(struct dist *d, struct titans_tape_f *t, const float *par,
                        const float *dout, float *dpar, float *dx);

/* Pipelined over M micro-batches (independent sequences; x and out are M x N x d, tapes t[M]).
 * The chain runs micro-batch by micro-batch in the same order on every rank, so rank r works on
 * micro-batch m while rank r+1 works on m-1 (the backward runs m = M-1..0 in the other
 * direction). A rank idles about (R-1)/(M+R-1) of the time instead of (R-1)/R. */
void titans_cp_forward_mb(struct dist *d, struct titans_tape_f *t, int M, const float *par,
                          const float *x, int N, float *out);
void titans_cp_backward_mb(struct dist *d, struct titans_tape_f *t, int M, const float *par,
                           const float *dout, float *dpar, float *dx);

#endif /* HW_TITANS_CP_H */
