/* vae_names.c — the weight-name table of the Wan 2.1 VAE (names.h).
 *
 * Canonical: diffusers AutoencoderKLWan (wan.md 2.4). Other family: the original Wan VAE
 * (wan/modules/vae.py WanVAE_: Wan2.1_VAE.pth, and ComfyUI's wan_2.1_vae.safetensors, which keeps
 * those names). Residual blocks are Sequentials there (residual.0 RMS norm, .2 conv, .3 RMS norm,
 * .6 conv; shortcut), the middle is middle.{0,1,2}, the heads head.{0,2}, and the decoder's
 * upsamples are one flat list that diffusers splits into up_blocks of 3 resnets and an
 * upsampler: the renames below map the released layout's 15 entries (4 levels, 2 residual
 * blocks per level, as every Wan 2.1 VAE has) the way convert_vae does. Names match whole dotted
 * components ("decoder.upsamples.1." is not a prefix of "decoder.upsamples.10."); '^' anchors
 * the top-level conv1/conv2, which every residual block's "conv1." would otherwise match.
 * ref: diffusers scripts/convert_wan_to_diffusers.py convert_vae
 * Not here: the Wan 2.2 VAE (is_residual), whose original names differ.
 */
#include "models/wan/names.h"

#include <stddef.h>

static const char *const MARKERS[] = {"encoder.downsamples.", "decoder.upsamples.", ".middle.", ".residual.",
                                      "encoder.head.", "decoder.head.", NULL};

static const dfm_weight_rename RENAMES[] = {
    {"^encoder.conv1.", "encoder.conv_in."},
    {"^decoder.conv1.", "decoder.conv_in."},
    {"^conv1.", "quant_conv."},
    {"^conv2.", "post_quant_conv."},
    {"encoder.downsamples.", "encoder.down_blocks."},
    {"decoder.upsamples.0.", "decoder.up_blocks.0.resnets.0."},
    {"decoder.upsamples.1.", "decoder.up_blocks.0.resnets.1."},
    {"decoder.upsamples.2.", "decoder.up_blocks.0.resnets.2."},
    {"decoder.upsamples.3.", "decoder.up_blocks.0.upsamplers.0."},
    {"decoder.upsamples.4.", "decoder.up_blocks.1.resnets.0."},
    {"decoder.upsamples.5.", "decoder.up_blocks.1.resnets.1."},
    {"decoder.upsamples.6.", "decoder.up_blocks.1.resnets.2."},
    {"decoder.upsamples.7.", "decoder.up_blocks.1.upsamplers.0."},
    {"decoder.upsamples.8.", "decoder.up_blocks.2.resnets.0."},
    {"decoder.upsamples.9.", "decoder.up_blocks.2.resnets.1."},
    {"decoder.upsamples.10.", "decoder.up_blocks.2.resnets.2."},
    {"decoder.upsamples.11.", "decoder.up_blocks.2.upsamplers.0."},
    {"decoder.upsamples.12.", "decoder.up_blocks.3.resnets.0."},
    {"decoder.upsamples.13.", "decoder.up_blocks.3.resnets.1."},
    {"decoder.upsamples.14.", "decoder.up_blocks.3.resnets.2."},
    {".middle.0.", ".mid_block.resnets.0."},
    {".middle.1.", ".mid_block.attentions.0."},
    {".middle.2.", ".mid_block.resnets.1."},
    {".head.0.", ".norm_out."},
    {".head.2.", ".conv_out."},
    {".residual.0.", ".norm1."},
    {".residual.2.", ".conv1."},
    {".residual.3.", ".norm2."},
    {".residual.6.", ".conv2."},
    {".shortcut.", ".conv_shortcut."},
    {NULL, NULL},
};

const dfm_weight_names dfm_wan_vae_names = {
    .model = "Wan 2.1 VAE",
    .canonical = "diffusers",
    .other = "original Wan",
    .other_markers = MARKERS,
    .renames = RENAMES,
};
