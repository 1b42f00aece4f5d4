/* optim_internal.h — the AdamW optimizer's state, shared by optim.c (replicated: every rank
 * holds every moment) and optim_shard.c (the moments of this rank's shard only). Private to
 * lib/train. */
#ifndef DFM_TRAIN_OPTIM_INTERNAL_H
#define DFM_TRAIN_OPTIM_INTERNAL_H
#include "train/optim.h"

typedef struct {
    char *name;
    dfm_tensor *param, *grad;
    dfm_tensor m, v; /* exp_avg, exp_avg_sq: owned; allocated (zeros) at the first use, never when sharded */
} slot;

typedef struct dfm_adamw_sharded dfm_adamw_sharded;

struct dfm_adamw {
    dfm_adamw_opts opts;
    int64_t step;
    slot *s;
    int n, cap;
    dfm_adamw_sharded *sh; /* NULL: replicated */
    double comm_s;         /* seconds in collectives (optim_dist.c) */
    void *repl;            /* optim_dist.c: the replicated reduction's per-step state */
};

#define STATE_FORMAT "dfm-adamw-1"
#define SHARD_FORMAT "dfm-adamw-shard-2" /* buckets by block (optim_dist.c) */

/* optim.c: the moments of every slot allocated (zeros) where they are not yet */
int dfm_adamw_state_ready(dfm_adamw *o);
/* optim_shard.c */
void dfm_adamw_shard_free(dfm_adamw_sharded *sh);
void dfm_adamw_repl_free(void *repl);
int dfm_adamw_shard_step(dfm_adamw *o, const dfm_adamw_coef *c);
double dfm_adamw_shard_grad_norm(dfm_adamw *o, int *finite);
int dfm_adamw_shard_scale(dfm_adamw *o, float coef);

#endif
