/* ops/s2.c -- S2 block pattern helpers (see s2.h). */
#include "s2.h"

#include "../core/check.h"

void s2_init(struct s2_pattern *p, int block, int local, int vert, int offset, int dense_heads,
             int n_q_heads, int n_kv_heads) {
    HW_ASSERT(block >= 1 && local >= 1 && vert >= 1 && n_kv_heads >= 1 &&
              n_q_heads % n_kv_heads == 0 && dense_heads >= 0 && dense_heads <= n_kv_heads);
    p->block = block;
    p->local = local;
    p->vert = vert;
    p->offset = offset;
    p->step = vert / n_q_heads > 1 ? vert / n_q_heads : 1;
    p->n_kv = n_kv_heads;
    p->group = n_q_heads / n_kv_heads;
    p->dense = dense_heads;
}

int s2_any_visible(const struct s2_pattern *p, int g0, int g1, const int32_t *qpos, int nq,
                   const int32_t *kpos, int nk) {
    /* Walk block by block: a key block kb < qb that is active is visible from every query of
     * block qb; for kb == qb, the earliest key of the block must not be after the latest query
     * of the block. */
    for (int i = 0; i < nq;) {
        const int64_t qb = qpos[i] / p->block;
        int32_t qmax = qpos[i];
        while (i < nq && qpos[i] / p->block == qb)
            qmax = qpos[i++];
        for (int j = 0; j < nk;) {
            const int64_t kb = kpos[j] / p->block;
            const int32_t kmin = kpos[j];
            while (j < nk && kpos[j] / p->block == kb)
                j++;
            if (kb > qb || (kb == qb && kmin > qmax))
                continue;
            for (int g = g0; g < g1; g++)
                if (s2_active(p, g, qb, kb))
                    return 1;
        }
    }
    return 0;
}

int s2_cache_positions(const struct s2_pattern *p, int g, int64_t at, int32_t *keep, int n) {
    const int64_t qb = at / p->block;
    int k = 0;
    for (int64_t t = 0; t < n && t <= at; t++) {
        const int64_t kb = t / p->block;
        /* later tokens' local windows start at or after this one's; far blocks stay far */
        if (qb - kb < p->local || s2_vert(p, g, kb))
            keep[k++] = (int32_t)t;
    }
    return k;
}
