/* stream_msgpack.c — the msgpack framing of the sample stream (formats/sample-stream.md §2):
 * a plain concatenation of msgpack maps, one per sample,
 *     {"__key__": str, "<field>": bin (or str), ...}
 * between two control records that dfm writers add and Python readers skip (no `__key__`):
 *     {"__dfm_stream__": 1}   first: this stream promises an end record
 *     {"__dfm_end__": N}      last, only when the writer finished cleanly; N samples came
 * A stream that began with the first and ends without the second was cut short: an earlier
 * stage died, and the reader says so. Streams without control records (third-party writers)
 * end wherever their bytes end, as before.
 *
 * Reading is a small bounded reader for exactly this shape, fed from a dfm_src: it checks each
 * object header as it arrives, names the sample in every error, never allocates more than the
 * bytes that actually arrived (a lying length cannot make it allocate), and reads each payload
 * straight into the sample's field buffer. msgpack-c's general unpacker is not used for reading:
 * it allocates from the element counts an input declares before the elements arrive (9 hostile
 * bytes ask for 256 GiB) and holds a whole record in its own buffer before we copy it out.
 * Writing packs each sample with msgpack-c's packer straight into a dfm_sink; every field is bin,
 * so Python's msgpack gives bytes for every field, as WebDataset does.
 *
 * Not here: detection (stream.c), compression (stream_bytes.c), what fields mean.
 */
#include "io/stream_impl.h"
#include "base/buf.h"
#include "base/error.h"

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#define MP_BUF (256u << 10)
#define MP_MAX_NAME DFM_STREAM_MAX_NAME /* bytes in a field name */

struct dfm_mp_reader {
    dfm_src *src;
    uint8_t *buf;
    size_t pos, len; /* unread bytes are buf[pos, len) */
    uint64_t max;
    uint64_t nread;  /* samples returned so far */
    int err;
    int eof;
    int promised;    /* a begin record came and its end record has not (yet) */
    uint64_t seg;    /* samples since that begin record */
};

int dfm_mp_reader_new(dfm_mp_reader **out, dfm_src *src, uint64_t max_sample_bytes)
{
    *out = NULL;
    dfm_mp_reader *r = dfm_calloc(1, sizeof *r);
    if (!r) return DFM_E_NOMEM;
    r->buf = dfm_malloc(MP_BUF);
    if (!r->buf) {
        free(r);
        return DFM_E_NOMEM;
    }
    r->src = src;
    r->max = max_sample_bytes;
    *out = r;
    return 0;
}

void dfm_mp_reader_free(dfm_mp_reader *r)
{
    if (!r) return;
    free(r->buf);
    free(r);
}

/* ---- buffered input ------------------------------------------------------------------- */

/* Make at least `need` (<= 16) bytes available. Returns 1, 0 at end of stream, or < 0. */
static int fill(dfm_mp_reader *r, size_t need)
{
    while (r->len - r->pos < need) {
        if (r->eof) return 0;
        if (r->pos > 0) {
            memmove(r->buf, r->buf + r->pos, r->len - r->pos);
            r->len -= r->pos;
            r->pos = 0;
        }
        long n = dfm_src_read(r->src, r->buf + r->len, MP_BUF - r->len);
        if (n < 0) return (int)n;
        if (n == 0) r->eof = 1;
        r->len += (size_t)n;
    }
    return 1;
}

/* Read exactly n bytes into dst (NULL: skip them). Returns 1, 0 if the stream ended first, < 0. */
static int take(dfm_mp_reader *r, uint8_t *dst, uint64_t n)
{
    size_t k = r->len - r->pos;
    if (k > n) k = (size_t)n;
    if (dst) memcpy(dst, r->buf + r->pos, k);
    r->pos += k;
    n -= k;
    while (n > 0) { /* large payloads go straight from the source into dst */
        if (r->eof) return 0;
        uint8_t *to = dst ? dst + k : r->buf;
        size_t want = dst ? (size_t)n : (n < MP_BUF ? (size_t)n : MP_BUF);
        long got = dfm_src_read(r->src, to, want);
        if (got < 0) return (int)got;
        if (got == 0) r->eof = 1;
        k += (size_t)got;
        n -= (uint64_t)got;
    }
    return 1;
}

static uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = v << 8 | p[i];
    return v;
}

/* ---- object headers ------------------------------------------------------------------- */

enum { K_MAP, K_STR, K_BIN, K_UINT, K_OTHER };

static const char *type_name(uint8_t b)
{
    if (b <= 0x7f || b >= 0xe0 || (b >= 0xcc && b <= 0xd3)) return "an integer";
    if (b <= 0x8f || b == 0xde || b == 0xdf) return "a map";
    if (b <= 0x9f || b == 0xdc || b == 0xdd) return "an array";
    if (b <= 0xbf || (b >= 0xd9 && b <= 0xdb)) return "a str";
    if (b >= 0xc4 && b <= 0xc6) return "a bin";
    if (b == 0xc0) return "a nil";
    if (b == 0xc2 || b == 0xc3) return "a boolean";
    if (b == 0xca || b == 0xcb) return "a float";
    if (b == 0xc1) return "the invalid byte 0xc1";
    return "an ext";
}

/* Read one header: *kind, *n = element count (map), byte length (str/bin) or value (uint),
 * *tb = first byte.
 * Returns 1, 0 at a clean end of stream (no byte read), or < 0 (-100: truncated). */
static int header(dfm_mp_reader *r, int *kind, uint64_t *n, uint8_t *tb)
{
    int rc = fill(r, 1);
    if (rc <= 0) return rc;
    uint8_t b = r->buf[r->pos];
    *tb = b;
    int extra = 0;
    *kind = K_OTHER;
    if (b >= 0x80 && b <= 0x8f) *kind = K_MAP, *n = b & 0x0f;
    else if (b >= 0xa0 && b <= 0xbf) *kind = K_STR, *n = b & 0x1f;
    else if (b == 0xde || b == 0xdf) *kind = K_MAP, extra = b == 0xde ? 2 : 4;
    else if (b >= 0xd9 && b <= 0xdb) *kind = K_STR, extra = 1 << (b - 0xd9);
    else if (b >= 0xc4 && b <= 0xc6) *kind = K_BIN, extra = 1 << (b - 0xc4);
    else if (b <= 0x7f) *kind = K_UINT, *n = b;
    else if (b >= 0xcc && b <= 0xcf) *kind = K_UINT, extra = 1 << (b - 0xcc);
    if (*kind == K_OTHER) return 1; /* the caller reports the type; we do not skip it */
    rc = fill(r, 1 + (size_t)extra);
    if (rc < 0) return rc;
    if (rc == 0) return -100;
    if (extra) *n = be(r->buf + r->pos + 1, extra);
    r->pos += 1 + (size_t)extra;
    return 1;
}

/* ---- records -------------------------------------------------------------------------- */

/* "sample 'KEY'" once the key is known, else "msgpack record N" */
static const char *who(const dfm_mp_reader *r, const dfm_sample *s, char *tmp, size_t n)
{
    if (s->key) snprintf(tmp, n, "sample '%s'", s->key);
    else snprintf(tmp, n, "msgpack record %llu", (unsigned long long)r->nread);
    return tmp;
}

/* Metadata entries other than __key__ ("__url__", "__local_path__", ...) are dropped. */
static int is_meta(const char *p, size_t n)
{
    return n >= 4 && p[0] == '_' && p[1] == '_' && p[n - 2] == '_' && p[n - 1] == '_';
}

static int truncated(dfm_mp_reader *r)
{
    return dfm_fail(DFM_E_FORMAT, DFM_TRUNCATED_MSG ": it ends inside a msgpack record, after %llu "
                    "samples", (unsigned long long)r->nread);
}

enum { REC_SAMPLE = 1, REC_BEGIN, REC_END };

/* The control records' names (formats/sample-stream.md §2.1). */
#define CTL_BEGIN "__dfm_stream__"
#define CTL_END "__dfm_end__"
#define STREAM_VERSION 1

/* Read one record: REC_SAMPLE into s, or a control record (REC_BEGIN/REC_END with *ctl = its
 * value), 0 at a clean end of the bytes, or < 0. */
static int read_record(dfm_mp_reader *r, dfm_sample *s, uint64_t *ctl)
{
    char w[600];
    int kind = K_OTHER, ctl_kind = 0;
    uint64_t count = 0, n = 0;
    uint8_t tb = 0;
    int rc = header(r, &kind, &count, &tb);
    if (rc == 0) return 0;
    if (rc == -100) return truncated(r);
    if (rc < 0) return rc;
    if (kind != K_MAP)
        return dfm_fail(DFM_E_FORMAT, "msgpack record %llu is %s, not a map",
                        (unsigned long long)r->nread, type_name(tb));
    if (count > DFM_STREAM_MAX_FIELDS + 1)
        return dfm_fail(DFM_E_LIMIT, "msgpack record %llu has %llu entries (at most %d fields)",
                        (unsigned long long)r->nread, (unsigned long long)count,
                        DFM_STREAM_MAX_FIELDS);
    uint64_t total = 0;
    char name[MP_MAX_NAME + 1];
    for (uint64_t i = 0; i < count; i++) {
        rc = header(r, &kind, &n, &tb);
        if (rc == 0 || rc == -100) return truncated(r);
        if (rc < 0) return rc;
        if (kind != K_STR)
            return dfm_fail(DFM_E_FORMAT, "%s: a field name is %s, not a str",
                            who(r, s, w, sizeof w), type_name(tb));
        if (n == 0 || n > MP_MAX_NAME)
            return dfm_fail(DFM_E_FORMAT, "%s: a field name is empty or longer than %d bytes",
                            who(r, s, w, sizeof w), MP_MAX_NAME);
        rc = take(r, (uint8_t *)name, n);
        if (rc == 0) return truncated(r);
        if (rc < 0) return rc;
        name[n] = 0;
        if (memchr(name, 0, n))
            return dfm_fail(DFM_E_FORMAT, "%s: a field name has a NUL byte", who(r, s, w, sizeof w));

        rc = header(r, &kind, &n, &tb);
        if (rc == 0 || rc == -100) return truncated(r);
        if (rc < 0) return rc;
        int which = !strcmp(name, CTL_BEGIN) ? REC_BEGIN : !strcmp(name, CTL_END) ? REC_END : 0;
        if (which) {
            if (kind != K_UINT || ctl_kind)
                return dfm_fail(DFM_E_FORMAT, "msgpack record %llu: '%s' is %s, not a count, or "
                                "repeated", (unsigned long long)r->nread, name, type_name(tb));
            ctl_kind = which;
            *ctl = n;
            continue;
        }
        char shown[300]; /* the name as bytes a terminal can show */
        if (kind != K_STR && kind != K_BIN)
            return dfm_fail(DFM_E_FORMAT, "%s: field '%s' is %s, not bin or str", who(r, s, w, sizeof w),
                            dfm_key_show(name, shown, sizeof shown), type_name(tb));
        int is_key = !strcmp(name, "__key__");
        if (is_key && s->key)
            return dfm_fail(DFM_E_FORMAT, "%s: duplicate '__key__'", who(r, s, w, sizeof w));
        if (!is_key && !is_meta(name, strlen(name)) && dfm_sample_get(s, name))
            return dfm_fail(DFM_E_FORMAT, "%s: duplicate field '%s'", who(r, s, w, sizeof w),
                            dfm_key_show(name, shown, sizeof shown));
        total += n;
        if (r->max && total > r->max)
            return dfm_fail(DFM_E_LIMIT, "%s is larger than the limit of %llu bytes",
                            who(r, s, w, sizeof w), (unsigned long long)r->max);
        if (!is_key && is_meta(name, strlen(name))) {
            rc = take(r, NULL, n);
            if (rc == 0) return truncated(r);
            if (rc < 0) return rc;
            continue;
        }
        if (n > (uint64_t)SIZE_MAX - 1) return dfm_fail(DFM_E_LIMIT, "field too large");
        /* the bytes must arrive before we commit memory to them: read in bounded steps */
        size_t cap = n < MP_BUF ? (size_t)n : MP_BUF, got = 0;
        uint8_t *data = dfm_malloc(cap + 1);
        if (!data) return DFM_E_NOMEM;
        while (got < n) {
            if (got == cap) {
                cap = cap > (size_t)n / 2 ? (size_t)n : cap * 2;
                uint8_t *nd = dfm_realloc(data, cap + 1);
                if (!nd) {
                    free(data);
                    return DFM_E_NOMEM;
                }
                data = nd;
            }
            rc = take(r, data + got, cap - got);
            if (rc <= 0) {
                free(data);
                return rc == 0 ? truncated(r) : rc;
            }
            got = cap;
        }
        data[n] = 0;
        if (is_key) { /* an empty key is a bad sample (writers skip it), a NUL cannot be kept */
            if (memchr(data, 0, (size_t)n)) {
                free(data);
                return dfm_fail(DFM_E_FORMAT, "msgpack record %llu: '__key__' has a NUL byte",
                                (unsigned long long)r->nread);
            }
            s->key = (char *)data;
            continue;
        }
        rc = dfm_sample_set_owned(s, name, data, (size_t)n);
        if (rc) return rc;
    }
    if (ctl_kind) {
        if (s->key || s->n)
            return dfm_fail(DFM_E_FORMAT, "msgpack record %llu: a control record ('%s') with "
                            "sample fields", (unsigned long long)r->nread,
                            ctl_kind == REC_BEGIN ? CTL_BEGIN : CTL_END);
        return ctl_kind;
    }
    if (!s->key)
        return dfm_fail(DFM_E_FORMAT, "msgpack record %llu has no '__key__'",
                        (unsigned long long)r->nread);
    return REC_SAMPLE;
}

/* Follow the begin/end records; returns 0 to go on reading, or < 0. */
static int control(dfm_mp_reader *r, int kind, uint64_t v)
{
    if (kind == REC_BEGIN) {
        if (r->promised) /* `cat cut.mp whole.mp`: the first part never ended */
            return dfm_fail(DFM_E_FORMAT, DFM_TRUNCATED_MSG ": a new stream begins after %llu "
                            "samples, before the end record of the one before",
                            (unsigned long long)r->nread);
        if (v != STREAM_VERSION)
            return dfm_fail(DFM_E_FORMAT, "a dfm stream of version %llu (this dfm reads "
                            "version %d)", (unsigned long long)v, STREAM_VERSION);
        r->promised = 1;
        r->seg = 0;
        return 0;
    }
    if (!r->promised)
        return dfm_fail(DFM_E_FORMAT, "an end record after %llu samples, with no begin record "
                        "before it", (unsigned long long)r->nread);
    if (v != r->seg)
        return dfm_fail(DFM_E_FORMAT, "the end record counts %llu samples, but %llu came",
                        (unsigned long long)v, (unsigned long long)r->seg);
    r->promised = 0;
    return 0;
}

int dfm_mp_reader_next(dfm_mp_reader *r, dfm_sample *s)
{
    dfm_sample_clear(s);
    if (r->err) return r->err;
    for (;;) {
        uint64_t v = 0;
        int rc = read_record(r, s, &v);
        if (rc == 0) {
            if (!r->promised) return 0;
            rc = dfm_fail(DFM_E_FORMAT, DFM_TRUNCATED_MSG ": no end record after %llu samples",
                          (unsigned long long)r->nread);
        } else if (rc == REC_BEGIN || rc == REC_END) {
            rc = control(r, rc, v);
            if (rc == 0) continue;
        }
        if (rc < 0) {
            dfm_sample_clear(s);
            return r->err = rc;
        }
        r->nread++;
        r->seg++;
        return 1;
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

static int write_control(dfm_sink *k, const char *name, uint64_t v)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, k, sink_cb);
    int bad = msgpack_pack_map(&pk, 1);
    bad = bad || msgpack_pack_str_with_body(&pk, name, strlen(name));
    bad = bad || msgpack_pack_uint64(&pk, v); /* the shortest form: a fixint up to 127 */
    if (!bad) return 0;
    return dfm_sink_error(k) ? dfm_sink_error(k) : dfm_fail(DFM_E_IO, "msgpack packing failed");
}

int dfm_mp_write_begin(dfm_sink *k) { return write_control(k, CTL_BEGIN, STREAM_VERSION); }
int dfm_mp_write_end(dfm_sink *k, uint64_t samples) { return write_control(k, CTL_END, samples); }
