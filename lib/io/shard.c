/* shard.c — numbered tar shards with an index (see shard.h).
 * ref: webdataset writer.py ShardWriter (pattern % number, maxcount/maxsize roll-over);
 *      wids_index.py (index layout). */
#include "io/shard.h"
#include "base/buf.h"
#include "base/error.h"
#include "base/json.h"
#include "io/stream.h"

#include <cjson/cJSON.h>
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
};

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

static int mkdirs(const char *dir)
{
    char *d = dfm_strdup(dir);
    if (!d) return DFM_E_NOMEM;
    for (char *p = d + 1; ; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(d, 0755) != 0 && errno != EEXIST) {
                int rc = dfm_fail(DFM_E_IO, "cannot create directory '%s': %s", d, strerror(errno));
                free(d);
                return rc;
            }
            *p = c;
            if (!c) break;
        }
    }
    free(d);
    return 0;
}

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
        dfm_sharder_close(s, 1, NULL);
        return dfm_fail(DFM_E_NOMEM, "out of memory");
    }
    if ((rc = mkdirs(s->dir))) {
        dfm_sharder_close(s, 1, NULL);
        return rc;
    }
    *out = s;
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

static int write_index(dfm_sharder *s)
{
    qsort(s->done, (size_t)s->ndone, sizeof *s->done, cmp_done);
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
    cJSON_AddItemToObject(d, "buckets", cJSON_Duplicate(s->buckets, 1));
    cJSON_AddItemToObject(d, "fields", cJSON_Duplicate(s->fields, 1));
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

/* Close the open shard of a series; on success rename it into place and index it. */
static int finish_shard(dfm_sharder *s, series *x, int failed)
{
    if (!x->w) return 0;
    int rc = dfm_writer_close(x->w);
    x->w = NULL;
    if (!rc && !failed && fsync(x->fd) != 0)
        rc = dfm_fail(DFM_E_IO, "cannot write '%s': %s", x->tmp, strerror(errno));
    if (close(x->fd) != 0 && !rc)
        rc = dfm_fail(DFM_E_IO, "cannot write '%s': %s", x->tmp, strerror(errno));
    x->fd = -1;
    if (!rc && !failed) {
        if (rename(x->tmp, x->path) != 0)
            rc = dfm_fail(DFM_E_IO, "cannot rename '%s': %s", x->tmp, strerror(errno));
    }
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
            rc = d->url && d->bucket ? write_index(s) : DFM_E_NOMEM;
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
        int rc = mkdirs(path);
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
    x->fd = open(x->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (x->fd < 0) return dfm_fail(DFM_E_IO, "cannot create '%s': %s", x->tmp, strerror(errno));
    size_t pl = strlen(path);
    int zst = pl > 8 && !strcmp(path + pl - 8, ".tar.zst");
    return dfm_writer_open_fd(&x->w, x->fd, DFM_FRAMING_TAR, zst ? (s->o.zstd_level ? s->o.zstd_level : 3) : 0);
}

int dfm_sharder_put(dfm_sharder *s, const dfm_sample *x)
{
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
    if (rc) return rc;
    se->count++;
    count_in(se->pend_buckets, bucket);
    for (int i = 0; i < x->n; i++) count_in(se->pend_fields, x->fields[i].name);
    return 0;
}

int dfm_sharder_close(dfm_sharder *s, int failed, int *nshards)
{
    int rc = 0;
    for (int i = 0; i < s->nser; i++) {
        int r = finish_shard(s, &s->ser[i], failed);
        if (r && !rc) rc = r;
        free(s->ser[i].bucket);
    }
    if (!rc && !failed && s->ndone == 0 && s->dir) rc = write_index(s);
    if (nshards) *nshards = s->ndone;
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
