/* spm_model.c — read a SentencePiece spiece.model (protobuf ModelProto) into a dfm_tokenizer
 * built the way transformers' T5Converter (convert_slow_tokenizer.py) builds the tokenizer.json
 * of a T5/UMT5 repository, so that both files give the same ids:
 *   vocab = pieces (piece, score) + <extra_id_{N-1}> ... <extra_id_0> with score 0
 *   unk_id = trainer_spec.unk_id, no byte fallback (T5Converter does not handle it)
 *   normalizer = [Precompiled(charsmap) if the charsmap is not empty, Strip(right),
 *                 Replace(" {2,}" -> "▁")]
 *   pre_tokenizer = Metaspace("▁", prepend_scheme always, split)
 *   post_processor = $A </s>
 *   added tokens = CONTROL and USER_DEFINED pieces (in id order), then </s>, <unk>, <pad> and the
 *   sentinels (T5TokenizerFast's special tokens), none normalized.
 * N is tokenizer_config.json's extra_ids, else the number of <extra_id_*> in its
 * additional_special_tokens, else 100 (T5's default; UMT5's config says 300).
 * NormalizerSpec.add_dummy_prefix / remove_extra_whitespaces are read but, as in T5Converter,
 * not used: the Metaspace and Replace steps above stand for them.
 * A hand-written reader: every length and varint is bounds-checked; unknown fields are skipped.
 */
#include "text/spm_model.h"
#include "base/buf.h"
#include "base/error.h"
#include "base/utf8.h"
#include "text/grapheme.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SPM_BYTES ((size_t)1 << 30)

typedef struct {
    const uint8_t *p, *end;
} pb;

static int pb_varint(pb *r, uint64_t *v)
{
    uint64_t x = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) return dfm_fail(DFM_E_FORMAT, "truncated varint");
        uint8_t b = *r->p++;
        x |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return dfm_fail(DFM_E_FORMAT, "varint longer than 10 bytes");
}

/* Next field: number and wire type; for wire type 2 also the payload. */
static int pb_field(pb *r, uint32_t *field, int *wire, pb *sub)
{
    uint64_t key;
    int rc = pb_varint(r, &key);
    if (rc) return rc;
    *field = (uint32_t)(key >> 3);
    *wire = (int)(key & 7);
    if (*field == 0) return dfm_fail(DFM_E_FORMAT, "field number 0");
    switch (*wire) {
    case 0: { /* varint: left for the caller to read */
        return 0;
    }
    case 1:
        if (r->end - r->p < 8) return dfm_fail(DFM_E_FORMAT, "truncated fixed64");
        sub->p = r->p;
        sub->end = r->p + 8;
        r->p += 8;
        return 0;
    case 2: {
        uint64_t len;
        if ((rc = pb_varint(r, &len))) return rc;
        if (len > (uint64_t)(r->end - r->p)) return dfm_fail(DFM_E_FORMAT, "length-delimited field runs past its message");
        sub->p = r->p;
        sub->end = r->p + len;
        r->p += len;
        return 0;
    }
    case 5:
        if (r->end - r->p < 4) return dfm_fail(DFM_E_FORMAT, "truncated fixed32");
        sub->p = r->p;
        sub->end = r->p + 4;
        r->p += 4;
        return 0;
    default:
        return dfm_fail(DFM_E_FORMAT, "unsupported protobuf wire type %d", *wire);
    }
}

typedef struct {
    int64_t unk_id, model_type;
    int byte_fallback, add_dummy_prefix;
    const uint8_t *charsmap;
    size_t charsmap_len;
} spm_info;

/* Read a varint-typed field value, or skip a field of another wire type. */
static int pb_value(pb *r, int wire, uint64_t *v, int *have)
{
    *have = 0;
    if (wire != 0) return 0;
    *have = 1;
    return pb_varint(r, v);
}

static int parse_trainer(pb m, spm_info *info)
{
    while (m.p < m.end) {
        uint32_t f;
        int wire, have, rc;
        pb sub;
        uint64_t v = 0;
        if ((rc = pb_field(&m, &f, &wire, &sub)) || (rc = pb_value(&m, wire, &v, &have))) return rc;
        if (!have) continue;
        if (f == 3) info->model_type = (int64_t)v;
        else if (f == 35) info->byte_fallback = v != 0;
        else if (f == 40) info->unk_id = (int32_t)(uint32_t)v;
    }
    return 0;
}

static int parse_normalizer(pb m, spm_info *info)
{
    while (m.p < m.end) {
        uint32_t f;
        int wire, have, rc;
        pb sub;
        uint64_t v = 0;
        if ((rc = pb_field(&m, &f, &wire, &sub)) || (rc = pb_value(&m, wire, &v, &have))) return rc;
        if (f == 2 && wire == 2) {
            info->charsmap = sub.p;
            info->charsmap_len = (size_t)(sub.end - sub.p);
        } else if (f == 3 && have) {
            info->add_dummy_prefix = v != 0;
        }
    }
    return 0;
}

/* One SentencePiece message: piece (1), score (2, float), type (3). A message without a piece
 * field has the empty piece (proto2's default), never a NULL pointer. */
static int parse_piece(pb m, const uint8_t **piece, size_t *len, float *score, int *type)
{
    *piece = (const uint8_t *)"";
    *len = 0;
    *score = 0.0f;
    *type = 1;
    while (m.p < m.end) {
        uint32_t f;
        int wire, have, rc;
        pb sub;
        uint64_t v = 0;
        if ((rc = pb_field(&m, &f, &wire, &sub)) || (rc = pb_value(&m, wire, &v, &have))) return rc;
        if (f == 1 && wire == 2) {
            *piece = sub.p;
            *len = (size_t)(sub.end - sub.p);
        } else if (f == 2 && wire == 5) {
            uint32_t u = (uint32_t)sub.p[0] | (uint32_t)sub.p[1] << 8 | (uint32_t)sub.p[2] << 16 |
                         (uint32_t)sub.p[3] << 24;
            memcpy(score, &u, 4);
        } else if (f == 3 && have) {
            *type = (int)(int32_t)(uint32_t)v; /* an enum is an int32: protobuf keeps the low 32 bits */
        }
    }
    return 0;
}

/* tokenizer_config.json: special token names and the number of sentinels. */
typedef struct {
    char *eos, *unk, *pad;
    int extra_ids;
    char **additional;
    int n_additional;
} t5_config;

static char *token_name(const cJSON *v, const char *def)
{
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    return dfm_strdup(cJSON_IsString(v) ? v->valuestring : def);
}

static void config_free(t5_config *c)
{
    free(c->eos);
    free(c->unk);
    free(c->pad);
    for (int i = 0; i < c->n_additional; i++) free(c->additional[i]);
    free(c->additional);
}

static int read_config(const char *path, t5_config *c)
{
    memset(c, 0, sizeof *c);
    c->extra_ids = -1;
    cJSON *j = NULL;
    if (path) {
        dfm_buf b = {0};
        int rc = dfm_read_file(path, 64 << 20, &b);
        if (rc) return rc;
        j = cJSON_ParseWithLength((const char *)b.data, b.len);
        dfm_buf_free(&b);
        if (!j || !cJSON_IsObject(j)) {
            cJSON_Delete(j);
            return dfm_fail(DFM_E_FORMAT, "'%s' is not a JSON object", path);
        }
    }
    c->eos = token_name(cJSON_GetObjectItemCaseSensitive(j, "eos_token"), "</s>");
    c->unk = token_name(cJSON_GetObjectItemCaseSensitive(j, "unk_token"), "<unk>");
    c->pad = token_name(cJSON_GetObjectItemCaseSensitive(j, "pad_token"), "<pad>");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "extra_ids");
    int rc = 0;
    if (cJSON_IsNumber(e)) {
        if (!(e->valuedouble >= 0 && e->valuedouble <= 1000000) || e->valuedouble != (int)e->valuedouble)
            rc = dfm_fail(DFM_E_FORMAT, "'%s': extra_ids %g is not a whole number in [0, 1000000]", path,
                          e->valuedouble);
        else
            c->extra_ids = (int)e->valuedouble;
    }
    const cJSON *add = cJSON_GetObjectItemCaseSensitive(j, "additional_special_tokens"), *x;
    if (!rc && cJSON_IsArray(add)) {
        int n = cJSON_GetArraySize(add), k = 0;
        c->additional = dfm_calloc((size_t)n + 1, sizeof *c->additional);
        if (!c->additional) rc = DFM_E_NOMEM;
        cJSON_ArrayForEach(x, add)
        {
            if (rc || k >= n) break;
            if (!(c->additional[k++] = token_name(x, ""))) rc = DFM_E_NOMEM;
        }
        c->n_additional = k;
    }
    if (!rc && (!c->eos || !c->unk || !c->pad)) rc = DFM_E_NOMEM;
    if (!rc && c->extra_ids < 0) {
        int n = 0;
        for (int i = 0; i < c->n_additional; i++)
            if (!strncmp(c->additional[i], "<extra_id_", 10)) n++;
        c->extra_ids = n ? n : 100;
    }
    cJSON_Delete(j);
    if (rc) config_free(c);
    return rc;
}

int dfm_tok_load_spm(dfm_tokenizer *t, const char *path, const char *config)
{
    dfm_buf b = {0};
    int rc = dfm_read_file(path, MAX_SPM_BYTES, &b);
    if (rc) return rc;
    t->source = dfm_strdup(path);
    spm_info info = {.unk_id = 0, .model_type = 1, .add_dummy_prefix = 1};
    t5_config cfg;
    int have_cfg = 0;
    pb r = {b.data, b.data + b.len};
    /* pass 1: trainer and normalizer specs */
    while (r.p < r.end) {
        uint32_t f;
        int wire, have;
        pb sub;
        uint64_t v;
        if ((rc = pb_field(&r, &f, &wire, &sub)) || (rc = pb_value(&r, wire, &v, &have))) goto done;
        if (f == 2 && wire == 2 && (rc = parse_trainer(sub, &info))) goto done;
        if (f == 3 && wire == 2 && (rc = parse_normalizer(sub, &info))) goto done;
    }
    if (info.model_type != 1) {
        rc = dfm_fail(DFM_E_UNSUPPORTED, "model_type %lld is not Unigram (1)", (long long)info.model_type);
        goto done;
    }
    if ((rc = read_config(config, &cfg))) goto done;
    have_cfg = 1;
    /* pass 2: pieces */
    r.p = b.data;
    int32_t n_pieces = 0;
    while (r.p < r.end) {
        uint32_t f;
        int wire, have;
        pb sub;
        uint64_t v;
        if ((rc = pb_field(&r, &f, &wire, &sub)) || (rc = pb_value(&r, wire, &v, &have))) goto done;
        if (f != 1 || wire != 2) continue;
        const uint8_t *piece;
        size_t len;
        float score;
        int type;
        if ((rc = parse_piece(sub, &piece, &len, &score, &type))) goto done;
        if (!dfm_utf8_check((const char *)piece, len, 1)) {
            rc = dfm_fail(DFM_E_FORMAT, "piece %d is not valid UTF-8", n_pieces);
            goto done;
        }
        if ((rc = dfm_unigram_add(&t->model, (const char *)piece, len, (double)score))) goto done;
        n_pieces++;
    }
    if (!n_pieces) {
        rc = dfm_fail(DFM_E_FORMAT, "no pieces");
        goto done;
    }
    for (int i = cfg.extra_ids - 1; i >= 0; i--) {
        char name[32];
        int k = snprintf(name, sizeof name, "<extra_id_%d>", i);
        if ((rc = dfm_unigram_add(&t->model, name, (size_t)k, 0.0))) goto done;
    }
    if (info.unk_id < 0 || info.unk_id > INT32_MAX) {
        rc = dfm_fail(DFM_E_FORMAT, "unk_id %lld", (long long)info.unk_id);
        goto done;
    }
    if ((rc = dfm_unigram_finish(&t->model, (int32_t)info.unk_id, 0))) goto done;
    /* normalizer, pre-tokenizer */
    dfm_norm_step st;
    if (info.charsmap_len) {
        memset(&st, 0, sizeof st);
        st.type = DFM_NORM_PRECOMPILED;
        if ((rc = dfm_charsmap_init(&st.cm, info.charsmap, info.charsmap_len))) goto done;
        if ((rc = dfm_tok_add_norm(t, &st))) {
            dfm_charsmap_free(&st.cm);
            goto done;
        }
    }
    memset(&st, 0, sizeof st);
    st.type = DFM_NORM_STRIP;
    st.right = 1;
    if ((rc = dfm_tok_add_norm(t, &st))) goto done;
    if ((rc = dfm_tok_replace_step(&st, " {2,}", 1, "\xE2\x96\x81"))) goto done;
    if ((rc = dfm_tok_add_norm(t, &st))) {
        free(st.pat);
        free(st.content);
        goto done;
    }
    dfm_pre_step ps = {.type = DFM_PRE_METASPACE, .repl = "\xE2\x96\x81", .repl_len = 3,
                       .prepend = DFM_PREPEND_ALWAYS, .split = 1};
    if ((rc = dfm_tok_add_pre(t, &ps))) goto done;
    /* added tokens: CONTROL (3) and USER_DEFINED (4) pieces, then the special tokens */
    r.p = b.data;
    while (r.p < r.end) {
        uint32_t f;
        int wire, have;
        pb sub;
        uint64_t v;
        if ((rc = pb_field(&r, &f, &wire, &sub)) || (rc = pb_value(&r, wire, &v, &have))) goto done;
        if (f != 1 || wire != 2) continue;
        const uint8_t *piece;
        size_t len;
        float score;
        int type;
        if ((rc = parse_piece(sub, &piece, &len, &score, &type))) goto done;
        if ((type == 3 || type == 4) &&
            (rc = dfm_tok_add_token(t, (const char *)piece, len, 0, 0, 0, 0, type == 3)))
            goto done;
    }
    const char *names[3] = {cfg.eos, cfg.unk, cfg.pad};
    for (int i = 0; i < 3; i++)
        if ((rc = dfm_tok_add_token(t, names[i], strlen(names[i]), 0, 0, 0, 0, 1))) goto done;
    for (int i = 0; i < cfg.extra_ids; i++) {
        char name[32];
        int k = snprintf(name, sizeof name, "<extra_id_%d>", i);
        if ((rc = dfm_tok_add_token(t, name, (size_t)k, 0, 0, 0, 0, 1))) goto done;
    }
    for (int i = 0; i < cfg.n_additional; i++)
        if ((rc = dfm_tok_add_token(t, cfg.additional[i], strlen(cfg.additional[i]), 0, 0, 0, 0, 1))) goto done;
    /* post-processor: </s> as the slow tokenizer's convert_tokens_to_ids gives it (unk if absent) */
    int32_t eos = dfm_unigram_id(&t->model, cfg.eos, strlen(cfg.eos));
    if (eos < 0) eos = (int32_t)info.unk_id;
    if (!(t->suffix = malloc(sizeof *t->suffix))) {
        rc = dfm_fail(DFM_E_NOMEM, "out of memory");
        goto done;
    }
    t->suffix[0] = eos;
    t->n_suffix = t->cap_suffix = 1;
    rc = dfm_tok_finish(t);
done:
    if (have_cfg) config_free(&cfg);
    dfm_buf_free(&b);
    if (rc < 0) dfm_fail_ctx(rc, "tokenizer '%s'", path);
    return rc;
}
