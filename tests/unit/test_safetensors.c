/* test_safetensors.c — safetensors write/read round trips with dtype conversion, the Python
 * library's fixture (exact values, byte-identical writes), sharded sets, directory resolution,
 * and corrupted headers that must all fail cleanly (run under SAN=1 too). */
#include "test.h"
#include "base/buf.h"
#include "base/dtype.h"
#include "base/error.h"
#include "io/safetensors.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *tmp_path(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", dfm_test_tmpdir(), name);
    return out;
}

static int exists(const char *path)
{
    struct stat s;
    return stat(path, &s) == 0;
}

static int write_bytes(const char *path, const void *p, size_t n)
{
    return dfm_write_file_atomic(path, p, n);
}

/* A file with the given header text (unpadded) and `data_len` data bytes (value i & 0xff). */
static int write_raw(const char *path, const char *header, size_t data_len)
{
    size_t hl = strlen(header);
    dfm_buf b = {0};
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    int rc = dfm_buf_append(&b, len, 8);
    if (!rc) rc = dfm_buf_append(&b, header, hl);
    for (size_t i = 0; i < data_len && !rc; i++) {
        uint8_t v = (uint8_t)i;
        rc = dfm_buf_append(&b, &v, 1);
    }
    if (!rc) rc = write_bytes(path, b.data, b.len);
    dfm_buf_free(&b);
    return rc;
}

/* Open path expecting failure with code `want`; the message must name the file. */
static void expect_open_fails(const char *path, int want, const char *needle)
{
    dfm_st *st = (dfm_st *)1;
    int rc = dfm_st_open(&st, path);
    if (rc != want || st != NULL || (needle && !strstr(dfm_errmsg(), needle))) {
        fprintf(stderr, "  open '%s': rc %d (want %d), msg '%s' (want '%s')\n", path, rc, want,
                dfm_errmsg(), needle ? needle : "");
        dfm_test_failures++;
    }
    if (rc == 0) dfm_st_close(st);
}

TEST(st_write_read_roundtrip)
{
    char path[512];
    tmp_path(path, sizeof path, "st-rt.safetensors");
    float w[2][3] = {{1.5f, -2.25f, 1.0f / 3}, {65519.f, 1e-7f, -0.0f}};
    uint16_t hb[4] = {0x3f80, 0xc020, 0x7f80, 0x0001}; /* bf16 bits */
    uint16_t hh[3] = {0x3c00, 0x0001, 0xfbff};         /* f16 bits */
    uint8_t u8[5] = {9, 8, 7, 6, 5};
    int32_t i32[2] = {-7, 1 << 30};
    int64_t i64[1] = {-(1LL << 50)};
    float scalar = 42.0f;
    dfm_st_entry e[] = {
        {"z.w", DFM_F32, 2, {2, 3}, w},    {"a.bf", DFM_BF16, 1, {4}, hb},
        {"m.half", DFM_F16, 1, {3}, hh},   {"u", DFM_U8, 1, {5}, u8},
        {"i32", DFM_I32, 2, {1, 2}, i32},  {"i64", DFM_I64, 1, {1}, i64},
        {"s", DFM_F32, 0, {0}, &scalar},   {"empty", DFM_BF16, 3, {2, 0, 4}, NULL},
    };
    int n = (int)(sizeof e / sizeof e[0]);
    CHECK_EQ(dfm_st_write(path, e, n, "{\"format\":\"pt\",\"note\":\"a \\\"quoted\\\"\\n line\"}"), 0);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(!exists(tmp));

    /* header length is a multiple of 8 and every tensor is aligned to its element size */
    dfm_buf raw = {0};
    CHECK_EQ(dfm_read_file(path, 0, &raw), 0);
    uint64_t hl = 0;
    for (int i = 7; i >= 0 && raw.len >= 8; i--) hl = hl << 8 | raw.data[i];
    CHECK_EQ(hl % 8, 0);
    CHECK(raw.len >= 8 + hl && raw.data[8] == '{');

    dfm_st *st = NULL;
    CHECK_EQ(dfm_st_open(&st, path), 0);
    if (!st) goto out;
    CHECK_EQ(dfm_st_count(st), n);
    CHECK_STR(dfm_st_metadata(st), "{\"format\":\"pt\",\"note\":\"a \\\"quoted\\\"\\n line\"}");
    for (int i = 1; i < dfm_st_count(st); i++)
        CHECK(strcmp(dfm_st_at(st, i - 1)->name, dfm_st_at(st, i)->name) < 0);
    CHECK(dfm_st_at(st, n) == NULL && dfm_st_at(st, -1) == NULL);
    for (int i = 0; i < n; i++) {
        const dfm_st_tensor *t = dfm_st_find(st, e[i].name);
        CHECK(t != NULL);
        if (!t) continue;
        CHECK_EQ(t->dtype, e[i].dtype);
        CHECK_STR(dfm_st_dtype_name(t), dfm_dtype_name(e[i].dtype));
        CHECK_EQ(t->ndim, e[i].ndim);
        size_t nb = dfm_dtype_size(e[i].dtype);
        for (int d = 0; d < t->ndim; d++) {
            CHECK_EQ(t->shape[d], e[i].shape[d]);
            nb *= (size_t)e[i].shape[d];
        }
        CHECK_EQ(t->nbytes, nb);
        CHECK(nb == 0 || !memcmp(t->data, e[i].data, nb));
        CHECK_EQ((uintptr_t)t->data % dfm_dtype_size(t->dtype), 0);
        CHECK_STR(dfm_st_file(st, t), path);
    }
    CHECK(dfm_st_find(st, "nope") == NULL);

    /* reads with conversion */
    float f[6];
    uint16_t h[6];
    int64_t s23[2] = {2, 3};
    CHECK_EQ(dfm_st_read(st, "z.w", DFM_F32, 2, s23, f), 0);
    CHECK(!memcmp(f, w, sizeof w));
    CHECK_EQ(dfm_st_read(st, "z.w", DFM_BF16, 2, s23, h), 0);
    for (int i = 0; i < 6; i++) CHECK_EQ(h[i], dfm_f32_to_bf16(w[i / 3][i % 3]));
    CHECK_EQ(dfm_st_read(st, "z.w", DFM_F16, 2, s23, h), 0);
    for (int i = 0; i < 6; i++) CHECK_EQ(h[i], dfm_f32_to_f16(w[i / 3][i % 3]));
    CHECK_EQ(h[3], 0x7bff); /* 65519 rounds down to the largest f16 */
    int64_t s4[1] = {4}, s3[1] = {3};
    CHECK_EQ(dfm_st_read(st, "a.bf", DFM_F32, 1, s4, f), 0);
    CHECK_EQ(f[0], 1.0);
    CHECK_EQ(f[1], -2.5);
    CHECK(isinf(f[2]));
    CHECK_EQ(dfm_st_read(st, "m.half", DFM_F32, 1, s3, f), 0);
    CHECK_EQ(f[0], 1.0);
    CHECK_EQ(f[1], ldexp(1, -24));
    CHECK_EQ(f[2], -65504.0);
    CHECK_EQ(dfm_st_read(st, "m.half", DFM_BF16, 1, s3, h), 0);
    CHECK_EQ(h[0], 0x3f80);
    int64_t s12[2] = {1, 2};
    int32_t ri[2];
    CHECK_EQ(dfm_st_read(st, "i32", DFM_I32, 2, s12, ri), 0);
    CHECK(ri[0] == -7 && ri[1] == 1 << 30);
    CHECK_EQ(dfm_st_read(st, "s", DFM_F32, 0, NULL, f), 0);
    CHECK_EQ(f[0], 42.0);
    int64_t s204[3] = {2, 0, 4};
    CHECK_EQ(dfm_st_read(st, "empty", DFM_F32, 3, s204, f), 0);

    /* errors name the tensor, the file's shape and dtype and what was expected */
    int64_t s32[2] = {3, 2};
    CHECK_EQ(dfm_st_read(st, "z.w", DFM_F32, 2, s32, f), DFM_E_FORMAT);
    CHECK_STR(dfm_errmsg(), "tensor 'z.w': file has shape [2,3] F32, expected [3,2] F32");
    int64_t s6[1] = {6};
    CHECK_EQ(dfm_st_read(st, "z.w", DFM_F32, 1, s6, f), DFM_E_FORMAT);
    CHECK_STR(dfm_errmsg(), "tensor 'z.w': file has shape [2,3] F32, expected [6] F32");
    int64_t s1[1] = {1};
    CHECK_EQ(dfm_st_read(st, "i64", DFM_F32, 1, s1, f), DFM_E_FORMAT);
    CHECK_STR(dfm_errmsg(),
              "tensor 'i64': file has shape [1] I64, expected [1] F32 (no conversion between these dtypes)");
    CHECK_EQ(dfm_st_read(st, "z.w", DFM_I32, 2, s23, f), DFM_E_FORMAT);
    CHECK_EQ(dfm_st_read(st, "missing.weight", DFM_F32, 1, s1, f), DFM_E_FORMAT);
    CHECK(strstr(dfm_errmsg(), "tensor 'missing.weight' not found in") != NULL);
    CHECK_EQ(dfm_st_read(st, "model.z.w", DFM_F32, 2, s23, f), DFM_E_FORMAT);
    CHECK(strstr(dfm_errmsg(), "(it has 'z.w')") != NULL);
    dfm_st_close(st);
out:
    dfm_buf_free(&raw);
}

TEST(st_write_rejects_bad_entries)
{
    char path[512];
    tmp_path(path, sizeof path, "st-bad.safetensors");
    float x[4] = {0};
    dfm_st_entry dup[] = {{"a", DFM_F32, 1, {1}, x}, {"a", DFM_BF16, 1, {1}, x}};
    CHECK_EQ(dfm_st_write(path, dup, 2, NULL), DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "'a' given twice") != NULL);
    dfm_st_entry neg[] = {{"a", DFM_F32, 2, {2, -1}, x}};
    CHECK_EQ(dfm_st_write(path, neg, 1, NULL), DFM_E_ARG);
    dfm_st_entry dt[] = {{"a", (dfm_dtype)17, 1, {1}, x}};
    CHECK_EQ(dfm_st_write(path, dt, 1, NULL), DFM_E_ARG);
    dfm_st_entry meta[] = {{"__metadata__", DFM_F32, 1, {1}, x}};
    CHECK_EQ(dfm_st_write(path, meta, 1, NULL), DFM_E_ARG);
    dfm_st_entry nodata[] = {{"a", DFM_F32, 1, {1}, NULL}};
    CHECK_EQ(dfm_st_write(path, nodata, 1, NULL), DFM_E_ARG);
    dfm_st_entry ok[] = {{"a", DFM_F32, 1, {4}, x}};
    CHECK_EQ(dfm_st_write(path, ok, 1, "[1]"), DFM_E_ARG);
    CHECK_EQ(dfm_st_write(path, ok, 1, "{\"a\":1}"), DFM_E_ARG);
    CHECK_EQ(dfm_st_write(path, ok, 1, "{"), DFM_E_ARG);
    CHECK(!exists(path));
    char nodir[512];
    tmp_path(nodir, sizeof nodir, "st-no/such/dir/x.safetensors");
    CHECK_EQ(dfm_st_write(nodir, ok, 1, NULL), DFM_E_IO);
    /* no tensors at all: the Python library writes exactly this */
    CHECK_EQ(dfm_st_write(path, NULL, 0, NULL), 0);
    dfm_buf b = {0};
    CHECK_EQ(dfm_read_file(path, 0, &b), 0);
    CHECK(b.len == 16 && !memcmp(b.data, "\x08\0\0\0\0\0\0\0{}      ", 16));
    dfm_buf_free(&b);
    dfm_st *st = NULL;
    CHECK_EQ(dfm_st_open(&st, path), 0);
    if (st) {
        CHECK_EQ(dfm_st_count(st), 0);
        CHECK_STR(dfm_st_metadata(st), "{}");
        dfm_st_close(st);
    }
}

/* tests/fixtures/safetensors/small.safetensors from scripts/make-safetensors-fixture.py */
static const float FX_W[6] = {-1.0f, -0.5f, 0.0f, 0.5f, 1.0f, 1.5f};
static const uint16_t FX_BF[5] = {0x3f80, 0xc020, 0x4049, 0x3a83, 0x3eab};
static const uint16_t FX_HALF[4] = {0x2e66, 0xfbff, 0x0001, 0x7c00};
static const int64_t FX_IDS[3] = {1, -2, 1LL << 40};
static const uint8_t FX_BYTES[5] = {0, 1, 127, 128, 255};
static const float FX_SCALAR = 7.25f;

TEST(st_python_fixture)
{
    char path[512];
    snprintf(path, sizeof path, "%s/safetensors/small.safetensors", dfm_test_fixtures());
    dfm_st *st = NULL;
    CHECK_EQ(dfm_st_open(&st, path), 0);
    if (!st) {
        fprintf(stderr, "  %s\n", dfm_errmsg());
        return;
    }
    CHECK_EQ(dfm_st_count(st), 7);
    CHECK_STR(dfm_st_metadata(st), "{\"format\":\"pt\"}");
    float f[8];
    uint16_t h[8];
    int64_t s23[2] = {2, 3}, s5[1] = {5}, s22[2] = {2, 2}, s3[1] = {3}, s03[2] = {0, 3};
    CHECK_EQ(dfm_st_read(st, "encoder.conv_in.weight", DFM_F32, 2, s23, f), 0);
    CHECK(!memcmp(f, FX_W, sizeof FX_W));
    CHECK_EQ(dfm_st_read(st, "encoder.norm.gamma", DFM_BF16, 1, s5, h), 0);
    CHECK(!memcmp(h, FX_BF, sizeof FX_BF));
    CHECK_EQ(dfm_st_read(st, "encoder.norm.gamma", DFM_F32, 1, s5, f), 0);
    CHECK_EQ(f[0], 1.0);
    CHECK_EQ(f[1], -2.5);
    CHECK_EQ(f[2], 3.140625);
    CHECK_EQ(f[3], 0.00099945068359375);
    CHECK_EQ(f[4], 0.333984375);
    CHECK_EQ(dfm_f32_to_bf16(1e-3f), FX_BF[3]); /* our rounding is torch's */
    CHECK_EQ(dfm_f32_to_bf16(1.0f / 3), FX_BF[4]);
    CHECK_EQ(dfm_st_read(st, "decoder.half", DFM_F16, 2, s22, h), 0);
    CHECK(!memcmp(h, FX_HALF, sizeof FX_HALF));
    CHECK_EQ(dfm_st_read(st, "decoder.half", DFM_F32, 2, s22, f), 0);
    CHECK_EQ(f[0], 0.0999755859375);
    CHECK_EQ(f[1], -65504.0);
    CHECK_EQ(f[2], 5.960464477539063e-08);
    CHECK(isinf(f[3]) && f[3] > 0);
    CHECK_EQ(dfm_f32_to_f16(0.1f), FX_HALF[0]);
    CHECK_EQ(dfm_f32_to_f16(6e-8f), FX_HALF[2]);
    int64_t ids[3];
    CHECK_EQ(dfm_st_read(st, "ids", DFM_I64, 1, s3, ids), 0);
    CHECK(!memcmp(ids, FX_IDS, sizeof ids));
    uint8_t bytes[5];
    CHECK_EQ(dfm_st_read(st, "bytes", DFM_U8, 1, s5, bytes), 0);
    CHECK(!memcmp(bytes, FX_BYTES, 5));
    CHECK_EQ(dfm_st_read(st, "scalar", DFM_F32, 0, NULL, f), 0);
    CHECK_EQ(f[0], 7.25);
    CHECK_EQ(dfm_st_find(st, "scalar")->ndim, 0);
    CHECK_EQ(dfm_st_read(st, "empty", DFM_F32, 2, s03, f), 0);
    dfm_st_close(st);

    /* the same tensors written by us give the same bytes as the Python library */
    dfm_st_entry e[] = {
        {"encoder.conv_in.weight", DFM_F32, 2, {2, 3}, FX_W},
        {"encoder.norm.gamma", DFM_BF16, 1, {5}, FX_BF},
        {"decoder.half", DFM_F16, 2, {2, 2}, FX_HALF},
        {"ids", DFM_I64, 1, {3}, FX_IDS},
        {"bytes", DFM_U8, 1, {5}, FX_BYTES},
        {"scalar", DFM_F32, 0, {0}, &FX_SCALAR},
        {"empty", DFM_F32, 2, {0, 3}, NULL},
    };
    char ours[512];
    tmp_path(ours, sizeof ours, "st-ours.safetensors");
    CHECK_EQ(dfm_st_write(ours, e, 7, "{\"format\":\"pt\"}"), 0);
    dfm_buf a = {0}, b = {0};
    CHECK_EQ(dfm_read_file(path, 0, &a), 0);
    CHECK_EQ(dfm_read_file(ours, 0, &b), 0);
    CHECK_EQ(a.len, b.len);
    CHECK(a.len == b.len && !memcmp(a.data, b.data, a.len));
    dfm_buf_free(&a);
    dfm_buf_free(&b);
}

static void write_text(const char *path, const char *text)
{
    CHECK_EQ(write_bytes(path, text, strlen(text)), 0);
}

TEST(st_sharded_index)
{
    char dir[512], p[600];
    tmp_path(dir, sizeof dir, "st-sharded");
    CHECK_EQ(mkdir(dir, 0755), 0);
    float a[3] = {1, 2, 3}, b[2] = {4, 5};
    uint16_t c[2] = {0x3c00, 0x4000};
    dfm_st_entry s1[] = {{"blocks.0.w", DFM_F32, 1, {3}, a}, {"blocks.0.b", DFM_F32, 1, {2}, b}};
    dfm_st_entry s2[] = {{"head.w", DFM_F16, 2, {1, 2}, c}};
    snprintf(p, sizeof p, "%s/diffusion_pytorch_model-00001-of-00002.safetensors", dir);
    CHECK_EQ(dfm_st_write(p, s1, 2, "{\"format\":\"pt\"}"), 0);
    snprintf(p, sizeof p, "%s/diffusion_pytorch_model-00002-of-00002.safetensors", dir);
    CHECK_EQ(dfm_st_write(p, s2, 1, "{\"format\":\"pt\"}"), 0);
    snprintf(p, sizeof p, "%s/diffusion_pytorch_model.safetensors.index.json", dir);
    write_text(p, "{\n  \"metadata\": {\"total_size\": 24},\n  \"weight_map\": {\n"
                  "    \"blocks.0.b\": \"diffusion_pytorch_model-00001-of-00002.safetensors\",\n"
                  "    \"blocks.0.w\": \"diffusion_pytorch_model-00001-of-00002.safetensors\",\n"
                  "    \"head.w\": \"diffusion_pytorch_model-00002-of-00002.safetensors\"\n  }\n}\n");
    for (int via = 0; via < 2; via++) { /* the directory, then the index itself */
        dfm_st *st = NULL;
        CHECK_EQ(dfm_st_open(&st, via ? p : dir), 0);
        if (!st) {
            fprintf(stderr, "  %s\n", dfm_errmsg());
            continue;
        }
        CHECK_EQ(dfm_st_count(st), 3);
        CHECK_STR(dfm_st_at(st, 0)->name, "blocks.0.b");
        CHECK_STR(dfm_st_at(st, 2)->name, "head.w");
        CHECK_STR(dfm_st_metadata(st), "{\"format\":\"pt\"}");
        CHECK(strstr(dfm_st_file(st, dfm_st_find(st, "head.w")), "-00002-of-00002") != NULL);
        float f[3];
        int64_t sh3[1] = {3}, sh12[2] = {1, 2};
        CHECK_EQ(dfm_st_read(st, "blocks.0.w", DFM_F32, 1, sh3, f), 0);
        CHECK(f[0] == 1 && f[1] == 2 && f[2] == 3);
        CHECK_EQ(dfm_st_read(st, "head.w", DFM_F32, 2, sh12, f), 0);
        CHECK(f[0] == 1 && f[1] == 2);
        CHECK_EQ(dfm_st_read(st, "head.b", DFM_F32, 2, sh12, f), DFM_E_FORMAT);
        CHECK(strstr(dfm_errmsg(), "'head.b' not found in") &&
              strstr(dfm_errmsg(), "/diffusion_pytorch_model.safetensors.index.json' (3 tensors)"));
        dfm_st_close(st);
    }
    /* a weight_map that puts a tensor in the wrong shard, a missing shard, a path escaping the
     * directory, a tensor in two shards */
    char bad[600];
    snprintf(bad, sizeof bad, "%s/bad1.safetensors.index.json", dir);
    write_text(bad, "{\"weight_map\": {\"head.w\": \"diffusion_pytorch_model-00001-of-00002.safetensors\"}}");
    expect_open_fails(bad, DFM_E_FORMAT, "puts tensor 'head.w'");
    write_text(bad, "{\"weight_map\": {\"x\": \"missing-00001.safetensors\"}}");
    expect_open_fails(bad, DFM_E_IO, "missing-00001.safetensors");
    write_text(bad, "{\"weight_map\": {\"x\": \"../rt.safetensors\"}}");
    expect_open_fails(bad, DFM_E_FORMAT, "name a file beside the index");
    write_text(bad, "{\"weight_map\": {\"x\": \"/etc/passwd\"}}");
    expect_open_fails(bad, DFM_E_FORMAT, "name a file beside the index");
    write_text(bad, "{\"weight_map\": {\"x\": 3}}");
    expect_open_fails(bad, DFM_E_FORMAT, "weight_map entry 'x'");
    write_text(bad, "{\"metadata\": {}}");
    expect_open_fails(bad, DFM_E_FORMAT, "weight_map");
    write_text(bad, "{\"weight_map\": {}}");
    expect_open_fails(bad, DFM_E_FORMAT, "empty");
    write_text(bad, "[1, 2");
    expect_open_fails(bad, DFM_E_FORMAT, "not valid JSON");
    snprintf(p, sizeof p, "%s/dup.safetensors", dir);
    CHECK_EQ(dfm_st_write(p, s2, 1, NULL), 0);
    write_text(bad, "{\"weight_map\": {\"head.w\": \"dup.safetensors\", "
                    "\"blocks.0.w\": \"diffusion_pytorch_model-00002-of-00002.safetensors\"}}");
    expect_open_fails(bad, DFM_E_FORMAT, "tensor 'head.w' is in both");
}

TEST(st_directory_resolution)
{
    char dir[512], p[600];
    float x[1] = {1};
    dfm_st_entry e[] = {{"x", DFM_F32, 1, {1}, x}};
    tmp_path(dir, sizeof dir, "st-resolve");
    CHECK_EQ(mkdir(dir, 0755), 0);
    expect_open_fails(dir, DFM_E_IO, "no weights in");
    /* a single file of any name */
    snprintf(p, sizeof p, "%s/lora.safetensors", dir);
    CHECK_EQ(dfm_st_write(p, e, 1, NULL), 0);
    dfm_st *st = NULL;
    CHECK_EQ(dfm_st_open(&st, dir), 0);
    dfm_st_close(st);
    /* two files and no standard name: ambiguous */
    snprintf(p, sizeof p, "%s/other.safetensors", dir);
    CHECK_EQ(dfm_st_write(p, e, 1, NULL), 0);
    expect_open_fails(dir, DFM_E_FORMAT, "2 .safetensors files");
    /* a standard name wins over other files */
    snprintf(p, sizeof p, "%s/diffusion_pytorch_model.safetensors", dir);
    CHECK_EQ(dfm_st_write(p, e, 1, NULL), 0);
    st = NULL;
    CHECK_EQ(dfm_st_open(&st, dir), 0);
    if (st) CHECK(strstr(dfm_st_file(st, dfm_st_at(st, 0)), "/diffusion_pytorch_model.safetensors"));
    dfm_st_close(st);
    /* two standard names: ambiguous */
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    CHECK_EQ(dfm_st_write(p, e, 1, NULL), 0);
    expect_open_fails(dir, DFM_E_FORMAT, "holds both");
    /* not there at all */
    tmp_path(p, sizeof p, "st-resolve/nothing-here");
    expect_open_fails(p, DFM_E_IO, "nothing-here");
}

/* Headers that must be refused, each with the code and a piece of the message. */
static const struct {
    const char *header;
    size_t data;
    int code;
    const char *msg;
} BAD[] = {
    {"[]", 0, DFM_E_FORMAT, "not a JSON object"},
    {"\"str\"", 0, DFM_E_FORMAT, "not a JSON object"},
    {"{", 0, DFM_E_FORMAT, "not a JSON object"},
    {"{  ", 0, DFM_E_FORMAT, "not valid JSON"},
    {"{\"a\":", 0, DFM_E_FORMAT, "not valid JSON"},
    {"{\"a\\", 0, DFM_E_FORMAT, "not valid JSON"},
    {"{}x", 0, DFM_E_FORMAT, "bytes after"},
    {"{} \x01", 0, DFM_E_FORMAT, "bytes after"},
    {"{\"a\":5}", 0, DFM_E_FORMAT, "not an object"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,16]}}", 8, DFM_E_FORMAT, "outside the data area"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8, DFM_E_FORMAT, "hold 4 bytes, but [2] F32 needs 8"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 8, DFM_E_FORMAT, "non-negative"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 8, DFM_E_FORMAT, "non-negative"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8, DFM_E_FORMAT, "non-negative"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,8]}}", 8, DFM_E_FORMAT, "non-negative"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,8]}}", 8, DFM_E_FORMAT, "overflows"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[9007199254740992,9007199254740992],\"data_offsets\":[0,8]}}", 8, DFM_E_FORMAT, "overflows"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8, DFM_E_FORMAT, "not an array"},
    {"{\"a\":{\"dtype\":\"F99\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, DFM_E_FORMAT, "unknown dtype 'F99'"},
    {"{\"a\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, DFM_E_FORMAT, "unknown dtype"},
    {"{\"a\":{\"dtype\":5,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, DFM_E_FORMAT, "not a string"},
    {"{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, DFM_E_FORMAT, "has no 'dtype'"},
    {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, DFM_E_FORMAT, "has no 'shape'"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, DFM_E_FORMAT, "has no 'data_offsets'"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, DFM_E_FORMAT, "outside"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, DFM_E_FORMAT, "[begin, end]"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,16]}}", 16, DFM_E_FORMAT, "[begin, end]"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8, DFM_E_FORMAT, "[begin, end]"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":{\"b\":0}}}", 8, DFM_E_FORMAT, "[begin, end]"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, DFM_E_FORMAT, "overlap"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16, DFM_E_FORMAT, "appears twice"},
    {"{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,1]}}", 8, DFM_E_FORMAT, "whole number of bytes"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 8, DFM_E_UNSUPPORTED, "9 dimensions"},
    {"{\"__metadata__\":[1]}", 0, DFM_E_FORMAT, "__metadata__ is an array"},
    {"{\"__metadata__\":{\"a\":1}}", 0, DFM_E_FORMAT, "field 'a' is a number"},
    {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, DFM_E_FORMAT, "appears twice"},
};

TEST(st_corrupt_headers)
{
    char path[512];
    tmp_path(path, sizeof path, "st-corrupt.safetensors");
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        CHECK_EQ(write_raw(path, BAD[i].header, BAD[i].data), 0);
        expect_open_fails(path, BAD[i].code, BAD[i].msg);
    }
    /* header lengths that do not fit: too short a file, huge, one past the end, the limit */
    const uint8_t tiny[5] = {1, 0, 0, 0, 0};
    CHECK_EQ(write_bytes(path, tiny, 5), 0);
    expect_open_fails(path, DFM_E_FORMAT, "too short");
    CHECK_EQ(write_bytes(path, "", 0), 0);
    expect_open_fails(path, DFM_E_FORMAT, "too short");
    uint8_t buf[64];
    memset(buf, ' ', sizeof buf);
    buf[8] = '{';
    buf[9] = '}';
    const uint64_t lens[] = {UINT64_MAX, 1ULL << 63, 100000001, 57, 0, 1};
    const char *msgs[] = {"over the limit", "over the limit", "over the limit", "past the end",
                          "not a JSON object", "not a JSON object"};
    for (int k = 0; k < 6; k++) {
        for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(lens[k] >> (8 * i));
        CHECK_EQ(write_bytes(path, buf, sizeof buf), 0);
        expect_open_fails(path, DFM_E_FORMAT, msgs[k]);
    }
    /* an unsupported dtype is listed with its bytes, but not read */
    CHECK_EQ(write_raw(path, "{\"d\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]},"
                             "\"b\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[16,19]}}",
                       19),
             0);
    dfm_st *st = NULL;
    CHECK_EQ(dfm_st_open(&st, path), 0);
    if (st) {
        const dfm_st_tensor *t = dfm_st_find(st, "d");
        CHECK(t && t->dtype == DFM_ST_OTHER && t->nbytes == 16);
        if (t) CHECK_STR(dfm_st_dtype_name(t), "F64");
        double d[2];
        int64_t s2[1] = {2};
        CHECK_EQ(dfm_st_read(st, "d", DFM_F32, 1, s2, d), DFM_E_UNSUPPORTED);
        CHECK(strstr(dfm_errmsg(), "F64") != NULL);
        dfm_st_close(st);
    }
}

/* Every truncation of a valid file, and many random byte flips in its header, must either fail
 * with an error or open a file whose tensors all lie inside the mapping. */
TEST(st_fuzz_truncate_and_flip)
{
    char src[512], path[512];
    tmp_path(src, sizeof src, "st-fuzz-src.safetensors");
    tmp_path(path, sizeof path, "st-fuzz.safetensors");
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t b[3] = {1, 2, 3};
    int64_t c[2] = {7, 8};
    uint8_t u[3] = {1, 2, 3};
    dfm_st_entry e[] = {{"alpha", DFM_F32, 2, {2, 3}, a}, {"beta", DFM_BF16, 1, {3}, b},
                        {"gamma", DFM_I64, 1, {2}, c},    {"u", DFM_U8, 1, {3}, u},
                        {"z", DFM_F16, 2, {0, 5}, NULL}};
    CHECK_EQ(dfm_st_write(src, e, 5, "{\"format\":\"pt\"}"), 0);
    dfm_buf f = {0};
    CHECK_EQ(dfm_read_file(src, 0, &f), 0);
    if (!f.len) return;
    int opened = 0;
    for (size_t len = 0; len < f.len; len++) {
        CHECK_EQ(write_bytes(path, f.data, len), 0);
        dfm_st *st = NULL;
        int rc = dfm_st_open(&st, path);
        CHECK(rc < 0 && st == NULL);
        if (rc == 0) dfm_st_close(st);
    }
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | f.data[i];
    uint8_t *m = malloc(f.len);
    uint32_t seed = 12345;
    for (int it = 0; it < 3000 && m; it++) {
        memcpy(m, f.data, f.len);
        int flips = 1 + it % 4;
        for (int k = 0; k < flips; k++) {
            seed = seed * 1664525u + 1013904223u;
            size_t at = (seed >> 8) % (8 + hl);
            seed = seed * 1664525u + 1013904223u;
            const char pick[] = "0123456789[]{},:\"-.eE F";
            m[at] = (it & 1) ? (uint8_t)(seed >> 24) : (uint8_t)pick[(seed >> 24) % (sizeof pick - 1)];
        }
        CHECK_EQ(write_bytes(path, m, f.len), 0);
        dfm_st *st = NULL;
        int rc = dfm_st_open(&st, path);
        if (rc < 0) {
            CHECK(st == NULL && dfm_errmsg()[0]);
            continue;
        }
        opened++;
        /* whatever opened must be readable in full */
        for (int i = 0; i < dfm_st_count(st); i++) {
            const dfm_st_tensor *t = dfm_st_at(st, i);
            void *dst = malloc(t->nbytes ? t->nbytes : 1);
            if (t->dtype != DFM_ST_OTHER && dst) CHECK_EQ(dfm_st_read(st, t->name, t->dtype, t->ndim, t->shape, dst), 0);
            uint8_t x = 0;
            for (size_t j = 0; j < t->nbytes; j++) x ^= t->data[j];
            (void)x;
            free(dst);
        }
        dfm_st_close(st);
    }
    CHECK(opened > 0); /* flips inside names or padding leave a valid file */
    free(m);
    dfm_buf_free(&f);
}
