/* dist.c — the launcher's environment (dfm_dist_launcher), the job of one ("single": every
 * collective a copy or nothing) and, for a job of more ranks, the loader of dfm-dist-mpi.so whose
 * table (dist_plugin.h) does the work. Arguments are checked here, once, for every backend.
 *
 * Not here: MPI or NCCL. Their code is lib/dist/plugin/dist_mpi.c, a separate shared object the
 * Makefile builds when Open MPI is installed, so libdfm and the programs link no MPI and a
 * single process needs none. */
#include "dist/dist.h"
#include "dist/dist_plugin.h"
#include "base/error.h"
#ifdef DFM_HAVE_CUDA
#include "cuda/device.h"
#endif

#include <dlfcn.h>
#include <pthread.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PLUGIN_NAME "dfm-dist-mpi.so"

struct dfm_dist {
    dfm_dist_env env;
    dfm_device device;
    const dfm_dist_plugin *p; /* NULL: a job of one */
    void *ctx;                /* the plugin's */
    const char *backend;
    char err[DFM_DIST_PLUGIN_ERRLEN]; /* the plugin's messages */
    /* the communication thread of dfm_dist_allreduce_async: jobs q[head..tail) */
    struct async_job { void *buf; size_t n; dfm_dtype dt; } *q;
    size_t qcap, head, tail;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv_job, cv_done;
    int th_started, stop, async_rc;
    char async_err[DFM_DIST_PLUGIN_ERRLEN];
};

static void *comm_thread(void *arg)
{
    dfm_dist *d = arg;
    pthread_mutex_lock(&d->mu);
    for (;;) {
        while (d->head == d->tail && !d->stop) pthread_cond_wait(&d->cv_job, &d->mu);
        if (d->head == d->tail) break; /* stop, nothing left */
        struct async_job j = d->q[d->head];
        int skip = d->async_rc < 0;
        pthread_mutex_unlock(&d->mu);
        int rc = skip ? 0 : d->p->allreduce(d->ctx, j.buf, j.n, j.dt, DFM_CPU);
        pthread_mutex_lock(&d->mu);
        if (rc < 0 && !d->async_rc) {
            d->async_rc = rc;
            snprintf(d->async_err, sizeof d->async_err, "%s", d->err);
        }
        if (++d->head == d->tail) {
            d->head = d->tail = 0;
            pthread_cond_broadcast(&d->cv_done);
        }
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

int dfm_dist_wait(dfm_dist *d)
{
    if (!d || !d->th_started) return 0;
    pthread_mutex_lock(&d->mu);
    while (d->head != d->tail) pthread_cond_wait(&d->cv_done, &d->mu);
    int rc = d->async_rc;
    char msg[DFM_DIST_PLUGIN_ERRLEN];
    snprintf(msg, sizeof msg, "%s", d->async_err);
    d->async_rc = 0;
    pthread_mutex_unlock(&d->mu);
    return rc < 0 ? dfm_fail(rc, "%s", msg) : 0;
}

/* ---- the launcher's environment --------------------------------------------------------- */

/* 1 with *v when NAME is set, 0 when it is not, DFM_E_ARG when it is set but not a decimal
 * integer in [0, INT_MAX] (no sign, no spaces). */
static int env_int(const char *name, int *v)
{
    const char *s = getenv(name);
    if (!s) return 0;
    char *end = NULL;
    errno = 0;
    long long x = *s >= '0' && *s <= '9' ? strtoll(s, &end, 10) : -1;
    if (x < 0 || *end || errno || x > INT_MAX)
        return dfm_fail(DFM_E_ARG, "launcher variable %s='%.40s' is not a non-negative integer",
                        name, s);
    *v = (int)x;
    return 1;
}

/* The first of names[] that is set (its value in *v, its name in *which); 0 when none is. */
static int env_first(const char *const *names, int *v, const char **which)
{
    for (int i = 0; names[i]; i++) {
        int rc = env_int(names[i], v);
        if (rc) {
            *which = names[i];
            return rc;
        }
    }
    return 0;
}

/* Slurm's SLURM_STEP_TASKS_PER_NODE ("2(x3),1": two tasks on each of the first three nodes,
 * one on the fourth): the count of node `node` into *out. 1 found, 0 not (node past the list),
 * DFM_E_ARG malformed. */
static int slurm_tasks_on_node(const char *s, int node, int *out)
{
    const char *p = s;
    long seen = 0;
    int found = 0;
    for (;;) {
        char *end;
        if (*p < '0' || *p > '9') break;
        long k = strtol(p, &end, 10), rep = 1;
        p = end;
        if (p[0] == '(' && p[1] == 'x') {
            if (p[2] < '0' || p[2] > '9') break;
            rep = strtol(p + 2, &end, 10);
            if (*end != ')' || rep < 1 || rep > INT_MAX) break;
            p = end + 1;
        }
        if (k < 1 || k > INT_MAX) break;
        if (!found && node < seen + rep) *out = (int)k, found = 1;
        seen += rep;
        if (!*p) return found;
        if (*p != ',') break;
        p++;
    }
    return dfm_fail(DFM_E_ARG, "launcher variable SLURM_STEP_TASKS_PER_NODE='%.60s' is malformed "
                    "(want counts like '2(x3),1')", s);
}

int dfm_dist_launcher(dfm_dist_env *e)
{
    static const char *const OMPI_RANK[] = {"OMPI_COMM_WORLD_RANK", NULL};
    static const char *const OMPI_SIZE[] = {"OMPI_COMM_WORLD_SIZE", NULL};
    static const char *const OMPI_LRANK[] = {"OMPI_COMM_WORLD_LOCAL_RANK", NULL};
    static const char *const OMPI_LSIZE[] = {"OMPI_COMM_WORLD_LOCAL_SIZE", NULL};
    static const char *const SLURM_RANK[] = {"SLURM_PROCID", NULL};
    static const char *const SLURM_SIZE[] = {"SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", NULL};
    static const char *const SLURM_LRANK[] = {"SLURM_LOCALID", NULL};
    static const char *const PMIX_RANK[] = {"PMIX_RANK", NULL};
    static const char *const PMI_RANK[] = {"PMI_RANK", NULL};
    static const char *const PMI_SIZE[] = {"PMI_SIZE", NULL};
    static const char *const PMI_LRANK[] = {"MPI_LOCALRANKID", "PMIX_LOCAL_RANK", NULL};
    static const char *const PMI_LSIZE[] = {"MPI_LOCALNRANKS", "PMIX_LOCAL_SIZE", NULL};
    static const char *const NONE[] = {NULL};
    dfm_dist_env r = {0, 1, 0, 1, "none"};
    *e = r;
    const char *const *rank_v, *const *size_v, *const *lrank_v, *const *lsize_v;
    const char *rn = NULL, *sn = NULL, *lrn = NULL, *lsn = NULL;
    int rc, slurm = 0;
    /* Which launcher: the first whose rank variable is set. Slurm counts only inside a job step
     * (srun sets SLURM_STEP_NUM_TASKS / SLURM_STEP_ID): a batch script itself also has
     * SLURM_PROCID=0 and SLURM_NTASKS=N, but it is one process. */
    if ((rc = env_int("OMPI_COMM_WORLD_RANK", &r.rank)) != 0) {
        r.launcher = "mpirun";
        rank_v = OMPI_RANK, size_v = OMPI_SIZE, lrank_v = OMPI_LRANK, lsize_v = OMPI_LSIZE;
    } else if (getenv("SLURM_PROCID") && (getenv("SLURM_STEP_NUM_TASKS") || getenv("SLURM_STEP_ID"))) {
        r.launcher = "srun", slurm = 1;
        rank_v = SLURM_RANK, size_v = SLURM_SIZE, lrank_v = SLURM_LRANK, lsize_v = NONE;
    } else if (getenv("PMIX_RANK")) {
        r.launcher = "pmix";
        rank_v = PMIX_RANK, size_v = PMI_SIZE, lrank_v = PMI_LRANK, lsize_v = PMI_LSIZE;
    } else if (getenv("PMI_RANK")) {
        r.launcher = "pmi";
        rank_v = PMI_RANK, size_v = PMI_SIZE, lrank_v = PMI_LRANK, lsize_v = PMI_LSIZE;
    } else {
        return 0;
    }
    if (rc < 0) return rc;
    if ((rc = env_first(rank_v, &r.rank, &rn)) < 0) return rc;
    if ((rc = env_first(size_v, &r.size, &sn)) < 0) return rc;
    if (!rc)
        return dfm_fail(DFM_E_ARG, "launcher variable %s is set but %s is not: the job's size is "
                        "unknown", rn, size_v[0]);
    if (r.size < 1) return dfm_fail(DFM_E_ARG, "launcher variable %s=0: a job has at least one rank", sn);
    if (r.rank >= r.size)
        return dfm_fail(DFM_E_ARG, "launcher variable %s=%d is not below %s=%d (ranks count from 0)",
                        rn, r.rank, sn, r.size);
    /* Local rank and size: 0 of 1 when the launcher does not say. */
    r.local_rank = 0, r.local_size = 1;
    if ((rc = env_first(lrank_v, &r.local_rank, &lrn)) < 0) return rc;
    if ((rc = env_first(lsize_v, &r.local_size, &lsn)) < 0) return rc;
    if (slurm) {
        /* this node's count from the step's layout, else --ntasks-per-node, else at least
         * local_rank + 1 */
        const char *tpn = getenv("SLURM_STEP_TASKS_PER_NODE");
        int node = -1, got = 0;
        if (tpn && (rc = env_int("SLURM_NODEID", &node)) < 0) return rc;
        if (tpn && node >= 0 && (got = slurm_tasks_on_node(tpn, node, &r.local_size)) < 0) return got;
        if (got) lsn = "SLURM_STEP_TASKS_PER_NODE";
        else if ((rc = env_int("SLURM_NTASKS_PER_NODE", &r.local_size)) < 0) return rc;
        else if (rc) lsn = "SLURM_NTASKS_PER_NODE";
        else r.local_size = r.local_rank + 1;
    }
    if (lsn && (r.local_size < 1 || r.local_size > r.size))
        return dfm_fail(DFM_E_ARG, "launcher variable %s=%d is not between 1 and %s=%d", lsn,
                        r.local_size, sn, r.size);
    if (r.local_rank >= r.local_size) {
        if (lsn)
            return dfm_fail(DFM_E_ARG, "launcher variable %s=%d is not below %s=%d", lrn,
                            r.local_rank, lsn, r.local_size);
        if (r.local_rank >= r.size)
            return dfm_fail(DFM_E_ARG, "launcher variable %s=%d is not below %s=%d", lrn,
                            r.local_rank, sn, r.size);
        r.local_size = r.local_rank + 1;
    }
    *e = r;
    return 0;
}

int dfm_dist_place(dfm_part *part, dfm_device dev)
{
    int want_part = part && part->is_auto;
    if (!want_part && dev != DFM_CUDA) return 0;
    dfm_dist_env env;
    if (dfm_dist_launcher(&env))
        return dfm_fail(DFM_E_ARG, "%s: %s", want_part ? "--part auto" : "--device cuda", dfm_errmsg());
    if (want_part && dfm_part_auto(part, env.rank, env.size)) return dfm_fail(DFM_E_ARG, "--part auto: %s", dfm_errmsg());
    if (dev == DFM_CUDA && dfm_device_select(DFM_CUDA, env.local_rank))
        return dfm_fail(DFM_E_ARG, "--device cuda: %s", dfm_errmsg());
    return 0;
}

/* ---- the plugin ------------------------------------------------------------------------- */

/* The directory of the running executable into dir (n bytes); 0, or -1. */
static int exe_dir(char *dir, size_t n)
{
    ssize_t k = readlink("/proc/self/exe", dir, n - 1);
    if (k <= 0 || (size_t)k >= n - 1) return -1;
    dir[k] = 0;
    char *slash = strrchr(dir, '/');
    if (!slash) return -1;
    slash[slash == dir] = 0;
    return 0;
}

static int load_plugin(dfm_dist *d, const dfm_dist_plugin **out)
{
    char path[PATH_MAX + 64], dir[PATH_MAX];
    const char *envp = getenv("DFM_DIST_PLUGIN");
    if (envp && *envp) {
        if (strlen(envp) >= sizeof path) return dfm_fail(DFM_E_ARG, "DFM_DIST_PLUGIN is too long");
        strcpy(path, envp);
        if (access(path, R_OK))
            return dfm_fail(DFM_E_IO, "DFM_DIST_PLUGIN='%s': %s", path, strerror(errno));
    } else {
        if (exe_dir(dir, sizeof dir))
            return dfm_fail(DFM_E_IO, "cannot find the executable's directory (/proc/self/exe) to "
                            "look for " PLUGIN_NAME ": set DFM_DIST_PLUGIN");
        snprintf(path, sizeof path, "%s/" PLUGIN_NAME, dir);
        if (access(path, R_OK)) snprintf(path, sizeof path, "%s/../lib/dfm/" PLUGIN_NAME, dir);
        if (access(path, R_OK))
            return dfm_fail(DFM_E_UNSUPPORTED,
                            "launched as rank %d of %d by %s, but dfm was built without Open MPI (no "
                            PLUGIN_NAME " next to the executable in %s, nor in %s/../lib/dfm): install "
                            "libopenmpi-dev (scripts/install-deps.sh) and rebuild, or set DFM_DIST_PLUGIN",
                            d->env.rank, d->env.size, d->env.launcher, dir, dir);
    }
    /* RTLD_GLOBAL: Open MPI loads its own components with dlopen, and they need libmpi's
     * symbols. Never closed: MPI may keep threads and exit handlers in it. */
    void *h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
    if (!h) return dfm_fail(DFM_E_IO, "cannot load the MPI plugin '%s': %s", path, dlerror());
    dfm_dist_plugin_get_fn get;
    void *sym = dlsym(h, DFM_DIST_PLUGIN_SYMBOL);
    memcpy(&get, &sym, sizeof get);
    const dfm_dist_plugin *p = get ? get(DFM_DIST_PLUGIN_ABI) : NULL;
    if (!p) {
        dlclose(h);
        return dfm_fail(DFM_E_FORMAT, "'%s' is not a dfm MPI plugin of this version (no %s with "
                        "ABI %d): rebuild it with this dfm (make)", path, DFM_DIST_PLUGIN_SYMBOL,
                        DFM_DIST_PLUGIN_ABI);
    }
    *out = p;
    return 0;
}

int dfm_dist_init(dfm_dist **out, const dfm_dist_opts *opts)
{
    *out = NULL;
    dfm_dist_opts o = {0};
    if (opts) o = *opts;
    if (o.device != DFM_CPU && o.device != DFM_CUDA)
        return dfm_fail(DFM_E_ARG, "dist: unknown device %d", (int)o.device);
    if (!(o.timeout_s > 0)) o.timeout_s = 1800;
    dfm_dist_env e;
    int rc = dfm_dist_launcher(&e);
    if (rc < 0) return rc;
    dfm_dist *d = calloc(1, sizeof *d);
    if (!d) return dfm_fail(DFM_E_NOMEM, "dist: out of memory");
    d->env = e;
    d->device = o.device;
    d->backend = "single";
    if (e.size > 1) {
        if ((rc = load_plugin(d, &d->p)) < 0) goto fail;
        if (o.device == DFM_CUDA && !d->p->has_nccl) {
            rc = dfm_fail(DFM_E_UNSUPPORTED, "rank %d of %d: GPU training needs NCCL, but "
                          PLUGIN_NAME " was built without it (nccl.h and libnccl.so were not found "
                          "beside CUDA at build time): install NCCL and rebuild", e.rank, e.size);
            goto fail;
        }
        dfm_dist_plugin_args a = {e.rank, e.size, e.local_rank, e.launcher, o.timeout_s,
                                  o.device == DFM_CUDA};
        if ((rc = d->p->init(&d->ctx, &a, d->err)) < 0) {
            rc = dfm_fail(rc, "rank %d of %d: %s", e.rank, e.size, d->err);
            goto fail;
        }
        d->backend = o.device == DFM_CUDA ? "mpi+nccl" : "mpi";
    }
    *out = d;
    return 0;
fail:
    free(d);
    return rc;
}

void dfm_dist_free(dfm_dist *d)
{
    if (!d) return;
    if (d->th_started) {
        dfm_dist_wait(d);
        pthread_mutex_lock(&d->mu);
        d->stop = 1;
        pthread_cond_signal(&d->cv_job);
        pthread_mutex_unlock(&d->mu);
        pthread_join(d->th, NULL);
        pthread_mutex_destroy(&d->mu);
        pthread_cond_destroy(&d->cv_job);
        pthread_cond_destroy(&d->cv_done);
    }
    free(d->q);
    if (d->p) d->p->finalize(d->ctx);
    free(d);
}

int dfm_dist_rank(const dfm_dist *d) { return d->env.rank; }
int dfm_dist_size(const dfm_dist *d) { return d->env.size; }
int dfm_dist_local_rank(const dfm_dist *d) { return d->env.local_rank; }
const char *dfm_dist_backend(const dfm_dist *d) { return d->backend; }

/* ---- collectives ------------------------------------------------------------------------- */

/* A plugin call's result: its message recorded (dfm_fail) when it failed. */
static int plugged(dfm_dist *d, int rc) { return rc < 0 ? dfm_fail(rc, "%s", d->err) : rc; }

static size_t sum_size(dfm_dtype dt) { return dt == DFM_F32 ? 4 : dt == DFM_DIST_F64 ? 8 : 0; }

static int check_dev(const dfm_dist *d, dfm_device dev, const char *what)
{
    if (dev != DFM_CPU && dev != DFM_CUDA) return dfm_fail(DFM_E_ARG, "%s: unknown device %d", what, (int)dev);
    if (dev == DFM_CUDA && d->p && d->device != DFM_CUDA)
        return dfm_fail(DFM_E_ARG, "%s: device buffers, but dfm_dist_init was asked for the CPU "
                        "(opts.device DFM_CUDA sets up NCCL)", what);
    return 0;
}

static int check_sum(const dfm_dist *d, dfm_dtype dt, dfm_device dev, const char *what)
{
    if (!sum_size(dt))
        return dfm_fail(DFM_E_ARG, "%s: dtype %s: sums are F32 or F64 (DFM_DIST_F64)", what,
                        dfm_dtype_name(dt));
    return check_dev(d, dev, what);
}

/* Whether [a, a+an) and [b, b+bn) share a byte. */
static int overlap(const void *a, size_t an, const void *b, size_t bn)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return an && bn && x < y + bn && y < x + an;
}

/* bytes from src to dst on dev (a job of one's copies). */
static int copy_bytes(void *dst, const void *src, size_t bytes, dfm_device dev, const char *what)
{
    if (!bytes || dst == src) return 0;
    if (dev == DFM_CPU) {
        memmove(dst, src, bytes);
        return 0;
    }
#ifdef DFM_HAVE_CUDA
    const char *why = NULL;
    if (dfm_cuda_memcpy(dst, src, bytes, 2, &why))
        return dfm_fail(DFM_E_IO, "%s: device copy failed: %s", what, why ? why : "?");
    return 0;
#else
    return dfm_fail(DFM_E_UNSUPPORTED, "%s: device buffers, but this build has no CUDA backend", what);
#endif
}

int dfm_dist_allreduce_async(dfm_dist *d, void *buf, size_t n, dfm_dtype dt, dfm_device dev)
{
    int rc = check_sum(d, dt, dev, "allreduce");
    if (rc < 0) return rc;
    if (!n || !d->p) return 0;
    if (!buf) return dfm_fail(DFM_E_ARG, "allreduce: NULL buffer of %zu elements", n);
    if (n > SIZE_MAX / sum_size(dt)) return dfm_fail(DFM_E_ARG, "allreduce: %zu elements overflow", n);
    if (dev != DFM_CPU) return dfm_dist_allreduce(d, buf, n, dt, dev);
    if (!d->th_started) {
        if (pthread_mutex_init(&d->mu, NULL) || pthread_cond_init(&d->cv_job, NULL) || pthread_cond_init(&d->cv_done, NULL))
            return dfm_fail(DFM_E_NOMEM, "dist: cannot set up the communication thread");
        if (pthread_create(&d->th, NULL, comm_thread, d))
            return dfm_fail(DFM_E_NOMEM, "dist: cannot start the communication thread");
        d->th_started = 1;
    }
    pthread_mutex_lock(&d->mu);
    if (d->tail == d->qcap) {
        size_t cap = d->qcap ? 2 * d->qcap : 64;
        struct async_job *q = realloc(d->q, cap * sizeof *q);
        if (!q) {
            pthread_mutex_unlock(&d->mu);
            return dfm_fail(DFM_E_NOMEM, "dist: out of memory");
        }
        d->q = q, d->qcap = cap;
    }
    d->q[d->tail++] = (struct async_job){buf, n, dt};
    pthread_cond_signal(&d->cv_job);
    pthread_mutex_unlock(&d->mu);
    return 0;
}

int dfm_dist_allreduce(dfm_dist *d, void *buf, size_t n, dfm_dtype dt, dfm_device dev)
{
    int rc = dfm_dist_wait(d);
    if (rc < 0) return rc;
    rc = check_sum(d, dt, dev, "allreduce");
    if (rc < 0) return rc;
    if (!n) return 0;
    if (!buf) return dfm_fail(DFM_E_ARG, "allreduce: NULL buffer of %zu elements", n);
    if (n > SIZE_MAX / sum_size(dt)) return dfm_fail(DFM_E_ARG, "allreduce: %zu elements overflow", n);
    return d->p ? plugged(d, d->p->allreduce(d->ctx, buf, n, dt, dev)) : 0;
}

int dfm_dist_reduce_scatter(dfm_dist *d, const void *send, void *recv, size_t n, dfm_dtype dt, dfm_device dev)
{
    int rc = dfm_dist_wait(d);
    if (rc < 0) return rc;
    rc = check_sum(d, dt, dev, "reduce_scatter");
    if (rc < 0) return rc;
    if (!n) return 0;
    size_t es = sum_size(dt), S = (size_t)d->env.size;
    if (n > SIZE_MAX / es / S) return dfm_fail(DFM_E_ARG, "reduce_scatter: %zu elements x %zu ranks overflow", n, S);
    if (!send || !recv) return dfm_fail(DFM_E_ARG, "reduce_scatter: NULL buffer of %zu elements", n);
    if (overlap(send, n * S * es, recv, n * es))
        return dfm_fail(DFM_E_ARG, "reduce_scatter: send and recv overlap");
    if (!d->p) return copy_bytes(recv, send, n * es, dev, "reduce_scatter");
    return plugged(d, d->p->reduce_scatter(d->ctx, send, recv, n, dt, dev));
}

int dfm_dist_allgather(dfm_dist *d, const void *send, void *recv, size_t n, dfm_dtype dt, dfm_device dev)
{
    int rc = dfm_dist_wait(d);
    if (rc < 0) return rc;
    rc = check_dev(d, dev, "allgather");
    if (rc < 0) return rc;
    size_t es = dfm_dtype_size(dt) ? dfm_dtype_size(dt) : sum_size(dt), S = (size_t)d->env.size;
    if (!es) return dfm_fail(DFM_E_ARG, "allgather: unknown dtype %d", (int)dt);
    if (!n) return 0;
    if (n > SIZE_MAX / es / S) return dfm_fail(DFM_E_ARG, "allgather: %zu elements x %zu ranks overflow", n, S);
    if (!send || !recv) return dfm_fail(DFM_E_ARG, "allgather: NULL buffer of %zu elements", n);
    size_t bytes = n * es;
    const char *mine = (const char *)recv + (size_t)d->env.rank * bytes;
    if (send != mine && overlap(send, bytes, recv, bytes * S))
        return dfm_fail(DFM_E_ARG, "allgather: send overlaps recv other than at this rank's block");
    if (!d->p) return copy_bytes(recv, send, bytes, dev, "allgather");
    return plugged(d, d->p->allgather(d->ctx, send, recv, bytes, dev));
}

int dfm_dist_broadcast(dfm_dist *d, void *buf, size_t bytes, int root, dfm_device dev)
{
    int rc = dfm_dist_wait(d);
    if (rc < 0) return rc;
    rc = check_dev(d, dev, "broadcast");
    if (rc < 0) return rc;
    if (root < 0 || root >= d->env.size)
        return dfm_fail(DFM_E_ARG, "broadcast: root %d is not a rank of %d", root, d->env.size);
    if (!bytes) return 0;
    if (!buf) return dfm_fail(DFM_E_ARG, "broadcast: NULL buffer of %zu bytes", bytes);
    return d->p ? plugged(d, d->p->broadcast(d->ctx, buf, bytes, root, dev)) : 0;
}

int dfm_dist_barrier(dfm_dist *d)
{
    int rc = dfm_dist_wait(d);
    return rc < 0 ? rc : d->p ? plugged(d, d->p->barrier(d->ctx)) : 0;
}

_Noreturn void dfm_dist_abort(dfm_dist *d, int code, const char *msg)
{
    if (!code) code = 1;
    fprintf(stderr, "dfm: rank %d of %d: %s\n", d ? d->env.rank : 0, d ? d->env.size : 1,
            msg ? msg : "aborting");
    fflush(stderr);
    fflush(NULL);
    if (d && d->p) d->p->abort(d->ctx, code);
    /* as MPI_Abort: no exit handlers (a thread pool to join, CUDA to tear down) */
    _exit(code);
}
