/* stream_map.c — the shared filter loop (see stream_map.h). Not here: what a filter does to a
 * sample (its dfm_map_fn), the framings (stream.c). */
#include "io/stream_map.h"
#include "base/cli.h"
#include "base/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Sum of the inputs' sizes when every one is a regular file, else 0 (unknown). */
static uint64_t input_bytes(char **inputs, int n)
{
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
        struct stat st;
        int ok = strcmp(inputs[i], "-") ? stat(inputs[i], &st) == 0 : fstat(0, &st) == 0;
        if (!ok || !S_ISREG(st.st_mode)) return 0;
        total += (uint64_t)st.st_size;
    }
    return total;
}

/* Whether every input is a regular file (not a pipe, FIFO, socket or terminal). */
static int all_files(char **inputs, int n)
{
    for (int i = 0; i < n; i++) {
        struct stat st;
        int ok = strcmp(inputs[i], "-") ? stat(inputs[i], &st) == 0 : fstat(0, &st) == 0;
        if (!ok || !S_ISREG(st.st_mode)) return 0;
    }
    return 1;
}

typedef struct {
    const dfm_map_opts *o;
    dfm_writer *w;
    dfm_counts *counts;
    int failed, stop;
    int out_err; /* the output failed and it was reported */
} run;

static void skip(run *r, const char *msg)
{
    dfm_log_error("skipping %s", msg);
    r->counts->skipped++;
    if (r->o->strict) r->failed = r->stop = 1;
}

/* One sample through fn and into the output or sink. */
static void one(run *r, dfm_sample *s, dfm_map_fn fn, void *ctx)
{
    char key[300], msg[1400];
    const dfm_map_opts *o = r->o;
    /* a sample the output cannot carry is skipped before any work is spent on it */
    int rc = r->w ? dfm_sample_check(s, o->framing) : 0;
    if (rc) {
        snprintf(msg, sizeof msg, "%s", dfm_errmsg());
        return skip(r, msg);
    }
    rc = fn ? fn(ctx, s) : 0;
    if (rc == DFM_E_PIPE) dfm_exit_pipe();
    if (rc) {
        snprintf(msg, sizeof msg, "sample '%s': %s", dfm_key_show(s->key, key, sizeof key),
                 dfm_errmsg());
        if (rc != DFM_E_NOMEM) return skip(r, msg);
        dfm_log_error("%s", msg);
        r->failed = r->stop = 1;
        return;
    }
    if (o->sink) {
        rc = o->sink(o->sink_ctx, s);
        if (rc == DFM_E_SKIP) {
            snprintf(msg, sizeof msg, "%s", dfm_errmsg());
            return skip(r, msg);
        }
    } else {
        rc = dfm_writer_put(r->w, s);
        if (rc && !dfm_writer_error(r->w)) { /* refused, nothing written */
            snprintf(msg, sizeof msg, "%s", dfm_errmsg());
            return skip(r, msg);
        }
    }
    if (rc == DFM_E_PIPE) dfm_exit_pipe();
    if (rc) {
        dfm_log_error("%s", dfm_errmsg());
        r->out_err = r->failed = r->stop = 1;
        return;
    }
    r->counts->written++;
}

int dfm_stream_map(const dfm_map_opts *o, char **inputs, int n, dfm_map_fn fn, void *ctx,
                   dfm_counts *counts)
{
    static char *stdin_only[] = {"-"};
    if (n == 0) inputs = stdin_only, n = 1;
    for (int i = 0; i < n; i++)
        if (!strcmp(inputs[i], "-") && !o->force && isatty(0)) {
            dfm_log_error("refusing to read a binary sample stream from a terminal");
            dfm_log_hint("pipe samples in, e.g. 'dfm-decode DIR | %s', or name a file", dfm_prog());
            return DFM_EXIT_USAGE;
        }
    run r = {.o = o, .counts = counts};
    dfm_output out = {.fd = -1};
    if (o->sink && o->sink_writes_files) dfm_progress_file_output();
    int rc = o->sink ? 0 : dfm_output_open(&out, o->output, o->force);
    if (!rc && !o->sink) rc = dfm_writer_open_fd(&r.w, out.fd, o->framing, o->zstd_level);
    if (rc == DFM_E_PIPE) dfm_exit_pipe();
    if (rc) {
        dfm_log_error("%s", dfm_errmsg());
        dfm_output_close(&out, 1);
        return DFM_EXIT_FAIL;
    }
    uint64_t total = input_bytes(inputs, n), before = 0, pos = 0;
    /* --part splits files; a stream on a pipe comes from a stage that has split already */
    dfm_part part = o->part;
    if (dfm_part_split(&part) && !all_files(inputs, n)) {
        dfm_log_warn("--part %d/%d: the input is not a regular file (a pipe from the stage before, "
                     "which splits): every sample is taken; name files to split them", part.k, part.n);
        part = (dfm_part){0, 1, 0};
    }
    dfm_sample s;
    dfm_sample_init(&s);
    for (int i = 0; i < n && !r.stop; i++) {
        dfm_reader *rd;
        if (dfm_reader_open(&rd, inputs[i], o->max_sample)) {
            dfm_log_error("%s", dfm_errmsg());
            r.failed = 1;
            if (o->strict) break;
            continue;
        }
        int got;
        while (!r.stop && (got = dfm_reader_next(rd, &s)) == 1) {
            if (!dfm_part_takes(&part, pos++)) continue; /* another part's sample */
            counts->read++;
            if (total) dfm_progress_input((double)(before + dfm_reader_bytes(rd)) / (double)total);
            dfm_progress(counts->read, 0, o->progress ? o->progress : "samples");
            one(&r, &s, fn, ctx);
        }
        if (!r.stop && got < 0) {
            /* corrupt or truncated: what came before is kept, the rest of this input is lost */
            dfm_log_error("%s", dfm_errmsg());
            r.failed = 1;
            if (o->strict) r.stop = 1;
        }
        before += dfm_reader_bytes(rd);
        dfm_reader_close(rd);
    }
    dfm_sample_free(&s);
    if (r.w && r.failed) {
        dfm_writer_abort(r.w); /* no end mark: the next stage must not take this for a whole run */
    } else if (r.w) {
        rc = dfm_writer_close(r.w);
        if (rc == DFM_E_PIPE) dfm_exit_pipe();
        if (rc && !r.out_err) dfm_log_error("%s", dfm_errmsg());
        if (rc) r.failed = 1;
    }
    if (dfm_output_close(&out, r.failed)) {
        dfm_log_error("%s", dfm_errmsg());
        r.failed = 1;
    }
    return r.failed ? DFM_EXIT_FAIL : DFM_EXIT_OK;
}

int dfm_stream_opt(int c, const char *arg, dfm_map_opts *mo, const char *usage)
{
    static const char *const formats[] = {"msgpack", "tar", "tar.zst", NULL};
    switch (c) {
    case 'o': mo->output = arg; return 1;
    case DFM_OPT_FORMAT: {
        int f = dfm_parse_choice("--format", arg, formats);
        mo->framing = f ? DFM_FRAMING_TAR : DFM_FRAMING_MSGPACK;
        mo->zstd_level = f == 2 ? 3 : 0;
        return 1;
    }
    case DFM_OPT_STRICT: mo->strict = 1; return 1;
    case DFM_OPT_FORCE: mo->force = 1; return 1;
    case DFM_OPT_PROGRESS: dfm_progress_mode(DFM_PROGRESS_ON); return 1;
    case DFM_OPT_PART: mo->part = dfm_parse_part("--part", arg); return 1;
    case 'q': dfm_log_set_quiet(1); return 1;
    case 'h': fputs(usage, stdout); exit(dfm_close_stdout(0));
    case DFM_OPT_VERSION: dfm_print_version();
    }
    return 0;
}
