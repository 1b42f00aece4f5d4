/* npy.c — the NumPy .npy subset (npy.h): parse a complete .npy held in memory, build one.
 *
 * The header is a Python dict literal such as
 *     {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
 * We read it with a small bounded tokenizer (strings, True/False, integer tuples), never beyond
 * the header length the file declares, and accept any spacing, either quote, a trailing comma,
 * () and (3,). We write exactly what numpy >= 1.24 writes (np.save): version 1.0, keys in sorted
 * order, the growth padding numpy reserves after the first dimension, spaces up to a multiple of
 * 64 bytes, then '\n' — so our headers are byte-identical to np.save's.
 * ref: numpy/lib/format.py _write_array_header, _wrap_header, _read_array_header
 *
 * Not here: .npz, object/structured/big-endian dtypes, Fortran order, memory mapping.
 */
#include "io/npy.h"
#include "base/buf.h"
#include "base/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char MAGIC[6] = {(char)0x93, 'N', 'U', 'M', 'P', 'Y'};
#define GROWTH_AXIS_MAX_DIGITS 21 /* numpy/lib/format.py */

size_t dfm_npy_itemsize(dfm_npy_dtype t)
{
    switch (t) {
    case DFM_NPY_U8: return 1;
    case DFM_NPY_F16: return 2;
    case DFM_NPY_I32:
    case DFM_NPY_F32: return 4;
    case DFM_NPY_I64: return 8;
    }
    return 0;
}

const char *dfm_npy_descr(dfm_npy_dtype t)
{
    switch (t) {
    case DFM_NPY_U8: return "|u1";
    case DFM_NPY_I32: return "<i4";
    case DFM_NPY_I64: return "<i8";
    case DFM_NPY_F16: return "<f2";
    case DFM_NPY_F32: return "<f4";
    }
    return "?";
}

/* ---- header parsing ------------------------------------------------------------------- */

typedef struct {
    const char *p, *end;
} cursor;

static void skip_ws(cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int accept(cursor *c, char ch)
{
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

/* A quoted string without escapes into out[cap]. */
static int parse_str(cursor *c, char *out, size_t cap)
{
    skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return -1;
    char q = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\' || *c->p == 0 || n + 1 >= cap) return -1;
        out[n++] = *c->p++;
    }
    if (c->p >= c->end) return -1;
    c->p++;
    out[n] = 0;
    return 0;
}

static int parse_word(cursor *c, const char *w)
{
    skip_ws(c);
    size_t n = strlen(w);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, w, n)) return 0;
    c->p += n;
    return 1;
}

/* A non-negative decimal integer (a Python 2 'L' suffix is tolerated). */
static int parse_int(cursor *c, int64_t *v)
{
    skip_ws(c);
    if (c->p >= c->end || *c->p < '0' || *c->p > '9') return -1;
    int64_t x = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        int d = *c->p++ - '0';
        if (x > (INT64_MAX - d) / 10) return -1;
        x = x * 10 + d;
    }
    if (c->p < c->end && *c->p == 'L') c->p++;
    *v = x;
    return 0;
}

static int parse_shape(cursor *c, dfm_npy *out)
{
    if (!accept(c, '(')) return dfm_fail(DFM_E_FORMAT, "npy header: 'shape' is not a tuple");
    out->ndim = 0;
    if (accept(c, ')')) return 0;
    for (;;) {
        if (out->ndim == DFM_NPY_MAX_DIMS)
            return dfm_fail(DFM_E_UNSUPPORTED, "npy: more than %d dimensions", DFM_NPY_MAX_DIMS);
        if (parse_int(c, &out->shape[out->ndim]))
            return dfm_fail(DFM_E_FORMAT, "npy header: bad dimension in 'shape'");
        out->ndim++;
        if (accept(c, ')')) return 0;
        if (!accept(c, ',')) return dfm_fail(DFM_E_FORMAT, "npy header: bad 'shape' tuple");
        if (accept(c, ')')) return 0;
    }
}

static int dtype_of(const char *d, dfm_npy_dtype *t)
{
    static const struct {
        const char *s;
        dfm_npy_dtype t;
    } tab[] = {{"|u1", DFM_NPY_U8},  {"<u1", DFM_NPY_U8},  {"u1", DFM_NPY_U8},
               {"<i4", DFM_NPY_I32}, {"<i8", DFM_NPY_I64}, {"<f2", DFM_NPY_F16},
               {"<f4", DFM_NPY_F32}};
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (!strcmp(d, tab[i].s)) {
            *t = tab[i].t;
            return 0;
        }
    if (d[0] == '>') return dfm_fail(DFM_E_UNSUPPORTED, "npy: big-endian dtype '%s'", d);
    return dfm_fail(DFM_E_UNSUPPORTED, "npy: unsupported dtype '%s' (we read u1 i4 i8 f2 f4)", d);
}

/* With descr non-NULL (32 bytes) the dtype string is copied there instead of being checked, so a
 * header with any dtype can be described. */
static int parse_header(const char *h, size_t n, dfm_npy *out, char *descr_out)
{
    cursor c = {h, h + n};
    int have_descr = 0, have_fortran = 0, have_shape = 0, fortran = 0;
    char key[32], descr[32];
    if (!accept(&c, '{')) return dfm_fail(DFM_E_FORMAT, "npy header is not a dict");
    for (;;) {
        if (accept(&c, '}')) break;
        if (parse_str(&c, key, sizeof key))
            return dfm_fail(DFM_E_FORMAT, "npy header: expected a quoted key");
        if (!accept(&c, ':')) return dfm_fail(DFM_E_FORMAT, "npy header: expected ':' after '%s'", key);
        int rc;
        if (!strcmp(key, "descr") && !have_descr) {
            skip_ws(&c);
            if (c.p < c.end && *c.p == '[')
                return dfm_fail(DFM_E_UNSUPPORTED, "npy: structured dtypes are not supported");
            if (parse_str(&c, descr, sizeof descr))
                return dfm_fail(DFM_E_FORMAT, "npy header: bad 'descr' string");
            if (descr_out) memcpy(descr_out, descr, sizeof descr);
            else if ((rc = dtype_of(descr, &out->dtype))) return rc;
            have_descr = 1;
        } else if (!strcmp(key, "fortran_order") && !have_fortran) {
            if (parse_word(&c, "True")) fortran = 1;
            else if (!parse_word(&c, "False"))
                return dfm_fail(DFM_E_FORMAT, "npy header: 'fortran_order' is not True/False");
            have_fortran = 1;
        } else if (!strcmp(key, "shape") && !have_shape) {
            if ((rc = parse_shape(&c, out))) return rc;
            have_shape = 1;
        } else {
            return dfm_fail(DFM_E_FORMAT, "npy header: unexpected or repeated key '%s'", key);
        }
        if (accept(&c, '}')) break;
        if (!accept(&c, ',')) return dfm_fail(DFM_E_FORMAT, "npy header: expected ',' or '}'");
    }
    skip_ws(&c);
    if (c.p != c.end) return dfm_fail(DFM_E_FORMAT, "npy header: junk after the dict");
    if (!have_descr || !have_fortran || !have_shape)
        return dfm_fail(DFM_E_FORMAT, "npy header: needs 'descr', 'fortran_order' and 'shape'");
    if (fortran) return dfm_fail(DFM_E_UNSUPPORTED, "npy: Fortran-order arrays are not supported");
    return 0;
}

/* product(shape) * itemsize, or an error on overflow. */
static int count_bytes(dfm_npy_dtype t, int ndim, const int64_t *shape, size_t *nbytes)
{
    size_t n = dfm_npy_itemsize(t);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return dfm_fail(DFM_E_ARG, "npy: negative dimension %lld",
                                          (long long)shape[i]);
        if ((uint64_t)shape[i] > SIZE_MAX || !dfm_mul_ok(n, (size_t)shape[i], &n))
            return dfm_fail(DFM_E_LIMIT, "npy: array size overflows");
    }
    *nbytes = n;
    return 0;
}

/* The magic, version and header of a .npy into out (no data yet); *data_at gets the offset of
 * the data. descr: as parse_header's. */
static int read_header(const uint8_t *buf, size_t len, dfm_npy *out, char *descr, size_t *data_at)
{
    memset(out, 0, sizeof *out);
    if (len < 10) return dfm_fail(DFM_E_FORMAT, "npy: truncated (%zu bytes)", len);
    if (memcmp(buf, MAGIC, 6)) return dfm_fail(DFM_E_FORMAT, "npy: not a .npy (bad magic)");
    size_t start, hlen;
    int major = buf[6];
    if (major == 1) {
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8;
        start = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12) return dfm_fail(DFM_E_FORMAT, "npy: truncated header");
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
        start = 12;
    } else {
        return dfm_fail(DFM_E_UNSUPPORTED, "npy: format version %d.%d", major, buf[7]);
    }
    if (hlen > len - start) return dfm_fail(DFM_E_FORMAT, "npy: truncated header");
    int rc = parse_header((const char *)buf + start, hlen, out, descr);
    if (rc) return rc;
    *data_at = start + hlen;
    return 0;
}

int dfm_npy_parse(const uint8_t *buf, size_t len, dfm_npy *out)
{
    size_t at;
    int rc = read_header(buf, len, out, NULL, &at);
    if (rc) return rc;
    if (count_bytes(out->dtype, out->ndim, out->shape, &out->nbytes))
        return dfm_fail(DFM_E_FORMAT, "npy: shape overflows");
    size_t have = len - at;
    if (have != out->nbytes)
        return dfm_fail(DFM_E_FORMAT, "npy: data is %zu bytes, shape and dtype say %zu (%s)", have,
                        out->nbytes, have < out->nbytes ? "truncated" : "trailing garbage");
    out->data = buf + at;
    return 0;
}

const char *dfm_npy_type_name(dfm_npy_dtype t)
{
    switch (t) {
    case DFM_NPY_U8: return "uint8";
    case DFM_NPY_I32: return "int32";
    case DFM_NPY_I64: return "int64";
    case DFM_NPY_F16: return "float16";
    case DFM_NPY_F32: return "float32";
    }
    return "?";
}

/* numpy's name for a descr such as '<f8' (float64), '|b1' (bool), '>i2' (big-endian int16). */
static void descr_name(const char *descr, char *out, size_t n)
{
    const char *order = "", *d = descr;
    if (*d == '<' || *d == '|' || *d == '=') d++;
    else if (*d == '>') order = "big-endian ", d++;
    static const struct {
        char kind;
        const char *name;
    } kinds[] = {{'f', "float"}, {'i', "int"}, {'u', "uint"}, {'c', "complex"}};
    char *end;
    long size = d[0] ? strtol(d + 1, &end, 10) : 0;
    if (d[0] && size > 0 && size <= 64 && !*end) {
        if (d[0] == 'b' && size == 1) {
            snprintf(out, n, "%sbool", order);
            return;
        }
        for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
            if (d[0] == kinds[i].kind) {
                snprintf(out, n, "%s%s%ld", order, kinds[i].name, size * 8);
                return;
            }
    }
    snprintf(out, n, "dtype '%s'", descr);
}

const char *dfm_npy_describe(const uint8_t *buf, size_t len, char *out, size_t n)
{
    dfm_npy a;
    char descr[32], name[48];
    size_t at;
    if (read_header(buf, len, &a, descr, &at)) {
        snprintf(out, n, "not a readable .npy");
        return out;
    }
    descr_name(descr, name, sizeof name);
    size_t k = (size_t)snprintf(out, n, "%s [", name);
    for (int i = 0; i < a.ndim && k < n; i++)
        k += (size_t)snprintf(out + k, n - k, "%s%lld", i ? "," : "", (long long)a.shape[i]);
    if (k < n) snprintf(out + k, n - k, "]");
    return out;
}

/* ---- writing -------------------------------------------------------------------------- */

int dfm_npy_header(dfm_npy_dtype t, int ndim, const int64_t *shape, uint8_t **hdr, size_t *hdr_len)
{
    *hdr = NULL;
    *hdr_len = 0;
    if ((int)t < DFM_NPY_U8 || t > DFM_NPY_F32) return dfm_fail(DFM_E_ARG, "npy: bad dtype %d", t);
    if (ndim < 0 || ndim > DFM_NPY_MAX_DIMS)
        return dfm_fail(DFM_E_ARG, "npy: %d dimensions (at most %d)", ndim, DFM_NPY_MAX_DIMS);
    size_t nbytes;
    int rc = count_bytes(t, ndim, shape, &nbytes);
    if (rc) return rc;
    char dims[DFM_NPY_MAX_DIMS * 24 + 4], first[24] = "";
    size_t n = 0;
    dims[0] = 0;
    for (int i = 0; i < ndim; i++)
        n += (size_t)snprintf(dims + n, sizeof dims - n, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (ndim == 1) snprintf(dims + n, sizeof dims - n, ",");
    if (ndim > 0) snprintf(first, sizeof first, "%lld", (long long)shape[0]);
    char dict[sizeof dims + 128];
    int dn = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }",
                      dfm_npy_descr(t), dims);
    size_t growth = ndim > 0 ? GROWTH_AXIS_MAX_DIGITS - strlen(first) : 0;
    size_t body = (size_t)dn + growth + 1; /* + '\n' */
    size_t pad = 64 - (10 + body) % 64;    /* numpy pads a full 64 when already aligned */
    size_t total = 10 + body + pad;
    uint8_t *h = dfm_malloc(total);
    if (!h) return DFM_E_NOMEM;
    memcpy(h, MAGIC, 6);
    h[6] = 1;
    h[7] = 0;
    h[8] = (uint8_t)((total - 10) & 0xff);
    h[9] = (uint8_t)((total - 10) >> 8);
    memcpy(h + 10, dict, (size_t)dn);
    memset(h + 10 + dn, ' ', total - 10 - (size_t)dn - 1);
    h[total - 1] = '\n';
    *hdr = h;
    *hdr_len = total;
    return 0;
}

int dfm_npy_build(dfm_npy_dtype t, int ndim, const int64_t *shape, const void *data,
                  uint8_t **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    uint8_t *h;
    size_t hl, nbytes = 0;
    int rc = dfm_npy_header(t, ndim, shape, &h, &hl);
    if (rc) return rc;
    if (count_bytes(t, ndim, shape, &nbytes) || nbytes > SIZE_MAX - hl - 1) {
        free(h);
        return dfm_fail(DFM_E_LIMIT, "npy: array too large");
    }
    uint8_t *b = dfm_realloc(h, hl + nbytes + 1); /* +1: room for callers that NUL-terminate */
    if (!b) {
        free(h);
        return DFM_E_NOMEM;
    }
    if (nbytes) memcpy(b + hl, data, nbytes);
    b[hl + nbytes] = 0;
    *out = b;
    *out_len = hl + nbytes;
    return 0;
}
