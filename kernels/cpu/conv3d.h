/* conv3d.h — 3-D convolution on the CPU, the VAE's main cost. Called by lib/tensor/ops.c after it
 * has checked shapes; semantics exactly those of dfm_op_conv3d (ops.h), raw pointers here.
 *
 * x: [cin, t, h, w] f32; wt: [cout, cin, kt, kh, kw] of dtype wdt (F32/BF16/F16); bias: [cout] of
 * dtype bdt or NULL; y: [cout, t', h', w'] f32 with t' = (t + pad[0] + pad[1] - kt) / stride[0] + 1
 * and likewise h' (pad[2], pad[3], stride[1]), w' (pad[4], pad[5], stride[2]).
 * bf16_compute: activations and weights are rounded to bf16 before the f32 GEMMs.
 * Returns 0, DFM_E_NOMEM, DFM_E_UNSUPPORTED (weight dtype). y must not overlap x.
 */
#ifndef DFM_KERNELS_CPU_CONV3D_H
#define DFM_KERNELS_CPU_CONV3D_H
#include <stdint.h>
#include "base/dtype.h"

int dfm_cpu_conv3d(const float *x, int64_t cin, int64_t t, int64_t h, int64_t w, const void *wt,
                   dfm_dtype wdt, int64_t cout, int kt, int kh, int kw, const void *bias,
                   dfm_dtype bdt, float *y, const int stride[3], const int pad[6], int bf16_compute);

/* Which algorithm a call with these parameters takes: "gemm" (1x1x1, stride 1, no padding),
 * "winograd" (3x3 spatial kernel, stride 1, spatial padding 1 on every side, cin and cout >= 16:
 * Winograd F(2x2, 3x3)), "taps" (spatial stride 1: one GEMM per kernel tap over a zero-padded
 * tile), "direct" (the same tile, cout < 8: register-blocked loops instead of GEMMs) or "im2col"
 * (anything else: blocks of output rows unfolded, one GEMM each). For tests and benchmarks. */
const char *dfm_cpu_conv3d_path(int64_t cin, int64_t cout, int kt, int kh, int kw, const int stride[3],
                                const int pad[6]);
/* Tile budget in bytes for the padded input tile / unfolded block (default 32 MiB; winograd's
 * transformed tiles get twice that); 0 restores the default. Tests shrink it to exercise tiling
 * on small shapes. Not thread-safe. */
void dfm_cpu_conv3d_set_tile_bytes(size_t bytes);
/* Force a path ("winograd", "taps", "direct", "im2col") where it applies (elsewhere the automatic
 * choice is made), or NULL for the automatic choice.
 * Tests and benchmarks; not thread-safe. */
void dfm_cpu_conv3d_force_path(const char *path);

#endif
