#!/bin/sh
# tests/cli_eval.sh -- `headwise eval` end to end: perplexity, MultiFC (real staged file when
# ../shared is present) and RoleMRC (hand-written fixtures) on a small trained checkpoint;
# results identical across batch sizes and across 1, 2 and 4 ranks; a run directory gives a
# metric-against-step table; the judge command; per-sample JSONL; bad task names, missing
# files and mismatched checkpoints give clear errors.
. tests/lib.sh
D=$T/data
prepare_tiny "$D"
expect_exit 0 "train a small model" "$HW" train configs/tiny.yaml data.train="$D/train.h5" \
    data.val="$D/val.h5" train.steps=8 run.ckpt_every=4 run.dir="$T/run"
MFC=../shared/datasets/multifc/multifc_dev_claimid_claim_label.csv
TASKS=perplexity,rolemrc
if [ -f "$MFC" ]; then TASKS=perplexity,multifc,rolemrc; else
    echo "SKIP multifc in cli_eval: $MFC not found"; MFC=""; fi
ev() { # OUT [extra args]: evaluate the step-8 checkpoint
    out=$1
    shift
    "$HW" eval --ckpt "$T/run/ckpt_00000008.h5" --tasks "$TASKS" \
        --perplexity-data "$D/val.h5" --multifc-data "$MFC" \
        --rolemrc-data tests/fixtures/rolemrc_fixture.jsonl --output "$T/$out" --limit 40 \
        eval.max_new_tokens=16 eval.bootstrap_iters=200 "$@"
}
results() { # the "results" object of a results file, as sorted JSON
    /usr/bin/python3 -c "import json,sys; print(json.dumps(json.load(open(sys.argv[1]))['results'], sort_keys=True))" "$1"
}
expect_exit 0 "eval, batch 8" ev e8 --batch-size 8 --log-samples
R=ckpt_00000008
ok "results file" test -s "$T/e8/results_$R.json"
ok "table on stdout" grep -q "| rolemrc      | rougeL" "$T/out"
ok "lm-eval keys" grep -q '"rougeL,none"' "$T/e8/results_$R.json"
ok "stderr beside" grep -q '"loss_stderr,none"' "$T/e8/results_$R.json"
ok "checkpoint step and hash" grep -q '"hash": "fnv1a64:' "$T/e8/results_$R.json"
ok "per-sample JSONL" test -s "$T/e8/samples_$R.jsonl"
ok "rolemrc per aspect" grep -q '"per_aspect"' "$T/e8/results_$R.json"
if [ -n "$MFC" ]; then
    ok "multifc majority baseline beside" grep -q '"majority_f1_macro,none"' "$T/e8/results_$R.json"
    ok "multifc per domain" grep -q '"per_domain"' "$T/e8/results_$R.json"
    ok "the 3 merged rows are reported" sh -c "grep -c 'wast-00047\|farg-00319\|wast-00111' '$T/e8/results_$R.json' | grep -q 3"
fi
results "$T/e8/results_$R.json" >"$T/r8"
expect_exit 0 "eval, batch 3" ev e3 --batch-size 3
results "$T/e3/results_$R.json" >"$T/r3"
ok "scores do not depend on the batch size" cmp -s "$T/r8" "$T/r3"
if command -v mpirun >/dev/null; then
    for np in 2 4; do
        expect_exit 0 "eval on $np ranks" $MPIRUN -np $np "$HW" eval --ckpt \
            "$T/run/ckpt_00000008.h5" --tasks "$TASKS" --perplexity-data "$D/val.h5" \
            --multifc-data "$MFC" --rolemrc-data tests/fixtures/rolemrc_fixture.jsonl \
            --output "$T/n$np" --limit 40 eval.max_new_tokens=16 eval.bootstrap_iters=200
        results "$T/n$np/results_$R.json" >"$T/rn"
        ok "  scores equal one rank's" cmp -s "$T/r8" "$T/rn"
    done
else
    echo "SKIP eval on 2 and 4 ranks: mpirun not installed"
fi
# a run directory: every checkpoint, metric against step
expect_exit 0 "eval a run directory" "$HW" eval --ckpt "$T/run" --tasks perplexity \
    --perplexity-data "$D/val.h5" --output "$T/rd"
ok "metric-against-step table" grep -q "metric against step" "$T/out"
ok "two results files" test -s "$T/rd/results_ckpt_00000004.json" -a -s "$T/rd/results_ckpt_00000008.json"
ok "summary.json" test -s "$T/rd/summary.json"
# a config file and the judge
cat >"$T/eval.yaml" <<YAML
eval:
  checkpoints: [$T/run/ckpt_00000008.h5]
  tasks: [rolemrc]
  rolemrc_data: tests/fixtures/rolemrc_fixture.jsonl
  max_new_tokens: 8
  judge_command: [sh, tests/fixtures/fake_judge.sh]
  output: $T/j
YAML
expect_exit 0 "eval CONFIG with a judge command" "$HW" eval "$T/eval.yaml"
ok "judge scores per aspect" grep -q '"judge_style,none": 1' "$T/j/results_$R.json"
ok "judge scores 0 where it says no" grep -q '"judge_knowledge,none": 0' "$T/j/results_$R.json"
# the classifier head: train.task classify on a seeded split of the MultiFC file, the same
# numbers on 1 and 2x2 ranks, fine-tuned from the LM checkpoint, scored on the held-out part
if [ -n "$MFC" ]; then
    set -- configs/tiny.yaml train.task=classify data.multifc="$MFC" train.init_from="$T/run/ckpt_00000008.h5" \
        train.steps=6 train.val_every=3 run.ckpt_every=3 train.threads=1
    expect_exit 0 "classifier fine-tuned from the LM" "$HW" train "$@" run.dir="$T/cls"
    ok "  initialised from the LM checkpoint" grep -q "initialised from $T/run/ckpt_00000008.h5" "$T/out"
    ok "  val accuracy and macro F1 logged" grep -q '"val_f1_macro"' "$T/cls/metrics.jsonl"
    metric_lines "$T/cls/metrics.jsonl" >"$T/c1"
    if command -v mpirun >/dev/null; then
        expect_exit 0 "classifier on data 2 x heads 2" $MPIRUN -np 4 "$HW" train "$@" \
            dist.data=2 dist.heads=2 run.dir="$T/cls4"
        metric_lines "$T/cls4/metrics.jsonl" >"$T/c4"
        ok "  same losses as one rank" close "$T/c1" "$T/c4" 1e-5
    fi
    expect_exit 0 "eval multifc_classify" "$HW" eval --ckpt "$T/cls/ckpt_00000006.h5" \
        --tasks multifc_classify --output "$T/ce"
    ok "  F1 and the majority baseline" grep -q '"majority_f1_macro,none"' "$T/ce/results_ckpt_00000006.json"
    expect_exit 1 "multifc_classify on an LM checkpoint" "$HW" eval --ckpt "$T/run/ckpt_00000008.h5" \
        --tasks multifc_classify --multifc-data "$MFC"
    err_has "the checkpoint has no classifier head"
    expect_exit 2 "classify with context parallel" "$HW" train "$@" dist.context=2 run.dir="$T/x"
    err_has "train.task classify pools the last token of each sequence; it needs dist.context 1, not 2"
fi
# errors
expect_exit 2 "unknown task" "$HW" eval --ckpt "$T/run" --tasks multifcc
err_has "eval.tasks: unknown task 'multifcc' (known: perplexity, multifc, multifc_classify, rolemrc)"
expect_exit 1 "missing checkpoint" "$HW" eval --ckpt "$T/none.h5" --tasks perplexity
err_has "eval.checkpoints: $T/none.h5: cannot open: No such file or directory"
expect_exit 1 "missing data file" "$HW" eval --ckpt "$T/run" --tasks rolemrc --rolemrc-data "$T/no.jsonl"
err_has "$T/no.jsonl"
head -c 2000 "$T/run/ckpt_00000008.h5" >"$T/bad.h5"
expect_exit 1 "truncated checkpoint" "$HW" eval --ckpt "$T/bad.h5" --tasks perplexity --perplexity-data "$D/val.h5"
err_has "not a readable HDF5 file (truncated or corrupt)"
"$HW" data prepare --synthetic --bytes 50000 --vocab 400 --out "$T/d2" >/dev/null
expect_exit 1 "shard from another tokenizer" "$HW" eval --ckpt "$T/run/ckpt_00000008.h5" \
    --tasks perplexity --perplexity-data "$T/d2/train.h5"
err_has "is outside the vocabulary of 300 (the model's 300, the shard's 400)"
finish
