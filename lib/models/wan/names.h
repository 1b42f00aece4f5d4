/* names.h — the weight-name tables of the Wan 2.1 models (models/weights.h), one per model:
 * the diffusers / transformers names are canonical; each table says how the other checkpoints
 * spell them (original Wan-AI files, ComfyUI's repackaged ones).
 *   dfm_wan_vae_names          AutoencoderKLWan: original Wan VAE names (Wan2.1_VAE, ComfyUI's
 *                              wan_2.1_vae.safetensors) converted as diffusers' convert_vae does.
 *   dfm_umt5_names             UMT5EncoderModel: shared.weight / encoder.embed_tokens.weight tied;
 *                              a full UMT5 checkpoint's decoder and LM head ignored.
 *   dfm_wan_transformer_names  WanTransformer3DModel: original Wan names (wan.md 1.6, incl. the
 *                              norm2/norm3 swap), ComfyUI's model.diffusion_model. prefix, and the
 *                              modules diffusers keeps in F32.
 * Not here: the models themselves, LoRA key conversion (models/wan/lora.h).
 */
#ifndef DFM_MODELS_WAN_NAMES_H
#define DFM_MODELS_WAN_NAMES_H
#include "models/weights.h"

extern const dfm_weight_names dfm_wan_vae_names;
extern const dfm_weight_names dfm_umt5_names;
extern const dfm_weight_names dfm_wan_transformer_names;

/* The original Wan name of a diffusers transformer name (a parameter, or a module without its
 * .weight/.bias): the inverse of dfm_wan_transformer_names' renames, so that converting the
 * result back gives `name` again for every name the transformer has ("blocks.0.attn1.to_out.0"
 * -> "blocks.0.self_attn.o", "blocks.0.norm2.weight" -> "blocks.0.norm3.weight",
 * "scale_shift_table" -> "head.modulation"). No prefix is added. *out is malloc'd. */
int dfm_wan_transformer_original_name(const char *name, char **out);

#endif
