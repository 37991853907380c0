#!/bin/sh
# tests/cli_hf_tokenizer.sh -- Hugging Face tokenizer.json files: headwise must give the ids,
# the pre-tokenizer pieces and the decoded bytes of the `tokenizers` library (PyPI, in the venv of
# tests/lib.sh's ml_venv; everything that needs it says SKIP when it cannot be installed).
# Three byte-level BPE tokenizers are trained here by the library itself: GPT-2's ByteLevel
# regex, LLaMA-3's Split regex with ignore_merges, and the older layout (merges as strings,
# add_prefix_space). Texts: Tiny Shakespeare (or headwise's synthetic corpus), the MultiFC dev
# CSV when ../shared has it, and a file of awkward text (combining marks, emoji, CJK, Unicode
# spaces, controls, invalid UTF-8). Then the end-to-end path: data prepare --tokenizer on JSONL,
# training, the checkpoint keeps the file's text as it was, sample decodes. Without the library
# the error paths still run on hand-written files: each is exit 2, one line naming the file.
. tests/lib.sh
SH=../shared/datasets
CORPUS=$SH/tinyshakespeare/input.txt
if [ ! -f "$CORPUS" ]; then
    echo "note: $CORPUS not found; training the tokenizers on headwise's synthetic corpus"
    CORPUS=$T/synth.txt
    "$HW" data synth --out "$CORPUS" --bytes 400000 >/dev/null
fi
PY=$(ml_venv)

# --- error paths: hand-written files, no library needed -----------------------------------------
good_model='"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}'
bytelevel='"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}'
bad_tok() { # NAME JSON-BODY EXPECTED-STDERR
    printf '%s\n' "$2" >"$T/$1.json"
    expect_exit 2 "bad tokenizer: $1" "$HW" data tokenize --tokenizer "$T/$1.json" \
        --text "$CORPUS" --out "$T/$1.ids"
    err_has "$3"
    ok "$1: one line on stderr" test "$(wc -l <"$T/err")" -eq 1
    ok "$1: nothing written" test ! -e "$T/$1.ids"
}
bad_tok malformed "{\"model\": {\"type\": \"BPE\",
  \"vocab\": {\"a\": 0,, \"b\": 1}}}" "$T/malformed.json:2:"
bad_tok merge_missing "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1},
  \"merges\": [\"a c\"]}, $bytelevel}" "model.merges[0]: \"c\" is not in the vocabulary"
bad_tok normalizer "{\"normalizer\": {\"type\": \"NFC\"}, $good_model, $bytelevel}" "normalizer"
bad_tok whitespace "{$good_model, \"pre_tokenizer\": {\"type\": \"Whitespace\"}}" "Whitespace"
bad_tok wordpiece "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}, $bytelevel}" \
    "WordPiece"
bad_tok dropout "{\"model\": {\"type\": \"BPE\", \"dropout\": 0.1, \"vocab\": {\"a\": 0}},
  $bytelevel}" "dropout"
printf '%s\n' "{$good_model, $bytelevel}" >"$T/small.json"
printf 'abba' >"$T/abba.txt"
expect_exit 0 "a hand-written tokenizer.json loads and encodes" "$HW" data tokenize \
    --tokenizer "$T/small.json" --text "$T/abba.txt" --out "$T/abba.ids"
ok "abba -> ab b a" test "$(tr -s ' \n' ' ' <"$T/abba.ids" | sed 's/ $//')" = "2 1 0"

# --- parity with the tokenizers library ---------------------------------------------------------
if [ -z "$PY" ]; then
    echo "SKIP parity with the tokenizers library and the JSONL training run: pip could not" \
        "install it into $(dirname "$HW")/ml-venv ($(tail -1 "$T/pip.log" 2>/dev/null))"
    finish
    exit
fi
ok "tokenizers trains gpt2, llama3 and legacy tokenizers" "$PY" tests/hf_tokenizers.py train "$T" "$CORPUS"
"$PY" tests/hf_tokenizers.py awkward "$T/awkward.txt"
TEXTS="$CORPUS $T/awkward.txt"
MFC=$SH/multifc/multifc_dev_claimid_claim_label.csv
[ -f "$MFC" ] && TEXTS="$TEXTS $MFC"
[ -f "$MFC" ] || echo "note: $MFC not found; parity on two texts"
for tok in gpt2 llama3 legacy; do
    for text in $TEXTS; do
        n=$tok-$(basename "$text" | cut -c1-12)
        "$HW" data tokenize --tokenizer "$T/$tok.json" --text "$text" --out "$T/$n.ids" \
            >/dev/null 2>"$T/err" &&
            "$HW" data tokenize --tokenizer "$T/$tok.json" --text "$text" --pieces \
                --out "$T/$n.pieces" >/dev/null 2>>"$T/err" &&
            "$HW" data tokenize --tokenizer "$T/$tok.json" --ids "$T/$n.ids" \
                --out "$T/$n.dec" >/dev/null 2>>"$T/err" || sed 's/^/     /' "$T/err"
        ok "$tok on $(basename "$text"): ids, pieces and decoded bytes equal the library's" \
            "$PY" tests/hf_tokenizers.py check "$T/$tok.json" "$text" "$T/$n.ids" \
            "$T/$n.pieces" "$T/$n.dec"
    done
done

# --- end to end: JSONL -> shards -> training -> checkpoint -> sample ----------------------------
"$PY" - "$CORPUS" "$T/docs.jsonl" <<'PYEOF'
import json, sys
text = open(sys.argv[1], encoding="utf-8", errors="replace").read()[:300000]
with open(sys.argv[2], "w", encoding="utf-8") as f:
    for i, para in enumerate(text.split("\n\n")):
        f.write(json.dumps({"id": i, "text": para}) + "\n")
PYEOF
expect_exit 0 "data prepare --tokenizer gpt2.json on JSONL" "$HW" data prepare \
    --input "$T/docs.jsonl" --tokenizer "$T/gpt2.json" --out "$T/data"
ok "the shard directory keeps the tokenizer.json byte for byte" cmp "$T/gpt2.json" \
    "$T/data/tokenizer.json"
expect_exit 2 "JSONL with a tokenizer that has no end-of-text token" "$HW" data prepare \
    --input "$T/docs.jsonl" --tokenizer "$T/small.json" --out "$T/data2"
err_has "$T/small.json"
ok "nothing written" test ! -e "$T/data2/train.h5"
expect_exit 0 "train on the gpt2-tokenized shards" "$HW" train configs/tiny.yaml \
    data.train="$T/data/train.h5" data.val="$T/data/val.h5" train.steps=4 train.threads=1 \
    run.ckpt_every=4 run.dir="$T/run"
ck=$T/run/$(cat "$T/run/latest" 2>/dev/null)
ok "the checkpoint's /tokenizer is the file's text" /usr/bin/python3 -c '
import h5py, sys
f = h5py.File(sys.argv[1], "r")
sys.exit(bytes(f["tokenizer"][()]) != open(sys.argv[2], "rb").read())' "$ck" "$T/gpt2.json"
expect_exit 0 "sample from the checkpoint" "$HW" sample "$T/run" --prompt "ROMEO:" --tokens 8
ok "the sample starts with the prompt" grep -q "^ROMEO:" "$T/out"
# data.tokenizer names the file explicitly (a LLaMA-3 style one here)
"$HW" data prepare --input "$T/docs.jsonl" --tokenizer "$T/llama3.json" --out "$T/data3" >/dev/null 2>&1
rm "$T/data3/tokenizer.json"
expect_exit 0 "train with data.tokenizer = a LLaMA-3 style tokenizer.json" "$HW" train \
    configs/tiny.yaml data.train="$T/data3/train.h5" data.val="$T/data3/val.h5" \
    data.tokenizer="$T/llama3.json" train.steps=4 train.threads=1 run.ckpt_every=4 run.dir="$T/run3"
ok "its checkpoint keeps that file's text" /usr/bin/python3 -c '
import h5py, sys
f = h5py.File(sys.argv[1], "r")
sys.exit(bytes(f["tokenizer"][()]) != open(sys.argv[2], "rb").read())' "$T/run3/ckpt_00000004.h5" "$T/llama3.json"
finish
