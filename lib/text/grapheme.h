/* grapheme.h — the Unicode facts the tokenizer needs, exactly as the Rust crates behind Hugging
 * Face tokenizers see them: extended grapheme clusters (UAX #29 as unicode-segmentation 1.13
 * implements it, Unicode 17, with GB9c Indic conjuncts), White_Space (Rust char::is_whitespace)
 * and the regex class \w (Rust regex: Alphabetic, M, Nd, Pc, Join_Control). Tables are generated
 * (unicode_tables.h, by scripts/make-tokenizer-fixtures.py --unicode-tables). Not a general
 * Unicode library: no normalization forms, no case mapping, no word or line breaks.
 */
#ifndef DFM_TEXT_GRAPHEME_H
#define DFM_TEXT_GRAPHEME_H
#include <stddef.h>
#include <stdint.h>

/* Decode the code point at p (valid UTF-8 assumed, at least one byte); returns its length. */
static inline int dfm_u8_decode(const unsigned char *p, uint32_t *cp)
{
    if (p[0] < 0x80) {
        *cp = p[0];
        return 1;
    }
    if (p[0] < 0xE0) {
        *cp = (uint32_t)(p[0] & 0x1F) << 6 | (p[1] & 0x3F);
        return 2;
    }
    if (p[0] < 0xF0) {
        *cp = (uint32_t)(p[0] & 0x0F) << 12 | (uint32_t)(p[1] & 0x3F) << 6 | (p[2] & 0x3F);
        return 3;
    }
    *cp = (uint32_t)(p[0] & 0x07) << 18 | (uint32_t)(p[1] & 0x3F) << 12 |
          (uint32_t)(p[2] & 0x3F) << 6 | (p[3] & 0x3F);
    return 4;
}

/* Length in bytes of the UTF-8 sequence starting with byte b (valid UTF-8 assumed). */
static inline int dfm_u8_len(unsigned char b)
{
    return b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
}


/* Byte length of the extended grapheme cluster that starts s[0..n) (n > 0, valid UTF-8).
 * ref: unicode-segmentation grapheme.rs GraphemeCursor::next_boundary (is_extended = true). */
size_t dfm_grapheme_len(const char *s, size_t n);

/* White_Space (Rust char::is_whitespace). */
int dfm_uni_is_space(uint32_t cp);
/* White_Space of the code point at s + i (valid UTF-8 assumed); its byte length in *len. */
static inline int dfm_uni_is_space_at(const char *s, size_t i, int *len)
{
    uint32_t cp;
    *len = dfm_u8_decode((const unsigned char *)s + i, &cp);
    return dfm_uni_is_space(cp);
}
/* The regex class \w (Rust regex crate, Unicode mode). */
int dfm_uni_is_word(uint32_t cp);

#endif
