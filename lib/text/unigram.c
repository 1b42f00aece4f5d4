/* unigram.c — Unigram Viterbi segmentation; see unigram.h.
 * ref: tokenizers models/unigram/model.rs (Unigram::from, encode_optimized, tokenize),
 * models/unigram/trie.rs (common_prefix_search). */
#include "text/unigram.h"
#include "base/buf.h"
#include "base/error.h"
#include "text/grapheme.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define UNK_PENALTY 10.0
#define PLEN(u, i) ((size_t)((u)->off[(i) + 1] - (u)->off[i] - 1)) /* the pool has a NUL after each piece */
#define MAX_NODES ((1u << 24) - 1)

void dfm_unigram_init(dfm_unigram *u)
{
    memset(u, 0, sizeof *u);
    u->unk_id = -1;
}

void dfm_unigram_free(dfm_unigram *u)
{
    free(u->off);
    free(u->pool);
    free(u->score);
    free(u->hslot);
    free(u->edge);
    free(u->leaf);
    dfm_unigram_init(u);
}

int dfm_unigram_add(dfm_unigram *u, const char *piece, size_t len, double score)
{
    if (u->n == INT32_MAX - 1) return dfm_fail(DFM_E_LIMIT, "more than 2^31 pieces");
    if (u->n + 1 >= u->cap) {
        int32_t cap = u->cap ? u->cap * 2 : 1024;
        uint32_t *off = dfm_realloc(u->off, (size_t)(cap + 1) * sizeof *off);
        if (!off) return DFM_E_NOMEM;
        u->off = off;
        double *sc = dfm_realloc(u->score, (size_t)cap * sizeof *sc);
        if (!sc) return DFM_E_NOMEM;
        u->score = sc;
        u->cap = cap;
    }
    if (len > UINT32_MAX - 2 - u->pool_len) return dfm_fail(DFM_E_LIMIT, "pieces over 4 GiB in all");
    if (u->pool_len + len + 2 > u->pool_cap) {
        size_t cap = u->pool_cap ? u->pool_cap * 2 : 1 << 16;
        while (cap < u->pool_len + len + 2) cap *= 2;
        char *p = dfm_realloc(u->pool, cap);
        if (!p) return DFM_E_NOMEM;
        u->pool = p;
        u->pool_cap = cap;
    }
    if (u->n == 0) u->off[0] = 0;
    memcpy(u->pool + u->pool_len, piece, len);
    u->pool[u->pool_len + len] = 0;
    u->pool_len += len + 1;
    u->off[u->n + 1] = (uint32_t)u->pool_len;
    u->score[u->n] = score;
    u->n++;
    return 0;
}

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

int32_t dfm_unigram_id(const dfm_unigram *u, const char *piece, size_t len)
{
    if (!u->hslot) return -1;
    for (uint32_t i = (uint32_t)hash_bytes(piece, len) & u->hmask;; i = (i + 1) & u->hmask) {
        uint32_t v = u->hslot[i];
        if (!v) return -1;
        uint32_t id = v - 1;
        if (PLEN(u, id) == len && !memcmp(u->pool + u->off[id], piece, len)) return (int32_t)id;
    }
}

/* Fibonacci hashing: the top bits of the product (mask + 1 is a power of two). */
static inline uint32_t edge_slot(uint32_t key, uint32_t mask)
{
    return (uint32_t)(((uint64_t)key * 0x9E3779B97F4A7C15ull) >> (64 - __builtin_popcount(mask))) & mask;
}

/* Child of node by byte, or 0 (the root is never a child). A slot is key << 32 | child. */
static inline uint32_t edge_find(const dfm_unigram *u, uint32_t node, unsigned char b)
{
    uint32_t key = (node << 8 | b) + 1;
    for (uint32_t i = edge_slot(key, u->emask);; i = (i + 1) & u->emask) {
        uint64_t e = u->edge[i];
        if ((uint32_t)(e >> 32) == key) return (uint32_t)e;
        if (!e) return 0;
    }
}

/* Zeroed memory for a big random-access table, on transparent huge pages where the kernel
 * offers them (the edge table of a 256k vocabulary is tens of MB: TLB misses dominate). */
static void *table_alloc(size_t bytes)
{
    if (bytes < ((size_t)4 << 20)) return calloc(1, bytes);
    void *p = NULL;
    bytes = (bytes + ((size_t)2 << 20) - 1) & ~(((size_t)2 << 20) - 1);
    if (posix_memalign(&p, (size_t)2 << 20, bytes)) return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, bytes, MADV_HUGEPAGE);
#endif
    memset(p, 0, bytes);
    return p;
}

static int edge_grow(dfm_unigram *u, uint32_t cap)
{
    uint64_t *e = table_alloc((size_t)cap * sizeof *e);
    if (!e) return dfm_fail(DFM_E_NOMEM, "out of memory");
    if (u->edge) {
        for (uint32_t i = 0; i <= u->emask; i++) {
            if (!u->edge[i]) continue;
            uint32_t j = edge_slot((uint32_t)(u->edge[i] >> 32), cap - 1);
            while (e[j]) j = (j + 1) & (cap - 1);
            e[j] = u->edge[i];
        }
    }
    free(u->edge);
    u->edge = e;
    u->emask = cap - 1;
    return 0;
}

int dfm_unigram_finish(dfm_unigram *u, int32_t unk_id, int byte_fallback)
{
    if (unk_id >= 0 && u->n == 0) return dfm_fail(DFM_E_FORMAT, "the vocabulary is empty but has an unk_id");
    if (unk_id >= u->n) return dfm_fail(DFM_E_FORMAT, "unk_id %d is not below the vocabulary size %d", unk_id, u->n);
    u->unk_id = unk_id < 0 ? -1 : unk_id;
    u->byte_fallback = byte_fallback;
    u->min_score = INFINITY;
    for (int32_t i = 0; i < u->n; i++)
        if (u->score[i] < u->min_score) u->min_score = u->score[i];
    /* piece -> last id */
    uint32_t hcap = 16;
    while (hcap < 2 * (uint32_t)u->n + 2) hcap *= 2;
    u->hslot = calloc(hcap, sizeof *u->hslot);
    if (!u->hslot) return dfm_fail(DFM_E_NOMEM, "out of memory");
    u->hmask = hcap - 1;
    for (int32_t id = 0; id < u->n; id++) {
        const char *p = u->pool + u->off[id];
        size_t len = PLEN(u, id);
        uint32_t i = (uint32_t)hash_bytes(p, len) & u->hmask;
        for (;; i = (i + 1) & u->hmask) {
            uint32_t v = u->hslot[i];
            if (!v) break;
            uint32_t o = v - 1;
            if (PLEN(u, o) == len && !memcmp(u->pool + u->off[o], p, len)) break;
        }
        u->hslot[i] = (uint32_t)id + 1;
    }
    /* byte trie of every piece; a duplicate's leaf is its last id, as in the map. The edge table
     * starts as large as the bytes of all pieces (an upper bound of the edges: no rehash for a
     * real vocabulary) up to 2^22 slots (32 MiB); past that it grows with the edges actually
     * made, so a million pieces sharing a prefix (T5 sentinels) cost what their trie needs. */
    uint32_t ecap = 1024;
    while (ecap < (u->pool_len - (size_t)u->n) && ecap < (1u << 22)) ecap *= 2;
    int rc = edge_grow(u, ecap);
    if (rc) return rc;
    u->nodes_cap = 1024;
    u->leaf = malloc(u->nodes_cap * sizeof *u->leaf);
    if (!u->leaf) return dfm_fail(DFM_E_NOMEM, "out of memory");
    u->leaf[0] = -1;
    u->n_nodes = 1;
    uint32_t n_edges = 0;
    for (int32_t id = 0; id < u->n; id++) {
        const unsigned char *p = (const unsigned char *)u->pool + u->off[id];
        size_t len = PLEN(u, id);
        uint32_t node = 0;
        for (size_t i = 0; i < len; i++) {
            uint32_t child = edge_find(u, node, p[i]);
            if (!child) {
                if (u->n_nodes >= MAX_NODES) return dfm_fail(DFM_E_LIMIT, "vocabulary trie over 2^24 nodes");
                if ((n_edges + 1) * 10 > (u->emask + 1) * 7 && (rc = edge_grow(u, (u->emask + 1) * 2)))
                    return rc;
                if (u->n_nodes == u->nodes_cap) {
                    int32_t *l = dfm_realloc(u->leaf, (size_t)u->nodes_cap * 2 * sizeof *l);
                    if (!l) return DFM_E_NOMEM;
                    u->leaf = l;
                    u->nodes_cap *= 2;
                }
                child = u->n_nodes++;
                u->leaf[child] = -1;
                uint32_t key = (node << 8 | p[i]) + 1;
                uint32_t j = edge_slot(key, u->emask);
                while (u->edge[j]) j = (j + 1) & u->emask;
                u->edge[j] = (uint64_t)key << 32 | child;
                n_edges++;
            }
            node = child;
        }
        u->leaf[node] = id;
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        u->byte_ids[b] = dfm_unigram_id(u, name, 6);
    }
    return 0;
}

const char *dfm_unigram_piece(const dfm_unigram *u, int32_t id)
{
    return id >= 0 && id < u->n ? u->pool + u->off[id] : NULL;
}

int32_t dfm_unigram_longest_prefix(const dfm_unigram *u, const char *s, size_t n, size_t *len)
{
    int32_t best = -1;
    uint32_t node = 0;
    if (!u->edge) return -1;
    for (size_t i = 0; i < n; i++) {
        node = edge_find(u, node, (unsigned char)s[i]);
        if (!node) break;
        if (u->leaf[node] >= 0) {
            best = u->leaf[node];
            *len = i + 1;
        }
    }
    return best;
}

void dfm_unigram_scratch_free(dfm_unigram_scratch *w)
{
    free(w->score);
    free(w->start);
    free(w->id);
    free(w->tok);
    memset(w, 0, sizeof *w);
}

static int push_id(int32_t **ids, size_t *n_ids, size_t *cap, int32_t id)
{
    if (*n_ids == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        int32_t *p = dfm_realloc(*ids, c * sizeof *p);
        if (!p) return DFM_E_NOMEM;
        *ids = p;
        *cap = c;
    }
    (*ids)[(*n_ids)++] = id;
    return 0;
}

/* The ids of one output token s[a..b) that is a run of unknown nodes (HF: the fused string is
 * looked up in the vocabulary, then byte fallback, then unk). */
static int push_unknown(const dfm_unigram *u, const char *s, size_t a, size_t b, int32_t **ids,
                        size_t *n_ids, size_t *cap)
{
    int32_t id = dfm_unigram_id(u, s + a, b - a);
    if (id >= 0) return push_id(ids, n_ids, cap, id);
    if (u->byte_fallback) {
        size_t i;
        for (i = a; i < b && u->byte_ids[(unsigned char)s[i]] >= 0; i++) {}
        if (i == b) {
            for (i = a; i < b; i++) {
                int rc = push_id(ids, n_ids, cap, u->byte_ids[(unsigned char)s[i]]);
                if (rc) return rc;
            }
            return 0;
        }
    }
    return push_id(ids, n_ids, cap, u->unk_id);
}

int dfm_unigram_encode(const dfm_unigram *u, dfm_unigram_scratch *w, const char *s, size_t n,
                       int32_t **ids, size_t *n_ids, size_t *cap)
{
    if (n + 1 > w->cap) {
        size_t c = w->cap ? w->cap : 256;
        while (c < n + 1) c *= 2;
        dfm_unigram_scratch_free(w);
        w->score = malloc(c * sizeof *w->score);
        w->start = malloc(c * sizeof *w->start);
        w->id = malloc(c * sizeof *w->id);
        w->tok = malloc(c * 3 * sizeof *w->tok);
        if (!w->score || !w->start || !w->id || !w->tok) {
            dfm_unigram_scratch_free(w);
            return dfm_fail(DFM_E_NOMEM, "out of memory");
        }
        w->cap = c;
    }
    if (n > INT32_MAX) return dfm_fail(DFM_E_LIMIT, "pre-token of %zu bytes", n);
    const unsigned char *p = (const unsigned char *)s;
    double *best = w->score;
    int32_t *start = w->start, *bid = w->id;
    for (size_t i = 0; i <= n; i++) start[i] = -1;
    best[0] = 0.0;
    const double unk_score = u->min_score - UNK_PENALTY;
    for (size_t pos = 0; pos < n;) {
        size_t mblen = (size_t)dfm_u8_len(p[pos]);
        double base = best[pos];
        int single = 0;
        uint32_t node = 0;
        for (size_t i = pos; i < n; i++) {
            node = edge_find(u, node, p[i]);
            if (!node) break;
            int32_t id = u->leaf[node];
            if (id < 0) continue;
            size_t end = i + 1;
            double cand = base + u->score[id];
            if (start[end] < 0 || cand > best[end]) {
                best[end] = cand;
                start[end] = (int32_t)pos;
                bid[end] = id;
            }
            if (end - pos == mblen) single = 1;
        }
        if (!single) {
            size_t end = pos + mblen;
            double cand = base + unk_score;
            if (start[end] < 0 || cand > best[end]) {
                if (u->unk_id < 0)
                    return dfm_fail(DFM_E_FORMAT, "unknown character and the model has no unk_id");
                best[end] = cand;
                start[end] = (int32_t)pos;
                bid[end] = u->unk_id;
            }
        }
        pos += mblen;
    }
    /* backtrack into (start, end, id) triples, last token first */
    int32_t *tok = w->tok;
    size_t nt = 0;
    for (size_t end = n; end > 0;) {
        size_t a = (size_t)start[end];
        tok[3 * nt] = (int32_t)a;
        tok[3 * nt + 1] = (int32_t)end;
        tok[3 * nt + 2] = bid[end];
        nt++;
        end = a;
    }
    for (size_t k = nt; k > 0;) {
        k--;
        int32_t a = tok[3 * k], b = tok[3 * k + 1], id = tok[3 * k + 2];
        int rc;
        if (id == u->unk_id) {
            /* fuse the run of unknown nodes */
            while (k > 0 && tok[3 * (k - 1) + 2] == u->unk_id) {
                k--;
                b = tok[3 * k + 1];
            }
            rc = push_unknown(u, s, (size_t)a, (size_t)b, ids, n_ids, cap);
        } else {
            rc = push_id(ids, n_ids, cap, id);
        }
        if (rc) return rc;
    }
    return 0;
}
