/* stream_map.c — the shared filter loop (see stream_map.h). */
#include "io/stream_map.h"
#include "base/cli.h"
#include "base/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    dfm_output out = {.fd = -1};
    dfm_writer *w = NULL;
    if (!o->sink && (dfm_output_open(&out, o->output, o->force) ||
                     dfm_writer_open_fd(&w, out.fd, o->framing, o->zstd_level))) {
        dfm_log_error("%s", dfm_errmsg());
        if (out.fd > 1) dfm_output_close(&out, 1);
        return DFM_EXIT_FAIL;
    }
    int failed = 0, stop = 0;
    dfm_sample s;
    dfm_sample_init(&s);
    for (int i = 0; i < n && !stop; i++) {
        dfm_reader *r;
        if (dfm_reader_open(&r, inputs[i], o->max_sample)) {
            dfm_log_error("cannot read '%s': %s", inputs[i], dfm_errmsg());
            failed = 1;
            if (o->strict) break;
            continue;
        }
        int got;
        while ((got = dfm_reader_next(r, &s)) == 1) {
            counts->read++;
            dfm_progress(counts->read, 0, o->progress ? o->progress : "samples");
            int rc = fn ? fn(ctx, &s) : 0;
            if (rc == DFM_E_NOMEM || rc == DFM_E_PIPE) {
                dfm_log_error("sample '%s': %s", s.key, dfm_errmsg());
                failed = stop = 1;
                break;
            }
            if (rc) {
                dfm_log_error("skipping sample '%s': %s", s.key, dfm_errmsg());
                counts->skipped++;
                if (o->strict) {
                    failed = stop = 1;
                    break;
                }
                continue;
            }
            rc = o->sink ? o->sink(o->sink_ctx, &s) : dfm_writer_put(w, &s);
            if (rc == DFM_E_PIPE) dfm_exit_pipe();
            if (rc) {
                dfm_log_error("%s", dfm_errmsg());
                failed = stop = 1;
                break;
            }
            counts->written++;
        }
        if (got < 0) {
            /* A corrupt or truncated stream: what came before it is kept, the rest is lost. */
            dfm_log_error("input '%s' after %llu samples: %s", inputs[i],
                          (unsigned long long)counts->read, dfm_errmsg());
            failed = 1;
            if (o->strict) stop = 1;
        }
        dfm_reader_close(r);
    }
    dfm_sample_free(&s);
    int rc = w ? dfm_writer_close(w) : 0;
    if (rc == DFM_E_PIPE) dfm_exit_pipe();
    if (rc) {
        dfm_log_error("%s", dfm_errmsg());
        failed = 1;
    }
    if (dfm_output_close(&out, failed && o->strict)) {
        dfm_log_error("%s", dfm_errmsg());
        failed = 1;
    }
    return failed ? DFM_EXIT_FAIL : DFM_EXIT_OK;
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
    case 'q': dfm_log_set_quiet(1); return 1;
    case 'h': fputs(usage, stdout); exit(dfm_close_stdout(0));
    case DFM_OPT_VERSION: dfm_print_version();
    }
    return 0;
}
