"""tests/hf_tokenizers.py -- the `tokenizers` side of tests/cli_hf_tokenizer.sh and
bench/tokenizer_bench.sh. Subcommands:
  train OUTDIR CORPUS          byte-level BPE tokenizers trained locally: gpt2.json (GPT-2's
                               ByteLevel pre-tokenizer), llama3.json (LLaMA-3's Split regex,
                               ignore_merges), legacy.json (merges as "a b" strings,
                               add_prefix_space)
  awkward FILE                 a file of awkward text (combining marks, emoji, CJK, controls,
                               Unicode spaces and digits, odd contractions, invalid UTF-8)
  check TOK TEXT IDS PIECES DECODED
                               headwise's ids, pre-tokenizer pieces (hex lines) and decoded bytes
                               must equal the library's; prints the first difference
  speed TOK TEXT               the library's encode throughput, one thread, best of 5 (MB/s)
The text is read as bytes and decoded with errors="replace", the only way such bytes reach the
library; headwise does the same replacement itself."""
import os
import random
import sys
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402

LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
          r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def train(outdir, corpus):
    import json
    text = open(corpus, encoding="utf-8", errors="replace").read()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    kinds = {
        "gpt2": (models.BPE(), pre_tokenizers.ByteLevel(add_prefix_space=False),
                 ["<|endoftext|>"]),
        "llama3": (models.BPE(ignore_merges=True), pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3), "isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]),
            ["<|begin_of_text|>", "<|end_of_text|>"]),
        "legacy": (models.BPE(), pre_tokenizers.ByteLevel(add_prefix_space=True),
                   ["<|endoftext|>"]),
    }
    for name, (model, pre, special) in kinds.items():
        tok = Tokenizer(model)
        tok.pre_tokenizer = pre
        tok.decoder = decoders.ByteLevel()
        tok.train_from_iterator([text], trainers.BpeTrainer(
            vocab_size=1500, special_tokens=special, initial_alphabet=alphabet,
            show_progress=False))
        path = os.path.join(outdir, name + ".json")
        tok.save(path)
        if name == "legacy":  # the older file layout: merges as "left right" strings
            j = json.load(open(path, encoding="utf-8"))
            j["model"]["merges"] = [" ".join(m) for m in j["model"]["merges"]]
            json.dump(j, open(path, "w", encoding="utf-8"), ensure_ascii=False)


def awkward(path):
    parts = [
        "e\u0301 a\u0308\u0304 \u1e9b\u0323 Z\u0351\u036ba\u0352l\u0346g\u0344o\u0334\n",
        "\U0001F600\U0001F44D\U0001F3FD \U0001F468\u200D\U0001F469\u200D\U0001F467 "
        "\U0001F1EF\U0001F1F5 1\uFE0F\u20E3\n",
        "\u4f60\u597d\uff0c\u4e16\u754c\u3002\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 "
        "\ud55c\uad6d\uc5b4 \u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22\n",
        "\x00\x01\x02\x07\x08\x1b[31m\x7f\x0b\x0c|\t\ttabs\r\nCRLF\rCR\n\n\n",
        "a\u00a0b\u2003c\u3000d\u200be\ufeff f\u2028g\u2029h\u0085i\u180ej \u202fk\u205fl  \t \n",
        "x \u180ey \u180e z\u0085 w \u0085v\n",
        "1234567 \u0663\u0664\u0665 \uff11\uff12\uff13\uff14 \u00bd\u2155 \u2460\u2461 x\u00b2\n",
        "don't I'M we'RE they've she'Ll it'D I\u017fn'\u017f ' 's 'S''t\n",
        "<|endoftext|>x<|end_of_text|> <|begin_of_text|><|endoftext|\n",
        "\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627 \u200f\u200e mixed\u05d0b\n",
        "\ufffe\uffff \U0010FFFF \U000E0001\n",
        "a" * 300 + " " + "!" * 50 + " " * 40 + "end\n",
    ]
    rnd = random.Random(7)
    pool = "aZ 09\n\t.,'\u00e9\u4e2d\U0001F600\u0301\u00a0\u180e\u0085"
    parts.append("".join(rnd.choice(pool) for _ in range(3000)) + "\n")
    out = bytearray("".join(parts).encode("utf-8"))
    bad = [b"\x80", b"\xbf\xbf", b"\xc0\x80", b"\xc1\xbf", b"\xe0\x80\x80", b"\xed\xa0\x80",
           b"\xf0\x8f\xbf\xbf", b"\xf4\x90\x80\x80", b"\xf5\x80", b"\xff\xfe", b"\xe2\x82",
           b"\xf0\x9f\x98", b"\xc3", b"\xe2\x28\xa1", b"\xf0\x28\x8c\x28"]
    for i, b in enumerate(bad):
        out += b"invalid %d: x" % i + b + b"y " + b + b"\n"
    out += b"ends with a truncated sequence \xe4\xb8"
    open(path, "wb").write(out)


def byte_decoder():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def check(tok_path, text_path, ids_path, pieces_path, decoded_path):
    tok = Tokenizer.from_file(tok_path)
    text = open(text_path, "rb").read().decode("utf-8", "replace")
    ok = True
    want = tok.encode(text, add_special_tokens=False).ids
    got = [int(x) for x in open(ids_path).read().split()]
    if want != got:
        i = first_diff(want, got)
        print("ids differ at %d of %d/%d: tokenizers %s, headwise %s" % (
            i, len(want), len(got), want[i:i + 6], got[i:i + 6]))
        ok = False
    bd = byte_decoder()
    want_p = [bytes(bd[c] for c in p).hex() for p, _ in tok.pre_tokenizer.pre_tokenize_str(text)]
    got_p = open(pieces_path).read().split()
    if want_p != got_p:
        i = first_diff(want_p, got_p)
        print("pieces differ at %d of %d/%d: tokenizers %s, headwise %s" % (
            i, len(want_p), len(got_p), want_p[i:i + 4], got_p[i:i + 4]))
        ok = False
    want_d = tok.decode(want, skip_special_tokens=False).encode("utf-8")
    got_d = open(decoded_path, "rb").read()
    if want_d != got_d:
        i = first_diff(want_d, got_d)
        print("decoded text differs at byte %d: %r / %r" % (i, want_d[i:i + 20], got_d[i:i + 20]))
        ok = False
    print("%s: %d tokens, %d pieces%s" % (os.path.basename(text_path), len(want), len(want_p),
                                         "" if ok else " (MISMATCH)"))
    return ok


def speed(tok_path, text_path):
    tok = Tokenizer.from_file(tok_path)
    text = open(text_path, "rb").read().decode("utf-8", "replace")
    n = len(text.encode("utf-8"))
    best = 1e30
    for _ in range(5):
        t0 = time.perf_counter()
        tok.encode(text, add_special_tokens=False)
        best = min(best, time.perf_counter() - t0)
    print("%.3f" % (n / best / 1e6))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "train":
        train(*args)
    elif cmd == "awkward":
        awkward(*args)
    elif cmd == "check":
        sys.exit(0 if check(*args) else 1)
    elif cmd == "speed":
        speed(*args)
    else:
        sys.exit("unknown command " + cmd)
