/* transformer_save.c — writing a Wan transformer's weights (transformer.h, "saving"): a diffusers
 * transformer directory exactly as WanTransformer3DModel.save_pretrained writes it, and one
 * safetensors file in the original Wan naming (diffusion-pipe's model.safetensors, ComfyUI's
 * repackaged single file).
 *
 * The weights come from the model's parameter registry (dfm_wan_transformer_param), copied to the
 * host when they live on a device, converted to the requested storage dtype (BF16: diffusers'
 * keep-in-f32 modules stay F32, names.h), with LoRA adapters merged in when asked
 * (W + scale * B A, PEFT's merge). The patch embedding, kept by the model as the GEMM weight
 * [D, C * P], is written as the Conv3d weight [D, C, pt, ph, pw] it is in the checkpoint.
 * Memory: tensors that need no conversion are written from the model's own memory; the others
 * are converted one shard at a time.
 * ref: diffusers models/modeling_utils.py ModelMixin.save_pretrained (state_dict order, shard
 *      names, the cleanup of a previous save, the index), configuration_utils.py to_json_string;
 *      huggingface_hub serialization/_base.py split_state_dict_into_shards_factory;
 *      peft tuners/lora/layer.py Linear.merge / get_delta_weight
 * Not here: loading (transformer.c), LoRA files (lora.c), optimizer state (train/).
 */
#include "models/wan/transformer.h"
#include "base/buf.h"
#include "base/error.h"
#include "models/wan/names.h"
#include "models/weights.h"
#include "nn/linear.h"
#include "tensor/ops.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
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

/* ---- what is written ------------------------------------------------------------------------ */

typedef struct {
    const char *name;        /* diffusers name (owned by the model) */
    dfm_tensor *p;           /* the parameter as the model holds it */
    const dfm_linear *lora;  /* the layer whose adapter is merged into p, or NULL */
    dfm_dtype dt;            /* storage dtype in the file */
    int ndim;
    int64_t shape[5];
    size_t nbytes;
    int order, idx;          /* group in torch's state_dict; position in the registry */
    void *owned;             /* converted data (materialize), or NULL */
} item_t;

/* Position of a parameter in WanTransformer3DModel.state_dict(): a module's own parameters
 * before its submodules' (so the top-level scale_shift_table first, and a block's before its
 * attentions), submodules in registration order (a block: attn1, attn2, norm2, ffn). Within a
 * group the registry's order (weight, bias; to_q, to_k, to_v, to_out.0, norm_q, norm_k) is
 * torch's, kept by the stable sort. */
static int torch_order(const char *name)
{
    if (!strcmp(name, "scale_shift_table")) return 0;
    if (!strncmp(name, "patch_embedding.", 16)) return 1;
    if (!strncmp(name, "condition_embedder.", 19)) return 2;
    if (!strncmp(name, "blocks.", 7)) {
        char *end;
        long b = strtol(name + 7, &end, 10);
        int sub = !strcmp(end, ".scale_shift_table") ? 0 : !strncmp(end, ".attn1.", 7) ? 1 : !strncmp(end, ".attn2.", 7) ? 2
                : !strncmp(end, ".norm2.", 7) ? 3 : 4;
        return 3 + (int)b * 8 + sub;
    }
    return 1 << 30; /* proj_out */
}

static int cmp_item(const void *x, const void *y)
{
    const item_t *a = x, *b = y;
    if (a->order != b->order) return a->order < b->order ? -1 : 1;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* The registry entry named `name`, or -1. */
static int param_index(dfm_wan_transformer *m, const char *name)
{
    for (int i = 0; i < dfm_wan_transformer_nparams(m); i++)
        if (!strcmp(dfm_wan_transformer_param(m, i, NULL, NULL), name)) return i;
    return -1;
}

/* The layer behind weight parameter w that carries the adapter A, B. transformer.c registers a
 * linear's parameters as pointers into its dfm_linear (&l->w, &l->lora_a, &l->lora_b); the layer
 * is recovered from the weight and accepted only when its adapter tensors are the registered
 * ones, so a change of that layout is an error here, not a wrong merge. */
static int lora_layer(const char *module, dfm_tensor *w, dfm_tensor *a, dfm_tensor *b, const dfm_linear **out)
{
    const dfm_linear *l = (const dfm_linear *)((char *)w - offsetof(dfm_linear, w));
    if (&l->lora_a != a || &l->lora_b != b || l->rank != a->shape[0])
        return dfm_fail(DFM_E_UNSUPPORTED, "cannot merge the adapter of '%s': the model does not register it as a layer's "
                                           "parameters", module);
    *out = l;
    return 0;
}

/* Every parameter to write, in torch's state_dict order, with its file dtype and shape. */
static int plan(dfm_wan_transformer *m, dfm_dtype dtype, int merge_lora, const char *what, item_t **out, int *count)
{
    const dfm_wan_transformer_config *c = dfm_wan_transformer_get_config(m);
    int np = dfm_wan_transformer_nparams(m), n = 0, has_lora = 0;
    for (int i = 0; i < np; i++) has_lora |= strstr(dfm_wan_transformer_param(m, i, NULL, NULL), ".lora_") != NULL;
    if (has_lora && !merge_lora)
        return dfm_fail(DFM_E_ARG, "%s: the model has LoRA adapters: save them with dfm_wan_lora_save or merge them "
                                   "into the weights", what);
    item_t *it = dfm_calloc((size_t)(np ? np : 1), sizeof *it);
    if (!it) return DFM_E_NOMEM;
    int rc = 0;
    for (int i = 0; i < np && !rc; i++) {
        dfm_tensor *p;
        const char *name = dfm_wan_transformer_param(m, i, &p, NULL);
        if (strstr(name, ".lora_")) continue;
        item_t *e = &it[n++];
        e->name = name, e->p = p, e->order = torch_order(name), e->idx = i;
        if (!p->data) {
            rc = dfm_fail(DFM_E_ARG, "%s: the weights of '%s' were dropped (dfm_wan_transformer_pack with drop_weights): "
                                     "nothing to save", what, name);
            break;
        }
        e->ndim = p->ndim;
        for (int d = 0; d < p->ndim; d++) e->shape[d] = p->shape[d];
        if (!strcmp(name, "patch_embedding.weight")) { /* the GEMM view back to the Conv3d weight */
            int64_t s5[5] = {c->dim, c->in_channels, c->patch[0], c->patch[1], c->patch[2]};
            e->ndim = 5;
            memcpy(e->shape, s5, sizeof s5);
        }
        e->dt = dfm_weights_dtype_for(&dfm_wan_transformer_names, name, dtype);
        e->nbytes = (size_t)dfm_tensor_numel(p) * dfm_dtype_size(e->dt);
        if (has_lora && ends_with(name, ".weight")) {
            char an[300], bn[300];
            int ml = (int)(strlen(name) - strlen(".weight"));
            snprintf(an, sizeof an, "%.*s.lora_A.weight", ml, name);
            snprintf(bn, sizeof bn, "%.*s.lora_B.weight", ml, name);
            int ia = param_index(m, an), ib = param_index(m, bn);
            if (ia >= 0 && ib >= 0) {
                dfm_tensor *a, *b;
                dfm_wan_transformer_param(m, ia, &a, NULL);
                dfm_wan_transformer_param(m, ib, &b, NULL);
                an[ml] = 0;
                rc = lora_layer(an, p, a, b, &e->lora);
            } else if (ia >= 0 || ib >= 0) {
                rc = dfm_fail(DFM_E_ARG, "%s: '%s' has only one of lora_A and lora_B", what, name);
            }
        }
    }
    if (rc) {
        free(it);
        return rc;
    }
    qsort(it, (size_t)n, sizeof *it, cmp_item);
    *out = it, *count = n;
    return 0;
}

/* e's data in its file dtype: the model's memory itself when it already is that (host, same
 * dtype, nothing merged), else a converted host copy in e->owned. */
static int materialize(item_t *e, const void **data)
{
    const dfm_tensor *p = e->p;
    if (p->device == DFM_CPU && p->dtype == e->dt && !e->lora) {
        *data = p->data;
        return 0;
    }
    int64_t n = dfm_tensor_numel(p);
    dfm_tensor h = {0}, f = {0};
    int rc = 0;
    const dfm_tensor *src = p;
    if (p->device != DFM_CPU) {
        if ((rc = dfm_tensor_copy(&h, p, DFM_CPU))) return rc;
        src = &h;
    }
    if ((rc = dfm_tensor_alloc(&f, DFM_F32, DFM_CPU, p->ndim, p->shape)) ||
        (rc = dfm_convert_floats(f.data, DFM_F32, src->data, src->dtype, (size_t)n)))
        goto out;
    if (e->lora) { /* W += scale * (B A), PEFT's get_delta_weight then merge */
        const dfm_linear *l = e->lora;
        dfm_tensor a = {0}, b = {0}, d = {0};
        int64_t sd[2] = {l->out, l->in};
        if (f.ndim != 2 || f.shape[0] != l->out || f.shape[1] != l->in) {
            rc = dfm_fail(DFM_E_ARG, "'%s': weight shape does not match its adapter", e->name);
            goto out;
        }
        dfm_compute cc = {DFM_F32, NULL};
        if (!(rc = dfm_tensor_copy(&a, &l->lora_a, DFM_CPU)) && !(rc = dfm_tensor_copy(&b, &l->lora_b, DFM_CPU)) &&
            !(rc = dfm_tensor_alloc(&d, DFM_F32, DFM_CPU, 2, sd)) && !(rc = dfm_op_matmul(&cc, &b, 0, &a, 0, NULL, 0.0f, &d))) {
            float *w = f.data, s = l->scale;
            const float *dv = d.data;
            for (int64_t k = 0; k < n; k++) w[k] += dv[k] * s;
        }
        dfm_tensor_free(&a), dfm_tensor_free(&b), dfm_tensor_free(&d);
        if (rc) goto out;
    }
    if (e->dt == DFM_F32) {
        e->owned = f.data;
        f.owned = 0, f.data = NULL;
    } else {
        if (!(e->owned = dfm_malloc(e->nbytes))) {
            rc = DFM_E_NOMEM;
            goto out;
        }
        rc = dfm_convert_floats(e->owned, e->dt, f.data, DFM_F32, (size_t)n);
    }
    *data = e->owned;
out:
    dfm_tensor_free(&h), dfm_tensor_free(&f);
    return rc;
}

static void release(item_t *it, int n)
{
    for (int i = 0; i < n; i++) free(it[i].owned), it[i].owned = NULL;
}

/* Write items [0, n) as one safetensors file at path with names[i] (NULL: the items' names). */
static int write_file(const char *path, item_t *it, int n, char *const *names)
{
    dfm_st_entry *e = dfm_calloc((size_t)(n ? n : 1), sizeof *e);
    if (!e) return DFM_E_NOMEM;
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        e[i].name = names ? names[i] : it[i].name, e[i].dtype = it[i].dt, e[i].ndim = it[i].ndim;
        memcpy(e[i].shape, it[i].shape, sizeof it[i].shape);
        rc = materialize(&it[i], &e[i].data);
    }
    if (!rc) rc = dfm_st_write(path, e, n, "{\"format\":\"pt\"}");
    release(it, n);
    free(e);
    return rc;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return dfm_fail(DFM_E_IO, "cannot open '%s': %s", dir, strerror(errno));
    int r = fsync(fd);
    int e = errno;
    close(fd);
    return r ? dfm_fail(DFM_E_IO, "cannot sync '%s': %s", dir, strerror(e)) : 0;
}

/* ---- diffusers directory -------------------------------------------------------------------- */

/* Python's repr of a float read as f32: the shortest %g that reads back as the same f32 (1e-06,
 * 0.001), with ".0" when it looks like an integer. */
static void py_float(char *out, size_t n, float v)
{
    for (int p = 1; p <= 9; p++) {
        snprintf(out, n, "%.*g", p, (double)v);
        if (strtof(out, NULL) == v) break;
    }
    if (!strpbrk(out, ".en")) strncat(out, ".0", n - strlen(out) - 1);
}

/* config.json as diffusers' to_json_string writes it: json.dumps(indent=2, sort_keys=True) + "\n",
 * _class_name and _diffusers_version first (they sort first), every register_to_config field. */
static int config_json(dfm_buf *b, const dfm_wan_transformer_config *c)
{
    char eps[32];
    py_float(eps, sizeof eps, c->eps);
    return dfm_buf_printf(b,
                          "{\n  \"_class_name\": \"WanTransformer3DModel\",\n  \"_diffusers_version\": \"%s\",\n"
                          "  \"added_kv_proj_dim\": null,\n  \"attention_head_dim\": %d,\n  \"cross_attn_norm\": %s,\n"
                          "  \"eps\": %s,\n  \"ffn_dim\": %d,\n  \"freq_dim\": %d,\n  \"image_dim\": null,\n"
                          "  \"in_channels\": %d,\n  \"num_attention_heads\": %d,\n  \"num_layers\": %d,\n"
                          "  \"out_channels\": %d,\n  \"patch_size\": [\n    %d,\n    %d,\n    %d\n  ],\n"
                          "  \"pos_embed_seq_len\": null,\n  \"qk_norm\": \"rms_norm_across_heads\",\n"
                          "  \"rope_max_seq_len\": %d,\n  \"text_dim\": %d\n}\n",
                          DFM_WAN_DIFFUSERS_VERSION, c->head_dim, c->cross_attn_norm ? "true" : "false", eps, c->ffn_dim,
                          c->freq_dim, c->in_channels, c->heads, c->num_layers, c->out_channels, c->patch[0], c->patch[1],
                          c->patch[2], c->rope_max_seq_len, c->text_dim);
}

typedef struct {
    const char *name, *file;
} entry_t;

static int cmp_entry(const void *x, const void *y) { return strcmp(((const entry_t *)x)->name, ((const entry_t *)y)->name); }

/* "diffusion_pytorch_model-00001-of-00003.safetensors": diffusers' _REGEX_SHARD (.*?)-\d{5}-of-\d{5} */
static int is_shard_name(const char *f)
{
    const char *p = "diffusion_pytorch_model-";
    size_t k = strlen(p);
    if (strncmp(f, p, k) || strlen(f) != k + 14 + strlen(".safetensors") || strcmp(f + k + 14, ".safetensors")) return 0;
    for (int i = 0; i < 14; i++) {
        char ch = f[k + i];
        if (i >= 5 && i < 9 ? ch != "-of-"[i - 5] : !(ch >= '0' && ch <= '9')) return 0;
    }
    return 1;
}

/* A previous save's weight files that this one does not write: shards (as diffusers removes
 * them), and the single file or index of the other layout (diffusers leaves those; a directory
 * holding both is ambiguous to every loader). */
static int clean_previous(const char *dir, char *const *keep, int nkeep, int sharded)
{
    DIR *d = opendir(dir);
    if (!d) return dfm_fail(DFM_E_IO, "cannot read '%s': %s", dir, strerror(errno));
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d)) && !rc) {
        const char *f = de->d_name;
        int stale = is_shard_name(f) || (sharded && !strcmp(f, "diffusion_pytorch_model.safetensors")) ||
                    (!sharded && !strcmp(f, "diffusion_pytorch_model.safetensors.index.json"));
        for (int i = 0; stale && i < nkeep; i++)
            if (!strcmp(f, keep[i])) stale = 0;
        if (!stale) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, f);
        if (unlink(path) && errno != ENOENT) rc = dfm_fail(DFM_E_IO, "cannot remove '%s': %s", path, strerror(errno));
    }
    closedir(d);
    return rc;
}

/* huggingface_hub's split, in state_dict order: a tensor over the limit goes alone into a shard
 * of its own, appended at once (so before the shard still being filled); otherwise the current
 * shard is closed when the next tensor would take it over the limit. shard_of[i]: item i's shard
 * (0-based, the file order); returns the number of shards; *total: the bytes of all tensors. */
static int split(const item_t *it, int n, uint64_t max, int *shard_of, uint64_t *total)
{
    int nshards = 0, open = 0;
    uint64_t cur = 0;
    *total = 0;
    for (int i = 0; i < n; i++) {
        uint64_t sz = it[i].nbytes;
        *total += sz;
        if (sz > max) {
            shard_of[i] = nshards++;
            continue;
        }
        if (open && cur + sz > max) {
            for (int k = 0; k < i; k++)
                if (shard_of[k] == -1) shard_of[k] = nshards;
            nshards++, open = 0, cur = 0;
        }
        shard_of[i] = -1, open++, cur += sz;
    }
    if (open) {
        for (int k = 0; k < n; k++)
            if (shard_of[k] == -1) shard_of[k] = nshards;
        nshards++;
    }
    return nshards;
}

int dfm_wan_transformer_save(dfm_wan_transformer *m, const char *dir, dfm_dtype dtype, uint64_t max_shard_bytes, int merge_lora)
{
    if (!m || !dir || !*dir) return dfm_fail(DFM_E_ARG, "Wan transformer save: no model or directory");
    if (dtype != DFM_F32 && dtype != DFM_BF16)
        return dfm_fail(DFM_E_ARG, "Wan transformer save '%s': dtype %s (F32 or BF16)", dir, dfm_dtype_name(dtype));
    if (!max_shard_bytes) max_shard_bytes = DFM_WAN_SAVE_MAX_SHARD;
    char what[4200];
    snprintf(what, sizeof what, "Wan transformer save '%s'", dir);
    item_t *it = NULL;
    int n = 0, nshards = 0, rc = plan(m, dtype, merge_lora, what, &it, &n);
    uint64_t total = 0;
    if (rc) return rc;
    int *first = dfm_calloc((size_t)n + 2, sizeof *first); /* shard s holds items [first[s], first[s+1]) */
    char **files = NULL;
    dfm_buf idx = {0}, cfg = {0};
    char path[4400];
    if (!first) {
        rc = DFM_E_NOMEM;
        goto out;
    }
    /* group the items by shard, keeping their order within a shard */
    {
        int *shard_of = dfm_calloc((size_t)(n ? n : 1), sizeof *shard_of);
        item_t *sorted = dfm_calloc((size_t)(n ? n : 1), sizeof *sorted);
        if (!shard_of || !sorted) {
            free(shard_of), free(sorted);
            rc = DFM_E_NOMEM;
            goto out;
        }
        nshards = split(it, n, max_shard_bytes, shard_of, &total);
        int k = 0;
        for (int s = 0; s < nshards; s++) {
            first[s] = k;
            for (int i = 0; i < n; i++)
                if (shard_of[i] == s) sorted[k++] = it[i];
        }
        first[nshards] = k;
        free(shard_of), free(it);
        it = sorted;
    }
    if (!nshards) first[0] = first[1] = 0, nshards = 1; /* a model without parameters: one empty file */

    if (mkdir(dir, 0755) && errno != EEXIST) {
        rc = dfm_fail(DFM_E_IO, "%s: cannot create the directory: %s", what, strerror(errno));
        goto out;
    }
    struct stat st;
    if (stat(dir, &st) || !S_ISDIR(st.st_mode)) {
        rc = dfm_fail(DFM_E_IO, "%s: not a directory", what);
        goto out;
    }
    files = dfm_calloc((size_t)nshards, sizeof *files);
    if (!files) {
        rc = DFM_E_NOMEM;
        goto out;
    }
    for (int s = 0; s < nshards; s++) {
        char f[80];
        if (nshards == 1)
            snprintf(f, sizeof f, "diffusion_pytorch_model.safetensors");
        else
            snprintf(f, sizeof f, "diffusion_pytorch_model-%05d-of-%05d.safetensors", s + 1, nshards);
        if (!(files[s] = dfm_strdup(f))) {
            rc = DFM_E_NOMEM;
            goto out;
        }
    }
    for (int s = 0; s < nshards && !rc; s++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[s]);
        rc = write_file(path, it + first[s], first[s + 1] - first[s], NULL);
    }
    if (!rc) rc = clean_previous(dir, files, nshards, nshards > 1);
    if (!rc && nshards > 1) { /* the index: json.dumps(indent=2, sort_keys=True) + "\n" */
        entry_t *w = dfm_calloc((size_t)n, sizeof *w);
        if (!w) rc = DFM_E_NOMEM;
        for (int s = 0; !rc && s < nshards; s++)
            for (int i = first[s]; i < first[s + 1]; i++) w[i] = (entry_t){it[i].name, files[s]};
        if (!rc) {
            qsort(w, (size_t)n, sizeof *w, cmp_entry);
            rc = dfm_buf_printf(&idx, "{\n  \"metadata\": {\n    \"total_size\": %llu\n  },\n  \"weight_map\": {",
                                (unsigned long long)total);
        }
        for (int i = 0; !rc && i < n; i++) rc = dfm_buf_printf(&idx, "%s\n    \"%s\": \"%s\"", i ? "," : "", w[i].name, w[i].file);
        if (!rc) rc = dfm_buf_printf(&idx, "\n  }\n}\n");
        if (!rc) {
            snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors.index.json", dir);
            rc = dfm_write_file_atomic(path, idx.data, idx.len);
        }
        free(w);
    }
    if (!rc) rc = config_json(&cfg, dfm_wan_transformer_get_config(m));
    if (!rc) {
        snprintf(path, sizeof path, "%s/config.json", dir);
        rc = dfm_write_file_atomic(path, cfg.data, cfg.len);
    }
    if (!rc) rc = fsync_dir(dir);
out:
    if (rc) dfm_fail_ctx(rc, "%s", what);
    for (int s = 0; files && s < nshards; s++) free(files[s]);
    free(files), free(first), free(it);
    dfm_buf_free(&idx), dfm_buf_free(&cfg);
    return rc;
}

/* ---- original Wan names --------------------------------------------------------------------- */

int dfm_wan_transformer_save_original(dfm_wan_transformer *m, const char *path, dfm_dtype dtype, const char *prefix,
                                      int merge_lora)
{
    if (!m || !path || !*path) return dfm_fail(DFM_E_ARG, "Wan transformer save: no model or path");
    if (dtype != DFM_F32 && dtype != DFM_BF16)
        return dfm_fail(DFM_E_ARG, "Wan transformer save '%s': dtype %s (F32 or BF16)", path, dfm_dtype_name(dtype));
    if (!prefix) prefix = "";
    char what[4200];
    snprintf(what, sizeof what, "Wan transformer save '%s'", path);
    item_t *it = NULL;
    int n = 0, rc = plan(m, dtype, merge_lora, what, &it, &n);
    if (rc) return rc;
    char **names = dfm_calloc((size_t)(n ? n : 1), sizeof *names);
    if (!names) rc = DFM_E_NOMEM;
    for (int i = 0; i < n && !rc; i++) {
        char *o = NULL;
        if ((rc = dfm_wan_transformer_original_name(it[i].name, &o))) break;
        size_t len = strlen(prefix) + strlen(o) + 1;
        if ((names[i] = dfm_malloc(len))) snprintf(names[i], len, "%s%s", prefix, o);
        else rc = DFM_E_NOMEM;
        free(o);
    }
    if (!rc) rc = write_file(path, it, n, names);
    if (rc) dfm_fail_ctx(rc, "%s", what);
    for (int i = 0; names && i < n; i++) free(names[i]);
    free(names), free(it);
    return rc;
}
