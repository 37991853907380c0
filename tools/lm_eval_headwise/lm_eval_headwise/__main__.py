"""python -m lm_eval_headwise ARGS: lm_eval's command line with the `headwise` model registered."""
import lm_eval_headwise  # noqa: F401  (registers the model)
from lm_eval.__main__ import cli_evaluate

if __name__ == "__main__":
    cli_evaluate()
