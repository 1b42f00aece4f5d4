/* transformer.c — the Wan 2.1 transformer (transformer.h): config, loading, forward, backward.
 * ref: diffusers models/transformers/transformer_wan.py (WanTransformer3DModel.forward,
 *      WanTransformerBlock.forward, WanTimeTextImageEmbedding, WanRotaryPosEmbed) and
 *      embeddings.py get_timestep_embedding; reference/wan.md 1.2-1.4 has the op order.
 *
 * Activations are token rows [B * N, D] (batch-major, token n = (f * H' + i) * W' + j), viewed as
 * [B, N, D] by the modulation ops. The conditioning vectors of a block are e = scale_shift_table +
 * time_proj(silu(temb)) [B, 6, D] (chunks: shift, scale, gate, c_shift, c_scale, c_gate); the
 * output head's are scale_shift_table + temb [B, 2, D] (shift, scale).
 * Not here: the sampler, the trainer, LoRA files (lora.c).
 */
#include "models/wan/transformer.h"
#include "base/buf.h"
#include "base/error.h"
#include "cpu/rope.h"
#include "io/hfmodel.h"
#include "models/wan/names.h"
#include "models/weights.h"
#include "nn/attention.h"
#include "nn/embed.h"
#include "nn/linear.h"
#include "nn/mlp.h"
#include "nn/norm.h"
#include "tensor/ops.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- the model ------------------------------------------------------------------------------ */

typedef struct {
    dfm_tensor sst; /* scale_shift_table [1, 6, D] F32 */
    dfm_layer_norm norm1, norm2, norm3;
    dfm_attention attn1, attn2;
    dfm_mlp ffn;
} block_t;

typedef struct {
    dfm_tensor sst, norm2_w, norm2_b;
    dfm_attention_grads attn1, attn2;
    dfm_mlp_grads ffn;
} block_grads;

typedef struct {
    char *name;
    dfm_tensor *p, *g;
    int block;    /* blocks.N.*: N; else -1 */
    int released; /* g's storage freed by dfm_wan_transformer_release_grads (shape kept, data NULL) */
} param_t;

struct dfm_wan_transformer {
    dfm_wan_transformer_config cfg;
    dfm_wan_transformer_opts opts;
    dfm_compute cc;        /* the blocks, text embedder, projections */
    dfm_compute cc_time;   /* the time embedder (kept in f32) */
    dfm_weights *w;        /* kept open: mapped views point into it */
    dfm_wan_grads_ready_fn grads_ready; /* backward: after each block's gradients (NULL: none) */
    void *grads_ready_ctx;
    dfm_linear patch, t1, t2, tproj, x1, x2, proj_out;
    dfm_tensor sst;        /* [1, 2, D] */
    dfm_layer_norm norm_out;
    block_t *blocks;
    /* gradients (data NULL: not trained) */
    dfm_linear_grads g_patch, g_t1, g_t2, g_tproj, g_x1, g_x2, g_proj_out;
    dfm_tensor g_sst;
    block_grads *gb;
    param_t *params;
    int nparams, cap;
    size_t owned, mapped;
};

/* ---- config --------------------------------------------------------------------------------- */

static int read_config(dfm_wan_transformer_config *c, const dfm_hf_config *hc, int original)
{
    int64_t v[10];
    int n = 0, rc;
    int64_t patch[3] = {1, 2, 2};
    double eps = 1e-6;
    memset(c, 0, sizeof *c);
    cJSON *j = hc->json;
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(j, "patch_size");
    if (ps && !cJSON_IsNull(ps) && (rc = dfm_hf_int_array_range(hc, "patch_size", 0, 1, 64, patch, 3, &n))) return rc;
    if (ps && !cJSON_IsNull(ps) && n != 3) return dfm_fail(DFM_E_FORMAT, "%s: patch_size must have 3 entries", hc->path);
    if (original) {
        const char *mt = NULL;
        if ((rc = dfm_hf_str(hc, "model_type", 0, "t2v", &mt))) return rc;
        if (strcmp(mt, "t2v"))
            return dfm_fail(DFM_E_UNSUPPORTED, "%s: model_type '%s' (only text-to-video 't2v' is supported)", hc->path, mt);
        if ((rc = dfm_hf_int_range(hc, "dim", 1, 0, 1, 1 << 16, &v[0])) ||
            (rc = dfm_hf_int_range(hc, "num_heads", 1, 0, 1, 1024, &v[1])) ||
            (rc = dfm_hf_int_range(hc, "in_dim", 0, 16, 1, 4096, &v[2])) ||
            (rc = dfm_hf_int_range(hc, "out_dim", 0, 16, 1, 4096, &v[3])) ||
            (rc = dfm_hf_int_range(hc, "text_dim", 0, 4096, 1, 1 << 16, &v[4])) ||
            (rc = dfm_hf_int_range(hc, "freq_dim", 0, 256, 2, 1 << 16, &v[5])) ||
            (rc = dfm_hf_int_range(hc, "ffn_dim", 1, 0, 1, 1 << 20, &v[6])) ||
            (rc = dfm_hf_int_range(hc, "num_layers", 1, 0, 0, 4096, &v[7])) ||
            (rc = dfm_hf_float(hc, "eps", 0, 1e-6, &eps)))
            return rc;
        if (v[0] % v[1]) return dfm_fail(DFM_E_FORMAT, "%s: dim %lld is not a multiple of num_heads %lld", hc->path, (long long)v[0], (long long)v[1]);
        c->heads = (int)v[1], c->head_dim = (int)(v[0] / v[1]);
        int can = 1;
        if ((rc = dfm_hf_bool(hc, "cross_attn_norm", 0, 1, &can))) return rc;
        c->cross_attn_norm = can;
        c->rope_max_seq_len = 1024;
    } else {
        const char *keys[] = {"image_dim", "added_kv_proj_dim", "pos_embed_seq_len"};
        for (int i = 0; i < 3; i++) {
            const cJSON *it = cJSON_GetObjectItemCaseSensitive(j, keys[i]);
            if (it && !cJSON_IsNull(it))
                return dfm_fail(DFM_E_UNSUPPORTED, "%s: %s is set: an image-to-video model (only text-to-video is supported)",
                                hc->path, keys[i]);
        }
        if ((rc = dfm_hf_int_range(hc, "num_attention_heads", 0, 40, 1, 1024, &v[1])) ||
            (rc = dfm_hf_int_range(hc, "attention_head_dim", 0, 128, 2, 4096, &v[0])) ||
            (rc = dfm_hf_int_range(hc, "in_channels", 0, 16, 1, 4096, &v[2])) ||
            (rc = dfm_hf_int_range(hc, "out_channels", 0, 16, 1, 4096, &v[3])) ||
            (rc = dfm_hf_int_range(hc, "text_dim", 0, 512, 1, 1 << 16, &v[4])) ||
            (rc = dfm_hf_int_range(hc, "freq_dim", 0, 256, 2, 1 << 16, &v[5])) ||
            (rc = dfm_hf_int_range(hc, "ffn_dim", 0, 13824, 1, 1 << 20, &v[6])) ||
            (rc = dfm_hf_int_range(hc, "num_layers", 0, 40, 0, 4096, &v[7])) ||
            (rc = dfm_hf_int_range(hc, "rope_max_seq_len", 0, 1024, 1, 1 << 20, &v[8])) ||
            (rc = dfm_hf_float(hc, "eps", 0, 1e-6, &eps)))
            return rc;
        int can = 1;
        if ((rc = dfm_hf_bool(hc, "cross_attn_norm", 0, 1, &can))) return rc;
        c->heads = (int)v[1], c->head_dim = (int)v[0], c->cross_attn_norm = can, c->rope_max_seq_len = (int)v[8];
        const cJSON *qk = cJSON_GetObjectItemCaseSensitive(j, "qk_norm");
        if (qk && cJSON_IsString(qk) && strcmp(qk->valuestring, "rms_norm_across_heads"))
            return dfm_fail(DFM_E_UNSUPPORTED, "%s: qk_norm '%s' (only 'rms_norm_across_heads')", hc->path, qk->valuestring);
    }
    if ((int64_t)c->heads * c->head_dim > (1 << 16)) return dfm_fail(DFM_E_FORMAT, "%s: heads x head_dim over 65536", hc->path);
    c->dim = c->heads * c->head_dim;
    c->in_channels = (int)v[2], c->out_channels = (int)v[3], c->text_dim = (int)v[4], c->freq_dim = (int)v[5];
    c->ffn_dim = (int)v[6], c->num_layers = (int)v[7], c->eps = (float)eps;
    for (int i = 0; i < 3; i++) c->patch[i] = (int)patch[i];
    if (c->freq_dim % 2) return dfm_fail(DFM_E_FORMAT, "%s: freq_dim %d must be even", hc->path, c->freq_dim);
    if (c->head_dim % 2 || c->head_dim < 6)
        return dfm_fail(DFM_E_FORMAT, "%s: head dim %d must be even and at least 6 (three RoPE axes)", hc->path, c->head_dim);
    if (!(eps >= 0 && eps < 1)) return dfm_fail(DFM_E_FORMAT, "%s: eps %g out of range", hc->path, eps);
    return 0;
}

int dfm_wan_text_pad(const dfm_tensor *const *states, int n, int text_len, dfm_tensor *out)
{
    memset(out, 0, sizeof *out);
    if (!states || n < 1 || text_len < 1) return dfm_fail(DFM_E_ARG, "text padding: no states");
    const dfm_tensor *s0 = states[0];
    if (!s0 || s0->ndim != 2 || s0->dtype != DFM_F32)
        return dfm_fail(DFM_E_ARG, "text padding: the states must be F32 [L, D]");
    int64_t D = s0->shape[1], sh[3] = {n, text_len, D};
    for (int i = 0; i < n; i++) {
        const dfm_tensor *s = states[i];
        if (!s || s->ndim != 2 || s->dtype != DFM_F32 || s->shape[1] != D || s->device != s0->device)
            return dfm_fail(DFM_E_ARG, "text padding: states %d is not F32 [L, %lld] on the first one's device", i, (long long)D);
        if (s->shape[0] > text_len)
            return dfm_fail(DFM_E_ARG, "text padding: states %d has %lld rows, more than text_len %d (the pipeline "
                                       "truncates the tokens to %d first)", i, (long long)s->shape[0], text_len, text_len);
    }
    int rc = dfm_tensor_zeros(out, DFM_F32, s0->device, 3, sh);
    for (int i = 0; !rc && i < n; i++) {
        int64_t sv[2] = {states[i]->shape[0], D};
        dfm_tensor dst = dfm_tensor_view((float *)out->data + (int64_t)i * text_len * D, DFM_F32, out->device, 2, sv);
        if (sv[0]) rc = dfm_op_affine(states[i], 1.0f, 0.0f, &dst); /* x * 1 + 0: a copy on any device */
    }
    if (rc) dfm_tensor_free(out);
    return rc;
}

int dfm_wan_transformer_config_load(dfm_wan_transformer_config *cfg, const char *path, int *found)
{
    *found = 0;
    char cj[4096];
    snprintf(cj, sizeof cj, "%s/config.json", path);
    struct stat st;
    if (stat(cj, &st) != 0) return 0;
    dfm_hf_config hc;
    int rc = dfm_hf_config_load(&hc, path);
    if (rc) return rc;
    const char *cls = NULL;
    rc = dfm_hf_str(&hc, "_class_name", 0, "WanTransformer3DModel", &cls);
    if (!rc) {
        int original = !strcmp(cls, "WanModel");
        if (!original && strcmp(cls, "WanTransformer3DModel"))
            rc = dfm_fail(DFM_E_UNSUPPORTED, "%s: _class_name '%s' is not a Wan transformer", hc.path, cls);
        else if (!(rc = read_config(cfg, &hc, original)))
            *found = 1;
    }
    dfm_hf_config_free(&hc);
    return rc;
}

/* No config.json (ComfyUI's single file): the sizes from the tensor shapes. */
static int infer_config(dfm_wan_transformer_config *c, dfm_weights *w, int heads)
{
    const dfm_st_tensor *t;
    memset(c, 0, sizeof *c);
    const char *need[] = {"patch_embedding.weight", "condition_embedder.text_embedder.linear_1.weight",
                          "condition_embedder.time_embedder.linear_1.weight", "proj_out.weight", "blocks.0.ffn.net.0.proj.weight"};
    const dfm_st_tensor *ts[5];
    for (int i = 0; i < 5; i++) {
        if (!dfm_weights_has(w, need[i]))
            return dfm_fail(DFM_E_FORMAT, "no config.json and no '%s' to infer the sizes from (%s)", need[i],
                            dfm_weights_naming(w));
        /* find with the file's own shape */
        int n = dfm_weights_count(w);
        ts[i] = NULL;
        for (int k = 0; k < n; k++) {
            const char *fname;
            if (!strcmp(dfm_weights_name_at(w, k, &fname), need[i])) ts[i] = dfm_st_find(dfm_weights_st(w), fname);
        }
        if (!ts[i]) return dfm_fail(DFM_E_FORMAT, "tensor '%s' not found", need[i]);
    }
    t = ts[0];
    if (t->ndim != 5) return dfm_fail(DFM_E_FORMAT, "patch_embedding.weight must be 5-D [dim, in, pt, ph, pw]");
    c->dim = (int)t->shape[0], c->in_channels = (int)t->shape[1];
    for (int i = 0; i < 3; i++) c->patch[i] = (int)t->shape[2 + i];
    c->text_dim = (int)ts[1]->shape[1], c->freq_dim = (int)ts[2]->shape[1], c->ffn_dim = (int)ts[4]->shape[0];
    int64_t P = (int64_t)c->patch[0] * c->patch[1] * c->patch[2];
    if (ts[3]->ndim != 2 || ts[3]->shape[0] % P) return dfm_fail(DFM_E_FORMAT, "proj_out.weight's rows are not a multiple of the patch");
    c->out_channels = (int)(ts[3]->shape[0] / P);
    int layers = 0;
    for (;; layers++) {
        char nm[64];
        snprintf(nm, sizeof nm, "blocks.%d.scale_shift_table", layers);
        if (!dfm_weights_has(w, nm)) break;
    }
    c->num_layers = layers;
    c->heads = heads ? heads : c->dim % 128 == 0 ? c->dim / 128 : 0;
    if (!c->heads || c->dim % c->heads)
        return dfm_fail(DFM_E_FORMAT, "no config.json: cannot infer the number of heads of dim %d (released Wan models "
                                      "have head_dim 128); give it (--heads)", c->dim);
    c->head_dim = c->dim / c->heads;
    c->eps = 1e-6f, c->cross_attn_norm = 1, c->rope_max_seq_len = 1024;
    return 0;
}

/* ---- loading -------------------------------------------------------------------------------- */

static int add_param(dfm_wan_transformer *m, const char *name, dfm_tensor *p, dfm_tensor *g)
{
    if (m->nparams == m->cap) {
        int cap = m->cap ? 2 * m->cap : 256;
        param_t *np = realloc(m->params, (size_t)cap * sizeof *np);
        if (!np) return dfm_fail(DFM_E_NOMEM, "out of memory");
        m->params = np, m->cap = cap;
    }
    char *nm = dfm_strdup(name);
    if (!nm) return DFM_E_NOMEM;
    int block = -1;
    if (!strncmp(name, "blocks.", 7)) block = atoi(name + 7);
    m->params[m->nparams++] = (param_t){nm, p, g, block, 0};
    return 0;
}

int dfm_wan_transformer_release_grads(dfm_wan_transformer *m, int block)
{
    for (int i = 0; i < m->nparams; i++) {
        param_t *q = &m->params[i];
        if (q->block != block || !q->g || !q->g->data) continue;
        dfm_tensor keep = *q->g;
        dfm_tensor_free(q->g);
        *q->g = keep;
        q->g->data = NULL, q->g->owned = 0;
        q->released = 1;
    }
    return 0;
}

/* Before block i's backward: its released gradients allocated again, zeros. */
static int regrow_grads(dfm_wan_transformer *m, int block)
{
    for (int i = 0; i < m->nparams; i++) {
        param_t *q = &m->params[i];
        if (q->block != block || !q->released) continue;
        dfm_tensor t = *q->g;
        int rc = dfm_tensor_zeros(q->g, t.dtype, t.device, t.ndim, t.shape);
        if (rc) {
            *q->g = t;
            return dfm_fail_ctx(rc, "the gradient of '%s'", q->name);
        }
        q->released = 0;
    }
    return 0;
}

/* A gradient like p (F32 zeros) when the model trains every parameter. */
static int grad_for(dfm_wan_transformer *m, const dfm_tensor *p, dfm_tensor *g)
{
    if (!m->opts.trainable) return 0;
    return dfm_tensor_zeros(g, DFM_F32, p->device, p->ndim, p->shape);
}

/* Load `name` [shape] as the model keeps it: trainable -> owned F32; else the requested dtype
 * (keep-f32 modules F32), in place when possible. */
static int load_t(dfm_wan_transformer *m, const char *name, int ndim, const int64_t *shape, dfm_dtype dt, dfm_tensor *out,
                  dfm_tensor *grad)
{
    int flags = m->opts.trainable ? 0 : DFM_WEIGHTS_MAP;
    int rc = dfm_weights_load(m->w, name, ndim, shape, m->opts.trainable ? DFM_F32 : dt, m->opts.device, flags, out);
    if (!rc) rc = grad_for(m, out, grad);
    if (!rc) rc = add_param(m, name, out, grad);
    return rc;
}

/* linear `prefix`.weight [out, in] (+ .bias [out]) into l, with its gradients */
static int load_linear(dfm_wan_transformer *m, const char *prefix, int64_t out, int64_t in, dfm_linear *l,
                       dfm_linear_grads *g)
{
    char nw[256], nb[256];
    snprintf(nw, sizeof nw, "%s.weight", prefix);
    snprintf(nb, sizeof nb, "%s.bias", prefix);
    int64_t sw[2] = {out, in}, sb[1] = {out};
    dfm_tensor w = {0}, b = {0};
    int rc = load_t(m, nw, 2, sw, m->opts.weights, &w, &g->w);
    if (!rc) rc = load_t(m, nb, 1, sb, m->opts.weights, &b, &g->b);
    if (!rc) rc = dfm_linear_init(l, &w, &b);
    if (rc) {
        dfm_tensor_free(&w), dfm_tensor_free(&b);
        return rc;
    }
    l->owns_w = w.owned, l->owns_b = b.owned;
    /* the registry points at the layer's copies */
    m->params[m->nparams - 2].p = &l->w;
    m->params[m->nparams - 1].p = &l->b;
    return 0;
}

static int load_vec(dfm_wan_transformer *m, const char *name, int ndim, const int64_t *shape, dfm_tensor *out,
                    dfm_tensor *grad)
{
    return load_t(m, name, ndim, shape, m->opts.weights, out, grad);
}

static int load_attention(dfm_wan_transformer *m, const char *prefix, int64_t kv_in, dfm_attention *a,
                          dfm_attention_grads *g)
{
    const dfm_wan_transformer_config *c = &m->cfg;
    int64_t D = c->dim, s1[1] = {D};
    char nm[256];
    a->heads = c->heads, a->dim = D;
    const char *lin[4] = {"to_q", "to_k", "to_v", "to_out.0"};
    dfm_linear *ls[4] = {&a->q, &a->k, &a->v, &a->o};
    dfm_linear_grads *gs[4] = {&g->q, &g->k, &g->v, &g->o};
    int64_t ins[4] = {D, kv_in, kv_in, D};
    int rc;
    for (int i = 0; i < 4; i++) {
        snprintf(nm, sizeof nm, "%s.%s", prefix, lin[i]);
        if ((rc = load_linear(m, nm, D, ins[i], ls[i], gs[i]))) return rc;
    }
    a->norm_q.eps = a->norm_k.eps = c->eps;
    snprintf(nm, sizeof nm, "%s.norm_q.weight", prefix);
    if ((rc = load_vec(m, nm, 1, s1, &a->norm_q.w, &g->norm_q))) return rc;
    snprintf(nm, sizeof nm, "%s.norm_k.weight", prefix);
    return load_vec(m, nm, 1, s1, &a->norm_k.w, &g->norm_k);
}

static int load_block(dfm_wan_transformer *m, int i)
{
    const dfm_wan_transformer_config *c = &m->cfg;
    block_t *b = &m->blocks[i];
    block_grads *g = &m->gb[i];
    int64_t D = c->dim, s1[1] = {D}, s6[3] = {1, 6, D};
    char p[64], nm[256];
    snprintf(p, sizeof p, "blocks.%d", i);
    int rc;
    snprintf(nm, sizeof nm, "%s.scale_shift_table", p);
    if ((rc = load_vec(m, nm, 3, s6, &b->sst, &g->sst))) return rc;
    b->norm1.eps = b->norm2.eps = b->norm3.eps = c->eps;
    if (c->cross_attn_norm) {
        snprintf(nm, sizeof nm, "%s.norm2.weight", p);
        if ((rc = load_vec(m, nm, 1, s1, &b->norm2.w, &g->norm2_w))) return rc;
        snprintf(nm, sizeof nm, "%s.norm2.bias", p);
        if ((rc = load_vec(m, nm, 1, s1, &b->norm2.b, &g->norm2_b))) return rc;
    }
    snprintf(nm, sizeof nm, "%s.attn1", p);
    if ((rc = load_attention(m, nm, D, &b->attn1, &g->attn1))) return rc;
    snprintf(nm, sizeof nm, "%s.attn2", p);
    if ((rc = load_attention(m, nm, D, &b->attn2, &g->attn2))) return rc;
    snprintf(nm, sizeof nm, "%s.ffn.net.0.proj", p);
    if ((rc = load_linear(m, nm, c->ffn_dim, D, &b->ffn.fc1, &g->ffn.fc1))) return rc;
    snprintf(nm, sizeof nm, "%s.ffn.net.2", p);
    return load_linear(m, nm, D, c->ffn_dim, &b->ffn.fc2, &g->ffn.fc2);
}

static void free_lgrads(dfm_linear_grads *g)
{
    dfm_tensor_free(&g->w), dfm_tensor_free(&g->b), dfm_tensor_free(&g->lora_a), dfm_tensor_free(&g->lora_b);
}

static void free_agrads(dfm_attention_grads *g)
{
    free_lgrads(&g->q), free_lgrads(&g->k), free_lgrads(&g->v), free_lgrads(&g->o);
    dfm_tensor_free(&g->norm_q), dfm_tensor_free(&g->norm_k);
}

static void free_owned(dfm_tensor *t) { dfm_tensor_free(t); }

void dfm_wan_transformer_free(dfm_wan_transformer *m)
{
    if (!m) return;
    for (int i = 0; m->blocks && i < m->cfg.num_layers; i++) {
        block_t *b = &m->blocks[i];
        free_owned(&b->sst), free_owned(&b->norm2.w), free_owned(&b->norm2.b);
        free_owned(&b->attn1.norm_q.w), free_owned(&b->attn1.norm_k.w);
        free_owned(&b->attn2.norm_q.w), free_owned(&b->attn2.norm_k.w);
        dfm_attention_free(&b->attn1), dfm_attention_free(&b->attn2), dfm_mlp_free(&b->ffn);
        if (m->gb) {
            block_grads *g = &m->gb[i];
            dfm_tensor_free(&g->sst), dfm_tensor_free(&g->norm2_w), dfm_tensor_free(&g->norm2_b);
            free_agrads(&g->attn1), free_agrads(&g->attn2), free_lgrads(&g->ffn.fc1), free_lgrads(&g->ffn.fc2);
        }
    }
    free(m->blocks);
    free(m->gb);
    dfm_linear *ls[] = {&m->patch, &m->t1, &m->t2, &m->tproj, &m->x1, &m->x2, &m->proj_out};
    for (size_t i = 0; i < sizeof ls / sizeof ls[0]; i++) dfm_linear_free(ls[i]);
    dfm_linear_grads *gs[] = {&m->g_patch, &m->g_t1, &m->g_t2, &m->g_tproj, &m->g_x1, &m->g_x2, &m->g_proj_out};
    for (size_t i = 0; i < sizeof gs / sizeof gs[0]; i++) free_lgrads(gs[i]);
    free_owned(&m->sst);
    dfm_tensor_free(&m->g_sst);
    for (int i = 0; i < m->nparams; i++) free(m->params[i].name);
    free(m->params);
    dfm_weights_close(m->w);
    free(m);
}

static const char *const wan_classes[] = {"WanTransformer3DModel", "WanModel", NULL};

/* A .safetensors file path: its directory (for a config.json beside it) or NULL. */
static int is_file_path(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int dfm_wan_transformer_load(dfm_wan_transformer **out, const char *path, const dfm_wan_transformer_opts *o)
{
    *out = NULL;
    if (!o || (o->weights != DFM_F32 && o->weights != DFM_BF16) || (o->compute != DFM_F32 && o->compute != DFM_BF16))
        return dfm_fail(DFM_E_ARG, "Wan transformer: weights and compute must be F32 or BF16");
    if (o->trainable && o->weights != DFM_F32)
        return dfm_fail(DFM_E_ARG, "Wan transformer: full fine-tuning keeps F32 weights (BF16 is for a frozen base)");
    if (o->device != DFM_CPU && !dfm_device_available(o->device)) return DFM_E_UNSUPPORTED;
    char *dir = NULL;
    int rc = 0, found = 0;
    if (!is_file_path(path) && (rc = dfm_hf_component(path, "transformer", wan_classes, &dir))) return rc;
    dfm_wan_transformer *m = dfm_calloc(1, sizeof *m);
    if (!m) {
        free(dir);
        return DFM_E_NOMEM;
    }
    m->opts = *o;
    const char *where = dir ? dir : path;
    if ((rc = dfm_weights_open(&m->w, where, &dfm_wan_transformer_names))) goto fail;
    if (dir && (rc = dfm_wan_transformer_config_load(&m->cfg, dir, &found))) goto fail;
    if (found && o->heads && o->heads != m->cfg.heads) {
        rc = dfm_fail(DFM_E_ARG, "%d heads asked for, config.json says %d", o->heads, m->cfg.heads);
        goto fail;
    }
    if (!found && (rc = infer_config(&m->cfg, m->w, o->heads))) goto fail;
    const dfm_wan_transformer_config *c = &m->cfg;
    m->cc = (dfm_compute){o->compute, dfm_wan_transformer_names.keep_f32};
    m->cc_time = dfm_compute_for(&m->cc, "condition_embedder.time_embedder");
    int64_t D = c->dim, P = (int64_t)c->patch[0] * c->patch[1] * c->patch[2];
    m->blocks = dfm_calloc((size_t)(c->num_layers ? c->num_layers : 1), sizeof *m->blocks);
    m->gb = dfm_calloc((size_t)(c->num_layers ? c->num_layers : 1), sizeof *m->gb);
    if (!m->blocks || !m->gb) {
        rc = DFM_E_NOMEM;
        goto fail;
    }
    /* patch embedding: the Conv3d weight [D, C, pt, ph, pw] is the GEMM weight [D, C * P] */
    {
        int64_t s5[5] = {D, c->in_channels, c->patch[0], c->patch[1], c->patch[2]}, sb[1] = {D}, s2[2] = {D, c->in_channels * P};
        dfm_tensor w = {0}, b = {0};
        if ((rc = load_t(m, "patch_embedding.weight", 5, s5, o->weights, &w, &m->g_patch.w)) ||
            (rc = load_t(m, "patch_embedding.bias", 1, sb, o->weights, &b, &m->g_patch.b)))
            goto fail;
        if ((rc = dfm_tensor_reshape(&w, 2, s2)) || (m->g_patch.w.data && (rc = dfm_tensor_reshape(&m->g_patch.w, 2, s2))) ||
            (rc = dfm_linear_init(&m->patch, &w, &b)))
            goto fail;
        m->patch.owns_w = w.owned, m->patch.owns_b = b.owned;
        m->params[m->nparams - 2].p = &m->patch.w, m->params[m->nparams - 1].p = &m->patch.b;
    }
    int64_t s2[3] = {1, 2, D};
    if ((rc = load_linear(m, "condition_embedder.time_embedder.linear_1", D, c->freq_dim, &m->t1, &m->g_t1)) ||
        (rc = load_linear(m, "condition_embedder.time_embedder.linear_2", D, D, &m->t2, &m->g_t2)) ||
        (rc = load_linear(m, "condition_embedder.time_proj", 6 * D, D, &m->tproj, &m->g_tproj)) ||
        (rc = load_linear(m, "condition_embedder.text_embedder.linear_1", D, c->text_dim, &m->x1, &m->g_x1)) ||
        (rc = load_linear(m, "condition_embedder.text_embedder.linear_2", D, D, &m->x2, &m->g_x2)))
        goto fail;
    for (int i = 0; i < c->num_layers; i++)
        if ((rc = load_block(m, i))) goto fail;
    if ((rc = load_vec(m, "scale_shift_table", 3, s2, &m->sst, &m->g_sst)) ||
        (rc = load_linear(m, "proj_out", P * c->out_channels, D, &m->proj_out, &m->g_proj_out)))
        goto fail;
    m->norm_out.eps = c->eps;
    if ((rc = dfm_weights_finish(m->w, NULL))) goto fail;
    dfm_weights_memory(m->w, &m->owned, &m->mapped);
    if (!m->mapped) { /* every tensor is an owned copy: unmap the files now (their pages counted in RSS) */
        dfm_weights_close(m->w);
        m->w = NULL;
    }
    free(dir);
    *out = m;
    return 0;
fail:
    dfm_fail_ctx(rc, "Wan transformer '%s'", where);
    free(dir);
    dfm_wan_transformer_free(m);
    return rc;
}

const dfm_wan_transformer_config *dfm_wan_transformer_get_config(const dfm_wan_transformer *m) { return &m->cfg; }

void dfm_wan_transformer_memory(const dfm_wan_transformer *m, size_t *owned, size_t *mapped)
{
    if (owned) *owned = m->owned;
    if (mapped) *mapped = m->mapped;
}

/* Lay out one frozen linear for the CPU forward GEMM under bf16 compute; adds its bytes to *bytes. */
static int pack_one(const dfm_compute *cc, dfm_linear *l, const dfm_linear_grads *g, int drop, size_t *add,
                    size_t *sub, int *n)
{
    if (g->w.data || l->packed || l->w.device != DFM_CPU || !dfm_compute_is_bf16(cc)) return 0;
    int rc = dfm_linear_pack(l, DFM_BF16);
    if (rc) return rc;
    *add += dfm_packed_nbytes(l->packed);
    if (drop) {
        if (l->owns_w) *sub += dfm_tensor_nbytes(&l->w);
        dfm_linear_drop_weights(l);
    }
    (*n)++;
    return 0;
}

int dfm_wan_transformer_pack(dfm_wan_transformer *m, int drop_weights, int *count)
{
    size_t bytes = 0, dropped = 0;
    int n = 0, rc = 0;
    dfm_linear *top[] = {&m->patch, &m->t1, &m->t2, &m->tproj, &m->x1, &m->x2, &m->proj_out};
    dfm_linear_grads *gtop[] = {&m->g_patch, &m->g_t1, &m->g_t2, &m->g_tproj, &m->g_x1, &m->g_x2, &m->g_proj_out};
    for (int i = 0; i < 7 && !rc; i++)
        rc = pack_one(i == 1 || i == 2 ? &m->cc_time : &m->cc, top[i], gtop[i], drop_weights, &bytes, &dropped, &n);
    for (int bi = 0; bi < m->cfg.num_layers && !rc; bi++) {
        block_t *b = &m->blocks[bi];
        block_grads *g = &m->gb[bi];
        dfm_linear *ls[] = {&b->attn1.q, &b->attn1.k, &b->attn1.v, &b->attn1.o, &b->attn2.q, &b->attn2.k,
                            &b->attn2.v, &b->attn2.o, &b->ffn.fc1, &b->ffn.fc2};
        dfm_linear_grads *gs[] = {&g->attn1.q, &g->attn1.k, &g->attn1.v, &g->attn1.o, &g->attn2.q, &g->attn2.k,
                                  &g->attn2.v, &g->attn2.o, &g->ffn.fc1, &g->ffn.fc2};
        for (int i = 0; i < 10 && !rc; i++) rc = pack_one(&m->cc, ls[i], gs[i], drop_weights, &bytes, &dropped, &n);
    }
    m->owned += bytes - dropped;
    if (count) *count = n;
    return rc;
}

int dfm_wan_transformer_nparams(const dfm_wan_transformer *m) { return m->nparams; }
int dfm_wan_transformer_param_trained(const dfm_wan_transformer *m, int i)
{
    if (i < 0 || i >= m->nparams) return 0;
    const param_t *q = &m->params[i];
    return q->g && (q->g->data || q->released);
}

const char *dfm_wan_transformer_param(dfm_wan_transformer *m, int i, dfm_tensor **param, dfm_tensor **grad)
{
    if (i < 0 || i >= m->nparams) return NULL;
    if (param) *param = m->params[i].p;
    if (grad) *grad = m->params[i].g;
    return m->params[i].name;
}

int dfm_wan_transformer_zero_grads(dfm_wan_transformer *m)
{
    for (int i = 0; i < m->nparams; i++) {
        dfm_tensor *g = m->params[i].g;
        if (!g || !g->data) continue;
        int rc = dfm_tensor_zero(g);
        if (rc) return rc;
    }
    return 0;
}

/* ---- LoRA ----------------------------------------------------------------------------------- */

const char *const dfm_wan_lora_default_targets[] = {"to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2", NULL};

int dfm_wan_lora_target_match(const char *name, const char *const *targets)
{
    size_t n = strlen(name);
    for (const char *const *t = targets; *t; t++) {
        size_t k = strlen(*t);
        if (!strcmp(name, *t) || (n > k && name[n - k - 1] == '.' && !strcmp(name + n - k, *t))) return 1;
    }
    return 0;
}

static int lora_one(dfm_wan_transformer *m, const char *name, dfm_linear *l, dfm_linear_grads *g, int rank, float alpha,
                    float dropout, uint64_t seed, uint64_t stream, int *count)
{
    int rc = dfm_linear_lora_add(l, rank, alpha, dropout);
    if (rc) return rc;
    if (l->lora_a.device == DFM_CPU) {
        if ((rc = dfm_linear_lora_init(l, seed, stream))) return rc;
    } else { /* initialize on the CPU, then upload */
        dfm_linear tmp;
        if ((rc = dfm_linear_init(&tmp, &(dfm_tensor){.dtype = DFM_F32, .device = DFM_CPU, .ndim = 2, .shape = {l->out, l->in}}, NULL)) ||
            (rc = dfm_linear_lora_add(&tmp, rank, alpha, dropout)) || (rc = dfm_linear_lora_init(&tmp, seed, stream))) {
            dfm_linear_free(&tmp);
            return rc;
        }
        dfm_tensor a;
        rc = dfm_tensor_copy(&a, &tmp.lora_a, l->lora_a.device);
        dfm_linear_free(&tmp);
        if (rc) return rc;
        dfm_tensor_free(&l->lora_a);
        l->lora_a = a;
    }
    if ((rc = dfm_tensor_zeros(&g->lora_a, DFM_F32, l->lora_a.device, 2, l->lora_a.shape)) ||
        (rc = dfm_tensor_zeros(&g->lora_b, DFM_F32, l->lora_b.device, 2, l->lora_b.shape)))
        return rc;
    char nm[300];
    snprintf(nm, sizeof nm, "%s.lora_A.weight", name);
    if ((rc = add_param(m, nm, &l->lora_a, &g->lora_a))) return rc;
    snprintf(nm, sizeof nm, "%s.lora_B.weight", name);
    if ((rc = add_param(m, nm, &l->lora_b, &g->lora_b))) return rc;
    (*count)++;
    return 0;
}

int dfm_wan_transformer_lora_add(dfm_wan_transformer *m, const char *const *targets, int rank, float alpha, float dropout,
                                 uint64_t seed, int *count)
{
    if (!targets) targets = dfm_wan_lora_default_targets;
    int n = 0, rc = 0;
    uint64_t stream = 0;
    struct {
        const char *name;
        dfm_linear *l;
        dfm_linear_grads *g;
    } top[] = {{"patch_embedding", &m->patch, &m->g_patch},
               {"condition_embedder.time_embedder.linear_1", &m->t1, &m->g_t1},
               {"condition_embedder.time_embedder.linear_2", &m->t2, &m->g_t2},
               {"condition_embedder.time_proj", &m->tproj, &m->g_tproj},
               {"condition_embedder.text_embedder.linear_1", &m->x1, &m->g_x1},
               {"condition_embedder.text_embedder.linear_2", &m->x2, &m->g_x2},
               {"proj_out", &m->proj_out, &m->g_proj_out}};
    for (size_t i = 0; i < sizeof top / sizeof top[0] && !rc; i++, stream++)
        if (dfm_wan_lora_target_match(top[i].name, targets))
            rc = lora_one(m, top[i].name, top[i].l, top[i].g, rank, alpha, dropout, seed, stream, &n);
    for (int b = 0; b < m->cfg.num_layers && !rc; b++) {
        block_t *bl = &m->blocks[b];
        block_grads *g = &m->gb[b];
        const char *sub[10] = {"attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "attn2.to_q",
                               "attn2.to_k", "attn2.to_v", "attn2.to_out.0", "ffn.net.0.proj", "ffn.net.2"};
        dfm_linear *ls[10] = {&bl->attn1.q, &bl->attn1.k, &bl->attn1.v, &bl->attn1.o, &bl->attn2.q,
                              &bl->attn2.k, &bl->attn2.v, &bl->attn2.o, &bl->ffn.fc1, &bl->ffn.fc2};
        dfm_linear_grads *gs[10] = {&g->attn1.q, &g->attn1.k, &g->attn1.v, &g->attn1.o, &g->attn2.q,
                                    &g->attn2.k, &g->attn2.v, &g->attn2.o, &g->ffn.fc1, &g->ffn.fc2};
        for (int j = 0; j < 10 && !rc; j++, stream++) {
            char nm[128];
            snprintf(nm, sizeof nm, "blocks.%d.%s", b, sub[j]);
            if (dfm_wan_lora_target_match(nm, targets)) rc = lora_one(m, nm, ls[j], gs[j], rank, alpha, dropout, seed, stream, &n);
        }
    }
    if (count) *count = n;
    return rc;
}

/* ---- forward and backward ------------------------------------------------------------------- */

typedef struct {
    dfm_tensor xin;  /* the block's input [M, D] (owned by the caller's list: acts->h[i]) */
    dfm_tensor e;    /* [B, 6, D] conditioning */
    int full;        /* the tensors below are present */
    dfm_layer_norm_acts ln1, ln2, ln3;
    dfm_tensor n1, a1, y1, x1, n2, x2, n3, f, y3;
    dfm_attention_acts at1, at2;
    dfm_mlp_acts ff;
} block_acts;

struct dfm_wan_acts {
    int checkpoint;
    uint64_t seed;
    int64_t B, N, L, dims[5];
    dfm_tensor cos, sin;           /* RoPE tables [N, head_dim / 2] */
    dfm_tensor patches;            /* [M, C * P] */
    dfm_linear_acts pa;
    dfm_tensor sinus, t1o, t1s, temb, tembs, tproj; /* time: sinusoid, linear_1 out, silu, temb, silu(temb), proj */
    dfm_linear_acts t1a, t2a, tpa;
    dfm_tensor ctx2, x1o, x1g, ctxp; /* text: input rows, linear_1 out, gelu, projected context */
    dfm_linear_acts x1a, x2a;
    dfm_tensor *h;                 /* block inputs h[0..layers] (h[layers]: the head's input) */
    block_acts *blocks;
    dfm_tensor eo;                 /* head conditioning [B, 2, D] */
    dfm_layer_norm_acts lno;
    dfm_tensor no, mo;             /* norm_out output, modulated */
    dfm_linear_acts poa;
    int layers;
};

static int alloc2(dfm_tensor *t, dfm_device dev, int64_t r, int64_t c)
{
    int64_t s[2] = {r, c};
    return dfm_tensor_alloc(t, DFM_F32, dev, 2, s);
}

static dfm_tensor rows3(const dfm_tensor *t, int64_t b)
{
    int64_t s[3] = {b, t->shape[0] / b, t->shape[1]};
    return dfm_tensor_view(t->data, DFM_F32, t->device, 3, s);
}

static void block_acts_clear(block_acts *s)
{
    dfm_layer_norm_acts_free(&s->ln1), dfm_layer_norm_acts_free(&s->ln2), dfm_layer_norm_acts_free(&s->ln3);
    dfm_tensor *ts[] = {&s->n1, &s->a1, &s->y1, &s->x1, &s->n2, &s->x2, &s->n3, &s->f, &s->y3};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) dfm_tensor_free(ts[i]);
    dfm_attention_acts_free(&s->at1), dfm_attention_acts_free(&s->at2);
    dfm_mlp_acts_free(&s->ff);
    s->full = 0;
}

void dfm_wan_acts_free(dfm_wan_acts *a)
{
    if (!a) return;
    dfm_tensor *ts[] = {&a->cos, &a->sin, &a->patches, &a->sinus, &a->t1o, &a->t1s, &a->temb, &a->tembs, &a->tproj,
                        &a->x1o, &a->x1g, &a->ctxp, &a->eo, &a->no, &a->mo};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) dfm_tensor_free(ts[i]);
    dfm_linear_acts *ls[] = {&a->pa, &a->t1a, &a->t2a, &a->tpa, &a->x1a, &a->x2a, &a->poa};
    for (size_t i = 0; i < sizeof ls / sizeof ls[0]; i++) dfm_linear_acts_free(ls[i]);
    dfm_layer_norm_acts_free(&a->lno);
    for (int i = 0; a->blocks && i < a->layers; i++) {
        block_acts_clear(&a->blocks[i]);
        dfm_tensor_free(&a->blocks[i].e);
    }
    for (int i = 0; a->h && i <= a->layers; i++) dfm_tensor_free(&a->h[i]);
    free(a->blocks);
    free(a->h);
    free(a);
}

/* One block: x [M, D] -> out [M, D] (a new tensor allocated by the caller). s NULL: inference. */
/* The block without saved activations (sampling, eval, the recompute-free forward): the same ops
 * in the same order as block_forward, on three [M, D] buffers instead of ten — a and c reused as
 * soon as their value is consumed (the modulation in place), so a 480x832x81 CFG pair holds ~1.2 GB
 * of them instead of ~4 GB. The same bits. */
static int block_infer(const dfm_wan_transformer *m, int bi, const dfm_tensor *e, const dfm_tensor *x,
                       const dfm_tensor *ctxp, int64_t B, const dfm_tensor *cos, const dfm_tensor *sin, dfm_tensor *out,
                       uint64_t seed)
{
    const block_t *b = &m->blocks[bi];
    const dfm_compute *cc = &m->cc;
    int64_t M = x->shape[0], D = x->shape[1];
    dfm_device dev = x->device;
    dfm_tensor a = {0}, y = {0}, c = {0};
    int rc = alloc2(&a, dev, M, D);
    if (!rc) rc = alloc2(&y, dev, M, D);
    if (!rc) rc = alloc2(&c, dev, M, D);
    if (rc) goto out;
    dfm_tensor x3 = rows3(x, B), a3 = rows3(&a, B), y3 = rows3(&y, B), c3 = rows3(&c, B), o3 = rows3(out, B);
    uint64_t st = (uint64_t)bi * 3;
    /* a = modulate(norm1(x)); y = attn1(a); c = x1 = x + y * gate */
    if ((rc = dfm_layer_norm_forward(&b->norm1, x, &a, NULL)) || (rc = dfm_op_modulate(&a3, e, 1, 0, &a3)) ||
        (rc = dfm_attention_forward(cc, &b->attn1, B, &a, NULL, cos, sin, &y, NULL, seed, st)) ||
        (rc = dfm_op_gate_residual(&x3, &y3, e, 2, &c3)))
        goto out;
    /* y = attn2(norm2(x1), ctx); a = x2 = x1 + y */
    const dfm_tensor *n2 = &c;
    if (m->cfg.cross_attn_norm) {
        if ((rc = dfm_layer_norm_forward(&b->norm2, &c, &a, NULL))) goto out;
        n2 = &a;
    }
    if ((rc = dfm_attention_forward(cc, &b->attn2, B, n2, ctxp, NULL, NULL, &y, NULL, seed, st + 1)) ||
        (rc = dfm_op_add(&c, &y, &a)))
        goto out;
    /* c = modulate(norm3(x2)); y = ffn(c); out = x2 + y * gate */
    if ((rc = dfm_layer_norm_forward(&b->norm3, &a, &c, NULL)) || (rc = dfm_op_modulate(&c3, e, 4, 3, &c3)) ||
        (rc = dfm_mlp_forward(cc, &b->ffn, &c, &y, NULL, seed, st + 2)) || (rc = dfm_op_gate_residual(&a3, &y3, e, 5, &o3)))
        goto out;
out:
    dfm_tensor_free(&a);
    dfm_tensor_free(&y);
    dfm_tensor_free(&c);
    return rc;
}

static int block_forward(const dfm_wan_transformer *m, int bi, const dfm_tensor *e, const dfm_tensor *x,
                         const dfm_tensor *ctxp, int64_t B, const dfm_tensor *cos, const dfm_tensor *sin, dfm_tensor *out,
                         block_acts *s, uint64_t seed)
{
    const block_t *b = &m->blocks[bi];
    const dfm_compute *cc = &m->cc;
    if (!s) return block_infer(m, bi, e, x, ctxp, B, cos, sin, out, seed);
    block_acts tmp = {0}, *t = s ? s : &tmp;
    dfm_tensor xin = t->xin, ein = t->e;
    memset(t, 0, sizeof *t);
    t->xin = xin, t->e = ein;
    int64_t M = x->shape[0], D = x->shape[1];
    dfm_device dev = x->device;
    int rc = 0;
    dfm_tensor y2 = {0};
    dfm_tensor *bufs[] = {&t->n1, &t->a1, &t->y1, &t->x1, &t->x2, &t->n3, &t->f, &t->y3, &y2};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0] && !rc; i++) rc = alloc2(bufs[i], dev, M, D);
    if (!rc && m->cfg.cross_attn_norm) rc = alloc2(&t->n2, dev, M, D);
    if (rc) goto out;
    dfm_tensor x3 = rows3(x, B), n13 = rows3(&t->n1, B), a13 = rows3(&t->a1, B), y13 = rows3(&t->y1, B);
    dfm_tensor x13 = rows3(&t->x1, B), x23 = rows3(&t->x2, B), n33 = rows3(&t->n3, B), f3 = rows3(&t->f, B);
    dfm_tensor y33 = rows3(&t->y3, B), o3 = rows3(out, B);
    uint64_t st = (uint64_t)bi * 3;
    /* self-attention on the modulated norm1; gated residual */
    if ((rc = dfm_layer_norm_forward(&b->norm1, x, &t->n1, s ? &t->ln1 : NULL)) ||
        (rc = dfm_op_modulate(&n13, e, 1, 0, &a13)) ||
        (rc = dfm_attention_forward(cc, &b->attn1, B, &t->a1, NULL, cos, sin, &t->y1, s ? &t->at1 : NULL, seed, st)) ||
        (rc = dfm_op_gate_residual(&x3, &y13, e, 2, &x13)))
        goto out;
    /* cross-attention on norm2 (affine), plain residual */
    const dfm_tensor *n2 = &t->x1;
    if (m->cfg.cross_attn_norm) {
        if ((rc = dfm_layer_norm_forward(&b->norm2, &t->x1, &t->n2, s ? &t->ln2 : NULL))) goto out;
        n2 = &t->n2;
    }
    if ((rc = dfm_attention_forward(cc, &b->attn2, B, n2, ctxp, NULL, NULL, &y2, s ? &t->at2 : NULL, seed, st + 1)) ||
        (rc = dfm_op_add(&t->x1, &y2, &t->x2)))
        goto out;
    /* feed-forward on the modulated norm3; gated residual */
    if ((rc = dfm_layer_norm_forward(&b->norm3, &t->x2, &t->n3, s ? &t->ln3 : NULL)) ||
        (rc = dfm_op_modulate(&n33, e, 4, 3, &f3)) ||
        (rc = dfm_mlp_forward(cc, &b->ffn, &t->f, &t->y3, s ? &t->ff : NULL, seed, st + 2)) ||
        (rc = dfm_op_gate_residual(&x23, &y33, e, 5, &o3)))
        goto out;
out:
    dfm_tensor_free(&y2);
    if (rc || !s) {
        block_acts_clear(t);
    } else {
        t->full = 1;
    }
    return rc;
}

/* dh: in dL/d(block output), out dL/d(block input) (in place). dctxp += dL/d(context); de
 * (zeroed here) receives dL/de [B, 6, D]; the block's parameter gradients accumulate. */
static int block_backward(dfm_wan_transformer *m, int bi, const block_acts *s, int64_t B, const dfm_tensor *cos,
                          const dfm_tensor *sin, dfm_tensor *dh, dfm_tensor *dctxp, dfm_tensor *de)
{
    const block_t *b = &m->blocks[bi];
    block_grads *g = &m->gb[bi];
    const dfm_compute *cc = &m->cc;
    int64_t M = dh->shape[0], D = dh->shape[1];
    dfm_device dev = dh->device;
    dfm_tensor t1 = {0}, t2 = {0}, dctx = {0};
    int rc = alloc2(&t1, dev, M, D);
    if (!rc) rc = alloc2(&t2, dev, M, D);
    if (!rc && dctxp) rc = dfm_tensor_alloc(&dctx, DFM_F32, dev, 2, dctxp->shape);
    if (!rc) rc = dfm_tensor_zero(de);
    if (rc) goto out;
    dfm_tensor dh3 = rows3(dh, B), t13 = rows3(&t1, B), t23 = rows3(&t2, B);
    dfm_tensor y13 = rows3(&s->y1, B), n13 = rows3(&s->n1, B), n33 = rows3(&s->n3, B), y33 = rows3(&s->y3, B);
    /* out = x2 + y3 * c_gate: dy3 = dh * c_gate; dx2 = dh */
    if ((rc = dfm_op_gate_residual_bwd(&dh3, &y33, &s->e, 5, &t13, de)) ||
        (rc = dfm_mlp_backward(cc, &b->ffn, &s->ff, &t1, &t2, &g->ffn)) ||           /* t2 = df */
        (rc = dfm_op_modulate_bwd(&t23, &n33, &s->e, 4, 3, &t23, de)) ||               /* t2 = dn3 */
        (rc = dfm_layer_norm_backward(&b->norm3, &s->ln3, &t2, &t1, NULL, NULL)) ||   /* t1 = dx2 via norm3 */
        (rc = dfm_op_add(dh, &t1, dh)))                                                /* dh = dx2 */
        goto out;
    /* x2 = x1 + attn2(norm2(x1), ctx) */
    if ((rc = dfm_attention_backward(cc, &b->attn2, &s->at2, NULL, NULL, dh, &t1, dctxp ? &dctx : NULL, &g->attn2)))
        goto out;
    if (dctxp && (rc = dfm_op_add(dctxp, &dctx, dctxp))) goto out;
    if (m->cfg.cross_attn_norm) {
        if ((rc = dfm_layer_norm_backward(&b->norm2, &s->ln2, &t1, &t1, &g->norm2_w, &g->norm2_b))) goto out;
    }
    if ((rc = dfm_op_add(dh, &t1, dh))) goto out; /* dh = dx1 */
    /* x1 = x + y1 * gate, y1 = attn1(modulate(norm1(x))) */
    if ((rc = dfm_op_gate_residual_bwd(&dh3, &y13, &s->e, 2, &t13, de)) ||
        (rc = dfm_attention_backward(cc, &b->attn1, &s->at1, cos, sin, &t1, &t2, NULL, &g->attn1)) ||
        (rc = dfm_op_modulate_bwd(&t23, &n13, &s->e, 1, 0, &t23, de)) ||
        (rc = dfm_layer_norm_backward(&b->norm1, &s->ln1, &t2, &t1, NULL, NULL)) ||
        (rc = dfm_op_add(dh, &t1, dh)))
        goto out;
    /* e = scale_shift_table + time_proj: the table's gradient is the sum over the batch */
    if (g->sst.data) {
        int64_t sh[2] = {B, 6 * D}, s1[1] = {6 * D};
        dfm_tensor de2 = dfm_tensor_view(de->data, DFM_F32, dev, 2, sh), gs = dfm_tensor_view(g->sst.data, DFM_F32, dev, 1, s1);
        rc = dfm_op_colsum(&de2, &gs);
    }
out:
    dfm_tensor_free(&t1), dfm_tensor_free(&t2), dfm_tensor_free(&dctx);
    return rc;
}

/* e[b, k] = table[k] + v[b, k] for k < K: table [1, K, D], v [B, K * D] rows, e [B, K, D].
 * per_chunk_v: v is [B, D] added to every chunk (the head: scale_shift_table + temb). */
static int cond(const dfm_tensor *table, const dfm_tensor *v, int64_t B, int64_t K, int64_t D, int per_chunk_v, dfm_tensor *e)
{
    int64_t s1[1] = {D};
    for (int64_t b = 0; b < B; b++)
        for (int64_t k = 0; k < K; k++) {
            dfm_tensor tk = dfm_tensor_view((float *)table->data + k * D, DFM_F32, e->device, 1, s1);
            dfm_tensor vk = dfm_tensor_view((float *)v->data + (per_chunk_v ? b * D : (b * K + k) * D), DFM_F32, e->device, 1, s1);
            dfm_tensor ek = dfm_tensor_view((float *)e->data + (b * K + k) * D, DFM_F32, e->device, 1, s1);
            int rc = dfm_op_add(&vk, &tk, &ek);
            if (rc) return rc;
        }
    return 0;
}

/* A table F32 for the conditioning adds (BF16 storage only when not keep-f32, never here). */
static int check_f32_table(const dfm_tensor *t, const char *what)
{
    if (t->dtype != DFM_F32) return dfm_fail(DFM_E_FORMAT, "%s is %s, expected F32 (a keep-in-f32 module)", what, dfm_dtype_name(t->dtype));
    return 0;
}

int dfm_wan_transformer_forward(dfm_wan_transformer *m, const dfm_tensor *x, const float *t, const dfm_tensor *ctx,
                                dfm_tensor *out, dfm_wan_acts **acts_out, int checkpoint, uint64_t seed)
{
    const dfm_wan_transformer_config *c = &m->cfg;
    memset(out, 0, sizeof *out);
    if (acts_out) *acts_out = NULL;
    if (!x || !t || !ctx || x->ndim != 5 || x->dtype != DFM_F32 || x->shape[1] != c->in_channels)
        return dfm_fail(DFM_E_ARG, "Wan transformer: x must be F32 [B, %d, F, H, W]", c->in_channels);
    int64_t B = x->shape[0], F = x->shape[2], H = x->shape[3], W = x->shape[4];
    if (B < 1 || F % c->patch[0] || H % c->patch[1] || W % c->patch[2] || F < 1 || H < 1 || W < 1)
        return dfm_fail(DFM_E_ARG, "Wan transformer: latent [%lld, %lld, %lld] is not a multiple of the patch [%d, %d, %d]",
                        (long long)F, (long long)H, (long long)W, c->patch[0], c->patch[1], c->patch[2]);
    if (ctx->ndim != 3 || ctx->dtype != DFM_F32 || ctx->shape[0] != B || ctx->shape[2] != c->text_dim || ctx->shape[1] < 1)
        return dfm_fail(DFM_E_ARG, "Wan transformer: the text states must be F32 [%lld, L, %d]", (long long)B, c->text_dim);
    if (x->device != m->opts.device || ctx->device != m->opts.device)
        return dfm_fail(DFM_E_ARG, "Wan transformer: inputs on another device than the model");
    int64_t Fp = F / c->patch[0], Hp = H / c->patch[1], Wp = W / c->patch[2], N = Fp * Hp * Wp, M = B * N;
    int64_t L = ctx->shape[1], D = c->dim, P = (int64_t)c->patch[0] * c->patch[1] * c->patch[2];
    if (Fp > c->rope_max_seq_len || Hp > c->rope_max_seq_len || Wp > c->rope_max_seq_len)
        return dfm_fail(DFM_E_ARG, "Wan transformer: %lld x %lld x %lld patches, over rope_max_seq_len %d per axis",
                        (long long)Fp, (long long)Hp, (long long)Wp, c->rope_max_seq_len);
    int rc;
    if ((rc = check_f32_table(&m->sst, "scale_shift_table"))) return rc;
    dfm_device dev = m->opts.device;
    dfm_wan_acts *a = dfm_calloc(1, sizeof *a);
    if (!a) return DFM_E_NOMEM;
    a->checkpoint = checkpoint, a->seed = seed, a->B = B, a->N = N, a->L = L, a->layers = c->num_layers;
    memcpy(a->dims, x->shape, sizeof a->dims);
    int train = acts_out != NULL;
    a->h = dfm_calloc((size_t)c->num_layers + 1, sizeof *a->h);
    a->blocks = dfm_calloc((size_t)(c->num_layers ? c->num_layers : 1), sizeof *a->blocks);
    if (!a->h || !a->blocks) {
        rc = DFM_E_NOMEM;
        goto out;
    }
    /* RoPE tables for this grid (host, then the device) */
    {
        int64_t hs = c->head_dim / 2, sh[2] = {N, hs};
        dfm_tensor hc = {0}, hsn = {0};
        if (!(rc = dfm_tensor_alloc(&hc, DFM_F32, DFM_CPU, 2, sh)) && !(rc = dfm_tensor_alloc(&hsn, DFM_F32, DFM_CPU, 2, sh)))
            rc = dfm_cpu_wan_rope_table(c->head_dim, 10000.0, Fp, Hp, Wp, c->rope_max_seq_len, hc.data, hsn.data);
        if (!rc && dev != DFM_CPU) {
            if (!(rc = dfm_tensor_copy(&a->cos, &hc, dev))) rc = dfm_tensor_copy(&a->sin, &hsn, dev);
            dfm_tensor_free(&hc), dfm_tensor_free(&hsn);
        } else {
            a->cos = hc, a->sin = hsn;
        }
        if (rc) goto out;
    }
    /* patch embedding */
    if ((rc = alloc2(&a->patches, dev, M, c->in_channels * P)) || (rc = alloc2(&a->h[0], dev, M, D)) ||
        (rc = dfm_op_patchify(x, c->patch, 0, &a->patches)) ||
        (rc = dfm_linear_forward(&m->cc, &m->patch, &a->patches, &a->h[0], train ? &a->pa : NULL, seed, 1000000)))
        goto out;
    /* time: sinusoid -> linear_1 -> silu -> linear_2 = temb; silu(temb) -> time_proj [B, 6D] */
    {
        dfm_tensor hs = {0};
        if ((rc = alloc2(&hs, DFM_CPU, B, c->freq_dim))) goto out;
        dfm_timestep_embedding(t, B, c->freq_dim, 1, 0.0f, 10000.0f, hs.data); /* Timesteps(freq_dim, True, 0) */
        if (dev != DFM_CPU) {
            rc = dfm_tensor_copy(&a->sinus, &hs, dev);
            dfm_tensor_free(&hs);
            if (rc) goto out;
        } else {
            a->sinus = hs;
        }
    }
    if ((rc = alloc2(&a->t1o, dev, B, D)) || (rc = alloc2(&a->t1s, dev, B, D)) || (rc = alloc2(&a->temb, dev, B, D)) ||
        (rc = alloc2(&a->tembs, dev, B, D)) || (rc = alloc2(&a->tproj, dev, B, 6 * D)) ||
        (rc = dfm_linear_forward(&m->cc_time, &m->t1, &a->sinus, &a->t1o, train ? &a->t1a : NULL, seed, 1000001)) ||
        (rc = dfm_op_silu(&a->t1o, &a->t1s)) ||
        (rc = dfm_linear_forward(&m->cc_time, &m->t2, &a->t1s, &a->temb, train ? &a->t2a : NULL, seed, 1000002)) ||
        (rc = dfm_op_silu(&a->temb, &a->tembs)) ||
        (rc = dfm_linear_forward(&m->cc, &m->tproj, &a->tembs, &a->tproj, train ? &a->tpa : NULL, seed, 1000003)))
        goto out;
    /* text: linear_1 -> gelu_tanh -> linear_2 over all B * L rows */
    {
        int64_t s2[2] = {B * L, c->text_dim};
        a->ctx2 = dfm_tensor_view(ctx->data, DFM_F32, dev, 2, s2);
        if ((rc = alloc2(&a->x1o, dev, B * L, D)) || (rc = alloc2(&a->x1g, dev, B * L, D)) ||
            (rc = alloc2(&a->ctxp, dev, B * L, D)) ||
            (rc = dfm_linear_forward(&m->cc, &m->x1, &a->ctx2, &a->x1o, train ? &a->x1a : NULL, seed, 1000004)) ||
            (rc = dfm_op_gelu_tanh(&a->x1o, &a->x1g)) ||
            (rc = dfm_linear_forward(&m->cc, &m->x2, &a->x1g, &a->ctxp, train ? &a->x2a : NULL, seed, 1000005)))
            goto out;
    }
    /* blocks */
    for (int i = 0; i < c->num_layers; i++) {
        block_acts *s = &a->blocks[i];
        int64_t se[3] = {B, 6, D};
        if ((rc = check_f32_table(&m->blocks[i].sst, "a block's scale_shift_table")) ||
            (rc = dfm_tensor_alloc(&s->e, DFM_F32, dev, 3, se)) ||
            (rc = cond(&m->blocks[i].sst, &a->tproj, B, 6, D, 0, &s->e)) || (rc = alloc2(&a->h[i + 1], dev, M, D)))
            goto out;
        s->xin = a->h[i];
        if ((rc = block_forward(m, i, &s->e, &a->h[i], &a->ctxp, B, &a->cos, &a->sin, &a->h[i + 1], train ? s : NULL, seed))) {
            dfm_fail_ctx(rc, "block %d", i);
            goto out;
        }
        if (!train || checkpoint) block_acts_clear(s); /* recomputed in the backward */
        if (!train && i > 0) dfm_tensor_free(&a->h[i]); /* inference keeps only the current input */
        if (!train) dfm_tensor_free(&s->e);
    }
    /* head: modulated norm_out (shift, scale = table + temb), proj_out, unpatchify */
    {
        int64_t se[3] = {B, 2, D};
        int Lh = c->num_layers;
        dfm_tensor yo = {0};
        if ((rc = dfm_tensor_alloc(&a->eo, DFM_F32, dev, 3, se)) || (rc = cond(&m->sst, &a->temb, B, 2, D, 1, &a->eo)) ||
            (rc = alloc2(&a->no, dev, M, D)) || (rc = alloc2(&a->mo, dev, M, D)) ||
            (rc = alloc2(&yo, dev, M, P * c->out_channels)))
            goto out;
        dfm_tensor no3 = rows3(&a->no, B), mo3 = rows3(&a->mo, B);
        int64_t so[5] = {B, c->out_channels, F, H, W};
        if ((rc = dfm_layer_norm_forward(&m->norm_out, &a->h[Lh], &a->no, train ? &a->lno : NULL)) ||
            (rc = dfm_op_modulate(&no3, &a->eo, 1, 0, &mo3)) ||
            (rc = dfm_linear_forward(&m->cc, &m->proj_out, &a->mo, &yo, train ? &a->poa : NULL, seed, 1000006)) ||
            (rc = dfm_tensor_alloc(out, DFM_F32, dev, 5, so)) || (rc = dfm_op_unpatchify(&yo, c->patch, 1, out))) {
            dfm_tensor_free(&yo);
            goto out;
        }
        dfm_tensor_free(&yo);
    }
out:
    if (rc) {
        dfm_tensor_free(out);
        dfm_wan_acts_free(a);
        return rc;
    }
    if (train) *acts_out = a;
    else dfm_wan_acts_free(a);
    return 0;
}

static int linear_trained(const dfm_linear_grads *g)
{
    return g->w.data || g->b.data || g->lora_a.data || g->lora_b.data;
}

void dfm_wan_transformer_on_grads_ready(dfm_wan_transformer *m, dfm_wan_grads_ready_fn fn, void *ctx)
{
    m->grads_ready = fn, m->grads_ready_ctx = ctx;
}

int dfm_wan_transformer_backward(dfm_wan_transformer *m, dfm_wan_acts *a, const dfm_tensor *dout, dfm_tensor *dx,
                                 dfm_tensor *dctx)
{
    const dfm_wan_transformer_config *c = &m->cfg;
    if (dx) memset(dx, 0, sizeof *dx);
    if (dctx) memset(dctx, 0, sizeof *dctx);
    if (!a) return dfm_fail(DFM_E_ARG, "Wan transformer backward: no saved activations");
    int64_t B = a->B, N = a->N, M = B * N, L = a->L, D = c->dim, P = (int64_t)c->patch[0] * c->patch[1] * c->patch[2];
    dfm_device dev = m->opts.device;
    int rc = 0;
    dfm_tensor dy = {0}, dh = {0}, dmo = {0}, deo = {0}, dctxp = {0}, de = {0}, dtproj = {0}, dtemb = {0}, dtb = {0};
    dfm_tensor dpatch = {0}, dx1g = {0}, dctx2 = {0};
    if (!dout || dout->ndim != 5 || dout->dtype != DFM_F32 || dout->shape[0] != B || dout->shape[1] != c->out_channels ||
        dout->shape[2] != a->dims[2] || dout->shape[3] != a->dims[3] || dout->shape[4] != a->dims[4]) {
        rc = dfm_fail(DFM_E_ARG, "Wan transformer backward: dout must have the output's shape");
        goto out;
    }
    int64_t se[3] = {B, 6, D}, s2[3] = {B, 2, D};
    /* the projected context's gradient: only for dctx or a trained text embedder (LoRA on the
     * blocks alone needs neither: cross-attention's k/v then skip their dx products) */
    int need_ctx = dctx || linear_trained(&m->g_x1) || linear_trained(&m->g_x2);
    if ((rc = alloc2(&dy, dev, M, P * c->out_channels)) || (rc = alloc2(&dh, dev, M, D)) || (rc = alloc2(&dmo, dev, M, D)) ||
        (rc = dfm_tensor_zeros(&deo, DFM_F32, dev, 3, s2)) ||
        (need_ctx && (rc = dfm_tensor_zeros(&dctxp, DFM_F32, dev, 2, a->ctxp.shape))) ||
        (rc = dfm_tensor_alloc(&de, DFM_F32, dev, 3, se)) || (rc = dfm_tensor_zeros(&dtproj, DFM_F32, dev, 2, a->tproj.shape)) ||
        (rc = alloc2(&dtemb, dev, B, D)) || (rc = alloc2(&dtb, dev, B, D)))
        goto out;
    /* head */
    {
        dfm_tensor no3 = rows3(&a->no, B), dmo3 = rows3(&dmo, B);
        if ((rc = dfm_op_patchify(dout, c->patch, 1, &dy)) ||
            (rc = dfm_linear_backward(&m->cc, &m->proj_out, &a->poa, &dy, &dmo, 0, &m->g_proj_out)) ||
            (rc = dfm_op_modulate_bwd(&dmo3, &no3, &a->eo, 1, 0, &dmo3, &deo)) ||
            (rc = dfm_layer_norm_backward(&m->norm_out, &a->lno, &dmo, &dh, NULL, NULL)))
            goto out;
        if (m->g_sst.data) {
            int64_t sh[2] = {B, 2 * D}, s1[1] = {2 * D};
            dfm_tensor d2 = dfm_tensor_view(deo.data, DFM_F32, dev, 2, sh), gs = dfm_tensor_view(m->g_sst.data, DFM_F32, dev, 1, s1);
            if ((rc = dfm_op_colsum(&d2, &gs))) goto out;
        }
    }
    /* blocks, last to first */
    for (int i = c->num_layers - 1; i >= 0; i--) {
        block_acts *s = &a->blocks[i];
        if ((rc = regrow_grads(m, i))) goto out;
        if (!s->full) { /* checkpointed: run the block again, saving its activations */
            dfm_tensor tmp = {0};
            if ((rc = alloc2(&tmp, dev, M, D))) goto out;
            rc = block_forward(m, i, &s->e, &a->h[i], &a->ctxp, B, &a->cos, &a->sin, &tmp, s, a->seed);
            dfm_tensor_free(&tmp);
            if (rc) goto out;
        }
        if ((rc = block_backward(m, i, s, B, &a->cos, &a->sin, &dh, need_ctx ? &dctxp : NULL, &de))) {
            dfm_fail_ctx(rc, "block %d backward", i);
            goto out;
        }
        block_acts_clear(s);
        if (m->grads_ready && (rc = m->grads_ready(m->grads_ready_ctx, i))) goto out;
        if ((rc = dfm_op_add(&dtproj, &(dfm_tensor){.dtype = DFM_F32, .device = dev, .ndim = 2, .shape = {B, 6 * D}, .data = de.data},
                             &dtproj)))
            goto out;
    }
    /* time: dtemb = silu'(temb) * (time_proj^T dtproj) + the head's two chunks */
    if ((rc = dfm_linear_backward(&m->cc, &m->tproj, &a->tpa, &dtproj, &dtb, 0, &m->g_tproj)) ||
        (rc = dfm_op_silu_bwd(&dtb, &a->temb, &dtemb)))
        goto out;
    for (int64_t b = 0; b < B; b++)
        for (int k = 0; k < 2; k++) {
            int64_t s1[1] = {D};
            dfm_tensor tb = dfm_tensor_view((float *)dtemb.data + b * D, DFM_F32, dev, 1, s1);
            dfm_tensor ek = dfm_tensor_view((float *)deo.data + (b * 2 + k) * D, DFM_F32, dev, 1, s1);
            if ((rc = dfm_op_add(&tb, &ek, &tb))) goto out;
        }
    if ((rc = dfm_linear_backward(&m->cc_time, &m->t2, &a->t2a, &dtemb, &dtb, 0, &m->g_t2)) ||
        (rc = dfm_op_silu_bwd(&dtb, &a->t1o, &dtb)) ||
        (rc = dfm_linear_backward(&m->cc_time, &m->t1, &a->t1a, &dtb, NULL, 0, &m->g_t1)))
        goto out;
    /* text */
    if (!need_ctx) goto patch;
    if ((rc = alloc2(&dx1g, dev, B * L, D)) ||
        (rc = dfm_linear_backward(&m->cc, &m->x2, &a->x2a, &dctxp, &dx1g, 0, &m->g_x2)) ||
        (rc = dfm_op_gelu_tanh_bwd(&dx1g, &a->x1o, &dx1g)))
        goto out;
    if (dctx) {
        int64_t sc[3] = {B, L, c->text_dim};
        if ((rc = dfm_tensor_alloc(dctx, DFM_F32, dev, 3, sc))) goto out;
        int64_t s2d[2] = {B * L, c->text_dim};
        dctx2 = dfm_tensor_view(dctx->data, DFM_F32, dev, 2, s2d);
    }
    if ((rc = dfm_linear_backward(&m->cc, &m->x1, &a->x1a, &dx1g, dctx ? &dctx2 : NULL, 0, &m->g_x1))) goto out;
patch: /* patch embedding */
    if ((rc = alloc2(&dpatch, dev, M, c->in_channels * P)) ||
        (rc = dfm_linear_backward(&m->cc, &m->patch, &a->pa, &dh, dx ? &dpatch : NULL, 0, &m->g_patch)))
        goto out;
    if (dx) {
        if ((rc = dfm_tensor_alloc(dx, DFM_F32, dev, 5, a->dims))) goto out;
        int64_t sx[5] = {B, c->in_channels, a->dims[2], a->dims[3], a->dims[4]};
        if ((rc = dfm_tensor_reshape(dx, 5, sx)) || (rc = dfm_op_unpatchify(&dpatch, c->patch, 0, dx))) goto out;
    }
out:
    dfm_tensor *ts[] = {&dy, &dh, &dmo, &deo, &dctxp, &de, &dtproj, &dtemb, &dtb, &dpatch, &dx1g};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) dfm_tensor_free(ts[i]);
    if (rc) {
        if (dx) dfm_tensor_free(dx);
        if (dctx) dfm_tensor_free(dctx);
    }
    dfm_wan_acts_free(a);
    return rc;
}
