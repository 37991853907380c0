#!/bin/sh
# tests/cli_memory.sh -- Titans memory layers through the binary (docs/titans.md): a model with a
# MAL layer followed by a MAG layer over S2 sliding-window attention (with 4 persistent tokens
# every window sees), and a memory-only layer,
# trains; the surprise clamp passes norms below it and keeps the grids on one rank's losses for
# 30 steps; data x heads x context grids of 2 and 4 ranks give the losses and gradient norms of
# one rank (heads 2: the two memory heads are split over the head ranks; heads 4: replicated;
# context: the memory state is handed along the zig-zag chunks);
# the checkpoint resumes exactly, samples (the memory keeps memorising token by token) and
# evaluates; a MAC (memory as context) + MAG model passes the same grid, resume, sample and eval
# checks; bad memory settings (unknown kind, zig-zag chunks, chunk/TTT batch, MAC segment, MAC
# with MoH) are config errors with file:line:col.
. tests/lib.sh
D=$T/data
prepare_tiny "$D"
base() {
    echo configs/tiny.yaml data.train="$D/train.h5" data.val="$D/val.h5" model.n_kv_heads=4 \
        model.max_seq=128 train.seq_len=128 train.steps=4 run.ckpt_every=2 train.threads=1 \
        train.val_every=0
}
MEM="model.memory={layers: [mal, mag], heads: 2, chunk: 4, ttt_batch: 16, conv: 2}"
SWA="model.sparsity={kind: s2, block: 16, local_blocks: 2, vert_stride: 1000, head_offset: 1}"
expect_exit 0 "MAL + MAG (S2 sliding window), one rank" "$HW" train $(base) "$MEM" "$SWA" \
    run.dir="$T/one"
metric_lines "$T/one/metrics.jsonl" >"$T/m1"
ok "  checkpoint holds the memory tensors" sh -c "'$HW' ckpt verify '$T/one/ckpt_00000004.h5' |
    grep -q 'blocks.1.mem.w0'"
ok "  and the MAG layer's persistent tokens" sh -c "'$HW' ckpt verify \
    '$T/one/ckpt_00000004.h5' | grep -q 'blocks.1.mem.persistent'"
expect_exit 0 "the same model without memory" "$HW" train $(base) "$SWA" run.dir="$T/none"
metric_lines "$T/none/metrics.jsonl" >"$T/m0"
ok "  the memory changes the losses" sh -c "! cmp -s '$T/m1' '$T/m0'"
for np_grid in "2 2 1 1 ring" "2 1 2 1 ring" "4 2 2 1 ring" "4 1 4 1 ring" "2 1 1 2 ring" \
    "4 1 1 4 ring" "4 1 2 2 ring" "4 2 1 2 ulysses"; do
    set -- $np_grid
    np=$1 dp=$2 hp=$3 cp=$4 mode=$5
    dir="$T/g$dp$hp$cp$mode"
    expect_exit 0 "np $np: data $dp x heads $hp x context $cp ($mode)" $MPIRUN -np "$np" \
        "$HW" train $(base) "$MEM" "$SWA" dist.data="$dp" dist.heads="$hp" dist.context="$cp" \
        dist.context_mode="$mode" run.ckpt_every=0 run.dir="$dir"
    metric_lines "$dir/metrics.jsonl" >"$T/mg"
    ok "  same losses and grad norms as one rank (rel 1e-5)" close "$T/m1" "$T/mg" 1e-5
done
# the head-split memory tensors are saved whole: heads 2 stops at step 2, one rank continues
HW_STOP_AFTER_STEP=2 expect_exit 4 "heads 2 (memory heads split), preempted after step 2" \
    $MPIRUN -np 2 -x HW_STOP_AFTER_STEP "$HW" train $(base) "$MEM" "$SWA" dist.heads=2 \
    run.dir="$T/hs"
unset HW_STOP_AFTER_STEP
expect_exit 0 "  resume on one rank to step 4" "$HW" train $(base) "$MEM" "$SWA" run.dir="$T/hs"
metric_lines "$T/hs/metrics.jsonl" >"$T/mh"
ok "  losses continue the one-rank run (rel 1e-5)" close "$T/m1" "$T/mh" 1e-5

# the surprise clamp (max_grad_norm) keeps norms at or below it unchanged: a threshold above
# every norm gives the unclamped run bit for bit; an active one (0.01) keeps every grid and 2
# threads on the one-rank losses for 30 steps (the reference's soft-clamp rescaled every norm and
# drifted after about 10)
CLAMP="model.memory={layers: [mal, mag, memory], heads: 2, chunk: 4, ttt_batch: 16, conv: 2"
long() { echo $(base) model.n_layers=3 train.steps=30 run.ckpt_every=0; }
expect_exit 0 "MAL + MAG + memory-only, no clamp, 30 steps" "$HW" train $(long) "$CLAMP}" \
    run.dir="$T/c0"
expect_exit 0 "  clamp 1e9 (above every norm)" "$HW" train $(long) "$CLAMP, max_grad_norm: 1e9}" \
    run.dir="$T/c9"
metric_lines "$T/c0/metrics.jsonl" >"$T/mc0"
metric_lines "$T/c9/metrics.jsonl" >"$T/mc9"
ok "  the same losses and grad norms bit for bit" cmp -s "$T/mc0" "$T/mc9"
expect_exit 0 "  clamp 0.01 (active), one rank" "$HW" train $(long) \
    "$CLAMP, max_grad_norm: 0.01}" run.dir="$T/ca"
metric_lines "$T/ca/metrics.jsonl" >"$T/mca"
ok "  the active clamp changes the grad norms" sh -c "! cmp -s '$T/mc0' '$T/mca'"
expect_exit 0 "  clamp 0.01, 2 threads" "$HW" train $(long) "$CLAMP, max_grad_norm: 0.01}" \
    train.threads=2 run.dir="$T/ct"
metric_lines "$T/ct/metrics.jsonl" >"$T/mct"
ok "  2 threads: the one-thread losses over 30 steps (rel 1e-5)" close "$T/mca" "$T/mct" 1e-5
for np_grid in "2 1 1 2" "4 2 2 1"; do
    set -- $np_grid
    np=$1 dp=$2 hp=$3 cp=$4
    expect_exit 0 "  clamp 0.01, data $dp x heads $hp x context $cp" $MPIRUN -np "$np" "$HW" train \
        $(long) "$CLAMP, max_grad_norm: 0.01}" dist.data="$dp" dist.heads="$hp" \
        dist.context="$cp" run.dir="$T/cg$np"
    metric_lines "$T/cg$np/metrics.jsonl" >"$T/mcg"
    ok "  the one-rank losses over 30 steps (rel 1e-5)" close "$T/mca" "$T/mcg" 1e-5
done

# exact resume: stop at 2 and continue to 4
HW_STOP_AFTER_STEP=2 expect_exit 4 "preempted after step 2" "$HW" train $(base) "$MEM" "$SWA" \
    run.dir="$T/rs"
unset HW_STOP_AFTER_STEP
expect_exit 0 "resume to step 4" "$HW" train $(base) "$MEM" "$SWA" run.dir="$T/rs"
metric_lines "$T/rs/metrics.jsonl" >"$T/mr"
ok "  resumed losses equal the uninterrupted run" cmp -s "$T/m1" "$T/mr"
expect_exit 2 "other memory settings cannot resume the run" "$HW" train $(base) \
    "model.memory={layers: [mal, mag], heads: 2, chunk: 2, ttt_batch: 16, conv: 2}" "$SWA" \
    train.steps=6 run.dir="$T/one"
err_has "does not match"

# a memory-only layer (the memory replaces attention) next to a MAG layer
expect_exit 0 "memory-only + MAG layers" "$HW" train $(base) \
    "model.memory={layers: [memory, mag], depth: 1, chunk: 2, max_grad_norm: 1.0}" \
    run.dir="$T/lmm"
ok "  loss is finite" sh -c "! grep -qi nan '$T/lmm/metrics.jsonl'"

# inference keeps memorising
expect_exit 0 "sample from the MAL + MAG checkpoint" "$HW" sample "$T/one" --prompt "abc" \
    --tokens 40 --seed 1
err_has "KV cache"
expect_exit 0 "eval perplexity of the memory checkpoint" "$HW" eval --ckpt "$T/one" \
    --tasks perplexity --perplexity-data "$D/val.h5" --output "$T/ev" --limit 8

# MAC (memory as context) next to a MAG layer over the sliding window: segments of 16 with 4
# persistent tokens; every grid gives the one-rank losses (context: the state, and the conv
# histories of n1 and y, are handed along the zig-zag chunks; heads: attention and memory heads
# split)
MAC="model.memory={layers: [mac, mag], heads: 2, chunk: 4, ttt_batch: 16, conv: 2, segment: 16, persistent: 4}"
expect_exit 0 "MAC + MAG, one rank" "$HW" train $(base) "$MAC" "$SWA" run.dir="$T/mac"
metric_lines "$T/mac/metrics.jsonl" >"$T/mc1"
ok "  checkpoint holds the persistent tokens" sh -c "'$HW' ckpt verify '$T/mac/ckpt_00000004.h5' |
    grep -q 'blocks.0.mem.persistent'"
ok "  MAC changes the losses" sh -c "! cmp -s '$T/mc1' '$T/m0'"
for np_grid in "2 2 1 1 ring" "2 1 2 1 ring" "2 1 1 2 ring" "4 1 1 4 ring" "4 1 2 2 ring" \
    "4 2 1 2 ulysses"; do
    set -- $np_grid
    np=$1 dp=$2 hp=$3 cp=$4 mode=$5
    dir="$T/mg$dp$hp$cp$mode"
    expect_exit 0 "MAC np $np: data $dp x heads $hp x context $cp ($mode)" $MPIRUN -np "$np" \
        "$HW" train $(base) "$MAC" "$SWA" dist.data="$dp" dist.heads="$hp" dist.context="$cp" \
        dist.context_mode="$mode" run.ckpt_every=0 run.dir="$dir"
    metric_lines "$dir/metrics.jsonl" >"$T/mg"
    ok "  same losses and grad norms as one rank (rel 1e-5)" close "$T/mc1" "$T/mg" 1e-5
done
HW_STOP_AFTER_STEP=2 expect_exit 4 "MAC preempted after step 2" "$HW" train $(base) "$MAC" \
    "$SWA" run.dir="$T/macr"
unset HW_STOP_AFTER_STEP
expect_exit 0 "  resume to step 4" "$HW" train $(base) "$MAC" "$SWA" run.dir="$T/macr"
metric_lines "$T/macr/metrics.jsonl" >"$T/mcr"
ok "  resumed losses equal the uninterrupted run" cmp -s "$T/mc1" "$T/mcr"
expect_exit 0 "sample from the MAC checkpoint" "$HW" sample "$T/mac" --prompt "abc" --tokens 40 \
    --seed 1
expect_exit 0 "eval perplexity of the MAC checkpoint" "$HW" eval --ckpt "$T/mac" \
    --tasks perplexity --perplexity-data "$D/val.h5" --output "$T/evm" --limit 8

# the shipped Titans config is valid, also under context 4
expect_exit 0 "configs/titans-shakespeare.yaml is valid" "$HW" config show \
    configs/titans-shakespeare.yaml dist.context=4

# config errors
expect_exit 2 "unknown memory kind" "$HW" train $(base) "model.memory.layers=[mal, mac2]"
err_has "expected none, mal, mag, mac or memory"
expect_exit 2 "MAC segment not whole TTT batches" "$HW" train $(base) \
    "model.memory={layers: [mac], chunk: 4, ttt_batch: 16, segment: 24}"
err_has "mac segment 24 is not a multiple of ttt_batch 16"
expect_exit 2 "memory layers with packed SFT conversations" "$HW" train $(base) "$MEM" \
    train.task=sft
err_has "would carry one packed conversation into the next; set sft.pack: false"
expect_exit 2 "MAC layer with MoH attention" "$HW" train $(base) "model.memory.layers=[mac]" \
    model.attention.kind=moh
err_has "is mac (its attention is the segment attention) and moh"
expect_exit 2 "MAC: zig-zag chunks not whole segments" $MPIRUN -np 2 "$HW" train $(base) \
    "model.memory={layers: [mac], chunk: 4, ttt_batch: 16, segment: 64}" dist.context=2
err_has "need zig-zag chunks of 32 tokens to be a multiple of model.memory.segment 64"
expect_exit 2 "zig-zag chunks not whole TTT batches" $MPIRUN -np 4 "$HW" train $(base) \
    "model.memory={layers: [mag], chunk: 4, ttt_batch: 32}" dist.context=4
err_has "need zig-zag chunks of 16 tokens to be a multiple of a nonzero model.memory.ttt_batch"
printf 'base: %s\nmodel:\n  memory:\n    layers: [mag]\n    chunk: 4\n    ttt_batch: 6\n' \
    "$PWD/configs/tiny.yaml" >"$T/bad.yaml"
expect_exit 2 "TTT batch not a multiple of the chunk" "$HW" train "$T/bad.yaml"
err_has "bad.yaml:6:16: error: model.memory.ttt_batch: ttt_batch 6 is not a multiple of chunk 4"
finish
