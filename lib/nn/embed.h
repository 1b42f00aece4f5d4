/* embed.h — embeddings: the sinusoidal timestep embedding of diffusion models (host code: B
 * values), and the token embedding layer (a row gather from a table: tensor/ops.h
 * dfm_op_embedding, which UMT5 uses directly).
 * Not here: rotary position tables (kernels/cpu/rope.h dfm_cpu_wan_rope_table), learned
 * position embeddings (no model here has one).
 */
#ifndef DFM_NN_EMBED_H
#define DFM_NN_EMBED_H
#include <stdint.h>

/* out [B, dim] f32 for timesteps t[0..B): for k < half = dim / 2,
 *   freq_k = exp(-ln(max_period) * k / (half - shift))      f32 steps, as torch computes them
 *   out[b, k] = sin(t_b * freq_k), out[b, half + k] = cos(t_b * freq_k)
 * with the halves swapped when flip_sin_to_cos (cos first), and a zero column appended for an odd
 * dim. ref: diffusers embeddings.py get_timestep_embedding (scale 1) — Wan: flip 1, shift 0,
 * max_period 10000. */
void dfm_timestep_embedding(const float *t, int64_t B, int dim, int flip_sin_to_cos, float shift, float max_period,
                            float *out);

#endif
