/* scheduler.h — the two flow-matching samplers the Wan pipeline uses, with diffusers' arithmetic:
 * UniPCMultistepScheduler (use_flow_sigmas, prediction_type "flow_prediction", predict_x0, bh2 or
 * bh1, order 1 or 2; what Wan 2.1's Diffusers repos ship) and FlowMatchEulerDiscreteScheduler.
 *
 * A scheduler holds its grid (sigmas[0..steps], the timesteps the model gets) and, for UniPC, the
 * multistep history; dfm_sched_step updates the latents on the host in f32, rounding where
 * diffusers rounds: its tensors are f32, the grids are built in float64 (numpy) then cast, the
 * per-step scalars are f32 0-d tensors. Bit for bit against diffusers on the CPU except the UniPC
 * scalars log() and expm1(), which we evaluate correctly rounded (torch uses MKL / SLEEF on the
 * CPU, CUDA's logf on the GPU: neither is correctly rounded, and they disagree with each other in
 * the last bit of a few coefficients; on the CPU the latents then differ by up to ~2e-6 after 50
 * steps, see tests/fixtures/schedulers/README.md). The order-2 corrector's 2x2 solve follows MKL's
 * sgesv (torch.linalg.solve on the CPU).
 *
 * Not here: the model, classifier-free guidance, the noise, anything on the device (the latents
 * of one video are a few MB: the host step is not a bottleneck next to the transformer).
 * ref: diffusers schedulers/scheduling_unipc_multistep.py, scheduling_flow_match_euler_discrete.py;
 *      pipelines/wan/pipeline_wan.py (set_timesteps(steps), set_begin_index(0), step per t)
 */
#ifndef DFM_SAMPLE_SCHEDULER_H
#define DFM_SAMPLE_SCHEDULER_H
#include <stddef.h>

typedef enum { DFM_SAMPLER_UNIPC, DFM_SAMPLER_EULER } dfm_sampler_kind;

#define DFM_SCHED_MAX_DISABLE 32

typedef struct {
    dfm_sampler_kind kind;
    int steps;                 /* inference steps (>= 1) */
    double shift;              /* UniPC flow_shift / Euler shift (Wan 2.1 1.3B: 3.0); > 0 */
    int num_train_timesteps;   /* 1000 */
    /* UniPC options as diffusers' UniPCMultistepScheduler config (defaults = Wan's shipped
     * scheduler_config.json); ignored by Euler: */
    int solver_order;          /* 2 (1 or 2; 3 is DFM_E_UNSUPPORTED) */
    int predict_x0;            /* 1 (0 is an error in diffusers with flow_prediction, here too) */
    int solver_type_bh2;       /* 1: bh2, 0: bh1 */
    int lower_order_final;     /* 1 */
    int final_sigmas_type_zero;/* 1: "zero", 0: "sigma_min" */
    int disable_corrector[DFM_SCHED_MAX_DISABLE]; /* step indices whose corrector is skipped */
    int n_disable_corrector;   /* 0 */
    /* Both: the model output holds bf16 values (a bf16 transformer; stored in f32 here). diffusers
     * then forms sigma * model_out (UniPC) or dt * model_out (Euler) in bf16 — the 0-d f32 scalar
     * cast to bf16 first, the product rounded to bf16 — and Euler casts its result to bf16
     * (prev_sample.to(model_output.dtype)); UniPC's latents stay f32. 0: f32 model output. */
    int model_bf16;
} dfm_sched_opts;

/* Wan's shipped UniPC config (flow_shift 3.0, order 2, bh2, predict_x0, lower_order_final,
 * final sigma zero, 1000 train timesteps, steps 50), or Euler with the same shift and steps. */
void dfm_sched_opts_default(dfm_sched_opts *o, dfm_sampler_kind kind);

/* Read model_dir/scheduler/scheduler_config.json, or model_dir/scheduler_config.json (model_dir
 * is a diffusers root or the scheduler directory itself). The file describes the model's
 * scheduler: o->kind becomes its class (UniPCMultistepScheduler or
 * FlowMatchEulerDiscreteScheduler), o->shift its flow_shift (UniPC) or shift (Euler), and for UniPC
 * solver_order, predict_x0, solver_type, lower_order_final, final_sigmas_type, disable_corrector,
 * num_train_timesteps. A caller that wants the other sampler sets o->kind afterwards; the shift
 * carries over (training.md §5: build Euler with shift = flow_shift). o->steps and o->model_bf16
 * are left alone. Settings that change the math and that we do not implement (use_karras_sigmas
 * true, prediction_type other than flow_prediction, use_flow_sigmas false, thresholding,
 * use_dynamic_shifting, shift_terminal, stochastic_sampling, invert_sigmas, another class, an
 * unknown key with a value other than null/false) are DFM_E_UNSUPPORTED naming the file and the
 * key; a bad value is DFM_E_FORMAT. *found = 0 when there is no such file (o untouched), else 1. */
int dfm_sched_config_load(dfm_sched_opts *o, const char *model_dir, int *found);

typedef struct dfm_sched dfm_sched;

/* Build the grid for o->steps steps (diffusers' set_timesteps). Bad options are DFM_E_ARG,
 * unimplemented ones DFM_E_UNSUPPORTED. *s owned by the caller (dfm_sched_free). */
int dfm_sched_new(dfm_sched **s, const dfm_sched_opts *o);
void dfm_sched_free(dfm_sched *s);
int dfm_sched_steps(const dfm_sched *s);
/* The timestep the model gets at step i in [0, steps): scheduler.timesteps[i] as the pipeline
 * passes it (UniPC: an int64 such as 999, exact in f32; Euler: the f32 sigma * 1000). */
float dfm_sched_timestep(const dfm_sched *s, int i);
/* scheduler.sigmas[i], i in [0, steps] (an f32 value; sigmas[steps] is 0 or sigma_min). */
double dfm_sched_sigma(const dfm_sched *s, int i);

/* One step: x (the latents, n f32 values on the host, updated in place) <- scheduler.step(
 * model_out, timesteps[i], x).prev_sample. model_out: n f32 values (the guided velocity), not
 * kept. Steps must come in order 0..steps-1 with the same n (the UniPC history, 3n floats, is
 * kept in s; allocated at step 0; calling step 0 again starts over); anything else is DFM_E_ARG.
 * Single-threaded, deterministic. */
int dfm_sched_step(dfm_sched *s, int i, const float *model_out, float *x, size_t n);

#endif
