/* dfm-vae-encode — frames.npy -> normalized Wan VAE latents.npy for every sample of a stream.
 * Thin: options and wiring; the work is lib/models/wan/vae.c and vae_stage.c. */
#include "base/cli.h"
#include "base/error.h"
#include "base/log.h"
#include "dist/dist.h"
#include "io/stream_map.h"
#include "models/wan/vae_stage.h"
#include "tensor/ops.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "usage: dfm-vae-encode --model DIR [options] [INPUT...] < samples > samples\n"
    "Encode each sample's frames.npy (uint8 [F,H,W,3], F = 4k+1, H and W multiples of 8) with the\n"
    "Wan 2.1 VAE into latents.npy [16, 1+(F-1)/4, H/8, W/8], normalized with the VAE's\n"
    "latents_mean/latents_std as the Wan transformer expects. Reads msgpack or tar from INPUT files\n"
    "or stdin; other fields pass through; json gets a 'latents' record.\n"
    "\n"
    "  --model DIR                 a diffusers Wan model (with vae/) or a vae/ directory\n"
    "  --dtype f32|bf16            compute: f32 (default) or bf16 weights and GEMM inputs\n"
    "  --out-dtype f16|f32         stored latents dtype (default f16)\n"
    "  --sample                    draw from the posterior instead of taking its mean\n"
    "  --seed N                    noise seed for --sample (default 0); a sample's noise depends\n"
    "                              on the seed and its key only\n"
    "  --keep-frames               keep frames.npy next to latents.npy\n"
    "  --device cpu|cuda           where to run (default cpu); cuda under a launcher (mpirun,\n"
    "                              srun): GPU (local rank mod visible GPUs), one per process\n"
    "  -j, --threads N             CPU threads (default, or 0: one per core)\n"
    "  -o, --output FILE           write to FILE (atomically) instead of stdout\n"
    "  --format msgpack|tar|tar.zst  stream framing (default msgpack)\n"
    "  --part K/N|auto             take only samples K, K+N, K+2N, ... (K from 0) of the INPUT\n"
    "                              files; auto: K/N from the launcher (mpirun, srun; 0/1 with\n"
    "                              none). A stream on a pipe is taken whole (the first stage splits)\n"
    "  --strict                    stop at the first bad sample (exit 1)\n"
    "  --force                     binary data to or from a terminal\n"
    "  --progress                  show the progress line even when stdout is a pipe\n"
    "  -q, --quiet                 no progress line\n"
    "  -h, --help                  this help;  --version  print the version\n";

enum { O_MODEL = 256, O_DTYPE, O_ODTYPE, O_SAMPLE, O_SEED, O_KEEP, O_DEVICE };
static const struct option longopts[] = {
    {"model", 1, 0, O_MODEL},   {"dtype", 1, 0, O_DTYPE},     {"out-dtype", 1, 0, O_ODTYPE},
    {"sample", 0, 0, O_SAMPLE}, {"seed", 1, 0, O_SEED},       {"keep-frames", 0, 0, O_KEEP},
    {"device", 1, 0, O_DEVICE}, {"threads", 1, 0, 'j'},
    DFM_STREAM_OPTIONS,         {0, 0, 0, 0}};


typedef struct {
    dfm_wan_vae *vae;
    dfm_vae_stage_opts o;
} ctx_t;

static int map(void *c, dfm_sample *s)
{
    ctx_t *x = c;
    return dfm_vae_encode_sample(x->vae, &x->o, s);
}

int main(int argc, char **argv)
{
    dfm_cli_init(argv[0]);
    ctx_t cx = {.o = {.out_dtype = DFM_F16}};
    dfm_wan_vae_opts vo = {.device = DFM_CPU, .weights = DFM_F32, .load_encoder = 1};
    dfm_map_opts mo = {.progress = "samples"};
    int c, threads = 0;
    static const char *const dtypes[] = {"f32", "bf16", NULL};
    static const char *const odtypes[] = {"f16", "f32", NULL};
    static const char *const devices[] = {"cpu", "cuda", NULL};
    while ((c = getopt_long(argc, argv, "j:" DFM_STREAM_SHORTOPTS, longopts, NULL)) != -1) {
        switch (c) {
        case O_MODEL: cx.o.model = optarg; break;
        case O_DTYPE: vo.weights = dfm_parse_choice("--dtype", optarg, dtypes) ? DFM_BF16 : DFM_F32; break;
        case O_ODTYPE: cx.o.out_dtype = dfm_parse_choice("--out-dtype", optarg, odtypes) ? DFM_F32 : DFM_F16; break;
        case O_SAMPLE: cx.o.sample = 1; break;
        case O_SEED: cx.o.seed = (uint64_t)dfm_parse_long("--seed", optarg, 0, 0x7fffffffffffffffL); break;
        case O_KEEP: cx.o.keep_frames = 1; break;
        case O_DEVICE: vo.device = dfm_parse_choice("--device", optarg, devices) ? DFM_CUDA : DFM_CPU; break;
        case 'j': threads = dfm_parse_threads("--threads", optarg); break;
        default:
            if (!dfm_stream_opt(c, optarg, &mo, usage)) dfm_usage_bad_option(argc, argv, longopts);
        }
    }
    if (!cx.o.model) dfm_usage_error("no --model DIR (a diffusers Wan model or its vae/ directory)");
    /* --part auto's K/N and the GPU (local rank) from the launcher */
    if (dfm_dist_place(&mo.part, vo.device)) dfm_usage_error("%s", dfm_errmsg());
    if (vo.device == DFM_CUDA && !dfm_device_available(DFM_CUDA))
        dfm_usage_error("--device cuda: %s", dfm_errmsg());
    if (threads) dfm_ops_set_threads(threads);
    dfm_counts counts;
    dfm_counts_init(&counts);
    if (dfm_wan_vae_load(&cx.vae, cx.o.model, &vo)) {
        dfm_log_error("cannot load the VAE: %s", dfm_errmsg());
        dfm_summary(&counts, NULL);
        return DFM_EXIT_FAIL;
    }
    int status = dfm_stream_map(&mo, argv + optind, argc - optind, map, &cx, &counts);
    dfm_wan_vae_free(cx.vae);
    dfm_summary(&counts, NULL);
    return status;
}
