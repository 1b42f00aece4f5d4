/* norm.h — normalization layers, forward and backward: layer norm (with or without affine, Wan's
 * norm1/norm2/norm3 and output norm) and RMS norm over the last dimension (T5's layer norm, and
 * torch.nn.RMSNorm over all heads together: Wan's norm_q / norm_k "rms_norm_across_heads").
 * Each is a parameter struct, its activations (what the backward needs) and forward/backward
 * calls over the op table (tensor/ops.h). Norms compute in f32 whatever the compute context.
 * Not here: the VAE's channel RMS norm (its layer is the VAE's; dfm_op_rms_norm_channels).
 * ref: torch.nn.LayerNorm, torch.nn.RMSNorm; transformers T5LayerNorm
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

#endif
