#!/bin/sh
# tests/cli_hf_weights.sh -- Hugging Face LLaMA-family weights in and out (ckpt import-hf,
# export-hf) and a dense model continued as MoH. With `transformers` (PyPI, in the venv of
# tests/lib.sh's ml_venv; SKIP said when it cannot be installed): tiny random
# LlamaForCausalLM models (GQA, untied or tied, F32 or BF16, one file or index shards) made by
# transformers itself; headwise's logits on a fixed batch equal transformers' within 1e-4;
# export gives back the very tensors (F32 and BF16) and transformers loads what headwise writes;
# the imported model trains (from train.init_from = the import's run directory), converts to MoH
# (a qnorm router with every head active reproduces the dense first loss exactly) and a trained
# checkpoint exports to a model transformers scores as headwise does. Without transformers:
# import of a hand-written safetensors model, and every bad input (a header that lies about
# offsets, dtypes or its own length, an unsupported architecture, a missing tensor): one line,
# exit 1 or 2, nothing written.
. tests/lib.sh
SYSPY=/usr/bin/python3
CORPUS=../shared/datasets/tinyshakespeare/input.txt
[ -f "$CORPUS" ] || { CORPUS=$T/synth.txt && "$HW" data synth --out "$CORPUS" --bytes 300000 >/dev/null; }

# --- hand-written models, no transformers needed --------------------------------------------------
cat >"$T/st.py" <<'EOF'
# st.py DIR CASE: a 1-layer LLaMA (hidden 8, 2 heads, vocab 16) written with the standard library;
# CASE good | past_end | overlap | i64 | header_len | arch | rope_scaling | missing | extra
import json, struct, sys, os, random
d, case = sys.argv[1], sys.argv[2]
os.makedirs(d, exist_ok=True)
cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 8,
       "intermediate_size": 12, "num_hidden_layers": 1, "num_attention_heads": 2,
       "num_key_value_heads": 1, "vocab_size": 16, "max_position_embeddings": 32,
       "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": False}
if case == "arch":
    cfg["architectures"] = ["GPT2LMHeadModel"]; cfg["model_type"] = "gpt2"
if case == "rope_scaling":
    cfg["rope_scaling"] = {"rope_type": "yarn", "factor": 8.0}
json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
shapes = {"model.embed_tokens.weight": [16, 8], "model.norm.weight": [8], "lm_head.weight": [16, 8],
          "model.layers.0.input_layernorm.weight": [8],
          "model.layers.0.post_attention_layernorm.weight": [8],
          "model.layers.0.self_attn.q_proj.weight": [8, 8],
          "model.layers.0.self_attn.k_proj.weight": [4, 8],
          "model.layers.0.self_attn.v_proj.weight": [4, 8],
          "model.layers.0.self_attn.o_proj.weight": [8, 8],
          "model.layers.0.mlp.gate_proj.weight": [12, 8], "model.layers.0.mlp.up_proj.weight": [12, 8],
          "model.layers.0.mlp.down_proj.weight": [8, 12]}
if case == "missing":
    del shapes["model.layers.0.mlp.up_proj.weight"]
if case == "extra":
    shapes["model.layers.0.self_attn.q_proj.bias"] = [8]
header, blob, rnd = {}, b"", random.Random(3)
for name, shape in shapes.items():
    n = 1
    for s in shape:
        n *= s
    data = struct.pack("<%df" % n, *[rnd.gauss(0, 0.3) for _ in range(n)])
    header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
    blob += data
if case == "past_end":
    header["model.norm.weight"]["data_offsets"][1] = len(blob) + 400
    header["model.norm.weight"]["data_offsets"][0] = len(blob) + 368
if case == "overlap":
    header["model.norm.weight"]["data_offsets"] = [0, 32]
if case == "i64":
    header["model.norm.weight"]["dtype"] = "I64"
    header["model.norm.weight"]["data_offsets"] = header["model.norm.weight"]["data_offsets"]
h = json.dumps(header).encode()
n = len(h) + (1 << 30 if case == "header_len" else 0)
open(os.path.join(d, "model.safetensors"), "wb").write(struct.pack("<Q", n) + h + blob)
EOF
$SYSPY "$T/st.py" "$T/hand" good
expect_exit 0 "import a hand-written safetensors model" "$HW" ckpt import-hf "$T/hand" --out "$T/hand-ck"
ok "the import has a checkpoint and a config.yaml" test -f "$T/hand-ck/ckpt_00000000.h5" -a -f "$T/hand-ck/config.yaml"
expect_exit 0 "ckpt verify the import" "$HW" ckpt verify "$T/hand-ck/ckpt_00000000.h5"
expect_exit 2 "import into a directory that holds checkpoints" "$HW" ckpt import-hf "$T/hand" --out "$T/hand-ck"
err_has "already holds checkpoints"
expect_exit 0 "export it" "$HW" ckpt export-hf "$T/hand-ck" --out "$T/hand-out"
ok "export gives back the hand-written file byte for byte in the tensors" $SYSPY -c '
import json, struct, sys
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
    h.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]) for k, v in h.items()}
sys.exit(load(sys.argv[1]) != load(sys.argv[2]))' "$T/hand/model.safetensors" "$T/hand-out/model.safetensors"
expect_exit 2 "export into an existing directory" "$HW" ckpt export-hf "$T/hand-ck" --out "$T/hand-out"
err_has "exists"
bad() { # CASE CODE EXPECTED-STDERR
    $SYSPY "$T/st.py" "$T/bad-$1" "$1"
    expect_exit "$2" "import-hf refuses: $1" "$HW" ckpt import-hf "$T/bad-$1" --out "$T/bad-$1-ck"
    err_has "$3"
    ok "$1: one line on stderr" test "$(wc -l <"$T/err")" -eq 1
    ok "$1: nothing written" test ! -e "$T/bad-$1-ck"
}
bad past_end 1 "model.norm.weight': data_offsets outside the data region"
bad overlap 1 "overlap in the data region"
bad i64 1 "dtype I64 is not supported"
bad header_len 1 "runs past the file"
bad arch 2 "architectures: GPT2LMHeadModel is not supported"
bad rope_scaling 2 "rope_scaling: only rope_type \"llama3\" (LLaMA 3.1) is supported, got yarn"
bad missing 1 "tensor 'model.layers.0.mlp.up_proj.weight' is missing"
bad extra 1 "tensor 'model.layers.0.self_attn.q_proj.bias' has no place"

# --- against transformers --------------------------------------------------------------------------
PY=$(ml_venv)
if [ -z "$PY" ]; then
    echo "SKIP parity with transformers, training and MoH conversion of an imported model:" \
        "transformers could not be installed into $(dirname "$HW")/ml-venv with Debian's" \
        "python3-torch ($(tail -1 "$T/pip.log" 2>/dev/null))"
    finish
    exit
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
"$PY" tests/hf_tokenizers.py train "$T" "$CORPUS"
V=$("$PY" -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["model"]["vocab"]))' "$T/gpt2.json")
"$PY" tests/hf_llama.py ids "$T/ids.txt" "$V" 3 40 5
"$PY" tests/hf_llama.py make_all "$T/m" "$V"
for n in f32 bf16 f32sharded f32xtied f32xrope; do
    cp "$T/gpt2.json" "$T/m-$n/tokenizer.json"
done
"$PY" tests/hf_llama.py logits "$T/ids.txt" "$T/m-f32" "$T/ref-f32.npy" "$T/m-bf16" \
    "$T/ref-bf16.npy" "$T/m-f32sharded" "$T/ref-f32sharded.npy" "$T/m-f32xtied" \
    "$T/ref-f32xtied.npy" "$T/m-f32xrope" "$T/ref-f32xrope.npy"
for n in f32 bf16 f32sharded f32xtied f32xrope; do
    expect_exit 0 "import-hf $n" "$HW" ckpt import-hf "$T/m-$n" --out "$T/c-$n"
    "$HW" ckpt logits "$T/c-$n" --ids "$T/ids.txt" --out "$T/hw-$n.f32" 2>"$T/err" || cat "$T/err"
    ok "$n: headwise's logits equal transformers' within 1e-4" \
        "$PY" tests/hf_llama.py compare "$T/ref-$n.npy" "$T/hw-$n.f32" 1e-4
done
ok "the sharded import is the one-file import" cmp "$T/hw-f32.f32" "$T/hw-f32sharded.f32"
expect_exit 0 "export-hf f32" "$HW" ckpt export-hf "$T/c-f32" --out "$T/e-f32"
ok "f32 export: the very tensors transformers saved" "$PY" tests/hf_llama.py same_tensors "$T/m-f32" "$T/e-f32"
ok "export keeps tokenizer.json byte for byte" cmp "$T/gpt2.json" "$T/e-f32/tokenizer.json"
expect_exit 0 "export-hf --dtype bf16" "$HW" ckpt export-hf "$T/c-bf16" --out "$T/e-bf16" --dtype bf16
ok "bf16 export: the very tensors transformers saved" "$PY" tests/hf_llama.py same_tensors "$T/m-bf16" "$T/e-bf16"
expect_exit 0 "export-hf of the rope_scaling model" "$HW" ckpt export-hf "$T/c-f32xrope" --out "$T/e-rope"
ok "its config.json keeps rope_scaling (llama3, original 64)" grep -q '"original_max_position_embeddings": 64' "$T/e-rope/config.json"
"$PY" tests/hf_llama.py logits "$T/ids.txt" "$T/e-f32" "$T/ref-e.npy" "$T/e-rope" "$T/ref-e-rope.npy"
ok "transformers loads the rope_scaling export and agrees with headwise" \
    "$PY" tests/hf_llama.py compare "$T/ref-e-rope.npy" "$T/hw-f32xrope.f32" 1e-4
ok "transformers loads the export and agrees with headwise" \
    "$PY" tests/hf_llama.py compare "$T/ref-e.npy" "$T/hw-f32.f32" 1e-4

# --- the imported model trains, and continues as MoH ---------------------------------------------
"$HW" data prepare --input "$CORPUS" --tokenizer "$T/gpt2.json" --out "$T/data" >/dev/null 2>&1
set -- "$T/c-f32/config.yaml" data.train="$T/data/train.h5" data.val="$T/data/val.h5" \
    train.init_from="$T/c-f32" train.steps=4 train.warmup=1 train.micro_batch=4 \
    train.seq_len=64 train.val_every=2 train.log_every=1 train.lr=1e-3 run.ckpt_every=4 \
    train.threads=1
expect_exit 0 "train from the import (init_from = its run directory)" "$HW" train "$@" run.dir="$T/r-dense"
ok "validation loss falls" awk -F'"val_loss":' 'NF > 1 { split($2, a, /[,}]/); v[n++] = a[1] } END { exit !(n >= 2 && v[n - 1] < v[0]) }' "$T/r-dense/metrics.jsonl"
expect_exit 0 "the same as MoH (qnorm router, 2 shared + top 2 of 2)" "$HW" train "$@" \
    run.dir="$T/r-moh-all" model.attention.kind=moh model.moh.router=qnorm \
    model.moh.shared_heads=2 model.moh.top_k=2
metric_lines "$T/r-dense/metrics.jsonl" | head -1 | cut -d' ' -f2 >"$T/l-dense"
metric_lines "$T/r-moh-all/metrics.jsonl" | head -1 | cut -d' ' -f2 >"$T/l-moh"
ok "with every head active the MoH model's first loss is the dense one's" cmp "$T/l-dense" "$T/l-moh"
expect_exit 0 "MoH on layer 2 with a learned router, top 1 of 2" "$HW" train "$@" \
    run.dir="$T/r-moh" 'model.attention.layers=[mha, moh]' model.moh.router=learned \
    model.moh.shared_heads=2 model.moh.top_k=1
ok "the log says the router starts from its init" grep -q "3 MoH router tensors are not in the checkpoint" "$T/out"
expect_exit 2 "export-hf refuses a MoH model" "$HW" ckpt export-hf "$T/r-moh" --out "$T/e-moh"
err_has "model.attention (moh) has no LlamaForCausalLM equivalent"
ok "nothing written" test ! -e "$T/e-moh"
expect_exit 0 "export the trained dense model" "$HW" ckpt export-hf "$T/r-dense" --out "$T/e-trained"
"$HW" ckpt logits "$T/r-dense" --ids "$T/ids.txt" --out "$T/hw-trained.f32" 2>/dev/null
"$PY" tests/hf_llama.py logits "$T/ids.txt" "$T/e-trained" "$T/ref-trained.npy"
ok "transformers scores the trained export as headwise does" \
    "$PY" tests/hf_llama.py compare "$T/ref-trained.npy" "$T/hw-trained.f32" 1e-4
finish
