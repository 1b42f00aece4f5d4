/* cpu.c — threads, parallel loops, scratch and SIMD level (cpuid + xgetbv) shared by the CPU kernels (cpu.h).
 * Not here: any op; those live one per file beside this one. */
#include "cpu/cpu.h"
#include "base/error.h"

#include <cblas.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define DFM_CPU_X86 1
#endif

#define MAX_THREADS 64

/* ---- threads ----------------------------------------------------------------------------- */

static int g_threads; /* 0: not set, all cores */

static int online_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : (int)n;
}

void dfm_cpu_set_threads(int n)
{
    if (n <= 0) n = online_cores();
    if (n > MAX_THREADS) n = MAX_THREADS;
    g_threads = n;
    openblas_set_num_threads(n);
}

int dfm_cpu_threads(void) { return g_threads > 0 ? g_threads : online_cores(); }

int dfm_cpu_blas_single(void)
{
    int n = openblas_get_num_threads();
    if (n != 1) openblas_set_num_threads(1);
    return n;
}

void dfm_cpu_blas_restore(int n)
{
    if (n != 1) openblas_set_num_threads(n);
}

typedef struct {
    dfm_cpu_range_fn fn;
    void *ctx;
    int64_t i0, i1;
} range_job;

static void *range_thread(void *arg)
{
    range_job *j = arg;
    j->fn(j->ctx, j->i0, j->i1);
    return NULL;
}

/* The pool: workers started on first need and kept, so that a loop costs a wake-up (~5 us), not a
 * thread start (~20-50 us), and each worker keeps its scratch across calls instead of allocating
 * (and page-faulting) it anew. Worker w always runs range w + 1 of a loop, the caller range 0.
 * One loop at a time: a loop started while another runs (from a second application thread)
 * starts its own threads as before; a loop started from inside a range runs inline. */
static pthread_mutex_t g_pool_run = PTHREAD_MUTEX_INITIALIZER; /* held by the loop using the pool */
static pthread_mutex_t g_pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_pool_go = PTHREAD_COND_INITIALIZER, g_pool_done = PTHREAD_COND_INITIALIZER;
static range_job g_pool_jobs[MAX_THREADS];
static int g_pool_workers;   /* started */
static int g_pool_active;    /* workers taking part in the current loop */
static int g_pool_pending;   /* of those, not finished */
static uint64_t g_pool_gen;  /* loop number */
static int g_pool_quit;
static _Thread_local int t_in_range; /* this thread is running a range of a loop */

static void *pool_worker(void *arg)
{
    int w = (int)(intptr_t)arg;
    uint64_t seen = 0;
    t_in_range = 1;
    pthread_mutex_lock(&g_pool_mu);
    for (;;) {
        while (!g_pool_quit && (g_pool_gen == seen || w >= g_pool_active)) {
            if (g_pool_gen != seen) seen = g_pool_gen; /* a loop without this worker */
            pthread_cond_wait(&g_pool_go, &g_pool_mu);
        }
        if (g_pool_quit) break;
        seen = g_pool_gen;
        range_job j = g_pool_jobs[w + 1];
        pthread_mutex_unlock(&g_pool_mu);
        j.fn(j.ctx, j.i0, j.i1);
        pthread_mutex_lock(&g_pool_mu);
        if (--g_pool_pending == 0) pthread_cond_signal(&g_pool_done);
    }
    pthread_mutex_unlock(&g_pool_mu);
    return NULL;
}

static pthread_t g_pool_tid[MAX_THREADS];

/* At exit: stop the workers so that their scratch is freed (thread-exit destructors). */
static void pool_shutdown(void)
{
    pthread_mutex_lock(&g_pool_mu);
    g_pool_quit = 1;
    pthread_cond_broadcast(&g_pool_go);
    int n = g_pool_workers;
    pthread_mutex_unlock(&g_pool_mu);
    for (int w = 0; w < n; w++) pthread_join(g_pool_tid[w], NULL);
    g_pool_workers = 0;
}

/* A forked child has none of the parent's workers: start from an empty pool. */
static void pool_atfork_child(void)
{
    pthread_mutex_init(&g_pool_run, NULL);
    pthread_mutex_init(&g_pool_mu, NULL);
    pthread_cond_init(&g_pool_go, NULL);
    pthread_cond_init(&g_pool_done, NULL);
    g_pool_workers = g_pool_active = g_pool_pending = 0;
    t_in_range = 0;
}

static pthread_once_t g_pool_once = PTHREAD_ONCE_INIT;
static void pool_init(void)
{
    atexit(pool_shutdown);
    pthread_atfork(NULL, NULL, pool_atfork_child);
}

/* Starts workers up to `want`; returns how many there are (under g_pool_run). */
static int pool_grow(int want)
{
    pthread_once(&g_pool_once, pool_init);
    while (g_pool_workers < want) {
        if (pthread_create(&g_pool_tid[g_pool_workers], NULL, pool_worker, (void *)(intptr_t)g_pool_workers)) break;
        g_pool_workers++;
    }
    return g_pool_workers;
}

static void parallel_spawn(range_job *jobs, int nt)
{
    pthread_t tid[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    for (int t = 1; t < nt; t++)
        started[t] = pthread_create(&tid[t], NULL, range_thread, &jobs[t]) == 0;
    t_in_range = 1;
    jobs[0].fn(jobs[0].ctx, jobs[0].i0, jobs[0].i1);
    for (int t = 1; t < nt; t++) {
        if (started[t])
            pthread_join(tid[t], NULL);
        else
            jobs[t].fn(jobs[t].ctx, jobs[t].i0, jobs[t].i1);
    }
    t_in_range = 0;
}

/* Runs jobs[0..nt) with jobs[t] on worker t - 1 and jobs[0] on the caller (g_pool_run held). */
static void pool_run(range_job *jobs, int nt)
{
    int have = pool_grow(nt - 1), active = have < nt - 1 ? have : nt - 1;
    pthread_mutex_lock(&g_pool_mu);
    for (int t = 1; t <= active; t++) g_pool_jobs[t] = jobs[t];
    g_pool_active = g_pool_pending = active;
    g_pool_gen++;
    pthread_cond_broadcast(&g_pool_go);
    pthread_mutex_unlock(&g_pool_mu);
    t_in_range = 1;
    jobs[0].fn(jobs[0].ctx, jobs[0].i0, jobs[0].i1);
    for (int t = active + 1; t < nt; t++) jobs[t].fn(jobs[t].ctx, jobs[t].i0, jobs[t].i1); /* workers that did not start */
    t_in_range = 0;
    pthread_mutex_lock(&g_pool_mu);
    while (g_pool_pending) pthread_cond_wait(&g_pool_done, &g_pool_mu);
    pthread_mutex_unlock(&g_pool_mu);
}

void dfm_cpu_parallel(int64_t n, int64_t min_chunk, dfm_cpu_range_fn fn, void *ctx)
{
    if (n <= 0) return;
    if (min_chunk < 1) min_chunk = 1;
    int64_t nt = dfm_cpu_threads();
    if (nt > n / min_chunk) nt = n / min_chunk;
    if (nt <= 1 || t_in_range) {
        fn(ctx, 0, n);
        return;
    }
    range_job jobs[MAX_THREADS];
    for (int t = 0; t < nt; t++)
        jobs[t] = (range_job){fn, ctx, n * t / nt, n * (t + 1) / nt};
    if (pthread_mutex_trylock(&g_pool_run)) { /* another application thread holds the pool */
        parallel_spawn(jobs, (int)nt);
        return;
    }
    pool_run(jobs, (int)nt);
    pthread_mutex_unlock(&g_pool_run);
}

static void release_range(void *ctx, int64_t i0, int64_t i1) { dfm_cpu_scratch_release(); }

void dfm_cpu_scratch_release_all(void)
{
    dfm_cpu_scratch_release();
    if (t_in_range) return;
    pthread_mutex_lock(&g_pool_run);
    range_job jobs[MAX_THREADS];
    int n = g_pool_workers + 1;
    for (int t = 0; t < n; t++) jobs[t] = (range_job){release_range, NULL, t, t + 1};
    if (n > 1) pool_run(jobs, n);
    pthread_mutex_unlock(&g_pool_run);
}

/* ---- scratch ----------------------------------------------------------------------------- */

typedef struct {
    void *p[DFM_CPU_SCRATCH_SLOTS];
    size_t n[DFM_CPU_SCRATCH_SLOTS];
} scratch_set;

static _Thread_local scratch_set g_scratch;
static pthread_key_t g_scratch_key;
static pthread_once_t g_scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(scratch_set *s)
{
    for (int i = 0; i < DFM_CPU_SCRATCH_SLOTS; i++) {
        free(s->p[i]);
        s->p[i] = NULL;
        s->n[i] = 0;
    }
}

/* At thread exit: the thread-local set is still valid while key destructors run. */
static void scratch_destructor(void *arg) { scratch_free(arg); }

static void scratch_key_init(void) { pthread_key_create(&g_scratch_key, scratch_destructor); }

void *dfm_cpu_scratch(int slot, size_t bytes)
{
    DFM_ASSERT(slot >= 0 && slot < DFM_CPU_SCRATCH_SLOTS);
    scratch_set *s = &g_scratch;
    if (bytes == 0) bytes = 64;
    if (s->n[slot] >= bytes) return s->p[slot];
    pthread_once(&g_scratch_once, scratch_key_init);
    pthread_setspecific(g_scratch_key, s);
    free(s->p[slot]);
    s->p[slot] = NULL;
    s->n[slot] = 0;
    size_t n = (bytes + 63) & ~(size_t)63;
    void *p = NULL;
    if (posix_memalign(&p, 64, n)) {
        dfm_fail(DFM_E_NOMEM, "out of memory for %zu bytes of scratch", n);
        return NULL;
    }
    s->p[slot] = p;
    s->n[slot] = n;
    return p;
}

void dfm_cpu_scratch_release(void) { scratch_free(&g_scratch); }

size_t dfm_cpu_scratch_bytes(void)
{
    size_t t = 0;
    for (int i = 0; i < DFM_CPU_SCRATCH_SLOTS; i++) t += g_scratch.n[i];
    return t;
}

void *dfm_cpu_alloc_large(size_t bytes)
{
    size_t huge = (size_t)2 << 20, align = bytes >= 2 * huge ? huge : 64;
    size_t n = (bytes + align - 1) / align * align;
    void *p = NULL;
    if (posix_memalign(&p, align, n ? n : 64)) {
        dfm_fail(DFM_E_NOMEM, "out of memory for %zu bytes", bytes);
        return NULL;
    }
#ifdef MADV_HUGEPAGE
    if (align == huge) madvise(p, n, MADV_HUGEPAGE); /* advice only: no THP is fine */
#endif
    return p;
}

/* ---- SIMD selection ---------------------------------------------------------------------- */

#ifdef DFM_CPU_X86
static uint64_t xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static int detect_level(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return DFM_CPU_SCALAR;
    int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    if (!osxsave || !avx || !fma) return DFM_CPU_SCALAR;
    uint64_t xcr0 = xgetbv0();
    if ((xcr0 & 0x6) != 0x6) return DFM_CPU_SCALAR; /* XMM and YMM state */
    if (__get_cpuid_max(0, NULL) < 7) return DFM_CPU_SCALAR;
    __cpuid_count(7, 0, a, b, c, d);
    if (!((b >> 5) & 1)) return DFM_CPU_SCALAR; /* avx2 */
    int f = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
    /* opmask, upper halves of ZMM0-15, ZMM16-31 */
    if (!(f && dq && bw && vl) || (xcr0 & 0xe0) != 0xe0) return DFM_CPU_AVX2;
    __cpuid_count(7, 1, a, b, c, d);
    return (a >> 5) & 1 ? DFM_CPU_AVX512_BF16 : DFM_CPU_AVX512;
}
#else
static int detect_level(void) { return DFM_CPU_SCALAR; }
#endif

static const char *const g_level_names[DFM_CPU_LEVELS] = {"scalar", "avx2", "avx512", "avx512_bf16"};

static _Atomic int g_level_max = -1; /* detected, -1 until then */
static _Atomic int g_cap = -1;       /* -1 until the first query (then DFM_SIMD or the highest) */

int dfm_cpu_level_max(void)
{
    int l = g_level_max;
    if (l < 0) g_level_max = l = detect_level();
    return l;
}

static int cap(void)
{
    int c = g_cap;
    if (c < 0) {
        c = DFM_CPU_LEVELS - 1;
        const char *e = getenv("DFM_SIMD");
        for (int i = 0; e && i < DFM_CPU_LEVELS; i++)
            if (!strcmp(e, g_level_names[i])) c = i;
        g_cap = c;
    }
    return c;
}

int dfm_cpu_simd_level(void)
{
    int c = cap(), m = dfm_cpu_level_max();
    return c < m ? c : m;
}

int dfm_cpu_set_simd_level(int level)
{
    g_cap = level < 0 ? 0 : level >= DFM_CPU_LEVELS ? DFM_CPU_LEVELS - 1 : level;
    return dfm_cpu_simd_level();
}

void dfm_cpu_set_simd(int enable) { dfm_cpu_set_simd_level(enable ? DFM_CPU_LEVELS - 1 : DFM_CPU_SCALAR); }

int dfm_cpu_use_avx2(void) { return dfm_cpu_simd_level() >= DFM_CPU_AVX2; }
int dfm_cpu_use_avx512(void) { return dfm_cpu_simd_level() >= DFM_CPU_AVX512; }
int dfm_cpu_use_avx512_bf16(void) { return dfm_cpu_simd_level() >= DFM_CPU_AVX512_BF16; }

const char *dfm_cpu_level_name(int level)
{
    return level >= 0 && level < DFM_CPU_LEVELS ? g_level_names[level] : "?";
}

const char *dfm_cpu_impl(void) { return g_level_names[dfm_cpu_simd_level()]; }

/* ---- float helpers ----------------------------------------------------------------------- */

#ifdef DFM_CPU_X86
__attribute__((target("avx2"))) static size_t round_bf16_avx2(float *dst, const float *src, size_t n)
{
    const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff);
    const __m256i quiet = _mm256_set1_epi32(0x00400000), hi = _mm256_set1_epi32((int)0xffff0000u);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(src + i);
        __m256i u = _mm256_castps_si256(v);
        __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
        __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(bias, lsb));
        __m256i q = _mm256_or_si256(u, quiet);
        __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        r = _mm256_blendv_epi8(r, q, nan);
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_and_si256(r, hi)));
    }
    return i;
}
#endif

void dfm_cpu_round_bf16(float *dst, const float *src, size_t n)
{
    size_t i = 0;
#ifdef DFM_CPU_X86
    if (dfm_cpu_use_avx2()) i = round_bf16_avx2(dst, src, n);
#endif
    for (; i < n; i++) dst[i] = dfm_cpu_round_bf16_1(src[i]);
}

int dfm_cpu_to_f32(float *dst, const void *src, dfm_dtype st, size_t n, int round_bf16)
{
    if (st != DFM_F32 && st != DFM_BF16 && st != DFM_F16)
        return dfm_fail(DFM_E_UNSUPPORTED, "cannot use %s as float input", dfm_dtype_name(st));
    int rc = dfm_convert_floats(dst, DFM_F32, src, st, n);
    if (rc < 0) return rc;
    if (round_bf16 && st != DFM_BF16) dfm_cpu_round_bf16(dst, dst, n);
    return 0;
}
