#!/bin/sh
# bench/profile_step.sh -- where a training step of the bench model spends its time: perf samples
# the steady-state steps (recording starts after the start-up, DELAY_MS) and the samples are
# grouped into the GEMMs (OpenBLAS sgemm_*: kernels, packing, beta scaling), attention, the
# element-wise kernels and the optimizer by symbol; prints each group's share and the share
# outside the GEMMs. Needs perf (Debian linux-perf). Usage: sh bench/profile_step.sh
# [build/headwise] [steps] (THREADS, DELAY_MS and extra overrides in EXTRA).
set -e
HW=${1:-build/headwise}
STEPS=${2:-12}
THREADS=${THREADS:-2}
DELAY_MS=${DELAY_MS:-4000}
OUT=runs/profile
DATA=runs/bench-data
command -v perf >/dev/null || { echo "perf not installed (apt-get install linux-perf)"; exit 1; }
mkdir -p "$OUT"
if [ ! -f "$DATA/train.h5" ]; then
    "$HW" data prepare --synthetic --bytes 2000000 --vocab 8192 --out "$DATA" >/dev/null
fi
rm -rf "$OUT/run"
# shellcheck disable=SC2086
perf record -q -D "$DELAY_MS" -o "$OUT/perf.data" -- "$HW" train configs/bench-gpt.yaml \
    train.steps="$STEPS" train.threads="$THREADS" data.train="$DATA/train.h5" \
    run.dir="$OUT/run" ${EXTRA:-} >"$OUT/train.log" 2>&1
perf report -q -i "$OUT/perf.data" --no-children --sort symbol -g none 2>/dev/null |
    awk '$1 ~ /%$/ { p = $1; sub(/%/, "", p); s = $3; if ($2 == "[k]") s = "[kernel]"
           g = "other"
           if (s ~ /^sgemm_|^cblas_sgemm|^blas_|^gemm_/) g = "gemm (OpenBLAS)"
           else if (s ~ /attention|forward_rows|backward_rows|row_visible|transpose_side/) g = "attention (outside its tile products)"
           else if (s ~ /adamw|sumsq|clip/) g = "optimizer and grad norm"
           else if (s ~ /swiglu|gelu|rmsnorm|rope|residual|embed|row_loss|xent|memset|memmove|memcpy/) g = "element-wise, norms, copies"
           else if (s == "[kernel]") g = "kernel (page faults, scheduling)"
           t[g] += p; all += p }
         END { for (g in t) printf "%-40s %6.1f%%\n", g, 100 * t[g] / all
               printf "%-40s %6.1f%%\n", "outside the GEMMs", 100 * (all - t["gemm (OpenBLAS)"]) / all }' |
    tee "$OUT/summary.txt"
