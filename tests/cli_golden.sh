#!/bin/sh
# tests/cli_golden.sh -- the numbers of every model family on one rank and on the grids
# data 2 x heads 2, context 2 ring and context 2 Ulysses (losses, learning rates, gradient
# norms, validation metrics, MoH statistics, rec metrics, greedy and seeded samples, perplexity)
# are bit-identical to tests/golden/expected/, recorded from main before the structure redesign
# with `sh tests/golden/cases.sh build/headwise tests/golden/expected` (see that script).
. tests/lib.sh
if ! command -v mpirun >/dev/null 2>&1; then
    echo "SKIP cli_golden: mpirun not installed (the golden cases need 2 and 4 ranks)"
    exit 0
fi
ok "every golden case runs" sh tests/golden/cases.sh "$HW" "$T/got"
for f in tests/golden/expected/*; do
    b=$(basename "$f")
    ok "$b bit-identical" cmp -s "$f" "$T/got/$b"
done
finish
