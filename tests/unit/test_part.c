/* test_part.c — --part K/N: parsing and its errors, the launcher's part, the selection rule
 * (every item in exactly one part), part names, a part's shard pattern, and merging the parts'
 * index.json files (dfm-shard --merge-index) against hand-written expectations. */
#include "test.h"
#include "base/buf.h"
#include "base/error.h"
#include "base/part.h"
#include "io/shard.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <sys/stat.h>

TEST(part_parse)
{
    dfm_part p;
    CHECK_EQ(dfm_part_parse("0/1", &p), 0);
    CHECK(p.k == 0 && p.n == 1 && !p.is_auto && !dfm_part_split(&p));
    CHECK_EQ(dfm_part_parse("3/4", &p), 0);
    CHECK(p.k == 3 && p.n == 4 && !p.is_auto && dfm_part_split(&p));
    CHECK_EQ(dfm_part_parse("0/1000000", &p), 0);
    CHECK_EQ(p.n, 1000000);
    CHECK_EQ(dfm_part_parse("auto", &p), 0);
    CHECK(p.is_auto && p.k == 0 && p.n == 1);
    /* every malformed value is refused with a message naming it */
    const char *bad[] = {"4/4", "5/4", "1/0", "0/0", "-1/2", "1/-2", "+1/2", "a/b", "3", "3/", "/3",
                         "1/2/3", " 1/2", "1/2 ", "1 /2", "", "AUTO", "auto ", "0x1/2",
                         "0/1000001", "9999999999/2", "1.0/2"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char want[64];
        snprintf(want, sizeof want, "'%s'", bad[i]);
        int rc = dfm_part_parse(bad[i], &p);
        CHECK_EQ(rc, DFM_E_ARG);
        if (rc != DFM_E_ARG || !strstr(dfm_errmsg(), want))
            fprintf(stderr, "  value '%s': message '%s'\n", bad[i], dfm_errmsg()), dfm_test_failures++;
    }
    dfm_part_parse("4/4", &p);
    CHECK(strstr(dfm_errmsg(), "0/4 ... 3/4") != NULL); /* K counts from 0: the message says so */
    dfm_part_parse("1/0", &p);
    CHECK(strstr(dfm_errmsg(), "at least 1") != NULL);
}

TEST(part_auto)
{
    dfm_part p;
    dfm_part_parse("auto", &p);
    CHECK_EQ(dfm_part_auto(&p, 2, 8), 0);
    CHECK(p.k == 2 && p.n == 8 && p.is_auto);
    CHECK_EQ(dfm_part_auto(&p, 0, 0), 0); /* no launcher: the whole */
    CHECK(p.k == 0 && p.n == 1);
    CHECK_EQ(dfm_part_auto(&p, 0, 1), 0);
    CHECK(p.k == 0 && p.n == 1 && !dfm_part_split(&p));
    CHECK_EQ(dfm_part_auto(&p, 8, 8), DFM_E_ARG);
    CHECK_EQ(dfm_part_auto(&p, -1, 8), DFM_E_ARG);
    CHECK_EQ(dfm_part_auto(&p, 0, 2000000), DFM_E_ARG);
}

/* Against an independent enumeration: part k of n is k, k+n, k+2n, ...; every item falls in
 * exactly one part; a zeroed part takes everything. */
TEST(part_selection)
{
    enum { ITEMS = 200 };
    for (int n = 1; n <= 9; n++) {
        int owner[ITEMS];
        for (int i = 0; i < ITEMS; i++) owner[i] = -1;
        for (int k = 0; k < n; k++) {
            dfm_part p = {k, n, 0};
            char want[ITEMS] = {0};
            for (int i = k; i < ITEMS; i += n) want[i] = 1;
            for (int i = 0; i < ITEMS; i++) {
                int t = dfm_part_takes(&p, (uint64_t)i);
                CHECK_EQ(t, want[i]);
                if (t) {
                    CHECK_EQ(owner[i], -1); /* no overlap */
                    owner[i] = k;
                }
            }
        }
        for (int i = 0; i < ITEMS; i++) CHECK(owner[i] >= 0); /* no gap */
    }
    dfm_part zero = {0};
    for (uint64_t i = 0; i < 50; i++) CHECK(dfm_part_takes(&zero, i));
    dfm_part big = {3, 7, 0};
    CHECK(dfm_part_takes(&big, 7000000000003ULL)); /* 64-bit positions */
    CHECK(!dfm_part_takes(&big, 7000000000004ULL));
}

TEST(part_name)
{
    char b[64];
    dfm_part p = {2, 8, 0}, q;
    CHECK_EQ(dfm_part_name(&p, b, sizeof b), 19);
    CHECK_STR(b, "part-00002-of-00008");
    CHECK(dfm_part_from_name(b, &q) && q.k == 2 && q.n == 8);
    p = (dfm_part){12, 123456, 0};
    dfm_part_name(&p, b, sizeof b);
    CHECK_STR(b, "part-00012-of-123456");
    CHECK(dfm_part_from_name(b, &q) && q.k == 12 && q.n == 123456);
    CHECK(dfm_part_name(&p, b, 10) < 0);
    const char *not[] = {"part-2-of-8", "part-00008-of-00008", "part-00002-of-00008x",
                         "part-00002-of-00008/", "part-00002-of-00000", "part--0002-of-00008",
                         "Part-00002-of-00008", "part-000002-of-00008", "index.json", ""};
    for (size_t i = 0; i < sizeof not / sizeof *not; i++) CHECK(!dfm_part_from_name(not[i], &q));
}

TEST(part_shard_pattern)
{
    char b[256];
    dfm_part p = {2, 8, 0}, all = {0, 1, 0}, zero = {0};
    CHECK_EQ(dfm_shard_part_pattern("out/train-%06d.tar", &p, b, sizeof b), 0);
    CHECK_STR(b, "out/part-00002-of-00008/train-%06d.tar");
    CHECK_EQ(dfm_shard_part_pattern("a/b/x-%d.tar.zst", &p, b, sizeof b), 0);
    CHECK_STR(b, "a/b/part-00002-of-00008/x-%d.tar.zst");
    CHECK_EQ(dfm_shard_part_pattern("train-%06d.tar", &p, b, sizeof b), 0);
    CHECK_STR(b, "part-00002-of-00008/train-%06d.tar");
    CHECK_EQ(dfm_shard_part_pattern("/train-%06d.tar", &p, b, sizeof b), 0);
    CHECK_STR(b, "/part-00002-of-00008/train-%06d.tar");
    CHECK_EQ(dfm_shard_part_pattern("out/train-%06d.tar", &all, b, sizeof b), 0);
    CHECK_STR(b, "out/train-%06d.tar");
    CHECK_EQ(dfm_shard_part_pattern("out/train-%06d.tar", &zero, b, sizeof b), 0);
    CHECK_STR(b, "out/train-%06d.tar");
    CHECK_EQ(dfm_shard_part_pattern("out/train-%06d.tar", &p, b, 20), DFM_E_ARG);
}

/* ---- merging the parts' indexes -------------------------------------------------------- */

static void mkdir_p(const char *root, const char *rel)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    CHECK_EQ(dfm_mkdirs(p), 0);
}

static void put_index(const char *root, const char *rel, const char *json)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s/index.json", root, rel);
    CHECK_EQ(dfm_write_file_atomic(p, json, strlen(json)), 0);
}

/* index.json of a part: shards named by urls[], nsamples 2 each, one bucket, complete or not */
static void part_index(const char *root, const char *rel, const char *u0, const char *u1, int complete)
{
    char j[2048];
    snprintf(j, sizeof j,
             "{\"__kind__\": \"wids-shard-index-v1\", \"wids_version\": 1, \"name\": \"train-%%06d.tar\","
             " \"shardlist\": [{\"url\": \"%s\", \"nsamples\": 2, \"filesize\": 10, \"bucket\": \"64x64x1\"}"
             "%s%s%s],"
             " \"dfm\": {\"samples\": %d, \"shards\": %d, \"complete\": %s,"
             " \"buckets\": {\"64x64x1\": %d}, \"fields\": {\"txt\": %d, \"json\": 1}}}",
             u0, u1 ? ", {\"url\": \"" : "", u1 ? u1 : "", u1 ? "\", \"nsamples\": 2, \"filesize\": 10}" : "",
             u1 ? 4 : 2, u1 ? 2 : 1, complete ? "true" : "false", u1 ? 4 : 2, u1 ? 4 : 2);
    put_index(root, rel, j);
}

static cJSON *read_json(const char *path)
{
    dfm_buf b = {0};
    if (dfm_read_file(path, 0, &b)) return NULL;
    cJSON *j = cJSON_ParseWithLength((const char *)b.data, b.len);
    dfm_buf_free(&b);
    return j;
}

static const char *url_at(cJSON *j, int i)
{
    cJSON *e = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "shardlist"), i);
    cJSON *u = cJSON_GetObjectItem(e, "url");
    return cJSON_IsString(u) ? u->valuestring : "(none)";
}

static double idx_num(cJSON *j, const char *a, const char *b)
{
    cJSON *d = cJSON_GetObjectItem(j, "dfm");
    cJSON *v = b ? cJSON_GetObjectItem(cJSON_GetObjectItem(d, a), b) : cJSON_GetObjectItem(d, a);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

TEST(part_merge_index)
{
    char root[4096], dir[4096], idx[4200];
    snprintf(root, sizeof root, "%s/merge", dfm_test_tmpdir());
    snprintf(dir, sizeof dir, "%s/out", root);
    snprintf(idx, sizeof idx, "%s/index.json", dir);
    mkdir_p(root, "out/part-00000-of-00003");
    mkdir_p(root, "out/part-00001-of-00003");
    mkdir_p(root, "out/part-00002-of-00003");
    mkdir_p(root, "out/notes"); /* not a part directory: ignored */
    part_index(root, "out/part-00000-of-00003", "train-000000.tar", "train-000001.tar", 1);
    part_index(root, "out/part-00001-of-00003", "train-000000.tar", NULL, 1);

    /* a part missing */
    dfm_shard_merged m;
    CHECK_EQ(dfm_shard_merge_index(dir, NULL, 0, &m), DFM_E_IO);
    CHECK(strstr(dfm_errmsg(), "part-00002-of-00003' has no index.json") != NULL);
    /* a part whose run did not finish */
    part_index(root, "out/part-00002-of-00003", "64x64x1/train-000000.tar", NULL, 0);
    CHECK_EQ(dfm_shard_merge_index(dir, NULL, 0, &m), DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "\"complete\": false") != NULL);
    part_index(root, "out/part-00002-of-00003", "64x64x1/train-000000.tar", NULL, 1);

    CHECK_EQ(dfm_shard_merge_index(dir, NULL, 0, &m), 0);
    CHECK(m.parts == 3 && m.shards == 4 && m.samples == 8);
    cJSON *j = read_json(idx);
    CHECK(j != NULL);
    CHECK_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(j, "shardlist")), 4);
    CHECK_STR(url_at(j, 0), "part-00000-of-00003/train-000000.tar"); /* sorted by url */
    CHECK_STR(url_at(j, 1), "part-00000-of-00003/train-000001.tar");
    CHECK_STR(url_at(j, 2), "part-00001-of-00003/train-000000.tar");
    CHECK_STR(url_at(j, 3), "part-00002-of-00003/64x64x1/train-000000.tar");
    cJSON *e0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "shardlist"), 0);
    CHECK_STR(cJSON_GetObjectItem(e0, "bucket")->valuestring, "64x64x1"); /* fields kept */
    CHECK_EQ(idx_num(j, "samples", NULL), 8);
    CHECK_EQ(idx_num(j, "shards", NULL), 4);
    CHECK_EQ(idx_num(j, "parts", NULL), 3);
    CHECK_EQ(idx_num(j, "buckets", "64x64x1"), 8);
    CHECK_EQ(idx_num(j, "fields", "txt"), 8);
    CHECK_EQ(idx_num(j, "fields", "json"), 3);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "dfm"), "complete")));
    CHECK_STR(cJSON_GetObjectItem(j, "__kind__")->valuestring, "wids-shard-index-v1");
    cJSON_Delete(j);
    /* an earlier merge is replaced */
    CHECK_EQ(dfm_shard_merge_index(dir, NULL, 0, &m), 0);

    /* parts of runs with different N side by side */
    mkdir_p(root, "out/part-00000-of-00002");
    part_index(root, "out/part-00000-of-00002", "train-000000.tar", NULL, 1);
    CHECK_EQ(dfm_shard_merge_index(dir, NULL, 0, &m), DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "different numbers of parts") != NULL);

    /* named part directories, one outside dir: url relative with ../ */
    mkdir_p(root, "elsewhere/p1");
    part_index(root, "elsewhere/p1", "x-0.tar", NULL, 1);
    char a[4200], b[4200], *named[2] = {a, b};
    snprintf(a, sizeof a, "%s/part-00001-of-00003", dir);
    snprintf(b, sizeof b, "%s/elsewhere/p1", root);
    CHECK_EQ(dfm_shard_merge_index(dir, named, 2, &m), 0);
    CHECK(m.parts == 2 && m.shards == 2 && m.samples == 4);
    j = read_json(idx);
    CHECK_STR(url_at(j, 0), "../elsewhere/p1/x-0.tar");
    CHECK_STR(url_at(j, 1), "part-00001-of-00003/train-000000.tar");
    cJSON_Delete(j);
    /* the same directory twice; the directory itself as its only part */
    char *twice[2] = {a, a};
    CHECK_EQ(dfm_shard_merge_index(dir, twice, 2, &m), DFM_E_ARG);
    /* only part-K-of-N names, but not a whole set */
    char c[4200], *two[2] = {a, c};
    snprintf(c, sizeof c, "%s/part-00002-of-00003", dir);
    CHECK_EQ(dfm_shard_merge_index(dir, two, 2, &m), DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "part 0 of 3 is missing") != NULL);

    /* an index.json that a series in dir wrote is never replaced */
    mkdir_p(root, "plain/part-00000-of-00001");
    part_index(root, "plain/part-00000-of-00001", "t-0.tar", NULL, 1);
    part_index(root, "plain", "t-0.tar", NULL, 1);
    snprintf(dir, sizeof dir, "%s/plain", root);
    CHECK_EQ(dfm_shard_merge_index(dir, NULL, 0, &m), DFM_E_IO);
    CHECK(strstr(dfm_errmsg(), "is not a merged index") != NULL);
    /* no part directories at all */
    snprintf(dir, sizeof dir, "%s/elsewhere", root);
    CHECK_EQ(dfm_shard_merge_index(dir, NULL, 0, &m), DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "no part directories") != NULL);
}
