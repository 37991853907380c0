#!/bin/sh
# tests/cli_csft.sh -- conditional SFT end to end: pretrain a tiny model, fine-tune it with
# train.task sft from init_from (ShareGPT and RoleMRC schemas, packed and padded, response-only
# and all-token loss); the added [IND] row starts at the mean and every old row stays
# bit-identical; exact resume; the run is the same on a data x heads grid; sample and eval load
# the grown vocabulary from the checkpoint alone (indicator and PASTA switches); csft-score
# writes scores, tags above beta, leaves the data alone for beta >= 1, prints a histogram, and
# gives the same file under mpirun -np 2 as on one rank; config errors exit 2.
. tests/lib.sh
D=$T/data
prepare_tiny "$D"
set -- configs/tiny.yaml data.train="$D/train.h5" data.val="$D/val.h5" model.max_seq=256 \
    train.threads=1
expect_exit 0 "pretrain" "$HW" train "$@" run.dir="$T/pre" run.ckpt_every=0
PRE=$T/pre/ckpt_00000012.h5
# conversations: ShareGPT (multi-turn, a system turn) and RoleMRC question + reference
i=0
while [ $i -lt 12 ]; do
    cat >>"$T/conv.jsonl" <<EOF
{"id": "s$i", "conversations": [{"from": "system", "value": "be brief"}, {"from": "human", "value": "the code is $i$i. what is the code"}, {"from": "gpt", "value": "$i$i"}, {"from": "human", "value": "and twice?"}, {"from": "gpt", "value": "$i$i $i$i"}]}
{"question": [{"role": "User", "content": "name $i"}], "reference": "n$i", "task": "k"}
EOF
    i=$((i + 1))
done
S="train.task=sft train.init_from=$PRE data.train= data.val= sft.train=$T/conv.jsonl"
S="$S sft.val=$T/conv.jsonl train.seq_len=256 train.steps=6 train.warmup=1 train.val_every=3"
# old rows bit-identical, new row at the mean: a step with a vanishing learning rate
expect_exit 0 "sft step with lr 1e-30" "$HW" train "$@" $S train.steps=1 train.lr=1e-30 \
    train.min_lr=0 train.weight_decay=0 run.dir="$T/z"
ok "log: one token added (vocab 300 -> 301)" grep -q "1 tokens added to the vocabulary (300 -> 301)" "$T/out"
ok "log: response-only loss, packed" grep -q "loss on response tokens only, packed" "$T/out"
if /usr/bin/python3 -c 'import h5py' 2>/dev/null; then
    ok "old embedding rows bit-identical, [IND] row = mean of the old rows" /usr/bin/python3 -c "
import h5py, numpy as np, json
a = h5py.File('$PRE')['model/tok_emb.weight'][()]
b = h5py.File('$T/z/ckpt_00000001.h5')['model/tok_emb.weight'][()]
assert a.shape == (300, 32) and b.shape == (301, 32), (a.shape, b.shape)
assert np.array_equal(a.view(np.uint32), b[:300].view(np.uint32))
assert np.allclose(b[300], a.astype(np.float64).mean(0), rtol=0, atol=1e-7)
"
else
    echo "skipped: old-row check needs python3-h5py"
fi
# real fine-tuning: packed and padded, response-only and all tokens
expect_exit 0 "sft, packed" "$HW" train "$@" $S run.dir="$T/p"
metric_lines "$T/p/metrics.jsonl" >"$T/mp"
ok "loss falls" awk 'NR==1{f=$2} END{exit !($2 < f)}' "$T/mp"
ok "val loss logged" grep -q val_loss "$T/p/metrics.jsonl"
expect_exit 0 "sft, padded, loss on all tokens" "$HW" train "$@" $S sft.pack=false sft.loss=all \
    run.dir="$T/a"
ok "log: all tokens, padded" grep -q "loss on all tokens, padded" "$T/out"
# exact resume
HW_STOP_AFTER_STEP=3 expect_exit 4 "preempted at step 3" "$HW" train "$@" $S run.dir="$T/r"
expect_exit 0 "resume" "$HW" train "$@" $S run.dir="$T/r"
metric_lines "$T/r/metrics.jsonl" >"$T/mr"
ok "resumed losses equal the uninterrupted run" cmp -s "$T/mp" "$T/mr"
if command -v mpirun >/dev/null; then
    expect_exit 0 "sft on 2 ranks (data 2)" $MPIRUN -np 2 "$HW" train "$@" $S dist.data=2 \
        run.dir="$T/d2"
    metric_lines "$T/d2/metrics.jsonl" >"$T/md"
    ok "  same losses as one rank (rel 1e-5)" close "$T/mp" "$T/md" 1e-5
    expect_exit 0 "sft on 2 ranks (heads 2)" $MPIRUN -np 2 "$HW" train "$@" $S dist.heads=2 \
        run.dir="$T/h2"
    metric_lines "$T/h2/metrics.jsonl" >"$T/mh"
    ok "  same losses as one rank (rel 1e-5)" close "$T/mp" "$T/mh" 1e-5
else
    echo "skipped: grid runs need mpirun"
fi
# sample and eval from the checkpoint alone (the run dir's side files removed)
mkdir "$T/only" && cp "$T/p/ckpt_00000006.h5" "$T/only/"
expect_exit 0 "sample --chat --indicator --pasta" "$HW" sample "$T/only/ckpt_00000006.h5" --chat \
    --prompt "the code is 33. what is the code" --indicator --pasta 0.9 --tokens 8 --temperature 0
expect_exit 2 "sample --pasta without --chat" "$HW" sample "$T/only/ckpt_00000006.h5" --pasta 0.9
cat >"$T/qa.jsonl" <<EOF
{"question": [{"role": "user", "content": "the code is 55. what is the code"}], "reference": "55", "task": "context"}
{"question": [{"role": "user", "content": "name 3"}], "reference": "n3", "task": "knowledge"}
EOF
expect_exit 0 "eval chat_qa --indicator --pasta" "$HW" eval --ckpt "$T/only/ckpt_00000006.h5" \
    --tasks chat_qa --chat-data "$T/qa.jsonl" --indicator --pasta 0.95 --max-new-tokens 6 \
    --output "$T/ev" --log-samples
ok "  results name the indicator" grep -q '"indicator": "\[IND\]"' "$T/ev/results_ckpt_00000006.json"
ok "  per-category containment" grep -q 'contains_knowledge' "$T/out"
# csft-score: scores and tags; beta >= 1 leaves the data unchanged; grid-independent
expect_exit 0 "csft-score (beta 0)" "$HW" data csft-score --ckpt "$T/p" --input "$T/conv.jsonl" \
    --out "$T/s0.jsonl" --beta 0
ok "  histogram printed" grep -q "csft-score histogram (36 response turns)" "$T/out"
ok "  every user turn before a response tagged" test "$(grep -o '\[IND\]' "$T/s0.jsonl" | wc -l)" = 36
ok "  'Summarize'-rule: 'code. [IND]' and 'twice? [IND]'" sh -c \
    "grep -q 'what is the code. \[IND\]' '$T/s0.jsonl' && grep -q 'twice? \[IND\]' '$T/s0.jsonl'"
ok "  scores in [0, 1], null for non-responses" /usr/bin/python3 -c "
import json
for l in open('$T/s0.jsonl'):
    j = json.loads(l); s = j['csft_scores']
    msgs = j.get('conversations') or j['question'] + [{'role': 'assistant'}]
    assert len(s) == len(msgs)
    for m, v in zip(msgs, s):
        r = m.get('from', m.get('role', '')).lower()
        assert (v is None) == (r not in ('gpt', 'assistant')), (r, v)
        assert v is None or 0 <= v <= 1, v
"
expect_exit 0 "csft-score (beta 1)" "$HW" data csft-score --ckpt "$T/p" --input "$T/conv.jsonl" \
    --out "$T/s1.jsonl" --beta 1
ok "  beta 1 changes no conversation" /usr/bin/python3 -c "
import json
a = [json.loads(l) for l in open('$T/conv.jsonl')]
b = [json.loads(l) for l in open('$T/s1.jsonl')]
for x in b: del x['csft_scores']
assert a == b
"
expect_exit 0 "csft-score (default beta 0.6)" "$HW" data csft-score --ckpt "$T/p" \
    --input "$T/conv.jsonl" --out "$T/s6.jsonl"
if command -v mpirun >/dev/null; then
    expect_exit 0 "csft-score under mpirun -np 2" $MPIRUN -np 2 "$HW" data csft-score \
        --ckpt "$T/p" --input "$T/conv.jsonl" --out "$T/s6np2.jsonl"
    ok "  the same file as one rank" cmp -s "$T/s6.jsonl" "$T/s6np2.jsonl"
else
    echo "skipped: csft-score -np 2 needs mpirun"
fi
expect_exit 1 "csft-score on a bad file names the line" "$HW" data csft-score --ckpt "$T/p" \
    --input "$T/qa.jsonl.missing" --out "$T/x.jsonl"
printf '{"conversations": [{"from": "robot", "value": "x"}]}\n' >"$T/bad.jsonl"
expect_exit 1 "csft-score: unknown role" "$HW" data csft-score --ckpt "$T/p" --input "$T/bad.jsonl" \
    --out "$T/x.jsonl"
err_has "bad.jsonl:1: error: conversations[0]: unknown role 'robot'"
# config errors
expect_exit 2 "train.task sft without sft.train" "$HW" train "$@" train.task=sft run.dir="$T/e1"
err_has "train.task sft needs sft.train"
expect_exit 2 "sft with dist.context 2" "$HW" train "$@" $S dist.context=2 run.dir="$T/e2"
err_has "needs dist.context 1"
finish
