/* shard.c — numbered tar shards with an index (see shard.h): the series on disk (refusing to
 * mix with an earlier run's), rolling shards by count and size, one series per bucket, the index.
 * Not here: the tar framing (stream_tar.c), the loop that feeds samples (stream_map.c).
 * ref: webdataset writer.py ShardWriter (pattern % number, maxcount/maxsize roll-over);
 *      wids_index.py (index layout). */
#include "io/shard.h"
#include "base/buf.h"
#include "base/error.h"
#include "base/json.h"
#include "io/stream.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    char *bucket;      /* series name ("" when not by bucket) */
    int next_number;   /* next shard number in this series */
    dfm_writer *w;     /* open shard or NULL */
    int fd;
    char *path, *tmp;  /* of the open shard */
    uint64_t count;    /* samples in the open shard */
    cJSON *pend_buckets, *pend_fields; /* histograms of the open shard, merged when it completes */
} series;

typedef struct {
    char *url; /* relative to the index directory */
    uint64_t nsamples, filesize;
    char *bucket;
} done_shard;

struct dfm_sharder {
    dfm_shard_opts o;
    char *dir;    /* directory of the pattern ("." if none) */
    char *base;   /* file-name part of the pattern */
    series *ser;
    int nser;
    done_shard *done;
    int ndone;
    cJSON *buckets, *fields; /* histograms over the samples of complete shards */
    uint64_t total;
    int kept_shards;      /* --resume: of the earlier run */
    uint64_t kept_samples;
    int ready; /* dfm_sharder_new succeeded: close writes the index */
};

static int is_zst(const char *p)
{
    size_t n = strlen(p);
    return n > 8 && !strcmp(p + n - 8, ".tar.zst");
}

static int check_pattern(const char *p)
{
    int convs = 0;
    for (const char *c = p; *c; c++) {
        if (*c != '%') continue;
        if (c[1] == '%') {
            c++;
            continue;
        }
        c++;
        while (*c >= '0' && *c <= '9') c++;
        if (*c != 'd') return dfm_fail(DFM_E_ARG, "pattern '%s': only %%d-style conversions are "
                                                  "allowed (e.g. %%06d)", p);
        convs++;
    }
    if (convs != 1)
        return dfm_fail(DFM_E_ARG, "pattern '%s' needs exactly one shard number such as %%06d", p);
    size_t n = strlen(p);
    if (!(n > 4 && !strcmp(p + n - 4, ".tar")) && !(n > 8 && !strcmp(p + n - 8, ".tar.zst")))
        return dfm_fail(DFM_E_ARG, "pattern '%s' must end in .tar or .tar.zst", p);
    if (strchr(p, '/') && !strchr(strrchr(p, '/'), '%'))
        return dfm_fail(DFM_E_ARG, "pattern '%s': the shard number belongs in the file name", p);
    return 0;
}

/* ---- the series on disk ---------------------------------------------------------------- */

/* A pattern's file name split around its number: "train-%06d.tar" -> "train-", "" (the
 * compression suffix .tar/.tar.zst is not part of the stem: both belong to one series). */
typedef struct {
    char pre[1024], post[1024];
} stem;

static void unescape_pct(char *out, size_t n, const char *from, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 1 < n; i++) {
        out[o++] = from[i];
        if (from[i] == '%' && i + 1 < len && from[i + 1] == '%') i++;
    }
    out[o] = 0;
}

static void split_base(const char *base, stem *st)
{
    const char *c = base;
    for (; *c; c++) { /* the one conversion check_pattern allowed */
        if (*c != '%') continue;
        if (c[1] == '%') {
            c++;
            continue;
        }
        break;
    }
    unescape_pct(st->pre, sizeof st->pre, base, (size_t)(c - base));
    const char *d = c + 1;
    while (*d >= '0' && *d <= '9') d++;
    d++; /* the 'd' */
    size_t len = strlen(d);
    if (len >= 8 && !strcmp(d + len - 8, ".tar.zst")) len -= 8;
    else if (len >= 4 && !strcmp(d + len - 4, ".tar")) len -= 4;
    unescape_pct(st->post, sizeof st->post, d, len);
}

/* A file of the series: PRE DIGITS POST (.tar|.tar.zst) [.tmp] */
static int in_series(const stem *st, const char *name)
{
    size_t np = strlen(st->pre);
    if (strncmp(name, st->pre, np)) return 0;
    const char *c = name + np, *d = c;
    while (*d >= '0' && *d <= '9') d++;
    if (d == c) return 0;
    size_t nq = strlen(st->post);
    if (strncmp(d, st->post, nq)) return 0;
    d += nq;
    return !strcmp(d, ".tar") || !strcmp(d, ".tar.zst") || !strcmp(d, ".tar.tmp") ||
           !strcmp(d, ".tar.zst.tmp");
}

/* A directory dfm_shard_bucket_name makes: WxHxF or "unbucketed". */
int dfm_shard_is_bucket_dir(const char *name)
{
    if (!strcmp(name, "unbucketed")) return 1;
    int w, h, f, used = 0;
    return sscanf(name, "%d%*[x]%d%*[x]%d%n", &w, &h, &f, &used) == 3 && name[used] == 0 &&
           name[0] >= '0' && name[0] <= '9';
}

static int remove_file(void *ctx, const char *path)
{
    if (unlink(path) != 0 && errno != ENOENT)
        return dfm_fail(DFM_E_IO, "cannot remove '%s': %s", path, strerror(errno));
    return 0;
}

/* Visit the series' files in dir (and its bucket directories when depth == 0): fn(path).
 * Returns the number visited or < 0. */
static int scan(const char *dir, const stem *st, int depth, int (*fn)(void *, const char *),
                void *ctx)
{
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? 0 : dfm_fail(DFM_E_IO, "cannot read directory '%s': %s", dir,
                                                  strerror(errno));
    int count = 0, rc = 0;
    char path[8192];
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        const char *nm = e->d_name;
        snprintf(path, sizeof path, "%s/%s", dir, nm);
        int mine = in_series(st, nm) ||
                   (depth == 0 && (!strcmp(nm, "index.json") || !strcmp(nm, "index.json.tmp")));
        if (mine) {
            rc = fn(ctx, path);
            count++;
        } else if (depth == 0 && dfm_shard_is_bucket_dir(nm)) {
            struct stat sb;
            if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
                int n = scan(path, st, 1, fn, ctx);
                if (n < 0) rc = n;
                else count += n;
                if (n > 0 && fn == remove_file) rmdir(path); /* emptied: gone; kept when not empty */
            }
        }
    }
    closedir(d);
    return rc < 0 ? rc : count;
}

static int note_first(void *ctx, const char *path)
{
    char *first = ctx;
    if (!first[0] || strcmp(path, first) < 0) snprintf(first, 4096, "%s", path);
    return 0;
}

static void pattern_dir(const char *pattern, char *dir, size_t n, const char **base)
{
    const char *slash = strrchr(pattern, '/');
    if (!slash) snprintf(dir, n, ".");
    else snprintf(dir, n, "%.*s", (int)(slash - pattern) + (slash == pattern), pattern);
    *base = slash ? slash + 1 : pattern;
}

int dfm_shard_existing(const char *pattern, char *first, size_t n)
{
    int rc = check_pattern(pattern);
    if (rc) return rc;
    char dir[4096], one[4096] = "";
    const char *base;
    pattern_dir(pattern, dir, sizeof dir, &base);
    stem st;
    split_base(base, &st);
    int count = scan(dir, &st, 0, note_first, one);
    if (first && n) snprintf(first, n, "%s", one);
    return count;
}

static int resume_series(dfm_sharder *s);
static int write_index(dfm_sharder *s, int complete);

int dfm_sharder_new(dfm_sharder **out, const dfm_shard_opts *o)
{
    *out = NULL;
    int rc = check_pattern(o->pattern);
    if (rc) return rc;
    dfm_sharder *s = dfm_calloc(1, sizeof *s);
    if (!s) return DFM_E_NOMEM;
    s->o = *o;
    if (!s->o.max_count) s->o.max_count = 1000;
    if (!s->o.max_size) s->o.max_size = 1ULL << 30;
    const char *slash = strrchr(o->pattern, '/');
    s->dir = slash ? dfm_strndup(o->pattern, (size_t)(slash - o->pattern) + (slash == o->pattern))
                   : dfm_strdup(".");
    s->base = dfm_strdup(slash ? slash + 1 : o->pattern);
    s->buckets = cJSON_CreateObject();
    s->fields = cJSON_CreateObject();
    if (!s->dir || !s->base || !s->buckets || !s->fields) {
        dfm_sharder_close(s, 1, NULL, NULL);
        return dfm_fail(DFM_E_NOMEM, "out of memory");
    }
    /* never mix two runs: the series must be empty, or emptied by overwrite */
    char first[4096];
    int n = dfm_shard_existing(o->pattern, first, sizeof first);
    if (n > 0 && o->resume) {
        rc = resume_series(s);
        n = 0;
    }
    if (n > 0 && o->overwrite) {
        stem st;
        split_base(s->base, &st);
        n = scan(s->dir, &st, 0, remove_file, NULL);
        if (n > 0) n = 0;
    }
    if (n == 1)
        rc = dfm_fail(DFM_E_IO, "'%s' already exists, from an earlier run of the series '%s'",
                      first, s->base);
    else if (n > 1)
        rc = dfm_fail(DFM_E_IO, "'%s' and %d more files already exist, from an earlier run of the "
                      "series '%s'", first, n - 1, s->base);
    if (!rc && n < 0) rc = n;
    if (!rc) rc = dfm_mkdirs(s->dir);
    if (!rc) rc = write_index(s, 0); /* the options, from the start */
    if (rc) {
        dfm_sharder_close(s, 1, NULL, NULL);
        return rc;
    }
    s->ready = 1;
    *out = s;
    return 0;
}

int dfm_shard_part_pattern(const char *pattern, const dfm_part *p, char *out, size_t n)
{
    char name[64];
    int len = !dfm_part_split(p) ? snprintf(out, n, "%s", pattern) : 0;
    if (dfm_part_split(p)) {
        if (dfm_part_name(p, name, sizeof name) < 0) return DFM_E_ARG;
        const char *slash = strrchr(pattern, '/');
        if (!slash) len = snprintf(out, n, "%s/%s", name, pattern);
        else len = snprintf(out, n, "%.*s/%s%s", (int)(slash - pattern), pattern, name, slash);
    }
    if (len < 0 || (size_t)len >= n) return dfm_fail(DFM_E_ARG, "pattern '%s' is too long", pattern);
    return 0;
}

int dfm_shard_bucket_name(const dfm_sample *x, char *out, size_t n)
{
    snprintf(out, n, "unbucketed");
    cJSON *j;
    if (dfm_sample_json(x, &j)) return 0;
    cJSON *b = cJSON_GetObjectItemCaseSensitive(j, "bucket");
    cJSON *w = cJSON_GetObjectItemCaseSensitive(b, "width");
    cJSON *h = cJSON_GetObjectItemCaseSensitive(b, "height");
    cJSON *f = cJSON_GetObjectItemCaseSensitive(b, "frames");
    if (cJSON_IsNumber(w) && cJSON_IsNumber(h) && cJSON_IsNumber(f))
        snprintf(out, n, "%dx%dx%d", w->valueint, h->valueint, f->valueint);
    cJSON_Delete(j);
    return 0;
}

static series *find_series(dfm_sharder *s, const char *bucket)
{
    for (int i = 0; i < s->nser; i++)
        if (!strcmp(s->ser[i].bucket, bucket)) return &s->ser[i];
    series *n = dfm_realloc(s->ser, (size_t)(s->nser + 1) * sizeof *n);
    if (!n) return NULL;
    s->ser = n;
    series *x = &s->ser[s->nser];
    memset(x, 0, sizeof *x);
    x->fd = -1;
    if (!(x->bucket = dfm_strdup(bucket))) return NULL;
    s->nser++;
    return x;
}

/* Compare shard URLs for the index order (wids sorts by URL). */
static int cmp_done(const void *a, const void *b)
{
    return strcmp(((const done_shard *)a)->url, ((const done_shard *)b)->url);
}

/* complete: 1 only in the clean close; while running and after a failure the index lists the
 * shards completed so far and says "complete": false. */
static int write_index(dfm_sharder *s, int complete)
{
    if (s->ndone > 1) qsort(s->done, (size_t)s->ndone, sizeof *s->done, cmp_done);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "__kind__", "wids-shard-index-v1");
    cJSON_AddNumberToObject(j, "wids_version", 1);
    cJSON_AddStringToObject(j, "name", s->base);
    cJSON *list = cJSON_AddArrayToObject(j, "shardlist");
    for (int i = 0; i < s->ndone; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "url", s->done[i].url);
        cJSON_AddNumberToObject(e, "nsamples", (double)s->done[i].nsamples);
        cJSON_AddNumberToObject(e, "filesize", (double)s->done[i].filesize);
        if (s->o.by_bucket) cJSON_AddStringToObject(e, "bucket", s->done[i].bucket);
        cJSON_AddItemToArray(list, e);
    }
    cJSON *d = cJSON_AddObjectToObject(j, "dfm");
    cJSON_AddNumberToObject(d, "samples", (double)s->total);
    cJSON_AddNumberToObject(d, "shards", s->ndone);
    cJSON_AddBoolToObject(d, "complete", complete);
    cJSON_AddItemToObject(d, "buckets", cJSON_Duplicate(s->buckets, 1));
    cJSON_AddItemToObject(d, "fields", cJSON_Duplicate(s->fields, 1));
    /* what --resume checks: a series continued with other options would not be one run's */
    cJSON *op = cJSON_AddObjectToObject(d, "options");
    cJSON_AddNumberToObject(op, "max_count", (double)s->o.max_count);
    cJSON_AddNumberToObject(op, "max_size", (double)s->o.max_size);
    cJSON_AddBoolToObject(op, "by_bucket", s->o.by_bucket);
    if (is_zst(s->base)) cJSON_AddNumberToObject(op, "zstd_level", s->o.zstd_level ? s->o.zstd_level : 3);
    char *txt = dfm_json_pretty(j);
    cJSON_Delete(j);
    if (!txt) return dfm_fail(DFM_E_NOMEM, "out of memory");
    size_t n = strlen(s->dir) + 16;
    char *path = dfm_malloc(n);
    int rc = path ? 0 : DFM_E_NOMEM;
    if (!rc) {
        snprintf(path, n, "%s/index.json", s->dir);
        rc = dfm_write_file_atomic(path, txt, strlen(txt));
    }
    free(path);
    free(txt);
    return rc;
}

static void count_in(cJSON *hist, const char *name)
{
    cJSON *c = cJSON_GetObjectItemCaseSensitive(hist, name);
    if (c) cJSON_SetNumberValue(c, c->valuedouble + 1);
    else cJSON_AddNumberToObject(hist, name, 1);
}

static void merge_hist(cJSON *into, const cJSON *from)
{
    for (const cJSON *e = from ? from->child : NULL; e; e = e->next) {
        cJSON *c = cJSON_GetObjectItemCaseSensitive(into, e->string);
        if (c) cJSON_SetNumberValue(c, c->valuedouble + e->valuedouble);
        else cJSON_AddNumberToObject(into, e->string, e->valuedouble);
    }
}

/* ---- --resume: continuing an earlier run's series ------------------------------------- */

typedef struct {
    char **v;
    int n;
} path_list;

static int collect_path(void *ctx, const char *path)
{
    path_list *l = ctx;
    char **p = dfm_realloc(l->v, (size_t)(l->n + 1) * sizeof *p);
    if (!p) return DFM_E_NOMEM;
    l->v = p;
    if (!(p[l->n] = dfm_strdup(path))) return DFM_E_NOMEM;
    l->n++;
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf);
}

/* The index an earlier run wrote must name this pattern and these options. */
static int check_resumed(dfm_sharder *s, const cJSON *idx, const char *path)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(idx, "name");
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(idx, "dfm");
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(d, "options");
    if (!cJSON_IsString(name) || !cJSON_IsObject(op))
        return dfm_fail(DFM_E_ARG, "cannot resume from '%s': it records no pattern or no options "
                        "(not written by this dfm-shard)", path);
    if (strcmp(name->valuestring, s->base))
        return dfm_fail(DFM_E_ARG, "cannot resume from '%s': the series was written with the pattern "
                        "'%s', this run has '%s'", path, name->valuestring, s->base);
    const struct {
        const char *key, *flag;
        double now;
        int used;
    } opts[] = {{"max_count", "--max-count", (double)s->o.max_count, 1},
                {"max_size", "--max-size", (double)s->o.max_size, 1},
                {"by_bucket", "--by-bucket", s->o.by_bucket, 1},
                {"zstd_level", "--zstd-level", s->o.zstd_level ? s->o.zstd_level : 3, is_zst(s->base)}};
    for (size_t i = 0; i < sizeof opts / sizeof *opts; i++) {
        if (!opts[i].used) continue;
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(op, opts[i].key);
        double was = cJSON_IsBool(v) ? cJSON_IsTrue(v) : cJSON_IsNumber(v) ? v->valuedouble : -1;
        if (was == opts[i].now) continue;
        if (!strcmp(opts[i].key, "by_bucket"))
            return dfm_fail(DFM_E_ARG, "cannot resume from '%s': the series was written %s "
                            "--by-bucket, this run %s it", path, was > 0 ? "with" : "without",
                            opts[i].now > 0 ? "has" : "lacks");
        return dfm_fail(DFM_E_ARG, "cannot resume from '%s': the series was written with %s %.0f, "
                        "this run has %s %.0f", path, opts[i].flag, was, opts[i].flag, opts[i].now);
    }
    return 0;
}

/* The counts of one kept shard, read from the shard itself. */
static int count_shard(dfm_sharder *s, const char *path, uint64_t *nsamples)
{
    dfm_reader *r;
    int rc = dfm_reader_open(&r, path, 0);
    if (rc) return rc;
    dfm_sample x;
    dfm_sample_init(&x);
    char bucket[64];
    *nsamples = 0;
    while ((rc = dfm_reader_next(r, &x)) == 1) {
        ++*nsamples;
        dfm_shard_bucket_name(&x, bucket, sizeof bucket);
        count_in(s->buckets, bucket);
        for (int i = 0; i < x.n; i++) count_in(s->fields, x.fields[i].name);
    }
    dfm_sample_free(&x);
    dfm_reader_close(r);
    return rc < 0 ? rc : 0;
}

/* Keep the complete shards of the series on disk, remove its .tmp files, go on numbering. */
static int resume_series(dfm_sharder *s)
{
    stem st;
    split_base(s->base, &st);
    path_list all = {0};
    int rc = scan(s->dir, &st, 0, collect_path, &all);
    if (rc > 0) rc = 0;
    if (all.n > 1) qsort(all.v, (size_t)all.n, sizeof *all.v, cmp_str);
    char ipath[4096];
    snprintf(ipath, sizeof ipath, "%s/index.json", s->dir);
    int kept = 0;
    for (int i = 0; i < all.n && !rc; i++) {
        char *p = all.v[i];
        all.v[i] = NULL;
        if (!ends_with(p, ".tmp") && !ends_with(p, "/index.json")) {
            all.v[kept++] = p; /* a complete shard */
            continue;
        }
        if (ends_with(p, ".tmp")) rc = remove_file(NULL, p); /* an unfinished shard */
        free(p);
    }
    cJSON *idx = NULL;
    dfm_buf b = {0};
    if (!rc && access(ipath, F_OK) == 0) {
        rc = dfm_read_file(ipath, 256u << 20, &b);
        if (!rc && !(idx = cJSON_ParseWithLength((const char *)b.data, b.len)))
            rc = dfm_fail(DFM_E_FORMAT, "cannot resume from '%s': not valid JSON", ipath);
        if (!rc) rc = check_resumed(s, idx, ipath);
    } else if (!rc && kept > 0) {
        rc = dfm_fail(DFM_E_ARG, "cannot resume the series '%s' in '%s': it has %d complete shard%s "
                      "but no index.json, which records the options they were written with",
                      s->base, s->dir, kept, kept == 1 ? "" : "s");
    }
    /* the index's counts are used when it lists exactly the shards on disk, with their sizes */
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(idx, "dfm");
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(idx, "shardlist");
    int trust = cJSON_GetArraySize(list) == kept;
    for (int i = 0; i < kept && !rc; i++) {
        const char *url = all.v[i] + strlen(s->dir) + 1, *slash = strrchr(url, '/');
        const char *file = slash ? slash + 1 : url;
        char bucket[256] = "";
        if (s->o.by_bucket && slash) snprintf(bucket, sizeof bucket, "%.*s", (int)(slash - url), url);
        series *x = find_series(s, bucket);
        done_shard *dd = dfm_realloc(s->done, (size_t)(s->ndone + 1) * sizeof *dd);
        if (!x || !dd) {
            rc = DFM_E_NOMEM;
            break;
        }
        s->done = dd;
        dd = &s->done[s->ndone++];
        memset(dd, 0, sizeof *dd);
        dd->url = dfm_strdup(url);
        dd->bucket = dfm_strdup(x->bucket);
        if (!dd->url || !dd->bucket) rc = DFM_E_NOMEM;
        int num = atoi(file + strlen(st.pre));
        if (num + 1 > x->next_number) x->next_number = num + 1;
        struct stat sb;
        dd->filesize = stat(all.v[i], &sb) == 0 ? (uint64_t)sb.st_size : 0;
        int listed = 0;
        for (const cJSON *e = list ? list->child : NULL; e && !listed; e = e->next) {
            const cJSON *u = cJSON_GetObjectItemCaseSensitive(e, "url");
            const cJSON *ns = cJSON_GetObjectItemCaseSensitive(e, "nsamples");
            const cJSON *fs = cJSON_GetObjectItemCaseSensitive(e, "filesize");
            if (cJSON_IsString(u) && !strcmp(u->valuestring, url) && cJSON_IsNumber(ns) &&
                cJSON_IsNumber(fs) && (uint64_t)fs->valuedouble == dd->filesize)
                listed = 1, dd->nsamples = (uint64_t)ns->valuedouble;
        }
        trust = trust && listed;
    }
    if (!rc && trust && kept > 0) { /* the index's histograms cover exactly these shards */
        merge_hist(s->buckets, cJSON_GetObjectItemCaseSensitive(d, "buckets"));
        merge_hist(s->fields, cJSON_GetObjectItemCaseSensitive(d, "fields"));
        for (int i = 0; i < s->ndone; i++) s->total += s->done[i].nsamples;
    } else if (!rc && kept > 0) { /* a shard completed after the index was written: count them all */
        for (int i = 0; i < s->ndone && !rc; i++) {
            rc = count_shard(s, all.v[i], &s->done[i].nsamples);
            s->total += s->done[i].nsamples;
        }
    }
    s->kept_shards = s->ndone;
    s->kept_samples = s->total;
    cJSON_Delete(idx);
    dfm_buf_free(&b);
    for (int i = 0; i < all.n; i++) free(all.v[i]);
    free(all.v);
    return rc;
}

/* Close the open shard of a series; on success rename it into place and index it. A shard
 * that holds no sample is never kept (it cannot happen: samples are checked before a shard is
 * opened for them). */
static int finish_shard(dfm_sharder *s, series *x, int failed)
{
    if (!x->w) return 0;
    if (x->count == 0) failed = 1;
    int rc = 0;
    if (failed) dfm_writer_abort(x->w);
    else rc = dfm_writer_close(x->w);
    x->w = NULL;
    if (!rc && !failed && fsync(x->fd) != 0)
        rc = dfm_fail(DFM_E_IO, "cannot write '%s': %s", x->path, strerror(errno));
    if (close(x->fd) != 0 && !rc && !failed)
        rc = dfm_fail(DFM_E_IO, "cannot write '%s': %s", x->path, strerror(errno));
    x->fd = -1;
    if (!rc && !failed && rename(x->tmp, x->path) != 0)
        rc = dfm_fail(DFM_E_IO, "cannot rename '%s' into place: %s", x->path, strerror(errno));
    if (!rc && !failed) {
        struct stat st;
        done_shard *d = dfm_realloc(s->done, (size_t)(s->ndone + 1) * sizeof *d);
        if (!d) rc = DFM_E_NOMEM;
        else {
            s->done = d;
            d = &s->done[s->ndone++];
            d->url = dfm_strdup(x->path + strlen(s->dir) + 1);
            d->bucket = dfm_strdup(x->bucket);
            d->nsamples = x->count;
            merge_hist(s->buckets, x->pend_buckets);
            merge_hist(s->fields, x->pend_fields);
            s->total += x->count;
            d->filesize = stat(x->path, &st) == 0 ? (uint64_t)st.st_size : 0;
            rc = d->url && d->bucket ? write_index(s, 0) : DFM_E_NOMEM;
        }
    }
    if (failed || rc) unlink(x->tmp);
    free(x->path);
    free(x->tmp);
    x->path = x->tmp = NULL;
    x->count = 0;
    cJSON_Delete(x->pend_buckets);
    cJSON_Delete(x->pend_fields);
    x->pend_buckets = x->pend_fields = NULL;
    return rc;
}

static int open_shard(dfm_sharder *s, series *x)
{
    char name[4096], path[8192];
    snprintf(name, sizeof name, s->base, x->next_number++);
    if (s->o.by_bucket) {
        snprintf(path, sizeof path, "%s/%s", s->dir, x->bucket);
        int rc = dfm_mkdirs(path);
        if (rc) return rc;
        snprintf(path, sizeof path, "%s/%s/%s", s->dir, x->bucket, name);
    } else {
        snprintf(path, sizeof path, "%s/%s", s->dir, name);
    }
    x->path = dfm_strdup(path);
    size_t n = strlen(path) + 5;
    x->tmp = dfm_malloc(n);
    if (!x->path || !x->tmp) return DFM_E_NOMEM;
    snprintf(x->tmp, n, "%s.tmp", path);
    x->pend_buckets = cJSON_CreateObject();
    x->pend_fields = cJSON_CreateObject();
    if (!x->pend_buckets || !x->pend_fields) return dfm_fail(DFM_E_NOMEM, "out of memory");
    /* O_EXCL: a .tmp that exists belongs to another dfm-shard writing this series now */
    x->fd = open(x->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (x->fd < 0)
        return dfm_fail(DFM_E_IO, "cannot create '%s': %s%s", x->path, strerror(errno),
                        errno == EEXIST ? " (its .tmp: is another dfm-shard writing there?)" : "");
    size_t pl = strlen(path);
    int zst = pl > 8 && !strcmp(path + pl - 8, ".tar.zst");
    int rc = dfm_writer_open_fd(&x->w, x->fd, DFM_FRAMING_TAR,
                                zst ? (s->o.zstd_level ? s->o.zstd_level : 3) : 0);
    if (!rc) dfm_writer_set_name(x->w, x->path);
    return rc;
}

int dfm_sharder_put(dfm_sharder *s, const dfm_sample *x)
{
    if (dfm_sample_check(x, DFM_FRAMING_TAR)) return DFM_E_SKIP; /* before any shard is touched */
    char bucket[64];
    dfm_shard_bucket_name(x, bucket, sizeof bucket);
    series *se = find_series(s, s->o.by_bucket ? bucket : "");
    if (!se) return DFM_E_NOMEM;
    uint64_t size = dfm_sample_bytes(x);
    int rc = 0;
    if (se->w && (se->count >= s->o.max_count ||
                  (se->count > 0 && dfm_writer_bytes(se->w) + size > s->o.max_size)))
        rc = finish_shard(s, se, 0);
    if (!rc && !se->w) rc = open_shard(s, se);
    if (!rc) rc = dfm_writer_put(se->w, x);
    if (rc) return rc == DFM_E_SKIP ? DFM_E_IO : rc; /* checked above: an output failure */
    se->count++;
    count_in(se->pend_buckets, bucket);
    for (int i = 0; i < x->n; i++) count_in(se->pend_fields, x->fields[i].name);
    return 0;
}

void dfm_sharder_kept(const dfm_sharder *s, int *nshards, uint64_t *nsamples)
{
    *nshards = s->kept_shards;
    *nsamples = s->kept_samples;
}

int dfm_sharder_close(dfm_sharder *s, int failed, int *nshards, uint64_t *nsamples)
{
    int rc = 0;
    for (int i = 0; i < s->nser; i++) {
        int r = finish_shard(s, &s->ser[i], failed || rc);
        if (r && !rc) rc = r;
        free(s->ser[i].bucket);
    }
    if (s->ready) {
        int r = write_index(s, !failed && !rc);
        if (r && !rc) rc = r;
    }
    if (nshards) *nshards = s->ndone;
    if (nsamples) *nsamples = s->total;
    for (int i = 0; i < s->ndone; i++) {
        free(s->done[i].url);
        free(s->done[i].bucket);
    }
    free(s->done);
    free(s->ser);
    free(s->dir);
    free(s->base);
    cJSON_Delete(s->buckets);
    cJSON_Delete(s->fields);
    free(s);
    return rc;
}
