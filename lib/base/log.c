/* log.c — stderr diagnostics, progress line and summary (see log.h). Not here: what the
 * programs count (they call dfm_progress), the summary's wording beyond the counters. */
#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *g_prog = "dfm";
static int g_quiet;
static int g_progress_shown;
static double g_progress_last;
static int g_progress_mode = DFM_PROGRESS_AUTO;
static int g_progress_files; /* the program writes files: it is the last stage */
static int g_progress_draw = -1; /* decided at the first dfm_progress call */
static double g_progress_t0, g_progress_fraction = -1;
static uint64_t g_progress_d0;

void dfm_log_init(const char *prog)
{
    const char *s = strrchr(prog, '/');
    g_prog = s ? s + 1 : prog;
}
const char *dfm_prog(void) { return g_prog; }
void dfm_log_set_quiet(int quiet) { g_quiet = quiet; }
int dfm_log_quiet(void) { return g_quiet; }

/* Before a whole line on a terminal: clear whatever partial line is there — our progress line,
 * or another pipeline stage's, which shares the terminal. */
static void clear_line(void)
{
    static int tty = -1;
    if (tty < 0) tty = isatty(2);
    if (tty || g_progress_shown) fputs("\r\033[K", stderr);
    g_progress_shown = 0;
}

static void vlog(const char *level, const char *fmt, va_list ap)
{
    char line[4096];
    int n = 0;
    if (level) n = snprintf(line, sizeof line, "%s: %s: ", g_prog, level);
    else n = snprintf(line, sizeof line, "hint: ");
    if (n < 0) n = 0;
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    clear_line();
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
    clear_line();
    fprintf(stderr, "%s: read %llu, written %llu, skipped %llu, %.2f s%s%s\n", g_prog,
            (unsigned long long)c->read, (unsigned long long)c->written,
            (unsigned long long)c->skipped, dfm_now() - c->t0, extra && *extra ? ", " : "",
            extra ? extra : "");
}

void dfm_progress_mode(int mode) { g_progress_mode = mode; }
void dfm_progress_file_output(void) { g_progress_files = 1; }
void dfm_progress_input(double fraction) { g_progress_fraction = fraction > 1 ? 1 : fraction; }

int dfm_progress_auto(int stderr_tty_fg, int stdout_pipe, int file_output)
{
    return stderr_tty_fg && (file_output || !stdout_pipe);
}

static int should_draw(void)
{
    if (g_quiet || g_progress_mode == DFM_PROGRESS_OFF) return 0;
    if (g_progress_mode == DFM_PROGRESS_ON) return 1;
    struct stat st;
    int pipe_out = fstat(1, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode));
    int tty = isatty(2) && tcgetpgrp(2) == getpgrp();
    return dfm_progress_auto(tty, pipe_out, g_progress_files);
}

/* "1:02", "1:02:03" */
static void fmt_time(char *out, size_t n, double s)
{
    if (s < 0 || s > 359999) s = 359999;
    unsigned t = (unsigned)(s + 0.5);
    if (t >= 3600) snprintf(out, n, "%u:%02u:%02u", t / 3600, t / 60 % 60, t % 60);
    else snprintf(out, n, "%u:%02u", t / 60, t % 60);
}

void dfm_progress(uint64_t done, uint64_t total, const char *what)
{
    if (g_progress_draw < 0) {
        g_progress_draw = should_draw();
        g_progress_t0 = dfm_now();
        g_progress_d0 = done ? done - 1 : 0; /* the first item arrived at t0 */
    }
    if (!g_progress_draw || g_quiet) return;
    double t = dfm_now();
    if (g_progress_shown && t - g_progress_last < 0.2 && !(total && done == total)) return;
    g_progress_last = t;
    char line[256], eta[32] = "";
    int n;
    if (total)
        n = snprintf(line, sizeof line, "%s: %llu/%llu %s (%.0f%%)", g_prog,
                     (unsigned long long)done, (unsigned long long)total, what ? what : "",
                     100.0 * (double)done / (double)total);
    else
        n = snprintf(line, sizeof line, "%s: %llu %s", g_prog, (unsigned long long)done,
                     what ? what : "");
    double dt = t - g_progress_t0, rate = dt > 0.5 ? (double)(done - g_progress_d0) / dt : 0;
    if (rate > 0 && n > 0 && (size_t)n < sizeof line)
        n += snprintf(line + n, sizeof line - (size_t)n, ", %.*f/s", rate < 10 ? 1 : 0, rate);
    double frac = total ? (double)done / (double)total : g_progress_fraction;
    if (!total && frac >= 0 && n > 0 && (size_t)n < sizeof line)
        n += snprintf(line + n, sizeof line - (size_t)n, ", input %.0f%%", 100 * frac);
    if (frac > 0.001 && frac < 1 && dt > 2) {
        fmt_time(eta, sizeof eta, dt * (1 - frac) / frac);
        if (n > 0 && (size_t)n < sizeof line) snprintf(line + n, sizeof line - (size_t)n, ", ETA %s", eta);
    }
    fprintf(stderr, "\r%s\033[K", line);
    g_progress_shown = 1;
}

void dfm_progress_done(void)
{
    if (!g_progress_shown) return;
    fprintf(stderr, "\r\033[K");
    g_progress_shown = 0;
}
