/* patch.h — video latents to patch rows and back on the CPU (twins in kernels/cuda/patch.cu):
 * pure permutations, no arithmetic. A latent x [B, C, F, H, W] cut into patches of pt x ph x pw
 * gives N = (F/pt)(H/ph)(W/pw) tokens per batch item, token n = (f * H' + i) * W' + j; row
 * b * N + n of the patch matrix holds the patch's C * pt * ph * pw values in one of two orders:
 *   channel-major (order 0): column c * P + (kt * ph + kh) * pw + kw — the flattening of a
 *     Conv3d weight [D, C, pt, ph, pw], so the patch embedding is a plain GEMM;
 *   position-major (order 1): column ((kt * ph + kh) * pw + kw) * C + c — how Wan's proj_out
 *     channels unpatchify (wan.md 1.2 step 6).
 * patchify: x -> rows; unpatchify: rows -> x. Each is the other's backward (same order).
 * ref: diffusers transformer_wan.py (patch_embedding Conv3d; the output's reshape/permute) */
#ifndef DFM_KERNELS_CPU_PATCH_H
#define DFM_KERNELS_CPU_PATCH_H
#include <stdint.h>

/* dims: {B, C, F, H, W} with F, H, W multiples of the patch {pt, ph, pw}. */
void dfm_cpu_patchify(const float *x, float *rows, const int64_t dims[5], const int64_t patch[3], int order);
void dfm_cpu_unpatchify(const float *rows, float *x, const int64_t dims[5], const int64_t patch[3], int order);

#endif
