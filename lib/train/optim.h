/* optim.h — AdamW as torch.optim.AdamW computes it, the gradient norm and clipping, the learning
 * rate schedule, and the optimizer's state file.
 *
 * The update is an op of the op table (DFM_OP_ADAMW, kernels/cpu/adamw.c and its CUDA twin),
 * which documents the f32 rounding step by step; the step's scalars (bias corrections, step size)
 * are computed here in double, as torch does in Python floats. With the same parameters,
 * gradients and learning rates it gives torch's numbers: m and v bit for bit, p to within torch's
 * CPU sqrt (see adamw.h). One parameter group: every registered tensor gets the same lr and
 * weight decay. Not here: other optimizers, amsgrad, maximize, foreach/fused variants (their
 * numbers are these), parameter groups, gradient accumulation (the caller sums into the grads).
 */
#ifndef DFM_TRAIN_OPTIM_H
#define DFM_TRAIN_OPTIM_H
#include <stdint.h>

#include "cpu/adamw.h"
#include "tensor/tensor.h"

typedef struct {
    double beta1, beta2, eps, weight_decay; /* torch defaults 0.9, 0.999, 1e-8, 0.01 */
} dfm_adamw_opts;

typedef struct dfm_adamw dfm_adamw;

/* New optimizer with no parameters. opts: beta1, beta2 in [0, 1), eps >= 0, weight_decay >= 0
 * (all finite), else DFM_E_ARG naming the field; NULL takes torch's defaults. */
int dfm_adamw_new(dfm_adamw **o, const dfm_adamw_opts *opts);
void dfm_adamw_free(dfm_adamw *o);

/* Register a trainable F32 parameter and its F32 gradient (same shape, same device; both stay
 * owned by the caller and must outlive the optimizer). The optimizer allocates exp_avg and
 * exp_avg_sq (zeros) on that device. name: unique among the registered (it keys the state file);
 * copied. DFM_E_ARG on a bad or duplicate name, dtype, shape or device mismatch. */
int dfm_adamw_add(dfm_adamw *o, const char *name, dfm_tensor *param, dfm_tensor *grad);
int dfm_adamw_count(const dfm_adamw *o);

/* One step of torch.optim.AdamW over every registered parameter with learning rate lr (finite,
 * >= 0): step += 1, then per tensor
 *   p *= 1 - lr*wd; m.lerp_(g, 1 - b1); v = v*b2 + (1 - b2) g g;
 *   p += -(lr / (1 - b1^step)) * m / (sqrt(v) / (1 - b2^step)^0.5 + eps)
 * ref: torch/optim/adam.py _single_tensor_adam (decoupled_weight_decay=True). */
int dfm_adamw_step(dfm_adamw *o, double lr);
/* Steps taken (restored by dfm_adamw_load). */
int64_t dfm_adamw_steps(const dfm_adamw *o);

/* The f32 scalars of the step numbered `step` (>= 1) with learning rate lr (the kernel's input;
 * exposed for tests). */
void dfm_adamw_coef_at(const dfm_adamw_opts *o, double lr, int64_t step, dfm_adamw_coef *c);

/* State file: safetensors (io/safetensors.h) with "<name>.exp_avg" and "<name>.exp_avg_sq" (F32,
 * the parameter's shape) for every registered name, and metadata {"format": "dfm-adamw-1",
 * "step": "N", "beta1", "beta2", "eps", "weight_decay" (as %.17g)}. Written to path.tmp, then
 * renamed. */
int dfm_adamw_save(const dfm_adamw *o, const char *path);
/* Restore the moments and the step count saved by dfm_adamw_save: the file must hold exactly the
 * registered names with their shapes (DFM_E_FORMAT naming the first that differs; nothing is
 * changed then). The hyperparameters stay the ones given to dfm_adamw_new (the file's are a
 * record). Save, load and step again is bit for bit the uninterrupted run. */
int dfm_adamw_load(dfm_adamw *o, const char *path);

/* Global L2 norm of the registered gradients as torch.nn.utils.clip_grad_norm_ computes it (each
 * tensor's norm, then the norm of those), but in double and in a fixed order whatever the threads
 * and device (DFM_OP_SUMSQ's lane order). finite (may be NULL): 0 when some gradient element is
 * NaN or Inf (the norm is then NaN or Inf), else 1. No parameters: 0. A device error gives NaN
 * with *finite = 0 and the reason recorded (dfm_errmsg). */
double dfm_adamw_grad_norm(dfm_adamw *o, int *finite);
/* Multiply every registered gradient by coef in f32 (torch's clip: coef = min(1, max_norm /
 * (norm + 1e-6)), computed by the caller). */
int dfm_adamw_scale_grads(dfm_adamw *o, float coef);

/* ---- data parallel (optim_dist.c) ----
 * Replicated (the default): every rank holds every moment and, after dfm_adamw_reduce_grads
 * (an all-reduce), the same summed gradients, so every rank takes the same step.
 * Sharded (dfm_adamw_shard, ZeRO stage 2): the trainable parameters, taken in registration
 * order as one flat vector, are cut into buckets of DFM_ADAMW_BUCKET elements and each bucket
 * into one piece per rank (ceil(len / ranks) elements, the last ones shorter or empty). A rank
 * keeps the summed gradient, exp_avg and exp_avg_sq of its pieces only: reduce_grads
 * reduce-scatters each bucket, the norm is summed over the ranks, the step updates this rank's
 * pieces of the parameters and all-gathers every bucket back into every rank's parameters.
 * The elementwise update is the replicated one; the gradient norm sums in another order. */
struct dfm_dist;
#define DFM_ADAMW_BUCKET ((int64_t)1 << 22)

/* Sum the registered gradients over d's ranks: in place (replicated), or into this rank's
 * shard (sharded: the gradient tensors themselves are then left as they were; zero them
 * after the step as always). Collective. */
int dfm_adamw_reduce_grads(dfm_adamw *o, struct dfm_dist *d);
/* Replicated: start summing the gradients whose names begin with prefix (NULL: all) that are
 * not started yet this step, without waiting (the backward of the layers before them goes on);
 * dfm_adamw_reduce_grads then starts the rest and waits. The same bits as without it. No-op
 * when sharded or with one rank. Do not touch the started gradients until reduce_grads. */
int dfm_adamw_reduce_grads_start(dfm_adamw *o, struct dfm_dist *d, const char *prefix);
/* Sharded: sum block `block`'s gradients ("blocks.N." parameters) into this rank's shard now
 * (added to what earlier micro-batches of the step summed), after which their tensors may be
 * released (dfm_wan_transformer_release_grads); reduce_grads then sums only the rest. No-op
 * when replicated. Collective. */
int dfm_adamw_reduce_block(dfm_adamw *o, struct dfm_dist *d, int block);
/* Shard the optimizer over d's ranks (after the last add, before any step, save or load).
 * The parameters share one device (CPU or CUDA): the shard, its staging bucket and the update
 * live there (lib/dist sums device buffers with NCCL). */
int dfm_adamw_shard(dfm_adamw *o, struct dfm_dist *d);
/* The state in directory dir: replicated, dir/optimizer.safetensors (dfm_adamw_save; one rank
 * writes it); sharded, dir/optimizer-rank-RRRRR-of-NNNNN.safetensors with this rank's pieces
 * (every rank writes its own; metadata: the step, the options, the bucket size, the world size
 * and the parameter names and sizes). */
int dfm_adamw_save_state(dfm_adamw *o, const char *dir);
/* Restore the state saved in dir by either form and any world size into this optimizer,
 * replicated or sharded over any number of ranks: the flat vector is the same. Errors: no state,
 * parameter names or sizes that differ, missing or inconsistent rank files (DFM_E_FORMAT). */
int dfm_adamw_load_state(dfm_adamw *o, const char *dir);
/* Seconds spent in the collectives above (reduce_grads, the sharded norm and all-gather). */
double dfm_adamw_comm_seconds(const dfm_adamw *o);

/* Learning rate for optimizer step n (0-based: the step about to be taken). kind "constant",
 * "linear" or "cosine". Warmup: lr * (n + 1) / warmup for n < warmup. After it,
 * r = (n - warmup) / max(1, total - warmup), clamped to [0, 1]: constant lr; linear
 * min_lr + (lr - min_lr)(1 - r); cosine min_lr + (lr - min_lr) * 0.5 (1 + cos(pi r)).
 * An unknown kind gives NaN (dfm_lr_kind_ok checks a config's value). */
double dfm_lr_at(const char *kind, int64_t n, int64_t warmup, int64_t total, double lr, double min_lr);
int dfm_lr_kind_ok(const char *kind);

#endif
