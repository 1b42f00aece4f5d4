/* transformer.h — the Wan 2.1 text-to-video transformer (diffusers WanTransformer3DModel),
 * forward and backward, with LoRA.
 *
 * forward(x [B, C, F, H, W] latents, t [B] timesteps, ctx [B, L, text_dim] text states) ->
 * [B, C_out, F, H, W], exactly as reference/wan.md 1.2-1.4: patch embedding, 3-axis RoPE with
 * interleaved pairs, sinusoidal time embedding and time/text embedders, num_layers blocks of
 * (adaLN-modulated self-attention with q/k RMS norm across heads, affine-normed cross-attention to
 * the text, gated GELU-tanh FFN), the modulated output head, unpatchify. Batches of B >= 1 latents
 * of one shape (a training batch; the CFG pair in sampling). Text rows are used as given: pad to the
 * pipeline's 512 rows with zeros first when matching diffusers' pipeline (wan.md 3.4).
 *
 * Weights: a diffusers transformer/ directory (config.json + single or sharded safetensors), an
 * original Wan checkpoint (diffusion_pytorch_model.safetensors with original names and its
 * config.json) or ComfyUI's single repackaged file (model.diffusion_model. prefix, no config:
 * the sizes come from the tensor shapes; the head count is dim / 128 as in every released Wan
 * model unless opts.heads says otherwise). Every name goes through one table
 * (models/wan/names.h); a missing or unexpected tensor is an error naming it.
 *
 * Precision: opts.weights F32, or BF16 (linear weights and biases stored bf16; diffusers'
 * keep-in-f32 modules — time_embedder, scale_shift_table, norm2 — stay f32). opts.compute F32 or
 * BF16 (GEMM inputs rounded to bf16, f32 accumulation; the time embedder computes in f32).
 * Activations, norms, softmax, RoPE and the modulation are f32 throughout.
 *
 * Training: forward with a dfm_wan_acts (saved activations; with checkpointing only each block's
 * input, the block recomputed in the backward — the same bits either way), then backward from
 * dL/dout: gradients accumulate into the model's gradient tensors (dfm_wan_transformer_grads),
 * optionally dL/dx and dL/dctx. Full fine-tuning (opts.trainable: every parameter, F32 weights) or
 * LoRA (dfm_wan_transformer_lora_add: adapters on linears chosen by name; base frozen).
 *
 * Memory: weights as loaded (mapped in place when F32 on the CPU and not trainable; otherwise the
 * files are unmapped after loading), plus activations: inference holds one block's temporaries
 * (three [M, D] rows plus the FFN's one [M, ffn_dim] and the attention's); training holds every block's activations
 * (~ (24 D + 3 ffn) * 4 bytes per token per block) or, with checkpointing, one D-row per token
 * per block plus one block's activations.
 * ref: diffusers models/transformers/transformer_wan.py WanTransformer3DModel.forward
 * Not here: I2V (image_dim / added_kv_proj_dim), Wan 2.2's expert switch, the sampler.
 */
#ifndef DFM_MODELS_WAN_TRANSFORMER_H
#define DFM_MODELS_WAN_TRANSFORMER_H
#include <stddef.h>
#include <stdint.h>
#include "tensor/compute.h"
#include "tensor/tensor.h"

typedef struct {
    int patch[3];                  /* patch_size, [1, 2, 2] */
    int heads, head_dim, dim;      /* num_attention_heads, attention_head_dim, their product */
    int in_channels, out_channels, text_dim, freq_dim, ffn_dim, num_layers;
    float eps;
    int cross_attn_norm;           /* norm2 is an affine LayerNorm (Wan: true) */
    int rope_max_seq_len;          /* positions per axis, 1024 */
} dfm_wan_transformer_config;

typedef struct {
    dfm_device device;
    dfm_dtype weights;  /* F32 or BF16 storage of the linear weights (keep-f32 modules stay F32) */
    dfm_dtype compute;  /* F32 or BF16 GEMM inputs */
    int trainable;      /* full fine-tuning: every parameter an owned F32 copy with a gradient */
    int heads;          /* 0: from config.json, or dim / 128 without one */
} dfm_wan_transformer_opts;

typedef struct dfm_wan_transformer dfm_wan_transformer;

/* Load from a diffusers root (its transformer/), a component directory, an original Wan directory
 * or a single .safetensors file. */
int dfm_wan_transformer_load(dfm_wan_transformer **m, const char *path, const dfm_wan_transformer_opts *o);
void dfm_wan_transformer_free(dfm_wan_transformer *m);
const dfm_wan_transformer_config *dfm_wan_transformer_get_config(const dfm_wan_transformer *m);
/* Weight bytes: owned copies and mapped in place. */
void dfm_wan_transformer_memory(const dfm_wan_transformer *m, size_t *owned, size_t *mapped);

/* LoRA on every linear whose module name matches one of targets (NULL-terminated; a target
 * matches a name equal to it or ending in "." + target, PEFT's rule; NULL: the default
 * dfm_wan_lora_default_targets). A random (PEFT's kaiming-uniform, from seed), B zero.
 * Returns the number of adapted layers via *count. Gradients are then kept for A and B. */
extern const char *const dfm_wan_lora_default_targets[];
/* PEFT's rule for a target list (NULL-terminated): the module name equals a target or ends with
 * "." + target. 1 when one matches. */
int dfm_wan_lora_target_match(const char *name, const char *const *targets);
int dfm_wan_transformer_lora_add(dfm_wan_transformer *m, const char *const *targets, int rank, float alpha,
                                 float dropout, uint64_t seed, int *count);

/* Speed for a frozen base on the CPU under bf16 compute: lay out the weights of every linear whose
 * weight is not trained once for the forward GEMM (BF16 panels), instead of at every call;
 * outputs are bit-identical either way. drop_weights 0 keeps the weights as loaded too (one more
 * copy of them: LoRA training on the frozen base, whose backward multiplies by them); 1 frees
 * them (sampling: the same memory as before, and no backward through those layers — it fails
 * with an error; their parameter tensors then have no data). Returns 0 and the number of
 * linears packed via *count (NULL allowed). */
int dfm_wan_transformer_pack(dfm_wan_transformer *m, int drop_weights, int *count);

/* Named parameters (diffusers names; LoRA as "<module>.lora_A.weight" / ".lora_B.weight"): the
 * i-th of dfm_wan_transformer_nparams, its tensor and its gradient (data NULL when not trained, or released: see dfm_wan_transformer_param_trained).
 * For tests, optimizers and checkpoints. */
int dfm_wan_transformer_nparams(const dfm_wan_transformer *m);
/* 1 when parameter i has a gradient (it is trained: full training, or a LoRA adapter), whether
 * or not its storage is released now (dfm_wan_transformer_release_grads). */
int dfm_wan_transformer_param_trained(const dfm_wan_transformer *m, int i);
const char *dfm_wan_transformer_param(dfm_wan_transformer *m, int i, dfm_tensor **param, dfm_tensor **grad);
/* Zero every gradient. */
int dfm_wan_transformer_zero_grads(dfm_wan_transformer *m);

/* Saved activations of one training forward. */
typedef struct dfm_wan_acts dfm_wan_acts;

/* x: [B, in_channels, F, H, W] F32 on the model's device (F, H, W multiples of the patch);
 * t: B host floats; ctx: [B, L, text_dim] F32; out: allocated here, [B, out_channels, F, H, W].
 * acts: NULL for inference; else *acts receives the saved activations (checkpoint: keep only
 * block inputs) and LoRA dropout draws from seed. */
int dfm_wan_transformer_forward(dfm_wan_transformer *m, const dfm_tensor *x, const float *t, const dfm_tensor *ctx,
                                dfm_tensor *out, dfm_wan_acts **acts, int checkpoint, uint64_t seed);
/* From dout (out's shape): accumulate parameter gradients; dx, dctx (allocated here when
 * non-NULL, x's and ctx's shapes) receive the input gradients. Frees acts. */
int dfm_wan_transformer_backward(dfm_wan_transformer *m, dfm_wan_acts *acts, const dfm_tensor *dout, dfm_tensor *dx,
                                 dfm_tensor *dctx);
void dfm_wan_acts_free(dfm_wan_acts *a);
/* fn(ctx, i) is called by every backward after block i's parameter gradients are complete
 * (blocks last to first; the others' — embedders, head — are complete when backward returns),
 * so a data-parallel trainer can start summing them over the ranks while the earlier blocks run.
 * A non-zero return ends the backward with that code. fn NULL: none. */
typedef int (*dfm_wan_grads_ready_fn)(void *ctx, int block);
void dfm_wan_transformer_on_grads_ready(dfm_wan_transformer *m, dfm_wan_grads_ready_fn fn, void *ctx);
/* Free the storage of block i's parameter gradients (their tensors keep dtype, device and shape,
 * data NULL) once a sharded optimizer has taken their sum: the next backward allocates them
 * again (zeros) just before that block, so only one block's gradients live at a time. */
int dfm_wan_transformer_release_grads(dfm_wan_transformer *m, int block);

/* The text context as the Wan pipeline builds it: states[i] [L_i, D] F32 (the valid rows, as
 * dfm-text-encode stores them) stacked into out [n, text_len, D], each zero-padded after its rows
 * (wan.md 3.4: the padding rows take part in cross-attention). L_i > text_len is DFM_E_ARG (the
 * pipeline truncates the tokens to text_len = 512 first). out is allocated on the states' device. */
int dfm_wan_text_pad(const dfm_tensor *const *states, int n, int text_len, dfm_tensor *out);

/* The config alone: config.json (diffusers or original Wan) at path, or NULL when there is none. */
int dfm_wan_transformer_config_load(dfm_wan_transformer_config *cfg, const char *path, int *found);


/* ---- saving (transformer_save.c) ------------------------------------------------------------
 * The weights as they are now (loaded, trained, with adapters merged when asked), written for
 * other tools. Parameters on a device are copied to the host; tensors already in the file's
 * dtype on the host are written from the model's memory. A model whose weights were dropped by
 * dfm_wan_transformer_pack(drop_weights 1) cannot be saved (DFM_E_ARG). */

/* diffusers' default max_shard_size ("10GB" in ModelMixin.save_pretrained, 10^10 bytes) */
#define DFM_WAN_SAVE_MAX_SHARD 10000000000ULL
/* The diffusers version written into config.json: the one whose save_pretrained this mirrors. */
#define DFM_WAN_DIFFUSERS_VERSION "0.42.1"

/* Write m as a diffusers transformer directory, as WanTransformer3DModel.save_pretrained does:
 * dir/config.json (_class_name, _diffusers_version and every config field, sorted, indent 2)
 * and dir/diffusion_pytorch_model.safetensors, or, when the tensors do not fit in one shard of
 * max_shard_bytes (0: DFM_WAN_SAVE_MAX_SHARD), diffusion_pytorch_model-0000K-of-0000N.safetensors
 * split as huggingface_hub splits the state_dict (in torch's parameter order) plus
 * diffusion_pytorch_model.safetensors.index.json {"metadata": {"total_size"}, "weight_map"}.
 * Header metadata {"format": "pt"}. dtype: F32, or BF16 with diffusers' keep-in-f32 modules
 * (time_embedder, scale_shift_table, norm2) kept F32 — the files a bf16 save_pretrained writes.
 * LoRA adapters: merged into the weights (W + alpha/r B A, PEFT's merge) when merge_lora, else
 * DFM_E_ARG (save them with dfm_wan_lora_save). dir is created if missing (its parent must
 * exist); weight files of a previous save there that this one does not write are removed (stale
 * shards, the single file or index of the other layout). Every file is written as name.tmp,
 * fsync'd and renamed, then the directory fsync'd; config.json is written last.
 * ref: diffusers models/modeling_utils.py ModelMixin.save_pretrained */
int dfm_wan_transformer_save(dfm_wan_transformer *m, const char *dir, dfm_dtype dtype, uint64_t max_shard_bytes,
                             int merge_lora);
/* The same weights in one safetensors file at path with the original Wan names (names.h
 * dfm_wan_transformer_original_name), each under prefix ("model.diffusion_model." for ComfyUI's
 * repackaged layout, "" or NULL for diffusion-pipe's model.safetensors), header metadata
 * {"format": "pt"}; dtype and merge_lora as above. No config.json (the loader infers the sizes
 * from the shapes; give it the head count when dim is not a multiple of 128). Written as
 * path.tmp, fsync'd, renamed; the directory must exist. */
int dfm_wan_transformer_save_original(dfm_wan_transformer *m, const char *path, dfm_dtype dtype, const char *prefix,
                                      int merge_lora);

#endif
