/* finite.c — the non-finite check (finite.h): the scan through the op table, and the message. */
#include "tensor/finite.h"
#include "base/error.h"
#include "tensor/op.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int is_float(dfm_dtype d) { return d == DFM_F32 || d == DFM_BF16 || d == DFM_F16; }

static float to_f32(const void *p, dfm_dtype dt)
{
    if (dt == DFM_F32) {
        float f;
        memcpy(&f, p, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, p, 2);
    return dt == DFM_BF16 ? dfm_bf16_to_f32(h) : dfm_f16_to_f32(h);
}

int dfm_tensor_nonfinite(const dfm_tensor *t, dfm_nonfinite *out)
{
    out->count = 0, out->first = -1, out->value = 0;
    int64_t n = dfm_tensor_numel(t);
    if (!is_float(t->dtype) || n <= 0) return 0;
    size_t es = dfm_dtype_size(t->dtype);
    uint8_t elem[4];
    dfm_op_args a = {.src = {t}};
    int rc = dfm_op_run(DFM_OP_COUNT_NONFINITE, &a);
    if (rc) return rc;
    out->count = a.r[0], out->first = a.r[1];
    if (out->count) { /* that element, from the device if need be */
        int64_t one = 1;
        dfm_tensor v = dfm_tensor_view((uint8_t *)t->data + (size_t)out->first * es, t->dtype, t->device, 1, &one);
        if (t->device == DFM_CPU) {
            memcpy(elem, v.data, es);
        } else {
            dfm_tensor h;
            if ((rc = dfm_tensor_copy(&h, &v, DFM_CPU))) return rc;
            memcpy(elem, h.data, es);
            dfm_tensor_free(&h);
        }
    }
    if (out->count) out->value = to_f32(elem, t->dtype);
    return 0;
}

const char *dfm_nonfinite_str(const dfm_nonfinite *r, const dfm_tensor *t, char *buf, size_t n)
{
    char idx[DFM_MAX_DIMS * 21 + 3] = "[";
    size_t k = 1;
    int64_t rest = r->first, sub[DFM_MAX_DIMS];
    for (int d = t->ndim - 1; d >= 0; d--) {
        int64_t s = t->shape[d] > 0 ? t->shape[d] : 1;
        sub[d] = rest % s;
        rest /= s;
    }
    for (int d = 0; d < t->ndim; d++)
        k += (size_t)snprintf(idx + k, sizeof idx - k, "%s%lld", d ? "," : "", (long long)sub[d]);
    snprintf(idx + k, sizeof idx - k, "]");
    const char *what = isnan(r->value) ? "NaN" : r->value > 0 ? "+Inf" : "-Inf";
    snprintf(buf, n, "%lld non-finite value%s (first %s at %s)", (long long)r->count,
             r->count == 1 ? "" : "s", what, idx);
    return buf;
}

int dfm_tensor_check_finite(const dfm_tensor *t, const char *what)
{
    dfm_nonfinite r;
    int rc = dfm_tensor_nonfinite(t, &r);
    if (rc) return rc;
    if (!r.count) return 0;
    char msg[256];
    return dfm_fail(DFM_E_NONFINITE, "%s has %s", what, dfm_nonfinite_str(&r, t, msg, sizeof msg));
}
