/* scheduler.c — UniPC (flow sigmas) and flow-matching Euler, as diffusers computes them.
 *
 * Rounding map (every line below says which): grids in double as numpy does them, cast to f32;
 * per-step scalars as f32 0-d tensors (each operation rounded to f32, left to right as Python
 * evaluates the expression); tensor work element by element in f32. This file is compiled under
 * -std=c11, so GCC contracts no product into a sum (-ffp-contract=off), as eager PyTorch. The f32
 * casts below are there for the reader: every float expression is already f32 in C.
 */
#include "sample/scheduler.h"
#include "base/buf.h"
#include "base/error.h"
#include "io/hfmodel.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct dfm_sched {
    dfm_sched_opts o;
    int n;              /* steps */
    float *sigmas;      /* [n + 1] */
    float *timesteps;   /* [n] as the model gets them */
    /* UniPC history */
    size_t len;         /* latent count, fixed at step 0 */
    float *m1, *m2;     /* model_outputs[-1], [-2]: the x0 predictions of the last two steps */
    float *last;        /* last_sample (the corrected sample of the previous step) */
    int have_m2, have_last;
    int this_order, lower_order_nums;
    int next;           /* the step expected next */
};

void dfm_sched_opts_default(dfm_sched_opts *o, dfm_sampler_kind kind)
{
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->steps = 50;
    o->shift = 3.0;
    o->num_train_timesteps = 1000;
    o->solver_order = 2;
    o->predict_x0 = 1;
    o->solver_type_bh2 = 1;
    o->lower_order_final = 1;
    o->final_sigmas_type_zero = 1;
}

/* ---- scheduler_config.json --------------------------------------------------------------------- */

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Keys that do not change the flow-sigma math of either class (the VP beta schedule, spacing of
 * the discrete schedule, thresholding parameters used only with thresholding, dynamic-shift
 * parameters used only with use_dynamic_shifting). */
static const char *const IGNORED[] = {
    "beta_start", "beta_end", "beta_schedule", "trained_betas", "timestep_spacing", "steps_offset",
    "rescale_betas_zero_snr", "dynamic_thresholding_ratio", "sample_max_value", "sigma_min",
    "sigma_max", "time_shift_type", "base_shift", "max_shift", "base_image_seq_len",
    "max_image_seq_len", "solver_p", "use_beta_sigmas", "use_exponential_sigmas",
    "use_karras_sigmas", "use_dynamic_shifting", "thresholding", "shift_terminal",
    "stochastic_sampling", "invert_sigmas", NULL};
/* Of those, the ones that must be null/false (they change the grid or the step). */
static const char *const MUST_BE_OFF[] = {
    "use_beta_sigmas", "use_exponential_sigmas", "use_karras_sigmas",
    "use_dynamic_shifting", "thresholding", "shift_terminal", "stochastic_sampling",
    "invert_sigmas", "solver_p", NULL};

static int in_list(const char *const *l, const char *k)
{
    for (; *l; l++)
        if (!strcmp(*l, k)) return 1;
    return 0;
}

static int is_off(const cJSON *v) { return cJSON_IsNull(v) || cJSON_IsFalse(v); }

static int unsupported(const char *path, const char *key, const cJSON *v)
{
    char *txt = cJSON_PrintUnformatted(v);
    int rc = dfm_fail(DFM_E_UNSUPPORTED, "%s: \"%s\": %s is not supported (dfm implements the flow-sigma "
                      "UniPC and FlowMatchEuler schedulers without it)", path, key, txt ? txt : "?");
    free(txt);
    return rc;
}

static int load_unipc(dfm_sched_opts *o, const dfm_hf_config *c)
{
    int rc;
    double shift;
    int64_t v;
    const char *s;
    int b;
    if ((rc = dfm_hf_str(c, "prediction_type", 0, "epsilon", &s))) return rc;
    if (strcmp(s, "flow_prediction"))
        return dfm_fail(DFM_E_UNSUPPORTED, "%s: \"prediction_type\": \"%s\" is not supported (only "
                        "\"flow_prediction\")", c->path, s);
    if ((rc = dfm_hf_bool(c, "use_flow_sigmas", 0, 0, &b))) return rc;
    if (!b)
        return dfm_fail(DFM_E_UNSUPPORTED, "%s: \"use_flow_sigmas\": false is not supported (only the flow "
                        "sigma grid)", c->path);
    if ((rc = dfm_hf_float(c, "flow_shift", 0, 1.0, &shift))) return rc;
    if (!(shift > 0) || !isfinite(shift))
        return dfm_fail(DFM_E_FORMAT, "%s: \"flow_shift\": %g must be > 0", c->path, shift);
    if ((rc = dfm_hf_int_range(c, "num_train_timesteps", 0, 1000, 1, 1 << 24, &v))) return rc;
    o->num_train_timesteps = (int)v;
    if ((rc = dfm_hf_int_range(c, "solver_order", 0, 2, 1, 16, &v))) return rc;
    if (v > 2)
        return dfm_fail(DFM_E_UNSUPPORTED, "%s: \"solver_order\": %d is not supported (1 or 2)", c->path,
                        (int)v);
    o->solver_order = (int)v;
    if ((rc = dfm_hf_bool(c, "predict_x0", 0, 1, &b))) return rc;
    if (!b)
        return dfm_fail(DFM_E_UNSUPPORTED, "%s: \"predict_x0\": false is not supported with flow_prediction",
                        c->path);
    o->predict_x0 = 1;
    if ((rc = dfm_hf_str(c, "solver_type", 0, "bh2", &s))) return rc;
    /* diffusers maps midpoint/heun/logrho to bh2 */
    if (!strcmp(s, "bh1")) o->solver_type_bh2 = 0;
    else if (!strcmp(s, "bh2") || !strcmp(s, "midpoint") || !strcmp(s, "heun") || !strcmp(s, "logrho"))
        o->solver_type_bh2 = 1;
    else
        return dfm_fail(DFM_E_UNSUPPORTED, "%s: \"solver_type\": \"%s\" is not supported (bh1, bh2)", c->path, s);
    if ((rc = dfm_hf_bool(c, "lower_order_final", 0, 1, &b))) return rc;
    o->lower_order_final = b;
    if ((rc = dfm_hf_str(c, "final_sigmas_type", 0, "zero", &s))) return rc;
    if (!strcmp(s, "zero")) o->final_sigmas_type_zero = 1;
    else if (!strcmp(s, "sigma_min")) o->final_sigmas_type_zero = 0;
    else return dfm_fail(DFM_E_FORMAT, "%s: \"final_sigmas_type\": \"%s\" (expected zero or sigma_min)", c->path, s);
    int64_t dc[DFM_SCHED_MAX_DISABLE];
    int n = 0;
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(c->json, "disable_corrector");
    if (d && !cJSON_IsNull(d)) {
        if (cJSON_IsArray(d) && cJSON_GetArraySize(d) > DFM_SCHED_MAX_DISABLE)
            return dfm_fail(DFM_E_UNSUPPORTED, "%s: \"disable_corrector\": more than %d entries", c->path,
                            DFM_SCHED_MAX_DISABLE);
        if ((rc = dfm_hf_int_array_range(c, "disable_corrector", 0, 0, 1 << 24, dc, DFM_SCHED_MAX_DISABLE, &n)))
            return rc;
    }
    for (int i = 0; i < n; i++) o->disable_corrector[i] = (int)dc[i];
    o->n_disable_corrector = n;
    o->shift = shift;
    return 0;
}

static int load_euler(dfm_sched_opts *o, const dfm_hf_config *c)
{
    int rc;
    double shift;
    int64_t v;
    if ((rc = dfm_hf_float(c, "shift", 0, 1.0, &shift))) return rc;
    if (!(shift > 0) || !isfinite(shift))
        return dfm_fail(DFM_E_FORMAT, "%s: \"shift\": %g must be > 0", c->path, shift);
    if ((rc = dfm_hf_int_range(c, "num_train_timesteps", 0, 1000, 1, 1 << 24, &v))) return rc;
    o->num_train_timesteps = (int)v;
    o->shift = shift;
    return 0;
}

int dfm_sched_config_load(dfm_sched_opts *o, const char *model_dir, int *found)
{
    *found = 0;
    if (!model_dir || !*model_dir) return dfm_fail(DFM_E_ARG, "no model directory given");
    dfm_buf p1 = {0}, p2 = {0};
    int rc = 0;
    if (dfm_buf_printf(&p1, "%s/scheduler/scheduler_config.json", model_dir) < 0 ||
        dfm_buf_printf(&p2, "%s/scheduler_config.json", model_dir) < 0) {
        rc = DFM_E_NOMEM;
        goto out;
    }
    const char *path = is_file((const char *)p1.data) ? (const char *)p1.data
                       : is_file((const char *)p2.data) ? (const char *)p2.data : NULL;
    if (!path) goto out;
    *found = 1;
    dfm_buf text = {0};
    if ((rc = dfm_read_file(path, 1u << 20, &text))) goto out;
    dfm_hf_config c = {(char *)path, cJSON_ParseWithLength((const char *)text.data, text.len)};
    dfm_buf_free(&text);
    if (!c.json || !cJSON_IsObject(c.json)) {
        rc = dfm_fail(DFM_E_FORMAT, "%s: not a JSON object", path);
        cJSON_Delete(c.json);
        goto out;
    }
    const char *cls = NULL;
    if ((rc = dfm_hf_str(&c, "_class_name", 1, NULL, &cls))) goto done;
    dfm_sched_opts t = *o;
    int unipc = !strcmp(cls, "UniPCMultistepScheduler");
    if (!unipc && strcmp(cls, "FlowMatchEulerDiscreteScheduler")) {
        rc = dfm_fail(DFM_E_UNSUPPORTED, "%s: \"_class_name\": %s is not supported (UniPCMultistepScheduler, "
                      "FlowMatchEulerDiscreteScheduler)", path, cls);
        goto done;
    }
    /* every key: known and read, known and harmless, known and must be off, or unknown (then only
     * null/false are accepted: a new diffusers feature flag at its default) */
    static const char *const UNIPC_READ[] = {"prediction_type", "use_flow_sigmas", "flow_shift",
        "num_train_timesteps", "solver_order", "predict_x0", "solver_type", "lower_order_final",
        "final_sigmas_type", "disable_corrector", NULL};
    static const char *const EULER_READ[] = {"shift", "num_train_timesteps", NULL};
    for (const cJSON *k = c.json->child; k; k = k->next) {
        const char *key = k->string;
        if (key[0] == '_') continue;
        if (in_list(unipc ? UNIPC_READ : EULER_READ, key)) continue;
        if (in_list(MUST_BE_OFF, key)) {
            if (!is_off(k)) {
                rc = unsupported(path, key, k);
                goto done;
            }
            continue;
        }
        if (in_list(IGNORED, key)) continue;
        if (!is_off(k)) {
            rc = unsupported(path, key, k);
            goto done;
        }
    }
    rc = unipc ? load_unipc(&t, &c) : load_euler(&t, &c);
    if (!rc) {
        t.kind = unipc ? DFM_SAMPLER_UNIPC : DFM_SAMPLER_EULER;
        *o = t;
    }
done:
    cJSON_Delete(c.json);
out:
    dfm_buf_free(&p1);
    dfm_buf_free(&p2);
    return rc;
}

/* ---- grids ----------------------------------------------------------------------------------- */

/* ref: UniPCMultistepScheduler.set_timesteps, the use_flow_sigmas branch (float64 numpy) */
static int grid_unipc(dfm_sched *s)
{
    const int n = s->n, T = s->o.num_train_timesteps;
    const double shift = s->o.shift;
    double *sg = dfm_malloc(sizeof(double) * (size_t)n);
    if (!sg) return DFM_E_NOMEM;
    /* np.linspace(1, 1/T, n + 1)[:-1]: i * step + start, step = (stop - start) / n */
    const double start = 1.0, stop = 1.0 / T, step = (stop - start) / n;
    for (int i = 0; i < n; i++) {
        double v = (double)i * step + start;
        sg[i] = shift * v / (1 + (shift - 1) * v);
    }
    if (fabs(sg[0] - 1) < 1e-6) sg[0] -= 1e-6; /* "to avoid inf torch.log(alpha_si)" */
    for (int i = 0; i < n; i++) {
        s->timesteps[i] = (float)(int64_t)(sg[i] * T); /* .to(torch.int64) truncates */
        s->sigmas[i] = (float)sg[i];
    }
    s->sigmas[n] = s->o.final_sigmas_type_zero ? 0.0f : (float)sg[n - 1];
    free(sg);
    return 0;
}

/* ref: FlowMatchEulerDiscreteScheduler.__init__ (f32 torch) and set_timesteps (float64 numpy) */
static void grid_euler(dfm_sched *s)
{
    const int n = s->n, T = s->o.num_train_timesteps;
    const double shift = s->o.shift;
    /* __init__: sigmas = linspace(1, T, T, f32)[::-1] / T, shifted in f32 (the Python scalars
     * shift and shift - 1 become f32 operands); only the two ends are used afterwards */
    const float fs = (float)shift, fs1 = (float)(shift - 1.0), fT = (float)T;
    float ends[2], base[2] = {fT / fT, 1.0f / fT};
    for (int k = 0; k < 2; k++) {
        float num = fs * base[k];
        float den = 1.0f + fs1 * base[k];
        ends[k] = num / den;
    }
    const double smax = ends[0], smin = ends[1]; /* .item(): Python floats */
    /* set_timesteps: np.linspace(smax * T, smin * T, n) / T, then the shift again (float64) */
    const double start = smax * T, stop = smin * T, delta = stop - start;
    const int div = n - 1;
    const double step = div > 0 ? delta / div : NAN;
    for (int i = 0; i < n; i++) {
        double t;
        if (div <= 0) t = (double)i * delta + start;
        else if (step == 0) t = (double)i / div * delta + start;
        else t = (double)i * step + start;
        if (div > 0 && i == n - 1) t = stop;
        double v = t / T;
        v = shift * v / (1 + (shift - 1) * v);
        s->sigmas[i] = (float)v;
        s->timesteps[i] = s->sigmas[i] * fT; /* f32 tensor * T */
    }
    s->sigmas[n] = 0.0f;
}

int dfm_sched_new(dfm_sched **out, const dfm_sched_opts *o)
{
    *out = NULL;
    if (o->kind != DFM_SAMPLER_UNIPC && o->kind != DFM_SAMPLER_EULER)
        return dfm_fail(DFM_E_ARG, "scheduler: unknown sampler kind %d", (int)o->kind);
    if (o->steps < 1 || o->steps > 100000)
        return dfm_fail(DFM_E_ARG, "scheduler: steps %d out of range [1, 100000]", o->steps);
    if (!(o->shift > 0) || !isfinite(o->shift))
        return dfm_fail(DFM_E_ARG, "scheduler: shift %g must be a positive number", o->shift);
    if (o->num_train_timesteps < 1 || o->num_train_timesteps > (1 << 24))
        return dfm_fail(DFM_E_ARG, "scheduler: num_train_timesteps %d out of range [1, 2^24]",
                        o->num_train_timesteps);
    if (o->kind == DFM_SAMPLER_UNIPC) {
        if (o->solver_order < 1 || o->solver_order > 2)
            return dfm_fail(DFM_E_UNSUPPORTED, "scheduler: UniPC solver_order %d is not supported (1 or 2)",
                            o->solver_order);
        if (!o->predict_x0)
            return dfm_fail(DFM_E_UNSUPPORTED, "scheduler: UniPC with predict_x0 off is not supported with "
                            "flow_prediction");
        if (o->n_disable_corrector < 0 || o->n_disable_corrector > DFM_SCHED_MAX_DISABLE)
            return dfm_fail(DFM_E_ARG, "scheduler: n_disable_corrector %d out of range", o->n_disable_corrector);
    }
    dfm_sched *s = calloc(1, sizeof *s);
    if (!s) return DFM_E_NOMEM;
    s->o = *o;
    s->n = o->steps;
    s->sigmas = malloc(sizeof(float) * ((size_t)s->n + 1));
    s->timesteps = malloc(sizeof(float) * (size_t)s->n);
    if (!s->sigmas || !s->timesteps || (o->kind == DFM_SAMPLER_UNIPC && grid_unipc(s))) {
        dfm_sched_free(s);
        return dfm_fail(DFM_E_NOMEM, "scheduler: out of memory for %d steps", o->steps);
    }
    if (o->kind == DFM_SAMPLER_EULER) grid_euler(s);
    *out = s;
    return 0;
}

void dfm_sched_free(dfm_sched *s)
{
    if (!s) return;
    free(s->sigmas);
    free(s->timesteps);
    free(s->m1);
    free(s->m2);
    free(s->last);
    free(s);
}

int dfm_sched_steps(const dfm_sched *s) { return s->n; }

float dfm_sched_timestep(const dfm_sched *s, int i)
{
    DFM_ASSERT(i >= 0 && i < s->n);
    return s->timesteps[i];
}

double dfm_sched_sigma(const dfm_sched *s, int i)
{
    DFM_ASSERT(i >= 0 && i <= s->n);
    return s->sigmas[i];
}

/* ---- steps ----------------------------------------------------------------------------------- */

/* bf16 round to nearest even, kept in f32 (torch's c10::BFloat16 conversion) */
static inline float bf16r(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) u = 0x7fc00000u;
    else u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&x, &u, 4);
    return x;
}

/* torch.log / torch.expm1 of an f32 0-d tensor, correctly rounded (see scheduler.h) */
static float logf_cr(float a) { return a == 0.0f ? -INFINITY : (float)log((double)a); }
static float expm1f_cr(float a) { return (float)expm1((double)a); }

/* lambda(sigma) = log(alpha) - log(sigma), alpha = 1 - sigma (_sigma_to_alpha_sigma_t, flow) */
static float lambda_of(float sigma)
{
    float alpha = 1.0f - sigma;
    return logf_cr(alpha) - logf_cr(sigma);
}

/* torch.linalg.solve([[1, 1], [r, 1]], [b1, b2]) in f32 as MKL's sgesv does it on the CPU: LU
 * with partial pivoting (row 2 when |r| > 1), the column scaled by the reciprocal of the pivot,
 * the triangular solve multiplying by reciprocals of the diagonal. */
static void solve2(float r, float b1, float b2, float *x1, float *x2)
{
    if (!(fabsf(r) > 1.0f)) { /* pivot 1: L = [1; r], U = [1 1; 0 1-r] */
        float l = r * (1.0f / 1.0f);
        float u22 = 1.0f - l;
        float y2 = b2 - l * b1;
        *x2 = y2 * (1.0f / u22);
        *x1 = (b1 - *x2) * (1.0f / 1.0f);
    } else { /* rows swapped: [r 1; 1 1], L = [1; 1/r], U = [r 1; 0 1-1/r] */
        float l = 1.0f * (1.0f / r);
        float u22 = 1.0f - l;
        float y2 = b1 - l * b2;
        *x2 = y2 * (1.0f / u22);
        *x1 = (b2 - *x2) * (1.0f / r);
    }
}

static int in_disable(const dfm_sched_opts *o, int k)
{
    for (int j = 0; j < o->n_disable_corrector; j++)
        if (o->disable_corrector[j] == k) return 1;
    return 0;
}

/* ref: UniPCMultistepScheduler.step, convert_model_output, multistep_uni_c_bh_update,
 * multistep_uni_p_bh_update (predict_x0, flow sigmas) */
static int step_unipc(dfm_sched *s, int i, const float *v, float *x, size_t n)
{
    const dfm_sched_opts *o = &s->o;
    const float *sg = s->sigmas;
    if (i == 0) {
        free(s->m1), free(s->m2), free(s->last);
        s->m1 = malloc(n * sizeof(float));
        s->m2 = malloc(n * sizeof(float));
        s->last = malloc(n * sizeof(float));
        if (!s->m1 || !s->m2 || !s->last)
            return dfm_fail(DFM_E_NOMEM, "scheduler: out of memory for the UniPC history (%zu values)", n);
        s->len = n;
        s->have_m2 = s->have_last = 0;
        s->this_order = 0;
        s->lower_order_nums = 0;
    }
    float *m2 = s->m2, *m1 = s->m1, *last = s->last;
    const int bf = o->model_bf16;

    /* convert_model_output: x0 = sample - sigma_t * model_output (the product in the model's dtype).
     * It is written into m2's buffer, which the history shift below frees. */
    const int corr = i > 0 && !in_disable(o, i - 1) && s->have_last;
    float *x0 = m2; /* m2 (model_outputs[-2]) is still needed by an order-2 corrector: keep it */
    float *tmp = NULL;
    if (corr && s->this_order >= 2) {
        tmp = malloc(n * sizeof(float));
        if (!tmp) return dfm_fail(DFM_E_NOMEM, "scheduler: out of memory (%zu values)", n);
        x0 = tmp;
    }
    {
        /* bf16: the 0-d f32 sigma is cast to the tensor's dtype first, then the product rounded */
        const float sig = bf ? bf16r(sg[i]) : sg[i];
        for (size_t k = 0; k < n; k++) {
            float p = sig * v[k];
            if (bf) p = bf16r(p);
            x0[k] = x[k] - p;
        }
    }

    if (corr) { /* multistep_uni_c_bh_update(model_t = x0, last_sample, this_sample = x, this_order) */
        const int p = s->this_order;
        const float st = sg[i], ss0 = sg[i - 1];
        const float at = 1.0f - st;
        const float lt = lambda_of(st), ls0 = lambda_of(ss0);
        const float h = lt - ls0;
        float rk = 0;
        if (p >= 2) {
            const float lsi = lambda_of(sg[i - 2]);
            rk = (lsi - ls0) / h;
        }
        const float hh = -h;
        const float phi1 = expm1f_cr(hh);
        float hphik = phi1 / hh - 1.0f;
        const float B = o->solver_type_bh2 ? expm1f_cr(hh) : hh;
        const float b1 = hphik * 1.0f / B;
        hphik = hphik / hh - 0.5f;
        const float b2 = hphik * 2.0f / B;
        float rho0 = 0, rlast;
        if (p == 1) rlast = 1.0f * 0.5f;
        else solve2(rk, b1, b2, &rho0, &rlast);
        const float c_ratio = st / ss0, c_m0 = at * phi1, c_res = at * B;
        for (size_t k = 0; k < n; k++) {
            float xt_ = c_ratio * last[k] - c_m0 * m1[k];
            float d1t = x0[k] - m1[k];
            float res;
            if (p >= 2) {
                float d1 = (m2[k] - m1[k]) / rk;
                res = rho0 * d1 + rlast * d1t;
            } else {
                res = 0.0f + rlast * d1t; /* corr_res = 0 (a Python int) */
            }
            x[k] = xt_ - c_res * res;
        }
    }

    /* model_outputs shift: [-2] <- [-1], [-1] <- x0 */
    if (tmp) { /* x0 in tmp: m2's buffer is free now */
        float *old = m2;
        s->m2 = m1;
        s->m1 = tmp;
        free(old);
    } else { /* x0 was written over m2's buffer */
        s->m2 = m1;
        s->m1 = x0;
    }
    s->have_m2 = i > 0;
    m1 = s->m1, m2 = s->m2;

    int order = o->solver_order;
    if (o->lower_order_final && s->n - i < order) order = s->n - i;
    if (order > s->lower_order_nums + 1) order = s->lower_order_nums + 1;
    s->this_order = order;

    memcpy(last, x, n * sizeof(float)); /* last_sample = sample (corrected) */
    s->have_last = 1;

    { /* multistep_uni_p_bh_update(sample = x, order) */
        const int q = order;
        const float st = sg[i + 1], ss0 = sg[i];
        const float at = 1.0f - st;
        const float lt = lambda_of(st), ls0 = lambda_of(ss0);
        const float h = lt - ls0;
        float rk = 0;
        if (q >= 2) {
            const float lsi = lambda_of(sg[i - 1]);
            rk = (lsi - ls0) / h;
        }
        const float hh = -h;
        const float phi1 = expm1f_cr(hh);
        const float B = o->solver_type_bh2 ? expm1f_cr(hh) : hh;
        const float c_ratio = st / ss0, c_m0 = at * phi1, c_res = at * B;
        const float rho = 1.0f * 0.5f; /* torch.ones(1) * 0.5 */
        const float c_zero = c_res * 0.0f; /* alpha_t * B_h * 0 (pred_res = 0, a Python int) */
        for (size_t k = 0; k < n; k++) {
            float xt_ = c_ratio * x[k] - c_m0 * m1[k];
            if (q >= 2) {
                float d1 = (m2[k] - m1[k]) / rk;
                x[k] = xt_ - c_res * (rho * d1);
            } else {
                x[k] = xt_ - c_zero;
            }
        }
    }
    if (s->lower_order_nums < o->solver_order) s->lower_order_nums++;
    return 0;
}

/* ref: FlowMatchEulerDiscreteScheduler.step (not stochastic, no per-token timesteps) */
static int step_euler(dfm_sched *s, int i, const float *v, float *x, size_t n)
{
    const float dt = s->sigmas[i + 1] - s->sigmas[i];
    if (s->o.model_bf16) { /* dt * v in bf16 (dt cast to bf16 first), x + that in f32, then .to(bf16) */
        const float dtb = bf16r(dt);
        for (size_t k = 0; k < n; k++) x[k] = bf16r(x[k] + bf16r(dtb * v[k]));
    } else {
        for (size_t k = 0; k < n; k++) x[k] = x[k] + dt * v[k];
    }
    return 0;
}

int dfm_sched_step(dfm_sched *s, int i, const float *model_out, float *x, size_t n)
{
    if (i != s->next && i != 0)
        return dfm_fail(DFM_E_ARG, "scheduler: step %d called, step %d expected (steps run in order)", i, s->next);
    if (i < 0 || i >= s->n) return dfm_fail(DFM_E_ARG, "scheduler: step %d out of range [0, %d)", i, s->n);
    if (i > 0 && n != s->len)
        return dfm_fail(DFM_E_ARG, "scheduler: step %d got %zu values, step 0 had %zu", i, n, s->len);
    if (!model_out || !x || n == 0) return dfm_fail(DFM_E_ARG, "scheduler: empty step");
    int rc = s->o.kind == DFM_SAMPLER_UNIPC ? step_unipc(s, i, model_out, x, n) : step_euler(s, i, model_out, x, n);
    if (rc) return rc;
    s->len = n;
    s->next = i + 1;
    return 0;
}
