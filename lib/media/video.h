/* video.h — video decode through FFmpeg (libavformat + libavcodec + libswscale) to 8-bit RGB.
 *
 * Open a file, read its stream info and the timestamps of its frames, then decode the frames at a
 * sorted list of indices (0-based, in display order, repeats allowed) in one forward pass with
 * multithreaded decoding.
 * Memory: the selected frames plus the decoder's own buffers; never the whole clip. With an
 * output size set (dfm_video_set_output_size), each frame is scaled down as it is decoded, in
 * the same libswscale pass as the colour conversion, so the selected frames are held at that
 * size, not the source's.
 * Not here: which frames to take (data/frames.h), exact (Pillow-parity) resizing (resample.h).
 */
#ifndef DFM_MEDIA_VIDEO_H
#define DFM_MEDIA_VIDEO_H
#include <stddef.h>
#include <stdint.h>

typedef struct dfm_video dfm_video;

typedef struct {
    int width, height;        /* display size of the decoded frames */
    int64_t nframes;          /* frames the decoder yields: the packets it will turn into pictures
                               * (edit lists and discarded packets left out), counted by demuxing
                               * at open; lowered by a read that finds fewer (see DFM_E_SHORT) */
    int64_t container_frames; /* what the container's header claims (0 = it says nothing) */
    double fps;               /* average frame rate of those frames, from their timestamps (the
                               * container's nominal rate when it agrees within 1% and the clip is
                               * constant-rate, or when the timestamps are missing); 0 unknown */
    double nominal_fps;       /* the container's rate (av_guess_frame_rate), 0 unknown */
    double duration;          /* nframes / fps seconds (0 when fps is unknown) */
    int vfr;                  /* variable frame rate: some frame interval is off the mean by > 10% */
    char codec[32];           /* decoder name, e.g. "h264" */
    int orientation;          /* the display matrix as an EXIF orientation (1..8), applied to
                               * every frame: 1 none, 3/6/8 turned, 2/4 mirrored, 5/7 both */
} dfm_video_info;

/* threads: decoder threads (0 = one per core). max_pixels: refuse larger frames (0 = no limit).
 * Messages do not repeat the path (the caller names the file). */
int dfm_video_open(dfm_video **v, const char *path, int threads, uint64_t max_pixels);
/* A display matrix (AV_PKT_DATA_DISPLAYMATRIX: 3x3, 16.16 fixed point but for the last column)
 * as the EXIF orientation (image.h's dfm_rgb_orient) that shows the coded frame the way the
 * ffmpeg CLI's autorotate does: about 90/180/270 degrees, each possibly mirrored (negative
 * determinant), to 2..8; an unrotated matrix with a vertical flip to 4; anything else
 * (identity, odd angles, degenerate) to 1. NULL gives 1.
 * ref: fftools ffmpeg_filter.c (transpose / hflip / vflip for the display matrix) */
int dfm_video_display_orientation(const int32_t m[9]);
const dfm_video_info *dfm_video_get_info(const dfm_video *v);
/* Presentation times of the frames in display order, seconds from the first one: nframes entries,
 * or NULL when the container gives no timestamps (then frame i is at i / fps). */
const double *dfm_video_times(const dfm_video *v);
/* Frames of later reads come out w x h (display orientation, i.e. after the rotation), scaled
 * down from info.width x info.height with libswscale's antialiased bicubic filter fused with
 * the RGB conversion (the rotation then turns the small frame). Downscaling only: 1 <= w <=
 * info.width and 1 <= h <= info.height, else DFM_E_ARG; w = info.width and h = info.height is
 * the exact path (the default). */
int dfm_video_set_output_size(dfm_video *v, int w, int h);
/* Decode frames idx[0..n) (ascending, repeats allowed) into *out: n*H*W*3 bytes, malloc'd, H x W
 * the output size (info's display size unless dfm_video_set_output_size changed it).
 * When the stream ends before an index (damaged packets the decoder drops, a cut file), it has
 * decoded to the end and returns DFM_E_SHORT with nframes and the times corrected to what it
 * decoded: plan again with them and read again. */
int dfm_video_read(dfm_video *v, const int64_t *idx, int n, uint8_t **out);
/* The same, into a caller's buffer of n*H*W*3 bytes (output size) (e.g. just after an npy header). */
int dfm_video_read_into(dfm_video *v, const int64_t *idx, int n, uint8_t *dst);
void dfm_video_close(dfm_video *v);

#endif
