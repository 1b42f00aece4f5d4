/* lora.c — LoRA adapter files for the Wan transformer (lora.h).
 *
 * Loading: every tensor name is split into a module and a part (A, B, alpha); the module is read
 * in the file's naming family (decided once for the file) and converted to the diffusers name of
 * one of the model's linears; everything is checked, then the adapters are added with
 * dfm_wan_transformer_lora_add (one call per distinct rank, on exactly those modules) and A and
 * B copied in, the scale folded into B. Saving: the inverse names (names.h
 * dfm_wan_transformer_original_name) under "diffusion_model.", B folded, PEFT's config beside.
 * Not here: the layer arithmetic (nn/linear.c), the transformer (transformer.c).
 */
#include "models/wan/lora.h"

#include "base/buf.h"
#include "base/error.h"
#include "io/safetensors.h"
#include "models/wan/names.h"

#include <cjson/cJSON.h>
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
    char *orig;          /* original Wan module name */
    char *flat;          /* orig with '.' -> '_' (musubi / kohya) */
    char *flat_d;        /* name with '.' -> '_' */
    int64_t out, in;
} linear_t;

static void linears_free(linear_t *l, int n)
{
    for (int i = 0; l && i < n; i++) free(l[i].name), free(l[i].orig), free(l[i].flat), free(l[i].flat_d);
    free(l);
}

static char *flatten(const char *s)
{
    char *f = dfm_strdup(s);
    for (char *p = f; p && *p; p++)
        if (*p == '.') *p = '_';
    return f;
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
        if (!e->name || dfm_wan_transformer_original_name(e->name, &e->orig) || !(e->flat = flatten(e->orig)) ||
            !(e->flat_d = flatten(e->name))) {
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

/* ---- alpha from a PEFT config (adapter_config.json, or diffusers' lora_adapter_metadata) ----- */

typedef struct {
    int have;
    double alpha;
    int rslora;
    const cJSON *pattern; /* alpha_pattern (an object), or NULL */
    cJSON *root;          /* owned */
    char src[64];
} peft_cfg;

static const cJSON *cfg_item(const cJSON *root, const char *prefix, const char *key)
{
    char k[128];
    snprintf(k, sizeof k, "%s%s", prefix, key);
    return cJSON_GetObjectItemCaseSensitive(root, k);
}

/* A pattern key dfm matches literally: a module name (PEFT reads it as a regular expression;
 * for names made of these characters the two agree on every module the transformer has). */
static int plain_key(const char *k)
{
    if (!*k) return 0;
    for (const char *p = k; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '.'))
            return 0;
    return 1;
}

/* Read the fields that decide the scale from root (keys prefixed with `prefix`); where: for
 * messages. ref: peft tuners/lora/config.py LoraConfig (lora_alpha defaults to 8) */
static int cfg_parse(peft_cfg *c, const char *prefix, const char *where)
{
    const cJSON *pt = cfg_item(c->root, prefix, "peft_type");
    if (pt && cJSON_IsString(pt) && strcmp(pt->valuestring, "LORA"))
        return dfm_fail(DFM_E_UNSUPPORTED, "%s: peft_type '%s' (only LoRA adapters are supported)", where, pt->valuestring);
    const cJSON *dora = cfg_item(c->root, prefix, "use_dora");
    if (dora && cJSON_IsTrue(dora)) return dfm_fail(DFM_E_UNSUPPORTED, "%s: use_dora is set (DoRA adapters are not supported)", where);
    const cJSON *a = cfg_item(c->root, prefix, "lora_alpha");
    c->alpha = 8;
    if (a && !cJSON_IsNull(a)) {
        if (!cJSON_IsNumber(a)) return dfm_fail(DFM_E_FORMAT, "%s: %slora_alpha is not a number", where, prefix);
        c->alpha = a->valuedouble;
    }
    const cJSON *rs = cfg_item(c->root, prefix, "use_rslora");
    c->rslora = rs && cJSON_IsTrue(rs);
    const cJSON *ap = cfg_item(c->root, prefix, "alpha_pattern");
    if (ap && !cJSON_IsNull(ap)) {
        if (!cJSON_IsObject(ap)) return dfm_fail(DFM_E_FORMAT, "%s: %salpha_pattern is not an object", where, prefix);
        for (const cJSON *e = ap->child; e; e = e->next) {
            if (!plain_key(e->string))
                return dfm_fail(DFM_E_UNSUPPORTED,
                                "%s: alpha_pattern key '%s' is a regular expression (dfm honours plain module names only)",
                                where, e->string);
            if (!cJSON_IsNumber(e)) return dfm_fail(DFM_E_FORMAT, "%s: alpha_pattern '%s' is not a number", where, e->string);
        }
        c->pattern = ap;
    }
    c->have = 1;
    return 0;
}

/* The alpha of file module `fmod` (PEFT's module name, in the file's own naming): the first
 * alpha_pattern key equal to it or to a dot-separated tail of it, else lora_alpha.
 * ref: peft utils/other.py get_pattern_key */
static double cfg_alpha(const peft_cfg *c, const char *fmod)
{
    size_t n = strlen(fmod);
    for (const cJSON *e = c->pattern ? c->pattern->child : NULL; e; e = e->next) {
        size_t k = strlen(e->string);
        if (!strcmp(fmod, e->string) || (n > k && fmod[n - k - 1] == '.' && !strcmp(fmod + n - k, e->string)))
            return e->valuedouble;
    }
    return c->alpha;
}

/* diffusers' header metadata: {"lora_adapter_metadata": "<JSON with transformer.* keys>"}. A
 * metadata without transformer.* keys says nothing about this model (diffusers itself then
 * builds a default config and breaks: training.md 1); it is ignored. */
static int cfg_from_metadata(peft_cfg *c, const dfm_st *st, const char *file)
{
    cJSON *md = cJSON_Parse(dfm_st_metadata(st));
    if (!md) return dfm_fail(DFM_E_FORMAT, "%s: the header metadata is not JSON", file);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(md, "lora_adapter_metadata");
    int rc = 0;
    if (s && cJSON_IsString(s)) {
        c->root = cJSON_Parse(s->valuestring);
        if (!c->root || !cJSON_IsObject(c->root)) {
            rc = dfm_fail(DFM_E_FORMAT, "%s: lora_adapter_metadata is not a JSON object", file);
        } else {
            int any = 0;
            for (const cJSON *e = c->root->child; e && !any; e = e->next) any = !strncmp(e->string, "transformer.", 12);
            snprintf(c->src, sizeof c->src, "lora_adapter_metadata");
            if (any) rc = cfg_parse(c, "transformer.", file);
        }
    }
    cJSON_Delete(md);
    return rc;
}

static int cfg_from_file(peft_cfg *c, const char *path)
{
    dfm_buf b = {0};
    int rc = dfm_read_file(path, (size_t)16 << 20, &b);
    if (rc) return rc;
    c->root = cJSON_ParseWithLength((const char *)b.data, b.len);
    dfm_buf_free(&b);
    if (!c->root || !cJSON_IsObject(c->root)) return dfm_fail(DFM_E_FORMAT, "%s: not a JSON object", path);
    snprintf(c->src, sizeof c->src, "adapter_config.json");
    return cfg_parse(c, "", path);
}

/* ---- loading --------------------------------------------------------------------------------- */

enum { PART_A, PART_B, PART_ALPHA };

static const struct {
    const char *suffix;
    int part;
    const char *style;
} SUFFIXES[] = {
    {".lora_A.weight", PART_A, "lora_A/lora_B"},        {".lora_B.weight", PART_B, "lora_A/lora_B"},
    {".lora_A.default.weight", PART_A, "lora_A/lora_B"}, {".lora_B.default.weight", PART_B, "lora_A/lora_B"},
    {".lora_down.weight", PART_A, "lora_down/lora_up"}, {".lora_up.weight", PART_B, "lora_down/lora_up"},
    {".alpha", PART_ALPHA, NULL},
};

/* Prefixes in front of diffusers or original names, longest first. */
static const char *const PREFIXES[] = {"base_model.model.transformer.", "base_model.model.", "model.diffusion_model.",
                                       "diffusion_model.", "transformer.", NULL};

/* Substrings only original Wan module names contain. */
static const char *const ORIGINAL_MARKERS[] = {"self_attn.", "cross_attn.", "ffn.0", "ffn.2", "time_embedding.",
                                               "text_embedding.", "time_projection.", "head.head", "img_emb.", NULL};

enum { FAM_DIFFUSERS, FAM_ORIGINAL, FAM_KOHYA };

typedef struct {
    const dfm_st_tensor *t;
    int part;
    char *fmod;          /* the module as PEFT names it in the file's family (prefix stripped) */
    const char *prefix;  /* the prefix stripped, or NULL */
} key_t_;

typedef struct {
    int lin;                         /* index into the linears */
    const char *fmod;                /* the file's module name (a key_t_'s) */
    const dfm_st_tensor *a, *b, *alpha;
    int rank;
    double alpha_v;
    float fold;                      /* multiplier * alpha / rank */
} mod_t;

/* Split tensor name `name` into its module (after any prefix) and part. Errors name the tensor. */
static int split_key(const char *file, const char *name, key_t_ *k, const char **style)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof SUFFIXES / sizeof SUFFIXES[0]; i++) {
        size_t s = strlen(SUFFIXES[i].suffix);
        if (n > s && !strcmp(name + n - s, SUFFIXES[i].suffix)) {
            k->part = SUFFIXES[i].part;
            if (SUFFIXES[i].style && !*style) *style = SUFFIXES[i].style;
            const char *m = name;
            k->prefix = NULL;
            if (strncmp(name, "lora_unet_", 10)) {
                for (const char *const *p = PREFIXES; *p; p++)
                    if (!strncmp(name, *p, strlen(*p)) && n - s > strlen(*p)) {
                        k->prefix = *p, m += strlen(*p);
                        break;
                    }
            }
            k->fmod = dfm_strndup(m, (size_t)(name + n - s - m));
            return k->fmod ? 0 : DFM_E_NOMEM;
        }
    }
    const char *why = "not part of a LoRA adapter (expected <module>.lora_A.weight and .lora_B.weight, "
                      ".lora_down.weight and .lora_up.weight, or .alpha)";
    if (ends_with(name, ".lora_B.bias") || ends_with(name, ".diff_b"))
        why = "a LoRA bias (PEFT lora_bias, diff_b) is not supported";
    else if (ends_with(name, ".diff"))
        why = "a full-weight difference (.diff), not a LoRA: not supported";
    else if (strstr(name, "lora_magnitude_vector"))
        why = "a DoRA magnitude vector: DoRA is not supported";
    else if (strstr(name, "hada_") || strstr(name, "lokr_"))
        why = "a LoHa/LoKr tensor: only LoRA is supported";
    return dfm_fail(DFM_E_UNSUPPORTED, "%s: tensor '%s': %s", file, name, why);
}

static int has_original_marker(const char *s)
{
    for (const char *const *m = ORIGINAL_MARKERS; *m; m++)
        if (strstr(s, *m)) return 1;
    return 0;
}

/* path -> the weights file and, for adapter_model.safetensors, its adapter_config.json. */
static int resolve(const char *path, char **file, char **config)
{
    struct stat sb;
    *file = *config = NULL;
    if (stat(path, &sb)) return dfm_fail(DFM_E_IO, "LoRA '%s': %s", path, strerror(errno));
    size_t n = strlen(path) + 64;
    char *f = dfm_malloc(n), *c = dfm_malloc(n);
    if (!f || !c) {
        free(f), free(c);
        return DFM_E_NOMEM;
    }
    if (S_ISDIR(sb.st_mode)) {
        snprintf(f, n, "%s/adapter_model.safetensors", path);
        if (stat(f, &sb)) {
            snprintf(f, n, "%s/pytorch_lora_weights.safetensors", path);
            if (stat(f, &sb)) {
                free(f), free(c);
                return dfm_fail(DFM_E_IO, "LoRA directory '%s' holds neither adapter_model.safetensors nor "
                                          "pytorch_lora_weights.safetensors", path);
            }
        }
    } else {
        snprintf(f, n, "%s", path);
    }
    const char *base = strrchr(f, '/');
    base = base ? base + 1 : f;
    if (!strcmp(base, "adapter_model.safetensors")) {
        snprintf(c, n, "%.*sadapter_config.json", (int)(base - f), f);
        if (stat(c, &sb)) free(c), c = NULL;
    } else {
        free(c), c = NULL;
    }
    *file = f, *config = c;
    return 0;
}

static int float_dtype(dfm_dtype d) { return d == DFM_F32 || d == DFM_BF16 || d == DFM_F16; }

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

static int apply(dfm_wan_transformer *m, const dfm_st *st, const linear_t *lin, mod_t *mods, int nm, float dropout)
{
    int rc = 0;
    const char **targets = dfm_calloc((size_t)nm + 1, sizeof *targets);
    int *done = dfm_calloc((size_t)nm, sizeof *done);
    if (!targets || !done) rc = DFM_E_NOMEM;
    /* one lora_add per distinct rank, in the order the ranks first occur */
    for (int i = 0; i < nm && !rc; i++) {
        if (done[i]) continue;
        int k = 0, count = 0;
        for (int j = i; j < nm; j++)
            if (!done[j] && mods[j].rank == mods[i].rank) targets[k++] = lin[mods[j].lin].name, done[j] = 1;
        targets[k] = NULL;
        rc = dfm_wan_transformer_lora_add(m, targets, mods[i].rank, (float)mods[i].rank, dropout, 0, &count);
        if (!rc && count != k)
            rc = dfm_fail(DFM_E_FORMAT, "LoRA: %d adapters added for %d modules of rank %d", count, k, mods[i].rank);
    }
    for (int i = 0; i < nm && !rc; i++) {
        const mod_t *md = &mods[i];
        const linear_t *l = &lin[md->lin];
        for (int part = 0; part < 2 && !rc; part++) {
            const dfm_st_tensor *t = part ? md->b : md->a;
            char nm2[320];
            snprintf(nm2, sizeof nm2, "%s.%s.weight", l->name, part ? "lora_B" : "lora_A");
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
            rc = dfm_st_read(st, t->name, DFM_F32, p->ndim, p->shape, h);
            if (!rc && part && md->fold != 1.0f)
                for (int64_t e = 0; e < numel; e++) h[e] *= md->fold;
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
    char *file = NULL, *config = NULL;
    dfm_st *st = NULL;
    linear_t *lin = NULL;
    key_t_ *keys = NULL;
    mod_t *mods = NULL;
    int *slot = NULL;
    int nlin = 0, has_lora = 0, nk = 0, nm = 0, fam = FAM_DIFFUSERS;
    peft_cfg meta = {0}, acfg = {0};
    char naming[160] = "";
    const char *style = NULL, *prefix = NULL;
    int rc = resolve(path, &file, &config);
    if (!rc) rc = model_linears(m, &lin, &nlin, &has_lora);
    if (!rc && has_lora)
        rc = dfm_fail(DFM_E_ARG, "LoRA '%s': the model already has adapters (one adapter per model)", path);
    if (!rc) rc = dfm_st_open(&st, file);
    if (rc) goto out;
    nk = dfm_st_count(st);
    if (!nk) {
        rc = dfm_fail(DFM_E_FORMAT, "%s: no tensors", file);
        goto out;
    }
    keys = dfm_calloc((size_t)nk, sizeof *keys);
    mods = dfm_calloc((size_t)nk, sizeof *mods);
    slot = dfm_malloc((size_t)(nlin ? nlin : 1) * sizeof *slot);
    if (!keys || !mods || !slot) {
        rc = DFM_E_NOMEM;
        goto out;
    }
    for (int i = 0; i < nlin; i++) slot[i] = -1;

    /* the naming family: musubi/kohya when the names start with lora_unet_, else original Wan when
     * any module has an original-only part, else diffusers */
    int kohya = 0;
    for (int i = 0; i < nk && !rc; i++) {
        keys[i].t = dfm_st_at(st, i);
        rc = split_key(file, keys[i].t->name, &keys[i], &style);
        kohya += !rc && !strncmp(keys[i].t->name, "lora_unet_", 10);
    }
    if (rc) goto out;
    if (kohya && kohya != nk) {
        for (int i = 0; i < nk; i++)
            if (strncmp(keys[i].t->name, "lora_unet_", 10)) {
                rc = dfm_fail(DFM_E_FORMAT, "%s: tensor '%s' is not in the lora_unet_ naming of the file's other tensors",
                              file, keys[i].t->name);
                goto out;
            }
    }
    fam = kohya ? FAM_KOHYA : FAM_DIFFUSERS;
    for (int i = 0; i < nk && !kohya; i++) {
        if (!prefix) prefix = keys[i].prefix;
        if (has_original_marker(keys[i].fmod)) fam = FAM_ORIGINAL;
    }
    if (!style) style = "lora_A/lora_B";
    if (fam == FAM_KOHYA)
        snprintf(naming, sizeof naming, "musubi-tuner / kohya names (lora_unet_<original module>), %s", style);
    else
        snprintf(naming, sizeof naming, "%s names%s, %s%s%s, %s",
                 fam == FAM_ORIGINAL ? "original Wan" : "diffusers / PEFT",
                 fam == FAM_ORIGINAL ? " (diffusion-pipe / ComfyUI)" : "", prefix ? "prefix '" : "no prefix",
                 prefix ? prefix : "", prefix ? "'" : "", style);

    /* each tensor to its module */
    for (int i = 0; i < nk && !rc; i++) {
        key_t_ *k = &keys[i];
        int li = -1;
        char *canon = NULL;
        if (fam == FAM_KOHYA) {
            const char *f = k->fmod + 10;
            for (int j = 0; j < nlin && li < 0; j++)
                if (!strcmp(lin[j].flat, f) || !strcmp(lin[j].flat_d, f)) li = j;
        } else {
            if ((rc = dfm_weights_convert_name(&dfm_wan_transformer_names, k->fmod, fam == FAM_ORIGINAL, &canon))) break;
            li = find_linear(lin, nlin, canon);
        }
        if (li < 0) {
            int patch = canon ? !strcmp(canon, "patch_embedding") : !strcmp(k->fmod, "lora_unet_patch_embedding");
            if (patch)
                rc = dfm_fail(DFM_E_UNSUPPORTED, "%s: tensor '%s': LoRA on patch_embedding (a Conv3d) is not supported", file,
                              k->t->name);
            else
                rc = dfm_fail(DFM_E_FORMAT,
                              "%s: tensor '%s': module '%s'%s%s%s is not a linear of the %d-block Wan transformer (names read "
                              "as %s)",
                              file, k->t->name, k->fmod, canon && strcmp(canon, k->fmod) ? " (diffusers '" : "",
                              canon && strcmp(canon, k->fmod) ? canon : "", canon && strcmp(canon, k->fmod) ? "')" : "",
                              dfm_wan_transformer_get_config(m)->num_layers, naming);
            free(canon);
            break;
        }
        free(canon);
        if (slot[li] < 0) {
            slot[li] = nm;
            mods[nm++] = (mod_t){.lin = li, .fmod = k->fmod};
        }
        mod_t *md = &mods[slot[li]];
        const dfm_st_tensor **dst = k->part == PART_A ? &md->a : k->part == PART_B ? &md->b : &md->alpha;
        if (*dst) {
            rc = dfm_fail(DFM_E_FORMAT, "%s: tensors '%s' and '%s' are both the %s of module '%s'", file, (*dst)->name,
                          k->t->name, k->part == PART_A ? "A (down)" : k->part == PART_B ? "B (up)" : "alpha",
                          lin[li].name);
            break;
        }
        *dst = k->t;
    }
    if (rc) goto out;

    /* alpha sources */
    if (!(o->alpha > 0)) {
        if ((rc = cfg_from_metadata(&meta, st, file))) goto out;
        if (config && (rc = cfg_from_file(&acfg, config))) goto out;
    }

    /* complete pairs, shapes that fit, the scale of each */
    const char *alpha_from = NULL;
    for (int i = 0; i < nm && !rc; i++) {
        mod_t *md = &mods[i];
        const linear_t *l = &lin[md->lin];
        if (!md->a || !md->b) {
            const dfm_st_tensor *t = md->a ? md->a : md->b ? md->b : md->alpha;
            rc = dfm_fail(DFM_E_FORMAT, "%s: tensor '%s': module '%s' has no %s tensor (names read as %s)", file, t->name,
                          l->name, !md->a && !md->b ? "A or B" : md->a ? "B (lora_B / lora_up)" : "A (lora_A / lora_down)",
                          naming);
            break;
        }
        for (int part = 0; part < 2 && !rc; part++) {
            const dfm_st_tensor *t = part ? md->b : md->a;
            if (!float_dtype(t->dtype))
                rc = dfm_fail(DFM_E_UNSUPPORTED, "%s: tensor '%s' has dtype %s (LoRA weights must be F32, BF16 or F16)", file,
                              t->name, dfm_st_dtype_name(t));
            else if (t->ndim != 2)
                rc = dfm_fail(DFM_E_FORMAT, "%s: tensor '%s' has %d dimensions (a LoRA %s is 2-D)", file, t->name, t->ndim,
                              part ? "B" : "A");
        }
        if (rc) break;
        int64_t r = md->a->shape[0];
        if (r < 1 || r > 65536 || md->b->shape[1] != r) {
            rc = dfm_fail(DFM_E_FORMAT, "%s: tensors '%s' [%lld, %lld] and '%s' [%lld, %lld] disagree on the rank", file,
                          md->a->name, (long long)md->a->shape[0], (long long)md->a->shape[1], md->b->name,
                          (long long)md->b->shape[0], (long long)md->b->shape[1]);
            break;
        }
        if (md->a->shape[1] != l->in || md->b->shape[0] != l->out) {
            const dfm_st_tensor *t = md->a->shape[1] != l->in ? md->a : md->b;
            rc = dfm_fail(DFM_E_FORMAT, "%s: tensor '%s' has shape [%lld, %lld], module '%s' (in %lld, out %lld) needs %s",
                          file, t->name, (long long)t->shape[0], (long long)t->shape[1], l->name, (long long)l->in,
                          (long long)l->out, t == md->a ? "A [rank, in]" : "B [out, rank]");
            break;
        }
        md->rank = (int)r;
        const char *src;
        int rslora = 0;
        if (o->alpha > 0) {
            md->alpha_v = o->alpha, src = "the caller";
        } else if (md->alpha) {
            float v = 0;
            int64_t one[DFM_ST_MAX_DIMS];
            int64_t numel = 1;
            for (int d = 0; d < md->alpha->ndim; d++) one[d] = md->alpha->shape[d], numel *= md->alpha->shape[d];
            if (numel != 1 || !float_dtype(md->alpha->dtype)) {
                rc = dfm_fail(DFM_E_FORMAT, "%s: tensor '%s' is not one float (a LoRA alpha)", file, md->alpha->name);
                break;
            }
            if ((rc = dfm_st_read(st, md->alpha->name, DFM_F32, md->alpha->ndim, one, &v))) break;
            md->alpha_v = v, src = "per-module .alpha tensors";
        } else if (meta.have) {
            md->alpha_v = cfg_alpha(&meta, md->fmod), rslora = meta.rslora, src = meta.src;
        } else if (acfg.have) {
            md->alpha_v = cfg_alpha(&acfg, md->fmod), rslora = acfg.rslora, src = acfg.src;
        } else {
            md->alpha_v = (double)r, src = "none in the file (alpha = rank)";
        }
        if (!(md->alpha_v > 0) || !isfinite(md->alpha_v)) {
            rc = dfm_fail(DFM_E_FORMAT, "%s: module '%s': alpha %g (from %s) is not positive", file, l->name, md->alpha_v, src);
            break;
        }
        if (!alpha_from) alpha_from = src;
        else if (strcmp(alpha_from, src)) alpha_from = "mixed sources";
        md->fold = (float)((double)multiplier * md->alpha_v / (rslora ? sqrt((double)r) : (double)r));
    }
    if (rc) goto out;

    if ((rc = apply(m, st, lin, mods, nm, o->dropout))) {
        dfm_fail_ctx(rc, "LoRA '%s' (%s)", file, naming);
        goto out;
    }
    if (info) {
        memset(info, 0, sizeof *info);
        snprintf(info->naming, sizeof info->naming, "%s", naming);
        snprintf(info->alpha_from, sizeof info->alpha_from, "%s", alpha_from ? alpha_from : "");
        info->modules = nm;
        info->rank_min = info->rank_max = nm ? mods[0].rank : 0;
        for (int i = 0; i < nm; i++) {
            if (mods[i].rank < info->rank_min) info->rank_min = mods[i].rank;
            if (mods[i].rank > info->rank_max) info->rank_max = mods[i].rank;
        }
        info->alpha = nm ? (float)mods[0].alpha_v : 0;
    }
out:
    for (int i = 0; keys && i < nk; i++) free(keys[i].fmod);
    free(keys), free(mods), free(slot);
    cJSON_Delete(meta.root), cJSON_Delete(acfg.root);
    linears_free(lin, nlin);
    dfm_st_close(st);
    free(file), free(config);
    return rc;
}

/* ---- saving ---------------------------------------------------------------------------------- */

typedef struct {
    char *orig;            /* original module name */
    dfm_tensor a, b;       /* host F32 copies (B folded) */
    int rank;
} save_mod;

static int cmp_orig(const void *x, const void *y) { return strcmp(((const save_mod *)x)->orig, ((const save_mod *)y)->orig); }

/* Python's repr of a float that came from an f32: the shortest decimal that reads back as the
 * same f32, with ".0" when it looks like an integer. */
static void py_float(char *out, size_t n, float v)
{
    for (int p = 1; p <= 9; p++) {
        snprintf(out, n, "%.*g", p, (double)v);
        if (strtof(out, NULL) == v) break;
    }
    if (!strpbrk(out, ".en")) strncat(out, ".0", n - strlen(out) - 1);
}

/* {"name": rank, ...} for the modules whose rank is not r, in sorted order (json sort_keys) */
static int pattern_json(dfm_buf *b, const save_mod *s, int n, int r)
{
    int k = 0, rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (s[i].rank == r) continue;
        rc = dfm_buf_printf(b, "%s\n    \"%s\": %d", k ? "," : "{", s[i].orig, s[i].rank);
        k++;
    }
    if (!rc) rc = dfm_buf_printf(b, k ? "\n  }" : "{}");
    return rc;
}

/* adapter_config.json as PEFT 0.21.2's LoraConfig.save_pretrained writes it (json.dumps,
 * indent 2, sorted keys) for LoraConfig(r, lora_alpha = r, lora_dropout, bias "none",
 * target_modules). */
static int config_json(dfm_buf *b, const save_mod *s, int n, int r, float dropout)
{
    char d[32];
    py_float(d, sizeof d, dropout);
    int rc = dfm_buf_printf(b,
                            "{\n  \"alora_invocation_tokens\": null,\n  \"alpha_pattern\": ");
    if (!rc) rc = pattern_json(b, s, n, r);
    if (!rc)
        rc = dfm_buf_printf(b,
                            ",\n  \"arrow_config\": null,\n  \"auto_mapping\": null,\n  \"base_model_name_or_path\": null,\n"
                            "  \"bias\": \"none\",\n  \"corda_config\": null,\n  \"ensure_weight_tying\": false,\n"
                            "  \"eva_config\": null,\n  \"exclude_modules\": null,\n  \"fan_in_fan_out\": false,\n"
                            "  \"inference_mode\": false,\n  \"init_lora_weights\": true,\n  \"kasa_config\": null,\n"
                            "  \"layer_replication\": null,\n  \"layers_pattern\": null,\n  \"layers_to_transform\": null,\n"
                            "  \"loftq_config\": {},\n  \"lora_alpha\": %d,\n  \"lora_bias\": false,\n  \"lora_dropout\": %s,\n"
                            "  \"lora_ga_config\": null,\n  \"megatron_config\": null,\n  \"megatron_core\": \"megatron.core\",\n"
                            "  \"modules_to_save\": null,\n  \"monteclora_config\": null,\n  \"peft_type\": \"LORA\",\n"
                            "  \"peft_version\": \"0.21.2\",\n  \"qalora_group_size\": 16,\n  \"r\": %d,\n  \"rank_pattern\": ",
                            r, d, r);
    if (!rc) rc = pattern_json(b, s, n, r);
    if (!rc) rc = dfm_buf_printf(b, ",\n  \"revision\": null,\n  \"target_modules\": [");
    for (int i = 0; i < n && !rc; i++) rc = dfm_buf_printf(b, "%s\n    \"%s\"", i ? "," : "", s[i].orig);
    if (!rc)
        rc = dfm_buf_printf(b, "\n  ],\n  \"target_parameters\": null,\n  \"task_type\": null,\n"
                               "  \"trainable_token_indices\": null,\n  \"use_bdlora\": null,\n  \"use_dora\": false,\n"
                               "  \"use_qalora\": false,\n  \"use_rslora\": false,\n  \"velora_config\": null\n}\n");
    return rc;
}

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

    /* r: the most common rank (the smallest of equals) */
    int r = s[0].rank, best = 0;
    for (int i = 0; i < n; i++) {
        int c = 0;
        for (int j = 0; j < n; j++) c += s[j].rank == s[i].rank;
        if (c > best || (c == best && s[i].rank < r)) best = c, r = s[i].rank;
    }

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
    if ((rc = config_json(&cfg, s, n, r, o->dropout))) goto out;
    snprintf(path, pl, "%s/adapter_config.json", dir);
    rc = dfm_write_file_atomic(path, cfg.data, cfg.len);
out:
    for (int i = 0; e && i < 2 * n; i++) free((char *)e[i].name);
    for (int i = 0; i < n; i++) free(s[i].orig), dfm_tensor_free(&s[i].a), dfm_tensor_free(&s[i].b);
    free(s), free(e), free(path);
    dfm_buf_free(&cfg);
    return rc;
}
