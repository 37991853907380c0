#!/usr/bin/python3
"""bench/torch_parity.py -- the PyTorch half of tests/test_torch_parity.c (in the spirit of
llm.c's test_gpt2): builds a tiny headwise-shaped GPT in PyTorch (tied embedding, pre-norm
RMSNorm, RoPE half-split, causal GQA attention, SwiGLU MLP; the same modules as
bench/torch_gpt.py, with separate K/V heads), runs one fixed batch through it in fp32 and writes
the weights, the batch, the logits, the mean loss and every parameter gradient to OUT.

The file is a list of records: name (64 bytes, NUL padded), int32 ndim, int64 shape[ndim],
float32 data (row-major). Parameter records carry headwise's names (blocks.L.attn.wq, ...).
Usage: torch_parity.py OUT"""
import math
import struct
import sys

import torch
import torch.nn.functional as F

# the shape the C test builds (tests/test_torch_parity.c reads them from the file)
V, C, L, H, HKV, FF, B, T = 67, 32, 2, 4, 2, 48, 2, 12
EPS, THETA = 1e-5, 10000.0


def rmsnorm(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * w


def rope(x, cos, sin):  # (B, heads, T, hd), pairs (i, i + hd/2)
    h = x.shape[-1] // 2
    x0, x1 = x[..., :h], x[..., h:]
    return torch.cat([x0 * cos - x1 * sin, x1 * cos + x0 * sin], dim=-1)


def forward(p, idx, tgt):
    hd = C // H
    inv = THETA ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    cos, sin = ang.cos().float(), ang.sin().float()
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    x = p["tok_emb.weight"][idx]
    for l in range(L):
        w = lambda n: p[f"blocks.{l}.{n}"]  # noqa: E731
        h = rmsnorm(x, w("attn_norm.weight"))
        q = (h @ w("attn.wq").t()).view(B, T, H, hd).transpose(1, 2)
        k = (h @ w("attn.wk").t()).view(B, T, HKV, hd).transpose(1, 2)
        v = (h @ w("attn.wv").t()).view(B, T, HKV, hd).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        k = k.repeat_interleave(H // HKV, dim=1)  # query head j reads kv head j / (H / HKV)
        v = v.repeat_interleave(H // HKV, dim=1)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
        att = att.masked_fill(mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + y @ w("attn.wo").t()
        h = rmsnorm(x, w("mlp_norm.weight"))
        g, u = h @ w("mlp.w_gate").t(), h @ w("mlp.w_up").t()
        x = x + (F.silu(g) * u) @ w("mlp.w_down").t()
    logits = rmsnorm(x, p["final_norm.weight"]) @ p["tok_emb.weight"].t()
    loss = F.cross_entropy(logits.view(-1, V), tgt.reshape(-1))
    return logits, loss


def main():
    out = sys.argv[1]
    g = torch.Generator().manual_seed(1234)
    shapes = [("tok_emb.weight", (V, C))]
    for l in range(L):
        shapes += [(f"blocks.{l}.attn_norm.weight", (C,)),
                   (f"blocks.{l}.attn.wq", (H * (C // H), C)),
                   (f"blocks.{l}.attn.wk", (HKV * (C // H), C)),
                   (f"blocks.{l}.attn.wv", (HKV * (C // H), C)),
                   (f"blocks.{l}.attn.wo", (C, C)),
                   (f"blocks.{l}.mlp_norm.weight", (C,)),
                   (f"blocks.{l}.mlp.w_gate", (FF, C)),
                   (f"blocks.{l}.mlp.w_up", (FF, C)),
                   (f"blocks.{l}.mlp.w_down", (C, FF))]
    p = {}
    for name, shape in shapes:
        if len(shape) == 1:  # norm gains away from 1 so their gradients are exercised
            t = 1.0 + 0.2 * torch.randn(shape, generator=g)
        else:
            t = 0.15 * torch.randn(shape, generator=g)
        p[name] = t.float().requires_grad_(True)
    p["final_norm.weight"] = (1.0 + 0.2 * torch.randn((C,), generator=g)).requires_grad_(True)
    seq = torch.randint(0, V, (B, T + 1), generator=g)
    logits, loss = forward(p, seq[:, :-1], seq[:, 1:])
    loss.backward()
    recs = [("shape", torch.tensor([V, C, L, H, HKV, FF, B, T], dtype=torch.float32)),
            ("tokens", seq.float()), ("logits", logits.detach()),
            ("loss", loss.detach().reshape(1))]
    recs += [(n, t.detach()) for n, t in p.items()]
    recs += [("grad." + n, t.grad) for n, t in p.items()]
    with open(out, "wb") as f:
        for name, t in recs:
            t = t.contiguous().float()
            f.write(name.encode().ljust(64, b"\0"))
            f.write(struct.pack("<i", t.dim()))
            f.write(struct.pack(f"<{t.dim()}q", *t.shape))
            f.write(t.numpy().astype("<f4").tobytes())
    print(f"torch {torch.__version__}: loss {loss.item():.6f}, {len(recs)} records -> {out}")


if __name__ == "__main__":
    main()
