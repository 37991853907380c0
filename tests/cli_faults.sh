#!/bin/sh
# tests/cli_faults.sh -- fault injection. kill -9 at points taken from the run's own progress
# (14 trials, then 20 with background saves; checkpoints every step): a trial waits until its
# run has saved 1..3 checkpoints past the one it resumed from (polling `latest`; every wait is
# bounded), then kills it after a short pseudo-random delay, so the kills land in steps and in
# checkpoint writes alike however loaded the machine is. After every kill the newest complete
# checkpoint verifies, `latest` names it (or lags exactly as docs/checkpoint.md allows), and the
# next run resumes from it. A clean run then resumes and leaves no temporary file of the killed
# writers. A file-size limit (ulimit -f) and ENOSPC (a small tmpfs; root only) while a checkpoint
# is written: one line that names the cause and the file, the older checkpoints intact. (A rank
# killed under mpirun: tests/cli_dist.sh.)
. tests/lib.sh
D=$T/data
prepare_tiny "$D"
set -- configs/tiny.yaml data.train="$D/train.h5" data.val="" model.d_model=64 train.steps=100000 \
    train.warmup=3 train.val_every=0 run.ckpt_every=1 run.keep=3 train.threads=1
R=$T/kill

now() { date +%s; }
# ckpt_00000012.h5 -> 12; nothing for any other name
step_of() { echo "$1" | sed -n 's/^ckpt_0*\([0-9][0-9]*\)\.h5$/\1/p'; }
# the step `latest` names, or -1
latest_step() {
    s=$(step_of "$(cat "$R/latest" 2>/dev/null)")
    echo "${s:--1}"
}
# the highest step among the complete checkpoint files, or -1
newest_step() {
    n=-1
    for f in "$R"/ckpt_*.h5; do
        s=$(step_of "$(basename "$f")")
        [ -n "$s" ] && [ -f "$f" ] && [ "$s" -gt "$n" ] && n=$s
    done
    echo "$n"
}
name_of() { printf 'ckpt_%08d.h5' "$1"; }

# kill_trials TRAIN_ARGS...: up to $N_TRIALS kill trials (none started after $SECS s) in $R, then
# the checks (labelled $LABEL)
kill_trials() {
t0=$(now)
t_end=$((t0 + SECS)) # the kill trials stop starting after this
trials=0 bad=0 lagged=0 wrong_resume=0 late=0 early=0
i=0
while [ $i -lt "$N_TRIALS" ] && [ "$(now)" -lt $t_end ]; do
    i=$((i + 1))
    before=$(newest_step) # the run must resume from this one
    target=$((before + 1 + i % 3))
    "$HW" train "$@" run.dir="$R" >"$T/k$i.out" 2>&1 &
    pid=$!
    deadline=$(($(now) + 120))
    while [ "$(latest_step)" -lt $target ] && kill -0 $pid 2>/dev/null && [ "$(now)" -lt $deadline ]; do
        sleep 0.05
    done
    if kill -0 $pid 2>/dev/null; then
        # 0..60 ms later: somewhere in the next step or checkpoint write
        sleep "$(awk -v i="$i" 'BEGIN { srand(1000 + i); printf "%.3f", 0.06 * rand() }')"
        kill -9 $pid 2>/dev/null
        wait $pid 2>/dev/null
        if [ "$(latest_step)" -lt $target ]; then
            late=$((late + 1))
            echo "trial $i: no checkpoint of step $target within 120 s; its output ends:"
            tail -3 "$T/k$i.out" | sed 's/^/     /'
        fi
    else
        wait $pid
        rc=$?
        early=$((early + 1))
        echo "trial $i: the run ended by itself (exit $rc) before step $target; its output ends:"
        tail -3 "$T/k$i.out" | sed 's/^/     /'
    fi
    trials=$i
    if [ "$before" -ge 0 ] && ! grep -qF "resumed from $R/$(name_of "$before") at step $before" "$T/k$i.out"; then
        wrong_resume=$((wrong_resume + 1))
        echo "trial $i: did not resume from the newest complete checkpoint, $(name_of "$before"):" \
            "$(grep 'resumed from' "$T/k$i.out")"
    fi
    ls=$(latest_step)
    ns=$(newest_step)
    if [ "$ls" != "$ns" ]; then
        # killed between the checkpoint's rename and latest's: a latest.tmp-* names the newest
        if cat "$R"/latest.tmp-* 2>/dev/null | grep -qx "$(name_of "$ns")"; then
            lagged=$((lagged + 1))
        else
            bad=$((bad + 1))
            echo "trial $i: latest names step $ls, the newest complete checkpoint is step $ns," \
                "and no latest.tmp-* names it"
        fi
    fi
    for s in $ns $ls; do
        if [ "$s" -ge 0 ] && ! "$HW" ckpt verify "$R/$(name_of "$s")" >/dev/null 2>"$T/v.err"; then
            bad=$((bad + 1))
            echo "trial $i: $(name_of "$s") does not verify: $(cat "$T/v.err")"
        fi
    done
done
n_tmp=$(ls "$R" | grep -c 'tmp' || true)
echo "     $LABEL: $trials kill -9 trials in $(($(now) - t0)) s; newest checkpoint: step $(newest_step);" \
    "$lagged killed between the two renames; $n_tmp temporary files left by killed writers"
ok "$LABEL: at least $((N_TRIALS / 2)) trials ran" test "$trials" -ge $((N_TRIALS / 2))
ok "$LABEL: every trial got past its target step, and was then killed" test $late = 0 -a $early = 0
ok "$LABEL: after every kill the newest checkpoint verifies, and latest names it (or lags as documented)" \
    test $bad = 0
ok "$LABEL: each run after a kill resumed from the newest complete checkpoint" test $wrong_resume = 0
ns=$(newest_step)
if [ "$ns" -lt 1 ]; then
    ok "$LABEL: the kill trials left a checkpoint to resume from" false
else
    # two steps past the newest checkpoint, stopped there as a preemption would (the schedule
    # is the trials' own, train.steps 100000): the losses of an uninterrupted run, bit for bit
    stop=$((ns + 2))
    HW_STOP_AFTER_STEP=$stop expect_exit 4 "$LABEL: a clean run resumes after the kills" \
        "$HW" train "$@" run.dir="$R"
    ok "  resumed from the newest complete checkpoint" \
        grep -qF "resumed from $R/$(name_of "$ns") at step $ns" "$T/out"
    ok "  latest names its last checkpoint" test "$(latest_step)" = $stop
    ok "  no checkpoint temporary file of the killed writers is left" \
        sh -c "! ls '$R' | grep -E '^(ckpt_[0-9]+\.h5\.tmp|latest\.tmp)'"
    HW_STOP_AFTER_STEP=$stop expect_exit 4 "  the same steps uninterrupted" "$HW" train "$@" \
        run.dir="$R-u"
    metric_lines "$R/metrics.jsonl" "$ns" >"$T/after"
    metric_lines "$R-u/metrics.jsonl" "$ns" >"$T/ref"
    ok "  steps $((ns + 1))..$stop: the uninterrupted losses exactly" cmp -s "$T/after" "$T/ref"
    ok "  (two of them)" test "$(wc -l <"$T/ref")" = 2
fi
}

N_TRIALS=14 SECS=600 LABEL="synchronous saves"
kill_trials "$@"
# the same with checkpoints written in the background (HW_ASYNC_SAVE: the stored config, and so
# the files, stay those of the synchronous runs)
R=$T/kill-async
export HW_ASYNC_SAVE=1
N_TRIALS=20 SECS=300 LABEL="background saves"
kill_trials "$@"
unset HW_ASYNC_SAVE
R=$T/kill

# a file-size limit (ulimit -f 12000: 6 MB in dash's 512-byte blocks, 12 MB in bash's; Open MPI
# needs about 4 MB to start, a checkpoint of this model is 18.7 MB) reached while checkpoint 3 is
# written: EFBIG is reported as such (SIGXFSZ does not kill the run)
F=$T/fsize
limited() { (ulimit -f 12000 && exec "$@"); }
expect_exit 0 "two checkpoints without a limit" "$HW" train "$@" model.d_model=256 \
    train.steps=2 train.warmup=1 run.keep=20 run.dir="$F"
expect_exit 1 "a file-size limit reached while writing a checkpoint" limited "$HW" train "$@" \
    model.d_model=256 train.steps=4 train.warmup=1 run.keep=20 run.dir="$F"
err_has "$F/ckpt_00000003.h5.tmp-"
err_has "file too large: the file-size limit (ulimit -f, RLIMIT_FSIZE) was reached"
ok "  the older checkpoints verify" sh -c "'$HW' ckpt verify '$F/ckpt_00000001.h5' >/dev/null && '$HW' ckpt verify '$F/ckpt_00000002.h5' >/dev/null"
ok "  latest names step 2" grep -qx ckpt_00000002.h5 "$F/latest"
ok "  no partial checkpoint, no temporary file" \
    sh -c "test ! -e '$F/ckpt_00000003.h5' && ! ls '$F' | grep -q tmp"

# ENOSPC: a 4 MiB filesystem holds two checkpoints of this model (1.4 MB each), not three
S=$T/small
mkdir -p "$S"
if [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=4m tmpfs "$S" 2>"$T/m.err"; then
    trap 'umount "$S" 2>/dev/null; [ -n "$HW_KEEP" ] || rm -rf "$T"' EXIT
    expect_exit 1 "a full disk: refused before writing" "$HW" train "$@" train.steps=20 \
        run.keep=20 run.dir="$S/a"
    err_has "$S/a: not enough space for a checkpoint"
    err_has "no space left on device"
    ok "  the two older checkpoints verify" sh -c "'$HW' ckpt verify '$S/a/ckpt_00000001.h5' >/dev/null && '$HW' ckpt verify '$S/a/ckpt_00000002.h5' >/dev/null"
    ok "  latest names step 2" grep -q ckpt_00000002.h5 "$S/a/latest"
    rm -rf "$S/a"
    HW_FAULT_NO_SPACE_CHECK=1 expect_exit 1 "ENOSPC in the middle of writing a checkpoint" \
        "$HW" train "$@" train.steps=20 run.keep=20 run.dir="$S/b"
    unset HW_FAULT_NO_SPACE_CHECK
    err_has "$S/b/ckpt_00000003.h5.tmp-"
    err_has "no space left on device"
    ok "  the older checkpoints verify" sh -c "'$HW' ckpt verify '$S/b/ckpt_00000001.h5' >/dev/null && '$HW' ckpt verify '$S/b/ckpt_00000002.h5' >/dev/null"
    ok "  latest names step 2" grep -q ckpt_00000002.h5 "$S/b/latest"
    ok "  no partial checkpoint under a final name, no temporary file" \
        sh -c "test ! -e '$S/b/ckpt_00000003.h5' && ! ls '$S/b' | grep -q tmp"
    umount "$S"
else
    echo "SKIP ENOSPC test: cannot mount a small tmpfs here ($(cat "$T/m.err" 2>/dev/null))"
fi
finish
