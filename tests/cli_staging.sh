#!/bin/sh
# tests/cli_staging.sh -- the collectives' host staging (dist/stage.c: backend buffer -> pinned
# host copy -> the MPI rings -> backend buffer, the path every multi-rank GPU job takes) run on
# the CPU backend with HW_STAGE_COLLECTIVES=1: data x heads with and without ZeRO-1, the context
# ring with the Titans chain, Ulysses with MoH + S2, SFT and the rec model give bit-identical
# metrics to the unstaged runs, and the bytes staged per step are the textbook count (every
# staged buffer crosses twice: down before the ring, up after it). dist.transport: nccl is refused
# on the cpu backend, and an unknown transport is a config error.
. tests/lib.sh
if ! command -v mpirun >/dev/null; then
    echo "SKIP cli_staging: mpirun not installed (Debian openmpi-bin)"
    finish
    exit $?
fi
D=$T/data
prepare_tiny "$D"
# every field but the timings, the communication block, the staged bytes and the memory figure
# (malloc_usable_size varies by a few KiB with the heap's history)
strip() {
    sed -e 's/"tokens_per_s":[^,}]*,\{0,1\}//' -e 's/"mfu":[^,}]*,\{0,1\}//' \
        -e 's/"step_s":[^,}]*,\{0,1\}//' -e 's/"comm_s":[^,}]*,\{0,1\}//' \
        -e 's/"comm":{[^}]*\(}[^}]*\)*}},\{0,1\}//' -e 's/"staged_bytes":[^,}]*,\{0,1\}//' \
        -e 's/"ckpt_s":[^,}]*,\{0,1\}//' -e 's/"train_s":[^,}]*,\{0,1\}//' \
        -e 's/"mem_peak_mib":[^,}]*,\{0,1\}//' \
        -e 's/"samples_per_s":[^,}]*,\{0,1\}//' -e 's/,}/}/' "$1"
}
# both NAME NP ARGS...: the run unstaged and staged; same metrics, bit for bit
both() {
    name=$1 np=$2
    shift 2
    expect_exit 0 "$name: unstaged" $MPIRUN -np "$np" "$HW" train "$@" run.dir="$T/$name.u"
    expect_exit 0 "$name: staged through host copies" $MPIRUN -np "$np" \
        -x HW_STAGE_COLLECTIVES=1 "$HW" train "$@" run.dir="$T/$name.s"
    strip "$T/$name.u/metrics.jsonl" >"$T/$name.u.m"
    strip "$T/$name.s/metrics.jsonl" >"$T/$name.s.m"
    ok "  bit-identical metrics ($(wc -l <"$T/$name.s.m") lines)" \
        sh -c "[ -s '$T/$name.s.m' ] && cmp -s '$T/$name.u.m' '$T/$name.s.m'"
    ok "  unstaged run reports no staging" sh -c "! grep -q staged_bytes '$T/$name.u/metrics.jsonl'"
}
# bytes_are NAME FACTOR KIND [FACTOR KIND]...: step 1's staged bytes = the sum of FACTOR x the
# bytes sent under KIND
bytes_are() {
    name=$1
    shift
    m=$(head -1 "$T/$name.s/metrics.jsonl")
    got=$(echo "$m" | sed -n 's/.*"staged_bytes":\([0-9.e+]*\).*/\1/p')
    want=0 what=""
    while [ $# -ge 2 ]; do
        b=$(echo "$m" | sed -n "s/.*\"$2\":{\"bytes\":\([0-9.e+]*\).*/\1/p")
        want=$(awk -v a="$want" -v b="${b:-0}" -v f="$1" 'BEGIN { printf "%.0f", a + f * b }')
        what="$what${what:+ + }$1 x $2 ${b:-0}"
        shift 2
    done
    ok "  staged ${got:-no} bytes = $what = $want" \
        sh -c "[ -n '$got' ] && [ \"\$(printf '%.0f' '$got')\" = '$want' ]"
}
LM="configs/tiny.yaml data.train=$D/train.h5 data.val=$D/val.h5 model.n_kv_heads=2
    model.max_seq=64 train.seq_len=64 train.steps=3 train.val_every=3 train.val_batches=1
    run.ckpt_every=0 train.threads=1"
both dense_d2h2 4 $LM dist.data=2 dist.heads=2
# 2 ranks a group: a ring sends n floats of each bucket/activation, the staging moves 2n
bytes_are dense_d2h2 2 dp_grad 2 hp_reduce
both dense_d2_zero 2 $LM dist.data=2 dist.zero=true
# reduce-scatter and all-gather each send half a bucket; both stage the whole bucket twice
bytes_are dense_d2_zero 4 dp_grad 4 zero_ag
both mem_c2ring 2 $LM model.n_layers=3 \
    "model.memory={layers: [mal, mag, memory], heads: 2, chunk: 4, ttt_batch: 8, conv: 2}" \
    dist.context=2 dist.context_mode=ring
both moh_s2_c2ulysses 2 $LM "model.attention.layers=[moh, mha]" \
    "model.moh={shared_heads: 1, top_k: 2}" \
    "model.sparsity={kind: s2, block: 16, local_blocks: 1, vert_stride: 2, dense_layers: [1]}" \
    dist.context=2 dist.context_mode=ulysses
# an all-to-all sends half its buffer (the other half stays) and stages all of it twice
bytes_are moh_s2_c2ulysses 4 cp_a2a 2 dp_grad
both rec_dare_np2 2 configs/rec-synth.yaml rec.synth_users=120 rec.synth_items=200 rec.max_len=12 \
    rec.top_k=4 rec.hidden1=16 rec.hidden2=8 rec.train_targets=2 train.micro_batch=40 \
    train.log_every=1 rec.epochs=1 model.embedding=dare dist.data=2

expect_exit 2 "dist.transport: nccl on the cpu backend" "$HW" train $LM dist.transport=nccl \
    run.dir="$T/nccl"
err_has "error: dist.transport: nccl runs on device buffers: it needs run.backend: cuda"
ok "  nothing written" test ! -e "$T/nccl/metrics.jsonl"
expect_exit 2 "dist.transport: tcp" "$HW" train $LM dist.transport=tcp run.dir="$T/tcp"
err_has "dist.transport: expected one of mpi|nccl"
finish
