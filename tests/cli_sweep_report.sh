#!/bin/sh
# tests/cli_sweep_report.sh -- `headwise report DIR...` over a sweep: three tiny runs with
# different overrides and one empty run dir give sweep.md, sweep.csv, sweep_loss.svg and
# index.html with one row per run in natural order (sweep-2, sweep-9, sweep-10, sweep-11), the
# config keys that differ and the final and best losses recomputed here from metrics.jsonl; the
# empty dir is a "no metrics yet" row; rerunning the same glob skips the report's own dir; the
# parent directory works too; a malformed metrics.jsonl is a row with its error; best val_loss
# is not the last one when validation gets worse; no run with metrics, no runs at all and bad
# arguments give one line and exit 1 (2 for usage); one run directory keeps the single-run report.
. tests/lib.sh
D=$T/data
S=$T/runs
prepare_tiny "$D"
train() { # NAME overrides...
    name=$1
    shift
    "$HW" train configs/tiny.yaml data.train="$D/train.h5" data.val="$D/val.h5" train.steps=6 \
        train.log_every=1 train.val_every=2 run.ckpt_every=3 run.dir="$S/$name" "$@"
}
expect_exit 0 "train sweep-2 (lr 1e-3)" train sweep-2 train.lr=1e-3
expect_exit 0 "train sweep-9 (lr 1e-2)" train sweep-9 train.lr=1e-2
expect_exit 0 "train sweep-10 (lr 3e-3, d_model 64)" train sweep-10 train.lr=3e-3 model.d_model=64
mkdir -p "$S/sweep-11" # a task that has not started

xml_check_available

# -- the glob form: runs/sweep-* -> runs/sweep-report
expect_exit 0 "report runs/sweep-*" "$HW" report "$S"/sweep-*
R=$S/sweep-report
for f in sweep_loss.svg sweep.csv sweep.md index.html; do
    ok "$f written and printed" sh -c "grep -qx 'wrote $R/$f' '$T/out' && test -s '$R/$f'"
done
ok "four files, nothing else printed" test "$(wc -l <"$T/out")" = 4
ok "natural order: sweep-2 sweep-9 sweep-10 sweep-11" test \
    "$(sed -n 's/^| \(sweep-[0-9]*\) |.*/\1/p' "$R/sweep.md" | tr '\n' ' ')" = \
    "sweep-2 sweep-9 sweep-10 sweep-11 "
ok "only the differing keys, in config order" grep -q \
    "Config keys that differ between the runs: \`model.d_model\`, \`train.lr\`\." "$R/sweep.md"

# the row of run $1 recomputed from its metrics.jsonl: steps, final train loss, final val_loss,
# best val_loss and its step (the first step with the lowest value)
expect_row() {
    awk -v name="$1" -v over="$2" '
        { step = $0; sub(/.*"step":/, "", step); sub(/[,}].*/, "", step);
          loss = $0; sub(/.*"loss":/, "", loss); sub(/[,}].*/, "", loss); last = step; lastloss = loss }
        /"val_loss":/ { v = $0; sub(/.*"val_loss":/, "", v); sub(/[,}].*/, "", v);
          vl = v; if (best == "" || v + 0 < best + 0) { best = v; bstep = step } }
        END { printf "| %s | %s | %d | %.4f | %.4f | %.4f | %d |\n", name, over, last, lastloss, vl, best, bstep }' \
        "$S/$1/metrics.jsonl"
}
row_ok() { # NAME OVERRIDES: the row starts with the recomputed cells
    want=$(expect_row "$1" "$2")
    grep -qF -- "$want" "$R/sweep.md" || { echo "     want: $want"; grep "^| $1 |" "$R/sweep.md" | sed 's/^/     got:  /'; return 1; }
}
ok "sweep-2 row: overrides, steps, final/best losses" row_ok sweep-2 "model.d_model=32 train.lr=0.001"
ok "sweep-9 row" row_ok sweep-9 "model.d_model=32 train.lr=0.01"
ok "sweep-10 row" row_ok sweep-10 "model.d_model=64 train.lr=0.003"
ok "sweep-10's latest checkpoint" grep -q "^| sweep-10 | .* | ckpt_00000006.h5 | ok |$" "$R/sweep.md"
ok "the empty dir: a 'no metrics yet' row" grep -q \
    "^| sweep-11 | (no config.yaml) | - | - | - | - | - | - | - | no metrics yet (no metrics.jsonl) |$" "$R/sweep.md"
ok "summary counts" grep -q "4 runs: 3 with metrics, 1 without metrics yet\." "$R/sweep.md"

# sweep.csv: parses, one row per run, the same numbers as metrics.jsonl
for r in sweep-2 sweep-9 sweep-10; do expect_row "$r" -; done | tr -d '|' >"$T/expect"
if [ -x /usr/bin/python3 ]; then
    csv_ok() {
        /usr/bin/python3 - "$R/sweep.csv" "$T/expect" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="")))
assert [r["run"] for r in rows] == ["sweep-2", "sweep-9", "sweep-10", "sweep-11"], rows
assert [r["status"] for r in rows] == ["ok", "ok", "ok", "no metrics"], rows
assert [(r["model.d_model"], r["train.lr"]) for r in rows] == [
    ("32", "0.001"), ("32", "0.01"), ("64", "0.003"), ("", "")], rows
assert "run.dir" not in rows[0] and "train.steps" not in rows[0], list(rows[0])
want = {l.split()[0]: l.split()[2:] for l in open(sys.argv[2])}
for r in rows[:3]:
    steps, loss, val, best, bstep = want[r["run"]]
    assert r["steps"] == steps and r["best_val_loss_step"] == bstep, (r, steps, bstep)
    for k, v in (("train_loss", loss), ("val_loss", val), ("best_val_loss", best)):
        assert abs(float(r[k]) - float(v)) <= 5e-5, (r["run"], k, r[k], v)
    assert float(r["tokens_per_s"]) > 0 and r["latest"] == "ckpt_00000006.h5", r
assert rows[3]["steps"] == "" and "no metrics.jsonl" in rows[3]["note"], rows[3]
EOF
    }
    ok "sweep.csv parses: runs, keys, numbers" csv_ok
else
    echo "SKIP sweep.csv parse: /usr/bin/python3 is not installed"
    ok "sweep.csv has a header and a row per run" test "$(wc -l <"$R/sweep.csv")" = 5
fi

ok "sweep_loss.svg is well-formed XML" xml_ok "$R/sweep_loss.svg"
ok "  validation and train loss panels" sh -c \
    "grep -q '>validation loss<' '$R/sweep_loss.svg' && grep -q '>train loss<' '$R/sweep_loss.svg'"
ok "  legend names each run with its overrides" test \
    "$(grep -c '>sweep-10: model.d_model=64 train.lr=0.003<' "$R/sweep_loss.svg")" = 2
ok "  no line for the run without metrics" sh -c "! grep -q '>sweep-11' '$R/sweep_loss.svg'"
ok "  one train-loss line per run" test "$(grep -c '<polyline' "$R/sweep_loss.svg")" -ge 6
ok "index.html: table, plot and links" sh -c "grep -q '<img src=\"sweep_loss.svg\"' '$R/index.html' &&
    grep -q 'href=\"sweep.csv\"' '$R/index.html' && grep -q 'href=\"sweep.md\"' '$R/index.html' &&
    grep -q '<td>model.d_model=64 train.lr=0.003</td>' '$R/index.html'"
ok "index.html links each run's directory" grep -q '<a href="../sweep-9">sweep-9</a>' "$R/index.html"

# rerun: the glob now matches runs/sweep-report too; it is skipped
expect_exit 0 "rerun the same glob" "$HW" report "$S"/sweep-*
ok "  still four rows (the report's own dir is not a run)" test \
    "$(grep -c '^| sweep-[0-9]* |' "$R/sweep.md")" = 4

# one run directory: the single-run report, as before
expect_exit 0 "one run directory: its own report" "$HW" report "$S/sweep-9"
ok "  loss.svg in RUN_DIR/report, no sweep.md" sh -c \
    "test -s '$S/sweep-9/report/loss.svg' && test ! -e '$S/sweep-9/report/sweep.md'"

# the parent directory: runs/ -> runs/report; the empty dir is not taken for a run
expect_exit 0 "report the parent directory" "$HW" report "$S/"
ok "  written to PARENT/report" grep -qx "wrote $S/report/sweep.md" "$T/out"
ok "  the three runs with metrics (an empty subdirectory is not a run)" test \
    "$(sed -n 's/^| \(sweep-[0-9]*\) |.*/\1/p' "$S/report/sweep.md" | tr '\n' ' ')" = \
    "sweep-2 sweep-9 sweep-10 "
ok "  links to a run's own report when it has one" \
    grep -q '<a href="../sweep-9/report/index.html">sweep-9</a>' "$S/report/index.html"

# --out, a malformed run, a run whose validation gets worse, a resumed run's re-logged steps
mkdir -p "$T/mixed/bad" "$T/mixed/worse"
printf '{"step":1,"loss":2.0}\n{"step":2,"loss":"low"}\n' >"$T/mixed/bad/metrics.jsonl"
for s in 1 2 3 4 3 4 5; do
    case $s in 2) v=',"val_loss":3.25' ;; 3) v=',"val_loss":2.5' ;; 4) v=',"val_loss":2.75' ;; 5) v=',"val_loss":2.875' ;; *) v='' ;; esac
    echo "{\"step\":$s,\"loss\":$((6 - s)).5,\"tokens_per_s\":$((s * 100))$v}"
done >"$T/mixed/worse/metrics.jsonl"
expect_exit 0 "a malformed run among good ones" "$HW" report "$T/mixed/bad" "$T/mixed/worse" \
    "$S/sweep-2" --out "$T/mixed-out"
ok "  written to --out" test -s "$T/mixed-out/sweep.md"
ok "  the malformed run: a row with its error" grep -qF \
    "| bad | (no config.yaml) | - | - | - | - | - | - | - | $T/mixed/bad/metrics.jsonl:2: error: \"loss\" is a string, expected a number or null |" \
    "$T/mixed-out/sweep.md"
ok "  best val_loss 2.5 at step 3, final 2.875 at step 5, median tokens/s" grep -qF \
    "| worse | (no config.yaml) | 5 | 1.5000 | 2.8750 | 2.5000 | 3 | 300 | - | ok |" "$T/mixed-out/sweep.md"
ok "  a run with a config among runs without: its keys are not compared" \
    grep -qF "| sweep-2 | - | 6 |" "$T/mixed-out/sweep.md"
if [ -x /usr/bin/python3 ]; then
    ok "  sweep.csv quotes the error's quotes" /usr/bin/python3 -c '
import csv, sys
rows = {r["run"]: r for r in csv.DictReader(open(sys.argv[1], newline=""))}
assert rows["bad"]["status"] == "error", rows["bad"]
assert rows["bad"]["note"] == sys.argv[2] + ":2: error: \"loss\" is a string, expected a number or null", rows["bad"]
assert rows["worse"]["best_val_loss"] == "2.5" and rows["worse"]["best_val_loss_step"] == "3", rows["worse"]
' "$T/mixed-out/sweep.csv" "$T/mixed/bad/metrics.jsonl"
fi

# 20 runs: the legend wraps into rows and the panel grows instead of squeezing the plot; runs
# 11-20 are dashed (the palette has 10 colours)
i=1
while [ $i -le 20 ]; do
    mkdir -p "$T/many/a-rather-long-run-name-$i"
    printf '{"step":1,"loss":%d.5}\n{"step":2,"loss":%d.25}\n' $i $i >"$T/many/a-rather-long-run-name-$i/metrics.jsonl"
    i=$((i + 1))
done
expect_exit 0 "20 runs" "$HW" report "$T/many"
ok "  sweep_loss.svg is well-formed XML" xml_ok "$T/many/report/sweep_loss.svg"
ok "  one train-loss panel without val_loss" sh -c "! grep -q '>validation loss<' '$T/many/report/sweep_loss.svg'"
ok "  a legend entry per run, no overrides without configs" \
    test "$(grep -c '>a-rather-long-run-name-[0-9]*<' "$T/many/report/sweep_loss.svg")" = 20
frame_h=$(sed -n 's/.*<rect [^>]*height="\([0-9.]*\)" class="frame".*/\1/p' "$T/many/report/sweep_loss.svg")
ok "  the plot keeps its height under a 5-row legend ($frame_h px)" \
    awk -v h="$frame_h" 'BEGIN { exit !(h + 0 >= 200) }'
ok "  runs 11-20 dashed" test "$(grep -c '<polyline[^>]*stroke-dasharray' "$T/many/report/sweep_loss.svg")" = 10

# -- errors
mkdir -p "$T/idle/a" "$T/idle/b" "$T/nothing"
: >"$T/idle/a/metrics.jsonl"
cp "$S/sweep-2/config.yaml" "$T/idle/b/"
expect_exit 1 "a sweep where no run has metrics yet" "$HW" report "$T/idle"
err_has "$T/idle: none of the 2 run directories has metrics to report (a: no metrics yet (metrics.jsonl has no step))"
ok "  one line" test "$(wc -l <"$T/err")" = 1
ok "  nothing written" test ! -e "$T/idle/report"
expect_exit 1 "several dirs, none with metrics" "$HW" report "$T/idle/a" "$T/nope"
err_has "none of the 2 run directories has metrics to report"
ok "  one line" test "$(wc -l <"$T/err")" = 1
expect_exit 1 "a directory with no runs" "$HW" report "$T/nothing"
err_has "$T/nothing: no metrics.jsonl"
ok "  one line" test "$(wc -l <"$T/err")" = 1
expect_exit 2 "--out without a directory" "$HW" report "$S/sweep-2" "$S/sweep-9" --out
err_has "--out needs a directory"
expect_exit 2 "unknown option with several dirs" "$HW" report "$S/sweep-2" "$S/sweep-9" --bogus
err_has "unknown option '--bogus'"
expect_exit 2 "no directory" "$HW" report --out "$T/x"
err_has "usage: headwise report RUN_DIR [--out DIR]"
finish
