// embedding.cu — row gathers on the device: the twins of kernels/cpu/embedding.c (token
// embeddings, the T5 relative position bias). The host index vector (already range-checked by
// the dispatch) is copied to scratch slot B first; then one thread per output element.
// ref: torch.nn.Embedding, transformers UMT5Attention.compute_bias
#include "cuda/common.cuh"
#include "cuda/ops_cuda.h"

// ---------------------------------------------------------------------------------------------
// CUDA kernels

#define GRID_STRIDE(i, n)                                                            \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n);       \
         i += (int64_t)gridDim.x * blockDim.x)

__global__ void embedding_kernel(const void *table, int dt, int64_t d, const int32_t *ids, int64_t n,
                                 float *out)
{
    GRID_STRIDE(e, n * d)
    {
        int64_t i = e / d, j = e % d;
        out[e] = dfm_dev_load(table, dt, (int64_t)ids[i] * d + j);
    }
}

// out[h, i, j] = table[buckets[j - i + sq - 1] * heads + h]
__global__ void rel_bias_kernel(const void *table, int dt, int64_t heads, const int32_t *buckets,
                                int64_t sq, int64_t sk, float *out)
{
    GRID_STRIDE(e, heads * sq * sk)
    {
        int64_t j = e % sk, r = e / sk, i = r % sq, h = r / sq;
        out[e] = dfm_dev_load(table, dt, (int64_t)buckets[j - i + sq - 1] * heads + h);
    }
}

// ---------------------------------------------------------------------------------------------
// kernel launchers

static int upload_index(const int32_t *host, int64_t n, int32_t **dev)
{
    void *p;
    DFM_CHECK_RC(dfm_cuda_scratch(DFM_SCRATCH_B, (size_t)n * sizeof(int32_t), &p));
    CUDA_CHECK(cudaMemcpy(p, host, (size_t)n * sizeof(int32_t), cudaMemcpyHostToDevice));
    *dev = (int32_t *)p;
    return 0;
}

extern "C" int dfm_cuda_embedding(const void *table, dfm_dtype dt, int64_t d, const int32_t *ids,
                                  int64_t n, float *out)
{
    if (n <= 0 || d <= 0) return 0;
    int32_t *di;
    DFM_CHECK_RC(upload_index(ids, n, &di));
    embedding_kernel<<<dfm_cuda_blocks(n * d), DFM_CUDA_THREADS>>>(table, (int)dt, d, di, n, out);
    CUDA_CHECK_LAUNCH();
    return 0;
}

extern "C" int dfm_cuda_rel_bias(const void *table, dfm_dtype dt, int64_t nb, int64_t heads,
                                 const int32_t *buckets, int64_t sq, int64_t sk, float *out)
{
    if (heads <= 0 || sq <= 0 || sk <= 0) return 0;
    int32_t *db;
    DFM_CHECK_RC(upload_index(buckets, sq + sk - 1, &db));
    rel_bias_kernel<<<dfm_cuda_blocks(heads * sq * sk), DFM_CUDA_THREADS>>>(table, (int)dt, heads, db, sq,
                                                                             sk, out);
    CUDA_CHECK_LAUNCH();
    return 0;
}
