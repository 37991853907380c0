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
# NCCL (dist.transport: nccl): compiled in when nccl.h and libnccl sit beside the toolkit (or in
# the system paths); without them the transport is refused at start-up with one line
NCCL_H      ?= $(firstword $(wildcard $(CUDA_HOME)/include/nccl.h /usr/include/nccl.h \
                 /usr/local/include/nccl.h))
NCCL_LIBDIR ?= $(patsubst %/,%,$(dir $(firstword $(wildcard $(CUDA_LIBDIR)/libnccl.so \
                 /usr/lib/x86_64-linux-gnu/libnccl.so /usr/local/lib/libnccl.so))))
ifneq ($(and $(NCCL_H),$(NCCL_LIBDIR)),)
CFLAGS      += -DHW_NCCL -I$(dir $(NCCL_H))
LDLIBS      += -L$(NCCL_LIBDIR) -Wl,-rpath,$(NCCL_LIBDIR) -lnccl
endif
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
