/* dfm-bucket — choose each sample's resolution bucket, resize to cover and centre-crop its
 * frames, trim the frame count. Thin: options and wiring; the work is lib/data/bucketize.c. */
#include "base/cli.h"
#include "base/error.h"
#include "base/log.h"
#include "dist/dist.h"
#include "data/bucketize.h"
#include "io/stream_map.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "usage: dfm-bucket [options] [INPUT...] < samples > samples\n"
    "Choose a resolution bucket for every sample, scale its frames to cover the bucket and\n"
    "centre-crop them, trim the frame count to the model's rule, and record bucket and crop in\n"
    "'json'. Reads msgpack or tar (.tar.zst) from INPUT files or stdin.\n"
    "\n"
    "Buckets (default: NeMo multi-tier, --preset 512p):\n"
    "  --preset 256p|512p|768p|1024p|1536p   NeMo pixel budget\n"
    "  --max-pixels N              custom pixel budget instead of a preset\n"
    "  --multiple Q                bucket sides are multiples of Q (default 16: Wan)\n"
    "  --size WxH                  one fixed size for every sample\n"
    "  --ratios log:MIN:MAX:N      diffusion-pipe: N log-spaced aspect ratios in [MIN,MAX]\n"
    "  --side S                    with --ratios: bucket area S*S (default 512)\n"
    "  --list-buckets              print the buckets these options give and exit\n"
    "Resizing:\n"
    "  --filter lanczos|bicubic|bilinear|area  resampling filter (default lanczos)\n"
    "Frames:\n"
    "  --frame-rule 4k+1|none      trim to the largest 4k+1 <= F (default; Wan), or keep all\n"
    "  --frame-buckets LIST        e.g. 1,33,81: the largest bucket <= F; a clip shorter than\n"
    "                              every bucket is skipped\n"
    "Output and errors:\n"
    "  -o, --output FILE           write to FILE (atomically) instead of stdout\n"
    "  --format msgpack|tar|tar.zst  stream framing (default msgpack)\n"
    "  --part K/N|auto             take only samples K, K+N, K+2N, ... (K from 0) of the INPUT\n"
    "                              files; auto: K/N from the launcher (mpirun, srun; 0/1 with\n"
    "                              none). A stream on a pipe is taken whole (the first stage splits)\n"
    "  --strict                    stop at the first bad sample (exit 1)\n"
    "  --force                     binary data to or from a terminal\n"
    "  -j, --threads N             resampling threads (default, or 0: one per core)\n"
    "  --progress                  show the progress line even when stdout is a pipe\n"
    "  -q, --quiet                 no progress line\n"
    "  -h, --help                  this help;  --version  print the version\n";

enum { O_PRESET = 256, O_MAXPIX, O_MULT, O_SIZE, O_RATIOS, O_SIDE, O_LIST, O_FILTER, O_FRULE,
       O_FBUCKETS };
static const struct option longopts[] = {
    {"preset", 1, 0, O_PRESET}, {"max-pixels", 1, 0, O_MAXPIX}, {"multiple", 1, 0, O_MULT},
    {"size", 1, 0, O_SIZE},     {"ratios", 1, 0, O_RATIOS},     {"side", 1, 0, O_SIDE},
    {"list-buckets", 0, 0, O_LIST}, {"filter", 1, 0, O_FILTER}, {"frame-rule", 1, 0, O_FRULE},
    {"frame-buckets", 1, 0, O_FBUCKETS}, {"threads", 1, 0, 'j'}, DFM_STREAM_OPTIONS,
    {0, 0, 0, 0}};

static int map(void *ctx, dfm_sample *s) { return dfm_bucketize(ctx, s); }

static void parse_ratios(const char *s, dfm_bucket_opts *o)
{
    char tail;
    if (sscanf(s, "log:%lf:%lf:%d%c", &o->log_min, &o->log_max, &o->log_n, &tail) != 3 ||
        !(o->log_min > 0) || o->log_max < o->log_min || o->log_n < 1 || o->log_n > 64)
        dfm_usage_error("--ratios wants log:MIN:MAX:N with 0 < MIN <= MAX and 1 <= N <= 64, "
                        "e.g. log:0.5:2:7, not '%s'", s);
    o->method = DFM_BUCKETS_LOG;
}

static void parse_frame_buckets(const char *s, dfm_bucket_opts *o)
{
    char *copy = strdup(s), *save = NULL;
    o->n_frame_buckets = 0;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (o->n_frame_buckets == 64) dfm_usage_error("--frame-buckets: at most 64 buckets");
        o->frame_buckets[o->n_frame_buckets++] =
            (int)dfm_parse_long("--frame-buckets", t, 1, 100000);
    }
    free(copy);
    if (!o->n_frame_buckets) dfm_usage_error("--frame-buckets wants a list such as 1,33,81");
    o->frame_rule = DFM_FRAMES_LIST;
}

int main(int argc, char **argv)
{
    dfm_cli_init(argv[0]);
    dfm_bucket_opts o;
    dfm_bucket_opts_default(&o);
    o.threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    dfm_map_opts mo = {.progress = "samples"};
    int list = 0, c, budget_set = 0, side_set = 0, methods = 0;
    static const char *const filters[] = {"lanczos", "bicubic", "bilinear", "area", NULL};
    static const char *const rules[] = {"4k+1", "none", NULL};
    while ((c = getopt_long(argc, argv, "j:" DFM_STREAM_SHORTOPTS, longopts, NULL)) != -1) {
        switch (c) {
        case O_PRESET:
            if ((o.max_pixels = dfm_bucket_preset_pixels(optarg)) < 0)
                dfm_usage_error("unknown --preset '%s' (choose 256p, 512p, 768p, 1024p or 1536p)", optarg);
            if (budget_set++) dfm_usage_error("--preset and --max-pixels exclude each other");
            break;
        case O_MAXPIX:
            o.max_pixels = (int64_t)dfm_parse_count("--max-pixels", optarg);
            if (budget_set++) dfm_usage_error("--preset and --max-pixels exclude each other");
            break;
        case O_MULT: o.multiple = (int)dfm_parse_long("--multiple", optarg, 1, 1024); break;
        case O_SIZE: methods++; dfm_parse_wxh("--size", optarg, &o.fixed_w, &o.fixed_h); o.method = DFM_BUCKETS_FIXED; break;
        case O_RATIOS: methods++; parse_ratios(optarg, &o); break;
        case O_SIDE: side_set = 1; o.side = (int)dfm_parse_long("--side", optarg, 8, 65536); break;
        case O_LIST: list = 1; break;
        case O_FILTER: o.filter = (dfm_filter)dfm_parse_choice("--filter", optarg, filters); break;
        case O_FRULE: o.frame_rule = (dfm_frame_rule)dfm_parse_choice("--frame-rule", optarg, rules); break;
        case O_FBUCKETS: parse_frame_buckets(optarg, &o); break;
        case 'j': o.threads = dfm_parse_threads("--threads", optarg); break;
        default:
            if (!dfm_stream_opt(c, optarg, &mo, usage)) dfm_usage_bad_option(argc, argv, longopts);
        }
    }
    /* --part auto: the launcher's rank and size; 0/1 without one */
    if (dfm_dist_place(&mo.part, DFM_CPU)) dfm_usage_error("%s", dfm_errmsg());
    if (methods > 1) dfm_usage_error("--size and --ratios exclude each other");
    if (side_set && o.method != DFM_BUCKETS_LOG) dfm_usage_error("--side goes with --ratios");
    if (budget_set && o.method != DFM_BUCKETS_NEMO)
        dfm_usage_error("--preset/--max-pixels are for NeMo buckets; not with --size or --ratios");
    if (o.method == DFM_BUCKETS_FIXED && (o.fixed_w % o.multiple || o.fixed_h % o.multiple))
        dfm_usage_error("--size %dx%d is not a multiple of %d (see --multiple)", o.fixed_w,
                        o.fixed_h, o.multiple);
    dfm_bucketer *b;
    if (dfm_bucketer_new(&b, &o)) dfm_usage_error("%s", dfm_errmsg());
    if (list) {
        const dfm_wh *bk;
        int n = dfm_bucketer_list(b, &bk);
        for (int i = 0; i < n; i++) printf("%d %dx%d %.4f\n", i, bk[i].w, bk[i].h, (double)bk[i].w / bk[i].h);
        dfm_bucketer_free(b);
        return dfm_close_stdout(0);
    }
    dfm_counts counts;
    dfm_counts_init(&counts);
    int status = dfm_stream_map(&mo, argv + optind, argc - optind, map, b, &counts);
    dfm_summary(&counts, NULL);
    dfm_bucketer_free(b);
    return status;
}
