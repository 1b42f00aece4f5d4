/* test_energon.c — the Energon files (lib/io/energon.c) against hand-computed expectations: the
 * tar walk over a hand-built tar (pax path, GNU long name, skipped __meta__, directory and
 * dot-less members: offsets as Python's tarfile gives them to energon prepare), the split
 * weights, and a prepared folder's .tar.idx bytes, .info.json, split.yaml, dataset.yaml,
 * index.sqlite rows and index.uuid; the errors Energon would hit later (duplicate keys, a count
 * that disagrees, compressed or outside shards). The same files are compared with energon
 * prepare's own by tests/pipeline/interop_energon.sh. */
#include "test.h"
#include "base/buf.h"
#include "base/error.h"
#include "io/energon.h"

#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/* one 512-byte ustar header + data padded to 512 */
static void member(dfm_buf *t, const char *name, char type, const void *data, size_t n)
{
    uint8_t h[512] = {0};
    snprintf((char *)h, 100, "%s", name);
    memcpy(h + 100, "0000444", 8);
    memcpy(h + 108, "0000000", 8);
    memcpy(h + 116, "0000000", 8);
    snprintf((char *)h + 124, 12, "%011o", (unsigned)n);
    memcpy(h + 136, "00000000000", 12);
    h[156] = (uint8_t)type;
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++) sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
    dfm_buf_append(t, h, 512);
    dfm_buf_append(t, data, n);
    static const uint8_t zero[512];
    if (n % 512) dfm_buf_append(t, zero, 512 - n % 512);
}

static void end_blocks(dfm_buf *t)
{
    static const uint8_t zero[1024];
    dfm_buf_append(t, zero, 1024);
}

static void save(const char *dir, const char *name, const dfm_buf *b)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (f) fwrite(b->data, 1, b->len, f), fclose(f);
}

/* The tar of the walk test: see the offsets in the comments. */
static void walk_tar(dfm_buf *t)
{
    char big[600];
    memset(big, 'j', sizeof big);
    member(t, "a.txt", '0', "hello", 5);              /* 0: data 512 */
    member(t, "a.json", '0', big, sizeof big);        /* 1024: data 1536, 2 blocks */
    member(t, "__meta__/info.txt", '0', "abc", 3);    /* 2560: skipped (a __X__ first component) */
    member(t, "d/", '5', "", 0);                      /* 3584: a directory, skipped */
    const char *rec = "23 path=bb.latents.npy\n";   /* 23 bytes with its own length */
    member(t, "PaxHeaders/x", 'x', rec, strlen(rec)); /* 4096: the sample bb starts here */
    member(t, "ignored.latents.npy", '0', "0123456789", 10); /* 5120: data 5632 */
    member(t, "././@LongLink", 'L', "bb.text.npy", 12); /* 6144 */
    member(t, "ignored.text.npy", '0', "z", 1);       /* 7168: data 7680 */
    member(t, "noext", '0', "q", 1);                  /* 8192: no dot, skipped */
    member(t, "c.txt", '0', "", 0);                   /* 9216: data 9728, size 0 */
    end_blocks(t);                                    /* 9728 */
}

TEST(energon_scan_tar)
{
    CHECK_EQ(strlen("23 path=bb.latents.npy\n"), 23); /* the record's own length is right */
    dfm_buf t = {0};
    walk_tar(&t);
    const char *dir = dfm_test_tmpdir();
    save(dir, "walk.tar", &t);
    char p[4096];
    snprintf(p, sizeof p, "%s/walk.tar", dir);
    dfm_energon_tar et;
    CHECK_EQ(dfm_energon_scan_tar(p, &et), 0);
    CHECK_EQ(et.nsamples, 3);
    CHECK_EQ(et.nparts, 5);
    CHECK_EQ(et.end, 9728);
    if (et.nsamples == 3 && et.nparts == 5) {
        static const char *keys[] = {"a", "bb", "c"};
        static const uint64_t off[] = {0, 4096, 9216}, size[] = {4096, 5120, 512};
        static const int first[] = {0, 2, 4}, np[] = {2, 2, 1};
        for (int i = 0; i < 3; i++) {
            CHECK_STR(et.samples[i].key, keys[i]);
            CHECK_EQ(et.samples[i].offset, off[i]);
            CHECK_EQ(et.samples[i].size, size[i]);
            CHECK_EQ(et.samples[i].first_part, first[i]);
            CHECK_EQ(et.samples[i].nparts, np[i]);
        }
        static const char *parts[] = {"txt", "json", "latents.npy", "text.npy", "txt"};
        static const uint64_t doff[] = {512, 1536, 5632, 7680, 9728}, dsz[] = {5, 600, 10, 1, 0};
        for (int i = 0; i < 5; i++) {
            CHECK_STR(et.parts[i].name, parts[i]);
            CHECK_EQ(et.parts[i].data_offset, doff[i]);
            CHECK_EQ(et.parts[i].data_size, dsz[i]);
        }
    }
    dfm_energon_tar_free(&et);

    /* no end blocks: the end is the end of the file; a cut member, a bad checksum, gzip refused */
    t.len -= 1024;
    save(dir, "noend.tar", &t);
    snprintf(p, sizeof p, "%s/noend.tar", dir);
    CHECK_EQ(dfm_energon_scan_tar(p, &et), 0);
    CHECK_EQ(et.end, 9728);
    dfm_energon_tar_free(&et);
    t.len -= 512 + 300; /* c.txt's header gone, 'noext's data cut */
    save(dir, "cut.tar", &t);
    snprintf(p, sizeof p, "%s/cut.tar", dir);
    CHECK_EQ(dfm_energon_scan_tar(p, &et), DFM_E_FORMAT);
    CHECK(strstr(dfm_errmsg(), "truncated") != NULL);
    dfm_energon_tar_free(&et);
    t.len = 0;
    walk_tar(&t);
    t.data[1024 + 150] ^= 1; /* a.json's checksum */
    save(dir, "bad.tar", &t);
    snprintf(p, sizeof p, "%s/bad.tar", dir);
    CHECK_EQ(dfm_energon_scan_tar(p, &et), DFM_E_FORMAT);
    CHECK(strstr(dfm_errmsg(), "byte 1024") != NULL);
    dfm_energon_tar_free(&et);
    t.data[0] = 0x1f, t.data[1] = 0x8b;
    save(dir, "gz.tar", &t);
    snprintf(p, sizeof p, "%s/gz.tar", dir);
    CHECK_EQ(dfm_energon_scan_tar(p, &et), DFM_E_FORMAT);
    CHECK(strstr(dfm_errmsg(), "compressed") != NULL);
    dfm_energon_tar_free(&et);
    dfm_buf_free(&t);
}

TEST(energon_split)
{
    double w[3];
    CHECK_EQ(dfm_energon_parse_split("8,1,1", w), 0);
    CHECK(w[0] == 8 && w[1] == 1 && w[2] == 1);
    CHECK_EQ(dfm_energon_parse_split("0.5, 0.2, 0.3", w), 0);
    CHECK(w[0] == 0.5 && w[1] == 0.2 && w[2] == 0.3);
    const char *bad[] = {"", "1", "1,1", "1,1,1,1", "0,0,0", "-1,1,1", "a,b,c", "1,,1", "1,1,1x", "nan,1,1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) CHECK_EQ(dfm_energon_parse_split(bad[i], w), DFM_E_ARG);
}

static char *slurp(const char *dir, const char *name)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    dfm_buf b = {0};
    if (dfm_read_file(p, 0, &b) || dfm_buf_append(&b, "", 1)) {
        dfm_buf_free(&b);
        return NULL;
    }
    return (char *)b.data;
}

static void one_sample_tar(dfm_buf *t, const char *key)
{
    char n[64];
    snprintf(n, sizeof n, "%s.txt", key);
    member(t, n, '0', key, strlen(key));
    snprintf(n, sizeof n, "%s.latents.npy", key);
    member(t, n, '0', "NPY", 3);
}

static void write_index(const char *dir, const char *body)
{
    dfm_buf b = {0};
    dfm_buf_printf(&b, "{\"__kind__\": \"wids-shard-index-v1\", \"wids_version\": 1, "
                       "\"shardlist\": [%s]}", body);
    save(dir, "index.json", &b);
    dfm_buf_free(&b);
}

TEST(energon_prepare)
{
    char dir[4096], sub[4096];
    snprintf(dir, sizeof dir, "%s/energon_ds", dfm_test_tmpdir());
    snprintf(sub, sizeof sub, "%s/b", dir);
    CHECK_EQ(dfm_mkdirs(sub), 0);
    dfm_buf t = {0};
    walk_tar(&t);
    save(dir, "s0.tar", &t);
    t.len = 0;
    one_sample_tar(&t, "d");
    one_sample_tar(&t, "e");
    end_blocks(&t);
    save(dir, "b/s1.tar", &t); /* 2 samples of 2 members: 0, 2048; end 4096 */
    t.len = 0;
    one_sample_tar(&t, "f");
    end_blocks(&t);
    save(dir, "s2.tar", &t);
    write_index(dir, "{\"url\": \"b/s1.tar\", \"nsamples\": 2}, {\"url\": \"s0.tar\", \"nsamples\": 3}, "
                     "{\"url\": \"s2.tar\", \"nsamples\": 1}");
    dfm_energon_opts o = {{8, 1, 1}};
    dfm_energon_stats st;
    CHECK_EQ(dfm_energon_prepare(dir, &o, &st), 0);
    CHECK_EQ(st.shards, 3);
    CHECK_EQ(st.samples, 6);
    CHECK(st.split_shards[0] == 2 && st.split_shards[1] == 0 && st.split_shards[2] == 1);
    CHECK_EQ(st.dataset_yaml_kept, 0);

    /* .tar.idx: N + 1 little-endian u64 */
    char *idx = slurp(dir, "b/s1.tar.idx");
    static const uint8_t want1[24] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0};
    CHECK(idx && !memcmp(idx, want1, 24));
    free(idx);
    char p[4096];
    struct stat sb;
    snprintf(p, sizeof p, "%s/s0.tar.idx", dir);
    CHECK(stat(p, &sb) == 0 && sb.st_size == 32);
    idx = slurp(dir, "s0.tar.idx");
    if (idx) {
        const uint8_t *u = (const uint8_t *)idx;
        static const uint64_t want0[] = {0, 4096, 9216, 9728};
        for (int i = 0; i < 4; i++) {
            uint64_t v = 0;
            for (int k = 7; k >= 0; k--) v = v << 8 | u[i * 8 + k];
            CHECK_EQ(v, want0[i]);
        }
    }
    free(idx);

    /* .info.json: shard_counts in index order */
    char *info = slurp(dir, ".nv-meta/.info.json");
    cJSON *j = info ? cJSON_Parse(info) : NULL;
    cJSON *sc = cJSON_GetObjectItemCaseSensitive(j, "shard_counts");
    CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "energon_version")));
    CHECK_EQ(cJSON_GetArraySize(sc), 3);
    if (cJSON_GetArraySize(sc) == 3) {
        CHECK_STR(sc->child->string, "b/s1.tar");
        CHECK_EQ(sc->child->valueint, 2);
        CHECK_STR(sc->child->next->string, "s0.tar");
        CHECK_EQ(sc->child->next->valueint, 3);
        CHECK_STR(sc->child->next->next->string, "s2.tar");
    }
    cJSON_Delete(j);
    free(info);
    char *split = slurp(dir, ".nv-meta/split.yaml");
    CHECK_STR(split, "split_parts:\n  train:\n  - \"b/s1.tar\"\n  - \"s0.tar\"\n  val: []\n  test:\n"
                     "  - \"s2.tar\"\nexclude: []\n");
    free(split);
    char *yaml = slurp(dir, ".nv-meta/dataset.yaml");
    CHECK(yaml && strstr(yaml, "\n__module__: megatron.energon\n__class__: CrudeWebdataset\n"));
    free(yaml);
    char *uuid = slurp(dir, ".nv-meta/index.uuid");
    CHECK(uuid && strlen(uuid) == 36 && uuid[14] == '4' && strchr("89ab", uuid[19]) && uuid[8] == '-');

    /* index.sqlite: Energon's rows */
    sqlite3 *db = NULL;
    snprintf(p, sizeof p, "%s/.nv-meta/index.sqlite", dir);
    CHECK_EQ(sqlite3_open_v2(p, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *q = NULL;
    CHECK_EQ(sqlite3_prepare_v2(db, "SELECT tar_file_id, sample_index, byte_offset, byte_size FROM "
                                "samples WHERE sample_key = 'bb'", -1, &q, NULL), SQLITE_OK);
    CHECK_EQ(sqlite3_step(q), SQLITE_ROW);
    CHECK(sqlite3_column_int(q, 0) == 1 && sqlite3_column_int(q, 1) == 1 &&
          sqlite3_column_int64(q, 2) == 4096 && sqlite3_column_int64(q, 3) == 5120);
    sqlite3_finalize(q);
    CHECK_EQ(sqlite3_prepare_v2(db, "SELECT content_byte_offset, content_byte_size FROM sample_parts "
                                "WHERE tar_file_id = 1 AND sample_index = 1 AND part_name = "
                                "'text.npy'", -1, &q, NULL), SQLITE_OK);
    CHECK_EQ(sqlite3_step(q), SQLITE_ROW);
    CHECK(sqlite3_column_int64(q, 0) == 7680 && sqlite3_column_int64(q, 1) == 1);
    sqlite3_finalize(q);
    CHECK_EQ(sqlite3_prepare_v2(db, "SELECT (SELECT count(*) FROM samples), (SELECT count(*) FROM "
                                "sample_parts), (SELECT count(*) FROM sqlite_master WHERE type = "
                                "'index' AND name LIKE 'idx_%')", -1, &q, NULL), SQLITE_OK);
    CHECK_EQ(sqlite3_step(q), SQLITE_ROW);
    CHECK(sqlite3_column_int(q, 0) == 6 && sqlite3_column_int(q, 1) == 11 && sqlite3_column_int(q, 2) == 3);
    sqlite3_finalize(q);
    sqlite3_close(db);

    /* again: the same uuid; a user's dataset.yaml kept; all shards in train without weights */
    snprintf(p, sizeof p, "%s/.nv-meta/dataset.yaml", dir);
    FILE *f = fopen(p, "w");
    if (f) fputs("__module__: megatron.energon\n__class__: CrudeWebdataset\nsubflavors: {x: 1}\n", f), fclose(f);
    dfm_energon_opts none = {{0}};
    CHECK_EQ(dfm_energon_prepare(dir, &none, &st), 0);
    CHECK(st.dataset_yaml_kept && st.split_shards[0] == 3 && st.split_shards[2] == 0);
    char *uuid2 = slurp(dir, ".nv-meta/index.uuid");
    CHECK_STR(uuid2, uuid);
    free(uuid);
    free(uuid2);
    yaml = slurp(dir, ".nv-meta/dataset.yaml");
    CHECK(yaml && strstr(yaml, "subflavors: {x: 1}"));
    free(yaml);

    /* errors */
    write_index(dir, "{\"url\": \"s0.tar\", \"nsamples\": 4}");
    CHECK_EQ(dfm_energon_prepare(dir, &none, NULL), DFM_E_FORMAT);
    CHECK(strstr(dfm_errmsg(), "holds 3 samples, index.json says 4") != NULL);
    t.len = 0;
    one_sample_tar(&t, "c"); /* s0.tar has c too */
    end_blocks(&t);
    save(dir, "s3.tar", &t);
    write_index(dir, "{\"url\": \"s0.tar\", \"nsamples\": 3}, {\"url\": \"s3.tar\", \"nsamples\": 1}");
    CHECK_EQ(dfm_energon_prepare(dir, &none, NULL), DFM_E_FORMAT);
    CHECK(strstr(dfm_errmsg(), "'c' appears twice") != NULL);
    write_index(dir, "{\"url\": \"s0.tar.zst\", \"nsamples\": 3}");
    CHECK_EQ(dfm_energon_prepare(dir, &none, NULL), DFM_E_FORMAT);
    CHECK(strstr(dfm_errmsg(), "plain .tar") != NULL);
    write_index(dir, "{\"url\": \"../s0.tar\", \"nsamples\": 3}");
    CHECK_EQ(dfm_energon_prepare(dir, &none, NULL), DFM_E_FORMAT);
    CHECK(strstr(dfm_errmsg(), "not inside") != NULL);
    write_index(dir, "");
    CHECK_EQ(dfm_energon_prepare(dir, &none, NULL), DFM_E_FORMAT);
    dfm_buf_free(&t);
}
