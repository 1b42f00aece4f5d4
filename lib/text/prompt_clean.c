/* prompt_clean.c — diffusers' Wan prompt_clean without ftfy (prompt_clean.h). */
#include "text/prompt_clean.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text/grapheme.h"

typedef struct {
    const char *name;
    uint32_t cp;
} entity;

/* Named entities with and without the trailing ';' as html.unescape accepts them for these
 * (the HTML5 table lists the Latin-1 names also without ';'). */
static const entity k_entities[] = {
    {"AMP", '&'},      {"LT", '<'},        {"GT", '>'},        {"QUOT", '"'},     {"COPY", 0xA9},   {"REG", 0xAE},
    {"amp", '&'},      {"lt", '<'},        {"gt", '>'},        {"quot", '"'},     {"apos", '\''},   {"nbsp", 0xA0},
    {"iexcl", 0xA1},   {"cent", 0xA2},     {"pound", 0xA3},    {"curren", 0xA4},  {"yen", 0xA5},    {"brvbar", 0xA6},
    {"sect", 0xA7},    {"uml", 0xA8},      {"copy", 0xA9},     {"ordf", 0xAA},    {"laquo", 0xAB},  {"not", 0xAC},
    {"shy", 0xAD},     {"reg", 0xAE},      {"macr", 0xAF},     {"deg", 0xB0},     {"plusmn", 0xB1}, {"sup2", 0xB2},
    {"sup3", 0xB3},    {"acute", 0xB4},    {"micro", 0xB5},    {"para", 0xB6},    {"middot", 0xB7}, {"cedil", 0xB8},
    {"sup1", 0xB9},    {"ordm", 0xBA},     {"raquo", 0xBB},    {"frac14", 0xBC},  {"frac12", 0xBD}, {"frac34", 0xBE},
    {"iquest", 0xBF},  {"Agrave", 0xC0},   {"Aacute", 0xC1},   {"Acirc", 0xC2},   {"Atilde", 0xC3}, {"Auml", 0xC4},
    {"Aring", 0xC5},   {"AElig", 0xC6},    {"Ccedil", 0xC7},   {"Egrave", 0xC8},  {"Eacute", 0xC9}, {"Ecirc", 0xCA},
    {"Euml", 0xCB},    {"Igrave", 0xCC},   {"Iacute", 0xCD},   {"Icirc", 0xCE},   {"Iuml", 0xCF},   {"ETH", 0xD0},
    {"Ntilde", 0xD1},  {"Ograve", 0xD2},   {"Oacute", 0xD3},   {"Ocirc", 0xD4},   {"Otilde", 0xD5}, {"Ouml", 0xD6},
    {"times", 0xD7},   {"Oslash", 0xD8},   {"Ugrave", 0xD9},   {"Uacute", 0xDA},  {"Ucirc", 0xDB},  {"Uuml", 0xDC},
    {"Yacute", 0xDD},  {"THORN", 0xDE},    {"szlig", 0xDF},    {"agrave", 0xE0},  {"aacute", 0xE1}, {"acirc", 0xE2},
    {"atilde", 0xE3},  {"auml", 0xE4},     {"aring", 0xE5},    {"aelig", 0xE6},   {"ccedil", 0xE7}, {"egrave", 0xE8},
    {"eacute", 0xE9},  {"ecirc", 0xEA},    {"euml", 0xEB},     {"igrave", 0xEC},  {"iacute", 0xED}, {"icirc", 0xEE},
    {"iuml", 0xEF},    {"eth", 0xF0},      {"ntilde", 0xF1},   {"ograve", 0xF2},  {"oacute", 0xF3}, {"ocirc", 0xF4},
    {"otilde", 0xF5},  {"ouml", 0xF6},     {"divide", 0xF7},   {"oslash", 0xF8},  {"ugrave", 0xF9}, {"uacute", 0xFA},
    {"ucirc", 0xFB},   {"uuml", 0xFC},     {"yacute", 0xFD},   {"thorn", 0xFE},   {"yuml", 0xFF},
};
/* semicolon required (not in the legacy no-';' list) */
static const entity k_entities_semi[] = {
    {"ndash", 0x2013}, {"mdash", 0x2014}, {"lsquo", 0x2018}, {"rsquo", 0x2019}, {"sbquo", 0x201A}, {"ldquo", 0x201C},
    {"rdquo", 0x201D}, {"bdquo", 0x201E}, {"hellip", 0x2026}, {"bull", 0x2022}, {"euro", 0x20AC}, {"trade", 0x2122},
    {"larr", 0x2190},  {"rarr", 0x2192},  {"uarr", 0x2191},  {"darr", 0x2193},  {"hearts", 0x2665}, {"star", 0x2606},
    {"dagger", 0x2020}, {"Dagger", 0x2021}, {"permil", 0x2030}, {"prime", 0x2032}, {"Prime", 0x2033}, {"lsaquo", 0x2039},
    {"rsaquo", 0x203A}, {"oelig", 0x153}, {"OElig", 0x152}, {"scaron", 0x161}, {"Scaron", 0x160}, {"Yuml", 0x178},
    {"fnof", 0x192},   {"circ", 0x2C6},   {"tilde", 0x2DC},  {"ensp", 0x2002},  {"emsp", 0x2003},  {"thinsp", 0x2009},
    {"zwnj", 0x200C},  {"zwj", 0x200D},   {"lrm", 0x200E},   {"rlm", 0x200F},   {"infin", 0x221E},  {"ne", 0x2260},
    {"le", 0x2264},    {"ge", 0x2265},    {"minus", 0x2212}, {"deg", 0xB0},
};

/* html.unescape's numeric rules: invalid code points and the C1 controls of Windows-1252 */
static uint32_t numeric_cp(uint64_t v)
{
    static const uint16_t cp1252[32] = {0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
                                        0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x8D, 0x017D, 0x8F,
                                        0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
                                        0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D, 0x017E, 0x0178};
    if (v >= 0x80 && v <= 0x9F) return cp1252[v - 0x80];
    if (v == 0 || (v >= 0xD800 && v <= 0xDFFF) || v > 0x10FFFF) return 0xFFFD;
    return (uint32_t)v;
}

static size_t put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) return o[0] = (char)cp, 1;
    if (cp < 0x800) return o[0] = (char)(0xC0 | cp >> 6), o[1] = (char)(0x80 | (cp & 63)), 2;
    if (cp < 0x10000)
        return o[0] = (char)(0xE0 | cp >> 12), o[1] = (char)(0x80 | (cp >> 6 & 63)), o[2] = (char)(0x80 | (cp & 63)), 3;
    o[0] = (char)(0xF0 | cp >> 18), o[1] = (char)(0x80 | (cp >> 12 & 63)), o[2] = (char)(0x80 | (cp >> 6 & 63));
    o[3] = (char)(0x80 | (cp & 63));
    return 4;
}

/* One pass of html.unescape over s[0..n) into o (never longer than the input); returns the length. */
static size_t unescape(const char *s, size_t n, char *o)
{
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] != '&') {
            o[k++] = s[i++];
            continue;
        }
        size_t j = i + 1;
        if (j < n && s[j] == '#') { /* &#NNN; &#xHH; (';' optional) */
            int hex = j + 1 < n && (s[j + 1] == 'x' || s[j + 1] == 'X');
            size_t d = j + 1 + hex, e = d;
            uint64_t v = 0;
            while (e < n && (hex ? ((s[e] >= '0' && s[e] <= '9') || ((s[e] | 32) >= 'a' && (s[e] | 32) <= 'f'))
                                 : (s[e] >= '0' && s[e] <= '9'))) {
                int dv = s[e] <= '9' ? s[e] - '0' : (s[e] | 32) - 'a' + 10;
                if (v < 0x1000000) v = v * (hex ? 16 : 10) + (uint64_t)dv;
                e++;
            }
            if (e > d) {
                if (e < n && s[e] == ';') e++;
                k += put_utf8(o + k, numeric_cp(v));
                i = e;
                continue;
            }
        } else {
            /* html.unescape: the name is [^\t\n\f <&#;]{1,32} then an optional ';'; the whole name is
             * looked up, else its longest prefix of at least 2 characters among the names that may go
             * without ';' (the rest of the name stays as text); else nothing is replaced */
            size_t e = j;
            while (e < n && e - j < 32 && !strchr("\t\n\f <&#;", s[e]) && s[e]) e++;
            size_t len = e - j;
            int semi = e < n && s[e] == ';';
            const entity *hit = NULL;
            size_t used = 0;
            for (size_t t = 0; len && !hit && semi && t < sizeof k_entities_semi / sizeof *k_entities_semi; t++)
                if (strlen(k_entities_semi[t].name) == len && !memcmp(k_entities_semi[t].name, s + j, len))
                    hit = &k_entities_semi[t], used = len + 1;
            for (size_t t = 0; len && !hit && t < sizeof k_entities / sizeof *k_entities; t++)
                if (strlen(k_entities[t].name) == len && !memcmp(k_entities[t].name, s + j, len))
                    hit = &k_entities[t], used = len + (size_t)semi;
            /* longest prefix: x from len(token) - 1 down to 2, where the token includes the ';' */
            for (size_t x = len + (size_t)semi - 1; len && !hit && x >= 2; x--) {
                if (x > len) continue;
                for (size_t t = 0; t < sizeof k_entities / sizeof *k_entities; t++)
                    if (strlen(k_entities[t].name) == x && !memcmp(k_entities[t].name, s + j, x)) {
                        hit = &k_entities[t], used = x;
                        break;
                    }
            }
            if (hit) {
                k += put_utf8(o + k, hit->cp);
                i = j + used;
                continue;
            }
        }
        o[k++] = s[i++];
    }
    return k;
}

static int is_space_at(const char *s, size_t n, size_t i, int *len)
{
    unsigned char c = (unsigned char)s[i];
    if (c < 0x80) {
        *len = 1;
        return c == ' ' || (c >= 0x09 && c <= 0x0D);
    }
    /* decode one code point (invalid bytes: not space) */
    uint32_t cp;
    int l = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
    if (!l || i + (size_t)l > n) {
        *len = 1;
        return 0;
    }
    cp = c & (0x7F >> l);
    for (int k = 1; k < l; k++) {
        unsigned char d = (unsigned char)s[i + k];
        if ((d & 0xC0) != 0x80) {
            *len = 1;
            return 0;
        }
        cp = cp << 6 | (d & 63);
    }
    *len = l;
    return dfm_uni_is_space(cp);
}

char *dfm_prompt_clean(const char *s, size_t n)
{
    char *a = malloc(n + 1), *b = malloc(n + 1);
    if (!a || !b) {
        free(a), free(b);
        return NULL;
    }
    size_t la = unescape(s, n, a);
    size_t lb = unescape(a, la, b); /* basic_clean: html.unescape(html.unescape(text)), then strip */
    /* str.strip() takes what str.isspace() calls space: \s's set plus U+001C..U+001F (only at the
     * ends: the regex below leaves them inside) */
    size_t i0 = lb, end = 0; /* the first and past the last character that is not such space */
    for (size_t i = 0; i < lb;) {
        int l, space = is_space_at(b, lb, i, &l) || (b[i] >= 0x1C && b[i] <= 0x1F);
        if (!space) {
            if (i0 == lb) i0 = i;
            end = i + (size_t)l;
        }
        i += (size_t)l;
    }
    if (i0 == lb) i0 = 0; /* nothing but space: end is 0 */
    /* whitespace_clean: re.sub(r"\s+", " ", text).strip() (the ends are already stripped) */
    size_t k = 0;
    int pending = 0;
    for (size_t i = i0; i < end;) {
        int l;
        if (is_space_at(b, end, i, &l)) {
            pending = 1;
            i += (size_t)l;
            continue;
        }
        if (pending && k) a[k++] = ' ';
        pending = 0;
        memcpy(a + k, b + i, (size_t)l);
        k += (size_t)l, i += (size_t)l;
    }
    a[k] = 0;
    free(b);
    return a;
}
