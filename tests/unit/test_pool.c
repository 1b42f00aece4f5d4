/* test_pool.c — the ordered parallel map keeps submission order and bounds in-flight jobs. */
#include "test.h"
#include "base/pool.h"

#include <stdlib.h>
#include <unistd.h>

typedef struct {
    int id, result;
} job_t;

static void run(void *j)
{
    job_t *x = j;
    if (x->id % 7 == 0) usleep(2000); /* some jobs finish out of order */
    x->result = x->id * x->id;
}

typedef struct {
    int next, bad, stop_at;
} ctx_t;

static int done(void *c, void *j)
{
    ctx_t *cx = c;
    job_t *x = j;
    if (x->id != cx->next || x->result != x->id * x->id) cx->bad++;
    cx->next++;
    free(x);
    return cx->stop_at && cx->next == cx->stop_at ? -9 : 0;
}

static void drop(void *j) { free(j); }

static void run_pool(int threads, int n, int stop_at, int *next, int *bad, int *status)
{
    ctx_t cx = {0, 0, stop_at};
    dfm_pool *p;
    CHECK_EQ(dfm_pool_new(&p, threads, 4, run, done, drop, &cx), 0);
    int st = 0;
    for (int i = 0; i < n && st == 0; i++) {
        job_t *x = malloc(sizeof *x);
        x->id = i;
        st = dfm_pool_submit(p, x);
    }
    int fst = dfm_pool_finish(p);
    *status = st ? st : fst;
    *next = cx.next;
    *bad = cx.bad;
}

TEST(pool_order)
{
    for (int threads = 0; threads <= 3; threads++) {
        int next, bad, st;
        run_pool(threads, 200, 0, &next, &bad, &st);
        CHECK_EQ(next, 200);
        CHECK_EQ(bad, 0);
        CHECK_EQ(st, 0);
    }
}

TEST(pool_stop)
{
    for (int threads = 0; threads <= 2; threads++) {
        int next, bad, st;
        run_pool(threads, 100, 10, &next, &bad, &st);
        CHECK_EQ(st, -9);
        CHECK_EQ(next, 10); /* nothing consumed after the stop */
        CHECK_EQ(bad, 0);
    }
}
