/* sample.h — one sample of the stream: a key plus named fields, each a byte string.
 *
 * This is exactly a WebDataset sample (DESIGN.md §2): `__key__` is held in `key`, and every other
 * field (`txt`, `json`, `frames.npy`, ...) is a (name, bytes) pair kept in insertion order.
 * Field bytes are owned by the sample. This module knows nothing about framing (stream.h) or
 * about what the bytes mean, except the small JSON helpers for the `json` field.
 */
#ifndef DFM_IO_SAMPLE_H
#define DFM_IO_SAMPLE_H
#include <stddef.h>
#include <stdint.h>

typedef struct cJSON cJSON;

typedef struct {
    char *name;    /* field name without the key, e.g. "frames.npy" */
    uint8_t *data; /* owned; NUL-terminated one past len for convenience */
    size_t len;
} dfm_field;

typedef struct {
    char *key;
    dfm_field *fields;
    int n, cap;
} dfm_sample;

void dfm_sample_init(dfm_sample *s);
void dfm_sample_clear(dfm_sample *s); /* drop key and fields, keep the allocation */
void dfm_sample_free(dfm_sample *s);

int dfm_sample_set_key(dfm_sample *s, const char *key);
/* Set (replace or add) a field; copies the bytes. */
int dfm_sample_set(dfm_sample *s, const char *name, const void *data, size_t len);
/* Same, but takes ownership of `data` (malloc'd, freed by the sample, even on failure). */
int dfm_sample_set_owned(dfm_sample *s, const char *name, uint8_t *data, size_t len);
int dfm_sample_set_str(dfm_sample *s, const char *name, const char *str);
const dfm_field *dfm_sample_get(const dfm_sample *s, const char *name);
void dfm_sample_del(dfm_sample *s, const char *name);
/* Deep copy of src into dst (dst initialized). */
int dfm_sample_copy(dfm_sample *dst, const dfm_sample *src);
/* Sum of field sizes. */
size_t dfm_sample_bytes(const dfm_sample *s);

/* The `json` field as a cJSON object: parsed if present (a parse error is DFM_E_FORMAT),
 * else a new empty object. The caller owns *out (cJSON_Delete). */
int dfm_sample_json(const dfm_sample *s, cJSON **out);
/* Serialize obj (compact, keys in insertion order) into the `json` field. Does not free obj. */
int dfm_sample_set_json(dfm_sample *s, const cJSON *obj);

/* Keys: a WebDataset key must not contain '.', and '/' would make directories inside tar.
 * dfm_key_escape() maps any string to a key: bytes in [A-Za-z0-9_-] and valid UTF-8 sequences are
 * kept, everything else (including bytes of invalid UTF-8) becomes %XX (upper-case hex), so every
 * key is valid UTF-8. Injective, so distinct paths give distinct
 * keys; suffixes added after escaping (e.g. "@c1", "@f12") cannot collide with escaped text. */
char *dfm_key_escape(const char *s);
/* The inverse of dfm_key_escape for the escaped part (up to an unescaped '@'); malloc'd. */
char *dfm_key_unescape(const char *key);
/* A key (or any string read from input) made safe for a message: control bytes, DEL, '\\' and
 * invalid UTF-8 as \xNN, cut with "..." to fit buf[n] (n >= 16). Returns buf. */
const char *dfm_key_show(const char *key, char *buf, size_t n);

#endif
