/* frames.c — which source frames of a clip to take: optional fps resampling by index, then a
 * clip of `want` frames (spread / begin / middle). See frames.h for the contract.
 *
 * Index arithmetic only: no decoding, no seeking, no interpolation between frames.
 */
#include "data/frames.h"
#include "base/buf.h"
#include "base/error.h"

#include <stdlib.h>

/* numpy.linspace: step = (b - a) / (n - 1); y[i] = i * step + a (two roundings, no FMA: the
 * build uses -std=c11, where GCC does not contract); y[n-1] = b exactly. n == 1 gives a.
 * Truncation toward zero as ndarray.astype(int). (linspace(..., dtype=int) floors instead; the
 * two differ only for negative values, which frame indices never are.) */
// ref: numpy function_base.py linspace
void dfm_linspace_trunc(double a, double b, int n, int64_t *out)
{
    if (n <= 0) return;
    double delta = b - a;
    double step = n > 1 ? delta / (n - 1) : 0.0;
    for (int i = 0; i < n; i++) {
        double y;
        if (n > 1 && step == 0.0) y = (double)i / (n - 1) * delta;
        else y = (double)i * step;
        y += a;
        if (n > 1 && i == n - 1) y = b;
        out[i] = (int64_t)y;
    }
}

/* The largest clip we index (frames after resampling). */
#define FRAMES_MAX ((int64_t)1 << 26)

/* The frame on screen at each of the len times linspace(t[0], t[n-1], len): the last i with
 * t[i] <= time (a nanosecond of slack for the rounding of the linspace). */
static void pick_by_time(const double *t, int64_t n, int64_t len, int64_t *out)
{
    const double t0 = t[0], span = t[n - 1] - t[0];
    int64_t i = 0;
    for (int64_t k = 0; k < len; k++) {
        double at = len > 1 ? t0 + (double)k * span / (double)(len - 1) : t0;
        if (len > 1 && k == len - 1) at = t[n - 1];
        while (i + 1 < n && t[i + 1] <= at + 1e-9) i++;
        out[k] = i;
    }
}

int dfm_frames_select(int64_t n, const double *times, double src_fps, double fps, int want,
                      int max_frames, dfm_clip_mode mode, int64_t **idx)
{
    *idx = NULL;
    if (n <= 0) return 0;
    if (n > FRAMES_MAX) return dfm_fail(DFM_E_LIMIT, "clip of %lld frames is too long", (long long)n);

    /* Step 1: fps resampling, by index (constant rate) or by presentation time. */
    // ref: diffusion-pipe models/base.py convert_framerate (via PreprocessMediaFile)
    int64_t len = n;
    int64_t *base = NULL;
    if (fps > 0 && src_fps > 0) {
        double nn = (double)n * fps / src_fps; /* int(n * model_fps / src_fps) */
        if (!(nn < (double)FRAMES_MAX))
            return dfm_fail(DFM_E_LIMIT, "resampling %lld frames from %g to %g fps gives too many",
                            (long long)n, src_fps, fps);
        len = (int64_t)nn;
        if (len < 1) len = 1; /* a non-empty clip keeps at least its first frame */
        base = dfm_malloc((size_t)len * sizeof *base);
        if (!base) return DFM_E_NOMEM;
        if (times && n > 1) pick_by_time(times, n, len, base);
        else dfm_linspace_trunc(0.0, (double)(n - 1), (int)len, base);
    }

    /* Step 2: the clip. */
    int64_t k = want > 0 ? want : len;
    if (max_frames > 0 && k > max_frames) k = max_frames;
    if (k > len) k = len;
    int64_t *out = dfm_malloc((size_t)k * sizeof *out);
    if (!out) {
        free(base);
        return DFM_E_NOMEM;
    }
    if (k == len) {
        for (int64_t i = 0; i < k; i++) out[i] = i;
    } else if (mode == DFM_CLIP_BEGIN) {
        // ref: diffusion-pipe models/base.py PreprocessMediaFile (video_clip_mode single_beginning)
        for (int64_t i = 0; i < k; i++) out[i] = i;
    } else if (mode == DFM_CLIP_MIDDLE) {
        // ref: diffusion-pipe models/base.py PreprocessMediaFile (video_clip_mode single_middle)
        int64_t start = (len - k) / 2; /* int((n - F) / 2), non-negative */
        for (int64_t i = 0; i < k; i++) out[i] = start + i;
    } else {
        // ref: NeMo AutoModel tools/diffusion/processors/base_video.py load_video_frames
        dfm_linspace_trunc(0.0, (double)(len - 1), (int)k, out);
    }
    if (base) {
        for (int64_t i = 0; i < k; i++) out[i] = base[out[i]];
        free(base);
    }
    *idx = out;
    return (int)k;
}
