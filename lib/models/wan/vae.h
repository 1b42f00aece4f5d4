/* vae.h — the Wan 2.1 video VAE (diffusers AutoencoderKLWan), encode and decode.
 *
 * Weights and config come from a diffusers `vae/` directory (config.json + safetensors) through
 * the production loaders (io/hfmodel.h, io/safetensors.h); names are the diffusers names.
 * Encode: video [3, F, H, W] in [-1, 1] (F = 4k+1; H, W multiples of 8) -> posterior mean and
 * logvar [z, 1 + (F-1)/4, H/8, W/8]. Decode: latents [z, T, h, w] -> video [3, 1 + 4(T-1), 8h, 8w]
 * clamped to [-1, 1]. Both run the reference's causal schedule (frame 0, then chunks of 4 frames;
 * decode one latent frame at a time) with the per-conv feature cache, so memory is bounded by one
 * chunk whatever the clip length.
 * ref: diffusers models/autoencoders/autoencoder_kl_wan.py AutoencoderKLWan._encode/_decode
 * Not here: the Wan 2.2 residual variant (is_residual), tiling, the latent normalization's I/O.
 */
#ifndef DFM_MODELS_WAN_VAE_H
#define DFM_MODELS_WAN_VAE_H
#include "tensor/tensor.h"

#define DFM_WAN_VAE_MAX_LEVELS 8
#define DFM_WAN_VAE_MAX_Z 64

typedef struct {
    int base_dim, decoder_base_dim, z_dim, num_res_blocks;
    int dim_mult[DFM_WAN_VAE_MAX_LEVELS], n_levels;
    int temperal_downsample[DFM_WAN_VAE_MAX_LEVELS]; /* n_levels - 1 entries */
    int in_channels, out_channels;
    float latents_mean[DFM_WAN_VAE_MAX_Z], latents_std[DFM_WAN_VAE_MAX_Z];
    int has_latents_stats; /* both arrays present with z_dim entries */
} dfm_wan_vae_config;

typedef struct dfm_wan_vae dfm_wan_vae;

typedef struct {
    dfm_device device;   /* where weights and activations live */
    dfm_dtype weights;   /* F32 (default) or BF16 (weights stored bf16, GEMM inputs rounded to bf16) */
    int load_encoder, load_decoder;
} dfm_wan_vae_opts;

/* Load from a model directory (a diffusers root or the vae/ directory itself). Errors name the
 * file and the field or tensor. */
int dfm_wan_vae_load(dfm_wan_vae **vae, const char *model_dir, const dfm_wan_vae_opts *opts);
void dfm_wan_vae_free(dfm_wan_vae *vae);
const dfm_wan_vae_config *dfm_wan_vae_get_config(const dfm_wan_vae *vae);
dfm_device dfm_wan_vae_device(const dfm_wan_vae *vae);

/* x: [3, F, H, W] F32 on the VAE's device. mean, logvar (either may be NULL): allocated here,
 * [z, 1+(F-1)/4, H/8, W/8] F32; logvar clamped to [-30, 20] as the reference does. A shape
 * breaking the rules is DFM_E_ARG with the fix in the message; a NaN or Inf in what the encoder
 * computes (checked before the clamp) is DFM_E_NONFINITE (tensor/finite.h). */
int dfm_wan_vae_encode(dfm_wan_vae *vae, const dfm_tensor *x, dfm_tensor *mean, dfm_tensor *logvar);
/* z: [z_dim, T, h, w] F32 (un-normalized latents). out: allocated, [3, 1+4(T-1), 8h, 8w].
 * A NaN or Inf in the decoder's output (checked before the clamp to [-1, 1], which would hide an
 * Inf) is DFM_E_NONFINITE. */
int dfm_wan_vae_decode(dfm_wan_vae *vae, const dfm_tensor *z, dfm_tensor *out);

/* In place on a CPU F32 [z, ...] tensor: normalize (z - mean) * (1/std) with the fp32 reciprocal,
 * or denormalize z / (1/std) + mean, the way the Wan pipelines do. DFM_E_ARG without stats. */
int dfm_wan_vae_normalize(const dfm_wan_vae *vae, dfm_tensor *z);
int dfm_wan_vae_denormalize(const dfm_wan_vae *vae, dfm_tensor *z);

/* The config alone (for --help output and tests). */
int dfm_wan_vae_config_load(dfm_wan_vae_config *cfg, const char *vae_dir);

#endif
