/* lora_file.c — a Wan LoRA adapter file read without a model (lora_file.h).
 *
 * Every tensor name is split into a module and a part; the family, prefix and A/B spelling are
 * decided once for the file and must hold for every tensor; each module goes through the
 * transformer's name table (names.h) to its diffusers name and must be one of the known linears;
 * then pairs, shapes, dtypes and each module's alpha are checked. The loader (lora.c) adds what
 * needs a model (the model has the module, the shapes fit); the converter (lora_convert.c) reads
 * the values. Not here: models, writing tensors.
 */
#include "models/wan/lora_file.h"

#include "base/error.h"
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

/* ---- key splitting ---------------------------------------------------------------------------- */

static const struct {
    const char *suffix;
    int part;
    const char *style;
} SUFFIXES[] = {
    {".lora_A.weight", DFM_WAN_LORA_A, "lora_A/lora_B"},         {".lora_B.weight", DFM_WAN_LORA_B, "lora_A/lora_B"},
    {".lora_A.default.weight", DFM_WAN_LORA_A, "lora_A/lora_B"}, {".lora_B.default.weight", DFM_WAN_LORA_B, "lora_A/lora_B"},
    {".lora_down.weight", DFM_WAN_LORA_A, "lora_down/lora_up"},  {".lora_up.weight", DFM_WAN_LORA_B, "lora_down/lora_up"},
    {".alpha", DFM_WAN_LORA_ALPHA, NULL},
};

/* Prefixes in front of diffusers or original names, longest first. */
static const char *const PREFIXES[] = {"base_model.model.transformer.", "base_model.model.", "model.diffusion_model.",
                                       "diffusion_model.", "transformer.", NULL};

/* Substrings only original Wan module names contain, and only diffusers names contain. */
static const char *const ORIGINAL_MARKERS[] = {"self_attn.", "cross_attn.", "ffn.0", "ffn.2", "time_embedding.",
                                               "text_embedding.", "time_projection.", "head.head", "img_emb.", NULL};
static const char *const DIFFUSERS_MARKERS[] = {"attn1.", "attn2.", "ffn.net.", "condition_embedder.", "proj_out", NULL};

static int has_marker(const char *s, const char *const *m)
{
    for (; *m; m++)
        if (strstr(s, *m)) return 1;
    return 0;
}

int dfm_wan_lora_split_key(const char *file, const char *name, dfm_wan_lora_key *k)
{
    size_t n = strlen(name);
    memset(k, 0, sizeof *k);
    for (size_t i = 0; i < sizeof SUFFIXES / sizeof SUFFIXES[0]; i++) {
        size_t s = strlen(SUFFIXES[i].suffix);
        if (n > s && !strcmp(name + n - s, SUFFIXES[i].suffix)) {
            k->part = SUFFIXES[i].part;
            k->style = SUFFIXES[i].style;
            const char *m = name;
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

/* ---- module names ----------------------------------------------------------------------------- */

/* The linears of a Wan 2.1 transformer (diffusers names): inside each block, and outside. */
static const char *const BLOCK_LINEARS[] = {"attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0",
                                            "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0",
                                            "attn2.add_k_proj", "attn2.add_v_proj", "ffn.net.0.proj", "ffn.net.2",
                                            NULL};
static const char *const TOP_LINEARS[] = {"condition_embedder.time_embedder.linear_1",
                                          "condition_embedder.time_embedder.linear_2",
                                          "condition_embedder.text_embedder.linear_1",
                                          "condition_embedder.text_embedder.linear_2",
                                          "condition_embedder.time_proj",
                                          "condition_embedder.image_embedder.ff.net.0.proj",
                                          "condition_embedder.image_embedder.ff.net.2",
                                          "proj_out",
                                          NULL};

/* Length of "blocks<sep><n><sep>" at the start of s (n decimal, no leading zero, under 10^6), else 0. */
static size_t block_prefix(const char *s, char sep)
{
    if (strncmp(s, "blocks", 6) || s[6] != sep) return 0;
    const char *p = s + 7;
    size_t nd = 0;
    while (p[nd] >= '0' && p[nd] <= '9') nd++;
    if (!nd || nd > 6 || (p[0] == '0' && nd > 1) || p[nd] != sep) return 0;
    return 7 + nd + 1;
}

int dfm_wan_lora_block_of(const char *name)
{
    return block_prefix(name, '.') ? atoi(name + 7) : -1;
}

int dfm_wan_lora_known_module(const char *name)
{
    size_t k = block_prefix(name, '.');
    for (const char *const *c = k ? BLOCK_LINEARS : TOP_LINEARS; *c; c++)
        if (!strcmp(name + k, *c)) return 1;
    return 0;
}

/* dotted equals flat with every '.' of dotted read as '_' */
static int flat_eq(const char *dotted, const char *flat)
{
    for (; *dotted && *flat; dotted++, flat++)
        if (*flat != (*dotted == '.' ? '_' : *dotted)) return 0;
    return !*dotted && !*flat;
}

/* lora_unet_<flat>: the known linear whose original or diffusers name flattens to it. */
static int kohya_name(const char *fmod, char **out)
{
    const char *f = fmod + 10;
    size_t k = block_prefix(f, '_');
    int rc = 0;
    for (const char *const *c = k ? BLOCK_LINEARS : TOP_LINEARS; *c && !rc; c++) {
        char full[128], *orig = NULL;
        snprintf(full, sizeof full, "%s%s", k ? "blocks.0." : "", *c);
        if ((rc = dfm_wan_transformer_original_name(full, &orig))) break;
        int hit = flat_eq(*c, f + k) || flat_eq(orig + (k ? 9 : 0), f + k);
        free(orig);
        if (hit) {
            size_t n = k + strlen(*c) + 1;
            if (!(*out = dfm_malloc(n))) return DFM_E_NOMEM;
            snprintf(*out, n, "%.*s%s", (int)k, f, *c);
            if (k) (*out)[6] = (*out)[k - 1] = '.';
            return 0;
        }
    }
    return rc;
}

int dfm_wan_lora_module_name(int family, const char *fmod, char **out)
{
    *out = NULL;
    char *canon = NULL;
    int rc;
    if (family == DFM_WAN_LORA_KOHYA) {
        if (!strcmp(fmod, "lora_unet_patch_embedding"))
            return dfm_fail(DFM_E_UNSUPPORTED, "LoRA on patch_embedding (a Conv3d) is not supported");
        if ((rc = kohya_name(fmod, &canon))) return rc;
        if (!canon) return dfm_fail(DFM_E_FORMAT, "module '%s' is not a linear of the Wan 2.1 transformer", fmod);
        *out = canon;
        return 0;
    }
    if ((rc = dfm_weights_convert_name(&dfm_wan_transformer_names, fmod, family == DFM_WAN_LORA_ORIGINAL, &canon)))
        return rc;
    if (!strcmp(canon, "patch_embedding")) {
        free(canon);
        return dfm_fail(DFM_E_UNSUPPORTED, "LoRA on patch_embedding (a Conv3d) is not supported");
    }
    if (!dfm_wan_lora_known_module(canon)) {
        int differs = strcmp(canon, fmod) != 0;
        rc = dfm_fail(DFM_E_FORMAT, "module '%s'%s%s%s is not a linear of the Wan 2.1 transformer", fmod,
                      differs ? " (diffusers '" : "", differs ? canon : "", differs ? "')" : "");
        free(canon);
        return rc;
    }
    *out = canon;
    return 0;
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
 * builds a default config and breaks: training.md 1); it is ignored and *trap set. parse = 0:
 * only *trap is wanted (the caller gave the alpha). */
static int cfg_from_metadata(peft_cfg *c, const dfm_st *st, const char *file, int *trap, int parse)
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
            if (!any) *trap = 1;
            else if (parse) rc = cfg_parse(c, "transformer.", file);
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

/* ---- the file --------------------------------------------------------------------------------- */

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

typedef struct {
    const dfm_st_tensor *t;
    dfm_wan_lora_key k;
} key_t_;

void dfm_wan_lora_file_close(dfm_wan_lora_file *f)
{
    if (!f) return;
    for (int i = 0; i < f->n; i++) free(f->mods[i].module), free(f->mods[i].fmod);
    free(f->mods);
    dfm_st_close(f->st);
    free(f->file), free(f->config);
    free(f);
}

/* The family, prefix and spelling of the file, each the same for every tensor. */
static int decide_naming(dfm_wan_lora_file *f, const key_t_ *keys, int nk)
{
    int kohya = 0;
    for (int i = 0; i < nk; i++) kohya += !strncmp(keys[i].t->name, "lora_unet_", 10);
    if (kohya && kohya != nk) {
        int a = 0, b = 0;
        while (strncmp(keys[a].t->name, "lora_unet_", 10)) a++;
        while (!strncmp(keys[b].t->name, "lora_unet_", 10)) b++;
        return dfm_fail(DFM_E_FORMAT, "%s: tensor '%s' is not in the lora_unet_ naming of the file's other tensors (as '%s'): "
                                      "one file, one naming family", f->file, keys[b].t->name, keys[a].t->name);
    }
    f->family = kohya ? DFM_WAN_LORA_KOHYA : DFM_WAN_LORA_DIFFUSERS;
    int orig = -1, dif = -1, styled = -1;
    for (int i = 0; i < nk; i++) {
        const key_t_ *k = &keys[i];
        if (k->k.style) {
            if (styled < 0) styled = i;
            else if (strcmp(k->k.style, keys[styled].k.style))
                return dfm_fail(DFM_E_FORMAT, "%s: tensors '%s' and '%s' spell A/B differently (%s, %s): one file, one naming",
                                f->file, keys[styled].t->name, k->t->name, keys[styled].k.style, k->k.style);
        }
        if (kohya) continue;
        if (k->k.prefix != keys[0].k.prefix)
            return dfm_fail(DFM_E_FORMAT, "%s: tensors '%s' and '%s' have different prefixes (%s%s%s, %s%s%s): one file, one naming",
                            f->file, keys[0].t->name, k->t->name, keys[0].k.prefix ? "'" : "",
                            keys[0].k.prefix ? keys[0].k.prefix : "none", keys[0].k.prefix ? "'" : "", k->k.prefix ? "'" : "",
                            k->k.prefix ? k->k.prefix : "none", k->k.prefix ? "'" : "");
        if (orig < 0 && has_marker(k->k.fmod, ORIGINAL_MARKERS)) orig = i;
        if (dif < 0 && has_marker(k->k.fmod, DIFFUSERS_MARKERS)) dif = i;
    }
    if (orig >= 0 && dif >= 0)
        return dfm_fail(DFM_E_FORMAT, "%s: tensor '%s' has an original Wan module name, tensor '%s' a diffusers one: one file, "
                                      "one naming family", f->file, keys[orig].t->name, keys[dif].t->name);
    if (orig >= 0) f->family = DFM_WAN_LORA_ORIGINAL;
    f->prefix = kohya ? NULL : keys[0].k.prefix;
    f->style = styled >= 0 ? keys[styled].k.style : "lora_A/lora_B";
    if (kohya)
        snprintf(f->naming, sizeof f->naming, "musubi-tuner / kohya names (lora_unet_<original module>), %s", f->style);
    else
        snprintf(f->naming, sizeof f->naming, "%s names%s, %s%s%s, %s",
                 f->family == DFM_WAN_LORA_ORIGINAL ? "original Wan" : "diffusers / PEFT",
                 f->family == DFM_WAN_LORA_ORIGINAL ? " (diffusion-pipe / ComfyUI)" : "", f->prefix ? "prefix '" : "no prefix",
                 f->prefix ? f->prefix : "", f->prefix ? "'" : "", f->style);
    return 0;
}

/* Each tensor to its module (f->mods, first-tensor order). */
static int gather(dfm_wan_lora_file *f, const key_t_ *keys, int nk)
{
    int rc = 0;
    for (int i = 0; i < nk && !rc; i++) {
        const key_t_ *k = &keys[i];
        char *canon = NULL;
        if ((rc = dfm_wan_lora_module_name(f->family, k->k.fmod, &canon))) {
            if (rc == DFM_E_NOMEM) break;
            rc = dfm_fail(rc, "%s: tensor '%s': %s (names read as %s)", f->file, k->t->name, dfm_errmsg(), f->naming);
            break;
        }
        int j = 0;
        while (j < f->n && strcmp(f->mods[j].module, canon)) j++;
        if (j == f->n) {
            char *fm = dfm_strdup(k->k.fmod);
            if (!fm) {
                free(canon);
                rc = DFM_E_NOMEM;
                break;
            }
            f->mods[f->n++] = (dfm_wan_lora_module){.module = canon, .fmod = fm};
        } else {
            free(canon);
        }
        dfm_wan_lora_module *md = &f->mods[j];
        const dfm_st_tensor **dst = k->k.part == DFM_WAN_LORA_A ? &md->a : k->k.part == DFM_WAN_LORA_B ? &md->b : &md->alpha;
        if (*dst)
            rc = dfm_fail(DFM_E_FORMAT, "%s: tensors '%s' and '%s' are both the %s of module '%s'", f->file, (*dst)->name,
                          k->t->name, k->k.part == DFM_WAN_LORA_A ? "A (down)" : k->k.part == DFM_WAN_LORA_B ? "B (up)" : "alpha",
                          md->module);
        else
            *dst = k->t;
    }
    return rc;
}

/* Pairs, dtypes, ranks and alphas of every module. */
static int check_modules(dfm_wan_lora_file *f, float alpha, const peft_cfg *meta, const peft_cfg *acfg)
{
    const char *alpha_from = NULL;
    for (int i = 0; i < f->n; i++) {
        dfm_wan_lora_module *md = &f->mods[i];
        if (!md->a || !md->b) {
            const dfm_st_tensor *t = md->a ? md->a : md->b ? md->b : md->alpha;
            return dfm_fail(DFM_E_FORMAT, "%s: tensor '%s': module '%s' has no %s tensor (names read as %s)", f->file, t->name,
                            md->module, !md->a && !md->b ? "A or B" : md->a ? "B (lora_B / lora_up)" : "A (lora_A / lora_down)",
                            f->naming);
        }
        for (int part = 0; part < 2; part++) {
            const dfm_st_tensor *t = part ? md->b : md->a;
            if (!float_dtype(t->dtype))
                return dfm_fail(DFM_E_UNSUPPORTED, "%s: tensor '%s' has dtype %s (LoRA weights must be F32, BF16 or F16)", f->file,
                                t->name, dfm_st_dtype_name(t));
            if (t->ndim != 2)
                return dfm_fail(DFM_E_FORMAT, "%s: tensor '%s' has %d dimensions (a LoRA %s is 2-D)", f->file, t->name, t->ndim,
                                part ? "B" : "A");
        }
        int64_t r = md->a->shape[0];
        if (r < 1 || r > 65536 || md->b->shape[1] != r)
            return dfm_fail(DFM_E_FORMAT, "%s: tensors '%s' [%lld, %lld] and '%s' [%lld, %lld] disagree on the rank", f->file,
                            md->a->name, (long long)md->a->shape[0], (long long)md->a->shape[1], md->b->name,
                            (long long)md->b->shape[0], (long long)md->b->shape[1]);
        md->rank = (int)r;
        const char *src;
        if (alpha > 0) {
            md->alpha_v = alpha, src = "the caller", md->alpha_src = DFM_WAN_LORA_ALPHA_CALLER;
        } else if (md->alpha) {
            float v = 0;
            int64_t one[DFM_ST_MAX_DIMS];
            int64_t numel = 1;
            for (int d = 0; d < md->alpha->ndim; d++) one[d] = md->alpha->shape[d], numel *= md->alpha->shape[d];
            if (numel != 1 || !float_dtype(md->alpha->dtype))
                return dfm_fail(DFM_E_FORMAT, "%s: tensor '%s' is not one float (a LoRA alpha)", f->file, md->alpha->name);
            int rc = dfm_st_read(f->st, md->alpha->name, DFM_F32, md->alpha->ndim, one, &v);
            if (rc) return rc;
            md->alpha_v = v, src = "per-module .alpha tensors", md->alpha_src = DFM_WAN_LORA_ALPHA_TENSOR;
        } else if (meta->have) {
            md->alpha_v = cfg_alpha(meta, md->fmod), md->rslora = meta->rslora, src = meta->src;
            md->alpha_src = DFM_WAN_LORA_ALPHA_METADATA;
        } else if (acfg->have) {
            md->alpha_v = cfg_alpha(acfg, md->fmod), md->rslora = acfg->rslora, src = acfg->src;
            md->alpha_src = DFM_WAN_LORA_ALPHA_CONFIG;
        } else {
            md->alpha_v = (double)r, src = "none in the file (alpha = rank)", md->alpha_src = DFM_WAN_LORA_ALPHA_NONE;
        }
        if (!(md->alpha_v > 0) || !isfinite(md->alpha_v))
            return dfm_fail(DFM_E_FORMAT, "%s: module '%s': alpha %g (from %s) is not positive", f->file, md->module, md->alpha_v,
                            src);
        md->scale = md->alpha_v / (md->rslora ? sqrt((double)r) : (double)r);
        if (!alpha_from) alpha_from = src;
        else if (strcmp(alpha_from, src)) alpha_from = "mixed sources";
    }
    snprintf(f->alpha_from, sizeof f->alpha_from, "%s", alpha_from ? alpha_from : "");
    return 0;
}

int dfm_wan_lora_file_open(dfm_wan_lora_file **out, const char *path, float alpha)
{
    *out = NULL;
    if (!(alpha >= 0.0f) || !isfinite(alpha)) return dfm_fail(DFM_E_ARG, "LoRA '%s': alpha %g", path, alpha);
    dfm_wan_lora_file *f = dfm_calloc(1, sizeof *f);
    if (!f) return DFM_E_NOMEM;
    key_t_ *keys = NULL;
    peft_cfg meta = {0}, acfg = {0};
    int nk = 0, rc = resolve(path, &f->file, &f->config);
    if (!rc) rc = dfm_st_open(&f->st, f->file);
    if (rc) goto out;
    nk = dfm_st_count(f->st);
    if (!nk) {
        rc = dfm_fail(DFM_E_FORMAT, "%s: no tensors", f->file);
        goto out;
    }
    keys = dfm_calloc((size_t)nk, sizeof *keys);
    f->mods = dfm_calloc((size_t)nk, sizeof *f->mods);
    if (!keys || !f->mods) {
        rc = DFM_E_NOMEM;
        goto out;
    }
    for (int i = 0; i < nk && !rc; i++) {
        keys[i].t = dfm_st_at(f->st, i);
        rc = dfm_wan_lora_split_key(f->file, keys[i].t->name, &keys[i].k);
    }
    if (!rc) rc = decide_naming(f, keys, nk);
    if (!rc) rc = gather(f, keys, nk);
    if (!rc) rc = cfg_from_metadata(&meta, f->st, f->file, &f->metadata_trap, !(alpha > 0));
    if (!rc && !(alpha > 0) && f->config) rc = cfg_from_file(&acfg, f->config);
    if (!rc) rc = check_modules(f, alpha, &meta, &acfg);
out:
    for (int i = 0; keys && i < nk; i++) free(keys[i].k.fmod);
    free(keys);
    cJSON_Delete(meta.root), cJSON_Delete(acfg.root);
    if (rc) {
        dfm_wan_lora_file_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

/* ---- adapter_config.json ---------------------------------------------------------------------- */

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
static int pattern_json(dfm_buf *b, const char *const *names, const int *ranks, int n, int r)
{
    int k = 0, rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (ranks[i] == r) continue;
        rc = dfm_buf_printf(b, "%s\n    \"%s\": %d", k ? "," : "{", names[i], ranks[i]);
        k++;
    }
    if (!rc) rc = dfm_buf_printf(b, k ? "\n  }" : "{}");
    return rc;
}

int dfm_wan_lora_config_json(dfm_buf *b, const char *const *names, const int *ranks, int n, float dropout)
{
    if (n < 1) return dfm_fail(DFM_E_ARG, "adapter_config.json: no modules");
    /* r: the most common rank (the smallest of equals) */
    int r = ranks[0], best = 0;
    for (int i = 0; i < n; i++) {
        int c = 0;
        for (int j = 0; j < n; j++) c += ranks[j] == ranks[i];
        if (c > best || (c == best && ranks[i] < r)) best = c, r = ranks[i];
    }
    char d[32];
    py_float(d, sizeof d, dropout);
    int rc = dfm_buf_printf(b, "{\n  \"alora_invocation_tokens\": null,\n  \"alpha_pattern\": ");
    if (!rc) rc = pattern_json(b, names, ranks, n, r);
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
    if (!rc) rc = pattern_json(b, names, ranks, n, r);
    if (!rc) rc = dfm_buf_printf(b, ",\n  \"revision\": null,\n  \"target_modules\": [");
    for (int i = 0; i < n && !rc; i++) rc = dfm_buf_printf(b, "%s\n    \"%s\"", i ? "," : "", names[i]);
    if (!rc)
        rc = dfm_buf_printf(b, "\n  ],\n  \"target_parameters\": null,\n  \"task_type\": null,\n"
                               "  \"trainable_token_indices\": null,\n  \"use_bdlora\": null,\n  \"use_dora\": false,\n"
                               "  \"use_qalora\": false,\n  \"use_rslora\": false,\n  \"velora_config\": null\n}\n");
    return rc;
}
