/* linear.c — the linear layer with LoRA (linear.h), as a sequence of table ops.
 *
 * Forward:  y = x W^T (+ b)                      packed GEMM with the bias in its store, or matmul with bias
 *           h = dropout(x) A^T                   [m, rank]
 *           y += (scale h) B^T                   matmul accumulating into y
 * Backward: dx = dy W (+ dropout((scale dy B) A))
 *           dW += dy^T x,  db += colsum(dy) (chunked, thread-count independent: kernels/cpu/reduce.h)
 *           dA += (scale dy B)^T dropout(x),  dB += dy^T (scale h)
 * ref: torch.nn.Linear; peft tuners/lora/layer.py Linear.forward (result + lora_B(lora_A(dropout(x))) * scaling)
 */
#include "nn/linear.h"
#include "base/error.h"
#include "base/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int alloc2(dfm_tensor *t, dfm_device dev, int64_t r, int64_t c)
{
    int64_t s[2] = {r, c};
    return dfm_tensor_alloc(t, DFM_F32, dev, 2, s);
}

int dfm_linear_init(dfm_linear *l, const dfm_tensor *w, const dfm_tensor *b)
{
    memset(l, 0, sizeof *l);
    if (!w || w->ndim != 2) return dfm_fail(DFM_E_ARG, "linear: the weight must be [out, in]");
    if (b && b->data && (b->ndim != 1 || b->shape[0] != w->shape[0] || b->device != w->device))
        return dfm_fail(DFM_E_ARG, "linear: the bias must be [%lld] on the weight's device", (long long)w->shape[0]);
    l->out = w->shape[0], l->in = w->shape[1];
    l->w = *w, l->w.owned = 0;
    if (b && b->data) l->b = *b, l->b.owned = 0;
    return 0;
}

int dfm_linear_pack(dfm_linear *l, dfm_dtype dt)
{
    if (l->packed) return 0;
    if (l->w.device != DFM_CPU) return 0; /* CUDA keeps W as is: cuBLAS reads it directly */
    const dfm_tensor *wp = &l->w;
    int rc = dfm_packed_create(&l->packed, &wp, 1, dt, DFM_CPU);
    /* the packed GEMM adds an F32 bias as it stores y: a BF16/F16 one is widened once here (exact) */
    if (!rc && l->b.data && l->b.dtype != DFM_F32) {
        if (!(rc = dfm_tensor_alloc(&l->bias32, DFM_F32, DFM_CPU, 1, &l->out))) rc = dfm_tensor_convert(&l->bias32, &l->b);
        if (rc) {
            dfm_tensor_free(&l->bias32);
            dfm_packed_free(l->packed);
            l->packed = NULL;
        }
    }
    return rc;
}

void dfm_linear_drop_weights(dfm_linear *l)
{
    if (!l->packed) return;
    if (l->owns_w) {
        dfm_tensor t = l->w; /* free the storage, keep the shape and dtype for messages */
        t.owned = 1;
        dfm_tensor_free(&t);
        l->owns_w = 0;
    }
    l->w.data = NULL;
    l->w.owned = 0;
}

int dfm_linear_lora_add(dfm_linear *l, int rank, float alpha, float dropout)
{
    if (rank < 1 || rank > (1 << 16)) return dfm_fail(DFM_E_ARG, "LoRA rank %d out of range (1 to 65536)", rank);
    if (!(dropout >= 0.0f && dropout < 1.0f)) return dfm_fail(DFM_E_ARG, "LoRA dropout %g is not in [0, 1)", dropout);
    if (!(alpha > 0.0f) || !isfinite(alpha)) return dfm_fail(DFM_E_ARG, "LoRA alpha %g must be positive", alpha);
    if (l->rank) return dfm_fail(DFM_E_ARG, "linear: the layer already has a LoRA adapter");
    int64_t sa[2] = {rank, l->in}, sb[2] = {l->out, rank};
    int rc = dfm_tensor_zeros(&l->lora_a, DFM_F32, l->w.device, 2, sa);
    if (!rc) rc = dfm_tensor_zeros(&l->lora_b, DFM_F32, l->w.device, 2, sb);
    if (rc) {
        dfm_tensor_free(&l->lora_a);
        dfm_tensor_free(&l->lora_b);
        return rc;
    }
    l->rank = rank, l->scale = alpha / (float)rank, l->dropout = dropout;
    return 0;
}

int dfm_linear_lora_init(dfm_linear *l, uint64_t seed, uint64_t stream)
{
    if (!l->rank) return dfm_fail(DFM_E_ARG, "linear: no LoRA adapter to initialize");
    if (l->lora_a.device != DFM_CPU) return dfm_fail(DFM_E_ARG, "LoRA init: CPU tensors only (initialize, then copy)");
    /* kaiming_uniform_(a = sqrt(5)) on [rank, in]: gain sqrt(2 / (1 + 5)), bound gain * sqrt(3 / in)
     * = 1 / sqrt(in). ref: peft LoraLayer.reset_lora_parameters, torch.nn.init.kaiming_uniform_ */
    float bound = 1.0f / sqrtf((float)l->in), *a = l->lora_a.data;
    int64_t n = dfm_tensor_numel(&l->lora_a);
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    for (int64_t i = 0; i < n; i += 4) {
        uint32_t ctr[4] = {(uint32_t)(i / 4), (uint32_t)((uint64_t)(i / 4) >> 32), (uint32_t)stream,
                           (uint32_t)(stream >> 32)},
                 r[4];
        dfm_philox4x32(ctr, key, r);
        for (int j = 0; j < 4 && i + j < n; j++) {
            float u = ((float)(r[j] >> 8) + 0.5f) * (1.0f / 16777216.0f); /* (0, 1) */
            a[i + j] = (2.0f * u - 1.0f) * bound;
        }
    }
    memset(l->lora_b.data, 0, dfm_tensor_nbytes(&l->lora_b));
    return 0;
}

void dfm_linear_free(dfm_linear *l)
{
    if (!l) return;
    if (l->owns_w) l->w.owned = 1;
    if (l->owns_b) l->b.owned = 1;
    dfm_tensor_free(&l->w);
    dfm_tensor_free(&l->b);
    dfm_packed_free(l->packed);
    dfm_tensor_free(&l->bias32);
    dfm_tensor_free(&l->lora_a);
    dfm_tensor_free(&l->lora_b);
    memset(l, 0, sizeof *l);
}

void dfm_linear_acts_free(dfm_linear_acts *a)
{
    if (!a) return;
    dfm_tensor_free(&a->h);
    memset(a, 0, sizeof *a);
}

/* The adapter's products (rank r: x A^T, h B^T, dy B, gh A, gh^T x, dy^T h) run in exact f32
 * whatever the layer's context: their operands are f32 (A, B, x, dy), and rounding and packing
 * one of them for a bf16 product costs more than the product itself (on the CPU ~5% of a LoRA
 * training step at the 1.3B width went to it); f32 is also the more accurate. */
#define LORA_CC NULL

static const dfm_tensor *bias_of(const dfm_linear *l) { return l->b.data ? &l->b : NULL; }

int dfm_linear_forward(const dfm_compute *cc, const dfm_linear *l, const dfm_tensor *x, dfm_tensor *y,
                       dfm_linear_acts *acts, uint64_t seed, uint64_t stream)
{
    int rc;
    if (!x || !y) return dfm_fail(DFM_E_ARG, "linear: NULL argument");
    if (l->packed && x->device == DFM_CPU) {
        const dfm_tensor *b = l->bias32.data ? &l->bias32 : bias_of(l);
        rc = dfm_op_linear_bias(cc, x, l->packed, &y, &b, 0);
    } else if (!l->w.data) {
        return dfm_fail(DFM_E_ARG, "linear: the weights were packed for the CPU and dropped");
    } else {
        rc = dfm_op_matmul(cc, x, 0, &l->w, 1, bias_of(l), 0.0f, y);
    }
    if (rc) return rc;
    if (acts) {
        memset(acts, 0, sizeof *acts);
        acts->x = *x, acts->x.owned = 0;
        acts->seed = seed, acts->stream = stream;
    }
    if (!l->rank) return 0;
    /* h = dropout(x) A^T; y += (scale h) B^T */
    int64_t m = x->shape[0];
    dfm_tensor h = {0}, hs = {0}, xd = {0};
    const dfm_tensor *xin = x;
    int drop = acts && l->dropout > 0.0f;
    if (drop) {
        if ((rc = dfm_tensor_alloc(&xd, DFM_F32, x->device, 2, x->shape)) ||
            (rc = dfm_op_dropout(x, l->dropout, seed, stream, &xd)))
            goto out;
        xin = &xd;
    }
    if ((rc = alloc2(&h, x->device, m, l->rank)) || (rc = alloc2(&hs, x->device, m, l->rank))) goto out;
    if ((rc = dfm_op_matmul(LORA_CC, xin, 0, &l->lora_a, 1, NULL, 0.0f, &h))) goto out;
    if ((rc = dfm_op_affine(&h, l->scale, 0.0f, &hs))) goto out;
    if ((rc = dfm_op_matmul(LORA_CC, &hs, 0, &l->lora_b, 1, NULL, 1.0f, y))) goto out;
    if (acts) {
        acts->h = h, h = (dfm_tensor){0};
        acts->dropped = drop;
    }
out:
    dfm_tensor_free(&h);
    dfm_tensor_free(&hs);
    dfm_tensor_free(&xd);
    return rc;
}

int dfm_linear_backward(const dfm_compute *cc, const dfm_linear *l, const dfm_linear_acts *a, const dfm_tensor *dy,
                        dfm_tensor *dx, int dx_accumulate, dfm_linear_grads *g)
{
    if (!a || !dy || !a->x.data) return dfm_fail(DFM_E_ARG, "linear backward: no saved activations");
    const dfm_tensor *x = &a->x;
    int64_t m = x->shape[0];
    dfm_device dev = x->device;
    int rc = 0;
    dfm_tensor gh = {0}, t = {0}, xd = {0}, hs = {0};
    if ((dx || (g && g->w.data)) && !l->w.data)
        return dfm_fail(DFM_E_ARG, "linear backward: the weights were dropped after packing (inference only)");
    if (dx && (rc = dfm_op_matmul(cc, dy, 0, &l->w, 0, NULL, dx_accumulate ? 1.0f : 0.0f, dx))) goto out;
    if (g && g->w.data && (rc = dfm_op_matmul(cc, dy, 1, x, 0, NULL, 1.0f, &g->w))) goto out;
    if (g && g->b.data && (rc = dfm_op_colsum(dy, &g->b))) goto out; /* db += column sums of dy */
    if (!l->rank) goto out;
    if (!a->h.data) {
        rc = dfm_fail(DFM_E_ARG, "linear backward: the forward saved no LoRA activations");
        goto out;
    }
    /* gh = scale dy B  [m, rank] */
    if ((rc = alloc2(&gh, dev, m, l->rank)) || (rc = dfm_op_matmul(LORA_CC, dy, 0, &l->lora_b, 0, NULL, 0.0f, &gh)) ||
        (rc = dfm_op_affine(&gh, l->scale, 0.0f, &gh)))
        goto out;
    if (dx && !a->dropped) { /* dx += gh A, accumulated by the GEMM (beta 1): no [m, in] buffer, no add pass */
        if ((rc = dfm_op_matmul(LORA_CC, &gh, 0, &l->lora_a, 0, NULL, 1.0f, dx))) goto out;
    } else if (dx) { /* dx += dropout(gh A) */
        if ((rc = alloc2(&t, dev, m, l->in)) || (rc = dfm_op_matmul(LORA_CC, &gh, 0, &l->lora_a, 0, NULL, 0.0f, &t)))
            goto out;
        if ((rc = dfm_op_dropout(&t, l->dropout, a->seed, a->stream, &t))) goto out;
        if ((rc = dfm_op_add(dx, &t, dx))) goto out;
    }
    if (g && g->lora_a.data) { /* dA += gh^T dropout(x) */
        const dfm_tensor *xin = x;
        if (a->dropped) {
            if ((rc = alloc2(&xd, dev, m, l->in)) || (rc = dfm_op_dropout(x, l->dropout, a->seed, a->stream, &xd)))
                goto out;
            xin = &xd;
        }
        if ((rc = dfm_op_matmul(LORA_CC, &gh, 1, xin, 0, NULL, 1.0f, &g->lora_a))) goto out;
    }
    if (g && g->lora_b.data) { /* dB += dy^T (scale h) */
        if ((rc = alloc2(&hs, dev, m, l->rank)) || (rc = dfm_op_affine(&a->h, l->scale, 0.0f, &hs)) ||
            (rc = dfm_op_matmul(LORA_CC, dy, 1, &hs, 0, NULL, 1.0f, &g->lora_b)))
            goto out;
    }
out:
    dfm_tensor_free(&gh);
    dfm_tensor_free(&t);
    dfm_tensor_free(&xd);
    dfm_tensor_free(&hs);
    return rc;
}
