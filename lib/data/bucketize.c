/* bucketize.c — sample -> bucketed sample (see bucketize.h).
 * ref: NeMo AutoModel multi_tier_bucketing.py resize_and_crop (scale to cover, centre crop);
 *      diffusion-pipe utils/dataset.py (log ratios, frame buckets). */
#include "data/bucketize.h"
#include "base/buf.h"
#include "base/error.h"
#include "io/npy.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dfm_bucketer {
    dfm_bucket_opts o;
    dfm_wh buckets[DFM_MAX_BUCKETS];
    double ratios[DFM_MAX_BUCKETS];
    int n;
};

static const char *const filter_names[] = {"lanczos", "bicubic", "bilinear", "area"};
static const char *const method_names[] = {"nemo", "fixed", "log"};

void dfm_bucket_opts_default(dfm_bucket_opts *o)
{
    memset(o, 0, sizeof *o);
    o->max_pixels = 262144;
    o->multiple = 16;
    o->log_min = 0.5;
    o->log_max = 2.0;
    o->log_n = 7;
    o->side = 512;
}

int dfm_bucketer_new(dfm_bucketer **out, const dfm_bucket_opts *o)
{
    *out = NULL;
    if (o->multiple < 1 || o->multiple > 1024)
        return dfm_fail(DFM_E_ARG, "the multiple must be between 1 and 1024, not %d", o->multiple);
    dfm_bucketer *b = dfm_calloc(1, sizeof *b);
    if (!b) return DFM_E_NOMEM;
    b->o = *o;
    switch (o->method) {
    case DFM_BUCKETS_NEMO:
        b->n = dfm_buckets_nemo(o->max_pixels, o->multiple, b->buckets, DFM_MAX_BUCKETS);
        break;
    case DFM_BUCKETS_FIXED:
        if (o->fixed_w % o->multiple || o->fixed_h % o->multiple) {
            free(b);
            return dfm_fail(DFM_E_ARG, "size %dx%d is not a multiple of %d", o->fixed_w,
                            o->fixed_h, o->multiple);
        }
        b->buckets[0] = (dfm_wh){o->fixed_w, o->fixed_h};
        b->n = 1;
        break;
    case DFM_BUCKETS_LOG:
        if (!(o->log_min > 0 && o->log_max >= o->log_min && o->log_n >= 1 && o->log_n <= 64)) {
            free(b);
            return dfm_fail(DFM_E_ARG, "log ratios need 0 < MIN <= MAX and 1 <= N <= 64");
        }
        b->n = dfm_buckets_log(o->log_min, o->log_max, o->log_n, o->side, o->multiple, b->buckets,
                               DFM_MAX_BUCKETS, b->ratios);
        break;
    }
    for (int i = 0; i < b->n; i++)
        if (b->buckets[i].w < 1 || b->buckets[i].h < 1) b->n = 0;
    if (b->n <= 0) {
        free(b);
        return dfm_fail(DFM_E_ARG, "these options give no usable bucket (budget too small for "
                                   "the multiple?)");
    }
    *out = b;
    return 0;
}

void dfm_bucketer_free(dfm_bucketer *b) { free(b); }

int dfm_bucketer_list(const dfm_bucketer *b, const dfm_wh **out)
{
    *out = b->buckets;
    return b->n;
}

static int pick(const dfm_bucketer *b, int W, int H)
{
    if (b->o.method == DFM_BUCKETS_LOG) return dfm_bucket_pick_log_ar(b->ratios, b->n, W, H);
    return dfm_bucket_pick_nearest_ar(b->buckets, b->n, W, H);
}

void dfm_bucketer_cover_size(const dfm_bucketer *b, int W, int H, int *rw, int *rh, int *id)
{
    int i = pick(b, W, H), left, top;
    if (i < 0) i = 0;
    dfm_cover_crop(W, H, b->buckets[i].w, b->buckets[i].h, rw, rh, &left, &top);
    if (id) *id = i;
}

static int target_frames(const dfm_bucket_opts *o, int F)
{
    switch (o->frame_rule) {
    case DFM_FRAMES_4K1: return dfm_frames_4k1(F);
    case DFM_FRAMES_NONE: return F;
    case DFM_FRAMES_LIST:
        if (F == 1) return 1; /* images always fit the 1-frame bucket (diffusion-pipe adds it) */
        return dfm_frame_bucket_pick(o->frame_buckets, o->n_frame_buckets, F);
    }
    return 0;
}

int dfm_bucketize(dfm_bucketer *b, dfm_sample *s)
{
    const dfm_field *f = dfm_sample_get(s, "frames.npy");
    if (!f) return dfm_fail(DFM_E_FORMAT, "no 'frames.npy' field (run dfm-decode first)");
    dfm_npy a;
    int rc = dfm_npy_parse(f->data, f->len, &a);
    if (rc) return dfm_fail_ctx(rc, "frames.npy");
    int64_t F, H, W;
    if (a.dtype != DFM_NPY_U8 || !((a.ndim == 4 && a.shape[3] == 3) || (a.ndim == 3 && a.shape[2] == 3)))
        return dfm_fail(DFM_E_FORMAT, "frames.npy must be uint8 [F,H,W,3] or [H,W,3]");
    if (a.ndim == 4) F = a.shape[0], H = a.shape[1], W = a.shape[2];
    else F = 1, H = a.shape[0], W = a.shape[1];
    if (F < 1 || H < 1 || W < 1) return dfm_fail(DFM_E_FORMAT, "frames.npy is empty");
    if (F > 1000000 || H > 65536 || W > 65536) return dfm_fail(DFM_E_LIMIT, "frames.npy is too large");

    int Ft = target_frames(&b->o, (int)F);
    if (F > 1 && Ft == 1 && b->o.frame_rule == DFM_FRAMES_4K1)
        return dfm_fail(DFM_E_SKIP, "clip of %lld frames is too short for the 4k+1 rule (a video "
                                    "needs at least 5 frames)", (long long)F);
    if (Ft < 1) {
        if (b->o.frame_rule == DFM_FRAMES_LIST) {
            char list[256] = "";
            for (int i = 0; i < b->o.n_frame_buckets; i++)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", i ? "," : "",
                         b->o.frame_buckets[i]);
            return dfm_fail(DFM_E_SKIP, "clip of %lld frames is too short for every frame bucket (%s)",
                            (long long)F, list);
        }
        return dfm_fail(DFM_E_SKIP, "clip of %lld frames is too short", (long long)F);
    }

    int id = pick(b, (int)W, (int)H);
    int tw = b->buckets[id].w, th = b->buckets[id].h, rw, rh, left, top;
    dfm_cover_crop((int)W, (int)H, tw, th, &rw, &rh, &left, &top);

    int64_t shape[4] = {Ft, th, tw, 3};
    uint8_t *npy;
    size_t hdr_len;
    if ((rc = dfm_npy_header(DFM_NPY_U8, 4, shape, &npy, &hdr_len))) return rc;
    size_t out_frame = (size_t)tw * th * 3, in_frame = (size_t)W * H * 3;
    uint8_t *grown = dfm_realloc(npy, hdr_len + out_frame * (size_t)Ft);
    if (!grown) {
        free(npy);
        return DFM_E_NOMEM;
    }
    npy = grown;
    for (int i = 0; i < Ft; i++) {
        rc = dfm_resample_rgb8(a.data + in_frame * i, (int)W, (int)H, npy + hdr_len + out_frame * i,
                               tw, th, rw, rh, left, top, b->o.filter, b->o.threads);
        if (rc) {
            free(npy);
            return rc;
        }
    }

    cJSON *j;
    if ((rc = dfm_sample_json(s, &j))) {
        free(npy);
        return rc;
    }
    cJSON_DeleteItemFromObject(j, "bucket");
    cJSON_DeleteItemFromObject(j, "crop");
    cJSON *bk = cJSON_AddObjectToObject(j, "bucket");
    cJSON_AddNumberToObject(bk, "width", tw);
    cJSON_AddNumberToObject(bk, "height", th);
    cJSON_AddNumberToObject(bk, "frames", Ft);
    if (b->o.method == DFM_BUCKETS_FIXED) cJSON_AddNullToObject(bk, "id");
    else cJSON_AddNumberToObject(bk, "id", id);
    cJSON_AddNumberToObject(bk, "aspect", (double)tw / th);
    cJSON_AddStringToObject(bk, "method", method_names[b->o.method]);
    cJSON *cr = cJSON_AddObjectToObject(j, "crop");
    cJSON_AddNumberToObject(cr, "left", left);
    cJSON_AddNumberToObject(cr, "top", top);
    cJSON_AddNumberToObject(cr, "resized_width", rw);
    cJSON_AddNumberToObject(cr, "resized_height", rh);
    cJSON_AddStringToObject(cr, "filter", filter_names[b->o.filter]);
    cJSON_AddNumberToObject(cr, "input_frames", (double)F);
    rc = dfm_sample_set_json(s, j);
    cJSON_Delete(j);
    if (rc) {
        free(npy);
        return rc;
    }
    return dfm_sample_set_owned(s, "frames.npy", npy, hdr_len + out_frame * (size_t)Ft);
}
