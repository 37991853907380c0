/* dist/dist_cfg.c -- the `dist` section's keys (see dist_cfg.h). Its rules are checked by the
 * modules whose sharding they protect (model_cfg.c, train_cfg.c) and, at run time, against the
 * number of MPI ranks (config/config.c). */
#include "dist_cfg.h"

#include <stddef.h>

static const char *const cmode_vals[] = {"ring", "ulysses", NULL};
static const char *const transport_vals[] = {"mpi", "nccl", NULL};

#define CFG_S   struct cfg_dist
#define CFG_SEC dist
static const struct cfg_key keys[] = {
    CFG_GRID(data, -1, 1, 65536, 1,
             "data-parallel ranks (each takes micro_batch/data sequences); auto: the world size "
             "divided by heads x context"),
    CFG_GRID(heads, 1, 1, 1024, 0,
             "head (tensor) parallel ranks: attention heads and MLP columns are split across "
             "them; a list: the first that divides the world and keeps each head group within a "
             "node"),
    CFG_GRID(context, 1, 1, 65536, 0,
             "context-parallel ranks: each holds 2 of 2*context sequence chunks (zig-zag); a "
             "list: tried in order (inside each heads choice)"),
    CFG_ENUM(context_mode, "ring", cmode_vals,
             "ring: K/V pass around the ring with log-sum-exp merges; ulysses: all-to-all swaps "
             "sequence for heads"),
    CFG_INT(bucket_kb, 0, 0, 16777216,
            "gradient all-reduce bucket size in KiB, launched during the backward; 0 = one bucket "
            "per layer"),
    CFG_DBL(timeout_s, 600, 0, 0, 1e9, 0,
            "watchdog: a collective or checkpoint write running longer than this ends the job "
            "with one line naming it and the ranks that did not arrive (exit 5); 0 = off"),
    CFG_BOOL(zero, 0,
             "ZeRO-1: reduce-scatter the gradients, keep the AdamW moments of 1/(data*context) of "
             "the parameters per rank, all-gather the updated parameters"),
    CFG_ENUM(transport, "mpi", transport_vals,
             "mpi: the deterministic MPI rings (a GPU's buffers staged through pinned host "
             "memory; works everywhere, several ranks may share a GPU); nccl: NCCL "
             "communicators built from the grid, on device buffers (run.backend: cuda, one GPU "
             "per rank; docs/gpu.md)"),
};

const struct cfg_section cfg_section_dist = {
    .name = "dist",
    .keys = keys,
    .n_keys = (int)(sizeof(keys) / sizeof(keys[0])),
};
