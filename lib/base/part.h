/* part.h — `--part K/N`: the share of a data-preparation run that one of N processes takes, so
 * that N copies of a pipeline, each with its own part, together produce exactly the samples of
 * one run (DESIGN.md §7).
 *
 * Part K of N takes the items K, K+N, K+2N, ... of a list in a fixed order: K counts from 0
 * (`--part 0/4` ... `--part 3/4`). What the list is belongs to each program: dfm-decode's media
 * files in walk order, a stream filter's input samples by position (stream_map.h). "auto" asks
 * the launcher (rank and size; 0/1 without one): the caller looks the launcher up
 * (lib/dist/dist.h dfm_dist_launcher) and hands the numbers to dfm_part_auto, so this module
 * reads no environment and stays in lib/base.
 *
 * Not here: which programs select under "auto" and which only name their output (each program's
 * man page; docs/scaling.md), the shard series of a part (io/shard.h dfm_shard_part_pattern).
 */
#ifndef DFM_BASE_PART_H
#define DFM_BASE_PART_H
#include <stddef.h>
#include <stdint.h>

/* The largest N accepted. */
#define DFM_PART_MAX 1000000

typedef struct {
    int k, n;    /* part k of n, 0 <= k < n; n = 0 (a zeroed struct) means the whole, as 0/1 */
    int is_auto; /* given as "auto": k and n come from dfm_part_auto */
} dfm_part;

/* "K/N" (decimal, 0 <= K < N <= DFM_PART_MAX) or "auto" (k = 0, n = 1 and is_auto set until
 * dfm_part_auto). 0, or DFM_E_ARG with the reason recorded, naming s ("'4/4': K counts from 0
 * and must be below N (the parts of 4 are 0/4 ... 3/4)"). */
int dfm_part_parse(const char *s, dfm_part *p);
/* The launcher's rank and size into an "auto" part: size <= 0 (no launcher) gives 0/1.
 * 0, or DFM_E_ARG when rank is outside [0, size) or size > DFM_PART_MAX. */
int dfm_part_auto(dfm_part *p, int rank, int size);
/* Whether item i (0-based position in the program's list) belongs to part p: i mod n == k.
 * Every item belongs to exactly one of the parts 0/N ... N-1/N. */
static inline int dfm_part_takes(const dfm_part *p, uint64_t i)
{
    return p->n <= 1 || i % (uint64_t)p->n == (uint64_t)p->k;
}
/* 1 when p splits (n > 1), else 0. */
static inline int dfm_part_split(const dfm_part *p) { return p->n > 1; }
/* "part-00002-of-00008" (five digits at least, more when N needs them) into out (n bytes).
 * Returns the length, or DFM_E_ARG when it does not fit. */
int dfm_part_name(const dfm_part *p, char *out, size_t n);
/* Whether name is one dfm_part_name writes ("part-00002-of-00008", nothing after it; at least
 * five digits each, K < N): 1 with p filled in, else 0 (nothing recorded). */
int dfm_part_from_name(const char *name, dfm_part *p);

#endif
