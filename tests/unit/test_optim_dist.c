/* test_optim_dist.c — the sharded AdamW of lib/train/optim_dist.c in a job of one (the layouts
 * of 2 and 3 ranks, and resuming across world sizes, are tests/pipeline/train_dist.sh's, under
 * mpirun):
 *   a sharded optimizer (one rank: one piece per bucket) takes bit for bit the replicated
 *     optimizer's steps, clipping included, over parameters that cross a bucket boundary;
 *     its gradient norm agrees within 1e-12 relative (another summation order);
 *   state saved sharded loads into a replicated optimizer and the other way round, each then
 *     continuing bit for bit; a state of other parameters is refused naming them. */
#include "test.h"

#include "base/error.h"
#include "dist/dist.h"
#include "train/optim.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static uint64_t g_rng;
static float urand(void)
{
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)((z >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

#define NP 3
static const int64_t sizes[NP] = {5, DFM_ADAMW_BUCKET + 3, 7}; /* the flat vector spans two buckets */
static const char *const names[NP] = {"a.weight", "b.weight", "c.bias"};

typedef struct {
    dfm_tensor p[NP], g[NP];
    dfm_adamw *o;
} model;

static int model_new(model *m, uint64_t seed)
{
    memset(m, 0, sizeof *m);
    dfm_adamw_opts ao = {0.9, 0.999, 1e-8, 0.01};
    if (dfm_adamw_new(&m->o, &ao)) return -1;
    g_rng = seed;
    for (int i = 0; i < NP; i++) {
        if (dfm_tensor_alloc(&m->p[i], DFM_F32, DFM_CPU, 1, &sizes[i]) || dfm_tensor_zeros(&m->g[i], DFM_F32, DFM_CPU, 1, &sizes[i]))
            return -1;
        float *p = m->p[i].data;
        for (int64_t k = 0; k < sizes[i]; k++) p[k] = urand();
        if (dfm_adamw_add(m->o, names[i], &m->p[i], &m->g[i])) return -1;
    }
    return 0;
}

static void model_free(model *m)
{
    dfm_adamw_free(m->o);
    for (int i = 0; i < NP; i++) dfm_tensor_free(&m->p[i]), dfm_tensor_free(&m->g[i]);
}

static void fill_grads(model *m, uint64_t seed)
{
    g_rng = seed;
    for (int i = 0; i < NP; i++) {
        float *g = m->g[i].data;
        for (int64_t k = 0; k < sizes[i]; k++) g[k] = urand() * 0.5f;
    }
}

/* one training step as the trainer takes it: (reduce), norm, clip to 1, AdamW */
static int step(model *m, dfm_dist *d, int sharded, double *norm)
{
    if (sharded && dfm_adamw_reduce_grads(m->o, d)) return -1;
    int fin;
    *norm = dfm_adamw_grad_norm(m->o, &fin);
    if (!fin) return -1;
    float coef = 1.0f / ((float)*norm + 1e-6f);
    if (coef < 1.0f && dfm_adamw_scale_grads(m->o, coef)) return -1;
    return dfm_adamw_step(m->o, 1e-3);
}

static int same_params(const model *a, const model *b)
{
    for (int i = 0; i < NP; i++)
        if (memcmp(a->p[i].data, b->p[i].data, (size_t)sizes[i] * sizeof(float))) return 0;
    return 1;
}

TEST(optim_sharded_one_rank)
{
    dfm_dist *d = NULL;
    CHECK_EQ(dfm_dist_init(&d, NULL), 0);
    CHECK_EQ(dfm_dist_size(d), 1);
    model a, b;
    CHECK_EQ(model_new(&a, 11), 0);
    CHECK_EQ(model_new(&b, 11), 0);
    CHECK_EQ(dfm_adamw_shard(b.o, d), 0);
    CHECK(dfm_adamw_shard(b.o, d) < 0); /* twice */
    for (int s = 0; s < 3; s++) {
        fill_grads(&a, 100 + s);
        fill_grads(&b, 100 + s);
        double na = 0, nb = 0;
        CHECK_EQ(step(&a, d, 0, &na), 0);
        CHECK_EQ(step(&b, d, 1, &nb), 0);
        CHECK(fabs(na - nb) <= 1e-12 * na);
        CHECK(same_params(&a, &b));
    }

    /* sharded state -> replicated optimizer, replicated state -> sharded optimizer */
    char ds[512], dr[512];
    snprintf(ds, sizeof ds, "%s/optim_dist_sharded", dfm_test_tmpdir());
    snprintf(dr, sizeof dr, "%s/optim_dist_replicated", dfm_test_tmpdir());
    mkdir(ds, 0755), mkdir(dr, 0755);
    CHECK_EQ(dfm_adamw_save_state(b.o, ds), 0);
    CHECK_EQ(dfm_adamw_save_state(a.o, dr), 0);
    char f[1024];
    struct stat sb;
    snprintf(f, sizeof f, "%s/optimizer-rank-00000-of-00001.safetensors", ds);
    CHECK_EQ(stat(f, &sb), 0);
    model c, e;
    CHECK_EQ(model_new(&c, 11), 0);
    CHECK_EQ(model_new(&e, 11), 0);
    for (int i = 0; i < NP; i++) { /* the parameters as they are now (a checkpoint holds them too) */
        memcpy(c.p[i].data, a.p[i].data, (size_t)sizes[i] * sizeof(float));
        memcpy(e.p[i].data, a.p[i].data, (size_t)sizes[i] * sizeof(float));
    }
    CHECK_EQ(dfm_adamw_load_state(c.o, ds), 0); /* replicated from sharded */
    CHECK_EQ(dfm_adamw_shard(e.o, d), 0);
    CHECK_EQ(dfm_adamw_load_state(e.o, dr), 0); /* sharded from replicated */
    CHECK_EQ(dfm_adamw_steps(c.o), 3);
    CHECK_EQ(dfm_adamw_steps(e.o), 3);
    model *all[4] = {&a, &b, &c, &e};
    for (int k = 0; k < 4; k++) {
        fill_grads(all[k], 200);
        double n;
        CHECK_EQ(step(all[k], d, k == 1 || k == 3, &n), 0);
    }
    CHECK(same_params(&a, &c));
    CHECK(same_params(&a, &e));
    CHECK(same_params(&a, &b));

    /* a state of other parameters */
    model x;
    memset(&x, 0, sizeof x);
    dfm_adamw_opts ao = {0.9, 0.999, 1e-8, 0.01};
    CHECK_EQ(dfm_adamw_new(&x.o, &ao), 0);
    int64_t n5 = 5;
    CHECK_EQ(dfm_tensor_zeros(&x.p[0], DFM_F32, DFM_CPU, 1, &n5), 0);
    CHECK_EQ(dfm_tensor_zeros(&x.g[0], DFM_F32, DFM_CPU, 1, &n5), 0);
    CHECK_EQ(dfm_adamw_add(x.o, "a.weight", &x.p[0], &x.g[0]), 0);
    CHECK_EQ(dfm_adamw_shard(x.o, d), 0);
    CHECK_EQ(dfm_adamw_load_state(x.o, ds), DFM_E_FORMAT);
    CHECK(strstr(dfm_errmsg(), "other trainable parameters") != NULL);
    CHECK_EQ(dfm_adamw_load_state(x.o, dr), DFM_E_FORMAT);
    CHECK_EQ(dfm_adamw_load_state(x.o, dfm_test_tmpdir()), DFM_E_FORMAT); /* no state at all */
    dfm_adamw_free(x.o);
    dfm_tensor_free(&x.p[0]), dfm_tensor_free(&x.g[0]);

    model_free(&a), model_free(&b), model_free(&c), model_free(&e);
    dfm_dist_free(d);
}
