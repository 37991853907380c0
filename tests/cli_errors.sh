#!/bin/sh
# tests/cli_errors.sh -- bad input through the real binary: every tests/bad_configs/bad_*.yaml
# gives exit 2 and its exact one-line message; bad overrides, missing/truncated/foreign data
# shards, corrupted and mismatched checkpoints, and NaN losses each give one clear line and a
# non-zero exit, while earlier checkpoints stay byte-identical.
. tests/lib.sh
for f in tests/bad_configs/bad_*.yaml; do
    want=$(sed -n '1s/^# expect: //p' "$f" | sed "s|{file}|$f|g; s|{dir}|tests/bad_configs|g")
    expect_exit 2 "$(basename "$f")" "$HW" train "$f"
    n_checks=$((n_checks + 1))
    if [ "$(cat "$T/err")" = "$want" ]; then echo "ok   exact message"; else
        echo "FAIL message: got '$(cat "$T/err")' want '$want'"
        n_failed=$((n_failed + 1))
    fi
done
expect_exit 2 "override: unknown key" "$HW" train configs/tiny.yaml model.d_modl=64
err_has "<override 1>:1:1: error: unknown key 'model.d_modl' (did you mean 'model.d_model'?)"
expect_exit 2 "override: wrong type" "$HW" train configs/tiny.yaml train.steps=ten
err_has "train.steps: expected an integer, got 'ten'"
expect_exit 2 "unknown command" "$HW" trian configs/tiny.yaml
expect_exit 2 "data without a subcommand" "$HW" data --help
err_has "usage: headwise data prepare|tokenize|synth|csft-score"
# config show parses and prints without starting MPI; under a launcher only rank 0 prints
expect_exit 0 "config show" "$HW" config show configs/tiny.yaml
ok "  prints the resolved config" grep -q "d_model: 32" "$T/out"
expect_exit 0 "config show as rank 1 of a launcher" env OMPI_COMM_WORLD_RANK=1 "$HW" config show configs/tiny.yaml
ok "  rank 1 prints nothing" test ! -s "$T/out"
expect_exit 2 "config without data.train" "$HW" train configs/tiny.yaml data.train=""
err_has "data.train: required for training"

D=$T/data
prepare_tiny "$D"
set -- configs/tiny.yaml data.train="$D/train.h5" data.val="$D/val.h5" train.steps=4 run.ckpt_every=2 run.keep=5
# data shards
expect_exit 1 "missing shard" "$HW" train "$@" data.train="$T/nope.h5" run.dir="$T/r0"
err_has "$T/nope.h5: cannot open: No such file or directory"
head -c 3000 "$D/train.h5" >"$T/trunc.h5"
expect_exit 1 "truncated shard" "$HW" train "$@" data.train="$T/trunc.h5" run.dir="$T/r0"
err_has "$T/trunc.h5: not a readable HDF5 token shard (truncated or corrupt)"
cp "$D/tokenizer.json" "$T/text.h5"
expect_exit 1 "a shard that is not HDF5" "$HW" train "$@" data.train="$T/text.h5" run.dir="$T/r0"
err_has "$T/text.h5: not a readable HDF5 token shard"

# every shard a run opens is checked against the model's vocabulary at open: a validation shard
# from a larger tokenizer used to overflow the heap in the embedding (exit 139) or give a wrong
# val_loss
"$HW" data prepare --synthetic --bytes 50000 --vocab 400 --out "$T/d400" >/dev/null
expect_exit 1 "validation shard from a larger vocabulary" "$HW" train "$@" data.val="$T/d400/val.h5" run.dir="$T/rv"
err_has "data.val: $T/d400/val.h5: token "
err_has "is outside the vocabulary of 300 (the model's 300, the shard's 400)"
ok "nothing written" test ! -e "$T/rv/latest"
# a backend that cannot run the model is refused in one line before anything is written: a
# CPU-only build has no CUDA backend and a CUDA build on a machine without a GPU has no device
# (this test runs where there is no GPU; tests/cli_gpu.sh runs the same model on one)
one_line() { ok "one line on stderr" test "$(wc -l <"$T/err")" -eq 1; }
expect_exit 2 "train: run.backend=cuda for a Titans memory model" "$HW" train "$@" run.dir="$T/rb" run.backend=cuda "model.memory.layers=[mal]"
err_has ":1:13: error: run.backend: "
ok "names the missing build or device" grep -qE "no CUDA backend|no CUDA device" "$T/err"
one_line
ok "nothing written" test ! -e "$T/rb/latest"
expect_exit 2 "train: unknown backend" "$HW" train "$@" run.dir="$T/rb" run.backend=tpu
err_has "run.backend: expected one of"
# a good run to corrupt
expect_exit 0 "train 4 steps" "$HW" train "$@" run.dir="$T/r"
# every numeric flag is parsed in full: one line naming the flag, exit 2, never a crash (issue 17
# item 3: --val-frac nan used to segfault; atoi/atof took "12x" as 12 and "abc" as 0)
badflag() { # description, the flag that must be named, command...
    d=$1 flag=$2
    shift 2
    expect_exit 2 "$d" "$@"
    err_has "$flag: expected"
    one_line
}
badflag "prepare --val-frac nan" --val-frac "$HW" data prepare --synthetic --out "$T/bf" --val-frac nan
badflag "prepare --vocab 12x" --vocab "$HW" data prepare --synthetic --out "$T/bf" --vocab 12x
badflag "prepare --seed 1.5" --seed "$HW" data prepare --synthetic --out "$T/bf" --seed 1.5
badflag "prepare --bytes 0" --bytes "$HW" data prepare --synthetic --out "$T/bf" --bytes 0
badflag "synth --bytes -5" --bytes "$HW" data synth --out "$T/bf.txt" --bytes -5
badflag "synth --seed ''" --seed "$HW" data synth --out "$T/bf.txt" --seed ""
badflag "sample --tokens abc" --tokens "$HW" sample "$T/r" --tokens abc
badflag "sample --temperature inf" --temperature "$HW" sample "$T/r" --temperature inf
badflag "sample --top-k -1" --top-k "$HW" sample "$T/r" --top-k -1
badflag "sample --seed 2^70" --seed "$HW" sample "$T/r" --seed 1180591620717411303424
badflag "sample --pasta 0" --pasta "$HW" sample "$T/r" --chat --pasta 0
badflag "csft-score --layer x" --layer "$HW" data csft-score --ckpt "$T/r" --input "$T/none.jsonl" --out "$T/cs.jsonl" --layer x
badflag "csft-score --beta nan" --beta "$HW" data csft-score --ckpt "$T/r" --input "$T/none.jsonl" --out "$T/cs.jsonl" --beta nan
ok "no output written for a refused flag" test ! -e "$T/bf" -a ! -e "$T/bf.txt" -a ! -e "$T/cs.jsonl"
# a MultiFC file with a header and no claims is an error naming the file (it was SIGFPE in the
# classifier and an internal assertion in eval)
printf 'claimID,claim,label\n' >"$T/mfc_empty.csv"
expect_exit 1 "classify on a header-only MultiFC file" "$HW" train configs/tiny.yaml train.task=classify \
    data.multifc="$T/mfc_empty.csv" train.init_from="$T/r/ckpt_00000004.h5" train.steps=4 run.dir="$T/cls0"
err_has "$T/mfc_empty.csv: error: no usable claims"
expect_exit 1 "eval multifc on a header-only file" "$HW" eval --ckpt "$T/r" --tasks multifc \
    --multifc-data "$T/mfc_empty.csv" --output "$T/ev0"
err_has "$T/mfc_empty.csv: error: no usable claims"
printf '\n' >"$T/rolemrc_empty.jsonl"
expect_exit 1 "eval rolemrc on an empty file" "$HW" eval --ckpt "$T/r" --tasks rolemrc \
    --rolemrc-data "$T/rolemrc_empty.jsonl" --output "$T/ev0"
err_has "$T/rolemrc_empty.jsonl: error: no examples"
if nvidia-smi -L >/dev/null 2>&1; then
    echo "skip eval/sample on run.backend=cuda refusals: this machine has a GPU"
    if command -v mpirun >/dev/null 2>&1; then
        expect_exit 2 "train: run.backend=cuda on 2 ranks" env OMPI_ALLOW_RUN_AS_ROOT=1 \
            OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --oversubscribe -np 2 "$HW" train "$@" \
            run.dir="$T/rb2" run.backend=cuda
        err_has "the cuda backend trains on one rank for now"
    fi
else
    expect_exit 2 "eval: run.backend cuda without a GPU" "$HW" eval --ckpt "$T/r" --tasks perplexity \
        --perplexity-data "$D/val.h5" --output "$T/ev" run.backend=cuda
    err_has ":1:13: error: run.backend: "
    ok "names the missing build or device" grep -qE "no CUDA backend|no CUDA device" "$T/err"
    one_line
    expect_exit 2 "sample --backend cuda without a GPU" "$HW" sample "$T/r" --tokens 4 --backend cuda
    ok "names the missing build or device" grep -qE "no CUDA backend|no CUDA device" "$T/err"
fi
# a FIFO given as the config (or as its base) is refused, never waited on
mkfifo "$T/cfg.fifo"
expect_exit 2 "train with a FIFO as the config" timeout 20 "$HW" train "$T/cfg.fifo"
err_has "$T/cfg.fifo: error: cannot open: not a regular file"
# a FIFO given as a checkpoint is refused, never waited on
mkfifo "$T/fifo.h5"
expect_exit 1 "ckpt verify of a FIFO" timeout 20 "$HW" ckpt verify "$T/fifo.h5"
err_has "$T/fifo.h5: not a regular file"
expect_exit 1 "eval of a FIFO checkpoint" timeout 20 "$HW" eval --ckpt "$T/fifo.h5" --tasks perplexity \
    --perplexity-data "$D/val.h5" --output "$T/evf"
err_has "$T/fifo.h5: not a regular file"
sums() { md5sum "$T"/r/ckpt_*.h5 "$T/r/latest" "$T/r/config.yaml" "$T/r/tokenizer.json" "$T/r/metrics.jsonl"; }
sums >"$T/sums.before"
expect_exit 2 "resume with another model shape" "$HW" train "$@" run.dir="$T/r" model.d_model=64 train.steps=6
err_has "checkpoint model 'd_model=32 n_layers=2"
err_has "does not match the config's model 'd_model=64"
prepare_tiny_other() { "$HW" data prepare --synthetic --bytes 100000 --vocab 280 --out "$1" >/dev/null; }
prepare_tiny_other "$T/data2"
expect_exit 1 "resume with another tokenizer" "$HW" train "$@" run.dir="$T/r" data.train="$T/data2/train.h5" data.val="" train.steps=6
err_has "checkpoint tokenizer (vocab 300) differs from the run's tokenizer (vocab 280)"
sums >"$T/sums.after"
ok "failed resumes left the checkpoints, config.yaml, tokenizer.json and metrics untouched" cmp -s "$T/sums.before" "$T/sums.after"

# corrupted checkpoints
cp "$T/r/ckpt_00000004.h5" "$T/flip.h5"
size=$(wc -c <"$T/flip.h5")
pos=$((size * 3 / 5))
byte=$(od -An -tu1 -j "$pos" -N1 "$T/flip.h5" | tr -d ' ')
printf "$(printf '\\%03o' $((byte ^ 16)))" | dd of="$T/flip.h5" bs=1 seek="$pos" conv=notrunc 2>/dev/null
expect_exit 1 "ckpt verify: bit flip" "$HW" ckpt verify "$T/flip.h5"
ok "bit flip reported as corruption" grep -qE "checksum mismatch|corrupt" "$T/err"
head -c $((size / 2)) "$T/r/ckpt_00000004.h5" >"$T/half.h5"
expect_exit 1 "ckpt verify: truncated" "$HW" ckpt verify "$T/half.h5"
err_has "$T/half.h5: not a readable HDF5 file (truncated or corrupt)"
expect_exit 1 "ckpt info: missing" "$HW" ckpt info "$T/none.h5"
err_has "$T/none.h5: cannot open: No such file or directory"
expect_exit 1 "sample from a truncated checkpoint" "$HW" sample "$T/half.h5"
# resume when the latest checkpoint is truncated: a clear error, the older one untouched
cp -r "$T/r" "$T/r2"
head -c $((size / 2)) "$T/r/ckpt_00000004.h5" >"$T/r2/ckpt_00000004.h5"
md5sum "$T/r2/ckpt_00000002.h5" >"$T/s2.before"
expect_exit 1 "resume from a truncated latest checkpoint" "$HW" train "$@" run.dir="$T/r2" train.steps=6
err_has "$T/r2/ckpt_00000004.h5: not a readable HDF5 file (truncated or corrupt)"
ok "older checkpoint untouched" md5sum -c --quiet "$T/s2.before"

# NaN loss: stop with a message, never save the poisoned state
HW_FAULT_NAN_STEP=3 expect_exit 3 "NaN loss" "$HW" train "$@" run.dir="$T/nan" run.ckpt_every=1
unset HW_FAULT_NAN_STEP
err_has "step 3: loss is NaN; stopping without saving a checkpoint (last good checkpoint: $T/nan/ckpt_00000002.h5)"
ok "no checkpoint for the NaN step" test ! -e "$T/nan/ckpt_00000003.h5"
ok "step 2 checkpoint kept" test -f "$T/nan/ckpt_00000002.h5"
finish
