/* tokenizer.c — loading dispatch and the encode pipeline of dfm_tokenizer; see tokenizer.h and
 * tokenizer_impl.h. The file formats live in tokenizer_json.c and spm_model.c.
 * ref: tokenizers tokenizer/mod.rs (encode_single_sequence, post_process), tokenizer/
 * added_vocabulary.rs (add_tokens, find_matches, extract_and_normalize), normalizers/
 * (replace.rs, strip.rs, prepend.rs), pre_tokenizers/metaspace.rs, whitespace.rs,
 * processors/template.rs, utils/truncation.rs.
 */
#include "base/utf8.h"
#include "text/tokenizer.h"
#include "base/buf.h"
#include "base/error.h"
#include "base/strset.h"
#include "io/hfmodel.h"
#include "text/grapheme.h"
#include "text/tokenizer_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

static int32_t token_to_id(const dfm_tokenizer *t, const char *s, size_t len)
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

static int normalize(const dfm_tokenizer *t, const char *s, size_t n, dfm_buf *a, dfm_buf *b, const char **out,
                     size_t *out_len, int *lead);

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
            rc = normalize(t, x->content, x->len, &a, &b, &m, &ml, &lead);
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
 * Loading */

static int is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int load_dir(dfm_tokenizer *t, const char *dir, int depth)
{
    size_t n = strlen(dir) + 32;
    char *json = malloc(n), *spm = malloc(n), *cfg = malloc(n);
    int rc;
    if (!json || !spm || !cfg) {
        rc = dfm_fail(DFM_E_NOMEM, "out of memory");
        goto done;
    }
    snprintf(json, n, "%s/tokenizer.json", dir);
    snprintf(spm, n, "%s/spiece.model", dir);
    snprintf(cfg, n, "%s/tokenizer_config.json", dir);
    if (is_file(json)) {
        rc = dfm_tok_load_json(t, json);
    } else if (is_file(spm)) {
        rc = dfm_tok_load_spm(t, spm, is_file(cfg) ? cfg : NULL);
    } else if (depth == 0) {
        char *comp = NULL;
        rc = dfm_hf_component(dir, "tokenizer", NULL, &comp);
        if (rc >= 0 && comp && strcmp(comp, dir)) {
            rc = load_dir(t, comp, 1);
        } else {
            rc = dfm_fail(DFM_E_IO, "tokenizer '%s': no tokenizer.json or spiece.model there, and no "
                                    "tokenizer/ component", dir);
        }
        free(comp);
    } else {
        rc = dfm_fail(DFM_E_IO, "tokenizer '%s': no tokenizer.json or spiece.model", dir);
    }
done:
    free(json);
    free(spm);
    free(cfg);
    return rc;
}

int dfm_tokenizer_load(dfm_tokenizer **out, const char *path)
{
    *out = NULL;
    dfm_tokenizer *t = dfm_tok_new();
    if (!t) return DFM_E_NOMEM;
    int rc;
    if (is_dir(path)) {
        rc = load_dir(t, path, 0);
    } else if (is_file(path)) {
        /* a JSON document starts with '{'; spiece.model is a protobuf (first byte 0x0A) */
        FILE *f = fopen(path, "rb");
        int c = ' ';
        if (f) {
            while ((c = fgetc(f)) == ' ' || c == '\n' || c == '\r' || c == '\t') {}
            fclose(f);
        }
        if (c == '{') {
            rc = dfm_tok_load_json(t, path);
        } else {
            const char *slash = strrchr(path, '/');
            size_t dl = slash ? (size_t)(slash - path) : 1;
            char *cfg = malloc(dl + 32);
            if (!cfg) {
                rc = dfm_fail(DFM_E_NOMEM, "out of memory");
            } else {
                snprintf(cfg, dl + 32, "%.*s/tokenizer_config.json", (int)dl, slash ? path : ".");
                rc = dfm_tok_load_spm(t, path, is_file(cfg) ? cfg : NULL);
                free(cfg);
            }
        }
    } else {
        rc = dfm_fail(DFM_E_IO, "tokenizer '%s': no such file or directory", path);
    }
    if (rc < 0) {
        dfm_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void dfm_tokenizer_free(dfm_tokenizer *t)
{
    if (!t) return;
    free(t->source);
    dfm_unigram_free(&t->model);
    dfm_unigram_free(&t->raw_dict);
    dfm_unigram_free(&t->norm_dict);
    for (int i = 0; i < t->n_added; i++) {
        free(t->added[i].content);
        free(t->added[i].match);
    }
    free(t->added);
    free(t->added_slot);
    for (int i = 0; i < t->n_norm; i++) {
        dfm_charsmap_free(&t->norm[i].cm);
        free(t->norm[i].pat);
        free(t->norm[i].content);
    }
    free(t->norm);
    free(t->pre);
    free(t->prefix);
    free(t->suffix);
    free(t);
}

int dfm_tokenizer_vocab_size(const dfm_tokenizer *t) { return t->vocab_size; }

int dfm_tokenizer_eos_id(const dfm_tokenizer *t)
{
    int32_t id = token_to_id(t, "</s>", 4);
    if (id >= 0) return id;
    return t->n_suffix ? t->suffix[t->n_suffix - 1] : -1;
}

int dfm_tokenizer_pad_id(const dfm_tokenizer *t) { return token_to_id(t, "<pad>", 5); }

int32_t dfm_tokenizer_token_id(const dfm_tokenizer *t, const char *token)
{
    return token_to_id(t, token, strlen(token));
}

const char *dfm_tokenizer_piece(const dfm_tokenizer *t, int32_t id)
{
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].id == id) return t->added[i].content;
    return dfm_unigram_piece(&t->model, id);
}

/* ---------------------------------------------------------------------------------------------
 * Normalizers */

static int is_space_at(const char *s, size_t n, size_t i, int *k)
{
    uint32_t cp;
    (void)n;
    *k = dfm_u8_decode((const unsigned char *)s + i, &cp);
    return dfm_uni_is_space(cp);
}

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
            while (a < n && is_space_at(s, n, a, &k)) a += (size_t)k;
        if (a > 0) *lead = 0;
        if (st->right) {
            while (b > a) {
                size_t c = b - 1;
                while (c > a && ((unsigned char)s[c] & 0xC0) == 0x80) c--;
                if (!is_space_at(s, n, c, &k)) break;
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
static int normalize(const dfm_tokenizer *t, const char *s, size_t n, dfm_buf *a, dfm_buf *b, const char **out,
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

/* ---------------------------------------------------------------------------------------------
 * Encoding */

typedef struct {
    const dfm_tokenizer *t;
    int32_t *ids;
    size_t n_ids, cap;
    size_t limit; /* stop once this many content ids exist (SIZE_MAX: none) */
    dfm_buf na, nb;              /* normalizer buffers */
    dfm_buf pa, pb;              /* pre-tokenizer strings */
    size_t *pieces, *pieces2;    /* (offset, length, first) triples */
    size_t n_pieces, cap_pieces, cap_pieces2;
    dfm_unigram_scratch w;
} enc_ctx;

static int push(enc_ctx *c, int32_t id)
{
    if (c->n_ids == c->cap) {
        size_t n = c->cap ? c->cap * 2 : 64;
        int32_t *p = dfm_realloc(c->ids, n * sizeof *p);
        if (!p) return DFM_E_NOMEM;
        c->ids = p;
        c->cap = n;
    }
    c->ids[c->n_ids++] = id;
    return 0;
}

static int add_piece(size_t **arr, size_t *n, size_t *cap, size_t off, size_t len, size_t first)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        size_t *p = dfm_realloc(*arr, c * 3 * sizeof *p);
        if (!p) return DFM_E_NOMEM;
        *arr = p;
        *cap = c;
    }
    (*arr)[3 * *n] = off, (*arr)[3 * *n + 1] = len, (*arr)[3 * *n + 2] = first;
    (*n)++;
    return 0;
}

/* Metaspace on one piece: ' ' -> replacement, maybe prepend, split before each replacement. */
static int metaspace(const dfm_pre_step *st, const char *s, size_t n, int first, dfm_buf *out, size_t **arr,
                     size_t *np, size_t *cap)
{
    size_t base = out->len;
    int rc = dfm_buf_reserve(out, n + n / 2 + st->repl_len);
    if (rc) return rc;
    int starts = n >= 1 && (s[0] == ' ' || (n >= st->repl_len && !memcmp(s, st->repl, st->repl_len)));
    if (!starts && (st->prepend == DFM_PREPEND_ALWAYS || (st->prepend == DFM_PREPEND_FIRST && first)))
        rc = dfm_buf_append(out, st->repl, st->repl_len);
    for (size_t i = 0; i < n && !rc; i++)
        rc = s[i] == ' ' ? dfm_buf_append(out, st->repl, st->repl_len) : dfm_buf_append(out, s + i, 1);
    if (rc) return rc;
    const char *p = (const char *)out->data + base;
    size_t len = out->len - base;
    if (!st->split) return add_piece(arr, np, cap, base, len, (size_t)first);
    size_t a = 0;
    for (size_t i = st->repl_len ? 1 : len; i + st->repl_len <= len; i++) {
        if (!memcmp(p + i, st->repl, st->repl_len) && ((unsigned char)p[i] & 0xC0) != 0x80) {
            if ((rc = add_piece(arr, np, cap, base + a, i - a, first && a == 0))) return rc;
            a = i;
        }
    }
    return len > a ? add_piece(arr, np, cap, base + a, len - a, first && a == 0) : 0;
}

/* Pre-tokenize s[0..n) and run the model on every piece. */
static int pretok_and_model(enc_ctx *c, const char *s, size_t n, int first)
{
    const dfm_tokenizer *t = c->t;
    int rc;
    const char *src = s;
    c->n_pieces = 0;
    if ((rc = add_piece(&c->pieces, &c->n_pieces, &c->cap_pieces, 0, n, (size_t)first))) return rc;
    for (int k = 0; k < t->n_pre; k++) {
        const dfm_pre_step *st = &t->pre[k];
        dfm_buf *dst = src == (const char *)c->pa.data ? &c->pb : &c->pa;
        dst->len = 0;
        size_t n2 = 0;
        for (size_t i = 0; i < c->n_pieces; i++) {
            const char *p = src + c->pieces[3 * i];
            size_t len = c->pieces[3 * i + 1], f = c->pieces[3 * i + 2];
            if (st->type == DFM_PRE_METASPACE) {
                rc = metaspace(st, p, len, (int)f, dst, &c->pieces2, &n2, &c->cap_pieces2);
            } else { /* WhitespaceSplit: drop White_Space, keep the runs between */
                size_t j = 0;
                rc = 0;
                while (j < len && !rc) {
                    int k2;
                    while (j < len && is_space_at(p, len, j, &k2)) j += (size_t)k2;
                    size_t a = j;
                    while (j < len && !is_space_at(p, len, j, &k2)) j += (size_t)k2;
                    if (j > a) {
                        size_t off = dst->len;
                        rc = dfm_buf_append(dst, p + a, j - a);
                        if (!rc) rc = add_piece(&c->pieces2, &n2, &c->cap_pieces2, off, j - a, f && a == 0);
                    }
                }
            }
            if (rc) return rc;
        }
        if ((rc = dfm_buf_reserve(dst, 1))) return rc;
        src = (const char *)dst->data;
        size_t *tmp = c->pieces;
        c->pieces = c->pieces2;
        c->pieces2 = tmp;
        size_t tc = c->cap_pieces;
        c->cap_pieces = c->cap_pieces2;
        c->cap_pieces2 = tc;
        c->n_pieces = n2;
    }
    for (size_t i = 0; i < c->n_pieces && c->n_ids < c->limit; i++) {
        size_t len = c->pieces[3 * i + 1];
        if (!len) continue;
        rc = dfm_unigram_encode(&t->model, &c->w, src + c->pieces[3 * i], len, &c->ids, &c->n_ids, &c->cap);
        if (rc) return rc;
    }
    return 0;
}

static int ends_with_word(const char *s, size_t n)
{
    if (!n) return 0;
    size_t c = n - 1;
    while (c > 0 && ((unsigned char)s[c] & 0xC0) == 0x80) c--;
    uint32_t cp;
    dfm_u8_decode((const unsigned char *)s + c, &cp);
    return dfm_uni_is_word(cp);
}

static int starts_with_word(const char *s, size_t n)
{
    if (!n) return 0;
    uint32_t cp;
    dfm_u8_decode((const unsigned char *)s, &cp);
    return dfm_uni_is_word(cp);
}

/* Split s by the added tokens of dict (AddedVocabulary::find_matches): calls `seg` for every
 * text between matches (non-empty) and pushes the ids of the matches. */
typedef int (*seg_fn)(enc_ctx *c, const char *s, size_t n, int first);

static int split_added(enc_ctx *c, const dfm_unigram *dict, int has, const char *s, size_t n, int first,
                       seg_fn seg)
{
    if (!has) return n ? seg(c, s, n, first) : 0;
    const dfm_tokenizer *t = c->t;
    size_t pos = 0, start_offset = 0;
    int rc;
    while (pos < n && c->n_ids < c->limit) {
        size_t mlen = 0;
        int32_t k = dfm_unigram_longest_prefix(dict, s + pos, n - pos, &mlen);
        if (k < 0 || mlen == 0) {
            pos += (size_t)dfm_u8_len((unsigned char)s[pos]);
            continue;
        }
        const dfm_tok_added *a = &t->added[k];
        size_t start = pos, stop = pos + mlen;
        pos = stop; /* the matcher goes on after the match, whatever is done with it */
        if (a->single_word) {
            int start_space = start == 0 || !ends_with_word(s, start);
            int stop_space = stop == n || !starts_with_word(s + stop, n - stop);
            if (!start_space || !stop_space) continue;
        }
        if (a->lstrip) {
            size_t ns = start;
            int k2;
            while (ns > 0) {
                size_t q = ns - 1;
                while (q > 0 && ((unsigned char)s[q] & 0xC0) == 0x80) q--;
                if (!is_space_at(s, n, q, &k2)) break;
                ns = q;
            }
            start = ns > start_offset ? ns : start_offset;
        }
        if (a->rstrip) {
            int k2;
            while (stop < n && is_space_at(s, n, stop, &k2)) stop += (size_t)k2;
        }
        if (start_offset < start && (rc = seg(c, s + start_offset, start - start_offset, first && start_offset == 0)))
            return rc;
        if ((rc = push(c, a->id))) return rc;
        start_offset = stop;
    }
    if (start_offset < n && c->n_ids < c->limit)
        return seg(c, s + start_offset, n - start_offset, first && start_offset == 0);
    return 0;
}

static int normalized_segment(enc_ctx *c, const char *s, size_t n, int first)
{
    return pretok_and_model(c, s, n, first);
}

static int raw_segment(enc_ctx *c, const char *s, size_t n, int first)
{
    const char *ns;
    size_t nn;
    int lead = 1;
    int rc = normalize(c->t, s, n, &c->na, &c->nb, &ns, &nn, &lead);
    if (rc) return rc;
    return split_added(c, &c->t->norm_dict, c->t->has_norm, ns, nn, first && lead, normalized_segment);
}

int dfm_tokenizer_encode(const dfm_tokenizer *t, const char *text, size_t len, int max_length, int32_t **ids,
                         int *n)
{
    *ids = NULL;
    *n = 0;
    if (!dfm_utf8_check(text, len, 1)) return dfm_fail(DFM_E_FORMAT, "text is not valid UTF-8");
    int extra = t->n_prefix + t->n_suffix;
    if (max_length > 0 && max_length < extra)
        return dfm_fail(DFM_E_ARG, "max_length %d leaves no room for the %d special tokens", max_length, extra);
    if (len > INT32_MAX / 2) return dfm_fail(DFM_E_LIMIT, "text of %zu bytes", len);
    enc_ctx c = {0};
    c.t = t;
    c.limit = max_length > 0 ? (size_t)(max_length - extra) : SIZE_MAX;
    int rc = 0;
    for (int i = 0; i < t->n_prefix && !rc; i++) rc = push(&c, t->prefix[i]);
    size_t content0 = c.n_ids;
    c.limit = c.limit == SIZE_MAX ? SIZE_MAX : c.limit + content0;
    if (!rc) rc = split_added(&c, &t->raw_dict, t->has_raw, text, len, 1, raw_segment);
    if (!rc && c.n_ids > c.limit) c.n_ids = c.limit; /* truncation: content ids only */
    for (int i = 0; i < t->n_suffix && !rc; i++) rc = push(&c, t->suffix[i]);
    if (!rc && c.n_ids > INT32_MAX) rc = dfm_fail(DFM_E_LIMIT, "more than 2^31 tokens");
    dfm_buf_free(&c.na);
    dfm_buf_free(&c.nb);
    dfm_buf_free(&c.pa);
    dfm_buf_free(&c.pb);
    free(c.pieces);
    free(c.pieces2);
    dfm_unigram_scratch_free(&c.w);
    if (rc) {
        free(c.ids);
        return rc;
    }
    if (!c.ids && !(c.ids = malloc(sizeof *c.ids))) return dfm_fail(DFM_E_NOMEM, "out of memory");
    *ids = c.ids;
    *n = (int)c.n_ids;
    return 0;
}
