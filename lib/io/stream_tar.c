/* stream_tar.c — the tar framing of the sample stream (WebDataset, formats/sample-stream.md §3),
 * through libarchive.
 *
 * Reading follows the reference reader (webdataset tariterators.py): only regular files count;
 * names whose first path component is `__*__` are metadata and skipped; a member name splits at
 * the first dot of its last path component into key and field (lower-cased); names without a dot
 * are skipped; adjacent members with the same key form one sample; the same field twice in one
 * sample is an error. libarchive reads from our byte source (so the detection bytes and zstd
 * decompression stay ours) with tar:read_concatenated_archives, so `cat a.tar b.tar |` works.
 * Grouping needs one member of lookahead: the header of the first member of the next sample is
 * read, and its data is read when that sample is.
 *
 * Truncation: libarchive takes a stream that stops exactly at a member boundary, with no end
 * blocks, for a clean end (tar_read_header: "Some writers do omit the block of nulls"). A writer
 * that died between two samples leaves exactly that, so at libarchive's end we check that at least
 * one 512-byte zero block came after the last member: the end mark every tar writer (dfm,
 * GNU tar, Python's tarfile, libarchive) writes. Any read error after the bytes ran out is
 * reported as a truncated input too.
 *
 * Writing produces pax_restricted (plain ustar unless a name needs pax) members KEY.FIELD, mode
 * 0444, mtime 0, uid/gid 0, no user/group names, no block padding: byte-identical output for the
 * same samples whether the fd is a pipe or a file.
 *
 * Not here: detection (stream.c), zstd (stream_bytes.c), key validation (stream.c).
 */
#include "io/stream_impl.h"
#include "base/buf.h"
#include "base/error.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <locale.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define TAR_READ_CHUNK (256u << 10)

/* Member names are UTF-8 whatever the caller's locale: libarchive converts names through the
 * current locale (and in the C locale 3.6.2 crashes writing a non-ASCII UTF-8 name), so every
 * libarchive call here runs under a thread-local C.UTF-8 LC_CTYPE. That also makes the bytes we
 * write independent of the environment. Without C.UTF-8, non-ASCII names are refused. */
static locale_t g_utf8;
static pthread_once_t g_utf8_once = PTHREAD_ONCE_INIT;
static void utf8_init(void) { g_utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0); }

static locale_t enter_utf8(void)
{
    pthread_once(&g_utf8_once, utf8_init);
    return g_utf8 ? uselocale(g_utf8) : (locale_t)0;
}

static void leave_utf8(locale_t old)
{
    if (old) uselocale(old);
}

struct dfm_tar_reader {
    dfm_src *src;
    struct archive *a;
    uint8_t *rbuf;
    uint64_t max;
    int err;          /* sticky */
    int src_err;      /* error code of the byte source, when it failed under libarchive */
    int done;         /* libarchive reported the end */
    int pending;      /* a member header is read, its data not yet */
    char *pkey, *pfield;
    int64_t psize;
    uint64_t nread;   /* samples returned */
};

static la_ssize_t read_cb(struct archive *a, void *ud, const void **buf)
{
    dfm_tar_reader *r = ud;
    long n = dfm_src_read(r->src, r->rbuf, TAR_READ_CHUNK);
    if (n < 0) {
        r->src_err = (int)n;
        archive_set_error(a, EIO, "%s", dfm_errmsg());
        return -1;
    }
    *buf = r->rbuf;
    return n;
}

static void reader_free(dfm_tar_reader *r);

static int truncated(dfm_tar_reader *r, const char *where)
{
    return r->err = dfm_fail(DFM_E_FORMAT, DFM_TRUNCATED_MSG ": the tar stream ends %s, after "
                             "%llu samples", where, (unsigned long long)r->nread);
}

/* The error for a failed libarchive call: the byte source's own error when it was the cause, a
 * truncated input when the bytes ran out. */
static int tar_error(dfm_tar_reader *r, const char *what)
{
    if (r->src_err) return r->err = r->src_err;
    if (dfm_src_at_eof(r->src)) return truncated(r, "inside a member");
    const char *msg = archive_error_string(r->a);
    return r->err = dfm_fail(DFM_E_FORMAT, "tar: %s: %s", what, msg ? msg : "unknown error");
}

static int reader_new(dfm_tar_reader **out, dfm_src *src, uint64_t max_sample_bytes)
{
    *out = NULL;
    dfm_tar_reader *r = dfm_calloc(1, sizeof *r);
    if (!r) return DFM_E_NOMEM;
    r->src = src;
    r->max = max_sample_bytes;
    r->rbuf = dfm_malloc(TAR_READ_CHUNK);
    r->a = archive_read_new();
    if (!r->rbuf || !r->a) {
        reader_free(r);
        return dfm_fail(DFM_E_NOMEM, "out of memory (tar reader)");
    }
    if (archive_read_support_format_tar(r->a) != ARCHIVE_OK ||
        archive_read_set_options(r->a, "tar:read_concatenated_archives") != ARCHIVE_OK) {
        int rc = dfm_fail(DFM_E_UNSUPPORTED, "libarchive: %s", archive_error_string(r->a));
        reader_free(r);
        return rc;
    }
    if (archive_read_open(r->a, r, NULL, read_cb, NULL) != ARCHIVE_OK) {
        int rc = tar_error(r, "cannot open");
        reader_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

static void reader_free(dfm_tar_reader *r)
{
    if (!r) return;
    if (r->a) archive_read_free(r->a);
    free(r->rbuf);
    free(r->pkey);
    free(r->pfield);
    free(r);
}

/* WebDataset's skip_meta: the name matches `__[^/]*__($|/)`. */
static int is_meta_name(const char *name)
{
    if (strncmp(name, "__", 2)) return 0;
    size_t seg = strcspn(name, "/");
    return seg >= 4 && name[seg - 1] == '_' && name[seg - 2] == '_';
}

static void drop_pending(dfm_tar_reader *r)
{
    free(r->pkey);
    free(r->pfield);
    r->pkey = r->pfield = NULL;
    r->pending = 0;
}

/* Read headers up to the next member that belongs to a sample and make it pending.
 * Returns 1, 0 at the end of the archive(s), or < 0. */
static int advance(dfm_tar_reader *r)
{
    for (;;) {
        struct archive_entry *e;
        int rc = archive_read_next_header(r->a, &e);
        if (rc == ARCHIVE_EOF) {
            /* header_position: where the header after the last member would start; the bytes
             * consumed past it are the end blocks (and record padding), if any came */
            la_int64_t end = archive_read_header_position(r->a);
            la_int64_t all = archive_filter_bytes(r->a, 0);
            if (end >= 0 && all >= 0 && all - end < 512) return truncated(r, "without end blocks");
            r->done = 1;
            return 0;
        }
        if (rc < ARCHIVE_WARN) return tar_error(r, "reading a member header");
        if (archive_entry_filetype(e) != AE_IFREG || archive_entry_hardlink(e)) continue;
        const char *name = archive_entry_pathname_utf8(e);
        if (!name) name = archive_entry_pathname(e);
        if (!name || is_meta_name(name)) continue;
        const char *slash = strrchr(name, '/');
        const char *base = slash ? slash + 1 : name;
        const char *dot = strchr(base, '.');
        if (!dot || dot == base || dot[1] == 0) continue; /* no key or no field: not a sample */
        r->pkey = dfm_strndup(name, (size_t)(dot - name));
        r->pfield = dfm_strdup(dot + 1);
        if (!r->pkey || !r->pfield) {
            drop_pending(r);
            return r->err = DFM_E_NOMEM;
        }
        for (char *p = r->pfield; *p; p++)
            if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
        r->psize = archive_entry_size(e);
        r->pending = 1;
        return 1;
    }
}

/* Read the pending member's data into field pfield of s; *total counts the sample's bytes. */
static int take_pending(dfm_tar_reader *r, dfm_sample *s, uint64_t *total)
{
    if (r->psize < 0)
        return r->err = dfm_fail(DFM_E_FORMAT, "tar: member '%s.%s' has no size", r->pkey,
                                 r->pfield);
    if (s->n >= DFM_STREAM_MAX_FIELDS)
        return r->err = dfm_fail(DFM_E_LIMIT, "sample '%s' has more than %d fields", r->pkey,
                                 DFM_STREAM_MAX_FIELDS);
    uint64_t size = (uint64_t)r->psize;
    *total += size;
    if ((r->max && *total > r->max) || size > (uint64_t)SIZE_MAX - 1)
        return r->err = dfm_fail(DFM_E_LIMIT, "sample '%s' is larger than the limit of %llu bytes",
                                 r->pkey, (unsigned long long)r->max);
    /* grow with the data that actually arrives: a lying header cannot make us allocate */
    size_t cap = size < TAR_READ_CHUNK ? (size_t)size : TAR_READ_CHUNK, got = 0;
    uint8_t *data = dfm_malloc(cap + 1);
    if (!data) return r->err = DFM_E_NOMEM;
    while (got < size) {
        if (got == cap) {
            cap = cap > (size_t)size / 2 ? (size_t)size : cap * 2;
            uint8_t *nd = dfm_realloc(data, cap + 1);
            if (!nd) {
                free(data);
                return r->err = DFM_E_NOMEM;
            }
            data = nd;
        }
        la_ssize_t n = archive_read_data(r->a, data + got, cap - got);
        if (n <= 0) {
            free(data);
            if (n == 0 || dfm_src_at_eof(r->src))
                return truncated(r, "inside a member");
            return tar_error(r, "reading a member");
        }
        got += (size_t)n;
    }
    data[size] = 0;
    int rc = dfm_sample_set_owned(s, r->pfield, data, (size_t)size);
    drop_pending(r);
    return rc ? (r->err = rc) : 0;
}

static int reader_next(dfm_tar_reader *r, dfm_sample *s)
{
    dfm_sample_clear(s);
    if (r->err) return r->err;
    if (!r->pending) {
        if (r->done) return 0;
        int rc = advance(r);
        if (rc <= 0) return rc;
    }
    int rc = dfm_sample_set_key(s, r->pkey);
    uint64_t total = 0;
    if (!rc) rc = take_pending(r, s, &total);
    while (!rc) {
        rc = advance(r);
        if (rc == 0 || (rc > 0 && strcmp(r->pkey, s->key))) { /* end, or the next sample */
            r->nread++;
            return 1;
        }
        if (rc < 0) break;
        if (dfm_sample_get(s, r->pfield)) {
            rc = r->err = dfm_fail(DFM_E_FORMAT, "sample '%s': duplicate field '%s' in the tar",
                                   s->key, r->pfield);
            break;
        }
        rc = take_pending(r, s, &total);
    }
    dfm_sample_clear(s);
    return r->err = rc;
}

/* ---- writing -------------------------------------------------------------------------- */

struct dfm_tar_writer {
    struct archive *a;
    struct archive_entry *e;
    dfm_sink *k;
    dfm_buf name;
};

static la_ssize_t write_cb(struct archive *a, void *ud, const void *buf, size_t n)
{
    dfm_sink *k = ud;
    if (dfm_sink_write(k, buf, n)) {
        archive_set_error(a, EIO, "%s", dfm_errmsg());
        return -1;
    }
    return (la_ssize_t)n;
}

static int write_error(dfm_tar_writer *w, const char *what)
{
    if (dfm_sink_error(w->k)) return dfm_sink_error(w->k);
    const char *msg = archive_error_string(w->a);
    return dfm_fail(DFM_E_IO, "tar writer: %s: %s", what, msg ? msg : "unknown error");
}

static int writer_new(dfm_tar_writer **out, dfm_sink *k)
{
    *out = NULL;
    dfm_tar_writer *w = dfm_calloc(1, sizeof *w);
    if (!w) return DFM_E_NOMEM;
    w->k = k;
    w->a = archive_write_new();
    w->e = archive_entry_new();
    if (!w->a || !w->e) {
        if (w->a) archive_write_free(w->a);
        if (w->e) archive_entry_free(w->e);
        free(w);
        return dfm_fail(DFM_E_NOMEM, "out of memory (tar writer)");
    }
    /* no blocking: every byte goes straight to the sink, and nothing pads the last block */
    if (archive_write_set_format_pax_restricted(w->a) != ARCHIVE_OK ||
        archive_write_set_bytes_per_block(w->a, 0) != ARCHIVE_OK ||
        archive_write_open(w->a, k, NULL, write_cb, NULL) != ARCHIVE_OK) {
        int rc = write_error(w, "cannot start");
        archive_write_free(w->a);
        archive_entry_free(w->e);
        free(w);
        return rc;
    }
    *out = w;
    return 0;
}

static int non_ascii(const char *c)
{
    for (; *c; c++)
        if ((unsigned char)*c >= 0x80) return 1;
    return 0;
}

int dfm_tar_check(const dfm_sample *s)
{
    pthread_once(&g_utf8_once, utf8_init);
    if (g_utf8) return 0;
    int bad = non_ascii(s->key);
    for (int i = 0; i < s->n && !bad; i++) bad = non_ascii(s->fields[i].name);
    return bad ? dfm_fail(DFM_E_UNSUPPORTED, "non-ASCII tar names need the C.UTF-8 locale") : 0;
}

/* s passed dfm_tar_check: every failure here is the output's, not the sample's. */
static int writer_put(dfm_tar_writer *w, const dfm_sample *s)
{
    for (int i = 0; i < s->n; i++) {
        const dfm_field *f = &s->fields[i];
        w->name.len = 0;
        if (dfm_buf_printf(&w->name, "%s.%s", s->key, f->name)) return DFM_E_NOMEM;
        struct archive_entry *e = w->e;
        archive_entry_clear(e);
        archive_entry_set_pathname(e, (const char *)w->name.data); /* UTF-8 under C.UTF-8 */
        archive_entry_set_size(e, (la_int64_t)f->len);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0444);
        archive_entry_set_mtime(e, 0, 0);
        archive_entry_set_uid(e, 0);
        archive_entry_set_gid(e, 0);
        if (archive_write_header(w->a, e) < ARCHIVE_WARN) return write_error(w, "member header");
        size_t done = 0;
        while (done < f->len) {
            la_ssize_t n = archive_write_data(w->a, f->data + done, f->len - done);
            if (n <= 0) return write_error(w, "member data");
            done += (size_t)n;
        }
        if (archive_write_finish_entry(w->a) < ARCHIVE_WARN) return write_error(w, "member end");
    }
    return 0;
}

static int writer_close(dfm_tar_writer *w)
{
    if (!w) return 0;
    int rc = 0;
    if (archive_write_close(w->a) != ARCHIVE_OK) rc = write_error(w, "closing");
    archive_write_free(w->a);
    archive_entry_free(w->e);
    dfm_buf_free(&w->name);
    free(w);
    return rc;
}

/* ---- entry points: every libarchive call runs under C.UTF-8 (see enter_utf8) ------------ */

int dfm_tar_reader_new(dfm_tar_reader **out, dfm_src *src, uint64_t max_sample_bytes)
{
    locale_t old = enter_utf8();
    int rc = reader_new(out, src, max_sample_bytes);
    leave_utf8(old);
    return rc;
}

void dfm_tar_reader_free(dfm_tar_reader *r)
{
    locale_t old = enter_utf8();
    reader_free(r);
    leave_utf8(old);
}

int dfm_tar_reader_next(dfm_tar_reader *r, dfm_sample *s)
{
    locale_t old = enter_utf8();
    int rc = reader_next(r, s);
    leave_utf8(old);
    return rc;
}

int dfm_tar_writer_new(dfm_tar_writer **out, dfm_sink *k)
{
    locale_t old = enter_utf8();
    int rc = writer_new(out, k);
    leave_utf8(old);
    return rc;
}

int dfm_tar_writer_put(dfm_tar_writer *w, const dfm_sample *s)
{
    locale_t old = enter_utf8();
    int rc = writer_put(w, s);
    leave_utf8(old);
    return rc;
}

int dfm_tar_writer_close(dfm_tar_writer *w)
{
    locale_t old = enter_utf8();
    int rc = writer_close(w);
    leave_utf8(old);
    return rc;
}
