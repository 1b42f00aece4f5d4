/* test_base.c — base layer and sample: errors, buffers, keys, JSON field. */
#include "test.h"
#include "base/buf.h"
#include "base/error.h"
#include "io/sample.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

TEST(error_message)
{
    CHECK_EQ(dfm_fail(DFM_E_FORMAT, "bad %s", "thing"), DFM_E_FORMAT);
    CHECK_STR(dfm_errmsg(), "bad thing");
    dfm_fail_ctx(DFM_E_FORMAT, "file '%s'", "x");
    CHECK_STR(dfm_errmsg(), "file 'x': bad thing");
}

TEST(buf_append_printf)
{
    dfm_buf b = {0};
    CHECK_EQ(dfm_buf_append(&b, "ab", 2), 0);
    CHECK_EQ(dfm_buf_printf(&b, "%d-%s", 42, "z"), 0);
    CHECK_EQ(b.len, 6);
    CHECK_STR((char *)b.data, "ab42-z");
    for (int i = 0; i < 10000; i++) dfm_buf_append(&b, "x", 1);
    CHECK_EQ(b.len, 10006);
    dfm_buf_free(&b);
}

TEST(key_escape_roundtrip)
{
    const char *cases[] = {"dir/clip.mp4", "a b.c%d@e", "snow_fox-1", "ünï/cödé.jpg", "",
                           "bad\xff\xc3(.jpg", "\xed\xa0\x80s"};
    const char *want[] = {"dir%2Fclip%2Emp4", "a%20b%2Ec%25d%40e", "snow_fox-1",
                          "ünï%2Fcödé%2Ejpg", "", "bad%FF%C3%28%2Ejpg", "%ED%A0%80s"};
    for (int i = 0; i < 7; i++) {
        char *k = dfm_key_escape(cases[i]);
        CHECK_STR(k, want[i]);
        CHECK(!strchr(k, '.') && !strchr(k, '/') && !strchr(k, '@'));
        char *u = dfm_key_unescape(k);
        CHECK_STR(u, cases[i]);
        free(k);
        free(u);
    }
}

TEST(sample_fields)
{
    dfm_sample s;
    dfm_sample_init(&s);
    dfm_sample_set_key(&s, "k1");
    dfm_sample_set_str(&s, "txt", "hello");
    dfm_sample_set(&s, "frames.npy", "\x93NUMPY", 6);
    dfm_sample_set_str(&s, "txt", "hi");
    CHECK_EQ(s.n, 2);
    CHECK_STR((char *)dfm_sample_get(&s, "txt")->data, "hi");
    CHECK_EQ(dfm_sample_bytes(&s), 8);
    dfm_sample t;
    dfm_sample_init(&t);
    CHECK_EQ(dfm_sample_copy(&t, &s), 0);
    CHECK_STR(t.key, "k1");
    dfm_sample_del(&s, "txt");
    CHECK(dfm_sample_get(&s, "txt") == NULL);
    CHECK(dfm_sample_get(&t, "txt") != NULL);
    dfm_sample_free(&s);
    dfm_sample_free(&t);
}

TEST(sample_json_field)
{
    dfm_sample s;
    dfm_sample_init(&s);
    cJSON *j = NULL;
    CHECK_EQ(dfm_sample_json(&s, &j), 0);
    cJSON_AddNumberToObject(j, "width", 640);
    CHECK_EQ(dfm_sample_set_json(&s, j), 0);
    cJSON_Delete(j);
    CHECK_STR((char *)dfm_sample_get(&s, "json")->data, "{\"width\":640}");
    dfm_sample_set_str(&s, "json", "[1,2]");
    CHECK_EQ(dfm_sample_json(&s, &j), DFM_E_FORMAT);
    dfm_sample_set_str(&s, "json", "{\"a\":");
    CHECK_EQ(dfm_sample_json(&s, &j), DFM_E_FORMAT);
    dfm_sample_free(&s);
}

#include "base/strset.h"
TEST(strset_add_has)
{
    dfm_strset s = {0};
    char k[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(k, sizeof k, "key%d", i);
        CHECK_EQ(dfm_strset_add(&s, k), 1);
    }
    CHECK_EQ(dfm_strset_add(&s, "key7"), 0);
    CHECK(dfm_strset_has(&s, "key999"));
    CHECK(!dfm_strset_has(&s, "key1000"));
    CHECK_EQ(s.n, 1000);
    dfm_strset_free(&s);
}

#include "base/utf8.h"
TEST(utf8_valid_sanitize)
{
    CHECK(dfm_utf8_valid("caf\xc3\xa9 \xf0\x9f\xa6\x8a", 10));
    CHECK(!dfm_utf8_valid("caf\xe9", 4));          /* Latin-1 */
    CHECK(!dfm_utf8_valid("\xc3", 1));             /* cut short */
    CHECK(!dfm_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    CHECK(!dfm_utf8_valid("\xc0\xaf", 2));         /* overlong */
    CHECK(!dfm_utf8_valid("a\0b", 3));
    char *s = dfm_utf8_sanitize("caf\xe9!");
    CHECK_STR(s, "caf\xef\xbf\xbd!");
    free(s);
}

#include "base/rng.h"
TEST(philox_known_answer)
{
    /* Random123 known-answer test vectors for philox4x32-10. */
    uint32_t out[4];
    const uint32_t z4[4] = {0, 0, 0, 0}, z2[2] = {0, 0};
    dfm_philox4x32(z4, z2, out);
    CHECK_EQ(out[0], 0x6627e8d5u);
    CHECK_EQ(out[1], 0xe169c58du);
    CHECK_EQ(out[2], 0xbc57ac4cu);
    CHECK_EQ(out[3], 0x9b00dbd8u);
    const uint32_t f4[4] = {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, f2[2] = {0xffffffffu, 0xffffffffu};
    dfm_philox4x32(f4, f2, out);
    CHECK_EQ(out[0], 0x408f276du);
    CHECK_EQ(out[1], 0x41c83b0eu);
    CHECK_EQ(out[2], 0xa20bc7c6u);
    CHECK_EQ(out[3], 0x6d5451fdu);
}

TEST(randn_moments_and_determinism)
{
    enum { N = 200001 };
    float *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b);
    dfm_randn(42, 7, a, N);
    dfm_randn(42, 7, b, N);
    CHECK(memcmp(a, b, N * sizeof *a) == 0);
    double m = 0, v = 0;
    for (int i = 0; i < N; i++) m += a[i];
    m /= N;
    for (int i = 0; i < N; i++) v += (a[i] - m) * (a[i] - m);
    v /= N;
    CHECK_NEAR(m, 0.0, 0.01);
    CHECK_NEAR(v, 1.0, 0.01);
    dfm_randn(43, 7, b, N);
    CHECK(memcmp(a, b, N * sizeof *a) != 0);
    free(a), free(b);
}

/* dfm_fail may wrap the last message: dfm_fail(rc, "ctx: %s", dfm_errmsg()) */
TEST(error_fail_wraps_own_message)
{
    dfm_fail(DFM_E_IO, "inner reason %d", 7);
    dfm_fail(DFM_E_ARG, "outer '%s': %s", "x", dfm_errmsg());
    CHECK_STR(dfm_errmsg(), "outer 'x': inner reason 7");
    dfm_fail(DFM_E_ARG, "%s and %s", dfm_errmsg(), dfm_errmsg());
    CHECK_STR(dfm_errmsg(), "outer 'x': inner reason 7 and outer 'x': inner reason 7");
}
