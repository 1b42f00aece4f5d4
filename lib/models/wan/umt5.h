/* umt5.h — the UMT5 encoder (transformers UMT5EncoderModel), as Wan 2.1 uses it for its text
 * states: embedding, 24 layers of (T5 RMS norm, self-attention without 1/sqrt(d) scaling plus a
 * per-layer relative position bias, T5 RMS norm, gated-GELU(tanh) FFN), final norm.
 * Weights come from a diffusers text_encoder/ directory (config.json + safetensors, sharded)
 * through the production loaders. ref: transformers models/umt5/modeling_umt5.py
 *
 * Memory (CPU): the safetensors files stay memory-mapped for the model's lifetime.
 *   - The embedding table ([vocab, d_model], 4.2 GB f32 for UMT5-XXL) is always used in place:
 *     an encode touches only the rows of its tokens.
 *   - GEMM weights (default): laid out once at load for the packed-weight GEMM (dfm_packed:
 *     q|k|v and wi_0|wi_1 fused), as F32 in F32 mode (UMT5-XXL: 18.5 GB) or BF16 in BF16 mode
 *     (9.3 GB); the mapped source pages are dropped after each tensor, so the file is read once.
 *   - keep_mapped = 1: no copy; the GEMM weights are used in place from the mapping through
 *     dfm_op_matmul (OpenBLAS), in BF16 mode rounded to bf16 block by block (16 MiB at a time)
 *     on every GEMM — least memory, ~1.5x slower encodes, and disk reads on every encode when the
 *     file does not fit the page cache. (Misaligned or, in BF16 mode, non-bf16 tensors on a
 *     device other than the CPU are copied.)
 *   - Norm weights and relative-bias tables (a few MB) are owned F32 copies (rounded to bf16 in
 *     BF16 mode). Activations of an n-token encode: 4 n (2 d_model + 4 heads d_kv + 2 d_ff) bytes
 *     plus the bias [heads, n, n] in f32 (n = 512: 92 MB + 64 MB for UMT5-XXL), kept by the
 *     model for the next encode (grown when a longer one comes, freed with the model).
 * CUDA: GEMM weights are uploaded as F32 or BF16 by the mode (keep_mapped in F32 mode: the file's
 * dtype), the embedding rows are gathered on the CPU and uploaded per encode.
 *
 * Not here: the tokenizer (lib/text), padding to 512 and the zero rows the Wan pipeline appends
 * (the caller's job: see wan.md 3.4), the decoder, fp16 clamping, dropout.
 */
#ifndef DFM_MODELS_WAN_UMT5_H
#define DFM_MODELS_WAN_UMT5_H
#include <stddef.h>
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
    int keep_mapped;    /* CPU: use the GEMM weights in place, no layout at load (see above) */
} dfm_umt5_opts;

typedef struct dfm_umt5 dfm_umt5;

/* Load from a diffusers root (its text_encoder/ component) or a component directory itself
 * (config.json with model_type "umt5"). Config fields missing from config.json take
 * transformers' UMT5Config defaults; only feed_forward_proj "gated-gelu" is supported. The
 * embedding may be named shared.weight or encoder.embed_tokens.weight (tied; shared.weight wins
 * when both exist). A missing tensor, a wrong shape or a tensor that belongs to no part of the
 * model (decoder.* and lm_head.weight of a full UMT5 checkpoint are ignored) is an error naming
 * it and the directory. */
int dfm_umt5_load(dfm_umt5 **m, const char *model_dir, const dfm_umt5_opts *o);
void dfm_umt5_free(dfm_umt5 *m);
const dfm_umt5_config *dfm_umt5_get_config(const dfm_umt5 *m);
/* The config alone. */
int dfm_umt5_config_load(dfm_umt5_config *cfg, const char *component_dir);
/* Weight bytes the model holds: *owned (allocated copies: host or device) and *mapped (used in
 * place from the mapped files: GEMM weights and the whole embedding table). Either may be NULL. */
void dfm_umt5_memory(const dfm_umt5 *m, size_t *owned, size_t *mapped);

/* ids[0..n) (the valid tokens incl. </s>; padding never enters: masked keys get zero weight in the
 * reference, so encoding only the valid tokens is the same math). out: allocated [n, d_model] F32
 * on the model's device. An id outside [0, vocab_size) or n < 1 is DFM_E_ARG. Computes under the
 * model's own context (BF16 weights: bf16 GEMM inputs, f32 accumulation; tensor/compute.h), so
 * other models in the process keep theirs. One encode at a time per model (it reuses its
 * activation workspace). */
int dfm_umt5_encode(dfm_umt5 *m, const int32_t *ids, int n, dfm_tensor *out);

/* The encoder's (bidirectional) relative position bucket of rel = key position - query position,
 * evaluated in float32 exactly as transformers' _relative_position_bucket does (torch.log of the
 * f32 ratio, divided by log(max_distance / max_exact) rounded to f32, times the bucket span,
 * truncated). num_buckets >= 4, max_distance > num_buckets / 4. */
int dfm_umt5_rel_bucket(int64_t rel, int num_buckets, int max_distance);

#endif
