/* fuzz_image.c — libFuzzer harness for still-image decode from memory (media/image.h): container
 * sniffing, the EXIF orientation reader, and dfm_image_decode (JPEG through TurboJPEG, PNG, WebP
 * and BMP through libavcodec), then every EXIF orientation applied to a small result.
 * Bounds: images over 1 megapixel are refused by the decoder (max_pixels), as dfm-decode does
 * with its limit. */
#include "fuzz.h"
#include "media/image.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)dfm_image_type_name(dfm_image_sniff(data, size));
    int o = dfm_jpeg_exif_orientation(data, size);
    if (o < 1 || o > 8) abort();
    dfm_image img = {0};
    dfm_image_meta meta;
    if (fz_note("decode", dfm_image_decode(data, size, (uint64_t)1 << 20, &img, &meta)) == 0) {
        if (img.w < 1 || img.h < 1 || (uint64_t)img.w * (uint64_t)img.h > ((uint64_t)1 << 20)) abort();
        unsigned sum = 0;
        for (size_t i = 0; i < (size_t)img.w * img.h * 3; i += 61) sum += img.rgb[i];
        if ((size_t)img.w * img.h <= 4096) {
            for (int k = 1; k <= 8; k++) {
                uint8_t *rot = NULL;
                int w = 0, h = 0;
                if (dfm_rgb_orient(img.rgb, img.w, img.h, k, &rot, &w, &h) == 0) {
                    if ((int64_t)w * h != (int64_t)img.w * img.h) abort();
                    free(rot);
                }
            }
        }
        (void)sum;
        dfm_image_free(&img);
    }
    return 0;
}
