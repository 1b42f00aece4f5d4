/* dfm-decode — find images and videos, decode them, attach captions, write a sample stream.
 * Thin: options and wiring only; the work is in lib/data/ingest.c. See man/man1/dfm-decode.1. */
#include "base/cli.h"
#include "base/error.h"
#include "base/log.h"
#include "base/pool.h"
#include "base/strset.h"
#include "data/ingest.h"
#include "io/stream.h"

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
    "line), decode them to RGB frames, attach captions, and write one sample per clip.\n"
    "\n"
    "Captions:\n"
    "  --captions auto|FILE.jsonl  where captions come from (default auto: NAME.txt, NAME.json,\n"
    "                              meta.json, captions.json, <prefix>_internvl.json, file name)\n"
    "  --caption-field NAME        JSON field holding the caption (default: caption)\n"
    "Frames (videos):\n"
    "  --frames N                  frames per clip (default: all, capped by --max-frames;\n"
    "                              10 in frames mode)\n"
    "  --max-frames N              cap when --frames is not given (default 129)\n"
    "  --clip spread|begin|middle  spread over the whole clip (default), from the start, centred\n"
    "  --fps F                     first resample the clip to F frames/s by index (Wan: 16)\n"
    "  --mode video|frames         one sample per clip (default) or one per selected frame\n"
    "Limits and errors:\n"
    "  --max-pixels-in N           refuse frames larger than N pixels (default 100M)\n"
    "  --strict                    stop at the first bad file (exit 1)\n"
    "Output:\n"
    "  -o, --output FILE           write to FILE (atomically) instead of stdout\n"
    "  --format msgpack|tar|tar.zst  stream framing (default msgpack)\n"
    "  --force                     write binary output even to a terminal\n"
    "  -j, --threads N             files decoded at once (default: one per core); each video\n"
    "                              decoder gets cores/N threads\n"
    "  -q, --quiet                 no progress line\n"
    "  -h, --help                  this help;  --version  print the version\n";

enum { O_CAPTIONS = 256, O_FIELD, O_FRAMES, O_MAXF, O_CLIP, O_FPS, O_MODE, O_MAXPIX, O_STRICT,
       O_FORMAT, O_FORCE, O_VERSION };

static const struct option longopts[] = {
    {"captions", 1, 0, O_CAPTIONS}, {"caption-field", 1, 0, O_FIELD}, {"frames", 1, 0, O_FRAMES},
    {"max-frames", 1, 0, O_MAXF},   {"clip", 1, 0, O_CLIP},           {"fps", 1, 0, O_FPS},
    {"mode", 1, 0, O_MODE},         {"max-pixels-in", 1, 0, O_MAXPIX}, {"strict", 0, 0, O_STRICT},
    {"output", 1, 0, 'o'},          {"format", 1, 0, O_FORMAT},       {"force", 0, 0, O_FORCE},
    {"threads", 1, 0, 'j'},         {"quiet", 0, 0, 'q'},             {"help", 0, 0, 'h'},
    {"version", 0, 0, O_VERSION},   {0, 0, 0, 0}};

typedef struct {
    dfm_ingest_opts opts;
    dfm_captioner *cap;
    dfm_writer *out;
    dfm_pool *pool;
    dfm_strset keys;
    dfm_counts counts;
    int strict, failed;
} run;

/* One input file: decoded on a worker, written in order by the main thread. */
typedef struct {
    run *r;
    char *path, *name;
    dfm_media_kind kind;
    dfm_captions caps;
    dfm_sample *samples;
    int n, cap, rc;
    char err[1024];
} job;

static int collect(void *ctx, dfm_sample *s)
{
    job *j = ctx;
    if (j->n == j->cap) {
        int cap = j->cap ? j->cap * 2 : 2;
        dfm_sample *p = realloc(j->samples, (size_t)cap * sizeof *p);
        if (!p) return dfm_fail(DFM_E_NOMEM, "out of memory");
        j->samples = p, j->cap = cap;
    }
    j->samples[j->n++] = *s; /* take the sample's contents */
    dfm_sample_init(s);
    return 0;
}

static void job_run(void *arg)
{
    job *j = arg;
    j->rc = dfm_ingest_file(&j->r->opts, &j->caps, j->path, j->name, j->kind, collect, j);
    if (j->rc < 0) snprintf(j->err, sizeof j->err, "%s", dfm_errmsg());
}

static void job_free(void *arg)
{
    job *j = arg;
    for (int i = 0; i < j->n; i++) dfm_sample_free(&j->samples[i]);
    dfm_captions_free(&j->caps);
    free(j->samples), free(j->path), free(j->name), free(j);
}

/* Keep keys unique in one run: a repeated key (the same file given twice) gets "@dupN". */
static int unique_key(run *r, dfm_sample *s)
{
    int added = dfm_strset_add(&r->keys, s->key);
    if (added != 0) return added < 0 ? added : 0;
    char *alt = malloc(strlen(s->key) + 32);
    if (!alt) return dfm_fail(DFM_E_NOMEM, "out of memory");
    for (int i = 2; added == 0; i++) {
        sprintf(alt, "%s@dup%d", s->key, i);
        added = dfm_strset_add(&r->keys, alt);
    }
    dfm_log_warn("duplicate key '%s': written as '%s'", s->key, alt);
    int rc = added < 0 ? added : dfm_sample_set_key(s, alt);
    free(alt);
    return rc;
}

static int job_done(void *ctx, void *arg)
{
    run *r = ctx;
    job *j = arg;
    int rc = 0;
    if (j->rc < 0) {
        dfm_log_error("skipping '%s': %s", j->path, j->err);
        r->counts.skipped++;
        if (j->rc == DFM_E_NOMEM) rc = j->rc;
        else if (r->strict) r->failed = 1, rc = DFM_E_SKIP;
    }
    for (int i = 0; i < j->n && !rc; i++) {
        rc = unique_key(r, &j->samples[i]);
        if (!rc) rc = dfm_writer_put(r->out, &j->samples[i]);
        if (!rc) r->counts.written++;
    }
    if (rc && rc != DFM_E_SKIP && rc != DFM_E_PIPE) {
        dfm_log_error("%s", dfm_errmsg());
        r->failed = 1;
    }
    job_free(j);
    return rc;
}

static int on_file(void *ctx, const char *path, const char *name, dfm_media_kind kind)
{
    run *r = ctx;
    r->counts.read++;
    dfm_progress(r->counts.read, 0, "files");
    job *j = calloc(1, sizeof *j);
    if (!j || !(j->path = strdup(path)) || !(j->name = strdup(name))) {
        if (j) free(j->path), free(j);
        return dfm_fail(DFM_E_NOMEM, "out of memory");
    }
    j->r = r, j->kind = kind;
    int rc = dfm_captions_find(r->cap, path, &j->caps);
    if (rc) {
        job_free(j);
        return rc;
    }
    return dfm_pool_submit(r->pool, j);
}

static void on_warn(void *ctx, const char *path, const char *reason)
{
    dfm_log_warn("cannot read '%s': %s", path, reason);
}

/* Walk one PATH argument; a missing or unreadable argument is reported and counted like a bad
 * file. Returns non-zero only when the run must stop. */
static int walk_arg(run *r, const char *arg)
{
    int rc = dfm_walk(arg, on_file, on_warn, r);
    if (rc && r->failed) return rc; /* already reported by job_done */
    if (rc == 0 || rc == DFM_E_PIPE || rc == DFM_E_NOMEM || rc == DFM_E_SKIP) return rc;
    dfm_log_error("skipping '%s': %s", arg, dfm_errmsg());
    r->counts.read++;
    r->counts.skipped++;
    if (!r->strict) return 0;
    r->failed = 1;
    return DFM_E_SKIP;
}

int main(int argc, char **argv)
{
    dfm_cli_init(argv[0]);
    run r = {0};
    dfm_ingest_opts_default(&r.opts);
    dfm_caption_opts copts = {0};
    const char *output = NULL;
    int format = 0, force = 0, c;
    static const char *const clips[] = {"spread", "begin", "middle", NULL};
    static const char *const modes[] = {"video", "frames", NULL};
    static const char *const formats[] = {"msgpack", "tar", "tar.zst", NULL};
    while ((c = getopt_long(argc, argv, "o:j:qh", longopts, NULL)) != -1) {
        switch (c) {
        case O_CAPTIONS: copts.manifest = strcmp(optarg, "auto") ? optarg : NULL; break;
        case O_FIELD: copts.field = optarg; break;
        case O_FRAMES: r.opts.frames = (int)dfm_parse_long("--frames", optarg, 1, 100000); break;
        case O_MAXF: r.opts.max_frames = (int)dfm_parse_long("--max-frames", optarg, 1, 100000); break;
        case O_CLIP: r.opts.clip = (dfm_clip_mode)dfm_parse_choice("--clip", optarg, clips); break;
        case O_FPS: r.opts.fps = dfm_parse_double("--fps", optarg, 0.01, 1000); break;
        case O_MODE: r.opts.mode = (dfm_ingest_mode)dfm_parse_choice("--mode", optarg, modes); break;
        case O_MAXPIX: r.opts.max_pixels = dfm_parse_count("--max-pixels-in", optarg); break;
        case O_STRICT: r.strict = 1; break;
        case 'o': output = optarg; break;
        case O_FORMAT: format = dfm_parse_choice("--format", optarg, formats); break;
        case O_FORCE: force = 1; break;
        case 'j': r.opts.threads = (int)dfm_parse_long("--threads", optarg, 1, 1024); break;
        case 'q': dfm_log_set_quiet(1); break;
        case 'h': fputs(usage, stdout); return dfm_close_stdout(0);
        case O_VERSION: dfm_print_version();
        default: dfm_usage_error("unknown option");
        }
    }
    if (optind >= argc) dfm_usage_error("no PATH given (use '-' to read paths from stdin)");
    if (copts.manifest && access(copts.manifest, R_OK) != 0)
        dfm_usage_error("cannot read the caption manifest '%s'", copts.manifest);

    dfm_output out;
    if (dfm_output_open(&out, output, force)) {
        dfm_log_error("%s", dfm_errmsg());
        return DFM_EXIT_FAIL;
    }
    if (dfm_captioner_new(&r.cap, &copts) ||
        dfm_writer_open_fd(&r.out, out.fd, format ? DFM_FRAMING_TAR : DFM_FRAMING_MSGPACK,
                           format == 2 ? 3 : 0)) {
        dfm_log_error("%s", dfm_errmsg());
        return DFM_EXIT_FAIL;
    }
    dfm_counts_init(&r.counts);
    /* Files decode in parallel (-j files at a time); each video decoder gets the cores left
     * over (at least one thread), so the machine is busy without oversubscribing it. */
    int cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
    int threads = r.opts.threads ? r.opts.threads : cores;
    r.opts.threads = cores / threads > 1 ? cores / threads : 1;
    if (dfm_pool_new(&r.pool, threads, threads + 1, job_run, job_done, job_free, &r)) {
        dfm_log_error("%s", dfm_errmsg());
        return DFM_EXIT_FAIL;
    }
    int rc = 0;
    for (int i = optind; i < argc && rc == 0; i++) {
        if (strcmp(argv[i], "-")) {
            rc = walk_arg(&r, argv[i]);
            continue;
        }
        char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        while (rc == 0 && (len = getline(&line, &cap, stdin)) > 0) {
            while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
            if (len) rc = walk_arg(&r, line);
        }
        free(line);
    }
    int prc = dfm_pool_finish(r.pool);
    if (!rc) rc = prc;
    if (rc == DFM_E_NOMEM) {
        dfm_log_error("%s", dfm_errmsg());
        r.failed = 1;
    }
    int wrc = dfm_writer_close(r.out);
    if (rc == DFM_E_PIPE || wrc == DFM_E_PIPE) dfm_exit_pipe();
    if (wrc) {
        dfm_log_error("%s", dfm_errmsg());
        r.failed = 1;
    }
    if (dfm_output_close(&out, r.failed)) {
        dfm_log_error("%s", dfm_errmsg());
        r.failed = 1;
    }
    dfm_captioner_free(r.cap);
    dfm_strset_free(&r.keys);
    dfm_summary(&r.counts, NULL);
    return r.failed ? DFM_EXIT_FAIL : DFM_EXIT_OK;
}
