/* linear.h — y = x W^T on the CPU with the weight W laid out once ("packed") for our own
 * micro-kernel: the GEMM of every linear layer whose weights are loaded once and used many times
 * (the text encoder now, the Wan transformer next). Twin: the CUDA side keeps W unpacked and runs
 * dfm_cuda_matmul (lib/tensor/linear.c).
 *
 * Why not OpenBLAS: for the shapes a text encoder has (a few hundred tokens x 4096 x 4096..10240)
 * OpenBLAS spends a sixth of its time re-packing the weights on every call (~70% of the FMA peak
 * on Zen 3 and Zen 4 cores); with the weights packed once our kernels run near the FMA units'
 * rate (scripts/bench_linear.c prints both), and with bf16 compute on an AVX512_BF16 CPU the
 * VDPBF16PS kernel doubles that, which no BLAS in Debian offers (its OpenBLAS 0.3.21 is built
 * without sbgemm). matmul.c runs the same kernels on unpacked operands (packing per call).
 *
 * Kernels, by dfm_cpu_simd_level() at the call (the packed layout does not depend on it):
 *   scalar        6 x 16 tile, portable C (products and sums rounded separately)
 *   avx2          6 x 16 tile of FMAs; BF16 panels widened in the kernel
 *   avx512        12 x 32 tile (two panels) of FMAs; BF16 panels widened in the kernel
 *   avx512_bf16   BF16 panels under bf16_compute: 12 x 32 tile of VDPBF16PS (activation pairs
 *                 rounded to bf16 and packed per call, k pairs of the weights interleaved);
 *                 otherwise as avx512
 *
 * Packed layout of W [n, k] (row-major out x in, as torch.nn.Linear stores it): ceil(n / 16)
 * panels of 16 output columns, zero past n. F32 panels: k rows of 16 values, row kk holding
 * W[16p + j, kk], j = 0..15. BF16 panels: ceil(k / 2) rows of 16 k-pairs, row t holding
 * W[16p + j, 2t], W[16p + j, 2t + 1] for j = 0..15 (32 values; the pair of the last row is zero
 * past k): one 64-byte row is a VDPBF16PS operand, and shifting or masking its 32-bit lanes gives
 * the f32 values of k = 2t or 2t + 1 for the FMA kernels.
 *
 * Numerics: every output is a sum of the k products x[r, kk] W[c, kk] (exact in f32 when both
 * are bf16 values), accumulated in f32 in blocks of DFM_CPU_LINEAR_KC: within a block in order
 * of k starting from zero, then the block's sum added to the output (blocks in order; accumulate
 * adds them to y: y + block1 + block2 + ..., not y + (block1 + ...)). The avx2 and avx512 kernels
 * fuse each product into its sum (one rounding per k): their results are bit-identical to each
 * other; the scalar kernel rounds products and sums separately. The VDPBF16PS kernel adds the
 * two products of each k pair to the running sum with its own rounding (Intel: odd k first, then
 * even, each rounded to nearest even) and treats denormal inputs and results as zero. Bound for
 * every kernel against the exact sum S of the same products: |y - S| <= (k + k / KC) 2^-24
 * sum |x W| (+ k 2^-126 for flushed denormals on the VDPBF16PS path); typically ~sqrt(k) 2^-24.
 * With bf16_compute the activations are rounded to bf16 first (ties to even; the weights are bf16
 * values when packed as BF16). Every kernel gives the same bits whatever the thread count.
 */
#ifndef DFM_KERNELS_CPU_LINEAR_H
#define DFM_KERNELS_CPU_LINEAR_H
#include <stddef.h>
#include <stdint.h>
#include "base/dtype.h"

#define DFM_CPU_LINEAR_NR 16  /* panel width (output features) */
#define DFM_CPU_LINEAR_KC 256 /* k per block (even) */
#define DFM_CPU_LINEAR_MAXSEG 8 /* weights sharing one pass over x */

/* Bytes of a packed [n, k] weight stored as dt (F32 or BF16); 0 for another dt. */
size_t dfm_cpu_linear_packed_size(int64_t n, int64_t k, dfm_dtype dt);

/* Pack w [n, k] of dtype wdt (F32, BF16, F16) into dst (dfm_cpu_linear_packed_size bytes,
 * 64-byte aligned for speed) as dt (F32, or BF16 rounded to nearest even). Uses the worker
 * threads. Returns 0 or DFM_E_UNSUPPORTED. */
int dfm_cpu_linear_pack(void *dst, dfm_dtype dt, const void *w, dfm_dtype wdt, int64_t n, int64_t k);
/* The same from a strided source: W[c, kk] is w[c * ldw + kk] (tw = 0; dfm_cpu_linear_pack is
 * ldw = k) or w[kk * ldw + c] (tw = 1: w holds W^T, as a [k, n] operand of a GEMM does). */
int dfm_cpu_linear_pack_strided(void *dst, dfm_dtype dt, const void *w, dfm_dtype wdt, int64_t n, int64_t k, int tw,
                                int64_t ldw);

/* One output of a linear: y[r, c] (+)= sum_kk x[r, kk] W[c, kk] (+ bias[c]) for r < m, c < n.
 * The bias is added to each output tile as its last k block is stored, after the sum: the same
 * bits as a separate pass y[r, c] += bias[c] after the GEMM, without that pass over y. */
typedef struct {
    const void *w; /* packed [n, k] */
    int64_t n;
    float *y;      /* row r at y + r * ldy */
    int64_t ldy;
    const float *bias; /* [n] F32, or NULL */
} dfm_cpu_linear_seg;

/* x [m, k] F32 row-major times every segment's packed weight (all of dtype wdt, all with the same
 * k): the segments share one pass over x (e.g. q, k and v of an attention layer). Uses the worker
 * threads (split over the weights' panels). At most DFM_CPU_LINEAR_MAXSEG segments. Returns 0,
 * DFM_E_NOMEM (scratch) or DFM_E_ARG (too many segments). */
int dfm_cpu_linear(const float *x, int64_t m, int64_t k, dfm_dtype wdt, const dfm_cpu_linear_seg *seg, int nseg,
                   int accumulate, int bf16_compute);
/* The same with x read through strides: x[r, kk] is x[r * ldx + kk] (tx = 0) or x[kk * ldx + r]
 * (tx = 1). Uses scratch slot 1 (dfm_cpu_scratch). */
int dfm_cpu_linear_strided(const float *x, int tx, int64_t ldx, int64_t m, int64_t k, dfm_dtype wdt,
                           const dfm_cpu_linear_seg *seg, int nseg, int accumulate, int bf16_compute);

#endif
