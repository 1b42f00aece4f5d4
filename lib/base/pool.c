/* pool.c — ordered parallel map over a ring of job slots (see pool.h). */
#include "base/pool.h"
#include "base/buf.h"
#include "base/error.h"

#include <pthread.h>
#include <stdlib.h>

enum { SLOT_FREE, SLOT_QUEUED, SLOT_RUNNING, SLOT_DONE };

struct dfm_pool {
    pthread_mutex_t mu;
    pthread_cond_t work, finished;
    pthread_t *threads;
    int nthreads, depth;
    void **job;
    int *state;
    long head, tail, next_run; /* head: next to consume, tail: next free, next_run: next to start */
    int quit, status;
    dfm_pool_run_fn run;
    dfm_pool_done_fn done;
    dfm_pool_drop_fn drop;
    void *ctx;
};

static void *worker(void *arg)
{
    dfm_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->next_run == p->tail) pthread_cond_wait(&p->work, &p->mu);
        if (p->next_run == p->tail && p->quit) break;
        long i = p->next_run++ % p->depth;
        p->state[i] = SLOT_RUNNING;
        void *job = p->job[i];
        pthread_mutex_unlock(&p->mu);
        p->run(job);
        pthread_mutex_lock(&p->mu);
        p->state[i] = SLOT_DONE;
        pthread_cond_broadcast(&p->finished);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int dfm_pool_new(dfm_pool **out, int threads, int depth, dfm_pool_run_fn run, dfm_pool_done_fn done,
                 dfm_pool_drop_fn drop, void *ctx)
{
    dfm_pool *p = dfm_calloc(1, sizeof *p);
    if (!p) return DFM_E_NOMEM;
    p->nthreads = threads > 1 ? threads : 0;
    p->depth = depth > p->nthreads ? depth : p->nthreads + 1;
    p->run = run, p->done = done, p->drop = drop, p->ctx = ctx;
    p->job = dfm_calloc((size_t)p->depth, sizeof *p->job);
    p->state = dfm_calloc((size_t)p->depth, sizeof *p->state);
    p->threads = dfm_calloc((size_t)(p->nthreads ? p->nthreads : 1), sizeof *p->threads);
    if (!p->job || !p->state || !p->threads) {
        free(p->job), free(p->state), free(p->threads), free(p);
        return DFM_E_NOMEM;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->finished, NULL);
    for (int i = 0; i < p->nthreads; i++)
        if (pthread_create(&p->threads[i], NULL, worker, p) != 0) {
            p->nthreads = i; /* run with what started (inline if none) */
            break;
        }
    *out = p;
    return 0;
}

/* Consume the head job (waiting for it). Called with the mutex held. */
static void consume_head(dfm_pool *p)
{
    long i = p->head % p->depth;
    while (p->state[i] != SLOT_DONE) pthread_cond_wait(&p->finished, &p->mu);
    void *job = p->job[i];
    p->state[i] = SLOT_FREE;
    p->head++;
    pthread_mutex_unlock(&p->mu);
    if (p->status == 0) {
        int rc = p->done(p->ctx, job);
        if (rc < 0) p->status = rc;
    } else {
        p->drop(job);
    }
    pthread_mutex_lock(&p->mu);
}

int dfm_pool_submit(dfm_pool *p, void *job)
{
    if (p->nthreads == 0) {
        p->run(job);
        if (p->status) {
            p->drop(job);
            return p->status;
        }
        int rc = p->done(p->ctx, job);
        if (rc < 0) p->status = rc;
        return p->status;
    }
    pthread_mutex_lock(&p->mu);
    while (p->tail - p->head >= p->depth) consume_head(p);
    /* also hand over whatever is already finished, to keep output flowing */
    while (p->head < p->tail && p->state[p->head % p->depth] == SLOT_DONE) consume_head(p);
    long i = p->tail % p->depth;
    p->job[i] = job;
    p->state[i] = SLOT_QUEUED;
    p->tail++;
    pthread_cond_signal(&p->work);
    int st = p->status;
    pthread_mutex_unlock(&p->mu);
    return st;
}

int dfm_pool_finish(dfm_pool *p)
{
    pthread_mutex_lock(&p->mu);
    while (p->head < p->tail) consume_head(p);
    p->quit = 1;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthreads; i++) pthread_join(p->threads[i], NULL);
    int st = p->status;
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->finished);
    free(p->job), free(p->state), free(p->threads), free(p);
    return st;
}
