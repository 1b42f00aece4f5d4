/* attention.c — the DiT attention layer (attention.h) as a sequence of layer and op calls.
 *
 * Forward:  qr = x Wq^T + bq, kr = c Wk^T + bk, v = c Wv^T + bv      (c = x, or the context)
 *           q = norm_q(qr), k = norm_k(kr)                           (RMS over all heads)
 *           q, k = rope(q), rope(k)                                   (self-attention)
 *           att = sdpa(q, k, v) over [B, S, heads, head_dim] views;  y = att Wo^T + bo
 *           (sdpa in cc's dtype, as torch's SDPA under autocast: bf16 operands, f32 softmax)
 * Backward: the same steps in reverse; dx (and dctx) sum the three projections' input gradients.
 * ref: diffusers transformer_wan.py WanAttnProcessor.__call__
 */
#include "nn/attention.h"
#include "base/error.h"
#include "tensor/ops.h"

#include <math.h>
#include <string.h>

static int alloc2(dfm_tensor *t, dfm_device dev, int64_t r, int64_t c)
{
    int64_t s[2] = {r, c};
    return dfm_tensor_alloc(t, DFM_F32, dev, 2, s);
}

/* [B * S, heads * hd] rows as [B, S, heads, hd] */
static dfm_tensor heads4(const dfm_tensor *t, int64_t b, int heads)
{
    int64_t s[4] = {b, t->shape[0] / b, heads, t->shape[1] / heads};
    return dfm_tensor_view(t->data, DFM_F32, t->device, 4, s);
}

static float attn_scale(const dfm_attention *a) { return 1.0f / sqrtf((float)(a->dim / a->heads)); }

void dfm_attention_acts_free(dfm_attention_acts *s)
{
    if (!s) return;
    dfm_linear_acts_free(&s->q), dfm_linear_acts_free(&s->k), dfm_linear_acts_free(&s->v), dfm_linear_acts_free(&s->o);
    dfm_rms_norm_acts_free(&s->nq), dfm_rms_norm_acts_free(&s->nk);
    dfm_tensor *ts[] = {&s->qr, &s->kr, &s->qq, &s->kk, &s->vv, &s->att, &s->lse};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) dfm_tensor_free(ts[i]);
    memset(s, 0, sizeof *s);
}

void dfm_attention_free(dfm_attention *a)
{
    if (!a) return;
    dfm_linear_free(&a->q), dfm_linear_free(&a->k), dfm_linear_free(&a->v), dfm_linear_free(&a->o);
    memset(a, 0, sizeof *a);
}

int dfm_attention_forward(const dfm_compute *cc, const dfm_attention *a, int64_t batch, const dfm_tensor *x,
                          const dfm_tensor *ctx, const dfm_tensor *cos, const dfm_tensor *sin, dfm_tensor *y,
                          dfm_attention_acts *acts, uint64_t seed, uint64_t stream)
{
    if (!x || !y || batch < 1 || x->ndim != 2 || x->shape[0] % batch)
        return dfm_fail(DFM_E_ARG, "attention: x must be [B * S, D] rows for %lld batch items", (long long)batch);
    const dfm_tensor *c = ctx ? ctx : x;
    if (c->ndim != 2 || c->shape[0] % batch)
        return dfm_fail(DFM_E_ARG, "attention: the context must be [B * S, D] rows for %lld batch items", (long long)batch);
    dfm_attention_acts tmp, *s = acts ? acts : &tmp;
    memset(s, 0, sizeof *s);
    s->batch = batch, s->sq = x->shape[0] / batch, s->sk = c->shape[0] / batch;
    int64_t m = x->shape[0], mk = c->shape[0], hs[3] = {batch, a->heads, s->sq};
    dfm_device dev = x->device;
    int has_norm = a->norm_q.w.data != NULL, rc;
    uint64_t st = stream * 8;
    dfm_linear_acts *lq = acts ? &s->q : NULL, *lk = acts ? &s->k : NULL, *lv = acts ? &s->v : NULL;
    if ((rc = alloc2(&s->qr, dev, m, a->dim)) || (rc = alloc2(&s->kr, dev, mk, a->dim)) ||
        (rc = alloc2(&s->vv, dev, mk, a->dim)) || (rc = alloc2(&s->att, dev, m, a->dim)))
        goto out;
    if (has_norm && ((rc = alloc2(&s->qq, dev, m, a->dim)) || (rc = alloc2(&s->kk, dev, mk, a->dim)))) goto out;
    if (acts && (rc = dfm_tensor_alloc(&s->lse, DFM_F32, dev, 3, hs))) goto out;
    if ((rc = dfm_linear_forward(cc, &a->q, x, &s->qr, lq, seed, st + 0)) ||
        (rc = dfm_linear_forward(cc, &a->k, c, &s->kr, lk, seed, st + 1)) ||
        (rc = dfm_linear_forward(cc, &a->v, c, &s->vv, lv, seed, st + 2)))
        goto out;
    dfm_tensor *q = &s->qr, *k = &s->kr;
    if (has_norm) {
        if ((rc = dfm_rms_norm_forward(&a->norm_q, &s->qr, &s->qq, acts ? &s->nq : NULL)) ||
            (rc = dfm_rms_norm_forward(&a->norm_k, &s->kr, &s->kk, acts ? &s->nk : NULL)))
            goto out;
        q = &s->qq, k = &s->kk;
    }
    dfm_tensor q4 = heads4(q, batch, a->heads), k4 = heads4(k, batch, a->heads), v4 = heads4(&s->vv, batch, a->heads);
    dfm_tensor o4 = heads4(&s->att, batch, a->heads);
    if (cos && ((rc = dfm_op_rope(&q4, cos, sin, &q4)) || (rc = dfm_op_rope(&k4, cos, sin, &k4)))) goto out;
    if ((rc = dfm_op_sdpa(cc, &q4, &k4, &v4, NULL, attn_scale(a), 1, &o4, acts ? &s->lse : NULL))) goto out;
    rc = dfm_linear_forward(cc, &a->o, &s->att, y, acts ? &s->o : NULL, seed, st + 3);
out:
    if (rc || !acts) dfm_attention_acts_free(s);
    if (!rc && acts && !has_norm) { /* q, k are the raw projections, roped in place */
        s->qq = s->qr, s->kk = s->kr;
        s->qr = (dfm_tensor){0}, s->kr = (dfm_tensor){0};
    }
    return rc;
}

int dfm_attention_backward(const dfm_compute *cc, const dfm_attention *a, const dfm_attention_acts *s,
                           const dfm_tensor *cos, const dfm_tensor *sin, const dfm_tensor *dy, dfm_tensor *dx,
                           dfm_tensor *dctx, dfm_attention_grads *g)
{
    if (!s || !s->att.data || !s->lse.data) return dfm_fail(DFM_E_ARG, "attention backward: no saved activations");
    int64_t b = s->batch, m = b * s->sq, mk = b * s->sk;
    dfm_device dev = dy->device;
    int has_norm = a->norm_q.w.data != NULL, self = !dctx && s->sk == s->sq && s->k.x.data == s->q.x.data, rc;
    dfm_tensor datt = {0}, dq = {0}, dk = {0}, dv = {0};
    if ((rc = alloc2(&datt, dev, m, a->dim)) || (rc = alloc2(&dq, dev, m, a->dim)) ||
        (rc = alloc2(&dk, dev, mk, a->dim)) || (rc = alloc2(&dv, dev, mk, a->dim)))
        goto out;
    if ((rc = dfm_linear_backward(cc, &a->o, &s->o, dy, &datt, 0, g ? &g->o : NULL))) goto out;
    {
        dfm_tensor q4 = heads4(&s->qq, b, a->heads), k4 = heads4(&s->kk, b, a->heads), v4 = heads4(&s->vv, b, a->heads);
        dfm_tensor o4 = heads4(&s->att, b, a->heads), do4 = heads4(&datt, b, a->heads);
        dfm_tensor dq4 = heads4(&dq, b, a->heads), dk4 = heads4(&dk, b, a->heads), dv4 = heads4(&dv, b, a->heads);
        if ((rc = dfm_op_sdpa_bwd(cc, &q4, &k4, &v4, NULL, attn_scale(a), 1, &o4, &s->lse, &do4, &dq4, &dk4, &dv4)))
            goto out;
        if (cos && ((rc = dfm_op_rope_bwd(&dq4, cos, sin, &dq4)) || (rc = dfm_op_rope_bwd(&dk4, cos, sin, &dk4))))
            goto out;
    }
    if (has_norm && ((rc = dfm_rms_norm_backward(&a->norm_q, &s->nq, &dq, &dq, g ? &g->norm_q : NULL)) ||
                     (rc = dfm_rms_norm_backward(&a->norm_k, &s->nk, &dk, &dk, g ? &g->norm_k : NULL))))
        goto out;
    /* the projections' input gradients: q into dx; k and v into dx (self) or dctx (cross) */
    dfm_tensor *dkv = self ? dx : dctx;
    int kv_acc = self;
    if ((rc = dfm_linear_backward(cc, &a->q, &s->q, &dq, dx, 0, g ? &g->q : NULL)) ||
        (rc = dfm_linear_backward(cc, &a->k, &s->k, &dk, dkv, kv_acc, g ? &g->k : NULL)) ||
        (rc = dfm_linear_backward(cc, &a->v, &s->v, &dv, dkv, 1, g ? &g->v : NULL)))
        goto out;
out:
    dfm_tensor_free(&datt);
    dfm_tensor_free(&dq);
    dfm_tensor_free(&dk);
    dfm_tensor_free(&dv);
    return rc;
}
