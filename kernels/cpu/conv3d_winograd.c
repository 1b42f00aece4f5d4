/* conv3d_winograd.c — 3x3 spatial convolutions by Winograd F(2x2, 3x3) (conv3d_winograd.h).
 * ref: Lavin & Gray 2016, "Fast Algorithms for Convolutional Neural Networks", section 4.
 *
 * The output is cut into 2x2 tiles; tile (ty, tx) reads the 4x4 input patch d at rows 2ty-1..2ty+2
 * and columns 2tx-1..2tx+2 (zeros outside the image). With the standard matrices (points 0, 1, -1)
 *     B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]   G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1]
 *     A^T = [1 1 1 0; 0 1 -1 -1]
 * a 3x3 correlation is Y = A^T [ (G g G^T) .* (B^T d B) ] A, and the sum over input channels and
 * time taps moves inside: for each of the 16 positions p of the 4x4 transformed tile,
 *     M[p][cout, tile] = sum_dt U[p][cout, (dt, cin)] @ V[p][(frame o + dt - pf, cin), tile]
 * one sgemm per position and output frame, K = (time taps that read real frames) * cin: the
 * transformed input is stored V[p][frame][cin][tile], so consecutive frames are consecutive rows
 * of K and the time taps need no GEMMs of their own. 2.25x fewer multiplications than the direct
 * GEMMs, for transforms that are linear in the data (~8 adds per input and ~6 per output value).
 *
 * Blocks: output frames in chunks of fo (all of them unless that leaves too few tiles per GEMM)
 * times runs of nb consecutive tiles (row-major over the tile grid), sized so that one block's V
 * and M fit `budget`. A block is done on one scratch: the input transform, then per output frame
 * 16 single-threaded GEMMs (one per position) and the output transform with the bias, which
 * writes only the valid outputs (odd heights and widths end in half tiles).
 * Threads: whole blocks per worker (taken in turn) for as many blocks as fill every worker;
 * the few left over (fewer than the threads) one at a time with the transforms and the 16 GEMMs
 * spread over the threads. Whole blocks per thread measured 5-15% faster than splitting each
 * block (no hand-off per step, each block stays in one core's caches).
 * Deterministic (DESIGN.md §5): the blocks, hence every GEMM's shape and operands, depend on the
 * shapes and `budget` only, never on the thread count, and OpenBLAS runs single-threaded (its
 * results depend on the GEMM's N and on its own thread count); both ways of running a block make
 * the same calls, so the output bits are the same whatever the threads and the layout.
 * Numerics: the transforms add at most 4 values per step, so results stay within a few f32
 * roundings of the direct sums (relative to sum |x w|); bf16_compute rounds the activations (and
 * the caller the weights) to bf16 before the transforms.
 * Not here: other kernel sizes, strides or paddings; F(4x4, 3x3) (its larger transform constants
 * cost accuracy); caching transformed weights across calls.
 */
#include "cpu/conv3d_winograd.h"
#include "base/error.h"
#include "cpu/cpu.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define WINO_X86 1
#endif

#define MAXCOLS 512 /* tile columns transformed at once: bounds the row buffers on the stack */

typedef struct {
    const float *x, *wt, *bias;
    float *y, *u, *v, *m;
    int64_t cin, t, h, w, cout, to, kk; /* kk = kt * cin, the columns of U */
    int64_t ntx;                        /* tiles per row */
    int kt, pf, round;
    /* current block: input frames [i0, i0 + nfi), tiles [q0, q0 + nb) in row-major order, which
     * touch tile rows [ty0, ty0 + nrows); output frame ot for the output transform */
    int64_t i0, nfi, q0, nb, ty0, nrows, ot;
    /* current GEMMs: time taps [gdt0, gdt0 + gnt) read V from frame row gf */
    int64_t gf, gdt0, gnt;
} wino_ctx;

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* ---- weights: U[p][cout][dt * cin + ci] = (G g G^T)[p] -------------------------------------- */

/* One 3x3 kernel g (row-major) into u[p * ps], p = 0..15. */
static void weights_one(const float *g, float *u, int64_t ps)
{
    float a[4][3];
    for (int j = 0; j < 3; j++) {
        a[0][j] = g[j];
        a[1][j] = 0.5f * (g[j] + g[3 + j] + g[6 + j]);
        a[2][j] = 0.5f * (g[j] - g[3 + j] + g[6 + j]);
        a[3][j] = g[6 + j];
    }
    for (int i = 0; i < 4; i++) {
        u[(4 * i + 0) * ps] = a[i][0];
        u[(4 * i + 1) * ps] = 0.5f * (a[i][0] + a[i][1] + a[i][2]);
        u[(4 * i + 2) * ps] = 0.5f * (a[i][0] - a[i][1] + a[i][2]);
        u[(4 * i + 3) * ps] = a[i][2];
    }
}

#ifdef WINO_X86
/* The same for 8 input channels at once (kernels gstride apart); the same operations in the
 * same order, so the results are those of weights_one. */
__attribute__((target("avx2,fma"))) static void weights_avx2(const float *g, int gstride, float *u, int64_t ps)
{
    const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(gstride));
    const __m256 half = _mm256_set1_ps(0.5f);
    __m256 gv[9], a[4][3];
    for (int k = 0; k < 9; k++) gv[k] = _mm256_i32gather_ps(g + k, idx, 4);
    for (int j = 0; j < 3; j++) {
        a[0][j] = gv[j];
        a[1][j] = _mm256_mul_ps(half, _mm256_add_ps(_mm256_add_ps(gv[j], gv[3 + j]), gv[6 + j]));
        a[2][j] = _mm256_mul_ps(half, _mm256_add_ps(_mm256_sub_ps(gv[j], gv[3 + j]), gv[6 + j]));
        a[3][j] = gv[6 + j];
    }
    for (int i = 0; i < 4; i++) {
        _mm256_storeu_ps(u + (4 * i + 0) * ps, a[i][0]);
        _mm256_storeu_ps(u + (4 * i + 1) * ps, _mm256_mul_ps(half, _mm256_add_ps(_mm256_add_ps(a[i][0], a[i][1]), a[i][2])));
        _mm256_storeu_ps(u + (4 * i + 2) * ps, _mm256_mul_ps(half, _mm256_add_ps(_mm256_sub_ps(a[i][0], a[i][1]), a[i][2])));
        _mm256_storeu_ps(u + (4 * i + 3) * ps, a[i][2]);
    }
}
#endif

static void weights_range(void *arg, int64_t c0, int64_t c1)
{
    wino_ctx *c = arg;
    int64_t ps = c->cout * c->kk, gs = (int64_t)c->kt * 9; /* U's position stride; g's channel stride */
    for (int64_t co = c0; co < c1; co++)
        for (int dt = 0; dt < c->kt; dt++) {
            const float *g = c->wt + co * c->cin * gs + dt * 9;
            float *u = c->u + co * c->kk + dt * c->cin;
            int64_t ci = 0;
#ifdef WINO_X86
            if (dfm_cpu_use_avx2())
                for (; ci + 8 <= c->cin; ci += 8) weights_avx2(g + ci * gs, (int)gs, u + ci, ps);
#endif
            for (; ci < c->cin; ci++) weights_one(g + ci * gs, u + ci, ps);
        }
}

/* ---- input: V[p][f][ci][tile] = (B^T d B)[p] -------------------------------------------------
 * Per (frame, channel, tile row), at most MAXCOLS tiles at a time: the 4 input rows under the
 * tiles are copied with their zero padding into pr[i] (pr[i][j] = input column 2*tx0 - 1 + j),
 * split into even and odd columns (tile k's columns are e[k], o[k], e[k+1], o[k+1]) and
 * transformed along the rows (B^T d) into ue/uo; then along the columns (.. B) into V's 16 rows. */

typedef struct {
    float pr[4][2 * (MAXCOLS + 8)];
    float ue[4][MAXCOLS + 8], uo[4][MAXCOLS + 8];
} in_rows;

/* Vertical transform of the even/odd columns [k0, n). */
static void in_split_scalar(in_rows *b, int64_t k0, int64_t n)
{
    for (int64_t k = k0; k < n; k++) {
        float e0 = b->pr[0][2 * k], e1 = b->pr[1][2 * k], e2 = b->pr[2][2 * k], e3 = b->pr[3][2 * k];
        float o0 = b->pr[0][2 * k + 1], o1 = b->pr[1][2 * k + 1], o2 = b->pr[2][2 * k + 1], o3 = b->pr[3][2 * k + 1];
        b->ue[0][k] = e0 - e2, b->ue[1][k] = e1 + e2, b->ue[2][k] = e2 - e1, b->ue[3][k] = e1 - e3;
        b->uo[0][k] = o0 - o2, b->uo[1][k] = o1 + o2, b->uo[2][k] = o2 - o1, b->uo[3][k] = o1 - o3;
    }
}

/* Horizontal transform of tiles [k0, n) into V's rows v[4 * i + j] (row stride vs). */
static void in_store_scalar(const in_rows *b, float *v, int64_t vs, int64_t k0, int64_t n)
{
    for (int i = 0; i < 4; i++) {
        const float *e = b->ue[i], *o = b->uo[i];
        float *v0 = v + 4 * i * vs, *v1 = v0 + vs, *v2 = v1 + vs, *v3 = v2 + vs;
        for (int64_t k = k0; k < n; k++) {
            v0[k] = e[k] - e[k + 1];
            v1[k] = o[k] + e[k + 1];
            v2[k] = e[k + 1] - o[k];
            v3[k] = o[k] - o[k + 1];
        }
    }
}

#ifdef WINO_X86
/* Blocks of 8 even/odd columns; returns how far it got. */
__attribute__((target("avx2,fma"))) static int64_t in_split_avx2(in_rows *b, int64_t n)
{
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) {
        __m256 e[4], o[4];
        for (int i = 0; i < 4; i++) {
            __m256 lo = _mm256_loadu_ps(b->pr[i] + 2 * k), hi = _mm256_loadu_ps(b->pr[i] + 2 * k + 8);
            /* shuffle gives lanes (0 2 8 10 | 4 6 12 14); the permute puts them in order */
            e[i] = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0x88)), 0xd8));
            o[i] = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0xdd)), 0xd8));
        }
        _mm256_storeu_ps(b->ue[0] + k, _mm256_sub_ps(e[0], e[2]));
        _mm256_storeu_ps(b->ue[1] + k, _mm256_add_ps(e[1], e[2]));
        _mm256_storeu_ps(b->ue[2] + k, _mm256_sub_ps(e[2], e[1]));
        _mm256_storeu_ps(b->ue[3] + k, _mm256_sub_ps(e[1], e[3]));
        _mm256_storeu_ps(b->uo[0] + k, _mm256_sub_ps(o[0], o[2]));
        _mm256_storeu_ps(b->uo[1] + k, _mm256_add_ps(o[1], o[2]));
        _mm256_storeu_ps(b->uo[2] + k, _mm256_sub_ps(o[2], o[1]));
        _mm256_storeu_ps(b->uo[3] + k, _mm256_sub_ps(o[1], o[3]));
    }
    return k;
}

/* Blocks of 8 tiles; returns how far it got. */
__attribute__((target("avx2,fma"))) static int64_t in_store_avx2(const in_rows *b, float *v, int64_t vs, int64_t n)
{
    int64_t k = 0;
    for (; k + 8 <= n; k += 8)
        for (int i = 0; i < 4; i++) {
            __m256 e = _mm256_loadu_ps(b->ue[i] + k), e1 = _mm256_loadu_ps(b->ue[i] + k + 1);
            __m256 o = _mm256_loadu_ps(b->uo[i] + k), o1 = _mm256_loadu_ps(b->uo[i] + k + 1);
            float *v0 = v + 4 * i * vs + k;
            _mm256_storeu_ps(v0, _mm256_sub_ps(e, e1));
            _mm256_storeu_ps(v0 + vs, _mm256_add_ps(o, e1));
            _mm256_storeu_ps(v0 + 2 * vs, _mm256_sub_ps(e1, o));
            _mm256_storeu_ps(v0 + 3 * vs, _mm256_sub_ps(o, o1));
        }
    return k;
}
#endif

/* Tile row ty's part of the current block: tile columns [*a, *b). */
static void block_row(const wino_ctx *c, int64_t ty, int64_t *a, int64_t *b)
{
    int64_t s = c->q0 - ty * c->ntx, e = c->q0 + c->nb - ty * c->ntx;
    *a = s > 0 ? s : 0;
    *b = e < c->ntx ? e : c->ntx;
}

/* Tiles tx0 .. tx0 + ncols - 1 (ncols <= MAXCOLS) of tile row ty, input plane `plane`, into V's
 * 16 rows from v (row stride vs). */
static void input_tiles(const wino_ctx *c, in_rows *b, const float *plane, int64_t ty, int64_t tx0, int64_t ncols,
                        float *v, int64_t vs)
{
    int64_t n1 = ncols + 1;                /* even (and odd) columns the tiles read */
    int64_t np = (n1 + 7) / 8 * 8 * 2;     /* padded row length: whole blocks of 8 */
    int64_t x0 = 2 * tx0 - 1;              /* input column of pr[i][0] */
    int64_t a = x0 < 0 ? 0 : x0, e = x0 + 2 * n1 < c->w ? x0 + 2 * n1 : c->w; /* real columns [a, e) */
    for (int i = 0; i < 4; i++) {
        float *p = b->pr[i];
        int64_t row = 2 * ty - 1 + i;
        if (row < 0 || row >= c->h) {
            memset(p, 0, np * sizeof(float));
            continue;
        }
        memset(p, 0, (a - x0) * sizeof(float));
        if (c->round)
            dfm_cpu_round_bf16(p + (a - x0), plane + row * c->w + a, e - a);
        else
            memcpy(p + (a - x0), plane + row * c->w + a, (e - a) * sizeof(float));
        memset(p + (e - x0), 0, (np - (e - x0)) * sizeof(float));
    }
    int64_t k = 0;
#ifdef WINO_X86
    if (dfm_cpu_use_avx2()) k = in_split_avx2(b, n1);
#endif
    in_split_scalar(b, k, n1);
    k = 0;
#ifdef WINO_X86
    if (dfm_cpu_use_avx2()) k = in_store_avx2(b, v, vs, ncols);
#endif
    in_store_scalar(b, v, vs, k, ncols);
}

/* Items j: (frame f, channel ci, tile row r) of the block. */
static void input_range(void *arg, int64_t j0, int64_t j1)
{
    wino_ctx *c = arg;
    in_rows b;
    int64_t vs = c->nfi * c->cin * c->nb; /* V's position stride */
    for (int64_t j = j0; j < j1; j++) {
        int64_t r = j % c->nrows, ci = (j / c->nrows) % c->cin, f = j / (c->nrows * c->cin);
        int64_t ty = c->ty0 + r, a, e;
        block_row(c, ty, &a, &e);
        const float *plane = c->x + (ci * c->t + c->i0 + f) * c->h * c->w;
        float *v = c->v + (f * c->cin + ci) * c->nb + ty * c->ntx - c->q0;
        for (int64_t tx = a; tx < e; tx += MAXCOLS)
            input_tiles(c, &b, plane, ty, tx, e - tx < MAXCOLS ? e - tx : MAXCOLS, v + tx, vs);
    }
}

/* ---- output: y = A^T M A + bias --------------------------------------------------------------- */

static void out_scalar(const float *m, int64_t ps, float bias, float *y0, float *y1, int64_t ox, int64_t w)
{
    float q[16], p0[4], p1[4];
    for (int i = 0; i < 16; i++) q[i] = m[i * ps];
    for (int j = 0; j < 4; j++) {
        p0[j] = q[j] + q[4 + j] + q[8 + j];
        p1[j] = q[4 + j] - q[8 + j] - q[12 + j];
    }
    y0[ox] = p0[0] + p0[1] + p0[2] + bias;
    if (ox + 1 < w) y0[ox + 1] = p0[1] - p0[2] - p0[3] + bias;
    if (y1) {
        y1[ox] = p1[0] + p1[1] + p1[2] + bias;
        if (ox + 1 < w) y1[ox + 1] = p1[1] - p1[2] - p1[3] + bias;
    }
}

#ifdef WINO_X86
/* Blocks of 8 tiles whose 16 output columns are all inside the row; returns how far it got. */
__attribute__((target("avx2,fma"))) static int64_t out_avx2(const float *m, int64_t ps, float bias, float *y0,
                                                             float *y1, int64_t ox0, int64_t n, int64_t w)
{
    __m256 bv = _mm256_set1_ps(bias);
    int64_t k = 0;
    for (; k + 8 <= n && ox0 + 2 * k + 16 <= w; k += 8) {
        __m256 p0[4], p1[4];
        for (int j = 0; j < 4; j++) {
            __m256 q0 = _mm256_loadu_ps(m + j * ps + k), q1 = _mm256_loadu_ps(m + (4 + j) * ps + k);
            __m256 q2 = _mm256_loadu_ps(m + (8 + j) * ps + k), q3 = _mm256_loadu_ps(m + (12 + j) * ps + k);
            p0[j] = _mm256_add_ps(_mm256_add_ps(q0, q1), q2);
            p1[j] = _mm256_sub_ps(_mm256_sub_ps(q1, q2), q3);
        }
        for (int a = 0; a < 2; a++) {
            float *d = a ? y1 : y0;
            if (!d) break;
            const __m256 *p = a ? p1 : p0;
            __m256 l = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(p[0], p[1]), p[2]), bv);
            __m256 r = _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(p[1], p[2]), p[3]), bv);
            /* interleave l0 r0 l1 r1 ...: unpack within 128-bit lanes, then swap the middle halves */
            __m256 lo = _mm256_unpacklo_ps(l, r), hi = _mm256_unpackhi_ps(l, r);
            _mm256_storeu_ps(d + ox0 + 2 * k, _mm256_permute2f128_ps(lo, hi, 0x20));
            _mm256_storeu_ps(d + ox0 + 2 * k + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
        }
    }
    return k;
}
#endif

/* Items j: (output channel co, tile row r) of the block, for output frame ot. */
static void output_range(void *arg, int64_t j0, int64_t j1)
{
    wino_ctx *c = arg;
    int64_t ps = c->cout * c->nb; /* M's position stride */
    for (int64_t j = j0; j < j1; j++) {
        int64_t r = j % c->nrows, co = j / c->nrows, ty = c->ty0 + r, oy = 2 * ty, a, e;
        block_row(c, ty, &a, &e);
        const float *m = c->m + co * c->nb + ty * c->ntx - c->q0 + a;
        float b = c->bias ? c->bias[co] : 0.0f;
        float *y0 = c->y + ((co * c->to + c->ot) * c->h + oy) * c->w, *y1 = oy + 1 < c->h ? y0 + c->w : NULL;
        int64_t k = 0;
#ifdef WINO_X86
        if (dfm_cpu_use_avx2()) k = out_avx2(m, ps, b, y0, y1, 2 * a, e - a, c->w);
#endif
        for (; k < e - a; k++) out_scalar(m + k, ps, b, y0, y1, 2 * (a + k), c->w);
    }
}

/* ---- blocks --------------------------------------------------------------------------------- */

typedef struct {
    wino_ctx base; /* the call; block fields unset */
    int64_t fo, nb, nbk, nblk; /* output frames per chunk, tiles per block, blocks per chunk, blocks */
    size_t vn, mn;             /* V and M floats per worker */
    float *v, *m;
    int64_t nwhole;            /* blocks [0, nwhole) whole per worker, the rest split over threads */
    int64_t next;              /* next block for a worker (atomic) */
} wino_plan;

/* Positions [p0, p1): M[p] = U[p] (taps gdt0..) @ V[p] (frame row gf..), each one single-threaded
 * OpenBLAS call whose arguments do not depend on which thread makes it. */
static void gemm_range(void *arg, int64_t p0, int64_t p1)
{
    const wino_ctx *c = arg;
    for (int64_t p = p0; p < p1; p++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)c->cout, (int)c->nb, (int)(c->gnt * c->cin), 1.0f,
                    c->u + p * c->cout * c->kk + c->gdt0 * c->cin, (int)c->kk,
                    c->v + (p * c->nfi + c->gf) * c->cin * c->nb, (int)c->nb, 0.0f, c->m + p * c->cout * c->nb,
                    (int)c->nb);
}

/* Block b: output frame chunk b / nbk, tiles [(b % nbk) * nb, + nb). inner: its steps spread over
 * the threads (else all on the calling one). */
static void run_block(const wino_plan *pl, wino_ctx *c, int64_t b, int inner)
{
    int64_t ntiles = c->ntx * ((c->h + 1) / 2), cin = c->cin, cout = c->cout;
    int64_t o0 = b / pl->nbk * pl->fo, o1 = o0 + pl->fo < c->to ? o0 + pl->fo : c->to;
    int64_t i0 = o0 - c->pf > 0 ? o0 - c->pf : 0, i1 = o1 - 1 - c->pf + c->kt < c->t ? o1 - 1 - c->pf + c->kt : c->t;
    c->i0 = i0;
    c->nfi = i1 > i0 ? i1 - i0 : 0;
    c->q0 = b % pl->nbk * pl->nb;
    c->nb = ntiles - c->q0 < pl->nb ? ntiles - c->q0 : pl->nb;
    c->ty0 = c->q0 / c->ntx;
    c->nrows = (c->q0 + c->nb - 1) / c->ntx - c->ty0 + 1;
    int64_t ncols = c->nb < c->ntx ? c->nb : c->ntx; /* for the parallel loops' grain */
    if (c->nfi) {
        if (inner)
            dfm_cpu_parallel(c->nfi * cin * c->nrows, 1 + 2048 / ncols, input_range, c);
        else
            input_range(c, 0, c->nfi * cin * c->nrows);
    }
    for (int64_t ot = o0; ot < o1; ot++) {
        /* time taps [dt0, dt1) read real frames ot + dt - pf: rows from (ot + dt0 - pf - i0) * cin of V */
        int64_t dt0 = c->pf - ot > 0 ? c->pf - ot : 0, dt1 = c->t + c->pf - ot < c->kt ? c->t + c->pf - ot : c->kt;
        if (dt0 >= dt1) {
            memset(c->m, 0, (size_t)16 * cout * c->nb * sizeof(float));
        } else {
            c->gf = ot + dt0 - c->pf - i0;
            c->gdt0 = dt0;
            c->gnt = dt1 - dt0;
            if (inner) /* all 16 on one thread when they are small (~2^18 multiply-adds each at least) */
                dfm_cpu_parallel(16, cout * c->nb * c->gnt * cin >= ((int64_t)1 << 18) ? 1 : 16, gemm_range, c);
            else
                gemm_range(c, 0, 16);
        }
        c->ot = ot;
        if (inner)
            dfm_cpu_parallel(cout * c->nrows, 1 + 2048 / ncols, output_range, c);
        else
            output_range(c, 0, cout * c->nrows);
    }
}

/* Worker i: its own V and M, blocks [0, nwhole) taken in turn until none is left. */
static void worker_range(void *arg, int64_t i0, int64_t i1)
{
    wino_plan *pl = arg;
    for (int64_t i = i0; i < i1; i++) {
        wino_ctx c = pl->base;
        c.v = pl->v + i * pl->vn;
        c.m = pl->m + i * pl->mn;
        for (int64_t b; (b = __atomic_fetch_add(&pl->next, 1, __ATOMIC_RELAXED)) < pl->nwhole;)
            run_block(pl, &c, b, 0);
    }
}

/* ---- entry ------------------------------------------------------------------------------------ */

int dfm_cpu_conv3d_winograd(const float *x, int64_t cin, int64_t t, int64_t h, int64_t w, const float *wt,
                            int64_t cout, int kt, int pf, int64_t to, const float *bias, float *y, int round,
                            size_t budget)
{
    wino_plan pl = {.base = {.x = x, .wt = wt, .bias = bias, .y = y, .cin = cin, .t = t, .h = h, .w = w,
                             .cout = cout, .to = to, .kk = kt * cin, .ntx = (w + 1) / 2, .kt = kt, .pf = pf,
                             .round = round}};
    wino_ctx *c = &pl.base;
    c->u = dfm_cpu_scratch(0, (size_t)16 * cout * c->kk * sizeof(float));
    if (!c->u) return DFM_E_NOMEM;
    dfm_cpu_parallel(cout, 1 + 4096 / c->kk, weights_range, c);

    /* Blocks: fo output frames (reading at most nfi(fo) input frames) times as many tiles as fit
     * in the budget; fewer frames when that would leave GEMMs narrower than `want` tiles
     * (measured: N below a few hundred costs more than transforming frames again). Shapes and
     * budget only: the thread count must not change any GEMM's N (see the top). */
    int64_t ntiles = c->ntx * ((h + 1) / 2);
    int64_t want = ntiles < 512 ? ntiles : 512;
    int64_t fo = to, nfi_max, nbmax;
    for (;;) {
        nfi_max = fo + kt - 1 < t ? fo + kt - 1 : t;
        nbmax = (int64_t)(budget / (16 * sizeof(float) * (size_t)(nfi_max * cin + cout)));
        if (fo == 1 || nbmax >= want) break;
        fo--;
    }
    int64_t nfc = cdiv(to, fo);
    fo = cdiv(to, nfc);
    if (nbmax < 1) nbmax = 1;
    /* blocks per chunk: equal runs of tiles, as few as the budget allows */
    int64_t nbk = cdiv(ntiles, nbmax);
    pl.nb = cdiv(ntiles, nbk);
    pl.nbk = cdiv(ntiles, pl.nb);
    pl.fo = fo;
    pl.nblk = nfc * pl.nbk;
    /* how the blocks are run: this may depend on the threads, the results do not */
    int nthr = dfm_cpu_threads();
    pl.nwhole = nthr > 1 ? pl.nblk / nthr * nthr : 0;
    int nw = pl.nwhole ? nthr : 1;
    pl.vn = (size_t)16 * nfi_max * cin * pl.nb;
    pl.mn = (size_t)16 * cout * pl.nb;
    pl.v = dfm_cpu_scratch(1, nw * pl.vn * sizeof(float));
    pl.m = pl.v ? dfm_cpu_scratch(2, nw * pl.mn * sizeof(float)) : NULL;
    if (!pl.v || !pl.m) return DFM_E_NOMEM;
    int blas_threads = dfm_cpu_blas_single();
    if (pl.nwhole) dfm_cpu_parallel(nw, 1, worker_range, &pl);
    c->v = pl.v;
    c->m = pl.m;
    for (int64_t b = pl.nwhole; b < pl.nblk; b++) run_block(&pl, c, b, 1);
    dfm_cpu_blas_restore(blas_threads);
    return 0;
}
