#!/usr/bin/python3
"""bench/torch_gpt.py -- the PyTorch side of bench/run.sh: the same GPT as headwise
(tied embedding, RoPE half-split, pre-norm RMSNorm, causal MHA, SwiGLU MLP, AdamW with no
decay on norms, global-norm clipping), fp32, trained on random tokens. Attention is
scaled_dot_product_attention where torch has it (2.x: its fused CPU kernel; --no-sdpa, or
torch 1.x: matmul + mask + softmax + matmul); --compile wraps the model in torch.compile
(its first steps, the compilation, are warm-up); --bf16 runs the forward under CPU autocast in
bf16 (fp32 weights and optimizer, as headwise's train.precision bf16). --device cuda runs it on
the GPU (autocast on the GPU, timings after torch.cuda.synchronize, peak memory from
torch.cuda.max_memory_allocated). Prints one JSON line with tokens/s and the peak memory.
Usage: torch_gpt.py --threads 2 --steps 10 [--d-model 384 ...] [--device cuda]"""
import argparse
import json
import math
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, c, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(T, hd, theta):
    inv = theta ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    return ang.cos().float(), ang.sin().float()


def rope(x, cos, sin):  # x: (B, H, T, hd), half-split pairs as in headwise
    h = x.shape[-1] // 2
    x0, x1 = x[..., :h], x[..., h:]
    return torch.cat([x0 * cos - x1 * sin, x1 * cos + x0 * sin], dim=-1)


SDPA = hasattr(F, "scaled_dot_product_attention")


class Block(nn.Module):
    def __init__(self, C, H, Fdim, eps):
        super().__init__()
        self.H = H
        self.attn_norm = RMSNorm(C, eps)
        self.wqkv = nn.Linear(C, 3 * C, bias=False)
        self.wo = nn.Linear(C, C, bias=False)
        self.mlp_norm = RMSNorm(C, eps)
        self.w_in = nn.Linear(C, 2 * Fdim, bias=False)
        self.w_out = nn.Linear(Fdim, C, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, C = x.shape
        hd = C // self.H
        q, k, v = self.wqkv(self.attn_norm(x)).split(C, dim=-1)
        q = rope(q.view(B, T, self.H, hd).transpose(1, 2), cos, sin)
        k = rope(k.view(B, T, self.H, hd).transpose(1, 2), cos, sin)
        v = v.view(B, T, self.H, hd).transpose(1, 2)
        if SDPA:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
            att = att.masked_fill(mask, float("-inf")).softmax(-1)
            y = att @ v
        y = y.transpose(1, 2).reshape(B, T, C)
        x = x + self.wo(y)
        g, u = self.w_in(self.mlp_norm(x)).chunk(2, dim=-1)
        return x + self.w_out(F.silu(g) * u)


class GPT(nn.Module):
    def __init__(self, V, C, L, H, Fdim, T, eps=1e-5):
        super().__init__()
        self.tok = nn.Embedding(V, C)
        self.blocks = nn.ModuleList(Block(C, H, Fdim, eps) for _ in range(L))
        self.norm = RMSNorm(C, eps)
        cos, sin = rope_tables(T, C // H, 10000.0)
        self.register_buffer("cos", cos)
        self.register_buffer("sin", sin)
        self.register_buffer("mask", torch.triu(torch.ones(T, T, dtype=torch.bool), 1))
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, idx, tgt):
        x = self.tok(idx)
        for b in self.blocks:
            x = b(x, self.cos, self.sin, self.mask)
        logits = self.norm(x) @ self.tok.weight.t()
        return F.cross_entropy(logits.view(-1, logits.size(-1)), tgt.reshape(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--d-model", type=int, default=384)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--d-ff", type=int, default=1024)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--no-sdpa", action="store_true", help="matmul + mask + softmax attention")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--bf16", action="store_true", help="forward under torch.autocast bf16")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    a = ap.parse_args()
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    global SDPA
    SDPA = SDPA and not a.no_sdpa
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    m = GPT(a.vocab, a.d_model, a.layers, a.heads, a.d_ff, a.seq).to(dev)
    fwd = torch.compile(m) if a.compile else m
    decay = [p for n, p in m.named_parameters() if p.dim() == 2]
    nodecay = [p for n, p in m.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": nodecay, "weight_decay": 0.0}],
                            lr=3e-4, betas=(0.9, 0.95), eps=1e-8)
    g = torch.Generator().manual_seed(1)
    times = []
    for step in range(a.warmup + a.steps):
        x = torch.randint(0, a.vocab, (a.batch, a.seq + 1), generator=g).to(dev)
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.bf16):
            loss = fwd(x[:, :-1], x[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        if cuda:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        if step >= a.warmup:
            times.append(dt)
    tok = a.batch * a.seq
    n_params = sum(p.numel() for p in m.parameters())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    extra = {"device": a.device}
    if cuda:
        extra["peak_device_bytes"] = torch.cuda.max_memory_allocated()
        extra["gpu"] = torch.cuda.get_device_name()
    print(json.dumps({**extra, "impl": "pytorch-compile" if a.compile else "pytorch",
                      "precision": "bf16-autocast" if a.bf16 else "fp32",
                      "torch": torch.__version__, "threads": a.threads, "sdpa": SDPA,
                      "params": n_params, "tokens_per_s": tok * len(times) / sum(times),
                      "best_tokens_per_s": tok / min(times), "loss": loss.item(),
                      "peak_rss_bytes": peak}))


if __name__ == "__main__":
    main()
