/* norm.h — normalization layers, forward and backward: layer norm (with or without affine, Wan's
 * norm1/norm2/norm3 and output norm) and RMS norm over the last dimension (T5's layer norm, and
 * torch.nn.RMSNorm over all heads together: Wan's norm_q / norm_k "rms_norm_across_heads").
 * Each is a parameter struct, its activations (what the backward needs) and forward/backward
 * calls over the op table (tensor/ops.h). Norms compute in f32 whatever the compute context.
 * And the Wan VAE's RMS norm over channels (forward only: the VAE is frozen).
 * ref: torch.nn.LayerNorm, torch.nn.RMSNorm; transformers T5LayerNorm; diffusers WanRMS_norm
 */
#ifndef DFM_NN_NORM_H
#define DFM_NN_NORM_H
#include "tensor/tensor.h"

typedef struct {
    dfm_tensor w, b; /* [d] float, or data NULL: no affine (each independently) */
    float eps;
} dfm_layer_norm;

typedef struct {
    dfm_tensor x;          /* view of the forward's input (kept unchanged by the caller) */
    dfm_tensor mean, rstd; /* [rows] F32, owned */
} dfm_layer_norm_acts;

/* y = layer_norm(x) over the last dim; x, y [..., d] F32 (y may be x only when acts is NULL). */
int dfm_layer_norm_forward(const dfm_layer_norm *n, const dfm_tensor *x, dfm_tensor *y, dfm_layer_norm_acts *acts);
/* dx written (may be dy; NULL: not wanted); dw, db accumulated (NULL: not wanted). */
int dfm_layer_norm_backward(const dfm_layer_norm *n, const dfm_layer_norm_acts *a, const dfm_tensor *dy,
                            dfm_tensor *dx, dfm_tensor *dw, dfm_tensor *db);
void dfm_layer_norm_acts_free(dfm_layer_norm_acts *a);

typedef struct {
    dfm_tensor w; /* [d] float */
    float eps;
} dfm_rms_norm;

typedef struct {
    dfm_tensor x;   /* view of the forward's input */
    dfm_tensor inv; /* [rows] F32, owned */
} dfm_rms_norm_acts;

int dfm_rms_norm_forward(const dfm_rms_norm *n, const dfm_tensor *x, dfm_tensor *y, dfm_rms_norm_acts *acts);
int dfm_rms_norm_backward(const dfm_rms_norm *n, const dfm_rms_norm_acts *a, const dfm_tensor *dy, dfm_tensor *dx,
                          dfm_tensor *dw);
void dfm_rms_norm_acts_free(dfm_rms_norm_acts *a);

/* The Wan VAE's RMS norm over channels (channels-first activations):
 *   y[c, i] = x[c, i] / max(||x[:, i]||_2, 1e-12) * sqrt(C) * gamma[c] (+ bias[c])
 * No eps inside the root (F.normalize's clamp instead). Forward only: the backward is not
 * implemented (it would accumulate into a {gamma, bias} gradient struct).
 * ref: diffusers autoencoder_kl_wan.py WanRMS_norm */
typedef struct {
    dfm_tensor gamma; /* [C] float */
    dfm_tensor bias;  /* [C] float, or data NULL: none (Wan's VAE has none) */
} dfm_rms_norm_channels;

/* x, y: [C, ...] F32 of one shape, allocated by the caller (y may be x). */
int dfm_rms_norm_channels_forward(const dfm_rms_norm_channels *n, const dfm_tensor *x, dfm_tensor *y);

#endif
