/* modulate.h — the adaLN modulation and the gated residual of a Wan block on the CPU, forward and
 * backward (twins in kernels/cuda modulate.cu). Token rows x: [b, s, d] f32; the per-batch
 * vectors (scale, shift, gate) are rows of d f32, the one of batch i at v + i * ld (ld >= d:
 * ld = d for [b, d] vectors, ld = 6 * d to read Wan's [b, 6, d] modulation in place); their
 * gradients use the same layout. Per-batch sums over s are in reduce.h's chunked order: the same
 * bits for any thread count, and on the CUDA twin.
 * Not here: the layer norm before the modulation (layer_norm.h), the sum of scale_shift_table and
 * the time projection (a plain add). */
#ifndef DFM_KERNELS_CPU_MODULATE_H
#define DFM_KERNELS_CPU_MODULATE_H
#include <stdint.h>

/* y = x * (1 + scale) + shift in torch's order: t = 1 + scale (rounded), then x * t (rounded),
 * then + shift (rounded). y may be x.
 * ref: diffusers transformer_wan.py WanTransformerBlock.forward (norm_hidden_states * (1 +
 * scale_msa) + shift_msa), the output head likewise */
void dfm_cpu_modulate(const float *x, int64_t b, int64_t s, int64_t d, const float *scale,
                      const float *shift, int64_t ld, float *y);

/* The backward at input x: dx = dy * (1 + scale) (when dx; may alias dy), dscale[i] += sum_s dy * x
 * (f32 products), dshift[i] += sum_s dy (each when not NULL). Returns 0 or DFM_E_NOMEM. */
int dfm_cpu_modulate_backward(const float *dy, const float *x, int64_t b, int64_t s, int64_t d,
                              const float *scale, int64_t ld, float *dx, float *dscale, float *dshift);

/* y = x + a * gate: the product rounded, then the sum. x, a, y: [b, s, d] (y may be x or a).
 * ref: diffusers WanTransformerBlock.forward (hidden_states.float() + attn_output * gate_msa) */
void dfm_cpu_gate_residual(const float *x, const float *a, int64_t b, int64_t s, int64_t d,
                           const float *gate, int64_t ld, float *y);

/* The backward: dx = dy (nothing to compute: the caller reuses dy), da = dy * gate (when da; may
 * alias dy or a), dgate[i] += sum_s dy * a (f32 products; when dgate). Returns 0 or DFM_E_NOMEM. */
int dfm_cpu_gate_residual_backward(const float *dy, const float *a, int64_t b, int64_t s, int64_t d,
                                   const float *gate, int64_t ld, float *da, float *dgate);

#endif
