/* text_stage.h — the per-sample work of dfm-text-encode: `txt` -> `tokens.npy` (int32 [L]) and
 * `text.npy` ([L, d_model] f16/f32, the UMT5 states of the L valid tokens incl. </s>, i.e. the rows
 * the Wan pipeline keeps before it zero-pads to 512). Identical captions are encoded once: the
 * last `cache_entries` distinct captions and their results are kept (bounded memory).
 * A leading byte order mark (U+FEFF) is not tokenized; the caption is cleaned as the Wan pipeline
 * cleans prompts first (text/prompt_clean.h: HTML entities, runs of white space). txt that is not UTF-8 is DFM_E_FORMAT
 * naming the offset; a NaN or Inf in the states (as computed, or past float16's range once
 * stored as F16) is DFM_E_NONFINITE (tensor/finite.h).
 */
#ifndef DFM_MODELS_WAN_TEXT_STAGE_H
#define DFM_MODELS_WAN_TEXT_STAGE_H
#include "io/sample.h"
#include "models/wan/umt5.h"
#include "text/tokenizer.h"

typedef struct {
    const char *model;    /* recorded in json */
    int max_length;       /* tokens incl. </s> (default 512) */
    int tokens_only;      /* no encoder: tokens.npy only */
    dfm_dtype out_dtype;  /* F16 (default) or F32 */
    int cache_entries;    /* default 256 */
} dfm_text_opts;

typedef struct dfm_text_encoder dfm_text_encoder;

/* enc may be NULL with tokens_only. Both are borrowed. */
int dfm_text_encoder_new(dfm_text_encoder **te, const dfm_text_opts *o, const dfm_tokenizer *tok, dfm_umt5 *enc);
void dfm_text_encoder_free(dfm_text_encoder *te);
int dfm_text_encode_sample(dfm_text_encoder *te, dfm_sample *s);
/* Cache hits so far (for the summary). */
uint64_t dfm_text_encoder_hits(const dfm_text_encoder *te);

#endif
