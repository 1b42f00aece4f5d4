/* t5.c — T5's relative-bias self-attention and gated-GELU feed-forward layers (t5.h), as a
 * sequence of op calls:
 *   bias = rel_bias(rel, buckets)                                    [heads, n, n]
 *   q | k | v = x Wq^T | x Wk^T | x Wv^T                             one packed GEMM, or three
 *   ctx = sdpa(q, k, v, bias, scale 1) over [n, heads, d_kv] views;  y += ctx Wo^T
 *         (in cc's dtype: transformers' eager UMT5 attention multiplies bf16 q, k, softmax and v
 *         under a bf16 run; the bf16 parity test stays as close to torch's bf16 as with f32 here)
 *   g | l = x Wi0^T | x Wi1^T;  g = gelu_new(g) * l;                 y += g Wo^T
 * ref: transformers modeling_umt5.py UMT5Attention.forward, UMT5DenseGatedActDense.forward
 */
#include "nn/t5.h"
#include "base/error.h"

#include <string.h>

/* [n, heads * d_kv] rows as [n, heads, d_kv] */
static dfm_tensor heads_view(const dfm_tensor *t, int heads, int dkv)
{
    int64_t s[3] = {t->shape[0], heads, dkv};
    return dfm_tensor_view(t->data, DFM_F32, t->device, 3, s);
}

/* y += x W^T through the fused layout p, or through the linear l into t, then added. */
static int add_proj(const dfm_compute *cc, const dfm_packed *p, const dfm_linear *l, const dfm_tensor *x,
                    dfm_tensor *y, dfm_tensor *t)
{
    if (p) return dfm_op_linear(cc, x, p, &y, 1);
    int rc = dfm_linear_forward(cc, l, x, t, NULL, 0, 0);
    return rc ? rc : dfm_op_add(y, t, y);
}

int dfm_t5_attention_forward(const dfm_compute *cc, const dfm_t5_attention *a, const dfm_tensor *x,
                             const dfm_tensor *buckets, dfm_tensor *y, dfm_t5_attention_acts *s)
{
    if (!x || !y || !s || x->ndim != 2 || x->shape[1] != a->dim)
        return dfm_fail(DFM_E_ARG, "T5 attention: x must be [n, %lld] rows with activations", (long long)a->dim);
    dfm_tensor *qkv[3] = {&s->q, &s->k, &s->v};
    int rc = dfm_op_rel_bias(&a->rel, buckets, &s->bias);
    if (rc) return rc;
    if (a->qkv)
        rc = dfm_op_linear(cc, x, a->qkv, qkv, 0);
    else if (!(rc = dfm_linear_forward(cc, &a->q, x, &s->q, NULL, 0, 0)) &&
             !(rc = dfm_linear_forward(cc, &a->k, x, &s->k, NULL, 0, 0)))
        rc = dfm_linear_forward(cc, &a->v, x, &s->v, NULL, 0, 0);
    if (rc) return rc;
    dfm_tensor q = heads_view(&s->q, a->heads, a->d_kv), k = heads_view(&s->k, a->heads, a->d_kv);
    dfm_tensor v = heads_view(&s->v, a->heads, a->d_kv), o = heads_view(&s->ctx, a->heads, a->d_kv);
    if ((rc = dfm_op_sdpa(cc, &q, &k, &v, &s->bias, 1.0f, 1, &o, NULL))) return rc;
    return add_proj(cc, a->po, &a->o, &s->ctx, y, &s->t);
}

void dfm_t5_attention_free(dfm_t5_attention *a)
{
    if (!a) return;
    dfm_linear_free(&a->q), dfm_linear_free(&a->k), dfm_linear_free(&a->v), dfm_linear_free(&a->o);
    dfm_packed_free(a->qkv);
    dfm_packed_free(a->po);
    dfm_tensor_free(&a->rel);
    memset(a, 0, sizeof *a);
}

int dfm_t5_ffn_forward(const dfm_compute *cc, const dfm_t5_ffn *f, const dfm_tensor *x, dfm_tensor *y,
                       dfm_t5_ffn_acts *s)
{
    if (!x || !y || !s || x->ndim != 2 || x->shape[1] != f->dim)
        return dfm_fail(DFM_E_ARG, "T5 feed-forward: x must be [n, %lld] rows with activations", (long long)f->dim);
    dfm_tensor *gl[2] = {&s->g, &s->l};
    int rc;
    if (f->wi)
        rc = dfm_op_linear(cc, x, f->wi, gl, 0);
    else if (!(rc = dfm_linear_forward(cc, &f->wi0, x, &s->g, NULL, 0, 0)))
        rc = dfm_linear_forward(cc, &f->wi1, x, &s->l, NULL, 0, 0);
    if (rc || (rc = dfm_op_gelu_new(&s->g, &s->g)) || (rc = dfm_op_mul(&s->g, &s->l, &s->g))) return rc;
    return add_proj(cc, f->pwo, &f->wo, &s->g, y, &s->t);
}

void dfm_t5_ffn_free(dfm_t5_ffn *f)
{
    if (!f) return;
    dfm_linear_free(&f->wi0), dfm_linear_free(&f->wi1), dfm_linear_free(&f->wo);
    dfm_packed_free(f->wi);
    dfm_packed_free(f->pwo);
    memset(f, 0, sizeof *f);
}
