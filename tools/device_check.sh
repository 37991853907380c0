#!/bin/sh
# tools/device_check.sh -- every GPU check of headwise in one run, for a machine with one GPU
# (an H200), nvcc and PyTorch but no Open MPI/HDF5/libyaml/jansson/OpenBLAS and no package
# registry. Runs from the repository root:
#
#   sh tools/device_check.sh [OUTDIR]        (default: $OUT, else ./device-out)
#
# Steps, each with its own timeout, all within about 8 minutes, every one run even when an
# earlier one failed: the runtime bundle's environment (. .device/debs/env.sh), nvidia-smi,
# test_ops_cuda, test_attention_cuda (if built), test_titans_cuda, test_rec_cuda, test_gpt_cuda,
# tests/cli_gpu.sh (headwise train
# on the GPU against the CPU, two ranks sharing the GPU, checkpoints across backends, bf16),
# bench/gpu_bench.py (our bf16 GEMMs against
# torch.matmul), the attention benchmark (if there), bench/gpu_train.sh (training against
# PyTorch: tokens/s, MFU, peak memory), then each failed test once more under
# compute-sanitizer --tool memcheck. OUTDIR gets one log per step, summary.txt and figures.json
# (every step's status and time, the tests' check counts and all benchmark figures); nothing
# deeper than OUTDIR itself. Exit status: 0 when every check passed, 1 otherwise.
#
# device-build: the binaries are built on the development machine and carried in .device/:
#
#   sh tools/device_pack.sh --build      then the device call with carry [".device"]
#
# which makes a clean build/cuda with NATIVE=0 (the GPU machine's CPU may lack what
# -march=native picked here), packs the binaries into .device/cuda-build.tar.xz (unpacked below)
# and the runtime bundle into .device/debs. By hand, the same:
#
#   rm -rf build/cuda && make BUILD=build/cuda CUDA=1 NATIVE=0 -j2 build/cuda/headwise \
#       build/cuda/tests/test_ops_cuda build/cuda/tests/test_attention_cuda \
#       build/cuda/tests/test_titans_cuda build/cuda/tests/test_rec_cuda \
#       build/cuda/tests/test_gpt_cuda build/cuda/bench/gpu_bench \
#       build/cuda/bench/gpu_attn_bench
#   ../shared/tools/device-bundle build/cuda/headwise .device/debs   (it links HDF5, libyaml,
#   jansson, PCRE2, Open MPI with mpirun, and OpenBLAS, so its bundle covers every binary)
#
# then carry build/cuda/headwise, build/cuda/tests, build/cuda/bench and .device (build/cuda whole,
# objects and all, is over the 64 MiB carry limit with the bundle).
#
# Overrides: HW_BUILD (build/cuda), HW_DEVICE_BUDGET (seconds, 480), HW_ATTN_BENCH_CMD (the
# attention benchmark's command line; default below).
set -u
out=${1:-${OUT:-./device-out}}
build=${HW_BUILD:-build/cuda}
budget=${HW_DEVICE_BUDGET:-480}
mkdir -p "$out" || { echo "device_check: cannot create $out" >&2; exit 1; }
out=$(cd "$out" && pwd)
t_start=$(date +%s)
steps="$out/steps.tsv" # name rc seconds log
: >"$steps"
failed=""
summary="$out/summary.txt"
: >"$summary"

say() { echo "$*" | tee -a "$summary"; }

# seconds for a step: at most $1, and leave $2 seconds for the steps after it
step_time() {
    now=$(date +%s)
    left=$((budget - (now - t_start) - $2))
    [ "$left" -gt "$1" ] && left=$1
    [ "$left" -lt 10 ] && left=10
    echo "$left"
}

# run NAME TIMEOUT LOG cmd...: one step, its output in LOG, its status in steps.tsv
run_step() {
    name=$1 limit=$2 log=$3
    shift 3
    t0=$(date +%s)
    echo "+ [$name, timeout ${limit}s] $*" >"$log"
    timeout -k 10 "$limit" "$@" >>"$log" 2>&1
    rc=$?
    t1=$(date +%s)
    [ $rc = 124 ] || [ $rc = 137 ] && echo "device_check: $name timed out after ${limit}s" >>"$log"
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$((t1 - t0))" "$(basename "$log")" >>"$steps"
    st=PASS
    [ $rc = 0 ] || st="FAIL (exit $rc)"
    say "$(printf '%-24s %-16s %4ss  %s' "$name" "$st" "$((t1 - t0))" \
        "$(grep -E 'checks,|SKIP|fatal' "$log" | tail -n 2 | tr '\n' ' ' | cut -c1-100)")"
    return $rc
}

# ---- the binaries (tools/device_pack.sh) --------------------------------------------------------
if [ -f .device/cuda-build.tar.xz ]; then
    tar -xJf .device/cuda-build.tar.xz && say "binaries unpacked from .device/cuda-build.tar.xz" ||
        say "warning: .device/cuda-build.tar.xz did not unpack"
fi

# ---- environment ------------------------------------------------------------------------------
# cuDNN and cuBLAS may live only in pip's nvidia-* packages (env.sh adds them too)
pip_libs=""
sp=$(python3 -c 'import site; print(site.getsitepackages()[0])' 2>/dev/null || true)
for d in "$sp"/nvidia/*/lib; do
    [ -d "$d" ] && pip_libs="${pip_libs:+$pip_libs:}$d"
done
# PyTorch runs without the bundle: its Debian libstdc++ is older than the one torch expects
ld_plain="${LD_LIBRARY_PATH:-}${LD_LIBRARY_PATH:+${pip_libs:+:}}$pip_libs"
if [ -f .device/debs/env.sh ]; then
    # env.sh finds its debs through BASH_SOURCE, which sh lacks: name the folder
    HW_DEBS=$(pwd)/.device/debs
    export HW_DEBS
    . .device/debs/env.sh
else
    say "note: .device/debs/env.sh not found: the test binaries may miss OpenBLAS/HDF5/MPI"
    LD_LIBRARY_PATH=$ld_plain
    export LD_LIBRARY_PATH
fi
sanitizer=$(command -v compute-sanitizer || true)
[ -z "$sanitizer" ] && [ -x /usr/local/cuda/bin/compute-sanitizer ] &&
    sanitizer=/usr/local/cuda/bin/compute-sanitizer

say "device_check: $(date -u '+%Y-%m-%dT%H:%M:%SZ'), $(uname -n), out $out, build $build"
{
    nvidia-smi
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.sm,power.limit \
        --format=csv
    echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
    echo "compute-sanitizer: ${sanitizer:-not found}"
    for b in "$build"/tests/test_ops_cuda "$build"/tests/test_attention_cuda "$build"/tests/test_gpt_cuda "$build"/bench/gpu_bench; do
        [ -x "$b" ] && { echo "== ldd $b"; ldd "$b" | grep -E 'not found|cud|blas|mpi|hdf5'; }
    done
} >"$out/nvidia-smi.log" 2>&1
gpu_line=$(grep -m1 -E 'H200|H100|NVIDIA' "$out/nvidia-smi.log" | cut -c1-120)
say "${gpu_line:-nvidia-smi: no NVIDIA GPU listed (see nvidia-smi.log)}"
if grep -q '=> not found' "$out/nvidia-smi.log"; then
    say "warning: missing libraries (see nvidia-smi.log); did the bundle (.device) come along?"
fi

# ---- tests ------------------------------------------------------------------------------------
missing_build() {
    say "$1: $2 not built; on the development machine run the device-build command (head of tools/device_check.sh)"
    printf '%s\t%s\t%s\t%s\n' "$1" "missing" "0" "-" >>"$steps"
    failed="$failed $1"
}

run_test() { # name, reserve for later steps
    bin="$build/tests/$1"
    if [ ! -x "$bin" ]; then
        [ "$1" = test_ops_cuda ] && missing_build "$1" "$bin"
        [ "$1" = test_ops_cuda ] || say "$(printf '%-24s %s' "$1" "not built: skipped")"
        return
    fi
    run_step "$1" "$(step_time 150 "$2")" "$out/$1.log" "$bin" || failed="$failed $1"
}

run_test test_ops_cuda 300
run_test test_attention_cuda 220
run_test test_titans_cuda 200
run_test test_rec_cuda 190
run_test test_gpt_cuda 200
if [ -x "$build/headwise" ]; then
    run_step cli_gpu "$(step_time 240 170)" "$out/cli_gpu.log" sh tests/cli_gpu.sh \
        "$build/headwise" || failed="$failed cli_gpu"
else
    missing_build cli_gpu "$build/headwise"
fi

# ---- benchmarks ---------------------------------------------------------------------------------
if [ -x "$build/bench/gpu_bench" ]; then
    run_step gpu_bench "$(step_time 150 120)" "$out/gpu_bench.log" \
        env LD_LIBRARY_PATH="$ld_plain" python3 bench/gpu_bench.py --bin "$build/bench/gpu_bench" --out "$out/gpu_bench.json" ||
        failed="$failed gpu_bench"
else
    missing_build gpu_bench "$build/bench/gpu_bench"
fi

attn_cmd=${HW_ATTN_BENCH_CMD:-}
if [ -z "$attn_cmd" ]; then
    if [ -f bench/gpu_attn_bench.py ]; then
        attn_cmd="env LD_LIBRARY_PATH=$ld_plain python3 bench/gpu_attn_bench.py --bin $build/bench/gpu_attn_bench --out $out/gpu_attn_bench.json"
    elif [ -x "$build/bench/gpu_attn_bench" ]; then
        attn_cmd="$build/bench/gpu_attn_bench --json $out/gpu_attn_bench.json"
    fi
fi
if [ -n "$attn_cmd" ]; then
    # shellcheck disable=SC2086 # the command line is split on purpose
    run_step gpu_attn_bench "$(step_time 150 60)" "$out/gpu_attn_bench.log" $attn_cmd ||
        failed="$failed gpu_attn_bench"
else
    say "$(printf '%-24s %s' gpu_attn_bench "not there: skipped")"
fi

# headwise against PyTorch training the same GPT on the GPU (GPT-2 124M shape, long context,
# MoH and S2): bench/gpu_train.sh; torch.compile only when time is left for its compilation
if [ -x "$build/headwise" ]; then
    left=$((budget - ($(date +%s) - t_start)))
    comp=0
    [ "$left" -gt 240 ] && comp=1
    run_step gpu_train "$(step_time 220 10)" "$out/gpu_train.log" env PY_LD="$ld_plain" \
        COMPILE=$comp STEPS=20 sh bench/gpu_train.sh "$build/headwise" "$out/gpu_train" ||
        failed="$failed gpu_train"
fi

# ---- memcheck reruns of failed tests ----------------------------------------------------------------
export HW_TEST_QUICK=1 # the tests skip their largest cases under the sanitizer
for t in test_ops_cuda test_attention_cuda test_titans_cuda test_rec_cuda test_gpt_cuda; do
    case " $failed " in *" $t "*) ;; *) continue ;; esac
    [ -x "$build/tests/$t" ] || continue
    if [ -z "$sanitizer" ]; then
        say "$t: compute-sanitizer not found, no memcheck rerun"
        continue
    fi
    run_step "$t.memcheck" "$(step_time 120 5)" "$out/$t.memcheck.log" \
        "$sanitizer" --tool memcheck --leak-check no --error-exitcode 99 "$build/tests/$t"
done

# ---- figures.json -------------------------------------------------------------------------------
LD_LIBRARY_PATH=$ld_plain python3 - "$out" <<'PY' >>"$summary" 2>&1 || echo "device_check: figures.json not written" >>"$summary"
import json, os, re, sys
out = sys.argv[1]
fig = {"steps": [], "tests": {}, "benchmarks": {}}
with open(os.path.join(out, "steps.tsv")) as f:
    for line in f:
        name, rc, secs, log = line.rstrip("\n").split("\t")
        fig["steps"].append({"name": name, "rc": rc, "seconds": int(secs), "log": log})
for name in ("test_ops_cuda", "test_attention_cuda", "test_titans_cuda", "test_rec_cuda",
             "test_gpt_cuda", "cli_gpu", "test_ops_cuda.memcheck", "test_attention_cuda.memcheck",
             "test_titans_cuda.memcheck", "test_rec_cuda.memcheck", "test_gpt_cuda.memcheck"):
    p = os.path.join(out, name + ".log")
    if not os.path.exists(p):
        continue
    text = open(p, errors="replace").read()
    m = re.search(r"(\d+) checks, (\d+) failed", text)
    t = {"checks": int(m.group(1)), "failed": int(m.group(2))} if m else {"summary_line": None}
    t["fail_lines"] = [l for l in text.splitlines() if "FAIL" in l or "fatal" in l][:50]
    m = re.search(r"ERROR SUMMARY: (\d+) error", text)
    if m:
        t["sanitizer_errors"] = int(m.group(1))
    fig["tests"][name] = t
for name in ("gpu_bench", "gpu_attn_bench", "gpu_train/gpu_train"):
    p = os.path.join(out, name + ".json")
    if os.path.exists(p):
        try:
            fig["benchmarks"][name] = json.load(open(p))
        except ValueError as e:
            fig["benchmarks"][name] = {"error": str(e)}
p = os.path.join(out, "nvidia-smi.log")
if os.path.exists(p):
    lines = open(p, errors="replace").read().splitlines()
    for i, l in enumerate(lines):
        if l.startswith("name, driver_version") and i + 1 < len(lines):
            fig["gpu"] = lines[i + 1]
json.dump(fig, open(os.path.join(out, "figures.json"), "w"), indent=2)
print("figures.json written")
PY

t_end=$(date +%s)
if [ -n "$failed" ]; then
    say "device_check: FAILED:$failed ($((t_end - t_start))s; logs in $out)"
    exit 1
fi
say "device_check: all checks passed ($((t_end - t_start))s; logs in $out)"
exit 0
