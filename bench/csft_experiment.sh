#!/bin/sh
# bench/csft_experiment.sh -- the conditional instruction fine-tuning experiment (docs/sft.md):
#   1. bench/csft_data.py builds a synthetic world (countries and capitals) and an instruction
#      set mixing context-dependent turns (a needle in the user message) with knowledge-only
#      turns (capitals seen in pretraining), plus three test sets;
#   2. a tiny GPT is pretrained on the world's facts;
#   3. vanilla SFT from it;
#   4. `headwise data csft-score` scores every response turn with the vanilla model's attention
#      (the seed model, as in the paper) and tags the user turns above beta with [IND];
#   5. conditional SFT from the same pretrained model on the tagged set;
#   6. both are evaluated (chat_qa, containment) on the context tests with and without [IND] and
#      on the knowledge-only test; a table is printed and written to runs/csft-exp/results.md.
# One command, about 5-10 minutes on 2 cores. Usage: sh bench/csft_experiment.sh [BETA]
set -e
HW=${HW:-build/headwise}
BETA=${1:-0.6}
OUT=runs/csft-exp
PY=${PYTHON:-/usr/bin/python3}
[ -x "$HW" ] || make -j2 "$HW"
mkdir -p "$OUT"
rm -rf "$OUT"/eval-* "$OUT"/sft-vanilla "$OUT"/sft-csft "$OUT"/lm # results of an earlier run
t0=$(date +%s)
$PY bench/csft_data.py --out "$OUT/data"
"$HW" data prepare --input "$OUT/data/pretrain.txt" --vocab 512 --out "$OUT/lm-data"
"$HW" train configs/csft-pretrain.yaml
"$HW" train configs/csft-sft.yaml run.dir="$OUT/sft-vanilla" run.resume=never
"$HW" data csft-score --ckpt "$OUT/sft-vanilla" --input "$OUT/data/sft.jsonl" \
    --out "$OUT/data/sft_tagged.jsonl" --beta "$BETA" | tee "$OUT/csft-score.txt"
"$HW" train configs/csft-sft.yaml sft.train="$OUT/data/sft_tagged.jsonl" run.dir="$OUT/sft-csft" \
    run.resume=never
for model in vanilla csft; do
    for set in conflict needle knowledge; do
        for ind in no yes; do
            [ "$set" = knowledge ] && [ "$ind" = yes ] && [ "$model" = vanilla ] && continue
            flag=""
            [ "$ind" = yes ] && flag="--indicator"
            "$HW" eval --ckpt "$OUT/sft-$model" --tasks chat_qa \
                --chat-data "$OUT/data/test_$set.jsonl" $flag --max-new-tokens 24 \
                --output "$OUT/eval-$model-$set-$ind" --log-samples >/dev/null
        done
    done
done
$PY - "$OUT" "$BETA" "$(($(date +%s) - t0))" <<'EOF'
import glob, json, sys
out, beta, secs = sys.argv[1], sys.argv[2], sys.argv[3]
def load(path):
    return [json.loads(l) for l in open(path)]
# tagging against the ground truth kind of each turn
tagged = load(out + "/data/sft_tagged.jsonl")
tp = sum(1 for x in tagged if x["kind"] == "context" and "[IND]" in x["conversations"][0]["value"])
fp = sum(1 for x in tagged if x["kind"] != "context" and "[IND]" in x["conversations"][0]["value"])
nc = sum(1 for x in tagged if x["kind"] == "context")
sc = {"context": [], "knowledge": []}
for x in tagged:
    sc[x["kind"]].append(x["csft_scores"][1])
mean = lambda v: sum(v) / len(v) if v else float("nan")
rows = []
def score(model, s, ind):
    d = "%s/eval-%s-%s-%s" % (out, model, s, ind)
    res_files, sample_files = glob.glob(d + "/results_*.json"), glob.glob(d + "/samples_*.jsonl")
    assert len(res_files) == 1 and len(sample_files) == 1, (res_files, sample_files)
    m = json.load(open(res_files[0]))["results"]["chat_qa"]
    samples = load(sample_files[0])
    mem = None
    if s == "conflict":  # answers that follow pretraining instead of the passage
        tests = load(out + "/data/test_conflict.jsonl")
        mem = mean([1.0 if tests[x["line"] - 1]["memory"] in x["output"] else 0.0
                    for x in samples])
    sub = {k[len("contains_"):-len(",none")]: v for k, v in m.items() if k.startswith("contains_")}
    return m["contains,none"], mem, sub
lines = ["# CSFT experiment (bench/csft_experiment.sh, beta %s, %s s)" % (beta, secs), "",
         "csft-score on the %d SFT turns with the vanilla model (layer n_layers/2): mean score "
         "context turns %.3f, knowledge turns %.3f; tagged %d of %d context turns and %d of %d "
         "knowledge turns" % (len(tagged), mean(sc["context"]), mean(sc["knowledge"]), tp, nc, fp,
                              len(tagged) - nc), "",
         "| model | test | [IND] | accuracy (containment) | answers from pretraining memory |",
         "|---|---|---|---|---|"]
for model in ("vanilla", "csft"):
    for s in ("conflict", "needle", "knowledge"):
        for ind in ("no", "yes"):
            if s == "knowledge" and ind == "yes" and model == "vanilla":
                continue
            acc, mem, sub = score(model, s, ind)
            extra = ""
            if s == "knowledge":
                extra = " (trained %.2f, held-out %.2f)" % (sub.get("trained", 0), sub.get("heldout", 0))
            lines.append("| %s | %s | %s | %.2f%s | %s |" % (model, s, ind, acc, extra,
                         "%.2f" % mem if mem is not None else ""))
text = "\n".join(lines) + "\n"
open(out + "/results.md", "w").write(text)
print(text)
EOF
