/* log.h — diagnostics on stderr in one format for every program:
 *     dfm-<tool>: error: <what> '<subject>': <reason>
 *     hint: <how to fix it>
 * plus the progress line (only when stderr is a terminal) and the closing summary line.
 * Data never goes through here: stdout belongs to the sample stream.
 */
#ifndef DFM_BASE_LOG_H
#define DFM_BASE_LOG_H
#include <stdint.h>

void dfm_log_init(const char *prog);   /* program name used as the prefix */
const char *dfm_prog(void);
void dfm_log_set_quiet(int quiet);     /* quiet: no info lines, no progress */
int dfm_log_quiet(void);

void dfm_log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void dfm_log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void dfm_log_hint(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void dfm_log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Counters every program keeps; dfm_summary() prints the closing line. */
typedef struct {
    uint64_t read, written, skipped;
    double t0; /* dfm_now() at start */
} dfm_counts;
double dfm_now(void); /* monotonic seconds */
void dfm_counts_init(dfm_counts *c);
/* "dfm-x: read N, written N, skipped N, S.SS s[, extra]" — always printed, even when quiet. */
void dfm_summary(const dfm_counts *c, const char *extra);

/* Progress: a single \r-redrawn line at most ~5 times a second, only when stderr is a tty and
 * not quiet. total may be 0 (unknown). dfm_progress_done() clears the line. */
void dfm_progress(uint64_t done, uint64_t total, const char *what);
void dfm_progress_done(void);

#endif
