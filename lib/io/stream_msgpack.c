/* stream_msgpack.c — the msgpack framing of the sample stream (formats/sample-stream.md §2):
 * a plain concatenation of msgpack maps, one per sample,
 *     {"__key__": str, "<field>": bin, ...}
 * Reading goes through msgpack-c's streaming unpacker fed from a dfm_src; payloads are copied
 * out of the unpacker's zone into the sample. Writing packs each sample straight into a dfm_sink
 * (every field as bin, so Python's msgpack gives bytes for every field, as WebDataset does).
 *
 * Not here: detection (stream.c), compression (stream_bytes.c), what fields mean.
 */
#include "io/stream_impl.h"
#include "base/buf.h"
#include "base/error.h"

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#define MP_READ_CHUNK (256u << 10)
#define MP_SLACK (1u << 20) /* record bytes allowed beyond max_sample_bytes (names, headers) */

struct dfm_mp_reader {
    dfm_src *src;
    msgpack_unpacker u;
    msgpack_unpacked res;
    uint64_t max;
    uint64_t nread; /* samples returned so far */
    int eof, err;
    int sniffed;    /* tried to find the key of the record being received */
    char *partial_key;
};

int dfm_mp_reader_new(dfm_mp_reader **out, dfm_src *src, uint64_t max_sample_bytes)
{
    *out = NULL;
    dfm_mp_reader *r = dfm_calloc(1, sizeof *r);
    if (!r) return DFM_E_NOMEM;
    if (!msgpack_unpacker_init(&r->u, MSGPACK_UNPACKER_INIT_BUFFER_SIZE)) {
        free(r);
        return dfm_fail(DFM_E_NOMEM, "out of memory (msgpack unpacker)");
    }
    msgpack_unpacked_init(&r->res);
    r->src = src;
    r->max = max_sample_bytes;
    *out = r;
    return 0;
}

void dfm_mp_reader_free(dfm_mp_reader *r)
{
    if (!r) return;
    msgpack_unpacked_destroy(&r->res);
    msgpack_unpacker_destroy(&r->u);
    free(r->partial_key);
    free(r);
}

static const char *type_name(msgpack_object_type t)
{
    switch (t) {
    case MSGPACK_OBJECT_NIL: return "nil";
    case MSGPACK_OBJECT_BOOLEAN: return "boolean";
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return "integer";
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: return "float";
    case MSGPACK_OBJECT_STR: return "str";
    case MSGPACK_OBJECT_ARRAY: return "array";
    case MSGPACK_OBJECT_MAP: return "map";
    case MSGPACK_OBJECT_BIN: return "bin";
    case MSGPACK_OBJECT_EXT: return "ext";
    }
    return "unknown type";
}

/* Bytes of a str or bin object. */
static void raw_of(const msgpack_object *o, const char **p, size_t *n)
{
    if (o->type == MSGPACK_OBJECT_STR) {
        *p = o->via.str.ptr;
        *n = o->via.str.size;
    } else {
        *p = o->via.bin.ptr;
        *n = o->via.bin.size;
    }
}

static int is_raw(const msgpack_object *o)
{
    return o->type == MSGPACK_OBJECT_STR || o->type == MSGPACK_OBJECT_BIN;
}

static int str_eq(const msgpack_object *o, const char *s)
{
    size_t n = strlen(s);
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == n && !memcmp(o->via.str.ptr, s, n);
}

/* Metadata entries other than __key__ ("__url__", "__local_path__", ...) are dropped. */
static int is_meta(const char *p, size_t n)
{
    return n >= 4 && p[0] == '_' && p[1] == '_' && p[n - 2] == '_' && p[n - 1] == '_';
}

/* Turn one unpacked record into s. */
static int convert(dfm_mp_reader *r, const msgpack_object *o, dfm_sample *s)
{
    unsigned long long idx = (unsigned long long)r->nread;
    if (o->type != MSGPACK_OBJECT_MAP)
        return dfm_fail(DFM_E_FORMAT, "msgpack record %llu is a %s, not a map", idx,
                        type_name(o->type));
    const msgpack_object_kv *kv = o->via.map.ptr;
    uint32_t n = o->via.map.size;
    const msgpack_object *key = NULL;
    for (uint32_t i = 0; i < n; i++)
        if (str_eq(&kv[i].key, "__key__")) key = &kv[i].val;
    if (!key) return dfm_fail(DFM_E_FORMAT, "msgpack record %llu has no '__key__'", idx);
    if (!is_raw(key))
        return dfm_fail(DFM_E_FORMAT, "msgpack record %llu: '__key__' is a %s, not a str", idx,
                        type_name(key->type));
    const char *kp;
    size_t kn;
    raw_of(key, &kp, &kn);
    if (kn == 0 || memchr(kp, 0, kn))
        return dfm_fail(DFM_E_FORMAT, "msgpack record %llu: '__key__' is empty or has a NUL byte",
                        idx);
    char *k = dfm_strndup(kp, kn);
    if (!k) return DFM_E_NOMEM;
    int rc = dfm_sample_set_key(s, k);
    free(k);
    if (rc) return rc;

    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *name = &kv[i].key, *val = &kv[i].val;
        if (name->type != MSGPACK_OBJECT_STR)
            return dfm_fail(DFM_E_FORMAT, "sample '%s': a field name is a msgpack %s, not a str",
                            s->key, type_name(name->type));
        const char *np = name->via.str.ptr;
        size_t nn = name->via.str.size;
        if (is_meta(np, nn)) continue; /* __key__ itself, and other metadata */
        if (nn == 0 || memchr(np, 0, nn))
            return dfm_fail(DFM_E_FORMAT, "sample '%s': a field name is empty or has a NUL byte",
                            s->key);
        char *nm = dfm_strndup(np, nn);
        if (!nm) return DFM_E_NOMEM;
        if (!is_raw(val)) {
            rc = dfm_fail(DFM_E_FORMAT, "sample '%s': field '%s' is a msgpack %s, not bin or str",
                          s->key, nm, type_name(val->type));
        } else if (dfm_sample_get(s, nm)) {
            rc = dfm_fail(DFM_E_FORMAT, "sample '%s': duplicate field '%s'", s->key, nm);
        } else {
            const char *vp;
            size_t vn;
            raw_of(val, &vp, &vn);
            total += vn;
            if (r->max && total > r->max)
                rc = dfm_fail(DFM_E_LIMIT, "sample '%s' is larger than the limit of %llu bytes",
                              s->key, (unsigned long long)r->max);
            else
                rc = dfm_sample_set(s, nm, vp, vn); /* copies out of the unpacker's zone */
        }
        free(nm);
        if (rc) return rc;
    }
    return 0;
}

/* Best effort: the "__key__" of a record that is still arriving, for the limit message. At the
 * first CONTINUE of a record, its bytes from the start are still in the unpacker's buffer. */
static void sniff_key(dfm_mp_reader *r)
{
    r->sniffed = 1;
    if (r->u.parsed == 0 || r->u.parsed > r->u.off) return;
    const uint8_t *p = (const uint8_t *)r->u.buffer + (r->u.off - r->u.parsed);
    size_t n = r->u.used - (r->u.off - r->u.parsed);
    msgpack_unpacked tmp;
    msgpack_unpacked_init(&tmp);
    /* the map header, then the first key/value pair, parsed one object at a time */
    size_t off = 0, hdr = 0;
    if (n > 0 && (p[0] & 0xf0) == 0x80) hdr = 1;
    else if (n > 0 && p[0] == 0xde) hdr = 3;
    else if (n > 0 && p[0] == 0xdf) hdr = 5;
    if (!hdr || n < hdr) goto done;
    off = hdr;
    if (msgpack_unpack_next(&tmp, (const char *)p, n, &off) != MSGPACK_UNPACK_SUCCESS ||
        !str_eq(&tmp.data, "__key__"))
        goto done;
    if (msgpack_unpack_next(&tmp, (const char *)p, n, &off) != MSGPACK_UNPACK_SUCCESS ||
        tmp.data.type != MSGPACK_OBJECT_STR)
        goto done;
    free(r->partial_key);
    r->partial_key = dfm_strndup(tmp.data.via.str.ptr, tmp.data.via.str.size);
done:
    msgpack_unpacked_destroy(&tmp);
}

int dfm_mp_reader_next(dfm_mp_reader *r, dfm_sample *s)
{
    dfm_sample_clear(s);
    if (r->err) return r->err;
    for (;;) {
        msgpack_unpack_return ret = msgpack_unpacker_next(&r->u, &r->res);
        if (ret == MSGPACK_UNPACK_SUCCESS) {
            int rc = convert(r, &r->res.data, s);
            /* drop the zone now: it may pin a large buffer */
            msgpack_unpacked_destroy(&r->res);
            msgpack_unpacked_init(&r->res);
            r->sniffed = 0;
            free(r->partial_key);
            r->partial_key = NULL;
            if (rc) {
                dfm_sample_clear(s);
                return r->err = rc;
            }
            r->nread++;
            return 1;
        }
        if (ret == MSGPACK_UNPACK_PARSE_ERROR)
            return r->err = dfm_fail(DFM_E_FORMAT, "'%s': not valid msgpack after %llu samples",
                                     dfm_src_name(r->src), (unsigned long long)r->nread);
        if (ret != MSGPACK_UNPACK_CONTINUE)
            return r->err = dfm_fail(DFM_E_NOMEM, "out of memory unpacking msgpack record %llu",
                                     (unsigned long long)r->nread);
        size_t pending = msgpack_unpacker_message_size(&r->u);
        if (r->eof) {
            if (pending == 0) return 0;
            return r->err = dfm_fail(DFM_E_FORMAT,
                                     "'%s': truncated msgpack record after %llu samples "
                                     "(%zu bytes of an incomplete record at the end)",
                                     dfm_src_name(r->src), (unsigned long long)r->nread, pending);
        }
        if (!r->sniffed && r->u.parsed > 0) sniff_key(r);
        if (r->max && pending > r->max + MP_SLACK) {
            if (r->partial_key)
                return r->err = dfm_fail(DFM_E_LIMIT,
                                         "sample '%s' is larger than the limit of %llu bytes",
                                         r->partial_key, (unsigned long long)r->max);
            return r->err = dfm_fail(DFM_E_LIMIT,
                                     "msgpack record %llu is larger than the limit of %llu bytes",
                                     (unsigned long long)r->nread, (unsigned long long)r->max);
        }
        if (!msgpack_unpacker_reserve_buffer(&r->u, MP_READ_CHUNK))
            return r->err = dfm_fail(DFM_E_NOMEM, "out of memory reading msgpack");
        long got = dfm_src_read(r->src, msgpack_unpacker_buffer(&r->u),
                                msgpack_unpacker_buffer_capacity(&r->u));
        if (got < 0) return r->err = (int)got;
        if (got == 0) r->eof = 1;
        else msgpack_unpacker_buffer_consumed(&r->u, (size_t)got);
    }
}

/* ---- writing -------------------------------------------------------------------------- */

static int sink_cb(void *data, const char *buf, size_t len)
{
    return dfm_sink_write(data, buf, len) ? -1 : 0;
}

int dfm_mp_write(dfm_sink *k, const dfm_sample *s)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, k, sink_cb);
    size_t kn = strlen(s->key);
    int bad = msgpack_pack_map(&pk, (size_t)s->n + 1);
    bad = bad || msgpack_pack_str_with_body(&pk, "__key__", 7);
    bad = bad || msgpack_pack_str_with_body(&pk, s->key, kn);
    for (int i = 0; i < s->n && !bad; i++) {
        const dfm_field *f = &s->fields[i];
        bad = msgpack_pack_str_with_body(&pk, f->name, strlen(f->name));
        bad = bad || msgpack_pack_bin_with_body(&pk, f->data, f->len);
    }
    if (!bad) return 0;
    return dfm_sink_error(k) ? dfm_sink_error(k) : dfm_fail(DFM_E_IO, "msgpack packing failed");
}
