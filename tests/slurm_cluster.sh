#!/bin/sh
# tests/slurm_cluster.sh -- the slurm/*.sbatch scripts on a real one-node Slurm cluster
# (tools/slurm_local.sh: slurmctld + slurmd + munged, installed from Debian when missing):
# a 2-rank srun --mpi=pmix training job completes; a job sent SIGUSR1 mid-run (scancel --signal
# USR1 --batch) and one stopped by HW_STOP_AFTER_STEP under HW_LAUNCH=mpirun checkpoint, exit 4,
# requeue themselves, resume, and log the losses of the uninterrupted job exactly; so do a job
# sent SIGUSR1 the moment its batch shell can catch it, and one requeued from outside (scontrol
# requeue: the log says so) and then sent SIGUSR1 at the start of its restart; a cancelled
# job checkpoints on SIGTERM but is not requeued; the eval array writes one results file per
# checkpoint, and an eval task sent SIGUSR1 mid-task or losing its rank requeues itself; a sweep
# array gets its overrides and run dirs, and the task that carries the array's job id,
# preempted, requeues itself alone; a rank killed with SIGKILL after a
# checkpoint (under srun and under mpirun) requeues the job, which resumes and logs the
# uninterrupted losses; with HW_MAX_REQUEUES=0 it fails with "requeue limit reached"; a rank that
# exits 1 by itself (srun kills the others: exit 137) is not requeued; a bad config fails fast
# with its error line in the log. Needs root (skips otherwise).
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
# shell_ready ID N : job ID's batch shell on its run N (0 first, N restarts later) exists and can
# catch SIGUSR1 (its trap is set: bit 10 of SigCgt)
shell_ready() {
    for p in $(pgrep -f "/job0*$1/slurm_script"); do
        rs=$(tr '\0' '\n' 2>/dev/null <"/proc/$p/environ" | sed -n 's/^SLURM_RESTART_COUNT=//p')
        [ "${rs:-0}" = "$2" ] || continue
        m=$(sed -n 's/^SigCgt:[[:space:]]*//p' "/proc/$p/status" 2>/dev/null)
        [ -n "$m" ] && [ $((0x$m & 0x200)) != 0 ] && return 0
    done
    return 1
}
steps_logged() { [ "$(cat "$1/metrics.jsonl" 2>/dev/null | wc -l)" -ge "$2" ]; } # RUN_DIR N
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

# --- 2. preemption, requeue and lost ranks. Nine jobs share the 2 CPUs; each runs while the
# others wait out their requeue delay (about 12 s):
#   B  SIGUSR1 to the batch shell mid-run (scancel --signal=USR1 --batch)
#   C  HW_STOP_AFTER_STEP=300 (a deterministic preemption) under HW_LAUNCH=mpirun
#   S  SIGUSR1 the moment its batch shell can catch it (before or while the ranks start)
#   Q  `scontrol requeue` from outside mid-run, then SIGUSR1 at the start of its restart
#   W  a sweep array (line i of the file -> overrides and run dir <run.dir>-i): the task that
#      carries the array's own job id gets SIGUSR1 mid-run
# Each checkpoints, exits 4, is requeued (itself alone), resumes and ends with the losses of the
# uninterrupted job. Lost ranks, in the same block (Z and P, which are not requeued, last):
#   L  one rank SIGKILLed once a checkpoint exists (srun): requeued, resumes, uninterrupted losses
#   M  the same under HW_LAUNCH=mpirun
#   Z  1 rank, HW_MAX_REQUEUES=0, SIGKILLed: FAILED with "requeue limit reached", not requeued
#   P  rank 1 exits 1 by itself (without MPI_Abort): srun kills rank 0 and exits 137; not requeued
#   H  one rank SIGSTOPped once a checkpoint exists (dist.timeout_s 5): the watchdog ends the job
#      (exit 5, naming the stopped rank), the script requeues it, it resumes and finishes
t_block=$(date +%s)
jS=$(submit "$T/s.out" $TASKS slurm/train.sbatch "$@" run.dir="$T/s")
jB=$(submit "$T/b.out" $TASKS slurm/train.sbatch "$@" run.dir="$T/b")
jQ=$(submit "$T/q.out" $TASKS slurm/train.sbatch "$@" run.dir="$T/q")
jC=$(submit "$T/c.out" --export=ALL,HW_LAUNCH=mpirun,HW_STOP_AFTER_STEP=300 $TASKS \
    slurm/train.sbatch "$@" run.dir="$T/c")
printf '# lr sweep\ntrain.lr=1e-3\n\ntrain.lr=2e-3 train.warmup=2\n' >"$T/sweep.txt"
jW=$(submit "$T/sweep_%a.out" --array=0-1 --cpus-per-task=1 slurm/sweep.sbatch configs/tiny.yaml \
    "$T/sweep.txt" data.train="$D/train.h5" data.val="" train.steps=600 train.log_every=150 \
    run.dir="$T/sw")
jL=$(submit "$T/l.out" $TASKS slurm/train.sbatch "$@" run.dir="$T/l")
jM=$(submit "$T/m.out" --export=ALL,HW_LAUNCH=mpirun $TASKS slurm/train.sbatch "$@" run.dir="$T/m")
jH=$(submit "$T/h.out" $TASKS slurm/train.sbatch "$@" dist.timeout_s=5 run.dir="$T/h")
jZ=$(submit "$T/z.out" --export=ALL,HW_MAX_REQUEUES=0 --ntasks-per-node=1 --cpus-per-task=1 \
    slurm/train.sbatch "$@" dist.data=1 train.steps=100000 run.dir="$T/z")
# P's rank 1 is this wrapper: it runs headwise, SIGKILLs it once a checkpoint exists, exits 1
cat >"$T/hw_exit1" <<EOF
#!/bin/sh
[ "\$1" = train ] && [ "\$SLURM_PROCID" = 1 ] || exec "$HW" "\$@"
"$HW" "\$@" &
while [ ! -f "$T/p/latest" ]; do sleep 0.05; done
kill -9 \$!
exit 1
EOF
chmod +x "$T/hw_exit1"
jP=$(submit "$T/p.out" --export=ALL,HW="$T/hw_exit1" $TASKS slurm/train.sbatch "$@" \
    train.steps=100000 run.dir="$T/p")
# kill_rank RUN_DIR: SIGKILL one rank (a process that runs headwise train with that run dir)
kill_rank() {
    kp=$(pgrep -f "^$HW train .*run\.dir=$1( |\$)" | head -n 1)
    [ -n "$kp" ] && kill -9 "$kp"
}
# stop_rank RUN_DIR: SIGSTOP one rank (it neither dies nor answers: only the watchdog notices)
stop_rank() {
    kp=$(pgrep -f "^$HW train .*run\.dir=$1( |\$)" | head -n 1)
    [ -n "$kp" ] && kill -STOP "$kp"
}
# the seconds from the kill (epoch $2) to the script's "rank lost" line in LOG $1
lost_after() {
    lt=$(sed -n 's/^train.sbatch: \([0-9-]* [0-9:]*\): rank lost .*/\1/p' "$1" | head -n 1)
    [ -n "$lt" ] && echo $(($(date -d "$lt" +%s) - $2))
}
# master_task ID: the running array task whose job id is the array's id, in $mt
master_task() {
    mt=$(timeout 20 squeue -h -j "$1" -t R -o '%A %K' 2>/dev/null |
        awk -v j="$1" '$1 == j && $2 ~ /^[0-9]+$/ {print $2}')
    [ -n "$mt" ]
}
sS=0 sB=0 rQ=0 sQ=0 sW=0 mt='' kl=0 km=0 kz=0 kh=0
while [ $((sS + sB + rQ + sQ + sW + kl + km + kz + kh)) -lt 9 ] && [ $(($(date +%s) - t_block)) -lt "$LIMIT" ]; do
    if [ $sS = 0 ] && shell_ready "$jS" 0; then
        scancel --signal=USR1 --batch "$jS"
        sS=1
    fi
    if [ $sB = 0 ] && steps_logged "$T/b" 10; then
        scancel --signal=USR1 --batch "$jB"
        sB=1
    fi
    if [ $rQ = 0 ] && steps_logged "$T/q" 30; then
        timeout 20 scontrol requeue "$jQ"
        rQ=1
    elif [ $rQ = 1 ] && [ $sQ = 0 ] && shell_ready "$jQ" 1; then
        scancel --signal=USR1 --batch "$jQ"
        sQ=1
    fi
    if [ $sW = 0 ] && { [ -n "$mt" ] || master_task "$jW"; } && steps_logged "$T/sw-$mt" 10; then
        scancel --signal=USR1 --batch "${jW}_$mt"
        sW=1
    fi
    for x in l m z; do # L, M, Z: SIGKILL a rank once the first checkpoint exists
        if [ "$(eval echo "\$k$x")" = 0 ] && [ -f "$T/$x/latest" ] && kill_rank "$T/$x"; then
            eval "k$x=1 t$x=$(date +%s)"
        fi
    done
    if [ $kh = 0 ] && [ -f "$T/h/latest" ] && stop_rank "$T/h"; then
        kh=1
    fi
    sleep 0.05
done
ok "preemption jobs: every signal sent within $LIMIT s (S $sS, B $sB, Q $rQ $sQ, W $sW, kill L $kl M $km Z $kz, stop H $kh)" \
    test $((sS + sB + rQ + sQ + sW + kl + km + kz + kh)) = 9
all_done() { for x in "$jS" "$jB" "$jQ" "$jC" "$jW" "$jL" "$jM" "$jZ" "$jP" "$jH"; do wait_job "$x" || return 1; done; }
ok "  all ten finished within $LIMIT s each" all_done
echo "     ($(($(date +%s) - t_block)) s for the ten)"

ok "B, SIGUSR1 mid-run: the trap asked the ranks to stop" has "$T/b.out" \
    "got SIGUSR1: the ranks checkpoint at the end of the step"
ok "  checkpointed mid-run and exited 4" grep -qE "stopped by signal 10 at step [0-9]+ .*exit code 4" "$T/b.out"
ok "  requeued itself" has "$T/b.out" "checkpointed (exit 4): requeueing job $jB"
ok "  restarted once (Restarts=1, SLURM_RESTART_COUNT=1)" test "$(field "$jB" Restarts)" = 1
ok "  logged that it resumes" grep -q "restart 1: resuming from $T/b/ckpt_" "$T/b.out"
ok "  headwise resumed from that checkpoint" grep -q "resumed from $T/b/ckpt_" "$T/b.out"
ok "  then COMPLETED, exit 0:0" test "$(field "$jB" JobState) $(field "$jB" ExitCode)" = "COMPLETED 0:0"
ok "  two runs in the completion log (sacct -c)" \
    test "$(sacct -c -n -P -j "$jB" -o state 2>/dev/null | tr '\n' ' ')" = "PENDING COMPLETED "
metric_lines "$T/b/metrics.jsonl" >"$T/mb"
ok "  every step's loss, lr and grad norm equal the uninterrupted job's" cmp -s "$T/ma" "$T/mb"
[ $n_failed = 0 ] || show_log "$T/b.out"
f0=$n_failed

ok "C, mpirun job stopped at step 300: launched with mpirun inside the allocation" has "$T/c.out" \
    "2 ranks x 1 threads via mpirun"
ok "  exit 4 at step 300, requeued" has "$T/c.out" "stopped by signal 10 at step 300"
ok "  resumed at step 300" has "$T/c.out" "resumed from $T/c/ckpt_00000300.h5 at step 300"
ok "  COMPLETED after 1 restart" test "$(field "$jC" JobState) $(field "$jC" Restarts)" = "COMPLETED 1"
metric_lines "$T/c/metrics.jsonl" >"$T/mc"
ok "  losses equal the uninterrupted job's (exact)" cmp -s "$T/ma" "$T/mc"
[ $n_failed = "$f0" ] || show_log "$T/c.out"
f0=$n_failed

ok "S, SIGUSR1 the moment the shell can catch it: caught (no 'User defined signal')" sh -c \
    "grep -q 'got SIGUSR1' '$T/s.out' && ! grep -q 'User defined signal' '$T/s.out'"
ok "  requeued itself" has "$T/s.out" "requeueing job $jS"
ok "  COMPLETED after 1 restart" test \
    "$(field "$jS" JobState) $(field "$jS" ExitCode) $(field "$jS" Restarts)" = "COMPLETED 0:0 1"
metric_lines "$T/s/metrics.jsonl" >"$T/ms"
ok "  losses equal the uninterrupted job's (exact)" cmp -s "$T/ma" "$T/ms"
[ $n_failed = "$f0" ] || show_log "$T/s.out"
f0=$n_failed

ok "Q, scontrol requeue from outside: the log says Slurm requeued it" has "$T/q.out" \
    "Slurm requeued job $jQ from outside"
ok "  and not that it was not requeued" sh -c "! grep -q 'not requeueing' '$T/q.out'"
ok "  the ranks checkpointed on SIGTERM" grep -qE "stopped by signal 15 at step [0-9]+ .*exit code 4" "$T/q.out"
ok "  SIGUSR1 at the start of the restart: caught, requeued" sh -c \
    "grep -q 'got SIGUSR1' '$T/q.out' && grep -q 'requeueing job $jQ' '$T/q.out' &&
     ! grep -q 'User defined signal' '$T/q.out'"
ok "  COMPLETED after 2 restarts" test \
    "$(field "$jQ" JobState) $(field "$jQ" ExitCode) $(field "$jQ" Restarts)" = "COMPLETED 0:0 2"
metric_lines "$T/q/metrics.jsonl" >"$T/mq"
ok "  losses equal the uninterrupted job's (exact)" cmp -s "$T/ma" "$T/mq"
[ $n_failed = "$f0" ] || show_log "$T/q.out"
f0=$n_failed

mt=${mt:-1}
ot=$((1 - mt))
ok "W, sweep array 0-1: both settings COMPLETED" test \
    "$(field "$jW" JobState | sort -u | tr '\n' ' ')" = "COMPLETED "
ok "  setting 0 in $T/sw-0 with lr 1e-3" grep -q "lr: 0.001$" "$T/sw-0/config.yaml"
ok "  setting 1 in $T/sw-1 with lr 2e-3, warmup 2" sh -c \
    "grep -q 'lr: 0.002$' '$T/sw-1/config.yaml' && grep -q 'warmup: 2$' '$T/sw-1/config.yaml'"
ok "  task $mt (job id $jW, the array's) requeued itself as ${jW}_$mt" has "$T/sweep_$mt.out" \
    "checkpointed (exit 4): requeueing task ${jW}_$mt"
ok "  and resumed" grep -q "resumed from $T/sw-$mt/ckpt_" "$T/sweep_$mt.out"
ok "  restarted once; task $ot not at all" test \
    "$(field "${jW}_$mt" Restarts) $(field "${jW}_$ot" Restarts)" = "1 0"
ok "  task $ot ran undisturbed" sh -c "! grep -q 'SIGUSR1' '$T/sweep_$ot.out'"
ok "  600 steps each" test "$(metric_lines "$T/sw-$mt/metrics.jsonl" | wc -l) $(metric_lines \
    "$T/sw-$ot/metrics.jsonl" | wc -l)" = "600 600"
[ $n_failed = "$f0" ] || show_log "$T/sweep_$mt.out"
f0=$n_failed

# lost_rank_checks X JOB KILL_TIME: job JOB (log $T/X.out, run dir $T/X) whose rank was SIGKILLed
# after a checkpoint
lost_rank_checks() {
    lg=$T/$1.out
    ok "  the step ended and the script saw it within 20 s of the kill ($(lost_after "$lg" "$3") s)" \
        test "$(lost_after "$lg" "$3")" -le 20
    ok "  logged: rank lost (launcher exit 137); requeue 1 of 3" grep -q \
        "rank lost (launcher exit 137); requeue 1 of 3 (restart 1 of job $2); resumes from $T/$1/ckpt_" "$lg"
    ck=$(sed -n 's/.*rank lost .*resumes from \(.*\)$/\1/p' "$lg" | head -n 1)
    ok "  headwise resumed from that checkpoint ($(basename "${ck:-none}"))" has "$lg" "resumed from $ck at step"
    ok "  COMPLETED 0:0 after 1 restart" test \
        "$(field "$2" JobState) $(field "$2" ExitCode) $(field "$2" Restarts)" = "COMPLETED 0:0 1"
    ok "  the requeue is counted in $1/lost_ranks" test "$(grep -c "^$2 0 " "$T/$1/lost_ranks")" = 1
    metric_lines "$T/$1/metrics.jsonl" >"$T/m$1"
    ok "  losses equal the uninterrupted job's (exact; final $(tail -n 1 "$T/m$1" | cut -d' ' -f2))" \
        cmp -s "$T/ma" "$T/m$1"
    [ $n_failed = "$f0" ] || show_log "$lg"
    f0=$n_failed
}
echo "L, srun job, one rank SIGKILLed after a checkpoint:"
lost_rank_checks l "$jL" "${tl:-0}"
ok "  srun reported the killed task" has "$T/l.out" ": Killed"
echo "M, mpirun job, one rank SIGKILLed after a checkpoint:"
lost_rank_checks m "$jM" "${tm:-0}"
ok "  mpirun reported the killed rank" has "$T/m.out" "exited on signal 9"

ok "Z, HW_MAX_REQUEUES=0, its rank SIGKILLed: FAILED 137:0, not requeued" test \
    "$(field "$jZ" JobState) $(field "$jZ" ExitCode) $(field "$jZ" Restarts)" = "FAILED 137:0 0"
ok "  logged: requeue limit reached" has "$T/z.out" \
    "rank lost (launcher exit 137); requeue limit reached (HW_MAX_REQUEUES=0, 0 done): not requeueing; resubmit to continue from $T/z/ckpt_"
ok "  no requeue counted" test ! -e "$T/z/lost_ranks"
[ $n_failed = "$f0" ] || show_log "$T/z.out"
f0=$n_failed

echo "H, srun job, one rank SIGSTOPped after a checkpoint (dist.timeout_s 5):"
ok "  the watchdog named the collective and the stopped rank" grep -qE \
    "watchdog: .* has not finished after [0-9.]+ s \(dist.timeout_s 5\); ranks that did not answer \(stopped, dead or unreachable\): [01];" "$T/h.out"
ok "  requeued as a lost rank" grep -q "rank lost (launcher exit [0-9]*); requeue 1 of 3 (restart 1 of job $jH)" "$T/h.out"
ok "  COMPLETED 0:0 after 1 restart" test \
    "$(field "$jH" JobState) $(field "$jH" ExitCode) $(field "$jH" Restarts)" = "COMPLETED 0:0 1"
metric_lines "$T/h/metrics.jsonl" >"$T/mh"
ok "  losses equal the uninterrupted job's (exact)" cmp -s "$T/ma" "$T/mh"
[ $n_failed = "$f0" ] || show_log "$T/h.out"
f0=$n_failed

ok "P, rank 1 exits 1 by itself: FAILED 1:0, not requeued" test \
    "$(field "$jP" JobState) $(field "$jP" ExitCode) $(field "$jP" Restarts)" = "FAILED 1:0 0"
ok "  srun killed rank 0 and exited 137; the script read srun's line for rank 1" has "$T/p.out" \
    "a rank failed (srun: task 1: Exited with exit code 1) and srun killed the others (exit 137): not requeued"
ok "  not taken for a lost rank" sh -c "! grep -q 'rank lost' '$T/p.out' && test ! -e '$T/p/lost_ranks'"
[ $n_failed = "$f0" ] || show_log "$T/p.out"

# --- 3. scancel: SIGTERM reaches the ranks from Slurm, they checkpoint; the job is NOT requeued
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

expect_exit 2 "train.sbatch rejects HW_MAX_REQUEUES=x" env HW_MAX_REQUEUES=x bash slurm/train.sbatch configs/tiny.yaml
ok "  its log line names the variable and what it expects" grep -q \
    "error: HW_MAX_REQUEUES=x: expected a whole number >= 0" "$T/out"

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

# --- 4b. an evaluation array preempted: task 0 gets SIGUSR1 inside its task (the ranks stop
# before their next forward pass, exit 4), task 1 loses its rank (SIGKILL); each requeues itself
# alone, evaluates its checkpoint again and writes its results
"$HW" data prepare --synthetic --bytes 2000000 --vocab 300 --out "$T/evbig" >/dev/null 2>&1
LIMIT=240
j=$(submit "$T/ev2_%a.out" --array=0-1 --cpus-per-task=1 slurm/eval.sbatch "$T/a" \
    --tasks perplexity --perplexity-data "$T/evbig/train.h5" --output "$T/ev2")
s0=0 s1=0
t_block=$(date +%s)
while [ $((s0 + s1)) -lt 2 ] && [ $(($(date +%s) - t_block)) -lt "$LIMIT" ]; do
    if [ $s0 = 0 ] && grep -q "headwise eval: " "$T/ev2_0.out" 2>/dev/null; then
        sleep 1
        scancel --signal=USR1 --batch "${j}_0"
        s0=1
    fi
    if [ $s1 = 0 ] && grep -q "headwise eval: " "$T/ev2_1.out" 2>/dev/null; then
        sleep 1
        kp=$(pgrep -f "^$HW eval --ckpt $T/a/ckpt_00000300.h5" | head -n 1)
        [ -n "$kp" ] && kill -9 "$kp" && s1=1
    fi
    sleep 0.1
done
ok "eval array preempted: SIGUSR1 to task 0 ($s0), rank of task 1 killed ($s1)" test $((s0 + s1)) = 2
ok "  both finished within $LIMIT s" wait_job "$j"
echo "     (${waited}s)"
ok "  both COMPLETED after 1 restart" test \
    "$(field "$j" JobState | sort -u | tr '\n' ' ')$(field "$j" Restarts | tr '\n' ' ')" = "COMPLETED 1 1 "
ok "  task 0 stopped inside its task, requeued itself" sh -c \
    "grep -q 'stopped by a signal during task perplexity of $T/a/ckpt_00000150.h5' '$T/ev2_0.out' &&
     grep -q 'stopped (exit 4): requeueing task ${j}_0' '$T/ev2_0.out'"
ok "  task 1: rank lost (launcher exit 137); requeue 1 of 3" has "$T/ev2_1.out" \
    "rank lost (launcher exit 137); requeue 1 of 3 (restart 1 of task ${j}_1)"
ok "  counted in ev2/lost_ranks" test "$(grep -c "^${j}_1 0 " "$T/ev2/lost_ranks")" = 1
ok "  both evaluated again from the start" sh -c \
    "grep -q 'restart 1: evaluating' '$T/ev2_0.out' && grep -q 'restart 1: evaluating' '$T/ev2_1.out'"
ok "  results for both checkpoints" test -s "$T/ev2/results_ckpt_00000150.json" -a \
    -s "$T/ev2/results_ckpt_00000300.json"
[ $n_failed = 0 ] || { show_log "$T/ev2_0.out"; show_log "$T/ev2_1.out"; }

# --- 5. a bad config fails fast, not requeued, with the error line in the log -----------------
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

# --- 6. a job that holds GPUs trains on them: this cluster has none, so the job announces one
# the way slurmd does (SLURM_GPUS_ON_NODE); train.sbatch passes run.backend=cuda, and the
# ranks refuse it here (no CUDA build or no device) with exit 2, not requeued
j=$(submit "$T/gpu.out" --export=ALL,SLURM_GPUS_ON_NODE=1 --ntasks-per-node=1 --cpus-per-task=1 \
    slurm/train.sbatch configs/tiny.yaml data.train="$D/train.h5" run.dir="$T/gpu")
ok "GPU job: finished within 60 s" wait_job "$j"
ok "  announced 1 GPU a node" has "$T/gpu.out" "1 threads via srun, 1 GPUs a node"
ok "  the ranks got run.backend=cuda and refused it (exit 2), no restart" sh -c \
    "grep -qE 'error: run.backend: (this build has no CUDA backend|no CUDA device found)' '$T/gpu.out' &&
     test '$(field "$j" ExitCode) $(field "$j" Restarts)' = '2:0 0'"
ok "  slurm/train_gpu.sbatch is train.sbatch with GPU lines" sh -c \
    "bash -n slurm/train_gpu.sbatch && grep -q '^#SBATCH --gpus-per-task=1' slurm/train_gpu.sbatch"
[ $n_failed = 0 ] || show_log "$T/gpu.out"

[ -s "$T/sbatch.err" ] && sed 's/^/     sbatch: /' "$T/sbatch.err"
echo "     (whole test: $(($(date +%s) - t_start)) s)"
finish
