#!/usr/bin/python3
"""bench/dist_bench.py -- the distributed benchmarks (bench/README.md).

1. bytes: for each grid (data 2, heads 2, context 2 ring, context 2 Ulysses, and 2x2 mixes)
   train a few steps of configs/bench-gpt.yaml under mpirun and compare the bytes each
   collective kind sent per step (rank 0, from metrics.jsonl) with the textbook formula.
2. scaling: dp=1 (one rank, one thread) against dp=2 (two ranks, one thread each, pinned to
   cores) with the same global batch; efficiency = tokens/s(dp=2) / (2 x tokens/s(dp=1)), with
   the per-step split into compute and exposed communication.

Usage: bench/dist_bench.py [--hw build/headwise] [--steps 4] [--only bytes|scaling]"""
import argparse
import json
import os
import subprocess
import sys

ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_btl_vader_single_copy_mechanism="none",
           OMPI_MCA_rmaps_base_oversubscribe="1")


def run(hw, np_, overrides, run_dir, bind="none"):
    cmd = [hw, "train", "configs/bench-gpt.yaml"] + overrides + [f"run.dir={run_dir}",
                                                                 "run.resume=never"]
    if np_ > 1:
        cmd = ["mpirun", "-np", str(np_), "--bind-to", bind, "-x", "OMP_NUM_THREADS=1"] + cmd
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def formulas(dp, hp, cp, ulysses, m, zero=False):
    """Bytes rank 0 sends per step for each collective kind, by the textbook formulas
    (REFERENCE.md section 6): ring all-reduce 2(p-1)/p x size; ring attention passes K/V
    (cp-1) times forward and (K, V, dK, dV) cp times backward; Ulysses moves (cp-1)/cp of
    q, k, v and of the output in the forward, and of their gradients in the backward."""
    C, L, H, Hkv, hd, F, V = m["C"], m["L"], m["H"], m["Hkv"], m["hd"], m["F"], m["V"]
    B, T = m["B"] // dp, m["T"] // cp
    Hl, Hkvl, Fl = H // hp, Hkv // hp, F // hp
    f = 4  # bytes per float
    # parameters held by one rank: replicated embedding and norms, head-split matrices
    psi = V * C + C + L * (2 * C + (Hl + 2 * Hkvl) * hd * C + C * Hl * hd + 3 * Fl * C)
    out = {}
    p = dp * cp
    if p > 1 and not zero:
        out["dp_grad"] = 2 * (p - 1) / p * psi * f
    if p > 1 and zero:  # ZeRO-1: reduce-scatter of the gradients, all-gather of the parameters
        out["dp_grad"] = (p - 1) / p * psi * f
        out["zero_ag"] = (p - 1) / p * psi * f
    if hp > 1:
        out["hp_reduce"] = 4 * L * 2 * (hp - 1) / hp * B * T * C * f
    if cp > 1 and not ulysses:
        kv = B * T * 2 * Hkvl * hd * f
        out["cp_ring"] = L * ((cp - 1) * kv + cp * 2 * kv)
    if cp > 1 and ulysses:
        qkv, o = B * T * (Hl + 2 * Hkvl) * hd * f, B * T * Hl * hd * f
        out["cp_a2a"] = L * 2 * (cp - 1) / cp * (qkv + o)
    return out


MODEL = dict(C=384, L=6, H=6, Hkv=6, hd=64, F=1024, V=8192, B=8, T=256)


def bytes_bench(hw, steps):
    grids = [(2, 1, 1, "ring"), (2, 1, 1, "zero"), (1, 2, 1, "ring"), (1, 1, 2, "ring"),
             (1, 1, 2, "ulysses"), (2, 2, 1, "ring"), (1, 2, 2, "ring")]
    print(f"{'grid (data x heads x context)':34} {'kind':10} {'measured B':>14} "
          f"{'formula B':>14} {'ratio':>7}")
    worst = 0.0
    for dp, hp, cp, mode in grids:
        np_ = dp * hp * cp
        # heads must divide by the head ranks and, for Ulysses, the local heads by context
        ov = [f"dist.data={dp}", f"dist.heads={hp}", f"dist.context={cp}",
              f"dist.context_mode={'ulysses' if mode == 'ulysses' else 'ring'}",
              f"dist.zero={'true' if mode == 'zero' else 'false'}", f"train.steps={steps}",
              "train.threads=1",
              "run.ckpt_every=0"]
        rows = run(hw, np_, ov, f"runs/bench-dist/{dp}{hp}{cp}{mode}")
        last = rows[-1]
        want = formulas(dp, hp, cp, mode == "ulysses", MODEL, zero=mode == "zero")
        for kind, fb in want.items():
            got = last["comm"].get(kind, {}).get("bytes", 0.0)
            r = got / fb
            worst = max(worst, abs(r - 1))
            print(f"{dp} x {hp} x {cp} {mode:25} {kind:10} {got:14.0f} {fb:14.0f} {r:7.4f}")
    print(f"worst deviation from the formulas: {100 * worst:.2f}%")


def scaling_bench(hw, steps):
    one = run(hw, 1, [f"train.steps={steps}", "train.threads=1", "run.ckpt_every=0"],
              "runs/bench-dist/dp1")
    two = run(hw, 2, [f"train.steps={steps}", "train.threads=1", "run.ckpt_every=0",
                      "dist.data=2"], "runs/bench-dist/dp2", bind="core")
    t1 = sum(r["tokens_per_s"] for r in one[2:]) / len(one[2:])
    t2 = sum(r["tokens_per_s"] for r in two[2:]) / len(two[2:])
    step = sum(r["step_s"] for r in two[2:]) / len(two[2:])
    comm = sum(r["comm_s"] for r in two[2:]) / len(two[2:])
    print(f"dp=1 (1 rank x 1 thread): {t1:8.1f} tok/s")
    print(f"dp=2 (2 ranks x 1 thread, --bind-to core): {t2:8.1f} tok/s")
    print(f"efficiency vs ideal (2 x dp=1): {100 * t2 / (2 * t1):.1f}%")
    print(f"dp=2 step {step:.3f} s = compute {step - comm:.3f} s + exposed communication "
          f"{comm:.3f} s ({100 * comm / step:.1f}%)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hw", default="build/headwise")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--only", choices=["bytes", "scaling"])
    a = ap.parse_args()
    if a.only != "scaling":
        bytes_bench(a.hw, a.steps)
    if a.only != "bytes":
        scaling_bench(a.hw, a.steps)


if __name__ == "__main__":
    main()
