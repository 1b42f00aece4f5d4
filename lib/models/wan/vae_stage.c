/* vae_stage.c — sample-level VAE encode/decode (see vae_stage.h).
 * ref: diffusers VideoProcessor.preprocess_video / postprocess_video; NeMo AutoModel
 *      tools/diffusion/processors/wan.py (normalized latents), pipeline_wan.py (denormalize). */
#include "models/wan/vae_stage.h"
#include "base/buf.h"
#include "base/error.h"
#include "base/rng.h"
#include "base/strset.h"
#include "io/npy.h"
#include "tensor/finite.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int dfm_frames_to_video(const uint8_t *rgb, int64_t F, int64_t H, int64_t W, dfm_tensor *out)
{
    int64_t s[4] = {3, F, H, W};
    int rc = dfm_tensor_alloc(out, DFM_F32, DFM_CPU, 4, s);
    if (rc) return rc;
    float *y = out->data;
    int64_t plane = F * H * W;
    for (int64_t i = 0; i < plane; i++)
        for (int c = 0; c < 3; c++) y[c * plane + i] = ((float)rgb[i * 3 + c] / 255.0f - 0.5f) / 0.5f;
    return 0;
}

int dfm_video_to_frames(const dfm_tensor *x, uint8_t *rgb)
{
    if (x->device != DFM_CPU || x->dtype != DFM_F32 || x->ndim != 4 || x->shape[0] != 3)
        return dfm_fail(DFM_E_ARG, "video to frames: need CPU F32 [3, F, H, W]");
    const float *p = x->data;
    int64_t plane = x->shape[1] * x->shape[2] * x->shape[3];
    for (int64_t i = 0; i < plane; i++)
        for (int c = 0; c < 3; c++) {
            float v = p[c * plane + i] / 2.0f + 0.5f;
            v = v < 0 ? 0 : v > 1 ? 1 : v;
            rgb[i * 3 + c] = (uint8_t)lrintf(v * 255.0f);
        }
    return 0;
}

/* Bring a CPU tensor to the VAE's device (or alias it when already there). */
static int to_device(const dfm_tensor *x, dfm_device dev, dfm_tensor *out)
{
    if (dev == x->device) {
        *out = *x;
        out->owned = 0;
        return 0;
    }
    return dfm_tensor_copy(out, x, dev);
}

/* Store t (F32) as field in dtype dt (F32 or F16). What is stored must be finite: a value past
 * float16's range becomes Inf when converted, and that is an error naming the way out. */
static int set_npy_f(dfm_sample *s, const char *field, const dfm_tensor *t, dfm_dtype dt)
{
    const dfm_tensor *src = t;
    dfm_tensor host = {0};
    int rc = 0;
    if (t->device != DFM_CPU) {
        if ((rc = dfm_tensor_copy(&host, t, DFM_CPU))) return rc;
        src = &host;
    }
    size_t n = (size_t)dfm_tensor_numel(src);
    void *buf = dt == DFM_F32 ? src->data : dfm_malloc(n * 2);
    if (!buf) rc = DFM_E_NOMEM;
    if (!rc && dt != DFM_F32) rc = dfm_convert_floats(buf, dt, src->data, DFM_F32, n);
    if (!rc && dt != DFM_F32) {
        dfm_tensor v = dfm_tensor_view(buf, dt, DFM_CPU, src->ndim, src->shape);
        dfm_nonfinite r;
        char m[256];
        if (!(rc = dfm_tensor_nonfinite(&v, &r)) && r.count)
            rc = dfm_fail(DFM_E_NONFINITE, "%s as float16 has %s: values past float16's range "
                          "(65504); store float32 with --out-dtype f32", field,
                          dfm_nonfinite_str(&r, &v, m, sizeof m));
    }
    uint8_t *npy = NULL;
    size_t len = 0;
    if (!rc) rc = dfm_npy_build(dt == DFM_F32 ? DFM_NPY_F32 : DFM_NPY_F16, src->ndim, src->shape, buf, &npy, &len);
    if (!rc) rc = dfm_sample_set_owned(s, field, npy, len);
    if (buf != src->data) free(buf);
    dfm_tensor_free(&host);
    return rc;
}

static int add_json(dfm_sample *s, const char *section, cJSON *obj)
{
    cJSON *j;
    int rc = dfm_sample_json(s, &j);
    if (rc) {
        cJSON_Delete(obj);
        return rc;
    }
    cJSON_DeleteItemFromObject(j, section);
    cJSON_AddItemToObject(j, section, obj);
    rc = dfm_sample_set_json(s, j);
    cJSON_Delete(j);
    return rc;
}

static cJSON *shape_json(const dfm_tensor *t)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < t->ndim; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)t->shape[i]));
    return a;
}

int dfm_vae_encode_sample(dfm_wan_vae *vae, const dfm_vae_stage_opts *o, dfm_sample *s)
{
    const dfm_field *f = dfm_sample_get(s, "frames.npy");
    if (!f) return dfm_fail(DFM_E_FORMAT, "no 'frames.npy' field (run dfm-decode | dfm-bucket first)");
    dfm_npy a;
    int rc = dfm_npy_parse(f->data, f->len, &a);
    if (rc == DFM_E_UNSUPPORTED || (!rc && (a.dtype != DFM_NPY_U8 || a.ndim != 4 || a.shape[3] != 3))) {
        char got[160];
        return dfm_fail(DFM_E_FORMAT, "frames.npy is %s; want uint8 [F,H,W,3] (RGB, as dfm-decode "
                        "writes it)", dfm_npy_describe(f->data, f->len, got, sizeof got));
    }
    if (rc) return dfm_fail_ctx(rc, "frames.npy");
    int64_t F = a.shape[0], H = a.shape[1], W = a.shape[2];
    if (F < 1 || (F - 1) % 4)
        return dfm_fail(DFM_E_ARG, "%lld frames: the Wan VAE takes 4k+1 frames; trim with dfm-bucket "
                                   "--frame-rule 4k+1", (long long)F);
    if (H % 8 || W % 8 || H < 8 || W < 8)
        return dfm_fail(DFM_E_ARG, "%lldx%lld frames: width and height must be multiples of 8; resize "
                                   "with dfm-bucket (e.g. --preset 512p)", (long long)W, (long long)H);
    const dfm_wan_vae_config *cfg = dfm_wan_vae_get_config(vae);
    if (!cfg->has_latents_stats)
        return dfm_fail(DFM_E_ARG, "the VAE config has no latents_mean/latents_std to normalize with");
    dfm_tensor host, x, mean = {0}, logvar = {0};
    if ((rc = dfm_frames_to_video(a.data, F, H, W, &host))) return rc;
    rc = to_device(&host, dfm_wan_vae_device(vae), &x);
    if (!rc) rc = dfm_wan_vae_encode(vae, &x, &mean, o->sample ? &logvar : NULL);
    if (x.data != host.data) dfm_tensor_free(&x);
    dfm_tensor_free(&host);
    dfm_tensor z = {0};
    if (!rc) rc = dfm_tensor_copy(&z, &mean, DFM_CPU);
    if (!rc && o->sample) {
        dfm_tensor lv;
        if (!(rc = dfm_tensor_copy(&lv, &logvar, DFM_CPU))) {
            size_t n = (size_t)dfm_tensor_numel(&z);
            float *eps = dfm_malloc(n * sizeof *eps);
            if (!eps) rc = DFM_E_NOMEM;
            else {
                /* the stream id is the key's hash: a sample's noise does not depend on its position */
                dfm_randn(o->seed, dfm_hash_fnv1a(s->key, strlen(s->key)), eps, n);
                float *zp = z.data, *l = lv.data;
                for (size_t i = 0; i < n; i++) zp[i] = zp[i] + expf(0.5f * l[i]) * eps[i];
                free(eps);
            }
            dfm_tensor_free(&lv);
        }
    }
    dfm_tensor_free(&mean), dfm_tensor_free(&logvar);
    if (!rc) rc = dfm_wan_vae_normalize(vae, &z);
    if (!rc) rc = dfm_tensor_check_finite(&z, "latents.npy (normalized)");
    if (!rc) rc = set_npy_f(s, "latents.npy", &z, o->out_dtype);
    if (!rc) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddItemToObject(j, "shape", shape_json(&z));
        cJSON_AddStringToObject(j, "dtype", o->out_dtype == DFM_F32 ? "float32" : "float16");
        cJSON_AddBoolToObject(j, "normalized", 1);
        cJSON_AddStringToObject(j, "posterior", o->sample ? "sample" : "mean");
        if (o->sample) cJSON_AddNumberToObject(j, "seed", (double)o->seed);
        cJSON_AddStringToObject(j, "model", o->model ? o->model : "");
        cJSON_AddStringToObject(j, "vae", "AutoencoderKLWan");
        rc = add_json(s, "latents", j);
    }
    if (!rc && !o->keep_frames) dfm_sample_del(s, "frames.npy");
    dfm_tensor_free(&z);
    return rc;
}

int dfm_vae_decode_sample(dfm_wan_vae *vae, const dfm_vae_stage_opts *o, dfm_sample *s)
{
    const dfm_field *f = dfm_sample_get(s, "latents.npy");
    if (!f) return dfm_fail(DFM_E_FORMAT, "no 'latents.npy' field (run dfm-vae-encode first)");
    dfm_npy a;
    int rc = dfm_npy_parse(f->data, f->len, &a);
    const dfm_wan_vae_config *cfg = dfm_wan_vae_get_config(vae);
    if (rc == DFM_E_UNSUPPORTED ||
        (!rc && ((a.dtype != DFM_NPY_F16 && a.dtype != DFM_NPY_F32) || a.ndim != 4 ||
                 a.shape[0] != cfg->z_dim || a.shape[1] < 1 || a.shape[2] < 1 || a.shape[3] < 1))) {
        char got[160];
        return dfm_fail(DFM_E_FORMAT, "latents.npy is %s; want float16/float32 [C,F,H,W] with "
                        "C = %d (the VAE's z_dim) and F, H, W >= 1",
                        dfm_npy_describe(f->data, f->len, got, sizeof got), cfg->z_dim);
    }
    if (rc) return dfm_fail_ctx(rc, "latents.npy");
    dfm_dtype dt = a.dtype == DFM_NPY_F16 ? DFM_F16 : DFM_F32;
    dfm_tensor in = dfm_tensor_view((void *)a.data, dt, DFM_CPU, 4, a.shape);
    if ((rc = dfm_tensor_check_finite(&in, "latents.npy"))) return rc;
    dfm_tensor z;
    if ((rc = dfm_tensor_alloc(&z, DFM_F32, DFM_CPU, 4, a.shape))) return rc;
    rc = dfm_convert_floats(z.data, DFM_F32, a.data, dt, (size_t)dfm_tensor_numel(&z));
    if (!rc) rc = dfm_wan_vae_denormalize(vae, &z);
    dfm_tensor zd = {0}, out = {0}, host = {0};
    if (!rc) rc = to_device(&z, dfm_wan_vae_device(vae), &zd);
    if (!rc) rc = dfm_wan_vae_decode(vae, &zd, &out);
    if (zd.data != z.data) dfm_tensor_free(&zd);
    dfm_tensor_free(&z);
    if (!rc) rc = dfm_tensor_copy(&host, &out, DFM_CPU);
    dfm_tensor_free(&out);
    if (rc) return rc;
    int64_t shape[4] = {host.shape[1], host.shape[2], host.shape[3], 3};
    uint8_t *hdr = NULL;
    size_t hl = 0, n = (size_t)dfm_tensor_numel(&host);
    rc = dfm_npy_header(DFM_NPY_U8, 4, shape, &hdr, &hl);
    uint8_t *npy = rc ? NULL : dfm_realloc(hdr, hl + n + 1);
    if (!rc && !npy) rc = DFM_E_NOMEM, free(hdr);
    if (!rc) rc = dfm_video_to_frames(&host, npy + hl);
    if (!rc) {
        npy[hl + n] = 0;
        rc = dfm_sample_set_owned(s, "frames.npy", npy, hl + n);
    } else if (npy) {
        free(npy);
    }
    if (!rc) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "frames", (double)host.shape[1]);
        cJSON_AddNumberToObject(j, "height", (double)host.shape[2]);
        cJSON_AddNumberToObject(j, "width", (double)host.shape[3]);
        cJSON_AddStringToObject(j, "model", o->model ? o->model : "");
        rc = add_json(s, "decoded", j);
    }
    if (!rc && !o->keep_latents) dfm_sample_del(s, "latents.npy");
    dfm_tensor_free(&host);
    return rc;
}
