/* stats_sheet.c — dfm-stats' contact sheet (see stats_sheet.h). Not here: decoding latents,
 * PNG encoding. */
#include "data/stats_sheet.h"
#include "base/error.h"
#include "io/npy.h"
#include "media/encode.h"
#include "media/resize.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the font: 5 columns per glyph, bit 0 the top row (the classic 5×7 LCD font) ------------ */

typedef struct {
    char c;
    uint8_t col[5];
} glyph;

static const glyph font[] = {
    {' ', {0x00, 0x00, 0x00, 0x00, 0x00}}, {'#', {0x14, 0x7f, 0x14, 0x7f, 0x14}},
    {'%', {0x23, 0x13, 0x08, 0x64, 0x62}}, {'(', {0x00, 0x1c, 0x22, 0x41, 0x00}},
    {')', {0x00, 0x41, 0x22, 0x1c, 0x00}}, {',', {0x00, 0x50, 0x30, 0x00, 0x00}},
    {'-', {0x08, 0x08, 0x08, 0x08, 0x08}}, {'.', {0x00, 0x60, 0x60, 0x00, 0x00}},
    {'/', {0x20, 0x10, 0x08, 0x04, 0x02}}, {'0', {0x3e, 0x51, 0x49, 0x45, 0x3e}},
    {'1', {0x00, 0x42, 0x7f, 0x40, 0x00}}, {'2', {0x42, 0x61, 0x51, 0x49, 0x46}},
    {'3', {0x21, 0x41, 0x45, 0x4b, 0x31}}, {'4', {0x18, 0x14, 0x12, 0x7f, 0x10}},
    {'5', {0x27, 0x45, 0x45, 0x45, 0x39}}, {'6', {0x3c, 0x4a, 0x49, 0x49, 0x30}},
    {'7', {0x01, 0x71, 0x09, 0x05, 0x03}}, {'8', {0x36, 0x49, 0x49, 0x49, 0x36}},
    {'9', {0x06, 0x49, 0x49, 0x29, 0x1e}}, {':', {0x00, 0x36, 0x36, 0x00, 0x00}},
    {'=', {0x14, 0x14, 0x14, 0x14, 0x14}}, {'?', {0x02, 0x01, 0x51, 0x09, 0x06}},
    {'@', {0x32, 0x49, 0x79, 0x41, 0x3e}}, {'A', {0x7e, 0x11, 0x11, 0x11, 0x7e}},
    {'B', {0x7f, 0x49, 0x49, 0x49, 0x36}}, {'C', {0x3e, 0x41, 0x41, 0x41, 0x22}},
    {'D', {0x7f, 0x41, 0x41, 0x22, 0x1c}}, {'E', {0x7f, 0x49, 0x49, 0x49, 0x41}},
    {'F', {0x7f, 0x09, 0x09, 0x09, 0x01}}, {'G', {0x3e, 0x41, 0x49, 0x49, 0x7a}},
    {'H', {0x7f, 0x08, 0x08, 0x08, 0x7f}}, {'I', {0x00, 0x41, 0x7f, 0x41, 0x00}},
    {'J', {0x20, 0x40, 0x41, 0x3f, 0x01}}, {'K', {0x7f, 0x08, 0x14, 0x22, 0x41}},
    {'L', {0x7f, 0x40, 0x40, 0x40, 0x40}}, {'M', {0x7f, 0x02, 0x0c, 0x02, 0x7f}},
    {'N', {0x7f, 0x04, 0x08, 0x10, 0x7f}}, {'O', {0x3e, 0x41, 0x41, 0x41, 0x3e}},
    {'P', {0x7f, 0x09, 0x09, 0x09, 0x06}}, {'Q', {0x3e, 0x41, 0x51, 0x21, 0x5e}},
    {'R', {0x7f, 0x09, 0x19, 0x29, 0x46}}, {'S', {0x46, 0x49, 0x49, 0x49, 0x31}},
    {'T', {0x01, 0x01, 0x7f, 0x01, 0x01}}, {'U', {0x3f, 0x40, 0x40, 0x40, 0x3f}},
    {'V', {0x1f, 0x20, 0x40, 0x20, 0x1f}}, {'W', {0x3f, 0x40, 0x38, 0x40, 0x3f}},
    {'X', {0x63, 0x14, 0x08, 0x14, 0x63}}, {'Y', {0x07, 0x08, 0x70, 0x08, 0x07}},
    {'Z', {0x61, 0x51, 0x49, 0x45, 0x43}}, {'[', {0x00, 0x7f, 0x41, 0x41, 0x00}},
    {']', {0x00, 0x41, 0x41, 0x7f, 0x00}}, {'_', {0x40, 0x40, 0x40, 0x40, 0x40}},
    {'x', {0x44, 0x28, 0x10, 0x28, 0x44}},
};

static const uint8_t *glyph_of(unsigned char c)
{
    if (c >= 'a' && c <= 'z' && c != 'x') c = (unsigned char)(c - 'a' + 'A');
    for (size_t i = 0; i < sizeof font / sizeof *font; i++)
        if ((unsigned char)font[i].c == c) return font[i].col;
    return glyph_of('?');
}

int dfm_sheet_text_width(const char *text, int scale)
{
    size_t n = strlen(text);
    return n ? (int)(n * 6 - 1) * scale : 0;
}

void dfm_sheet_draw_text(uint8_t *rgb, int h, int w, int x, int y, int scale, const char *text,
                         const uint8_t color[3])
{
    for (const unsigned char *p = (const unsigned char *)text; *p; p++, x += 6 * scale) {
        const uint8_t *g = glyph_of(*p);
        for (int cx = 0; cx < 5; cx++)
            for (int cy = 0; cy < 7; cy++) {
                if (!(g[cx] >> cy & 1)) continue;
                for (int dy = 0; dy < scale; dy++)
                    for (int dx = 0; dx < scale; dx++) {
                        int px = x + cx * scale + dx, py = y + cy * scale + dy;
                        if (px >= 0 && px < w && py >= 0 && py < h)
                            memcpy(rgb + ((size_t)py * w + px) * 3, color, 3);
                    }
            }
    }
}

/* ---- tiles --------------------------------------------------------------------------------- */

typedef struct {
    char *key;
    uint8_t *rgb;
    int w, h;
} tile_t;

typedef struct {
    dfm_stats_bucket b;
    tile_t *t;
    int n;
} row_t;

struct dfm_sheet {
    int per_bucket;
    row_t *rows;
    int nrows, caprows, tiles;
};

int dfm_sheet_new(dfm_sheet **out, int per_bucket)
{
    if (per_bucket < 1 || per_bucket > DFM_SHEET_MAX_PER_BUCKET)
        return dfm_fail(DFM_E_ARG, "sheet: %d tiles per bucket (1 .. %d)", per_bucket, DFM_SHEET_MAX_PER_BUCKET);
    dfm_sheet *sh = dfm_calloc(1, sizeof *sh);
    if (!sh) return DFM_E_NOMEM;
    sh->per_bucket = per_bucket;
    *out = sh;
    return 0;
}

void dfm_sheet_free(dfm_sheet *sh)
{
    if (!sh) return;
    for (int r = 0; r < sh->nrows; r++) {
        for (int i = 0; i < sh->rows[r].n; i++) free(sh->rows[r].t[i].key), free(sh->rows[r].t[i].rgb);
        free(sh->rows[r].t);
    }
    free(sh->rows);
    free(sh);
}

int dfm_sheet_tiles(const dfm_sheet *sh) { return sh->tiles; }

static row_t *find_row(const dfm_sheet *sh, const dfm_stats_bucket *b)
{
    for (int r = 0; r < sh->nrows; r++)
        if (!dfm_stats_bucket_cmp(&sh->rows[r].b, b)) return &sh->rows[r];
    return NULL;
}

int dfm_sheet_wants(const dfm_sheet *sh, const dfm_stats_bucket *b)
{
    const row_t *r = find_row(sh, b);
    return !r || r->n < sh->per_bucket;
}

int dfm_sheet_add_rgb(dfm_sheet *sh, const dfm_stats_bucket *b, const char *key, const uint8_t *rgb,
                      int h, int w)
{
    if (h < 1 || w < 1 || !rgb) return dfm_fail(DFM_E_ARG, "sheet: a %dx%d tile", w, h);
    row_t *r = find_row(sh, b);
    if (r && r->n >= sh->per_bucket) return 0;
    if (!r) {
        if (sh->nrows == sh->caprows) {
            int cap = sh->caprows ? sh->caprows * 2 : 16;
            row_t *nr = dfm_realloc(sh->rows, (size_t)cap * sizeof *nr);
            if (!nr) return DFM_E_NOMEM;
            sh->rows = nr;
            sh->caprows = cap;
        }
        r = &sh->rows[sh->nrows];
        memset(r, 0, sizeof *r);
        r->b = *b;
        if (!(r->t = dfm_calloc((size_t)sh->per_bucket, sizeof *r->t))) return DFM_E_NOMEM;
        sh->nrows++;
    }
    /* shrink to fit DFM_SHEET_TILE, keeping the aspect */
    int tw = w, th = h;
    if (w > DFM_SHEET_TILE || h > DFM_SHEET_TILE) {
        double s = (double)DFM_SHEET_TILE / (w > h ? w : h);
        tw = (int)(w * s + 0.5), th = (int)(h * s + 0.5);
        if (tw < 1) tw = 1;
        if (th < 1) th = 1;
    }
    tile_t t = {dfm_strdup(key ? key : ""), dfm_malloc((size_t)tw * th * 3), tw, th};
    int rc = !t.key || !t.rgb ? DFM_E_NOMEM : 0;
    if (!rc && tw == w && th == h) memcpy(t.rgb, rgb, (size_t)tw * th * 3);
    else if (!rc) rc = dfm_resample_rgb8(rgb, w, h, t.rgb, tw, th, tw, th, 0, 0, DFM_FILTER_AREA, 1);
    if (rc) {
        free(t.key);
        free(t.rgb);
        return rc;
    }
    r->t[r->n++] = t;
    sh->tiles++;
    return 0;
}

int dfm_sheet_add_sample(dfm_sheet *sh, const dfm_stats_bucket *b, const dfm_sample *s)
{
    const dfm_field *f = dfm_sample_get(s, "frames.npy");
    if (!f) return dfm_fail(DFM_E_SKIP, "no frames.npy");
    dfm_npy a;
    int rc = dfm_npy_parse(f->data, f->len, &a);
    if (rc) return dfm_fail_ctx(DFM_E_FORMAT, "frames.npy");
    if (a.dtype != DFM_NPY_U8 || a.ndim != 4 || a.shape[3] != 3 || a.shape[0] < 1 || a.shape[1] < 1 ||
        a.shape[2] < 1 || a.shape[1] > 65535 || a.shape[2] > 65535) {
        char desc[96];
        return dfm_fail(DFM_E_FORMAT, "frames.npy is %s; want uint8 [F,H,W,3]",
                        dfm_npy_describe(f->data, f->len, desc, sizeof desc));
    }
    return dfm_sheet_add_rgb(sh, b, s->key, a.data, (int)a.shape[1], (int)a.shape[2]);
}

/* ---- the sheet ----------------------------------------------------------------------------- */

static int cmp_row(const void *a, const void *b)
{
    return dfm_stats_bucket_cmp(&(*(const row_t *const *)a)->b, &(*(const row_t *const *)b)->b);
}

/* The label of a row: "BUCKET (N)" (N when st is given). */
static void row_label(const row_t *r, const dfm_stats *st, char *out, size_t n)
{
    char name[96];
    dfm_stats_bucket_name(&r->b, name, sizeof name);
    if (st) snprintf(out, n, "%s (%llu)", name, (unsigned long long)dfm_stats_bucket_count(st, &r->b));
    else snprintf(out, n, "%s", name);
}

int dfm_sheet_render(const dfm_sheet *sh, const dfm_stats *st, uint8_t **rgb, int *h, int *w,
                     cJSON *layout)
{
    *rgb = NULL;
    if (!sh->tiles) return dfm_fail(DFM_E_ARG, "sheet: no tiles");
    const row_t **order = dfm_malloc((size_t)sh->nrows * sizeof *order);
    if (!order) return DFM_E_NOMEM;
    for (int r = 0; r < sh->nrows; r++) order[r] = &sh->rows[r];
    qsort(order, (size_t)sh->nrows, sizeof *order, cmp_row);
    /* size */
    const int M = DFM_SHEET_MARGIN, G = DFM_SHEET_GUTTER, L = DFM_SHEET_LABEL;
    int64_t W = 0, H = 2 * M;
    char label[160];
    for (int r = 0; r < sh->nrows; r++) {
        const row_t *row = order[r];
        row_label(row, st, label, sizeof label);
        int64_t rw = dfm_sheet_text_width(label, 2), tw = 0, th = 0;
        for (int i = 0; i < row->n; i++) {
            tw += row->t[i].w + (i ? G : 0);
            if (row->t[i].h > th) th = row->t[i].h;
        }
        if (tw > rw) rw = tw;
        if (rw > W) W = rw;
        H += L + th + (r ? G : 0);
    }
    W += 2 * M;
    if (W > 16383 || H > 16383) {
        free(order);
        return dfm_fail(DFM_E_LIMIT, "sheet: %lldx%lld pixels is too large for a PNG; use fewer tiles per bucket",
                        (long long)W, (long long)H);
    }
    uint8_t *s = dfm_malloc((size_t)W * H * 3);
    if (!s) {
        free(order);
        return DFM_E_NOMEM;
    }
    memset(s, 32, (size_t)W * H * 3);
    static const uint8_t white[3] = {240, 240, 240};
    cJSON *rows = NULL;
    if (layout) {
        cJSON_AddNumberToObject(layout, "width", (double)W);
        cJSON_AddNumberToObject(layout, "height", (double)H);
        rows = cJSON_AddArrayToObject(layout, "rows");
    }
    int y = M;
    char name[96];
    for (int r = 0; r < sh->nrows; r++) {
        const row_t *row = order[r];
        if (r) y += G;
        row_label(row, st, label, sizeof label);
        dfm_sheet_draw_text(s, (int)H, (int)W, M, y + 3, 2, label, white);
        cJSON *jr = NULL, *jt = NULL;
        if (rows) {
            jr = cJSON_CreateObject();
            cJSON_AddStringToObject(jr, "bucket", dfm_stats_bucket_name(&row->b, name, sizeof name));
            cJSON_AddNumberToObject(jr, "y", y);
            jt = cJSON_AddArrayToObject(jr, "tiles");
            cJSON_AddItemToArray(rows, jr);
        }
        int x = M, ty = y + L, th = 0;
        for (int i = 0; i < row->n; i++) {
            const tile_t *t = &row->t[i];
            for (int yy = 0; yy < t->h; yy++)
                memcpy(s + ((size_t)(ty + yy) * W + x) * 3, t->rgb + (size_t)yy * t->w * 3, (size_t)t->w * 3);
            if (jt) {
                cJSON *e = cJSON_CreateObject();
                cJSON_AddStringToObject(e, "key", t->key);
                cJSON_AddNumberToObject(e, "x", x);
                cJSON_AddNumberToObject(e, "y", ty);
                cJSON_AddNumberToObject(e, "width", t->w);
                cJSON_AddNumberToObject(e, "height", t->h);
                cJSON_AddItemToArray(jt, e);
            }
            x += t->w + G;
            if (t->h > th) th = t->h;
        }
        y = ty + th;
    }
    free(order);
    *rgb = s;
    *h = (int)H;
    *w = (int)W;
    return 0;
}

int dfm_sheet_write(const dfm_sheet *sh, const dfm_stats *st, const char *path, cJSON *layout)
{
    uint8_t *rgb = NULL, *png = NULL;
    int h = 0, w = 0;
    size_t len = 0;
    int rc = dfm_sheet_render(sh, st, &rgb, &h, &w, layout);
    if (!rc) rc = dfm_encode_png_mem(rgb, h, w, &png, &len);
    if (!rc) rc = dfm_write_file_atomic(path, png, len);
    free(rgb);
    free(png);
    return rc;
}

int dfm_sheet_first_latent_frame(const dfm_field *latents, uint8_t **npy, size_t *len)
{
    dfm_npy a;
    *npy = NULL;
    int rc = dfm_npy_parse(latents->data, latents->len, &a);
    if (rc) return dfm_fail_ctx(DFM_E_FORMAT, "latents.npy");
    if ((a.dtype != DFM_NPY_F16 && a.dtype != DFM_NPY_F32) || a.ndim != 4 || a.shape[0] < 1 ||
        a.shape[1] < 1 || a.shape[2] < 1 || a.shape[3] < 1) {
        char desc[96];
        return dfm_fail(DFM_E_FORMAT, "latents.npy is %s; want float16/float32 [C,F,H,W]",
                        dfm_npy_describe(latents->data, latents->len, desc, sizeof desc));
    }
    size_t item = dfm_npy_itemsize(a.dtype), plane = (size_t)(a.shape[2] * a.shape[3]) * item;
    uint8_t *first = dfm_malloc((size_t)a.shape[0] * plane);
    if (!first) return DFM_E_NOMEM;
    for (int64_t c = 0; c < a.shape[0]; c++) /* [c, 0, :, :] of a C-order [C,F,H,W] */
        memcpy(first + (size_t)c * plane, a.data + (size_t)c * (size_t)a.shape[1] * plane, plane);
    int64_t shape[4] = {a.shape[0], 1, a.shape[2], a.shape[3]};
    rc = dfm_npy_build(a.dtype, 4, shape, first, npy, len);
    free(first);
    return rc;
}
