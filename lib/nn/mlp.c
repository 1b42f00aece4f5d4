/* mlp.c — the GELU-tanh feed-forward layer (mlp.h). */
#include "nn/mlp.h"
#include "base/error.h"
#include "tensor/ops.h"

#include <string.h>

void dfm_mlp_acts_free(dfm_mlp_acts *a)
{
    if (!a) return;
    dfm_linear_acts_free(&a->fc1), dfm_linear_acts_free(&a->fc2);
    dfm_tensor_free(&a->h), dfm_tensor_free(&a->g);
    memset(a, 0, sizeof *a);
}

void dfm_mlp_free(dfm_mlp *f)
{
    if (!f) return;
    dfm_linear_free(&f->fc1), dfm_linear_free(&f->fc2);
}

int dfm_mlp_forward(const dfm_compute *cc, const dfm_mlp *f, const dfm_tensor *x, dfm_tensor *y, dfm_mlp_acts *acts,
                    uint64_t seed, uint64_t stream)
{
    dfm_mlp_acts tmp, *s = acts ? acts : &tmp;
    memset(s, 0, sizeof *s);
    int64_t sh[2] = {x->shape[0], f->fc1.out};
    int rc = dfm_tensor_alloc(&s->h, DFM_F32, x->device, 2, sh);
    /* without saved activations the GELU runs in place: one [M, ffn] buffer instead of two */
    if (!rc && acts) rc = dfm_tensor_alloc(&s->g, DFM_F32, x->device, 2, sh);
    dfm_tensor *g = acts ? &s->g : &s->h;
    if (!rc) rc = dfm_linear_forward(cc, &f->fc1, x, &s->h, acts ? &s->fc1 : NULL, seed, stream * 8 + 4);
    if (!rc) rc = dfm_op_gelu_tanh(&s->h, g);
    if (!rc) rc = dfm_linear_forward(cc, &f->fc2, g, y, acts ? &s->fc2 : NULL, seed, stream * 8 + 5);
    if (rc || !acts) dfm_mlp_acts_free(s);
    return rc;
}

int dfm_mlp_backward(const dfm_compute *cc, const dfm_mlp *f, const dfm_mlp_acts *s, const dfm_tensor *dy,
                     dfm_tensor *dx, dfm_mlp_grads *g)
{
    if (!s || !s->h.data) return dfm_fail(DFM_E_ARG, "mlp backward: no saved activations");
    dfm_tensor dg = {0};
    int rc = dfm_tensor_alloc(&dg, DFM_F32, dy->device, 2, s->h.shape);
    if (!rc) rc = dfm_linear_backward(cc, &f->fc2, &s->fc2, dy, &dg, 0, g ? &g->fc2 : NULL);
    if (!rc) rc = dfm_op_gelu_tanh_bwd(&dg, &s->h, &dg);
    if (!rc) rc = dfm_linear_backward(cc, &f->fc1, &s->fc1, &dg, dx, 0, g ? &g->fc1 : NULL);
    dfm_tensor_free(&dg);
    return rc;
}
