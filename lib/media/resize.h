/* resize.h — Pillow-exact resize (and crop) of packed 8-bit RGB images, scalar and AVX2.
 *
 * Semantics follow Pillow's Image.resize (the NeMo and diffusion-pipe reference): the filter is
 * stretched by the scale factor when shrinking (antialiasing), pixel centres at +0.5, weights
 * normalized per output pixel, results rounded and clamped to 0..255. A crop of the resized
 * image is computed directly — only the output pixels inside the crop are evaluated, giving
 * exactly the pixels of "resize to (rw, rh), then crop (left, top, dw, dh)".
 * Not here: tensor ops (this is not a kernel of the op table: no device, no dispatch), decode
 * (image.h, video.h), choosing the size and crop (data/bucketize.h).
 */
#ifndef DFM_MEDIA_RESIZE_H
#define DFM_MEDIA_RESIZE_H
#include <stdint.h>

typedef enum {
    DFM_FILTER_LANCZOS = 0, /* Lanczos a=3 (Pillow LANCZOS) */
    DFM_FILTER_BICUBIC,     /* Keys cubic a=-0.5 (Pillow BICUBIC) */
    DFM_FILTER_BILINEAR,    /* triangle (Pillow BILINEAR) */
    DFM_FILTER_AREA,        /* box: pixel-area averaging when shrinking (Pillow BOX / cv2 INTER_AREA) */
} dfm_filter;

/* src: sw*sh*3, dst: dw*dh*3. The virtual resized image is rw x rh; the output is its window
 * [left, left+dw) x [top, top+dh). threads: worker threads (<= 1 runs inline).
 * Returns 0, or DFM_E_ARG for inconsistent sizes, DFM_E_NOMEM. */
int dfm_resample_rgb8(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh, int rw,
                      int rh, int left, int top, dfm_filter filter, int threads);

/* Which implementation runs: "avx2" (chosen at run time when the CPU has it) or "scalar".
 * Both produce identical bytes. dfm_resample_set_simd(0) forces the scalar path (tests,
 * benchmarks); not thread-safe against concurrent resamples. */
const char *dfm_resample_impl(void);
void dfm_resample_set_simd(int enable);

#endif
