# slurm/job.sh -- what the batch scripts (train, sweep, eval) share, sourced by each (bash):
# launching the ranks (srun --mpi=pmix or mpirun) with the stop file, and what to do with their
# exit: a stop request that was answered (exit 4) and a lost rank (launcher exit 129-192, or 5:
# headwise's watchdog, up to HW_MAX_REQUEUES times) requeue the job or array task; 1, 2 and 3
# never do; a job Slurm requeued from outside is left to Slurm. Docs: docs/slurm.md.
#
# The caller, before sourcing: the USR1/TERM traps (they come first: a SIGUSR1 that reaches the
# shell before its trap kills it) with the variables stop_req, got_term, child and STOP_FILE, and
# a say() function. Before job_launch: UNIT ("job" or "task"), STOPPED (what exit 4 means:
# "checkpointed" for training), COUNT_FILE (where the requeues after lost ranks are counted), the
# stop file (job_stop_file), and a resume_point() function that names where a restart continues
# from.
# shellcheck disable=SC2154 # stop_req, got_term: set by the caller's traps

# JOB as scontrol names it: a task of a job array (sbatch --array) is ARRAYID_TASKID, since the
# array's own id names every task of the array (and the last task to start carries it)
JOB=${SLURM_JOB_ID:-}
if [ -n "${SLURM_ARRAY_JOB_ID:-}" ]; then JOB=${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID:-}; fi
RESTARTS=${SLURM_RESTART_COUNT:-0} # unset on the first run
HW=${HW:-build/headwise}
HW_LAUNCH=${HW_LAUNCH:-srun}
HW_MAX_REQUEUES=${HW_MAX_REQUEUES:-3}
case $HW_MAX_REQUEUES in '' | *[!0-9]*)
    say "error: HW_MAX_REQUEUES=$HW_MAX_REQUEUES: expected a whole number >= 0 (requeues after a lost rank)"
    exit 2
    ;;
esac
case $HW_LAUNCH in srun | mpirun) ;; *)
    say "error: HW_LAUNCH=$HW_LAUNCH (use srun or mpirun)"
    exit 2
    ;;
esac
if [ ! -x "$HW" ]; then
    say "error: $HW is not an executable (build it with make, or set HW=...; cwd $(pwd))"
    exit 1
fi

# The stop request reaches the ranks as a file they look for (rank 0 every 0.1 s), not as a
# forwarded signal: neither srun nor mpirun nor a rank that is still loading survives or keeps a
# SIGUSR1 in its first moments, and a file is still there once they are up. A stale one (from
# the run that was preempted) goes first. Sets HW_STOP_FILE (exported).
job_stop_file() { # PATH
    STOP_FILE=$1
    case $STOP_FILE in /*) ;; *) STOP_FILE=$(pwd)/$STOP_FILE ;; esac
    rm -f "$STOP_FILE"
    export HW_STOP_FILE=$STOP_FILE
}

# job_launch ARGS...: `$HW ARGS...` on every rank, in the background, waited for; sets rc (the
# launcher's exit code) and why (what an exit 4 was). A SIGUSR1 before the launch sets rc 4
# without launching.
job_launch() {
    if [ "$stop_req" = 1 ]; then
        say "not launching the ranks: nothing new to save; the $UNIT continues from $(resume_point)"
        rc=4
        why="stopped before the launch (exit 4)"
        return
    fi
    why="$STOPPED (exit 4)"
    # where srun's own lines ("task 1: Killed", "task 1: Exited with exit code 1") land: this
    # shell's stderr, the job log; read back if the launcher exits with a signal's code
    log_at=''
    [ -f /proc/$$/fd/2 ] && log_at=$(stat -L -c %s /proc/$$/fd/2 2>/dev/null)
    if [ "$HW_LAUNCH" = srun ]; then
        # --cpus-per-task is no longer inherited from sbatch in Slurm >= 22.05, so pass it on
        srun --mpi=pmix --kill-on-bad-exit=1 ${SLURM_CPUS_PER_TASK:+--cpus-per-task=$SLURM_CPUS_PER_TASK} \
            "$HW" "$@" &
    else
        # mpirun reads the allocation (no -np needed); Open MPI as root needs both variables
        if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
        local xenv=(-x OMP_NUM_THREADS -x HW_STOP_FILE) v
        for v in HW_SIGNAL_LEAD_S HW_STOP_AFTER_STEP; do
            [ -n "${!v:-}" ] && xenv+=(-x "$v")
        done
        # shellcheck disable=SC2086
        mpirun --bind-to none "${xenv[@]}" ${HW_MPIRUN_ARGS:-} "$HW" "$@" &
    fi
    child=$!
    # `wait` returns early (128 + signal) whenever a trapped signal arrives: wait again until the
    # launcher has really exited, then take its status
    while kill -0 "$child" 2>/dev/null; do wait "$child"; done
    wait "$child"
    rc=$?
    rm -f "$STOP_FILE"
}

# requeue only a job that is still RUNNING: after scancel or at the time limit (SIGTERM, state
# COMPLETING) `scontrol requeue` would still succeed and bring a cancelled job back
job_not_running() { # sets cause
    if [ "$got_term" = 1 ]; then
        cause="after SIGTERM; $UNIT ${state:-?}: cancelled or out of time"
    elif [ "$state" != RUNNING ]; then
        cause="$UNIT ${state:-unknown to scontrol}, not RUNNING"
    else
        return 1
    fi
}
job_requeue() { # exits with $rc once Slurm has taken the job back
    # the job goes back to PENDING (same id, same log) and restarts after the requeue delay
    # (slurm.conf AuthInfo=cred_expire, 120 s by default)
    trap 'exit $rc' TERM # Slurm ends this shell (SIGTERM) while it requeues the job
    if timeout 60 scontrol requeue "$JOB"; then
        sleep 30 &
        wait $!
    else
        say "scontrol requeue $JOB failed (cancelled, or not requeueable): resubmit to continue from $(resume_point)"
    fi
    exit "$rc"
}

# job_finish: after job_launch. Requeues (and exits) on a stop or a lost rank; exits when Slurm
# requeued the job from outside or a rank failed; otherwise returns, with rc 0, 1, 2 or 3 (or
# a launcher's other code) for the caller to report.
job_finish() {
    # Slurm may have requeued the job itself meanwhile (`scontrol requeue` from outside,
    # preemption with PreemptMode=REQUEUE): its SIGTERM stopped the ranks and Restarts has grown
    local info now_restarts held
    info=$(timeout 30 scontrol show job -o "$JOB" 2>/dev/null | head -n 1)
    state=$(printf '%s\n' "$info" | grep -o 'JobState=[A-Z_]*' | cut -d= -f2)
    now_restarts=$(printf '%s\n' "$info" | grep -o 'Restarts=[0-9]*' | cut -d= -f2)
    if [ -n "$now_restarts" ] && [ "$now_restarts" -gt "$RESTARTS" ]; then
        case "$info" in
        *Reason=job_requeued_in_held_state*) held=" and held: scontrol release $JOB lets it run" ;;
        *) held="" ;;
        esac
        say "exit $rc; Slurm requeued $UNIT $JOB from outside (scontrol requeue or preemption; Restarts=$now_restarts)$held; it resumes from $(resume_point) when it restarts"
        exit "$rc"
    fi
    # A lost rank: the launcher exits with 128 + the signal that killed a rank (measured with
    # SIGKILL, Slurm 22.05 and Open MPI 4.1: srun --kill-on-bad-exit and mpirun both exit 137).
    # A rank that fails by itself calls MPI_Abort with its code (1, 2, 3), which both launchers
    # return. But when a rank exits 1 without it, srun kills the others and exits 137 as well
    # (mpirun returns the 1): srun's first line about a task since the launch tells the two
    # apart, "task 1: Killed" (lost) or "task 1: Exited with exit code 1" (failed; the others'
    # "Killed" lines follow it).
    local lost=0 first failed what n
    if [ "$rc" = 5 ]; then # headwise's watchdog: a collective hung on a stopped, lost or stuck rank
        lost=1
    elif [ "$rc" -gt 128 ] && [ "$rc" -le 192 ]; then
        lost=1
        if [ "$HW_LAUNCH" = srun ] && [ -n "${log_at:-}" ]; then
            first=$(tail -c +"$((log_at + 1))" /proc/$$/fd/2 2>/dev/null |
                grep -m 1 -E '^srun: error: .*: tasks? [0-9,-]+: ')
            case $first in *": Exited with exit code "[123])
                failed=${first#srun: error: *: }
                say "error: a rank failed (srun: $failed) and srun killed the others (exit $rc): not requeued"
                exit "${failed##* }"
                ;;
            esac
        fi
    fi
    if [ $lost = 1 ]; then
        what="rank lost (launcher exit $rc)"
        if job_not_running; then
            say "$what ($cause): not requeueing; resubmit to continue from $(resume_point)"
            exit "$rc"
        fi
        # this job's requeues after lost ranks, one line each (SLURM_RESTART_COUNT also counts
        # the requeues after preemption, which are not limited)
        n=$(grep -c "^$JOB " "$COUNT_FILE" 2>/dev/null)
        n=${n:-0}
        if [ "$n" -ge "$HW_MAX_REQUEUES" ]; then
            say "error: $what; requeue limit reached (HW_MAX_REQUEUES=$HW_MAX_REQUEUES, $n done): not requeueing; resubmit to continue from $(resume_point)"
            exit "$rc"
        fi
        if ! echo "$JOB $RESTARTS $(date '+%F %T') launcher exit $rc" >>"$COUNT_FILE"; then
            say "error: $what; cannot count the requeue in $COUNT_FILE: not requeueing; resubmit to continue from $(resume_point)"
            exit "$rc"
        fi
        say "$what; requeue $((n + 1)) of $HW_MAX_REQUEUES (restart $((RESTARTS + 1)) of $UNIT $JOB); resumes from $(resume_point)"
        job_requeue
    fi
    if [ "$rc" = 4 ]; then
        if job_not_running; then
            say "$why ($cause): not requeueing; resubmit to continue from $(resume_point)"
            exit 4
        fi
        say "$why: requeueing $UNIT $JOB; resumes from $(resume_point)"
        job_requeue
    fi
}
