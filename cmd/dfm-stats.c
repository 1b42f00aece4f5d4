/* dfm-stats — summarize a dataset before training on it: samples, buckets, caption lengths,
 * durations, what is missing or broken, as text or JSON, and (--sheet) a contact sheet of a few
 * samples per bucket. Thin: the counting is lib/data/stats.c, the sheet lib/data/stats_sheet.c,
 * the reading io/stream_map.c (inputs resolved as dfm-train resolves --data.shards), the decoding
 * of latents lib/models/wan/vae_stage.c. */
#include "base/cli.h"
#include "base/error.h"
#include "base/log.h"
#include "data/stats.h"
#include "data/stats_sheet.h"
#include "data/train_data.h"
#include "io/stream_map.h"
#include "models/wan/vae_stage.h"
#include "tensor/ops.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

static const char usage[] =
    "usage: dfm-stats [options] [INPUT...]\n"
    "Summarize a dataset before training on it: samples, images and videos, samples per\n"
    "bucket, caption lengths (characters, words, tokens) and clip durations as histograms,\n"
    "samples missing a caption, latents or text states, repeated keys, bad samples.\n"
    "INPUT: a shard or stream file (tar, tar.zst, msgpack), a directory of shards (its\n"
    "index.json, else its *.tar and *.tar.zst), a quoted glob, an index.json, or '-' for a\n"
    "stream on stdin (the default). Text on stdout.\n"
    "\n"
    "  --json                      the same numbers as one JSON object\n"
    "  --check                     also count NaN and Inf in every float .npy field (reads\n"
    "                              every array)\n"
    "  --sheet FILE.png            a contact sheet: one row per bucket, the first frame of the\n"
    "                              first K samples of each, as they will be trained on\n"
    "  --per-bucket K              samples per bucket on the sheet (default 4, at most 64)\n"
    "  --model DIR                 with --sheet: the Wan model (or its vae/) that decodes the\n"
    "                              first latent frame of samples that carry no frames\n"
    "  --device cpu|cuda           where --model decodes (default cpu)\n"
    "  -j, --threads N             CPU threads for decoding (default, or 0: one per core)\n"
    "  --strict                    stop at the first bad sample (exit 1)\n"
    "  --force                     read a stream from a terminal\n"
    "  --progress                  show the progress line even when stderr is not a terminal\n"
    "  -q, --quiet                 no progress line\n"
    "  -h, --help                  this help;  --version  print the version\n";

enum { O_JSON = 256, O_CHECK, O_SHEET, O_PER, O_MODEL, O_DEVICE };
static const struct option longopts[] = {
    {"json", 0, 0, O_JSON},       {"check", 0, 0, O_CHECK},     {"sheet", 1, 0, O_SHEET},
    {"per-bucket", 1, 0, O_PER},  {"model", 1, 0, O_MODEL},     {"device", 1, 0, O_DEVICE},
    {"threads", 1, 0, 'j'},       {"strict", 0, 0, DFM_OPT_STRICT}, {"force", 0, 0, DFM_OPT_FORCE},
    {"progress", 0, 0, DFM_OPT_PROGRESS}, {"quiet", 0, 0, 'q'}, {"help", 0, 0, 'h'},
    {"version", 0, 0, DFM_OPT_VERSION}, {0, 0, 0, 0}};

typedef struct {
    dfm_stats *st;
    dfm_sheet *sheet;
    dfm_wan_vae *vae;
    dfm_vae_stage_opts vo;
    char *need_model; /* the first sample that needed --model, when none was given */
    uint64_t tile_errors;
} ctx_t;

/* The first latent frame of s, decoded with the VAE, as b's next tile; a failure is warned about
 * (the sample still counts). */
static int decode_tile(ctx_t *x, const dfm_stats_bucket *b, const dfm_sample *s)
{
    char kb[300];
    dfm_sample t;
    dfm_sample_init(&t);
    uint8_t *npy = NULL;
    size_t len = 0;
    int rc = dfm_sheet_first_latent_frame(dfm_sample_get(s, "latents.npy"), &npy, &len);
    if (!rc) rc = dfm_sample_set_key(&t, s->key);
    if (!rc) rc = dfm_sample_set_owned(&t, "latents.npy", npy, len), npy = NULL;
    if (!rc) rc = dfm_vae_decode_sample(x->vae, &x->vo, &t);
    if (!rc) rc = dfm_sheet_add_sample(x->sheet, b, &t);
    free(npy);
    dfm_sample_free(&t);
    if (rc == DFM_E_NOMEM) return rc;
    if (rc) {
        dfm_log_warn("--sheet: sample '%s': cannot decode its first latent frame: %s",
                     dfm_key_show(s->key, kb, sizeof kb), dfm_errmsg());
        x->tile_errors++;
    }
    return 0;
}

static int sink(void *c, const dfm_sample *s)
{
    ctx_t *x = c;
    dfm_stats_bucket b;
    int rc = dfm_stats_add(x->st, s, &b);
    if (rc == DFM_E_NOMEM) return rc;
    if (rc) return DFM_E_SKIP; /* bad: the message names the key */
    if (!x->sheet || !dfm_sheet_wants(x->sheet, &b)) return 0;
    rc = dfm_sheet_add_sample(x->sheet, &b, s);
    if (rc != DFM_E_SKIP) return rc == DFM_E_NOMEM ? rc : 0;
    if (!dfm_sample_get(s, "latents.npy")) return 0; /* neither frames nor latents: no tile */
    if (x->vae) return decode_tile(x, &b, s);
    if (!x->need_model && !(x->need_model = strdup(s->key))) return DFM_E_NOMEM;
    return 0;
}

/* Every INPUT as files: "-" and regular files as they are, the rest (directories, globs,
 * index.json) as dfm-train resolves them. Returns the count; *failed is set for a spec that
 * resolves to nothing (reported). */
static int resolve(char **specs, int n, char ***out, int *failed)
{
    char **v = NULL;
    int nv = 0;
    for (int i = 0; i < n; i++) {
        struct stat st;
        size_t len = strlen(specs[i]);
        int plain = !strcmp(specs[i], "-") ||
                    (stat(specs[i], &st) == 0 && !S_ISDIR(st.st_mode) &&
                     !(len >= 5 && !strcmp(specs[i] + len - 5, ".json")));
        char **paths = NULL;
        int np = 0;
        if (plain) {
            paths = malloc(sizeof *paths);
            if (paths && (paths[0] = strdup(specs[i]))) np = 1;
            else dfm_fail(DFM_E_NOMEM, "out of memory");
        } else if (dfm_train_data_resolve(specs[i], &paths, &np)) {
            dfm_log_error("%s", dfm_errmsg());
            *failed = 1;
            continue;
        }
        char **nvv = np ? realloc(v, (size_t)(nv + np) * sizeof *v) : v;
        if (!paths || !nvv) {
            dfm_log_error("out of memory");
            exit(DFM_EXIT_FAIL);
        }
        v = nvv;
        memcpy(v + nv, paths, (size_t)np * sizeof *v);
        nv += np;
        free(paths);
    }
    *out = v;
    return nv;
}

static void put(const char *s, size_t n)
{
    if (fwrite(s, 1, n, stdout) != n) {
        if (errno == EPIPE) dfm_exit_pipe();
        dfm_log_error("cannot write to stdout: %s", strerror(errno));
        exit(DFM_EXIT_FAIL);
    }
}

int main(int argc, char **argv)
{
    dfm_cli_init(argv[0]);
    dfm_map_opts mo = {.progress = "samples", .sink = sink, .sink_writes_files = 1};
    dfm_stats_opts so = {0};
    dfm_wan_vae_opts vo = {.device = DFM_CPU, .weights = DFM_F32, .load_decoder = 1};
    const char *sheet_path = NULL, *model = NULL;
    int c, json = 0, per_bucket = 4, per_given = 0, threads = 0;
    static const char *const devices[] = {"cpu", "cuda", NULL};
    while ((c = getopt_long(argc, argv, "j:qh", longopts, NULL)) != -1) {
        switch (c) {
        case O_JSON: json = 1; break;
        case O_CHECK: so.check = 1; break;
        case O_SHEET: sheet_path = optarg; break;
        case O_PER: per_bucket = (int)dfm_parse_long("--per-bucket", optarg, 1, DFM_SHEET_MAX_PER_BUCKET), per_given = 1; break;
        case O_MODEL: model = optarg; break;
        case O_DEVICE: vo.device = dfm_parse_choice("--device", optarg, devices) ? DFM_CUDA : DFM_CPU; break;
        case 'j': threads = dfm_parse_threads("--threads", optarg); break;
        default:
            if (!dfm_stream_opt(c, optarg, &mo, usage)) dfm_usage_bad_option(argc, argv, longopts);
        }
    }
    if (!sheet_path && (per_given || model))
        dfm_usage_error("--per-bucket and --model are for --sheet FILE.png");
    if (sheet_path) {
        size_t n = strlen(sheet_path);
        if (n < 5 || strcasecmp(sheet_path + n - 4, ".png"))
            dfm_usage_error("--sheet '%s': the contact sheet is a PNG file; name it FILE.png", sheet_path);
    }
    if (vo.device == DFM_CUDA && !dfm_device_available(DFM_CUDA)) dfm_usage_error("--device cuda: %s", dfm_errmsg());
    if (threads) dfm_ops_set_threads(threads);
    int failed = 0;
    char **inputs = NULL;
    int n = optind < argc ? resolve(argv + optind, argc - optind, &inputs, &failed) : 0;
    ctx_t cx = {.vo = {.model = model, .out_dtype = DFM_F16}};
    dfm_counts counts;
    dfm_counts_init(&counts);
    if (dfm_stats_new(&cx.st, &so) || (sheet_path && dfm_sheet_new(&cx.sheet, per_bucket))) {
        dfm_log_error("%s", dfm_errmsg());
        return DFM_EXIT_FAIL;
    }
    if (sheet_path && model && dfm_wan_vae_load(&cx.vae, model, &vo)) {
        dfm_log_error("--model '%s': cannot load the VAE: %s", model, dfm_errmsg());
        dfm_summary(&counts, NULL);
        return DFM_EXIT_FAIL;
    }
    int status = DFM_EXIT_OK;
    mo.sink_ctx = &cx;
    if (n > 0 || optind == argc) status = dfm_stream_map(&mo, inputs, n, NULL, NULL, &counts);
    if (status == DFM_EXIT_USAGE) return status; /* a terminal on stdin */
    if (failed) status = DFM_EXIT_FAIL;
    int complete = status == DFM_EXIT_OK; /* every input read to its end */
    /* the sheet first, so that the report can say where its tiles are */
    cJSON *layout = NULL;
    if (cx.sheet && cx.need_model) {
        char kb[300];
        dfm_log_error("--sheet: sample '%s' carries latents but no frames: decoding its first latent frame "
                      "needs --model DIR", dfm_key_show(cx.need_model, kb, sizeof kb));
        dfm_log_hint("pass --model with the Wan model (or its vae/ directory) that encoded the latents; "
                     "no sheet was written");
        status = DFM_EXIT_FAIL;
    } else if (cx.sheet && !dfm_sheet_tiles(cx.sheet)) {
        dfm_log_warn("--sheet: no sample with frames or latents: no sheet written");
    } else if (cx.sheet) {
        layout = cJSON_CreateObject();
        cJSON_AddStringToObject(layout, "file", sheet_path);
        if (dfm_sheet_write(cx.sheet, cx.st, sheet_path, layout)) {
            dfm_log_error("--sheet '%s': %s", sheet_path, dfm_errmsg());
            cJSON_Delete(layout);
            layout = NULL;
            status = DFM_EXIT_FAIL;
        }
    }
    /* the report: always, even after a failed input (it says so) */
    dfm_buf out = {0};
    int rc;
    if (json) {
        cJSON *j = NULL;
        rc = dfm_stats_json(cx.st, &j);
        if (!rc) {
            cJSON_AddBoolToObject(j, "complete", complete);
            if (layout) cJSON_AddItemToObject(j, "sheet", layout), layout = NULL;
            char *txt = cJSON_Print(j);
            if (!txt || dfm_buf_printf(&out, "%s\n", txt)) rc = dfm_fail(DFM_E_NOMEM, "out of memory");
            free(txt);
        }
        cJSON_Delete(j);
    } else {
        rc = dfm_stats_text(cx.st, &out);
        if (!rc && layout) {
            cJSON *rows = cJSON_GetObjectItemCaseSensitive(layout, "rows");
            rc = dfm_buf_printf(&out, "sheet: %s, %d row%s, %d tile%s, %dx%d pixels\n", sheet_path,
                                cJSON_GetArraySize(rows), cJSON_GetArraySize(rows) == 1 ? "" : "s",
                                dfm_sheet_tiles(cx.sheet), dfm_sheet_tiles(cx.sheet) == 1 ? "" : "s",
                                cJSON_GetObjectItemCaseSensitive(layout, "width")->valueint,
                                cJSON_GetObjectItemCaseSensitive(layout, "height")->valueint);
        }
        if (!rc && !complete)
            rc = dfm_buf_printf(&out, "incomplete: the input was not read to its end (see the errors)\n");
    }
    if (rc) {
        dfm_log_error("%s", dfm_errmsg());
        status = DFM_EXIT_FAIL;
    } else {
        put((const char *)out.data, out.len);
    }
    dfm_buf_free(&out);
    cJSON_Delete(layout);
    status = dfm_close_stdout(status);
    dfm_summary(&counts, cx.tile_errors ? "some sheet tiles could not be decoded" : NULL);
    for (int i = 0; i < n; i++) free(inputs[i]);
    free(inputs);
    free(cx.need_model);
    dfm_sheet_free(cx.sheet);
    dfm_stats_free(cx.st);
    dfm_wan_vae_free(cx.vae);
    return status;
}
