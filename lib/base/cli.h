/* cli.h — what every program's main() shares: --help/--version, exit codes, number and size
 * parsing with clear errors, the "no binary to a terminal" rule, and EPIPE/SIGPIPE handling.
 * Option tables themselves live in each cmd/dfm-*.c (getopt_long).
 */
#ifndef DFM_BASE_CLI_H
#define DFM_BASE_CLI_H
#include <stdint.h>

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
/* Match s against a NULL-terminated list; returns the index or dies naming the choices. */
int dfm_parse_choice(const char *opt, const char *s, const char *const *choices);

/* Refuse to write binary data to a terminal (exit 2 with a hint) unless force. */
void dfm_check_binary_stdout(int force);
/* Ignore SIGPIPE so writes return EPIPE; dfm_exit_pipe() then exits quietly (status 141). */
void dfm_cli_init(const char *prog);
_Noreturn void dfm_exit_pipe(void);
/* Close stdout and report a write error; returns the exit status to use. */
int dfm_close_stdout(int status);


/* "100M", "2.5K", "1e8", "12000000" -> a count (decimal multiples K=1e3, M=1e6, G=1e9). */
uint64_t dfm_parse_count(const char *opt, const char *s);

/* Program output: stdout, or a file written as FILE.tmp and renamed into place on success. */
typedef struct {
    int fd;
    char *path, *tmp; /* NULL for stdout */
} dfm_output;
/* path NULL or "-" = stdout (refused when it is a terminal unless force). */
int dfm_output_open(dfm_output *o, const char *path, int force);
/* failed = 0: fsync and rename the .tmp into place; failed = 1: remove the .tmp.
 * stdout is flushed/closed by dfm_close_stdout at exit instead. */
int dfm_output_close(dfm_output *o, int failed);
#endif
