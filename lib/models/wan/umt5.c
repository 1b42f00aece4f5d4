/* umt5.c — the UMT5 encoder (see umt5.h), op for op as transformers runs it in fp32.
 * ref: transformers models/umt5/modeling_umt5.py (UMT5LayerNorm, UMT5Attention incl.
 *      _relative_position_bucket and compute_bias, UMT5DenseGatedActDense, UMT5Block,
 *      UMT5Stack.forward, UMT5EncoderModel) and activations.py NewGELUActivation.
 *
 * Activations are [n, d_model] F32 rows, one per token (batch 1, no padding). A layer:
 *   x = rms_norm(h, ln1); q, k, v = x Wq^T, x Wk^T, x Wv^T           [n, heads * d_kv]
 *   h += attention_bias(q, k, v, rel_bias(table, buckets), scale 1) Wo^T
 *   x = rms_norm(h, ln2); h += (gelu_new(x Wi0^T) * (x Wi1^T)) Wwo^T
 * and the final norm: lib/nn layers (the norms dfm_rms_norm, nn/norm.h; the attention and the
 * feed-forward dfm_t5_attention and dfm_t5_ffn, nn/t5.h). Forward only (UMT5 is frozen).
 * The linears run through dfm_op_linear on weights laid out at load: q|k|v in one pass over x,
 * wi_0|wi_1 in one, o and wo adding into h in the GEMM itself; with keep_mapped, through
 * dfm_op_matmul on the mapped weights and separate adds.
 * Not here: the decoder, the tokenizer, padding (see umt5.h).
 */
#include "models/wan/umt5.h"
#include "base/buf.h"
#include "base/error.h"
#include "io/hfmodel.h"
#include "models/wan/names.h"
#include "models/weights.h"
#include "nn/norm.h"
#include "nn/t5.h"
#include "tensor/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One UMT5Block: the linears' weights are either laid out (packed: q|k|v, o, wi_0|wi_1, wo) or,
 * with keep_mapped, the dfm_linear layers over the mapped tensors. */
typedef struct {
    dfm_rms_norm ln1, ln2; /* layer.0.layer_norm, layer.1.layer_norm: [d_model] F32 */
    dfm_t5_attention attn; /* layer.0.SelfAttention (its own relative_attention_bias) */
    dfm_t5_ffn ffn;        /* layer.1.DenseReluDense */
} layer_t;

struct dfm_umt5 {
    dfm_umt5_config cfg;
    dfm_umt5_opts opts;
    dfm_weights *w;       /* kept open: the views below point into its mappings */
    dfm_tensor embed;     /* [vocab, d_model] on the CPU (a view, or a copy if misaligned) */
    dfm_rms_norm final_ln; /* [d_model] F32 */
    layer_t *layers;
    size_t owned, mapped; /* weight bytes */
    dfm_compute cc;       /* BF16 in BF16 mode: GEMM inputs rounded to bf16 */
    dfm_tensor ws;        /* activations, kept between encodes (grown when n grows) */
};

/* ---- config -------------------------------------------------------------------------------- */

static const char *const umt5_classes[] = {"UMT5EncoderModel", "UMT5Model", "UMT5ForConditionalGeneration", NULL};

int dfm_umt5_config_load(dfm_umt5_config *cfg, const char *dir)
{
    memset(cfg, 0, sizeof *cfg);
    dfm_hf_config c;
    int rc = dfm_hf_config_load(&c, dir);
    if (rc) return rc;
    const char *mt = NULL, *ffp = NULL;
    int64_t v[8];
    /* missing fields: transformers' UMT5Config defaults */
    if ((rc = dfm_hf_str(&c, "model_type", 0, "umt5", &mt))) goto out;
    if (strcmp(mt, "umt5")) {
        rc = dfm_fail(DFM_E_UNSUPPORTED, "%s: model_type '%s' is not 'umt5'%s", c.path, mt,
                      !strcmp(mt, "t5") ? " (T5 shares layer 0's relative bias table; only UMT5 is supported)" : "");
        goto out;
    }
    /* sizes in int64 against limits far above UMT5-XXL (4096, 64, 64, 10240, 24, 256384, 32,
     * 128) that keep every product the model forms in int64; the weights file bounds the rest
     * (each tensor's shape is checked against its header before anything is allocated) */
    if ((rc = dfm_hf_int_range(&c, "d_model", 0, 512, 1, 1 << 20, &v[0])) ||
        (rc = dfm_hf_int_range(&c, "d_kv", 0, 64, 1, 1 << 16, &v[1])) ||
        (rc = dfm_hf_int_range(&c, "num_heads", 0, 6, 1, 1 << 12, &v[2])) ||
        (rc = dfm_hf_int_range(&c, "d_ff", 0, 1024, 1, 1 << 22, &v[3])) ||
        (rc = dfm_hf_int_range(&c, "num_layers", 0, 8, 0, 4096, &v[4])) ||
        (rc = dfm_hf_int_range(&c, "vocab_size", 0, 250112, 1, 1 << 30, &v[5])) ||
        (rc = dfm_hf_int_range(&c, "relative_attention_num_buckets", 0, 32, 4, 1 << 16, &v[6])) ||
        (rc = dfm_hf_int_range(&c, "relative_attention_max_distance", 0, 128, 1, 1 << 30, &v[7])) ||
        (rc = dfm_hf_float(&c, "layer_norm_epsilon", 0, 1e-6, &cfg->eps)) ||
        (rc = dfm_hf_str(&c, "feed_forward_proj", 0, "gated-gelu", &ffp)))
        goto out;
    if (v[1] * v[2] > (1 << 20) || v[7] <= v[6] / 4) {
        rc = dfm_fail(DFM_E_FORMAT, "%s: %s", c.path,
                      v[7] <= v[6] / 4 ? "relative_attention_max_distance must exceed a quarter of "
                                         "relative_attention_num_buckets"
                                       : "num_heads x d_kv is over 2^20");
        goto out;
    }
    if (!(cfg->eps >= 0.0 && cfg->eps < 1.0)) {
        rc = dfm_fail(DFM_E_FORMAT, "%s: layer_norm_epsilon %g out of range", c.path, cfg->eps);
        goto out;
    }
    if (strcmp(ffp, "gated-gelu")) {
        rc = dfm_fail(DFM_E_UNSUPPORTED, "%s: feed_forward_proj '%s' is not supported (only 'gated-gelu', UMT5's)",
                      c.path, ffp);
        goto out;
    }
    cfg->d_model = (int)v[0], cfg->d_kv = (int)v[1], cfg->num_heads = (int)v[2], cfg->d_ff = (int)v[3];
    cfg->num_layers = (int)v[4], cfg->vocab_size = (int)v[5], cfg->rel_buckets = (int)v[6];
    cfg->rel_max_distance = (int)v[7], cfg->gated_gelu = 1;
out:
    dfm_hf_config_free(&c);
    return rc;
}

/* ---- relative position buckets ------------------------------------------------------------- */

int dfm_umt5_rel_bucket(int64_t rel, int num_buckets, int max_distance)
{
    /* ref: UMT5Attention._relative_position_bucket, is_decoder False */
    int nb = num_buckets / 2, ret = rel > 0 ? nb : 0;
    int64_t n = rel < 0 ? -rel : rel;
    int max_exact = nb / 2;
    if (n < max_exact) return ret + (int)n;
    /* log_ratio = torch.log(n.float() / max_exact) / math.log(max_distance / max_exact): the
     * f32 tensor op takes the Python float divisor rounded to f32 */
    float ratio = (float)n / (float)max_exact;
    float den = (float)log((double)max_distance / (double)max_exact);
    float lr = logf(ratio) / den;
    lr = lr * (float)(nb - max_exact);
    int64_t large = lr >= (float)nb ? nb : max_exact + (int64_t)lr; /* .to(torch.long), then min */
    if (large > nb - 1) large = nb - 1;
    return ret + (int)large;
}

/* ---- loading ------------------------------------------------------------------------------- */

typedef struct {
    dfm_weights *w; /* transformers names (models/wan/names.h dfm_umt5_names) */
    const dfm_umt5_opts *o;
} loader_t;

/* A GEMM weight [rows, cols] for keep_mapped, as a bias-free linear: on the CPU used in place in
 * the file's dtype when aligned (BF16 mode rounds it block by block at use, umt5.h), else copied
 * (as BF16 in BF16 mode, as the file's dtype in F32 mode; owns_w: the linear frees a copy, never
 * a mapped view). */
static int load_matrix(loader_t *L, const char *name, int64_t rows, int64_t cols, dfm_linear *out)
{
    int64_t shape[2] = {rows, cols};
    const dfm_st_tensor *t;
    dfm_tensor w;
    int rc = dfm_weights_find(L->w, name, 2, shape, &t);
    if (rc) return rc;
    dfm_dtype dt = L->o->weights == DFM_BF16 ? DFM_BF16 : t->dtype;
    if ((rc = dfm_weights_load(L->w, name, 2, shape, dt, L->o->device, DFM_WEIGHTS_MAP | DFM_WEIGHTS_MAP_ANY, &w)))
        return rc;
    if ((rc = dfm_linear_init(out, &w, NULL))) {
        dfm_tensor_free(&w);
        return rc;
    }
    out->owns_w = w.owned;
    return 0;
}

/* The GEMM weights names[0..n) ([rows[i], cols] each) laid out as one dfm_packed (F32, or BF16
 * in BF16 mode) on the device, from the mapping itself (a scratch copy when misaligned); the
 * mapped source pages are dropped afterwards. */
static int load_linear(loader_t *L, const char *const *names, const int64_t *rows, int n, int64_t cols,
                       dfm_packed **out)
{
    dfm_tensor src[DFM_PACKED_MAX];
    const dfm_tensor *sp[DFM_PACKED_MAX];
    int rc = 0, i;
    for (i = 0; i < n; i++) {
        int64_t shape[2] = {rows[i], cols};
        const dfm_st_tensor *t;
        if ((rc = dfm_weights_find(L->w, names[i], 2, shape, &t)) ||
            (rc = dfm_weights_load(L->w, names[i], 2, shape, t->dtype, DFM_CPU,
                                   DFM_WEIGHTS_MAP | DFM_WEIGHTS_SCRATCH, &src[i])))
            break;
        sp[i] = &src[i];
    }
    if (!rc) rc = dfm_packed_create(out, sp, n, L->o->weights == DFM_BF16 ? DFM_BF16 : DFM_F32, L->o->device);
    if (!rc) dfm_weights_add_owned(L->w, dfm_packed_nbytes(*out));
    for (int j = 0; j < i; j++) {
        dfm_tensor_free(&src[j]);
        if (!rc) dfm_weights_drop(L->w, names[j]);
    }
    return rc;
}

/* A small tensor (norm weight, bias table): an owned F32 copy, bf16-rounded in BF16 mode. */
static int load_small(loader_t *L, const char *name, int ndim, const int64_t *shape, dfm_tensor *out)
{
    return dfm_weights_load(L->w, name, ndim, shape, DFM_F32, L->o->device,
                            L->o->weights == DFM_BF16 ? DFM_WEIGHTS_ROUND_BF16 : 0, out);
}

static int load_layer(loader_t *L, const dfm_umt5_config *c, int i, layer_t *y)
{
    char p[160], r[160], nm[7][160];
    int64_t d = c->d_model, inner = (int64_t)c->num_heads * c->d_kv, ff = c->d_ff;
    int64_t s1[1] = {d}, sr[2] = {c->rel_buckets, c->num_heads};
    int rc;
    dfm_t5_attention *a = &y->attn;
    dfm_t5_ffn *f = &y->ffn;
    a->heads = c->num_heads, a->d_kv = c->d_kv, a->dim = d;
    f->dim = d, f->d_ff = ff;
    y->ln1.eps = y->ln2.eps = (float)c->eps;
    static const char *const names[7] = {"0.SelfAttention.q.weight", "0.SelfAttention.k.weight",
                                         "0.SelfAttention.v.weight", "0.SelfAttention.o.weight",
                                         "1.DenseReluDense.wi_0.weight", "1.DenseReluDense.wi_1.weight",
                                         "1.DenseReluDense.wo.weight"};
    for (int j = 0; j < 7; j++) snprintf(nm[j], sizeof nm[j], "encoder.block.%d.layer.%s", i, names[j]);
    snprintf(p, sizeof p, "encoder.block.%d.layer.0.layer_norm.weight", i);
    snprintf(r, sizeof r, "encoder.block.%d.layer.0.SelfAttention.relative_attention_bias.weight", i);
    if ((rc = load_small(L, p, 1, s1, &y->ln1.w)) || (rc = load_small(L, r, 2, sr, &a->rel))) return rc;
    snprintf(p, sizeof p, "encoder.block.%d.layer.1.layer_norm.weight", i);
    if ((rc = load_small(L, p, 1, s1, &y->ln2.w))) return rc;
    if (L->o->keep_mapped) {
        dfm_linear *dst[7] = {&a->q, &a->k, &a->v, &a->o, &f->wi0, &f->wi1, &f->wo};
        int64_t rows[7] = {inner, inner, inner, d, ff, ff, d}, cols[7] = {d, d, d, inner, d, d, ff};
        for (int j = 0; j < 7; j++)
            if ((rc = load_matrix(L, nm[j], rows[j], cols[j], dst[j]))) return rc;
        return 0;
    }
    const char *qkv[3] = {nm[0], nm[1], nm[2]}, *o[1] = {nm[3]}, *wi[2] = {nm[4], nm[5]}, *wo[1] = {nm[6]};
    int64_t r3[3] = {inner, inner, inner}, r2[2] = {ff, ff}, r1[1] = {d};
    if ((rc = load_linear(L, qkv, r3, 3, d, &a->qkv)) || (rc = load_linear(L, o, r1, 1, inner, &a->po)) ||
        (rc = load_linear(L, wi, r2, 2, d, &f->wi)) || (rc = load_linear(L, wo, r1, 1, ff, &f->pwo)))
        return rc;
    return 0;
}

/* The embedding table (shared.weight, or its tied twin encoder.embed_tokens.weight); always on
 * the CPU, in the file's dtype, and in place when aligned. */
static int load_embedding(loader_t *L, const dfm_umt5_config *c, dfm_tensor *out)
{
    int64_t shape[2] = {c->vocab_size, c->d_model};
    const dfm_st_tensor *t;
    int rc = dfm_weights_find(L->w, "shared.weight", 2, shape, &t);
    if (rc) return rc;
    return dfm_weights_load(L->w, "shared.weight", 2, shape, t->dtype, DFM_CPU, DFM_WEIGHTS_MAP, out);
}

static void free_layer(layer_t *y)
{
    dfm_tensor_free(&y->ln1.w), dfm_tensor_free(&y->ln2.w);
    dfm_t5_attention_free(&y->attn);
    dfm_t5_ffn_free(&y->ffn);
}

void dfm_umt5_free(dfm_umt5 *m)
{
    if (!m) return;
    for (int i = 0; m->layers && i < m->cfg.num_layers; i++) free_layer(&m->layers[i]);
    free(m->layers);
    dfm_tensor_free(&m->embed);
    dfm_tensor_free(&m->final_ln.w);
    dfm_tensor_free(&m->ws);
    dfm_weights_close(m->w);
    free(m);
}

int dfm_umt5_load(dfm_umt5 **out, const char *model_dir, const dfm_umt5_opts *o)
{
    *out = NULL;
    if (!o || (o->weights != DFM_F32 && o->weights != DFM_BF16))
        return dfm_fail(DFM_E_ARG, "UMT5: weights must be F32 or BF16");
    if (o->device != DFM_CPU && !dfm_device_available(o->device)) return DFM_E_UNSUPPORTED;
    char *dir = NULL;
    int rc = dfm_hf_component(model_dir, "text_encoder", umt5_classes, &dir);
    if (rc) return rc;
    dfm_umt5 *m = dfm_calloc(1, sizeof *m);
    if (!m) {
        free(dir);
        return DFM_E_NOMEM;
    }
    m->opts = *o;
    m->cc = (dfm_compute){o->weights == DFM_BF16 ? DFM_BF16 : DFM_F32, NULL};
    loader_t L = {0};
    if ((rc = dfm_umt5_config_load(&m->cfg, dir))) goto fail;
    if ((rc = dfm_weights_open(&m->w, dir, &dfm_umt5_names))) goto fail;
    L.w = m->w, L.o = &m->opts;
    m->layers = dfm_calloc((size_t)(m->cfg.num_layers ? m->cfg.num_layers : 1), sizeof *m->layers);
    if (!m->layers) {
        rc = DFM_E_NOMEM;
        goto fail;
    }
    if ((rc = load_embedding(&L, &m->cfg, &m->embed))) goto fail;
    for (int i = 0; i < m->cfg.num_layers; i++)
        if ((rc = load_layer(&L, &m->cfg, i, &m->layers[i]))) goto fail;
    int64_t s1[1] = {m->cfg.d_model};
    m->final_ln.eps = (float)m->cfg.eps;
    if ((rc = load_small(&L, "encoder.final_layer_norm.weight", 1, s1, &m->final_ln.w))) goto fail;
    /* Every tensor must be used: a leftover means a layout we do not understand (a full UMT5
     * checkpoint's decoder and LM head are ignored by the name table). */
    char note[64];
    snprintf(note, sizeof note, "config: %d layers", m->cfg.num_layers);
    if ((rc = dfm_weights_finish(m->w, note))) goto fail;
    dfm_weights_memory(m->w, &m->owned, &m->mapped);
    free(dir);
    *out = m;
    return 0;
fail:
    dfm_fail_ctx(rc, "UMT5 '%s'", dir);
    free(dir);
    dfm_umt5_free(m);
    return rc;
}

const dfm_umt5_config *dfm_umt5_get_config(const dfm_umt5 *m) { return &m->cfg; }

void dfm_umt5_memory(const dfm_umt5 *m, size_t *owned, size_t *mapped)
{
    if (owned) *owned = m->owned;
    if (mapped) *mapped = m->mapped;
}

/* ---- forward ------------------------------------------------------------------------------- */

/* The activations of an encode: the normalized rows x [n, d_model] and the layers' (nn/t5.h). */
typedef struct {
    dfm_tensor x;
    dfm_t5_attention_acts at;
    dfm_t5_ffn_acts ff;
} acts_t;

/* The activations of an n-token encode as views into the model's workspace, which is grown (never
 * shrunk) to fit: fresh allocations of this size on every encode cost page faults and zeroing
 * (a tenth of a 512-token encode). One set serves every layer (forward only). */
static int acts_views(dfm_umt5 *m, int64_t n, acts_t *a)
{
    const dfm_umt5_config *c = &m->cfg;
    int64_t d = c->d_model, inner = (int64_t)c->num_heads * c->d_kv, ff = c->d_ff, h = c->num_heads;
    int64_t need = n * (2 * d + 4 * inner + 2 * ff) + h * n * n;
    if (dfm_tensor_numel(&m->ws) < need || !m->ws.data) {
        dfm_tensor_free(&m->ws);
        int rc = dfm_tensor_alloc(&m->ws, DFM_F32, m->opts.device, 1, &need);
        if (rc) return rc;
    }
    float *p = m->ws.data;
    dfm_device dev = m->opts.device;
#define VIEW(t, r, cols)                                                      \
    do {                                                                       \
        int64_t s_[2] = {r, cols};                                             \
        t = dfm_tensor_view(p, DFM_F32, dev, 2, s_);                           \
        p += (r) * (cols);                                                     \
    } while (0)
    VIEW(a->x, n, d);
    VIEW(a->at.q, n, inner);
    VIEW(a->at.k, n, inner);
    VIEW(a->at.v, n, inner);
    VIEW(a->at.ctx, n, inner);
    VIEW(a->at.t, n, d);
    a->ff.t = a->at.t; /* the two layers run one after the other */
    VIEW(a->ff.g, n, ff);
    VIEW(a->ff.l, n, ff);
#undef VIEW
    int64_t sb[3] = {h, n, n};
    a->at.bias = dfm_tensor_view(p, DFM_F32, dev, 3, sb);
    return 0;
}

static int alloc2(dfm_tensor *t, dfm_device dev, int64_t a, int64_t b)
{
    int64_t s[2] = {a, b};
    return dfm_tensor_alloc(t, DFM_F32, dev, 2, s);
}

/* h = h + attention(ln1(h)); h = h + ffn(ln2(h)). ref: UMT5Block.forward (encoder, no mask) */
static int layer_forward(const dfm_umt5 *m, const layer_t *y, const dfm_tensor *buckets, dfm_tensor *h, acts_t *a)
{
    int rc;
    if ((rc = dfm_rms_norm_forward(&y->ln1, h, &a->x, NULL)) ||
        (rc = dfm_t5_attention_forward(&m->cc, &y->attn, &a->x, buckets, h, &a->at)) ||
        (rc = dfm_rms_norm_forward(&y->ln2, h, &a->x, NULL)))
        return rc;
    return dfm_t5_ffn_forward(&m->cc, &y->ffn, &a->x, h, &a->ff);
}

int dfm_umt5_encode(dfm_umt5 *m, const int32_t *ids, int n, dfm_tensor *out)
{
    memset(out, 0, sizeof *out);
    const dfm_umt5_config *c = &m->cfg;
    if (n < 1 || !ids) return dfm_fail(DFM_E_ARG, "UMT5 encode: no tokens (n = %d)", n);
    dfm_device dev = m->opts.device;
    int64_t d = c->d_model;
    int bf16 = m->opts.weights == DFM_BF16;
    acts_t a = {0};
    dfm_tensor h = {0}, hc = {0}, bk = {0};
    int64_t sn[1] = {n}, sb[1] = {2 * (int64_t)n - 1};
    dfm_tensor idt = dfm_tensor_view((void *)ids, DFM_I32, DFM_CPU, 1, sn);
    int rc = alloc2(&hc, DFM_CPU, n, d);
    /* embedding rows, gathered on the CPU (the table stays mapped); bf16 values in BF16 mode */
    if (!rc && (rc = dfm_op_embedding(&m->embed, &idt, &hc)) < 0) rc = dfm_fail_ctx(rc, "UMT5 encode");
    if (!rc && bf16 && m->embed.dtype != DFM_BF16) {
        dfm_tensor tmp;
        int64_t s2[2] = {n, d};
        rc = dfm_tensor_alloc(&tmp, DFM_BF16, DFM_CPU, 2, s2);
        if (!rc) rc = dfm_tensor_convert(&tmp, &hc);
        if (!rc) rc = dfm_tensor_convert(&hc, &tmp);
        dfm_tensor_free(&tmp);
    }
    if (!rc && dev != DFM_CPU) rc = dfm_tensor_copy(&h, &hc, dev);
    else if (!rc) h = hc, hc = (dfm_tensor){0};
    /* the bucket of every relative position -(n-1) .. n-1 */
    if (!rc) rc = dfm_tensor_alloc(&bk, DFM_I32, DFM_CPU, 1, sb);
    for (int64_t r = 0; !rc && r < sb[0]; r++)
        ((int32_t *)bk.data)[r] = dfm_umt5_rel_bucket(r - (n - 1), c->rel_buckets, c->rel_max_distance);
    if (!rc) rc = acts_views(m, n, &a);
    for (int i = 0; !rc && i < c->num_layers; i++)
        if ((rc = layer_forward(m, &m->layers[i], &bk, &h, &a)) < 0) dfm_fail_ctx(rc, "UMT5 layer %d", i);
    if (!rc && !(rc = alloc2(out, dev, n, d))) rc = dfm_rms_norm_forward(&m->final_ln, &h, out, NULL);
    if (rc) dfm_tensor_free(out);
    dfm_tensor_free(&h);
    dfm_tensor_free(&hc);
    dfm_tensor_free(&bk);
    return rc;
}
