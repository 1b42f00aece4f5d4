/* tokenizer.h — SentencePiece Unigram tokenization exactly as Hugging Face's fast tokenizer
 * (T5TokenizerFast / tokenizers) does it for T5 and UMT5: added (special) tokens, the precompiled
 * charsmap normalizer per grapheme cluster, the Metaspace pre-tokenizer, Viterbi segmentation with
 * fused unknowns, and `</s>` appended. Loads `tokenizer.json` (Hugging Face) or `spiece.model`
 * (SentencePiece protobuf, with T5's sentinel tokens added). No tensors here (lib/text is below
 * lib/tensor). ref: huggingface/tokenizers unigram/model.rs, normalizers/precompiled.rs,
 * pre_tokenizers/metaspace.rs; transformers convert_slow_tokenizer.py (T5Converter).
 */
#ifndef DFM_TEXT_TOKENIZER_H
#define DFM_TEXT_TOKENIZER_H
#include <stddef.h>
#include <stdint.h>

typedef struct dfm_tokenizer dfm_tokenizer;

/* `path`: a tokenizer directory (tokenizer.json preferred, else spiece.model with the
 * tokenizer_config.json beside it), a diffusers root with tokenizer/, or one of the two files.
 * Errors name the file and what is wrong: DFM_E_IO (missing), DFM_E_FORMAT (corrupt),
 * DFM_E_UNSUPPORTED (a component type other than those T5/UMT5 use: see tokenizer_json.c).
 * The tokenizer is immutable once loaded: encode from any number of threads. */
int dfm_tokenizer_load(dfm_tokenizer **t, const char *path);
void dfm_tokenizer_free(dfm_tokenizer *t);
/* 1 + the largest id the tokenizer can produce (model pieces and added tokens). */
int dfm_tokenizer_vocab_size(const dfm_tokenizer *t);
int dfm_tokenizer_eos_id(const dfm_tokenizer *t); /* "</s>", else the last template token; -1 */
int dfm_tokenizer_pad_id(const dfm_tokenizer *t); /* "<pad>"; -1 if none */
/* The id of a token string (added tokens first, then the model's pieces); -1 if none. */
int32_t dfm_tokenizer_token_id(const dfm_tokenizer *t, const char *token);

/* Token ids of text (UTF-8, len bytes; NUL is a character like any other), as the HF fast
 * tokenizer with add_special_tokens=True: content ids truncated to max_length minus the
 * post-processor's tokens (T5: max_length - 1), then those tokens (T5: </s>). max_length <= 0: no
 * truncation. "" gives [</s>]. Invalid UTF-8 is DFM_E_FORMAT; a max_length too small for the
 * special tokens is DFM_E_ARG. *ids is malloc'd (free()), *n its length. No padding: pad with
 * dfm_tokenizer_pad_id() to the length the model wants. */
int dfm_tokenizer_encode(const dfm_tokenizer *t, const char *text, size_t len, int max_length,
                         int32_t **ids, int *n);
/* The piece string of an id (for debugging and tests); NULL if out of range. */
const char *dfm_tokenizer_piece(const dfm_tokenizer *t, int32_t id);

#endif
