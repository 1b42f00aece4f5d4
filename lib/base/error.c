/* error.c — the thread-local error message behind dfm_fail(). */
#include "base/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char g_msg[1024];

int dfm_fail(int code, const char *fmt, ...)
{
    /* formatted aside first: an argument may be dfm_errmsg() itself (wrapping the last error) */
    char msg[sizeof g_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(g_msg, msg, sizeof g_msg);
    return code;
}

int dfm_fail_ctx(int code, const char *fmt, ...)
{
    char prefix[512], old[sizeof g_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, g_msg, sizeof old);
    snprintf(g_msg, sizeof g_msg, "%s: %s", prefix, old);
    return code;
}

const char *dfm_errmsg(void) { return g_msg; }

const char *dfm_errname(int code)
{
    switch (code) {
    case DFM_OK: return "ok";
    case DFM_E_IO: return "io";
    case DFM_E_FORMAT: return "format";
    case DFM_E_NOMEM: return "nomem";
    case DFM_E_ARG: return "arg";
    case DFM_E_UNSUPPORTED: return "unsupported";
    case DFM_E_LIMIT: return "limit";
    case DFM_E_SKIP: return "skip";
    case DFM_E_PIPE: return "pipe";
    case DFM_E_SHORT: return "short";
    case DFM_E_NONFINITE: return "nonfinite";
    }
    return "unknown";
}

void dfm_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "dfm: internal error: assertion '%s' failed at %s:%d\n", expr, file, line);
    abort();
}
