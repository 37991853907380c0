#!/bin/sh
# bench/bf16_curve.sh -- train.precision bf16 against fp32 on the same run: the demo model
# (configs/demo.yaml: d 256, 2 layers, T 128, batch 16) on the built-in synthetic task corpus,
# STEPS steps (default 300) in each precision with the same seed and batches. Prints the
# largest and the mean relative loss difference over the steps, the two final validation
# losses, and the tokens/s ratio (fp32 and bf16 interleaved in ROUNDS pairs of 30-step runs,
# median ratio). Usage: sh bench/bf16_curve.sh [build/headwise] [steps]
# (SKIP_CURVE=1 re-reads the last curve's runs; ROUNDS=0 skips the speed pairs)
set -e
HW=${1:-build/headwise}
STEPS=${2:-300}
ROUNDS=${ROUNDS:-3}
OUT=runs/bf16-curve
DATA=$OUT/data
mkdir -p "$OUT"
[ -f "$DATA/train.h5" ] ||
    "$HW" data prepare --synthetic --bytes 1000000 --vocab 272 --out "$DATA" >/dev/null
run() { # precision steps dir
    rm -rf "$3"
    "$HW" train configs/demo.yaml train.precision="$1" train.steps="$2" train.val_every=0 \
        train.log_every=1000 data.train="$DATA/train.h5" data.val="$DATA/val.h5" \
        run.dir="$3" run.tensorboard=false run.ckpt_every=0 >"$3.log" 2>&1
}
losses() { sed -n 's/.*"step":\([0-9]*\),"loss":\([^,]*\),.*/\1 \2/p' "$1/metrics.jsonl"; }
[ -n "${SKIP_CURVE:-}" ] || run fp32 "$STEPS" "$OUT/fp32"
[ -n "${SKIP_CURVE:-}" ] || run bf16 "$STEPS" "$OUT/bf16"
losses "$OUT/fp32" >"$OUT/fp32.loss"
losses "$OUT/bf16" >"$OUT/bf16.loss"
echo "== loss curve, $STEPS steps (configs/demo.yaml, seed 1337, the same batches)"
paste "$OUT/fp32.loss" "$OUT/bf16.loss" | awk '
    { r = ($4 - $2) / $2; if (r < 0) r = -r; s += r; n++; if (r > m) { m = r; ms = $1 } }
    END { printf "relative loss difference bf16 vs fp32, per step: max %.2f%% (step %d), mean %.3f%%\n",
          100 * m, ms, 100 * s / n }'
# the curves as a user plots them: means over 10-step windows
paste "$OUT/fp32.loss" "$OUT/bf16.loss" | awk '
    { a += $2; b += $4; k++ }
    k == 10 { r = (b - a) / a; if (r < 0) r = -r; if (r > m) { m = r; ms = $1 }; a = b = k = 0 }
    END { printf "relative loss difference, 10-step means: max %.2f%% (window ending at step %d)\n",
          100 * m, ms }'
for p in fp32 bf16; do
    printf '%s: first loss %s, last loss %s, final val %s\n' "$p" \
        "$(head -n 1 "$OUT/$p.loss" | cut -d' ' -f2)" "$(tail -n 1 "$OUT/$p.loss" | cut -d' ' -f2)" \
        "$(sed -n 's/.*"val_loss":\([^,}]*\).*/\1/p' "$OUT/$p/metrics.jsonl" | tail -n 1)"
done
[ "$ROUNDS" -gt 0 ] || exit 0
echo "== speed: $ROUNDS interleaved pairs of 30-step runs (tokens/s over steps 3..30)"
tps() { awk -F'"tokens_per_s":' 'NR > 2 && NF > 1 { split($2, a, ","); s += a[1]; n++ }
        END { printf "%.0f", s / n }' "$1/metrics.jsonl"; }
i=0
: >"$OUT/ratios"
while [ $i -lt "$ROUNDS" ]; do
    run fp32 30 "$OUT/s32"
    run bf16 30 "$OUT/s16"
    a=$(tps "$OUT/s32")
    b=$(tps "$OUT/s16")
    echo "  pair $((i + 1)): fp32 $a tok/s, bf16 $b tok/s, load $(cut -d' ' -f1 /proc/loadavg)"
    awk -v a="$a" -v b="$b" 'BEGIN { print b / a }' >>"$OUT/ratios"
    i=$((i + 1))
done
sort -g "$OUT/ratios" | awk '{ v[NR] = $1 } END { printf "bf16 / fp32 tokens/s, median: %.2fx\n", v[int((NR + 1) / 2)] }'
