/* test_train_data.c — the training loader (data/train_data.h) and shard random access
 * (data/sample_index.h) on small shards written here with the stream writer and the sharder.
 *
 * Batch composition is checked against a reference of the sampler written below from the
 * header's description (NeMo's SequentialBucketSampler with dfm's Philox Fisher–Yates): its own
 * random stream over dfm_philox4x32, its own bucket grouping, padding, slicing and cutting. */
#include "test.h"
#include "base/buf.h"
#include "base/dtype.h"
#include "base/error.h"
#include "base/rng.h"
#include "data/sample_index.h"
#include "data/train_data.h"
#include "io/npy.h"
#include "io/sample.h"
#include "io/shard.h"
#include "io/stream.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

/* ---- building samples ------------------------------------------------------------------ */

enum { NO_TEXT = 1, NAN_LAT = 2, BAD_TEXT_NPY = 4, JSON_SHAPE = 8, NO_BUCKET = 16, F16 = 32,
       TEXT3D = 64, SHORT_LAT = 128, NO_LAT = 256 };

typedef struct {
    char key[32];
    int64_t shape[4];
    int pw, ph;    /* json bucket (0: none) */
    int L, D;
    int flags;
    float base;
} tsample;

static float lat_val(const tsample *t, size_t i) { return t->base + (float)(i % 8) * 0.125f; }
static float txt_val(const tsample *t, size_t i) { return t->base + (float)(i % 4) * 0.25f; }

static void build(dfm_sample *s, const tsample *t)
{
    dfm_sample_init(s);
    dfm_sample_set_key(s, t->key);
    dfm_sample_set_str(s, "txt", "a caption");
    cJSON *j = cJSON_CreateObject();
    if (!(t->flags & NO_BUCKET)) {
        cJSON *b = cJSON_AddObjectToObject(j, "bucket");
        cJSON_AddNumberToObject(b, "width", t->pw);
        cJSON_AddNumberToObject(b, "height", t->ph);
        cJSON_AddNumberToObject(b, "frames", 1);
    }
    cJSON *l = cJSON_AddObjectToObject(j, "latents");
    int64_t js[4] = {t->shape[0], t->shape[1], t->shape[2], t->shape[3] + ((t->flags & JSON_SHAPE) ? 1 : 0)};
    cJSON *sh = cJSON_AddArrayToObject(l, "shape");
    for (int i = 0; i < 4; i++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)js[i]));
    cJSON *tx = cJSON_AddObjectToObject(j, "text");
    cJSON_AddNumberToObject(tx, "tokens", t->L);
    dfm_sample_set_json(s, j);
    cJSON_Delete(j);
    size_t nl = (size_t)(t->shape[0] * t->shape[1] * t->shape[2] * t->shape[3]);
    float *lv = malloc(nl * sizeof *lv);
    for (size_t i = 0; i < nl; i++) lv[i] = lat_val(t, i);
    if (t->flags & NAN_LAT) lv[nl / 2] = NAN;
    uint8_t *npy;
    size_t len;
    int f16 = (t->flags & F16) != 0;
    uint16_t *h = malloc(nl * 2 + (size_t)t->L * t->D * 2 + 16);
    if (f16) for (size_t i = 0; i < nl; i++) h[i] = dfm_f32_to_f16(lv[i]);
    if (!(t->flags & NO_LAT)) {
        dfm_npy_build(f16 ? DFM_NPY_F16 : DFM_NPY_F32, 4, t->shape, f16 ? (void *)h : (void *)lv, &npy, &len);
        if (t->flags & SHORT_LAT) len -= 8;
        dfm_sample_set_owned(s, "latents.npy", npy, len);
    }
    if (!(t->flags & NO_TEXT)) {
        size_t nt = (size_t)t->L * t->D;
        float *tv = malloc(nt * sizeof *tv);
        for (size_t i = 0; i < nt; i++) tv[i] = txt_val(t, i);
        if (f16) for (size_t i = 0; i < nt; i++) h[i] = dfm_f32_to_f16(tv[i]);
        int64_t ts[3] = {1, t->L, t->D};
        int three = (t->flags & TEXT3D) != 0;
        dfm_npy_build(f16 ? DFM_NPY_F16 : DFM_NPY_F32, three ? 3 : 2, three ? ts : ts + 1,
                      f16 ? (void *)h : (void *)tv, &npy, &len);
        if (t->flags & BAD_TEXT_NPY) memcpy(npy, "NOTNUMPY", 8);
        dfm_sample_set_owned(s, "text.npy", npy, len);
        free(tv);
    }
    free(h);
    free(lv);
}

static int write_shard(const char *path, int level, const tsample *ts, int n)
{
    dfm_writer *w;
    int rc = dfm_writer_open(&w, path, DFM_FRAMING_TAR, level);
    for (int i = 0; i < n && !rc; i++) {
        dfm_sample s;
        build(&s, &ts[i]);
        rc = dfm_writer_put(w, &s);
        dfm_sample_free(&s);
    }
    if (rc) {
        dfm_writer_abort(w);
        return rc;
    }
    return dfm_writer_close(w);
}

static void tdir(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/td_%s", dfm_test_tmpdir(), name);
    mkdir(out, 0755);
}

/* The standard set: 23 samples in four shapes, listed in scan order. */
static const int64_t SHAPES[4][4] = {{4, 1, 4, 6}, {4, 1, 6, 4}, {4, 2, 4, 4}, {4, 1, 2, 4}};

static void std_samples(tsample *ts, int n, const char *prefix, int first)
{
    for (int i = 0; i < n; i++) {
        tsample *t = &ts[i];
        memset(t, 0, sizeof *t);
        int g = first + i;
        snprintf(t->key, sizeof t->key, "%s%03d", prefix, g);
        int s = (g * 7 + g / 3) % 4;
        if (g < 2) s = 0; /* shape order of first appearance: 0 then the rest */
        memcpy(t->shape, SHAPES[s], sizeof t->shape);
        if (s == 0) t->pw = 48, t->ph = 32;
        else if (s == 1) t->flags |= NO_BUCKET;
        else t->pw = (int)t->shape[3] * 8, t->ph = (int)t->shape[2] * 8;
        t->L = 1 + g % 5;
        t->D = 8;
        t->base = (float)g;
        if (g % 3 == 1) t->flags |= F16;
        if (g % 4 == 2) t->flags |= TEXT3D;
    }
}

/* ---- the reference sampler ------------------------------------------------------------- */

typedef struct {
    uint32_t key[2];
    uint64_t ctr;
    uint32_t w[4];
    int left;
} rstream;

static uint32_t r32(rstream *r)
{
    if (!r->left) {
        uint32_t c[4] = {(uint32_t)r->ctr, (uint32_t)(r->ctr >> 32), 0, 0};
        dfm_philox4x32(c, r->key, r->w);
        r->ctr++;
        r->left = 4;
    }
    return r->w[4 - r->left--];
}

static uint64_t runiform(rstream *r, uint64_t n)
{
    /* reject the lowest 2^64 mod n draws */
    uint64_t rem = (uint64_t)((((unsigned __int128)1) << 64) % n);
    for (;;) {
        uint64_t a = r32(r), b = r32(r);
        uint64_t x = a + (b << 32);
        if (x >= rem) return x % n;
    }
}

static void rshuffle(rstream *r, int *a, int n)
{
    for (int i = n - 1; i >= 1; i--) {
        int j = (int)runiform(r, (uint64_t)i + 1);
        int t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

typedef struct {
    int nb;
    int n[64];      /* samples per batch */
    int s[64][64];  /* sample index (into the tsample list) */
} rbatches;

typedef struct {
    const tsample *ts;
    int nts;
    const int *spec_first; /* nspecs + 1 */
    int nspecs;
    const double *repeats;
} rdata;

/* Reference batches of one epoch; returns the count. */
static int ref_epoch(const rdata *rd, const dfm_train_data_opts *o, int64_t epoch, rbatches *out)
{
    int base_w = o->base_w ? o->base_w : 512, base_h = o->base_h ? o->base_h : 512;
    int world = o->world ? o->world : 1;
    /* buckets in first-appearance order */
    int nb = 0, bucket_of[256], first[16];
    const tsample *rep[16];
    for (int i = 0; i < rd->nts; i++) {
        int b = 0;
        while (b < nb && memcmp(rep[b]->shape, rd->ts[i].shape, sizeof rep[b]->shape)) b++;
        if (b == nb) rep[nb] = &rd->ts[i], first[nb] = i, nb++;
        bucket_of[i] = b;
    }
    /* sorted by F*H*W, ties by first appearance (insertion sort: stable) */
    int ord[16];
    for (int i = 0; i < nb; i++) ord[i] = i;
    for (int i = 1; i < nb; i++)
        for (int k = i; k > 0; k--) {
            const int64_t *a = rep[ord[k - 1]]->shape, *b = rep[ord[k]]->shape;
            if (a[1] * a[2] * a[3] <= b[1] * b[2] * b[3]) break;
            int t = ord[k];
            ord[k] = ord[k - 1];
            ord[k - 1] = t;
        }
    (void)first;
    /* lists after repeats */
    int lists[16][256], len[16] = {0};
    for (int s = 0; s < rd->nspecs; s++) {
        int a = rd->spec_first[s], n = rd->spec_first[s + 1] - a;
        double r = rd->repeats ? rd->repeats[s] : 1;
        int k = (int)(n * r);
        for (int j = 0; j < k; j++) {
            int smp = a + j % n;
            int sb = 0;
            while (ord[sb] != bucket_of[smp]) sb++;
            lists[sb][len[sb]++] = smp;
        }
    }
    rstream g = {{(uint32_t)(o->seed + (uint64_t)epoch), (uint32_t)((o->seed + (uint64_t)epoch) >> 32)}, 0, {0}, 0};
    int border[16];
    for (int i = 0; i < nb; i++) border[i] = i;
    if (o->shuffle) rshuffle(&g, border, nb);
    out->nb = 0;
    for (int bi = 0; bi < nb; bi++) {
        int b = border[bi];
        int n = len[b];
        if (!n) continue;
        int l[256];
        memcpy(l, lists[b], (size_t)n * sizeof *l);
        if (o->shuffle) rshuffle(&g, l, n);
        int padded = n;
        while (padded % world) padded++;
        int mine[256], m = 0;
        for (int i = 0; i < padded; i++)
            if (i % world == o->rank) mine[m++] = l[i % n];
        /* batch size */
        const tsample *t = NULL;
        for (int i = 0; i < rd->nts && !t; i++)
            if (!memcmp(rd->ts[i].shape, rep[ord[b]]->shape, sizeof t->shape) && !(rd->ts[i].flags & NO_BUCKET))
                t = &rd->ts[i];
        double W = t ? t->pw : rep[ord[b]]->shape[3] * 8.0, H = t ? t->ph : rep[ord[b]]->shape[2] * 8.0;
        int bs = o->batch_size;
        if (o->dynamic_batch) {
            bs = (int)floor(o->batch_size / ((W * H) / ((double)base_w * base_h)));
            if (bs < 1) bs = 1;
        }
        for (int s = 0; s < m; s += bs) {
            int c = m - s < bs ? m - s : bs;
            if (o->drop_last && c < bs) break;
            out->n[out->nb] = c;
            for (int k = 0; k < c; k++) out->s[out->nb][k] = mine[s + k];
            out->nb++;
        }
    }
    return out->nb;
}

/* Check one batch against the reference batch (sample indices, skipping bad ones): keys, shapes,
 * latents and text values. */
static int check_batch(const dfm_batch *b, const rdata *rd, const int *ref, int nref)
{
    int k = 0, fails = dfm_test_failures;
    for (int i = 0; i < nref; i++) {
        const tsample *t = &rd->ts[ref[i]];
        if (t->flags & (NO_TEXT | NAN_LAT | BAD_TEXT_NPY | JSON_SHAPE | SHORT_LAT | NO_LAT)) continue;
        if (k >= b->n) {
            CHECK(k < b->n);
            break;
        }
        CHECK_STR(b->keys[k], t->key);
        CHECK_EQ(b->C, t->shape[0]);
        CHECK_EQ(b->F, t->shape[1]);
        CHECK_EQ(b->H, t->shape[2]);
        CHECK_EQ(b->W, t->shape[3]);
        size_t nl = (size_t)(b->C * b->F * b->H * b->W);
        int bad = 0;
        for (size_t e = 0; e < nl; e++) bad += b->latents[(size_t)k * nl + e] != lat_val(t, e);
        CHECK_EQ(bad, 0);
        CHECK_EQ(b->text_rows[k], t->L);
        CHECK_EQ(b->text_dim, t->D);
        for (int e = 0; e < t->L * t->D; e++) bad += b->text[k][e] != txt_val(t, (size_t)e);
        CHECK_EQ(bad, 0);
        k++;
    }
    CHECK_EQ(b->n, k);
    return dfm_test_failures == fails;
}

/* Compare `epochs` epochs of d against the reference. */
static void check_epochs(dfm_train_data *d, const rdata *rd, const dfm_train_data_opts *o, int epochs)
{
    for (int e = 0; e < epochs; e++) {
        rbatches rb;
        int nb = ref_epoch(rd, o, e, &rb);
        CHECK_EQ(dfm_train_data_batches_per_epoch(d), nb);
        for (int i = 0; i < nb; i++) {
            dfm_batch b;
            int rc = dfm_train_data_next(d, &b);
            CHECK_EQ(rc, 0);
            if (rc) return;
            CHECK_EQ(b.epoch, e);
            CHECK_EQ(b.batch, i);
            int ok = check_batch(&b, rd, rb.s[i], rb.n[i]);
            dfm_batch_free(&b);
            if (!ok) {
                fprintf(stderr, "  (epoch %d batch %d, world %d rank %d drop_last %d dynamic %d shuffle %d)\n",
                        e, i, o->world, o->rank, o->drop_last, o->dynamic_batch, o->shuffle);
                return;
            }
        }
    }
}

/* The standard data: A.tar (12 samples) and B.tar.zst (11), as two specs. */
static tsample g_std[23];
static char g_std_a[600], g_std_b[600];

static void std_data(void)
{
    static int done;
    if (done) return;
    char dir[512];
    tdir(dir, sizeof dir, "std");
    std_samples(g_std, 23, "s", 0);
    snprintf(g_std_a, sizeof g_std_a, "%s/A.tar", dir);
    snprintf(g_std_b, sizeof g_std_b, "%s/B.tar.zst", dir);
    CHECK_EQ(write_shard(g_std_a, 0, g_std, 12), 0);
    CHECK_EQ(write_shard(g_std_b, 3, g_std + 12, 11), 0);
    done = 1;
}

/* ---- tests ------------------------------------------------------------------------------ */

TEST(train_data_sampler_reference)
{
    std_data();
    const char *specs[2] = {g_std_a, g_std_b};
    int sf[3] = {0, 12, 23};
    rdata rd = {g_std, 23, sf, 2, NULL};
    int cases = 0;
    for (int world = 1; world <= 3; world += 2)
        for (int rank = 0; rank < world; rank++)
            for (int drop = 0; drop < 2; drop++)
                for (int dyn = 0; dyn < 2; dyn++)
                    for (int shuf = 0; shuf < 2; shuf++) {
                        dfm_train_data_opts o = {.specs = specs, .nspecs = 2, .batch_size = 3,
                                                 .dynamic_batch = dyn, .base_w = 32, .base_h = 32,
                                                 .drop_last = drop, .shuffle = shuf, .seed = 42,
                                                 .rank = rank, .world = world, .prefetch = 2};
                        dfm_train_data *d;
                        int rc = dfm_train_data_open(&d, &o);
                        CHECK_EQ(rc, 0);
                        if (rc) {
                            fprintf(stderr, "  %s\n", dfm_errmsg());
                            return;
                        }
                        CHECK_EQ(dfm_train_data_samples(d), 23);
                        CHECK_EQ(dfm_train_data_buckets(d), 4);
                        CHECK_EQ(dfm_train_data_skipped(d), 0);
                        check_epochs(d, &rd, &o, 3);
                        dfm_train_data_close(d);
                        cases++;
                    }
    CHECK_EQ(cases, 32);
    /* the buckets: sorted by F*H*W then first appearance; dynamic sizes from json or latents */
    dfm_train_data_opts o = {.specs = specs, .nspecs = 2, .batch_size = 4, .dynamic_batch = 1,
                             .base_w = 32, .base_h = 32, .prefetch = 0};
    dfm_train_data *d;
    CHECK_EQ(dfm_train_data_open(&d, &o), 0);
    int64_t sh[4], n;
    int bs;
    dfm_train_data_bucket(d, 0, sh, &n, &bs);
    CHECK(!memcmp(sh, SHAPES[3], sizeof sh));
    CHECK_EQ(bs, 8); /* 32x16 pixels from json: half the base area */
    dfm_train_data_bucket(d, 1, sh, &n, &bs);
    CHECK(!memcmp(sh, SHAPES[0], sizeof sh));
    CHECK_EQ(bs, 2); /* json 48x32: 1.5x */
    dfm_train_data_bucket(d, 2, sh, &n, &bs);
    CHECK(!memcmp(sh, SHAPES[1], sizeof sh));
    CHECK_EQ(bs, 2); /* no json bucket: latents 4x6 * 8 = 32x48 */
    dfm_train_data_bucket(d, 3, sh, &n, &bs);
    CHECK(!memcmp(sh, SHAPES[2], sizeof sh));
    CHECK_EQ(bs, 4);
    dfm_train_data_close(d);
}

/* The reference itself must notice a wrong permutation: a different seed gives other batches. */
TEST(train_data_reference_sensitive)
{
    std_data();
    int sf[3] = {0, 12, 23};
    rdata rd = {g_std, 23, sf, 2, NULL};
    dfm_train_data_opts a = {.batch_size = 3, .shuffle = 1, .seed = 42}, b = a;
    b.seed = 43;
    rbatches ra, rb;
    int na = ref_epoch(&rd, &a, 0, &ra), nb = ref_epoch(&rd, &b, 0, &rb);
    int differ = na != nb;
    for (int i = 0; i < na && !differ; i++)
        differ = ra.n[i] != rb.n[i] || memcmp(ra.s[i], rb.s[i], (size_t)ra.n[i] * sizeof(int));
    CHECK(differ);
    /* and epoch 1 differs from epoch 0 */
    ref_epoch(&rd, &a, 1, &rb);
    differ = 0;
    for (int i = 0; i < na && !differ; i++)
        differ = ra.n[i] != rb.n[i] || memcmp(ra.s[i], rb.s[i], (size_t)ra.n[i] * sizeof(int));
    CHECK(differ);
}

/* A digest of a batch: keys, latents and text bits. */
static uint64_t batch_hash(const dfm_batch *b)
{
    uint64_t h = 1469598103934665603ull;
#define MIX(p, n) for (size_t q_ = 0; q_ < (n); q_++) h = (h ^ ((const uint8_t *)(p))[q_]) * 1099511628211ull
    MIX(&b->n, sizeof b->n);
    MIX(&b->epoch, sizeof b->epoch);
    MIX(&b->batch, sizeof b->batch);
    size_t nl = (size_t)(b->C * b->F * b->H * b->W);
    MIX(b->latents, (size_t)b->n * nl * sizeof(float));
    for (int i = 0; i < b->n; i++) {
        MIX(b->keys[i], strlen(b->keys[i]));
        MIX(b->text[i], (size_t)b->text_rows[i] * b->text_dim * sizeof(float));
    }
#undef MIX
    return h;
}

TEST(train_data_prefetch_and_seek)
{
    std_data();
    const char *specs[2] = {g_std_a, g_std_b};
    dfm_train_data_opts o = {.specs = specs, .nspecs = 2, .batch_size = 2, .shuffle = 1, .seed = 7,
                             .world = 3, .rank = 1};
    uint64_t want[64];
    int total = 0;
    int pf[3] = {0, 1, 4};
    for (int p = 0; p < 3; p++) {
        o.prefetch = pf[p];
        dfm_train_data *d;
        CHECK_EQ(dfm_train_data_open(&d, &o), 0);
        int64_t bpe = dfm_train_data_batches_per_epoch(d);
        if (p == 0) total = (int)(3 * bpe);
        CHECK(total <= 64);
        for (int i = 0; i < total; i++) {
            dfm_batch b;
            CHECK_EQ(dfm_train_data_next(d, &b), 0);
            uint64_t h = batch_hash(&b);
            if (p == 0) want[i] = h;
            else CHECK(h == want[i]);
            CHECK(b.wait_s >= 0);
            dfm_batch_free(&b);
        }
        dfm_train_data_close(d);
    }
    /* seek(e, b) gives what consuming from the start gives; past the epoch's end rolls over */
    o.prefetch = 2;
    dfm_train_data *d;
    CHECK_EQ(dfm_train_data_open(&d, &o), 0);
    int64_t bpe = dfm_train_data_batches_per_epoch(d);
    int64_t at[][2] = {{0, 0}, {1, 3}, {0, bpe - 1}, {2, 0}, {0, bpe + 2}, {1, 1}};
    for (int k = 0; k < 6; k++) {
        CHECK_EQ(dfm_train_data_seek(d, at[k][0], at[k][1]), 0);
        int64_t pos = at[k][0] * bpe + at[k][1];
        for (int i = 0; i < 3 && pos + i < total; i++) {
            dfm_batch b;
            CHECK_EQ(dfm_train_data_next(d, &b), 0);
            CHECK(batch_hash(&b) == want[pos + i]);
            CHECK_EQ(b.epoch * bpe + b.batch, pos + i);
            dfm_batch_free(&b);
        }
    }
    CHECK(dfm_train_data_seek(d, -1, 0) < 0);
    /* close while the thread is reading ahead */
    dfm_batch b;
    CHECK_EQ(dfm_train_data_next(d, &b), 0);
    dfm_batch_free(&b);
    dfm_train_data_close(d);
}

TEST(train_data_repeats_and_specs)
{
    char dir[512], p[700];
    tdir(dir, sizeof dir, "specs");
    tsample ts[20];
    std_samples(ts, 20, "r", 0);
    /* spec 1: a directory of shards without an index (x0.tar, x1.tar.zst); spec 2: a glob */
    char d1[600];
    snprintf(d1, sizeof d1, "%s/one", dir);
    mkdir(d1, 0755);
    snprintf(p, sizeof p, "%s/x1.tar.zst", d1);
    CHECK_EQ(write_shard(p, 1, ts + 4, 3), 0);
    snprintf(p, sizeof p, "%s/x0.tar", d1);
    CHECK_EQ(write_shard(p, 0, ts, 4), 0);
    snprintf(p, sizeof p, "%s/notes.txt", d1);
    FILE *f = fopen(p, "w");
    fputs("not a shard", f);
    fclose(f);
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/g-%d.tar", dir, i);
        CHECK_EQ(write_shard(p, 0, ts + 7 + 3 * i, i == 2 ? 4 : 3), 0);
    }
    char glob[600];
    snprintf(glob, sizeof glob, "%s/g-*.tar", dir);
    const char *specs[2] = {d1, glob};
    double reps[2] = {2, 0.5};
    int sf[3] = {0, 7, 17};
    /* the sample list in scan order: x0 (ts 0..3), x1 (4..6), g-0..2 (7..16) */
    rdata rd = {ts, 17, sf, 2, reps};
    for (int drop = 0; drop < 2; drop++) {
        dfm_train_data_opts o = {.specs = specs, .nspecs = 2, .repeats = reps, .batch_size = 2,
                                 .shuffle = 1, .seed = 5, .drop_last = drop, .prefetch = 1};
        dfm_train_data *d;
        CHECK_EQ(dfm_train_data_open(&d, &o), 0);
        CHECK_EQ(dfm_train_data_samples(d), 7 * 2 + 10 / 2);
        check_epochs(d, &rd, &o, 2);
        dfm_train_data_close(d);
    }
    /* 0.5 of 3 samples is 1 example */
    {
        snprintf(p, sizeof p, "%s/g-0.tar", dir);
        const char *s1[1] = {p};
        double r1[1] = {0.5};
        dfm_train_data_opts o = {.specs = s1, .nspecs = 1, .repeats = r1, .batch_size = 1};
        dfm_train_data *d;
        CHECK_EQ(dfm_train_data_open(&d, &o), 0);
        CHECK_EQ(dfm_train_data_samples(d), 1);
        dfm_batch b;
        CHECK_EQ(dfm_train_data_next(d, &b), 0);
        CHECK_STR(b.keys[0], ts[7].key);
        dfm_batch_free(&b);
        dfm_train_data_close(d);
    }
    /* dfm-shard's series with index.json, by directory and by the index path */
    char sd[600];
    snprintf(sd, sizeof sd, "%s/sharded", dir);
    char pat[700];
    snprintf(pat, sizeof pat, "%s/train-%%06d.tar.zst", sd);
    dfm_shard_opts so = {.pattern = pat, .max_count = 6, .by_bucket = 1};
    dfm_sharder *sh;
    CHECK_EQ(dfm_sharder_new(&sh, &so), 0);
    for (int i = 0; i < 20; i++) {
        dfm_sample s;
        build(&s, &ts[i]);
        CHECK_EQ(dfm_sharder_put(sh, &s), 0);
        dfm_sample_free(&s);
    }
    int nsh;
    uint64_t nsm;
    CHECK_EQ(dfm_sharder_close(sh, 0, &nsh, &nsm), 0);
    CHECK_EQ(nsm, 20);
    char idx[700];
    snprintf(idx, sizeof idx, "%s/index.json", sd);
    const char *variants[2] = {sd, idx};
    for (int v = 0; v < 2; v++) {
        const char *s1[1] = {variants[v]};
        dfm_train_data_opts o = {.specs = s1, .nspecs = 1, .batch_size = 4};
        dfm_train_data *d;
        CHECK_EQ(dfm_train_data_open(&d, &o), 0);
        CHECK_EQ(dfm_train_data_samples(d), 20);
        CHECK_EQ(dfm_train_data_buckets(d), 4);
        /* one epoch holds every key once */
        int seen[20] = {0};
        for (int64_t i = 0; i < dfm_train_data_batches_per_epoch(d); i++) {
            dfm_batch b;
            CHECK_EQ(dfm_train_data_next(d, &b), 0);
            for (int k = 0; k < b.n; k++) {
                int id = atoi(b.keys[k] + 1);
                if (id >= 0 && id < 20) seen[id]++;
            }
            dfm_batch_free(&b);
        }
        for (int i = 0; i < 20; i++) CHECK_EQ(seen[i], 1);
        dfm_train_data_close(d);
    }
    /* specs that match nothing */
    char nomatch[700];
    snprintf(nomatch, sizeof nomatch, "%s/x*", dir);
    const char *bad[1] = {nomatch};
    dfm_train_data_opts o = {.specs = bad, .nspecs = 1, .batch_size = 1};
    dfm_train_data *d = NULL;
    CHECK(dfm_train_data_open(&d, &o) < 0);
    char want[800];
    snprintf(want, sizeof want, "no shards match '%s'", nomatch);
    CHECK_STR(dfm_errmsg(), want);
    CHECK(d == NULL);
    snprintf(nomatch, sizeof nomatch, "%s/missing.tar", dir);
    CHECK(dfm_train_data_open(&d, &o) < 0);
    CHECK(strstr(dfm_errmsg(), "missing.tar") != NULL);
    /* drop_last with too few examples: no batch at all */
    snprintf(p, sizeof p, "%s/g-0.tar", dir);
    const char *s1[1] = {p};
    dfm_train_data_opts o2 = {.specs = s1, .nspecs = 1, .batch_size = 8, .drop_last = 1};
    CHECK(dfm_train_data_open(&d, &o2) < 0);
    CHECK(strstr(dfm_errmsg(), "no batch per epoch") != NULL);
}

/* Count zstd frames in a file. */
static int zstd_frames(const char *path)
{
    dfm_buf b = {0};
    if (dfm_read_file(path, 0, &b)) return -1;
    int n = 0;
    size_t at = 0;
    while (at < b.len) {
        size_t k = ZSTD_findFrameCompressedSize(b.data + at, b.len - at);
        if (ZSTD_isError(k)) {
            n = -1;
            break;
        }
        at += k;
        n++;
    }
    dfm_buf_free(&b);
    return n;
}

static int count_cb(void *ud, const dfm_sidx_entry *e)
{
    int *n = ud;
    (*n)++;
    return e->lat_ok ? 0 : -100;
}

TEST(train_data_zstd_frames)
{
    char dir[512], plain[600], multi[600], single[600];
    tdir(dir, sizeof dir, "zstd");
    tsample ts[9];
    std_samples(ts, 9, "z", 0);
    snprintf(plain, sizeof plain, "%s/p.tar", dir);
    snprintf(multi, sizeof multi, "%s/m.tar.zst", dir);
    snprintf(single, sizeof single, "%s/s.tar.zst", dir);
    CHECK_EQ(write_shard(plain, 0, ts, 9), 0);
    CHECK_EQ(write_shard(multi, 3, ts, 9), 0);
    /* dfm's writer: one frame per sample plus the end blocks' */
    CHECK_EQ(zstd_frames(multi), 10);
    /* the same tar bytes as one zstd frame, by the library directly */
    dfm_buf tb = {0};
    CHECK_EQ(dfm_read_file(plain, 0, &tb), 0);
    size_t cap = ZSTD_compressBound(tb.len);
    uint8_t *z = malloc(cap);
    size_t zn = ZSTD_compress(z, cap, tb.data, tb.len, 3);
    CHECK(!ZSTD_isError(zn));
    FILE *f = fopen(single, "wb");
    fwrite(z, 1, zn, f);
    fclose(f);
    free(z);
    dfm_buf_free(&tb);
    CHECK_EQ(zstd_frames(single), 1);
    /* the scans: the multi-frame shard jumps frame to frame, the single one is read whole */
    dfm_sidx_info in;
    int n = 0;
    CHECK_EQ(dfm_sidx_scan(multi, count_cb, &n, &in), 0);
    CHECK_EQ(n, 9);
    CHECK(in.zstd && in.framed);
    CHECK_EQ(in.shared, 0);
    n = 0;
    CHECK_EQ(dfm_sidx_scan(single, count_cb, &n, &in), 0);
    CHECK_EQ(n, 9);
    CHECK(in.zstd && !in.framed);
    CHECK_EQ(in.frames, 1);
    CHECK_EQ(in.shared, 8);
    n = 0;
    CHECK_EQ(dfm_sidx_scan(plain, count_cb, &n, &in), 0);
    CHECK_EQ(n, 9);
    CHECK(!in.zstd);
    /* all three give the same batches */
    const char *paths[3] = {plain, multi, single};
    uint64_t want[16];
    int nb = 0;
    for (int v = 0; v < 3; v++) {
        const char *s1[1] = {paths[v]};
        dfm_train_data_opts o = {.specs = s1, .nspecs = 1, .batch_size = 2, .shuffle = 1, .seed = 3,
                                 .prefetch = v};
        dfm_train_data *d;
        CHECK_EQ(dfm_train_data_open(&d, &o), 0);
        if (v == 0) nb = (int)dfm_train_data_batches_per_epoch(d) * 2;
        CHECK(nb <= 16);
        for (int i = 0; i < nb; i++) {
            dfm_batch b;
            CHECK_EQ(dfm_train_data_next(d, &b), 0);
            if (v == 0) want[i] = batch_hash(&b);
            else CHECK(batch_hash(&b) == want[i]);
            dfm_batch_free(&b);
        }
        dfm_train_data_close(d);
    }
}

TEST(train_data_bad_samples)
{
    char dir[512], p1[600], p2[600];
    tdir(dir, sizeof dir, "bad");
    tsample ts[14];
    std_samples(ts, 14, "b", 0);
    for (int i = 0; i < 14; i++) memcpy(ts[i].shape, SHAPES[0], sizeof ts[i].shape), ts[i].pw = 48, ts[i].ph = 32,
                                 ts[i].flags &= ~NO_BUCKET;
    ts[1].flags |= BAD_TEXT_NPY;
    ts[3].flags |= NO_TEXT;
    ts[4].flags |= NAN_LAT;
    ts[6].flags |= JSON_SHAPE;
    ts[8].flags |= SHORT_LAT;
    ts[9].flags |= NO_LAT;      /* found at the scan */
    ts[11].D = 9;               /* its text dim differs from its batch's first sample */
    snprintf(p1, sizeof p1, "%s/b.tar", dir);
    snprintf(p2, sizeof p2, "%s/b.tar.zst", dir);
    CHECK_EQ(write_shard(p1, 0, ts, 14), 0);
    CHECK_EQ(write_shard(p2, 2, ts, 14), 0);
    for (int v = 0; v < 2; v++) {
        const char *s1[1] = {v ? p2 : p1};
        dfm_train_data_opts o = {.specs = s1, .nspecs = 1, .batch_size = 13, .prefetch = 2 * v};
        dfm_train_data *d;
        CHECK_EQ(dfm_train_data_open(&d, &o), 0);
        CHECK_EQ(dfm_train_data_samples(d), 13); /* the one without latents is not indexed */
        CHECK_EQ(dfm_train_data_skipped(d), 1);
        for (int e = 0; e < 2; e++) {
            dfm_batch b;
            CHECK_EQ(dfm_train_data_next(d, &b), 0);
            /* the good ones, in order: 0 2 5 7 10 12 13 (11 has D = 9) */
            static const int good[] = {0, 2, 5, 7, 10, 12, 13};
            CHECK_EQ(b.n, 7);
            for (int k = 0; k < b.n && k < 7; k++) CHECK_STR(b.keys[k], ts[good[k]].key);
            for (int k = 0; k < b.n && k < 7; k++) {
                size_t nl = 4 * 4 * 6;
                CHECK(b.latents[(size_t)k * nl + 3] == lat_val(&ts[good[k]], 3));
            }
            CHECK_EQ(b.epoch, e);
            dfm_batch_free(&b);
            CHECK_EQ(dfm_train_data_skipped(d), 1 + 6 * (e + 1));
        }
        dfm_train_data_close(d);
    }
    /* batch size 1: a bad sample's batch is skipped (batch numbers go on) */
    const char *s1[1] = {p1};
    dfm_train_data_opts o = {.specs = s1, .nspecs = 1, .batch_size = 1};
    dfm_train_data *d;
    CHECK_EQ(dfm_train_data_open(&d, &o), 0);
    dfm_batch b;
    CHECK_EQ(dfm_train_data_next(d, &b), 0);
    CHECK_EQ(b.batch, 0);
    dfm_batch_free(&b);
    CHECK_EQ(dfm_train_data_next(d, &b), 0);
    CHECK_EQ(b.batch, 2); /* sample 1 (batch 1) is bad */
    CHECK_STR(b.keys[0], ts[2].key);
    dfm_batch_free(&b);
    /* a shard that vanishes is the dataset's failure, and it stays failed */
    char moved[700];
    snprintf(moved, sizeof moved, "%s.moved", p1);
    CHECK_EQ(rename(p1, moved), 0);
    CHECK(dfm_train_data_next(d, &b) < 0);
    CHECK(strstr(dfm_errmsg(), "b.tar") != NULL);
    CHECK(dfm_train_data_next(d, &b) < 0);
    dfm_train_data_close(d);
    CHECK_EQ(rename(moved, p1), 0);
    /* a shard whose every sample is bad: an error after a whole epoch, not a hang */
    char p3[600];
    snprintf(p3, sizeof p3, "%s/allbad.tar", dir);
    tsample tb[3];
    memcpy(tb, ts, sizeof tb);
    for (int i = 0; i < 3; i++) tb[i].flags |= NO_TEXT;
    CHECK_EQ(write_shard(p3, 0, tb, 3), 0);
    const char *s3[1] = {p3};
    dfm_train_data_opts o3 = {.specs = s3, .nspecs = 1, .batch_size = 1, .prefetch = 1};
    CHECK_EQ(dfm_train_data_open(&d, &o3), 0);
    CHECK(dfm_train_data_next(d, &b) < 0);
    CHECK(strstr(dfm_errmsg(), "bad") != NULL);
    dfm_train_data_close(d);
}
