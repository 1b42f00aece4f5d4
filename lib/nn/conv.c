/* conv.c — the causal 3-D convolution layer and its feature cache (conv.h), over dfm_op_conv3d.
 * ref: diffusers autoencoder_kl_wan.py WanCausalConv3d.forward and the feat_cache handling of
 *      WanResidualBlock.forward
 */
#include "nn/conv.h"
#include "base/buf.h"
#include "base/error.h"
#include "tensor/ops.h"

#include <stdlib.h>
#include <string.h>

static int alloc4(dfm_tensor *t, dfm_device dev, int64_t c, int64_t T, int64_t h, int64_t w)
{
    int64_t s[4] = {c, T, h, w};
    return dfm_tensor_alloc(t, DFM_F32, dev, 4, s);
}

static int frames_copy(const dfm_tensor *x, int64_t t0, int64_t n, dfm_tensor *y)
{
    int rc = alloc4(y, x->device, x->shape[0], n, x->shape[2], x->shape[3]);
    if (rc) return rc;
    rc = dfm_op_frames(x, t0, n, y);
    if (rc) dfm_tensor_free(y);
    return rc;
}

void dfm_causal_conv_init(dfm_causal_conv *c, int cin, int cout, int kt, int kh, int kw)
{
    memset(c, 0, sizeof *c);
    c->cin = cin, c->cout = cout, c->kt = kt, c->kh = kh, c->kw = kw;
    c->stride[0] = c->stride[1] = c->stride[2] = 1;
}

void dfm_causal_conv_free(dfm_causal_conv *c)
{
    if (!c) return;
    dfm_tensor_free(&c->w);
    dfm_tensor_free(&c->b);
}

/* pad = {front, back, top, bottom, left, right} with `front` zero frames */
static void pads(const dfm_causal_conv *c, int front, int pad[6])
{
    pad[0] = front, pad[1] = 0;
    if (c->pad_br) pad[2] = 0, pad[3] = 1, pad[4] = 0, pad[5] = 1;
    else pad[2] = pad[3] = c->pad_h, pad[4] = pad[5] = c->pad_w;
}

static void out_shape(const dfm_causal_conv *c, const dfm_tensor *x, int front, int64_t out[4])
{
    int pad[6];
    pads(c, front, pad);
    out[0] = c->cout;
    out[1] = (x->shape[1] + pad[0] + pad[1] - c->kt) / c->stride[0] + 1;
    out[2] = (x->shape[2] + pad[2] + pad[3] - c->kh) / c->stride[1] + 1;
    out[3] = (x->shape[3] + pad[4] + pad[5] - c->kw) / c->stride[2] + 1;
}

void dfm_causal_conv_out_shape(const dfm_causal_conv *c, const dfm_tensor *x, int64_t out[4])
{
    out_shape(c, x, c->causal_front, out);
}

/* conv(x) with `front` zero frames in front; y allocated. */
static int conv_padded(const dfm_compute *cc, const dfm_causal_conv *c, const dfm_tensor *x, int front,
                       dfm_tensor *y)
{
    if (x->ndim != 4 || x->shape[0] != c->cin)
        return dfm_fail(DFM_E_ARG, "causal conv: the input must be [%d, T, H, W]", c->cin);
    int pad[6];
    int64_t s[4];
    pads(c, front, pad);
    out_shape(c, x, front, s);
    int rc = dfm_tensor_alloc(y, DFM_F32, x->device, 4, s);
    if (rc) return rc;
    rc = dfm_op_conv3d(cc, x, &c->w, c->b.data ? &c->b : NULL, y, c->stride, pad);
    if (rc) dfm_tensor_free(y);
    return rc;
}

int dfm_causal_conv_forward(const dfm_compute *cc, const dfm_causal_conv *c, const dfm_tensor *x,
                            const dfm_tensor *prev, dfm_tensor *y)
{
    if (!prev || c->causal_front == 0) return conv_padded(cc, c, x, c->causal_front, y);
    int64_t tp = prev->ndim == 4 ? prev->shape[1] : -1;
    if (tp < 0 || tp > c->causal_front)
        return dfm_fail(DFM_E_ARG, "causal conv: %lld cached frames for %d frames of padding", (long long)tp,
                        c->causal_front);
    dfm_tensor cat;
    int rc = alloc4(&cat, x->device, x->shape[0], tp + x->shape[1], x->shape[2], x->shape[3]);
    if (rc) return rc;
    rc = dfm_op_concat(prev, x, 1, &cat);
    if (!rc) rc = conv_padded(cc, c, &cat, c->causal_front - (int)tp, y);
    dfm_tensor_free(&cat);
    return rc;
}

/* ---- the feature cache ----------------------------------------------------------------------- */

void dfm_conv_cache_rewind(dfm_conv_cache *k) { k->idx = 0; }

int dfm_conv_cache_slot(dfm_conv_cache *k, dfm_conv_slot **s)
{
    if (k->idx == k->n) {
        if (k->n == k->cap) {
            int cap = k->cap ? k->cap * 2 : 32;
            dfm_conv_slot *p = dfm_realloc(k->slots, (size_t)cap * sizeof *p);
            if (!p) return DFM_E_NOMEM;
            k->slots = p, k->cap = cap;
        }
        memset(&k->slots[k->n++], 0, sizeof k->slots[0]);
    }
    *s = &k->slots[k->idx++];
    return 0;
}

void dfm_conv_cache_free(dfm_conv_cache *k)
{
    for (int i = 0; i < k->n; i++) dfm_tensor_free(&k->slots[i].t);
    free(k->slots);
    memset(k, 0, sizeof *k);
}

int dfm_conv_cache_next(const dfm_tensor *x, const dfm_conv_slot *s, int rep_zeros, dfm_tensor *out)
{
    int64_t T = x->shape[1], n = T < 2 ? T : 2;
    dfm_tensor tail;
    int rc = frames_copy(x, T - n, n, &tail);
    if (rc || n >= 2) {
        if (!rc) *out = tail;
        return rc;
    }
    dfm_tensor prev;
    if (s->state == DFM_CONV_SLOT_FRAMES) {
        rc = frames_copy(&s->t, s->t.shape[1] - 1, 1, &prev);
    } else if (s->state == DFM_CONV_SLOT_REP && rep_zeros) {
        int64_t sh[4] = {x->shape[0], 1, x->shape[2], x->shape[3]};
        rc = dfm_tensor_zeros(&prev, DFM_F32, x->device, 4, sh);
    } else {
        *out = tail;
        return 0;
    }
    if (!rc) {
        rc = alloc4(out, x->device, x->shape[0], 1 + n, x->shape[2], x->shape[3]);
        if (!rc && (rc = dfm_op_concat(&prev, &tail, 1, out))) dfm_tensor_free(out);
        dfm_tensor_free(&prev);
    }
    dfm_tensor_free(&tail);
    return rc;
}

int dfm_causal_conv_forward_cached(const dfm_compute *cc, const dfm_causal_conv *c, const dfm_tensor *x,
                                   dfm_conv_cache *k, dfm_tensor *y)
{
    dfm_conv_slot *s;
    int rc = dfm_conv_cache_slot(k, &s);
    if (rc) return rc;
    dfm_tensor nc;
    if ((rc = dfm_conv_cache_next(x, s, 0, &nc))) return rc;
    rc = dfm_causal_conv_forward(cc, c, x, s->state == DFM_CONV_SLOT_FRAMES ? &s->t : NULL, y);
    dfm_tensor_free(&s->t);
    s->t = nc;
    s->state = DFM_CONV_SLOT_FRAMES;
    return rc;
}
