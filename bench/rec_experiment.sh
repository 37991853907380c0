#!/bin/sh
# bench/rec_experiment.sh -- DARE against TWIN (docs/rec.md): on MovieLens-100k and on the
# synthetic set, train each with several seeds and print the test AUC and GAUC (best-validation
# parameters) as mean +- std; then the GSU search time per sample of DARE with attention dims
# 16 and 4 per field (48 vs 12) on the MovieLens test set, and the AUC that costs; and the
# gradient observation of the paper (representation vs attention gradient of the item rows).
#   sh bench/rec_experiment.sh [build/headwise]   (SEEDS="1 2 3", MODELS="dare twin"; ~4 min
#   on 2 shared cores)
HW=${1:-build/headwise}
SEEDS=${SEEDS:-"1 2 3"}
MODELS=${MODELS:-"dare twin"} # also: twin_proj
OUT=${OUT:-runs/rec-experiment}
ML=${ML:-../shared/datasets/movielens-100k}
set -e
[ -x "$HW" ] || { echo "build first: make" >&2; exit 1; }
mkdir -p "$OUT"
run() { # name config overrides...
    name=$1
    shift
    "$HW" train "$@" run.dir="$OUT/$name" run.resume=never >"$OUT/$name.log" 2>&1 ||
        { echo "FAILED: $name (see $OUT/$name.log)" >&2; tail -3 "$OUT/$name.log" >&2; exit 1; }
    echo "  $name: $(grep 'best validation' "$OUT/$name.log" | sed 's/.*| test/test/')"
}
t0=$(date +%s)
for data in movielens synth; do
    if [ $data = movielens ]; then
        if [ ! -r "$ML/u.data" ]; then
            echo "SKIP movielens: $ML/u.data not found"
            continue
        fi
        cfg="configs/rec-movielens.yaml rec.path=$ML"
    else
        cfg=configs/rec-synth.yaml
    fi
    echo "== $data"
    for emb in $MODELS; do
        for s in $SEEDS; do
            run "$data-$emb-s$s" $cfg model.embedding=$emb train.seed=$s
        done
    done
done
echo "== GSU search time, DARE on MovieLens, attention dims 16 vs 4 per field (seed 1)"
if [ -r "$ML/u.data" ]; then
    for a in 16 4; do
        run "speed-a$a" configs/rec-movielens.yaml rec.path=$ML model.embedding=dare \
            rec.attn_item_dim=$a rec.attn_cat_dim=$a rec.attn_time_dim=$a train.seed=1
    done
fi
/usr/bin/python3 - "$OUT" "$SEEDS" <<'PY'
import json, math, os, sys
out, seeds = sys.argv[1], sys.argv[2].split()
def res(name):
    p = os.path.join(out, name, "eval", "results_rec.json")
    return json.load(open(p))["results"]["rec_test"] if os.path.exists(p) else None
def ms(v):
    m = sum(v) / len(v)
    s = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return m, s
print("\n| data | model | test AUC (mean ± std) | test GAUC (mean ± std) | seeds |")
print("|---|---|---|---|---|")
summary = {}
for data in ("movielens", "synth"):
    for emb in ("dare", "twin", "twin_proj"):
        rs = [r for r in (res(f"{data}-{emb}-s{s}") for s in seeds) if r]
        if not rs:
            continue
        a, g = ms([r["auc"] for r in rs]), ms([r["gauc"] for r in rs])
        summary[(data, emb)] = a
        print(f"| {data} | {emb} | {a[0]:.4f} ± {a[1]:.4f} | {g[0]:.4f} ± {g[1]:.4f} | {len(rs)} |")
def info(name):
    p = os.path.join(out, name, "eval", "results_rec.json")
    return json.load(open(p))["task_info"] if os.path.exists(p) else {}
print("\n| data | model | |grad repr| / |grad attn| (item rows) | rows with cos < 0 |")
print("|---|---|---|---|")
for data in ("movielens", "synth"):
    for emb in ("twin", "dare"):
        g = [info(f"{data}-{emb}-s{s}") for s in seeds]
        g = [x for x in g if "grad_repr_attn_ratio" in x]
        if g:
            r = ms([x["grad_repr_attn_ratio"] for x in g])
            c = ms([x["grad_conflict_frac"] for x in g])
            print(f"| {data} | {emb} | {r[0]:.1f} ± {r[1]:.1f} | {c[0]:.3f} ± {c[1]:.3f} |")
for data in ("movielens", "synth"):
    if (data, "dare") in summary and (data, "twin") in summary:
        d = summary[(data, "dare")][0] - summary[(data, "twin")][0]
        print(f"{data}: DARE - TWIN test AUC = {d * 100:+.2f} points")
a16, a4 = res("speed-a16"), res("speed-a4")
if a16 and a4:
    print("\n| attention dims | GSU us/sample | of which scores | test AUC |")
    print("|---|---|---|---|")
    for n, r in (("16+16+16", a16), ("4+4+4", a4)):
        print(f"| {n} | {r['gsu_us_per_sample']:.3f} | {r['gsu_score_us_per_sample']:.3f} | {r['auc']:.4f} |")
    print(f"GSU speed-up {a16['gsu_us_per_sample'] / a4['gsu_us_per_sample']:.2f}x "
          f"(scores alone {a16['gsu_score_us_per_sample'] / a4['gsu_score_us_per_sample']:.2f}x)")
PY
echo "total $(($(date +%s) - t0)) s; runs in $OUT"
