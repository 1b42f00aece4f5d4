/* run.h — a dfm-train run: the loop around the trainer. Reads the shards, draws each step's
 * micro-batches, logs (stderr, TensorBoard), evaluates, saves checkpoints into the run directory
 * (checkpoint.h), resumes exactly, and stops cleanly on SIGINT/SIGTERM.
 *
 * Run directory (checkpoint.dir):
 *   config.yaml            the resolved config of the latest start (each resume rewrites it)
 *   step_<N>/              a LoRA adapter_model.safetensors + adapter_config.json, or a diffusers
 *                          transformer (config.json + diffusion_pytorch_model*.safetensors)
 *   step_<N>/state/        trainer.json, optimizer.safetensors, [params.safetensors], run.json
 *                          (epoch, batch position, counters), config.yaml
 *   LATEST, LATEST.txt     the newest step_<N>
 *   events.out.tfevents.*  TensorBoard scalars
 * Exact resume: the same config resumed from step_N gives the same losses and weights, bit for
 * bit on the CPU, as the run that never stopped — noise, sigma, dropout and caption dropout are
 * keyed by (seed, step, sample key), the data order by (seed, epoch), and the optimizer state and
 * parameters are saved exactly.
 */
#ifndef DFM_TRAIN_RUN_H
#define DFM_TRAIN_RUN_H
#include "base/config.h"

typedef struct {
    const char *resume;     /* NULL: a fresh run (a run directory with checkpoints is refused);
                               "LATEST" or "step_N" or a path: continue from there */
    const char *config_path;/* for messages */
    int quiet;
    int stop_after;         /* stop (save and return, as on SIGTERM) after this many steps of this start; 0: none */
} dfm_run_opts;

typedef struct {
    int signo;   /* the signal that stopped the run (0: none, or --stop-after) */
    int started; /* 1 once the first step began: an error after it is a failure of the work, not of the usage */
} dfm_run_result;

/* Train as the resolved config says. Returns 0 when training reached its end (or had nothing
 * left), 1 when stopped early after saving — by SIGINT/SIGTERM (res->signo the signal) or by
 * stop_after (res->signo 0) — and < 0 on errors (the message in dfm_errmsg()). */
int dfm_train_run(const dfm_config *c, const dfm_run_opts *o, dfm_run_result *res);

#endif
