#!/bin/sh
# tests/cli_lm_eval.sh -- lm-evaluation-harness against a headwise checkpoint. lm_eval 0.4.5
# (PyPI, in the venv tests/lib.sh's ml_venv makes; SKIP said when it cannot be
# installed) runs three local tasks (JSONL files written here, nothing downloaded):
# multiple choice (loglikelihood), rolling perplexity (loglikelihood_rolling) and greedy
# generation to a stop string (generate_until), through tools/lm_eval_headwise and
# `headwise eval --serve`. Every logged request is recomputed independently from
# `headwise ckpt logits` with numpy, the `tokenizers` library's ids and lm_eval's own rolling
# windows, as HFLM computes them; the plain `lm_eval` command and `python -m lm_eval_headwise`
# both find the model; under mpirun (launcher=) the answers are the same. The protocol's own
# errors (a bad line, an unknown type) are answered and the server goes on.
. tests/lib.sh
SRC=../shared/datasets/tinyshakespeare/input.txt
[ -f "$SRC" ] || { SRC=$T/synth.txt && "$HW" data synth --out "$SRC" --bytes 400000 >/dev/null; }
export OMP_NUM_THREADS=1 HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
HWABS=$(cd "$(dirname "$HW")" && pwd)/$(basename "$HW")

# --- the protocol, without lm_eval ---------------------------------------------------------------
prepare_tiny "$T/d"
"$HW" train configs/tiny.yaml data.train="$T/d/train.h5" data.val="$T/d/val.h5" train.steps=4 \
    train.threads=1 run.dir="$T/r0" >/dev/null 2>&1
printf '%s\n' '{"id": 1, "type": "info"}' 'not json' '{"id": 2, "type": "nope", "requests": []}' \
    '{"id": 3, "type": "loglikelihood", "requests": [["copy ab > ", "ab"], ["", "copy"]]}' \
    '{"id": 4, "type": "loglikelihood", "requests": [["x", 5]]}' \
    '{"id": 5, "type": "generate_until", "requests": [["copy ab > ", {"until": ["\n"], "max_gen_toks": 4}]]}' |
    "$HW" eval --serve "$T/r0" >"$T/serve.out" 2>"$T/serve.err"
ok "eval --serve answers every line, in order, and exits 0 at end of input" \
    test "$(sed -n 's/^{"id":\([0-9a-z]*\),.*/\1/p' "$T/serve.out" | tr '\n' ' ')" = "1 null 2 3 4 5 "
ok "info gives the model's length" grep -q '"max_length":64' "$T/serve.out"
ok "a line that is not JSON gets an error answer" grep -q '"id":null,"error":"column 3: ' "$T/serve.out"
ok "an unknown type gets an error answer" grep -q '"id":2,"error":"type '"'"'nope'"'"'' "$T/serve.out"
ok "two log-likelihoods" grep -q '"id":3,"results":\[\[-[0-9.e-]*,\(true\|false\)\],\[-' "$T/serve.out"
ok "a malformed request gets an error answer" grep -q '"id":4,"error":"requests\[0\]: expected \[context, continuation\]"' "$T/serve.out"
ok "a generation" grep -q '"id":5,"results":\["' "$T/serve.out"
ok "the log went to stderr" grep -q "eval --serve:" "$T/serve.err"

# --- lm_eval --------------------------------------------------------------------------------------
PY=$(ml_venv)
if [ -z "$PY" ]; then
    echo "SKIP lm_eval against headwise: lm-eval 0.4.5 could not be installed into" \
        "$(dirname "$HW")/ml-venv with Debian's python3-torch ($(tail -1 "$T/pip.log" 2>/dev/null))"
    finish
    exit
fi
V=$(dirname "$PY")/..
# a model with a Hugging Face tokenizer, trained a little
"$PY" tests/hf_tokenizers.py train "$T" "$SRC"
"$HW" data prepare --input "$SRC" --tokenizer "$T/gpt2.json" --out "$T/data" >/dev/null 2>&1
expect_exit 0 "train a small model on the gpt2-tokenized shards" "$HW" train configs/tiny.yaml \
    data.train="$T/data/train.h5" data.val="$T/data/val.h5" train.steps=30 train.threads=1 \
    run.dir="$T/run"
"$PY" tests/lm_eval_check.py tasks "$T/tasks" "$T/taskdata"
run_lm_eval() { # OUT MODEL_ARGS [PROGRAM...]: lm_eval on the three tasks with logged samples
    out=$1
    args=$2
    shift 2
    HEADWISE=$HWABS "$@" --model headwise --model_args "$args" --tasks hw_mc,hw_ppl,hw_gen \
        --include_path "$T/tasks" --log_samples --output_path "$out" >"$out.log" 2>&1
}
expect_exit 0 "lm_eval --model headwise (the plain command)" run_lm_eval "$T/le1" "ckpt=$T/run" "$V/bin/lm_eval"
ok "it scored the three tasks" grep -q "hw_ppl.*bits_per_byte" "$T/le1.log"
ok "every logged request equals the independent computation (HFLM semantics)" \
    "$PY" tests/lm_eval_check.py verify "$HWABS" "$T/run" "$T/gpt2.json" 64 "$T/le1"
expect_exit 0 "python -m lm_eval_headwise, with headwise under mpirun -np 2" run_lm_eval "$T/le2" \
    "ckpt=$T/run,launcher=mpirun --oversubscribe --bind-to none -np 2" "$PY" -m lm_eval_headwise
ok "two ranks give the one-rank answers" "$PY" tests/lm_eval_check.py same "$T/le1" "$T/le2"
finish
