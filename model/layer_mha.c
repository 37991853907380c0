/* model/layer_mha.c -- the dense / grouped-query attention kind ("mha"): causal multi-head
 * attention with n_kv_heads key/value heads; S2 block sparsity, packed-segment masks and a
 * persistent prefix are options of its kernels (model/attn.h does the work). */
#include "attn.h"

const struct layer_kind layer_kind_mha = {
    .name = "mha",
    .caps = attn_kind_caps,
    .params = attn_kind_params,
    .bind = attn_kind_bind,
    .alloc = attn_kind_alloc,
    .free = attn_kind_free,
    .forward = attn_kind_forward,
    .backward = attn_kind_backward,
    .cache_init = attn_kind_cache_init,
    .cache_reset = attn_kind_cache_reset,
    .cache_free = attn_kind_cache_free,
    .decode = attn_kind_decode,
    .attn_qkv = attn_kind_qkv,
    .attn_out = attn_kind_out,
    .attention = attn_of,
};
