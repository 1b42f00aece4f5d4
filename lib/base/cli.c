/* cli.c — shared command-line plumbing (see cli.h). */
#include "base/cli.h"
#include "base/error.h"
#include "base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#ifndef DFM_VERSION
#define DFM_VERSION "0.0.0"
#endif

void dfm_cli_init(const char *prog)
{
    dfm_log_init(prog);
    signal(SIGPIPE, SIG_IGN);
    /* Samples are large (a clip is hundreds of MB) and allocated and freed once per sample.
     * glibc would mmap and unmap each one, paying a page fault and a page clear for every 4 KiB
     * every time; keep them on the heap and reuse the memory instead (the peak is unchanged). */
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    mallopt(M_ARENA_MAX, 1);
}

_Noreturn void dfm_exit_pipe(void)
{
    signal(SIGPIPE, SIG_DFL);
    raise(SIGPIPE);
    _exit(141);
}

_Noreturn void dfm_usage_error(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: error: %s\nhint: try '%s --help'\n", dfm_prog(), msg, dfm_prog());
    exit(DFM_EXIT_USAGE);
}

_Noreturn void dfm_print_version(void)
{
    printf("%s %s\n", dfm_prog(), DFM_VERSION);
#ifdef DFM_HAVE_CUDA
    printf("built with: CUDA backend\n");
#else
    printf("built with: CPU backend only\n");
#endif
    exit(dfm_close_stdout(0));
}

long dfm_parse_long(const char *opt, const char *s, long min, long max)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end)
        dfm_usage_error("option '%s' wants an integer, not '%s'", opt, s);
    if (v < min || v > max)
        dfm_usage_error("option '%s' must be between %ld and %ld, not %ld", opt, min, max, v);
    return v;
}

double dfm_parse_double(const char *opt, const char *s, double min, double max)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v))
        dfm_usage_error("option '%s' wants a number, not '%s'", opt, s);
    if (v < min || v > max)
        dfm_usage_error("option '%s' must be between %g and %g, not %g", opt, min, max, v);
    return v;
}

uint64_t dfm_parse_size(const char *opt, const char *s)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0 || !isfinite(v))
        dfm_usage_error("option '%s' wants a size such as 500M or 1G, not '%s'", opt, s);
    double mul = 1;
    if (*end) {
        char u = (char)(*end | 0x20);
        const char *rest = end + 1;
        if (u == 'k') mul = 1024.0;
        else if (u == 'm') mul = 1024.0 * 1024;
        else if (u == 'g') mul = 1024.0 * 1024 * 1024;
        else if (u == 't') mul = 1024.0 * 1024 * 1024 * 1024;
        else if (u == 'b') rest = end + 1, mul = 1;
        else dfm_usage_error("option '%s': unknown size unit in '%s' (use K, M, G or T)", opt, s);
        if (u != 'b' && (!strcasecmp(rest, "ib") || !strcasecmp(rest, "b"))) rest = "";
        if (*rest) dfm_usage_error("option '%s': cannot read size '%s'", opt, s);
    }
    double b = v * mul;
    if (b < 1 || b > 1.8e19) dfm_usage_error("option '%s': size '%s' is out of range", opt, s);
    return (uint64_t)b;
}

void dfm_parse_wxh(const char *opt, const char *s, int *w, int *h)
{
    char *end;
    long a = strtol(s, &end, 10);
    if (end == s || (*end != 'x' && *end != 'X')) goto bad;
    const char *p = end + 1;
    long b = strtol(p, &end, 10);
    if (end == p || *end || a < 1 || b < 1 || a > 65536 || b > 65536) goto bad;
    *w = (int)a;
    *h = (int)b;
    return;
bad:
    dfm_usage_error("option '%s' wants WIDTHxHEIGHT such as 832x480, not '%s'", opt, s);
}

int dfm_parse_choice(const char *opt, const char *s, const char *const *choices)
{
    char list[512] = "";
    for (int i = 0; choices[i]; i++) {
        if (!strcmp(s, choices[i])) return i;
        if (i) strncat(list, ", ", sizeof list - strlen(list) - 1);
        strncat(list, choices[i], sizeof list - strlen(list) - 1);
    }
    dfm_usage_error("option '%s' does not take '%s' (choose one of: %s)", opt, s, list);
}

void dfm_check_binary_stdout(int force)
{
    if (!force && isatty(1)) {
        fprintf(stderr,
                "%s: error: refusing to write a binary sample stream to a terminal\n"
                "hint: pipe it into another dfm tool or a file, or pass --force\n",
                dfm_prog());
        exit(DFM_EXIT_USAGE);
    }
}

int dfm_close_stdout(int status)
{
    int err = ferror(stdout);
    if (fclose(stdout) != 0 || err) {
        if (errno == EPIPE) dfm_exit_pipe();
        fprintf(stderr, "%s: error: writing output failed: %s\n", dfm_prog(), strerror(errno));
        return status ? status : DFM_EXIT_FAIL;
    }
    return status;
}

uint64_t dfm_parse_count(const char *opt, const char *s)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0 || !isfinite(v))
        dfm_usage_error("option '%s' wants a count such as 100M, not '%s'", opt, s);
    if (*end == 'k' || *end == 'K') v *= 1e3, end++;
    else if (*end == 'm' || *end == 'M') v *= 1e6, end++;
    else if (*end == 'g' || *end == 'G') v *= 1e9, end++;
    if (*end || v < 1 || v > 1e18) dfm_usage_error("option '%s': cannot use '%s'", opt, s);
    return (uint64_t)v;
}

int dfm_output_open(dfm_output *o, const char *path, int force)
{
    memset(o, 0, sizeof *o);
    if (!path || !strcmp(path, "-")) {
        dfm_check_binary_stdout(force);
        o->fd = 1;
        return 0;
    }
    size_t n = strlen(path) + 5;
    o->path = strdup(path);
    o->tmp = malloc(n);
    if (!o->path || !o->tmp) return dfm_fail(DFM_E_NOMEM, "out of memory");
    snprintf(o->tmp, n, "%s.tmp", path);
    o->fd = open(o->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (o->fd < 0) return dfm_fail(DFM_E_IO, "cannot create '%s': %s", o->tmp, strerror(errno));
    return 0;
}

int dfm_output_close(dfm_output *o, int failed)
{
    int rc = 0;
    if (!o->path) return 0;
    if (!failed && fsync(o->fd) != 0)
        rc = dfm_fail(DFM_E_IO, "cannot write '%s': %s", o->tmp, strerror(errno));
    if (close(o->fd) != 0 && !rc)
        rc = dfm_fail(DFM_E_IO, "cannot write '%s': %s", o->tmp, strerror(errno));
    if (!failed && !rc && rename(o->tmp, o->path) != 0)
        rc = dfm_fail(DFM_E_IO, "cannot rename '%s' to '%s': %s", o->tmp, o->path, strerror(errno));
    if (failed || rc) unlink(o->tmp);
    free(o->path);
    free(o->tmp);
    memset(o, 0, sizeof *o);
    return rc;
}
