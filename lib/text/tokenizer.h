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

/* `path`: a tokenizer directory (tokenizer.json preferred, else spiece.model), a diffusers root
 * with tokenizer/, or one of the two files. Errors name the file and what is wrong. */
int dfm_tokenizer_load(dfm_tokenizer **t, const char *path);
void dfm_tokenizer_free(dfm_tokenizer *t);
int dfm_tokenizer_vocab_size(const dfm_tokenizer *t); /* including added tokens */
int dfm_tokenizer_eos_id(const dfm_tokenizer *t);
int dfm_tokenizer_pad_id(const dfm_tokenizer *t);

/* Token ids of text (UTF-8, len bytes): content ids truncated to max_length - 1, then </s>
 * (max_length <= 0: no truncation). Invalid UTF-8 is DFM_E_FORMAT. *ids is malloc'd. */
int dfm_tokenizer_encode(const dfm_tokenizer *t, const char *text, size_t len, int max_length,
                         int32_t **ids, int *n);
/* The piece string of an id (for debugging and tests); NULL if out of range. */
const char *dfm_tokenizer_piece(const dfm_tokenizer *t, int32_t id);

#endif
