#!/bin/sh
# bench/multifc_experiment.sh -- the MultiFC experiment: pretrain a small GPT on Tiny
# Shakespeare, fine-tune a classifier head on a seeded stratified split of the staged MultiFC
# dev file (the only labelled MultiFC data here), and score the held-out test part (micro and
# macro F1 overall and per domain, majority baseline beside), plus the zero-shot
# log-likelihood method on a split of its own. Needs ../shared/datasets.
set -e
HW=${1:-build/headwise}
OUT=runs/multifc-exp
mkdir -p "$OUT"
"$HW" data prepare --input ../shared/datasets/tinyshakespeare/input.txt --vocab 2048 \
    --out "$OUT/lm-data"
"$HW" train configs/multifc-lm.yaml
"$HW" train configs/multifc-classify.yaml
"$HW" eval --ckpt "$OUT/cls" --tasks multifc_classify --output "$OUT/eval-cls"
"$HW" eval --ckpt "$OUT/lm/ckpt_00000400.h5" --tasks multifc \
    --multifc-data ../shared/datasets/multifc/multifc_dev_claimid_claim_label.csv \
    --output "$OUT/eval-ll"
