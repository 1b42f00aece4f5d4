/* mlp.h — the feed-forward layer of a DiT block, forward and backward: fc1, GELU (tanh
 * approximation), fc2, each linear with bias and LoRA-capable.
 * x, y: [M, dim] token rows; the hidden layer is [M, ffn_dim].
 * ref: diffusers attention.py FeedForward(activation_fn="gelu-approximate") as WanTransformerBlock
 *      builds it (ffn.net.0.proj, GELU(approximate="tanh"), ffn.net.2)
 * Not here: the gated-GELU of T5 (nn/t5.h).
 */
#ifndef DFM_NN_MLP_H
#define DFM_NN_MLP_H
#include <stdint.h>
#include "nn/linear.h"

typedef struct {
    dfm_linear fc1, fc2;
} dfm_mlp;

typedef struct {
    dfm_linear_grads fc1, fc2;
} dfm_mlp_grads;

typedef struct {
    dfm_linear_acts fc1, fc2;
    dfm_tensor h, g; /* fc1's output (GELU's input) and GELU's output (fc2's input), owned */
} dfm_mlp_acts;

/* y = fc2(gelu_tanh(fc1(x))); acts NULL: inference. LoRA dropout streams: stream * 8 + 4 (fc1), + 5 (fc2), apart
 * from an attention layer given the same stream (which uses stream * 8 + 0..3). */
int dfm_mlp_forward(const dfm_compute *cc, const dfm_mlp *f, const dfm_tensor *x, dfm_tensor *y, dfm_mlp_acts *acts,
                    uint64_t seed, uint64_t stream);
/* dx written (NULL: not wanted), gradients accumulated (g NULL: none). */
int dfm_mlp_backward(const dfm_compute *cc, const dfm_mlp *f, const dfm_mlp_acts *acts, const dfm_tensor *dy,
                     dfm_tensor *dx, dfm_mlp_grads *g);
void dfm_mlp_acts_free(dfm_mlp_acts *a);
void dfm_mlp_free(dfm_mlp *f);

#endif
