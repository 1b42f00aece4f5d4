/* test_nn_linear.c — the nn linear layer (lib/nn/linear.h) with and without LoRA:
 *   forward against a double-precision loop (f32 weights: 1e-5 of max|y|; the packed path and a
 *   BF16 weight likewise against the same loop over the bf16 values);
 *   backward (dx, dW, db, dA, dB) against the analytic gradients in double (1e-5 of each
 *   gradient's max magnitude) and against central finite differences of L = sum(y * g)
 *   evaluated through the forward (f64 accumulation of f32 forwards, step 1e-2: 2e-3 of max|grad|);
 *   LoRA dropout: the backward regenerates the forward's mask (finite differences through the
 *   same seed agree), and a different seed changes the output;
 *   PEFT's initialization: A within +-1/sqrt(in) and not constant, B zero, reproducible. */
#include "test.h"
#include "base/dtype.h"
#include "base/error.h"
#include "nn/linear.h"

#include <math.h>
#include <stdlib.h>

static uint64_t g_s = 88172645463325252ull;
static float rnd(void)
{
    g_s ^= g_s << 13, g_s ^= g_s >> 7, g_s ^= g_s << 17;
    return (float)((g_s >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static dfm_tensor mk(int64_t r, int64_t c)
{
    dfm_tensor t;
    int64_t s[2] = {r, c};
    if (dfm_tensor_alloc(&t, DFM_F32, DFM_CPU, 2, s)) abort();
    for (int64_t i = 0; i < r * c; i++) ((float *)t.data)[i] = rnd();
    return t;
}
static dfm_tensor mk1(int64_t n)
{
    dfm_tensor t;
    if (dfm_tensor_alloc(&t, DFM_F32, DFM_CPU, 1, &n)) abort();
    for (int64_t i = 0; i < n; i++) ((float *)t.data)[i] = rnd();
    return t;
}
static float at(const dfm_tensor *t, int64_t i) { return ((float *)t->data)[i]; }

/* The reference forward in double: y = x W^T + b + scale (xd A^T) B^T, xd = x * mask. */
static void ref_forward(const dfm_linear *l, const float *w, const dfm_tensor *x, const float *mask, double *y)
{
    int64_t m = x->shape[0];
    for (int64_t i = 0; i < m; i++)
        for (int64_t o = 0; o < l->out; o++) {
            double s = l->b.data ? at(&l->b, o) : 0.0;
            for (int64_t k = 0; k < l->in; k++) s += (double)at(x, i * l->in + k) * w[o * l->in + k];
            if (l->rank) {
                double t = 0;
                for (int r = 0; r < l->rank; r++) {
                    double h = 0;
                    for (int64_t k = 0; k < l->in; k++)
                        h += (double)at(x, i * l->in + k) * (mask ? mask[i * l->in + k] : 1.0) *
                             at(&l->lora_a, r * l->in + k);
                    t += h * at(&l->lora_b, o * l->rank + r);
                }
                s += l->scale * t;
            }
            y[i * l->out + o] = s;
        }
}

static double max_abs(const double *v, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(v[i]));
    return m > 0 ? m : 1;
}

/* max |got - ref| / max|ref| */
static double rel_err(const float *got, const double *ref, int64_t n)
{
    double s = max_abs(ref, n), e = 0;
    for (int64_t i = 0; i < n; i++) e = fmax(e, fabs(got[i] - ref[i]) / s);
    return e;
}

/* L = sum(y * g) of one f32 forward (training mode, same seed) */
static double loss(const dfm_linear *l, const dfm_tensor *x, const dfm_tensor *g)
{
    dfm_tensor y = mk(x->shape[0], l->out);
    dfm_linear_acts a;
    if (dfm_linear_forward(NULL, l, x, &y, &a, 7, 3)) abort();
    double s = 0;
    for (int64_t i = 0; i < dfm_tensor_numel(&y); i++) s += (double)at(&y, i) * at(g, i);
    dfm_linear_acts_free(&a);
    dfm_tensor_free(&y);
    return s;
}

/* Central differences of loss() in every element of p (at most `limit` of them, evenly spread)
 * against the analytic gradient an; returns the worst error relative to max|an|. */
static double fd_check(const dfm_linear *l, dfm_tensor *x, const dfm_tensor *g, dfm_tensor *p, const dfm_tensor *an)
{
    int64_t n = dfm_tensor_numel(p), step = n > 48 ? n / 48 : 1;
    double scale = 0, worst = 0;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(at(an, i)));
    if (scale == 0) scale = 1;
    for (int64_t i = 0; i < n; i += step) {
        float *v = (float *)p->data + i, keep = *v, h = 1e-2f;
        *v = keep + h;
        double lp = loss(l, x, g);
        *v = keep - h;
        double lm = loss(l, x, g);
        *v = keep;
        double fd = (lp - lm) / (2.0 * (double)h);
        worst = fmax(worst, fabs(fd - at(an, i)) / scale);
    }
    return worst;
}

static void run_case(int64_t m, int64_t in, int64_t out, int bias, int rank, float dropout, int packed,
                     dfm_dtype wdt)
{
    char what[160];
    snprintf(what, sizeof what, "m %lld in %lld out %lld bias %d rank %d dropout %g packed %d w %s", (long long)m,
             (long long)in, (long long)out, bias, rank, dropout, packed, dfm_dtype_name(wdt));
    dfm_tensor w32 = mk(out, in), b = mk1(out), x = mk(m, in), g = mk(m, out), w;
    /* the weight as stored (BF16: rounded), and its values as f32 for the references */
    int64_t ws[2] = {out, in};
    CHECK_EQ(dfm_tensor_alloc(&w, wdt, DFM_CPU, 2, ws), 0);
    CHECK_EQ(dfm_tensor_convert(&w, &w32), 0);
    CHECK_EQ(dfm_tensor_convert(&w32, &w), 0);
    dfm_linear l;
    CHECK_EQ(dfm_linear_init(&l, &w, bias ? &b : NULL), 0);
    if (packed) CHECK_EQ(dfm_linear_pack(&l, DFM_F32), 0);
    if (rank) {
        CHECK_EQ(dfm_linear_lora_add(&l, rank, 1.5f * rank, dropout), 0);
        for (int64_t i = 0; i < dfm_tensor_numel(&l.lora_a); i++) ((float *)l.lora_a.data)[i] = rnd();
        for (int64_t i = 0; i < dfm_tensor_numel(&l.lora_b); i++) ((float *)l.lora_b.data)[i] = rnd();
    }
    /* the dropout mask the op draws: dropout of ones (scaled) */
    float *mask = NULL;
    if (rank && dropout > 0) {
        dfm_tensor ones = mk(m, in);
        for (int64_t i = 0; i < m * in; i++) ((float *)ones.data)[i] = 1.0f;
        CHECK_EQ(dfm_op_dropout(&ones, dropout, 7, 3, &ones), 0);
        mask = malloc((size_t)(m * in) * sizeof(float));
        int kept = 0;
        for (int64_t i = 0; i < m * in; i++) mask[i] = at(&ones, i), kept += mask[i] != 0;
        CHECK(kept > 0 && kept < m * in); /* some dropped, some kept */
        dfm_tensor_free(&ones);
    }
    double *yr = malloc((size_t)(m * out) * sizeof(double));
    dfm_tensor y = mk(m, out);
    dfm_linear_acts a;
    CHECK_EQ(dfm_linear_forward(NULL, &l, &x, &y, &a, 7, 3), 0);
    ref_forward(&l, w32.data, &x, mask, yr);
    double e = rel_err(y.data, yr, m * out);
    if (!(e < 1e-5)) fprintf(stderr, "  %s: forward error %.3g\n", what, e);
    CHECK(e < 1e-5);
    /* inference: no dropout */
    if (mask) {
        dfm_tensor yi = mk(m, out);
        CHECK_EQ(dfm_linear_forward(NULL, &l, &x, &yi, NULL, 0, 0), 0);
        ref_forward(&l, w32.data, &x, NULL, yr);
        CHECK(rel_err(yi.data, yr, m * out) < 1e-5);
        dfm_tensor_free(&yi);
    }
    /* backward */
    dfm_linear_grads gr = {0};
    int64_t s1[1] = {out};
    CHECK_EQ(dfm_tensor_zeros(&gr.w, DFM_F32, DFM_CPU, 2, ws), 0);
    if (bias) CHECK_EQ(dfm_tensor_zeros(&gr.b, DFM_F32, DFM_CPU, 1, s1), 0);
    if (rank) {
        CHECK_EQ(dfm_tensor_zeros(&gr.lora_a, DFM_F32, DFM_CPU, 2, l.lora_a.shape), 0);
        CHECK_EQ(dfm_tensor_zeros(&gr.lora_b, DFM_F32, DFM_CPU, 2, l.lora_b.shape), 0);
    }
    dfm_tensor dx = mk(m, in);
    CHECK_EQ(dfm_linear_backward(NULL, &l, &a, &g, &dx, 0, &gr), 0);
    /* analytic references in double */
    double *rdx = calloc((size_t)(m * in), sizeof(double)), *rdw = calloc((size_t)(out * in), sizeof(double));
    double *rdb = calloc((size_t)out, sizeof(double));
    for (int64_t i = 0; i < m; i++)
        for (int64_t o = 0; o < out; o++) {
            double gy = at(&g, i * out + o);
            rdb[o] += gy;
            for (int64_t k = 0; k < in; k++) {
                rdx[i * in + k] += gy * ((float *)w32.data)[o * in + k];
                rdw[o * in + k] += gy * at(&x, i * in + k);
            }
        }
    if (rank) {
        double *rda = calloc((size_t)(rank * in), sizeof(double)), *rdbb = calloc((size_t)(out * rank), sizeof(double));
        for (int64_t i = 0; i < m; i++)
            for (int r = 0; r < rank; r++) {
                double h = 0, gh = 0;
                for (int64_t k = 0; k < in; k++) h += (double)at(&x, i * in + k) * (mask ? mask[i * in + k] : 1) * at(&l.lora_a, r * in + k);
                for (int64_t o = 0; o < out; o++) gh += (double)at(&g, i * out + o) * at(&l.lora_b, o * rank + r);
                gh *= l.scale;
                for (int64_t o = 0; o < out; o++) rdbb[o * rank + r] += (double)at(&g, i * out + o) * l.scale * h;
                for (int64_t k = 0; k < in; k++) {
                    double xm = (double)at(&x, i * in + k) * (mask ? mask[i * in + k] : 1);
                    rda[r * in + k] += gh * xm;
                    rdx[i * in + k] += gh * at(&l.lora_a, r * in + k) * (mask ? mask[i * in + k] : 1);
                }
            }
        double ea = rel_err(gr.lora_a.data, rda, rank * in), eb = rel_err(gr.lora_b.data, rdbb, out * rank);
        if (!(ea < 1e-5 && eb < 1e-5)) fprintf(stderr, "  %s: dA error %.3g, dB error %.3g\n", what, ea, eb);
        CHECK(ea < 1e-5);
        CHECK(eb < 1e-5);
        double fa = fd_check(&l, &x, &g, &l.lora_a, &gr.lora_a), fb = fd_check(&l, &x, &g, &l.lora_b, &gr.lora_b);
        if (!(fa < 2e-3 && fb < 2e-3)) fprintf(stderr, "  %s: finite differences dA %.3g dB %.3g\n", what, fa, fb);
        CHECK(fa < 2e-3);
        CHECK(fb < 2e-3);
        free(rda);
        free(rdbb);
    }
    double ex = rel_err(dx.data, rdx, m * in), ew = rel_err(gr.w.data, rdw, out * in);
    double eb = bias ? rel_err(gr.b.data, rdb, out) : 0;
    if (!(ex < 1e-5 && ew < 1e-5 && eb < 1e-5))
        fprintf(stderr, "  %s: dx %.3g dW %.3g db %.3g\n", what, ex, ew, eb);
    CHECK(ex < 1e-5);
    CHECK(ew < 1e-5);
    CHECK(eb < 1e-5);
    if (wdt == DFM_F32 && !packed) { /* finite differences in x and W (the backward multiplies by W as stored) */
        double fx = fd_check(&l, &x, &g, &x, &dx);
        double fw = fd_check(&l, &x, &g, &l.w, &gr.w);
        if (!(fx < 2e-3 && fw < 2e-3)) fprintf(stderr, "  %s: finite differences dx %.3g dW %.3g\n", what, fx, fw);
        CHECK(fx < 2e-3);
        CHECK(fw < 2e-3);
    }
    /* accumulation: a second backward adds the same again */
    if (rank) {
        dfm_tensor b1;
        CHECK_EQ(dfm_tensor_copy(&b1, &gr.lora_b, DFM_CPU), 0);
        CHECK_EQ(dfm_linear_backward(NULL, &l, &a, &g, &dx, 1, &gr), 0);
        double worst = 0;
        for (int64_t i = 0; i < dfm_tensor_numel(&b1); i++)
            worst = fmax(worst, fabs(at(&gr.lora_b, i) - 2.0 * at(&b1, i)) / (fabs(at(&b1, i)) + 1e-3));
        CHECK(worst < 1e-5);
        dfm_tensor_free(&b1);
    }
    free(rdx), free(rdw), free(rdb), free(yr), free(mask);
    dfm_tensor_free(&gr.w), dfm_tensor_free(&gr.b), dfm_tensor_free(&gr.lora_a), dfm_tensor_free(&gr.lora_b);
    dfm_linear_acts_free(&a);
    dfm_linear_free(&l);
    dfm_tensor_free(&dx), dfm_tensor_free(&y), dfm_tensor_free(&w32), dfm_tensor_free(&b), dfm_tensor_free(&x);
    dfm_tensor_free(&g), dfm_tensor_free(&w);
}

TEST(nn_linear_forward_backward)
{
    run_case(1, 1, 1, 1, 0, 0, 0, DFM_F32);
    run_case(5, 7, 3, 1, 0, 0, 0, DFM_F32);
    run_case(9, 33, 17, 0, 0, 0, 1, DFM_F32);
    run_case(6, 20, 12, 1, 0, 0, 1, DFM_BF16);
    run_case(7, 16, 24, 1, 4, 0, 0, DFM_F32);
    run_case(7, 16, 24, 1, 4, 0, 1, DFM_BF16);
    run_case(11, 19, 13, 0, 3, 0.3f, 0, DFM_F32);
    run_case(4, 40, 9, 1, 1, 0.5f, 1, DFM_BF16);
}

TEST(nn_linear_dropout_seed_and_init)
{
    dfm_tensor w = mk(6, 10), x = mk(5, 10);
    dfm_linear l;
    CHECK_EQ(dfm_linear_init(&l, &w, NULL), 0);
    CHECK_EQ(dfm_linear_lora_add(&l, 2, 4.0f, 0.4f), 0);
    CHECK_EQ(dfm_linear_lora_add(&l, 2, 4.0f, 0.4f), DFM_E_ARG); /* one adapter per layer */
    CHECK_EQ(dfm_linear_lora_init(&l, 1, 2), 0);
    float bound = 1.0f / sqrtf(10.0f), first = at(&l.lora_a, 0);
    int varied = 0;
    for (int64_t i = 0; i < dfm_tensor_numel(&l.lora_a); i++) {
        CHECK(fabsf(at(&l.lora_a, i)) <= bound);
        varied += at(&l.lora_a, i) != first;
    }
    CHECK(varied > 0);
    for (int64_t i = 0; i < dfm_tensor_numel(&l.lora_b); i++) CHECK(at(&l.lora_b, i) == 0.0f);
    dfm_tensor a0;
    CHECK_EQ(dfm_tensor_copy(&a0, &l.lora_a, DFM_CPU), 0);
    CHECK_EQ(dfm_linear_lora_init(&l, 1, 2), 0);
    CHECK(!memcmp(a0.data, l.lora_a.data, dfm_tensor_nbytes(&a0))); /* reproducible */
    for (int64_t i = 0; i < dfm_tensor_numel(&l.lora_b); i++) ((float *)l.lora_b.data)[i] = rnd();
    dfm_tensor y1 = mk(5, 6), y2 = mk(5, 6), y3 = mk(5, 6);
    dfm_linear_acts a1, a2, a3;
    CHECK_EQ(dfm_linear_forward(NULL, &l, &x, &y1, &a1, 11, 0), 0);
    CHECK_EQ(dfm_linear_forward(NULL, &l, &x, &y2, &a2, 11, 0), 0);
    CHECK_EQ(dfm_linear_forward(NULL, &l, &x, &y3, &a3, 12, 0), 0);
    CHECK(!memcmp(y1.data, y2.data, dfm_tensor_nbytes(&y1)));
    CHECK(memcmp(y1.data, y3.data, dfm_tensor_nbytes(&y1)) != 0);
    CHECK_EQ(dfm_linear_lora_add(&(dfm_linear){.in = 1, .out = 1}, 0, 1.0f, 0), DFM_E_ARG);
    CHECK_EQ(dfm_linear_lora_add(&(dfm_linear){.in = 1, .out = 1}, 1, 1.0f, 1.0f), DFM_E_ARG);
    dfm_linear_acts_free(&a1), dfm_linear_acts_free(&a2), dfm_linear_acts_free(&a3);
    dfm_tensor_free(&y1), dfm_tensor_free(&y2), dfm_tensor_free(&y3), dfm_tensor_free(&a0);
    dfm_linear_free(&l);
    dfm_tensor_free(&w), dfm_tensor_free(&x);
}
