/* decode_run.c — dfm-decode's run: walk the PATHs, find captions, decode files in parallel on an
 * ordered pool, keep keys unique, write samples in input order, report and count bad files.
 * See decode_run.h. */
#include "data/decode_run.h"
#include "base/buf.h"
#include "base/error.h"
#include "base/log.h"
#include "base/pool.h"
#include "base/strset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct dfm_decoder {
    dfm_ingest_opts opts;
    dfm_captioner *cap;
    dfm_writer *out;
    dfm_pool *pool;
    dfm_strset keys;
    dfm_counts *counts;
    int strict, failed;
    dfm_part part;
    uint64_t found; /* media files found so far, in every part */
    const dfm_done_keys *done; /* --skip-done */
    dfm_decode_skipped *skipped_done, skipped_local;
    dfm_decode_filtered *filtered, filtered_local;
    int verbose;
    dfm_strset bases; /* with done: the key bases of the files seen, to tell repeats */
};
typedef struct dfm_decoder run;

/* One input file: decoded on a worker, written in order by the main thread. */
typedef struct {
    run *r;
    char *path, *name;
    dfm_media_kind kind;
    dfm_captions caps;
    dfm_sample *samples;
    int n, cap, rc;
    int filter; /* drop the samples whose key is done */
    dfm_ingest_filter why; /* left out by a length filter */
    char err[1024];
} job;

static int collect(void *ctx, dfm_sample *s)
{
    job *j = ctx;
    if (j->n == j->cap) {
        int cap = j->cap ? j->cap * 2 : 2;
        dfm_sample *p = realloc(j->samples, (size_t)cap * sizeof *p);
        if (!p) return dfm_fail(DFM_E_NOMEM, "out of memory");
        j->samples = p, j->cap = cap;
    }
    j->samples[j->n++] = *s; /* take the sample's contents */
    dfm_sample_init(s);
    return 0;
}

static void job_run(void *arg)
{
    job *j = arg;
    j->rc = dfm_ingest_file(&j->r->opts, &j->caps, j->path, j->name, j->kind, collect, j, &j->why);
    if (j->rc < 0) snprintf(j->err, sizeof j->err, "%s", dfm_errmsg());
}

static void job_free(void *arg)
{
    job *j = arg;
    for (int i = 0; i < j->n; i++) dfm_sample_free(&j->samples[i]);
    dfm_captions_free(&j->caps);
    free(j->samples), free(j->path), free(j->name), free(j);
}

/* Keep keys unique in one run: a repeated key (the same file given twice) gets "@dupN". */
static int unique_key(run *r, dfm_sample *s)
{
    int added = dfm_strset_add(&r->keys, s->key);
    if (added != 0) return added < 0 ? added : 0;
    char *alt = malloc(strlen(s->key) + 32);
    if (!alt) return dfm_fail(DFM_E_NOMEM, "out of memory");
    for (int i = 2; added == 0; i++) {
        sprintf(alt, "%s@dup%d", s->key, i);
        added = dfm_strset_add(&r->keys, alt);
    }
    dfm_log_warn("duplicate key '%s': written as '%s'", s->key, alt);
    int rc = added < 0 ? added : dfm_sample_set_key(s, alt);
    free(alt);
    return rc;
}

static int job_done(void *ctx, void *arg)
{
    run *r = ctx;
    job *j = arg;
    int rc = 0;
    if (j->rc < 0 && j->why != DFM_INGEST_KEPT) { /* not a bad file */
        if (j->why == DFM_INGEST_TOO_SHORT) r->filtered->too_short++;
        else if (j->why == DFM_INGEST_TOO_SMALL) r->filtered->too_small++;
        else r->filtered->too_long++;
        if (r->verbose) dfm_log_info("filtered '%s': %s", j->path, j->err);
    } else if (j->rc < 0) {
        dfm_log_error("skipping '%s': %s", j->path, j->err);
        r->counts->skipped++;
        if (j->rc == DFM_E_NOMEM) rc = j->rc;
        else if (r->strict) r->failed = 1, rc = DFM_E_SKIP;
    }
    for (int i = 0; i < j->n && !rc; i++) {
        rc = unique_key(r, &j->samples[i]);
        if (!rc && j->filter && dfm_done_keys_has(r->done, j->samples[i].key)) {
            r->skipped_done->samples++; /* in DIR already */
            continue;
        }
        if (!rc) rc = dfm_writer_put(r->out, &j->samples[i]);
        if (!rc) r->counts->written++;
        if (rc && rc != DFM_E_NOMEM && !dfm_writer_error(r->out)) { /* this sample refused; the writer goes on */
            dfm_log_error("skipping sample '%s': %s", j->samples[i].key ? j->samples[i].key : "", dfm_errmsg());
            r->counts->skipped++;
            rc = 0;
            if (r->strict) r->failed = 1, rc = DFM_E_SKIP;
        }
    }
    if (rc && rc != DFM_E_SKIP && rc != DFM_E_PIPE) {
        dfm_log_error("%s", dfm_errmsg());
        r->failed = 1;
    }
    job_free(j);
    return rc;
}

/* --skip-done: whether the file at source name `name` is done (skip), or must be decoded with
 * its done samples dropped (filter); see decode_run.h. */
static int skip_done(run *r, const char *name, int *skip, int *filter)
{
    char *base = dfm_key_escape(name);
    if (!base) return dfm_fail(DFM_E_NOMEM, "out of memory");
    size_t first;
    int frontier;
    size_t n = dfm_done_keys_base(r->done, base, &first, &frontier);
    int added = dfm_strset_add(&r->bases, base);
    int rc = added < 0 ? added : 0;
    if (!rc && n > 0 && (frontier || added == 0)) *filter = 1;
    else if (!rc && n > 0) { /* all done: its keys are taken, as if it had been written */
        for (size_t i = 0; i < n && !rc; i++)
            if (dfm_strset_add(&r->keys, dfm_done_keys_at(r->done, first + i)) < 0) rc = DFM_E_NOMEM;
        *skip = 1;
        r->skipped_done->inputs++;
    }
    free(base);
    return rc;
}

static int on_file(void *ctx, const char *path, const char *name, dfm_media_kind kind)
{
    run *r = ctx;
    if (!dfm_part_takes(&r->part, r->found++)) return 0; /* another part's file */
    int filter = 0;
    if (r->done) {
        int skip = 0;
        int rc = skip_done(r, name, &skip, &filter);
        if (rc || skip) return rc;
    }
    r->counts->read++;
    dfm_progress(r->counts->read, 0, "files");
    job *j = calloc(1, sizeof *j);
    if (!j || !(j->path = strdup(path)) || !(j->name = strdup(name))) {
        if (j) free(j->path), free(j);
        return dfm_fail(DFM_E_NOMEM, "out of memory");
    }
    j->r = r, j->kind = kind, j->filter = filter;
    int rc = dfm_captions_find(r->cap, path, &j->caps);
    if (rc) {
        job_free(j);
        return rc;
    }
    return dfm_pool_submit(r->pool, j);
}

static void on_warn(void *ctx, const char *path, const char *reason)
{
    dfm_log_warn("skipping '%s': %s", path, reason);
}

int dfm_decoder_add(dfm_decoder *r, const char *arg)
{
    const uint64_t before = r->found;
    int rc = dfm_walk(arg, on_file, on_warn, r);
    struct stat st;
    if (rc == 0 && r->found == before && stat(arg, &st) == 0 && S_ISDIR(st.st_mode))
        dfm_log_warn("no media found in '%s' (looked for .jpg .jpeg .png .webp .bmp .mp4 .avi .mov .mkv .webm)", arg);
    if (rc && r->failed) return rc; /* already reported by job_done */
    if (rc == 0 || rc == DFM_E_PIPE || rc == DFM_E_NOMEM || rc == DFM_E_SKIP) return rc;
    dfm_log_error("skipping '%s': %s", arg, dfm_errmsg());
    r->counts->read++;
    r->counts->skipped++;
    if (!r->strict) return 0;
    r->failed = 1;
    return DFM_E_SKIP;
}

int dfm_decoder_new(dfm_decoder **out, const dfm_decode_opts *o, dfm_writer *w, dfm_counts *counts)
{
    *out = NULL;
    dfm_decoder *r = dfm_calloc(1, sizeof *r);
    if (!r) return DFM_E_NOMEM;
    r->opts = o->ingest;
    r->out = w;
    r->counts = counts;
    r->strict = o->strict;
    r->part = o->part;
    r->done = o->done;
    r->skipped_done = o->skipped_done ? o->skipped_done : &r->skipped_local;
    r->filtered = o->filtered ? o->filtered : &r->filtered_local;
    r->verbose = o->verbose;
    /* Files decode in parallel (jobs at a time); each video decoder gets the cores left over
     * (at least one thread), so the machine is busy without oversubscribing it. */
    int cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
    int jobs = o->jobs > 0 ? o->jobs : cores;
    r->opts.threads = cores / jobs > 1 ? cores / jobs : 1;
    int rc = dfm_captioner_new(&r->cap, &o->captions);
    if (!rc) rc = dfm_pool_new(&r->pool, jobs, jobs + 1, job_run, job_done, job_free, r);
    if (rc) {
        dfm_captioner_free(r->cap);
        free(r);
        return rc;
    }
    *out = r;
    return 0;
}

int dfm_decoder_finish(dfm_decoder *r, int *failed)
{
    int rc = dfm_pool_finish(r->pool);
    if (rc == DFM_E_NOMEM) {
        dfm_log_error("%s", dfm_errmsg());
        r->failed = 1;
    }
    *failed = r->failed;
    if (r->found == 0 && r->counts->read == 0 && rc != DFM_E_PIPE) dfm_log_warn("no media found: nothing to decode");
    else if (r->found > 0 && r->found <= (uint64_t)r->part.k && rc != DFM_E_PIPE)
        dfm_log_warn("--part %d/%d: no file falls to this part (%llu media file%s found, fewer than "
                     "the parts)", r->part.k, r->part.n, (unsigned long long)r->found,
                     r->found == 1 ? "" : "s");
    dfm_captioner_free(r->cap);
    dfm_strset_free(&r->keys);
    dfm_strset_free(&r->bases);
    free(r);
    return rc == DFM_E_PIPE ? rc : 0;
}
