/* sample_index.c — scanning tar shards into sample locations and reading one sample back at its
 * location (see sample_index.h).
 *
 * One byte source serves both: a plain shard is read with pread at a file offset; a zstd shard is
 * decompressed from a frame's start through our own buffers, and the source keeps track of which
 * frame (compressed offset) the decompressed position is in, so every header's location is known.
 * Jumping over the rest of a frame reads only its block headers (RFC 8878 §3.1.1).
 * The tar reader here is our own small one (libarchive cannot start at an offset): 512-byte
 * ustar headers with their checksum, pax 'x' records (path, size), GNU 'L' long names.
 *
 * Not here: the WebDataset sample stream reader (io/stream_tar.c), which reads whole shards in
 * order; buckets and batches (train_data.c).
 */
#include "data/sample_index.h"
#include "base/buf.h"
#include "base/error.h"
#include "io/npy.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#define LAT_HEAD 4096           /* bytes of latents.npy read for its header */
#define JSON_MAX (1u << 20)     /* a json member larger than this is not read at scan */
#define PAX_MAX (1u << 20)      /* pax / GNU long-name data we accept */
#define ZIN_CAP (64u << 10)     /* compressed bytes per pread */
#define ZOUT_CAP (128u << 10)   /* decompressed bytes per buffer */
#define SCAN_JUMP_AFTER 3       /* samples seen each starting its frame before the scan jumps */

/* ---- byte source ---------------------------------------------------------------------- */

typedef struct {
    int fd, zstd;
    uint64_t fsize;
    uint64_t pos; /* plain: file offset */
    /* zstd */
    ZSTD_DCtx *dz;
    uint8_t *in, *out;
    size_t in_len, in_pos, out_len, out_pos;
    uint64_t in_off, cnext;   /* file offset of in[0]; next file offset to read */
    uint64_t ubase;           /* decompressed position of out[0] */
    int zend;                 /* the decoder is at a frame boundary */
    int zfull;                /* the last call filled out: the decoder may hold more */
    uint64_t frame_c, frame_u; /* frame of the bytes in out: compressed start, decompressed start */
    int pend;                 /* a frame ended at the end of out; the next starts at pend_c */
    uint64_t pend_c, pend_u;
    uint64_t frames;          /* frame ends decoded or jumped over */
} tsrc;

static int pread_full(int fd, void *buf, size_t n, uint64_t off, size_t *got)
{
    size_t k = 0;
    while (k < n) {
        ssize_t r = pread(fd, (uint8_t *)buf + k, n - k, (off_t)(off + k));
        if (r < 0) {
            if (errno == EINTR) continue;
            return dfm_fail(DFM_E_IO, "read failed: %s", strerror(errno));
        }
        if (r == 0) break;
        k += (size_t)r;
    }
    *got = k;
    return 0;
}

static void src_start(tsrc *t, uint64_t off)
{
    t->pos = off;
    if (!t->zstd) return;
    ZSTD_DCtx_reset(t->dz, ZSTD_reset_session_only);
    t->in_len = t->in_pos = t->out_len = t->out_pos = 0;
    t->in_off = t->cnext = off;
    t->ubase = 0;
    t->zend = 1;
    t->zfull = 0;
    t->pend = 0;
    t->frame_c = off;
    t->frame_u = 0;
}

/* Decode the next piece into out (out consumed). 1 = data, 0 = end of the file, < 0 error. */
static int zfill(tsrc *t)
{
    t->ubase += t->out_len;
    t->out_len = t->out_pos = 0;
    if (t->pend) {
        t->frame_c = t->pend_c;
        t->frame_u = t->pend_u;
        t->pend = 0;
    }
    for (;;) {
        if (t->in_pos == t->in_len && !t->zfull) {
            size_t want = t->cnext < t->fsize ? (size_t)(t->fsize - t->cnext) : 0, got;
            if (want > ZIN_CAP) want = ZIN_CAP;
            int rc = want ? pread_full(t->fd, t->in, want, t->cnext, &got) : 0;
            if (rc) return rc;
            if (!want || !got) {
                if (!t->zend)
                    return dfm_fail(DFM_E_FORMAT, "the zstd stream ends inside a frame (truncated)");
                return 0;
            }
            t->in_off = t->cnext;
            t->in_len = got;
            t->in_pos = 0;
            t->cnext += got;
        }
        ZSTD_outBuffer o = {t->out, ZOUT_CAP, 0};
        ZSTD_inBuffer i = {t->in, t->in_len, t->in_pos};
        size_t z = ZSTD_decompressStream(t->dz, &o, &i);
        t->in_pos = i.pos;
        if (ZSTD_isError(z))
            return dfm_fail(DFM_E_FORMAT, "corrupt zstd data near byte %llu: %s",
                            (unsigned long long)t->in_off, ZSTD_getErrorName(z));
        t->zfull = o.pos == o.size;
        t->zend = z == 0;
        if (z == 0) {
            t->frames++;
            uint64_t bc = t->in_off + t->in_pos, bu = t->ubase + o.pos;
            if (o.pos == 0) {
                t->frame_c = bc;
                t->frame_u = bu;
                continue;
            }
            t->pend = 1;
            t->pend_c = bc;
            t->pend_u = bu;
        }
        if (o.pos > 0) {
            t->out_len = o.pos;
            return 1;
        }
    }
}

/* Read n bytes (fewer only at the end of the file); *got gets the count. */
static int src_read(tsrc *t, void *buf, size_t n, size_t *got)
{
    *got = 0;
    if (!t->zstd) {
        size_t want = t->pos < t->fsize ? (size_t)(t->fsize - t->pos) : 0;
        if (want > n) want = n;
        int rc = pread_full(t->fd, buf, want, t->pos, got);
        t->pos += *got;
        return rc;
    }
    uint8_t *p = buf;
    while (*got < n) {
        if (t->out_pos == t->out_len) {
            int rc = zfill(t);
            if (rc <= 0) return rc;
        }
        size_t k = t->out_len - t->out_pos;
        if (k > n - *got) k = n - *got;
        if (p) memcpy(p + *got, t->out + t->out_pos, k);
        t->out_pos += k;
        *got += k;
    }
    return 0;
}

/* Pass over n bytes: a seek in a plain shard, decoded and dropped in a zstd one. */
static int src_skip(tsrc *t, uint64_t n, uint64_t *got)
{
    if (!t->zstd) {
        uint64_t left = t->pos < t->fsize ? t->fsize - t->pos : 0;
        *got = n < left ? n : left;
        t->pos += *got;
        return 0;
    }
    *got = 0;
    while (*got < n) {
        size_t k, step = n - *got > (1u << 30) ? (1u << 30) : (size_t)(n - *got);
        int rc = src_read(t, NULL, step, &k);
        *got += k;
        if (rc) return rc;
        if (k < step) break;
    }
    return 0;
}

/* The location of the next byte. */
static int src_loc(tsrc *t, dfm_sidx_loc *loc)
{
    if (!t->zstd) {
        loc->off = t->pos;
        loc->inner = 0;
        return 0;
    }
    if (t->out_pos == t->out_len) {
        int rc = zfill(t);
        if (rc < 0) return rc;
    }
    loc->off = t->frame_c;
    loc->inner = t->ubase + t->out_pos - t->frame_u;
    return 0;
}

/* The compressed end of the frame starting at c, from its header and block headers. */
static int frame_end(tsrc *t, uint64_t c, uint64_t *end)
{
    uint8_t h[18];
    size_t n;
    int rc = pread_full(t->fd, h, sizeof h, c, &n);
    if (rc) return rc;
    if (n < 8) return dfm_fail(DFM_E_FORMAT, "zstd frame header at byte %llu is cut short",
                               (unsigned long long)c);
    uint32_t magic = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
    if ((magic & 0xFFFFFFF0u) == 0x184D2A50u) { /* skippable frame: 4-byte size */
        uint32_t sz = (uint32_t)h[4] | (uint32_t)h[5] << 8 | (uint32_t)h[6] << 16 | (uint32_t)h[7] << 24;
        *end = c + 8 + sz;
        return 0;
    }
    if (magic != 0xFD2FB528u)
        return dfm_fail(DFM_E_FORMAT, "no zstd frame at byte %llu", (unsigned long long)c);
    uint8_t d = h[4];
    int fcs = d >> 6, single = (d >> 5) & 1, checksum = (d >> 2) & 1, did = d & 3;
    static const int did_bytes[4] = {0, 1, 2, 4}, fcs_bytes[4] = {0, 2, 4, 8};
    uint64_t p = c + 5 + (single ? 0 : 1) + did_bytes[did] + (fcs == 0 ? single : fcs_bytes[fcs]);
    for (;;) {
        uint8_t b[3];
        if ((rc = pread_full(t->fd, b, 3, p, &n))) return rc;
        if (n < 3) return dfm_fail(DFM_E_FORMAT, "the zstd frame at byte %llu is cut short",
                                   (unsigned long long)c);
        uint32_t bh = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16;
        int last = bh & 1, type = (bh >> 1) & 3;
        if (type == 3) return dfm_fail(DFM_E_FORMAT, "corrupt zstd block header at byte %llu",
                                       (unsigned long long)p);
        p += 3 + (type == 1 ? 1 : (bh >> 3));
        if (last) break;
    }
    if (checksum) p += 4;
    if (p > t->fsize) return dfm_fail(DFM_E_FORMAT, "the zstd frame at byte %llu is cut short",
                                      (unsigned long long)c);
    *end = p;
    return 0;
}

/* Leave the frame holding the last byte read: go on at the start of the next frame. */
static int src_next_frame(tsrc *t)
{
    uint64_t start = 0;
    if (t->out_pos == t->out_len && t->pend) start = t->pend_c;
    else if (t->out_pos == t->out_len && t->zend) start = t->frame_c;
    else {
        int rc = frame_end(t, t->frame_c, &start);
        if (rc) return rc;
    }
    t->frames++;
    src_start(t, start);
    return 0;
}

/* ---- tar headers ---------------------------------------------------------------------- */

typedef struct {
    dfm_sidx_loc loc; /* of the member's first header (a pax or long-name header included) */
    dfm_buf name;     /* key '\0' field '\0' */
    const char *key, *field;
    uint64_t size;
    int bad_header;   /* set when the header at loc failed its checksum */
} member;

static uint64_t tar_num(const uint8_t *p, size_t n, int *ok)
{
    uint64_t v = 0;
    *ok = 1;
    if (p[0] & 0x80) { /* base-256 */
        if (p[0] != 0x80) {
            *ok = 0;
            return 0;
        }
        for (size_t i = 1; i < n; i++) {
            if (v >> 56) {
                *ok = 0;
                return 0;
            }
            v = v << 8 | p[i];
        }
        return v;
    }
    size_t i = 0;
    while (i < n && p[i] == ' ') i++;
    for (; i < n && p[i] >= '0' && p[i] <= '7'; i++) {
        if (v >> 60) {
            *ok = 0;
            return 0;
        }
        v = v * 8 + (uint64_t)(p[i] - '0');
    }
    if (i < n && p[i] != 0 && p[i] != ' ') *ok = 0;
    return v;
}

static int checksum_ok(const uint8_t *h)
{
    int ok;
    uint64_t want = tar_num(h + 148, 8, &ok);
    if (!ok) return 0;
    uint64_t u = 0;
    int64_t s = 0;
    for (int i = 0; i < 512; i++) {
        uint8_t b = (i >= 148 && i < 156) ? ' ' : h[i];
        u += b;
        s += (int8_t)b;
    }
    return want == u || (int64_t)want == s;
}

static int all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

static uint64_t pad512(uint64_t n) { return (512 - n % 512) % 512; }

/* Read n bytes of member data (n <= cap) into buf plus its padding. */
static int read_small(tsrc *t, uint64_t size, dfm_buf *b, const char *what)
{
    b->len = 0;
    if (size > PAX_MAX) return dfm_fail(DFM_E_FORMAT, "tar: a %s of %llu bytes", what,
                                        (unsigned long long)size);
    if (dfm_buf_reserve(b, (size_t)size + 1)) return DFM_E_NOMEM;
    size_t got;
    uint64_t sk;
    int rc = src_read(t, b->data, (size_t)size, &got);
    if (!rc && got < size) rc = dfm_fail(DFM_E_FORMAT, "tar: cut short inside a %s", what);
    if (!rc) rc = src_skip(t, pad512(size), &sk);
    b->len = got;
    b->data[got] = 0;
    return rc;
}

/* pax records "LEN key=value\n": take path and size. */
static void pax_parse(const dfm_buf *b, dfm_buf *path, int64_t *size)
{
    size_t i = 0;
    while (i < b->len) {
        char *end;
        unsigned long long len = strtoull((const char *)b->data + i, &end, 10);
        size_t sp = (size_t)(end - (const char *)b->data);
        if (len == 0 || i + len > b->len || sp >= i + len || *end != ' ') return;
        const char *kv = end + 1, *stop = (const char *)b->data + i + len - 1; /* the '\n' */
        const char *eq = memchr(kv, '=', (size_t)(stop - kv));
        if (eq) {
            size_t kl = (size_t)(eq - kv);
            if (kl == 4 && !memcmp(kv, "path", 4)) {
                path->len = 0;
                if (!dfm_buf_append(path, eq + 1, (size_t)(stop - eq - 1))) dfm_buf_append(path, "", 1);
            } else if (kl == 4 && !memcmp(kv, "size", 4)) {
                *size = strtoll(eq + 1, NULL, 10);
            }
        }
        i += len;
    }
}

/* WebDataset's skip_meta: the name matches `__[^/]*__($|/)`. */
static int is_meta_name(const char *name)
{
    if (strncmp(name, "__", 2)) return 0;
    size_t seg = strcspn(name, "/");
    return seg >= 4 && name[seg - 1] == '_' && name[seg - 2] == '_';
}

/* The next sample member: 1 (m filled, its data next in t), 0 at the end, < 0 on an error.
 * With bad_ok a header that fails its checksum returns 2 (m->bad_header set) instead of an
 * error, for a scan that jumped into a frame. */
static int next_member(tsrc *t, member *m, dfm_buf *tmp, int bad_ok)
{
    dfm_buf longname = {0}, paxpath = {0};
    int64_t paxsize = -1;
    int have_loc = 0, rc = 0;
    uint8_t h[512];
    for (;;) {
        if (!have_loc) {
            if ((rc = src_loc(t, &m->loc))) break;
            have_loc = 1;
        }
        size_t got;
        if ((rc = src_read(t, h, 512, &got))) break;
        if (got == 0) break; /* the end (end blocks are optional) */
        if (got < 512) {
            rc = dfm_fail(DFM_E_FORMAT, "tar: cut short inside a header");
            break;
        }
        if (all_zero(h, 512)) {
            have_loc = 0;
            longname.len = paxpath.len = 0;
            paxsize = -1;
            continue;
        }
        int ok;
        uint64_t size = tar_num(h + 124, 12, &ok);
        if (!checksum_ok(h) || !ok) {
            if (bad_ok) {
                m->bad_header = 1;
                rc = 2;
                break;
            }
            rc = dfm_fail(DFM_E_FORMAT, "tar: bad header (checksum) at byte %llu%s",
                          (unsigned long long)(m->loc.off + m->loc.inner),
                          t->zstd ? " of the decompressed frame" : "");
            break;
        }
        char type = (char)h[156];
        if (type == 'x' || type == 'L') {
            if ((rc = read_small(t, size, tmp, type == 'x' ? "pax header" : "long name"))) break;
            if (type == 'x') pax_parse(tmp, &paxpath, &paxsize);
            else {
                longname.len = 0;
                size_t l = strnlen((const char *)tmp->data, tmp->len);
                if (dfm_buf_append(&longname, tmp->data, l) || dfm_buf_append(&longname, "", 1)) {
                    rc = DFM_E_NOMEM;
                    break;
                }
            }
            continue;
        }
        if (paxsize >= 0) size = (uint64_t)paxsize;
        uint64_t sk;
        if (type != '0' && type != 0 && type != '7') { /* not a regular file ('g', 'K', dirs...) */
            if ((rc = src_skip(t, size + pad512(size), &sk))) break;
            have_loc = 0;
            longname.len = paxpath.len = 0;
            paxsize = -1;
            continue;
        }
        m->name.len = 0;
        if (paxpath.len) rc = dfm_buf_append(&m->name, paxpath.data, strlen((char *)paxpath.data));
        else if (longname.len) rc = dfm_buf_append(&m->name, longname.data, strlen((char *)longname.data));
        else {
            if (!memcmp(h + 257, "ustar\0", 6) && h[345]) {
                rc = dfm_buf_append(&m->name, h + 345, strnlen((const char *)h + 345, 155));
                if (!rc) rc = dfm_buf_append(&m->name, "/", 1);
            }
            if (!rc) rc = dfm_buf_append(&m->name, h, strnlen((const char *)h, 100));
        }
        if (!rc) rc = dfm_buf_append(&m->name, "", 1);
        if (rc) break;
        longname.len = paxpath.len = 0;
        paxsize = -1;
        char *name = (char *)m->name.data;
        char *slash = strrchr(name, '/'), *base = slash ? slash + 1 : name;
        char *dot = strchr(base, '.');
        if (is_meta_name(name) || !dot || dot == base || dot[1] == 0) {
            if ((rc = src_skip(t, size + pad512(size), &sk))) break;
            have_loc = 0;
            continue;
        }
        *dot = 0;
        for (char *c = dot + 1; *c; c++)
            if (*c >= 'A' && *c <= 'Z') *c = (char)(*c - 'A' + 'a');
        m->key = name;
        m->field = dot + 1;
        m->size = size;
        rc = 1;
        break;
    }
    dfm_buf_free(&longname);
    dfm_buf_free(&paxpath);
    return rc;
}

/* ---- scanning ------------------------------------------------------------------------- */

typedef struct {
    dfm_sidx_entry e;
    char *key;
} pending_entry;

typedef struct {
    pending_entry *v;
    size_t n, cap;
} entry_vec;

static void vec_clear(entry_vec *v)
{
    for (size_t i = 0; i < v->n; i++) free(v->v[i].key);
    v->n = 0;
}

static int vec_push(entry_vec *v, const dfm_sidx_entry *e, const char *key)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 256;
        pending_entry *nv = dfm_realloc(v->v, cap * sizeof *nv);
        if (!nv) return DFM_E_NOMEM;
        v->v = nv;
        v->cap = cap;
    }
    pending_entry *p = &v->v[v->n];
    p->e = *e;
    if (!(p->key = dfm_strdup(key))) return DFM_E_NOMEM;
    v->n++;
    return 0;
}

/* The latents.npy header from the first bytes of the member. */
static void take_latents(const uint8_t *p, size_t n, dfm_sidx_entry *e)
{
    e->have_latents = 1;
    dfm_npy_describe(p, n, e->lat_desc, sizeof e->lat_desc);
    char dt[32];
    long long s[5];
    int k = sscanf(e->lat_desc, "%31s [%lld,%lld,%lld,%lld,%lld]", dt, &s[0], &s[1], &s[2], &s[3], &s[4]);
    e->lat_ok = k == 5 && (!strcmp(dt, "float16") || !strcmp(dt, "float32")) &&
                s[0] > 0 && s[1] > 0 && s[2] > 0 && s[3] > 0 && !strchr(e->lat_desc, '\n');
    /* exactly four dimensions: the text after the fourth number closes the list */
    if (e->lat_ok) {
        const char *close = strchr(e->lat_desc, ']');
        int commas = 0;
        for (const char *c = e->lat_desc; c < close; c++) commas += *c == ',';
        e->lat_ok = commas == 3;
    }
    for (int i = 0; i < 4; i++) e->lat_shape[i] = e->lat_ok ? s[i] : 0;
}

static void take_json(const dfm_buf *b, dfm_sidx_entry *e)
{
    cJSON *j = cJSON_ParseWithLength((const char *)b->data, b->len);
    if (!j) return;
    cJSON *bk = cJSON_GetObjectItemCaseSensitive(j, "bucket");
    cJSON *w = cJSON_GetObjectItemCaseSensitive(bk, "width");
    cJSON *h = cJSON_GetObjectItemCaseSensitive(bk, "height");
    if (cJSON_IsNumber(w) && cJSON_IsNumber(h) && w->valuedouble >= 1 && h->valuedouble >= 1 &&
        w->valuedouble < 1e6 && h->valuedouble < 1e6) {
        e->bucket_w = (int)w->valuedouble;
        e->bucket_h = (int)h->valuedouble;
    }
    cJSON_Delete(j);
}

#define SCAN_RESTART 1 /* the shard is not framed per sample after all: scan it without jumps */

static int scan_pass(tsrc *t, int allow_jump, entry_vec *out, dfm_sidx_info *info)
{
    member m = {0};
    dfm_buf tmp = {0}, key = {0};
    dfm_sidx_entry cur;
    int have = 0, rc = 0, jumped = 0, ever_jumped = 0, has_json = 0, have_json = 0;
    uint64_t aligned = 0; /* sample starts so far, each at its frame's start, none after a jump */
    int aligned_all = 1;
    for (;;) {
        int got = next_member(t, &m, &tmp, jumped);
        if (got == 2) { /* a frame after a jump does not start with a header */
            rc = SCAN_RESTART;
            break;
        }
        if (got < 0) {
            rc = got;
            break;
        }
        if (got == 0 || !have || strcmp(m.key, (const char *)key.data)) {
            if (have && (rc = vec_push(out, &cur, (const char *)key.data))) break;
            have = 0;
            if (got == 0) break;
            if (t->zstd && m.loc.inner) {
                if (ever_jumped) { /* a frame holds two samples: we may have jumped over some */
                    rc = SCAN_RESTART;
                    break;
                }
                aligned_all = 0;
            } else if (aligned_all && !jumped) {
                aligned++;
            }
            memset(&cur, 0, sizeof cur);
            cur.loc = m.loc;
            key.len = 0;
            if ((rc = dfm_buf_append(&key, m.key, strlen(m.key) + 1))) break;
            have = 1;
            have_json = 0;
        }
        jumped = 0;
        uint64_t used = 0, sk;
        if (!strcmp(m.field, "json") && m.size <= JSON_MAX) {
            if ((rc = read_small(t, m.size, &tmp, "json member"))) break; /* and its padding */
            used = m.size + pad512(m.size);
            take_json(&tmp, &cur);
            have_json = 1;
            if (aligned <= SCAN_JUMP_AFTER) has_json = 1;
        } else if (!strcmp(m.field, "latents.npy") && !cur.have_latents) {
            size_t n = m.size < LAT_HEAD ? (size_t)m.size : LAT_HEAD, g;
            if ((rc = dfm_buf_reserve(&tmp, n))) break;
            if ((rc = src_read(t, tmp.data, n, &g))) break;
            if (g < n) {
                rc = dfm_fail(DFM_E_FORMAT, "tar: cut short inside '%s.%s'", m.key, m.field);
                break;
            }
            used = n;
            take_latents(tmp.data, n, &cur);
        }
        /* a shard framed per sample: the rest of this frame is this sample's, which the index
         * does not need */
        if (allow_jump && t->zstd && aligned_all && aligned > SCAN_JUMP_AFTER && cur.have_latents &&
            (have_json || !has_json)) {
            if ((rc = src_next_frame(t))) break;
            jumped = ever_jumped = 1;
            continue;
        }
        if (used > m.size) continue; /* read with its padding */
        uint64_t data_left = m.size - used;
        if ((rc = src_skip(t, data_left + pad512(m.size), &sk))) break;
        if (sk < data_left) { /* missing padding at the very end is tolerated */
            rc = dfm_fail(DFM_E_FORMAT, "tar: cut short inside '%s.%s'", m.key, m.field);
            break;
        }
    }
    if (rc == SCAN_RESTART) vec_clear(out);
    info->framed = t->zstd && allow_jump && aligned > SCAN_JUMP_AFTER && aligned_all;
    dfm_buf_free(&m.name);
    dfm_buf_free(&tmp);
    dfm_buf_free(&key);
    return rc;
}

int dfm_sidx_scan(const char *path, dfm_sidx_fn fn, void *ud, dfm_sidx_info *info)
{
    memset(info, 0, sizeof *info);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return dfm_fail(DFM_E_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return dfm_fail(DFM_E_IO, "'%s' is not a regular file", path);
    }
    tsrc t = {.fd = fd, .fsize = (uint64_t)st.st_size};
    uint8_t magic[4];
    size_t got;
    int rc = pread_full(fd, magic, 4, 0, &got);
    t.zstd = !rc && got == 4 && magic[0] == 0x28 && magic[1] == 0xB5 && magic[2] == 0x2F && magic[3] == 0xFD;
    entry_vec v = {0};
    if (!rc && t.zstd) {
        t.dz = ZSTD_createDCtx();
        t.in = dfm_malloc(ZIN_CAP);
        t.out = dfm_malloc(ZOUT_CAP);
        if (!t.dz || !t.in || !t.out) rc = dfm_fail(DFM_E_NOMEM, "out of memory (zstd)");
    }
    if (!rc) {
        src_start(&t, 0);
        rc = scan_pass(&t, 1, &v, info);
        if (rc == SCAN_RESTART) {
            t.frames = 0;
            src_start(&t, 0);
            rc = scan_pass(&t, 0, &v, info);
        }
        if (rc < 0) dfm_fail_ctx(rc, "'%s'", path);
    }
    info->size = t.fsize;
    info->zstd = t.zstd;
    info->frames = t.frames;
    for (size_t i = 0; !rc && i < v.n; i++) {
        v.v[i].e.key = v.v[i].key;
        info->shared += v.v[i].e.loc.inner > 0;
        rc = fn(ud, &v.v[i].e);
    }
    info->samples = v.n;
    vec_clear(&v);
    free(v.v);
    ZSTD_freeDCtx(t.dz);
    free(t.in);
    free(t.out);
    close(fd);
    return rc;
}

/* ---- reading one sample --------------------------------------------------------------- */

struct dfm_sidx_reader {
    ZSTD_DCtx *dz;
    uint8_t *in, *out;
    member m;
    dfm_buf tmp;
};

int dfm_sidx_reader_new(dfm_sidx_reader **out)
{
    dfm_sidx_reader *r = dfm_calloc(1, sizeof *r);
    if (!r) return DFM_E_NOMEM;
    r->dz = ZSTD_createDCtx();
    r->in = dfm_malloc(ZIN_CAP);
    r->out = dfm_malloc(ZOUT_CAP);
    if (!r->dz || !r->in || !r->out) {
        dfm_sidx_reader_free(r);
        return dfm_fail(DFM_E_NOMEM, "out of memory (zstd)");
    }
    *out = r;
    return 0;
}

void dfm_sidx_reader_free(dfm_sidx_reader *r)
{
    if (!r) return;
    ZSTD_freeDCtx(r->dz);
    free(r->in);
    free(r->out);
    dfm_buf_free(&r->m.name);
    dfm_buf_free(&r->tmp);
    free(r);
}

int dfm_sidx_read(dfm_sidx_reader *r, int fd, int zstd, uint64_t file_size, dfm_sidx_loc loc,
                  const char *const *want, int nwant, uint64_t max_bytes, dfm_sample *s,
                  int *foreign)
{
    dfm_sample_clear(s);
    if (foreign) *foreign = 0;
    tsrc t = {.fd = fd, .zstd = zstd, .fsize = file_size, .dz = r->dz, .in = r->in, .out = r->out};
    src_start(&t, loc.off);
    uint64_t sk, total = 0;
    int rc = 0;
    if (zstd && loc.inner) {
        rc = src_skip(&t, loc.inner, &sk);
        if (!rc && sk < loc.inner) rc = dfm_fail(DFM_E_FORMAT, "the shard ends before the sample");
    }
    member *m = &r->m;
    int got = rc ? rc : next_member(&t, m, &r->tmp, 0);
    if (got == 0) rc = dfm_fail(DFM_E_FORMAT, "no sample at this offset (did the shard change?)");
    else if (got < 0) rc = got;
    if (!rc) rc = dfm_sample_set_key(s, m->key);
    while (!rc) {
        int wanted = 0;
        for (int i = 0; i < nwant && !wanted; i++) wanted = !strcmp(m->field, want[i]);
        if (wanted && dfm_sample_get(s, m->field)) {
            rc = dfm_fail(DFM_E_FORMAT, "field '%s' twice", m->field);
            break;
        }
        if (wanted) {
            total += m->size;
            if ((max_bytes && total > max_bytes) || m->size > (uint64_t)SIZE_MAX - 1) {
                rc = dfm_fail(DFM_E_LIMIT, "larger than the limit of %llu bytes",
                              (unsigned long long)max_bytes);
                break;
            }
            if (!zstd && m->size > file_size) {
                rc = dfm_fail(DFM_E_FORMAT, "member '%s' runs past the end of the shard", m->field);
                break;
            }
            uint8_t *data = dfm_malloc((size_t)m->size + 1);
            if (!data) {
                rc = DFM_E_NOMEM;
                break;
            }
            size_t g;
            rc = src_read(&t, data, (size_t)m->size, &g);
            if (!rc && g < m->size) rc = dfm_fail(DFM_E_FORMAT, "cut short inside '%s'", m->field);
            if (rc) {
                free(data);
                break;
            }
            data[m->size] = 0;
            if ((rc = dfm_sample_set_owned(s, m->field, data, (size_t)m->size))) break;
            if ((rc = src_skip(&t, pad512(m->size), &sk))) break;
        } else {
            if ((rc = src_skip(&t, m->size + pad512(m->size), &sk))) break;
        }
        /* the next member: more of this sample, or the next sample (or the end) */
        got = next_member(&t, m, &r->tmp, 0);
        if (got == DFM_E_NOMEM || got == DFM_E_IO) {
            rc = got;
            break;
        }
        if (got <= 0) break; /* the end, or trouble past this sample: not this sample's */
        if (strcmp(m->key, s->key)) {
            if (foreign && zstd && loc.inner == 0 && m->loc.off == loc.off && m->loc.inner > 0)
                *foreign = 1;
            break;
        }
    }
    return rc; /* on an error s keeps the key when it was read, for the message */
}
