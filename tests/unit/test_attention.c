/* test_attention.c — the strided attention kernel (kernels/cpu/attention.h), forward and backward,
 * against a naive reference written here in double precision (the full softmax of every row, its
 * analytic gradient), over batch 1-2, heads 1-3, sq and sk from 1 to 1,100 (not multiples of the
 * kernel's blocks; several key blocks), d 1-130, three layouts (head-major, token-major,
 * head-major with padded strides), with and without a bias, scale 1 and 1/sqrt(d); each case runs
 * the AVX2 path (when the CPU has it; the AVX-512 levels run it too) and the scalar path, and
 * compares them with each other.
 *
 * Tolerances (measured worst in parentheses, printed by the tests):
 *   forward  |out - ref| <= 1e-5 * max|v|; |lse - ref| <= 1e-5 * (1 + |ref|)
 *   backward |g - ref| <= 2e-5 * max|ref g| for dq, dk, dv, each
 *   the double reference's gradient against central differences (h = 1e-4): 1e-6 of max|g|;
 *   the kernel's f32 gradient against the same differences: 1e-5 of max|g|
 *   AVX2 against scalar: the forward and backward bounds above
 * Also: bit-identical results with 1, 2 and 3 threads; rows that are all -inf and sk = 0 give NaN
 * and lse -inf; bad arguments are refused; the padding between strided rows is never written;
 * the earlier entry points (dfm_cpu_attention, dfm_cpu_attention_bias) agree with the kernel; and,
 * with a CUDA device, dfm_cuda_attention_fwd/_bwd agree with the CPU to 1e-4 (skipped without one).
 * bf16 operands (args.bf16): both paths (VDPBF16PS, rounded copies and sgemm) against a reference
 * that rounds the same operands, against each other, and bit-identical with 1 and 2 threads
 * (tolerances above the tests).
 */
#include "test.h"
#include "base/error.h"
#include "cpu/attention.h"
#include "cpu/cpu.h"
#ifdef DFM_HAVE_CUDA
#include "cuda/attention.h"
#include "cuda/device.h"
#endif

#include <stdint.h>
#include <stdlib.h>

#define TOL_FWD 1e-5
#define TOL_LSE 1e-5
#define TOL_BWD 2e-5
#define TOL_FD_REF 1e-6
#define TOL_FD 1e-5
#define SENTINEL 777.0f

static uint64_t g_rng = 0x2545f4914f6cdd1dull;
static float urand(void) /* [-1, 1) */
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((g_rng >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

/* ---- a problem: strided f32 operands as the kernel sees them -------------------------------- */

enum { HEAD_MAJOR, TOKEN_MAJOR, PADDED, NLAYOUTS };
static const char *layout_name[] = {"head-major", "token-major", "padded"};

typedef struct {
    dfm_attn_args a;
    int64_t n[4]; /* elements of the q, k, v, out buffers (dq, dk, dv, dout have q's, k's, v's, out's) */
    float *q, *k, *v, *out, *bias, *lse, *dout, *dq, *dk, *dv;
} problem;

static void layout_strides(int layout, int64_t heads, int64_t rows, int64_t d, int64_t st[3])
{
    if (layout == TOKEN_MAJOR) {
        st[2] = heads * d, st[1] = d, st[0] = rows * heads * d;
    } else if (layout == HEAD_MAJOR) {
        st[2] = d, st[1] = rows * d, st[0] = heads * rows * d;
    } else {
        st[2] = d + 3, st[1] = rows * (d + 3) + 5, st[0] = heads * st[1] + 7;
    }
}

static int64_t span(const int64_t st[3], int64_t batch, int64_t heads, int64_t rows, int64_t d)
{
    if (!batch || !heads || !rows) return 1;
    return (batch - 1) * st[0] + (heads - 1) * st[1] + (rows - 1) * st[2] + d;
}

static float *rand_buf(int64_t n, float amp)
{
    float *p = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) p[i] = amp * urand();
    return p;
}

static float *sentinel_buf(int64_t n)
{
    float *p = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) p[i] = SENTINEL;
    return p;
}

static void problem_init(problem *p, int64_t batch, int64_t heads, int64_t sq, int64_t sk, int64_t d, int layout,
                         int with_bias, float scale)
{
    memset(p, 0, sizeof *p);
    dfm_attn_args *a = &p->a;
    a->batch = batch, a->heads = heads, a->sq = sq, a->sk = sk, a->d = d, a->scale = scale;
    layout_strides(layout, heads, sq, d, a->qs);
    layout_strides(layout, heads, sk, d, a->ks);
    layout_strides(layout, heads, sk, d, a->vs);
    layout_strides(layout, heads, sq, d, a->os);
    p->n[0] = span(a->qs, batch, heads, sq, d), p->n[1] = span(a->ks, batch, heads, sk, d);
    p->n[2] = span(a->vs, batch, heads, sk, d), p->n[3] = span(a->os, batch, heads, sq, d);
    /* scores of a few units: a peaky softmax, far from uniform */
    float qamp = scale == 1.0f ? 1.0f : 3.0f;
    p->q = rand_buf(p->n[0], qamp), p->k = rand_buf(p->n[1], 1.0f), p->v = rand_buf(p->n[2], 2.0f);
    p->dout = rand_buf(p->n[3], 1.0f);
    p->bias = with_bias ? rand_buf(heads * sq * sk + 1, 3.0f) : NULL;
    p->out = sentinel_buf(p->n[3]), p->dq = sentinel_buf(p->n[0]);
    p->dk = sentinel_buf(p->n[1]), p->dv = sentinel_buf(p->n[2]);
    p->lse = sentinel_buf(batch * heads * sq + 1);
    a->q = p->q, a->k = p->k, a->v = p->v, a->out = p->out, a->bias = p->bias, a->lse = p->lse;
}

static void problem_free(problem *p)
{
    free(p->q), free(p->k), free(p->v), free(p->out), free(p->bias), free(p->lse);
    free(p->dout), free(p->dq), free(p->dk), free(p->dv);
}

static int run_fwd(problem *p) { return dfm_cpu_attention_fwd(&p->a); }
static int run_bwd(problem *p) { return dfm_cpu_attention_bwd(&p->a, p->dout, p->dq, p->dk, p->dv); }

/* ---- the reference, in double on canonical [B, H, S, D] copies ---------------------------- */

typedef struct {
    int64_t B, H, sq, sk, d;
    double *q, *k, *v, *g; /* g: the gradient of the loss wrt out (dout) */
    const float *bias;
    double scale;
} ref_t;

static double *canon(const float *x, const int64_t st[3], int64_t B, int64_t H, int64_t R, int64_t d)
{
    double *c = malloc((size_t)(B * H * R * d + 1) * sizeof(double));
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < R; i++)
                for (int64_t e = 0; e < d; e++) c[((b * H + h) * R + i) * d + e] = x[b * st[0] + h * st[1] + i * st[2] + e];
    return c;
}

static void ref_init(ref_t *r, const problem *p)
{
    const dfm_attn_args *a = &p->a;
    r->B = a->batch, r->H = a->heads, r->sq = a->sq, r->sk = a->sk, r->d = a->d;
    r->q = canon(p->q, a->qs, r->B, r->H, r->sq, r->d);
    r->k = canon(p->k, a->ks, r->B, r->H, r->sk, r->d);
    r->v = canon(p->v, a->vs, r->B, r->H, r->sk, r->d);
    r->g = canon(p->dout, a->os, r->B, r->H, r->sq, r->d);
    r->bias = p->bias, r->scale = a->scale;
}

static void ref_free(ref_t *r) { free(r->q), free(r->k), free(r->v), free(r->g); }

/* Softmax weights p[sk] of row (b, h, i); returns the row's lse (-inf and p NaN when every score
 * is -inf or there are no keys). */
static double ref_row(const ref_t *r, int64_t b, int64_t h, int64_t i, double *p)
{
    const double *qi = r->q + ((b * r->H + h) * r->sq + i) * r->d;
    double m = -INFINITY, sum = 0;
    for (int64_t j = 0; j < r->sk; j++) {
        const double *kj = r->k + ((b * r->H + h) * r->sk + j) * r->d;
        double s = 0;
        for (int64_t e = 0; e < r->d; e++) s += qi[e] * kj[e];
        p[j] = r->scale * s + (r->bias ? r->bias[(h * r->sq + i) * r->sk + j] : 0.0);
        if (p[j] > m) m = p[j];
    }
    if (m == -INFINITY) {
        for (int64_t j = 0; j < r->sk; j++) p[j] = NAN;
        return -INFINITY;
    }
    for (int64_t j = 0; j < r->sk; j++) sum += p[j] = exp(p[j] - m);
    for (int64_t j = 0; j < r->sk; j++) p[j] /= sum;
    return m + log(sum);
}

/* out [B, H, sq, d], lse [B, H, sq] (either may be NULL); returns sum(g * out). */
static double ref_fwd(const ref_t *r, double *out, double *lse)
{
    double *p = malloc((size_t)(r->sk + 1) * sizeof(double)), loss = 0;
    for (int64_t b = 0; b < r->B; b++)
        for (int64_t h = 0; h < r->H; h++)
            for (int64_t i = 0; i < r->sq; i++) {
                int64_t row = (b * r->H + h) * r->sq + i;
                double l = ref_row(r, b, h, i, p);
                if (lse) lse[row] = l;
                for (int64_t e = 0; e < r->d; e++) {
                    double o = 0;
                    for (int64_t j = 0; j < r->sk; j++) o += p[j] * r->v[((b * r->H + h) * r->sk + j) * r->d + e];
                    if (l == -INFINITY) o = NAN;
                    if (out) out[row * r->d + e] = o;
                    loss += r->g[row * r->d + e] * o;
                }
            }
    free(p);
    return loss;
}

/* Analytic gradient of sum(g * out): dq [B, H, sq, d], dk, dv [B, H, sk, d] (zeroed here). */
static void ref_bwd(const ref_t *r, double *dq, double *dk, double *dv)
{
    int64_t d = r->d;
    memset(dq, 0, (size_t)(r->B * r->H * r->sq * d) * sizeof(double));
    memset(dk, 0, (size_t)(r->B * r->H * r->sk * d) * sizeof(double));
    memset(dv, 0, (size_t)(r->B * r->H * r->sk * d) * sizeof(double));
    double *p = malloc((size_t)(r->sk + 1) * sizeof(double)), *dp = malloc((size_t)(r->sk + 1) * sizeof(double));
    for (int64_t b = 0; b < r->B; b++)
        for (int64_t h = 0; h < r->H; h++)
            for (int64_t i = 0; i < r->sq; i++) {
                int64_t row = (b * r->H + h) * r->sq + i, kv0 = (b * r->H + h) * r->sk;
                const double *gi = r->g + row * d, *qi = r->q + row * d;
                ref_row(r, b, h, i, p);
                double dd = 0;
                for (int64_t j = 0; j < r->sk; j++) {
                    dp[j] = 0;
                    for (int64_t e = 0; e < d; e++) dp[j] += gi[e] * r->v[(kv0 + j) * d + e];
                    dd += p[j] * dp[j];
                }
                for (int64_t j = 0; j < r->sk; j++) {
                    double ds = p[j] * (dp[j] - dd);
                    for (int64_t e = 0; e < d; e++) {
                        dq[row * d + e] += r->scale * ds * r->k[(kv0 + j) * d + e];
                        dk[(kv0 + j) * d + e] += r->scale * ds * qi[e];
                        dv[(kv0 + j) * d + e] += p[j] * gi[e];
                    }
                }
            }
    free(p);
    free(dp);
}

/* ---- comparisons --------------------------------------------------------------------------- */

/* max |got - ref| over the elements of a strided f32 operand against a canonical double one, NaN
 * matching NaN only (a mismatch counts as infinite). */
static double max_err(const float *got, const int64_t st[3], const double *ref, int64_t B, int64_t H, int64_t R,
                      int64_t d)
{
    double worst = 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < R; i++)
                for (int64_t e = 0; e < d; e++) {
                    double g = got[b * st[0] + h * st[1] + i * st[2] + e], x = ref[((b * H + h) * R + i) * d + e];
                    double t = isnan(x) ? (isnan(g) ? 0 : INFINITY) : fabs(g - x);
                    if (!(t <= worst)) worst = isnan(t) ? INFINITY : t;
                }
    return worst;
}

static double max_abs(const double *x, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        if (fabs(x[i]) > m) m = fabs(x[i]);
    return m;
}

/* Every element of buf outside the strided operand still holds the sentinel. */
static int padding_kept(const float *buf, int64_t n, const int64_t st[3], int64_t B, int64_t H, int64_t R, int64_t d)
{
    char *mine = calloc((size_t)n, 1);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < R; i++) memset(mine + b * st[0] + h * st[1] + i * st[2], 1, (size_t)d);
    int ok = 1;
    for (int64_t i = 0; i < n; i++)
        if (!mine[i] && buf[i] != SENTINEL) ok = 0;
    free(mine);
    return ok;
}

/* a copy of n floats */
static float *dup(const float *x, int64_t n)
{
    float *c = malloc((size_t)n * sizeof(float));
    memcpy(c, x, (size_t)n * sizeof(float));
    return c;
}

/* ---- forward and backward against the reference -------------------------------------------- */

typedef struct {
    double fwd, lse, bwd, simd;
} worst_t;

static void ref_case(int64_t B, int64_t H, int64_t sq, int64_t sk, int64_t d, int layout, int with_bias, float scale,
                     worst_t *w)
{
    problem p;
    problem_init(&p, B, H, sq, sk, d, layout, with_bias, scale);
    ref_t r;
    ref_init(&r, &p);
    double *out = malloc((size_t)(B * H * sq * d + 1) * sizeof(double)), *lse = malloc((size_t)(B * H * sq + 1) * sizeof(double));
    double *dq = malloc((size_t)(B * H * sq * d + 1) * sizeof(double)), *dk = malloc((size_t)(B * H * sk * d + 1) * sizeof(double));
    double *dv = malloc((size_t)(B * H * sk * d + 1) * sizeof(double));
    ref_fwd(&r, out, lse);
    ref_bwd(&r, dq, dk, dv);
    double vmax = max_abs(r.v, B * H * sk * d), gmax[3] = {max_abs(dq, B * H * sq * d), max_abs(dk, B * H * sk * d),
                                                              max_abs(dv, B * H * sk * d)};
    for (int t = 0; t < 3; t++)
        if (gmax[t] == 0) gmax[t] = 1;
    char what[160];
    snprintf(what, sizeof what, "B %lld H %lld sq %lld sk %lld d %lld %s%s scale %g", (long long)B, (long long)H,
             (long long)sq, (long long)sk, (long long)d, layout_name[layout], with_bias ? " bias" : "", scale);
    float *keep[5] = {NULL};
    int level = dfm_cpu_simd_level();
    for (int simd = 1; simd >= 0; simd--) { /* the kernel's paths: AVX2 (also at the AVX-512 levels), scalar */
        if (simd && dfm_cpu_level_max() < DFM_CPU_AVX2) continue;
        dfm_cpu_set_simd_level(simd ? DFM_CPU_AVX2 : DFM_CPU_SCALAR);
        int rc = run_fwd(&p);
        if (rc == 0) rc = run_bwd(&p);
        if (rc) {
            fprintf(stderr, "  %s simd %d: rc %d %s\n", what, simd, rc, dfm_errmsg());
            dfm_test_failures++;
            break;
        }
        const dfm_attn_args *a = &p.a;
        double ef = max_err(p.out, a->os, out, B, H, sq, d) / vmax, el = 0;
        for (int64_t i = 0; i < B * H * sq; i++) {
            double t = isinf(lse[i]) ? (p.lse[i] == (float)lse[i] ? 0 : INFINITY)
                                     : fabs(p.lse[i] - lse[i]) / (1 + fabs(lse[i]));
            if (!(t <= el)) el = isnan(t) ? INFINITY : t;
        }
        double eb = max_err(p.dq, a->qs, dq, B, H, sq, d) / gmax[0];
        double t = max_err(p.dk, a->ks, dk, B, H, sk, d) / gmax[1];
        eb = t > eb ? t : eb;
        t = max_err(p.dv, a->vs, dv, B, H, sk, d) / gmax[2];
        eb = t > eb ? t : eb;
        if (!(ef <= TOL_FWD && el <= TOL_LSE && eb <= TOL_BWD)) {
            fprintf(stderr, "  %s simd %d: out error %.2e, lse %.2e, gradients %.2e\n", what, simd, ef, el, eb);
            dfm_test_failures++;
        }
        if (!padding_kept(p.out, p.n[3], a->os, B, H, sq, d) || !padding_kept(p.dq, p.n[0], a->qs, B, H, sq, d) ||
            !padding_kept(p.dk, p.n[1], a->ks, B, H, sk, d) || !padding_kept(p.dv, p.n[2], a->vs, B, H, sk, d)) {
            fprintf(stderr, "  %s simd %d: wrote between the strided rows\n", what, simd);
            dfm_test_failures++;
        }
        w->fwd = ef > w->fwd ? ef : w->fwd;
        w->lse = el > w->lse ? el : w->lse;
        w->bwd = eb > w->bwd ? eb : w->bwd;
        if (simd) {
            keep[0] = dup(p.out, p.n[3]), keep[1] = dup(p.dq, p.n[0]), keep[2] = dup(p.dk, p.n[1]);
            keep[3] = dup(p.dv, p.n[2]), keep[4] = dup(p.lse, B * H * sq);
        } else if (keep[0]) { /* the AVX2 path against the scalar one */
            double es = 0, x;
            for (int64_t i = 0; i < p.n[3]; i++)
                if ((x = fabs(keep[0][i] - p.out[i]) / vmax / TOL_FWD) > es) es = x;
            float *gr[3] = {p.dq, p.dk, p.dv};
            for (int g = 0; g < 3; g++)
                for (int64_t i = 0; i < p.n[g]; i++)
                    if ((x = fabs(keep[g + 1][i] - gr[g][i]) / gmax[g] / TOL_BWD) > es) es = x;
            for (int64_t i = 0; i < B * H * sq; i++)
                if (!isinf(p.lse[i]) && (x = fabs(keep[4][i] - p.lse[i]) / (1 + fabs(p.lse[i])) / TOL_LSE) > es) es = x;
            if (!(es <= 1)) {
                fprintf(stderr, "  %s: AVX2 and scalar differ by %.2f of the tolerance\n", what, es);
                dfm_test_failures++;
            }
            w->simd = es > w->simd ? es : w->simd;
        }
    }
    dfm_cpu_set_simd_level(level);
    for (int i = 0; i < 5; i++) free(keep[i]);
    free(out), free(lse), free(dq), free(dk), free(dv);
    ref_free(&r);
    problem_free(&p);
}

TEST(attention_vs_reference)
{
    static const int64_t shapes[][5] = {/* batch, heads, sq, sk, d */
                                        {1, 1, 1, 1, 1},     {1, 1, 1, 5, 3},    {2, 1, 7, 1, 8},
                                        {1, 2, 5, 9, 8},     {2, 3, 17, 33, 16}, {1, 2, 129, 130, 64},
                                        {2, 2, 200, 513, 9}, {1, 1, 300, 77, 130}, {1, 3, 64, 64, 128},
                                        {2, 1, 257, 255, 1}, {1, 1, 33, 1100, 24}};
    worst_t w = {0};
    int n = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int layout = 0; layout < NLAYOUTS; layout++)
            for (int bias = 0; bias <= 1; bias++)
                for (int sc = 0; sc <= 1; sc++) {
                    const int64_t *z = shapes[s];
                    /* the large shapes once per layout, to keep the test short */
                    if (z[2] * z[3] * z[4] > 1000000 && (bias != layout % 2 || sc != (layout == PADDED))) continue;
                    float scale = sc ? 1.0f / sqrtf((float)z[4]) : 1.0f;
                    ref_case(z[0], z[1], z[2], z[3], z[4], layout, bias, scale, &w);
                    n++;
                }
    fprintf(stderr, "  %d cases (%s): worst out error %.2e of max|v|, lse %.2e, gradients %.2e of max|g|; "
            "AVX2 vs scalar %.2f of the tolerance\n", n, dfm_cpu_level_max() >= DFM_CPU_AVX2 ? "AVX2 and scalar" : "scalar only",
            w.fwd, w.lse, w.bwd, w.simd);
}

/* ---- bf16 operands ---------------------------------------------------------------------------- */

/* Tolerances of the bf16 path (args.bf16) against a reference in double that rounds the same
 * operands to bf16 at the same places: q, k, v, dout; the forward's P = exp(s - m) before P V,
 * with m the running max over the kernel's key blocks (KEY_BLOCK, FWD_KB in attention.c) as the
 * kernel takes it; the backward's P = exp(s - lse) and dS = P (dP - D) before their products.
 * What remains is f32 summation and exp, and the P and dS that these f32 differences move across
 * a bf16 rounding boundary now and then: one such moves its product by a bf16 step (2^-8) of its
 * weight, so the bounds are 2^-8 ~ 4e-3 of max|v| (out) and of max|g| (each gradient); lse (no
 * rounded product past q.k, which the reference rounds too) 1e-5 of 1 + |lse|. Measured: ~1e-4.
 * That the reference models the kernel's roundings, not just its tolerance: the kernel's error
 * against it must stay under a quarter of its error against the unrounded f32 reference. The
 * VDPBF16PS path against the rounded-copies-and-sgemm path: the same bounds. */
#define KEY_BLOCK 256
#define TOL_BF16_FWD 4e-3
#define TOL_BF16_LSE 1e-5
#define TOL_BF16_BWD 4e-3

static double rb(double x) { return dfm_cpu_round_bf16_1((float)x); }

static double *canon_bf16(const float *x, const int64_t st[3], int64_t B, int64_t H, int64_t R, int64_t d)
{
    double *c = canon(x, st, B, H, R, d);
    for (int64_t i = 0; i < B * H * R * d; i++) c[i] = rb(c[i]);
    return c;
}

/* Scores of row (b, h, i) from the rounded operands, their max; s [sk] */
static double ref16_scores(const ref_t *r, int64_t b, int64_t h, int64_t i, double *s)
{
    const double *qi = r->q + ((b * r->H + h) * r->sq + i) * r->d;
    double m = -INFINITY;
    for (int64_t j = 0; j < r->sk; j++) {
        const double *kj = r->k + ((b * r->H + h) * r->sk + j) * r->d;
        double t = 0;
        for (int64_t e = 0; e < r->d; e++) t += qi[e] * kj[e];
        s[j] = r->scale * t + (r->bias ? r->bias[(h * r->sq + i) * r->sk + j] : 0.0);
        if (s[j] > m) m = s[j];
    }
    return m;
}

/* out = sum_j bf16(exp(s_j - m)) v_j / sum_j exp(s_j - m); lse; then the gradients with
 * P = exp(s - lse), dP = dout . v, D = sum P dP, dS = P (dP - D), dv += bf16(P) dout,
 * dq += scale bf16(dS) k, dk += scale bf16(dS) q. r holds the rounded operands. */
static void ref16(const ref_t *r, double *out, double *lse, double *dq, double *dk, double *dv)
{
    int64_t d = r->d, sk = r->sk;
    memset(dq, 0, (size_t)(r->B * r->H * r->sq * d) * sizeof(double));
    memset(dk, 0, (size_t)(r->B * r->H * sk * d) * sizeof(double));
    memset(dv, 0, (size_t)(r->B * r->H * sk * d) * sizeof(double));
    double *s = malloc((size_t)(sk + 1) * sizeof(double)), *dp = malloc((size_t)(sk + 1) * sizeof(double));
    double *p16 = malloc((size_t)(sk + 1) * sizeof(double));
    for (int64_t b = 0; b < r->B; b++)
        for (int64_t h = 0; h < r->H; h++)
            for (int64_t i = 0; i < r->sq; i++) {
                int64_t row = (b * r->H + h) * r->sq + i, kv0 = (b * r->H + h) * sk;
                const double *gi = r->g + row * d, *qi = r->q + row * d;
                double m = ref16_scores(r, b, h, i, s), sum = 0, mr = -INFINITY;
                for (int64_t j = 0; j < sk; j++) sum += exp(s[j] - m);
                for (int64_t j0 = 0; j0 < sk; j0 += KEY_BLOCK) { /* P against the running max */
                    int64_t j1 = j0 + KEY_BLOCK < sk ? j0 + KEY_BLOCK : sk;
                    for (int64_t j = j0; j < j1; j++) mr = s[j] > mr ? s[j] : mr;
                    for (int64_t j = j0; j < j1; j++) p16[j] = rb(exp(s[j] - mr)) * exp(mr - m);
                }
                for (int64_t e = 0; e < d; e++) {
                    double o = 0;
                    for (int64_t j = 0; j < sk; j++) o += p16[j] * r->v[(kv0 + j) * d + e];
                    out[row * d + e] = o / sum;
                }
                double l = lse[row] = m + log(sum), dd = 0;
                for (int64_t j = 0; j < sk; j++) {
                    s[j] = exp(s[j] - l);
                    dp[j] = 0;
                    for (int64_t e = 0; e < d; e++) dp[j] += gi[e] * r->v[(kv0 + j) * d + e];
                    dd += s[j] * dp[j];
                }
                for (int64_t j = 0; j < sk; j++) {
                    double ds = rb(s[j] * (dp[j] - dd)), pb = rb(s[j]);
                    for (int64_t e = 0; e < d; e++) {
                        dq[row * d + e] += r->scale * ds * r->k[(kv0 + j) * d + e];
                        dk[(kv0 + j) * d + e] += r->scale * ds * qi[e];
                        dv[(kv0 + j) * d + e] += pb * gi[e];
                    }
                }
            }
    free(s);
    free(dp);
    free(p16);
}

/* worst errors of a run against the reference: [0] out / max|v|, [1] lse, [2] gradients / max|g| */
static void bf16_errors(const problem *p, double vmax, const double *out, const double *lse, const double *g[3],
                        double e[3])
{
    const dfm_attn_args *a = &p->a;
    int64_t B = a->batch, H = a->heads, sq = a->sq, sk = a->sk, d = a->d;
    e[0] = max_err(p->out, a->os, out, B, H, sq, d) / vmax;
    e[1] = 0;
    for (int64_t i = 0; i < B * H * sq; i++) {
        double t = fabs(p->lse[i] - lse[i]) / (1 + fabs(lse[i]));
        if (!(t <= e[1])) e[1] = isnan(t) ? INFINITY : t;
    }
    const float *got[3] = {p->dq, p->dk, p->dv};
    const int64_t *st[3] = {a->qs, a->ks, a->vs}, rows[3] = {sq, sk, sk};
    e[2] = 0;
    for (int t = 0; t < 3; t++) {
        double gm = max_abs(g[t], B * H * rows[t] * d), x = max_err(got[t], st[t], g[t], B, H, rows[t], d);
        x /= gm > 0 ? gm : 1;
        if (!(x <= e[2])) e[2] = isnan(x) ? INFINITY : x;
    }
}

/* the largest difference of two runs' outputs, as a fraction of the bf16 tolerances */
static double bf16_vs(const problem *p, const problem *o, double vmax, const double *g[3])
{
    const dfm_attn_args *a = &p->a;
    int64_t B = a->batch, H = a->heads, rows[3] = {a->sq, a->sk, a->sk};
    double w = 0, x;
    for (int64_t i = 0; i < p->n[3]; i++)
        if ((x = fabs(p->out[i] - o->out[i]) / vmax / TOL_BF16_FWD) > w) w = x;
    const float *gp[3] = {p->dq, p->dk, p->dv}, *go[3] = {o->dq, o->dk, o->dv};
    for (int t = 0; t < 3; t++) {
        double gm = max_abs(g[t], B * H * rows[t] * a->d);
        for (int64_t i = 0; i < p->n[t]; i++)
            if ((x = fabs(gp[t][i] - go[t][i]) / (gm > 0 ? gm : 1) / TOL_BF16_BWD) > w) w = x;
    }
    for (int64_t i = 0; i < B * H * a->sq; i++)
        if ((x = fabs(p->lse[i] - o->lse[i]) / (1 + fabs(p->lse[i])) / TOL_BF16_LSE) > w) w = x;
    return w;
}

TEST(attention_bf16_vs_reference)
{
    static const int64_t cases[][7] = {/* batch, heads, sq, sk, d, layout, bias */
                                       {2, 2, 37, 300, 64, TOKEN_MAJOR, 1}, {1, 3, 37, 300, 128, HEAD_MAJOR, 0},
                                       {2, 1, 300, 37, 128, PADDED, 1},     {1, 2, 129, 600, 64, TOKEN_MAJOR, 0},
                                       {2, 2, 5, 7, 3, HEAD_MAJOR, 1},      {1, 1, 1, 1, 1, TOKEN_MAJOR, 0},
                                       {1, 1, 260, 513, 33, HEAD_MAJOR, 1}};
    int level = dfm_cpu_simd_level();
    int dot = dfm_cpu_level_max() >= DFM_CPU_AVX512_BF16;
    double worst[2][3] = {{0}}, worst_vs = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int64_t *z = cases[c];
        float scale = 1.0f / sqrtf((float)z[4]);
        problem p[2];
        for (int path = 0; path < 2; path++) {
            g_rng = 0xbf16ull + c; /* the same operands for both paths */
            problem_init(&p[path], z[0], z[1], z[2], z[3], z[4], (int)z[5], (int)z[6], scale);
            p[path].a.bf16 = 1;
        }
        ref_t r, r32;
        ref_init(&r, &p[0]);
        ref_init(&r32, &p[0]);
        free(r.q), free(r.k), free(r.v), free(r.g);
        const dfm_attn_args *a = &p[0].a;
        int64_t B = z[0], H = z[1], sq = z[2], sk = z[3], d = z[4];
        r.q = canon_bf16(p[0].q, a->qs, B, H, sq, d), r.k = canon_bf16(p[0].k, a->ks, B, H, sk, d);
        r.v = canon_bf16(p[0].v, a->vs, B, H, sk, d), r.g = canon_bf16(p[0].dout, a->os, B, H, sq, d);
        double *out = malloc((size_t)(B * H * sq * d) * sizeof(double)), *lse = malloc((size_t)(B * H * sq) * sizeof(double));
        double *g[3] = {malloc((size_t)(B * H * sq * d) * sizeof(double)), malloc((size_t)(B * H * sk * d) * sizeof(double)),
                        malloc((size_t)(B * H * sk * d) * sizeof(double))};
        ref16(&r, out, lse, g[0], g[1], g[2]);
        double vmax = max_abs(r.v, B * H * sk * d);
        vmax = vmax > 0 ? vmax : 1;
        /* the unrounded reference */
        double *out32 = malloc((size_t)(B * H * sq * d) * sizeof(double)), *lse32 = malloc((size_t)(B * H * sq) * sizeof(double));
        double *g32[3] = {malloc((size_t)(B * H * sq * d) * sizeof(double)), malloc((size_t)(B * H * sk * d) * sizeof(double)),
                          malloc((size_t)(B * H * sk * d) * sizeof(double))};
        ref_fwd(&r32, out32, lse32);
        ref_bwd(&r32, g32[0], g32[1], g32[2]);
        char what[160];
        snprintf(what, sizeof what, "B %lld H %lld sq %lld sk %lld d %lld %s%s", (long long)B, (long long)H,
                 (long long)sq, (long long)sk, (long long)d, layout_name[z[5]], z[6] ? " bias" : "");
        /* path 0: VDPBF16PS (where the CPU has it), path 1: rounded copies and sgemm */
        for (int path = 0; path < 2; path++) {
            if (path == 0 && !dot) continue;
            dfm_cpu_set_simd_level(path == 0 ? DFM_CPU_AVX512_BF16 : DFM_CPU_AVX2);
            int rc = run_fwd(&p[path]);
            if (!rc) rc = run_bwd(&p[path]);
            if (rc) {
                fprintf(stderr, "  %s path %d: rc %d %s\n", what, path, rc, dfm_errmsg());
                dfm_test_failures++;
                continue;
            }
            double e[3], e32[3];
            bf16_errors(&p[path], vmax, out, lse, (const double **)g, e);
            bf16_errors(&p[path], vmax, out32, lse32, (const double **)g32, e32);
            if (!(e[0] <= TOL_BF16_FWD && e[1] <= TOL_BF16_LSE && e[2] <= TOL_BF16_BWD)) {
                fprintf(stderr, "  %s path %d: out error %.2e, lse %.2e, gradients %.2e\n", what, path, e[0], e[1], e[2]);
                dfm_test_failures++;
            }
            for (int t = 0; t < 3; t++)
                if (!(e[t] <= 0.25 * e32[t] || e32[t] == 0)) {
                    fprintf(stderr, "  %s path %d: error %d %.2e against the bf16 reference, %.2e against f32\n", what,
                            path, t, e[t], e32[t]);
                    dfm_test_failures++;
                }
            const dfm_attn_args *pa = &p[path].a;
            if (!padding_kept(p[path].out, p[path].n[3], pa->os, B, H, sq, d) ||
                !padding_kept(p[path].dq, p[path].n[0], pa->qs, B, H, sq, d) ||
                !padding_kept(p[path].dk, p[path].n[1], pa->ks, B, H, sk, d) ||
                !padding_kept(p[path].dv, p[path].n[2], pa->vs, B, H, sk, d)) {
                fprintf(stderr, "  %s path %d: wrote between the strided rows\n", what, path);
                dfm_test_failures++;
            }
            if (getenv("DFM_TEST_VERBOSE"))
                fprintf(stderr, "  %s path %d: %.2e %.2e %.2e (f32 reference %.2e %.2e %.2e)\n", what, path, e[0], e[1],
                        e[2], e32[0], e32[1], e32[2]);
            for (int t = 0; t < 3; t++) worst[path][t] = e[t] > worst[path][t] ? e[t] : worst[path][t];
        }
        if (dot) {
            double w = bf16_vs(&p[0], &p[1], vmax, (const double **)g);
            if (!(w <= 1)) {
                fprintf(stderr, "  %s: VDPBF16PS and sgemm paths differ by %.2f of the tolerance\n", what, w);
                dfm_test_failures++;
            }
            worst_vs = w > worst_vs ? w : worst_vs;
        }
        free(out), free(lse), free(g[0]), free(g[1]), free(g[2]);
        free(out32), free(lse32), free(g32[0]), free(g32[1]), free(g32[2]);
        ref_free(&r), ref_free(&r32);
        problem_free(&p[0]), problem_free(&p[1]);
    }
    dfm_cpu_set_simd_level(level);
    fprintf(stderr, "  VDPBF16PS%s: worst out %.2e, lse %.2e, gradients %.2e; sgemm on rounded copies: %.2e, %.2e, "
            "%.2e; the two paths %.2f of the tolerance\n", dot ? "" : " (not on this CPU)", worst[0][0], worst[0][1],
            worst[0][2], worst[1][0], worst[1][1], worst[1][2], worst_vs);
}

/* bf16: 1 and 2 threads give the same bits on either path; bf16 = 0 is not bf16 = 1 (the flag
 * reaches the kernel) */
TEST(attention_bf16_threads_bitwise)
{
    int saved = dfm_cpu_threads(), level = dfm_cpu_simd_level();
    for (int path = 0; path < 2; path++) {
        if (path == 0 && dfm_cpu_level_max() < DFM_CPU_AVX512_BF16) continue;
        dfm_cpu_set_simd_level(path == 0 ? DFM_CPU_AVX512_BF16 : DFM_CPU_AVX2);
        for (int layout = 0; layout < 2; layout++) {
            problem p[3];
            for (int t = 0; t < 3; t++) {
                g_rng = 0x7654321ull + layout;
                problem_init(&p[t], 2, 3, 300, 700, 40, layout, layout == TOKEN_MAJOR, 0.3f);
                p[t].a.bf16 = t < 2;
                dfm_cpu_set_threads(t == 1 ? 2 : 1);
                CHECK_EQ(run_fwd(&p[t]), 0);
                CHECK_EQ(run_bwd(&p[t]), 0);
            }
            int same = !memcmp(p[0].out, p[1].out, (size_t)p[0].n[3] * sizeof(float)) &&
                       !memcmp(p[0].lse, p[1].lse, (size_t)(2 * 3 * 300) * sizeof(float)) &&
                       !memcmp(p[0].dq, p[1].dq, (size_t)p[0].n[0] * sizeof(float)) &&
                       !memcmp(p[0].dk, p[1].dk, (size_t)p[0].n[1] * sizeof(float)) &&
                       !memcmp(p[0].dv, p[1].dv, (size_t)p[0].n[2] * sizeof(float));
            if (!same) {
                fprintf(stderr, "  bf16 path %d %s: 2 threads differ from 1\n", path, layout_name[layout]);
                dfm_test_failures++;
            }
            CHECK(memcmp(p[0].out, p[2].out, (size_t)p[0].n[3] * sizeof(float)) != 0);
            for (int t = 0; t < 3; t++) problem_free(&p[t]);
        }
    }
    dfm_cpu_set_simd_level(level);
    dfm_cpu_set_threads(saved);
}

/* ---- finite differences -------------------------------------------------------------------- */

/* Central differences in double of sum(g * out) wrt each element of q, k, v: the reference's
 * analytic gradient to TOL_FD_REF, the kernel's (f32) to TOL_FD, both of max|g|. */
static void fd_case(int64_t B, int64_t H, int64_t sq, int64_t sk, int64_t d, int layout, int with_bias, float scale,
                    double *worst_ref, double *worst_kernel)
{
    problem p;
    problem_init(&p, B, H, sq, sk, d, layout, with_bias, scale);
    CHECK_EQ(run_fwd(&p), 0);
    CHECK_EQ(run_bwd(&p), 0);
    ref_t r;
    ref_init(&r, &p);
    int64_t nq = B * H * sq * d, nk = B * H * sk * d;
    double *an[3] = {malloc((size_t)nq * sizeof(double)), malloc((size_t)nk * sizeof(double)),
                     malloc((size_t)nk * sizeof(double))};
    ref_bwd(&r, an[0], an[1], an[2]);
    double *x[3] = {r.q, r.k, r.v}, h = 1e-4;
    const float *got[3] = {p.dq, p.dk, p.dv};
    const int64_t *st[3] = {p.a.qs, p.a.ks, p.a.vs}, rows[3] = {sq, sk, sk}, n[3] = {nq, nk, nk};
    for (int t = 0; t < 3; t++) {
        double *fd = malloc((size_t)n[t] * sizeof(double));
        for (int64_t i = 0; i < n[t]; i++) {
            double x0 = x[t][i];
            x[t][i] = x0 + h;
            double lp = ref_fwd(&r, NULL, NULL);
            x[t][i] = x0 - h;
            double lm = ref_fwd(&r, NULL, NULL);
            x[t][i] = x0;
            fd[i] = (lp - lm) / (2 * h);
        }
        double g = max_abs(fd, n[t]), er = 0;
        if (g == 0) g = 1; /* one key: q and k have no effect */
        for (int64_t i = 0; i < n[t]; i++)
            if (fabs(an[t][i] - fd[i]) > er) er = fabs(an[t][i] - fd[i]);
        er /= g;
        double ek = max_err(got[t], st[t], fd, B, H, rows[t], d) / g;
        if (!(er <= TOL_FD_REF && ek <= TOL_FD)) {
            fprintf(stderr, "  finite differences, d%c of B %lld H %lld sq %lld sk %lld d %lld: reference %.2e, "
                    "kernel %.2e of max|g| %.3g\n", "qkv"[t], (long long)B, (long long)H, (long long)sq, (long long)sk,
                    (long long)d, er, ek, g);
            dfm_test_failures++;
        }
        if (er > *worst_ref) *worst_ref = er;
        if (ek > *worst_kernel) *worst_kernel = ek;
        free(fd);
    }
    for (int t = 0; t < 3; t++) free(an[t]);
    ref_free(&r);
    problem_free(&p);
}

TEST(attention_finite_differences)
{
    double wr = 0, wk = 0;
    fd_case(1, 2, 3, 4, 5, TOKEN_MAJOR, 1, 0.4f, &wr, &wk);
    fd_case(2, 1, 4, 3, 2, HEAD_MAJOR, 0, 1.0f, &wr, &wk);
    fd_case(1, 1, 6, 9, 8, PADDED, 1, 1.0f / sqrtf(8.0f), &wr, &wk);
    fd_case(1, 1, 1, 1, 1, HEAD_MAJOR, 0, 1.0f, &wr, &wk);
    fprintf(stderr, "  worst against central differences: reference %.2e, kernel %.2e of max|g|\n", wr, wk);
}

/* ---- threads ------------------------------------------------------------------------------- */

TEST(attention_threads_bitwise)
{
    int saved = dfm_cpu_threads();
    for (int layout = 0; layout < 2; layout++) {
        problem p[3];
        for (int t = 0; t < 3; t++) {
            g_rng = 0x1234567ull + layout; /* the same operands each time */
            problem_init(&p[t], 2, 3, 300, 700, 40, layout, layout == TOKEN_MAJOR, 0.3f);
            dfm_cpu_set_threads(t + 1);
            CHECK_EQ(run_fwd(&p[t]), 0);
            CHECK_EQ(run_bwd(&p[t]), 0);
        }
        for (int t = 1; t < 3; t++) {
            int same = !memcmp(p[0].out, p[t].out, (size_t)p[0].n[3] * sizeof(float)) &&
                       !memcmp(p[0].lse, p[t].lse, (size_t)(2 * 3 * 300) * sizeof(float)) &&
                       !memcmp(p[0].dq, p[t].dq, (size_t)p[0].n[0] * sizeof(float)) &&
                       !memcmp(p[0].dk, p[t].dk, (size_t)p[0].n[1] * sizeof(float)) &&
                       !memcmp(p[0].dv, p[t].dv, (size_t)p[0].n[2] * sizeof(float));
            if (!same) {
                fprintf(stderr, "  %s: %d threads differ from 1\n", layout_name[layout], t + 1);
                dfm_test_failures++;
            }
        }
        for (int t = 0; t < 3; t++) problem_free(&p[t]);
    }
    dfm_cpu_set_threads(saved);
}

/* ---- masked rows, no keys, bad arguments ---------------------------------------------------- */

TEST(attention_masked_and_errors)
{
    /* sk = 600: several key blocks. Head 0: row 0 all -inf; row 1 -inf over the first 550 keys; row 2
     * only key 599 finite. Head 1 unmasked. */
    problem p;
    problem_init(&p, 1, 2, 3, 600, 8, TOKEN_MAJOR, 1, 1.0f);
    for (int j = 0; j < 600; j++) {
        p.bias[j] = -INFINITY;
        if (j < 550) p.bias[600 + j] = -INFINITY;
        if (j < 599) p.bias[1200 + j] = -INFINITY;
    }
    CHECK_EQ(run_fwd(&p), 0);
    ref_t r;
    ref_init(&r, &p);
    double out[2 * 3 * 8], lse[6];
    ref_fwd(&r, out, lse);
    for (int e = 0; e < 8; e++) {
        CHECK(isnan(p.out[e]));                                           /* row 0, head 0 */
        CHECK_NEAR(p.out[2 * 2 * 8 + e], p.v[599 * 2 * 8 + e], 1e-6);     /* row 2: v[599] */
        CHECK_NEAR(p.out[2 * 8 + e], out[1 * 8 + e], 1e-5);               /* row 1 */
        CHECK_NEAR(p.out[8 + e], out[3 * 8 + e], 1e-5);                   /* row 0, head 1 */
    }
    CHECK(p.lse[0] == -INFINITY);
    CHECK_NEAR(p.lse[1], lse[1], 1e-5 * (1 + fabs(lse[1])));
    ref_free(&r);
    problem_free(&p);

    /* no keys: NaN out, lse -inf; the backward gives dq = 0 */
    problem_init(&p, 2, 2, 3, 0, 4, HEAD_MAJOR, 0, 1.0f);
    CHECK_EQ(run_fwd(&p), 0);
    CHECK(isnan(p.out[0]) && isnan(p.out[p.n[3] - 1]));
    CHECK(p.lse[0] == -INFINITY && p.lse[11] == -INFINITY);
    CHECK_EQ(run_bwd(&p), 0);
    CHECK(p.dq[0] == 0.0f && p.dq[p.n[0] - 1] == 0.0f);
    problem_free(&p);
    /* no queries: dk = dv = 0 */
    problem_init(&p, 1, 2, 0, 3, 4, HEAD_MAJOR, 0, 1.0f);
    CHECK_EQ(run_fwd(&p), 0);
    CHECK_EQ(run_bwd(&p), 0);
    CHECK(p.dk[0] == 0.0f && p.dv[p.n[2] - 1] == 0.0f);
    problem_free(&p);

    /* bad arguments */
    problem_init(&p, 1, 2, 3, 4, 5, TOKEN_MAJOR, 0, 1.0f);
    p.a.d = 0;
    CHECK_EQ(run_fwd(&p), DFM_E_ARG);
    p.a.d = 5;
    p.a.ks[2] = 4; /* rows overlap */
    CHECK_EQ(run_fwd(&p), DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "row stride 4 of k") != NULL);
    p.a.ks[2] = 10;
    p.a.qs[1] = -5;
    CHECK_EQ(run_fwd(&p), DFM_E_ARG);
    p.a.qs[1] = 5;
    CHECK_EQ(run_fwd(&p), 0);
    p.a.lse = NULL;
    CHECK_EQ(run_bwd(&p), DFM_E_ARG);
    p.a.lse = p.lse;
    p.a.ks[1] = 0; /* two heads would sum their dk into one place */
    CHECK_EQ(run_bwd(&p), DFM_E_ARG);
    p.a.ks[1] = 5;
    p.a.v = NULL;
    CHECK_EQ(run_fwd(&p), DFM_E_ARG);
    problem_free(&p);
}

/* ---- the earlier entry points -------------------------------------------------------------- */

TEST(attention_old_wrappers)
{
    for (int layout = 0; layout < 2; layout++)
        for (int bias = 0; bias <= layout; bias++) {
            problem p;
            problem_init(&p, 1, 3, 70, 45, 16, layout, bias, 0.25f);
            p.a.lse = NULL;
            CHECK_EQ(run_fwd(&p), 0);
            float *out = sentinel_buf(p.n[3]);
            if (layout == HEAD_MAJOR)
                CHECK_EQ(dfm_cpu_attention(p.q, p.k, p.v, 0.25f, out, 3, 70, 45, 16), 0);
            else
                CHECK_EQ(dfm_cpu_attention_bias(p.q, p.k, p.v, p.bias, 0.25f, out, 3, 70, 45, 16), 0);
            CHECK(!memcmp(out, p.out, (size_t)p.n[3] * sizeof(float)));
            free(out);
            problem_free(&p);
        }
}

/* ---- the CUDA twin ------------------------------------------------------------------------- */

#ifdef DFM_HAVE_CUDA
static float *to_dev(const float *x, int64_t n)
{
    void *p = NULL;
    if (dfm_cuda_malloc(&p, (size_t)n * sizeof(float), NULL) < 0) return NULL;
    if (x && dfm_cuda_memcpy(p, x, (size_t)n * sizeof(float), 0, NULL) < 0) {
        dfm_cuda_free(p);
        return NULL;
    }
    return p;
}

static double rel_diff(const float *a, const float *b, int64_t n)
{
    double m = 0, e = 0;
    for (int64_t i = 0; i < n; i++) {
        if (fabs(b[i]) > m && !isinf(b[i])) m = fabs(b[i]);
        double t = isnan(b[i]) || isinf(b[i]) ? (a[i] == b[i] || (isnan(a[i]) && isnan(b[i])) ? 0 : INFINITY)
                                             : fabs((double)a[i] - b[i]);
        if (!(t <= e)) e = isnan(t) ? INFINITY : t;
    }
    return e / (m > 0 ? m : 1);
}

static void cuda_case(int64_t B, int64_t H, int64_t sq, int64_t sk, int64_t d, int layout, int with_bias, float scale)
{
    problem p, g; /* g: the same operands, results copied back from the device */
    uint64_t seed = g_rng;
    problem_init(&p, B, H, sq, sk, d, layout, with_bias, scale);
    g_rng = seed;
    problem_init(&g, B, H, sq, sk, d, layout, with_bias, scale);
    CHECK_EQ(run_fwd(&p), 0);
    CHECK_EQ(run_bwd(&p), 0);
    dfm_attn_args a = g.a;
    int64_t nl = B * H * sq + 1;
    float *dq_ = to_dev(g.q, g.n[0]), *dk_ = to_dev(g.k, g.n[1]), *dv_ = to_dev(g.v, g.n[2]);
    float *dout_ = to_dev(g.dout, g.n[3]), *out_ = to_dev(g.out, g.n[3]), *lse_ = to_dev(NULL, nl);
    float *bias_ = with_bias ? to_dev(g.bias, H * sq * sk + 1) : NULL;
    float *gq = to_dev(g.dq, g.n[0]), *gk = to_dev(g.dk, g.n[1]), *gv = to_dev(g.dv, g.n[2]);
    a.q = dq_, a.k = dk_, a.v = dv_, a.out = out_, a.lse = lse_, a.bias = bias_;
    char what[160];
    snprintf(what, sizeof what, "cuda B %lld H %lld sq %lld sk %lld d %lld %s%s", (long long)B, (long long)H,
             (long long)sq, (long long)sk, (long long)d, layout_name[layout], with_bias ? " bias" : "");
    int rc = dfm_cuda_attention_fwd(&a);
    if (!rc) rc = dfm_cuda_attention_bwd(&a, dout_, gq, gk, gv);
    if (!rc) rc = dfm_cuda_memcpy(g.out, out_, (size_t)g.n[3] * sizeof(float), 1, NULL);
    if (!rc) rc = dfm_cuda_memcpy(g.lse, lse_, (size_t)(nl - 1) * sizeof(float), 1, NULL);
    if (!rc) rc = dfm_cuda_memcpy(g.dq, gq, (size_t)g.n[0] * sizeof(float), 1, NULL);
    if (!rc) rc = dfm_cuda_memcpy(g.dk, gk, (size_t)g.n[1] * sizeof(float), 1, NULL);
    if (!rc) rc = dfm_cuda_memcpy(g.dv, gv, (size_t)g.n[2] * sizeof(float), 1, NULL);
    if (rc) {
        fprintf(stderr, "  %s: rc %d %s\n", what, rc, dfm_errmsg());
        dfm_test_failures++;
    } else {
        double e[5] = {rel_diff(g.out, p.out, g.n[3]), rel_diff(g.lse, p.lse, nl - 1), rel_diff(g.dq, p.dq, g.n[0]),
                       rel_diff(g.dk, p.dk, g.n[1]), rel_diff(g.dv, p.dv, g.n[2])};
        for (int i = 0; i < 5; i++)
            if (!(e[i] <= 1e-4)) {
                fprintf(stderr, "  %s: %s differs from the CPU by %.2e of its max\n", what,
                        (const char *[]){"out", "lse", "dq", "dk", "dv"}[i], e[i]);
                dfm_test_failures++;
            }
    }
    float *bufs[] = {dq_, dk_, dv_, dout_, out_, lse_, bias_, gq, gk, gv};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) dfm_cuda_free(bufs[i]);
    problem_free(&p);
    problem_free(&g);
}
#endif

TEST(attention_cuda_vs_cpu)
{
#ifdef DFM_HAVE_CUDA
    const char *why = NULL;
    if (dfm_cuda_device_count(&why) <= 0) {
        fprintf(stderr, "  (no CUDA device: %s; skipped)\n", why ? why : "unknown");
        return;
    }
    cuda_case(1, 1, 1, 1, 1, HEAD_MAJOR, 0, 1.0f);
    cuda_case(2, 3, 17, 33, 16, TOKEN_MAJOR, 1, 1.0f);
    cuda_case(1, 2, 129, 600, 64, PADDED, 1, 0.125f);
    cuda_case(2, 2, 300, 77, 130, HEAD_MAJOR, 0, 0.1f);
    cuda_case(1, 12, 256, 512, 128, TOKEN_MAJOR, 0, 1.0f / sqrtf(128.0f));
    cuda_case(2, 1, 5, 0, 8, HEAD_MAJOR, 0, 1.0f);
#else
    fprintf(stderr, "  (built without CUDA; skipped)\n");
#endif
}
