/* test_threads_bitwise.c — elementwise activations give the same bits whatever the thread count:
 * the vector kernels' tails (fewer than 8 elements at the end of each thread's range) go through
 * the same vector code, so no element depends on where the ranges are cut. Lengths chosen so the
 * cuts of 2 and 3 threads fall off multiples of 8. */
#include "test.h"
#include "tensor/ops.h"

#include <stdlib.h>
#include <string.h>

static void fill(float *p, int64_t n, uint64_t s)
{
    for (int64_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = (float)((int64_t)(s >> 40) - (1 << 23)) / (float)(1 << 20); /* [-8, 8) */
    }
}

TEST(ops_activations_threads_bitwise)
{
    const int64_t lens[] = {1000003, 262147, 99999};
    for (int li = 0; li < 3; li++) {
        int64_t n = lens[li];
        int64_t shape[1] = {n};
        dfm_tensor x = {0}, dy = {0};
        CHECK_EQ(dfm_tensor_alloc(&x, DFM_F32, DFM_CPU, 1, shape), 0);
        CHECK_EQ(dfm_tensor_alloc(&dy, DFM_F32, DFM_CPU, 1, shape), 0);
        fill(x.data, n, 1 + li), fill(dy.data, n, 7 + li);
        dfm_tensor ref[4] = {{0}}, got[4] = {{0}};
        for (int nt = 1; nt <= 3; nt++) {
            dfm_ops_set_threads(nt);
            dfm_tensor *o = nt == 1 ? ref : got;
            for (int k = 0; k < 4; k++) {
                dfm_tensor_free(&o[k]);
                CHECK_EQ(dfm_tensor_alloc(&o[k], DFM_F32, DFM_CPU, 1, shape), 0);
            }
            CHECK_EQ(dfm_op_silu(&x, &o[0]), 0);
            CHECK_EQ(dfm_op_gelu_tanh(&x, &o[1]), 0);
            CHECK_EQ(dfm_op_gelu_tanh_bwd(&dy, &x, &o[2]), 0);
            CHECK_EQ(dfm_op_silu_bwd(&dy, &x, &o[3]), 0);
            if (nt > 1)
                for (int k = 0; k < 4; k++) {
                    int same = !memcmp(ref[k].data, got[k].data, (size_t)n * sizeof(float));
                    if (!same) fprintf(stderr, "  op %d, n %lld: %d threads differ from 1\n", k, (long long)n, nt);
                    CHECK(same);
                }
        }
        for (int k = 0; k < 4; k++) dfm_tensor_free(&ref[k]), dfm_tensor_free(&got[k]);
        dfm_tensor_free(&x), dfm_tensor_free(&dy);
    }
    dfm_ops_set_threads(0);
}
