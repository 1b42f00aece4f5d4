/* compute.h — how an op computes: the compute context passed down the calls.
 *
 * Precision is not process-global. Weights carry their own dtype (F32, BF16, F16 in their
 * tensors); a dfm_compute says how the GEMM-shaped ops (matmul, linear, conv3d) treat their
 * inputs — exact f32, or bf16 inputs with f32 accumulation — and which modules of a model stay
 * in f32 whatever the context says (diffusers' _keep_in_fp32_modules). One program can run UMT5
 * in bf16, the transformer in bf16 with f32 keep-modules and the VAE in f32 by passing each its
 * own context; nothing is toggled.
 *
 * Not here: threads (dfm_ops_set_threads, a resource, not a numerical choice), the device (it is
 * the tensors'), weight storage (the model's load options decide it).
 */
#ifndef DFM_TENSOR_COMPUTE_H
#define DFM_TENSOR_COMPUTE_H
#include "base/dtype.h"

typedef struct dfm_compute {
    /* DFM_F32: exact f32. DFM_BF16: the GEMM inputs (activations and weights) are rounded to
     * bf16 before multiplying, products accumulated in f32 — the numerics of a bf16 run. Bound:
     * each rounded input is within 2^-8 relative of its f32 value, so an output differs from
     * the f32 result by at most (2^-7 + 2^-16) * sum|a*b| plus the f32 accumulation error. */
    dfm_dtype dtype;
    /* NULL, or a NULL-terminated list of module-name parts that compute in f32 whatever dtype
     * says: a module matches when one of the dot-separated parts of its name equals an entry
     * (diffusers' rule: "blocks.3.norm2" matches "norm2"). */
    const char *const *keep_f32;
} dfm_compute;

/* Exact f32, nothing kept: what a NULL context means to every op. */
extern const dfm_compute dfm_compute_f32;

/* 1 when GEMM inputs are rounded to bf16 under c (NULL: 0). */
int dfm_compute_is_bf16(const dfm_compute *c);

/* The context for the module named `module` (dotted diffusers name, e.g. "condition_embedder.
 * time_embedder.linear_1"): f32 when one of its parts is in c->keep_f32, else c's dtype; the
 * keep list is carried over. c NULL gives f32. */
dfm_compute dfm_compute_for(const dfm_compute *c, const char *module);

/* 1 when `module` matches c->keep_f32 by the rule above. */
int dfm_compute_keeps_f32(const dfm_compute *c, const char *module);

#endif
