/* conv3d.c — 3-D convolution as GEMMs (conv3d.h). ref: torch.nn.functional.conv3d
 *
 * Five algorithms, picked by shape (dfm_cpu_conv3d_path):
 *   winograd 3x3 spatial kernel, spatial stride 1 and padding 1, time stride 1, cin and cout >= 16
 *           (the VAE's resblock and upsample convs): Winograd F(2x2, 3x3), conv3d_winograd.c.
 *   gemm    1x1x1, stride 1, no padding: y[cout, THW] = W[cout, cin] @ x[cin, THW], one sgemm.
 *   taps    spatial stride 1 (any kernel, time stride, padding): the input is copied once per tile
 *           into a zero-padded scratch Xs[cin, frames, rows, Wp] (Wp = padded width). In that
 *           layout every output position is a flat index p, and tap (dt, dh, dw) reads input at
 *           p + (dt*rows + dh)*Wp + dw, so the whole tile is one sgemm per tap:
 *               C[cout, p] += W_tap[cout, cin] @ Xs[cin, p + off(tap)]     (ldb = channel stride)
 *           with N = every position of the tile (in column parts, each part doing every tap on
 *           its columns, so its part of C stays in cache). Positions in the right padding columns
 *           (and between row chunks) are computed and thrown away: a (kw-1)/Wp overhead. Then the
 *           valid interior of C is copied into y with the bias. Taps that would only read whole
 *           zero-padding frames are skipped (causal convs start with 2 zero frames).
 *   direct  the taps tile with few output channels (cout < 8, e.g. the decoder's conv_out): the
 *           per-tap GEMMs would be all packing, so a register-blocked loop accumulates 3 output
 *           channels x 32 positions over every (cin, tap) straight from the tile (taps whose
 *           frames are all zero padding for the whole tile skipped).
 *   im2col  everything else (the VAE's 3x3 stride-2 downsample, tiny cin): blocks of output rows
 *           are unfolded into B[cin*kt*kh*kw, positions] (bounded scratch), then the sgemm with
 *           the weights in their own layout (in column parts) writes straight into y.
 * Tiles and unfolded blocks are bounded by g_tile_bytes (32 MiB): a tile is as many whole output
 * frames as fit, or one frame's rows in chunks. Scratch slots: 0 weights, 1 input tile / unfolded
 * block, 2 output tile, 3 weights before permutation. The copies use dfm_cpu_parallel.
 * Deterministic (DESIGN.md §5): GEMMs are cut into column parts whose width depends on the GEMM's
 * shape only (gemm_parts), each part one single-threaded OpenBLAS call on our threads: OpenBLAS's
 * results depend on its own thread count and on the N of a call, so neither may follow the
 * thread count. Tiles and blocks depend on the shapes and g_tile_bytes only.
 * bf16_compute: weights and the activations are rounded to bf16 where they are copied into
 * scratch; products of bf16 values are exact in f32, so the only difference from a bf16-input,
 * f32-accumulate GEMM is the order of the f32 sums.
 * Not here: backward (lib/nn), CUDA (kernels/cuda).
 */
#include "cpu/conv3d.h"
#include "base/error.h"
#include "cpu/conv3d_winograd.h"
#include "cpu/cpu.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define DFM_CONV_X86 1
#endif

#define DEFAULT_TILE_BYTES ((size_t)32 << 20)

static size_t g_tile_bytes = DEFAULT_TILE_BYTES;
static const char *g_force;

void dfm_cpu_conv3d_set_tile_bytes(size_t bytes) { g_tile_bytes = bytes ? bytes : DEFAULT_TILE_BYTES; }
void dfm_cpu_conv3d_force_path(const char *path) { g_force = path; }

const char *dfm_cpu_conv3d_path(int64_t cin, int64_t cout, int kt, int kh, int kw, const int stride[3],
                                const int pad[6])
{
    int nopad = !pad[0] && !pad[1] && !pad[2] && !pad[3] && !pad[4] && !pad[5];
    int s1 = stride[0] == 1 && stride[1] == 1 && stride[2] == 1;
    if (kt == 1 && kh == 1 && kw == 1 && s1 && nopad) return "gemm";
    int taps_ok = stride[1] == 1 && stride[2] == 1;
    int wino_ok = kh == 3 && kw == 3 && s1 && pad[2] == 1 && pad[3] == 1 && pad[4] == 1 && pad[5] == 1;
    if (g_force && !strcmp(g_force, "im2col")) return "im2col";
    if (g_force && taps_ok && (!strcmp(g_force, "taps") || !strcmp(g_force, "direct"))) return g_force;
    if (g_force && wino_ok && !strcmp(g_force, "winograd")) return "winograd";
    if (!taps_ok) return "im2col";
    if (wino_ok && cin >= 16 && cout >= 16) return "winograd";
    if (cout < 8) return "direct"; /* GEMMs with M < 8 are mostly packing */
    return cin >= 8 ? "taps" : "im2col"; /* with very few input channels each tap's K is tiny */
}

/* Everything a conv call knows, shared by the parallel copy loops. */
typedef struct {
    const float *x;
    int64_t cin, t, h, w, cout;
    int kt, kh, kw, st, sh, sw;
    int pf, ptop, pl;
    int64_t to, ho, wo; /* output dims */
    const float *bias;  /* f32 or NULL */
    float *y;
    int round;
    /* taps tile */
    float *xs, *cs;
    int64_t t0, r0, ft, fr, fi, hs, wp, l;
    /* im2col block */
    float *b;
    int64_t R0, nrows;
} conv_ctx;

static inline void copy_row(float *d, const float *s, int64_t n, int round)
{
    if (round)
        dfm_cpu_round_bf16(d, s, n);
    else
        memcpy(d, s, n * sizeof(float));
}

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* ---- weights ----------------------------------------------------------------------------- */

/* The weights as f32 [cout, cin*kt*kh*kw] (their own layout): wt itself when already f32 and no
 * rounding is asked, else converted into scratch `slot`. */
static const float *weights_f32(const void *wt, dfm_dtype wdt, size_t n, int round, int slot, int *rc)
{
    if (wdt == DFM_F32 && !round) return wt;
    float *d = dfm_cpu_scratch(slot, n * sizeof(float));
    if (!d) {
        *rc = DFM_E_NOMEM;
        return NULL;
    }
    *rc = dfm_cpu_to_f32(d, wt, wdt, n, round);
    return *rc < 0 ? NULL : d;
}

/* ---- GEMMs in column parts ------------------------------------------------------------------ */

#define PART_MACS ((int64_t)1 << 23) /* multiply-adds per part at least (~0.3 ms on one core) */

/* Width of the column parts of an [m, k] @ [k, n] product: multiples of 64 columns, at least
 * 128, about PART_MACS each. The shape only, never the threads. */
static int64_t part_cols(int64_t m, int64_t k)
{
    int64_t mk = m * k > 0 ? m * k : 1, cols = (PART_MACS + mk - 1) / mk;
    cols = (cols + 63) / 64 * 64;
    return cols < 128 ? 128 : cols;
}

typedef struct {
    int64_t m, n, k, lda, ldb, ldc, cols;
    const float *a, *b;
    float beta, *c;
} parts_ctx;

static void parts_range(void *arg, int64_t p0, int64_t p1)
{
    const parts_ctx *g = arg;
    for (int64_t p = p0; p < p1; p++) {
        int64_t j0 = p * g->cols, nn = g->n - j0 < g->cols ? g->n - j0 : g->cols;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)g->m, (int)nn, (int)g->k, 1.0f, g->a,
                    (int)g->lda, g->b + j0, (int)g->ldb, g->beta, g->c + j0, (int)g->ldc);
    }
}

/* C[m, n] = beta C + A[m, k] @ B[k, n] (row-major, leading dimensions given): the columns in
 * parts of part_cols(m, k), each one single-threaded sgemm, the parts spread over our threads. */
static void gemm_parts(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *b, int64_t ldb,
                       float beta, float *c, int64_t ldc)
{
    parts_ctx g = {m, n, k, lda, ldb, ldc, part_cols(m, k), a, b, beta, c};
    int saved = dfm_cpu_blas_single();
    dfm_cpu_parallel(cdiv(n, g.cols), 1, parts_range, &g);
    dfm_cpu_blas_restore(saved);
}

/* ---- gemm: 1x1x1 --------------------------------------------------------------------------- */

static void add_bias_range(void *arg, int64_t i0, int64_t i1)
{
    conv_ctx *c = arg;
    int64_t n = c->to * c->ho * c->wo;
    for (int64_t co = i0; co < i1; co++) {
        float b = c->bias[co], *row = c->y + co * n;
        for (int64_t i = 0; i < n; i++) row[i] += b;
    }
}

typedef struct {
    const float *x;
    float *d;
    int64_t n, c0, nb;
} round_cols_ctx;

static void round_cols_range(void *arg, int64_t i0, int64_t i1)
{
    round_cols_ctx *r = arg;
    for (int64_t ci = i0; ci < i1; ci++) dfm_cpu_round_bf16(r->d + ci * r->nb, r->x + ci * r->n + r->c0, r->nb);
}

static int conv_gemm(conv_ctx *c, const float *a)
{
    int64_t n = c->t * c->h * c->w;
    if (!c->round) {
        gemm_parts(c->cout, n, c->cin, a, c->cin, c->x, n, 0.0f, c->y, n);
    } else {
        /* round the activations in column blocks */
        int64_t nb = (int64_t)(g_tile_bytes / sizeof(float)) / c->cin;
        if (nb < 64) nb = 64;
        if (nb > n) nb = n;
        float *d = dfm_cpu_scratch(1, (size_t)c->cin * nb * sizeof(float));
        if (!d) return DFM_E_NOMEM;
        for (int64_t c0 = 0; c0 < n; c0 += nb) {
            int64_t k = n - c0 < nb ? n - c0 : nb;
            round_cols_ctx r = {c->x, d, n, c0, k};
            dfm_cpu_parallel(c->cin, 1 + 16384 / k, round_cols_range, &r);
            gemm_parts(c->cout, k, c->cin, a, c->cin, d, k, 0.0f, c->y + c0, n);
        }
    }
    if (c->bias) dfm_cpu_parallel(c->cout, 1 + 65536 / (n ? n : 1), add_bias_range, c);
    return 0;
}

/* ---- taps: one GEMM per kernel tap over a padded tile ------------------------------------ */

/* Rows j of Xs[cin][fi][hs][wp]: input row or zeros. */
static void taps_fill_range(void *arg, int64_t i0, int64_t i1)
{
    conv_ctx *c = arg;
    for (int64_t j = i0; j < i1; j++) {
        int64_t rs = j % c->hs, fi = (j / c->hs) % c->fi, ci = j / (c->hs * c->fi);
        int64_t ti = c->t0 * c->st + fi - c->pf, hi = c->r0 + rs - c->ptop;
        float *d = c->xs + j * c->wp;
        if (ti < 0 || ti >= c->t || hi < 0 || hi >= c->h) {
            memset(d, 0, c->wp * sizeof(float));
            continue;
        }
        const float *s = c->x + ((ci * c->t + ti) * c->h + hi) * c->w;
        memset(d, 0, c->pl * sizeof(float));
        copy_row(d + c->pl, s, c->w, c->round);
        memset(d + c->pl + c->w, 0, (c->wp - c->pl - c->w) * sizeof(float));
    }
}

/* Rows j of the valid output (co, f, r): y = C + bias. */
static void taps_store_range(void *arg, int64_t i0, int64_t i1)
{
    conv_ctx *c = arg;
    for (int64_t j = i0; j < i1; j++) {
        int64_t r = j % c->fr, f = (j / c->fr) % c->ft, co = j / (c->fr * c->ft);
        const float *s = c->cs + co * c->l + (f * c->hs + r) * c->wp;
        float *d = c->y + ((co * c->to + c->t0 + f) * c->ho + c->r0 + r) * c->wo;
        if (c->bias) {
            float b = c->bias[co];
            for (int64_t i = 0; i < c->wo; i++) d[i] = s[i] + b;
        } else {
            memcpy(d, s, c->wo * sizeof(float));
        }
    }
}

/* The tile's tap GEMMs in column parts: part p does columns [p*cols, (p+1)*cols) of C (every
 * output channel) for every tap in turn, so each output sums its taps in the same order and
 * every GEMM's shape follows the tile alone (deterministic whatever the threads); the part's
 * C stays in cache across the taps. Tap g covers columns [c0, c0 + n) of C and reads Xs from
 * boff on; the first tap initializes C (beta 0) when it covers the whole tile (fresh), else the
 * part is zeroed first. */
typedef struct {
    int tap;
    int64_t c0, n, boff;
} tap_gemm;

typedef struct {
    const float *a, *xs;
    float *cs;
    const tap_gemm *tg;
    int ntg, fresh;
    int64_t cout, cin, kc, cstride, l, nused, cols;
} taps_parts_ctx;

static void taps_parts_range(void *arg, int64_t p0, int64_t p1)
{
    const taps_parts_ctx *g = arg;
    for (int64_t p = p0; p < p1; p++) {
        int64_t j0 = p * g->cols, j1 = j0 + g->cols < g->nused ? j0 + g->cols : g->nused;
        if (!g->fresh)
            for (int64_t co = 0; co < g->cout; co++) memset(g->cs + co * g->l + j0, 0, (j1 - j0) * sizeof(float));
        for (int i = 0; i < g->ntg; i++) {
            const tap_gemm *t = &g->tg[i];
            int64_t s = t->c0 > j0 ? t->c0 : j0, e = t->c0 + t->n < j1 ? t->c0 + t->n : j1;
            if (s >= e) continue;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)g->cout, (int)(e - s), (int)g->cin, 1.0f,
                        g->a + t->tap * g->kc, (int)g->cin, g->xs + t->boff + (s - t->c0), (int)g->cstride,
                        i == 0 && g->fresh ? 0.0f : 1.0f, g->cs + s, (int)g->l);
        }
    }
}

/* Output frames [lo, hi) of the current tile whose time tap dt reads a real input frame. */
static void tap_frames(const conv_ctx *c, int dt, int64_t *lo, int64_t *hi)
{
    int64_t a = 0, b = c->ft;
    while (a < b && (c->t0 + a) * c->st + dt - c->pf < 0) a++;
    while (b > a && (c->t0 + b - 1) * c->st + dt - c->pf >= c->t) b--;
    *lo = a;
    *hi = b;
}

/* ---- few output channels: a direct kernel over the same tile -------------------------------
 * With cout < 8 each tap's GEMM would have M = cout rows and spend its time packing B. Instead,
 * groups of 3 output channels are accumulated in registers over strips of 32 positions, reading
 * each tap's input straight from the tile (L1/L2 resident): C[co, p] = sum_ci,tap wd * Xs[ci,
 * p + off[tap]]. Weights as wd[group][ci][tap][3], zero-padded to whole groups. */

#define DSTRIP 32

typedef struct {
    const float *xs, *wd;
    float *cs;
    const int64_t *off; /* per tap */
    const int *act;     /* the taps that read real frames somewhere in the tile */
    int ntap, nact;
    int64_t cin, cout, cstride, l, n;
} direct_ctx;

static void direct_scalar(const direct_ctx *d, int64_t p0, int64_t p1)
{
    for (int64_t g = 0; 3 * g < d->cout; g++) {
        int nco = d->cout - 3 * g < 3 ? (int)(d->cout - 3 * g) : 3;
        for (int64_t p = p0; p < p1; p++) {
            float acc[3] = {0, 0, 0};
            for (int64_t ci = 0; ci < d->cin; ci++) {
                const float *xb = d->xs + ci * d->cstride + p, *w = d->wd + (g * d->cin + ci) * d->ntap * 3;
                for (int k = 0; k < d->nact; k++) {
                    int tap = d->act[k];
                    float x = xb[d->off[tap]];
                    for (int j = 0; j < 3; j++) acc[j] += w[3 * tap + j] * x;
                }
            }
            for (int j = 0; j < nco; j++) d->cs[(3 * g + j) * d->l + p] = acc[j];
        }
    }
}

#ifdef DFM_CONV_X86
/* Whole strips [p0, p1), p1 - p0 a multiple of DSTRIP. Blocks of DBLOCK positions with input
 * channels outermost, so each channel's rows stream through the block (prefetch friendly) while
 * the block's sums stay in L1. */
#define DBLOCK 512
__attribute__((target("avx2,fma"))) static void direct_avx2(const direct_ctx *d, int64_t p0, int64_t p1)
{
    float acc[3][DBLOCK] __attribute__((aligned(32)));
    for (int64_t g = 0; 3 * g < d->cout; g++) {
        int nco = d->cout - 3 * g < 3 ? (int)(d->cout - 3 * g) : 3;
        for (int64_t b0 = p0; b0 < p1; b0 += DBLOCK) {
            int64_t nb = p1 - b0 < DBLOCK ? p1 - b0 : DBLOCK;
            for (int j = 0; j < 3; j++) memset(acc[j], 0, nb * sizeof(float));
            for (int64_t ci = 0; ci < d->cin; ci++) {
                const float *xc = d->xs + ci * d->cstride + b0, *wc = d->wd + (g * d->cin + ci) * d->ntap * 3;
                for (int64_t q = 0; q < nb; q += DSTRIP) {
                    /* 12 accumulators written out: GCC -O2 keeps arrays of them in memory */
                    float *s0 = acc[0] + q, *s1 = acc[1] + q, *s2 = acc[2] + q;
                    __m256 a00 = _mm256_load_ps(s0), a01 = _mm256_load_ps(s0 + 8), a02 = _mm256_load_ps(s0 + 16),
                           a03 = _mm256_load_ps(s0 + 24), a10 = _mm256_load_ps(s1), a11 = _mm256_load_ps(s1 + 8),
                           a12 = _mm256_load_ps(s1 + 16), a13 = _mm256_load_ps(s1 + 24), a20 = _mm256_load_ps(s2),
                           a21 = _mm256_load_ps(s2 + 8), a22 = _mm256_load_ps(s2 + 16), a23 = _mm256_load_ps(s2 + 24);
                    for (int k = 0; k < d->nact; k++) {
                        int tap = d->act[k];
                        const float *xp = xc + q + d->off[tap], *w = wc + 3 * tap;
                        __m256 w0 = _mm256_broadcast_ss(w), w1 = _mm256_broadcast_ss(w + 1), w2 = _mm256_broadcast_ss(w + 2);
                        __m256 x = _mm256_loadu_ps(xp);
                        a00 = _mm256_fmadd_ps(w0, x, a00);
                        a10 = _mm256_fmadd_ps(w1, x, a10);
                        a20 = _mm256_fmadd_ps(w2, x, a20);
                        x = _mm256_loadu_ps(xp + 8);
                        a01 = _mm256_fmadd_ps(w0, x, a01);
                        a11 = _mm256_fmadd_ps(w1, x, a11);
                        a21 = _mm256_fmadd_ps(w2, x, a21);
                        x = _mm256_loadu_ps(xp + 16);
                        a02 = _mm256_fmadd_ps(w0, x, a02);
                        a12 = _mm256_fmadd_ps(w1, x, a12);
                        a22 = _mm256_fmadd_ps(w2, x, a22);
                        x = _mm256_loadu_ps(xp + 24);
                        a03 = _mm256_fmadd_ps(w0, x, a03);
                        a13 = _mm256_fmadd_ps(w1, x, a13);
                        a23 = _mm256_fmadd_ps(w2, x, a23);
                    }
                    _mm256_store_ps(s0, a00), _mm256_store_ps(s0 + 8, a01), _mm256_store_ps(s0 + 16, a02);
                    _mm256_store_ps(s0 + 24, a03), _mm256_store_ps(s1, a10), _mm256_store_ps(s1 + 8, a11);
                    _mm256_store_ps(s1 + 16, a12), _mm256_store_ps(s1 + 24, a13), _mm256_store_ps(s2, a20);
                    _mm256_store_ps(s2 + 8, a21), _mm256_store_ps(s2 + 16, a22), _mm256_store_ps(s2 + 24, a23);
                }
            }
            for (int j = 0; j < nco; j++) memcpy(d->cs + (3 * g + j) * d->l + b0, acc[j], nb * sizeof(float));
        }
    }
}
#endif

static void direct_range(void *arg, int64_t s0, int64_t s1)
{
    const direct_ctx *d = arg;
    int64_t p0 = s0 * DSTRIP, p1 = s1 * DSTRIP < d->n ? s1 * DSTRIP : d->n;
#ifdef DFM_CONV_X86
    if (dfm_cpu_use_avx2()) {
        int64_t full = p0 + (p1 - p0) / DSTRIP * DSTRIP;
        direct_avx2(d, p0, full);
        p0 = full;
    }
#endif
    direct_scalar(d, p0, p1);
}

static int conv_taps(conv_ctx *c, const float *wnat, int direct)
{
    int ntap = c->kt * c->kh * c->kw;
    int64_t kc = c->cout * c->cin, ng = (c->cout + 2) / 3;
    /* GEMMs: W_tap[tap][cout][cin]; direct: wd[group][ci][tap][3]; from W[cout][cin][tap] */
    size_t na = direct ? (size_t)ng * c->cin * ntap * 3 : (size_t)ntap * kc;
    float *a = dfm_cpu_scratch(0, na * sizeof(float));
    int64_t *off = malloc((size_t)ntap * sizeof(int64_t));
    int *act = malloc((size_t)ntap * sizeof(int));
    tap_gemm *tg = malloc((size_t)ntap * sizeof(tap_gemm));
    if (!a || !off || !act || !tg) {
        free(off);
        free(act);
        free(tg);
        return DFM_E_NOMEM;
    }
    if (direct) memset(a, 0, na * sizeof(float));
    for (int64_t co = 0; co < c->cout; co++)
        for (int64_t ci = 0; ci < c->cin; ci++) {
            const float *s = wnat + (co * c->cin + ci) * ntap;
            for (int tap = 0; tap < ntap; tap++) {
                if (direct)
                    a[(((co / 3) * c->cin + ci) * ntap + tap) * 3 + co % 3] = s[tap];
                else
                    a[tap * kc + co * c->cin + ci] = s[tap];
            }
        }

    /* Tile: ft whole output frames (time stride 1 only), else one frame in chunks of fr rows. */
    int64_t wp = c->wo + c->kw - 1, hp = c->ho + c->kh - 1; /* padded input width, height */
    size_t budget = g_tile_bytes / sizeof(float);
    int64_t plane = (int64_t)c->cin * hp * wp; /* one padded input frame, all channels */
    int64_t ft = 1, fr = c->ho;
    if ((int64_t)budget >= plane * c->kt) {
        if (c->st == 1) {
            ft = (int64_t)budget / plane - (c->kt - 1);
            if (ft > c->to) ft = c->to;
            ft = cdiv(c->to, cdiv(c->to, ft)); /* equal tiles */
        }
    } else {
        fr = (int64_t)budget / (c->cin * c->kt * wp) - (c->kh - 1);
        if (fr < 1) fr = 1;
        fr = cdiv(c->ho, cdiv(c->ho, fr));
    }
    int64_t hs = fr + c->kh - 1, fi = (ft - 1) * c->st + c->kt;
    int64_t cstride = fi * hs * wp; /* channel stride in Xs */
    int64_t l = ((ft - 1) * hs + fr - 1) * wp + c->wo;
    c->xs = dfm_cpu_scratch(1, (size_t)c->cin * cstride * sizeof(float));
    c->cs = c->xs ? dfm_cpu_scratch(2, (size_t)c->cout * l * sizeof(float)) : NULL;
    if (!c->xs || !c->cs) {
        free(off);
        free(act);
        free(tg);
        return DFM_E_NOMEM;
    }
    for (int dt = 0; dt < c->kt; dt++)
        for (int dh = 0; dh < c->kh; dh++)
            for (int dw = 0; dw < c->kw; dw++) off[(dt * c->kh + dh) * c->kw + dw] = (dt * hs + dh) * wp + dw;
    c->ft = ft;
    c->fi = fi;
    c->hs = hs;
    c->wp = wp;
    c->l = l;

    for (int64_t t0 = 0; t0 < c->to; t0 += ft) {
        for (int64_t r0 = 0; r0 < c->ho; r0 += fr) {
            c->t0 = t0;
            c->r0 = r0;
            c->ft = c->to - t0 < ft ? c->to - t0 : ft;
            c->fr = c->ho - r0 < fr ? c->ho - r0 : fr;
            int64_t nft = c->ft, nfr = c->fr;
            int64_t rows = c->cin * fi * hs;
            dfm_cpu_parallel(rows, 1 + 16384 / wp, taps_fill_range, c);
            if (direct) {
                int nact = 0;
                for (int dt = 0; dt < c->kt; dt++) {
                    int64_t lo, hi;
                    tap_frames(c, dt, &lo, &hi);
                    for (int j = 0; lo < hi && j < c->kh * c->kw; j++) act[nact++] = dt * c->kh * c->kw + j;
                }
                direct_ctx d = {c->xs, a, c->cs, off, act, ntap, nact, c->cin, c->cout, cstride, l,
                                ((nft - 1) * hs + nfr - 1) * wp + c->wo};
                dfm_cpu_parallel((d.n + DSTRIP - 1) / DSTRIP, 1 + 4096 / (c->cin * ntap), direct_range, &d);
                dfm_cpu_parallel(c->cout * nft * nfr, 1 + 16384 / c->wo, taps_store_range, c);
                continue;
            }

            /* Tap dt only reads real input for output frames [lo, hi) of this tile; when some
             * tap covers the whole tile it goes first and initializes C (beta 0). */
            int full = -1;
            for (int dt = 0; dt < c->kt && full < 0; dt++) {
                int64_t lo, hi;
                tap_frames(c, dt, &lo, &hi);
                if (lo == 0 && hi == nft) full = dt;
            }
            int ntg = 0;
            for (int k = 0; k < c->kt; k++) {
                int dt = full < 0 ? k : k == 0 ? full : k <= full ? k - 1 : k;
                int64_t f0, f1;
                tap_frames(c, dt, &f0, &f1);
                if (f0 >= f1) continue;
                int64_t n = ((f1 - f0 - 1) * hs + nfr - 1) * wp + c->wo;
                for (int dh = 0; dh < c->kh; dh++)
                    for (int dw = 0; dw < c->kw; dw++)
                        tg[ntg++] = (tap_gemm){(dt * c->kh + dh) * c->kw + dw, f0 * hs * wp, n,
                                               ((f0 * c->st + dt) * hs + dh) * wp + dw};
            }
            taps_parts_ctx g = {a, c->xs, c->cs, tg, ntg, full >= 0, c->cout, c->cin, kc, cstride, l,
                                ((nft - 1) * hs + nfr - 1) * wp + c->wo, part_cols(c->cout, c->cin)};
            int saved = dfm_cpu_blas_single();
            dfm_cpu_parallel(cdiv(g.nused, g.cols), 1, taps_parts_range, &g);
            dfm_cpu_blas_restore(saved);
            dfm_cpu_parallel(c->cout * nft * nfr, 1 + 16384 / c->wo, taps_store_range, c);
        }
    }
    free(off);
    free(act);
    free(tg);
    return 0;
}

/* ---- im2col: unfolded blocks of output rows ------------------------------------------------ */

/* Rows k of B[K][nrows*wo], k = ((ci*kt + dt)*kh + dh)*kw + dw. */
static void im2col_fill_range(void *arg, int64_t i0, int64_t i1)
{
    conv_ctx *c = arg;
    int64_t nb = c->nrows * c->wo;
    for (int64_t k = i0; k < i1; k++) {
        int dw = (int)(k % c->kw), dh = (int)((k / c->kw) % c->kh), dt = (int)((k / (c->kw * c->kh)) % c->kt);
        int64_t ci = k / ((int64_t)c->kw * c->kh * c->kt);
        /* output columns wo whose input column wo*sw + dw - pl is inside [0, w) */
        int64_t w0 = 0, w1 = c->wo;
        while (w0 < w1 && w0 * c->sw + dw - c->pl < 0) w0++;
        while (w1 > w0 && (w1 - 1) * c->sw + dw - c->pl >= c->w) w1--;
        float *d = c->b + k * nb;
        for (int64_t rr = 0; rr < c->nrows; rr++, d += c->wo) {
            int64_t R = c->R0 + rr, to = R / c->ho, ho = R % c->ho;
            int64_t ti = to * c->st + dt - c->pf, hi = ho * c->sh + dh - c->ptop;
            if (ti < 0 || ti >= c->t || hi < 0 || hi >= c->h || w0 >= w1) {
                memset(d, 0, c->wo * sizeof(float));
                continue;
            }
            /* input column of output column i: i*sw + dw - pl, inside the row for [w0, w1) */
            const float *s = c->x + ((ci * c->t + ti) * c->h + hi) * c->w;
            int64_t x0 = w0 * c->sw + dw - c->pl;
            for (int64_t i = 0; i < w0; i++) d[i] = 0;
            if (c->sw == 1) {
                copy_row(d + w0, s + x0, w1 - w0, c->round);
            } else if (c->round) {
                for (int64_t i = w0; i < w1; i++) d[i] = dfm_cpu_round_bf16_1(s[x0 + (i - w0) * c->sw]);
            } else {
                for (int64_t i = w0; i < w1; i++) d[i] = s[x0 + (i - w0) * c->sw];
            }
            for (int64_t i = w1; i < c->wo; i++) d[i] = 0;
        }
    }
}

static void im2col_bias_range(void *arg, int64_t i0, int64_t i1)
{
    conv_ctx *c = arg;
    int64_t n = c->to * c->ho * c->wo, nb = c->nrows * c->wo;
    for (int64_t co = i0; co < i1; co++) {
        float b = c->bias[co], *row = c->y + co * n + c->R0 * c->wo;
        for (int64_t i = 0; i < nb; i++) row[i] += b;
    }
}

static int conv_im2col(conv_ctx *c, const float *a)
{
    int64_t kk = c->cin * c->kt * c->kh * c->kw;
    int64_t rows = c->to * c->ho, n = rows * c->wo;
    int64_t nrows = (int64_t)(g_tile_bytes / sizeof(float)) / (kk * c->wo);
    if (nrows < 1) nrows = 1;
    if (nrows > rows) nrows = rows;
    nrows = cdiv(rows, cdiv(rows, nrows));
    c->b = dfm_cpu_scratch(1, (size_t)kk * nrows * c->wo * sizeof(float));
    if (!c->b) return DFM_E_NOMEM;
    for (int64_t R0 = 0; R0 < rows; R0 += nrows) {
        c->R0 = R0;
        c->nrows = rows - R0 < nrows ? rows - R0 : nrows;
        int64_t nb = c->nrows * c->wo;
        dfm_cpu_parallel(kk, 1 + 16384 / nb, im2col_fill_range, c);
        gemm_parts(c->cout, nb, kk, a, kk, c->b, nb, 0.0f, c->y + R0 * c->wo, n);
        if (c->bias) dfm_cpu_parallel(c->cout, 1 + 65536 / nb, im2col_bias_range, c);
    }
    return 0;
}

/* ---- entry --------------------------------------------------------------------------------- */

int dfm_cpu_conv3d(const float *x, int64_t cin, int64_t t, int64_t h, int64_t w, const void *wt,
                   dfm_dtype wdt, int64_t cout, int kt, int kh, int kw, const void *bias,
                   dfm_dtype bdt, float *y, const int stride[3], const int pad[6], int bf16_compute)
{
    conv_ctx c = {.x = x, .cin = cin, .t = t, .h = h, .w = w, .cout = cout, .kt = kt, .kh = kh,
                  .kw = kw, .st = stride[0], .sh = stride[1], .sw = stride[2], .pf = pad[0],
                  .ptop = pad[2], .pl = pad[4], .y = y, .round = bf16_compute != 0};
    c.to = (t + pad[0] + pad[1] - kt) / stride[0] + 1;
    c.ho = (h + pad[2] + pad[3] - kh) / stride[1] + 1;
    c.wo = (w + pad[4] + pad[5] - kw) / stride[2] + 1;
    if (c.to <= 0 || c.ho <= 0 || c.wo <= 0 || cout <= 0) return 0;
    int64_t kk = cin * kt * kh * kw;
    if (kk == 0) { /* no inputs: y = bias */
        memset(y, 0, (size_t)cout * c.to * c.ho * c.wo * sizeof(float));
    }
    int rc = 0;
    float *bf = NULL;
    if (bias) {
        bf = malloc((size_t)cout * sizeof(float));
        if (!bf) return dfm_fail(DFM_E_NOMEM, "conv3d: out of memory");
        if ((rc = dfm_cpu_to_f32(bf, bias, bdt, cout, 0)) < 0) goto done;
        c.bias = bf;
    }
    if (kk == 0) {
        if (bias) add_bias_range(&c, 0, cout);
        goto done;
    }
    const char *path = dfm_cpu_conv3d_path(cin, cout, kt, kh, kw, stride, pad);
    int taps = !strcmp(path, "taps"), direct = !strcmp(path, "direct"), wino = !strcmp(path, "winograd");
    const float *a = weights_f32(wt, wdt, (size_t)cout * kk, c.round, taps || direct || wino ? 3 : 0, &rc);
    if (!a) goto done;
    if (wino)
        rc = dfm_cpu_conv3d_winograd(x, cin, t, h, w, a, cout, kt, c.pf, c.to, c.bias, y, c.round, 2 * g_tile_bytes);
    else if (!strcmp(path, "gemm"))
        rc = conv_gemm(&c, a);
    else if (taps || direct)
        rc = conv_taps(&c, a, direct);
    else
        rc = conv_im2col(&c, a);
done:
    free(bf);
    if (rc == DFM_E_NOMEM) dfm_fail(rc, "conv3d: out of memory for scratch");
    return rc;
}
