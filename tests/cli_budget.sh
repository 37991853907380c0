#!/bin/sh
# tests/cli_budget.sh -- the save budget: every checkpoint's seconds and bytes in metrics.jsonl
# (ckpt_s, ckpt_bytes on the line of the step it saved); with HW_SIGNAL_LEAD_S (exported by
# slurm/train.sbatch from the job's --signal lead) a warning when a step plus a save do not fit
# in it; and a signal during a long validation pass answered within one micro-batch (one rank
# with SIGUSR1, two ranks with HW_STOP_FILE): checkpoint, exit 4, and the resumed run continues;
# `headwise eval` answers a stop request between tasks and within one forward pass of a task,
# also when only one rank of two got the signal (exit 4, nothing written for the checkpoint under
# way).
. tests/lib.sh
D=$T/data
prepare_tiny "$D"
set -- configs/tiny.yaml data.train="$D/train.h5" data.val="$D/val.h5" train.threads=1

expect_exit 0 "6 steps, a checkpoint every 3" "$HW" train "$@" train.steps=6 run.ckpt_every=3 \
    run.dir="$T/m"
sz=$(stat -c %s "$T/m/ckpt_00000003.h5")
ok "step 3 logs ckpt_s and ckpt_bytes $sz" grep -qE "^\{\"step\":3,.*\"ckpt_s\":[0-9.e-]+,\"ckpt_bytes\":$sz\}" "$T/m/metrics.jsonl"
ok "step 6 too" grep -qE '^\{"step":6,.*"ckpt_s":[0-9.e-]+,"ckpt_bytes":[0-9]+\}' "$T/m/metrics.jsonl"
ok "no other step has them" test "$(grep -c ckpt_s "$T/m/metrics.jsonl")" = 2
ok "6 lines" test "$(wc -l <"$T/m/metrics.jsonl")" = 6

HW_SIGNAL_LEAD_S=0.001 expect_exit 0 "a lead of 1 ms" "$HW" train "$@" train.steps=3 \
    run.ckpt_every=3 run.dir="$T/l1"
ok "  the lead is named at start-up" grep -q "signal lead time 0.001 s" "$T/out"
err_has "warning: a step ("
err_has "more than the 0.001 s between Slurm's warning signal and the end of the job"
ok "  warned once" test "$(grep -c 'warning: a step' "$T/err")" = 1
HW_SIGNAL_LEAD_S=3600 expect_exit 0 "a lead of an hour" "$HW" train "$@" train.steps=3 \
    run.ckpt_every=3 run.dir="$T/l2"
ok "  no warning" sh -c "! grep -q 'warning: a step' '$T/err'"

# a signal during a validation pass of a million micro-batches
long() { # RUN_DIR LAUNCH...: start a run whose step-2 validation is long, in the background
    dir=$1
    shift
    "$@" "$HW" train configs/tiny.yaml data.train="$D/train.h5" data.val="$D/val.h5" \
        train.threads=1 train.steps=6 train.val_every=2 train.val_batches=1000000 \
        run.ckpt_every=0 run.dir="$dir" >"$dir.out" 2>&1 &
    bg=$!
    wait_line "$dir/metrics.jsonl" '"step":1,'
    sleep 1 # well inside the validation of step 2
}
wait_bg() { # the background run's exit code; SECONDS it took after the stop request
    w=0
    while [ $w -lt 200 ] && kill -0 $bg 2>/dev/null; do
        sleep 0.05
        w=$((w + 1))
    done
    kill -KILL $bg 2>/dev/null
    wait $bg
    rc=$?
    took=$(($(date +%s%N) / 1000000 - t0))
}
# usr1_rank1 PGREP_PATTERN: SIGUSR1 to rank 1 of the background mpirun job alone, then wait_bg;
# $victim is its pid (empty when not found)
usr1_rank1() {
    victim=$(rank_pid_of "$1" 1)
    t0=$(($(date +%s%N) / 1000000))
    [ -n "$victim" ] && kill -USR1 "$victim"
    wait_bg
}
long "$T/v1" env
t0=$(($(date +%s%N) / 1000000))
kill -USR1 $bg
wait_bg
ok "SIGUSR1 in validation: exit 4 (got $rc) within 3 s (took $took ms)" test "$rc" = 4 -a "$took" -lt 3000
ok "  the pass stopped early" grep -qE "validation stopped by signal 10 after [0-9]+ of 1000000 micro-batches" "$T/v1.out"
ok "  checkpoint at step 2" grep -qx "ckpt_00000002.h5" "$T/v1/latest"
ok "  no val_loss for the stopped pass" sh -c "grep '\"step\":2,' '$T/v1/metrics.jsonl' | grep -qv val_loss"
expect_exit 0 "  resumes to step 6" "$HW" train "$@" train.steps=6 train.val_every=2 \
    run.ckpt_every=0 run.dir="$T/v1"
ok "  resumed at step 2" grep -q "resumed from $T/v1/ckpt_00000002.h5 at step 2" "$T/out"

HW_STOP_FILE=$T/stop long "$T/v2" $MPIRUN -np 2 -x HW_STOP_FILE
t0=$(($(date +%s%N) / 1000000))
: >"$T/stop"
wait_bg
ok "stop file in a 2-rank validation: exit 4 (got $rc) within 6 s, mpirun's exit included (took $took ms)" test "$rc" = 4 -a "$took" -lt 6000
ok "  the pass stopped early" grep -qE "validation stopped by signal 10 after [0-9]+ of 1000000" "$T/v2.out"
ok "  checkpoint at step 2" grep -qx "ckpt_00000002.h5" "$T/v2/latest"

# evaluation: a stop request is agreed between tasks; the finished checkpoints' results stay
: >"$T/stop-eval"
HW_STOP_FILE=$T/stop-eval expect_exit 4 "eval with a stop request pending" "$HW" eval \
    --ckpt "$T/m" --tasks perplexity --perplexity-data "$D/val.h5" --limit 20
ok "  stopped before its first task" grep -q "stopped by signal 10 before task perplexity of $T/m/ckpt_00000003.h5" "$T/out"
ok "  no results written" sh -c "! ls '$T/m/eval/'results_* 2>/dev/null | grep -q ."
expect_exit 0 "  without it, the same eval runs" "$HW" eval --ckpt "$T/m" --tasks perplexity \
    --perplexity-data "$D/val.h5" --limit 20

# evaluation: a signal during a long task (perplexity over a 12 MB token stream: about 35 s on
# one rank) is answered before the next forward pass
unset HW_STOP_FILE # dash keeps a variable set before a function call (long above)
"$HW" data prepare --synthetic --bytes 12000000 --vocab 300 --out "$T/big" >/dev/null 2>&1
long_eval() { # NAME LAUNCH...: a long perplexity eval of $T/m in the background
    name=$1
    shift
    "$@" "$HW" eval --ckpt "$T/m" --tasks perplexity --perplexity-data "$T/big/train.h5" \
        --output "$T/$name" >"$T/$name.out" 2>&1 &
    bg=$!
    wait_line "$T/$name.out" "headwise eval: "
    sleep "${EVAL_WAIT:-2}" # well inside the task: the stream is encoded, windows are scored
}
long_eval e1 env
t0=$(($(date +%s%N) / 1000000))
kill -USR1 $bg
wait_bg
ok "SIGUSR1 in an eval task: exit 4 (got $rc) within 3 s (took $took ms)" test "$rc" = 4 -a "$took" -lt 3000
ok "  stopped during the task" grep -q "stopped by a signal during task perplexity of $T/m/ckpt_00000003.h5" "$T/e1.out"
ok "  no results written" sh -c "! ls '$T/e1/'results_* 2>/dev/null | grep -q ."

long_eval e2 $MPIRUN -np 2
usr1_rank1 "headwise eval.*--output $T/e2\$"
ok "SIGUSR1 to rank 1 of 2 only (pid ${victim:-?}): exit 4 (got $rc) within 6 s, mpirun's exit included (took $took ms)" test -n "$victim" -a "$rc" = 4 -a "$took" -lt 6000
ok "  rank 0 stopped too, told by rank 1" grep -q "stopped by a signal during task perplexity" "$T/e2.out"
ok "  no results written" sh -c "! ls '$T/e2/'results_* 2>/dev/null | grep -q ."
ok "  nothing left running" sh -c "! pgrep -f 'headwise eval.*--output $T/e2\$' >/dev/null"

# start-up data loading (HW_FAULT_SLOW_LOAD_MS makes every poll of the loaders sleep, so that
# checking the 12 MB stream's blocks takes several seconds): a stop answered within one block,
# exit 4, and the run directory (a finished run's) left exactly as it was
cp -r "$T/m" "$T/ld"
(cd "$T/ld" && find . -type f -exec sha256sum {} + | sort) >"$T/ld.sums"
long_load() { # NAME LAUNCH...: a run on the big stream into $T/ld, loading slowly, in the background
    name=$1
    shift
    "$@" "$HW" train configs/tiny.yaml data.train="$T/big/train.h5" data.val= train.threads=1 \
        train.steps=9 run.dir="$T/ld" >"$T/$name.out" 2>&1 &
    bg=$!
    wait_line "$T/$name.out" "loading the training data"
    sleep 1
}
HW_FAULT_SLOW_LOAD_MS=700 long_load l1 env
t0=$(($(date +%s%N) / 1000000))
kill -USR1 $bg
wait_bg
ok "SIGUSR1 while the training data loads: exit 4 (got $rc) within 3 s (took $took ms)" test "$rc" = 4 -a "$took" -lt 3000
ok "  named where it stopped" grep -qE "data.train: $T/big/train.h5: stopped by a signal while checking token [0-9]+ of [0-9]+" "$T/l1.out"
ok "  nothing written" grep -q "nothing was written (no step was taken), exit code 4 asks to be requeued" "$T/l1.out"
ok "  the run directory is as it was" sh -c "cd '$T/ld' && sha256sum -c --quiet '$T/ld.sums' && test \$(find . -type f | wc -l) = \$(wc -l <'$T/ld.sums')"
HW_FAULT_SLOW_LOAD_MS=700 long_load l2 $MPIRUN -np 2 -x HW_FAULT_SLOW_LOAD_MS
unset HW_FAULT_SLOW_LOAD_MS
usr1_rank1 "headwise train.*data.train=$T/big/train.h5"
ok "SIGUSR1 to rank 1 of 2 while loading (pid ${victim:-?}): exit 4 (got $rc) within 6 s, mpirun's exit included (took $took ms)" test -n "$victim" -a "$rc" = 4 -a "$took" -lt 6000
ok "  rank 0 stopped too, told by rank 1" grep -qE "stopped by a signal while checking token [0-9]+ of [0-9]+ \(the signal came to another rank\)" "$T/l2.out"
ok "  the run directory is as it was" sh -c "cd '$T/ld' && sha256sum -c --quiet '$T/ld.sums'"

# evaluation: a stop while a task loads its data (rank 1 of 2 only): every rank ends the task
EVAL_WAIT=1 HW_FAULT_SLOW_LOAD_MS=1000 long_eval e3 $MPIRUN -np 2 -x HW_FAULT_SLOW_LOAD_MS
unset HW_FAULT_SLOW_LOAD_MS
unset EVAL_WAIT
usr1_rank1 "headwise eval.*--output $T/e3\$"
ok "SIGUSR1 to rank 1 of 2 while an eval task loads (pid ${victim:-?}): exit 4 (got $rc) within 6 s (took $took ms)" test -n "$victim" -a "$rc" = 4 -a "$took" -lt 6000
ok "  stopped during the task" grep -q "stopped by a signal during task perplexity of $T/m/ckpt_00000003.h5" "$T/e3.out"
ok "  while checking the stream" grep -q "stopped by a signal while checking token" "$T/e3.out"
ok "  no results written" sh -c "! ls '$T/e3/'results_* 2>/dev/null | grep -q ."
finish
