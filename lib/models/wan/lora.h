/* lora.h — LoRA adapter files for the Wan 2.1 transformer: load one into a model, save a model's
 * adapters in the one format every consumer loads.
 *
 * Loading reads the naming families in use (reference/training.md 1):
 *   - diffusers / PEFT: diffusers module names ("blocks.0.attn1.to_q.lora_A.weight"), bare
 *     (PEFT's raw state dict) or with "transformer." (diffusers' pytorch_lora_weights) or
 *     "base_model.model." (a PEFT model's save) in front;
 *   - original Wan (diffusion-pipe, ComfyUI, musubi-tuner's "other" format): the original module
 *     names ("blocks.0.self_attn.q") under "diffusion_model." or "model.diffusion_model.";
 *   - musubi-tuner / kohya: "lora_unet_" + the original module name with '.' -> '_'
 *     ("lora_unet_blocks_0_self_attn_q").
 * In each, A/B are ".lora_A.weight"/".lora_B.weight" (or PEFT's ".lora_A.default.weight") or
 * ".lora_down.weight"/".lora_up.weight", with an optional per-module ".alpha" scalar (kohya,
 * musubi). Every module name goes through the transformer's name table (models/wan/names.h).
 * The rank of each module comes from its tensor shapes; its alpha from, in order: the caller
 * (opts.alpha), the module's ".alpha" tensor, the diffusers header metadata
 * (lora_adapter_metadata: transformer.lora_alpha, .alpha_pattern, .use_rslora), the
 * adapter_config.json beside an adapter_model.safetensors (lora_alpha, alpha_pattern,
 * use_rslora), else alpha = rank (the file has the scale folded in, as diffusion-pipe and
 * ComfyUI assume). alpha_pattern keys are honoured when they are plain module names (PEFT's
 * suffix rule); a regular expression is refused. rank_pattern needs nothing: ranks come from the
 * shapes. DoRA, LoRA biases (lora_B.bias, diff_b) and full-weight differences (.diff) are refused.
 *
 * Saving writes what diffusion-pipe writes (training.md 1): adapter_model.safetensors with keys
 * "diffusion_model.<original module>.lora_A.weight" / ".lora_B.weight", F32, alpha / rank folded
 * into B, header metadata exactly {"format": "pt"}; and adapter_config.json with the fields PEFT
 * 0.21.2's LoraConfig.save_pretrained writes (r, lora_alpha = r, target_modules = the original
 * module names sorted). diffusers, ComfyUI, diffusion-pipe, musubi-tuner (training) and
 * stable-diffusion.cpp load it.
 *
 * Not here: the adapter's arithmetic and training (nn/linear.h, models/wan/transformer.h), LoRA on
 * the patch embedding (a Conv3d), LoKr/LoHa.
 * ref: diffusers loaders/lora_conversion_utils.py _convert_non_diffusers_wan_lora_to_diffusers,
 *      _convert_musubi_wan_lora_to_diffusers; diffusion-pipe models/wan/wan.py save_adapter;
 *      peft utils/save_and_load.py, tuners/lora/layer.py (scaling = alpha / r, or / sqrt(r))
 */
#ifndef DFM_MODELS_WAN_LORA_H
#define DFM_MODELS_WAN_LORA_H
#include "models/wan/transformer.h"

typedef struct {
    float alpha;   /* > 0: every module's alpha, whatever the file says (PEFT's raw state dict
                      carries none); 0: from the file as above */
    float dropout; /* the adapters' training dropout (0 for sampling) */
} dfm_wan_lora_load_opts;

/* What a load found, for messages. */
typedef struct {
    char naming[160];     /* "original Wan names (diffusion-pipe / ComfyUI), prefix 'diffusion_model.', lora_A/lora_B" */
    char alpha_from[96];  /* "adapter_config.json", "per-module .alpha tensors", ... */
    int modules;          /* adapted linears */
    int rank_min, rank_max;
    float alpha;          /* the first module's alpha */
} dfm_wan_lora_info;

/* Add the adapter at `path` to m: a .safetensors file, or a directory holding
 * adapter_model.safetensors (+ adapter_config.json) or pytorch_lora_weights.safetensors.
 * Adapters go on exactly the modules the file names (dfm_wan_transformer_lora_add), with A as in
 * the file and B as the file's B times multiplier * alpha / rank (converted to F32 on the model's
 * device): the layers' own scale is 1, as in the saved format, so saving (alpha 0) and loading
 * again reproduces the forward bit for bit. multiplier: the adapter's strength (1: as trained,
 * 0: no effect; any finite value). o: NULL for the defaults. info: NULL or filled.
 * Everything is checked before the model changes: a tensor that is not part of a LoRA, a module
 * the model lacks, A without B (or the reverse), ranks that disagree, shapes that do not fit the
 * model's linear, a non-positive alpha — each an error naming the tensor and how its names were
 * read. The model must not have adapters yet (DFM_E_ARG). */
int dfm_wan_lora_load(dfm_wan_transformer *m, const char *path, float multiplier, const dfm_wan_lora_load_opts *o,
                      dfm_wan_lora_info *info);

/* Several adapters at once (dfm-sample --lora A --lora B): per module, the adapters of every file
 * that has one become a single adapter of the summed rank (A stacked, B side by side, each B times
 * its multiplier * alpha / rank), so the model computes W x + sum_k m_k (alpha_k / r_k) B_k A_k x
 * exactly. n = 1 is dfm_wan_lora_load. info: NULL or n entries. */
#define DFM_WAN_LORA_MAX_FILES 16
int dfm_wan_lora_load_many(dfm_wan_transformer *m, const char *const *paths, const float *multipliers, int n,
                           const dfm_wan_lora_load_opts *o, dfm_wan_lora_info *info);

typedef struct {
    float alpha;   /* the alpha the adapters compute with (dfm_wan_transformer_lora_add's): B is
                      written as B * (alpha / rank); 0: alpha = rank, B as it is (adapters from
                      dfm_wan_lora_load, which folds) */
    float dropout; /* recorded as lora_dropout */
} dfm_wan_lora_save_opts;

/* Write m's adapters (on any device) to dir/adapter_model.safetensors and
 * dir/adapter_config.json (dir is created if missing, its parent must exist; each file written as name.tmp, fsync'd and renamed). Ranks may differ per
 * module: r is then the most common one and rank_pattern / alpha_pattern list the others.
 * Errors: no adapters (DFM_E_ARG); an adapter on a module no consumer maps (patch_embedding:
 * DFM_E_UNSUPPORTED); I/O. o: NULL for alpha 0, dropout 0. */
int dfm_wan_lora_save(dfm_wan_transformer *m, const char *dir, const dfm_wan_lora_save_opts *o);

#endif
