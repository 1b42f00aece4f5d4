/* test_shard_keys.c — the keys in a directory's complete shards (io/shard_keys.h): which files
 * count (final names only; bucket and part directories), key bases next to names that share a
 * prefix ("a" against "a0", "a%2E"), the frontier of each series, and --resume's numbering. */
#include "test.h"
#include "base/buf.h"
#include "base/error.h"
#include "io/shard.h"
#include "io/shard_keys.h"
#include "io/sample.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void put(dfm_sharder *sh, const char *key)
{
    dfm_sample s;
    dfm_sample_init(&s);
    dfm_sample_set_key(&s, key);
    dfm_sample_set_str(&s, "txt", key);
    CHECK_EQ(dfm_sharder_put(sh, &s), 0);
    dfm_sample_free(&s);
}

TEST(shard_keys_bases_and_frontier)
{
    char dir[4096], pat[4200], path[4300];
    snprintf(dir, sizeof dir, "%s/shard_keys", dfm_test_tmpdir());
    snprintf(pat, sizeof pat, "%s/t-%%03d.tar", dir);
    dfm_shard_opts o = {.pattern = pat, .max_count = 3, .overwrite = 1};
    dfm_sharder *sh;
    CHECK_EQ(dfm_sharder_new(&sh, &o), 0);
    /* shard 0: a a@c1 a0 | shard 1: a%2E b b@f3 | shard 2: b@f7 (cut: b is the frontier) */
    const char *keys[] = {"a", "a@c1", "a0", "a%2E", "b", "b@f3", "b@f7"};
    for (int i = 0; i < 7; i++) put(sh, keys[i]);
    CHECK_EQ(dfm_sharder_close(sh, 0, NULL, NULL), 0);
    /* a stray .tmp and an unrelated file are not shards */
    snprintf(path, sizeof path, "%s/t-009.tar.tmp", dir);
    CHECK_EQ(dfm_write_file_atomic(path, "junk", 4), 0);
    snprintf(path, sizeof path, "%s/notes.txt", dir);
    CHECK_EQ(dfm_write_file_atomic(path, "x", 1), 0);
    dfm_done_keys *d;
    CHECK_EQ(dfm_done_keys_load(&d, dir), 0);
    if (!d) return;
    CHECK_EQ((int)dfm_done_keys_count(d), 7);
    CHECK_EQ(dfm_done_keys_shards(d), 3);
    CHECK(dfm_done_keys_has(d, "a@c1") && dfm_done_keys_has(d, "a0") && !dfm_done_keys_has(d, "a@c2"));
    size_t first;
    int fr;
    CHECK_EQ((int)dfm_done_keys_base(d, "a", &first, &fr), 2); /* a, a@c1; not a0, a%2E */
    CHECK_STR(dfm_done_keys_at(d, first), "a");
    CHECK_STR(dfm_done_keys_at(d, first + 1), "a@c1");
    CHECK_EQ(fr, 0);
    CHECK_EQ((int)dfm_done_keys_base(d, "a0", NULL, &fr), 1);
    CHECK_EQ((int)dfm_done_keys_base(d, "a%2E", NULL, &fr), 1);
    CHECK_EQ((int)dfm_done_keys_base(d, "b", NULL, &fr), 3);
    CHECK_EQ(fr, 1); /* the last sample of the last shard */
    CHECK_EQ((int)dfm_done_keys_base(d, "c", NULL, &fr), 0);
    dfm_done_keys_free(d);
    /* --resume: the .tmp goes, numbering goes on at 3, the index keeps the 3 shards */
    o.overwrite = 0, o.resume = 1;
    CHECK_EQ(dfm_sharder_new(&sh, &o), 0);
    snprintf(path, sizeof path, "%s/t-009.tar.tmp", dir);
    CHECK(access(path, F_OK) != 0);
    put(sh, "c");
    int nshards = 0, kept = 0;
    uint64_t n = 0, kept_n = 0;
    dfm_sharder_kept(sh, &kept, &kept_n);
    CHECK_EQ(dfm_sharder_close(sh, 0, &nshards, &n), 0);
    CHECK(kept == 3 && kept_n == 7 && nshards == 4 && n == 8);
    snprintf(path, sizeof path, "%s/t-003.tar", dir);
    CHECK(access(path, F_OK) == 0);
    CHECK_EQ(dfm_done_keys_load(&d, dir), 0);
    if (!d) return;
    CHECK_EQ((int)dfm_done_keys_base(d, "b", NULL, &fr), 3);
    CHECK_EQ(fr, 0); /* the frontier moved to c */
    CHECK_EQ((int)dfm_done_keys_base(d, "c", NULL, &fr), 1);
    CHECK_EQ(fr, 1);
    dfm_done_keys_free(d);
    /* other options are refused, naming the difference */
    o.max_count = 4;
    CHECK_EQ(dfm_sharder_new(&sh, &o), DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "--max-count 3, this run has --max-count 4") != NULL);
    /* a directory that does not exist: nothing done */
    snprintf(path, sizeof path, "%s/none", dir);
    CHECK_EQ(dfm_done_keys_load(&d, path), 0);
    if (d) CHECK_EQ((int)dfm_done_keys_count(d), 0);
    dfm_done_keys_free(d);
}
