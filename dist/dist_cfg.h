/* dist/dist_cfg.h -- the `dist` section of the config: the data x heads x context grid, the
 * context-parallel mode, gradient buckets and ZeRO-1; keys in dist_cfg.c. */
#ifndef HW_DIST_CFG_H
#define HW_DIST_CFG_H

#include "../core/cfg.h"

struct cfg_dist {
    struct cfg_grid data;            /* data-parallel ranks (auto: what the world leaves) */
    struct cfg_grid heads;           /* head (tensor) parallel ranks */
    struct cfg_grid context;         /* context (sequence) parallel ranks */
    char context_mode[CFG_NAME_MAX]; /* "ring" | "ulysses" */
    int bucket_kb;                   /* gradient all-reduce bucket size; 0 = one per layer */
    int zero;                        /* ZeRO-1: shard the optimizer state over data x context */
    double timeout_s;             /* watchdog limit on one collective or checkpoint write; 0: off */
    char transport[CFG_NAME_MAX]; /* "mpi" | "nccl": how the float collectives travel */
};

extern const struct cfg_section cfg_section_dist;

#endif /* HW_DIST_CFG_H */
