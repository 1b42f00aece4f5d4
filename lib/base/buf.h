/* buf.h — a growable byte buffer (data, len, cap). Zero-initialize to start empty.
 * Not a string builder for hot paths; it is what samples and encoders append into. */
#ifndef DFM_BASE_BUF_H
#define DFM_BASE_BUF_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint8_t *data;
    size_t len, cap;
} dfm_buf;

int dfm_buf_reserve(dfm_buf *b, size_t extra);               /* room for `extra` more bytes */
int dfm_buf_append(dfm_buf *b, const void *p, size_t n);
int dfm_buf_printf(dfm_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void dfm_buf_free(dfm_buf *b);
/* Hand the bytes to the caller (free() them); the buffer becomes empty. */
uint8_t *dfm_buf_take(dfm_buf *b, size_t *len);

/* Checked allocation helpers: return NULL and record DFM_E_NOMEM on failure. */
void *dfm_malloc(size_t n);
void *dfm_calloc(size_t n, size_t size);
void *dfm_realloc(void *p, size_t n);
char *dfm_strdup(const char *s);
char *dfm_strndup(const char *s, size_t n);
/* n * size without overflow; returns 0 and records DFM_E_LIMIT on overflow. */
int dfm_mul_ok(size_t a, size_t b, size_t *out);

/* Read a whole file (or "-" for stdin) into *out; rejects files over max_bytes (0 = no limit). */
int dfm_read_file(const char *path, size_t max_bytes, dfm_buf *out);
/* Write bytes to `path` as path.tmp, fsync, rename: the final name is always complete. */
int dfm_write_file_atomic(const char *path, const void *data, size_t len);
/* mkdir -p: create dir and its missing parents (0755); an existing directory is fine, a file in
 * the way is DFM_E_IO naming it. */
int dfm_mkdirs(const char *dir);
/* out = "a/b" in n bytes; DFM_E_ARG when it does not fit. */
int dfm_path_join(char *out, size_t n, const char *a, const char *b);

#endif
