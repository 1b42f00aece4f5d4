/* umt5.h — the UMT5 encoder (transformers UMT5EncoderModel), as Wan 2.1 uses it for its text
 * states: embedding, 24 layers of (T5 RMS norm, self-attention without 1/sqrt(d) scaling plus a
 * per-layer relative position bias, T5 RMS norm, gated-GELU(tanh) FFN), final norm.
 * Weights come from a diffusers text_encoder/ directory (config.json + safetensors, sharded)
 * through the production loaders. ref: transformers models/umt5/modeling_umt5.py
 */
#ifndef DFM_MODELS_WAN_UMT5_H
#define DFM_MODELS_WAN_UMT5_H
#include <stdint.h>
#include "tensor/tensor.h"

typedef struct {
    int d_model, d_kv, num_heads, d_ff, num_layers, vocab_size;
    int rel_buckets, rel_max_distance;
    double eps;
    int gated_gelu; /* feed_forward_proj "gated-gelu" */
} dfm_umt5_config;

typedef struct {
    dfm_device device;
    dfm_dtype weights;  /* F32, or BF16 (weights kept bf16; GEMM inputs rounded to bf16) */
} dfm_umt5_opts;

typedef struct dfm_umt5 dfm_umt5;

int dfm_umt5_load(dfm_umt5 **m, const char *model_dir, const dfm_umt5_opts *o);
void dfm_umt5_free(dfm_umt5 *m);
const dfm_umt5_config *dfm_umt5_get_config(const dfm_umt5 *m);
/* ids[0..n) (the valid tokens incl. </s>; padding never enters: masked keys get zero weight in the
 * reference, so encoding only the valid tokens is the same math). out: allocated [n, d_model] F32. */
int dfm_umt5_encode(dfm_umt5 *m, const int32_t *ids, int n, dfm_tensor *out);

#endif
