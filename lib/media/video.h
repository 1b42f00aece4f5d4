/* video.h — video decode through FFmpeg (libavformat + libavcodec + libswscale) to 8-bit RGB.
 *
 * Open a file, read its stream info, then decode the frames at a sorted list of indices
 * (0-based, in decode order, repeats allowed) in one forward pass with multithreaded decoding.
 * Memory: the selected frames plus the decoder's own buffers; never the whole clip.
 * Not here: which frames to take (data/frames.h), resizing (resample.h).
 */
#ifndef DFM_MEDIA_VIDEO_H
#define DFM_MEDIA_VIDEO_H
#include <stddef.h>
#include <stdint.h>

typedef struct dfm_video dfm_video;

typedef struct {
    int width, height;   /* display size of the decoded frames */
    int64_t nframes;     /* exact frame count (counted by demuxing when the container lacks it) */
    double fps;          /* average frame rate (av_guess_frame_rate) */
    double duration;     /* seconds, 0 if unknown */
    char codec[32];      /* decoder name, e.g. "h264" */
} dfm_video_info;

/* threads: decoder threads (0 = one per core). max_pixels: refuse larger frames (0 = no limit). */
int dfm_video_open(dfm_video **v, const char *path, int threads, uint64_t max_pixels);
const dfm_video_info *dfm_video_get_info(const dfm_video *v);
/* Decode frames idx[0..n) (ascending, repeats allowed) into *out: n*H*W*3 bytes, malloc'd.
 * If the stream ends before an index, returns DFM_E_FORMAT naming how many frames it had. */
int dfm_video_read(dfm_video *v, const int64_t *idx, int n, uint8_t **out);
/* The same, into a caller's buffer of n*H*W*3 bytes (e.g. just after an npy header). */
int dfm_video_read_into(dfm_video *v, const int64_t *idx, int n, uint8_t *dst);
void dfm_video_close(dfm_video *v);

#endif
