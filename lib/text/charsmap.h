/* charsmap.h — SentencePiece's precompiled_charsmap normalizer as Hugging Face applies it
 * (tokenizers normalizers/precompiled.rs over the spm_precompiled crate).
 *
 * The charsmap is u32 LE trie_size, trie_size/4 u32 LE units of a Darts double array, then a blob
 * of NUL-terminated UTF-8 replacements. HF walks the text by extended grapheme cluster: a cluster
 * of fewer than 6 bytes with any match of the trie's common-prefix search over its bytes is
 * replaced whole by the replacement of the first (shortest) match; otherwise each code point is
 * replaced by its own match, or kept. This is not SentencePiece's own normalizer (greedy longest
 * prefix over the raw string); it is what tokenizer.json users get. Untrusted charsmaps: every
 * array and blob access is bounds-checked; an out-of-range unit or replacement is "no match"
 * (where the Rust code would panic).
 */
#ifndef DFM_TEXT_CHARSMAP_H
#define DFM_TEXT_CHARSMAP_H
#include "base/buf.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t *units;
    size_t n_units;
    char *blob; /* replacement strings (valid UTF-8, NULs included) */
    size_t blob_len;
    int32_t ascii[128]; /* replacement offset of each ASCII byte alone, -1 if none */
} dfm_charsmap;

/* Parse the raw (base64-decoded) charsmap bytes. DFM_E_FORMAT if shorter than 4 bytes, if the
 * trie runs past the data, or if the replacement blob is not valid UTF-8 (as spm_precompiled). */
int dfm_charsmap_init(dfm_charsmap *m, const uint8_t *data, size_t n);
void dfm_charsmap_free(dfm_charsmap *m);
/* Append the normalization of s[0..n) (valid UTF-8) to out. */
int dfm_charsmap_normalize(const dfm_charsmap *m, const char *s, size_t n, dfm_buf *out);

#endif
