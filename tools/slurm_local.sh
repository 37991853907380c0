#!/bin/sh
# tools/slurm_local.sh -- a throw-away one-node Slurm cluster on this machine, for trying the
# slurm/*.sbatch scripts and for tests/slurm_cluster.sh.
#
#   tools/slurm_local.sh start    install slurm-wlm + munge if missing (apt-get, root only),
#                                 write a slurm.conf, start munged, slurmctld, slurmd and wait
#                                 until the node is idle; prints the SLURM_CONF line to export
#   tools/slurm_local.sh stop     cancel its jobs, stop exactly the daemons it started (pid
#                                 files), remove its state directory
#   tools/slurm_local.sh status   whether it runs (exit 0) or not (exit 1)
#   tools/slurm_local.sh env      print `export SLURM_CONF=...` (use: eval "$(... env)")
#
# Everything lives in $HW_SLURM_DIR (default /tmp/headwise-slurm): slurm.conf, state, spool, logs,
# pid files and a private munged (own key and socket), so it touches no system Slurm or munge
# and uses its own ports ($HW_SLURM_PORT, default 16817, and the next one for slurmd). Clients
# (sbatch, squeue, scontrol) find it through SLURM_CONF. Root is needed (slurmd runs jobs as
# their user). Every wait has a timeout; `start` and `stop` are idempotent.
set -u
DIR=${HW_SLURM_DIR:-/tmp/headwise-slurm}
PORT=${HW_SLURM_PORT:-16817}
WAIT=${HW_SLURM_WAIT:-60}  # seconds for each daemon / the node to come up
CONF=$DIR/slurm.conf
export SLURM_CONF=$CONF
PKGS="slurm-wlm munge"

say() { echo "slurm_local: $*"; }
die() { echo "slurm_local: error: $*" >&2; exit 1; }

# pid from a pid file if that process is alive and runs the expected program
live_pid() { # PIDFILE PROGRAM
    [ -f "$1" ] || return 1
    p=$(cat "$1" 2>/dev/null)
    case "$p" in '' | *[!0-9]*) return 1 ;; esac
    [ "$(cat /proc/"$p"/comm 2>/dev/null)" = "$2" ] || return 1
    # a daemon's zombie (its parent, init, has not reaped it yet) counts as gone
    case "$(sed 's/.*) //' /proc/"$p"/stat 2>/dev/null | cut -c1)" in Z | X | '') return 1 ;; esac
    echo "$p"
}

node_state() { timeout 15 sinfo -h -N -o %T 2>/dev/null | head -n 1; }

install_pkgs() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null &&
        command -v sbatch >/dev/null && command -v munged >/dev/null; then
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "slurm_local: Slurm is not installed; as root run:" >&2
        echo "  apt-get install -y --no-install-recommends $PKGS" >&2
        exit 1
    fi
    command -v apt-get >/dev/null || die "Slurm is not installed and there is no apt-get"
    say "installing $PKGS (apt-get)"
    # (where policy-rc.d allows it, the packages may start the system munge/slurm services;
    # they do not disturb this cluster: other socket, other ports)
    export DEBIAN_FRONTEND=noninteractive
    log=/tmp/slurm_local.apt.$$.log
    if ! { timeout 600 apt-get update -qq && timeout 600 apt-get install -y -qq --no-install-recommends $PKGS; } >"$log" 2>&1; then
        tail -n 5 "$log" >&2
        rm -f "$log"
        die "apt-get install $PKGS failed"
    fi
    rm -f "$log"
}

write_conf() {
    host=$(hostname -s)
    # the node as slurmd sees it (declaring more CPUs or memory than exist drains the node)
    hw=$(slurmd -C 2>/dev/null | head -n 1 | tr ' ' '\n' |
        grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore|RealMemory)=' | tr '\n' ' ')
    [ -n "$hw" ] || hw="CPUs=$(nproc) RealMemory=$(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo)"
    plugdir=$(dirname "$(ls /usr/lib/*/slurm-wlm/mpi_none.so /usr/lib*/slurm/mpi_none.so 2>/dev/null | head -n 1)")
    mpi=none
    [ -n "$(ls "$plugdir"/mpi_pmix*.so 2>/dev/null)" ] && mpi=pmix
    cat >"$CONF" <<EOF
# written by tools/slurm_local.sh: a one-node cluster without cgroups (VM/container friendly)
ClusterName=headwise
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# private munged; cred_expire (min 5) is also how long a requeued job waits (default 120 s)
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# one record per job end (also each requeue): there is no sacct without slurmdbd
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.txt
MpiDefault=$mpi
ReturnToService=2
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmdSpoolDir=$DIR/spool
StateSaveLocation=$DIR/state
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=2,sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# quick turnaround for a test cluster: SIGKILL 5 s after SIGTERM, forget jobs after 10 min
KillWait=5
MinJobAge=600
JobRequeue=1
NodeName=$host NodeAddr=127.0.0.1 $hw State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
    if live_pid "$DIR/munge/munged.pid" munged >/dev/null; then return 0; fi
    mkdir -p "$DIR/munge" && chmod 700 "$DIR/munge"
    if [ ! -s "$DIR/munge/munge.key" ]; then
        (umask 077 && dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 2>/dev/null) ||
            die "cannot write $DIR/munge/munge.key"
    fi
    chmod 400 "$DIR/munge/munge.key"
    munged --force --socket="$DIR/munge/munge.socket" --key-file="$DIR/munge/munge.key" \
        --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" \
        --seed-file="$DIR/munge/munged.seed" 2>"$DIR/munge/start.err" ||
        die "munged did not start: $(cat "$DIR/munge/start.err")"
    i=0
    until munge -n -S "$DIR/munge/munge.socket" 2>/dev/null | unmunge -S "$DIR/munge/munge.socket" >/dev/null 2>&1; do
        i=$((i + 1))
        [ $i -ge $((WAIT * 5)) ] && die "munged does not answer after ${WAIT}s (see $DIR/munge/munged.log)"
        sleep 0.2
    done
}

start_daemon() { # PROGRAM: slurmctld | slurmd (both fork and write their pid files)
    live_pid "$DIR/$1.pid" "$1" >/dev/null && return 0
    timeout "$WAIT" "$1" -f "$CONF" >"$DIR/$1.start.err" 2>&1 ||
        die "$1 did not start: $(tail -n 3 "$DIR/$1.start.err") (log: $DIR/$1.log)"
    i=0
    until live_pid "$DIR/$1.pid" "$1" >/dev/null; do
        i=$((i + 1))
        [ $i -ge $((WAIT * 5)) ] && die "$1 is not running after ${WAIT}s: $(tail -n 3 "$DIR/$1.log" 2>/dev/null)"
        sleep 0.2
    done
}

stop_pid() { # PIDFILE PROGRAM: TERM, wait up to 15 s, then KILL
    p=$(live_pid "$1" "$2") || return 0
    kill -TERM "$p" 2>/dev/null
    i=0
    while kill -0 "$p" 2>/dev/null && [ $i -lt 75 ]; do sleep 0.2; i=$((i + 1)); done
    if kill -0 "$p" 2>/dev/null; then
        say "$2 ($p) ignored SIGTERM; killing it"
        kill -KILL "$p" 2>/dev/null
    fi
}

cmd_start() {
    if [ -f "$CONF" ] && live_pid "$DIR/slurmctld.pid" slurmctld >/dev/null &&
        live_pid "$DIR/slurmd.pid" slurmd >/dev/null && live_pid "$DIR/munge/munged.pid" munged >/dev/null &&
        node_state | grep -qE '^(idle|mixed|allocated)'; then
        say "already running ($DIR)"
        echo "export SLURM_CONF=$CONF"
        return 0
    fi
    [ "$(id -u)" = 0 ] || { install_pkgs; die "the local cluster needs root (slurmd runs jobs as their user)"; }
    install_pkgs
    cmd_stop >/dev/null 2>&1 # a half-started or stale cluster: start from scratch
    mkdir -p "$DIR/state" "$DIR/spool" || die "cannot create $DIR"
    chmod 755 "$DIR"
    write_conf
    start_munge
    start_daemon slurmctld
    start_daemon slurmd
    i=0
    while :; do
        st=$(node_state)
        case "$st" in idle*) break ;; esac
        case "$st" in drain* | down*)
            [ $i -gt 25 ] && timeout 15 scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 ;;
        esac
        i=$((i + 1))
        if [ $i -ge $((WAIT * 5)) ]; then
            timeout 15 scontrol show node 2>&1 | grep -E 'State|Reason' >&2
            die "node not idle after ${WAIT}s (state '${st:-no answer}'; logs in $DIR)"
        fi
        sleep 0.2
    done
    say "one-node cluster up: $(timeout 15 sinfo -h -o '%P %D %c CPUs %T' | head -n 1); MpiDefault=$(sed -n 's/^MpiDefault=//p' "$CONF")"
    echo "export SLURM_CONF=$CONF"
}

cmd_stop() {
    if [ ! -d "$DIR" ]; then
        say "not running"
        return 0
    fi
    if live_pid "$DIR/slurmctld.pid" slurmctld >/dev/null; then
        jobs=$(timeout 15 squeue -h -o %A 2>/dev/null | tr '\n' ' ')
        if [ -n "${jobs% }" ]; then
            timeout 15 scancel $jobs 2>/dev/null
            i=0 # let slurmd end the job steps (KillWait=5)
            while [ -n "$(timeout 15 squeue -h -o %A 2>/dev/null)" ] && [ $i -lt 60 ]; do sleep 0.25; i=$((i + 1)); done
        fi
    fi
    stop_pid "$DIR/slurmd.pid" slurmd
    stop_pid "$DIR/slurmctld.pid" slurmctld
    stop_pid "$DIR/munge/munged.pid" munged
    case "$DIR" in /tmp/?* | /var/tmp/?*) rm -rf "$DIR" ;; *) say "left $DIR (not under /tmp)" ;; esac
    say "stopped"
}

cmd_status() {
    if [ -f "$CONF" ] && live_pid "$DIR/slurmctld.pid" slurmctld >/dev/null; then
        say "running ($DIR): node $(node_state)"
        echo "export SLURM_CONF=$CONF"
        return 0
    fi
    say "not running"
    return 1
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
env) echo "export SLURM_CONF=$CONF" ;;
*)
    echo "usage: tools/slurm_local.sh start|stop|status|env" >&2
    exit 2
    ;;
esac
