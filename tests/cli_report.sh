#!/bin/sh
# tests/cli_report.sh -- `headwise report` end to end: a small trained and evaluated run gives
# every plot, index.html and summary.md (well-formed SVG, the best checkpoint, the eval table,
# relative links with --out); synthetic metrics cover null/NaN values, one point, 5000 points
# (downsampled), per-layer head usage, communication, a resumed run's re-logged steps and the
# classifier's validation scores; eval/summary.json stands in for missing results files; a
# missing run directory, a missing or malformed metrics.jsonl and bad arguments give one clear
# line and exit 1 (2 for usage).
. tests/lib.sh
D=$T/data
prepare_tiny "$D"
expect_exit 0 "train a small model" "$HW" train configs/tiny.yaml data.train="$D/train.h5" \
    data.val="$D/val.h5" train.steps=8 run.ckpt_every=4 run.dir="$T/run"
expect_exit 0 "evaluate its checkpoints" "$HW" eval --ckpt "$T/run" --tasks perplexity \
    --perplexity-data "$D/val.h5" --limit 20 eval.bootstrap_iters=100

# -- the report of a real run
expect_exit 0 "report a run directory" "$HW" report "$T/run"
R=$T/run/report
for f in loss lr throughput grad_norm eval; do
    ok "$f.svg written and printed" grep -qx "wrote $R/$f.svg" "$T/out"
done
ok "index.html written and printed" grep -qx "wrote $R/index.html" "$T/out"
ok "summary.md written and printed" grep -qx "wrote $R/summary.md" "$T/out"
ok "no moh_usage.svg without head usage in the metrics" test ! -e "$R/moh_usage.svg"

xml_check_available
for f in "$R"/*.svg; do
    ok "$(basename "$f") is well-formed XML" xml_ok "$f"
done

# the best checkpoint: the lowest val_loss logged at a checkpoint step (4 or 8)
vl() { sed -n "s/^{\"step\":$1,.*\"val_loss\":\([^,}]*\).*/\1/p" "$T/run/metrics.jsonl"; }
BEST=$(awk -v a="$(vl 4)" -v b="$(vl 8)" 'BEGIN { print (a + 0 < b + 0) ? 4 : 8 }')
BEST_NAME=$(printf 'ckpt_%08d.h5' "$BEST")
ok "index.html names the best checkpoint ($BEST_NAME)" \
    grep -q "<th>best checkpoint</th><td>$BEST_NAME (step $BEST, lowest val_loss" "$R/index.html"
ok "summary.md names the best checkpoint" grep -q "| best checkpoint | $BEST_NAME (step $BEST" "$R/summary.md"
ok "index.html: eval table rows" grep -q "<td>perplexity</td><td>perplexity</td>" "$R/index.html"
ok "index.html: eval value ± stderr" grep -q "<td class=\"num[a-z ]*\">[0-9.]* ± [0-9.]*</td>" "$R/index.html"
ok "index.html: one column per evaluated checkpoint" \
    sh -c "grep -q 'ckpt_00000004.h5<br>step 4' '$R/index.html' && grep -q 'ckpt_00000008.h5<br>step 8' '$R/index.html'"
ok "summary.md: eval table" grep -q "^| perplexity | loss | [0-9.]* ± [0-9.]* | [0-9.]* ± [0-9.]* |" "$R/summary.md"
for f in loss lr throughput grad_norm eval; do
    ok "index.html shows $f.svg" grep -q "<img src=\"$f.svg\"" "$R/index.html"
done
ok "index.html: config in a <pre>" grep -q "^  n_layers: 2" "$R/index.html"
ok "index.html: grid" grep -q "<th>ranks</th><td>1 = data 1 x heads 1 x context 1</td>" "$R/index.html"
ok "index.html: steps done" grep -q "<th>steps done</th><td>8 of 8" "$R/index.html"
ok "index.html: losses" grep -q "<th>train loss</th><td>first [0-9.]* (step 1); last [0-9.]* (step 8); best" "$R/index.html"
ok "index.html: throughput and MFU" sh -c "grep -q '<th>throughput</th><td>[0-9]* tokens/s' '$R/index.html' && grep -q '<th>MFU</th><td>[0-9.]*%' '$R/index.html'"
ok "index.html: links to the run's files" grep -q 'href="../metrics.jsonl"' "$R/index.html"
ok "loss.svg has train and val loss" sh -c "grep -q '>train loss<' '$R/loss.svg' && grep -q '>val loss<' '$R/loss.svg'"
ok "eval.svg has error bars" grep -q '<path d="M' "$R/eval.svg"

expect_exit 0 "report --out DIR" "$HW" report "$T/run/" --out "$T/elsewhere/dash"
ok "  written to DIR" test -s "$T/elsewhere/dash/index.html"
ok "  links relative to DIR" grep -q 'href="../../run/config.yaml"' "$T/elsewhere/dash/index.html"

# eval/summary.json stands in when the results files are gone; a broken results file warns
cp -r "$T/run" "$T/run2"
rm -rf "$T/run2/report" "$T/run2"/eval/results_*.json
expect_exit 0 "report from eval/summary.json" "$HW" report "$T/run2"
ok "  eval.svg from summary.json" test -s "$T/run2/report/eval.svg"
ok "  eval table from summary.json" grep -q "eval/summary.json" "$T/run2/report/index.html"
echo '{"results": ' >"$T/run2/eval/results_ckpt_00000099.json"
expect_exit 0 "a broken eval results file is left out" "$HW" report "$T/run2"
err_has "results_ckpt_00000099.json"
err_has "left out of the report"

# -- synthetic metrics: 5000 steps with null, NaN and Infinity, head usage, communication
mkdir -p "$T/syn"
awk 'BEGIN { srand(7); for (s = 1; s <= 5000; s++) {
    loss = (s == 100 || s == 2500) ? "null" : sprintf("%.5f", 5 * exp(-s / 1500) + 0.3 * rand());
    tps = s == 3000 ? "NaN" : sprintf("%.0f", 12000 + 2000 * rand());
    gn = s == 4000 ? "Infinity" : sprintf("%.4f", 1 + rand());
    val = s % 250 == 0 ? sprintf(",\"val_loss\":%.5f,\"val_acc\":%.3f,\"val_f1_macro\":%.3f", 5 * exp(-s / 1500), s / 6000, s / 7000) : "";
    printf "{\"step\":%d,\"loss\":%s,\"lr\":%.6g,\"grad_norm\":%s,\"tokens_per_s\":%s,\"mfu\":0.31%s", s, loss, 1e-3 * (s < 100 ? s / 100 : 1), gn, tps, val;
    printf ",\"comm\":{\"dp_grad\":{\"bytes\":1048576.0,\"s\":%.6f},\"other\":{\"bytes\":16.0,\"s\":0.0001}},\"step_s\":0.1,\"comm_s\":%.6f", 0.01 * rand(), 0.02 * rand();
    printf ",\"moh_usage\":[[%.3f,%.3f,%.3f],[%.3f,%.3f,%.3f]]}\n", rand() / 3, rand() / 3, rand() / 3, rand() / 3, rand() / 3, rand() / 3 } }' >"$T/syn/metrics.jsonl"
expect_exit 0 "report 5000 synthetic steps" "$HW" report "$T/syn"
S=$T/syn/report
ok "moh_usage.svg written" test -s "$S/moh_usage.svg"
ok "  one panel per layer" sh -c "grep -q '>layer 0<' '$S/moh_usage.svg' && grep -q '>layer 1<' '$S/moh_usage.svg' && ! grep -q '>layer 2<' '$S/moh_usage.svg'"
ok "  mean, min and max" sh -c "grep -q '>mean<' '$S/moh_usage.svg' && grep -q '>max<' '$S/moh_usage.svg'"
ok "throughput.svg: exposed communication" grep -q "exposed communication" "$S/throughput.svg"
ok "loss.svg: validation accuracy and F1 panel" grep -q "validation accuracy and macro F1" "$S/loss.svg"
for f in "$S"/*.svg; do
    ok "$(basename "$f") is well-formed XML" xml_ok "$f"
    npts=$(grep -o 'points="[^"]*"' "$f" | awk '{ if (NF > m) m = NF } END { print m + 0 }')
    ok "  at most 2000 points per line ($npts)" test "$npts" -le 2000 -a "$npts" -gt 100
done
ok "null/NaN loss breaks the line" test "$(grep -c '<polyline fill="none" stroke="#1f77b4"' "$S/loss.svg")" -ge 3
ok "non-finite losses counted" grep -q "<th>non-finite loss</th><td>2 of 5000 steps" "$S/index.html"
ok "communication per collective" grep -q "<td>dp_grad</td><td class=\"num\">1.0 MiB</td>" "$S/index.html"
ok "no checkpoints: said so" grep -q "none (no ckpt_\*.h5 in the run directory)" "$S/index.html"
ok "no config: said so" grep -q "<th>grid</th><td>unknown: " "$S/index.html"

# one step; a resumed run that re-logged steps 2 and 3
mkdir -p "$T/one" "$T/resumed"
echo '{"step":1,"loss":5.5,"lr":0.001,"grad_norm":null,"tokens_per_s":100.0,"mfu":0.01}' >"$T/one/metrics.jsonl"
expect_exit 0 "report a one-step run" "$HW" report "$T/one"
ok "  a single point is a dot" grep -q '<circle' "$T/one/report/loss.svg"
ok "  an all-null series says no data" grep -q '>no data<' "$T/one/report/grad_norm.svg"
for s in 1 2 3 2 3 4; do
    echo "{\"step\":$s,\"loss\":$((10 - s)).5,\"lr\":0.001,\"grad_norm\":1.0,\"tokens_per_s\":100.0,\"mfu\":0.01}"
done >"$T/resumed/metrics.jsonl"
expect_exit 0 "report a resumed run" "$HW" report "$T/resumed"
ok "  re-logged steps replace the earlier lines" grep -q "<th>steps done</th><td>4 (4 metrics lines)" "$T/resumed/report/index.html"

# -- errors
expect_exit 1 "missing run directory" "$HW" report "$T/nope"
err_has "$T/nope: no such run directory"
ok "  one line" test "$(wc -l <"$T/err")" = 1
mkdir -p "$T/nometrics"
expect_exit 1 "no metrics.jsonl" "$HW" report "$T/nometrics"
err_has "$T/nometrics: no metrics.jsonl"
ok "  one line" test "$(wc -l <"$T/err")" = 1
mkdir -p "$T/bad"
printf '{"step":1,"loss":2.0}\n\n{"step":2,"loss":\n' >"$T/bad/metrics.jsonl"
expect_exit 1 "truncated metrics line" "$HW" report "$T/bad"
err_has "$T/bad/metrics.jsonl:3: error: "
ok "  one line" test "$(wc -l <"$T/err")" = 1
printf '{"step":1,"loss":2.0}\n{"step":2,"loss":"low"}\n' >"$T/bad/metrics.jsonl"
expect_exit 1 "a string where a number belongs" "$HW" report "$T/bad"
err_has "$T/bad/metrics.jsonl:2: error: \"loss\" is a string, expected a number or null"
printf '{"loss":2.0}\n' >"$T/bad/metrics.jsonl"
expect_exit 1 "a line without a step" "$HW" report "$T/bad"
err_has "$T/bad/metrics.jsonl:1: error: missing \"step\""
printf '{"step":1,"moh_usage":[[0.5,"x"]]}\n' >"$T/bad/metrics.jsonl"
expect_exit 1 "malformed moh_usage" "$HW" report "$T/bad"
err_has "$T/bad/metrics.jsonl:1: error: \"moh_usage\"[0] is not a list of numbers"
: >"$T/bad/metrics.jsonl"
expect_exit 1 "empty metrics.jsonl" "$HW" report "$T/bad"
err_has "$T/bad/metrics.jsonl: no steps logged yet"
expect_exit 2 "no RUN_DIR" "$HW" report
err_has "usage: headwise report RUN_DIR [--out DIR]"
expect_exit 2 "unknown option" "$HW" report "$T/run" --bogus
err_has "unknown option '--bogus'"
finish
