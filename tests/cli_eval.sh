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
TASKS=perplexity,rolemrc,synth
if [ -f "$MFC" ]; then TASKS=perplexity,multifc,rolemrc,synth; else
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
jget() { # FILE EXPR: a value of a results file, e.g. jget F "['task_info']['multifc']['split']"
    /usr/bin/python3 -c "import json,sys; print(eval('json.load(open(sys.argv[1]))' + sys.argv[2]))" "$1" "$2"
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
    # issue 17 item 11: the 3 merged rows are split back into their 9 records, on the console
    # with file:line and in the results
    ok "merged rows repaired in the results" test "$(jget "$T/e8/results_$R.json" "['task_info']['multifc']['examples_loaded']")" = 3487
    ok "  and listed" test "$(jget "$T/e8/results_$R.json" "['task_info']['multifc']['repaired_rows'].__len__()")" = 3
    err_has "$MFC:1464: wast-00047: merged record split into 2 claims: wast-00047 (line 1464), pomt-12586 (line 1465)"
    err_has "$MFC:2069: wast-00111: merged record split into 4 claims"
    ok "per-domain standard errors" grep -q '"f1_macro_stderr"' "$T/e8/results_$R.json"
    ok "multifc samples carry the prompt" sh -c "grep '\"task\":\"multifc\"' '$T/e8/samples_$R.jsonl' | grep -c '\"prompt\":\"Claim: ' | grep -qx 40"
    ok "data file SHA-256 recorded" grep -q "\"$(sha256sum "$MFC" | cut -c1-64)\"" "$T/e8/results_$R.json"
    # issue 17 item 12: a test part with no claim is an error, not F1 = 0
    expect_exit 1 "multifc with an empty test part" "$HW" eval --ckpt "$T/run/ckpt_00000008.h5" \
        --tasks multifc --multifc-data "$MFC" eval.multifc_test_frac=0.001 --output "$T/e0"
    err_has "$MFC: error: no claims to score: the test part of the split (eval.multifc_test_frac 0.001"
    ok "  one line" test "$(wc -l <"$T/err")" -le 4
fi
# issue 17 item 13: provenance and per-sample records
ok "git revision recorded" grep -q '"headwise_git_rev": "' "$T/e8/results_$R.json"
if git rev-parse --short=12 HEAD >/dev/null 2>&1; then
    ok "  the build's revision" grep -q "\"headwise_git_rev\": \"$(git rev-parse --short=12 HEAD)" "$T/e8/results_$R.json"
fi
# the built-in synthetic tasks (the demo's evaluation): accuracy per task with its stderr
ok "synth accuracy per task" sh -c "grep -q '\"acc_copy,none\"' '$T/e8/results_$R.json' && grep -q '\"acc_recall_stderr,none\"' '$T/e8/results_$R.json'"
ok "synth samples: prompt, target and output" sh -c "grep '\"task\":\"synth\"' '$T/e8/samples_$R.jsonl' | grep '\"prompt\":' | grep -c '\"target\":\" ' | grep -qx 40"
ok "rolemrc data SHA-256" grep -q "\"$(sha256sum tests/fixtures/rolemrc_fixture.jsonl | cut -c1-64)\"" "$T/e8/results_$R.json"
ok "prompt template hashes" sh -c "test \$(grep -c '\"prompt_template_sha256\"' '$T/e8/results_$R.json') -ge 2"
ok "truncated prompts reported" grep -q '"truncated_prompts": ' "$T/e8/results_$R.json"
ok "per-tag standard errors" grep -q '"rougeL_stderr": ' "$T/e8/results_$R.json"
ok "perplexity windows in the samples" sh -c "grep '\"task\":\"perplexity\"' '$T/e8/samples_$R.jsonl' | grep -c '\"loss\":' | grep -qx 40"
ok "rolemrc samples carry the prompt" sh -c "grep '\"task\":\"rolemrc\"' '$T/e8/samples_$R.jsonl' | grep -c '\"prompt\":\"<|system|>' | grep -qx 13"
results "$T/e8/results_$R.json" >"$T/r8"
expect_exit 0 "eval, batch 3" ev e3 --batch-size 3
results "$T/e3/results_$R.json" >"$T/r3"
ok "scores do not depend on the batch size" cmp -s "$T/r8" "$T/r3"
if command -v mpirun >/dev/null; then
    for np in 2 4; do
        expect_exit 0 "eval on $np ranks" $MPIRUN -np $np "$HW" eval --ckpt \
            "$T/run/ckpt_00000008.h5" --tasks "$TASKS" --perplexity-data "$D/val.h5" \
            --multifc-data "$MFC" --rolemrc-data tests/fixtures/rolemrc_fixture.jsonl \
            --output "$T/n$np" --limit 40 eval.max_new_tokens=16 eval.bootstrap_iters=200 \
            --log-samples
        results "$T/n$np/results_$R.json" >"$T/rn"
        ok "  scores equal one rank's" cmp -s "$T/r8" "$T/rn"
        # every rank's samples, in the same order as on one rank (only rank 0's before)
        ok "  samples equal one rank's" cmp -s "$T/e8/samples_$R.jsonl" "$T/n$np/samples_$R.jsonl"
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
ok "judge standard errors" grep -q '"judge_style_stderr,none": 0' "$T/j/results_$R.json"
# issue 17 item 10: rolemrc renders with the checkpoint's own chat template (sft.tpl_*)
expect_exit 0 "train with another chat template" "$HW" train configs/tiny.yaml data.train="$D/train.h5" \
    data.val="$D/val.h5" train.steps=4 run.ckpt_every=4 run.dir="$T/tpl" 'sft.tpl_user="USER> "' \
    'sft.tpl_end="<END>"'
expect_exit 0 "rolemrc on it" "$HW" eval --ckpt "$T/tpl/ckpt_00000004.h5" --tasks rolemrc \
    --rolemrc-data tests/fixtures/rolemrc_fixture.jsonl --output "$T/tple" eval.max_new_tokens=4 \
    --log-samples
ok "  prompts in the checkpoint's template" sh -c "grep -c '<END>USER> ' '$T/tple/samples_ckpt_00000004.jsonl' | grep -qx 13"
ok "  and not the default one" sh -c "! grep -q '<|user|>' '$T/tple/samples_ckpt_00000004.jsonl'"
ok "  the template recorded with its hash" grep -qF '\"end_turn\":\"<END>\"' "$T/tple/results_ckpt_00000004.json"
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
    # issue 17 item 11: both methods score one split (the same claims under the same limit)
    expect_exit 0 "eval multifc_classify, limit 40" "$HW" eval --ckpt "$T/cls/ckpt_00000006.h5" \
        --tasks multifc_classify --output "$T/ce40" --limit 40
    split="['task_info']['%s']['split']['test_claims_sha256']"
    ok "  same test claims as the log-likelihood method" test \
        "$(jget "$T/ce40/results_ckpt_00000006.json" "$(printf "$split" multifc_classify)")" = \
        "$(jget "$T/e8/results_$R.json" "$(printf "$split" multifc)")"
    expect_exit 2 "multifc_classify with another test fraction" "$HW" eval --ckpt "$T/cls/ckpt_00000006.h5" \
        --tasks multifc_classify eval.multifc_test_frac=0.3 --output "$T/ce3"
    err_has "the checkpoint's classifier held out data.test_frac 0.2, but eval.multifc_test_frac is 0.3: every MultiFC method scores one split; set eval.multifc_test_frac=0.2"
    head -n 300 "$MFC" >"$T/mfc300.csv"
    nl=$(/usr/bin/python3 -c "import csv,sys; print(len({r[2] for r in list(csv.reader(open(sys.argv[1], newline='')))[1:]}))" "$T/mfc300.csv")
    expect_exit 1 "multifc_classify on a file with fewer labels" "$HW" eval --ckpt "$T/cls/ckpt_00000006.h5" \
        --tasks multifc_classify --multifc-data "$T/mfc300.csv" --output "$T/ce300"
    err_has "$T/mfc300.csv: $nl label strings, but the classifier was trained on 109"
    expect_exit 1 "multifc_classify on an LM checkpoint" "$HW" eval --ckpt "$T/run/ckpt_00000008.h5" \
        --tasks multifc_classify --multifc-data "$MFC"
    err_has "the checkpoint has no classifier head"
    expect_exit 2 "classify with context parallel" "$HW" train "$@" dist.context=2 run.dir="$T/x"
    err_has "train.task classify pools the last token of each sequence; it needs dist.context 1, not 2"
fi
# errors
expect_exit 2 "unknown task" "$HW" eval --ckpt "$T/run" --tasks multifcc
err_has "eval.tasks: unknown task 'multifcc' (known: perplexity, multifc, multifc_classify, rolemrc, chat_qa, synth)"
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
