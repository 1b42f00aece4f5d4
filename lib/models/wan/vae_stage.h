/* vae_stage.h — the per-sample work of dfm-vae-encode and dfm-vae-decode: `frames.npy` (uint8
 * [F,H,W,3]) <-> normalized `latents.npy` ([z, F', H/8, W/8], f16 or f32), with what was done
 * recorded in `json`. Rule breaks (F != 4k+1, sides not multiples of 8, missing fields) are
 * per-sample DFM_E_ARG/DFM_E_FORMAT errors whose message names the fix; a field of the wrong
 * dtype or shape is named with what it is ("latents.npy is float64 [16,3,8,8]; want ...").
 * Numbers must be finite (tensor/finite.h): a NaN or Inf in latents.npy, in what the VAE computes,
 * or in what would be stored (float16 overflows to Inf past 65504) is DFM_E_NONFINITE saying how
 * many and where the first is.
 */
#ifndef DFM_MODELS_WAN_VAE_STAGE_H
#define DFM_MODELS_WAN_VAE_STAGE_H
#include <stdint.h>
#include "io/sample.h"
#include "models/wan/vae.h"

typedef struct {
    const char *model;     /* recorded in json */
    int sample;            /* 1: draw from the posterior instead of taking its mean */
    uint64_t seed;         /* with sample: noise for a sample depends on (seed, key) only */
    dfm_dtype out_dtype;   /* latents.npy dtype: F16 (default) or F32 */
    int keep_frames;       /* keep frames.npy next to latents.npy */
    int keep_latents;      /* decode: keep latents.npy next to frames.npy */
} dfm_vae_stage_opts;

int dfm_vae_encode_sample(dfm_wan_vae *vae, const dfm_vae_stage_opts *o, dfm_sample *s);
int dfm_vae_decode_sample(dfm_wan_vae *vae, const dfm_vae_stage_opts *o, dfm_sample *s);

/* Pixels: uint8 [F,H,W,3] -> F32 [3,F,H,W] as (x/255 - 0.5)/0.5 (the reference's preprocessing),
 * and back: round(clamp((x + 1)/2, 0, 1) * 255). */
int dfm_frames_to_video(const uint8_t *rgb, int64_t F, int64_t H, int64_t W, dfm_tensor *out);
int dfm_video_to_frames(const dfm_tensor *x, uint8_t *rgb);

#endif
