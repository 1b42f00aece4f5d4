/* dist.h — the collectives data-parallel training needs, on the launcher's engines: MPI for host
 * buffers (Open MPI from Debian), NCCL for CUDA buffers (bootstrapped through MPI: rank 0's
 * ncclUniqueId broadcast), one process per GPU picked by local rank.
 *
 * A process started by `mpirun -np N` or `srun` (any launcher whose environment names the rank
 * and size: OMPI_COMM_WORLD_RANK/SIZE/LOCAL_RANK, PMIX_RANK + PMI_SIZE, SLURM_PROCID/NTASKS/
 * LOCALID) is rank R of N. A single process (no launcher, or a launcher with size 1) needs no
 * MPI at run time: the MPI and NCCL code lives in a plugin (dfm-dist-mpi.so, built when Open MPI's
 * headers are installed) that dfm_dist_init loads only when size > 1. Plugin search: $DFM_DIST_PLUGIN,
 * then next to the executable, then ../lib/dfm/ from it (make install).
 *
 * Every collective is a sum (callers divide), blocking, in the order the caller issues it (all
 * ranks must issue the same sequence, with the same n), with a deadline: a collective that has
 * not completed after opts.timeout_s (a rank died or hangs) reports it ("dfm: rank R of N:
 * allreduce of N elements did not complete in T s (a rank died or hangs); aborting the job") and
 * takes the job down (MPI_Abort), so no rank waits forever. With size 1 every collective is a
 * copy or nothing. Collectives are called from the thread that called dfm_dist_init; the only
 * other thread that calls MPI is dfm_dist_allreduce_async's, never at the same time (MPI's
 * SERIALIZED level). An error return (bad arguments, an MPI or NCCL failure) leaves this rank out of
 * step with the others: the caller ends the job with dfm_dist_abort.
 *
 * Determinism. Host sums (MPI) are the rank-ordered sum ((x0 + x1) + x2) + ... of every element,
 * computed by the rank that owns the element's block after a point-to-point exchange, then
 * gathered back (a ring allreduce's traffic: 2 (N-1)/N of the buffer per rank): the same bits
 * every run, for any chunking or transport, and bit-identical to that sum computed in a plain
 * loop on one process; a job of one returns x0, the same expression with one term. Device sums are NCCL's (ring or
 * tree, picked from the topology and the size, not by timing): the same bits on the same machines
 * and NCCL version, but not the rank-ordered sum's bits (equal within rounding).
 *
 * Buffers are host memory when dev is DFM_CPU, device memory when DFM_CUDA (then NCCL; an MPI
 * host path is not used for device buffers). dtype F32 or F64 (DFM_DIST_F64: base/dtype.h has no
 * F64) for sums, any for allgather; broadcast counts bytes.
 *
 * Not here: what is reduced when (lib/train), partitioning the data (lib/data/train_data.h's
 * rank slicing), --part for the stream programs (launcher variables only: dfm_dist_launcher). */
#ifndef DFM_DIST_DIST_H
#define DFM_DIST_DIST_H
#include <stddef.h>
#include <stdint.h>
#include "base/dtype.h"
#include "base/part.h"
#include "tensor/tensor.h"

typedef struct dfm_dist dfm_dist;

/* The dtype argument for f64 sums (doubles): dfm_dtype has no F64 (tensors never hold one; a loss
 * or a count summed over ranks may want one). Outside the enum's range, like io/safetensors.h's
 * DFM_ST_OTHER; dfm_dtype_name gives "?" for it. */
#define DFM_DIST_F64 ((dfm_dtype)64)

/* What the launcher's environment says, without starting anything: rank, size, local rank and
 * local size (ranks on this node), and its name ("none" with 0 of 1, the first that applies):
 *   "mpirun"  OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK, _LOCAL_SIZE (Open MPI);
 *   "srun"    SLURM_PROCID, SLURM_STEP_NUM_TASKS (or SLURM_NTASKS), SLURM_LOCALID, and this node's
 *             count from SLURM_STEP_TASKS_PER_NODE + SLURM_NODEID or SLURM_NTASKS_PER_NODE; only
 *             inside a job step (SLURM_STEP_NUM_TASKS or SLURM_STEP_ID set): the batch script
 *             itself also has SLURM_PROCID=0 and SLURM_NTASKS=N but is one process;
 *   "pmix"    PMIX_RANK + PMI_SIZE; "pmi" PMI_RANK + PMI_SIZE (MPICH's mpiexec); local rank and
 *             size from MPI_LOCALRANKID/MPI_LOCALNRANKS or PMIX_LOCAL_RANK/PMIX_LOCAL_SIZE.
 * A local rank or size the launcher does not give is 0 of 1 (at least local rank + 1).
 * Returns 0, or DFM_E_ARG naming the variable when one is present but malformed (not a plain
 * decimal number) or inconsistent (rank >= size, a rank without a size); *e is then "none".
 * Used by --part auto as well. */
typedef struct {
    int rank, size, local_rank, local_size;
    const char *launcher;
} dfm_dist_env;
int dfm_dist_launcher(dfm_dist_env *e);

/* A stream program's place in the launcher's job: with part->is_auto (part may be NULL), K/N
 * from the launcher (0/1 without one: dfm_part_auto); with dev DFM_CUDA, GPU local_rank % visible
 * made current (dfm_device_select). 0, or DFM_E_ARG with the message naming the option
 * ("--part auto: ...", "--device cuda: ..."), for the caller's usage error. */
int dfm_dist_place(dfm_part *part, dfm_device dev);

typedef struct {
    double timeout_s;   /* deadline of one collective (<= 0: 1800 s, torch.distributed's default) */
    dfm_device device;  /* DFM_CUDA: also set up NCCL and make GPU local_rank the current device */
} dfm_dist_opts;

/* Join the job the launcher started (MPI_Init_thread with MPI_THREAD_SERIALIZED at least, and NCCL
 * when opts->device is CUDA), or a job of one. Errors: size > 1 but no plugin (dfm was built
 * without Open MPI: say how to get it), the plugin fails to load or MPI disagrees with the
 * environment's size. opts may be NULL (defaults, CPU). With CUDA, call it before any other CUDA
 * work: it makes GPU local_rank the current device (GPU 0 when only one is visible), and the
 * device is chosen once per process (kernels/cuda/device.h). MPI starts once per process: a job
 * of more than one rank calls this once. */
int dfm_dist_init(dfm_dist **d, const dfm_dist_opts *opts);
/* Finalize (collective: every rank calls it) and free. NULL is a no-op. The plugin stays loaded. */
void dfm_dist_free(dfm_dist *d);

int dfm_dist_rank(const dfm_dist *d);
int dfm_dist_size(const dfm_dist *d);
int dfm_dist_local_rank(const dfm_dist *d);
const char *dfm_dist_backend(const dfm_dist *d); /* "single" or "mpi" (+ "mpi+nccl" with CUDA) */

/* buf[0..n) summed over ranks, in place. Deterministic for a given world size (same bits every
 * run): the plugin fixes the reduction algorithm instead of letting MPI choose by timing (see
 * Determinism above). */
int dfm_dist_allreduce(dfm_dist *d, void *buf, size_t n, dfm_dtype dt, dfm_device dev);
/* send[0..n*size) summed over ranks; this rank gets block `rank` (n elements) in recv. send and
 * recv do not overlap. */
int dfm_dist_reduce_scatter(dfm_dist *d, const void *send, void *recv, size_t n, dfm_dtype dt, dfm_device dev);
/* recv[0..n*size) = every rank's send[0..n), in rank order; any dtype (data is only moved). send
 * may be recv's own block (in place), else it does not overlap recv. */
int dfm_dist_allgather(dfm_dist *d, const void *send, void *recv, size_t n, dfm_dtype dt, dfm_device dev);
/* bytes of buf from rank root to every rank. */
int dfm_dist_broadcast(dfm_dist *d, void *buf, size_t bytes, int root, dfm_device dev);
int dfm_dist_barrier(dfm_dist *d);

/* The same sum as dfm_dist_allreduce, started and not waited for: host buffers are summed by
 * this process's communication thread (started at the first call), in the order queued, while
 * the caller computes (data parallel: a block's gradients while the earlier blocks run
 * backward); buf must stay untouched until dfm_dist_wait. Device buffers are summed at once
 * (NCCL queues on its own stream). Any other collective first waits for the queue, so the
 * collectives of every rank keep one order, and MPI is never called from two threads at once
 * (MPI_THREAD_SERIALIZED). Errors of queued sums are reported by dfm_dist_wait. */
int dfm_dist_allreduce_async(dfm_dist *d, void *buf, size_t n, dfm_dtype dt, dfm_device dev);
/* Wait until every queued sum is done; the first error among them, if any. */
int dfm_dist_wait(dfm_dist *d);

/* Take the whole job down: print why on this rank's stderr ("dfm: rank R of N: <msg>") and
 * MPI_Abort with code (a single process: stdio flushed, then _exit(code), no exit handlers run,
 * as under MPI_Abort; code 0 counts as 1). For a rank that
 * failed on its own (a bad sample file, out of memory) so the others do not wait for it. d may
 * be NULL (before or after a failed dfm_dist_init: rank 0 of 1, exit). */
_Noreturn void dfm_dist_abort(dfm_dist *d, int code, const char *msg);

#endif
