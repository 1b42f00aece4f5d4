/* error.h — errors are values.
 *
 * Library functions return 0 (or a count) on success and a negative DFM_E_* code on failure,
 * after recording a human-readable message with dfm_fail(). The message is thread-local, so
 * worker threads do not clobber each other. Programs print it (with the sample key) through
 * log.h. Nothing here exits or aborts on bad input; DFM_ASSERT is for programmer errors only.
 */
#ifndef DFM_BASE_ERROR_H
#define DFM_BASE_ERROR_H

enum {
    DFM_OK = 0,
    DFM_E_IO = -1,          /* read/write/open failed (errno text in the message) */
    DFM_E_FORMAT = -2,      /* input bytes are not what they claim to be */
    DFM_E_NOMEM = -3,       /* allocation failed */
    DFM_E_ARG = -4,         /* bad argument or option value */
    DFM_E_UNSUPPORTED = -5, /* valid input we do not handle */
    DFM_E_LIMIT = -6,       /* input exceeds a configured limit */
    DFM_E_SKIP = -7,        /* input is valid but this step does not apply (e.g. clip too short) */
    DFM_E_PIPE = -8,        /* the reader of our output went away */
    DFM_E_NONFINITE = -9,   /* a NaN or an Inf among numbers that must be finite */
    DFM_E_SHORT = -10,      /* fewer items than announced arrived (e.g. decodable video frames) */
};

/* Record a message (printf-style) for the current thread and return `code`. */
int dfm_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3))); /* may take dfm_errmsg() */
/* Prefix the current message with "<prefix>: " (to add context while unwinding). */
int dfm_fail_ctx(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The last message recorded on this thread ("" if none). */
const char *dfm_errmsg(void);
/* A short name for a code: "io", "format", ... */
const char *dfm_errname(int code);

#define DFM_ASSERT(c) \
    ((c) ? (void)0 : dfm_assert_fail(#c, __FILE__, __LINE__))
_Noreturn void dfm_assert_fail(const char *expr, const char *file, int line);

#endif
