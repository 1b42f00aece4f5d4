/* transformer_names.c — the weight-name table of the Wan 2.1 transformer (names.h).
 *
 * Canonical: diffusers WanTransformer3DModel (wan.md 1.5). Other family: the original Wan-AI
 * checkpoint (wan/modules/model.py WanModel; also what diffusion-pipe saves), converted by the
 * substring renames of diffusers' convert script in its dict order. The norm swap takes three
 * renames: the original's affine cross-attention norm is norm3 and its parameter-free FFN norm is
 * norm2; diffusers names them the other way round, so norm2 goes to a placeholder, norm3 to
 * norm2, the placeholder to norm3 (a name is never swapped twice). The I2V/FLF2V entries are
 * kept so the table is the script's whole dict. ComfyUI's repackaged files put
 * "model.diffusion_model." (and LoRA-style files "diffusion_model.") in front of the original
 * names. Kept in F32 in a BF16 run: diffusers' _keep_in_fp32_modules (wan.md 1.4).
 * ref: diffusers scripts/convert_wan_to_diffusers.py TRANSFORMER_KEYS_RENAME_DICT,
 *      models/transformers/transformer_wan.py WanTransformer3DModel._keep_in_fp32_modules
 * The inverse (dfm_wan_transformer_original_name) is a second ordered list of substring renames
 * written from the same facts (wan.md 1.6), for writing files in the original naming (LoRA
 * adapters as diffusion-pipe and ComfyUI spell them).
 * Not here: the transformer itself, LoRA keys (lora_A/lora_B, lora_unet_*: models/wan/lora.c).
 */
#include "models/wan/names.h"

#include <stddef.h>

static const char *const PREFIXES[] = {"model.diffusion_model.", "diffusion_model.", NULL};

/* Substrings no diffusers name contains. */
static const char *const MARKERS[] = {"self_attn.", "cross_attn.", "time_embedding.", "text_embedding.",
                                      "time_projection.", "head.head.", "modulation", NULL};

static const dfm_weight_rename RENAMES[] = {
    {"time_embedding.0", "condition_embedder.time_embedder.linear_1"},
    {"time_embedding.2", "condition_embedder.time_embedder.linear_2"},
    {"text_embedding.0", "condition_embedder.text_embedder.linear_1"},
    {"text_embedding.2", "condition_embedder.text_embedder.linear_2"},
    {"time_projection.1", "condition_embedder.time_proj"},
    {"head.modulation", "scale_shift_table"},
    {"head.head", "proj_out"},
    {"modulation", "scale_shift_table"},
    {"ffn.0", "ffn.net.0.proj"},
    {"ffn.2", "ffn.net.2"},
    /* the swap: original norm1, norm3 (cross-attention, affine), norm2 -> diffusers norm1, norm2, norm3 */
    {"norm2", "norm__placeholder"},
    {"norm3", "norm2"},
    {"norm__placeholder", "norm3"},
    /* I2V */
    {"img_emb.proj.0", "condition_embedder.image_embedder.norm1"},
    {"img_emb.proj.1", "condition_embedder.image_embedder.ff.net.0.proj"},
    {"img_emb.proj.3", "condition_embedder.image_embedder.ff.net.2"},
    {"img_emb.proj.4", "condition_embedder.image_embedder.norm2"},
    /* FLF2V */
    {"img_emb.emb_pos", "condition_embedder.image_embedder.pos_embed"},
    {"self_attn.q", "attn1.to_q"},
    {"self_attn.k", "attn1.to_k"},
    {"self_attn.v", "attn1.to_v"},
    {"self_attn.o", "attn1.to_out.0"},
    {"self_attn.norm_q", "attn1.norm_q"},
    {"self_attn.norm_k", "attn1.norm_k"},
    {"cross_attn.q", "attn2.to_q"},
    {"cross_attn.k", "attn2.to_k"},
    {"cross_attn.v", "attn2.to_v"},
    {"cross_attn.o", "attn2.to_out.0"},
    {"cross_attn.norm_q", "attn2.norm_q"},
    {"cross_attn.norm_k", "attn2.norm_k"},
    {"attn2.to_k_img", "attn2.add_k_proj"},
    {"attn2.to_v_img", "attn2.add_v_proj"},
    {"attn2.norm_k_img", "attn2.norm_added_k"},
    {NULL, NULL},
};

static const char *const KEEP_F32[] = {"rope", "time_embedder", "scale_shift_table", "norm1", "norm2", "norm3", NULL};

const dfm_weight_names dfm_wan_transformer_names = {
    .model = "Wan 2.1 transformer",
    .canonical = "diffusers",
    .prefixes = PREFIXES,
    .other = "original Wan",
    .other_markers = MARKERS,
    .renames = RENAMES,
    .keep_f32 = KEEP_F32,
};

/* diffusers -> original, in order. The image embedder first (its diffusers names contain norm1 /
 * norm2, which are not the blocks' norms); the top-level scale_shift_table is the head's
 * modulation, a block's its modulation; the norm swap undone through a placeholder; the I2V
 * cross-attention projections before the plain ones. */
static const dfm_weight_rename TO_ORIGINAL[] = {
    {"condition_embedder.image_embedder.norm1", "img_emb.proj.0"},
    {"condition_embedder.image_embedder.ff.net.0.proj", "img_emb.proj.1"},
    {"condition_embedder.image_embedder.ff.net.2", "img_emb.proj.3"},
    {"condition_embedder.image_embedder.norm2", "img_emb.proj.4"},
    {"condition_embedder.image_embedder.pos_embed", "img_emb.emb_pos"},
    {"condition_embedder.time_embedder.linear_1", "time_embedding.0"},
    {"condition_embedder.time_embedder.linear_2", "time_embedding.2"},
    {"condition_embedder.text_embedder.linear_1", "text_embedding.0"},
    {"condition_embedder.text_embedder.linear_2", "text_embedding.2"},
    {"condition_embedder.time_proj", "time_projection.1"},
    {"^scale_shift_table", "head.modulation"},
    {"scale_shift_table", "modulation"},
    {"proj_out", "head.head"},
    {"ffn.net.0.proj", "ffn.0"},
    {"ffn.net.2", "ffn.2"},
    {"norm2", "norm__placeholder"},
    {"norm3", "norm2"},
    {"norm__placeholder", "norm3"},
    {"attn2.add_k_proj", "cross_attn.k_img"},
    {"attn2.add_v_proj", "cross_attn.v_img"},
    {"attn2.norm_added_k", "cross_attn.norm_k_img"},
    {"attn1.to_q", "self_attn.q"},
    {"attn1.to_k", "self_attn.k"},
    {"attn1.to_v", "self_attn.v"},
    {"attn1.to_out.0", "self_attn.o"},
    {"attn1.norm_q", "self_attn.norm_q"},
    {"attn1.norm_k", "self_attn.norm_k"},
    {"attn2.to_q", "cross_attn.q"},
    {"attn2.to_k", "cross_attn.k"},
    {"attn2.to_v", "cross_attn.v"},
    {"attn2.to_out.0", "cross_attn.o"},
    {"attn2.norm_q", "cross_attn.norm_q"},
    {"attn2.norm_k", "cross_attn.norm_k"},
    {NULL, NULL},
};

static const dfm_weight_names TO_ORIGINAL_NAMES = {
    .model = "Wan 2.1 transformer",
    .canonical = "original Wan",
    .other = "diffusers",
    .renames = TO_ORIGINAL,
};

int dfm_wan_transformer_original_name(const char *name, char **out)
{
    return dfm_weights_convert_name(&TO_ORIGINAL_NAMES, name, 1, out);
}
