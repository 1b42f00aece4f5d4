/* tokenizer_json.c — read a Hugging Face tokenizer.json into a dfm_tokenizer: model Unigram,
 * added_tokens, the normalizers T5/UMT5 files use (Sequence, Precompiled, Replace, Strip,
 * Prepend), pre-tokenizers Metaspace and WhitespaceSplit (alone or in a Sequence), post-processor
 * TemplateProcessing. Any other component type is DFM_E_UNSUPPORTED, naming it; `decoder`,
 * `truncation` and `padding` are ignored (the call arguments decide).
 * Every string is checked to be valid UTF-8 before anything uses it (a scan, a copy, a message).
 * ref: tokenizers tokenizer/serialization.rs, models/unigram/serialization.rs,
 * normalizers/mod.rs, pre_tokenizers/metaspace.rs, processors/template.rs.
 */
#include "text/tokenizer_json.h"
#include "base/buf.h"
#include "base/error.h"
#include "base/utf8.h"
#include "text/grapheme.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_JSON_BYTES ((size_t)1 << 30)

static int b64_val(int c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Standard base64 with padding, strict (as the base64 crate's STANDARD engine). */
static int b64_decode(const char *s, uint8_t **out, size_t *out_len)
{
    size_t n = strlen(s);
    if (n % 4) return dfm_fail(DFM_E_FORMAT, "base64 text of length %zu (not a multiple of 4)", n);
    uint8_t *o = dfm_malloc(n / 4 * 3 + 1);
    if (!o) return DFM_E_NOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4], pad = 0;
        for (int j = 0; j < 4; j++) {
            char ch = s[i + j];
            if (ch == '=' && i + 4 == n && j >= 2 && (j == 3 || s[i + 3] == '=')) {
                v[j] = 0;
                pad++;
            } else if ((v[j] = b64_val((unsigned char)ch)) < 0 || pad) {
                free(o);
                return dfm_fail(DFM_E_FORMAT, "invalid base64 at offset %zu", i + (size_t)j);
            }
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        if ((pad == 1 && (w & 0xFF)) || (pad == 2 && (w & 0xFFFF))) {
            free(o);
            return dfm_fail(DFM_E_FORMAT, "invalid base64 (trailing bits) at offset %zu", i);
        }
        o[k++] = (uint8_t)(w >> 16);
        if (pad < 2) o[k++] = (uint8_t)(w >> 8);
        if (pad < 1) o[k++] = (uint8_t)w;
    }
    *out = o;
    *out_len = k;
    return 0;
}

/* A string's text if it is valid UTF-8 (cJSON strings hold no NUL), else NULL. */
static const char *utf8_text(const cJSON *v)
{
    if (!cJSON_IsString(v) || !v->valuestring) return NULL;
    return dfm_utf8_valid(v->valuestring, strlen(v->valuestring)) ? v->valuestring : NULL;
}

/* The "type" of a component: NULL if missing, "(not valid UTF-8)" if its bytes are not text (so the
 * unsupported-type error names the fault). */
static const char *type_of(const cJSON *o)
{
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(o, "type");
    if (!cJSON_IsString(ty)) return NULL;
    const char *t = utf8_text(ty);
    return t ? t : "(not valid UTF-8)";
}

/* An optional bool member: def when missing or null; error when of another type. */
static int get_bool(const cJSON *o, const char *key, int def, int *out, const char *what)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsBool(v)) return dfm_fail(DFM_E_FORMAT, "%s: '%s' is not a boolean", what, key);
    *out = cJSON_IsTrue(v);
    return 0;
}

static int get_str(const cJSON *o, const char *key, const char **out, const char *what)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(v) || !v->valuestring)
        return dfm_fail(DFM_E_FORMAT, "%s: '%s' is missing or not a string", what, key);
    if (!(*out = utf8_text(v))) return dfm_fail(DFM_E_FORMAT, "%s: '%s' is not valid UTF-8", what, key);
    return 0;
}

static int load_normalizer(dfm_tokenizer *t, const cJSON *n, int depth)
{
    if (!n || cJSON_IsNull(n)) return 0;
    if (depth > 16) return dfm_fail(DFM_E_FORMAT, "normalizer Sequences nested too deep");
    if (!cJSON_IsObject(n)) return dfm_fail(DFM_E_FORMAT, "normalizer is not an object");
    const char *ty = type_of(n);
    if (!ty) return dfm_fail(DFM_E_FORMAT, "normalizer without a type");
    int rc;
    dfm_norm_step st;
    memset(&st, 0, sizeof st);
    if (!strcmp(ty, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers"), *e;
        if (!cJSON_IsArray(list)) return dfm_fail(DFM_E_FORMAT, "normalizer Sequence without a normalizers list");
        cJSON_ArrayForEach(e, list)
        {
            if ((rc = load_normalizer(t, e, depth + 1))) return rc;
        }
        return 0;
    }
    if (!strcmp(ty, "Precompiled")) {
        const char *b64;
        if ((rc = get_str(n, "precompiled_charsmap", &b64, "Precompiled normalizer"))) return rc;
        uint8_t *raw = NULL;
        size_t raw_len = 0;
        if ((rc = b64_decode(b64, &raw, &raw_len))) return dfm_fail_ctx(rc, "Precompiled normalizer");
        st.type = DFM_NORM_PRECOMPILED;
        rc = dfm_charsmap_init(&st.cm, raw, raw_len);
        free(raw);
        if (rc) return rc;
    } else if (!strcmp(ty, "Replace")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(n, "pattern");
        const char *content, *ptext;
        int is_string = cJSON_IsString(cJSON_GetObjectItemCaseSensitive(pat, "String"));
        int is_regex = !is_string && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(pat, "Regex"));
        if (!is_string && !is_regex)
            return dfm_fail(DFM_E_FORMAT, "Replace normalizer: pattern is neither {\"String\"} nor {\"Regex\"}");
        if ((rc = get_str(n, "content", &content, "Replace normalizer")) ||
            (rc = get_str(pat, is_regex ? "Regex" : "String", &ptext, "Replace normalizer pattern")) ||
            (rc = dfm_tok_replace_step(&st, ptext, is_regex, content)))
            return rc;
    } else if (!strcmp(ty, "Strip")) {
        st.type = DFM_NORM_STRIP;
        if ((rc = get_bool(n, "strip_left", 0, &st.left, "Strip normalizer")) ||
            (rc = get_bool(n, "strip_right", 0, &st.right, "Strip normalizer")))
            return rc;
    } else if (!strcmp(ty, "Prepend")) {
        const char *p;
        if ((rc = get_str(n, "prepend", &p, "Prepend normalizer"))) return rc;
        st.type = DFM_NORM_PREPEND;
        st.content = dfm_strdup(p);
        if (!st.content) return DFM_E_NOMEM;
        st.content_len = strlen(p);
    } else {
        return dfm_fail(DFM_E_UNSUPPORTED, "normalizer type '%s' is not supported (T5/UMT5 files use "
                                           "Sequence, Precompiled, Replace, Strip)", ty);
    }
    if ((rc = dfm_tok_add_norm(t, &st))) {
        dfm_charsmap_free(&st.cm);
        free(st.pat);
        free(st.content);
    }
    return rc;
}

static int load_pre_tokenizer(dfm_tokenizer *t, const cJSON *p, int depth)
{
    if (!p || cJSON_IsNull(p)) return 0;
    if (depth > 16) return dfm_fail(DFM_E_FORMAT, "pre_tokenizer Sequences nested too deep");
    if (!cJSON_IsObject(p)) return dfm_fail(DFM_E_FORMAT, "pre_tokenizer is not an object");
    const char *ty = type_of(p);
    if (!ty) return dfm_fail(DFM_E_FORMAT, "pre_tokenizer without a type");
    int rc;
    dfm_pre_step st;
    memset(&st, 0, sizeof st);
    if (!strcmp(ty, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers"), *e;
        if (!cJSON_IsArray(list)) return dfm_fail(DFM_E_FORMAT, "pre_tokenizer Sequence without a pretokenizers list");
        cJSON_ArrayForEach(e, list)
        {
            if ((rc = load_pre_tokenizer(t, e, depth + 1))) return rc;
        }
        return 0;
    }
    if (!strcmp(ty, "WhitespaceSplit")) {
        st.type = DFM_PRE_WHITESPACE_SPLIT;
        return dfm_tok_add_pre(t, &st);
    }
    if (strcmp(ty, "Metaspace"))
        return dfm_fail(DFM_E_UNSUPPORTED, "pre_tokenizer type '%s' is not supported (T5/UMT5 files use Metaspace)", ty);
    const char *repl;
    if ((rc = get_str(p, "replacement", &repl, "Metaspace"))) return rc;
    size_t rl = strlen(repl);
    if (!rl || (size_t)dfm_u8_len((unsigned char)repl[0]) != rl)
        return dfm_fail(DFM_E_FORMAT, "Metaspace: replacement '%s' is not one character", repl);
    st.type = DFM_PRE_METASPACE;
    memcpy(st.repl, repl, rl);
    st.repl_len = rl;
    st.prepend = DFM_PREPEND_ALWAYS;
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(p, "prepend_scheme");
    if (ps && !cJSON_IsNull(ps)) {
        const char *scheme;
        if ((rc = get_str(p, "prepend_scheme", &scheme, "Metaspace"))) return rc;
        if (!strcmp(scheme, "always")) st.prepend = DFM_PREPEND_ALWAYS;
        else if (!strcmp(scheme, "first")) st.prepend = DFM_PREPEND_FIRST;
        else if (!strcmp(scheme, "never")) st.prepend = DFM_PREPEND_NEVER;
        else return dfm_fail(DFM_E_FORMAT, "Metaspace: unknown prepend_scheme '%s'", scheme);
    }
    const cJSON *aps = cJSON_GetObjectItemCaseSensitive(p, "add_prefix_space");
    if (aps && !cJSON_IsNull(aps)) {
        if (!cJSON_IsBool(aps)) return dfm_fail(DFM_E_FORMAT, "Metaspace: add_prefix_space is not a boolean");
        if (cJSON_IsFalse(aps)) {
            if (st.prepend != DFM_PREPEND_NEVER && ps && !cJSON_IsNull(ps))
                return dfm_fail(DFM_E_FORMAT, "Metaspace: add_prefix_space does not match prepend_scheme");
            st.prepend = DFM_PREPEND_NEVER;
        }
    }
    if ((rc = get_bool(p, "split", 1, &st.split, "Metaspace"))) return rc;
    return dfm_tok_add_pre(t, &st);
}

/* TemplateProcessing: the `single` template around $A. */
static int load_post_processor(dfm_tokenizer *t, const cJSON *p)
{
    if (!p || cJSON_IsNull(p)) return 0;
    const char *ty = cJSON_IsObject(p) ? type_of(p) : NULL;
    if (!ty) return dfm_fail(DFM_E_FORMAT, "post_processor is not an object with a type");
    if (strcmp(ty, "TemplateProcessing"))
        return dfm_fail(DFM_E_UNSUPPORTED, "post_processor type '%s' is not supported (T5/UMT5 files use "
                                           "TemplateProcessing)", ty);
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(p, "single"), *e;
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(p, "special_tokens");
    if (!cJSON_IsArray(single)) return dfm_fail(DFM_E_FORMAT, "TemplateProcessing without a single template");
    int seen_a = 0;
    cJSON_ArrayForEach(e, single)
    {
        const cJSON *seq = cJSON_GetObjectItemCaseSensitive(e, "Sequence");
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(e, "SpecialToken");
        if (seq) {
            const char *id = utf8_text(cJSON_GetObjectItemCaseSensitive(seq, "id"));
            if (!id || strcmp(id, "A") || seen_a)
                return dfm_fail(DFM_E_UNSUPPORTED, "TemplateProcessing: single template must hold $A once");
            seen_a = 1;
            continue;
        }
        const char *name = utf8_text(cJSON_GetObjectItemCaseSensitive(sp, "id"));
        if (!name) return dfm_fail(DFM_E_FORMAT, "TemplateProcessing: bad template item");
        const cJSON *tok = cJSON_GetObjectItemCaseSensitive(specials, name);
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(tok, "ids"), *x;
        if (!cJSON_IsArray(ids))
            return dfm_fail(DFM_E_FORMAT, "TemplateProcessing: special token '%s' has no ids", name);
        cJSON_ArrayForEach(x, ids)
        {
            if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble > INT32_MAX ||
                x->valuedouble != floor(x->valuedouble))
                return dfm_fail(DFM_E_FORMAT, "TemplateProcessing: bad id of '%s'", name);
            int32_t **arr = seen_a ? &t->suffix : &t->prefix;
            int *cnt = seen_a ? &t->n_suffix : &t->n_prefix;
            int *cap = seen_a ? &t->cap_suffix : &t->cap_prefix;
            int rc = dfm_tok_reserve((void **)arr, cap, *cnt + 1, sizeof **arr);
            if (rc) return rc;
            (*arr)[(*cnt)++] = (int32_t)x->valuedouble;
        }
    }
    if (!seen_a) return dfm_fail(DFM_E_UNSUPPORTED, "TemplateProcessing: single template without $A");
    return 0;
}

static int load_model(dfm_tokenizer *t, const cJSON *m)
{
    if (!cJSON_IsObject(m)) return dfm_fail(DFM_E_FORMAT, "no model object");
    const char *ty = type_of(m);
    if (ty && strcmp(ty, "Unigram"))
        return dfm_fail(DFM_E_UNSUPPORTED, "model type '%s' is not supported (only Unigram)", ty);
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(m, "vocab"), *e;
    if (!cJSON_IsArray(vocab)) return dfm_fail(DFM_E_FORMAT, "model.vocab is missing or not a list");
    int32_t i = 0;
    int rc;
    cJSON_ArrayForEach(e, vocab)
    {
        const cJSON *piece = cJSON_IsArray(e) ? e->child : NULL;
        const cJSON *score = piece ? piece->next : NULL;
        if (!cJSON_IsString(piece) || !cJSON_IsNumber(score) || score->next)
            return dfm_fail(DFM_E_FORMAT, "model.vocab[%d] is not a [piece, score] pair", i);
        size_t len = strlen(piece->valuestring);
        if (!dfm_utf8_check(piece->valuestring, len, 1))
            return dfm_fail(DFM_E_FORMAT, "model.vocab[%d] is not valid UTF-8", i);
        if ((rc = dfm_unigram_add(&t->model, piece->valuestring, len, score->valuedouble))) return rc;
        i++;
    }
    int32_t unk = -1;
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(m, "unk_id");
    if (u && !cJSON_IsNull(u)) {
        if (!cJSON_IsNumber(u) || u->valuedouble < 0 || u->valuedouble != floor(u->valuedouble) ||
            u->valuedouble > INT32_MAX)
            return dfm_fail(DFM_E_FORMAT, "model.unk_id is not a non-negative integer");
        unk = (int32_t)u->valuedouble;
    }
    int bf;
    if ((rc = get_bool(m, "byte_fallback", 0, &bf, "model"))) return rc;
    return dfm_unigram_finish(&t->model, unk, bf);
}

static int load_added(dfm_tokenizer *t, const cJSON *list)
{
    if (!list || cJSON_IsNull(list)) return 0;
    if (!cJSON_IsArray(list)) return dfm_fail(DFM_E_FORMAT, "added_tokens is not a list");
    const cJSON *e;
    int i = 0, rc;
    cJSON_ArrayForEach(e, list)
    {
        const char *content;
        int sw, ls, rs, norm, special;
        char what[48];
        snprintf(what, sizeof what, "added_tokens[%d]", i++);
        if (!cJSON_IsObject(e)) return dfm_fail(DFM_E_FORMAT, "%s is not an object", what);
        if ((rc = get_str(e, "content", &content, what)) || (rc = get_bool(e, "special", 0, &special, what)) ||
            (rc = get_bool(e, "single_word", 0, &sw, what)) || (rc = get_bool(e, "lstrip", 0, &ls, what)) ||
            (rc = get_bool(e, "rstrip", 0, &rs, what)) || (rc = get_bool(e, "normalized", !special, &norm, what)))
            return rc;
        if ((rc = dfm_tok_add_token(t, content, strlen(content), sw, ls, rs, norm, special))) return rc;
    }
    return 0;
}

int dfm_tok_load_json(dfm_tokenizer *t, const char *path)
{
    dfm_buf b = {0};
    int rc = dfm_read_file(path, MAX_JSON_BYTES, &b);
    if (rc) return rc;
    t->source = dfm_strdup(path);
    cJSON *j = cJSON_ParseWithLength((const char *)b.data, b.len);
    if (!j) {
        size_t at = cJSON_GetErrorPtr() ? (size_t)(cJSON_GetErrorPtr() - (const char *)b.data) : 0;
        dfm_buf_free(&b);
        return dfm_fail(DFM_E_FORMAT, "tokenizer '%s': not valid JSON (near byte %zu)", path, at);
    }
    dfm_buf_free(&b);
    if (!cJSON_IsObject(j)) {
        rc = dfm_fail(DFM_E_FORMAT, "not a JSON object");
        goto done;
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "version");
    if (v && (!cJSON_IsString(v) || strcmp(v->valuestring, "1.0"))) {
        rc = dfm_fail(DFM_E_UNSUPPORTED, "unknown tokenizer.json version");
        goto done;
    }
    if ((rc = load_model(t, cJSON_GetObjectItemCaseSensitive(j, "model"))) ||
        (rc = load_normalizer(t, cJSON_GetObjectItemCaseSensitive(j, "normalizer"), 0)) ||
        (rc = load_pre_tokenizer(t, cJSON_GetObjectItemCaseSensitive(j, "pre_tokenizer"), 0)) ||
        (rc = load_post_processor(t, cJSON_GetObjectItemCaseSensitive(j, "post_processor"))) ||
        (rc = load_added(t, cJSON_GetObjectItemCaseSensitive(j, "added_tokens"))))
        goto done;
    rc = dfm_tok_finish(t);
done:
    cJSON_Delete(j);
    if (rc < 0) dfm_fail_ctx(rc, "tokenizer '%s'", path);
    return rc;
}
