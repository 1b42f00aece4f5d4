/* lora.c — LoRA adapter files for the Wan transformer (lora.h).
 *
 * Loading: the file is read without the model (lora_file.h: names, family, pairs, ranks,
 * alphas); then each module must be one of the model's linears with shapes that fit; then the
 * adapters are added with
 * dfm_wan_transformer_lora_add (one call per distinct rank, on exactly those modules) and A and
 * B copied in, the scale folded into B. Saving: the inverse names (names.h
 * dfm_wan_transformer_original_name) under "diffusion_model.", B folded, PEFT's config beside.
 * Not here: the layer arithmetic (nn/linear.c), the transformer (transformer.c).
 */
#include "models/wan/lora.h"

#include "base/buf.h"
#include "base/error.h"
#include "io/safetensors.h"
#include "models/wan/lora_file.h"
#include "models/wan/names.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

/* ---- the model's linears --------------------------------------------------------------------- */

typedef struct {
    char *name;          /* diffusers module name */
    int64_t out, in;
} linear_t;

static void linears_free(linear_t *l, int n)
{
    for (int i = 0; l && i < n; i++) free(l[i].name);
    free(l);
}

/* Every linear of m that can carry an adapter: the 2-D ".weight" parameters (the patch
 * embedding, a Conv3d stored as a GEMM weight, aside). *has_lora: m has adapters already. */
static int model_linears(dfm_wan_transformer *m, linear_t **out, int *n, int *has_lora)
{
    int np = dfm_wan_transformer_nparams(m), k = 0;
    linear_t *l = dfm_calloc((size_t)(np ? np : 1), sizeof *l);
    if (!l) return DFM_E_NOMEM;
    *has_lora = 0;
    for (int i = 0; i < np; i++) {
        dfm_tensor *p;
        const char *name = dfm_wan_transformer_param(m, i, &p, NULL);
        if (strstr(name, ".lora_")) {
            *has_lora = 1;
            continue;
        }
        if (!ends_with(name, ".weight") || p->ndim != 2 || !strcmp(name, "patch_embedding.weight")) continue;
        linear_t *e = &l[k++];
        e->name = dfm_strndup(name, strlen(name) - strlen(".weight"));
        e->out = p->shape[0], e->in = p->shape[1];
        if (!e->name) {
            linears_free(l, k);
            return DFM_E_NOMEM;
        }
    }
    *out = l, *n = k;
    return 0;
}

static int find_linear(const linear_t *l, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(l[i].name, name)) return i;
    return -1;
}

/* ---- loading --------------------------------------------------------------------------------- */

/* Copy host floats into the parameter tensor p (F32, on the model's device). */
static int put(dfm_tensor *p, float *host)
{
    if (p->device == DFM_CPU) {
        memcpy(p->data, host, dfm_tensor_nbytes(p));
        return 0;
    }
    dfm_tensor h = dfm_tensor_view(host, DFM_F32, DFM_CPU, p->ndim, p->shape), d;
    int rc = dfm_tensor_copy(&d, &h, p->device);
    if (rc) return rc;
    dfm_tensor_free(p);
    *p = d;
    return 0;
}

static dfm_tensor *param_named(dfm_wan_transformer *m, const char *name)
{
    for (int i = 0; i < dfm_wan_transformer_nparams(m); i++) {
        dfm_tensor *p;
        if (!strcmp(dfm_wan_transformer_param(m, i, &p, NULL), name)) return p;
    }
    return NULL;
}

/* Add the adapters: one lora_add per distinct rank (in the order the ranks first occur) on exactly
 * the modules of that rank, then A and B copied in, B times fold[i]. */
static int apply(dfm_wan_transformer *m, const dfm_wan_lora_file *f, const float *fold, float dropout)
{
    int rc = 0, nm = f->n;
    const dfm_wan_lora_module *mods = f->mods;
    const char **targets = dfm_calloc((size_t)nm + 1, sizeof *targets);
    int *done = dfm_calloc((size_t)nm, sizeof *done);
    if (!targets || !done) rc = DFM_E_NOMEM;
    for (int i = 0; i < nm && !rc; i++) {
        if (done[i]) continue;
        int k = 0, count = 0;
        for (int j = i; j < nm; j++)
            if (!done[j] && mods[j].rank == mods[i].rank) targets[k++] = mods[j].module, done[j] = 1;
        targets[k] = NULL;
        rc = dfm_wan_transformer_lora_add(m, targets, mods[i].rank, (float)mods[i].rank, dropout, 0, &count);
        if (!rc && count != k)
            rc = dfm_fail(DFM_E_FORMAT, "LoRA: %d adapters added for %d modules of rank %d", count, k, mods[i].rank);
    }
    for (int i = 0; i < nm && !rc; i++) {
        const dfm_wan_lora_module *md = &mods[i];
        for (int part = 0; part < 2 && !rc; part++) {
            const dfm_st_tensor *t = part ? md->b : md->a;
            char nm2[320];
            snprintf(nm2, sizeof nm2, "%s.%s.weight", md->module, part ? "lora_B" : "lora_A");
            dfm_tensor *p = param_named(m, nm2);
            if (!p) {
                rc = dfm_fail(DFM_E_FORMAT, "LoRA: the model has no parameter '%s' after adding adapters", nm2);
                break;
            }
            int64_t numel = dfm_tensor_numel(p);
            float *h = dfm_malloc((size_t)numel * sizeof *h);
            if (!h) {
                rc = DFM_E_NOMEM;
                break;
            }
            rc = dfm_st_read(f->st, t->name, DFM_F32, p->ndim, p->shape, h);
            if (!rc && part && fold[i] != 1.0f)
                for (int64_t e = 0; e < numel; e++) h[e] *= fold[i];
            if (!rc) rc = put(p, h);
            free(h);
        }
    }
    free(targets), free(done);
    return rc;
}

int dfm_wan_lora_load(dfm_wan_transformer *m, const char *path, float multiplier, const dfm_wan_lora_load_opts *o,
                      dfm_wan_lora_info *info)
{
    dfm_wan_lora_load_opts dflt = {0};
    if (!o) o = &dflt;
    if (!isfinite(multiplier)) return dfm_fail(DFM_E_ARG, "LoRA '%s': multiplier %g is not finite", path, multiplier);
    if (!(o->alpha >= 0.0f) || !isfinite(o->alpha)) return dfm_fail(DFM_E_ARG, "LoRA '%s': alpha %g", path, o->alpha);
    if (!(o->dropout >= 0.0f && o->dropout < 1.0f))
        return dfm_fail(DFM_E_ARG, "LoRA '%s': dropout %g is not in [0, 1)", path, o->dropout);
    linear_t *lin = NULL;
    dfm_wan_lora_file *f = NULL;
    float *fold = NULL;
    int nlin = 0, has_lora = 0;
    int rc = model_linears(m, &lin, &nlin, &has_lora);
    if (!rc && has_lora)
        rc = dfm_fail(DFM_E_ARG, "LoRA '%s': the model already has adapters (one adapter per model)", path);
    if (!rc) rc = dfm_wan_lora_file_open(&f, path, o->alpha);
    if (rc) goto out;
    if (!(fold = dfm_calloc((size_t)f->n, sizeof *fold))) {
        rc = DFM_E_NOMEM;
        goto out;
    }
    /* every module is one of the model's linears, with shapes that fit */
    for (int i = 0; i < f->n && !rc; i++) {
        const dfm_wan_lora_module *md = &f->mods[i];
        int li = find_linear(lin, nlin, md->module);
        if (li < 0) {
            int differs = strcmp(md->module, md->fmod) != 0;
            rc = dfm_fail(DFM_E_FORMAT,
                          "%s: tensor '%s': module '%s'%s%s%s is not a linear of the %d-block Wan transformer (names read "
                          "as %s)",
                          f->file, md->a->name, md->fmod, differs ? " (diffusers '" : "", differs ? md->module : "",
                          differs ? "')" : "", dfm_wan_transformer_get_config(m)->num_layers, f->naming);
            break;
        }
        const linear_t *l = &lin[li];
        if (md->a->shape[1] != l->in || md->b->shape[0] != l->out) {
            const dfm_st_tensor *t = md->a->shape[1] != l->in ? md->a : md->b;
            rc = dfm_fail(DFM_E_FORMAT, "%s: tensor '%s' has shape [%lld, %lld], module '%s' (in %lld, out %lld) needs %s",
                          f->file, t->name, (long long)t->shape[0], (long long)t->shape[1], l->name, (long long)l->in,
                          (long long)l->out, t == md->a ? "A [rank, in]" : "B [out, rank]");
            break;
        }
        fold[i] = (float)((double)multiplier * md->alpha_v / (md->rslora ? sqrt((double)md->rank) : (double)md->rank));
    }
    if (rc) goto out;
    if ((rc = apply(m, f, fold, o->dropout))) {
        dfm_fail_ctx(rc, "LoRA '%s' (%s)", f->file, f->naming);
        goto out;
    }
    if (info) {
        memset(info, 0, sizeof *info);
        snprintf(info->naming, sizeof info->naming, "%s", f->naming);
        snprintf(info->alpha_from, sizeof info->alpha_from, "%s", f->alpha_from);
        info->modules = f->n;
        info->rank_min = info->rank_max = f->n ? f->mods[0].rank : 0;
        for (int i = 0; i < f->n; i++) {
            if (f->mods[i].rank < info->rank_min) info->rank_min = f->mods[i].rank;
            if (f->mods[i].rank > info->rank_max) info->rank_max = f->mods[i].rank;
        }
        info->alpha = f->n ? (float)f->mods[0].alpha_v : 0;
    }
out:
    free(fold);
    dfm_wan_lora_file_close(f);
    linears_free(lin, nlin);
    return rc;
}

/* ---- several adapters at once ---------------------------------------------------------------- */

/* A module's adapters from several files become one adapter of the summed rank: A stacked by rows,
 * B (each times its file's fold) side by side, so B A = sum_k fold_k B_k A_k exactly — no merge into
 * the (maybe bf16) base weights, which would round the deltas away. */
typedef struct {
    const char *module; /* diffusers name (owned by a file) */
    int rank;           /* summed */
    int nparts;
    int part_file[DFM_WAN_LORA_MAX_FILES], part_mod[DFM_WAN_LORA_MAX_FILES];
} union_mod;

static int fill_union(dfm_wan_transformer *m, dfm_wan_lora_file *const *f, float *const *fold, const union_mod *u)
{
    char name[320];
    dfm_tensor *pa, *pb;
    snprintf(name, sizeof name, "%s.lora_A.weight", u->module);
    pa = param_named(m, name);
    snprintf(name, sizeof name, "%s.lora_B.weight", u->module);
    pb = param_named(m, name);
    if (!pa || !pb) return dfm_fail(DFM_E_FORMAT, "LoRA: the model has no adapter on '%s' after adding it", u->module);
    int64_t in = pa->shape[1], out = pb->shape[0], R = u->rank;
    float *ha = dfm_calloc((size_t)(R * in), sizeof *ha), *hb = dfm_calloc((size_t)(out * R), sizeof *hb);
    int rc = !ha || !hb ? DFM_E_NOMEM : 0;
    int64_t off = 0;
    for (int p = 0; p < u->nparts && !rc; p++) {
        const dfm_wan_lora_module *md = &f[u->part_file[p]]->mods[u->part_mod[p]];
        int64_t r = md->rank, sa[2] = {r, in}, sb[2] = {out, r};
        float *b = dfm_malloc((size_t)(out * r) * sizeof *b);
        if (!b) {
            rc = DFM_E_NOMEM;
            break;
        }
        rc = dfm_st_read(f[u->part_file[p]]->st, md->a->name, DFM_F32, 2, sa, ha + off * in);
        if (!rc) rc = dfm_st_read(f[u->part_file[p]]->st, md->b->name, DFM_F32, 2, sb, b);
        float s = fold[u->part_file[p]][u->part_mod[p]];
        for (int64_t o = 0; !rc && o < out; o++)
            for (int64_t j = 0; j < r; j++) hb[o * R + off + j] = s == 1.0f ? b[o * r + j] : b[o * r + j] * s;
        free(b);
        off += r;
    }
    if (!rc) rc = put(pa, ha);
    if (!rc) rc = put(pb, hb);
    free(ha), free(hb);
    return rc;
}

int dfm_wan_lora_load_many(dfm_wan_transformer *m, const char *const *paths, const float *multipliers, int n,
                           const dfm_wan_lora_load_opts *o, dfm_wan_lora_info *info)
{
    if (n == 1) return dfm_wan_lora_load(m, paths[0], multipliers[0], o, info);
    if (n < 1 || n > DFM_WAN_LORA_MAX_FILES) return dfm_fail(DFM_E_ARG, "LoRA: %d adapters (1 .. %d)", n, DFM_WAN_LORA_MAX_FILES);
    dfm_wan_lora_load_opts dflt = {0};
    if (!o) o = &dflt;
    dfm_wan_lora_file *f[DFM_WAN_LORA_MAX_FILES] = {0};
    float *fold[DFM_WAN_LORA_MAX_FILES] = {0};
    linear_t *lin = NULL;
    union_mod *u = NULL;
    int nlin = 0, has_lora = 0, nu = 0, total = 0;
    int rc = model_linears(m, &lin, &nlin, &has_lora);
    if (!rc && has_lora) rc = dfm_fail(DFM_E_ARG, "LoRA: the model already has adapters");
    for (int k = 0; k < n && !rc; k++) {
        if (!isfinite(multipliers[k])) {
            rc = dfm_fail(DFM_E_ARG, "LoRA '%s': multiplier %g is not finite", paths[k], multipliers[k]);
            break;
        }
        if ((rc = dfm_wan_lora_file_open(&f[k], paths[k], o->alpha))) break;
        if (!(fold[k] = dfm_calloc((size_t)f[k]->n + 1, sizeof *fold[k]))) rc = DFM_E_NOMEM;
        for (int i = 0; i < f[k]->n && !rc; i++) {
            const dfm_wan_lora_module *md = &f[k]->mods[i];
            int li = find_linear(lin, nlin, md->module);
            if (li < 0 || md->a->shape[1] != lin[li].in || md->b->shape[0] != lin[li].out)
                rc = dfm_fail(DFM_E_FORMAT, "%s: tensor '%s': module '%s' is not a linear of this Wan transformer, or its shape "
                              "does not fit (names read as %s)", f[k]->file, md->a->name, md->module, f[k]->naming);
            fold[k][i] = (float)((double)multipliers[k] * md->alpha_v / (md->rslora ? sqrt((double)md->rank) : (double)md->rank));
        }
        if (!rc) total += f[k]->n;
    }
    if (!rc && !(u = dfm_calloc((size_t)total + 1, sizeof *u))) rc = DFM_E_NOMEM;
    for (int k = 0; k < n && !rc; k++)
        for (int i = 0; i < f[k]->n; i++) {
            const dfm_wan_lora_module *md = &f[k]->mods[i];
            int j = 0;
            while (j < nu && strcmp(u[j].module, md->module)) j++;
            if (j == nu) u[nu++].module = md->module;
            u[j].part_file[u[j].nparts] = k, u[j].part_mod[u[j].nparts++] = i;
            u[j].rank += md->rank;
        }
    /* one lora_add per distinct summed rank, alpha = rank (scale 1: the folds are in B) */
    const char **targets = rc ? NULL : dfm_calloc((size_t)nu + 1, sizeof *targets);
    int *done = rc ? NULL : dfm_calloc((size_t)nu + 1, sizeof *done);
    if (!rc && (!targets || !done)) rc = DFM_E_NOMEM;
    for (int i = 0; i < nu && !rc; i++) {
        if (done[i]) continue;
        int k = 0, count = 0;
        for (int j = i; j < nu; j++)
            if (!done[j] && u[j].rank == u[i].rank) targets[k++] = u[j].module, done[j] = 1;
        targets[k] = NULL;
        rc = dfm_wan_transformer_lora_add(m, targets, u[i].rank, (float)u[i].rank, o->dropout, 0, &count);
        if (!rc && count != k) rc = dfm_fail(DFM_E_FORMAT, "LoRA: %d adapters added for %d modules", count, k);
    }
    for (int i = 0; i < nu && !rc; i++) rc = fill_union(m, f, fold, &u[i]);
    free(targets), free(done);
    for (int k = 0; info && k < n && !rc; k++) {
        dfm_wan_lora_info *x = &info[k];
        memset(x, 0, sizeof *x);
        snprintf(x->naming, sizeof x->naming, "%s", f[k]->naming);
        snprintf(x->alpha_from, sizeof x->alpha_from, "%s", f[k]->alpha_from);
        x->modules = f[k]->n;
        x->rank_min = x->rank_max = f[k]->n ? f[k]->mods[0].rank : 0;
        for (int i = 0; i < f[k]->n; i++) {
            if (f[k]->mods[i].rank < x->rank_min) x->rank_min = f[k]->mods[i].rank;
            if (f[k]->mods[i].rank > x->rank_max) x->rank_max = f[k]->mods[i].rank;
        }
        x->alpha = f[k]->n ? (float)f[k]->mods[0].alpha_v : 0;
    }
    free(u);
    for (int k = 0; k < n; k++) {
        free(fold[k]);
        dfm_wan_lora_file_close(f[k]);
    }
    linears_free(lin, nlin);
    return rc;
}

/* ---- saving ---------------------------------------------------------------------------------- */

typedef struct {
    char *orig;            /* original module name */
    dfm_tensor a, b;       /* host F32 copies (B folded) */
    int rank;
} save_mod;

static int cmp_orig(const void *x, const void *y) { return strcmp(((const save_mod *)x)->orig, ((const save_mod *)y)->orig); }

int dfm_wan_lora_save(dfm_wan_transformer *m, const char *dir, const dfm_wan_lora_save_opts *o)
{
    dfm_wan_lora_save_opts dflt = {0};
    if (!o) o = &dflt;
    if (!(o->alpha >= 0.0f) || !isfinite(o->alpha)) return dfm_fail(DFM_E_ARG, "LoRA save: alpha %g", o->alpha);
    if (!(o->dropout >= 0.0f && o->dropout < 1.0f)) return dfm_fail(DFM_E_ARG, "LoRA save: dropout %g is not in [0, 1)", o->dropout);
    int np = dfm_wan_transformer_nparams(m), n = 0, rc = 0;
    save_mod *s = dfm_calloc((size_t)(np ? np : 1), sizeof *s);
    dfm_st_entry *e = NULL;
    char *path = NULL;
    const char **names = NULL;
    int *ranks = NULL;
    dfm_buf cfg = {0};
    if (!s) return DFM_E_NOMEM;
    for (int i = 0; i < np && !rc; i++) {
        dfm_tensor *a;
        const char *name = dfm_wan_transformer_param(m, i, &a, NULL);
        if (!ends_with(name, ".lora_A.weight")) continue;
        size_t ml = strlen(name) - strlen(".lora_A.weight");
        char module[300], bn[320];
        snprintf(module, sizeof module, "%.*s", (int)ml, name);
        if (!strcmp(module, "patch_embedding")) {
            rc = dfm_fail(DFM_E_UNSUPPORTED, "LoRA save: the adapter on patch_embedding has no name in the diffusion_model.* "
                                             "format (diffusers' converter does not map it)");
            break;
        }
        snprintf(bn, sizeof bn, "%s.lora_B.weight", module);
        dfm_tensor *b = param_named(m, bn);
        if (!b) {
            rc = dfm_fail(DFM_E_ARG, "LoRA save: '%s' has no '%s'", name, bn);
            break;
        }
        save_mod *sm = &s[n++];
        sm->rank = (int)a->shape[0];
        if ((rc = dfm_wan_transformer_original_name(module, &sm->orig)) || (rc = dfm_tensor_copy(&sm->a, a, DFM_CPU)) ||
            (rc = dfm_tensor_copy(&sm->b, b, DFM_CPU)))
            break;
        if (o->alpha > 0) {
            float scale = o->alpha / (float)sm->rank, *d = sm->b.data; /* as dfm_linear_lora_add computes it */
            for (int64_t k = 0; k < dfm_tensor_numel(&sm->b); k++) d[k] *= scale;
        }
    }
    if (!rc && !n) rc = dfm_fail(DFM_E_ARG, "LoRA save: the model has no adapters");
    if (rc) goto out;
    qsort(s, (size_t)n, sizeof *s, cmp_orig);

    if (mkdir(dir, 0755) && errno != EEXIST) {
        rc = dfm_fail(DFM_E_IO, "LoRA save: cannot create '%s': %s", dir, strerror(errno));
        goto out;
    }
    e = dfm_calloc((size_t)n * 2, sizeof *e);
    size_t pl = strlen(dir) + 64;
    path = dfm_malloc(pl);
    if (!e || !path) {
        rc = DFM_E_NOMEM;
        goto out;
    }
    for (int i = 0; i < n && !rc; i++) {
        for (int part = 0; part < 2; part++) {
            dfm_st_entry *en = &e[2 * i + part];
            const dfm_tensor *t = part ? &s[i].b : &s[i].a;
            size_t len = strlen(s[i].orig) + 48;
            char *nm = dfm_malloc(len);
            if (!nm) {
                rc = DFM_E_NOMEM;
                break;
            }
            snprintf(nm, len, "diffusion_model.%s.%s.weight", s[i].orig, part ? "lora_B" : "lora_A");
            en->name = nm, en->dtype = DFM_F32, en->ndim = 2, en->data = t->data;
            en->shape[0] = t->shape[0], en->shape[1] = t->shape[1];
        }
    }
    if (rc) goto out;
    snprintf(path, pl, "%s/adapter_model.safetensors", dir);
    if ((rc = dfm_st_write(path, e, 2 * n, "{\"format\":\"pt\"}"))) goto out;
    names = dfm_calloc((size_t)n, sizeof *names);
    ranks = dfm_calloc((size_t)n, sizeof *ranks);
    if (!names || !ranks) {
        rc = DFM_E_NOMEM;
        goto out;
    }
    for (int i = 0; i < n; i++) names[i] = s[i].orig, ranks[i] = s[i].rank;
    if ((rc = dfm_wan_lora_config_json(&cfg, names, ranks, n, o->dropout))) goto out;
    snprintf(path, pl, "%s/adapter_config.json", dir);
    rc = dfm_write_file_atomic(path, cfg.data, cfg.len);
out:
    for (int i = 0; e && i < 2 * n; i++) free((char *)e[i].name);
    for (int i = 0; i < n; i++) free(s[i].orig), dfm_tensor_free(&s[i].a), dfm_tensor_free(&s[i].b);
    free(s), free(e), free(path), free(names), free(ranks);
    dfm_buf_free(&cfg);
    return rc;
}
