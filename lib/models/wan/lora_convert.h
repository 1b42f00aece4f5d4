/* lora_convert.h — Wan 2.1 LoRA files between naming families, and a summary of one: what
 * dfm-lora does. No model is needed: files are read by models/wan/lora_file.h.
 *
 * Output families (reference/training.md 1); every output has scale 1 (B times alpha / rank in
 * double, rounded to F32, then to the output dtype), so delta W = B A means the same in each:
 *   comfyui    "diffusion_model.<original module>.lora_A/.lora_B.weight", header {"format": "pt"},
 *              no .alpha: what diffusion-pipe saves and ComfyUI, diffusers and stable-diffusion.cpp
 *              load. Into a directory: adapter_model.safetensors + adapter_config.json (PEFT's,
 *              as dfm_wan_lora_save writes them), which diffusion-pipe's init_from_existing reads.
 *   diffusers  "transformer.<diffusers module>.lora_A/.lora_B.weight", header {"format": "pt"} and
 *              no lora_adapter_metadata (diffusers then takes lora_alpha = r; training.md's trap).
 *              Into a directory: pytorch_lora_weights.safetensors.
 *   peft       a directory: adapter_model.safetensors with "base_model.model.<diffusers
 *              module>.lora_A/.lora_B.weight" (what PeftModel.save_pretrained writes) and
 *              adapter_config.json (r, lora_alpha = r, target_modules = the diffusers module names).
 *   musubi     "lora_unet_<original module, '.' -> '_'>.lora_down/.lora_up.weight" and a
 *              ".alpha" F32 scalar = rank per module (musubi-tuner's and kohya's layout).
 *              Into a directory: adapter_model.safetensors.
 * OUT ending in ".safetensors" is a file, anything else a directory (created; its parent must
 * exist; of adapter_model.safetensors, pytorch_lora_weights.safetensors and adapter_config.json,
 * those the family does not write are removed, so an earlier conversion there is not read
 * instead). Every file is written as name.tmp, fsync'd and renamed.
 *
 * Not here: loading into a model (lora.h), merging into the weights, LoRAs of other models.
 * ref: diffusion-pipe models/wan/wan.py save_adapter; diffusers loaders/lora_pipeline.py
 *      WanLoraLoaderMixin.lora_state_dict; musubi-tuner networks/lora_wan.py; peft
 *      PeftModel.save_pretrained
 */
#ifndef DFM_MODELS_WAN_LORA_CONVERT_H
#define DFM_MODELS_WAN_LORA_CONVERT_H
#include "base/buf.h"
#include "models/wan/lora_file.h"

enum { DFM_WAN_LORA_TO_COMFYUI, DFM_WAN_LORA_TO_DIFFUSERS, DFM_WAN_LORA_TO_PEFT, DFM_WAN_LORA_TO_MUSUBI };

/* "comfyui" (or its alias "diffusion-pipe"), "diffusers", "peft", "musubi" -> DFM_WAN_LORA_TO_*,
 * or -1. */
int dfm_wan_lora_target_parse(const char *s);
/* The family a read file is in, by the names above: musubi (lora_unet_), comfyui (original
 * names), diffusers (diffusers names under "transformer."), peft (bare or "base_model.model."). */
int dfm_wan_lora_family_of(const dfm_wan_lora_file *f);
const char *dfm_wan_lora_target_name(int to);

typedef struct {
    float alpha; /* > 0: read the input with this alpha (files without alpha information trained
                    with scale != 1); 0: from the file (lora_file.h) */
    int dtype;   /* DFM_F32, DFM_BF16, DFM_F16, or -1: each tensor keeps the input's dtype */
} dfm_wan_lora_convert_opts;

/* Convert the adapter at `in` (lora_file.h: a file or a directory) to family `to` at `out` (an
 * existing out is overwritten: the caller decides whether it may be). Every A and B value must
 * be finite (DFM_E_NONFINITE naming the tensor and the element), and so must every output value
 * after folding and rounding (F16 overflow). Errors of the input name the tensor (lora_file.h);
 * nothing is written unless the whole input was read and checked. modules: NULL or the number
 * of modules written. */
int dfm_wan_lora_convert(const char *in, const char *out, int to, const dfm_wan_lora_convert_opts *o, int *modules);

/* Which consumers load f as it is and compute the same delta W (training.md 1). */
enum { DFM_WAN_LORA_DIFFUSERS_PIPE, DFM_WAN_LORA_COMFYUI_LOAD, DFM_WAN_LORA_DIFFUSION_PIPE, DFM_WAN_LORA_MUSUBI_GEN,
       DFM_WAN_LORA_NCONSUMERS };
typedef struct {
    const char *consumer; /* "diffusers", "ComfyUI", "diffusion-pipe", "musubi-tuner" */
    int ok;
    char why[240];        /* ok: the conditions ("rank 4 in its config"); else the reason */
} dfm_wan_lora_consumer;
void dfm_wan_lora_consumers(const dfm_wan_lora_file *f, dfm_wan_lora_consumer out[DFM_WAN_LORA_NCONSUMERS]);

/* The summary dfm-lora info prints, appended to b: one "key  value" line each for file, family,
 * modules, rank (and per module when ranks or scales differ), alpha with its source and the
 * scale, dtype, parameters, blocks, then the target modules grouped by their name inside a block
 * (original names, with the blocks each covers) and the consumers. */
int dfm_wan_lora_summary(const dfm_wan_lora_file *f, dfm_buf *b);

#endif
