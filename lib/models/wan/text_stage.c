/* text_stage.c — captions to UMT5 states (see text_stage.h).
 * ref: diffusers pipeline_wan.py _get_t5_prompt_embeds (max_length 512, trim to the mask's length);
 *      NeMo AutoModel processors/wan.py (the same, stored per sample). */
#include "models/wan/text_stage.h"
#include "text/prompt_clean.h"
#include "base/buf.h"
#include "base/error.h"
#include "base/strset.h"
#include "base/utf8.h"
#include "io/npy.h"
#include "tensor/finite.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *text;          /* NULL = empty slot */
    uint8_t *tokens, *states;
    size_t tokens_len, states_len;
    int n, truncated;
    uint64_t used;       /* LRU clock */
} entry_t;

struct dfm_text_encoder {
    dfm_text_opts o;
    const dfm_tokenizer *tok;
    dfm_umt5 *enc;
    entry_t *cache;
    uint64_t clock, hits;
};

int dfm_text_encoder_new(dfm_text_encoder **out, const dfm_text_opts *o, const dfm_tokenizer *tok, dfm_umt5 *enc)
{
    *out = NULL;
    if (!o->tokens_only && !enc) return dfm_fail(DFM_E_ARG, "text encoder missing");
    dfm_text_encoder *te = dfm_calloc(1, sizeof *te);
    if (!te) return DFM_E_NOMEM;
    te->o = *o;
    if (te->o.max_length <= 0) te->o.max_length = 512;
    if (te->o.cache_entries <= 0) te->o.cache_entries = 256;
    te->tok = tok, te->enc = enc;
    te->cache = dfm_calloc((size_t)te->o.cache_entries, sizeof *te->cache);
    if (!te->cache) {
        free(te);
        return DFM_E_NOMEM;
    }
    *out = te;
    return 0;
}

static void entry_clear(entry_t *e)
{
    free(e->text), free(e->tokens), free(e->states);
    memset(e, 0, sizeof *e);
}

void dfm_text_encoder_free(dfm_text_encoder *te)
{
    if (!te) return;
    for (int i = 0; i < te->o.cache_entries; i++) entry_clear(&te->cache[i]);
    free(te->cache);
    free(te);
}

uint64_t dfm_text_encoder_hits(const dfm_text_encoder *te) { return te->hits; }

/* Tokenize and encode `text` into a cache entry. */
static int compute(dfm_text_encoder *te, const char *text, size_t len, entry_t *e)
{
    int32_t *ids = NULL;
    int n = 0;
    /* the pipeline's prompt_clean first (HTML entities, runs of white space), so training states
     * equal what WanPipeline and dfm-sample compute for the same caption */
    char *clean = dfm_prompt_clean(text, len);
    if (!clean) return dfm_fail(DFM_E_NOMEM, "out of memory");
    int rc = dfm_tokenizer_encode(te->tok, clean, strlen(clean), 0, &ids, &n);
    free(clean);
    if (rc) return rc;
    if (n > te->o.max_length) { /* keep max_length - 1 content ids, then </s> */
        ids[te->o.max_length - 1] = ids[n - 1];
        n = te->o.max_length;
        e->truncated = 1;
    }
    int64_t shape1[1] = {n};
    rc = dfm_npy_build(DFM_NPY_I32, 1, shape1, ids, &e->tokens, &e->tokens_len);
    e->n = n;
    if (!rc && !te->o.tokens_only) {
        dfm_tensor h = {0}, host = {0};
        rc = dfm_umt5_encode(te->enc, ids, n, &h);
        if (!rc) rc = dfm_tensor_copy(&host, &h, DFM_CPU);
        dfm_tensor_free(&h);
        if (!rc) rc = dfm_tensor_check_finite(&host, "text.npy (the text encoder's output)");
        if (!rc) {
            size_t cnt = (size_t)dfm_tensor_numel(&host);
            void *buf = host.data;
            if (te->o.out_dtype == DFM_F16) {
                buf = dfm_malloc(cnt * 2);
                if (!buf) rc = DFM_E_NOMEM;
                else rc = dfm_convert_floats(buf, DFM_F16, host.data, DFM_F32, cnt);
            }
            if (!rc && buf != host.data) { /* past float16's range is Inf once converted */
                dfm_tensor v = dfm_tensor_view(buf, DFM_F16, DFM_CPU, 2, host.shape);
                dfm_nonfinite r;
                char m[256];
                if (!(rc = dfm_tensor_nonfinite(&v, &r)) && r.count)
                    rc = dfm_fail(DFM_E_NONFINITE, "text.npy as float16 has %s: values past float16's "
                                  "range (65504); store float32 with --out-dtype f32",
                                  dfm_nonfinite_str(&r, &v, m, sizeof m));
            }
            if (!rc)
                rc = dfm_npy_build(te->o.out_dtype == DFM_F16 ? DFM_NPY_F16 : DFM_NPY_F32, 2, host.shape, buf,
                                   &e->states, &e->states_len);
            if (buf != host.data) free(buf);
        }
        dfm_tensor_free(&host);
    }
    free(ids);
    if (!rc && !(e->text = dfm_strndup(text, len))) rc = DFM_E_NOMEM;
    if (rc) entry_clear(e);
    return rc;
}

/* Why the n bytes at p (NUL-terminated one past n) are not valid caption text: "a NUL byte at
 * offset 3" or "byte 0xe9 at offset 3 does not start a valid UTF-8 sequence". */
static int bad_text(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (!p[i]) return dfm_fail(DFM_E_FORMAT, "txt has a NUL byte at offset %zu", i);
        int k = dfm_utf8_len(p + i);
        if (!k || i + (size_t)k > n) break;
        i += (size_t)k;
    }
    return dfm_fail(DFM_E_FORMAT, "txt is not valid UTF-8 (byte 0x%02x at offset %zu of %zu)",
                    i < n ? p[i] : 0, i, n);
}

int dfm_text_encode_sample(dfm_text_encoder *te, dfm_sample *s)
{
    const dfm_field *f = dfm_sample_get(s, "txt");
    if (!f) return dfm_fail(DFM_E_FORMAT, "no 'txt' field (captions come from dfm-decode)");
    if (!dfm_utf8_valid((const char *)f->data, f->len)) return bad_text(f->data, f->len);
    const char *text = (const char *)f->data;
    size_t len = f->len;
    /* A byte order mark is not text: strip any leading U+FEFF (as dfm-decode's captions do). */
    while (len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3)) text += 3, len -= 3;
    entry_t *e = NULL, *victim = &te->cache[0];
    for (int i = 0; i < te->o.cache_entries; i++) {
        entry_t *c = &te->cache[i];
        if (c->text && strlen(c->text) == len && !memcmp(c->text, text, len)) {
            e = c;
            break;
        }
        if (!c->text || (victim->text && c->used < victim->used)) victim = c;
    }
    int rc = 0;
    if (e) {
        te->hits++;
    } else {
        entry_clear(victim);
        if ((rc = compute(te, text, len, victim))) return rc;
        e = victim;
    }
    e->used = ++te->clock;
    rc = dfm_sample_set(s, "tokens.npy", e->tokens, e->tokens_len);
    if (!rc && e->states) rc = dfm_sample_set(s, "text.npy", e->states, e->states_len);
    if (rc) return rc;
    cJSON *j;
    if ((rc = dfm_sample_json(s, &j))) return rc;
    cJSON_DeleteItemFromObject(j, "text");
    cJSON *t = cJSON_AddObjectToObject(j, "text");
    cJSON_AddNumberToObject(t, "tokens", e->n);
    cJSON_AddNumberToObject(t, "max_length", te->o.max_length);
    cJSON_AddBoolToObject(t, "truncated", e->truncated);
    if (!te->o.tokens_only) {
        cJSON_AddNumberToObject(t, "dim", dfm_umt5_get_config(te->enc)->d_model);
        cJSON_AddStringToObject(t, "dtype", te->o.out_dtype == DFM_F16 ? "float16" : "float32");
    }
    cJSON_AddStringToObject(t, "encoder", te->o.tokens_only ? "none (tokens only)" : "UMT5EncoderModel");
    cJSON_AddStringToObject(t, "model", te->o.model ? te->o.model : "");
    rc = dfm_sample_set_json(s, j);
    cJSON_Delete(j);
    return rc;
}
