/* pipeline.h — text-to-video (and text-to-image: frames = 1) with Wan 2.1, as diffusers'
 * WanPipeline: prompts -> UMT5 states (zero-padded to text_len) -> the denoising loop (UniPC or
 * Euler, classifier-free guidance with the conditional and unconditional passes as one batch of 2)
 * -> normalized latents -> the VAE -> uint8 frames.
 *
 * Memory: the three models are never held together. dfm_sample_run works on a list of requests
 * in three phases — every prompt encoded (text encoder loaded, used, freed), every request
 * denoised (transformer loaded with its LoRAs or checkpoint, used, freed), every result decoded
 * (VAE loaded, used, freed) — so the peak is the largest model plus the latents.
 * ref: diffusers pipelines/wan/pipeline_wan.py WanPipeline.__call__, encode_prompt
 *
 * Not here: file output (lib/media/encode.h), the command line (cmd/dfm-sample.c), the schedulers'
 * arithmetic (lib/sample/scheduler.h).
 */
#ifndef DFM_SAMPLE_PIPELINE_H
#define DFM_SAMPLE_PIPELINE_H
#include <stdint.h>
#include "sample/scheduler.h"
#include "tensor/tensor.h"

#define DFM_SAMPLE_MAX_LORAS 16

typedef struct {
    const char *model;        /* a diffusers root: text_encoder/, tokenizer/, vae/, transformer/, scheduler/ */
    const char *transformer;  /* NULL: model's transformer/; else a full checkpoint (a dfm-train step
                                 directory, a diffusers transformer dir, an original Wan dir or file) */
    const char *lora[DFM_SAMPLE_MAX_LORAS]; /* adapters (any naming family; a dfm-train step or run directory) */
    float lora_scale[DFM_SAMPLE_MAX_LORAS];
    int nloras;
    dfm_device device;
    dfm_dtype dtype;          /* transformer weights and compute: BF16 (default) or F32 */
    dfm_dtype text_dtype;     /* UMT5: BF16 (default; UMT5-XXL is 22.7 GB in f32) or F32 */
    dfm_dtype vae_dtype;      /* F32 (default) or BF16 */
    int text_len;             /* 512 (the pipeline's max_sequence_length) */
} dfm_sample_model;

typedef struct {
    const char *prompt;
    const char *negative;     /* NULL: "" */
    int width, height, frames;/* pixels and frames: multiples of 16 (with patch 2 and the VAE's 8) and 4k+1 */
    int steps;
    double guidance;          /* CFG only when > 1 */
    double shift;             /* <= 0: the scheduler config's flow_shift */
    dfm_sampler_kind sampler;
    int sampler_set;          /* 0: the sampler the model's scheduler_config.json names (UniPC for Wan) */
    uint64_t seed;            /* noise from Philox when noise is NULL */
    const float *noise;       /* NULL, or [16, F', H', W'] f32 with F' = (frames-1)/4+1, H' = height/8, W' = width/8 */
} dfm_sample_request;

typedef struct {
    float *latents;           /* [C, F', H', W'] the final normalized latents (before de-normalization) */
    int C, F, H, W;
    uint8_t *frames;          /* [frames, height, width, 3] RGB, NULL when not decoded */
    int nframes, height, width;
    double seconds_denoise;   /* for the summary */
} dfm_sample_result;

/* Progress per step: request index, step, steps (NULL: none). */
typedef void (*dfm_sample_progress)(void *ctx, int request, int step, int steps);

/* Run n requests; out[i] receives request i's results (free with dfm_sample_result_free).
 * decode 0: stop at the latents. Errors name the request (its prompt) and the cause. */
int dfm_sample_run(const dfm_sample_model *m, const dfm_sample_request *req, int n, int decode, dfm_sample_result *out,
                   dfm_sample_progress progress, void *ctx);
void dfm_sample_result_free(dfm_sample_result *r);

/* The phases on their own, for a caller that holds the transformer (dfm-train sampling its model
 * as it trains): the texts of n requests encoded once (the text encoder loaded and freed inside);
 * the denoising of n requests with a given transformer (borrowed: its weights are not changed);
 * the decoding of n results (the VAE loaded and freed inside). */
typedef struct dfm_sample_texts dfm_sample_texts;
struct dfm_wan_transformer;
int dfm_sample_texts_encode(const dfm_sample_model *m, const dfm_sample_request *req, int n, dfm_sample_texts **t);
void dfm_sample_texts_free(dfm_sample_texts *t);
int dfm_sample_denoise(const dfm_sample_model *m, struct dfm_wan_transformer *tr, const dfm_sample_request *req, int n,
                       const dfm_sample_texts *t, dfm_sample_result *out, dfm_sample_progress progress, void *ctx);
int dfm_sample_decode(const dfm_sample_model *m, dfm_sample_result *out, int n);

/* The size rules of WanPipeline: frames not 4k+1 become frames/4*4+1 (diffusers' rounding, with its
 * warning); height/width rounded down to multiples of 16 (vae scale 8 x patch 2); returns 1 when
 * something changed (the caller warns). */
int dfm_sample_round_size(int *width, int *height, int *frames);

#endif
