#!/bin/sh
# bench/gpu_train.sh -- headwise against PyTorch training the same GPT on the GPU (the figures of
# GPU training): for each case, tokens/s (median over steps 3..STEPS), MFU against the GPU's
# bf16 dense peak (PEAK_TFLOPS, default 989: H200 SXM spec sheet; FLOPs a token = 6 N + 12 L T C
# as llm.c counts them, the same for both), and peak device memory (headwise: mem_peak_mib;
# PyTorch: torch.cuda.max_memory_allocated). Cases:
#   gpt2   GPT-2 124M shape (d 768, 12 layers, 12 heads, SwiGLU d_ff 2048, vocab 50304,
#          T 1024, batch 8), bf16: headwise, PyTorch eager (SDPA) and torch.compile
#   long   d 256, 4 layers, 4 heads (hd 64), T 8192, batch 1, bf16: attention dominates
#   moh/s2 the long model with MoH at 2 of 4 heads and with S2 (blocks of 64, 2 local, stride
#          8): step time against the dense one (the attention time saved)
#   medium the GPT-2-medium shape (d 1024, 24 layers, 16 heads, d_ff 2816) at T 4096, batch 1,
#          train.recompute none, attention and block: the peak device memory each needs
#          (6 steps)
# Writes OUTDIR/gpu_train.json and one log per run; prints a table.
#   sh bench/gpu_train.sh [build/cuda/headwise] [OUTDIR]
# Environment: STEPS (20), PEAK_TFLOPS (989), COMPILE (1: also torch.compile), PY (python3),
# PY_LD (LD_LIBRARY_PATH for python only: PyTorch may need another libstdc++ than headwise's
# runtime bundle), BACKEND/DEVICE (cuda/cuda), SMALL=1 (tiny shapes: a dry run of the script on a CPU with
# BACKEND=cpu DEVICE=cpu).
set -u
HW=${1:-build/cuda/headwise}
OUT=${2:-${OUT:-runs/gpu-train-bench}}
STEPS=${STEPS:-20}
PEAK=${PEAK_TFLOPS:-989}
PY=${PY:-python3}
BACKEND=${BACKEND:-cuda}
DEVICE=${DEVICE:-cuda}
COMPILE=${COMPILE:-1}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
DATA=$OUT/data
[ -f "$DATA/train.h5" ] ||
    "$HW" data prepare --synthetic --bytes 2000000 --vocab 272 --out "$DATA" >/dev/null || exit 1
# shapes: name d layers heads d_ff vocab T batch
if [ -n "${SMALL:-}" ]; then
    GPT2="64 2 2 128 512 64 2" LONG="64 2 2 128 512 256 1" S2BLK=16 MED="64 4 2 128 512 256 1"
else
    GPT2="768 12 12 2048 50304 1024 8" LONG="256 4 4 704 50304 8192 1" S2BLK=64
    MED="1024 24 16 2816 50304 4096 1"
fi
: >"$OUT/rows.tsv" # case impl tok/s mfu peak_mib params
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print 0 }'; }
mfu() { # tok/s params L T C
    awk -v t="$1" -v n="$2" -v L="$3" -v T="$4" -v C="$5" -v pk="$PEAK" \
        'BEGIN { printf "%.4f", t * (6 * n + 12 * L * T * C) / (pk * 1e12) }'
}
# hw CASE SHAPE [override ...]: headwise on the backend in bf16
hw() {
    name=$1 shape=$2
    shift 2
    # shellcheck disable=SC2086 # the shape is split on purpose
    set -- $shape "$@"
    C=$1 L=$2 H=$3 Fd=$4 V=$5 T=$6 Bt=$7
    shift 7
    dir=$OUT/hw_$name
    rm -rf "$dir"
    "$HW" train configs/bench-gpt.yaml model.d_model="$C" model.n_layers="$L" model.n_heads="$H" \
        model.d_ff="$Fd" model.vocab="$V" model.max_seq="$T" train.seq_len="$T" \
        train.micro_batch="$Bt" train.steps="$STEPS" train.warmup=2 train.precision=bf16 \
        run.backend="$BACKEND" data.train="$DATA/train.h5" run.dir="$dir" \
        run.tensorboard=false "$@" >"$dir.log" 2>&1 || {
        echo "$name: headwise failed (exit $?): $(tail -n 1 "$dir.log")"
        return 1
    }
    tps=$(sed -n 's/.*"tokens_per_s":\([0-9.e+]*\).*/\1/p' "$dir/metrics.jsonl" | tail -n +3 | median)
    mem=$(sed -n 's/.*"mem_peak_mib":\([0-9.e+]*\).*/\1/p' "$dir/metrics.jsonl" | sort -g | tail -n 1)
    params=$(sed -n 's/.* | \([0-9.]*\)M params | .*/\1/p' "$dir.log" | head -n 1)
    n=$(awk -v p="$params" 'BEGIN { printf "%.0f", p * 1e6 }')
    step=$(awk -v t="$tps" -v n=$((T * Bt)) 'BEGIN { printf "%.6f", (t > 0 ? n / t : 0) }')
    printf '%s\theadwise\t%s\t%s\t%s\t%s\t%s\n' "$name" "$tps" "$(mfu "$tps" "$n" "$L" "$T" "$C")" \
        "$mem" "$n" "$step" >>"$OUT/rows.tsv"
}
# pt CASE SHAPE [--compile]: PyTorch on the device, bf16 autocast
pt() {
    name=$1
    # shellcheck disable=SC2086 # the shape is split on purpose
    set -- $2 "${3:-}"
    C=$1 L=$2 H=$3 Fd=$4 V=$5 T=$6 Bt=$7 flag=$8
    impl=pytorch${flag:+-compile}
    # shellcheck disable=SC2086
    env ${PY_LD+LD_LIBRARY_PATH="$PY_LD"} "$PY" bench/torch_gpt.py --device "$DEVICE" --bf16 --steps "$STEPS" --warmup 3 --d-model "$C" \
        --layers "$L" --heads "$H" --d-ff "$Fd" --vocab "$V" --seq "$T" --batch "$Bt" $flag \
        >"$OUT/${impl}_$name.json" 2>"$OUT/${impl}_$name.log" || {
        echo "$name: $impl failed: $(tail -n 1 "$OUT/${impl}_$name.log")"
        return 1
    }
    j=$OUT/${impl}_$name.json
    tps=$(sed -n 's/.*"tokens_per_s": \([0-9.e+]*\).*/\1/p' "$j")
    n=$(sed -n 's/.*"params": \([0-9]*\).*/\1/p' "$j")
    mem=$(sed -n 's/.*"peak_device_bytes": \([0-9]*\).*/\1/p' "$j")
    [ -n "$mem" ] || mem=$(sed -n 's/.*"peak_rss_bytes": \([0-9]*\).*/\1/p' "$j")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t-\n' "$name" "$impl" "$tps" "$(mfu "$tps" "$n" "$L" "$T" "$C")" \
        "$(awk -v b="$mem" 'BEGIN { printf "%.1f", b / 1048576 }')" "$n" >>"$OUT/rows.tsv"
}
hw gpt2 "$GPT2"
pt gpt2 "$GPT2"
[ "$COMPILE" = 1 ] && pt gpt2 "$GPT2" --compile
hw long "$LONG"
pt long "$LONG"
hw long_moh "$LONG" model.attention.kind=moh "model.moh={shared_heads: 0, top_k: 2}"
hw long_s2 "$LONG" "model.sparsity={kind: s2, block: $S2BLK, local_blocks: 2, vert_stride: 8}"
hw medium_none "$MED" train.steps=6 train.recompute=none
hw medium_attention "$MED" train.steps=6 train.recompute=attention
hw medium_block "$MED" train.steps=6 train.recompute=block
echo "case       impl              tokens/s     MFU     peak MiB   params  step s"
awk -F'\t' '{ printf "%-10s %-16s %10.0f %7.1f%% %10s %8.1fM  %s\n", $1, $2, $3, 100 * $4, $5, $6 / 1e6, $7 }' \
    "$OUT/rows.tsv"
# the attention time MoH and S2 save: step time against the dense long model
awk -F'\t' '$2 == "headwise" { s[$1] = $7 }
    END { if (s["long"] > 0) for (k in s) if (k ~ /^long_/)
          printf "%s: step %.4f s vs dense %.4f s (%.1f%% saved)\n", k, s[k], s["long"],
                 100 * (1 - s[k] / s["long"]) }' "$OUT/rows.tsv"
"$PY" - "$OUT" "$PEAK" <<'PYEOF' || echo "gpu_train.json not written"
import json, sys
out, peak = sys.argv[1], float(sys.argv[2])
rows = []
for line in open(out + "/rows.tsv"):
    c, impl, tps, mfu, mem, n, step = line.rstrip("\n").split("\t")
    rows.append({"case": c, "impl": impl, "tokens_per_s": float(tps), "mfu": float(mfu),
                 "peak_mib": float(mem), "params": int(n),
                 "step_s": None if step == "-" else float(step)})
json.dump({"peak_tflops": peak, "rows": rows}, open(out + "/gpu_train.json", "w"), indent=1)
print("wrote", out + "/gpu_train.json")
PYEOF
