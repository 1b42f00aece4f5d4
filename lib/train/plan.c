/* plan.c — dfm-train --plan (plan.h): per-rank memory from the config, the transformer's
 * config.json and the clip shape, before anything heavy is loaded.
 *
 * What is counted (f32 = 4 bytes; M = B N token rows of a micro-batch of B samples of N tokens,
 * T = B text_len text rows, D dim, Ff ffn_dim, h heads, r LoRA rank, L blocks), following the
 * allocations of lib/models/wan/transformer.c, lib/nn and lib/train:
 *   weights      LoRA: bf16 (keep-in-f32 modules — time embedder, scale-shift tables, norm2 — f32)
 *                or f32 by model.dtype, + one bf16 copy of the linears with train.pack_frozen;
 *                full: f32. The transformer's parameters from config.json (1,418,996,800 for the
 *                1.3B, as wan.md 1.5 says).
 *   trained      LoRA: A [r, in] + B [out, r] per adapted linear (lora.targets by PEFT's suffix
 *                rule), f32 values + f32 gradients; full: f32 gradients for every parameter (the
 *                model keeps one per parameter, frozen or not). AdamW: exp_avg + exp_avg_sq of the
 *                trained elements, divided over the ranks with dist.shard_optimizer, which also
 *                keeps a gradient shard (1/N) and two bucket buffers (2^22 + N and 2^22/N floats)
 *                and frees each block's full gradients once summed (one block's live, and the
 *                embedders' and head's);
 *                replicated over N > 1 ranks: the 16 MiB reduce bucket.
 *   block inputs (L + 1) M D (every block's input stays until the backward is done) + L B 6 D
 *                (the blocks' conditioning).
 *   saved        one block's training forward (block_forward + attention + mlp + norms): per token
 *                row 9 D (n1 a1 y1 x1 n2 x2 n3 f y3) + 6 D (self-attention q k v raw and normed,
 *                output) + 3 D (cross-attention q raw and normed, output) + 2 Ff (GELU in and
 *                out) + 2 h (log-sum-exps) + 9 (norm statistics); per text row 3 D (cross k raw
 *                and normed, v) + 1; per adapted linear its rows x r. Checkpointing: one block
 *                (recomputed in the backward); without: all L.
 *   backward     one block's temporaries at their largest phase: the FFN's (2 M D + M Ff, + M Ff
 *                when ffn.net.2 carries an adapter: the LoRA dx product is [M, ffn]) or the
 *                self-attention's (6 M D, + M D with adapters); + T D for the context gradient
 *                when the text embedder is trained (full fine-tuning).
 *   attention    CPU: per thread, P and dP of a backward block (2 x min(256 N, 2^22) floats) and
 *                the bf16 K, V of one head (kernels/cpu/attention.c); CUDA: the 256 MiB score
 *                budget (kernels/cuda/attention.cu) and the row statistics.
 *   other        RoPE tables, patches, the text embedder's three [T, D], the head's two [M, D],
 *                the backward's dh and d(modulated) [M, D] and its output-sized tensors, the
 *                trainer's noise / noisy input / prediction gradient (latent-sized) and padded
 *                context [T, text_dim] and its copies, data.prefetch + 1 batches.
 *   runtime      CPU: 64 MiB + 4 MiB per thread (the process and its libraries, ~34 MiB for the
 *                demo model's run; the GEMM packing scratch of up to 32 MiB; per-thread buffers):
 *                the one constant fitted to the runs below (at 1,920 tokens; the 5,760-token runs
 *                then check it). CUDA: 0.75 GiB for the context, cuBLAS and the stream-ordered
 *                pool's slack — assumed, not measured here (no GPU).
 *   margin       10% of the activation rows (block inputs to other). dfm-train keeps every
 *                allocation on the heap and never trims it (lib/base/cli.c: M_MMAP_MAX 0), so the
 *                resident peak is the live peak plus what the heap's layout leaves unused between a
 *                step's differently sized tensors: the live sum is -5% to +1.3% off the measured
 *                peaks below (the heap's share up to ~5% of the activations, at 5,760 tokens), so
 *                the margin is a tenth of them.
 *   start        before the first step: the persistent rows + the UMT5 encoder (bf16 GEMM weights
 *                packed, embedding mapped) when train.caption_dropout > 0 without
 *                data.empty_prompt; the total is the larger of this and the step's peak.
 *
 * Checked against dfm-train on this CPU (2 threads, bf16 compute, batch 1, 512 text rows, 2 steps
 * so that the lazily allocated AdamW moments are live in the second step's backward): the real
 * 1.3B width (dim 1536, ffn 8960) with 1 and 2 blocks, random weights written by
 * scripts/bench_transformer.c `write`, shards of random latents [16, F, H, W] and text [64, 4096];
 * the peak is VmHWM after "model loaded" (reset through /proc/PID/clear_refs). MiB, measured /
 * planned (the total, margin included; without it in brackets):
 *   tokens  blocks  LoRA r32 ckpt on     ckpt off             full ckpt on         ckpt off
 *   1,920   2        987 / 1056 (991)    1327 / 1435 (1336)   2442 / 2522 (2464)   2780 / 2899 (2807)
 *   1,920   1        876 /  932 (869)     869 /  932 (869)    1721 / 1801 (1744)   1728 / 1801 (1744)
 *   5,760   2       2264 / 2342 (2161)   3269 / 3460 (3178)   3471 / 3659 (3497)   4481 / 4771 (4508)
 *   5,760   1       2124 / 2194 (2016)   2119 / 2194 (2016)   2782 / 2913 (2755)   2736 / 2913 (2755)
 *   32,760  1       10015 / 10995 (10017)   (1 step: the adapters' 11 MiB of moments come after it)
 * (1,920 tokens: latent [16, 5, 32, 48], 17 frames at 256x384; 5,760: [16, 9, 40, 64], 33 frames
 * at 320x512; 32,760: [16, 21, 60, 104], 81 frames at 480x832.) The plan is 3% to 10% above every
 * measured peak; the live sum alone -5% to +1.3%.
 * Commands: docs/training.md "Will it fit?".
 */
#include "train/plan.h"

#include "base/error.h"
#include "data/train_data.h"
#include "dist/dist.h"
#include "io/hfmodel.h"
#include "models/wan/umt5.h"
#include "train/train_config.h"
#include "train/trainer.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define GIB (1024.0 * 1024.0 * 1024.0)
#define MIB (1024.0 * 1024.0)

/* ---- the transformer's modules ----------------------------------------------------------------- */

enum { ROWS_TOKENS, ROWS_TEXT, ROWS_BATCH };

/* A linear (in > 0: weight [out, in] + bias [out]) or a parameter vector (in == 0: out elements,
 * name is the parameter's). */
typedef struct {
    char name[96];
    int64_t in, out;
    int keep_f32; /* diffusers' _keep_in_fp32_modules */
    int rows;     /* what feeds it: ROWS_* */
    int lora_ok;  /* an adapter is allowed (not patch_embedding, a Conv3d) */
} module;

#define MAX_MODULES 24

/* The modules of block b (b >= 0) or the top level (b < 0), as transformer.c loads them. */
static int modules(const dfm_wan_transformer_config *c, int b, module *m)
{
    int64_t D = c->dim, P = (int64_t)c->patch[0] * c->patch[1] * c->patch[2];
    int n = 0;
#define ADD(nm, i, o, keep, rw, ok)                                                   \
    do {                                                                              \
        if (b >= 0) snprintf(m[n].name, sizeof m[n].name, "blocks.%d.%s", b, nm);    \
        else snprintf(m[n].name, sizeof m[n].name, "%s", nm);                         \
        m[n].in = (i), m[n].out = (o), m[n].keep_f32 = (keep), m[n].rows = (rw), m[n].lora_ok = (ok); \
        n++;                                                                          \
    } while (0)
    if (b < 0) {
        ADD("patch_embedding", c->in_channels * P, D, 0, ROWS_TOKENS, 0);
        ADD("condition_embedder.time_embedder.linear_1", c->freq_dim, D, 1, ROWS_BATCH, 1);
        ADD("condition_embedder.time_embedder.linear_2", D, D, 1, ROWS_BATCH, 1);
        ADD("condition_embedder.time_proj", D, 6 * D, 0, ROWS_BATCH, 1);
        ADD("condition_embedder.text_embedder.linear_1", c->text_dim, D, 0, ROWS_TEXT, 1);
        ADD("condition_embedder.text_embedder.linear_2", D, D, 0, ROWS_TEXT, 1);
        ADD("proj_out", D, (int64_t)c->out_channels * P, 0, ROWS_TOKENS, 1);
        ADD("scale_shift_table", 0, 2 * D, 1, ROWS_TOKENS, 0);
        return n;
    }
    ADD("scale_shift_table", 0, 6 * D, 1, ROWS_TOKENS, 0);
    if (c->cross_attn_norm) {
        ADD("norm2.weight", 0, D, 1, ROWS_TOKENS, 0);
        ADD("norm2.bias", 0, D, 1, ROWS_TOKENS, 0);
    }
    ADD("attn1.to_q", D, D, 0, ROWS_TOKENS, 1);
    ADD("attn1.to_k", D, D, 0, ROWS_TOKENS, 1);
    ADD("attn1.to_v", D, D, 0, ROWS_TOKENS, 1);
    ADD("attn1.to_out.0", D, D, 0, ROWS_TOKENS, 1);
    ADD("attn1.norm_q.weight", 0, D, 0, ROWS_TOKENS, 0);
    ADD("attn1.norm_k.weight", 0, D, 0, ROWS_TOKENS, 0);
    ADD("attn2.to_q", D, D, 0, ROWS_TOKENS, 1);
    ADD("attn2.to_k", D, D, 0, ROWS_TEXT, 1);
    ADD("attn2.to_v", D, D, 0, ROWS_TEXT, 1);
    ADD("attn2.to_out.0", D, D, 0, ROWS_TOKENS, 1);
    ADD("attn2.norm_q.weight", 0, D, 0, ROWS_TOKENS, 0);
    ADD("attn2.norm_k.weight", 0, D, 0, ROWS_TOKENS, 0);
    ADD("ffn.net.0.proj", D, c->ffn_dim, 0, ROWS_TOKENS, 1);
    ADD("ffn.net.2", c->ffn_dim, D, 0, ROWS_TOKENS, 1);
#undef ADD
    return n;
}

/* ---- the arithmetic ------------------------------------------------------------------------------ */

static double dmax(double a, double b) { return a > b ? a : b; }

int dfm_plan_compute(const dfm_plan_opts *o, dfm_plan *p)
{
    memset(p, 0, sizeof *p);
    const dfm_wan_transformer_config *c = &o->model;
    if (c->dim < 1 || c->heads < 1 || c->ffn_dim < 1 || c->num_layers < 0 || c->in_channels < 1 || c->out_channels < 1 ||
        c->text_dim < 1 || c->freq_dim < 1 || c->patch[0] < 1 || c->patch[1] < 1 || c->patch[2] < 1)
        return dfm_fail(DFM_E_ARG, "plan: the transformer's config has a size below 1");
    if (o->batch < 1) return dfm_fail(DFM_E_ARG, "plan: batch %d must be >= 1", o->batch);
    if (o->world < 1) return dfm_fail(DFM_E_ARG, "plan: world %d must be >= 1", o->world);
    if (o->text_len < 1) return dfm_fail(DFM_E_ARG, "plan: text_len %d must be >= 1", o->text_len);
    if (o->lora_rank < 0) return dfm_fail(DFM_E_ARG, "plan: lora rank %d must be >= 0", o->lora_rank);
    if (o->weights != DFM_BF16 && o->weights != DFM_F32) return dfm_fail(DFM_E_ARG, "plan: weights must be BF16 or F32");
    if (o->frames < 1 || o->height < 1 || o->width < 1 || o->frames % c->patch[0] || o->height % c->patch[1] ||
        o->width % c->patch[2])
        return dfm_fail(DFM_E_ARG, "plan: latent [%d, %d, %d] (frames, height, width) is not a positive multiple of the patch [%d, %d, %d]",
                        o->frames, o->height, o->width, c->patch[0], c->patch[1], c->patch[2]);
    const double D = c->dim, Ff = c->ffn_dim, H = c->heads, hd = c->head_dim, Ly = c->num_layers;
    const double P = (double)c->patch[0] * c->patch[1] * c->patch[2];
    const double N = (double)(o->frames / c->patch[0]) * (o->height / c->patch[1]) * (o->width / c->patch[2]);
    const double B = o->batch, M = B * N, T = B * o->text_len, r = o->lora_rank;
    const double latent = (double)c->in_channels * o->frames * o->height * o->width; /* one sample's */
    const int lora = o->lora_rank > 0, cpu = o->device != DFM_CUDA;
    const char *const *targets = o->lora_targets ? o->lora_targets : dfm_wan_lora_default_targets;
    p->tokens = (int64_t)N;

    /* parameters, weights, adapters and their activations (rows feeding them x r) */
    double wbytes = 0, linear_w = 0, lora_top = 0, lora_blk = 0, block0_params = 0;
    int text_trained = !lora; /* the context gradient is needed: full, or adapters on the text embedder */
    int fc1_lora = 0, fc2_lora = 0, attn1_lora = 0, attn2_qo_lora = 0, attn2_kv_lora = 0;
    for (int b = -1; b < c->num_layers; b++) {
        module m[MAX_MODULES];
        int n = modules(c, b, m);
        double acts_b = 0;
        for (int i = 0; i < n; i++) {
            double numel = m[i].in ? (double)m[i].out * m[i].in + m[i].out : (double)m[i].out;
            p->params += (int64_t)numel;
            if (b == 0) block0_params += numel;
            wbytes += numel * (!lora || o->weights == DFM_F32 || m[i].keep_f32 ? 4 : 2);
            if (m[i].in) linear_w += (double)m[i].out * m[i].in;
            if (!lora) { /* full: weight and bias frozen separately */
                if (!m[i].in) {
                    if (!dfm_trainer_frozen(m[i].name, o->freeze)) p->trained += (int64_t)numel;
                    continue;
                }
                char nm[128];
                snprintf(nm, sizeof nm, "%s.weight", m[i].name);
                if (!dfm_trainer_frozen(nm, o->freeze)) p->trained += m[i].out * m[i].in;
                snprintf(nm, sizeof nm, "%s.bias", m[i].name);
                if (!dfm_trainer_frozen(nm, o->freeze)) p->trained += m[i].out;
                continue;
            }
            if (!m[i].in || !m[i].lora_ok || !dfm_wan_lora_target_match(m[i].name, targets)) continue;
            p->adapters++;
            p->lora_params += (int64_t)(r * (m[i].in + m[i].out));
            double rows = m[i].rows == ROWS_TOKENS ? M : m[i].rows == ROWS_TEXT ? T : B;
            if (b < 0) {
                lora_top += rows * r;
                if (strstr(m[i].name, "text_embedder")) text_trained = 1;
                continue;
            }
            acts_b += rows * r;
            const char *s = strchr(m[i].name + strlen("blocks."), '.') + 1; /* the name within the block */
            if (!strcmp(s, "ffn.net.0.proj")) fc1_lora = 1;
            else if (!strcmp(s, "ffn.net.2")) fc2_lora = 1;
            else if (!strncmp(s, "attn1.", 6)) attn1_lora = 1;
            else if (!strcmp(s, "attn2.to_k") || !strcmp(s, "attn2.to_v")) attn2_kv_lora = 1;
            else attn2_qo_lora = 1;
        }
        if (b >= 0) lora_blk = dmax(lora_blk, acts_b); /* block-specific targets: the most of one block */
    }
    if (lora) p->trained = p->lora_params;

    double w = wbytes;
    if (lora && o->pack_frozen && cpu && o->compute == DFM_BF16) w += 2 * linear_w; /* dfm_wan_transformer_pack(m, 0) */
    double lora_b = 4.0 * p->lora_params;
    double grads = lora ? 4.0 * p->lora_params : 4.0 * p->params;
    /* sharded over ranks: a block's gradients are summed into the shard and freed as soon as its
     * backward ends (optim.h, dfm_adamw_reduce_block): the others' and one block's live */
    if (!lora && o->shard_optimizer && o->world > 1) grads = 4.0 * (p->params - Ly * block0_params + block0_params);
    double share = o->shard_optimizer && o->world > 1 ? (double)((p->trained + o->world - 1) / o->world) : (double)p->trained;
    double moments = 8.0 * share;
    double bucket = (double)((int64_t)1 << 22);
    double staging = 0;
    if (o->shard_optimizer && o->world > 1) staging = 4.0 * share + 4.0 * (bucket + o->world) + 4.0 * (bucket / o->world + 1);
    else if (o->world > 1) staging = 4.0 * bucket;

    /* activations (floats) */
    double inputs = (Ly + 1) * M * D + Ly * B * 6 * D;
    double blk = (c->cross_attn_norm ? 9 : 8) * M * D + 2 * M * (c->cross_attn_norm ? 3 : 2) /* norms */
                 + 6 * M * D + M * H + 2 * M                                                  /* self-attention */
                 + 3 * M * D + 3 * T * D + M * H + M + T                                      /* cross-attention */
                 + 2 * M * Ff                                                                 /* FFN */
                 + lora_blk;
    double ctxg = text_trained ? T * D : 0;
    double base = 2 * M * D + ctxg;
    double ph_fc2 = base + M * Ff + (fc2_lora ? M * Ff + 2 * M * r : 0);
    double ph_fc1 = base + M * Ff + (fc1_lora ? M * D : 0);
    double ph_at2 = base + 2 * M * D + 2 * T * D + dmax(attn2_qo_lora ? M * D : 0, attn2_kv_lora && text_trained ? T * D : 0);
    double ph_at1 = base + 4 * M * D + (attn1_lora ? M * D : 0);
    double bwd = dmax(dmax(ph_fc2, ph_fc1), dmax(ph_at2, ph_at1));
    double other = N * hd                                /* RoPE cos, sin */
                   + M * c->in_channels * P              /* patches */
                   + B * (c->freq_dim + 10 * D)          /* time embedding */
                   + 3 * T * D                           /* text embedder */
                   + 2 * M * D + B * 2 * D               /* head: norm_out, modulated */
                   + 2 * M * c->out_channels * P         /* output, its gradient patchified */
                   + 2 * M * D + ctxg + B * 12 * D       /* backward: dh, d(modulated), d(context), de */
                   + lora_top                            /* adapters outside the blocks */
                   + B * (4 * latent + 2.0 * c->out_channels * o->frames * o->height * o->width) /* x0, noise, x_t (host, device), pred grad, dout */
                   + 2 * T * c->text_dim                 /* padded context and the states' copies */
                   + (o->prefetch + 1.0) * B * (latent + (double)o->text_len * c->text_dim); /* data read ahead */
    double attn;
    if (cpu) {
        int th = o->threads > 0 ? o->threads : 1;
        double pb = N * 256 < bucket ? N * 256 : bucket; /* P or dP of a backward block: BWD_QB x keys, at most 2^22 */
        attn = th * (2 * pb + N * hd);
    } else {
        attn = 256.0 * MIB / 4 + 2 * B * H * N;
    }
    double runtime = cpu ? 64 * MIB + 4 * MIB * (o->threads > 0 ? o->threads : 1) : 0.75 * GIB;

    for (int k = 0; k < 2; k++) { /* 0: checkpointing on, 1: off */
        p->row[DFM_PLAN_WEIGHTS][k] = w;
        p->row[DFM_PLAN_LORA][k] = lora_b;
        p->row[DFM_PLAN_GRADS][k] = grads;
        p->row[DFM_PLAN_MOMENTS][k] = moments;
        p->row[DFM_PLAN_STAGING][k] = staging;
        p->row[DFM_PLAN_BLOCK_INPUTS][k] = 4 * inputs;
        p->row[DFM_PLAN_SAVED][k] = 4 * (k ? Ly : (Ly > 0 ? 1 : 0)) * blk;
        p->row[DFM_PLAN_BACKWARD][k] = Ly > 0 ? 4 * bwd : 0;
        p->row[DFM_PLAN_ATTENTION][k] = Ly > 0 ? 4 * attn : 0;
        p->row[DFM_PLAN_OTHER][k] = 4 * other;
        p->row[DFM_PLAN_RUNTIME][k] = runtime;
        double acts = 0;
        for (int i = DFM_PLAN_BLOCK_INPUTS; i <= DFM_PLAN_OTHER; i++) acts += p->row[i][k];
        p->row[DFM_PLAN_MARGIN][k] = 0.10 * acts;
        p->step[k] = 0;
        for (int i = 0; i < DFM_PLAN_ROWS; i++) p->step[k] += p->row[i][k];
    }
    p->start = w + lora_b + grads + moments + staging + runtime + o->text_encoder_bytes;
    for (int k = 0; k < 2; k++) p->total[k] = dmax(p->step[k], p->start);
    return 0;
}

/* ---- printing ------------------------------------------------------------------------------------ */

/* n with thousands separators */
static const char *grouped(int64_t n, char *buf, size_t len)
{
    char raw[32];
    snprintf(raw, sizeof raw, "%lld", (long long)(n < 0 ? -n : n));
    size_t k = strlen(raw), j = 0;
    if (n < 0 && j + 1 < len) buf[j++] = '-';
    for (size_t i = 0; i < k && j + 2 < len; i++) {
        if (i && (k - i) % 3 == 0) buf[j++] = ',';
        buf[j++] = raw[i];
    }
    buf[j] = 0;
    return buf;
}

static void verdict(FILE *f, const char *what, double limit, const double t[2])
{
    fprintf(f, "  %-32s", what);
    int on = t[0] <= limit, off = t[1] <= limit;
    if (on && off) fprintf(f, "fits either way (%.1f GiB with checkpointing, %.1f without)\n", t[0] / GIB, t[1] / GIB);
    else if (on) fprintf(f, "fits with checkpointing (%.1f GiB); not without (%.1f GiB)\n", t[0] / GIB, t[1] / GIB);
    else if (off) fprintf(f, "fits without checkpointing (%.1f GiB) only\n", t[1] / GIB);
    else fprintf(f, "does not fit (%.1f GiB with checkpointing, %.1f without)\n", t[0] / GIB, t[1] / GIB);
}

int dfm_plan_print(const dfm_plan_opts *o, const dfm_plan *p, int checkpointing, FILE *out)
{
    static const char *const names[DFM_PLAN_ROWS] = {
        "weights", "LoRA adapters (f32)", "gradients (f32)", "AdamW moments (2 x f32)", "gradient shard + staging",
        "block inputs", "saved activations", "backward of one block", "attention working set",
        "embedders, head, inputs, data", "runtime", "margin (10% of activations)"};
    int lora = o->lora_rank > 0, sharded = o->shard_optimizer && o->world > 1;
    char label[DFM_PLAN_ROWS][64];
    for (int i = 0; i < DFM_PLAN_ROWS; i++) snprintf(label[i], sizeof label[i], "%s", names[i]);
    snprintf(label[DFM_PLAN_WEIGHTS], sizeof label[0], "weights (%s%s)",
             !lora ? "f32, trained" : o->weights == DFM_F32 ? "frozen base, f32" : "frozen base, bf16",
             lora && o->pack_frozen && o->device != DFM_CUDA && o->compute == DFM_BF16 ? ", + packed copy" : "");
    if (sharded) snprintf(label[DFM_PLAN_MOMENTS], sizeof label[0], "AdamW moments (1/%d of them)", o->world);
    snprintf(label[DFM_PLAN_BLOCK_INPUTS], sizeof label[0], "block inputs (%d x [tokens, dim])", o->model.num_layers + 1);
    snprintf(label[DFM_PLAN_SAVED], sizeof label[0], "saved activations (1 / %d blocks)", o->model.num_layers);
    snprintf(label[DFM_PLAN_RUNTIME], sizeof label[0], "runtime (%s)", o->device == DFM_CUDA ? "CUDA context, assumed" : "process, scratch");
    fprintf(out, "\n  %-36s %12s\n", "GiB per rank", "checkpointing");
    fprintf(out, "  %-36s %12s %8s\n", "", checkpointing ? "on (config)" : "on", checkpointing ? "off" : "off (config)");
    for (int i = 0; i < DFM_PLAN_ROWS; i++) {
        if (i == DFM_PLAN_LORA && !lora) continue;
        if (i == DFM_PLAN_STAGING && o->world < 2) continue;
        fprintf(out, "  %-36s %12.2f %8.2f\n", label[i], p->row[i][0] / GIB, p->row[i][1] / GIB);
    }
    fprintf(out, "  %-36s %12.2f %8.2f\n", "total", p->total[0] / GIB, p->total[1] / GIB);
    if (o->text_encoder_bytes > 0)
        fprintf(out, "  (before the first step the UMT5 text encoder adds %.2f GiB: %.2f GiB then%s)\n", o->text_encoder_bytes / GIB,
                p->start / GIB, p->start > p->step[0] ? "; the total with checkpointing is that" : "");
    return ferror(out) ? dfm_fail(DFM_E_IO, "writing the plan") : 0;
}

/* ---- from the config ----------------------------------------------------------------------------- */

/* MemTotal of /proc/meminfo in bytes, 0 when unknown */
static double ram_total(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    double v = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "MemTotal:", 9)) v = atof(line + 9) * 1024.0;
    if (f) fclose(f);
    return v;
}

/* The UMT5 encoder dfm-train loads for the empty prompt (lib/train/run.c empty_from_model: BF16
 * weights on the CPU): the GEMM weights packed as bf16 (umt5.h), the embedding used in place from
 * the mapped file, norms and relative-bias tables f32. */
static double umt5_bytes(const dfm_umt5_config *u)
{
    double inner = (double)u->num_heads * u->d_kv;
    double gemm = (double)u->num_layers * (4.0 * u->d_model * inner + (u->gated_gelu ? 3.0 : 2.0) * u->d_model * u->d_ff);
    double small = (double)u->num_layers * (2.0 * u->d_model + (double)u->rel_buckets * u->num_heads) + u->d_model;
    return 2 * gemm + 4 * small;
}

/* Latent shapes of data.shards: every bucket's [C, F, H, W] and batch size. */
typedef struct {
    int n;
    int64_t (*shape)[4];
    int *batch;
} buckets_t;

static int scan_shards(const dfm_config *c, int batch, buckets_t *bk)
{
    memset(bk, 0, sizeof *bk);
    int n = dfm_config_list_len(c, "data.shards"), nr = dfm_config_list_len(c, "data.repeats");
    const char **specs = calloc((size_t)n + 1, sizeof *specs);
    double *rep = calloc((size_t)n + 1, sizeof *rep);
    if (!specs || !rep) {
        free(specs), free(rep);
        return dfm_fail(DFM_E_NOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) specs[i] = dfm_config_list_str(c, "data.shards", i), rep[i] = 1;
    for (int i = 0; i < nr && i < n; i++) rep[i] = dfm_config_list_float(c, "data.repeats", i);
    int bl = dfm_config_list_len(c, "data.base_resolution") == 2;
    dfm_train_data_opts o = {.specs = specs, .nspecs = n, .repeats = rep, .batch_size = batch,
                             .dynamic_batch = dfm_config_bool(c, "data.dynamic_batch"),
                             .base_w = bl ? (int)dfm_config_list_float(c, "data.base_resolution", 0) : 512,
                             .base_h = bl ? (int)dfm_config_list_float(c, "data.base_resolution", 1) : 512,
                             .drop_last = 0, .shuffle = 0, .seed = 0, .rank = 0, .world = 1, .prefetch = 0};
    dfm_train_data *d = NULL;
    int rc = dfm_train_data_open(&d, &o);
    free(specs), free(rep);
    if (rc) return rc;
    int nb = dfm_train_data_buckets(d);
    bk->shape = calloc((size_t)(nb ? nb : 1), sizeof *bk->shape);
    bk->batch = calloc((size_t)(nb ? nb : 1), sizeof *bk->batch);
    if (!bk->shape || !bk->batch) rc = dfm_fail(DFM_E_NOMEM, "out of memory");
    for (int i = 0; !rc && i < nb; i++) {
        int64_t ex;
        if (!(rc = dfm_train_data_bucket(d, i, bk->shape[i], &ex, &bk->batch[i]))) bk->n++;
    }
    dfm_train_data_close(d);
    if (rc) free(bk->shape), free(bk->batch), memset(bk, 0, sizeof *bk);
    return rc;
}

int dfm_plan_run(const dfm_config *c, const dfm_plan_request *rq, FILE *out)
{
    dfm_trainer_opts to;
    char **lists = NULL;
    char *dir = NULL, *tdir = NULL;
    buckets_t bk = {0};
    int rc = dfm_train_config_trainer(c, &to, &lists);
    if (rc) return rc;
    const char *path = to.model_path;
    struct stat st;
    dfm_plan_opts o = {0};
    char note[3][1024] = {{0}};
    if (!stat(path, &st) && S_ISREG(st.st_mode)) {
        rc = dfm_fail(DFM_E_UNSUPPORTED, "model.path '%s' is a single weights file: --plan reads only a config.json "
                                         "(give the diffusers transformer directory, or a directory with its config.json)", path);
        goto out;
    }
    static const char *const classes[] = {"WanTransformer3DModel", "WanModel", NULL};
    int found = 0;
    if ((rc = dfm_hf_component(path, "transformer", classes, &dir)) ||
        (rc = dfm_wan_transformer_config_load(&o.model, dir, &found)))
        goto out;
    if (!found) {
        rc = dfm_fail(DFM_E_ARG, "'%s' has no config.json: --plan needs the transformer's config", dir);
        goto out;
    }
    o.device = to.device, o.weights = to.weights, o.compute = to.compute, o.lora_rank = to.lora_rank;
    o.lora_targets = to.lora_targets, o.freeze = to.freeze, o.pack_frozen = to.pack_frozen, o.text_len = to.text_len;
    o.batch = (int)dfm_config_int(c, "data.batch_size");
    o.prefetch = (int)dfm_config_int(c, "data.prefetch");
    if (o.batch < 1 || o.prefetch < 0) {
        rc = dfm_fail(DFM_E_ARG, "%s must be >= %d", o.batch < 1 ? "data.batch_size" : "data.prefetch", o.batch < 1);
        goto out;
    }
    int64_t th = dfm_config_int(c, "train.threads");
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    o.threads = th > 0 ? (int)th : ncpu > 0 ? (int)ncpu : 1;
    /* ranks: --world, else the launcher's (mpirun, srun: what dfm-train would join), else 1 */
    dfm_dist_env env;
    char wfrom[96];
    if (rq && rq->world > 0) {
        o.world = rq->world;
        snprintf(wfrom, sizeof wfrom, "--world");
    } else {
        if ((rc = dfm_dist_launcher(&env))) goto out;
        o.world = env.size;
        if (env.size > 1) snprintf(wfrom, sizeof wfrom, "from %s", env.launcher);
        else snprintf(wfrom, sizeof wfrom, "no launcher; --world N plans a job of N");
    }
    o.shard_optimizer = dfm_config_bool(c, "dist.shard_optimizer");
    int checkpointing = to.checkpointing;
    if (to.lora_init_from)
        snprintf(note[2], sizeof note[2], "lora.init_from is not read: its modules and ranks are taken as lora.targets and lora.rank");

    /* the text encoder for caption dropout */
    if (dfm_config_float(c, "train.caption_dropout") > 0 && !dfm_config_has(c, "data.empty_prompt")) {
        static const dfm_umt5_config xxl = {.d_model = 4096, .d_kv = 64, .num_heads = 64, .d_ff = 10240, .num_layers = 24,
                                            .vocab_size = 256384, .rel_buckets = 32, .gated_gelu = 1}; /* Wan's UMT5-XXL */
        dfm_umt5_config u = xxl;
        int have = !dfm_hf_component(path, "text_encoder", NULL, &tdir) && !dfm_umt5_config_load(&u, tdir);
        if (!have) {
            u = xxl;
            snprintf(note[1], sizeof note[1], "caption dropout needs the empty prompt: no text_encoder/ under model.path "
                                              "(dfm-train will refuse to start; set data.empty_prompt), UMT5-XXL assumed");
        } else {
            snprintf(note[1], sizeof note[1], "caption dropout encodes the empty prompt with %s at start (data.empty_prompt avoids it)",
                     tdir);
        }
        o.text_encoder_bytes = umt5_bytes(&u);
    }

    /* the clip: --plan-shape, the largest bucket of data.shards, or Wan's 81 frames at 480x832 */
    dfm_plan p;
    char from[1200] = "";
    if (rq && rq->shape[0] > 0) {
        o.frames = rq->shape[0], o.height = rq->shape[1], o.width = rq->shape[2];
        snprintf(from, sizeof from, "--plan-shape");
    } else {
        int src = 0;
        if (dfm_config_list_len(c, "data.shards")) {
            if (scan_shards(c, o.batch, &bk)) snprintf(note[0], sizeof note[0], "data.shards: %s", dfm_errmsg());
            else src = 1;
        } else {
            snprintf(note[0], sizeof note[0], "no data.shards");
        }
        if (!src || !bk.n) {
            o.frames = 21, o.height = 60, o.width = 104;
            snprintf(from, sizeof from, "assumed (%s): Wan's 81 frames at 480x832; --plan-shape F,H,W gives another",
                     note[0][0] ? note[0] : "no samples");
            note[0][0] = 0;
        } else { /* the bucket whose step needs the most */
            double best = -1;
            int bi = 0, bb = o.batch;
            for (int i = 0; i < bk.n; i++) {
                dfm_plan_opts q = o;
                q.frames = (int)bk.shape[i][1], q.height = (int)bk.shape[i][2], q.width = (int)bk.shape[i][3];
                q.batch = bk.batch[i];
                if (bk.shape[i][0] != o.model.in_channels) {
                    rc = dfm_fail(DFM_E_ARG, "data.shards: latents with %lld channels, the transformer takes %d",
                                  (long long)bk.shape[i][0], o.model.in_channels);
                    goto out;
                }
                if ((rc = dfm_plan_compute(&q, &p))) goto out;
                if (p.total[checkpointing ? 0 : 1] > best) best = p.total[checkpointing ? 0 : 1], bi = i, bb = q.batch;
            }
            o.frames = (int)bk.shape[bi][1], o.height = (int)bk.shape[bi][2], o.width = (int)bk.shape[bi][3], o.batch = bb;
            snprintf(from, sizeof from, "from data.shards: the largest of %d bucket%s", bk.n, bk.n == 1 ? "" : "s");
        }
    }
    if ((rc = dfm_plan_compute(&o, &p))) goto out;
    dfm_plan_opts og = o, oc = o;
    og.device = DFM_CUDA, oc.device = DFM_CPU;
    dfm_plan pg, pc;
    if ((rc = dfm_plan_compute(&og, &pg)) || (rc = dfm_plan_compute(&oc, &pc))) goto out;

    /* heading */
    char a[32], b2[32], c3[32];
    const dfm_wan_transformer_config *m = &o.model;
    fprintf(out, "dfm-train --plan%s%s: the memory of one rank, before anything is loaded\n", rq && rq->config_path ? " " : "",
            rq && rq->config_path ? rq->config_path : "");
    fprintf(out, "  model     %s: %d blocks, dim %d (%d heads x %d), ffn %d, text_dim %d; %s parameters\n", dir, m->num_layers,
            m->dim, m->heads, m->head_dim, m->ffn_dim, m->text_dim, grouped(p.params, a, sizeof a));
    if (o.lora_rank)
        fprintf(out, "  training  LoRA rank %d on %d linears: %s trained parameters; base %s, compute %s\n", o.lora_rank, p.adapters,
                grouped(p.lora_params, a, sizeof a), o.weights == DFM_F32 ? "f32" : "bf16", o.compute == DFM_F32 ? "f32" : "bf16");
    else
        fprintf(out, "  training  full fine-tuning: %s trained parameters (f32); compute %s\n", grouped(p.trained, a, sizeof a),
                o.compute == DFM_F32 ? "f32" : "bf16");
    fprintf(out, "  clip      latent [%d, %d, %d, %d] (%d frame%s at %dx%d): %s tokens x batch %d per rank, text %d rows; %s\n",
            m->in_channels, o.frames, o.height, o.width, 4 * (o.frames - 1) + 1, o.frames > 1 ? "s" : "", 8 * o.height, 8 * o.width,
            grouped(p.tokens, b2, sizeof b2), o.batch, o.text_len, from);
    fprintf(out, "  ranks     %d (%s); AdamW moments %s\n", o.world, wfrom,
            o.shard_optimizer && o.world > 1 ? "sharded over the ranks (dist.shard_optimizer)"
            : o.shard_optimizer                ? "replicated (dist.shard_optimizer needs more than one rank)"
                                               : "replicated on every rank");
    fprintf(out, "  device    %s%s\n", o.device == DFM_CUDA ? "cuda" : "cpu",
            o.device == DFM_CUDA ? "" : (snprintf(c3, sizeof c3, ", %d threads", o.threads), c3));
    for (int i = 0; i < 3; i++)
        if (note[i][0]) fprintf(out, "  note      %s\n", note[i]);
    if (o.device == DFM_CUDA && o.shard_optimizer && o.world > 1)
        fprintf(out, "  note      the sharded optimizer keeps CPU parameters only for now (lib/train/optim.h): dfm-train refuses it on cuda\n");
    if (dfm_config_has(c, "sample.prompts"))
        fprintf(out, "  note      sample.prompts: sampling between steps (its VAE and CFG forwards) is not counted\n");
    if ((rc = dfm_plan_print(&o, &p, checkpointing, out))) goto out;

    double ram = ram_total();
    fprintf(out, "\nverdict (totals per rank)\n");
    verdict(out, "24 GiB GPU", 24 * GIB, pg.total);
    verdict(out, "80 GiB GPU", 80 * GIB, pg.total);
    if (ram > 0) {
        snprintf(c3, sizeof c3, "this machine (%.1f GiB RAM)", ram / GIB);
        verdict(out, c3, ram, pc.total);
    }
    if (ferror(out)) rc = dfm_fail(DFM_E_IO, "writing the plan");
out:
    free(lists);
    free(dir);
    free(tdir);
    free(bk.shape), free(bk.batch);
    return rc;
}
