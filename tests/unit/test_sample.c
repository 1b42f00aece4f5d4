/* test_sample.c — text to video (sample/pipeline.h) against diffusers' WanPipeline on the tiny
 * fixture models (tests/fixtures/wan_sample/README.md; scripts/make-sample-fixtures.py), all F32:
 *   the pipeline: model/ (model_index.json + scheduler/) linked in a scratch directory with the
 *     vae, text encoder, tokenizer and demo transformer fixtures, as the README says;
 *   text: prompt_clean + tokenizer + UMT5 (the steps pipeline.c runs) give diffusers' ids exactly
 *     and its states within TEXT_BOUND of max |states| — when a case below fails, this says
 *     whether the text side is the cause;
 *   cases unipc_cfg (guidance 5, 6 steps), unipc_nocfg (guidance 1, 4 steps), euler_cfg and lora
 *     (the one adapter in its three naming families: diffusers/PEFT, diffusion-pipe/ComfyUI,
 *     musubi), each one dfm_sample_run over the two prompts with the fixture's noise: final
 *     latents within LAT_BOUND of max |latents| and within VEL_BOUND of max |latents - noise| (the
 *     part the sampler adds: the demo transformer's velocities are small, its proj_out is scaled
 *     by 0.1), frames within 1 of diffusers' uint8 values and at most FRAME_FRAC of them off at
 *     all; the three LoRA files give the same bits;
 *   dfm_sample_round_size over diffusers' sweep (round_size.npy): frames as diffusers rounds them
 *     (f // 4 * 4 + 1); width/height as its rounding code floors them to multiples of 16 (diffusers
 *     itself refuses such sizes in check_inputs before that code runs; dfm rounds and warns);
 *   determinism: the same request twice, and with 1 and 2 threads: identical latents and frames
 *     (the VAE decode's float output is not yet thread-count independent: the conv3d im2col and
 *     Winograd paths differ by ~1e-6 between 1 and 2 threads; here the uint8 rounding hides it,
 *     with OPENBLAS_CORETYPE=Haswell a frame value flips and this check fails);
 *   no CFG at guidance <= 1: guidance 1 and 0.5 with different negatives give the same bits (the
 *     unconditional pass never runs; diffusers: bit-identical too), within LAT_BOUND of unipc_nocfg;
 *   prompt_clean: "  a red&amp;nbsp;fox \t in\nthe   snow " gives the clean prompt's bits.
 * Bounds: diffusers is bit-identical run to run; its own batch-of-2 vs two-calls difference (dfm
 * runs cond and uncond as one batch of 2) is 4.7e-7 of max |v| per step. The frame rounding: an
 * error of 1e-5 of max |x| in the latents moves 0.12% of the uint8 values by 1 (README). */
#include "test.h"
#include "tensor_util.h"
#include "base/buf.h"
#include "base/error.h"
#include "base/log.h"
#include "io/npy.h"
#include "models/wan/umt5.h"
#include "sample/pipeline.h"
#include "tensor/ops.h"
#include "text/prompt_clean.h"
#include "text/tokenizer.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LAT_BOUND 1e-5   /* final latents: max |dfm - diffusers| / max |diffusers| (measured <= 3.8e-7) */
#define VEL_BOUND 5e-5   /* the same error / max |diffusers - noise| (measured <= 5.6e-6) */
#define FRAME_FRAC 0.002 /* frames: at most this fraction of the uint8 values off by 1 (measured <= 3 of
                            23,040), none by more */
#define TEXT_BOUND 1e-5  /* UMT5 states: max abs error / max |states| (measured <= 9.1e-7) */

#define FIX "wan_sample"
static const char *const PROMPT[2] = {
    "a red fox in the snow",
    "A small wooden boat drifts across a quiet mountain lake at dawn, mist rising from the water, soft golden "
    "light, slow camera pan.",
};
static const char *const NEGATIVE[2] = {"", "blurry, static"};
static const char *const DIRTY_P0 = "  a red&amp;nbsp;fox \t in\nthe   snow ";
enum { WIDTH = 48, HEIGHT = 32, FRAMES = 5, NLAT = 16 * 2 * 4 * 6, NPIX = FRAMES * HEIGHT * WIDTH * 3 };

/* ---- fixtures ------------------------------------------------------------------------------- */

static void fix_path(char *out, size_t n, const char *rel)
{
    char abs[PATH_MAX];
    snprintf(out, n, "%s/%s", dfm_test_fixtures(), rel);
    if (realpath(out, abs)) snprintf(out, n, "%s", abs);
}

/* The diffusers root in the scratch directory (built once): model_index.json, scheduler/ and the
 * four model directories, all links. */
static const char *model_dir(void)
{
    static char dir[PATH_MAX];
    static int done;
    if (done) return dir;
    static const char *const links[][2] = {
        {"model_index.json", FIX "/model/model_index.json"},
        {"scheduler", FIX "/model/scheduler"},
        {"vae", "wan_vae/z16"},
        {"text_encoder", "umt5/tiny"},
        {"tokenizer", "tokenizer/rules"},
        {"transformer", "wan_transformer_demo/transformer"},
    };
    snprintf(dir, sizeof dir, "%s/sample_model", dfm_test_tmpdir());
    if (mkdir(dir, 0755)) fprintf(stderr, "  mkdir %s failed\n", dir);
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
        char target[PATH_MAX], link[PATH_MAX + 64];
        fix_path(target, sizeof target, links[i][1]);
        snprintf(link, sizeof link, "%s/%s", dir, links[i][0]);
        if (symlink(target, link)) fprintf(stderr, "  symlink %s -> %s failed\n", link, target);
    }
    done = 1;
    return dir;
}

/* tests/fixtures/wan_sample/rel as a .npy of dtype t with n elements; *buf keeps the bytes. */
static const void *load_npy(const char *rel, dfm_npy_dtype t, int64_t n, dfm_buf *buf, dfm_npy *npy)
{
    char dir[256];
    snprintf(dir, sizeof dir, "%s", FIX);
    if (dfm_test_load_fixture(dir, rel, buf)) return NULL;
    if (dfm_npy_parse(buf->data, buf->len, npy) || npy->dtype != t) {
        fprintf(stderr, "  %s: not a .npy of the expected dtype\n", rel);
        return NULL;
    }
    int64_t m = 1;
    for (int i = 0; i < npy->ndim; i++) m *= npy->shape[i];
    if (n >= 0 && m != n) {
        fprintf(stderr, "  %s: %lld elements, expected %lld\n", rel, (long long)m, (long long)n);
        return NULL;
    }
    return npy->data;
}

typedef struct {
    dfm_buf b;
    dfm_npy n;
    const float *f;
} ref_f32;

static int ref_load(ref_f32 *r, const char *rel, int64_t n)
{
    memset(r, 0, sizeof *r);
    r->f = load_npy(rel, DFM_NPY_F32, n, &r->b, &r->n);
    return r->f ? 0 : -1;
}

static void ref_free(ref_f32 *r) { dfm_buf_free(&r->b); }

/* ---- measures ------------------------------------------------------------------------------- */

static double maxabs(const float *a, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
    return m;
}

/* max |a - b| (NaN: infinity) */
static double maxdiff(const float *a, const float *b, size_t n)
{
    double e = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= e)) e = isnan(d) ? INFINITY : d;
    }
    return e;
}

/* Compare one result with the fixture's latents (and frames when decoded). */
static void check_result(const char *cas, int p, const dfm_sample_result *r, const float *noise, int frames)
{
    char rel[128];
    ref_f32 lat;
    snprintf(rel, sizeof rel, "cases/%s/p%d_latents.npy", cas, p);
    if (ref_load(&lat, rel, NLAT)) {
        CHECK(0);
        return;
    }
    CHECK(r->latents != NULL);
    CHECK_EQ(r->C, 16);
    CHECK_EQ(r->F, 2);
    CHECK_EQ(r->H, 4);
    CHECK_EQ(r->W, 6);
    if (!r->latents || (int64_t)r->C * r->F * r->H * r->W != NLAT) {
        ref_free(&lat);
        return;
    }
    float dv[NLAT];
    for (int i = 0; i < NLAT; i++) dv[i] = lat.f[i] - noise[i];
    double e = maxdiff(r->latents, lat.f, NLAT), rel_x = e / maxabs(lat.f, NLAT), rel_v = e / maxabs(dv, NLAT);
    CHECK(rel_x <= LAT_BOUND);
    CHECK(rel_v <= VEL_BOUND);
    if (!frames) {
        fprintf(stderr, "  %s p%d: latents %.2e of max |x| (%.2e of max |x - noise|)\n", cas, p, rel_x, rel_v);
        ref_free(&lat);
        return;
    }
    dfm_buf fb;
    dfm_npy fn;
    snprintf(rel, sizeof rel, "cases/%s/p%d_frames.npy", cas, p);
    const uint8_t *fr = load_npy(rel, DFM_NPY_U8, NPIX, &fb, &fn);
    CHECK(fr != NULL);
    CHECK(r->frames != NULL);
    CHECK_EQ(r->nframes, FRAMES);
    CHECK_EQ(r->height, HEIGHT);
    CHECK_EQ(r->width, WIDTH);
    if (fr && r->frames && r->nframes == FRAMES && r->height == HEIGHT && r->width == WIDTH) {
        int off = 0, worst = 0;
        for (int i = 0; i < NPIX; i++) {
            int d = abs((int)r->frames[i] - fr[i]);
            off += d > 0;
            worst = d > worst ? d : worst;
        }
        fprintf(stderr, "  %s p%d: latents %.2e of max |x| (%.2e of max |x - noise|); frames: %d of %d off by <= %d\n",
                cas, p, rel_x, rel_v, off, NPIX, worst);
        CHECK(worst <= 1);
        CHECK(off <= FRAME_FRAC * NPIX);
    }
    dfm_buf_free(&fb);
    ref_free(&lat);
}

/* ---- running -------------------------------------------------------------------------------- */

static void model_f32(dfm_sample_model *m)
{
    memset(m, 0, sizeof *m);
    m->model = model_dir();
    m->device = DFM_CPU;
    m->dtype = DFM_F32, m->text_dtype = DFM_F32, m->vae_dtype = DFM_F32;
    m->text_len = 512;
}

static void request(dfm_sample_request *r, int p, const float *noise, dfm_sampler_kind kind, double guidance, int steps)
{
    memset(r, 0, sizeof *r);
    r->prompt = PROMPT[p], r->negative = NEGATIVE[p];
    r->width = WIDTH, r->height = HEIGHT, r->frames = FRAMES;
    r->steps = steps, r->guidance = guidance, r->shift = 0, r->sampler = kind, r->sampler_set = 1;
    r->seed = 1, r->noise = noise;
}

typedef struct {
    ref_f32 noise[2];
} noises;

static int noises_load(noises *z)
{
    return ref_load(&z->noise[0], "noise_p0.npy", NLAT) | ref_load(&z->noise[1], "noise_p1.npy", NLAT);
}

static void noises_free(noises *z) { ref_free(&z->noise[0]), ref_free(&z->noise[1]); }

/* Both prompts of one case in one dfm_sample_run; out[2] */
static int run_case(const dfm_sample_model *m, const noises *z, dfm_sampler_kind kind, double guidance, int steps,
                    int decode, dfm_sample_result out[2])
{
    dfm_sample_request req[2];
    for (int p = 0; p < 2; p++) request(&req[p], p, z->noise[p].f, kind, guidance, steps);
    memset(out, 0, 2 * sizeof *out);
    int quiet = dfm_log_quiet();
    dfm_log_set_quiet(1); /* the LoRA's info line */
    int rc = dfm_sample_run(m, req, 2, decode, out, NULL, NULL);
    dfm_log_set_quiet(quiet);
    if (rc) fprintf(stderr, "  dfm_sample_run: %s\n", dfm_errmsg());
    return rc;
}

static int same_latents(const dfm_sample_result *a, const dfm_sample_result *b)
{
    return a->latents && b->latents && !memcmp(a->latents, b->latents, NLAT * sizeof(float));
}

static int same_frames(const dfm_sample_result *a, const dfm_sample_result *b)
{
    return a->frames && b->frames && !memcmp(a->frames, b->frames, NPIX);
}

/* ---- tests ---------------------------------------------------------------------------------- */

TEST(sample_text_states)
{
    static const char *const tags[4] = {"p0", "neg0", "p1", "neg1"};
    const char *texts[4] = {PROMPT[0], NEGATIVE[0], PROMPT[1], NEGATIVE[1]};
    char tdir[PATH_MAX], edir[PATH_MAX];
    fix_path(tdir, sizeof tdir, "tokenizer/rules");
    fix_path(edir, sizeof edir, "umt5/tiny");
    dfm_tokenizer *tok = NULL;
    dfm_umt5 *enc = NULL;
    dfm_umt5_opts uo = {.device = DFM_CPU, .weights = DFM_F32};
    CHECK_EQ(dfm_tokenizer_load(&tok, tdir), 0);
    CHECK_EQ(dfm_umt5_load(&enc, edir, &uo), 0);
    if (!tok || !enc) goto out;
    for (int k = 0; k < 4; k++) {
        char rel[64];
        dfm_buf ib;
        dfm_npy in;
        ref_f32 st;
        snprintf(rel, sizeof rel, "text/%s_ids.npy", tags[k]);
        const int32_t *want = load_npy(rel, DFM_NPY_I32, -1, &ib, &in);
        snprintf(rel, sizeof rel, "text/%s_states.npy", tags[k]);
        int bad = ref_load(&st, rel, -1);
        CHECK(want && !bad);
        char *clean = dfm_prompt_clean(texts[k], strlen(texts[k]));
        int32_t *ids = NULL;
        int n = 0;
        CHECK_EQ(dfm_tokenizer_encode(tok, clean, strlen(clean), 512, &ids, &n), 0);
        if (want && !bad && ids) {
            CHECK_EQ(n, in.shape[0]);
            CHECK(n == in.shape[0] && !memcmp(ids, want, (size_t)n * sizeof *ids));
            dfm_tensor out = {0};
            CHECK_EQ(dfm_umt5_encode(enc, ids, n, &out), 0);
            if (out.data && out.ndim == 2 && out.shape[0] == st.n.shape[0] && out.shape[1] == st.n.shape[1]) {
                size_t m = (size_t)out.shape[0] * out.shape[1];
                double e = maxdiff(out.data, st.f, m) / maxabs(st.f, m);
                fprintf(stderr, "  text %s (%d tokens): states %.2e of max |states|\n", tags[k], n, e);
                CHECK(e <= TEXT_BOUND);
            } else {
                CHECK(0);
            }
            dfm_tensor_free(&out);
        }
        free(ids);
        free(clean);
        dfm_buf_free(&ib);
        ref_free(&st);
    }
out:
    dfm_umt5_free(enc);
    dfm_tokenizer_free(tok);
}

TEST(sample_cases)
{
    static const struct {
        const char *name;
        dfm_sampler_kind kind;
        double guidance;
        int steps;
    } cases[] = {
        {"unipc_cfg", DFM_SAMPLER_UNIPC, 5.0, 6},
        {"unipc_nocfg", DFM_SAMPLER_UNIPC, 1.0, 4},
        {"euler_cfg", DFM_SAMPLER_EULER, 5.0, 6},
    };
    noises z;
    if (noises_load(&z)) {
        CHECK(0);
        noises_free(&z);
        return;
    }
    dfm_sample_model m;
    model_f32(&m);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        dfm_sample_result out[2];
        CHECK_EQ(run_case(&m, &z, cases[c].kind, cases[c].guidance, cases[c].steps, 1, out), 0);
        for (int p = 0; p < 2; p++) check_result(cases[c].name, p, &out[p], z.noise[p].f, 1);
        dfm_sample_result_free(&out[0]), dfm_sample_result_free(&out[1]);
    }
    noises_free(&z);
}

TEST(sample_lora_families)
{
    static const char *const files[3] = {
        FIX "/lora/diffusers/pytorch_lora_weights.safetensors",
        FIX "/lora/diffusion_pipe/adapter_model.safetensors",
        FIX "/lora/musubi/wan_lora_musubi.safetensors",
    };
    noises z;
    if (noises_load(&z)) {
        CHECK(0);
        noises_free(&z);
        return;
    }
    dfm_sample_result first[2] = {{0}};
    for (int f = 0; f < 3; f++) {
        char path[PATH_MAX];
        fix_path(path, sizeof path, files[f]);
        dfm_sample_model m;
        model_f32(&m);
        m.lora[0] = path, m.lora_scale[0] = 1.0f, m.nloras = 1;
        dfm_sample_result out[2];
        fprintf(stderr, "  LoRA %s\n", files[f] + strlen(FIX) + 1);
        CHECK_EQ(run_case(&m, &z, DFM_SAMPLER_UNIPC, 5.0, 6, f == 0, out), 0);
        for (int p = 0; p < 2; p++) {
            check_result("lora", p, &out[p], z.noise[p].f, f == 0);
            if (f == 0) first[p] = out[p];
            else {
                CHECK(same_latents(&out[p], &first[p])); /* the folded scale 2 is exact: the same bits */
                dfm_sample_result_free(&out[p]);
            }
        }
    }
    dfm_sample_result_free(&first[0]), dfm_sample_result_free(&first[1]);
    noises_free(&z);
}

TEST(sample_round_size)
{
    dfm_buf b;
    dfm_npy n;
    const int32_t *r = load_npy("round_size.npy", DFM_NPY_I32, -1, &b, &n);
    CHECK(r && n.ndim == 2 && n.shape[1] == 7 && n.shape[0] > 100);
    if (!r || n.ndim != 2 || n.shape[1] != 7) {
        dfm_buf_free(&b);
        return;
    }
    int bad = 0, accepted = 0;
    for (int64_t i = 0; i < n.shape[0]; i++) {
        const int32_t *x = r + 7 * i; /* w, h, f, accepted, w', h', f' */
        int w = x[0], h = x[1], f = x[2];
        int changed = dfm_sample_round_size(&w, &h, &f);
        int want_changed = x[4] != x[0] || x[5] != x[1] || x[6] != x[2];
        accepted += x[3];
        if (w != x[4] || h != x[5] || f != x[6] || changed != want_changed ||
            (x[3] && (x[4] != x[0] || x[5] != x[1]))) {
            if (bad++ < 5)
                fprintf(stderr, "  round %dx%dx%d: dfm %dx%dx%d (changed %d), diffusers %dx%dx%d (accepts %d)\n", x[0], x[1],
                        x[2], w, h, f, changed, x[4], x[5], x[6], x[3]);
        }
    }
    CHECK_EQ(bad, 0);
    CHECK(accepted > 0 && accepted < n.shape[0]);
    dfm_buf_free(&b);
}

TEST(sample_determinism)
{
    noises z;
    if (noises_load(&z)) {
        CHECK(0);
        noises_free(&z);
        return;
    }
    dfm_sample_model m;
    model_f32(&m);
    int threads = dfm_ops_threads();
    dfm_sample_result a[2], b[2], c[2];
    dfm_ops_set_threads(1);
    CHECK_EQ(run_case(&m, &z, DFM_SAMPLER_UNIPC, 5.0, 6, 1, a), 0);
    CHECK_EQ(run_case(&m, &z, DFM_SAMPLER_UNIPC, 5.0, 6, 1, b), 0);
    dfm_ops_set_threads(2);
    CHECK_EQ(run_case(&m, &z, DFM_SAMPLER_UNIPC, 5.0, 6, 1, c), 0);
    dfm_ops_set_threads(threads);
    for (int p = 0; p < 2; p++) {
        CHECK(same_latents(&a[p], &b[p]) && same_frames(&a[p], &b[p]));
        CHECK(same_latents(&a[p], &c[p]) && same_frames(&a[p], &c[p]));
        dfm_sample_result_free(&a[p]), dfm_sample_result_free(&b[p]), dfm_sample_result_free(&c[p]);
    }
    noises_free(&z);
}

TEST(sample_no_cfg_at_guidance_1)
{
    ref_f32 z;
    if (ref_load(&z, "noise_p0.npy", NLAT)) {
        CHECK(0);
        return;
    }
    dfm_sample_model m;
    model_f32(&m);
    dfm_sample_request req[2];
    request(&req[0], 0, z.f, DFM_SAMPLER_UNIPC, 1.0, 4);
    request(&req[1], 0, z.f, DFM_SAMPLER_UNIPC, 0.5, 4);
    req[1].negative = "snow, ugly"; /* would change the bits if an unconditional pass ran */
    dfm_sample_result out[2] = {{0}};
    CHECK_EQ(dfm_sample_run(&m, req, 2, 0, out, NULL, NULL), 0);
    CHECK(same_latents(&out[0], &out[1]));
    check_result("unipc_nocfg", 0, &out[1], z.f, 0);
    dfm_sample_result_free(&out[0]), dfm_sample_result_free(&out[1]);
    ref_free(&z);
}

TEST(sample_prompt_clean)
{
    ref_f32 z;
    if (ref_load(&z, "noise_p0.npy", NLAT)) {
        CHECK(0);
        return;
    }
    dfm_sample_model m;
    model_f32(&m);
    dfm_sample_request req[2];
    request(&req[0], 0, z.f, DFM_SAMPLER_UNIPC, 5.0, 6);
    request(&req[1], 0, z.f, DFM_SAMPLER_UNIPC, 5.0, 6);
    req[1].prompt = DIRTY_P0;
    dfm_sample_result out[2] = {{0}};
    CHECK_EQ(dfm_sample_run(&m, req, 2, 0, out, NULL, NULL), 0);
    CHECK(same_latents(&out[0], &out[1]));
    check_result("unipc_cfg", 0, &out[1], z.f, 0);
    dfm_sample_result_free(&out[0]), dfm_sample_result_free(&out[1]);
    ref_free(&z);
}
