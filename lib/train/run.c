/* run.c — the dfm-train loop (run.h). */
#include "train/run.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/error.h"
#include <cjson/cJSON.h>

#include "base/json.h"
#include "base/log.h"
#include "base/rng.h"
#include "data/train_data.h"
#include "dist/dist.h"
#include "io/npy.h"
#include "io/stream.h"
#include "io/tb_events.h"
#include "media/encode.h"
#include "models/wan/umt5.h"
#include "sample/pipeline.h"
#include "sample/prompts.h"
#include "tensor/ops.h"
#include "text/tokenizer.h"
#include "train/checkpoint.h"
#include "train/train_config.h"
#include "train/trainer.h"

static volatile sig_atomic_t g_signal;

static void on_signal(int s)
{
    if (g_signal) { /* a second one: stop now (checkpoints are written under .tmp names) */
        signal(s, SIG_DFL);
        raise(s);
    }
    g_signal = s;
}

typedef struct {
    const dfm_config *c;
    const dfm_run_opts *o;
    const char *dir;          /* the run directory */
    dfm_trainer *tr;
    dfm_trainer_opts to;
    dfm_train_data *data, *eval;
    dfm_tb *tb;
    dfm_dist *dist;                 /* the data-parallel job (a job of one without a launcher) */
    int rank, world;
    uint64_t seed;
    int64_t total, start_step;
    int64_t next_epoch, next_batch; /* the data position after the last step */
    int64_t batches_per_epoch;
    /* caption dropout */
    double caption_dropout;
    float *empty;                   /* [empty_rows, D] */
    int empty_rows, empty_dim;
    /* counters */
    uint64_t samples, samples_run, skipped_steps;
    double wait_s, t0, comm_s; /* comm_s: the loop's own collectives */
    float last_loss;
    double win_sum; /* losses since the last progress line */
    int64_t win_n;
    int warned_long;
    /* sampling during training */
    dfm_prompt_list prompts;
    dfm_sample_model sm;
    dfm_sample_texts *texts;
    int64_t last_saved;
} run_t;

/* ---- small helpers -------------------------------------------------------------------------- */

static uint64_t key_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

/* caption dropout: one uniform in [0, 1) per (seed, step, key), its own Philox stream */
static double dropout_draw(uint64_t seed, int64_t step, const char *key)
{
    uint64_t h = key_hash(key);
    uint32_t ctr[4] = {(uint32_t)step, (uint32_t)((uint64_t)step >> 32), (uint32_t)h, (uint32_t)(h >> 32)};
    uint32_t k[2] = {(uint32_t)seed ^ 0xCA971000u, (uint32_t)(seed >> 32) ^ 0xD2095u}, r[4];
    dfm_philox4x32(ctr, k, r);
    return (double)(((uint64_t)r[0] << 21) ^ (r[1] >> 11)) / 9007199254740992.0 /* 2^53 */;
}

static void fmt_eta(double s, char *out, size_t n)
{
    if (!(s >= 0) || s > 1e8) {
        snprintf(out, n, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(out, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(out, n, "%ld:%02ld", t / 60, t % 60);
}

/* ---- the empty prompt (caption dropout) ----------------------------------------------------- */

static int npy_to_f32(const uint8_t *buf, size_t len, const char *what, float **out, int *rows, int *dim)
{
    dfm_npy a;
    int rc = dfm_npy_parse(buf, len, &a);
    if (rc) return dfm_fail(rc, "%s: %s", what, dfm_errmsg());
    int64_t r = a.ndim == 2 ? a.shape[0] : a.ndim == 3 && a.shape[0] == 1 ? a.shape[1] : -1;
    int64_t d = a.shape[a.ndim - 1];
    if (r < 1 || d < 1 || (a.dtype != DFM_NPY_F16 && a.dtype != DFM_NPY_F32))
        return dfm_fail(DFM_E_FORMAT, "%s: text states must be float16/float32 [L, D], not %s", what,
                        dfm_npy_type_name(a.dtype));
    float *f = malloc((size_t)(r * d) * sizeof(float));
    if (!f) return dfm_fail(DFM_E_NOMEM, "out of memory");
    for (int64_t i = 0; i < r * d; i++) {
        float v;
        if (a.dtype == DFM_NPY_F32) memcpy(&v, (const uint8_t *)a.data + 4 * i, 4);
        else {
            uint16_t h;
            memcpy(&h, (const uint8_t *)a.data + 2 * i, 2);
            v = dfm_f16_to_f32(h);
        }
        if (!isfinite(v)) {
            free(f);
            return dfm_fail(DFM_E_NONFINITE, "%s: a non-finite value at element %lld", what, (long long)i);
        }
        f[i] = v;
    }
    *out = f, *rows = (int)r, *dim = (int)d;
    return 0;
}

static int empty_from_file(run_t *r, const char *path)
{
    size_t n = strlen(path);
    int rc;
    if (n > 4 && !strcmp(path + n - 4, ".npy")) {
        dfm_buf b = {0};
        if ((rc = dfm_read_file(path, 1u << 30, &b)) < 0) return rc;
        rc = npy_to_f32(b.data, b.len, path, &r->empty, &r->empty_rows, &r->empty_dim);
        dfm_buf_free(&b);
        return rc;
    }
    dfm_reader *rd = NULL;
    if ((rc = dfm_reader_open(&rd, path, 1ull << 30))) return rc;
    dfm_sample s;
    dfm_sample_init(&s);
    rc = dfm_reader_next(rd, &s);
    if (rc == 0) rc = dfm_fail(DFM_E_FORMAT, "'%s' holds no sample", path);
    else if (rc > 0) {
        const dfm_field *fl = dfm_sample_get(&s, "text.npy");
        rc = fl ? npy_to_f32(fl->data, fl->len, path, &r->empty, &r->empty_rows, &r->empty_dim)
                : dfm_fail(DFM_E_FORMAT, "'%s': its first sample has no text.npy (run dfm-text-encode on \"\")", path);
    }
    dfm_sample_free(&s);
    dfm_reader_close(rd);
    return rc;
}

/* "" through the model's tokenizer and UMT5 (the pipeline's unconditional input: </s> then zero
 * padding, wan.md 3.4) */
static int empty_from_model(run_t *r)
{
    const char *model = r->to.model_path;
    char tokdir[4096], encdir[4096];
    struct stat sb;
    int rc;
    if ((rc = dfm_path_join(tokdir, sizeof tokdir, model, "tokenizer")) || (rc = dfm_path_join(encdir, sizeof encdir, model, "text_encoder")))
        return rc;
    if (stat(tokdir, &sb) || stat(encdir, &sb))
        return dfm_fail(DFM_E_ARG,
                        "train.caption_dropout needs the empty prompt's states: '%s' has no tokenizer/ and text_encoder/; "
                        "set data.empty_prompt to the encoded empty prompt (: > empty.txt && tar cf empty.tar empty.txt && "
                        "dfm-text-encode --model M --format tar -o empty-prompt.tar empty.tar)",
                        model);
    dfm_tokenizer *tok = NULL;
    dfm_umt5 *enc = NULL;
    if ((rc = dfm_tokenizer_load(&tok, tokdir))) return rc;
    dfm_umt5_opts uo = {.device = DFM_CPU, .weights = DFM_BF16};
    if ((rc = dfm_umt5_load(&enc, encdir, &uo))) {
        dfm_tokenizer_free(tok);
        return rc;
    }
    int32_t *ids = NULL;
    int n = 0;
    dfm_tensor out = {0};
    if ((rc = dfm_tokenizer_encode(tok, "", 0, 8, &ids, &n))) {
    } else if (n < 1) rc = dfm_fail(DFM_E_FORMAT, "the tokenizer gives no tokens for the empty prompt");
    else if (!(rc = dfm_umt5_encode(enc, ids, n, &out))) {
        r->empty_rows = (int)out.shape[0], r->empty_dim = (int)out.shape[1];
        size_t bytes = (size_t)dfm_tensor_numel(&out) * sizeof(float);
        if (!(r->empty = malloc(bytes))) rc = dfm_fail(DFM_E_NOMEM, "out of memory");
        else memcpy(r->empty, out.data, bytes);
    }
    free(ids);
    dfm_tensor_free(&out);
    dfm_umt5_free(enc);
    dfm_tokenizer_free(tok);
    return rc;
}

/* ---- data ----------------------------------------------------------------------------------- */

static int open_data(const dfm_config *c, const char *key, int eval, uint64_t seed, int rank, int world, dfm_train_data **d)
{
    int n = dfm_config_list_len(c, key);
    const char **specs = calloc(n + 1, sizeof *specs);
    double *rep = NULL;
    if (!specs) return dfm_fail(DFM_E_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) specs[i] = dfm_config_list_str(c, key, i);
    int nr = eval ? 0 : dfm_config_list_len(c, "data.repeats");
    if (nr) {
        if (nr != n) {
            free(specs);
            return dfm_fail(DFM_E_ARG, "data.repeats has %d entries, data.shards %d: give one per shard entry", nr, n);
        }
        rep = malloc(nr * sizeof *rep);
        if (!rep) {
            free(specs);
            return dfm_fail(DFM_E_NOMEM, "out of memory");
        }
        for (int i = 0; i < nr; i++) rep[i] = dfm_config_list_float(c, "data.repeats", i);
    }
    dfm_train_data_opts o = {
        .specs = specs,
        .nspecs = n,
        .repeats = rep,
        .batch_size = (int)dfm_config_int(c, "data.batch_size"),
        .dynamic_batch = dfm_config_bool(c, "data.dynamic_batch"),
        .base_w = dfm_config_list_len(c, "data.base_resolution") == 2 ? (int)dfm_config_list_float(c, "data.base_resolution", 0) : 512,
        .base_h = dfm_config_list_len(c, "data.base_resolution") == 2 ? (int)dfm_config_list_float(c, "data.base_resolution", 1) : 512,
        .drop_last = eval ? 0 : dfm_config_bool(c, "data.drop_last"),
        .shuffle = eval ? 0 : dfm_config_bool(c, "data.shuffle"),
        .seed = seed,
        .rank = rank,
        .world = world,
        .prefetch = (int)dfm_config_int(c, "data.prefetch"),
    };
    int rc = 0;
    if (o.batch_size < 1) rc = dfm_fail(DFM_E_ARG, "data.batch_size must be >= 1");
    else if (o.prefetch < 0) rc = dfm_fail(DFM_E_ARG, "data.prefetch must be >= 0");
    else rc = dfm_train_data_open(d, &o);
    free(specs);
    free(rep);
    return rc;
}

static void micro_from_batch(const dfm_batch *b, dfm_micro *m)
{
    *m = (dfm_micro){.B = b->n, .C = b->C, .F = b->F, .H = b->H, .W = b->W, .x0 = b->latents,
                     .text = (const float *const *)b->text, .text_rows = b->text_rows, .text_dim = b->text_dim,
                     .keys = (const char *const *)b->keys};
}

/* ---- eval ----------------------------------------------------------------------------------- */

static int run_eval(run_t *r, int64_t step)
{
    int nq = dfm_config_list_len(r->c, "eval.quantiles");
    int64_t nb = dfm_train_data_batches_per_epoch(r->eval);
    int64_t maxb = dfm_config_int(r->c, "eval.max_batches");
    if (maxb > 0 && maxb < nb) nb = maxb;
    if (nb < 1 || nq < 1) return 0;
    double t0 = dfm_now(), sum = 0;
    const dfm_flow_opts *fo = &r->to.flow;
    for (int qi = 0; qi < nq; qi++) {
        double q = dfm_config_list_float(r->c, "eval.quantiles", qi);
        float sigma = dfm_flow_sigma_quantile(fo, q);
        int rc = dfm_train_data_seek(r->eval, 0, 0);
        if (rc) return rc;
        double lsum = 0;
        for (int64_t i = 0; i < nb; i++) {
            dfm_batch b;
            if ((rc = dfm_train_data_next(r->eval, &b))) return rc;
            dfm_micro m;
            micro_from_batch(&b, &m);
            size_t n = (size_t)b.C * b.F * b.H * b.W;
            float *noise = malloc((size_t)b.n * n * sizeof(float)), *sig = malloc(b.n * sizeof(float));
            if (!noise || !sig) {
                free(noise), free(sig), dfm_batch_free(&b);
                return dfm_fail(DFM_E_NOMEM, "out of memory");
            }
            /* the same noise at every eval (diffusion-pipe reseeds each one) */
            for (int k = 0; k < b.n; k++) {
                dfm_flow_noise(r->seed ^ 0x5EED0E7A1ull, -1, b.keys[k], noise + k * n, n);
                sig[k] = sigma;
            }
            m.noise = noise, m.sigma = sig;
            float loss = 0;
            rc = dfm_trainer_eval(r->tr, &m, &loss);
            free(noise), free(sig);
            dfm_batch_free(&b);
            if (rc) return rc;
            lsum += loss;
        }
        if (r->world > 1) { /* every rank evaluated its slice of the eval set */
            if ((rc = dfm_dist_allreduce(r->dist, &lsum, 1, DFM_DIST_F64, DFM_CPU))) return rc;
            lsum /= r->world;
        }
        float lq = (float)(lsum / (double)nb);
        sum += lq;
        char tag[64];
        snprintf(tag, sizeof tag, "eval/loss_quantile_%.2f", q);
        if (r->tb && (rc = dfm_tb_scalar(r->tb, tag, step, lq))) return rc;
    }
    float mean = (float)(sum / nq);
    if (r->tb) {
        int rc = dfm_tb_scalar(r->tb, "eval/loss", step, mean);
        if (!rc) rc = dfm_tb_flush(r->tb);
        if (rc) return rc;
    }
    dfm_log_info("eval at step %lld: loss %.6g over %d quantiles x %lld batches (%.1f s)", (long long)step, mean, nq,
                 (long long)nb, dfm_now() - t0);
    return 0;
}

/* ---- checkpoints ---------------------------------------------------------------------------- */

/* Data parallel: rank 0 makes step_N.tmp, every rank writes its part (dfm_trainer_save), rank 0
 * finishes and commits. The run directory is on a filesystem every rank sees. */
static int save_checkpoint(run_t *r, int64_t step)
{
    char tmp[4096], path[4096];
    int rc = 0;
    if (!r->rank) rc = dfm_ckpt_begin(r->dir, step, tmp, sizeof tmp);
    else if ((size_t)snprintf(tmp, sizeof tmp, "%s/step_%lld.tmp", r->dir, (long long)step) >= sizeof tmp)
        rc = dfm_fail(DFM_E_ARG, "checkpoint: path too long");
    if (!rc && r->world > 1) rc = dfm_dist_barrier(r->dist);
    if (rc) return rc;
    double t0 = dfm_now();
    dfm_dtype fd = !strcmp(dfm_config_str(r->c, "checkpoint.dtype"), "bf16") ? DFM_BF16 : DFM_F32;
    if ((rc = dfm_trainer_save(r->tr, tmp, fd))) return rc;
    if (r->world > 1 && (rc = dfm_dist_barrier(r->dist))) return rc;
    if (r->rank) {
        r->last_saved = step;
        return 0;
    }
    cJSON *j = cJSON_CreateObject();
    if (!j) return dfm_fail(DFM_E_NOMEM, "out of memory");
    cJSON_AddNumberToObject(j, "step", (double)step);
    cJSON_AddNumberToObject(j, "next_epoch", (double)r->next_epoch);
    cJSON_AddNumberToObject(j, "next_batch", (double)r->next_batch);
    cJSON_AddNumberToObject(j, "samples", (double)r->samples);
    cJSON_AddNumberToObject(j, "skipped_steps", (double)r->skipped_steps);
    cJSON_AddNumberToObject(j, "seed", (double)r->seed);
    cJSON_AddNumberToObject(j, "world", (double)r->world);
    cJSON_AddStringToObject(j, "format", "dfm-run-1");
    if (!(rc = dfm_path_join(path, sizeof path, tmp, "state/run.json"))) rc = dfm_ckpt_write_json(path, j);
    cJSON_Delete(j);
    if (!rc && !(rc = dfm_path_join(path, sizeof path, tmp, "state/config.yaml"))) rc = dfm_config_save(r->c, path);
    if (!rc && r->tb) rc = dfm_tb_flush(r->tb);
    if (!rc) rc = dfm_ckpt_commit(r->dir, step, (int)dfm_config_int(r->c, "checkpoint.keep_last"));
    if (!rc) {
        r->last_saved = step;
        dfm_log_info("saved %s/step_%lld (%.1f s)", r->dir, (long long)step, dfm_now() - t0);
    }
    return rc;
}

static void on_changed(void *ctx, const char *key, const char *va, const char *vb)
{
    (void)ctx;
    dfm_log_warn("resuming with %s changed: %s -> %s", key, va, vb);
}

/* Resume: the trainer state, the data position, the counters; the config differences reported. */
static int resume(run_t *r, const char *spec)
{
    char ck[4096], path[4096];
    int64_t step;
    int rc = dfm_ckpt_resolve(r->dir, spec, ck, sizeof ck, &step);
    if (rc == DFM_CKPT_NONE) {
        return dfm_fail(DFM_E_ARG, "--resume: %s", dfm_errmsg());
    }
    if (rc) return rc;
    dfm_config *old = NULL;
    if (!(rc = dfm_train_config_new(&old)) && !(rc = dfm_path_join(path, sizeof path, ck, "state/config.yaml")) &&
        !(rc = dfm_config_load_file(old, path))) {
        int n = dfm_config_diff(old, r->c, on_changed, NULL);
        if (n > 0) dfm_log_hint("a changed setting applies from step %lld on; the run is no longer the one a single start gives", (long long)step);
    }
    dfm_config_free(old);
    if (rc) return rc;
    if ((rc = dfm_trainer_load_state(r->tr, ck))) return rc;
    cJSON *j = NULL;
    if ((rc = dfm_path_join(path, sizeof path, ck, "state/run.json")) || (rc = dfm_ckpt_read_json(path, &j))) return rc;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "next_epoch"), *b = cJSON_GetObjectItemCaseSensitive(j, "next_batch");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "samples"), *k = cJSON_GetObjectItemCaseSensitive(j, "skipped_steps");
    if (!cJSON_IsNumber(e) || !cJSON_IsNumber(b)) rc = dfm_fail(DFM_E_FORMAT, "'%s': no data position", path);
    else {
        r->next_epoch = (int64_t)e->valuedouble, r->next_batch = (int64_t)b->valuedouble;
        r->samples = cJSON_IsNumber(s) ? (uint64_t)s->valuedouble : 0;
        r->skipped_steps = cJSON_IsNumber(k) ? (uint64_t)k->valuedouble : 0;
    }
    cJSON_Delete(j);
    if (rc) return rc;
    if ((rc = dfm_train_data_seek(r->data, r->next_epoch, r->next_batch))) return rc;
    r->start_step = step;
    r->last_saved = step;
    dfm_log_info("resuming from %s: step %lld, epoch %lld, batch %lld", ck, (long long)step, (long long)r->next_epoch,
                 (long long)r->next_batch);
    return 0;
}

/* ---- sampling the model being trained ------------------------------------------------------ */

static int sample_setup(run_t *r)
{
    const dfm_config *c = r->c;
    const char *pf = dfm_config_str(c, "sample.prompts");
    if (!pf) return 0;
    static const char *const empty = "";
    const char *neg = dfm_config_str(c, "sample.negative");
    dfm_sample_request d = {.negative = neg ? neg : empty,
                            .width = (int)dfm_config_int(c, "sample.width"),
                            .height = (int)dfm_config_int(c, "sample.height"),
                            .frames = (int)dfm_config_int(c, "sample.frames"),
                            .steps = (int)dfm_config_int(c, "sample.steps"),
                            .guidance = dfm_config_float(c, "sample.guidance"),
                            .sampler = !strcmp(dfm_config_str(c, "sample.sampler"), "euler") ? DFM_SAMPLER_EULER : DFM_SAMPLER_UNIPC,
                            .sampler_set = strcmp(dfm_config_str(c, "sample.sampler"), "auto") != 0,
                            .seed = (uint64_t)dfm_config_int(c, "sample.seed")};
    int rc = dfm_prompts_load(&r->prompts, pf, &d);
    if (rc) return rc;
    for (int i = 0; i < r->prompts.n; i++) {
        dfm_sample_request *q = &r->prompts.req[i];
        int w = q->width, h = q->height, f = q->frames;
        if (dfm_sample_round_size(&q->width, &q->height, &q->frames))
            dfm_log_warn("%s:%d: %dx%d, %d frames rounded to %dx%d, %d frames", pf, r->prompts.line[i], w, h, f, q->width,
                         q->height, q->frames);
        if (q->width < 16 || q->height < 16) return dfm_fail(DFM_E_ARG, "%s:%d: %dx%d is smaller than 16x16", pf, r->prompts.line[i], w, h);
    }
    const char *root = dfm_config_str(c, "sample.model");
    r->sm = (dfm_sample_model){.model = root ? root : r->to.model_path, .device = r->to.device, .dtype = r->to.compute,
                               .text_dtype = DFM_BF16, .vae_dtype = DFM_F32, .text_len = r->to.text_len};
    double t0 = dfm_now();
    if ((rc = dfm_sample_texts_encode(&r->sm, r->prompts.req, r->prompts.n, &r->texts))) {
        return dfm_fail(rc, "sample.prompts: %s (sample.model names the diffusers root with text_encoder/, tokenizer/, vae/)", dfm_errmsg());
    }
    dfm_log_info("sampling %d prompt(s) from %s every %lld steps; their text states encoded (%.1f s)", r->prompts.n, pf,
                 (long long)dfm_config_int(c, "sample.every"), dfm_now() - t0);
    return 0;
}

/* samples/step_<N>/NNNN.<format> and a TensorBoard image (a strip of up to 5 frames) per prompt */
static int sample_now(run_t *r, int64_t step)
{
    if (!r->texts) return 0;
    int n = r->prompts.n, rc = 0;
    double t0 = dfm_now();
    dfm_sample_result *res = calloc(n, sizeof *res);
    if (!res) return dfm_fail(DFM_E_NOMEM, "out of memory");
    rc = dfm_sample_denoise(&r->sm, dfm_trainer_model(r->tr), r->prompts.req, n, r->texts, res, NULL, NULL);
    if (!rc) rc = dfm_sample_decode(&r->sm, res, n);
    char dir[4096], path[4300];
    if (!rc && (size_t)snprintf(dir, sizeof dir, "%s/samples/step_%lld", r->dir, (long long)step) >= sizeof dir)
        rc = dfm_fail(DFM_E_ARG, "path too long");
    if (!rc) rc = dfm_mkdirs(dir);
    const char *fmt = dfm_config_str(r->c, "sample.format");
    dfm_encode_opts eo = {.fps = 16};
    for (int i = 0; i < n && !rc; i++) {
        dfm_sample_result *x = &res[i];
        snprintf(path, sizeof path, "%s/%04d.%s", dir, i + 1, fmt);
        rc = !strcmp(fmt, "png") ? dfm_encode_grid(path, x->frames, x->nframes, x->height, x->width, &eo)
                                 : dfm_encode_frames(path, x->frames, x->nframes, x->height, x->width, &eo);
        if (rc || !r->tb) continue;
        /* up to 5 evenly spaced frames side by side */
        int k = x->nframes < 5 ? x->nframes : 5;
        size_t fb = (size_t)x->height * x->width * 3;
        uint8_t *pick = malloc(k * fb), *sheet = NULL, *png = NULL;
        int sh = 0, sw = 0;
        size_t plen = 0;
        if (!pick) rc = dfm_fail(DFM_E_NOMEM, "out of memory");
        for (int j = 0; j < k && !rc; j++) {
            int src = k > 1 ? (int)((int64_t)j * (x->nframes - 1) / (k - 1)) : 0;
            memcpy(pick + j * fb, x->frames + (size_t)src * fb, fb);
        }
        if (!rc) rc = dfm_encode_tile(pick, k, x->height, x->width, k, &sheet, &sh, &sw);
        if (!rc) rc = dfm_encode_png_mem(sheet, sh, sw, &png, &plen);
        char tag[64];
        snprintf(tag, sizeof tag, "sample/%04d", i + 1);
        if (!rc) rc = dfm_tb_image(r->tb, tag, step, png, plen, sh, sw);
        free(pick), free(sheet), free(png);
    }
    for (int i = 0; i < n; i++) dfm_sample_result_free(&res[i]);
    free(res);
    if (!rc && r->tb) rc = dfm_tb_flush(r->tb);
    if (rc) {
        return dfm_fail(rc, "sampling at step %lld: %s", (long long)step, dfm_errmsg());
    }
    dfm_log_info("sampled %d prompt(s) at step %lld into %s (%.1f s)", n, (long long)step, dir, dfm_now() - t0);
    return 0;
}

/* ---- the loop ------------------------------------------------------------------------------- */

static void progress(run_t *r, int64_t step, float loss, const dfm_step_stats *st, int tty, int line)
{
    double el = dfm_now() - r->t0;
    int64_t done = step - r->start_step;
    double sps = el > 0 ? (double)r->samples_run / el : 0;
    char eta[32];
    fmt_eta(done > 0 ? el / done * (double)(r->total - step) : -1, eta, sizeof eta);
    char msg[256];
    if (line && r->win_n) loss = (float)(r->win_sum / (double)r->win_n); /* the window's mean */
    snprintf(msg, sizeof msg, "step %lld/%lld  loss %.4f  lr %.2e  grad %.3g  %.2f samples/s  data wait %.0f%%  ETA %s",
             (long long)step, (long long)r->total, loss, st->lr, st->grad_norm, sps,
             el > 0 ? 100.0 * r->wait_s / el : 0.0, eta);
    if (tty) {
        int width = 20, fill = r->total ? (int)(width * step / r->total) : 0;
        char bar[32];
        for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
        bar[width] = 0;
        fprintf(stderr, "\r\033[K%s: [%s] %s", dfm_prog(), bar, msg);
        if (line) fputc('\n', stderr);
        fflush(stderr);
    } else if (line) {
        dfm_log_info("%s", msg);
    }
}

/* One optimizer step: grad_accum micro-batches, then the update (with the other ranks').
 * *nsamples: the samples this rank trained on. */
static int one_step(run_t *r, float *loss_out, int64_t *nsamples, dfm_step_stats *st)
{
    int ga = r->to.grad_accum, rc = 0;
    float *losses = calloc(ga, sizeof *losses);
    if (!losses) return dfm_fail(DFM_E_NOMEM, "out of memory");
    int64_t step = dfm_trainer_step(r->tr);
    for (int m = 0; m < ga && !rc; m++) {
        dfm_batch b;
        if ((rc = dfm_train_data_next(r->data, &b))) break;
        r->wait_s += b.wait_s;
        dfm_micro mb;
        micro_from_batch(&b, &mb);
        /* caption dropout: the empty prompt's states instead of the sample's; text longer than
         * model.text_len: its first text_len rows (the pipeline truncates the tokens so) */
        const float **text = malloc(b.n * sizeof *text);
        int *rows = malloc(b.n * sizeof *rows);
        if (!text || !rows) rc = dfm_fail(DFM_E_NOMEM, "out of memory");
        else if (r->caption_dropout > 0 && r->empty_dim != b.text_dim)
            rc = dfm_fail(DFM_E_FORMAT, "the empty prompt's states have %d features, the data's text %d", r->empty_dim,
                          b.text_dim);
        for (int i = 0; i < b.n && !rc; i++) {
            int drop = r->caption_dropout > 0 && dropout_draw(r->seed, step, b.keys[i]) < r->caption_dropout;
            text[i] = drop ? r->empty : b.text[i];
            rows[i] = drop ? r->empty_rows : b.text_rows[i];
            if (rows[i] > r->to.text_len) {
                if (!r->warned_long++)
                    dfm_log_warn("%s: %d text rows, more than model.text_len %d: its first %d are used (and so for any "
                                 "other such sample)", b.keys[i], rows[i], r->to.text_len, r->to.text_len);
                rows[i] = r->to.text_len;
            }
        }
        mb.text = text, mb.text_rows = rows;
        if (!rc) rc = dfm_trainer_micro(r->tr, &mb, &losses[m], NULL);
        if (!rc) {
            *nsamples += b.n;
            /* the data position after this batch */
            int64_t bpe = r->batches_per_epoch;
            r->next_epoch = b.epoch, r->next_batch = b.batch + 1;
            if (r->next_batch >= bpe) r->next_epoch++, r->next_batch = 0;
        }
        free(text), free(rows);
        dfm_batch_free(&b);
    }
    if (!rc) rc = dfm_trainer_apply(r->tr, losses, ga, st);
    if (!rc) {
        double s = 0;
        for (int m = 0; m < ga; m++) s += losses[m];
        *loss_out = (float)(s / ga);
    }
    free(losses);
    return rc;
}

int dfm_train_run(const dfm_config *c, const dfm_run_opts *o, dfm_run_result *res)
{
    run_t R = {.c = c, .o = o, .t0 = dfm_now()}, *r = &R;
    char **lists = NULL;
    int rc = 0, tty = isatty(2) && !o->quiet;
    memset(res, 0, sizeof *res);
    if ((rc = dfm_train_config_trainer(c, &r->to, &lists))) return rc;
    r->seed = dfm_train_config_seed(c);
    r->dir = dfm_config_str(c, "checkpoint.dir");
    if (!r->dir) {
        free(lists);
        return dfm_fail(DFM_E_ARG, "no run directory: set checkpoint.dir in the config or --checkpoint.dir DIR");
    }
    if (!dfm_config_list_len(c, "data.shards")) {
        free(lists);
        return dfm_fail(DFM_E_ARG, "no training data: set data.shards (dfm-shard's output: files, globs or directories)");
    }
    int64_t threads = dfm_config_int(c, "train.threads");
    if (threads < 0) {
        free(lists);
        return dfm_fail(DFM_E_ARG, "train.threads must be >= 0 (0: every core)");
    }
    if (threads > 0) dfm_ops_set_threads((int)threads);
    /* the job: a launcher's ranks, or one process (then nothing of MPI is loaded) */
    dfm_dist_opts dopt = {.timeout_s = dfm_config_float(c, "dist.timeout"), .device = r->to.device};
    if ((rc = dfm_dist_init(&r->dist, &dopt))) {
        free(lists);
        return rc;
    }
    r->rank = dfm_dist_rank(r->dist), r->world = dfm_dist_size(r->dist);
    if (r->rank) tty = 0;
    if (r->world > 1) {
        r->to.dist = r->dist;
        r->to.shard_optimizer = dfm_config_bool(c, "dist.shard_optimizer");
        r->to.overlap_reduce = dfm_config_bool(c, "dist.overlap");
        static char prog[64];
        snprintf(prog, sizeof prog, "%s[rank %d]", dfm_prog(), r->rank);
        if (r->rank) dfm_log_init(prog), dfm_log_set_quiet(1); /* progress and info from rank 0 */
        int64_t bs = dfm_config_int(c, "data.batch_size");
        dfm_log_info("data parallel: %d ranks (%s), global batch %lld = %lld per rank x %d ranks x %d accumulated%s",
                     r->world, dfm_dist_backend(r->dist), (long long)(bs * r->world * r->to.grad_accum), (long long)bs,
                     r->world, r->to.grad_accum, r->to.shard_optimizer ? "; optimizer state sharded" : "");
    }
    if (r->to.device == DFM_CUDA && !dfm_device_available(DFM_CUDA)) {
        rc = dfm_fail(DFM_E_UNSUPPORTED, "train.device cuda: %s", dfm_errmsg());
        goto out;
    }
    if (!r->rank) { /* the run directory is rank 0's to tidy */
        if ((rc = dfm_mkdirs(r->dir))) goto out;
        int stale = 0;
        if ((rc = dfm_ckpt_clean_tmp(r->dir, &stale))) goto out;
        if (stale) dfm_log_info("removed %d unfinished checkpoint(s) (*.tmp) from %s", stale, r->dir);
    }
    if (r->world > 1 && (rc = dfm_dist_barrier(r->dist))) goto out;
    if (!o->resume) {
        char ck[4096];
        int64_t s;
        if (!dfm_ckpt_resolve(r->dir, NULL, ck, sizeof ck, &s)) {
            rc = dfm_fail(DFM_E_ARG, "'%s' already holds a run (step_%lld): --resume continues it; or set checkpoint.dir to a new directory",
                          r->dir, (long long)s);
            goto out;
        }
    }

    /* data */
    dfm_log_info("indexing %s ...", dfm_config_list_str(c, "data.shards", 0));
    if ((rc = open_data(c, "data.shards", 0, r->seed, r->rank, r->world, &r->data))) goto out;
    r->batches_per_epoch = dfm_train_data_batches_per_epoch(r->data);
    if (r->batches_per_epoch < 1) {
        rc = dfm_fail(DFM_E_ARG, "the training data gives no batch (%lld samples, batch size %lld, drop_last %s)",
                      (long long)dfm_train_data_samples(r->data), (long long)dfm_config_int(c, "data.batch_size"),
                      dfm_config_bool(c, "data.drop_last") ? "on" : "off");
        goto out;
    }
    if (dfm_config_has(c, "train.max_steps")) {
        r->total = dfm_config_int(c, "train.max_steps");
        if (r->total < 1) {
            rc = dfm_fail(DFM_E_ARG, "train.max_steps must be >= 1");
            goto out;
        }
    } else {
        int64_t ep = dfm_config_int(c, "train.epochs");
        if (ep < 1) {
            rc = dfm_fail(DFM_E_ARG, "train.epochs must be >= 1");
            goto out;
        }
        r->total = ep * ((r->batches_per_epoch + r->to.grad_accum - 1) / r->to.grad_accum);
    }
    r->to.total_steps = r->total;
    int64_t eval_every = dfm_config_int(c, "eval.every");
    if ((eval_every > 0 || dfm_config_bool(c, "eval.at_start")) && !dfm_config_list_len(c, "data.eval_shards")) {
        rc = dfm_fail(DFM_E_ARG, "eval.every / eval.at_start need data.eval_shards");
        goto out;
    }
    if (dfm_config_list_len(c, "data.eval_shards") && (rc = open_data(c, "data.eval_shards", 1, r->seed, r->rank, r->world, &r->eval))) goto out;

    /* model */
    double tl = dfm_now();
    if ((rc = dfm_trainer_new(&r->tr, &r->to))) goto out;
    dfm_log_info("model %s loaded (%.1f s): %s, %lld trainable parameters", r->to.model_path, dfm_now() - tl,
                 r->to.lora_rank ? "LoRA" : "full fine-tuning", (long long)dfm_trainer_trainable_params(r->tr));
    r->caption_dropout = dfm_config_float(c, "train.caption_dropout");
    if (r->caption_dropout > 0) {
        const char *ep = dfm_config_str(c, "data.empty_prompt");
        if ((rc = ep ? empty_from_file(r, ep) : empty_from_model(r))) goto out;
        dfm_log_info("caption dropout %g: the empty prompt's states (%d x %d) from %s", r->caption_dropout, r->empty_rows,
                     r->empty_dim, ep ? ep : "the model's tokenizer and text encoder (bf16)");
    }
    if (o->resume && (rc = resume(r, o->resume))) goto out;
    if (!r->rank && (rc = sample_setup(r))) goto out;
    if (r->start_step >= r->total) {
        dfm_log_info("step %lld of %lld: nothing left to train", (long long)r->start_step, (long long)r->total);
        goto summary;
    }
    char path[4096];
    if (!r->rank && ((rc = dfm_path_join(path, sizeof path, r->dir, "config.yaml")) || (rc = dfm_config_save(c, path)))) goto out;
    if (!r->rank && dfm_config_bool(c, "logging.tensorboard")) {
        int removed = 0;
        if (o->resume && (rc = dfm_tb_purge_after(r->dir, r->start_step, &removed))) goto out;
        if (removed) dfm_log_info("TensorBoard: dropped %d events logged after step %lld (lost with the stop)", removed, (long long)r->start_step);
        if ((rc = dfm_tb_open(&r->tb, r->dir))) goto out;
    }
    dfm_log_info("training %lld steps (%lld batches per epoch, %lld samples, %d bucket(s)) into %s", (long long)r->total,
                 (long long)r->batches_per_epoch, (long long)dfm_train_data_samples(r->data), dfm_train_data_buckets(r->data),
                 r->dir);

    struct sigaction sa = {0}, old_int, old_term;
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    g_signal = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);

    if (r->eval && !o->resume && dfm_config_bool(c, "eval.at_start") && (rc = run_eval(r, 0))) goto restore;
    if (r->texts && !o->resume && dfm_config_bool(c, "sample.at_start") && (rc = sample_now(r, 0))) goto restore;
    int64_t sample_every = dfm_config_int(c, "sample.every");
    res->started = 1;
    r->t0 = dfm_now();
    int64_t every = dfm_config_int(c, "checkpoint.every"), log_every = dfm_config_int(c, "logging.every");
    int64_t max_bad = dfm_config_int(c, "train.max_bad_steps");
    int64_t bad = 0, ran = 0;
    while (dfm_trainer_step(r->tr) < r->total) {
        float loss = 0;
        int64_t nsamples = 0;
        dfm_step_stats st;
        if ((rc = one_step(r, &loss, &nsamples, &st))) goto restore;
        int stop_signal = g_signal;
        if (r->world > 1) {
            /* the step's mean loss and samples over the ranks, and a stop any rank was asked for */
            double v[3] = {loss, (double)nsamples, g_signal ? 1.0 : 0.0}, tc = dfm_now();
            rc = dfm_dist_allreduce(r->dist, v, 3, DFM_DIST_F64, DFM_CPU);
            r->comm_s += dfm_now() - tc;
            if (rc) goto restore;
            loss = (float)(v[0] / r->world), nsamples = (int64_t)v[1];
            if (v[2] > 0 && !stop_signal) stop_signal = SIGTERM; /* another rank's */
        }
        r->samples += (uint64_t)nsamples, r->samples_run += (uint64_t)nsamples;
        int64_t step = dfm_trainer_step(r->tr);
        ran++;
        if (st.skipped) {
            r->skipped_steps++;
            dfm_log_warn("step %lld skipped: non-finite %s (loss %g, gradient norm %g); nothing was updated", (long long)step,
                         isfinite(loss) ? "gradient" : "loss", loss, st.grad_norm);
            if (++bad >= max_bad && max_bad > 0) {
                rc = dfm_fail(DFM_E_NONFINITE, "stopping: %lld steps in a row had a non-finite loss or gradient (last: step %lld)",
                              (long long)bad, (long long)step);
                dfm_log_hint("lower optim.lr, check the data (dfm-shard --describe), or resume from an earlier checkpoint");
                goto restore;
            }
        } else {
            bad = 0;
            r->last_loss = loss;
            r->win_sum += loss, r->win_n++;
        }
        if (r->tb) {
            double el = dfm_now() - r->t0;
            if ((rc = dfm_tb_scalar(r->tb, "train/loss", step, loss)) || (rc = dfm_tb_scalar(r->tb, "train/lr", step, (float)st.lr)) ||
                (rc = dfm_tb_scalar(r->tb, "train/grad_norm", step, (float)st.grad_norm)) ||
                (rc = dfm_tb_scalar(r->tb, "train/samples_per_s", step, el > 0 ? (float)(r->samples_run / el) : 0.0f)))
                goto restore;
        }
        int line = log_every > 0 && (step % log_every == 0 || step == r->total);
        if (!o->quiet && !r->rank && (tty || line)) progress(r, step, loss, &st, tty, line);
        if (line) r->win_sum = 0, r->win_n = 0;
        if (r->eval && eval_every > 0 && step % eval_every == 0) {
            if (tty) fputs("\r\033[K", stderr);
            if ((rc = run_eval(r, step))) goto restore;
        }
        int stop = stop_signal || (o->stop_after > 0 && ran >= o->stop_after);
        if ((every > 0 && step % every == 0) || step == r->total || stop) {
            if (tty) fputs("\r\033[K", stderr);
            if ((rc = save_checkpoint(r, step))) goto restore;
        }
        /* after the save: a sample that fails (memory, disk) costs a warning, never the steps */
        if (r->texts && !stop_signal && ((sample_every > 0 && step % sample_every == 0) || step == r->total)) {
            if (tty) fputs("\r\033[K", stderr);
            if (sample_now(r, step)) dfm_log_warn("%s; training goes on", dfm_errmsg());
        }
        if (stop) {
            res->signo = stop_signal;
            dfm_log_info("stopped by %s at step %lld: saved; `dfm-train %s --resume` continues",
                         stop_signal ? strsignal(stop_signal) : "--stop-after", (long long)step,
                         o->config_path ? o->config_path : "CONFIG");
            rc = 1;
            goto restore;
        }
    }
restore:
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (tty) fputs("\r\033[K", stderr);
summary:
    if (rc >= 0 && !r->rank) { /* the closing summary, always printed (by rank 0) */
        char ranks[128] = "";
        double el = dfm_now() - r->t0, comm = r->comm_s + dfm_trainer_comm_seconds(r->tr);
        if (r->world > 1)
            snprintf(ranks, sizeof ranks, ", %d ranks (communication %.2f s, %.0f%%)", r->world, comm,
                     el > 0 ? 100.0 * comm / el : 0.0);
        fprintf(stderr, "%s: steps %lld..%lld of %lld, %llu samples, %lld bad sample reads skipped, %llu skipped steps, %.2f s (data wait %.1f s)%s, last loss %.5g; run directory %s\n",
                dfm_prog(), (long long)r->start_step, (long long)dfm_trainer_step(r->tr), (long long)r->total,
                (unsigned long long)r->samples_run, (long long)dfm_train_data_skipped(r->data),
                (unsigned long long)r->skipped_steps, el, r->wait_s, ranks, r->last_loss, r->dir);
    }
out:
    if (r->tb) {
        int trc = dfm_tb_close(r->tb);
        if (!rc && trc) rc = trc;
    }
    dfm_trainer_free(r->tr);
    if (r->data) dfm_train_data_close(r->data);
    if (r->eval) dfm_train_data_close(r->eval);
    free(r->empty);
    dfm_sample_texts_free(r->texts);
    dfm_prompts_free(&r->prompts);
    free(lists);
    if (r->dist) {
        /* a failure on one rank must not leave the others waiting in a collective */
        if (rc < 0 && r->world > 1) dfm_dist_abort(r->dist, 1, dfm_errmsg());
        dfm_dist_free(r->dist);
    }
    return rc;
}
