/* charsmap.c — precompiled charsmap normalizer; see charsmap.h.
 * ref: spm_precompiled lib.rs (DoubleArray::common_prefix_search, Precompiled::transform),
 * tokenizers normalizers/precompiled.rs (Precompiled::normalize). */
#include "text/charsmap.h"
#include "base/error.h"
#include "base/utf8.h"
#include "text/grapheme.h"

#include <stdlib.h>
#include <string.h>

static inline uint32_t unit_offset(uint32_t u) { return (u >> 10) << ((u & (1u << 9)) >> 6); }
static inline uint32_t unit_label(uint32_t u) { return u & (0x80000000u | 0xFFu); }
static inline int unit_has_leaf(uint32_t u) { return (u >> 8) & 1; }
static inline uint32_t unit_value(uint32_t u) { return u & 0x7FFFFFFFu; }

/* The replacement offset of the first (shortest) prefix of key[0..n) in the trie, or -1. */
static int64_t first_match(const dfm_charsmap *m, const unsigned char *key, size_t n)
{
    if (m->n_units == 0) return -1;
    size_t pos = unit_offset(m->units[0]);
    for (size_t i = 0; i < n; i++) {
        unsigned c = key[i];
        if (c == 0) break;
        pos ^= c;
        if (pos >= m->n_units) return -1;
        uint32_t u = m->units[pos];
        if (unit_label(u) != c) return -1;
        pos ^= unit_offset(u);
        if (unit_has_leaf(u)) {
            if (pos >= m->n_units) return -1;
            uint32_t v = unit_value(m->units[pos]);
            /* A replacement must start inside the blob on a character boundary. */
            if (v > m->blob_len) return -1;
            if (v < m->blob_len && ((unsigned char)m->blob[v] & 0xC0) == 0x80) return -1;
            return v;
        }
    }
    return -1;
}

int dfm_charsmap_init(dfm_charsmap *m, const uint8_t *data, size_t n)
{
    memset(m, 0, sizeof *m);
    if (n < 4) return dfm_fail(DFM_E_FORMAT, "precompiled_charsmap of %zu bytes (needs at least 4)", n);
    uint32_t trie_size = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 |
                         (uint32_t)data[3] << 24;
    size_t n_units = trie_size / 4;
    if (n_units > (n - 4) / 4)
        return dfm_fail(DFM_E_FORMAT, "precompiled_charsmap: trie of %u bytes in %zu bytes of data",
                        trie_size, n - 4);
    const uint8_t *rest = data + 4 + n_units * 4;
    size_t blob_len = n - 4 - n_units * 4;
    if (!dfm_utf8_check((const char *)rest, blob_len, 1))
        return dfm_fail(DFM_E_FORMAT, "precompiled_charsmap: replacement strings are not valid UTF-8");
    m->units = dfm_malloc(n_units ? n_units * 4 : 1);
    m->blob = dfm_malloc(blob_len + 1);
    if (!m->units || !m->blob) {
        dfm_charsmap_free(m);
        return DFM_E_NOMEM;
    }
    for (size_t i = 0; i < n_units; i++) {
        const uint8_t *p = data + 4 + 4 * i;
        m->units[i] = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    }
    memcpy(m->blob, rest, blob_len);
    m->blob[blob_len] = 0;
    m->n_units = n_units;
    m->blob_len = blob_len;
    for (int c = 0; c < 128; c++) {
        unsigned char k = (unsigned char)c;
        m->ascii[c] = (int32_t)first_match(m, &k, 1);
    }
    return 0;
}

void dfm_charsmap_free(dfm_charsmap *m)
{
    free(m->units);
    free(m->blob);
    memset(m, 0, sizeof *m);
}

static int append_repl(const dfm_charsmap *m, int64_t v, dfm_buf *out)
{
    const char *r = m->blob + v;
    size_t len = strnlen(r, m->blob_len - (size_t)v);
    return dfm_buf_append(out, r, len);
}

int dfm_charsmap_normalize(const dfm_charsmap *m, const char *s, size_t n, dfm_buf *out)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t pos = 0;
    int rc = dfm_buf_reserve(out, n + n / 4 + 16);
    if (rc) return rc;
    while (pos < n) {
        size_t glen = dfm_grapheme_len(s + pos, n - pos);
        if (glen == 1 && p[pos] < 0x80) {
            int32_t v = m->ascii[p[pos]];
            rc = v >= 0 ? append_repl(m, v, out) : dfm_buf_append(out, s + pos, 1);
            if (rc) return rc;
            pos++;
            continue;
        }
        if (glen < 6) {
            int64_t v = first_match(m, p + pos, glen);
            if (v >= 0) {
                if ((rc = append_repl(m, v, out))) return rc;
                pos += glen;
                continue;
            }
        }
        size_t end = pos + glen;
        while (pos < end) {
            size_t k = (size_t)dfm_u8_len(p[pos]);
            int64_t v = first_match(m, p + pos, k);
            rc = v >= 0 ? append_repl(m, v, out) : dfm_buf_append(out, s + pos, k);
            if (rc) return rc;
            pos += k;
        }
    }
    return 0;
}
