#!/bin/sh
# tests/cli_moh.sh -- MoH and S2 through the binary: a model mixing a MoH + S2 layer with a
# dense MHA layer trains, logs head usage and the balance term, and every data x heads x context
# grid of 2 and 4 ranks (ring and Ulysses) gives the losses and gradient norms of one rank; the
# query-norm router too; S2 under context parallelism skips K/V chunks (fewer ring bytes than
# dense attention); the checkpoint resumes, samples (compact S2 KV cache) and evaluates; bad
# MoH/S2 settings are config errors.
. tests/lib.sh
D=$T/data
prepare_tiny "$D"
base() {
    echo configs/tiny.yaml data.train="$D/train.h5" data.val="$D/val.h5" model.n_kv_heads=4 \
        model.max_seq=128 train.seq_len=128 train.steps=4 run.ckpt_every=0 train.threads=1 \
        train.val_every=0
}
MOH="model.attention.layers=[moh, mha]"
S2="model.sparsity={kind: s2, block: 16, local_blocks: 1, vert_stride: 8, dense_layers: [1]}"
expect_exit 0 "MoH + S2 layer and a dense MHA layer, one rank" "$HW" train $(base) "$MOH" \
    "model.moh={shared_heads: 1, top_k: 2}" "$S2" run.dir="$T/one"
ok "  head usage per MoH layer in metrics.jsonl" grep -q '"moh_usage":\[\[1.0,' "$T/one/metrics.jsonl"
ok "  balance term logged" grep -q '"moh_balance":' "$T/one/metrics.jsonl"
metric_lines "$T/one/metrics.jsonl" >"$T/m1"
for np_grid in "2 2 1 1 ring" "2 1 2 1 ring" "2 1 1 2 ring" "2 1 1 2 ulysses" "4 1 4 1 ring" \
    "4 1 1 4 ring" "4 1 1 4 ulysses" "4 2 1 2 ring" "4 1 2 2 ring" "4 1 2 2 ulysses"; do
    set -- $np_grid
    np=$1 dp=$2 hp=$3 cp=$4 mode=$5
    dir="$T/g$dp$hp$cp$mode"
    expect_exit 0 "np $np: data $dp x heads $hp x context $cp ($mode)" \
        $MPIRUN -np "$np" "$HW" train $(base) "$MOH" "model.moh={shared_heads: 1, top_k: 2}" \
        "$S2" dist.data="$dp" dist.heads="$hp" dist.context="$cp" dist.context_mode="$mode" \
        run.dir="$dir"
    metric_lines "$dir/metrics.jsonl" >"$T/mg"
    ok "  same losses and grad norms as one rank (rel 1e-5)" close "$T/m1" "$T/mg" 1e-5
done

# S2 skips K/V chunks under context parallelism: heads 2 x context 2 moves fewer ring bytes
cp_bytes() { sed -n 's/.*"cp_ring":{"bytes":\([0-9.e+]*\).*/\1/p' "$1" | head -1; }
expect_exit 0 "dense attention, heads 2 x context 2" $MPIRUN -np 4 "$HW" train $(base) \
    dist.heads=2 dist.context=2 run.dir="$T/dense22"
sparse=$(cp_bytes "$T/g122ring/metrics.jsonl")
dense=$(cp_bytes "$T/dense22/metrics.jsonl")
echo "  cp_ring bytes per step (rank 0): S2 $sparse, dense $dense"
ok "  S2 sends fewer K/V bytes than the dense ring" awk -v s="$sparse" -v d="$dense" \
    'BEGIN { exit !(s > 0 && s < d) }'

# the parameter-free query-norm router with straight-through gradients, every layer MoH
set -- "model.attention.kind=moh" "model.moh={shared_heads: 1, top_k: 2, router: qnorm}" \
    "model.sparsity={kind: s2, block: 16, local_blocks: 2, vert_stride: 4, dense_every: 2}"
expect_exit 0 "qnorm router, one rank" "$HW" train $(base) "$@" run.dir="$T/q1"
metric_lines "$T/q1/metrics.jsonl" >"$T/mq1"
for np_grid in "4 2 2 1 ring" "4 1 2 2 ring" "2 1 1 2 ulysses"; do
    set -- $np_grid
    np=$1 dp=$2 hp=$3 cp=$4 mode=$5
    expect_exit 0 "qnorm, np $np: data $dp x heads $hp x context $cp ($mode)" \
        $MPIRUN -np "$np" "$HW" train $(base) "model.attention.kind=moh" \
        "model.moh={shared_heads: 1, top_k: 2, router: qnorm}" \
        "model.sparsity={kind: s2, block: 16, local_blocks: 2, vert_stride: 4, dense_every: 2}" \
        dist.data="$dp" dist.heads="$hp" dist.context="$cp" dist.context_mode="$mode" \
        run.dir="$T/q$dp$hp$cp$mode"
    metric_lines "$T/q$dp$hp$cp$mode/metrics.jsonl" >"$T/mqg"
    ok "  same as one rank" close "$T/mq1" "$T/mqg" 1e-5
done

# checkpoint: resume, sample (S2 cache), eval
expect_exit 0 "resume the MoH + S2 run to step 6" "$HW" train $(base) "$MOH" \
    "model.moh={shared_heads: 1, top_k: 2}" "$S2" train.steps=6 run.dir="$T/one"
ok "  resumed at step 4" grep -q "resumed from" "$T/out"
expect_exit 0 "sample from the checkpoint" "$HW" sample "$T/one" --prompt "abc" --tokens 40 \
    --seed 1
err_has "KV cache"
expect_exit 0 "eval perplexity of the MoH + S2 checkpoint" "$HW" eval --ckpt "$T/one" \
    --tasks perplexity --perplexity-data "$D/val.h5" --output "$T/ev" --limit 8
ok "  results file written" test -s "$T/ev/results_ckpt_00000006.h5.json" -o -s \
    "$T/ev/results_ckpt_00000006.json"
expect_exit 2 "a config with other MoH settings cannot resume the run" "$HW" train $(base) "$MOH" \
    "model.moh={shared_heads: 2, top_k: 1}" "$S2" train.steps=8 run.dir="$T/one"
err_has "does not match"

# config errors
expect_exit 2 "shared + top_k above n_heads" "$HW" train $(base) model.attention.kind=moh \
    "model.moh={shared_heads: 3, top_k: 2}"
err_has "model.moh"
expect_exit 2 "S2 block not a power of two" "$HW" train $(base) "model.sparsity={kind: s2, block: 24}"
err_has "model.sparsity.block: 24 is not a power of two"
expect_exit 2 "S2 chunks not whole blocks under context 4" $MPIRUN -np 4 "$HW" train $(base) \
    "model.sparsity={kind: s2, block: 32}" dist.context=4
err_has "not a multiple of the S2 block 32"
expect_exit 2 "unknown per-layer kind" "$HW" train $(base) "model.attention.layers=[mha, moe]"
err_has "expected mha or moh"
finish
