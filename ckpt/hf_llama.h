/* ckpt/hf_llama.h -- Hugging Face LLaMA-family model directories in and out of headwise
 * checkpoints: `headwise ckpt import-hf` and `export-hf`. Owns the mapping between a
 * LlamaForCausalLM config.json and headwise's model section, and between the two sets of tensor
 * names. The layouts agree without any permutation: both store linear weights as (out, in),
 * both rotate the two halves of each head (rotate_half, inv_freq = theta^(-2i/hd)), RMSNorm
 * multiplies by its weight, and SwiGLU is down(silu(gate x) * up x):
 *
 *   model.embed_tokens.weight                    tok_emb.weight
 *   model.layers.L.input_layernorm.weight        blocks.L.attn_norm.weight
 *   model.layers.L.self_attn.{q,k,v,o}_proj.weight  blocks.L.attn.{wq,wk,wv,wo}
 *   model.layers.L.post_attention_layernorm.weight  blocks.L.mlp_norm.weight
 *   model.layers.L.mlp.{gate,up,down}_proj.weight   blocks.L.mlp.{w_gate,w_up,w_down}
 *   model.norm.weight                            final_norm.weight
 *   lm_head.weight (untied only)                 lm_head.weight
 *
 * Import reads config.json and model.safetensors, or the shards a model.safetensors.index.json
 * names, or else every *.safetensors in the directory (F32, F16 or BF16, memory-mapped; each
 * tensor is converted to float32 as it is copied). tokenizer.json, when the directory has one,
 * is stored in the checkpoint. Memory: the fp32 model twice (parameters and the gradient block
 * gpt_build allocates). Export writes config.json, model.safetensors (F32, BF16 or F16) and, for
 * a Hugging Face tokenizer, tokenizer.json, into a new directory, all or nothing. */
#ifndef HW_HF_LLAMA_H
#define HW_HF_LLAMA_H

#include "../dist/dist.h"
#include "safetensors.h"

/* Imports the model directory dir into a new checkpoint in out_dir (which must hold none yet):
 * out_dir/ckpt_00000000.h5 and out_dir/latest, plus out_dir/config.yaml, the resolved config
 * whose model section describes it (a `base:` for fine-tuning configs). max_seq > 0 overrides
 * max_position_embeddings (the RoPE table). out_path (CKPT_PATH_LEN) gets the file. Errors:
 * HW_ECONFIG for a config.json headwise cannot represent, HW_EFORMAT for bad or missing tensors,
 * HW_EIO; one line naming the file and key, nothing written. */
int hf_import(const struct dist *d, const char *dir, const char *out_dir, int max_seq,
              char *out_path, char *err);

/* Exports the dense/GQA model of a checkpoint (a file or a run directory) to the new directory
 * out_dir (it must not exist). A model with MoH, S2, Titans memory, DARE embeddings or a
 * classifier head has no LlamaForCausalLM equivalent: HW_ECONFIG naming the key. */
int hf_export(const struct dist *d, const char *ckpt, const char *out_dir, enum st_dtype dtype,
              char *err);

/* The Hugging Face name of a headwise parameter (0), or -1 when it has none. */
int hf_llama_name(const char *hw, char *out, size_t n);

#endif /* HW_HF_LLAMA_H */
