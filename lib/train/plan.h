/* plan.h — `dfm-train CONFIG --plan`: the memory one rank of a training run needs, computed
 * before anything heavy is loaded, so that a user knows whether a config fits a 24 GB GPU, an
 * 80 GB one or the CPU machine at hand.
 *
 * Inputs: the resolved config, the transformer's config.json alone (no weights are opened), the
 * largest clip of data.shards (the shard index is scanned: member headers only) or a given latent
 * shape, and the number of ranks. Output, per rank and for activation checkpointing on and off:
 * weights, LoRA adapters, gradients, AdamW moments (replicated or sharded over the ranks, optim.h),
 * the activations a step keeps (each block's input; one block's saved tensors while it is
 * recomputed and differentiated, or every block's without checkpointing), the backward's
 * temporaries, the attention working set, embedders/head/inputs/data, a runtime constant and a
 * margin — and the UMT5 transient at start when caption dropout has to encode the empty prompt.
 *
 * The figures mirror what lib/models/wan/transformer.c, lib/nn and lib/train allocate (f32
 * activations whatever model.compute says; see plan.c for the tensor list) and were checked
 * against the peak resident memory of real dfm-train steps on the CPU (plan.c, docs/training.md
 * "Will it fit?"). Not here: sampling during training (sample.prompts loads the VAE and runs CFG
 * forwards between steps), the load transient of mapped weight files (page cache, reclaimable),
 * other processes on the machine.
 */
#ifndef DFM_TRAIN_PLAN_H
#define DFM_TRAIN_PLAN_H
#include <stdint.h>
#include <stdio.h>

#include "base/config.h"
#include "models/wan/transformer.h"

/* What the arithmetic needs. Lists are NULL-terminated and only read during the call. */
typedef struct {
    dfm_wan_transformer_config model;
    dfm_device device;
    dfm_dtype weights;                  /* frozen base under LoRA: DFM_BF16 or DFM_F32 (full: always F32) */
    dfm_dtype compute;                  /* DFM_BF16 or DFM_F32 (pack_frozen applies under BF16 only) */
    int lora_rank;                      /* 0: full fine-tuning */
    const char *const *lora_targets;    /* NULL: dfm_wan_lora_default_targets */
    const char *const *freeze;          /* full fine-tuning: frozen parameters (trainer.h's patterns) */
    int pack_frozen;                    /* train.pack_frozen (LoRA, CPU, BF16 compute: one more bf16 copy) */
    int batch;                          /* samples per micro-batch on this rank (>= 1) */
    int frames, height, width;          /* latent F, H, W: multiples of the patch */
    int text_len;                       /* text rows after padding */
    int world;                          /* ranks (>= 1) */
    int shard_optimizer;                /* dist.shard_optimizer */
    int threads;                        /* CPU threads (per-thread attention and GEMM scratch) */
    int prefetch;                       /* data.prefetch batches read ahead */
    double text_encoder_bytes;          /* UMT5 loaded at start for the empty prompt; 0: not loaded */
} dfm_plan_opts;

/* The rows of the table, in bytes per rank. */
enum {
    DFM_PLAN_WEIGHTS,       /* the model's weights (and pack_frozen's copy) */
    DFM_PLAN_LORA,          /* LoRA A and B, f32 */
    DFM_PLAN_GRADS,         /* gradients, f32 (full: every parameter's) */
    DFM_PLAN_MOMENTS,       /* AdamW exp_avg + exp_avg_sq, f32, of this rank's part */
    DFM_PLAN_STAGING,       /* sharded: the gradient shard and the bucket buffers; replicated, N > 1: the reduce bucket */
    DFM_PLAN_BLOCK_INPUTS,  /* each block's input [B*N, D] (kept either way) */
    DFM_PLAN_SAVED,         /* saved activations: one block (checkpointing) or every block */
    DFM_PLAN_BACKWARD,      /* one block's backward temporaries */
    DFM_PLAN_ATTENTION,     /* attention kernel scratch */
    DFM_PLAN_OTHER,         /* embedders, head, RoPE tables, the step's inputs and outputs, the data read ahead */
    DFM_PLAN_RUNTIME,       /* the process: code, libraries, GEMM scratch (CPU); context and cuBLAS (CUDA) */
    DFM_PLAN_MARGIN,        /* allocator slack */
    DFM_PLAN_ROWS
};

typedef struct {
    int64_t params;         /* the transformer's parameters */
    int64_t trained;        /* elements the optimizer updates */
    int64_t lora_params;    /* adapter elements (LoRA) */
    int adapters;           /* adapted linears (LoRA) */
    int64_t tokens;         /* per sample: (F/pt)(H/ph)(W/pw) */
    double row[DFM_PLAN_ROWS][2]; /* bytes; [0] checkpointing on, [1] off */
    double step[2];         /* the sum of the rows: the peak during a step */
    double start;           /* before the first step: weights, trained state, runtime and the text encoder */
    double total[2];        /* max(step, start) */
} dfm_plan;

/* The arithmetic alone (no I/O). DFM_E_ARG naming the field when o is out of range (a shape
 * that is not a multiple of the patch, batch or world < 1, an unknown dtype). */
int dfm_plan_compute(const dfm_plan_opts *o, dfm_plan *p);

/* What --plan was asked. */
typedef struct {
    const char *config_path;  /* for the heading (NULL: none) */
    int world;                /* --world N; 0: the default (1: the launcher is not consulted yet) */
    int shape[3];             /* --plan-shape F,H,W (latent); all 0: from data.shards */
} dfm_plan_request;

/* Everything --plan does: resolve the config (model.path's config.json, data.shards' largest
 * clip, the text encoder's config when caption dropout needs it), compute, print the table and
 * the verdicts to out. Returns 0; DFM_E_ARG for a bad setting (no model.path, a config.json that
 * is not a Wan transformer's, a shape that is not a multiple of the patch), other codes for I/O.
 * Loads no weights. */
int dfm_plan_run(const dfm_config *c, const dfm_plan_request *rq, FILE *out);

/* The table of p for o as --plan prints it: a row per line, GiB with checkpointing on and off
 * (checkpointing: which one the config uses, marked in the column titles); the LoRA row only for
 * a LoRA, the staging row only for more than one rank. The heading and the verdicts are
 * dfm_plan_run's. */
int dfm_plan_print(const dfm_plan_opts *o, const dfm_plan *p, int checkpointing, FILE *out);

#endif
