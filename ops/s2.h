/* ops/s2.h -- the S2-Attention block pattern (heterogeneous context sharding among heads,
 * ALGORITHMS.md §5, following DKernel's get_sparse_attn_mask with absolute vertical
 * positions). The sequence is cut into blocks of `block` tokens. Query block qb of global key/
 * value head g sees key block kb iff kb <= qb and
 *     qb - kb < local                                  (local window, current block included)
 *  or (kb + g*step + offset) % vert == 0               (every vert-th far block, shifted per head)
 *  or g >= n_kv - dense                                (the last `dense` kv heads are dense),
 * plus the token-level causal mask inside a block. step = max(1, vert / n_q_heads). Query heads
 * of one GQA group share their kv head's pattern. Absolute positions make the pattern the same
 * for any chunking of the sequence (context parallelism) and KV-cache friendly: a far block
 * that a later token needs was needed by earlier tokens too. */
#ifndef HW_S2_H
#define HW_S2_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct s2_pattern {
    int block;  /* tokens per block */
    int local;  /* local window in blocks (>= 1) */
    int vert;   /* vertical stride V (1 = dense) */
    int offset; /* head sliding offset o */
    int step;   /* head sliding step s = max(1, V / n_q_heads) */
    int n_kv;   /* global key/value heads */
    int group;  /* query heads per kv head */
    int dense;  /* the last `dense` kv heads are dense */
};

void s2_init(struct s2_pattern *p, int block, int local, int vert, int offset, int dense_heads,
             int n_q_heads, int n_kv_heads);

/* Key block kb is a strided (far) block of global kv head g, or g is a dense head. */
static inline int s2_vert(const struct s2_pattern *p, int g, int64_t kb) {
    return g >= p->n_kv - p->dense || (kb + (int64_t)g * p->step + p->offset) % p->vert == 0;
}

/* Block-level mask of global kv head g (causal at block level). */
static inline int s2_active(const struct s2_pattern *p, int g, int64_t qb, int64_t kb) {
    return kb <= qb && (qb - kb < p->local || s2_vert(p, g, kb));
}

/* Token-level mask: query at position qp sees key at position kp for global kv head g. */
static inline int s2_visible(const struct s2_pattern *p, int g, int64_t qp, int64_t kp) {
    return kp <= qp && s2_active(p, g, qp / p->block, kp / p->block);
}

/* Does any query position in qpos[0..nq) see any key position in kpos[0..nk) for any global kv
 * head in [g0, g1)? (Decides whether a context rank needs another rank's K/V chunk.) */
int s2_any_visible(const struct s2_pattern *p, int g0, int g1, const int32_t *qpos, int nq,
                   const int32_t *kpos, int nk);

/* Positions 0..n-1 a KV cache of global kv head g keeps to decode the token at position `at`
 * and every later one: the local window of `at`'s block and the strided far blocks. Writes
 * the kept positions (ascending) to keep and returns how many. */
int s2_cache_positions(const struct s2_pattern *p, int g, int64_t at, int32_t *keep, int n);

#ifdef __cplusplus
}
#endif

#endif /* HW_S2_H */
