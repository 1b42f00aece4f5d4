/* dfm-sample — prompts to videos and images with Wan 2.1 (+ a LoRA or a full checkpoint).
 * Thin: options, output names and files; the work is lib/sample/pipeline.c. */
#include "base/buf.h"
#include "base/cli.h"
#include "base/error.h"
#include "base/log.h"
#include "io/npy.h"
#include "media/encode.h"
#include "sample/pipeline.h"
#include "sample/prompts.h"
#include "tensor/ops.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "usage: dfm-sample --model DIR (-p PROMPT | --prompts FILE) -o OUT [options]\n"
    "Turn prompts into videos or images with a Wan 2.1 text-to-video model, as diffusers'\n"
    "WanPipeline does: UMT5 text states, the UniPC (or Euler) flow sampler with classifier-free\n"
    "guidance, the VAE. A LoRA or a full checkpoint from dfm-train (or any trainer) on top.\n"
    "\n"
    "  --model DIR              a diffusers Wan root (text_encoder/, tokenizer/, transformer/, vae/, scheduler/)\n"
    "  -p, --prompt TEXT        the prompt\n"
    "  --prompts FILE           one prompt per line, with musubi-tuner's options after it\n"
    "                           (--w --h --f --d --s --g --fs --n); numbered outputs\n"
    "  -n, --negative-prompt T  the negative prompt for guidance (default: empty)\n"
    "  -o, --output FILE        .mp4 (H.264), .webp (animated), .png (one frame, or a contact sheet\n"
    "                           with --grid), .npy (the final normalized latents, no VAE)\n"
    "  --steps N                denoising steps (default 50)\n"
    "  --guidance G             classifier-free guidance scale (default 5.0; only when > 1)\n"
    "  --sampler unipc|euler    UniPC multistep or flow-matching Euler; without it, the one the\n"
    "                           model's scheduler_config.json names (UniPC for Wan)\n"
    "  --shift S                the flow shift (default: the model's scheduler config, 3.0 for the 1.3B)\n"
    "  --frames N               frames, 4k+1 (default 81; others are rounded as diffusers does)\n"
    "  --width W, --height H    pixels, multiples of 16 (default 832x480; others rounded down)\n"
    "  --seed N                 noise seed (default 42)\n"
    "  --noise FILE.npy         the initial noise instead: float32 [16, (frames-1)/4+1, height/8, width/8]\n"
    "  --lora PATH[:SCALE]      an adapter (any naming; a dfm-train step or run directory works)\n"
    "  --checkpoint DIR         full transformer weights instead of the model's (a dfm-train step\n"
    "                           or run directory, a diffusers transformer, an original or ComfyUI file)\n"
    "  --fps N                  frames per second of .mp4/.webp (default 16)\n"
    "  --grid                   .png: all frames as a contact sheet\n"
    "  --dtype bf16|f32         transformer weights and compute (default bf16)\n"
    "  --text-dtype bf16|f32    the text encoder's (default bf16: UMT5-XXL is 22.7 GB in f32)\n"
    "  --device cpu|cuda        where to run (default cpu)\n"
    "  -j, --threads N          CPU threads (default, or 0: one per core)\n"
    "  -f, --force              overwrite existing outputs\n"
    "  -q, --quiet              no progress line\n"
    "  -h, --help               this help;  --version  print the version\n";

enum {
    O_MODEL = 256, O_PROMPTS, O_STEPS, O_GUIDANCE, O_SAMPLER, O_SHIFT, O_FRAMES, O_WIDTH, O_HEIGHT, O_SEED, O_NOISE,
    O_LORA, O_CKPT, O_FPS, O_GRID, O_DTYPE, O_TDTYPE, O_DEVICE, O_VERSION
};
static const struct option longopts[] = {
    {"model", 1, 0, O_MODEL},     {"prompt", 1, 0, 'p'},       {"prompts", 1, 0, O_PROMPTS},
    {"negative-prompt", 1, 0, 'n'}, {"output", 1, 0, 'o'},     {"steps", 1, 0, O_STEPS},
    {"guidance", 1, 0, O_GUIDANCE}, {"sampler", 1, 0, O_SAMPLER}, {"shift", 1, 0, O_SHIFT},
    {"frames", 1, 0, O_FRAMES},   {"width", 1, 0, O_WIDTH},    {"height", 1, 0, O_HEIGHT},
    {"seed", 1, 0, O_SEED},       {"noise", 1, 0, O_NOISE},    {"lora", 1, 0, O_LORA},
    {"checkpoint", 1, 0, O_CKPT}, {"fps", 1, 0, O_FPS},        {"grid", 0, 0, O_GRID},
    {"dtype", 1, 0, O_DTYPE},     {"text-dtype", 1, 0, O_TDTYPE}, {"device", 1, 0, O_DEVICE},  {"threads", 1, 0, 'j'},
    {"force", 0, 0, 'f'},         {"quiet", 0, 0, 'q'},        {"help", 0, 0, 'h'},
    {"version", 0, 0, O_VERSION}, {0, 0, 0, 0}};

static long num_arg(const char *opt, const char *v, long lo, long hi)
{
    char *e;
    errno = 0;
    long x = strtol(v, &e, 10);
    if (e == v || *e || errno || x < lo || x > hi) dfm_usage_error("%s: '%s' is not a whole number in %ld..%ld", opt, v, lo, hi);
    return x;
}

static double real_arg(const char *opt, const char *v)
{
    char *e;
    double x = strtod(v, &e);
    if (e == v || *e || !isfinite(x)) dfm_usage_error("%s: '%s' is not a number", opt, v);
    return x;
}

static const char *ext_of(const char *path)
{
    const char *s = strrchr(path, '/'), *d = strrchr(path, '.');
    return d && (!s || d > s) ? d : "";
}

/* OUT for request i of n: "fox.mp4" stays for one; "fox-0001.mp4" ... for a prompt file */
static void out_name(const char *out, int i, int n, char *buf, size_t len)
{
    if (n == 1) {
        snprintf(buf, len, "%s", out);
        return;
    }
    const char *e = ext_of(out);
    snprintf(buf, len, "%.*s-%04d%s", (int)(strlen(out) - strlen(e)), out, i + 1, e);
}

typedef struct {
    int quiet, n;
    double t0;
} prog_t;

static void on_progress(void *ctx, int req, int step, int steps)
{
    prog_t *p = ctx;
    if (p->quiet) return;
    char what[64];
    snprintf(what, sizeof what, "steps (prompt %d/%d)", req + 1, p->n);
    dfm_progress((uint64_t)step, (uint64_t)steps, what);
    if (step == steps) dfm_progress_done();
}

static int write_latents(const char *path, const dfm_sample_result *r)
{
    int64_t shape[4] = {r->C, r->F, r->H, r->W};
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = dfm_npy_build(DFM_NPY_F32, 4, shape, r->latents, &buf, &len);
    if (rc) return rc;
    rc = dfm_write_file_atomic(path, buf, len);
    free(buf);
    return rc;
}

static float *read_noise(const char *path, int C, int F, int H, int W)
{
    dfm_buf b = {0};
    if (dfm_read_file(path, 1u << 31, &b) < 0) dfm_usage_error("--noise: %s", dfm_errmsg());
    dfm_npy a;
    if (dfm_npy_parse(b.data, b.len, &a)) dfm_usage_error("--noise '%s': %s", path, dfm_errmsg());
    int64_t want[4] = {C, F, H, W};
    int ok = a.dtype == DFM_NPY_F32 && (a.ndim == 4 || (a.ndim == 5 && a.shape[0] == 1));
    for (int d = 0; ok && d < 4; d++) ok = a.shape[a.ndim - 4 + d] == want[d];
    if (!ok)
        dfm_usage_error("--noise '%s': want float32 [%d, %d, %d, %d] (16 channels, (frames-1)/4+1, height/8, width/8)", path,
                        C, F, H, W);
    size_t n = (size_t)C * F * H * W;
    float *x = malloc(n * sizeof(float));
    if (!x) dfm_usage_error("out of memory");
    memcpy(x, a.data, n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) dfm_usage_error("--noise '%s': a non-finite value at element %zu", path, i);
    dfm_buf_free(&b);
    return x;
}

int main(int argc, char **argv)
{
    dfm_cli_init(argv[0]);
    dfm_sample_model m = {.device = DFM_CPU, .dtype = DFM_BF16, .text_dtype = DFM_BF16, .vae_dtype = DFM_F32, .text_len = 512};
    dfm_sample_request d = {.negative = "", .width = 832, .height = 480, .frames = 81, .steps = 50, .guidance = 5.0,
                            .sampler = DFM_SAMPLER_UNIPC, .seed = 42};
    const char *prompts = NULL, *out = NULL, *noise = NULL;
    int threads = 0, grid = 0, force = 0, quiet = 0, fps = 16;
    static const char *const samplers[] = {"unipc", "euler", NULL};
    static const char *const dtypes[] = {"bf16", "f32", NULL};
    static const char *const devices[] = {"cpu", "cuda", NULL};
    int c;
    while ((c = getopt_long(argc, argv, "p:n:o:j:fqh", longopts, NULL)) != -1) {
        switch (c) {
        case O_MODEL: m.model = optarg; break;
        case 'p': d.prompt = optarg; break;
        case O_PROMPTS: prompts = optarg; break;
        case 'n': d.negative = optarg; break;
        case 'o': out = optarg; break;
        case O_STEPS: d.steps = (int)num_arg("--steps", optarg, 1, 10000); break;
        case O_GUIDANCE:
            d.guidance = real_arg("--guidance", optarg);
            if (d.guidance < 0) dfm_usage_error("--guidance must be >= 0");
            break;
        case O_SAMPLER:
            d.sampler = dfm_parse_choice("--sampler", optarg, samplers) ? DFM_SAMPLER_EULER : DFM_SAMPLER_UNIPC;
            d.sampler_set = 1;
            break;
        case O_SHIFT:
            d.shift = real_arg("--shift", optarg);
            if (d.shift <= 0) dfm_usage_error("--shift must be > 0");
            break;
        case O_FRAMES: d.frames = (int)num_arg("--frames", optarg, 1, 100000); break;
        case O_WIDTH: d.width = (int)num_arg("--width", optarg, 16, 16384); break;
        case O_HEIGHT: d.height = (int)num_arg("--height", optarg, 16, 16384); break;
        case O_SEED: {
            char *e;
            errno = 0;
            d.seed = strtoull(optarg, &e, 10);
            if (e == optarg || *e || errno || optarg[0] == '-') dfm_usage_error("--seed: '%s' is not a whole number >= 0", optarg);
            break;
        }
        case O_NOISE: noise = optarg; break;
        case O_LORA: {
            if (m.nloras == DFM_SAMPLE_MAX_LORAS) dfm_usage_error("at most %d --lora", DFM_SAMPLE_MAX_LORAS);
            /* PATH:SCALE when what follows the last ':' is a number and the whole argument is not
             * itself an existing path (a file name may hold a ':') */
            char *colon = strrchr(optarg, ':');
            float scale = 1.0f;
            if (colon && colon[1] && access(optarg, F_OK)) {
                char *e;
                double s = strtod(colon + 1, &e);
                if (!*e) {
                    if (!isfinite(s)) dfm_usage_error("--lora '%s': the scale after ':' is not finite", optarg);
                    scale = (float)s;
                    *colon = 0;
                }
            }
            m.lora[m.nloras] = optarg, m.lora_scale[m.nloras++] = scale;
            break;
        }
        case O_CKPT: m.transformer = optarg; break;
        case O_FPS: fps = (int)num_arg("--fps", optarg, 1, 1000); break;
        case O_GRID: grid = 1; break;
        case O_DTYPE: m.dtype = dfm_parse_choice("--dtype", optarg, dtypes) ? DFM_F32 : DFM_BF16; break;
        case O_TDTYPE: m.text_dtype = dfm_parse_choice("--text-dtype", optarg, dtypes) ? DFM_F32 : DFM_BF16; break;
        case O_DEVICE: m.device = dfm_parse_choice("--device", optarg, devices) ? DFM_CUDA : DFM_CPU; break;
        case 'j': threads = dfm_parse_threads("--threads", optarg); break;
        case 'f': force = 1; break;
        case 'q': quiet = 1; break;
        case 'h': fputs(usage, stdout); return dfm_close_stdout(0);
        case O_VERSION: printf("dfm-sample %s\n", DFM_VERSION); return dfm_close_stdout(0);
        default: dfm_usage_bad_option(argc, argv, longopts);
        }
    }
    if (optind < argc) dfm_usage_error("unexpected argument '%s'", argv[optind]);
    if (!m.model) dfm_usage_error("no --model DIR (a diffusers Wan 2.1 directory)");
    if (!d.prompt == !prompts) dfm_usage_error(prompts ? "-p and --prompts together: give one" : "no -p PROMPT or --prompts FILE");
    if (!out) dfm_usage_error("no -o OUT (.mp4, .webp, .png or .npy)");
    if (access(m.model, F_OK)) dfm_usage_error("--model '%s': %s", m.model, strerror(errno));
    if (m.transformer && access(m.transformer, F_OK)) dfm_usage_error("--checkpoint '%s': %s", m.transformer, strerror(errno));
    for (int i = 0; i < m.nloras; i++)
        if (access(m.lora[i], F_OK)) dfm_usage_error("--lora '%s': %s", m.lora[i], strerror(errno));
    const char *ext = ext_of(out);
    int want_npy = !strcmp(ext, ".npy");
    if (grid && strcmp(ext, ".png")) dfm_usage_error("--grid makes a PNG contact sheet: -o NAME.png");
    {
        /* the output directory now, not after minutes of sampling */
        char dir[4200];
        snprintf(dir, sizeof dir, "%s", out);
        char *sl = strrchr(dir, '/');
        if (sl) *sl = 0;
        if (access(sl ? (dir[0] ? dir : "/") : ".", W_OK))
            dfm_usage_error("-o '%s': cannot write into '%s': %s", out, sl ? (dir[0] ? dir : "/") : ".", strerror(errno));
    }
    if (!want_npy && strcmp(ext, ".mp4") && strcmp(ext, ".webp") && strcmp(ext, ".png"))
        dfm_usage_error("-o '%s': the name must end in .mp4, .webp, .png or .npy", out);
    if (m.device == DFM_CUDA && !dfm_device_available(DFM_CUDA)) dfm_usage_error("--device cuda: %s", dfm_errmsg());
    if (threads) dfm_ops_set_threads(threads);
    dfm_log_set_quiet(quiet);

    dfm_prompt_list pl = {0};
    dfm_sample_request *req = &d;
    int n = 1;
    if (prompts) {
        if (dfm_prompts_load(&pl, prompts, &d)) dfm_usage_error("%s", dfm_errmsg());
        req = pl.req, n = pl.n;
    }
    float *noise_buf = NULL;
    for (int i = 0; i < n; i++) {
        int w = req[i].width, h = req[i].height, f = req[i].frames;
        if (dfm_sample_round_size(&req[i].width, &req[i].height, &req[i].frames))
            dfm_log_warn("%s%dx%d, %d frames rounded to %dx%d, %d frames (frames 4k+1, sides multiples of 16, as diffusers)",
                         n > 1 ? "a prompt's " : "", w, h, f, req[i].width, req[i].height, req[i].frames);
        if (req[i].width < 16 || req[i].height < 16) dfm_usage_error("%dx%d is smaller than 16x16", w, h);
        if (!strcmp(ext, ".png") && req[i].frames > 1 && !grid)
            dfm_usage_error("-o %s: a .png holds one frame: --frames 1 for an image, or --grid for a contact sheet", out);
    }
    if (noise) {
        if (n > 1) dfm_usage_error("--noise is for a single prompt");
        noise_buf = read_noise(noise, 16, (req[0].frames - 1) / 4 + 1, req[0].height / 8, req[0].width / 8);
        req[0].noise = noise_buf;
    }
    char name[4200];
    for (int i = 0; i < n && !force; i++) {
        out_name(out, i, n, name, sizeof name);
        if (!access(name, F_OK)) dfm_usage_error("'%s' exists (-f to overwrite)", name);
    }
    dfm_sample_result *res = calloc(n, sizeof *res);
    if (!res) dfm_usage_error("out of memory");
    prog_t pg = {.quiet = quiet, .n = n, .t0 = dfm_now()};
    int status = 0, written = 0;
    if (dfm_sample_run(&m, req, n, !want_npy, res, on_progress, &pg)) {
        dfm_log_error("%s", dfm_errmsg());
        status = 1;
    }
    dfm_encode_opts eo = {.fps = fps};
    for (int i = 0; i < n && !status; i++) {
        out_name(out, i, n, name, sizeof name);
        int rc = want_npy ? write_latents(name, &res[i])
                 : grid   ? dfm_encode_grid(name, res[i].frames, res[i].nframes, res[i].height, res[i].width, &eo)
                          : dfm_encode_frames(name, res[i].frames, res[i].nframes, res[i].height, res[i].width, &eo);
        if (rc) {
            dfm_log_error("'%s': %s", name, dfm_errmsg());
            status = 1;
        } else {
            written++;
            dfm_log_info("wrote %s (%dx%d, %d frames; denoising %.1f s)", name, req[i].width, req[i].height, req[i].frames,
                         res[i].seconds_denoise);
        }
    }
    fprintf(stderr, "%s: %d of %d written, %.2f s\n", dfm_prog(), written, n, dfm_now() - pg.t0);
    for (int i = 0; i < n; i++) dfm_sample_result_free(&res[i]);
    free(res);
    free(noise_buf);
    dfm_prompts_free(&pl);
    return status;
}
