/* prompt_clean.h — the text cleaning diffusers' Wan pipeline applies to every prompt before the
 * tokenizer (pipeline_wan.py prompt_clean = whitespace_clean(basic_clean(text))): HTML entities
 * unescaped twice (html.unescape), stripped, then every run of white space collapsed to one space
 * and stripped again. So `a&amp;amp;b   c ` and `a&b c` give the same states, in dfm-text-encode
 * and in dfm-sample as in diffusers.
 * Not here: ftfy.fix_text, which diffusers applies only when the ftfy package happens to be
 * installed (a heuristic mojibake fixer); dfm follows an environment without it.
 * Entities: numeric (&#39; &#x27;, with html.unescape's replacements of invalid code points) and the
 * named entities prompts carry (&amp; &lt; &gt; &quot; &apos; &nbsp; and the Latin-1, typographic
 * and a few symbol names); an unknown name is left as it is, as html.unescape leaves it.
 * White space: what the regex module's \s matches (Unicode White_Space; not U+001C..U+001F, which
 * str.isspace() takes): runs of it become one space; basic_clean's str.strip() also removes
 * U+001C..U+001F at the two ends.
 */
#ifndef DFM_TEXT_PROMPT_CLEAN_H
#define DFM_TEXT_PROMPT_CLEAN_H
#include <stddef.h>

/* The cleaned text of s[0..len) (UTF-8) as a malloc'd NUL-terminated string (free()); NULL on out
 * of memory. Invalid UTF-8 is copied through byte for byte (the tokenizer reports it). */
char *dfm_prompt_clean(const char *s, size_t len);

#endif
