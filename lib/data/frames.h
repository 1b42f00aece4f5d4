/* frames.h — which source frames of a clip to take (`dfm-decode --frames/--clip/--fps`).
 *
 * Step 1, optional fps resampling by index (diffusion-pipe convert_framerate): with a target
 *   fps F and source fps S, the clip becomes n' = floor(n*F/S) frames at source indices
 *   trunc(linspace(0, n-1, n')). Frames are dropped or repeated, never interpolated.
 * Step 2, the clip of `want` frames from those (want = 0: all of them, capped by max_frames):
 *   spread  trunc(linspace(0, len-1, want)) over the whole clip (NeMo)
 *   begin   the first `want` (diffusion-pipe single_beginning)
 *   middle  `want` frames starting at trunc((len-want)/2) (diffusion-pipe single_middle)
 *   A clip shorter than `want` gives all its frames.
 * Pure functions; no I/O.
 */
#ifndef DFM_DATA_FRAMES_H
#define DFM_DATA_FRAMES_H
#include <stdint.h>

typedef enum { DFM_CLIP_SPREAD = 0, DFM_CLIP_BEGIN, DFM_CLIP_MIDDLE } dfm_clip_mode;

/* numpy.linspace(a, b, n) truncated to integers, into out[n]. */
void dfm_linspace_trunc(double a, double b, int n, int64_t *out);

/* Source indices (ascending, repeats possible when fps > source fps) into a malloc'd *idx;
 * returns the count (>= 1 when n >= 1), 0 for an empty clip, or a negative error. */
int dfm_frames_select(int64_t n, double src_fps, double fps, int want, int max_frames,
                      dfm_clip_mode mode, int64_t **idx);

#endif
