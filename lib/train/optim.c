/* optim.c — AdamW, gradient norm, learning-rate schedule, optimizer state file (optim.h). */
#include "train/optim.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "io/safetensors.h"
#include "tensor/op.h"
#include "train/optim_internal.h"


static int bad_unit(const char *field, double x, int open_one)
{
    if (!(isfinite(x) && x >= 0.0 && (open_one ? x < 1.0 : 1)))
        return dfm_fail(DFM_E_ARG, "adamw: %s %g is not %s", field, x, open_one ? "in [0, 1)" : "finite and >= 0");
    return 0;
}

int dfm_adamw_new(dfm_adamw **out, const dfm_adamw_opts *opts)
{
    *out = NULL;
    dfm_adamw_opts d = {0.9, 0.999, 1e-8, 0.01};
    if (opts) d = *opts;
    int rc;
    if ((rc = bad_unit("beta1", d.beta1, 1)) || (rc = bad_unit("beta2", d.beta2, 1)) ||
        (rc = bad_unit("eps", d.eps, 0)) || (rc = bad_unit("weight_decay", d.weight_decay, 0)))
        return rc;
    dfm_adamw *o = calloc(1, sizeof *o);
    if (!o) return dfm_fail(DFM_E_NOMEM, "adamw: out of memory");
    o->opts = d;
    *out = o;
    return 0;
}

void dfm_adamw_free(dfm_adamw *o)
{
    if (!o) return;
    for (int i = 0; i < o->n; i++) {
        free(o->s[i].name);
        dfm_tensor_free(&o->s[i].m);
        dfm_tensor_free(&o->s[i].v);
    }
    free(o->s);
    dfm_adamw_shard_free(o->sh);
    dfm_adamw_repl_free(o->repl);
    free(o);
}

static int same_shape(const dfm_tensor *a, const dfm_tensor *b)
{
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

int dfm_adamw_add(dfm_adamw *o, const char *name, dfm_tensor *param, dfm_tensor *grad)
{
    if (!o || !name || !param || !grad) return dfm_fail(DFM_E_ARG, "adamw_add: NULL argument");
    if (!*name || strlen(name) > 1000) return dfm_fail(DFM_E_ARG, "adamw_add: bad parameter name '%.40s'", name);
    char ps[160], gs[160];
    if (param->dtype != DFM_F32 || grad->dtype != DFM_F32 || !same_shape(param, grad) || param->device != grad->device)
        return dfm_fail(DFM_E_ARG, "adamw_add '%s': param %s and grad %s must be F32 of one shape on one device", name,
                        dfm_tensor_str(param, ps, sizeof ps), dfm_tensor_str(grad, gs, sizeof gs));
    for (int i = 0; i < o->n; i++)
        if (!strcmp(o->s[i].name, name)) return dfm_fail(DFM_E_ARG, "adamw_add: parameter '%s' added twice", name);
    if (o->n == o->cap) {
        int cap = o->cap ? 2 * o->cap : 16;
        slot *s = realloc(o->s, (size_t)cap * sizeof *s);
        if (!s) return dfm_fail(DFM_E_NOMEM, "adamw_add: out of memory");
        o->s = s, o->cap = cap;
    }
    slot *s = &o->s[o->n];
    memset(s, 0, sizeof *s);
    if (o->sh) return dfm_fail(DFM_E_ARG, "adamw_add '%s': the optimizer is already sharded", name);
    if (!(s->name = strdup(name))) return dfm_fail(DFM_E_NOMEM, "adamw_add: out of memory");
    s->param = param, s->grad = grad;
    o->n++;
    return 0;
}

int dfm_adamw_state_ready(dfm_adamw *o)
{
    for (int i = 0; i < o->n; i++) {
        slot *s = &o->s[i];
        if (s->m.data) continue;
        int rc;
        if ((rc = dfm_tensor_zeros(&s->m, DFM_F32, s->param->device, s->param->ndim, s->param->shape)) < 0 ||
            (rc = dfm_tensor_zeros(&s->v, DFM_F32, s->param->device, s->param->ndim, s->param->shape)) < 0) {
            dfm_tensor_free(&s->m);
            return dfm_fail_ctx(rc, "adamw: the moments of '%s'", s->name);
        }
    }
    return 0;
}

int dfm_adamw_count(const dfm_adamw *o) { return o ? o->n : 0; }
int64_t dfm_adamw_steps(const dfm_adamw *o) { return o ? o->step : 0; }

/* ref: torch/optim/adam.py _single_tensor_adam: bias corrections and step size in Python
 * floats (double); each scalar becomes f32 where a tensor op takes it. beta**step is pow() with
 * a float exponent (torch's step is an f32 tensor read with .item()), bc2 ** 0.5 is pow(x, 0.5),
 * not sqrt. */
void dfm_adamw_coef_at(const dfm_adamw_opts *o, double lr, int64_t step, dfm_adamw_coef *c)
{
    double st = (double)(float)step;
    double bc1 = 1.0 - pow(o->beta1, st), bc2 = 1.0 - pow(o->beta2, st);
    double step_size = lr / bc1;
    c->decay = (float)(1.0 - lr * o->weight_decay);
    c->w1 = (float)(1.0 - o->beta1);
    c->w1m1 = c->w1 - 1.0f;
    c->small = fabsf(c->w1) < 0.5f;
    c->beta2 = (float)o->beta2;
    c->c2 = (float)(1.0 - o->beta2);
    c->bc2_sqrt = (float)pow(bc2, 0.5);
    c->eps = (float)o->eps;
    c->neg_step = (float)-step_size;
}

int dfm_adamw_step(dfm_adamw *o, double lr)
{
    if (!o) return dfm_fail(DFM_E_ARG, "adamw_step: NULL optimizer");
    if (!(isfinite(lr) && lr >= 0.0)) return dfm_fail(DFM_E_ARG, "adamw_step: learning rate %g is not finite and >= 0", lr);
    int rc = o->sh ? 0 : dfm_adamw_state_ready(o);
    if (rc) return rc;
    o->step++;
    dfm_adamw_coef c;
    dfm_adamw_coef_at(&o->opts, lr, o->step, &c);
    if (o->sh) return dfm_adamw_shard_step(o, &c);
    for (int i = 0; i < o->n; i++) {
        slot *s = &o->s[i];
        dfm_op_args a = {.src = {s->grad}, .dst = {s->param, &s->m, &s->v}, .p = &c};
        if ((rc = dfm_op_run(DFM_OP_ADAMW, &a)) < 0) return dfm_fail_ctx(rc, "adamw_step '%s'", s->name);
    }
    return 0;
}

double dfm_adamw_grad_norm(dfm_adamw *o, int *finite)
{
    if (finite) *finite = 1;
    if (!o) return 0.0;
    if (o->sh) return dfm_adamw_shard_grad_norm(o, finite);
    /* ref: torch/nn/utils/clip_grad.py _get_total_norm: per-tensor norms, then their norm */
    double total = 0.0;
    for (int i = 0; i < o->n; i++) {
        dfm_op_args a = {.src = {o->s[i].grad}};
        int rc = dfm_op_run(DFM_OP_SUMSQ, &a);
        if (rc < 0) {
            dfm_fail_ctx(rc, "grad_norm '%s'", o->s[i].name);
            if (finite) *finite = 0;
            return NAN;
        }
        double ss;
        memcpy(&ss, &a.r[0], sizeof ss);
        double norm = sqrt(ss);
        total += norm * norm;
    }
    total = sqrt(total);
    if (finite) *finite = isfinite(total) != 0;
    return total;
}

int dfm_adamw_scale_grads(dfm_adamw *o, float coef)
{
    if (!o) return dfm_fail(DFM_E_ARG, "adamw_scale_grads: NULL optimizer");
    if (o->sh) return dfm_adamw_shard_scale(o, coef);
    for (int i = 0; i < o->n; i++) {
        /* y = x * coef + 0 (affine): the product torch's mul_ gives (a -0 product becomes +0) */
        dfm_op_args a = {.src = {o->s[i].grad}, .dst = {o->s[i].grad}, .f = {coef, 0.0f}};
        int rc = dfm_op_run(DFM_OP_AFFINE, &a);
        if (rc < 0) return dfm_fail_ctx(rc, "scale_grads '%s'", o->s[i].name);
    }
    return 0;
}

/* ---- state file ------------------------------------------------------------------------------ */

static int entry_of(const char *name, const char *suffix, const dfm_tensor *t, const void *data, char **nm,
                    dfm_st_entry *e)
{
    size_t k = strlen(name) + strlen(suffix) + 1;
    if (!(*nm = malloc(k))) return dfm_fail(DFM_E_NOMEM, "adamw_save: out of memory");
    snprintf(*nm, k, "%s%s", name, suffix);
    memset(e, 0, sizeof *e);
    e->name = *nm, e->dtype = DFM_F32, e->ndim = t->ndim, e->data = data;
    for (int d = 0; d < t->ndim; d++) e->shape[d] = t->shape[d];
    return 0;
}

int dfm_adamw_save(const dfm_adamw *o, const char *path)
{
    if (!o || !path) return dfm_fail(DFM_E_ARG, "adamw_save: NULL argument");
    if (o->sh) return dfm_fail(DFM_E_ARG, "adamw_save: a sharded optimizer saves with dfm_adamw_save_state");
    int n = 2 * o->n, rc = dfm_adamw_state_ready((dfm_adamw *)o);
    if (rc) return rc;
    dfm_st_entry *e = calloc((size_t)(n ? n : 1), sizeof *e);
    char **names = calloc((size_t)(n ? n : 1), sizeof *names);
    dfm_tensor *host = calloc((size_t)(n ? n : 1), sizeof *host); /* copies of device moments */
    char meta[512];
    if (!e || !names || !host) {
        rc = dfm_fail(DFM_E_NOMEM, "adamw_save: out of memory");
        goto done;
    }
    for (int i = 0; i < o->n && !rc; i++) {
        const dfm_tensor *mv[2] = {&o->s[i].m, &o->s[i].v};
        for (int k = 0; k < 2 && !rc; k++) {
            const void *data = mv[k]->data;
            if (mv[k]->device != DFM_CPU) {
                if ((rc = dfm_tensor_copy(&host[2 * i + k], mv[k], DFM_CPU)) < 0) break;
                data = host[2 * i + k].data;
            }
            rc = entry_of(o->s[i].name, k ? ".exp_avg_sq" : ".exp_avg", mv[k], data, &names[2 * i + k], &e[2 * i + k]);
        }
    }
    if (rc) goto done;
    snprintf(meta, sizeof meta,
             "{\"format\":\"" STATE_FORMAT "\",\"step\":\"%lld\",\"beta1\":\"%.17g\",\"beta2\":\"%.17g\","
             "\"eps\":\"%.17g\",\"weight_decay\":\"%.17g\"}",
             (long long)o->step, o->opts.beta1, o->opts.beta2, o->opts.eps, o->opts.weight_decay);
    rc = dfm_st_write(path, e, n, meta);
done:
    for (int i = 0; i < n && names; i++) free(names[i]);
    for (int i = 0; i < n && host; i++) dfm_tensor_free(&host[i]);
    free(names), free(e), free(host);
    return rc;
}

/* "step" of the state file's metadata, or a negative DFM_E_FORMAT */
static int read_step(const dfm_st *st, const char *path, int64_t *step)
{
    cJSON *j = cJSON_Parse(dfm_st_metadata(st));
    const cJSON *f = j ? cJSON_GetObjectItemCaseSensitive(j, "format") : NULL;
    const cJSON *s = j ? cJSON_GetObjectItemCaseSensitive(j, "step") : NULL;
    int rc = 0;
    if (!cJSON_IsString(f) || strcmp(f->valuestring, STATE_FORMAT))
        rc = dfm_fail(DFM_E_FORMAT, "adamw_load '%s': metadata \"format\" is not \"" STATE_FORMAT "\"", path);
    else if (!cJSON_IsString(s))
        rc = dfm_fail(DFM_E_FORMAT, "adamw_load '%s': metadata has no \"step\"", path);
    else {
        char *end;
        errno = 0;
        long long v = strtoll(s->valuestring, &end, 10);
        if (errno || end == s->valuestring || *end || v < 0)
            rc = dfm_fail(DFM_E_FORMAT, "adamw_load '%s': metadata \"step\" '%s' is not a count", path, s->valuestring);
        else
            *step = v;
    }
    cJSON_Delete(j);
    return rc;
}

int dfm_adamw_load(dfm_adamw *o, const char *path)
{
    if (!o || !path) return dfm_fail(DFM_E_ARG, "adamw_load: NULL argument");
    if (o->sh) return dfm_fail(DFM_E_ARG, "adamw_load: a sharded optimizer loads with dfm_adamw_load_state");
    int rc = dfm_adamw_state_ready(o);
    if (rc) return rc;
    dfm_st *st;
    rc = dfm_st_open(&st, path);
    if (rc < 0) return rc;
    int64_t step = 0;
    char nm[1100];
    if ((rc = read_step(st, path, &step))) goto done;
    if (dfm_st_count(st) != 2 * o->n) {
        rc = dfm_fail(DFM_E_FORMAT, "adamw_load '%s': %d tensors, want %d (exp_avg and exp_avg_sq of %d parameters)",
                      path, dfm_st_count(st), 2 * o->n, o->n);
        goto done;
    }
    /* every check first: nothing changes unless the whole file fits */
    for (int i = 0; i < o->n; i++)
        for (int k = 0; k < 2; k++) {
            const dfm_tensor *t = k ? &o->s[i].v : &o->s[i].m;
            snprintf(nm, sizeof nm, "%s%s", o->s[i].name, k ? ".exp_avg_sq" : ".exp_avg");
            const dfm_st_tensor *ft = dfm_st_find(st, nm);
            if (!ft || ft->dtype != DFM_F32) {
                rc = dfm_fail(DFM_E_FORMAT, "adamw_load '%s': no F32 tensor '%s'", path, nm);
                goto done;
            }
            if ((rc = dfm_st_check(st, nm, DFM_F32, t->ndim, t->shape)) < 0) {
                rc = dfm_fail_ctx(DFM_E_FORMAT, "adamw_load '%s'", path);
                goto done;
            }
        }
    for (int i = 0; i < o->n; i++)
        for (int k = 0; k < 2; k++) {
            dfm_tensor *t = k ? &o->s[i].v : &o->s[i].m;
            snprintf(nm, sizeof nm, "%s%s", o->s[i].name, k ? ".exp_avg_sq" : ".exp_avg");
            const dfm_st_tensor *ft = dfm_st_find(st, nm);
            if (t->device == DFM_CPU)
                memcpy(t->data, ft->data, ft->nbytes);
            else {
                dfm_tensor view = dfm_tensor_view((void *)ft->data, DFM_F32, DFM_CPU, t->ndim, t->shape), dev;
                if ((rc = dfm_tensor_copy(&dev, &view, t->device)) < 0) goto done;
                dfm_tensor_free(t);
                *t = dev;
            }
        }
    o->step = step;
done:
    dfm_st_close(st);
    return rc;
}

/* ---- learning rate ---------------------------------------------------------------------------- */

int dfm_lr_kind_ok(const char *kind)
{
    return kind && (!strcmp(kind, "constant") || !strcmp(kind, "linear") || !strcmp(kind, "cosine"));
}

double dfm_lr_at(const char *kind, int64_t n, int64_t warmup, int64_t total, double lr, double min_lr)
{
    if (!dfm_lr_kind_ok(kind)) return NAN;
    if (n < 0) n = 0;
    if (warmup > 0 && n < warmup) return lr * (double)(n + 1) / (double)warmup;
    if (warmup < 0) warmup = 0;
    int64_t span = total - warmup > 1 ? total - warmup : 1;
    double r = (double)(n - warmup) / (double)span;
    r = r < 0.0 ? 0.0 : r > 1.0 ? 1.0 : r;
    if (!strcmp(kind, "constant")) return lr;
    if (!strcmp(kind, "linear")) return min_lr + (lr - min_lr) * (1.0 - r);
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + cos(M_PI * r));
}
