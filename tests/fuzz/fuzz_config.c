/* fuzz_config.c — libFuzzer harness for base/config.c: the YAML config loader and the
 * command-line override parser, over a schema with every key type.
 * Input: byte 0 bit 0 picks the path — 0: the rest is a YAML config file for
 * dfm_config_load_string; 1: the rest is NUL-separated arguments for dfm_config_parse_args
 * (argv[0] added). Whatever loads must round-trip: dfm_config_write's text loads into a fresh
 * config with no difference (dfm_config_diff == 0), else abort. */
#include "fuzz.h"
#include "base/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const dfm_cfg_key schema[] = {
    {"seed", DFM_CFG_INT, "0", NULL, "random seed"},
    {"name", DFM_CFG_STR, NULL, NULL, "run name"},
    {"optim.lr", DFM_CFG_FLOAT, "1e-4", NULL, "learning rate"},
    {"optim.betas", DFM_CFG_FLOATLIST, "[0.9, 0.999]", NULL, "Adam betas"},
    {"optim.steps", DFM_CFG_INT, "1000", NULL, "steps"},
    {"optim.ema", DFM_CFG_BOOL, "false", NULL, "EMA"},
    {"flow.timestep", DFM_CFG_ENUM, "logit_normal", "uniform|logit_normal|mode|sigmoid", "sampling"},
    {"flow.shift", DFM_CFG_FLOAT, NULL, NULL, "shift"},
    {"data.dirs", DFM_CFG_STRLIST, NULL, NULL, "dirs"},
    {"data.root", DFM_CFG_STR, "${DFM_FUZZ_UNSET:-/data}", NULL, "root"},
    {"lora.rank", DFM_CFG_INT, NULL, NULL, "rank"},
};
#define N_KEYS ((int)(sizeof schema / sizeof schema[0]))

static void roundtrip(const dfm_config *c)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return;
    if (dfm_config_write(c, f)) abort();
    fclose(f);
    dfm_config *d = NULL;
    if (dfm_config_new(&d, schema, N_KEYS)) abort();
    if (dfm_config_load_string(d, text, "saved.yaml") || dfm_config_diff(c, d, NULL, NULL) != 0) {
        fprintf(stderr, "fuzz_config: the written config does not load back the same:\n%s\n", text);
        abort();
    }
    dfm_config_free(d);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (1 << 16)) return 0;
    dfm_config *c = NULL;
    if (dfm_config_new(&c, schema, N_KEYS)) abort();
    char *text = malloc(size);
    if (!text) return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = 0;
    if (!(data[0] & 1)) {
        /* a NUL inside ends the C string: load_file refuses those, the string loader sees less */
        fz_note("load", dfm_config_load_string(c, text, "fuzz.yaml"));
    } else {
        char *argv[258];
        int argc = 0;
        argv[argc++] = "prog";
        for (char *p = text; p < text + size - 1 && argc < 256; p += strlen(p) + 1) argv[argc++] = p;
        argv[argc] = NULL;
        int n0 = argc, rc = fz_note("args", dfm_config_parse_args(c, &argc, argv));
        if (rc >= 0 && argc + rc != n0) abort();
    }
    roundtrip(c);
    dfm_config_free(c);
    free(text);
    return 0;
}
