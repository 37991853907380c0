#!/bin/sh
# tests/cli_faults.sh -- fault injection: kill -9 at random points of a run that checkpoints
# every step (20 trials): the checkpoint named by `latest` always verifies and the run resumes;
# ENOSPC while writing a checkpoint on a small filesystem made for the test: a clear error and
# the older checkpoints intact. (A rank killed under mpirun: tests/cli_dist.sh.)
. tests/lib.sh
D=$T/data
prepare_tiny "$D"
set -- configs/tiny.yaml data.train="$D/train.h5" data.val="" model.d_model=64 train.steps=100000 \
    train.val_every=0 run.ckpt_every=1 run.keep=3 train.threads=1
R=$T/kill
bad=0
resumed=0
for i in $(seq 1 20); do
    "$HW" train "$@" run.dir="$R" >"$T/k.out" 2>&1 &
    pid=$!
    # a pseudo-random point 0.3 .. 1.5 s into the run (start-up, steps and checkpoint writes)
    sleep "$(awk -v i="$i" 'BEGIN { srand(1000 + i); printf "%.2f", 0.3 + 1.2 * rand() }')"
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    if [ -f "$R/latest" ]; then
        if ! "$HW" ckpt verify "$R/$(cat "$R/latest")" >/dev/null 2>"$T/v.err"; then
            bad=$((bad + 1))
            echo "trial $i: latest checkpoint $(cat "$R/latest") does not verify: $(cat "$T/v.err")"
        fi
        grep -q "resumed from" "$T/k.out" && resumed=$((resumed + 1))
    fi
done
echo "     20 kill -9 trials: $bad with a bad latest checkpoint; $resumed runs resumed from a killed run's checkpoint"
ok "after every kill -9 the latest checkpoint verifies" test $bad = 0
ok "killed runs resumed from their checkpoints" test $resumed -ge 5
n_tmp=$(ls "$R" | grep -c '\.tmp$' || true)
echo "     leftover .tmp files from killed writes: $n_tmp (never used, removed by the next save)"
expect_exit 0 "a clean run resumes after the kills" "$HW" train "$@" run.dir="$R" \
    train.steps=$(($(sed 's/ckpt_0*\([0-9]*\)\.h5/\1/' "$R/latest") + 2))
ok "  resumed from the newest complete checkpoint" grep -q "resumed from $R/" "$T/out"

# ENOSPC: a 4 MiB filesystem holds two checkpoints of this model (1.4 MB each), not three
S=$T/small
mkdir -p "$S"
if [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=4m tmpfs "$S" 2>"$T/m.err"; then
    trap 'umount "$S" 2>/dev/null; [ -n "$HW_KEEP" ] || rm -rf "$T"' EXIT
    expect_exit 1 "a full disk: refused before writing" "$HW" train "$@" train.steps=20 \
        run.keep=20 run.dir="$S/a"
    err_has "$S/a: not enough space for a checkpoint"
    err_has "No space left on device"
    ok "  the two older checkpoints verify" sh -c "'$HW' ckpt verify '$S/a/ckpt_00000001.h5' >/dev/null && '$HW' ckpt verify '$S/a/ckpt_00000002.h5' >/dev/null"
    ok "  latest names step 2" grep -q ckpt_00000002.h5 "$S/a/latest"
    rm -rf "$S/a"
    HW_FAULT_NO_SPACE_CHECK=1 expect_exit 1 "ENOSPC in the middle of writing a checkpoint" \
        "$HW" train "$@" train.steps=20 run.keep=20 run.dir="$S/b"
    unset HW_FAULT_NO_SPACE_CHECK
    err_has "$S/b/ckpt_00000003.h5.tmp"
    ok "  the older checkpoints verify" sh -c "'$HW' ckpt verify '$S/b/ckpt_00000001.h5' >/dev/null && '$HW' ckpt verify '$S/b/ckpt_00000002.h5' >/dev/null"
    ok "  latest names step 2" grep -q ckpt_00000002.h5 "$S/b/latest"
    ok "  no partial checkpoint under a final name" test ! -e "$S/b/ckpt_00000003.h5"
    umount "$S"
else
    echo "SKIP ENOSPC test: cannot mount a small tmpfs here ($(cat "$T/m.err" 2>/dev/null))"
fi
finish
