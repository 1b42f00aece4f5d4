/* train_config.h — dfm-train's configuration: the schema of every key (sections model, data,
 * train, optim, lora, flow, checkpoint, logging, eval, seed) with types, defaults and docs, and its
 * reading into the trainer's options.
 *
 * The schema is the one source of the keys: the config loader checks files and overrides against
 * it (lib/base/config.h), `dfm-train --help-config` prints it, docs/training.md describes it.
 * Not here: the loop (run.h), the arithmetic (trainer.h).
 */
#ifndef DFM_TRAIN_TRAIN_CONFIG_H
#define DFM_TRAIN_TRAIN_CONFIG_H
#include "base/config.h"
#include "train/trainer.h"

extern const dfm_cfg_key dfm_train_schema[];
extern const int dfm_train_schema_len;

/* A config with the schema's defaults. */
int dfm_train_config_new(dfm_config **c);

/* The trainer's options from a resolved config. Strings and lists point into c (and into
 * *lists, a NULL-terminated array block allocated here: free() it after the trainer is made).
 * Checks what the types alone cannot (ranges, model.path present), naming the key. */
int dfm_train_config_trainer(const dfm_config *c, dfm_trainer_opts *o, char ***lists);

/* The seed of the run: train.seed, else the top-level seed. */
uint64_t dfm_train_config_seed(const dfm_config *c);

#endif
