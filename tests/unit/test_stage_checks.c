/* test_stage_checks.c — what the model stages refuse, and how they say it (vae_stage.c,
 * text_stage.c, on the tiny fixture models):
 *   - dfm-vae-decode: latents.npy with a NaN, +Inf or -Inf in float16 and float32, at the first
 *     and at the last element, is an error naming the field, the count and the index; latents of
 *     the wrong dtype or shape are named as what they are;
 *   - non-finite outputs: a weights file with an Inf (encoder, decoder, text encoder) and values
 *     past float16's range when stored as float16;
 *   - dfm-vae-encode: frames.npy of the wrong dtype is named as what it is;
 *   - dfm-text-encode: a leading byte order mark is not tokenized; bad UTF-8 names its offset.
 * The pipeline test tests/pipeline/nonfinite.sh runs the same cases through the programs. */
#include "test.h"
#include "base/buf.h"
#include "base/error.h"
#include "io/npy.h"
#include "io/sample.h"
#include "models/wan/text_stage.h"
#include "models/wan/vae_stage.h"
#include "tensor/ops.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- helpers --------------------------------------------------------------------------------- */

static int copy_file(const char *src, const char *dst)
{
    dfm_buf b = {0};
    int rc = dfm_read_file(src, 0, &b);
    FILE *f = rc ? NULL : fopen(dst, "wb");
    if (f) {
        if (fwrite(b.data, 1, b.len, f) != b.len) rc = -1;
        if (fclose(f)) rc = -1;
    } else {
        rc = -1;
    }
    dfm_buf_free(&b);
    return rc;
}

/* Copy the model directory src (config.json + the weights file `weights`) to a new directory
 * under the test's tmpdir named `name`, with element `elem` of F32 tensor `tensor` set to v.
 * Returns the new directory (static storage per call site via out). */
static int poisoned_model(const char *src, const char *weights, const char *name, const char *tensor,
                          int elem, float v, char *out, size_t n)
{
    snprintf(out, n, "%s/%s", dfm_test_tmpdir(), name);
    mkdir(out, 0755);
    char a[1024], b[1024];
    snprintf(a, sizeof a, "%s/config.json", src), snprintf(b, sizeof b, "%s/config.json", out);
    if (copy_file(a, b)) return -1;
    snprintf(a, sizeof a, "%s/%s", src, weights), snprintf(b, sizeof b, "%s/%s", out, weights);
    if (copy_file(a, b)) return -1;
    /* safetensors: u64 header length, JSON header, data; data_offsets are relative to the data */
    FILE *f = fopen(b, "r+b");
    if (!f) return -1;
    uint64_t hl = 0;
    int rc = -1;
    char *hdr = NULL;
    if (fread(&hl, 8, 1, f) == 1 && hl < (1u << 24) && (hdr = calloc(1, hl + 1)) && fread(hdr, 1, hl, f) == hl) {
        cJSON *j = cJSON_Parse(hdr);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, tensor);
        const cJSON *off = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(t, "dtype");
        if (cJSON_IsArray(off) && cJSON_IsString(dt) && !strcmp(dt->valuestring, "F32")) {
            long at = 8 + (long)hl + (long)cJSON_GetArrayItem(off, 0)->valuedouble + 4L * elem;
            if (fseek(f, at, SEEK_SET) == 0 && fwrite(&v, 4, 1, f) == 1) rc = 0;
        }
        cJSON_Delete(j);
    }
    free(hdr);
    if (fclose(f)) rc = -1;
    if (rc) fprintf(stderr, "  cannot poison %s in %s\n", tensor, b);
    return rc;
}

/* A sample "k" with field `name` holding a .npy of (dt, shape, data). */
static void npy_sample(dfm_sample *s, const char *name, dfm_npy_dtype dt, int ndim, const int64_t *shape,
                       const void *data)
{
    dfm_sample_init(s);
    dfm_sample_set_key(s, "k");
    uint8_t *npy = NULL;
    size_t len = 0;
    CHECK_EQ(dfm_npy_build(dt, ndim, shape, data, &npy, &len), 0);
    if (npy) CHECK_EQ(dfm_sample_set_owned(s, name, npy, len), 0);
}

static void expect_msg(int rc, int want_rc, const char *want)
{
    CHECK_EQ(rc, want_rc);
    if (!strstr(dfm_errmsg(), want)) fprintf(stderr, "  message '%s'\n  lacks '%s'\n", dfm_errmsg(), want);
    CHECK(strstr(dfm_errmsg(), want) != NULL);
}

static dfm_wan_vae *load_vae(const char *dir, int enc, int dec)
{
    dfm_wan_vae *vae = NULL;
    dfm_wan_vae_opts o = {.device = DFM_CPU, .weights = DFM_F32, .load_encoder = enc, .load_decoder = dec};
    int rc = dfm_wan_vae_load(&vae, dir, &o);
    CHECK_EQ(rc, 0);
    if (rc) fprintf(stderr, "  %s\n", dfm_errmsg());
    return vae;
}

static void vae_dir(char *out, size_t n) { snprintf(out, n, "%s/wan_vae/z16", dfm_test_fixtures()); }

/* ---- dfm-vae-decode: its input ------------------------------------------------------------------ */

TEST(stage_vae_decode_nonfinite_latents)
{
    char dir[1024];
    vae_dir(dir, sizeof dir);
    dfm_wan_vae *vae = load_vae(dir, 0, 1);
    if (!vae) return;
    dfm_vae_stage_opts o = {.model = dir};
    const int64_t shape[4] = {16, 1, 2, 3}, n = 16 * 2 * 3;
    /* f16 and f32 bit patterns of NaN, +Inf, -Inf and of 0.5 */
    const uint32_t f32[4] = {0x7fc00000u, 0x7f800000u, 0xff800000u, 0x3f000000u};
    const uint16_t f16[4] = {0x7e00u, 0x7c00u, 0xfc00u, 0x3800u};
    const char *names[3] = {"NaN", "+Inf", "-Inf"};
    for (int dt = 0; dt < 2; dt++) {
        for (int v = 0; v < 3; v++) {
            for (int last = 0; last < 2; last++) {
                uint32_t a32[16 * 6];
                uint16_t a16[16 * 6];
                for (int64_t i = 0; i < n; i++) a32[i] = f32[3], a16[i] = f16[3];
                int64_t at = last ? n - 1 : 0;
                a32[at] = f32[v], a16[at] = f16[v];
                dfm_sample s;
                npy_sample(&s, "latents.npy", dt ? DFM_NPY_F32 : DFM_NPY_F16, 4, shape, dt ? (void *)a32 : (void *)a16);
                char want[128];
                snprintf(want, sizeof want, "latents.npy has 1 non-finite value (first %s at %s)", names[v],
                         last ? "[15,0,1,2]" : "[0,0,0,0]");
                int rc = dfm_vae_decode_sample(vae, &o, &s);
                expect_msg(rc, DFM_E_NONFINITE, want);
                CHECK(!strcmp(dfm_errmsg(), want));
                CHECK(dfm_sample_get(&s, "frames.npy") == NULL); /* nothing half-done */
                dfm_sample_free(&s);
            }
        }
    }
    /* several */
    uint16_t a16[16 * 6];
    for (int64_t i = 0; i < n; i++) a16[i] = f16[3];
    a16[7] = f16[1], a16[50] = f16[0], a16[95] = f16[2];
    dfm_sample s;
    npy_sample(&s, "latents.npy", DFM_NPY_F16, 4, shape, a16);
    expect_msg(dfm_vae_decode_sample(vae, &o, &s), DFM_E_NONFINITE,
               "latents.npy has 3 non-finite values (first +Inf at [1,0,0,1])");
    dfm_sample_free(&s);
    /* the same latents, all finite, decode */
    a16[7] = a16[50] = a16[95] = f16[3];
    npy_sample(&s, "latents.npy", DFM_NPY_F16, 4, shape, a16);
    CHECK_EQ(dfm_vae_decode_sample(vae, &o, &s), 0);
    CHECK(dfm_sample_get(&s, "frames.npy") != NULL);
    dfm_sample_free(&s);
    dfm_wan_vae_free(vae);
}

TEST(stage_vae_decode_names_what_it_got)
{
    char dir[1024];
    vae_dir(dir, sizeof dir);
    dfm_wan_vae *vae = load_vae(dir, 0, 1);
    if (!vae) return;
    dfm_vae_stage_opts o = {.model = dir};
    /* float64: a dtype the npy reader does not take at all */
    static const char hdr[] = "{'descr': '<f8', 'fortran_order': False, 'shape': (16, 3, 8, 8), }";
    size_t hl = 64 * ((10 + sizeof hdr - 1 + 1 + 63) / 64) - 10, data = 16 * 3 * 8 * 8 * 8;
    uint8_t *npy = calloc(1, 10 + hl + data + 1);
    if (npy) {
        memcpy(npy, "\x93NUMPY\x01\x00", 8);
        npy[8] = (uint8_t)hl, npy[9] = (uint8_t)(hl >> 8);
        memset(npy + 10, ' ', hl);
        memcpy(npy + 10, hdr, sizeof hdr - 1);
        npy[10 + hl - 1] = '\n';
        dfm_sample s;
        dfm_sample_init(&s);
        dfm_sample_set_key(&s, "k");
        dfm_sample_set_owned(&s, "latents.npy", npy, 10 + hl + data);
        expect_msg(dfm_vae_decode_sample(vae, &o, &s), DFM_E_FORMAT,
                   "latents.npy is float64 [16,3,8,8]; want float16/float32 [C,F,H,W] with C = 16 (the VAE's "
                   "z_dim)");
        dfm_sample_free(&s);
    }
    /* a supported dtype with the wrong channel count or rank */
    float z[8 * 2 * 2] = {0};
    const int64_t s8[4] = {8, 1, 2, 2}, s3[3] = {16, 2, 1};
    dfm_sample s;
    npy_sample(&s, "latents.npy", DFM_NPY_F32, 4, s8, z);
    expect_msg(dfm_vae_decode_sample(vae, &o, &s), DFM_E_FORMAT, "latents.npy is float32 [8,1,2,2]; want");
    dfm_sample_free(&s);
    npy_sample(&s, "latents.npy", DFM_NPY_F32, 3, s3, z);
    expect_msg(dfm_vae_decode_sample(vae, &o, &s), DFM_E_FORMAT, "latents.npy is float32 [16,2,1]; want");
    dfm_sample_free(&s);
    uint8_t u[16 * 2 * 2];
    const int64_t su[4] = {16, 1, 2, 2};
    npy_sample(&s, "latents.npy", DFM_NPY_U8, 4, su, u);
    expect_msg(dfm_vae_decode_sample(vae, &o, &s), DFM_E_FORMAT, "latents.npy is uint8 [16,1,2,2]; want");
    dfm_sample_free(&s);
    dfm_wan_vae_free(vae);
}

/* ---- the VAE's outputs ---------------------------------------------------------------------------- */

/* A 5-frame 16x16 clip of mid grey (any finite input). */
static void frames_sample(dfm_sample *s)
{
    static uint8_t px[5 * 16 * 16 * 3];
    memset(px, 128, sizeof px);
    const int64_t shape[4] = {5, 16, 16, 3};
    npy_sample(s, "frames.npy", DFM_NPY_U8, 4, shape, px);
}

TEST(stage_vae_outputs_nonfinite)
{
    char src[1024], dir[1024];
    vae_dir(src, sizeof src);
    const char *w = "diffusion_pytorch_model.safetensors";
    /* encoder: an Inf bias on channel 2 of the quant conv (the posterior mean) */
    if (!poisoned_model(src, w, "vae_enc_inf", "quant_conv.bias", 2, INFINITY, dir, sizeof dir)) {
        dfm_wan_vae *vae = load_vae(dir, 1, 0);
        if (vae) {
            dfm_vae_stage_opts o = {.model = dir, .out_dtype = DFM_F16};
            dfm_sample s;
            frames_sample(&s);
            /* [2C, F', H/8, W/8] = [32, 2, 2, 2]: 8 values of channel 2 */
            expect_msg(dfm_vae_encode_sample(vae, &o, &s), DFM_E_NONFINITE,
                       "the VAE encoder's output [2C (mean, logvar),F,H,W] has 8 non-finite values "
                       "(first +Inf at [2,0,0,0])");
            CHECK(dfm_sample_get(&s, "latents.npy") == NULL);
            dfm_sample_free(&s);
            dfm_wan_vae_free(vae);
        }
    }
    /* encoder: a large but finite mean: fine in float32, Inf once stored as float16 */
    if (!poisoned_model(src, w, "vae_enc_big", "quant_conv.bias", 3, 1e6f, dir, sizeof dir)) {
        dfm_wan_vae *vae = load_vae(dir, 1, 0);
        if (vae) {
            dfm_vae_stage_opts o = {.model = dir, .out_dtype = DFM_F16};
            dfm_sample s;
            frames_sample(&s);
            expect_msg(dfm_vae_encode_sample(vae, &o, &s), DFM_E_NONFINITE,
                       "latents.npy as float16 has 8 non-finite values (first +Inf at [3,0,0,0]): values past "
                       "float16's range (65504); store float32 with --out-dtype f32");
            dfm_sample_free(&s);
            o.out_dtype = DFM_F32;
            frames_sample(&s);
            CHECK_EQ(dfm_vae_encode_sample(vae, &o, &s), 0);
            CHECK(dfm_sample_get(&s, "latents.npy") != NULL);
            dfm_sample_free(&s);
            dfm_wan_vae_free(vae);
        }
    }
    /* decoder: an Inf bias on output channel 1 — the clamp to [-1, 1] would make it white */
    if (!poisoned_model(src, w, "vae_dec_inf", "decoder.conv_out.bias", 1, INFINITY, dir, sizeof dir)) {
        dfm_wan_vae *vae = load_vae(dir, 0, 1);
        if (vae) {
            dfm_vae_stage_opts o = {.model = dir};
            float z[16 * 2 * 3] = {0};
            const int64_t shape[4] = {16, 1, 2, 3};
            dfm_sample s;
            npy_sample(&s, "latents.npy", DFM_NPY_F32, 4, shape, z);
            /* [3, 1, 16, 24]: 384 values of channel 1 */
            expect_msg(dfm_vae_decode_sample(vae, &o, &s), DFM_E_NONFINITE,
                       "the VAE decoder's output [C,F,H,W] has 384 non-finite values (first +Inf at [1,0,0,0])");
            CHECK(dfm_sample_get(&s, "frames.npy") == NULL);
            dfm_sample_free(&s);
            dfm_wan_vae_free(vae);
        }
    }
    /* decoder: finite latents so large that the decoder overflows */
    vae_dir(src, sizeof src);
    dfm_wan_vae *vae = load_vae(src, 0, 1);
    if (vae) {
        dfm_vae_stage_opts o = {.model = src};
        float z[16 * 2 * 3];
        for (int i = 0; i < 16 * 6; i++) z[i] = 3e38f;
        const int64_t shape[4] = {16, 1, 2, 3};
        dfm_sample s;
        npy_sample(&s, "latents.npy", DFM_NPY_F32, 4, shape, z);
        expect_msg(dfm_vae_decode_sample(vae, &o, &s), DFM_E_NONFINITE, "the VAE decoder's output [C,F,H,W] has ");
        dfm_sample_free(&s);
        dfm_wan_vae_free(vae);
    }
}

TEST(stage_vae_encode_names_what_it_got)
{
    char dir[1024];
    vae_dir(dir, sizeof dir);
    dfm_wan_vae *vae = load_vae(dir, 1, 0);
    if (!vae) return;
    dfm_vae_stage_opts o = {.model = dir, .out_dtype = DFM_F16};
    float px[5 * 16 * 16 * 3] = {0};
    const int64_t shape[4] = {5, 16, 16, 3}, s3[3] = {16, 16, 3};
    dfm_sample s;
    npy_sample(&s, "frames.npy", DFM_NPY_F32, 4, shape, px);
    expect_msg(dfm_vae_encode_sample(vae, &o, &s), DFM_E_FORMAT,
               "frames.npy is float32 [5,16,16,3]; want uint8 [F,H,W,3]");
    dfm_sample_free(&s);
    npy_sample(&s, "frames.npy", DFM_NPY_U8, 3, s3, px);
    expect_msg(dfm_vae_encode_sample(vae, &o, &s), DFM_E_FORMAT, "frames.npy is uint8 [16,16,3]; want");
    dfm_sample_free(&s);
    dfm_wan_vae_free(vae);
}

/* ---- dfm-text-encode --------------------------------------------------------------------------- */

static dfm_tokenizer *load_tok(void)
{
    char d[1024];
    snprintf(d, sizeof d, "%s/tokenizer/rules", dfm_test_fixtures());
    dfm_tokenizer *t = NULL;
    int rc = dfm_tokenizer_load(&t, d);
    CHECK_EQ(rc, 0);
    if (rc) fprintf(stderr, "  %s\n", dfm_errmsg());
    return t;
}

static int encode_txt(dfm_text_encoder *te, const char *txt, size_t len, dfm_sample *s)
{
    dfm_sample_init(s);
    dfm_sample_set_key(s, "k");
    dfm_sample_set(s, "txt", txt, len);
    return dfm_text_encode_sample(te, s);
}

static int same_field(const dfm_sample *a, const dfm_sample *b, const char *name)
{
    const dfm_field *x = dfm_sample_get(a, name), *y = dfm_sample_get(b, name);
    return x && y && x->len == y->len && !memcmp(x->data, y->data, x->len);
}

TEST(stage_text_bom_and_bad_utf8)
{
    dfm_tokenizer *tok = load_tok();
    if (!tok) return;
    dfm_text_opts to = {.tokens_only = 1};
    dfm_text_encoder *te = NULL;
    CHECK_EQ(dfm_text_encoder_new(&te, &to, tok, NULL), 0);
    if (te) {
        dfm_sample a, b, c;
        CHECK_EQ(encode_txt(te, "a red fox", 9, &a), 0);
        CHECK_EQ(encode_txt(te, "\xEF\xBB\xBF" "a red fox", 12, &b), 0);
        CHECK_EQ(encode_txt(te, "\xEF\xBB\xBF\xEF\xBB\xBF" "a red fox", 15, &c), 0);
        CHECK(same_field(&a, &b, "tokens.npy"));
        CHECK(same_field(&a, &c, "tokens.npy"));
        /* the same caption once the mark is gone: served from the cache (the tokenizer's own
         * normalization might drop the mark too; the cache sees the text before it) */
        CHECK_EQ(dfm_text_encoder_hits(te), 2);
        dfm_sample_free(&a), dfm_sample_free(&b), dfm_sample_free(&c);
        expect_msg(encode_txt(te, "caf\xe9 au lait", 12, &a), DFM_E_FORMAT,
                   "txt is not valid UTF-8 (byte 0xe9 at offset 3 of 12)");
        dfm_sample_free(&a);
        expect_msg(encode_txt(te, "ok\xe2\x82", 4, &a), DFM_E_FORMAT, "txt is not valid UTF-8 (byte 0xe2 at offset 2 of 4)");
        dfm_sample_free(&a);
        expect_msg(encode_txt(te, "nu\0l", 4, &a), DFM_E_FORMAT, "txt has a NUL byte at offset 2");
        dfm_sample_free(&a);
        dfm_text_encoder_free(te);
    }
    dfm_tokenizer_free(tok);
}

TEST(stage_text_outputs_nonfinite)
{
    dfm_tokenizer *tok = load_tok();
    if (!tok) return;
    char src[1024], dir[1024];
    snprintf(src, sizeof src, "%s/umt5/tiny", dfm_test_fixtures());
    static const struct {
        const char *name;
        float v;
        dfm_dtype out;
        const char *want;
    } cases[] = {
        {"umt5_inf", INFINITY, DFM_F32, "text.npy (the text encoder's output) has "},
        {"umt5_big", 1e9f, DFM_F16, "text.npy as float16 has "},
        {"umt5_big", 1e9f, DFM_F32, NULL}, /* fine in float32 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (poisoned_model(src, "model.safetensors", cases[i].name, "encoder.final_layer_norm.weight", 5,
                           cases[i].v, dir, sizeof dir))
            continue;
        dfm_umt5 *enc = NULL;
        dfm_umt5_opts uo = {.device = DFM_CPU, .weights = DFM_F32};
        int rc = dfm_umt5_load(&enc, dir, &uo);
        CHECK_EQ(rc, 0);
        if (rc) {
            fprintf(stderr, "  %s\n", dfm_errmsg());
            continue;
        }
        dfm_text_opts to = {.out_dtype = cases[i].out};
        dfm_text_encoder *te = NULL;
        CHECK_EQ(dfm_text_encoder_new(&te, &to, tok, enc), 0);
        if (te) {
            dfm_sample s;
            rc = encode_txt(te, "a red fox in snow", 17, &s);
            if (cases[i].want) {
                expect_msg(rc, DFM_E_NONFINITE, cases[i].want);
                /* every token's column 5 */
                CHECK(strstr(dfm_errmsg(), " at [0,5])") != NULL);
                CHECK(dfm_sample_get(&s, "text.npy") == NULL);
            } else {
                CHECK_EQ(rc, 0);
                CHECK(dfm_sample_get(&s, "text.npy") != NULL);
            }
            dfm_sample_free(&s);
            /* the failure is not cached: the same caption fails again */
            if (cases[i].want) {
                CHECK_EQ(encode_txt(te, "a red fox in snow", 17, &s), DFM_E_NONFINITE);
                dfm_sample_free(&s);
            }
            dfm_text_encoder_free(te);
        }
        dfm_umt5_free(enc);
    }
    dfm_tokenizer_free(tok);
}
