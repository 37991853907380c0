"""tests/lm_eval_check.py -- the independent side of tests/cli_lm_eval.sh. Usage:
  lm_eval_check.py tasks DIR DATA_DIR       writes three local lm_eval tasks (YAML + JSONL):
                                            hw_mc (multiple choice: loglikelihood), hw_ppl
                                            (loglikelihood_rolling), hw_gen (generate_until)
  lm_eval_check.py verify HEADWISE CKPT TOKENIZER MAX_LEN SAMPLES_DIR
                                            recomputes every logged request of lm_eval's
                                            --log_samples output from `headwise ckpt logits`
                                            with numpy, the `tokenizers` library for the ids and
                                            lm_eval's own rolling-window code, as HFLM does
  lm_eval_check.py same OUT_A OUT_B         two runs' logged responses are identical
"""
import glob
import json
import os
import subprocess
import sys
import tempfile

import numpy as np


def tasks(d, data):
    os.makedirs(d, exist_ok=True)
    os.makedirs(data, exist_ok=True)
    mc = [("ROMEO: What is", [" love", " hate", " war"], 0),
          ("JULIET: My name is", [" Juliet", " Romeo"], 0),
          ("First Citizen:\nBefore we proceed any further, hear me", [" speak.", " talk.", " go"], 0),
          ("KING RICHARD III:\n", ["Now is the winter", "A horse"], 0),
          ("", [" The king", " A queen"], 0)]
    with open(os.path.join(data, "mc.jsonl"), "w") as f:
        for q, c, a in mc:
            f.write(json.dumps({"question": q, "choices": c, "answer": a}) + "\n")
    texts = ["To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer",
             "Now is the winter of our discontent made glorious summer. " * 12, "x"]
    with open(os.path.join(data, "ppl.jsonl"), "w") as f:
        for t in texts:
            f.write(json.dumps({"text": t}) + "\n")
    with open(os.path.join(data, "gen.jsonl"), "w") as f:
        for p, t in [("ROMEO:", " I"), ("KING HENRY:\nWhat", " is"), ("First", " Citizen")]:
            f.write(json.dumps({"prompt": p, "target": t}) + "\n")
    bodies = {
        "hw_mc": ("mc", "output_type: multiple_choice\ndoc_to_text: \"{{question}}\"\n"
                        "doc_to_choice: \"{{choices}}\"\ndoc_to_target: \"{{answer}}\"\n"
                        "target_delimiter: \"\"\nmetric_list:\n  - metric: acc\n"),
        "hw_ppl": ("ppl", "output_type: loglikelihood_rolling\ndoc_to_text: \"\"\n"
                          "doc_to_target: \"{{text}}\"\nmetric_list:\n"
                          "  - metric: word_perplexity\n  - metric: bits_per_byte\n"),
        "hw_gen": ("gen", "output_type: generate_until\ndoc_to_text: \"{{prompt}}\"\n"
                          "doc_to_target: \"{{target}}\"\ngeneration_kwargs:\n"
                          "  until: [\"\\n\"]\n  max_gen_toks: 12\n  do_sample: false\n"
                          "metric_list:\n  - metric: exact_match\n"),
    }
    for name, (data_name, body) in bodies.items():
        with open(os.path.join(d, name + ".yaml"), "w") as f:
            f.write("task: %s\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
                    "    test: %s\ntest_split: test\n%s"
                    % (name, os.path.join(data, data_name + ".jsonl"), body))


class Model:
    """headwise's logits for one row of ids, via `headwise ckpt logits`"""

    def __init__(self, hw, ckpt):
        self.hw, self.ckpt = hw, ckpt
        self.tmp = tempfile.mkdtemp()

    def logits(self, ids):
        p_ids, p_out = os.path.join(self.tmp, "ids.txt"), os.path.join(self.tmp, "out.f32")
        with open(p_ids, "w") as f:
            f.write(" ".join(map(str, ids)) + "\n")
        subprocess.run([self.hw, "ckpt", "logits", self.ckpt, "--ids", p_ids, "--out", p_out],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return np.fromfile(p_out, dtype="<f4").reshape(len(ids), -1).astype(np.float64)


def log_softmax(x):
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def score(model, ctx_enc, cont_enc, max_len):
    """HFLM._loglikelihood_tokens for one request"""
    inp = (ctx_enc + cont_enc)[-(max_len + 1):][:-1]
    lp = log_softmax(model.logits(inp))[-len(cont_enc):]
    ll = float(sum(lp[i, t] for i, t in enumerate(cont_enc)))
    greedy = all(int(np.argmax(lp[i])) == t for i, t in enumerate(cont_enc))
    return ll, greedy


def verify(hw, ckpt, tok_path, max_len, samples_dir):
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(tok_path)
    enc = lambda s: tok.encode(s, add_special_tokens=False).ids  # noqa: E731
    eot = tok.token_to_id("<|endoftext|>")
    model, max_len, worst, n, bad = Model(hw, ckpt), int(max_len), 0.0, 0, 0
    for path in sorted(glob.glob(os.path.join(samples_dir, "**", "samples_*.jsonl"),
                                 recursive=True)):
        kind = os.path.basename(path).split("_")[2]
        for line in open(path):
            s = json.loads(line)
            keys = sorted(s["arguments"], key=lambda k: int(k.rsplit("_", 1)[1]))
            for args, resp in zip([s["arguments"][k] for k in keys], s["resps"]):
                got = resp[0]  # logged as strings: [ll, greedy], ll, or the text
                if kind == "mc":
                    ctx, cont = args["arg_0"], args["arg_1"]
                    if ctx == "":
                        ce, ke = [eot], enc(cont)
                    else:
                        k = len(ctx) - len(ctx.rstrip())
                        if k:
                            ctx, cont = ctx[:-k], ctx[-k:] + cont
                        ce = enc(ctx)
                        ke = enc(ctx + cont)[len(ce):]
                    ll, greedy = score(model, ce, ke, max_len)
                    d = abs(ll - float(got[0]))
                    ok = d <= 1e-4 and str(greedy) == str(got[1])
                elif kind == "ppl":
                    ll = 0.0
                    for w in map(make_disjoint_window,
                                 get_rolling_token_windows(token_list=enc(args["arg_0"]),
                                                           prefix_token=eot, max_seq_len=max_len,
                                                           context_len=1)):
                        ll += score(model, list(w[0]), list(w[1]), max_len)[0]
                    d = abs(ll - float(got))
                    ok = d <= 1e-4
                else:  # gen: greedy decoding, HFLM's left truncation, cut at the first "\n"
                    ctx, kw = args["arg_0"], args["arg_1"]
                    ids = enc(ctx)[-(max_len - kw["max_gen_toks"]):]
                    out = []
                    for _ in range(kw["max_gen_toks"]):
                        t = int(np.argmax(model.logits(ids + out)[-1]))
                        if t == eot:
                            break
                        out.append(t)
                        if "\n" in tok.decode(out, skip_special_tokens=False):
                            break
                    want = tok.decode(out, skip_special_tokens=False).split("\n")[0]
                    d = 0.0
                    ok = want == got
                    if not ok:
                        print("generation differs: %r vs headwise %r" % (want, got))
                worst = max(worst, d)
                n += 1
                bad += not ok
    print("%d logged requests recomputed, %d differ, largest |log-likelihood difference| %.2g"
          % (n, bad, worst))
    return n > 0 and bad == 0


def same(a, b):
    def resps(d):
        out = {}
        for p in glob.glob(os.path.join(d, "**", "samples_*.jsonl"), recursive=True):
            out[os.path.basename(p).split("_")[2]] = [json.loads(x)["resps"] for x in open(p)]
        return out
    ra, rb = resps(a), resps(b)
    print("%d tasks, identical: %s" % (len(ra), ra == rb))
    return bool(ra) and ra == rb


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "tasks":
        tasks(*args)
    elif cmd == "verify":
        sys.exit(0 if verify(*args) else 1)
    elif cmd == "same":
        sys.exit(0 if same(*args) else 1)
    else:
        sys.exit("unknown command " + cmd)
