/* model/rec.h -- the DARE / TWIN recommendation model (model.family rec, docs/rec.md).
 * Target attention over a long behaviour history: each behaviour and the target embed as
 * [item; category; time] from an attention table set (scores) and a representation table set
 * (values and features). GSU: scores s_j = <q_sem,k_sem>/sqrt(d_sem) + <q_time,k_time>/sqrt(d_t),
 * masked slots -2^32+1, top-K with the lowest slot winning ties (the index set is kept from the
 * forward and is constant in the backward). ESU: softmax over the K selected valid behaviours,
 * h = sum w_j v_j. Features [t, h, t*h] -> BatchNorm -> Lin -> PReLU -> Lin -> PReLU -> Lin(2)
 * -> softmax; loss -mean log(p_y + 1e-8). Auxiliary loss: the same features with the attention
 * over the whole history through BN -> Lin -> PReLU -> Lin(2). Explicit L2 on the parameters
 * that are neither biases nor embeddings (ALGORITHMS.md §3, thuml/DARE).
 *
 * Embedding kinds: dare (two independent table sets, attention dims configurable), twin (one
 * set used for both roles; the same code with both roles pointing at one table), twin_proj
 * (one set plus four bias-free linear projections: attention/representation x target/
 * behaviour). Parameters are float32 in one block with stable names: the dense part first
 * (replicated, data-parallel), then the tables, which under a rank group are split by rows
 * (dist/emb_shard.h). The math runs in double. BatchNorm statistics are summed over the ranks,
 * so results do not depend on how a batch is split. */
#ifndef HW_REC_H
#define HW_REC_H

#include "../datasets/data_cfg.h"
#include "../dist/dist.h"
#include "gpt.h"
#include "model_cfg.h"

#include <stddef.h>
#include <stdint.h>

enum rec_emb { REC_EMB_TWIN, REC_EMB_DARE, REC_EMB_TWIN_PROJ };

struct rec_config {
    enum rec_emb emb;
    int n_item, n_cat; /* table rows; id 0 is the empty history slot */
    int L;             /* history slots; the time table has L + 1 rows */
    int K;             /* GSU top-K */
    int dim[3];        /* representation dims: item, category, time */
    int adim[3];       /* attention dims (dare; == dim otherwise) */
    int h1, h2;        /* MLP widths */
    int aux;           /* auxiliary loss */
    double l2;         /* explicit L2 weight */
    float init_std;    /* N(0, init_std) for weights and embeddings */
};

/* One batch. Histories are oldest -> newest in slots 0..L-1 (left-padded); slot j has time id
 * L - j, the target time id 0; hitem 0 marks an empty slot. */
struct rec_batch {
    int B;
    const int32_t *item, *cat;   /* (B) target */
    const int32_t *hitem, *hcat; /* (B, L) */
    const float *label;          /* (B) 1 = click, 0 = no click */
};

struct rec_ws; /* forward state kept for the backward (rec.c) */

struct rec_model {
    struct rec_config c;
    const struct ops *ops; /* the backend holding the parameters (needs OPS_CAP_REC) */
    struct dist *d;        /* NULL or a 1-rank world: whole tables here */
    int p, r;              /* ranks sharing the tables, this rank */
    int n_params;
    struct param *params; /* the same descriptor as the GPT (optim, checkpoints) */
    size_t num_params, n_dense;
    float *param_mem, *grad_mem;
    int tab[2][3];   /* param index of table [set][kind]; set 0 representation, 1 attention */
    int64_t rows[3]; /* global rows per kind */
    int proj[4];     /* twin_proj: attn target, attn behaviour, repr target, repr behaviour */
    int mlp[10];     /* bn.w bn.b fc1.w fc1.b prelu1 fc2.w fc2.b prelu2 fc3.w fc3.b */
    int auxp[7];     /* bn.w bn.b fc1.w fc1.b prelu1 fc2.w fc2.b */
    double *stats;   /* BatchNorm running mean/var: main (2*F) then aux (2*F), F = 3 d_R */
    double bn_momentum, bn_eps;
    double gsu_seconds;   /* time spent in the GSU: scores + top-K (benchmark) */
    double score_seconds; /* of which the attention-dim dependent scores */
    struct rec_ws *ws;
    /* observe: rec_backward keeps each role's gradient of the batch's unique item rows before
     * they are added to the tables (set 0 representation, 1 attention; NULL for twin_proj,
     * whose roles meet before the table). (obs_rows, obs_dim) doubles each, this rank's part. */
    int observe;
    double *obs[2];
    int obs_rows, obs_dim;
};

struct rec_out {
    double loss; /* local sum of inv_n * (ctr + aux) over the batch */
    double ctr, aux;
};

void rec_config_from_cfg(struct rec_config *rc, const struct cfg_model *m, const struct cfg_rec *r,
                         int n_item, int n_cat);
void rec_signature(const struct rec_config *rc, char *out, size_t n);
/* d == NULL: one process holding everything; otherwise the tables are split over DIST_DP. */
void rec_init(struct rec_model *m, const struct rec_config *rc, const struct ops *ops,
              struct dist *d);
/* N(0, init_std) for weights and embeddings, zero biases, BN gains 1, PReLU 0.1; by (seed,
 * name, global index), so any rank grid gets the same model. */
void rec_init_weights(struct rec_model *m, uint64_t seed);
void rec_free(struct rec_model *m);
void rec_zero_grad(struct rec_model *m);
const struct param *rec_find_param(const struct rec_model *m, const char *name);
/* The parameters as the optimizer and checkpoints see them. */
struct param_set rec_param_set(struct rec_model *m);

/* Forward over this rank's samples; loss terms are scaled by inv_n (1 / global batch).
 * train: batch statistics (summed over the ranks) and running-stat update; else running stats.
 * prob (may be NULL) gets the click probability p[:,0] per sample. With train, keeps what
 * rec_backward needs. COLLECTIVE when the tables are sharded or train is set with ranks. */
struct rec_out rec_forward(struct rec_model *m, const struct rec_batch *b, int train, double inv_n,
                           double *prob);
/* Accumulate d(loss)/d(params) into grad_mem: dense part local (all-reduce it), table rows
 * scattered to their owners. COLLECTIVE when sharded. */
void rec_backward(struct rec_model *m);
/* l2 * sum of squares of the decayed (non-bias, non-embedding) parameters; with add_grad also
 * adds its gradient (call once per step, after the dense all-reduce). */
double rec_l2(struct rec_model *m, int add_grad);

/* The GSU alone, for tests and benchmarks: top-K slots of sample b (after rec_forward). */
const int32_t *rec_topk(const struct rec_model *m, int b);

/* The toy building blocks, exposed for tests: top-K of n scores (ties: lowest index), and the
 * softmax-weighted sum over the selected entries. */
void rec_topk_indices(const double *s, int n, int k, int32_t *idx);
/* Softmax over the scores of slots[0..n) (slots NULL: 0..n) that are not masked (-2^32+1),
 * weights into wt (n), h (dim) = sum wt_i v[slot_i]; all masked: zeros. */
void rec_esu(const double *s, const int32_t *slots, int n, const double *v, int dim, double *wt,
             double *h);
/* After rec_forward: the ESU summaries h (all = 0) or the whole-history h_all (B, d_R), in the
 * backend's memory (download them on a GPU); rec_topk's slots are a host copy. */
const double *rec_summary(const struct rec_model *m, int all);

#endif /* HW_REC_H */
