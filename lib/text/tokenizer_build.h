/* tokenizer_build.h — the inside of dfm_tokenizer and how it is built: the struct, the builders
 * the two file loaders call (tokenizer_json.c, spm_model.c), and the pieces of the encode
 * pipeline that building needs too (the normalizer steps, the added-token lookup). Implemented by
 * tokenizer_build.c; not for modules outside lib/text.
 *
 * The pipeline is tokenizers' TokenizerImpl::encode_single_sequence restricted to what T5/UMT5
 * files use: added tokens (raw, then normalized) -> normalizer steps -> pre-tokenizer steps ->
 * Unigram -> truncation -> template tokens (tokenizer.c runs it).
 * Includes go one way: tokenizer_build.h <- tokenizer_json.h, spm_model.h <- tokenizer.c; this
 * header does not include the public tokenizer.h (it repeats its typedef instead).
 */
#ifndef DFM_TEXT_TOKENIZER_BUILD_H
#define DFM_TEXT_TOKENIZER_BUILD_H
#include "base/buf.h"
#include "text/charsmap.h"
#include "text/unigram.h"

#include <stddef.h>
#include <stdint.h>

typedef struct dfm_tokenizer dfm_tokenizer; /* as in tokenizer.h */

typedef struct {
    char *content; /* as written in the file */
    size_t len;
    char *match;   /* what is searched for: content, or its normalized form when normalized */
    size_t match_len;
    int32_t id;
    unsigned char single_word, lstrip, rstrip, normalized, special;
} dfm_tok_added;

enum { DFM_NORM_PRECOMPILED = 1, DFM_NORM_REPLACE, DFM_NORM_STRIP, DFM_NORM_PREPEND };

typedef struct {
    int type;
    dfm_charsmap cm;   /* PRECOMPILED */
    char *pat;         /* REPLACE: the literal, or the one repeated code point of a regex */
    size_t pat_len;
    int rep_min, rep_max; /* REPLACE regex "X{m,n}": m >= 1, n = -1 unbounded; m == 0: literal */
    char *content;     /* REPLACE content, PREPEND string */
    size_t content_len;
    int left, right;   /* STRIP */
} dfm_norm_step;

enum { DFM_PRE_METASPACE = 1, DFM_PRE_WHITESPACE_SPLIT };
enum { DFM_PREPEND_ALWAYS, DFM_PREPEND_FIRST, DFM_PREPEND_NEVER };

typedef struct {
    int type;
    char repl[5];      /* METASPACE: the replacement character (UTF-8) */
    size_t repl_len;
    int prepend;       /* DFM_PREPEND_* */
    int split;
} dfm_pre_step;

struct dfm_tokenizer {
    char *source; /* the file it came from, for messages */
    dfm_unigram model;
    dfm_tok_added *added;
    int n_added, cap_added;
    uint32_t *added_slot;   /* content -> index in `added`: open addressing, slot = index + 1 */
    uint32_t added_mask;    /* slots - 1 (0 with no table) */
    int32_t added_max_id;   /* the largest id of an added token, -1 if none */
    dfm_unigram raw_dict, norm_dict; /* added tokens by match string; ids index `added` */
    int has_raw, has_norm;
    dfm_norm_step *norm;
    int n_norm, cap_norm;
    dfm_pre_step *pre;
    int n_pre, cap_pre;
    int32_t *prefix, *suffix; /* post-processor ids around the content */
    int n_prefix, n_suffix, cap_prefix, cap_suffix;
    int32_t vocab_size;
};

/* An empty tokenizer for the loaders to fill (free with dfm_tokenizer_free); NULL on no memory. */
dfm_tokenizer *dfm_tok_new(void);
/* Room for `need` elements of `size` bytes in *arr (capacity *cap, grown geometrically), so that
 * filling an array one element at a time stays linear whatever the file declares. */
int dfm_tok_reserve(void **arr, int *cap, int need, size_t size);
/* Builders used by the two loaders. */
int dfm_tok_add_norm(dfm_tokenizer *t, const dfm_norm_step *s); /* takes ownership of s's buffers */
int dfm_tok_add_pre(dfm_tokenizer *t, const dfm_pre_step *s);
/* Add tokens the way AddedVocabulary::add_tokens does: an existing content keeps its id (the
 * added vocabulary first, then the model), a new one gets the next id after the model (or after
 * the largest added id past it). `content` is copied. Constant time per token (a hash lookup):
 * a file may add a million. */
int dfm_tok_add_token(dfm_tokenizer *t, const char *content, size_t len, int single_word, int lstrip,
                      int rstrip, int normalized, int special);
/* After all of the above: normalize the normalized added tokens, build the matchers. */
int dfm_tok_finish(dfm_tokenizer *t);
/* Replace normalizer from a tokenizer.json pattern: is_regex selects Regex vs String. pat and
 * content are checked to be valid UTF-8 before anything reads them (DFM_E_FORMAT). */
int dfm_tok_replace_step(dfm_norm_step *s, const char *pat, int is_regex, const char *content);

/* The id of a token string: the added token with that content, else the model's piece; -1. */
int32_t dfm_tok_token_id(const dfm_tokenizer *t, const char *s, size_t len);

/* Run every normalizer step of t over s[0..n) (valid UTF-8), alternating between the buffers a
 * and b (owned by the caller, reused across calls); *out, *out_len: the result, in a or b, or s
 * itself when t has no steps. *lead: set to 1 by the caller; cleared when the first character
 * no longer comes from the first original one (what Metaspace's prepend_scheme "first" tests). */
int dfm_tok_normalize(const dfm_tokenizer *t, const char *s, size_t n, dfm_buf *a, dfm_buf *b, const char **out,
                      size_t *out_len, int *lead);

#endif
