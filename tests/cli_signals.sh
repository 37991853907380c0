#!/bin/sh
# tests/cli_signals.sh -- stop requests at start-up and through the stop file: SIGUSR1 or
# SIGTERM while MPI_Init is still under way (a fresh run and a resume) is kept, and the run
# stops where it loads its data (before any step, so it writes nothing) and exits 4 instead of
# dying of the signal; a run whose HW_STOP_FILE exists stops the same way; resuming after each
# gives the losses of an uninterrupted run exactly. (The Slurm side, signals at the start of a job and of its restart,
# is in tests/slurm_cluster.sh.)
. tests/lib.sh
D=$T/data
prepare_tiny "$D"
set -- configs/tiny.yaml data.train="$D/train.h5" data.val="$D/val.h5" train.steps=8 \
    run.ckpt_every=4 train.threads=1
expect_exit 0 "uninterrupted 8 steps" "$HW" train "$@" run.dir="$T/u"
metric_lines "$T/u/metrics.jsonl" >"$T/mu"

# signal_at_start SIG DIR [key=value ...]: starts `headwise train` on one rank and sends SIG while
# MPI_Init is still under way (Open MPI 4 starts its own orted for a single rank, so that child
# exists only from inside MPI_Init on); leaves the exit code in $rc and the log in $T/out.
# rc=99: the moment was never seen (no orted child within 20 s). headwise starts a singleton
# isolated (no orted: dist.c singleton_defaults) unless told otherwise, so this run asks for
# the daemon to have a moment inside MPI_Init to aim at.
signal_at_start() {
    sig=$1
    dir=$2
    shift 2
    OMPI_MCA_ess_singleton_isolated=0 "$HW" train configs/tiny.yaml data.train="$D/train.h5" data.val="$D/val.h5" train.steps=8 \
        run.ckpt_every=4 train.threads=1 run.dir="$dir" "$@" >"$T/out" 2>&1 &
    pid=$!
    seen=0
    i=0
    while [ $i -lt 2000 ] && kill -0 $pid 2>/dev/null; do
        if pgrep -P $pid orted >/dev/null 2>&1; then
            kill -"$sig" $pid
            seen=1
            break
        fi
        sleep 0.01
        i=$((i + 1))
    done
    i=0 # every wait is bounded: 60 s, then SIGKILL (the check then fails on the exit code)
    while kill -0 $pid 2>/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL $pid 2>/dev/null
    wait $pid
    rc=$?
    [ $seen = 1 ] || rc=99
}
has_out() { grep -qE -- "$1" "$T/out"; }

if ! command -v pgrep >/dev/null; then
    echo "SKIP signals during MPI_Init: pgrep not installed (Debian procps)"
else
    signal_at_start USR1 "$T/a"
    if [ $rc = 99 ] && ! grep -q "checkpoint:" "$T/out"; then
        # an MPI that starts a single rank without a daemon (Open MPI 5, MPICH): no way to see
        # the moment from outside
        echo "SKIP signals during MPI_Init: MPI_Init starts no orted child here"
    else
        ok "SIGUSR1 during MPI_Init: kept, exit 4 (not 138, killed by the signal; got $rc)" \
            test $rc = 4
        ok "  stopped while loading the data, nothing written" sh -c \
            "grep -qE 'stopped by a signal .*nothing was written \(no step was taken\)' '$T/out' &&
             ! test -e '$T/a/latest'"
        signal_at_start TERM "$T/b"
        ok "SIGTERM during MPI_Init: kept, exit 4 (got $rc)" test $rc = 4
        ok "  stopped while loading the data" has_out "nothing was written \(no step was taken\)"
        # the start of a resume (a restart of a preempted job)
        HW_STOP_AFTER_STEP=4 expect_exit 4 "a run preempted at step 4" "$HW" train "$@" \
            run.dir="$T/r"
        signal_at_start USR1 "$T/r"
        ok "SIGUSR1 while the resume starts MPI: exit 4 (got $rc)" test $rc = 4
        ok "  stopped while loading, latest still step 4" sh -c \
            "grep -q 'nothing was written (no step was taken)' '$T/out' &&
             grep -qx ckpt_00000004.h5 '$T/r/latest' && ! test -e '$T/r/ckpt_00000005.h5'"
        expect_exit 0 "  resumed again to step 8" "$HW" train "$@" run.dir="$T/r"
        metric_lines "$T/r/metrics.jsonl" >"$T/mr"
        ok "  losses, lr and grad norms equal the uninterrupted run's (exact)" cmp -s "$T/mu" "$T/mr"
    fi
fi

# HW_STOP_FILE: what the Slurm scripts create on SIGUSR1 instead of forwarding the signal
: >"$T/stop"
HW_STOP_FILE=$T/stop expect_exit 4 "HW_STOP_FILE exists: exit 4" "$HW" train "$@" run.dir="$T/f"
ok "  stopped while loading the data, nothing written" sh -c \
    "grep -q 'nothing was written (no step was taken)' '$T/out' && ! test -e '$T/f/latest'"
HW_STOP_FILE=$T/absent expect_exit 0 "HW_STOP_FILE absent: the run goes to step 8" "$HW" \
    train "$@" run.dir="$T/f"
metric_lines "$T/f/metrics.jsonl" >"$T/mf"
ok "  losses equal the uninterrupted run's (exact)" cmp -s "$T/mu" "$T/mf"
finish
