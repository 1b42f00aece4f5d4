/* test_config.c — lib/base/config: typed YAML config with command-line overrides. Every user
 * error is checked for its message (key and line), write -> load round trips over every type
 * (exact doubles, hostile strings), override order, argv compaction, diff, environment
 * interpolation, and a fuzz-style loop over truncated and garbled YAML. */
#include "test.h"
#include "base/config.h"
#include "base/error.h"

#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

static const dfm_cfg_key k_schema[] = {
    {"seed", DFM_CFG_INT, "0", NULL, "random seed"},
    {"name", DFM_CFG_STR, NULL, NULL, "run name"},
    {"optim.lr", DFM_CFG_FLOAT, "1e-4", NULL, "learning rate"},
    {"optim.betas", DFM_CFG_FLOATLIST, "[0.9, 0.999]", NULL, "Adam betas"},
    {"optim.steps", DFM_CFG_INT, "1000", NULL, "optimizer steps"},
    {"optim.ema", DFM_CFG_BOOL, "false", NULL, "keep an EMA of the weights"},
    {"flow.timestep", DFM_CFG_ENUM, "logit_normal", "uniform|logit_normal|mode|sigmoid", "timestep sampling"},
    {"flow.shift", DFM_CFG_FLOAT, NULL, NULL, "timestep shift (null: none)"},
    {"data.dirs", DFM_CFG_STRLIST, NULL, NULL, "dataset directories"},
    {"data.root", DFM_CFG_STR, "/data", NULL, "data root"},
    {"data.caption", DFM_CFG_STR, NULL, NULL, "caption template"},
    {"lora.rank", DFM_CFG_INT, "16", NULL, "LoRA rank"},
    {"optim.eps", DFM_CFG_FLOAT, "1e-8", NULL, "Adam epsilon (a section split in the schema)"},
    {"flow.weights", DFM_CFG_FLOATLIST, NULL, NULL, "per-bucket loss weights"},
    {"max_steps", DFM_CFG_INT, NULL, NULL, "stop after this many steps"},
};
#define K_N ((int)(sizeof k_schema / sizeof k_schema[0]))

static dfm_config *fresh(void)
{
    dfm_config *c = NULL;
    int rc = dfm_config_new(&c, k_schema, K_N);
    if (rc) fprintf(stderr, "  dfm_config_new: %s\n", dfm_errmsg());
    return c;
}

static int has_all(const char *m, const char *s1, const char *s2)
{
    return (!s1 || strstr(m, s1)) && (!s2 || strstr(m, s2));
}

/* The load must fail with DFM_E_ARG, a message holding s1 and s2, and change nothing. */
static void expect_load_err(int line, const char *yaml, const char *s1, const char *s2)
{
    dfm_config *c = fresh(), *ref = fresh();
    int rc = dfm_config_load_string(c, yaml, "config.yaml");
    const char *m = dfm_errmsg();
    if (rc != DFM_E_ARG || !has_all(m, s1, s2)) {
        fprintf(stderr, "  %s:%d: load of \"%s\" gave %d '%s', want '%s' '%s'\n", __FILE__, line,
                yaml, rc, m, s1 ? s1 : "", s2 ? s2 : "");
        dfm_test_failures++;
    }
    if (dfm_config_diff(c, ref, NULL, NULL) != 0) {
        fprintf(stderr, "  %s:%d: a failed load changed the config\n", __FILE__, line);
        dfm_test_failures++;
    }
    dfm_config_free(c);
    dfm_config_free(ref);
}
#define LOAD_ERR(y, s1, s2) expect_load_err(__LINE__, y, s1, s2)

static void expect_set_err(int line, const char *key, const char *val, const char *s1, const char *s2)
{
    dfm_config *c = fresh(), *ref = fresh();
    int rc = dfm_config_set(c, key, val, NULL);
    const char *m = dfm_errmsg();
    if (rc != DFM_E_ARG || !has_all(m, s1, s2)) {
        fprintf(stderr, "  %s:%d: set %s '%s' gave %d '%s', want '%s' '%s'\n", __FILE__, line, key,
                val ? val : "(null)", rc, m, s1 ? s1 : "", s2 ? s2 : "");
        dfm_test_failures++;
    }
    if (dfm_config_diff(c, ref, NULL, NULL) != 0) {
        fprintf(stderr, "  %s:%d: a failed set changed the config\n", __FILE__, line);
        dfm_test_failures++;
    }
    dfm_config_free(c);
    dfm_config_free(ref);
}
#define SET_ERR(k, v, s1, s2) expect_set_err(__LINE__, k, v, s1, s2)

TEST(config_defaults)
{
    dfm_config *c = fresh();
    CHECK(c != NULL);
    if (!c) return;
    CHECK_EQ(dfm_config_int(c, "seed"), 0);
    CHECK(dfm_config_str(c, "name") == NULL);
    CHECK(dfm_config_float(c, "optim.lr") == 1e-4);
    CHECK_EQ(dfm_config_list_len(c, "optim.betas"), 2);
    CHECK(dfm_config_list_float(c, "optim.betas", 0) == 0.9);
    CHECK(dfm_config_list_float(c, "optim.betas", 1) == 0.999);
    CHECK_EQ(dfm_config_int(c, "optim.steps"), 1000);
    CHECK_EQ(dfm_config_bool(c, "optim.ema"), 0);
    CHECK_STR(dfm_config_str(c, "flow.timestep"), "logit_normal");
    CHECK_EQ(dfm_config_has(c, "flow.shift"), 0);
    CHECK(dfm_config_float(c, "flow.shift") == 0);
    CHECK_EQ(dfm_config_list_len(c, "data.dirs"), 0);
    CHECK_STR(dfm_config_str(c, "data.root"), "/data");
    CHECK_EQ(dfm_config_int(c, "max_steps"), 0);
    CHECK_EQ(dfm_config_has(c, "max_steps"), 0);
    for (int i = 0; i < K_N; i++) {
        CHECK_EQ(dfm_config_is_set(c, k_schema[i].key), 0);
        CHECK_STR(dfm_config_origin(c, k_schema[i].key), "default");
    }
    dfm_config_free(c);
}

TEST(config_load_values)
{
    dfm_config *c = fresh();
    const char *y =
        "# a training config\n"
        "seed: 42\n"
        "name: \"run #1: test\"\n"
        "optim:\n"
        "  lr: 3\n"               /* an int for a FLOAT */
        "  betas: [0.5, 1e-1]\n"
        "  steps: 1e4\n"          /* an integral float for an INT */
        "  ema: YES\n"
        "flow:\n"
        "  timestep: mode\n"
        "  shift: -2.5\n"
        "data:\n"
        "  dirs:\n"
        "    - /a\n"
        "    - 'b c'\n"
        "lora.rank: \"32\"\n"     /* dotted key at top level, quoted number */
        "max_steps: -7\n";
    int rc = dfm_config_load_string(c, y, "config.yaml");
    CHECK_EQ(rc, 0);
    if (rc) fprintf(stderr, "  %s\n", dfm_errmsg());
    CHECK_EQ(dfm_config_int(c, "seed"), 42);
    CHECK_STR(dfm_config_str(c, "name"), "run #1: test");
    CHECK(dfm_config_float(c, "optim.lr") == 3.0);
    CHECK_EQ(dfm_config_list_len(c, "optim.betas"), 2);
    CHECK(dfm_config_list_float(c, "optim.betas", 1) == 0.1);
    CHECK_EQ(dfm_config_int(c, "optim.steps"), 10000);
    CHECK_EQ(dfm_config_bool(c, "optim.ema"), 1);
    CHECK_STR(dfm_config_str(c, "flow.timestep"), "mode");
    CHECK(dfm_config_float(c, "flow.shift") == -2.5);
    CHECK_EQ(dfm_config_list_len(c, "data.dirs"), 2);
    CHECK_STR(dfm_config_list_str(c, "data.dirs", 1), "b c");
    CHECK_EQ(dfm_config_int(c, "lora.rank"), 32);
    CHECK_EQ(dfm_config_int(c, "max_steps"), -7);
    CHECK_STR(dfm_config_origin(c, "seed"), "config.yaml:2");
    CHECK_STR(dfm_config_origin(c, "optim.ema"), "config.yaml:8");
    CHECK_STR(dfm_config_origin(c, "data.dirs"), "config.yaml:13");
    CHECK_STR(dfm_config_origin(c, "lora.rank"), "config.yaml:16");
    CHECK_EQ(dfm_config_is_set(c, "optim.lr"), 1);
    CHECK_EQ(dfm_config_is_set(c, "optim.eps"), 0);
    CHECK_STR(dfm_config_origin(c, "optim.eps"), "default");
    /* booleans in every accepted spelling */
    const char *tv[] = {"true", "True", "yes", "on", "ON"}, *fv[] = {"false", "FALSE", "no", "No", "off"};
    for (int i = 0; i < 5; i++) {
        char buf[64];
        snprintf(buf, sizeof buf, "optim:\n  ema: %s\n", tv[i]);
        CHECK_EQ(dfm_config_load_string(c, buf, "b.yaml"), 0);
        CHECK_EQ(dfm_config_bool(c, "optim.ema"), 1);
        snprintf(buf, sizeof buf, "optim:\n  ema: %s\n", fv[i]);
        CHECK_EQ(dfm_config_load_string(c, buf, "b.yaml"), 0);
        CHECK_EQ(dfm_config_bool(c, "optim.ema"), 0);
    }
    /* an empty file, a comment-only file and an empty section change nothing */
    CHECK_EQ(dfm_config_load_string(c, "", "e.yaml"), 0);
    CHECK_EQ(dfm_config_load_string(c, "# nothing\n", "e.yaml"), 0);
    CHECK_EQ(dfm_config_load_string(c, "optim:\n", "e.yaml"), 0);
    CHECK_EQ(dfm_config_int(c, "seed"), 42);
    dfm_config_free(c);
}

TEST(config_load_errors)
{
    /* unknown keys and sections, with and without a suggestion */
    LOAD_ERR("optim:\n  lr: 1\n  lrr: 2\n", "config.yaml:3: unknown key 'optim.lrr' (did you mean 'optim.lr'?)", NULL);
    LOAD_ERR("optim:\n  rank: 4\n", "config.yaml:2: unknown key 'optim.rank' (did you mean 'lora.rank'?)", NULL);
    LOAD_ERR("optm:\n  lr: 1\n", "config.yaml:1: unknown section 'optm' (did you mean 'optim'?)", NULL);
    LOAD_ERR("lr: 1\n", "config.yaml:1: unknown key 'lr' (did you mean 'optim.lr'?)", NULL);
    LOAD_ERR("sed: 1\n", "unknown key 'sed' (did you mean 'seed'?)", NULL);
    LOAD_ERR("optim.lrr: 1\n", "unknown key 'optim.lrr' (did you mean 'optim.lr'?)", NULL);
    {
        dfm_config *c = fresh();
        CHECK_EQ(dfm_config_load_string(c, "seed: 1\nzzz_unrelated: 1\n", "config.yaml"), DFM_E_ARG);
        CHECK(strstr(dfm_errmsg(), "config.yaml:2: unknown key 'zzz_unrelated'") != NULL);
        CHECK(strstr(dfm_errmsg(), "did you mean") == NULL);
        dfm_config_free(c);
    }
    /* wrong types */
    LOAD_ERR("optim:\n  lr: fast\n", "config.yaml:2: 'optim.lr' must be a number, not 'fast'", NULL);
    LOAD_ERR("optim:\n  steps: 1.5\n", "config.yaml:2: 'optim.steps' must be an integer, not '1.5'", NULL);
    LOAD_ERR("optim:\n  steps: 99999999999999999999\n", "'optim.steps' is out of range", NULL);
    LOAD_ERR("optim:\n  steps: 1e300\n", "'optim.steps' is out of range", NULL);
    LOAD_ERR("optim:\n  steps: 0x10\n", "'optim.steps' must be an integer", NULL);
    LOAD_ERR("optim:\n  lr: .inf\n", "'optim.lr' must be a number, not '.inf' (finite numbers only)", NULL);
    LOAD_ERR("optim:\n  lr: 1e999\n", "(finite numbers only)", NULL);
    LOAD_ERR("optim:\n  lr: nan\n", "(finite numbers only)", NULL);
    LOAD_ERR("optim:\n  lr: 0x1p3\n", "'optim.lr' must be a number", NULL);
    LOAD_ERR("optim:\n  lr: 1e-4x\n", "'optim.lr' must be a number, not '1e-4x'", NULL);
    LOAD_ERR("optim:\n  lr: [1]\n", "'optim.lr' must be a number, not a list", NULL);
    LOAD_ERR("optim:\n  ema: maybe\n", "config.yaml:2: 'optim.ema' must be true or false", "'maybe'");
    LOAD_ERR("optim:\n  ema: 1\n", "'optim.ema' must be true or false", NULL);
    LOAD_ERR("flow:\n  timestep: logit-normal\n",
             "config.yaml:2: 'flow.timestep' must be one of uniform|logit_normal|mode|sigmoid, not 'logit-normal' (did you mean 'logit_normal'?)", NULL);
    LOAD_ERR("flow:\n  timestep: [mode]\n", "'flow.timestep' must be one of", "not a list");
    LOAD_ERR("name: [a, b]\n", "config.yaml:1: 'name' must be a string, not a list", NULL);
    LOAD_ERR("name: {a: 1}\n", "'name' must be a string, not a mapping", NULL);
    LOAD_ERR("seed:\n  a: 1\n", "'seed' must be an integer, not a mapping", NULL);
    LOAD_ERR("optim:\n  betas: 0.9\n", "config.yaml:2: 'optim.betas' must be a list of numbers", "'0.9'");
    LOAD_ERR("optim:\n  betas: [0.9, x]\n", "config.yaml:2: 'optim.betas'[1] must be a number, not 'x'", NULL);
    LOAD_ERR("optim:\n  betas: [[1]]\n", "'optim.betas'[0] must be a number, not a list", NULL);
    LOAD_ERR("optim:\n  betas: [0.9, .nan]\n", "'optim.betas'[1] must be a number", NULL);
    LOAD_ERR("data:\n  dirs: {a: b}\n", "'data.dirs' must be a string or a list of strings, not a mapping", NULL);
    LOAD_ERR("data:\n  dirs: [a, null]\n", "'data.dirs'[1] is null", NULL);
    LOAD_ERR("data:\n  dirs:\n    - a\n    -\n", "'data.dirs'[1] is null", NULL);
    LOAD_ERR("data:\n  dirs: [a, [b]]\n", "'data.dirs'[1] must be a string, not a list", NULL);
    /* null: an error for INT/FLOAT/BOOL/ENUM with a default */
    LOAD_ERR("optim:\n  lr: null\n", "config.yaml:2: 'optim.lr' must be a number, not null", NULL);
    LOAD_ERR("optim:\n  lr:\n", "'optim.lr' must be a number, not null", NULL);
    LOAD_ERR("optim:\n  ema: ~\n", "'optim.ema' must be true or false, not null", NULL);
    LOAD_ERR("seed: null\n", "'seed' must be an integer, not null", NULL);
    LOAD_ERR("flow:\n  timestep: null\n", "'flow.timestep' must be one of", "not null");
    LOAD_ERR("optim:\n  lr: \"\"\n", "'optim.lr' must be a number, not ''", NULL);
    /* structure */
    LOAD_ERR("optim:\n  lr: 1\n  lr: 2\n", "config.yaml:3: duplicate key 'lr' (first at line 2)", NULL);
    LOAD_ERR("optim:\n  lr: 1\noptim.lr: 2\n", "config.yaml:3: duplicate key 'optim.lr' (first at line 2)", NULL);
    LOAD_ERR("seed: 1\nseed: 2\n", "config.yaml:2: duplicate key 'seed' (first at line 1)", NULL);
    LOAD_ERR("optim:\n  lr: 1\nflow:\n  shift: 1\noptim:\n  eps: 1\n", "config.yaml:5: duplicate key 'optim' (first at line 1)", NULL);
    LOAD_ERR("- a\n- b\n", "config.yaml:1: the top level must be a mapping", "not a list");
    LOAD_ERR("hello\n", "the top level must be a mapping of sections and keys, not 'hello'", NULL);
    LOAD_ERR("optim: 5\n", "config.yaml:1: 'optim' is a section: it must be a mapping of keys, not '5'", NULL);
    LOAD_ERR("optim:\n  - lr\n", "'optim' is a section: it must be a mapping of keys, not a list", NULL);
    LOAD_ERR("optim:\n  lr.x: 1\n", "unknown key 'optim.lr.x'", NULL);
    LOAD_ERR("? [a]\n: 1\n", "config.yaml:1: a key must be a name, not a list", NULL);
    LOAD_ERR("optim:\n  <<: {lr: 1}\n", "config.yaml:2: merge keys ('<<') are not supported", NULL);
    LOAD_ERR("seed: 1\n---\nseed: 2\n", "config.yaml:2: a second YAML document", NULL);
    LOAD_ERR("name: \"a\\0b\"\n", "'name': value contains a NUL byte", NULL);
    /* malformed YAML: libyaml's problem with line and column */
    LOAD_ERR("optim:\n\tlr: 1\n", "config.yaml:2:1: bad YAML", "; a tab: YAML indents with spaces only");
    LOAD_ERR("optim:\n  lr: 1\n\tsteps: 2\n", "config.yaml:3:", "a tab");
    LOAD_ERR("optim: [1, 2\n", "config.yaml:", "bad YAML");
    LOAD_ERR("optim:\n  lr: 1\n bad: 2\n", "config.yaml:3:", "bad YAML");
    LOAD_ERR("name: \"open\n", "bad YAML", NULL);
    LOAD_ERR("a: *nope\n", "config.yaml:1:4: bad YAML: found undefined alias", NULL);
    LOAD_ERR("optim: {lr: ${X}}\n", "config.yaml:1:", "quote values that hold ${...}");
    /* environment */
    unsetenv("DFM_TEST_UNSET_VAR");
    LOAD_ERR("data:\n  root: ${DFM_TEST_UNSET_VAR}/x\n",
             "config.yaml:2: 'data.root': environment variable 'DFM_TEST_UNSET_VAR' is not set", NULL);
    LOAD_ERR("data:\n  root: ${}\n", "config.yaml:2: 'data.root': bad '${'", NULL);
    LOAD_ERR("data:\n  root: \"${1X}\"\n", "'data.root': bad '${'", NULL);
    LOAD_ERR("data:\n  root: \"${HOME\"\n", "'data.root': unterminated '${'", NULL);
    LOAD_ERR("data:\n  root: \"${HOME:-x\"\n", "'data.root': unterminated '${'", NULL);
    LOAD_ERR("optim:\n  steps: ${DFM_TEST_UNSET_VAR}\n", "'optim.steps': environment variable", NULL);
    /* a bad key after good ones: the good ones are not applied either (checked in LOAD_ERR) */
    LOAD_ERR("seed: 5\noptim:\n  lr: 0.5\n  steps: x\n", "config.yaml:4: 'optim.steps' must be an integer", NULL);
}

TEST(config_load_file)
{
    dfm_config *c = fresh();
    char path[512];
    snprintf(path, sizeof path, "%s/cfg_missing.yaml", dfm_test_tmpdir());
    CHECK_EQ(dfm_config_load_file(c, path), DFM_E_IO);
    CHECK(strstr(dfm_errmsg(), "cfg_missing.yaml") != NULL);
    snprintf(path, sizeof path, "%s/cfg_load.yaml", dfm_test_tmpdir());
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs("seed: 3\noptim:\n  lr: 2e-5\n  eps: oops\n", f);
    fclose(f);
    CHECK_EQ(dfm_config_load_file(c, path), DFM_E_ARG);
    char want[600];
    snprintf(want, sizeof want, "%s:4: 'optim.eps' must be a number, not 'oops'", path);
    CHECK(strstr(dfm_errmsg(), want) != NULL);
    f = fopen(path, "w");
    fputs("seed: 3\noptim:\n  lr: 2e-5\n", f);
    fclose(f);
    CHECK_EQ(dfm_config_load_file(c, path), 0);
    CHECK(dfm_config_float(c, "optim.lr") == 2e-5);
    snprintf(want, sizeof want, "%s:3", path);
    CHECK_STR(dfm_config_origin(c, "optim.lr"), want);
    f = fopen(path, "wb");
    fwrite("seed: 1\n\0x", 1, 10, f);
    fclose(f);
    CHECK_EQ(dfm_config_load_file(c, path), DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "NUL") != NULL);
    dfm_config_free(c);
}

TEST(config_null_resets)
{
    dfm_config *c = fresh();
    const char *y = "name: run\nflow:\n  shift: 3\n  weights: [1, 2]\ndata:\n  dirs: [a]\n  root: /x\nmax_steps: 5\n";
    CHECK_EQ(dfm_config_load_string(c, y, "a.yaml"), 0);
    CHECK_STR(dfm_config_str(c, "name"), "run");
    CHECK_EQ(dfm_config_list_len(c, "flow.weights"), 2);
    y = "name: null\nflow:\n  shift: ~\n  weights:\ndata:\n  dirs: null\n  root: null\nmax_steps: ~\n";
    CHECK_EQ(dfm_config_load_string(c, y, "b.yaml"), 0);
    CHECK(dfm_config_str(c, "name") == NULL);
    CHECK_EQ(dfm_config_has(c, "flow.shift"), 0);
    CHECK_EQ(dfm_config_list_len(c, "flow.weights"), 0);
    CHECK_EQ(dfm_config_list_len(c, "data.dirs"), 0);
    CHECK(dfm_config_str(c, "data.root") == NULL); /* STR with a default may be nulled */
    CHECK_EQ(dfm_config_has(c, "max_steps"), 0);
    CHECK_EQ(dfm_config_is_set(c, "name"), 1);
    CHECK_STR(dfm_config_origin(c, "name"), "b.yaml:1");
    /* quoted "null" is the string; an empty quoted string is a string */
    CHECK_EQ(dfm_config_load_string(c, "name: \"null\"\ndata:\n  caption: ''\n", "c.yaml"), 0);
    CHECK_STR(dfm_config_str(c, "name"), "null");
    CHECK_STR(dfm_config_str(c, "data.caption"), "");
    /* the command line: null / ~ reset STR too */
    CHECK_EQ(dfm_config_set(c, "--name", "~", NULL), 0);
    CHECK(dfm_config_str(c, "name") == NULL);
    CHECK_EQ(dfm_config_set(c, "--flow.shift", "null", NULL), 0);
    CHECK_EQ(dfm_config_has(c, "flow.shift"), 0);
    CHECK_EQ(dfm_config_set(c, "--flow.weights", "", NULL), 0);
    CHECK_EQ(dfm_config_list_len(c, "flow.weights"), 0);
    CHECK_EQ(dfm_config_has(c, "flow.weights"), 0);
    dfm_config_free(c);
}

TEST(config_lists)
{
    dfm_config *c = fresh();
    CHECK_EQ(dfm_config_load_string(c, "data:\n  dirs: /only\n", "l.yaml"), 0);
    CHECK_EQ(dfm_config_list_len(c, "data.dirs"), 1);
    CHECK_STR(dfm_config_list_str(c, "data.dirs", 0), "/only");
    CHECK_EQ(dfm_config_load_string(c, "data:\n  dirs: []\n", "l.yaml"), 0);
    CHECK_EQ(dfm_config_list_len(c, "data.dirs"), 0);
    CHECK_EQ(dfm_config_has(c, "data.dirs"), 1);
    CHECK_EQ(dfm_config_load_string(c, "data:\n  dirs: [\"a, b\", 'c', 12, true]\n", "l.yaml"), 0);
    CHECK_EQ(dfm_config_list_len(c, "data.dirs"), 4);
    CHECK_STR(dfm_config_list_str(c, "data.dirs", 0), "a, b");
    CHECK_STR(dfm_config_list_str(c, "data.dirs", 2), "12");
    CHECK_STR(dfm_config_list_str(c, "data.dirs", 3), "true");
    CHECK_EQ(dfm_config_load_string(c, "optim:\n  betas:\n    - 1\n    - -2.5e-3\n    - '7'\n", "l.yaml"), 0);
    CHECK_EQ(dfm_config_list_len(c, "optim.betas"), 3);
    CHECK(dfm_config_list_float(c, "optim.betas", 0) == 1.0);
    CHECK(dfm_config_list_float(c, "optim.betas", 1) == -2.5e-3);
    CHECK(dfm_config_list_float(c, "optim.betas", 2) == 7.0);
    /* the command line: flow text and scalars, the same rules */
    CHECK_EQ(dfm_config_set(c, "--optim.betas", "[0.5, 0.75]", NULL), 0);
    CHECK_EQ(dfm_config_list_len(c, "optim.betas"), 2);
    CHECK(dfm_config_list_float(c, "optim.betas", 1) == 0.75);
    CHECK_EQ(dfm_config_set(c, "--data.dirs", "/one/dir", NULL), 0);
    CHECK_EQ(dfm_config_list_len(c, "data.dirs"), 1);
    CHECK_STR(dfm_config_list_str(c, "data.dirs", 0), "/one/dir");
    CHECK_EQ(dfm_config_set(c, "--data.dirs", "[x, 'y z']", NULL), 0);
    CHECK_EQ(dfm_config_list_len(c, "data.dirs"), 2);
    CHECK_STR(dfm_config_list_str(c, "data.dirs", 1), "y z");
    CHECK_EQ(dfm_config_set(c, "--optim.betas", "[]", NULL), 0);
    CHECK_EQ(dfm_config_list_len(c, "optim.betas"), 0);
    dfm_config_free(c);
    SET_ERR("--optim.betas", "0.9", "command line: '--optim.betas' must be a list of numbers", NULL);
    SET_ERR("--optim.betas", "[0.9, fast]", "command line: '--optim.betas'[1] must be a number, not 'fast'", NULL);
    SET_ERR("--optim.betas", "[0.9, 0.999", "command line: '--optim.betas': value '[0.9, 0.999' is not valid YAML", NULL);
    SET_ERR("--data.dirs", "{a: b}", "'--data.dirs' must be a string or a list of strings, not a mapping", NULL);
}

TEST(config_set_errors)
{
    SET_ERR("--optim.lr", "fast", "command line: '--optim.lr' must be a number, not 'fast'", NULL);
    SET_ERR("--optim.lr", "inf", "(finite numbers only)", NULL);
    SET_ERR("--optim.lr", "null", "'--optim.lr' must be a number, not null", NULL);
    SET_ERR("--optim.lr", NULL, "'--optim.lr' must be a number, not null", NULL);
    SET_ERR("--optim.lr", "[1]", "'--optim.lr' must be a number, not a list", NULL);
    SET_ERR("--optim.steps", "2.5", "'--optim.steps' must be an integer, not '2.5'", NULL);
    SET_ERR("--optim.ema", "maybe", "'--optim.ema' must be true or false", NULL);
    SET_ERR("--flow.timestep", "sigmod", "'--flow.timestep' must be one of uniform|logit_normal|mode|sigmoid, not 'sigmod' (did you mean 'sigmoid'?)", NULL);
    SET_ERR("--optim.lrr", "1", "command line: unknown key '--optim.lrr' (did you mean '--optim.lr'?)", NULL);
    SET_ERR("optim.lrr", "1", "command line: unknown key 'optim.lrr' (did you mean 'optim.lr'?)", NULL);
    SET_ERR("--train.rank", "1", "unknown key '--train.rank' (did you mean '--lora.rank'?)", NULL);
    SET_ERR("--data.root", "${DFM_TEST_UNSET_VAR}", "command line: '--data.root': environment variable 'DFM_TEST_UNSET_VAR' is not set", NULL);
    SET_ERR("--data.root", "\xff\xfe", "'--data.root': value is not valid UTF-8", NULL);
    /* a custom origin names the source */
    dfm_config *c = fresh();
    CHECK_EQ(dfm_config_set(c, "optim.lr", "x", "preset 'fast'"), DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "preset 'fast': 'optim.lr' must be a number") != NULL);
    CHECK_EQ(dfm_config_set(c, "optim.lr", "0.5", "preset 'fast'"), 0);
    CHECK_STR(dfm_config_origin(c, "optim.lr"), "preset 'fast'");
    /* STR and ENUM from the command line are literal text */
    CHECK_EQ(dfm_config_set(c, "--data.caption", "a: b #1 [x]", NULL), 0);
    CHECK_STR(dfm_config_str(c, "data.caption"), "a: b #1 [x]");
    CHECK_EQ(dfm_config_set(c, "--data.caption", "'quoted'", NULL), 0);
    CHECK_STR(dfm_config_str(c, "data.caption"), "'quoted'");
    CHECK_EQ(dfm_config_set(c, "--seed", "-12", NULL), 0);
    CHECK_EQ(dfm_config_int(c, "seed"), -12);
    CHECK_EQ(dfm_config_set(c, "--seed", "9223372036854775807", NULL), 0);
    CHECK_EQ(dfm_config_int(c, "seed"), INT64_MAX);
    dfm_config_free(c);
}

TEST(config_parse_args)
{
    dfm_config *c = fresh();
    char *argv[] = {"dfm-train", "--optim.lr", "3e-4", "pos1", "--flow.timestep=mode", "--verbose",
                    "--optim.ema", "--out", "x.yaml", "--data.dirs", "[a, b]", "-v", "--seed", "5",
                    "--name=x.y", "--optim.steps=-3", "--", "--lora.rank", "7", NULL};
    int argc = (int)(sizeof argv / sizeof argv[0]) - 1;
    int rc = dfm_config_parse_args(c, &argc, argv);
    CHECK_EQ(rc, 7); /* 2 + 1 + 1 (bare BOOL) + 2 + 1 */
    if (rc < 0) fprintf(stderr, "  %s\n", dfm_errmsg());
    const char *want[] = {"dfm-train", "pos1", "--verbose", "--out", "x.yaml", "-v", "--seed", "5",
                          "--name=x.y", "--", "--lora.rank", "7"};
    CHECK_EQ(argc, 12);
    for (int i = 0; i < 12 && i < argc; i++) CHECK_STR(argv[i], want[i]);
    CHECK(argv[argc] == NULL);
    CHECK(dfm_config_float(c, "optim.lr") == 3e-4);
    CHECK_STR(dfm_config_str(c, "flow.timestep"), "mode");
    CHECK_EQ(dfm_config_bool(c, "optim.ema"), 1);
    CHECK_EQ(dfm_config_list_len(c, "data.dirs"), 2);
    CHECK_EQ(dfm_config_int(c, "optim.steps"), -3);
    CHECK_EQ(dfm_config_int(c, "lora.rank"), 16); /* after "--": the caller's */
    CHECK_EQ(dfm_config_int(c, "seed"), 0);       /* no dot: the caller's */
    CHECK_STR(dfm_config_origin(c, "optim.lr"), "command line");
    CHECK_EQ(dfm_config_is_set(c, "optim.lr"), 1);

    /* a bare BOOL at the end, and "--a.b=false" */
    char *a2[] = {"p", "--optim.ema=false", "--optim.ema", NULL};
    argc = 3;
    CHECK_EQ(dfm_config_parse_args(c, &argc, a2), 2);
    CHECK_EQ(argc, 1);
    CHECK_EQ(dfm_config_bool(c, "optim.ema"), 1);
    char *a3[] = {"p", "--optim.ema", "--optim.ema=off", NULL};
    argc = 3;
    CHECK_EQ(dfm_config_parse_args(c, &argc, a3), 2);
    CHECK_EQ(dfm_config_bool(c, "optim.ema"), 0);

    /* errors name the option and "command line"; argv is left as it was */
    char *a4[] = {"p", "x", "--optim.lr", "--optim.ema", NULL};
    argc = 4;
    CHECK(dfm_config_parse_args(c, &argc, a4) == DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "command line: '--optim.lr' needs a value") != NULL);
    CHECK_EQ(argc, 4);
    CHECK_STR(a4[1], "x");
    char *a5[] = {"p", "--optim.lr=fast", NULL};
    argc = 2;
    CHECK(dfm_config_parse_args(c, &argc, a5) == DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "command line: '--optim.lr' must be a number, not 'fast'") != NULL);
    char *a6[] = {"p", "--optim.lrr", "1", NULL};
    argc = 3;
    CHECK(dfm_config_parse_args(c, &argc, a6) == DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "command line: unknown key '--optim.lrr' (did you mean '--optim.lr'?)") != NULL);
    char *a7[] = {"p", "--optim.lrr", NULL};
    argc = 2;
    CHECK(dfm_config_parse_args(c, &argc, a7) == DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "unknown key '--optim.lrr'") != NULL);
    /* empty argv, argv with only the program */
    char *a8[] = {"p", NULL};
    argc = 1;
    CHECK_EQ(dfm_config_parse_args(c, &argc, a8), 0);
    CHECK_EQ(argc, 1);
    argc = 0;
    CHECK_EQ(dfm_config_parse_args(c, &argc, a8 + 1), 0);
    CHECK_EQ(argc, 0);
    dfm_config_free(c);
}

TEST(config_override_order)
{
    dfm_config *c = fresh();
    CHECK_EQ(dfm_config_load_string(c, "optim:\n  lr: 0.1\n  steps: 5\n", "a.yaml"), 0);
    CHECK_EQ(dfm_config_load_string(c, "optim:\n  lr: 0.2\n", "b.yaml"), 0);
    CHECK(dfm_config_float(c, "optim.lr") == 0.2);
    CHECK_STR(dfm_config_origin(c, "optim.lr"), "b.yaml:2");
    CHECK_STR(dfm_config_origin(c, "optim.steps"), "a.yaml:3");
    char *argv[] = {"p", "--optim.lr", "0.3", "--optim.lr=0.4", NULL};
    int argc = 4;
    CHECK_EQ(dfm_config_parse_args(c, &argc, argv), 3);
    CHECK(dfm_config_float(c, "optim.lr") == 0.4);
    CHECK_STR(dfm_config_origin(c, "optim.lr"), "command line");
    CHECK_EQ(dfm_config_int(c, "optim.steps"), 5);
    CHECK_EQ(dfm_config_load_string(c, "optim.lr: 0.5\n", "c.yaml"), 0);
    CHECK(dfm_config_float(c, "optim.lr") == 0.5);
    CHECK_STR(dfm_config_origin(c, "optim.lr"), "c.yaml:1");
    dfm_config_free(c);
}

TEST(config_env)
{
    setenv("DFM_CFG_T1", "hello", 1);
    setenv("DFM_CFG_EMPTY", "", 1);
    setenv("DFM_CFG_SEED", "77", 1);
    setenv("DFM_CFG_LR", "2.5e-4", 1);
    unsetenv("DFM_CFG_UNSET");
    dfm_config *c = fresh();
    const char *y = "seed: ${DFM_CFG_SEED}\n"
                    "name: \"${DFM_CFG_UNSET:-fallback run}\"\n"
                    "optim:\n  lr: ${DFM_CFG_LR:-1}\n  betas: [\"${DFM_CFG_UNSET:-0.25}\", 0.5]\n"
                    "data:\n  root: ${DFM_CFG_T1}/x/${DFM_CFG_T1}\n"
                    "  caption: \"$${DFM_CFG_T1} ${DFM_CFG_EMPTY:-was empty}[${DFM_CFG_EMPTY}] $$x $ {}\"\n"
                    "  dirs: [\"${DFM_CFG_T1}\", b]\n";
    int rc = dfm_config_load_string(c, y, "env.yaml");
    CHECK_EQ(rc, 0);
    if (rc) fprintf(stderr, "  %s\n", dfm_errmsg());
    CHECK_EQ(dfm_config_int(c, "seed"), 77);
    CHECK_STR(dfm_config_str(c, "name"), "fallback run");
    CHECK(dfm_config_float(c, "optim.lr") == 2.5e-4);
    CHECK(dfm_config_list_float(c, "optim.betas", 0) == 0.25);
    CHECK_STR(dfm_config_str(c, "data.root"), "hello/x/hello");
    CHECK_STR(dfm_config_str(c, "data.caption"), "${DFM_CFG_T1} was empty[] $$x $ {}");
    CHECK_STR(dfm_config_list_str(c, "data.dirs", 0), "hello");
    /* the command line interpolates too */
    CHECK_EQ(dfm_config_set(c, "--data.root", "${DFM_CFG_T1:-no}/y", NULL), 0);
    CHECK_STR(dfm_config_str(c, "data.root"), "hello/y");
    /* the written config holds resolved values, and "${" survives the round trip */
    dfm_config *d = fresh();
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    CHECK_EQ(dfm_config_write(c, f), 0);
    fclose(f);
    CHECK(strstr(text, "caption: \"$${DFM_CFG_T1} was empty[] $$x $ {}\"") != NULL);
    unsetenv("DFM_CFG_T1");
    CHECK_EQ(dfm_config_load_string(d, text, "saved.yaml"), 0);
    CHECK_EQ(dfm_config_diff(c, d, NULL, NULL), 0);
    free(text);
    dfm_config_free(c);
    dfm_config_free(d);
}

static void diff_collect(void *ctx, const char *key, const char *va, const char *vb)
{
    dfm_buf *b = ctx;
    dfm_buf_printf(b, "%s: %s -> %s\n", key, va, vb);
}

TEST(config_diff)
{
    dfm_config *a = fresh(), *b = fresh();
    CHECK_EQ(dfm_config_diff(a, b, diff_collect, NULL), 0);
    CHECK_EQ(dfm_config_load_string(b, "optim:\n  lr: 0.5\n  betas: [0.9]\nname: x\ndata:\n  root: /data\n", "b.yaml"), 0);
    dfm_buf out = {0};
    CHECK_EQ(dfm_config_diff(a, b, diff_collect, &out), 3); /* data.root set to its default: no change */
    dfm_buf_append(&out, "", 1);
    CHECK_STR((char *)out.data, "name: null -> \"x\"\noptim.lr: 0.0001 -> 0.5\noptim.betas: [0.9, 0.999] -> [0.9]\n");
    dfm_buf_free(&out);
    CHECK_EQ(dfm_config_diff(b, a, NULL, NULL), 3);
    /* an empty list differs from null */
    CHECK_EQ(dfm_config_set(a, "data.dirs", "[]", NULL), 0);
    CHECK_EQ(dfm_config_diff(a, b, NULL, NULL), 4);
    char *t = dfm_config_value_text(a, "data.dirs");
    CHECK_STR(t, "[]");
    free(t);
    t = dfm_config_value_text(a, "optim.eps");
    CHECK_STR(t, "1.0e-08");
    free(t);
    /* different schemas */
    static const dfm_cfg_key other[] = {{"seed", DFM_CFG_INT, "0", NULL, "seed"}};
    dfm_config *o = NULL;
    CHECK_EQ(dfm_config_new(&o, other, 1), 0);
    CHECK_EQ(dfm_config_diff(a, o, NULL, NULL), DFM_E_ARG);
    dfm_config_free(o);
    dfm_config_free(a);
    dfm_config_free(b);
}

/* Deterministic pseudo-random numbers for the round-trip and fuzz loops. */
static uint64_t rnd(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    uint64_t x = *s;
    x ^= x >> 29;
    x *= 0xbf58476d1ce4e5b9ULL;
    return x ^ (x >> 32);
}

static void write_read(dfm_config *c, dfm_config *d, char **textp)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    CHECK_EQ(dfm_config_write(c, f), 0);
    fclose(f);
    int rc = dfm_config_load_string(d, text, "saved.yaml");
    CHECK_EQ(rc, 0);
    if (rc) fprintf(stderr, "  %s\n--- text:\n%s---\n", dfm_errmsg(), text);
    if (textp) *textp = text;
    else free(text);
}

TEST(config_roundtrip)
{
    dfm_config *c = fresh(), *d = fresh();
    /* defaults round trip; the layout: sections in schema order, optim once, docs as comments */
    char *text = NULL;
    write_read(c, d, &text);
    CHECK_EQ(dfm_config_diff(c, d, NULL, NULL), 0);
    const char *want =
        "seed: 0  # random seed\n"
        "name: null  # run name\n"
        "optim:\n"
        "  lr: 0.0001  # learning rate\n"
        "  betas: [0.9, 0.999]  # Adam betas\n"
        "  steps: 1000  # optimizer steps\n"
        "  ema: false  # keep an EMA of the weights\n"
        "  eps: 1.0e-08  # Adam epsilon (a section split in the schema)\n"
        "flow:\n"
        "  timestep: logit_normal  # timestep sampling\n"
        "  shift: null  # timestep shift (null: none)\n"
        "  weights: null  # per-bucket loss weights\n"
        "data:\n"
        "  dirs: null  # dataset directories\n"
        "  root: \"/data\"  # data root\n"
        "  caption: null  # caption template\n"
        "lora:\n"
        "  rank: 16  # LoRA rank\n"
        "max_steps: null  # stop after this many steps\n";
    CHECK_STR(text, want);
    free(text);
    dfm_config_free(d);

    /* hostile values of every type */
    const char *sets[][2] = {
        {"seed", "-9223372036854775807"},
        {"name", "q\"uo\\te\n\ttab \x01\x7f # : - [x] {y} 'z' null ~ ${HOME} $${X} \xc3\xa9 \xc2\x85 \xe2\x80\xa8 \xef\xbb\xbf \xf0\x9f\x98\x80 \xc2\x9f"},
        {"optim.lr", "0.1"},
        {"optim.betas", "[1e-300, -0.0, 0.30000000000000004, 1e22, 5e-324]"},
        {"optim.steps", "123456789012"},
        {"optim.ema", "on"},
        {"flow.timestep", "sigmoid"},
        {"flow.shift", "0.333333333333333315"},
        {"data.dirs", "[\"\", \" lead\", \"trail \", \"null\", \"~\", \"- x\", \"#\", \"a: b\"]"},
        {"data.root", ""},
        {"data.caption", "null-ish"},
        {"lora.rank", "0"},
        {"optim.eps", "1.7976931348623157e308"},
        {"flow.weights", "[]"},
        {"max_steps", "1"},
    };
    /* the literal STR path would interpolate: escape "${" the way the writer does */
    for (int i = 0; i < (int)(sizeof sets / sizeof sets[0]); i++) {
        int rc;
        if (!strcmp(sets[i][0], "name")) {
            dfm_buf e = {0};
            for (const char *p = sets[i][1]; *p; p++) {
                if (p[0] == '$' && p[1] == '{') dfm_buf_append(&e, "$", 1);
                dfm_buf_append(&e, p, 1);
            }
            dfm_buf_append(&e, "", 1);
            rc = dfm_config_set(c, sets[i][0], (char *)e.data, NULL);
            dfm_buf_free(&e);
        } else rc = dfm_config_set(c, sets[i][0], sets[i][1], NULL);
        CHECK_EQ(rc, 0);
        if (rc) fprintf(stderr, "  %s: %s\n", sets[i][0], dfm_errmsg());
    }
    CHECK_STR(dfm_config_str(c, "name"), sets[1][1]);
    CHECK_STR(dfm_config_str(c, "data.root"), "");
    d = fresh();
    write_read(c, d, NULL);
    CHECK_EQ(dfm_config_diff(c, d, NULL, NULL), 0);
    CHECK_STR(dfm_config_str(d, "name"), sets[1][1]);
    CHECK_EQ(dfm_config_list_len(d, "data.dirs"), 8);
    CHECK_STR(dfm_config_list_str(d, "data.dirs", 3), "null");
    CHECK_STR(dfm_config_str(d, "data.root"), "");
    CHECK(dfm_config_list_float(d, "optim.betas", 4) == 5e-324);
    CHECK(signbit(dfm_config_list_float(d, "optim.betas", 1)));
    CHECK_EQ(dfm_config_int(d, "seed"), -9223372036854775807LL);
    CHECK(dfm_config_float(d, "optim.eps") == 1.7976931348623157e308);
    dfm_config_free(d);

    /* random doubles (every finite bit pattern class) and random strings, exact round trip */
    uint64_t s = 12345;
    static const char *const pieces[] = {"a", "Z", "0", " ", "\"", "\\", "$", "{", "}", "${", "$$", ":",
                                         "#", "-", "\n", "\t", "\r", "\x1b", "'", "\xc3\xa9",
                                         "\xc2\x85", "\xe2\x80\xa8", "\xe2\x80\xa9", "\xef\xbb\xbf",
                                         "\xef\xbf\xbd", "\xf0\x9f\x98\x80", "\xc2\xa0", "[", ",", "&", "*", "!"};
    int np = (int)(sizeof pieces / sizeof pieces[0]);
    for (int it = 0; it < 300; it++) {
        uint64_t bits = rnd(&s);
        double x;
        memcpy(&x, &bits, sizeof x);
        if (!isfinite(x)) continue;
        if (it % 3 == 0) x = (double)(int64_t)(bits >> 40) / (double)(1 + (rnd(&s) & 0xffff));
        char num[40];
        snprintf(num, sizeof num, "%.17g", x);
        CHECK_EQ(dfm_config_set(c, "optim.lr", num, NULL), 0);
        dfm_buf str = {0};
        int n = (int)(rnd(&s) % 12);
        for (int k = 0; k < n; k++) {
            const char *p = pieces[rnd(&s) % (uint64_t)np];
            dfm_buf_append(&str, p, strlen(p));
        }
        dfm_buf_append(&str, "", 1);
        const char *v = (char *)str.data;
        /* set through YAML (a STRLIST element, double-quoted with escapes) and as literal STR */
        dfm_buf lit = {0};
        for (const char *p = v; *p; p++) {
            if (p[0] == '$' && p[1] == '{') dfm_buf_append(&lit, "$", 1);
            dfm_buf_append(&lit, p, 1);
        }
        dfm_buf_append(&lit, "", 1);
        int rc = dfm_config_set(c, "data.caption", (char *)lit.data, NULL);
        CHECK(rc == 0 || !strcmp(v, "~") || !strcmp(v, "null"));
        d = fresh();
        write_read(c, d, NULL);
        int nd = dfm_config_diff(c, d, NULL, NULL);
        CHECK_EQ(nd, 0);
        CHECK(dfm_config_float(d, "optim.lr") == x);
        if (nd) fprintf(stderr, "  value %s, string '%s'\n", num, v);
        CHECK_STR(dfm_config_str(d, "data.caption"), v);
        dfm_config_free(d);
        dfm_buf_free(&lit);
        dfm_buf_free(&str);
    }

    /* save: the file appears whole under its name, no .tmp left, and loads back */
    char path[512], tmp[520];
    snprintf(path, sizeof path, "%s/cfg_saved.yaml", dfm_test_tmpdir());
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK_EQ(dfm_config_save(c, path), 0);
    CHECK(access(tmp, F_OK) != 0);
    d = fresh();
    CHECK_EQ(dfm_config_load_file(d, path), 0);
    CHECK_EQ(dfm_config_diff(c, d, NULL, NULL), 0);
    dfm_config_free(d);
    snprintf(path, sizeof path, "%s/no/such/dir/cfg.yaml", dfm_test_tmpdir());
    CHECK_EQ(dfm_config_save(c, path), DFM_E_IO);
    dfm_config_free(c);
}

TEST(config_schema_errors)
{
    dfm_config *c = NULL;
    static const dfm_cfg_key bad_def[] = {{"optim.lr", DFM_CFG_FLOAT, "fast", NULL, "lr"}};
    CHECK_EQ(dfm_config_new(&c, bad_def, 1), DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "config schema: 'optim.lr' must be a number, not 'fast'") != NULL);
    CHECK(c == NULL);
    static const dfm_cfg_key dup[] = {{"a.b", DFM_CFG_INT, "1", NULL, ""}, {"a.b", DFM_CFG_INT, "1", NULL, ""}};
    CHECK_EQ(dfm_config_new(&c, dup, 2), DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "'a.b' twice") != NULL);
    static const dfm_cfg_key no_choices[] = {{"a.b", DFM_CFG_ENUM, "x", NULL, ""}};
    CHECK_EQ(dfm_config_new(&c, no_choices, 1), DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "'a.b'") != NULL);
    static const dfm_cfg_key bad_choice[] = {{"a.b", DFM_CFG_ENUM, "z", "x|y", ""}};
    CHECK_EQ(dfm_config_new(&c, bad_choice, 1), DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "'a.b' must be one of x|y, not 'z'") != NULL);
    static const dfm_cfg_key both[] = {{"optim", DFM_CFG_INT, "1", NULL, ""}, {"optim.lr", DFM_CFG_FLOAT, "1", NULL, ""}};
    CHECK_EQ(dfm_config_new(&c, both, 2), DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "'optim' is both a key and a section") != NULL);
    static const dfm_cfg_key deep[] = {{"a.b.c", DFM_CFG_INT, "1", NULL, ""}};
    CHECK_EQ(dfm_config_new(&c, deep, 1), DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "bad key 'a.b.c'") != NULL);
    static const dfm_cfg_key empty_choice[] = {{"a.b", DFM_CFG_ENUM, "x", "x||y", ""}};
    CHECK_EQ(dfm_config_new(&c, empty_choice, 1), DFM_E_ARG);
    CHECK_EQ(dfm_config_new(&c, NULL, 0), 0); /* an empty schema is fine */
    CHECK_EQ(dfm_config_load_string(c, "", "x"), 0);
    CHECK_EQ(dfm_config_load_string(c, "a: 1\n", "x.yaml"), DFM_E_ARG);
    dfm_config_free(c);
}

TEST(config_help)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    dfm_config_help(k_schema, K_N, f);
    fclose(f);
    CHECK(strstr(text, "  optim.lr (float, default 1e-4)\n      learning rate\n") != NULL);
    CHECK(strstr(text, "  flow.timestep (one of uniform|logit_normal|mode|sigmoid, default logit_normal)\n") != NULL);
    CHECK(strstr(text, "  name (string, no default)\n      run name\n") != NULL);
    CHECK(strstr(text, "  optim.betas (float list, default [0.9, 0.999])\n") != NULL);
    for (int i = 0; i < K_N; i++) CHECK(strstr(text, k_schema[i].key) != NULL);
    free(text);
}

/* Truncated, garbled and pathological YAML must give 0 or an error with a message, never a
 * crash (run under ASan: make SAN=1), and the config stays usable. */
TEST(config_fuzz)
{
    const char *base =
        "seed: 42\nname: \"run \\\"one\\\"\"\noptim:\n  lr: 1e-4\n  betas: [0.9, 0.999]\n  steps: 10\n"
        "  ema: yes\nflow:\n  timestep: mode\n  shift: ${DFM_CFG_FUZZ:-1.5}\ndata:\n  dirs:\n    - a\n"
        "    - 'b'\n  root: |\n    block\n    text\n  caption: >-\n    folded\nlora.rank: 8\n";
    size_t n = strlen(base);
    char *buf = malloc(n * 2 + 64);
    dfm_config *c = fresh();
    int ok = 0, errs = 0;
    for (size_t cut = 0; cut <= n; cut++) {
        memcpy(buf, base, cut);
        buf[cut] = 0;
        int rc = dfm_config_load_string(c, buf, "cut.yaml");
        if (rc == 0) ok++;
        else {
            errs++;
            CHECK(rc == DFM_E_ARG && dfm_errmsg()[0]);
        }
    }
    CHECK(ok > 0 && errs > 0);
    static const char garble[] = ":-[]{},&*!|>#%@`'\"\t\n ?~$\\0.e\xc3\xff";
    uint64_t s = 99;
    for (int it = 0; it < 3000; it++) {
        memcpy(buf, base, n + 1);
        int edits = 1 + (int)(rnd(&s) % 4);
        for (int e = 0; e < edits; e++) {
            size_t at = rnd(&s) % n;
            char ch = garble[rnd(&s) % (sizeof garble - 1)];
            if (rnd(&s) & 1) buf[at] = ch;
            else { /* insert */
                size_t l = strlen(buf);
                memmove(buf + at + 1, buf + at, l - at + 1);
                buf[at] = ch;
            }
        }
        int rc = dfm_config_load_string(c, buf, "g.yaml");
        CHECK(rc == 0 || (rc < 0 && dfm_errmsg()[0]));
        /* set a random key to a garbled value through the command-line path */
        const char *key = k_schema[rnd(&s) % K_N].key;
        size_t at = rnd(&s) % n, l = rnd(&s) % 24;
        char val[32];
        memcpy(val, buf + at, l);
        val[l] = 0;
        rc = dfm_config_set(c, key, val, NULL);
        CHECK(rc == 0 || (rc < 0 && dfm_errmsg()[0]));
    }
    /* pathological shapes: deep nesting, aliases, anchors to self, long keys, many keys */
    dfm_buf b = {0};
    for (int i = 0; i < 20000; i++) dfm_buf_append(&b, "[", 1);
    dfm_buf_append(&b, "", 1);
    CHECK(dfm_config_load_string(c, (char *)b.data, "deep.yaml") < 0);
    b.len = 0;
    dfm_buf_append(&b, "optim:\n  betas: ", 16);
    for (int i = 0; i < 20000; i++) dfm_buf_append(&b, "[", 1);
    for (int i = 0; i < 20000; i++) dfm_buf_append(&b, "]", 1);
    dfm_buf_append(&b, "\n", 2);
    CHECK(dfm_config_load_string(c, (char *)b.data, "deep2.yaml") == DFM_E_ARG);
    b.len = 0;
    for (int i = 0; i < 3000; i++) dfm_buf_printf(&b, "k%d: 1\n", i);
    dfm_buf_append(&b, "", 1);
    CHECK(dfm_config_load_string(c, (char *)b.data, "many.yaml") == DFM_E_ARG);
    b.len = 0;
    for (int i = 0; i < 5000; i++) dfm_buf_append(&b, "optim", 5);
    dfm_buf_append(&b, ".lr: 1\n", 8);
    CHECK(dfm_config_load_string(c, (char *)b.data, "long.yaml") == DFM_E_ARG);
    dfm_buf_free(&b);
    CHECK(dfm_config_load_string(c, "a: &x [*x]\n", "self.yaml") < 0);
    CHECK(dfm_config_load_string(c, "optim: &o {lr: 0.5}\nflow: *o\n", "alias.yaml") == DFM_E_ARG);
    CHECK_EQ(dfm_config_load_string(c, "optim:\n  betas: &b [0.25, 0.5]\nflow:\n  weights: *b\n", "alias2.yaml"), 0);
    CHECK_EQ(dfm_config_list_len(c, "flow.weights"), 2);
    CHECK_EQ(dfm_config_load_string(c, "\xef\xbb\xbfseed: 4\n", "bom.yaml"), 0);
    CHECK(dfm_config_load_string(c, "seed: \xff\n", "bad-utf8.yaml") == DFM_E_ARG);
    CHECK(dfm_config_load_string(c, "!!binary seed: 1\n", "tag.yaml") <= 0);
    /* still a working config */
    dfm_config *d = fresh();
    write_read(c, d, NULL);
    CHECK_EQ(dfm_config_diff(c, d, NULL, NULL), 0);
    dfm_config_free(d);
    dfm_config_free(c);
    free(buf);
}
