/* stats.c — dfm-stats' counting and its two reports (see stats.h for what each number means).
 * One pass, one sample at a time; the histograms are chosen once the pass is over, from exact
 * distributions of the (few) distinct values. Not here: reading, the contact sheet. */
#include "data/stats.h"
#include "base/error.h"
#include "base/strset.h"
#include "io/npy.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- histograms ---------------------------------------------------------------------------- */

/* The k-th nice number (1, 2, 5 × 10^e) counted from 10^e0 (k >= 0). */
static double nice(int e0, int k)
{
    static const double m[3] = {1, 2, 5};
    return m[k % 3] * pow(10.0, e0 + k / 3);
}

/* Bins for width w: lo and n. */
static void bins_for(double min, double max, double w, dfm_stats_hist_bins *b)
{
    b->width = w;
    b->lo = floor(min / w) * w;
    if (b->lo > min) b->lo -= w; /* floating error in min / w */
    b->n = dfm_stats_hist_index(&(dfm_stats_hist_bins){b->lo, w, 1 << 30}, max) + 1;
}

int dfm_stats_hist_choose(double min, double max, int integer, int max_bins, dfm_stats_hist_bins *b)
{
    if (!isfinite(min) || !isfinite(max) || min > max || max_bins < 2 || !b)
        return dfm_fail(DFM_E_ARG, "histogram: bad range [%g, %g] or %d bins", min, max, max_bins);
    double want = (max - min) / max_bins; /* the smallest width that can do */
    if (min == max) want = integer || min == 0 ? 1 : fabs(min) / max_bins;
    if (integer && want < 1) want = 1;
    int e0 = (int)floor(log10(want)) - 1, k = 0;
    while (nice(e0, k) < want * (1 - 1e-12)) k++;
    for (; k < 64; k++) { /* width max(|min|, |max|) always fits in 2 bins: k stays small */
        double w = nice(e0, k);
        if (integer && w < 1) continue;
        bins_for(min, max, w, b);
        if (b->n <= max_bins) return 0;
    }
    return dfm_fail(DFM_E_ARG, "histogram: no bins for [%g, %g]", min, max);
}

double dfm_stats_hist_edge(const dfm_stats_hist_bins *b, int i) { return b->lo + i * b->width; }

int dfm_stats_hist_index(const dfm_stats_hist_bins *b, double v)
{
    double q = floor((v - b->lo) / b->width);
    int i = q < 0 ? 0 : q >= b->n ? b->n - 1 : (int)q;
    /* the division may round across an edge: settle it against the edges themselves */
    while (i > 0 && v < dfm_stats_hist_edge(b, i)) i--;
    while (i < b->n - 1 && v >= dfm_stats_hist_edge(b, i + 1)) i++;
    return i;
}

/* ---- distributions ------------------------------------------------------------------------ */

int dfm_stats_dist_add(dfm_stats_dist *d, double v)
{
    if (!isfinite(v)) return dfm_fail(DFM_E_ARG, "distribution: %g is not finite", v);
    size_t lo = 0, hi = d->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (d->v[mid] < v) lo = mid + 1;
        else hi = mid;
    }
    if (lo < d->n && d->v[lo] == v) {
        d->c[lo]++;
        d->count++;
        return 0;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 64;
        double *nv = dfm_realloc(d->v, cap * sizeof *nv);
        if (!nv) return DFM_E_NOMEM;
        d->v = nv;
        uint64_t *nc = dfm_realloc(d->c, cap * sizeof *nc);
        if (!nc) return DFM_E_NOMEM;
        d->c = nc;
        d->cap = cap;
    }
    memmove(d->v + lo + 1, d->v + lo, (d->n - lo) * sizeof *d->v);
    memmove(d->c + lo + 1, d->c + lo, (d->n - lo) * sizeof *d->c);
    d->v[lo] = v;
    d->c[lo] = 1;
    d->n++;
    d->count++;
    return 0;
}

double dfm_stats_dist_min(const dfm_stats_dist *d) { return d->n ? d->v[0] : 0; }
double dfm_stats_dist_max(const dfm_stats_dist *d) { return d->n ? d->v[d->n - 1] : 0; }

/* The value of rank r (0-based, in sorted order). */
static double rank_value(const dfm_stats_dist *d, uint64_t r)
{
    uint64_t seen = 0;
    for (size_t i = 0; i < d->n; i++) {
        seen += d->c[i];
        if (r < seen) return d->v[i];
    }
    return d->n ? d->v[d->n - 1] : 0;
}

double dfm_stats_dist_median(const dfm_stats_dist *d)
{
    if (!d->count) return 0;
    if (d->count % 2) return rank_value(d, d->count / 2);
    return (rank_value(d, d->count / 2 - 1) + rank_value(d, d->count / 2)) / 2;
}

int dfm_stats_dist_hist(const dfm_stats_dist *d, int integer, int max_bins, dfm_stats_hist_bins *b, uint64_t *counts)
{
    if (!d->count) return dfm_fail(DFM_E_ARG, "histogram of no values");
    int rc = dfm_stats_hist_choose(dfm_stats_dist_min(d), dfm_stats_dist_max(d), integer, max_bins, b);
    if (rc) return rc;
    memset(counts, 0, (size_t)max_bins * sizeof *counts);
    for (size_t i = 0; i < d->n; i++) counts[dfm_stats_hist_index(b, d->v[i])] += d->c[i];
    return 0;
}

void dfm_stats_dist_free(dfm_stats_dist *d)
{
    free(d->v);
    free(d->c);
    memset(d, 0, sizeof *d);
}

/* ---- buckets ------------------------------------------------------------------------------- */

const char *dfm_stats_bucket_name(const dfm_stats_bucket *b, char *out, size_t n)
{
    if (b->kind == DFM_STATS_PIXELS)
        snprintf(out, n, "%lldx%lldx%lld", (long long)b->w, (long long)b->h, (long long)b->f);
    else if (b->kind == DFM_STATS_LATENT)
        snprintf(out, n, "latent [%lld,%lld,%lld,%lld]", (long long)b->c, (long long)b->f,
                 (long long)b->h, (long long)b->w);
    else
        snprintf(out, n, "none");
    return out;
}

static int cmp64(int64_t a, int64_t b) { return a < b ? -1 : a > b; }

int dfm_stats_bucket_cmp(const dfm_stats_bucket *a, const dfm_stats_bucket *b)
{
    int r;
    if ((r = cmp64(a->kind, b->kind))) return r;
    if ((r = cmp64(a->f, b->f))) return r;
    if ((r = cmp64(a->w * a->h, b->w * b->h))) return r;
    if ((r = cmp64(a->w, b->w))) return r;
    return cmp64(a->c, b->c);
}

static int same_bucket(const dfm_stats_bucket *a, const dfm_stats_bucket *b)
{
    return a->kind == b->kind && a->w == b->w && a->h == b->h && a->f == b->f && a->c == b->c;
}

/* ---- the accumulator ----------------------------------------------------------------------- */

typedef struct {
    dfm_stats_bucket b;
    uint64_t count;
} bucket_t;

/* The first DFM_STATS_KEYS of a list of (key, note) pairs. */
typedef struct {
    char *key[DFM_STATS_KEYS], *note[DFM_STATS_KEYS];
    int n;
} keylist;

struct dfm_stats {
    dfm_stats_opts o;
    uint64_t samples, bad, images, videos, unknown_media;
    bucket_t *buckets;
    int nbuckets, capbuckets;
    dfm_stats_dist chars, words, tokens, duration;
    uint64_t no_caption, empty_caption, no_latents, no_text, truncated;
    uint64_t nonfinite, dups;
    keylist nonfinite_keys, dup_keys, bad_keys;
    uint64_t *hashes; /* open addressing, 0 = empty */
    size_t hcap, hn;
};

static int keylist_add(keylist *l, const char *key, const char *note)
{
    if (l->n >= DFM_STATS_KEYS) return 0;
    char *k = dfm_strdup(key ? key : ""), *n = note ? dfm_strdup(note) : NULL;
    if (!k || (note && !n)) {
        free(k);
        free(n);
        return DFM_E_NOMEM;
    }
    l->key[l->n] = k;
    l->note[l->n++] = n;
    return 0;
}

static void keylist_free(keylist *l)
{
    for (int i = 0; i < l->n; i++) free(l->key[i]), free(l->note[i]);
    l->n = 0;
}

int dfm_stats_new(dfm_stats **st, const dfm_stats_opts *o)
{
    dfm_stats *s = dfm_calloc(1, sizeof *s);
    if (!s) return DFM_E_NOMEM;
    if (o) s->o = *o;
    *st = s;
    return 0;
}

void dfm_stats_free(dfm_stats *st)
{
    if (!st) return;
    free(st->buckets);
    dfm_stats_dist_free(&st->chars);
    dfm_stats_dist_free(&st->words);
    dfm_stats_dist_free(&st->tokens);
    dfm_stats_dist_free(&st->duration);
    keylist_free(&st->nonfinite_keys);
    keylist_free(&st->dup_keys);
    keylist_free(&st->bad_keys);
    free(st->hashes);
    free(st);
}

uint64_t dfm_stats_samples(const dfm_stats *st) { return st->samples; }

uint64_t dfm_stats_bucket_count(const dfm_stats *st, const dfm_stats_bucket *b)
{
    for (int i = 0; i < st->nbuckets; i++)
        if (same_bucket(&st->buckets[i].b, b)) return st->buckets[i].count;
    return 0;
}

/* 1 when key was seen before (its hash, that is), 0 when new; < 0 out of memory. */
static int seen_key(dfm_stats *st, const char *key)
{
    if (st->hn * 2 >= st->hcap) {
        size_t cap = st->hcap ? st->hcap * 2 : 1024;
        uint64_t *nh = dfm_calloc(cap, sizeof *nh);
        if (!nh) return DFM_E_NOMEM;
        for (size_t i = 0; i < st->hcap; i++) {
            uint64_t h = st->hashes[i];
            if (!h) continue;
            size_t j = (size_t)(h & (cap - 1));
            while (nh[j]) j = (j + 1) & (cap - 1);
            nh[j] = h;
        }
        free(st->hashes);
        st->hashes = nh;
        st->hcap = cap;
    }
    uint64_t h = dfm_hash_fnv1a(key, strlen(key));
    if (!h) h = 1;
    size_t j = (size_t)(h & (st->hcap - 1));
    while (st->hashes[j]) {
        if (st->hashes[j] == h) return 1;
        j = (j + 1) & (st->hcap - 1);
    }
    st->hashes[j] = h;
    st->hn++;
    return 0;
}

/* Elements of a float16/float32 array that are NaN or infinite, by their bits. */
static uint64_t count_nonfinite(const dfm_npy *a)
{
    uint64_t bad = 0;
    if (a->dtype == DFM_NPY_F16) {
        size_t n = a->nbytes / 2;
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, a->data + 2 * i, 2);
            bad += (h & 0x7c00u) == 0x7c00u;
        }
    } else if (a->dtype == DFM_NPY_F32) {
        size_t n = a->nbytes / 4;
        for (size_t i = 0; i < n; i++) {
            uint32_t u;
            memcpy(&u, a->data + 4 * i, 4);
            bad += (u & 0x7f800000u) == 0x7f800000u;
        }
    }
    return bad;
}

/* A positive integer member of o (json numbers are doubles), else 0. */
static int64_t json_int(const cJSON *o, const char *name)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!cJSON_IsNumber(x) || !(x->valuedouble >= 1) || x->valuedouble > 9e15 ||
        x->valuedouble != floor(x->valuedouble))
        return 0;
    return (int64_t)x->valuedouble;
}

/* Characters (code points) and words of a caption. */
static void caption_len(const uint8_t *p, size_t n, uint64_t *chars, uint64_t *words)
{
    uint64_t c = 0, w = 0;
    int in_word = 0;
    for (size_t i = 0; i < n;) {
        uint8_t b = p[i];
        int space = b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\v' || b == '\f';
        if (!space && !in_word) w++;
        in_word = !space;
        /* the length of a well-formed UTF-8 sequence, else one byte */
        size_t len = 1;
        if (b >= 0xc2 && b <= 0xf4) {
            size_t want = b < 0xe0 ? 2 : b < 0xf0 ? 3 : 4, k = 1;
            while (k < want && i + k < n && (p[i + k] & 0xc0) == 0x80) k++;
            if (k == want) len = want;
        }
        i += len;
        c++;
    }
    *chars = c;
    *words = w;
}

/* What the analysis of one sample found, before anything is counted. */
typedef struct {
    dfm_stats_bucket b;
    int media; /* 0 unknown, 1 image, 2 video */
    int has_txt, has_lat, has_text, truncated;
    uint64_t chars, words;
    int64_t tokens; /* -1 unknown */
    double duration; /* < 0 unknown */
    char nf[200];    /* non-finite fields, "latents.npy: 3, text.npy: 1" */
    uint64_t nf_count;
} seen_t;

/* Parse a field as .npy; a reason in why (for the bad-sample message). */
static int npy_field(const dfm_sample *s, const char *name, dfm_npy *a, int *have, char *why, size_t n)
{
    const dfm_field *f = dfm_sample_get(s, name);
    *have = f != NULL;
    if (!f) return 0;
    if (dfm_npy_parse(f->data, f->len, a)) {
        snprintf(why, n, "%s: %s", name, dfm_errmsg());
        return DFM_E_FORMAT;
    }
    return 0;
}

static int analyze(const dfm_stats *st, const dfm_sample *s, seen_t *o, char *why, size_t nwhy)
{
    memset(o, 0, sizeof *o);
    o->b.kind = DFM_STATS_NONE;
    o->tokens = -1;
    o->duration = -1;
    char desc[96];
    /* arrays */
    dfm_npy fr, la, tx, tk;
    int have_fr, have_tk;
    int rc = npy_field(s, "frames.npy", &fr, &have_fr, why, nwhy);
    if (!rc) rc = npy_field(s, "latents.npy", &la, &o->has_lat, why, nwhy);
    if (!rc) rc = npy_field(s, "text.npy", &tx, &o->has_text, why, nwhy);
    if (!rc) rc = npy_field(s, "tokens.npy", &tk, &have_tk, why, nwhy);
    if (rc) return rc;
    const dfm_field *f;
    if (have_fr && (fr.dtype != DFM_NPY_U8 || fr.ndim != 4 || fr.shape[3] != 3 || fr.shape[0] < 1 ||
                    fr.shape[1] < 1 || fr.shape[2] < 1)) {
        f = dfm_sample_get(s, "frames.npy");
        snprintf(why, nwhy, "frames.npy is %s; want uint8 [F,H,W,3]", dfm_npy_describe(f->data, f->len, desc, sizeof desc));
        return DFM_E_FORMAT;
    }
    if (o->has_lat && ((la.dtype != DFM_NPY_F16 && la.dtype != DFM_NPY_F32) || la.ndim != 4 ||
                       la.shape[0] < 1 || la.shape[1] < 1 || la.shape[2] < 1 || la.shape[3] < 1)) {
        f = dfm_sample_get(s, "latents.npy");
        snprintf(why, nwhy, "latents.npy is %s; want float16/float32 [C,F,H,W]",
                 dfm_npy_describe(f->data, f->len, desc, sizeof desc));
        return DFM_E_FORMAT;
    }
    if (o->has_text && ((tx.dtype != DFM_NPY_F16 && tx.dtype != DFM_NPY_F32) ||
                        !(tx.ndim == 2 || (tx.ndim == 3 && tx.shape[0] == 1)))) {
        f = dfm_sample_get(s, "text.npy");
        snprintf(why, nwhy, "text.npy is %s; want float16/float32 [L,D] or [1,L,D]",
                 dfm_npy_describe(f->data, f->len, desc, sizeof desc));
        return DFM_E_FORMAT;
    }
    if (have_tk && ((tk.dtype != DFM_NPY_I32 && tk.dtype != DFM_NPY_I64) || tk.ndim != 1)) {
        f = dfm_sample_get(s, "tokens.npy");
        snprintf(why, nwhy, "tokens.npy is %s; want int32/int64 [L]", dfm_npy_describe(f->data, f->len, desc, sizeof desc));
        return DFM_E_FORMAT;
    }
    /* json */
    cJSON *j = NULL;
    if ((f = dfm_sample_get(s, "json"))) {
        j = cJSON_ParseWithLength((const char *)f->data, f->len);
        if (!cJSON_IsObject(j)) {
            cJSON_Delete(j);
            snprintf(why, nwhy, "json is not a JSON object");
            return DFM_E_FORMAT;
        }
    }
    const cJSON *jb = cJSON_GetObjectItemCaseSensitive(j, "bucket");
    const cJSON *jt = cJSON_GetObjectItemCaseSensitive(j, "text");
    const cJSON *jm = cJSON_GetObjectItemCaseSensitive(j, "media");
    const cJSON *jfps = cJSON_GetObjectItemCaseSensitive(j, "fps");
    /* bucket */
    if (json_int(jb, "width") && json_int(jb, "height") && json_int(jb, "frames")) {
        o->b = (dfm_stats_bucket){DFM_STATS_PIXELS, json_int(jb, "width"), json_int(jb, "height"),
                                  json_int(jb, "frames"), 0};
    } else if (have_fr) {
        o->b = (dfm_stats_bucket){DFM_STATS_PIXELS, fr.shape[2], fr.shape[1], fr.shape[0], 0};
    } else if (o->has_lat) {
        o->b = (dfm_stats_bucket){DFM_STATS_LATENT, la.shape[3], la.shape[2], la.shape[1], la.shape[0]};
    }
    /* media */
    if (cJSON_IsString(jm) && !strcmp(jm->valuestring, "image")) o->media = 1;
    else if (cJSON_IsString(jm) && !strcmp(jm->valuestring, "video")) o->media = 2;
    else if (o->b.kind != DFM_STATS_NONE) o->media = o->b.f == 1 ? 1 : 2;
    /* duration: the frames trained on at the clip's rate */
    if (o->media == 2 && cJSON_IsNumber(jfps) && jfps->valuedouble > 0 && isfinite(jfps->valuedouble)) {
        int64_t frames = json_int(jb, "frames");
        if (!frames && have_fr) frames = fr.shape[0];
        if (!frames) frames = json_int(j, "frames");
        if (frames) o->duration = (double)frames / jfps->valuedouble;
    }
    /* caption and tokens */
    if ((f = dfm_sample_get(s, "txt"))) {
        o->has_txt = 1;
        caption_len(f->data, f->len, &o->chars, &o->words);
    }
    int64_t jtok = json_int(jt, "tokens");
    if (jtok) o->tokens = jtok;
    else if (have_tk) o->tokens = tk.shape[0];
    else if (o->has_text) o->tokens = tx.shape[tx.ndim - 2];
    const cJSON *jtr = cJSON_GetObjectItemCaseSensitive(jt, "truncated");
    o->truncated = cJSON_IsTrue(jtr);
    cJSON_Delete(j);
    /* non-finite numbers, in every float array */
    if (st->o.check) {
        size_t used = 0;
        for (int i = 0; i < s->n; i++) {
            const dfm_field *x = &s->fields[i];
            size_t nl = strlen(x->name);
            dfm_npy a;
            if (nl < 4 || strcmp(x->name + nl - 4, ".npy") || dfm_npy_parse(x->data, x->len, &a)) continue;
            uint64_t bad = count_nonfinite(&a);
            if (!bad) continue;
            o->nf_count += bad;
            if (used < sizeof o->nf - 1)
                used += (size_t)snprintf(o->nf + used, sizeof o->nf - used, "%s%s: %llu", used ? ", " : "",
                                         x->name, (unsigned long long)bad);
            if (used >= sizeof o->nf) used = sizeof o->nf - 1;
        }
    }
    return 0;
}

int dfm_stats_add(dfm_stats *st, const dfm_sample *s, dfm_stats_bucket *bucket)
{
    char kb[300];
    const char *key = s->key ? s->key : "";
    int rc = seen_key(st, key);
    if (rc < 0) return rc;
    if (rc == 1) {
        st->dups++;
        if ((rc = keylist_add(&st->dup_keys, key, NULL))) return rc;
    }
    seen_t o;
    char why[600];
    if ((rc = analyze(st, s, &o, why, sizeof why))) {
        st->bad++;
        if (keylist_add(&st->bad_keys, key, why)) return DFM_E_NOMEM;
        return dfm_fail(DFM_E_FORMAT, "sample '%s': %s", dfm_key_show(key, kb, sizeof kb), why);
    }
    int i = 0;
    while (i < st->nbuckets && !same_bucket(&st->buckets[i].b, &o.b)) i++;
    if (i == st->nbuckets) {
        if (st->nbuckets == st->capbuckets) {
            int cap = st->capbuckets ? st->capbuckets * 2 : 16;
            bucket_t *nb = dfm_realloc(st->buckets, (size_t)cap * sizeof *nb);
            if (!nb) return DFM_E_NOMEM;
            st->buckets = nb;
            st->capbuckets = cap;
        }
        st->buckets[i] = (bucket_t){o.b, 0};
        st->nbuckets++;
    }
    st->buckets[i].count++;
    st->samples++;
    if (o.media == 1) st->images++;
    else if (o.media == 2) st->videos++;
    else st->unknown_media++;
    if (!o.has_txt) st->no_caption++;
    else if (!o.words) st->empty_caption++;
    if (o.has_txt && ((rc = dfm_stats_dist_add(&st->chars, (double)o.chars)) ||
                      (rc = dfm_stats_dist_add(&st->words, (double)o.words))))
        return rc;
    if (o.tokens >= 0 && (rc = dfm_stats_dist_add(&st->tokens, (double)o.tokens))) return rc;
    if (o.duration >= 0 && isfinite(o.duration) && (rc = dfm_stats_dist_add(&st->duration, o.duration))) return rc;
    st->no_latents += !o.has_lat;
    st->no_text += !o.has_text;
    st->truncated += o.truncated;
    if (o.nf_count) {
        st->nonfinite++;
        if ((rc = keylist_add(&st->nonfinite_keys, key, o.nf))) return rc;
    }
    if (bucket) *bucket = o.b;
    return 0;
}

/* ---- reports ------------------------------------------------------------------------------- */

static int cmp_bucket_t(const void *a, const void *b)
{
    return dfm_stats_bucket_cmp(&((const bucket_t *)a)->b, &((const bucket_t *)b)->b);
}

/* The buckets in listing order (a malloc'd copy; NULL with none or out of memory). */
static bucket_t *sorted_buckets(const dfm_stats *st)
{
    if (!st->nbuckets) return NULL;
    bucket_t *v = dfm_malloc((size_t)st->nbuckets * sizeof *v);
    if (!v) return NULL;
    memcpy(v, st->buckets, (size_t)st->nbuckets * sizeof *v);
    qsort(v, (size_t)st->nbuckets, sizeof *v, cmp_bucket_t);
    return v;
}

enum { BAR = 40 };

static int bar(dfm_buf *out, uint64_t count, uint64_t max)
{
    int n = max ? (int)((count * BAR + max - 1) / max) : 0;
    char b[BAR + 1];
    memset(b, '#', (size_t)n);
    b[n] = 0;
    return dfm_buf_printf(out, "%s%s\n", n ? "  " : "", b);
}

static const char *s_(uint64_t n) { return n == 1 ? "" : "s"; }

/* A measure: its summary line and histogram. */
static int text_measure(dfm_buf *out, const char *title, const char *of, const dfm_stats_dist *d, int integer,
                        const char *unknown)
{
    if (!d->count) return dfm_buf_printf(out, "%s: %s\n", title, unknown);
    const char *fmt = integer ? "%.10g" : "%.4g"; /* counts exactly, seconds to 4 digits */
    char mn[32], md[32], mx[32], range[80];
    snprintf(mn, sizeof mn, fmt, dfm_stats_dist_min(d));
    snprintf(md, sizeof md, fmt, dfm_stats_dist_median(d));
    snprintf(mx, sizeof mx, fmt, dfm_stats_dist_max(d));
    int rc = dfm_buf_printf(out, "%s: %llu %.*s, min %s, median %s, max %s\n", title,
                            (unsigned long long)d->count, (int)strlen(of) - (d->count == 1), of, mn, md, mx);
    dfm_stats_hist_bins b;
    uint64_t counts[DFM_STATS_BINS], max = 0;
    if (!rc) rc = dfm_stats_dist_hist(d, integer, DFM_STATS_BINS, &b, counts);
    for (int i = 0; !rc && i < b.n; i++)
        if (counts[i] > max) max = counts[i];
    for (int i = 0; !rc && i < b.n; i++) {
        double lo = dfm_stats_hist_edge(&b, i), hi = dfm_stats_hist_edge(&b, i + 1);
        if (integer && b.width == 1) /* whole numbers: the values a bin holds */
            snprintf(range, sizeof range, "%.10g", lo);
        else if (integer)
            snprintf(range, sizeof range, "%.10g..%.10g", lo, hi - 1);
        else
            snprintf(range, sizeof range, "[%.10g, %.10g%c", lo, hi, i == b.n - 1 ? ']' : ')');
        rc = dfm_buf_printf(out, "  %16s %8llu", range, (unsigned long long)counts[i]);
        if (!rc) rc = bar(out, counts[i], max);
    }
    return rc;
}

static int text_keys(dfm_buf *out, const keylist *l, uint64_t total)
{
    char kb[300];
    int rc = 0;
    for (int i = 0; !rc && i < l->n; i++)
        rc = dfm_buf_printf(out, "  %s%s%s\n", dfm_key_show(l->key[i], kb, sizeof kb), l->note[i] ? ": " : "",
                            l->note[i] ? l->note[i] : "");
    if (!rc && total > (uint64_t)l->n)
        rc = dfm_buf_printf(out, "  ... and %llu more\n", (unsigned long long)(total - (uint64_t)l->n));
    return rc;
}

int dfm_stats_text(const dfm_stats *st, dfm_buf *out)
{
    uint64_t n = st->samples;
    int rc = dfm_buf_printf(out, "samples: %llu (%llu image%s, %llu video%s", (unsigned long long)n,
                            (unsigned long long)st->images, s_(st->images), (unsigned long long)st->videos,
                            s_(st->videos));
    if (!rc && st->unknown_media)
        rc = dfm_buf_printf(out, ", %llu unknown", (unsigned long long)st->unknown_media);
    if (!rc) rc = dfm_buf_printf(out, ")");
    if (!rc && st->bad)
        rc = dfm_buf_printf(out, "; %llu bad sample%s left out", (unsigned long long)st->bad, s_(st->bad));
    if (!rc) rc = dfm_buf_printf(out, "\n");
    /* buckets */
    bucket_t *v = sorted_buckets(st);
    if (st->nbuckets && !v) return DFM_E_NOMEM;
    uint64_t max = 0;
    for (int i = 0; i < st->nbuckets; i++)
        if (v[i].count > max) max = v[i].count;
    if (!rc) rc = dfm_buf_printf(out, "buckets: %d (width x height x frames)\n", st->nbuckets);
    char name[96];
    for (int i = 0; !rc && i < st->nbuckets; i++) {
        rc = dfm_buf_printf(out, "  %-20s %8llu %6.1f%%", dfm_stats_bucket_name(&v[i].b, name, sizeof name),
                            (unsigned long long)v[i].count, 100.0 * (double)v[i].count / (double)n);
        if (!rc) rc = bar(out, v[i].count, max);
    }
    free(v);
    /* measures */
    if (!rc) rc = text_measure(out, "caption characters", "captions", &st->chars, 1, "no captions");
    if (!rc) rc = text_measure(out, "caption words", "captions", &st->words, 1, "no captions");
    if (!rc) rc = text_measure(out, "caption tokens", "samples", &st->tokens, 1,
                               "not known (no json.text.tokens, tokens.npy or text.npy)");
    if (!rc && st->truncated)
        rc = dfm_buf_printf(out, "  %llu caption%s truncated by the text encoder\n",
                            (unsigned long long)st->truncated, s_(st->truncated));
    if (!rc) rc = text_measure(out, "duration (s)", "videos", &st->duration, 0,
                               st->videos ? "not known (no json.fps)" : "no videos");
    /* what is missing or wrong */
    if (!rc)
        rc = dfm_buf_printf(out, "missing: caption %llu (empty %llu), latents %llu, text states %llu\n",
                            (unsigned long long)st->no_caption, (unsigned long long)st->empty_caption,
                            (unsigned long long)st->no_latents, (unsigned long long)st->no_text);
    if (!rc && !st->o.check) rc = dfm_buf_printf(out, "non-finite: not checked (--check)\n");
    if (!rc && st->o.check) {
        rc = dfm_buf_printf(out, "non-finite: %llu sample%s\n", (unsigned long long)st->nonfinite, s_(st->nonfinite));
        if (!rc) rc = text_keys(out, &st->nonfinite_keys, st->nonfinite);
    }
    if (!rc) rc = dfm_buf_printf(out, "repeated keys: %llu\n", (unsigned long long)st->dups);
    if (!rc) rc = text_keys(out, &st->dup_keys, st->dups);
    if (!rc && st->bad) {
        rc = dfm_buf_printf(out, "bad samples: %llu\n", (unsigned long long)st->bad);
        if (!rc) rc = text_keys(out, &st->bad_keys, st->bad);
    }
    return rc;
}

static cJSON *json_measure(const dfm_stats_dist *d, int integer)
{
    if (!d->count) return cJSON_CreateNull();
    dfm_stats_hist_bins b;
    uint64_t counts[DFM_STATS_BINS];
    if (dfm_stats_dist_hist(d, integer, DFM_STATS_BINS, &b, counts)) return NULL;
    cJSON *o = cJSON_CreateObject(), *bins = cJSON_CreateArray();
    cJSON_AddNumberToObject(o, "count", (double)d->count);
    cJSON_AddNumberToObject(o, "min", dfm_stats_dist_min(d));
    cJSON_AddNumberToObject(o, "median", dfm_stats_dist_median(d));
    cJSON_AddNumberToObject(o, "max", dfm_stats_dist_max(d));
    for (int i = 0; i < b.n; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "lo", dfm_stats_hist_edge(&b, i));
        cJSON_AddNumberToObject(e, "hi", dfm_stats_hist_edge(&b, i + 1));
        cJSON_AddNumberToObject(e, "count", (double)counts[i]);
        cJSON_AddItemToArray(bins, e);
    }
    cJSON_AddItemToObject(o, "bins", bins);
    return o;
}

static cJSON *json_keys(const keylist *l, const char *note_name)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < l->n; i++) {
        if (!note_name) {
            cJSON_AddItemToArray(a, cJSON_CreateString(l->key[i]));
            continue;
        }
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "key", l->key[i]);
        cJSON_AddStringToObject(e, note_name, l->note[i] ? l->note[i] : "");
        cJSON_AddItemToArray(a, e);
    }
    return a;
}

int dfm_stats_json(const dfm_stats *st, cJSON **out)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return dfm_fail(DFM_E_NOMEM, "out of memory");
    cJSON_AddNumberToObject(o, "samples", (double)st->samples);
    cJSON_AddNumberToObject(o, "images", (double)st->images);
    cJSON_AddNumberToObject(o, "videos", (double)st->videos);
    cJSON_AddNumberToObject(o, "unknown_media", (double)st->unknown_media);
    cJSON_AddNumberToObject(o, "bad", (double)st->bad);
    bucket_t *v = sorted_buckets(st);
    cJSON *bs = cJSON_AddArrayToObject(o, "buckets");
    char name[96];
    static const char *const kinds[] = {"pixels", "latent", "none"};
    for (int i = 0; v && i < st->nbuckets; i++) {
        cJSON *e = cJSON_CreateObject();
        const dfm_stats_bucket *b = &v[i].b;
        cJSON_AddStringToObject(e, "bucket", dfm_stats_bucket_name(b, name, sizeof name));
        cJSON_AddStringToObject(e, "kind", kinds[b->kind]);
        if (b->kind != DFM_STATS_NONE) {
            cJSON_AddNumberToObject(e, "width", (double)b->w);
            cJSON_AddNumberToObject(e, "height", (double)b->h);
            cJSON_AddNumberToObject(e, "frames", (double)b->f);
        }
        if (b->kind == DFM_STATS_LATENT) cJSON_AddNumberToObject(e, "channels", (double)b->c);
        cJSON_AddNumberToObject(e, "samples", (double)v[i].count);
        cJSON_AddNumberToObject(e, "share", (double)v[i].count / (double)st->samples);
        cJSON_AddItemToArray(bs, e);
    }
    free(v);
    cJSON_AddItemToObject(o, "caption_chars", json_measure(&st->chars, 1));
    cJSON_AddItemToObject(o, "caption_words", json_measure(&st->words, 1));
    cJSON_AddItemToObject(o, "caption_tokens", json_measure(&st->tokens, 1));
    cJSON_AddItemToObject(o, "duration_s", json_measure(&st->duration, 0));
    cJSON *m = cJSON_AddObjectToObject(o, "missing");
    cJSON_AddNumberToObject(m, "caption", (double)st->no_caption);
    cJSON_AddNumberToObject(m, "empty_caption", (double)st->empty_caption);
    cJSON_AddNumberToObject(m, "latents", (double)st->no_latents);
    cJSON_AddNumberToObject(m, "text", (double)st->no_text);
    cJSON_AddNumberToObject(o, "truncated_captions", (double)st->truncated);
    if (st->o.check) {
        cJSON *nf = cJSON_AddObjectToObject(o, "nonfinite");
        cJSON_AddNumberToObject(nf, "samples", (double)st->nonfinite);
        cJSON_AddItemToObject(nf, "keys", json_keys(&st->nonfinite_keys, "fields"));
    } else {
        cJSON_AddNullToObject(o, "nonfinite");
    }
    cJSON *d = cJSON_AddObjectToObject(o, "duplicates");
    cJSON_AddNumberToObject(d, "count", (double)st->dups);
    cJSON_AddItemToObject(d, "keys", json_keys(&st->dup_keys, NULL));
    cJSON_AddItemToObject(o, "bad_samples", json_keys(&st->bad_keys, "reason"));
    /* cJSON reports out of memory only as missing members: check the last ones arrived */
    if ((st->nbuckets && !v) || !cJSON_GetObjectItemCaseSensitive(o, "bad_samples") ||
        !cJSON_GetObjectItemCaseSensitive(o, "duration_s")) {
        cJSON_Delete(o);
        return dfm_fail(DFM_E_NOMEM, "out of memory building the JSON report");
    }
    *out = o;
    return 0;
}
