/* tokenizer_build.c — building a dfm_tokenizer (see tokenizer_build.h): the builders the file
 * loaders call, the added-token index, and the normalizer steps (used when the added tokens are
 * finished and by the encode pipeline in tokenizer.c). Not here: reading files (tokenizer_json.c,
 * spm_model.c), choosing the file and encoding text (tokenizer.c).
 * ref: tokenizers tokenizer/added_vocabulary.rs (add_tokens), normalizers/ (replace.rs, strip.rs,
 * prepend.rs, precompiled.rs), normalizers/mod.rs (Sequence).
 */
#include "text/tokenizer_build.h"
#include "base/buf.h"
#include "base/error.h"
#include "base/strset.h"
#include "base/utf8.h"
#include "text/grapheme.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------
 * Building */

dfm_tokenizer *dfm_tok_new(void)
{
    dfm_tokenizer *t = dfm_calloc(1, sizeof *t);
    if (!t) return NULL;
    dfm_unigram_init(&t->model);
    dfm_unigram_init(&t->raw_dict);
    dfm_unigram_init(&t->norm_dict);
    t->added_max_id = -1;
    return t;
}

int dfm_tok_reserve(void **arr, int *cap, int need, size_t size)
{
    if (need <= *cap) return 0;
    if (need > INT32_MAX / 2) return dfm_fail(DFM_E_LIMIT, "more than 2^30 tokenizer entries");
    int c = *cap ? *cap : 8;
    while (c < need) c *= 2;
    void *p = dfm_realloc(*arr, (size_t)c * size);
    if (!p) return DFM_E_NOMEM;
    *arr = p;
    *cap = c;
    return 0;
}

int dfm_tok_add_norm(dfm_tokenizer *t, const dfm_norm_step *s)
{
    int rc = dfm_tok_reserve((void **)&t->norm, &t->cap_norm, t->n_norm + 1, sizeof *t->norm);
    if (rc) return rc;
    t->norm[t->n_norm++] = *s;
    return 0;
}

int dfm_tok_add_pre(dfm_tokenizer *t, const dfm_pre_step *s)
{
    int rc = dfm_tok_reserve((void **)&t->pre, &t->cap_pre, t->n_pre + 1, sizeof *t->pre);
    if (rc) return rc;
    t->pre[t->n_pre++] = *s;
    return 0;
}

int dfm_tok_replace_step(dfm_norm_step *s, const char *pat, int is_regex, const char *content)
{
    memset(s, 0, sizeof *s);
    s->type = DFM_NORM_REPLACE;
    size_t n = strlen(pat);
    /* first: the regex scan below steps over whole UTF-8 sequences */
    if (!dfm_utf8_valid(pat, n)) return dfm_fail(DFM_E_FORMAT, "Replace normalizer: pattern is not valid UTF-8");
    if (!dfm_utf8_valid(content, strlen(content)))
        return dfm_fail(DFM_E_FORMAT, "Replace normalizer: content is not valid UTF-8");
    if (!is_regex) {
        if (!n) return dfm_fail(DFM_E_UNSUPPORTED, "Replace normalizer with an empty pattern");
        s->pat = dfm_strdup(pat);
        s->pat_len = n;
    } else {
        /* A regex we can run without a regex engine: literal characters (escaped metacharacters
         * allowed), or one literal character followed by a quantifier {m}, {m,}, {m,n} or +. */
        dfm_buf lit = {0};
        const char *p = pat;
        int rc = 0, chars = 0;
        while (*p && !rc) {
            if (*p == '\\' && p[1] && strchr(".^$|?*+()[]{}\\/- ", p[1])) {
                rc = dfm_buf_append(&lit, p + 1, 1);
                p += 2;
            } else if (strchr(".^$|?*+()[]{}\\", *p)) {
                break;
            } else {
                int k = dfm_u8_len((unsigned char)*p);
                rc = dfm_buf_append(&lit, p, (size_t)k);
                p += k;
            }
            chars++;
        }
        int mn = 0, mx = 0;
        if (!rc && *p && chars == 1) {
            if (*p == '+' && !p[1]) {
                mn = 1, mx = -1, p++;
            } else if (*p == '{') {
                char *e;
                long a = strtol(p + 1, &e, 10), b;
                if (e == p + 1 || a < 1 || a > 100000) goto unsupported;
                if (*e == '}') {
                    b = a;
                } else if (*e == ',' && e[1] == '}') {
                    b = -1;
                    e++;
                } else if (*e == ',') {
                    const char *f = e + 1;
                    b = strtol(f, &e, 10);
                    if (e == f || b < a || *e != '}') goto unsupported;
                } else {
                    goto unsupported;
                }
                if (e[1]) goto unsupported;
                mn = (int)a, mx = (int)b, p = e + 1;
            }
        }
        if (rc || *p || !lit.len) {
        unsupported:
            dfm_buf_free(&lit);
            return rc ? rc : dfm_fail(DFM_E_UNSUPPORTED, "Replace normalizer regex '%s' is not supported "
                                                         "(only literals and X{m,n} / X+ of one character)", pat);
        }
        s->pat_len = lit.len;
        dfm_buf_append(&lit, "", 1);
        s->pat = (char *)dfm_buf_take(&lit, NULL);
        s->rep_min = mn;
        s->rep_max = mx;
    }
    s->content = dfm_strdup(content);
    if (!s->pat || !s->content) {
        free(s->pat);
        free(s->content);
        return DFM_E_NOMEM;
    }
    s->content_len = strlen(content);
    return 0;
}

/* The slot of content s[0..len) in the added-token index: the one holding it, or the empty one
 * where it would go. The table exists and is never full (load <= 1/2). */
static uint32_t added_slot(const dfm_tokenizer *t, const char *s, size_t len)
{
    uint64_t h = dfm_hash_fnv1a(s, len);
    uint32_t i = (uint32_t)(h ^ h >> 29) & t->added_mask; /* FNV's low bits alone mix poorly */
    for (;; i = (i + 1) & t->added_mask) {
        uint32_t v = t->added_slot[i];
        if (!v) return i;
        const dfm_tok_added *a = &t->added[v - 1];
        if (a->len == len && !memcmp(a->content, s, len)) return i;
    }
}

/* The added token with this content, or NULL. */
static dfm_tok_added *find_added(const dfm_tokenizer *t, const char *s, size_t len)
{
    if (!t->added_slot) return NULL;
    uint32_t v = t->added_slot[added_slot(t, s, len)];
    return v ? &t->added[v - 1] : NULL;
}

/* Room in the index for one more token (rehash at half load). */
static int added_index_grow(dfm_tokenizer *t)
{
    uint32_t cap = t->added_slot ? t->added_mask + 1 : 0;
    if ((uint64_t)(t->n_added + 1) * 2 <= cap) return 0;
    uint32_t ncap = cap ? cap * 2 : 64;
    uint32_t *slots = dfm_calloc(ncap, sizeof *slots), *old = t->added_slot;
    if (!slots) return DFM_E_NOMEM;
    t->added_slot = slots;
    t->added_mask = ncap - 1;
    for (int k = 0; k < t->n_added; k++)
        slots[added_slot(t, t->added[k].content, t->added[k].len)] = (uint32_t)k + 1;
    free(old);
    return 0;
}

int32_t dfm_tok_token_id(const dfm_tokenizer *t, const char *s, size_t len)
{
    const dfm_tok_added *a = find_added(t, s, len);
    return a ? a->id : dfm_unigram_id(&t->model, s, len);
}

int dfm_tok_add_token(dfm_tokenizer *t, const char *content, size_t len, int single_word, int lstrip,
                      int rstrip, int normalized, int special)
{
    if (!len) return 0; /* HF ignores empty added tokens */
    if (!dfm_utf8_check(content, len, 1)) return dfm_fail(DFM_E_FORMAT, "added token is not valid UTF-8");
    dfm_tok_added *a = find_added(t, content, len);
    if (a) { /* same content: new flags */
        a->single_word = single_word, a->lstrip = lstrip, a->rstrip = rstrip;
        a->normalized = normalized, a->special = special;
        return 0;
    }
    int32_t id = dfm_unigram_id(&t->model, content, len);
    if (id < 0) {
        int32_t next = t->added_max_id >= t->model.n ? t->added_max_id + 1 : t->model.n;
        if (next == INT32_MAX) return dfm_fail(DFM_E_LIMIT, "too many added tokens");
        id = next;
    }
    int rc = dfm_tok_reserve((void **)&t->added, &t->cap_added, t->n_added + 1, sizeof *t->added);
    if (rc || (rc = added_index_grow(t))) return rc;
    a = &t->added[t->n_added];
    memset(a, 0, sizeof *a);
    a->content = dfm_strndup(content, len);
    if (!a->content) return DFM_E_NOMEM;
    a->len = len;
    a->id = id;
    a->single_word = single_word, a->lstrip = lstrip, a->rstrip = rstrip;
    a->normalized = normalized, a->special = special;
    t->added_slot[added_slot(t, content, len)] = (uint32_t)t->n_added + 1;
    t->n_added++;
    if (id > t->added_max_id) t->added_max_id = id;
    return 0;
}

int dfm_tok_finish(dfm_tokenizer *t)
{
    int rc = 0;
    dfm_buf a = {0}, b = {0};
    dfm_unigram_init(&t->raw_dict);
    dfm_unigram_init(&t->norm_dict);
    for (int i = 0; i < t->n_added && !rc; i++) {
        dfm_tok_added *x = &t->added[i];
        const char *m = x->content;
        size_t ml = x->len;
        if (x->normalized && t->n_norm) {
            int lead = 1;
            rc = dfm_tok_normalize(t, x->content, x->len, &a, &b, &m, &ml, &lead);
            if (rc) break;
        }
        x->match = dfm_strndup(m, ml);
        if (!x->match) {
            rc = DFM_E_NOMEM;
            break;
        }
        x->match_len = ml;
        /* each dictionary holds every added token so that its ids index `added`; the pieces of
         * the other kind are made unmatchable by an empty string (never a match) */
        rc = dfm_unigram_add(&t->raw_dict, x->normalized ? "" : m, x->normalized ? 0 : ml, 0.0);
        if (!rc) rc = dfm_unigram_add(&t->norm_dict, x->normalized ? m : "", x->normalized ? ml : 0, 0.0);
        t->has_raw |= !x->normalized && ml > 0;
        t->has_norm |= x->normalized && ml > 0;
    }
    dfm_buf_free(&a);
    dfm_buf_free(&b);
    if (!rc) rc = dfm_unigram_finish(&t->raw_dict, -1, 0);
    if (!rc) rc = dfm_unigram_finish(&t->norm_dict, -1, 0);
    if (rc) return rc;
    t->vocab_size = t->model.n;
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].id >= t->vocab_size) t->vocab_size = t->added[i].id + 1;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Normalizers */

/* One normalizer step. *lead: the first character still comes from the first original one, as
 * HF's alignments see it (what Metaspace's prepend_scheme "first" tests): Strip removing leading
 * spaces and Replace consuming more than the first character at 0 clear it; Precompiled keeps it
 * (its transform gives the first kept character the alignment of byte 0 even after a deletion). */
static int norm_step(const dfm_norm_step *st, const char *s, size_t n, dfm_buf *out, int *lead)
{
    out->len = 0;
    switch (st->type) {
    case DFM_NORM_PRECOMPILED:
        return dfm_charsmap_normalize(&st->cm, s, n, out);
    case DFM_NORM_PREPEND:
        if (n && dfm_buf_append(out, st->content, st->content_len)) return DFM_E_NOMEM;
        return dfm_buf_append(out, s, n);
    case DFM_NORM_STRIP: {
        size_t a = 0, b = n;
        int k;
        if (st->left)
            while (a < n && dfm_uni_is_space_at(s, a, &k)) a += (size_t)k;
        if (a > 0) *lead = 0;
        if (st->right) {
            while (b > a) {
                size_t c = b - 1;
                while (c > a && ((unsigned char)s[c] & 0xC0) == 0x80) c--;
                if (!dfm_uni_is_space_at(s, c, &k)) break;
                b = c;
            }
        }
        return dfm_buf_append(out, s + a, b - a);
    }
    case DFM_NORM_REPLACE: {
        size_t i = 0, last = 0;
        int rc = dfm_buf_reserve(out, n);
        if (rc) return rc;
        if (st->rep_min == 0) { /* literal, leftmost non-overlapping */
            while (i + st->pat_len <= n) {
                const char *f = memmem(s + i, n - i, st->pat, st->pat_len);
                if (!f) break;
                size_t at = (size_t)(f - s);
                if (at == 0 && (!st->content_len || (size_t)dfm_u8_len((unsigned char)s[0]) < st->pat_len)) *lead = 0;
                if (dfm_buf_append(out, s + last, at - last) || dfm_buf_append(out, st->content, st->content_len))
                    return DFM_E_NOMEM;
                i = last = at + st->pat_len;
            }
        } else { /* one character repeated rep_min..rep_max times, greedy */
            while (i < n) {
                size_t run = 0, j = i;
                while (j + st->pat_len <= n && !memcmp(s + j, st->pat, st->pat_len) &&
                       (st->rep_max < 0 || run < (size_t)st->rep_max)) {
                    run++;
                    j += st->pat_len;
                }
                if (run >= (size_t)st->rep_min) {
                    if (i == 0 && (!st->content_len || run > 1)) *lead = 0;
                    if (dfm_buf_append(out, s + last, i - last) || dfm_buf_append(out, st->content, st->content_len))
                        return DFM_E_NOMEM;
                    i = last = j;
                } else {
                    i = run ? j : i + (size_t)dfm_u8_len((unsigned char)s[i]);
                }
            }
        }
        return dfm_buf_append(out, s + last, n - last);
    }
    }
    return dfm_fail(DFM_E_UNSUPPORTED, "unknown normalizer step");
}

/* Run every normalizer step; the result is in a or b (or s itself when there are no steps). */
int dfm_tok_normalize(const dfm_tokenizer *t, const char *s, size_t n, dfm_buf *a, dfm_buf *b, const char **out,
                      size_t *out_len, int *lead)
{
    const char *cur = s;
    size_t cur_len = n;
    for (int i = 0; i < t->n_norm; i++) {
        dfm_buf *dst = cur == (const char *)a->data ? b : a;
        int rc = norm_step(&t->norm[i], cur, cur_len, dst, lead);
        if (rc) return rc;
        if (dfm_buf_reserve(dst, 1)) return DFM_E_NOMEM; /* data non-NULL even when empty */
        cur = (const char *)dst->data;
        cur_len = dst->len;
    }
    *out = cur;
    *out_len = cur_len;
    return 0;
}
