#!/bin/sh
# tests/cli_multihost.sh -- ranks on two emulated hosts: two network namespaces, each with its
# own hostname (a UTS namespace), joined by a veth pair with addresses from the benchmarking
# range 198.18.0.0/15 (RFC 2544); mpirun runs on host a and starts its orted on host b through a
# plm_rsh_agent script (`ip netns exec` instead of ssh); Open MPI's TCP transport is limited to
# the test subnet by CIDR (btl_tcp_if_include, oob_tcp_if_include), since interface names
# differ per host. Checks: data x heads, heads x context (ring) and data x context (ulysses)
# grids split across the hosts give the one-rank losses and gradient norms (rel 1e-5), the
# traffic went over the veth pair, and a checkpoint written across the hosts by data 2 x heads 2
# resumes on context 4 (ring neighbours on alternating hosts) with the losses of an
# uninterrupted run; dist.heads given as a list keeps every head group on one host. Recipe:
# docs/distributed.md. Needs root, iproute2 (ip netns), util-linux (unshare) and mpirun; exits
# 77 with a SKIP line otherwise.
. tests/lib.sh
name=cli_multihost
skip() {
    echo "SKIP $name: $*"
    exit 77
}
[ "$(id -u)" = 0 ] || skip "needs root (network namespaces)"
command -v ip >/dev/null || skip "ip not installed (Debian iproute2)"
command -v unshare >/dev/null || skip "unshare not installed (Debian util-linux)"
command -v mpirun >/dev/null || skip "mpirun not installed (Debian openmpi-bin)"
[ -x "$HW" ] || skip "$HW not built"

# names unique to this run; 198.18.<x>.0/24 inside the namespaces only, so it cannot clash
# with the machine's own networks (and a second run uses other namespaces)
NSA=hwmh$$a
NSB=hwmh$$b
HA=hw-host-a
HB=hw-host-b
NET=198.18.$(($$ % 250 + 1))
CIDR=$NET.0/24
cleanup() {
    for ns in $NSA $NSB; do
        # the processes this test started inside its namespaces (an orted left by a timeout)
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null # removes the veth pair with it
    done
    [ -n "$HW_KEEP" ] || rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if ! ip netns add $NSA 2>"$T/ns.err"; then
    skip "cannot create a network namespace here: $(head -n 1 "$T/ns.err")"
fi
ip netns add $NSB &&
    ip link add "${NSA}v" type veth peer name "${NSB}v" &&
    ip link set "${NSA}v" netns $NSA && ip link set "${NSB}v" netns $NSB &&
    ip -n $NSA addr add "$NET.1/24" dev "${NSA}v" && ip -n $NSB addr add "$NET.2/24" dev "${NSB}v" &&
    ip -n $NSA link set "${NSA}v" up && ip -n $NSB link set "${NSB}v" up &&
    ip -n $NSA link set lo up && ip -n $NSB link set lo up 2>"$T/ns.err" ||
    skip "cannot set up the veth pair: $(head -n 1 "$T/ns.err")"
unshare --uts true 2>"$T/ns.err" || skip "unshare --uts fails: $(head -n 1 "$T/ns.err")"

# the rsh agent: Open MPI calls AGENT HOST ORTED-COMMAND... as it would call ssh; this one runs
# the command in HOST's namespace under HOST's name (the shell parses it, as sshd's would)
cat >"$T/agent.sh" <<EOF
#!/bin/sh
host=\$1
shift
case \$host in
$HA) ns=$NSA ;;
$HB) ns=$NSB ;;
*) echo "agent: unknown host \$host" >&2; exit 1 ;;
esac
exec ip netns exec "\$ns" unshare --uts sh -c 'echo "\$0" >/proc/sys/kernel/hostname && eval "\$1"' "\$host" "\$*"
EOF
chmod +x "$T/agent.sh"
# on_a CMD...: CMD on host a (where mpirun runs), at most 180 s
on_a() {
    timeout 180 ip netns exec $NSA unshare --uts sh -c \
        'echo "$0" >/proc/sys/kernel/hostname && exec "$@"' $HA "$@"
}
# both "hosts" share this machine's cores: with more ranks than cores, a rank that busy-polls
# TCP holds the core its peer needs (60 s instead of 1.4 s a run on 2 cores), so idle ranks yield
MH="mpirun --host $HA:2,$HB:2 --bind-to none -x OMP_NUM_THREADS=1 --display-map
    --mca plm_rsh_agent $T/agent.sh --mca btl self,vader,tcp --mca mpi_yield_when_idle 1
    --mca btl_tcp_if_include $CIDR --mca oob_tcp_if_include $CIDR"
rx_b() { ip -n $NSB -s link show "${NSB}v" | awk '/RX:/ {getline; print $1; exit}'; }
# split MAPFILE: both hosts ran 2 ranks (mpirun --display-map)
split() {
    awk -v a=$HA -v b=$HB '/Data for node:/ { n = $4; p = $NF } /Num procs:/ { c[n] = $NF }
        END { exit !(c[a] == 2 && c[b] == 2) }' "$1"
}

D=$T/data
prepare_tiny "$D"
set -- configs/tiny.yaml data.train="$D/train.h5" data.val="$D/val.h5" model.n_kv_heads=4 \
    train.steps=8 run.ckpt_every=4 train.threads=1
expect_exit 0 "one rank, 8 steps" "$HW" train "$@" run.dir="$T/one"
metric_lines "$T/one/metrics.jsonl" >"$T/m1"
expect_exit 0 "mpirun reaches both hosts" on_a $MH -np 4 cat /proc/sys/kernel/hostname
ok "  ranks on $HA and $HB, 2 each" sh -c \
    "[ \$(grep -c '^$HA\$' '$T/out') = 2 ] && [ \$(grep -c '^$HB\$' '$T/out') = 2 ]"

# by slot: ranks 0,1 on host a and 2,3 on host b, so the outer dimension of the grid crosses
# the hosts; by node: 0,2 on a and 1,3 on b, so the inner one (heads innermost) does
for g in "2 2 1 ring node heads" "1 2 2 ring slot context" "2 1 2 ulysses node context"; do
    set -- $g
    dp=$1 hp=$2 cp=$3 mode=$4 map=$5 across=$6
    set -- configs/tiny.yaml data.train="$D/train.h5" data.val="$D/val.h5" model.n_kv_heads=4 \
        train.steps=8 run.ckpt_every=4 train.threads=1
    dir=$T/g$dp$hp$cp$mode
    rx0=$(rx_b)
    expect_exit 0 "2 hosts x 2 ranks: data $dp x heads $hp x context $cp ($mode), $across across the hosts" \
        on_a $MH -np 4 --map-by $map "$HW" train "$@" dist.data=$dp dist.heads=$hp \
        dist.context=$cp dist.context_mode=$mode run.dir="$dir"
    ok "  2 ranks on each host" split "$T/out"
    rx1=$(rx_b)
    ok "  over the veth pair ($((rx1 - rx0)) bytes into host b)" test $((rx1 - rx0)) -gt 100000
    metric_lines "$dir/metrics.jsonl" >"$T/mg"
    ok "  same losses and grad norms as one rank (rel 1e-5)" close "$T/m1" "$T/mg" 1e-5
done

# dist.heads as a list: the first size whose head groups stay on one host is chosen (by slot,
# heads 4 would span both hosts, so 2; by node, every pair spans them, so 1), and the run
# still gives the one-rank losses
for g in "slot 4,2 2 2" "node 2,1 1 4"; do
    set -- $g
    map=$1 list=$2 want=$3 dp=$4
    set -- configs/tiny.yaml data.train="$D/train.h5" data.val="$D/val.h5" model.n_kv_heads=4 \
        train.steps=8 run.ckpt_every=4 train.threads=1
    dir=$T/h$map
    expect_exit 0 "2 hosts x 2 ranks by $map, dist.heads [$list]" on_a $MH -np 4 --map-by $map \
        "$HW" train "$@" "dist.heads=[$list]" run.dir="$dir"
    ok "  heads $want chosen, data $dp (auto)" grep -q "grid chosen for 4 ranks: data $dp (auto), heads $want, context 1" "$T/out"
    ok "  the larger size was passed over: its head groups would span the hosts" \
        grep -q "skipped: heads ${list%%,*}: a head group would span two nodes" "$T/out"
    metric_lines "$dir/metrics.jsonl" >"$T/mg"
    ok "  same losses and grad norms as one rank (rel 1e-5)" close "$T/m1" "$T/mg" 1e-5
done

# a checkpoint written across the hosts resumes on another grid across them
set -- configs/tiny.yaml data.train="$D/train.h5" data.val="$D/val.h5" model.n_kv_heads=4 \
    train.steps=8 run.ckpt_every=4 train.threads=1
HW_STOP_AFTER_STEP=4 expect_exit 4 "data 2 x heads 2 across the hosts, preempted at step 4" \
    on_a $MH -np 4 -x HW_STOP_AFTER_STEP "$HW" train "$@" dist.data=2 dist.heads=2 run.dir="$T/rs"
unset HW_STOP_AFTER_STEP
expect_exit 0 "  resumed on context 4 (ring), neighbours on alternating hosts, to step 8" \
    on_a $MH -np 4 --map-by node "$HW" train "$@" dist.context=4 run.dir="$T/rs"
ok "  resumed from the step-4 checkpoint" grep -q "resumed from $T/rs/ckpt_00000004.h5 at step 4" \
    "$T/out"
metric_lines "$T/rs/metrics.jsonl" >"$T/mr"
ok "  losses continue the one-rank run (rel 1e-5)" close "$T/m1" "$T/mr" 1e-5
expect_exit 0 "  the final checkpoint verifies" "$HW" ckpt verify "$T/rs/ckpt_00000008.h5"
finish
