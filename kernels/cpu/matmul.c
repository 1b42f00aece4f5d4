/* matmul.c — GEMM with f32 accumulation (matmul.h): under bf16 compute on an AVX512_BF16 CPU our
 * packed VDPBF16PS kernel (linear.c) with B packed per call; otherwise sgemm through OpenBLAS with
 * weights converted in blocks.
 * Block loop: B (weights) outer, A (activations) inner; each (A block, B block) pair writes its
 * own part of y once, so beta applies exactly once per element. */
#include "cpu/matmul.h"
#include "base/error.h"
#include "cpu/cpu.h"
#include "cpu/linear.h"

#include <cblas.h>
#include <string.h>

#define BLOCK_FLOATS ((int64_t)4 << 20) /* 16 MiB of f32 per converted block */

typedef struct {
    const void *src;
    dfm_dtype dt;
    float *dst;
    int64_t ld, off, len; /* row r: src + r*ld + off, len elements -> dst + r*len */
    int round, err;
} conv_rows_ctx;

static void conv_rows_range(void *arg, int64_t r0, int64_t r1)
{
    conv_rows_ctx *c = arg;
    size_t es = dfm_dtype_size(c->dt);
    for (int64_t r = r0; r < r1; r++) {
        const char *s = (const char *)c->src + ((size_t)r * c->ld + c->off) * es;
        if (dfm_cpu_to_f32(c->dst + r * c->len, s, c->dt, c->len, c->round) < 0) c->err = 1;
    }
}

/* rows x len slice of a row-major matrix (leading dimension ld) starting at column off, into a
 * dense f32 [rows, len]. */
static int convert_slice(float *dst, const void *src, dfm_dtype dt, int64_t rows, int64_t ld,
                         int64_t off, int64_t len, int round)
{
    conv_rows_ctx c = {src, dt, dst, ld, off, len, round, 0};
    dfm_cpu_parallel(rows, 1 + 65536 / (len ? len : 1), conv_rows_range, &c);
    return c.err ? dfm_fail(DFM_E_UNSUPPORTED, "matmul: cannot convert %s", dfm_dtype_name(dt)) : 0;
}

typedef struct {
    float *y;
    const float *bias;
    int64_t n;
} bias_ctx;

static void bias_range(void *arg, int64_t r0, int64_t r1)
{
    bias_ctx *c = arg;
    for (int64_t r = r0; r < r1; r++) {
        float *row = c->y + r * c->n;
        for (int64_t j = 0; j < c->n; j++) row[j] += c->bias[j];
    }
}

static int add_bias(float *y, const void *bias, dfm_dtype biasdt, int64_t m, int64_t n)
{
    float *bf = dfm_cpu_scratch(2, (size_t)n * sizeof(float));
    if (!bf) return dfm_fail(DFM_E_NOMEM, "matmul: out of memory for scratch");
    int rc = dfm_cpu_to_f32(bf, bias, biasdt, n, 0);
    if (rc < 0) return rc;
    bias_ctx c = {y, bf, n};
    dfm_cpu_parallel(m, 1 + 65536 / n, bias_range, &c);
    return 0;
}

#define PACK_BYTES ((int64_t)32 << 20) /* packed B per block (the packed path) */

typedef struct {
    float *y;
    int64_t n;
    float beta;
} scale_ctx;

static void scale_range(void *arg, int64_t r0, int64_t r1)
{
    scale_ctx *c = arg;
    for (int64_t i = r0 * c->n; i < r1 * c->n; i++) c->y[i] = c->beta == 0.0f ? 0.0f : c->beta * c->y[i];
}

/* Our VDPBF16PS kernel for bf16 compute where the CPU has it (about twice OpenBLAS's sgemm on the
 * operands rounded to bf16, packing included: scripts/bench_linear.c); OpenBLAS otherwise (our
 * FMA kernels, packing B per call, measured no faster than its AVX-512 sgemm on 2 Zen 4 cores),
 * split over our threads (sgemm_split). */
static int use_packed(int bf16_compute) { return bf16_compute && dfm_cpu_use_avx512_bf16(); }

/* y = beta y + op(A) op(B) (+ bias [n] f32, or NULL) on our packed kernels (linear.h): B packed as
 * BF16 panels a block of columns at a time (the panels' output columns are op(B)'s columns), A
 * rounded to bf16 and packed per row block by dfm_cpu_linear_strided, which adds the bias as it
 * stores each tile's last k block. beta other than 0 or 1 scales y first. */
static int matmul_packed(const float *a, int ta, const void *b, dfm_dtype bdt, int tb, const float *bias, float beta,
                         float *y, int64_t m, int64_t n, int64_t k, int bf16_compute)
{
    if (beta != 0.0f && beta != 1.0f) {
        scale_ctx sc = {y, n, beta};
        dfm_cpu_parallel(m, 1 + 65536 / n, scale_range, &sc);
    }
    const dfm_dtype pdt = DFM_BF16;
    int64_t per_col = (int64_t)dfm_cpu_linear_packed_size(32, k, pdt) / 32;
    int64_t nb = PACK_BYTES / per_col / 32 * 32;
    if (nb < 32) nb = 32;
    if (nb > n) nb = n;
    void *bp = dfm_cpu_scratch(0, dfm_cpu_linear_packed_size(nb, k, pdt));
    if (!bp) return dfm_fail(DFM_E_NOMEM, "matmul: out of memory for scratch");
    size_t es = dfm_dtype_size(bdt);
    for (int64_t n0 = 0; n0 < n; n0 += nb) {
        int64_t nn = n - n0 < nb ? n - n0 : nb;
        /* W[c, kk] = op(B)[kk, n0 + c]: B's rows n0.. (tb) or its columns n0.. */
        const char *w = (const char *)b + (size_t)(tb ? n0 * k : n0) * es;
        int rc = dfm_cpu_linear_pack_strided(bp, pdt, w, bdt, nn, k, !tb, tb ? k : n);
        if (rc < 0) return rc;
        dfm_cpu_linear_seg seg = {bp, nn, y + n0, n, bias ? bias + n0 : NULL};
        rc = dfm_cpu_linear_strided(a, ta, ta ? m : k, m, k, pdt, &seg, 1, beta != 0.0f, bf16_compute);
        if (rc < 0) return rc;
    }
    return 0;
}

/* OpenBLAS sgemm split over our worker pool, each part on one OpenBLAS thread: OpenBLAS's own
 * threads then never wake for the transformer's GEMMs, and do not spin (sched_yield) on the cores
 * our pool needs between its calls (measured: ~10% of a LoRA step went to scheduling with them).
 * The larger of the output's dimensions is cut into one run per thread (multiples of 16). */
typedef struct {
    int ta, tb;
    int64_t m, n, k, lda, ldb, ldy, chunk;
    const float *a, *b;
    float beta, *y;
    int split_n;
} sgemm_ctx;

static void sgemm_range(void *arg, int64_t c0, int64_t c1)
{
    const sgemm_ctx *c = arg;
    int64_t s0 = c0 * c->chunk, s1 = c1 * c->chunk, lim = c->split_n ? c->n : c->m;
    if (s1 > lim) s1 = lim;
    if (s0 >= s1) return;
    const float *a = c->a, *b = c->b;
    float *y = c->y;
    int64_t m = c->m, n = c->n;
    if (c->split_n) {
        b += c->tb ? s0 * c->ldb : s0;
        y += s0;
        n = s1 - s0;
    } else {
        a += c->ta ? s0 : s0 * c->lda;
        y += s0 * c->ldy;
        m = s1 - s0;
    }
    cblas_sgemm(CblasRowMajor, c->ta ? CblasTrans : CblasNoTrans, c->tb ? CblasTrans : CblasNoTrans, (int)m, (int)n,
                (int)c->k, 1.0f, a, (int)c->lda, b, (int)c->ldb, c->beta, y, (int)c->ldy);
}

static void sgemm_split(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *b,
                        int64_t ldb, float beta, float *y, int64_t ldy)
{
    int64_t nt = dfm_cpu_threads();
    sgemm_ctx c = {ta, tb, m, n, k, lda, ldb, ldy, 0, a, b, beta, y, n >= m};
    int64_t len = c.split_n ? n : m;
    c.chunk = (len + nt - 1) / nt;
    c.chunk = (c.chunk + 15) / 16 * 16;
    int64_t parts = (len + c.chunk - 1) / c.chunk;
    int saved = dfm_cpu_blas_single();
    /* about 2^22 multiply-adds at least per part, so that small products stay on one thread */
    int64_t per = c.chunk * (c.split_n ? m : n) * k;
    dfm_cpu_parallel(parts, per >= ((int64_t)1 << 22) ? 1 : parts, sgemm_range, &c);
    dfm_cpu_blas_restore(saved);
}

int dfm_cpu_matmul(const float *a, int ta, const void *b, dfm_dtype bdt, int tb, const void *bias,
                   dfm_dtype biasdt, float beta, float *y, int64_t m, int64_t n, int64_t k,
                   int bf16_compute)
{
    if (m <= 0 || n <= 0) return 0;
    if (k > 0 && use_packed(bf16_compute)) { /* the bias added as the GEMM stores its last k block */
        float *bf = NULL;
        if (bias) {
            if (!(bf = dfm_cpu_scratch(2, (size_t)n * sizeof(float))))
                return dfm_fail(DFM_E_NOMEM, "matmul: out of memory for scratch");
            int rc = dfm_cpu_to_f32(bf, bias, biasdt, n, 0);
            if (rc < 0) return rc;
        }
        return matmul_packed(a, ta, b, bdt, tb, bf, beta, y, m, n, k, bf16_compute);
    }
    int conv_a = bf16_compute != 0, conv_b = bdt != DFM_F32 || bf16_compute;
    int64_t kk = k > 0 ? k : 1;
    int64_t nb = conv_b ? BLOCK_FLOATS / kk : n, mb = conv_a ? BLOCK_FLOATS / kk : m;
    if (nb < 16) nb = 16;
    if (mb < 16) mb = 16;
    if (nb > n) nb = n;
    if (mb > m) mb = m;
    float *bbuf = conv_b ? dfm_cpu_scratch(0, (size_t)nb * kk * sizeof(float)) : NULL;
    float *abuf = conv_a ? dfm_cpu_scratch(1, (size_t)mb * kk * sizeof(float)) : NULL;
    if ((conv_b && !bbuf) || (conv_a && !abuf)) return dfm_fail(DFM_E_NOMEM, "matmul: out of memory for scratch");
    int rc = 0;
    for (int64_t n0 = 0; n0 < n; n0 += nb) {
        int64_t nn = n - n0 < nb ? n - n0 : nb;
        const float *bp;
        int64_t ldb;
        if (!conv_b) {
            bp = (const float *)b + (tb ? n0 * k : n0);
            ldb = tb ? k : n;
        } else if (tb) { /* rows n0.. of [n, k] */
            if ((rc = convert_slice(bbuf, (const char *)b + (size_t)n0 * k * dfm_dtype_size(bdt), bdt, nn,
                                    k, 0, k, bf16_compute)) < 0)
                return rc;
            bp = bbuf;
            ldb = k;
        } else { /* columns n0.. of [k, n] */
            if ((rc = convert_slice(bbuf, b, bdt, k, n, n0, nn, bf16_compute)) < 0) return rc;
            bp = bbuf;
            ldb = nn;
        }
        for (int64_t m0 = 0; m0 < m; m0 += mb) {
            int64_t mm = m - m0 < mb ? m - m0 : mb;
            const float *ap;
            int64_t lda;
            if (!conv_a) {
                ap = a + (ta ? m0 : m0 * k);
                lda = ta ? m : k;
            } else if (ta) { /* columns m0.. of [k, m] */
                convert_slice(abuf, a, DFM_F32, k, m, m0, mm, 1);
                ap = abuf;
                lda = mm;
            } else {
                convert_slice(abuf, a + m0 * k, DFM_F32, mm, k, 0, k, 1);
                ap = abuf;
                lda = k;
            }
            if (k > 0)
                sgemm_split(ta, tb, mm, nn, k, ap, lda, bp, ldb, beta, y + m0 * n + n0, n);
            else
                for (int64_t r = 0; r < mm; r++)
                    for (int64_t j = 0; j < nn; j++) {
                        float *p = y + (m0 + r) * n + n0 + j;
                        *p = beta == 0.0f ? 0.0f : beta * *p;
                    }
        }
    }
    return bias ? add_bias(y, bias, biasdt, m, n) : 0;
}
