/* unigram.h — the SentencePiece Unigram model as Hugging Face tokenizers runs it
 * (models/unigram/model.rs, Unigram::encode_optimized): Viterbi over a byte trie of every piece,
 * f64 scores, unknown characters scored min_score - 10 and fused into one token.
 *
 * Pieces map to ids through a hash map in which a duplicated piece resolves to its last id (as
 * the AHashMap HF fills in order); the trie gives the same id. No sampling, no n-best.
 */
#ifndef DFM_TEXT_UNIGRAM_H
#define DFM_TEXT_UNIGRAM_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int32_t n;          /* pieces */
    int32_t cap;
    uint32_t *off;      /* piece i is the NUL-terminated pool + off[i], length off[i+1] - off[i] - 1 */
    char *pool;
    size_t pool_len, pool_cap;
    double *score;
    double min_score;
    int32_t unk_id;     /* -1: none (an unknown character is then an error) */
    int byte_fallback;
    int32_t byte_ids[256]; /* byte_fallback: id of "<0xNN>", -1 if absent */
    /* piece -> id: open addressing, slots hold id + 1 (0 = empty) */
    uint32_t *hslot;
    uint32_t hmask;
    /* trie: edge hash, slots ((node << 8 | byte) + 1) << 32 | child; leaf[node] = id or -1 */
    uint64_t *edge;
    uint32_t emask, n_nodes, nodes_cap;
    int32_t *leaf;
} dfm_unigram;

/* Build: add every piece in id order, then finish. */
void dfm_unigram_init(dfm_unigram *u);
int dfm_unigram_add(dfm_unigram *u, const char *piece, size_t len, double score);
/* unk_id: -1 for none, else must be < n. Builds the map and the trie. */
int dfm_unigram_finish(dfm_unigram *u, int32_t unk_id, int byte_fallback);
void dfm_unigram_free(dfm_unigram *u);

/* The id of a piece, -1 if absent. */
int32_t dfm_unigram_id(const dfm_unigram *u, const char *piece, size_t len);
/* Piece id as a NUL-terminated string (owned by u); NULL if out of range. */
const char *dfm_unigram_piece(const dfm_unigram *u, int32_t id);
/* The id of the longest piece that is a prefix of s[0..n), its byte length in *len; -1 if none.
 * (Also used on its own as a dictionary of added tokens.) */
int32_t dfm_unigram_longest_prefix(const dfm_unigram *u, const char *s, size_t n, size_t *len);

/* Scratch space for dfm_unigram_encode (one per thread; zero-initialize, free with _free). */
typedef struct {
    double *score;
    int32_t *start, *id;
    int32_t *tok; /* backtracking: (start, end, id) triples */
    size_t cap;
} dfm_unigram_scratch;
void dfm_unigram_scratch_free(dfm_unigram_scratch *w);

/* Segment s[0..n) (valid UTF-8, n > 0) and append the ids to *ids (a malloc'd array of *n_ids
 * entries with room for *cap; grown as needed). DFM_E_FORMAT if a character is unknown and the
 * model has no unk_id. */
int dfm_unigram_encode(const dfm_unigram *u, dfm_unigram_scratch *w, const char *s, size_t n,
                       int32_t **ids, size_t *n_ids, size_t *cap);

#endif
