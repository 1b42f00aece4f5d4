/* linear.h — y = x W^T on the CPU with the weight W laid out once ("packed") for our own
 * micro-kernel: the GEMM of every linear layer whose weights are loaded once and used many times
 * (the text encoder now, the Wan transformer next). Twin: the CUDA side keeps W unpacked and runs
 * dfm_cuda_matmul (lib/tensor/linear.c).
 *
 * Why not OpenBLAS: for the shapes a text encoder has (a few hundred tokens x 4096 x 4096..10240)
 * OpenBLAS spends a sixth of its time re-packing the weights on every call and reaches ~110-140
 * GFLOP/s on 2 Zen 3 cores; with the weights packed once the same 6x16 AVX2 kernel runs at the
 * FMA units' rate (scripts/bench_umt5.py prints both). BF16 panels halve the weight memory and are
 * widened in the kernel (two unpacks per 16 weights), as fast as F32 panels here.
 *
 * Packed layout of W [n, k] (row-major out x in, as torch.nn.Linear stores it): ceil(n / 16)
 * panels, each k rows of 16 values: row kk of panel p holds W[16p + j, kk], j = 0..15, zero past
 * n. F32 panels store the 16 values in order. BF16 panels store them in the order the AVX2 unpack
 * wants: slot(j) = j for j < 4 or j >= 12, j + 4 for 4 <= j < 8, j - 4 for 8 <= j < 12 (so the
 * low/high 16-bit unpacks of one 32-byte row give columns 0-7 and 8-15).
 *
 * Numerics: every output is a sum of f32 products accumulated in f32 (fused multiply-adds in
 * order of k within blocks of DFM_CPU_LINEAR_KC, the blocks summed in order); with bf16_compute
 * the activations are rounded to bf16 first (the weights are bf16 values when packed as BF16).
 * accumulate adds into y: y + block1 + block2 + ... (not y + (block1 + ...)).
 */
#ifndef DFM_KERNELS_CPU_LINEAR_H
#define DFM_KERNELS_CPU_LINEAR_H
#include <stddef.h>
#include <stdint.h>
#include "base/dtype.h"

#define DFM_CPU_LINEAR_NR 16  /* panel width (output features) */
#define DFM_CPU_LINEAR_MR 6   /* rows (tokens) per micro-tile */
#define DFM_CPU_LINEAR_KC 256 /* k per block */
#define DFM_CPU_LINEAR_MAXSEG 8 /* weights sharing one pass over x */

/* Bytes of a packed [n, k] weight stored as dt (F32 or BF16); 0 for another dt. */
size_t dfm_cpu_linear_packed_size(int64_t n, int64_t k, dfm_dtype dt);

/* Pack w [n, k] of dtype wdt (F32, BF16, F16) into dst (dfm_cpu_linear_packed_size bytes,
 * 32-byte aligned) as dt (F32, or BF16 rounded to nearest even). Uses the worker threads.
 * Returns 0 or DFM_E_UNSUPPORTED / DFM_E_NOMEM. */
int dfm_cpu_linear_pack(void *dst, dfm_dtype dt, const void *w, dfm_dtype wdt, int64_t n, int64_t k);

/* One output of a linear: y[r, c] (+)= sum_kk x[r, kk] W[c, kk] for r < m, c < n. */
typedef struct {
    const void *w; /* packed [n, k] */
    int64_t n;
    float *y;      /* row r at y + r * ldy */
    int64_t ldy;
} dfm_cpu_linear_seg;

/* x [m, k] F32 row-major times every segment's packed weight (all of dtype wdt, all with the same
 * k): the segments share one pass over x (e.g. q, k and v of an attention layer). Uses the worker
 * threads (split over the weights' panels). At most DFM_CPU_LINEAR_MAXSEG segments. Returns 0,
 * DFM_E_NOMEM (scratch) or DFM_E_ARG (too many segments). */
int dfm_cpu_linear(const float *x, int64_t m, int64_t k, dfm_dtype wdt, const dfm_cpu_linear_seg *seg, int nseg,
                   int accumulate, int bf16_compute);

#endif
