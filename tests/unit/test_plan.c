/* test_plan.c — lib/train/plan.c's arithmetic (dfm-train --plan) on a tiny config whose every row
 * is counted by hand below, the parameter counts of the released 1.3B against wan.md 1.5, and the
 * argument checks. */
#include "test.h"

#include "base/error.h"
#include "train/plan.h"

#define MIB (1024.0 * 1024.0)

/* D 4 (1 head x 4), ffn 8, in/out 2 channels, text_dim 3, freq_dim 2, patch 1x1x1, affine norm2 */
static dfm_wan_transformer_config tiny(int layers)
{
    dfm_wan_transformer_config c = {.patch = {1, 1, 1}, .heads = 1, .head_dim = 4, .dim = 4, .in_channels = 2,
                                    .out_channels = 2, .text_dim = 3, .freq_dim = 2, .ffn_dim = 8,
                                    .num_layers = layers, .eps = 1e-6f, .cross_attn_norm = 1, .rope_max_seq_len = 1024};
    return c;
}

/* Latent [2, 1, 1, 2]: N = 2 tokens, batch 1 (M = 2 rows), text_len 3 (T = 3 rows), 1 thread, no
 * read-ahead, CPU. */
static dfm_plan_opts tiny_opts(int layers)
{
    dfm_plan_opts o = {.model = tiny(layers), .device = DFM_CPU, .weights = DFM_BF16, .compute = DFM_BF16, .batch = 1,
                       .frames = 1, .height = 1, .width = 2, .text_len = 3, .world = 1, .threads = 1, .prefetch = 0};
    return o;
}

/* Parameters by hand. Top: patch 2x4+4 = 12, time linear_1 2x4+4 = 12 (f32), linear_2 16+4 = 20
 * (f32), time_proj 4x24+24 = 120, text linear_1 3x4+4 = 16, linear_2 20, proj_out 4x2+2 = 10,
 * scale_shift_table 8 (f32): 218, of which 40 f32. A block: scale_shift_table 24 + norm2 4 + 4 (f32),
 * two attentions of 4 x 20 + norm_q, norm_k 8 = 88 each, ffn 4x8+8 + 8x4+4 = 76: 284, of which 32
 * f32. Per block LoRA rank 1 on the default targets: 8 x (4 + 4) + (4 + 8) + (8 + 4) = 88. */
TEST(plan_lora_rows_by_hand)
{
    dfm_plan_opts o = tiny_opts(1);
    o.lora_rank = 1;
    dfm_plan p;
    CHECK_EQ(dfm_plan_compute(&o, &p), 0);
    CHECK_EQ(p.params, 502);
    CHECK_EQ(p.lora_params, 88);
    CHECK_EQ(p.trained, 88);
    CHECK_EQ(p.adapters, 10);
    CHECK_EQ(p.tokens, 2);
    for (int k = 0; k < 2; k++) { /* one block: the same with checkpointing and without */
        CHECK_NEAR(p.row[DFM_PLAN_WEIGHTS][k], 430 * 2 + 72 * 4, 0);  /* bf16, keep-in-f32 modules f32 */
        CHECK_NEAR(p.row[DFM_PLAN_LORA][k], 88 * 4, 0);
        CHECK_NEAR(p.row[DFM_PLAN_GRADS][k], 88 * 4, 0);
        CHECK_NEAR(p.row[DFM_PLAN_MOMENTS][k], 88 * 8, 0);
        CHECK_NEAR(p.row[DFM_PLAN_STAGING][k], 0, 0);
        /* (L + 1) M D + L B 6 D = 16 + 24 floats */
        CHECK_NEAR(p.row[DFM_PLAN_BLOCK_INPUTS][k], 40 * 4, 0);
        /* 9 MD 72 + norms 2M x 3 = 12 + self 6 MD 48 + MH 2 + 2M 4 + cross 3 MD 24 + 3 TD 36 + MH 2 +
         * M 2 + T 3 + ffn 2 M Ff 32 + adapters r x (6 M + 2 T + 2 M) = 22: 259 floats */
        CHECK_NEAR(p.row[DFM_PLAN_SAVED][k], 259 * 4, 0);
        /* phases: ffn.net.2 16 + 16 + 16 + 4 = 52; net.0 16 + 16 + 8 = 40; cross 16 + 16 + 24 + 8 = 64;
         * self 16 + 32 + 8 = 56 */
        CHECK_NEAR(p.row[DFM_PLAN_BACKWARD][k], 64 * 4, 0);
        /* 1 thread: 2 x min(256 N, 2^22) + N hd = 1024 + 8 */
        CHECK_NEAR(p.row[DFM_PLAN_ATTENTION][k], 1032 * 4, 0);
        /* RoPE 8 + patches 4 + time 42 + text 36 + head 24 + out, dy 8 + backward 64 + inputs 24 +
         * context 18 + one batch 13 = 241 floats */
        CHECK_NEAR(p.row[DFM_PLAN_OTHER][k], 241 * 4, 0);
        CHECK_NEAR(p.row[DFM_PLAN_RUNTIME][k], 68 * MIB, 0);
        CHECK_NEAR(p.row[DFM_PLAN_MARGIN][k], 0.1 * (160 + 1036 + 256 + 4128 + 964), 1e-9);
        double sum = 1148 + 352 + 352 + 704 + 160 + 1036 + 256 + 4128 + 964 + 68 * MIB + 654.4;
        CHECK_NEAR(p.step[k], sum, 1e-6);
        CHECK_NEAR(p.total[k], sum, 1e-6);
    }
    /* f32 base: 4 bytes each; pack_frozen adds a bf16 copy of the 8 + 8 + 16 + 96 + 12 + 16 + 8 +
     * 8 x 16 + 32 + 32 = 356 linear weights */
    o.weights = DFM_F32;
    o.pack_frozen = 1;
    CHECK_EQ(dfm_plan_compute(&o, &p), 0);
    CHECK_NEAR(p.row[DFM_PLAN_WEIGHTS][0], 502 * 4 + 356 * 2, 0);
    /* a text encoder at start larger than the step decides the total */
    o.text_encoder_bytes = 1e9;
    CHECK_EQ(dfm_plan_compute(&o, &p), 0);
    CHECK_NEAR(p.start, 502 * 4 + 356 * 2 + 352 + 352 + 704 + 68 * MIB + 1e9, 1e-3);
    CHECK_NEAR(p.total[0], p.start, 0);
}

/* Full fine-tuning, 2 blocks with block 0 frozen, 4 ranks with the sharded optimizer. */
TEST(plan_full_sharded_by_hand)
{
    dfm_plan_opts o = tiny_opts(2);
    const char *freeze[] = {"blocks.0", NULL};
    o.freeze = freeze;
    o.world = 4;
    o.shard_optimizer = 1;
    dfm_plan p;
    CHECK_EQ(dfm_plan_compute(&o, &p), 0);
    CHECK_EQ(p.params, 218 + 2 * 284);
    CHECK_EQ(p.trained, 218 + 284);
    CHECK_NEAR(p.row[DFM_PLAN_WEIGHTS][0], 786 * 4, 0); /* f32 whatever model.dtype says */
    /* a gradient per parameter, frozen or not, but each block's freed once summed into the shard:
     * the embedders' and head's 218 and one block's 284 live */
    CHECK_NEAR(p.row[DFM_PLAN_GRADS][0], (218 + 284) * 4, 0);
    CHECK_NEAR(p.row[DFM_PLAN_MOMENTS][0], 126 * 8, 0); /* ceil(502 / 4) elements per rank */
    /* the gradient shard + the bucket (2^22 + 4 floats) + a piece (2^22 / 4 + 1) */
    CHECK_NEAR(p.row[DFM_PLAN_STAGING][0], 4 * 126 + 4 * (4194304 + 4) + 4 * (1048576 + 1), 0);
    CHECK_NEAR(p.row[DFM_PLAN_BLOCK_INPUTS][0], (3 * 8 + 2 * 24) * 4, 0);
    CHECK_NEAR(p.row[DFM_PLAN_SAVED][0], 237 * 4, 0);     /* one block, no adapters */
    CHECK_NEAR(p.row[DFM_PLAN_SAVED][1], 2 * 237 * 4, 0); /* both */
    /* the text embedder is trained: + T D = 12 in every phase; cross 28 + 16 + 24 = 68 */
    CHECK_NEAR(p.row[DFM_PLAN_BACKWARD][1], 68 * 4, 0);
    CHECK_NEAR(p.row[DFM_PLAN_OTHER][1], (241 + 12) * 4, 0);
    CHECK(p.total[1] > p.total[0]);
    /* replicated over 2 ranks: every moment, and the 16 MiB reduce bucket */
    o.world = 2;
    o.shard_optimizer = 0;
    CHECK_EQ(dfm_plan_compute(&o, &p), 0);
    CHECK_NEAR(p.row[DFM_PLAN_MOMENTS][0], 502 * 8, 0);
    CHECK_NEAR(p.row[DFM_PLAN_STAGING][0], 16 * MIB, 0);
    /* CUDA: the 256 MiB attention budget + row statistics, an assumed 0.75 GiB runtime */
    o.device = DFM_CUDA;
    CHECK_EQ(dfm_plan_compute(&o, &p), 0);
    CHECK_NEAR(p.row[DFM_PLAN_ATTENTION][0], 256 * MIB + 8 * 2, 0);
    CHECK_NEAR(p.row[DFM_PLAN_RUNTIME][0], 0.75 * 1024 * MIB, 0);
}

/* The released 1.3B (tests/fixtures/wan_transformer_layout/config.json): 1,418,996,800 parameters
 * (reference/wan.md 1.5), a rank-32 LoRA on the 300 default linears = 43,745,280 (docs/training.md). */
TEST(plan_wan_1_3b_counts)
{
    dfm_plan_opts o = tiny_opts(30);
    o.model = (dfm_wan_transformer_config){.patch = {1, 2, 2}, .heads = 12, .head_dim = 128, .dim = 1536, .in_channels = 16,
                                           .out_channels = 16, .text_dim = 4096, .freq_dim = 256, .ffn_dim = 8960,
                                           .num_layers = 30, .eps = 1e-6f, .cross_attn_norm = 1, .rope_max_seq_len = 1024};
    o.frames = 21, o.height = 60, o.width = 104, o.text_len = 512, o.lora_rank = 32;
    dfm_plan p;
    CHECK_EQ(dfm_plan_compute(&o, &p), 0);
    CHECK_EQ(p.params, 1418996800LL);
    CHECK_EQ(p.lora_params, 43745280LL);
    CHECK_EQ(p.adapters, 300);
    CHECK_EQ(p.tokens, 32760);
    /* one target on one block: the block-specific name matches once */
    const char *one[] = {"blocks.3.attn1.to_q", NULL};
    o.lora_targets = one;
    CHECK_EQ(dfm_plan_compute(&o, &p), 0);
    CHECK_EQ(p.adapters, 1);
    CHECK_EQ(p.lora_params, 32 * (1536 + 1536));
}

TEST(plan_bad_options)
{
    dfm_plan_opts o = tiny_opts(1);
    dfm_plan p;
    o.model.patch[2] = 4; /* width 2 is not a multiple */
    CHECK_EQ(dfm_plan_compute(&o, &p), DFM_E_ARG);
    o = tiny_opts(1), o.batch = 0;
    CHECK_EQ(dfm_plan_compute(&o, &p), DFM_E_ARG);
    o = tiny_opts(1), o.world = 0;
    CHECK_EQ(dfm_plan_compute(&o, &p), DFM_E_ARG);
    o = tiny_opts(1), o.weights = DFM_F16;
    CHECK_EQ(dfm_plan_compute(&o, &p), DFM_E_ARG);
}
