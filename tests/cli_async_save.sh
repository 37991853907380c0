#!/bin/sh
# tests/cli_async_save.sh -- checkpoints written in the background (run.async_save): the files
# equal a synchronous save's byte for byte (one rank and data 2 x heads 2; HW_ASYNC_SAVE=1
# switches the mode without changing the stored config); training steps go on while a save is in
# flight (a test hook stalls the write 2 s: later steps are logged before it completes); a stop
# request waits for the save in flight, then writes the final one; the config key works and a
# resumed run continues exactly. (kill -9 during background saves: tests/cli_faults.sh.)
. tests/lib.sh
D=$T/data
prepare_tiny "$D"
mkdir -p "$T/sync" "$T/async" "$T/sync4" "$T/async4"
set -- "$(pwd)/configs/tiny.yaml" data.train="$D/train.h5" data.val="$D/val.h5" train.threads=1 \
    train.steps=6 run.ckpt_every=2 run.keep=5 run.dir=r
HWA=$(cd "$(dirname "$HW")" && pwd)/$(basename "$HW")
same_files() { # DIR_A DIR_B: every checkpoint of A equals B's, and there are 3
    n=0
    for f in "$1"/r/ckpt_*.h5; do
        cmp -s "$f" "$2/r/$(basename "$f")" || return 1
        n=$((n + 1))
    done
    [ $n = 3 ]
}
(cd "$T/sync" && expect_exit 0 "one rank, synchronous saves" "$HWA" train "$@")
(cd "$T/async" && HW_ASYNC_SAVE=1 expect_exit 0 "one rank, background saves" "$HWA" train "$@")
ok "  steps 2 and 4 were written in the background" \
    test "$(grep -c 'written in .* s in the background' "$T/out")" = 2
ok "  the files equal the synchronous ones byte for byte" same_files "$T/sync" "$T/async"
(cd "$T/sync4" && expect_exit 0 "data 2 x heads 2, synchronous" $MPIRUN -np 4 "$HWA" train "$@" \
    dist.heads=2)
(cd "$T/async4" && HW_ASYNC_SAVE=1 expect_exit 0 "data 2 x heads 2, background" $MPIRUN -np 4 \
    -x HW_ASYNC_SAVE "$HWA" train "$@" dist.heads=2)
ok "  byte for byte" same_files "$T/sync4" "$T/async4"
metric_lines "$T/sync/r/metrics.jsonl" >"$T/m1"
metric_lines "$T/async4/r/metrics.jsonl" >"$T/m4"
ok "  the losses of one rank" close "$T/m1" "$T/m4" 1e-5
ok "  metrics carry ckpt_write_s and ckpt_bytes" grep -q '"ckpt_write_s":[0-9.]*,"ckpt_bytes":[0-9]*' \
    "$T/async4/r/metrics.jsonl"

# steps go on while a save is in flight
set -- configs/tiny.yaml data.train="$D/train.h5" data.val="$D/val.h5" train.threads=1 \
    train.log_every=1 run.async_save=true run.keep=10
verifies() { "$HW" ckpt verify "$1" >"$T/v.out" 2>&1 || { tail -n 2 "$T/v.out"; return 1; }; }
HW_FAULT_STALL_SAVE=2 expect_exit 0 "a 2-s save at step 5 (run.async_save: true)" "$HW" train \
    "$@" train.steps=20 run.ckpt_every=5 run.dir="$T/st"
c5=$(grep -n "ckpt_00000005.h5 (written in" "$T/out" | cut -d: -f1)
s9=$(grep -n "^step      9/" "$T/out" | cut -d: -f1)
ok "  step 9 was logged before checkpoint 5 was written (lines ${s9:-?} < ${c5:-?})" \
    test -n "$c5" -a -n "$s9" -a "${s9:-0}" -lt "${c5:-0}"
ok "  it took 2 s or more" grep -qE "ckpt_00000005.h5 \(written in ([2-9]|[1-9][0-9])\.[0-9]+ s" "$T/out"
for s in 5 10 15 20; do
    ok "  checkpoint $s verifies" verifies "$T/st/$(printf 'ckpt_%08d.h5' $s)"
done

# a stop request at step 7 waits for the save of step 5, then saves step 7
HW_FAULT_STALL_SAVE=2 HW_STOP_AFTER_STEP=7 expect_exit 4 "a stop at 7 while 5 is written" \
    "$HW" train "$@" train.steps=20 run.ckpt_every=5 run.dir="$T/sig"
c5=$(grep -n "ckpt_00000005.h5 (written in" "$T/out" | cut -d: -f1)
c7=$(grep -n "checkpoint: $T/sig/ckpt_00000007.h5" "$T/out" | head -n 1 | cut -d: -f1)
ok "  save 5 completed before save 7 (lines ${c5:-?} < ${c7:-?})" \
    test -n "$c5" -a -n "$c7" -a "${c5:-0}" -lt "${c7:-0}"
ok "  latest names step 7" grep -qx "ckpt_00000007.h5" "$T/sig/latest"
expect_exit 0 "  resumes to step 20" "$HW" train "$@" train.steps=20 run.ckpt_every=5 \
    run.dir="$T/sig"
ok "  resumed at step 7" grep -q "resumed from $T/sig/ckpt_00000007.h5 at step 7" "$T/out"
expect_exit 0 "the same 20 steps uninterrupted, synchronous saves" "$HW" train "$@" \
    train.steps=20 run.ckpt_every=5 run.async_save=false run.dir="$T/u"
metric_lines "$T/u/metrics.jsonl" >"$T/mu"
metric_lines "$T/sig/metrics.jsonl" >"$T/ms"
ok "  the stopped and resumed run logged the same losses exactly" cmp -s "$T/mu" "$T/ms"
finish
