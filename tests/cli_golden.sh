#!/bin/sh
# tests/cli_golden.sh -- the numbers of every model family on one rank and on the grids
# data 2 x heads 2, context 2 ring and context 2 Ulysses (losses, learning rates, gradient
# norms, validation metrics, MoH statistics, rec metrics, greedy and seeded samples, perplexity)
# match tests/golden/expected/, recorded from main before the structure redesign with
# `sh tests/golden/cases.sh build/headwise tests/golden/expected` (see that script). On the CPU
# that recorded them they are bit-identical; on another CPU (other OpenBLAS kernels, other
# -march=native code) the last bits of a sum move, so each number must agree within a relative
# 1e-5 (tests/golden/numclose.awk) and the text between numbers must match exactly.
. tests/lib.sh
if ! command -v mpirun >/dev/null 2>&1; then
    echo "SKIP cli_golden: mpirun not installed (the golden cases need 2 and 4 ranks)"
    exit 0
fi
ok "every golden case runs" sh tests/golden/cases.sh "$HW" "$T/got"
for f in tests/golden/expected/*; do
    b=$(basename "$f")
    if cmp -s "$f" "$T/got/$b"; then
        ok "$b bit-identical" true
    else
        r=$(awk -v rtol=1e-5 -v atol=1e-7 -f tests/golden/numclose.awk "$f" "$T/got/$b" 2>&1)
        ok "$b within float rounding ($r)" [ $? = 0 ]
    fi
done
finish
