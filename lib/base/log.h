/* log.h — diagnostics on stderr in one format for every program:
 *     dfm-<tool>: error: <what> '<subject>': <reason>
 *     hint: <how to fix it>
 * plus the progress line and the closing summary line.
 * Data never goes through here: stdout belongs to the sample stream.
 *
 * One progress line per pipeline: every stage of `dfm-decode | dfm-bucket | dfm-shard` writes its
 * stderr to the same terminal, so by default only the last stage draws the line — a program whose
 * stdout is a pipe, FIFO or socket feeds another stage and stays silent, unless its output is a
 * file (dfm_progress_file_output: -o FILE, shards). The last stage's count and rate are those of
 * the whole pipeline. --progress forces the line on (dfm_progress_mode), -q turns it off; it is
 * drawn only when stderr is a terminal and the process is in the terminal's foreground (git's
 * rule), or when forced.
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

/* Progress: a single \r-redrawn line at most ~5 times a second (see the rule above):
 *     dfm-bucket: 1234 samples, 56.7/s, input 41%, ETA 1:02
 *     dfm-decode: 12/40 files (30%), 2.1/s, ETA 0:13
 * done counts items (`what`: "samples", "files"); total may be 0 (unknown). The rate is items per
 * second since the first call. The ETA comes from total, else from dfm_progress_input().
 * dfm_progress_done() clears the line. */
void dfm_progress(uint64_t done, uint64_t total, const char *what);
void dfm_progress_done(void);
/* The share of the input consumed so far, 0..1 (e.g. bytes read of input files of known size);
 * < 0 = unknown (the default). Shown, with an ETA, when the item total is unknown. */
void dfm_progress_input(double fraction);
enum { DFM_PROGRESS_AUTO = 0, DFM_PROGRESS_ON, DFM_PROGRESS_OFF };
/* AUTO: the rule above; ON: --progress, draw whatever stdout is (even when stderr is not a
 * terminal); OFF: never. dfm_log_set_quiet(1) also turns it off. */
void dfm_progress_mode(int mode);
/* This program writes its data to files, not to a next stage on stdout (-o FILE, shards): it is
 * the last stage, whatever stdout is. */
void dfm_progress_file_output(void);
/* The AUTO decision, for tests: 1 when a program should draw given whether stderr is a terminal
 * it owns (foreground), whether stdout is a pipe/FIFO/socket, and whether it writes files. */
int dfm_progress_auto(int stderr_tty_fg, int stdout_pipe, int file_output);

#endif
