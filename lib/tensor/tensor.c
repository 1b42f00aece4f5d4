/* tensor.c — allocation, views, copies and dtype conversion of dfm_tensor (tensor.h).
 * CPU storage is 64-byte aligned; CUDA storage goes through kernels/cuda/device.h (the device's
 * stream-ordered pool: a free is queued after the work that may still use the memory, and the
 * memory is reused by the next allocation; dfm_ops_release_scratch gives it back to the driver)
 * and only exists in builds with DFM_HAVE_CUDA. Not here: compute (ops.c). */
#include "tensor/tensor.h"
#include "base/error.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef DFM_HAVE_CUDA
#include "cuda/device.h"
#include "cuda/ops_cuda.h"
#endif

int64_t dfm_tensor_numel(const dfm_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t dfm_tensor_nbytes(const dfm_tensor *t) { return (size_t)dfm_tensor_numel(t) * dfm_dtype_size(t->dtype); }

static const char *dev_name(dfm_device d) { return d == DFM_CPU ? "cpu" : d == DFM_CUDA ? "cuda" : "?"; }

const char *dfm_tensor_str(const dfm_tensor *t, char *buf, size_t n)
{
    if (!n) return buf;
    size_t k = 0;
    buf[0] = 0;
    k += snprintf(buf + k, k < n ? n - k : 0, "[");
    for (int i = 0; i < t->ndim && k < n; i++)
        k += snprintf(buf + k, n - k, "%s%lld", i ? "," : "", (long long)t->shape[i]);
    if (k < n) snprintf(buf + k, n - k, "] %s %s", dfm_dtype_name(t->dtype), dev_name(t->device));
    return buf;
}

/* Checks a shape and computes its byte size; 0 or DFM_E_ARG. */
static int check_shape(dfm_dtype dtype, dfm_device dev, int ndim, const int64_t *shape, size_t *bytes)
{
    size_t es = dfm_dtype_size(dtype);
    if (!es) return dfm_fail(DFM_E_ARG, "tensor: unknown dtype %d", (int)dtype);
    if (dev != DFM_CPU && dev != DFM_CUDA) return dfm_fail(DFM_E_ARG, "tensor: unknown device %d", (int)dev);
    if (ndim < 0 || ndim > DFM_MAX_DIMS)
        return dfm_fail(DFM_E_ARG, "tensor: %d dimensions (at most %d)", ndim, DFM_MAX_DIMS);
    size_t n = es;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return dfm_fail(DFM_E_ARG, "tensor: negative size %lld in dimension %d", (long long)shape[i], i);
        if (shape[i] && n > (SIZE_MAX / 2) / (size_t)shape[i])
            return dfm_fail(DFM_E_LIMIT, "tensor: shape too large");
        n *= (size_t)shape[i];
    }
    *bytes = n;
    return 0;
}

/* ---- the CPU block cache -----------------------------------------------------------------------
 * Freed CPU blocks of CACHE_MIN bytes or more are kept and handed to the next request of the same
 * rounded size: a training step allocates the same sizes every step, and a fresh block costs a
 * page fault per 4 KiB page (measured: 14% of a LoRA step at the 1.3B width without this).
 * The peak does not grow: a request no cached block fits frees every cached block before the new
 * one is allocated, so the memory held (in use + cached) only ever grows at such a miss, and then
 * to what it would be without a cache; between misses, a hit moves a block from cached to in use
 * and a free moves it back. A repeating step hits every time once its first run is done. The cache
 * holds at most g_cache_limit bytes (the oldest blocks go first; a larger block is not kept). */
#define CACHE_MIN ((size_t)1 << 20)
#define CACHE_SLOTS 256
#if defined(__SANITIZE_ADDRESS__)
#define DEFAULT_CACHE_MB 0ull /* AddressSanitizer must see every free to find a use after it */
#else
#define DEFAULT_CACHE_MB 2048ull
#endif

static pthread_mutex_t g_cache_mu = PTHREAD_MUTEX_INITIALIZER;
static struct { void *p; size_t bytes; } g_cache[CACHE_SLOTS];
static int g_cache_n;        /* slots in use, oldest first */
static size_t g_cache_bytes; /* their total */
static size_t g_cache_limit = (size_t)-1; /* -1: not read from the environment yet */

static size_t round_block(size_t bytes) { return (bytes + 4095) & ~(size_t)4095; }

static void cache_limit_init(void) /* under the lock */
{
    if (g_cache_limit != (size_t)-1) return;
    const char *e = getenv("DFM_CPU_CACHE_MB");
    char *end = NULL;
    unsigned long long mb = e && *e ? strtoull(e, &end, 10) : DEFAULT_CACHE_MB;
    if (e && *e && (!end || *end)) mb = DEFAULT_CACHE_MB;
    g_cache_limit = (size_t)mb << 20;
}

static void cache_drop(int i) /* under the lock: remove slot i (free it) */
{
    free(g_cache[i].p);
    g_cache_bytes -= g_cache[i].bytes;
    memmove(&g_cache[i], &g_cache[i + 1], (size_t)(g_cache_n - i - 1) * sizeof g_cache[0]);
    g_cache_n--;
}

static void *cache_take(size_t bytes)
{
    void *p = NULL;
    pthread_mutex_lock(&g_cache_mu);
    cache_limit_init();
    for (int i = g_cache_n - 1; i >= 0; i--) /* newest first: likeliest still in cache */
        if (g_cache[i].bytes == bytes) {
            p = g_cache[i].p;
            g_cache_bytes -= bytes;
            memmove(&g_cache[i], &g_cache[i + 1], (size_t)(g_cache_n - i - 1) * sizeof g_cache[0]);
            g_cache_n--;
            break;
        }
    /* a miss empties the cache before the new block is allocated: what the process holds then is
     * what it would hold without a cache, so the cache never raises the peak */
    while (!p && g_cache_n) cache_drop(g_cache_n - 1);
    pthread_mutex_unlock(&g_cache_mu);
    return p;
}

/* 1: kept (the caller must not free it) */
static int cache_put(void *p, size_t bytes)
{
    int kept = 0;
    pthread_mutex_lock(&g_cache_mu);
    cache_limit_init();
    if (bytes <= g_cache_limit) {
        while (g_cache_n && (g_cache_n == CACHE_SLOTS || g_cache_bytes + bytes > g_cache_limit)) cache_drop(0);
        g_cache[g_cache_n].p = p, g_cache[g_cache_n].bytes = bytes;
        g_cache_n++;
        g_cache_bytes += bytes;
        kept = 1;
    }
    pthread_mutex_unlock(&g_cache_mu);
    return kept;
}

void dfm_tensor_cache_release(void)
{
    pthread_mutex_lock(&g_cache_mu);
    while (g_cache_n) cache_drop(g_cache_n - 1);
    pthread_mutex_unlock(&g_cache_mu);
}

size_t dfm_tensor_cache_bytes(void)
{
    pthread_mutex_lock(&g_cache_mu);
    size_t b = g_cache_bytes;
    pthread_mutex_unlock(&g_cache_mu);
    return b;
}

size_t dfm_tensor_cache_set_limit(size_t bytes)
{
    pthread_mutex_lock(&g_cache_mu);
    cache_limit_init();
    size_t old = g_cache_limit;
    g_cache_limit = bytes == (size_t)-1 ? bytes - 1 : bytes;
    while (g_cache_n && g_cache_bytes > g_cache_limit) cache_drop(0);
    pthread_mutex_unlock(&g_cache_mu);
    return old;
}

static int dev_alloc(void **p, size_t bytes, dfm_device dev)
{
    if (bytes == 0) bytes = 64; /* never NULL data for an empty tensor */
    if (dev == DFM_CPU) {
        size_t rb = bytes >= CACHE_MIN ? round_block(bytes) : (bytes + 63) & ~(size_t)63;
        if (rb >= CACHE_MIN && (*p = cache_take(rb))) return 0;
        if (posix_memalign(p, 64, rb)) {
            dfm_tensor_cache_release(); /* what the cache holds may be what is missing */
            if (posix_memalign(p, 64, rb)) return dfm_fail(DFM_E_NOMEM, "tensor: out of memory for %zu bytes", bytes);
        }
        return 0;
    }
#ifdef DFM_HAVE_CUDA
    int rc = dfm_cuda_malloc(p, bytes, NULL); /* selects the device on first use */
    if (rc < 0) return dfm_fail_ctx(rc, "tensor: cannot allocate %zu bytes on the GPU", bytes);
    return 0;
#else
    return dfm_fail(DFM_E_UNSUPPORTED, "tensor: this build has no CUDA support");
#endif
}

/* bytes: the tensor's size now (never more than was allocated: a reshape keeps it, nothing grows it) */
static void dev_free(void *p, size_t bytes, dfm_device dev)
{
    if (dev == DFM_CPU) {
        if (p && bytes >= CACHE_MIN && cache_put(p, round_block(bytes))) return;
        free(p);
    }
#ifdef DFM_HAVE_CUDA
    else if (p) dfm_cuda_free(p);
#endif
}

int dfm_tensor_alloc(dfm_tensor *t, dfm_dtype dtype, dfm_device dev, int ndim, const int64_t *shape)
{
    size_t bytes = 0;
    memset(t, 0, sizeof *t);
    int rc = check_shape(dtype, dev, ndim, shape, &bytes);
    if (rc < 0) return rc;
    void *p = NULL;
    if ((rc = dev_alloc(&p, bytes, dev)) < 0) return rc;
    t->dtype = dtype;
    t->device = dev;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->data = p;
    t->owned = 1;
    return 0;
}

int dfm_tensor_zero(dfm_tensor *t)
{
    size_t bytes = dfm_tensor_nbytes(t);
    if (!bytes) return 0;
    if (t->device == DFM_CPU) {
        memset(t->data, 0, bytes);
        return 0;
    }
#ifdef DFM_HAVE_CUDA
    const char *why = NULL;
    if (dfm_cuda_memset0(t->data, bytes, &why)) return dfm_fail(DFM_E_IO, "tensor: cudaMemset failed: %s", why ? why : "?");
    return 0;
#else
    return dfm_fail(DFM_E_UNSUPPORTED, "tensor: built without CUDA");
#endif
}

int dfm_tensor_zeros(dfm_tensor *t, dfm_dtype dtype, dfm_device dev, int ndim, const int64_t *shape)
{
    int rc = dfm_tensor_alloc(t, dtype, dev, ndim, shape);
    if (rc < 0) return rc;
    if ((rc = dfm_tensor_zero(t))) dfm_tensor_free(t);
    return rc;
}

dfm_tensor dfm_tensor_view(void *data, dfm_dtype dtype, dfm_device dev, int ndim, const int64_t *shape)
{
    dfm_tensor t;
    memset(&t, 0, sizeof t);
    DFM_ASSERT(ndim >= 0 && ndim <= DFM_MAX_DIMS);
    t.dtype = dtype;
    t.device = dev;
    t.ndim = ndim;
    for (int i = 0; i < ndim; i++) t.shape[i] = shape[i];
    t.data = data;
    return t;
}

dfm_tensor dfm_tensor_slice0(const dfm_tensor *t, int64_t start, int64_t n)
{
    DFM_ASSERT(t->ndim >= 1 && start >= 0 && n >= 0 && start + n <= t->shape[0]);
    dfm_tensor s = *t;
    s.owned = 0;
    s.shape[0] = n;
    size_t row = dfm_dtype_size(t->dtype);
    for (int i = 1; i < t->ndim; i++) row *= (size_t)t->shape[i];
    s.data = (char *)t->data + (size_t)start * row;
    return s;
}

void dfm_tensor_free(dfm_tensor *t)
{
    if (!t) return;
    if (t->owned) dev_free(t->data, dfm_tensor_nbytes(t), t->device);
    memset(t, 0, sizeof *t);
}

int dfm_tensor_copy(dfm_tensor *dst, const dfm_tensor *src, dfm_device dev)
{
    dfm_tensor s = *src;
    int rc = dfm_tensor_alloc(dst, s.dtype, dev, s.ndim, s.shape);
    if (rc < 0) return rc;
    size_t bytes = dfm_tensor_nbytes(&s);
    if (!bytes) return 0;
    if (s.device == DFM_CPU && dev == DFM_CPU) {
        memcpy(dst->data, s.data, bytes);
        return 0;
    }
#ifdef DFM_HAVE_CUDA
    const char *why = NULL;
    int kind = s.device == DFM_CPU ? 0 : dev == DFM_CPU ? 1 : 2;
    if (dfm_cuda_memcpy(dst->data, s.data, bytes, kind, &why)) {
        dfm_tensor_free(dst);
        return dfm_fail(DFM_E_IO, "tensor: copy to %s failed: %s", dev_name(dev), why ? why : "?");
    }
    return 0;
#else
    dfm_tensor_free(dst);
    return dfm_fail(DFM_E_UNSUPPORTED, "tensor: this build has no CUDA support");
#endif
}

int dfm_tensor_convert(dfm_tensor *dst, const dfm_tensor *src)
{
    char a[128], b[128];
    if (dfm_tensor_numel(dst) != dfm_tensor_numel(src) || dst->device != src->device)
        return dfm_fail(DFM_E_ARG, "tensor convert: %s into %s: numel or device differ",
                        dfm_tensor_str(src, a, sizeof a), dfm_tensor_str(dst, b, sizeof b));
    int64_t n = dfm_tensor_numel(src);
    if (dst->dtype == src->dtype) {
        if (!n || dst->data == src->data) return 0;
        if (src->device == DFM_CPU) {
            memmove(dst->data, src->data, dfm_tensor_nbytes(src));
            return 0;
        }
    }
    int ok_src = src->dtype == DFM_F32 || src->dtype == DFM_BF16 || src->dtype == DFM_F16 ||
                 src->dtype == DFM_U8;
    int ok_dst = dst->dtype == DFM_F32 || dst->dtype == DFM_BF16 || dst->dtype == DFM_F16;
    if (!ok_src || !ok_dst)
        return dfm_fail(DFM_E_UNSUPPORTED, "tensor convert: %s into %s: unsupported dtypes",
                        dfm_tensor_str(src, a, sizeof a), dfm_tensor_str(dst, b, sizeof b));
    if (src->device == DFM_CPU) return dfm_convert_floats(dst->data, dst->dtype, src->data, src->dtype, n);
#ifdef DFM_HAVE_CUDA
    return dfm_cuda_convert(dst->data, dst->dtype, src->data, src->dtype, n);
#else
    return dfm_fail(DFM_E_UNSUPPORTED, "tensor: this build has no CUDA support");
#endif
}

int dfm_tensor_reshape(dfm_tensor *t, int ndim, const int64_t *shape)
{
    char a[128];
    if (ndim < 0 || ndim > DFM_MAX_DIMS)
        return dfm_fail(DFM_E_ARG, "tensor reshape: %d dimensions (at most %d)", ndim, DFM_MAX_DIMS);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return dfm_fail(DFM_E_ARG, "tensor reshape: negative size");
        n *= shape[i];
    }
    if (n != dfm_tensor_numel(t))
        return dfm_fail(DFM_E_ARG, "tensor reshape: %s has %lld elements, the new shape %lld",
                        dfm_tensor_str(t, a, sizeof a), (long long)dfm_tensor_numel(t), (long long)n);
    t->ndim = ndim;
    for (int i = 0; i < DFM_MAX_DIMS; i++) t->shape[i] = i < ndim ? shape[i] : 0;
    return 0;
}
