/* buf.c — growable buffers, checked allocation, whole-file read and atomic write. */
#include "base/buf.h"
#include "base/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void *dfm_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) dfm_fail(DFM_E_NOMEM, "out of memory (%zu bytes)", n);
    return p;
}

void *dfm_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) dfm_fail(DFM_E_NOMEM, "out of memory (%zu x %zu bytes)", n, size);
    return p;
}

void *dfm_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) dfm_fail(DFM_E_NOMEM, "out of memory (%zu bytes)", n);
    return q;
}

char *dfm_strndup(const char *s, size_t n)
{
    char *p = dfm_malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

char *dfm_strdup(const char *s) { return dfm_strndup(s, strlen(s)); }

int dfm_mul_ok(size_t a, size_t b, size_t *out)
{
    if (a && b > (size_t)-1 / a) {
        dfm_fail(DFM_E_LIMIT, "size overflow (%zu x %zu)", a, b);
        return 0;
    }
    *out = a * b;
    return 1;
}

int dfm_buf_reserve(dfm_buf *b, size_t extra)
{
    if (b->len + extra < b->len) return dfm_fail(DFM_E_LIMIT, "buffer size overflow");
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra) cap = cap > ((size_t)-1) / 2 ? b->len + extra : cap * 2;
    uint8_t *p = dfm_realloc(b->data, cap);
    if (!p) return DFM_E_NOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int dfm_buf_append(dfm_buf *b, const void *p, size_t n)
{
    int rc = dfm_buf_reserve(b, n + 1);
    if (rc) return rc;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0; /* keep text NUL-terminated; not counted in len */
    return 0;
}

int dfm_buf_printf(dfm_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return dfm_fail(DFM_E_ARG, "bad format");
    int rc = dfm_buf_reserve(b, (size_t)n + 1);
    if (rc) return rc;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void dfm_buf_free(dfm_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

uint8_t *dfm_buf_take(dfm_buf *b, size_t *len)
{
    uint8_t *p = b->data;
    if (len) *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

int dfm_read_file(const char *path, size_t max_bytes, dfm_buf *out)
{
    int fd = strcmp(path, "-") ? open(path, O_RDONLY | O_CLOEXEC) : 0;
    if (fd < 0) return dfm_fail(DFM_E_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        if (fd) close(fd);
        return dfm_fail(DFM_E_IO, "'%s' is a directory", path);
    }
    if (fd && S_ISREG(st.st_mode) && max_bytes && (uint64_t)st.st_size > max_bytes) {
        close(fd);
        return dfm_fail(DFM_E_LIMIT, "'%s' is %lld bytes, over the limit of %zu", path,
                        (long long)st.st_size, max_bytes);
    }
    out->len = 0;
    if (fd && S_ISREG(st.st_mode) && dfm_buf_reserve(out, (size_t)st.st_size + 1)) {
        close(fd);
        return DFM_E_NOMEM;
    }
    for (;;) {
        if (dfm_buf_reserve(out, 65536)) {
            if (fd) close(fd);
            return DFM_E_NOMEM;
        }
        ssize_t n = read(fd, out->data + out->len, out->cap - out->len - 1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int e = errno;
            if (fd) close(fd);
            return dfm_fail(DFM_E_IO, "cannot read '%s': %s", path, strerror(e));
        }
        if (n == 0) break;
        out->len += (size_t)n;
        if (max_bytes && out->len > max_bytes) {
            if (fd) close(fd);
            return dfm_fail(DFM_E_LIMIT, "'%s' is over the limit of %zu bytes", path, max_bytes);
        }
    }
    out->data[out->len] = 0;
    if (fd) close(fd);
    return 0;
}

int dfm_write_file_atomic(const char *path, const void *data, size_t len)
{
    size_t n = strlen(path) + 5;
    char *tmp = dfm_malloc(n);
    if (!tmp) return DFM_E_NOMEM;
    snprintf(tmp, n, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int rc = dfm_fail(DFM_E_IO, "cannot create '%s': %s", tmp, strerror(errno));
        free(tmp);
        return rc;
    }
    const uint8_t *p = data;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
            int rc = dfm_fail(DFM_E_IO, "cannot write '%s': %s", tmp, strerror(errno));
            close(fd);
            unlink(tmp);
            free(tmp);
            return rc;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        int rc = dfm_fail(DFM_E_IO, "cannot write '%s': %s", tmp, strerror(errno));
        unlink(tmp);
        free(tmp);
        return rc;
    }
    if (rename(tmp, path) != 0) {
        int rc = dfm_fail(DFM_E_IO, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return rc;
    }
    free(tmp);
    return 0;
}

int dfm_mkdirs(const char *dir)
{
    char *d = dfm_strdup(dir);
    if (!d) return DFM_E_NOMEM;
    for (char *p = d + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(d, 0755) != 0 && errno != EEXIST) {
                int rc = dfm_fail(DFM_E_IO, "cannot create directory '%s': %s", d, strerror(errno));
                free(d);
                return rc;
            }
            *p = c;
            if (!c) break;
        }
    }
    struct stat sb;
    int rc = stat(d, &sb) || !S_ISDIR(sb.st_mode) ? dfm_fail(DFM_E_IO, "'%s' is not a directory", d) : 0;
    free(d);
    return rc;
}

int dfm_path_join(char *out, size_t n, const char *a, const char *b)
{
    if ((size_t)snprintf(out, n, "%s/%s", a, b) >= n) return dfm_fail(DFM_E_ARG, "path too long: '%s/%s'", a, b);
    return 0;
}
