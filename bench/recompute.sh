#!/bin/sh
# bench/recompute.sh -- train.recompute attention and block against none on the benchmark GPT
# (configs/bench-gpt.yaml: d 384, 6 layers, SwiGLU d_ff 1024) at T 256 (batch 8) and T 1024
# (batch 2), on the built-in synthetic corpus: the step's peak backend memory (mem_peak_mib)
# and tokens/s, in ROUNDS interleaved triples of 12-step runs (median over steps 3..12, then the
# median ratio to none). Usage: sh bench/recompute.sh [build/headwise]   (ROUNDS=3)
set -e
HW=${1:-build/headwise}
ROUNDS=${ROUNDS:-3}
OUT=runs/recompute-bench
DATA=$OUT/data
mkdir -p "$OUT"
[ -f "$DATA/train.h5" ] ||
    "$HW" data prepare --synthetic --bytes 2000000 --vocab 272 --out "$DATA" >/dev/null
run() { # mode T batch dir
    rm -rf "$4"
    "$HW" train configs/bench-gpt.yaml train.recompute="$1" model.max_seq="$2" \
        train.seq_len="$2" train.micro_batch="$3" train.steps=12 data.train="$DATA/train.h5" \
        run.dir="$4" run.tensorboard=false >"$4.log" 2>&1
}
field() { # dir key: the median over steps 3..12
    sed -n "s/.*\"$2\":\\([0-9.e+]*\\).*/\\1/p" "$1/metrics.jsonl" | tail -n +3 | sort -g |
        awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
for shape in "256 8" "1024 2"; do
    set -- $shape
    echo "== T $1, batch $2 ($ROUNDS interleaved triples)"
    : >"$OUT/ratios_a"
    : >"$OUT/ratios_b"
    i=0
    while [ $i -lt "$ROUNDS" ]; do
        run none "$1" "$2" "$OUT/n"
        run attention "$1" "$2" "$OUT/a"
        run block "$1" "$2" "$OUT/b"
        n=$(field "$OUT/n" tokens_per_s) a=$(field "$OUT/a" tokens_per_s)
        b=$(field "$OUT/b" tokens_per_s)
        echo "  round $((i + 1)): none $n tok/s $(field "$OUT/n" mem_peak_mib) MiB," \
            "attention $a tok/s $(field "$OUT/a" mem_peak_mib) MiB," \
            "block $b tok/s $(field "$OUT/b" mem_peak_mib) MiB"
        awk -v n="$n" -v a="$a" 'BEGIN { print a / n }' >>"$OUT/ratios_a"
        awk -v n="$n" -v b="$b" 'BEGIN { print b / n }' >>"$OUT/ratios_b"
        i=$((i + 1))
    done
    for m in a b; do
        sort -g "$OUT/ratios_$m" | awk -v m=$m '{ v[NR] = $1 } END {
            printf "  %s / none tokens/s, median: %.3fx\n", (m == "a" ? "attention" : "block"),
                v[int((NR + 1) / 2)] }'
    done
done
