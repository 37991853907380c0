# ops/cuda.mk -- the CUDA backend's objects, included by the Makefile when CUDA=1 (nvcc found).
# Every ops/*.cu is compiled with nvcc for Hopper (sm_90 machine code) plus compute_90 PTX, so
# newer GPUs JIT it; the objects join libheadwise.a, and the link adds the CUDA runtime,
# cuBLAS/cuBLASLt and cuDNN. Code compiles and links on machines without a GPU; it runs only
# where a device is present (tests say "skipped" otherwise).
CUDA_LIBDIR ?= $(firstword $(wildcard $(CUDA_HOME)/lib64 $(CUDA_HOME)/lib))
CUDNN_INC   ?= $(dir $(CUDNN_H))
NVCC_ARCH   ?= -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
NVCC_WARN   := -Xcompiler -Wall,-Wextra,-Wno-unused-parameter $(if $(filter 1,$(WERROR)),-Werror all-warnings,)
NVCC_FLAGS  ?= -O3 -std=c++17 $(NVCC_ARCH) $(NVCC_WARN) -lineinfo -MMD -MP -DHW_CUDA \
               -I$(CUDA_HOME)/include $(if $(CUDNN_INC),-I$(CUDNN_INC),)
CUDA_SRCS   := $(sort $(wildcard ops/*.cu))
CUDA_OBJS   := $(CUDA_SRCS:%.cu=$(BUILD)/obj/%.cu.o)
LIB_OBJS    += $(CUDA_OBJS)
CFLAGS      += -DHW_CUDA -I$(CUDA_HOME)/include
LDLIBS      += -L$(CUDA_LIBDIR) -Wl,-rpath,$(CUDA_LIBDIR) -lcudnn -lcublasLt -lcublas -lcudart \
               -lstdc++

$(BUILD)/obj/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCC_FLAGS) -c $< -o $@

-include $(CUDA_OBJS:.o=.d)
