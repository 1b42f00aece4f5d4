/* fuzz_model_config.c — libFuzzer harness for the model config loaders: the Wan VAE's and
 * UMT5's config.json through io/hfmodel.c, then the full loaders (dfm_wan_vae_load,
 * dfm_umt5_load) against a weights file, so that what a config declares meets a real safetensors
 * header: sizes must be range-checked and every shape compared with the header before anything
 * is allocated (a config declaring gigabytes must fail on the header, not on malloc — libFuzzer's
 * malloc limit turns such an allocation into a crash).
 * Input: byte 0 picks the weights beside the config — bits 0-1: 0 or 3 a tiny file holding one
 * unrelated tensor, 1 the tiny Wan VAE fixture, 2 the tiny UMT5 fixture (tests/fixtures, found
 * from the current directory or $DFM_TOP; the tiny file if absent); bit 2: load in BF16, bit 3:
 * UMT5 keep_mapped. The rest is config.json. Everything lives in a scratch directory removed
 * before returning. */
#include "fuzz.h"
#include "base/dtype.h"
#include "models/wan/umt5.h"
#include "models/wan/vae.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int put_weights(const char *dir, int which)
{
    static const char *const fixtures[] = {"tests/fixtures/wan_vae/tiny/diffusion_pytorch_model.safetensors",
                                           "tests/fixtures/umt5/tiny/model.safetensors"};
    char src[PATH_MAX], dst[PATH_MAX + 64];
    if (which == 1 || which == 2) {
        const char *top = getenv("DFM_TOP");
        snprintf(src, sizeof src, "%s/%s", top && *top ? top : ".", fixtures[which - 1]);
        char *abs = realpath(src, NULL);
        if (abs) {
            snprintf(dst, sizeof dst, "%s/model.safetensors", dir);
            int rc = symlink(abs, dst);
            free(abs);
            if (rc == 0) return 0;
        }
    }
    /* u64 header length, the header padded with spaces to 8 bytes, one F32 */
    static const char hdr[] = "{\"unused\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    uint8_t file[8 + sizeof hdr + 8 + 4];
    size_t hl = (sizeof hdr - 1 + 7) / 8 * 8;
    memset(file, ' ', sizeof file);
    for (int i = 0; i < 8; i++) file[i] = (uint8_t)(hl >> (8 * i));
    memcpy(file + 8, hdr, sizeof hdr - 1);
    float one = 1.0f;
    memcpy(file + 8 + hl, &one, 4);
    return fz_put(dir, "model.safetensors", file, 8 + hl + 4);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (1 << 20)) return 0;
    int sel = data[0];
    char dir[512];
    if (fz_tmpdir(dir, sizeof dir)) return 0;
    if (fz_put(dir, "config.json", data + 1, size - 1) == 0 && put_weights(dir, sel & 3) == 0) {
        dfm_dtype wdt = sel & 4 ? DFM_BF16 : DFM_F32;
        dfm_wan_vae_config vc;
        if (fz_note("vae config", dfm_wan_vae_config_load(&vc, dir)) == 0 && (vc.base_dim < 1 || vc.z_dim < 1 || vc.n_levels < 2))
            abort();
        dfm_wan_vae *vae = NULL;
        dfm_wan_vae_opts vo = {DFM_CPU, wdt, 1, 1};
        if (fz_note("vae load", dfm_wan_vae_load(&vae, dir, &vo)) == 0) dfm_wan_vae_free(vae);
        dfm_umt5_config uc;
        if (fz_note("umt5 config", dfm_umt5_config_load(&uc, dir)) == 0 && (uc.d_model < 1 || uc.vocab_size < 1)) abort();
        dfm_umt5 *m = NULL;
        dfm_umt5_opts uo = {DFM_CPU, wdt, (sel >> 3) & 1};
        if (fz_note("umt5 load", dfm_umt5_load(&m, dir, &uo)) == 0) dfm_umt5_free(m);
    }
    fz_rmtree(dir);
    return 0;
}
