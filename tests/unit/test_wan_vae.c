/* test_wan_vae.c — parity of the Wan VAE with diffusers' AutoencoderKLWan.
 *
 * Fixtures (scripts/make-vae-fixtures.py): tests/fixtures/wan_vae/<model>/ is a save_pretrained
 * directory; <model>/cases/<case>/ holds input.npy [3,F,H,W], posterior_mean.npy, logvar.npy,
 * latents_norm.npy, decoded.npy (decode of the mean), sample_eps.npy and sample.npy. The model is
 * loaded through the production loader (dfm_wan_vae_load) and every output is compared.
 * Bounds: f32 max abs error 1e-4 (the contract; measured 2.9e-6 latents, 5.0e-6 pixels);
 * bf16 compute 1e-1 on latents (measured 4.2e-2) and
 * 2e-1 on decoded pixels in [-1, 1] (measured 7.6e-2), against the f32 reference.
 */
#include "test.h"
#include "tensor_util.h"
#include "base/error.h"
#include "io/npy.h"
#include "models/wan/vae.h"
#include "tensor/ops.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define F32_BOUND 1e-4
#define BF16_LATENT_BOUND 1e-1
#define BF16_PIXEL_BOUND 2e-1

/* Run every case of one model at one precision; returns the number of cases checked. */
static int run_model(const char *mdir, dfm_dtype wdt, double lat_bound, double pix_bound, double *worst_lat,
                     double *worst_pix)
{
    dfm_wan_vae *vae = NULL;
    dfm_wan_vae_opts o = {.device = DFM_CPU, .weights = wdt};
    int rc = dfm_wan_vae_load(&vae, mdir, &o);
    CHECK_EQ(rc, 0);
    if (rc) {
        fprintf(stderr, "  %s\n", dfm_errmsg());
        return 0;
    }
    char cdir[1024];
    snprintf(cdir, sizeof cdir, "%s/cases", mdir);
    DIR *d = opendir(cdir);
    CHECK(d != NULL);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char c[1200];
        snprintf(c, sizeof c, "%s/%s", cdir, e->d_name);
        if (!dfm_test_is_dir(c)) continue;
        dfm_tensor x, mean_ref, logvar_ref, norm_ref, dec_ref, eps, sample_ref, mean, logvar, dec;
        if (dfm_test_load_npy(c, "input.npy", &x, 0) || dfm_test_load_npy(c, "posterior_mean.npy", &mean_ref, 0) ||
            dfm_test_load_npy(c, "logvar.npy", &logvar_ref, 0) || dfm_test_load_npy(c, "latents_norm.npy", &norm_ref, 0) ||
            dfm_test_load_npy(c, "decoded.npy", &dec_ref, 0) || dfm_test_load_npy(c, "sample_eps.npy", &eps, 0) ||
            dfm_test_load_npy(c, "sample.npy", &sample_ref, 0)) {
            CHECK(0);
            continue;
        }
        rc = dfm_wan_vae_encode(vae, &x, &mean, &logvar);
        CHECK_EQ(rc, 0);
        if (rc) {
            fprintf(stderr, "  %s: %s\n", c, dfm_errmsg());
            continue;
        }
        double dm = dfm_test_max_abs_diff(&mean, &mean_ref), dl = dfm_test_max_abs_diff(&logvar, &logvar_ref);
        /* the seeded-sample path with the reference's noise */
        dfm_tensor smp;
        dfm_tensor_copy(&smp, &mean, DFM_CPU);
        float *sp = smp.data, *lp = logvar.data, *ep = eps.data;
        for (int64_t i = 0; i < dfm_tensor_numel(&smp); i++) sp[i] += expf(0.5f * lp[i]) * ep[i];
        double ds = dfm_test_max_abs_diff(&smp, &sample_ref);
        dfm_tensor nz;
        dfm_tensor_copy(&nz, &mean, DFM_CPU);
        CHECK_EQ(dfm_wan_vae_normalize(vae, &nz), 0);
        double dn = dfm_test_max_abs_diff(&nz, &norm_ref);
        /* decode the reference mean so decoder error is measured on its own */
        rc = dfm_wan_vae_decode(vae, &mean_ref, &dec);
        CHECK_EQ(rc, 0);
        double dd = rc ? 1e30 : dfm_test_max_abs_diff(&dec, &dec_ref);
        /* denormalize(normalize(z)) == z */
        CHECK_EQ(dfm_wan_vae_denormalize(vae, &nz), 0);
        double dr = dfm_test_max_abs_diff(&nz, &mean);
        fprintf(stderr, "  %-40s %s mean %.2e logvar %.2e sample %.2e norm %.2e decoded %.2e\n",
                c + strlen(dfm_test_fixtures()) + 1, wdt == DFM_BF16 ? "bf16" : "f32 ", dm, dl, ds, dn, dd);
        CHECK(dm <= lat_bound);
        CHECK(dl <= lat_bound * 10); /* logvar spans a wider range (|logvar| up to ~10) */
        CHECK(ds <= lat_bound * 2);
        CHECK(dn <= lat_bound * 2);
        CHECK(dd <= pix_bound);
        CHECK(dr <= 1e-5);
        if (dm > *worst_lat) *worst_lat = dm;
        if (dd > *worst_pix) *worst_pix = dd;
        n++;
        dfm_tensor_free(&x), dfm_tensor_free(&mean_ref), dfm_tensor_free(&logvar_ref);
        dfm_tensor_free(&norm_ref), dfm_tensor_free(&dec_ref), dfm_tensor_free(&eps);
        dfm_tensor_free(&sample_ref), dfm_tensor_free(&mean), dfm_tensor_free(&logvar);
        dfm_tensor_free(&dec), dfm_tensor_free(&smp), dfm_tensor_free(&nz);
    }
    if (d) closedir(d);
    dfm_wan_vae_free(vae);
    return n;
}

static void run_all(dfm_dtype wdt, double lat_bound, double pix_bound)
{
    char root[512];
    snprintf(root, sizeof root, "%s/wan_vae", dfm_test_fixtures());
    DIR *d = opendir(root);
    CHECK(d != NULL);
    if (!d) return;
    int cases = 0;
    double wl = 0, wp = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char m[1024], cfg[1100];
        snprintf(m, sizeof m, "%s/%s", root, e->d_name);
        snprintf(cfg, sizeof cfg, "%s/config.json", m);
        struct stat st;
        if (stat(cfg, &st) != 0) continue;
        cases += run_model(m, wdt, lat_bound, pix_bound, &wl, &wp);
    }
    closedir(d);
    fprintf(stderr, "  %s: %d cases, worst latent error %.2e (bound %.0e), worst pixel error %.2e (bound %.0e)\n",
            wdt == DFM_BF16 ? "bf16" : "f32", cases, wl, lat_bound, wp, pix_bound);
    CHECK(cases >= 4);
}

TEST(wan_vae_parity_f32) { run_all(DFM_F32, F32_BOUND, F32_BOUND); }
TEST(wan_vae_parity_bf16) { run_all(DFM_BF16, BF16_LATENT_BOUND, BF16_PIXEL_BOUND); }

TEST(wan_vae_rejects_bad_shapes)
{
    char m[512];
    snprintf(m, sizeof m, "%s/wan_vae", dfm_test_fixtures());
    DIR *d = opendir(m);
    if (!d) {
        CHECK(0);
        return;
    }
    struct dirent *e;
    char mdir[1024] = "";
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') {
            char cfg[1200];
            snprintf(cfg, sizeof cfg, "%s/%s/config.json", m, e->d_name);
            struct stat st;
            if (stat(cfg, &st) == 0) {
                snprintf(mdir, sizeof mdir, "%s/%s", m, e->d_name);
                break;
            }
        }
    closedir(d);
    dfm_wan_vae *vae = NULL;
    dfm_wan_vae_opts o = {.device = DFM_CPU, .weights = DFM_F32};
    CHECK_EQ(dfm_wan_vae_load(&vae, mdir, &o), 0);
    if (!vae) return;
    const dfm_wan_vae_config *c = dfm_wan_vae_get_config(vae);
    dfm_tensor x, mean;
    int64_t s4[4] = {c->in_channels, 4, 16, 16};
    dfm_tensor_zeros(&x, DFM_F32, DFM_CPU, 4, s4);
    CHECK_EQ(dfm_wan_vae_encode(vae, &x, &mean, NULL), DFM_E_ARG); /* 4 frames */
    CHECK(strstr(dfm_errmsg(), "4k+1") != NULL);
    dfm_tensor_free(&x);
    int64_t s5[4] = {c->in_channels, 5, 12, 16};
    dfm_tensor_zeros(&x, DFM_F32, DFM_CPU, 4, s5);
    CHECK_EQ(dfm_wan_vae_encode(vae, &x, &mean, NULL), DFM_E_ARG); /* 12 is not a multiple of 8 */
    CHECK(strstr(dfm_errmsg(), "multiples of 8") != NULL);
    dfm_tensor_free(&x);
    dfm_wan_vae_free(vae);
    /* a directory that is not a VAE */
    CHECK(dfm_wan_vae_load(&vae, dfm_test_tmpdir(), &o) < 0);
}

#include "base/rng.h"
#include "io/safetensors.h"
#include <cjson/cJSON.h>

static int same_bits(const dfm_tensor *a, const dfm_tensor *b)
{
    return dfm_tensor_numel(a) == dfm_tensor_numel(b) && !memcmp(a->data, b->data, dfm_tensor_nbytes(a));
}

/* Encode and decode with 1, 2 and 3 threads give the same bits (DESIGN.md §5: a run repeated on
 * another thread count, or resumed, reproduces its outputs), f32 and bf16 weights. */
TEST(wan_vae_threads_bitwise)
{
    char mdir[512], cdir[600];
    snprintf(mdir, sizeof mdir, "%s/wan_vae/z16", dfm_test_fixtures());
    snprintf(cdir, sizeof cdir, "%s/cases/f5_24x40", mdir);
    dfm_tensor x, z;
    if (dfm_test_load_npy(cdir, "input.npy", &x, 0) || dfm_test_load_npy(cdir, "posterior_mean.npy", &z, 0)) {
        CHECK(0);
        return;
    }
    for (int wi = 0; wi < 2; wi++) {
        dfm_wan_vae *vae = NULL;
        dfm_wan_vae_opts o = {.device = DFM_CPU, .weights = wi ? DFM_BF16 : DFM_F32};
        int rc = dfm_wan_vae_load(&vae, mdir, &o);
        CHECK_EQ(rc, 0);
        if (rc) {
            fprintf(stderr, "  %s\n", dfm_errmsg());
            break;
        }
        dfm_tensor mean1, logvar1, dec1;
        for (int threads = 1; threads <= 3; threads++) {
            dfm_ops_set_threads(threads);
            dfm_tensor mean, logvar, dec;
            CHECK_EQ(dfm_wan_vae_encode(vae, &x, &mean, &logvar), 0);
            CHECK_EQ(dfm_wan_vae_decode(vae, &z, &dec), 0);
            if (threads == 1) {
                mean1 = mean, logvar1 = logvar, dec1 = dec;
                continue;
            }
            int sm = same_bits(&mean, &mean1), sl = same_bits(&logvar, &logvar1), sd = same_bits(&dec, &dec1);
            if (!sm || !sl || !sd)
                fprintf(stderr, "  %s weights, %d threads vs 1: mean %s, logvar %s, decoded %s\n", wi ? "bf16" : "f32",
                        threads, sm ? "same" : "DIFFER", sl ? "same" : "DIFFER", sd ? "same" : "DIFFER");
            CHECK(sm && sl && sd);
            dfm_tensor_free(&mean), dfm_tensor_free(&logvar), dfm_tensor_free(&dec);
        }
        dfm_tensor_free(&mean1), dfm_tensor_free(&logvar1), dfm_tensor_free(&dec1);
        dfm_wan_vae_free(vae);
    }
    dfm_ops_set_threads(0);
    dfm_tensor_free(&x), dfm_tensor_free(&z);
}

/* The released Wan 2.1 VAE layout (tests/fixtures/wan_vae_layout: config.json and every tensor
 * name and shape, from diffusers) filled with random weights: the production loader must use
 * every tensor, and a small clip must encode and decode to the right shapes, finite. */
TEST(wan_vae_real_layout)
{
    char dir[512], path[700];
    snprintf(dir, sizeof dir, "%s/wan_vae_layout", dfm_test_fixtures());
    dfm_buf b = {0};
    snprintf(path, sizeof path, "%s/layout.json", dir);
    CHECK_EQ(dfm_read_file(path, 0, &b), 0);
    cJSON *lay = cJSON_ParseWithLength((const char *)b.data, b.len);
    dfm_buf_free(&b);
    CHECK(lay != NULL);
    if (!lay) return;
    int n = cJSON_GetArraySize(lay), i = 0;
    dfm_st_entry *e = calloc((size_t)n, sizeof *e);
    float **data = calloc((size_t)n, sizeof *data);
    cJSON *it;
    int64_t params = 0;
    cJSON_ArrayForEach(it, lay)
    {
        e[i].name = it->string;
        e[i].dtype = DFM_F32;
        e[i].ndim = cJSON_GetArraySize(it);
        int64_t numel = 1, fan_in = 1;
        for (int d = 0; d < e[i].ndim; d++) {
            e[i].shape[d] = (int64_t)cJSON_GetArrayItem(it, d)->valuedouble;
            numel *= e[i].shape[d];
            if (d > 0) fan_in *= e[i].shape[d];
        }
        params += numel;
        data[i] = malloc((size_t)numel * sizeof(float));
        dfm_randn(1234, (uint64_t)i, data[i], (size_t)numel);
        int is_gamma = strstr(e[i].name, "gamma") != NULL, is_bias = strstr(e[i].name, "bias") != NULL;
        for (int64_t k = 0; k < numel; k++)
            data[i][k] = is_gamma ? 1.0f + 0.1f * data[i][k]
                       : is_bias  ? 0.02f * data[i][k]
                                  : data[i][k] / sqrtf((float)fan_in);
        e[i].data = data[i];
        i++;
    }
    CHECK_EQ(n, 194);
    CHECK_EQ(params, 126892531);
    char mdir[600];
    snprintf(mdir, sizeof mdir, "%s/vae_real", dfm_test_tmpdir());
    mkdir(mdir, 0755);
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", mdir);
    CHECK_EQ(dfm_st_write(path, e, n, NULL), 0);
    for (i = 0; i < n; i++) free(data[i]);
    free(data), free(e);
    char src[700], dst[700];
    snprintf(src, sizeof src, "%s/config.json", dir);
    snprintf(dst, sizeof dst, "%s/config.json", mdir);
    CHECK_EQ(dfm_read_file(src, 0, &b), 0);
    CHECK_EQ(dfm_write_file_atomic(dst, b.data, b.len), 0);
    dfm_buf_free(&b);
    cJSON_Delete(lay);

    dfm_wan_vae *vae = NULL;
    dfm_wan_vae_opts o = {.device = DFM_CPU, .weights = DFM_F32};
    int rc = dfm_wan_vae_load(&vae, mdir, &o);
    CHECK_EQ(rc, 0);
    if (rc) {
        fprintf(stderr, "  %s\n", dfm_errmsg());
        return;
    }
    const dfm_wan_vae_config *c = dfm_wan_vae_get_config(vae);
    CHECK_EQ(c->base_dim, 96);
    CHECK_EQ(c->z_dim, 16);
    CHECK(c->has_latents_stats);
    CHECK_NEAR(c->latents_std[0], 2.8184, 1e-6);
    dfm_tensor x, mean, logvar, dec;
    int64_t s[4] = {3, 5, 32, 48};
    dfm_tensor_alloc(&x, DFM_F32, DFM_CPU, 4, s);
    float *xp = x.data;
    for (int64_t k = 0; k < dfm_tensor_numel(&x); k++) xp[k] = sinf((float)k * 0.01f);
    CHECK_EQ(dfm_wan_vae_encode(vae, &x, &mean, &logvar), 0);
    CHECK_EQ(mean.shape[0], 16);
    CHECK_EQ(mean.shape[1], 2);
    CHECK_EQ(mean.shape[2], 4);
    CHECK_EQ(mean.shape[3], 6);
    int finite = 1;
    for (int64_t k = 0; k < dfm_tensor_numel(&mean); k++) finite &= isfinite(((float *)mean.data)[k]);
    CHECK(finite);
    CHECK_EQ(dfm_wan_vae_decode(vae, &mean, &dec), 0);
    CHECK_EQ(dec.shape[0], 3);
    CHECK_EQ(dec.shape[1], 5);
    CHECK_EQ(dec.shape[2], 32);
    CHECK_EQ(dec.shape[3], 48);
    float *dp = dec.data;
    for (int64_t k = 0; k < dfm_tensor_numel(&dec); k++) finite &= dp[k] >= -1.0f && dp[k] <= 1.0f;
    CHECK(finite);
    /* at the real widths (96..384 channels: every conv path at full size) 1 and 2 threads give
     * the same bits */
    dfm_tensor mean1, logvar1, dec1;
    dfm_ops_set_threads(1);
    CHECK_EQ(dfm_wan_vae_encode(vae, &x, &mean1, &logvar1), 0);
    CHECK_EQ(dfm_wan_vae_decode(vae, &mean, &dec1), 0);
    dfm_ops_set_threads(2);
    dfm_tensor mean2, logvar2, dec2;
    CHECK_EQ(dfm_wan_vae_encode(vae, &x, &mean2, &logvar2), 0);
    CHECK_EQ(dfm_wan_vae_decode(vae, &mean, &dec2), 0);
    dfm_ops_set_threads(0);
    CHECK(same_bits(&mean1, &mean2));
    CHECK(same_bits(&logvar1, &logvar2));
    CHECK(same_bits(&dec1, &dec2));
    dfm_tensor_free(&mean1), dfm_tensor_free(&logvar1), dfm_tensor_free(&dec1);
    dfm_tensor_free(&mean2), dfm_tensor_free(&logvar2), dfm_tensor_free(&dec2);
    dfm_tensor_free(&x), dfm_tensor_free(&mean), dfm_tensor_free(&logvar), dfm_tensor_free(&dec);
    dfm_wan_vae_free(vae);
}
