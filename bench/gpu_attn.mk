# bench/gpu_attn.mk -- the GPU attention benchmark: bench/gpu_attn_bench.c (cuDNN bf16 path, own
# fp32 kernels, S2 against dense; JSON on stdout) and bench/gpu_attn_bench.py (runs it next to
# torch.nn.functional.scaled_dot_product_attention, merges the figures into one JSON file).
# Included by the Makefile after LIBHW is defined; does nothing unless CUDA=1.
#   make bench-gpu-attn [GPU_ATTN_ARGS=--quick]   -> $(BUILD)/bench/gpu_attn.json
ifeq ($(CUDA),1)
GPU_ATTN_ARGS ?=

$(BUILD)/bench/gpu_attn_bench: bench/gpu_attn_bench.c $(LIBHW)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< -o $@ $(LIBHW) $(LDFLAGS) $(LDLIBS)

.PHONY: bench-gpu-attn
bench-gpu-attn: $(BUILD)/bench/gpu_attn_bench
	$(PYTHON) bench/gpu_attn_bench.py --bin $(BUILD)/bench/gpu_attn_bench \
	  --out $(BUILD)/bench/gpu_attn.json $(GPU_ATTN_ARGS)
endif
