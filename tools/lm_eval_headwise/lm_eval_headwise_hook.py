"""tools/lm_eval_headwise/lm_eval_headwise_hook.py -- imported by lm_eval_headwise_hook.pth at
start-up. When the running program is lm_eval it waits for lm_eval's model registry to be
imported and then registers the headwise model; it imports nothing itself at start-up (the
site directories that lm_eval needs may not be on sys.path yet)."""
import importlib.abc
import importlib.util
import os
import sys


class _RegisterAfterRegistry(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "lm_eval.api.registry":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            sys.modules[name] = module
            __import__("lm_eval_headwise")

        spec.loader.exec_module = exec_module
        return spec


def install():
    prog = os.path.basename(sys.argv[0]) if getattr(sys, "argv", None) else ""
    if prog in ("lm_eval", "lm-eval"):
        sys.meta_path.insert(0, _RegisterAfterRegistry())
