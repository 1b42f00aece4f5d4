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

int dfm_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        if (*p == 0) return 0;
        int k = *p < 0x80 ? 1 : 0;
        if (!k) {
            /* bounds: a sequence must not run past n */
            unsigned char tmp[5] = {0};
            size_t left = (size_t)(end - p);
            memcpy(tmp, p, left < 4 ? left : 4);
            k = dfm_utf8_len(tmp);
            if (!k || (size_t)k > left) return 0;
        }
        p += k;
    }
    return 1;
}

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
