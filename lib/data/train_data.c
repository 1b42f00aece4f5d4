/* train_data.c — the training loader (see train_data.h): spec resolution, the sample index and
 * buckets, the per-epoch bucket sampler on Philox, batch assembly, and the read-ahead thread.
 * ref: NeMo AutoModel components/datasets/diffusion/sampler.py SequentialBucketSampler,
 *      collate_fns.py collate_fn_video (same-shape latents stacked; text states kept per sample).
 * Not here: the tar/zstd access (sample_index.c).
 */
#include "data/train_data.h"
#include "base/buf.h"
#include "base/dtype.h"
#include "base/error.h"
#include "base/log.h"
#include "base/rng.h"
#include "data/sample_index.h"
#include "io/npy.h"
#include "io/sample.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_MAX_SAMPLE (1ull << 30)

typedef struct {
    char *path;
    uint64_t size;
    int zstd, framed;
    int warned; /* the foreign-framing warning was given */
} shard_t;

/* The per-sample index: 24 bytes. */
typedef struct {
    dfm_sidx_loc loc;
    uint32_t shard, bucket;
} sample_t;

typedef struct {
    int64_t shape[4];  /* C, F, H, W */
    int pix_w, pix_h;  /* pixel size for dynamic batch sizes */
    uint32_t first;    /* first appearance (sample number) */
    int bs;
    uint32_t *list;    /* sample number of each example, in example order */
    int64_t n;
} bucket_t;

typedef struct {
    uint32_t bucket, start, n; /* n entries of rank_list from start */
} plan_batch;

typedef struct {
    int rc;
    char msg[1024];
    int nbad;
    double read_s;
    dfm_batch b;
} slot_t;

struct dfm_train_data {
    dfm_train_data_opts o;
    shard_t *shards;
    int nshards;
    sample_t *samples;
    uint32_t nsamples;
    bucket_t *buckets;
    int nbuckets;
    int64_t examples, bpe;
    int64_t scan_bad;
    /* reading (one producer at a time: the thread, or next() without one) */
    dfm_sidx_reader *rd;
    dfm_sample raw;
    int fd, fd_shard;
    uint8_t *warned;     /* a bit per sample: already reported */
    int64_t plan_epoch;
    uint32_t *rank_list;
    plan_batch *plan;
    int64_t plan_n;
    uint32_t *tmp;       /* a bucket's list being permuted */
    uint32_t *order;     /* the bucket order */
    /* the consumer */
    int64_t next_e, next_b;
    int64_t skipped;
    int err;
    char errmsg[1024];
    /* the read-ahead thread */
    pthread_t th;
    int running;
    atomic_int stop;
    pthread_mutex_t mu;
    pthread_cond_t cv_put, cv_get;
    slot_t *ring;
    int ring_cap, ring_head, ring_count;
    int64_t prod_e, prod_b;
};

/* ---- the random stream and the permutation (train_data.h, epoch step 1) ---------------- */

typedef struct {
    uint32_t key[2];
    uint64_t ctr;
    uint32_t buf[4];
    int used;
} prng;

static void prng_init(prng *g, uint64_t seed)
{
    g->key[0] = (uint32_t)seed;
    g->key[1] = (uint32_t)(seed >> 32);
    g->ctr = 0;
    g->used = 4;
}

static uint32_t prng_u32(prng *g)
{
    if (g->used == 4) {
        uint32_t c[4] = {(uint32_t)g->ctr, (uint32_t)(g->ctr >> 32), 0, 0};
        dfm_philox4x32(c, g->key, g->buf);
        g->ctr++;
        g->used = 0;
    }
    return g->buf[g->used++];
}

static uint64_t prng_uniform(prng *g, uint64_t n)
{
    uint64_t t = (0 - n) % n, x;
    do {
        uint64_t lo = prng_u32(g);
        x = lo | (uint64_t)prng_u32(g) << 32;
    } while (x < t);
    return x % n;
}

static void permute(prng *g, uint32_t *a, uint64_t n)
{
    for (uint64_t i = n; i-- > 1;) {
        uint64_t j = prng_uniform(g, i + 1);
        uint32_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

/* ---- specs ----------------------------------------------------------------------------- */

typedef struct {
    char **v;
    int n, cap;
} strvec;

static int sv_push(strvec *s, const char *p)
{
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 16;
        char **nv = dfm_realloc(s->v, (size_t)cap * sizeof *nv);
        if (!nv) return DFM_E_NOMEM;
        s->v = nv;
        s->cap = cap;
    }
    if (!(s->v[s->n] = dfm_strdup(p))) return DFM_E_NOMEM;
    s->n++;
    return 0;
}

static void sv_free(strvec *s)
{
    for (int i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

static int is_regular(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* The shards listed by a dfm-shard (wids) index: shardlist[].url, relative to its directory. */
static int spec_index(const char *path, strvec *out)
{
    dfm_buf b = {0};
    int rc = dfm_read_file(path, 256u << 20, &b);
    if (rc) return rc;
    cJSON *j = cJSON_ParseWithLength((const char *)b.data, b.len);
    dfm_buf_free(&b);
    if (!j) return dfm_fail(DFM_E_FORMAT, "'%s' is not valid JSON", path);
    cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "shardlist");
    if (!cJSON_IsArray(list)) {
        cJSON_Delete(j);
        return dfm_fail(DFM_E_FORMAT, "'%s' has no \"shardlist\" array (not a dfm-shard index)", path);
    }
    const char *slash = strrchr(path, '/');
    int dirlen = slash ? (int)(slash - path) : 0;
    int before = out->n;
    cJSON *e;
    cJSON_ArrayForEach(e, list) {
        cJSON *u = cJSON_GetObjectItemCaseSensitive(e, "url");
        if (!cJSON_IsString(u) || !u->valuestring[0]) {
            rc = dfm_fail(DFM_E_FORMAT, "'%s': a shardlist entry without a \"url\"", path);
            break;
        }
        dfm_buf p = {0};
        if (u->valuestring[0] == '/' || !slash) rc = dfm_buf_printf(&p, "%s", u->valuestring);
        else rc = dfm_buf_printf(&p, "%.*s/%s", dirlen, path, u->valuestring);
        if (!rc) rc = sv_push(out, (const char *)p.data);
        dfm_buf_free(&p);
        if (rc) break;
    }
    cJSON_Delete(j);
    if (!rc && out->n == before) rc = dfm_fail(DFM_E_ARG, "index '%s' lists no shards", path);
    return rc;
}

static int resolve_spec(const char *spec, strvec *out)
{
    struct stat st;
    if (strpbrk(spec, "*?[")) {
        glob_t g;
        int r = glob(spec, 0, NULL, &g);
        int rc = 0, before = out->n;
        if (r == 0)
            for (size_t i = 0; i < g.gl_pathc && !rc; i++)
                if (is_regular(g.gl_pathv[i])) rc = sv_push(out, g.gl_pathv[i]);
        if (r == 0) globfree(&g);
        if (rc) return rc;
        if (r != 0 && r != GLOB_NOMATCH) return dfm_fail(DFM_E_IO, "cannot expand '%s'", spec);
        if (out->n == before) return dfm_fail(DFM_E_ARG, "no shards match '%s'", spec);
        qsort(out->v + before, (size_t)(out->n - before), sizeof *out->v, cmp_str);
        return 0;
    }
    if (stat(spec, &st) != 0) return dfm_fail(DFM_E_IO, "cannot open '%s': %s", spec, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        dfm_buf p = {0};
        int rc = dfm_buf_printf(&p, "%s/index.json", spec);
        if (!rc && is_regular((const char *)p.data)) rc = spec_index((const char *)p.data, out), p.len = 1;
        else if (!rc) {
            p.len = 0;
            DIR *dir = opendir(spec);
            if (!dir) rc = dfm_fail(DFM_E_IO, "cannot open '%s': %s", spec, strerror(errno));
            int before = out->n;
            struct dirent *de;
            while (!rc && dir && (de = readdir(dir))) {
                if (!ends_with(de->d_name, ".tar") && !ends_with(de->d_name, ".tar.zst")) continue;
                dfm_buf f = {0};
                rc = dfm_buf_printf(&f, "%s/%s", spec, de->d_name);
                if (!rc && is_regular((const char *)f.data)) rc = sv_push(out, (const char *)f.data);
                dfm_buf_free(&f);
            }
            if (dir) closedir(dir);
            if (!rc && out->n == before)
                rc = dfm_fail(DFM_E_ARG, "no .tar or .tar.zst shards (and no index.json) in directory '%s'", spec);
            if (!rc) qsort(out->v + before, (size_t)(out->n - before), sizeof *out->v, cmp_str);
        }
        dfm_buf_free(&p);
        return rc;
    }
    if (ends_with(spec, ".json")) return spec_index(spec, out);
    return sv_push(out, spec);
}

int dfm_train_data_resolve(const char *spec, char ***paths, int *n)
{
    strvec v = {0};
    int rc = resolve_spec(spec, &v);
    if (rc) {
        sv_free(&v);
        return rc;
    }
    *paths = v.v;
    *n = v.n;
    return 0;
}

/* ---- scanning and buckets -------------------------------------------------------------- */

typedef struct {
    dfm_train_data *d;
    uint32_t shard;
    const char *path;
    uint32_t cap;
} scan_ctx;

static int find_bucket(dfm_train_data *d, const int64_t *shape, uint32_t first)
{
    for (int i = 0; i < d->nbuckets; i++)
        if (!memcmp(d->buckets[i].shape, shape, 4 * sizeof *shape)) return i;
    bucket_t *nb = dfm_realloc(d->buckets, (size_t)(d->nbuckets + 1) * sizeof *nb);
    if (!nb) return DFM_E_NOMEM;
    d->buckets = nb;
    bucket_t *b = &nb[d->nbuckets];
    memset(b, 0, sizeof *b);
    memcpy(b->shape, shape, sizeof b->shape);
    b->first = first;
    return d->nbuckets++;
}

static int on_sample(void *ud, const dfm_sidx_entry *e)
{
    scan_ctx *c = ud;
    dfm_train_data *d = c->d;
    char kb[256];
    if (!e->have_latents || !e->lat_ok) {
        if (!e->have_latents)
            dfm_log_warn("sample '%s' (shard '%s'): no 'latents.npy' field (run dfm-vae-encode "
                         "first); skipped", dfm_key_show(e->key, kb, sizeof kb), c->path);
        else
            dfm_log_warn("sample '%s' (shard '%s'): latents.npy is %s; want float16/float32 "
                         "[C,F,H,W]; skipped", dfm_key_show(e->key, kb, sizeof kb), c->path,
                         e->lat_desc);
        d->scan_bad++;
        return 0;
    }
    if (d->nsamples == UINT32_MAX) return dfm_fail(DFM_E_LIMIT, "more than %u samples", UINT32_MAX - 1);
    if (d->nsamples == c->cap) {
        uint32_t cap = c->cap ? (c->cap > UINT32_MAX / 2 ? UINT32_MAX : c->cap * 2) : 1024;
        sample_t *ns = dfm_realloc(d->samples, (size_t)cap * sizeof *ns);
        if (!ns) return DFM_E_NOMEM;
        d->samples = ns;
        c->cap = cap;
    }
    int b = find_bucket(d, e->lat_shape, d->nsamples);
    if (b < 0) return b;
    bucket_t *bk = &d->buckets[b];
    if (!bk->pix_w && e->bucket_w > 0) {
        bk->pix_w = e->bucket_w;
        bk->pix_h = e->bucket_h;
    }
    sample_t *s = &d->samples[d->nsamples++];
    s->loc = e->loc;
    s->shard = c->shard;
    s->bucket = (uint32_t)b;
    return 0;
}

static int cmp_bucket(const void *a, const void *b)
{
    const bucket_t *x = a, *y = b;
    int64_t px = x->shape[1] * x->shape[2] * x->shape[3], py = y->shape[1] * y->shape[2] * y->shape[3];
    if (px != py) return px < py ? -1 : 1;
    return x->first < y->first ? -1 : x->first > y->first;
}

static int batch_size_of(const dfm_train_data *d, const bucket_t *b)
{
    if (!d->o.dynamic_batch) return d->o.batch_size;
    double W = b->pix_w > 0 ? b->pix_w : (double)b->shape[3] * 8;
    double H = b->pix_h > 0 ? b->pix_h : (double)b->shape[2] * 8;
    double ratio = (W * H) / ((double)d->o.base_w * d->o.base_h);
    double bs = floor(d->o.batch_size / ratio);
    return bs < 1 ? 1 : bs > d->o.batch_size * 1e6 ? INT32_MAX : (int)bs;
}

static int build_buckets(dfm_train_data *d, const uint32_t *spec_first, int nspecs)
{
    /* sort buckets, remap sample bucket ids */
    int nb = d->nbuckets;
    for (int i = 0; i < nb; i++) d->buckets[i].n = i; /* remember the old id */
    qsort(d->buckets, (size_t)nb, sizeof *d->buckets, cmp_bucket);
    uint32_t *remap = dfm_malloc((size_t)(nb ? nb : 1) * sizeof *remap);
    if (!remap) return DFM_E_NOMEM;
    for (int i = 0; i < nb; i++) remap[d->buckets[i].n] = (uint32_t)i;
    for (uint32_t i = 0; i < d->nsamples; i++) d->samples[i].bucket = remap[d->samples[i].bucket];
    free(remap);
    /* examples: spec s's samples [spec_first[s], spec_first[s+1]) give int(n * r) */
    for (int i = 0; i < nb; i++) d->buckets[i].n = 0;
    int64_t total = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int s = 0; s < nspecs; s++) {
            uint32_t a = spec_first[s], n = spec_first[s + 1] - a;
            double r = d->o.repeats ? d->o.repeats[s] : 1.0;
            int64_t k = n ? (int64_t)((double)n * r) : 0;
            if (pass == 0) {
                total += k;
                if (total > UINT32_MAX) return dfm_fail(DFM_E_LIMIT, "more than %u examples per epoch "
                                                        "(repeats too large?)", UINT32_MAX);
            }
            for (int64_t j = 0; j < k; j++) {
                uint32_t smp = a + (uint32_t)(j % n);
                bucket_t *b = &d->buckets[d->samples[smp].bucket];
                if (pass == 1) b->list[b->n] = smp;
                b->n++;
            }
        }
        if (pass == 0)
            for (int i = 0; i < nb; i++) {
                bucket_t *b = &d->buckets[i];
                if (!(b->list = dfm_malloc((size_t)(b->n ? b->n : 1) * sizeof *b->list))) return DFM_E_NOMEM;
                b->n = 0;
            }
    }
    d->examples = total;
    int64_t bpe = 0, maxn = 1;
    int W = d->o.world;
    for (int i = 0; i < nb; i++) {
        bucket_t *b = &d->buckets[i];
        b->bs = batch_size_of(d, b);
        if (b->n > maxn) maxn = b->n;
        int64_t per_rank = (b->n + W - 1) / W;
        bpe += d->o.drop_last ? per_rank / b->bs : (per_rank + b->bs - 1) / b->bs;
    }
    d->bpe = bpe;
    d->tmp = dfm_malloc((size_t)maxn * sizeof *d->tmp);
    int64_t rank_total = 0;
    for (int i = 0; i < nb; i++) rank_total += (d->buckets[i].n + W - 1) / W;
    d->rank_list = dfm_malloc((size_t)(rank_total ? rank_total : 1) * sizeof *d->rank_list);
    d->plan = dfm_malloc((size_t)(bpe ? bpe : 1) * sizeof *d->plan);
    d->order = dfm_malloc((size_t)(nb ? nb : 1) * sizeof *d->order);
    if (!d->tmp || !d->rank_list || !d->plan || !d->order) return DFM_E_NOMEM;
    return 0;
}

/* ---- the epoch plan -------------------------------------------------------------------- */

static void make_plan(dfm_train_data *d, int64_t epoch)
{
    if (d->plan_epoch == epoch) return;
    prng g;
    prng_init(&g, d->o.seed + (uint64_t)epoch);
    int nb = d->nbuckets, W = d->o.world;
    uint32_t *order = d->order;
    for (int i = 0; i < nb; i++) order[i] = (uint32_t)i;
    if (d->o.shuffle) permute(&g, order, (uint64_t)nb);
    int64_t nr = 0, np = 0;
    for (int oi = 0; oi < nb; oi++) {
        bucket_t *b = &d->buckets[order[oi]];
        if (!b->n) continue;
        memcpy(d->tmp, b->list, (size_t)b->n * sizeof *d->tmp);
        if (d->o.shuffle) permute(&g, d->tmp, (uint64_t)b->n);
        int64_t padded = (b->n + W - 1) / W * W, start = nr;
        for (int64_t i = d->o.rank; i < padded; i += W) d->rank_list[nr++] = d->tmp[i % b->n];
        for (int64_t s = start; s < nr; s += b->bs) {
            int64_t cnt = nr - s < b->bs ? nr - s : b->bs;
            if (d->o.drop_last && cnt < b->bs) break;
            d->plan[np++] = (plan_batch){order[oi], (uint32_t)s, (uint32_t)cnt};
        }
    }
    DFM_ASSERT(np == d->bpe);
    d->plan_n = np;
    d->plan_epoch = epoch;
}

/* ---- reading a batch ------------------------------------------------------------------- */

static double now_s(void) { return dfm_now(); }

/* A shard's fd, kept open while consecutive reads use it. Errors are the dataset's. */
static int shard_fd(dfm_train_data *d, uint32_t shard, int *fd)
{
    if (d->fd >= 0 && d->fd_shard == (int)shard) {
        *fd = d->fd;
        return 0;
    }
    if (d->fd >= 0) close(d->fd);
    d->fd = -1;
    const shard_t *sh = &d->shards[shard];
    int f = open(sh->path, O_RDONLY | O_CLOEXEC);
    if (f < 0) return dfm_fail(DFM_E_IO, "shard '%s' cannot be read any more: %s", sh->path, strerror(errno));
    struct stat st;
    if (fstat(f, &st) != 0 || (uint64_t)st.st_size != sh->size) {
        close(f);
        return dfm_fail(DFM_E_IO, "shard '%s' changed since the scan (%llu bytes, now %lld)", sh->path,
                        (unsigned long long)sh->size, (long long)st.st_size);
    }
    d->fd = *fd = f;
    d->fd_shard = (int)shard;
    return 0;
}

static int finite_all(const float *p, size_t n, size_t *at)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(p[i])) {
            *at = i;
            return 0;
        }
    return 1;
}

static int to_f32(const dfm_npy *a, float *out, size_t n)
{
    return dfm_convert_floats(out, DFM_F32, a->data, a->dtype == DFM_NPY_F16 ? DFM_F16 : DFM_F32, n);
}

static const char *npy_desc(const dfm_field *f, char *buf, size_t n)
{
    return dfm_npy_describe(f->data, f->len, buf, n);
}

/* Check the json field's claims against the arrays (a bad json is a bad sample). */
static int check_json(const dfm_field *jf, const int64_t *lat, int64_t rows)
{
    if (!jf) return 0;
    cJSON *j = cJSON_ParseWithLength((const char *)jf->data, jf->len);
    if (!j) return dfm_fail(DFM_E_FORMAT, "json is not valid JSON");
    int rc = 0;
    cJSON *ls = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "latents"), "shape");
    if (cJSON_IsArray(ls)) {
        int k = 0, same = cJSON_GetArraySize(ls) == 4;
        cJSON *e;
        cJSON_ArrayForEach(e, ls) {
            if (k < 4 && (!cJSON_IsNumber(e) || e->valuedouble != (double)lat[k])) same = 0;
            k++;
        }
        if (!same) {
            char *txt = cJSON_PrintUnformatted(ls);
            rc = dfm_fail(DFM_E_FORMAT, "json.latents.shape %s is not latents.npy's [%lld,%lld,%lld,%lld]",
                          txt ? txt : "?", (long long)lat[0], (long long)lat[1], (long long)lat[2],
                          (long long)lat[3]);
            free(txt);
        }
    }
    cJSON *tk = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "text"), "tokens");
    if (!rc && cJSON_IsNumber(tk) && tk->valuedouble != (double)rows)
        rc = dfm_fail(DFM_E_FORMAT, "json.text.tokens is %g but text.npy has %lld rows", tk->valuedouble,
                      (long long)rows);
    cJSON_Delete(j);
    return rc;
}

/* Decode the raw sample into slot k of b (b->text_dim 0: not fixed yet). A bad sample: < 0 with
 * the reason in dfm_errmsg(). */
static int decode_sample(const dfm_sample *s, const bucket_t *bk, dfm_batch *b, int k)
{
    const dfm_field *lf = dfm_sample_get(s, "latents.npy"), *tf = dfm_sample_get(s, "text.npy");
    if (!lf) return dfm_fail(DFM_E_FORMAT, "no 'latents.npy' field");
    if (!tf) return dfm_fail(DFM_E_FORMAT, "no 'text.npy' field (run dfm-text-encode first)");
    char desc[96];
    dfm_npy la, ta;
    if (dfm_npy_parse(lf->data, lf->len, &la)) return dfm_fail_ctx(DFM_E_FORMAT, "latents.npy");
    if ((la.dtype != DFM_NPY_F16 && la.dtype != DFM_NPY_F32) || la.ndim != 4)
        return dfm_fail(DFM_E_FORMAT, "latents.npy is %s; want float16/float32 [C,F,H,W]",
                        npy_desc(lf, desc, sizeof desc));
    if (memcmp(la.shape, bk->shape, sizeof bk->shape))
        return dfm_fail(DFM_E_FORMAT, "latents.npy is %s, not the [%lld,%lld,%lld,%lld] the scan found "
                        "(did the shard change?)", npy_desc(lf, desc, sizeof desc),
                        (long long)bk->shape[0], (long long)bk->shape[1], (long long)bk->shape[2],
                        (long long)bk->shape[3]);
    if (dfm_npy_parse(tf->data, tf->len, &ta)) return dfm_fail_ctx(DFM_E_FORMAT, "text.npy");
    int ok = (ta.dtype == DFM_NPY_F16 || ta.dtype == DFM_NPY_F32) &&
             (ta.ndim == 2 || (ta.ndim == 3 && ta.shape[0] == 1));
    int64_t L = ok ? ta.shape[ta.ndim - 2] : 0, D = ok ? ta.shape[ta.ndim - 1] : 0;
    if (!ok || L < 1 || D < 1 || D > INT32_MAX || L > INT32_MAX)
        return dfm_fail(DFM_E_FORMAT, "text.npy is %s; want float16/float32 [L,D] or [1,L,D]",
                        npy_desc(tf, desc, sizeof desc));
    if (b->text_dim && D != b->text_dim)
        return dfm_fail(DFM_E_FORMAT, "text.npy is %s: D = %lld, but the batch's first sample has %d",
                        npy_desc(tf, desc, sizeof desc), (long long)D, b->text_dim);
    int rc = check_json(dfm_sample_get(s, "json"), la.shape, L);
    if (rc) return rc;
    size_t nl = (size_t)(bk->shape[0] * bk->shape[1] * bk->shape[2] * bk->shape[3]), at;
    float *dst = b->latents + (size_t)k * nl;
    if ((rc = to_f32(&la, dst, nl))) return rc;
    if (!finite_all(dst, nl, &at))
        return dfm_fail(DFM_E_NONFINITE, "latents.npy has a NaN or Inf (element %zu)", at);
    size_t nt = (size_t)(L * D);
    float *t = dfm_malloc(nt * sizeof *t);
    if (!t) return DFM_E_NOMEM;
    if ((rc = to_f32(&ta, t, nt)) == 0 && !finite_all(t, nt, &at))
        rc = dfm_fail(DFM_E_NONFINITE, "text.npy has a NaN or Inf (element %zu)", at);
    if (rc) {
        free(t);
        return rc;
    }
    b->text[k] = t;
    b->text_rows[k] = (int)L;
    b->text_dim = (int)D;
    if (!(b->keys[k] = dfm_strdup(s->key))) return DFM_E_NOMEM;
    return 0;
}

/* Read batch (epoch, batch) into sl. A dataset failure: sl->rc < 0 with sl->msg. Returns 1
 * when stopped (close/seek) before the batch was complete. */
static int produce(dfm_train_data *d, int64_t epoch, int64_t bi, slot_t *sl)
{
    double t0 = now_s();
    memset(sl, 0, sizeof *sl);
    make_plan(d, epoch);
    const plan_batch *pb = &d->plan[bi];
    const bucket_t *bk = &d->buckets[pb->bucket];
    dfm_batch *b = &sl->b;
    b->epoch = epoch;
    b->batch = bi;
    b->C = (int)bk->shape[0], b->F = (int)bk->shape[1], b->H = (int)bk->shape[2], b->W = (int)bk->shape[3];
    size_t nl = (size_t)(bk->shape[0] * bk->shape[1] * bk->shape[2] * bk->shape[3]);
    int rc = 0;
    b->latents = dfm_malloc((size_t)pb->n * nl * sizeof *b->latents);
    b->text_rows = dfm_calloc(pb->n, sizeof *b->text_rows);
    b->text = dfm_calloc(pb->n, sizeof *b->text);
    b->keys = dfm_calloc(pb->n, sizeof *b->keys);
    if (!b->latents || !b->text_rows || !b->text || !b->keys) rc = DFM_E_NOMEM;
    static const char *const want[] = {"latents.npy", "text.npy", "json"};
    for (uint32_t i = 0; i < pb->n && !rc; i++) {
        if (atomic_load(&d->stop)) {
            dfm_batch_free(b);
            return 1;
        }
        uint32_t smp = d->rank_list[pb->start + i];
        const sample_t *sp = &d->samples[smp];
        shard_t *sh = &d->shards[sp->shard];
        int fd = -1, foreign = 0;
        if ((rc = shard_fd(d, sp->shard, &fd))) break;
        int r = dfm_sidx_read(d->rd, fd, sh->zstd, sh->size, sp->loc, want, 3, d->o.max_sample_bytes,
                              &d->raw, sh->framed ? &foreign : NULL);
        if (r == DFM_E_NOMEM || r == DFM_E_IO) {
            rc = dfm_fail_ctx(r, "shard '%s'", sh->path);
            break;
        }
        if (foreign && !sh->warned) {
            sh->warned = 1;
            dfm_log_warn("'%s': a zstd frame holds more than one sample: the samples after the "
                         "first in a frame were not indexed; re-shard with dfm-shard", sh->path);
        }
        if (!r) r = decode_sample(&d->raw, bk, b, b->n);
        if (r == DFM_E_NOMEM) {
            rc = r;
            break;
        }
        if (r) {
            sl->nbad++;
            if (!(d->warned[smp / 8] & (1u << (smp % 8)))) {
                d->warned[smp / 8] |= (uint8_t)(1u << (smp % 8));
                char kb[256];
                if (d->raw.key) dfm_key_show(d->raw.key, kb, sizeof kb);
                else snprintf(kb, sizeof kb, "at %s %llu", sh->zstd ? "frame" : "byte",
                              (unsigned long long)sp->loc.off);
                const char *key = kb;
                dfm_log_warn("sample '%s' (shard '%s'): %s; skipped", key, sh->path, dfm_errmsg());
            }
            /* clear what a partly decoded slot holds */
            free(b->text[b->n]);
            free(b->keys[b->n]);
            b->text[b->n] = NULL;
            b->keys[b->n] = NULL;
            b->text_rows[b->n] = 0;
            continue;
        }
        b->n++;
    }
    dfm_sample_clear(&d->raw);
    if (d->fd >= 0) close(d->fd); /* reopened by the next batch: a shard gone is noticed */
    d->fd = -1;
    if (rc) {
        sl->rc = rc;
        snprintf(sl->msg, sizeof sl->msg, "%s", dfm_errmsg());
        dfm_batch_free(b);
    }
    sl->read_s = now_s() - t0;
    return 0;
}

/* ---- the read-ahead thread ------------------------------------------------------------- */

static void *producer(void *arg)
{
    dfm_train_data *d = arg;
    for (;;) {
        pthread_mutex_lock(&d->mu);
        while (d->ring_count == d->ring_cap && !atomic_load(&d->stop)) pthread_cond_wait(&d->cv_put, &d->mu);
        int stop = atomic_load(&d->stop);
        pthread_mutex_unlock(&d->mu);
        if (stop) break;
        slot_t sl;
        if (produce(d, d->prod_e, d->prod_b, &sl)) break;
        if (++d->prod_b == d->bpe) d->prod_e++, d->prod_b = 0;
        pthread_mutex_lock(&d->mu);
        d->ring[(d->ring_head + d->ring_count) % d->ring_cap] = sl;
        d->ring_count++;
        pthread_cond_signal(&d->cv_get);
        pthread_mutex_unlock(&d->mu);
        if (sl.rc) break;
    }
    return NULL;
}

static void stop_thread(dfm_train_data *d)
{
    if (!d->running) return;
    pthread_mutex_lock(&d->mu);
    atomic_store(&d->stop, 1);
    pthread_cond_broadcast(&d->cv_put);
    pthread_mutex_unlock(&d->mu);
    pthread_join(d->th, NULL);
    d->running = 0;
    atomic_store(&d->stop, 0);
    while (d->ring_count) {
        dfm_batch_free(&d->ring[d->ring_head].b);
        d->ring_head = (d->ring_head + 1) % d->ring_cap;
        d->ring_count--;
    }
    d->ring_head = 0;
}

static int start_thread(dfm_train_data *d)
{
    d->prod_e = d->next_e;
    d->prod_b = d->next_b;
    atomic_store(&d->stop, 0);
    if (pthread_create(&d->th, NULL, producer, d) != 0)
        return dfm_fail(DFM_E_IO, "cannot start the read-ahead thread");
    d->running = 1;
    return 0;
}

/* ---- public ---------------------------------------------------------------------------- */

int dfm_train_data_open(dfm_train_data **out, const dfm_train_data_opts *o)
{
    *out = NULL;
    if (!o || !o->specs || o->nspecs < 1) return dfm_fail(DFM_E_ARG, "no data specs given");
    dfm_train_data_opts op = *o;
    if (!op.world) op.world = 1;
    if (!op.base_w) op.base_w = 512;
    if (!op.base_h) op.base_h = 512;
    if (!op.max_sample_bytes) op.max_sample_bytes = DEFAULT_MAX_SAMPLE;
    if (op.prefetch < 0) op.prefetch = 2;
    if (op.batch_size < 1) return dfm_fail(DFM_E_ARG, "batch size %d (at least 1)", op.batch_size);
    if (op.world < 1 || op.rank < 0 || op.rank >= op.world)
        return dfm_fail(DFM_E_ARG, "rank %d of world %d", op.rank, op.world);
    if (op.base_w < 1 || op.base_h < 1)
        return dfm_fail(DFM_E_ARG, "base resolution %dx%d", op.base_w, op.base_h);
    for (int s = 0; op.repeats && s < op.nspecs; s++)
        if (!(op.repeats[s] >= 0) || !isfinite(op.repeats[s]))
            return dfm_fail(DFM_E_ARG, "repeats %g for '%s' (want a number >= 0)", op.repeats[s], op.specs[s]);
    dfm_train_data *d = dfm_calloc(1, sizeof *d);
    if (!d) return DFM_E_NOMEM;
    d->o = op;
    d->fd = -1;
    d->plan_epoch = -1;
    dfm_sample_init(&d->raw);
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv_put, NULL);
    pthread_cond_init(&d->cv_get, NULL);
    int rc = 0;
    uint32_t *spec_first = dfm_malloc((size_t)(op.nspecs + 1) * sizeof *spec_first);
    if (!spec_first) rc = DFM_E_NOMEM;
    uint32_t cap = 0;
    for (int s = 0; s < op.nspecs && !rc; s++) {
        spec_first[s] = d->nsamples;
        strvec paths = {0};
        rc = resolve_spec(op.specs[s], &paths);
        for (int i = 0; i < paths.n && !rc; i++) {
            shard_t *ns = dfm_realloc(d->shards, (size_t)(d->nshards + 1) * sizeof *ns);
            if (!ns) {
                rc = DFM_E_NOMEM;
                break;
            }
            d->shards = ns;
            shard_t *sh = &ns[d->nshards];
            memset(sh, 0, sizeof *sh);
            sh->path = paths.v[i];
            paths.v[i] = NULL;
            d->nshards++;
            scan_ctx c = {d, (uint32_t)(d->nshards - 1), sh->path, cap};
            dfm_sidx_info info;
            rc = dfm_sidx_scan(sh->path, on_sample, &c, &info);
            cap = c.cap;
            sh->size = info.size;
            sh->zstd = info.zstd;
            sh->framed = info.framed;
            if (!rc && info.zstd && info.shared && info.samples > 1) {
                if (info.frames <= 1)
                    dfm_log_warn("'%s' is one zstd frame: every read decompresses from the shard's "
                                 "start; re-shard with dfm-shard for random access", sh->path);
                else
                    dfm_log_warn("'%s': %llu samples do not start a zstd frame: their reads decompress "
                                 "from their frame's start; re-shard with dfm-shard for random access",
                                 sh->path, (unsigned long long)info.shared);
            }
        }
        sv_free(&paths);
    }
    if (!rc) {
        spec_first[op.nspecs] = d->nsamples;
        if (d->nsamples == 0)
            rc = dfm_fail(DFM_E_FORMAT, "no usable samples in %d shard%s (every sample needs "
                          "latents.npy and text.npy)", d->nshards, d->nshards == 1 ? "" : "s");
    }
    if (!rc) rc = build_buckets(d, spec_first, op.nspecs);
    free(spec_first);
    if (!rc && d->examples == 0) rc = dfm_fail(DFM_E_ARG, "no examples per epoch (repeats of 0?)");
    if (!rc && d->bpe == 0)
        rc = dfm_fail(DFM_E_ARG, "no batch per epoch: %lld examples in %d bucket%s, batch size %d%s",
                      (long long)d->examples, d->nbuckets, d->nbuckets == 1 ? "" : "s", op.batch_size,
                      op.drop_last ? " and drop_last (each bucket's partial batch is dropped)" : "");
    if (!rc) {
        d->warned = dfm_calloc((size_t)d->nsamples / 8 + 1, 1);
        d->ring_cap = op.prefetch > 0 ? op.prefetch : 1;
        d->ring = dfm_calloc((size_t)d->ring_cap, sizeof *d->ring);
        if (!d->warned || !d->ring) rc = DFM_E_NOMEM;
    }
    if (!rc) rc = dfm_sidx_reader_new(&d->rd);
    if (rc) {
        dfm_train_data_close(d);
        return rc;
    }
    d->skipped = d->scan_bad;
    d->o.specs = NULL; /* the caller's arrays are not needed (nor kept) past open */
    d->o.repeats = NULL;
    *out = d;
    return 0;
}

int64_t dfm_train_data_samples(const dfm_train_data *d) { return d->examples; }
int64_t dfm_train_data_batches_per_epoch(const dfm_train_data *d) { return d->bpe; }
int dfm_train_data_buckets(const dfm_train_data *d) { return d->nbuckets; }
int64_t dfm_train_data_skipped(const dfm_train_data *d) { return d->skipped; }

int dfm_train_data_bucket(const dfm_train_data *d, int i, int64_t shape[4], int64_t *examples,
                          int *batch_size)
{
    if (i < 0 || i >= d->nbuckets) return dfm_fail(DFM_E_ARG, "bucket %d of %d", i, d->nbuckets);
    const bucket_t *b = &d->buckets[i];
    if (shape) memcpy(shape, b->shape, sizeof b->shape);
    if (examples) *examples = b->n;
    if (batch_size) *batch_size = b->bs;
    return 0;
}

int dfm_train_data_seek(dfm_train_data *d, int64_t epoch, int64_t batch)
{
    if (epoch < 0 || batch < 0) return dfm_fail(DFM_E_ARG, "seek to epoch %lld, batch %lld",
                                                (long long)epoch, (long long)batch);
    stop_thread(d);
    d->next_e = epoch + batch / d->bpe;
    d->next_b = batch % d->bpe;
    return 0;
}

int dfm_train_data_next(dfm_train_data *d, dfm_batch *b)
{
    memset(b, 0, sizeof *b);
    if (d->err) return dfm_fail(d->err, "%s", d->errmsg);
    double wait = 0;
    int64_t empty = 0;
    for (;;) {
        slot_t sl;
        if (d->o.prefetch == 0) {
            produce(d, d->next_e, d->next_b, &sl);
            wait += sl.read_s;
        } else {
            if (!d->running) {
                int rc = start_thread(d);
                if (rc) return rc;
            }
            double t0 = now_s();
            pthread_mutex_lock(&d->mu);
            while (d->ring_count == 0) pthread_cond_wait(&d->cv_get, &d->mu);
            sl = d->ring[d->ring_head];
            d->ring_head = (d->ring_head + 1) % d->ring_cap;
            d->ring_count--;
            pthread_cond_signal(&d->cv_put);
            pthread_mutex_unlock(&d->mu);
            wait += now_s() - t0;
        }
        if (sl.rc) {
            d->err = sl.rc;
            snprintf(d->errmsg, sizeof d->errmsg, "%s", sl.msg);
            stop_thread(d);
            return dfm_fail(d->err, "%s", d->errmsg);
        }
        if (++d->next_b == d->bpe) d->next_e++, d->next_b = 0;
        d->skipped += sl.nbad;
        if (sl.b.n == 0) {
            dfm_batch_free(&sl.b);
            if (++empty >= d->bpe) {
                d->err = dfm_fail(DFM_E_FORMAT, "every sample of %lld batches in a row was bad (a whole "
                                  "epoch): nothing to train on", (long long)empty);
                snprintf(d->errmsg, sizeof d->errmsg, "%s", dfm_errmsg());
                stop_thread(d);
                return d->err;
            }
            continue;
        }
        *b = sl.b;
        b->wait_s = wait;
        return 0;
    }
}

void dfm_batch_free(dfm_batch *b)
{
    if (!b) return;
    int n = b->text || b->keys ? b->n : 0;
    /* slots past n may hold a half-decoded sample's leftovers only transiently (cleared) */
    for (int i = 0; i < n; i++) {
        if (b->text) free(b->text[i]);
        if (b->keys) free(b->keys[i]);
    }
    free(b->latents);
    free(b->text_rows);
    free(b->text);
    free(b->keys);
    memset(b, 0, sizeof *b);
}

void dfm_train_data_close(dfm_train_data *d)
{
    if (!d) return;
    stop_thread(d);
    free(d->ring);
    for (int i = 0; i < d->nshards; i++) free(d->shards[i].path);
    free(d->shards);
    free(d->samples);
    for (int i = 0; i < d->nbuckets; i++) free(d->buckets[i].list);
    free(d->buckets);
    free(d->warned);
    free(d->rank_list);
    free(d->plan);
    free(d->tmp);
    free(d->order);
    if (d->fd >= 0) close(d->fd);
    dfm_sidx_reader_free(d->rd);
    dfm_sample_free(&d->raw);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv_put);
    pthread_cond_destroy(&d->cv_get);
    free(d);
}
