/* cli.c — shared command-line plumbing (see cli.h). */
#include "base/cli.h"
#include "base/error.h"
#include "base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef DFM_VERSION
#define DFM_VERSION "0.0.0"
#endif

void dfm_cli_init(const char *prog)
{
    dfm_log_init(prog);
    signal(SIGPIPE, SIG_IGN);
    opterr = 0; /* one message per bad option: ours (dfm_usage_bad_option), not getopt's too */
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

_Noreturn void dfm_usage_bad_option(int argc, char **argv, const struct option *longopts)
{
    /* A long option is the element getopt just stepped past; a short one is optopt (the element
     * may be a group such as -qx that getopt is still inside). */
    const char *arg = optind > 0 && optind <= argc ? argv[optind - 1] : "";
    if (!strncmp(arg, "--", 2) && arg[2]) {
        int n = (int)strcspn(arg, "=");
        if (!optopt) { /* unknown, or an abbreviation of several */
            char list[512] = "";
            int matches = 0;
            for (const struct option *o = longopts; o && o->name; o++)
                if (!strncmp(o->name, arg + 2, (size_t)n - 2) && ++matches)
                    snprintf(list + strlen(list), sizeof list - strlen(list), "%s--%s",
                             matches > 1 ? ", " : "", o->name);
            if (matches > 1) dfm_usage_error("option '%.*s' is ambiguous (%s)", n, arg, list);
            dfm_usage_error("unknown option '%.*s'", n, arg);
        }
        for (const struct option *o = longopts; o && o->name; o++) {
            if (o->flag || o->val != optopt || strncmp(o->name, arg + 2, (size_t)n - 2)) continue;
            if (o->has_arg == no_argument) dfm_usage_error("option '--%s' takes no value", o->name);
            dfm_usage_error("option '--%s' needs a value", o->name);
        }
    }
    for (const struct option *o = longopts; o && o->name; o++)
        if (!o->flag && o->val == optopt && o->has_arg != no_argument)
            dfm_usage_error("option '-%c' (--%s) needs a value", optopt, o->name);
    if (optopt > ' ' && optopt < 127) dfm_usage_error("unknown option '-%c'", optopt);
    dfm_usage_error("unknown option '%s'", arg);
}

int dfm_parse_threads(const char *opt, const char *s)
{
    long n = dfm_parse_long(opt, s, 0, 1024);
    if (n == 0) {
        n = sysconf(_SC_NPROCESSORS_ONLN);
        if (n < 1) n = 1;
    }
    return (int)n;
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

dfm_part dfm_parse_part(const char *opt, const char *s)
{
    dfm_part p;
    if (dfm_part_parse(s, &p)) dfm_usage_error("option '%s': %s", opt, dfm_errmsg());
    return p;
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
        fprintf(stderr, "%s: error: cannot write to stdout: %s\n", dfm_prog(), strerror(errno));
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

/* The outputs open now, so a write error deep in lib/io can name the path (dfm_output_name). */
#define MAX_OUTPUTS 16
typedef struct {
    int fd;
    const char *path;
} output_name;
static output_name g_outputs[MAX_OUTPUTS];
static int g_noutputs;

static void remember_output(int fd, const char *path)
{
    if (g_noutputs < MAX_OUTPUTS) g_outputs[g_noutputs++] = (output_name){fd, path};
}

static void forget_output(int fd)
{
    for (int i = 0; i < g_noutputs; i++)
        if (g_outputs[i].fd == fd) {
            g_outputs[i] = g_outputs[--g_noutputs];
            return;
        }
}

const char *dfm_output_name(int fd)
{
    for (int i = 0; i < g_noutputs; i++)
        if (g_outputs[i].fd == fd) return g_outputs[i].path;
    return NULL;
}

int dfm_output_open(dfm_output *o, const char *path, int force)
{
    memset(o, 0, sizeof *o);
    o->fd = -1;
    if (!path || !strcmp(path, "-")) {
        dfm_check_binary_stdout(force);
        o->fd = 1;
        return 0;
    }
    struct stat st;
    int exists = stat(path, &st) == 0;
    if (exists && S_ISDIR(st.st_mode))
        return dfm_fail(DFM_E_IO, "cannot write '%s': it is a directory", path);
    int direct = exists && !S_ISREG(st.st_mode); /* a FIFO or a device: no .tmp, no rename */
    size_t n = strlen(path) + 5;
    o->path = strdup(path);
    o->tmp = direct ? NULL : malloc(n);
    if (!o->path || (!direct && !o->tmp)) {
        free(o->path);
        free(o->tmp);
        memset(o, 0, sizeof *o);
        o->fd = -1;
        return dfm_fail(DFM_E_NOMEM, "out of memory");
    }
    if (!direct) snprintf(o->tmp, n, "%s.tmp", path);
    o->fd = open(direct ? path : o->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (o->fd < 0) {
        int rc = dfm_fail(DFM_E_IO, "cannot create '%s': %s", path, strerror(errno));
        free(o->path);
        free(o->tmp);
        memset(o, 0, sizeof *o);
        o->fd = -1;
        return rc;
    }
    if (!(direct && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)))) dfm_progress_file_output();
    remember_output(o->fd, o->path);
    return 0;
}

int dfm_output_close(dfm_output *o, int failed)
{
    int rc = 0;
    if (!o->path) return 0;
    forget_output(o->fd);
    if (!failed && o->tmp && fsync(o->fd) != 0)
        rc = dfm_fail(DFM_E_IO, "cannot write '%s': %s", o->path, strerror(errno));
    if (close(o->fd) != 0 && !rc && !failed)
        rc = dfm_fail(DFM_E_IO, "cannot write '%s': %s", o->path, strerror(errno));
    if (o->tmp) {
        if (!failed && !rc && rename(o->tmp, o->path) != 0)
            rc = dfm_fail(DFM_E_IO, "cannot rename '%s' into place: %s", o->path, strerror(errno));
        if (failed || rc) unlink(o->tmp);
    }
    free(o->path);
    free(o->tmp);
    memset(o, 0, sizeof *o);
    o->fd = -1;
    return rc;
}
