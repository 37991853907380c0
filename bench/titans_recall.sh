#!/bin/sh
# bench/titans_recall.sh -- the Titans experiment (docs/titans.md): associative recall with
# sequences >= 8x the attention window. Trains the same 2-layer model three times (sliding-window
# attention only; + MAG, + MAL, + MAC memory on both layers; VARIANTS overrides) and prints recall
# accuracy at lengths 64..512 and the training tokens/s of each.
# Usage: sh bench/titans_recall.sh [STEPS] [SEED]   (default 1200 steps: 1-5 minutes per variant
# on 1 core); VARIANTS="none mag magp mal mac" picks the variants (magp: MAG + 4 persistent tokens)
set -e
steps=${1:-1200}
seed=${2:-1}
make --no-print-directory build/bench/titans_recall >/dev/null
echo "# titans_recall: $steps steps, seed $seed, train T=128, window <= 16 tokens (S2 block 8 x 2)"
for v in ${VARIANTS:-none mag mal mac}; do
    OMP_NUM_THREADS=1 build/bench/titans_recall "$v" "$steps" "$seed"
done
