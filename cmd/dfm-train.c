/* dfm-train — flow-matching fine-tuning of Wan 2.1 (LoRA or full) from dfm-shard's shards.
 * Thin: arguments and the config; the work is lib/train/run.c. */
#include "base/cli.h"
#include "base/config.h"
#include "base/error.h"
#include "base/log.h"
#include "train/plan.h"
#include "train/run.h"
#include "train/train_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage[] =
    "usage: dfm-train CONFIG.yaml [--SECTION.KEY VALUE ...] [options]\n"
    "Fine-tune a Wan 2.1 text-to-video transformer with flow matching on shards written by\n"
    "dfm-shard (latents.npy + text.npy per sample): a LoRA (lora.rank > 0) or every weight\n"
    "(lora.rank 0). Checkpoints go to checkpoint.dir as step_N/ directories that diffusers,\n"
    "ComfyUI, diffusion-pipe and dfm-sample load; --resume continues exactly where a run stopped.\n"
    "Any config key can be set on the command line: --optim.lr 2e-4, --data.shards 'd/*.tar'.\n"
    "\n"
    "  --resume [STEP]        continue the run in checkpoint.dir from LATEST, or from STEP\n"
    "                         (step_N, or a checkpoint directory); the losses that follow are\n"
    "                         those of the run that never stopped\n"
    "  --stop-after N         train N steps, save and stop (exit 0), e.g. within a job's time limit\n"
    "  --device cpu|cuda      the same as --train.device\n"
    "  -j, --threads N        the same as --train.threads (0: every core)\n"
    "  --seed N               the same as seed: in the config (top-level key)\n"
    "  --print-config         print the resolved config (YAML) and exit\n"
    "  --plan                 print the memory one rank needs (weights, gradients, optimizer,\n"
    "                         activations with and without checkpointing) and whether it fits\n"
    "                         24 GiB and 80 GiB GPUs and this machine; loads nothing, trains nothing\n"
    "  --world N              --plan: for a job of N ranks (default: the launcher's, else 1)\n"
    "  --plan-shape F,H,W     --plan: for latents of F frames, H x W (default: the largest clip in\n"
    "                         data.shards, else 21,60,104: 81 frames at 480x832)\n"
    "  --help-config          every config key with its type, default and meaning\n"
    "  -q, --quiet            no progress lines (the closing summary stays)\n"
    "  -h, --help             this help;  --version  print the version\n"
    "\n"
    "SIGINT or SIGTERM saves a checkpoint and exits with 128 + the signal's number; a second one\n"
    "stops at once. Exit status: 0 done, 1 the training failed, 2 bad usage or config.\n"
    "See dfm-train(1) and docs/training.md.\n";

/* The word after --resume is its STEP when it names a checkpoint (step_N, LATEST, a directory);
 * otherwise it is the next argument (the config file, another option). */
static int resume_spec(const char *a)
{
    struct stat sb;
    if (a[0] == '-') return 0;
    if (!strncmp(a, "step_", 5) || !strcmp(a, "LATEST")) return 1;
    return !stat(a, &sb) && S_ISDIR(sb.st_mode);
}

int main(int argc, char **argv)
{
    dfm_cli_init(argv[0]);
    dfm_config *c = NULL;
    if (dfm_train_config_new(&c)) {
        dfm_log_error("%s", dfm_errmsg());
        return 1;
    }
    /* the dotted overrides (consumed here to find the other arguments; applied again on top of
     * the file below), then our own options */
    char **orig = malloc((argc + 1) * sizeof *orig);
    if (!orig) dfm_usage_error("out of memory");
    memcpy(orig, argv, (argc + 1) * sizeof *orig);
    int orig_argc = argc;
    if (dfm_config_parse_args(c, &argc, argv) < 0) dfm_usage_error("%s", dfm_errmsg());
    const char *config = NULL, *resume = NULL;
    int print = 0, quiet = 0, stop_after = 0, plan = 0;
    dfm_plan_request prq = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help") || !strcmp(a, "--version") || !strcmp(a, "--help-config")) {
            if (a[2] == 'v') printf("dfm-train %s\n", DFM_VERSION);
            else if (!strcmp(a, "--help-config")) dfm_config_help(dfm_train_schema, dfm_train_schema_len, stdout);
            else fputs(usage, stdout);
            dfm_config_free(c);
            free(orig);
            return dfm_close_stdout(0);
        } else if (!strcmp(a, "--print-config")) {
            print = 1;
        } else if (!strcmp(a, "--plan")) {
            plan = 1;
        } else if (!strcmp(a, "--world") || !strcmp(a, "--plan-shape")) {
            if (i + 1 >= argc) dfm_usage_error("%s needs a value", a);
            const char *v = argv[++i];
            char *end;
            if (a[2] == 'w') {
                long n = strtol(v, &end, 10);
                if (end == v || *end || n < 1 || n > 1000000) dfm_usage_error("--world: '%s' is not a number of ranks (1 or more)", v);
                prq.world = (int)n;
            } else {
                const char *s = v;
                for (int k = 0; k < 3; k++) {
                    long n = strtol(s, &end, 10);
                    if (end == s || n < 1 || n > 100000 || *end != (k < 2 ? ',' : '\0'))
                        dfm_usage_error("--plan-shape: '%s' is not F,H,W (latent frames, height, width; e.g. 21,60,104)", v);
                    prq.shape[k] = (int)n;
                    s = end + 1;
                }
            }
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (!strcmp(a, "--resume") || !strncmp(a, "--resume=", 9)) {
            resume = "LATEST";
            if (a[8] == '=') resume = a + 9;
            else if (i + 1 < argc && resume_spec(argv[i + 1]))
                resume = argv[++i];
        } else if (!strcmp(a, "--stop-after") || !strcmp(a, "--device") || !strcmp(a, "-j") || !strcmp(a, "--threads") ||
                   !strcmp(a, "--seed")) {
            if (i + 1 >= argc) dfm_usage_error("%s needs a value", a);
            const char *v = argv[++i];
            if (!strcmp(a, "--stop-after")) {
                char *end;
                long n = strtol(v, &end, 10);
                if (*end || n < 1 || n > 1000000000) dfm_usage_error("--stop-after: '%s' is not a positive number of steps", v);
                stop_after = (int)n;
            } else if (dfm_config_set(c, !strcmp(a, "--device") ? "train.device" : !strcmp(a, "--seed") ? "seed" : "train.threads",
                                      v, a)) {
                dfm_usage_error("%s", dfm_errmsg());
            }
        } else if (a[0] == '-' && a[1]) {
            dfm_usage_error("unknown option '%s' (config keys are --section.key; see --help-config)", a);
        } else if (!config) {
            config = a;
        } else {
            dfm_usage_error("one config file, not '%s' and '%s'", config, a);
        }
    }
    /* the file first, then the command line again on top (later settings win) */
    if (config) {
        dfm_config *f = NULL;
        if (dfm_train_config_new(&f) || dfm_config_load_file(f, config) || dfm_config_parse_args(f, &orig_argc, orig) < 0)
            dfm_usage_error("%s", dfm_errmsg());
        /* our own options that set keys (--device, --threads) were applied to c: carry them over */
        for (int k = 0; k < 3; k++) {
            const char *key = k == 0 ? "train.device" : k == 1 ? "train.threads" : "seed";
            const char *origin = dfm_config_origin(c, key);
            if (!dfm_config_is_set(c, key) || !strcmp(origin, "command line")) continue;
            char *v = dfm_config_value_text(c, key);
            if (!v) dfm_usage_error("out of memory");
            if (v[0] == '"') { /* value text quotes strings */
                memmove(v, v + 1, strlen(v));
                v[strlen(v) - 1] = 0;
            }
            int rc = dfm_config_set(f, key, v, origin);
            free(v);
            if (rc) dfm_usage_error("%s", dfm_errmsg());
        }
        dfm_config_free(c);
        c = f;
    }
    free(orig);
    if (print) {
        dfm_config_write(c, stdout);
        dfm_config_free(c);
        return dfm_close_stdout(0);
    }
    if (!config && !dfm_config_has(c, "model.path")) dfm_usage_error("no config file (see --help, and configs/ for examples)");
    if (!plan && (prq.world || prq.shape[0])) dfm_usage_error("--world and --plan-shape go with --plan");
    if (plan) {
        prq.config_path = config;
        int rc = dfm_plan_run(c, &prq, stdout);
        dfm_config_free(c);
        if (rc < 0) {
            dfm_log_error("%s", dfm_errmsg());
            return rc == DFM_E_ARG ? 2 : 1;
        }
        return dfm_close_stdout(0);
    }
    dfm_log_set_quiet(quiet);
    dfm_run_opts ro = {.resume = resume, .config_path = config, .quiet = quiet, .stop_after = stop_after};
    dfm_run_result res;
    int rc = dfm_train_run(c, &ro, &res);
    dfm_config_free(c);
    if (rc < 0) {
        dfm_log_error("%s", dfm_errmsg());
        return rc == DFM_E_ARG && !res.started ? 2 : 1; /* a bad setting is usage; a failure while training is not */
    }
    return rc == 1 && res.signo ? 128 + res.signo : 0;
}
