/* sample.c — the in-memory sample (see sample.h). */
#include "io/sample.h"
#include "base/buf.h"
#include "base/error.h"
#include "base/utf8.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void dfm_sample_init(dfm_sample *s) { memset(s, 0, sizeof *s); }

void dfm_sample_clear(dfm_sample *s)
{
    for (int i = 0; i < s->n; i++) {
        free(s->fields[i].name);
        free(s->fields[i].data);
    }
    s->n = 0;
    free(s->key);
    s->key = NULL;
}

void dfm_sample_free(dfm_sample *s)
{
    dfm_sample_clear(s);
    free(s->fields);
    s->fields = NULL;
    s->cap = 0;
}

int dfm_sample_set_key(dfm_sample *s, const char *key)
{
    char *k = dfm_strdup(key);
    if (!k) return DFM_E_NOMEM;
    free(s->key);
    s->key = k;
    return 0;
}

static int find(const dfm_sample *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->fields[i].name, name)) return i;
    return -1;
}

int dfm_sample_set_owned(dfm_sample *s, const char *name, uint8_t *data, size_t len)
{
    int i = find(s, name);
    if (i >= 0) {
        free(s->fields[i].data);
        s->fields[i].data = data;
        s->fields[i].len = len;
        return 0;
    }
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 8;
        dfm_field *f = dfm_realloc(s->fields, (size_t)cap * sizeof *f);
        if (!f) {
            free(data);
            return DFM_E_NOMEM;
        }
        s->fields = f;
        s->cap = cap;
    }
    char *nm = dfm_strdup(name);
    if (!nm) {
        free(data);
        return DFM_E_NOMEM;
    }
    s->fields[s->n++] = (dfm_field){nm, data, len};
    return 0;
}

int dfm_sample_set(dfm_sample *s, const char *name, const void *data, size_t len)
{
    uint8_t *p = dfm_malloc(len + 1);
    if (!p) return DFM_E_NOMEM;
    if (len) memcpy(p, data, len);
    p[len] = 0;
    return dfm_sample_set_owned(s, name, p, len);
}

int dfm_sample_set_str(dfm_sample *s, const char *name, const char *str)
{
    return dfm_sample_set(s, name, str, strlen(str));
}

const dfm_field *dfm_sample_get(const dfm_sample *s, const char *name)
{
    int i = find(s, name);
    return i < 0 ? NULL : &s->fields[i];
}

void dfm_sample_del(dfm_sample *s, const char *name)
{
    int i = find(s, name);
    if (i < 0) return;
    free(s->fields[i].name);
    free(s->fields[i].data);
    memmove(&s->fields[i], &s->fields[i + 1], (size_t)(s->n - i - 1) * sizeof s->fields[0]);
    s->n--;
}

int dfm_sample_copy(dfm_sample *dst, const dfm_sample *src)
{
    dfm_sample_clear(dst);
    if (src->key && dfm_sample_set_key(dst, src->key)) return DFM_E_NOMEM;
    for (int i = 0; i < src->n; i++)
        if (dfm_sample_set(dst, src->fields[i].name, src->fields[i].data, src->fields[i].len))
            return DFM_E_NOMEM;
    return 0;
}

size_t dfm_sample_bytes(const dfm_sample *s)
{
    size_t n = 0;
    for (int i = 0; i < s->n; i++) n += s->fields[i].len;
    return n;
}

int dfm_sample_json(const dfm_sample *s, cJSON **out)
{
    const dfm_field *f = dfm_sample_get(s, "json");
    if (!f) {
        *out = cJSON_CreateObject();
        return *out ? 0 : dfm_fail(DFM_E_NOMEM, "out of memory");
    }
    cJSON *j = cJSON_ParseWithLength((const char *)f->data, f->len);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return dfm_fail(DFM_E_FORMAT, "field 'json' is not a JSON object");
    }
    *out = j;
    return 0;
}

int dfm_sample_set_json(dfm_sample *s, const cJSON *obj)
{
    char *txt = cJSON_PrintUnformatted(obj);
    if (!txt) return dfm_fail(DFM_E_NOMEM, "out of memory printing JSON");
    size_t n = strlen(txt);
    uint8_t *p = dfm_malloc(n + 1);
    if (!p) {
        cJSON_free(txt);
        return DFM_E_NOMEM;
    }
    memcpy(p, txt, n + 1);
    cJSON_free(txt);
    return dfm_sample_set_owned(s, "json", p, n);
}

static int keep_byte(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

char *dfm_key_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = dfm_malloc(strlen(s) * 3 + 1), *o = out;
    if (!out) return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int u = *p >= 0x80 ? dfm_utf8_len(p) : 0;
        if (u) {
            memcpy(o, p, (size_t)u); /* valid UTF-8 stays readable */
            o += u;
            p += u - 1;
        } else if (keep_byte(*p)) {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = 0;
    return out;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

char *dfm_key_unescape(const char *key)
{
    size_t n = strcspn(key, "@");
    char *out = dfm_malloc(n + 1), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < n; i++) {
        if (key[i] == '%' && i + 2 < n + 1 && hexval(key[i + 1]) >= 0 && hexval(key[i + 2]) >= 0) {
            *o++ = (char)(hexval(key[i + 1]) * 16 + hexval(key[i + 2]));
            i += 2;
        } else {
            *o++ = key[i];
        }
    }
    *o = 0;
    return out;
}

const char *dfm_key_show(const char *key, char *buf, size_t n)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        if (o + 8 >= n) { /* room for one more escape and the dots */
            memcpy(buf + o, "...", 4);
            return buf;
        }
        int u = *p >= 0x80 ? dfm_utf8_len(p) : 0;
        if (u) {
            memcpy(buf + o, p, (size_t)u);
            o += (size_t)u;
            p += u - 1;
        } else if (*p < 0x20 || *p >= 0x7f || *p == '\\') {
            o += (size_t)snprintf(buf + o, n - o, "\\x%02x", *p);
        } else {
            buf[o++] = (char)*p;
        }
    }
    buf[o] = 0;
    return buf;
}
