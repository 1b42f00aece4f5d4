/* utf8.c — see utf8.h. */
#include "base/utf8.h"
#include "base/buf.h"

#include <string.h>

int dfm_utf8_len(const unsigned char *p)
{
    if (p[0] < 0x80) return 1;
    int n = p[0] >= 0xC2 && p[0] <= 0xDF ? 2 : p[0] >= 0xE0 && p[0] <= 0xEF ? 3
          : p[0] >= 0xF0 && p[0] <= 0xF4 ? 4 : 0;
    for (int i = 1; i < n; i++)
        if ((p[i] & 0xC0) != 0x80) return 0;
    if (n == 3 && ((p[0] == 0xE0 && p[1] < 0xA0) || (p[0] == 0xED && p[1] >= 0xA0))) return 0;
    if (n == 4 && ((p[0] == 0xF0 && p[1] < 0x90) || (p[0] == 0xF4 && p[1] >= 0x90))) return 0;
    return n;
}

int dfm_utf8_check(const char *s, size_t n, int allow_nul)
{
    if (n == 0) return 1; /* s may be NULL then (NULL + 0 is undefined behaviour) */
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        unsigned char b = *p;
        if (b < 0x80) {
            if (!b && !allow_nul) return 0;
            p++;
            continue;
        }
        int k = b >= 0xC2 && b <= 0xDF ? 2 : b >= 0xE0 && b <= 0xEF ? 3 : b >= 0xF0 && b <= 0xF4 ? 4 : 0;
        if (!k || end - p < k) return 0;
        for (int i = 1; i < k; i++)
            if ((p[i] & 0xC0) != 0x80) return 0;
        if (k == 3 && ((b == 0xE0 && p[1] < 0xA0) || (b == 0xED && p[1] >= 0xA0))) return 0;
        if (k == 4 && ((b == 0xF0 && p[1] < 0x90) || (b == 0xF4 && p[1] >= 0x90))) return 0;
        p += k;
    }
    return 1;
}

int dfm_utf8_valid(const char *s, size_t n) { return dfm_utf8_check(s, n, 0); }

char *dfm_utf8_sanitize(const char *s)
{
    size_t n = strlen(s);
    char *out = dfm_malloc(n * 3 + 1), *o = out;
    if (!out) return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        int k = dfm_utf8_len(p);
        if (k) {
            memcpy(o, p, (size_t)k);
            o += k, p += k;
        } else {
            memcpy(o, "\xEF\xBF\xBD", 3);
            o += 3, p++;
        }
    }
    *o = 0;
    return out;
}
