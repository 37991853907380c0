#!/bin/sh
# bench/run.sh -- headwise vs PyTorch on the same GPT (configs/bench-gpt.yaml: d_model 384,
# 6 layers, 6 heads, seq 256, vocab 8192, batch 8, fp32, 2 threads). Prints tokens/s of both,
# their ratio, and MFU of both against this machine's measured OpenBLAS sgemm peak.
# Usage: sh bench/run.sh [build/headwise] [steps]
set -e
HW=${1:-build/headwise}
STEPS=${2:-12}
THREADS=${THREADS:-2}
PY=${PYTHON:-/usr/bin/python3}
OUT=runs/bench
DATA=runs/bench-data
mkdir -p "$OUT"
if [ ! -f "$DATA/train.h5" ]; then
    if [ -f ../shared/datasets/tinyshakespeare/input.txt ]; then
        "$HW" data prepare --input ../shared/datasets/tinyshakespeare/input.txt --vocab 8192 --out "$DATA" >/dev/null
    else
        "$HW" data prepare --synthetic --bytes 2000000 --vocab 8192 --out "$DATA" >/dev/null
    fi
fi
echo "== headwise ($STEPS steps, $THREADS threads)"
OMP_NUM_THREADS=$THREADS "$HW" train configs/bench-gpt.yaml train.steps="$STEPS" \
    train.threads="$THREADS" run.dir="$OUT/headwise" >"$OUT/headwise.log" 2>&1
grep -E "params|summary|throughput" "$OUT/headwise.log"
peak=$(sed -n 's/.*sgemm peak \([0-9.]*\) GFLOP\/s.*/\1/p' "$OUT/headwise.log")
# steady state: skip the first two steps (first touches, page faults)
hw_tps=$(awk -F'"tokens_per_s":' 'NR>2 {split($2,a,","); s+=a[1]; n++} END {printf "%.1f", s/n}' \
    "$OUT/headwise/metrics.jsonl")
echo "== PyTorch ($("$PY" -c 'import torch; print(torch.__version__)'), $STEPS steps, $THREADS threads)"
"$PY" bench/torch_gpt.py --threads "$THREADS" --steps "$STEPS" >"$OUT/torch.json"
cat "$OUT/torch.json"
pt_tps=$("$PY" -c "import json; print(round(json.load(open('$OUT/torch.json'))['tokens_per_s'], 1))")
# model FLOPs per token: 6 x matmul weights + causal attention (headwise gpt_flops_per_token)
flops=$(awk 'BEGIN { C=384; L=6; H=6; hd=64; F=1024; V=8192; T=256;
    n = L*(3*C*C + C*C + 2*F*C + F*C) + V*C; printf "%.0f", 6*n + L*3*2*T*hd*H }')
awk -v hw="$hw_tps" -v pt="$pt_tps" -v f="$flops" -v peak="$peak" 'BEGIN {
    printf "\n%-10s %12s %10s\n", "impl", "tokens/s", "MFU";
    printf "%-10s %12.1f %9.1f%%\n", "headwise", hw, 100*hw*f/(peak*1e9);
    printf "%-10s %12.1f %9.1f%%\n", "pytorch", pt, 100*pt*f/(peak*1e9);
    printf "ratio headwise/pytorch: %.2fx   (sgemm peak %.1f GFLOP/s, %.1f MFLOP/token)\n",
           hw/pt, peak, f/1e6 }'
