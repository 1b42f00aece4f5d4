/* test_dist.c — lib/dist without MPI: the launcher's variables (dfm_dist_launcher), a job of one
 * (dfm_dist_init with no launcher: the "single" backend, every collective a copy or nothing),
 * device buffers included (a GPU: copies on the device; skipped without one), argument checks,
 * plugin loading errors and dfm_dist_abort. The collectives of N ranks run under mpirun in
 * tests/pipeline/dist.sh. */
#include "test.h"
#include "tensor_util.h"
#include "base/error.h"
#include "dist/dist.h"

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

/* Every variable dfm_dist_launcher reads: saved, cleared for a test, put back after. */
static const char *const VARS[] = {
    "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
    "OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS",
    "SLURM_STEP_ID", "SLURM_LOCALID", "SLURM_NODEID", "SLURM_STEP_TASKS_PER_NODE",
    "SLURM_NTASKS_PER_NODE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID",
    "MPI_LOCALNRANKS", "PMIX_LOCAL_RANK", "PMIX_LOCAL_SIZE", "DFM_DIST_PLUGIN", NULL};
#define NVARS 20
static char *saved[NVARS];

static void env_clear(void)
{
    for (int i = 0; VARS[i]; i++) {
        const char *v = getenv(VARS[i]);
        saved[i] = v ? strdup(v) : NULL;
        unsetenv(VARS[i]);
    }
}

static void env_restore(void)
{
    for (int i = 0; VARS[i]; i++) {
        if (saved[i]) setenv(VARS[i], saved[i], 1);
        else unsetenv(VARS[i]);
        free(saved[i]);
        saved[i] = NULL;
    }
}

/* Set NAME=VALUE pairs (NULL-terminated) over a cleared environment. */
static void env_set(const char *const *kv)
{
    for (int i = 0; VARS[i]; i++) unsetenv(VARS[i]);
    for (int i = 0; kv[i]; i += 2) setenv(kv[i], kv[i + 1], 1);
}

static void check_env(const char *const *kv, int rank, int size, int lrank, int lsize, const char *launcher)
{
    env_set(kv);
    dfm_dist_env e;
    int rc = dfm_dist_launcher(&e);
    CHECK_EQ(rc, 0);
    if (rc) fprintf(stderr, "  (%s: %s)\n", kv[0], dfm_errmsg());
    CHECK_EQ(e.rank, rank);
    CHECK_EQ(e.size, size);
    CHECK_EQ(e.local_rank, lrank);
    CHECK_EQ(e.local_size, lsize);
    CHECK_STR(e.launcher, launcher);
}

/* The environment kv is refused with DFM_E_ARG, the message containing `names` and e left as
 * "none". */
static void check_bad(const char *const *kv, const char *names)
{
    env_set(kv);
    dfm_dist_env e = {7, 7, 7, 7, "x"};
    CHECK_EQ(dfm_dist_launcher(&e), DFM_E_ARG);
    if (!strstr(dfm_errmsg(), names)) {
        fprintf(stderr, "  message '%s' does not name '%s'\n", dfm_errmsg(), names);
        dfm_test_failures++;
    }
    CHECK_STR(e.launcher, "none");
    CHECK_EQ(e.rank, 0);
    CHECK_EQ(e.size, 1);
}

TEST(dist_launcher_env)
{
    env_clear();
    check_env((const char *const[]){NULL}, 0, 1, 0, 1, "none");
    check_env((const char *const[]){"OMPI_COMM_WORLD_RANK", "3", "OMPI_COMM_WORLD_SIZE", "8",
                                    "OMPI_COMM_WORLD_LOCAL_RANK", "1", "OMPI_COMM_WORLD_LOCAL_SIZE", "4", NULL},
              3, 8, 1, 4, "mpirun");
    /* no local variables: 0 of 1 */
    check_env((const char *const[]){"OMPI_COMM_WORLD_RANK", "0", "OMPI_COMM_WORLD_SIZE", "1", NULL},
              0, 1, 0, 1, "mpirun");
    /* mpirun wins over Slurm's variables (mpirun inside an allocation) */
    check_env((const char *const[]){"OMPI_COMM_WORLD_RANK", "1", "OMPI_COMM_WORLD_SIZE", "2",
                                    "SLURM_PROCID", "0", "SLURM_STEP_NUM_TASKS", "1", NULL},
              1, 2, 0, 1, "mpirun");
    /* srun: this node's count from the step's layout */
    check_env((const char *const[]){"SLURM_PROCID", "5", "SLURM_STEP_NUM_TASKS", "7", "SLURM_NTASKS", "99",
                                    "SLURM_LOCALID", "1", "SLURM_NODEID", "2",
                                    "SLURM_STEP_TASKS_PER_NODE", "2(x3),1", NULL},
              5, 7, 1, 2, "srun");
    check_env((const char *const[]){"SLURM_PROCID", "6", "SLURM_STEP_NUM_TASKS", "7", "SLURM_LOCALID", "0",
                                    "SLURM_NODEID", "3", "SLURM_STEP_TASKS_PER_NODE", "2(x3),1", NULL},
              6, 7, 0, 1, "srun");
    /* srun with SLURM_STEP_ID and SLURM_NTASKS, --ntasks-per-node */
    check_env((const char *const[]){"SLURM_PROCID", "3", "SLURM_STEP_ID", "0", "SLURM_NTASKS", "4",
                                    "SLURM_LOCALID", "1", "SLURM_NTASKS_PER_NODE", "2", NULL},
              3, 4, 1, 2, "srun");
    /* srun without a per-node count: at least local rank + 1 */
    check_env((const char *const[]){"SLURM_PROCID", "3", "SLURM_STEP_NUM_TASKS", "4", "SLURM_LOCALID", "2", NULL},
              3, 4, 2, 3, "srun");
    /* a batch script (no job step) is one process, whatever SLURM_NTASKS says */
    check_env((const char *const[]){"SLURM_PROCID", "0", "SLURM_NTASKS", "4", "SLURM_LOCALID", "0", NULL},
              0, 1, 0, 1, "none");
    check_env((const char *const[]){"PMIX_RANK", "2", "PMI_SIZE", "3", NULL}, 2, 3, 0, 1, "pmix");
    check_env((const char *const[]){"PMI_RANK", "1", "PMI_SIZE", "4", "MPI_LOCALRANKID", "1",
                                    "MPI_LOCALNRANKS", "2", NULL},
              1, 4, 1, 2, "pmi");
    env_restore();
}

TEST(dist_launcher_bad_env)
{
    env_clear();
    const char *const bad[] = {"", "x", "1x", "-1", "+1", " 1", "1 ", "2147483648", "99999999999999999999", NULL};
    for (int i = 0; bad[i]; i++) {
        check_bad((const char *const[]){"OMPI_COMM_WORLD_RANK", bad[i], "OMPI_COMM_WORLD_SIZE", "2", NULL},
                  "OMPI_COMM_WORLD_RANK");
        check_bad((const char *const[]){"OMPI_COMM_WORLD_RANK", "0", "OMPI_COMM_WORLD_SIZE", bad[i], NULL},
                  "OMPI_COMM_WORLD_SIZE");
        check_bad((const char *const[]){"SLURM_PROCID", "0", "SLURM_STEP_NUM_TASKS", "2", "SLURM_LOCALID", bad[i], NULL},
                  "SLURM_LOCALID");
    }
    /* rank >= size, size 0, a rank without a size, local rank >= local size */
    check_bad((const char *const[]){"OMPI_COMM_WORLD_RANK", "2", "OMPI_COMM_WORLD_SIZE", "2", NULL},
              "OMPI_COMM_WORLD_RANK=2 is not below OMPI_COMM_WORLD_SIZE=2");
    check_bad((const char *const[]){"OMPI_COMM_WORLD_RANK", "0", "OMPI_COMM_WORLD_SIZE", "0", NULL},
              "OMPI_COMM_WORLD_SIZE=0");
    check_bad((const char *const[]){"OMPI_COMM_WORLD_RANK", "0", NULL}, "OMPI_COMM_WORLD_SIZE");
    check_bad((const char *const[]){"PMIX_RANK", "0", NULL}, "PMI_SIZE");
    check_bad((const char *const[]){"OMPI_COMM_WORLD_RANK", "1", "OMPI_COMM_WORLD_SIZE", "4",
                                    "OMPI_COMM_WORLD_LOCAL_RANK", "2", "OMPI_COMM_WORLD_LOCAL_SIZE", "2", NULL},
              "OMPI_COMM_WORLD_LOCAL_RANK=2 is not below OMPI_COMM_WORLD_LOCAL_SIZE=2");
    check_bad((const char *const[]){"OMPI_COMM_WORLD_RANK", "1", "OMPI_COMM_WORLD_SIZE", "4",
                                    "OMPI_COMM_WORLD_LOCAL_RANK", "0", "OMPI_COMM_WORLD_LOCAL_SIZE", "5", NULL},
              "OMPI_COMM_WORLD_LOCAL_SIZE=5");
    check_bad((const char *const[]){"OMPI_COMM_WORLD_RANK", "1", "OMPI_COMM_WORLD_SIZE", "2",
                                    "OMPI_COMM_WORLD_LOCAL_RANK", "2", NULL},
              "OMPI_COMM_WORLD_LOCAL_RANK=2 is not below OMPI_COMM_WORLD_SIZE=2");
    const char *const tpn[] = {"", "x", "2(x", "2(x0)", "2(3)", "0", "2,", "2(x3)1", "2,,1", NULL};
    for (int i = 0; tpn[i]; i++)
        check_bad((const char *const[]){"SLURM_PROCID", "0", "SLURM_STEP_NUM_TASKS", "2", "SLURM_LOCALID", "0",
                                        "SLURM_NODEID", "0", "SLURM_STEP_TASKS_PER_NODE", tpn[i], NULL},
                  "SLURM_STEP_TASKS_PER_NODE");
    env_restore();
}

TEST(dist_single)
{
    env_clear();
    dfm_dist *d = NULL;
    CHECK_EQ(dfm_dist_init(&d, NULL), 0);
    if (!d) {
        env_restore();
        return;
    }
    CHECK_STR(dfm_dist_backend(d), "single");
    CHECK_EQ(dfm_dist_rank(d), 0);
    CHECK_EQ(dfm_dist_size(d), 1);
    CHECK_EQ(dfm_dist_local_rank(d), 0);
    /* allreduce: the sum of one rank is its buffer, bits untouched (a NaN payload included) */
    float f[5] = {1.5f, -0.0f, 3e-39f, 1e30f, NAN}, f0[5];
    memcpy(f0, f, sizeof f);
    CHECK_EQ(dfm_dist_allreduce(d, f, 5, DFM_F32, DFM_CPU), 0);
    CHECK(!memcmp(f, f0, sizeof f));
    double g[3] = {1.0 / 3, -2, 1e300}, g0[3];
    memcpy(g0, g, sizeof g);
    CHECK_EQ(dfm_dist_allreduce(d, g, 3, DFM_DIST_F64, DFM_CPU), 0);
    CHECK(!memcmp(g, g0, sizeof g));
    /* reduce_scatter: block 0 of one is the whole send buffer */
    double rs[3] = {0};
    CHECK_EQ(dfm_dist_reduce_scatter(d, g, rs, 3, DFM_DIST_F64, DFM_CPU), 0);
    CHECK(!memcmp(rs, g, sizeof g));
    float rf[5] = {0};
    CHECK_EQ(dfm_dist_reduce_scatter(d, f, rf, 5, DFM_F32, DFM_CPU), 0);
    CHECK(!memcmp(rf, f, sizeof f));
    /* allgather: any dtype, also in place */
    uint8_t u[4] = {1, 2, 3, 4}, ur[4] = {0};
    CHECK_EQ(dfm_dist_allgather(d, u, ur, 4, DFM_U8, DFM_CPU), 0);
    CHECK(!memcmp(u, ur, 4));
    int64_t iv[2] = {-5, 1LL << 40}, ir[2] = {0};
    CHECK_EQ(dfm_dist_allgather(d, iv, ir, 2, DFM_I64, DFM_CPU), 0);
    CHECK(!memcmp(iv, ir, sizeof iv));
    CHECK_EQ(dfm_dist_allgather(d, ur, ur, 4, DFM_U8, DFM_CPU), 0);
    CHECK(!memcmp(u, ur, 4));
    /* broadcast and barrier: nothing to do */
    char b[6] = "hello";
    CHECK_EQ(dfm_dist_broadcast(d, b, 6, 0, DFM_CPU), 0);
    CHECK_STR(b, "hello");
    CHECK_EQ(dfm_dist_barrier(d), 0);
    /* zero elements: NULL is fine */
    CHECK_EQ(dfm_dist_allreduce(d, NULL, 0, DFM_F32, DFM_CPU), 0);
    CHECK_EQ(dfm_dist_reduce_scatter(d, NULL, NULL, 0, DFM_F32, DFM_CPU), 0);
    CHECK_EQ(dfm_dist_allgather(d, NULL, NULL, 0, DFM_U8, DFM_CPU), 0);
    CHECK_EQ(dfm_dist_broadcast(d, NULL, 0, 0, DFM_CPU), 0);
    /* bad arguments */
    uint16_t h[2] = {0};
    CHECK_EQ(dfm_dist_allreduce(d, h, 2, DFM_BF16, DFM_CPU), DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "allreduce: dtype BF16") != NULL);
    CHECK_EQ(dfm_dist_reduce_scatter(d, iv, ir, 2, DFM_I64, DFM_CPU), DFM_E_ARG);
    CHECK_EQ(dfm_dist_allreduce(d, NULL, 3, DFM_F32, DFM_CPU), DFM_E_ARG);
    CHECK_EQ(dfm_dist_allreduce(d, f, 5, DFM_F32, (dfm_device)9), DFM_E_ARG);
    CHECK_EQ(dfm_dist_reduce_scatter(d, f, f + 1, 3, DFM_F32, DFM_CPU), DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "overlap") != NULL);
    CHECK_EQ(dfm_dist_allgather(d, u + 1, u, 2, DFM_U8, DFM_CPU), DFM_E_ARG);
    CHECK_EQ(dfm_dist_allgather(d, u, ur, 2, (dfm_dtype)99, DFM_CPU), DFM_E_ARG);
    CHECK_EQ(dfm_dist_broadcast(d, b, 6, 1, DFM_CPU), DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "root 1 is not a rank of 1") != NULL);
    CHECK_EQ(dfm_dist_broadcast(d, b, 6, -1, DFM_CPU), DFM_E_ARG);
    CHECK_EQ(dfm_dist_allreduce(d, f, SIZE_MAX / 2, DFM_F32, DFM_CPU), DFM_E_ARG);
    dfm_dist_free(d);
    dfm_dist_free(NULL);

    /* a launcher of size 1 is a job of one too (no plugin needed), at its local rank */
    env_set((const char *const[]){"SLURM_PROCID", "0", "SLURM_STEP_NUM_TASKS", "1", "SLURM_LOCALID", "0", NULL});
    dfm_dist_opts o = {5, DFM_CPU};
    CHECK_EQ(dfm_dist_init(&d, &o), 0);
    if (d) CHECK_STR(dfm_dist_backend(d), "single");
    dfm_dist_free(d);
    /* a malformed launcher variable fails init */
    env_set((const char *const[]){"OMPI_COMM_WORLD_RANK", "one", "OMPI_COMM_WORLD_SIZE", "2", NULL});
    d = (dfm_dist *)1;
    CHECK_EQ(dfm_dist_init(&d, NULL), DFM_E_ARG);
    CHECK(d == NULL);
    o.device = (dfm_device)7;
    env_set((const char *const[]){NULL});
    CHECK_EQ(dfm_dist_init(&d, &o), DFM_E_ARG);
    env_restore();
}

/* Two ranks with a plugin that is missing or not a plugin: errors naming it, no MPI started. */
TEST(dist_plugin_errors)
{
    env_clear();
    dfm_dist *d = NULL;
    env_set((const char *const[]){"OMPI_COMM_WORLD_RANK", "1", "OMPI_COMM_WORLD_SIZE", "2",
                                  "DFM_DIST_PLUGIN", "/nonexistent/dfm-dist-mpi.so", NULL});
    CHECK_EQ(dfm_dist_init(&d, NULL), DFM_E_IO);
    CHECK(strstr(dfm_errmsg(), "DFM_DIST_PLUGIN='/nonexistent/dfm-dist-mpi.so'") != NULL);
    CHECK(d == NULL);
    char path[512];
    snprintf(path, sizeof path, "%s/not-a-plugin.so", dfm_test_tmpdir());
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) fputs("not an ELF file\n", f), fclose(f);
    setenv("DFM_DIST_PLUGIN", path, 1);
    CHECK_EQ(dfm_dist_init(&d, NULL), DFM_E_IO);
    CHECK(strstr(dfm_errmsg(), "cannot load the MPI plugin") != NULL);
    CHECK(d == NULL);
    env_restore();
}

/* dfm_dist_abort in a job of one: the message on stderr, _exit with the code (0 counts as 1). */
TEST(dist_abort_single)
{
    for (int k = 0; k < 2; k++) {
        char path[512];
        snprintf(path, sizeof path, "%s/dist_abort.err", dfm_test_tmpdir());
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            if (!freopen(path, "w", stderr)) _exit(99);
            dfm_dist_abort(NULL, k ? 0 : 3, "bad sample 'x'");
        }
        int st = 0;
        CHECK(pid > 0 && waitpid(pid, &st, 0) == pid);
        CHECK(WIFEXITED(st));
        CHECK_EQ(WEXITSTATUS(st), k ? 1 : 3);
        FILE *f = fopen(path, "r");
        char line[128] = "";
        if (f) {
            if (!fgets(line, sizeof line, f)) line[0] = 0;
            fclose(f);
        }
        CHECK_STR(line, "dfm: rank 0 of 1: bad sample 'x'\n");
    }
}

/* A job of one with device buffers: reduce_scatter and allgather copy on the device, allreduce and
 * broadcast leave the buffer alone. */
TEST(dist_single_cuda)
{
    if (dfm_test_cuda_skip()) return;
    env_clear();
    env_set((const char *const[]){NULL});
    dfm_dist *d = NULL;
    dfm_dist_opts o = {0, DFM_CUDA};
    CHECK_EQ(dfm_dist_init(&d, &o), 0);
    env_restore();
    if (!d) return;
    enum { N = 1001 };
    float h[N], back[N];
    for (int i = 0; i < N; i++) h[i] = (float)i * 0.37f - 100.0f;
    int64_t shape[1] = {N};
    dfm_tensor hv = dfm_tensor_view(h, DFM_F32, DFM_CPU, 1, shape), a = {0}, b = {0};
    CHECK_EQ(dfm_tensor_copy(&a, &hv, DFM_CUDA), 0);
    CHECK_EQ(dfm_tensor_zeros(&b, DFM_F32, DFM_CUDA, 1, shape), 0);
    if (a.data && b.data) {
        CHECK_EQ(dfm_dist_allreduce(d, a.data, N, DFM_F32, DFM_CUDA), 0);
        CHECK_EQ(dfm_dist_broadcast(d, a.data, N * 4, 0, DFM_CUDA), 0);
        CHECK_EQ(dfm_dist_reduce_scatter(d, a.data, b.data, N, DFM_F32, DFM_CUDA), 0);
        dfm_tensor c = {0};
        CHECK_EQ(dfm_tensor_copy(&c, &b, DFM_CPU), 0);
        if (c.data) CHECK(!memcmp(c.data, h, sizeof h));
        dfm_tensor_free(&c);
        CHECK_EQ(dfm_tensor_zero(&b), 0);
        /* bytes of any dtype, an odd count */
        CHECK_EQ(dfm_dist_allgather(d, a.data, b.data, 7, DFM_U8, DFM_CUDA), 0);
        CHECK_EQ(dfm_tensor_copy(&c, &b, DFM_CPU), 0);
        if (c.data) {
            memcpy(back, c.data, sizeof back);
            CHECK(!memcmp(back, h, 7));
            CHECK(((unsigned char *)back)[7] == 0);
        }
        dfm_tensor_free(&c);
    }
    dfm_tensor_free(&a);
    dfm_tensor_free(&b);
    dfm_dist_free(d);
}
