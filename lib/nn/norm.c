/* norm.c — layer norm, RMS norm and the VAE's channel RMS norm layers (norm.h) over the op table. */
#include "nn/norm.h"
#include "base/error.h"
#include "tensor/ops.h"

#include <string.h>

static int64_t rows_of(const dfm_tensor *x)
{
    int64_t d = x->ndim ? x->shape[x->ndim - 1] : 0;
    return d ? dfm_tensor_numel(x) / d : 0;
}

static const dfm_tensor *opt(const dfm_tensor *t) { return t && t->data ? t : NULL; }
static dfm_tensor *opt_out(dfm_tensor *t) { return t && t->data ? t : NULL; }

int dfm_layer_norm_forward(const dfm_layer_norm *n, const dfm_tensor *x, dfm_tensor *y, dfm_layer_norm_acts *acts)
{
    if (!acts) return dfm_op_layer_norm(x, opt(&n->w), opt(&n->b), n->eps, y, NULL, NULL);
    memset(acts, 0, sizeof *acts);
    if (x->data == y->data) return dfm_fail(DFM_E_ARG, "layer norm: training forward in place (x is needed later)");
    int64_t r = rows_of(x);
    int rc = dfm_tensor_alloc(&acts->mean, DFM_F32, x->device, 1, &r);
    if (!rc) rc = dfm_tensor_alloc(&acts->rstd, DFM_F32, x->device, 1, &r);
    if (!rc) rc = dfm_op_layer_norm(x, opt(&n->w), opt(&n->b), n->eps, y, &acts->mean, &acts->rstd);
    if (rc) {
        dfm_layer_norm_acts_free(acts);
        return rc;
    }
    acts->x = *x, acts->x.owned = 0;
    return 0;
}

int dfm_layer_norm_backward(const dfm_layer_norm *n, const dfm_layer_norm_acts *a, const dfm_tensor *dy,
                            dfm_tensor *dx, dfm_tensor *dw, dfm_tensor *db)
{
    if (!a || !a->x.data) return dfm_fail(DFM_E_ARG, "layer norm backward: no saved activations");
    return dfm_op_layer_norm_bwd(dy, &a->x, &a->mean, &a->rstd, opt(&n->w), n->eps, dx, opt_out(dw), opt_out(db));
}

void dfm_layer_norm_acts_free(dfm_layer_norm_acts *a)
{
    if (!a) return;
    dfm_tensor_free(&a->mean);
    dfm_tensor_free(&a->rstd);
    memset(a, 0, sizeof *a);
}

int dfm_rms_norm_forward(const dfm_rms_norm *n, const dfm_tensor *x, dfm_tensor *y, dfm_rms_norm_acts *acts)
{
    if (!acts) return dfm_op_rms_norm(x, &n->w, n->eps, y);
    memset(acts, 0, sizeof *acts);
    if (x->data == y->data) return dfm_fail(DFM_E_ARG, "RMS norm: training forward in place (x is needed later)");
    int64_t r = rows_of(x);
    int rc = dfm_tensor_alloc(&acts->inv, DFM_F32, x->device, 1, &r);
    if (!rc) rc = dfm_op_rms_norm_save(x, &n->w, n->eps, y, &acts->inv);
    if (rc) {
        dfm_rms_norm_acts_free(acts);
        return rc;
    }
    acts->x = *x, acts->x.owned = 0;
    return 0;
}

int dfm_rms_norm_backward(const dfm_rms_norm *n, const dfm_rms_norm_acts *a, const dfm_tensor *dy, dfm_tensor *dx,
                          dfm_tensor *dw)
{
    if (!a || !a->x.data) return dfm_fail(DFM_E_ARG, "RMS norm backward: no saved activations");
    return dfm_op_rms_norm_bwd(dy, &a->x, &a->inv, &n->w, n->eps, dx, opt_out(dw));
}

void dfm_rms_norm_acts_free(dfm_rms_norm_acts *a)
{
    if (!a) return;
    dfm_tensor_free(&a->inv);
    memset(a, 0, sizeof *a);
}

int dfm_rms_norm_channels_forward(const dfm_rms_norm_channels *n, const dfm_tensor *x, dfm_tensor *y)
{
    return dfm_op_rms_norm_channels(x, &n->gamma, opt(&n->bias), y);
}
