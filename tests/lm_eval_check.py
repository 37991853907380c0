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
    """headwise's logits for rows of ids, via one `headwise ckpt logits` call per batch"""

    def __init__(self, hw, ckpt):
        self.hw, self.ckpt = hw, ckpt
        self.tmp = tempfile.mkdtemp()

    def logits(self, rows):
        p_ids, p_out = os.path.join(self.tmp, "ids.txt"), os.path.join(self.tmp, "out.f32")
        with open(p_ids, "w") as f:
            for ids in rows:
                f.write(" ".join(map(str, ids)) + "\n")
        subprocess.run([self.hw, "ckpt", "logits", self.ckpt, "--ids", p_ids, "--out", p_out],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        flat = np.fromfile(p_out, dtype="<f4").astype(np.float64)
        V = flat.size // sum(len(r) for r in rows)
        out, at = [], 0
        for ids in rows:
            out.append(flat[at * V:(at + len(ids)) * V].reshape(len(ids), V))
            at += len(ids)
        return out


def log_softmax(x):
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def model_input(ctx_enc, cont_enc, max_len):
    """HFLM._loglikelihood_tokens: the row the model sees"""
    return (ctx_enc + cont_enc)[-(max_len + 1):][:-1]


def score(logits, cont_enc):
    lp = log_softmax(logits)[-len(cont_enc):]
    ll = float(sum(lp[i, t] for i, t in enumerate(cont_enc)))
    greedy = all(int(np.argmax(lp[i])) == t for i, t in enumerate(cont_enc))
    return ll, greedy


def logged(samples_dir):
    """(kind, args, logged response) of every request lm_eval logged"""
    for path in sorted(glob.glob(os.path.join(samples_dir, "**", "samples_*.jsonl"),
                                 recursive=True)):
        kind = os.path.basename(path).split("_")[2]
        for line in open(path):
            s = json.loads(line)
            keys = sorted(s["arguments"], key=lambda k: int(k.rsplit("_", 1)[1]))
            for k, resp in zip(keys, s["resps"]):
                yield kind, s["arguments"][k], resp[0]  # logged as strings


def verify(hw, ckpt, tok_path, max_len, samples_dir):
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(tok_path)
    enc = lambda s: tok.encode(s, add_special_tokens=False).ids  # noqa: E731
    eot = tok.token_to_id("<|endoftext|>")
    model, max_len = Model(hw, ckpt), int(max_len)
    jobs = []  # (kind, [(model row, continuation ids)], logged response, args)
    for kind, args, got in logged(samples_dir):
        pairs = []
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
            pairs = [(model_input(ce, ke, max_len), ke)]
        elif kind == "ppl":
            for w in map(make_disjoint_window,
                         get_rolling_token_windows(token_list=enc(args["arg_0"]),
                                                   prefix_token=eot, max_seq_len=max_len,
                                                   context_len=1)):
                pairs.append((model_input(list(w[0]), list(w[1]), max_len), list(w[1])))
        jobs.append((kind, pairs, got, args))
    rows = [r for _, pairs, _, _ in jobs for r, _ in pairs]
    logits = iter(model.logits(rows)) if rows else iter(())
    n = bad = 0
    worst = 0.0
    gens = []
    for kind, pairs, got, args in jobs:
        if kind == "gen":
            gens.append((args, got))
            continue
        res = [score(next(logits), ke) for _, ke in pairs]
        ll = sum(r[0] for r in res)
        d = abs(ll - float(got[0] if kind == "mc" else got))
        ok = d <= 1e-4 and (kind != "mc" or str(res[0][1]) == str(got[1]))
        worst, n, bad = max(worst, d), n + 1, bad + (not ok)
    # generation: greedy decoding of every prompt in lockstep, HFLM's left truncation, the text
    # cut at the first stop string
    state = [(enc(a["arg_0"])[-(max_len - a["arg_1"]["max_gen_toks"]):], [], False)
             for a, _ in gens]
    for _ in range(max([a["arg_1"]["max_gen_toks"] for a, _ in gens] or [0])):
        live = [i for i, (_, _, done) in enumerate(state) if not done]
        if not live:
            break
        outs = model.logits([state[i][0] + state[i][1] for i in live])
        for i, lg in zip(live, outs):
            ids, out, _ = state[i]
            t = int(np.argmax(lg[-1]))
            stop = t == eot
            if not stop:
                out.append(t)
            text = tok.decode(out, skip_special_tokens=False)
            stop = (stop or any(u in text for u in gens[i][0]["arg_1"]["until"]) or
                    len(out) >= gens[i][0]["arg_1"]["max_gen_toks"])
            state[i] = (ids, out, stop)
    for (args, got), (_, out, _) in zip(gens, state):
        want = tok.decode(out, skip_special_tokens=False)
        for u in args["arg_1"]["until"]:
            want = want.split(u)[0]
        n, bad = n + 1, bad + (want != got)
        if want != got:
            print("generation differs: %r vs headwise %r" % (want, got))
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
