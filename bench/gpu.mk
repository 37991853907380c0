# bench/gpu.mk -- the GPU GEMM benchmark (bench/gpu_bench.c; bench/gpu_bench.py compares it with
# torch.matmul). Included by the Makefile after ops/cuda.mk; only does something when CUDA=1:
#   make BUILD=build/cuda CUDA=1 NATIVE=0 build/cuda/bench/gpu_bench
# It links only what it uses (the CUDA context, the GEMMs and core/check.o) with the CUDA
# libraries, so on a GPU machine it needs none of the bundled MPI/HDF5/OpenBLAS libraries.
ifeq ($(CUDA),1)
GPU_BENCH_OBJS := $(BUILD)/obj/ops/matmul_cuda.cu.o $(BUILD)/obj/ops/cuda_ctx.cu.o \
                  $(BUILD)/obj/core/check.o
GPU_BENCH_LIBS := -L$(CUDA_LIBDIR) -Wl,-rpath,$(CUDA_LIBDIR) -lcudnn -lcublasLt -lcublas -lcudart \
                  -lstdc++ -lm

$(BUILD)/bench/gpu_bench: bench/gpu_bench.c $(GPU_BENCH_OBJS)
	@mkdir -p $(dir $@)
	$(CC) -std=c11 $(OPT) -g $(WARN) -MMD -MP -DHW_CUDA -I$(CUDA_HOME)/include -o $@ $< \
	    $(GPU_BENCH_OBJS) $(GPU_BENCH_LIBS)

-include $(BUILD)/bench/gpu_bench.d
endif
