/* dtype.c — element types (dtype.h): sizes, safetensors names, and exact float conversions.
 *
 * Rounding is IEEE round-to-nearest-even everywhere, done with integer arithmetic so that it does
 * not depend on the FPU's rounding mode or on FTZ/DAZ flags a kernel may have set:
 *   f32 -> bf16: the result PyTorch's c10::BFloat16 gives (and AVX512-BF16 vcvtneps2bf16);
 *   f32 -> f16:  the result numpy's astype(float16) gives (and F16C vcvtps2ph), subnormals
 *                included; values at or past 65520 become inf.
 * NaN stays NaN: f32 -> bf16/f16 keeps the sign and the top payload bits and sets the quiet bit,
 * f16 -> f32 likewise sets the quiet bit (what the x86 conversion instructions do, so the scalar
 * functions and the bulk F16C path agree bit for bit). Only NaN payloads can differ from PyTorch,
 * which canonicalizes NaN to 0x7FC0 (bf16) / 0x7E00 (f16).
 *
 * dfm_convert_floats runs fixed-size blocks of plain loops that GCC vectorizes at -O2 (bf16), or
 * F16C instructions chosen at run time (f16); the Makefile passes no -march, so the F16C code
 * lives in functions with a target attribute behind a CPUID check.
 * Not here: tensors (tensor/), device conversion (kernels/cuda/convert.cu, its twin).
 */
#include "base/dtype.h"
#include "base/error.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define DFM_X86 1
#endif

static const char *const NAMES[] = {"F32", "BF16", "F16", "U8", "I32", "I64"};
static const size_t SIZES[] = {4, 2, 2, 1, 4, 8};
#define NDTYPES ((int)(sizeof NAMES / sizeof NAMES[0]))

size_t dfm_dtype_size(dfm_dtype t) { return (unsigned)t < NDTYPES ? SIZES[t] : 0; }

const char *dfm_dtype_name(dfm_dtype t) { return (unsigned)t < NDTYPES ? NAMES[t] : "?"; }

int dfm_dtype_parse(const char *name, dfm_dtype *out)
{
    for (int i = 0; name && i < NDTYPES; i++)
        if (!strcmp(name, NAMES[i])) {
            *out = (dfm_dtype)i;
            return 0;
        }
    return -1;
}

/* ---- scalar conversions ---------------------------------------------------------------- */

static inline uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t bf16_from_bits(uint32_t u)
{
    uint16_t rounded = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    uint16_t nan = (uint16_t)((u >> 16) | 0x40u);
    return (u & 0x7fffffffu) > 0x7f800000u ? nan : rounded;
}

uint16_t dfm_f32_to_bf16(float f) { return bf16_from_bits(f32_bits(f)); }

float dfm_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

static inline uint16_t f16_from_bits(uint32_t u)
{
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t x = u & 0x7fffffffu;
    if (x > 0x7f800000u) return sign | 0x7e00u | (uint16_t)((x >> 13) & 0x3ffu); /* NaN */
    if (x >= 0x477ff000u) return sign | 0x7c00u; /* inf, or rounds to 65536 and past */
    if (x >= 0x38800000u) {                      /* normal f16: rebias, round at bit 13 */
        uint32_t r = x + 0xfffu + ((x >> 13) & 1u);
        return sign | (uint16_t)((r - 0x38000000u) >> 13);
    }
    if (x <= 0x33000000u) return sign; /* at most 2^-25: rounds to (signed) zero */
    /* subnormal f16: the value is m * 2^(e-150); in units of 2^-24 that is m >> (126 - e) */
    uint32_t e = x >> 23, m = (x & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e; /* 14 .. 24 */
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return sign | (uint16_t)q;
}

uint16_t dfm_f32_to_f16(float f) { return f16_from_bits(f32_bits(f)); }

static inline uint32_t f16_to_bits(uint16_t h)
{
    uint32_t s = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1f) return s | 0x7f800000u | (m << 13) | (m ? 0x400000u : 0); /* inf, quiet NaN */
    if (e) return s | ((e + 112) << 23) | (m << 13);
    if (!m) return s;
    e = 113; /* subnormal: normalize */
    while (!(m & 0x400u)) {
        m <<= 1;
        e--;
    }
    return s | (e << 23) | ((m & 0x3ffu) << 13);
}

float dfm_f16_to_f32(uint16_t h) { return bits_f32(f16_to_bits(h)); }

/* ---- bulk conversions -------------------------------------------------------------------- */

/* Blocks of a fixed count with restrict pointers: GCC -O2's "very cheap" vectorizer takes these
 * (a known trip count that is a multiple of the vector width, no alias checks needed). */
#define BLOCK 32

static void bf16_from_f32_block(uint16_t *restrict d, const uint32_t *restrict s)
{
    for (int i = 0; i < BLOCK; i++) {
        uint32_t u = s[i];
        uint16_t rounded = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
        uint16_t nan = (uint16_t)((u >> 16) | 0x40u);
        d[i] = (u & 0x7fffffffu) > 0x7f800000u ? nan : rounded;
    }
}

static void f32_from_bf16_block(uint32_t *restrict d, const uint16_t *restrict s)
{
    for (int i = 0; i < BLOCK; i++) d[i] = (uint32_t)s[i] << 16;
}

static void f32_to_bf16_n(uint16_t *d, const uint32_t *s, size_t n)
{
    size_t i = 0;
    for (; i + BLOCK <= n; i += BLOCK) bf16_from_f32_block(d + i, s + i);
    for (; i < n; i++) d[i] = bf16_from_bits(s[i]);
}

static void bf16_to_f32_n(uint32_t *d, const uint16_t *s, size_t n)
{
    size_t i = 0;
    for (; i + BLOCK <= n; i += BLOCK) f32_from_bf16_block(d + i, s + i);
    for (; i < n; i++) d[i] = (uint32_t)s[i] << 16;
}

#ifdef DFM_X86
/* F16C: vcvtph2ps is exact (NaN quieted), vcvtps2ph with imm 0 rounds to nearest even,
 * regardless of MXCSR — the same results as the scalar functions above. */
__attribute__((target("avx,f16c"))) static size_t f16_to_f32_f16c(float *d, const uint16_t *s,
                                                                    size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(s + i));
        _mm256_storeu_ps(d + i, _mm256_cvtph_ps(h));
    }
    return i;
}

__attribute__((target("avx,f16c"))) static size_t f32_to_f16_f16c(uint16_t *d, const float *s,
                                                                    size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 f = _mm256_loadu_ps(s + i);
        _mm_storeu_si128((__m128i *)(d + i), _mm256_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT));
    }
    return i;
}

/* F16C and AVX (CPUID leaf 1 ECX bits 29, 28) with the OS saving the YMM state (OSXSAVE, bit
 * 27, and XCR0 bits 1-2). CPUID directly: clang does not know "f16c" in __builtin_cpu_supports. */
__attribute__((target("xsave"))) static int probe_f16c(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    if (!(c & bit_F16C) || !(c & bit_AVX) || !(c & bit_OSXSAVE)) return 0;
    return (_xgetbv(0) & 6) == 6;
}

static int have_f16c(void)
{
    static int cached = -1; /* every thread that races here computes the same value */
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v < 0) __atomic_store_n(&cached, v = probe_f16c(), __ATOMIC_RELAXED);
    return v;
}
#endif

static void f16_to_f32_n(uint32_t *d, const uint16_t *s, size_t n)
{
    size_t i = 0;
#ifdef DFM_X86
    if (have_f16c()) i = f16_to_f32_f16c((float *)d, s, n);
#endif
    for (; i < n; i++) d[i] = f16_to_bits(s[i]);
}

static void f32_to_f16_n(uint16_t *d, const uint32_t *s, size_t n)
{
    size_t i = 0;
#ifdef DFM_X86
    if (have_f16c()) i = f32_to_f16_f16c(d, (const float *)s, n);
#endif
    for (; i < n; i++) d[i] = f16_from_bits(s[i]);
}

static void u8_to_f32_n(uint32_t *d, const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++) d[i] = f32_bits((float)s[i]);
}

static int is_float(dfm_dtype t) { return t == DFM_F32 || t == DFM_BF16 || t == DFM_F16; }

/* Aligned pointers: convert directly. Any dtype pair handled here has st/dt float or U8. */
static void convert_aligned(void *dst, dfm_dtype dt, const void *src, dfm_dtype st, size_t n)
{
    uint32_t tmp[256];
    if (st == DFM_F32) {
        if (dt == DFM_BF16) f32_to_bf16_n(dst, src, n);
        else f32_to_f16_n(dst, src, n);
        return;
    }
    if (dt == DFM_F32) {
        if (st == DFM_BF16) bf16_to_f32_n(dst, src, n);
        else if (st == DFM_F16) f16_to_f32_n(dst, src, n);
        else u8_to_f32_n(dst, src, n);
        return;
    }
    /* bf16 <-> f16 and u8 -> half: through an exact f32 intermediate, one rounding */
    size_t isz = dfm_dtype_size(st), osz = dfm_dtype_size(dt);
    for (size_t i = 0; i < n; i += 256) {
        size_t k = n - i < 256 ? n - i : 256;
        convert_aligned(tmp, DFM_F32, (const uint8_t *)src + i * isz, st, k);
        convert_aligned((uint8_t *)dst + i * osz, dt, tmp, DFM_F32, k);
    }
}

int dfm_convert_floats(void *dst, dfm_dtype dt, const void *src, dfm_dtype st, size_t n)
{
    if (!is_float(dt) || !(is_float(st) || st == DFM_U8))
        return dfm_fail(DFM_E_UNSUPPORTED, "cannot convert %s to %s", dfm_dtype_name(st),
                        dfm_dtype_name(dt));
    size_t isz = dfm_dtype_size(st), osz = dfm_dtype_size(dt);
    if (st == dt) {
        if (n) memmove(dst, src, n * isz);
        return 0;
    }
    if (!n) return 0;
    if ((uintptr_t)src % isz == 0 && (uintptr_t)dst % osz == 0) {
        convert_aligned(dst, dt, src, st, n);
        return 0;
    }
    /* Unaligned (e.g. a tensor inside a file mapped at an odd offset): bounce through aligned
     * buffers so no load or store is misaligned. */
    uint32_t in[512], out[512];
    for (size_t i = 0; i < n; i += 512) {
        size_t k = n - i < 512 ? n - i : 512;
        memcpy(in, (const uint8_t *)src + i * isz, k * isz);
        convert_aligned(out, dt, in, st, k);
        memcpy((uint8_t *)dst + i * osz, out, k * osz);
    }
    return 0;
}
