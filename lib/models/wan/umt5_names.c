/* umt5_names.c — the weight-name table of the UMT5 encoder (names.h).
 *
 * Canonical: transformers UMT5EncoderModel (wan.md 3.3). The embedding is one tensor with two
 * names (UMT5Model.shared, tied to encoder.embed_tokens); save_pretrained keeps one of them,
 * either may come. A full UMT5 checkpoint also holds the decoder and the LM head, which the
 * encoder leaves alone. No other family: the original Wan T5 (models_t5_umt5-xxl-enc-bf16.pth)
 * is a pickle, and ComfyUI's text-encoder files use the transformers names.
 * ref: transformers models/umt5/modeling_umt5.py UMT5EncoderModel (_tied_weights_keys)
 */
#include "models/wan/names.h"

#include <stddef.h>

static const dfm_weight_alias ALIASES[] = {{"shared.weight", "encoder.embed_tokens.weight"}, {NULL, NULL}};

static const char *const IGNORE[] = {"decoder.", "lm_head.weight", NULL};

const dfm_weight_names dfm_umt5_names = {
    .model = "UMT5 encoder",
    .canonical = "transformers",
    .aliases = ALIASES,
    .ignore = IGNORE,
};
