#!/bin/sh
# tests/golden/cases.sh -- the golden-metrics cases of the structure redesign (issue 14): a few
# steps of every model family on one rank and on the grids data 2 x heads 2, context 2 (ring)
# and context 2 (Ulysses), written as one text file per run with every numeric field of
# metrics.jsonl that does not measure time (loss, lr, grad_norm, val_*, moh_*).
#
#   sh tests/golden/cases.sh BINARY OUTDIR        (from the repository root)
#
# tests/golden/expected/ was written by this script from the main branch before the redesign
# (commit 551f71a); tests/cli_golden.sh runs it again and requires every number equal within
# float rounding (bit-identical on the recording CPU).
set -u
HW=$1
OUT=$2
mkdir -p "$OUT"
W=$(mktemp -d /tmp/hwgold.XXXXXX)
trap 'rm -rf "$W"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1
MPIRUN="mpirun --oversubscribe --bind-to none -x OMP_NUM_THREADS=1"
"$HW" data prepare --synthetic --bytes 200000 --vocab 300 --out "$W/data" >/dev/null || exit 1
fails=0
# strip the time-dependent fields; keep every other key in file order
strip() {
    sed -e 's/"tokens_per_s":[^,}]*,\{0,1\}//' -e 's/"mfu":[^,}]*,\{0,1\}//' \
        -e 's/"step_s":[^,}]*,\{0,1\}//' -e 's/"comm_s":[^,}]*,\{0,1\}//' \
        -e 's/"mem_peak_mib":[^,}]*,\{0,1\}//' \
        -e 's/"comm":{[^}]*\(}[^}]*\)*}},\{0,1\}//' -e 's/"s":[0-9.e+-]*//g' \
        -e 's/"train_s":[^,}]*,\{0,1\}//' -e 's/"samples_per_s":[^,}]*,\{0,1\}//' \
        -e 's/,}/}/' "$1"
}
# case NAME NP ARGS...: train on NP ranks (1: no mpirun) and keep the stripped metrics
case_run() {
    name=$1 np=$2
    shift 2
    dir=$W/run_$name
    if [ "$np" = 1 ]; then
        "$HW" train "$@" run.dir="$dir" >"$W/log_$name" 2>&1
    else
        $MPIRUN -np "$np" "$HW" train "$@" run.dir="$dir" >"$W/log_$name" 2>&1
    fi
    rc=$?
    if [ $rc != 0 ] || [ ! -s "$dir/metrics.jsonl" ]; then
        echo "golden: case $name failed (exit $rc)" >&2
        tail -5 "$W/log_$name" >&2
        fails=$((fails + 1))
        return
    fi
    strip "$dir/metrics.jsonl" >"$OUT/$name.jsonl"
}
# decode NAME: sample greedily and stochastically (KV cache) and score perplexity (batched
# forward) from the one-rank run of NAME
decode() {
    dir=$W/run_$1
    {
        "$HW" sample "$dir" --prompt "the code" --tokens 12 --temperature 0 2>/dev/null
        "$HW" sample "$dir" --prompt "ab" --tokens 12 --temperature 0.9 --seed 7 2>/dev/null
    } >"$OUT/$1.sample" || { echo "golden: sample $1 failed" >&2; fails=$((fails + 1)); }
    "$HW" eval --ckpt "$dir" --tasks perplexity --perplexity-data "$W/data/val.h5" \
        --output "$W/ev_$1" >/dev/null 2>&1 &&
        grep -E '"(loss|perplexity),none"' \
            "$W"/ev_$1/results_*.json >"$OUT/$1.ppl" ||
        { echo "golden: eval $1 failed" >&2; fails=$((fails + 1)); }
}
# every LM family on one rank and the three grids
grids() { # NAME ARGS...
    family=$1
    shift
    case_run "${family}_1" 1 "$@"
    case_run "${family}_d2h2" 4 "$@" dist.data=2 dist.heads=2
    case_run "${family}_c2ring" 2 "$@" dist.context=2 dist.context_mode=ring
    case_run "${family}_c2ulysses" 2 "$@" dist.context=2 dist.context_mode=ulysses
    decode "${family}_1"
}
LM="configs/tiny.yaml data.train=$W/data/train.h5 data.val=$W/data/val.h5 model.n_kv_heads=2
    model.max_seq=64 train.seq_len=64 train.steps=3 train.val_every=3 train.val_batches=1
    run.ckpt_every=0 train.threads=1"
grids dense $LM
grids moh_s2 $LM "model.attention.layers=[moh, mha]" \
    "model.moh={shared_heads: 1, top_k: 2}" \
    "model.sparsity={kind: s2, block: 16, local_blocks: 1, vert_stride: 2, dense_layers: [1]}"
grids moh_qnorm $LM "model.attention.kind=moh" "model.moh={shared_heads: 1, top_k: 2, router: qnorm}"
grids mem $LM model.n_layers=3 \
    "model.memory={layers: [mal, mag, memory], heads: 2, chunk: 4, ttt_batch: 8, conv: 2}" \
    "model.sparsity={kind: s2, block: 16, local_blocks: 2, vert_stride: 1000, head_offset: 1}"
grids mac $LM \
    "model.memory={layers: [mac, mag], heads: 2, chunk: 4, ttt_batch: 8, conv: 2, segment: 16, persistent: 4}"
grids lm_dare $LM model.embedding=dare
# SFT with the [IND] indicator (packed rows: one rank and data 2 x heads 2; context 2 is refused)
i=0
while [ $i -lt 10 ]; do
    cat >>"$W/conv.jsonl" <<JSON
{"conversations": [{"from": "human", "value": "the code is $i$i. what is the code [IND]"}, {"from": "gpt", "value": "$i$i"}, {"from": "human", "value": "twice?"}, {"from": "gpt", "value": "$i$i $i$i"}]}
{"question": [{"role": "User", "content": "name $i"}], "reference": "n$i"}
JSON
    i=$((i + 1))
done
SFT="$LM data.tokenizer=$W/data/tokenizer.json model.max_seq=128 train.seq_len=128 train.task=sft data.train= data.val=
    sft.train=$W/conv.jsonl sft.val=$W/conv.jsonl"
case_run sft_1 1 $SFT
case_run sft_d2h2 4 $SFT dist.data=2 dist.heads=2
case_run sft_padded_1 1 $SFT sft.pack=false
"$HW" sample "$W/run_sft_1" --chat --prompt "the code is 44. what is the code" --indicator \
    --tokens 8 --temperature 0 >"$OUT/sft_1.sample" 2>/dev/null || fails=$((fails + 1))
"$HW" sample "$W/run_sft_1" --chat --prompt "the code is 44" --pasta 0.9 --tokens 8 \
    --temperature 0 >>"$OUT/sft_1.sample" 2>/dev/null || fails=$((fails + 1))
# the MultiFC classifier head (the fixture's rows; context 2 is refused)
CLS="$LM data.tokenizer=$W/data/tokenizer.json train.task=classify data.multifc=tests/fixtures/multifc_official_sample.tsv
    data.val_frac=0.25 data.test_frac=0.25 model.max_seq=64"
case_run classify_1 1 $CLS
case_run classify_d2h2 4 $CLS dist.data=2 dist.heads=2
# the rec model, DARE and TWIN (tables split by rows over data ranks)
REC="configs/rec-synth.yaml rec.synth_users=120 rec.synth_items=200 rec.max_len=12 rec.top_k=4
    rec.hidden1=16 rec.hidden2=8 rec.train_targets=2 train.micro_batch=40 train.log_every=1
    rec.epochs=1"
for emb in dare twin; do
    case_run rec_${emb}_1 1 $REC model.embedding=$emb
    case_run rec_${emb}_np2 2 $REC model.embedding=$emb dist.data=2
    case_run rec_${emb}_np4 4 $REC model.embedding=$emb dist.data=4
done
[ $fails = 0 ]
