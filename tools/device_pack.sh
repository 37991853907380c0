#!/bin/sh
# tools/device_pack.sh -- put everything the GPU machine needs into .device/ (ignored by git), so
# the device call carries just [".device"] (the carry limit is 64 MiB):
#   .device/cuda-build.tar.xz  the CUDA build's binaries: headwise, the GPU tests and benchmarks.
#                              They share most of their bytes (every one holds the kernels), so
#                              xz takes about 35 MB to about 6 MB.
#   .device/debs/              the Debian runtime bundle (../shared/tools/device-bundle, ~25 MB).
# tools/device_check.sh unpacks the archive when it finds it. Usage, from the repository root:
#   sh tools/device_pack.sh [--build]
# --build first makes the device build (a clean build/cuda, NATIVE=0, all GPU targets; about 10
# minutes on 2 cores). Then run on the GPU machine: sh tools/device_check.sh $OUT
set -eu
targets="build/cuda/headwise build/cuda/tests/test_ops_cuda build/cuda/tests/test_attention_cuda
    build/cuda/tests/test_titans_cuda build/cuda/tests/test_rec_cuda build/cuda/tests/test_gpt_cuda
    build/cuda/bench/gpu_bench build/cuda/bench/gpu_attn_bench"
if [ "${1:-}" = --build ]; then
    rm -rf build/cuda
    # shellcheck disable=SC2086 # one target a word
    make BUILD=build/cuda CUDA=1 NATIVE=0 -j2 $targets
fi
mkdir -p .device
have=""
for t in $targets; do
    if [ -x "$t" ]; then have="$have $t"; else echo "device_pack: $t not built (skipped)"; fi
done
[ -n "$have" ] || { echo "device_pack: nothing built; run with --build" >&2; exit 1; }
# shellcheck disable=SC2086
tar -cJf .device/cuda-build.tar.xz $have build/cuda/git-rev 2>/dev/null ||
    tar -cJf .device/cuda-build.tar.xz $have
../shared/tools/device-bundle build/cuda/headwise .device/debs
du -sh .device/cuda-build.tar.xz .device/debs | sed "s/^/device_pack: /"
du -sh .device | sed "s/^/device_pack: in all /"
echo "device_pack: run with carry [\".device\"]: sh tools/device_check.sh \$OUT"
