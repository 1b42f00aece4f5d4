/* test_nn_embed.c — the sinusoidal timestep embedding (nn/embed.h) against the formula in double:
 * both halves' order (flip_sin_to_cos), a shift, an odd dimension's zero column; within 2e-4
 * absolute (the argument t * freq is an f32 product, as torch's: at t = 999 its rounding alone is
 * up to 6e-5 radians). The
 * Wan configuration is also checked end to end by test_wan_transformer.c. */
#include "test.h"
#include "nn/embed.h"

#include <math.h>

TEST(nn_timestep_embedding)
{
    const float t[3] = {0.0f, 417.3f, 999.0f};
    const struct {
        int dim, flip;
        float shift;
    } cases[] = {{256, 1, 0.0f}, {32, 0, 1.0f}, {7, 1, 0.0f}};
    for (int c = 0; c < 3; c++) {
        int dim = cases[c].dim, half = dim / 2;
        float out[3 * 256];
        dfm_timestep_embedding(t, 3, dim, cases[c].flip, cases[c].shift, 10000.0f, out);
        double worst = 0;
        for (int b = 0; b < 3; b++) {
            for (int k = 0; k < half; k++) {
                double f = exp(-log(10000.0) * k / (half - cases[c].shift)), a = t[b] * f;
                double first = cases[c].flip ? cos(a) : sin(a), second = cases[c].flip ? sin(a) : cos(a);
                worst = fmax(worst, fabs(out[b * dim + k] - first));
                worst = fmax(worst, fabs(out[b * dim + half + k] - second));
            }
            if (dim % 2) CHECK(out[b * dim + dim - 1] == 0.0f);
        }
        if (!(worst < 2e-4)) fprintf(stderr, "  dim %d flip %d: worst %.2e\n", dim, cases[c].flip, worst);
        CHECK(worst < 2e-4);
    }
    float z[4];
    dfm_timestep_embedding(t, 1, 4, 1, 0.0f, 10000.0f, z); /* t = 0: cos 1, sin 0 */
    CHECK(z[0] == 1.0f && z[1] == 1.0f && z[2] == 0.0f && z[3] == 0.0f);
}
