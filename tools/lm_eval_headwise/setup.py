"""tools/lm_eval_headwise/setup.py -- installs lm_eval_headwise_hook.pth beside the package, so
that `lm_eval --model headwise` finds the model (the hook imports the package only when the
running program is lm_eval)."""
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithHook(build_py):
    def run(self):
        super().run()
        here = os.path.dirname(os.path.abspath(__file__))
        shutil.copy(os.path.join(here, "lm_eval_headwise_hook.pth"), self.build_lib)


setup(cmdclass={"build_py": BuildWithHook})
