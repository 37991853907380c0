#!/bin/sh
# tests/cli_recompute.sh -- train.recompute: block keeps only each block's input and mid-block
# residual and recomputes the norms and the MLP input side in the backward; attention keeps all
# but the attention layers' q/k/v projections (one buffer they share) and recomputes them. Every
# metric of both is bit-identical to recompute none (dense, MoH, Titans MAL/MAG/memory, MAC,
# DARE, GELU; data x heads, context 2 ring with the Titans chain and Ulysses under mpirun), and
# the step's peak backend memory (mem_peak_mib) falls by exactly the activations no longer kept:
# block (L-1) x (2 N C + 2 N + N Fin + N F) floats, attention (L-1) x N Dqkv floats. An unknown
# mode is a config error naming the choices.
. tests/lib.sh
D=$T/data
prepare_tiny "$D"
LM="configs/tiny.yaml data.train=$D/train.h5 data.val=$D/val.h5 model.n_kv_heads=2
    model.max_seq=64 train.seq_len=64 train.steps=4 train.val_every=2 train.val_batches=1
    run.ckpt_every=0 train.threads=1"
# every field but the timings, the communication block and the memory figure
strip() {
    sed -e 's/"tokens_per_s":[^,}]*,\{0,1\}//' -e 's/"mfu":[^,}]*,\{0,1\}//' \
        -e 's/"step_s":[^,}]*,\{0,1\}//' -e 's/"comm_s":[^,}]*,\{0,1\}//' \
        -e 's/"comm":{[^}]*\(}[^}]*\)*}},\{0,1\}//' -e 's/"mem_peak_mib":[^,}]*,\{0,1\}//' \
        -e 's/"ckpt_s":[^,}]*,\{0,1\}//' -e 's/"ckpt_bytes":[^,}]*,\{0,1\}//' -e 's/,}/}/' "$1"
}
# both NAME LAUNCH ARGS...: recompute none, attention and block; the same metrics, bit for bit
both() {
    name=$1 launch=$2
    shift 2
    expect_exit 0 "$name: recompute none" $launch "$HW" train $LM "$@" run.dir="$T/$name.n"
    strip "$T/$name.n/metrics.jsonl" >"$T/$name.n.m"
    for mode in attention block; do
        expect_exit 0 "$name: recompute $mode" $launch "$HW" train $LM "$@" \
            train.recompute=$mode run.dir="$T/$name.$mode"
        strip "$T/$name.$mode/metrics.jsonl" >"$T/$name.$mode.m"
        ok "  bit-identical losses, norms and validation ($(wc -l <"$T/$name.$mode.m") lines)" \
            sh -c "[ -s '$T/$name.$mode.m' ] && cmp -s '$T/$name.n.m' '$T/$name.$mode.m'"
    done
}
both dense ""
both moh "" model.attention.kind=moh "model.moh={shared_heads: 1, top_k: 2}"
both titans "" model.n_layers=3 \
    "model.memory={layers: [mal, mag, memory], heads: 2, chunk: 4, ttt_batch: 8, conv: 2}"
both mac "" \
    "model.memory={layers: [mac, mag], heads: 2, chunk: 4, ttt_batch: 8, conv: 2, segment: 16, persistent: 4}"
both dare_gelu "" model.embedding=dare model.mlp=gelu
if command -v mpirun >/dev/null; then
    both d2h2 "$MPIRUN -np 4" dist.data=2 dist.heads=2
    both c2_titans "$MPIRUN -np 2" dist.context=2 \
        "model.memory={layers: [mal, mag], heads: 2, chunk: 4, ttt_batch: 8, conv: 2}"
    both c2_ulysses "$MPIRUN -np 2" dist.context=2 dist.context_mode=ulysses
else
    echo "SKIP the grid cases: mpirun not installed"
fi

# memory: 6 blocks of d 64, d_ff 256 (SwiGLU: W_in 512 wide), 8 x 128 tokens
L=6 C=64 F=256 N=1024
M="configs/tiny.yaml data.train=$D/train.h5 data.val= model.d_model=$C model.d_ff=$F
    model.n_layers=$L model.max_seq=128 train.seq_len=128 train.micro_batch=8 train.steps=3
    run.ckpt_every=0 train.threads=1"
expect_exit 0 "memory: recompute none" "$HW" train $M run.dir="$T/mn"
expect_exit 0 "memory: recompute block" "$HW" train $M train.recompute=block run.dir="$T/mb"
peak() { sed -n '2s/.*"mem_peak_mib":\([0-9.]*\).*/\1/p' "$1/metrics.jsonl"; }
pn=$(peak "$T/mn") pb=$(peak "$T/mb")
want=$(awk -v L=$L -v C=$C -v F=$F -v N=$N \
    'BEGIN { printf "%.3f", (L - 1) * (2 * N * C + 2 * N + N * 2 * F + N * F) * 4 / 1048576 }')
ok "  peak $pn MiB -> $pb MiB: $want MiB of activations saved (within 0.05)" awk -v a="$pn" \
    -v b="$pb" -v w="$want" 'BEGIN { d = a - b - w; exit !(a > 0 && b > 0 && d < 0.05 && d > -0.05) }'
# attention: q|k|v of 4 query and 2 key/value heads of 16 (Dqkv 128) kept once instead of L times
expect_exit 0 "memory: recompute attention" "$HW" train $M train.recompute=attention \
    run.dir="$T/ma"
pa=$(peak "$T/ma")
want=$(awk -v L=$L -v N=$N 'BEGIN { printf "%.3f", (L - 1) * N * 128 * 4 / 1048576 }')
ok "  peak $pn MiB -> $pa MiB: $want MiB of q/k/v saved (within 0.05)" awk -v a="$pn" \
    -v b="$pa" -v w="$want" 'BEGIN { d = a - b - w; exit !(a > 0 && b > 0 && d < 0.05 && d > -0.05) }'

expect_exit 2 "an unknown train.recompute is refused" "$HW" train $LM train.recompute=selective \
    run.dir="$T/bad"
err_has "train.recompute: expected one of none|attention|block"
finish
