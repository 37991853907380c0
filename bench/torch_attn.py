#!/usr/bin/python3
"""bench/torch_attn.py -- PyTorch's side of `attn_bench dense`: causal
scaled_dot_product_attention (B 2, 8 heads of 64, fp32) on this machine's threads; best-of-5
forward and forward + backward seconds as one JSON line. Usage: torch_attn.py --threads 2 --T 4096"""
import argparse
import json
import time

import torch
import torch.nn.functional as F


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--T", type=int, default=4096)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    B, H, hd = 2, 8, 64
    q, k, v = (torch.randn(B, H, a.T, hd, requires_grad=True) for _ in range(3))
    dout = torch.randn(B, H, a.T, hd)
    fwd = both = float("inf")
    for _ in range(a.reps + 1):  # the first is a warm-up
        t0 = time.perf_counter()
        with torch.no_grad():
            F.scaled_dot_product_attention(q, k, v, is_causal=True)
        fwd = min(fwd, time.perf_counter() - t0)
        t0 = time.perf_counter()
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y.backward(dout)
        both = min(both, time.perf_counter() - t0)
        q.grad = k.grad = v.grad = None
    print(json.dumps({"impl": "pytorch", "torch": torch.__version__, "B": B, "T": a.T, "H": H,
                      "hd": hd, "threads": a.threads, "fwd_s": fwd, "fwd_bwd_s": both}))


if __name__ == "__main__":
    main()
