/* linear.c — packed-weight GEMM for linear layers (linear.h).
 *
 * Loop nest (BLIS's, with the weight panels packed ahead of time):
 *   for each block of MB rows of x:      pack them into 6-row panels (threads split the panels),
 *                                        laid out [k block][panel][KC][6] so that the panels
 *                                        visited one after another are contiguous
 *     for each weight panel p (threads take runs of panels from a shared counter, so a slow
 *     core does less, not holds up the rest): 16 output columns, k x 16 contiguous
 *       for each k block of KC:                       the panel's KC x 16 slice stays in L1 while
 *         for each 6-row panel of the block:          6 x KC of x streams from L2
 *           micro-kernel: C[6 x 16] (+)= A[6 x KC] B[KC x 16], 12 ymm accumulators
 * The 6x16 tiles of one output panel (all rows of the block) stay in L1 across the k blocks; the
 * weights stream from memory once per row block, in order, the next KC x 16 slice prefetched into
 * L2 while the current one runs. Measured on 2 Zen 3 cores (scripts/bench_linear.c): the
 * micro-kernel alone at ~97% of the FMA peak, the whole GEMM at ~80-87% (one thread) and
 * ~75-85% (two; the machine is shared), OpenBLAS at ~70% on the same shapes.
 * Not here: the CUDA twin (lib/tensor/ops.c keeps W unpacked there), bias (none of the text
 * encoder's linears has one).
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
#define MR DFM_CPU_LINEAR_MR
#define KC DFM_CPU_LINEAR_KC
#define A_BLOCK_BYTES ((int64_t)8 << 20) /* packed rows of x per block: stays in L3 */
#define MB_MAX 384
#define MB_MIN 48

static int slot16(int j) { return j < 4 || j >= 12 ? j : j < 8 ? j + 4 : j - 4; }

static uint16_t bf16_bits(float f)
{
    union { float f; uint32_t u; } v = {dfm_cpu_round_bf16_1(f)};
    return (uint16_t)(v.u >> 16);
}

static float bf16_value(uint16_t h)
{
    union { uint32_t u; float f; } v = {(uint32_t)h << 16};
    return v.f;
}

size_t dfm_cpu_linear_packed_size(int64_t n, int64_t k, dfm_dtype dt)
{
    if ((dt != DFM_F32 && dt != DFM_BF16) || n < 0 || k < 0) return 0;
    size_t panels = (size_t)((n + NR - 1) / NR);
    return panels * (size_t)k * NR * (dt == DFM_F32 ? 4 : 2);
}

/* ---- packing the weights ------------------------------------------------------------------- */

typedef struct {
    void *dst;
    dfm_dtype dt, wdt;
    const void *w;
    int64_t n, k;
    int err;
} pack_ctx;

/* per panel, k in chunks of PACK_KB: the 16 rows' chunk converted into an L1-resident tile, then
 * written out transposed */
#define PACK_KB 128

static void pack_range(void *arg, int64_t p0, int64_t p1)
{
    pack_ctx *c = arg;
    int64_t k = c->k;
    size_t es = dfm_dtype_size(c->wdt);
    float tile[NR][PACK_KB];
    for (int64_t p = p0; p < p1; p++) {
        for (int64_t k0 = 0; k0 < k; k0 += PACK_KB) {
            int64_t kb = k - k0 < PACK_KB ? k - k0 : PACK_KB;
            for (int j = 0; j < NR; j++) {
                int64_t row = p * NR + j;
                if (row >= c->n) {
                    memset(tile[j], 0, sizeof tile[j]);
                } else if (dfm_cpu_to_f32(tile[j], (const char *)c->w + ((size_t)row * k + k0) * es, c->wdt, (size_t)kb,
                                          0) < 0) {
                    c->err = DFM_E_UNSUPPORTED;
                    return;
                }
            }
            if (c->dt == DFM_F32) {
                float *d = (float *)c->dst + ((size_t)p * k + k0) * NR;
                for (int64_t kk = 0; kk < kb; kk++)
                    for (int j = 0; j < NR; j++) d[kk * NR + j] = tile[j][kk];
            } else {
                uint16_t *d = (uint16_t *)c->dst + ((size_t)p * k + k0) * NR;
                for (int64_t kk = 0; kk < kb; kk++)
                    for (int j = 0; j < NR; j++) d[kk * NR + slot16(j)] = bf16_bits(tile[j][kk]);
            }
        }
    }
}

int dfm_cpu_linear_pack(void *dst, dfm_dtype dt, const void *w, dfm_dtype wdt, int64_t n, int64_t k)
{
    if (dt != DFM_F32 && dt != DFM_BF16)
        return dfm_fail(DFM_E_UNSUPPORTED, "linear: cannot pack weights as %s", dfm_dtype_name(dt));
    if (wdt != DFM_F32 && wdt != DFM_BF16 && wdt != DFM_F16)
        return dfm_fail(DFM_E_UNSUPPORTED, "linear: cannot use %s weights", dfm_dtype_name(wdt));
    pack_ctx c = {dst, dt, wdt, w, n, k, 0};
    dfm_cpu_parallel((n + NR - 1) / NR, 4, pack_range, &c);
    return c.err ? dfm_fail(c.err, "linear: cannot convert %s weights", dfm_dtype_name(wdt)) : 0;
}

/* ---- micro-kernels ------------------------------------------------------------------------- */

/* c[6 x 16] (row stride ldc) = (add ? c : 0) + a[kc][6] . b[kc][16] */
static void ukr_scalar(int64_t kc, const float *a, const void *b, dfm_dtype bdt, float *c, int64_t ldc, int add)
{
    float acc[MR][NR];
    memset(acc, 0, sizeof acc);
    for (int64_t kk = 0; kk < kc; kk++) {
        float bv[NR];
        if (bdt == DFM_F32)
            memcpy(bv, (const float *)b + kk * NR, sizeof bv);
        else
            for (int j = 0; j < NR; j++) bv[j] = bf16_value(((const uint16_t *)b)[kk * NR + slot16(j)]);
        for (int r = 0; r < MR; r++) {
            float av = a[kk * MR + r];
            for (int j = 0; j < NR; j++) acc[r][j] += av * bv[j];
        }
    }
    for (int r = 0; r < MR; r++)
        for (int j = 0; j < NR; j++) c[r * ldc + j] = add ? c[r * ldc + j] + acc[r][j] : acc[r][j];
}

#ifdef HAVE_X86
#define UKR_BODY(LOAD_B)                                                                                    \
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00,      \
           c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;                                            \
    for (int64_t kk = 0; kk < kc; kk++) {                                                                    \
        __m256 b0, b1, x;                                                                                    \
        LOAD_B;                                                                                              \
        x = _mm256_broadcast_ss(a + 0), c00 = _mm256_fmadd_ps(x, b0, c00), c01 = _mm256_fmadd_ps(x, b1, c01); \
        x = _mm256_broadcast_ss(a + 1), c10 = _mm256_fmadd_ps(x, b0, c10), c11 = _mm256_fmadd_ps(x, b1, c11); \
        x = _mm256_broadcast_ss(a + 2), c20 = _mm256_fmadd_ps(x, b0, c20), c21 = _mm256_fmadd_ps(x, b1, c21); \
        x = _mm256_broadcast_ss(a + 3), c30 = _mm256_fmadd_ps(x, b0, c30), c31 = _mm256_fmadd_ps(x, b1, c31); \
        x = _mm256_broadcast_ss(a + 4), c40 = _mm256_fmadd_ps(x, b0, c40), c41 = _mm256_fmadd_ps(x, b1, c41); \
        x = _mm256_broadcast_ss(a + 5), c50 = _mm256_fmadd_ps(x, b0, c50), c51 = _mm256_fmadd_ps(x, b1, c51); \
        a += MR;                                                                                             \
    }                                                                                                        \
    if (add) {                                                                                               \
        c00 = _mm256_add_ps(c00, _mm256_loadu_ps(c + 0 * ldc)), c01 = _mm256_add_ps(c01, _mm256_loadu_ps(c + 0 * ldc + 8)); \
        c10 = _mm256_add_ps(c10, _mm256_loadu_ps(c + 1 * ldc)), c11 = _mm256_add_ps(c11, _mm256_loadu_ps(c + 1 * ldc + 8)); \
        c20 = _mm256_add_ps(c20, _mm256_loadu_ps(c + 2 * ldc)), c21 = _mm256_add_ps(c21, _mm256_loadu_ps(c + 2 * ldc + 8)); \
        c30 = _mm256_add_ps(c30, _mm256_loadu_ps(c + 3 * ldc)), c31 = _mm256_add_ps(c31, _mm256_loadu_ps(c + 3 * ldc + 8)); \
        c40 = _mm256_add_ps(c40, _mm256_loadu_ps(c + 4 * ldc)), c41 = _mm256_add_ps(c41, _mm256_loadu_ps(c + 4 * ldc + 8)); \
        c50 = _mm256_add_ps(c50, _mm256_loadu_ps(c + 5 * ldc)), c51 = _mm256_add_ps(c51, _mm256_loadu_ps(c + 5 * ldc + 8)); \
    }                                                                                                        \
    _mm256_storeu_ps(c + 0 * ldc, c00), _mm256_storeu_ps(c + 0 * ldc + 8, c01);                               \
    _mm256_storeu_ps(c + 1 * ldc, c10), _mm256_storeu_ps(c + 1 * ldc + 8, c11);                               \
    _mm256_storeu_ps(c + 2 * ldc, c20), _mm256_storeu_ps(c + 2 * ldc + 8, c21);                               \
    _mm256_storeu_ps(c + 3 * ldc, c30), _mm256_storeu_ps(c + 3 * ldc + 8, c31);                               \
    _mm256_storeu_ps(c + 4 * ldc, c40), _mm256_storeu_ps(c + 4 * ldc + 8, c41);                               \
    _mm256_storeu_ps(c + 5 * ldc, c50), _mm256_storeu_ps(c + 5 * ldc + 8, c51);

__attribute__((target("avx2,fma"))) static void ukr_avx2_f32(int64_t kc, const float *a, const float *b, float *c,
                                                             int64_t ldc, int add)
{
    UKR_BODY(b0 = _mm256_loadu_ps(b + kk * NR); b1 = _mm256_loadu_ps(b + kk * NR + 8))
}

/* one 32-byte row of 16 bf16 values in slot16 order: the 16-bit unpacks against zero put each
 * value in the high half of a 32-bit lane, which is its f32 value */
__attribute__((target("avx2,fma"))) static void ukr_avx2_bf16(int64_t kc, const float *a, const uint16_t *b, float *c,
                                                              int64_t ldc, int add)
{
    const __m256i z = _mm256_setzero_si256();
    UKR_BODY(__m256i w = _mm256_loadu_si256((const __m256i *)(b + kk * NR));
             b0 = _mm256_castsi256_ps(_mm256_unpacklo_epi16(z, w));
             b1 = _mm256_castsi256_ps(_mm256_unpackhi_epi16(z, w)))
}
#undef UKR_BODY
#endif

static void ukr(int avx2, int64_t kc, const float *a, const void *b, dfm_dtype bdt, float *c, int64_t ldc, int add)
{
#ifdef HAVE_X86
    if (avx2) {
        if (bdt == DFM_F32)
            ukr_avx2_f32(kc, a, b, c, ldc, add);
        else
            ukr_avx2_bf16(kc, a, b, c, ldc, add);
        return;
    }
#endif
    ukr_scalar(kc, a, b, bdt, c, ldc, add);
}

/* ---- the GEMM ------------------------------------------------------------------------------ */

typedef struct {
    const float *x;
    float *ap; /* packed rows: [k block][row panel][kc][MR] (apanel_offset) */
    int64_t m0, mb, k;
    int round;
} apack_ctx;

/* Element offset of rows kk = pc.. of row panel i among mp: k blocks outermost, so the panels
 * the micro-kernel visits one after another for a k block are contiguous. */
static size_t apanel_offset(int64_t i, int64_t pc, int64_t k, int64_t mp)
{
    int64_t kc = k - pc < KC ? k - pc : KC;
    return ((size_t)(pc / KC) * (size_t)mp * KC + (size_t)i * (size_t)kc) * MR;
}

static void apack_range(void *arg, int64_t i0, int64_t i1)
{
    apack_ctx *c = arg;
    int64_t k = c->k, mp = (c->mb + MR - 1) / MR;
    for (int64_t i = i0; i < i1; i++)
        for (int64_t pc = 0; pc < k; pc += KC) {
            int64_t kc = k - pc < KC ? k - pc : KC;
            float *d = c->ap + apanel_offset(i, pc, k, mp);
            for (int r = 0; r < MR; r++) {
                int64_t row = i * MR + r;
                const float *s = c->x + (c->m0 + row) * k + pc;
                if (row >= c->mb)
                    for (int64_t kk = 0; kk < kc; kk++) d[kk * MR + r] = 0.0f;
                else if (c->round)
                    for (int64_t kk = 0; kk < kc; kk++) d[kk * MR + r] = dfm_cpu_round_bf16_1(s[kk]);
                else
                    for (int64_t kk = 0; kk < kc; kk++) d[kk * MR + r] = s[kk];
            }
        }
}

typedef struct {
    const float *ap;
    int64_t m0, mb, k;
    dfm_dtype wdt;
    const dfm_cpu_linear_seg *seg;
    const int64_t *pstart; /* first global panel of each segment; pstart[nseg] = total */
    int nseg, accumulate, avx2;
    atomic_llong next;     /* the next panel not yet taken */
    int64_t grab;          /* panels taken at a time */
} gemm_ctx;

/* one weight panel j against the k block at pc, every 6-row panel of the row block */
static void panel_block(const gemm_ctx *g, int64_t j, int s, int64_t pc, float *edge)
{
    const dfm_cpu_linear_seg *sg = &g->seg[s];
    int64_t k = g->k, mp = (g->mb + MR - 1) / MR;
    size_t es = g->wdt == DFM_F32 ? 4 : 2;
    int64_t jl = j - g->pstart[s], cols = sg->n - jl * NR < NR ? sg->n - jl * NR : NR;
    int64_t kc = k - pc < KC ? k - pc : KC;
    int add = g->accumulate || pc > 0;
    const void *b = (const char *)sg->w + ((size_t)jl * k + (size_t)pc) * NR * es;
    /* the weights that come next in memory (the next k block of this panel, or the next panel):
     * fetched into L2 a share at a time while this block runs, so the first pass over them
     * does not wait on DRAM (prefetches never fault, past the end included) */
    const char *next = (const char *)b + (size_t)kc * NR * es;
    int64_t lines = (int64_t)((size_t)KC * NR * es / 64), per = (lines + mp - 1) / mp;
    for (int64_t i = 0; i < mp; i++) {
        int64_t rows = g->mb - i * MR < MR ? g->mb - i * MR : MR;
        const float *a = g->ap + apanel_offset(i, pc, k, mp);
        for (int64_t l = i * per; l < (i + 1) * per && l < lines; l++) __builtin_prefetch(next + l * 64, 0, 2);
        float *c = sg->y + (g->m0 + i * MR) * sg->ldy + jl * NR;
        if (rows == MR && cols == NR) {
            ukr(g->avx2, kc, a, b, g->wdt, c, sg->ldy, add);
            continue;
        }
        ukr(g->avx2, kc, a, b, g->wdt, edge, NR, 0);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t q = 0; q < cols; q++)
                c[r * sg->ldy + q] = add ? c[r * sg->ldy + q] + edge[r * NR + q] : edge[r * NR + q];
    }
}


static void gemm_range(gemm_ctx *g, int64_t j0, int64_t j1)
{
    float edge[MR * NR];
    int s = 0;
    for (int64_t j = j0; j < j1; j++) {
        while (j >= g->pstart[s + 1]) s++;
        for (int64_t pc = 0; pc < g->k; pc += KC) panel_block(g, j, s, pc, edge);
    }
}

/* Each worker takes the next `grab` panels until none are left: a worker slowed down (another
 * process on its core, a smaller core) does less of the work instead of holding up the GEMM, as
 * a fixed split would. Which worker computes a panel does not change its values. */
static void gemm_worker(void *arg, int64_t t0, int64_t t1)
{
    gemm_ctx *g = arg;
    int64_t total = g->pstart[g->nseg];
    for (;;) {
        int64_t j0 = (int64_t)atomic_fetch_add(&g->next, (long long)g->grab);
        if (j0 >= total) break;
        gemm_range(g, j0, j0 + g->grab < total ? j0 + g->grab : total);
    }
}

int dfm_cpu_linear(const float *x, int64_t m, int64_t k, dfm_dtype wdt, const dfm_cpu_linear_seg *seg, int nseg,
                   int accumulate, int bf16_compute)
{
    if (wdt != DFM_F32 && wdt != DFM_BF16)
        return dfm_fail(DFM_E_UNSUPPORTED, "linear: packed weights of %s", dfm_dtype_name(wdt));
    if (m <= 0 || nseg <= 0) return 0;
    if (k == 0) {
        if (!accumulate)
            for (int s = 0; s < nseg; s++)
                for (int64_t r = 0; r < m; r++) memset(seg[s].y + r * seg[s].ldy, 0, (size_t)seg[s].n * sizeof(float));
        return 0;
    }
    if (nseg > DFM_CPU_LINEAR_MAXSEG)
        return dfm_fail(DFM_E_ARG, "linear: %d weights in one pass (at most %d)", nseg, DFM_CPU_LINEAR_MAXSEG);
    int64_t pstart[DFM_CPU_LINEAR_MAXSEG + 1];
    pstart[0] = 0;
    for (int s = 0; s < nseg; s++) pstart[s + 1] = pstart[s] + (seg[s].n + NR - 1) / NR;
    /* rows per block: as many as fit A_BLOCK_BYTES, the blocks of equal size */
    int64_t mb_max = A_BLOCK_BYTES / (k * (int64_t)sizeof(float));
    mb_max = mb_max > MB_MAX ? MB_MAX : mb_max < MB_MIN ? MB_MIN : mb_max;
    int64_t nblk = (m + mb_max - 1) / mb_max, mb = (m + nblk - 1) / nblk;
    mb = (mb + MR - 1) / MR * MR;
    float *ap = dfm_cpu_scratch(1, (size_t)mb * (size_t)k * sizeof(float));
    if (!ap)
        return dfm_fail(DFM_E_NOMEM, "linear: out of memory for %lld x %lld rows of scratch", (long long)mb, (long long)k);
    for (int64_t m0 = 0; m0 < m; m0 += mb) {
        int64_t rows = m - m0 < mb ? m - m0 : mb, mp = (rows + MR - 1) / MR;
        apack_ctx pa = {x, ap, m0, rows, k, bf16_compute != 0};
        dfm_cpu_parallel(mp, 1 + 16384 / k, apack_range, &pa);
        gemm_ctx g = {ap, m0, rows, k, wdt, seg, pstart, nseg, accumulate != 0, dfm_cpu_use_avx2(), 0, 1};
        int64_t workers = dfm_cpu_threads(), total = pstart[nseg];
        /* about 16 grabs per worker (at least one panel each) */
        g.grab = total / (workers * 16) > 1 ? total / (workers * 16) : 1;
        atomic_init(&g.next, 0);
        dfm_cpu_parallel(workers < total ? workers : total, 1, gemm_worker, &g);
    }
    return 0;
}
