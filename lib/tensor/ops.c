/* ops.c — the op set (ops.h) on the op table (op.h): for every op a check of its arguments
 * (shapes, dtypes, devices, aliasing; messages name the op and every operand as
 * "[C,T,H,W] DTYPE device"), a CPU entry calling kernels/cpu/<op>.c, the typed function of
 * ops.h, and at the end the one table (with the CUDA entries of ops_cuda.c in CUDA builds) and
 * the one dispatch. Not here: any arithmetic; the CUDA entries (ops_cuda.c).
 */
#include "tensor/ops.h"
#include "tensor/op.h"
#include "tensor/ops_impl.h"
#include "base/buf.h"
#include "base/error.h"
#include "cpu/adamw.h"
#include "cpu/attention.h"
#include "cpu/bias.h"
#include "cpu/conv3d.h"
#include "cpu/cpu.h"
#include "cpu/dropout.h"
#include "cpu/eltwise.h"
#include "cpu/embedding.h"
#include "cpu/finite.h"
#include "cpu/act.h"
#include "cpu/gated.h"
#include "cpu/layer_norm.h"
#include "cpu/modulate.h"
#include "cpu/patch.h"
#include "cpu/reduce.h"
#include "cpu/rope.h"
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
#include "cuda/ops_cuda.h" /* dfm_cuda_release_scratch; the entries are in ops_cuda.c */
#endif

void dfm_ops_set_threads(int n) { dfm_cpu_set_threads(n); }
int dfm_ops_threads(void) { return dfm_cpu_threads(); }
void dfm_ops_release_scratch(void)
{
    dfm_cpu_scratch_release_all();
    dfm_tensor_cache_release();
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


/* t: F32 with ref's shape on ref's device (NULL passes when optional). */
static int like(const dfm_tensor *t, const dfm_tensor *ref, int optional)
{
    if (!t) return optional;
    return t->dtype == DFM_F32 && same_shape(t, ref) && t->device == ref->device;
}
/* v: F32 [n] (any trailing-1 shape not allowed) on dev, or NULL when optional. */
static int vec(const dfm_tensor *v, int64_t n, dfm_device dev, int optional)
{
    if (!v) return optional;
    return v->ndim == 1 && v->shape[0] == n && v->dtype == DFM_F32 && v->device == dev;
}
/* a parameter vector: float [n] on dev, or NULL when optional */
static int param(const dfm_tensor *v, int64_t n, dfm_device dev, int optional)
{
    if (!v) return optional;
    return v->ndim == 1 && v->shape[0] == n && is_float(v->dtype) && v->device == dev;
}


/* ---- conv3d -------------------------------------------------------------------------------- */

static int check_conv3d(const dfm_op_args *a)
{
    const char *op = "conv3d";
    const dfm_tensor *x = a->src[0], *w = a->src[1], *b = a->src[2], *y = a->dst[0];
    const int64_t *stride = a->i, *pad = a->i + 3;
#define ARGS "x", x, "w", w, "b", b, "y", y, NULL
    if (!x || !w || !y) return dfm_fail(DFM_E_ARG, "conv3d: NULL argument");
    if (x->ndim != 4 || x->dtype != DFM_F32) return bad(op, "x must be F32 [Cin, T, H, W]", ARGS);
    if (w->ndim != 5 || !is_float(w->dtype)) return bad(op, "w must be F32/BF16/F16 [Cout, Cin, kt, kh, kw]", ARGS);
    if (w->shape[1] != x->shape[0]) return bad(op, "w's Cin differs from x's channels", ARGS);
    if (b && (!is_channel_vec(b, w->shape[0]) || !is_float(b->dtype))) return bad(op, "b must be a float [Cout]", ARGS);
    for (int i = 0; i < 3; i++)
        if (stride[i] < 1 || stride[i] > (1 << 20) || w->shape[2 + i] < 1 || w->shape[2 + i] > (1 << 20))
            return bad(op, "strides and kernel sizes must be >= 1", ARGS);
    for (int i = 0; i < 6; i++)
        if (pad[i] < 0 || pad[i] > (1 << 20)) return bad(op, "negative padding", ARGS);
    int64_t out[3];
    for (int i = 0; i < 3; i++) {
        int64_t span = x->shape[1 + i] + pad[2 * i] + pad[2 * i + 1] - w->shape[2 + i];
        if (span < 0) return bad(op, "kernel larger than the padded input", ARGS);
        out[i] = span / stride[i] + 1;
    }
    if (y->ndim != 4 || y->dtype != DFM_F32 || y->shape[0] != w->shape[0] || y->shape[1] != out[0] ||
        y->shape[2] != out[1] || y->shape[3] != out[2]) {
        char why[200];
        snprintf(why, sizeof why, "y must be F32 [%lld,%lld,%lld,%lld] (stride %d,%d,%d pad %d,%d,%d,%d,%d,%d)",
                 (long long)w->shape[0], (long long)out[0], (long long)out[1], (long long)out[2], (int)stride[0],
                 (int)stride[1], (int)stride[2], (int)pad[0], (int)pad[1], (int)pad[2], (int)pad[3], (int)pad[4],
                 (int)pad[5]);
        return bad(op, why, ARGS);
    }
    if (w->device != x->device || y->device != x->device || (b && b->device != x->device))
        return bad(op, "operands on different devices", ARGS);
    if (overlaps(x, y)) return bad(op, "y overlaps x", ARGS);
#undef ARGS
    return 0;
}

/* The int parameters of a conv3d call. */
void dfm_ops_conv3d_params(const dfm_op_args *a, int stride[3], int pad[6])
{
    for (int i = 0; i < 3; i++) stride[i] = (int)a->i[i];
    for (int i = 0; i < 6; i++) pad[i] = (int)a->i[3 + i];
}

static int cpu_conv3d(dfm_op_args *a)
{
    const dfm_tensor *x = a->src[0], *w = a->src[1], *b = a->src[2];
    int stride[3], pad[6];
    dfm_ops_conv3d_params(a, stride, pad);
    return dfm_cpu_conv3d(x->data, x->shape[0], x->shape[1], x->shape[2], x->shape[3], w->data, w->dtype,
                          w->shape[0], (int)w->shape[2], (int)w->shape[3], (int)w->shape[4], ptr(b), dt_or_f32(b),
                          a->dst[0]->data, stride, pad, bf16(a));
}

int dfm_op_conv3d(const dfm_compute *cc, const dfm_tensor *x, const dfm_tensor *w, const dfm_tensor *b,
                  dfm_tensor *y, const int stride[3], const int pad[6])
{
    if (!stride || !pad) return dfm_fail(DFM_E_ARG, "conv3d: NULL argument");
    dfm_op_args a = {.src = {x, w, b}, .dst = {y}, .cc = cc};
    for (int i = 0; i < 3; i++) a.i[i] = stride[i];
    for (int i = 0; i < 6; i++) a.i[3 + i] = pad[i];
    return dfm_op_run(DFM_OP_CONV3D, &a);
}

/* ---- channel rms norm ------------------------------------------------------------------------ */

static int check_rms_norm_channels(const dfm_op_args *a)
{
    const char *op = "rms_norm_channels";
    const dfm_tensor *x = a->src[0], *gamma = a->src[1], *bias = a->src[2], *y = a->dst[0];
#define ARGS "x", x, "gamma", gamma, "bias", bias, "y", y, NULL
    if (!x || !gamma || !y) return dfm_fail(DFM_E_ARG, "rms_norm_channels: NULL argument");
    if (x->ndim < 1 || x->dtype != DFM_F32) return bad(op, "x must be F32 [C, ...]", ARGS);
    if (!same_shape(x, y) || y->dtype != DFM_F32) return bad(op, "y must be F32 with x's shape", ARGS);
    int64_t c = x->shape[0];
    if (!is_channel_vec(gamma, c) || !is_float(gamma->dtype)) return bad(op, "gamma must be a float [C]", ARGS);
    if (bias && (!is_channel_vec(bias, c) || !is_float(bias->dtype))) return bad(op, "bias must be a float [C]", ARGS);
    if (gamma->device != x->device || y->device != x->device || (bias && bias->device != x->device))
        return bad(op, "operands on different devices", ARGS);
    if (x->data != y->data && overlaps(x, y)) return bad(op, "y partly overlaps x", ARGS);
#undef ARGS
    return 0;
}

/* [C, ...] as C rows of n */

static int cpu_rms_norm_channels(dfm_op_args *a)
{
    const dfm_tensor *x = a->src[0], *g = a->src[1], *b = a->src[2];
    return dfm_cpu_rms_norm_channels(x->data, x->shape[0], per_channel(x), g->data, g->dtype, ptr(b), dt_or_f32(b),
                                     a->dst[0]->data);
}

int dfm_op_rms_norm_channels(const dfm_tensor *x, const dfm_tensor *gamma, const dfm_tensor *bias, dfm_tensor *y)
{
    dfm_op_args a = {.src = {x, gamma, bias}, .dst = {y}};
    return dfm_op_run(DFM_OP_RMS_NORM_CHANNELS, &a);
}

/* ---- elementwise ----------------------------------------------------------------------------- */

/* x (and a second input) and y: F32, same shape, same device; y is x or does not overlap it. */
static int check_elt(const char *op, const dfm_tensor *x, const dfm_tensor *b, const dfm_tensor *y, int binary)
{
    if (!x || !y || (binary && !b)) return dfm_fail(DFM_E_ARG, "%s: NULL argument", op);
#define ARGS "x", x, "x2", b, "y", y, NULL
    if (x->dtype != DFM_F32 || y->dtype != DFM_F32 || (b && b->dtype != DFM_F32))
        return bad(op, "operands must be F32", ARGS);
    if (!same_shape(x, y) || (b && !same_shape(x, b))) return bad(op, "shapes differ", ARGS);
    if (y->device != x->device || (b && b->device != x->device)) return bad(op, "operands on different devices", ARGS);
    if ((x->data != y->data && overlaps(x, y)) || (b && b->data != y->data && overlaps(b, y)))
        return bad(op, "y partly overlaps an input", ARGS);
#undef ARGS
    return 0;
}

static int check_silu(const dfm_op_args *a) { return check_elt("silu", a->src[0], NULL, a->dst[0], 0); }
static int check_add(const dfm_op_args *a) { return check_elt("add", a->src[0], a->src[1], a->dst[0], 1); }
static int check_mul(const dfm_op_args *a) { return check_elt("mul", a->src[0], a->src[1], a->dst[0], 1); }
static int check_gelu_new(const dfm_op_args *a) { return check_elt("gelu_new", a->src[0], NULL, a->dst[0], 0); }
static int check_affine(const dfm_op_args *a) { return check_elt("affine", a->src[0], NULL, a->dst[0], 0); }
static int check_clamp(const dfm_op_args *a)
{
    int rc = check_elt("clamp", a->src[0], NULL, a->dst[0], 0);
    if (rc < 0) return rc;
    if (!(a->f[0] <= a->f[1])) return dfm_fail(DFM_E_ARG, "clamp: lo %g > hi %g", a->f[0], a->f[1]);
    return 0;
}

static int cpu_silu(dfm_op_args *a) { return dfm_cpu_silu(X0, Y0, N0), 0; }
static int cpu_add(dfm_op_args *a) { return dfm_cpu_add(X0, X1, Y0, N0), 0; }
static int cpu_mul(dfm_op_args *a) { return dfm_cpu_mul(X0, X1, Y0, N0), 0; }
static int cpu_gelu_new(dfm_op_args *a) { return dfm_cpu_gelu_new(X0, Y0, N0), 0; }
static int cpu_clamp(dfm_op_args *a) { return dfm_cpu_clamp(X0, a->f[0], a->f[1], Y0, N0), 0; }
static int cpu_affine(dfm_op_args *a) { return dfm_cpu_affine(X0, a->f[0], a->f[1], Y0, N0), 0; }

static int unary(dfm_op_id id, const dfm_tensor *x, dfm_tensor *y, float f0, float f1)
{
    dfm_op_args a = {.src = {x}, .dst = {y}, .f = {f0, f1}};
    return dfm_op_run(id, &a);
}
static int binary(dfm_op_id id, const dfm_tensor *x, const dfm_tensor *x2, dfm_tensor *y)
{
    dfm_op_args a = {.src = {x, x2}, .dst = {y}};
    return dfm_op_run(id, &a);
}
int dfm_op_silu(const dfm_tensor *x, dfm_tensor *y) { return unary(DFM_OP_SILU, x, y, 0, 0); }
int dfm_op_gelu_new(const dfm_tensor *x, dfm_tensor *y) { return unary(DFM_OP_GELU_NEW, x, y, 0, 0); }
int dfm_op_clamp(const dfm_tensor *x, float lo, float hi, dfm_tensor *y) { return unary(DFM_OP_CLAMP, x, y, lo, hi); }
int dfm_op_affine(const dfm_tensor *x, float scale, float shift, dfm_tensor *y)
{
    return unary(DFM_OP_AFFINE, x, y, scale, shift);
}
int dfm_op_add(const dfm_tensor *a, const dfm_tensor *b, dfm_tensor *y) { return binary(DFM_OP_ADD, a, b, y); }
int dfm_op_mul(const dfm_tensor *a, const dfm_tensor *b, dfm_tensor *y) { return binary(DFM_OP_MUL, a, b, y); }

/* ---- matmul -------------------------------------------------------------------------------- */

static int check_matmul(const dfm_op_args *ar)
{
    const char *op = "matmul";
    const dfm_tensor *a = ar->src[0], *b = ar->src[1], *bias = ar->src[2], *y = ar->dst[0];
    int ta = ar->i[0] != 0, tb = ar->i[1] != 0;
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
    return 0;
}

/* m, n, k of a checked matmul */
void dfm_ops_matmul_dims(const dfm_op_args *ar, int64_t *m, int64_t *n, int64_t *k)
{
    const dfm_tensor *a = ar->src[0], *b = ar->src[1];
    *m = ar->i[0] ? a->shape[1] : a->shape[0], *k = ar->i[0] ? a->shape[0] : a->shape[1];
    *n = ar->i[1] ? b->shape[0] : b->shape[1];
}

static int cpu_matmul(dfm_op_args *ar)
{
    int64_t m, n, k;
    dfm_ops_matmul_dims(ar, &m, &n, &k);
    const dfm_tensor *b = ar->src[1], *bias = ar->src[2];
    return dfm_cpu_matmul(ar->src[0]->data, ar->i[0] != 0, b->data, b->dtype, ar->i[1] != 0, ptr(bias),
                          dt_or_f32(bias), ar->f[0], ar->dst[0]->data, m, n, k, bf16(ar));
}

int dfm_op_matmul(const dfm_compute *cc, const dfm_tensor *a, int ta, const dfm_tensor *b, int tb,
                  const dfm_tensor *bias, float beta, dfm_tensor *y)
{
    dfm_op_args ar = {.src = {a, b, bias}, .dst = {y}, .i = {ta != 0, tb != 0}, .f = {beta}, .cc = cc};
    return dfm_op_run(DFM_OP_MATMUL, &ar);
}

/* ---- linear (packed weights) ---------------------------------------------------------------- */


void dfm_packed_free(dfm_packed *l)
{
    if (!l) return;
    for (int i = 0; i < l->nw; i++) {
        free(l->packed[i]);
        dfm_tensor_free(&l->dev[i]);
    }
    free(l);
}

size_t dfm_packed_nbytes(const dfm_packed *l) { return l ? l->nbytes : 0; }

int dfm_packed_create(dfm_packed **out, const dfm_tensor *const *w, int nw, dfm_dtype dt, dfm_device dev)
{
    const char *op = "linear_create";
    *out = NULL;
    if (!w || nw < 1 || nw > DFM_PACKED_MAX)
        return dfm_fail(DFM_E_ARG, "%s: %d weights (1 to %d)", op, nw, DFM_PACKED_MAX);
    if (dt != DFM_F32 && dt != DFM_BF16) return dfm_fail(DFM_E_ARG, "%s: store as %s (F32 or BF16)", op, dfm_dtype_name(dt));
    for (int i = 0; i < nw; i++) {
        if (!w[i]) return dfm_fail(DFM_E_ARG, "%s: NULL weight", op);
        if (w[i]->ndim != 2 || !is_float(w[i]->dtype) || w[i]->device != DFM_CPU)
            return bad(op, "weights must be float 2-D [n, k] on the CPU", "w", w[i], NULL);
        if (w[i]->shape[1] != w[0]->shape[1]) return bad(op, "weights must share k", "w0", w[0], "w", w[i], NULL);
        if (w[i]->shape[0] > 0x7fffffff || w[i]->shape[1] > 0x7fffffff) return bad(op, "dimension past 2^31", "w", w[i], NULL);
    }
    if (dev != DFM_CPU && !dfm_device_available(dev)) return DFM_E_UNSUPPORTED;
    dfm_packed *l = dfm_calloc(1, sizeof *l);
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
        dfm_packed_free(l);
        return rc;
    }
    *out = l;
    return 0;
}

static int check_linear(const dfm_op_args *a)
{
    const char *op = "linear";
    const dfm_tensor *x = a->src[0];
    const dfm_packed *l = a->p;
    if (!x || !l) return dfm_fail(DFM_E_ARG, "linear: NULL argument");
    if (x->ndim != 2 || x->dtype != DFM_F32 || x->shape[1] != l->k || x->device != l->device) {
        char why[96];
        snprintf(why, sizeof why, "x must be F32 [m, %lld] on the weights' device", (long long)l->k);
        return bad(op, why, "x", x, NULL);
    }
    if (x->shape[0] > 0x7fffffff) return bad(op, "dimension past 2^31", "x", x, NULL);
    for (int i = 0; i < l->nw; i++) {
        const dfm_tensor *y = a->dst[i];
        if (!y) return dfm_fail(DFM_E_ARG, "linear: NULL output %d", i);
        if (y->ndim != 2 || y->dtype != DFM_F32 || y->shape[0] != x->shape[0] || y->shape[1] != l->n[i] ||
            y->device != l->device) {
            char why[96];
            snprintf(why, sizeof why, "output %d must be F32 [m, %lld] on the weights' device", i, (long long)l->n[i]);
            return bad(op, why, "x", x, "y", y, NULL);
        }
        if (overlaps(x, y)) return bad(op, "an output overlaps x", "x", x, "y", y, NULL);
        for (int j = 0; j < i; j++)
            if (overlaps(a->dst[j], y)) return bad(op, "outputs overlap", "y", a->dst[j], "y", y, NULL);
        const dfm_tensor *b = a->src[1 + i];
        if (b && (b->ndim != 1 || b->dtype != DFM_F32 || b->shape[0] != l->n[i] || b->device != l->device)) {
            char why[96];
            snprintf(why, sizeof why, "bias %d must be F32 [%lld] on the weights' device", i, (long long)l->n[i]);
            return bad(op, why, "bias", b, NULL);
        }
        if (b && overlaps(b, y)) return bad(op, "a bias overlaps an output", "bias", b, "y", y, NULL);
    }
    return 0;
}

static int cpu_linear(dfm_op_args *a)
{
    const dfm_packed *l = a->p;
    dfm_cpu_linear_seg seg[DFM_PACKED_MAX];
    for (int i = 0; i < l->nw; i++)
        seg[i] = (dfm_cpu_linear_seg){l->packed[i], l->n[i], a->dst[i]->data, l->n[i], ptr(a->src[1 + i])};
    return dfm_cpu_linear(a->src[0]->data, a->src[0]->shape[0], l->k, l->dtype, seg, l->nw, (int)a->i[0], bf16(a));
}

int dfm_op_linear_bias(const dfm_compute *cc, const dfm_tensor *x, const dfm_packed *l, dfm_tensor *const *y,
                       const dfm_tensor *const *bias, int accumulate)
{
    if (!y || !l) return dfm_fail(DFM_E_ARG, "linear: NULL argument");
    dfm_op_args a = {.src = {x}, .p = l, .i = {accumulate != 0}, .cc = cc};
    for (int i = 0; i < l->nw; i++) a.dst[i] = y[i], a.src[1 + i] = bias ? bias[i] : NULL;
    return dfm_op_run(DFM_OP_LINEAR, &a);
}

int dfm_op_linear(const dfm_compute *cc, const dfm_tensor *x, const dfm_packed *l, dfm_tensor *const *y,
                  int accumulate)
{
    return dfm_op_linear_bias(cc, x, l, y, NULL, accumulate);
}

/* ---- attention: one op for both layouts, forward and backward ------------------------------- */

/* The [batch, head, row] element strides of a q/k/v/out tensor in `layout` (0 head-major
 * [B, H, S, D] or [H, S, D]; 1 token-major [B, S, H, D] or [S, H, D]), and its sizes. */
static void attn_dims(const dfm_tensor *t, int layout, int64_t *b, int64_t *h, int64_t *s, int64_t *d, int64_t st[3])
{
    int o = t->ndim == 4;
    *b = o ? t->shape[0] : 1;
    *d = t->shape[2 + o];
    if (layout == 0) {
        *h = t->shape[o], *s = t->shape[1 + o];
        st[0] = *h * *s * *d, st[1] = *s * *d, st[2] = *d;
    } else {
        *s = t->shape[o], *h = t->shape[1 + o];
        st[0] = *s * *h * *d, st[1] = *d, st[2] = *h * *d;
    }
}

/* q, k, v, bias, out, lse of an attention call, checked; fills the kernel's argument record. */
static int attn_check(const char *op, const dfm_tensor *q, const dfm_tensor *k, const dfm_tensor *v,
                      const dfm_tensor *bias, const dfm_tensor *out, const dfm_tensor *lse, int64_t layout)
{
#define ARGS "q", q, "k", k, "v", v, "bias", bias, "out", out, "lse", lse, NULL
    if (!q || !k || !v || !out) return dfm_fail(DFM_E_ARG, "%s: NULL argument", op);
    if (layout != 0 && layout != 1) return bad(op, "layout must be 0 (head-major) or 1 (token-major)", ARGS);
    const char *shape = layout ? "q, k, v, out must be F32 [B, S, heads, D] or [S, heads, D]"
                               : "q, k, v, out must be F32 [B, heads, S, D] or [heads, S, D]";
    if (q->ndim < 3 || q->ndim > 4 || k->ndim != q->ndim || v->ndim != q->ndim || out->ndim != q->ndim ||
        q->dtype != DFM_F32 || k->dtype != DFM_F32 || v->dtype != DFM_F32 || out->dtype != DFM_F32)
        return bad(op, shape, ARGS);
    int64_t b, h, sq, d, bk, hk, sk, dk, st[3];
    attn_dims(q, (int)layout, &b, &h, &sq, &d, st);
    attn_dims(k, (int)layout, &bk, &hk, &sk, &dk, st);
    if (!same_shape(k, v) || bk != b || hk != h || dk != d)
        return bad(op, "k and v must have q's batch, heads and D (and one shape)", ARGS);
    if (!same_shape(q, out)) return bad(op, "out must have q's shape", ARGS);
    if (bias && (bias->ndim != 3 || bias->dtype != DFM_F32 || bias->shape[0] != h || bias->shape[1] != sq ||
                 bias->shape[2] != sk))
        return bad(op, "bias must be F32 [heads, Sq, Sk]", ARGS);
    if (lse && (lse->dtype != DFM_F32 || dfm_tensor_numel(lse) != b * h * sq))
        return bad(op, "lse must be F32 with B * heads * Sq elements", ARGS);
    if (k->device != q->device || v->device != q->device || out->device != q->device ||
        (bias && bias->device != q->device) || (lse && lse->device != q->device))
        return bad(op, "operands on different devices", ARGS);
    if (overlaps(out, q) || overlaps(out, k) || overlaps(out, v) || (bias && overlaps(out, bias)) ||
        (lse && (overlaps(lse, out) || overlaps(lse, q) || overlaps(lse, k) || overlaps(lse, v))))
        return bad(op, "out or lse overlaps an input", ARGS);
    if (sk == 0 && sq > 0) return bad(op, "no keys", ARGS);
    if (h * d > 0x7fffffff || sq > 0x7fffffff || sk > 0x7fffffff) return bad(op, "dimension past 2^31", ARGS);
#undef ARGS
    return 0;
}

static int check_attention(const dfm_op_args *a)
{
    return attn_check("attention", a->src[0], a->src[1], a->src[2], a->src[3], a->dst[0], a->dst[1], a->i[0]);
}

/* The kernel's record for checked operands. */
dfm_attn_args dfm_ops_attn_args(const dfm_tensor *q, const dfm_tensor *k, const dfm_tensor *v, const dfm_tensor *bias,
                               const dfm_tensor *out, const dfm_tensor *lse, float scale, int layout)
{
    dfm_attn_args r = {0};
    int64_t sk, d;
    attn_dims(q, layout, &r.batch, &r.heads, &r.sq, &r.d, r.qs);
    attn_dims(k, layout, &r.batch, &r.heads, &sk, &d, r.ks);
    attn_dims(v, layout, &r.batch, &r.heads, &sk, &d, r.vs);
    attn_dims(out, layout, &r.batch, &r.heads, &r.sq, &r.d, r.os);
    r.sk = sk;
    r.q = q->data, r.k = k->data, r.v = v->data, r.out = out->data;
    r.bias = bias ? bias->data : NULL;
    r.lse = lse ? lse->data : NULL;
    r.scale = scale;
    return r;
}

static int cpu_attention(dfm_op_args *a)
{
    dfm_attn_args r = dfm_ops_attn_args(a->src[0], a->src[1], a->src[2], a->src[3], a->dst[0], a->dst[1], a->f[0], (int)a->i[0]);
    r.bf16 = bf16(a);
    return dfm_cpu_attention_fwd(&r);
}

static int check_attention_bwd(const dfm_op_args *a)
{
    const char *op = "attention_bwd";
    const dfm_tensor *q = a->src[0], *k = a->src[1], *v = a->src[2], *out = a->src[4], *lse = a->src[5],
                     *dout = a->src[6], *dq = a->dst[0], *dk = a->dst[1], *dv = a->dst[2];
    if (!lse || !dout || !dq || !dk || !dv) return dfm_fail(DFM_E_ARG, "attention_bwd: NULL argument");
    int rc = attn_check(op, q, k, v, a->src[3], out, lse, a->i[0]);
    if (rc) return rc;
    if (!like(dout, out, 0) || !like(dq, q, 0) || !like(dk, k, 0) || !like(dv, v, 0))
        return bad(op, "dout must be like out, dq, dk, dv like q, k, v", "dout", dout, "dq", dq, "dk", dk, "dv", dv, NULL);
    const dfm_tensor *outs[3] = {dq, dk, dv}, *ins[6] = {q, k, v, out, lse, dout};
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 6; j++)
            if (overlaps(outs[i], ins[j])) return bad(op, "a gradient overlaps an input", "grad", outs[i], NULL);
        for (int j = 0; j < i; j++)
            if (overlaps(outs[i], outs[j])) return bad(op, "gradients overlap", "grad", outs[i], NULL);
    }
    return 0;
}

static int cpu_attention_bwd(dfm_op_args *a)
{
    dfm_attn_args r = dfm_ops_attn_args(a->src[0], a->src[1], a->src[2], a->src[3], a->src[4], a->src[5], a->f[0], (int)a->i[0]);
    r.bf16 = bf16(a);
    return dfm_cpu_attention_bwd(&r, a->src[6]->data, a->dst[0]->data, a->dst[1]->data, a->dst[2]->data);
}

int dfm_op_sdpa(const dfm_compute *cc, const dfm_tensor *q, const dfm_tensor *k, const dfm_tensor *v,
                const dfm_tensor *bias, float scale, int layout, dfm_tensor *out, dfm_tensor *lse)
{
    dfm_op_args a = {.src = {q, k, v, bias}, .dst = {out, lse}, .f = {scale}, .i = {layout}, .cc = cc};
    return dfm_op_run(DFM_OP_ATTENTION, &a);
}

int dfm_op_sdpa_bwd(const dfm_compute *cc, const dfm_tensor *q, const dfm_tensor *k, const dfm_tensor *v,
                    const dfm_tensor *bias, float scale, int layout, const dfm_tensor *out, const dfm_tensor *lse,
                    const dfm_tensor *dout, dfm_tensor *dq, dfm_tensor *dk, dfm_tensor *dv)
{
    dfm_op_args a = {.src = {q, k, v, bias, out, lse, dout}, .dst = {dq, dk, dv}, .f = {scale}, .i = {layout}, .cc = cc};
    return dfm_op_run(DFM_OP_ATTENTION_BWD, &a);
}

int dfm_op_attention(const dfm_tensor *q, const dfm_tensor *k, const dfm_tensor *v, float scale, dfm_tensor *out)
{
    return dfm_op_sdpa(NULL, q, k, v, NULL, scale, 0, out, NULL);
}

int dfm_op_attention_bias(const dfm_tensor *q, const dfm_tensor *k, const dfm_tensor *v, const dfm_tensor *bias,
                          float scale, dfm_tensor *out)
{
    return dfm_op_sdpa(NULL, q, k, v, bias, scale, 1, out, NULL);
}

/* ---- text encoders: gathers and the row norm ------------------------------------------------ */

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

static int check_embedding(const dfm_op_args *a)
{
    const char *op = "embedding";
    const dfm_tensor *table = a->src[0], *ids = a->src[1], *out = a->dst[0];
#define ARGS "table", table, "ids", ids, "out", out, NULL
    if (!table || !ids || !out) return dfm_fail(DFM_E_ARG, "embedding: NULL argument");
    if (table->ndim != 2 || !is_float(table->dtype)) return bad(op, "table must be F32/BF16/F16 [V, D]", ARGS);
    if (ids->ndim != 1 || ids->dtype != DFM_I32 || ids->device != DFM_CPU) return bad(op, "ids must be I32 [n] on the CPU", ARGS);
    if (out->ndim != 2 || out->dtype != DFM_F32 || out->shape[0] != ids->shape[0] || out->shape[1] != table->shape[1])
        return bad(op, "out must be F32 [n, D]", ARGS);
    if (out->device != table->device) return bad(op, "table and out on different devices", ARGS);
    if (overlaps(table, out)) return bad(op, "out overlaps table", ARGS);
#undef ARGS
    return check_index(op, "id", ids, ids->shape[0], table->shape[0], "the table's rows");
}

static int cpu_embedding(dfm_op_args *a)
{
    const dfm_tensor *t = a->src[0];
    return dfm_cpu_embedding(t->data, t->dtype, t->shape[1], a->src[1]->data, a->src[1]->shape[0], a->dst[0]->data);
}

int dfm_op_embedding(const dfm_tensor *table, const dfm_tensor *ids, dfm_tensor *out)
{
    dfm_op_args a = {.src = {table, ids}, .dst = {out}};
    return dfm_op_run(DFM_OP_EMBEDDING, &a);
}

static int check_rel_bias(const dfm_op_args *a)
{
    const char *op = "rel_bias";
    const dfm_tensor *table = a->src[0], *buckets = a->src[1], *out = a->dst[0];
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
    return check_index(op, "bucket", buckets, nr, table->shape[0], "the table's buckets");
}

static int cpu_rel_bias(dfm_op_args *a)
{
    const dfm_tensor *t = a->src[0], *o = a->dst[0];
    return dfm_cpu_rel_bias(t->data, t->dtype, t->shape[0], t->shape[1], a->src[1]->data, o->shape[1], o->shape[2],
                            o->data);
}

int dfm_op_rel_bias(const dfm_tensor *table, const dfm_tensor *buckets, dfm_tensor *out)
{
    dfm_op_args a = {.src = {table, buckets}, .dst = {out}};
    return dfm_op_run(DFM_OP_REL_BIAS, &a);
}

static int check_rms_norm(const dfm_op_args *a)
{
    const char *op = "rms_norm";
    const dfm_tensor *x = a->src[0], *w = a->src[1], *y = a->dst[0];
#define ARGS "x", x, "w", w, "y", y, NULL
    if (!x || !w || !y) return dfm_fail(DFM_E_ARG, "rms_norm: NULL argument");
    if (x->ndim < 1 || x->dtype != DFM_F32) return bad(op, "x must be F32 [..., D]", ARGS);
    if (!same_shape(x, y) || y->dtype != DFM_F32) return bad(op, "y must be F32 with x's shape", ARGS);
    int64_t d = x->shape[x->ndim - 1];
    if (w->ndim != 1 || w->shape[0] != d || !is_float(w->dtype)) return bad(op, "w must be a float [D]", ARGS);
    if (w->device != x->device || y->device != x->device) return bad(op, "operands on different devices", ARGS);
    if (x->data != y->data && overlaps(x, y)) return bad(op, "y partly overlaps x", ARGS);
    if (!(a->f[0] >= 0.0f)) return bad(op, "eps must be >= 0", ARGS);
    if (a->dst[1] && (a->dst[1]->ndim != 1 || a->dst[1]->shape[0] != (d ? dfm_tensor_numel(x) / d : 0) ||
                      a->dst[1]->dtype != DFM_F32 || a->dst[1]->device != x->device))
        return bad(op, "inv must be F32 [rows]", ARGS);
#undef ARGS
    return 0;
}

/* [..., D] as rows of D */

static int cpu_rms_norm(dfm_op_args *a)
{
    const dfm_tensor *x = a->src[0], *w = a->src[1];
    if (a->dst[1])
        return dfm_cpu_rms_norm_save(x->data, rows_of(x), last_dim(x), w->data, w->dtype, a->f[0], a->dst[0]->data,
                                     a->dst[1]->data);
    return dfm_cpu_rms_norm(x->data, rows_of(x), last_dim(x), w->data, w->dtype, a->f[0], a->dst[0]->data);
}

int dfm_op_rms_norm(const dfm_tensor *x, const dfm_tensor *w, float eps, dfm_tensor *y)
{
    dfm_op_args a = {.src = {x, w}, .dst = {y}, .f = {eps}};
    return dfm_op_run(DFM_OP_RMS_NORM, &a);
}

/* ---- data movement ------------------------------------------------------------------------- */

static int elem_ok(const dfm_tensor *t)
{
    size_t s = dfm_dtype_size(t->dtype);
    return s == 1 || s == 2 || s == 4 || s == 8;
}

static int check_transpose2d(const dfm_op_args *a)
{
    const char *op = "transpose2d";
    const dfm_tensor *x = a->src[0], *y = a->dst[0];
#define ARGS "x", x, "y", y, NULL
    if (!x || !y) return dfm_fail(DFM_E_ARG, "transpose2d: NULL argument");
    if (x->ndim != 2 || y->ndim != 2 || x->dtype != y->dtype || !elem_ok(x))
        return bad(op, "x and y must be 2-D of one dtype", ARGS);
    if (y->shape[0] != x->shape[1] || y->shape[1] != x->shape[0]) return bad(op, "y must be [C, R] for x [R, C]", ARGS);
    if (y->device != x->device) return bad(op, "operands on different devices", ARGS);
    if (overlaps(x, y)) return bad(op, "y overlaps x", ARGS);
#undef ARGS
    return 0;
}

static int cpu_transpose2d(dfm_op_args *a)
{
    const dfm_tensor *x = a->src[0];
    dfm_cpu_transpose2d(x->data, a->dst[0]->data, x->shape[0], x->shape[1], esize(x));
    return 0;
}

int dfm_op_transpose2d(const dfm_tensor *x, dfm_tensor *y)
{
    dfm_op_args a = {.src = {x}, .dst = {y}};
    return dfm_op_run(DFM_OP_TRANSPOSE2D, &a);
}

static int check_upsample_nearest2x(const dfm_op_args *a)
{
    const char *op = "upsample_nearest2x";
    const dfm_tensor *x = a->src[0], *y = a->dst[0];
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
    return 0;
}

static int cpu_upsample_nearest2x(dfm_op_args *a)
{
    const dfm_tensor *x = a->src[0];
    dfm_cpu_upsample_nearest2x(x->data, a->dst[0]->data, x->shape[0], x->shape[1], x->shape[2], x->shape[3], esize(x));
    return 0;
}

int dfm_op_upsample_nearest2x(const dfm_tensor *x, dfm_tensor *y)
{
    dfm_op_args a = {.src = {x}, .dst = {y}};
    return dfm_op_run(DFM_OP_UPSAMPLE_NEAREST2X, &a);
}

static int check_concat(const dfm_op_args *ar)
{
    const char *op = "concat";
    const dfm_tensor *a = ar->src[0], *b = ar->src[1], *y = ar->dst[0];
    int64_t dim = ar->i[0];
#define ARGS "a", a, "b", b, "y", y, NULL
    if (!a || !b || !y) return dfm_fail(DFM_E_ARG, "concat: NULL argument");
    if (a->ndim < 1 || b->ndim != a->ndim || y->ndim != a->ndim || a->dtype != b->dtype || y->dtype != a->dtype)
        return bad(op, "a, b and y must have one rank and one dtype", ARGS);
    int64_t d = dim < 0 ? dim + a->ndim : dim;
    if (d < 0 || d >= a->ndim) {
        char why[64];
        snprintf(why, sizeof why, "dimension %lld out of range", (long long)dim);
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
    return 0;
}

/* A checked concat as outer blocks of na and nb elements. */
void dfm_ops_concat_blocks(const dfm_op_args *ar, int64_t *outer, int64_t *na, int64_t *nb)
{
    const dfm_tensor *a = ar->src[0], *b = ar->src[1];
    int d = (int)(ar->i[0] < 0 ? ar->i[0] + a->ndim : ar->i[0]);
    int64_t o = 1, inner = 1;
    for (int i = 0; i < d; i++) o *= a->shape[i];
    for (int i = d + 1; i < a->ndim; i++) inner *= a->shape[i];
    *outer = o, *na = a->shape[d] * inner, *nb = b->shape[d] * inner;
}

static int cpu_concat(dfm_op_args *ar)
{
    int64_t outer, na, nb, es = esize(ar->src[0]);
    dfm_ops_concat_blocks(ar, &outer, &na, &nb);
    size_t ys = (size_t)((na + nb) * es);
    char *y = ar->dst[0]->data;
    dfm_cpu_copy_blocks(y, ys, ar->src[0]->data, (size_t)(na * es), (size_t)(na * es), outer);
    dfm_cpu_copy_blocks(y + na * es, ys, ar->src[1]->data, (size_t)(nb * es), (size_t)(nb * es), outer);
    return 0;
}

int dfm_op_concat(const dfm_tensor *a, const dfm_tensor *b, int dim, dfm_tensor *y)
{
    dfm_op_args ar = {.src = {a, b}, .dst = {y}, .i = {dim}};
    return dfm_op_run(DFM_OP_CONCAT, &ar);
}

static int check_frames(const dfm_op_args *a)
{
    const char *op = "frames";
    const dfm_tensor *x = a->src[0], *y = a->dst[0];
#define ARGS "x", x, "y", y, NULL
    if (!x || !y) return dfm_fail(DFM_E_ARG, "frames: NULL argument");
    if (x->ndim != 4 || y->ndim != 4 || x->dtype != y->dtype) return bad(op, "x and y must be [C, T, H, W] of one dtype", ARGS);
    int64_t t0 = a->i[0], n = y->shape[1];
    if (t0 < 0 || t0 + n > x->shape[1]) {
        char why[96];
        snprintf(why, sizeof why, "frames [%lld, %lld) outside x", (long long)t0, (long long)(t0 + n));
        return bad(op, why, ARGS);
    }
    if (y->shape[0] != x->shape[0] || y->shape[2] != x->shape[2] || y->shape[3] != x->shape[3])
        return bad(op, "y must be [C, n, H, W]", ARGS);
    if (y->device != x->device) return bad(op, "operands on different devices", ARGS);
    if (overlaps(x, y)) return bad(op, "y overlaps x", ARGS);
#undef ARGS
    return 0;
}

/* A frame range of [C, T, H, W] as C blocks: bytes per frame. */

static int cpu_frames(dfm_op_args *a)
{
    const dfm_tensor *x = a->src[0], *y = a->dst[0];
    size_t fr = frame_bytes(x), xs = fr * (size_t)x->shape[1], ys = fr * (size_t)y->shape[1];
    dfm_cpu_copy_blocks(y->data, ys, (const char *)x->data + (size_t)a->i[0] * fr, xs, ys, x->shape[0]);
    return 0;
}

int dfm_op_frames(const dfm_tensor *x, int64_t t0, int64_t n, dfm_tensor *y)
{
    if (y && y->ndim == 4 && y->shape[1] != n) {
        char why[96];
        snprintf(why, sizeof why, "y must be [C, %lld, H, W]", (long long)n);
        return bad("frames", why, "x", x, "y", y, NULL);
    }
    if (n < 0) return bad("frames", "negative frame count", "x", x, "y", y, NULL);
    dfm_op_args a = {.src = {x}, .dst = {y}, .i = {t0}};
    return dfm_op_run(DFM_OP_FRAMES, &a);
}

static int check_put_frames(const dfm_op_args *a)
{
    const char *op = "put_frames";
    const dfm_tensor *f = a->src[0], *y = a->dst[0];
#define ARGS "y", y, "f", f, NULL
    if (!y || !f) return dfm_fail(DFM_E_ARG, "put_frames: NULL argument");
    if (y->ndim != 4 || f->ndim != 4 || y->dtype != f->dtype) return bad(op, "y and f must be [C, T, H, W] of one dtype", ARGS);
    int64_t t0 = a->i[0], n = f->shape[1];
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
    return 0;
}

static int cpu_put_frames(dfm_op_args *a)
{
    const dfm_tensor *f = a->src[0], *y = a->dst[0];
    size_t fr = frame_bytes(y), ys = fr * (size_t)y->shape[1], fs = fr * (size_t)f->shape[1];
    dfm_cpu_copy_blocks((char *)y->data + (size_t)a->i[0] * fr, ys, f->data, fs, fs, y->shape[0]);
    return 0;
}

int dfm_op_put_frames(dfm_tensor *y, int64_t t0, const dfm_tensor *f)
{
    dfm_op_args a = {.src = {f}, .dst = {y}, .i = {t0}};
    return dfm_op_run(DFM_OP_PUT_FRAMES, &a);
}

/* ---- non-finite scan ------------------------------------------------------------------------ */

static int check_count_nonfinite(const dfm_op_args *a)
{
    if (!a->src[0]) return dfm_fail(DFM_E_ARG, "count_nonfinite: NULL argument");
    return 0;
}

int dfm_ops_nonfinite_applies(const dfm_tensor *x, int64_t *n)
{
    *n = dfm_tensor_numel(x);
    return is_float(x->dtype) && *n > 0;
}

static int cpu_count_nonfinite(dfm_op_args *a)
{
    int64_t n;
    a->r[0] = 0, a->r[1] = -1;
    if (dfm_ops_nonfinite_applies(a->src[0], &n)) a->r[0] = dfm_cpu_count_nonfinite(a->src[0]->data, a->src[0]->dtype, n, &a->r[1]);
    return 0;
}

/* ---- bias rows, dropout -------------------------------------------------------------------- */

static int check_bias_add(const dfm_op_args *a)
{
    const char *op = "bias_add";
    const dfm_tensor *x = a->src[0], *b = a->src[1], *y = a->dst[0];
#define ARGS "x", x, "b", b, "y", y, NULL
    if (!x || !b || !y) return dfm_fail(DFM_E_ARG, "bias_add: NULL argument");
    if (x->ndim < 1 || x->dtype != DFM_F32) return bad(op, "x must be F32 [..., N]", ARGS);
    if (!same_shape(x, y) || y->dtype != DFM_F32) return bad(op, "y must be F32 with x's shape", ARGS);
    if (b->ndim != 1 || b->shape[0] != last_dim(x) || !is_float(b->dtype)) return bad(op, "b must be a float [N]", ARGS);
    if (b->device != x->device || y->device != x->device) return bad(op, "operands on different devices", ARGS);
    if ((x->data != y->data && overlaps(x, y)) || overlaps(b, y)) return bad(op, "y partly overlaps an input", ARGS);
#undef ARGS
    return 0;
}

static int cpu_bias_add(dfm_op_args *a)
{
    const dfm_tensor *x = a->src[0], *b = a->src[1];
    return dfm_cpu_bias_add(x->data, b->data, b->dtype, a->dst[0]->data, rows_of(x), last_dim(x));
}

int dfm_op_bias_add(const dfm_tensor *x, const dfm_tensor *b, dfm_tensor *y)
{
    dfm_op_args a = {.src = {x, b}, .dst = {y}};
    return dfm_op_run(DFM_OP_BIAS_ADD, &a);
}

static int check_dropout(const dfm_op_args *a)
{
    int rc = check_elt("dropout", a->src[0], NULL, a->dst[0], 0);
    if (rc < 0) return rc;
    if (!(a->f[0] >= 0.0f && a->f[0] < 1.0f)) return dfm_fail(DFM_E_ARG, "dropout: p %g is not in [0, 1)", a->f[0]);
    return 0;
}

static int cpu_dropout(dfm_op_args *a)
{
    dfm_cpu_dropout(a->src[0]->data, a->dst[0]->data, dfm_tensor_numel(a->src[0]), a->f[0], (uint64_t)a->i[0],
                    (uint64_t)a->i[1]);
    return 0;
}

int dfm_op_dropout(const dfm_tensor *x, float p, uint64_t seed, uint64_t stream, dfm_tensor *y)
{
    dfm_op_args a = {.src = {x}, .dst = {y}, .f = {p}, .i = {(int64_t)seed, (int64_t)stream}};
    return dfm_op_run(DFM_OP_DROPOUT, &a);
}

/* ---- the transformer's ops: norms, activations, rope, modulation, and their backwards -------- */

static int check_rms_norm_bwd(const dfm_op_args *a)
{
    const char *op = "rms_norm_bwd";
    const dfm_tensor *dy = a->src[0], *x = a->src[1], *inv = a->src[2], *w = a->src[3], *dx = a->dst[0],
                     *dw = a->dst[1];
#define ARGS "dy", dy, "x", x, "inv", inv, "w", w, "dx", dx, "dw", dw, NULL
    if (!dy || !x) return dfm_fail(DFM_E_ARG, "rms_norm_bwd: NULL argument");
    if (x->ndim < 1 || x->dtype != DFM_F32 || !like(dy, x, 0)) return bad(op, "x and dy must be F32 [..., D] of one shape", ARGS);
    int64_t d = last_dim(x);
    if (!like(dx, x, 1) || !vec(inv, rows_of(x), x->device, 1) || !param(w, d, x->device, 1) ||
        !vec(dw, d, x->device, 1) || (dw && !w))
        return bad(op, "dx must be like x, inv F32 [rows], w a float [D], dw F32 [D] (only with w)", ARGS);
    if (dx && dx->data != dy->data && (overlaps(dx, dy) || overlaps(dx, x))) return bad(op, "dx overlaps an input", ARGS);
#undef ARGS
    return 0;
}
static int cpu_rms_norm_bwd(dfm_op_args *a)
{
    const dfm_tensor *x = a->src[1], *w = a->src[3];
    return dfm_cpu_rms_norm_backward(a->src[0]->data, x->data, ptr(a->src[2]), rows_of(x), last_dim(x), ptr(w),
                                     dt_or_f32(w), a->f[0], a->dst[0] ? a->dst[0]->data : NULL,
                                     a->dst[1] ? a->dst[1]->data : NULL);
}

static int check_layer_norm(const dfm_op_args *a)
{
    const char *op = "layer_norm";
    const dfm_tensor *x = a->src[0], *w = a->src[1], *b = a->src[2], *y = a->dst[0], *mean = a->dst[1],
                     *rstd = a->dst[2];
#define ARGS "x", x, "w", w, "b", b, "y", y, "mean", mean, "rstd", rstd, NULL
    if (!x || !y) return dfm_fail(DFM_E_ARG, "layer_norm: NULL argument");
    if (x->ndim < 1 || x->dtype != DFM_F32 || !like(y, x, 0)) return bad(op, "x and y must be F32 [..., D] of one shape", ARGS);
    int64_t d = last_dim(x), r = rows_of(x);
    if (!param(w, d, x->device, 1) || !param(b, d, x->device, 1)) return bad(op, "w and b must be float [D]", ARGS);
    if (!vec(mean, r, x->device, 1) || !vec(rstd, r, x->device, 1)) return bad(op, "mean and rstd must be F32 [rows]", ARGS);
    if (x->data != y->data && overlaps(x, y)) return bad(op, "y partly overlaps x", ARGS);
    if (!(a->f[0] >= 0.0f)) return bad(op, "eps must be >= 0", ARGS);
#undef ARGS
    return 0;
}
static int cpu_layer_norm(dfm_op_args *a)
{
    const dfm_tensor *x = a->src[0], *w = a->src[1], *b = a->src[2];
    return dfm_cpu_layer_norm(x->data, rows_of(x), last_dim(x), ptr(w), dt_or_f32(w), ptr(b), dt_or_f32(b), a->f[0],
                              a->dst[0]->data, dptr(a, 1), dptr(a, 2));
}

static int check_layer_norm_bwd(const dfm_op_args *a)
{
    const char *op = "layer_norm_bwd";
    const dfm_tensor *dy = a->src[0], *x = a->src[1], *mean = a->src[2], *rstd = a->src[3], *w = a->src[4];
    const dfm_tensor *dx = a->dst[0], *dw = a->dst[1], *db = a->dst[2];
#define ARGS "dy", dy, "x", x, "mean", mean, "rstd", rstd, "w", w, "dx", dx, "dw", dw, "db", db, NULL
    if (!dy || !x) return dfm_fail(DFM_E_ARG, "layer_norm_bwd: NULL argument");
    if (x->ndim < 1 || x->dtype != DFM_F32 || !like(dy, x, 0)) return bad(op, "x and dy must be F32 [..., D] of one shape", ARGS);
    int64_t d = last_dim(x), r = rows_of(x);
    if (!vec(mean, r, x->device, 1) || !vec(rstd, r, x->device, 1) || (!mean != !rstd))
        return bad(op, "mean and rstd must both be F32 [rows], or both absent", ARGS);
    if (!like(dx, x, 1) || !param(w, d, x->device, 1) || !vec(dw, d, x->device, 1) || !vec(db, d, x->device, 1) ||
        (dw && !w))
        return bad(op, "dx must be like x, w a float [D], dw and db F32 [D] (dw only with w)", ARGS);
    if (dx && dx->data != dy->data && (overlaps(dx, dy) || overlaps(dx, x))) return bad(op, "dx overlaps an input", ARGS);
#undef ARGS
    return 0;
}
static int cpu_layer_norm_bwd(dfm_op_args *a)
{
    const dfm_tensor *x = a->src[1], *w = a->src[4];
    return dfm_cpu_layer_norm_backward(a->src[0]->data, x->data, ptr(a->src[2]), ptr(a->src[3]), rows_of(x),
                                       last_dim(x), ptr(w), dt_or_f32(w), a->f[0], dptr(a, 0), dptr(a, 1), dptr(a, 2));
}

static int check_gelu_tanh(const dfm_op_args *a) { return check_elt("gelu_tanh", a->src[0], NULL, a->dst[0], 0); }
/* dy, x -> dx: three F32 tensors of one shape; dx may be dy */
static int check_act_bwd(const char *op, const dfm_op_args *a)
{
    int rc = check_elt(op, a->src[0], a->src[1], a->dst[0], 1);
    if (rc < 0) return rc;
    if (a->dst[0]->data == a->src[1]->data) return bad(op, "dx must not be x", "x", a->src[1], NULL);
    return 0;
}
static int check_gelu_tanh_bwd(const dfm_op_args *a) { return check_act_bwd("gelu_tanh_bwd", a); }
static int check_silu_bwd(const dfm_op_args *a) { return check_act_bwd("silu_bwd", a); }
static int cpu_gelu_tanh(dfm_op_args *a) { return dfm_cpu_gelu_tanh(a->src[0]->data, a->dst[0]->data, dfm_tensor_numel(a->src[0])), 0; }
static int cpu_gelu_tanh_bwd(dfm_op_args *a)
{
    return dfm_cpu_gelu_tanh_backward(a->src[0]->data, a->src[1]->data, a->dst[0]->data, dfm_tensor_numel(a->src[0])), 0;
}
static int cpu_silu_bwd(dfm_op_args *a)
{
    return dfm_cpu_silu_backward(a->src[0]->data, a->src[1]->data, a->dst[0]->data, dfm_tensor_numel(a->src[0])), 0;
}

static int check_rope_common(const char *op, const dfm_op_args *a)
{
    const dfm_tensor *x = a->src[0], *c = a->src[1], *s = a->src[2], *y = a->dst[0];
#define ARGS "x", x, "cos", c, "sin", s, "y", y, NULL
    if (!x || !c || !s || !y) return dfm_fail(DFM_E_ARG, "%s: NULL argument", op);
    if (x->ndim != 4 || x->dtype != DFM_F32 || (x->shape[3] & 1)) return bad(op, "x must be F32 [B, S, H, D] with D even", ARGS);
    if (!like(y, x, 0)) return bad(op, "y must be like x", ARGS);
    if (c->ndim != 2 || c->shape[0] != x->shape[1] || c->shape[1] != x->shape[3] / 2 || c->dtype != DFM_F32 ||
        !like(s, c, 0) || c->device != x->device)
        return bad(op, "cos and sin must be F32 [S, D/2]", ARGS);
    if (x->data != y->data && overlaps(x, y)) return bad(op, "y partly overlaps x", ARGS);
#undef ARGS
    return 0;
}
static int check_rope(const dfm_op_args *a) { return check_rope_common("rope", a); }
static int check_rope_bwd(const dfm_op_args *a) { return check_rope_common("rope_bwd", a); }
static int cpu_rope(dfm_op_args *a)
{
    const dfm_tensor *x = a->src[0];
    return dfm_cpu_rope(x->data, x->shape[0], x->shape[1], x->shape[2], x->shape[3], a->src[1]->data,
                        a->src[2]->data, a->dst[0]->data);
}
static int cpu_rope_bwd(dfm_op_args *a)
{
    const dfm_tensor *x = a->src[0];
    return dfm_cpu_rope_backward(x->data, x->shape[0], x->shape[1], x->shape[2], x->shape[3], a->src[1]->data,
                                 a->src[2]->data, a->dst[0]->data);
}

/* x [B, S, D] and e [B, K, D] with chunk indices in [0, K) */
static int check_mod_shapes(const char *op, const dfm_tensor *x, const dfm_tensor *e, const int64_t *idx, int nidx)
{
#define ARGS "x", x, "e", e, NULL
    if (!x || !e) return dfm_fail(DFM_E_ARG, "%s: NULL argument", op);
    if (x->ndim != 3 || x->dtype != DFM_F32) return bad(op, "x must be F32 [B, S, D]", ARGS);
    if (e->ndim != 3 || e->dtype != DFM_F32 || e->shape[0] != x->shape[0] || e->shape[2] != x->shape[2] ||
        e->device != x->device)
        return bad(op, "e must be F32 [B, K, D] with x's B and D", ARGS);
    for (int i = 0; i < nidx; i++)
        if (idx[i] < 0 || idx[i] >= e->shape[1]) return bad(op, "chunk index outside e's K", ARGS);
#undef ARGS
    return 0;
}
static int check_modulate(const dfm_op_args *a)
{
    int rc = check_mod_shapes("modulate", a->src[0], a->src[1], a->i, 2);
    if (rc) return rc;
    if (!like(a->dst[0], a->src[0], 0)) return bad("modulate", "y must be like x", "x", a->src[0], "y", a->dst[0], NULL);
    if (a->dst[0]->data != a->src[0]->data && overlaps(a->dst[0], a->src[0])) return bad("modulate", "y partly overlaps x", "y", a->dst[0], NULL);
    if (overlaps(a->dst[0], a->src[1])) return bad("modulate", "y overlaps e", "y", a->dst[0], NULL);
    return 0;
}
static int check_modulate_bwd(const dfm_op_args *a)
{
    const dfm_tensor *dy = a->src[0], *x = a->src[1], *e = a->src[2];
    int rc = check_mod_shapes("modulate_bwd", x, e, a->i, 2);
    if (rc) return rc;
    if (!like(dy, x, 0) || !like(a->dst[0], x, 1) || !like(a->dst[1], e, 1))
        return bad("modulate_bwd", "dy and dx must be like x, de like e", "dy", dy, "dx", a->dst[0], "de", a->dst[1], NULL);
    if (a->dst[0] && a->dst[0]->data != dy->data && overlaps(a->dst[0], dy)) return bad("modulate_bwd", "dx partly overlaps dy", "dx", a->dst[0], NULL);
    return 0;
}
static int check_gate_residual(const dfm_op_args *a)
{
    const dfm_tensor *x = a->src[0], *av = a->src[1], *e = a->src[2], *y = a->dst[0];
    int rc = check_mod_shapes("gate_residual", x, e, a->i, 1);
    if (rc) return rc;
    if (!like(av, x, 0) || !like(y, x, 0)) return bad("gate_residual", "a and y must be like x", "a", av, "y", y, NULL);
    if ((y->data != x->data && overlaps(y, x)) || (y->data != av->data && overlaps(y, av)))
        return bad("gate_residual", "y partly overlaps an input", "y", y, NULL);
    return 0;
}
static int check_gate_residual_bwd(const dfm_op_args *a)
{
    const dfm_tensor *dy = a->src[0], *av = a->src[1], *e = a->src[2];
    int rc = check_mod_shapes("gate_residual_bwd", dy, e, a->i, 1);
    if (rc) return rc;
    if (!like(av, dy, 0) || !like(a->dst[0], dy, 1) || !like(a->dst[1], e, 1))
        return bad("gate_residual_bwd", "a and da must be like dy, de like e", "a", av, "da", a->dst[0], "de", a->dst[1], NULL);
    return 0;
}
/* the chunk of e [B, K, D] at index k, and its row stride */
static int cpu_modulate(dfm_op_args *a)
{
    const dfm_tensor *x = a->src[0], *e = a->src[1];
    dfm_cpu_modulate(x->data, x->shape[0], x->shape[1], x->shape[2], chunk(e, a->i[0]), chunk(e, a->i[1]), ld_of(e),
                     a->dst[0]->data);
    return 0;
}
static int cpu_modulate_bwd(dfm_op_args *a)
{
    const dfm_tensor *x = a->src[1], *e = a->src[2], *de = a->dst[1];
    return dfm_cpu_modulate_backward(a->src[0]->data, x->data, x->shape[0], x->shape[1], x->shape[2],
                                     chunk(e, a->i[0]), ld_of(e), dptr(a, 0), chunk(de, a->i[0]), chunk(de, a->i[1]));
}
static int cpu_gate_residual(dfm_op_args *a)
{
    const dfm_tensor *x = a->src[0], *e = a->src[2];
    dfm_cpu_gate_residual(x->data, a->src[1]->data, x->shape[0], x->shape[1], x->shape[2], chunk(e, a->i[0]),
                          ld_of(e), a->dst[0]->data);
    return 0;
}
static int cpu_gate_residual_bwd(dfm_op_args *a)
{
    const dfm_tensor *dy = a->src[0], *e = a->src[2], *de = a->dst[1];
    return dfm_cpu_gate_residual_backward(dy->data, a->src[1]->data, dy->shape[0], dy->shape[1], dy->shape[2],
                                          chunk(e, a->i[0]), ld_of(e), dptr(a, 0), chunk(de, a->i[0]));
}

static int check_colsum(const dfm_op_args *a)
{
    const dfm_tensor *x = a->src[0], *o = a->dst[0];
    if (!x || !o) return dfm_fail(DFM_E_ARG, "colsum: NULL argument");
    if (x->ndim != 2 || x->dtype != DFM_F32 || !vec(o, x->shape[1], x->device, 0))
        return bad("colsum", "x must be F32 [M, N], out F32 [N]", "x", x, "out", o, NULL);
    if (overlaps(x, o)) return bad("colsum", "out overlaps x", "x", x, "out", o, NULL);
    return 0;
}
static int cpu_colsum(dfm_op_args *a)
{
    const dfm_tensor *x = a->src[0];
    return dfm_cpu_colsum(x->data, x->shape[0], x->shape[1], a->dst[0]->data);
}

/* ---- patches ----------------------------------------------------------------------------------- */

/* x [B, C, F, H, W] and rows [B * N, C * P] agree with the patch in a->i[0..2] */
static int check_patch(const char *op, const dfm_tensor *x, const dfm_tensor *rows, const int64_t *p, int64_t order)
{
#define ARGS "x", x, "rows", rows, NULL
    if (!x || !rows) return dfm_fail(DFM_E_ARG, "%s: NULL argument", op);
    if (x->ndim != 5 || x->dtype != DFM_F32) return bad(op, "x must be F32 [B, C, F, H, W]", ARGS);
    if (p[0] < 1 || p[1] < 1 || p[2] < 1 || x->shape[2] % p[0] || x->shape[3] % p[1] || x->shape[4] % p[2])
        return bad(op, "F, H, W must be multiples of the patch size", ARGS);
    if (order != 0 && order != 1) return bad(op, "order must be 0 (channel-major) or 1 (position-major)", ARGS);
    int64_t n = x->shape[0] * (x->shape[2] / p[0]) * (x->shape[3] / p[1]) * (x->shape[4] / p[2]);
    if (rows->ndim != 2 || rows->dtype != DFM_F32 || rows->shape[0] != n || rows->shape[1] != x->shape[1] * p[0] * p[1] * p[2])
        return bad(op, "rows must be F32 [B * N, C * pt * ph * pw]", ARGS);
    if (rows->device != x->device) return bad(op, "operands on different devices", ARGS);
    if (overlaps(x, rows)) return bad(op, "rows overlap x", ARGS);
#undef ARGS
    return 0;
}
static int check_patchify(const dfm_op_args *a) { return check_patch("patchify", a->src[0], a->dst[0], a->i, a->i[3]); }
static int check_unpatchify(const dfm_op_args *a) { return check_patch("unpatchify", a->dst[0], a->src[0], a->i, a->i[3]); }
static int cpu_patchify(dfm_op_args *a)
{
    dfm_cpu_patchify(a->src[0]->data, a->dst[0]->data, a->src[0]->shape, a->i, (int)a->i[3]);
    return 0;
}
static int cpu_unpatchify(dfm_op_args *a)
{
    dfm_cpu_unpatchify(a->src[0]->data, a->dst[0]->data, a->dst[0]->shape, a->i, (int)a->i[3]);
    return 0;
}
int dfm_op_patchify(const dfm_tensor *x, const int patch[3], int order, dfm_tensor *rows)
{
    dfm_op_args a = {.src = {x}, .dst = {rows}, .i = {patch[0], patch[1], patch[2], order}};
    return dfm_op_run(DFM_OP_PATCHIFY, &a);
}
int dfm_op_unpatchify(const dfm_tensor *rows, const int patch[3], int order, dfm_tensor *x)
{
    dfm_op_args a = {.src = {rows}, .dst = {x}, .i = {patch[0], patch[1], patch[2], order}};
    return dfm_op_run(DFM_OP_UNPATCHIFY, &a);
}

/* ---- typed functions of the transformer's ops -------------------------------------------------- */

int dfm_op_rms_norm_save(const dfm_tensor *x, const dfm_tensor *w, float eps, dfm_tensor *y, dfm_tensor *inv)
{
    dfm_op_args a = {.src = {x, w}, .dst = {y, inv}, .f = {eps}};
    return dfm_op_run(DFM_OP_RMS_NORM, &a);
}
int dfm_op_rms_norm_bwd(const dfm_tensor *dy, const dfm_tensor *x, const dfm_tensor *inv, const dfm_tensor *w,
                        float eps, dfm_tensor *dx, dfm_tensor *dw)
{
    dfm_op_args a = {.src = {dy, x, inv, w}, .dst = {dx, dw}, .f = {eps}};
    return dfm_op_run(DFM_OP_RMS_NORM_BWD, &a);
}
int dfm_op_layer_norm(const dfm_tensor *x, const dfm_tensor *w, const dfm_tensor *b, float eps, dfm_tensor *y,
                      dfm_tensor *mean, dfm_tensor *rstd)
{
    dfm_op_args a = {.src = {x, w, b}, .dst = {y, mean, rstd}, .f = {eps}};
    return dfm_op_run(DFM_OP_LAYER_NORM, &a);
}
int dfm_op_layer_norm_bwd(const dfm_tensor *dy, const dfm_tensor *x, const dfm_tensor *mean, const dfm_tensor *rstd,
                          const dfm_tensor *w, float eps, dfm_tensor *dx, dfm_tensor *dw, dfm_tensor *db)
{
    dfm_op_args a = {.src = {dy, x, mean, rstd, w}, .dst = {dx, dw, db}, .f = {eps}};
    return dfm_op_run(DFM_OP_LAYER_NORM_BWD, &a);
}
int dfm_op_gelu_tanh(const dfm_tensor *x, dfm_tensor *y) { return unary(DFM_OP_GELU_TANH, x, y, 0, 0); }
int dfm_op_gelu_tanh_bwd(const dfm_tensor *dy, const dfm_tensor *x, dfm_tensor *dx)
{
    return binary(DFM_OP_GELU_TANH_BWD, dy, x, dx);
}
int dfm_op_silu_bwd(const dfm_tensor *dy, const dfm_tensor *x, dfm_tensor *dx) { return binary(DFM_OP_SILU_BWD, dy, x, dx); }
int dfm_op_rope(const dfm_tensor *x, const dfm_tensor *cos, const dfm_tensor *sin, dfm_tensor *y)
{
    dfm_op_args a = {.src = {x, cos, sin}, .dst = {y}};
    return dfm_op_run(DFM_OP_ROPE, &a);
}
int dfm_op_rope_bwd(const dfm_tensor *dy, const dfm_tensor *cos, const dfm_tensor *sin, dfm_tensor *dx)
{
    dfm_op_args a = {.src = {dy, cos, sin}, .dst = {dx}};
    return dfm_op_run(DFM_OP_ROPE_BWD, &a);
}
int dfm_op_modulate(const dfm_tensor *x, const dfm_tensor *e, int scale_chunk, int shift_chunk, dfm_tensor *y)
{
    dfm_op_args a = {.src = {x, e}, .dst = {y}, .i = {scale_chunk, shift_chunk}};
    return dfm_op_run(DFM_OP_MODULATE, &a);
}
int dfm_op_modulate_bwd(const dfm_tensor *dy, const dfm_tensor *x, const dfm_tensor *e, int scale_chunk, int shift_chunk,
                        dfm_tensor *dx, dfm_tensor *de)
{
    dfm_op_args a = {.src = {dy, x, e}, .dst = {dx, de}, .i = {scale_chunk, shift_chunk}};
    return dfm_op_run(DFM_OP_MODULATE_BWD, &a);
}
int dfm_op_gate_residual(const dfm_tensor *x, const dfm_tensor *av, const dfm_tensor *e, int gate_chunk, dfm_tensor *y)
{
    dfm_op_args a = {.src = {x, av, e}, .dst = {y}, .i = {gate_chunk}};
    return dfm_op_run(DFM_OP_GATE_RESIDUAL, &a);
}
int dfm_op_gate_residual_bwd(const dfm_tensor *dy, const dfm_tensor *av, const dfm_tensor *e, int gate_chunk,
                             dfm_tensor *da, dfm_tensor *de)
{
    dfm_op_args a = {.src = {dy, av, e}, .dst = {da, de}, .i = {gate_chunk}};
    return dfm_op_run(DFM_OP_GATE_RESIDUAL_BWD, &a);
}
int dfm_op_colsum(const dfm_tensor *x, dfm_tensor *out)
{
    dfm_op_args a = {.src = {x}, .dst = {out}};
    return dfm_op_run(DFM_OP_COLSUM, &a);
}

/* ---- the optimizer's: AdamW update, sum of squares ------------------------------------------ */

static int check_adamw(const dfm_op_args *a)
{
    const char *op = "adamw";
    const dfm_tensor *g = a->src[0], *p = a->dst[0], *m = a->dst[1], *v = a->dst[2];
#define ARGS "g", g, "p", p, "m", m, "v", v, NULL
    if (!g || !p || !m || !v || !a->p) return dfm_fail(DFM_E_ARG, "adamw: NULL argument");
    if (g->dtype != DFM_F32 || !like(p, g, 0) || !like(m, g, 0) || !like(v, g, 0))
        return bad(op, "g, p, m, v must be F32 of one shape on one device", ARGS);
    if (overlaps(g, p) || overlaps(g, m) || overlaps(g, v) || overlaps(p, m) || overlaps(p, v) || overlaps(m, v))
        return bad(op, "operands overlap", ARGS);
#undef ARGS
    return 0;
}
static int cpu_adamw(dfm_op_args *a)
{
    dfm_cpu_adamw(a->dst[0]->data, a->src[0]->data, a->dst[1]->data, a->dst[2]->data, dfm_tensor_numel(a->src[0]),
                  a->p);
    return 0;
}

static int check_sumsq(const dfm_op_args *a)
{
    const dfm_tensor *x = a->src[0];
    if (!x) return dfm_fail(DFM_E_ARG, "sumsq: NULL argument");
    if (x->dtype != DFM_F32) return bad("sumsq", "x must be F32", "x", x, NULL);
    for (int i = 0; i < DFM_OP_MAX_DST; i++)
        if (a->dst[i]) return bad("sumsq", "takes no output tensor (the sum is r[0])", "x", x, "dst", a->dst[i], NULL);
    return 0;
}
static int cpu_sumsq(dfm_op_args *a)
{
    double s = dfm_cpu_sumsq(a->src[0]->data, dfm_tensor_numel(a->src[0]));
    memcpy(&a->r[0], &s, sizeof s);
    a->r[1] = 0;
    return 0;
}

#ifdef DFM_HAVE_CUDA
#define CU(f) f
#else
#define CU(f) NULL
#endif

/* ---- the table and the dispatch -------------------------------------------------------------- */

#define OP(id, name) [DFM_OP_##id] = {#name, check_##name, cpu_##name, CU(dfm_op_cuda_##name)}
static const dfm_op_def g_ops[DFM_OP_COUNT] = {
    OP(CONV3D, conv3d),
    OP(RMS_NORM_CHANNELS, rms_norm_channels),
    OP(SILU, silu),
    OP(ADD, add),
    OP(MUL, mul),
    OP(CLAMP, clamp),
    OP(AFFINE, affine),
    OP(GELU_NEW, gelu_new),
    OP(MATMUL, matmul),
    OP(LINEAR, linear),
    OP(ATTENTION, attention),
    OP(ATTENTION_BWD, attention_bwd),
    OP(EMBEDDING, embedding),
    OP(REL_BIAS, rel_bias),
    OP(RMS_NORM, rms_norm),
    OP(TRANSPOSE2D, transpose2d),
    OP(UPSAMPLE_NEAREST2X, upsample_nearest2x),
    OP(CONCAT, concat),
    OP(FRAMES, frames),
    OP(PUT_FRAMES, put_frames),
    OP(COUNT_NONFINITE, count_nonfinite),
    OP(BIAS_ADD, bias_add),
    OP(DROPOUT, dropout),
    OP(RMS_NORM_BWD, rms_norm_bwd),
    OP(LAYER_NORM, layer_norm),
    OP(LAYER_NORM_BWD, layer_norm_bwd),
    OP(GELU_TANH, gelu_tanh),
    OP(GELU_TANH_BWD, gelu_tanh_bwd),
    OP(SILU_BWD, silu_bwd),
    OP(ROPE, rope),
    OP(ROPE_BWD, rope_bwd),
    OP(MODULATE, modulate),
    OP(MODULATE_BWD, modulate_bwd),
    OP(GATE_RESIDUAL, gate_residual),
    OP(GATE_RESIDUAL_BWD, gate_residual_bwd),
    OP(COLSUM, colsum),
    OP(PATCHIFY, patchify),
    OP(UNPATCHIFY, unpatchify),
    OP(ADAMW, adamw),
    OP(SUMSQ, sumsq),
};
#undef OP

const dfm_op_def *dfm_op_get(dfm_op_id id)
{
    return (unsigned)id < DFM_OP_COUNT ? &g_ops[id] : NULL;
}

dfm_device dfm_op_device(const dfm_op_args *a)
{
    for (int i = 0; i < DFM_OP_MAX_SRC; i++)
        if (a->src[i]) return a->src[i]->device;
    for (int i = 0; i < DFM_OP_MAX_DST; i++)
        if (a->dst[i]) return a->dst[i]->device;
    return DFM_CPU;
}

int dfm_op_run(dfm_op_id id, dfm_op_args *a)
{
    const dfm_op_def *d = dfm_op_get(id);
    if (!d || !d->check) return dfm_fail(DFM_E_ARG, "op %d: no such op", (int)id);
    int rc = d->check(a);
    if (rc) return rc;
    if (dfm_op_device(a) == DFM_CPU) return d->cpu(a);
    if (!d->cuda)
        return dfm_fail(DFM_E_UNSUPPORTED, "%s: tensors on a CUDA device, but this build has no CUDA support", d->name);
    return d->cuda(a);
}
