/* conv.h — the causal 3-D convolution layer of the Wan VAE and its feature cache.
 *
 * A causal conv pads time only in front (causal_front zero frames, twice the reference's time
 * padding) and space symmetrically (pad_h, pad_w), or — the stride-2 downsample — by one zero
 * row and column at the bottom and right (pad_br: ZeroPad2d((0, 1, 0, 1))). Decoding and
 * encoding run chunk by chunk (1 frame, then 4 at a time); the feature cache carries the last
 * (up to) 2 input frames of each conv call site from one chunk to the next, and a cached conv puts
 * them in front of its input in place of the zero frames. The cache is a sequence of slots
 * visited in call order (the reference's feat_cache / feat_idx): dfm_conv_cache_rewind() before
 * each chunk, then every call site takes the next slot.
 *
 * Activations are [C, T, H, W] F32 (batch 1). Precision: the compute context of the call (a BF16
 * context rounds the conv's inputs to bf16, f32 accumulation; tensor/compute.h).
 * Forward only: the VAE is frozen in every workflow. A backward would take the layer's gradient
 * struct {w, b} and the padded input (cache frames included) as its activation; it is not
 * implemented.
 * ref: diffusers autoencoder_kl_wan.py WanCausalConv3d (and WanResample's ZeroPad2d((0, 1, 0, 1)));
 *      the feat_cache logic of WanResidualBlock / WanEncoder3d / WanDecoder3d
 * Not here: the resample and residual blocks themselves (models/wan/vae.c), weight loading.
 */
#ifndef DFM_NN_CONV_H
#define DFM_NN_CONV_H
#include <stdint.h>
#include "tensor/compute.h"
#include "tensor/tensor.h"

/* Parameters. w, b are owned by the layer (dfm_causal_conv_free frees them). */
typedef struct {
    dfm_tensor w;           /* [cout, cin, kt, kh, kw] F32/BF16/F16 */
    dfm_tensor b;           /* [cout] F32, or data NULL: no bias */
    int cin, cout, kt, kh, kw;
    int causal_front;       /* zero frames in front (2 * the reference's time padding); 0: none */
    int pad_h, pad_w;       /* zero rows/columns on both sides */
    int pad_br;             /* 1: instead one zero row at the bottom and one column at the right */
    int stride[3];          /* t, h, w */
} dfm_causal_conv;

/* Set up the geometry of a layer with stride 1 and no padding (set the fields after); w and b
 * are left empty for the caller to fill. */
void dfm_causal_conv_init(dfm_causal_conv *c, int cin, int cout, int kt, int kh, int kw);
void dfm_causal_conv_free(dfm_causal_conv *c);

/* The output shape [cout, T', H', W'] for an input x [cin, T, H, W] (with full causal padding; a
 * cached call has the same shape). */
void dfm_causal_conv_out_shape(const dfm_causal_conv *c, const dfm_tensor *x, int64_t out[4]);

/* y = conv(x) with prev's frames [cin, tp, H, W] in front of x in place of tp of the zero frames
 * (prev NULL, or causal_front 0: plain zero padding; tp <= causal_front). y: allocated by the
 * call ([cout, T', H', W'] F32 on x's device, owned by the caller). ref: WanCausalConv3d.forward */
int dfm_causal_conv_forward(const dfm_compute *cc, const dfm_causal_conv *c, const dfm_tensor *x,
                            const dfm_tensor *prev, dfm_tensor *y);

/* ---- the feature cache ----------------------------------------------------------------------- */

enum { DFM_CONV_SLOT_NONE, DFM_CONV_SLOT_REP, DFM_CONV_SLOT_FRAMES };
typedef struct {
    int state;    /* NONE: first chunk; REP: the "Rep" marker of a first upsample; FRAMES: t holds frames */
    dfm_tensor t; /* [C, <= 2, H, W] F32, owned */
} dfm_conv_slot;

typedef struct {
    dfm_conv_slot *slots;
    int n, cap, idx; /* slots in use, allocated, the next one to visit */
} dfm_conv_cache;

/* Start a chunk: the next call site takes slot 0. */
void dfm_conv_cache_rewind(dfm_conv_cache *k);
/* The next slot in call order (a new, empty one the first time round); owned by the cache. */
int dfm_conv_cache_slot(dfm_conv_cache *k, dfm_conv_slot **s);
void dfm_conv_cache_free(dfm_conv_cache *k);
/* The frames slot s holds after a call on x: x's last 2 frames, or with a 1-frame x that frame
 * after the slot's last one (a zero frame instead when the slot is REP and rep_zeros).
 * out: allocated, owned by the caller. ref: the cache_x lines of WanResidualBlock.forward /
 * WanResample.forward */
int dfm_conv_cache_next(const dfm_tensor *x, const dfm_conv_slot *s, int rep_zeros, dfm_tensor *out);

/* A cached call site: y = conv(x) with the slot's frames in front, then the slot takes the next
 * frames (dfm_conv_cache_next). y: allocated by the call. */
int dfm_causal_conv_forward_cached(const dfm_compute *cc, const dfm_causal_conv *c, const dfm_tensor *x,
                                   dfm_conv_cache *k, dfm_tensor *y);

#endif
