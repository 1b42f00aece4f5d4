/* test_cuda.c — the CUDA backend links and answers: device selection (dfm_cuda_ready) agrees
 * with the driver's device count, a usable device names itself, takes memory from the pool and
 * gives it back, and an error left by a failed call does not fail the next healthy one. Without
 * a device: a skip (or a failure when CUDA is broken, or under DFM_REQUIRE_CUDA=1). */
#include "test.h"
#include "tensor_util.h"

#ifdef DFM_HAVE_CUDA
#include "base/error.h"
#include "cuda/device.h"
#include "cuda/ops_cuda.h"
#include "tensor/tensor.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* cuBLAS is opened with dlopen at the first GEMM, not linked (its load alone is ~210 MB of
 * resident memory in every program): the library of the major version built against opens and
 * every entry point dfm calls resolves, with or without a GPU. */
TEST(cuda_cublas_dlopen)
{
    int rc = dfm_cuda_blas_open();
    if (rc == DFM_E_UNSUPPORTED && strstr(dfm_errmsg(), "cannot load")) {
        printf("  skip: %s\n", dfm_errmsg()); /* a CUDA build run where the toolkit's libraries are not */
        return;
    }
    CHECK_EQ(rc, 0);
    CHECK_EQ(dfm_cuda_blas_open(), 0); /* again: already open */
}

TEST(cuda_device_query)
{
    const char *why = NULL;
    int n = dfm_cuda_device_count(&why);
    CHECK(n >= 0);
    CHECK(why != NULL);
    CHECK(dfm_cuda_build_code()[0] != 0);
    int drv = -1, rt = -1;
    dfm_cuda_versions(&drv, &rt);
    CHECK(drv >= 0 && rt > 0); /* the runtime is linked in: its version is always known */
    fprintf(stderr, "  (CUDA driver %d.%d, runtime %d.%d; %d device(s) reported: %s)\n", drv / 1000, drv % 1000 / 10,
            rt / 1000, rt % 1000 / 10, n, why);
    /* the selection is decided once: asking again gives the same answer and reason */
    const char *r1 = NULL, *r2 = NULL;
    int s1 = dfm_cuda_ready(&r1), s2 = dfm_cuda_ready(&r2);
    CHECK_EQ(s1, s2);
    CHECK(r1 == r2);
    CHECK_EQ(dfm_device_available(DFM_CUDA), s1 > 0);
    if (s1 > 0) CHECK(n > 0); /* a usable device is one the driver counts */
    if (dfm_test_cuda_skip()) return;
    char name[256];
    unsigned long long mem = 0;
    CHECK_EQ(dfm_cuda_device_info(0, name, sizeof name, &mem), 0);
    CHECK(mem > 0);
    fprintf(stderr, "  (device 0: %s, %.1f GiB; this build: %s)\n", name, mem / 1073741824.0,
            dfm_cuda_build_code());
}

/* Pool memory: freed blocks come back for the next allocation of the same size, a round trip
 * through the device keeps the bytes, and releasing the scratch trims the pool without harm. */
TEST(cuda_pool_alloc_free)
{
    if (dfm_test_cuda_skip()) return;
    const int64_t n = 1 << 20;
    float *h = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) h[i] = (float)i * 0.5f;
    for (int round = 0; round < 3; round++) {
        dfm_tensor c = dfm_tensor_view(h, DFM_F32, DFM_CPU, 1, &n), g, back;
        CHECK_EQ(dfm_tensor_copy(&g, &c, DFM_CUDA), 0);
        CHECK_EQ(dfm_tensor_copy(&back, &g, DFM_CPU), 0);
        CHECK(memcmp(back.data, h, (size_t)n * sizeof(float)) == 0);
        dfm_tensor_free(&g);
        dfm_tensor_free(&back);
        if (round == 1) dfm_cuda_release_scratch();
    }
    free(h);
}

/* A non-sticky error (an allocation far too large) is reported, and the next op still runs. */
TEST(cuda_error_cleared)
{
    if (dfm_test_cuda_skip()) return;
    void *p = (void *)1;
    const char *why = NULL;
    CHECK(dfm_cuda_malloc(&p, (size_t)1 << 62, &why) < 0);
    CHECK(p == NULL);
    int64_t n = 1000;
    dfm_tensor x;
    CHECK_EQ(dfm_tensor_zeros(&x, DFM_F32, DFM_CUDA, 1, &n), 0);
    CHECK_EQ(dfm_cuda_affine(x.data, 2.0f, 1.0f, x.data, n), 0);
    dfm_tensor h;
    CHECK_EQ(dfm_tensor_copy(&h, &x, DFM_CPU), 0);
    int ok = 1;
    for (int64_t i = 0; i < n; i++) ok &= ((float *)h.data)[i] == 1.0f;
    CHECK(ok);
    dfm_tensor_free(&x);
    dfm_tensor_free(&h);
}
#endif
