/* test_linear.c — dfm_op_linear (packed weights, kernels/cpu/linear.c) against a double-precision
 * reference, on every SIMD level the machine has (scalar, avx2, avx512, avx512_bf16; a level it
 * lacks is skipped with a line) and shapes that hit every edge of the kernels: rows not a multiple
 * of the tiles (6, 12), columns not a multiple of 16 or 32 (one panel, two, three), k odd (the
 * last bf16 pair half empty), not a multiple of the k block (256), k = 1, n = 1, several weights
 * sharing one pass, more rows than one row block, accumulate, bf16 storage and bf16 compute;
 * plus the argument checks.
 *
 * Bound: |y - ref| <= 1e-6 * (1 + k / 64) * sum_k |x w| per element (ref in double over the
 * exact inputs the kernel multiplies: bf16-rounded weights when stored as BF16, bf16-rounded x
 * under bf16 compute). f32 accumulation of k products is within (k + k / 256) 2^-24 of that sum in
 * the worst case and ~sqrt(k) 2^-24 typically; an indexing error is O(1). The VDPBF16PS kernel
 * (avx512_bf16, BF16 weights, bf16 compute) sums the same exact products, flushing denormal
 * inputs and results to zero: + k 2^-126 absolute, checked on tiny inputs whose products are
 * denormal (ops_linear_tiny). Outputs outside [m, n] (guard words after each row block) must be
 * untouched. Determinism: 2 and 3 threads give the bits of 1 thread on every level; avx2 and
 * avx512 (both one FMA per product, in the same order) give the same bits.
 */
#include "test.h"
#include "base/error.h"
#include "cpu/cpu.h"
#include "cpu/linear.h"
#include "tensor/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GUARD 37

static float bf16_round(float f) { return dfm_cpu_round_bf16_1(f); }

static float rnd(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(*s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* Whether the machine has `level`; prints one skip line per level and test otherwise. */
static int have_level(int level, const char *test)
{
    if (level <= dfm_cpu_level_max()) return 1;
    fprintf(stderr, "  (%s: this CPU has no %s; that level skipped)\n", test, dfm_cpu_level_name(level));
    return 0;
}

/* One case on the current SIMD level: nw weights of rows n[i], all k; m rows of x, scaled by
 * `scale` (x and w alike). Runs with 1, 2 and 3 threads: the bound on the first, the same bits on
 * the others. keep (if not NULL) receives the outputs, weight after weight. Returns the number of
 * failures. */
static int linear_case(int64_t m, int64_t k, int nw, const int64_t *n, dfm_dtype src, dfm_dtype store, int accumulate,
                       int bf16c, float scale, float *keep)
{
    uint64_t s = (uint64_t)(m * 131 + k * 7 + nw + n[0] * 17 + src * 3 + store + accumulate * 2 + bf16c * 5);
    int fails = 0;
    int64_t sx[2] = {m, k};
    dfm_tensor x, wf[DFM_PACKED_MAX], w[DFM_PACKED_MAX], y[DFM_PACKED_MAX], y0[DFM_PACKED_MAX];
    float *ybuf[DFM_PACKED_MAX], *y1[DFM_PACKED_MAX];
    CHECK_EQ(dfm_tensor_alloc(&x, DFM_F32, DFM_CPU, 2, sx), 0);
    for (int64_t i = 0; i < m * k; i++) ((float *)x.data)[i] = rnd(&s) * scale;
    const dfm_tensor *wp[DFM_PACKED_MAX];
    dfm_tensor *yp[DFM_PACKED_MAX];
    for (int i = 0; i < nw; i++) {
        int64_t sw[2] = {n[i], k};
        CHECK_EQ(dfm_tensor_alloc(&wf[i], DFM_F32, DFM_CPU, 2, sw), 0);
        for (int64_t j = 0; j < n[i] * k; j++) ((float *)wf[i].data)[j] = rnd(&s) * scale;
        CHECK_EQ(dfm_tensor_alloc(&w[i], src, DFM_CPU, 2, sw), 0);
        CHECK_EQ(dfm_tensor_convert(&w[i], &wf[i]), 0);
        CHECK_EQ(dfm_tensor_convert(&wf[i], &w[i]), 0); /* the exact values the source holds */
        wp[i] = &w[i];
        ybuf[i] = malloc(((size_t)(m * n[i]) + GUARD) * sizeof(float));
        y1[i] = malloc(((size_t)(m * n[i]) + 1) * sizeof(float));
        int64_t sy[2] = {m, n[i]};
        y[i] = dfm_tensor_view(ybuf[i], DFM_F32, DFM_CPU, 2, sy);
        CHECK_EQ(dfm_tensor_alloc(&y0[i], DFM_F32, DFM_CPU, 2, sy), 0);
        for (int64_t j = 0; j < m * n[i]; j++) ((float *)y0[i].data)[j] = rnd(&s);
        yp[i] = &y[i];
    }
    dfm_packed *l = NULL;
    int rc = dfm_packed_create(&l, wp, nw, store, DFM_CPU);
    CHECK_EQ(rc, 0);
    if (rc) return 1;
    size_t expect = 0; /* F32: k rows of 16 per panel; BF16: k rounded up to even */
    for (int i = 0; i < nw; i++)
        expect += (size_t)((n[i] + 15) / 16) * (size_t)(store == DFM_F32 ? k : (k + 1) / 2 * 2) * 16 * (store == DFM_F32 ? 4 : 2);
    CHECK_EQ(dfm_packed_nbytes(l), expect);
    dfm_compute cc = {bf16c ? DFM_BF16 : DFM_F32, NULL};
    for (int th = 1; th <= 3 && !rc; th++) {
        dfm_ops_set_threads(th);
        for (int i = 0; i < nw; i++) {
            memcpy(ybuf[i], y0[i].data, (size_t)(m * n[i]) * sizeof(float));
            for (int64_t j = m * n[i]; j < m * n[i] + GUARD; j++) ybuf[i][j] = 777.0f;
        }
        rc = dfm_op_linear(&cc, &x, l, yp, accumulate);
        CHECK_EQ(rc, 0);
        for (int i = 0; i < nw && !rc; i++) {
            int bad = 0;
            for (int64_t j = m * n[i]; j < m * n[i] + GUARD; j++) bad += ybuf[i][j] != 777.0f;
            if (th > 1) {
                bad += memcmp(ybuf[i], y1[i], (size_t)(m * n[i]) * sizeof(float)) != 0;
                if (bad)
                    fprintf(stderr, "  linear m %lld k %lld w%d n %lld store %s bf16c %d %s: %d threads differ from 1\n",
                            (long long)m, (long long)k, i, (long long)n[i], dfm_dtype_name(store), bf16c, dfm_cpu_impl(), th);
                fails += bad;
                continue;
            }
            memcpy(y1[i], ybuf[i], (size_t)(m * n[i]) * sizeof(float));
            double worst = 0;
            for (int64_t r = 0; r < m; r++)
                for (int64_t c = 0; c < n[i]; c++) {
                    double acc = 0, mag = 0;
                    for (int64_t kk = 0; kk < k; kk++) {
                        float a = ((float *)x.data)[r * k + kk], b = ((float *)wf[i].data)[c * k + kk];
                        if (bf16c) a = bf16_round(a);
                        if (store == DFM_BF16) b = bf16_round(b);
                        acc += (double)a * b;
                        mag += fabs((double)a * b);
                    }
                    if (accumulate) acc += ((float *)y0[i].data)[r * n[i] + c];
                    double got = ybuf[i][r * n[i] + c], err = fabs(got - acc);
                    double tol = 1e-6 * (1.0 + (double)k / 64) * (mag + (accumulate ? 1.0 : 0.0)) + k * 0x1p-126 + 1e-30;
                    if (!(err <= tol)) bad++;
                    if (err / tol > worst) worst = err / tol;
                }
            if (bad)
                fprintf(stderr, "  linear m %lld k %lld w%d n %lld src %s store %s acc %d bf16c %d %s: %d outside the bound "
                                "(worst %.2f of it)\n",
                        (long long)m, (long long)k, i, (long long)n[i], dfm_dtype_name(src), dfm_dtype_name(store), accumulate,
                        bf16c, dfm_cpu_impl(), bad, worst);
            fails += bad;
        }
    }
    dfm_ops_set_threads(0);
    for (int i = 0; i < nw && keep; i++) {
        memcpy(keep, y1[i], (size_t)(m * n[i]) * sizeof(float));
        keep += m * n[i];
    }
    dfm_packed_free(l);
    dfm_tensor_free(&x);
    for (int i = 0; i < nw; i++) {
        dfm_tensor_free(&wf[i]);
        dfm_tensor_free(&w[i]);
        dfm_tensor_free(&y0[i]);
        free(ybuf[i]);
        free(y1[i]);
    }
    return fails;
}

TEST(ops_linear)
{
    struct {
        int64_t m, k;
        int nw;
        int64_t n[3];
    } cases[] = {
        {1, 1, 1, {1}},           {5, 3, 1, {17}},          {6, 256, 1, {16}},        {7, 257, 2, {33, 16}},
        {13, 600, 3, {40, 5, 64}}, {130, 70, 1, {50}},      {12, 512, 2, {32, 48}},   {3, 0, 1, {9}},
        {400, 40, 1, {20}},       {25, 513, 1, {1}},        {1, 300, 2, {47, 96}},    {24, 2, 1, {31}},
        {37, 1, 3, {16, 1, 33}},  {11, 255, 1, {80}},
    };
    enum { NC = sizeof cases / sizeof cases[0] };
    dfm_dtype srcs[] = {DFM_F32, DFM_BF16, DFM_F16};
    /* outputs of each case and variant on the avx2 level, for the same bits on avx512 */
    float *keep[NC][4] = {{0}};
    for (int level = 0; level < DFM_CPU_LEVELS; level++) {
        if (!have_level(level, "ops_linear")) continue;
        dfm_cpu_set_simd_level(level);
        for (size_t c = 0; c < NC; c++)
            for (int v = 0; v < 4; v++) {
                dfm_dtype store = v & 1 ? DFM_BF16 : DFM_F32;
                int acc = (v >> 1) & 1, bf16c = (int)((c + (size_t)v) % 3 == 0) || (v == 1 && level == DFM_CPU_AVX512_BF16);
                dfm_dtype src = srcs[(c + (size_t)v) % 3];
                size_t ny = 0;
                for (int i = 0; i < cases[c].nw; i++) ny += (size_t)(cases[c].m * cases[c].n[i]);
                float *out = malloc((ny + 1) * sizeof(float));
                dfm_test_failures +=
                    linear_case(cases[c].m, cases[c].k, cases[c].nw, cases[c].n, src, store, acc, bf16c, 1.0f, out);
                /* the FMA kernels agree bit for bit (the VDPBF16PS one, BF16 weights under bf16
                 * compute, sums differently) */
                int fma = level == DFM_CPU_AVX512 || (level == DFM_CPU_AVX512_BF16 && !(store == DFM_BF16 && bf16c));
                if (level == DFM_CPU_AVX2) {
                    keep[c][v] = out;
                    continue;
                }
                if (fma && keep[c][v] && memcmp(out, keep[c][v], ny * sizeof(float))) {
                    fprintf(stderr, "  linear case %zu variant %d: %s differs from avx2\n", c, v, dfm_cpu_impl());
                    dfm_test_failures++;
                }
                free(out);
            }
    }
    for (size_t c = 0; c < NC; c++)
        for (int v = 0; v < 4; v++) free(keep[c][v]);
    dfm_cpu_set_simd(1);
}

/* Products below 2^-126 (x, w ~ 2^-70): the VDPBF16PS kernel flushes them to zero, the others
 * keep them; both within the bound's k 2^-126. And bf16 values of x that are denormal in f32. */
TEST(ops_linear_tiny)
{
    int64_t n[1] = {40};
    for (int level = 0; level < DFM_CPU_LEVELS; level++) {
        if (!have_level(level, "ops_linear_tiny")) continue;
        dfm_cpu_set_simd_level(level);
        dfm_test_failures += linear_case(13, 301, 1, n, DFM_F32, DFM_BF16, 0, 1, 0x1p-70f, NULL);
        dfm_test_failures += linear_case(13, 301, 1, n, DFM_BF16, DFM_BF16, 1, 1, 0x1p-130f, NULL);
        dfm_test_failures += linear_case(5, 64, 1, n, DFM_F32, DFM_F32, 0, 0, 0x1p-70f, NULL);
    }
    dfm_cpu_set_simd(1);
}

TEST(ops_linear_guard)
{
    /* rows and columns outside y are never written, whatever the edge tiles do */
    int64_t m = 7, k = 301, n = 21;
    const dfm_compute bf16cc = {DFM_BF16, NULL};
    int64_t sx[2] = {m, k}, sw[2] = {n, k}, sy[2] = {m, n};
    dfm_tensor x, w;
    CHECK_EQ(dfm_tensor_alloc(&x, DFM_F32, DFM_CPU, 2, sx), 0);
    CHECK_EQ(dfm_tensor_alloc(&w, DFM_F32, DFM_CPU, 2, sw), 0);
    uint64_t s = 5;
    for (int64_t i = 0; i < m * k; i++) ((float *)x.data)[i] = rnd(&s);
    for (int64_t i = 0; i < n * k; i++) ((float *)w.data)[i] = rnd(&s);
    float *buf = malloc((size_t)(m * n + 2 * GUARD) * sizeof(float));
    for (int i = 0; i < m * n + 2 * GUARD; i++) buf[i] = 12345.0f;
    dfm_tensor y = dfm_tensor_view(buf + GUARD, DFM_F32, DFM_CPU, 2, sy), *yp = &y;
    const dfm_tensor *wp = &w;
    dfm_packed *l;
    CHECK_EQ(dfm_packed_create(&l, &wp, 1, DFM_F32, DFM_CPU), 0);
    dfm_packed *lb;
    CHECK_EQ(dfm_packed_create(&lb, &wp, 1, DFM_BF16, DFM_CPU), 0);
    for (int level = 0; level < DFM_CPU_LEVELS; level++) {
        if (!have_level(level, "ops_linear_guard")) continue;
        dfm_cpu_set_simd_level(level);
        for (int v = 0; v < 3; v++) {
            CHECK_EQ(dfm_op_linear(v == 2 ? &bf16cc : NULL, &x, v ? lb : l, &yp, level & 1), 0);
            int bad = 0;
            for (int i = 0; i < GUARD; i++) bad += buf[i] != 12345.0f || buf[GUARD + m * n + i] != 12345.0f;
            CHECK_EQ(bad, 0);
        }
    }
    dfm_cpu_set_simd(1);
    dfm_packed_free(l);
    dfm_packed_free(lb);
    free(buf);
    dfm_tensor_free(&x);
    dfm_tensor_free(&w);
}

TEST(ops_linear_args)
{
    int64_t sx[2] = {4, 8}, sw[2] = {5, 8}, sw2[2] = {5, 9}, sy[2] = {4, 5};
    dfm_tensor x, w, w2, y, yb;
    CHECK_EQ(dfm_tensor_zeros(&x, DFM_F32, DFM_CPU, 2, sx), 0);
    CHECK_EQ(dfm_tensor_zeros(&w, DFM_F32, DFM_CPU, 2, sw), 0);
    CHECK_EQ(dfm_tensor_zeros(&w2, DFM_F32, DFM_CPU, 2, sw2), 0);
    CHECK_EQ(dfm_tensor_zeros(&y, DFM_F32, DFM_CPU, 2, sy), 0);
    CHECK_EQ(dfm_tensor_zeros(&yb, DFM_F32, DFM_CPU, 2, sx), 0);
    const dfm_tensor *ws[5] = {&w, &w2, &w, &w, &w};
    dfm_packed *l = (dfm_packed *)1;
    CHECK_EQ(dfm_packed_create(&l, ws, 2, DFM_F32, DFM_CPU), DFM_E_ARG);
    CHECK(l == NULL);
    CHECK(strstr(dfm_errmsg(), "share k") != NULL);
    CHECK_EQ(dfm_packed_create(&l, ws, 0, DFM_F32, DFM_CPU), DFM_E_ARG);
    CHECK_EQ(dfm_packed_create(&l, ws, 5, DFM_F32, DFM_CPU), DFM_E_ARG);
    CHECK_EQ(dfm_packed_create(&l, ws, 1, DFM_F16, DFM_CPU), DFM_E_ARG);
    CHECK_EQ(dfm_packed_create(&l, ws, 1, DFM_BF16, DFM_CPU), 0);
    dfm_tensor *yp = &yb;
    CHECK_EQ(dfm_op_linear(NULL, &x, l, &yp, 0), DFM_E_ARG); /* [4,8] is not [4,5] */
    CHECK(strstr(dfm_errmsg(), "linear") && strstr(dfm_errmsg(), "[4,8] F32"));
    yp = &y;
    CHECK_EQ(dfm_op_linear(NULL, &w, l, &yp, 0), DFM_E_ARG); /* x rows 5 != y rows 4 */
    dfm_tensor xv = dfm_tensor_view(y.data, DFM_F32, DFM_CPU, 2, (int64_t[]){2, 8}), yv = y;
    yp = &yv;
    CHECK_EQ(dfm_op_linear(NULL, &xv, l, &yp, 0), DFM_E_ARG); /* overlap (and rows) */
    yp = &y;
    CHECK_EQ(dfm_op_linear(NULL, &x, l, &yp, 0), 0);
    dfm_packed_free(l);
    dfm_packed_free(NULL);
    dfm_tensor_free(&x);
    dfm_tensor_free(&w);
    dfm_tensor_free(&w2);
    dfm_tensor_free(&y);
    dfm_tensor_free(&yb);
}

/* BF16 weights packed as BF16 panels take a copy-only path: the same bytes as packing the same
 * values given as F32 (the general path, rounding each to itself), for every panel remainder, odd
 * and even k, both source orientations and a row stride past the row. */
TEST(linear_pack_bf16_copy_path)
{
    int64_t ns[] = {1, 16, 17, 40}, ks[] = {1, 2, 7, 130, 301};
    int bad = 0;
    for (size_t a = 0; a < 4; a++)
        for (size_t b = 0; b < 5; b++)
            for (int tw = 0; tw < 2; tw++) {
                int64_t n = ns[a], k = ks[b], rows = tw ? k : n, cols = tw ? n : k, ldw = cols + 3;
                uint16_t *wb = malloc((size_t)rows * ldw * 2);
                float *wf = malloc((size_t)rows * ldw * 4);
                for (int64_t i = 0; i < rows * ldw; i++) {
                    uint32_t h = (uint32_t)(i * 2654435761u) >> 16;
                    if ((h & 0x7f80) == 0x7f80) h &= ~0x4000u; /* finite */
                    wb[i] = (uint16_t)h;
                    uint32_t u = h << 16;
                    memcpy(&wf[i], &u, 4);
                }
                size_t bytes = dfm_cpu_linear_packed_size(n, k, DFM_BF16);
                void *p1 = calloc(1, bytes), *p2 = calloc(1, bytes);
                CHECK_EQ(dfm_cpu_linear_pack_strided(p1, DFM_BF16, wb, DFM_BF16, n, k, tw, ldw), 0);
                CHECK_EQ(dfm_cpu_linear_pack_strided(p2, DFM_BF16, wf, DFM_F32, n, k, tw, ldw), 0);
                if (memcmp(p1, p2, bytes)) {
                    fprintf(stderr, "  n %lld k %lld tw %d: packed bytes differ\n", (long long)n, (long long)k, tw);
                    bad++;
                }
                free(wb), free(wf), free(p1), free(p2);
            }
    CHECK_EQ(bad, 0);
}

/* dfm_op_linear_bias adds each bias in the GEMM's store: the same bits as dfm_op_linear and then
 * dfm_op_bias_add, over row counts across the block and panel edges, widths off the 16/32-column
 * panels, k across KC blocks, F32 and BF16 panels under f32 and bf16 compute, accumulate on and off,
 * 1 and 2 threads, and two weights of which only the first has a bias. Then its argument checks. */
TEST(ops_linear_bias_fused)
{
    uint64_t s = 99;
    const int64_t ms[] = {1, 13, 50, 401}, ns[] = {5, 33, 100}, ks[] = {3, 64, 300};
    int fails = 0;
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 3; b++)
            for (int c = 0; c < 3; c++)
                for (int v = 0; v < 3; v++)
                    for (int acc = 0; acc < 2; acc++) {
                        int64_t m = ms[a], n[2] = {ns[b], ns[b] + 7}, k = ks[c];
                        dfm_dtype store = v ? DFM_BF16 : DFM_F32;
                        dfm_compute cc = {v == 2 ? DFM_BF16 : DFM_F32, NULL};
                        dfm_tensor x = {0}, w[2] = {{0}}, bias = {0}, y0[2] = {{0}}, yr[2] = {{0}}, yf[2] = {{0}};
                        int64_t sx[2] = {m, k};
                        CHECK_EQ(dfm_tensor_alloc(&x, DFM_F32, DFM_CPU, 2, sx), 0);
                        for (int64_t j = 0; j < m * k; j++) ((float *)x.data)[j] = rnd(&s);
                        CHECK_EQ(dfm_tensor_alloc(&bias, DFM_F32, DFM_CPU, 1, &n[0]), 0);
                        for (int64_t j = 0; j < n[0]; j++) ((float *)bias.data)[j] = rnd(&s) * 3.0f;
                        for (int i = 0; i < 2; i++) {
                            int64_t sw[2] = {n[i], k}, sy[2] = {m, n[i]};
                            CHECK_EQ(dfm_tensor_alloc(&w[i], DFM_F32, DFM_CPU, 2, sw), 0);
                            for (int64_t j = 0; j < n[i] * k; j++) ((float *)w[i].data)[j] = rnd(&s) * 0.1f;
                            CHECK_EQ(dfm_tensor_alloc(&y0[i], DFM_F32, DFM_CPU, 2, sy), 0);
                            CHECK_EQ(dfm_tensor_alloc(&yr[i], DFM_F32, DFM_CPU, 2, sy), 0);
                            CHECK_EQ(dfm_tensor_alloc(&yf[i], DFM_F32, DFM_CPU, 2, sy), 0);
                            for (int64_t j = 0; j < m * n[i]; j++) ((float *)y0[i].data)[j] = rnd(&s);
                            memcpy(yr[i].data, y0[i].data, (size_t)(m * n[i]) * sizeof(float));
                        }
                        const dfm_tensor *ws[2] = {&w[0], &w[1]}, *bs[2] = {&bias, NULL};
                        dfm_tensor *ypr[2] = {&yr[0], &yr[1]}, *ypf[2] = {&yf[0], &yf[1]};
                        dfm_packed *l = NULL;
                        CHECK_EQ(dfm_packed_create(&l, ws, 2, store, DFM_CPU), 0);
                        dfm_ops_set_threads(1);
                        CHECK_EQ(dfm_op_linear(&cc, &x, l, ypr, acc), 0);
                        CHECK_EQ(dfm_op_bias_add(&yr[0], &bias, &yr[0]), 0);
                        for (int th = 1; th <= 2; th++) {
                            dfm_ops_set_threads(th);
                            for (int i = 0; i < 2; i++)
                                memcpy(yf[i].data, y0[i].data, (size_t)(m * n[i]) * sizeof(float));
                            CHECK_EQ(dfm_op_linear_bias(&cc, &x, l, ypf, bs, acc), 0);
                            for (int i = 0; i < 2; i++) {
                                int bad = memcmp(yf[i].data, yr[i].data, (size_t)(m * n[i]) * sizeof(float)) != 0;
                                if (bad)
                                    fprintf(stderr, "  linear bias m %lld n %lld k %lld w%d store %s bf16c %d acc %d, %d threads: differs\n",
                                            (long long)m, (long long)n[i], (long long)k, i, dfm_dtype_name(store),
                                            v == 2, acc, th);
                                fails += bad;
                            }
                        }
                        dfm_packed_free(l);
                        dfm_tensor_free(&x);
                        dfm_tensor_free(&bias);
                        for (int i = 0; i < 2; i++) {
                            dfm_tensor_free(&w[i]);
                            dfm_tensor_free(&y0[i]);
                            dfm_tensor_free(&yr[i]);
                            dfm_tensor_free(&yf[i]);
                        }
                    }
    dfm_ops_set_threads(0);
    CHECK_EQ(fails, 0);

    /* a bias must be F32 [n_i] on the weights' device and must not overlap an output */
    int64_t sx[2] = {4, 8}, sw[2] = {6, 8}, sy[2] = {4, 6}, nb = 6, nb5 = 5;
    dfm_tensor x = {0}, w = {0}, y = {0}, b = {0}, b5 = {0}, bh = {0};
    CHECK_EQ(dfm_tensor_zeros(&x, DFM_F32, DFM_CPU, 2, sx), 0);
    CHECK_EQ(dfm_tensor_zeros(&w, DFM_F32, DFM_CPU, 2, sw), 0);
    CHECK_EQ(dfm_tensor_zeros(&y, DFM_F32, DFM_CPU, 2, sy), 0);
    CHECK_EQ(dfm_tensor_zeros(&b, DFM_F32, DFM_CPU, 1, &nb), 0);
    CHECK_EQ(dfm_tensor_zeros(&b5, DFM_F32, DFM_CPU, 1, &nb5), 0);
    CHECK_EQ(dfm_tensor_zeros(&bh, DFM_BF16, DFM_CPU, 1, &nb), 0);
    const dfm_tensor *wp = &w, *bp = &b5;
    dfm_tensor *yp = &y;
    dfm_packed *l = NULL;
    CHECK_EQ(dfm_packed_create(&l, &wp, 1, DFM_F32, DFM_CPU), 0);
    CHECK_EQ(dfm_op_linear_bias(NULL, &x, l, &yp, &bp, 0), DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "bias 0 must be F32 [6]") != NULL);
    bp = &bh;
    CHECK_EQ(dfm_op_linear_bias(NULL, &x, l, &yp, &bp, 0), DFM_E_ARG);
    dfm_tensor yb = dfm_tensor_view(y.data, DFM_F32, DFM_CPU, 1, &nb);
    bp = &yb;
    CHECK_EQ(dfm_op_linear_bias(NULL, &x, l, &yp, &bp, 0), DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "overlaps") != NULL);
    bp = &b;
    CHECK_EQ(dfm_op_linear_bias(NULL, &x, l, &yp, &bp, 0), 0);
    CHECK_EQ(dfm_op_linear_bias(NULL, &x, l, &yp, NULL, 0), 0);
    dfm_packed_free(l);
    dfm_tensor *all[] = {&x, &w, &y, &b, &b5, &bh};
    for (int i = 0; i < 6; i++) dfm_tensor_free(all[i]);
}

/* The VDPBF16PS path's row packing of x (VCVTNE2PS2BF16 32 values at a time, dfm_cpu_round_bf16 for
 * a chunk holding a subnormal or a NaN) rounds exactly as dfm_cpu_round_bf16 does: through an
 * identity W (BF16 panels, bf16 compute) y is x rounded to bf16, bit for bit, over odd and even k
 * across the KC block, row counts off the 12-row panel, random magnitudes from 2^-60 to 2^60 with
 * ties to even, and subnormals and NaNs among them (a subnormal product is 0 in VDPBF16PS). */
TEST(ops_linear_bf16_row_pack_exact)
{
    if (!dfm_cpu_use_avx512_bf16()) {
        printf("  skip: no AVX512_BF16 on this CPU (the VDPBF16PS path does not run)\n");
        return;
    }
    const int64_t ks[] = {1, 31, 32, 33, 67, 256, 300}, ms[] = {1, 11, 29};
    uint64_t s = 7;
    dfm_compute cc = {DFM_BF16, NULL};
    int fails = 0;
    for (int a = 0; a < 7; a++)
        for (int b = 0; b < 3; b++) {
            int64_t k = ks[a], m = ms[b], sx[2] = {m, k}, sw[2] = {k, k};
            dfm_tensor x = {0}, w = {0}, y = {0};
            CHECK_EQ(dfm_tensor_alloc(&x, DFM_F32, DFM_CPU, 2, sx), 0);
            CHECK_EQ(dfm_tensor_zeros(&w, DFM_F32, DFM_CPU, 2, sw), 0);
            CHECK_EQ(dfm_tensor_alloc(&y, DFM_F32, DFM_CPU, 2, sx), 0);
            float *xv = x.data;
            for (int64_t j = 0; j < m * k; j++) {
                float v = ldexpf(rnd(&s), (int)(rnd(&s) * 60.0f));
                if (j % 5 == 1) { /* a tie: the dropped half is exactly 0x8000 */
                    uint32_t u;
                    memcpy(&u, &v, sizeof u);
                    u = (u & 0xffff0000u) | 0x8000u;
                    memcpy(&v, &u, sizeof v);
                }
                if (j % 41 == 3) v = ldexpf(rnd(&s), -130); /* subnormal */
                if (j % 97 == 50 && j / k % 2) v = NAN; /* in odd rows only */
                xv[j] = v;
            }
            for (int64_t j = 0; j < k; j++) ((float *)w.data)[j * k + j] = 1.0f;
            const dfm_tensor *wp = &w;
            dfm_tensor *yp = &y;
            dfm_packed *l = NULL;
            CHECK_EQ(dfm_packed_create(&l, &wp, 1, DFM_BF16, DFM_CPU), 0);
            for (int th = 1; th <= 2 && l; th++) {
                dfm_ops_set_threads(th);
                CHECK_EQ(dfm_op_linear(&cc, &x, l, &yp, 0), 0);
                const float *yv = y.data;
                for (int64_t j = 0; j < m * k; j++) {
                    int nan_row = 0; /* a NaN in x's row reaches every y of it (NaN * 0) */
                    for (int64_t e = j / k * k; e < (j / k + 1) * k; e++) nan_row |= isnan(xv[e]);
                    float want = nan_row ? NAN : fpclassify(xv[j]) == FP_SUBNORMAL ? 0.0f : dfm_cpu_round_bf16_1(xv[j]);
                    int ok = isnan(want) ? isnan(yv[j]) != 0
                             : want == 0.0f ? yv[j] == 0.0f
                                            : memcmp(&yv[j], &want, sizeof want) == 0;
                    if (!ok && fails++ < 5)
                        fprintf(stderr, "  m %lld k %lld (%lld, %lld), %d threads: x %a gives %a, not %a\n", (long long)m,
                                (long long)k, (long long)(j / k), (long long)(j % k), th, xv[j], yv[j], want);
                }
            }
            dfm_ops_set_threads(0);
            dfm_packed_free(l);
            dfm_tensor_free(&x);
            dfm_tensor_free(&w);
            dfm_tensor_free(&y);
        }
    CHECK_EQ(fails, 0);
}
