"""tools/lm_eval_headwise -- a `headwise` model for lm-evaluation-harness (lm_eval 0.4).

    lm_eval --model headwise --model_args ckpt=runs/sh1 --tasks lambada_openai
    lm_eval --model headwise --model_args ckpt=runs/sh1,launcher="mpirun -np 4" --tasks ...

The model starts `headwise eval --serve CKPT` once and sends it each batch of requests as one
JSON line (eval/serve.h documents the protocol); headwise computes them with HFLM's semantics
(the context/continuation split, left truncation, rolling windows, greedy decoding to a stop
string), under mpirun when a launcher is given. model_args:
  ckpt      checkpoint file or run directory (required)
  headwise  the binary (default: $HEADWISE, else `headwise` on PATH, else build/headwise)
  launcher  a command put in front, e.g. "mpirun -np 4" (default: none)
  chunk     requests per line (default 256)
Importing the package registers the model; `pip install tools/lm_eval_headwise` also installs a
.pth hook so that the plain `lm_eval` command sees it, and `python -m lm_eval_headwise ...` is
lm_eval's command line with the model registered."""
import json
import os
import shlex
import shutil
import subprocess

__all__ = ["HeadwiseLM"]

try:
    from lm_eval.api.model import LM
    from lm_eval.api.registry import register_model
except ImportError:  # lm_eval is not installed: nothing to register
    LM = object

    def register_model(*_names):
        return lambda cls: cls


def _binary(explicit):
    if explicit:
        return explicit
    if os.environ.get("HEADWISE"):
        return os.environ["HEADWISE"]
    return shutil.which("headwise") or "build/headwise"


@register_model("headwise")
class HeadwiseLM(LM):
    def __init__(self, ckpt=None, headwise=None, launcher="", chunk=256, **_ignored):
        super().__init__()
        if not ckpt:
            raise ValueError("model_args: ckpt=CHECKPOINT (a file or run directory) is required")
        cmd = shlex.split(launcher or "") + [_binary(headwise), "eval", "--serve", str(ckpt)]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True, encoding="utf-8", bufsize=1)
        self._next_id = 0
        self._chunk = int(chunk)
        info = self._call("info", None)
        self.max_length = info["max_length"]
        self.checkpoint = info["checkpoint"]

    def _call(self, kind, requests):
        self._next_id += 1
        line = {"id": self._next_id, "type": kind}
        if requests is not None:
            line["requests"] = requests
        self._proc.stdin.write(json.dumps(line, ensure_ascii=False) + "\n")
        self._proc.stdin.flush()
        answer = self._proc.stdout.readline()
        if not answer:
            raise RuntimeError("headwise eval --serve exited (code %s); see its stderr"
                               % self._proc.poll())
        answer = json.loads(answer)
        if answer.get("id") != self._next_id:
            raise RuntimeError("headwise answered request %s, expected %s"
                               % (answer.get("id"), self._next_id))
        if "error" in answer:
            raise RuntimeError("headwise: " + answer["error"])
        return answer if requests is None else answer["results"]

    def _batched(self, kind, args):
        out = []
        for i in range(0, len(args), self._chunk):
            out.extend(self._call(kind, args[i:i + self._chunk]))
        return out

    def loglikelihood(self, requests, disable_tqdm=False):
        res = self._batched("loglikelihood", [list(r.args) for r in requests])
        return [(float(ll), bool(g)) for ll, g in res]

    def loglikelihood_rolling(self, requests, disable_tqdm=False):
        return [float(x) for x in self._batched("loglikelihood_rolling",
                                                [r.args[0] for r in requests])]

    def generate_until(self, requests, disable_tqdm=False):
        args = []
        for r in requests:
            ctx, kw = r.args
            kw = dict(kw or {})
            if isinstance(kw.get("until"), str):
                kw["until"] = [kw["until"]]
            args.append([ctx, {k: kw[k] for k in ("until", "max_gen_toks", "do_sample")
                               if k in kw}])
        return self._batched("generate_until", args)

    def __del__(self):
        proc = getattr(self, "_proc", None)
        if proc and proc.poll() is None:
            proc.stdin.close()
            proc.wait(timeout=60)
