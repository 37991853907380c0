# tests/lib.sh -- helpers for the end-to-end CLI tests (sourced). Each check prints ok/FAIL and
# counts; `finish` prints "<test>: N checks, N failed" and sets the exit status.
HW=${1:-build/headwise}
T=$(mktemp -d /tmp/hwtest.XXXXXX)
trap '[ -n "$HW_KEEP" ] || rm -rf "$T"' EXIT
n_checks=0
n_failed=0
ok() { # description, then a command that must succeed
    d=$1
    shift
    n_checks=$((n_checks + 1))
    if "$@"; then echo "ok   $d"; else echo "FAIL $d"; n_failed=$((n_failed + 1)); fi
}
# expect_exit CODE DESCRIPTION CMD... : runs CMD, stores stderr in $T/err, checks the exit code
expect_exit() {
    code=$1
    d=$2
    shift 2
    "$@" >"$T/out" 2>"$T/err"
    rc=$?
    n_checks=$((n_checks + 1))
    if [ $rc = "$code" ]; then
        echo "ok   $d (exit $rc)"
    else
        echo "FAIL $d: exit $rc, expected $code"
        sed 's/^/     /' "$T/err" | tail -5
        n_failed=$((n_failed + 1))
    fi
}
# stderr of the last expect_exit contains a fixed string
err_has() {
    n_checks=$((n_checks + 1))
    if grep -qF -- "$1" "$T/err"; then echo "ok   stderr has: $1"; else
        echo "FAIL stderr lacks: $1"
        sed 's/^/     /' "$T/err" | tail -5
        n_failed=$((n_failed + 1))
    fi
}
# the numeric fields (loss, lr, grad_norm, val_loss) of metrics.jsonl for steps > $2
metric_lines() {
    sed -n 's/.*"step":\([0-9]*\),"loss":\([^,]*\),"lr":\([^,]*\),"grad_norm":\([^,]*\),.*/\1 \2 \3 \4/p' "$1" |
        awk -v from="${2:-0}" '$1 > from'
}
finish() {
    echo "$(basename "$0" .sh): $n_checks checks, $n_failed failed"
    [ $n_failed = 0 ]
}
prepare_tiny() { # DIR
    "$HW" data prepare --synthetic --bytes 200000 --vocab 300 --out "$1" >/dev/null
}
# mpirun as the tests need it: oversubscribed 2-core machines, root allowed, one thread a rank
MPIRUN="mpirun --oversubscribe --bind-to none -x OMP_NUM_THREADS=1"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1
# one node, no network: the ob1 messaging layer without probing UCX saves about 0.2 s per
# mpirun-launched rank (a headwise singleton picks these itself: dist.c singleton_defaults)
export OMPI_MCA_pml=${OMPI_MCA_pml:-ob1} OMPI_MCA_osc=${OMPI_MCA_osc:-^ucx}
# close A B TOL: every "loss grad_norm" pair of two metric_lines files agrees within rel TOL
close() {
    awk -v tol="$3" 'NR==FNR { a[FNR] = $2 " " $4; n = FNR; next }
        { split(a[FNR], x, " ");
          if (FNR > n) bad = 1;
          for (i = 1; i <= 2; i++) { v = (i == 1 ? $2 : $4); d = x[i] - v; if (d < 0) d = -d;
              s = v < 0 ? -v : v; if (s < 1) s = 1; if (d > tol * s) bad = 1 } m = FNR }
        END { exit (bad || m != n) }' "$1" "$2"
}
# xml_ok FILE: the file is well-formed XML (python3's parser or xmllint); without either, every
# file passes and xml_check_available has said the check is skipped
xml_check_available() {
    if [ ! -x /usr/bin/python3 ] && ! command -v xmllint >/dev/null 2>&1; then
        echo "SKIP SVG well-formedness: neither /usr/bin/python3 nor xmllint is installed"
    fi
}
xml_ok() {
    if [ -x /usr/bin/python3 ]; then
        /usr/bin/python3 -c 'import xml.dom.minidom,sys; xml.dom.minidom.parse(sys.argv[1])' "$1"
    elif command -v xmllint >/dev/null 2>&1; then
        xmllint --noout "$1"
    fi
}
# wait_line FILE PATTERN: until FILE has a line matching the grep PATTERN (at most 60 s)
wait_line() {
    wl=0
    while [ $wl -lt 600 ] && ! grep -q -- "$2" "$1" 2>/dev/null; do
        sleep 0.1
        wl=$((wl + 1))
    done
}
# rank_pid_of PATTERN RANK: the pid of the process whose command line matches the pgrep -f
# PATTERN and whose launcher made it world rank RANK (OMPI_COMM_WORLD_RANK)
rank_pid_of() {
    for p in $(pgrep -f "$1"); do
        if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2"; then
            echo "$p"
            return
        fi
    done
}
# pypi_venv NAME MODULE PKG... : a venv beside the build (made once) with PyPI packages; prints
# its python, or nothing (with the reason in $T/pip.log) when they cannot be installed
pypi_venv() {
    v=$(dirname "$HW")/$1
    mod=$2
    shift 2
    if [ ! -x "$v/bin/python" ] || ! "$v/bin/python" -c "import $mod" 2>/dev/null; then
        rm -rf "$v"
        python3 -m venv "$v" >/dev/null 2>&1 &&
            timeout 300 "$v/bin/pip" install --quiet "$@" >"$T/pip.log" 2>&1 || true
    fi
    "$v/bin/python" -c "import $mod" 2>/dev/null && echo "$v/bin/python"
}
# ml_venv: the venv beside the build that the ecosystem tests share (tools/ml_venv.sh, which
# `make test` runs first; made here when missing). Prints its python, or nothing (the reason is
# in $T/pip.log).
ml_venv() {
    sh tools/ml_venv.sh "$(dirname "$HW")/ml-venv" 2>"$T/pip.log"
}
