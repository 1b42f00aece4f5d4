/* test_cpu_pool.c — dfm_cpu_parallel on the persistent worker pool (kernels/cpu/cpu.c): every
 * index of a loop is visited exactly once for any thread count, a loop inside a range runs
 * inline, loops from two application threads at once are both complete, and the workers' scratch
 * can be released. */
#include "test.h"

#include "cpu/cpu.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define N 10007

typedef struct {
    _Atomic int hits[N];
    int nested; /* run an inner loop inside each range */
    _Atomic int inner_bad;
} visit_ctx;

static void inner_range(void *arg, int64_t i0, int64_t i1)
{
    int *seen = arg;
    for (int64_t i = i0; i < i1; i++) seen[i]++;
}

static void visit_range(void *arg, int64_t i0, int64_t i1)
{
    visit_ctx *c = arg;
    for (int64_t i = i0; i < i1; i++) atomic_fetch_add(&c->hits[i], 1);
    if (c->nested) {
        int seen[64] = {0};
        dfm_cpu_parallel(64, 1, inner_range, seen);
        for (int i = 0; i < 64; i++)
            if (seen[i] != 1) atomic_fetch_add(&c->inner_bad, 1);
        if (!dfm_cpu_scratch(3, 4096)) atomic_fetch_add(&c->inner_bad, 1);
    }
}

static int run_visit(int64_t n, int64_t min_chunk, int nested)
{
    static visit_ctx c; /* per call: reset */
    for (int i = 0; i < N; i++) atomic_store(&c.hits[i], 0);
    c.nested = nested;
    atomic_store(&c.inner_bad, 0);
    dfm_cpu_parallel(n, min_chunk, visit_range, &c);
    int bad = atomic_load(&c.inner_bad);
    for (int64_t i = 0; i < N; i++) bad += atomic_load(&c.hits[i]) != (i < n ? 1 : 0);
    return bad;
}

TEST(cpu_pool_covers_each_index_once)
{
    int saved = dfm_cpu_threads();
    int counts[] = {1, 2, 3, 7, 64};
    for (size_t t = 0; t < sizeof counts / sizeof counts[0]; t++) {
        dfm_cpu_set_threads(counts[t]);
        CHECK_EQ(run_visit(N, 1, 0), 0);
        CHECK_EQ(run_visit(5, 1, 0), 0);     /* fewer indices than threads */
        CHECK_EQ(run_visit(N, 4000, 0), 0);  /* min_chunk limits the ranges */
        CHECK_EQ(run_visit(100, 1, 1), 0);   /* nested loops run inline */
    }
    dfm_cpu_set_threads(saved);
    dfm_cpu_scratch_release_all();
    CHECK_EQ(run_visit(N, 1, 1), 0); /* the pool works after a release */
}

typedef struct {
    int bad;
} app_ctx;

static void sum_range(void *arg, int64_t i0, int64_t i1)
{
    int64_t *v = arg;
    for (int64_t i = i0; i < i1; i++) v[i] = i * 3;
}

static void *app_thread(void *arg)
{
    app_ctx *a = arg;
    static _Thread_local int64_t v[4096];
    for (int rep = 0; rep < 300; rep++) {
        memset(v, 0, sizeof v);
        dfm_cpu_parallel(4096, 1, sum_range, v);
        for (int i = 0; i < 4096; i++) a->bad += v[i] != (int64_t)i * 3;
    }
    return NULL;
}

TEST(cpu_pool_two_application_threads)
{
    int saved = dfm_cpu_threads();
    dfm_cpu_set_threads(2);
    app_ctx a = {0}, b = {0};
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, app_thread, &a), 0);
    app_thread(&b);
    pthread_join(t, NULL);
    CHECK_EQ(a.bad, 0);
    CHECK_EQ(b.bad, 0);
    dfm_cpu_set_threads(saved);
}
