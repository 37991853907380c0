"""tests/hf_llama.py -- the `transformers` side of tests/cli_hf_weights.sh. Subcommands:
  make_all OUTBASE VOCAB
                     the five variants the test uses, in one process: OUTBASE-f32,
                     OUTBASE-bf16, OUTBASE-f32sharded, OUTBASE-f32xtied, OUTBASE-f32xrope
                     (LLaMA 3.1's rope_scaling, original length 64)
  make OUTDIR VOCAB [f32|bf16] [sharded] [tied] [rope]
                     a tiny random LlamaForCausalLM (GQA 4/2 heads, 2 layers, untied unless
                     told, rope_theta 500000, rms_norm_eps 1e-5), saved with save_pretrained as
                     safetensors (one file, or shards of 40 kB with an index); weights are drawn
                     with std 0.2 and the norms around 1 so that every tensor matters
  ids FILE VOCAB ROWS T SEED
                     rows of random token ids
  logits IDS DIR OUT.npy [DIR OUT.npy ...]
                     transformers' float32 logits of those rows, for each model directory
  compare A.npy HEADWISE.f32 TOL
                     max |a - b| over the logits (headwise's raw float32 file); fails above TOL
  same_tensors DIR_A DIR_B
                     every tensor of the two directories' safetensors is bit-identical
"""
import glob
import json
import os
import sys

import numpy as np


def _torch():
    """torch and transformers, imported only by the subcommands that need them (slow)"""
    import torch
    import transformers
    transformers.utils.logging.disable_progress_bar()
    return torch, transformers


def make(outdir, vocab, dtype="f32", *flags):
    torch, tf = _torch()
    torch.manual_seed(1234)
    cfg = tf.LlamaConfig(vocab_size=int(vocab), hidden_size=64, intermediate_size=160,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=128, rms_norm_eps=1e-5, rope_theta=500000.0,
                      tie_word_embeddings="tied" in flags,
                      rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                    "high_freq_factor": 4.0,
                                    "original_max_position_embeddings": 64}
                      if "rope" in flags else None)
    m = tf.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
    if dtype == "bf16":
        m = m.to(torch.bfloat16)
    m.save_pretrained(outdir, safe_serialization=True,
                      max_shard_size="40KB" if "sharded" in flags else "10GB")


def ids(path, vocab, rows, T, seed):
    rng = np.random.default_rng(int(seed))
    x = rng.integers(0, int(vocab), size=(int(rows), int(T)))
    with open(path, "w") as f:
        for r in x:
            f.write(" ".join(str(v) for v in r) + "\n")


def read_ids(path):
    torch, _ = _torch()
    return torch.tensor([[int(v) for v in line.split()] for line in open(path) if line.strip()])


def logits(ids_path, *dirs_outs):
    torch, tf = _torch()
    x = read_ids(ids_path)
    for d, out in zip(dirs_outs[::2], dirs_outs[1::2]):
        m = tf.LlamaForCausalLM.from_pretrained(d, torch_dtype=torch.float32).eval()
        with torch.no_grad():
            np.save(out, m(x).logits.float().numpy())


def make_all(base, vocab):
    for flags in (["f32"], ["bf16"], ["f32", "sharded"], ["f32", "x", "tied"], ["f32", "x", "rope"]):
        make(base + "-" + "".join(flags), vocab, *flags)


def compare(a_path, b_path, tol):
    a = np.load(a_path)
    b = np.fromfile(b_path, dtype="<f4")
    if b.size != a.size:
        print("sizes differ: transformers %s = %d values, headwise %d" % (a.shape, a.size, b.size))
        return False
    d = np.abs(a.reshape(-1) - b).max()
    print("max |logit difference| %.3g over %d logits (largest |logit| %.3g), tolerance %s" % (
        d, a.size, np.abs(a).max(), tol))
    return d <= float(tol)


def raw_tensors(d):
    """name -> (dtype, shape, raw bytes) of every tensor in the directory's safetensors files,
    read with the standard library (the comparison is of the stored bytes)"""
    import struct
    out = {}
    for f in sorted(glob.glob(os.path.join(d, "*.safetensors"))):
        b = open(f, "rb").read()
        n = struct.unpack("<Q", b[:8])[0]
        for name, v in json.loads(b[8:8 + n]).items():
            if name != "__metadata__":
                lo, hi = v["data_offsets"]
                out[name] = (v["dtype"], v["shape"], b[8 + n + lo:8 + n + hi])
    return out


def same_tensors(a, b):
    ta, tb = raw_tensors(a), raw_tensors(b)
    if "lm_head.weight" not in tb:
        ta.pop("lm_head.weight", None)
    if sorted(ta) != sorted(tb):
        print("tensor names differ:", sorted(set(ta) ^ set(tb)))
        return False
    bad = [k for k in ta if ta[k] != tb[k]]
    print("%d tensors, %d differ %s" % (len(ta), len(bad), bad[:3]))
    return not bad


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "make":
        make(*args)
    elif cmd == "make_all":
        make_all(*args)
    elif cmd == "ids":
        ids(*args)
    elif cmd == "logits":
        logits(*args)
    elif cmd == "compare":
        sys.exit(0 if compare(*args) else 1)
    elif cmd == "same_tensors":
        sys.exit(0 if same_tensors(*args) else 1)
    else:
        sys.exit("unknown command " + cmd)
