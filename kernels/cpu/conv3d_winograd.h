/* conv3d_winograd.h — the Winograd F(2x2, 3x3) path of dfm_cpu_conv3d (conv3d.h), for
 * convolutions with a 3x3 spatial kernel, spatial stride 1, spatial padding 1 on every side and
 * time stride 1 (any kt, any time padding). Called by conv3d.c's dispatch only; not an entry
 * point of its own (dfm_cpu_conv3d_path says when it is taken).
 */
#ifndef DFM_KERNELS_CPU_CONV3D_WINOGRAD_H
#define DFM_KERNELS_CPU_CONV3D_WINOGRAD_H
#include <stddef.h>
#include <stdint.h>

/* x: [cin, t, h, w] f32; wt: [cout, cin, kt, 3, 3] f32 (already rounded to bf16 when round is
 * set); bias: [cout] f32 or NULL; y: [cout, to, h, w] f32 with output frame o reading input
 * frames o + dt - pf (dt < kt; frames outside [0, t) are zeros). round: round the activations to
 * bf16 before they are transformed. budget: bytes for the transformed input and the GEMM
 * results of one block of tiles (the weights' transform comes on top of it; each worker thread
 * holds one block). The output bits depend on the shapes and budget only, not on the threads.
 * Uses scratch slots 0 (transformed weights), 1 (transformed input) and 2 (GEMM results).
 * Returns 0 or DFM_E_NOMEM. */
int dfm_cpu_conv3d_winograd(const float *x, int64_t cin, int64_t t, int64_t h, int64_t w, const float *wt,
                            int64_t cout, int kt, int pf, int64_t to, const float *bias, float *y, int round,
                            size_t budget);

#endif
