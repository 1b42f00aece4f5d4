/* dfm-decode — find images and videos, decode them, attach captions, write a sample stream.
 * Thin: options and wiring only; the work is in lib/data/ingest.c. See man/man1/dfm-decode.1. */
#include "base/cli.h"
#include "base/error.h"
#include "base/log.h"
#include "dist/dist.h"
#include "data/bucketize.h"
#include "data/decode_run.h"
#include "io/stream.h"
#include "text/prompt_clean.h"

#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "usage: dfm-decode [options] PATH... > samples\n"
    "Find images (jpg jpeg png webp bmp) and videos (mp4 avi mov mkv webm) under each PATH\n"
    "(directories are walked recursively in sorted order; '-' reads paths from stdin, one per\n"
    "line, or NUL-separated with -0), decode them to RGB frames, attach captions, and write one\n"
    "sample per clip.\n"
    "\n"
    "Captions:\n"
    "  --captions auto|FILE.jsonl  where captions come from (default auto: NAME.txt, NAME.json,\n"
    "                              meta.json, captions.json, <prefix>_internvl.json, file name)\n"
    "  --caption-field NAME        JSON field holding the caption (default: caption)\n"
    "  --clean-captions            NeMo's Wan caption cleaning: HTML entities unescaped twice,\n"
    "                              white space runs to one space, stripped (no ftfy)\n"
    "Frames (videos):\n"
    "  --frames N                  frames per clip (default: all, capped by --max-frames;\n"
    "                              10 in frames mode)\n"
    "  --max-frames N              cap when --frames is not given (default 129)\n"
    "  --clip spread|begin|middle  spread over the whole clip (default), from the start, centred\n"
    "  --fps F                     first resample the clip to F frames/s by presentation time\n"
    "                              (Wan: 16)\n"
    "  --mode video|frames         one sample per clip (default) or one per selected frame\n"
    "Filters (files left out are counted, not errors):\n"
    "  --min-frames N              leave out clips of fewer than N frames (counted at the --fps\n"
    "                              rate when given, else the source's; images pass)\n"
    "  --min-duration S            leave out clips shorter than S seconds\n"
    "  --max-duration S            leave out clips longer than S seconds\n"
    "  --min-size S                leave out images and videos whose shorter side is under S\n"
    "                              pixels (default 0: keep all)\n"
    "  -v, --verbose               name each file left out, with its reason\n"
    "Limits and errors:\n"
    "  --max-pixels-in N           refuse frames larger than N pixels (default 100M)\n"
    "  --accept-damaged            keep JPEGs that decode with corrupt-data warnings (default:\n"
    "                              skip them)\n"
    "  --strict                    stop at the first bad file (exit 1)\n"
    "Input:\n"
    "  -0, --null                  with '-': paths on stdin end with NUL (find -print0)\n"
    "  --part K/N|auto             decode only media files K, K+N, K+2N, ... (K from 0) of all\n"
    "                              those found, in walk order: N runs with 0/N ... N-1/N decode\n"
    "                              each file once. auto: K/N from the launcher (mpirun, srun;\n"
    "                              0/1 with none)\n"
    "  --skip-done DIR             leave out the files whose samples are all in DIR's complete\n"
    "                              shards already (DIR as in dfm-shard -o DIR/...; with\n"
    "                              dfm-shard --resume, a killed run goes on where it stopped)\n"
    "Output:\n"
    "  -o, --output FILE           write to FILE (atomically) instead of stdout\n"
    "  --format msgpack|tar|tar.zst  stream framing (default msgpack)\n"
    "  --force                     write binary output even to a terminal\n"
    "  -j, --threads N             files decoded at once (default, or 0: one per core); each video\n"
    "                              decoder gets cores/N threads\n"
    "  --progress                  show the progress line even when stdout is a pipe\n"
    "  -q, --quiet                 no progress line\n"
    "  -h, --help                  this help;  --version  print the version\n";

enum { O_CAPTIONS = 256, O_FIELD, O_FRAMES, O_MAXF, O_CLIP, O_FPS, O_MODE, O_MAXPIX, O_STRICT,
       O_FORMAT, O_FORCE, O_VERSION, O_MINSIZE, O_DAMAGED, O_PROGRESS, O_PART, O_SKIPDONE,
       O_PRESET, O_MULT, O_CLEAN, O_MINF, O_MIND, O_MAXD };

static const struct option longopts[] = {
    {"captions", 1, 0, O_CAPTIONS}, {"caption-field", 1, 0, O_FIELD}, {"frames", 1, 0, O_FRAMES},
    {"max-frames", 1, 0, O_MAXF},   {"clip", 1, 0, O_CLIP},           {"fps", 1, 0, O_FPS},
    {"mode", 1, 0, O_MODE},         {"max-pixels-in", 1, 0, O_MAXPIX}, {"strict", 0, 0, O_STRICT},
    {"output", 1, 0, 'o'},          {"format", 1, 0, O_FORMAT},       {"force", 0, 0, O_FORCE},
    {"threads", 1, 0, 'j'},         {"quiet", 0, 0, 'q'},             {"help", 0, 0, 'h'},
    {"version", 0, 0, O_VERSION},   {"min-size", 1, 0, O_MINSIZE},    {"accept-damaged", 0, 0, O_DAMAGED},
    {"null", 0, 0, '0'},            {"progress", 0, 0, O_PROGRESS},   {"part", 1, 0, O_PART},
    {"skip-done", 1, 0, O_SKIPDONE},
    {"preset", 1, 0, O_PRESET},     {"multiple", 1, 0, O_MULT},
    {"clean-captions", 0, 0, O_CLEAN}, {"min-frames", 1, 0, O_MINF}, {"min-duration", 1, 0, O_MIND},
    {"max-duration", 1, 0, O_MAXD}, {"verbose", 0, 0, 'v'},
    {0, 0, 0, 0}};

int main(int argc, char **argv)
{
    dfm_cli_init(argv[0]);
    dfm_decode_opts d = {0};
    dfm_ingest_opts_default(&d.ingest);
    dfm_caption_opts *copts = &d.captions;
    const char *output = NULL, *skip_done = NULL;
    int format = 0, force = 0, nul = 0, c, multiple = 0;
    dfm_bucket_opts hint;
    dfm_bucket_opts_default(&hint);
    hint.max_pixels = 0;
    static const char *const clips[] = {"spread", "begin", "middle", NULL};
    static const char *const modes[] = {"video", "frames", NULL};
    static const char *const formats[] = {"msgpack", "tar", "tar.zst", NULL};
    while ((c = getopt_long(argc, argv, "0o:j:qvh", longopts, NULL)) != -1) {
        switch (c) {
        case O_CAPTIONS: copts->manifest = strcmp(optarg, "auto") ? optarg : NULL; break;
        case O_FIELD: copts->field = optarg; break;
        case O_CLEAN: copts->prompt_clean = dfm_prompt_clean; break;
        case O_MINF: d.ingest.min_frames = (int)dfm_parse_long("--min-frames", optarg, 0, 10000000); break;
        case O_MIND: d.ingest.min_duration = dfm_parse_double("--min-duration", optarg, 0, 1e7); break;
        case O_MAXD: d.ingest.max_duration = dfm_parse_double("--max-duration", optarg, 0.001, 1e7); break;
        case 'v': d.verbose = 1; break;
        case O_FRAMES: d.ingest.frames = (int)dfm_parse_long("--frames", optarg, 1, 100000); break;
        case O_MAXF: d.ingest.max_frames = (int)dfm_parse_long("--max-frames", optarg, 1, 100000); break;
        case O_CLIP: d.ingest.clip = (dfm_clip_mode)dfm_parse_choice("--clip", optarg, clips); break;
        case O_FPS: d.ingest.fps = dfm_parse_double("--fps", optarg, 0.01, 1000); break;
        case O_MODE: d.ingest.mode = (dfm_ingest_mode)dfm_parse_choice("--mode", optarg, modes); break;
        case O_MAXPIX: d.ingest.max_pixels = dfm_parse_count("--max-pixels-in", optarg); break;
        case O_MINSIZE: d.ingest.min_size = (int)dfm_parse_long("--min-size", optarg, 0, 1 << 20); break;
        case O_DAMAGED: d.ingest.accept_damaged = 1; break;
        case '0': nul = 1; break;
        case O_PROGRESS: dfm_progress_mode(DFM_PROGRESS_ON); break;
        case O_STRICT: d.strict = 1; break;
        case O_PART: d.part = dfm_parse_part("--part", optarg); break;
        case O_PRESET:
            if ((hint.max_pixels = dfm_bucket_preset_pixels(optarg)) < 0)
                dfm_usage_error("unknown --preset '%s' (choose 256p, 512p, 768p, 1024p or 1536p)", optarg);
            d.ingest.hint_name = optarg;
            break;
        case O_MULT: multiple = (int)dfm_parse_long("--multiple", optarg, 1, 1024); break;
        case O_SKIPDONE: skip_done = optarg; break;
        case 'o': output = optarg; break;
        case O_FORMAT: format = dfm_parse_choice("--format", optarg, formats); break;
        case O_FORCE: force = 1; break;
        case 'j': d.jobs = dfm_parse_threads("--threads", optarg); break;
        case 'q': dfm_log_set_quiet(1); break;
        case 'h': fputs(usage, stdout); return dfm_close_stdout(0);
        case O_VERSION: dfm_print_version();
        default: dfm_usage_bad_option(argc, argv, longopts);
        }
    }
    if (optind >= argc) dfm_usage_error("no PATH given (use '-' to read paths from stdin)");
    if (d.ingest.max_duration > 0 && d.ingest.min_duration > d.ingest.max_duration)
        dfm_usage_error("--min-duration %g is above --max-duration %g: every clip would be left out",
                        d.ingest.min_duration, d.ingest.max_duration);
    dfm_decode_filtered filtered = {0};
    const int filtering = d.ingest.min_frames > 0 || d.ingest.min_duration > 0 || d.ingest.max_duration > 0;
    const int size_filter = d.ingest.min_size > 0;
    d.filtered = &filtered;
    /* --part auto: the launcher's rank and size; 0/1 without one */
    if (dfm_dist_place(&d.part, DFM_CPU)) dfm_usage_error("%s", dfm_errmsg());
    dfm_bucketer *hint_b = NULL;
    if (multiple && !hint.max_pixels) dfm_usage_error("--multiple goes with --preset");
    if (hint.max_pixels) {
        if (multiple) hint.multiple = multiple;
        if (dfm_bucketer_new(&hint_b, &hint)) dfm_usage_error("--preset: %s", dfm_errmsg());
        d.ingest.hint = hint_b;
    }
    if (copts->manifest && access(copts->manifest, R_OK) != 0)
        dfm_usage_error("cannot read the caption manifest '%s'", copts->manifest);

    dfm_counts counts;
    dfm_counts_init(&counts);
    dfm_done_keys *done = NULL; /* --skip-done: read before anything is written */
    dfm_decode_skipped skipped = {0};
    if (skip_done) {
        if (dfm_done_keys_load(&done, skip_done)) {
            dfm_log_error("--skip-done '%s': %s", skip_done, dfm_errmsg());
            dfm_summary(&counts, NULL);
            return DFM_EXIT_FAIL;
        }
        dfm_log_info("%llu samples in %d complete shard%s in '%s'", (unsigned long long)dfm_done_keys_count(done),
                     dfm_done_keys_shards(done), dfm_done_keys_shards(done) == 1 ? "" : "s", skip_done);
        d.done = done;
        d.skipped_done = &skipped;
    }
    dfm_output out;
    dfm_writer *w = NULL;
    dfm_decoder *dec = NULL;
    int orc = dfm_output_open(&out, output, force);
    if (!orc) orc = dfm_writer_open_fd(&w, out.fd, format ? DFM_FRAMING_TAR : DFM_FRAMING_MSGPACK, format == 2 ? 3 : 0);
    if (orc == DFM_E_PIPE) dfm_exit_pipe(); /* the reader went away before we began: quietly, as cat */
    if (orc || dfm_decoder_new(&dec, &d, w, &counts)) {
        dfm_log_error("%s", dfm_errmsg());
        if (w) dfm_writer_abort(w); /* no end record: the next stage must see the failure */
        if (output) dfm_output_close(&out, 1);
        dfm_summary(&counts, NULL);
        return DFM_EXIT_FAIL;
    }
    int rc = 0, failed = 0;
    for (int i = optind; i < argc && rc == 0; i++) {
        if (strcmp(argv[i], "-")) {
            rc = dfm_decoder_add(dec, argv[i]);
            continue;
        }
        char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        while (rc == 0 && (len = getdelim(&line, &cap, nul ? '\0' : '\n', stdin)) > 0) {
            if (nul) len = (ssize_t)strlen(line); /* the NUL ends the string */
            else while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
            if (len) rc = dfm_decoder_add(dec, line);
        }
        free(line);
    }
    int prc = dfm_decoder_finish(dec, &failed);
    if (rc) failed = 1; /* out of memory, a strict stop: never a normal end */
    int wrc = failed || rc ? (dfm_writer_abort(w), 0) : dfm_writer_close(w); /* end record if clean */
    if (rc == DFM_E_PIPE || prc == DFM_E_PIPE || wrc == DFM_E_PIPE) dfm_exit_pipe();
    if (wrc) {
        dfm_log_error("%s", dfm_errmsg());
        failed = 1;
    }
    if (dfm_output_close(&out, failed)) {
        dfm_log_error("%s", dfm_errmsg());
        failed = 1;
    }
    char extra[512] = "";
    size_t n = 0;
    if (filtering || size_filter) { /* the counts of the filters given */
        unsigned long long sm = filtered.too_small, sh = filtered.too_short, lo = filtered.too_long;
        n += (size_t)snprintf(extra, sizeof extra, "%llu filtered (", sm + sh + lo);
        if (size_filter) n += (size_t)snprintf(extra + n, sizeof extra - n, "too small: %llu%s", sm, filtering ? ", " : "");
        if (filtering) n += (size_t)snprintf(extra + n, sizeof extra - n, "too short: %llu, too long: %llu", sh, lo);
        n += (size_t)snprintf(extra + n, sizeof extra - n, ")");
    }
    if (done) {
        n += (size_t)snprintf(extra + n, sizeof extra - n, "%s%llu input%s already in '%s' skipped", n ? ", " : "",
                              (unsigned long long)skipped.inputs, skipped.inputs == 1 ? "" : "s", skip_done);
        if (skipped.samples && n < sizeof extra)
            snprintf(extra + n, sizeof extra - n, ", %llu sample%s already there dropped",
                     (unsigned long long)skipped.samples, skipped.samples == 1 ? "" : "s");
    }
    dfm_summary(&counts, extra);
    dfm_done_keys_free(done);
    dfm_bucketer_free(hint_b);
    return failed ? DFM_EXIT_FAIL : DFM_EXIT_OK;
}
