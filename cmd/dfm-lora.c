/* dfm-lora — Wan 2.1 LoRA files: summarise one, convert it between naming families, write a
 * full transformer with original Wan names, and compare two sets of weights numerically (diff).
 * Thin: the work is lib/models/wan/lora_convert.c, lora_file.c and transformer_save.c; diff is
 * a merge walk over two dfm_st sets, here. */
#include "base/buf.h"
#include "base/cli.h"
#include "base/error.h"
#include "base/log.h"
#include "io/safetensors.h"
#include "models/wan/lora.h"
#include "models/wan/lora_convert.h"
#include "models/wan/transformer.h"

#include <errno.h>
#include <float.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static const char usage[] =
    "usage: dfm-lora info FILE|DIR\n"
    "       dfm-lora convert IN OUT --to comfyui|diffusers|peft|musubi [options]\n"
    "       dfm-lora export-full MODEL OUT [--prefix comfyui|none] [--dtype bf16|f32] [--lora DIR]\n"
    "       dfm-lora diff A B [--tol T] [--rel] [-q]\n"
    "Wan 2.1 LoRA files. info: the naming family, modules, ranks, alpha, dtype, parameters,\n"
    "targets and blocks, and which of diffusers, ComfyUI, diffusion-pipe and musubi-tuner load\n"
    "it as it is. convert: to another family with the same delta W (alpha/rank folded into B).\n"
    "export-full: a whole transformer as one .safetensors file with original Wan names.\n"
    "diff: two adapters or checkpoints (files, index.json, or directories such as a step_N/),\n"
    "tensor by tensor as f32: one line per tensor that differs, then a summary; exit 0 when\n"
    "the names and shapes match and no value is further apart than --tol.\n"
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
    "  --tol T                     diff: the largest max |a-b| accepted (default 0: every value\n"
    "                              equal; NaN equals NaN at the same position)\n"
    "  --rel                       diff: --tol bounds max |a-b| / max |a| of each tensor instead\n"
    "  -q, --quiet                 diff: the summary only, no line per tensor\n"
    "  -f, --force                 overwrite OUT\n"
    "  -h, --help                  this help;  --version  print the version\n";

enum { O_TO = 256, O_ALPHA, O_DTYPE, O_PREFIX, O_LORA, O_VERSION, O_TOL, O_REL };
static const struct option longopts[] = {
    {"to", 1, 0, O_TO},       {"alpha", 1, 0, O_ALPHA}, {"dtype", 1, 0, O_DTYPE},       {"prefix", 1, 0, O_PREFIX},
    {"lora", 1, 0, O_LORA},   {"force", 0, 0, 'f'},     {"help", 0, 0, 'h'},            {"version", 0, 0, O_VERSION},
    {"tol", 1, 0, O_TOL},     {"rel", 0, 0, O_REL},     {"quiet", 0, 0, 'q'},           {0, 0, 0, 0}};

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

/* ---- diff ------------------------------------------------------------------------------------ */

#define DIFF_CHUNK 16384 /* elements converted to f32 at a time: memory stays flat whatever the size */
#define DIFF_LIST 10     /* names listed per "only in" side, then a count */

typedef struct {
    int64_t differ; /* elements not equal: a != b, except NaN against NaN */
    double max_abs; /* max |a - b|; inf for NaN against a number or inf against another value */
    double max_a;   /* max |a| over the finite values of A */
} diff_stat;

static int is_float(dfm_dtype t) { return t == DFM_F32 || t == DFM_BF16 || t == DFM_F16; }

/* n elements of two float tensors (F32/BF16/F16, any mix), as f32, DIFF_CHUNK at a time through
 * fa and fb. -0 equals +0; NaN equals NaN at the same position. */
static int diff_floats(const dfm_st_tensor *a, const dfm_st_tensor *b, size_t n, float *fa, float *fb, diff_stat *s)
{
    size_t sa = dfm_dtype_size(a->dtype), sb = dfm_dtype_size(b->dtype);
    for (size_t i0 = 0; i0 < n; i0 += DIFF_CHUNK) {
        size_t m = n - i0 < DIFF_CHUNK ? n - i0 : DIFF_CHUNK;
        int rc = dfm_convert_floats(fa, DFM_F32, a->data + i0 * sa, a->dtype, m);
        if (!rc) rc = dfm_convert_floats(fb, DFM_F32, b->data + i0 * sb, b->dtype, m);
        if (rc) return rc;
        for (size_t i = 0; i < m; i++) {
            float x = fa[i], y = fb[i];
            if (isfinite(x) && fabsf(x) > s->max_a) s->max_a = fabsf(x);
            if (x == y || (isnan(x) && isnan(y))) continue;
            double d = isnan(x) || isnan(y) ? INFINITY : fabs((double)x - (double)y); /* exact */
            s->differ++;
            if (d > s->max_abs) s->max_abs = d;
        }
    }
    return 0;
}

/* "[4,16]" ("[]" for a scalar) */
static const char *shape_str(char *buf, size_t n, const dfm_st_tensor *t)
{
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < t->ndim && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", d ? "," : "", (long long)t->shape[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

static int same_shape(const dfm_st_tensor *a, const dfm_st_tensor *b)
{
    if (a->ndim != b->ndim) return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return 0;
    return 1;
}

/* dfm-lora diff A B: tensors matched by name (both sets are sorted by name, so one merge walk);
 * one line per tensor that differs, the "only in" lists, the summary line; exit 1 when a name
 * or shape is unmatched or a tensor is beyond tol (max |a-b|, or with rel max |a-b| / max |a|). */
static int diff_cmd(const char *pa, const char *pb, double tol, int rel, int quiet)
{
    dfm_st *A = NULL, *B = NULL;
    if (dfm_st_open(&A, pa)) return fail("cannot read the weights");
    if (dfm_st_open(&B, pb)) {
        dfm_st_close(A);
        return fail("cannot read the weights");
    }
    float *fa = malloc(2 * DIFF_CHUNK * sizeof *fa), *fb = fa + DIFF_CHUNK;
    if (!fa) {
        dfm_st_close(A);
        dfm_st_close(B);
        dfm_log_error("out of memory");
        return DFM_EXIT_FAIL;
    }
    int na = dfm_st_count(A), nb = dfm_st_count(B), i = 0, j = 0, rc = 0;
    long long compared = 0, identical = 0, beyond = 0, only[2] = {0, 0}, shapes = 0, dtypes = 0;
    const char *list[2][DIFF_LIST];
    double max_abs = 0, max_rel = 0;
    char s1[200], s2[200];
    const char *mark = tol > 0 || rel ? "  beyond --tol" : "";
    while (!rc && (i < na || j < nb)) {
        const dfm_st_tensor *ta = i < na ? dfm_st_at(A, i) : NULL, *tb = j < nb ? dfm_st_at(B, j) : NULL;
        int c = !ta ? 1 : !tb ? -1 : strcmp(ta->name, tb->name);
        if (c) { /* only in A (c < 0) or only in B */
            int side = c > 0;
            if (only[side] < DIFF_LIST) list[side][only[side]] = side ? tb->name : ta->name;
            only[side]++;
            if (side) j++;
            else i++;
            continue;
        }
        i++, j++;
        if (!same_shape(ta, tb)) {
            shapes++;
            if (!quiet) printf("%s  shape %s vs %s\n", ta->name, shape_str(s1, sizeof s1, ta), shape_str(s2, sizeof s2, tb));
            continue;
        }
        compared++;
        const char *da = dfm_st_dtype_name(ta), *db = dfm_st_dtype_name(tb);
        int dt_differ = strcmp(da, db) != 0;
        dtypes += dt_differ;
        if (!is_float(ta->dtype) || !is_float(tb->dtype)) { /* U8, I32, I64, others: bytes */
            if (!dt_differ && ta->nbytes == tb->nbytes && !memcmp(ta->data, tb->data, ta->nbytes)) {
                identical++;
                continue;
            }
            beyond++;
            if (quiet) continue;
            if (dt_differ) printf("%s  %s  dtype %s vs %s: not compared\n", ta->name, shape_str(s1, sizeof s1, ta), da, db);
            else printf("%s  %s  %s  bytes differ\n", ta->name, shape_str(s1, sizeof s1, ta), da);
            continue;
        }
        diff_stat st = {0};
        if ((rc = diff_floats(ta, tb, ta->nbytes / dfm_dtype_size(ta->dtype), fa, fb, &st))) break;
        if (!st.differ) {
            identical++;
            continue;
        }
        double r = st.max_abs / fmax(st.max_a, FLT_MIN);
        if (isnan(r)) r = INFINITY;
        if (st.max_abs > max_abs) max_abs = st.max_abs;
        if (r > max_rel) max_rel = r;
        int out = !((rel ? r : st.max_abs) <= tol);
        beyond += out;
        if (quiet) continue;
        printf("%s  %s  max_abs %.6g  max_rel %.6g  differ %lld/%lld", ta->name, shape_str(s1, sizeof s1, ta), st.max_abs,
               r, (long long)st.differ, (long long)(ta->nbytes / dfm_dtype_size(ta->dtype)));
        if (dt_differ) printf("  %s vs %s", da, db);
        printf("%s\n", out ? mark : "");
    }
    free(fa);
    if (rc) {
        dfm_st_close(A);
        dfm_st_close(B);
        return fail("cannot compare the weights");
    }
    for (int side = 0; side < 2; side++) { /* the names belong to A and B: before closing them */
        for (long long k = 0; k < only[side] && k < DIFF_LIST; k++) printf("only in %c: %s\n", "AB"[side], list[side][k]);
        if (only[side] > DIFF_LIST) printf("only in %c: %lld more\n", "AB"[side], only[side] - DIFF_LIST);
    }
    dfm_st_close(A);
    dfm_st_close(B);
    int bad = beyond || only[0] || only[1] || shapes;
    printf("%s: %lld tensors compared, %lld identical; max abs diff %.6g, max rel diff %.6g; only in A %lld, "
           "only in B %lld; shape mismatches %lld, dtype mismatches %lld\n",
           bad ? "different" : identical == compared ? "identical" : "within tolerance", compared, identical, max_abs,
           max_rel, only[0], only[1], shapes, dtypes);
    return bad ? DFM_EXIT_FAIL : DFM_EXIT_OK;
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
    double tol = 0;
    int c, force = 0, rel = 0, quiet = 0, diffopt = 0;
    while ((c = getopt_long(argc, argv, "fhq", longopts, NULL)) != -1) {
        switch (c) {
        case O_TO: to = optarg; break;
        case O_ALPHA: alpha = (float)dfm_parse_double("--alpha", optarg, 1e-30, 1e30); break;
        case O_DTYPE: dtype = optarg; break;
        case O_PREFIX: prefix = optarg; break;
        case O_LORA: lora = optarg; break;
        case 'f': force = 1; break;
        case O_TOL: tol = dfm_parse_double("--tol", optarg, 0, 1e30), diffopt = 1; break;
        case O_REL: rel = diffopt = 1; break;
        case 'q': quiet = diffopt = 1; break;
        case 'h': fputs(usage, stdout); return dfm_close_stdout(0);
        case O_VERSION: dfm_print_version();
        default: dfm_usage_bad_option(argc, argv, longopts);
        }
    }
    char **arg = argv + optind;
    int narg = argc - optind;
    if (narg < 1) dfm_usage_error("no command (info, convert, export-full or diff)");
    const char *cmd = arg[0];
    int status;
    if (diffopt && strcmp(cmd, "diff")) dfm_usage_error("--tol, --rel and -q are for diff");
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
    } else if (!strcmp(cmd, "diff")) {
        if (narg != 3) dfm_usage_error("diff takes A and B");
        if (to || dtype || lora || force || alpha > 0) dfm_usage_error("diff takes no --to, --dtype, --lora, --alpha or -f");
        status = diff_cmd(arg[1], arg[2], tol, rel, quiet);
    } else {
        dfm_usage_error("unknown command '%s' (info, convert, export-full or diff)", cmd);
    }
    return dfm_close_stdout(status);
}
