/* dist/emb_shard.h -- embedding tables split by rows across the ranks of a group (DLRM /
 * TorchRec style row-wise sharding). Rank r of p holds the contiguous rows
 * [r*ceil(n/p), min(n, (r+1)*ceil(n/p))), so a table larger than one rank's memory trains
 * across ranks and each rank's slab is a plain hyperslab for the checkpoint. Lookups send the
 * requested ids to their owners and get the rows back; gradient scatters send (id, row) pairs
 * to the owners, which sum them in double in rank order. Both are two all-to-alls through dist.h.
 */
#ifndef HW_EMB_SHARD_H
#define HW_EMB_SHARD_H

#include "../ops/ops.h"
#include "dist.h"

#include <stdint.h>

/* Rows [*lo, *hi) of an n-row table held by rank r of p. */
void emb_shard_range(int64_t n, int p, int r, int64_t *lo, int64_t *hi);

/* out (n_ids, dim; host memory) = rows ids[] (host) of the table; ids sorted ascending,
 * unique, in [0, n_rows). local holds rows [lo, hi) of this rank in be's memory (the rows it
 * serves are gathered there and brought to the host for the exchange). COLLECTIVE over group g
 * (n_ids may be 0). */
void emb_shard_gather(struct dist *d, enum dist_group g, const struct ops *be, const float *local,
                      int64_t n_rows, int dim, const int32_t *ids, int n_ids, float *out);

/* local_grad rows (be's memory) += grad rows (double, host) of ids[] (sorted ascending,
 * unique): each owner sums the rows it receives for one id in double, in rank order, and adds
 * the float of that sum. COLLECTIVE over group g. */
void emb_shard_scatter_add(struct dist *d, enum dist_group g, const struct ops *be,
                           float *local_grad, int64_t n_rows, int dim, const int32_t *ids,
                           int n_ids, const double *grad);

#endif /* HW_EMB_SHARD_H */
