#!/bin/sh
# bench/tokenizer_bench.sh -- encode throughput of Hugging Face tokenizer.json files: headwise's
# encoder (`headwise data tokenize --repeat N`, one thread, best of N) against the `tokenizers`
# library (Rust, RAYON_NUM_THREADS=1, best of 5) on the same text and the same files: a GPT-2
# style and a LLaMA-3 style byte-level BPE, trained here by the library (vocab 1500) on the text.
# Both sides first check that they give the same ids. Prints MB/s of both and the ratio.
# Usage: sh bench/tokenizer_bench.sh [build/headwise] [TEXT]
# The library comes from PyPI into a venv beside the build (made once; needs the network then).
set -e
HW=${1:-build/headwise}
TEXT=${2:-../shared/datasets/tinyshakespeare/input.txt}
OUT=runs/tokenizer-bench
mkdir -p "$OUT"
V=$(dirname "$HW")/tok-venv
if ! "$V/bin/python" -c "import tokenizers" 2>/dev/null; then
    python3 -m venv "$V" && "$V/bin/pip" install --quiet tokenizers
fi
PY=$V/bin/python
if [ ! -f "$TEXT" ]; then
    TEXT=$OUT/synth.txt
    "$HW" data synth --out "$TEXT" --bytes 1000000 >/dev/null
fi
"$PY" tests/hf_tokenizers.py train "$OUT" "$TEXT"
echo "text: $TEXT ($(wc -c <"$TEXT") bytes); tokenizers $("$PY" -c 'import tokenizers; print(tokenizers.__version__)'), one thread"
printf '%-8s %14s %16s %8s\n' tokenizer "headwise MB/s" "tokenizers MB/s" ratio
for tok in gpt2 llama3; do
    "$HW" data tokenize --tokenizer "$OUT/$tok.json" --text "$TEXT" --out "$OUT/$tok.ids" \
        --repeat 5 >"$OUT/$tok.log" 2>&1
    "$HW" data tokenize --tokenizer "$OUT/$tok.json" --text "$TEXT" --pieces \
        --out "$OUT/$tok.pieces" >/dev/null 2>&1
    "$HW" data tokenize --tokenizer "$OUT/$tok.json" --ids "$OUT/$tok.ids" \
        --out "$OUT/$tok.dec" >/dev/null 2>&1
    "$PY" tests/hf_tokenizers.py check "$OUT/$tok.json" "$TEXT" "$OUT/$tok.ids" \
        "$OUT/$tok.pieces" "$OUT/$tok.dec" >/dev/null ||
        { echo "$tok: headwise and tokenizers disagree; not timing"; exit 1; }
    hw=$(sed -n 's/.*(\([0-9.]*\) MB\/s.*/\1/p' "$OUT/$tok.log" | tail -1)
    lib=$("$PY" tests/hf_tokenizers.py speed "$OUT/$tok.json" "$TEXT")
    printf '%-8s %14s %16s %8s\n' "$tok" "$hw" "$lib" "$(awk -v a="$hw" -v b="$lib" 'BEGIN { printf "%.1fx", a / b }')"
done
