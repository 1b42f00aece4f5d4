/* dist_mpi.c — dfm-dist-mpi.so: the collectives of lib/dist/dist.h on Open MPI for host buffers
 * and, when built with DFM_DIST_NCCL, on NCCL for CUDA buffers, behind dist_plugin.h's table.
 * Built by the Makefile as a shared object of its own (mpicc --showme flags; -lnccl -lcudart with
 * CUDA) and loaded by lib/dist/dist.c only for a job of more than one rank; never part of libdfm.
 *
 * Host sums are ours, not MPI_Allreduce's. Open MPI's tuned collectives pick an algorithm by
 * message size and process count (some split the vector and add in a rank order that depends on
 * the algorithm), so the bits could change with a size threshold or a setting. Here every
 * element's sum is always the same expression: a reduce-scatter moves each rank's copy of block b
 * to rank b with point-to-point messages (data movement only), rank b adds the N copies in rank
 * order, ((x0 + x1) + x2) + ..., and an allgather moves the sums back. Hence the same bits every
 * run, for any chunking and transport, equal to a plain rank-ordered loop on one process (what
 * tests/dist/dist_check.c compares against, bit for bit). Traffic per rank is a ring allreduce's,
 * 2 (N-1)/N of the buffer; the N-1 messages of a phase go at once. Sums run in chunks of at most
 * CHUNK elements (the scratch is one chunk; MPI counts are ints).
 *
 * Every wait polls (MPI_Testall, or cudaStreamQuery and ncclCommGetAsyncError) with a short sleep
 * that grows from 20 us to 1 ms, so a waiting rank leaves its core to the others, and checks the
 * deadline: past args.timeout_s it prints "dfm: rank R of N: <what> did not complete in T s (a rank
 * died or hangs); aborting the job" and calls MPI_Abort (after ncclCommAbort).
 *
 * NCCL (device buffers): ncclAllReduce/ReduceScatter/AllGather/Broadcast on one stream of ours,
 * created blocking so that it is ordered after and before the work dfm queues on the legacy
 * default stream; each collective first waits for this rank's own queued work (so that its
 * deadline counts only the collective) and waits for the stream before returning. The communicator is
 * nonblocking (ncclConfig_t.blocking = 0) so that its setup and every enqueue also fall under the
 * deadline. Rank 0's ncclUniqueId reaches the others by MPI_Ibcast; each rank sets GPU local_rank
 * (GPU 0 when only one is visible: the launcher gave each rank its own) before ncclCommInitRank.
 * NCCL's sums are its own (ring or tree), deterministic for a fixed topology, not rank-ordered.
 *
 * Not here: the launcher's environment and argument checks (dist.c). Nothing here calls libdfm:
 * its headers are included for their enums only. */
#include "dist/dist_plugin.h"
#include "base/error.h"

#include <mpi.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef __SANITIZE_ADDRESS__
#include <dlfcn.h>
#include <link.h>
#endif
#ifdef DFM_DIST_NCCL
#include <cuda_runtime_api.h>
#include <nccl.h>
#endif

#define CHUNK ((size_t)1 << 24) /* elements summed per round: the scratch (64 MiB of f32) */
#define BYTES_MAX ((size_t)1 << 30) /* bytes per MPI message of data movement */
#define TAG_RS 0x6466 /* reduce-scatter messages */
#define TAG_AG 0x6467 /* allgather messages */

typedef struct {
    MPI_Comm comm;
    int rank, size, we_init;
    double timeout_s;
    char *err;          /* DFM_DIST_PLUGIN_ERRLEN bytes, dist.c's */
    MPI_Request *req;   /* 2 (size - 1) */
    const void **terms; /* size */
    void *scratch;      /* CHUNK f64 at most, allocated on first use */
    size_t scratch_bytes;
#ifdef DFM_DIST_NCCL
    int cuda;
    ncclComm_t nccl;
    cudaStream_t stream;
#endif
} ctx;

static int fail(ctx *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(ctx *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, DFM_DIST_PLUGIN_ERRLEN, fmt, ap);
    va_end(ap);
    return code;
}

static int mpi_fail(ctx *c, int rc, const char *what)
{
    char s[MPI_MAX_ERROR_STRING];
    int n = 0;
    if (MPI_Error_string(rc, s, &n) != MPI_SUCCESS) snprintf(s, sizeof s, "error %d", rc);
    return fail(c, DFM_E_IO, "%s: MPI: %s", what, s);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Sleep us microseconds and return the next, longer sleep (20 us doubling to 1 ms). */
static long backoff(long us)
{
    struct timespec t = {0, us * 1000};
    nanosleep(&t, NULL);
    return us < 500 ? us * 2 : 1000;
}

static _Noreturn void abort_job(ctx *c, int code)
{
#ifdef DFM_DIST_NCCL
    if (c->nccl) ncclCommAbort(c->nccl), c->nccl = NULL;
#endif
    MPI_Abort(MPI_COMM_WORLD, code);
    _exit(code);
}

/* what: "allreduce of 7 elements" and the like. */
static _Noreturn void deadline(ctx *c, const char *what)
{
    fprintf(stderr, "dfm: rank %d of %d: %s did not complete in %g s (a rank died or hangs); "
            "aborting the job\n", c->rank, c->size, what, c->timeout_s);
    fflush(stderr);
    abort_job(c, 1);
}

/* Wait for reqs[0..n) under the deadline t0 + timeout. */
static int wait_all(ctx *c, int n, double t0, const char *what)
{
    long us = 20;
    for (;;) {
        int done = 0;
        int rc = MPI_Testall(n, c->req, &done, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_fail(c, rc, what);
        if (done) return 0;
        if (now_s() - t0 > c->timeout_s) deadline(c, what);
        us = backoff(us);
    }
}

/* acc[i] = ((x[0][i] + x[1][i]) + x[2][i]) + ... for i < n: rank order, one expression per
 * element whatever n. acc may be x[0] but no other term. */
static void sum_ranks(void *acc, const void *const *x, int size, size_t n, dfm_dtype dt)
{
    if (dt == DFM_F32) {
        float *a = acc;
        if (a != x[0]) memcpy(a, x[0], n * sizeof *a);
        for (int q = 1; q < size; q++) {
            const float *y = x[q];
            for (size_t i = 0; i < n; i++) a[i] += y[i];
        }
    } else {
        double *a = acc;
        if (a != x[0]) memcpy(a, x[0], n * sizeof *a);
        for (int q = 1; q < size; q++) {
            const double *y = x[q];
            for (size_t i = 0; i < n; i++) a[i] += y[i];
        }
    }
}

static int scratch(ctx *c, size_t bytes)
{
    if (bytes <= c->scratch_bytes) return 0;
    free(c->scratch);
    c->scratch = malloc(bytes);
    c->scratch_bytes = c->scratch ? bytes : 0;
    return c->scratch ? 0 : fail(c, DFM_E_NOMEM, "out of memory for %zu bytes of scratch", bytes);
}

#ifdef __SANITIZE_ADDRESS__
/* Under AddressSanitizer: keep every shared object loaded now (Open MPI's and PMIx's components
 * among them, which they dlopen) loaded until exit. MPI_Finalize unloads the components, and
 * LeakSanitizer could then not name the library that allocated what they keep ("<unknown
 * module>"), so tests/lsan-cuda.supp could not tell their allocations from ours. A second
 * reference from dlopen(RTLD_NOLOAD), never closed, keeps each one. */
#define PIN_MAX 512
static char *g_pin[PIN_MAX];
static int g_npin;

static int pin_list(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size, (void)data;
    if (g_npin < PIN_MAX && info->dlpi_name && info->dlpi_name[0] == '/')
        g_pin[g_npin++] = strdup(info->dlpi_name);
    return 0;
}

static void pin_components(void)
{
    dl_iterate_phdr(pin_list, NULL); /* names first: no dlopen under the loader's lock */
    for (int i = 0; i < g_npin; i++) {
        if (g_pin[i]) dlopen(g_pin[i], RTLD_NOW | RTLD_NOLOAD);
        free(g_pin[i]);
    }
    g_npin = 0;
}
#else
static void pin_components(void) {}
#endif

/* ---- host (MPI) --------------------------------------------------------------------------- */

/* Block b of a chunk of m elements split over size ranks: start and count (the first m % size
 * blocks have one more). */
static size_t blk_start(size_t m, int size, int b)
{
    size_t q = m / (size_t)size, r = m % (size_t)size;
    return (size_t)b * q + ((size_t)b < r ? (size_t)b : r);
}
static size_t blk_count(size_t m, int size, int b)
{
    return m / (size_t)size + ((size_t)b < m % (size_t)size);
}

static int mpi_allreduce(ctx *c, void *buf, size_t n, dfm_dtype dt)
{
    char what[96];
    snprintf(what, sizeof what, "allreduce of %zu element%s", n, n == 1 ? "" : "s");
    double t0 = now_s();
    size_t es = dt == DFM_F32 ? 4 : 8, S = (size_t)c->size;
    MPI_Datatype type = dt == DFM_F32 ? MPI_FLOAT : MPI_DOUBLE;
    size_t slot = (n < CHUNK ? n : CHUNK) / S + 1; /* elements of one incoming block */
    int rc = scratch(c, S * slot * es);
    if (rc < 0) return rc;
    char *b = buf, *tmp = c->scratch;
    const int r = c->rank;
    for (size_t off = 0; off < n;) {
        size_t m = n - off < CHUNK ? n - off : CHUNK;
        size_t cr = blk_count(m, c->size, r);
        char *mine = b + (off + blk_start(m, c->size, r)) * es;
        /* reduce-scatter: the peers' copies of my block in, their blocks out */
        int nr = 0;
        for (int k = 1; k < c->size; k++) {
            int p = (r + k) % c->size;
            size_t cp = blk_count(m, c->size, p);
            if (cr && (rc = MPI_Irecv(tmp + (size_t)p * slot * es, (int)cr, type, p, TAG_RS, c->comm, &c->req[nr++])))
                return mpi_fail(c, rc, what);
            if (cp && (rc = MPI_Isend(b + (off + blk_start(m, c->size, p)) * es, (int)cp, type, p,
                                      TAG_RS, c->comm, &c->req[nr++])))
                return mpi_fail(c, rc, what);
        }
        if ((rc = wait_all(c, nr, t0, what)) < 0) return rc;
        for (int q = 0; q < c->size; q++) c->terms[q] = q == r ? mine : tmp + (size_t)q * slot * es;
        char *acc = tmp + (size_t)r * slot * es; /* the one slot no message fills */
        sum_ranks(acc, c->terms, c->size, cr, dt);
        memcpy(mine, acc, cr * es);
        /* allgather: my sums out, the peers' sums in */
        nr = 0;
        for (int k = 1; k < c->size; k++) {
            int p = (r + k) % c->size;
            size_t cp = blk_count(m, c->size, p);
            if (cp && (rc = MPI_Irecv(b + (off + blk_start(m, c->size, p)) * es, (int)cp, type, p,
                                      TAG_AG, c->comm, &c->req[nr++])))
                return mpi_fail(c, rc, what);
            if (cr && (rc = MPI_Isend(mine, (int)cr, type, p, TAG_AG, c->comm, &c->req[nr++])))
                return mpi_fail(c, rc, what);
        }
        if ((rc = wait_all(c, nr, t0, what)) < 0) return rc;
        off += m;
    }
    return 0;
}

static int mpi_reduce_scatter(ctx *c, const void *send, void *recv, size_t n, dfm_dtype dt)
{
    char what[96];
    snprintf(what, sizeof what, "reduce_scatter of %zu element%s", n, n == 1 ? "" : "s");
    double t0 = now_s();
    size_t es = dt == DFM_F32 ? 4 : 8, S = (size_t)c->size;
    size_t cmax = CHUNK / S ? CHUNK / S : 1;
    size_t slot = n < cmax ? n : cmax;
    int rc = scratch(c, S * slot * es);
    if (rc < 0) return rc;
    const char *s = send;
    char *tmp = c->scratch;
    const int r = c->rank;
    for (size_t off = 0; off < n;) {
        size_t m = n - off < cmax ? n - off : cmax;
        int nr = 0;
        for (int k = 1; k < c->size; k++) {
            int p = (r + k) % c->size;
            if ((rc = MPI_Irecv(tmp + (size_t)p * slot * es, (int)m, dt == DFM_F32 ? MPI_FLOAT : MPI_DOUBLE,
                                p, TAG_RS, c->comm, &c->req[nr++])))
                return mpi_fail(c, rc, what);
            if ((rc = MPI_Isend(s + ((size_t)p * n + off) * es, (int)m, dt == DFM_F32 ? MPI_FLOAT : MPI_DOUBLE,
                                p, TAG_RS, c->comm, &c->req[nr++])))
                return mpi_fail(c, rc, what);
        }
        if ((rc = wait_all(c, nr, t0, what)) < 0) return rc;
        for (int q = 0; q < c->size; q++)
            c->terms[q] = q == r ? s + ((size_t)r * n + off) * es : tmp + (size_t)q * slot * es;
        sum_ranks((char *)recv + off * es, c->terms, c->size, m, dt);
        off += m;
    }
    return 0;
}

static int mpi_allgather(ctx *c, const void *send, void *recv, size_t bytes)
{
    char what[96];
    snprintf(what, sizeof what, "allgather of %zu byte%s", bytes, bytes == 1 ? "" : "s");
    double t0 = now_s();
    char *rv = recv;
    const int r = c->rank;
    int rc;
    if (send != rv + (size_t)r * bytes) memcpy(rv + (size_t)r * bytes, send, bytes);
    for (size_t off = 0; off < bytes;) {
        size_t m = bytes - off < BYTES_MAX ? bytes - off : BYTES_MAX;
        int nr = 0;
        for (int k = 1; k < c->size; k++) {
            int p = (r + k) % c->size;
            if ((rc = MPI_Irecv(rv + (size_t)p * bytes + off, (int)m, MPI_BYTE, p, TAG_AG, c->comm, &c->req[nr++])))
                return mpi_fail(c, rc, what);
            if ((rc = MPI_Isend((const char *)send + off, (int)m, MPI_BYTE, p, TAG_AG, c->comm, &c->req[nr++])))
                return mpi_fail(c, rc, what);
        }
        if ((rc = wait_all(c, nr, t0, what)) < 0) return rc;
        off += m;
    }
    return 0;
}

static int mpi_broadcast(ctx *c, void *buf, size_t bytes, int root)
{
    char what[96];
    snprintf(what, sizeof what, "broadcast of %zu byte%s from rank %d", bytes, bytes == 1 ? "" : "s", root);
    double t0 = now_s();
    int rc;
    for (size_t off = 0; off < bytes;) {
        size_t m = bytes - off < BYTES_MAX ? bytes - off : BYTES_MAX;
        if ((rc = MPI_Ibcast((char *)buf + off, (int)m, MPI_BYTE, root, c->comm, &c->req[0])))
            return mpi_fail(c, rc, what);
        if ((rc = wait_all(c, 1, t0, what)) < 0) return rc;
        off += m;
    }
    return 0;
}

/* ---- device (NCCL) ------------------------------------------------------------------------ */

#ifdef DFM_DIST_NCCL
static int cuda_fail(ctx *c, cudaError_t e, const char *what)
{
    return fail(c, DFM_E_IO, "%s: CUDA: %s", what, cudaGetErrorString(e));
}

static int nccl_fail(ctx *c, ncclResult_t r, const char *what)
{
    const char *last = c->nccl ? ncclGetLastError(c->nccl) : NULL;
    return fail(c, DFM_E_IO, "%s: NCCL: %s%s%s", what, ncclGetErrorString(r), last && *last ? ": " : "",
                last ? last : "");
}

/* Wait until the communicator has taken the last call (nonblocking: ncclInProgress until then)
 * and, with stream, until the stream has run it; under the deadline. */
static int nccl_wait(ctx *c, int stream, double t0, const char *what)
{
    long us = 20;
    for (;;) {
        ncclResult_t st = ncclSuccess;
        ncclResult_t r = ncclCommGetAsyncError(c->nccl, &st);
        if (r != ncclSuccess) return nccl_fail(c, r, what);
        if (st != ncclSuccess && st != ncclInProgress) return nccl_fail(c, st, what);
        if (st == ncclSuccess) {
            if (!stream) return 0;
            cudaError_t e = cudaStreamQuery(c->stream);
            if (e == cudaSuccess) return 0;
            if (e != cudaErrorNotReady) return cuda_fail(c, e, what);
        }
        if (now_s() - t0 > c->timeout_s) deadline(c, what);
        us = backoff(us);
    }
}

/* Before a collective: wait for the work this rank queued on the legacy default stream (where
 * dfm's ops run), so that the deadline then counts only the collective, not our own compute.
 * 0, or the CUDA error. Returns the time the deadline counts from in *t0. */
static int nccl_start(ctx *c, double *t0, const char *what)
{
    cudaError_t e = cudaStreamSynchronize(cudaStreamLegacy);
    *t0 = now_s();
    return e == cudaSuccess ? 0 : cuda_fail(c, e, what);
}

/* The result of enqueueing a collective, then the wait for it. */
static int nccl_done(ctx *c, ncclResult_t r, double t0, const char *what)
{
    if (r != ncclSuccess && r != ncclInProgress) return nccl_fail(c, r, what);
    return nccl_wait(c, 1, t0, what);
}

static int nccl_setup(ctx *c, const dfm_dist_plugin_args *a)
{
    int ndev = 0, rc;
    cudaError_t e = cudaGetDeviceCount(&ndev);
    if (e != cudaSuccess || ndev < 1)
        return fail(c, DFM_E_UNSUPPORTED, "no CUDA device for GPU training%s%s",
                    e != cudaSuccess ? ": " : "", e != cudaSuccess ? cudaGetErrorString(e) : "");
    int dev = ndev == 1 ? 0 : a->local_rank;
    if (dev >= ndev)
        return fail(c, DFM_E_ARG, "local rank %d (of %s) but %d CUDA devices are visible: one GPU "
                    "per rank (start at most %d ranks on this node)", a->local_rank, a->launcher,
                    ndev, ndev);
    if ((e = cudaSetDevice(dev)) != cudaSuccess) return cuda_fail(c, e, "cudaSetDevice");
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    ncclResult_t r;
    if (c->rank == 0 && (r = ncclGetUniqueId(&id)) != ncclSuccess) return nccl_fail(c, r, "ncclGetUniqueId");
    double t0 = now_s();
    if ((rc = MPI_Ibcast(&id, (int)sizeof id, MPI_BYTE, 0, c->comm, &c->req[0])))
        return mpi_fail(c, rc, "NCCL setup");
    if ((rc = wait_all(c, 1, t0, "NCCL setup (rank 0's ncclUniqueId)")) < 0) return rc;
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    r = ncclCommInitRankConfig(&c->nccl, c->size, id, c->rank, &cfg);
    if (r != ncclSuccess && r != ncclInProgress) {
        c->nccl = NULL;
        return nccl_fail(c, r, "ncclCommInitRank");
    }
    if ((rc = nccl_wait(c, 0, t0, "NCCL setup (ncclCommInitRank)")) < 0) return rc;
    if ((e = cudaStreamCreate(&c->stream)) != cudaSuccess) return cuda_fail(c, e, "cudaStreamCreate");
    c->cuda = 1;
    return 0;
}

static ncclDataType_t nccl_type(dfm_dtype dt) { return dt == DFM_F32 ? ncclFloat32 : ncclFloat64; }
#endif

static int need_nccl(ctx *c, const char *what)
{
    return fail(c, DFM_E_UNSUPPORTED, "%s: device buffers, but NCCL was not set up (dfm_dist_init "
                "with opts.device DFM_CUDA)", what);
}

/* ---- the table ---------------------------------------------------------------------------- */

static int p_allreduce(void *vc, void *buf, size_t n, dfm_dtype dt, dfm_device dev)
{
    ctx *c = vc;
    if (dev == DFM_CPU) return mpi_allreduce(c, buf, n, dt);
#ifdef DFM_DIST_NCCL
    if (c->cuda) {
        char what[96];
        snprintf(what, sizeof what, "allreduce of %zu element%s", n, n == 1 ? "" : "s");
        double t0;
        int rc = nccl_start(c, &t0, what);
        if (rc < 0) return rc;
        return nccl_done(c, ncclAllReduce(buf, buf, n, nccl_type(dt), ncclSum, c->nccl, c->stream), t0, what);
    }
#endif
    return need_nccl(c, "allreduce");
}

static int p_reduce_scatter(void *vc, const void *send, void *recv, size_t n, dfm_dtype dt, dfm_device dev)
{
    ctx *c = vc;
    if (dev == DFM_CPU) return mpi_reduce_scatter(c, send, recv, n, dt);
#ifdef DFM_DIST_NCCL
    if (c->cuda) {
        char what[96];
        snprintf(what, sizeof what, "reduce_scatter of %zu element%s", n, n == 1 ? "" : "s");
        double t0;
        int rc = nccl_start(c, &t0, what);
        if (rc < 0) return rc;
        return nccl_done(c, ncclReduceScatter(send, recv, n, nccl_type(dt), ncclSum, c->nccl, c->stream),
                         t0, what);
    }
#endif
    return need_nccl(c, "reduce_scatter");
}

static int p_allgather(void *vc, const void *send, void *recv, size_t bytes, dfm_device dev)
{
    ctx *c = vc;
    if (dev == DFM_CPU) return mpi_allgather(c, send, recv, bytes);
#ifdef DFM_DIST_NCCL
    if (c->cuda) {
        char what[96];
        snprintf(what, sizeof what, "allgather of %zu byte%s", bytes, bytes == 1 ? "" : "s");
        double t0;
        int rc = nccl_start(c, &t0, what);
        if (rc < 0) return rc;
        return nccl_done(c, ncclAllGather(send, recv, bytes, ncclUint8, c->nccl, c->stream), t0, what);
    }
#endif
    return need_nccl(c, "allgather");
}

static int p_broadcast(void *vc, void *buf, size_t bytes, int root, dfm_device dev)
{
    ctx *c = vc;
    if (dev == DFM_CPU) return mpi_broadcast(c, buf, bytes, root);
#ifdef DFM_DIST_NCCL
    if (c->cuda) {
        char what[96];
        snprintf(what, sizeof what, "broadcast of %zu byte%s from rank %d", bytes, bytes == 1 ? "" : "s", root);
        double t0;
        int rc = nccl_start(c, &t0, what);
        if (rc < 0) return rc;
        return nccl_done(c, ncclBroadcast(buf, buf, bytes, ncclUint8, root, c->nccl, c->stream), t0, what);
    }
#endif
    return need_nccl(c, "broadcast");
}

static int p_barrier(void *vc)
{
    ctx *c = vc;
    double t0 = now_s();
    int rc = MPI_Ibarrier(c->comm, &c->req[0]);
    if (rc) return mpi_fail(c, rc, "barrier");
    return wait_all(c, 1, t0, "barrier");
}

static void p_abort(void *vc, int code) { abort_job(vc, code); }

/* Free c; graceful: NCCL finalized (else aborted) and MPI finalized when we started it. */
static void teardown(ctx *c, int graceful)
{
#ifdef DFM_DIST_NCCL
    if (c->nccl) {
        /* ncclCommFinalize flushes what is queued; a nonblocking communicator finishes it
         * asynchronously, under the deadline like the rest. */
        double t0 = now_s();
        ncclResult_t r = graceful ? ncclCommFinalize(c->nccl) : ncclInternalError;
        if ((r == ncclSuccess || r == ncclInProgress) && nccl_wait(c, 0, t0, "NCCL finalize") == 0)
            ncclCommDestroy(c->nccl);
        else
            ncclCommAbort(c->nccl);
        c->nccl = NULL;
    }
    if (c->cuda) cudaStreamDestroy(c->stream);
#endif
    if (graceful) {
        if (c->comm != MPI_COMM_NULL) MPI_Comm_free(&c->comm);
        int fin = 1;
        MPI_Finalized(&fin);
        if (c->we_init && !fin) {
            pin_components();
            MPI_Finalize();
        }
    }
    free(c->req);
    free(c->terms);
    free(c->scratch);
    free(c);
}

static void p_finalize(void *vc)
{
    if (vc) teardown(vc, 1);
}

static int p_init(void **out, const dfm_dist_plugin_args *a, char *err)
{
    *out = NULL;
    ctx *c = calloc(1, sizeof *c);
    if (!c) return snprintf(err, DFM_DIST_PLUGIN_ERRLEN, "out of memory"), DFM_E_NOMEM;
    c->err = err;
    c->comm = MPI_COMM_NULL;
    c->rank = a->rank, c->size = a->size, c->timeout_s = a->timeout_s;
    int inited = 0, fin = 0, provided = 0, rc, rank = -1, size = -1;
    MPI_Initialized(&inited);
    MPI_Finalized(&fin);
    if (fin) {
        rc = fail(c, DFM_E_UNSUPPORTED, "MPI was finalized already in this process (MPI starts once "
                  "per process: one dfm_dist_init)");
        goto out;
    }
    if (!inited) {
        /* SERIALIZED: dfm_dist_allreduce_async's thread makes calls too, never at the same time
         * as the main thread (lib/dist/dist.c orders them) */
        if ((rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided))) {
            rc = mpi_fail(c, rc, "MPI_Init_thread");
            goto out;
        }
        c->we_init = 1;
    } else {
        MPI_Query_thread(&provided);
    }
    if (provided < MPI_THREAD_SERIALIZED) {
        rc = fail(c, DFM_E_UNSUPPORTED, "MPI provides thread level %d, below MPI_THREAD_SERIALIZED", provided);
        goto out;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (rank != a->rank || size != a->size) {
        rc = fail(c, DFM_E_ARG, "MPI says rank %d of %d, but %s's environment says rank %d of %d "
                  "(an Open MPI mpirun must start Open MPI programs)", rank, size, a->launcher,
                  a->rank, a->size);
        goto out;
    }
    if ((rc = MPI_Comm_dup(MPI_COMM_WORLD, &c->comm)) ||
        (rc = MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN))) {
        rc = mpi_fail(c, rc, "MPI_Comm_dup");
        goto out;
    }
    c->req = calloc(2 * (size_t)c->size, sizeof *c->req);
    c->terms = calloc((size_t)c->size, sizeof *c->terms);
    if (!c->req || !c->terms) {
        rc = fail(c, DFM_E_NOMEM, "out of memory");
        goto out;
    }
    if (a->cuda) {
#ifdef DFM_DIST_NCCL
        if ((rc = nccl_setup(c, a)) < 0) goto out;
#else
        rc = need_nccl(c, "dfm_dist_init");
        goto out;
#endif
    }
    *out = c;
    return 0;
out:
    /* MPI stays up: the caller ends this process with an error, and the launcher then ends the
     * others (finalizing here would leave them waiting in their own setup). */
    teardown(c, 0);
    return rc;
}

static const dfm_dist_plugin TABLE = {
    .abi = DFM_DIST_PLUGIN_ABI,
#ifdef DFM_DIST_NCCL
    .has_nccl = 1,
#endif
    .init = p_init,
    .finalize = p_finalize,
    .allreduce = p_allreduce,
    .reduce_scatter = p_reduce_scatter,
    .allgather = p_allgather,
    .broadcast = p_broadcast,
    .barrier = p_barrier,
    .abort = p_abort,
};

__attribute__((visibility("default"))) const dfm_dist_plugin *dfm_dist_plugin_v1(int abi)
{
    return abi == DFM_DIST_PLUGIN_ABI ? &TABLE : NULL;
}
