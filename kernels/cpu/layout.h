/* layout.h — data movement on the CPU (twins of dfm_cuda_transpose2d / upsample_nearest2x /
 * concat): element size es in bytes (1, 2, 4 or 8), no arithmetic, exact copies. */
#ifndef DFM_KERNELS_CPU_LAYOUT_H
#define DFM_KERNELS_CPU_LAYOUT_H
#include <stddef.h>
#include <stdint.h>

/* x [rows, cols] -> y [cols, rows]; y must not overlap x. */
void dfm_cpu_transpose2d(const void *x, void *y, int64_t rows, int64_t cols, int es);
/* x [c, t, h, w] -> y [c, t, 2h, 2w], y[.., i, j] = x[.., i/2, j/2]. */
void dfm_cpu_upsample_nearest2x(const void *x, void *y, int64_t c, int64_t t, int64_t h, int64_t w,
                                int es);
/* count blocks of `bytes`: dst + i*dst_stride <- src + i*src_stride (strides in bytes). The
 * concat of a [outer, na] and b [outer, nb] is two calls; a slice of frames is one. */
void dfm_cpu_copy_blocks(void *dst, size_t dst_stride, const void *src, size_t src_stride,
                         size_t bytes, int64_t count);

#endif
