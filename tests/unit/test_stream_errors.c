/* test_stream_errors.c — what the stream tools do with bad samples, cut streams and old output:
 * the shared filter loop (stream_map.c) and the sharder (shard.c) skip and count every bad key
 * shape at the start, middle and end of a stream in both framings and write no empty shard; a
 * failed run leaves no output under its final name; shard series of two runs never mix; the
 * progress-line rule; keys shown safely in messages. */
#include "test.h"
#include "base/buf.h"
#include "base/error.h"
#include "base/log.h"
#include "io/sample.h"
#include "io/shard.h"
#include "io/stream.h"
#include "io/stream_map.h"

#include <archive.h>
#include <archive_entry.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <msgpack.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers -------------------------------------------------------------------------- */

static void tpath(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", dfm_test_tmpdir(), name);
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* The keys of a 5-sample stream whose sample `bad_at` has key `bad` (field `bad_field` instead
 * of "txt" when given); bad_at >= 5: all good. */
static const char *good_keys[] = {"g0", "g1", "g2", "g3", "g4"};

static const char *key_at(int i, int bad_at, const char *bad)
{
    if (i == bad_at) return bad;
    return good_keys[i < bad_at ? i : i - 1];
}

static int sbuf_write(void *data, const char *buf, size_t len)
{
    return msgpack_sbuffer_write(data, buf, len);
}

/* A msgpack stream as a third party (or a fuzzer) may send it: the bad key goes through.
 * with_control adds dfm's begin and end records. */
static void write_mp_input(const char *path, int bad_at, const char *bad, const char *bad_field,
                           int with_control)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, sbuf_write);
    if (with_control) {
        msgpack_pack_map(&pk, 1);
        msgpack_pack_str_with_body(&pk, "__dfm_stream__", 14);
        msgpack_pack_uint64(&pk, 1);
    }
    for (int i = 0; i < 5; i++) {
        const char *k = key_at(i, bad_at, bad);
        const char *f = i == bad_at && bad_field ? bad_field : "txt";
        msgpack_pack_map(&pk, 3);
        msgpack_pack_str_with_body(&pk, "__key__", 7);
        msgpack_pack_str_with_body(&pk, k, strlen(k));
        msgpack_pack_str_with_body(&pk, f, strlen(f));
        msgpack_pack_bin_with_body(&pk, "caption", 7);
        msgpack_pack_str_with_body(&pk, "json", 4);
        msgpack_pack_bin_with_body(&pk, "{}", 2);
    }
    if (with_control) {
        msgpack_pack_map(&pk, 1);
        msgpack_pack_str_with_body(&pk, "__dfm_end__", 11);
        msgpack_pack_uint64(&pk, 5);
    }
    FILE *fp = fopen(path, "wb");
    fwrite(sb.data, 1, sb.size, fp);
    fclose(fp);
    msgpack_sbuffer_destroy(&sb);
}

/* The same samples as a tar (members KEY.txt, KEY.json) written by libarchive directly. */
static void write_tar_input(const char *path, int bad_at, const char *bad, const char *bad_field)
{
    struct archive *a = archive_write_new();
    archive_write_set_format_ustar(a);
    archive_write_open_filename(a, path);
    struct archive_entry *e = archive_entry_new();
    char name[256];
    for (int i = 0; i < 5; i++) {
        for (int f = 0; f < 2; f++) {
            const char *field = f ? "json" : i == bad_at && bad_field ? bad_field : "txt";
            const char *data = f ? "{}" : "caption";
            snprintf(name, sizeof name, "%s.%s", key_at(i, bad_at, bad), field);
            archive_entry_clear(e);
            archive_entry_copy_pathname(e, name);
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_size(e, (la_int64_t)strlen(data));
            archive_entry_set_perm(e, 0444);
            archive_write_header(a, e);
            archive_write_data(a, data, strlen(data));
        }
    }
    archive_entry_free(e);
    archive_write_close(a);
    archive_write_free(a);
}

/* Read path back: the keys joined with ',' into out; returns the reader's final status. */
static int keys_of(const char *path, char *out, size_t n)
{
    out[0] = 0;
    dfm_reader *r;
    int rc = dfm_reader_open(&r, path, 0);
    if (rc) return rc;
    dfm_sample s;
    dfm_sample_init(&s);
    while ((rc = dfm_reader_next(r, &s)) == 1)
        snprintf(out + strlen(out), n - strlen(out), "%s%s", out[0] ? "," : "", s.key);
    dfm_sample_free(&s);
    dfm_reader_close(r);
    return rc;
}

static int shard_sink(void *ctx, const dfm_sample *s) { return dfm_sharder_put(ctx, s); }

static int g_run; /* a fresh name for every run's output */

/* One input through the shared loop into `how`: 0 msgpack file, 1 tar file, 2 shards of at most
 * two samples. Checks the counts and that the four good samples arrive, in order, complete. */
static void sweep_one(const char *input, const char *label, int how)
{
    char out[512], got[512], dir[512];
    g_run++;
    dfm_map_opts mo = {.framing = how == 1 ? DFM_FRAMING_TAR : DFM_FRAMING_MSGPACK};
    dfm_sharder *sh = NULL;
    if (how < 2) {
        snprintf(out, sizeof out, "%s/out%d", dfm_test_tmpdir(), g_run);
        mo.output = out;
    } else {
        snprintf(dir, sizeof dir, "%s/shards%d", dfm_test_tmpdir(), g_run);
        snprintf(out, sizeof out, "%s/t-%%03d.tar", dir);
        dfm_shard_opts so = {.pattern = out, .max_count = 2};
        CHECK_EQ(dfm_sharder_new(&sh, &so), 0);
        mo.sink = shard_sink;
        mo.sink_ctx = sh;
    }
    dfm_counts c;
    dfm_counts_init(&c);
    char *inputs[] = {(char *)input};
    int status = dfm_stream_map(&mo, inputs, 1, NULL, NULL, &c);
    int fails = dfm_test_failures;
    CHECK_EQ(status, 0);
    CHECK_EQ(c.read, 5);
    CHECK_EQ(c.written, 4);
    CHECK_EQ(c.skipped, 1);
    if (how < 2) {
        CHECK_EQ(keys_of(out, got, sizeof got), 0);
        CHECK_STR(got, "g0,g1,g2,g3");
    } else {
        int nshards = 0;
        uint64_t nsamples = 0;
        CHECK_EQ(dfm_sharder_close(sh, status != 0, &nshards, &nsamples), 0);
        CHECK_EQ(nshards, 2); /* 2 + 2: the bad sample opened no shard of its own */
        CHECK_EQ(nsamples, 4);
        char p[600], all[512] = "";
        for (int i = 0; i < 3; i++) {
            snprintf(p, sizeof p, "%s/t-%03d.tar", dir, i);
            if (i == 2) {
                CHECK(!exists(p)); /* no empty third shard */
                continue;
            }
            CHECK_EQ(keys_of(p, got, sizeof got), 0);
            snprintf(all + strlen(all), sizeof all - strlen(all), "%s%s", all[0] ? "," : "", got);
        }
        CHECK_STR(all, "g0,g1,g2,g3");
    }
    if (dfm_test_failures != fails) fprintf(stderr, "  (bad sample: %s, output %d)\n", label, how);
}

/* ---- bad samples: skipped and counted, never the end of the run ----------------------- */

TEST(stream_map_bad_keys_msgpack)
{
    dfm_progress_mode(DFM_PROGRESS_OFF);
    /* every key shape a writer refuses, as a msgpack reader lets it through */
    const char *bad_keys[] = {"a.b",    "dir/a.b", "",         ".",        "..",       "a/../b",
                              "./a",    "/abs",    "a//b",     "a/",       "__meta__", "__x__/y",
                              "bad\xff", "\xc3(",  "\xed\xa0\x80", "x\x01y.z"};
    const char *bad_fields[] = {"TXT", "a/b", "f\xff"};
    int nk = (int)(sizeof bad_keys / sizeof *bad_keys), nf = 3;
    char in[512], label[64];
    tpath(in, sizeof in, "bad.mp");
    for (int i = 0; i < nk + nf; i++)
        for (int at = 0; at < 5; at += 2) { /* start, middle, end */
            const char *k = i < nk ? bad_keys[i] : "badfield";
            const char *f = i < nk ? NULL : bad_fields[i - nk];
            int ctl = (i + at / 2) % 2; /* with and without dfm's control records */
            write_mp_input(in, at, k, f, ctl);
            snprintf(label, sizeof label, "#%d at %d%s", i, at, ctl ? " (dfm stream)" : "");
            /* into a msgpack stream always; into shards (where a bad first sample used to
             * leave an empty shard) and a tar stream in turns, to keep the test quick */
            sweep_one(in, label, 0);
            sweep_one(in, label, at == 2 ? 1 : 2);
        }
}

TEST(stream_map_bad_keys_tar)
{
    dfm_progress_mode(DFM_PROGRESS_OFF);
    /* the shapes a tar member name can carry (a key never has a dot in its last component
     * there; field names are lower-cased by the reader) */
    const char *bad_keys[] = {"a/../b", "./a", "/abs", "a//b", "bad\xff"};
    int nk = (int)(sizeof bad_keys / sizeof *bad_keys);
    char in[512], label[64];
    tpath(in, sizeof in, "bad.tar");
    for (int i = 0; i <= nk; i++)
        for (int at = 0; at < 5; at += 2) {
            const char *k = i < nk ? bad_keys[i] : "badfield";
            write_tar_input(in, at, k, i < nk ? NULL : "t\xffxt");
            snprintf(label, sizeof label, "tar #%d at %d", i, at);
            sweep_one(in, label, 0);
            sweep_one(in, label, at == 2 ? 1 : 2);
        }
}

TEST(stream_map_strict_and_truncated)
{
    dfm_progress_mode(DFM_PROGRESS_OFF);
    char in[512], out[512];
    tpath(in, sizeof in, "strict.mp");
    tpath(out, sizeof out, "strict.out");
    write_mp_input(in, 2, "a.b", NULL, 1);
    char *inputs[] = {in};
    dfm_map_opts mo = {.output = out, .strict = 1};
    dfm_counts c;
    dfm_counts_init(&c);
    CHECK_EQ(dfm_stream_map(&mo, inputs, 1, NULL, NULL, &c), 1);
    CHECK_EQ(c.skipped, 1);
    CHECK(!exists(out)); /* a failed run leaves nothing under the final name */
    /* a truncated input (no end record): exit 1, no output file, samples before it counted */
    dfm_buf b = {0};
    write_mp_input(in, 9, "", NULL, 1); /* all good */
    CHECK_EQ(dfm_read_file(in, 0, &b), 0);
    FILE *fp = fopen(in, "wb");
    fwrite(b.data, 1, b.len - 14, fp); /* without {"__dfm_end__": 5} */
    fclose(fp);
    dfm_buf_free(&b);
    mo.strict = 0;
    dfm_counts_init(&c);
    CHECK_EQ(dfm_stream_map(&mo, inputs, 1, NULL, NULL, &c), 1);
    CHECK_EQ(c.read, 5);
    CHECK(strstr(dfm_errmsg(), "input truncated (did the previous stage fail?)") != NULL);
    CHECK(!exists(out));
    /* the same into shards: complete shards stay, the open one never gets its final name */
    char pat[512], p[600];
    tpath(pat, sizeof pat, "trunc-shards/t-%03d.tar");
    dfm_shard_opts so = {.pattern = pat, .max_count = 2};
    dfm_sharder *sh;
    CHECK_EQ(dfm_sharder_new(&sh, &so), 0);
    dfm_map_opts ms = {.sink = shard_sink, .sink_ctx = sh};
    dfm_counts_init(&c);
    int status = dfm_stream_map(&ms, inputs, 1, NULL, NULL, &c);
    CHECK_EQ(status, 1);
    int nshards;
    uint64_t nsamples;
    CHECK_EQ(dfm_sharder_close(sh, status != 0, &nshards, &nsamples), 0);
    CHECK_EQ(nshards, 2);
    CHECK_EQ(nsamples, 4);
    tpath(p, sizeof p, "trunc-shards/t-002.tar");
    CHECK(!exists(p));
    tpath(p, sizeof p, "trunc-shards/t-002.tar.tmp");
    CHECK(!exists(p));
    tpath(p, sizeof p, "trunc-shards/index.json");
    dfm_buf ix = {0};
    CHECK_EQ(dfm_read_file(p, 0, &ix), 0);
    cJSON *j = cJSON_ParseWithLength((const char *)ix.data, ix.len);
    cJSON *d = cJSON_GetObjectItem(j, "dfm");
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(d, "complete")));
    CHECK_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(j, "shardlist")), 2);
    cJSON_Delete(j);
    dfm_buf_free(&ix);
}

/* A writer that stops early hands over what it wrote but no end mark, in every framing. */
TEST(stream_writer_abort_no_end_mark)
{
    char path[512];
    tpath(path, sizeof path, "abort.out");
    dfm_sample s;
    dfm_sample_init(&s);
    dfm_sample_set_key(&s, "k");
    dfm_sample_set_str(&s, "txt", "x");
    for (int v = 0; v < 4; v++) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dfm_writer *w;
        CHECK_EQ(dfm_writer_open_fd(&w, fd, v & 1 ? DFM_FRAMING_TAR : DFM_FRAMING_MSGPACK,
                                    v & 2 ? 3 : 0), 0);
        CHECK_EQ(dfm_writer_put(w, &s), 0);
        dfm_writer_abort(w);
        close(fd);
        char got[64];
        CHECK_EQ(keys_of(path, got, sizeof got), DFM_E_FORMAT);
        CHECK(strstr(dfm_errmsg(), "input truncated (did the previous stage fail?)") != NULL);
        if (!(v & 1)) CHECK_STR(got, "k"); /* msgpack hands the sample over before the error */
        if (dfm_test_failures) fprintf(stderr, "  (variant %d: %s)\n", v, dfm_errmsg());
    }
    dfm_sample_free(&s);
}

/* ---- shard series: two runs never mix ------------------------------------------------- */

static void touch(const char *dir, const char *name)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (f) fclose(f);
}

TEST(shard_series_never_mixes)
{
    char dir[512], pat[600], first[4096], p[1024];
    tpath(dir, sizeof dir, "series");
    mkdir(dir, 0755);
    snprintf(pat, sizeof pat, "%s/train-%%06d.tar", dir);
    CHECK_EQ(dfm_shard_existing(pat, first, sizeof first), 0);
    /* what belongs to the series, each alone: a shard, the other compression, a .tmp, the index,
     * a shard in a bucket directory */
    const char *theirs[] = {"train-000003.tar", "train-000000.tar.zst", "train-000001.tar.tmp",
                            "index.json", "64x64x1/train-000000.tar", "unbucketed/train-7.tar.zst"};
    mkdir((snprintf(p, sizeof p, "%s/64x64x1", dir), p), 0755);
    mkdir((snprintf(p, sizeof p, "%s/unbucketed", dir), p), 0755);
    /* what does not: other names, other series, other directories */
    const char *others[] = {"train-abc.tar", "val-000000.tar", "train-000000.txt", "notes.json"};
    for (int i = 0; i < 4; i++) touch(dir, others[i]);
    mkdir((snprintf(p, sizeof p, "%s/keep", dir), p), 0755);
    touch(dir, "keep/train-000000.tar");
    CHECK_EQ(dfm_shard_existing(pat, NULL, 0), 0);
    for (int i = 0; i < 6; i++) {
        touch(dir, theirs[i]);
        dfm_shard_opts so = {.pattern = pat};
        dfm_sharder *sh;
        CHECK_EQ(dfm_sharder_new(&sh, &so), DFM_E_IO);
        CHECK(strstr(dfm_errmsg(), theirs[i]) && strstr(dfm_errmsg(), "earlier run"));
        /* the same series under .tar.zst and by bucket is refused too */
        snprintf(p, sizeof p, "%s/train-%%06d.tar.zst", dir);
        dfm_shard_opts sz = {.pattern = p, .by_bucket = 1};
        CHECK_EQ(dfm_sharder_new(&sh, &sz), DFM_E_IO);
        /* --overwrite removes it (and an emptied bucket directory), and nothing else */
        so.overwrite = 1;
        CHECK_EQ(dfm_sharder_new(&sh, &so), 0);
        if (sh) CHECK_EQ(dfm_sharder_close(sh, 0, NULL, NULL), 0); /* writes an empty index */
        snprintf(p, sizeof p, "%s/%s", dir, theirs[i]);
        if (strcmp(theirs[i], "index.json")) CHECK(!exists(p));
        CHECK_EQ(dfm_shard_existing(pat, first, sizeof first), 1); /* the new index.json */
        snprintf(p, sizeof p, "%s/index.json", dir);
        CHECK_STR(first, p);
        unlink(p);
    }
    snprintf(p, sizeof p, "%s/64x64x1", dir);
    CHECK(!exists(p));
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, others[i]);
        CHECK(exists(p));
    }
    snprintf(p, sizeof p, "%s/keep/train-000000.tar", dir);
    CHECK(exists(p));
}

/* ---- the progress rule and keys in messages ------------------------------------------- */

TEST(progress_one_line_per_pipeline)
{
    /* the last stage draws: stdout not a pipe, or files written; never without a terminal */
    CHECK_EQ(dfm_progress_auto(1, 0, 0), 1); /* dfm-x > file, or to the terminal */
    CHECK_EQ(dfm_progress_auto(1, 1, 0), 0); /* dfm-x | next stage */
    CHECK_EQ(dfm_progress_auto(1, 1, 1), 1); /* -o FILE / shards, stdout piped anyway */
    CHECK_EQ(dfm_progress_auto(0, 0, 1), 0); /* stderr is not a terminal */
    CHECK_EQ(dfm_progress_auto(0, 0, 0), 0);
}

TEST(key_show_is_safe)
{
    char b[32];
    CHECK_STR(dfm_key_show("plain/key", b, sizeof b), "plain/key");
    CHECK_STR(dfm_key_show("tab\there\x1b[2J", b, sizeof b), "tab\\x09here\\x1b[2J");
    CHECK_STR(dfm_key_show("bad\xff\xc3(", b, sizeof b), "bad\\xff\\xc3(");
    CHECK_STR(dfm_key_show("caf\xc3\xa9", b, sizeof b), "caf\xc3\xa9");
    dfm_key_show("a-very-long-key-that-goes-on-and-on-and-on", b, sizeof b);
    CHECK(strlen(b) < sizeof b && !strcmp(b + strlen(b) - 3, "..."));
}
