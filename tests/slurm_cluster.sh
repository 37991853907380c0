#!/bin/sh
# tests/slurm_cluster.sh -- the slurm/*.sbatch scripts on a real one-node Slurm cluster
# (tools/slurm_local.sh: slurmctld + slurmd + munged, installed from Debian when missing):
# a 2-rank srun --mpi=pmix training job completes; a job sent SIGUSR1 mid-run (scancel --signal
# USR1 --batch) and one stopped by HW_STOP_AFTER_STEP under HW_LAUNCH=mpirun checkpoint, exit 4,
# requeue themselves, resume, and log the losses of the uninterrupted job exactly; a cancelled
# job checkpoints on SIGTERM but is not requeued; the eval
# array writes one results file per checkpoint; a sweep array gets its overrides and run dirs;
# a bad config fails fast with its error line in the log. Needs root (skips otherwise).
# Usage: sh tests/slurm_cluster.sh [build/headwise]   (HW_KEEP=1 keeps the temp dir and logs)
. tests/lib.sh
name=slurm_cluster
skip() {
    echo "SKIP $name: $*"
    exit 0
}
[ "$(id -u)" = 0 ] || skip "needs root (slurmd runs the jobs; tools/slurm_local.sh starts it)"
[ -n "${HW_SKIP_SLURM:-}" ] && skip "HW_SKIP_SLURM is set"
[ -x "$HW" ] || skip "$HW not built"
if ! command -v sbatch >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    command -v apt-get >/dev/null || skip "Slurm not installed and no apt-get"
    apt-cache show slurm-wlm >/dev/null 2>&1 || skip "Slurm not installed and apt has no slurm-wlm"
fi
# a private cluster for this test: its own state dir and ports, stopped on exit
export HW_SLURM_DIR="$T/slurm" HW_SLURM_PORT=${HW_SLURM_TEST_PORT:-16837}
export SLURM_CONF="$HW_SLURM_DIR/slurm.conf"
trap 'sh tools/slurm_local.sh stop >/dev/null 2>&1; [ -n "$HW_KEEP" ] || rm -rf "$T"' EXIT
trap 'exit 130' INT TERM
t_start=$(date +%s)
if ! sh tools/slurm_local.sh start >"$T/start.log" 2>&1; then
    if ! command -v sbatch >/dev/null; then skip "apt-get install slurm-wlm munge failed: $(tail -n 1 "$T/start.log")"; fi
    ok "local cluster starts" false
    sed 's/^/     /' "$T/start.log"
    finish
    exit 1
fi
ok "local cluster up in $(($(date +%s) - t_start)) s: $(sed -n 's/.*cluster up: //p' "$T/start.log")" true
HW=$(cd "$(dirname "$HW")" && pwd)/$(basename "$HW")
export HW # the sbatch scripts run it (the jobs inherit this environment)
D=$T/data
prepare_tiny "$D"

LIMIT=${HW_SLURM_JOB_LIMIT:-180} # seconds a job (with its requeues) may take
# submit LOG SBATCH_ARGS... : prints the job id
submit() {
    log=$1
    shift
    sbatch --parsable --time=5 --output="$log" "$@" 2>>"$T/sbatch.err" | cut -d';' -f1
}
# wait_job ID : until the job (every array task) has left the queue; 1 after $LIMIT seconds
wait_job() {
    w0=$(date +%s)
    while [ -n "$(timeout 20 squeue -h -j "$1" -o %i 2>/dev/null)" ]; do
        if [ $(($(date +%s) - w0)) -ge "$LIMIT" ]; then
            echo "     job $1 still queued after $LIMIT s: $(squeue -h -j "$1" -o '%i %T %r' | tr '\n' ' ')"
            scancel "$1" 2>/dev/null
            return 1
        fi
        sleep 0.5
    done
    waited=$(($(date +%s) - w0))
}
# field ID KEY : KEY=value from scontrol show job (JobState, ExitCode, Restarts); for an array,
# one line per task
field() { timeout 20 scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p"; }
has() { grep -qF -- "$2" "$1"; } # FILE STRING
quiet() { "$@" >/dev/null 2>&1; }
show_log() { [ -f "$1" ] && tail -n 15 "$1" | sed 's/^/     | /'; }

# --- 1. an uninterrupted 2-rank job: srun --mpi=pmix, exit 0, checkpoints ----------------------
set -- configs/tiny.yaml data.train="$D/train.h5" data.val="$D/val.h5" dist.data=2 \
    train.steps=600 run.ckpt_every=150 run.keep=10 train.log_every=150 train.val_every=150
TASKS="--nodes=1 --ntasks-per-node=2 --cpus-per-task=1"
j=$(submit "$T/a.out" $TASKS slurm/train.sbatch "$@" run.dir="$T/a")
ok "train.sbatch submitted (2 ranks)" test -n "$j"
ok "  finished within $LIMIT s" wait_job "$j"
echo "     (${waited}s)"
ok "  COMPLETED, exit 0:0" test "$(field "$j" JobState) $(field "$j" ExitCode)" = "COMPLETED 0:0"
ok "  launched 2 ranks with srun" has "$T/a.out" "2 ranks x 1 threads via srun"
ok "  grid of 2 ranks (PMIx wire-up)" has "$T/a.out" "grid: 2 ranks = data 2"
ok "  final checkpoint verifies" quiet "$HW" ckpt verify "$T/a/ckpt_00000600.h5"
metric_lines "$T/a/metrics.jsonl" >"$T/ma"
ok "  600 steps logged" test "$(wc -l <"$T/ma")" = 600
[ $n_failed = 0 ] || show_log "$T/a.out"

# --- 2. preempted by SIGUSR1 to the batch shell: checkpoint, exit 4, requeue, resume ----------
j=$(submit "$T/b.out" $TASKS slurm/train.sbatch "$@" run.dir="$T/b")
i=0 # signal once the job is well into its run
while [ "$(cat "$T/b/metrics.jsonl" 2>/dev/null | wc -l)" -lt 30 ] && [ $i -lt 1200 ]; do
    sleep 0.1
    i=$((i + 1))
done
scancel --signal=USR1 --batch "$j"
ok "SIGUSR1 job: finished within $LIMIT s" wait_job "$j"
echo "     (${waited}s after the signal)"
ok "  the trap forwarded SIGUSR1" has "$T/b.out" "got SIGUSR1: forwarding to the ranks"
ok "  checkpointed mid-run and exited 4" grep -qE "stopped by signal 10 at step [0-9]+ .*exit code 4" "$T/b.out"
ok "  requeued itself" has "$T/b.out" "checkpointed (exit 4): requeueing job $j"
ok "  restarted once (Restarts=1, SLURM_RESTART_COUNT=1)" test "$(field "$j" Restarts)" = 1
ok "  logged that it resumes" grep -q "restart 1: resuming from $T/b/ckpt_" "$T/b.out"
ok "  headwise resumed from that checkpoint" grep -q "resumed from $T/b/ckpt_" "$T/b.out"
ok "  then COMPLETED, exit 0:0" test "$(field "$j" JobState) $(field "$j" ExitCode)" = "COMPLETED 0:0"
ok "  two runs in the completion log (sacct -c)" \
    test "$(sacct -c -n -P -j "$j" -o state 2>/dev/null | tr '\n' ' ')" = "PENDING COMPLETED "
metric_lines "$T/b/metrics.jsonl" >"$T/mb"
ok "  every step's loss, lr and grad norm equal the uninterrupted job's" cmp -s "$T/ma" "$T/mb"
[ $n_failed = 0 ] || show_log "$T/b.out"

# --- 3. HW_STOP_AFTER_STEP (deterministic preemption) with HW_LAUNCH=mpirun ---------------------
j=$(submit "$T/c.out" --export=ALL,HW_LAUNCH=mpirun,HW_STOP_AFTER_STEP=300 $TASKS \
    slurm/train.sbatch "$@" run.dir="$T/c")
ok "mpirun job stopped at step 300: finished within $LIMIT s" wait_job "$j"
echo "     (${waited}s)"
ok "  launched with mpirun inside the allocation" has "$T/c.out" "2 ranks x 1 threads via mpirun"
ok "  exit 4 at step 300, requeued" has "$T/c.out" "stopped by signal 10 at step 300"
ok "  resumed at step 300" has "$T/c.out" "resumed from $T/c/ckpt_00000300.h5 at step 300"
ok "  COMPLETED after 1 restart" test "$(field "$j" JobState) $(field "$j" Restarts)" = "COMPLETED 1"
metric_lines "$T/c/metrics.jsonl" >"$T/mc"
ok "  losses equal the uninterrupted job's (exact)" cmp -s "$T/ma" "$T/mc"
[ $n_failed = 0 ] || show_log "$T/c.out"

# --- 3b. scancel: SIGTERM reaches the ranks from Slurm, they checkpoint; the job is NOT requeued
j=$(submit "$T/k.out" $TASKS slurm/train.sbatch "$@" train.steps=100000 train.val_every=0 \
    run.ckpt_every=0 run.dir="$T/k")
i=0
while [ ! -s "$T/k/metrics.jsonl" ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done
scancel "$j"
ok "scancel: the job ended within $LIMIT s" wait_job "$j"
echo "     (${waited}s)"
ok "  CANCELLED, not requeued" test "$(field "$j" JobState) $(field "$j" Restarts)" = "CANCELLED 0"
ok "  the ranks checkpointed on SIGTERM" grep -qE "stopped by signal 15 at step [0-9]+ .*exit code 4" "$T/k.out"
ok "  the script declined to requeue" has "$T/k.out" "not requeueing; resubmit to continue"
ok "  the checkpoint verifies" quiet "$HW" ckpt verify "$T/k/$(cat "$T/k/latest" 2>/dev/null)"
[ $n_failed = 0 ] || show_log "$T/k.out"

# --- 4. evaluation array: one task per checkpoint ---------------------------------------------
N=$(($(ls "$T"/a/ckpt_*.h5 | wc -l) - 1))
expect_exit 2 "eval.sbatch outside an array says how to submit" bash slurm/eval.sbatch "$T/a"
err_has "sbatch --array=0-$N slurm/eval.sbatch"
j=$(submit "$T/eval_%a.out" --array=0-"$N" --cpus-per-task=1 slurm/eval.sbatch "$T/a" \
    --tasks perplexity --perplexity-data "$D/val.h5")
ok "eval array 0-$N: finished within $LIMIT s" wait_job "$j"
echo "     (${waited}s)"
ok "  every task COMPLETED" test "$(field "$j" JobState | sort -u | tr '\n' ' ')" = "COMPLETED "
n_res=0
for s in 150 300 450 600; do
    f=$T/a/eval/results_ckpt_0000$(printf %04d $s).json
    [ -s "$f" ] && grep -q '"perplexity"' "$f" && n_res=$((n_res + 1))
done
ok "  one results file per checkpoint ($n_res of $((N + 1)))" test $n_res = $((N + 1)) -a \
    "$(ls "$T"/a/eval/results_*.json | wc -l)" = $((N + 1))
ok "  task 0 took the first checkpoint, task $N the last" sh -c \
    "grep -q 'ckpt_00000150.h5' '$T/eval_0.out' && grep -q 'ckpt_00000600.h5' '$T/eval_$N.out'"
[ $n_failed = 0 ] || show_log "$T/eval_0.out"

# --- 5. sweep array: line i of the file -> overrides and run dir <run.dir>-i -------------------
printf '# lr sweep\ntrain.lr=1e-3\n\ntrain.lr=2e-3 train.warmup=2\n' >"$T/sweep.txt"
j=$(submit "$T/sweep_%a.out" --array=0-1 --cpus-per-task=1 slurm/sweep.sbatch configs/tiny.yaml \
    "$T/sweep.txt" data.train="$D/train.h5" data.val="" train.steps=8 run.dir="$T/sw")
ok "sweep array 0-1: finished within $LIMIT s" wait_job "$j"
ok "  both settings COMPLETED" test "$(field "$j" JobState | sort -u | tr '\n' ' ')" = "COMPLETED "
ok "  setting 0 in $T/sw-0 with lr 1e-3" grep -q "lr: 0.001$" "$T/sw-0/config.yaml"
ok "  setting 1 in $T/sw-1 with lr 2e-3, warmup 2" sh -c \
    "grep -q 'lr: 0.002$' '$T/sw-1/config.yaml' && grep -q 'warmup: 2$' '$T/sw-1/config.yaml'"
[ $n_failed = 0 ] || show_log "$T/sweep_1.out"

# --- 6. a bad config fails fast, not requeued, with the error line in the log -----------------
j=$(submit "$T/bad.out" slurm/train.sbatch configs/tiny.yaml data.train="$D/train.h5" train.lr=-1 \
    run.dir="$T/bad")
LIMIT=60
ok "bad config: finished within 60 s" wait_job "$j"
echo "     (${waited}s)"
ok "  FAILED with exit 2:0, no restart" test \
    "$(field "$j" JobState) $(field "$j" ExitCode) $(field "$j" Restarts)" = "FAILED 2:0 0"
ok "  the config error line is in the log" has "$T/bad.out" \
    "<override 2>:1:10: error: train.lr: -1 is out of range (0, 1]"
ok "  nothing launched, no run dir" test ! -e "$T/bad"
[ $n_failed = 0 ] || show_log "$T/bad.out"

[ -s "$T/sbatch.err" ] && sed 's/^/     sbatch: /' "$T/sbatch.err"
echo "     (whole test: $(($(date +%s) - t_start)) s)"
finish
