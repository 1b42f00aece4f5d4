/* stream.c — the public sample-stream reader and writer (stream.h): opening, framing detection
 * from the first bytes, key/field validation, and dispatch to the msgpack and tar framings.
 *
 * Detection (formats/sample-stream.md §4), on the bytes and never on a name:
 *   28 B5 2F FD               zstd: decompress, then detect again on the decompressed bytes
 *   "ustar" at offset 257     tar (ustar, pax, GNU); a first 512-byte block of zeros too (empty tar)
 *   80-8f, de, df             msgpack map: the msgpack stream
 *   no bytes at all           an empty stream: zero samples
 *   anything else             DFM_E_FORMAT
 *
 * Not here: the byte layer (stream_bytes.c), the framings (stream_msgpack.c, stream_tar.c).
 */
#include "io/stream.h"
#include "io/stream_impl.h"
#include "base/buf.h"
#include "base/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_MAX_SAMPLE (4ull << 30)

const char *dfm_framing_name(dfm_framing f) { return f == DFM_FRAMING_TAR ? "tar" : "msgpack"; }

/* ---- reader --------------------------------------------------------------------------- */

struct dfm_reader {
    dfm_src *src;
    uint64_t max;
    int detected, empty, err;
    dfm_framing framing;
    int compressed;
    dfm_mp_reader *mp;
    dfm_tar_reader *tar;
};

int dfm_reader_open(dfm_reader **out, const char *path, uint64_t max_sample_bytes)
{
    *out = NULL;
    int is_stdin = !strcmp(path, "-");
    int fd = is_stdin ? 0 : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return dfm_fail(DFM_E_IO, "cannot open '%s': %s", path, strerror(errno));
    dfm_reader *r = dfm_calloc(1, sizeof *r);
    int rc = r ? dfm_src_new(&r->src, fd, !is_stdin, is_stdin ? "stdin" : path) : DFM_E_NOMEM;
    if (rc) {
        if (!is_stdin) close(fd);
        free(r);
        return rc;
    }
    r->max = max_sample_bytes ? max_sample_bytes : DEFAULT_MAX_SAMPLE;
    *out = r;
    return 0;
}

static int is_map_byte(uint8_t b) { return (b >= 0x80 && b <= 0x8f) || b == 0xde || b == 0xdf; }

static int all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

static int detect(dfm_reader *r)
{
    const uint8_t *h;
    size_t n;
    int zstd;
    r->detected = 1;
    int rc = dfm_src_detect(r->src, &h, &n, &zstd);
    if (rc) return rc;
    r->compressed = zstd;
    if (n == 0) {
        r->empty = 1;
        return 0;
    }
    if ((n >= 262 && !memcmp(h + 257, "ustar", 5)) || (n >= 512 && all_zero(h, 512))) {
        r->framing = DFM_FRAMING_TAR;
        return dfm_tar_reader_new(&r->tar, r->src, r->max);
    }
    if (is_map_byte(h[0])) {
        r->framing = DFM_FRAMING_MSGPACK;
        return dfm_mp_reader_new(&r->mp, r->src, r->max);
    }
    const char *guess = "";
    if (n >= 2 && h[0] == 0x1f && h[1] == 0x8b) guess = " (it looks gzip-compressed; only zstd is read)";
    else if (n >= 3 && !memcmp(h, "BZh", 3)) guess = " (it looks bzip2-compressed; only zstd is read)";
    else if (n >= 6 && !memcmp(h, "\xfd" "7zXZ", 5)) guess = " (it looks xz-compressed; only zstd is read)";
    return dfm_fail(DFM_E_FORMAT,
                    "'%s': input is neither a msgpack sample stream nor a tar/tar.zst file%s%s",
                    dfm_src_name(r->src), zstd ? " (inside zstd)" : "", guess);
}

int dfm_reader_next(dfm_reader *r, dfm_sample *s)
{
    dfm_sample_clear(s);
    if (r->err) return r->err;
    if (!r->detected) {
        int rc = detect(r);
        if (rc) return r->err = rc;
    }
    if (r->empty) return 0;
    int rc = r->tar ? dfm_tar_reader_next(r->tar, s) : dfm_mp_reader_next(r->mp, s);
    if (rc < 0) r->err = rc;
    return rc;
}

dfm_framing dfm_reader_framing(const dfm_reader *r) { return r->framing; }
int dfm_reader_compressed(const dfm_reader *r) { return r->compressed; }

void dfm_reader_close(dfm_reader *r)
{
    if (!r) return;
    dfm_tar_reader_free(r->tar);
    dfm_mp_reader_free(r->mp);
    dfm_src_free(r->src);
    free(r);
}

/* ---- writer --------------------------------------------------------------------------- */

struct dfm_writer {
    dfm_framing framing;
    dfm_sink *k;
    dfm_tar_writer *tar;
    int err;   /* sticky output error */
    int fd;    /* owned when path mode */
    char *path, *tmp; /* path mode with a regular file: write tmp, rename on close */
};

int dfm_writer_open_fd(dfm_writer **out, int fd, dfm_framing framing, int zstd_level)
{
    *out = NULL;
    if (framing != DFM_FRAMING_MSGPACK && framing != DFM_FRAMING_TAR)
        return dfm_fail(DFM_E_ARG, "unknown framing %d", (int)framing);
    if (zstd_level < 0) return dfm_fail(DFM_E_ARG, "zstd level %d is negative", zstd_level);
    dfm_writer *w = dfm_calloc(1, sizeof *w);
    if (!w) return DFM_E_NOMEM;
    w->framing = framing;
    w->fd = -1;
    int rc = dfm_sink_new(&w->k, fd, zstd_level);
    if (!rc && framing == DFM_FRAMING_TAR) rc = dfm_tar_writer_new(&w->tar, w->k);
    if (rc) {
        dfm_sink_free(w->k);
        free(w);
        return rc;
    }
    *out = w;
    return 0;
}

int dfm_writer_open(dfm_writer **out, const char *path, dfm_framing framing, int zstd_level)
{
    *out = NULL;
    if (!strcmp(path, "-")) return dfm_writer_open_fd(out, 1, framing, zstd_level);
    struct stat st;
    int special = stat(path, &st) == 0 && !S_ISREG(st.st_mode); /* /dev/null, a FIFO, ... */
    char *tmp = NULL;
    if (!special) {
        size_t n = strlen(path);
        tmp = dfm_malloc(n + 5);
        if (!tmp) return DFM_E_NOMEM;
        memcpy(tmp, path, n);
        memcpy(tmp + n, ".tmp", 5);
    }
    const char *target = special ? path : tmp;
    int fd = open(target, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int rc = dfm_fail(DFM_E_IO, "cannot create '%s': %s", target, strerror(errno));
        free(tmp);
        return rc;
    }
    int rc = dfm_writer_open_fd(out, fd, framing, zstd_level);
    char *p = special ? NULL : dfm_strdup(path);
    if (!rc && !special && !p) {
        dfm_writer_close(*out); /* frees; the tmp name is not yet known to it */
        *out = NULL;
        rc = DFM_E_NOMEM;
    }
    if (rc) {
        close(fd);
        if (tmp) unlink(tmp);
        free(tmp);
        free(p);
        return rc;
    }
    (*out)->fd = fd;
    (*out)->path = p;
    (*out)->tmp = tmp;
    return 0;
}

static int has_upper(const char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z') return 1;
    return 0;
}

/* Well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
static int utf8_ok(const char *str)
{
    const unsigned char *p = (const unsigned char *)str;
    while (*p) {
        unsigned c = *p, n, cp;
        if (c < 0x80) {
            p++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) n = 1, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef) n = 2, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4) n = 3, cp = c & 0x07;
        else return 0;
        for (unsigned i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80) return 0;
            cp = cp << 6 | (p[i] & 0x3f);
        }
        if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return 0;
        p += n + 1;
    }
    return 1;
}

/* The key and field names must survive both framings unchanged (stream.h). */
static int validate(const dfm_sample *s)
{
    if (!s->key || !s->key[0]) return dfm_fail(DFM_E_ARG, "a sample has no key");
    const char *k = s->key;
    if (!utf8_ok(k)) return dfm_fail(DFM_E_ARG, "sample key '%s' is not valid UTF-8", k);
    if (k[0] == '/' || strstr(k, "//") || k[strlen(k) - 1] == '/')
        return dfm_fail(DFM_E_ARG, "sample key '%s': empty path component", k);
    for (const char *c = k; *c;) {
        size_t n = strcspn(c, "/");
        if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
            return dfm_fail(DFM_E_ARG, "sample key '%s': '.' or '..' path component", k);
        c += n + (c[n] == '/');
    }
    const char *last = strrchr(k, '/');
    if (strchr(last ? last + 1 : k, '.'))
        return dfm_fail(DFM_E_ARG, "sample key '%s' has a dot: tar readers would split it there", k);
    size_t seg = strcspn(k, "/");
    if (seg >= 4 && !strncmp(k, "__", 2) && k[seg - 1] == '_' && k[seg - 2] == '_')
        return dfm_fail(DFM_E_ARG, "sample key '%s' looks like metadata (__*__)", k);
    for (int i = 0; i < s->n; i++) {
        const char *f = s->fields[i].name;
        size_t n = strlen(f);
        if (n == 0) return dfm_fail(DFM_E_ARG, "sample '%s': empty field name", k);
        if (!utf8_ok(f)) return dfm_fail(DFM_E_ARG, "sample '%s': a field name is not UTF-8", k);
        if (strchr(f, '/') || has_upper(f))
            return dfm_fail(DFM_E_ARG,
                            "sample '%s': field name '%s' has '/' or upper-case letters", k, f);
        if (n >= 4 && !strncmp(f, "__", 2) && !strcmp(f + n - 2, "__"))
            return dfm_fail(DFM_E_ARG, "sample '%s': field name '%s' looks like metadata", k, f);
    }
    return 0;
}

int dfm_writer_put(dfm_writer *w, const dfm_sample *s)
{
    if (w->err) return w->err;
    int rc = validate(s);
    if (rc) return rc;
    if (w->framing == DFM_FRAMING_MSGPACK) {
        for (int i = 0; i < s->n; i++)
            if (s->fields[i].len > 0xffffffffu)
                return dfm_fail(DFM_E_LIMIT, "sample '%s': field '%s' is over 4 GiB, msgpack's limit",
                                s->key, s->fields[i].name);
        rc = dfm_mp_write(w->k, s);
    } else {
        rc = dfm_tar_writer_put(w->tar, s);
    }
    if (!rc) rc = dfm_sink_flush(w->k);
    if (rc) w->err = rc;
    return rc;
}

uint64_t dfm_writer_bytes(const dfm_writer *w) { return dfm_sink_written(w->k); }

int dfm_writer_close(dfm_writer *w)
{
    if (!w) return 0;
    int rc = w->err;
    if (w->tar) {
        int r2 = dfm_tar_writer_close(w->tar);
        if (!rc) rc = r2;
    }
    int r3 = dfm_sink_finish(w->k);
    if (!rc) rc = r3;
    if (w->fd >= 0) {
        const char *name = w->tmp ? w->tmp : w->path;
        if (!rc && w->tmp && fsync(w->fd) != 0)
            rc = dfm_fail(DFM_E_IO, "cannot sync '%s': %s", name, strerror(errno));
        if (close(w->fd) != 0 && !rc)
            rc = dfm_fail(DFM_E_IO, "cannot close '%s': %s", name ? name : "output", strerror(errno));
        if (w->tmp) {
            if (!rc && rename(w->tmp, w->path) != 0)
                rc = dfm_fail(DFM_E_IO, "cannot rename '%s' to '%s': %s", w->tmp, w->path,
                              strerror(errno));
            if (rc) unlink(w->tmp);
        }
    }
    dfm_sink_free(w->k);
    free(w->path);
    free(w->tmp);
    free(w);
    return rc;
}
