/* strset.h — a set of strings (open addressing, FNV-1a). Used to keep sample keys unique and
 * to encode identical captions once. Not a general map. */
#ifndef DFM_BASE_STRSET_H
#define DFM_BASE_STRSET_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char **slots;
    size_t cap, n;
} dfm_strset;

uint64_t dfm_hash_fnv1a(const void *p, size_t n);
/* Adds s (copied). Returns 1 if added, 0 if already present, < 0 on out of memory. */
int dfm_strset_add(dfm_strset *set, const char *s);
int dfm_strset_has(const dfm_strset *set, const char *s);
void dfm_strset_free(dfm_strset *set);

#endif
