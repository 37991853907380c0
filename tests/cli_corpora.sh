#!/bin/sh
# tests/cli_corpora.sh -- corpora of many files and mixed sources. data prepare on a glob streams
# every file into numbered shards of at most --shard-tokens tokens whose ids equal encoding each
# file whole (text) or joining its documents (JSONL); under mpirun the files are shared out and
# the output is byte for byte the one-rank output; memory does not grow with the corpus (peak
# RSS for a 4x larger input). Training on data.sources mixes the sources by weight (3:1 within
# four standard deviations), keeps one cursor per source, and a run stopped and resumed on a
# 2-rank data-parallel grid gives the losses and cursors of the uninterrupted one-rank run.
# Errors: a source glob that matches nothing, data.train with data.sources, a checkpoint whose
# sources differ.
. tests/lib.sh
PY=/usr/bin/python3
SRC=../shared/datasets/tinyshakespeare/input.txt
[ -f "$SRC" ] || { SRC=$T/synth.txt && "$HW" data synth --out "$SRC" --bytes 1000000 >/dev/null; }
mkdir -p "$T/in"
split -n l/4 -d "$SRC" "$T/in/part"
for f in "$T"/in/part0?; do mv "$f" "$f.txt"; done
"$PY" - "$SRC" "$T/in" <<'EOF'
import json, sys
paras = open(sys.argv[1], encoding="utf-8", errors="replace").read().split("\n\n")
for k in range(2):
    with open("%s/docs%d.jsonl" % (sys.argv[2], k), "w") as f:
        for i, p in enumerate(paras[k::2]):
            f.write(json.dumps({"id": i, "text": p}) + "\n")
EOF
tokens_of() { # print "file_index n_tokens" of every shard in DIR, and check each <= LIMIT
    "$PY" -c '
import glob, h5py, sys
for p in sorted(glob.glob(sys.argv[1] + "/*_*_*.h5")):
    n = h5py.File(p, "r")["tokens"].shape[0]
    assert n <= int(sys.argv[2]), (p, n)
    print(p.rsplit("/", 1)[1], n)' "$1" "$2"
}
same_ids() { # DIR PREFIX_INDEX IDS_FILE: the file's train+val shards hold exactly the ids
    "$PY" -c '
import glob, h5py, numpy as np, sys
d, i = sys.argv[1], int(sys.argv[2])
parts = [h5py.File(p, "r")["tokens"][()] for s in ("train", "val")
         for p in sorted(glob.glob("%s/%s_%05d_*.h5" % (d, s, i)))]
got = np.concatenate(parts) if parts else np.zeros(0)
want = np.array(open(sys.argv[3]).read().split(), dtype=np.int64)
sys.exit(not np.array_equal(got, want))' "$@"
}

# --- data prepare on a glob ----------------------------------------------------------------------
expect_exit 0 "prepare 4 text files into shards of at most 30000 tokens" "$HW" data prepare \
    --input "$T/in/part*.txt" --out "$T/txt" --vocab 512 --shard-tokens 30000 --val-frac 0.1
ok "every shard holds at most 30000 tokens" tokens_of "$T/txt" 30000
ok "several shards per file, train and val for each" test "$(ls "$T"/txt/train_00003_*.h5 | wc -l)" -ge 2 -a -f "$T/txt/val_00003_000.h5"
for i in 0 1 2 3; do
    "$HW" data tokenize --tokenizer "$T/txt/tokenizer.json" --text "$T/in/part0$i.txt" \
        --out "$T/whole$i.ids" >/dev/null 2>&1
    ok "file $i: its shards hold the ids of the whole file" same_ids "$T/txt" $i "$T/whole$i.ids"
done
expect_exit 0 "prepare 2 JSONL files with the tokenizer just made" "$HW" data prepare \
    --input "$T/in/docs*.jsonl" --tokenizer "$T/txt/tokenizer.json" --out "$T/js" \
    --shard-tokens 50000 --val-frac 0
for i in 0 1; do
    "$HW" data prepare --input "$T/in/docs$i.jsonl" --tokenizer "$T/txt/tokenizer.json" \
        --out "$T/js-one$i" --val-frac 0 >/dev/null 2>&1
    "$PY" -c 'import h5py, sys; print(" ".join(map(str, h5py.File(sys.argv[1], "r")["tokens"][()])))' \
        "$T/js-one$i/train.h5" >"$T/js$i.ids"
    ok "JSONL file $i: the shards equal the in-memory prepare (documents joined by EOT)" \
        same_ids "$T/js" $i "$T/js$i.ids"
done
ok "the tokenizer.json was copied, not retrained" cmp "$T/txt/tokenizer.json" "$T/js/tokenizer.json"
for np in 2 3; do
    expect_exit 0 "the same under mpirun -np $np" $MPIRUN -np $np "$HW" data prepare \
        --input "$T/in/part*.txt" --out "$T/txt$np" --vocab 512 --shard-tokens 30000 --val-frac 0.1
    ok "-np $np wrote the one-rank output byte for byte" diff -r "$T/txt" "$T/txt$np"
done
expect_exit 1 "a glob that matches nothing" "$HW" data prepare --input "$T/in/none*.txt" --out "$T/x"
err_has "matches no file"

# memory: a 4x larger corpus (the same text repeated) must not need more memory
for k in 1 4; do
    mkdir -p "$T/big$k"
    i=0
    while [ $i -lt $((k * 6)) ]; do cat "$SRC" >>"$T/big$k/corpus.txt"; i=$((i + 1)); done
done
rss() { # peak RSS in MB of a headwise command
    "$PY" -c 'import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)' "$@"
}
r1=$(rss "$HW" data prepare --input "$T/big1/corpus.txt" --tokenizer "$T/txt/tokenizer.json" \
    --out "$T/big1/out" --shard-tokens 200000)
r4=$(rss "$HW" data prepare --input "$T/big4/corpus.txt" --tokenizer "$T/txt/tokenizer.json" \
    --out "$T/big4/out" --shard-tokens 200000)
echo "peak RSS: $(du -m "$T/big1/corpus.txt" | cut -f1) MB input $r1 MB, $(du -m "$T/big4/corpus.txt" | cut -f1) MB input $r4 MB"
if [ -n "$HW_SANITIZE" ]; then
    echo "SKIP memory does not grow with the corpus: under ASan freed memory stays in quarantine"
else
    ok "memory does not grow with the corpus (4x input: $r1 -> $r4 MB)" test "$r4" -le $((r1 + r1 / 4 + 8))
fi

# --- training on mixed sources -------------------------------------------------------------------
"$HW" data synth --out "$T/synth.txt" --bytes 400000 >/dev/null
"$HW" data prepare --input "$T/synth.txt" --tokenizer "$T/txt/tokenizer.json" --out "$T/syn" \
    --shard-tokens 20000 >/dev/null 2>&1
set -- configs/tiny.yaml data.train= \
    "data.sources=[{path: \"$T/txt/train_*.h5\", weight: 3}, {path: \"$T/syn/train_*.h5\", weight: 1}]" \
    "data.val=$T/txt/val_*.h5" train.threads=1 train.log_every=1 train.steps=30 \
    train.micro_batch=8 train.grad_accum=2 run.ckpt_every=15
expect_exit 0 "train 30 steps on two sources weighted 3:1" "$HW" train "$@" run.dir="$T/mix"
cursors() { "$PY" -c 'import h5py, sys; print(*h5py.File(sys.argv[1], "r")["state/cursor"][()])' "$1"; }
c=$(cursors "$T/mix/ckpt_00000030.h5")
echo "cursors (global, source 0, source 1): $c"
ok "one cursor per source, and they add up" "$PY" -c 'import sys; g, a, b = map(int, sys.argv[1:]); sys.exit(not (g == 480 and a + b == g))' $c
ok "the mix is 3:1 within 4 standard deviations" "$PY" -c '
import math, sys; g, a, b = map(int, sys.argv[1:]); sd = math.sqrt(0.75 * 0.25 / g)
print("source 0 share %.3f (expected 0.75 +- %.3f)" % (a / g, 4 * sd)); sys.exit(abs(a / g - 0.75) > 4 * sd)' $c
ok "validation ran over the val glob" grep -q '"val_loss"' "$T/mix/metrics.jsonl"
HW_STOP_AFTER_STEP=15 expect_exit 4 "the same run stopped after step 15" "$HW" train "$@" run.dir="$T/mix2"
expect_exit 0 "resumed on a 2-rank data-parallel grid" $MPIRUN -np 2 "$HW" train "$@" \
    run.dir="$T/mix2" dist.data=2
metric_lines "$T/mix/metrics.jsonl" 15 >"$T/m1"
metric_lines "$T/mix2/metrics.jsonl" 15 >"$T/m2"
ok "steps 16..30 give the one-rank losses" close "$T/m1" "$T/m2" 1e-5
ok "and the same cursors" test "$(cursors "$T/mix2/ckpt_00000030.h5")" = "$c"

# --- errors --------------------------------------------------------------------------------------
expect_exit 1 "a source that matches nothing" "$HW" train configs/tiny.yaml data.train= \
    "data.sources=[{path: \"$T/txt/train_*.h5\"}, {path: \"$T/nothing_*.h5\"}]" run.dir="$T/bad1"
err_has "data.sources[1]: $T/nothing_*.h5 matches no file"
expect_exit 2 "data.train with data.sources" "$HW" train configs/tiny.yaml \
    "data.sources=[{path: \"$T/txt/train_*.h5\"}]" run.dir="$T/bad2"
err_has "give data.train or data.sources, not both"
expect_exit 1 "resuming with a source less" "$HW" train configs/tiny.yaml data.train= \
    "data.sources=[{path: \"$T/txt/train_*.h5\"}]" "data.val=$T/txt/val_*.h5" train.threads=1 \
    train.steps=40 train.micro_batch=8 train.grad_accum=2 run.dir="$T/mix"
err_has "the sources changed since it was written"
finish
