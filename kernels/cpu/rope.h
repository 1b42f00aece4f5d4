/* rope.h — rotary position embedding with interleaved pairs on the CPU, forward and backward
 * (twins in kernels/cuda rope.cu), and the table of Wan's 3-axis RoPE (host code, CPU only: the
 * tables are uploaded).
 * Not here: the half-split ("rotate_half") pairing of other models, bf16 outputs. */
#ifndef DFM_KERNELS_CPU_ROPE_H
#define DFM_KERNELS_CPU_ROPE_H
#include <stdint.h>

/* x, y: [b, s, h, d] f32 (token-major rows of h * d, as a linear projection writes them; y may
 * be x); cos, sin: [s, d / 2] f32, one value per pair, the same for every batch and head. For
 * each pair k (elements 2k, 2k+1) of each head of token t, with c = cos[t, k], sn = sin[t, k]:
 *   y[2k]   = x[2k] * c - x[2k+1] * sn
 *   y[2k+1] = x[2k] * sn + x[2k+1] * c
 * each product and the sum rounded to f32 separately (eager PyTorch runs separate kernels).
 * d must be even: DFM_E_ARG otherwise. ref: diffusers transformer_wan.py apply_rotary_emb
 * (WanAttnProcessor) */
int dfm_cpu_rope(const float *x, int64_t b, int64_t s, int64_t h, int64_t d, const float *cos,
                 const float *sin, float *y);

/* The backward (the inverse rotation, dx may be dy), rounded as torch's autograd does it:
 *   dx[2k]   = dy[2k] * c + dy[2k+1] * sn
 *   dx[2k+1] = dy[2k+1] * c - dy[2k] * sn
 * Same shapes and contract as dfm_cpu_rope. */
int dfm_cpu_rope_backward(const float *dy, int64_t b, int64_t s, int64_t h, int64_t d, const float *cos,
                          const float *sin, float *dx);

/* The tables of Wan's RoPE for a grid of f x hh x w patches (tokens in the order
 * t = (i_f * hh + i_h) * w + i_w): cos, sin: [f * hh * w, head_dim / 2] f32. The head's pairs
 * are split in three axes: hd = 2 * (head_dim / 6) dims each for height and width, head_dim -
 * 2 * hd for time (22, 21, 21 pairs for head_dim 128), in the order [time | height | width];
 * pair j of an axis of dims da at position p has the angle p * (1 / theta^((2j) / da)), computed
 * in double (the exponent (2j)/da, the power, its inverse and the product each rounded to double),
 * whose cos and sin (double) are rounded to f32. torch computes the same in float64 with Sleef
 * (within 1 ulp of the same doubles), so the f32 tables agree but for a double within an ulp of
 * a point halfway between two floats.
 * head_dim must be even and at least 6 (a pair per axis at least); f, hh, w from 1 to max_pos
 * (diffusers precomputes positions 0 .. rope_max_seq_len - 1, max_pos 1024 for Wan): DFM_E_ARG
 * otherwise; DFM_E_NOMEM. ref: diffusers transformer_wan.py WanRotaryPosEmbed, embeddings.py
 * get_1d_rotary_pos_embed (use_real, repeat_interleave_real, freqs_dtype float64) */
int dfm_cpu_wan_rope_table(int64_t head_dim, double theta, int64_t f, int64_t hh, int64_t w,
                           int64_t max_pos, float *cos, float *sin);

#endif
