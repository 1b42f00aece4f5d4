/* cli.h — what every program's main() shares: --help/--version, exit codes, number and size
 * parsing with clear errors, the "no binary to a terminal" rule, and EPIPE/SIGPIPE handling.
 * Option tables themselves live in each cmd/dfm-*.c (getopt_long).
 */
#ifndef DFM_BASE_CLI_H
#define DFM_BASE_CLI_H
#include <stdint.h>
#include "base/part.h"

enum { DFM_EXIT_OK = 0, DFM_EXIT_FAIL = 1, DFM_EXIT_USAGE = 2 };

/* Print "prog: error: <msg>" and "hint: try 'prog --help'" and exit 2. */
_Noreturn void dfm_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print "prog VERSION" (+ build info) on stdout and exit 0. */
_Noreturn void dfm_print_version(void);

/* Parsers: on bad input they call dfm_usage_error naming the option. */
long dfm_parse_long(const char *opt, const char *s, long min, long max);
double dfm_parse_double(const char *opt, const char *s, double min, double max);
/* "1000", "64K", "1.5M", "1G", "2GiB" (binary multiples) -> bytes. */
uint64_t dfm_parse_size(const char *opt, const char *s);
/* "640x480" -> w, h (both >= 1). */
void dfm_parse_wxh(const char *opt, const char *s, int *w, int *h);
/* --part K/N or auto (base/part.h): a bad value exits 2 naming it ("option '--part': '4/4':
 * K counts from 0 ..."). "auto" comes back as 0/1 with is_auto set, for the caller to fill in
 * from the launcher (dfm_part_auto). */
dfm_part dfm_parse_part(const char *opt, const char *s);
/* Match s against a NULL-terminated list; returns the index or dies naming the choices. */
int dfm_parse_choice(const char *opt, const char *s, const char *const *choices);

/* The `default:` case of every program's getopt_long loop: print one error naming the option the
 * user typed ("unknown option '--bogus'", "option '--preset' needs a value", "option '--strict'
 * takes no value") and the --help hint, and exit 2. getopt's own messages are off (opterr = 0,
 * set by dfm_cli_init). longopts is the program's table: it tells an option missing its value
 * from an unknown one, so every short option needs a long twin there. */
struct option;
_Noreturn void dfm_usage_bad_option(int argc, char **argv, const struct option *longopts);
/* -j/--threads N: 1..1024, or 0 for the default, one per online core (returned as that count). */
int dfm_parse_threads(const char *opt, const char *s);

/* Refuse to write binary data to a terminal (exit 2 with a hint) unless force. */
void dfm_check_binary_stdout(int force);
/* Ignore SIGPIPE so writes return EPIPE; dfm_exit_pipe() then exits quietly (status 141).
 * Also silences getopt (opterr = 0): dfm_usage_bad_option reports bad options instead. */
void dfm_cli_init(const char *prog);
_Noreturn void dfm_exit_pipe(void);
/* Close stdout and report a write error; returns the exit status to use. */
int dfm_close_stdout(int status);


/* "100M", "2.5K", "1e8", "12000000" -> a count (decimal multiples K=1e3, M=1e6, G=1e9). */
uint64_t dfm_parse_count(const char *opt, const char *s);

/* Program output: stdout, or a file written as FILE.tmp and renamed into place on success. An
 * existing FILE that is not a regular file (a FIFO, /dev/null, /dev/full) is written directly. */
typedef struct {
    int fd;
    char *path, *tmp; /* path NULL for stdout; tmp NULL when written directly */
} dfm_output;
/* path NULL or "-" = stdout (refused when it is a terminal unless force). Errors name `path`
 * (what the user typed), never the .tmp beside it. An output that is not a pipe, FIFO or socket
 * makes this program the last stage of its pipeline for the progress line (log.h). */
int dfm_output_open(dfm_output *o, const char *path, int force);
/* failed = 0: fsync and rename the .tmp into place; failed = 1: remove the .tmp.
 * stdout is flushed/closed by dfm_close_stdout at exit instead. */
int dfm_output_close(dfm_output *o, int failed);
/* The path given to dfm_output_open for fd (valid until that output is closed), or NULL: how
 * write errors deep in lib/io name the output. */
const char *dfm_output_name(int fd);
#endif
