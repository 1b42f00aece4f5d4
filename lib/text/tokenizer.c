/* tokenizer.c — dfm_tokenizer as tokenizer.h offers it: choosing the file and loading it, the
 * lookups, and the encode pipeline. Building the struct and the normalizer steps live in
 * tokenizer_build.c, the file formats in tokenizer_json.c and spm_model.c. This file is the top
 * of lib/text's includes: none of the headers it includes includes tokenizer.h.
 * ref: tokenizers tokenizer/mod.rs (encode_single_sequence, post_process), tokenizer/
 * added_vocabulary.rs (find_matches, extract_and_normalize), pre_tokenizers/metaspace.rs,
 * whitespace.rs, processors/template.rs, utils/truncation.rs.
 */
#include "text/tokenizer.h"
#include "base/buf.h"
#include "base/error.h"
#include "base/utf8.h"
#include "io/hfmodel.h"
#include "text/grapheme.h"
#include "text/spm_model.h"
#include "text/tokenizer_build.h"
#include "text/tokenizer_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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
    int32_t id = dfm_tok_token_id(t, "</s>", 4);
    if (id >= 0) return id;
    return t->n_suffix ? t->suffix[t->n_suffix - 1] : -1;
}

int dfm_tokenizer_pad_id(const dfm_tokenizer *t) { return dfm_tok_token_id(t, "<pad>", 5); }

int32_t dfm_tokenizer_token_id(const dfm_tokenizer *t, const char *token)
{
    return dfm_tok_token_id(t, token, strlen(token));
}

const char *dfm_tokenizer_piece(const dfm_tokenizer *t, int32_t id)
{
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].id == id) return t->added[i].content;
    return dfm_unigram_piece(&t->model, id);
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
                    while (j < len && dfm_uni_is_space_at(p, j, &k2)) j += (size_t)k2;
                    size_t a = j;
                    while (j < len && !dfm_uni_is_space_at(p, j, &k2)) j += (size_t)k2;
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
                if (!dfm_uni_is_space_at(s, q, &k2)) break;
                ns = q;
            }
            start = ns > start_offset ? ns : start_offset;
        }
        if (a->rstrip) {
            int k2;
            while (stop < n && dfm_uni_is_space_at(s, stop, &k2)) stop += (size_t)k2;
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
    int rc = dfm_tok_normalize(c->t, s, n, &c->na, &c->nb, &ns, &nn, &lead);
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
