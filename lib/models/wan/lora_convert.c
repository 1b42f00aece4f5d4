/* lora_convert.c — Wan LoRA files between naming families, and their summary (lora_convert.h).
 *
 * Converting: the input is read and checked by lora_file.c; every A and B is read as F32 and
 * checked finite, B multiplied by the module's scale in double, both rounded once to the output
 * dtype and checked finite again; the names are made from the diffusers module name (names.h
 * gives the original one); then the tensors, and PEFT's config where the family has one, are
 * written. The summary and the consumer checks read only the names, shapes and alphas.
 * Not here: reading the file (lora_file.c), models.
 */
#include "models/wan/lora_convert.h"

#include "base/error.h"
#include "models/wan/names.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

static const char *const TARGETS[] = {"comfyui", "diffusers", "peft", "musubi"};

int dfm_wan_lora_target_parse(const char *s)
{
    if (!strcmp(s, "diffusion-pipe")) return DFM_WAN_LORA_TO_COMFYUI;
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, TARGETS[i])) return i;
    return -1;
}

const char *dfm_wan_lora_target_name(int to) { return to >= 0 && to < 4 ? TARGETS[to] : "?"; }

int dfm_wan_lora_family_of(const dfm_wan_lora_file *f)
{
    if (f->family == DFM_WAN_LORA_KOHYA) return DFM_WAN_LORA_TO_MUSUBI;
    if (f->family == DFM_WAN_LORA_ORIGINAL) return DFM_WAN_LORA_TO_COMFYUI;
    return f->prefix && !strcmp(f->prefix, "transformer.") ? DFM_WAN_LORA_TO_DIFFUSERS : DFM_WAN_LORA_TO_PEFT;
}

static void flatten(char *s)
{
    for (; *s; s++)
        if (*s == '.') *s = '_';
}

/* ---- converting ------------------------------------------------------------------------------- */

typedef struct {
    char *cfg_name;      /* the module as adapter_config.json names it */
    int rank;
    void *a, *b;         /* output bytes */
    float alpha;         /* musubi's .alpha */
} out_mod;

static int check_finite(const char *file, const dfm_st_tensor *t, const float *v, int64_t n, int64_t cols)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return dfm_fail(DFM_E_NONFINITE, "%s: tensor '%s' has a non-finite value (%s at [%lld, %lld])", file, t->name,
                            isnan(v[i]) ? "NaN" : "infinity", (long long)(i / cols), (long long)(i % cols));
    return 0;
}

/* t as F32 (checked finite), times scale (in double) unless scale is 1, rounded to dtype dt. */
static int read_out(const dfm_wan_lora_file *f, const dfm_st_tensor *t, double scale, dfm_dtype dt, void **out)
{
    int64_t n = t->shape[0] * t->shape[1];
    float *v = dfm_malloc((size_t)(n ? n : 1) * sizeof *v);
    void *o = dfm_malloc((size_t)(n ? n : 1) * dfm_dtype_size(dt));
    int rc = v && o ? 0 : DFM_E_NOMEM;
    if (!rc) rc = dfm_st_read(f->st, t->name, DFM_F32, 2, t->shape, v);
    if (!rc) rc = check_finite(f->file, t, v, n, t->shape[1]);
    if (!rc && scale != 1.0)
        for (int64_t i = 0; i < n; i++) v[i] = (float)((double)v[i] * scale);
    if (!rc) rc = dfm_convert_floats(o, dt, v, DFM_F32, (size_t)n);
    for (int64_t i = 0; !rc && i < n; i++) {
        float x = dt == DFM_F32 ? ((float *)o)[i] : dt == DFM_BF16 ? dfm_bf16_to_f32(((uint16_t *)o)[i])
                                                                  : dfm_f16_to_f32(((uint16_t *)o)[i]);
        if (!isfinite(x))
            rc = dfm_fail(DFM_E_NONFINITE, "%s: tensor '%s' times the scale %g does not fit %s (at [%lld, %lld])", f->file,
                          t->name, scale, dfm_dtype_name(dt), (long long)(i / t->shape[1]), (long long)(i % t->shape[1]));
    }
    free(v);
    if (rc) {
        free(o);
        return rc;
    }
    *out = o;
    return 0;
}

static int cmp_cfg(const void *x, const void *y) { return strcmp(((const out_mod *)x)->cfg_name, ((const out_mod *)y)->cfg_name); }

static int write_config(const char *dir, out_mod *m, int n)
{
    const char **names = dfm_calloc((size_t)n, sizeof *names);
    int *ranks = dfm_calloc((size_t)n, sizeof *ranks), rc = 0;
    dfm_buf b = {0};
    char *path = dfm_malloc(strlen(dir) + 32);
    if (!names || !ranks || !path) rc = DFM_E_NOMEM;
    for (int i = 0; !rc && i < n; i++) names[i] = m[i].cfg_name, ranks[i] = m[i].rank;
    if (!rc) rc = dfm_wan_lora_config_json(&b, names, ranks, n, 0.0f);
    if (!rc) {
        sprintf(path, "%s/adapter_config.json", dir);
        rc = dfm_write_file_atomic(path, b.data, b.len);
    }
    free(names), free(ranks), free(path);
    dfm_buf_free(&b);
    return rc;
}

int dfm_wan_lora_convert(const char *in, const char *out, int to, const dfm_wan_lora_convert_opts *o, int *modules)
{
    dfm_wan_lora_convert_opts dflt = {.dtype = -1};
    if (!o) o = &dflt;
    if (to < 0 || to > DFM_WAN_LORA_TO_MUSUBI) return dfm_fail(DFM_E_ARG, "LoRA convert: unknown family %d", to);
    if (o->dtype != -1 && o->dtype != DFM_F32 && o->dtype != DFM_BF16 && o->dtype != DFM_F16)
        return dfm_fail(DFM_E_ARG, "LoRA convert: output dtype %d is not F32, BF16 or F16", o->dtype);
    int is_dir = !ends_with(out, ".safetensors");
    if (to == DFM_WAN_LORA_TO_PEFT && !is_dir)
        return dfm_fail(DFM_E_ARG, "'%s': a PEFT adapter is a directory (adapter_model.safetensors + adapter_config.json), "
                                   "not a .safetensors file", out);
    dfm_wan_lora_file *f = NULL;
    int rc = dfm_wan_lora_file_open(&f, in, o->alpha);
    if (rc) return rc;
    int n = f->n, ne = 0;
    out_mod *m = dfm_calloc((size_t)n, sizeof *m);
    dfm_st_entry *e = dfm_calloc((size_t)n * 3, sizeof *e);
    char *path = dfm_malloc(strlen(out) + 64);
    if (!m || !e || !path) rc = DFM_E_NOMEM;

    for (int i = 0; i < n && !rc; i++) {
        const dfm_wan_lora_module *md = &f->mods[i];
        char *orig = NULL, *mod;
        if ((rc = dfm_wan_transformer_original_name(md->module, &orig))) break;
        /* the module as this family spells it, and as its adapter_config.json does */
        const char *pre = to == DFM_WAN_LORA_TO_COMFYUI ? "diffusion_model." : to == DFM_WAN_LORA_TO_DIFFUSERS ? "transformer."
                        : to == DFM_WAN_LORA_TO_PEFT    ? "base_model.model."
                                                        : "lora_unet_";
        const char *base = to == DFM_WAN_LORA_TO_COMFYUI || to == DFM_WAN_LORA_TO_MUSUBI ? orig : md->module;
        size_t len = strlen(pre) + strlen(base) + 1;
        if (!(mod = dfm_malloc(len))) {
            free(orig);
            rc = DFM_E_NOMEM;
            break;
        }
        snprintf(mod, len, "%s%s", pre, base);
        if (to == DFM_WAN_LORA_TO_MUSUBI) flatten(mod + strlen(pre));
        m[i].cfg_name = dfm_strdup(base);
        m[i].rank = md->rank;
        m[i].alpha = (float)md->rank;
        free(orig);
        if (!m[i].cfg_name) rc = DFM_E_NOMEM;
        dfm_dtype da = o->dtype >= 0 ? (dfm_dtype)o->dtype : md->a->dtype, db = o->dtype >= 0 ? (dfm_dtype)o->dtype : md->b->dtype;
        if (!rc) rc = read_out(f, md->a, 1.0, da, &m[i].a);
        if (!rc) rc = read_out(f, md->b, md->scale, db, &m[i].b);
        const char *sa = to == DFM_WAN_LORA_TO_MUSUBI ? "lora_down" : "lora_A", *sb = to == DFM_WAN_LORA_TO_MUSUBI ? "lora_up" : "lora_B";
        for (int part = 0; part < 3 && !rc; part++) {
            if (part == 2 && to != DFM_WAN_LORA_TO_MUSUBI) break;
            size_t nl = strlen(mod) + 32;
            char *nm = dfm_malloc(nl);
            if (!nm) {
                rc = DFM_E_NOMEM;
                break;
            }
            dfm_st_entry *en = &e[ne++];
            const dfm_st_tensor *t = part ? md->b : md->a;
            if (part == 2) {
                snprintf(nm, nl, "%s.alpha", mod);
                en->name = nm, en->dtype = DFM_F32, en->ndim = 0, en->data = &m[i].alpha;
            } else {
                snprintf(nm, nl, "%s.%s.weight", mod, part ? sb : sa);
                en->name = nm, en->dtype = part ? db : da, en->ndim = 2, en->data = part ? m[i].b : m[i].a;
                en->shape[0] = t->shape[0], en->shape[1] = t->shape[1];
            }
        }
        free(mod);
    }
    if (rc) goto done;

    if (is_dir) {
        struct stat sb;
        if (mkdir(out, 0755) && !(errno == EEXIST && !stat(out, &sb) && S_ISDIR(sb.st_mode))) {
            rc = dfm_fail(DFM_E_IO, "cannot create the directory '%s': %s", out, errno == EEXIST ? "a file has that name" : strerror(errno));
            goto done;
        }
        sprintf(path, "%s/%s", out, to == DFM_WAN_LORA_TO_DIFFUSERS ? "pytorch_lora_weights.safetensors" : "adapter_model.safetensors");
    } else {
        sprintf(path, "%s", out);
    }
    if ((rc = dfm_st_write(path, e, ne, "{\"format\":\"pt\"}"))) goto done;
    if (is_dir && (to == DFM_WAN_LORA_TO_COMFYUI || to == DFM_WAN_LORA_TO_PEFT)) {
        qsort(m, (size_t)n, sizeof *m, cmp_cfg);
        rc = write_config(out, m, n);
    }
    /* an earlier conversion into the same directory: the files this family does not write go, so
     * that readers (lora_file.h's order: adapter_model first) find this one */
    for (int k = 0; is_dir && !rc && k < 3; k++) {
        static const char *const stale[] = {"adapter_model.safetensors", "pytorch_lora_weights.safetensors", "adapter_config.json"};
        int writes = k == 0 ? to != DFM_WAN_LORA_TO_DIFFUSERS : k == 1 ? to == DFM_WAN_LORA_TO_DIFFUSERS
                                                                        : to == DFM_WAN_LORA_TO_COMFYUI || to == DFM_WAN_LORA_TO_PEFT;
        sprintf(path, "%s/%s", out, stale[k]);
        if (!writes && unlink(path) && errno != ENOENT) rc = dfm_fail(DFM_E_IO, "cannot remove '%s': %s", path, strerror(errno));
    }
    if (!rc && modules) *modules = n;
done:
    for (int i = 0; e && i < ne; i++) free((char *)e[i].name);
    for (int i = 0; m && i < n; i++) free(m[i].cfg_name), free(m[i].a), free(m[i].b);
    free(m), free(e), free(path);
    dfm_wan_lora_file_close(f);
    return rc;
}

/* ---- consumers -------------------------------------------------------------------------------- */

/* The scale a consumer computes with is the module's: 1 where nothing says otherwise, the .alpha
 * tensor where it reads those (tensors), the header metadata where it reads that (meta). */
static int scale_ok(const dfm_wan_lora_file *f, int tensors, int meta, double *bad)
{
    for (int i = 0; i < f->n; i++) {
        const dfm_wan_lora_module *md = &f->mods[i];
        if ((tensors && md->alpha_src == DFM_WAN_LORA_ALPHA_TENSOR) || (meta && md->alpha_src == DFM_WAN_LORA_ALPHA_METADATA) ||
            md->scale == 1.0)
            continue;
        *bad = md->scale;
        return 0;
    }
    return 1;
}

/* The module's name inside its block in the original naming ("self_attn.q"), or the whole
 * original name outside the blocks; *out malloc'd. */
static int inner_original(const char *module, char **out)
{
    char *orig = NULL;
    int rc = dfm_wan_transformer_original_name(module, &orig);
    if (rc) return rc;
    if (dfm_wan_lora_block_of(module) >= 0) memmove(orig, strchr(orig + 7, '.') + 1, strlen(strchr(orig + 7, '.') + 1) + 1);
    *out = orig;
    return 0;
}

static int in_list(const char *s, const char *const *l)
{
    for (; *l; l++)
        if (!strcmp(s, *l)) return 1;
    return 0;
}

/* Names diffusers' _convert_non_diffusers_wan_lora_to_diffusers maps (the k_img/v_img pair
 * only when both occur), and diffusion-pipe's targets (the linears of its blocks). */
static const char *const DIFFUSERS_BLOCK[] = {"self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o", "cross_attn.q",
                                              "cross_attn.k", "cross_attn.v", "cross_attn.o", "ffn.0", "ffn.2", NULL};
static const char *const DIFFUSERS_TOP[] = {"time_projection.1", "head.head", "text_embedding.0", "text_embedding.2",
                                            "time_embedding.0", "time_embedding.2", "img_emb.proj.1", "img_emb.proj.3", NULL};

static void say(dfm_wan_lora_consumer *c, int ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(dfm_wan_lora_consumer *c, int ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    c->ok = ok;
    vsnprintf(c->why, sizeof c->why, fmt, ap);
    va_end(ap);
}

void dfm_wan_lora_consumers(const dfm_wan_lora_file *f, dfm_wan_lora_consumer out[DFM_WAN_LORA_NCONSUMERS])
{
    static const char *const who[] = {"diffusers", "ComfyUI", "diffusion-pipe", "musubi-tuner"};
    for (int i = 0; i < DFM_WAN_LORA_NCONSUMERS; i++) out[i] = (dfm_wan_lora_consumer){.consumer = who[i]};
    int fam = dfm_wan_lora_family_of(f), lora_ab = !strcmp(f->style, "lora_A/lora_B");
    int alpha_t = 0, top = 0, kimg = 0, vimg = 0, rmin = 1 << 30, rmax = 0, flat_orig = 1, all_alpha = 1;
    const char *unmapped = NULL, *top_alpha = NULL, *not_dp = NULL;
    for (int i = 0; i < f->n; i++) {
        const dfm_wan_lora_module *md = &f->mods[i];
        char *in = NULL;
        if (inner_original(md->module, &in)) {
            free(in);
            continue;
        }
        int blk = dfm_wan_lora_block_of(md->module);
        alpha_t |= md->alpha != NULL;
        all_alpha &= md->alpha != NULL;
        top |= blk < 0;
        kimg |= !strcmp(in, "cross_attn.k_img"), vimg |= !strcmp(in, "cross_attn.v_img");
        if (!unmapped && !(blk >= 0 ? in_list(in, DIFFUSERS_BLOCK) || strstr(in, "_img") : in_list(in, DIFFUSERS_TOP)))
            unmapped = md->fmod;
        if (!top_alpha && blk < 0 && md->alpha) top_alpha = md->fmod;
        if (!not_dp && (blk < 0 || !(in_list(in, DIFFUSERS_BLOCK) || strstr(in, "_img")))) not_dp = md->fmod;
        if (md->rank < rmin) rmin = md->rank;
        if (md->rank > rmax) rmax = md->rank;
        if (fam == DFM_WAN_LORA_TO_MUSUBI) {
            char *orig = NULL;
            if (!dfm_wan_transformer_original_name(md->module, &orig)) {
                flatten(orig);
                flat_orig &= !strcmp(md->fmod + 10, orig);
            }
            free(orig);
        }
        free(in);
    }
    double bad = 1;
    const char *hint_c = "(dfm-lora convert --to comfyui)";

    /* diffusers WanPipeline.load_lora_weights */
    dfm_wan_lora_consumer *c = &out[DFM_WAN_LORA_DIFFUSERS_PIPE];
    if (fam == DFM_WAN_LORA_TO_PEFT)
        say(c, 0, "load_lora_weights takes keys under transformer. (and converts diffusion_model. and lora_unet_ ones); "
                  "these have %s%s%s (dfm-lora convert --to diffusers)", f->prefix ? "the prefix '" : "no prefix",
            f->prefix ? f->prefix : "", f->prefix ? "'" : "");
    else if (fam == DFM_WAN_LORA_TO_DIFFUSERS && (!lora_ab || alpha_t))
        say(c, 0, "under transformer. diffusers expects PEFT's lora_A/lora_B without .alpha tensors (dfm-lora convert --to diffusers)");
    else if (fam == DFM_WAN_LORA_TO_DIFFUSERS && f->metadata_trap)
        say(c, 0, "the header's lora_adapter_metadata has no transformer.* keys: diffusers builds a default LoraConfig "
                  "(r = 8) and fails (dfm-lora convert --to diffusers)");
    else if (fam == DFM_WAN_LORA_TO_DIFFUSERS && !scale_ok(f, 0, 1, &bad))
        say(c, 0, "diffusers would compute with scale 1 (it never reads adapter_config.json), the adapter has %g "
                  "(dfm-lora convert --to diffusers folds it)", bad);
    else if (fam == DFM_WAN_LORA_TO_COMFYUI && strcmp(f->prefix ? f->prefix : "", "diffusion_model."))
        say(c, 0, "diffusers converts original names only under the prefix 'diffusion_model.' %s", hint_c);
    else if (fam == DFM_WAN_LORA_TO_COMFYUI && unmapped)
        say(c, 0, "its converter has no mapping for module '%s': a ValueError", unmapped);
    else if (fam == DFM_WAN_LORA_TO_COMFYUI && kimg != vimg)
        say(c, 0, "cross_attn.k_img without v_img (or the reverse) is left unconverted: a ValueError");
    else if (fam == DFM_WAN_LORA_TO_COMFYUI && top == f->n)
        say(c, 0, "its converter needs at least one module inside the blocks");
    else if (fam == DFM_WAN_LORA_TO_COMFYUI && top_alpha)
        say(c, 0, "its converter folds .alpha only inside the blocks: '%s.alpha' is left over, a ValueError", top_alpha);
    else if (fam == DFM_WAN_LORA_TO_COMFYUI && !scale_ok(f, 1, 0, &bad))
        say(c, 0, "diffusers would compute with scale 1, the adapter has %g %s", bad, hint_c);
    else if (fam == DFM_WAN_LORA_TO_MUSUBI) {
        /* _convert_musubi_wan_lora_to_diffusers: blocks 0..N-1, each with all ten linears, .alpha each */
        int nb = 0, full = 1;
        for (int i = 0; i < f->n; i++) {
            int b = dfm_wan_lora_block_of(f->mods[i].module);
            if (b + 1 > nb) nb = b + 1;
        }
        int per = 10 + (kimg && vimg ? 2 : 0);
        full = !top && !unmapped && nb * per == f->n;
        if (!flat_orig || lora_ab)
            say(c, 0, "its musubi converter reads lora_unet_<original module>.lora_down/.lora_up only (dfm-lora convert --to musubi)");
        else if (!all_alpha)
            say(c, 0, "its musubi converter needs an .alpha tensor for every module (dfm-lora convert --to musubi)");
        else if (!full)
            say(c, 0, "its musubi converter needs all %d linears of every block 0..%d and nothing else %s", per, nb - 1, hint_c);
        else
            say(c, 1, "yes");
    } else
        say(c, 1, "yes");

    /* ComfyUI */
    c = &out[DFM_WAN_LORA_COMFYUI_LOAD];
    if (fam == DFM_WAN_LORA_TO_COMFYUI && !strcmp(f->prefix ? f->prefix : "", "diffusion_model.")) {
        if (!scale_ok(f, 1, 0, &bad)) say(c, 0, "ComfyUI would compute with scale 1, the adapter has %g %s", bad, hint_c);
        else say(c, 1, "yes");
    } else if (fam == DFM_WAN_LORA_TO_MUSUBI && flat_orig) {
        if (!scale_ok(f, 1, 0, &bad)) say(c, 0, "ComfyUI would compute with scale 1, the adapter has %g %s", bad, hint_c);
        else say(c, 1, "yes");
    } else {
        say(c, 0, "ComfyUI maps diffusion_model.<original module> and lora_unet_<original module> names only; these "
                  "are \"lora key not loaded\" %s", hint_c);
    }

    /* diffusion-pipe init_from_existing */
    c = &out[DFM_WAN_LORA_DIFFUSION_PIPE];
    if (fam != DFM_WAN_LORA_TO_COMFYUI || (f->prefix && strcmp(f->prefix, "diffusion_model.") && strcmp(f->prefix, "transformer.")))
        say(c, 0, "it takes original module names under diffusion_model. (or transformer. or none) %s", hint_c);
    else if (!lora_ab)
        say(c, 0, "lora_down/lora_up are not parameter names of its model %s", hint_c);
    else if (alpha_t)
        say(c, 0, ".alpha tensors are not parameters of its model: a RuntimeError %s", hint_c);
    else if (not_dp)
        say(c, 0, "it puts adapters on the blocks' linears only, not on '%s'", not_dp);
    else if (rmin != rmax)
        say(c, 0, "ranks %d..%d differ: its adapter config has one rank", rmin, rmax);
    else if (!scale_ok(f, 0, 0, &bad))
        say(c, 0, "it computes with alpha = rank (scale 1), the adapter has %g %s", bad, hint_c);
    else
        say(c, 1, "yes, with rank %d in its adapter config and no other .safetensors in the directory", rmax);

    /* musubi-tuner's generator */
    c = &out[DFM_WAN_LORA_MUSUBI_GEN];
    if (fam != DFM_WAN_LORA_TO_MUSUBI || !flat_orig || lora_ab)
        say(c, 0, "its generator merges lora_unet_<original module>.lora_down/.lora_up files only (dfm-lora convert --to musubi)");
    else if (top)
        say(c, 0, "it adapts the blocks' linears only: the modules outside the blocks would be dropped");
    else if (!scale_ok(f, 1, 0, &bad))
        say(c, 0, "it would compute with scale 1, the adapter has %g (dfm-lora convert --to musubi)", bad);
    else
        say(c, 1, "yes");
}

/* ---- the summary ------------------------------------------------------------------------------ */

typedef struct {
    char *name;    /* inner original name */
    int *blocks;   /* sorted, or NULL outside the blocks */
    int nb;
} group_t;

static int cmp_int(const void *x, const void *y) { return *(const int *)x - *(const int *)y; }
static int cmp_group(const void *x, const void *y) { return strcmp(((const group_t *)x)->name, ((const group_t *)y)->name); }

/* "0-3, 7, 9-11" from sorted distinct ints */
static int ranges(dfm_buf *b, const int *v, int n)
{
    int rc = 0;
    for (int i = 0; i < n && !rc;) {
        int j = i;
        while (j + 1 < n && v[j + 1] == v[j] + 1) j++;
        rc = j > i ? dfm_buf_printf(b, "%s%d-%d", i ? ", " : "", v[i], v[j]) : dfm_buf_printf(b, "%s%d", i ? ", " : "", v[i]);
        i = j + 1;
    }
    return rc;
}

int dfm_wan_lora_summary(const dfm_wan_lora_file *f, dfm_buf *b)
{
    int n = f->n, rc = 0, ng = 0, nblk = 0;
    group_t *g = dfm_calloc((size_t)n, sizeof *g);
    int *blk = dfm_calloc((size_t)n, sizeof *blk);
    if (!g || !blk) {
        free(g), free(blk);
        return DFM_E_NOMEM;
    }
    int rmin = 1 << 30, rmax = 0, same_scale = 1, same_alpha = 1, fa = 0, fb = 0;
    long long params = 0;
    dfm_dtype d0 = n ? f->mods[0].a->dtype : DFM_F32;
    for (int i = 0; i < n && !rc; i++) {
        const dfm_wan_lora_module *md = &f->mods[i];
        if (md->rank < rmin) rmin = md->rank;
        if (md->rank > rmax) rmax = md->rank;
        same_scale &= md->scale == f->mods[0].scale;
        same_alpha &= md->alpha_v == f->mods[0].alpha_v;
        params += (long long)(md->a->shape[0] * md->a->shape[1] + md->b->shape[0] * md->b->shape[1]);
        fa |= md->a->dtype != d0, fb |= md->b->dtype != d0;
        char *in = NULL;
        if ((rc = inner_original(md->module, &in))) break;
        int k = 0, bi = dfm_wan_lora_block_of(md->module);
        while (k < ng && strcmp(g[k].name, in)) k++;
        if (k == ng) {
            g[ng].name = in, in = NULL;
            if (!(g[ng].blocks = dfm_calloc((size_t)n, sizeof(int)))) rc = DFM_E_NOMEM;
            ng++;
        }
        free(in);
        if (bi >= 0 && !rc) {
            g[k].blocks[g[k].nb++] = bi;
            int j = 0;
            while (j < nblk && blk[j] != bi) j++;
            if (j == nblk) blk[nblk++] = bi;
        }
    }
    if (!rc) {
        qsort(blk, (size_t)nblk, sizeof *blk, cmp_int);
        qsort(g, (size_t)ng, sizeof *g, cmp_group);
        for (int k = 0; k < ng; k++) qsort(g[k].blocks, (size_t)g[k].nb, sizeof(int), cmp_int);
    }
    if (!rc)
        rc = dfm_buf_printf(b, "file        %s\nfamily      %s: %s\nmodules     %d\n", f->file,
                            dfm_wan_lora_target_name(dfm_wan_lora_family_of(f)), f->naming, n);
    if (!rc)
        rc = rmin == rmax ? dfm_buf_printf(b, "rank        %d\n", rmin) : dfm_buf_printf(b, "rank        %d..%d (per module below)\n", rmin, rmax);
    if (!rc && n) {
        if (same_alpha && same_scale)
            rc = dfm_buf_printf(b, "alpha       %g (scale %g), from %s\n", f->mods[0].alpha_v, f->mods[0].scale, f->alpha_from);
        else
            rc = same_scale ? dfm_buf_printf(b, "alpha       per module below, scale %g for every module, from %s\n",
                                             f->mods[0].scale, f->alpha_from)
                            : dfm_buf_printf(b, "alpha       per module below (scales differ), from %s\n", f->alpha_from);
    }
    if (!rc)
        rc = dfm_buf_printf(b, "dtype       %s%s\nparameters  %lld\nblocks      %d", fa || fb ? "mixed, first " : "",
                            dfm_dtype_name(d0), params, nblk);
    if (!rc && nblk) {
        rc = dfm_buf_printf(b, " (");
        if (!rc) rc = ranges(b, blk, nblk);
        if (!rc) rc = dfm_buf_printf(b, ")");
    }
    if (!rc) rc = dfm_buf_printf(b, "\ntargets\n");
    for (int k = 0; k < ng && !rc; k++) {
        if (!g[k].nb) {
            rc = dfm_buf_printf(b, "  %-20s outside the blocks\n", g[k].name);
            continue;
        }
        rc = dfm_buf_printf(b, "  %-20s %d block%s (", g[k].name, g[k].nb, g[k].nb == 1 ? "" : "s");
        if (!rc) rc = ranges(b, g[k].blocks, g[k].nb);
        if (!rc) rc = dfm_buf_printf(b, ")\n");
    }
    if (!rc && (rmin != rmax || !same_alpha || !same_scale)) {
        rc = dfm_buf_printf(b, "per module  (original name, rank, alpha, scale)\n");
        for (int i = 0; i < n && !rc; i++) {
            char *orig = NULL;
            if ((rc = dfm_wan_transformer_original_name(f->mods[i].module, &orig))) break;
            rc = dfm_buf_printf(b, "  %-32s %5d %8g %8g\n", orig, f->mods[i].rank, f->mods[i].alpha_v, f->mods[i].scale);
            free(orig);
        }
    }
    if (!rc) {
        dfm_wan_lora_consumer c[DFM_WAN_LORA_NCONSUMERS];
        dfm_wan_lora_consumers(f, c);
        rc = dfm_buf_printf(b, "loads as is\n");
        for (int i = 0; i < DFM_WAN_LORA_NCONSUMERS && !rc; i++)
            rc = dfm_buf_printf(b, "  %-15s %s%s\n", c[i].consumer, c[i].ok ? "" : "no: ", c[i].why);
    }
    for (int k = 0; k < ng; k++) free(g[k].name), free(g[k].blocks);
    free(g), free(blk);
    return rc;
}
