/* utf8.h — UTF-8 validity: what the sample stream promises for keys, captions and JSON text. */
#ifndef DFM_BASE_UTF8_H
#define DFM_BASE_UTF8_H
#include <stddef.h>

/* Length (1..4) of the valid UTF-8 sequence starting at p (NUL-terminated), 0 if invalid
 * (overlong forms, surrogates and code points past U+10FFFF are invalid). */
int dfm_utf8_len(const unsigned char *p);
/* 1 if the n bytes at p are valid UTF-8; NUL bytes count as valid only when allow_nul. */
int dfm_utf8_check(const char *p, size_t n, int allow_nul);
/* 1 if the n bytes at p are valid UTF-8 with no NUL (text that becomes a C string or JSON). */
int dfm_utf8_valid(const char *p, size_t n);
/* A copy of s with every invalid byte replaced by U+FFFD (malloc'd; NULL on out of memory). */
char *dfm_utf8_sanitize(const char *s);

#endif
