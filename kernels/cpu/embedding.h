/* embedding.h — row gathers on the CPU (twins of kernels/cuda embedding.cu): token embeddings
 * and the relative position bias of T5-family attention. Index vectors are host arrays that
 * the dispatch (lib/tensor/ops.c) has already checked against the table's rows. */
#ifndef DFM_KERNELS_CPU_EMBEDDING_H
#define DFM_KERNELS_CPU_EMBEDDING_H
#include <stdint.h>
#include "base/dtype.h"

/* out[i, :] = table[ids[i], :] as f32. table: [rows, d] of dtype dt (F32/BF16/F16); ids: n
 * values in [0, rows); out: [n, d]. Returns 0 or DFM_E_UNSUPPORTED (dtype).
 * ref: torch.nn.Embedding */
int dfm_cpu_embedding(const void *table, dfm_dtype dt, int64_t d, const int32_t *ids, int64_t n,
                      float *out);

/* out[h, i, j] = table[buckets[j - i + sq - 1], h] as f32. table: [nb, heads] of dtype dt;
 * buckets: sq + sk - 1 values in [0, nb) for the relative positions j - i = 1 - sq .. sk - 1;
 * out: [heads, sq, sk]. Returns 0, DFM_E_NOMEM or DFM_E_UNSUPPORTED (dtype).
 * ref: transformers UMT5Attention.compute_bias (after _relative_position_bucket) */
int dfm_cpu_rel_bias(const void *table, dfm_dtype dt, int64_t nb, int64_t heads, const int32_t *buckets,
                     int64_t sq, int64_t sk, float *out);

#endif
