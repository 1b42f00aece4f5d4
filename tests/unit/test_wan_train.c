/* test_wan_train.c — the trainer (train/trainer.h) against a PyTorch training run: the fixtures of
 * scripts/make-train-fixtures.py (tests/fixtures/wan_train/README.md), 20 AdamW steps of 2
 * micro-batches of 2 samples on the tiny Wan transformer wan_transformer/a, linear flow weighting
 * (shift 3), clipping (some steps clip), warmup 3 + cosine to min_lr; every sample index, sigma and
 * noise read from the fixture, so the trainer sees exactly torch's numbers. Full fine-tuning and a
 * LoRA (r 4, alpha 8, PEFT's initial A copied in). Bounds, each against torch's float64 run:
 *   every micro-batch loss and every pre-clip gradient norm within LOSS_TOL relative (torch's own
 *     f32 error is ~1e-7; ours grows with the trajectory's divergence);
 *   every lr within 1e-6 relative of torch's (stored as f32);
 *   the final parameters per tensor: max |p - p64| / max |p64 - p0| (the error relative to what
 *     training changed) within PARAM_K x torch's f32 error for that tensor, or PARAM_FLOOR;
 * and: the same run twice, on 1 and on 2 threads, and with activation checkpointing gives
 * bit-identical parameters; a NaN in x0 makes its step skipped with the parameters unchanged;
 * 10 steps, dfm_trainer_save, a new trainer + dfm_trainer_load_state, 10 more steps gives the
 * 20-step run's parameters bit for bit (full and LoRA). */
#include "test.h"
#include "tensor_util.h"
#include "base/error.h"
#include "io/safetensors.h"
#include "models/wan/transformer.h"
#include "tensor/ops.h"
#include "train/trainer.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define STEPS 20
#define ACCUM 2
#define MB 2
#define NS 4
#define LAT (16 * 1 * 4 * 4)
#define TEXT_LEN 12
#define TEXT_DIM 32

/* Stated bounds (measured in the report lines these tests print). */
#define LOSS_TOL 2e-6    /* losses and grad norms, relative to torch float64 (torch f32: ~2e-7) */
#define LR_TOL 1e-6      /* lr, relative (the fixture holds f32) */
#define PARAM_K 4.0      /* final parameters: at most PARAM_K x torch's own f32 error ... */
#define PARAM_FLOOR 2e-5 /* ... or this, relative to the tensor's change over the run */

typedef struct {
    dfm_tensor x0, text, rows, idx, sigma, noise;
    double max_norm[2]; /* full, lora (case.json) */
} data_t;

static void wdir(char *out, size_t n, const char *sub)
{
    snprintf(out, n, "%s/wan_train%s%s", dfm_test_fixtures(), sub ? "/" : "", sub ? sub : "");
}

static int load_data(data_t *d)
{
    char dir[512];
    memset(d, 0, sizeof *d);
    wdir(dir, sizeof dir, NULL);
    if (dfm_test_load_npy(dir, "x0.npy", &d->x0, 0) || dfm_test_load_npy(dir, "text.npy", &d->text, 0) ||
        dfm_test_load_npy(dir, "text_rows.npy", &d->rows, 0) || dfm_test_load_npy(dir, "indices.npy", &d->idx, 0) ||
        dfm_test_load_npy(dir, "sigma.npy", &d->sigma, 0) || dfm_test_load_npy(dir, "noise.npy", &d->noise, 0))
        return -1;
    if (dfm_tensor_numel(&d->x0) != NS * LAT || dfm_tensor_numel(&d->text) != NS * TEXT_LEN * TEXT_DIM ||
        dfm_tensor_numel(&d->idx) != STEPS * ACCUM * MB || dfm_tensor_numel(&d->noise) != STEPS * ACCUM * MB * LAT)
        return -1;
    char path[600];
    snprintf(path, sizeof path, "%s/case.json", dir);
    dfm_buf b = {0};
    if (dfm_read_file(path, 0, &b)) return -1;
    cJSON *j = cJSON_ParseWithLength((const char *)b.data, b.len);
    dfm_buf_free(&b);
    const char *v[2] = {"full", "lora"};
    for (int i = 0; i < 2; i++) {
        const cJSON *m = cJSON_GetObjectItem(cJSON_GetObjectItem(j, v[i]), "max_grad_norm");
        d->max_norm[i] = cJSON_IsNumber(m) ? m->valuedouble : -1;
    }
    cJSON_Delete(j);
    return d->max_norm[0] > 0 && d->max_norm[1] > 0 ? 0 : -1;
}

static void free_data(data_t *d)
{
    dfm_tensor *ts[] = {&d->x0, &d->text, &d->rows, &d->idx, &d->sigma, &d->noise};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) dfm_tensor_free(ts[i]);
}

/* The trainer as the fixture's loop: f32, text_len 12, AdamW, warmup 3 + cosine over 20 steps,
 * linear weighting with shift 3. lora: rank 4 alpha 8 with PEFT's initial A (and B = 0) copied in
 * from lora/init.safetensors. */
static dfm_trainer *new_trainer(const data_t *d, int lora, int checkpointing, int set_init)
{
    char model[512], init[600];
    snprintf(model, sizeof model, "%s/wan_transformer/a/transformer", dfm_test_fixtures());
    dfm_trainer_opts o = {
        .model_path = model,
        .device = DFM_CPU,
        .weights = DFM_F32,
        .compute = DFM_F32,
        .text_len = TEXT_LEN,
        .lora_rank = lora ? 4 : 0,
        .lora_alpha = lora ? 8.0f : 0.0f,
        .adamw = {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01},
        .lr = 1e-3,
        .min_lr = 1e-4,
        .schedule = "cosine",
        .warmup_steps = 3,
        .total_steps = STEPS,
        .max_grad_norm = d->max_norm[lora ? 1 : 0],
        .grad_accum = ACCUM,
        .checkpointing = checkpointing,
        .seed = 5,
    };
    dfm_flow_opts_default(&o.flow);
    o.flow.sampling = DFM_SIGMA_UNIFORM; /* unused: the fixture's sigmas are passed in */
    o.flow.shift = 3.0;
    o.flow.weighting = DFM_LOSSW_LINEAR; /* w = 1 + 3 sigma */
    dfm_trainer *t = NULL;
    if (dfm_trainer_new(&t, &o)) {
        fprintf(stderr, "  trainer: %s\n", dfm_errmsg());
        return NULL;
    }
    if (lora && set_init) {
        wdir(init, sizeof init, "lora/init.safetensors");
        dfm_st *st = NULL;
        int rc = dfm_st_open(&st, init), set = 0;
        dfm_wan_transformer *m = dfm_trainer_model(t);
        for (int i = 0; !rc && i < dfm_wan_transformer_nparams(m); i++) {
            dfm_tensor *p;
            const char *name = dfm_wan_transformer_param(m, i, &p, NULL);
            if (!strstr(name, ".lora_")) continue;
            rc = dfm_st_read(st, name, DFM_F32, p->ndim, p->shape, p->data);
            set++;
        }
        if (rc || set != 40 || set != dfm_st_count(st)) {
            fprintf(stderr, "  LoRA init: %d of %d set: %s\n", set, st ? dfm_st_count(st) : -1, rc ? dfm_errmsg() : "");
            dfm_st_close(st);
            dfm_trainer_free(t);
            return NULL;
        }
        dfm_st_close(st);
    }
    return t;
}

typedef struct {
    float loss[STEPS][ACCUM];
    double norm[STEPS], lr[STEPS];
    int skipped[STEPS];
} trace_t;

/* Steps n0 .. n1-1 as the fixture's loop. nan_step: put a NaN into the first latent of that step's
 * first micro-batch (-1: none). */
static int run_steps(dfm_trainer *t, const data_t *d, int n0, int n1, int nan_step, trace_t *tr)
{
    static const char *keys[NS] = {"s0", "s1", "s2", "s3"};
    const float *x0 = d->x0.data, *text = d->text.data, *sig = d->sigma.data, *noise = d->noise.data;
    const int32_t *idx = d->idx.data, *rows = d->rows.data;
    float xb[MB * LAT];
    for (int n = n0; n < n1; n++) {
        if (dfm_trainer_step(t) != n) {
            fprintf(stderr, "  trainer at step %lld, expected %d\n", (long long)dfm_trainer_step(t), n);
            return -1;
        }
        float losses[ACCUM];
        for (int a = 0; a < ACCUM; a++) {
            const float *tx[MB];
            int tr_rows[MB];
            const char *k[MB];
            for (int b = 0; b < MB; b++) {
                int s = idx[(n * ACCUM + a) * MB + b];
                memcpy(xb + b * LAT, x0 + s * LAT, LAT * sizeof(float));
                tx[b] = text + s * TEXT_LEN * TEXT_DIM;
                tr_rows[b] = rows[s];
                k[b] = keys[s];
            }
            if (n == nan_step && a == 0) xb[0] = NAN;
            dfm_micro mb = {.B = MB, .C = 16, .F = 1, .H = 4, .W = 4, .x0 = xb, .text = tx, .text_rows = tr_rows,
                            .text_dim = TEXT_DIM, .keys = k, .sigma = sig + (n * ACCUM + a) * MB,
                            .noise = noise + (size_t)(n * ACCUM + a) * MB * LAT};
            float sg[MB];
            if (dfm_trainer_micro(t, &mb, &losses[a], sg)) {
                fprintf(stderr, "  step %d micro %d: %s\n", n, a, dfm_errmsg());
                return -1;
            }
            if (memcmp(sg, mb.sigma, sizeof sg)) {
                fprintf(stderr, "  step %d micro %d: the trainer used other sigmas\n", n, a);
                return -1;
            }
            if (tr) tr->loss[n][a] = losses[a];
        }
        dfm_step_stats st;
        if (dfm_trainer_apply(t, losses, ACCUM, &st)) {
            fprintf(stderr, "  step %d apply: %s\n", n, dfm_errmsg());
            return -1;
        }
        if (tr) tr->norm[n] = st.grad_norm, tr->lr[n] = st.lr, tr->skipped[n] = st.skipped;
    }
    return 0;
}

/* Every trained parameter (gradient kept) concatenated, in parameter order. */
static float *snapshot(dfm_trainer *t, size_t *n)
{
    dfm_wan_transformer *m = dfm_trainer_model(t);
    size_t total = 0;
    for (int i = 0; i < dfm_wan_transformer_nparams(m); i++) {
        dfm_tensor *p, *g;
        dfm_wan_transformer_param(m, i, &p, &g);
        if (g && g->data) total += dfm_tensor_numel(p);
    }
    float *s = malloc((total ? total : 1) * sizeof(float)), *o = s;
    for (int i = 0; i < dfm_wan_transformer_nparams(m); i++) {
        dfm_tensor *p, *g;
        dfm_wan_transformer_param(m, i, &p, &g);
        if (g && g->data) memcpy(o, p->data, dfm_tensor_nbytes(p)), o += dfm_tensor_numel(p);
    }
    *n = total;
    return s;
}

/* max |a - b| / max |b| over n */
static double rel(const float *a, const float *b, int64_t n)
{
    double s = 0, e = 0;
    for (int64_t i = 0; i < n; i++) s = fmax(s, fabs(b[i]));
    for (int64_t i = 0; i < n; i++) {
        double x = fabs((double)a[i] - b[i]);
        if (!(x <= e)) e = isnan(x) ? INFINITY : x;
    }
    return e / (s > 0 ? s : 1);
}

/* Per trained tensor: ours vs final_f64, relative to the tensor's change p64 - p0 (p0: init, the
 * values before training), against torch f32 (final) likewise. Prints the worst; returns its ratio
 * to the bound. */
static double check_params(dfm_trainer *t, const char *variant, const float *p0_all, int *compared)
{
    char f32p[600], f64p[600], sub[64];
    snprintf(sub, sizeof sub, "%s/final.safetensors", variant);
    wdir(f32p, sizeof f32p, sub);
    snprintf(sub, sizeof sub, "%s/final_f64.safetensors", variant);
    wdir(f64p, sizeof f64p, sub);
    dfm_st *s32 = NULL, *s64 = NULL;
    if (dfm_st_open(&s32, f32p) || dfm_st_open(&s64, f64p)) {
        fprintf(stderr, "  %s\n", dfm_errmsg());
        dfm_test_failures++;
        dfm_st_close(s32);
        return INFINITY;
    }
    dfm_wan_transformer *m = dfm_trainer_model(t);
    double worst = 0, worst_e = 0, worst_torch = 0, worst_abs = 0, worst_ratio = 0;
    const char *worst_name = "";
    int n = 0;
    size_t off = 0;
    for (int i = 0; i < dfm_wan_transformer_nparams(m); i++) {
        dfm_tensor *p, *g;
        const char *name = dfm_wan_transformer_param(m, i, &p, &g);
        if (!g || !g->data) continue;
        int64_t numel = dfm_tensor_numel(p);
        const float *p0 = p0_all + off;
        off += (size_t)numel;
        /* by the file's shape (the model may hold a tensor reshaped: patch_embedding as [D, C*2*2]) */
        const dfm_st_tensor *r = dfm_st_find(s64, name);
        int64_t rn = 1;
        for (int k = 0; r && k < r->ndim; k++) rn *= r->shape[k];
        if (!r || rn != numel) {
            fprintf(stderr, "  %s: %s in the reference\n", name, r ? "another size" : "missing");
            dfm_test_failures++;
            continue;
        }
        float *r64 = malloc((size_t)numel * sizeof(float)), *r32 = malloc((size_t)numel * sizeof(float));
        if (dfm_st_read(s64, name, DFM_F32, r->ndim, r->shape, r64) ||
            dfm_st_read(s32, name, DFM_F32, r->ndim, r->shape, r32)) {
            fprintf(stderr, "  %s: %s\n", name, dfm_errmsg());
            dfm_test_failures++;
            free(r64), free(r32);
            continue;
        }
        double change = 0, e = 0, et = 0;
        const float *q = p->data;
        for (int64_t k = 0; k < numel; k++) {
            change = fmax(change, fabs((double)r64[k] - p0[k]));
            double x = fabs((double)q[k] - r64[k]);
            if (!(x <= e)) e = isnan(x) ? INFINITY : x;
            et = fmax(et, fabs((double)r32[k] - r64[k]));
        }
        CHECK(change > 0);
        e /= change, et /= change;
        double bound = fmax(PARAM_FLOOR, PARAM_K * et);
        if (!(e <= bound))
            fprintf(stderr, "  %s %s: error %.2e of the change (torch f32 %.2e, bound %.1e)\n", variant, name, e, et, bound);
        CHECK(e <= bound);
        if (e / bound > worst || n == 0) worst = e / bound, worst_name = name, worst_e = e, worst_torch = et;
        worst_abs = fmax(worst_abs, rel(q, r64, numel));
        if (et > 0) worst_ratio = fmax(worst_ratio, e / et);
        n++;
        free(r64), free(r32);
    }
    CHECK_EQ(n, dfm_st_count(s64));
    fprintf(stderr,
            "  %s: %d tensors; closest to its bound (%.2f of it): %s, %.2e of its change (torch f32 %.2e); at most %.1fx "
            "torch's f32 error; max over tensors %.2e of max|p|\n",
            variant, n, worst, worst_name, worst_e, worst_torch, worst_ratio, worst_abs);
    if (compared) *compared = n;
    dfm_st_close(s32);
    dfm_st_close(s64);
    return worst;
}

/* Losses, grad norms and lrs against the fixture's f64 run (and torch f32, printed). */
static void check_trace(const trace_t *tr, const char *variant)
{
    char dir[512];
    wdir(dir, sizeof dir, variant);
    dfm_tensor l32 = {0}, l64 = {0}, n32 = {0}, n64 = {0}, lr = {0};
    CHECK_EQ(dfm_test_load_npy(dir, "losses.npy", &l32, 0), 0);
    CHECK_EQ(dfm_test_load_npy(dir, "losses_f64.npy", &l64, 0), 0);
    CHECK_EQ(dfm_test_load_npy(dir, "grad_norm.npy", &n32, 0), 0);
    CHECK_EQ(dfm_test_load_npy(dir, "grad_norm_f64.npy", &n64, 0), 0);
    CHECK_EQ(dfm_test_load_npy(dir, "lr.npy", &lr, 0), 0);
    if (!l32.data || !l64.data || !n32.data || !n64.data || !lr.data) goto out;
    double el = 0, elt = 0, en = 0, ent = 0, elr = 0;
    int skipped = 0;
    const float *L32 = l32.data, *L64 = l64.data, *N32 = n32.data, *N64 = n64.data, *LR = lr.data;
    for (int n = 0; n < STEPS; n++) {
        for (int a = 0; a < ACCUM; a++) {
            double r = L64[n * ACCUM + a];
            double e = fabs(tr->loss[n][a] - r) / fabs(r);
            if (!(e <= el)) el = isnan(e) ? INFINITY : e;
            elt = fmax(elt, fabs(L32[n * ACCUM + a] - r) / fabs(r));
        }
        double e = fabs(tr->norm[n] - N64[n]) / N64[n];
        if (!(e <= en)) en = isnan(e) ? INFINITY : e;
        ent = fmax(ent, fabs((double)N32[n] - N64[n]) / N64[n]);
        e = fabs(tr->lr[n] - LR[n]) / LR[n];
        if (!(e <= elr)) elr = isnan(e) ? INFINITY : e;
        skipped += tr->skipped[n];
    }
    fprintf(stderr, "  %s vs torch f64: losses %.2e (torch f32 %.2e), grad norms %.2e (torch f32 %.2e), lr %.2e\n",
            variant, el, elt, en, ent, elr);
    CHECK(el <= LOSS_TOL);
    CHECK(en <= LOSS_TOL);
    CHECK(elr <= LR_TOL);
    CHECK_EQ(skipped, 0);
out:
    dfm_tensor_free(&l32), dfm_tensor_free(&l64), dfm_tensor_free(&n32), dfm_tensor_free(&n64), dfm_tensor_free(&lr);
}

static void parity(int lora)
{
    const char *variant = lora ? "lora" : "full";
    data_t d;
    CHECK_EQ(load_data(&d), 0);
    dfm_trainer *t = new_trainer(&d, lora, 0, 1);
    CHECK(t != NULL);
    if (t) {
        CHECK_EQ(dfm_trainer_trainable_params(t), lora ? 5632 : 40864);
        size_t n0;
        float *p0 = snapshot(t, &n0);
        CHECK_EQ(n0, lora ? 5632 : 40864);
        trace_t *tr = calloc(1, sizeof *tr);
        int rc = run_steps(t, &d, 0, STEPS, -1, tr);
        CHECK_EQ(rc, 0);
        if (!rc) {
            check_trace(tr, variant);
            int n = 0;
            check_params(t, variant, p0, &n);
            CHECK_EQ(n, lora ? 40 : 69);
        }
        free(tr), free(p0);
        dfm_trainer_free(t);
    }
    free_data(&d);
}

TEST(wan_train_full_parity) { parity(0); }
TEST(wan_train_lora_parity) { parity(1); }

/* The final parameters of a whole run (NULL on failure); *n their count. */
static float *final_params(const data_t *d, int lora, int checkpointing, size_t *n)
{
    dfm_trainer *t = new_trainer(d, lora, checkpointing, 1);
    if (!t) return NULL;
    float *p = NULL;
    if (!run_steps(t, d, 0, STEPS, -1, NULL)) p = snapshot(t, n);
    dfm_trainer_free(t);
    return p;
}

/* The same run twice, on 1 and 2 threads, and with activation checkpointing: the same bits. */
TEST(wan_train_deterministic)
{
    data_t d;
    CHECK_EQ(load_data(&d), 0);
    int threads0 = dfm_ops_threads();
    for (int lora = 0; lora < 2; lora++) {
        size_t n[5] = {0};
        float *p[5];
        dfm_ops_set_threads(2);
        p[0] = final_params(&d, lora, 0, &n[0]);
        p[1] = final_params(&d, lora, 0, &n[1]);
        p[2] = final_params(&d, lora, 1, &n[2]);
        dfm_ops_set_threads(1);
        p[3] = final_params(&d, lora, 0, &n[3]);
        p[4] = final_params(&d, lora, 1, &n[4]);
        const char *what[5] = {"2 threads", "again", "checkpointing", "1 thread", "1 thread, checkpointing"};
        for (int i = 0; i < 5; i++) CHECK(p[i] != NULL);
        for (int i = 1; i < 5; i++) {
            int same = p[0] && p[i] && n[i] == n[0] && !memcmp(p[0], p[i], n[0] * sizeof(float));
            if (!same) fprintf(stderr, "  %s: %s differs from the first run\n", lora ? "lora" : "full", what[i]);
            CHECK(same);
        }
        for (int i = 0; i < 5; i++) free(p[i]);
    }
    dfm_ops_set_threads(threads0);
    free_data(&d);
}

/* A NaN in one latent of step 5: that step's loss is NaN, the step is skipped and changes no
 * parameter; the step counter still advances and the next steps train (finite, not skipped). */
TEST(wan_train_nonfinite_skip)
{
    data_t d;
    CHECK_EQ(load_data(&d), 0);
    for (int lora = 0; lora < 2; lora++) {
        dfm_trainer *t = new_trainer(&d, lora, 0, 1);
        CHECK(t != NULL);
        if (!t) continue;
        trace_t *tr = calloc(1, sizeof *tr);
        size_t n4, n5;
        CHECK_EQ(run_steps(t, &d, 0, 5, -1, tr), 0);
        float *before = snapshot(t, &n4);
        CHECK_EQ(run_steps(t, &d, 5, 6, 5, tr), 0);
        float *after = snapshot(t, &n5);
        CHECK(isnan(tr->loss[5][0]));
        CHECK(isfinite(tr->loss[5][1]));
        CHECK_EQ(tr->skipped[5], 1);
        CHECK(n4 == n5 && !memcmp(before, after, n4 * sizeof(float)));
        CHECK_EQ(dfm_trainer_step(t), 6);
        CHECK_EQ(run_steps(t, &d, 6, 8, -1, tr), 0);
        float *later = snapshot(t, &n5);
        for (int n = 6; n < 8; n++) {
            CHECK_EQ(tr->skipped[n], 0);
            CHECK(isfinite(tr->loss[n][0]) && isfinite(tr->loss[n][1]) && isfinite(tr->norm[n]));
        }
        int finite = 1;
        for (size_t i = 0; i < n5; i++) finite &= isfinite(later[i]) != 0;
        CHECK(finite);
        CHECK(memcmp(before, later, n4 * sizeof(float)) != 0);
        free(before), free(after), free(later), free(tr);
        dfm_trainer_free(t);
    }
    free_data(&d);
}

/* 10 steps, save, a new trainer (LoRA: with its own random A, which load_state overwrites) that
 * loads the state and runs the last 10 steps: the 20-step run's parameters bit for bit. */
TEST(wan_train_resume)
{
    data_t d;
    CHECK_EQ(load_data(&d), 0);
    for (int lora = 0; lora < 2; lora++) {
        size_t nref = 0, n = 0;
        float *ref = final_params(&d, lora, 0, &nref);
        CHECK(ref != NULL);
        char dir[600];
        snprintf(dir, sizeof dir, "%s/wan_train_resume_%s", dfm_test_tmpdir(), lora ? "lora" : "full");
        CHECK_EQ(mkdir(dir, 0755), 0);
        dfm_trainer *t = new_trainer(&d, lora, 0, 1);
        CHECK(t != NULL);
        if (!t || !ref) {
            free(ref);
            dfm_trainer_free(t);
            continue;
        }
        CHECK_EQ(run_steps(t, &d, 0, STEPS / 2, -1, NULL), 0);
        int rc = dfm_trainer_save(t, dir, DFM_F32);
        if (rc) fprintf(stderr, "  save: %s\n", dfm_errmsg());
        CHECK_EQ(rc, 0);
        dfm_trainer_free(t);
        t = new_trainer(&d, lora, 0, 0);
        CHECK(t != NULL);
        if (!t) {
            free(ref);
            continue;
        }
        rc = dfm_trainer_load_state(t, dir);
        if (rc) fprintf(stderr, "  load_state: %s\n", dfm_errmsg());
        CHECK_EQ(rc, 0);
        CHECK_EQ(dfm_trainer_step(t), STEPS / 2);
        CHECK_EQ(run_steps(t, &d, STEPS / 2, STEPS, -1, NULL), 0);
        float *p = snapshot(t, &n);
        int same = n == nref && !memcmp(p, ref, n * sizeof(float));
        if (!same) {
            size_t diff = 0;
            for (size_t i = 0; i < n && i < nref; i++) diff += memcmp(&p[i], &ref[i], sizeof(float)) != 0;
            fprintf(stderr, "  %s: resumed run differs from the 20-step run in %zu of %zu values (max rel %.2e)\n",
                    lora ? "lora" : "full", diff, nref, n == nref ? rel(p, ref, (int64_t)n) : INFINITY);
        }
        CHECK(same);
        free(p), free(ref);
        dfm_trainer_free(t);
    }
    free_data(&d);
}
