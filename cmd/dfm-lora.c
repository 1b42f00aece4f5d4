/* dfm-lora — Wan 2.1 LoRA files: summarise one, convert it between naming families, and write a
 * full transformer with original Wan names. Thin: the work is lib/models/wan/lora_convert.c,
 * lora_file.c and transformer_save.c. */
#include "base/buf.h"
#include "base/cli.h"
#include "base/error.h"
#include "base/log.h"
#include "models/wan/lora.h"
#include "models/wan/lora_convert.h"
#include "models/wan/transformer.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static const char usage[] =
    "usage: dfm-lora info FILE|DIR\n"
    "       dfm-lora convert IN OUT --to comfyui|diffusers|peft|musubi [options]\n"
    "       dfm-lora export-full MODEL OUT [--prefix comfyui|none] [--dtype bf16|f32] [--lora DIR]\n"
    "Wan 2.1 LoRA files. info: the naming family, modules, ranks, alpha, dtype, parameters,\n"
    "targets and blocks, and which of diffusers, ComfyUI, diffusion-pipe and musubi-tuner load\n"
    "it as it is. convert: to another family with the same delta W (alpha/rank folded into B).\n"
    "export-full: a whole transformer as one .safetensors file with original Wan names.\n"
    "\n"
    "  --to FAMILY                 comfyui (= diffusion-pipe): diffusion_model.<original>.lora_A/B;\n"
    "                              diffusers: transformer.<diffusers>.lora_A/B; peft: a directory\n"
    "                              with adapter_model.safetensors + adapter_config.json; musubi:\n"
    "                              lora_unet_<original>.lora_down/up + .alpha. OUT ending in\n"
    "                              .safetensors is a file, anything else a directory\n"
    "  --alpha A                   read the input with alpha A (a file without alpha information\n"
    "                              trained with scale A/rank)\n"
    "  --dtype F32|BF16|F16        output dtype (convert: default the input's; export-full:\n"
    "                              bf16 or f32, default bf16)\n"
    "  --prefix comfyui|none       export-full: 'model.diffusion_model.' (ComfyUI, default) or no\n"
    "                              prefix (diffusion-pipe)\n"
    "  --lora DIR                  export-full: merge this adapter into the weights first\n"
    "  -f, --force                 overwrite OUT\n"
    "  -h, --help                  this help;  --version  print the version\n";

enum { O_TO = 256, O_ALPHA, O_DTYPE, O_PREFIX, O_LORA, O_VERSION };
static const struct option longopts[] = {
    {"to", 1, 0, O_TO},       {"alpha", 1, 0, O_ALPHA}, {"dtype", 1, 0, O_DTYPE},       {"prefix", 1, 0, O_PREFIX},
    {"lora", 1, 0, O_LORA},   {"force", 0, 0, 'f'},     {"help", 0, 0, 'h'},            {"version", 0, 0, O_VERSION},
    {0, 0, 0, 0}};

static int fail(const char *what)
{
    dfm_log_error("%s: %s", what, dfm_errmsg());
    return DFM_EXIT_FAIL;
}

static int info(const char *path, float alpha)
{
    dfm_wan_lora_file *f = NULL;
    dfm_buf b = {0};
    if (dfm_wan_lora_file_open(&f, path, alpha) || dfm_wan_lora_summary(f, &b)) {
        dfm_wan_lora_file_close(f);
        dfm_buf_free(&b);
        return fail("cannot read the LoRA");
    }
    dfm_wan_lora_file_close(f);
    size_t len = b.len, w = fwrite(b.data, 1, len, stdout);
    dfm_buf_free(&b);
    if (w != len) {
        if (errno == EPIPE) dfm_exit_pipe();
        dfm_log_error("writing the summary failed: %s", strerror(errno));
        return DFM_EXIT_FAIL;
    }
    return DFM_EXIT_OK;
}

/* OUT exists and may not be replaced: exit 1 with the hint */
static int refuse_existing(const char *out, int force)
{
    if (force || access(out, F_OK)) return 0;
    dfm_log_error("output '%s': already exists", out);
    dfm_log_hint("pass -f to overwrite it");
    return 1;
}

int main(int argc, char **argv)
{
    dfm_cli_init(argv[0]);
    const char *to = NULL, *prefix = "comfyui", *lora = NULL, *dtype = NULL;
    float alpha = 0;
    int c, force = 0;
    while ((c = getopt_long(argc, argv, "fh", longopts, NULL)) != -1) {
        switch (c) {
        case O_TO: to = optarg; break;
        case O_ALPHA: alpha = (float)dfm_parse_double("--alpha", optarg, 1e-30, 1e30); break;
        case O_DTYPE: dtype = optarg; break;
        case O_PREFIX: prefix = optarg; break;
        case O_LORA: lora = optarg; break;
        case 'f': force = 1; break;
        case 'h': fputs(usage, stdout); return dfm_close_stdout(0);
        case O_VERSION: dfm_print_version();
        default: dfm_usage_bad_option(argc, argv, longopts);
        }
    }
    char **arg = argv + optind;
    int narg = argc - optind;
    if (narg < 1) dfm_usage_error("no command (info, convert or export-full)");
    const char *cmd = arg[0];
    int status;
    if (!strcmp(cmd, "info")) {
        if (narg != 2) dfm_usage_error("info takes one FILE or DIR");
        if (to || dtype || lora || force) dfm_usage_error("info takes no --to, --dtype, --lora or -f");
        status = info(arg[1], alpha);
    } else if (!strcmp(cmd, "convert")) {
        if (narg != 3) dfm_usage_error("convert takes IN and OUT");
        if (!to) dfm_usage_error("convert needs --to comfyui|diffusers|peft|musubi");
        int fam = dfm_wan_lora_target_parse(to);
        if (fam < 0) dfm_usage_error("--to '%s': not one of comfyui, diffusion-pipe, diffusers, peft, musubi", to);
        if (lora) dfm_usage_error("--lora is for export-full");
        size_t ol = strlen(arg[2]);
        if (fam == DFM_WAN_LORA_TO_PEFT && ol >= 12 && !strcmp(arg[2] + ol - 12, ".safetensors"))
            dfm_usage_error("--to peft writes a directory (adapter_model.safetensors + adapter_config.json), not '%s'", arg[2]);
        dfm_wan_lora_convert_opts o = {.alpha = alpha, .dtype = -1};
        if (dtype) {
            static const char *const names[] = {"F32", "BF16", "F16", NULL};
            static const dfm_dtype dts[] = {DFM_F32, DFM_BF16, DFM_F16};
            int k = 0;
            while (names[k] && strcasecmp(names[k], dtype)) k++;
            if (!names[k]) dfm_usage_error("--dtype '%s': not one of F32, BF16, F16", dtype);
            o.dtype = dts[k];
        }
        if (refuse_existing(arg[2], force)) return DFM_EXIT_FAIL;
        int n = 0;
        if (dfm_wan_lora_convert(arg[1], arg[2], fam, &o, &n)) return fail("cannot convert the LoRA");
        dfm_log_info("wrote %d modules to '%s' (%s)", n, arg[2], dfm_wan_lora_target_name(fam));
        status = DFM_EXIT_OK;
    } else if (!strcmp(cmd, "export-full")) {
        if (narg != 3) dfm_usage_error("export-full takes MODEL and OUT");
        if (to || alpha > 0) dfm_usage_error("export-full takes no --to or --alpha");
        if (strcmp(prefix, "comfyui") && strcmp(prefix, "none")) dfm_usage_error("--prefix '%s': not comfyui or none", prefix);
        dfm_dtype dt = DFM_BF16;
        if (dtype && !strcasecmp(dtype, "f32")) dt = DFM_F32;
        else if (dtype && strcasecmp(dtype, "bf16")) dfm_usage_error("--dtype '%s': export-full writes bf16 or f32", dtype);
        if (refuse_existing(arg[2], force)) return DFM_EXIT_FAIL;
        dfm_wan_transformer *m = NULL;
        dfm_wan_transformer_opts mo = {.device = DFM_CPU, .weights = dt, .compute = DFM_F32};
        if (dfm_wan_transformer_load(&m, arg[1], &mo)) return fail("cannot load the transformer");
        if (lora && dfm_wan_lora_load(m, lora, 1.0f, NULL, NULL)) {
            dfm_wan_transformer_free(m);
            return fail("cannot load the LoRA");
        }
        int rc = dfm_wan_transformer_save_original(m, arg[2], dt, strcmp(prefix, "comfyui") ? "" : "model.diffusion_model.",
                                                   lora != NULL);
        dfm_wan_transformer_free(m);
        if (rc) return fail("cannot write the transformer");
        dfm_log_info("wrote '%s' (%s, original Wan names%s)", arg[2], dfm_dtype_name(dt),
                     strcmp(prefix, "comfyui") ? "" : " under model.diffusion_model.");
        status = DFM_EXIT_OK;
    } else {
        dfm_usage_error("unknown command '%s' (info, convert or export-full)", cmd);
    }
    return dfm_close_stdout(status);
}
