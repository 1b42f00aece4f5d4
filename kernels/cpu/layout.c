/* layout.c — transposes, nearest upsampling and block copies (layout.h). Transposes go through
 * 32x32 tiles so both sides stay in cache; everything is split across threads when large. */
#include "cpu/layout.h"
#include "cpu/cpu.h"

#include <string.h>

#define TILE 32

typedef struct {
    const char *x;
    char *y;
    int64_t rows, cols, c, t, h, w;
    int es;
    size_t ds, ss, bytes;
} lay_ctx;

#define TRANSPOSE_TILE(T)                                                               \
    for (int64_t i = i0; i < i1; i++)                                                   \
        for (int64_t j = j0; j < j1; j++) ((T *)y)[j * rows + i] = ((const T *)x)[i * cols + j];

static void transpose_range(void *arg, int64_t b0, int64_t b1)
{
    const lay_ctx *c = arg;
    const void *x = c->x;
    void *y = c->y;
    int64_t rows = c->rows, cols = c->cols;
    for (int64_t bi = b0; bi < b1; bi++) { /* row tiles */
        int64_t i0 = bi * TILE, i1 = i0 + TILE < rows ? i0 + TILE : rows;
        for (int64_t j0 = 0; j0 < cols; j0 += TILE) {
            int64_t j1 = j0 + TILE < cols ? j0 + TILE : cols;
            switch (c->es) {
            case 1: TRANSPOSE_TILE(uint8_t) break;
            case 2: TRANSPOSE_TILE(uint16_t) break;
            case 4: TRANSPOSE_TILE(uint32_t) break;
            default: TRANSPOSE_TILE(uint64_t) break;
            }
        }
    }
}

void dfm_cpu_transpose2d(const void *x, void *y, int64_t rows, int64_t cols, int es)
{
    lay_ctx c = {.x = x, .y = y, .rows = rows, .cols = cols, .es = es};
    if (cols <= 0) return;
    dfm_cpu_parallel((rows + TILE - 1) / TILE, 1 + 65536 / (TILE * cols), transpose_range, &c);
}

#define UPSAMPLE_ROW(T)                                                                 \
    for (int64_t j = 0; j < w; j++) ((T *)d)[2 * j] = ((T *)d)[2 * j + 1] = ((const T *)s)[j];

/* Input rows r of [c*t*h, w] -> output rows 2r, 2r+1. */
static void upsample_range(void *arg, int64_t r0, int64_t r1)
{
    const lay_ctx *c = arg;
    int64_t w = c->w;
    size_t in_row = (size_t)w * c->es, out_row = 2 * in_row;
    for (int64_t r = r0; r < r1; r++) {
        const char *s = c->x + r * in_row;
        char *d = c->y + 2 * r * out_row;
        switch (c->es) {
        case 1: UPSAMPLE_ROW(uint8_t) break;
        case 2: UPSAMPLE_ROW(uint16_t) break;
        case 4: UPSAMPLE_ROW(uint32_t) break;
        default: UPSAMPLE_ROW(uint64_t) break;
        }
        memcpy(d + out_row, d, out_row);
    }
}

void dfm_cpu_upsample_nearest2x(const void *x, void *y, int64_t c, int64_t t, int64_t h, int64_t w,
                                int es)
{
    lay_ctx ctx = {.x = x, .y = y, .w = w, .es = es};
    if (w <= 0) return;
    dfm_cpu_parallel(c * t * h, 1 + 16384 / w, upsample_range, &ctx);
}

static void blocks_range(void *arg, int64_t i0, int64_t i1)
{
    const lay_ctx *c = arg;
    for (int64_t i = i0; i < i1; i++) memcpy(c->y + i * c->ds, c->x + i * c->ss, c->bytes);
}

void dfm_cpu_copy_blocks(void *dst, size_t dst_stride, const void *src, size_t src_stride,
                         size_t bytes, int64_t count)
{
    if (!bytes || count <= 0) return;
    lay_ctx c = {.x = src, .y = dst, .ds = dst_stride, .ss = src_stride, .bytes = bytes};
    dfm_cpu_parallel(count, 1 + (int64_t)((1 << 18) / bytes), blocks_range, &c);
}
