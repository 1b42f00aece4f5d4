/* tensor_util.c — see tensor_util.h. */
#include "tensor_util.h"
#include "test.h"
#include "base/buf.h"
#include "base/error.h"
#include "io/npy.h"
#ifdef DFM_HAVE_CUDA
#include "cuda/device.h"
#endif

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int dfm_test_load_npy(const char *dir, const char *name, dfm_tensor *t, int quiet)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat st;
    if (quiet && stat(path, &st) != 0) return -1;
    dfm_buf b = {0};
    if (dfm_read_file(path, 0, &b) < 0) {
        fprintf(stderr, "  cannot read %s: %s\n", path, dfm_errmsg());
        return -1;
    }
    dfm_npy a;
    int rc = dfm_npy_parse(b.data, b.len, &a);
    dfm_dtype dt = DFM_F32;
    if (!rc && a.dtype == DFM_NPY_I32) dt = DFM_I32;
    else if (!rc && a.dtype != DFM_NPY_F32) rc = -1;
    if (!rc) rc = dfm_tensor_alloc(t, dt, DFM_CPU, a.ndim, a.shape);
    if (!rc) memcpy(t->data, a.data, a.nbytes);
    dfm_buf_free(&b);
    if (rc) fprintf(stderr, "  cannot load %s\n", path);
    return rc;
}

double dfm_test_max_abs_diff(const dfm_tensor *a, const dfm_tensor *b)
{
    if (a->ndim != b->ndim) return 1e30;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 1e30;
    double m = 0;
    const float *p = a->data, *q = b->data;
    for (int64_t i = 0; i < dfm_tensor_numel(a); i++) {
        double d = fabs((double)p[i] - q[i]);
        if (!(d <= m)) m = d; /* NaN propagates as a failure */
    }
    return m;
}

int dfm_test_is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

int dfm_test_cuda_skip(void)
{
    const char *req = getenv("DFM_REQUIRE_CUDA");
    int required = req && *req && strcmp(req, "0") != 0;
#ifdef DFM_HAVE_CUDA
    const char *why = NULL;
    int st = dfm_cuda_ready(&why);
    if (st > 0) return 0;
    if (st < 0) {
        fprintf(stderr, "  CUDA is here but unusable: %s\n", why);
#ifdef UNDER_ASAN
        const char *ao = getenv("ASAN_OPTIONS");
        if (!ao || !strstr(ao, "protect_shadow_gap=0"))
            fprintf(stderr, "  (this is an ASan build: CUDA needs ASAN_OPTIONS=protect_shadow_gap=0; tests/run.sh sets it)\n");
#endif
        dfm_test_failures++;
        return 1;
    }
#else
    const char *why = "this build has no CUDA backend (nvcc was not found at build time)";
#endif
    if (required) {
        fprintf(stderr, "  no CUDA device (%s), but DFM_REQUIRE_CUDA=%s demands one\n", why, req);
        dfm_test_failures++;
        return 1;
    }
    fprintf(stderr, "  (no CUDA device: %s; skipped)\n", why);
    return 1;
}
