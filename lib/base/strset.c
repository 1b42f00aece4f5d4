/* strset.c — string set (see strset.h). */
#include "base/strset.h"
#include "base/buf.h"
#include "base/error.h"

#include <stdlib.h>
#include <string.h>

uint64_t dfm_hash_fnv1a(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

static size_t slot_of(char **slots, size_t cap, const char *s)
{
    size_t i = (size_t)dfm_hash_fnv1a(s, strlen(s)) & (cap - 1);
    while (slots[i] && strcmp(slots[i], s)) i = (i + 1) & (cap - 1);
    return i;
}

int dfm_strset_has(const dfm_strset *set, const char *s)
{
    return set->cap && set->slots[slot_of(set->slots, set->cap, s)] != NULL;
}

int dfm_strset_add(dfm_strset *set, const char *s)
{
    if ((set->n + 1) * 2 > set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 64;
        char **slots = dfm_calloc(cap, sizeof *slots);
        if (!slots) return DFM_E_NOMEM;
        for (size_t i = 0; i < set->cap; i++)
            if (set->slots[i]) slots[slot_of(slots, cap, set->slots[i])] = set->slots[i];
        free(set->slots);
        set->slots = slots;
        set->cap = cap;
    }
    size_t i = slot_of(set->slots, set->cap, s);
    if (set->slots[i]) return 0;
    if (!(set->slots[i] = dfm_strdup(s))) return DFM_E_NOMEM;
    set->n++;
    return 1;
}

void dfm_strset_free(dfm_strset *set)
{
    for (size_t i = 0; i < set->cap; i++) free(set->slots[i]);
    free(set->slots);
    memset(set, 0, sizeof *set);
}
