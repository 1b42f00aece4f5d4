/* test_loader_limits.c — the loaders of model configs and tokenizers against hostile files
 * (issue 8, items 11-14): config sizes range-checked in int64 (no truncation of 4294967297 to 1,
 * no overflowing products, no zero or negative multipliers), weight shapes checked against the
 * safetensors header before anything is allocated, every tokenizer string validated as UTF-8
 * before use, an absent protobuf field never a NULL pointer, and a million added tokens loading
 * in linear time. The same inputs are replayed as fuzz crashes (tests/fuzz/crashes/). */
#include "test.h"
#include "base/buf.h"
#include "base/error.h"
#include "io/hfmodel.h"
#include "io/safetensors.h"
#include "models/wan/umt5.h"
#include "models/wan/vae.h"
#include "text/tokenizer.h"
#include "text/tokenizer_impl.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

/* A fresh directory tmp/name holding config.json = text; its path in dir[cap]. */
static void config_dir(const char *name, const char *text, char *dir, size_t cap)
{
    snprintf(dir, cap, "%s/limits-%s", dfm_test_tmpdir(), name);
    mkdir(dir, 0755);
    char p[700];
    snprintf(p, sizeof p, "%s/config.json", dir);
    if (dfm_write_file_atomic(p, text, strlen(text))) {
        fprintf(stderr, "  cannot write %s\n", p);
        dfm_test_failures++;
    }
}

/* rc must be `want` with every string of has[] (NULL-terminated) in the message. */
static void expect(int rc, int want, const char *const *has, const char *what)
{
    if (rc != want) {
        fprintf(stderr, "  %s: rc %d, expected %d (%s)\n", what, rc, want, rc ? dfm_errmsg() : "no error");
        dfm_test_failures++;
        return;
    }
    for (int i = 0; has && has[i]; i++)
        if (!strstr(dfm_errmsg(), has[i])) {
            fprintf(stderr, "  %s: message lacks '%s': %s\n", what, has[i], dfm_errmsg());
            dfm_test_failures++;
        }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

TEST(hf_int_range_getters)
{
    char d[600];
    config_dir("range", "{\"a\": 5, \"b\": 4294967297, \"c\": -1, \"big\": 2147483648, \"arr\": [1, 0, 3], "
                        "\"ok\": [2, 4], \"f\": 2.5, \"n\": null, \"s\": \"\xC3\"}", d, sizeof d);
    dfm_hf_config c;
    CHECK_EQ(dfm_hf_config_load(&c, d), 0);
    int64_t v = 0, arr[4];
    int n = -1;
    CHECK_EQ(dfm_hf_int_range(&c, "a", 1, 0, 1, 10, &v), 0);
    CHECK_EQ(v, 5);
    v = 77;
    expect(dfm_hf_int_range(&c, "b", 1, 0, 1, INT32_MAX, &v), DFM_E_FORMAT,
           (const char *[]){"config.json", "'b'", "4294967297", "[1, 2147483647]", NULL}, "b");
    CHECK_EQ(v, 77); /* untouched on error */
    expect(dfm_hf_int_range(&c, "c", 1, 0, 0, 10, &v), DFM_E_FORMAT, (const char *[]){"'c'", "-1", NULL}, "c");
    expect(dfm_hf_int_range(&c, "big", 1, 0, 1, INT32_MAX, &v), DFM_E_FORMAT, (const char *[]){"2147483648", NULL},
           "big");
    expect(dfm_hf_int_range(&c, "f", 1, 0, 0, 10, &v), DFM_E_FORMAT, (const char *[]){"'f'", "integer", NULL}, "f");
    /* missing or null: the default, itself range-checked */
    CHECK_EQ(dfm_hf_int_range(&c, "missing", 0, 7, 1, 10, &v), 0);
    CHECK_EQ(v, 7);
    CHECK_EQ(dfm_hf_int_range(&c, "n", 0, 3, 1, 10, &v), 0);
    CHECK_EQ(v, 3);
    expect(dfm_hf_int_range(&c, "missing", 0, 11, 1, 10, &v), DFM_E_FORMAT, (const char *[]){"11", NULL}, "def");
    expect(dfm_hf_int_range(&c, "missing", 1, 5, 1, 10, &v), DFM_E_FORMAT, (const char *[]){"missing", NULL},
           "required");
    expect(dfm_hf_int_array_range(&c, "arr", 1, 1, 10, arr, 4, &n), DFM_E_FORMAT,
           (const char *[]){"'arr'", "element 1", "is 0", NULL}, "arr");
    CHECK_EQ(n, 0);
    CHECK_EQ(dfm_hf_int_array_range(&c, "ok", 1, 1, 10, arr, 4, &n), 0);
    CHECK_EQ(n, 2);
    CHECK_EQ(arr[1], 4);
    const char *str = NULL;
    expect(dfm_hf_str(&c, "s", 1, NULL, &str), DFM_E_FORMAT, (const char *[]){"'s'", "UTF-8", NULL}, "str");
    CHECK(str == NULL);
    dfm_hf_config_free(&c);
}

static void vae_config_fails(const char *name, const char *json, const char *const *has)
{
    char d[600];
    config_dir(name, json, d, sizeof d);
    dfm_wan_vae_config cfg;
    expect(dfm_wan_vae_config_load(&cfg, d), DFM_E_FORMAT, has, name);
}

TEST(wan_vae_config_range_checked)
{
    /* issue 8 item 13: each of these used to load */
    vae_config_fails("vae-intmax", "{\"base_dim\": 2147483647}", (const char *[]){"'base_dim'", "2147483647", NULL});
    vae_config_fails("vae-2p32", "{\"base_dim\": 4294967297}", (const char *[]){"'base_dim'", "4294967297", NULL});
    vae_config_fails("vae-z", "{\"z_dim\": 4294967312}", (const char *[]){"'z_dim'", NULL});
    vae_config_fails("vae-20m", "{\"_class_name\":\"AutoencoderKLWan\",\"base_dim\":20000000}",
                     (const char *[]){"'base_dim'", "20000000", NULL});
    vae_config_fails("vae-mult0", "{\"dim_mult\": [1, 0, 4, 4]}", (const char *[]){"'dim_mult' element 1", NULL});
    vae_config_fails("vae-multneg", "{\"dim_mult\": [1, 2, -4, 4]}", (const char *[]){"element 2", "-4", NULL});
    vae_config_fails("vae-product", "{\"base_dim\": 65536, \"dim_mult\": [1024, 1024], \"temperal_downsample\": [true]}",
                     (const char *[]){"channels", "base_dim 65536", NULL});
    vae_config_fails("vae-halved", "{\"base_dim\": 1, \"dim_mult\": [1, 1], \"temperal_downsample\": [true]}",
                     (const char *[]){"halved", NULL});
    vae_config_fails("vae-onelevel", "{\"dim_mult\": [2], \"temperal_downsample\": []}",
                     (const char *[]){"dim_mult", NULL});
    vae_config_fails("vae-std0", "{\"z_dim\": 2, \"latents_mean\": [0, 0], \"latents_std\": [1, 0]}",
                     (const char *[]){"latents_std", NULL});
    vae_config_fails("vae-res", "{\"num_res_blocks\": 100000}", (const char *[]){"'num_res_blocks'", NULL});
    /* the fixtures' configs still load */
    char p[600];
    dfm_wan_vae_config cfg;
    snprintf(p, sizeof p, "%s/wan_vae/tiny", dfm_test_fixtures());
    CHECK_EQ(dfm_wan_vae_config_load(&cfg, p), 0);
    CHECK_EQ(cfg.base_dim, 4);
    CHECK_EQ(cfg.n_levels, 4);
    CHECK_EQ(cfg.has_latents_stats, 1);
}

/* Writes dir/model.safetensors holding encoder.conv_in.weight of the given shape (F32, zeros). */
static void weights_with_conv_in(const char *dir, const int64_t *shape)
{
    static float zeros[64];
    dfm_st_entry e = {"encoder.conv_in.weight", DFM_F32, 5, {shape[0], shape[1], shape[2], shape[3], shape[4]}, zeros};
    char p[700];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    CHECK_EQ(dfm_st_write(p, &e, 1, NULL), 0);
}

TEST(wan_vae_load_checks_shapes_before_allocating)
{
    /* A config within the limits that declares a 7.2 GB first weight ([65536, 1024, 3, 3, 3] F32)
     * against a file holding a small tensor of that name: the loader must compare the shapes in
     * the header and fail there, without allocating. In a child limited to 1 GiB more data than
     * it has, an allocation first would come back DFM_E_NOMEM (or not at all). */
    char d[600];
    config_dir("vae-huge", "{\"_class_name\":\"AutoencoderKLWan\",\"base_dim\":65536,\"dim_mult\":[16,16],"
                           "\"temperal_downsample\":[true],\"in_channels\":1024}", d, sizeof d);
    int64_t small[5] = {2, 1, 1, 1, 1};
    weights_with_conv_in(d, small);
    dfm_wan_vae_opts o = {DFM_CPU, DFM_F32, 1, 1};
    dfm_wan_vae *v = NULL;
#ifndef UNDER_ASAN /* ASan reserves terabytes of shadow: a data limit would stop it, not us */
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        struct rlimit rl;
        long pages = 0, skip[5]; /* statm: size resident shared text lib data */
        FILE *f = fopen("/proc/self/statm", "r");
        if (f && fscanf(f, "%ld %ld %ld %ld %ld %ld", &skip[0], &skip[1], &skip[2], &skip[3], &skip[4], &pages) != 6)
            pages = 0;
        if (f) fclose(f);
        rl.rlim_cur = rl.rlim_max = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + ((rlim_t)1 << 30);
        if (pages > 0) setrlimit(RLIMIT_DATA, &rl);
        int rc = dfm_wan_vae_load(&v, d, &o);
        _exit(rc == DFM_E_FORMAT && strstr(dfm_errmsg(), "file has shape") ? 0 : 10 - rc);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "  the loader allocated before checking the shape (child status %d)\n", status);
        dfm_test_failures++;
    }
#endif
    expect(dfm_wan_vae_load(&v, d, &o), DFM_E_FORMAT,
           (const char *[]){"encoder.conv_in.weight", "[2,1,1,1,1]", "[65536,1024,3,3,3]", NULL}, "huge");
    CHECK(v == NULL);
}

TEST(umt5_config_range_checked)
{
    char d[600];
    dfm_umt5_config c;
    config_dir("umt5-2p32", "{\"num_layers\": 4294967297}", d, sizeof d);
    expect(dfm_umt5_config_load(&c, d), DFM_E_FORMAT, (const char *[]){"'num_layers'", "4294967297", NULL}, "layers");
    config_dir("umt5-vocab", "{\"vocab_size\": 4294967296}", d, sizeof d);
    expect(dfm_umt5_config_load(&c, d), DFM_E_FORMAT, (const char *[]){"'vocab_size'", NULL}, "vocab");
    config_dir("umt5-dkv", "{\"d_kv\": 65536, \"num_heads\": 4096}", d, sizeof d);
    expect(dfm_umt5_config_load(&c, d), DFM_E_FORMAT, (const char *[]){"num_heads x d_kv", NULL}, "inner");
    config_dir("umt5-dist", "{\"relative_attention_num_buckets\": 64, \"relative_attention_max_distance\": 16}", d,
               sizeof d);
    expect(dfm_umt5_config_load(&c, d), DFM_E_FORMAT, (const char *[]){"max_distance", NULL}, "dist");
    config_dir("umt5-ok", "{\"d_model\": 4096, \"d_ff\": 10240, \"num_heads\": 64, \"num_layers\": 24}", d, sizeof d);
    CHECK_EQ(dfm_umt5_config_load(&c, d), 0);
    CHECK_EQ(c.d_model, 4096);
    CHECK_EQ(c.vocab_size, 250112);
}

/* Load tokenizer bytes through a file: tokenizer.json (json = 1) or spiece.model + config. */
static int load_tok(const char *name, const void *data, size_t n, int json, const char *config, dfm_tokenizer **t)
{
    char p[600], c[600];
    snprintf(p, sizeof p, "%s/%s", dfm_test_tmpdir(), name);
    CHECK_EQ(dfm_write_file_atomic(p, data, n), 0);
    if (config) {
        snprintf(c, sizeof c, "%s/%s.config.json", dfm_test_tmpdir(), name);
        CHECK_EQ(dfm_write_file_atomic(c, config, strlen(config)), 0);
    }
    *t = dfm_tok_new();
    int rc = json ? dfm_tok_load_json(*t, p) : dfm_tok_load_spm(*t, p, config ? c : NULL);
    if (rc) {
        dfm_tokenizer_free(*t);
        *t = NULL;
    }
    return rc;
}

TEST(tokenizer_strings_validated_before_use)
{
    /* issue 8 item 11: a pattern ending in a bare lead byte was copied past its end (ASan), then
     * rejected; now every string is checked first */
    static const char *const bad[] = {
        "{\"model\":{\"vocab\":[]},\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"\xF0\"},\"content\":\"\"}}",
        "{\"model\":{\"vocab\":[]},\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"String\":\"a\xE2\"},\"content\":\"b\"}}",
        "{\"model\":{\"vocab\":[]},\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"a+\"},\"content\":\"\xC3\"}}",
        ("{\"model\":{\"vocab\":[]},\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"_\","
         "\"prepend_scheme\":\"\xFF\"}}"),
        "{\"model\":{\"vocab\":[]},\"normalizer\":{\"type\":\"Prepend\",\"prepend\":\"\xED\xA0\x80\"}}",
        "{\"model\":{\"vocab\":[[\"\xC0\x80\",0]]}}",
        "{\"model\":{\"vocab\":[]},\"normalizer\":{\"type\":\"\xE0\x80\"}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dfm_tokenizer *t = NULL;
        char what[32];
        snprintf(what, sizeof what, "bad[%zu]", i);
        int rc = load_tok("bad-utf8.json", bad[i], strlen(bad[i]), 1, NULL, &t);
        expect(rc, i == 6 ? DFM_E_UNSUPPORTED : DFM_E_FORMAT, (const char *[]){i == 6 ? "not valid UTF-8" : "UTF-8", NULL},
               what);
        dfm_tokenizer_free(t);
    }
    /* the builder itself refuses invalid text, whoever calls it */
    dfm_norm_step st;
    expect(dfm_tok_replace_step(&st, "\xF0", 1, ""), DFM_E_FORMAT, (const char *[]){"pattern", NULL}, "step pat");
    expect(dfm_tok_replace_step(&st, "a", 0, "\x80"), DFM_E_FORMAT, (const char *[]){"content", NULL}, "step content");
    /* a valid one still works */
    const char *ok = "{\"model\":{\"vocab\":[[\"<unk>\",0],[\"b\",-1]],\"unk_id\":0},\"normalizer\":{\"type\":\"Replace\","
                     "\"pattern\":{\"Regex\":\"\xC3\xA9{2,}\"},\"content\":\"b\"}}";
    dfm_tokenizer *t = NULL;
    CHECK_EQ(load_tok("ok.json", ok, strlen(ok), 1, NULL, &t), 0);
    if (t) {
        int32_t *ids = NULL;
        int n = 0;
        CHECK_EQ(dfm_tokenizer_encode(t, "\xC3\xA9\xC3\xA9\xC3\xA9", 6, 0, &ids, &n), 0);
        CHECK_EQ(n, 1);
        if (n == 1) CHECK_EQ(ids[0], 1);
        free(ids);
        dfm_tokenizer_free(t);
    }
}

TEST(spiece_piece_without_piece_field)
{
    /* issue 8 item 12: a SentencePiece message with no piece field (0a 00) passed NULL + 0 to the
     * UTF-8 check (UB, aborting a SAN=1 build); it is the empty piece */
    dfm_tokenizer *t = NULL;
    static const uint8_t empty_piece[] = {0x0a, 0x00};
    int rc = load_tok("nopiece.model", empty_piece, sizeof empty_piece, 0, NULL, &t);
    CHECK(rc == 0 || rc == DFM_E_FORMAT);
    dfm_tokenizer_free(t);
    /* with a real piece after it, the ids count the empty one */
    static const uint8_t two[] = {0x0a, 0x00, 0x0a, 0x05, 0x0a, 0x01, 'a', 0x18, 0x01};
    CHECK_EQ(load_tok("nopiece2.model", two, sizeof two, 0, "{\"extra_ids\": 0}", &t), 0);
    if (t) {
        CHECK_EQ(dfm_tokenizer_token_id(t, "a"), 1);
        dfm_tokenizer_free(t);
    }
}

TEST(tokenizer_many_added_tokens_linear)
{
    /* issue 8 item 14: each sentinel scanned every earlier added token (100k took 9 s). 200k
     * sentinels must load in well under the 36 s the quadratic loop would take. */
    static const uint8_t unk[] = {0x0a, 0x09, 0x0a, 0x05, '<', 'u', 'n', 'k', '>', 0x18, 0x02};
    dfm_tokenizer *t = NULL;
    double t0 = now_s();
    CHECK_EQ(load_tok("many.model", unk, sizeof unk, 0, "{\"extra_ids\": 200000}", &t), 0);
    double dt = now_s() - t0;
    fprintf(stderr, "  200,000 sentinels (spiece.model): loaded in %.2f s\n", dt);
    CHECK(dt < 8.0);
    if (t) {
        /* T5: <unk> 0, then <extra_id_199999> .. <extra_id_0> as pieces 1 .. 200000 */
        CHECK_EQ(dfm_tokenizer_token_id(t, "<extra_id_0>"), 200000);
        CHECK_EQ(dfm_tokenizer_token_id(t, "<extra_id_199999>"), 1);
        CHECK_EQ(dfm_tokenizer_token_id(t, "</s>"), 200001);
        CHECK_EQ(dfm_tokenizer_vocab_size(t), 200003);
        int32_t *ids = NULL;
        int n = 0;
        CHECK_EQ(dfm_tokenizer_encode(t, "<extra_id_123>", 14, 0, &ids, &n), 0);
        CHECK_EQ(n, 2);
        if (n == 2) CHECK_EQ(ids[0], 200000 - 123);
        free(ids);
        dfm_tokenizer_free(t);
    }
    /* the same through tokenizer.json's added_tokens: 100k distinct, then repeats keep their ids */
    dfm_buf b = {0};
    dfm_buf_printf(&b, "{\"model\":{\"vocab\":[[\"<unk>\",0]],\"unk_id\":0},\"added_tokens\":[");
    for (int i = 0; i < 100000; i++) dfm_buf_printf(&b, "%s{\"content\":\"<t%d>\",\"special\":true}", i ? "," : "", i);
    for (int i = 0; i < 1000; i++) dfm_buf_printf(&b, ",{\"content\":\"<t%d>\",\"special\":false}", i * 7);
    dfm_buf_printf(&b, "]}");
    t0 = now_s();
    CHECK_EQ(load_tok("many.json", b.data, b.len, 1, NULL, &t), 0);
    dt = now_s() - t0;
    fprintf(stderr, "  100,000 added tokens (tokenizer.json): loaded in %.2f s\n", dt);
    CHECK(dt < 8.0);
    if (t) {
        CHECK_EQ(dfm_tokenizer_token_id(t, "<t0>"), 1);
        CHECK_EQ(dfm_tokenizer_token_id(t, "<t99999>"), 100000);
        CHECK_EQ(dfm_tokenizer_vocab_size(t), 100001);
        dfm_tokenizer_free(t);
    }
    dfm_buf_free(&b);
}
