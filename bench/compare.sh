#!/bin/sh
# bench/compare.sh -- headwise against PyTorch 2.x from PyPI on the same models, run
# interleaved: each round runs headwise, PyTorch eager and PyTorch with torch.compile one after
# the other, PAIRS rounds (default 3), so that a change in the machine's load falls on all of
# them. Per case it prints each round's tokens/s and the load average before it, then the
# medians, the median of the per-round ratios headwise / the faster PyTorch, MFU against this
# machine's measured sgemm peak (headwise's metrics; PyTorch's from the same model FLOPs) and
# peak resident memory. Cases:
#   bench  the bench model (configs/bench-gpt.yaml: d 384, 6 layers, T 256, batch 8)
#   gpt2s  the GPT-2 small shape (d 768, 12 layers, 12 heads, d_ff 2048, T 256, batch 4)
#   long   long context (d 256, 4 layers, 4 heads, d_ff 704, T 2048, batch 1)
#   attn   attention alone, forward + backward, B 2, 8 heads of 64, T 1024 and 4096
#          (headwise's kernel against scaled_dot_product_attention)
#   bf16   the bench model with train.precision bf16 against PyTorch's CPU autocast in bf16
#          (not in the default list: on a CPU without bf16 instructions both emulate it)
# PyTorch comes from a venv under build/ (made on first use: pip install torch), or from
# TORCH_PY=/path/to/python. Usage: sh bench/compare.sh [build/headwise] [case ...]
# (PAIRS, STEPS, THREADS and COMPILE=0 override the defaults; quote ratios: the machine is
# small and shared.)
set -e
HW=${1:-build/headwise}
[ $# -gt 0 ] && shift
CASES=${*:-bench gpt2s long attn}
PAIRS=${PAIRS:-3}
STEPS=${STEPS:-8}
THREADS=${THREADS:-2}
COMPILE=${COMPILE:-1}
BUILD=$(dirname "$HW")
OUT=runs/compare
DATA=runs/bench-data
mkdir -p "$OUT"

# PyTorch 2.x: a venv of its own, made once (Debian's python3-torch is 1.13, about half as fast)
VENV=$BUILD/torch-venv
PY=${TORCH_PY:-$VENV/bin/python}
if [ ! -x "$PY" ]; then
    echo "== making $VENV (pip install torch numpy; once)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet torch numpy
fi
echo "== PyTorch $("$PY" -c 'import torch; print(torch.__version__)'), $THREADS threads, $PAIRS rounds"

if [ ! -f "$DATA/train.h5" ]; then
    "$HW" data prepare --synthetic --bytes 2000000 --vocab 8192 --out "$DATA" >/dev/null
fi

load() { cut -d' ' -f1 /proc/loadavg; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
json() { "$PY" -c "import json,sys; print(json.loads(open(sys.argv[1]).readlines()[-1])[sys.argv[2]])" "$1" "$2"; }

# model case: NAME C L H F T B [PRECISION]
model_case() {
    name=$1 C=$2 L=$3 H=$4 F=$5 T=$6 B=$7 P=${8:-fp32}
    bf=""
    [ "$P" = bf16 ] && bf=--bf16
    : >"$OUT/$name.rounds"
    r=1
    while [ $r -le "$PAIRS" ]; do
        l=$(load)
        dir=$OUT/$name-hw
        rm -rf "$dir"
        /usr/bin/time -f '%M' -o "$OUT/$name.rss" "$HW" train configs/bench-gpt.yaml \
            model.d_model="$C" model.n_layers="$L" model.n_heads="$H" model.d_ff="$F" \
            model.max_seq="$T" train.seq_len="$T" train.micro_batch="$B" train.precision="$P" \
            train.steps=$((STEPS + 2)) train.threads="$THREADS" data.train="$DATA/train.h5" \
            run.dir="$dir" >"$OUT/$name-hw.log" 2>&1
        hw=$(awk -F'"tokens_per_s":' 'NR > 2 { split($2, a, ","); s += a[1]; n++ } END { printf "%.1f", s / n }' "$dir/metrics.jsonl")
        hw_rss=$(($(cat "$OUT/$name.rss") * 1024))
        mfu=$(awk -F'"mfu":' 'NR > 2 { split($2, a, /[,}]/); s += a[1]; n++ } END { printf "%.4f", s / n }' "$dir/metrics.jsonl")
        set -- --threads "$THREADS" --steps "$STEPS" --d-model "$C" --layers "$L" --heads "$H" \
            --d-ff "$F" --seq "$T" --batch "$B" $bf
        "$PY" bench/torch_gpt.py "$@" >"$OUT/$name-pt.json"
        pt=$(json "$OUT/$name-pt.json" tokens_per_s)
        pt_rss=$(json "$OUT/$name-pt.json" peak_rss_bytes)
        pc=0
        if [ "$COMPILE" = 1 ]; then
            # compilation happens in the warm-up steps
            "$PY" bench/torch_gpt.py "$@" --compile --warmup 3 >"$OUT/$name-pc.json" 2>"$OUT/$name-pc.err" &&
                pc=$(json "$OUT/$name-pc.json" tokens_per_s) || pc=0
        fi
        echo "$r $l $hw $pt $pc $hw_rss $pt_rss $mfu" >>"$OUT/$name.rounds"
        printf '  %-6s round %d (load %s): headwise %8.1f  torch %8.1f  compile %8.1f tok/s\n' \
            "$name" "$r" "$l" "$hw" "$pt" "$pc"
        r=$((r + 1))
    done
    awk -v name="$name" '
        { hw[NR] = $3; pt[NR] = $4; pc[NR] = $5; best = ($5 > $4) ? $5 : $4; ratio[NR] = $3 / best
          hr = $6; pr = $7; mfu[NR] = $8 }
        function med(a, n,   i, j, t, b) { for (i = 1; i <= n; i++) b[i] = a[i]
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (b[j] < b[i]) { t = b[i]; b[i] = b[j]; b[j] = t }
            return (n % 2) ? b[(n + 1) / 2] : (b[n / 2] + b[n / 2 + 1]) / 2 }
        END { n = NR; h = med(hw, n); p = med(pt, n); c = med(pc, n); m = med(mfu, n)
            printf "%-6s median tok/s: headwise %.1f, torch %.1f, compile %.1f | headwise / faster torch: %.2fx (median of rounds) | MFU headwise %.1f%%, torch %.1f%% | peak RSS %.0f / %.0f MiB\n",
                name, h, p, c, med(ratio, n), 100 * m, 100 * m * (p > c ? p : c) / h,
                hr / 1048576, pr / 1048576 }' \
        "$OUT/$name.rounds" | tee -a "$OUT/summary.txt"
}

attn_case() {
    make -s "$BUILD/bench/attn_bench" BUILD="$BUILD" >/dev/null
    for T in 1024 4096; do
        : >"$OUT/attn$T.rounds"
        r=1
        while [ $r -le "$PAIRS" ]; do
            l=$(load)
            OMP_NUM_THREADS=$THREADS "$BUILD/bench/attn_bench" dense "$T" >"$OUT/attn$T-hw.json"
            "$PY" bench/torch_attn.py --threads "$THREADS" --T "$T" >"$OUT/attn$T-pt.json"
            hf=$(json "$OUT/attn$T-hw.json" fwd_s) hb=$(json "$OUT/attn$T-hw.json" fwd_bwd_s)
            pf=$(json "$OUT/attn$T-pt.json" fwd_s) pb=$(json "$OUT/attn$T-pt.json" fwd_bwd_s)
            echo "$r $l $hf $hb $pf $pb" >>"$OUT/attn$T.rounds"
            printf '  attn T %-5d round %d (load %s): headwise fwd %.4f s, fwd+bwd %.4f s; torch sdpa %.4f s, %.4f s\n' \
                "$T" "$r" "$l" "$hf" "$hb" "$pf" "$pb"
            r=$((r + 1))
        done
        f=$(awk '{ print $5 / $3 }' "$OUT/attn$T.rounds" | median)
        b=$(awk '{ print $6 / $4 }' "$OUT/attn$T.rounds" | median)
        printf 'attn T %d: speed headwise / torch sdpa (median of rounds): forward %.2fx, forward + backward %.2fx\n' \
            "$T" "$f" "$b" | tee -a "$OUT/summary.txt"
    done
}

: >"$OUT/summary.txt"
for c in $CASES; do
    case $c in
    bench) model_case bench 384 6 6 1024 256 8 ;;
    gpt2s) model_case gpt2s 768 12 12 2048 256 4 ;;
    long) model_case long 256 4 4 704 2048 1 ;;
    attn) attn_case ;;
    bf16) model_case bf16 384 6 6 1024 256 8 bf16 ;;
    *) echo "unknown case $c (bench gpt2s long attn bf16)" >&2; exit 2 ;;
    esac
done
echo "== summary ($OUT/summary.txt)"
cat "$OUT/summary.txt"
