/* train_config.c — dfm-train's keys (train_config.h). docs/training.md lists them with the peers'
 * names; keep the two in step. */
#include "train/train_config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

const dfm_cfg_key dfm_train_schema[] = {
    {"seed", DFM_CFG_INT, "42", NULL, "the run's seed (noise, sigma, shuffling, LoRA init); train.seed overrides it"},
    /* model */
    {"model.path", DFM_CFG_STR, NULL, NULL,
     "the Wan 2.1 model: a diffusers root (its transformer/), a transformer directory, an original Wan directory or one .safetensors file"},
    {"model.text_len", DFM_CFG_INT, "512", NULL,
     "text states zero-padded to this many rows (512 as diffusers and diffusion-pipe; NeMo's preprocessing uses 226)"},
    {"model.dtype", DFM_CFG_ENUM, "bf16", "bf16|f32", "storage of the frozen base weights under LoRA (full training keeps f32)"},
    {"model.compute", DFM_CFG_ENUM, "bf16", "bf16|f32",
     "GEMM inputs: bf16 (f32 accumulation; diffusers' keep-in-f32 modules stay f32) or exact f32"},
    /* data */
    {"data.shards", DFM_CFG_STRLIST, NULL, NULL,
     "training shards: .tar/.tar.zst files, globs, directories or index.json files (dfm-shard's output)"},
    {"data.repeats", DFM_CFG_FLOATLIST, NULL, NULL, "per data.shards entry: how often each sample counts per epoch (default 1 each; fractions allowed)"},
    {"data.eval_shards", DFM_CFG_STRLIST, NULL, NULL, "held-out shards for eval (same forms as data.shards)"},
    {"data.batch_size", DFM_CFG_INT, "1", NULL, "samples per micro-batch (per rank); a batch never mixes latent shapes"},
    {"data.dynamic_batch", DFM_CFG_BOOL, "false", NULL,
     "NeMo's dynamic_batch_size: batch_size scaled down by the bucket's area over data.base_resolution"},
    {"data.base_resolution", DFM_CFG_FLOATLIST, "[512, 512]", NULL, "width, height for data.dynamic_batch"},
    {"data.drop_last", DFM_CFG_BOOL, "true", NULL, "drop each bucket's last partial batch"},
    {"data.shuffle", DFM_CFG_BOOL, "true", NULL, "shuffle buckets and samples each epoch (seeded by seed + epoch)"},
    {"data.prefetch", DFM_CFG_INT, "2", NULL, "batches read ahead on a background thread"},
    {"data.empty_prompt", DFM_CFG_STR, NULL, NULL,
     "the empty prompt's text states for train.caption_dropout: a text.npy, or a stream/shard whose first sample has text.npy; default: encoded with the model's text encoder"},
    /* train */
    {"train.max_steps", DFM_CFG_INT, NULL, NULL, "optimizer steps to train (default: train.epochs worth)"},
    {"train.epochs", DFM_CFG_INT, "1", NULL, "epochs to train when train.max_steps is not set"},
    {"train.grad_accum", DFM_CFG_INT, "1", NULL, "micro-batches per optimizer step"},
    {"train.seed", DFM_CFG_INT, NULL, NULL, "overrides the top-level seed"},
    {"train.caption_dropout", DFM_CFG_FLOAT, "0", NULL,
     "probability that a sample's text is replaced by the empty prompt's states (per sample and step, seeded)"},
    {"train.checkpointing", DFM_CFG_BOOL, "true", NULL, "activation checkpointing per block (same results, less memory)"},
    {"train.pack_frozen", DFM_CFG_BOOL, "false", NULL,
     "LoRA on the CPU under bf16 compute: lay the frozen base out once for the forward GEMMs (0–8% faster steps in our A/B runs: none in a quiet one) for one more bf16 copy of it (2.6 GiB on the 1.3B)"},
    {"train.max_bad_steps", DFM_CFG_INT, "5", NULL, "stop after this many steps in a row with a non-finite loss or gradient (0: never stop)"},
    {"train.device", DFM_CFG_ENUM, "cpu", "cpu|cuda", "where to compute"},
    {"train.threads", DFM_CFG_INT, "0", NULL, "CPU threads (0: every core)"},
    {"train.freeze", DFM_CFG_STRLIST, NULL, NULL,
     "full training: parameters not to update (\"blocks.0\", \"patch_embedding\", \"norm_out\" ...)"},
    /* dist */
    {"dist.shard_optimizer", DFM_CFG_BOOL, "false", NULL,
     "data parallel (mpirun/srun): each rank keeps the AdamW state of its share of the parameters (ZeRO stage 2)"},
    {"dist.overlap", DFM_CFG_BOOL, "true", NULL,
     "sum each block's gradients over the ranks while the earlier blocks run backward (the same results; replicated optimizer)"},
    {"dist.timeout", DFM_CFG_FLOAT, "1800", NULL,
     "seconds a collective waits for the other ranks before the job is taken down (a rank died or hangs)"},
    /* optim */
    {"optim.lr", DFM_CFG_FLOAT, "1e-4", NULL, "peak learning rate (AdamW)"},
    {"optim.min_lr", DFM_CFG_FLOAT, "0", NULL, "the rate linear and cosine schedules end at"},
    {"optim.schedule", DFM_CFG_ENUM, "constant", "constant|linear|cosine", "after the warmup"},
    {"optim.warmup_steps", DFM_CFG_INT, "0", NULL, "linear warmup: lr * (n+1) / warmup_steps for step n < warmup_steps"},
    {"optim.weight_decay", DFM_CFG_FLOAT, "0.01", NULL, "AdamW's decoupled weight decay"},
    {"optim.betas", DFM_CFG_FLOATLIST, "[0.9, 0.999]", NULL, "AdamW beta1, beta2"},
    {"optim.eps", DFM_CFG_FLOAT, "1e-8", NULL, "AdamW epsilon"},
    {"optim.max_grad_norm", DFM_CFG_FLOAT, "1.0", NULL, "clip the global gradient norm to this (0: no clipping)"},
    /* lora */
    {"lora.rank", DFM_CFG_INT, "32", NULL, "LoRA rank; 0 trains every parameter (full fine-tuning)"},
    {"lora.alpha", DFM_CFG_FLOAT, NULL, NULL, "LoRA alpha: scale alpha / rank (default alpha = rank, scale 1)"},
    {"lora.dropout", DFM_CFG_FLOAT, "0", NULL, "dropout on the LoRA branch's input"},
    {"lora.targets", DFM_CFG_STRLIST, NULL, NULL,
     "modules to adapt, PEFT's suffix rule on diffusers names (default: to_q, to_k, to_v, to_out.0, ffn.net.0.proj, ffn.net.2 of every block)"},
    {"lora.init_from", DFM_CFG_STR, NULL, NULL,
     "start from this adapter (any naming: diffusers/PEFT, diffusion-pipe/ComfyUI, musubi); its ranks and modules replace rank and targets"},
    /* flow */
    {"flow.sigma_sampling", DFM_CFG_ENUM, "logit_normal", "uniform|logit_normal|mode|sigmoid", "how sigma is drawn"},
    {"flow.logit_mean", DFM_CFG_FLOAT, "0", NULL, "logit_normal: mean of the normal"},
    {"flow.logit_std", DFM_CFG_FLOAT, "1", NULL, "logit_normal: standard deviation of the normal"},
    {"flow.mode_scale", DFM_CFG_FLOAT, "1.29", NULL, "mode: its scale"},
    {"flow.sigmoid_scale", DFM_CFG_FLOAT, "1", NULL, "sigmoid: sigma = sigmoid(scale * N(0,1))"},
    {"flow.shift", DFM_CFG_FLOAT, "1", NULL, "sigma = shift u / (1 + (shift - 1) u) (1: none; NeMo's Wan recipe uses 3)"},
    {"flow.min_t", DFM_CFG_FLOAT, "0", NULL, "lower bound on sigma; the distribution is truncated, keeping its shape"},
    {"flow.max_t", DFM_CFG_FLOAT, "1", NULL, "upper bound on sigma"},
    {"flow.mix_uniform_ratio", DFM_CFG_FLOAT, "0", NULL, "share of samples whose sigma is drawn uniformly instead (NeMo)"},
    {"flow.loss_weighting", DFM_CFG_ENUM, "none", "none|linear|sigma_sqrt|cosmap",
     "weight of each sample's loss: linear is NeMo's 1 + shift sigma"},
    /* checkpoint */
    {"checkpoint.dir", DFM_CFG_STR, NULL, NULL, "the run directory: step_N/ checkpoints, LATEST, TensorBoard events, config.yaml"},
    {"checkpoint.every", DFM_CFG_INT, "500", NULL, "save every this many steps (and at the end; 0: only at the end)"},
    {"checkpoint.keep_last", DFM_CFG_INT, "3", NULL, "keep this many newest checkpoints, and always LATEST (0: all)"},
    {"checkpoint.dtype", DFM_CFG_ENUM, "f32", "f32|bf16", "full training: dtype of the saved transformer"},
    /* logging */
    {"logging.every", DFM_CFG_INT, "10", NULL, "a progress line every this many steps (0: none; TensorBoard gets every step)"},
    {"logging.tensorboard", DFM_CFG_BOOL, "true", NULL, "write TensorBoard event files in the run directory"},
    /* sample */
    {"sample.prompts", DFM_CFG_STR, NULL, NULL,
     "a prompt file (one per line, musubi-tuner's --w --h --f --d --s --g --fs --n options): sample the model being trained"},
    {"sample.every", DFM_CFG_INT, "0", NULL, "sample every this many steps (0: only at start and at the end)"},
    {"sample.at_start", DFM_CFG_BOOL, "true", NULL, "sample before the first step (not when resuming)"},
    {"sample.model", DFM_CFG_STR, NULL, NULL,
     "the diffusers root whose text encoder, tokenizer, VAE and scheduler sampling uses (default: model.path)"},
    {"sample.width", DFM_CFG_INT, "832", NULL, "default width of a sample (a prompt's --w overrides)"},
    {"sample.height", DFM_CFG_INT, "480", NULL, "default height (--h)"},
    {"sample.frames", DFM_CFG_INT, "33", NULL, "default frames, 4k+1 (--f)"},
    {"sample.steps", DFM_CFG_INT, "30", NULL, "default denoising steps (--s)"},
    {"sample.guidance", DFM_CFG_FLOAT, "5.0", NULL, "default guidance scale (--g)"},
    {"sample.sampler", DFM_CFG_ENUM, "auto", "auto|unipc|euler", "the sampler (auto: the one sample.model's scheduler_config.json names)"},
    {"sample.seed", DFM_CFG_INT, "42", NULL, "default noise seed (--d): the same noise at every step, to compare"},
    {"sample.negative", DFM_CFG_STR, "", NULL, "default negative prompt (--n)"},
    {"sample.format", DFM_CFG_ENUM, "mp4", "mp4|webp|png", "samples/step_N/NNNN.mp4, .webp, or .png (a contact sheet)"},
    /* eval */
    {"eval.every", DFM_CFG_INT, "0", NULL, "evaluate every this many steps (0: never; needs data.eval_shards)"},
    {"eval.at_start", DFM_CFG_BOOL, "false", NULL, "evaluate before the first step (not when resuming)"},
    {"eval.quantiles", DFM_CFG_FLOATLIST, "[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]", NULL,
     "eval loss at these quantiles of the training sigma distribution (diffusion-pipe's)"},
    {"eval.max_batches", DFM_CFG_INT, "0", NULL, "batches per eval pass (0: the whole eval set)"},
};
const int dfm_train_schema_len = sizeof dfm_train_schema / sizeof dfm_train_schema[0];

int dfm_train_config_new(dfm_config **c) { return dfm_config_new(c, dfm_train_schema, dfm_train_schema_len); }

uint64_t dfm_train_config_seed(const dfm_config *c)
{
    return (uint64_t)(dfm_config_has(c, "train.seed") ? dfm_config_int(c, "train.seed") : dfm_config_int(c, "seed"));
}

static int bad(const dfm_config *c, const char *key, const char *why)
{
    char *v = dfm_config_value_text(c, key);
    int rc = dfm_fail(DFM_E_ARG, "%s: '%s' = %s: %s", dfm_config_origin(c, key), key, v ? v : "?", why);
    free(v);
    return rc;
}

/* A NULL-terminated copy of a STRLIST's element pointers, appended to the block *all. */
static const char *const *strlist(const dfm_config *c, const char *key, char ***all, int *used)
{
    int n = dfm_config_list_len(c, key);
    if (!n) return NULL;
    const char **out = (const char **)*all + *used;
    for (int i = 0; i < n; i++) out[i] = dfm_config_list_str(c, key, i);
    out[n] = NULL;
    *used += n + 1;
    return out;
}

int dfm_train_config_trainer(const dfm_config *c, dfm_trainer_opts *o, char ***lists)
{
    memset(o, 0, sizeof *o);
    *lists = NULL;
    if (!dfm_config_has(c, "model.path"))
        return dfm_fail(DFM_E_ARG, "no model: set model.path in the config or --model.path DIR");
    o->model_path = dfm_config_str(c, "model.path");
    o->device = !strcmp(dfm_config_str(c, "train.device"), "cuda") ? DFM_CUDA : DFM_CPU;
    o->weights = !strcmp(dfm_config_str(c, "model.dtype"), "f32") ? DFM_F32 : DFM_BF16;
    o->compute = !strcmp(dfm_config_str(c, "model.compute"), "f32") ? DFM_F32 : DFM_BF16;
    int64_t v = dfm_config_int(c, "model.text_len");
    if (v < 1 || v > 65536) return bad(c, "model.text_len", "must be 1 .. 65536");
    o->text_len = (int)v;
    v = dfm_config_int(c, "lora.rank");
    if (v < 0 || v > 4096) return bad(c, "lora.rank", "must be 0 (full fine-tuning) .. 4096");
    o->lora_rank = (int)v;
    o->lora_alpha = dfm_config_has(c, "lora.alpha") ? (float)dfm_config_float(c, "lora.alpha") : (float)o->lora_rank;
    if (o->lora_rank && !(o->lora_alpha > 0)) return bad(c, "lora.alpha", "must be > 0");
    o->lora_dropout = (float)dfm_config_float(c, "lora.dropout");
    if (!(o->lora_dropout >= 0 && o->lora_dropout < 1)) return bad(c, "lora.dropout", "must be in [0, 1)");
    o->lora_init_from = dfm_config_str(c, "lora.init_from");
    if (o->lora_init_from && !o->lora_rank)
        return bad(c, "lora.init_from", "starts a LoRA: set lora.rank > 0 (the file's ranks are used)");

    dfm_flow_opts_default(&o->flow);
    const char *s = dfm_config_str(c, "flow.sigma_sampling");
    o->flow.sampling = !strcmp(s, "uniform") ? DFM_SIGMA_UNIFORM
                       : !strcmp(s, "mode")  ? DFM_SIGMA_MODE
                       : !strcmp(s, "sigmoid") ? DFM_SIGMA_SIGMOID
                                               : DFM_SIGMA_LOGIT_NORMAL;
    o->flow.logit_mean = dfm_config_float(c, "flow.logit_mean");
    o->flow.logit_std = dfm_config_float(c, "flow.logit_std");
    o->flow.mode_scale = dfm_config_float(c, "flow.mode_scale");
    o->flow.sigmoid_scale = dfm_config_float(c, "flow.sigmoid_scale");
    o->flow.shift = dfm_config_float(c, "flow.shift");
    o->flow.min_t = dfm_config_float(c, "flow.min_t");
    o->flow.max_t = dfm_config_float(c, "flow.max_t");
    o->flow.mix_uniform_ratio = dfm_config_float(c, "flow.mix_uniform_ratio");
    s = dfm_config_str(c, "flow.loss_weighting");
    o->flow.weighting = !strcmp(s, "linear")       ? DFM_LOSSW_LINEAR
                        : !strcmp(s, "sigma_sqrt") ? DFM_LOSSW_SIGMA_SQRT
                        : !strcmp(s, "cosmap")     ? DFM_LOSSW_COSMAP
                                                   : DFM_LOSSW_NONE;
    if (dfm_flow_check(&o->flow)) return DFM_E_ARG; /* its message names the field */

    if (dfm_config_list_len(c, "optim.betas") != 2) return bad(c, "optim.betas", "must be two numbers [beta1, beta2]");
    o->adamw.beta1 = dfm_config_list_float(c, "optim.betas", 0);
    o->adamw.beta2 = dfm_config_list_float(c, "optim.betas", 1);
    if (!(o->adamw.beta1 >= 0 && o->adamw.beta1 < 1 && o->adamw.beta2 >= 0 && o->adamw.beta2 < 1))
        return bad(c, "optim.betas", "each must be in [0, 1)");
    o->adamw.eps = dfm_config_float(c, "optim.eps");
    if (!(o->adamw.eps > 0)) return bad(c, "optim.eps", "must be > 0");
    o->adamw.weight_decay = dfm_config_float(c, "optim.weight_decay");
    if (!(o->adamw.weight_decay >= 0)) return bad(c, "optim.weight_decay", "must be >= 0");
    o->lr = dfm_config_float(c, "optim.lr");
    if (!(o->lr > 0)) return bad(c, "optim.lr", "must be > 0");
    o->min_lr = dfm_config_float(c, "optim.min_lr");
    if (!(o->min_lr >= 0 && o->min_lr <= o->lr)) return bad(c, "optim.min_lr", "must be in [0, optim.lr]");
    o->schedule = dfm_config_str(c, "optim.schedule");
    o->warmup_steps = dfm_config_int(c, "optim.warmup_steps");
    if (o->warmup_steps < 0) return bad(c, "optim.warmup_steps", "must be >= 0");
    o->max_grad_norm = dfm_config_float(c, "optim.max_grad_norm");
    if (!(o->max_grad_norm >= 0)) return bad(c, "optim.max_grad_norm", "must be >= 0 (0: no clipping)");
    v = dfm_config_int(c, "train.grad_accum");
    if (v < 1 || v > 1000000) return bad(c, "train.grad_accum", "must be >= 1");
    o->grad_accum = (int)v;
    o->checkpointing = dfm_config_bool(c, "train.checkpointing");
    o->pack_frozen = dfm_config_bool(c, "train.pack_frozen");
    o->seed = dfm_train_config_seed(c);
    double cd = dfm_config_float(c, "train.caption_dropout");
    if (!(cd >= 0 && cd <= 1)) return bad(c, "train.caption_dropout", "must be in [0, 1]");

    int n = dfm_config_list_len(c, "lora.targets") + dfm_config_list_len(c, "train.freeze") + 2;
    char **block = calloc(n, sizeof *block);
    if (!block) return dfm_fail(DFM_E_NOMEM, "out of memory");
    int used = 0;
    o->lora_targets = strlist(c, "lora.targets", &block, &used);
    o->freeze = strlist(c, "train.freeze", &block, &used);
    if (o->freeze && o->lora_rank) {
        free(block);
        return bad(c, "train.freeze", "is for full fine-tuning (lora.rank 0); LoRA trains only its adapters");
    }
    *lists = block;
    return 0;
}
