/* ops.c — the one dispatch point for every op (ops.h): check arguments, shapes, dtypes and
 * devices, then call the CPU kernel (kernels/cpu/<op>.c) or its CUDA twin (kernels/cuda,
 * ops_cuda.h; only in DFM_HAVE_CUDA builds). Error messages name the op and every operand as
 * "[C,T,H,W] DTYPE device". Not here: any arithmetic.
 */
#include "tensor/ops.h"
#include "base/buf.h"
#include "base/error.h"
#include "cpu/attention.h"
#include "cpu/attention_bias.h"
#include "cpu/conv3d.h"
#include "cpu/cpu.h"
#include "cpu/eltwise.h"
#include "cpu/embedding.h"
#include "cpu/gated.h"
#include "cpu/layout.h"
#include "cpu/linear.h"
#include "cpu/matmul.h"
#include "cpu/norm.h"
#include "cpu/rms_norm.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef DFM_HAVE_CUDA
#include "cuda/device.h"
#include "cuda/ops_cuda.h"
#endif

static int g_bf16_compute;

void dfm_ops_set_threads(int n) { dfm_cpu_set_threads(n); }
int dfm_ops_threads(void) { return dfm_cpu_threads(); }
void dfm_ops_set_bf16_compute(int on) { g_bf16_compute = on != 0; }
int dfm_ops_bf16_compute(void) { return g_bf16_compute; }
void dfm_ops_release_scratch(void)
{
    dfm_cpu_scratch_release();
#ifdef DFM_HAVE_CUDA
    dfm_cuda_release_scratch();
#endif
}

/* ---- checks -------------------------------------------------------------------------------- */

/* "op: why (name [..] F32 cpu, name ...)" with the (name, tensor) pairs after `why`, ending in
 * NULL. Returns DFM_E_ARG. */
static int bad(const char *op, const char *why, ...)
{
    char msg[768], ts[160];
    size_t k = (size_t)snprintf(msg, sizeof msg, "%s: %s (", op, why);
    va_list ap;
    va_start(ap, why);
    int first = 1;
    for (;;) {
        const char *name = va_arg(ap, const char *);
        if (!name) break;
        const dfm_tensor *t = va_arg(ap, const dfm_tensor *);
        if (k < sizeof msg)
            k += (size_t)snprintf(msg + k, sizeof msg - k, "%s%s %s", first ? "" : ", ", name,
                                  t ? dfm_tensor_str(t, ts, sizeof ts) : "NULL");
        first = 0;
    }
    va_end(ap);
    if (k < sizeof msg) snprintf(msg + k, sizeof msg - k, ")");
    return dfm_fail(DFM_E_ARG, "%s", msg);
}

static int is_float(dfm_dtype d) { return d == DFM_F32 || d == DFM_BF16 || d == DFM_F16; }

static int same_shape(const dfm_tensor *a, const dfm_tensor *b)
{
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

/* [c] or [c, 1, 1, ...] */
static int is_channel_vec(const dfm_tensor *t, int64_t c)
{
    if (t->ndim < 1 || t->shape[0] != c) return 0;
    for (int i = 1; i < t->ndim; i++)
        if (t->shape[i] != 1) return 0;
    return 1;
}

static int overlaps(const dfm_tensor *a, const dfm_tensor *b)
{
    const char *pa = a->data, *pb = b->data;
    size_t na = dfm_tensor_nbytes(a), nb = dfm_tensor_nbytes(b);
    return na && nb && pa < pb + nb && pb < pa + na;
}

#ifndef DFM_HAVE_CUDA
static int no_cuda(const char *op)
{
    return dfm_fail(DFM_E_UNSUPPORTED, "%s: tensors on a CUDA device, but this build has no CUDA support", op);
}
#endif

/* ---- conv3d -------------------------------------------------------------------------------- */

int dfm_op_conv3d(const dfm_tensor *x, const dfm_tensor *w, const dfm_tensor *b, dfm_tensor *y,
                  const int stride[3], const int pad[6])
{
    const char *op = "conv3d";
#define ARGS "x", x, "w", w, "b", b, "y", y, NULL
    if (!x || !w || !y || !stride || !pad) return dfm_fail(DFM_E_ARG, "conv3d: NULL argument");
    if (x->ndim != 4 || x->dtype != DFM_F32) return bad(op, "x must be F32 [Cin, T, H, W]", ARGS);
    if (w->ndim != 5 || !is_float(w->dtype)) return bad(op, "w must be F32/BF16/F16 [Cout, Cin, kt, kh, kw]", ARGS);
    if (w->shape[1] != x->shape[0]) return bad(op, "w's Cin differs from x's channels", ARGS);
    if (b && (!is_channel_vec(b, w->shape[0]) || !is_float(b->dtype))) return bad(op, "b must be a float [Cout]", ARGS);
    for (int i = 0; i < 3; i++)
        if (stride[i] < 1 || w->shape[2 + i] < 1)
            return bad(op, "strides and kernel sizes must be >= 1", ARGS);
    for (int i = 0; i < 6; i++)
        if (pad[i] < 0) return bad(op, "negative padding", ARGS);
    int64_t out[3];
    for (int i = 0; i < 3; i++) {
        int64_t span = x->shape[1 + i] + pad[2 * i] + pad[2 * i + 1] - w->shape[2 + i];
        if (span < 0) return bad(op, "kernel larger than the padded input", ARGS);
        out[i] = span / stride[i] + 1;
    }
    if (y->ndim != 4 || y->dtype != DFM_F32 || y->shape[0] != w->shape[0] || y->shape[1] != out[0] ||
        y->shape[2] != out[1] || y->shape[3] != out[2]) {
        char why[160];
        snprintf(why, sizeof why, "y must be F32 [%lld,%lld,%lld,%lld] (stride %d,%d,%d pad %d,%d,%d,%d,%d,%d)",
                 (long long)w->shape[0], (long long)out[0], (long long)out[1], (long long)out[2], stride[0],
                 stride[1], stride[2], pad[0], pad[1], pad[2], pad[3], pad[4], pad[5]);
        return bad(op, why, ARGS);
    }
    if (w->device != x->device || y->device != x->device || (b && b->device != x->device))
        return bad(op, "operands on different devices", ARGS);
    if (overlaps(x, y)) return bad(op, "y overlaps x", ARGS);
#undef ARGS
    int kt = (int)w->shape[2], kh = (int)w->shape[3], kw = (int)w->shape[4];
    if (x->device == DFM_CPU)
        return dfm_cpu_conv3d(x->data, x->shape[0], x->shape[1], x->shape[2], x->shape[3], w->data, w->dtype,
                              w->shape[0], kt, kh, kw, b ? b->data : NULL, b ? b->dtype : DFM_F32, y->data,
                              stride, pad, g_bf16_compute);
#ifdef DFM_HAVE_CUDA
    return dfm_cuda_conv3d(x->data, x->shape[0], x->shape[1], x->shape[2], x->shape[3], w->data, w->dtype,
                           w->shape[0], kt, kh, kw, b ? b->data : NULL, b ? b->dtype : DFM_F32, y->data,
                           stride, pad, g_bf16_compute);
#else
    return no_cuda(op);
#endif
}

/* ---- rms norm -------------------------------------------------------------------------------- */

int dfm_op_rms_norm_channels(const dfm_tensor *x, const dfm_tensor *gamma, const dfm_tensor *bias,
                             dfm_tensor *y)
{
    const char *op = "rms_norm_channels";
#define ARGS "x", x, "gamma", gamma, "bias", bias, "y", y, NULL
    if (!x || !gamma || !y) return dfm_fail(DFM_E_ARG, "rms_norm_channels: NULL argument");
    if (x->ndim < 1 || x->dtype != DFM_F32) return bad(op, "x must be F32 [C, ...]", ARGS);
    if (!same_shape(x, y) || y->dtype != DFM_F32) return bad(op, "y must be F32 with x's shape", ARGS);
    int64_t c = x->shape[0], n = c ? dfm_tensor_numel(x) / c : 0;
    if (!is_channel_vec(gamma, c) || !is_float(gamma->dtype)) return bad(op, "gamma must be a float [C]", ARGS);
    if (bias && (!is_channel_vec(bias, c) || !is_float(bias->dtype))) return bad(op, "bias must be a float [C]", ARGS);
    if (gamma->device != x->device || y->device != x->device || (bias && bias->device != x->device))
        return bad(op, "operands on different devices", ARGS);
    if (x->data != y->data && overlaps(x, y)) return bad(op, "y partly overlaps x", ARGS);
#undef ARGS
    if (x->device == DFM_CPU)
        return dfm_cpu_rms_norm_channels(x->data, c, n, gamma->data, gamma->dtype, bias ? bias->data : NULL,
                                         bias ? bias->dtype : DFM_F32, y->data);
#ifdef DFM_HAVE_CUDA
    return dfm_cuda_rms_norm_channels(x->data, c, n, gamma->data, gamma->dtype, bias ? bias->data : NULL,
                                      bias ? bias->dtype : DFM_F32, y->data);
#else
    return no_cuda(op);
#endif
}

/* ---- elementwise ----------------------------------------------------------------------------- */

/* x (and a second input) and y: F32, same shape, same device; y is x or does not overlap it. */
static int check_elt(const char *op, const dfm_tensor *a, const dfm_tensor *b, const dfm_tensor *y)
{
    if (!a || !y) return dfm_fail(DFM_E_ARG, "%s: NULL argument", op);
#define ARGS "x", a, "x2", b, "y", y, NULL
    if (a->dtype != DFM_F32 || y->dtype != DFM_F32 || (b && b->dtype != DFM_F32))
        return bad(op, "operands must be F32", ARGS);
    if (!same_shape(a, y) || (b && !same_shape(a, b))) return bad(op, "shapes differ", ARGS);
    if (y->device != a->device || (b && b->device != a->device)) return bad(op, "operands on different devices", ARGS);
    if ((a->data != y->data && overlaps(a, y)) || (b && b->data != y->data && overlaps(b, y)))
        return bad(op, "y partly overlaps an input", ARGS);
#undef ARGS
    return 0;
}

int dfm_op_silu(const dfm_tensor *x, dfm_tensor *y)
{
    int rc = check_elt("silu", x, NULL, y);
    if (rc < 0) return rc;
    if (x->device == DFM_CPU) {
        dfm_cpu_silu(x->data, y->data, dfm_tensor_numel(x));
        return 0;
    }
#ifdef DFM_HAVE_CUDA
    return dfm_cuda_silu(x->data, y->data, dfm_tensor_numel(x));
#else
    return no_cuda("silu");
#endif
}

int dfm_op_add(const dfm_tensor *a, const dfm_tensor *b, dfm_tensor *y)
{
    if (!b) return dfm_fail(DFM_E_ARG, "add: NULL argument");
    int rc = check_elt("add", a, b, y);
    if (rc < 0) return rc;
    if (a->device == DFM_CPU) {
        dfm_cpu_add(a->data, b->data, y->data, dfm_tensor_numel(a));
        return 0;
    }
#ifdef DFM_HAVE_CUDA
    return dfm_cuda_add(a->data, b->data, y->data, dfm_tensor_numel(a));
#else
    return no_cuda("add");
#endif
}

int dfm_op_clamp(const dfm_tensor *x, float lo, float hi, dfm_tensor *y)
{
    int rc = check_elt("clamp", x, NULL, y);
    if (rc < 0) return rc;
    if (!(lo <= hi)) return dfm_fail(DFM_E_ARG, "clamp: lo %g > hi %g", lo, hi);
    if (x->device == DFM_CPU) {
        dfm_cpu_clamp(x->data, lo, hi, y->data, dfm_tensor_numel(x));
        return 0;
    }
#ifdef DFM_HAVE_CUDA
    return dfm_cuda_clamp(x->data, lo, hi, y->data, dfm_tensor_numel(x));
#else
    return no_cuda("clamp");
#endif
}

int dfm_op_affine(const dfm_tensor *x, float scale, float shift, dfm_tensor *y)
{
    int rc = check_elt("affine", x, NULL, y);
    if (rc < 0) return rc;
    if (x->device == DFM_CPU) {
        dfm_cpu_affine(x->data, scale, shift, y->data, dfm_tensor_numel(x));
        return 0;
    }
#ifdef DFM_HAVE_CUDA
    return dfm_cuda_affine(x->data, scale, shift, y->data, dfm_tensor_numel(x));
#else
    return no_cuda("affine");
#endif
}

/* ---- matmul -------------------------------------------------------------------------------- */

int dfm_op_matmul(const dfm_tensor *a, int ta, const dfm_tensor *b, int tb, const dfm_tensor *bias,
                  float beta, dfm_tensor *y)
{
    const char *op = "matmul";
#define ARGS "a", a, "b", b, "bias", bias, "y", y, NULL
    if (!a || !b || !y) return dfm_fail(DFM_E_ARG, "matmul: NULL argument");
    if (a->ndim != 2 || a->dtype != DFM_F32) return bad(op, "a must be F32 2-D", ARGS);
    if (b->ndim != 2 || !is_float(b->dtype)) return bad(op, "b must be F32/BF16/F16 2-D", ARGS);
    if (y->ndim != 2 || y->dtype != DFM_F32) return bad(op, "y must be F32 2-D", ARGS);
    int64_t m = ta ? a->shape[1] : a->shape[0], k = ta ? a->shape[0] : a->shape[1];
    int64_t kb = tb ? b->shape[1] : b->shape[0], n = tb ? b->shape[0] : b->shape[1];
    if (k != kb) return bad(op, ta || tb ? "inner dimensions differ (after the transposes)" : "inner dimensions differ", ARGS);
    if (y->shape[0] != m || y->shape[1] != n) return bad(op, "y must be [M, N]", ARGS);
    if (bias && (bias->ndim < 1 || dfm_tensor_numel(bias) != n || bias->shape[bias->ndim - 1] != n ||
                 !is_float(bias->dtype)))
        return bad(op, "bias must be a float [N]", ARGS);
    if (b->device != a->device || y->device != a->device || (bias && bias->device != a->device))
        return bad(op, "operands on different devices", ARGS);
    if (overlaps(a, y) || overlaps(b, y)) return bad(op, "y overlaps an input", ARGS);
    if (m > 0x7fffffff || n > 0x7fffffff || k > 0x7fffffff) return bad(op, "dimension past 2^31", ARGS);
#undef ARGS
    if (a->device == DFM_CPU)
        return dfm_cpu_matmul(a->data, ta != 0, b->data, b->dtype, tb != 0, bias ? bias->data : NULL,
                              bias ? bias->dtype : DFM_F32, beta, y->data, m, n, k, g_bf16_compute);
#ifdef DFM_HAVE_CUDA
    return dfm_cuda_matmul(a->data, ta != 0, b->data, b->dtype, tb != 0, bias ? bias->data : NULL,
                           bias ? bias->dtype : DFM_F32, beta, y->data, m, n, k, g_bf16_compute);
#else
    return no_cuda(op);
#endif
}

/* ---- linear (packed weights) ---------------------------------------------------------------- */

struct dfm_linear {
    dfm_device device;
    dfm_dtype dtype;
    int64_t k;
    int nw;
    int64_t n[DFM_LINEAR_MAX];
    void *packed[DFM_LINEAR_MAX]; /* CPU: dfm_cpu_linear_pack layout */
    dfm_tensor dev[DFM_LINEAR_MAX]; /* CUDA: [n, k] of dtype */
    size_t nbytes;
};

void dfm_linear_free(dfm_linear *l)
{
    if (!l) return;
    for (int i = 0; i < l->nw; i++) {
        free(l->packed[i]);
        dfm_tensor_free(&l->dev[i]);
    }
    free(l);
}

size_t dfm_linear_nbytes(const dfm_linear *l) { return l ? l->nbytes : 0; }

int dfm_linear_create(dfm_linear **out, const dfm_tensor *const *w, int nw, dfm_dtype dt, dfm_device dev)
{
    const char *op = "linear_create";
    *out = NULL;
    if (!w || nw < 1 || nw > DFM_LINEAR_MAX)
        return dfm_fail(DFM_E_ARG, "%s: %d weights (1 to %d)", op, nw, DFM_LINEAR_MAX);
    if (dt != DFM_F32 && dt != DFM_BF16) return dfm_fail(DFM_E_ARG, "%s: store as %s (F32 or BF16)", op, dfm_dtype_name(dt));
    for (int i = 0; i < nw; i++) {
        if (!w[i]) return dfm_fail(DFM_E_ARG, "%s: NULL weight", op);
        if (w[i]->ndim != 2 || !is_float(w[i]->dtype) || w[i]->device != DFM_CPU)
            return bad(op, "weights must be float 2-D [n, k] on the CPU", "w", w[i], NULL);
        if (w[i]->shape[1] != w[0]->shape[1]) return bad(op, "weights must share k", "w0", w[0], "w", w[i], NULL);
        if (w[i]->shape[0] > 0x7fffffff || w[i]->shape[1] > 0x7fffffff) return bad(op, "dimension past 2^31", "w", w[i], NULL);
    }
    if (dev != DFM_CPU && !dfm_device_available(dev)) return DFM_E_UNSUPPORTED;
    dfm_linear *l = dfm_calloc(1, sizeof *l);
    if (!l) return DFM_E_NOMEM;
    l->device = dev, l->dtype = dt, l->k = w[0]->shape[1];
    int rc = 0;
    for (int i = 0; i < nw && !rc; i++) {
        l->nw = i + 1;
        l->n[i] = w[i]->shape[0];
        if (dev == DFM_CPU) {
            size_t bytes = dfm_cpu_linear_packed_size(l->n[i], l->k, dt);
            if (!(l->packed[i] = dfm_cpu_alloc_large(bytes))) {
                l->packed[i] = NULL;
                rc = dfm_fail(DFM_E_NOMEM, "%s: out of memory for %zu bytes of weights", op, bytes);
                break;
            }
            rc = dfm_cpu_linear_pack(l->packed[i], dt, w[i]->data, w[i]->dtype, l->n[i], l->k);
            l->nbytes += bytes;
        } else if (w[i]->dtype == dt) {
            rc = dfm_tensor_copy(&l->dev[i], w[i], dev);
            l->nbytes += dfm_tensor_nbytes(w[i]);
        } else {
            dfm_tensor host;
            if (!(rc = dfm_tensor_alloc(&host, dt, DFM_CPU, 2, w[i]->shape))) {
                if (!(rc = dfm_tensor_convert(&host, w[i]))) rc = dfm_tensor_copy(&l->dev[i], &host, dev);
                l->nbytes += dfm_tensor_nbytes(&host);
                dfm_tensor_free(&host);
            }
        }
    }
    if (rc) {
        dfm_linear_free(l);
        return rc;
    }
    *out = l;
    return 0;
}

int dfm_op_linear(const dfm_tensor *x, const dfm_linear *l, dfm_tensor *const *y, int accumulate)
{
    const char *op = "linear";
    if (!x || !l || !y) return dfm_fail(DFM_E_ARG, "linear: NULL argument");
    if (x->ndim != 2 || x->dtype != DFM_F32 || x->shape[1] != l->k || x->device != l->device) {
        char why[96];
        snprintf(why, sizeof why, "x must be F32 [m, %lld] on the weights' device", (long long)l->k);
        return bad(op, why, "x", x, NULL);
    }
    if (x->shape[0] > 0x7fffffff) return bad(op, "dimension past 2^31", "x", x, NULL);
    dfm_cpu_linear_seg seg[DFM_LINEAR_MAX];
    for (int i = 0; i < l->nw; i++) {
        if (!y[i]) return dfm_fail(DFM_E_ARG, "linear: NULL output %d", i);
        if (y[i]->ndim != 2 || y[i]->dtype != DFM_F32 || y[i]->shape[0] != x->shape[0] || y[i]->shape[1] != l->n[i] ||
            y[i]->device != l->device) {
            char why[96];
            snprintf(why, sizeof why, "output %d must be F32 [m, %lld] on the weights' device", i, (long long)l->n[i]);
            return bad(op, why, "x", x, "y", y[i], NULL);
        }
        if (overlaps(x, y[i])) return bad(op, "an output overlaps x", "x", x, "y", y[i], NULL);
        for (int j = 0; j < i; j++)
            if (overlaps(y[j], y[i])) return bad(op, "outputs overlap", "y", y[j], "y", y[i], NULL);
        seg[i] = (dfm_cpu_linear_seg){l->packed[i], l->n[i], y[i]->data, l->n[i]};
    }
    if (l->device == DFM_CPU)
        return dfm_cpu_linear(x->data, x->shape[0], l->k, l->dtype, seg, l->nw, accumulate, g_bf16_compute);
#ifdef DFM_HAVE_CUDA
    for (int i = 0; i < l->nw; i++) {
        int rc = dfm_cuda_matmul(x->data, 0, l->dev[i].data, l->dtype, 1, NULL, DFM_F32, accumulate ? 1.0f : 0.0f,
                                 y[i]->data, x->shape[0], l->n[i], l->k, g_bf16_compute);
        if (rc) return rc;
    }
    return 0;
#else
    return no_cuda(op);
#endif
}

/* ---- attention ----------------------------------------------------------------------------- */

int dfm_op_attention(const dfm_tensor *q, const dfm_tensor *k, const dfm_tensor *v, float scale,
                     dfm_tensor *out)
{
    const char *op = "attention";
#define ARGS "q", q, "k", k, "v", v, "out", out, NULL
    if (!q || !k || !v || !out) return dfm_fail(DFM_E_ARG, "attention: NULL argument");
    if (q->ndim != 3 || k->ndim != 3 || v->ndim != 3 || out->ndim != 3 || q->dtype != DFM_F32 ||
        k->dtype != DFM_F32 || v->dtype != DFM_F32 || out->dtype != DFM_F32)
        return bad(op, "q, k, v, out must be F32 [heads, S, D]", ARGS);
    if (!same_shape(k, v) || k->shape[0] != q->shape[0] || k->shape[2] != q->shape[2])
        return bad(op, "k and v must be [heads, Sk, D] with q's heads and D", ARGS);
    if (!same_shape(q, out)) return bad(op, "out must have q's shape", ARGS);
    if (k->device != q->device || v->device != q->device || out->device != q->device)
        return bad(op, "operands on different devices", ARGS);
    if (overlaps(out, q) || overlaps(out, k) || overlaps(out, v)) return bad(op, "out overlaps an input", ARGS);
    if (k->shape[1] == 0 && q->shape[1] > 0) return bad(op, "no keys", ARGS);
#undef ARGS
    if (q->device == DFM_CPU)
        return dfm_cpu_attention(q->data, k->data, v->data, scale, out->data, q->shape[0], q->shape[1],
                                 k->shape[1], q->shape[2]);
#ifdef DFM_HAVE_CUDA
    return dfm_cuda_attention(q->data, k->data, v->data, scale, out->data, q->shape[0], q->shape[1],
                              k->shape[1], q->shape[2]);
#else
    return no_cuda(op);
#endif
}

/* ---- data movement ------------------------------------------------------------------------- */

static int elem_ok(const dfm_tensor *t)
{
    size_t s = dfm_dtype_size(t->dtype);
    return s == 1 || s == 2 || s == 4 || s == 8;
}

int dfm_op_transpose2d(const dfm_tensor *x, dfm_tensor *y)
{
    const char *op = "transpose2d";
#define ARGS "x", x, "y", y, NULL
    if (!x || !y) return dfm_fail(DFM_E_ARG, "transpose2d: NULL argument");
    if (x->ndim != 2 || y->ndim != 2 || x->dtype != y->dtype || !elem_ok(x))
        return bad(op, "x and y must be 2-D of one dtype", ARGS);
    if (y->shape[0] != x->shape[1] || y->shape[1] != x->shape[0]) return bad(op, "y must be [C, R] for x [R, C]", ARGS);
    if (y->device != x->device) return bad(op, "operands on different devices", ARGS);
    if (overlaps(x, y)) return bad(op, "y overlaps x", ARGS);
#undef ARGS
    int es = (int)dfm_dtype_size(x->dtype);
    if (x->device == DFM_CPU) {
        dfm_cpu_transpose2d(x->data, y->data, x->shape[0], x->shape[1], es);
        return 0;
    }
#ifdef DFM_HAVE_CUDA
    return dfm_cuda_transpose2d(x->data, y->data, x->shape[0], x->shape[1], es);
#else
    return no_cuda(op);
#endif
}

int dfm_op_upsample_nearest2x(const dfm_tensor *x, dfm_tensor *y)
{
    const char *op = "upsample_nearest2x";
#define ARGS "x", x, "y", y, NULL
    if (!x || !y) return dfm_fail(DFM_E_ARG, "upsample_nearest2x: NULL argument");
    if (x->ndim != 4 || y->ndim != 4 || x->dtype != y->dtype || !elem_ok(x))
        return bad(op, "x and y must be [C, T, H, W] of one dtype", ARGS);
    if (y->shape[0] != x->shape[0] || y->shape[1] != x->shape[1] || y->shape[2] != 2 * x->shape[2] ||
        y->shape[3] != 2 * x->shape[3])
        return bad(op, "y must be [C, T, 2H, 2W]", ARGS);
    if (y->device != x->device) return bad(op, "operands on different devices", ARGS);
    if (overlaps(x, y)) return bad(op, "y overlaps x", ARGS);
#undef ARGS
    int es = (int)dfm_dtype_size(x->dtype);
    if (x->device == DFM_CPU) {
        dfm_cpu_upsample_nearest2x(x->data, y->data, x->shape[0], x->shape[1], x->shape[2], x->shape[3], es);
        return 0;
    }
#ifdef DFM_HAVE_CUDA
    return dfm_cuda_upsample_nearest2x(x->data, y->data, x->shape[0], x->shape[1], x->shape[2], x->shape[3], es);
#else
    return no_cuda(op);
#endif
}

#ifdef DFM_HAVE_CUDA
/* count blocks of `bytes`, device to device, one cudaMemcpy each. */
static int cuda_copy_blocks(char *dst, size_t ds, const char *src, size_t ss, size_t bytes, int64_t count)
{
    for (int64_t i = 0; i < count && bytes; i++) {
        const char *why = NULL;
        if (dfm_cuda_memcpy(dst + i * ds, src + i * ss, bytes, 2, &why))
            return dfm_fail(DFM_E_IO, "cudaMemcpy failed: %s", why ? why : "?");
    }
    return 0;
}
#endif

int dfm_op_concat(const dfm_tensor *a, const dfm_tensor *b, int dim, dfm_tensor *y)
{
    const char *op = "concat";
#define ARGS "a", a, "b", b, "y", y, NULL
    if (!a || !b || !y) return dfm_fail(DFM_E_ARG, "concat: NULL argument");
    if (a->ndim < 1 || b->ndim != a->ndim || y->ndim != a->ndim || a->dtype != b->dtype || y->dtype != a->dtype)
        return bad(op, "a, b and y must have one rank and one dtype", ARGS);
    int d = dim < 0 ? dim + a->ndim : dim;
    if (d < 0 || d >= a->ndim) {
        char why[64];
        snprintf(why, sizeof why, "dimension %d out of range", dim);
        return bad(op, why, ARGS);
    }
    for (int i = 0; i < a->ndim; i++) {
        int64_t want = i == d ? a->shape[i] + b->shape[i] : a->shape[i];
        if ((i != d && b->shape[i] != a->shape[i]) || y->shape[i] != want)
            return bad(op, "shapes do not match along the other dimensions, or y's is not their sum", ARGS);
    }
    if (b->device != a->device || y->device != a->device) return bad(op, "operands on different devices", ARGS);
    if (overlaps(a, y) || overlaps(b, y)) return bad(op, "y overlaps an input", ARGS);
#undef ARGS
    int64_t outer = 1, inner = 1, es = (int64_t)dfm_dtype_size(a->dtype);
    for (int i = 0; i < d; i++) outer *= a->shape[i];
    for (int i = d + 1; i < a->ndim; i++) inner *= a->shape[i];
    int64_t na = a->shape[d] * inner, nb = b->shape[d] * inner; /* elements per outer index */
    if (a->device == DFM_CPU) {
        size_t ys = (size_t)((na + nb) * es);
        dfm_cpu_copy_blocks(y->data, ys, a->data, (size_t)(na * es), (size_t)(na * es), outer);
        dfm_cpu_copy_blocks((char *)y->data + na * es, ys, b->data, (size_t)(nb * es), (size_t)(nb * es), outer);
        return 0;
    }
#ifdef DFM_HAVE_CUDA
    return dfm_cuda_concat(a->data, na, b->data, nb, y->data, outer, (int)es);
#else
    return no_cuda(op);
#endif
}

int dfm_op_frames(const dfm_tensor *x, int64_t t0, int64_t n, dfm_tensor *y)
{
    const char *op = "frames";
#define ARGS "x", x, "y", y, NULL
    if (!x || !y) return dfm_fail(DFM_E_ARG, "frames: NULL argument");
    if (x->ndim != 4 || y->ndim != 4 || x->dtype != y->dtype) return bad(op, "x and y must be [C, T, H, W] of one dtype", ARGS);
    if (t0 < 0 || n < 0 || t0 + n > x->shape[1]) {
        char why[96];
        snprintf(why, sizeof why, "frames [%lld, %lld) outside x", (long long)t0, (long long)(t0 + n));
        return bad(op, why, ARGS);
    }
    if (y->shape[0] != x->shape[0] || y->shape[1] != n || y->shape[2] != x->shape[2] || y->shape[3] != x->shape[3])
        return bad(op, "y must be [C, n, H, W]", ARGS);
    if (y->device != x->device) return bad(op, "operands on different devices", ARGS);
    if (overlaps(x, y)) return bad(op, "y overlaps x", ARGS);
#undef ARGS
    size_t frame = (size_t)(x->shape[2] * x->shape[3]) * dfm_dtype_size(x->dtype);
    size_t xs = frame * (size_t)x->shape[1], ys = frame * (size_t)n;
    const char *src = (const char *)x->data + (size_t)t0 * frame;
    if (x->device == DFM_CPU) {
        dfm_cpu_copy_blocks(y->data, ys, src, xs, ys, x->shape[0]);
        return 0;
    }
#ifdef DFM_HAVE_CUDA
    return cuda_copy_blocks(y->data, ys, src, xs, ys, x->shape[0]);
#else
    return no_cuda(op);
#endif
}

int dfm_op_put_frames(dfm_tensor *y, int64_t t0, const dfm_tensor *f)
{
    const char *op = "put_frames";
#define ARGS "y", y, "f", f, NULL
    if (!y || !f) return dfm_fail(DFM_E_ARG, "put_frames: NULL argument");
    if (y->ndim != 4 || f->ndim != 4 || y->dtype != f->dtype) return bad(op, "y and f must be [C, T, H, W] of one dtype", ARGS);
    int64_t n = f->shape[1];
    if (t0 < 0 || t0 + n > y->shape[1]) {
        char why[96];
        snprintf(why, sizeof why, "frames [%lld, %lld) outside y", (long long)t0, (long long)(t0 + n));
        return bad(op, why, ARGS);
    }
    if (f->shape[0] != y->shape[0] || f->shape[2] != y->shape[2] || f->shape[3] != y->shape[3])
        return bad(op, "f must be [C, n, H, W] with y's C, H, W", ARGS);
    if (y->device != f->device) return bad(op, "operands on different devices", ARGS);
    if (overlaps(y, f)) return bad(op, "f overlaps y", ARGS);
#undef ARGS
    size_t frame = (size_t)(y->shape[2] * y->shape[3]) * dfm_dtype_size(y->dtype);
    size_t ys = frame * (size_t)y->shape[1], fs = frame * (size_t)n;
    char *dst = (char *)y->data + (size_t)t0 * frame;
    if (y->device == DFM_CPU) {
        dfm_cpu_copy_blocks(dst, ys, f->data, fs, fs, y->shape[0]);
        return 0;
    }
#ifdef DFM_HAVE_CUDA
    return cuda_copy_blocks(dst, ys, f->data, fs, fs, y->shape[0]);
#else
    return no_cuda(op);
#endif
}

/* ---- text encoders ------------------------------------------------------------------------- */

/* idx: a CPU I32 vector of n values, each in [0, limit); the first bad one is named. */
static int check_index(const char *op, const char *what, const dfm_tensor *idx, int64_t n, int64_t limit,
                       const char *limit_what)
{
    const int32_t *p = idx->data;
    for (int64_t i = 0; i < n; i++)
        if (p[i] < 0 || p[i] >= limit)
            return dfm_fail(DFM_E_ARG, "%s: %s %d at position %lld is outside [0, %lld) (%s)", op, what, (int)p[i],
                            (long long)i, (long long)limit, limit_what);
    return 0;
}

int dfm_op_embedding(const dfm_tensor *table, const dfm_tensor *ids, dfm_tensor *out)
{
    const char *op = "embedding";
#define ARGS "table", table, "ids", ids, "out", out, NULL
    if (!table || !ids || !out) return dfm_fail(DFM_E_ARG, "embedding: NULL argument");
    if (table->ndim != 2 || !is_float(table->dtype)) return bad(op, "table must be F32/BF16/F16 [V, D]", ARGS);
    if (ids->ndim != 1 || ids->dtype != DFM_I32 || ids->device != DFM_CPU) return bad(op, "ids must be I32 [n] on the CPU", ARGS);
    if (out->ndim != 2 || out->dtype != DFM_F32 || out->shape[0] != ids->shape[0] || out->shape[1] != table->shape[1])
        return bad(op, "out must be F32 [n, D]", ARGS);
    if (out->device != table->device) return bad(op, "table and out on different devices", ARGS);
    if (overlaps(table, out)) return bad(op, "out overlaps table", ARGS);
#undef ARGS
    int64_t n = ids->shape[0], d = table->shape[1];
    int rc = check_index(op, "id", ids, n, table->shape[0], "the table's rows");
    if (rc < 0) return rc;
    if (out->device == DFM_CPU) return dfm_cpu_embedding(table->data, table->dtype, d, ids->data, n, out->data);
#ifdef DFM_HAVE_CUDA
    return dfm_cuda_embedding(table->data, table->dtype, d, ids->data, n, out->data);
#else
    return no_cuda(op);
#endif
}

int dfm_op_rel_bias(const dfm_tensor *table, const dfm_tensor *buckets, dfm_tensor *out)
{
    const char *op = "rel_bias";
#define ARGS "table", table, "buckets", buckets, "out", out, NULL
    if (!table || !buckets || !out) return dfm_fail(DFM_E_ARG, "rel_bias: NULL argument");
    if (table->ndim != 2 || !is_float(table->dtype)) return bad(op, "table must be F32/BF16/F16 [NB, H]", ARGS);
    if (out->ndim != 3 || out->dtype != DFM_F32 || out->shape[0] != table->shape[1])
        return bad(op, "out must be F32 [H, Sq, Sk] with the table's H", ARGS);
    int64_t sq = out->shape[1], sk = out->shape[2];
    int64_t nr = sq > 0 && sk > 0 ? sq + sk - 1 : 0;
    if (buckets->ndim != 1 || buckets->dtype != DFM_I32 || buckets->device != DFM_CPU || buckets->shape[0] != nr)
        return bad(op, "buckets must be I32 [Sq + Sk - 1] on the CPU", ARGS);
    if (out->device != table->device) return bad(op, "table and out on different devices", ARGS);
    if (overlaps(table, out)) return bad(op, "out overlaps table", ARGS);
#undef ARGS
    int rc = check_index(op, "bucket", buckets, nr, table->shape[0], "the table's buckets");
    if (rc < 0) return rc;
    if (out->device == DFM_CPU)
        return dfm_cpu_rel_bias(table->data, table->dtype, table->shape[0], table->shape[1], buckets->data, sq, sk,
                                out->data);
#ifdef DFM_HAVE_CUDA
    return dfm_cuda_rel_bias(table->data, table->dtype, table->shape[0], table->shape[1], buckets->data, sq, sk,
                             out->data);
#else
    return no_cuda(op);
#endif
}

int dfm_op_rms_norm(const dfm_tensor *x, const dfm_tensor *w, float eps, dfm_tensor *y)
{
    const char *op = "rms_norm";
#define ARGS "x", x, "w", w, "y", y, NULL
    if (!x || !w || !y) return dfm_fail(DFM_E_ARG, "rms_norm: NULL argument");
    if (x->ndim < 1 || x->dtype != DFM_F32) return bad(op, "x must be F32 [..., D]", ARGS);
    if (!same_shape(x, y) || y->dtype != DFM_F32) return bad(op, "y must be F32 with x's shape", ARGS);
    int64_t d = x->shape[x->ndim - 1], rows = d ? dfm_tensor_numel(x) / d : 0;
    if (w->ndim != 1 || w->shape[0] != d || !is_float(w->dtype)) return bad(op, "w must be a float [D]", ARGS);
    if (w->device != x->device || y->device != x->device) return bad(op, "operands on different devices", ARGS);
    if (x->data != y->data && overlaps(x, y)) return bad(op, "y partly overlaps x", ARGS);
    if (!(eps >= 0.0f)) return bad(op, "eps must be >= 0", ARGS);
#undef ARGS
    if (x->device == DFM_CPU) return dfm_cpu_rms_norm(x->data, rows, d, w->data, w->dtype, eps, y->data);
#ifdef DFM_HAVE_CUDA
    return dfm_cuda_rms_norm(x->data, rows, d, w->data, w->dtype, eps, y->data);
#else
    return no_cuda(op);
#endif
}

int dfm_op_gelu_new(const dfm_tensor *x, dfm_tensor *y)
{
    int rc = check_elt("gelu_new", x, NULL, y);
    if (rc < 0) return rc;
    if (x->device == DFM_CPU) {
        dfm_cpu_gelu_new(x->data, y->data, dfm_tensor_numel(x));
        return 0;
    }
#ifdef DFM_HAVE_CUDA
    return dfm_cuda_gelu_new(x->data, y->data, dfm_tensor_numel(x));
#else
    return no_cuda("gelu_new");
#endif
}

int dfm_op_mul(const dfm_tensor *a, const dfm_tensor *b, dfm_tensor *y)
{
    if (!b) return dfm_fail(DFM_E_ARG, "mul: NULL argument");
    int rc = check_elt("mul", a, b, y);
    if (rc < 0) return rc;
    if (a->device == DFM_CPU) {
        dfm_cpu_mul(a->data, b->data, y->data, dfm_tensor_numel(a));
        return 0;
    }
#ifdef DFM_HAVE_CUDA
    return dfm_cuda_mul(a->data, b->data, y->data, dfm_tensor_numel(a));
#else
    return no_cuda("mul");
#endif
}

int dfm_op_attention_bias(const dfm_tensor *q, const dfm_tensor *k, const dfm_tensor *v,
                          const dfm_tensor *bias, float scale, dfm_tensor *out)
{
    const char *op = "attention_bias";
#define ARGS "q", q, "k", k, "v", v, "bias", bias, "out", out, NULL
    if (!q || !k || !v || !out) return dfm_fail(DFM_E_ARG, "attention_bias: NULL argument");
    if (q->ndim != 3 || k->ndim != 3 || v->ndim != 3 || out->ndim != 3 || q->dtype != DFM_F32 ||
        k->dtype != DFM_F32 || v->dtype != DFM_F32 || out->dtype != DFM_F32)
        return bad(op, "q, k, v, out must be F32 [S, heads, D]", ARGS);
    if (!same_shape(k, v) || k->shape[1] != q->shape[1] || k->shape[2] != q->shape[2])
        return bad(op, "k and v must be [Sk, heads, D] with q's heads and D", ARGS);
    if (!same_shape(q, out)) return bad(op, "out must have q's shape", ARGS);
    int64_t h = q->shape[1], sq = q->shape[0], sk = k->shape[0], d = q->shape[2];
    if (bias && (bias->ndim != 3 || bias->dtype != DFM_F32 || bias->shape[0] != h || bias->shape[1] != sq ||
                 bias->shape[2] != sk))
        return bad(op, "bias must be F32 [heads, Sq, Sk]", ARGS);
    if (k->device != q->device || v->device != q->device || out->device != q->device ||
        (bias && bias->device != q->device))
        return bad(op, "operands on different devices", ARGS);
    if (overlaps(out, q) || overlaps(out, k) || overlaps(out, v) || (bias && overlaps(out, bias)))
        return bad(op, "out overlaps an input", ARGS);
    if (sk == 0 && sq > 0) return bad(op, "no keys", ARGS);
    if (h * d > 0x7fffffff || sq > 0x7fffffff || sk > 0x7fffffff) return bad(op, "dimension past 2^31", ARGS);
#undef ARGS
    const float *bp = bias ? bias->data : NULL;
    if (q->device == DFM_CPU)
        return dfm_cpu_attention_bias(q->data, k->data, v->data, bp, scale, out->data, h, sq, sk, d);
#ifdef DFM_HAVE_CUDA
    return dfm_cuda_attention_bias(q->data, k->data, v->data, bp, scale, out->data, h, sq, sk, d);
#else
    return no_cuda(op);
#endif
}
