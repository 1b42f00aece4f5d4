/* test_backend_ops.c — the table-driven backend test over the op table (lib/tensor/op.h), ggml's
 * test-backend-ops. g_table has, for every op id, a case generator: case i of op `op` is a
 * dfm_op_args record whose operands are drawn from an RNG reseeded from (op, i), made on the CPU
 * and copied to the device asked for, so the CPU and CUDA instances of a case are identical.
 * Three modes:
 *   backend_cuda  every case runs through dfm_op_run on the CPU (on every machine: the op's check
 *                 accepts it and the CPU run succeeds; one malformed record per op gives DFM_E_ARG)
 *                 and, when a CUDA device is here, on CUDA; the outputs (and r) are compared with
 *                 the case's tolerance: GEMM-shaped ops (conv3d, matmul, linear, attention and
 *                 its backward) 1e-4 of the output's largest magnitude (bf16 attention 1e-2);
 *                 norms, activations, rope, modulation, dropout and colsum 1e-5; add, mul, clamp,
 *                 affine, bias_add, the gathers and data movement, adamw and sumsq bit for bit. Skips its CUDA half cleanly without a
 *                 device. A new op without a generator in g_table fails it.
 *   backend_grad  finite-difference check of the analytic gradients (computed with ops of the
 *                 table) for every op with a grad spec (g_grads).
 *   backend_perf  with DFM_BACKEND_PERF=1 only: times each op's big cases on the CPU and CUDA.
 * Not here: dtype conversion is a tensor function, not an op; backend_convert at the end compares
 * it across devices on its own.
 */
#include "test.h"
#include "tensor_util.h"

#include "base/dtype.h"
#include "base/error.h"
#include "tensor/op.h"
#include "tensor/ops.h"
#include "tensor/tensor.h"
#include "train/optim.h"
#ifdef DFM_HAVE_CUDA
#include "cuda/device.h"
#endif

#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#define TOL_GEMM 1e-4
#define TOL_NORM 1e-5

/* Whether the CUDA half of a mode is skipped (prints why; the one skip decision of this file). */
static int no_gpu(void) { return dfm_test_cuda_skip(); }

/* ---- random numbers: one stream per (op, case, purpose) ------------------------------------ */

static uint64_t g_rng;
static uint64_t rnd64(void) /* splitmix64 */
{
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static void rng_seed(int op, int i, int purpose)
{
    g_rng = ((uint64_t)op << 40) ^ ((uint64_t)i << 8) ^ (uint64_t)purpose;
    rnd64();
}
/* uniform in [-1, 1) */
static float urand(void) { return (float)((rnd64() >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f; }

/* ---- a case: one argument record and what it owns ------------------------------------------ */

enum { MODE_CHECK, MODE_PERF };
/* what a generator returns */
enum { CASE_OK = 0, CASE_END = 1, CASE_NONE = 2 /* no case at this index in this mode */ };
#define MAX_T 12

typedef struct {
    dfm_op_args a;         /* src/dst point into t[] (in place: the same slot twice) */
    char what[240];        /* the case in words */
    double tol;            /* 0: bit for bit; else |cuda - cpu| <= tol * max|cpu| per F32 output */
    int big;               /* timed by the perf mode */
    int mode;              /* input: MODE_CHECK or MODE_PERF (perf-only cases are CASE_NONE in check mode) */
    int has_want;          /* want_r holds the expected r (count_nonfinite) */
    int64_t want_r[2];
    dfm_tensor t[MAX_T];   /* the operands, made on the CPU, then moved to the case's device */
    unsigned host;         /* bit j: t[j] stays on the CPU (index vectors; weights packed into p) */
    int nt, err;
    dfm_compute cc;        /* what a.cc points to */
    dfm_packed *packed;    /* a.p of DFM_OP_LINEAR, made for the case's device */
} tcase;

#define SHAPE(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), ((const int64_t[]){__VA_ARGS__})

/* A new CPU tensor of c with values urand() * scale rounded to dt (random bytes for the other
 * dtypes). On failure c->err is set and a tensor without data is returned (the case is not run). */
static dfm_tensor *tnew(tcase *c, dfm_dtype dt, float scale, int ndim, const int64_t *shape)
{
    if (c->nt == MAX_T) {
        c->err = dfm_fail(DFM_E_ARG, "test case: more than %d tensors", MAX_T);
        return &c->t[MAX_T - 1];
    }
    dfm_tensor *t = &c->t[c->nt++];
    int rc = dfm_tensor_alloc(t, dt, DFM_CPU, ndim, shape);
    if (rc < 0) {
        memset(t, 0, sizeof *t);
        t->dtype = dt, t->ndim = ndim;
        memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
        c->err = rc;
        return t;
    }
    int64_t n = dfm_tensor_numel(t);
    if (dt == DFM_F32)
        for (int64_t i = 0; i < n; i++) ((float *)t->data)[i] = urand() * scale;
    else if (dt == DFM_BF16)
        for (int64_t i = 0; i < n; i++) ((uint16_t *)t->data)[i] = dfm_f32_to_bf16(urand() * scale);
    else if (dt == DFM_F16)
        for (int64_t i = 0; i < n; i++) ((uint16_t *)t->data)[i] = dfm_f32_to_f16(urand() * scale);
    else
        for (size_t i = 0; i < dfm_tensor_nbytes(t); i++) ((uint8_t *)t->data)[i] = (uint8_t)(rnd64() >> 56);
    return t;
}

/* An I32 index vector [n] with values in [0, limit), kept on the CPU (the ops read it there). */
static dfm_tensor *tindex(tcase *c, int64_t n, int64_t limit)
{
    dfm_tensor *t = tnew(c, DFM_I32, 1, SHAPE(n));
    c->host |= 1u << (t - c->t);
    if (c->err) return t;
    int32_t *p = t->data;
    for (int64_t i = 0; i < n; i++) p[i] = (int32_t)(rnd64() % (uint64_t)limit);
    if (n > 1) p[0] = (int32_t)(limit - 1), p[n - 1] = 0; /* both ends of the range */
    return t;
}

static void case_free(tcase *c)
{
    for (int j = 0; j < c->nt; j++) dfm_tensor_free(&c->t[j]);
    dfm_packed_free(c->packed);
    c->nt = 0, c->packed = NULL;
}

/* "[3,5,7]" */
static const char *shp(const dfm_tensor *t, char *buf, size_t n)
{
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < t->ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "," : "", (long long)t->shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

/* ---- the generators: case i of each op ------------------------------------------------------ */

static int gen_conv3d(int i, dfm_device dev, tcase *c)
{
    (void)dev;
    /* every configuration the Wan VAE uses, and a few it does not */
    static const struct {
        int k[3], stride[3], pad[6];
    } cfgs[] = {
        {{3, 3, 3}, {1, 1, 1}, {2, 0, 1, 1, 1, 1}}, /* causal 3x3x3 */
        {{1, 1, 1}, {1, 1, 1}, {0, 0, 0, 0, 0, 0}}, /* pointwise */
        {{3, 1, 1}, {1, 1, 1}, {2, 0, 0, 0, 0, 0}}, /* causal time conv */
        {{3, 1, 1}, {2, 1, 1}, {0, 0, 0, 0, 0, 0}}, /* time downsample */
        {{1, 3, 3}, {1, 2, 2}, {0, 0, 0, 1, 0, 1}}, /* spatial downsample (zero pad right/bottom) */
        {{1, 3, 3}, {1, 1, 1}, {0, 0, 1, 1, 1, 1}}, /* 2-D 3x3 per frame */
        {{2, 3, 2}, {2, 3, 1}, {1, 2, 0, 2, 3, 0}}, /* odd: asymmetric everything */
        {{1, 1, 1}, {1, 2, 2}, {0, 0, 0, 0, 0, 0}}, /* strided pointwise */
    };
    static const int64_t sizes[][5] = {/* cin, t, h, w, cout */
                                       {3, 5, 7, 9, 4},  {1, 1, 1, 1, 1},   {4, 1, 6, 5, 3},   {2, 4, 1, 1, 5},
                                       {16, 3, 8, 8, 12}, {5, 2, 13, 11, 7}, {32, 2, 9, 10, 48}};
    static const struct {
        dfm_dtype wdt;
        int bias, bf16;
    } vars[] = {{DFM_F32, 1, 0}, {DFM_BF16, 1, 0}, {DFM_F16, 0, 0}, {DFM_F32, 0, 1}, {DFM_BF16, 1, 1}};
    /* VAE-like widths, one big enough for the CUDA column scratch to take two blocks, and (perf
     * only) a VAE block at 64x64 */
    static const struct {
        int64_t z[5];
        int cfg, var, perf_only;
    } more[] = {{{96, 3, 17, 23, 96}, 0, 1, 0},  {{96, 3, 17, 23, 96}, 0, 4, 0},   {{192, 2, 15, 16, 96}, 4, 0, 0},
                {{128, 2, 100, 100, 8}, 0, 0, 0}, {{96, 5, 64, 64, 96}, 0, 0, 1}, {{96, 5, 64, 64, 96}, 0, 4, 1}};
    enum { NS = sizeof sizes / sizeof sizes[0], NV = sizeof vars / sizeof vars[0] };
    int ncfg = (int)(sizeof cfgs / sizeof cfgs[0]), nreg = ncfg * NS * NV, nmore = (int)(sizeof more / sizeof more[0]);
    const int64_t *z;
    int cf, v;
    if (i < nreg) {
        cf = i / (NS * NV), z = sizes[(i / NV) % NS], v = i % NV;
    } else if (i < nreg + nmore) {
        z = more[i - nreg].z, cf = more[i - nreg].cfg, v = more[i - nreg].var, c->big = 1;
        if (more[i - nreg].perf_only && c->mode != MODE_PERF) return CASE_NONE;
    } else
        return CASE_END;
    const int *k = cfgs[cf].k, *st = cfgs[cf].stride, *pad = cfgs[cf].pad;
    int64_t out[3], in[3] = {z[1], z[2], z[3]};
    for (int d = 0; d < 3; d++) {
        int64_t span = in[d] + pad[2 * d] + pad[2 * d + 1] - k[d];
        if (span < 0) return CASE_NONE; /* kernel larger than the padded input */
        out[d] = span / st[d] + 1;
    }
    dfm_dtype wdt = vars[v].wdt;
    c->a.src[0] = tnew(c, DFM_F32, 1, SHAPE(z[0], z[1], z[2], z[3]));
    c->a.src[1] = tnew(c, wdt, 1, SHAPE(z[4], z[0], k[0], k[1], k[2]));
    c->a.src[2] = vars[v].bias ? tnew(c, wdt, 1, SHAPE(z[4])) : NULL;
    c->a.dst[0] = tnew(c, DFM_F32, 1, SHAPE(z[4], out[0], out[1], out[2]));
    for (int d = 0; d < 3; d++) c->a.i[d] = st[d];
    for (int d = 0; d < 6; d++) c->a.i[3 + d] = pad[d];
    c->cc.dtype = vars[v].bf16 ? DFM_BF16 : DFM_F32;
    c->a.cc = &c->cc;
    c->tol = TOL_GEMM;
    snprintf(c->what, sizeof c->what,
             "x [%lld,%lld,%lld,%lld] w %s [%lld,%lld,%d,%d,%d] stride %d,%d,%d pad %d,%d,%d,%d,%d,%d%s%s",
             (long long)z[0], (long long)z[1], (long long)z[2], (long long)z[3], dfm_dtype_name(wdt), (long long)z[4],
             (long long)z[0], k[0], k[1], k[2], st[0], st[1], st[2], pad[0], pad[1], pad[2], pad[3], pad[4], pad[5],
             vars[v].bias ? " bias" : "", vars[v].bf16 ? " bf16-compute" : "");
    return CASE_OK;
}

static int gen_rms_norm_channels(int i, dfm_device dev, tcase *c)
{
    (void)dev;
    static const int64_t cs[] = {1, 3, 96, 384};
    static const int64_t sp[][3] = {{1, 1, 1}, {1, 3, 11}, {2, 5, 7}, {3, 20, 17}};
    int64_t ch, t, h, w;
    int var;
    if (i < 4 * 4 * 3) {
        ch = cs[i / 12], t = sp[(i / 3) % 4][0], h = sp[(i / 3) % 4][1], w = sp[(i / 3) % 4][2], var = i % 3;
        c->big = ch == 384 && t == 3;
    } else if (i == 48) {
        if (c->mode != MODE_PERF) return CASE_NONE;
        ch = 384, t = 3, h = 64, w = 64, var = 1, c->big = 1;
    } else
        return CASE_END;
    /* var 0: gamma F32; 1: gamma and bias BF16; 2: F32 with bias, in place */
    dfm_dtype gdt = var == 1 ? DFM_BF16 : DFM_F32;
    dfm_tensor *x = tnew(c, DFM_F32, 1, SHAPE(ch, t, h, w));
    c->a.src[0] = x;
    c->a.src[1] = tnew(c, gdt, 1, SHAPE(ch, 1, 1, 1));
    c->a.src[2] = var >= 1 ? tnew(c, gdt, 1, SHAPE(ch)) : NULL;
    c->a.dst[0] = var == 2 ? x : tnew(c, DFM_F32, 1, SHAPE(ch, t, h, w));
    c->tol = TOL_NORM;
    snprintf(c->what, sizeof c->what, "x [%lld,%lld,%lld,%lld] gamma %s%s%s", (long long)ch, (long long)t, (long long)h,
             (long long)w, dfm_dtype_name(gdt), var ? " bias" : "", var == 2 ? " in place" : "");
    return CASE_OK;
}

/* The elementwise ops: over sizes straddling the kernels' block sizes, and variants:
 *   unary (silu, gelu_new, gelu_tanh, clamp, affine): 0 y separate, 1 in place;
 *   add: 0 separate, 1 y = b, 2 y = a;  mul: 0 separate, 1 y = a;
 *   silu_bwd, gelu_tanh_bwd (src dy, x): 0 separate, 1 dx = dy;
 *   dropout: 0 p 0.1, 1 p 0.5 in place, 2 p 0 (y = x).
 * The activations' x spreads over [-8, 8) so that they and clamp see both tails. */
static int gen_elt(dfm_op_id op, int i, tcase *c)
{
    static const int64_t ns[] = {1, 7, 255, 256, 257, 4099, 100003};
    int nn = (int)(sizeof ns / sizeof ns[0]);
    int act_bwd = op == DFM_OP_SILU_BWD || op == DFM_OP_GELU_TANH_BWD;
    int binary = op == DFM_OP_ADD || op == DFM_OP_MUL || act_bwd;
    int nv = op == DFM_OP_ADD || op == DFM_OP_DROPOUT ? 3 : 2;
    int64_t n;
    int v;
    if (i < nn * nv) {
        n = ns[i / nv], v = i % nv, c->big = n == 100003 && v == 0;
    } else if (i == nn * nv) {
        if (c->mode != MODE_PERF) return CASE_NONE;
        n = 1 << 24, v = 0, c->big = 1;
    } else
        return CASE_END;
    /* src 0 is x (dy for the backwards), src 1 the second operand (x for the backwards) */
    dfm_tensor *a = tnew(c, DFM_F32, act_bwd ? 1 : 8, SHAPE(n)), *b = binary ? tnew(c, DFM_F32, act_bwd ? 8 : 1, SHAPE(n)) : NULL;
    c->a.src[0] = a, c->a.src[1] = b;
    c->a.dst[0] = v == 0 || (op == DFM_OP_DROPOUT && v == 2) ? tnew(c, DFM_F32, 1, SHAPE(n))
                  : op == DFM_OP_ADD && v == 1                ? b
                                                              : a;
    c->tol = op == DFM_OP_SILU || op == DFM_OP_GELU_NEW || op == DFM_OP_GELU_TANH || act_bwd || op == DFM_OP_DROPOUT
                 ? TOL_NORM
                 : 0;
    if (op == DFM_OP_CLAMP) c->a.f[0] = -3.0f, c->a.f[1] = 2.5f;
    if (op == DFM_OP_AFFINE) c->a.f[0] = v ? 8.0f : 0.7f, c->a.f[1] = v ? 0.0f : -0.2f;
    if (op == DFM_OP_DROPOUT) c->a.f[0] = v == 0 ? 0.1f : v == 1 ? 0.5f : 0.0f, c->a.i[0] = 1234 + i, c->a.i[1] = 7;
    snprintf(c->what, sizeof c->what, "n %lld%s%s", (long long)n,
             op == DFM_OP_DROPOUT ? (v == 0 ? " p 0.1" : v == 1 ? " p 0.5" : " p 0") : "",
             c->a.dst[0] == a ? (act_bwd ? " (dx = dy)" : binary ? " (y = a)" : " (in place)")
             : c->a.dst[0] == b ? " (y = b)"
                                : "");
    return CASE_OK;
}
static int gen_silu(int i, dfm_device dev, tcase *c) { return (void)dev, gen_elt(DFM_OP_SILU, i, c); }
static int gen_add(int i, dfm_device dev, tcase *c) { return (void)dev, gen_elt(DFM_OP_ADD, i, c); }
static int gen_mul(int i, dfm_device dev, tcase *c) { return (void)dev, gen_elt(DFM_OP_MUL, i, c); }
static int gen_clamp(int i, dfm_device dev, tcase *c) { return (void)dev, gen_elt(DFM_OP_CLAMP, i, c); }
static int gen_affine(int i, dfm_device dev, tcase *c) { return (void)dev, gen_elt(DFM_OP_AFFINE, i, c); }
static int gen_gelu_new(int i, dfm_device dev, tcase *c) { return (void)dev, gen_elt(DFM_OP_GELU_NEW, i, c); }
static int gen_gelu_tanh(int i, dfm_device dev, tcase *c) { return (void)dev, gen_elt(DFM_OP_GELU_TANH, i, c); }
static int gen_gelu_tanh_bwd(int i, dfm_device dev, tcase *c) { return (void)dev, gen_elt(DFM_OP_GELU_TANH_BWD, i, c); }
static int gen_silu_bwd(int i, dfm_device dev, tcase *c) { return (void)dev, gen_elt(DFM_OP_SILU_BWD, i, c); }
static int gen_dropout(int i, dfm_device dev, tcase *c) { return (void)dev, gen_elt(DFM_OP_DROPOUT, i, c); }

/* Y = op(A) op(B) (+ bias) (+ beta Y): every shape with the 4 transposes, B F32/BF16/F16, and 3
 * variants: 0 bias unless B is BF16, beta 0; 1 bias when B is BF16, beta 1; 2 bias, beta 1 on
 * odd shapes, bf16 compute. */
static int gen_matmul(int i, dfm_device dev, tcase *c)
{
    (void)dev;
    static const int64_t shapes[][3] = {/* m, n, k */
                                        {1, 1, 1},      {7, 5, 3},      {1, 33, 64}, {64, 96, 80},
                                        {130, 33, 257}, {300, 384, 96}, {17, 1, 130}};
    static const dfm_dtype bdts[] = {DFM_F32, DFM_BF16, DFM_F16};
    /* perf only: a transformer-width GEMM, x W^T, f32 and bf16 */
    static const struct {
        int64_t m, n, k;
        int ta, tb, d, v;
    } more[] = {{1024, 1536, 1536, 0, 1, 0, 0}, {1024, 1536, 1536, 0, 1, 1, 2}};
    int ns = (int)(sizeof shapes / sizeof shapes[0]), nreg = ns * 4 * 3 * 3;
    int64_t m, n, k;
    int ta, tb, d, v, s = 0;
    if (i < nreg) {
        s = i / 36, ta = (i / 9) % 4 & 1, tb = (i / 9) % 4 >> 1, d = (i / 3) % 3, v = i % 3;
        m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        c->big = s == 5 && v == 0 && d == 0;
    } else if (i < nreg + 2) {
        if (c->mode != MODE_PERF) return CASE_NONE;
        int j = i - nreg;
        m = more[j].m, n = more[j].n, k = more[j].k, ta = more[j].ta, tb = more[j].tb, d = more[j].d, v = more[j].v;
        c->big = 1;
    } else
        return CASE_END;
    dfm_dtype bdt = bdts[d];
    int bias = v == 0 ? d != 1 : v == 1 ? d == 1 : 1;
    float beta = v == 0 ? 0.0f : v == 1 ? 1.0f : (s & 1 ? 1.0f : 0.0f);
    c->a.src[0] = ta ? tnew(c, DFM_F32, 1, SHAPE(k, m)) : tnew(c, DFM_F32, 1, SHAPE(m, k));
    c->a.src[1] = tb ? tnew(c, bdt, 1, SHAPE(n, k)) : tnew(c, bdt, 1, SHAPE(k, n));
    c->a.src[2] = bias ? tnew(c, bdt, 1, SHAPE(n)) : NULL;
    c->a.dst[0] = tnew(c, DFM_F32, 1, SHAPE(m, n)); /* the same initial Y for beta = 1 */
    c->a.i[0] = ta, c->a.i[1] = tb, c->a.f[0] = beta;
    c->cc.dtype = v == 2 ? DFM_BF16 : DFM_F32;
    c->a.cc = &c->cc;
    c->tol = TOL_GEMM;
    snprintf(c->what, sizeof c->what, "m %lld n %lld k %lld ta %d tb %d b %s%s beta %g%s", (long long)m, (long long)n,
             (long long)k, ta, tb, dfm_dtype_name(bdt), bias ? " bias" : "", beta, v == 2 ? " bf16-compute" : "");
    return CASE_OK;
}

/* y[j] (+)= x W_j^T on packed weights (made for the case's device): 1 to 3 weights, sources
 * F32/BF16/F16 stored F32 or BF16, with and without accumulate, f32 and bf16 compute. */
static int gen_linear(int i, dfm_device dev, tcase *c)
{
    static const struct {
        int64_t m, k;
        int nw;
        int64_t n[3];
        int perf_only;
    } cfgs[] = {{1, 1, 1, {1}, 0},
                {7, 300, 3, {40, 5, 64}, 0},
                {130, 257, 2, {33, 16}, 0},
                {400, 96, 1, {100}, 0},
                {512, 1536, 3, {1536, 1536, 1536}, 1}};
    static const dfm_dtype srcs[] = {DFM_F32, DFM_BF16, DFM_F16};
    int nc = (int)(sizeof cfgs / sizeof cfgs[0]);
    if (i >= nc * 8) return CASE_END;
    int cf = i / 8, v = i % 8;
    c->big = cf >= 3 && (v == 0 || v == 5); /* f32 throughout; bf16 storage and compute */
    if (cfgs[cf].perf_only && (c->mode != MODE_PERF || !c->big)) return CASE_NONE;
    dfm_dtype src = srcs[v % 3], store = v & 1 ? DFM_BF16 : DFM_F32;
    int acc = (v >> 1) & 1, bf16 = v >= 4, nw = cfgs[cf].nw;
    int64_t m = cfgs[cf].m, k = cfgs[cf].k;
    const dfm_tensor *w[DFM_PACKED_MAX];
    c->a.src[0] = tnew(c, DFM_F32, 1, SHAPE(m, k));
    for (int j = 0; j < nw; j++) {
        dfm_tensor *wj = tnew(c, src, 1, SHAPE(cfgs[cf].n[j], k));
        c->host |= 1u << (wj - c->t); /* read by dfm_packed_create on the CPU */
        w[j] = wj;
        c->a.dst[j] = tnew(c, DFM_F32, 1, SHAPE(m, cfgs[cf].n[j]));
    }
    if (c->err) return c->err;
    int rc = dfm_packed_create(&c->packed, w, nw, store, dev);
    if (rc < 0) return rc;
    c->a.p = c->packed;
    c->a.i[0] = acc;
    c->cc.dtype = bf16 ? DFM_BF16 : DFM_F32;
    c->a.cc = &c->cc;
    c->tol = TOL_GEMM;
    snprintf(c->what, sizeof c->what, "m %lld k %lld weights %d (n0 %lld) %s stored %s%s%s", (long long)m, (long long)k,
             nw, (long long)cfgs[cf].n[0], dfm_dtype_name(src), dfm_dtype_name(store), acc ? " accumulate" : "",
             bf16 ? " bf16-compute" : "");
    return CASE_OK;
}

/* Attention in both layouts (one op): head-major [H, S, D] without bias (the last case perf
 * only), token-major [S, H, D] with a bias [H, Sq, Sk] and scale 1 (T5) or without and a sharp
 * scale, and 4-D batches of 2 in both layouts. Every other case also writes lse. */
static const struct {
    int64_t b, h, sq, sk, d; /* b 0: 3-D */
    int layout, bias, perf_only;
} g_attn[] = {
    {0, 1, 1, 1, 1, 0, 0, 0},       {0, 2, 7, 5, 3, 0, 0, 0},         {0, 4, 64, 64, 32, 0, 0, 0},
    {0, 1, 300, 257, 64, 0, 0, 0},  {0, 12, 77, 128, 64, 0, 0, 0},    {0, 1, 1024, 1024, 128, 0, 0, 0},
    {0, 12, 1024, 1024, 128, 0, 0, 1},
    {0, 1, 1, 1, 1, 1, 1, 0},       {0, 1, 1, 1, 1, 1, 0, 0},         {0, 2, 7, 5, 3, 1, 1, 0},
    {0, 2, 7, 5, 3, 1, 0, 0},       {0, 8, 33, 1, 16, 1, 1, 0},       {0, 8, 33, 1, 16, 1, 0, 0},
    {0, 12, 77, 77, 64, 1, 1, 0},   {0, 12, 77, 77, 64, 1, 0, 0},     {0, 4, 300, 257, 64, 1, 1, 0},
    {0, 4, 300, 257, 64, 1, 0, 0},  {0, 64, 512, 512, 64, 1, 1, 1},
    {2, 3, 17, 33, 16, 0, 1, 0},    {2, 3, 17, 33, 16, 1, 1, 0},      {2, 2, 5, 1, 8, 1, 0, 0},
};
#define NATTN (int)(sizeof g_attn / sizeof g_attn[0])

/* q/k/v/out-shaped tensor of attention case e with s rows */
static dfm_tensor *attn_t(tcase *c, int e, int64_t s, float scale)
{
    int64_t h = g_attn[e].h, d = g_attn[e].d, b = g_attn[e].b;
    int64_t sh[4] = {b, g_attn[e].layout ? s : h, g_attn[e].layout ? h : s, d};
    return b ? tnew(c, DFM_F32, scale, 4, sh) : tnew(c, DFM_F32, scale, 3, sh + 1);
}

/* q, k, v, bias of attention case e into c->a.src[0..3]; f[0], i[0] */
static void attn_inputs(tcase *c, int e)
{
    c->a.src[0] = attn_t(c, e, g_attn[e].sq, 1);
    c->a.src[1] = attn_t(c, e, g_attn[e].sk, 1);
    c->a.src[2] = attn_t(c, e, g_attn[e].sk, 1);
    c->a.src[3] = g_attn[e].bias ? tnew(c, DFM_F32, 2, SHAPE(g_attn[e].h, g_attn[e].sq, g_attn[e].sk)) : NULL;
    c->a.f[0] = g_attn[e].bias ? 1.0f : 4.0f / sqrtf((float)g_attn[e].d); /* sharp: far from uniform */
    c->a.i[0] = g_attn[e].layout;
    int64_t b = g_attn[e].b ? g_attn[e].b : 1;
    c->big = (double)b * g_attn[e].h * g_attn[e].sq * g_attn[e].sk * g_attn[e].d > 4e6;
    c->tol = TOL_GEMM;
    snprintf(c->what, sizeof c->what, "%s b %lld heads %lld sq %lld sk %lld d %lld%s scale %g",
             g_attn[e].layout ? "token-major" : "head-major", (long long)g_attn[e].b, (long long)g_attn[e].h,
             (long long)g_attn[e].sq, (long long)g_attn[e].sk, (long long)g_attn[e].d, g_attn[e].bias ? " bias" : "",
             c->a.f[0]);
}

/* Every third attention case (forward and backward) under BF16 compute (bf16 operands, f32
 * softmax: kernels/cpu/attention.h). CPU and CUDA round the forward's softmax weights at different
 * places (exp(s - the running max of a key block) against the normalized P), which moves a weight
 * by up to a bf16 step (2^-8) on either side: tolerance 1e-2 of the output's largest magnitude. */
#define TOL_ATTN_BF16 1e-2
static void attn_bf16(tcase *c, int e)
{
    if (e % 3 != 2) return;
    c->cc.dtype = DFM_BF16;
    c->a.cc = &c->cc;
    c->tol = TOL_ATTN_BF16;
    strncat(c->what, " bf16", sizeof c->what - strlen(c->what) - 1);
}

/* lse of attention case e: [B, H, Sq] F32 */
static dfm_tensor *attn_lse(tcase *c, int e)
{
    return tnew(c, DFM_F32, 1, SHAPE(g_attn[e].b ? g_attn[e].b : 1, g_attn[e].h, g_attn[e].sq));
}

static int gen_attention(int i, dfm_device dev, tcase *c)
{
    (void)dev;
    if (i >= NATTN) return CASE_END;
    if (g_attn[i].perf_only && c->mode != MODE_PERF) return CASE_NONE;
    attn_inputs(c, i);
    attn_bf16(c, i);
    c->a.dst[0] = attn_t(c, i, g_attn[i].sq, 1);
    c->a.dst[1] = i & 1 ? attn_lse(c, i) : NULL;
    if (i & 1) strncat(c->what, " lse", sizeof c->what - strlen(c->what) - 1);
    return CASE_OK;
}

/* The backward on a subset of the forward's cases: out and lse from a CPU forward, a random
 * dout; dq, dk, dv written. */
static int gen_attention_bwd(int i, dfm_device dev, tcase *c)
{
    (void)dev;
    static const int pick[] = {1, 2, 3, 9, 12, 13, 17, 18, 19, 6};
    if (i >= (int)(sizeof pick / sizeof pick[0])) return CASE_END;
    int e = pick[i];
    if (g_attn[e].perf_only && c->mode != MODE_PERF) return CASE_NONE;
    attn_inputs(c, e);
    attn_bf16(c, e);
    dfm_tensor *out = attn_t(c, e, g_attn[e].sq, 1), *lse = attn_lse(c, e);
    if (c->err) return c->err;
    dfm_op_args f = c->a;
    f.dst[0] = out, f.dst[1] = lse;
    int rc = dfm_op_run(DFM_OP_ATTENTION, &f);
    if (rc < 0) return rc;
    c->a.src[4] = out, c->a.src[5] = lse, c->a.src[6] = attn_t(c, e, g_attn[e].sq, 1);
    c->a.dst[0] = attn_t(c, e, g_attn[e].sq, 1);
    c->a.dst[1] = attn_t(c, e, g_attn[e].sk, 1);
    c->a.dst[2] = attn_t(c, e, g_attn[e].sk, 1);
    return CASE_OK;
}

static const dfm_dtype g_floats[] = {DFM_F32, DFM_BF16, DFM_F16};

static int gen_embedding(int i, dfm_device dev, tcase *c)
{
    (void)dev;
    static const int64_t shapes[][3] = {/* V, D, n */ {1, 1, 1}, {100, 64, 77}, {1000, 257, 513}, {32128, 64, 512}};
    if (i >= 4 * 3) return CASE_END;
    const int64_t *z = shapes[i / 3];
    dfm_dtype dt = g_floats[i % 3];
    c->big = i / 3 == 3;
    c->a.src[0] = tnew(c, dt, 1, SHAPE(z[0], z[1]));
    c->a.src[1] = tindex(c, z[2], z[0]);
    c->a.dst[0] = tnew(c, DFM_F32, 1, SHAPE(z[2], z[1]));
    snprintf(c->what, sizeof c->what, "table %s [%lld,%lld] ids %lld", dfm_dtype_name(dt), (long long)z[0],
             (long long)z[1], (long long)z[2]);
    return CASE_OK;
}

static int gen_rel_bias(int i, dfm_device dev, tcase *c)
{
    (void)dev;
    static const int64_t shapes[][4] = {/* buckets, heads, sq, sk */
                                        {32, 1, 1, 1}, {32, 12, 77, 77}, {32, 8, 5, 300}, {32, 64, 256, 256}};
    if (i >= 4 * 3) return CASE_END;
    const int64_t *z = shapes[i / 3];
    dfm_dtype dt = g_floats[i % 3];
    c->big = i / 3 == 3;
    c->a.src[0] = tnew(c, dt, 1, SHAPE(z[0], z[1]));
    c->a.src[1] = tindex(c, z[2] + z[3] - 1, z[0]);
    c->a.dst[0] = tnew(c, DFM_F32, 1, SHAPE(z[1], z[2], z[3]));
    snprintf(c->what, sizeof c->what, "table %s [%lld,%lld] out [%lld,%lld,%lld]", dfm_dtype_name(dt), (long long)z[0],
             (long long)z[1], (long long)z[1], (long long)z[2], (long long)z[3]);
    return CASE_OK;
}

/* [rows..., D] shapes of the row norms (the last perf only) */
static const int64_t g_rows[][3] = {{1, 1, 1}, {1, 7, 33}, {3, 5, 257}, {1, 77, 4096}, {1, 4096, 4096}};
#define NROWS (int)(sizeof g_rows / sizeof g_rows[0])

/* Shape s of g_rows for variant v of nv: CASE_OK, CASE_NONE (perf-only shape: variant 0 in perf
 * mode only) or CASE_END. */
static int rows_case(int i, int nv, tcase *c, int *s, int *v)
{
    if (i >= NROWS * nv) return CASE_END;
    *s = i / nv, *v = i % nv;
    if (*s == NROWS - 1 && (c->mode != MODE_PERF || *v != 0)) return CASE_NONE;
    c->big = *s >= NROWS - 2 && *v == 0;
    return CASE_OK;
}
#define ROWS_X(c, s, scale) tnew(c, DFM_F32, scale, SHAPE(g_rows[s][0], g_rows[s][1], g_rows[s][2]))
#define ROWS_N(s) (g_rows[s][0] * g_rows[s][1])
#define ROWS_D(s) g_rows[s][2]

static void rows_what(tcase *c, int s, const char *more)
{
    snprintf(c->what, sizeof c->what, "x [%lld,%lld,%lld]%s", (long long)g_rows[s][0], (long long)g_rows[s][1],
             (long long)g_rows[s][2], more);
}

/* Row RMS norm: w F32/BF16/F16, F32 in place, F32 saving inv. */
static int gen_rms_norm(int i, dfm_device dev, tcase *c)
{
    (void)dev;
    int s, v, rc = rows_case(i, 5, c, &s, &v);
    if (rc != CASE_OK) return rc;
    dfm_dtype wdt = v < 3 ? g_floats[v] : DFM_F32;
    dfm_tensor *x = ROWS_X(c, s, 4);
    c->a.src[0] = x;
    c->a.src[1] = tnew(c, wdt, 1, SHAPE(ROWS_D(s)));
    c->a.dst[0] = v == 3 ? x : ROWS_X(c, s, 1);
    c->a.dst[1] = v == 4 ? tnew(c, DFM_F32, 1, SHAPE(ROWS_N(s))) : NULL;
    c->a.f[0] = 1e-6f;
    c->tol = TOL_NORM;
    char more[64];
    snprintf(more, sizeof more, " w %s%s", dfm_dtype_name(wdt), v == 3 ? " in place" : v == 4 ? " inv" : "");
    rows_what(c, s, more);
    return CASE_OK;
}

/* rms_norm_bwd: 0 inv saved, w F32; 1 inv recomputed, w BF16; 2 no w, inv saved; 3 dx = dy, inv
 * recomputed; 4 dw only, inv saved. dw accumulates into random contents. */
static int gen_rms_norm_bwd(int i, dfm_device dev, tcase *c)
{
    (void)dev;
    int s, v, rc = rows_case(i, 5, c, &s, &v);
    if (rc != CASE_OK) return rc;
    dfm_tensor *dy = ROWS_X(c, s, 1), *x = ROWS_X(c, s, 4);
    dfm_tensor *w = v == 2 ? NULL : tnew(c, v == 1 ? DFM_BF16 : DFM_F32, 1, SHAPE(ROWS_D(s)));
    dfm_tensor *inv = NULL;
    c->a.f[0] = 1e-6f;
    if (v == 0 || v == 2 || v == 4) {
        /* inv does not depend on w: without one, any [D] will do */
        dfm_tensor *y = ROWS_X(c, s, 1), *w0 = w ? w : tnew(c, DFM_F32, 1, SHAPE(ROWS_D(s)));
        inv = tnew(c, DFM_F32, 1, SHAPE(ROWS_N(s)));
        if (c->err) return c->err;
        dfm_op_args f = {.src = {x, w0}, .dst = {y, inv}, .f = {c->a.f[0]}};
        if ((rc = dfm_op_run(DFM_OP_RMS_NORM, &f)) < 0) return rc;
    }
    c->a.src[0] = dy, c->a.src[1] = x, c->a.src[2] = inv, c->a.src[3] = w;
    c->a.dst[0] = v == 3 ? dy : v == 4 ? NULL : ROWS_X(c, s, 1);
    c->a.dst[1] = w ? tnew(c, DFM_F32, 1, SHAPE(ROWS_D(s))) : NULL;
    c->tol = TOL_NORM;
    static const char *vs[] = {" inv w F32", " w BF16", " no w, inv", " dx = dy, w F32", " dw only, inv"};
    rows_what(c, s, vs[v]);
    return CASE_OK;
}

/* layer_norm: 0 w, b F32 with mean and rstd; 1 w, b BF16; 2 no w, b, with the stats; 3 in place,
 * w F32, no b. */
static int gen_layer_norm(int i, dfm_device dev, tcase *c)
{
    (void)dev;
    int s, v, rc = rows_case(i, 4, c, &s, &v);
    if (rc != CASE_OK) return rc;
    dfm_dtype pdt = v == 1 ? DFM_BF16 : DFM_F32;
    dfm_tensor *x = ROWS_X(c, s, 4);
    c->a.src[0] = x;
    c->a.src[1] = v == 2 ? NULL : tnew(c, pdt, 1, SHAPE(ROWS_D(s)));
    c->a.src[2] = v == 2 || v == 3 ? NULL : tnew(c, pdt, 1, SHAPE(ROWS_D(s)));
    c->a.dst[0] = v == 3 ? x : ROWS_X(c, s, 1);
    if (v == 0 || v == 2) {
        c->a.dst[1] = tnew(c, DFM_F32, 1, SHAPE(ROWS_N(s)));
        c->a.dst[2] = tnew(c, DFM_F32, 1, SHAPE(ROWS_N(s)));
    }
    c->a.f[0] = 1e-5f;
    c->tol = TOL_NORM;
    static const char *vs[] = {" w, b F32, stats", " w, b BF16", " no w, b, stats", " in place, w F32"};
    rows_what(c, s, vs[v]);
    return CASE_OK;
}

/* layer_norm_bwd: 0 stats saved, w F32; 1 stats recomputed, w BF16; 2 no w, stats saved (dx, db);
 * 3 dx = dy, recomputed; 4 dw and db only, saved. dw, db accumulate into random contents. */
static int gen_layer_norm_bwd(int i, dfm_device dev, tcase *c)
{
    (void)dev;
    int s, v, rc = rows_case(i, 5, c, &s, &v);
    if (rc != CASE_OK) return rc;
    dfm_tensor *dy = ROWS_X(c, s, 1), *x = ROWS_X(c, s, 4);
    dfm_tensor *w = v == 2 ? NULL : tnew(c, v == 1 ? DFM_BF16 : DFM_F32, 1, SHAPE(ROWS_D(s)));
    dfm_tensor *mean = NULL, *rstd = NULL;
    c->a.f[0] = 1e-5f;
    if (v == 0 || v == 2 || v == 4) {
        dfm_tensor *y = ROWS_X(c, s, 1);
        mean = tnew(c, DFM_F32, 1, SHAPE(ROWS_N(s)));
        rstd = tnew(c, DFM_F32, 1, SHAPE(ROWS_N(s)));
        if (c->err) return c->err;
        dfm_op_args f = {.src = {x}, .dst = {y, mean, rstd}, .f = {c->a.f[0]}};
        if ((rc = dfm_op_run(DFM_OP_LAYER_NORM, &f)) < 0) return rc;
    }
    c->a.src[0] = dy, c->a.src[1] = x, c->a.src[2] = mean, c->a.src[3] = rstd, c->a.src[4] = w;
    c->a.dst[0] = v == 3 ? dy : v == 4 ? NULL : ROWS_X(c, s, 1);
    c->a.dst[1] = w ? tnew(c, DFM_F32, 1, SHAPE(ROWS_D(s))) : NULL;
    c->a.dst[2] = tnew(c, DFM_F32, 1, SHAPE(ROWS_D(s)));
    c->tol = TOL_NORM;
    static const char *vs[] = {" stats, w F32", " w BF16", " no w, stats", " dx = dy, w F32", " dw, db only, stats"};
    rows_what(c, s, vs[v]);
    return CASE_OK;
}

/* y = x + b over rows: b F32, BF16, F16 in place */
static int gen_bias_add(int i, dfm_device dev, tcase *c)
{
    (void)dev;
    int s, v, rc = rows_case(i, 3, c, &s, &v);
    if (rc != CASE_OK) return rc;
    dfm_tensor *x = ROWS_X(c, s, 1);
    c->a.src[0] = x;
    c->a.src[1] = tnew(c, g_floats[v], 1, SHAPE(ROWS_D(s)));
    c->a.dst[0] = v == 2 ? x : ROWS_X(c, s, 1);
    char more[48];
    snprintf(more, sizeof more, " b %s%s", dfm_dtype_name(g_floats[v]), v == 2 ? " in place" : "");
    rows_what(c, s, more);
    return CASE_OK;
}

/* out [N] += column sums of x [M, N] (out starts random) */
static int gen_colsum(int i, dfm_device dev, tcase *c)
{
    (void)dev;
    static const int64_t sh[][2] = {{1, 1}, {7, 33}, {300, 257}, {1000, 1}, {4096, 1536}};
    int ns = (int)(sizeof sh / sizeof sh[0]);
    if (i >= ns) return CASE_END;
    if (i == ns - 1 && c->mode != MODE_PERF) return CASE_NONE;
    c->big = i == 2 || i == ns - 1;
    c->a.src[0] = tnew(c, DFM_F32, 1, SHAPE(sh[i][0], sh[i][1]));
    c->a.dst[0] = tnew(c, DFM_F32, 1, SHAPE(sh[i][1]));
    c->tol = TOL_NORM;
    snprintf(c->what, sizeof c->what, "x [%lld,%lld]", (long long)sh[i][0], (long long)sh[i][1]);
    return CASE_OK;
}

/* Rotary embedding on [B, S, H, D] with random cos, sin [S, D/2]: 0 separate, 1 in place (the
 * backward: dx = dy). */
static int gen_rope_common(int bwd, int i, tcase *c)
{
    static const int64_t sh[][4] = {{1, 1, 1, 2}, {2, 7, 3, 8}, {1, 77, 12, 128}, {1, 1024, 12, 128}};
    int ns = (int)(sizeof sh / sizeof sh[0]);
    if (i >= ns * 2) return CASE_END;
    const int64_t *z = sh[i / 2];
    int v = i % 2;
    c->big = i / 2 == ns - 1 && v == 0;
    dfm_tensor *x = tnew(c, DFM_F32, 4, SHAPE(z[0], z[1], z[2], z[3]));
    c->a.src[0] = x;
    c->a.src[1] = tnew(c, DFM_F32, 1, SHAPE(z[1], z[3] / 2));
    c->a.src[2] = tnew(c, DFM_F32, 1, SHAPE(z[1], z[3] / 2));
    c->a.dst[0] = v ? x : tnew(c, DFM_F32, 1, SHAPE(z[0], z[1], z[2], z[3]));
    c->tol = TOL_NORM;
    snprintf(c->what, sizeof c->what, "%s [%lld,%lld,%lld,%lld]%s", bwd ? "dy" : "x", (long long)z[0], (long long)z[1],
             (long long)z[2], (long long)z[3], v ? (bwd ? " dx = dy" : " in place") : "");
    return CASE_OK;
}
static int gen_rope(int i, dfm_device dev, tcase *c) { return (void)dev, gen_rope_common(0, i, c); }
static int gen_rope_bwd(int i, dfm_device dev, tcase *c) { return (void)dev, gen_rope_common(1, i, c); }

/* Modulation shapes x [B, S, D] with e [B, K, D] */
static const int64_t g_mod[][4] = {{1, 1, 1, 6}, {2, 7, 33, 6}, {2, 5, 16, 2}, {1, 1024, 1536, 6}};
#define NMOD (int)(sizeof g_mod / sizeof g_mod[0])

static int mod_case(int i, int nv, tcase *c, const int64_t **z, int *v)
{
    if (i >= NMOD * nv) return CASE_END;
    *z = g_mod[i / nv], *v = i % nv;
    c->big = i / nv == NMOD - 1 && *v == 0;
    return CASE_OK;
}
#define MOD_X(c, z, scale) tnew(c, DFM_F32, scale, SHAPE(z[0], z[1], z[2]))
#define MOD_E(c, z) tnew(c, DFM_F32, 1, SHAPE(z[0], z[3], z[2]))

static void mod_what(tcase *c, const int64_t *z, const char *more)
{
    snprintf(c->what, sizeof c->what, "x [%lld,%lld,%lld] e [%lld,%lld,%lld] chunks %lld,%lld%s", (long long)z[0],
             (long long)z[1], (long long)z[2], (long long)z[0], (long long)z[3], (long long)z[2], (long long)c->a.i[0],
             (long long)c->a.i[1], more);
}

/* modulate: 0 chunks (1, 0) separate, 1 chunks (K-1, K-2) in place */
static int gen_modulate(int i, dfm_device dev, tcase *c)
{
    (void)dev;
    const int64_t *z;
    int v, rc = mod_case(i, 2, c, &z, &v);
    if (rc != CASE_OK) return rc;
    dfm_tensor *x = MOD_X(c, z, 4);
    c->a.src[0] = x, c->a.src[1] = MOD_E(c, z);
    c->a.dst[0] = v ? x : MOD_X(c, z, 1);
    c->a.i[0] = v ? z[3] - 1 : 1, c->a.i[1] = v ? z[3] - 2 : 0;
    c->tol = TOL_NORM;
    mod_what(c, z, v ? " in place" : "");
    return CASE_OK;
}

/* modulate_bwd: 0 dx and de; 1 dx = dy; 2 de only; 3 dx only. de accumulates into random contents. */
static int gen_modulate_bwd(int i, dfm_device dev, tcase *c)
{
    (void)dev;
    const int64_t *z;
    int v, rc = mod_case(i, 4, c, &z, &v);
    if (rc != CASE_OK) return rc;
    dfm_tensor *dy = MOD_X(c, z, 1);
    c->a.src[0] = dy, c->a.src[1] = MOD_X(c, z, 4), c->a.src[2] = MOD_E(c, z);
    c->a.dst[0] = v == 1 ? dy : v == 2 ? NULL : MOD_X(c, z, 1);
    c->a.dst[1] = v == 3 ? NULL : MOD_E(c, z);
    c->a.i[0] = v & 1 ? z[3] - 1 : 1, c->a.i[1] = v & 1 ? z[3] - 2 : 0;
    c->tol = TOL_NORM;
    static const char *vs[] = {"", " dx = dy", " de only", " dx only"};
    mod_what(c, z, vs[v]);
    return CASE_OK;
}

/* gate_residual: 0 separate (gate chunk 1), 1 y = x (chunk K-1), 2 y = a (chunk 0) */
static int gen_gate_residual(int i, dfm_device dev, tcase *c)
{
    (void)dev;
    const int64_t *z;
    int v, rc = mod_case(i, 3, c, &z, &v);
    if (rc != CASE_OK) return rc;
    dfm_tensor *x = MOD_X(c, z, 1), *a = MOD_X(c, z, 1);
    c->a.src[0] = x, c->a.src[1] = a, c->a.src[2] = MOD_E(c, z);
    c->a.dst[0] = v == 0 ? MOD_X(c, z, 1) : v == 1 ? x : a;
    c->a.i[0] = v == 0 ? 1 : v == 1 ? z[3] - 1 : 0;
    c->tol = TOL_NORM;
    mod_what(c, z, v == 1 ? " y = x" : v == 2 ? " y = a" : "");
    return CASE_OK;
}

/* gate_residual_bwd: 0 da and de; 1 da = dy; 2 da = a; 3 de only; 4 da only. de accumulates. */
static int gen_gate_residual_bwd(int i, dfm_device dev, tcase *c)
{
    (void)dev;
    const int64_t *z;
    int v, rc = mod_case(i, 5, c, &z, &v);
    if (rc != CASE_OK) return rc;
    dfm_tensor *dy = MOD_X(c, z, 1), *a = MOD_X(c, z, 1);
    c->a.src[0] = dy, c->a.src[1] = a, c->a.src[2] = MOD_E(c, z);
    c->a.dst[0] = v == 1 ? dy : v == 2 ? a : v == 3 ? NULL : MOD_X(c, z, 1);
    c->a.dst[1] = v == 4 ? NULL : MOD_E(c, z);
    c->a.i[0] = v == 0 ? 1 : v == 1 ? z[3] - 1 : 0;
    c->tol = TOL_NORM;
    static const char *vs[] = {"", " da = dy", " da = a", " de only", " da only"};
    mod_what(c, z, vs[v]);
    return CASE_OK;
}

/* data movement: every element size (F32, BF16, U8, I64), bit for bit */
static const dfm_dtype g_move[] = {DFM_F32, DFM_BF16, DFM_U8, DFM_I64};

static int gen_transpose2d(int i, dfm_device dev, tcase *c)
{
    (void)dev;
    static const int64_t tr[][2] = {{1, 1},  {1, 37},  {37, 1},   {32, 32},   {33, 65},
                                    {70, 31}, {1000, 3}, {257, 513}, {4096, 4096}};
    int ns = (int)(sizeof tr / sizeof tr[0]);
    if (i >= ns * 4) return CASE_END;
    int s = i / 4;
    dfm_dtype dt = g_move[i % 4];
    if (s == ns - 1 && (c->mode != MODE_PERF || dt != DFM_F32)) return CASE_NONE;
    c->big = s >= ns - 2;
    c->a.src[0] = tnew(c, dt, 1, SHAPE(tr[s][0], tr[s][1]));
    c->a.dst[0] = tnew(c, dt, 1, SHAPE(tr[s][1], tr[s][0]));
    snprintf(c->what, sizeof c->what, "[%lld,%lld] %s", (long long)tr[s][0], (long long)tr[s][1], dfm_dtype_name(dt));
    return CASE_OK;
}

static int gen_upsample_nearest2x(int i, dfm_device dev, tcase *c)
{
    (void)dev;
    static const int64_t up[][4] = {{1, 1, 1, 1}, {3, 2, 5, 7}, {2, 1, 16, 1}, {1, 3, 1, 9}, {4, 2, 33, 17}, {96, 4, 128, 128}};
    int ns = (int)(sizeof up / sizeof up[0]);
    if (i >= ns * 4) return CASE_END;
    int s = i / 4;
    dfm_dtype dt = g_move[i % 4];
    if (s == ns - 1 && (c->mode != MODE_PERF || dt != DFM_F32)) return CASE_NONE;
    const int64_t *z = up[s];
    c->big = s >= ns - 2;
    c->a.src[0] = tnew(c, dt, 1, SHAPE(z[0], z[1], z[2], z[3]));
    c->a.dst[0] = tnew(c, dt, 1, SHAPE(z[0], z[1], 2 * z[2], 2 * z[3]));
    snprintf(c->what, sizeof c->what, "[%lld,%lld,%lld,%lld] %s", (long long)z[0], (long long)z[1], (long long)z[2],
             (long long)z[3], dfm_dtype_name(dt));
    return CASE_OK;
}

/* along every dimension of [C, T, H, W], b adding 0 (empty), 1 or 2 along it */
static int gen_concat(int i, dfm_device dev, tcase *c)
{
    (void)dev;
    static const int64_t small[4] = {3, 2, 5, 7}, large[4] = {96, 4, 128, 128};
    if (i >= 4 * 3 * 4 + 2) return CASE_END;
    const int64_t *base = small;
    int dim, extra;
    dfm_dtype dt;
    if (i < 48) {
        dt = g_move[i / 12], dim = (i / 3) % 4, extra = i % 3;
    } else {
        if (c->mode != MODE_PERF) return CASE_NONE;
        base = large, dt = DFM_F32, dim = i - 48, extra = (int)large[dim], c->big = 1;
    }
    int64_t sa[4], sb[4], sy[4];
    memcpy(sa, base, sizeof sa);
    memcpy(sb, base, sizeof sb);
    memcpy(sy, base, sizeof sy);
    sb[dim] = extra, sy[dim] = base[dim] + extra;
    c->a.src[0] = tnew(c, dt, 1, 4, sa);
    c->a.src[1] = tnew(c, dt, 1, 4, sb);
    c->a.dst[0] = tnew(c, dt, 1, 4, sy);
    c->a.i[0] = dim;
    char b0[64], b1[64];
    snprintf(c->what, sizeof c->what, "%s + %s dim %d %s", shp(c->a.src[0], b0, sizeof b0), shp(c->a.src[1], b1, sizeof b1),
             dim, dfm_dtype_name(dt));
    return CASE_OK;
}

/* frames [t0, t0 + n) of [C, T, H, W]; put_frames writes them back into a random y */
static int gen_frames_common(int put, int i, tcase *c)
{
    static const int64_t rng[][2] = {{2, 4}, {0, 9}, {8, 1}}; /* t0, n of T = 9 */
    int64_t ch = 3, t = 9, h = 4, w = 5, t0, n;
    dfm_dtype dt;
    if (i < 3 * 4) {
        dt = g_move[i / 3], t0 = rng[i % 3][0], n = rng[i % 3][1];
    } else if (i == 12) {
        if (c->mode != MODE_PERF) return CASE_NONE;
        dt = DFM_F32, ch = 96, t = 21, h = 64, w = 64, t0 = 4, n = 8, c->big = 1;
    } else
        return CASE_END;
    dfm_tensor *whole = tnew(c, dt, 1, SHAPE(ch, t, h, w)), *part = tnew(c, dt, 1, SHAPE(ch, n, h, w));
    c->a.src[0] = put ? part : whole;
    c->a.dst[0] = put ? whole : part;
    c->a.i[0] = t0;
    snprintf(c->what, sizeof c->what, "frames %lld..%lld of [%lld,%lld,%lld,%lld] %s", (long long)t0,
             (long long)(t0 + n), (long long)ch, (long long)t, (long long)h, (long long)w, dfm_dtype_name(dt));
    return CASE_OK;
}
static int gen_frames(int i, dfm_device dev, tcase *c) { return (void)dev, gen_frames_common(0, i, c); }
static int gen_put_frames(int i, dfm_device dev, tcase *c) { return (void)dev, gen_frames_common(1, i, c); }

/* Non-finite scan: F32/BF16/F16 with none, one or three NaN/Inf planted at random positions
 * (r[0] and r[1] known in advance), and U8, which has none by definition. */
static int gen_count_nonfinite(int i, dfm_device dev, tcase *c)
{
    (void)dev;
    static const int64_t ns[] = {1, 1000, 100003, 1 << 24};
    if (i > 4 * 3 * 3) return CASE_END;
    int64_t n = 1000;
    dfm_dtype dt = DFM_U8;
    int plant = 0;
    if (i < 36) {
        n = ns[i / 9], dt = g_floats[(i / 3) % 3], plant = i % 3 == 2 ? 3 : i % 3;
        if (i / 9 == 3 && (c->mode != MODE_PERF || plant != 1)) return CASE_NONE;
        c->big = i / 9 >= 2 && plant == 1;
    }
    dfm_tensor *x = tnew(c, dt, 1, SHAPE(n));
    c->a.src[0] = x;
    c->has_want = 1, c->want_r[0] = 0, c->want_r[1] = -1;
    if (c->err) return c->err;
    for (int k = 0; k < plant; k++) {
        int64_t p = (int64_t)(rnd64() % (uint64_t)n);
        int kind = (k + i) % 3; /* NaN, +Inf, -Inf */
        if (dt == DFM_F32) {
            static const uint32_t bits[3] = {0x7fc00000u, 0x7f800000u, 0xff800000u};
            int32_t was;
            memcpy(&was, (char *)x->data + 4 * p, 4);
            if ((was & 0x7f800000) == 0x7f800000) continue; /* planted there already */
            memcpy((char *)x->data + 4 * p, &bits[kind], 4);
        } else {
            static const uint16_t bf[3] = {0x7fc0u, 0x7f80u, 0xff80u}, hf[3] = {0x7e00u, 0x7c00u, 0xfc00u};
            uint16_t *q = x->data, e = dt == DFM_BF16 ? 0x7f80u : 0x7c00u;
            if ((q[p] & e) == e) continue;
            q[p] = dt == DFM_BF16 ? bf[kind] : hf[kind];
        }
        c->want_r[0]++;
        if (c->want_r[1] < 0 || p < c->want_r[1]) c->want_r[1] = p;
    }
    snprintf(c->what, sizeof c->what, "%s n %lld, %lld planted", dfm_dtype_name(dt), (long long)n,
             (long long)c->want_r[0]);
    return CASE_OK;
}

/* Patch rows of a video latent [B, C, F, H, W] (the transformer's patch embedding), in both
 * column orders; unpatchify is the inverse. Bit for bit. */
static int gen_patch_common(int un, int i, tcase *c)
{
    static const int64_t sh[][8] = {/* B, C, F, H, W, pt, ph, pw */
                                    {1, 1, 1, 1, 1, 1, 1, 1},  {2, 3, 4, 6, 8, 1, 2, 2},     {1, 4, 4, 6, 6, 2, 3, 2},
                                    {1, 16, 3, 10, 12, 1, 2, 2}, {1, 16, 21, 60, 104, 1, 2, 2}};
    int ns = (int)(sizeof sh / sizeof sh[0]);
    if (i >= ns * 2) return CASE_END;
    const int64_t *z = sh[i / 2];
    int order = i % 2;
    c->big = i / 2 == ns - 1;
    int64_t n = z[0] * (z[2] / z[5]) * (z[3] / z[6]) * (z[4] / z[7]), cols = z[1] * z[5] * z[6] * z[7];
    dfm_tensor *x = tnew(c, DFM_F32, 1, SHAPE(z[0], z[1], z[2], z[3], z[4]));
    dfm_tensor *rows = tnew(c, DFM_F32, 1, SHAPE(n, cols));
    c->a.src[0] = un ? rows : x;
    c->a.dst[0] = un ? x : rows;
    for (int k = 0; k < 3; k++) c->a.i[k] = z[5 + k];
    c->a.i[3] = order;
    snprintf(c->what, sizeof c->what, "x [%lld,%lld,%lld,%lld,%lld] patch %lld,%lld,%lld %s", (long long)z[0],
             (long long)z[1], (long long)z[2], (long long)z[3], (long long)z[4], (long long)z[5], (long long)z[6],
             (long long)z[7], order ? "position-major" : "channel-major");
    return CASE_OK;
}
static int gen_patchify(int i, dfm_device dev, tcase *c) { return (void)dev, gen_patch_common(0, i, c); }
static int gen_unpatchify(int i, dfm_device dev, tcase *c) { return (void)dev, gen_patch_common(1, i, c); }

/* adamw: sizes straddling the launch and thread blocks, 3 coefficient sets: 0 step 1, wd 0.01;
 * 1 step 50, wd 0; 2 beta1 0.3 (lerp weight 0.7: the other lerp branch), step 7, wd 0.1, eps
 * 1e-6. v >= 0 as the optimizer keeps it. Bit for bit: every operation is one IEEE rounding. */
static dfm_adamw_coef g_adamw_coef[3];
static int gen_adamw(int i, dfm_device dev, tcase *c)
{
    (void)dev;
    static const int64_t ns[] = {1, 7, 257, 4099, 100003};
    int nv = 3;
    if (i >= (int)(sizeof ns / sizeof ns[0]) * nv) return CASE_END;
    int64_t n = ns[i / nv];
    int v = i % nv;
    dfm_adamw_opts o = {0.9, 0.999, 1e-8, v == 0 ? 0.01 : v == 1 ? 0.0 : 0.1};
    if (v == 2) o.beta1 = 0.3, o.eps = 1e-6;
    dfm_adamw_coef_at(&o, v == 1 ? 3e-4 : 1e-3, v == 0 ? 1 : v == 1 ? 50 : 7, &g_adamw_coef[v]);
    c->a.src[0] = tnew(c, DFM_F32, 1, SHAPE(n));
    c->a.dst[0] = tnew(c, DFM_F32, 1, SHAPE(n));
    c->a.dst[1] = tnew(c, DFM_F32, 0.1f, SHAPE(n));
    dfm_tensor *vt = c->a.dst[2] = tnew(c, DFM_F32, 0.01f, SHAPE(n));
    if (c->err) return CASE_OK;
    for (int64_t k = 0; k < n; k++) ((float *)vt->data)[k] = fabsf(((float *)vt->data)[k]);
    c->a.p = &g_adamw_coef[v];
    c->big = n == 100003 && v == 0;
    snprintf(c->what, sizeof c->what, "n %lld %s", (long long)n,
             v == 0 ? "step 1 wd 0.01" : v == 1 ? "step 50 wd 0" : "beta1 0.3 step 7 wd 0.1 eps 1e-6");
    return CASE_OK;
}

/* sumsq: sizes below, at and past the lane count (one, two and more rows of lanes); r[0] holds
 * the double's bits: bit for bit across devices (the same lane order). */
static int gen_sumsq(int i, dfm_device dev, tcase *c)
{
    (void)dev;
    static const int64_t ns[] = {1, 7, 4099, 65535, 65536, 65537, 300007};
    if (i >= (int)(sizeof ns / sizeof ns[0])) return CASE_END;
    c->a.src[0] = tnew(c, DFM_F32, 3, SHAPE(ns[i]));
    c->big = ns[i] == 300007;
    snprintf(c->what, sizeof c->what, "n %lld", (long long)ns[i]);
    return CASE_OK;
}

/* ---- flop counts (perf mode; ops without one are reported in GB/s of operand bytes) --------- */

static double flop_conv3d(const dfm_op_args *a)
{
    const dfm_tensor *w = a->src[1];
    return 2.0 * (double)dfm_tensor_numel(a->dst[0]) * (double)(dfm_tensor_numel(w) / w->shape[0]);
}
static double flop_matmul(const dfm_op_args *a)
{
    const dfm_tensor *y = a->dst[0], *x = a->src[0];
    return 2.0 * (double)y->shape[0] * (double)y->shape[1] * (double)(a->i[0] ? x->shape[0] : x->shape[1]);
}
static double flop_linear(const dfm_op_args *a)
{
    double n = 0;
    for (int j = 0; j < DFM_OP_MAX_DST && a->dst[j]; j++) n += (double)a->dst[j]->shape[1];
    return 2.0 * (double)a->src[0]->shape[0] * (double)a->src[0]->shape[1] * n;
}
/* 4 flops per (query, key, d) in the forward, 10 in the backward (FlashAttention-2 counts) */
static double attn_pairs(const dfm_op_args *a)
{
    const dfm_tensor *q = a->src[0], *k = a->src[1];
    int o = k->ndim == 4;
    return (double)dfm_tensor_numel(q) * (double)(a->i[0] ? k->shape[o] : k->shape[1 + o]);
}
static double flop_attention(const dfm_op_args *a) { return 4.0 * attn_pairs(a); }
static double flop_attention_bwd(const dfm_op_args *a) { return 10.0 * attn_pairs(a); }

/* ---- the table ------------------------------------------------------------------------------- */

typedef struct {
    /* Case i of the op on dev: fill c->a (tensors made with tnew on the CPU; the caller moves them
     * to dev), c->what, c->tol, c->big. CASE_OK, CASE_END past the last case, CASE_NONE for an
     * index with no case in c->mode, or a negative DFM_E_*. */
    int (*gen)(int i, dfm_device dev, tcase *c);
    double (*flop)(const dfm_op_args *a); /* NULL: memory-bound */
} op_entry;

#define OPE(id, name, flop) [DFM_OP_##id] = {gen_##name, flop}
static const op_entry g_table[DFM_OP_COUNT] = {
    OPE(CONV3D, conv3d, flop_conv3d),
    OPE(RMS_NORM_CHANNELS, rms_norm_channels, NULL),
    OPE(SILU, silu, NULL),
    OPE(ADD, add, NULL),
    OPE(MUL, mul, NULL),
    OPE(CLAMP, clamp, NULL),
    OPE(AFFINE, affine, NULL),
    OPE(GELU_NEW, gelu_new, NULL),
    OPE(MATMUL, matmul, flop_matmul),
    OPE(LINEAR, linear, flop_linear),
    OPE(ATTENTION, attention, flop_attention),
    OPE(ATTENTION_BWD, attention_bwd, flop_attention_bwd),
    OPE(EMBEDDING, embedding, NULL),
    OPE(REL_BIAS, rel_bias, NULL),
    OPE(RMS_NORM, rms_norm, NULL),
    OPE(TRANSPOSE2D, transpose2d, NULL),
    OPE(UPSAMPLE_NEAREST2X, upsample_nearest2x, NULL),
    OPE(CONCAT, concat, NULL),
    OPE(FRAMES, frames, NULL),
    OPE(PUT_FRAMES, put_frames, NULL),
    OPE(COUNT_NONFINITE, count_nonfinite, NULL),
    OPE(BIAS_ADD, bias_add, NULL),
    OPE(DROPOUT, dropout, NULL),
    OPE(RMS_NORM_BWD, rms_norm_bwd, NULL),
    OPE(LAYER_NORM, layer_norm, NULL),
    OPE(LAYER_NORM_BWD, layer_norm_bwd, NULL),
    OPE(GELU_TANH, gelu_tanh, NULL),
    OPE(GELU_TANH_BWD, gelu_tanh_bwd, NULL),
    OPE(SILU_BWD, silu_bwd, NULL),
    OPE(ROPE, rope, NULL),
    OPE(ROPE_BWD, rope_bwd, NULL),
    OPE(MODULATE, modulate, NULL),
    OPE(MODULATE_BWD, modulate_bwd, NULL),
    OPE(GATE_RESIDUAL, gate_residual, NULL),
    OPE(GATE_RESIDUAL_BWD, gate_residual_bwd, NULL),
    OPE(COLSUM, colsum, NULL),
    OPE(PATCHIFY, patchify, NULL),
    OPE(UNPATCHIFY, unpatchify, NULL),
    OPE(ADAMW, adamw, NULL),
    OPE(SUMSQ, sumsq, NULL),
};
#undef OPE

static const char *op_name(int op) { return dfm_op_get((dfm_op_id)op)->name; }

/* Make case i of op on dev: reseed from (op, i), generate, move the operands to dev. CASE_OK
 * (free it with case_free), CASE_END, CASE_NONE, or a negative DFM_E_* (nothing to free). */
static int case_make(int op, int i, dfm_device dev, int mode, tcase *c)
{
    memset(c, 0, sizeof *c);
    c->mode = mode;
    rng_seed(op, i, 0);
    int rc = g_table[op].gen(i, dev, c);
    if (rc == CASE_OK && c->err) rc = c->err;
    for (int j = 0; j < c->nt && rc == CASE_OK && dev != DFM_CPU; j++) {
        if (c->host >> j & 1) continue;
        dfm_tensor moved;
        if ((rc = dfm_tensor_copy(&moved, &c->t[j], dev)) < 0) break;
        dfm_tensor_free(&c->t[j]);
        c->t[j] = moved; /* src/dst point at the slot, so aliasing is kept */
    }
    if (rc != CASE_OK) case_free(c);
    return rc;
}

/* A case that could not be made: report and count. */
static void setup_failed(int op, int i, int rc)
{
    fprintf(stderr, "  %s case %d: setup failed (rc %d): %s\n", op_name(op), i, rc, dfm_errmsg());
    dfm_test_failures++;
}

/* ---- mode "cuda": CUDA against the CPU ------------------------------------------------------- */

/* Compare one device output with the CPU's: bit for bit when tol is 0, otherwise F32 values
 * within tol * max|ref| (NaN where the reference has NaN). Returns 1 when they agree. */
static int agree(const char *what, const dfm_tensor *ref, const dfm_tensor *dev, double tol)
{
    dfm_tensor got;
    if (dfm_tensor_copy(&got, dev, DFM_CPU) < 0) {
        fprintf(stderr, "  %s: copy back failed: %s\n", what, dfm_errmsg());
        return 0;
    }
    size_t nb = dfm_tensor_nbytes(ref);
    int ok = 1;
    if (tol == 0.0 || ref->dtype != DFM_F32) {
        if (nb && memcmp(got.data, ref->data, nb)) {
            const uint8_t *a = got.data, *b = ref->data;
            size_t i = 0;
            while (a[i] == b[i]) i++;
            fprintf(stderr, "  %s: differs from the CPU at byte %zu of %zu\n", what, i, nb);
            ok = 0;
        }
    } else {
        const float *a = got.data, *b = ref->data;
        int64_t n = dfm_tensor_numel(ref), worst = 0;
        double scale = 0, maxd = 0;
        for (int64_t i = 0; i < n; i++)
            if (fabs(b[i]) > scale) scale = fabs(b[i]);
        if (scale == 0) scale = 1;
        for (int64_t i = 0; i < n; i++) {
            double d = isnan(b[i]) ? (isnan(a[i]) ? 0 : INFINITY) : fabs((double)a[i] - b[i]) / scale;
            if (!(d <= maxd)) {
                maxd = d, worst = i;
                if (isnan(d)) break;
            }
        }
        if (!(maxd <= tol)) {
            fprintf(stderr, "  %s: max error %.3g of max|ref| %.3g at %lld (cuda %g, cpu %g), tolerance %g\n", what,
                    maxd, scale, (long long)worst, a[worst], b[worst], tol);
            ok = 0;
        }
    }
    dfm_tensor_free(&got);
    return ok;
}

/* Run case i of op on CUDA and compare with the CPU instance ref (already run). */
static void cuda_case(int op, int i, tcase *ref, const char *what)
{
    tcase g;
    int rc = case_make(op, i, DFM_CUDA, MODE_CHECK, &g);
    if (rc != CASE_OK) {
        setup_failed(op, i, rc);
        return;
    }
    if ((rc = dfm_op_run((dfm_op_id)op, &g.a)) < 0) {
        fprintf(stderr, "  %s: cuda rc %d: %s\n", what, rc, dfm_errmsg());
        dfm_test_failures++;
    } else {
        int ok = 1;
        for (int j = 0; j < DFM_OP_MAX_DST; j++)
            if (ref->a.dst[j]) ok &= agree(what, ref->a.dst[j], g.a.dst[j], ref->tol);
        if (g.a.r[0] != ref->a.r[0] || g.a.r[1] != ref->a.r[1]) {
            fprintf(stderr, "  %s: r = {%lld, %lld} on cuda, {%lld, %lld} on the cpu\n", what, (long long)g.a.r[0],
                    (long long)g.a.r[1], (long long)ref->a.r[0], (long long)ref->a.r[1]);
            ok = 0;
        }
        if (!ok) dfm_test_failures++;
    }
    case_free(&g);
}

/* One malformed record per op: case 0 with its first output replaced by an I32 [2,3,5] tensor
 * (no op takes one), or for an op without outputs its first input NULL; and every input NULL.
 * Each must be DFM_E_ARG from the op's check, not a crash. */
static void negative(int op)
{
    tcase c;
    int rc = case_make(op, 0, DFM_CPU, MODE_CHECK, &c);
    if (rc != CASE_OK) {
        setup_failed(op, 0, rc);
        return;
    }
    dfm_tensor wrong;
    if (dfm_tensor_zeros(&wrong, DFM_I32, DFM_CPU, SHAPE(2, 3, 5)) < 0) {
        setup_failed(op, 0, DFM_E_NOMEM);
        case_free(&c);
        return;
    }
    dfm_op_args bad = c.a;
    if (bad.dst[0])
        bad.dst[0] = &wrong;
    else
        bad.src[0] = NULL;
    rc = dfm_op_run((dfm_op_id)op, &bad);
    if (rc != DFM_E_ARG) {
        fprintf(stderr, "  %s: a malformed %s gives rc %d, not DFM_E_ARG\n", op_name(op),
                c.a.dst[0] ? "output (I32 [2,3,5])" : "record (no input)", rc);
        dfm_test_failures++;
    }
    bad = c.a;
    for (int j = 0; j < DFM_OP_MAX_SRC; j++) bad.src[j] = NULL;
    if ((rc = dfm_op_run((dfm_op_id)op, &bad)) != DFM_E_ARG) {
        fprintf(stderr, "  %s: a record without inputs gives rc %d, not DFM_E_ARG\n", op_name(op), rc);
        dfm_test_failures++;
    }
    dfm_tensor_free(&wrong);
    case_free(&c);
}

TEST(backend_cuda)
{
    /* The CPU half runs everywhere: every case passes its op's check and runs on the CPU (so the
     * generators are tested without a GPU); the CUDA half compares when a device is here. */
    int gpu = !no_gpu();
    int ncases = 0;
    for (int op = 0; op < DFM_OP_COUNT; op++) {
        if (!g_table[op].gen) {
            fprintf(stderr, "  op %s has no case generator in g_table\n", op_name(op));
            dfm_test_failures++;
            continue;
        }
        int n = 0;
        for (int i = 0; i < 100000; i++) {
            tcase c;
            int rc = case_make(op, i, DFM_CPU, MODE_CHECK, &c);
            if (rc == CASE_END) break;
            if (rc == CASE_NONE) continue;
            if (rc < 0) {
                setup_failed(op, i, rc);
                continue;
            }
            char what[300];
            snprintf(what, sizeof what, "%s %s", op_name(op), c.what);
            n++;
            if ((rc = dfm_op_get((dfm_op_id)op)->check(&c.a)) != 0 || (rc = dfm_op_run((dfm_op_id)op, &c.a)) != 0) {
                fprintf(stderr, "  %s: cpu rc %d: %s\n", what, rc, dfm_errmsg());
                dfm_test_failures++;
            } else if (c.has_want && (c.a.r[0] != c.want_r[0] || c.a.r[1] != c.want_r[1])) {
                fprintf(stderr, "  %s: r = {%lld, %lld}, want {%lld, %lld}\n", what, (long long)c.a.r[0],
                        (long long)c.a.r[1], (long long)c.want_r[0], (long long)c.want_r[1]);
                dfm_test_failures++;
            } else if (gpu)
                cuda_case(op, i, &c, what);
            case_free(&c);
        }
        if (n == 0) {
            fprintf(stderr, "  op %s has no cases\n", op_name(op));
            dfm_test_failures++;
        }
        ncases += n;
        negative(op);
    }
    fprintf(stderr, "  %d cases over %d ops%s\n", ncases, (int)DFM_OP_COUNT, gpu ? ", cuda against the cpu" : " on the cpu");
    dfm_ops_release_scratch();
}

/* ---- mode "grad": finite differences against the analytic gradients ------------------------- *
 *
 * For a forward op with output y = dst[0] and a fixed random g of y's shape, L = sum(y * g) (the
 * other outputs, saved statistics such as lse or inv, are not part of L). A grad spec names the
 * differentiable inputs (src indices) and a function computing dL/dsrc with ops of the table. The
 * framework runs it on the op's own cases (CPU, f32 compute, the differentiable inputs present
 * ones F32, no output aliasing an input, small enough: grad_usable), then for each
 * differentiable input takes central differences (L(x + h) - L(x - h)) / (h+ + h-) on every
 * element (inputs of <= 64) or on 64 random ones (h = eps * max(1, |x|), h+ and h- the steps as
 * rounded to f32, L summed in double, every output's initial contents restored before each
 * forward so accumulating ops work) and requires max |fd - analytic| <= tol * max|analytic|.
 *
 * Adding a spec when a backward op enters the table (DFM_OP_<X>_BWD with src = {forward inputs...,
 * saved stats, dy}, dst = {dx..., dparams...}):
 *   1. give the backward op a generator in g_table like any op: the cuda mode then compares it
 *      across devices (gen_rms_norm_bwd is an example: its saved stats come from a CPU forward);
 *   2. write grad_<x>(fwd, dy, dx): fwd holds the forward's arguments right after a forward run
 *      (its dst hold y and any saved stats); dy is dL/dy; dx[k] (zeroed, F32, the shape of
 *      src[in[k]], NULL when that input is absent) receives dL/dsrc[in[k]]. Build the backward's
 *      record from fwd->src, the stats (fwd->dst[1...], or NULL when the backward recomputes
 *      them; grad_attention makes scratch ones) and dy, point its dst at dx[], dfm_op_run it;
 *   3. add {DFM_OP_<X>, nin, {src indices}, eps, tol, grad_<x>} to g_grads. Choose eps where the
 *      f32 rounding noise of L and the h^2 truncation balance (for the norms and attention 1e-2,
 *      the activations 3e-3: worst errors 1.4e-4 and 5e-5 here; 1e-3 is 10x noisier), and tol
 *      about 10x the worst error seen, tight enough that a backward off by 1% fails (1e-3 for
 *      the elementwise ops, 2e-3 for the reductions). Ops linear in each input (matmul, mul,
 *      rope, modulate, ...) are exact in h up to rounding: eps 1e-2.
 * Forward ops without a backward op (and so without a spec): conv3d, rms_norm_channels, clamp,
 * gelu_new, linear (its layer's backward is matmuls), and the gathers and data movement.
 */

typedef int (*grad_fn)(const dfm_op_args *fwd, const dfm_tensor *dy, dfm_tensor *const *dx);
typedef struct {
    dfm_op_id op;
    int nin, in[DFM_OP_MAX_SRC]; /* differentiable inputs: src indices */
    double eps, tol;
    grad_fn grad;
} grad_spec;

static int run_matmul(const dfm_tensor *a, int ta, const dfm_tensor *b, int tb, dfm_tensor *y)
{
    dfm_op_args m = {.src = {a, b}, .dst = {y}, .i = {ta, tb}};
    return dfm_op_run(DFM_OP_MATMUL, &m);
}
static int run_colsum(const dfm_tensor *x, dfm_tensor *out) /* out += column sums of x [M, N] */
{
    dfm_op_args m = {.src = {x}, .dst = {out}};
    return dfm_op_run(DFM_OP_COLSUM, &m);
}
static int run_copy(const dfm_tensor *x, dfm_tensor *y) { return dfm_op_affine(x, 1.0f, 0.0f, y); }

/* Y = op(A) op(B) + bias:  dA = dY op(B)^T (transposed back when ta), dB = op(A)^T dY
 * (transposed back when tb), both matmuls; dbias = column sums of dY. */
static int grad_matmul(const dfm_op_args *f, const dfm_tensor *g, dfm_tensor *const *dx)
{
    const dfm_tensor *a = f->src[0], *b = f->src[1];
    int ta = f->i[0] != 0, tb = f->i[1] != 0, rc = 0;
    if (dx[0]) rc = ta ? run_matmul(b, tb, g, 1, dx[0]) : run_matmul(g, 0, b, !tb, dx[0]);
    if (!rc && dx[1]) rc = tb ? run_matmul(g, 1, a, ta, dx[1]) : run_matmul(a, !ta, g, 0, dx[1]);
    if (!rc && dx[2]) rc = run_colsum(g, dx[2]);
    return rc;
}

/* y = a * b:  da = dy * b, db = dy * a */
static int grad_mul(const dfm_op_args *f, const dfm_tensor *g, dfm_tensor *const *dx)
{
    int rc = 0;
    if (dx[0]) rc = dfm_op_mul(g, f->src[1], dx[0]);
    if (!rc && dx[1]) rc = dfm_op_mul(g, f->src[0], dx[1]);
    return rc;
}

/* y = a + b:  da = db = dy */
static int grad_add(const dfm_op_args *f, const dfm_tensor *g, dfm_tensor *const *dx)
{
    (void)f;
    int rc = 0;
    for (int k = 0; k < 2 && !rc; k++)
        if (dx[k]) rc = run_copy(g, dx[k]);
    return rc;
}

/* y = x * scale + shift:  dx = scale * dy */
static int grad_affine(const dfm_op_args *f, const dfm_tensor *g, dfm_tensor *const *dx)
{
    return dfm_op_affine(g, f->f[0], 0.0f, dx[0]);
}

/* y = x + b over rows:  dx = dy, db = column sums of dy as [rows, N] */
static int grad_bias_add(const dfm_op_args *f, const dfm_tensor *g, dfm_tensor *const *dx)
{
    int rc = dx[0] ? run_copy(g, dx[0]) : 0;
    if (!rc && dx[1]) {
        int64_t n = f->src[1]->shape[0];
        dfm_tensor rows = dfm_tensor_view(g->data, DFM_F32, DFM_CPU, SHAPE(n ? dfm_tensor_numel(g) / n : 0, n));
        rc = run_colsum(&rows, dx[1]);
    }
    return rc;
}

/* dropout is linear with a mask regenerated from (seed, stream): dx = dropout(dy) */
static int grad_dropout(const dfm_op_args *f, const dfm_tensor *g, dfm_tensor *const *dx)
{
    dfm_op_args b = {.src = {g}, .dst = {dx[0]}, .f = {f->f[0]}, .i = {f->i[0], f->i[1]}};
    return dfm_op_run(DFM_OP_DROPOUT, &b);
}

/* silu, gelu_tanh: their backward ops, src {dy, x} */
static int act_bwd(dfm_op_id op, const dfm_op_args *f, const dfm_tensor *g, dfm_tensor *const *dx)
{
    dfm_op_args b = {.src = {g, f->src[0]}, .dst = {dx[0]}};
    return dfm_op_run(op, &b);
}
static int grad_silu(const dfm_op_args *f, const dfm_tensor *g, dfm_tensor *const *dx)
{
    return act_bwd(DFM_OP_SILU_BWD, f, g, dx);
}
static int grad_gelu_tanh(const dfm_op_args *f, const dfm_tensor *g, dfm_tensor *const *dx)
{
    return act_bwd(DFM_OP_GELU_TANH_BWD, f, g, dx);
}

/* rms_norm (src x, w; dst y, inv|NULL): rms_norm_bwd {dy, x, inv, w} -> {dx, dw} */
static int grad_rms_norm(const dfm_op_args *f, const dfm_tensor *g, dfm_tensor *const *dx)
{
    dfm_op_args b = {.src = {g, f->src[0], f->dst[1], f->src[1]}, .dst = {dx[0], dx[1]}, .f = {f->f[0]}};
    return dfm_op_run(DFM_OP_RMS_NORM_BWD, &b);
}

/* layer_norm (src x, w, b; dst y, mean, rstd): layer_norm_bwd {dy, x, mean, rstd, w} -> {dx, dw, db} */
static int grad_layer_norm(const dfm_op_args *f, const dfm_tensor *g, dfm_tensor *const *dx)
{
    dfm_op_args b = {.src = {g, f->src[0], f->dst[1], f->dst[2], f->src[1]}, .dst = {dx[0], dx[1], dx[2]},
                     .f = {f->f[0]}};
    return dfm_op_run(DFM_OP_LAYER_NORM_BWD, &b);
}

/* rope (src x, cos, sin): rope_bwd {dy, cos, sin} -> dx */
static int grad_rope(const dfm_op_args *f, const dfm_tensor *g, dfm_tensor *const *dx)
{
    dfm_op_args b = {.src = {g, f->src[1], f->src[2]}, .dst = {dx[0]}};
    return dfm_op_run(DFM_OP_ROPE_BWD, &b);
}

/* modulate (src x, e): modulate_bwd {dy, x, e} -> {dx, de} */
static int grad_modulate(const dfm_op_args *f, const dfm_tensor *g, dfm_tensor *const *dx)
{
    dfm_op_args b = {.src = {g, f->src[0], f->src[1]}, .dst = {dx[0], dx[1]}, .i = {f->i[0], f->i[1]}};
    return dfm_op_run(DFM_OP_MODULATE_BWD, &b);
}

/* gate_residual (src x, a, e): dx = dy; gate_residual_bwd {dy, a, e} -> {da, de} */
static int grad_gate_residual(const dfm_op_args *f, const dfm_tensor *g, dfm_tensor *const *dx)
{
    int rc = dx[0] ? run_copy(g, dx[0]) : 0;
    dfm_op_args b = {.src = {g, f->src[1], f->src[2]}, .dst = {dx[1], dx[2]}, .i = {f->i[0]}};
    return rc ? rc : dfm_op_run(DFM_OP_GATE_RESIDUAL_BWD, &b);
}

/* attention (src q, k, v, bias; dst out, lse|NULL): attention_bwd {q, k, v, bias, out, lse, dout}
 * -> {dq, dk, dv}; without a saved lse a forward into scratch makes one. */
static int grad_attention(const dfm_op_args *f, const dfm_tensor *g, dfm_tensor *const *dx)
{
    const dfm_tensor *q = f->src[0];
    dfm_tensor lse = {0};
    int rc = 0;
    if (!f->dst[1]) {
        int64_t n = q->ndim == 4 ? q->shape[0] * q->shape[1] * q->shape[2] : q->shape[0] * q->shape[1];
        dfm_op_args s = *f;
        if ((rc = dfm_tensor_alloc(&lse, DFM_F32, DFM_CPU, SHAPE(n))) < 0) return rc;
        s.dst[1] = &lse; /* out is rewritten with the same values */
        rc = dfm_op_run(DFM_OP_ATTENTION, &s);
    }
    dfm_op_args b = {.src = {q, f->src[1], f->src[2], f->src[3], f->dst[0], f->dst[1] ? f->dst[1] : &lse, g},
                     .dst = {dx[0], dx[1], dx[2]},
                     .f = {f->f[0]},
                     .i = {f->i[0]}};
    if (!rc) rc = dfm_op_run(DFM_OP_ATTENTION_BWD, &b);
    dfm_tensor_free(&lse);
    return rc;
}

/* patchify and unpatchify are each other's backward (same patch and order) */
static int grad_patch(dfm_op_id inverse, const dfm_op_args *f, const dfm_tensor *g, dfm_tensor *const *dx)
{
    dfm_op_args b = {.src = {g}, .dst = {dx[0]}, .i = {f->i[0], f->i[1], f->i[2], f->i[3]}};
    return dfm_op_run(inverse, &b);
}
static int grad_patchify(const dfm_op_args *f, const dfm_tensor *g, dfm_tensor *const *dx)
{
    return grad_patch(DFM_OP_UNPATCHIFY, f, g, dx);
}
static int grad_unpatchify(const dfm_op_args *f, const dfm_tensor *g, dfm_tensor *const *dx)
{
    return grad_patch(DFM_OP_PATCHIFY, f, g, dx);
}

static const grad_spec g_grads[] = {
    {DFM_OP_MATMUL, 3, {0, 1, 2}, 1e-2, 1e-3, grad_matmul},
    {DFM_OP_MUL, 2, {0, 1}, 1e-2, 1e-3, grad_mul},
    {DFM_OP_ADD, 2, {0, 1}, 1e-2, 1e-3, grad_add},
    {DFM_OP_AFFINE, 1, {0}, 1e-2, 1e-3, grad_affine},
    {DFM_OP_BIAS_ADD, 2, {0, 1}, 1e-2, 1e-3, grad_bias_add},
    {DFM_OP_DROPOUT, 1, {0}, 1e-2, 1e-3, grad_dropout},
    {DFM_OP_SILU, 1, {0}, 3e-3, 1e-3, grad_silu},
    {DFM_OP_GELU_TANH, 1, {0}, 3e-3, 1e-3, grad_gelu_tanh},
    {DFM_OP_RMS_NORM, 2, {0, 1}, 1e-2, 2e-3, grad_rms_norm},
    {DFM_OP_LAYER_NORM, 3, {0, 1, 2}, 1e-2, 2e-3, grad_layer_norm},
    {DFM_OP_ROPE, 1, {0}, 1e-2, 1e-3, grad_rope},
    {DFM_OP_MODULATE, 2, {0, 1}, 1e-2, 1e-3, grad_modulate},
    {DFM_OP_GATE_RESIDUAL, 3, {0, 1, 2}, 1e-2, 1e-3, grad_gate_residual},
    {DFM_OP_ATTENTION, 3, {0, 1, 2}, 1e-2, 2e-3, grad_attention},
    {DFM_OP_PATCHIFY, 1, {0}, 1e-2, 1e-3, grad_patchify},
    {DFM_OP_UNPATCHIFY, 1, {0}, 1e-2, 1e-3, grad_unpatchify},
};

/* The cases the FD check can take: f32 compute, differentiable inputs F32 on the CPU, no output
 * overlapping an input (the forward runs again and again), at most ~3 MFLOP and 2e5 elements per
 * tensor. */
static int grad_usable(const grad_spec *s, const tcase *c)
{
    if (dfm_compute_is_bf16(c->a.cc)) return 0;
    for (int k = 0; k < s->nin; k++) {
        const dfm_tensor *x = c->a.src[s->in[k]];
        if (x && x->dtype != DFM_F32) return 0;
    }
    for (int j = 0; j < DFM_OP_MAX_DST; j++) {
        const dfm_tensor *y = c->a.dst[j];
        if (!y) continue;
        if (dfm_tensor_numel(y) > 200000) return 0;
        for (int k = 0; k < DFM_OP_MAX_SRC; k++)
            if (c->a.src[k] && c->a.src[k]->data == y->data) return 0;
    }
    for (int k = 0; k < DFM_OP_MAX_SRC; k++)
        if (c->a.src[k] && dfm_tensor_numel(c->a.src[k]) > 200000) return 0;
    if (g_table[s->op].flop && g_table[s->op].flop(&c->a) > 3e6) return 0;
    return 1;
}

/* L = sum(y * g) in double (y = dst[0]), after restoring every output's initial contents y0
 * and running the forward. NAN when the forward fails. */
static double grad_loss(const grad_spec *s, tcase *c, dfm_tensor *y0, const dfm_tensor *g)
{
    for (int j = 0; j < DFM_OP_MAX_DST; j++)
        if (c->a.dst[j]) memcpy(c->a.dst[j]->data, y0[j].data, dfm_tensor_nbytes(&y0[j]));
    if (dfm_op_run(s->op, &c->a) < 0) return NAN;
    const float *y = c->a.dst[0]->data, *w = g->data;
    double l = 0;
    for (int64_t e = 0; e < dfm_tensor_numel(g); e++) l += (double)y[e] * w[e];
    return l;
}

/* The FD check of case i (c, made on the CPU) under spec s. Returns the worst error relative to
 * max|analytic| (INFINITY when something failed, with the reason printed). */
static double grad_case(const grad_spec *s, int i, tcase *c)
{
    dfm_tensor y0[DFM_OP_MAX_DST] = {{0}}, g = {0}, dx[DFM_OP_MAX_SRC] = {{0}};
    dfm_tensor *dxp[DFM_OP_MAX_SRC] = {0};
    double worst = 0;
    int rc = 0;
    rng_seed(s->op, i, 1);
    for (int j = 0; j < DFM_OP_MAX_DST && !rc; j++)
        if (c->a.dst[j]) rc = dfm_tensor_copy(&y0[j], c->a.dst[j], DFM_CPU);
    const dfm_tensor *y = c->a.dst[0];
    if (!rc && !(rc = dfm_tensor_alloc(&g, DFM_F32, DFM_CPU, y->ndim, y->shape)))
        for (int64_t e = 0; e < dfm_tensor_numel(y); e++) ((float *)g.data)[e] = urand();
    for (int k = 0; k < s->nin && !rc; k++) {
        const dfm_tensor *x = c->a.src[s->in[k]];
        if (x && !(rc = dfm_tensor_zeros(&dx[k], DFM_F32, DFM_CPU, x->ndim, x->shape))) dxp[k] = &dx[k];
    }
    /* a forward first (the spec reads its outputs and saved stats), then the analytic gradients */
    if (!rc && isnan(grad_loss(s, c, y0, &g))) rc = -1;
    if (!rc) rc = s->grad(&c->a, &g, dxp);
    if (rc) {
        fprintf(stderr, "  grad %s %s: setup or analytic gradient failed (rc %d): %s\n", op_name(s->op), c->what, rc,
                dfm_errmsg());
        worst = INFINITY;
    }
    /* Errors are relative to max|analytic| of each input, floored at 1e-2 of the largest over the
     * case's inputs and at 1e-2 (inputs and g are O(1)): a gradient that is zero or tiny in exact
     * arithmetic (softmax over one key, a norm over one element) comes out as rounding noise, not
     * as a relative error of 1. */
    double case_max = 0;
    for (int k = 0; k < s->nin; k++)
        for (int64_t e = 0; dxp[k] && e < dfm_tensor_numel(&dx[k]); e++) case_max = fmax(case_max, fabs(((float *)dx[k].data)[e]));
    int shown = 0;
    for (int k = 0; k < s->nin && !rc; k++) {
        if (!dxp[k]) continue;
        float *x = (float *)c->a.src[s->in[k]]->data;
        const float *an = dx[k].data;
        int64_t n = dfm_tensor_numel(&dx[k]);
        double scale = fmax(1e-2, 1e-2 * case_max);
        for (int64_t e = 0; e < n; e++) scale = fmax(scale, fabs(an[e]));
        int64_t nprobe = n <= 64 ? n : 64;
        for (int64_t p = 0; p < nprobe; p++) {
            int64_t e = n <= 64 ? p : (int64_t)(rnd64() % (uint64_t)n);
            float x0 = x[e], h = (float)(s->eps * fmax(1.0, fabs(x0)));
            float xp = x0 + h, xm = x0 - h;
            x[e] = xp;
            double lp = grad_loss(s, c, y0, &g);
            x[e] = xm;
            double lm = grad_loss(s, c, y0, &g);
            x[e] = x0;
            double fd = (lp - lm) / ((double)xp - (double)xm);
            double err = fabs(fd - an[e]) / scale;
            if (!(err <= s->tol) && shown++ < 3)
                fprintf(stderr, "  grad %s %s: d/dsrc[%d][%lld] = %.6g analytic, %.6g by differences (max|grad| %.3g)\n",
                        op_name(s->op), c->what, s->in[k], (long long)e, an[e], fd, scale);
            if (!(err <= worst)) worst = err;
            if (isnan(err)) break;
        }
    }
    for (int j = 0; j < DFM_OP_MAX_DST; j++) dfm_tensor_free(&y0[j]);
    for (int k = 0; k < DFM_OP_MAX_SRC; k++) dfm_tensor_free(&dx[k]);
    dfm_tensor_free(&g);
    return worst;
}

TEST(backend_grad)
{
    for (size_t si = 0; si < sizeof g_grads / sizeof g_grads[0]; si++) {
        const grad_spec *s = &g_grads[si];
        int n = 0;
        double worst = 0;
        for (int i = 0; i < 100000; i++) {
            tcase c;
            int rc = case_make(s->op, i, DFM_CPU, MODE_CHECK, &c);
            if (rc == CASE_END) break;
            if (rc == CASE_NONE) continue;
            if (rc < 0) {
                setup_failed(s->op, i, rc);
                continue;
            }
            if (grad_usable(s, &c)) {
                double e = grad_case(s, i, &c);
                n++;
                if (!(e <= worst)) worst = e;
                if (!(e <= s->tol)) dfm_test_failures++;
            }
            case_free(&c);
        }
        fprintf(stderr, "  grad %s: %d cases, worst error %.2g of max|grad| (tolerance %g)\n", op_name(s->op), n, worst,
                s->tol);
        if (n == 0) {
            fprintf(stderr, "  grad %s: no case fits the finite-difference check\n", op_name(s->op));
            dfm_test_failures++;
        }
    }
}

/* ---- mode "perf": timings of the big cases (DFM_BACKEND_PERF=1) ------------------------------ */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#ifdef DFM_HAVE_CUDA
/* Wait for the device: dfm_cuda_memcpy is synchronous, and a device-to-host copy on the legacy
 * default stream (the one every op uses, cuda/device.h) returns after all work queued before it. */
static int cuda_wait(const dfm_op_args *a)
{
    const dfm_tensor *t = a->dst[0] ? a->dst[0] : a->src[0];
    char byte;
    const char *why = NULL;
    if (!t || !dfm_tensor_nbytes(t)) return 0;
    return dfm_cuda_memcpy(&byte, t->data, 1, 1, &why) ? dfm_fail(DFM_E_IO, "cudaMemcpy: %s", why ? why : "?") : 0;
}
#endif

/* Best time in ms of running the case: one warm-up, then repeats until 0.5 s or 20 runs. */
static double time_case(int op, tcase *c, dfm_device dev)
{
    double best = INFINITY, t_end = now_s() + 0.5;
    for (int r = 0; r < 21; r++) {
        double t0 = now_s();
        int rc = dfm_op_run((dfm_op_id)op, &c->a);
#ifdef DFM_HAVE_CUDA
        if (!rc && dev == DFM_CUDA) rc = cuda_wait(&c->a);
#else
        (void)dev;
#endif
        double t = now_s() - t0;
        if (rc) {
            fprintf(stderr, "  perf %s %s: rc %d: %s\n", op_name(op), c->what, rc, dfm_errmsg());
            dfm_test_failures++;
            return NAN;
        }
        if (r > 0 && t < best) best = t;
        if (r > 0 && now_s() > t_end) break;
    }
    return best * 1e3;
}

/* "12.3 GFLOP/s" or "45.6 GB/s" */
static const char *rate(int op, const tcase *c, double ms, char *buf, size_t n)
{
    if (!(ms > 0)) return snprintf(buf, n, "-"), buf;
    if (g_table[op].flop) {
        snprintf(buf, n, "%.1f GFLOP/s", g_table[op].flop(&c->a) / (ms * 1e6));
    } else {
        double bytes = 0;
        for (int k = 0; k < DFM_OP_MAX_SRC; k++)
            if (c->a.src[k]) bytes += (double)dfm_tensor_nbytes(c->a.src[k]);
        for (int j = 0; j < DFM_OP_MAX_DST; j++)
            if (c->a.dst[j]) bytes += (double)dfm_tensor_nbytes(c->a.dst[j]);
        snprintf(buf, n, "%.1f GB/s", bytes / (ms * 1e6));
    }
    return buf;
}

TEST(backend_perf)
{
    const char *env = getenv("DFM_BACKEND_PERF");
    if (!env || strcmp(env, "1") != 0) {
        fprintf(stderr, "  (DFM_BACKEND_PERF=1 times the ops; skipped)\n");
        return;
    }
    int gpu = !no_gpu();
    fprintf(stderr, "  %d cpu threads; ops in GFLOP/s, memory-bound ops in GB/s of operand bytes\n", dfm_ops_threads());
    for (int op = 0; op < DFM_OP_COUNT; op++) {
        if (!g_table[op].gen) continue;
        for (int i = 0; i < 100000; i++) {
            tcase c;
            int rc = case_make(op, i, DFM_CPU, MODE_PERF, &c);
            if (rc == CASE_END) break;
            if (rc == CASE_NONE) continue;
            if (rc < 0) {
                setup_failed(op, i, rc);
                continue;
            }
            if (!c.big) {
                case_free(&c);
                continue;
            }
            char r1[48], r2[48] = "";
            double ms = time_case(op, &c, DFM_CPU);
            fprintf(stderr, "  %-18s %-64s cpu %9.3f ms %16s", op_name(op), c.what, ms, rate(op, &c, ms, r1, sizeof r1));
            case_free(&c);
            if (gpu && case_make(op, i, DFM_CUDA, MODE_PERF, &c) == CASE_OK) {
                ms = time_case(op, &c, DFM_CUDA);
                fprintf(stderr, "  cuda %9.3f ms %16s", ms, rate(op, &c, ms, r2, sizeof r2));
                case_free(&c);
            }
            fprintf(stderr, "\n");
        }
    }
    dfm_ops_release_scratch();
}

/* ---- dtype conversion (a tensor function, not an op of the table) --------------------------- */

#ifdef DFM_HAVE_CUDA
TEST(backend_convert)
{
    if (no_gpu()) return;
    rng_seed(DFM_OP_COUNT, 0, 2);
    /* random values at many scales, the specials, every f16 value, and exact halfway cases */
    enum { NR = 20000, NF16 = 65536 };
    static const uint32_t special[] = {
        0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00001u, 0x7f800001u, 0x7fbfffffu,
        0x00000001u, 0x807fffffu, 0x00800000u, 0x477fe000u, 0x477fefffu, 0x477ff000u, 0x47800000u, 0x33000000u,
        0x33000001u, 0x33800000u, 0x387fc000u, 0x38800000u, 0x3f808000u, 0x3f818000u, 0x3f800800u, 0x3f801800u,
        0x7f7fffffu, 0xff7fffffu};
    int64_t n = NR + NF16 + (int64_t)(sizeof special / sizeof special[0]);
    dfm_tensor src;
    CHECK_EQ(dfm_tensor_alloc(&src, DFM_F32, DFM_CPU, 1, &n), 0);
    float *f = src.data;
    for (int i = 0; i < NR; i++) f[i] = urand() * ldexpf(1.0f, (int)(rnd64() % 80) - 40);
    for (int i = 0; i < NF16; i++) f[NR + i] = dfm_f16_to_f32((uint16_t)i);
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++) memcpy(&f[NR + NF16 + i], &special[i], 4);

    for (int s = 0; s < 3; s++) {
        /* the source in dtype g_floats[s], made on the CPU */
        dfm_tensor sc, sg;
        CHECK_EQ(dfm_tensor_alloc(&sc, g_floats[s], DFM_CPU, 1, &n), 0);
        CHECK_EQ(dfm_tensor_convert(&sc, &src), 0);
        CHECK_EQ(dfm_tensor_copy(&sg, &sc, DFM_CUDA), 0);
        for (int d = 0; d < 3; d++) {
            dfm_tensor dc, dg;
            CHECK_EQ(dfm_tensor_alloc(&dc, g_floats[d], DFM_CPU, 1, &n), 0);
            CHECK_EQ(dfm_tensor_alloc(&dg, g_floats[d], DFM_CUDA, 1, &n), 0);
            char what[64];
            snprintf(what, sizeof what, "convert %s -> %s", dfm_dtype_name(g_floats[s]), dfm_dtype_name(g_floats[d]));
            int rc_c = dfm_tensor_convert(&dc, &sc), rc_g = dfm_tensor_convert(&dg, &sg);
            if (rc_c || rc_g) {
                fprintf(stderr, "  %s: cpu rc %d, cuda rc %d: %s\n", what, rc_c, rc_g, dfm_errmsg());
                dfm_test_failures++;
            } else if (!agree(what, &dc, &dg, 0))
                dfm_test_failures++;
            dfm_tensor_free(&dc);
            dfm_tensor_free(&dg);
        }
        dfm_tensor_free(&sc);
        dfm_tensor_free(&sg);
    }
    dfm_tensor_free(&src);

    /* u8 -> f32 */
    int64_t nu = 1000;
    dfm_tensor uc, ug, dc, dg;
    CHECK_EQ(dfm_tensor_alloc(&uc, DFM_U8, DFM_CPU, 1, &nu), 0);
    for (int64_t i = 0; i < nu; i++) ((uint8_t *)uc.data)[i] = (uint8_t)(rnd64() >> 56);
    CHECK_EQ(dfm_tensor_copy(&ug, &uc, DFM_CUDA), 0);
    CHECK_EQ(dfm_tensor_alloc(&dc, DFM_F32, DFM_CPU, 1, &nu), 0);
    CHECK_EQ(dfm_tensor_alloc(&dg, DFM_F32, DFM_CUDA, 1, &nu), 0);
    int rc_c = dfm_tensor_convert(&dc, &uc), rc_g = dfm_tensor_convert(&dg, &ug);
    if (rc_c || rc_g) {
        fprintf(stderr, "  convert U8 -> F32: cpu rc %d, cuda rc %d: %s\n", rc_c, rc_g, dfm_errmsg());
        dfm_test_failures++;
    } else if (!agree("convert U8 -> F32", &dc, &dg, 0))
        dfm_test_failures++;
    dfm_tensor_free(&dc);
    dfm_tensor_free(&dg);
    dfm_tensor_free(&uc);
    dfm_tensor_free(&ug);
}
#endif
