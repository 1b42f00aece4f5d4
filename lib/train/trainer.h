/* trainer.h — flow-matching fine-tuning of the Wan 2.1 transformer: one optimizer step at a time.
 *
 * A trainer owns the model (loaded from opts.model_path), its adapters or trainable parameters and
 * the AdamW state. A step is grad_accum micro-batches (dfm_trainer_micro: forward, loss, backward,
 * gradients accumulated) then dfm_trainer_apply (global gradient norm, clipping, AdamW at the
 * step's learning rate, gradients zeroed). The loop around it — data, logging, checkpoints,
 * signals — is lib/train/run.c; this file is what the parity test drives with noise and sigma
 * read from a fixture.
 *
 * The objective (reference/wan.md 6, nemo.md 3.1): x_t = (1 - sigma) x0 + sigma eps, the model
 * sees t = 1000 sigma (f32), target v = eps - x0, loss = mean over all elements of
 * w(sigma) (pred - v)^2 in f32 (lib/train/flow.h), backpropagated as loss / grad_accum.
 * ref: NeMo Automodel flow_matching/pipeline.py FlowMatchingPipeline.step; recipes/diffusion/train.py
 *
 * Data parallel (opts.dist with more than one rank): every rank runs the same steps on its own
 * micro-batches; the loss is scaled by 1 / (grad_accum * ranks) so that the gradients summed
 * over the ranks (lib/dist, in dfm_trainer_apply) are the mean over the global batch, and a
 * non-finite loss on any rank skips the step on all. With opts.shard_optimizer each rank keeps
 * the AdamW state of its part of the parameters only (optim.h, ZeRO stage 2).
 *
 * Not here: reading shards (lib/data/train_data.h), the config (lib/train/train_config.h).
 */
#ifndef DFM_TRAIN_TRAINER_H
#define DFM_TRAIN_TRAINER_H
#include <stdint.h>
#include "models/wan/transformer.h"
#include "train/flow.h"
#include "train/optim.h"

typedef struct {
    const char *model_path;     /* diffusers root, transformer dir, original Wan dir or one file */
    dfm_device device;
    dfm_dtype weights;          /* storage of the frozen base (LoRA: BF16 default); full training is always F32 */
    dfm_dtype compute;          /* F32 or BF16 GEMM inputs */
    int text_len;               /* text states zero-padded to this many rows (512) */
    /* LoRA: rank > 0. targets NULL = dfm_wan_lora_default_targets. init_from: an adapter file or
     * directory in any naming family (its modules and ranks replace rank/targets; its scale is
     * folded into B, so it trains on with scale 1, as diffusion-pipe's init_from_existing). */
    int lora_rank;
    float lora_alpha, lora_dropout;
    const char *const *lora_targets;
    const char *lora_init_from;
    /* Full fine-tuning (lora_rank 0): parameters whose name matches one of freeze (NULL-terminated
     * patterns, PEFT's suffix rule on module names, or "blocks.N" prefixes) are not updated. */
    const char *const *freeze;
    dfm_flow_opts flow;
    dfm_adamw_opts adamw;
    double lr, min_lr;
    const char *schedule;       /* constant | linear | cosine */
    int64_t warmup_steps, total_steps;
    double max_grad_norm;       /* <= 0: no clipping (the norm is still computed and reported) */
    int grad_accum;             /* micro-batches per step (>= 1) */
    int checkpointing;          /* activation checkpointing per block */
    int pack_frozen;            /* LoRA, CPU, bf16 compute: the frozen linears laid out once for the forward
                                   GEMMs (dfm_wan_transformer_pack; the same bits, one more bf16 copy) */
    uint64_t seed;              /* noise, sigma and LoRA init/dropout */
    struct dfm_dist *dist;      /* data-parallel job (lib/dist/dist.h); NULL: one process */
    int shard_optimizer;        /* with dist: AdamW state sharded over the ranks */
    int overlap_reduce;         /* with dist, replicated: sum each block's gradients over the ranks
                                   while the earlier blocks run backward (the same bits) */
} dfm_trainer_opts;

typedef struct dfm_trainer dfm_trainer;

/* Full training: is parameter `name` frozen by one of the patterns (train.freeze, NULL-terminated;
 * NULL: none)? A pattern matches the parameter itself, its module (PEFT's suffix rule on the name
 * without ".weight"/".bias"), or a prefix ending at a dot ("blocks.3" freezes every parameter of
 * block 3). */
int dfm_trainer_frozen(const char *name, const char *const *pats);

/* Load the model and set up training. Errors name the model path or the bad option. */
int dfm_trainer_new(dfm_trainer **t, const dfm_trainer_opts *o);
void dfm_trainer_free(dfm_trainer *t);
dfm_wan_transformer *dfm_trainer_model(dfm_trainer *t);
int64_t dfm_trainer_trainable_params(const dfm_trainer *t); /* elements updated by the optimizer */

/* One micro-batch of B same-shape samples. x0: [B, C, F, H, W] f32 host latents; text[i]:
 * text_rows[i] x text_dim f32 host states (padded here to text_len). keys[i] identify the
 * samples: with sigma/noise NULL they are drawn from (seed, step, key) (lib/train/flow.h); a
 * test passes sigma [B] and noise [B, C, F, H, W] instead. */
typedef struct {
    int B, C, F, H, W;
    const float *x0;
    const float *const *text;
    const int *text_rows;
    int text_dim;
    const char *const *keys;
    const float *sigma;
    const float *noise;
} dfm_micro;

/* Forward, loss, backward of one micro-batch; gradients accumulate (scaled by 1 / grad_accum).
 * *loss: the weighted loss (f32 mean), *sigmas (B floats, may be NULL): the sigma used.
 * A non-finite loss is reported (return 0, *loss NaN/Inf) and its gradients still accumulated:
 * dfm_trainer_apply then skips the step. */
int dfm_trainer_micro(dfm_trainer *t, const dfm_micro *mb, float *loss, float *sigmas);

/* Loss of one micro-batch without gradients (eval). sigma: B fixed values or NULL (drawn). */
int dfm_trainer_eval(dfm_trainer *t, const dfm_micro *mb, float *loss);

typedef struct {
    double grad_norm;   /* before clipping */
    double lr;          /* the rate this step used */
    int skipped;        /* 1: a non-finite loss or gradient; nothing was updated */
} dfm_step_stats;

/* Finish the step: norm, clip, AdamW at dfm_lr_at(step), zero the gradients, step + 1. */
int dfm_trainer_apply(dfm_trainer *t, const float *losses, int nlosses, dfm_step_stats *st);
int64_t dfm_trainer_step(const dfm_trainer *t); /* optimizer steps taken (also the sigma/noise step) */
/* Data parallel: seconds this process spent in the steps' collectives (gradient sums, the
 * sharded optimizer's all-gathers), waiting for slower ranks included. */
double dfm_trainer_comm_seconds(const dfm_trainer *t);

/* State for checkpoints: weights (LoRA adapter or full model) into dir as every consumer loads
 * them, optimizer state and the step into dir/state. Data parallel: every rank calls it, after
 * rank 0 has made dir (the weights are the same on every rank: rank 0 writes them; a sharded
 * optimizer's ranks each write their part of dir/state). Every rank loads the whole state. load_state restores the optimizer and the
 * step from dir/state and the weights from dir (an adapter the trainer already has is
 * overwritten with the saved values; a full model's parameters likewise). */
int dfm_trainer_save(dfm_trainer *t, const char *dir, dfm_dtype full_dtype);
int dfm_trainer_load_state(dfm_trainer *t, const char *dir);

#endif
