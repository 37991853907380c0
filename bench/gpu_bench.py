#!/usr/bin/env python3
"""bench/gpu_bench.py -- headwise's bf16 GEMMs (build/cuda/bench/gpu_bench, cuBLASLt) against
torch.matmul on the same GPU, in one run: the C binary times its cases and writes JSON, then this
script times torch.matmul on exactly those cases with the same method (uniform [-1, 1) bf16
inputs, bf16 output, CUDA events around a batch of about 5 ms after warm-ups, median of the
repeats) and prints the table and the ratios. The target (issue 15) is ours >= 0.95x torch.

  python3 bench/gpu_bench.py [--bin build/cuda/bench/gpu_bench] [--out gpu_bench.json]
                             [--quick] [--repeats 7]
"""
import argparse
import json
import math
import os
import subprocess
import sys


def time_torch(torch, case, repeats):
    m, n, k, ta, tb = case["m"], case["n"], case["k"], case["ta"], case["tb"]

    def rand(rows, cols):
        x = torch.empty(rows, cols, dtype=torch.bfloat16, device="cuda")
        return x.uniform_(-1.0, 1.0)

    a = rand(k, m).t() if ta else rand(m, k)
    b = rand(n, k).t() if tb else rand(k, n)
    c = torch.empty(m, n, dtype=torch.bfloat16, device="cuda")
    e0 = torch.cuda.Event(enable_timing=True)
    e1 = torch.cuda.Event(enable_timing=True)

    def calls(iters):
        e0.record()
        for _ in range(iters):
            torch.matmul(a, b, out=c)
        e1.record()
        e1.synchronize()
        return e0.elapsed_time(e1) / iters

    calls(3)
    t1 = calls(3)
    iters = min(2000, int(5.0 / t1) + 1) if t1 > 0 else 1000
    ts = sorted(calls(iters) for _ in range(repeats))
    del a, b, c
    return ts[len(ts) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="build/cuda/bench/gpu_bench")
    ap.add_argument("--out", default="gpu_bench.json")
    ap.add_argument("--quick", action="store_true", help="bench model and 8192^3 only")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--timeout", type=int, default=240, help="seconds for the C binary")
    args = ap.parse_args()

    raw = os.path.splitext(args.out)[0] + "_raw.json"
    cmd = [args.bin, "--json", raw, "--repeats", str(args.repeats)] + (
        ["--quick"] if args.quick else [])
    print("+", " ".join(cmd), flush=True)
    r = subprocess.run(cmd, timeout=args.timeout)
    if r.returncode != 0:
        print(f"gpu_bench.py: {args.bin} exited with {r.returncode}", file=sys.stderr)
        return r.returncode
    with open(raw) as f:
        ours = json.load(f)

    import torch

    if not torch.cuda.is_available():
        print("gpu_bench.py: torch sees no CUDA device", file=sys.stderr)
        return 1
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}, "
          f"bf16 reduced-precision reduction "
          f"{torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction}", flush=True)

    rows = []
    hdr = (f"{'model':<10} {'layer':<12} {'pass':<7} {'m':>6} {'n':>6} {'k':>6} "
           f"{'ours TF/s':>10} {'torch TF/s':>11} {'ratio':>6}")
    print(hdr)
    for case in ours["cases"]:
        tms = time_torch(torch, case, args.repeats)
        flops = 2.0 * case["m"] * case["n"] * case["k"]
        ttf = flops / (tms * 1e-3) / 1e12
        ratio = case["tflops"] / ttf if ttf > 0 else float("nan")
        row = dict(case, ours_ms=case["ms"], ours_tflops=case["tflops"], torch_ms=tms,
                   torch_tflops=ttf, ratio=ratio)
        del row["ms"], row["tflops"]
        rows.append(row)
        flag = "" if ratio >= 0.95 else "  < 0.95"
        print(f"{case['model']:<10} {case['layer']:<12} {case['pass']:<7} {case['m']:>6} "
              f"{case['n']:>6} {case['k']:>6} {case['tflops']:>10.1f} {ttf:>11.1f} "
              f"{ratio:>6.3f}{flag}", flush=True)

    summary = {}
    for model in sorted({r["model"] for r in rows}):
        rs = [r["ratio"] for r in rows if r["model"] == model]
        ours_t = sum(r["ours_ms"] for r in rows if r["model"] == model)
        torch_t = sum(r["torch_ms"] for r in rows if r["model"] == model)
        summary[model] = {
            "geomean_ratio": math.exp(sum(math.log(x) for x in rs) / len(rs)),
            "min_ratio": min(rs),
            "time_ratio": torch_t / ours_t,  # whole step's GEMM time, torch / ours
            "ours_ms": ours_t,
            "torch_ms": torch_t,
        }
    square = [r for r in rows if r["model"] == "square"]
    out = {
        "bench": "gpu_bench",
        "device": ours["device"],
        "torch": torch.__version__,
        "dtype": ours["dtype"],
        "repeats": args.repeats,
        "target_ratio": 0.95,
        "all_meet_target": all(r["ratio"] >= 0.95 for r in rows),
        "below_target": [f"{r['model']}/{r['layer']}/{r['pass']}" for r in rows
                         if r["ratio"] < 0.95],
        "square_8192": square[0] if square else None,
        "summary": summary,
        "cases": rows,
    }
    print("summary (ratio = ours / torch TFLOP/s; time_ratio = torch / ours over all the "
          "model's GEMMs):")
    for model, s in summary.items():
        print(f"  {model:<10} geomean {s['geomean_ratio']:.3f}  min {s['min_ratio']:.3f}  "
              f"time_ratio {s['time_ratio']:.3f}")
    if square:
        sq = square[0]
        print(f"  8192^3: ours {sq['ours_tflops']:.1f} TFLOP/s, torch {sq['torch_tflops']:.1f} "
              f"TFLOP/s, ratio {sq['ratio']:.3f}")
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
