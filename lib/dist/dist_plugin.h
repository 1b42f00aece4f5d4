/* dist_plugin.h — private to lib/dist: the table of entry points that dfm-dist-mpi.so (built from
 * lib/dist/plugin/dist_mpi.c when Open MPI's headers are installed) hands to lib/dist/dist.c.
 *
 * The plugin is a separate shared object so that libdfm and every program need no MPI at build
 * or run time: dist.c dlopens it only for a job of more than one rank, looks up the one exported
 * symbol DFM_DIST_PLUGIN_SYMBOL and calls through the table. The plugin calls nothing in libdfm
 * (the programs link libdfm statically and export nothing): it includes dfm headers for their
 * enums only, and reports errors as a negative DFM_E_* code with the message written into the
 * buffer dist.c gave to init (DFM_DIST_PLUGIN_ERRLEN bytes, kept for the context's life).
 *
 * Calls come from one thread at a time (dist.c orders the caller's and its communication
 * thread's). Every collective follows dist.h: a sum in the order the caller issues it, blocking, and past
 * the deadline (args.timeout_s) the plugin prints "dfm: rank R of N: <collective> of N elements
 * did not complete in T s (a rank died or hangs); aborting the job" and ends the job
 * (MPI_Abort); it does not return then. Arguments are checked by dist.c first (dtype F32 or
 * DFM_DIST_F64, a device the context was set up for, root in range, no NULL with n > 0).
 *
 * Not here: the launcher's environment (dist.c reads it and passes rank and size, which the
 * plugin checks against MPI's). */
#ifndef DFM_DIST_DIST_PLUGIN_H
#define DFM_DIST_DIST_PLUGIN_H
#include <stddef.h>
#include "dist/dist.h"

/* Bumped whenever the table or the arguments change: a plugin from another build is refused. */
#define DFM_DIST_PLUGIN_ABI 1
#define DFM_DIST_PLUGIN_SYMBOL "dfm_dist_plugin_v1"
#define DFM_DIST_PLUGIN_ERRLEN 512

typedef struct {
    int rank, size, local_rank; /* what the launcher says (dfm_dist_launcher) */
    const char *launcher;       /* its name, for messages */
    double timeout_s;           /* > 0: the deadline of one collective */
    int cuda;                   /* 1: also set up NCCL on GPU local_rank (DFM_CUDA buffers) */
} dfm_dist_plugin_args;

typedef struct {
    int abi;              /* DFM_DIST_PLUGIN_ABI */
    int has_nccl;         /* 1 when built with NCCL (device buffers) */
    /* Join the job: MPI_Init_thread (SERIALIZED: dist.c's communication thread calls too, never
     * at the same time as another), a private communicator, NCCL when a->cuda.
     * *ctx is the plugin's state; err (DFM_DIST_PLUGIN_ERRLEN bytes) receives every message of
     * this context, now and later. 0, or a negative DFM_E_* code. */
    int (*init)(void **ctx, const dfm_dist_plugin_args *a, char *err);
    /* NCCL and MPI torn down (MPI_Finalize: every rank calls it), ctx freed. */
    void (*finalize)(void *ctx);
    /* As in dist.h. dt is DFM_F32 or DFM_DIST_F64; dev DFM_CPU (MPI) or DFM_CUDA (NCCL). */
    int (*allreduce)(void *ctx, void *buf, size_t n, dfm_dtype dt, dfm_device dev);
    int (*reduce_scatter)(void *ctx, const void *send, void *recv, size_t n, dfm_dtype dt,
                          dfm_device dev);
    /* bytes per rank (data movement only: any dtype). */
    int (*allgather)(void *ctx, const void *send, void *recv, size_t bytes, dfm_device dev);
    int (*broadcast)(void *ctx, void *buf, size_t bytes, int root, dfm_device dev);
    int (*barrier)(void *ctx);
    /* MPI_Abort(MPI_COMM_WORLD, code) (NCCL aborted first); does not return (_exit(code) should
     * MPI_Abort come back). dist.c has printed the message. */
    void (*abort)(void *ctx, int code);
} dfm_dist_plugin;

/* The plugin's one exported symbol: the table when abi matches its DFM_DIST_PLUGIN_ABI, else
 * NULL. */
typedef const dfm_dist_plugin *(*dfm_dist_plugin_get_fn)(int abi);

#endif
