/* rng.h — counter-based random numbers: Philox4x32-10 (Salmon et al. 2011), the generator cuRAND
 * and PyTorch's CUDA backend use, so the same (seed, offset) gives the same stream on CPU and GPU.
 * Normals by Box-Muller on pairs of uniforms in (0, 1]. Not torch.randn-compatible on CPU (torch
 * uses mt19937 there); tests that need torch's noise record it as a fixture instead.
 */
#ifndef DFM_BASE_RNG_H
#define DFM_BASE_RNG_H
#include <stddef.h>
#include <stdint.h>

/* One Philox4x32-10 block: counter (4 words) and key (2 words) -> 4 random words. */
void dfm_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);
/* n standard normals for (seed, stream): element i depends only on (seed, stream, i). */
void dfm_randn(uint64_t seed, uint64_t stream, float *out, size_t n);

#endif
