#!/bin/sh
# bench/titans_cp_pipeline.sh -- builds bench/titans_cp_pipeline.c and prints one markdown table
# of the Titans context-parallel chain's idle time, blocking vs pipelined, at np 2 (one core a
# rank on a 2-core machine) and np 4 (oversubscribed). Usage, from the repository root:
#   sh bench/titans_cp_pipeline.sh [N] [reps] [M...]      (default 128 5 1 2 4 8)
# Env: BUILD (default build), NPS (default "2 4"), REPEATS (whole runs per np, default 1).
set -e
BUILD=${BUILD:-build}
NPS=${NPS:-2 4}
REPEATS=${REPEATS:-1}
BIN=$BUILD/bench/titans_cp_pipeline
make --no-print-directory -j2 "$BIN" >/dev/null
# mpirun as tests/lib.sh runs it: oversubscribed 2-core machines, root allowed, one thread a rank
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1
MPIRUN="mpirun --oversubscribe --bind-to none -x OMP_NUM_THREADS=1"
cores=$(nproc)
out=$(mktemp /tmp/titans_cp.XXXXXX)
trap 'rm -f "$out"' EXIT
echo "cores $cores; load before: $(uptime | sed 's/.*load average/load average/')"
first=1
for np in $NPS; do
    if [ "$np" -gt "$cores" ]; then
        echo "WARNING: np $np > $cores cores: ranks share cores, so idle fractions at np $np" \
            "are not meaningful (a waiting rank's core runs another rank)"
    fi
    i=1
    while [ $i -le "$REPEATS" ]; do
        $MPIRUN -np "$np" "$BIN" "$@" >"$out"
        if [ $first = 1 ]; then
            grep '^titans cp pipeline' "$out" | sed 's/R [0-9]*, //'
            grep '^bytes per hand-off' "$out"
            grep '^| R \|^|---' "$out" | sed 's/^| R | M | mode |/| R | M | mode | run |/;
                s/^|---|/|---|---|/'
            first=0
        fi
        grep '^| [0-9]' "$out" | sed "s/^\(| [0-9]* | [0-9]* | [a-z]* |\)/\1 $i |/"
        i=$((i + 1))
    done
done
echo "load after: $(uptime | sed 's/.*load average/load average/')"
