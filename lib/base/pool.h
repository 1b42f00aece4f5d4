/* pool.h — an ordered parallel map: jobs run on worker threads, results are consumed on the
 * calling thread in submission order. This is how dfm-decode decodes several files at once and
 * still writes samples in sorted input order. At most `depth` jobs are in flight, so memory is
 * bounded by depth results whatever the input size. With threads <= 1 jobs run inline.
 */
#ifndef DFM_BASE_POOL_H
#define DFM_BASE_POOL_H

typedef struct dfm_pool dfm_pool;
/* Runs on a worker: do the job, keep its result inside `job`. */
typedef void (*dfm_pool_run_fn)(void *job);
/* Runs on the submitting thread, in order: use and free the job. A negative return stops the
 * pool: later jobs are still freed through `drop`, not consumed. */
typedef int (*dfm_pool_done_fn)(void *ctx, void *job);
typedef void (*dfm_pool_drop_fn)(void *job);

int dfm_pool_new(dfm_pool **p, int threads, int depth, dfm_pool_run_fn run, dfm_pool_done_fn done,
                 dfm_pool_drop_fn drop, void *ctx);
/* Queue a job (ownership passes to the pool). May block to consume finished jobs first.
 * Returns the first negative value `done` returned, else 0. */
int dfm_pool_submit(dfm_pool *p, void *job);
/* Wait for every job, consume the rest in order, join the threads and free the pool. */
int dfm_pool_finish(dfm_pool *p);

#endif
