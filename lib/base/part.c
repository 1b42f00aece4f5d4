/* part.c — `--part K/N` parsing, the launcher's part, part names (see part.h). */
#include "base/part.h"
#include "base/error.h"

#include <stdio.h>
#include <string.h>

/* A plain decimal number: digits only (no sign, no spaces), at most DFM_PART_MAX. */
static int number(const char *s, size_t len, long *v)
{
    if (len == 0 || len > 9) return 0;
    long x = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        x = x * 10 + (s[i] - '0');
    }
    *v = x;
    return 1;
}

int dfm_part_parse(const char *s, dfm_part *p)
{
    *p = (dfm_part){0, 1, 0};
    if (!strcmp(s, "auto")) {
        p->is_auto = 1;
        return 0;
    }
    const char *slash = strchr(s, '/');
    long k, n;
    if (!slash || !number(s, (size_t)(slash - s), &k) || !number(slash + 1, strlen(slash + 1), &n))
        return dfm_fail(DFM_E_ARG, "'%s' is not K/N or auto (K counts from 0: --part 0/4 ... --part 3/4)", s);
    if (n < 1) return dfm_fail(DFM_E_ARG, "'%s': N, the number of parts, must be at least 1", s);
    if (n > DFM_PART_MAX)
        return dfm_fail(DFM_E_ARG, "'%s': at most %d parts", s, DFM_PART_MAX);
    if (k >= n)
        return dfm_fail(DFM_E_ARG, "'%s': K counts from 0 and must be below N (the parts of %ld are "
                        "0/%ld ... %ld/%ld)", s, n, n, n - 1, n);
    p->k = (int)k, p->n = (int)n;
    return 0;
}

int dfm_part_auto(dfm_part *p, int rank, int size)
{
    if (size <= 0) size = 1, rank = 0;
    if (size > DFM_PART_MAX) return dfm_fail(DFM_E_ARG, "the launcher's size %d is over %d parts", size, DFM_PART_MAX);
    if (rank < 0 || rank >= size)
        return dfm_fail(DFM_E_ARG, "the launcher's rank %d is outside 0 .. %d", rank, size - 1);
    p->k = rank, p->n = size, p->is_auto = 1;
    return 0;
}

int dfm_part_name(const dfm_part *p, char *out, size_t n)
{
    int k = p->n > 0 ? p->k : 0, parts = p->n > 0 ? p->n : 1;
    int len = snprintf(out, n, "part-%05d-of-%05d", k, parts);
    if (len < 0 || (size_t)len >= n) return dfm_fail(DFM_E_ARG, "part name too long for its buffer");
    return len;
}

int dfm_part_from_name(const char *name, dfm_part *p)
{
    if (strncmp(name, "part-", 5)) return 0;
    const char *a = name + 5, *of = strstr(a, "-of-");
    long k, n;
    if (!of || of - a < 5 || strlen(of + 4) < 5 || !number(a, (size_t)(of - a), &k) ||
        !number(of + 4, strlen(of + 4), &n) || n < 1 || n > DFM_PART_MAX || k >= n)
        return 0;
    /* the canonical spelling only: part-00002-of-00008, not part-000002-of-08 */
    char canon[64];
    dfm_part q = {(int)k, (int)n, 0};
    if (dfm_part_name(&q, canon, sizeof canon) < 0 || strcmp(canon, name)) return 0;
    *p = q;
    return 1;
}
