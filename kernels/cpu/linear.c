/* linear.c — packed-weight GEMM for linear layers (linear.h).
 *
 * Loop nest (BLIS's, with the weight panels packed ahead of time):
 *   for each block of MB rows of x:      pack them into MR-row panels (threads split the panels),
 *                                        laid out [k block][panel][KC][MR] so that the panels
 *                                        visited one after another are contiguous
 *     for each unit of weight panels (one 16-column panel, or two for the AVX-512 kernels;
 *     threads take runs of units from a shared counter, so a slow core does less, not holds up
 *     the rest)
 *       for each k block of KC:                       the units' KC slice stays in L1/L2 while
 *         for each MR-row panel of the block:         MR x KC of x streams from L2
 *           micro-kernel: C[MR x 16 or 32] (+)= A[MR x KC] B[KC x 16 or 32]
 * The tiles of one output unit (all rows of the block) stay in cache across the k blocks; the
 * weights stream from memory once per row block, in order, the next KC slice prefetched into L2
 * while the current one runs.
 * Micro-kernels: scalar and AVX2 6 x 16 (12 ymm accumulators), AVX-512 12 x 32 (24 zmm), and the
 * VDPBF16PS 12 x 32 kernel on k pairs (activations packed as bf16 pairs; BF16 panels only, under
 * bf16 compute). Measured on one Zen 4 core, a 1920 x 1536 x 1536 GEMM with x packed per call:
 * the AVX2 and AVX-512 FMA kernels ~90-95% of the FMA peak (Zen 4 splits a zmm FMA into two ymm
 * halves, so AVX-512 gains little there; it does on cores with full-width units), the VDPBF16PS
 * kernel ~87% of its peak, which is twice the FMA's; scripts/bench_linear.c prints all per level.
 * Rows of x for the VDPBF16PS kernel are rounded 32 at a time by VCVTNE2PS2BF16 and transposed
 * into the panel 4 x 4 at a time (apack_rows_dot): the same bits as dfm_cpu_round_bf16.
 * A bias (dfm_cpu_linear_seg.bias) is added as each output tile's last k block is stored.
 * Not here: the CUDA twin (lib/tensor/ops.c keeps W unpacked there).
 */
#include "cpu/linear.h"
#include "base/error.h"
#include "cpu/cpu.h"

#include <stdatomic.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define HAVE_X86 1
#endif

#define NR DFM_CPU_LINEAR_NR
#define KC DFM_CPU_LINEAR_KC
#define A_BLOCK_BYTES ((int64_t)8 << 20) /* packed rows of x per block: stays in L3 */
#define MB_MAX 384
#define MB_MIN 48
#define MR_MAX 12

/* kernels, by SIMD level: rows per tile, panels per unit */
enum { KER_SCALAR, KER_AVX2, KER_AVX512, KER_DOT };
static const int ker_mr[] = {6, 6, 12, 12};
static const int ker_np[] = {1, 1, 2, 2};

static float bf16_value(uint16_t h)
{
    union { uint32_t u; float f; } v = {(uint32_t)h << 16};
    return v.f;
}

/* rows of a packed panel: k (F32) or k rounded up to even (BF16 pairs) */
static int64_t panel_rows(int64_t k, dfm_dtype dt) { return dt == DFM_F32 ? k : (k + 1) & ~(int64_t)1; }

size_t dfm_cpu_linear_packed_size(int64_t n, int64_t k, dfm_dtype dt)
{
    if ((dt != DFM_F32 && dt != DFM_BF16) || n < 0 || k < 0) return 0;
    size_t panels = (size_t)((n + NR - 1) / NR);
    return panels * (size_t)panel_rows(k, dt) * NR * (dt == DFM_F32 ? 4 : 2);
}

/* ---- packing the weights ------------------------------------------------------------------- */

typedef struct {
    void *dst;
    dfm_dtype dt, wdt;
    const void *w;
    int64_t n, k, ldw;
    int tw;
} pack_ctx;

/* n values of type dt from src (every stride-th element) into f32 dst (every dstride-th) */
static void load_f32(float *dst, int64_t dstride, const void *src, int64_t stride, dfm_dtype dt, int64_t n)
{
    if (dt == DFM_F32)
        for (int64_t i = 0; i < n; i++) dst[i * dstride] = ((const float *)src)[i * stride];
    else if (dt == DFM_BF16)
        for (int64_t i = 0; i < n; i++) dst[i * dstride] = bf16_value(((const uint16_t *)src)[i * stride]);
    else
        for (int64_t i = 0; i < n; i++) dst[i * dstride] = dfm_f16_to_f32(((const uint16_t *)src)[i * stride]);
}

/* lo and hi, both bf16 values (dfm_cpu_round_bf16), as one 32-bit pair: lo in the low half */
static inline uint32_t pair_bits(float lo, float hi)
{
    union { float f; uint32_t u; } l = {lo}, h = {hi};
    return (h.u & 0xffff0000u) | (l.u >> 16);
}

/* per panel, k in chunks of PACK_KB: the 16 rows' chunk converted into an L1-resident tile, then
 * written out transposed (F32) or rounded and paired (BF16). A transposed source (tw) is read a
 * row of up to TW_PANELS panels at a time instead, so that the reads run along its rows. */
#define PACK_KB 128
#define TW_PANELS 16

static void pack_tw(const pack_ctx *c, int64_t p0, int64_t p1)
{
    int64_t k = c->k, kp = panel_rows(k, c->dt);
    size_t es = dfm_dtype_size(c->wdt);
    float row[2][TW_PANELS * NR];
    for (int64_t q0 = p0; q0 < p1; q0 += TW_PANELS) {
        int64_t q1 = p1 - q0 < TW_PANELS ? p1 : q0 + TW_PANELS;
        int64_t cols = (c->n < q1 * NR ? c->n : q1 * NR) - q0 * NR, width = (q1 - q0) * NR;
        const char *src = (const char *)c->w + (size_t)q0 * NR * es;
        memset(row, 0, sizeof row);
        if (c->dt == DFM_F32) {
            for (int64_t kk = 0; kk < k; kk++) {
                load_f32(row[0], 1, src + (size_t)kk * c->ldw * es, 1, c->wdt, cols);
                for (int64_t q = q0; q < q1; q++)
                    memcpy((float *)c->dst + ((size_t)q * k + kk) * NR, row[0] + (q - q0) * NR, NR * sizeof(float));
            }
            continue;
        }
        for (int64_t t = 0; t < kp / 2; t++) {
            for (int e = 0; e < 2; e++)
                if (2 * t + e < k) {
                    load_f32(row[e], 1, src + (size_t)(2 * t + e) * c->ldw * es, 1, c->wdt, cols);
                    dfm_cpu_round_bf16(row[e], row[e], (size_t)width);
                } else {
                    memset(row[e], 0, sizeof row[e]);
                }
            for (int64_t q = q0; q < q1; q++) {
                uint32_t *d = (uint32_t *)c->dst + ((size_t)q * kp / 2 + (size_t)t) * NR;
                const float *lo = row[0] + (q - q0) * NR, *hi = row[1] + (q - q0) * NR;
                for (int j = 0; j < NR; j++) d[j] = pair_bits(lo[j], hi[j]);
            }
        }
    }
}

/* BF16 weights into BF16 panels: no rounding to do (a bf16 value rounds to itself), so the pairs
 * are copied as they are — the same bits as the general path, several times faster. */
static void pack_bf16_bf16(const pack_ctx *c, int64_t p0, int64_t p1)
{
    int64_t k = c->k, kp = panel_rows(k, DFM_BF16), half = k / 2;
    const uint16_t *w = c->w;
    for (int64_t p = p0; p < p1; p++) {
        int64_t cols = c->n - p * NR < NR ? c->n - p * NR : NR;
        uint32_t *d = (uint32_t *)c->dst + (size_t)p * kp / 2 * NR;
        if (c->tw) { /* column j of the panel: element (kk, p*NR + j) at w[kk * ldw + p*NR + j] */
            for (int64_t t = 0; t < kp / 2; t++) {
                const uint16_t *r0 = w + (size_t)(2 * t) * c->ldw + p * NR;
                const uint16_t *r1 = 2 * t + 1 < k ? r0 + c->ldw : NULL;
                uint32_t *dt = d + t * NR;
                if (r1 && cols == NR)
                    for (int j = 0; j < NR; j++) dt[j] = (uint32_t)r0[j] | (uint32_t)r1[j] << 16;
                else
                    for (int j = 0; j < NR; j++)
                        dt[j] = j < cols ? (uint32_t)r0[j] | (r1 ? (uint32_t)r1[j] << 16 : 0u) : 0u;
            }
            continue;
        }
        /* row j of the panel is w's row p*NR + j: its pairs (2t, 2t+1) are adjacent, one 32-bit word */
        for (int j = 0; j < NR; j++) {
            if (j >= cols) {
                for (int64_t t = 0; t < kp / 2; t++) d[t * NR + j] = 0;
                continue;
            }
            const uint16_t *row = w + (size_t)(p * NR + j) * c->ldw;
            for (int64_t t = 0; t < half; t++) {
                uint32_t v;
                memcpy(&v, row + 2 * t, sizeof v);
                d[t * NR + j] = v;
            }
            if (k & 1) d[half * NR + j] = row[k - 1];
        }
    }
}

static void pack_range(void *arg, int64_t p0, int64_t p1)
{
    pack_ctx *c = arg;
    if (c->dt == DFM_BF16 && c->wdt == DFM_BF16) {
        pack_bf16_bf16(c, p0, p1);
        return;
    }
    if (c->tw) {
        pack_tw(c, p0, p1);
        return;
    }
    int64_t k = c->k, kp = panel_rows(k, c->dt);
    size_t es = dfm_dtype_size(c->wdt);
    float tile[NR][PACK_KB];
    for (int64_t p = p0; p < p1; p++) {
        int64_t cols = c->n - p * NR < NR ? c->n - p * NR : NR;
        for (int64_t k0 = 0; k0 < k; k0 += PACK_KB) {
            int64_t kb = k - k0 < PACK_KB ? k - k0 : PACK_KB;
            for (int j = 0; j < cols; j++)
                load_f32(tile[j], 1, (const char *)c->w + ((size_t)(p * NR + j) * c->ldw + k0) * es, 1, c->wdt, kb);
            for (int64_t j = cols; j < NR; j++) memset(tile[j], 0, sizeof tile[j]);
            if (c->dt == DFM_F32) {
                float *d = (float *)c->dst + ((size_t)p * k + k0) * NR;
                for (int64_t kk = 0; kk < kb; kk++)
                    for (int j = 0; j < NR; j++) d[kk * NR + j] = tile[j][kk];
                continue;
            }
            /* k0 is even: pair rows start at k0 / 2; an odd end pairs with zero */
            for (int j = 0; j < NR; j++) {
                if (kb & 1) tile[j][kb] = 0.0f;
                dfm_cpu_round_bf16(tile[j], tile[j], (size_t)kb);
            }
            uint32_t *d = (uint32_t *)c->dst + ((size_t)p * kp + k0) / 2 * NR;
            for (int64_t t = 0; t < (kb + 1) / 2; t++)
                for (int j = 0; j < NR; j++) d[t * NR + j] = pair_bits(tile[j][2 * t], tile[j][2 * t + 1]);
        }
    }
}

int dfm_cpu_linear_pack_strided(void *dst, dfm_dtype dt, const void *w, dfm_dtype wdt, int64_t n, int64_t k, int tw,
                                int64_t ldw)
{
    if (dt != DFM_F32 && dt != DFM_BF16)
        return dfm_fail(DFM_E_UNSUPPORTED, "linear: cannot pack weights as %s", dfm_dtype_name(dt));
    if (wdt != DFM_F32 && wdt != DFM_BF16 && wdt != DFM_F16)
        return dfm_fail(DFM_E_UNSUPPORTED, "linear: cannot use %s weights", dfm_dtype_name(wdt));
    pack_ctx c = {dst, dt, wdt, w, n, k, ldw, tw != 0};
    dfm_cpu_parallel((n + NR - 1) / NR, 1 + 4096 / (k ? k : 1), pack_range, &c);
    return 0;
}

int dfm_cpu_linear_pack(void *dst, dfm_dtype dt, const void *w, dfm_dtype wdt, int64_t n, int64_t k)
{
    return dfm_cpu_linear_pack_strided(dst, dt, w, wdt, n, k, 0, k);
}

/* ---- micro-kernels ------------------------------------------------------------------------- */
/* Each: c[mr x 16 * np] (row stride ldc) = (add ? c : 0) + a . b over kc values of k, b0 and b1
 * the two panels' rows at this k block (b1 unused when np = 1). a: [kc][mr] f32, or for the
 * VDPBF16PS kernel [ceil(kc / 2)][mr] bf16 pairs. */

/* one panel, 6 rows: the portable reference */
static void ukr_scalar(int64_t kc, const float *a, const void *b, dfm_dtype bdt, float *c, int64_t ldc, int add)
{
    float acc[6][NR];
    memset(acc, 0, sizeof acc);
    for (int64_t kk = 0; kk < kc; kk++) {
        float bv[NR];
        if (bdt == DFM_F32)
            memcpy(bv, (const float *)b + kk * NR, sizeof bv);
        else
            for (int j = 0; j < NR; j++) bv[j] = bf16_value(((const uint16_t *)b)[((kk >> 1) * NR + j) * 2 + (kk & 1)]);
        for (int r = 0; r < 6; r++) {
            float av = a[kk * 6 + r];
            for (int j = 0; j < NR; j++) acc[r][j] += av * bv[j];
        }
    }
    for (int r = 0; r < 6; r++)
        for (int j = 0; j < NR; j++) c[r * ldc + j] = add ? c[r * ldc + j] + acc[r][j] : acc[r][j];
}

#ifdef HAVE_X86
#define T_AVX2 __attribute__((target("avx2,fma")))
#define T_AVX512 __attribute__((target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl")))
#define T_DOT __attribute__((target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")))

/* one k step of the 6 x 16 AVX2 tile: b0, b1 the 16 weights, a the 6 activations */
#define STEP6(a)                                                                                            \
    x = _mm256_broadcast_ss((a) + 0), c00 = _mm256_fmadd_ps(x, b0, c00), c01 = _mm256_fmadd_ps(x, b1, c01); \
    x = _mm256_broadcast_ss((a) + 1), c10 = _mm256_fmadd_ps(x, b0, c10), c11 = _mm256_fmadd_ps(x, b1, c11); \
    x = _mm256_broadcast_ss((a) + 2), c20 = _mm256_fmadd_ps(x, b0, c20), c21 = _mm256_fmadd_ps(x, b1, c21); \
    x = _mm256_broadcast_ss((a) + 3), c30 = _mm256_fmadd_ps(x, b0, c30), c31 = _mm256_fmadd_ps(x, b1, c31); \
    x = _mm256_broadcast_ss((a) + 4), c40 = _mm256_fmadd_ps(x, b0, c40), c41 = _mm256_fmadd_ps(x, b1, c41); \
    x = _mm256_broadcast_ss((a) + 5), c50 = _mm256_fmadd_ps(x, b0, c50), c51 = _mm256_fmadd_ps(x, b1, c51);

#define STORE6                                                                                              \
    if (add) {                                                                                              \
        c00 = _mm256_add_ps(c00, _mm256_loadu_ps(c + 0 * ldc)), c01 = _mm256_add_ps(c01, _mm256_loadu_ps(c + 0 * ldc + 8)); \
        c10 = _mm256_add_ps(c10, _mm256_loadu_ps(c + 1 * ldc)), c11 = _mm256_add_ps(c11, _mm256_loadu_ps(c + 1 * ldc + 8)); \
        c20 = _mm256_add_ps(c20, _mm256_loadu_ps(c + 2 * ldc)), c21 = _mm256_add_ps(c21, _mm256_loadu_ps(c + 2 * ldc + 8)); \
        c30 = _mm256_add_ps(c30, _mm256_loadu_ps(c + 3 * ldc)), c31 = _mm256_add_ps(c31, _mm256_loadu_ps(c + 3 * ldc + 8)); \
        c40 = _mm256_add_ps(c40, _mm256_loadu_ps(c + 4 * ldc)), c41 = _mm256_add_ps(c41, _mm256_loadu_ps(c + 4 * ldc + 8)); \
        c50 = _mm256_add_ps(c50, _mm256_loadu_ps(c + 5 * ldc)), c51 = _mm256_add_ps(c51, _mm256_loadu_ps(c + 5 * ldc + 8)); \
    }                                                                                                       \
    _mm256_storeu_ps(c + 0 * ldc, c00), _mm256_storeu_ps(c + 0 * ldc + 8, c01);                              \
    _mm256_storeu_ps(c + 1 * ldc, c10), _mm256_storeu_ps(c + 1 * ldc + 8, c11);                              \
    _mm256_storeu_ps(c + 2 * ldc, c20), _mm256_storeu_ps(c + 2 * ldc + 8, c21);                              \
    _mm256_storeu_ps(c + 3 * ldc, c30), _mm256_storeu_ps(c + 3 * ldc + 8, c31);                              \
    _mm256_storeu_ps(c + 4 * ldc, c40), _mm256_storeu_ps(c + 4 * ldc + 8, c41);                              \
    _mm256_storeu_ps(c + 5 * ldc, c50), _mm256_storeu_ps(c + 5 * ldc + 8, c51);

#define ACC6                                                                                                \
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00,     \
           c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00, b0, b1, x;

T_AVX2 static void ukr_avx2_f32(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int add)
{
    ACC6
    for (int64_t kk = 0; kk < kc; kk++, a += 6) {
        b0 = _mm256_loadu_ps(b + kk * NR), b1 = _mm256_loadu_ps(b + kk * NR + 8);
        STEP6(a)
    }
    STORE6
}

/* BF16 pair rows: a 32-bit lane holds (W[j, 2t], W[j, 2t + 1]); shifted left by 16 it is the
 * f32 value of k = 2t, shifted right then left by 16 that of k = 2t + 1. The row is loaded again
 * for the odd k: 12 accumulators, b0, b1 and x leave one of the 16 ymm registers, and the empty
 * asm (a compiler barrier) keeps the compiler from holding the first loads, or hoisting the odd
 * k's broadcasts, in registers it does not have (it spilled accumulators without it) */
T_AVX2 static void ukr_avx2_bf16(int64_t kc, const float *a, const uint16_t *b, float *c, int64_t ldc, int add)
{
    ACC6
    int64_t kk = 0;
    for (; kk + 2 <= kc; kk += 2, a += 12, b += 2 * NR) {
        b0 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)b), 16));
        b1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(b + 16)), 16));
        STEP6(a)
        __asm__ volatile("" ::: "memory");
        b0 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_srli_epi32(_mm256_loadu_si256((const __m256i *)b), 16), 16));
        b1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_srli_epi32(_mm256_loadu_si256((const __m256i *)(b + 16)), 16), 16));
        STEP6(a + 6)
    }
    if (kk < kc) {
        b0 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)b), 16));
        b1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(b + 16)), 16));
        STEP6(a)
    }
    STORE6
}
#undef STEP6
#undef STORE6
#undef ACC6

/* 12 x (16 np) AVX-512 tile; the row and panel loops unroll fully, so acc lives in registers.
 * The activations are broadcast from memory inside the FMA / VDPBF16PS ({1to16}): the compilers
 * emit a separate broadcast for _mm512_set1_*, one more instruction per two, and the VDPBF16PS
 * kernel ran at ~76% of the peak with it, ~87% without (1 Zen 4 core, the GEMM with packing) */
#define UNROLL _Pragma("GCC unroll 12")

T_AVX512 static inline __attribute__((always_inline)) void store512(const __m512 (*acc)[2], int np, float *c,
                                                                    int64_t ldc, int add)
{
    UNROLL for (int r = 0; r < 12; r++) for (int q = 0; q < np; q++)
    {
        __m512 v = acc[r][q];
        if (add) v = _mm512_add_ps(v, _mm512_loadu_ps(c + r * ldc + 16 * q));
        _mm512_storeu_ps(c + r * ldc + 16 * q, v);
    }
}

T_AVX512 static inline __attribute__((always_inline)) void step512(__m512 (*acc)[2], int np, const float *a, __m512 w0,
                                                                   __m512 w1)
{
    UNROLL for (int r = 0; r < 12; r++)
    {
        __asm__("vfmadd231ps %[x]%{1to16%}, %[w], %[c]" : [c] "+v"(acc[r][0]) : [w] "v"(w0), [x] "m"(a[r]));
        if (np > 1) __asm__("vfmadd231ps %[x]%{1to16%}, %[w], %[c]" : [c] "+v"(acc[r][1]) : [w] "v"(w1), [x] "m"(a[r]));
    }
}

T_AVX512 static inline __attribute__((always_inline)) void body512_f32(int np, int64_t kc, const float *a,
                                                                       const float *b0, const float *b1, float *c,
                                                                       int64_t ldc, int add)
{
    __m512 acc[12][2];
    UNROLL for (int r = 0; r < 12; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int64_t kk = 0; kk < kc; kk++, a += 12) {
        __m512 w0 = _mm512_loadu_ps(b0 + kk * NR), w1 = np > 1 ? _mm512_loadu_ps(b1 + kk * NR) : w0;
        step512(acc, np, a, w0, w1);
    }
    store512((const __m512(*)[2])acc, np, c, ldc, add);
}

T_AVX512 static inline __attribute__((always_inline)) void body512_bf16(int np, int64_t kc, const float *a,
                                                                        const uint16_t *b0, const uint16_t *b1,
                                                                        float *c, int64_t ldc, int add)
{
    __m512 acc[12][2];
    UNROLL for (int r = 0; r < 12; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    const __mmask32 odd = 0xaaaaaaaau; /* the high 16 bits of each lane */
    int64_t kk = 0;
    for (; kk + 2 <= kc; kk += 2, a += 24, b0 += 2 * NR, b1 += 2 * NR) {
        __m512 e0 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_loadu_si512(b0), 16)), e1 = e0;
        if (np > 1) e1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_loadu_si512(b1), 16));
        step512(acc, np, a, e0, e1);
        __m512 o0 = _mm512_castsi512_ps(_mm512_maskz_loadu_epi16(odd, b0)), o1 = o0;
        if (np > 1) o1 = _mm512_castsi512_ps(_mm512_maskz_loadu_epi16(odd, b1));
        step512(acc, np, a + 12, o0, o1);
    }
    if (kk < kc) {
        __m512 e0 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_loadu_si512(b0), 16)), e1 = e0;
        if (np > 1) e1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_loadu_si512(b1), 16));
        step512(acc, np, a, e0, e1);
    }
    store512((const __m512(*)[2])acc, np, c, ldc, add);
}

T_AVX512 static void ukr512_f32_2(int64_t kc, const float *a, const float *b0, const float *b1, float *c, int64_t ldc,
                                  int add)
{
    body512_f32(2, kc, a, b0, b1, c, ldc, add);
}

T_AVX512 static void ukr512_f32_1(int64_t kc, const float *a, const float *b0, float *c, int64_t ldc, int add)
{
    body512_f32(1, kc, a, b0, b0, c, ldc, add);
}

T_AVX512 static void ukr512_bf16_2(int64_t kc, const float *a, const uint16_t *b0, const uint16_t *b1, float *c,
                                   int64_t ldc, int add)
{
    body512_bf16(2, kc, a, b0, b1, c, ldc, add);
}

T_AVX512 static void ukr512_bf16_1(int64_t kc, const float *a, const uint16_t *b0, float *c, int64_t ldc, int add)
{
    body512_bf16(1, kc, a, b0, b0, c, ldc, add);
}

/* VDPBF16PS: lane j of acc += a.pair * b.pair[j] (the two products of k = 2t, 2t + 1); a is
 * [pairs][12] 32-bit bf16 pairs, each broadcast to all lanes */
T_DOT static inline __attribute__((always_inline)) void body_dot(int np, int64_t kc, const uint16_t *a,
                                                                 const uint16_t *b0, const uint16_t *b1, float *c,
                                                                 int64_t ldc, int add)
{
    __m512 acc[12][2];
    UNROLL for (int r = 0; r < 12; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    const int32_t *ap = (const int32_t *)(const void *)a;
    for (int64_t t = 0; t < (kc + 1) / 2; t++, ap += 12, b0 += 2 * NR, b1 += 2 * NR) {
        __m512bh w0 = (__m512bh)_mm512_loadu_si512(b0), w1 = w0;
        if (np > 1) w1 = (__m512bh)_mm512_loadu_si512(b1);
        UNROLL for (int r = 0; r < 12; r++)
        {
            __asm__("vdpbf16ps %[x]%{1to16%}, %[w], %[c]" : [c] "+v"(acc[r][0]) : [w] "v"(w0), [x] "m"(ap[r]));
            if (np > 1)
                __asm__("vdpbf16ps %[x]%{1to16%}, %[w], %[c]" : [c] "+v"(acc[r][1]) : [w] "v"(w1), [x] "m"(ap[r]));
        }
    }
    store512((const __m512(*)[2])acc, np, c, ldc, add);
}

T_DOT static void ukr_dot_2(int64_t kc, const uint16_t *a, const uint16_t *b0, const uint16_t *b1, float *c,
                            int64_t ldc, int add)
{
    body_dot(2, kc, a, b0, b1, c, ldc, add);
}

T_DOT static void ukr_dot_1(int64_t kc, const uint16_t *a, const uint16_t *b0, float *c, int64_t ldc, int add)
{
    body_dot(1, kc, a, b0, b0, c, ldc, add);
}
#undef UNROLL
#endif

/* c[mr x 16 np] for kernel ker */
static void ukr(int ker, int np, int64_t kc, const void *a, const void *b0, const void *b1, dfm_dtype bdt, float *c,
                int64_t ldc, int add)
{
    int f32 = bdt == DFM_F32;
#ifdef HAVE_X86
    switch (ker) {
    case KER_AVX2:
        for (int q = 0; q < np; q++) {
            const void *b = q ? b1 : b0;
            if (f32)
                ukr_avx2_f32(kc, a, b, c + q * NR, ldc, add);
            else
                ukr_avx2_bf16(kc, a, b, c + q * NR, ldc, add);
        }
        return;
    case KER_AVX512:
        if (f32)
            np > 1 ? ukr512_f32_2(kc, a, b0, b1, c, ldc, add) : ukr512_f32_1(kc, a, b0, c, ldc, add);
        else
            np > 1 ? ukr512_bf16_2(kc, a, b0, b1, c, ldc, add) : ukr512_bf16_1(kc, a, b0, c, ldc, add);
        return;
    case KER_DOT:
        np > 1 ? ukr_dot_2(kc, a, b0, b1, c, ldc, add) : ukr_dot_1(kc, a, b0, c, ldc, add);
        return;
    }
#endif
    for (int q = 0; q < np; q++) ukr_scalar(kc, a, q ? b1 : b0, bdt, c + q * NR, ldc, add);
}

/* ---- the GEMM ------------------------------------------------------------------------------ */

typedef struct {
    const float *x;
    int64_t ldx;
    int tx;
    void *ap; /* packed rows: [k block][row panel][kc][mr] (apanel_offset), f32 or bf16 pairs */
    int64_t m0, mb, k;
    int mr, round, dot;
} apack_ctx;

/* Element offset of rows kk = pc.. of row panel i among mp: k blocks outermost, so the panels
 * the micro-kernel visits one after another for a k block are contiguous. A VDPBF16PS panel
 * holds kc rounded up to even (bf16 pairs, the last one zero-padded). */
static size_t apanel_offset(int64_t i, int64_t pc, int64_t k, int64_t mp, int mr, int dot)
{
    int64_t kc = k - pc < KC ? k - pc : KC;
    if (dot) kc = (kc + 1) & ~(int64_t)1;
    return ((size_t)(pc / KC) * (size_t)mp * KC + (size_t)i * (size_t)kc) * (size_t)mr;
}

#define ROWS_MAX (MB_MAX + MR_MAX) /* rows of a block, at most */

#ifdef HAVE_X86
/* One row panel's k block for the VDPBF16PS kernel from row-major x: d[t * mr + r] = the bf16 pair
 * (x[r, pc + 2t], x[r, pc + 2t + 1]), rows past `rows` and the odd k's partner zero. VCVTNE2PS2BF16
 * rounds to nearest even as dfm_cpu_round_bf16 does, except that it flushes subnormals and may
 * differ in a NaN's payload: a 32-value chunk holding either is rounded by dfm_cpu_round_bf16
 * instead, so the bits never depend on the path. */
T_DOT static void apack_rows_dot(const float *x, int64_t ldx, int64_t rows, int64_t kc, int mr, uint32_t *d)
{
    uint32_t t32[MR_MAX][(KC + 1) / 2 + 16] __attribute__((aligned(64)));
    int64_t kp = (kc + 1) / 2;
    for (int64_t r = 0; r < mr; r++) {
        if (r >= rows) {
            memset(t32[r], 0, (size_t)kp * sizeof(uint32_t));
            continue;
        }
        const float *s = x + r * ldx;
        for (int64_t e = 0; e < kc; e += 32) {
            int64_t left = kc - e;
            __mmask16 m0 = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1u);
            __mmask16 m1 = left >= 32 ? 0xffff : left > 16 ? (__mmask16)((1u << (left - 16)) - 1u) : 0;
            __m512 v0 = _mm512_maskz_loadu_ps(m0, s + e), v1 = _mm512_maskz_loadu_ps(m1, s + e + 16);
            /* classes: QNaN 0x01, subnormal 0x20, SNaN 0x80 */
            if (__builtin_expect(_mm512_fpclass_ps_mask(v0, 0xa1) | _mm512_fpclass_ps_mask(v1, 0xa1), 0)) {
                float b[33] = {0};
                dfm_cpu_round_bf16(b, s + e, (size_t)(left < 32 ? left : 32));
                for (int64_t t = 0; t < 16 && e + 2 * t < kc; t++) t32[r][e / 2 + t] = pair_bits(b[2 * t], b[2 * t + 1]);
                continue;
            }
            _mm512_storeu_si512(t32[r] + e / 2, (__m512i)_mm512_cvtne2ps_pbh(v1, v0));
        }
    }
    int64_t t0 = 0;
    if (mr % 4 == 0) /* 4 x 4 transposes of 32-bit pairs inside each 128-bit lane, stored a lane at a time */
        for (; t0 + 16 <= kp; t0 += 16)
            for (int g = 0; g < mr; g += 4) {
                __m512i a0 = _mm512_load_si512(t32[g] + t0), a1 = _mm512_load_si512(t32[g + 1] + t0);
                __m512i a2 = _mm512_load_si512(t32[g + 2] + t0), a3 = _mm512_load_si512(t32[g + 3] + t0);
                __m512i l01 = _mm512_unpacklo_epi32(a0, a1), h01 = _mm512_unpackhi_epi32(a0, a1);
                __m512i l23 = _mm512_unpacklo_epi32(a2, a3), h23 = _mm512_unpackhi_epi32(a2, a3);
                __m512i q[4] = {_mm512_unpacklo_epi64(l01, l23), _mm512_unpackhi_epi64(l01, l23),
                                _mm512_unpacklo_epi64(h01, h23), _mm512_unpackhi_epi64(h01, h23)};
                uint32_t *o = d + t0 * mr + g; /* q[j]'s lane L: pair t0 + 4L + j of rows g..g+3 */
                for (int j = 0; j < 4; j++) {
                    _mm_storeu_si128((__m128i *)(void *)(o + (0 + j) * mr), _mm512_extracti32x4_epi32(q[j], 0));
                    _mm_storeu_si128((__m128i *)(void *)(o + (4 + j) * mr), _mm512_extracti32x4_epi32(q[j], 1));
                    _mm_storeu_si128((__m128i *)(void *)(o + (8 + j) * mr), _mm512_extracti32x4_epi32(q[j], 2));
                    _mm_storeu_si128((__m128i *)(void *)(o + (12 + j) * mr), _mm512_extracti32x4_epi32(q[j], 3));
                }
            }
    for (int64_t t = t0; t < kp; t++)
        for (int r = 0; r < mr; r++) d[t * mr + r] = t32[r][t];
}
#endif

static void apack_range(void *arg, int64_t i0, int64_t i1)
{
    apack_ctx *c = arg;
    int64_t k = c->k, mr = c->mr, mp = (c->mb + mr - 1) / mr;
    float buf[2][ROWS_MAX > KC + 1 ? ROWS_MAX : KC + 1];
    if (c->tx) { /* x[kk, row]: rows kk of the panels i0..i1 are contiguous */
        int64_t r0 = i0 * mr, len = (c->mb < i1 * mr ? c->mb : i1 * mr) - r0;
        memset(buf, 0, sizeof buf);
        for (int64_t pc = 0; pc < k; pc += KC) {
            int64_t kc = k - pc < KC ? k - pc : KC;
            for (int64_t kk = 0; kk < kc; kk += 1 + c->dot) {
                for (int e = 0; e <= c->dot; e++) {
                    if (kk + e >= kc) {
                        memset(buf[e], 0, sizeof buf[e]);
                        continue;
                    }
                    const float *s = c->x + (pc + kk + e) * c->ldx + c->m0 + r0;
                    if (c->round)
                        dfm_cpu_round_bf16(buf[e], s, (size_t)len);
                    else
                        memcpy(buf[e], s, (size_t)len * sizeof(float));
                }
                for (int64_t i = i0; i < i1; i++) {
                    size_t off = apanel_offset(i, pc, k, mp, c->mr, c->dot);
                    const float *lo = buf[0] + (i - i0) * mr, *hi = buf[1] + (i - i0) * mr;
                    if (c->dot) {
                        uint32_t *d = (uint32_t *)((uint16_t *)c->ap + off) + kk / 2 * mr;
                        for (int64_t r = 0; r < mr; r++) d[r] = pair_bits(lo[r], hi[r]);
                    } else {
                        memcpy((float *)c->ap + off + kk * mr, lo, (size_t)mr * sizeof(float));
                    }
                }
            }
        }
        return;
    }
#ifdef HAVE_X86
    if (c->dot && c->round) { /* the VDPBF16PS kernel runs only where AVX512_BF16 is */
        for (int64_t i = i0; i < i1; i++)
            for (int64_t pc = 0; pc < k; pc += KC) {
                int64_t kc = k - pc < KC ? k - pc : KC, rows = c->mb - i * mr < mr ? c->mb - i * mr : mr;
                apack_rows_dot(c->x + (c->m0 + i * mr) * c->ldx + pc, c->ldx, rows, kc, (int)mr,
                               (uint32_t *)((uint16_t *)c->ap + apanel_offset(i, pc, k, mp, c->mr, 1)));
            }
        return;
    }
#endif
    for (int64_t i = i0; i < i1; i++) /* x[row, kk]: each row contiguous */
        for (int64_t pc = 0; pc < k; pc += KC) {
            int64_t kc = k - pc < KC ? k - pc : KC, rows = c->mb - i * mr < mr ? c->mb - i * mr : mr;
            size_t off = apanel_offset(i, pc, k, mp, c->mr, c->dot);
            for (int64_t r = 0; r < mr; r++) {
                float *b = buf[0];
                if (r >= rows) {
                    memset(b, 0, (size_t)(kc + 1) * sizeof(float));
                } else {
                    const float *s = c->x + (c->m0 + i * mr + r) * c->ldx + pc;
                    if (c->round)
                        dfm_cpu_round_bf16(b, s, (size_t)kc);
                    else
                        memcpy(b, s, (size_t)kc * sizeof(float));
                    b[kc] = 0.0f;
                }
                if (c->dot) {
                    uint32_t *d = (uint32_t *)((uint16_t *)c->ap + off);
                    for (int64_t t = 0; t < (kc + 1) / 2; t++) d[t * mr + r] = pair_bits(b[2 * t], b[2 * t + 1]);
                } else {
                    float *d = (float *)c->ap + off;
                    for (int64_t kk = 0; kk < kc; kk++) d[kk * mr + r] = b[kk];
                }
            }
        }
}

typedef struct {
    const void *ap;
    int64_t m0, mb, k;
    dfm_dtype wdt;
    const dfm_cpu_linear_seg *seg;
    const int64_t *ustart; /* first global unit of each segment; ustart[nseg] = total */
    int nseg, accumulate, ker, mr, np;
    atomic_llong next;     /* the next unit not yet taken */
    int64_t grab;          /* units taken at a time */
} gemm_ctx;

/* c[r, q] += bias[q] for the rows x cols of a stored tile (its last k block); the AVX-512 twin
 * below gives the same bits (one f32 add per element) */
static void tile_bias(float *c, int64_t ldc, int64_t rows, int64_t cols, const float *bias)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t q = 0; q < cols; q++) c[r * ldc + q] += bias[q];
}

#ifdef HAVE_X86
__attribute__((target("avx512f"))) static void tile_bias512(float *c, int64_t ldc, int64_t rows, int64_t cols,
                                                            const float *bias)
{
    for (int64_t q = 0; q < cols; q += 16) {
        __mmask16 mk = cols - q >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (cols - q)) - 1);
        __m512 b = _mm512_maskz_loadu_ps(mk, bias + q);
        for (int64_t r = 0; r < rows; r++)
            _mm512_mask_storeu_ps(c + r * ldc + q, mk, _mm512_add_ps(_mm512_maskz_loadu_ps(mk, c + r * ldc + q), b));
    }
}
#endif

/* one unit j (np panels) of segment s against the k block at pc, every row panel of the block */
static void unit_block(const gemm_ctx *g, int64_t j, int s, int64_t pc, float *edge)
{
    const dfm_cpu_linear_seg *sg = &g->seg[s];
    int64_t k = g->k, mr = g->mr, mp = (g->mb + mr - 1) / mr;
    size_t es = g->wdt == DFM_F32 ? 4 : 2, pstride = (size_t)panel_rows(k, g->wdt) * NR * es;
    int64_t p0 = (j - g->ustart[s]) * g->np, panels = (sg->n + NR - 1) / NR;
    int np = panels - p0 < g->np ? (int)(panels - p0) : g->np;
    int64_t cols = sg->n - p0 * NR < np * NR ? sg->n - p0 * NR : np * NR;
    int64_t kc = k - pc < KC ? k - pc : KC;
    int add = g->accumulate || pc > 0;
    const float *bias = sg->bias && pc + KC >= k ? sg->bias + p0 * NR : NULL; /* the last k block adds it */
    const char *b0 = (const char *)sg->w + (size_t)p0 * pstride + (size_t)pc * NR * es, *b1 = np > 1 ? b0 + pstride : b0;
    /* the weights that come next in memory (the next k block of these panels, or the next
     * panels): fetched into L2 a share at a time while this block runs, so the first pass over
     * them does not wait on DRAM (prefetches never fault, past the end included) */
    size_t slice = (size_t)kc * NR * es;
    int64_t lines = (int64_t)(slice / 64) * np, per = (lines + mp - 1) / mp, half = (int64_t)(slice / 64);
    for (int64_t i = 0; i < mp; i++) {
        int64_t rows = g->mb - i * mr < mr ? g->mb - i * mr : mr;
        const char *a = (const char *)g->ap + apanel_offset(i, pc, k, mp, g->mr, g->ker == KER_DOT) *
                                                  (g->ker == KER_DOT ? 2 : 4);
        for (int64_t l = i * per; l < (i + 1) * per && l < lines; l++)
            __builtin_prefetch((l < half ? b0 : b1 - half * 64) + slice + l * 64, 0, 2);
        float *c = sg->y + (g->m0 + i * mr) * sg->ldy + p0 * NR;
        if (rows == mr && cols == np * NR) {
            ukr(g->ker, np, kc, a, b0, b1, g->wdt, c, sg->ldy, add);
        } else {
            ukr(g->ker, np, kc, a, b0, b1, g->wdt, edge, 2 * NR, 0);
            for (int64_t r = 0; r < rows; r++)
                for (int64_t q = 0; q < cols; q++)
                    c[r * sg->ldy + q] = add ? c[r * sg->ldy + q] + edge[r * 2 * NR + q] : edge[r * 2 * NR + q];
        }
        if (!bias) continue;
#ifdef HAVE_X86
        if (g->ker >= KER_AVX512) { /* the CPU has AVX-512: the kernel was chosen by it */
            tile_bias512(c, sg->ldy, rows, cols, bias);
            continue;
        }
#endif
        tile_bias(c, sg->ldy, rows, cols, bias);
    }
}

static void gemm_range(gemm_ctx *g, int64_t j0, int64_t j1)
{
    float edge[MR_MAX * 2 * NR];
    int s = 0;
    for (int64_t j = j0; j < j1; j++) {
        while (j >= g->ustart[s + 1]) s++;
        for (int64_t pc = 0; pc < g->k; pc += KC) unit_block(g, j, s, pc, edge);
    }
}

/* Each worker takes the next `grab` units until none are left: a worker slowed down (another
 * process on its core, a smaller core) does less of the work instead of holding up the GEMM, as
 * a fixed split would. Which worker computes a unit does not change its values. */
static void gemm_worker(void *arg, int64_t t0, int64_t t1)
{
    gemm_ctx *g = arg;
    int64_t total = g->ustart[g->nseg];
    for (;;) {
        int64_t j0 = (int64_t)atomic_fetch_add(&g->next, (long long)g->grab);
        if (j0 >= total) break;
        gemm_range(g, j0, j0 + g->grab < total ? j0 + g->grab : total);
    }
}

int dfm_cpu_linear_strided(const float *x, int tx, int64_t ldx, int64_t m, int64_t k, dfm_dtype wdt,
                           const dfm_cpu_linear_seg *seg, int nseg, int accumulate, int bf16_compute)
{
    if (wdt != DFM_F32 && wdt != DFM_BF16)
        return dfm_fail(DFM_E_UNSUPPORTED, "linear: packed weights of %s", dfm_dtype_name(wdt));
    if (m <= 0 || nseg <= 0) return 0;
    if (k == 0) {
        for (int s = 0; s < nseg; s++)
            for (int64_t r = 0; r < m; r++) {
                float *y = seg[s].y + r * seg[s].ldy;
                if (!accumulate) memset(y, 0, (size_t)seg[s].n * sizeof(float));
                if (seg[s].bias) tile_bias(y, 0, 1, seg[s].n, seg[s].bias);
            }
        return 0;
    }
    if (nseg > DFM_CPU_LINEAR_MAXSEG)
        return dfm_fail(DFM_E_ARG, "linear: %d weights in one pass (at most %d)", nseg, DFM_CPU_LINEAR_MAXSEG);
    int level = dfm_cpu_simd_level();
    int ker = level >= DFM_CPU_AVX512_BF16 && wdt == DFM_BF16 && bf16_compute ? KER_DOT
              : level >= DFM_CPU_AVX512                                       ? KER_AVX512
              : level >= DFM_CPU_AVX2                                         ? KER_AVX2
                                                                              : KER_SCALAR;
    int mr = ker_mr[ker], np = ker_np[ker], dot = ker == KER_DOT;
    int64_t ustart[DFM_CPU_LINEAR_MAXSEG + 1];
    ustart[0] = 0;
    for (int s = 0; s < nseg; s++) ustart[s + 1] = ustart[s] + ((seg[s].n + NR - 1) / NR + np - 1) / np;
    /* rows per block: as many as fit A_BLOCK_BYTES, the blocks of equal size */
    int64_t mb_max = A_BLOCK_BYTES / (k * (int64_t)sizeof(float));
    mb_max = mb_max > MB_MAX ? MB_MAX : mb_max < MB_MIN ? MB_MIN : mb_max;
    int64_t nblk = (m + mb_max - 1) / mb_max, mb = (m + nblk - 1) / nblk;
    mb = (mb + mr - 1) / mr * mr;
    /* f32 rows, or bf16 pairs (k blocks rounded up to even: at most one extra k per block) */
    size_t abytes = dot ? (size_t)mb * (size_t)(k + (k + KC - 1) / KC) * 2 : (size_t)mb * (size_t)k * sizeof(float);
    void *ap = dfm_cpu_scratch(1, abytes);
    if (!ap)
        return dfm_fail(DFM_E_NOMEM, "linear: out of memory for %lld x %lld rows of scratch", (long long)mb, (long long)k);
    for (int64_t m0 = 0; m0 < m; m0 += mb) {
        int64_t rows = m - m0 < mb ? m - m0 : mb, mp = (rows + mr - 1) / mr;
        apack_ctx pa = {x, ldx, tx != 0, ap, m0, rows, k, mr, bf16_compute != 0, dot};
        dfm_cpu_parallel(mp, 1 + 16384 / k, apack_range, &pa);
        gemm_ctx g = {ap, m0, rows, k, wdt, seg, ustart, nseg, accumulate != 0, ker, mr, np, 0, 1};
        int64_t workers = dfm_cpu_threads(), total = ustart[nseg];
        /* about 16 grabs per worker (at least one unit each) */
        g.grab = total / (workers * 16) > 1 ? total / (workers * 16) : 1;
        atomic_init(&g.next, 0);
        dfm_cpu_parallel(workers < total ? workers : total, 1, gemm_worker, &g);
    }
    return 0;
}

int dfm_cpu_linear(const float *x, int64_t m, int64_t k, dfm_dtype wdt, const dfm_cpu_linear_seg *seg, int nseg,
                   int accumulate, int bf16_compute)
{
    return dfm_cpu_linear_strided(x, 0, k, m, k, wdt, seg, nseg, accumulate, bf16_compute);
}
