/* describe.c — text listing of a sample (see describe.h). */
#include "io/describe.h"
#include "io/npy.h"

#include <string.h>

static int put_escaped(dfm_buf *b, const uint8_t *p, size_t n)
{
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        if (p[i] == '\t') rc = dfm_buf_append(b, "\\t", 2);
        else if (p[i] == '\n') rc = dfm_buf_append(b, "\\n", 2);
        else if (p[i] == '\\') rc = dfm_buf_append(b, "\\\\", 2);
        else if (p[i] < 0x20) rc = dfm_buf_printf(b, "\\x%02x", p[i]);
        else rc = dfm_buf_append(b, &p[i], 1);
    }
    return rc;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

int dfm_sample_describe(const dfm_sample *s, dfm_buf *out)
{
    static const char *const dt[] = {"u1", "i4", "i8", "f2", "f4"};
    int rc = put_escaped(out, (const uint8_t *)(s->key ? s->key : ""), s->key ? strlen(s->key) : 0);
    for (int i = 0; i < s->n && !rc; i++) {
        const dfm_field *f = &s->fields[i];
        rc = dfm_buf_printf(out, "\t%s=", f->name);
        if (rc) break;
        dfm_npy a;
        if (!strcmp(f->name, "txt") || !strcmp(f->name, "json")) {
            rc = put_escaped(out, f->data, f->len);
        } else if (ends_with(f->name, ".npy") && dfm_npy_parse(f->data, f->len, &a) == 0) {
            rc = dfm_buf_printf(out, "%s[", dt[a.dtype]);
            for (int d = 0; d < a.ndim && !rc; d++)
                rc = dfm_buf_printf(out, "%s%lld", d ? "," : "", (long long)a.shape[d]);
            if (!rc) rc = dfm_buf_append(out, "]", 1);
        } else {
            rc = dfm_buf_printf(out, "%zuB", f->len);
        }
    }
    if (!rc) rc = dfm_buf_append(out, "\n", 1);
    return rc;
}
