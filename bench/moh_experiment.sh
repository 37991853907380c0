#!/bin/sh
# bench/moh_experiment.sh -- MoH against MHA on Tiny Shakespeare (issue: "MoH matches or beats
# MHA with 50-90% of the heads"). Trains configs/moh-shakespeare.yaml three times with the same
# steps, data order and parameter count (MoH adds only the tiny routers): MHA, MoH with 75% of
# the heads active per token (3 shared + top-3 of 5 routed) and MoH with 50% (2 shared + top-2
# of 6). Prints the best validation loss, the attention FLOPs per token relative to MHA, the
# measured training throughput and the last step's head usage. Needs ../shared/datasets.
#   [SEED=s] [THREADS=n] sh bench/moh_experiment.sh [build/headwise] [steps]
set -e
HW=${1:-build/headwise}
STEPS=${2:-300}
SEED=${SEED:-1}
OUT=runs/moh-exp/seed$SEED
mkdir -p "$OUT"
[ -f runs/moh-exp/data/train.h5 ] ||
    "$HW" data prepare --input ../shared/datasets/tinyshakespeare/input.txt --vocab 1024 \
        --out runs/moh-exp/data >/dev/null
run() { # NAME OVERRIDES...
    name=$1
    shift
    "$HW" train configs/moh-shakespeare.yaml train.steps="$STEPS" run.dir="$OUT/$name" \
        run.resume=never train.threads="${THREADS:-0}" train.seed="$SEED" "$@" >"$OUT/$name.log" 2>&1
}
run mha
run moh75 model.attention.kind=moh "model.moh={shared_heads: 3, top_k: 3}"
run moh50 model.attention.kind=moh "model.moh={shared_heads: 2, top_k: 2}"
/usr/bin/python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
rows = []
for name, active in (("mha", 1.0), ("moh75", 0.75), ("moh50", 0.5)):
    ms = [json.loads(l) for l in open(f"{out}/{name}/metrics.jsonl")]
    vals = [m["val_loss"] for m in ms if "val_loss" in m]
    tps = [m["tokens_per_s"] for m in ms[2:]]
    usage = ms[-1].get("moh_usage")
    rows.append((name, active, min(vals), vals[-1], sum(tps) / len(tps), usage))
base = rows[0]
print(f"{'model':8} {'active heads':>12} {'attn FLOPs':>10} {'best val':>9} {'final val':>9} "
      f"{'tok/s':>8} {'vs MHA':>7}")
for name, active, best, last, tps, usage in rows:
    print(f"{name:8} {active:12.0%} {active:10.2f} {best:9.4f} {last:9.4f} {tps:8.0f} "
          f"{tps / base[4]:7.2f}")
for name, active, best, last, tps, usage in rows:
    if usage:
        print(f"{name} head usage, layer 0: " + " ".join(f"{u:.2f}" for u in usage[0]))
PY
