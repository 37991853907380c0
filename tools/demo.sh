#!/bin/sh
# tools/demo.sh -- the demo job on built-in data: prepare the synthetic task corpus, train a
# small GPT on one rank (interrupted at step 500 as if preempted), resume it under mpirun on
# 2 ranks that split the attention heads (the checkpoint is resharded on load), verify the
# checkpoint, evaluate it (accuracy per synthetic task on held-out lines, perplexity), sample
# from it on held-out prompts, and print where everything is.
set -e
HW=${1:-build/headwise}
DATA=runs/demo-data
RUN=runs/demo
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
NP=${NP:-2}
# Open MPI as root (containers, CI) and without cross-memory attach (Docker's seccomp)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1
rm -rf "$RUN"
echo "==> 1/5 data: synthetic tasks (copy, reverse, addition, associative recall) -> $DATA"
# 272 tokens: the 15 merges join the task words and the " >" separator; letters and digits stay
# one token each, so copying, reversing and adding work on characters the model sees as such
"$HW" data prepare --synthetic --bytes 1000000 --vocab 272 --out "$DATA"
echo
echo "==> 2/5 train configs/demo.yaml; a simulated preemption stops it after step 500"
set +e
HW_STOP_AFTER_STEP=500 "$HW" train configs/demo.yaml
rc=$?
set -e
if [ $rc != 4 ]; then
    echo "demo: expected the preempted run to exit with 4 (checkpointed, requeue me), got $rc" >&2
    exit 1
fi
echo
echo "==> 3/5 resume under mpirun on $NP ranks (dist.heads=$NP: the heads are split across ranks)"
if command -v mpirun >/dev/null 2>&1; then
    mpirun -np "$NP" --bind-to none -x OMP_NUM_THREADS=1 "$HW" train configs/demo.yaml \
        dist.heads="$NP"
else
    echo "(mpirun not found: resuming on one rank)"
    "$HW" train configs/demo.yaml
fi
echo
echo "==> 4/5 verify the final checkpoint"
CKPT=$(cat "$RUN/latest")
"$HW" ckpt verify "$RUN/$CKPT" | tail -n 1
echo
echo "==> 5/6 evaluate it: greedy accuracy per synthetic task (held-out lines), perplexity"
"$HW" eval --ckpt "$RUN/$CKPT" --tasks synth,perplexity --perplexity-data "$DATA/val.h5" \
    --output "$RUN/eval" --limit 1000 --log-samples | grep -E '^\| (task|synth|perplexity) '
echo
echo "==> 6/6 sample from it (greedy, KV cache): the first 3 held-out prompts of each task"
SAMPLES=$RUN/eval/samples_${CKPT%.h5}.jsonl
right=0
for kind in copy reverse add recall; do
    grep "\"kind\":\"$kind\"" "$SAMPLES" | head -n 3 >"$RUN/eval/demo_prompts.jsonl"
    while read -r line; do
        p=$(echo "$line" | sed 's/.*"prompt":"\([^"]*\)".*/\1/')
        want=$(echo "$line" | sed 's/.*"target":"\([^"]*\)".*/\1/')
        got=$("$HW" sample "$RUN" --prompt "$p" --tokens 12 --temperature 0 2>/dev/null | head -n 1)
        if [ "$got" = "$p$want" ]; then
            right=$((right + 1))
            printf '  %-44s right\n' "$got"
        else
            printf '  %-44s wrong: expected%s\n' "$got" "$want"
        fi
    done <"$RUN/eval/demo_prompts.jsonl"
done
rm -f "$RUN/eval/demo_prompts.jsonl"
echo
num() { printf '%.3f' "$1"; }
first=$(num "$(head -n 1 "$RUN/metrics.jsonl" | sed 's/.*"loss":\([^,]*\),.*/\1/')")
last=$(num "$(tail -n 1 "$RUN/metrics.jsonl" | sed 's/.*"loss":\([^,]*\),.*/\1/')")
val=$(num "$(grep val_loss "$RUN/metrics.jsonl" | tail -n 1 | sed 's/.*"val_loss":\([^,}]*\).*/\1/')")
RES=$RUN/eval/results_${CKPT%.h5}.json
acc() { # the synth accuracy named $1 from the results file, as a percentage
    sed -n "s/.*\"$1,none\": \([0-9.eE+-]*\).*/\1/p" "$RES" | head -n 1 |
        awk '{ printf "%.0f%%", 100 * $1 }'
}
echo "==> demo summary"
echo "  train loss:  $first (step 1) -> $last (step $(wc -l <"$RUN/metrics.jsonl"))   val loss: $val"
echo "  accuracy:    copy $(acc acc_copy), reverse $(acc acc_reverse), add $(acc acc_add), recall $(acc acc_recall) (greedy, $RUN/eval)"
echo "  samples:     $right of 12 right (held-out prompts, headwise sample)"
echo "  data:        $DATA/{train,val}.h5, tokenizer $DATA/tokenizer.json"
echo "  run dir:     $RUN (config.yaml, tokenizer.json, metrics.jsonl)"
echo "  checkpoints: $(ls "$RUN"/ckpt_*.h5 | tr '\n' ' ')"
echo "  try:         $HW sample $RUN --prompt 'copy world >'"
echo "               $HW ckpt info $RUN/$CKPT"
