/* log.c — stderr diagnostics, progress line and summary (see log.h). */
#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *g_prog = "dfm";
static int g_quiet;
static int g_progress_shown;
static double g_progress_last;

void dfm_log_init(const char *prog)
{
    const char *s = strrchr(prog, '/');
    g_prog = s ? s + 1 : prog;
}
const char *dfm_prog(void) { return g_prog; }
void dfm_log_set_quiet(int quiet) { g_quiet = quiet; }
int dfm_log_quiet(void) { return g_quiet; }

static void vlog(const char *level, const char *fmt, va_list ap)
{
    char line[4096];
    int n = 0;
    if (level) n = snprintf(line, sizeof line, "%s: %s: ", g_prog, level);
    else n = snprintf(line, sizeof line, "hint: ");
    if (n < 0) n = 0;
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    if (g_progress_shown) dfm_progress_done();
    fprintf(stderr, "%s\n", line);
}

#define DEFINE_LOG(fn, level, cond)            \
    void fn(const char *fmt, ...)              \
    {                                          \
        if (!(cond)) return;                   \
        va_list ap;                            \
        va_start(ap, fmt);                     \
        vlog(level, fmt, ap);                  \
        va_end(ap);                            \
    }
DEFINE_LOG(dfm_log_error, "error", 1)
DEFINE_LOG(dfm_log_warn, "warning", 1)
DEFINE_LOG(dfm_log_hint, NULL, 1)
DEFINE_LOG(dfm_log_info, "info", !g_quiet)

double dfm_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void dfm_counts_init(dfm_counts *c)
{
    memset(c, 0, sizeof *c);
    c->t0 = dfm_now();
}

void dfm_summary(const dfm_counts *c, const char *extra)
{
    if (g_progress_shown) dfm_progress_done();
    fprintf(stderr, "%s: read %llu, written %llu, skipped %llu, %.2f s%s%s\n", g_prog,
            (unsigned long long)c->read, (unsigned long long)c->written,
            (unsigned long long)c->skipped, dfm_now() - c->t0, extra && *extra ? ", " : "",
            extra ? extra : "");
}

void dfm_progress(uint64_t done, uint64_t total, const char *what)
{
    static int tty = -1;
    if (tty < 0) tty = isatty(2) && tcgetpgrp(2) == getpgrp();
    if (g_quiet || !tty) return;
    double t = dfm_now();
    if (g_progress_shown && t - g_progress_last < 0.2 && !(total && done == total)) return;
    g_progress_last = t;
    if (total)
        fprintf(stderr, "\r%s: %s %llu/%llu (%3.0f%%)\033[K", g_prog, what ? what : "",
                (unsigned long long)done, (unsigned long long)total, 100.0 * done / total);
    else
        fprintf(stderr, "\r%s: %s %llu\033[K", g_prog, what ? what : "", (unsigned long long)done);
    g_progress_shown = 1;
}

void dfm_progress_done(void)
{
    if (!g_progress_shown) return;
    fprintf(stderr, "\r\033[K");
    g_progress_shown = 0;
}
