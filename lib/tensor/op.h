/* op.h — the op table: one enum of every op, one argument record, one dispatch.
 *
 * Each op is an entry {name, check, cpu, cuda}: `check` validates shapes, dtypes, devices and
 * aliasing once, then dfm_op_run() calls the CPU kernel (kernels/cpu/<op>.c) or its CUDA twin
 * (kernels/cuda/<op>.cu) by the operands' device. The typed functions of ops.h (dfm_op_conv3d,
 * dfm_op_silu, ...) fill a dfm_op_args and call dfm_op_run(); the table-driven backend test
 * (tests/unit/test_backend_ops.c) runs every entry on both devices and compares. ggml's op enum
 * and test-backend-ops are the model.
 *
 * Argument conventions per op are listed with the enum (src: inputs, dst: outputs, f/i:
 * scalar parameters, p: an op-specific object, cc: the compute context or NULL for f32).
 * Not here: autograd. Backward passes are ops of their own, called by lib/nn layers.
 */
#ifndef DFM_TENSOR_OP_H
#define DFM_TENSOR_OP_H
#include <stdint.h>
#include "tensor/compute.h"
#include "tensor/tensor.h"

typedef enum {
    DFM_OP_CONV3D,            /* src x, w, b|NULL; dst y; i[0..2] stride, i[3..8] pad; cc */
    DFM_OP_RMS_NORM_CHANNELS, /* src x, gamma, bias|NULL; dst y */
    DFM_OP_SILU,              /* src x; dst y */
    DFM_OP_ADD,               /* src a, b; dst y */
    DFM_OP_MUL,               /* src a, b; dst y */
    DFM_OP_CLAMP,             /* src x; dst y; f[0] lo, f[1] hi */
    DFM_OP_AFFINE,            /* src x; dst y; f[0] scale, f[1] shift */
    DFM_OP_GELU_NEW,          /* src x; dst y */
    DFM_OP_MATMUL,            /* src a, b, bias|NULL; dst y; i[0] ta, i[1] tb; f[0] beta; cc */
    DFM_OP_LINEAR,            /* src x, bias[0..nw) (each |NULL); dst y[0..nw); p dfm_packed; i[0] accumulate; cc */
    DFM_OP_ATTENTION,         /* src q, k, v, bias|NULL; dst out, lse|NULL; f[0] scale; i[0] layout
                                 (0 head-major [B, H, S, D], 1 token-major [B, S, H, D]; 3-D: B = 1); cc
                                 (bf16: operands rounded to bf16 before each product) */
    DFM_OP_ATTENTION_BWD,     /* src q, k, v, bias|NULL, out, lse, dout; dst dq, dk, dv; f[0], i[0], cc as above */
    DFM_OP_EMBEDDING,         /* src table, ids; dst out */
    DFM_OP_REL_BIAS,          /* src table, buckets; dst out */
    DFM_OP_RMS_NORM,          /* src x, w; dst y; f[0] eps */
    DFM_OP_TRANSPOSE2D,       /* src x; dst y */
    DFM_OP_UPSAMPLE_NEAREST2X,/* src x; dst y */
    DFM_OP_CONCAT,            /* src a, b; dst y; i[0] dim */
    DFM_OP_FRAMES,            /* src x; dst y; i[0] t0 (n = y's frames) */
    DFM_OP_PUT_FRAMES,        /* src f; dst y; i[0] t0 */
    DFM_OP_COUNT_NONFINITE,   /* src x (any dtype); r[0] count, r[1] first index or -1 */
    DFM_OP_BIAS_ADD,          /* src x, b; dst y (rows of x plus b) */
    DFM_OP_DROPOUT,           /* src x; dst y; f[0] p; i[0] seed, i[1] stream */
    /* the transformer's ops and their backwards (backward: src = forward inputs, saved
     * statistics, dy; dst = dx, then parameter gradients, accumulated) */
    DFM_OP_RMS_NORM_BWD,      /* src dy, x, inv|NULL, w|NULL; dst dx|NULL, dw|NULL; f[0] eps */
    DFM_OP_LAYER_NORM,        /* src x, w|NULL, b|NULL; dst y, mean|NULL, rstd|NULL; f[0] eps */
    DFM_OP_LAYER_NORM_BWD,    /* src dy, x, mean|NULL, rstd|NULL, w|NULL; dst dx|NULL, dw|NULL, db|NULL; f[0] eps */
    DFM_OP_GELU_TANH,         /* src x; dst y */
    DFM_OP_GELU_TANH_BWD,     /* src dy, x; dst dx */
    DFM_OP_SILU_BWD,          /* src dy, x; dst dx */
    DFM_OP_ROPE,              /* src x [B, S, H, D], cos, sin [S, D/2]; dst y */
    DFM_OP_ROPE_BWD,          /* src dy, cos, sin; dst dx */
    DFM_OP_MODULATE,          /* src x [B, S, D], e [B, K, D]; dst y; i[0] scale chunk, i[1] shift chunk */
    DFM_OP_MODULATE_BWD,      /* src dy, x, e; dst dx|NULL, de|NULL; i[0], i[1] */
    DFM_OP_GATE_RESIDUAL,     /* src x, a, e; dst y; i[0] gate chunk */
    DFM_OP_GATE_RESIDUAL_BWD, /* src dy, a, e; dst da|NULL, de|NULL; i[0] */
    DFM_OP_COLSUM,            /* src x [M, N]; dst out [N] (accumulated) */
    DFM_OP_PATCHIFY,          /* src x [B, C, F, H, W]; dst rows [B * N, C * P]; i[0..2] patch, i[3] order */
    DFM_OP_UNPATCHIFY,        /* src rows [B * N, C * P]; dst x [B, C, F, H, W]; i[0..2] patch, i[3] order */
    /* the optimizer's (kernels/cpu/adamw.h) */
    DFM_OP_ADAMW,             /* src g; dst p, m, v (F32, one shape, updated in place); p const dfm_adamw_coef * */
    DFM_OP_SUMSQ,             /* src x F32; r[0] the sum of squares in double (its bits: memcpy), fixed lane order */
    DFM_OP_COUNT
} dfm_op_id;

#define DFM_OP_MAX_SRC 8
#define DFM_OP_MAX_DST 4

typedef struct {
    const dfm_tensor *src[DFM_OP_MAX_SRC]; /* inputs; NULL where optional and absent */
    dfm_tensor *dst[DFM_OP_MAX_DST];       /* outputs (allocated by the caller) */
    float f[4];                            /* scalar parameters */
    int64_t i[10];                         /* integer parameters */
    const void *p;                         /* op-specific object */
    const dfm_compute *cc;                 /* compute context; NULL: exact f32 */
    int64_t r[2];                          /* host results (count_nonfinite) */
} dfm_op_args;

typedef struct {
    const char *name;
    int (*check)(const dfm_op_args *a); /* 0 or DFM_E_ARG naming the op and the operands */
    int (*cpu)(dfm_op_args *a);
    int (*cuda)(dfm_op_args *a);        /* NULL in builds without CUDA */
} dfm_op_def;

/* The entry of op id (id in [0, DFM_OP_COUNT)). */
const dfm_op_def *dfm_op_get(dfm_op_id id);
/* The device the operands live on (the first non-NULL src, else dst). */
dfm_device dfm_op_device(const dfm_op_args *a);
/* Check the arguments, then run the op on the operands' device. Returns 0 or a negative
 * DFM_E_* with the reason recorded (dfm_errmsg). */
int dfm_op_run(dfm_op_id id, dfm_op_args *a);

#endif
