/* linear.h — the linear layer y = x W^T + b with an optional LoRA adapter, forward and backward,
 * llm.c style: a parameter struct (dfm_linear), a gradient struct (dfm_linear_grads) and the
 * activations its backward needs (dfm_linear_acts), saved by the forward when asked.
 *
 * LoRA is a property of the layer, as PEFT's lora.Linear computes it:
 *   y = x W^T + b + scale * (dropout(x) A^T) B^T,    scale = alpha / rank
 * with A [rank, in] and B [out, rank] in f32 whatever W's dtype (a frozen base may be BF16).
 * The dropout mask is a function of (seed, stream, element) (ops.h dfm_op_dropout): the backward
 * regenerates it, nothing is stored for it.
 *
 * Precision: W carries its dtype (F32, BF16, F16); the compute context says whether GEMM inputs
 * are rounded to bf16 (tensor/compute.h). The model passes each layer the context of its module
 * (dfm_compute_for: diffusers' keep-in-f32 modules compute in f32). The LoRA adapter's rank-r
 * products always run in exact f32 (cheaper than rounding their operands, and more accurate;
 * PEFT under torch.autocast rounds them to bf16).
 * Speed: on the CPU the forward uses W laid out once for the packed GEMM when dfm_linear_pack has
 * been called (an inference or frozen-base layer); the backward multiplies by W as stored.
 *
 * Not here: weight loading (lib/models/weights.h), the optimizer, fused q|k|v packing (a model
 * packs several weights into one dfm_packed itself when it wants one pass over x).
 * ref: torch.nn.Linear; peft tuners/lora/layer.py Linear.forward
 */
#ifndef DFM_NN_LINEAR_H
#define DFM_NN_LINEAR_H
#include <stdint.h>
#include "tensor/compute.h"
#include "tensor/ops.h"
#include "tensor/tensor.h"

typedef struct {
    int64_t in, out;
    dfm_tensor w;         /* [out, in] F32/BF16/F16 (owned or a view; see owns_w) */
    dfm_tensor b;         /* [out] F32/BF16/F16, or data NULL: no bias */
    dfm_packed *packed;   /* NULL, or w laid out for the forward GEMM (dfm_linear_pack) */
    dfm_tensor bias32;    /* owned F32 copy of a BF16/F16 b for the packed GEMM's store, or data NULL */
    /* LoRA (rank 0: none) */
    int rank;
    float scale;          /* alpha / rank */
    float dropout;        /* probability on the adapter's input, training forwards only */
    dfm_tensor lora_a;    /* [rank, in] F32 */
    dfm_tensor lora_b;    /* [out, rank] F32 */
    int owns_w, owns_b;   /* dfm_linear_free frees w / b */
} dfm_linear;

/* Gradients, accumulated (+=) by the backward into the tensors whose data is non-NULL (F32, the
 * shapes of the parameters); a NULL data pointer means "not trained". */
typedef struct {
    dfm_tensor w, b, lora_a, lora_b;
} dfm_linear_grads;

/* What the backward needs from the forward. x is a view of the forward's input: the caller keeps
 * it unchanged until the backward. h = dropout(x) A^T [m, rank] is owned (freed by
 * dfm_linear_acts_free). seed/stream: the dropout mask's. */
typedef struct {
    dfm_tensor x, h;
    uint64_t seed, stream;
    int dropped; /* the forward applied dropout */
} dfm_linear_acts;

/* Set up a layer over existing tensors: w [out, in] (required), b [out] or NULL. The layer keeps
 * views (not copies); they must outlive it. No LoRA. */
int dfm_linear_init(dfm_linear *l, const dfm_tensor *w, const dfm_tensor *b);
/* Lay w out for the device's forward GEMM (dfm_packed, stored as dt: F32 or BF16). On the CPU
 * this is the fast path for a frozen or inference layer; it doubles w's memory unless the caller
 * then drops w (not possible when a backward needs dx). */
int dfm_linear_pack(dfm_linear *l, dfm_dtype dt);
/* After dfm_linear_pack: free w (when the layer owns it) and forget it, for inference. The forward
 * runs on the packed copy; a backward that needs w, and a forward on another device, then fail
 * with an error. */
void dfm_linear_drop_weights(dfm_linear *l);
/* Add a LoRA adapter: A [rank, in], B [out, rank] F32 zero-filled on w's device, scale =
 * alpha / rank, the given dropout. Fill them with dfm_linear_lora_init or load them. */
int dfm_linear_lora_add(dfm_linear *l, int rank, float alpha, float dropout);
/* PEFT's default initialization: A kaiming-uniform (a = sqrt(5): uniform in +-1/sqrt(in)), B zero,
 * from a counter-based stream (seed, stream): the same numbers on every machine. (The values
 * differ from torch's generator; PEFT's distribution is the same.) CPU tensors only. */
int dfm_linear_lora_init(dfm_linear *l, uint64_t seed, uint64_t stream);
void dfm_linear_free(dfm_linear *l);

/* y = x W^T + b (+ LoRA). x: [m, in] F32, y: [m, out] F32 (allocated by the caller, not x), on the
 * layer's device. acts NULL: inference (no dropout). acts non-NULL: training — the activations
 * are saved and LoRA dropout (if any) uses (seed, stream). */
int dfm_linear_forward(const dfm_compute *cc, const dfm_linear *l, const dfm_tensor *x, dfm_tensor *y,
                       dfm_linear_acts *acts, uint64_t seed, uint64_t stream);
/* From dy [m, out]: dx [m, in] (written, or added into when dx_accumulate; NULL: not wanted) and
 * the gradients g (accumulated; NULL or NULL data: not wanted). */
int dfm_linear_backward(const dfm_compute *cc, const dfm_linear *l, const dfm_linear_acts *acts,
                        const dfm_tensor *dy, dfm_tensor *dx, int dx_accumulate, dfm_linear_grads *g);
void dfm_linear_acts_free(dfm_linear_acts *a);

#endif
