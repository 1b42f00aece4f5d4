/* dfm-shard — write a sample stream into numbered WebDataset tar shards with an index, or
 * (--cat) stream shards back out, or (--list) describe samples, or (--merge-index) write one
 * index over the parts of a split run, or (--energon, --energon-prepare) make a series a prepared
 * Megatron-Energon dataset. Thin: the work is lib/io/shard.c, lib/io/shard_merge.c, lib/io/energon.c
 * and lib/io/stream_map.c. */
#include "base/cli.h"
#include "base/error.h"
#include "base/log.h"
#include "dist/dist.h"
#include "io/describe.h"
#include "io/energon.h"
#include "io/shard.h"
#include "io/stream_map.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "usage: dfm-shard -o PATTERN [options] [INPUT...] < samples\n"
    "       dfm-shard --cat [options] [SHARD...] > samples\n"
    "       dfm-shard --list [SHARD...]\n"
    "       dfm-shard --merge-index DIR [PART_DIR...]\n"
    "       dfm-shard --energon-prepare DIR\n"
    "Split a sample stream (msgpack or tar, from INPUT files or stdin) into WebDataset tar\n"
    "shards named by PATTERN, e.g. out/train-%06d.tar or out/train-%06d.tar.zst, with\n"
    "index.json beside them; or stream shards back out with --cat.\n"
    "\n"
    "  -o, --output PATTERN        shard names: one %d-style number, ending .tar or .tar.zst\n"
    "  --max-count N               samples per shard (default 1000)\n"
    "  --max-size SIZE             bytes per shard, e.g. 500M, 1G (default 1G)\n"
    "  --by-bucket                 one series per bucket: DIR/WxHxF/NAME-%06d.tar\n"
    "  --overwrite                 remove an earlier run's shards of PATTERN (and index.json)\n"
    "                              first; without it such a series is refused\n"
    "  --resume                    continue an earlier run's series: keep its complete shards,\n"
    "                              remove its .tmp files, number on (same pattern and options)\n"
    "  --zstd-level N              compression level for .tar.zst (default 3)\n"
    "  --part K/N|auto             with -o: this is part K (from 0) of a run split N ways;\n"
    "                              its shards and index.json go to a directory of their own,\n"
    "                              DIR/part-0000K-of-0000N/ (0/1 keeps PATTERN); it selects no\n"
    "                              samples. auto: K/N from the launcher (mpirun, srun; 0/1 with\n"
    "                              none). With --cat or --list: only samples K, K+N, ... of the\n"
    "                              input, by position (auto too)\n"
    "  --merge-index DIR           write DIR/index.json over the parts' indexes: every\n"
    "                              DIR/part-K-of-N/index.json (all N parts, complete), or those\n"
    "                              of the PART_DIRs named\n"
    "  --energon                   also make the output a prepared Megatron-Energon dataset:\n"
    "                              .nv-meta/ and NAME.tar.idx beside each shard (plain .tar\n"
    "                              only), written once the run ends cleanly; with --merge-index\n"
    "                              over the merged DIR\n"
    "  --energon-prepare DIR       the same for the shards DIR/index.json lists (a finished\n"
    "                              series or a --merge-index of parts), no energon prepare run\n"
    "  --energon-split W           train,val,test weights over the shards, e.g. 8,1,1\n"
    "                              (default: every shard in train)\n"
    "  --cat                       read SHARD... (tar, tar.zst or msgpack; stdin when none)\n"
    "                              and write them as one stream\n"
    "  --format msgpack|tar|tar.zst  framing for --cat output (default msgpack)\n"
    "  --list                      print one text line per sample (key, captions, json, array\n"
    "                              shapes) from SHARD... or stdin, in any framing\n"
    "  --strict                    stop at the first bad input (exit 1)\n"
    "  --force                     binary output to a terminal (--cat)\n"
    "  --progress                  show the progress line even when stdout is a pipe\n"
    "  -q, --quiet                 no progress line\n"
    "  -h, --help                  this help;  --version  print the version\n";

enum { O_MAXC = 256, O_MAXS, O_BYB, O_ZL, O_CAT, O_LIST, O_FORMAT, O_STRICT, O_FORCE, O_VERSION,
       O_OVERWRITE, O_PROGRESS, O_PART, O_MERGE, O_RESUME, O_ENERGON, O_EN_PREP, O_EN_SPLIT };
static const struct option longopts[] = {
    {"output", 1, 0, 'o'},     {"max-count", 1, 0, O_MAXC}, {"max-size", 1, 0, O_MAXS},
    {"by-bucket", 0, 0, O_BYB}, {"zstd-level", 1, 0, O_ZL}, {"cat", 0, 0, O_CAT}, {"list", 0, 0, O_LIST},
    {"format", 1, 0, O_FORMAT}, {"strict", 0, 0, O_STRICT}, {"force", 0, 0, O_FORCE},
    {"quiet", 0, 0, 'q'},      {"help", 0, 0, 'h'},         {"version", 0, 0, O_VERSION},
    {"overwrite", 0, 0, O_OVERWRITE}, {"progress", 0, 0, O_PROGRESS}, {"part", 1, 0, O_PART},
    {"merge-index", 1, 0, O_MERGE}, {"resume", 0, 0, O_RESUME},
    {"energon", 0, 0, O_ENERGON}, {"energon-prepare", 1, 0, O_EN_PREP},
    {"energon-split", 1, 0, O_EN_SPLIT}, {0, 0, 0, 0}};

/* Write the Energon files for the series indexed in dir; 0 or DFM_EXIT_FAIL. */
static int energon(const char *dir, const dfm_energon_opts *eo)
{
    dfm_energon_stats st;
    if (dfm_energon_prepare(dir, eo, &st)) {
        dfm_log_error("%s", dfm_errmsg());
        return DFM_EXIT_FAIL;
    }
    fprintf(stderr, "%s: energon: %d shard%s (train %d, val %d, test %d), %llu sample%s, in '%s/.nv-meta'%s\n",
            dfm_prog(), st.shards, st.shards == 1 ? "" : "s", st.split_shards[0], st.split_shards[1],
            st.split_shards[2], (unsigned long long)st.samples, st.samples == 1 ? "" : "s", dir,
            st.dataset_yaml_kept ? " (its dataset.yaml kept)" : "");
    return DFM_EXIT_OK;
}

static int put(void *ctx, const dfm_sample *s) { return dfm_sharder_put(ctx, s); }

static int list(void *ctx, const dfm_sample *s)
{
    dfm_buf *b = ctx;
    b->len = 0;
    int rc = dfm_sample_describe(s, b);
    if (!rc && fwrite(b->data, 1, b->len, stdout) != b->len) {
        if (errno == EPIPE) dfm_exit_pipe();
        rc = dfm_fail(DFM_E_IO, "writing the listing failed: %s", strerror(errno));
    }
    return rc;
}

int main(int argc, char **argv)
{
    dfm_cli_init(argv[0]);
    dfm_shard_opts so = {.max_count = 1000, .max_size = 1ULL << 30, .zstd_level = 3};
    dfm_map_opts mo = {.progress = "samples"};
    int cat = 0, listing = 0, c, format = -1, shard_opts = 0, progress = 0, part_given = 0;
    dfm_part part = {0, 1, 0};
    const char *merge = NULL, *en_dir = NULL;
    int en = 0, en_split = 0;
    dfm_energon_opts eo = {{0}};
    static const char *const formats[] = {"msgpack", "tar", "tar.zst", NULL};
    while ((c = getopt_long(argc, argv, "o:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'o': so.pattern = optarg; break;
        case O_MAXC: shard_opts = 1; so.max_count = (uint64_t)dfm_parse_long("--max-count", optarg, 1, 1L << 40); break;
        case O_MAXS: shard_opts = 1; so.max_size = dfm_parse_size("--max-size", optarg); break;
        case O_BYB: shard_opts = 1; so.by_bucket = 1; break;
        case O_OVERWRITE: shard_opts = 1; so.overwrite = 1; break;
        case O_RESUME: shard_opts = 1; so.resume = 1; break;
        case O_PROGRESS: progress = 1; break;
        case O_ZL: shard_opts = 1; so.zstd_level = (int)dfm_parse_long("--zstd-level", optarg, 1, 22); break;
        case O_CAT: cat = 1; break;
        case O_LIST: listing = 1; break;
        case O_PART: part = dfm_parse_part("--part", optarg), part_given = 1; break;
        case O_MERGE: merge = optarg; break;
        case O_ENERGON: en = 1; break;
        case O_EN_PREP: en_dir = optarg; break;
        case O_EN_SPLIT:
            if (dfm_energon_parse_split(optarg, eo.split)) dfm_usage_error("--energon-split: %s", dfm_errmsg());
            en_split = 1;
            break;
        case O_FORMAT: format = dfm_parse_choice("--format", optarg, formats); break;
        case O_STRICT: mo.strict = 1; break;
        case O_FORCE: mo.force = 1; break;
        case 'q': dfm_log_set_quiet(1); break;
        case 'h': fputs(usage, stdout); return dfm_close_stdout(0);
        case O_VERSION: dfm_print_version();
        default: dfm_usage_bad_option(argc, argv, longopts);
        }
    }
    if (en_split && !en && !en_dir) dfm_usage_error("--energon-split goes with --energon or --energon-prepare");
    if (en_dir) {
        if (so.pattern || cat || listing || shard_opts || part_given || format >= 0 || merge || en ||
            optind < argc)
            dfm_usage_error("--energon-prepare DIR takes no other mode, shard option or input");
        return energon(en_dir, &eo);
    }
    if (en && (cat || listing)) dfm_usage_error("--energon is for writing shards (-o) or --merge-index");
    if (merge) {
        if (so.pattern || cat || listing || shard_opts || part_given || format >= 0)
            dfm_usage_error("--merge-index DIR [PART_DIR...] takes no other mode or shard option");
        dfm_shard_merged m;
        if (dfm_shard_merge_index(merge, argv + optind, argc - optind, &m)) {
            dfm_log_error("%s", dfm_errmsg());
            return DFM_EXIT_FAIL;
        }
        fprintf(stderr, "%s: merged %d part%s: %d shard%s, %llu sample%s, in '%s/index.json'\n",
                dfm_prog(), m.parts, m.parts == 1 ? "" : "s", m.shards, m.shards == 1 ? "" : "s",
                (unsigned long long)m.samples, m.samples == 1 ? "" : "s", merge);
        return en ? energon(merge, &eo) : DFM_EXIT_OK;
    }
    /* --part auto: the launcher's rank and size; 0/1 without one */
    if (dfm_dist_place(&part, DFM_CPU)) dfm_usage_error("%s", dfm_errmsg());
    if ((cat || listing) && shard_opts)
        dfm_usage_error("--max-count, --max-size, --by-bucket, --overwrite, --resume and --zstd-level are "
                        "for writing shards (-o), not for --cat or --list");
    /* --list prints text on stdout: a progress line would cut through it, unless asked for */
    dfm_progress_mode(progress ? DFM_PROGRESS_ON : listing ? DFM_PROGRESS_OFF : DFM_PROGRESS_AUTO);
    if (format >= 0 && !cat) dfm_usage_error("--format is for --cat output");
    if (format < 0) format = 0;
    dfm_counts counts;
    dfm_counts_init(&counts);
    if (listing) {
        if (so.pattern || cat) dfm_usage_error("--list prints text; it takes no -o or --cat");
        dfm_buf b = {0};
        mo.sink = list;
        mo.sink_ctx = &b;
        mo.part = part;
        int status = dfm_stream_map(&mo, argv + optind, argc - optind, NULL, NULL, &counts);
        dfm_buf_free(&b);
        status = dfm_close_stdout(status);
        dfm_summary(&counts, NULL);
        return status;
    }
    if (cat) {
        if (so.pattern) dfm_usage_error("--cat writes a stream to stdout; it takes no -o PATTERN");
        mo.framing = format ? DFM_FRAMING_TAR : DFM_FRAMING_MSGPACK;
        mo.zstd_level = format == 2 ? 3 : 0;
        mo.part = part;
        int status = dfm_stream_map(&mo, argv + optind, argc - optind, NULL, NULL, &counts);
        dfm_summary(&counts, NULL);
        return status;
    }
    if (!so.pattern) dfm_usage_error("no output pattern: use -o out/train-%%06d.tar");
    if (so.resume && so.overwrite) dfm_usage_error("--resume keeps an earlier run's shards, --overwrite removes them: give one");
    char part_pattern[4096]; /* a split run's part writes a series of its own */
    if (dfm_shard_part_pattern(so.pattern, &part, part_pattern, sizeof part_pattern))
        dfm_usage_error("%s", dfm_errmsg());
    so.pattern = part_pattern;
    size_t plen = strlen(so.pattern);
    if (en && plen > 8 && !strcmp(so.pattern + plen - 8, ".tar.zst"))
        dfm_usage_error("--energon: Energon reads plain .tar shards only; use a .tar pattern");
    dfm_sharder *sh;
    int rc = dfm_sharder_new(&sh, &so);
    if (rc == DFM_E_ARG && so.resume && !strncmp(dfm_errmsg(), "cannot resume", 13)) {
        dfm_log_error("%s", dfm_errmsg());
        dfm_log_hint("rerun with the options the series was written with (dfm.options in its "
                     "index.json), or --overwrite to start it again");
        return DFM_EXIT_USAGE;
    }
    if (rc == DFM_E_ARG) dfm_usage_error("%s", dfm_errmsg());
    if (rc) {
        dfm_log_error("%s", dfm_errmsg());
        if (!so.overwrite && dfm_shard_existing(so.pattern, NULL, 0) > 0)
            dfm_log_hint("pass --overwrite to remove the old series first, or write to another "
                         "directory or name");
        return DFM_EXIT_FAIL;
    }
    mo.sink = put;
    mo.sink_ctx = sh;
    mo.sink_writes_files = 1;
    int status = dfm_stream_map(&mo, argv + optind, argc - optind, NULL, NULL, &counts);
    int nshards = 0, kept = 0;
    uint64_t in_shards = 0, kept_samples = 0;
    dfm_sharder_kept(sh, &kept, &kept_samples); /* --resume: the earlier run's, not counted here */
    /* a failed run (truncated input, --strict stop) keeps its complete shards, never the last */
    if (dfm_sharder_close(sh, status != 0, &nshards, &in_shards)) {
        dfm_log_error("%s", dfm_errmsg());
        status = DFM_EXIT_FAIL;
    }
    nshards -= kept, in_shards -= kept_samples;
    char extra[256];
    int n = snprintf(extra, sizeof extra, "%d shard%s", nshards, nshards == 1 ? "" : "s");
    if (kept)
        n += snprintf(extra + n, sizeof extra - (size_t)n, ", %d shard%s (%llu sample%s) kept from "
                      "the earlier run", kept, kept == 1 ? "" : "s", (unsigned long long)kept_samples,
                      kept_samples == 1 ? "" : "s");
    if (in_shards < counts.written) /* they went into a shard that was not finished */
        snprintf(extra + n, sizeof extra - (size_t)n, ", %llu sample%s dropped with the unfinished shard",
                 (unsigned long long)(counts.written - in_shards),
                 counts.written - in_shards == 1 ? "" : "s");
    counts.written = in_shards;
    dfm_summary(&counts, extra);
    const char *slash = strrchr(so.pattern, '/');
    char dir[4096], info[4200];
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - so.pattern) + (slash == so.pattern) : 1,
             slash ? so.pattern : ".");
    if (en && status == 0) { /* the Energon files over the whole series (index.json's directory) */
        status = energon(dir, &eo);
    } else if (!en && snprintf(info, sizeof info, "%s/.nv-meta/.info.json", dir) > 0 &&
               access(info, F_OK) == 0) {
        dfm_log_warn("'%s' describes the shards of an earlier run, not this one's", info);
        dfm_log_hint("make it this run's: dfm-shard --energon-prepare %s", dir);
    }
    return status;
}
