#!/bin/sh
# tests/cli_watchdog.sh -- no hung jobs: with dist.timeout_s set, a rank stopped with SIGSTOP in
# the middle of a 4-rank run (data 2 x heads 2) makes the job end with exit 5 within the
# timeout and a few seconds, and one line naming the collective, the step, the rank that did not
# answer and the ranks waiting in it; a checkpoint write that does not finish (a test hook
# stalls it) ends a one-rank job the same way, and `latest` still names the last complete
# checkpoint, which resumes.
. tests/lib.sh
D=$T/data
prepare_tiny "$D"
set -- configs/tiny.yaml data.train="$D/train.h5" data.val="$D/val.h5" train.threads=1 \
    dist.timeout_s=3


$MPIRUN -np 4 "$HW" train "$@" train.steps=1000000 run.ckpt_every=0 dist.data=2 dist.heads=2 \
    run.dir="$T/s" >"$T/s.out" 2>&1 &
mp=$!
w=0 # wait (at most 60 s) until the job trains
while [ $w -lt 600 ] && ! grep -q '"step":20,' "$T/s/metrics.jsonl" 2>/dev/null; do
    sleep 0.1
    w=$((w + 1))
done
victim=$(rank_pid_of "headwise train.*run.dir=$T/s\$" 3)
ok "the 4-rank job trains (rank 3 is pid ${victim:-?})" test -n "$victim"
t0=$(date +%s)
[ -n "$victim" ] && kill -STOP "$victim"
w=0
while [ $w -lt 300 ] && kill -0 $mp 2>/dev/null; do
    sleep 0.1
    w=$((w + 1))
done
took=$(($(date +%s) - t0))
ok "the job ended within dist.timeout_s + 10 s (took $took s)" sh -c "! kill -0 $mp 2>/dev/null"
wait $mp
rc=$?
[ -n "$victim" ] && kill -KILL "$victim" 2>/dev/null
pkill -KILL -f "run.dir=$T/s\$" 2>/dev/null
ok "exit 5 (watchdog), got $rc" test "$rc" = 5
line=$(grep "watchdog:" "$T/s.out" | head -n 1)
echo "     $line"
ok "  the line names a collective, the step and the timeout" sh -c "echo '$line' | grep -qE 'watchdog: [a-z_]+.* \(#[0-9]+, step [0-9]+\) has not finished after [0-9.]+ s \(dist.timeout_s 3\)'"
ok "  rank 3 did not answer" sh -c "echo '$line' | grep -q 'did not answer (stopped, dead or unreachable): 3;'"
ok "  the reporting rank is not rank 3" sh -c "echo '$line' | grep -qv '^rank 3:'"

# a checkpoint write that never finishes: one rank, exit 5, latest untouched
expect_exit 0 "4 steps with a checkpoint" "$HW" train "$@" train.steps=4 run.ckpt_every=4 \
    run.dir="$T/c"
HW_FAULT_STALL_SAVE=60 expect_exit 5 "a stalled save at step 8 (watchdog 3 s)" "$HW" train "$@" \
    train.steps=8 run.ckpt_every=4 run.dir="$T/c"
err_has "watchdog: checkpoint write (#"
err_has "has not finished after"
ok "  latest still names step 4" grep -qx "ckpt_00000004.h5" "$T/c/latest"
expect_exit 0 "  the run resumes from it" "$HW" train "$@" train.steps=8 run.ckpt_every=4 \
    run.dir="$T/c"
ok "  resumed at step 4" grep -q "resumed from $T/c/ckpt_00000004.h5 at step 4" "$T/out"
finish
