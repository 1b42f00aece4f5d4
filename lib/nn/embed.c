/* embed.c — the sinusoidal timestep embedding (embed.h). */
#include "nn/embed.h"

#include <math.h>

void dfm_timestep_embedding(const float *t, int64_t B, int dim, int flip_sin_to_cos, float shift, float max_period,
                            float *out)
{
    int half = dim / 2;
    for (int64_t b = 0; b < B; b++) {
        float *o = out + b * dim;
        for (int k = 0; k < half; k++) {
            /* exponent = -math.log(max_period) * arange(half) (f32), / (half - shift), exp */
            float ex = (float)k * (float)(-log((double)max_period));
            ex = ex / ((float)half - shift);
            float a = t[b] * expf(ex);
            float sn = sinf(a), cs = cosf(a);
            o[k] = flip_sin_to_cos ? cs : sn;
            o[half + k] = flip_sin_to_cos ? sn : cs;
        }
        if (dim % 2) o[dim - 1] = 0.0f;
    }
}
