#!/bin/sh
# bench/save_bench.sh -- what checkpoints cost training: the bench model (configs/bench-gpt.yaml,
# 13.7M parameters, a 165 MB checkpoint) and one ten times larger (d_model 1152, d_ff 3072:
# 105M parameters, 1.26 GB, saved every 8 steps), on 1 rank and on 4 (data 2 x heads 2), each with no checkpoints,
# synchronous ones and background ones (run.async_save). Per run: the mean time a step costs
# the training loop (its compute plus the seconds the loop stood still for a save: the whole
# write when synchronous, the snapshot when in the background), the save's seconds, and the
# overhead over no saves. Usage: sh bench/save_bench.sh [build/headwise]
# (MODELS, RANKS, SMALL_STEPS, BIG_STEPS, SMALL_EVERY, BIG_EVERY override the defaults.)
set -e
HW=${1:-build/headwise}
PY=${PYTHON:-python3}
OUT=runs/save-bench
DATA=runs/bench-data
RANKS=${RANKS:-"1 4"}
mkdir -p "$OUT"
if [ ! -f "$DATA/train.h5" ]; then
    "$HW" data prepare --synthetic --bytes 2000000 --vocab 8192 --out "$DATA" >/dev/null
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
big="model.d_model=1152 model.n_heads=18 model.n_kv_heads=18 model.d_ff=3072"
printf '%-6s %-5s %-6s %10s %10s %10s %9s\n' model ranks saves step_s stall_s write_s overhead
for model in ${MODELS:-bench big}; do
    if [ $model = bench ]; then
        over=${SMALL_EXTRA:-} steps=${SMALL_STEPS:-40} every=${SMALL_EVERY:-5}
    else
        over=$big steps=${BIG_STEPS:-24} every=${BIG_EVERY:-8}
    fi
    for ranks in $RANKS; do
        if [ "$ranks" = 1 ]; then
            launch="" grid="" threads=${THREADS1:-2}
        else
            launch="mpirun --oversubscribe --bind-to none -np $ranks -x OMP_NUM_THREADS=1"
            grid="dist.heads=2" threads=1
        fi
        base=''
        for mode in none sync async; do
            dir=$OUT/$model-$ranks-$mode
            rm -rf "$dir"
            case $mode in
            none) s="run.ckpt_every=0" ;;
            sync) s="run.ckpt_every=$every run.async_save=false" ;;
            async) s="run.ckpt_every=$every run.async_save=true" ;;
            esac
            # shellcheck disable=SC2086
            $launch "$HW" train configs/bench-gpt.yaml data.train="$DATA/train.h5" data.val="" \
                train.steps=$((steps + 1)) train.threads=$threads run.keep=2 $over $grid $s \
                run.dir="$dir" >"$dir.log" 2>&1
            # the last step's save is always synchronous (the run ends): leave that step out
            mb=$(sed -n 's/.* \([0-9]*\) steps x \([0-9]*\) tok.*/\2/p' "$dir.log" | head -n 1)
            line=$("$PY" - "$dir/metrics.jsonl" "$steps" "$mb" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
n = int(sys.argv[2])
rows = [r for r in rows if 2 <= r["step"] <= n]  # step 1: first touches
tps = [r["tokens_per_s"] for r in rows]
tok = int(sys.argv[3])  # tokens per step
step = sum(tok / t for t in tps) / len(rows)
stall = sum(r.get("ckpt_s", 0.0) for r in rows) / len(rows)
w = [r["ckpt_write_s"] for r in rows if "ckpt_write_s" in r]
w += [r["ckpt_s"] for r in rows if "ckpt_s" in r and not any("ckpt_write_s" in q for q in rows)]
write = sum(w) / len(w) if w else 0.0
print("%.4f %.4f %.4f" % (step, stall, write))
EOF
            )
            set -- $line
            cost=$(awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", a + b }')
            [ $mode = none ] && base=$cost
            printf '%-6s %-5s %-6s %10s %10s %10s %8s%%\n' $model "$ranks" $mode "$1" "$2" "$3" \
                "$(awk -v c="$cost" -v b="$base" 'BEGIN { printf "%.1f", 100 * (c / b - 1) }')"
        done
    done
done
echo "step_s: mean compute of a step (from tokens_per_s); stall_s: mean seconds per step the loop"
echo "stood still for saves (ckpt_s); write_s: seconds one save took to write; overhead: (step_s +"
echo "stall_s) over the same with no saves."
