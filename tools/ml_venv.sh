#!/bin/sh
# tools/ml_venv.sh DIR -- the Python environment of the ecosystem tests (tests/cli_hf_*.sh,
# tests/cli_lm_eval.sh): a venv at DIR made by Debian's /usr/bin/python3 with its site packages
# visible (python3-torch 1.13, numpy, scikit-learn, nltk from Debian), plus from PyPI
# transformers, safetensors, tokenizers and lm-eval 0.4.5 with the headwise model
# (tools/lm_eval_headwise). The pins keep pip from replacing Debian's torch and numpy 1.x
# (peft wants torch>=1.13.0, which Debian's 1.13.0a0 does not satisfy as a version, so lm-eval
# and peft are installed without their dependencies and the rest listed here). Idempotent: an
# existing working venv is kept. Prints the venv's python on success; on failure prints the
# reason on stderr and exits 1 (the tests then say SKIP). `make test` runs it.
dir=${1:?usage: tools/ml_venv.sh DIR}
ok() { "$dir/bin/python" -c "import lm_eval_headwise, lm_eval.evaluator, transformers, safetensors, tokenizers" 2>/dev/null; }
if [ -x "$dir/bin/lm_eval" ] && ok; then
    echo "$dir/bin/python"
    exit 0
fi
here=$(cd "$(dirname "$0")/.." && pwd)
log=$(mktemp)
cons=$(mktemp)
printf 'numpy<2\ntorch<2\npyarrow<18\n' >"$cons"
rm -rf "$dir"
{ /usr/bin/python3 -m venv --system-site-packages "$dir" &&
    timeout 400 "$dir/bin/pip" install --quiet --no-deps "lm-eval==0.4.5" "peft==0.13.2" &&
    timeout 400 "$dir/bin/pip" install --quiet -c "$cons" "accelerate<1.0" \
        "transformers>=4.40,<4.47" safetensors evaluate "datasets<4" jsonlines numexpr pybind11 \
        pytablewriter rouge-score sacrebleu sqlitedict tqdm-multiprocess zstandard dill \
        word2number more-itertools psutil jinja2 &&
    "$dir/bin/pip" install --quiet --no-build-isolation --no-deps "$here/tools/lm_eval_headwise"; } \
    >"$log" 2>&1
rm -rf "$here/tools/lm_eval_headwise/build" "$here"/tools/lm_eval_headwise/*.egg-info "$cons"
if ok; then
    rm -f "$log"
    echo "$dir/bin/python"
    exit 0
fi
echo "tools/ml_venv.sh: could not make $dir: $(tail -1 "$log")" >&2
rm -f "$log"
exit 1
