/* vae.c — the Wan 2.1 VAE (see vae.h), op for op as diffusers runs it.
 * ref: diffusers models/autoencoders/autoencoder_kl_wan.py (WanCausalConv3d, WanRMS_norm,
 *      WanResidualBlock, WanAttentionBlock, WanResample, WanEncoder3d, WanDecoder3d,
 *      AutoencoderKLWan._encode/_decode) and vae.py DiagonalGaussianDistribution.
 *
 * Activations are [C, T, H, W] F32 (batch 1). Every causal conv call site owns a cache slot, visited
 * in the same order as the reference's feat_cache/feat_idx; a slot holds the last (up to) 2 input
 * frames of the previous chunk, or the "Rep" marker of a first upsample3d call. The causal conv
 * with its feature cache and the channel RMS norm are lib/nn layers (nn/conv.h, nn/norm.h); the
 * residual, attention and resample blocks built from them are here.
 */
#include "models/wan/vae.h"
#include "base/buf.h"
#include "base/error.h"
#include "io/hfmodel.h"
#include "models/wan/names.h"
#include "models/weights.h"
#include "nn/conv.h"
#include "nn/norm.h"
#include "tensor/finite.h"
#include "tensor/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- layers --------------------------------------------------------------------------------- */

typedef struct {
    dfm_rms_norm_channels n1, n2;
    dfm_causal_conv c1, c2, sc;
    int has_sc;
} res_t;

typedef struct {
    dfm_rms_norm_channels n;
    dfm_causal_conv qkv, proj; /* 1x1: [3C, C], [C, C] */
    int c;
} attn_t;

enum { RS_DOWN2D, RS_DOWN3D, RS_UP2D, RS_UP3D };
typedef struct {
    int mode;
    dfm_causal_conv spatial; /* resample.1: 3x3, per frame */
    dfm_causal_conv time;    /* time_conv (3D modes) */
    int c;
} resample_t;

enum { L_RES, L_ATTN, L_RESAMPLE };
typedef struct {
    int kind;
    res_t res;
    attn_t attn;
    resample_t rs;
} layer_t;

typedef struct {
    dfm_causal_conv conv_in, conv_out;
    layer_t *layers; /* down_blocks (encoder) or up_blocks flattened (decoder) */
    int n_layers;
    res_t mid_res0, mid_res1;
    attn_t mid_attn;
    dfm_rms_norm_channels norm_out;
} coder_t;

struct dfm_wan_vae {
    dfm_wan_vae_config cfg;
    dfm_wan_vae_opts opts;
    coder_t enc, dec;
    dfm_causal_conv quant, post_quant;
    int have_enc, have_dec;
    dfm_compute cc; /* BF16 weights: bf16 GEMM inputs, f32 accumulation; F32: exact */
};

/* ---- loading -------------------------------------------------------------------------------- */

typedef struct {
    dfm_weights *w; /* diffusers names; the original Wan VAE's through dfm_wan_vae_names */
    dfm_device dev;
    dfm_dtype wdt;
} loader_t;

/* Read `name` (diffusers) with the given shape into a new tensor of dtype dt on the loader's
 * device. The shape the config implies is checked against the file's header first: nothing is
 * allocated for a tensor the file does not hold. */
static int load_tensor(const loader_t *L, const char *name, dfm_dtype dt, int ndim, const int64_t *shape,
                       dfm_tensor *out)
{
    return dfm_weights_load(L->w, name, ndim, shape, dt, L->dev, 0, out);
}

/* A conv at `prefix` ("encoder.conv_in"). dims2d: the file stores [cout, cin, kh, kw]. */
static int load_conv(const loader_t *L, const char *prefix, int cin, int cout, int kt, int kh, int kw,
                     int dims2d, dfm_causal_conv *c)
{
    dfm_causal_conv_init(c, cin, cout, kt, kh, kw);
    char name[256];
    int64_t s5[5] = {cout, cin, kt, kh, kw}, s4[4] = {cout, cin, kh, kw}, sb[1] = {cout};
    snprintf(name, sizeof name, "%s.weight", prefix);
    int rc = dims2d ? load_tensor(L, name, L->wdt, 4, s4, &c->w) : load_tensor(L, name, L->wdt, 5, s5, &c->w);
    if (rc) return rc;
    if (dims2d && (rc = dfm_tensor_reshape(&c->w, 5, s5))) return rc;
    snprintf(name, sizeof name, "%s.bias", prefix);
    return load_tensor(L, name, DFM_F32, 1, sb, &c->b);
}

static int load_norm(const loader_t *L, const char *prefix, int c, int images, dfm_rms_norm_channels *n)
{
    char name[256];
    snprintf(name, sizeof name, "%s.gamma", prefix);
    int64_t s4[4] = {c, 1, 1, 1}, s3[3] = {c, 1, 1};
    memset(n, 0, sizeof *n);
    int rc = load_tensor(L, name, DFM_F32, images ? 3 : 4, images ? s3 : s4, &n->gamma);
    if (rc) return rc;
    int64_t s1[1] = {c};
    return dfm_tensor_reshape(&n->gamma, 1, s1);
}

static int load_res(const loader_t *L, const char *prefix, int cin, int cout, res_t *r)
{
    char p[256];
    memset(r, 0, sizeof *r);
    int rc;
    snprintf(p, sizeof p, "%s.norm1", prefix);
    if ((rc = load_norm(L, p, cin, 0, &r->n1))) return rc;
    snprintf(p, sizeof p, "%s.conv1", prefix);
    if ((rc = load_conv(L, p, cin, cout, 3, 3, 3, 0, &r->c1))) return rc;
    snprintf(p, sizeof p, "%s.norm2", prefix);
    if ((rc = load_norm(L, p, cout, 0, &r->n2))) return rc;
    snprintf(p, sizeof p, "%s.conv2", prefix);
    if ((rc = load_conv(L, p, cout, cout, 3, 3, 3, 0, &r->c2))) return rc;
    r->c1.causal_front = r->c2.causal_front = 2;
    r->c1.pad_h = r->c1.pad_w = r->c2.pad_h = r->c2.pad_w = 1;
    if (cin != cout) {
        r->has_sc = 1;
        snprintf(p, sizeof p, "%s.conv_shortcut", prefix);
        if ((rc = load_conv(L, p, cin, cout, 1, 1, 1, 0, &r->sc))) return rc;
    }
    return 0;
}

static int load_attn(const loader_t *L, const char *prefix, int c, attn_t *a)
{
    char p[256];
    memset(a, 0, sizeof *a);
    a->c = c;
    int rc;
    snprintf(p, sizeof p, "%s.norm", prefix);
    if ((rc = load_norm(L, p, c, 1, &a->n))) return rc;
    snprintf(p, sizeof p, "%s.to_qkv", prefix);
    if ((rc = load_conv(L, p, c, 3 * c, 1, 1, 1, 1, &a->qkv))) return rc;
    snprintf(p, sizeof p, "%s.proj", prefix);
    return load_conv(L, p, c, c, 1, 1, 1, 1, &a->proj);
}

/* WanResample at `prefix`; out_c is the spatial conv's output channels (up: dim/2). */
static int load_resample(const loader_t *L, const char *prefix, int mode, int c, int out_c, resample_t *r)
{
    char p[256];
    memset(r, 0, sizeof *r);
    r->mode = mode, r->c = c;
    int rc;
    snprintf(p, sizeof p, "%s.resample.1", prefix);
    if ((rc = load_conv(L, p, c, out_c, 1, 3, 3, 1, &r->spatial))) return rc;
    if (mode == RS_DOWN2D || mode == RS_DOWN3D) {
        r->spatial.stride[1] = r->spatial.stride[2] = 2; /* ZeroPad2d(0,1,0,1) then stride 2 */
        r->spatial.pad_br = 1;
    } else {
        r->spatial.pad_h = r->spatial.pad_w = 1;
    }
    snprintf(p, sizeof p, "%s.time_conv", prefix);
    if (mode == RS_DOWN3D) {
        if ((rc = load_conv(L, p, c, c, 3, 1, 1, 0, &r->time))) return rc;
        r->time.stride[0] = 2;
    } else if (mode == RS_UP3D) {
        if ((rc = load_conv(L, p, c, 2 * c, 3, 1, 1, 0, &r->time))) return rc;
        r->time.causal_front = 2;
    }
    return 0;
}

static int push_layer(coder_t *cd, layer_t **out)
{
    layer_t *l = dfm_realloc(cd->layers, (size_t)(cd->n_layers + 1) * sizeof *l);
    if (!l) return DFM_E_NOMEM;
    cd->layers = l;
    *out = &cd->layers[cd->n_layers++];
    memset(*out, 0, sizeof **out);
    return 0;
}

// ref: WanEncoder3d.__init__
static int load_encoder(const loader_t *L, const dfm_wan_vae_config *cfg, coder_t *e)
{
    int dims[DFM_WAN_VAE_MAX_LEVELS + 1], nl = cfg->n_levels, rc;
    dims[0] = cfg->base_dim;
    for (int i = 0; i < nl; i++) dims[i + 1] = cfg->base_dim * cfg->dim_mult[i];
    if ((rc = load_conv(L, "encoder.conv_in", cfg->in_channels, dims[0], 3, 3, 3, 0, &e->conv_in))) return rc;
    e->conv_in.causal_front = 2, e->conv_in.pad_h = e->conv_in.pad_w = 1;
    int k = 0;
    char p[128];
    for (int i = 0; i < nl; i++) {
        int in = dims[i], out = dims[i + 1];
        for (int j = 0; j < cfg->num_res_blocks; j++) {
            layer_t *l;
            if ((rc = push_layer(e, &l))) return rc;
            l->kind = L_RES;
            snprintf(p, sizeof p, "encoder.down_blocks.%d", k++);
            if ((rc = load_res(L, p, in, out, &l->res))) return rc;
            in = out;
        }
        if (i != nl - 1) {
            layer_t *l;
            if ((rc = push_layer(e, &l))) return rc;
            l->kind = L_RESAMPLE;
            snprintf(p, sizeof p, "encoder.down_blocks.%d", k++);
            int mode = cfg->temperal_downsample[i] ? RS_DOWN3D : RS_DOWN2D;
            if ((rc = load_resample(L, p, mode, out, out, &l->rs))) return rc;
        }
    }
    int top = dims[nl];
    if ((rc = load_res(L, "encoder.mid_block.resnets.0", top, top, &e->mid_res0)) ||
        (rc = load_attn(L, "encoder.mid_block.attentions.0", top, &e->mid_attn)) ||
        (rc = load_res(L, "encoder.mid_block.resnets.1", top, top, &e->mid_res1)) ||
        (rc = load_norm(L, "encoder.norm_out", top, 0, &e->norm_out)) ||
        (rc = load_conv(L, "encoder.conv_out", top, 2 * cfg->z_dim, 3, 3, 3, 0, &e->conv_out)))
        return rc;
    e->conv_out.causal_front = 2, e->conv_out.pad_h = e->conv_out.pad_w = 1;
    return 0;
}

// ref: WanDecoder3d.__init__ (Wan 2.1: is_residual False)
static int load_decoder(const loader_t *L, const dfm_wan_vae_config *cfg, coder_t *d)
{
    int nl = cfg->n_levels, dims[DFM_WAN_VAE_MAX_LEVELS + 1], rc, base = cfg->decoder_base_dim;
    dims[0] = base * cfg->dim_mult[nl - 1];
    for (int i = 0; i < nl; i++) dims[i + 1] = base * cfg->dim_mult[nl - 1 - i];
    if ((rc = load_conv(L, "decoder.conv_in", cfg->z_dim, dims[0], 3, 3, 3, 0, &d->conv_in))) return rc;
    d->conv_in.causal_front = 2, d->conv_in.pad_h = d->conv_in.pad_w = 1;
    if ((rc = load_res(L, "decoder.mid_block.resnets.0", dims[0], dims[0], &d->mid_res0)) ||
        (rc = load_attn(L, "decoder.mid_block.attentions.0", dims[0], &d->mid_attn)) ||
        (rc = load_res(L, "decoder.mid_block.resnets.1", dims[0], dims[0], &d->mid_res1)))
        return rc;
    char p[128];
    for (int i = 0; i < nl; i++) {
        int in = dims[i], out = dims[i + 1];
        if (i > 0) in /= 2;
        for (int j = 0; j < cfg->num_res_blocks + 1; j++) {
            layer_t *l;
            if ((rc = push_layer(d, &l))) return rc;
            l->kind = L_RES;
            snprintf(p, sizeof p, "decoder.up_blocks.%d.resnets.%d", i, j);
            if ((rc = load_res(L, p, in, out, &l->res))) return rc;
            in = out;
        }
        if (i != nl - 1) {
            /* temperal_upsample = temperal_downsample reversed */
            int up3d = cfg->temperal_downsample[nl - 2 - i];
            layer_t *l;
            if ((rc = push_layer(d, &l))) return rc;
            l->kind = L_RESAMPLE;
            snprintf(p, sizeof p, "decoder.up_blocks.%d.upsamplers.0", i);
            if ((rc = load_resample(L, p, up3d ? RS_UP3D : RS_UP2D, out, out / 2, &l->rs))) return rc;
        }
    }
    int last = dims[nl];
    if ((rc = load_norm(L, "decoder.norm_out", last, 0, &d->norm_out)) ||
        (rc = load_conv(L, "decoder.conv_out", last, cfg->out_channels, 3, 3, 3, 0, &d->conv_out)))
        return rc;
    d->conv_out.causal_front = 2, d->conv_out.pad_h = d->conv_out.pad_w = 1;
    return 0;
}

static const char *const vae_classes[] = {"AutoencoderKLWan", NULL};

/* Config limits, far above any Wan VAE (base_dim 96, dim_mult <= 4, z_dim 16/48, 3 channels) and
 * low enough that every channel count and the 3 * C of an attention's qkv fit in int. The
 * weights file bounds the rest: each tensor's shape is checked against its header before any
 * allocation (load_tensor). */
#define VAE_MAX_BASE_DIM (1 << 16)
#define VAE_MAX_DIM_MULT (1 << 10)
#define VAE_MAX_CHANNELS (1 << 20) /* base_dim x dim_mult */
#define VAE_MAX_RES_BLOCKS 64
#define VAE_MAX_IO_CHANNELS 1024

int dfm_wan_vae_config_load(dfm_wan_vae_config *cfg, const char *dir)
{
    memset(cfg, 0, sizeof *cfg);
    dfm_hf_config c;
    int rc = dfm_hf_config_load(&c, dir);
    if (rc) return rc;
    int64_t v, arr[DFM_WAN_VAE_MAX_LEVELS];
    int n, flags[DFM_WAN_VAE_MAX_LEVELS], is_residual = 0;
    double f[DFM_WAN_VAE_MAX_Z];
    const char *cls = NULL;
    if ((rc = dfm_hf_str(&c, "_class_name", 0, "AutoencoderKLWan", &cls))) goto out;
    if (strcmp(cls, "AutoencoderKLWan")) {
        rc = dfm_fail(DFM_E_FORMAT, "%s: _class_name is '%s', expected AutoencoderKLWan", c.path, cls);
        goto out;
    }
    if ((rc = dfm_hf_int_range(&c, "base_dim", 0, 96, 1, VAE_MAX_BASE_DIM, &v))) goto out;
    cfg->base_dim = (int)v;
    if ((rc = dfm_hf_int_range(&c, "decoder_base_dim", 0, v, 1, VAE_MAX_BASE_DIM, &v))) goto out;
    cfg->decoder_base_dim = (int)v;
    if ((rc = dfm_hf_int_range(&c, "z_dim", 0, 16, 1, DFM_WAN_VAE_MAX_Z, &v))) goto out;
    cfg->z_dim = (int)v;
    if ((rc = dfm_hf_int_range(&c, "num_res_blocks", 0, 2, 1, VAE_MAX_RES_BLOCKS, &v))) goto out;
    cfg->num_res_blocks = (int)v;
    if ((rc = dfm_hf_int_range(&c, "in_channels", 0, 3, 1, VAE_MAX_IO_CHANNELS, &v))) goto out;
    cfg->in_channels = (int)v;
    if ((rc = dfm_hf_int_range(&c, "out_channels", 0, 3, 1, VAE_MAX_IO_CHANNELS, &v))) goto out;
    cfg->out_channels = (int)v;
    if ((rc = dfm_hf_int_array_range(&c, "dim_mult", 0, 1, VAE_MAX_DIM_MULT, arr, DFM_WAN_VAE_MAX_LEVELS, &n)))
        goto out;
    if (n == 0) {
        static const int64_t def[4] = {1, 2, 4, 4};
        memcpy(arr, def, sizeof def);
        n = 4;
    }
    if (n < 2) {
        rc = dfm_fail(DFM_E_FORMAT, "%s: dim_mult has %d entry, at least 2 needed", c.path, n);
        goto out;
    }
    cfg->n_levels = n;
    for (int i = 0; i < n; i++) {
        int64_t enc = (int64_t)cfg->base_dim * arr[i], dec = (int64_t)cfg->decoder_base_dim * arr[i];
        if (enc > VAE_MAX_CHANNELS || dec > VAE_MAX_CHANNELS) {
            rc = dfm_fail(DFM_E_FORMAT, "%s: %s %d x dim_mult[%d] %lld = %lld channels, more than the %d supported",
                          c.path, enc >= dec ? "base_dim" : "decoder_base_dim",
                          enc >= dec ? cfg->base_dim : cfg->decoder_base_dim, i, (long long)arr[i],
                          (long long)(enc >= dec ? enc : dec), VAE_MAX_CHANNELS);
            goto out;
        }
        /* the decoder's upsamplers halve the channels of levels 1.. (WanDecoder3d: in_dim // 2) */
        if (i > 0 && dec < 2) {
            rc = dfm_fail(DFM_E_FORMAT, "%s: decoder_base_dim %d x dim_mult[%d] %lld = %lld channels: "
                                        "halved by the upsampling, that leaves none", c.path,
                          cfg->decoder_base_dim, i, (long long)arr[i], (long long)dec);
            goto out;
        }
        cfg->dim_mult[i] = (int)arr[i];
    }
    if ((rc = dfm_hf_bool_array(&c, "temperal_downsample", 0, flags, DFM_WAN_VAE_MAX_LEVELS, &n))) goto out;
    if (n == 0) {
        static const int def[3] = {0, 1, 1};
        memcpy(flags, def, sizeof def);
        n = 3;
    }
    if (n != cfg->n_levels - 1) {
        rc = dfm_fail(DFM_E_FORMAT, "%s: temperal_downsample has %d entries, expected %d (len(dim_mult) - 1)",
                      c.path, n, cfg->n_levels - 1);
        goto out;
    }
    for (int i = 0; i < n; i++) cfg->temperal_downsample[i] = flags[i];
    if ((rc = dfm_hf_bool(&c, "is_residual", 0, 0, &is_residual))) goto out;
    if (is_residual) {
        rc = dfm_fail(DFM_E_UNSUPPORTED, "%s: is_residual is true (the Wan 2.2 VAE), which dfm does not "
                                         "support yet", c.path);
        goto out;
    }
    /* attn_scales holds floats; an empty list is all we support */
    double fs[DFM_WAN_VAE_MAX_LEVELS];
    if ((rc = dfm_hf_float_array(&c, "attn_scales", 0, fs, DFM_WAN_VAE_MAX_LEVELS, &n))) goto out;
    if (n != 0) {
        rc = dfm_fail(DFM_E_UNSUPPORTED, "%s: attn_scales is not empty (attention in the down/up path is "
                                         "not part of Wan 2.1)", c.path);
        goto out;
    }
    if ((rc = dfm_hf_int(&c, "patch_size", 0, 0, &v))) goto out;
    if (v > 1) {
        rc = dfm_fail(DFM_E_UNSUPPORTED, "%s: patch_size %lld is the Wan 2.2 layout, not supported yet",
                      c.path, (long long)v);
        goto out;
    }
    int nm = 0, ns = 0;
    double g[DFM_WAN_VAE_MAX_Z];
    if ((rc = dfm_hf_float_array(&c, "latents_mean", 0, f, DFM_WAN_VAE_MAX_Z, &nm))) goto out;
    if ((rc = dfm_hf_float_array(&c, "latents_std", 0, g, DFM_WAN_VAE_MAX_Z, &ns))) goto out;
    if (nm == cfg->z_dim && ns == cfg->z_dim) {
        for (int i = 0; i < nm; i++) {
            cfg->latents_mean[i] = (float)f[i], cfg->latents_std[i] = (float)g[i];
            if (!isfinite(cfg->latents_mean[i]) || !isfinite(cfg->latents_std[i]) || !(cfg->latents_std[i] > 0)) {
                rc = dfm_fail(DFM_E_FORMAT, "%s: latents_mean[%d] %g / latents_std[%d] %g: a finite mean and a "
                                            "positive finite std are needed", c.path, i, f[i], i, g[i]);
                goto out;
            }
        }
        cfg->has_latents_stats = 1;
    } else if (nm || ns) {
        rc = dfm_fail(DFM_E_FORMAT, "%s: latents_mean/latents_std have %d/%d entries, expected z_dim = %d",
                      c.path, nm, ns, cfg->z_dim);
        goto out;
    }
out:
    dfm_hf_config_free(&c);
    return rc;
}

static void free_res(res_t *r)
{
    dfm_tensor_free(&r->n1.gamma), dfm_tensor_free(&r->n2.gamma);
    dfm_causal_conv_free(&r->c1), dfm_causal_conv_free(&r->c2), dfm_causal_conv_free(&r->sc);
}
static void free_attn(attn_t *a)
{
    dfm_tensor_free(&a->n.gamma), dfm_causal_conv_free(&a->qkv), dfm_causal_conv_free(&a->proj);
}
static void free_coder(coder_t *cd)
{
    dfm_causal_conv_free(&cd->conv_in), dfm_causal_conv_free(&cd->conv_out);
    for (int i = 0; i < cd->n_layers; i++) {
        layer_t *l = &cd->layers[i];
        if (l->kind == L_RES) free_res(&l->res);
        else if (l->kind == L_ATTN) free_attn(&l->attn);
        else dfm_causal_conv_free(&l->rs.spatial), dfm_causal_conv_free(&l->rs.time);
    }
    free(cd->layers);
    free_res(&cd->mid_res0), free_res(&cd->mid_res1), free_attn(&cd->mid_attn);
    dfm_tensor_free(&cd->norm_out.gamma);
}

void dfm_wan_vae_free(dfm_wan_vae *v)
{
    if (!v) return;
    free_coder(&v->enc), free_coder(&v->dec);
    dfm_causal_conv_free(&v->quant), dfm_causal_conv_free(&v->post_quant);
    free(v);
}

const dfm_wan_vae_config *dfm_wan_vae_get_config(const dfm_wan_vae *v) { return &v->cfg; }
dfm_device dfm_wan_vae_device(const dfm_wan_vae *v) { return v->opts.device; }

int dfm_wan_vae_load(dfm_wan_vae **out, const char *model_dir, const dfm_wan_vae_opts *opts)
{
    *out = NULL;
    char *dir = NULL;
    int rc = dfm_hf_component(model_dir, "vae", vae_classes, &dir);
    if (rc) return rc;
    dfm_wan_vae *v = dfm_calloc(1, sizeof *v);
    if (!v) {
        free(dir);
        return DFM_E_NOMEM;
    }
    v->opts = *opts;
    v->cc = (dfm_compute){opts->weights == DFM_BF16 ? DFM_BF16 : DFM_F32, NULL};
    if (!v->opts.load_encoder && !v->opts.load_decoder) v->opts.load_encoder = v->opts.load_decoder = 1;
    if ((rc = dfm_wan_vae_config_load(&v->cfg, dir))) goto fail;
    dfm_weights *w = NULL;
    if ((rc = dfm_weights_open(&w, dir, &dfm_wan_vae_names))) goto fail;
    loader_t L = {w, opts->device, opts->weights == DFM_BF16 ? DFM_BF16 : DFM_F32};
    int z = v->cfg.z_dim;
    if (v->opts.load_encoder) {
        rc = load_encoder(&L, &v->cfg, &v->enc);
        if (!rc) rc = load_conv(&L, "quant_conv", 2 * z, 2 * z, 1, 1, 1, 0, &v->quant);
        v->have_enc = !rc;
    }
    if (!rc && v->opts.load_decoder) {
        rc = load_decoder(&L, &v->cfg, &v->dec);
        if (!rc) rc = load_conv(&L, "post_quant_conv", z, z, 1, 1, 1, 0, &v->post_quant);
        v->have_dec = !rc;
    }
    /* A full load must use every tensor: a leftover means a layout we do not understand. */
    if (!rc && v->have_enc && v->have_dec) rc = dfm_weights_finish(w, NULL);
    dfm_weights_close(w);
    if (rc) goto fail;
    free(dir);
    *out = v;
    return 0;
fail:
    if (rc) dfm_fail_ctx(rc, "Wan VAE '%s'", dir);
    free(dir);
    dfm_wan_vae_free(v);
    return rc;
}

/* ---- forward pieces ------------------------------------------------------------------------- */

static int64_t T_of(const dfm_tensor *x) { return x->shape[1]; }

static int alloc_like(dfm_tensor *t, dfm_device dev, int64_t c, int64_t T, int64_t h, int64_t w)
{
    int64_t s[4] = {c, T, h, w};
    return dfm_tensor_alloc(t, DFM_F32, dev, 4, s);
}

static int frames_copy(const dfm_tensor *x, int64_t t0, int64_t n, dfm_tensor *y)
{
    int rc = alloc_like(y, x->device, x->shape[0], n, x->shape[2], x->shape[3]);
    if (rc) return rc;
    rc = dfm_op_frames(x, t0, n, y);
    if (rc) dfm_tensor_free(y);
    return rc;
}

static int norm_silu(const dfm_rms_norm_channels *n, const dfm_tensor *x, dfm_tensor *y)
{
    int rc = alloc_like(y, x->device, x->shape[0], T_of(x), x->shape[2], x->shape[3]);
    if (rc) return rc;
    rc = dfm_rms_norm_channels_forward(n, x, y);
    if (!rc) rc = dfm_op_silu(y, y);
    if (rc) dfm_tensor_free(y);
    return rc;
}

// ref: WanResidualBlock.forward
static int res_forward(const dfm_compute *cc, const res_t *r, const dfm_tensor *x, dfm_conv_cache *k, dfm_tensor *out)
{
    dfm_tensor h = {0}, a, b;
    int rc = 0;
    if (r->has_sc) rc = dfm_causal_conv_forward(cc, &r->sc, x, NULL, &h);
    if (rc) return rc;
    if ((rc = norm_silu(&r->n1, x, &a))) goto out;
    rc = dfm_causal_conv_forward_cached(cc, &r->c1, &a, k, &b);
    dfm_tensor_free(&a);
    if (rc) goto out;
    rc = norm_silu(&r->n2, &b, &a);
    dfm_tensor_free(&b);
    if (rc) goto out;
    rc = dfm_causal_conv_forward_cached(cc, &r->c2, &a, k, &b);
    dfm_tensor_free(&a);
    if (rc) goto out;
    rc = dfm_op_add(&b, r->has_sc ? &h : x, &b);
    if (rc) dfm_tensor_free(&b);
    else *out = b;
out:
    dfm_tensor_free(&h);
    return rc;
}

/* Rows [r0, r0+n) of a conv's 1x1 weight as a [n, cin] matrix and its bias [n] (views). */
static void weight_rows(const dfm_causal_conv *c, int64_t r0, int64_t n, dfm_tensor *w, dfm_tensor *b)
{
    int64_t ws[2] = {c->cout, c->cin}, bs[1] = {c->cout};
    dfm_tensor full = dfm_tensor_view(c->w.data, c->w.dtype, c->w.device, 2, ws);
    dfm_tensor fb = dfm_tensor_view(c->b.data, c->b.dtype, c->b.device, 1, bs);
    *w = dfm_tensor_slice0(&full, r0, n);
    *b = dfm_tensor_slice0(&fb, r0, n);
}

/* Y[S, n] = X[C, S]^T W[n, C]^T + b: a 1x1 conv whose output is position-major. */
static int proj_t(const dfm_compute *cc, const dfm_tensor *x, const dfm_tensor *w, const dfm_tensor *b, dfm_tensor *y)
{
    int64_t ys[2] = {x->shape[1], w->shape[0]};
    int rc = dfm_tensor_alloc(y, DFM_F32, x->device, 2, ys);
    if (!rc) rc = dfm_op_matmul(cc, x, 1, w, 1, b, 0.0f, y);
    if (rc) dfm_tensor_free(y);
    return rc;
}

// ref: WanAttentionBlock.forward — per frame, single head over the H*W positions.
static int attn_forward(const dfm_compute *cc, const attn_t *a, const dfm_tensor *x, dfm_tensor *out)
{
    int64_t C = x->shape[0], T = T_of(x), H = x->shape[2], W = x->shape[3], S = H * W;
    int rc = alloc_like(out, x->device, C, T, H, W);
    if (rc) return rc;
    for (int64_t t = 0; t < T && !rc; t++) {
        dfm_tensor f = {0}, fn = {0}, q = {0}, k = {0}, v = {0}, o = {0}, p = {0}, pt = {0}, wq, bq;
        int64_t s2[2] = {C, S}, s3[3] = {1, S, C}, sc[2] = {S, C}, s4[4] = {C, 1, H, W};
        rc = frames_copy(x, t, 1, &f);
        if (!rc) rc = dfm_tensor_reshape(&f, 2, s2);
        if (!rc && !(rc = dfm_tensor_alloc(&fn, DFM_F32, x->device, 2, s2)))
            rc = dfm_rms_norm_channels_forward(&a->n, &f, &fn);
        /* q | k | v are output channels [0,C), [C,2C), [2C,3C) of to_qkv, each [S, C] */
        if (!rc) weight_rows(&a->qkv, 0, C, &wq, &bq), rc = proj_t(cc, &fn, &wq, &bq, &q);
        if (!rc) weight_rows(&a->qkv, C, C, &wq, &bq), rc = proj_t(cc, &fn, &wq, &bq, &k);
        if (!rc) weight_rows(&a->qkv, 2 * C, C, &wq, &bq), rc = proj_t(cc, &fn, &wq, &bq, &v);
        if (!rc) rc = dfm_tensor_reshape(&q, 3, s3);
        if (!rc) rc = dfm_tensor_reshape(&k, 3, s3);
        if (!rc) rc = dfm_tensor_reshape(&v, 3, s3);
        if (!rc && !(rc = dfm_tensor_alloc(&o, DFM_F32, x->device, 3, s3)))
            rc = dfm_op_attention(&q, &k, &v, 1.0f / sqrtf((float)C), &o);
        if (!rc) rc = dfm_tensor_reshape(&o, 2, sc);
        /* proj(o) + identity, back to channels-first */
        dfm_tensor ot = {0};
        if (!rc && !(rc = dfm_tensor_alloc(&ot, DFM_F32, x->device, 2, s2))) rc = dfm_op_transpose2d(&o, &ot);
        if (!rc) weight_rows(&a->proj, 0, C, &wq, &bq), rc = proj_t(cc, &ot, &wq, &bq, &pt); /* [S, C] */
        if (!rc && !(rc = dfm_tensor_alloc(&p, DFM_F32, x->device, 2, s2))) rc = dfm_op_transpose2d(&pt, &p);
        if (!rc) rc = dfm_op_add(&p, &f, &p);
        if (!rc) rc = dfm_tensor_reshape(&p, 4, s4);
        if (!rc) rc = dfm_op_put_frames(out, t, &p);
        dfm_tensor_free(&f), dfm_tensor_free(&fn), dfm_tensor_free(&q), dfm_tensor_free(&k);
        dfm_tensor_free(&v), dfm_tensor_free(&o), dfm_tensor_free(&ot), dfm_tensor_free(&pt);
        dfm_tensor_free(&p);
    }
    if (rc) dfm_tensor_free(out);
    return rc;
}

/* Interleave a time_conv output [2C, T, H, W] into [C, 2T, H, W]: frame 2t from channels [0,C),
 * frame 2t+1 from [C,2C). ref: WanResample.forward (upsample3d reshape/stack). */
static int interleave_time(const dfm_tensor *x, dfm_tensor *y)
{
    int64_t C2 = x->shape[0], C = C2 / 2, T = T_of(x), H = x->shape[2], W = x->shape[3];
    int rc = alloc_like(y, x->device, C, 2 * T, H, W);
    if (rc) return rc;
    dfm_tensor half0 = dfm_tensor_slice0(x, 0, C), half1 = dfm_tensor_slice0(x, C, C);
    for (int64_t t = 0; t < T && !rc; t++) {
        dfm_tensor f0, f1;
        if ((rc = frames_copy(&half0, t, 1, &f0))) break;
        if (!(rc = frames_copy(&half1, t, 1, &f1))) {
            rc = dfm_op_put_frames(y, 2 * t, &f0);
            if (!rc) rc = dfm_op_put_frames(y, 2 * t + 1, &f1);
            dfm_tensor_free(&f1);
        }
        dfm_tensor_free(&f0);
    }
    if (rc) dfm_tensor_free(y);
    return rc;
}

// ref: WanResample.forward
static int resample_forward(const dfm_compute *cc, const resample_t *r, const dfm_tensor *x_in, dfm_conv_cache *k,
                            dfm_tensor *out)
{
    int rc = 0;
    dfm_tensor x = *x_in, tmp = {0};
    x.owned = 0;
    if (r->mode == RS_UP3D) {
        dfm_conv_slot *s;
        if ((rc = dfm_conv_cache_slot(k, &s))) return rc;
        if (s->state == DFM_CONV_SLOT_NONE) {
            s->state = DFM_CONV_SLOT_REP; /* first call: frame 0 is not doubled in time */
        } else {
            dfm_tensor nc, tc;
            if ((rc = dfm_conv_cache_next(&x, s, 1, &nc))) return rc;
            rc = dfm_causal_conv_forward(cc, &r->time, &x, s->state == DFM_CONV_SLOT_FRAMES ? &s->t : NULL, &tc);
            dfm_tensor_free(&s->t);
            s->t = nc;
            s->state = DFM_CONV_SLOT_FRAMES;
            if (rc) return rc;
            rc = interleave_time(&tc, &tmp);
            dfm_tensor_free(&tc);
            if (rc) return rc;
            x = tmp;
        }
    }
    dfm_tensor sp;
    if (r->mode == RS_UP2D || r->mode == RS_UP3D) {
        dfm_tensor up;
        rc = alloc_like(&up, x.device, x.shape[0], T_of(&x), 2 * x.shape[2], 2 * x.shape[3]);
        if (!rc) rc = dfm_op_upsample_nearest2x(&x, &up);
        if (!rc) rc = dfm_causal_conv_forward(cc, &r->spatial, &up, NULL, &sp);
        dfm_tensor_free(&up);
    } else {
        rc = dfm_causal_conv_forward(cc, &r->spatial, &x, NULL, &sp);
    }
    dfm_tensor_free(&tmp);
    if (rc) return rc;
    if (r->mode == RS_DOWN3D) {
        dfm_conv_slot *s;
        if ((rc = dfm_conv_cache_slot(k, &s))) {
            dfm_tensor_free(&sp);
            return rc;
        }
        if (s->state == DFM_CONV_SLOT_NONE) {
            s->t = sp; /* first chunk: keep it, no time conv */
            s->state = DFM_CONV_SLOT_FRAMES;
            return dfm_tensor_copy(out, &sp, sp.device);
        }
        dfm_tensor last, cat, nc;
        rc = frames_copy(&sp, T_of(&sp) - 1, 1, &nc);
        if (!rc) rc = frames_copy(&s->t, T_of(&s->t) - 1, 1, &last);
        if (!rc) {
            rc = alloc_like(&cat, sp.device, sp.shape[0], 1 + T_of(&sp), sp.shape[2], sp.shape[3]);
            if (!rc) rc = dfm_op_concat(&last, &sp, 1, &cat);
            dfm_tensor_free(&last);
            if (!rc) rc = dfm_causal_conv_forward(cc, &r->time, &cat, NULL, out);
            dfm_tensor_free(&cat);
        }
        dfm_tensor_free(&sp);
        dfm_tensor_free(&s->t);
        s->t = nc;
        return rc;
    }
    *out = sp;
    return 0;
}

static int layer_forward(const dfm_compute *cc, const layer_t *l, const dfm_tensor *x, dfm_conv_cache *k,
                         dfm_tensor *y)
{
    if (l->kind == L_RES) return res_forward(cc, &l->res, x, k, y);
    if (l->kind == L_ATTN) return attn_forward(cc, &l->attn, x, y);
    return resample_forward(cc, &l->rs, x, k, y);
}

/* Replace *x by f(*x) (freeing the old one). */
#define STEP(call)                    \
    do {                              \
        dfm_tensor next_;             \
        rc = (call);                  \
        dfm_tensor_free(&cur);        \
        if (rc) return rc;            \
        cur = next_;                  \
    } while (0)

/* The encoder or decoder body on one chunk. ref: WanEncoder3d.forward / WanDecoder3d.forward */
static int coder_forward(const dfm_compute *cc, const coder_t *cd, int encoder, const dfm_tensor *x, dfm_conv_cache *k,
                         dfm_tensor *out)
{
    int rc;
    dfm_tensor cur;
    if ((rc = dfm_causal_conv_forward_cached(cc, &cd->conv_in, x, k, &cur))) return rc;
    if (encoder)
        for (int i = 0; i < cd->n_layers; i++) STEP(layer_forward(cc, &cd->layers[i], &cur, k, &next_));
    STEP(res_forward(cc, &cd->mid_res0, &cur, k, &next_));
    STEP(attn_forward(cc, &cd->mid_attn, &cur, &next_));
    STEP(res_forward(cc, &cd->mid_res1, &cur, k, &next_));
    if (!encoder)
        for (int i = 0; i < cd->n_layers; i++) STEP(layer_forward(cc, &cd->layers[i], &cur, k, &next_));
    STEP(norm_silu(&cd->norm_out, &cur, &next_));
    STEP(dfm_causal_conv_forward_cached(cc, &cd->conv_out, &cur, k, &next_));
    *out = cur;
    return 0;
}

/* ---- public ----------------------------------------------------------------------------------- */

int dfm_wan_vae_encode(dfm_wan_vae *v, const dfm_tensor *x, dfm_tensor *mean, dfm_tensor *logvar)
{
    if (!v->have_enc) return dfm_fail(DFM_E_ARG, "this VAE was loaded without its encoder");
    const dfm_wan_vae_config *c = &v->cfg;
    if (x->ndim != 4 || x->shape[0] != c->in_channels || x->dtype != DFM_F32)
        return dfm_fail(DFM_E_ARG, "VAE input must be F32 [%d, F, H, W]", c->in_channels);
    int64_t F = x->shape[1], H = x->shape[2], W = x->shape[3];
    int down = 1 << (c->n_levels - 1);
    if (F < 1 || (F - 1) % 4 != 0)
        return dfm_fail(DFM_E_ARG, "%lld frames: the Wan VAE takes 4k+1 frames (1, 5, 9, ... 81); trim "
                                   "the clip (dfm-bucket --frame-rule 4k+1)", (long long)F);
    if (H % down || W % down || H < down || W < down)
        return dfm_fail(DFM_E_ARG, "%lldx%lld frames: width and height must be multiples of %d (resize "
                                   "with dfm-bucket)", (long long)W, (long long)H, down);
    int64_t Tl = 1 + (F - 1) / 4, h = H / down, w = W / down, z2 = 2 * c->z_dim;
    dfm_tensor enc;
    int rc = alloc_like(&enc, x->device, z2, Tl, h, w);
    if (rc) return rc;
    dfm_conv_cache k = {0};
    int64_t done = 0;
    for (int64_t i = 0; i < Tl && !rc; i++) {
        int64_t t0 = i == 0 ? 0 : 1 + 4 * (i - 1), n = i == 0 ? 1 : 4;
        dfm_tensor chunk, o;
        if ((rc = frames_copy(x, t0, n, &chunk))) break;
        dfm_conv_cache_rewind(&k);
        rc = coder_forward(&v->cc, &v->enc, 1, &chunk, &k, &o);
        dfm_tensor_free(&chunk);
        if (rc) break;
        for (int64_t t = 0; t < T_of(&o) && !rc; t++) {
            dfm_tensor f;
            if (!(rc = frames_copy(&o, t, 1, &f))) {
                rc = dfm_op_put_frames(&enc, done++, &f);
                dfm_tensor_free(&f);
            }
        }
        dfm_tensor_free(&o);
    }
    dfm_conv_cache_free(&k);
    if (!rc && done != Tl) rc = dfm_fail(DFM_E_ARG, "internal: encoder gave %lld latent frames, expected %lld",
                                         (long long)done, (long long)Tl);
    dfm_tensor q = {0};
    if (!rc) rc = dfm_causal_conv_forward(&v->cc, &v->quant, &enc, NULL, &q);
    dfm_tensor_free(&enc);
    /* before logvar's clamp, which would turn an Inf into a plausible 20 */
    if (!rc) rc = dfm_tensor_check_finite(&q, "the VAE encoder's output [2C (mean, logvar),F,H,W]");
    if (rc) {
        dfm_tensor_free(&q);
        return rc;
    }
    dfm_tensor mu = dfm_tensor_slice0(&q, 0, c->z_dim), lv = dfm_tensor_slice0(&q, c->z_dim, c->z_dim);
    if (mean) rc = dfm_tensor_copy(mean, &mu, mu.device);
    if (!rc && logvar) {
        rc = dfm_tensor_copy(logvar, &lv, lv.device);
        if (!rc) rc = dfm_op_clamp(logvar, -30.0f, 20.0f, logvar);
    }
    dfm_tensor_free(&q);
    return rc;
}

int dfm_wan_vae_decode(dfm_wan_vae *v, const dfm_tensor *z, dfm_tensor *out)
{
    if (!v->have_dec) return dfm_fail(DFM_E_ARG, "this VAE was loaded without its decoder");
    const dfm_wan_vae_config *c = &v->cfg;
    if (z->ndim != 4 || z->shape[0] != c->z_dim || z->dtype != DFM_F32)
        return dfm_fail(DFM_E_ARG, "VAE latents must be F32 [%d, T, h, w]", c->z_dim);
    int64_t T = z->shape[1], h = z->shape[2], w = z->shape[3];
    if (T < 1 || h < 1 || w < 1) return dfm_fail(DFM_E_ARG, "empty latents");
    int up = 1 << (c->n_levels - 1);
    int64_t F = 1 + 4 * (T - 1);
    dfm_tensor pq;
    int rc = dfm_causal_conv_forward(&v->cc, &v->post_quant, z, NULL, &pq);
    if (rc) return rc;
    if ((rc = alloc_like(out, z->device, c->out_channels, F, h * up, w * up))) {
        dfm_tensor_free(&pq);
        return rc;
    }
    dfm_conv_cache k = {0};
    int64_t done = 0;
    for (int64_t i = 0; i < T && !rc; i++) {
        dfm_tensor f, o;
        if ((rc = frames_copy(&pq, i, 1, &f))) break;
        dfm_conv_cache_rewind(&k);
        rc = coder_forward(&v->cc, &v->dec, 0, &f, &k, &o);
        dfm_tensor_free(&f);
        if (rc) break;
        if (done + T_of(&o) > F) rc = dfm_fail(DFM_E_ARG, "internal: decoder gave too many frames");
        for (int64_t t = 0; t < T_of(&o) && !rc; t++) {
            dfm_tensor g;
            if (!(rc = frames_copy(&o, t, 1, &g))) {
                rc = dfm_op_put_frames(out, done++, &g);
                dfm_tensor_free(&g);
            }
        }
        dfm_tensor_free(&o);
    }
    dfm_conv_cache_free(&k);
    dfm_tensor_free(&pq);
    if (!rc && done != F) rc = dfm_fail(DFM_E_ARG, "internal: decoder gave %lld frames, expected %lld",
                                        (long long)done, (long long)F);
    /* before the clamp, which would turn an Inf into a plausible -1 or 1 */
    if (!rc) rc = dfm_tensor_check_finite(out, "the VAE decoder's output [C,F,H,W]");
    if (!rc) rc = dfm_op_clamp(out, -1.0f, 1.0f, out);
    if (rc) dfm_tensor_free(out);
    return rc;
}

static int check_stats(const dfm_wan_vae *v, const dfm_tensor *z)
{
    if (!v->cfg.has_latents_stats)
        return dfm_fail(DFM_E_ARG, "the VAE config has no latents_mean/latents_std to normalize with");
    if (z->device != DFM_CPU || z->dtype != DFM_F32 || z->ndim < 1 || z->shape[0] != v->cfg.z_dim)
        return dfm_fail(DFM_E_ARG, "latents to (de)normalize must be CPU F32 [%d, ...]", v->cfg.z_dim);
    return 0;
}

int dfm_wan_vae_normalize(const dfm_wan_vae *v, dfm_tensor *z)
{
    int rc = check_stats(v, z);
    if (rc) return rc;
    int64_t per = dfm_tensor_numel(z) / z->shape[0];
    float *p = z->data;
    for (int64_t c = 0; c < z->shape[0]; c++) {
        float m = v->cfg.latents_mean[c], inv = 1.0f / v->cfg.latents_std[c];
        for (int64_t i = 0; i < per; i++) p[c * per + i] = (p[c * per + i] - m) * inv;
    }
    return 0;
}

int dfm_wan_vae_denormalize(const dfm_wan_vae *v, dfm_tensor *z)
{
    int rc = check_stats(v, z);
    if (rc) return rc;
    int64_t per = dfm_tensor_numel(z) / z->shape[0];
    float *p = z->data;
    for (int64_t c = 0; c < z->shape[0]; c++) {
        float m = v->cfg.latents_mean[c], inv = 1.0f / v->cfg.latents_std[c];
        for (int64_t i = 0; i < per; i++) p[c * per + i] = p[c * per + i] / inv + m;
    }
    return 0;
}
