/* grapheme.c — extended grapheme clusters, White_Space and \w; see grapheme.h.
 * The cluster scan mirrors unicode-segmentation's pair table (check_pair) and its three
 * look-behind rules (GB9c conjuncts, GB11 emoji ZWJ sequences, GB12/13 regional indicators),
 * tracked forwards from the start of the cluster: every look-behind those rules make runs over
 * characters that never start a cluster except after a break, so the cluster start is enough.
 */
#include "text/grapheme.h"

#include "text/unicode_tables.h"

static unsigned gb_prop(uint32_t c)
{
    if (c < 0x7F) return c >= 0x20 ? DFM_GB_ANY : c == '\n' ? DFM_GB_LF : c == '\r' ? DFM_GB_CR : DFM_GB_CONTROL;
    size_t lo = 0, hi = sizeof dfm_gb_ranges / sizeof dfm_gb_ranges[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < dfm_gb_ranges[mid].lo) hi = mid;
        else if (c > dfm_gb_ranges[mid].hi) lo = mid + 1;
        else return dfm_gb_ranges[mid].v;
    }
    return DFM_GB_ANY;
}

/* State carried from the start of the cluster to the position before the next code point. */
typedef struct {
    unsigned prev;   /* category of the previous code point */
    unsigned ris;    /* regional indicators ending at prev */
    unsigned emoji;  /* 1: ExtPict Extend* ends at prev; 2: ExtPict Extend* ZWJ ends at prev */
    unsigned linkers; /* InCB=Linker since the last code point that is neither Linker nor Extend */
    unsigned cons;   /* that code point was InCB=Consonant */
} gb_state;

static void gb_update(gb_state *st, unsigned v)
{
    unsigned cat = v & 0x0F;
    st->prev = cat;
    st->ris = cat == DFM_GB_RI ? st->ris + 1 : 0;
    if (cat == DFM_GB_EXTPICT) st->emoji = 1;
    else if (cat == DFM_GB_EXTEND && st->emoji == 1) st->emoji = 1;
    else if (cat == DFM_GB_ZWJ && st->emoji == 1) st->emoji = 2;
    else st->emoji = 0;
    if (v & DFM_GB_INCB_LINKER) st->linkers++;
    else if (!(v & DFM_GB_INCB_EXTEND)) {
        st->linkers = 0;
        st->cons = cat == DFM_GB_INCB_CONSONANT;
    }
}

/* ref: unicode-segmentation grapheme.rs check_pair and the handle_* look-behinds. */
static int gb_break(const gb_state *st, unsigned cat)
{
    unsigned b = st->prev;
    if (b == DFM_GB_CR && cat == DFM_GB_LF) return 0;                                   /* GB3 */
    if (b == DFM_GB_CONTROL || b == DFM_GB_CR || b == DFM_GB_LF) return 1;              /* GB4 */
    if (cat == DFM_GB_CONTROL || cat == DFM_GB_CR || cat == DFM_GB_LF) return 1;        /* GB5 */
    if (b == DFM_GB_L && (cat == DFM_GB_L || cat == DFM_GB_V || cat == DFM_GB_LV || cat == DFM_GB_LVT))
        return 0;                                                                       /* GB6 */
    if ((b == DFM_GB_LV || b == DFM_GB_V) && (cat == DFM_GB_V || cat == DFM_GB_T)) return 0; /* GB7 */
    if ((b == DFM_GB_LVT || b == DFM_GB_T) && cat == DFM_GB_T) return 0;                /* GB8 */
    if (cat == DFM_GB_EXTEND || cat == DFM_GB_ZWJ) return 0;                            /* GB9 */
    if (cat == DFM_GB_SPACINGMARK) return 0;                                            /* GB9a */
    if (b == DFM_GB_PREPEND) return 0;                                                  /* GB9b */
    if (cat == DFM_GB_INCB_CONSONANT) return !(st->linkers > 0 && st->cons);            /* GB9c */
    if (b == DFM_GB_ZWJ && cat == DFM_GB_EXTPICT) return st->emoji != 2;                /* GB11 */
    if (b == DFM_GB_RI && cat == DFM_GB_RI) return st->ris % 2 == 0;                    /* GB12/13 */
    return 1;                                                                           /* GB999 */
}

size_t dfm_grapheme_len(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    /* ASCII other than CR followed by ASCII (or the end): always a cluster of its own. */
    if (p[0] < 0x80 && p[0] != '\r' && (n == 1 || p[1] < 0x80)) return 1;
    uint32_t cp;
    size_t pos = (size_t)dfm_u8_decode(p, &cp);
    gb_state st = {0};
    gb_update(&st, gb_prop(cp));
    while (pos < n) {
        int k = dfm_u8_decode(p + pos, &cp);
        unsigned v = gb_prop(cp);
        if (gb_break(&st, v & 0x0F)) break;
        gb_update(&st, v);
        pos += (size_t)k;
    }
    return pos;
}

int dfm_uni_is_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

int dfm_uni_is_word(uint32_t c)
{
    size_t lo = 0, hi = sizeof dfm_word_ranges / sizeof dfm_word_ranges[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < dfm_word_ranges[mid].lo) hi = mid;
        else if (c > dfm_word_ranges[mid].hi) lo = mid + 1;
        else return 1;
    }
    return 0;
}
