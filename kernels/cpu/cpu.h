/* cpu.h — what every CPU kernel shares: the worker-thread count, a parallel for over index
 * ranges, per-thread scratch buffers reused across calls, the SIMD level (run-time CPU feature
 * detection and a cap that tests lower to force each path), and float helpers
 * (bulk conversion to f32, rounding to bf16 precision).
 *
 * Threads: dfm_cpu_set_threads(n) sets both our own workers (parallel loops) and OpenBLAS's
 * (GEMMs). The two never run at the same time: a kernel alternates between GEMM calls and
 * parallel loops. Not here: a persistent pool — each parallel loop starts its threads, which
 * costs ~20 us and is only done for loops large enough to pay for it (min_chunk).
 */
#ifndef DFM_KERNELS_CPU_CPU_H
#define DFM_KERNELS_CPU_CPU_H
#include <stddef.h>
#include <stdint.h>
#include "base/dtype.h"

/* n <= 0: all online cores. Also sets OpenBLAS's thread count. */
void dfm_cpu_set_threads(int n);
int dfm_cpu_threads(void);

/* Calls fn(ctx, i0, i1) on disjoint ranges covering [0, n), at most dfm_cpu_threads() at once,
 * no range shorter than min_chunk (except when n itself is). The calling thread runs one range;
 * when a thread cannot be started its range runs on the caller. Returns when all are done. A
 * loop started inside a range runs inline on that thread (one range: [0, n)); loops started at
 * once from several application threads are safe (the second starts its own threads). */
typedef void (*dfm_cpu_range_fn)(void *ctx, int64_t i0, int64_t i1);
void dfm_cpu_parallel(int64_t n, int64_t min_chunk, dfm_cpu_range_fn fn, void *ctx);

/* For kernels whose own threads each call OpenBLAS: set its thread count to 1 and return the
 * previous count, which dfm_cpu_blas_restore sets back. */
int dfm_cpu_blas_single(void);
void dfm_cpu_blas_restore(int n);

/* Scratch: slot `slot` (0..DFM_CPU_SCRATCH_SLOTS-1) of the calling thread, grown to at least
 * `bytes` (64-byte aligned; contents not kept when it grows). NULL (with dfm_fail(DFM_E_NOMEM))
 * when it cannot grow. Buffers stay allocated for the next call until dfm_cpu_scratch_release()
 * or the thread's exit. A kernel owns the slots while it runs; kernels do not nest. */
#define DFM_CPU_SCRATCH_SLOTS 4
void *dfm_cpu_scratch(int slot, size_t bytes);
void dfm_cpu_scratch_release(void);
/* The calling thread's and every pool worker's (dfm_cpu_parallel). */
void dfm_cpu_scratch_release_all(void);
/* Bytes currently held by the calling thread's scratch. */
size_t dfm_cpu_scratch_bytes(void);

/* Memory for large long-lived buffers (packed weights): 64-byte aligned; from 4 MiB up aligned
 * to 2 MiB and marked for transparent huge pages (fewer page faults when it is filled, fewer TLB
 * misses when a kernel streams through it). NULL (with dfm_fail) when out of memory. free() it. */
void *dfm_cpu_alloc_large(size_t bytes);

/* SIMD levels, each including the ones below it. A kernel runs the highest path it has at or
 * below dfm_cpu_simd_level(); a level the CPU (or the OS: ZMM state saved on context switches,
 * checked through xgetbv) lacks is never used. OpenBLAS picks its own kernels for the machine
 * (OPENBLAS_CORETYPE overrides it); this level does not reach it. */
enum {
    DFM_CPU_SCALAR = 0,      /* portable C */
    DFM_CPU_AVX2 = 1,        /* AVX2 + FMA */
    DFM_CPU_AVX512 = 2,      /* AVX-512 F, BW, DQ, VL */
    DFM_CPU_AVX512_BF16 = 3, /* + AVX512_BF16 (VDPBF16PS) */
    DFM_CPU_LEVELS = 4
};

/* The highest level this CPU and OS support (detected once). */
int dfm_cpu_level_max(void);
/* The level kernels use now: min(the cap, dfm_cpu_level_max()). The cap starts at the highest
 * level, or at the one named by the environment variable DFM_SIMD (scalar, avx2, avx512,
 * avx512_bf16) when it is set (read once, at the first query; an unknown name is ignored). */
int dfm_cpu_simd_level(void);
/* Caps the level (tests force each path; out-of-range values are clamped); returns the level
 * now in use, which is lower than asked when the machine lacks it. Not thread-safe against
 * running kernels: set it between calls. */
int dfm_cpu_set_simd_level(int level);
/* enable: the highest level; 0: scalar (as dfm_cpu_set_simd_level(DFM_CPU_SCALAR)). */
void dfm_cpu_set_simd(int enable);
/* dfm_cpu_simd_level() >= DFM_CPU_AVX2 / DFM_CPU_AVX512 / DFM_CPU_AVX512_BF16 */
int dfm_cpu_use_avx2(void);
int dfm_cpu_use_avx512(void);
int dfm_cpu_use_avx512_bf16(void);
/* "scalar", "avx2", "avx512" or "avx512_bf16": the level in use / a given level ("?" outside). */
const char *dfm_cpu_impl(void);
const char *dfm_cpu_level_name(int level);

/* n floats of type st (F32, BF16, F16) into f32 dst; with round_bf16 the results are rounded to
 * bf16 precision (kept as f32). Returns 0 or DFM_E_UNSUPPORTED for another dtype. */
int dfm_cpu_to_f32(float *dst, const void *src, dfm_dtype st, size_t n, int round_bf16);
/* Round n floats to the nearest bf16 value (ties to even; NaN stays NaN), dst may be src. */
void dfm_cpu_round_bf16(float *dst, const float *src, size_t n);
static inline float dfm_cpu_round_bf16_1(float f)
{
    union { float f; uint32_t u; } v = {f};
    if ((v.u & 0x7fffffffu) > 0x7f800000u) v.u |= 0x00400000u;
    else v.u += 0x7fffu + ((v.u >> 16) & 1u);
    v.u &= 0xffff0000u;
    return v.f;
}

#endif
