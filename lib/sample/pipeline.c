/* pipeline.c — WanPipeline in three phases (pipeline.h). */
#include "sample/pipeline.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/error.h"
#include "base/log.h"
#include "base/rng.h"
#include "models/wan/lora.h"
#include "models/wan/transformer.h"
#include "models/wan/umt5.h"
#include "models/wan/vae.h"
#include "models/wan/vae_stage.h"
#include "tensor/ops.h"
#include "text/prompt_clean.h"
#include "text/tokenizer.h"
#include "train/checkpoint.h"

void dfm_sample_result_free(dfm_sample_result *r)
{
    if (!r) return;
    free(r->latents);
    free(r->frames);
    memset(r, 0, sizeof *r);
}

int dfm_sample_round_size(int *width, int *height, int *frames)
{
    int w = *width / 16 * 16, h = *height / 16 * 16, f = *frames;
    if (f % 4 != 1) f = f / 4 * 4 + 1; /* diffusers: num_frames // 4 * 4 + 1 */
    int changed = w != *width || h != *height || f != *frames;
    *width = w, *height = h, *frames = f;
    return changed;
}

/* ---- text ----------------------------------------------------------------------------------- */

typedef struct {
    const char *text; /* the request's (not owned) */
    float *states;    /* [rows, dim] host f32: the valid rows (the pipeline zero-pads to text_len) */
    int rows, dim;
} text_t;

/* the states of each distinct text, the text encoder loaded only for this */
static int encode_texts(const dfm_sample_model *m, text_t *t, int n)
{
    dfm_tokenizer *tok = NULL;
    dfm_umt5 *enc = NULL;
    int rc = dfm_tokenizer_load(&tok, m->model);
    if (rc) return rc;
    dfm_umt5_opts uo = {.device = m->device, .weights = m->text_dtype == DFM_F32 ? DFM_F32 : DFM_BF16};
    if ((rc = dfm_umt5_load(&enc, m->model, &uo))) {
        dfm_tokenizer_free(tok);
        return rc;
    }
    for (int i = 0; i < n && !rc; i++) {
        for (int j = 0; j < i; j++) /* the same text twice: encoded once */
            if (!strcmp(t[j].text, t[i].text) && t[j].states) {
                size_t bytes = (size_t)t[j].rows * t[j].dim * sizeof(float);
                if (!(t[i].states = malloc(bytes))) {
                    rc = dfm_fail(DFM_E_NOMEM, "out of memory");
                    break;
                }
                memcpy(t[i].states, t[j].states, bytes);
                t[i].rows = t[j].rows, t[i].dim = t[j].dim;
                break;
            }
        if (rc) break;
        if (t[i].states) continue;
        char *clean = dfm_prompt_clean(t[i].text, strlen(t[i].text));
        int32_t *ids = NULL;
        int nid = 0;
        if (!clean) rc = dfm_fail(DFM_E_NOMEM, "out of memory");
        else rc = dfm_tokenizer_encode(tok, clean, strlen(clean), m->text_len, &ids, &nid);
        free(clean);
        dfm_tensor out = {0}, host = {0};
        if (!rc) rc = dfm_umt5_encode(enc, ids, nid, &out);
        free(ids);
        if (!rc) rc = dfm_tensor_copy(&host, &out, DFM_CPU);
        if (!rc) {
            t[i].rows = (int)host.shape[0], t[i].dim = (int)host.shape[1];
            size_t bytes = (size_t)dfm_tensor_numel(&host) * sizeof(float);
            if (!(t[i].states = malloc(bytes))) rc = dfm_fail(DFM_E_NOMEM, "out of memory");
            else memcpy(t[i].states, host.data, bytes);
        }
        dfm_tensor_free(&out);
        dfm_tensor_free(&host);
        if (rc) {
            rc = dfm_fail(rc, "encoding the prompt '%.60s': %s", t[i].text, dfm_errmsg());
        }
    }
    dfm_umt5_free(enc);
    dfm_tokenizer_free(tok);
    return rc;
}

/* ---- the transformer ------------------------------------------------------------------------ */

/* A run directory (with LATEST) stands for its newest checkpoint. */
static const char *resolve_ckpt(const char *path, char *buf, size_t n)
{
    char latest[4096];
    struct stat sb;
    int64_t step;
    if (snprintf(latest, sizeof latest, "%s/LATEST", path) < (int)sizeof latest &&
        (!lstat(latest, &sb) || !stat(strcat(latest, ".txt"), &sb)) && !dfm_ckpt_resolve(path, "LATEST", buf, n, &step))
        return buf;
    return path;
}

static int load_transformer(const dfm_sample_model *m, dfm_wan_transformer **out)
{
    char buf[4096];
    const char *path = m->transformer ? resolve_ckpt(m->transformer, buf, sizeof buf) : m->model;
    dfm_wan_transformer_opts o = {.device = m->device, .weights = m->dtype == DFM_F32 ? DFM_F32 : DFM_BF16,
                                  .compute = m->dtype == DFM_F32 ? DFM_F32 : DFM_BF16};
    int rc = dfm_wan_transformer_load(out, path, &o);
    if (rc) return rc;
    if (m->nloras > 0) {
        const char *paths[DFM_SAMPLE_MAX_LORAS];
        char bufs[DFM_SAMPLE_MAX_LORAS][4096];
        dfm_wan_lora_info info[DFM_SAMPLE_MAX_LORAS];
        for (int i = 0; i < m->nloras; i++) paths[i] = resolve_ckpt(m->lora[i], bufs[i], sizeof bufs[i]);
        rc = dfm_wan_lora_load_many(*out, paths, m->lora_scale, m->nloras, NULL, info);
        for (int i = 0; i < m->nloras && !rc; i++)
            dfm_log_info("LoRA %s: %d modules, rank %d..%d, %s, scale %g", paths[i], info[i].modules, info[i].rank_min,
                         info[i].rank_max, info[i].naming, m->lora_scale[i]);
    }
    /* the frozen weights laid out once for the forward GEMMs; the originals freed (same memory) */
    if (!rc && m->device == DFM_CPU && o.compute == DFM_BF16) rc = dfm_wan_transformer_pack(*out, 1, NULL);
    if (rc) {
        dfm_wan_transformer_free(*out);
        *out = NULL;
    }
    return rc;
}

/* [B, text_len, D] on the device: the B texts zero-padded */
static int pad_texts(const dfm_sample_model *m, const text_t *const *t, int B, dfm_tensor *ctx)
{
    dfm_tensor st[2];
    const dfm_tensor *sp[2];
    int rc = 0;
    for (int b = 0; b < B; b++) {
        int64_t shape[2] = {t[b]->rows, t[b]->dim};
        dfm_tensor h = dfm_tensor_view(t[b]->states, DFM_F32, DFM_CPU, 2, shape);
        memset(&st[b], 0, sizeof st[b]);
        if (!rc) rc = dfm_tensor_copy(&st[b], &h, m->device);
        sp[b] = &st[b];
    }
    if (!rc) rc = dfm_wan_text_pad(sp, B, m->text_len, ctx);
    for (int b = 0; b < B; b++) dfm_tensor_free(&st[b]);
    return rc;
}

static int denoise(const dfm_sample_model *m, dfm_wan_transformer *tr, const dfm_sample_request *r, int ri,
                   const text_t *cond, const text_t *uncond, dfm_sample_result *out, dfm_sample_progress progress,
                   void *pctx)
{
    const dfm_wan_transformer_config *cfg = dfm_wan_transformer_get_config(tr);
    int C = cfg->in_channels, F = (r->frames - 1) / 4 + 1, H = r->height / 8, W = r->width / 8;
    size_t n = (size_t)C * F * H * W;
    int cfg_on = r->guidance > 1.0;
    int B = cfg_on ? 2 : 1;
    dfm_sched_opts so;
    dfm_sched_opts_default(&so, r->sampler_set ? r->sampler : DFM_SAMPLER_UNIPC);
    int found = 0;
    int rc = dfm_sched_config_load(&so, m->model, &found);
    if (rc) return rc;
    if (!found && ri == 0 && r->shift <= 0)
        dfm_log_warn("'%s' has no scheduler/scheduler_config.json: %s with shift %g (Wan 2.1 1.3B's)", m->model,
                     (r->sampler_set ? r->sampler : so.kind) == DFM_SAMPLER_EULER ? "Euler" : "UniPC", so.shift);
    if (r->sampler_set) so.kind = r->sampler; /* else the class the model ships */
    so.steps = r->steps;
    if (r->shift > 0) so.shift = r->shift;
    dfm_sched *sc = NULL;
    if ((rc = dfm_sched_new(&sc, &so))) return rc;
    float *x = malloc(n * sizeof(float)), *pred = malloc(B * n * sizeof(float));
    dfm_tensor ctx = {0};
    if (!x || !pred) {
        rc = dfm_fail(DFM_E_NOMEM, "out of memory for latents of %zu values", n);
        goto out;
    }
    if (r->noise) memcpy(x, r->noise, n * sizeof(float));
    else dfm_randn(r->seed, 0, x, n);
    const text_t *tp[2] = {cond, uncond};
    if ((rc = pad_texts(m, tp, B, &ctx))) goto out;
    double t0 = dfm_now();
    for (int i = 0; i < r->steps && !rc; i++) {
        float t = dfm_sched_timestep(sc, i), ts[2] = {t, t};
        /* the latents, once per pass: [B, C, F, H, W] (cond then uncond) */
        int64_t shape[5] = {B, C, F, H, W};
        dfm_tensor xin = {0}, y = {0}, host = {0};
        if ((rc = dfm_tensor_alloc(&xin, DFM_F32, DFM_CPU, 5, shape))) break;
        for (int b = 0; b < B; b++) memcpy((float *)xin.data + b * n, x, n * sizeof(float));
        dfm_tensor xd = {0};
        if (m->device == DFM_CPU) xd = xin, memset(&xin, 0, sizeof xin);
        else if ((rc = dfm_tensor_copy(&xd, &xin, m->device))) {
            dfm_tensor_free(&xin);
            break;
        }
        dfm_tensor_free(&xin);
        rc = dfm_wan_transformer_forward(tr, &xd, ts, &ctx, &y, NULL, 0, 0);
        dfm_tensor_free(&xd);
        if (!rc) rc = dfm_tensor_copy(&host, &y, DFM_CPU);
        dfm_tensor_free(&y);
        if (rc) break;
        const float *yc = host.data, *yu = (const float *)host.data + n;
        if (cfg_on) {
            /* diffusers: noise_uncond + guidance * (noise_pred - noise_uncond), in f32 */
            float g = (float)r->guidance;
            for (size_t k = 0; k < n; k++) {
                float d = yc[k] - yu[k];
                float s = g * d;
                pred[k] = yu[k] + s;
            }
        } else {
            memcpy(pred, yc, n * sizeof(float));
        }
        dfm_tensor_free(&host);
        if (!rc) rc = dfm_sched_step(sc, i, pred, x, n);
        if (progress) progress(pctx, ri, i + 1, r->steps);
    }
    out->seconds_denoise = dfm_now() - t0;
    if (!rc) {
        out->latents = x, x = NULL;
        out->C = C, out->F = F, out->H = H, out->W = W;
    }
out:
    free(x);
    free(pred);
    dfm_tensor_free(&ctx);
    dfm_sched_free(sc);
    return rc;
}

/* ---- the VAE -------------------------------------------------------------------------------- */

static int decode(dfm_wan_vae *vae, dfm_sample_result *res)
{
    int64_t shape[4] = {res->C, res->F, res->H, res->W};
    dfm_tensor z = {0}, zd = {0}, out = {0}, host = {0};
    int rc = dfm_tensor_alloc(&z, DFM_F32, DFM_CPU, 4, shape);
    if (rc) return rc;
    memcpy(z.data, res->latents, (size_t)dfm_tensor_numel(&z) * sizeof(float));
    if (!(rc = dfm_wan_vae_denormalize(vae, &z)) && !(rc = dfm_tensor_copy(&zd, &z, dfm_wan_vae_device(vae))) &&
        !(rc = dfm_wan_vae_decode(vae, &zd, &out)) && !(rc = dfm_tensor_copy(&host, &out, DFM_CPU))) {
        res->nframes = (int)host.shape[1], res->height = (int)host.shape[2], res->width = (int)host.shape[3];
        res->frames = malloc((size_t)dfm_tensor_numel(&host));
        if (!res->frames) rc = dfm_fail(DFM_E_NOMEM, "out of memory");
        else rc = dfm_video_to_frames(&host, res->frames);
    }
    dfm_tensor_free(&z);
    dfm_tensor_free(&zd);
    dfm_tensor_free(&out);
    dfm_tensor_free(&host);
    return rc;
}

/* ---- the three phases ----------------------------------------------------------------------- */

static int check_request(const dfm_sample_request *r, int i)
{
    if (!r->prompt) return dfm_fail(DFM_E_ARG, "request %d: no prompt", i + 1);
    if (r->width < 16 || r->height < 16 || r->width % 16 || r->height % 16)
        return dfm_fail(DFM_E_ARG, "'%.60s': %dx%d: width and height must be multiples of 16 (dfm_sample_round_size)",
                        r->prompt, r->width, r->height);
    if (r->frames < 1 || r->frames % 4 != 1)
        return dfm_fail(DFM_E_ARG, "'%.60s': %d frames: must be 4k+1 (1, 5, ..., 81)", r->prompt, r->frames);
    if (r->steps < 1 || r->steps > 10000) return dfm_fail(DFM_E_ARG, "'%.60s': %d steps", r->prompt, r->steps);
    if (!isfinite(r->guidance) || r->guidance < 0)
        return dfm_fail(DFM_E_ARG, "'%.60s': guidance %g must be finite and >= 0", r->prompt, r->guidance);
    return 0;
}

struct dfm_sample_texts {
    text_t *t; /* 2 per request: prompt, negative (states NULL where guidance needs none) */
    int n;
};

void dfm_sample_texts_free(dfm_sample_texts *x)
{
    if (!x) return;
    for (int i = 0; i < 2 * x->n; i++) free(x->t[i].states);
    free(x->t);
    free(x);
}

int dfm_sample_texts_encode(const dfm_sample_model *m, const dfm_sample_request *req, int n, dfm_sample_texts **out)
{
    *out = NULL;
    if (!m || !m->model || n < 1) return dfm_fail(DFM_E_ARG, "sample: no model or no request");
    if (m->text_len < 1) return dfm_fail(DFM_E_ARG, "sample: text_len must be >= 1");
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) rc = check_request(&req[i], i);
    if (rc) return rc;
    dfm_sample_texts *x = calloc(1, sizeof *x);
    text_t *need = calloc(2 * (size_t)n, sizeof *need);
    int *where = calloc(2 * (size_t)n, sizeof *where);
    if (x) x->t = calloc(2 * (size_t)n, sizeof *x->t), x->n = n;
    if (!x || !x->t || !need || !where) {
        free(need), free(where), dfm_sample_texts_free(x);
        return dfm_fail(DFM_E_NOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        x->t[2 * i].text = req[i].prompt;
        x->t[2 * i + 1].text = req[i].negative ? req[i].negative : "";
    }
    /* negative prompts only where guidance needs them */
    int nt = 0;
    for (int i = 0; i < 2 * n; i++)
        if (i % 2 == 0 || req[i / 2].guidance > 1.0) need[nt] = x->t[i], where[nt++] = i;
    rc = encode_texts(m, need, nt);
    for (int k = 0; k < nt; k++) x->t[where[k]] = need[k]; /* the states move over (freed with x) */
    free(need);
    free(where);
    if (rc) {
        dfm_sample_texts_free(x);
        return rc;
    }
    *out = x;
    return 0;
}

int dfm_sample_denoise(const dfm_sample_model *m, struct dfm_wan_transformer *tr, const dfm_sample_request *req, int n,
                       const dfm_sample_texts *x, dfm_sample_result *out, dfm_sample_progress progress, void *pctx)
{
    if (!x || x->n != n) return dfm_fail(DFM_E_ARG, "sample: the texts are not those of these requests");
    const dfm_wan_transformer_config *cfg = dfm_wan_transformer_get_config(tr);
    if (x->t[0].dim != cfg->text_dim)
        return dfm_fail(DFM_E_FORMAT, "the text encoder gives %d features, the transformer takes %d: not one model",
                        x->t[0].dim, cfg->text_dim);
    memset(out, 0, (size_t)n * sizeof *out);
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        rc = denoise(m, tr, &req[i], i, &x->t[2 * i], &x->t[2 * i + 1], &out[i], progress, pctx);
        if (rc) {
            rc = dfm_fail(rc, "'%.60s': %s", req[i].prompt, dfm_errmsg());
        }
    }
    if (rc)
        for (int i = 0; i < n; i++) dfm_sample_result_free(&out[i]);
    return rc;
}

int dfm_sample_decode(const dfm_sample_model *m, dfm_sample_result *out, int n)
{
    dfm_wan_vae *vae = NULL;
    dfm_wan_vae_opts vo = {.device = m->device, .weights = m->vae_dtype == DFM_BF16 ? DFM_BF16 : DFM_F32, .load_decoder = 1};
    int rc = dfm_wan_vae_load(&vae, m->model, &vo);
    for (int i = 0; i < n && !rc; i++) rc = decode(vae, &out[i]);
    dfm_wan_vae_free(vae);
    return rc;
}

int dfm_sample_run(const dfm_sample_model *m, const dfm_sample_request *req, int n, int decode_out, dfm_sample_result *out,
                   dfm_sample_progress progress, void *pctx)
{
    dfm_sample_texts *x = NULL;
    int rc = dfm_sample_texts_encode(m, req, n, &x);
    if (rc) return rc;
    dfm_wan_transformer *tr = NULL;
    if (!(rc = load_transformer(m, &tr))) rc = dfm_sample_denoise(m, tr, req, n, x, out, progress, pctx);
    dfm_wan_transformer_free(tr);
    dfm_sample_texts_free(x);
    dfm_ops_release_scratch();
    if (!rc && decode_out && (rc = dfm_sample_decode(m, out, n)))
        for (int i = 0; i < n; i++) dfm_sample_result_free(&out[i]);
    return rc;
}
