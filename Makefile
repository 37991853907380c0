# headwise -- build, test, demo. `make` builds build/headwise; `make test` and `make demo`
# install missing Debian packages first (apt-get when root, else they print the command).
# Options: CUDA=0 forces a CPU-only build; WERROR=0 drops -Werror; NATIVE=0 drops -march=native.

CC       ?= gcc
PKG      ?= pkg-config
HDF5     ?= hdf5-openmpi
.DEFAULT_GOAL := all
BUILD    ?= build
comma    := ,
WERROR   ?= 1
NATIVE   ?= 1
PYTHON   ?= /usr/bin/python3

DEB_PKGS := build-essential pkg-config libopenmpi-dev openmpi-bin libhdf5-openmpi-dev hdf5-tools \
            libyaml-dev libjansson-dev libpcre2-dev libopenblas-openmp-dev python3-h5py python3-sklearn \
            python3-nltk
BENCH_PKGS := python3-torch python3-venv python3-pip
# tests/test_torch_parity compares against PyTorch (skipped, saying so, where torch is missing)
TEST_PKGS  := python3-torch python3-venv

NVCC      ?= $(shell command -v nvcc 2>/dev/null)
CUDA      ?= $(if $(NVCC),1,0)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CUDNN_H   := $(firstword $(wildcard $(CUDA_HOME)/include/cudnn.h /usr/include/cudnn.h /usr/include/*/cudnn.h))

WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wpointer-arith \
            -Wno-unused-parameter
ifeq ($(WERROR),1)
WARN     += -Werror
endif
OPT      ?= -O3 $(if $(filter 1,$(NATIVE)),-march=native,)
# Flags from pkg-config are taken lazily so that `make deps` works before the packages exist.
PKG_CFLAGS = $(shell $(PKG) --cflags $(HDF5) yaml-0.1 jansson libpcre2-8 ompi-c 2>/dev/null)
PKG_LIBS   = $(shell $(PKG) --libs $(HDF5) yaml-0.1 jansson libpcre2-8 ompi-c 2>/dev/null)
BLAS_INC   = $(firstword $(wildcard /usr/include/x86_64-linux-gnu/openblas-openmp /usr/include/*/openblas-openmp /usr/include/openblas))
CFLAGS   += -std=c11 $(OPT) -g -fopenmp $(WARN) -MMD -MP $(PKG_CFLAGS) $(if $(BLAS_INC),-I$(BLAS_INC),)
# The OpenMP build of OpenBLAS runs single-threaded inside our own parallel regions (attention
# tiles), and shares one thread pool with them; link it explicitly rather than the pthread default.
BLAS_DIR   = $(firstword $(wildcard /usr/lib/x86_64-linux-gnu/openblas-openmp /usr/lib/*/openblas-openmp))
LDLIBS   += $(PKG_LIBS) $(if $(BLAS_DIR),-L$(BLAS_DIR) -Wl$(comma)-rpath$(comma)$(BLAS_DIR),) -lopenblas -lm -fopenmp

LIB_DIRS := core ops dist datasets model config ckpt train eval report
LIB_SRCS := $(sort $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.c)))
CLI_SRCS := $(wildcard cli/*.c)
TEST_SRCS := $(wildcard tests/test_*.c tests/mpi_*.c)

LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
ifeq ($(CUDA),1)
include ops/cuda.mk
endif
CLI_OBJS := $(CLI_SRCS:%.c=$(BUILD)/obj/%.o)
TEST_BINS := $(TEST_SRCS:tests/%.c=$(BUILD)/tests/%)
LIBHW    := $(BUILD)/libheadwise.a

.PHONY: all deps test-deps deps-check test check demo bench bench-torch113 bench-tokenizer bench-attn bench-bf16 bench-recompute clean format format-check docs help FORCE
all: deps-check $(BUILD)/headwise

help:
	@echo "make            build build/headwise"
	@echo "make deps       install the Debian packages headwise needs"
	@echo "make test       install deps, build, run every test (ends with 'N passed, N failed')"
	@echo "make check      the tests under ASan + UBSan (build/san)"
	@echo "make demo       install deps, build, and run the demo job on built-in data"
	@echo "make bench      throughput vs PyTorch 2.x (PyPI, interleaved), MFU vs measured sgemm peak"
	@echo "make bench-tokenizer  HF tokenizer.json encoding vs the tokenizers library (PyPI)"
	@echo "make bench-bf16 train.precision bf16 vs fp32: loss curve over 300 steps, tokens/s"
	@echo "make bench-recompute  train.recompute block vs none: peak memory and tokens/s"

# ---------------------------------------------------------------------------------------------
# dependencies
deps:
	@BENCH=$(BENCH) sh tools/deps.sh $(DEB_PKGS) $(if $(BENCH),$(BENCH_PKGS),)

test-deps:
	@BENCH=$(BENCH) sh tools/deps.sh $(DEB_PKGS) $(TEST_PKGS) $(if $(BENCH),$(BENCH_PKGS),)

deps-check:
	@sh tools/deps.sh --check $(DEB_PKGS) || { \
	  echo "hint: run 'make deps' (apt-get as root) or 'make test', which installs them"; exit 1; }
ifeq ($(CUDA),1)
	@echo "✓ CUDA toolkit: $(NVCC) (GPU kernels are optional; this build runs the CPU backend)"
	@if [ -n "$(CUDNN_H)" ]; then echo "✓ cuDNN: $(CUDNN_H)"; else echo "✗ cuDNN headers not found"; fi
else
	@echo "✗ CUDA off (nvcc not found or CUDA=0): CPU build"
endif

# ---------------------------------------------------------------------------------------------
# build
$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# The source revision recorded in eval results (eval/eval.c HW_GIT_REV): a stamp that changes
# only when HEAD does, so eval.o is rebuilt exactly then.
GIT_REV := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)$(shell git diff --quiet HEAD 2>/dev/null || echo -dirty)
$(BUILD)/git-rev: FORCE
	@mkdir -p $(dir $@)
	@echo '$(GIT_REV)' | cmp -s - $@ || echo '$(GIT_REV)' >$@
$(BUILD)/obj/eval/eval.o: $(BUILD)/git-rev
$(BUILD)/obj/eval/eval.o: CFLAGS += -DHW_GIT_REV='"$(GIT_REV)"'
FORCE:

$(LIBHW): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/headwise: $(CLI_OBJS) $(LIBHW)
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJS) $(LIBHW) $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(LIBHW)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIBHW) $(LDLIBS)

-include $(LIB_OBJS:.o=.d) $(CLI_OBJS:.o=.d) $(TEST_BINS:=.d)

# ---------------------------------------------------------------------------------------------
# tests and demo
# the ecosystem tests' Python venv is made while the build compiles (tools/ml_venv.sh)
test: test-deps
	@mkdir -p $(BUILD); \
	  { sh tools/ml_venv.sh $(BUILD)/ml-venv >/dev/null 2>$(BUILD)/ml-venv.log || \
	    echo "note: $$(cat $(BUILD)/ml-venv.log); the ecosystem tests will say SKIP"; } & \
	  $(MAKE) --no-print-directory $(BUILD)/headwise tests-bin; rc=$$?; wait; exit $$rc
	@BUILD=$(BUILD) sh tests/run.sh

tests-bin: $(TEST_BINS)

check: test-deps
	@$(MAKE) --no-print-directory BUILD=build/san \
	  OPT="-O1 -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
	  build/san/headwise tests-bin
	@BUILD=build/san HW_SANITIZE=1 ASAN_OPTIONS=detect_leaks=1 sh tests/run.sh

demo: deps
	@$(MAKE) --no-print-directory $(BUILD)/headwise
	@sh tools/demo.sh $(BUILD)/headwise

# attention micro-benchmarks (MoH head skipping, S2 sparsity, S2 KV cache): bench/README.md
$(BUILD)/bench/attn_bench: bench/attn_bench.c $(LIBHW)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< -o $@ $(LIBHW) $(LDFLAGS) $(LDLIBS)

# Titans memory module throughput (float path): docs/titans.md
$(BUILD)/bench/titans_bench: bench/titans_bench.c $(LIBHW)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< -o $@ $(LIBHW) $(LDFLAGS) $(LDLIBS)

# Titans context-parallel chain, idle time blocking vs pipelined (MPI): bench/titans_cp_pipeline.sh
$(BUILD)/bench/titans_cp_pipeline: bench/titans_cp_pipeline.c $(LIBHW)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< -o $@ $(LIBHW) $(LDFLAGS) $(LDLIBS)

# Titans associative-recall experiment (MAG/MAL vs sliding window only): docs/titans.md
$(BUILD)/bench/titans_recall: bench/titans_recall.c $(LIBHW)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< -o $@ $(LIBHW) $(LDFLAGS) $(LDLIBS)

# GPU benchmarks (CUDA=1): GEMMs against torch.matmul, attention against PyTorch's SDPA
include bench/gpu.mk
include bench/gpu_attn.mk

bench-attn: $(BUILD)/bench/attn_bench
	@$(BUILD)/bench/attn_bench moh 1024
	@$(BUILD)/bench/attn_bench s2 4096
	@$(BUILD)/bench/attn_bench kv 4096

# headwise against PyTorch 2.x from PyPI (a venv under $(BUILD), made on first use), interleaved:
# the bench model, the GPT-2 small shape, long context and attention alone (bench/compare.sh);
# bench-torch113: the bench model against Debian's PyTorch 1.13 (bench/run.sh)
bench:
	@$(MAKE) --no-print-directory deps BENCH=1
	@$(MAKE) --no-print-directory $(BUILD)/headwise $(BUILD)/bench/attn_bench
	@sh bench/compare.sh $(BUILD)/headwise

# the HF tokenizer encoder against the tokenizers library (bench/tokenizer_bench.sh)
bench-tokenizer:
	@$(MAKE) --no-print-directory $(BUILD)/headwise
	@sh bench/tokenizer_bench.sh $(BUILD)/headwise

# train.precision bf16 against fp32 on the demo model: loss curve and speed (bench/bf16_curve.sh)
bench-bf16:
	@$(MAKE) --no-print-directory $(BUILD)/headwise
	@sh bench/bf16_curve.sh $(BUILD)/headwise

# train.recompute block against none on the benchmark GPT (bench/recompute.sh)
bench-recompute:
	@$(MAKE) --no-print-directory $(BUILD)/headwise
	@sh bench/recompute.sh $(BUILD)/headwise

bench-torch113:
	@$(MAKE) --no-print-directory deps BENCH=1
	@$(MAKE) --no-print-directory $(BUILD)/headwise
	@sh bench/run.sh $(BUILD)/headwise

# ---------------------------------------------------------------------------------------------
# fuzzing (docs/fuzzing.md): `make fuzz [FUZZ_SECONDS=600] [FUZZ_TARGETS="cfg bpe"]` builds
# $(BUILD)/fuzz/fuzz_<target> (clang, libFuzzer + ASan + UBSan; the readers' sources are
# compiled in) and runs each in turn (fuzz/run.sh: crashes go to $(BUILD)/fuzz/crash-<target>-*
# and are classified; fails on a crash in headwise code). Needs clang and its fuzzer runtime:
# apt-get install -y clang libclang-rt-14-dev. The seeds and crash inputs also run in
# `make test` (tests/test_fuzz_regress.c).
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_FLAGS   ?= -timeout=30
FUZZ_TARGETS ?= $(patsubst fuzz/fuzz_%.c,%,$(filter-out fuzz/fuzz_entries.c,$(wildcard fuzz/fuzz_*.c)))
FUZZ_LIB     := core/check.c core/fsutil.c core/log.c core/rng.c core/cfg.c core/interrupt.c \
                core/h5lock.c config/config.c \
                model/model_cfg.c train/train_cfg.c datasets/data_cfg.c dist/dist_cfg.c \
                eval/eval_cfg.c datasets/bpe.c datasets/bpe_hf.c datasets/prepare.c \
                datasets/chat.c datasets/multifc.c datasets/rolemrc.c datasets/shards.c \
                datasets/synth.c ckpt/ckpt.c ckpt/safetensors.c dist/dist.c dist/watchdog.c \
                fuzz/fuzz_entries.c
FUZZ_CFLAGS   = -std=c11 -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
                -fno-sanitize-recover=undefined -MMD -MP $(PKG_CFLAGS)
FUZZ_OBJS    := $(FUZZ_LIB:%.c=$(BUILD)/fuzz/obj/%.o)
.PHONY: fuzz
fuzz: $(FUZZ_TARGETS:%=$(BUILD)/fuzz/fuzz_%)
	@sh fuzz/run.sh $(BUILD) $(FUZZ_SECONDS) "$(FUZZ_TARGETS)" "$(FUZZ_FLAGS)"

$(BUILD)/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(BUILD)/fuzz/fuzz_%: fuzz/fuzz_%.c $(FUZZ_OBJS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_OBJS) $(PKG_LIBS) -lm

-include $(FUZZ_OBJS:.o=.d)
.SECONDARY: $(FUZZ_OBJS)

docs: $(BUILD)/headwise
	$(BUILD)/headwise config docs > docs/config.md

format:
	clang-format -i $(wildcard */*.c */*.h)

format-check:
	clang-format --dry-run --Werror $(wildcard */*.c */*.h)

clean:
	rm -rf build
