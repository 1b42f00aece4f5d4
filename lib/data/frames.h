/* frames.h — which source frames of a clip to take (`dfm-decode --frames/--clip/--fps`).
 *
 * Step 1, optional fps resampling (diffusion-pipe convert_framerate): with a target fps F and the
 *   source's average fps S, the clip becomes n' = floor(n*F/S) frames. A constant-rate clip takes
 *   source indices trunc(linspace(0, n-1, n')), exactly as diffusion-pipe does. A variable-rate
 *   clip (frame times given) takes, at each of the times linspace(t[0], t[n-1], n'), the frame
 *   on screen then (the last with t[i] <= that time): by presentation time, not by index, so
 *   4.3 s of a phone clip stay 4.3 s of motion. For evenly spaced times the two agree. Frames are
 *   dropped or repeated, never interpolated.
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
 * returns the count (>= 1 when n >= 1), 0 for an empty clip, or a negative error.
 * times: NULL for a constant-rate clip, else n ascending presentation times in seconds (a
 * variable-rate clip; src_fps is then its average rate, (n-1) / (t[n-1] - t[0])). */
int dfm_frames_select(int64_t n, const double *times, double src_fps, double fps, int want,
                      int max_frames, dfm_clip_mode mode, int64_t **idx);

#endif
