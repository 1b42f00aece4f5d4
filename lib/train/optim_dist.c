/* optim_dist.c — AdamW across data-parallel ranks (optim.h): the gradient sum, the sharded
 * state (ZeRO stage 2) and the state files of either form, loadable by any world size.
 * ref: DeepSpeed runtime/zero/stage_1_and_2.py (the flat partition, reduce-scatter, all-gather);
 *      torch/distributed/optim/zero_redundancy_optimizer.py (what a rank keeps) */
#include "train/optim.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/buf.h"
#include "base/error.h"
#include "base/log.h"
#include "dist/dist.h"
#include "io/safetensors.h"
#include "tensor/op.h"
#include "train/optim_internal.h"
#ifdef DFM_HAVE_CUDA
#include "cuda/device.h"
#endif

#define B DFM_ADAMW_BUCKET

/* the buckets of the flat vector (buckets_build) */
typedef struct {
    int nb;
    int64_t *bs;
    int *key;
} buckets_t;

struct dfm_adamw_sharded {
    dfm_dist *d;
    dfm_device dev;   /* where the parameters, and so these vectors, live */
    int rank, world;
    int64_t total;    /* elements of every trainable parameter */
    int64_t *off;     /* [n + 1]: slot i's first element in the flat vector */
    int64_t len;      /* elements of this rank's pieces */
    buckets_t bk;     /* the buckets */
    int64_t *so;      /* [nb]: bucket k's piece starts at so[k] in g, m, v */
    char *done;       /* [nb]: summed into g this step already (dfm_adamw_reduce_block) */
    int fresh;        /* g holds last step's sums: zero it before adding this step's */
    float *g, *m, *v; /* [len] on dev: summed gradient, exp_avg, exp_avg_sq of the pieces, bucket after bucket */
    float *buf;       /* [B + world] on dev: one bucket, padded to a multiple of world */
    float *piece;     /* [B / world + 1] on dev */
    dfm_tensor mem[5];/* the storage of the five */
};

/* ---- memory on the parameters' device ------------------------------------------------------ */

static int mcopy(void *dst, const void *src, int64_t n, dfm_device dev)
{
    if (n <= 0 || dst == src) return 0;
    if (dev == DFM_CPU) {
        memcpy(dst, src, (size_t)n * sizeof(float));
        return 0;
    }
#ifdef DFM_HAVE_CUDA
    const char *why = NULL;
    if (dfm_cuda_memcpy(dst, src, (size_t)n * sizeof(float), 2, &why))
        return dfm_fail(DFM_E_IO, "adamw: device copy failed: %s", why ? why : "?");
    return 0;
#else
    return dfm_fail(DFM_E_UNSUPPORTED, "adamw: device memory, but this build has no CUDA backend");
#endif
}

static int mzero(void *p, int64_t n, dfm_device dev)
{
    if (n <= 0) return 0;
    if (dev == DFM_CPU) {
        memset(p, 0, (size_t)n * sizeof(float));
        return 0;
    }
#ifdef DFM_HAVE_CUDA
    const char *why = NULL;
    if (dfm_cuda_memset0(p, (size_t)n * sizeof(float), &why))
        return dfm_fail(DFM_E_IO, "adamw: device memset failed: %s", why ? why : "?");
    return 0;
#else
    return dfm_fail(DFM_E_UNSUPPORTED, "adamw: device memory, but this build has no CUDA backend");
#endif
}

static dfm_tensor vec(float *p, int64_t n, dfm_device dev)
{
    int64_t s[1] = {n};
    return dfm_tensor_view(p, DFM_F32, dev, 1, s);
}

/* ---- the flat vector's geometry ---------------------------------------------------------- */

/* The buckets: the parameters in registration order, grouped by block (consecutive "blocks.N."
 * parameters; the others between them a group each run), each group cut into chunks of at most
 * B elements. Bucket k is [bs[k], bs[k + 1]) of the flat vector; key[k] its block (-1: none).
 * A function of the parameters' names and sizes only, so every world size shares it. */

static int name_block(const char *name)
{
    return !strncmp(name, "blocks.", 7) && name[7] >= '0' && name[7] <= '9' ? atoi(name + 7) : -1;
}

static void buckets_free(buckets_t *b)
{
    free(b->bs), free(b->key);
    memset(b, 0, sizeof *b);
}

static int buckets_build(const dfm_adamw *o, const int64_t *off, buckets_t *b)
{
    memset(b, 0, sizeof *b);
    int cap = 16;
    b->bs = malloc((size_t)(cap + 1) * sizeof *b->bs), b->key = malloc((size_t)cap * sizeof *b->key);
    if (!b->bs || !b->key) goto nomem;
    for (int i = 0; i < o->n;) {
        int key = name_block(o->s[i].name), j = i + 1;
        while (j < o->n && name_block(o->s[j].name) == key) j++;
        for (int64_t a = off[i]; a < off[j];) {
            int64_t L = off[j] - a < B ? off[j] - a : B;
            if (b->nb == cap) {
                cap *= 2;
                int64_t *bs = realloc(b->bs, (size_t)(cap + 1) * sizeof *bs);
                if (bs) b->bs = bs;
                int *k = realloc(b->key, (size_t)cap * sizeof *k);
                if (k) b->key = k;
                if (!bs || !k) goto nomem;
            }
            b->bs[b->nb] = a, b->key[b->nb] = key, b->nb++;
            a += L;
        }
        i = j;
    }
    b->bs[b->nb] = o->n ? off[o->n] : 0;
    return 0;
nomem:
    buckets_free(b);
    return dfm_fail(DFM_E_NOMEM, "adamw: out of memory");
}

static int64_t piece_q(int64_t L, int world) { return (L + world - 1) / world; }
/* rank r's piece of a bucket of L elements: [lo, lo + *len) within it */
static int64_t piece_lo(int64_t L, int world, int r, int64_t *len)
{
    int64_t q = piece_q(L, world), lo = (int64_t)r * q, hi = lo + q;
    if (lo > L) lo = L;
    if (hi > L) hi = L;
    *len = hi - lo;
    return lo;
}
/* elements rank r keeps of buckets [0, upto) over world ranks */
static int64_t shard_len(const buckets_t *b, int world, int r, int upto)
{
    int64_t n = 0, len;
    for (int k = 0; k < upto; k++) {
        piece_lo(b->bs[k + 1] - b->bs[k], world, r, &len);
        n += len;
    }
    return n;
}

static int64_t *flat_offsets(const dfm_adamw *o)
{
    int64_t *off = malloc((size_t)(o->n + 1) * sizeof *off);
    if (!off) return NULL;
    off[0] = 0;
    for (int i = 0; i < o->n; i++) off[i + 1] = off[i] + dfm_tensor_numel(o->s[i].param);
    return off;
}

/* the slot holding flat element a (off[i] <= a < off[i + 1]) */
static int slot_at(const int64_t *off, int n, int64_t a)
{
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (off[mid] <= a) lo = mid;
        else hi = mid - 1;
    }
    while (lo < n - 1 && off[lo + 1] <= a) lo++;
    return lo;
}

/* Copy between the flat range [a, a + n) of the parameters (grad 0) or gradients (grad 1) and
 * buf: to_buf 1 reads them into buf, 0 writes buf into them. Tensors and buf on dev. */
static int flat_io(dfm_adamw *o, const int64_t *off, int64_t a, int64_t n, float *buf, int grad, int to_buf, dfm_device dev)
{
    if (n <= 0) return 0;
    int i = slot_at(off, o->n, a), rc = 0;
    while (n > 0 && !rc) {
        while (off[i + 1] <= a) i++;
        int64_t seg = off[i + 1] - a < n ? off[i + 1] - a : n;
        float *t = (float *)(grad ? o->s[i].grad : o->s[i].param)->data + (a - off[i]);
        rc = to_buf ? mcopy(buf, t, seg, dev) : mcopy(t, buf, seg, dev);
        buf += seg, a += seg, n -= seg;
    }
    return rc;
}

/* ---- sharding ------------------------------------------------------------------------------ */

void dfm_adamw_shard_free(dfm_adamw_sharded *sh)
{
    if (!sh) return;
    free(sh->off), free(sh->so), free(sh->done);
    buckets_free(&sh->bk);
    for (int i = 0; i < 5; i++) dfm_tensor_free(&sh->mem[i]);
    free(sh);
}

int dfm_adamw_shard(dfm_adamw *o, dfm_dist *d)
{
    if (!o || !d) return dfm_fail(DFM_E_ARG, "adamw_shard: NULL argument");
    if (o->sh) return dfm_fail(DFM_E_ARG, "adamw_shard: already sharded");
    if (o->step) return dfm_fail(DFM_E_ARG, "adamw_shard: shard before the first step");
    for (int i = 1; i < o->n; i++)
        if (o->s[i].param->device != o->s[0].param->device)
            return dfm_fail(DFM_E_UNSUPPORTED, "a sharded optimizer keeps its parameters on one device; '%s' and '%s' are not",
                            o->s[0].name, o->s[i].name);
    dfm_adamw_sharded *sh = calloc(1, sizeof *sh);
    if (!sh) return dfm_fail(DFM_E_NOMEM, "adamw_shard: out of memory");
    sh->d = d, sh->rank = dfm_dist_rank(d), sh->world = dfm_dist_size(d);
    sh->dev = o->n ? o->s[0].param->device : DFM_CPU;
    if (!(sh->off = flat_offsets(o))) goto nomem;
    sh->total = sh->off[o->n];
    if (buckets_build(o, sh->off, &sh->bk)) goto nomem;
    sh->len = shard_len(&sh->bk, sh->world, sh->rank, sh->bk.nb);
    if (!(sh->so = malloc((size_t)(sh->bk.nb + 1) * sizeof *sh->so)) || !(sh->done = calloc((size_t)sh->bk.nb + 1, 1))) goto nomem;
    for (int k = 0; k <= sh->bk.nb; k++) sh->so[k] = shard_len(&sh->bk, sh->world, sh->rank, k);
    sh->fresh = 1;
    int64_t sz[5] = {sh->len ? sh->len : 1, sh->len ? sh->len : 1, sh->len ? sh->len : 1, B + sh->world, B / sh->world + 1};
    for (int i = 0; i < 5; i++)
        if (dfm_tensor_zeros(&sh->mem[i], DFM_F32, sh->dev, 1, &sz[i])) goto nomem;
    sh->g = sh->mem[0].data, sh->m = sh->mem[1].data, sh->v = sh->mem[2].data, sh->buf = sh->mem[3].data,
    sh->piece = sh->mem[4].data;
    for (int i = 0; i < o->n; i++) dfm_tensor_free(&o->s[i].m), dfm_tensor_free(&o->s[i].v);
    o->sh = sh;
    return 0;
nomem:
    dfm_adamw_shard_free(sh);
    return dfm_fail(DFM_E_NOMEM, "adamw_shard: out of memory");
}

/* ---- the gradient sum ------------------------------------------------------------------------ */

/* Replicated: each gradient summed over the ranks as an asynchronous all-reduce (lib/dist's
 * communication thread), started by reduce_grads_start as soon as the backward has finished it
 * and waited for in reduce_grads. Small host gradients (LoRA's, biases, norms) are copied into
 * one staging vector first, each start's group summed as one message, and copied back after the
 * wait; larger ones and device ones are summed in place. The sum of an element does not depend
 * on the grouping (lib/dist sums each element in rank order), so overlapped or not, the bits are
 * the same. */
#define SMALL ((int64_t)1 << 16)

typedef struct {
    int n;
    int *started;      /* [n]: the gradient's sum has been started this step */
    float *stage;      /* the small host gradients of this step, in start order */
    int64_t cap, used;
    int *staged;       /* [n]: slots staged, in order, count nstaged */
    int nstaged;
} repl_t;

static repl_t *repl_of(dfm_adamw *o)
{
    if (o->repl) return o->repl;
    repl_t *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->n = o->n;
    for (int i = 0; i < o->n; i++)
        if (o->s[i].grad->device == DFM_CPU && dfm_tensor_numel(o->s[i].grad) < SMALL) r->cap += dfm_tensor_numel(o->s[i].grad);
    if (!(r->started = calloc((size_t)o->n + 1, sizeof *r->started)) || !(r->staged = calloc((size_t)o->n + 1, sizeof *r->staged)) ||
        !(r->stage = malloc((size_t)(r->cap ? r->cap : 1) * sizeof(float)))) {
        free(r->started), free(r->staged), free(r->stage), free(r);
        return NULL;
    }
    o->repl = r;
    return r;
}

void dfm_adamw_repl_free(void *p)
{
    repl_t *r = p;
    if (!r) return;
    free(r->started), free(r->staged), free(r->stage), free(r);
}

static int start_impl(dfm_adamw *o, dfm_dist *d, const char *prefix)
{
    repl_t *r = repl_of(o);
    if (!r) return dfm_fail(DFM_E_NOMEM, "adamw: out of memory");
    size_t k = prefix ? strlen(prefix) : 0;
    int64_t group = r->used;
    int rc = 0;
    for (int i = 0; i < o->n && !rc; i++) {
        if (r->started[i] || (prefix && strncmp(o->s[i].name, prefix, k))) continue;
        r->started[i] = 1;
        dfm_tensor *g = o->s[i].grad;
        int64_t n = dfm_tensor_numel(g);
        if (g->device == DFM_CPU && n < SMALL) {
            memcpy(r->stage + r->used, g->data, (size_t)n * sizeof(float));
            r->used += n;
            r->staged[r->nstaged++] = i;
        } else if (n) {
            rc = dfm_dist_allreduce_async(d, g->data, (size_t)n, DFM_F32, g->device);
        }
    }
    if (!rc && r->used > group) rc = dfm_dist_allreduce_async(d, r->stage + group, (size_t)(r->used - group), DFM_F32, DFM_CPU);
    return rc;
}

int dfm_adamw_reduce_grads_start(dfm_adamw *o, dfm_dist *d, const char *prefix)
{
    if (!o || !d) return dfm_fail(DFM_E_ARG, "adamw_reduce_grads_start: NULL argument");
    if (o->sh || dfm_dist_size(d) < 2) return 0; /* the sharded optimizer reduce-scatters in reduce_grads */
    double t0 = dfm_now();
    int rc = start_impl(o, d, prefix);
    o->comm_s += dfm_now() - t0;
    return rc ? dfm_fail_ctx(rc, "summing the gradients over the ranks") : 0;
}

static int reduce_replicated(dfm_adamw *o, dfm_dist *d)
{
    int rc = start_impl(o, d, NULL); /* whatever was not started yet */
    int wrc = dfm_dist_wait(d);
    if (!rc) rc = wrc;
    repl_t *r = o->repl;
    if (!rc && r) {
        const float *p = r->stage;
        for (int j = 0; j < r->nstaged; j++) {
            dfm_tensor *g = o->s[r->staged[j]].grad;
            memcpy(g->data, p, (size_t)dfm_tensor_numel(g) * sizeof(float));
            p += dfm_tensor_numel(g);
        }
    }
    if (r) {
        memset(r->started, 0, (size_t)r->n * sizeof *r->started);
        r->used = 0, r->nstaged = 0;
    }
    return rc ? dfm_fail_ctx(rc, "summing the gradients over the ranks") : 0;
}

double dfm_adamw_comm_seconds(const dfm_adamw *o) { return o ? o->comm_s : 0.0; }

static int reduce_sharded(dfm_adamw *o);

int dfm_adamw_reduce_grads(dfm_adamw *o, dfm_dist *d)
{
    if (!o || !d) return dfm_fail(DFM_E_ARG, "adamw_reduce_grads: NULL argument");
    double t0 = dfm_now();
    int rc = o->sh ? reduce_sharded(o) : dfm_dist_size(d) > 1 ? reduce_replicated(o, d) : 0;
    o->comm_s += dfm_now() - t0;
    return rc;
}

/* Bucket k's gradients reduce-scattered and added into this rank's shard of the step's sum. */
static int reduce_bucket(dfm_adamw *o, int k)
{
    dfm_adamw_sharded *sh = o->sh;
    int rc;
    if (sh->fresh) { /* the first sum of a step */
        if ((rc = mzero(sh->g, sh->len, sh->dev))) return rc;
        sh->fresh = 0;
    }
    int64_t a = sh->bk.bs[k], L = sh->bk.bs[k + 1] - a, q = piece_q(L, sh->world), plen;
    piece_lo(L, sh->world, sh->rank, &plen);
    if ((rc = flat_io(o, sh->off, a, L, sh->buf, 1, 1, sh->dev)) || (rc = mzero(sh->buf + L, q * sh->world - L, sh->dev)))
        return rc;
    if ((rc = dfm_dist_reduce_scatter(sh->d, sh->buf, sh->piece, (size_t)q, DFM_F32, sh->dev)))
        return dfm_fail_ctx(rc, "reduce-scattering the gradients");
    if (!plen) return 0;
    dfm_tensor g = vec(sh->g + sh->so[k], plen, sh->dev), p = vec(sh->piece, plen, sh->dev);
    dfm_op_args ad = {.src = {&g, &p}, .dst = {&g}};
    rc = dfm_op_run(DFM_OP_ADD, &ad);
    return rc < 0 ? dfm_fail_ctx(rc, "adding the gradient shard") : 0;
}

/* The step's last sum: every bucket not summed by dfm_adamw_reduce_block. */
static int reduce_sharded(dfm_adamw *o)
{
    dfm_adamw_sharded *sh = o->sh;
    int rc = 0;
    for (int k = 0; k < sh->bk.nb && !rc; k++)
        if (!sh->done[k]) rc = reduce_bucket(o, k);
    if (sh->fresh && !rc) rc = mzero(sh->g, sh->len, sh->dev); /* no parameters at all */
    memset(sh->done, 0, (size_t)sh->bk.nb);
    sh->fresh = 1; /* the next sum is the next step's */
    return rc;
}

int dfm_adamw_reduce_block(dfm_adamw *o, dfm_dist *d, int block)
{
    if (!o || !d) return dfm_fail(DFM_E_ARG, "adamw_reduce_block: NULL argument");
    dfm_adamw_sharded *sh = o->sh;
    if (!sh) return 0;
    double t0 = dfm_now();
    int rc = 0;
    for (int k = 0; k < sh->bk.nb && !rc; k++)
        if (sh->bk.key[k] == block) {
            rc = reduce_bucket(o, k);
            sh->done[k] = 1;
        }
    o->comm_s += dfm_now() - t0;
    return rc;
}

/* ---- the sharded step ------------------------------------------------------------------------ */

double dfm_adamw_shard_grad_norm(dfm_adamw *o, int *finite)
{
    dfm_adamw_sharded *sh = o->sh;
    double ss = 0.0;
    int rc = 0;
    if (sh->len) {
        dfm_tensor g = vec(sh->g, sh->len, sh->dev);
        dfm_op_args a = {.src = {&g}};
        if ((rc = dfm_op_run(DFM_OP_SUMSQ, &a)) < 0) {
            if (finite) *finite = 0;
            return NAN;
        }
        memcpy(&ss, &a.r[0], sizeof ss);
    }
    double t0 = dfm_now();
    rc = dfm_dist_allreduce(sh->d, &ss, 1, DFM_DIST_F64, DFM_CPU);
    o->comm_s += dfm_now() - t0;
    if (rc) {
        if (finite) *finite = 0;
        return NAN;
    }
    double total = sqrt(ss);
    if (finite) *finite = isfinite(total) != 0;
    return total;
}

int dfm_adamw_shard_scale(dfm_adamw *o, float coef)
{
    dfm_adamw_sharded *sh = o->sh;
    if (!sh->len) return 0;
    dfm_tensor g = vec(sh->g, sh->len, sh->dev);
    dfm_op_args a = {.src = {&g}, .dst = {&g}, .f = {coef, 0.0f}}; /* as the replicated scale */
    int rc = dfm_op_run(DFM_OP_AFFINE, &a);
    return rc < 0 ? dfm_fail_ctx(rc, "scaling the gradient shard") : 0;
}

int dfm_adamw_shard_step(dfm_adamw *o, const dfm_adamw_coef *c)
{
    dfm_adamw_sharded *sh = o->sh;
    for (int k = 0; k < sh->bk.nb; k++) {
        int64_t a = sh->bk.bs[k], L = sh->bk.bs[k + 1] - a, q = piece_q(L, sh->world), plen;
        int64_t lo = piece_lo(L, sh->world, sh->rank, &plen);
        /* this rank's piece of the parameters, slot by slot */
        int64_t x = a + lo, left = plen, gi = sh->so[k];
        while (left > 0) {
            int i = slot_at(sh->off, o->n, x);
            int64_t seg = sh->off[i + 1] - x < left ? sh->off[i + 1] - x : left;
            dfm_tensor p = vec((float *)o->s[i].param->data + (x - sh->off[i]), seg, sh->dev);
            dfm_tensor g = vec(sh->g + gi, seg, sh->dev), m = vec(sh->m + gi, seg, sh->dev), v = vec(sh->v + gi, seg, sh->dev);
            dfm_op_args aa = {.src = {&g}, .dst = {&p, &m, &v}, .p = c};
            int rc = dfm_op_run(DFM_OP_ADAMW, &aa);
            if (rc < 0) return dfm_fail_ctx(rc, "adamw_step '%s'", o->s[i].name);
            x += seg, gi += seg, left -= seg;
        }
        /* every rank's updated piece into every rank's parameters */
        int rc;
        if ((rc = flat_io(o, sh->off, a + lo, plen, sh->piece, 0, 1, sh->dev)) || (rc = mzero(sh->piece + plen, q - plen, sh->dev)))
            return rc;
        double t0 = dfm_now();
        rc = dfm_dist_allgather(sh->d, sh->piece, sh->buf, (size_t)q, DFM_F32, sh->dev);
        o->comm_s += dfm_now() - t0;
        if (rc) return dfm_fail_ctx(rc, "all-gathering the updated parameters");
        if ((rc = flat_io(o, sh->off, a, L, sh->buf, 0, 0, sh->dev))) return rc;
    }
    return 0;
}

/* ---- state files ----------------------------------------------------------------------------- */

/* "name:numel,name:numel,..." of the registered parameters (malloc'd) */
static char *layout_string(const dfm_adamw *o)
{
    dfm_buf b = {0};
    char num[32];
    for (int i = 0; i < o->n; i++) {
        snprintf(num, sizeof num, ":%lld", (long long)dfm_tensor_numel(o->s[i].param));
        if ((i && dfm_buf_append(&b, ",", 1)) || dfm_buf_append(&b, o->s[i].name, strlen(o->s[i].name)) ||
            dfm_buf_append(&b, num, strlen(num)) ) {
            dfm_buf_free(&b);
            return NULL;
        }
    }
    if (dfm_buf_append(&b, "", 1)) {
        dfm_buf_free(&b);
        return NULL;
    }
    return (char *)b.data;
}

static void shard_name(char *out, size_t n, int rank, int world)
{
    snprintf(out, n, "optimizer-rank-%05d-of-%05d.safetensors", rank, world);
}

int dfm_adamw_save_state(dfm_adamw *o, const char *dir)
{
    if (!o || !dir) return dfm_fail(DFM_E_ARG, "adamw_save_state: NULL argument");
    char path[4096], name[64];
    int rc;
    if (!o->sh) {
        if ((rc = dfm_path_join(path, sizeof path, dir, "optimizer.safetensors"))) return rc;
        return dfm_adamw_save(o, path);
    }
    dfm_adamw_sharded *sh = o->sh;
    shard_name(name, sizeof name, sh->rank, sh->world);
    if ((rc = dfm_path_join(path, sizeof path, dir, name))) return rc;
    char *layout = layout_string(o), *meta = NULL;
    cJSON *j = cJSON_CreateObject();
    char v[64];
    if (layout && j) {
#define PUT(k, fmt, x) (snprintf(v, sizeof v, fmt, x), cJSON_AddStringToObject(j, k, v))
        cJSON_AddStringToObject(j, "format", SHARD_FORMAT);
        PUT("step", "%lld", (long long)o->step);
        PUT("beta1", "%.17g", o->opts.beta1);
        PUT("beta2", "%.17g", o->opts.beta2);
        PUT("eps", "%.17g", o->opts.eps);
        PUT("weight_decay", "%.17g", o->opts.weight_decay);
        PUT("bucket", "%lld", (long long)B);
        PUT("world", "%d", sh->world);
        PUT("rank", "%d", sh->rank);
        PUT("total", "%lld", (long long)sh->total);
#undef PUT
        cJSON_AddStringToObject(j, "params", layout);
        meta = cJSON_PrintUnformatted(j);
    }
    cJSON_Delete(j);
    free(layout);
    if (!meta) return dfm_fail(DFM_E_NOMEM, "adamw_save_state: out of memory");
    float zero = 0;
    const void *mv[2] = {sh->m, sh->v};
    dfm_tensor host[2] = {{0}, {0}};
    rc = 0;
    for (int k = 0; k < 2 && !rc && sh->len && sh->dev != DFM_CPU; k++) { /* device moments: host copies */
        dfm_tensor t = vec(k ? sh->v : sh->m, sh->len, sh->dev);
        if (!(rc = dfm_tensor_copy(&host[k], &t, DFM_CPU))) mv[k] = host[k].data;
    }
    dfm_st_entry e[2] = {{.name = "exp_avg", .dtype = DFM_F32, .ndim = 1, .shape = {sh->len}, .data = sh->len ? mv[0] : &zero},
                         {.name = "exp_avg_sq", .dtype = DFM_F32, .ndim = 1, .shape = {sh->len}, .data = sh->len ? mv[1] : &zero}};
    if (!rc) rc = dfm_st_write(path, e, 2, meta);
    dfm_tensor_free(&host[0]), dfm_tensor_free(&host[1]);
    free(meta);
    return rc;
}

/* Where a saved flat vector comes from: one optimizer.safetensors (world 0) or world rank files. */
typedef struct {
    int world;
    dfm_st **st;                /* [max(world, 1)] */
    const dfm_st_tensor **mv;   /* unsharded: [2 n] per slot; sharded: [2 world] */
    int64_t step;
    buckets_t bk;               /* sharded: the buckets (the same for every world size) */
} src_t;

static void src_close(src_t *s)
{
    for (int i = 0; s->st && i < (s->world ? s->world : 1); i++) dfm_st_close(s->st[i]);
    buckets_free(&s->bk);
    free(s->st);
    free(s->mv);
    memset(s, 0, sizeof *s);
}

/* the metadata value of key as a count (>= 0), or -1 */
static int64_t meta_int(const cJSON *j, const char *key)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsString(x) || !*x->valuestring) return -1;
    char *end;
    errno = 0;
    long long v = strtoll(x->valuestring, &end, 10);
    return errno || *end || v < 0 ? -1 : v;
}

static int open_unsharded(src_t *s, dfm_adamw *o, const char *path)
{
    s->world = 0;
    if (!(s->st = calloc(1, sizeof *s->st)) || !(s->mv = calloc((size_t)(2 * o->n + 1), sizeof *s->mv)))
        return dfm_fail(DFM_E_NOMEM, "adamw_load_state: out of memory");
    int rc = dfm_st_open(&s->st[0], path);
    if (rc) return rc;
    cJSON *j = cJSON_Parse(dfm_st_metadata(s->st[0]));
    const cJSON *f = j ? cJSON_GetObjectItemCaseSensitive(j, "format") : NULL;
    s->step = j ? meta_int(j, "step") : -1;
    int ok = cJSON_IsString(f) && !strcmp(f->valuestring, STATE_FORMAT) && s->step >= 0;
    cJSON_Delete(j);
    if (!ok) return dfm_fail(DFM_E_FORMAT, "'%s': not an optimizer state (" STATE_FORMAT ")", path);
    if (dfm_st_count(s->st[0]) != 2 * o->n)
        return dfm_fail(DFM_E_FORMAT, "'%s': %d tensors, want %d (exp_avg and exp_avg_sq of %d parameters)", path,
                        dfm_st_count(s->st[0]), 2 * o->n, o->n);
    char nm[1100];
    for (int i = 0; i < o->n; i++)
        for (int k = 0; k < 2; k++) {
            snprintf(nm, sizeof nm, "%s%s", o->s[i].name, k ? ".exp_avg_sq" : ".exp_avg");
            const dfm_st_tensor *t = dfm_st_find(s->st[0], nm);
            if (!t || t->dtype != DFM_F32 || t->nbytes != (size_t)dfm_tensor_numel(o->s[i].param) * sizeof(float))
                return dfm_fail(DFM_E_FORMAT, "'%s': no F32 tensor '%s' of %lld elements", path, nm,
                                (long long)dfm_tensor_numel(o->s[i].param));
            s->mv[2 * i + k] = t;
        }
    return 0;
}

static int open_sharded(src_t *s, dfm_adamw *o, const char *dir, int world, const int64_t *off)
{
    s->world = world;
    if (!(s->st = calloc((size_t)world, sizeof *s->st)) || !(s->mv = calloc((size_t)(2 * world), sizeof *s->mv)))
        return dfm_fail(DFM_E_NOMEM, "adamw_load_state: out of memory");
    int rc = buckets_build(o, off, &s->bk);
    if (rc) return rc;
    char *layout = layout_string(o);
    if (!layout) return dfm_fail(DFM_E_NOMEM, "adamw_load_state: out of memory");
    int64_t total = off[o->n];
    for (int r = 0; r < world && !rc; r++) {
        char name[64], path[4096];
        shard_name(name, sizeof name, r, world);
        if ((rc = dfm_path_join(path, sizeof path, dir, name))) break;
        struct stat sb;
        if (stat(path, &sb)) {
            rc = dfm_fail(DFM_E_FORMAT, "'%s': missing (a checkpoint of %d ranks has one state file per rank)", path, world);
            break;
        }
        if ((rc = dfm_st_open(&s->st[r], path))) break;
        cJSON *j = cJSON_Parse(dfm_st_metadata(s->st[r]));
        const cJSON *f = j ? cJSON_GetObjectItemCaseSensitive(j, "format") : NULL;
        const cJSON *pl = j ? cJSON_GetObjectItemCaseSensitive(j, "params") : NULL;
        int64_t step = j ? meta_int(j, "step") : -1;
        if (!cJSON_IsString(f) || strcmp(f->valuestring, SHARD_FORMAT) || step < 0)
            rc = dfm_fail(DFM_E_FORMAT, "'%s': not an optimizer state shard (" SHARD_FORMAT ")", path);
        else if (meta_int(j, "world") != world || meta_int(j, "rank") != r || meta_int(j, "bucket") != B)
            rc = dfm_fail(DFM_E_FORMAT, "'%s': its metadata names another layout (world %lld, rank %lld, bucket %lld)", path,
                          (long long)meta_int(j, "world"), (long long)meta_int(j, "rank"), (long long)meta_int(j, "bucket"));
        else if (meta_int(j, "total") != total || !cJSON_IsString(pl) || strcmp(pl->valuestring, layout))
            rc = dfm_fail(DFM_E_FORMAT, "'%s': saved for other trainable parameters (%lld elements; this run trains %lld in %d tensors)",
                          path, (long long)meta_int(j, "total"), (long long)total, o->n);
        else if (r && step != s->step)
            rc = dfm_fail(DFM_E_FORMAT, "'%s': step %lld, rank 0's file says %lld", path, (long long)step, (long long)s->step);
        else
            s->step = step;
        cJSON_Delete(j);
        int64_t want = shard_len(&s->bk, world, r, s->bk.nb);
        for (int k = 0; k < 2 && !rc; k++) {
            const dfm_st_tensor *t = dfm_st_find(s->st[r], k ? "exp_avg_sq" : "exp_avg");
            if (!t || t->dtype != DFM_F32 || t->nbytes != (size_t)want * sizeof(float))
                rc = dfm_fail(DFM_E_FORMAT, "'%s': no F32 '%s' of %lld elements", path, k ? "exp_avg_sq" : "exp_avg", (long long)want);
            else
                s->mv[2 * r + k] = t;
        }
    }
    free(layout);
    return rc;
}

/* dst[0..n) = moment k (0 exp_avg, 1 exp_avg_sq) at flat [a, a + n) of the saved vector */
static void src_read(const src_t *s, const dfm_adamw *o, const int64_t *off, int k, int64_t a, int64_t n, float *dst)
{
    (void)o;
    while (n > 0) {
        const float *from;
        int64_t seg;
        if (!s->world) {
            int i = slot_at(off, o->n, a);
            while (off[i + 1] <= a) i++;
            seg = off[i + 1] - a;
            from = (const float *)s->mv[2 * i + k]->data + (a - off[i]);
        } else {
            const buckets_t *b = &s->bk;
            int lo_k = 0, hi_k = b->nb - 1; /* the bucket holding a */
            while (lo_k < hi_k) {
                int mid = (lo_k + hi_k + 1) / 2;
                if (b->bs[mid] <= a) lo_k = mid;
                else hi_k = mid - 1;
            }
            int kb = lo_k;
            int64_t u = a - b->bs[kb], L = b->bs[kb + 1] - b->bs[kb], q = piece_q(L, s->world);
            int r = (int)(u / q);
            int64_t plen, lo = piece_lo(L, s->world, r, &plen);
            seg = lo + plen - u;
            from = (const float *)s->mv[2 * r + k]->data + shard_len(b, s->world, r, kb) + (u - lo);
        }
        if (seg > n) seg = n;
        memcpy(dst, from, (size_t)seg * sizeof(float));
        dst += seg, a += seg, n -= seg;
    }
}

/* the world size of the rank files in dir (0: none) */
static int find_shards(const char *dir)
{
    DIR *dp = opendir(dir);
    if (!dp) return 0;
    struct dirent *de;
    int world = 0;
    while ((de = readdir(dp))) {
        int r, w, used = 0;
        if (sscanf(de->d_name, "optimizer-rank-%5d-of-%5d.safetensors%n", &r, &w, &used) == 2 && used &&
            !de->d_name[used] && w > 0)
            world = w;
    }
    closedir(dp);
    return world;
}

int dfm_adamw_load_state(dfm_adamw *o, const char *dir)
{
    if (!o || !dir) return dfm_fail(DFM_E_ARG, "adamw_load_state: NULL argument");
    char path[4096];
    int rc = dfm_path_join(path, sizeof path, dir, "optimizer.safetensors");
    if (rc) return rc;
    struct stat sb;
    int unsharded = !stat(path, &sb), world = unsharded ? 0 : find_shards(dir);
    if (unsharded && !o->sh) return dfm_adamw_load(o, path); /* the replicated form, as saved */
    if (!unsharded && !world) return dfm_fail(DFM_E_FORMAT, "'%s': no optimizer state (optimizer.safetensors or optimizer-rank-*.safetensors)", dir);
    int64_t *off = flat_offsets(o);
    if (!off) return dfm_fail(DFM_E_NOMEM, "adamw_load_state: out of memory");
    src_t s = {0};
    rc = unsharded ? open_unsharded(&s, o, path) : open_sharded(&s, o, dir, world, off);
    if (!rc && !o->sh) rc = dfm_adamw_state_ready(o);
    for (int k = 0; k < 2 && !rc; k++) {
        if (o->sh) { /* this rank's pieces */
            dfm_adamw_sharded *sh = o->sh;
            float *dst = k ? sh->v : sh->m, *host = dst;
            if (sh->dev != DFM_CPU && !(host = malloc((size_t)(sh->len ? sh->len : 1) * sizeof(float)))) {
                rc = dfm_fail(DFM_E_NOMEM, "adamw_load_state: out of memory");
                break;
            }
            for (int kb = 0; kb < sh->bk.nb; kb++) {
                int64_t plen, lo = piece_lo(sh->bk.bs[kb + 1] - sh->bk.bs[kb], sh->world, sh->rank, &plen);
                src_read(&s, o, off, k, sh->bk.bs[kb] + lo, plen, host + sh->so[kb]);
            }
            if (host != dst) {
                dfm_tensor h = vec(host, sh->len, DFM_CPU), dv = {0};
                if (sh->len && !(rc = dfm_tensor_copy(&dv, &h, sh->dev))) { /* then into place */
                    rc = mcopy(dst, dv.data, sh->len, sh->dev);
                    dfm_tensor_free(&dv);
                }
                free(host);
            }
            continue;
        }
        for (int i = 0; i < o->n && !rc; i++) { /* every parameter's moments */
            dfm_tensor *t = k ? &o->s[i].v : &o->s[i].m;
            if (t->device == DFM_CPU) {
                src_read(&s, o, off, k, off[i], off[i + 1] - off[i], t->data);
                continue;
            }
            dfm_tensor h = {0}, dev = {0};
            if (!(rc = dfm_tensor_alloc(&h, DFM_F32, DFM_CPU, t->ndim, t->shape))) {
                src_read(&s, o, off, k, off[i], off[i + 1] - off[i], h.data);
                if (!(rc = dfm_tensor_copy(&dev, &h, t->device))) {
                    dfm_tensor_free(t);
                    *t = dev;
                }
            }
            dfm_tensor_free(&h);
        }
    }
    if (!rc) o->step = s.step;
    src_close(&s);
    free(off);
    return rc ? dfm_fail_ctx(rc, "loading the optimizer state from '%s'", dir) : 0;
}
