/* encode.h — image and video encode from 8-bit RGB frames to MP4 (H.264), animated WebP and PNG,
 * through FFmpeg (libavcodec's libx264, libwebp and png encoders, libavformat's mp4 muxer).
 *
 * frames: uint8 RGB [nframes, height, width, 3], row-major, rows top-to-bottom (what
 * dfm-vae-decode's frames.npy holds and what image.h / video.h decode to).
 * Every file is written as PATH.tmp, fsync'd, then renamed to PATH: a file under its final name is
 * always complete, and a failed encode leaves neither PATH nor PATH.tmp behind.
 * Outputs are deterministic for a given FFmpeg/x264/libwebp (x264 runs a fixed 4 threads, not one
 * per core, since its output depends on the thread count).
 * Not here: .npy (io/npy.h), audio, resizing (resize.h), decoding (image.h, video.h).
 */
#ifndef DFM_MEDIA_ENCODE_H
#define DFM_MEDIA_ENCODE_H
#include <stddef.h>
#include <stdint.h>

/* Options; a zeroed struct (or NULL) means every default. */
typedef struct {
    int fps;          /* frames per second, 1..1000; 0 = default 16 */
    int crf;          /* H.264 quality, 1..51 (lower is better); 0 = default 18. x264's lossless
                       * crf 0 is not offered: it needs the High 4:4:4 profile browsers do not play */
    int grid_cols;    /* contact sheet columns: 0 = automatic, ceil(sqrt(n)); more than n = n */
    int webp_quality; /* animated/still WebP: 0 = lossless (default, exact pixels), 1..100 = lossy
                       * VP8 at that quality */
    int threads;      /* animated WebP frames encoded at once: 0 = one per core (the file is the
                       * same whatever the number) */
} dfm_encode_opts;

enum {
    DFM_ENCODE_FPS = 16,
    DFM_ENCODE_CRF = 18,
    DFM_ENCODE_MAX_SIDE = 16383, /* the largest width or height of a frame (WebP's limit) */
    DFM_ENCODE_GUTTER = 2,       /* black pixels between contact-sheet tiles */
};

/* Write nframes frames to path, the format chosen by the file name's extension (any case):
 *   .mp4   H.264 (libx264, High profile, crf, preset medium, 4 threads), yuv420p limited range,
 *          BT.709 matrix/primaries/transfer converted and tagged, constant fps (time base 1/fps),
 *          in an MP4 with the moov box ahead of the data (movflags +faststart: browsers start
 *          playing before the whole file has arrived). 4:2:0 needs an even size: an odd width or
 *          height is padded by repeating the last column/row, so the video is
 *          (height + 1) & ~1 x (width + 1) & ~1 (33x17 becomes 34x18); dfm_encode_mp4_size says it.
 *   .webp  nframes == 1: a still WebP (VP8L lossless, or VP8 at webp_quality). nframes > 1: an
 *          animated WebP (VP8X + ANIM + one ANMF per frame), looping forever, every frame a whole
 *          canvas (no blending, no disposal), frame i shown for round((i+1)*1000/fps) -
 *          round(i*1000/fps) ms, so the total is round(nframes*1000/fps) ms (16 fps: 62/63 ms).
 *   .png   one frame, 8-bit RGB (nframes must be 1; dfm_encode_grid writes several as one sheet).
 * Errors: DFM_E_ARG for an unknown extension (the message lists .mp4 .webp .png; .npy names
 * io/npy.h), nframes != 1 for .png, bad sizes or options; DFM_E_LIMIT for a side over
 * DFM_ENCODE_MAX_SIDE; DFM_E_UNSUPPORTED when this FFmpeg lacks the encoder (the message names it
 * and the package that has it); DFM_E_IO when the file cannot be written (message names the .tmp). */
int dfm_encode_frames(const char *path, const uint8_t *frames, int nframes, int height, int width,
                      const dfm_encode_opts *o);

/* The size an MP4 of height x width frames has: both rounded up to even. */
void dfm_encode_mp4_size(int height, int width, int *mp4_height, int *mp4_width);

/* A contact sheet: the n frames tiled left-to-right, top-to-bottom in grid_cols columns and
 * ceil(n / cols) rows, DFM_ENCODE_GUTTER black pixels between tiles (none around the outside),
 * cells past the last frame black. *sheet: malloc'd RGB [*sheet_h, *sheet_w, 3], owned by the caller;
 * sheet_w = cols*width + (cols-1)*2, sheet_h = rows*height + (rows-1)*2. */
int dfm_encode_tile(const uint8_t *frames, int nframes, int height, int width, int grid_cols, uint8_t **sheet,
                    int *sheet_h, int *sheet_w);
/* dfm_encode_tile written as a PNG at path (.tmp + rename; any extension is accepted). */
int dfm_encode_grid(const char *path, const uint8_t *frames, int nframes, int height, int width,
                    const dfm_encode_opts *o);

/* One RGB image [height, width, 3] as a PNG file in memory (e.g. a TensorBoard image summary):
 * *png malloc'd, owned by the caller, *len bytes. */
int dfm_encode_png_mem(const uint8_t *rgb, int height, int width, uint8_t **png, size_t *len);

#endif
