/* energon.c — the files of a prepared Megatron-Energon dataset, from a dfm-shard series (see
 * energon.h): a tar header walk giving Energon's sample offsets, then .tar.idx, .nv-meta/.info.json,
 * split.yaml, dataset.yaml, index.sqlite, index.uuid.
 * Not here: the shards themselves (shard.c); reading samples (stream_tar.c, via libarchive, which
 * does not report header offsets — hence the walk of our own).
 * ref: megatron-energon 7.4 flavors/webdataset/prepare.py WebdatasetPreparator._preprocess_tar,
 *      prepare_dataset; itar.py TarIndexWriter; indexing.py SqliteIndexWriter; CPython tarfile.py
 *      (TarInfo.offset / offset_data for pax and GNU long-name members). */
#include "io/energon.h"
#include "base/buf.h"
#include "base/error.h"
#include "base/strset.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef DFM_VERSION
#define DFM_VERSION "0"
#endif

/* ---- the tar walk ------------------------------------------------------------------------ */

enum { BLOCK = 512, MAX_EXT = 1 << 20 };

static uint64_t round_block(uint64_t n) { return (n + BLOCK - 1) / BLOCK * BLOCK; }

/* A numeric header field: octal (NUL/space terminated) or base-256 (high bit of byte 0). */
static int tar_number(const uint8_t *f, int n, uint64_t *out)
{
    uint64_t v = 0;
    if (f[0] & 0x80) {
        if (f[0] != 0x80) return -1; /* negative or > 2^56: not a size we take */
        for (int i = 1; i < n; i++) {
            if (v >> 56) return -1;
            v = v << 8 | f[i];
        }
        *out = v;
        return 0;
    }
    int i = 0, digits = 0;
    while (i < n && f[i] == ' ') i++;
    for (; i < n && f[i] >= '0' && f[i] <= '7'; i++, digits++) {
        if (v >> 60) return -1;
        v = v << 3 | (uint64_t)(f[i] - '0');
    }
    if (i < n && f[i] != 0 && f[i] != ' ') return -1;
    *out = v;
    return digits || i == n ? 0 : -1;
}

static int header_ok(const uint8_t *h)
{
    uint64_t want;
    if (tar_number(h + 148, 8, &want)) return 0;
    uint64_t u = 0;
    int64_t s = 0;
    for (int i = 0; i < BLOCK; i++) {
        int c = i >= 148 && i < 156 ? ' ' : h[i];
        u += (uint64_t)c;
        s += (int8_t)c;
    }
    return u == want || (uint64_t)s == want;
}

static int all_zero(const uint8_t *h)
{
    for (int i = 0; i < BLOCK; i++)
        if (h[i]) return 0;
    return 1;
}

/* pax records "LEN key=value\n": path and size override the header. */
static int pax_parse(const char *d, size_t n, char **path, uint64_t *size, int *has_size)
{
    size_t i = 0;
    while (i < n) {
        size_t len = 0, j = i;
        while (j < n && d[j] >= '0' && d[j] <= '9' && len < n) len = len * 10 + (size_t)(d[j++] - '0');
        if (j >= n || d[j] != ' ' || len == 0 || len > n - i) return -1;
        const char *kv = d + j + 1, *end = d + i + len - 1; /* end: the '\n' */
        if (*end != '\n' || kv > end) return -1;
        const char *eq = memchr(kv, '=', (size_t)(end - kv));
        if (!eq) return -1;
        size_t kl = (size_t)(eq - kv);
        if (kl == 4 && !memcmp(kv, "path", 4)) {
            free(*path);
            if (!(*path = dfm_strndup(eq + 1, (size_t)(end - eq - 1)))) return DFM_E_NOMEM;
        } else if (kl == 4 && !memcmp(kv, "size", 4)) {
            uint64_t v = 0;
            for (const char *c = eq + 1; c < end; c++) {
                if (*c < '0' || *c > '9' || v > UINT64_MAX / 10 - 1) return -1;
                v = v * 10 + (uint64_t)(*c - '0');
            }
            *size = v, *has_size = 1;
        }
        i += len;
    }
    return 0;
}

/* Energon's name split (config.py split_name_re, skip_meta_re): the key runs to the first dot
 * of the last path component, the part is the rest; a first component __X__ is skipped. *klen = key length, *part = after the dot;
 * 0 when the member is skipped. */
static int split_name(const char *name, size_t *klen, const char **part)
{
    const char *slash = strchr(name, '/');
    size_t first = slash ? (size_t)(slash - name) : strlen(name);
    if (first >= 4 && !strncmp(name, "__", 2) && !strncmp(name + first - 2, "__", 2)) return 0;
    const char *last = strrchr(name, '/');
    const char *comp = last ? last + 1 : name;
    const char *dot = strchr(comp, '.');
    if (!dot) return 0;
    /* the dot needs a non-empty run of non-dots before it, starting at the name's start or
     * right after a '/' */
    const char *p = dot;
    while (p > name && p[-1] != '.') p--;
    int ok = p == name && dot > name;
    for (const char *q = p; !ok && q < dot - 1; q++) ok = *q == '/';
    if (!ok) return 0;
    *klen = (size_t)(dot - name);
    *part = dot + 1;
    return 1;
}

void dfm_energon_tar_free(dfm_energon_tar *t)
{
    for (int i = 0; i < t->nsamples; i++) free(t->samples[i].key);
    for (int i = 0; i < t->nparts; i++) free(t->parts[i].name);
    free(t->samples);
    free(t->parts);
    memset(t, 0, sizeof *t);
}

static int add_member(dfm_energon_tar *t, const char *name, uint64_t hoff, uint64_t doff,
                      uint64_t size)
{
    size_t klen;
    const char *part;
    if (!split_name(name, &klen, &part)) return 0;
    dfm_energon_sample *last = t->nsamples ? &t->samples[t->nsamples - 1] : NULL;
    if (!last || strlen(last->key) != klen || strncmp(last->key, name, klen)) {
        if (t->nsamples == INT32_MAX) return dfm_fail(DFM_E_LIMIT, "too many samples in one tar");
        dfm_energon_sample *s = dfm_realloc(t->samples, (size_t)(t->nsamples + 1) * sizeof *s);
        if (!s) return DFM_E_NOMEM;
        t->samples = s;
        if (last) last = &s[t->nsamples - 1], last->size = hoff - last->offset;
        s = &s[t->nsamples];
        memset(s, 0, sizeof *s);
        s->offset = hoff;
        s->first_part = t->nparts;
        if (!(s->key = dfm_strndup(name, klen))) return DFM_E_NOMEM;
        t->nsamples++;
    }
    if (t->nparts == INT32_MAX) return dfm_fail(DFM_E_LIMIT, "too many members in one tar");
    dfm_energon_part *p = dfm_realloc(t->parts, (size_t)(t->nparts + 1) * sizeof *p);
    if (!p) return DFM_E_NOMEM;
    t->parts = p;
    p = &p[t->nparts++];
    p->data_offset = doff, p->data_size = size;
    if (!(p->name = dfm_strdup(part))) return DFM_E_NOMEM;
    t->samples[t->nsamples - 1].nparts++;
    return 0;
}

int dfm_energon_scan_tar(const char *path, dfm_energon_tar *t)
{
    memset(t, 0, sizeof *t);
    FILE *f = fopen(path, "rb");
    if (!f) return dfm_fail(DFM_E_IO, "cannot open '%s': %s", path, strerror(errno));
    uint8_t h[BLOCK];
    uint64_t off = 0, ext_off = 0;
    int have_ext = 0, rc = 0, has_size = 0;
    char *long_name = NULL;
    uint64_t pax_size = 0;
    char *ext = NULL;
    for (;;) {
        size_t got = fread(h, 1, BLOCK, f);
        if (got == 0 && !ferror(f) && !have_ext) break; /* no end blocks: the end of the file */
        if (got != BLOCK) {
            rc = ferror(f) ? dfm_fail(DFM_E_IO, "cannot read '%s': %s", path, strerror(errno))
                           : dfm_fail(DFM_E_FORMAT, "'%s': truncated tar (a header cut at byte %llu)",
                                      path, (unsigned long long)off);
            break;
        }
        if (all_zero(h)) {
            if (have_ext) rc = dfm_fail(DFM_E_FORMAT, "'%s': an extended header with no member "
                                        "(byte %llu)", path, (unsigned long long)off);
            break;
        }
        if (!header_ok(h)) {
            rc = off == 0 && (h[0] == 0x1f || h[0] == 0x28)
                     ? dfm_fail(DFM_E_FORMAT, "'%s' is compressed; Energon reads plain .tar shards "
                                "only", path)
                     : dfm_fail(DFM_E_FORMAT, "'%s': not a tar header at byte %llu (bad checksum)",
                                path, (unsigned long long)off);
            break;
        }
        uint64_t size;
        if (tar_number(h + 124, 12, &size)) {
            rc = dfm_fail(DFM_E_FORMAT, "'%s': bad member size at byte %llu", path,
                          (unsigned long long)off);
            break;
        }
        char type = (char)h[156];
        if (type != 'x' && type != 'g' && type != 'L' && type != 'K' && has_size)
            size = pax_size; /* a pax size record overrides the member's header */
        uint64_t data = off + BLOCK, next = data + round_block(size);
        if (next < data) {
            rc = dfm_fail(DFM_E_FORMAT, "'%s': member size overflows", path);
            break;
        }
        if (type == 'x' || type == 'g' || type == 'L' || type == 'K') {
            if (size > MAX_EXT) {
                rc = dfm_fail(DFM_E_FORMAT, "'%s': an extended header of %llu bytes at byte %llu",
                              path, (unsigned long long)size, (unsigned long long)off);
                break;
            }
            free(ext);
            ext = dfm_malloc((size_t)size + 1);
            if (!ext) {
                rc = DFM_E_NOMEM;
                break;
            }
            if (fread(ext, 1, (size_t)size, f) != size) {
                rc = dfm_fail(DFM_E_FORMAT, "'%s': truncated tar (extended header at byte %llu)",
                              path, (unsigned long long)off);
                break;
            }
            ext[size] = 0;
            if (type == 'x' || type == 'L' || type == 'K') {
                if (!have_ext) ext_off = off;
                have_ext = 1;
            }
            if (type == 'x' && pax_parse(ext, (size_t)size, &long_name, &pax_size, &has_size)) {
                rc = dfm_fail(DFM_E_FORMAT, "'%s': a bad pax header at byte %llu", path,
                              (unsigned long long)off);
                break;
            }
            if (type == 'L') {
                free(long_name);
                if (!(long_name = dfm_strdup(ext))) {
                    rc = DFM_E_NOMEM;
                    break;
                }
            }
        } else {
            char name[257];
            if (long_name) {
                /* from pax path or GNU L */
            } else if (!memcmp(h + 257, "ustar", 5) && h[345]) {
                snprintf(name, sizeof name, "%.155s/%.100s", (const char *)h + 345,
                         (const char *)h);
            } else {
                snprintf(name, sizeof name, "%.100s", (const char *)h);
            }
            const char *nm = long_name ? long_name : name;
            if (type == 'S') {
                rc = dfm_fail(DFM_E_FORMAT, "'%s': sparse member '%s' is not supported", path, nm);
                break;
            }
            if (type == '0' || type == 0 || type == '7')
                rc = add_member(t, nm, have_ext ? ext_off : off, data, size);
            free(long_name);
            long_name = NULL;
            have_ext = has_size = 0;
            if (rc) break;
        }
        if (fseeko(f, (off_t)next, SEEK_SET) != 0) {
            rc = dfm_fail(DFM_E_IO, "cannot seek in '%s': %s", path, strerror(errno));
            break;
        }
        off = next;
    }
    if (!rc) { /* the walk must not have run past the file: its last member must be whole */
        struct stat st;
        if (fstat(fileno(f), &st) == 0 && (uint64_t)st.st_size < off)
            rc = dfm_fail(DFM_E_FORMAT, "'%s': truncated tar (the last member is cut)", path);
    }
    free(long_name);
    free(ext);
    fclose(f);
    if (!rc) {
        t->end = off;
        if (t->nsamples) {
            dfm_energon_sample *last = &t->samples[t->nsamples - 1];
            last->size = off - last->offset;
        }
    }
    return rc;
}

/* ---- split weights ----------------------------------------------------------------------- */

int dfm_energon_parse_split(const char *s, double w[3])
{
    char *end;
    const char *c = s;
    double sum = 0;
    for (int i = 0; i < 3; i++) {
        errno = 0;
        w[i] = strtod(c, &end);
        if (end == c || errno || !(w[i] >= 0) || w[i] > 1e12) goto bad;
        sum += w[i];
        c = end;
        while (*c == ' ') c++;
        if (i < 2 && *c++ != ',') goto bad;
    }
    if (*c || !(sum > 0)) goto bad;
    return 0;
bad:
    return dfm_fail(DFM_E_ARG, "split '%s': want three weights train,val,test such as 8,1,1 "
                    "(each >= 0, not all 0)", s);
}

/* ---- writing ----------------------------------------------------------------------------- */

/* A YAML/JSON double-quoted string. */
static int quoted(dfm_buf *b, const char *s)
{
    cJSON *j = cJSON_CreateString(s);
    char *t = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (!t) return dfm_fail(DFM_E_NOMEM, "out of memory");
    int rc = dfm_buf_printf(b, "%s", t);
    free(t);
    return rc;
}

static int write_meta(const char *dir, const char *name, const void *data, size_t n)
{
    dfm_buf p = {0};
    int rc = dfm_buf_printf(&p, "%s/.nv-meta/%s", dir, name);
    if (!rc) rc = dfm_write_file_atomic((const char *)p.data, data, n);
    dfm_buf_free(&p);
    return rc;
}

/* FNV-1a, 64-bit, continued from h. */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const uint8_t *c = p;
    for (size_t i = 0; i < n; i++) h = (h ^ c[i]) * 0x100000001b3ULL;
    return h;
}

typedef struct {
    char *url;
    uint64_t nsamples;
} shard_ref;

static int load_index(const char *dir, shard_ref **out, int *n)
{
    *out = NULL, *n = 0;
    dfm_buf p = {0}, txt = {0};
    int rc = dfm_buf_printf(&p, "%s/index.json", dir);
    if (!rc) rc = dfm_read_file((const char *)p.data, 0, &txt);
    if (!rc) rc = dfm_buf_append(&txt, "", 1);
    cJSON *j = rc ? NULL : cJSON_Parse((const char *)txt.data);
    cJSON *list = j ? cJSON_GetObjectItemCaseSensitive(j, "shardlist") : NULL;
    if (!rc && !cJSON_IsArray(list))
        rc = dfm_fail(DFM_E_FORMAT, "'%s' is not a shard index (no \"shardlist\")", p.data);
    int cnt = rc ? 0 : cJSON_GetArraySize(list), i = 0;
    if (!rc && cnt == 0) rc = dfm_fail(DFM_E_FORMAT, "'%s' lists no shard", p.data);
    shard_ref *s = rc ? NULL : dfm_calloc((size_t)cnt, sizeof *s);
    if (!rc && !s) rc = DFM_E_NOMEM;
    cJSON *e, *walk = rc ? NULL : list;
    cJSON_ArrayForEach(e, walk) {
        cJSON *u = cJSON_GetObjectItemCaseSensitive(e, "url");
        cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "nsamples");
        const char *url = cJSON_IsString(u) ? u->valuestring : NULL;
        size_t ul = url ? strlen(url) : 0;
        if (!url || !cJSON_IsNumber(c) || c->valuedouble < 1)
            rc = dfm_fail(DFM_E_FORMAT, "'%s': a shardlist entry without url and nsamples", p.data);
        else if (ul > 8 && !strcmp(url + ul - 8, ".tar.zst"))
            rc = dfm_fail(DFM_E_FORMAT, "shard '%s' is compressed; Energon reads plain .tar shards "
                          "only (write the series with -o NAME-%%06d.tar)", url);
        else if (ul < 5 || strcmp(url + ul - 4, ".tar"))
            rc = dfm_fail(DFM_E_FORMAT, "shard '%s' is not a .tar file", url);
        else if (url[0] == '/' || !strncmp(url, "../", 3) || strstr(url, "/../") ||
                 strstr(url, "://"))
            rc = dfm_fail(DFM_E_FORMAT, "shard '%s' is not inside '%s'; an Energon dataset holds "
                          "its shards below its folder", url, dir);
        if (rc) break;
        if (!(s[i].url = dfm_strdup(url))) {
            rc = DFM_E_NOMEM;
            break;
        }
        s[i++].nsamples = (uint64_t)c->valuedouble;
    }
    cJSON_Delete(j);
    dfm_buf_free(&p);
    dfm_buf_free(&txt);
    if (rc) {
        for (int k = 0; k < i; k++) free(s[k].url);
        free(s);
        return rc;
    }
    *out = s, *n = cnt;
    return 0;
}

static int sql_ok(sqlite3 *db, int r, const char *path)
{
    if (r == SQLITE_OK || r == SQLITE_DONE || r == SQLITE_ROW) return 0;
    return dfm_fail(DFM_E_IO, "'%s': sqlite: %s", path, db ? sqlite3_errmsg(db) : sqlite3_errstr(r));
}

/* Energon's schema (indexing.py SqliteIndexWriter), filled in one transaction. */
static const char schema[] =
    "CREATE TABLE samples (tar_file_id INTEGER NOT NULL, sample_key TEXT NOT NULL UNIQUE, "
    "sample_index INTEGER NOT NULL, byte_offset INTEGER, byte_size INTEGER);"
    "CREATE TABLE sample_parts (tar_file_id INTEGER, sample_index INTEGER, part_name TEXT, "
    "content_byte_offset INTEGER, content_byte_size INTEGER);";
static const char indexes[] =
    "CREATE INDEX idx_samples_by_tar_and_idx ON samples(tar_file_id, sample_index);"
    "CREATE INDEX idx_sample_parts_seq ON sample_parts(tar_file_id, sample_index, "
    "content_byte_offset);"
    "CREATE INDEX idx_sample_parts_full ON sample_parts(tar_file_id, sample_index, part_name, "
    "content_byte_offset, content_byte_size);";

typedef struct {
    sqlite3 *db;
    sqlite3_stmt *ins_s, *ins_p;
    const char *path;
} sqlw;

static int sql_open(sqlw *w, const char *path)
{
    memset(w, 0, sizeof *w);
    w->path = path;
    unlink(path);
    int rc = sql_ok(NULL, sqlite3_open(path, &w->db), path);
    if (!rc) rc = sql_ok(w->db, sqlite3_exec(w->db, "PRAGMA journal_mode=OFF; BEGIN;", 0, 0, 0), path);
    if (!rc) rc = sql_ok(w->db, sqlite3_exec(w->db, schema, 0, 0, 0), path);
    if (!rc) rc = sql_ok(w->db, sqlite3_prepare_v2(w->db, "INSERT INTO samples (tar_file_id, "
                         "sample_key, sample_index, byte_offset, byte_size) VALUES (?,?,?,?,?)",
                         -1, &w->ins_s, NULL), path);
    if (!rc) rc = sql_ok(w->db, sqlite3_prepare_v2(w->db, "INSERT INTO sample_parts (tar_file_id, "
                         "sample_index, part_name, content_byte_offset, content_byte_size) VALUES "
                         "(?,?,?,?,?)", -1, &w->ins_p, NULL), path);
    return rc;
}

static int sql_shard(sqlw *w, int id, const dfm_energon_tar *t)
{
    int rc = 0;
    for (int i = 0; i < t->nsamples && !rc; i++) {
        const dfm_energon_sample *s = &t->samples[i];
        sqlite3_reset(w->ins_s);
        sqlite3_bind_int(w->ins_s, 1, id);
        sqlite3_bind_text(w->ins_s, 2, s->key, -1, SQLITE_STATIC);
        sqlite3_bind_int(w->ins_s, 3, i);
        sqlite3_bind_int64(w->ins_s, 4, (sqlite3_int64)s->offset);
        sqlite3_bind_int64(w->ins_s, 5, (sqlite3_int64)s->size);
        rc = sql_ok(w->db, sqlite3_step(w->ins_s), w->path);
        for (int k = 0; k < s->nparts && !rc; k++) {
            const dfm_energon_part *p = &t->parts[s->first_part + k];
            sqlite3_reset(w->ins_p);
            sqlite3_bind_int(w->ins_p, 1, id);
            sqlite3_bind_int(w->ins_p, 2, i);
            sqlite3_bind_text(w->ins_p, 3, p->name, -1, SQLITE_STATIC);
            sqlite3_bind_int64(w->ins_p, 4, (sqlite3_int64)p->data_offset);
            sqlite3_bind_int64(w->ins_p, 5, (sqlite3_int64)p->data_size);
            rc = sql_ok(w->db, sqlite3_step(w->ins_p), w->path);
        }
    }
    return rc;
}

static int sql_close(sqlw *w, int failed)
{
    int rc = 0;
    sqlite3_finalize(w->ins_s);
    sqlite3_finalize(w->ins_p);
    if (!failed && w->db) rc = sql_ok(w->db, sqlite3_exec(w->db, indexes, 0, 0, 0), w->path);
    if (!failed && !rc && w->db) rc = sql_ok(w->db, sqlite3_exec(w->db, "COMMIT;", 0, 0, 0), w->path);
    if (w->db && sqlite3_close(w->db) != SQLITE_OK && !rc && !failed)
        rc = dfm_fail(DFM_E_IO, "'%s': sqlite: cannot close", w->path);
    w->db = NULL;
    return rc;
}

static int write_idx(const char *dir, const char *url, const dfm_energon_tar *t)
{
    size_t n = (size_t)t->nsamples + 1;
    uint8_t *b = dfm_malloc(n * 8);
    if (!b) return DFM_E_NOMEM;
    for (size_t i = 0; i < n; i++) {
        uint64_t v = i < (size_t)t->nsamples ? t->samples[i].offset : t->end;
        for (int k = 0; k < 8; k++) b[i * 8 + k] = (uint8_t)(v >> (8 * k)); /* little-endian */
    }
    dfm_buf p = {0};
    int rc = dfm_buf_printf(&p, "%s/%s.idx", dir, url);
    if (!rc) rc = dfm_write_file_atomic((const char *)p.data, b, n * 8);
    dfm_buf_free(&p);
    free(b);
    return rc;
}

static const char dataset_yaml[] =
    "# Megatron-Energon dataset, written by dfm-shard (kept as it is when it exists: edit freely).\n"
    "# Samples come as plain dicts (CrudeSample), cooked by the task encoder's cookers, as NeMo\n"
    "# DFM's Wan data module does. Each sample holds __key__ and one entry per field present:\n"
    "#   latents.npy  VAE latents [C, F, H, W] (numpy .npy)\n"
    "#   text.npy     text-encoder embeddings [L, D] (numpy .npy)\n"
    "#   json         metadata: bucket, source, crop, caption ...\n"
    "#   txt          caption (UTF-8)\n"
    "#   frames.npy   decoded frames [F, H, W, 3] u8, in streams not yet encoded\n"
    "#   jpg/png/webp/mp4 ...  encoded media, when the stream carried them\n";

int dfm_energon_prepare(const char *dir, const dfm_energon_opts *o, dfm_energon_stats *st)
{
    dfm_energon_stats local;
    if (!st) st = &local;
    memset(st, 0, sizeof *st);
    shard_ref *sh;
    int n, rc = load_index(dir, &sh, &n);
    if (rc) return rc;
    dfm_buf meta = {0}, sql = {0}, info = {0}, split = {0};
    dfm_strset keys = {0};
    sqlw w = {0};
    int sql_opened = 0;
    uint64_t h1 = 0xcbf29ce484222325ULL, h2 = 0x84222325cbf29ce4ULL;
    rc = dfm_buf_printf(&meta, "%s/.nv-meta", dir);
    if (!rc) rc = dfm_mkdirs((const char *)meta.data);
    if (!rc) rc = dfm_buf_printf(&sql, "%s/index.sqlite.tmp", (const char *)meta.data);
    if (!rc) rc = sql_open(&w, (const char *)sql.data), sql_opened = 1;
    if (!rc) rc = dfm_buf_printf(&info, "{\n  \"energon_version\": \"dfm %s\",\n  \"shard_counts\": {",
                                 DFM_VERSION);
    for (int i = 0; i < n && !rc; i++) {
        dfm_buf p = {0};
        dfm_energon_tar t;
        rc = dfm_buf_printf(&p, "%s/%s", dir, sh[i].url);
        if (!rc) rc = dfm_energon_scan_tar((const char *)p.data, &t);
        if (!rc && (uint64_t)t.nsamples != sh[i].nsamples)
            rc = dfm_fail(DFM_E_FORMAT, "'%s' holds %d samples, index.json says %llu", p.data,
                          t.nsamples, (unsigned long long)sh[i].nsamples);
        for (int k = 0; k < t.nsamples && !rc; k++) {
            int added = dfm_strset_add(&keys, t.samples[k].key);
            if (added < 0) rc = DFM_E_NOMEM;
            else if (!added)
                rc = dfm_fail(DFM_E_FORMAT, "sample key '%s' appears twice (again in '%s'); Energon "
                              "needs keys unique across the dataset", t.samples[k].key, sh[i].url);
            h1 = fnv(h1, t.samples[k].key, strlen(t.samples[k].key) + 1);
            h2 = fnv(h2, &t.samples[k].offset, 8);
            h2 = fnv(h2, &t.samples[k].size, 8);
        }
        h1 = fnv(h1, sh[i].url, strlen(sh[i].url) + 1);
        if (!rc) rc = sql_shard(&w, i, &t);
        if (!rc) rc = write_idx(dir, sh[i].url, &t);
        if (!rc) rc = dfm_buf_printf(&info, "%s\n    ", i ? "," : "");
        if (!rc) rc = quoted(&info, sh[i].url);
        if (!rc) rc = dfm_buf_printf(&info, ": %d", t.nsamples);
        if (!rc) st->samples += (uint64_t)t.nsamples;
        dfm_energon_tar_free(&t);
        dfm_buf_free(&p);
    }
    if (!rc) rc = dfm_buf_printf(&info, "\n  }\n}\n");
    if (sql_opened) {
        int r = sql_close(&w, rc != 0);
        if (!rc) rc = r;
    }
    /* split.yaml: energon prepare --split-ratio without shuffling */
    double W = o ? o->split[0] + o->split[1] + o->split[2] : 0;
    static const char *const names[3] = {"train", "val", "test"};
    if (!rc) rc = dfm_buf_printf(&split, "split_parts:\n");
    int from = 0;
    double cum = 0;
    for (int k = 0; k < 3 && !rc; k++) {
        int to;
        if (W > 0) {
            cum += o->split[k] / W;
            to = k == 2 ? n : (int)(n * cum);
            if (to > n) to = n;
        } else {
            to = k == 0 ? n : from;
        }
        rc = dfm_buf_printf(&split, "  %s:%s\n", names[k], to > from ? "" : " []");
        for (int i = from; i < to && !rc; i++) {
            rc = dfm_buf_printf(&split, "  - ");
            if (!rc) rc = quoted(&split, sh[i].url);
            if (!rc) rc = dfm_buf_printf(&split, "\n");
        }
        st->split_shards[k] = to - from;
        from = to;
    }
    if (!rc) rc = dfm_buf_printf(&split, "exclude: []\n");
    if (!rc) rc = write_meta(dir, ".info.json", info.data, info.len);
    if (!rc) rc = write_meta(dir, "split.yaml", split.data, split.len);
    if (!rc) {
        dfm_buf p = {0}, f = {0};
        rc = dfm_buf_printf(&p, "%s/index.sqlite", (const char *)meta.data);
        if (!rc && rename((const char *)sql.data, (const char *)p.data) != 0)
            rc = dfm_fail(DFM_E_IO, "cannot rename '%s' into place: %s", p.data, strerror(errno));
        /* the id of this index: from its content, in UUID4 form */
        h1 = fnv(h1, info.data, info.len);
        uint8_t u[16];
        for (int k = 0; k < 8; k++) u[k] = (uint8_t)(h1 >> (8 * k)), u[8 + k] = (uint8_t)(h2 >> (8 * k));
        u[6] = (uint8_t)((u[6] & 0x0f) | 0x40);
        u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
        if (!rc) rc = dfm_buf_printf(&f, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
                                     "%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2], u[3], u[4],
                                     u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13],
                                     u[14], u[15]);
        if (!rc) rc = write_meta(dir, "index.uuid", f.data, f.len);
        dfm_buf_free(&p);
        dfm_buf_free(&f);
    }
    if (!rc) {
        dfm_buf p = {0};
        struct stat sb;
        rc = dfm_buf_printf(&p, "%s/dataset.yaml", (const char *)meta.data);
        if (!rc && stat((const char *)p.data, &sb) == 0) st->dataset_yaml_kept = 1;
        else if (!rc) {
            dfm_buf y = {0};
            rc = dfm_buf_printf(&y, "%s__module__: megatron.energon\n__class__: CrudeWebdataset\n",
                                dataset_yaml);
            if (!rc) rc = write_meta(dir, "dataset.yaml", y.data, y.len);
            dfm_buf_free(&y);
        }
        dfm_buf_free(&p);
    }
    if (rc && sql.data) unlink((const char *)sql.data);
    st->shards = rc ? 0 : n;
    for (int i = 0; i < n; i++) free(sh[i].url);
    free(sh);
    dfm_strset_free(&keys);
    dfm_buf_free(&meta);
    dfm_buf_free(&sql);
    dfm_buf_free(&info);
    dfm_buf_free(&split);
    return rc;
}
