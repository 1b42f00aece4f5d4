/* stats_sheet.h — dfm-stats --sheet: a PNG contact sheet with up to K samples per bucket, one
 * row per bucket, each tile the first frame of a sample as it will be trained on (the bucket's
 * crop: frames.npy after dfm-bucket, or the first latent frame decoded by the caller), each row
 * labelled with its bucket in a small built-in bitmap font.
 *
 * Tiles are kept as RGB, at most DFM_SHEET_TILE pixels on their longer side (a larger frame is
 * shrunk with the area filter, media/resize.h; a smaller one is kept pixel for pixel), so memory
 * is K × buckets tiles. Which samples: the first K of each bucket in the order the caller adds
 * them (stream order in dfm-stats), so the same input gives the same sheet.
 *
 * Layout (pixels): a DFM_SHEET_MARGIN border; per row a label band DFM_SHEET_LABEL high (white
 * text, 2× the 5×7 font, "BUCKET (N)") and below it the row's tiles left to right, top-aligned,
 * DFM_SHEET_GUTTER apart; DFM_SHEET_GUTTER between rows; rows in dfm_stats_bucket_cmp order;
 * background dark grey (32,32,32).
 *
 * Not here: decoding latents (lib/models: the caller decodes and hands the frame over), PNG
 * encoding (media/encode.h).
 */
#ifndef DFM_DATA_STATS_SHEET_H
#define DFM_DATA_STATS_SHEET_H
#include <stddef.h>
#include <stdint.h>
#include "data/stats.h"
#include "io/sample.h"

enum {
    DFM_SHEET_TILE = 256,  /* longest tile side */
    DFM_SHEET_MARGIN = 8,
    DFM_SHEET_GUTTER = 4,
    DFM_SHEET_LABEL = 20,  /* label band height; the text starts 3 px in */
    DFM_SHEET_MAX_PER_BUCKET = 64,
};

typedef struct dfm_sheet dfm_sheet;

/* per_bucket: tiles per bucket, 1 .. DFM_SHEET_MAX_PER_BUCKET (else DFM_E_ARG). */
int dfm_sheet_new(dfm_sheet **sh, int per_bucket);
void dfm_sheet_free(dfm_sheet *sh);
/* 1 while bucket b has fewer than per_bucket tiles. */
int dfm_sheet_wants(const dfm_sheet *sh, const dfm_stats_bucket *b);
/* The first frame of s's frames.npy (uint8 [F,H,W,3]) as b's next tile (nothing when b is full).
 * DFM_E_SKIP: s has no frames.npy (nothing added); DFM_E_FORMAT: it is not uint8 [F,H,W,3]. */
int dfm_sheet_add_sample(dfm_sheet *sh, const dfm_stats_bucket *b, const dfm_sample *s);
/* rgb [h, w, 3] (copied, shrunk to fit DFM_SHEET_TILE) as b's next tile, labelled key. */
int dfm_sheet_add_rgb(dfm_sheet *sh, const dfm_stats_bucket *b, const char *key, const uint8_t *rgb,
                      int h, int w);
int dfm_sheet_tiles(const dfm_sheet *sh); /* tiles held */

/* Draw the sheet: *rgb malloc'd [*h, *w, 3] (the caller frees it). st (may be NULL) gives the
 * sample counts of the labels. layout (may be NULL): an object that gets "width", "height" and
 * "rows": [{"bucket", "y", "tiles": [{"key", "x", "y", "width", "height"}...]}...], every
 * position in sheet pixels (top-left corners). DFM_E_ARG with no tiles, DFM_E_LIMIT when the
 * sheet would be too large for a PNG. */
int dfm_sheet_render(const dfm_sheet *sh, const dfm_stats *st, uint8_t **rgb, int *h, int *w,
                     cJSON *layout);
/* Render and write as PNG at path (path.tmp, fsync, rename: media/encode.h, base/buf.h). */
int dfm_sheet_write(const dfm_sheet *sh, const dfm_stats *st, const char *path, cJSON *layout);

/* The first latent frame of a latents.npy field (float16/float32 [C,F,H,W]) as a new .npy
 * [C,1,H,W] of the same dtype: *npy malloc'd (one zero byte past *len, for
 * dfm_sample_set_owned). DFM_E_FORMAT when the field is not such an array. */
int dfm_sheet_first_latent_frame(const dfm_field *latents, uint8_t **npy, size_t *len);

/* The built-in font: 5×7 glyphs in 6×8 cells (digits, A–Z, lower-case x, space and
 * ( ) [ ] , . : - = / % # _ @ ?; other lower-case letters drawn upper-case, anything else as ?).
 * Width in pixels of text at scale s, and drawing it into rgb [h, w, 3] at (x, y) (clipped). */
int dfm_sheet_text_width(const char *text, int scale);
void dfm_sheet_draw_text(uint8_t *rgb, int h, int w, int x, int y, int scale, const char *text,
                         const uint8_t color[3]);

#endif
