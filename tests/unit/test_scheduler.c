/* test_scheduler.c — lib/sample/scheduler.c against diffusers (tests/fixtures/schedulers, made by
 * scripts/make-scheduler-fixtures.py): the UniPC and Euler grids bit for bit (sigmas as f32,
 * timesteps), whole trajectories through a fake model bit for bit against diffusers with
 * correctly rounded log/expm1 (and Euler, which has neither, against diffusers as is), against
 * unpatched diffusers within a stated bound, the bf16-model variants, numbers quoted in
 * reference/wan.md §5.3, the scheduler_config.json reader and the argument checks. */
#include "test.h"

#include "base/error.h"
#include "io/safetensors.h"
#include "sample/scheduler.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NIDX 32
#define NUMEL (2 * 16 * 3 * 4 * 6)
/* Unpatched diffusers (torch's CPU log/expm1, off by one ulp in a few scalars) against ours:
 * measured max |diff| 1.7e-6 (unipc s3 n50) on values of magnitude <= ~3; bound 1e-5. */
#define TORCH_BOUND 1e-5

static dfm_st *open_fixture(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/schedulers/schedulers.safetensors", dfm_test_fixtures());
    dfm_st *st = NULL;
    if (dfm_st_open(&st, path) < 0) {
        fprintf(stderr, "  %s: %s\n", path, dfm_errmsg());
        dfm_test_failures++;
        return NULL;
    }
    return st;
}

/* fixture tensor `name` with dtype dt and numel n (elements), or NULL (a failure recorded) */
static const void *fx(dfm_st *st, const char *name, dfm_dtype dt, int64_t n)
{
    const dfm_st_tensor *t = dfm_st_find(st, name);
    size_t es = dt == DFM_I64 ? 8 : 4;
    if (!t || t->dtype != dt || t->nbytes != (size_t)n * es) {
        fprintf(stderr, "  fixture tensor %s missing or not %lld elements of the expected dtype\n", name,
                (long long)n);
        dfm_test_failures++;
        return NULL;
    }
    return t->data;
}

static int32_t bits(float x)
{
    int32_t u;
    memcpy(&u, &x, 4);
    return u;
}

/* the fake model of the script: a / (1 + |a|), a = 0.75 x + t / 8192, in f32 */
static void model(const float *x, float t, float *v, int bf16)
{
    float c = t / 8192.0f;
    for (int k = 0; k < NUMEL; k++) {
        float a = x[k] * 0.75f + c;
        v[k] = a / (fabsf(a) + 1.0f);
        if (bf16) { /* round to nearest even, as .to(torch.bfloat16) */
            uint32_t u;
            memcpy(&u, &v[k], 4);
            u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
            memcpy(&v[k], &u, 4);
        }
    }
}

/* Run config (kind, shift, n) from x_init; compare the samples after each step and the final x
 * with the fixture's `prefix`.samples / .final (final may be absent when need_final is 0).
 * bound 0: bit for bit; else max |diff| <= bound. Returns the max |diff| seen. */
static double trajectory_opts(dfm_st *st, const dfm_sched_opts *opts, const char *prefix, double bound,
                              int need_final);
static double trajectory(dfm_st *st, dfm_sampler_kind kind, double shift, int n, int bf16, const char *prefix,
                         double bound, int need_final)
{
    dfm_sched_opts o;
    dfm_sched_opts_default(&o, kind);
    o.shift = shift;
    o.steps = n;
    o.model_bf16 = bf16;
    return trajectory_opts(st, &o, prefix, bound, need_final);
}

static double trajectory_opts(dfm_st *st, const dfm_sched_opts *opts, const char *prefix, double bound,
                              int need_final)
{
    const int n = opts->steps, bf16 = opts->model_bf16;
    const float *x0 = fx(st, "x_init", DFM_F32, NUMEL);
    const int64_t *idx = fx(st, "idx", DFM_I64, NIDX);
    char nm[128];
    snprintf(nm, sizeof nm, "%s.samples", prefix);
    const float *smp = fx(st, nm, DFM_F32, (int64_t)n * NIDX);
    snprintf(nm, sizeof nm, "%s.final", prefix);
    const float *fin = need_final ? fx(st, nm, DFM_F32, NUMEL) : NULL;
    if (!x0 || !idx || !smp || (need_final && !fin)) return INFINITY;
    dfm_sched *s = NULL;
    if (dfm_sched_new(&s, opts) < 0) {
        fprintf(stderr, "  %s: %s\n", prefix, dfm_errmsg());
        dfm_test_failures++;
        return INFINITY;
    }
    float x[NUMEL], v[NUMEL];
    memcpy(x, x0, sizeof x);
    double worst = 0;
    int first_bad = -1;
    for (int i = 0; i < n; i++) {
        model(x, dfm_sched_timestep(s, i), v, bf16);
        CHECK_EQ(dfm_sched_step(s, i, v, x, NUMEL), 0);
        for (int j = 0; j < NIDX; j++) {
            float a = x[idx[j]], b = smp[(size_t)i * NIDX + j];
            double d = fabs((double)a - b);
            if (!(d <= worst)) worst = d;
            if ((bound == 0 ? bits(a) != bits(b) : !(d <= bound)) && first_bad < 0) first_bad = i;
        }
    }
    int nbad = 0;
    if (fin)
        for (int k = 0; k < NUMEL; k++) {
            double d = fabs((double)x[k] - fin[k]);
            if (!(d <= worst)) worst = d;
            nbad += bound == 0 ? bits(x[k]) != bits(fin[k]) : !(d <= bound);
        }
    if (first_bad >= 0 || nbad) {
        fprintf(stderr, "  %s: first step off %d, final elements off %d, max |diff| %g (bound %g)\n", prefix,
                first_bad, nbad, worst, bound);
        dfm_test_failures++;
    }
    dfm_sched_free(s);
    return worst;
}

TEST(scheduler_grids)
{
    dfm_st *st = open_fixture();
    if (!st) return;
    static const struct { dfm_sampler_kind kind; const char *name; double shift; int n; } C[] = {
        {DFM_SAMPLER_UNIPC, "unipc", 3, 1},  {DFM_SAMPLER_UNIPC, "unipc", 3, 2},
        {DFM_SAMPLER_UNIPC, "unipc", 3, 3},  {DFM_SAMPLER_UNIPC, "unipc", 3, 10},
        {DFM_SAMPLER_UNIPC, "unipc", 3, 50}, {DFM_SAMPLER_UNIPC, "unipc", 5, 1},
        {DFM_SAMPLER_UNIPC, "unipc", 5, 2},  {DFM_SAMPLER_UNIPC, "unipc", 5, 3},
        {DFM_SAMPLER_UNIPC, "unipc", 5, 10}, {DFM_SAMPLER_UNIPC, "unipc", 5, 50},
        {DFM_SAMPLER_EULER, "euler", 3, 1},  {DFM_SAMPLER_EULER, "euler", 3, 10},
        {DFM_SAMPLER_EULER, "euler", 3, 50}, {DFM_SAMPLER_EULER, "euler", 1, 1},
        {DFM_SAMPLER_EULER, "euler", 1, 10}, {DFM_SAMPLER_EULER, "euler", 1, 50},
    };
    for (size_t c = 0; c < sizeof C / sizeof C[0]; c++) {
        char pre[64], nm[96];
        snprintf(pre, sizeof pre, "%s.s%g.n%d", C[c].name, C[c].shift, C[c].n);
        dfm_sched_opts o;
        dfm_sched_opts_default(&o, C[c].kind);
        o.shift = C[c].shift;
        o.steps = C[c].n;
        dfm_sched *s = NULL;
        if (dfm_sched_new(&s, &o) < 0) {
            fprintf(stderr, "  %s: %s\n", pre, dfm_errmsg());
            dfm_test_failures++;
            continue;
        }
        CHECK_EQ(dfm_sched_steps(s), C[c].n);
        snprintf(nm, sizeof nm, "%s.sigmas", pre);
        const float *sg = fx(st, nm, DFM_F32, C[c].n + 1);
        snprintf(nm, sizeof nm, "%s.timesteps", pre);
        const void *ts = fx(st, nm, C[c].kind == DFM_SAMPLER_UNIPC ? DFM_I64 : DFM_F32, C[c].n);
        int bad_s = 0, bad_t = 0;
        for (int i = 0; sg && ts && i <= C[c].n; i++) {
            bad_s += bits((float)dfm_sched_sigma(s, i)) != bits(sg[i]) || dfm_sched_sigma(s, i) != (double)sg[i];
            if (i == C[c].n) break;
            float want = C[c].kind == DFM_SAMPLER_UNIPC ? (float)((const int64_t *)ts)[i] : ((const float *)ts)[i];
            bad_t += bits(dfm_sched_timestep(s, i)) != bits(want);
        }
        if (bad_s || bad_t) {
            fprintf(stderr, "  %s: %d sigmas and %d timesteps differ from diffusers\n", pre, bad_s, bad_t);
            dfm_test_failures++;
        }
        dfm_sched_free(s);
    }
    dfm_st_close(st);
}

/* numbers quoted in reference/wan.md §5.3 (an evaluation independent of the fixture script) */
TEST(scheduler_wan_numbers)
{
    static const int ts3[50] = {999, 993, 986, 979, 971, 964, 956, 948, 940, 931, 923, 914, 904, 895, 885, 875, 864,
                                853, 842, 830, 818, 805, 792, 779, 765, 750, 735, 719, 702, 685, 667, 648, 628, 607,
                                586, 563, 539, 514, 487, 459, 429, 398, 365, 329, 292, 251, 208, 162, 113, 60};
    dfm_sched_opts o;
    dfm_sched_opts_default(&o, DFM_SAMPLER_UNIPC);
    CHECK_EQ(o.steps, 50);
    CHECK(o.shift == 3.0);
    dfm_sched *s = NULL;
    CHECK_EQ(dfm_sched_new(&s, &o), 0);
    if (!s) return;
    for (int i = 0; i < 50; i++) CHECK_EQ((int)dfm_sched_timestep(s, i), ts3[i]);
    CHECK((float)dfm_sched_sigma(s, 0) == 0.999999f);
    CHECK_NEAR(dfm_sched_sigma(s, 49), 0.060405388, 1e-9);
    CHECK(dfm_sched_sigma(s, 50) == 0.0);
    dfm_sched_free(s);
    o.shift = 5.0;
    CHECK_EQ(dfm_sched_new(&s, &o), 0);
    if (!s) return;
    CHECK_EQ((int)dfm_sched_timestep(s, 1), 995);
    CHECK_EQ((int)dfm_sched_timestep(s, 2), 991);
    CHECK_EQ((int)dfm_sched_timestep(s, 47), 244);
    CHECK_EQ((int)dfm_sched_timestep(s, 48), 175);
    CHECK_EQ((int)dfm_sched_timestep(s, 49), 96);
    dfm_sched_free(s);
}

TEST(scheduler_trajectories)
{
    dfm_st *st = open_fixture();
    if (!st) return;
    static const int N[] = {1, 2, 3, 10, 50};
    double worst = 0;
    for (int sh = 3; sh <= 5; sh += 2)
        for (int k = 0; k < 5; k++) {
            char pre[64];
            snprintf(pre, sizeof pre, "unipc.s%d.n%d.cr", sh, N[k]);
            trajectory(st, DFM_SAMPLER_UNIPC, sh, N[k], 0, pre, 0, 1);
            snprintf(pre, sizeof pre, "unipc.s%d.n%d.torch", sh, N[k]);
            int fin = (sh == 3 && (N[k] == 10 || N[k] == 50)) || (sh == 5 && N[k] == 50);
            double w = trajectory(st, DFM_SAMPLER_UNIPC, sh, N[k], 0, pre, TORCH_BOUND, fin);
            if (w > worst) worst = w;
        }
    fprintf(stderr, "  unipc against unpatched diffusers: max |diff| %.3g\n", worst);
    static const int NE[] = {1, 10, 50};
    for (int sh = 1; sh <= 3; sh += 2)
        for (int k = 0; k < 3; k++) {
            char pre[64];
            snprintf(pre, sizeof pre, "euler.s%d.n%d", sh, NE[k]);
            trajectory(st, DFM_SAMPLER_EULER, sh, NE[k], 0, pre, 0, 1);
        }
    trajectory(st, DFM_SAMPLER_UNIPC, 3, 10, 1, "unipc.s3.n10.bf16.cr", 0, 1);
    trajectory(st, DFM_SAMPLER_EULER, 3, 10, 1, "euler.s3.n10.bf16", 0, 1);
    dfm_st_close(st);
}

/* UniPC's other options (shift 3, 10 steps; the script's OPTIONS) */
TEST(scheduler_unipc_options)
{
    dfm_st *st = open_fixture();
    if (!st) return;
    static const char *const name[] = {"bh1", "order1", "sigma_min", "disable"};
    for (int c = 0; c < 4; c++) {
        dfm_sched_opts o;
        dfm_sched_opts_default(&o, DFM_SAMPLER_UNIPC);
        o.steps = 10;
        if (c == 0) o.solver_type_bh2 = 0;
        if (c == 1) o.solver_order = 1;
        if (c == 2) o.final_sigmas_type_zero = 0, o.lower_order_final = 0;
        if (c == 3) {
            o.disable_corrector[0] = 0, o.disable_corrector[1] = 3, o.disable_corrector[2] = 4;
            o.n_disable_corrector = 3;
        }
        char nm[96];
        snprintf(nm, sizeof nm, "unipc.%s.sigmas", name[c]);
        const float *sg = fx(st, nm, DFM_F32, 11);
        dfm_sched *s = NULL;
        CHECK_EQ(dfm_sched_new(&s, &o), 0);
        for (int i = 0; s && sg && i <= 10; i++) CHECK(bits((float)dfm_sched_sigma(s, i)) == bits(sg[i]));
        dfm_sched_free(s);
        snprintf(nm, sizeof nm, "unipc.%s.cr", name[c]);
        trajectory_opts(st, &o, nm, 0, 0);
    }
    dfm_st_close(st);
}

/* a fixture-free property: with final sigma 0, the last UniPC step returns the x0 prediction
 * x - sigma * v of that step exactly (wan.md §5.4 step 6); Euler's last step lands on x - sigma v too */
TEST(scheduler_last_step_is_x0)
{
    for (int kind = 0; kind < 2; kind++) {
        dfm_sched_opts o;
        dfm_sched_opts_default(&o, kind ? DFM_SAMPLER_EULER : DFM_SAMPLER_UNIPC);
        o.steps = 4;
        dfm_sched *s = NULL;
        CHECK_EQ(dfm_sched_new(&s, &o), 0);
        if (!s) return;
        float x[8], v[8], want[8];
        for (int k = 0; k < 8; k++) x[k] = (float)(k - 3) * 0.37f;
        for (int i = 0; i < 4; i++) {
            for (int k = 0; k < 8; k++) v[k] = 0.5f * x[k] + (float)k * 0.1f - 0.2f;
            if (i == 3)
                for (int k = 0; k < 8; k++) want[k] = x[k] - (float)dfm_sched_sigma(s, 3) * v[k];
            CHECK_EQ(dfm_sched_step(s, i, v, x, 8), 0);
        }
        for (int k = 0; k < 8; k++) {
            if (kind == 0) CHECK(bits(x[k]) == bits(want[k]));
            else CHECK_NEAR(x[k], want[k], 1e-6);
        }
        dfm_sched_free(s);
    }
}

TEST(scheduler_args)
{
    dfm_sched_opts o;
    dfm_sched_opts_default(&o, DFM_SAMPLER_UNIPC);
    dfm_sched *s = NULL;
    o.steps = 0;
    CHECK_EQ(dfm_sched_new(&s, &o), DFM_E_ARG);
    o.steps = 3;
    o.shift = 0;
    CHECK_EQ(dfm_sched_new(&s, &o), DFM_E_ARG);
    o.shift = 3;
    o.solver_order = 3;
    CHECK_EQ(dfm_sched_new(&s, &o), DFM_E_UNSUPPORTED);
    o.solver_order = 2;
    CHECK_EQ(dfm_sched_new(&s, &o), 0);
    if (!s) return;
    float x[4] = {0}, v[4] = {0};
    CHECK_EQ(dfm_sched_step(s, 1, v, x, 4), DFM_E_ARG); /* out of order */
    CHECK_EQ(dfm_sched_step(s, 0, v, x, 4), 0);
    CHECK_EQ(dfm_sched_step(s, 1, v, x, 3), DFM_E_ARG); /* another size */
    CHECK_EQ(dfm_sched_step(s, 2, v, x, 4), DFM_E_ARG); /* skipped step 1 */
    CHECK_EQ(dfm_sched_step(s, 1, v, x, 4), 0);
    CHECK_EQ(dfm_sched_step(s, 2, v, x, 4), 0);
    CHECK_EQ(dfm_sched_step(s, 3, v, x, 4), DFM_E_ARG); /* past the end */
    dfm_sched_free(s);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "  cannot write %s\n", path);
        dfm_test_failures++;
        return;
    }
    fputs(text, f);
    fclose(f);
}

/* the Wan 2.1 Diffusers repo's scheduler_config.json, as diffusers 0.42.1 saves it */
static const char WAN_CFG[] =
    "{\"_class_name\": \"UniPCMultistepScheduler\", \"_diffusers_version\": \"0.42.1\", \"beta_end\": 0.02,"
    " \"beta_schedule\": \"linear\", \"beta_start\": 0.0001, \"disable_corrector\": [],"
    " \"dynamic_thresholding_ratio\": 0.995, \"final_sigmas_type\": \"zero\", \"flow_shift\": %s,"
    " \"lower_order_final\": true, \"num_train_timesteps\": 1000, \"predict_x0\": true,"
    " \"prediction_type\": \"flow_prediction\", \"rescale_betas_zero_snr\": false, \"sample_max_value\": 1.0,"
    " \"shift_terminal\": null, \"sigma_max\": null, \"sigma_min\": null, \"solver_order\": 2, \"solver_p\": null,"
    " \"solver_type\": \"%s\", \"steps_offset\": 0, \"thresholding\": false, \"time_shift_type\": \"exponential\","
    " \"timestep_spacing\": \"linspace\", \"trained_betas\": null, \"use_beta_sigmas\": false,"
    " \"use_dynamic_shifting\": false, \"use_exponential_sigmas\": false, \"use_flow_sigmas\": true,"
    " \"use_karras_sigmas\": %s%s}";

TEST(scheduler_config)
{
    char root[512], dir[600], path[700], text[2048];
    snprintf(root, sizeof root, "%s/sched_cfg", dfm_test_tmpdir());
    snprintf(dir, sizeof dir, "%s/scheduler", root);
    snprintf(path, sizeof path, "%s/scheduler_config.json", dir);
    mkdir(root, 0755);
    dfm_sched_opts o;
    int found = -1;
    dfm_sched_opts_default(&o, DFM_SAMPLER_EULER);
    o.shift = 7;
    CHECK_EQ(dfm_sched_config_load(&o, root, &found), 0); /* no file: defaults stay */
    CHECK_EQ(found, 0);
    CHECK(o.shift == 7 && o.kind == DFM_SAMPLER_EULER);
    mkdir(dir, 0755);

    snprintf(text, sizeof text, WAN_CFG, "5.0", "bh1", "false", "");
    write_text(path, text);
    o.steps = 20;
    CHECK_EQ(dfm_sched_config_load(&o, root, &found), 0);
    CHECK_EQ(found, 1);
    CHECK(o.kind == DFM_SAMPLER_UNIPC && o.shift == 5.0 && o.solver_order == 2 && o.solver_type_bh2 == 0 &&
          o.lower_order_final && o.final_sigmas_type_zero && o.steps == 20 && o.num_train_timesteps == 1000);
    found = -1;
    CHECK_EQ(dfm_sched_config_load(&o, dir, &found), 0); /* the scheduler directory itself */
    CHECK_EQ(found, 1);

    snprintf(text, sizeof text, WAN_CFG, "3.0", "bh2", "true", "");
    write_text(path, text);
    CHECK_EQ(dfm_sched_config_load(&o, root, &found), DFM_E_UNSUPPORTED);
    CHECK(strstr(dfm_errmsg(), "use_karras_sigmas") != NULL);
    CHECK(o.shift == 5.0); /* untouched on error */

    snprintf(text, sizeof text, WAN_CFG, "3.0", "bh2", "false", ", \"some_new_flag\": null, \"other\": false");
    write_text(path, text);
    CHECK_EQ(dfm_sched_config_load(&o, root, &found), 0);
    CHECK(o.shift == 3.0);
    snprintf(text, sizeof text, WAN_CFG, "3.0", "bh2", "false", ", \"some_new_flag\": 2");
    write_text(path, text);
    CHECK_EQ(dfm_sched_config_load(&o, root, &found), DFM_E_UNSUPPORTED);
    CHECK(strstr(dfm_errmsg(), "some_new_flag") != NULL);

    write_text(path, "{\"_class_name\": \"UniPCMultistepScheduler\", \"prediction_type\": \"epsilon\", "
                     "\"use_flow_sigmas\": true}");
    CHECK_EQ(dfm_sched_config_load(&o, root, &found), DFM_E_UNSUPPORTED);
    CHECK(strstr(dfm_errmsg(), "prediction_type") != NULL);
    write_text(path, "{\"_class_name\": \"UniPCMultistepScheduler\", \"prediction_type\": \"flow_prediction\", "
                     "\"use_flow_sigmas\": true, \"solver_order\": 3}");
    CHECK_EQ(dfm_sched_config_load(&o, root, &found), DFM_E_UNSUPPORTED);
    CHECK(strstr(dfm_errmsg(), "solver_order") != NULL);
    write_text(path, "{\"_class_name\": \"DPMSolverMultistepScheduler\"}");
    CHECK_EQ(dfm_sched_config_load(&o, root, &found), DFM_E_UNSUPPORTED);
    CHECK(strstr(dfm_errmsg(), "_class_name") != NULL);
    write_text(path, "{\"_class_name\": \"UniPCMultistepScheduler\", \"flow_shift\": \"3\"");
    CHECK_EQ(dfm_sched_config_load(&o, root, &found), DFM_E_FORMAT);
    write_text(path, "{\"_class_name\": \"UniPCMultistepScheduler\", \"prediction_type\": \"flow_prediction\", "
                     "\"use_flow_sigmas\": true, \"flow_shift\": -1}");
    CHECK_EQ(dfm_sched_config_load(&o, root, &found), DFM_E_FORMAT);

    /* FlowMatchEuler: shift (its default 1.0 when absent), invert_sigmas refused */
    write_text(path, "{\"_class_name\": \"FlowMatchEulerDiscreteScheduler\", \"shift\": 5.0, "
                     "\"num_train_timesteps\": 1000, \"use_dynamic_shifting\": false, \"base_shift\": 0.5}");
    CHECK_EQ(dfm_sched_config_load(&o, root, &found), 0);
    CHECK(o.kind == DFM_SAMPLER_EULER && o.shift == 5.0);
    write_text(path, "{\"_class_name\": \"FlowMatchEulerDiscreteScheduler\"}");
    CHECK_EQ(dfm_sched_config_load(&o, root, &found), 0);
    CHECK(o.shift == 1.0);
    write_text(path, "{\"_class_name\": \"FlowMatchEulerDiscreteScheduler\", \"invert_sigmas\": true}");
    CHECK_EQ(dfm_sched_config_load(&o, root, &found), DFM_E_UNSUPPORTED);
    CHECK(strstr(dfm_errmsg(), "invert_sigmas") != NULL);
    remove(path);
    rmdir(dir);
    rmdir(root);
}
