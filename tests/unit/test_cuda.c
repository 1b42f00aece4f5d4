/* test_cuda.c — the CUDA backend links and answers; device tests skip without a GPU. */
#include "test.h"

#ifdef DFM_HAVE_CUDA
#include "cuda/device.h"
TEST(cuda_device_query)
{
    const char *why = NULL;
    int n = dfm_cuda_device_count(&why);
    CHECK(n >= 0);
    CHECK(why != NULL);
    if (n == 0) {
        fprintf(stderr, "  (no CUDA device: %s; GPU checks skipped)\n", why);
        return;
    }
    char name[256];
    unsigned long long mem = 0;
    CHECK_EQ(dfm_cuda_device_info(0, name, sizeof name, &mem), 0);
    CHECK(mem > 0);
}
#endif
