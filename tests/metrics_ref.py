#!/usr/bin/python3
"""tests/metrics_ref.py -- reference values for tests/test_metrics.c, computed in Python
independently of eval/metrics.c: F1 with scikit-learn, BLEU with nltk's corpus_bleu on text cut by
a 13a tokenizer written here after sacrebleu's tokenizer_13a.py, Porter stems with nltk, ROUGE
with a scorer written here after rouge_score's rouge_scorer.py (nltk's PorterStemmer()).

Usage: /usr/bin/python3 tests/metrics_ref.py tests/fixtures/metrics_pairs.jsonl
Prints one JSON object per input line, in order. Exits 3 with a one-line reason on stderr when
scikit-learn or nltk is missing (the C test then skips these comparisons).
"""
import collections
import json
import math
import re
import sys

try:
    from nltk.stem.porter import PorterStemmer
    from nltk.translate.bleu_score import corpus_bleu, modified_precision
    from sklearn.metrics import f1_score
except ImportError as e:  # pragma: no cover - environment dependent
    print("missing module: %s (apt-get install python3-sklearn python3-nltk)" % e, file=sys.stderr)
    sys.exit(3)

import warnings

warnings.filterwarnings("ignore")  # nltk warns when a BLEU precision is 0

STEMMERS = {
    "nltk": PorterStemmer(PorterStemmer.NLTK_EXTENSIONS),
    "martin": PorterStemmer(PorterStemmer.MARTIN_EXTENSIONS),
    "original": PorterStemmer(PorterStemmer.ORIGINAL_ALGORITHM),
}


# --- 13a tokenizer (sacrebleu tokenizers/tokenizer_13a.py, as vendored by HF evaluate) ---------
_RE_13A = [
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),
]


def tokenize_13a(line):
    line = line.replace("<skipped>", "")
    line = line.replace("-\n", "")
    line = line.replace("\n", " ")
    if "&" in line:
        line = line.replace("&quot;", '"')
        line = line.replace("&amp;", "&")
        line = line.replace("&lt;", "<")
        line = line.replace("&gt;", ">")
    line = " %s " % line
    for rx, repl in _RE_13A:
        line = rx.sub(repl, line)
    return line.split()


def bleu_ref(hyp, ref):
    h, r = tokenize_13a(hyp), tokenize_13a(ref)
    out = {"tok13a_hyp": " ".join(h), "tok13a_ref": " ".join(r)}
    # no smoothing (nltk's default): a zero precision gives ~1e-77 instead of 0
    out["bleu"] = corpus_bleu([[r]], [h])
    out["bleu_precisions"] = [float(modified_precision([r], h, n)) for n in range(1, 5)]
    return out


# --- ROUGE (rouge_score tokenize.py + rouge_scorer.py, use_stemmer=True) -----------------------
def rouge_tokens(text, stemmer):
    text = re.sub(r"[^a-z0-9]+", " ", text.lower())
    toks = [stemmer.stem(w) if len(w) > 3 else w for w in re.split(r"\s+", text)]
    return [w for w in toks if re.match(r"^[a-z0-9]+$", w)]


def f_measure(p, r):
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def ngram_f(t, p, n):
    tc = collections.Counter(tuple(t[i : i + n]) for i in range(len(t) - n + 1))
    pc = collections.Counter(tuple(p[i : i + n]) for i in range(len(p) - n + 1))
    inter = sum(min(c, pc[g]) for g, c in tc.items())
    return f_measure(inter / max(sum(pc.values()), 1), inter / max(sum(tc.values()), 1))


def lcs_table(a, b):
    t = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            if a[i - 1] == b[j - 1]:
                t[i][j] = t[i - 1][j - 1] + 1
            else:
                t[i][j] = max(t[i - 1][j], t[i][j - 1])
    return t


def lcs_positions(ref, can):
    t = lcs_table(ref, can)
    i, j, pos = len(ref), len(can), []
    while i > 0 and j > 0:
        if ref[i - 1] == can[j - 1]:
            pos.append(i - 1)
            i, j = i - 1, j - 1
        elif t[i][j - 1] > t[i - 1][j]:
            j -= 1
        else:
            i -= 1
    return pos


def lcs_f(t, p):
    if not t or not p:
        return 0.0
    n = lcs_table(t, p)[-1][-1]
    return f_measure(n / len(p), n / len(t))


def lsum_f(ref_sents, can_sents):
    if not ref_sents or not can_sents:
        return 0.0
    m, n = sum(map(len, ref_sents)), sum(map(len, can_sents))
    if not m or not n:
        return 0.0
    cnt_r = collections.Counter(w for s in ref_sents for w in s)
    cnt_c = collections.Counter(w for s in can_sents for w in s)
    hits = 0
    for r in ref_sents:
        union = sorted(set().union(*[lcs_positions(r, c) for c in can_sents]))
        for w in (r[i] for i in union):
            if cnt_c[w] > 0 and cnt_r[w] > 0:
                hits += 1
                cnt_c[w] -= 1
                cnt_r[w] -= 1
    return f_measure(hits / n, hits / m)


def rouge_ref(hyp, ref):
    st = STEMMERS["nltk"]  # rouge_score builds porter.PorterStemmer(), the default mode
    t, p = rouge_tokens(ref, st), rouge_tokens(hyp, st)
    lines = lambda s: [x for x in s.split("\n") if len(x)]
    return {
        "rouge1": ngram_f(t, p, 1),
        "rouge2": ngram_f(t, p, 2),
        "rougeL": lcs_f(t, p),
        "rougeLsum": lsum_f(
            [rouge_tokens(x, st) for x in lines(ref)], [rouge_tokens(x, st) for x in lines(hyp)]
        ),
    }


def stems(words):
    return [[w] + [STEMMERS[m].stem(w) for m in ("nltk", "martin", "original")] for w in words]


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        items = [json.loads(line) for line in f if line.strip()]
    for item in items:
        if "hyp" in item:
            out = {"kind": "text"}
            out.update(bleu_ref(item["hyp"], item["ref"]))
            out.update(rouge_ref(item["hyp"], item["ref"]))
            # RoleMRC's evaluation.py calls scorer.score(prediction, reference): the reply is
            # the target, which changes only rougeLsum; and evaluate's "bleu" raises
            # ZeroDivisionError (the sample leaves the BLEU mean) when either side has no token
            out["rougeLsum_official"] = rouge_ref(item["ref"], item["hyp"])["rougeLsum"]
            out["bleu_defined"] = bool(tokenize_13a(item["hyp"]) and tokenize_13a(item["ref"]))
            words = set()
            for s in (item["hyp"], item["ref"]):
                words.update(w for w in re.sub(r"[^a-z0-9]+", " ", s.lower()).split())
            out["stems"] = stems(sorted(words))
        elif "gold" in item:
            g, p, k = item["gold"], item["pred"], item["n_classes"]
            present = sorted(set(g) | set(p))
            per = f1_score(g, p, labels=present, average=None, zero_division=0)
            per_label = [None] * k
            for lab, v in zip(present, per):
                per_label[lab] = float(v)
            counts = collections.Counter(g)
            out = {
                "kind": "f1",
                "micro": float(f1_score(g, p, average="micro", zero_division=0)),
                "macro": float(f1_score(g, p, average="macro", zero_division=0)),
                "n_labels": len(present),
                "per_label": per_label,
                "majority": min(range(k), key=lambda c: (-counts[c], c)),
            }
        elif "words" in item:
            out = {"kind": "words", "stems": stems(item["words"])}
        else:
            raise SystemExit("unknown fixture item: %r" % item)
        print(json.dumps(out, ensure_ascii=True))


if __name__ == "__main__":
    main()
