/* test_nn_conv.c — the causal 3-D conv layer and its feature cache (lib/nn/conv.h).
 *
 * 1. Every padding form (causal front, symmetric space, the stride-2 bottom/right pad) against a
 *    scalar conv in double over explicitly zero-padded input; bound 1e-5 (f32 sums of <= 81
 *    products of values in [-1, 1]).
 * 2. The feature cache: a clip run chunk by chunk (1, 1, 3 frames: each chunk shape the cache
 *    handles — a 1-frame chunk after a 1-frame chunk takes the slot's last frame) through
 *    dfm_causal_conv_forward_cached equals the whole clip through one conv, within 1e-5.
 * 3. A REP slot: dfm_conv_cache_next puts a zero frame before a 1-frame input with rep_zeros.
 */
#include "test.h"
#include "base/error.h"
#include "nn/conv.h"
#include "tensor/ops.h"

#include <stdint.h>
#include <stdlib.h>

static void fill(dfm_tensor *t, uint32_t seed)
{
    float *p = t->data;
    for (int64_t i = 0; i < dfm_tensor_numel(t); i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (float)((seed >> 8) * (1.0 / 16777216.0) * 2.0 - 1.0);
    }
}

static int make_conv(dfm_causal_conv *c, int cin, int cout, int kt, int kh, int kw, uint32_t seed)
{
    dfm_causal_conv_init(c, cin, cout, kt, kh, kw);
    int64_t ws[5] = {cout, cin, kt, kh, kw}, bs[1] = {cout};
    if (dfm_tensor_alloc(&c->w, DFM_F32, DFM_CPU, 5, ws) || dfm_tensor_alloc(&c->b, DFM_F32, DFM_CPU, 1, bs)) return -1;
    fill(&c->w, seed), fill(&c->b, seed + 1);
    return 0;
}

/* y[o, t, i, j] = b[o] + sum w[o, c, a, u, v] xp[c, t*st + a, i*sh + u, j*sw + v] over x zero-padded
 * by pad = {front, back, top, bottom, left, right}; returns max |y - ref|. */
static double vs_scalar(const dfm_causal_conv *c, const dfm_tensor *x, const int pad[6], const dfm_tensor *y)
{
    int64_t T = x->shape[1], H = x->shape[2], W = x->shape[3];
    const float *xp = x->data, *w = c->w.data, *b = c->b.data, *yp = y->data;
    int64_t To = y->shape[1], Ho = y->shape[2], Wo = y->shape[3];
    double worst = 0;
    for (int o = 0; o < c->cout; o++)
        for (int64_t t = 0; t < To; t++)
            for (int64_t i = 0; i < Ho; i++)
                for (int64_t j = 0; j < Wo; j++) {
                    double s = b[o];
                    for (int ci = 0; ci < c->cin; ci++)
                        for (int a = 0; a < c->kt; a++)
                            for (int u = 0; u < c->kh; u++)
                                for (int v = 0; v < c->kw; v++) {
                                    int64_t tt = t * c->stride[0] + a - pad[0], ii = i * c->stride[1] + u - pad[2];
                                    int64_t jj = j * c->stride[2] + v - pad[4];
                                    if (tt < 0 || tt >= T || ii < 0 || ii >= H || jj < 0 || jj >= W) continue;
                                    s += (double)w[(((int64_t)o * c->cin + ci) * c->kt + a) * c->kh * c->kw + u * c->kw + v] *
                                         xp[((ci * T + tt) * H + ii) * W + jj];
                                }
                    double d = fabs(s - yp[((o * To + t) * Ho + i) * Wo + j]);
                    if (d > worst) worst = d;
                }
    return worst;
}

TEST(nn_causal_conv_padding_forms)
{
    int64_t xs[4] = {3, 5, 6, 7};
    dfm_tensor x;
    CHECK_EQ(dfm_tensor_alloc(&x, DFM_F32, DFM_CPU, 4, xs), 0);
    fill(&x, 7);
    struct {
        int kt, kh, kw, front, ph, pw, br, st, sh;
        int64_t shape[4];
    } cs[] = {
        {3, 3, 3, 2, 1, 1, 0, 1, 1, {4, 5, 6, 7}}, /* a causal 3x3x3 (WanCausalConv3d(padding=1)) */
        {1, 3, 3, 0, 0, 0, 1, 1, 2, {4, 5, 3, 3}}, /* the downsample's ZeroPad2d((0,1,0,1)) + stride 2 */
        {3, 1, 1, 0, 0, 0, 0, 2, 1, {4, 2, 6, 7}}, /* the 3-D downsample's time conv, stride 2 */
        {1, 1, 1, 0, 0, 0, 0, 1, 1, {4, 5, 6, 7}}, /* a 1x1 shortcut */
    };
    for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++) {
        dfm_causal_conv c;
        CHECK_EQ(make_conv(&c, 3, 4, cs[k].kt, cs[k].kh, cs[k].kw, 100 + (uint32_t)k), 0);
        c.causal_front = cs[k].front, c.pad_h = cs[k].ph, c.pad_w = cs[k].pw, c.pad_br = cs[k].br;
        c.stride[0] = cs[k].st, c.stride[1] = c.stride[2] = cs[k].sh;
        int64_t s[4];
        dfm_causal_conv_out_shape(&c, &x, s);
        for (int d = 0; d < 4; d++) CHECK_EQ(s[d], cs[k].shape[d]);
        dfm_tensor y;
        int rc = dfm_causal_conv_forward(NULL, &c, &x, NULL, &y);
        CHECK_EQ(rc, 0);
        if (!rc) {
            for (int d = 0; d < 4; d++) CHECK_EQ(y.shape[d], cs[k].shape[d]);
            int pad[6] = {c.causal_front, 0, c.pad_h, c.pad_h, c.pad_w, c.pad_w};
            if (c.pad_br) pad[2] = 0, pad[3] = 1, pad[4] = 0, pad[5] = 1;
            double e = vs_scalar(&c, &x, pad, &y);
            fprintf(stderr, "  case %zu: max error %.2e\n", k, e);
            CHECK(e <= 1e-5);
            dfm_tensor_free(&y);
        }
        dfm_causal_conv_free(&c);
    }
    /* bad input: channels */
    dfm_causal_conv c;
    CHECK_EQ(make_conv(&c, 2, 4, 3, 3, 3, 9), 0);
    dfm_tensor y;
    CHECK_EQ(dfm_causal_conv_forward(NULL, &c, &x, NULL, &y), DFM_E_ARG);
    dfm_causal_conv_free(&c);
    dfm_tensor_free(&x);
}

TEST(nn_causal_conv_cache_chunks)
{
    int64_t xs[4] = {3, 5, 4, 5};
    dfm_tensor x, whole;
    CHECK_EQ(dfm_tensor_alloc(&x, DFM_F32, DFM_CPU, 4, xs), 0);
    fill(&x, 11);
    dfm_causal_conv c;
    CHECK_EQ(make_conv(&c, 3, 2, 3, 3, 3, 12), 0);
    c.causal_front = 2, c.pad_h = c.pad_w = 1;
    CHECK_EQ(dfm_causal_conv_forward(NULL, &c, &x, NULL, &whole), 0);
    dfm_conv_cache k = {0};
    int64_t chunks[3] = {1, 1, 3}, t0 = 0;
    double worst = 0;
    for (int i = 0; i < 3; i++) {
        dfm_tensor part, y, ref;
        int64_t ps[4] = {3, chunks[i], 4, 5}, rs[4] = {2, chunks[i], 4, 5};
        CHECK_EQ(dfm_tensor_alloc(&part, DFM_F32, DFM_CPU, 4, ps), 0);
        CHECK_EQ(dfm_tensor_alloc(&ref, DFM_F32, DFM_CPU, 4, rs), 0);
        CHECK_EQ(dfm_op_frames(&x, t0, chunks[i], &part), 0);
        CHECK_EQ(dfm_op_frames(&whole, t0, chunks[i], &ref), 0);
        dfm_conv_cache_rewind(&k);
        int rc = dfm_causal_conv_forward_cached(NULL, &c, &part, &k, &y);
        CHECK_EQ(rc, 0);
        CHECK_EQ(k.n, 1);
        CHECK_EQ(k.slots[0].state, DFM_CONV_SLOT_FRAMES);
        CHECK_EQ(k.slots[0].t.shape[1], 2 - (i == 0)); /* 1 frame after the first chunk, then 2 */
        if (!rc) {
            for (int64_t j = 0; j < dfm_tensor_numel(&y); j++) {
                double d = fabs((double)((float *)y.data)[j] - ((float *)ref.data)[j]);
                if (d > worst) worst = d;
            }
            dfm_tensor_free(&y);
        }
        dfm_tensor_free(&part), dfm_tensor_free(&ref);
        t0 += chunks[i];
    }
    fprintf(stderr, "  chunks 1+1+3 vs whole: max error %.2e\n", worst);
    CHECK(worst <= 1e-5);
    /* a REP slot with rep_zeros: a zero frame before a 1-frame input */
    dfm_conv_slot rep = {.state = DFM_CONV_SLOT_REP};
    dfm_tensor one, nc;
    int64_t os[4] = {3, 1, 4, 5};
    CHECK_EQ(dfm_tensor_alloc(&one, DFM_F32, DFM_CPU, 4, os), 0);
    fill(&one, 13);
    CHECK_EQ(dfm_conv_cache_next(&one, &rep, 1, &nc), 0);
    CHECK_EQ(nc.shape[1], 2);
    const float *p = nc.data, *q = one.data;
    int zero_then_frame = 1;
    for (int ch = 0; ch < 3; ch++)
        for (int i = 0; i < 20; i++)
            if (p[(ch * 2 + 0) * 20 + i] != 0.0f || p[(ch * 2 + 1) * 20 + i] != q[ch * 20 + i]) zero_then_frame = 0;
    CHECK(zero_then_frame);
    dfm_tensor_free(&nc);
    CHECK_EQ(dfm_conv_cache_next(&one, &rep, 0, &nc), 0); /* without rep_zeros: the frame alone */
    CHECK_EQ(nc.shape[1], 1);
    dfm_tensor_free(&nc), dfm_tensor_free(&one);
    dfm_conv_cache_free(&k);
    dfm_causal_conv_free(&c);
    dfm_tensor_free(&x), dfm_tensor_free(&whole);
}
