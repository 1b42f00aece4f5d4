/* shard_keys.c — the keys in a directory's complete shards (see shard_keys.h): finding the shard
 * files, listing their members' keys through libarchive without reading the data, the frontier.
 * Not here: writing shards (shard.c), reading samples (stream_tar.c).
 * ref: webdataset tariterators.py base_plus_ext (a member name's key: up to the first dot of its
 *      last path component) */
#include "io/shard_keys.h"
#include "base/buf.h"
#include "base/error.h"
#include "base/part.h"
#include "base/strset.h"
#include "io/shard.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <locale.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct dfm_done_keys {
    char **keys; /* sorted by key_cmp: the keys of one base are adjacent */
    size_t n, cap;
    dfm_strset frontier; /* bases */
    int shards;
};

/* '@' sorts before every other byte, so "E", "E@c1", "E@f3" come before "E0" or "E%2E". */
static int key_cmp(const char *a, const char *b)
{
    for (;; a++, b++) {
        int x = *a == '@' ? 1 : (unsigned char)*a, y = *b == '@' ? 1 : (unsigned char)*b;
        if (x != y || !x) return x - y;
    }
}

static int key_cmp_p(const void *a, const void *b)
{
    return key_cmp(*(char *const *)a, *(char *const *)b);
}

static int add_key(dfm_done_keys *d, const char *key, size_t len)
{
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 1024;
        char **k = dfm_realloc(d->keys, cap * sizeof *k);
        if (!k) return DFM_E_NOMEM;
        d->keys = k, d->cap = cap;
    }
    if (!(d->keys[d->n] = dfm_strndup(key, len))) return DFM_E_NOMEM;
    d->n++;
    return 0;
}

/* The key of a member name, as the WebDataset reader splits it: last path component up to its
 * first dot; 0 length for names to skip (no dot, `__*__` metadata). */
static size_t member_key(const char *name, const char **key)
{
    const char *last = strrchr(name, '/');
    last = last ? last + 1 : name;
    if (name[0] == '_' && name[1] == '_') return 0;
    const char *dot = strchr(last, '.');
    *key = last;
    return dot && dot > last ? (size_t)(dot - last) : 0;
}

/* Add the keys of one shard; *last gets its last key (malloc'd, NULL when it holds none). */
static int read_shard(dfm_done_keys *d, const char *path, char **last)
{
    *last = NULL;
    /* names are UTF-8 whatever the caller's locale (as in stream_tar.c) */
    locale_t utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
    locale_t old = utf8 ? uselocale(utf8) : (locale_t)0;
    struct archive *a = archive_read_new();
    int rc = a ? 0 : DFM_E_NOMEM;
    if (!rc) {
        archive_read_support_format_tar(a);
        archive_read_support_filter_zstd(a);
        if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK)
            rc = dfm_fail(DFM_E_IO, "cannot read shard '%s': %s", path, archive_error_string(a));
    }
    struct archive_entry *e;
    const char *prev = NULL;
    size_t prev_len = 0;
    while (!rc) {
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF) break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            rc = dfm_fail(DFM_E_FORMAT, "shard '%s' cannot be listed: %s", path, archive_error_string(a));
            break;
        }
        const char *name = archive_entry_pathname(e), *key = NULL;
        size_t len = name && archive_entry_filetype(e) == AE_IFREG ? member_key(name, &key) : 0;
        /* adjacent members with the same key are one sample */
        if (len && !(prev && len == prev_len && !memcmp(prev, key, len))) {
            rc = add_key(d, key, len);
            if (!rc) prev = d->keys[d->n - 1], prev_len = len;
        }
        if (!rc && archive_read_data_skip(a) != ARCHIVE_OK)
            rc = dfm_fail(DFM_E_FORMAT, "shard '%s' cannot be listed: %s", path, archive_error_string(a));
    }
    if (a) archive_read_free(a);
    if (old) uselocale(old);
    if (utf8) freelocale(utf8);
    if (!rc && prev && !(*last = dfm_strndup(prev, prev_len))) rc = DFM_E_NOMEM;
    if (!rc) d->shards++;
    return rc;
}

static int is_shard_name(const char *nm)
{
    size_t n = strlen(nm);
    return (n > 4 && !strcmp(nm + n - 4, ".tar")) || (n > 8 && !strcmp(nm + n - 8, ".tar.zst"));
}

/* A series' frontier candidate: the highest-numbered shard of one stem in one directory. */
typedef struct {
    char *stem, *last;
    unsigned long long number;
} series_top;

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The shards of one directory; bucket and part directories below it when depth allows. */
static int scan_dir(dfm_done_keys *d, const char *dir, int depth)
{
    DIR *dd = opendir(dir);
    if (!dd) return errno == ENOENT ? 0 : dfm_fail(DFM_E_IO, "cannot read directory '%s': %s", dir,
                                                   strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    while (!rc && (e = readdir(dd))) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **p = dfm_realloc(names, cap * sizeof *p);
            if (!p) rc = DFM_E_NOMEM;
            else names = p;
        }
        if (!rc && !(names[n++] = dfm_strdup(e->d_name))) rc = DFM_E_NOMEM, n--;
    }
    closedir(dd);
    if (n > 1) qsort(names, n, sizeof *names, name_cmp);
    series_top *tops = NULL;
    int ntops = 0;
    char path[8192];
    for (size_t i = 0; i < n && !rc; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        struct stat sb;
        if (stat(path, &sb) != 0) continue;
        dfm_part p;
        if (S_ISDIR(sb.st_mode)) {
            if ((depth < 2 && dfm_shard_is_bucket_dir(names[i])) ||
                (depth == 0 && dfm_part_from_name(names[i], &p)))
                rc = scan_dir(d, path, dfm_shard_is_bucket_dir(names[i]) ? 2 : 1);
            continue;
        }
        if (!S_ISREG(sb.st_mode) || !is_shard_name(names[i])) continue;
        char *last = NULL;
        rc = read_shard(d, path, &last);
        /* its series: the name without its last run of digits, and that number */
        const char *nm = names[i], *end = nm + strlen(nm), *dig = NULL;
        for (const char *c = nm; c < end; c++)
            if (*c >= '0' && *c <= '9' && (c == nm || c[-1] < '0' || c[-1] > '9')) dig = c;
        char stem[4096];
        unsigned long long num = 0;
        if (dig) {
            const char *c = dig;
            while (*c >= '0' && *c <= '9') num = num * 10 + (unsigned)(*c++ - '0');
            snprintf(stem, sizeof stem, "%.*s#%s", (int)(dig - nm), nm, c);
        } else {
            snprintf(stem, sizeof stem, "%s", nm);
        }
        int t = 0;
        while (t < ntops && strcmp(tops[t].stem, stem)) t++;
        if (!rc && t == ntops) {
            series_top *g = dfm_realloc(tops, (size_t)(ntops + 1) * sizeof *g);
            if (!g) rc = DFM_E_NOMEM;
            else tops = g, tops[ntops++] = (series_top){dfm_strdup(stem), NULL, 0};
        }
        if (!rc && last && (!tops[t].last || num >= tops[t].number)) {
            free(tops[t].last);
            tops[t].last = last, tops[t].number = num, last = NULL;
        }
        free(last);
    }
    for (int t = 0; t < ntops; t++) {
        if (!rc && tops[t].last) {
            char *at = strchr(tops[t].last, '@');
            if (at) *at = 0;
            if (dfm_strset_add(&d->frontier, tops[t].last) < 0) rc = DFM_E_NOMEM;
        }
        free(tops[t].stem), free(tops[t].last);
    }
    free(tops);
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return rc;
}

int dfm_done_keys_load(dfm_done_keys **out, const char *dir)
{
    *out = NULL;
    dfm_done_keys *d = dfm_calloc(1, sizeof *d);
    if (!d) return DFM_E_NOMEM;
    int rc = scan_dir(d, dir, 0);
    if (rc) {
        dfm_done_keys_free(d);
        return rc;
    }
    if (d->n > 1) qsort(d->keys, d->n, sizeof *d->keys, key_cmp_p);
    *out = d;
    return 0;
}

void dfm_done_keys_free(dfm_done_keys *d)
{
    if (!d) return;
    for (size_t i = 0; i < d->n; i++) free(d->keys[i]);
    free(d->keys);
    dfm_strset_free(&d->frontier);
    free(d);
}

uint64_t dfm_done_keys_count(const dfm_done_keys *d) { return d->n; }
int dfm_done_keys_shards(const dfm_done_keys *d) { return d->shards; }
const char *dfm_done_keys_at(const dfm_done_keys *d, size_t i) { return d->keys[i]; }

/* First index whose key is not below key (key_cmp order). */
static size_t lower_bound(const dfm_done_keys *d, const char *key)
{
    size_t lo = 0, hi = d->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (key_cmp(d->keys[mid], key) < 0) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

int dfm_done_keys_has(const dfm_done_keys *d, const char *key)
{
    size_t i = lower_bound(d, key);
    return i < d->n && !strcmp(d->keys[i], key);
}

size_t dfm_done_keys_base(const dfm_done_keys *d, const char *base, size_t *first, int *frontier)
{
    size_t len = strlen(base), i = lower_bound(d, base), j = i;
    while (j < d->n && !strncmp(d->keys[j], base, len) && (d->keys[j][len] == 0 || d->keys[j][len] == '@'))
        j++;
    if (first) *first = i;
    if (frontier) *frontier = dfm_strset_has(&d->frontier, base);
    return j - i;
}
