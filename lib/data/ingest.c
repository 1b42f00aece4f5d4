/* ingest.c — media file -> samples (see ingest.h).
 * ref: NeMo AutoModel tools/diffusion/processors/base_video.py load_video_frames (spread mode,
 *      frames mode); diffusion-pipe models/base.py PreprocessMediaFile (fps, begin/middle). */
#include "data/ingest.h"
#include "base/buf.h"
#include "base/error.h"
#include "base/utf8.h"
#include "io/npy.h"
#include "media/image.h"
#include "media/resize.h"
#include "media/video.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void dfm_ingest_opts_default(dfm_ingest_opts *o)
{
    memset(o, 0, sizeof *o);
    o->max_frames = 129;
    o->max_pixels = 100000000ULL;
    o->max_bytes = 1ULL << 30;
}

/* A frames.npy field of F frames of HxWx3 taken from `rgb` (F*H*W*3 bytes). */
static int set_frames(dfm_sample *s, const uint8_t *rgb, int64_t F, int H, int W)
{
    int64_t shape[4] = {F, H, W, 3};
    uint8_t *npy;
    size_t len;
    int rc = dfm_npy_build(DFM_NPY_U8, 4, shape, rgb, &npy, &len);
    if (rc) return rc;
    return dfm_sample_set_owned(s, "frames.npy", npy, len);
}

static char *make_key(const char *name, int caption_i, int64_t frame)
{
    char *esc = dfm_key_escape(name);
    if (!esc) return NULL;
    char suffix[64] = "";
    if (caption_i > 0) snprintf(suffix, sizeof suffix, "@c%d", caption_i);
    if (frame >= 0) snprintf(suffix + strlen(suffix), sizeof suffix - strlen(suffix), "@f%lld",
                             (long long)frame);
    size_t n = strlen(esc) + strlen(suffix) + 1;
    char *key = dfm_malloc(n);
    if (key) snprintf(key, n, "%s%s", esc, suffix);
    free(esc);
    return key;
}

typedef struct {
    const char *name;
    const char *kind;
    int width, height;    /* the source's displayed size (json) */
    int fw, fh;           /* the frames' size: the same, or smaller with a size hint */
    int64_t source_frames;
    double source_fps, fps;
    const dfm_captions *caps;
    cJSON *extra; /* media-specific fields, copied into each sample's json */
} meta_common;

/* Build and emit the sample(s) for one clip (or one frame) under every caption. The frames come
 * from `rgb`, or from `npy` (a complete frames.npy of npy_len bytes, malloc'd with one spare
 * byte) when that is given: emit_all then owns and frees it, and hands it to the last sample
 * without a copy. */
static int emit_all(const meta_common *m, const uint8_t *rgb, uint8_t *npy, size_t npy_len,
                    int64_t F, const int64_t *idx, int64_t frame_key, dfm_emit_fn emit, void *ctx,
                    int *count)
{
    for (int c = 0; c < m->caps->n; c++) {
        dfm_sample s;
        dfm_sample_init(&s);
        char *key = make_key(m->name, c, frame_key);
        int rc = key ? dfm_sample_set_key(&s, key) : DFM_E_NOMEM;
        free(key);
        if (!rc) rc = dfm_sample_set_str(&s, "txt", m->caps->text[c]);
        if (!rc && !dfm_utf8_valid(m->caps->text[c], strlen(m->caps->text[c]))) {
            char *clean = dfm_utf8_sanitize(m->caps->text[c]); /* txt is UTF-8, always */
            rc = clean ? dfm_sample_set_str(&s, "txt", clean) : DFM_E_NOMEM;
            free(clean);
        }
        if (!rc && npy && c == m->caps->n - 1) {
            npy[npy_len] = 0;
            rc = dfm_sample_set_owned(&s, "frames.npy", npy, npy_len);
            npy = NULL;
        } else if (!rc) {
            rc = npy ? dfm_sample_set(&s, "frames.npy", npy, npy_len)
                     : set_frames(&s, rgb, F, m->fh, m->fw);
        }
        cJSON *j = rc ? NULL : cJSON_CreateObject();
        if (!rc && !j) rc = dfm_fail(DFM_E_NOMEM, "out of memory");
        if (!rc) {
            char *src = dfm_utf8_sanitize(m->name); /* JSON text must be UTF-8 */
            cJSON_AddStringToObject(j, "source", src ? src : "");
            free(src);
            if (!dfm_utf8_valid(m->name, strlen(m->name))) {
                /* the exact bytes, escaped as keys are: urllib.parse.unquote_to_bytes() */
                char *raw = dfm_key_escape(m->name);
                cJSON_AddStringToObject(j, "source_bytes", raw ? raw : "");
                free(raw);
            }
            cJSON_AddStringToObject(j, "media", m->kind);
            cJSON_AddNumberToObject(j, "width", m->width);
            cJSON_AddNumberToObject(j, "height", m->height);
            cJSON_AddNumberToObject(j, "frames", (double)F);
            cJSON_AddNumberToObject(j, "source_frames", (double)m->source_frames);
            if (m->source_fps > 0) cJSON_AddNumberToObject(j, "source_fps", m->source_fps);
            if (m->fps > 0) cJSON_AddNumberToObject(j, "fps", m->fps);
            cJSON *arr = cJSON_AddArrayToObject(j, "frame_indices");
            for (int64_t i = 0; arr && i < F; i++)
                cJSON_AddItemToArray(arr, cJSON_CreateNumber((double)idx[i]));
            cJSON_AddStringToObject(j, "caption_source", m->caps->source);
            if (m->caps->n > 1) cJSON_AddNumberToObject(j, "caption_index", c);
            for (cJSON *e = m->extra ? m->extra->child : NULL; e; e = e->next)
                cJSON_AddItemToObject(j, e->string, cJSON_Duplicate(e, 1));
            rc = dfm_sample_set_json(&s, j);
            cJSON_Delete(j);
        }
        if (!rc) {
            rc = emit(ctx, &s);
            if (!rc) (*count)++;
        }
        dfm_sample_free(&s);
        if (rc) {
            free(npy);
            return rc;
        }
    }
    free(npy); /* only when there were no captions */
    return 0;
}

/* The size hint: decode to the size dfm-bucket scales these frames to before its crop, when
 * that is smaller than the source and dfm-bucket, seeing frames of that size, would choose the
 * same bucket and the same size again (so its json is the exact path's; else, in a near tie
 * between two buckets' ratios, the frames stay exact). 1 with that size in *rw x *rh, else 0. */
static int hint_size(const dfm_ingest_opts *o, int W, int H, int *rw, int *rh)
{
    int id, rw2, rh2, id2;
    if (!o->hint) return 0;
    dfm_bucketer_cover_size(o->hint, W, H, rw, rh, &id);
    if (*rw > W || *rh > H || (*rw == W && *rh == H)) return 0; /* never up */
    dfm_bucketer_cover_size(o->hint, *rw, *rh, &rw2, &rh2, &id2);
    return id2 == id && rw2 == *rw && rh2 == *rh;
}

/* Frames now rw x rh: json "scaled" says so (width/height stay the source's). */
static int hint_json(const dfm_ingest_opts *o, meta_common *m, int rw, int rh)
{
    m->fw = rw;
    m->fh = rh;
    cJSON *sc = cJSON_AddObjectToObject(m->extra, "scaled");
    if (!sc) return dfm_fail(DFM_E_NOMEM, "out of memory");
    cJSON_AddNumberToObject(sc, "width", rw);
    cJSON_AddNumberToObject(sc, "height", rh);
    cJSON_AddStringToObject(sc, "hint", o->hint_name ? o->hint_name : "");
    return 0;
}

/* Images under the size hint: a JPEG decodes at the smallest DCT scale (1/2, 1/4, 1/8) still
 * covering the hinted size (dfm_image_decode_min), then every image is scaled to exactly that
 * size with dfm-bucket's Lanczos, so dfm-bucket only crops. At DCT scale 1 the pixels after
 * dfm-bucket are the exact path's, byte for byte (the resize is the same, done earlier). */
static int hint_image(const dfm_ingest_opts *o, meta_common *m, const dfm_image_meta *im, dfm_image *img,
                      int rw, int rh)
{
    int rw2, rh2;
    if (!hint_size(o, m->width, m->height, &rw2, &rh2) || rw2 != rw || rh2 != rh || img->w < rw || img->h < rh) {
        /* the header said otherwise than the picture: stay exact (only a full-scale decode can) */
        if (im->scale_denom > 1) return dfm_fail(DFM_E_FORMAT, "picture size differs from its header's");
        return 0;
    }
    if (img->w != rw || img->h != rh) {
        uint8_t *small = malloc((size_t)rw * rh * 3);
        if (!small) return dfm_fail(DFM_E_NOMEM, "out of memory for %dx%d", rw, rh);
        int rc = dfm_resample_rgb8(img->rgb, img->w, img->h, small, rw, rh, rw, rh, 0, 0, DFM_FILTER_LANCZOS,
                                   o->threads > 1 ? o->threads : 1);
        if (rc < 0) {
            free(small);
            return rc;
        }
        free(img->rgb);
        img->rgb = small;
        img->w = rw;
        img->h = rh;
    }
    return hint_json(o, m, rw, rh);
}

/* --min-size: a picture too small to be worth upscaling to a bucket is left out (a filter: not a
 * bad file). */
static int check_min_size(const dfm_ingest_opts *o, int w, int h, dfm_ingest_filter *why)
{
    int side = w < h ? w : h;
    if (o->min_size > 0 && side < o->min_size) {
        *why = DFM_INGEST_TOO_SMALL;
        return dfm_fail(DFM_E_SKIP, "%dx%d is smaller than --min-size %d", w, h, o->min_size);
    }
    return 0;
}

static int ingest_image(const dfm_ingest_opts *o, const char *path, meta_common *m,
                        dfm_emit_fn emit, void *ctx, dfm_ingest_filter *why)
{
    dfm_buf file = {0};
    int rc = dfm_read_file(path, o->max_bytes, &file);
    if (rc) return rc;
    if (file.len == 0) {
        dfm_buf_free(&file);
        return dfm_fail(DFM_E_FORMAT, "empty file");
    }
    dfm_image img = {0};
    dfm_image_meta im = {0};
    int pw, ph, rw = 0, rh = 0, peeked = (o->hint || o->min_size > 0) &&
                                         dfm_image_peek_size(file.data, file.len, &pw, &ph) == 1;
    if (peeked && (rc = check_min_size(o, pw, ph, why)) < 0) { /* before a pixel is decoded */
        dfm_buf_free(&file);
        return rc;
    }
    if (o->hint && peeked && !hint_size(o, pw, ph, &rw, &rh)) rw = rh = 0;
    rc = dfm_image_decode_min(file.data, file.len, o->max_pixels, o->accept_damaged ? DFM_IMAGE_ACCEPT_DAMAGED : 0,
                              rw, rh, &img, &im);
    dfm_buf_free(&file);
    if (!rc && (rc = check_min_size(o, im.full_w, im.full_h, why)) < 0) dfm_image_free(&img);
    if (rc) return rc;
    m->width = im.full_w;
    m->height = im.full_h;
    m->fw = img.w;
    m->fh = img.h;
    m->source_frames = 1;
    cJSON_AddStringToObject(m->extra, "format", dfm_image_type_name(im.type));
    if (im.orientation > 1) cJSON_AddNumberToObject(m->extra, "exif_orientation", im.orientation);
    if (im.had_alpha) cJSON_AddBoolToObject(m->extra, "alpha_composited", 1);
    if (im.damage[0]) cJSON_AddStringToObject(m->extra, "decode_warning", im.damage);
    if (rw && (rc = hint_image(o, m, &im, &img, rw, rh)) < 0) {
        dfm_image_free(&img);
        return rc;
    }
    int64_t idx0 = 0;
    int count = 0;
    rc = emit_all(m, img.rgb, NULL, 0, 1, &idx0, -1, emit, ctx, &count);
    dfm_image_free(&img);
    return rc ? rc : count;
}

/* The frames to take from the clip as v now describes it (count, rate, times). */
static int plan_frames(const dfm_ingest_opts *o, dfm_video *v, int64_t **idx)
{
    const dfm_video_info *vi = dfm_video_get_info(v);
    int want = o->frames;
    if (o->mode == DFM_INGEST_FRAMES && want == 0) want = 10;
    int n = dfm_frames_select(vi->nframes, vi->vfr ? dfm_video_times(v) : NULL, vi->fps, o->fps, want,
                              o->mode == DFM_INGEST_FRAMES || o->frames ? 0 : o->max_frames,
                              o->mode == DFM_INGEST_FRAMES ? DFM_CLIP_SPREAD : o->clip, idx);
    return n < 0 || n > 0 ? n : dfm_fail(DFM_E_FORMAT, "no frames selected");
}

/* The length filters (ingest.h) on the clip as v now describes it: 0 keeps it; DFM_E_SKIP with
 * *why set leaves it out; another negative code when it cannot be judged. An empty clip is
 * left to the "no frames" error. */
static int check_length(const dfm_ingest_opts *o, dfm_video *v, dfm_ingest_filter *why)
{
    const dfm_video_info *vi = dfm_video_get_info(v);
    if (vi->nframes <= 0) return 0;
    if (o->min_frames > 0) {
        int64_t n = vi->nframes;
        char rate[96] = "";
        if (o->fps > 0 && vi->fps > 0) { /* counted as frames.h step 1 resamples (plan_frames) */
            int64_t *idx = NULL;
            int k = dfm_frames_select(n, vi->vfr ? dfm_video_times(v) : NULL, vi->fps, o->fps, 0, 0,
                                      DFM_CLIP_SPREAD, &idx);
            free(idx);
            if (k < 0) return k;
            n = k;
            snprintf(rate, sizeof rate, " at --fps %g (%lld at %.4g fps)", o->fps, (long long)vi->nframes, vi->fps);
        }
        if (n < o->min_frames) {
            *why = DFM_INGEST_TOO_SHORT;
            return dfm_fail(DFM_E_SKIP, "%lld frame%s%s, fewer than --min-frames %d", (long long)n,
                            n == 1 ? "" : "s", rate, o->min_frames);
        }
    }
    if (!(o->min_duration > 0) && !(o->max_duration > 0)) return 0;
    if (!(vi->duration > 0))
        return dfm_fail(DFM_E_FORMAT, "--%s-duration needs the clip's frame rate, which this file lacks",
                        o->min_duration > 0 ? "min" : "max");
    const double slack = 1e-6; /* n / fps of a clip at exactly the limit may round either way */
    if (o->min_duration > 0 && vi->duration < o->min_duration - slack) {
        *why = DFM_INGEST_TOO_SHORT;
        return dfm_fail(DFM_E_SKIP, "%.6g s (%lld frames at %.4g fps), shorter than --min-duration %g",
                        vi->duration, (long long)vi->nframes, vi->fps, o->min_duration);
    }
    if (o->max_duration > 0 && vi->duration > o->max_duration + slack) {
        *why = DFM_INGEST_TOO_LONG;
        return dfm_fail(DFM_E_SKIP, "%.6g s (%lld frames at %.4g fps), longer than --max-duration %g",
                        vi->duration, (long long)vi->nframes, vi->fps, o->max_duration);
    }
    return 0;
}

/* Clip facts for json, as the frames finally decoded show them. */
static void video_meta(const dfm_video_info *vi, meta_common *m, const dfm_ingest_opts *o)
{
    m->source_frames = vi->nframes;
    m->source_fps = vi->fps;
    m->fps = o->fps > 0 ? o->fps : vi->fps;
    cJSON_AddStringToObject(m->extra, "codec", vi->codec);
    if (vi->duration > 0) cJSON_AddNumberToObject(m->extra, "duration", vi->duration);
    if (vi->vfr) cJSON_AddBoolToObject(m->extra, "vfr", 1);
    if (vi->orientation > 1) cJSON_AddNumberToObject(m->extra, "display_orientation", vi->orientation);
    if (vi->nominal_fps > 0 && fabs(vi->nominal_fps - vi->fps) > 0.01 * vi->fps)
        cJSON_AddNumberToObject(m->extra, "container_fps", vi->nominal_fps);
    if (vi->container_frames && vi->container_frames != vi->nframes)
        cJSON_AddNumberToObject(m->extra, "container_frames", (double)vi->container_frames);
}

static int apply_hint(const dfm_ingest_opts *o, dfm_video *v, meta_common *m)
{
    int rw, rh;
    if (!hint_size(o, m->width, m->height, &rw, &rh)) return 0;
    int rc = dfm_video_set_output_size(v, rw, rh);
    return rc < 0 ? rc : hint_json(o, m, rw, rh);
}

static int ingest_video(const dfm_ingest_opts *o, const char *path, meta_common *m,
                        dfm_emit_fn emit, void *ctx, dfm_ingest_filter *why)
{
    dfm_video *v;
    int rc = dfm_video_open(&v, path, o->threads, o->max_pixels);
    if (rc) return rc;
    const dfm_video_info *vi = dfm_video_get_info(v);
    m->width = vi->width;
    m->height = vi->height;
    if (o->fps > 0 && !(vi->fps > 0)) {
        dfm_video_close(v);
        return dfm_fail(DFM_E_FORMAT, "--fps needs the source frame rate, which this file lacks");
    }
    if ((rc = check_min_size(o, m->width, m->height, why)) < 0 || (rc = check_length(o, v, why)) < 0) {
        dfm_video_close(v); /* before a pixel is decoded */
        return rc;
    }
    m->fw = m->width;
    m->fh = m->height;
    if (o->hint && (rc = apply_hint(o, v, m)) < 0) {
        dfm_video_close(v);
        return rc;
    }
    const size_t fsz = (size_t)m->fw * m->fh * 3;
    int64_t *idx = NULL;
    uint8_t *npy = NULL, *rgb = NULL;
    size_t hdr = 0, total = 0;
    int n = 0;
    /* Plan from what the container lists; when fewer frames decode (damaged packets), the read
     * corrects the count and times, and the plan is made again from those (at most once more:
     * the second pass decodes what the first one did). */
    for (int attempt = 0; attempt < 2; attempt++) {
        free(idx), free(npy), free(rgb);
        idx = NULL, npy = rgb = NULL;
        if (attempt > 0 && (rc = check_length(o, v, why)) < 0) break; /* on the decoded count */
        if ((rc = n = plan_frames(o, v, &idx)) < 0) break;
        if (o->mode == DFM_INGEST_VIDEO) {
            /* Decode straight into the frames.npy buffer: a clip is large, copy it no more. */
            int64_t shape[4] = {n, m->fh, m->fw, 3};
            rc = dfm_npy_header(DFM_NPY_U8, 4, shape, &npy, &hdr);
            if (!rc && !dfm_mul_ok(fsz, (size_t)n, &total)) rc = dfm_fail(DFM_E_LIMIT, "%d frames are too large", n);
            uint8_t *grown = rc ? NULL : dfm_realloc(npy, hdr + total + 1);
            if (!rc && !grown) rc = DFM_E_NOMEM;
            if (!rc) npy = grown, rc = dfm_video_read_into(v, idx, n, npy + hdr);
        } else {
            rc = dfm_video_read(v, idx, n, &rgb);
        }
        if (rc != DFM_E_SHORT) break;
    }
    if (!rc) video_meta(vi, m, o);
    dfm_video_close(v);
    int count = 0;
    if (!rc && o->mode == DFM_INGEST_VIDEO) {
        rc = emit_all(m, NULL, npy, hdr + total, n, idx, -1, emit, ctx, &count);
        npy = NULL; /* emit_all owns it */
    } else if (!rc) {
        int distinct = 0;
        for (int i = 0; i < n; i++) distinct += i == 0 || idx[i] != idx[i - 1];
        cJSON_AddNumberToObject(m->extra, "frames_extracted", distinct);
        cJSON *fi = cJSON_AddNumberToObject(m->extra, "frame_index", 0);
        for (int i = 0; i < n && !rc; i++) {
            if (i > 0 && idx[i] == idx[i - 1]) continue; /* one sample per distinct frame */
            cJSON_SetNumberValue(fi, (double)idx[i]);
            rc = emit_all(m, rgb + (size_t)i * fsz, NULL, 0, 1, &idx[i], idx[i], emit, ctx, &count);
        }
    }
    free(npy), free(rgb), free(idx);
    return rc ? rc : count;
}

int dfm_ingest_file(const dfm_ingest_opts *o, const dfm_captions *caps, const char *path,
                    const char *name, dfm_media_kind kind, dfm_emit_fn emit, void *ctx,
                    dfm_ingest_filter *filtered)
{
    int rc;
    dfm_ingest_filter why_local;
    dfm_ingest_filter *why = filtered ? filtered : &why_local;
    *why = DFM_INGEST_KEPT;
    meta_common m = {.name = name, .kind = dfm_media_kind_name(kind), .caps = caps};
    m.extra = cJSON_CreateObject();
    if (!m.extra) return dfm_fail(DFM_E_NOMEM, "out of memory");
    cJSON_AddStringToObject(m.extra, "mode", o->mode == DFM_INGEST_FRAMES ? "frames" : "video");
    if (kind == DFM_MEDIA_IMAGE) rc = ingest_image(o, path, &m, emit, ctx, why);
    else if (kind == DFM_MEDIA_VIDEO) rc = ingest_video(o, path, &m, emit, ctx, why);
    else rc = dfm_fail(DFM_E_UNSUPPORTED, "not an image or video");
    cJSON_Delete(m.extra);
    return rc;
}
