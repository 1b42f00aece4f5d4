/* stream.c — the public sample-stream reader and writer (stream.h): opening, framing detection
 * from the first bytes, key/field validation, and dispatch to the msgpack and tar framings.
 *
 * Detection (formats/sample-stream.md §4), on the bytes and never on a name:
 *   28 B5 2F FD               zstd: decompress, then detect again on the decompressed bytes
 *   "ustar" at offset 257     tar (ustar, pax, GNU); a first 512-byte block of zeros too (empty tar)
 *   80-8f, de, df             msgpack map: the msgpack stream
 *   no bytes at all           an empty stream: zero samples — from a file; from a pipe it is a
 *                             truncated input (every dfm writer writes something at once)
 *   anything else             DFM_E_FORMAT
 * Every reader error is prefixed with the input's name here, once.
 *
 * The writer validates each sample before writing a byte of it (dfm_sample_check), writes the
 * msgpack begin record at once and the end record (or the tar end blocks) only in a clean
 * dfm_writer_close; dfm_writer_abort leaves them out, so a failed stage's output reads as
 * truncated downstream.
 *
 * Not here: the byte layer (stream_bytes.c), the framings (stream_msgpack.c, stream_tar.c).
 */
#include "io/stream.h"
#include "io/stream_impl.h"
#include "base/buf.h"
#include "base/error.h"
#include "base/utf8.h"

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
    int pipe; /* the input is a pipe, FIFO or socket */
    char msg[1024]; /* the sticky error's message */
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
    if (fd < 0) return dfm_fail(DFM_E_IO, "cannot read '%s': %s", path, strerror(errno));
    dfm_reader *r = dfm_calloc(1, sizeof *r);
    int rc = r ? dfm_src_new(&r->src, fd, !is_stdin, is_stdin ? "stdin" : path) : DFM_E_NOMEM;
    if (rc) {
        if (!is_stdin) close(fd);
        free(r);
        return rc;
    }
    r->max = max_sample_bytes ? max_sample_bytes : DEFAULT_MAX_SAMPLE;
    struct stat st;
    r->pipe = fstat(fd, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode));
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
    if (n == 0 && r->pipe && !zstd)
        return dfm_fail(DFM_E_FORMAT, DFM_TRUNCATED_MSG ": the pipe closed before any byte came");
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
    return dfm_fail(DFM_E_FORMAT, "input is neither a msgpack sample stream nor a tar/tar.zst "
                    "file%s%s", zstd ? " (inside zstd)" : "", guess);
}

int dfm_reader_next(dfm_reader *r, dfm_sample *s)
{
    dfm_sample_clear(s);
    if (r->err) {
        dfm_fail(r->err, "%s", r->msg);
        return r->err;
    }
    int rc = r->detected ? 0 : detect(r);
    if (!rc && !r->empty) rc = r->tar ? dfm_tar_reader_next(r->tar, s) : dfm_mp_reader_next(r->mp, s);
    if (rc < 0) { /* the input's name, once, in front of every reader message */
        r->err = dfm_fail_ctx(rc, "'%s'", dfm_src_name(r->src));
        snprintf(r->msg, sizeof r->msg, "%s", dfm_errmsg());
    }
    return rc;
}

uint64_t dfm_reader_bytes(const dfm_reader *r) { return dfm_src_bytes(r->src); }
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
    uint64_t count; /* samples written */
    char *name;     /* dfm_writer_set_name */
};

/* name: what write errors call the output (NULL: dfm_output_name(fd)); kept by the writer. */
static int writer_new(dfm_writer **out, int fd, dfm_framing framing, int zstd_level, char *name)
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
    if (!rc) dfm_sink_set_name(w->k, name);
    if (!rc && framing == DFM_FRAMING_TAR) rc = dfm_tar_writer_new(&w->tar, w->k);
    /* the begin record goes out at once: a reader of a pipe then knows a dfm writer started */
    if (!rc && framing == DFM_FRAMING_MSGPACK) rc = dfm_mp_write_begin(w->k);
    if (!rc) rc = dfm_sink_flush(w->k);
    if (rc) {
        if (w->tar) {
            dfm_sink_abort(w->k);
            dfm_tar_writer_close(w->tar);
        }
        dfm_sink_free(w->k);
        free(w);
        return rc;
    }
    *out = w;
    return 0;
}

int dfm_writer_open_fd(dfm_writer **out, int fd, dfm_framing framing, int zstd_level)
{
    return writer_new(out, fd, framing, zstd_level, NULL);
}

int dfm_writer_open(dfm_writer **out, const char *path, dfm_framing framing, int zstd_level)
{
    *out = NULL;
    if (!strcmp(path, "-")) return dfm_writer_open_fd(out, 1, framing, zstd_level);
    struct stat st;
    int special = stat(path, &st) == 0 && !S_ISREG(st.st_mode); /* /dev/null, a FIFO, ... */
    size_t n = strlen(path);
    char *p = dfm_strdup(path), *tmp = special ? NULL : dfm_malloc(n + 5);
    if (!p || (!special && !tmp)) {
        free(p);
        free(tmp);
        return DFM_E_NOMEM;
    }
    if (tmp) memcpy(tmp, path, n), memcpy(tmp + n, ".tmp", 5);
    int fd = open(special ? path : tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int rc = fd < 0 ? dfm_fail(DFM_E_IO, "cannot create '%s': %s", path, strerror(errno)) : 0;
    if (!rc) rc = writer_new(out, fd, framing, zstd_level, p);
    if (rc) {
        if (fd >= 0) close(fd);
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

int dfm_sample_check(const dfm_sample *s, dfm_framing framing)
{
    char b[300];
    if (!s->key || !s->key[0]) return dfm_fail(DFM_E_ARG, "sample '': the key is empty");
    const char *k = s->key;
    if (!dfm_utf8_valid(k, strlen(k)))
        return dfm_fail(DFM_E_ARG, "sample '%s': the key is not valid UTF-8", dfm_key_show(k, b, sizeof b));
    if (k[0] == '/' || strstr(k, "//") || k[strlen(k) - 1] == '/')
        return dfm_fail(DFM_E_ARG, "sample '%s': the key has an empty path component",
                        dfm_key_show(k, b, sizeof b));
    for (const char *c = k; *c;) {
        size_t n = strcspn(c, "/");
        if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
            return dfm_fail(DFM_E_ARG, "sample '%s': the key has a '.' or '..' path component",
                            dfm_key_show(k, b, sizeof b));
        c += n + (c[n] == '/');
    }
    const char *last = strrchr(k, '/');
    if (strchr(last ? last + 1 : k, '.'))
        return dfm_fail(DFM_E_ARG, "sample '%s': the key has a dot (tar readers would split the "
                        "name there)", dfm_key_show(k, b, sizeof b));
    size_t seg = strcspn(k, "/");
    if (seg >= 4 && !strncmp(k, "__", 2) && k[seg - 1] == '_' && k[seg - 2] == '_')
        return dfm_fail(DFM_E_ARG, "sample '%s': the key looks like metadata (__*__)",
                        dfm_key_show(k, b, sizeof b));
    if (s->n > DFM_STREAM_MAX_FIELDS)
        return dfm_fail(DFM_E_LIMIT, "sample '%s': %d fields (at most %d)", dfm_key_show(k, b, sizeof b),
                        s->n, DFM_STREAM_MAX_FIELDS);
    for (int i = 0; i < s->n; i++) {
        const char *f = s->fields[i].name;
        size_t n = strlen(f);
        if (n == 0) return dfm_fail(DFM_E_ARG, "sample '%s': an empty field name", dfm_key_show(k, b, sizeof b));
        if (n > DFM_STREAM_MAX_NAME)
            return dfm_fail(DFM_E_LIMIT, "sample '%s': a field name of %zu bytes (at most %d)",
                            dfm_key_show(k, b, sizeof b), n, DFM_STREAM_MAX_NAME);
        if (!dfm_utf8_valid(f, n))
            return dfm_fail(DFM_E_ARG, "sample '%s': a field name is not valid UTF-8",
                            dfm_key_show(k, b, sizeof b));
        char fb[300];
        if (strchr(f, '/') || has_upper(f))
            return dfm_fail(DFM_E_ARG, "sample '%s': field name '%s' has '/' or upper-case letters",
                            dfm_key_show(k, b, sizeof b), dfm_key_show(f, fb, sizeof fb));
        if (n >= 4 && !strncmp(f, "__", 2) && !strcmp(f + n - 2, "__"))
            return dfm_fail(DFM_E_ARG, "sample '%s': field name '%s' looks like metadata (__*__)",
                            dfm_key_show(k, b, sizeof b), dfm_key_show(f, fb, sizeof fb));
        for (int j = 0; j < i; j++)
            if (!strcmp(s->fields[j].name, f))
                return dfm_fail(DFM_E_ARG, "sample '%s': field '%s' twice", dfm_key_show(k, b, sizeof b),
                                dfm_key_show(f, fb, sizeof fb));
        if (framing == DFM_FRAMING_MSGPACK && s->fields[i].len > 0xffffffffu)
            return dfm_fail(DFM_E_LIMIT, "sample '%s': field '%s' is over 4 GiB, msgpack's limit",
                            dfm_key_show(k, b, sizeof b), dfm_key_show(f, fb, sizeof fb));
    }
    if (framing == DFM_FRAMING_TAR && dfm_tar_check(s))
        return dfm_fail_ctx(DFM_E_UNSUPPORTED, "sample '%s'", dfm_key_show(k, b, sizeof b));
    return 0;
}

int dfm_writer_put(dfm_writer *w, const dfm_sample *s)
{
    if (w->err) return w->err;
    int rc = dfm_sample_check(s, w->framing);
    if (rc) return rc; /* refused: nothing written, the writer goes on */
    rc = w->framing == DFM_FRAMING_MSGPACK ? dfm_mp_write(w->k, s) : dfm_tar_writer_put(w->tar, s);
    /* tar.zst: a zstd frame per sample (random access by frame offset, data/sample_index.h) */
    if (!rc && w->framing == DFM_FRAMING_TAR) rc = dfm_sink_end_frame(w->k);
    if (!rc) rc = dfm_sink_flush(w->k);
    if (rc) return w->err = rc;
    w->count++;
    return 0;
}

int dfm_writer_error(const dfm_writer *w) { return w->err; }

int dfm_writer_set_name(dfm_writer *w, const char *name)
{
    char *n = dfm_strdup(name);
    if (!n) return DFM_E_NOMEM;
    free(w->name);
    w->name = n;
    dfm_sink_set_name(w->k, n);
    return 0;
}

uint64_t dfm_writer_bytes(const dfm_writer *w) { return dfm_sink_written(w->k); }

/* Close the fd of path mode: sync, rename into place when rc == 0, else remove the tmp. */
static int finish_path(dfm_writer *w, int rc)
{
    if (w->fd < 0) return rc;
    const char *name = w->path ? w->path : "output";
    if (!rc && w->tmp && fsync(w->fd) != 0)
        rc = dfm_fail(DFM_E_IO, "cannot write '%s': %s", name, strerror(errno));
    if (close(w->fd) != 0 && !rc)
        rc = dfm_fail(DFM_E_IO, "cannot write '%s': %s", name, strerror(errno));
    if (w->tmp) {
        if (!rc && rename(w->tmp, w->path) != 0)
            rc = dfm_fail(DFM_E_IO, "cannot rename '%s' into place: %s", w->path, strerror(errno));
        if (rc) unlink(w->tmp);
    }
    return rc;
}

static void writer_free(dfm_writer *w)
{
    dfm_sink_free(w->k);
    free(w->name);
    free(w->path);
    free(w->tmp);
    free(w);
}

int dfm_writer_close(dfm_writer *w)
{
    if (!w) return 0;
    int rc = w->err;
    if (!rc && w->framing == DFM_FRAMING_MSGPACK) rc = dfm_mp_write_end(w->k, w->count);
    if (w->tar) {
        if (rc) dfm_sink_abort(w->k); /* no end blocks after a failure */
        int r2 = dfm_tar_writer_close(w->tar);
        if (!rc) rc = r2;
    }
    int r3 = rc ? 0 : dfm_sink_finish(w->k);
    if (!rc) rc = r3;
    rc = finish_path(w, rc);
    writer_free(w);
    return rc;
}

void dfm_writer_abort(dfm_writer *w)
{
    if (!w) return;
    dfm_sink_abort(w->k);
    if (w->tar) dfm_tar_writer_close(w->tar);
    finish_path(w, w->err ? w->err : DFM_E_IO);
    writer_free(w);
}
