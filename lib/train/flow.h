/* flow.h — the flow-matching objective for training: sigma (the noise level, 0 clean, 1 pure
 * noise) sampled per sample, the noise, the noisy input x_t = (1 - sigma) x0 + sigma eps, the
 * velocity target eps - x0, the loss weights and the loss with its gradient.
 *
 * Sigma: u is drawn from a distribution on [0, 1] (uniform; logit-normal, u = sigmoid(N(mean,
 * std)); mode, u = 1 - v - s (cos^2(pi v / 2) - 1 + v) with v ~ U(0, 1); sigmoid, u =
 * sigmoid(scale N(0, 1))), then shifted: sigma = s u / (1 + (s - 1) u). Bounds [min_t, max_t]
 * truncate the distribution (the shape inside is kept, the mass renormalized; no point masses at
 * the bounds as NeMo's clamp gives): with F the CDF of the unshifted u and lo, hi the unshifted
 * images of min_t, max_t (the shift is monotone), u_q ~ U(F(lo), F(hi)) and sigma =
 * shift(F^-1(u_q)). This is the continuous form of diffusion-pipe's 10,000-entry quantile table
 * sliced to [min_t, max_t) (utils/common.py, models/base.py). mix_uniform_ratio: per sample, with
 * that probability u comes from U(0, 1) instead, shifted and bounded the same way (NeMo draws this
 * once per batch; per sample keeps a sample's sigma independent of its batch).
 *
 * Randomness is keyed, not sequential: sigma and noise are pure functions of (seed, step, key),
 * Philox4x32-10 (base/rng.h) with the seed as its key and a 64-bit stream from (step, FNV-1a hash
 * of key, purpose), so a sample gets the same sigma and noise at a step whatever batch, rank or
 * thread it lands on (and a resumed run the same as an uninterrupted one).
 *
 * Not here: the model, the timestep t = 1000 sigma (the caller's), masks, the bsmntw weighting,
 * precondition_outputs (x0 targets), NeMo's batch-wide mix draw and its clamping.
 */
#ifndef DFM_TRAIN_FLOW_H
#define DFM_TRAIN_FLOW_H
#include <stddef.h>
#include <stdint.h>

typedef enum { DFM_SIGMA_UNIFORM, DFM_SIGMA_LOGIT_NORMAL, DFM_SIGMA_MODE, DFM_SIGMA_SIGMOID } dfm_sigma_sampling;
typedef enum { DFM_LOSSW_NONE, DFM_LOSSW_LINEAR, DFM_LOSSW_SIGMA_SQRT, DFM_LOSSW_COSMAP } dfm_loss_weighting;

typedef struct {
    dfm_sigma_sampling sampling;
    double logit_mean, logit_std; /* logit_normal: u = sigmoid(N(mean, std)); defaults 0, 1 */
    double mode_scale;            /* mode: u = 1 - v - s(cos^2(pi v/2) - 1 + v), v ~ U(0,1); default 1.29 */
    double sigmoid_scale;         /* sigmoid: u = sigmoid(scale * N(0,1)); default 1 */
    double shift;                 /* sigma = s u / (1 + (s-1) u); 1 = none */
    double min_t, max_t;          /* bounds on sigma, 0 <= min_t < max_t <= 1, by truncation */
    double mix_uniform_ratio;     /* per sample: with this probability u ~ U(0,1) instead */
    dfm_loss_weighting weighting;
} dfm_flow_opts;

/* logit_normal(0, 1), mode 1.29, sigmoid 1, shift 1, [0, 1], mix 0, weighting NONE. */
void dfm_flow_opts_default(dfm_flow_opts *o);
/* 0, or DFM_E_ARG naming the bad field: sampling and weighting known; the sampling's own
 * parameters finite (logit_std > 0; sigmoid_scale > 0; mode_scale in [-1, 1/(pi/2 - 1)] =
 * [-1, 1.7519], where the mode transform is monotone); shift > 0 finite; 0 <= min_t < max_t <= 1;
 * mix_uniform_ratio in [0, 1]. The other functions assume a checked o. */
int dfm_flow_check(const dfm_flow_opts *o);

/* Sigma for the sample `key` (NUL-terminated, NULL = "") at optimizer step `step` (any value: the
 * caller may use negative steps for evaluation streams): a pure function of (seed, step, key, o).
 * Within [(float)min_t, (float)max_t]; never NaN. */
float dfm_flow_sigma(const dfm_flow_opts *o, uint64_t seed, int64_t step, const char *key);
/* The training distribution's quantile q (clamped to [0, 1]) of sigma, shift, bounds and the
 * uniform mix included (a mixture: its CDF inverted by bisection when mix > 0). For evaluation at
 * fixed sigmas: diffusion-pipe's table[int(q * len)] as a continuous quantile (logit-normal with
 * no shift and no bounds: q = 0.5 gives 0.5). */
float dfm_flow_sigma_quantile(const dfm_flow_opts *o, double q);
/* out[0..n): standard normals for that sample at that step (a stream other than sigma's):
 * out[i] depends only on (seed, step, key, i) (base/rng.h dfm_randn). */
void dfm_flow_noise(uint64_t seed, int64_t step, const char *key, float *out, size_t n);

/* Loss weight of a sample: NONE 1; LINEAR 1 + shift sigma in f32 ops as NeMo's tensor expression
 * (1.0 + flow_shift * sigma); SIGMA_SQRT sigma^-2 with sigma clamped to >= 1e-5 (at most 1e10,
 * never inf); COSMAP 2 / (pi (1 - 2 sigma + 2 sigma^2)). The last two in double, rounded once.
 * ref: diffusers training_utils.compute_loss_weighting_for_sd3; NeMo flow_matching/pipeline.py */
float dfm_flow_weight(const dfm_flow_opts *o, float sigma);

/* xt[i] = (1 - sigma) x0[i] + sigma eps[i] in f32 as torch evaluates the expression: (1 - sigma)
 * rounded, the two products rounded, one sum; no FMA. xt may alias x0 or eps. */
void dfm_flow_noisy(const float *x0, const float *eps, float sigma, float *xt, size_t n);

/* Loss over a batch: pred, x0, eps [B, n] F32 (n elements per sample), sigma [B]. Target
 * v = eps - x0 (f32); per element e = (pred - v)^2 (f32) and w(sigma_b) e (f32); loss = the mean
 * over all B n elements of the weighted e (NeMo), summed in double in a fixed order (blocks of a
 * row, blocks in order: bit-identical whatever the threads), returned as f32. unweighted (may be
 * NULL) receives the mean of e. dpred (may be NULL, [B, n], may not alias the inputs) receives
 * d(loss * scale)/d(pred) = c_b (pred - v) with c_b = (float)(scale 2 w_b / (B n)) in f32.
 * B < 1 or n = 0: NaN (torch's mean of nothing). */
float dfm_flow_loss(const float *pred, const float *x0, const float *eps, const float *sigma, int B, size_t n,
                    const dfm_flow_opts *o, float scale, float *dpred, float *unweighted);

/* The standard normal's CDF Phi and its inverse (Wichura's AS241 PPND16, relative error about
 * 1e-16 over (0, 1); 0 and 1 give -inf and +inf, NaN gives NaN). */
double dfm_flow_norm_cdf(double x);
double dfm_flow_norm_ppf(double p);

#endif
