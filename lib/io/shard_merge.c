/* shard_merge.c — one index.json over the shard indexes of a run split into parts
 * (dfm-shard --merge-index; see shard.h dfm_shard_merge_index). Not here: writing shards and
 * their per-part index (shard.c), reading an index for training (lib/data/train_data.c, which
 * takes shardlist[].url relative to the index's directory — what this writes).
 * ref: webdataset wids_index.py (the wids shard-index layout). */
#include "io/shard.h"
#include "base/buf.h"
#include "base/error.h"
#include "base/json.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    char *path;  /* the part directory as given (or found) */
    char *rel;   /* from the merged index's directory to it: "" (the same), "part-00000-of-00002" */
    dfm_part id; /* when its name is part-K-of-N */
    int named;
} part_dir;

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Components of an absolute canonical path: "/a/b" -> "a", "b" (pointers into p, lengths). */
static int components(const char *p, const char **c, size_t *len, int max)
{
    int n = 0;
    while (*p) {
        while (*p == '/') p++;
        if (!*p) break;
        if (n == max) return -1;
        c[n] = p;
        while (*p && *p != '/') p++;
        len[n] = (size_t)(p - c[n]);
        n++;
    }
    return n;
}

/* The path from directory `from` to `to` (both absolute and canonical, as realpath gives them):
 * "x/y" below it, "../x/y" beside it, "" when they are the same. NUL-terminated in out. */
static int relative(const char *from, const char *to, dfm_buf *out)
{
    enum { MAXC = 512 };
    const char *a[MAXC], *b[MAXC];
    size_t la[MAXC], lb[MAXC];
    int na = components(from, a, la, MAXC), nb = components(to, b, lb, MAXC), c = 0;
    if (na < 0 || nb < 0) return dfm_fail(DFM_E_LIMIT, "'%s': too many path components", na < 0 ? from : to);
    while (c < na && c < nb && la[c] == lb[c] && !memcmp(a[c], b[c], la[c])) c++;
    int rc = 0, first = 1;
    for (int i = c; i < na && !rc; i++, first = 0) rc = dfm_buf_printf(out, "%s..", first ? "" : "/");
    for (int i = c; i < nb && !rc; i++, first = 0)
        rc = dfm_buf_printf(out, "%s%.*s", first ? "" : "/", (int)lb[i], b[i]);
    if (!rc) rc = dfm_buf_printf(out, "%s", ""); /* "" still gets its NUL */
    return rc;
}

/* Every sub-directory of dir named part-K-of-N, sorted by name. */
static int find_parts(const char *dir, char ***names, int *n)
{
    *names = NULL, *n = 0;
    DIR *d = opendir(dir);
    if (!d) return dfm_fail(DFM_E_IO, "cannot read directory '%s': %s", dir, strerror(errno));
    struct dirent *e;
    int rc = 0, cap = 0;
    while (!rc && (e = readdir(d))) {
        dfm_part p;
        if (!dfm_part_from_name(e->d_name, &p)) continue;
        dfm_buf path = {0};
        rc = dfm_buf_printf(&path, "%s/%s", dir, e->d_name);
        if (!rc && !is_dir((const char *)path.data)) {
            dfm_buf_free(&path);
            continue;
        }
        if (!rc && *n == cap) {
            cap = cap ? 2 * cap : 16;
            char **v = dfm_realloc(*names, (size_t)cap * sizeof *v);
            if (!v) rc = DFM_E_NOMEM;
            else *names = v;
        }
        if (!rc) {
            (*names)[*n] = dfm_strdup(e->d_name);
            if ((*names)[*n]) (*n)++;
            else rc = DFM_E_NOMEM;
        }
        dfm_buf_free(&path);
    }
    closedir(d);
    if (!rc && *n > 1) qsort(*names, (size_t)*n, sizeof **names, cmp_str);
    return rc;
}

/* Part directories named part-K-of-N must be the parts 0 .. N-1 of one N, each once. */
static int check_whole(const char *dir, const part_dir *pd, int n)
{
    int N = pd[0].id.n;
    for (int i = 1; i < n; i++)
        if (pd[i].id.n != N)
            return dfm_fail(DFM_E_ARG, "'%s' and '%s' come from runs split into different numbers of "
                            "parts (%d and %d): remove the older run's directories, or name the "
                            "parts to merge", pd[0].path, pd[i].path, N, pd[i].id.n);
    char *seen = dfm_calloc((size_t)N, 1);
    if (!seen) return DFM_E_NOMEM;
    int rc = 0;
    for (int i = 0; i < n && !rc; i++)
        if (seen[pd[i].id.k]++) rc = dfm_fail(DFM_E_ARG, "part %d of %d is named twice ('%s')", pd[i].id.k, N, pd[i].path);
    for (int k = 0; k < N && !rc; k++) {
        if (seen[k]) continue;
        dfm_part p = {k, N, 0};
        char name[64];
        dfm_part_name(&p, name, sizeof name);
        int missing = 0;
        for (int j = 0; j < N; j++) missing += !seen[j];
        rc = dfm_fail(DFM_E_ARG, "part %d of %d is missing: no '%s/%s' (%d of the %d parts are "
                      "missing; every part must finish before the merge)", k, N, dir, name, missing, N);
    }
    free(seen);
    return rc;
}

/* Read one part's index: a dfm-shard index whose run finished. */
static int read_part(const part_dir *pd, cJSON **out)
{
    *out = NULL;
    dfm_buf path = {0}, b = {0};
    struct stat st;
    int rc = dfm_buf_printf(&path, "%s/index.json", pd->path);
    const char *p = (const char *)path.data;
    if (!rc && stat(p, &st) != 0 && errno == ENOENT)
        rc = dfm_fail(DFM_E_IO, "'%s' has no index.json (did this part's dfm-shard run?)", pd->path);
    if (!rc) rc = dfm_read_file(p, 256u << 20, &b);
    cJSON *j = rc ? NULL : cJSON_ParseWithLength((const char *)b.data, b.len);
    dfm_buf_free(&b);
    if (!rc && !j) rc = dfm_fail(DFM_E_FORMAT, "'%s' is not valid JSON", p);
    cJSON *list = j ? cJSON_GetObjectItemCaseSensitive(j, "shardlist") : NULL;
    cJSON *d = j ? cJSON_GetObjectItemCaseSensitive(j, "dfm") : NULL;
    if (!rc && !cJSON_IsArray(list))
        rc = dfm_fail(DFM_E_FORMAT, "'%s' has no \"shardlist\" array (not a dfm-shard index)", p);
    if (!rc && !cJSON_IsObject(d))
        rc = dfm_fail(DFM_E_FORMAT, "'%s' has no \"dfm\" object (not a dfm-shard index)", p);
    if (!rc && !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d, "complete")))
        rc = dfm_fail(DFM_E_ARG, "'%s' says \"complete\": false: that part's run failed or is still "
                      "going (rerun it, then merge)", p);
    cJSON *e;
    if (!rc)
        cJSON_ArrayForEach(e, list) {
            cJSON *u = cJSON_GetObjectItemCaseSensitive(e, "url");
            if (!cJSON_IsString(u) || !u->valuestring[0]) {
                rc = dfm_fail(DFM_E_FORMAT, "'%s': a shardlist entry without a \"url\"", p);
                break;
            }
        }
    dfm_buf_free(&path);
    if (rc) cJSON_Delete(j);
    else *out = j;
    return rc;
}

static void add_hist(cJSON *into, const cJSON *from)
{
    for (const cJSON *e = cJSON_IsObject(from) ? from->child : NULL; e; e = e->next) {
        if (!cJSON_IsNumber(e)) continue;
        cJSON *c = cJSON_GetObjectItemCaseSensitive(into, e->string);
        if (c) cJSON_SetNumberValue(c, c->valuedouble + e->valuedouble);
        else cJSON_AddNumberToObject(into, e->string, e->valuedouble);
    }
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static int cmp_url(const void *a, const void *b)
{
    const cJSON *x = *(cJSON *const *)a, *y = *(cJSON *const *)b;
    return strcmp(cJSON_GetObjectItemCaseSensitive(x, "url")->valuestring,
                  cJSON_GetObjectItemCaseSensitive(y, "url")->valuestring);
}

/* An index.json already in dir may be replaced only when an earlier merge wrote it. */
static int check_existing(const char *path)
{
    dfm_buf b = {0};
    struct stat st;
    if (lstat(path, &st) != 0 && errno == ENOENT) return 0;
    int rc = dfm_read_file(path, 256u << 20, &b);
    if (rc) return rc;
    cJSON *j = cJSON_ParseWithLength((const char *)b.data, b.len);
    dfm_buf_free(&b);
    cJSON *d = j ? cJSON_GetObjectItemCaseSensitive(j, "dfm") : NULL;
    int merged = cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(d, "parts"));
    cJSON_Delete(j);
    if (merged) return 0;
    return dfm_fail(DFM_E_IO, "'%s' already exists and is not a merged index (a shard series "
                    "written in that directory: its shards would no longer be listed); merge "
                    "into another directory, or remove it", path);
}

int dfm_shard_merge_index(const char *dir, char *const *given, int ngiven, dfm_shard_merged *merged)
{
    if (merged) *merged = (dfm_shard_merged){0};
    if (!is_dir(dir)) return dfm_fail(DFM_E_IO, "'%s' is not a directory", dir);
    char **found = NULL;
    int nfound = 0, rc = 0;
    if (ngiven == 0) {
        rc = find_parts(dir, &found, &nfound);
        if (!rc && nfound == 0)
            rc = dfm_fail(DFM_E_ARG, "no part directories (part-K-of-N, as dfm-shard --part writes "
                          "them) in '%s'", dir);
    }
    int n = ngiven ? ngiven : nfound;
    part_dir *pd = rc ? NULL : dfm_calloc((size_t)n, sizeof *pd);
    cJSON **idx = rc ? NULL : dfm_calloc((size_t)n, sizeof *idx);
    if (!rc && (!pd || !idx)) rc = DFM_E_NOMEM;
    char root[PATH_MAX];
    if (!rc && !realpath(dir, root)) rc = dfm_fail(DFM_E_IO, "cannot resolve '%s': %s", dir, strerror(errno));
    int named = 0;
    for (int i = 0; i < n && !rc; i++) {
        dfm_buf p = {0}, r = {0};
        if (ngiven) rc = dfm_buf_printf(&p, "%s", given[i]);
        else rc = dfm_buf_printf(&p, "%s/%s", dir, found[i]);
        char real[PATH_MAX];
        if (!rc && !realpath((const char *)p.data, real))
            rc = dfm_fail(DFM_E_IO, "cannot open the part directory '%s': %s", (const char *)p.data,
                          strerror(errno));
        if (!rc && !is_dir(real)) rc = dfm_fail(DFM_E_IO, "'%s' is not a directory", (const char *)p.data);
        if (!rc) rc = relative(root, real, &r);
        if (!rc) {
            pd[i].path = (char *)p.data, p.data = NULL;
            pd[i].rel = (char *)r.data, r.data = NULL;
            const char *slash = strrchr(real, '/');
            pd[i].named = dfm_part_from_name(slash ? slash + 1 : real, &pd[i].id);
            named += pd[i].named;
        }
        dfm_buf_free(&p), dfm_buf_free(&r);
        for (int j = 0; j < i && !rc; j++)
            if (!strcmp(pd[j].rel, pd[i].rel))
                rc = dfm_fail(DFM_E_ARG, "'%s' and '%s' are the same directory", pd[j].path, pd[i].path);
    }
    if (!rc && named == n) rc = check_whole(dir, pd, n);
    for (int i = 0; i < n && !rc; i++) rc = read_part(&pd[i], &idx[i]);

    /* the merged index */
    cJSON *j = NULL, *list = NULL, *buckets = NULL, *fields = NULL;
    cJSON **all = NULL;
    int nall = 0, cap = 0;
    double samples = 0, shards = 0;
    if (!rc) {
        j = cJSON_CreateObject(), buckets = cJSON_CreateObject(), fields = cJSON_CreateObject();
        if (!j || !buckets || !fields) rc = DFM_E_NOMEM;
    }
    for (int i = 0; i < n && !rc; i++) {
        cJSON *e, *d = cJSON_GetObjectItemCaseSensitive(idx[i], "dfm");
        samples += num(d, "samples");
        shards += num(d, "shards");
        add_hist(buckets, cJSON_GetObjectItemCaseSensitive(d, "buckets"));
        add_hist(fields, cJSON_GetObjectItemCaseSensitive(d, "fields"));
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(idx[i], "shardlist")) {
            const char *u = cJSON_GetObjectItemCaseSensitive(e, "url")->valuestring;
            dfm_buf url = {0};
            if (u[0] == '/' || !pd[i].rel[0]) rc = dfm_buf_printf(&url, "%s", u);
            else rc = dfm_buf_printf(&url, "%s/%s", pd[i].rel, u);
            cJSON *c = rc ? NULL : cJSON_Duplicate(e, 1);
            if (!rc && (!c || !cJSON_ReplaceItemInObjectCaseSensitive(
                                  c, "url", cJSON_CreateString((const char *)url.data))))
                rc = DFM_E_NOMEM;
            dfm_buf_free(&url);
            if (!rc && nall == cap) {
                cap = cap ? 2 * cap : 64;
                cJSON **v = dfm_realloc(all, (size_t)cap * sizeof *v);
                if (!v) rc = DFM_E_NOMEM;
                else all = v;
            }
            if (rc) {
                cJSON_Delete(c);
                break;
            }
            all[nall++] = c;
        }
    }
    if (!rc) {
        if (nall > 1) qsort(all, (size_t)nall, sizeof *all, cmp_url);
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(idx[0], "name");
        cJSON_AddStringToObject(j, "__kind__", "wids-shard-index-v1");
        cJSON_AddNumberToObject(j, "wids_version", 1);
        if (cJSON_IsString(name)) cJSON_AddStringToObject(j, "name", name->valuestring);
        list = cJSON_AddArrayToObject(j, "shardlist");
        for (int i = 0; i < nall && list; i++) cJSON_AddItemToArray(list, all[i]), all[i] = NULL;
        cJSON *d = cJSON_AddObjectToObject(j, "dfm");
        cJSON_AddNumberToObject(d, "samples", samples);
        cJSON_AddNumberToObject(d, "shards", shards);
        cJSON_AddBoolToObject(d, "complete", 1);
        cJSON_AddNumberToObject(d, "parts", n);
        cJSON_AddItemToObject(d, "buckets", buckets), buckets = NULL;
        cJSON_AddItemToObject(d, "fields", fields), fields = NULL;
        if (!list || !d) rc = DFM_E_NOMEM;
    }
    dfm_buf out = {0};
    if (!rc) rc = dfm_buf_printf(&out, "%s/index.json", dir);
    if (!rc) rc = check_existing((const char *)out.data);
    if (!rc) {
        char *txt = dfm_json_pretty(j);
        rc = txt ? dfm_write_file_atomic((const char *)out.data, txt, strlen(txt)) : DFM_E_NOMEM;
        free(txt);
    }
    if (rc == DFM_E_NOMEM) dfm_fail(rc, "out of memory");
    if (!rc && merged) *merged = (dfm_shard_merged){.parts = n, .shards = (int)shards, .samples = (uint64_t)samples};
    dfm_buf_free(&out);
    for (int i = 0; i < nall; i++) cJSON_Delete(all[i]);
    free(all);
    cJSON_Delete(j), cJSON_Delete(buckets), cJSON_Delete(fields);
    for (int i = 0; pd && i < n; i++) free(pd[i].path), free(pd[i].rel), cJSON_Delete(idx ? idx[i] : NULL);
    for (int i = 0; i < nfound; i++) free(found[i]);
    free(found), free(pd), free(idx);
    return rc;
}
