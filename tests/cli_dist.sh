#!/bin/sh
# tests/cli_dist.sh -- the rank grid under mpirun: every factorisation of 2 and 4 ranks over
# data x heads x context (both context modes) gives the losses and gradient norms of one rank
# (rel 1e-5); a checkpoint saved on 2x2x1 resumes on 1 rank and then on 1x1x4 with the losses
# of an uninterrupted run; SIGUSR1 to mpirun and SIGTERM to one rank checkpoint and exit 4; a
# killed rank ends the job quickly with the rank named; grid errors exit 2 before any collective.
. tests/lib.sh
if ! command -v mpirun >/dev/null; then
    echo "SKIP cli_dist: mpirun not installed (Debian openmpi-bin)"
    finish
    exit $?
fi
D=$T/data
prepare_tiny "$D"
set -- configs/tiny.yaml data.train="$D/train.h5" data.val="$D/val.h5" model.n_kv_heads=4 \
    train.steps=4 run.ckpt_every=0 train.threads=1
expect_exit 0 "one rank" "$HW" train "$@" run.dir="$T/one"
metric_lines "$T/one/metrics.jsonl" >"$T/m1"
for np_grid in "2 2 1 1 ring" "2 1 2 1 ring" "2 1 1 2 ring" "2 1 1 2 ulysses" \
    "4 4 1 1 ring" "4 1 4 1 ring" "4 1 1 4 ring" "4 1 1 4 ulysses" "4 2 2 1 ring" \
    "4 2 1 2 ring" "4 2 1 2 ulysses" "4 1 2 2 ring" "4 1 2 2 ulysses"; do
    set -- $np_grid
    np=$1 dp=$2 hp=$3 cp=$4 mode=$5
    set -- configs/tiny.yaml data.train="$D/train.h5" data.val="$D/val.h5" model.n_kv_heads=4 \
        train.steps=4 run.ckpt_every=0 train.threads=1
    dir="$T/g$dp$hp$cp$mode"
    expect_exit 0 "np $np: data $dp x heads $hp x context $cp ($mode)" \
        $MPIRUN -np "$np" "$HW" train "$@" dist.data="$dp" dist.heads="$hp" dist.context="$cp" \
        dist.context_mode="$mode" run.dir="$dir"
    metric_lines "$dir/metrics.jsonl" >"$T/mg"
    ok "  same losses and grad norms as one rank (rel 1e-5)" close "$T/m1" "$T/mg" 1e-5
done
# ZeRO-1: sharded moments, reduce-scatter + all-gather; same numbers, less optimizer memory
expect_exit 0 "ZeRO-1, data 2" $MPIRUN -np 2 "$HW" train "$@" dist.data=2 dist.zero=true \
    run.dir="$T/z2"
metric_lines "$T/z2/metrics.jsonl" >"$T/mz"
ok "  matches one rank" close "$T/m1" "$T/mz" 1e-5
ok "  moments sharded: half the optimizer floats" grep -q "ZeRO-1: moments sharded" "$T/out"
ok "  parameter all-gather accounted" grep -q '"zero_ag"' "$T/z2/metrics.jsonl"
expect_exit 0 "ZeRO-1, data 2 x context 2, 16 KiB buckets" $MPIRUN -np 4 "$HW" train "$@" \
    dist.data=2 dist.context=2 dist.zero=true dist.bucket_kb=16 run.dir="$T/z4"
metric_lines "$T/z4/metrics.jsonl" >"$T/mz4"
ok "  matches one rank" close "$T/m1" "$T/mz4" 1e-5
expect_exit 0 "ZeRO-1 checkpoint resumes on one rank" "$HW" train "$@" train.steps=6 \
    run.dir="$T/z4"
ok "  resumed at step 4" grep -q "resumed from $T/z4/ckpt_00000004.h5 at step 4" "$T/out"

# grouped-query attention split over heads
set -- configs/tiny.yaml data.train="$D/train.h5" data.val="$D/val.h5" train.steps=3 \
    run.ckpt_every=0 train.threads=1
expect_exit 0 "GQA, one rank" "$HW" train "$@" run.dir="$T/gqa1"
expect_exit 0 "GQA, heads 2 x context 2 (ring)" $MPIRUN -np 4 "$HW" train "$@" dist.heads=2 \
    dist.context=2 run.dir="$T/gqa4"
metric_lines "$T/gqa1/metrics.jsonl" >"$T/q1"
metric_lines "$T/gqa4/metrics.jsonl" >"$T/q4"
ok "  GQA grid matches one rank" close "$T/q1" "$T/q4" 1e-5

# resharded resume: 2x2x1 -> 1 rank -> 1x1x4 continues the uninterrupted run
set -- configs/tiny.yaml data.train="$D/train.h5" data.val="$D/val.h5" model.n_kv_heads=4 \
    train.steps=12 run.ckpt_every=4 train.threads=1
expect_exit 0 "uninterrupted 12 steps" "$HW" train "$@" run.dir="$T/u"
HW_STOP_AFTER_STEP=4 expect_exit 4 "data 2 x heads 2, preempted at 4" $MPIRUN -np 4 \
    -x HW_STOP_AFTER_STEP "$HW" train "$@" dist.data=2 dist.heads=2 run.dir="$T/rs"
HW_STOP_AFTER_STEP=8 expect_exit 4 "resume on 1 rank, preempted at 8" "$HW" train "$@" \
    run.dir="$T/rs"
unset HW_STOP_AFTER_STEP
ok "  resumed from the 4-rank checkpoint" grep -q "resumed from $T/rs/ckpt_00000004.h5" "$T/out"
expect_exit 0 "resume on context 4 to step 12" $MPIRUN -np 4 "$HW" train "$@" dist.context=4 \
    run.dir="$T/rs"
metric_lines "$T/u/metrics.jsonl" >"$T/mu"
metric_lines "$T/rs/metrics.jsonl" >"$T/mr"
ok "  losses continue the uninterrupted run (rel 1e-5)" close "$T/mu" "$T/mr" 1e-5
expect_exit 0 "ckpt verify (written by 4 ranks)" "$HW" ckpt verify "$T/rs/ckpt_00000012.h5"
# same-grid resume is exact
HW_STOP_AFTER_STEP=6 expect_exit 4 "heads 2 x context 2, preempted at 6" $MPIRUN -np 4 \
    -x HW_STOP_AFTER_STEP "$HW" train "$@" dist.heads=2 dist.context=2 run.dir="$T/sg"
unset HW_STOP_AFTER_STEP
expect_exit 0 "  resume on the same grid" $MPIRUN -np 4 "$HW" train "$@" dist.heads=2 \
    dist.context=2 run.dir="$T/sg"
expect_exit 0 "  the same grid uninterrupted" $MPIRUN -np 4 "$HW" train "$@" dist.heads=2 \
    dist.context=2 run.dir="$T/sg2"
metric_lines "$T/sg/metrics.jsonl" >"$T/ms"
metric_lines "$T/sg2/metrics.jsonl" >"$T/ms2"
ok "  same-grid resume is bit-identical" cmp -s "$T/ms" "$T/ms2"

# signals: SIGUSR1 to mpirun is forwarded; SIGTERM to one rank stops them all
long_run() { # RUN_DIR: a long 2-rank job in the background; its mpirun pid in $mp
    $MPIRUN -np 2 "$HW" train configs/tiny.yaml data.train="$D/train.h5" data.val="" model.n_kv_heads=4 \
        train.steps=100000 train.val_every=0 run.ckpt_every=0 train.threads=1 dist.data=2 \
        run.dir="$1" >"$1.out" 2>&1 &
    mp=$!
}
sig_test() { # NAME TARGET(mpirun|rank)
    dir="$T/$1"
    long_run "$dir"
    i=0
    while [ ! -s "$dir/metrics.jsonl" ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
    if [ "$2" = mpirun ]; then kill -USR1 $mp; else
        kill -TERM "$(pgrep -f "run.dir=$dir" | grep -v "^$mp\$" | tail -n 1)"
    fi
    wait $mp
    echo $? >"$T/$1.rc"
}
sig_test usr1 mpirun
ok "SIGUSR1 to mpirun: exit 4" test "$(cat "$T/usr1.rc")" = 4
ok "  a valid checkpoint" "$HW" ckpt verify "$T/usr1/$(cat "$T/usr1/latest" 2>/dev/null)"
sig_test term rank
ok "SIGTERM to one rank: exit 4" test "$(cat "$T/term.rc")" = 4
ok "  a valid checkpoint" "$HW" ckpt verify "$T/term/$(cat "$T/term/latest" 2>/dev/null)"

# a killed rank ends the job within 30 s, naming the rank
dir="$T/kill"
long_run "$dir"
i=0
while [ ! -s "$dir/metrics.jsonl" ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
t0=$(date +%s)
kill -KILL "$(pgrep -f "run.dir=$dir" | grep -v "^$mp\$" | tail -n 1)"
i=0
while kill -0 $mp 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
ok "killed rank: the job ended within 30 s" sh -c "! kill -0 $mp 2>/dev/null"
kill -KILL $mp 2>/dev/null
wait $mp 2>/dev/null
echo "     (ended after $(($(date +%s) - t0)) s)"
ok "  the message names the rank" grep -qiE "rank [0-9]" "$dir.out"

# grid errors: one line on rank 0, exit 2, before any collective or file write
set -- configs/tiny.yaml data.train="$D/train.h5" data.val="" train.steps=4
expect_exit 2 "grid does not match the world" $MPIRUN -np 2 "$HW" train "$@" dist.data=4 \
    run.dir="$T/e1"
err_has "<override 4>:1:11: error: dist: no grid fits the job's 2 ranks: heads 1 x context 1 leaves data 2, not a dist.data value"
ok "  one line" test "$(grep -c error "$T/err")" = 1
ok "  no run dir written" test ! -e "$T/e1"
expect_exit 2 "heads not divisible" $MPIRUN -np 4 "$HW" train "$@" dist.heads=4 run.dir="$T/e2"
err_has "error: dist.heads: 4 head-parallel ranks do not divide n_heads 4 and n_kv_heads 2"
expect_exit 2 "sequence not divisible" $MPIRUN -np 2 "$HW" train "$@" dist.context=2 \
    train.seq_len=30 run.dir="$T/e3"
err_has "<override 5>:1:15: error: train.seq_len: seq_len 30 is not divisible into 2 * 2 zig-zag chunks"
expect_exit 2 "checkpoint shapes disagree with the config" $MPIRUN -np 2 "$HW" train \
    configs/tiny.yaml data.train="$D/train.h5" data.val="$D/val.h5" model.n_kv_heads=4 train.steps=13 dist.data=2 \
    model.d_model=64 run.dir="$T/rs"
err_has "does not match the config's model"
finish
