/* embedding.c — row gathers (embedding.h): plain copies with a dtype conversion, threaded over
 * output rows. Not here: range checks (the dispatch does them), backward (scatter-add). */
#include "cpu/embedding.h"
#include "base/error.h"
#include "cpu/cpu.h"

#include <string.h>

typedef struct {
    const char *table;
    dfm_dtype dt;
    int64_t d;
    const int32_t *ids;
    float *out;
    int err;
} emb_ctx;

static void emb_range(void *arg, int64_t i0, int64_t i1)
{
    emb_ctx *c = arg;
    size_t row = (size_t)c->d * dfm_dtype_size(c->dt);
    for (int64_t i = i0; i < i1; i++)
        if (dfm_cpu_to_f32(c->out + i * c->d, c->table + (size_t)c->ids[i] * row, c->dt, (size_t)c->d, 0) < 0)
            c->err = 1;
}

int dfm_cpu_embedding(const void *table, dfm_dtype dt, int64_t d, const int32_t *ids, int64_t n,
                      float *out)
{
    if (n <= 0 || d <= 0) return 0;
    emb_ctx c = {table, dt, d, ids, out, 0};
    dfm_cpu_parallel(n, 1 + 16384 / d, emb_range, &c);
    return c.err ? dfm_fail(DFM_E_UNSUPPORTED, "embedding: cannot convert %s", dfm_dtype_name(dt)) : 0;
}

typedef struct {
    const float *table; /* [nb, heads] f32 */
    int64_t heads, sq, sk;
    const int32_t *buckets;
    float *out;
} rel_ctx;

/* rows r = h * sq + i of out */
static void rel_range(void *arg, int64_t r0, int64_t r1)
{
    rel_ctx *c = arg;
    for (int64_t r = r0; r < r1; r++) {
        int64_t h = r / c->sq, i = r % c->sq;
        const int32_t *b = c->buckets + (c->sq - 1 - i); /* b[j] = bucket of j - i */
        float *o = c->out + r * c->sk;
        for (int64_t j = 0; j < c->sk; j++) o[j] = c->table[(int64_t)b[j] * c->heads + h];
    }
}

int dfm_cpu_rel_bias(const void *table, dfm_dtype dt, int64_t nb, int64_t heads, const int32_t *buckets,
                     int64_t sq, int64_t sk, float *out)
{
    if (heads <= 0 || sq <= 0 || sk <= 0) return 0;
    float *t = dfm_cpu_scratch(0, (size_t)(nb * heads) * sizeof(float));
    if (!t) return dfm_fail(DFM_E_NOMEM, "rel_bias: out of memory for scratch");
    int rc = dfm_cpu_to_f32(t, table, dt, (size_t)(nb * heads), 0);
    if (rc < 0) return rc;
    rel_ctx c = {t, heads, sq, sk, buckets, out};
    dfm_cpu_parallel(heads * sq, 1 + 32768 / sk, rel_range, &c);
    return 0;
}
