/* stream_bytes.c — the byte layer under both framings (see stream_impl.h).
 *
 * Source: reads an fd with EINTR-safe loops, keeps the bytes read for detection so nothing is
 * lost (pipes cannot seek), and decompresses zstd (any number of concatenated frames) when the
 * raw bytes start with the zstd magic; a zstd frame cut short is a truncated input. Sink: buffers
 * output, optionally zstd-compresses it, and writes it with a full-write loop that maps EPIPE to
 * DFM_E_PIPE; an aborted sink drops what comes after, so a failed writer never ends cleanly.
 *
 * Not here: anything about tar or msgpack, and choosing the framing (stream.c).
 */
#include "io/stream_impl.h"
#include "base/buf.h"
#include "base/cli.h"
#include "base/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

/* ---- source --------------------------------------------------------------------------- */

struct dfm_src {
    int fd, own_fd;
    char *name;
    int err; /* sticky error code */
    int eof; /* the fd reported end of file */
    uint64_t nraw; /* bytes read from the fd */
    /* raw bytes read during detection, served before the fd */
    uint8_t raw[DFM_SRC_PEEK];
    size_t raw_len, raw_pos;
    /* zstd decompression (zd == NULL: the raw bytes are the stream) */
    ZSTD_DCtx *zd;
    uint8_t *zin;
    size_t zin_cap;
    ZSTD_inBuffer in;
    size_t zret;  /* last ZSTD_decompressStream result: 0 = at a frame boundary */
    int zpending; /* the last call filled the output: the decoder may hold more */
    /* decoded bytes looked at during detection, served first */
    uint8_t head[DFM_SRC_PEEK];
    size_t head_len, head_pos;
    int deferred;         /* an error met while filling head, reported once head is served */
    char deferred_msg[1024];
};

int dfm_src_new(dfm_src **out, int fd, int own_fd, const char *name)
{
    *out = NULL;
    dfm_src *s = dfm_calloc(1, sizeof *s);
    if (!s) return DFM_E_NOMEM;
    s->fd = fd;
    s->own_fd = own_fd;
    s->name = dfm_strdup(name ? name : "-");
    if (!s->name) {
        free(s);
        return DFM_E_NOMEM;
    }
    *out = s;
    return 0;
}

void dfm_src_free(dfm_src *s)
{
    if (!s) return;
    if (s->own_fd && s->fd >= 0) close(s->fd);
    ZSTD_freeDCtx(s->zd);
    free(s->zin);
    free(s->name);
    free(s);
}

const char *dfm_src_name(const dfm_src *s) { return s->name; }
uint64_t dfm_src_bytes(const dfm_src *s) { return s->nraw; }
int dfm_src_at_eof(const dfm_src *s) { return s->eof; }

static long fd_read(dfm_src *s, void *buf, size_t n)
{
    if (s->eof) return 0;
    for (;;) {
        ssize_t r = read(s->fd, buf, n);
        if (r >= 0) {
            if (r == 0) s->eof = 1;
            s->nraw += (uint64_t)r;
            return (long)r;
        }
        if (errno == EINTR) continue;
        return dfm_fail(DFM_E_IO, "read failed: %s", strerror(errno));
    }
}

static long raw_read(dfm_src *s, void *buf, size_t n)
{
    if (s->raw_pos < s->raw_len) {
        size_t k = s->raw_len - s->raw_pos;
        if (k > n) k = n;
        memcpy(buf, s->raw + s->raw_pos, k);
        s->raw_pos += k;
        return (long)k;
    }
    return fd_read(s, buf, n);
}

static long dec_read(dfm_src *s, void *buf, size_t n)
{
    if (!s->zd) return raw_read(s, buf, n);
    if (n == 0) return 0;
    for (;;) {
        if (s->in.pos == s->in.size && !s->zpending) {
            long r = raw_read(s, s->zin, s->zin_cap);
            if (r < 0) return r;
            if (r == 0) {
                if (s->zret != 0)
                    return dfm_fail(DFM_E_FORMAT, DFM_TRUNCATED_MSG ": the zstd stream ends "
                                                  "inside a frame");
                return 0;
            }
            s->in.src = s->zin;
            s->in.size = (size_t)r;
            s->in.pos = 0;
        }
        ZSTD_outBuffer out = {buf, n, 0};
        size_t z = ZSTD_decompressStream(s->zd, &out, &s->in);
        if (ZSTD_isError(z))
            return dfm_fail(DFM_E_FORMAT, "corrupt zstd stream: %s", ZSTD_getErrorName(z));
        s->zret = z;
        s->zpending = out.pos == out.size;
        if (out.pos > 0) return (long)out.pos;
    }
}

/* Read until n bytes or end of stream; returns the count or < 0. */
static long read_full(dfm_src *s, long (*fn)(dfm_src *, void *, size_t), uint8_t *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        long r = fn(s, buf + got, n - got);
        if (r < 0) return r;
        if (r == 0) break;
        got += (size_t)r;
    }
    return (long)got;
}

int dfm_src_detect(dfm_src *s, const uint8_t **head, size_t *head_len, int *zstd)
{
    static const uint8_t zmagic[4] = {0x28, 0xB5, 0x2F, 0xFD};
    long r = read_full(s, fd_read, s->raw, sizeof s->raw);
    if (r < 0) return s->err = (int)r;
    s->raw_len = (size_t)r;
    *zstd = 0;
    if (s->raw_len >= 4 && !memcmp(s->raw, zmagic, 4)) {
        s->zd = ZSTD_createDCtx();
        s->zin_cap = ZSTD_DStreamInSize();
        s->zin = dfm_malloc(s->zin_cap);
        if (!s->zd || !s->zin) return s->err = dfm_fail(DFM_E_NOMEM, "out of memory (zstd)");
        *zstd = 1;
    }
    /* a short stream cut inside its zstd frame: the bytes before the cut still count */
    size_t got = 0;
    while (got < sizeof s->head) {
        r = dec_read(s, s->head + got, sizeof s->head - got);
        if (r < 0 && got == 0) return s->err = (int)r;
        if (r < 0) {
            s->deferred = (int)r;
            snprintf(s->deferred_msg, sizeof s->deferred_msg, "%s", dfm_errmsg());
        }
        if (r <= 0) break;
        got += (size_t)r;
    }
    s->head_len = got;
    *head = s->head;
    *head_len = s->head_len;
    return 0;
}

long dfm_src_read(dfm_src *s, void *buf, size_t n)
{
    if (s->err) return s->err;
    if (s->head_pos < s->head_len) {
        size_t k = s->head_len - s->head_pos;
        if (k > n) k = n;
        memcpy(buf, s->head + s->head_pos, k);
        s->head_pos += k;
        return (long)k;
    }
    if (s->deferred) return s->err = dfm_fail(s->deferred, "%s", s->deferred_msg);
    long r = dec_read(s, buf, n);
    if (r < 0) s->err = (int)r;
    return r;
}

/* ---- sink ----------------------------------------------------------------------------- */

#define SINK_CAP (1u << 20)

struct dfm_sink {
    int fd;
    ZSTD_CCtx *zc;
    uint8_t *buf;
    size_t len, cap;
    uint64_t written;
    int err;
    int aborted; /* dfm_sink_abort: later writes are dropped */
    const char *name; /* for messages; NULL = dfm_output_name(fd) */
};

int dfm_sink_new(dfm_sink **out, int fd, int zstd_level)
{
    *out = NULL;
    dfm_sink *k = dfm_calloc(1, sizeof *k);
    if (!k) return DFM_E_NOMEM;
    k->fd = fd;
    k->cap = SINK_CAP;
    k->buf = dfm_malloc(k->cap);
    if (!k->buf) {
        free(k);
        return DFM_E_NOMEM;
    }
    if (zstd_level > 0) {
        if (zstd_level > ZSTD_maxCLevel()) {
            dfm_sink_free(k);
            return dfm_fail(DFM_E_ARG, "zstd level %d is out of range 1..%d", zstd_level,
                            ZSTD_maxCLevel());
        }
        k->zc = ZSTD_createCCtx();
        if (!k->zc) {
            dfm_sink_free(k);
            return dfm_fail(DFM_E_NOMEM, "out of memory (zstd)");
        }
        size_t z = ZSTD_CCtx_setParameter(k->zc, ZSTD_c_compressionLevel, zstd_level);
        if (!ZSTD_isError(z)) z = ZSTD_CCtx_setParameter(k->zc, ZSTD_c_checksumFlag, 1);
        if (ZSTD_isError(z)) {
            dfm_sink_free(k);
            return dfm_fail(DFM_E_ARG, "zstd: %s", ZSTD_getErrorName(z));
        }
    }
    *out = k;
    return 0;
}

void dfm_sink_free(dfm_sink *k)
{
    if (!k) return;
    ZSTD_freeCCtx(k->zc);
    free(k->buf);
    free(k);
}

void dfm_sink_set_name(dfm_sink *k, const char *name) { k->name = name; }
uint64_t dfm_sink_written(const dfm_sink *k) { return k->written; }
int dfm_sink_error(const dfm_sink *k) { return k->err; }

static int write_all(dfm_sink *k, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(k->fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EPIPE)
                return k->err = dfm_fail(DFM_E_PIPE, "output closed by its reader (broken pipe)");
            const char *name = k->name ? k->name : dfm_output_name(k->fd);
            if (!name && k->fd == 1)
                return k->err = dfm_fail(DFM_E_IO, "cannot write to stdout: %s", strerror(errno));
            return k->err = dfm_fail(DFM_E_IO, "cannot write '%s': %s", name ? name : "output",
                                     strerror(errno));
        }
        p += w;
        n -= (size_t)w;
        k->written += (uint64_t)w;
    }
    return 0;
}

static int flush_buf(dfm_sink *k)
{
    int rc = write_all(k, k->buf, k->len);
    k->len = 0;
    return rc;
}

/* Run the compressor over `in` with `mode`, writing full output buffers as they fill. */
static int zstd_run(dfm_sink *k, ZSTD_inBuffer *in, ZSTD_EndDirective mode)
{
    for (;;) {
        ZSTD_outBuffer out = {k->buf, k->cap, k->len};
        size_t z = ZSTD_compressStream2(k->zc, &out, in, mode);
        if (ZSTD_isError(z))
            return k->err = dfm_fail(DFM_E_IO, "zstd compression failed: %s", ZSTD_getErrorName(z));
        k->len = out.pos;
        if (k->len == k->cap && flush_buf(k)) return k->err;
        int done = mode == ZSTD_e_continue ? in->pos == in->size : z == 0; /* flush, end: all out */
        if (done) return 0;
    }
}

int dfm_sink_write(dfm_sink *k, const void *p, size_t n)
{
    if (k->err) return k->err;
    if (n == 0 || k->aborted) return 0;
    if (k->zc) {
        ZSTD_inBuffer in = {p, n, 0};
        return zstd_run(k, &in, ZSTD_e_continue);
    }
    if (k->len + n <= k->cap) {
        memcpy(k->buf + k->len, p, n);
        k->len += n;
        return 0;
    }
    if (flush_buf(k)) return k->err;
    if (n >= k->cap / 2) return write_all(k, p, n);
    memcpy(k->buf, p, n);
    k->len = n;
    return 0;
}

int dfm_sink_flush(dfm_sink *k)
{
    if (k->err) return k->err;
    if (k->aborted) return 0;
    return flush_buf(k);
}

void dfm_sink_abort(dfm_sink *k)
{
    if (k->aborted) return;
    if (!k->err && k->zc) {
        ZSTD_inBuffer in = {NULL, 0, 0};
        zstd_run(k, &in, ZSTD_e_flush);
    }
    if (!k->err) flush_buf(k);
    k->aborted = 1;
}

int dfm_sink_end_frame(dfm_sink *k)
{
    if (k->err) return k->err;
    if (k->aborted || !k->zc) return 0;
    ZSTD_inBuffer in = {NULL, 0, 0};
    return zstd_run(k, &in, ZSTD_e_end);
}

int dfm_sink_finish(dfm_sink *k)
{
    if (k->err) return k->err;
    if (k->aborted) return 0;
    if (k->zc) {
        ZSTD_inBuffer in = {NULL, 0, 0};
        if (zstd_run(k, &in, ZSTD_e_end)) return k->err;
    }
    return flush_buf(k);
}
