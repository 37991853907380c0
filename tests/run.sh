#!/bin/sh
# tests/run.sh -- run every test: the C unit tests (build/tests/test_*) and the end-to-end CLI
# scripts (tests/cli_*.sh, which drive build/headwise). Prints one line per test and ends with
# "N passed, N failed, N skipped" (a test that exits 77 was skipped: it prints why). Run from the repository root; BUILD selects the build directory.
BUILD=${BUILD:-build}
HW=$BUILD/headwise
export HW_TESTS_DIR=tests
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1
# one node, no network: the ob1 messaging layer without probing UCX saves about 0.2 s per
# mpirun-launched rank (a headwise singleton picks these itself: dist.c singleton_defaults)
export OMPI_MCA_pml=${OMPI_MCA_pml:-ob1} OMPI_MCA_osc=${OMPI_MCA_osc:-^ucx}
logdir=$BUILD/test-logs
rm -rf "$logdir" && mkdir -p "$logdir"
pass=0
fail=0
skip=0
failed=""
run_one() { # name, command...
    name=$1
    shift
    t0=$(date +%s.%N)
    "$@" >"$logdir/$name.log" 2>&1
    rc=$?
    if [ $rc = 0 ]; then
        st=PASS
        pass=$((pass + 1))
    elif [ $rc = 77 ]; then # the test needs something this machine lacks (a GPU): it says what
        st=SKIP
        skip=$((skip + 1))
    else
        st=FAIL
        fail=$((fail + 1))
        failed="$failed $name"
    fi
    t1=$(date +%s.%N)
    printf '%-28s %s  (%.1fs)  %s\n' "$name" "$st" "$(awk "BEGIN{print $t1 - $t0}")" \
        "$(grep -E 'checks,|SKIP' "$logdir/$name.log" | tr '\n' ' ' | cut -c1-90)"
    if [ $st = FAIL ]; then
        tail -n 25 "$logdir/$name.log" | sed 's/^/    | /'
    fi
}
for t in "$BUILD"/tests/mpi_*; do
    case "$t" in *.d) continue ;; esac
    [ -x "$t" ] || continue
    base=$(basename "$t")
    if ! command -v mpirun >/dev/null 2>&1; then
        echo "$base SKIP (mpirun not installed)"
        continue
    fi
    for np in 2 4; do
        ASAN_OPTIONS=detect_leaks=0 run_one "${base}_np$np" mpirun -np $np --oversubscribe \
            --bind-to none -x OMP_NUM_THREADS=1 "$t"
    done
done
for t in "$BUILD"/tests/test_*; do
    case "$t" in *.d) continue ;; esac
    [ -x "$t" ] || continue
    name=$(basename "$t")
    # Open MPI's plugins leak by design; leak-check only the tests that never start MPI.
    if [ -n "$HW_SANITIZE" ] && grep -q dist_init "tests/$name.c" 2>/dev/null; then
        ASAN_OPTIONS=detect_leaks=0 run_one "$name" "$t"
    else
        run_one "$name" "$t"
    fi
done
for s in tests/cli_*.sh; do
    name=$(basename "$s" .sh)
    ASAN_OPTIONS=detect_leaks=0 run_one "$name" sh "$s" "$HW"
done
# a real one-node Slurm cluster (installs slurm-wlm and munge as root; SKIPs otherwise); not
# repeated in the sanitizer build
if [ -z "$HW_SANITIZE" ]; then
    run_one slurm_cluster sh tests/slurm_cluster.sh "$HW"
fi
# make demo end to end, and its model learning the synthetic tasks: minutes of training, so
# not repeated in the sanitizer build
if [ -z "$HW_SANITIZE" ]; then
    run_one demo_learns sh tests/demo_learns.sh "$HW"
fi
if command -v clang-format >/dev/null 2>&1; then
    run_one format make --no-print-directory format-check
else
    echo "format                       SKIP (clang-format not installed)"
fi
echo "logs: $logdir"
[ -n "$failed" ] && echo "failed:$failed"
echo "$pass passed, $fail failed, $skip skipped"
[ $fail = 0 ]
