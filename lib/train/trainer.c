/* trainer.c — one flow-matching optimizer step of the Wan transformer (trainer.h). */
#include "train/trainer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/buf.h"
#include "base/error.h"
#include <cjson/cJSON.h>

#include "base/json.h"
#include "base/log.h"
#include "dist/dist.h"
#include "io/safetensors.h"
#include "models/wan/lora.h"
#include "tensor/ops.h"
#include "train/checkpoint.h"

struct dfm_trainer {
    dfm_trainer_opts o;
    dfm_wan_transformer *m;
    const dfm_wan_transformer_config *cfg;
    dfm_adamw *opt;
    int64_t step;       /* optimizer steps taken, skipped ones included */
    int micro;          /* micro-batches since the last apply */
    int nonfinite;      /* a micro-batch of this step had a non-finite loss */
    int64_t trainable;  /* elements */
    int lora_folded;    /* adapters from init_from: scale folded into B (save with alpha 0) */
    double comm_s;      /* seconds in the step's own collectives (the optimizer counts its own) */
};

int dfm_trainer_frozen(const char *name, const char *const *pats)
{
    if (!pats) return 0;
    size_t n = strlen(name);
    for (const char *const *p = pats; *p; p++) {
        size_t k = strlen(*p);
        if (!k) continue;
        if (!strncmp(name, *p, k) && (name[k] == '\0' || name[k] == '.')) return 1;
        for (size_t i = 1; i + k <= n; i++)
            if (name[i - 1] == '.' && !strncmp(name + i, *p, k) && (name[i + k] == '\0' || name[i + k] == '.')) return 1;
    }
    return 0;
}

int dfm_trainer_new(dfm_trainer **out, const dfm_trainer_opts *o)
{
    *out = NULL;
    if (!o || !o->model_path) return dfm_fail(DFM_E_ARG, "trainer: no model path");
    if (o->grad_accum < 1) return dfm_fail(DFM_E_ARG, "trainer: grad_accum must be >= 1, not %d", o->grad_accum);
    if (o->text_len < 1) return dfm_fail(DFM_E_ARG, "trainer: text_len must be >= 1, not %d", o->text_len);
    if (o->lora_rank < 0) return dfm_fail(DFM_E_ARG, "trainer: lora rank must be >= 0, not %d", o->lora_rank);
    if (!(o->lr >= 0) || !isfinite(o->lr)) return dfm_fail(DFM_E_ARG, "trainer: learning rate must be finite and >= 0");
    int rc = dfm_flow_check(&o->flow);
    if (rc) return rc;
    dfm_trainer *t = calloc(1, sizeof *t);
    if (!t) return dfm_fail(DFM_E_NOMEM, "trainer: out of memory");
    t->o = *o;
    int lora = o->lora_rank > 0 || o->lora_init_from;
    dfm_wan_transformer_opts mo = {.device = o->device,
                                   .weights = lora ? o->weights : DFM_F32,
                                   .compute = o->compute,
                                   .trainable = !lora};
    if ((rc = dfm_wan_transformer_load(&t->m, o->model_path, &mo))) goto fail;
    t->cfg = dfm_wan_transformer_get_config(t->m);
    if (lora) {
        int count = 0;
        if (o->lora_init_from) {
            dfm_wan_lora_load_opts lo = {.alpha = 0, .dropout = o->lora_dropout};
            if ((rc = dfm_wan_lora_load(t->m, o->lora_init_from, 1.0f, &lo, NULL))) goto fail;
            t->lora_folded = 1;
        } else {
            if ((rc = dfm_wan_transformer_lora_add(t->m, o->lora_targets, o->lora_rank, o->lora_alpha, o->lora_dropout,
                                                   o->seed, &count)))
                goto fail;
            if (!count) {
                rc = dfm_fail(DFM_E_ARG, "trainer: no linear of the model matches the LoRA targets");
                goto fail;
            }
        }
        /* the frozen base's forward layout, once (the same bits): one more copy of the base, as the
         * backward needs the weights as loaded too — so only when asked */
        if (o->pack_frozen && o->device == DFM_CPU && o->compute == DFM_BF16 &&
            (rc = dfm_wan_transformer_pack(t->m, 0, NULL)))
            goto fail;
    }
    if ((rc = dfm_adamw_new(&t->opt, &o->adamw))) goto fail;
    int n = dfm_wan_transformer_nparams(t->m);
    for (int i = 0; i < n; i++) {
        dfm_tensor *p, *g;
        const char *name = dfm_wan_transformer_param(t->m, i, &p, &g);
        if (!dfm_wan_transformer_param_trained(t->m, i)) continue;
        if (lora && !strncmp(name, "patch_embedding.", 16)) {
            /* refused now, not at the first save: no consumer maps an adapter on the Conv3d */
            rc = dfm_fail(DFM_E_ARG, "LoRA on patch_embedding (a Conv3d) is not saved in any format diffusers, ComfyUI or "
                                     "diffusion-pipe load: leave it out of lora.targets");
            goto fail;
        }
        if (!lora && dfm_trainer_frozen(name, o->freeze)) continue;
        if ((rc = dfm_adamw_add(t->opt, name, p, g))) goto fail;
        t->trainable += dfm_tensor_numel(p);
    }
    if (!t->trainable) {
        rc = dfm_fail(DFM_E_ARG, "trainer: nothing to train (every parameter frozen)");
        goto fail;
    }
    if (o->shard_optimizer && o->dist && dfm_dist_size(o->dist) > 1) {
        if ((rc = dfm_adamw_shard(t->opt, o->dist))) goto fail;
        /* the blocks' gradients are made by the backward that needs them, and freed after */
        for (int b = 0; b < t->cfg->num_layers; b++)
            if ((rc = dfm_wan_transformer_release_grads(t->m, b))) goto fail;
    }
    if ((rc = dfm_wan_transformer_zero_grads(t->m))) goto fail;
    *out = t;
    return 0;
fail:
    dfm_trainer_free(t);
    return rc;
}

void dfm_trainer_free(dfm_trainer *t)
{
    if (!t) return;
    dfm_adamw_free(t->opt);
    dfm_wan_transformer_free(t->m);
    free(t);
}

dfm_wan_transformer *dfm_trainer_model(dfm_trainer *t) { return t->m; }
int64_t dfm_trainer_trainable_params(const dfm_trainer *t) { return t->trainable; }
int64_t dfm_trainer_step(const dfm_trainer *t) { return t->step; }
double dfm_trainer_comm_seconds(const dfm_trainer *t) { return t->comm_s + dfm_adamw_comm_seconds(t->opt); }

/* The model's inputs for one micro-batch: x_t on the device, t = 1000 sigma, padded text. */
typedef struct {
    dfm_tensor xt, ctx;
    float *eps, *sigma, *tsteps;
    size_t n; /* elements per sample */
} micro_in;

static void micro_in_free(micro_in *in)
{
    dfm_tensor_free(&in->xt);
    dfm_tensor_free(&in->ctx);
    free(in->eps);
    free(in->sigma);
    free(in->tsteps);
}

static int micro_prepare(dfm_trainer *t, const dfm_micro *mb, const float *fixed_sigma, micro_in *in)
{
    memset(in, 0, sizeof *in);
    const dfm_wan_transformer_config *c = t->cfg;
    if (mb->B < 1 || !mb->x0 || !mb->text || !mb->text_rows)
        return dfm_fail(DFM_E_ARG, "trainer: empty micro-batch");
    if (mb->C != c->in_channels)
        return dfm_fail(DFM_E_ARG, "trainer: latents have %d channels, the model takes %d", mb->C, c->in_channels);
    if (c->out_channels != c->in_channels)
        return dfm_fail(DFM_E_UNSUPPORTED, "trainer: the model's output channels (%d) differ from its input's (%d)",
                        c->out_channels, c->in_channels);
    if (mb->F % c->patch[0] || mb->H % c->patch[1] || mb->W % c->patch[2])
        return dfm_fail(DFM_E_ARG, "trainer: latent grid %dx%dx%d is not a multiple of the patch %dx%dx%d", mb->F, mb->H,
                        mb->W, c->patch[0], c->patch[1], c->patch[2]);
    if (mb->text_dim != c->text_dim)
        return dfm_fail(DFM_E_ARG, "trainer: text states have %d features, the model takes %d", mb->text_dim, c->text_dim);
    if (!mb->sigma && !mb->keys) return dfm_fail(DFM_E_ARG, "trainer: a micro-batch needs keys or sigmas");
    int B = mb->B;
    in->n = (size_t)mb->C * mb->F * mb->H * mb->W;
    size_t N = (size_t)B * in->n;
    in->eps = malloc(N * sizeof(float));
    in->sigma = malloc(B * sizeof(float));
    in->tsteps = malloc(B * sizeof(float));
    float *xt = malloc(N * sizeof(float));
    int rc = 0;
    if (!in->eps || !in->sigma || !in->tsteps || !xt) {
        rc = dfm_fail(DFM_E_NOMEM, "trainer: out of memory for a micro-batch of %d", B);
        goto out;
    }
    for (int b = 0; b < B; b++) {
        if (fixed_sigma) in->sigma[b] = fixed_sigma[b];
        else if (mb->sigma) in->sigma[b] = mb->sigma[b];
        else in->sigma[b] = dfm_flow_sigma(&t->o.flow, t->o.seed, t->step, mb->keys[b]);
        if (mb->noise) memcpy(in->eps + b * in->n, mb->noise + b * in->n, in->n * sizeof(float));
        else dfm_flow_noise(t->o.seed, t->step, mb->keys[b], in->eps + b * in->n, in->n);
        in->tsteps[b] = in->sigma[b] * 1000.0f;
        dfm_flow_noisy(mb->x0 + b * in->n, in->eps + b * in->n, in->sigma[b], xt + b * in->n, in->n);
    }
    int64_t shape[5] = {B, mb->C, mb->F, mb->H, mb->W};
    dfm_tensor host = {.dtype = DFM_F32, .device = DFM_CPU, .ndim = 5, .data = xt};
    memcpy(host.shape, shape, sizeof shape);
    if ((rc = dfm_tensor_copy(&in->xt, &host, t->o.device))) goto out;
    /* text: each sample's rows, zero-padded to text_len (dfm_wan_text_pad) */
    dfm_tensor *st = calloc(B, sizeof *st);
    const dfm_tensor **sp = calloc(B, sizeof *sp);
    if (!st || !sp) {
        free(st), free(sp);
        rc = dfm_fail(DFM_E_NOMEM, "trainer: out of memory");
        goto out;
    }
    for (int b = 0; b < B && !rc; b++) {
        dfm_tensor h = {.dtype = DFM_F32, .device = DFM_CPU, .ndim = 2, .data = (void *)mb->text[b]};
        h.shape[0] = mb->text_rows[b], h.shape[1] = mb->text_dim;
        if (mb->text_rows[b] > t->o.text_len)
            rc = dfm_fail(DFM_E_ARG, "trainer: %s has %d text rows, more than text_len %d",
                          mb->keys ? mb->keys[b] : "a sample", mb->text_rows[b], t->o.text_len);
        else rc = dfm_tensor_copy(&st[b], &h, t->o.device);
        sp[b] = &st[b];
    }
    if (!rc) rc = dfm_wan_text_pad(sp, B, t->o.text_len, &in->ctx);
    for (int b = 0; b < B; b++) dfm_tensor_free(&st[b]);
    free(st);
    free(sp);
out:
    free(xt);
    if (rc) micro_in_free(in);
    return rc;
}

/* pred (on the model's device) to a host f32 buffer of N elements */
static int to_host(const dfm_tensor *x, float **out)
{
    dfm_tensor h = {0};
    int rc = x->device == DFM_CPU ? 0 : dfm_tensor_copy(&h, x, DFM_CPU);
    if (rc) return rc;
    size_t n = dfm_tensor_numel(x);
    *out = malloc(n * sizeof(float));
    if (!*out) {
        dfm_tensor_free(&h);
        return dfm_fail(DFM_E_NOMEM, "trainer: out of memory");
    }
    memcpy(*out, x->device == DFM_CPU ? x->data : h.data, n * sizeof(float));
    dfm_tensor_free(&h);
    return 0;
}

/* The backward's grads-ready callback on a step's last micro-batch: block i's gradients are
 * final, start their sum over the ranks. */
static int block_grads_ready(void *ctx, int block)
{
    dfm_trainer *t = ctx;
    char prefix[32];
    snprintf(prefix, sizeof prefix, "blocks.%d.", block);
    return dfm_adamw_reduce_grads_start(t->opt, t->o.dist, prefix);
}

/* Sharded optimizer, every micro-batch: block i's gradients are complete for this micro-batch;
 * add their sum over the ranks into this rank's shard and free them until the next backward
 * (only one block's full gradients live at a time: ZeRO stage 2's memory). */
static int block_grads_shard(void *ctx, int block)
{
    dfm_trainer *t = ctx;
    int rc = dfm_adamw_reduce_block(t->opt, t->o.dist, block);
    return rc ? rc : dfm_wan_transformer_release_grads(t->m, block);
}

static uint64_t dropout_seed(const dfm_trainer *t)
{
    /* LoRA dropout: a stream per (seed, step, micro-batch), so a resumed run draws the same masks */
    uint64_t z = t->o.seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(t->step + 1)) ^ ((uint64_t)t->micro << 48);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

int dfm_trainer_micro(dfm_trainer *t, const dfm_micro *mb, float *loss, float *sigmas)
{
    micro_in in;
    int rc = micro_prepare(t, mb, NULL, &in);
    if (rc) return rc;
    dfm_tensor out = {0}, dout = {0};
    dfm_wan_acts *acts = NULL;
    float *pred = NULL, *dpred = NULL;
    if ((rc = dfm_wan_transformer_forward(t->m, &in.xt, in.tsteps, &in.ctx, &out, &acts, t->o.checkpointing,
                                          dropout_seed(t))))
        goto out;
    if ((rc = to_host(&out, &pred))) goto out;
    size_t N = (size_t)mb->B * in.n;
    if (!(dpred = malloc(N * sizeof(float)))) {
        rc = dfm_fail(DFM_E_NOMEM, "trainer: out of memory");
        goto out;
    }
    /* data parallel: the ranks' gradients are summed, so each is scaled by 1 / ranks as well */
    float gscale = 1.0f / ((float)t->o.grad_accum * (float)(t->o.dist ? dfm_dist_size(t->o.dist) : 1));
    *loss = dfm_flow_loss(pred, mb->x0, in.eps, in.sigma, mb->B, in.n, &t->o.flow, gscale, dpred, NULL);
    if (!isfinite(*loss)) t->nonfinite = 1;
    dfm_tensor hd = {.dtype = DFM_F32, .device = DFM_CPU, .ndim = out.ndim, .data = dpred};
    memcpy(hd.shape, out.shape, sizeof out.shape);
    if ((rc = dfm_tensor_copy(&dout, &hd, t->o.device))) goto out;
    int overlap = t->o.overlap_reduce && !t->o.shard_optimizer && t->o.dist && dfm_dist_size(t->o.dist) > 1 &&
                  t->micro == t->o.grad_accum - 1;
    int sharded = t->o.shard_optimizer && t->o.dist && dfm_dist_size(t->o.dist) > 1;
    if (overlap) dfm_wan_transformer_on_grads_ready(t->m, block_grads_ready, t);
    if (sharded) dfm_wan_transformer_on_grads_ready(t->m, block_grads_shard, t);
    rc = dfm_wan_transformer_backward(t->m, acts, &dout, NULL, NULL);
    if (overlap || sharded) dfm_wan_transformer_on_grads_ready(t->m, NULL, NULL);
    acts = NULL;
    if (sigmas) memcpy(sigmas, in.sigma, mb->B * sizeof(float));
    t->micro++;
out:
    if (acts) dfm_wan_acts_free(acts);
    dfm_tensor_free(&out);
    dfm_tensor_free(&dout);
    free(pred);
    free(dpred);
    micro_in_free(&in);
    return rc;
}

int dfm_trainer_eval(dfm_trainer *t, const dfm_micro *mb, float *loss)
{
    micro_in in;
    int rc = micro_prepare(t, mb, mb->sigma, &in);
    if (rc) return rc;
    dfm_tensor out = {0};
    float *pred = NULL;
    if (!(rc = dfm_wan_transformer_forward(t->m, &in.xt, in.tsteps, &in.ctx, &out, NULL, 0, 0)) &&
        !(rc = to_host(&out, &pred)))
        *loss = dfm_flow_loss(pred, mb->x0, in.eps, in.sigma, mb->B, in.n, &t->o.flow, 1.0f, NULL, NULL);
    dfm_tensor_free(&out);
    free(pred);
    micro_in_free(&in);
    return rc;
}

int dfm_trainer_apply(dfm_trainer *t, const float *losses, int nlosses, dfm_step_stats *st)
{
    dfm_step_stats s = {0};
    int finite = 1;
    for (int i = 0; i < nlosses; i++)
        if (!isfinite(losses[i])) finite = 0;
    if (t->nonfinite) finite = 0;
    int rc = 0;
    if (t->o.dist && dfm_dist_size(t->o.dist) > 1) {
        /* every rank skips or none: a non-finite loss anywhere; the gradients summed */
        double bad = !finite, t0 = dfm_now();
        rc = dfm_dist_allreduce(t->o.dist, &bad, 1, DFM_DIST_F64, DFM_CPU);
        t->comm_s += dfm_now() - t0;
        if (rc) return rc;
        finite = bad == 0;
        if ((rc = dfm_adamw_reduce_grads(t->opt, t->o.dist))) return rc;
    }
    s.lr = dfm_lr_at(t->o.schedule ? t->o.schedule : "constant", t->step, t->o.warmup_steps, t->o.total_steps, t->o.lr,
                     t->o.min_lr);
    int gfinite = 1;
    s.grad_norm = dfm_adamw_grad_norm(t->opt, &gfinite);
    if (!finite || !gfinite || !isfinite(s.grad_norm)) {
        s.skipped = 1;
    } else {
        if (t->o.max_grad_norm > 0) {
            /* torch.nn.utils.clip_grad_norm_: coef = max_norm / (total + 1e-6), clamped to 1, applied always */
            float total = (float)s.grad_norm;
            float coef = (float)t->o.max_grad_norm / (total + 1e-6f);
            if (coef > 1.0f) coef = 1.0f;
            if ((rc = dfm_adamw_scale_grads(t->opt, coef))) return rc;
        }
        if ((rc = dfm_adamw_step(t->opt, s.lr))) return rc;
    }
    if ((rc = dfm_wan_transformer_zero_grads(t->m))) return rc;
    t->step++;
    t->micro = 0;
    t->nonfinite = 0;
    if (st) *st = s;
    return 0;
}

/* ---- state ---------------------------------------------------------------------------------- */

/* The trainable parameters exactly (f32, host), for a resume that continues bit for bit. */
static int save_params(dfm_trainer *t, const char *path)
{
    int n = dfm_wan_transformer_nparams(t->m), k = 0, rc = 0;
    dfm_st_entry *e = calloc(n ? n : 1, sizeof *e);
    dfm_tensor *host = calloc(n ? n : 1, sizeof *host);
    if (!e || !host) {
        free(e), free(host);
        return dfm_fail(DFM_E_NOMEM, "trainer: out of memory");
    }
    for (int i = 0; i < n && !rc; i++) {
        dfm_tensor *p, *g;
        const char *name = dfm_wan_transformer_param(t->m, i, &p, &g);
        if (!dfm_wan_transformer_param_trained(t->m, i)) continue;
        const dfm_tensor *src = p;
        if (p->device != DFM_CPU) {
            if ((rc = dfm_tensor_copy(&host[k], p, DFM_CPU))) break;
            src = &host[k];
        }
        e[k].name = name;
        e[k].dtype = src->dtype;
        e[k].ndim = src->ndim;
        for (int d = 0; d < src->ndim; d++) e[k].shape[d] = src->shape[d];
        e[k].data = src->data;
        k++;
    }
    if (!rc) rc = dfm_st_write(path, e, k, "{\"format\":\"dfm-params-1\"}");
    for (int i = 0; i < k; i++) dfm_tensor_free(&host[i]);
    free(host);
    free(e);
    return rc;
}

static int load_params(dfm_trainer *t, const char *path, int exact_count)
{
    dfm_st *st = NULL;
    int rc = dfm_st_open(&st, path);
    if (rc) return rc;
    int n = dfm_wan_transformer_nparams(t->m), k = 0;
    for (int i = 0; i < n && !rc; i++) {
        dfm_tensor *p, *g;
        const char *name = dfm_wan_transformer_param(t->m, i, &p, &g);
        if (!dfm_wan_transformer_param_trained(t->m, i)) continue;
        k++;
        /* the file's shape where the model keeps another view of the same values (the patch
         * embedding's Conv3d weight [D, C, pf, ph, pw] is a [D, C pf ph pw] matrix here) */
        int nd = p->ndim;
        const int64_t *shape = p->shape;
        const dfm_st_tensor *ft = dfm_st_find(st, name);
        if (ft) {
            int64_t fn = 1;
            for (int d = 0; d < ft->ndim; d++) fn *= ft->shape[d];
            if (fn == dfm_tensor_numel(p)) nd = ft->ndim, shape = ft->shape;
        }
        if (p->device == DFM_CPU) {
            rc = dfm_st_read(st, name, DFM_F32, nd, shape, p->data);
        } else {
            dfm_tensor h = {0};
            if (!(rc = dfm_tensor_alloc(&h, DFM_F32, DFM_CPU, p->ndim, p->shape)) &&
                !(rc = dfm_st_read(st, name, DFM_F32, nd, shape, h.data))) {
                dfm_tensor d = {0};
                if (!(rc = dfm_tensor_copy(&d, &h, p->device))) {
                    dfm_tensor_free(p);
                    *p = d;
                }
            }
            dfm_tensor_free(&h);
        }
    }
    if (!rc && exact_count && k != dfm_st_count(st))
        rc = dfm_fail(DFM_E_FORMAT, "'%s' holds %d tensors, the model trains %d: a checkpoint of another setup", path,
                      dfm_st_count(st), k);
    dfm_st_close(st);
    return rc;
}

int dfm_trainer_save(dfm_trainer *t, const char *dir, dfm_dtype full_dtype)
{
    char path[4096], state[4096];
    int rc = dfm_path_join(state, sizeof state, dir, "state");
    if (rc) return rc;
    int rank = t->o.dist ? dfm_dist_rank(t->o.dist) : 0;
    if (rank) /* the other ranks: their optimizer shard only (into the directory rank 0 made) */
        return t->o.shard_optimizer ? dfm_adamw_save_state(t->opt, state) : 0;
    if (mkdir(state, 0755) && errno != EEXIST) return dfm_fail(DFM_E_IO, "cannot create '%s': %s", state, strerror(errno));
    int lora = t->o.lora_rank > 0 || t->o.lora_init_from;
    if (lora) {
        dfm_wan_lora_save_opts so = {.alpha = t->lora_folded ? 0.0f : t->o.lora_alpha, .dropout = t->o.lora_dropout};
        if ((rc = dfm_wan_lora_save(t->m, dir, &so))) return rc;
    } else {
        if ((rc = dfm_wan_transformer_save(t->m, dir, full_dtype, DFM_WAN_SAVE_MAX_SHARD, 0))) return rc;
    }
    /* the exact values: LoRA's B is published scaled by alpha/rank, a full model maybe in BF16 */
    if ((lora || full_dtype != DFM_F32) && ((rc = dfm_path_join(path, sizeof path, state, "params.safetensors")) ||
                                            (rc = save_params(t, path))))
        return rc;
    if ((rc = dfm_adamw_save_state(t->opt, state))) return rc;
    cJSON *j = cJSON_CreateObject();
    if (!j) return dfm_fail(DFM_E_NOMEM, "out of memory");
    cJSON_AddNumberToObject(j, "step", (double)t->step);
    cJSON_AddStringToObject(j, "format", "dfm-trainer-1");
    cJSON_AddBoolToObject(j, "exact_params_in_state", lora || full_dtype != DFM_F32);
    if (!(rc = dfm_path_join(path, sizeof path, state, "trainer.json"))) rc = dfm_ckpt_write_json(path, j);
    cJSON_Delete(j);
    return rc;
}

int dfm_trainer_load_state(dfm_trainer *t, const char *dir)
{
    char path[4096];
    cJSON *j = NULL;
    int rc;
    if ((rc = dfm_path_join(path, sizeof path, dir, "state/trainer.json")) || (rc = dfm_ckpt_read_json(path, &j))) return rc;
    const cJSON *step = cJSON_GetObjectItemCaseSensitive(j, "step");
    const cJSON *exact = cJSON_GetObjectItemCaseSensitive(j, "exact_params_in_state");
    if (!cJSON_IsNumber(step) || step->valuedouble < 0) {
        cJSON_Delete(j);
        return dfm_fail(DFM_E_FORMAT, "'%s': no step", path);
    }
    int64_t s = (int64_t)step->valuedouble;
    int in_state = cJSON_IsTrue(exact);
    cJSON_Delete(j);
    if (in_state) {
        if ((rc = dfm_path_join(path, sizeof path, dir, "state/params.safetensors")) || (rc = load_params(t, path, 1))) return rc;
    } else {
        if ((rc = dfm_path_join(path, sizeof path, dir, "diffusion_pytorch_model.safetensors"))) return rc;
        struct stat sb;
        if (stat(path, &sb) && (rc = dfm_path_join(path, sizeof path, dir, "diffusion_pytorch_model.safetensors.index.json")))
            return rc;
        if ((rc = load_params(t, path, 0))) return rc;
    }
    if ((rc = dfm_path_join(path, sizeof path, dir, "state")) || (rc = dfm_adamw_load_state(t->opt, path))) return rc;
    t->step = s;
    t->micro = 0;
    t->nonfinite = 0;
    return dfm_wan_transformer_zero_grads(t->m);
}
