#!/usr/bin/env python3
"""bench/gpu_attn_bench.py -- headwise's GPU attention against PyTorch on the same machine.

Runs bench/gpu_attn_bench (the cuDNN bf16 path, the own fp32 kernels and S2 against dense, one
JSON object on its stdout), then times torch.nn.functional.scaled_dot_product_attention
(is_causal=True, bf16, PyTorch's default backend choice) at the same shapes, and writes every
figure plus the ratios into one JSON file:

    python3 bench/gpu_attn_bench.py --bin build/bench/gpu_attn_bench --out gpu_attn.json [--quick]

FLOPs follow FlashAttention-2's benchmark: causal forward f = 4*B*H*T*T*hd/2, backward 2.5 f,
forward + backward 3.5 f. Times are CUDA events around one call after warm-ups, median over the
repetitions. The target (issue 15): cuDNN forward+backward at least 0.9x PyTorch's TFLOP/s.
"""
import argparse
import json
import statistics
import subprocess
import sys


def flops_fwd(B, H, T, hd):
    return 4.0 * B * H * T * T * hd / 2.0


def time_ms(fn, warm, reps):
    import torch
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def torch_sdpa(B, T, H, hd, warm, reps):
    import torch
    import torch.nn.functional as F
    g = torch.Generator(device="cuda").manual_seed(0)

    def rnd(*shape):
        return (torch.rand(*shape, device="cuda", generator=g) * 2 - 1).to(torch.bfloat16)

    q, k, v = (rnd(B, H, T, hd).requires_grad_() for _ in range(3))
    dout = rnd(B, H, T, hd)
    fwd = time_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True), warm, reps)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    bwd = time_ms(lambda: torch.autograd.grad(out, (q, k, v), dout, retain_graph=True), warm, reps)
    f = flops_fwd(B, H, T, hd)
    r = {"B": B, "T": T, "H": H, "hd": hd, "fwd_ms": fwd, "bwd_ms": bwd, "fwdbwd_ms": fwd + bwd,
         "fwd_tflops": f / (fwd * 1e9), "bwd_tflops": 2.5 * f / (bwd * 1e9),
         "fwdbwd_tflops": 3.5 * f / ((fwd + bwd) * 1e9)}
    del q, k, v, dout, out
    torch.cuda.empty_cache()
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="build/bench/gpu_attn_bench")
    ap.add_argument("--out", default="gpu_attn.json")
    ap.add_argument("--quick", action="store_true", help="T <= 4096, fewer repetitions")
    ap.add_argument("--no-torch", action="store_true", help="only the headwise figures")
    a = ap.parse_args()

    cmd = [a.bin] + (["--quick"] if a.quick else [])
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
    if p.returncode == 77:
        print(p.stdout.strip())
        return 77
    if p.returncode != 0:
        print(p.stdout, file=sys.stderr)
        print(f"gpu_attn_bench: {a.bin} exited with {p.returncode}", file=sys.stderr)
        return 1
    res = json.loads(p.stdout)

    if not a.no_torch:
        import torch
        res["torch_version"] = torch.__version__
        res["torch_sdpa_bf16"] = []
        for c in res["cudnn_bf16"]:
            t = torch_sdpa(c["B"], c["T"], c["H"], c["hd"], 3, 5 if a.quick else 10)
            res["torch_sdpa_bf16"].append(t)
            if c.get("available"):
                c["fwdbwd_vs_torch"] = c["fwdbwd_tflops"] / t["fwdbwd_tflops"]
                c["fwd_vs_torch"] = c["fwd_tflops"] / t["fwd_tflops"]
                c["bwd_vs_torch"] = c["bwd_tflops"] / t["bwd_tflops"]
                c["meets_0.9x"] = c["fwdbwd_vs_torch"] >= 0.9

    with open(a.out, "w") as f:
        json.dump(res, f, indent=2)

    print(f"device: {res['device']}   ({res['flops']})")
    print(f"{'T':>6} {'hd':>4} | {'cuDNN bf16':>11} {'torch bf16':>11} {'ratio':>6} | "
          f"{'own fp32':>9}   TFLOP/s fwd+bwd")
    torch_rows = res.get("torch_sdpa_bf16", [None] * len(res["cudnn_bf16"]))
    for c, o, t in zip(res["cudnn_bf16"], res["own_fp32"], torch_rows):
        cu = f"{c['fwdbwd_tflops']:11.1f}" if c.get("available") else f"{'n/a':>11}"
        tt = f"{t['fwdbwd_tflops']:11.1f}" if t else f"{'-':>11}"
        ra = f"{c['fwdbwd_vs_torch']:6.2f}" if t and c.get("available") else f"{'-':>6}"
        print(f"{c['T']:>6} {c['hd']:>4} | {cu} {tt} {ra} | {o['fwdbwd_tflops']:9.2f}")
    for s in res["s2"]:
        name = "dense" if not s["s2"] else f"s2 block {s['s2']['block']} local {s['s2']['local']} vert {s['s2']['vert']}"
        print(f"T={s['T']} {name:32s} kept {s['kept_fraction']:.3f}  time ratio {s['time_ratio_vs_dense']:.3f}  "
              f"({s['fwdbwd_ms']:.1f} ms fwd+bwd)")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
