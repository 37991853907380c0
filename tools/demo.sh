#!/bin/sh
# tools/demo.sh -- the demo job on built-in data: prepare the synthetic task corpus, train a
# small GPT on one rank (interrupted at step 120 as if preempted), resume it under mpirun on
# 2 ranks that split the attention heads (the checkpoint is resharded on load), verify the
# checkpoint, evaluate it (accuracy per synthetic task on held-out lines, perplexity), sample
# from it, and print where everything is.
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
"$HW" data prepare --synthetic --bytes 1000000 --vocab 384 --out "$DATA"
echo
echo "==> 2/5 train configs/demo.yaml; a simulated preemption stops it after step 120"
set +e
HW_STOP_AFTER_STEP=120 "$HW" train configs/demo.yaml
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
    --output "$RUN/eval" --limit 200 --log-samples | grep -E '^\| (task|synth|perplexity) '
echo
echo "==> 6/6 sample from it (greedy, KV cache)"
for p in "copy hello >" "reverse abc >" "add 12+30 >" "recall a=1 b=7 c=3 ? b >"; do
    "$HW" sample "$RUN" --prompt "$p" --tokens 12 --temperature 0 2>/dev/null | head -n 1
done
echo
first=$(head -n 1 "$RUN/metrics.jsonl" | sed 's/.*"loss":\([^,]*\),.*/\1/')
last=$(tail -n 1 "$RUN/metrics.jsonl" | sed 's/.*"loss":\([^,]*\),.*/\1/')
val=$(grep val_loss "$RUN/metrics.jsonl" | tail -n 1 | sed 's/.*"val_loss":\([^,}]*\).*/\1/')
RES=$RUN/eval/results_${CKPT%.h5}.json
acc() { # the synth accuracy named $1 from the results file, as a percentage
    sed -n "s/.*\"$1,none\": \([0-9.eE+-]*\).*/\1/p" "$RES" | head -n 1 |
        awk '{ printf "%.0f%%", 100 * $1 }'
}
echo "==> demo summary"
echo "  train loss:  $first (step 1) -> $last (step $(wc -l <"$RUN/metrics.jsonl"))   val loss: $val"
echo "  accuracy:    copy $(acc acc_copy), reverse $(acc acc_reverse), add $(acc acc_add), recall $(acc acc_recall) (greedy, $RUN/eval)"
echo "  data:        $DATA/{train,val}.h5, tokenizer $DATA/tokenizer.json"
echo "  run dir:     $RUN (config.yaml, tokenizer.json, metrics.jsonl)"
echo "  checkpoints: $(ls "$RUN"/ckpt_*.h5 | tr '\n' ' ')"
echo "  try:         $HW sample $RUN --prompt 'copy world >'"
echo "               $HW ckpt info $RUN/$CKPT"
