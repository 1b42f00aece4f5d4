/* test_train_interop.c — what dfm-train saves gives the forward of the model it trained.
 *
 * A LoRA (r 4, alpha 8: the scale 2 is folded into B when saved) and a full fine-tuning of the tiny
 * transformer wan_transformer/a are trained a few steps (sigma and noise drawn from the keys, so
 * the weights move away from the fixture's); then the trainer's own forward on the fixture's
 * inputs is compared with the forward of the saved checkpoint loaded back through the production
 * loaders (dfm_wan_lora_load onto a fresh base; dfm_wan_transformer_load of the saved diffusers
 * directory): LoRA within 1e-6 of max |out| (folding rounds B once), full bit for bit.
 *
 * With DFM_INTEROP_OUT=DIR set, the checkpoints (DIR/lora, DIR/full) and the trained forwards
 * (DIR/lora_out.npy, DIR/full_out.npy, on DIR/inputs from wan_transformer/a) are also written
 * there for scripts/check-train-interop.py, which loads them with diffusers
 * (WanPipeline.load_lora_into_transformer, WanTransformer3DModel.from_pretrained) and compares
 * (tests/pipeline/interop_train.sh runs both when torch and diffusers are installed). */
#include "test.h"
#include "tensor_util.h"
#include "base/error.h"
#include "io/npy.h"
#include "models/wan/lora.h"
#include "models/wan/transformer.h"
#include "tensor/ops.h"
#include "train/trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    dfm_tensor x, ctx, t; /* the fixture's forward inputs */
} inputs_t;

static int load_inputs(inputs_t *in)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/wan_transformer/a", dfm_test_fixtures());
    memset(in, 0, sizeof *in);
    return dfm_test_load_npy(dir, "hidden_states.npy", &in->x, 0) ||
           dfm_test_load_npy(dir, "encoder_hidden_states.npy", &in->ctx, 0) ||
           dfm_test_load_npy(dir, "timestep.npy", &in->t, 0);
}

static void free_inputs(inputs_t *in)
{
    dfm_tensor_free(&in->x);
    dfm_tensor_free(&in->ctx);
    dfm_tensor_free(&in->t);
}

static void base_opts(dfm_trainer_opts *o, char *model, size_t n)
{
    snprintf(model, n, "%s/wan_transformer/a/transformer", dfm_test_fixtures());
    memset(o, 0, sizeof *o);
    o->model_path = model;
    o->device = DFM_CPU;
    o->weights = DFM_F32;
    o->compute = DFM_F32;
    o->text_len = 8;
    dfm_flow_opts_default(&o->flow);
    o->adamw = (dfm_adamw_opts){0.9, 0.999, 1e-8, 0.01};
    o->lr = 1e-2;
    o->schedule = "constant";
    o->total_steps = 5;
    o->max_grad_norm = 1.0;
    o->grad_accum = 1;
    o->seed = 7;
}

/* a few steps on random latents and text (2 samples, keys k0, k1) */
static int train_steps(dfm_trainer *t, int steps)
{
    enum { B = 2, C = 16, F = 1, H = 4, W = 4, L = 5, D = 32 };
    static float x0[B * C * F * H * W], text[B][L * D];
    uint64_t s = 12345;
    for (size_t i = 0; i < sizeof x0 / sizeof x0[0]; i++) x0[i] = (float)((s = s * 6364136223846793005ull + 1) >> 40) / 16777216.0f - 0.5f;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < L * D; i++) text[b][i] = (float)((s = s * 6364136223846793005ull + 1) >> 40) / 16777216.0f - 0.5f;
    const float *tp[B] = {text[0], text[1]};
    int rows[B] = {L, 3};
    const char *keys[B] = {"k0", "k1"};
    dfm_micro mb = {.B = B, .C = C, .F = F, .H = H, .W = W, .x0 = x0, .text = tp, .text_rows = rows, .text_dim = D, .keys = keys};
    for (int i = 0; i < steps; i++) {
        float loss;
        dfm_step_stats st;
        int rc = dfm_trainer_micro(t, &mb, &loss, NULL);
        if (!rc) rc = dfm_trainer_apply(t, &loss, 1, &st);
        if (rc) return rc;
    }
    return 0;
}

static int forward(dfm_wan_transformer *m, const inputs_t *in, dfm_tensor *out)
{
    return dfm_wan_transformer_forward(m, &in->x, (const float *)in->t.data, &in->ctx, out, NULL, 0, 0);
}

static double max_rel(const dfm_tensor *a, const dfm_tensor *b)
{
    const float *p = a->data, *q = b->data;
    double e = 0, m = 0;
    for (int64_t i = 0; i < dfm_tensor_numel(a); i++) {
        e = fmax(e, fabs((double)p[i] - q[i]));
        m = fmax(m, fabs((double)q[i]));
    }
    return m > 0 ? e / m : e;
}

static void write_npy(const char *dir, const char *name, const dfm_tensor *t)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    uint8_t *buf = NULL;
    size_t len = 0;
    if (dfm_npy_build(DFM_NPY_F32, t->ndim, t->shape, t->data, &buf, &len)) {
        fprintf(stderr, "  %s: %s\n", path, dfm_errmsg());
        dfm_test_failures++;
        return;
    }
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f) {
        CHECK_EQ(fwrite(buf, 1, len, f), len);
        fclose(f);
    }
    free(buf);
}

/* where the checkpoint goes: DFM_INTEROP_OUT/sub, else a temporary directory */
static void out_dir(char *dir, size_t n, const char *sub, int *keep)
{
    const char *e = getenv("DFM_INTEROP_OUT");
    *keep = e && *e;
    if (*keep) {
        mkdir(e, 0755);
        snprintf(dir, n, "%s/%s", e, sub);
    } else {
        snprintf(dir, n, "%s/train-interop-%s", dfm_test_tmpdir(), sub);
    }
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK_EQ(system(cmd), 0);
    CHECK_EQ(mkdir(dir, 0755), 0);
}

static void rm_dir(const char *dir)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK_EQ(system(cmd), 0);
}

TEST(train_interop_lora_saved_forward)
{
    inputs_t in;
    CHECK_EQ(load_inputs(&in), 0);
    char model[512], dir[1024];
    dfm_trainer_opts o;
    base_opts(&o, model, sizeof model);
    o.lora_rank = 4, o.lora_alpha = 8;
    dfm_trainer *t = NULL;
    CHECK_EQ(dfm_trainer_new(&t, &o), 0);
    if (!t) return;
    dfm_tensor before = {0}, after = {0}, loaded = {0};
    CHECK_EQ(forward(dfm_trainer_model(t), &in, &before), 0);
    CHECK_EQ(train_steps(t, 5), 0);
    CHECK_EQ(forward(dfm_trainer_model(t), &in, &after), 0);
    double moved = max_rel(&after, &before);
    CHECK(moved > 1e-3); /* the adapter changed the output */
    int keep;
    out_dir(dir, sizeof dir, "lora", &keep);
    CHECK_EQ(dfm_trainer_save(t, dir, DFM_F32), 0);
    /* one .safetensors in the step directory: the adapter */
    char p[1200];
    struct stat sb;
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
    CHECK_EQ(stat(p, &sb), 0);
    snprintf(p, sizeof p, "%s/adapter_config.json", dir);
    CHECK_EQ(stat(p, &sb), 0);
    dfm_wan_transformer *m = NULL;
    dfm_wan_transformer_opts mo = {.device = DFM_CPU, .weights = DFM_F32, .compute = DFM_F32};
    CHECK_EQ(dfm_wan_transformer_load(&m, model, &mo), 0);
    if (m) {
        CHECK_EQ(dfm_wan_lora_load(m, dir, 1.0f, NULL, NULL), 0);
        CHECK_EQ(forward(m, &in, &loaded), 0);
        double e = max_rel(&loaded, &after);
        fprintf(stderr, "  LoRA: training moved the output by %.3g (rel. to max); saved and reloaded: %.2e\n", moved, e);
        CHECK(e <= 1e-6);
        dfm_wan_transformer_free(m);
    }
    if (keep) {
        char *e = getenv("DFM_INTEROP_OUT");
        write_npy(e, "lora_out.npy", &after);
    } else {
        rm_dir(dir);
    }
    dfm_tensor_free(&before), dfm_tensor_free(&after), dfm_tensor_free(&loaded);
    dfm_trainer_free(t);
    free_inputs(&in);
}

TEST(train_interop_full_saved_forward)
{
    inputs_t in;
    CHECK_EQ(load_inputs(&in), 0);
    char model[512], dir[1024];
    dfm_trainer_opts o;
    base_opts(&o, model, sizeof model);
    o.lr = 1e-3;
    dfm_trainer *t = NULL;
    CHECK_EQ(dfm_trainer_new(&t, &o), 0);
    if (!t) return;
    dfm_tensor before = {0}, after = {0}, loaded = {0};
    CHECK_EQ(forward(dfm_trainer_model(t), &in, &before), 0);
    CHECK_EQ(train_steps(t, 3), 0);
    CHECK_EQ(forward(dfm_trainer_model(t), &in, &after), 0);
    double moved = max_rel(&after, &before);
    CHECK(moved > 1e-3);
    int keep;
    out_dir(dir, sizeof dir, "full", &keep);
    CHECK_EQ(dfm_trainer_save(t, dir, DFM_F32), 0);
    dfm_wan_transformer *m = NULL;
    dfm_wan_transformer_opts mo = {.device = DFM_CPU, .weights = DFM_F32, .compute = DFM_F32};
    CHECK_EQ(dfm_wan_transformer_load(&m, dir, &mo), 0);
    if (m) {
        CHECK_EQ(forward(m, &in, &loaded), 0);
        double e = max_rel(&loaded, &after);
        fprintf(stderr, "  full: training moved the output by %.3g; saved and reloaded: %.2e\n", moved, e);
        CHECK(e == 0);
        dfm_wan_transformer_free(m);
    }
    if (keep) {
        char *e = getenv("DFM_INTEROP_OUT");
        write_npy(e, "full_out.npy", &after);
    } else {
        rm_dir(dir);
    }
    dfm_tensor_free(&before), dfm_tensor_free(&after), dfm_tensor_free(&loaded);
    dfm_trainer_free(t);
    free_inputs(&in);
}
