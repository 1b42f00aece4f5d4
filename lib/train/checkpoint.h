/* checkpoint.h — the checkpoints of a run directory: publishing step_<N>/ atomically, the LATEST
 * pointer, pruning old steps, and finding what to resume from (DESIGN.md 8, nemo.md 4.3).
 *
 * Layout of run_dir:
 *   step_<N>/            a published checkpoint (N: the step, decimal, no leading zeros); complete
 *                        when it holds state/trainer.json
 *   step_<N>.tmp/        a checkpoint being written (begin .. commit); a leftover is an
 *                        interrupted save and never read
 *   LATEST               relative symlink -> "step_<N>", replaced atomically (symlink LATEST.tmp,
 *                        rename over LATEST), as NeMo AutoModel writes it
 *   LATEST.txt           "step_<N>\n", the same for filesystems without symlinks
 * A save: dfm_ckpt_begin, then the caller writes the weights into step_<N>.tmp/ and its state
 * into step_<N>.tmp/state/ (trainer.json among them: it marks a complete checkpoint), then
 * dfm_ckpt_commit.
 * A crash at any point leaves the previous LATEST and its directory intact.
 *
 * Not here: what the files hold (train/trainer.h, models/), the loop (train/run.h), NeMo's
 * epoch_<E>_step_<S> names and its model-signature check on auto-detected checkpoints.
 * ref: NeMo Automodel components/checkpoint/checkpointing.py (LATEST symlink + LATEST.txt,
 *      .incomplete marker), recipes/base_recipe.py (restore_from: null / "LATEST" / a path)
 */
#ifndef DFM_TRAIN_CHECKPOINT_H
#define DFM_TRAIN_CHECKPOINT_H
#include <stddef.h>
#include <stdint.h>
#include "base/error.h"
#include "base/json.h"

/* dfm_ckpt_resolve's answer when run_dir holds nothing to resume from (the caller starts fresh):
 * lib/base/error.h has no "not found"; DFM_E_SKIP is its "valid, but this step does not apply". */
#define DFM_CKPT_NONE DFM_E_SKIP

/* Start checkpoint `step` (>= 0) in run_dir (an existing directory): removes a stale
 * run_dir/step_<N>.tmp, creates it and its state/ subdirectory, and returns its path in tmp
 * (capacity n). Errors (DFM_E_IO, naming the path): run_dir missing, not a directory, not
 * writable; DFM_E_ARG: a negative step, tmp too small. */
int dfm_ckpt_begin(const char *run_dir, int64_t step, char *tmp, size_t n);

/* Publish checkpoint `step`: step_<N>.tmp must exist and hold state/trainer.json (else DFM_E_ARG).
 * Every file and directory under it is fsync'd, it is renamed to step_<N> (an existing step_<N>
 * is swapped out atomically where the filesystem can, RENAME_EXCHANGE, else renamed aside to
 * step_<N>.old.tmp first; the old one is removed after), run_dir is fsync'd, then LATEST is
 * pointed at it (symlink, where the filesystem has them) and LATEST.txt rewritten (tmp + fsync
 * + rename). Then prune: keep the keep_last step_<N> directories with the highest N
 * (keep_last <= 0: keep all); the LATEST target is never removed. */
int dfm_ckpt_commit(const char *run_dir, int64_t step, int keep_last);

/* What to resume from. spec NULL or "LATEST": the LATEST symlink's target when it is a complete
 * step_<N>, else LATEST.txt's, else the complete step_<N> with the highest N; DFM_CKPT_NONE
 * (message says why) when there is none. spec "step_<N>" (looked up in run_dir first) or a path
 * to a checkpoint directory: that directory, which must be complete (DFM_E_ARG otherwise, naming
 * what run_dir has); its step from its name step_<N>, else from state/trainer.json's "step".
 * Fills dir (capacity n: the path, run_dir + "/" + name for a step in run_dir) and *step.
 * DFM_E_IO when run_dir is missing or not a directory. Leftover .tmp directories are ignored. */
int dfm_ckpt_resolve(const char *run_dir, const char *spec, char *dir, size_t n, int64_t *step);

/* Remove the leftovers of interrupted saves: step_*.tmp entries (directories or files,
 * including step_<N>.old.tmp) and LATEST.tmp. *removed (NULL allowed): the step_*.tmp count. */
int dfm_ckpt_clean_tmp(const char *run_dir, int *removed);

/* Small JSON state files (state/trainer.json: step, epoch, batch position, seeds, losses).
 * write: obj pretty-printed (two-space indent), written as path.tmp, fsync'd, renamed.
 * read: the file parsed into *obj (owned by the caller: cJSON_Delete); DFM_E_IO when it cannot
 * be read, DFM_E_FORMAT (with the byte offset) when it is not JSON, DFM_E_LIMIT over 64 MiB. */
int dfm_ckpt_write_json(const char *path, const cJSON *obj);
int dfm_ckpt_read_json(const char *path, cJSON **obj);

#endif
